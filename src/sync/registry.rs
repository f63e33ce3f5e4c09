//! The table registry: which tables sync, their rule, the roles that may read and
//! write them, their store scope, their real columns and the foreign keys between
//! them (parents are written before children). Loaded once at start from
//! `sync_tables` and the catalog, so adding a synced table is one migration.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use anyhow::{Context, bail};
use sqlx::PgPool;

use super::rules::Rule;
use crate::auth::Role;
use crate::db::sql::Ident;

/// How a column's JSON value is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Uuid,
    Text,
    Int4,
    Int8,
    Bool,
    Numeric,
    Json,
    Timestamptz,
    /// Any other type: passed to PostgreSQL, which has the last word.
    Other(String),
}

impl Kind {
    fn from_udt(udt: &str) -> Kind {
        match udt {
            "uuid" => Kind::Uuid,
            "text" | "varchar" | "bpchar" | "citext" => Kind::Text,
            "int2" | "int4" => Kind::Int4,
            "int8" => Kind::Int8,
            "bool" => Kind::Bool,
            "numeric" | "float4" | "float8" => Kind::Numeric,
            "json" | "jsonb" => Kind::Json,
            "timestamptz" | "timestamp" => Kind::Timestamptz,
            other => Kind::Other(other.to_string()),
        }
    }

    /// A short name for error messages.
    pub fn describe(&self) -> &str {
        match self {
            Kind::Uuid => "a UUID string",
            Kind::Text => "a string",
            Kind::Int4 => "a 32-bit integer",
            Kind::Int8 => "an integer",
            Kind::Bool => "a boolean",
            Kind::Numeric => "a number",
            Kind::Json => "any JSON value",
            Kind::Timestamptz => "an RFC 3339 timestamp",
            Kind::Other(t) => t,
        }
    }
}

/// One column of a synced table.
#[derive(Clone, Debug)]
pub struct Column {
    pub name: String,
    pub kind: Kind,
    pub nullable: bool,
    pub has_default: bool,
}

/// A foreign key from a column to another synced table.
#[derive(Clone, Debug)]
pub struct ParentRef {
    pub column: String,
    pub parent: String,
}

/// A synced table.
#[derive(Clone, Debug)]
pub struct Table {
    pub name: String,
    pub rule: Rule,
    pub read_roles: Vec<Role>,
    pub write_roles: Vec<Role>,
    pub scope_column: Option<String>,
    pub urgent: bool,
    pub columns: Vec<Column>,
    pub parents: Vec<ParentRef>,
    /// Position in parents-before-children order.
    pub rank: usize,
}

/// Columns the server manages; a client may send `id`, `version` (as the version it
/// last saw), `updated_at` and `deleted`, but never writes `tenant_id` or `version`.
pub const SYNC_COLUMNS: [&str; 5] = ["id", "tenant_id", "version", "updated_at", "deleted"];

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn can_read(&self, role: Role) -> bool {
        self.read_roles.contains(&role)
    }

    pub fn can_write(&self, role: Role) -> bool {
        self.write_roles.contains(&role)
    }

    /// Columns a client writes (everything but the sync columns).
    pub fn data_columns(&self) -> impl Iterator<Item = &Column> {
        self.columns
            .iter()
            .filter(|c| !SYNC_COLUMNS.contains(&c.name.as_str()))
    }

    /// The table name as an SQL identifier (names come from the catalog).
    pub fn ident(&self) -> Ident<'_> {
        Ident(&self.name)
    }

    /// An SQL expression rendering row `alias` of this table as JSON text without
    /// `tenant_id`, for pull pages: `row_to_json` over the registry's columns, which
    /// PostgreSQL renders in about half the time of `to_jsonb(..) - 'tenant_id'` (no
    /// jsonb built, sorted and printed back; no spaces after `:` and `,`).
    pub fn row_json_sql(&self, alias: &str) -> String {
        let columns: Vec<String> = self
            .columns
            .iter()
            .filter(|c| c.name != "tenant_id")
            .map(|c| format!("{alias}.{}", Ident(&c.name)))
            .collect();
        match columns.is_empty() {
            true => format!("(to_jsonb({alias}) - 'tenant_id')::text"),
            false => format!(
                "(SELECT row_to_json(x) FROM (SELECT {}) x)::text",
                columns.join(", ")
            ),
        }
    }
}

/// The registry as the server sees it now: replaced whole when tables are added at
/// run time (Odoo mirror tables); readers keep the snapshot they took.
#[derive(Clone, Debug, Default)]
pub struct RegistryHandle(Arc<RwLock<Arc<Registry>>>);

impl RegistryHandle {
    pub fn new(registry: Registry) -> RegistryHandle {
        RegistryHandle(Arc::new(RwLock::new(Arc::new(registry))))
    }

