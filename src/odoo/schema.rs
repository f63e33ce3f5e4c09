//! Mirror tables: the name of a model's table, the fields read from Odoo and their
//! column types, the DDL that creates or widens a table and registers it for sync,
//! and the conversion of an Odoo record into a row (many2one as the id, x2many as id
//! arrays, Odoo's `false` as NULL, datetimes as UTC).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::PgPool;

use super::models;
use crate::db::sql::Ident;

pub use super::field_type::FieldType;

/// Columns every mirror table has besides the mirrored fields.
pub const MIRROR_COLUMNS: [&str; 10] = [
    "id",
    "tenant_id",
    "version",
    "updated_at",
    "deleted",
    "odoo_connection_id",
    "odoo_id",
    "odoo_sync_status",
    "odoo_sync_error",
    "odoo_raw",
];

/// PostgreSQL's system columns: no table may have a column of these names.
const SYSTEM_COLUMNS: [&str; 6] = ["tableoid", "xmin", "cmin", "xmax", "cmax", "ctid"];

/// One mirrored field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: FieldType,
    /// The target model of a relational field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relation: Option<String>,
    /// Whether a device's value is sent to Odoo on write-back.
    #[serde(default)]
    pub writable: bool,
}

/// `res.partner` → `odoo_res_partner`.
pub fn table_name(model: &str) -> String {
    format!("odoo_{}", model.replace('.', "_"))
}

/// Tables of the mirror's own bookkeeping, which no model may map to.
const RESERVED_TABLES: [&str; 4] = [
    "odoo_connections",
    "odoo_model_state",
    "odoo_batches",
    "odoo_outbox",
];

/// Whether a model name is safe to turn into a table name: Odoo's dotted lower-case
/// names, never one of the mirror's own tables.
pub fn valid_model(model: &str) -> bool {
    model.contains('.')
        && model.len() <= 50
        && model.split('.').all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
        && !RESERVED_TABLES.contains(&table_name(model).as_str())
}

fn valid_field(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 60
        && name.as_bytes()[0].is_ascii_lowercase()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !MIRROR_COLUMNS.contains(&name)
        && !SYSTEM_COLUMNS.contains(&name)
        && !name.ends_with("_uuid")
}

