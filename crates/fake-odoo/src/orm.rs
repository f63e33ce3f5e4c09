//! Public model methods and how a call's arguments bind to them: positional
//! `args` + `kwargs` over JSON-RPC (`odoo.api.call_kw`: record methods take
//! their ids from `args[0]`), named arguments + `ids` over JSON-2 (Python
//! `inspect.Signature.bind`, errors as 422).

use chrono::NaiveDateTime;
use serde_json::{Map, Value, json};

use crate::domain;
use crate::error::{Kind, OResult, OdooError};
use crate::schema::{Field, Model, Ty};
use crate::store::{Db, as_i64, ids_arg, py_repr, truthy};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Proto {
    JsonRpc,
    Json2,
}

/// One model-method call, already authenticated.
pub(crate) struct Call {
    pub(crate) proto: Proto,
    pub(crate) model: String,
    pub(crate) method: String,
    /// JSON-2 `ids`; over JSON-RPC record methods take `args[0]`.
    pub(crate) ids: Value,
    pub(crate) args: Vec<Value>,
    pub(crate) kwargs: Map<String, Value>,
    pub(crate) context: Map<String, Value>,
}

struct Spec {
    name: &'static str,
    /// `@api.model` (no ids).
    api_model: bool,
    params: &'static [&'static str],
    required: usize,
    /// `**kwargs` accepted (search_read passes them on to read).
    var_kw: bool,
}

const METHODS: &[Spec] = &[
    Spec {
        name: "search",
        api_model: true,
        params: &["domain", "offset", "limit", "order"],
        required: 1,
        var_kw: false,
    },
    Spec {
        name: "search_count",
        api_model: true,
        params: &["domain", "limit"],
        required: 1,
        var_kw: false,
    },
    Spec {
        name: "search_read",
        api_model: true,
        params: &["domain", "fields", "offset", "limit", "order"],
        required: 0,
        var_kw: true,
    },
    Spec {
        name: "read",
        api_model: false,
        params: &["fields", "load"],
        required: 0,
        var_kw: false,
    },
    Spec {
        name: "create",
        api_model: true,
        params: &["vals_list"],
        required: 1,
        var_kw: false,
    },
    Spec {
        name: "write",
        api_model: false,
        params: &["vals"],
        required: 1,
        var_kw: false,
    },
    Spec {
        name: "unlink",
        api_model: false,
        params: &[],
        required: 0,
        var_kw: false,
    },
    Spec {
        name: "fields_get",
        api_model: true,
        params: &["allfields", "attributes"],
        required: 0,
        var_kw: false,
    },
    Spec {
        name: "action_noop",
        api_model: false,
        params: &[],
        required: 0,
        var_kw: false,
    },
];

/// Bound arguments: one slot per parameter, plus extra keyword arguments.
struct Bound {
    slots: Vec<Option<Value>>,
    extra: Map<String, Value>,
}

impl Bound {
    fn get(&self, i: usize) -> Option<&Value> {
        self.slots[i].as_ref()
    }
}

fn bind(spec: &Spec, proto: Proto, args: Vec<Value>, kwargs: Map<String, Value>) -> OResult<Bound> {
    let f = spec.name;
    let n = spec.params.len();
    let err = |py: String, inspect: String| match proto {
        Proto::JsonRpc => OdooError::type_error(py),
        Proto::Json2 => OdooError::new(Kind::Unprocessable, inspect),
    };
    if args.len() > n {
        let takes = if spec.required == n {
            format!("{}", n + 1)
        } else {
            format!("from {} to {}", spec.required + 1, n + 1)
        };
        return Err(err(
            format!(
                "{f}() takes {takes} positional arguments but {} were given",
                args.len() + 1
            ),
            "too many positional arguments".into(),
        ));
    }
    let mut slots: Vec<Option<Value>> = vec![None; n];
    for (i, a) in args.into_iter().enumerate() {
        slots[i] = Some(a);
    }
    let mut extra = Map::new();
    for (k, v) in kwargs {
        match spec.params.iter().position(|p| *p == k) {
            Some(i) if slots[i].is_some() => {
                return Err(err(
                    format!("{f}() got multiple values for argument '{k}'"),
                    format!("multiple values for argument '{k}'"),
                ));
            }
            Some(i) => slots[i] = Some(v),
            None if spec.var_kw => {
                extra.insert(k, v);
            }
            None => {
                return Err(err(
                    format!("{f}() got an unexpected keyword argument '{k}'"),
                    format!("got an unexpected keyword argument '{k}'"),
                ));
            }
        }
    }
    if let Some(i) = (0..spec.required).find(|i| slots[*i].is_none()) {
        let p = spec.params[i];
        return Err(err(
            format!("{f}() missing 1 required positional argument: '{p}'"),
            format!("missing a required argument: '{p}'"),
        ));
    }
    Ok(Bound { slots, extra })
}

