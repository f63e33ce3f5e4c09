//! Checks a pushed row against its table's real columns: every key must be a column
//! (unknown ones are an error, never dropped), every value of the column's type.

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::registry::{Column, Kind, Table};

/// A row-level failure, reported in the push response's `errors`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowError {
    pub code: &'static str,
    pub message: String,
}

impl RowError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        RowError {
            code,
            message: message.into(),
        }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        RowError::new("VALIDATION_FAILED", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        RowError::new("FORBIDDEN", message)
    }
}

/// A pushed row after validation.
#[derive(Clone, Debug)]
pub struct PushedRow {
    pub id: Uuid,
    /// The version the device last saw; 0 for a new row.
    pub base_version: i64,
    pub updated_at: Option<DateTime<Utc>>,
    pub deleted: Option<bool>,
    /// Data columns the device sent, type-checked.
    pub values: Map<String, Value>,
}

/// Whether a JSON value holds a NUL character anywhere (PostgreSQL text and jsonb
/// cannot store one).
pub fn contains_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(contains_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}

/// The id of a raw row, if it has a readable one (for error reports).
pub fn raw_id(row: &Value) -> Option<String> {
    match row.get("id") {
        Some(Value::String(s)) if !s.contains('\0') => Some(s.clone()),
        Some(v @ Value::Number(_)) => Some(v.to_string()),
        _ => None,
    }
}

/// Validates one raw row for `table`, written by a caller of `tenant`.
pub fn pushed_row(table: &Table, raw: &Value, tenant: &str) -> Result<PushedRow, RowError> {
    let Value::Object(obj) = raw else {
        return Err(RowError::validation("a row must be a JSON object"));
    };
    if contains_nul(raw) {
        return Err(RowError::validation("text may not contain NUL characters"));
    }
    let id = match obj.get("id") {
        Some(Value::String(s)) => Uuid::parse_str(s)
            .map_err(|_| RowError::validation(format!("'id' must be a UUID, got '{s}'")))?,
        Some(_) => return Err(RowError::validation("'id' must be a UUID string")),
        None => return Err(RowError::validation("'id' is required")),
    };
    let base_version = match obj.get("version") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_i64()
            .filter(|n| *n >= 0)
            .ok_or_else(|| RowError::validation("'version' must be a non-negative integer"))?,
    };
    let updated_at = match obj.get("updated_at") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(parse_time(s).ok_or_else(|| {
            RowError::validation(format!(
                "'updated_at' must be an RFC 3339 timestamp, got '{s}'"
            ))
        })?),
        Some(_) => {
            return Err(RowError::validation(
                "'updated_at' must be an RFC 3339 timestamp",
            ));
        }
    };
    let deleted = match obj.get("deleted") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        // SQLite clients often store booleans as 0/1.
        Some(Value::Number(n)) if n.as_i64() == Some(0) => Some(false),
        Some(Value::Number(n)) if n.as_i64() == Some(1) => Some(true),
        Some(_) => return Err(RowError::validation("'deleted' must be a boolean")),
    };
    if let Some(t) = obj.get("tenant_id")
        && t.as_str() != Some(tenant)
        && !t.is_null()
    {
        return Err(RowError::forbidden("'tenant_id' is set by the server"));
    }

    let mut values = Map::new();
    for (key, value) in obj {
        if matches!(
            key.as_str(),
            "id" | "version" | "updated_at" | "deleted" | "tenant_id"
        ) {
            continue;
        }
        let Some(column) = table.column(key) else {
            return Err(RowError::new(
                "UNKNOWN_FIELD",
                format!("'{key}' is not a column of {}", table.name),
            ));
        };
        values.insert(key.clone(), check_value(column, value)?);
    }
    Ok(PushedRow {
        id,
        base_version,
        updated_at,
        deleted,
        values,
    })
}

/// The size of a value as stored: a string's bytes, any other value's JSON text.
pub fn value_bytes(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    match v {
        Value::String(s) => s.len(),
        other => {
            let mut count = Count(0);
            let _ = serde_json::to_writer(&mut count, other);
            count.0
        }
    }
}

