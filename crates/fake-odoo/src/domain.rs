//! Odoo domains (`odoo/osv/expression.py` semantics) and `order` specs.
//!
//! Prefix `&` / `|` (arity 2) and `!` (arity 1) with implicit AND; leaves
//! `[path, op, value]` with the SQL NULL rules Odoo generates (`!=`, `not in`
//! and `not like` also match NULL; `= False` is `IS NULL`; booleans treat NULL
//! as false); dotted paths, `any` / `not any`, `child_of` / `parent_of`, and
//! name search when a many2one is compared with strings. Datetime leaves
//! compare stored microseconds up to Odoo 18 and whole seconds from 19 on
//! (18.4+, odoo/odoo#203626).

use std::cmp::Ordering;
use std::collections::BTreeSet;

use chrono::{NaiveDate, Timelike};
use serde_json::Value;

use crate::error::{OResult, OdooError};
use crate::schema::{Field, Model, Ty};
use crate::store::{Db, Val, as_i64, parse_dt, py_repr, truthy};

const OPERATORS: &[&str] = &[
    "=",
    "!=",
    "<>",
    "<=",
    "<",
    ">",
    ">=",
    "=?",
    "=like",
    "=ilike",
    "like",
    "not like",
    "ilike",
    "not ilike",
    "in",
    "not in",
    "child_of",
    "parent_of",
    "any",
    "not any",
];

pub(crate) enum Node {
    Const(bool),
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    Cmp {
        field: Field,
        op: String,
        operand: Operand,
    },
    /// `on` (`id` or a many2one) ∈ `ids`; `negate`: ∉ or NULL.
    IdIn {
        on: &'static str,
        ids: BTreeSet<i64>,
        negate: bool,
    },
}

pub(crate) enum Operand {
    Null,
    One(Val),
    Many(Vec<Val>, bool),
    Pattern(String, bool),
}

/// Searches `model`: `domain` (JSON), `active_test`, `order` (`None` = `_order`),
/// `offset`, `limit` (`None` = all). Returns ids in order.
pub(crate) fn search(
    db: &Db,
    model: &str,
    domain: &Value,
    active_test: bool,
    order: Option<&str>,
    offset: usize,
    limit: Option<usize>,
) -> OResult<Vec<i64>> {
    let m = db.model(model)?;
    let mut node = compile(db, &m, domain)?;
    if active_test && m.has_active() && !mentions_active(domain) {
        let f = m.field("active").expect("active").clone();
        node = Node::And(vec![
            node,
            Node::Cmp {
                field: f,
                op: "=".into(),
                operand: Operand::One(Val::Bool(true)),
            },
        ]);
    }
    let spec = parse_order(
        &m,
        order.filter(|o| !o.trim().is_empty()).unwrap_or(m.order),
    )?;
    let mut ids: Vec<i64> = db
        .all_ids(model)
        .into_iter()
        .filter(|id| eval(db, &m, *id, &node))
        .collect();
    ids.sort_by(|a, b| cmp_records(db, &m, *a, *b, &spec));
    Ok(ids
        .into_iter()
        .skip(offset)
        .take(limit.unwrap_or(usize::MAX))
        .collect())
}

fn mentions_active(domain: &Value) -> bool {
    domain.as_array().is_some_and(|d| {
        d.iter()
            .any(|t| t.as_array().and_then(|l| l.first()) == Some(&Value::from("active")))
    })
}

fn syntax_error(domain: &Value) -> OdooError {
    OdooError::value(format!(
        "Domain {} is syntactically not correct.",
        py_repr(domain)
    ))
}

/// Parses and resolves a domain into a tree evaluated per row.
pub(crate) fn compile(db: &Db, m: &Model, domain: &Value) -> OResult<Node> {
    let tokens = match domain {
        Value::Array(a) => a.as_slice(),
        Value::Null | Value::Bool(false) => &[],
        _ => return Err(syntax_error(domain)),
    };
    let mut pos = 0;
    let mut terms = Vec::new();
    while pos < tokens.len() {
        terms.push(parse_expr(db, m, tokens, &mut pos, domain)?);
    }
    Ok(Node::And(terms))
}