/// The fields to mirror for `model`, from `fields_get` when the server answered it.
/// Default models keep their fixed list (narrowed to what this server has, so no
/// call asks for a field it lacks); others take every stored field of a mirrored type.
pub fn choose_fields(model: &str, fields_get: Option<&Map<String, Value>>) -> Vec<FieldSpec> {
    let attr = |name: &str, key: &str| {
        fields_get
            .and_then(|m| m.get(name))
            .and_then(|f| f.get(key))
            .cloned()
    };
    let writable_list = models::curated_writable(model);
    if let Some(list) = models::curated(model) {
        return list
            .iter()
            .filter(|(name, _)| fields_get.is_none_or(|m| m.contains_key(*name)))
            .map(|(name, ty)| FieldSpec {
                name: name.to_string(),
                ty: *ty,
                relation: attr(name, "relation")
                    .and_then(|v| v.as_str().map(str::to_string))
                    .or_else(|| models::curated_relation(model, name).map(str::to_string)),
                writable: writable_list.is_some_and(|w| w.contains(name))
                    && attr(name, "readonly").and_then(|v| v.as_bool()) != Some(true),
            })
            .collect();
    }
    let Some(all) = fields_get else {
        return Vec::new();
    };
    let mut out: Vec<FieldSpec> = all
        .iter()
        .filter(|(name, _)| valid_field(name))
        .filter(|(_, f)| f.get("store").and_then(Value::as_bool) != Some(false))
        .filter_map(|(name, f)| {
            let ty = FieldType::parse(f.get("type")?.as_str()?)?;
            Some(FieldSpec {
                name: name.clone(),
                ty,
                relation: f
                    .get("relation")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                writable: f.get("readonly").and_then(Value::as_bool) != Some(true)
                    && !matches!(ty, FieldType::One2many | FieldType::Many2many),
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The companion column a device uses to point a many2one at a row that has no Odoo
/// id yet: `order_id` → `order_uuid`.
pub fn companion_column(field: &str) -> String {
    format!("{}_uuid", field.strip_suffix("_id").unwrap_or(field))
}

/// How a mirror table is registered for sync.
pub struct TableAccess<'a> {
    pub read_roles: &'a [String],
    pub write_roles: &'a [String],
}

/// Creates `model`'s table if missing, adds columns it lacks, and registers it for
/// sync (with the guard and outbox triggers). `mirrored` are every model of the
/// connection, so many2one fields of writable tables get companion uuid columns
/// referencing the target's table. Runs under a lock in one transaction; returns
/// whether anything changed (the registry must then be reloaded).
pub async fn ensure_table(
    pool: &PgPool,
    model: &str,
    fields: &[FieldSpec],
    access: &TableAccess<'_>,
    mirrored: &[String],
) -> anyhow::Result<bool> {
    let table = table_name(model);
    let t = Ident(&table);
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('nas_sync.odoo_schema'))")
        .execute(&mut *tx)
        .await?;
    let existing = columns_of(&mut tx, &table).await?;
    let mut changed = false;
    if existing.is_empty() {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE {t} (
                id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                tenant_id text NOT NULL,
                version bigint NOT NULL DEFAULT 1,
                updated_at timestamptz NOT NULL DEFAULT now(),
                deleted boolean NOT NULL DEFAULT false,
                odoo_connection_id uuid,
                odoo_id bigint,
                odoo_sync_status text NOT NULL DEFAULT 'synced'
                    CHECK (odoo_sync_status IN ('synced', 'pending', 'failed')),
                odoo_sync_error text,
                odoo_raw jsonb
            )"
        )))
        .execute(&mut *tx)
        .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE UNIQUE INDEX {} ON {t} (odoo_connection_id, odoo_id)",
            Ident(&format!("{table}_odoo_id"))
        )))
        .execute(&mut *tx)
        .await?;
        changed = true;
    }
    let writable = !access.write_roles.is_empty();
    for f in fields {
        if !existing.contains(&f.name) {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "ALTER TABLE {t} ADD COLUMN {} {}",
                Ident(&f.name),
                f.ty.sql_type()
            )))
            .execute(&mut *tx)
            .await?;
            changed = true;
        }
        let Some(target) = f.relation.as_deref() else {
            continue;
        };
        let companion = companion_column(&f.name);
        let target_table = table_name(target);
        let target_exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM information_schema.tables
                            WHERE table_schema = current_schema() AND table_name = $1)",
        )
        .bind(&target_table)
        .fetch_one(&mut *tx)
        .await?;
        if writable
            && f.ty == FieldType::Many2one
            && mirrored.iter().any(|m| m == target)
            && (target_table == table || target_exists)
            && !existing.contains(&companion)
        {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "ALTER TABLE {t} ADD COLUMN {} uuid REFERENCES {}(id)",
                Ident(&companion),
                Ident(&target_table)
            )))
            .execute(&mut *tx)
            .await?;
            changed = true;
        }
    }
    let registered: Option<(Vec<String>, Vec<String>)> =
        sqlx::query_as("SELECT read_roles, write_roles FROM sync_tables WHERE table_name = $1")
            .bind(&table)
            .fetch_optional(&mut *tx)
            .await?;
    match registered {
        None => {
            sqlx::query("SELECT sync_register($1, 'server_wins', $2, $3)")
                .bind(&table)
                .bind(access.read_roles)
                .bind(access.write_roles)
                .execute(&mut *tx)
                .await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE TRIGGER {} AFTER INSERT OR UPDATE ON {t} FOR EACH ROW EXECUTE FUNCTION odoo_enqueue('{model}')",
                Ident(&format!("{table}_odoo_enqueue")),
            )))
            .execute(&mut *tx)
            .await?;
            changed = true;
        }
        Some((read, write)) if read != access.read_roles || write != access.write_roles => {
            sqlx::query(
                "UPDATE sync_tables SET read_roles = $2, write_roles = $3 WHERE table_name = $1",
            )
            .bind(&table)
            .bind(access.read_roles)
            .bind(access.write_roles)
            .execute(&mut *tx)
            .await?;
            if read != access.read_roles {
                // A role that may now read an existing table needs its old rows:
                // cursors of full-table-set pulls are voided (RESYNC_REQUIRED).
                sqlx::query(
                    "INSERT INTO server_meta (key, value) VALUES ('roles_version', '1')
                     ON CONFLICT (key) DO UPDATE SET value = (server_meta.value::bigint + 1)::text",
                )
                .execute(&mut *tx)
                .await?;
            }
            changed = true;
        }
        Some(_) => {}
    }
    // The guard learns which columns devices may write (model and column names are
    // checked identifiers: lower-case letters, digits, dots and underscores).
    let mut writable: Vec<String> = Vec::new();
    if !access.write_roles.is_empty() {
        let columns = columns_of(&mut tx, &table).await?;
        // A default model's writable fields, whatever this connection's Odoo has (the
        // trigger is shared by every connection mirroring the model).
        let curated = models::curated_writable(model).unwrap_or_default();
        let names = fields
            .iter()
            .filter(|f| f.writable)
            .map(|f| f.name.as_str())
            .chain(curated.iter().copied());
        for name in names {
            if writable.iter().any(|w| w == name) || !columns.iter().any(|c| c == name) {
                continue;
            }
            writable.push(name.to_string());
            let companion = companion_column(name);
            if columns.contains(&companion) {
                writable.push(companion);
            }
        }
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE OR REPLACE TRIGGER {} BEFORE INSERT OR UPDATE ON {t}
         FOR EACH ROW EXECUTE FUNCTION odoo_guard('{model}', '{}')",
        Ident(&format!("{table}_odoo_guard")),
        writable.join(",")
    )))
    .execute(&mut *tx)
    .await?;
    if changed {
        sqlx::query(
            "INSERT INTO server_meta (key, value) VALUES ('registry_version', '1')
             ON CONFLICT (key) DO UPDATE SET value = (server_meta.value::bigint + 1)::text",
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(changed)
}

/// The columns a table has now (none when it does not exist).
async fn columns_of(conn: &mut sqlx::PgConnection, table: &str) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = $1",
    )
    .bind(table)
    .fetch_all(conn)
    .await
}