    /// The current snapshot.
    pub fn current(&self) -> Arc<Registry> {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Installs a freshly loaded registry.
    pub fn replace(&self, registry: Registry) {
        let new = Arc::new(registry);
        match self.0.write() {
            Ok(mut g) => *g = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }

    /// Whether another process (or this one) changed the registry since it was loaded.
    pub async fn is_stale(&self, pool: &PgPool) -> sqlx::Result<bool> {
        let stored: Option<String> =
            sqlx::query_scalar("SELECT value FROM server_meta WHERE key = 'registry_version'")
                .fetch_optional(pool)
                .await?;
        Ok(stored.unwrap_or_default() != self.current().version)
    }

    /// Reads the registry again (tables were added or widened).
    pub async fn reload(&self, pool: &PgPool) -> anyhow::Result<()> {
        self.replace(Registry::load(pool).await?);
        Ok(())
    }
}

/// Every synced table, by name (each knows its `rank` in write order).
#[derive(Clone, Debug, Default)]
pub struct Registry {
    tables: BTreeMap<String, Table>,
    /// `server_meta.registry_version` when loaded (empty before any run-time change).
    pub version: String,
    /// `server_meta.roles_version`: changes when an existing table's readers change.
    pub roles_version: String,
}

/// A `sync_tables` row: name, rule, read roles, write roles, scope column, urgent.
type RegistryRow = (
    String,
    String,
    Vec<String>,
    Vec<String>,
    Option<String>,
    bool,
);

impl Registry {
    pub fn get(&self, name: &str) -> Option<&Table> {
        self.tables.get(name)
    }

    /// Every table, in parents-before-children order.
    pub fn in_write_order(&self) -> Vec<&Table> {
        let mut all: Vec<&Table> = self.tables.values().collect();
        all.sort_by_key(|t| t.rank);
        all
    }

    pub fn readable_by(&self, role: Role) -> impl Iterator<Item = &Table> {
        self.tables.values().filter(move |t| t.can_read(role))
    }

    /// Reads the registry and the catalog.
    pub async fn load(pool: &PgPool) -> anyhow::Result<Registry> {
        // Read first: a change racing with this load makes the next check reload again.
        let version: Option<String> =
            sqlx::query_scalar("SELECT value FROM server_meta WHERE key = 'registry_version'")
                .fetch_optional(pool)
                .await
                .context("reading the registry version")?;
        let version = version.unwrap_or_default();
        let roles_version: Option<String> =
            sqlx::query_scalar("SELECT value FROM server_meta WHERE key = 'roles_version'")
                .fetch_optional(pool)
                .await
                .context("reading the roles version")?;
        let roles_version = roles_version.unwrap_or_default();
        let rows: Vec<RegistryRow> = sqlx::query_as(
            "SELECT table_name, rule, read_roles, write_roles, scope_column, urgent FROM sync_tables",
        )
        .fetch_all(pool)
        .await
        .context("reading sync_tables")?;
        let mut tables = BTreeMap::new();
        for (name, rule, read, write, scope_column, urgent) in rows {
            let rule =
                Rule::parse(&rule).with_context(|| format!("table {name}: unknown rule {rule}"))?;
            let roles = |v: Vec<String>| -> anyhow::Result<Vec<Role>> {
                v.iter()
                    .map(|r| {
                        Role::parse(r).with_context(|| format!("table {name}: unknown role {r}"))
                    })
                    .collect()
            };
            tables.insert(
                name.clone(),
                Table {
                    name: name.clone(),
                    rule,
                    read_roles: roles(read)?,
                    write_roles: roles(write)?,
                    scope_column,
                    urgent,
                    columns: Vec::new(),
                    parents: Vec::new(),
                    rank: 0,
                },
            );
        }

        let columns: Vec<(String, String, String, bool, bool)> = sqlx::query_as(
            "SELECT c.table_name::text, c.column_name::text, c.udt_name::text,
                    c.is_nullable = 'YES', c.column_default IS NOT NULL
             FROM information_schema.columns c
             JOIN sync_tables t ON t.table_name = c.table_name
             WHERE c.table_schema = current_schema()
             ORDER BY c.table_name, c.ordinal_position",
        )
        .fetch_all(pool)
        .await
        .context("reading synced table columns")?;
        for (table, name, udt, nullable, has_default) in columns {
            if let Some(t) = tables.get_mut(&table) {
                t.columns.push(Column {
                    name,
                    kind: Kind::from_udt(&udt),
                    nullable,
                    has_default,
                });
            }
        }

        let fks: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT cl.relname::text, a.attname::text, pcl.relname::text
             FROM pg_constraint con
             JOIN pg_class cl ON cl.oid = con.conrelid
             JOIN pg_class pcl ON pcl.oid = con.confrelid
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = con.conkey[1]
             WHERE con.contype = 'f' AND cardinality(con.conkey) = 1
               AND cl.relnamespace = current_schema()::regnamespace
             ORDER BY 1, 2",
        )
        .fetch_all(pool)
        .await
        .context("reading foreign keys")?;
        for (table, column, parent) in fks {
            if tables.contains_key(&parent)
                && let Some(t) = tables.get_mut(&table)
            {
                t.parents.push(ParentRef { column, parent });
            }
        }

        for t in tables.values() {
            for required in ["id", "tenant_id", "version", "updated_at", "deleted"] {
                if t.column(required).is_none() {
                    bail!("synced table {} lacks the sync column {required}", t.name);
                }
            }
        }
        let order = write_order(&tables)?;
        for (rank, name) in order.iter().enumerate() {
            if let Some(t) = tables.get_mut(name) {
                t.rank = rank;
            }
        }
        Ok(Registry {
            tables,
            version,
            roles_version,
        })
    }
}

/// Parents before children (Kahn's algorithm, ties by name; self-references ignored).
fn write_order(tables: &BTreeMap<String, Table>) -> anyhow::Result<Vec<String>> {
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut order = Vec::new();
    while order.len() < tables.len() {
        let ready: Vec<String> = tables
            .values()
            .filter(|t| !done.contains(&t.name))
            .filter(|t| {
                t.parents
                    .iter()
                    .all(|p| p.parent == t.name || done.contains(&p.parent))
            })
            .map(|t| t.name.clone())
            .collect();
        if ready.is_empty() {
            bail!("the foreign keys between synced tables form a cycle");
        }
        for name in ready {
            done.insert(name.clone());
            order.push(name);
        }
    }
    Ok(order)
}
