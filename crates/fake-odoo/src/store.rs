//! The in-memory database: typed rows, value conversion in (`convert_to_cache`)
//! and out (`convert_to_read`), and the ORM write paths (create / write /
//! unlink with defaults, required and foreign-key checks, one2many commands,
//! cascades and stored computes).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{NaiveDate, NaiveDateTime, Timelike};
use serde_json::{Map, Number, Value};

use crate::error::{Kind, OResult, OdooError};
use crate::schema::{Default, Field, Model, OnDelete, Ty};

/// A stored column value (NULL is `Null`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Val {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Date(NaiveDate),
    Dt(NaiveDateTime),
}

static NULL: Val = Val::Null;

pub(crate) type Row = BTreeMap<&'static str, Val>;

#[derive(Clone, Debug)]
pub(crate) struct Table {
    pub(crate) next_id: i64,
    pub(crate) rows: BTreeMap<i64, Row>,
}

/// The whole database. Every mutation goes through `insert_row` / `row_mut` /
/// `remove_row`, which keep an undo log while a transaction is open, so that a
/// failing call rolls back completely, as an Odoo transaction does.
#[derive(Debug)]
pub(crate) struct Db {
    pub(crate) version: u32,
    pub(crate) uid: i64,
    pub(crate) models: Arc<BTreeMap<&'static str, Arc<Model>>>,
    pub(crate) tables: BTreeMap<&'static str, Table>,
    /// `ir.sequence` `sale.order`.
    pub(crate) order_seq: i64,
    undo: Option<Undo>,
}

/// Prior states, replayed backwards on rollback.
#[derive(Debug, Default)]
struct Undo {
    rows: Vec<(&'static str, i64, Option<Row>)>,
    next_ids: BTreeMap<&'static str, i64>,
    order_seq: i64,
}

pub(crate) const DT_FMT: &str = "%Y-%m-%d %H:%M:%S";
pub(crate) const DATE_FMT: &str = "%Y-%m-%d";

/// Parses `YYYY-MM-DD[ HH:MM:SS[.ffffff]]` (also with a `T`); a bare date is midnight.
pub(crate) fn parse_dt(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim();
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(dt);
        }
    }
    NaiveDate::parse_from_str(s, DATE_FMT)
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
}

/// Odoo's `float_round` (half-up with an epsilon).
pub(crate) fn round_to(x: f64, digits: i32) -> f64 {
    let factor = 10f64.powi(digits);
    let n = x * factor;
    if n == 0.0 || !n.is_finite() {
        return x;
    }
    let eps = 2f64.powf(n.abs().log2() - 52.0);
    (n + eps.copysign(n)).round() / factor
}

pub(crate) fn float_json(x: f64) -> Value {
    Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// Python truthiness of a JSON value.
pub(crate) fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Python `repr` of a JSON value, for error messages.
pub(crate) fn py_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{s}'"),
        Value::Array(a) => format!("[{}]", a.iter().map(py_repr).collect::<Vec<_>>().join(", ")),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("'{k}': {}", py_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

pub(crate) fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        _ => None,
    }
}

/// An id list argument: an int or a list of ints (`browse(ids)`).
pub(crate) fn ids_arg(v: &Value) -> OResult<Vec<i64>> {
    match v {
        Value::Null | Value::Bool(false) => Ok(Vec::new()),
        Value::Array(a) => a
            .iter()
            .map(|x| as_i64(x).ok_or_else(|| bad_id(x)))
            .collect(),
        x => as_i64(x).map(|i| vec![i]).ok_or_else(|| bad_id(x)),
    }
}

fn bad_id(v: &Value) -> OdooError {
    OdooError::type_error(format!("Invalid id {}", py_repr(v)))
}

impl Db {
    pub(crate) fn new(version: u32, uid: i64, tag: bool) -> Db {
        let models: BTreeMap<_, _> = crate::schema::models(version, tag)
            .into_iter()
            .map(|m| (m.name, Arc::new(m)))
            .collect();
        let tables = models
            .keys()
            .map(|k| {
                (
                    *k,
                    Table {
                        next_id: 1,
                        rows: BTreeMap::new(),
                    },
                )
            })
            .collect();
        Db {
            version,
            uid,
            models: Arc::new(models),
            tables,
            order_seq: 0,
            undo: None,
        }
    }