/// Runs `call` in one transaction stamped `ts`; a failing call leaves the
/// database untouched.
pub(crate) fn execute(db: &mut Db, call: Call, ts: NaiveDateTime) -> OResult<Value> {
    if call.method.starts_with('_') {
        return Err(OdooError::new(
            Kind::AccessError,
            format!(
                "Private methods (such as {}) cannot be called remotely.",
                call.method
            ),
        ));
    }
    let m = match db.model(&call.model) {
        Ok(m) => m,
        Err(e) if call.proto == Proto::Json2 => {
            let _ = e;
            return Err(OdooError::new(
                Kind::NotFound,
                format!("the model '{}' does not exist", call.model),
            ));
        }
        Err(e) => return Err(e),
    };
    let Some(spec) = METHODS.iter().find(|s| s.name == call.method) else {
        let msg = format!(
            "The method '{}' does not exist on the model '{}'",
            call.method, call.model
        );
        return Err(match call.proto {
            Proto::JsonRpc => OdooError::new(Kind::AttributeError, msg),
            Proto::Json2 => OdooError::new(Kind::NotFound, msg),
        });
    };
    let mut args = call.args;
    let ids = match call.proto {
        Proto::JsonRpc if !spec.api_model => {
            if args.is_empty() {
                return Err(OdooError::new(Kind::IndexError, "list index out of range"));
            }
            ids_arg(&args.remove(0))?
        }
        Proto::JsonRpc => Vec::new(),
        Proto::Json2 => {
            let ids = ids_arg(&call.ids)?;
            if spec.api_model && !ids.is_empty() {
                return Err(OdooError::new(
                    Kind::Unprocessable,
                    format!("cannot call {}.{} with ids", call.model, call.method),
                ));
            }
            ids
        }
    };
    let bound = bind(spec, call.proto, args, call.kwargs)?;
    let active_test = call.context.get("active_test").is_none_or(truthy);
    db.transaction(|db| run(db, &m, spec, &ids, &bound, active_test, call.proto, ts))
}

fn opt(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

/// `offset` / `limit`: falsy (absent, None, False, 0) means none, as the
/// ORM only adds `LIMIT` / `OFFSET` when truthy.
fn int_arg(v: Option<&Value>, what: &str) -> OResult<Option<usize>> {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(None),
        Some(x) => as_i64(x)
            .filter(|i| *i >= 0)
            .map(|i| (i > 0).then_some(i as usize))
            .ok_or_else(|| OdooError::value(format!("Invalid {what}: {}", py_repr(x)))),
    }
}

fn order_arg(v: Option<&Value>) -> OResult<Option<&str>> {
    match opt(v) {
        None | Some(Value::Bool(false)) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(x) => Err(OdooError::value(format!(
            "Invalid \"order\" specified ({})",
            py_repr(x)
        ))),
    }
}

/// `fields` → the fields to read: all when absent or empty.
fn resolve_fields(m: &Model, fields: Option<&Value>) -> OResult<Vec<Field>> {
    let names: Vec<&Value> = match opt(fields) {
        None | Some(Value::Bool(false)) => Vec::new(),
        Some(Value::Array(a)) => a.iter().collect(),
        Some(x @ Value::String(_)) => vec![x],
        Some(x) => return Err(OdooError::value(format!("Invalid fields {}", py_repr(x)))),
    };
    if names.is_empty() {
        return Ok(m.fields.clone());
    }
    names
        .into_iter()
        .map(|n| {
            let name = n.as_str().unwrap_or_default();
            m.field(name).cloned().ok_or_else(|| {
                OdooError::value(format!(
                    "Invalid field {} on model '{}'",
                    py_repr(n),
                    m.name
                ))
            })
        })
        .collect()
}

/// `load='_classic_read'` (the default) gives many2one as `[id, name]`.
fn load_names(v: Option<&Value>) -> bool {
    match v {
        None => true,
        Some(Value::String(s)) => s == "_classic_read",
        Some(_) => false,
    }
}

fn read(db: &Db, m: &Model, ids: &[i64], fields: &[Field], names: bool) -> OResult<Value> {
    let missing: Vec<i64> = ids
        .iter()
        .copied()
        .filter(|i| !db.exists(m.name, *i))
        .collect();
    if !missing.is_empty() {
        return Err(OdooError::missing(m.name, &missing, db.uid));
    }
    let refs: Vec<&Field> = fields.iter().collect();
    Ok(Value::Array(
        ids.iter()
            .map(|id| db.read_row(m, *id, &refs, names))
            .collect(),
    ))
}

