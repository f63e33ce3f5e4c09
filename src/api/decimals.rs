//! Exact decimals for generated clients. PostgreSQL `numeric` values go out as JSON
//! numbers with every digit, but the clients apps generate decode a JSON number into
//! a double (Dart's `jsonDecode`, Python's `json`), so `12345678901234567.891` comes
//! back changed. A client that sends `Nas-Sync-Decimals: string` gets every numeric
//! column of the rows in pull and push answers (and in their conflicts) as a string
//! of the same digits, and the document at `?decimals=string` types those columns
//! `{"type": "string"}`, so the generated model holds a string.
//! Pushes take either form. Without the header nothing changes.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::AppError;
use crate::sync::registry::{Kind, Registry, Table};

/// The request header naming the form of decimals in answers.
pub const HEADER: &str = "nas-sync-decimals";

/// How numeric columns are written in answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Decimals {
    /// JSON numbers, every digit (the default).
    #[default]
    Number,
    /// JSON strings of the same digits.
    String,
}

impl Decimals {
    /// `string` or `number`, as the header and the document's query name them.
    pub fn parse(value: &str) -> Result<Decimals, AppError> {
        match value.trim() {
            "string" => Ok(Decimals::String),
            "number" => Ok(Decimals::Number),
            _ => Err(AppError::validation(
                "decimals",
                "the decimals form is \"string\" or \"number\"",
            )),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Decimals {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.headers.get(HEADER) {
            None => Ok(Decimals::Number),
            Some(v) => Decimals::parse(v.to_str().map_err(|_| {
                AppError::validation(HEADER, "the header is \"string\" or \"number\"")
            })?),
        }
    }
}

fn numeric_columns(table: &Table) -> impl Iterator<Item = &str> {
    table
        .columns
        .iter()
        .filter(|c| c.kind == Kind::Numeric)
        .map(|c| c.name.as_str())
}

/// Writes `row`'s numeric columns as strings (a JSON number keeps its digits:
/// serde_json is built with `arbitrary_precision`).
pub fn in_row(table: &Table, row: &mut Value) {
    let Some(obj) = row.as_object_mut() else {
        return;
    };
    for name in numeric_columns(table) {
        if let Some(v) = obj.get_mut(name)
            && let Value::Number(n) = v
        {
            *v = Value::String(n.to_string());
        }
    }
}

/// The same for a row rendered by PostgreSQL and passed through unparsed; rows of
/// tables without numeric columns are left as they are.
pub fn in_raw_rows(table: Option<&Table>, rows: &mut [Box<RawValue>]) {
    let Some(table) = table.filter(|t| numeric_columns(t).next().is_some()) else {
        return;
    };
    for raw in rows.iter_mut() {
        let Ok(mut row) = serde_json::from_str::<Value>(raw.get()) else {
            continue;
        };
        in_row(table, &mut row);
        if let Ok(text) = serde_json::to_string(&row)
            && let Ok(new) = RawValue::from_string(text)
        {
            *raw = new;
        }
    }
}

/// `in_row` for a row of the named table, when the registry knows it.
pub fn in_named_row(registry: &Registry, table: &str, row: &mut Value) {
    if let Some(t) = registry.get(table) {
        in_row(t, row);
    }
}