/// Every value of `row` is at most `max` bytes (`NAS_SYNC_MAX_VALUE_BYTES`).
pub fn check_sizes(row: &PushedRow, max: usize) -> Result<(), RowError> {
    match row.values.iter().find(|(_, v)| value_bytes(v) > max) {
        Some((name, v)) => Err(RowError::validation(format!(
            "'{name}' holds {} bytes; a value may hold at most {max} (NAS_SYNC_MAX_VALUE_BYTES)",
            value_bytes(v)
        ))),
        None => Ok(()),
    }
}

/// Type-checks one value, returning it in the form PostgreSQL will accept.
fn check_value(column: &Column, value: &Value) -> Result<Value, RowError> {
    let bad = || {
        RowError::validation(format!(
            "'{}' must be {}{}",
            column.name,
            column.kind.describe(),
            if column.nullable { " or null" } else { "" }
        ))
    };
    if value.is_null() {
        return if column.nullable {
            Ok(Value::Null)
        } else {
            Err(bad())
        };
    }
    let ok = match &column.kind {
        Kind::Uuid => value.as_str().is_some_and(|s| Uuid::parse_str(s).is_ok()),
        Kind::Text => value.is_string(),
        Kind::Int4 => value.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
        Kind::Int8 => value.as_i64().is_some(),
        Kind::Bool => value.is_boolean(),
        Kind::Numeric => match value {
            Value::Number(_) => true,
            Value::String(s) => s.trim().parse::<f64>().is_ok_and(f64::is_finite),
            _ => false,
        },
        Kind::Json | Kind::Other(_) => true,
        Kind::Timestamptz => value.as_str().is_some_and(|s| parse_time(s).is_some()),
    };
    if !ok {
        return Err(bad());
    }
    // jsonb_populate_record reads a JSON string's text; a jsonb column keeps the JSON.
    Ok(value.clone())
}

/// Parses an RFC 3339 timestamp, rounded to microseconds as PostgreSQL stores it, so
/// a time compared in Rust is the same instant as the one stored.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc).round_subsecs(6))
}

/// Whether two values of a column are the same, comparing timestamps as instants,
/// numbers as numbers and UUIDs case-insensitively.
pub fn same_value(kind: &Kind, a: Option<&Value>, b: Option<&Value>) -> bool {
    let a = a.unwrap_or(&Value::Null);
    let b = b.unwrap_or(&Value::Null);
    if a == b {
        return true;
    }
    match kind {
        Kind::Timestamptz => match (
            a.as_str().and_then(parse_time),
            b.as_str().and_then(parse_time),
        ) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
        Kind::Numeric | Kind::Int4 | Kind::Int8 => match (decimal(a), decimal(b)) {
            (Some(x), Some(y)) => x == y,
            // Exponent notation: compare as floats.
            _ => matches!((as_f64(a), as_f64(b)), (Some(x), Some(y)) if x == y),
        },
        Kind::Uuid => match (a.as_str(), b.as_str()) {
            (Some(x), Some(y)) => x.eq_ignore_ascii_case(y),
            _ => false,
        },
        _ => false,
    }
}