fn parse_expr(
    db: &Db,
    m: &Model,
    tokens: &[Value],
    pos: &mut usize,
    domain: &Value,
) -> OResult<Node> {
    let tok = tokens.get(*pos).ok_or_else(|| syntax_error(domain))?;
    *pos += 1;
    match tok {
        Value::String(op) if op == "&" || op == "|" => {
            let a = parse_expr(db, m, tokens, pos, domain)?;
            let b = parse_expr(db, m, tokens, pos, domain)?;
            Ok(if op == "&" {
                Node::And(vec![a, b])
            } else {
                Node::Or(vec![a, b])
            })
        }
        Value::String(op) if op == "!" => {
            Ok(Node::Not(Box::new(parse_expr(db, m, tokens, pos, domain)?)))
        }
        Value::Array(leaf) => compile_leaf(db, m, leaf, tok),
        _ => Err(OdooError::value(format!("Invalid leaf {}", py_repr(tok)))),
    }
}

fn compile_leaf(db: &Db, m: &Model, leaf: &[Value], raw: &Value) -> OResult<Node> {
    let invalid = || OdooError::value(format!("Invalid leaf {}", py_repr(raw)));
    let [left, op, value] = leaf else {
        return Err(invalid());
    };
    let op = op.as_str().ok_or_else(invalid)?.to_lowercase();
    let op = if op == "<>" { "!=".to_string() } else { op };
    if !OPERATORS.contains(&op.as_str()) {
        return Err(invalid());
    }
    let path = match left {
        Value::String(s) => s.as_str(),
        // TRUE_LEAF (1, '=', 1) / FALSE_LEAF (0, '=', 1)
        Value::Number(_) if op == "=" && as_i64(value) == Some(1) => {
            return match as_i64(left) {
                Some(1) => Ok(Node::Const(true)),
                Some(0) => Ok(Node::Const(false)),
                _ => Err(invalid()),
            };
        }
        _ => return Err(invalid()),
    };
    let (fname, rest) = match path.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (path, None),
    };
    let f = m.field(fname).ok_or_else(|| {
        OdooError::value(format!(
            "Invalid field {}.{} in leaf {}",
            m.name,
            fname,
            py_repr(raw)
        ))
    })?;

    if let Some(rest) = rest {
        let rel = relational(f, raw)?;
        let sub = Value::Array(vec![Value::Array(vec![
            rest.into(),
            op.as_str().into(),
            value.clone(),
        ])]);
        let ids = search(db, rel, &sub, false, None, 0, None)?;
        return Ok(membership(db, f, ids.into_iter().collect(), false));
    }
    match op.as_str() {
        "any" | "not any" => {
            let rel = relational(f, raw)?;
            let ids = search(db, rel, value, false, None, 0, None)?;
            return Ok(membership(
                db,
                f,
                ids.into_iter().collect(),
                op == "not any",
            ));
        }
        "child_of" | "parent_of" => {
            let target = if f.name == "id" {
                m.name
            } else {
                relational(f, raw)?
            };
            let tm = db.model(target)?;
            if !tm.has_parent() {
                return Err(OdooError::value(format!(
                    "Invalid field {} in leaf {}: {} has no parent field",
                    f.name,
                    py_repr(raw),
                    target
                )));
            }
            let start: BTreeSet<i64> = crate::store::ids_arg(value)?.into_iter().collect();
            let ids = hierarchy(db, target, &start, op == "child_of");
            return Ok(membership(db, f, ids, false));
        }
        "=?" if !truthy(value) => return Ok(Node::Const(true)),
        _ => {}
    }
    let op = if op == "=?" { "=".to_string() } else { op };
    // `=` / `!=` with a list mean `in` / `not in`.
    let op = match (op.as_str(), value) {
        ("=", Value::Array(_)) => "in".to_string(),
        ("!=", Value::Array(_)) => "not in".to_string(),
        _ => op,
    };
    let has_strings = match value {
        Value::String(_) => true,
        Value::Array(a) => a.iter().any(Value::is_string),
        _ => false,
    };
    let negative = matches!(op.as_str(), "!=" | "not in" | "not like" | "not ilike");
    if matches!(f.ty, Ty::Many2one | Ty::One2many) && has_strings {
        // name_search on the comodel.
        let rel = f.relation.expect("relation");
        let positive = match op.as_str() {
            "!=" => "=",
            "not in" => "in",
            "not like" => "like",
            "not ilike" => "ilike",
            o => o,
        };
        let sub = Value::Array(vec![Value::Array(vec![
            "display_name".into(),
            positive.into(),
            value.clone(),
        ])]);
        let ids = search(db, rel, &sub, false, None, 0, None)?;
        return Ok(membership(db, f, ids.into_iter().collect(), negative));
    }
    if f.ty == Ty::One2many {
        let children: BTreeSet<i64> = match (op.as_str(), value) {
            ("=" | "!=", v) if !truthy(v) => db
                .all_ids(f.relation.expect("relation"))
                .into_iter()
                .collect(),
            ("=" | "!=" | "in" | "not in", v) => crate::store::ids_arg(v)?.into_iter().collect(),
            _ => return Err(invalid()),
        };
        let with_false = matches!(op.as_str(), "=" | "!=") && !truthy(value);
        // Parents of the matching children.
        let inv = f.inverse.expect("inverse");
        let parents: BTreeSet<i64> = children
            .iter()
            .filter_map(|c| match db.get(f.relation.expect("relation"), *c, inv) {
                Val::Int(p) => Some(*p),
                _ => None,
            })
            .collect();
        let negate = if with_false { op == "=" } else { negative };
        return Ok(Node::IdIn {
            on: "id",
            ids: parents,
            negate,
        });
    }
    let operand = operand(db, f, &op, value, raw)?;
    Ok(Node::Cmp {
        field: f.clone(),
        op,
        operand,
    })
}