/// An Odoo record as a row of its mirror table: `odoo_id`, each field's column value,
/// and the record itself as `odoo_raw`.
pub fn to_row(
    fields: &[FieldSpec],
    record: &Map<String, Value>,
) -> Result<Map<String, Value>, String> {
    let odoo_id = record
        .get("id")
        .and_then(Value::as_i64)
        .ok_or("a record without an integer id")?;
    let mut row = Map::new();
    row.insert("odoo_id".into(), Value::from(odoo_id));
    for f in fields {
        let v = record.get(&f.name).cloned().unwrap_or(Value::Null);
        let converted =
            convert(f, v).map_err(|e| format!("record {odoo_id}, field {}: {e}", f.name))?;
        row.insert(f.name.clone(), converted);
    }
    row.insert("odoo_raw".into(), Value::Object(record.clone()));
    Ok(row)
}

pub fn convert(f: &FieldSpec, v: Value) -> Result<Value, String> {
    use FieldType::*;
    if f.ty == Boolean {
        return Ok(match v {
            Value::Bool(b) => Value::Bool(b),
            Value::Null => Value::Null,
            other => return Err(format!("expected a boolean, got {other}")),
        });
    }
    // Odoo sends `false` for every empty non-boolean value.
    if matches!(v, Value::Bool(false) | Value::Null) {
        return Ok(Value::Null);
    }
    Ok(match f.ty {
        Many2one => match v {
            Value::Array(pair) => pair.first().cloned().unwrap_or(Value::Null),
            n @ Value::Number(_) => n,
            other => return Err(format!("expected a many2one, got {other}")),
        },
        One2many | Many2many => match v {
            Value::Array(ids) if ids.iter().all(Value::is_i64) => Value::Array(ids),
            other => return Err(format!("expected a list of ids, got {other}")),
        },
        Datetime => match v {
            Value::String(s) => Value::String(odoo_datetime_to_rfc3339(&s)?),
            other => return Err(format!("expected a datetime string, got {other}")),
        },
        Integer | Float | Monetary => match v {
            n @ Value::Number(_) => n,
            other => return Err(format!("expected a number, got {other}")),
        },
        Json => v,
        Char | Text | Html | Selection | Reference | Date => match v {
            s @ Value::String(_) => s,
            other => Value::String(other.to_string()),
        },
        Boolean => v,
    })
}

