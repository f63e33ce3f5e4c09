//! Entry points for the fuzz targets (`fuzz/`, cargo-fuzz) and the random-input tests
//! of the normal suite (`tests/it/web/fuzz_inputs.rs`): each takes arbitrary bytes, runs them
//! through the same functions a request reaches, and must return without panicking.
//! Not an API: hidden from the docs and may change with the code it drives.

use std::time::Duration;

use serde_json::Value;

use crate::api::extract::parse_json;
use crate::auth::token::Keys;
use crate::sync::cursor::{Cursor, Position, scope_hash};
use crate::sync::push::PushRequest;
use crate::sync::registry::{Column, Kind, Table};
use crate::sync::rules::Rule;
use crate::sync::validate;

/// The signing keys the targets use (any fixed secret).
fn keys() -> Keys {
    Keys::new(b"fuzzing-secret-0123456789abcdef", Duration::from_secs(60))
}

/// Decodes `data` as a pull cursor (`Cursor::decode`, as `POST /sync/pull` does); a
/// cursor the server made from the same bytes decodes to what it encoded.
pub fn cursor_decode(data: &[u8]) {
    let keys = keys();
    let text = String::from_utf8_lossy(data);
    if let Ok(cursor) = Cursor::decode(&text, &keys) {
        // Only a MACed cursor decodes: it must encode back to an equivalent one.
        let again = Cursor::decode(&cursor.encode(&keys), &keys);
        assert_eq!(
            again.ok(),
            Some(cursor),
            "a decoded cursor does not round-trip"
        );
    }
    // Cursors built from the input round-trip exactly.
    if data.len() >= 32 {
        let word = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&data[i..i + 8]);
            u64::from_be_bytes(b)
        };
        let mut epoch = [0u8; 16];
        epoch.copy_from_slice(&data[..16]);
        let cursor = Cursor {
            epoch: uuid::Uuid::from_bytes(epoch),
            position: Position {
                xid: word(16),
                seq: i64::from_be_bytes(word(24).to_be_bytes()),
            },
            scope: scope_hash(&text, None, &[]),
            walk: (data.len() >= 48).then(|| crate::sync::cursor::Walk {
                table: text.chars().take(15).collect(),
                after: Some(uuid::Uuid::from_bytes(epoch)),
            }),
        };
        let encoded = cursor.encode(&keys);
        assert_eq!(Cursor::decode(&encoded, &keys).ok(), Some(cursor));
    }
}

/// The table pushed rows are checked against: one column of every kind.
fn table() -> Table {
    let col = |name: &str, kind: Kind, nullable: bool| Column {
        name: name.into(),
        kind,
        nullable,
        has_default: false,
    };
    Table {
        name: "fuzzed".into(),
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
            col("name", Kind::Text, true),
            col("parent_id", Kind::Uuid, true),
            col("position", Kind::Int4, true),
            col("total", Kind::Int8, true),
            col("amount", Kind::Numeric, false),
            col("flag", Kind::Bool, true),
            col("payload", Kind::Json, true),
            col("seen_at", Kind::Timestamptz, true),
            col("shape", Kind::Other("point".into()), true),
        ],
        parents: vec![],
        rank: 0,
    }
}

/// Parses `data` as a push body (the route's extractor) and validates every row of
/// every table against a table with a column of each kind, as a push does before it
/// writes: type checks, sizes, the timestamps and ids a row carries.
pub fn push_validate(data: &[u8]) {
    let Ok(request) = parse_json::<PushRequest>(data) else {
        return;
    };
    let table = table();
    for rows in request.changes.values() {
        let rows: &[Value] = match rows {
            Value::Array(rows) => rows,
            other => std::slice::from_ref(other),
        };
        for raw in rows {
            let _ = validate::raw_id(raw);
            if let Ok(row) = validate::pushed_row(&table, raw, "default") {
                let _ = validate::check_sizes(&row, 64);
                // Comparing values (conflict detection) is symmetric and never panics.
                for (name, a) in &row.values {
                    let column = table.column(name).expect("validated columns exist");
                    for b in row.values.values() {
                        assert_eq!(
                            validate::same_value(&column.kind, Some(a), Some(b)),
                            validate::same_value(&column.kind, Some(b), Some(a)),
                            "same_value is not symmetric for {name}: {a} / {b}"
                        );
                    }
                }
            }
        }
    }
}