#[allow(clippy::too_many_arguments)]
fn run(
    db: &mut Db,
    m: &Model,
    spec: &Spec,
    ids: &[i64],
    b: &Bound,
    active_test: bool,
    proto: Proto,
    ts: NaiveDateTime,
) -> OResult<Value> {
    let empty = Value::Array(Vec::new());
    match spec.name {
        "search" => {
            let domain = opt(b.get(0)).unwrap_or(&empty);
            let ids = domain::search(
                db,
                m.name,
                domain,
                active_test,
                order_arg(b.get(3))?,
                int_arg(b.get(1), "offset")?.unwrap_or(0),
                int_arg(b.get(2), "limit")?,
            )?;
            Ok(json!(ids))
        }
        "search_count" => {
            let domain = opt(b.get(0)).unwrap_or(&empty);
            let n = domain::search(db, m.name, domain, active_test, Some("id"), 0, None)?.len();
            let n = int_arg(b.get(1), "limit")?.map_or(n, |l| n.min(l));
            Ok(json!(n))
        }
        "search_read" => {
            let mut load = None;
            for (k, v) in &b.extra {
                if k == "load" {
                    load = Some(v);
                } else {
                    return Err(OdooError::type_error(format!(
                        "read() got an unexpected keyword argument '{k}'"
                    )));
                }
            }
            let fields = resolve_fields(m, b.get(1))?;
            let domain = opt(b.get(0)).unwrap_or(&empty);
            let ids = domain::search(
                db,
                m.name,
                domain,
                active_test,
                order_arg(b.get(4))?,
                int_arg(b.get(2), "offset")?.unwrap_or(0),
                int_arg(b.get(3), "limit")?,
            )?;
            read(db, m, &ids, &fields, load_names(load))
        }
        "read" => {
            let fields = resolve_fields(m, b.get(0))?;
            read(db, m, ids, &fields, load_names(b.get(1)))
        }
        "create" => {
            let arg = b.get(0).expect("required");
            let (list, single) = match arg {
                Value::Object(o) => (vec![o.clone()], true),
                Value::Array(a) => (
                    a.iter()
                        .map(|v| match v {
                            Value::Object(o) => Ok(o.clone()),
                            x => Err(OdooError::type_error(format!(
                                "create() expects dicts, got {}",
                                py_repr(x)
                            ))),
                        })
                        .collect::<OResult<Vec<_>>>()?,
                    false,
                ),
                x => {
                    return Err(OdooError::type_error(format!(
                        "create() expects a dict or a list of dicts, got {}",
                        py_repr(x)
                    )));
                }
            };
            let new = db.create(m.name, &list, ts, false)?;
            Ok(if single && proto == Proto::JsonRpc {
                json!(new[0])
            } else {
                json!(new)
            })
        }
        "write" => match b.get(0) {
            Some(Value::Object(vals)) => {
                db.write(m.name, ids, vals, ts, false)?;
                Ok(Value::Bool(true))
            }
            x => Err(OdooError::value(format!(
                "write() expects a dict, got {}",
                py_repr(x.unwrap_or(&Value::Null))
            ))),
        },
        "unlink" => {
            db.unlink(m.name, ids, ts)?;
            Ok(Value::Bool(true))
        }
        "fields_get" => Ok(fields_get(m, opt(b.get(0)), opt(b.get(1)))),
        "action_noop" => Ok(Value::Null),
        other => unreachable!("method {other} listed but not implemented"),
    }
}

fn fields_get(m: &Model, allfields: Option<&Value>, attributes: Option<&Value>) -> Value {
    let wanted = |list: Option<&Value>, name: &str| match list {
        Some(Value::Array(a)) if !a.is_empty() => a.iter().any(|x| x.as_str() == Some(name)),
        _ => true,
    };
    let mut out = Map::new();
    for f in &m.fields {
        if !wanted(allfields, f.name) {
            continue;
        }
        let mut d = Map::new();
        let mut put = |k: &str, v: Value| {
            if wanted(attributes, k) {
                d.insert(k.to_string(), v);
            }
        };
        put("type", json!(f.ty.name()));
        put("string", json!(f.string));
        put("store", json!(f.store));
        put("required", json!(f.required));
        put("readonly", json!(f.readonly));
        put("searchable", json!(true));
        put("sortable", json!(f.store && f.ty != Ty::One2many));
        if let Some(rel) = f.relation {
            put("relation", json!(rel));
        }
        if let Some(inv) = f.inverse {
            put("relation_field", json!(inv));
        }
        if f.ty == Ty::Selection {
            put(
                "selection",
                Value::Array(f.selection.iter().map(|(k, l)| json!([k, l])).collect()),
            );
        }
        out.insert(f.name.to_string(), Value::Object(d));
    }
    Value::Object(out)
}
