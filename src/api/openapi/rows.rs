//! Typed rows: one schema per synced table, from the registry (column names, JSON
//! types, nullability, the sync columns), and `SyncChanges`, the object whose
//! properties are the tables, each an array of that table's rows. Pull answers and
//! push requests use it for `changes`, so generated clients get a class per table.
//! Tables added at run time (Odoo mirrors) appear once they exist: the document is
//! built from the registry at each request.

use serde_json::{Map, Value, json};

use crate::api::decimals::Decimals;
use crate::sync::registry::{Kind, Registry, Table};

/// The schema name of a table's row: `kpi_data` → `KpiDataRow`, `forms` →
/// `FormRow`, `odoo_res_partner` → `OdooResPartnerRow` (`…SyncedRow` when that name
/// is taken). Always `…Row`: a bare singular clashes in generated clients (`Form` is
/// Flutter's form widget, `Error` and `Type` are dart:core's).
pub fn row_schema_name(table: &str, taken: &Map<String, Value>) -> String {
    let singular = match table.strip_suffix('s') {
        Some(stem) if !table.ends_with("ss") && !table.ends_with("us") => stem,
        _ => table,
    };
    let pascal: String = singular
        .split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    let row = format!("{pascal}Row");
    if taken.contains_key(&row) {
        format!("{pascal}SyncedRow")
    } else {
        row
    }
}

/// The JSON schema of one column's values.
fn column_schema(kind: &Kind, nullable: bool, decimals: Decimals) -> Value {
    let mut s = match kind {
        Kind::Numeric if decimals == Decimals::String => {
            // No `format: decimal`: openapi-generator maps it to a double in Dart.
            json!({"type": "string",
                   "description": "A decimal as a string of its digits (`Nas-Sync-Decimals: string`); a push may send a number."})
        }
        Kind::Uuid => json!({"type": "string", "format": "uuid"}),
        Kind::Text => json!({"type": "string"}),
        Kind::Int4 => json!({"type": "integer", "format": "int32"}),
        Kind::Int8 => json!({"type": "integer", "format": "int64"}),
        Kind::Bool => json!({"type": "boolean"}),
        Kind::Numeric => json!({"type": "number"}),
        Kind::Timestamptz => json!({"type": "string", "format": "date-time"}),
        // Any JSON value (jsonb), or a type PostgreSQL checks.
        Kind::Json | Kind::Other(_) => json!({}),
    };
    if nullable && let Some(t) = s.get("type").cloned() {
        s["type"] = json!([t, "null"]);
    }
    s
}

/// One table's row. Required: `id` and every nullable data column, so that generated
/// clients send a null they hold (dart-dio and openapi-python-client leave out an
/// optional field that is null, and a push without a column leaves it as it was: a
/// field could not be cleared). Every row the server sends has them (a tombstone of a
/// row deleted in SQL carries them as null). Non-null columns stay optional: a
/// tombstone carries only the sync columns.
fn row_schema(table: &Table, decimals: Decimals) -> Value {
    let mut required = vec![json!("id")];
    required.extend(
        table
            .data_columns()
            .filter(|c| c.nullable && c.name != "tenant_id")
            .map(|c| json!(c.name)),
    );
    let mut props = Map::new();
    for c in &table.columns {
        if c.name == "tenant_id" {
            continue;
        }
        let mut s = column_schema(&c.kind, c.nullable, decimals);
        let about = match c.name.as_str() {
            "id" => "The row's id (a UUID the client generates for new rows).",
            "version" => {
                "Server-assigned, +1 per accepted write; push the version you last saw (0 for a new row)."
            }
            "updated_at" => {
                "The time of the change (device clock on push; capped at the server's clock)."
            }
            "deleted" => "A tombstone: the row was deleted.",
            _ => "",
        };
        if !about.is_empty() {
            s["description"] = json!(about);
        }
        props.insert(c.name.clone(), s);
    }
    json!({
        "type": "object",
        "description": format!("A row of `{}` (conflict rule `{}`).", table.name, table.rule.as_str()),
        "required": required,
        "properties": props,
    })
}