    /// Runs `f` as one transaction: on error every change is undone.
    pub(crate) fn transaction<T>(&mut self, f: impl FnOnce(&mut Db) -> OResult<T>) -> OResult<T> {
        self.undo = Some(Undo {
            order_seq: self.order_seq,
            ..Undo::default()
        });
        let r = f(self);
        let undo = self.undo.take().expect("open transaction");
        if r.is_err() {
            self.order_seq = undo.order_seq;
            for (model, next) in undo.next_ids {
                self.table_mut(model).next_id = next;
            }
            for (model, id, prior) in undo.rows.into_iter().rev() {
                let rows = &mut self.table_mut(model).rows;
                match prior {
                    Some(row) => rows.insert(id, row),
                    None => rows.remove(&id),
                };
            }
        }
        r
    }

    fn key(&self, model: &str) -> &'static str {
        self.models.get_key_value(model).expect("known model").0
    }

    fn log(&mut self, model: &'static str, id: i64) {
        if let Some(undo) = &mut self.undo {
            let prior = self.tables[model].rows.get(&id).cloned();
            undo.rows.push((model, id, prior));
        }
    }

    fn alloc_id(&mut self, model: &str) -> i64 {
        let key = self.key(model);
        let table = self.tables.get_mut(key).expect("known model");
        let id = table.next_id;
        if let Some(undo) = &mut self.undo {
            undo.next_ids.entry(key).or_insert(id);
        }
        table.next_id += 1;
        id
    }

    fn insert_row(&mut self, model: &str, id: i64, row: Row) {
        let key = self.key(model);
        self.log(key, id);
        self.table_mut(key).rows.insert(id, row);
    }

    fn row_mut(&mut self, model: &str, id: i64) -> Option<&mut Row> {
        let key = self.key(model);
        if !self.exists(key, id) {
            return None;
        }
        self.log(key, id);
        self.table_mut(key).rows.get_mut(&id)
    }

    fn remove_row(&mut self, model: &str, id: i64) {
        let key = self.key(model);
        self.log(key, id);
        self.table_mut(key).rows.remove(&id);
    }

    /// Unknown model: `UserError("Object x doesn't exist")` as in
    /// `odoo/service/model.py` `execute_cr`.
    pub(crate) fn model(&self, name: &str) -> OResult<Arc<Model>> {
        self.models
            .get(name)
            .cloned()
            .ok_or_else(|| OdooError::new(Kind::UserError, format!("Object {name} doesn't exist")))
    }

    fn table(&self, model: &str) -> &Table {
        &self.tables[model]
    }

    fn table_mut(&mut self, model: &str) -> &mut Table {
        self.tables.get_mut(model).expect("known model")
    }

    pub(crate) fn row(&self, model: &str, id: i64) -> Option<&Row> {
        self.tables.get(model)?.rows.get(&id)
    }

    pub(crate) fn exists(&self, model: &str, id: i64) -> bool {
        self.row(model, id).is_some()
    }

    pub(crate) fn all_ids(&self, model: &str) -> Vec<i64> {
        self.table(model).rows.keys().copied().collect()
    }

    pub(crate) fn get<'a>(&'a self, model: &str, id: i64, field: &str) -> &'a Val {
        self.row(model, id)
            .and_then(|r| r.get(field))
            .unwrap_or(&NULL)
    }

    fn get_str(&self, model: &str, id: i64, field: &str) -> String {
        match self.get(model, id, field) {
            Val::Str(s) => s.clone(),
            _ => String::new(),
        }
    }

    fn get_id(&self, model: &str, id: i64, field: &str) -> Option<i64> {
        match self.get(model, id, field) {
            Val::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// `display_name` as Odoo 17 computes it for these models.
    pub(crate) fn display_name(&self, model: &str, id: i64) -> String {
        let name = self.get_str(model, id, "name");
        match model {
            "res.partner" => match self.get_id(model, id, "parent_id") {
                Some(p) if self.get(model, id, "is_company") != &Val::Bool(true) => {
                    format!("{}, {name}", self.get_str(model, p, "name"))
                }
                _ => name,
            },
            "product.product" => match self.get(model, id, "default_code") {
                Val::Str(code) if !code.is_empty() => format!("[{code}] {name}"),
                _ => name,
            },
            "sale.order.line" => {
                let order = self
                    .get_id(model, id, "order_id")
                    .map(|o| self.get_str("sale.order", o, "name"))
                    .unwrap_or_default();
                let first = name.lines().next().unwrap_or("").to_string();
                let label = if first.is_empty() {
                    self.get_id(model, id, "product_id")
                        .map(|p| self.get_str("product.product", p, "name"))
                        .unwrap_or_default()
                } else {
                    first
                };
                format!("{order} - {label}")
            }
            "account.move" if name.is_empty() || name == "/" => {
                let label = match self.get_str(model, id, "move_type").as_str() {
                    "out_invoice" => "Draft Invoice",
                    "out_refund" => "Draft Credit Note",
                    "in_invoice" => "Draft Bill",
                    "in_refund" => "Draft Vendor Credit Note",
                    "out_receipt" => "Draft Sales Receipt",
                    "in_receipt" => "Draft Purchase Receipt",
                    _ => "Draft Entry",
                };
                format!("{label} (* {id})")
            }
            _ => name,
        }
    }

    /// Ids of the comodel rows whose inverse many2one points at `parent`.
    pub(crate) fn children(&self, field: &Field, parent: i64) -> Vec<i64> {
        let (Some(rel), Some(inv)) = (field.relation, field.inverse) else {
            return Vec::new();
        };
        self.table(rel)
            .rows
            .iter()
            .filter(|(_, r)| r.get(inv) == Some(&Val::Int(parent)))
            .map(|(id, _)| *id)
            .collect()
    }

    /// A field of a live row in the wire format of `read`; `names` is
    /// `load='_classic_read'` (many2one as `[id, display_name]`).
    pub(crate) fn wire(&self, m: &Model, f: &Field, id: i64, names: bool) -> Value {
        match f.name {
            "id" => return Value::from(id),
            "display_name" => return Value::from(self.display_name(m.name, id)),
            _ => {}
        }
        if f.ty == Ty::One2many {
            return Value::from(self.children(f, id));
        }
        let v = self.get(m.name, id, f.name);
        match (f.ty, v) {
            (Ty::Integer, Val::Null) => Value::from(0),
            (Ty::Float | Ty::Monetary, Val::Null) => float_json(0.0),
            (Ty::Boolean, Val::Null) => Value::Bool(false),
            (_, Val::Null) => Value::Bool(false),
            (Ty::Many2one, Val::Int(r)) if names => {
                let rel = f.relation.expect("many2one relation");
                Value::Array(vec![Value::from(*r), self.display_name(rel, *r).into()])
            }
            (_, Val::Bool(b)) => Value::Bool(*b),
            (_, Val::Int(i)) => Value::from(*i),
            (_, Val::Float(x)) => float_json(*x),
            (_, Val::Str(s)) => Value::from(s.as_str()),
            (_, Val::Date(d)) => Value::from(d.format(DATE_FMT).to_string()),
            (_, Val::Dt(dt)) => Value::from(dt.format(DT_FMT).to_string()),
        }
    }

    pub(crate) fn read_row(&self, m: &Model, id: i64, fields: &[&Field], names: bool) -> Value {
        let mut out = Map::new();
        out.insert("id".into(), Value::from(id));
        for f in fields {
            out.insert(f.name.into(), self.wire(m, f, id, names));
        }
        Value::Object(out)
    }

    // ---------------------------------------------------------------- writes

    /// `convert_to_cache` + the column type check.
    fn convert_in(&self, m: &Model, f: &Field, v: &Value, control: bool) -> OResult<Val> {
        let wrong = || {
            OdooError::value(format!(
                "Wrong value for {}.{}: {}",
                m.name,
                f.name,
                py_repr(v)
            ))
        };
        Ok(match f.ty {
            Ty::Boolean => Val::Bool(truthy(v)),
            Ty::Integer => match v {
                Value::Null | Value::Bool(false) => Val::Int(0),
                Value::Bool(true) => Val::Int(1),
                Value::Number(n) => Val::Int(
                    n.as_i64()
                        .unwrap_or_else(|| n.as_f64().unwrap_or(0.0).trunc() as i64),
                ),
                Value::String(s) => Val::Int(s.trim().parse().map_err(|_| {
                    OdooError::value(format!("invalid literal for int() with base 10: '{s}'"))
                })?),
                _ => return Err(wrong()),
            },
            Ty::Float | Ty::Monetary => {
                let x = match v {
                    Value::Null | Value::Bool(false) => 0.0,
                    Value::Bool(true) => 1.0,
                    Value::Number(n) => n.as_f64().unwrap_or(0.0),
                    Value::String(s) => s.trim().parse().map_err(|_| {
                        OdooError::value(format!("could not convert string to float: '{s}'"))
                    })?,
                    _ => return Err(wrong()),
                };
                Val::Float(f.digits.map_or(x, |d| round_to(x, d)))
            }
            _ if !truthy(v) && !matches!(v, Value::String(_)) => Val::Null,
            Ty::Char | Ty::Text | Ty::Html => match v {
                Value::String(s) => Val::Str(s.clone()),
                Value::Number(n) => Val::Str(n.to_string()),
                Value::Bool(true) => Val::Str("True".into()),
                _ => return Err(wrong()),
            },
            Ty::Selection => match v {
                Value::String(s) if s.is_empty() => Val::Null,
                Value::String(s) if f.selection.iter().any(|(k, _)| k == s) => Val::Str(s.clone()),
                _ => return Err(wrong()),
            },
            Ty::Date => match v {
                Value::String(s) if s.is_empty() => Val::Null,
                Value::String(s) => Val::Date(
                    NaiveDate::parse_from_str(s.get(..10).unwrap_or(s), DATE_FMT).map_err(
                        |_| {
                            OdooError::value(format!(
                                "time data '{s}' does not match format '%Y-%m-%d'"
                            ))
                        },
                    )?,
                ),
                _ => return Err(wrong()),
            },
            Ty::Datetime => match v {
                Value::String(s) if s.is_empty() => Val::Null,
                Value::String(s) => {
                    // Odoo keeps the first 19 characters (no fractions); the
                    // test-control API may set microseconds.
                    let parsed = if control {
                        parse_dt(s)
                    } else {
                        parse_dt(s.get(..19).unwrap_or(s))
                    };
                    Val::Dt(parsed.ok_or_else(|| {
                        OdooError::value(format!(
                            "time data '{s}' does not match format '%Y-%m-%d %H:%M:%S'"
                        ))
                    })?)
                }
                _ => return Err(wrong()),
            },
            Ty::Many2one => {
                let id = match v {
                    Value::Array(a) => a.first().and_then(as_i64),
                    x => as_i64(x),
                };
                Val::Int(id.ok_or_else(wrong)?)
            }
            Ty::One2many => unreachable!("one2many values are commands"),
        })
    }

    fn not_null_error(m: &Model, f: &Field) -> OdooError {
        OdooError::validation(format!(
            "The operation cannot be completed:\n- Create/update: a mandatory field is not \
             set.\n- Delete: another model requires the record being deleted. If possible, \
             archive it instead.\n\nModel: {} ({})\nField: {} ({})\n",
            m.description, m.name, f.string, f.name
        ))
    }

    fn fk_error(m: &Model, f: &Field) -> OdooError {
        OdooError::validation(format!(
            "The operation cannot be completed: another model requires the record being \
             deleted. If possible, archive it instead.\n\nModel: {} ({})\nConstraint: \
             {}_{}_fkey\n",
            m.description,
            m.name,
            m.table(),
            f.name
        ))
    }

    /// Converts `vals` for `m`: stored column values, one2many commands, and
    /// (test control only) explicit `create_date` / `write_date`.
    #[allow(clippy::type_complexity)]
    fn prepare(
        &self,
        m: &Model,
        vals: &Map<String, Value>,
        control: bool,
    ) -> OResult<(Row, Vec<(Field, Value)>)> {
        let mut row = Row::new();
        let mut x2many = Vec::new();
        for (k, v) in vals {
            let f = m.field(k).ok_or_else(|| {
                OdooError::value(format!("Invalid field '{k}' on model '{}'", m.name))
            })?;
            if f.ty == Ty::One2many {
                x2many.push((f.clone(), v.clone()));
            } else if matches!(f.name, "create_date" | "write_date") {
                if control {
                    row.insert(f.name, self.convert_in(m, f, v, true)?);
                }
            } else if !f.is_magic() && !f.computed {
                row.insert(f.name, self.convert_in(m, f, v, control)?);
            }
        }
        Ok((row, x2many))
    }

    /// Required and foreign-key checks on the columns in `row` (the INSERT /
    /// UPDATE constraints, reported the way `_as_validation_error` does).
    fn check_row(&self, m: &Model, row: &Row, all: bool) -> OResult<()> {
        for f in &m.fields {
            let v = row.get(f.name);
            if f.required && f.store && !f.computed && f.name != "id" {
                match v {
                    Some(Val::Null) => return Err(Self::not_null_error(m, f)),
                    None if all => return Err(Self::not_null_error(m, f)),
                    _ => {}
                }
            }
            if let (Ty::Many2one, Some(Val::Int(r))) = (f.ty, v)
                && !self.exists(f.relation.expect("relation"), *r)
            {
                return Err(Self::fk_error(m, f));
            }
        }
        Ok(())
    }

    fn default_val(&self, f: &Field, ts: NaiveDateTime) -> Val {
        match f.default {
            Default::None => Val::Null,
            Default::Bool(b) => Val::Bool(b),
            Default::Int(i) => Val::Int(i),
            Default::Float(x) => Val::Float(x),
            Default::Str(s) => Val::Str(s.into()),
            Default::Now => Val::Dt(ts.with_nanosecond(0).expect("valid")),
        }
    }

    /// `create(vals_list)`: one transaction at `ts`.
    pub(crate) fn create(
        &mut self,
        model: &str,
        vals_list: &[Map<String, Value>],
        ts: NaiveDateTime,
        control: bool,
    ) -> OResult<Vec<i64>> {
        let m = self.model(model)?;
        let mut ids = Vec::new();
        for vals in vals_list {
            let (mut row, x2many) = self.prepare(&m, vals, control)?;
            for f in &m.fields {
                if f.store && !f.is_magic() && !row.contains_key(f.name) {
                    let d = if f.computed {
                        Val::Float(0.0)
                    } else {
                        self.default_val(f, ts)
                    };
                    row.insert(f.name, d);
                }
            }
            self.create_hooks(&m, &mut row);
            self.check_row(&m, &row, true)?;
            row.entry("create_date").or_insert(Val::Dt(ts));
            row.entry("write_date").or_insert(Val::Dt(ts));
            let id = self.alloc_id(model);
            self.insert_row(model, id, row);
            for (f, cmds) in x2many {
                self.apply_x2many(&f, id, &cmds, ts, control)?;
            }
            self.after_write(model, &[id], ts);
            ids.push(id);
        }
        Ok(ids)
    }

    /// Defaults that depend on other values (sequence, product-based line values).
    fn create_hooks(&mut self, m: &Model, row: &mut Row) {
        match m.name {
            "sale.order" if row.get("name") == Some(&Val::Str("New".into())) => {
                self.order_seq += 1;
                row.insert("name", Val::Str(format!("S{:05}", self.order_seq)));
            }
            "sale.order.line" => {
                let product = match row.get("product_id") {
                    Some(Val::Int(p)) if self.exists("product.product", *p) => Some(*p),
                    _ => None,
                };
                if let Some(p) = product {
                    if row.get("name") == Some(&Val::Null) {
                        let dn = self.display_name("product.product", p);
                        row.insert("name", Val::Str(dn));
                    }
                    if row.get("price_unit") == Some(&Val::Null) {
                        let price = self.get("product.product", p, "list_price").clone();
                        row.insert("price_unit", price);
                    }
                }
            }
            _ => {}
        }
    }

    fn missing_check(&self, model: &str, ids: &[i64]) -> OResult<()> {
        let missing: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|i| !self.exists(model, *i))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(OdooError::missing(model, &missing, self.uid))
        }
    }

    /// `write(vals)` on `ids`: bumps `write_date` to `ts` even when no value changes.
    pub(crate) fn write(
        &mut self,
        model: &str,
        ids: &[i64],
        vals: &Map<String, Value>,
        ts: NaiveDateTime,
        control: bool,
    ) -> OResult<()> {
        let m = self.model(model)?;
        self.missing_check(model, ids)?;
        let (row, x2many) = self.prepare(&m, vals, control)?;
        self.check_row(&m, &row, false)?;
        let mut touched_orders = BTreeSet::new();
        for id in ids {
            if model == "sale.order.line"
                && let Some(o) = self.get_id(model, *id, "order_id")
            {
                touched_orders.insert(o);
            }
            let r = self.row_mut(model, *id).expect("checked");
            for (k, v) in &row {
                r.insert(k, v.clone());
            }
            if !row.contains_key("write_date") {
                r.insert("write_date", Val::Dt(ts));
            }
            for (f, cmds) in &x2many {
                self.apply_x2many(f, *id, cmds, ts, control)?;
            }
        }
        self.after_write(model, ids, ts);
        self.recompute_orders(&touched_orders, ts);
        Ok(())
    }

    /// one2many commands (`Command.create/update/delete/unlink/link/clear/set`).
    fn apply_x2many(
        &mut self,
        f: &Field,
        parent: i64,
        cmds: &Value,
        ts: NaiveDateTime,
        control: bool,
    ) -> OResult<()> {
        let rel = f.relation.expect("relation");
        let inv = f.inverse.expect("inverse");
        let cascade = self.model(rel)?.field(inv).map(|x| x.ondelete) == Some(OnDelete::Cascade);
        let bad = || OdooError::value(format!("Invalid command for {}: {}", f.name, py_repr(cmds)));
        let Value::Array(list) = cmds else {
            return if truthy(cmds) { Err(bad()) } else { Ok(()) };
        };
        // A bare id list means `set`.
        if list.iter().all(|c| as_i64(c).is_some()) {
            let ids = ids_arg(cmds)?;
            return self.x2many_set(f, parent, &ids, cascade, ts);
        }
        let link = |parent: i64| {
            let mut v = Map::new();
            v.insert(inv.to_string(), Value::from(parent));
            v
        };
        for c in list {
            let Value::Array(c) = c else {
                return Err(bad());
            };
            let code = c.first().and_then(as_i64).ok_or_else(bad)?;
            let id = c.get(1).and_then(as_i64).unwrap_or(0);
            let obj = |i: usize| match c.get(i) {
                Some(Value::Object(o)) => Ok(o.clone()),
                _ => Err(bad()),
            };
            match code {
                0 => {
                    let mut vals = obj(2)?;
                    vals.extend(link(parent));
                    self.create(rel, &[vals], ts, control)?;
                }
                1 => self.write(rel, &[id], &obj(2)?, ts, control)?,
                2 => self.unlink(rel, &[id], ts)?,
                3 => self.x2many_remove(rel, inv, &[id], cascade, ts)?,
                4 => self.write(rel, &[id], &link(parent), ts, control)?,
                5 => {
                    let current = self.children(f, parent);
                    self.x2many_remove(rel, inv, &current, cascade, ts)?;
                }
                6 => {
                    let ids = ids_arg(c.get(2).unwrap_or(&Value::Null))?;
                    self.x2many_set(f, parent, &ids, cascade, ts)?;
                }
                _ => return Err(bad()),
            }
        }
        Ok(())
    }

    fn x2many_set(
        &mut self,
        f: &Field,
        parent: i64,
        ids: &[i64],
        cascade: bool,
        ts: NaiveDateTime,
    ) -> OResult<()> {
        let rel = f.relation.expect("relation");
        let inv = f.inverse.expect("inverse");
        let drop: Vec<i64> = self
            .children(f, parent)
            .into_iter()
            .filter(|c| !ids.contains(c))
            .collect();
        self.x2many_remove(rel, inv, &drop, cascade, ts)?;
        let mut v = Map::new();
        v.insert(inv.to_string(), Value::from(parent));
        self.write(rel, ids, &v, ts, false)
    }

    /// Unlinking from a one2many whose inverse is `ondelete='cascade'` deletes.
    fn x2many_remove(
        &mut self,
        rel: &str,
        inv: &str,
        ids: &[i64],
        cascade: bool,
        ts: NaiveDateTime,
    ) -> OResult<()> {
        if cascade {
            self.unlink(rel, ids, ts)
        } else {
            let mut v = Map::new();
            v.insert(inv.to_string(), Value::Bool(false));
            self.write(rel, ids, &v, ts, false)
        }
    }

    /// Stored computes after `ids` of `model` were created or written.
    fn after_write(&mut self, model: &str, ids: &[i64], ts: NaiveDateTime) {
        match model {
            "sale.order.line" => {
                let mut orders = BTreeSet::new();
                for id in ids {
                    let qty = self.float(model, *id, "product_uom_qty");
                    let price = self.float(model, *id, "price_unit");
                    let sub = round_to(qty * price, 2);
                    if let Some(r) = self.row_mut(model, *id) {
                        r.insert("price_subtotal", Val::Float(sub));
                    }
                    if let Some(o) = self.get_id(model, *id, "order_id") {
                        orders.insert(o);
                    }
                }
                self.recompute_orders(&orders, ts);
            }
            "sale.order" => {
                let orders = ids.iter().copied().collect();
                self.recompute_orders(&orders, ts);
            }
            _ => {}
        }
    }

    fn float(&self, model: &str, id: i64, field: &str) -> f64 {
        match self.get(model, id, field) {
            Val::Float(x) => *x,
            Val::Int(i) => *i as f64,
            _ => 0.0,
        }
    }

    /// `sale.order.amount_total` (stored compute). A changed total is written
    /// by the ORM and so bumps the order's `write_date`.
    fn recompute_orders(&mut self, orders: &BTreeSet<i64>, ts: NaiveDateTime) {
        for o in orders {
            if !self.exists("sale.order", *o) {
                continue;
            }
            let total: f64 = self
                .table("sale.order.line")
                .rows
                .values()
                .filter(|r| r.get("order_id") == Some(&Val::Int(*o)))
                .map(|r| match r.get("price_subtotal") {
                    Some(Val::Float(x)) => *x,
                    _ => 0.0,
                })
                .sum();
            let total = Val::Float(round_to(total, 2));
            if self.get("sale.order", *o, "amount_total") != &total {
                let r = self.row_mut("sale.order", *o).expect("exists");
                r.insert("amount_total", total);
                r.insert("write_date", Val::Dt(ts));
            }
        }
    }

    /// `unlink()`: hard delete; database cascades / set-null / restrict on
    /// referencing rows (which leave no trace and bump nothing).
    pub(crate) fn unlink(&mut self, model: &str, ids: &[i64], ts: NaiveDateTime) -> OResult<()> {
        self.model(model)?;
        self.missing_check(model, ids)?;
        // Closure of cascaded deletions.
        let mut doomed: BTreeMap<&'static str, BTreeSet<i64>> = BTreeMap::new();
        let mut queue: Vec<(&'static str, i64)> = Vec::new();
        let key = self.models.get_key_value(model).expect("known").0;
        for id in ids {
            queue.push((key, *id));
        }
        let models = self.models.clone();
        while let Some((mname, id)) = queue.pop() {
            if !doomed.entry(mname).or_default().insert(id) {
                continue;
            }
            for other in models.values() {
                for f in &other.fields {
                    if f.ty == Ty::Many2one
                        && f.relation == Some(mname)
                        && f.ondelete == OnDelete::Cascade
                    {
                        for (cid, r) in &self.table(other.name).rows {
                            if r.get(f.name) == Some(&Val::Int(id)) {
                                queue.push((other.name, *cid));
                            }
                        }
                    }
                }
            }
        }
        // Restrict / set null from rows that survive.
        let mut set_null = Vec::new();
        for other in models.values() {
            let surviving = |cid: &i64| !doomed.get(other.name).is_some_and(|d| d.contains(cid));
            for f in &other.fields {
                let Some(rel) = f.relation.filter(|_| f.ty == Ty::Many2one) else {
                    continue;
                };
                let Some(targets) = doomed.get(rel) else {
                    continue;
                };
                for (cid, r) in &self.table(other.name).rows {
                    if let Some(Val::Int(t)) = r.get(f.name)
                        && targets.contains(t)
                        && surviving(cid)
                    {
                        match f.ondelete {
                            OnDelete::Restrict | OnDelete::Cascade => {
                                return Err(Self::fk_error(other, f));
                            }
                            OnDelete::SetNull => set_null.push((other.name, *cid, f.name)),
                        }
                    }
                }
            }
        }
        let mut orders = BTreeSet::new();
        if model == "sale.order.line" {
            for id in ids {
                if let Some(o) = self.get_id(model, *id, "order_id") {
                    orders.insert(o);
                }
            }
        }
        for (mname, set) in &doomed {
            for id in set {
                self.remove_row(mname, *id);
            }
        }
        for (mname, cid, fname) in set_null {
            if let Some(r) = self.row_mut(mname, cid) {
                r.insert(fname, Val::Null);
            }
        }
        self.recompute_orders(&orders, ts);
        Ok(())
    }
}