/// `"2026-11-21 10:15:00"` (UTC, no zone; microseconds tolerated) → RFC 3339.
pub fn odoo_datetime_to_rfc3339(s: &str) -> Result<String, String> {
    let parsed = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
        .map_err(|e| format!("'{s}' is not an Odoo datetime: {e}"))?;
    Ok(parsed
        .and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(name: &str, ty: FieldType) -> FieldSpec {
        FieldSpec {
            name: name.into(),
            ty,
            relation: None,
            writable: false,
        }
    }

    #[test]
    fn records_become_rows() {
        let fields = vec![
            spec("name", FieldType::Char),
            spec("email", FieldType::Char),
            spec("active", FieldType::Boolean),
            spec("parent_id", FieldType::Many2one),
            spec("order_line", FieldType::One2many),
            spec("write_date", FieldType::Datetime),
            spec("amount", FieldType::Monetary),
        ];
        let rec = json!({"id": 7, "name": "Acme", "email": false, "active": false,
            "parent_id": [3, "Parent"], "order_line": [1, 2], "write_date": "2026-11-21 10:15:00",
            "amount": 0.0});
        let row = to_row(&fields, rec.as_object().unwrap()).unwrap();
        assert_eq!(row["odoo_id"], json!(7));
        assert_eq!(row["email"], Value::Null);
        assert_eq!(row["active"], json!(false));
        assert_eq!(row["parent_id"], json!(3));
        assert_eq!(row["order_line"], json!([1, 2]));
        assert_eq!(row["write_date"], json!("2026-11-21T10:15:00Z"));
        assert_eq!(row["amount"], json!(0.0));
        assert_eq!(row["odoo_raw"], rec);
        let bad = json!({"id": 1, "order_line": "x"});
        assert!(to_row(&fields, bad.as_object().unwrap()).is_err());
    }

    #[test]
    fn names_and_field_choice() {
        assert_eq!(table_name("sale.order.line"), "odoo_sale_order_line");
        assert!(valid_model("res.partner"));
        assert!(!valid_model("res.partner; drop"));
        assert!(!valid_model("Res.Partner"));
        assert!(
            !valid_model("connections"),
            "no dot: could be a bookkeeping table"
        );
        assert!(!valid_model("model.state"), "maps to odoo_model_state");
        assert_eq!(companion_column("order_id"), "order_uuid");
        let fg = json!({"name": {"type": "char"}, "phone": {"type": "char"},
                        "image": {"type": "binary"}, "total": {"type": "float", "store": false},
                        "tenant_id": {"type": "char"}, "xmin": {"type": "integer"}, "x_rank": {"type": "integer", "readonly": true}});
        let fg = fg.as_object().unwrap();
        let custom = choose_fields("x.custom", Some(fg));
        let names: Vec<&str> = custom.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["name", "phone", "x_rank"]);
        assert!(!custom[2].writable);
        let partner = choose_fields("res.partner", Some(fg));
        let names: Vec<&str> = partner.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["name", "phone"]);
        assert_eq!(
            choose_fields("res.partner", None).len(),
            models::curated("res.partner").unwrap().len()
        );
    }
}