fn relational<'a>(f: &'a Field, raw: &Value) -> OResult<&'a str> {
    match (f.ty, f.relation) {
        (Ty::Many2one | Ty::One2many, Some(rel)) => Ok(rel),
        _ => Err(OdooError::value(format!(
            "Invalid path in leaf {}: {} is not relational",
            py_repr(raw),
            f.name
        ))),
    }
}

/// `f` (id, many2one or one2many) has a value in `ids` (or not, with `negate`).
fn membership(db: &Db, f: &Field, ids: BTreeSet<i64>, negate: bool) -> Node {
    if f.ty == Ty::One2many {
        let rel = f.relation.expect("relation");
        let inv = f.inverse.expect("inverse");
        let parents = ids
            .iter()
            .filter_map(|c| match db.get(rel, *c, inv) {
                Val::Int(p) => Some(*p),
                _ => None,
            })
            .collect();
        return Node::IdIn {
            on: "id",
            ids: parents,
            negate,
        };
    }
    Node::IdIn {
        on: f.name,
        ids,
        negate,
    }
}

/// Descendants (`down`) or ancestors of `start`, itself included, via `parent_id`.
fn hierarchy(db: &Db, model: &str, start: &BTreeSet<i64>, down: bool) -> BTreeSet<i64> {
    let parent = |id: i64| match db.get(model, id, "parent_id") {
        Val::Int(p) => Some(*p),
        _ => None,
    };
    let mut out = BTreeSet::new();
    for id in db.all_ids(model) {
        let mut cur = Some(id);
        let mut chain = Vec::new();
        while let Some(c) = cur {
            if chain.contains(&c) {
                break;
            }
            chain.push(c);
            cur = parent(c);
        }
        if down {
            if chain.iter().any(|c| start.contains(c)) {
                out.insert(id);
            }
        } else if start.contains(&id) {
            out.extend(chain);
        }
    }
    out
}