/// A plain decimal number (JSON number, kept exactly, or numeric string) in canonical
/// form: no leading or trailing zeros, no negative zero. `None` for exponent notation.
fn decimal(v: &Value) -> Option<String> {
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        _ => return None,
    };
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(&text)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let body = match (int.is_empty(), frac.is_empty()) {
        (true, true) => return Some("0".into()),
        (_, true) => int.to_string(),
        (true, false) => format!("0.{frac}"),
        (false, false) => format!("{int}.{frac}"),
    };
    Some(if negative { format!("-{body}") } else { body })
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::rules::Rule;
    use serde_json::json;

    fn table() -> Table {
        let col = |name: &str, kind: Kind, nullable: bool| Column {
            name: name.into(),
            kind,
            nullable,
            has_default: false,
        };
        Table {
            name: "kpi_data".into(),
            rule: Rule::LatestWins,
            read_roles: vec![],
            write_roles: vec![],
            scope_column: Some("store_id".into()),
            urgent: false,
            columns: vec![
                col("id", Kind::Uuid, false),
                col("tenant_id", Kind::Text, false),
                col("version", Kind::Int8, false),
                col("updated_at", Kind::Timestamptz, false),
                col("deleted", Kind::Bool, false),
                col("store_id", Kind::Text, false),
                col("metric", Kind::Text, false),
                col("value", Kind::Numeric, true),
                col("position", Kind::Int4, true),
            ],
            parents: vec![],
            rank: 0,
        }
    }

    const ID: &str = "5b0c1f36-3d5c-4a3a-9d0c-4f7b2b1d8e11";

    #[test]
    fn accepts_a_well_formed_row() {
        let r = pushed_row(
            &table(),
            &json!({"id": ID, "version": 3, "updated_at": "2025-12-18T10:50:00Z", "metric": "m", "value": 1.5, "store_id": "s1"}),
            "default",
        )
        .unwrap();
        assert_eq!(r.base_version, 3);
        assert_eq!(r.values.len(), 3);
        assert!(r.updated_at.is_some());
    }

    #[test]
    fn rejects_unknown_fields_and_bad_types() {
        let t = table();
        let e = pushed_row(&t, &json!({"id": ID, "colour": "red"}), "default").unwrap_err();
        assert_eq!(e.code, "UNKNOWN_FIELD");
        assert!(e.message.contains("colour"));
        let e = pushed_row(&t, &json!({"id": ID, "metric": 5}), "default").unwrap_err();
        assert_eq!(e.code, "VALIDATION_FAILED");
        assert!(e.message.contains("metric"));
        let e = pushed_row(&t, &json!({"id": ID, "metric": null}), "default").unwrap_err();
        assert_eq!(e.code, "VALIDATION_FAILED");
        let e = pushed_row(&t, &json!({"id": ID, "position": 1u64 << 40}), "default").unwrap_err();
        assert_eq!(e.code, "VALIDATION_FAILED");
        let e = pushed_row(&t, &json!({"id": "nope"}), "default").unwrap_err();
        assert_eq!(e.code, "VALIDATION_FAILED");
        let e = pushed_row(&t, &json!({"id": ID, "tenant_id": "other"}), "default").unwrap_err();
        assert_eq!(e.code, "FORBIDDEN");
        let e =
            pushed_row(&t, &json!({"id": ID, "updated_at": "yesterday"}), "default").unwrap_err();
        assert_eq!(e.code, "VALIDATION_FAILED");
    }

    #[test]
    fn compares_values_by_meaning() {
        let ts = Kind::Timestamptz;
        assert!(same_value(
            &ts,
            Some(&json!("2025-01-01T00:00:00Z")),
            Some(&json!("2025-01-01T00:00:00+00:00"))
        ));
        assert!(same_value(
            &Kind::Numeric,
            Some(&json!(1.5)),
            Some(&json!("1.50"))
        ));
        assert!(!same_value(
            &Kind::Text,
            Some(&json!("a")),
            Some(&json!("b"))
        ));
        assert!(same_value(&Kind::Text, None, Some(&Value::Null)));
    }

    #[test]
    fn values_over_the_size_limit_are_refused() {
        let t = table();
        let fits = pushed_row(&t, &json!({"id": ID, "metric": "x".repeat(10)}), "default").unwrap();
        assert!(check_sizes(&fits, 10).is_ok());
        let big = pushed_row(&t, &json!({"id": ID, "metric": "x".repeat(11)}), "default").unwrap();
        let e = check_sizes(&big, 10).unwrap_err();
        assert_eq!(e.code, "VALIDATION_FAILED");
        assert!(
            e.message.contains("NAS_SYNC_MAX_VALUE_BYTES"),
            "{}",
            e.message
        );
        assert_eq!(value_bytes(&json!({"a": [1, 2]})), 11);
        assert_eq!(value_bytes(&json!("héllo")), 6);
    }
}