/// Adds the row schemas and `SyncChanges`, and points `changes` of the pull answer
/// and the push request at it.
pub fn add(doc: &mut Value, registry: &Registry, decimals: Decimals) {
    let mut changes = Map::new();
    let mut rows = Map::new();
    {
        let taken = doc["components"]["schemas"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for table in registry.in_write_order() {
            let name = row_schema_name(&table.name, &taken);
            changes.insert(
                table.name.clone(),
                json!({"type": "array", "items": {"$ref": format!("#/components/schemas/{name}")}}),
            );
            rows.insert(name, row_schema(table, decimals));
        }
    }
    let Some(schemas) = doc["components"]["schemas"].as_object_mut() else {
        return;
    };
    schemas.extend(rows);
    schemas.insert(
        "SyncChanges".into(),
        json!({
            "type": "object",
            "description": "Rows by table: each property is a synced table, an array of its rows (tombstones included).",
            "properties": changes,
        }),
    );
    for (schema, field) in [("PullResponse", "changes"), ("PushRequest", "changes")] {
        if let Some(props) = schemas
            .get_mut(schema)
            .and_then(|s| s.get_mut("properties"))
            .and_then(Value::as_object_mut)
        {
            props.insert(
                field.into(),
                json!({"$ref": "#/components/schemas/SyncChanges"}),
            );
        }
    }
    if let Some(applied) = schemas
        .get_mut("PushResponse")
        .and_then(|s| s.get_mut("properties"))
        .and_then(Value::as_object_mut)
    {
        applied.insert(
            "applied".into(),
            json!({"$ref": "#/components/schemas/SyncChanges"}),
        );
    }
    schemas.extend(ws_messages());
}

/// The WebSocket messages of docs/contract.md §6.
fn ws_messages() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "WsChanges".into(),
        json!({
            "type": "object",
            "description": "Sent within a second of a commit that changed rows the device may read: pull now.",
            "required": ["type", "tables"],
            "properties": {
                "type": {"type": "string", "enum": ["changes"]},
                "tables": {"type": "array", "items": {"type": "string"}}
            }
        }),
    );
    m.insert(
        "WsEvent".into(),
        json!({
            "type": "object",
            "description": "A row of an urgent table, or with `priority: high`, sent whole.",
            "required": ["type", "table", "record"],
            "properties": {
                "type": {"type": "string", "enum": ["event"]},
                "table": {"type": "string"},
                "record": {"type": "object", "additionalProperties": true}
            }
        }),
    );
    m.insert(
        "WsMessage".into(),
        json!({
            "description": "A message the server sends on `GET /api/v1/sync/ws`.",
            "oneOf": [
                {"$ref": "#/components/schemas/WsChanges"},
                {"$ref": "#/components/schemas/WsEvent"}
            ],
            "discriminator": {"propertyName": "type", "mapping": {
                "changes": "#/components/schemas/WsChanges",
                "event": "#/components/schemas/WsEvent"
            }}
        }),
    );
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_names_are_singular_pascal_case_and_never_collide() {
        let none = Map::new();
        assert_eq!(row_schema_name("kpi_data", &none), "KpiDataRow");
        assert_eq!(row_schema_name("forms", &none), "FormRow");
        assert_eq!(
            row_schema_name("submission_answers", &none),
            "SubmissionAnswerRow"
        );
        assert_eq!(
            row_schema_name("odoo_res_partner", &none),
            "OdooResPartnerRow"
        );
        assert_eq!(row_schema_name("address", &none), "AddressRow");
        let taken = Map::from_iter([("ConflictRow".to_string(), json!({}))]);
        assert_eq!(row_schema_name("conflicts", &taken), "ConflictSyncedRow");
    }

    #[test]
    fn nullable_columns_allow_null() {
        assert_eq!(
            column_schema(&Kind::Text, true, Decimals::Number),
            json!({"type": ["string", "null"]})
        );
        assert_eq!(
            column_schema(&Kind::Int8, false, Decimals::String),
            json!({"type": "integer", "format": "int64"})
        );
        assert_eq!(
            column_schema(&Kind::Numeric, true, Decimals::Number)["type"],
            json!(["number", "null"])
        );
        assert_eq!(
            column_schema(&Kind::Numeric, true, Decimals::String)["type"],
            json!(["string", "null"])
        );
    }
}