/// The comparison value, typed for `f`.
fn operand(db: &Db, f: &Field, op: &str, value: &Value, raw: &Value) -> OResult<Operand> {
    let conv = |v: &Value| typed(db, f, v, raw);
    Ok(match op {
        "like" | "not like" | "ilike" | "not ilike" | "=like" | "=ilike" => {
            let s = match value {
                Value::String(s) => s.clone(),
                v => py_repr(v),
            };
            let pattern = if op.starts_with('=') {
                s
            } else {
                format!("%{s}%")
            };
            Operand::Pattern(pattern, op.contains("ilike"))
        }
        "in" | "not in" => {
            let list = match value {
                Value::Array(a) => a.clone(),
                v => vec![v.clone()],
            };
            let mut has_null = false;
            let mut vals = Vec::new();
            for v in &list {
                match conv(v)? {
                    Val::Null => has_null = true,
                    x => vals.push(x),
                }
            }
            Operand::Many(vals, has_null)
        }
        _ => match conv(value)? {
            Val::Null => Operand::Null,
            x => Operand::One(x),
        },
    })
}

fn typed(db: &Db, f: &Field, v: &Value, raw: &Value) -> OResult<Val> {
    let bad = |what: &str| {
        OdooError::value(format!(
            "invalid input syntax for type {what}: {} (leaf {})",
            py_repr(v),
            py_repr(raw)
        ))
    };
    if f.ty == Ty::Boolean {
        return Ok(Val::Bool(truthy(v)));
    }
    if matches!(v, Value::Null | Value::Bool(false)) {
        return Ok(Val::Null);
    }
    Ok(match f.ty {
        Ty::Integer | Ty::Many2one => match v {
            Value::Number(n) => match n.as_i64() {
                Some(i) => Val::Int(i),
                None => Val::Float(n.as_f64().ok_or_else(|| bad("integer"))?),
            },
            Value::String(s) => Val::Int(s.trim().parse().map_err(|_| bad("integer"))?),
            _ => return Err(bad("integer")),
        },
        Ty::Float | Ty::Monetary => match v {
            Value::Number(n) => Val::Float(n.as_f64().ok_or_else(|| bad("numeric"))?),
            Value::String(s) => Val::Float(s.trim().parse().map_err(|_| bad("numeric"))?),
            _ => return Err(bad("numeric")),
        },
        Ty::Date => match v {
            Value::String(s) => Val::Date(
                NaiveDate::parse_from_str(s.get(..10).unwrap_or(s), "%Y-%m-%d")
                    .map_err(|_| bad("date"))?,
            ),
            _ => return Err(bad("date")),
        },
        Ty::Datetime => match v {
            Value::String(s) => Val::Dt(norm_dt(db, parse_dt(s).ok_or_else(|| bad("timestamp"))?)),
            _ => return Err(bad("timestamp")),
        },
        _ => match v {
            Value::String(s) => Val::Str(s.clone()),
            Value::Number(n) => Val::Str(n.to_string()),
            other => Val::Str(py_repr(other)),
        },
    })
}

/// From Odoo 19 (18.4+) datetime conditions work at whole seconds.
fn norm_dt(db: &Db, dt: chrono::NaiveDateTime) -> chrono::NaiveDateTime {
    if db.version >= 19 {
        dt.with_nanosecond(0).expect("valid")
    } else {
        dt
    }
}

fn eval(db: &Db, m: &Model, id: i64, node: &Node) -> bool {
    match node {
        Node::Const(b) => *b,
        Node::And(v) => v.iter().all(|n| eval(db, m, id, n)),
        Node::Or(v) => v.iter().any(|n| eval(db, m, id, n)),
        Node::Not(n) => !eval(db, m, id, n),
        Node::IdIn { on, ids, negate } => {
            let v = if *on == "id" {
                Some(id)
            } else {
                match db.get(m.name, id, on) {
                    Val::Int(i) => Some(*i),
                    _ => None,
                }
            };
            match v {
                Some(v) => ids.contains(&v) != *negate,
                None => *negate,
            }
        }
        Node::Cmp { field, op, operand } => {
            let v = row_value(db, m, field, id);
            eval_cmp(&v, op, operand)
        }
    }
}

fn row_value(db: &Db, m: &Model, f: &Field, id: i64) -> Val {
    match (f.name, f.ty) {
        ("id", _) => Val::Int(id),
        ("display_name", _) => Val::Str(db.display_name(m.name, id)),
        (_, Ty::Boolean) => match db.get(m.name, id, f.name) {
            Val::Null => Val::Bool(false),
            v => v.clone(),
        },
        (_, Ty::Datetime) => match db.get(m.name, id, f.name) {
            Val::Dt(dt) => Val::Dt(norm_dt(db, *dt)),
            v => v.clone(),
        },
        _ => db.get(m.name, id, f.name).clone(),
    }
}

fn eval_cmp(v: &Val, op: &str, operand: &Operand) -> bool {
    let null = *v == Val::Null;
    match (op, operand) {
        ("=", Operand::Null) => null,
        ("!=", Operand::Null) => !null,
        ("=", Operand::One(x)) => !null && cmp_val(v, x) == Some(Ordering::Equal),
        ("!=", Operand::One(x)) => null || cmp_val(v, x) != Some(Ordering::Equal),
        ("<" | "<=" | ">" | ">=", Operand::One(x)) if !null => match cmp_val(v, x) {
            Some(o) => match op {
                "<" => o == Ordering::Less,
                "<=" => o != Ordering::Greater,
                ">" => o == Ordering::Greater,
                _ => o != Ordering::Less,
            },
            None => false,
        },
        ("in", Operand::Many(vals, has_null)) => {
            (null && *has_null)
                || (!null && vals.iter().any(|x| cmp_val(v, x) == Some(Ordering::Equal)))
        }
        ("not in", Operand::Many(vals, has_null)) => {
            if null {
                !*has_null
            } else {
                !vals.iter().any(|x| cmp_val(v, x) == Some(Ordering::Equal))
            }
        }
        (_, Operand::Pattern(p, ci)) => {
            let negative = op.starts_with("not");
            if null {
                return negative;
            }
            let text = match v {
                Val::Str(s) => s.clone(),
                Val::Int(i) => i.to_string(),
                Val::Float(f) => f.to_string(),
                Val::Bool(b) => b.to_string(),
                Val::Date(d) => d.format("%Y-%m-%d").to_string(),
                Val::Dt(d) => d.format("%Y-%m-%d %H:%M:%S%.f").to_string(),
                Val::Null => String::new(),
            };
            like(p, &text, *ci) != negative
        }
        _ => false,
    }
}

/// SQL comparison of two non-NULL values.
pub(crate) fn cmp_val(a: &Val, b: &Val) -> Option<Ordering> {
    match (a, b) {
        (Val::Int(x), Val::Int(y)) => Some(x.cmp(y)),
        (Val::Int(x), Val::Float(y)) => (*x as f64).partial_cmp(y),
        (Val::Float(x), Val::Int(y)) => x.partial_cmp(&(*y as f64)),
        (Val::Float(x), Val::Float(y)) => x.partial_cmp(y),
        (Val::Str(x), Val::Str(y)) => Some(x.cmp(y)),
        (Val::Bool(x), Val::Bool(y)) => Some(x.cmp(y)),
        (Val::Date(x), Val::Date(y)) => Some(x.cmp(y)),
        (Val::Dt(x), Val::Dt(y)) => Some(x.cmp(y)),
        (Val::Date(x), Val::Dt(y)) => x.and_hms_opt(0, 0, 0).map(|x| x.cmp(y)),
        (Val::Dt(x), Val::Date(y)) => y.and_hms_opt(0, 0, 0).map(|y| x.cmp(&y)),
        _ => None,
    }
}

/// SQL `LIKE` / `ILIKE` (`%`, `_`, `\` escapes).
pub(crate) fn like(pattern: &str, text: &str, ci: bool) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = if ci {
        (
            pattern.to_lowercase().chars().collect(),
            text.to_lowercase().chars().collect(),
        )
    } else {
        (pattern.chars().collect(), text.chars().collect())
    };
    fn go(p: &[char], t: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('%') => (0..=t.len()).any(|i| go(&p[1..], &t[i..])),
            Some('_') => !t.is_empty() && go(&p[1..], &t[1..]),
            Some('\\') if p.len() > 1 => t.first() == Some(&p[1]) && go(&p[2..], &t[1..]),
            Some(c) => t.first() == Some(c) && go(&p[1..], &t[1..]),
        }
    }
    go(&p, &t)
}

// ------------------------------------------------------------------ order

pub(crate) enum OrderKey {
    Field(Field),
    /// `complete_name` on models where the fake derives it from `display_name`.
    DisplayName,
}

pub(crate) struct OrderTerm {
    key: OrderKey,
    desc: bool,
    nulls_first: bool,
}

/// Parses `"f1 asc, f2 desc nulls last"`; `id asc` is appended as a tiebreak.
pub(crate) fn parse_order(m: &Model, spec: &str) -> OResult<Vec<OrderTerm>> {
    let invalid = || {
        OdooError::value(format!(
            "Invalid \"order\" specified ({spec}). A valid \"order\" specification is a \
             comma-separated list of valid field names (optionally followed by asc/desc for \
             the direction)"
        ))
    };
    let mut out = Vec::new();
    for term in spec.split(',') {
        let words: Vec<String> = term.split_whitespace().map(str::to_lowercase).collect();
        let (name, rest) = words.split_first().ok_or_else(invalid)?;
        let (desc, rest) = match rest.first().map(String::as_str) {
            Some("desc") => (true, &rest[1..]),
            Some("asc") => (false, &rest[1..]),
            _ => (false, rest),
        };
        let nulls_first = match rest {
            [] => desc,
            [a, b] if a == "nulls" && b == "first" => true,
            [a, b] if a == "nulls" && b == "last" => false,
            _ => return Err(invalid()),
        };
        let key = match m.field(name) {
            Some(f) if f.store && f.ty != Ty::One2many => OrderKey::Field(f.clone()),
            None if name == "complete_name" => OrderKey::DisplayName,
            _ => return Err(invalid()),
        };
        out.push(OrderTerm {
            key,
            desc,
            nulls_first,
        });
    }
    out.push(OrderTerm {
        key: OrderKey::Field(m.field("id").expect("id").clone()),
        desc: false,
        nulls_first: false,
    });
    Ok(out)
}

pub(crate) fn cmp_records(db: &Db, m: &Model, a: i64, b: i64, spec: &[OrderTerm]) -> Ordering {
    for t in spec {
        let o = match &t.key {
            OrderKey::DisplayName => db.display_name(m.name, a).cmp(&db.display_name(m.name, b)),
            OrderKey::Field(f) => {
                let (va, vb) = (row_value(db, m, f, a), row_value(db, m, f, b));
                match (&va, &vb) {
                    (Val::Null, Val::Null) => Ordering::Equal,
                    (Val::Null, _) => {
                        if t.nulls_first != t.desc {
                            Ordering::Less
                        } else {
                            Ordering::Greater
                        }
                    }
                    (_, Val::Null) => {
                        if t.nulls_first != t.desc {
                            Ordering::Greater
                        } else {
                            Ordering::Less
                        }
                    }
                    (Val::Int(x), Val::Int(y)) if f.ty == Ty::Many2one => {
                        // Ordering by a many2one uses the comodel's `_order`.
                        let rel = db.model(f.relation.expect("relation")).expect("model");
                        match parse_order(&rel, rel.order) {
                            Ok(s) => cmp_records(db, &rel, *x, *y, &s),
                            Err(_) => x.cmp(y),
                        }
                    }
                    _ => cmp_val(&va, &vb).unwrap_or(Ordering::Equal),
                }
            }
        };
        let o = if t.desc { o.reverse() } else { o };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}
