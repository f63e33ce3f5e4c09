//! The pure decisions of a push, shared by the row-by-row and the set-based paths so
//! both give the same answer: may the caller write this row, is it in its tenant and
//! store, what does it call for against the server's copy (nothing, keep, insert,
//! update, conflict), who wins a conflict, and which document is written. No SQL and
//! no I/O here; everything is unit-tested below.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::wire::ConflictReport;
use crate::auth::{Principal, Role};
use crate::sync::merge;
use crate::sync::registry::{ParentRef, Table};
use crate::sync::rules::{self, Rule, Settlement, Sides, Strategy};
use crate::sync::validate::{self, PushedRow, RowError};

/// Who pushes, when the server received it, the conflict strategy it asked for
/// (BridgeCore clients; `None`: the table's rule alone), and the largest value a row
/// may carry.
pub(super) struct Caller<'a> {
    pub who: &'a Principal,
    pub receipt: DateTime<Utc>,
    pub strategy: Option<Strategy>,
    pub max_value_bytes: usize,
}

/// Versions this push wrote, by (table, id): a device's queue may hold several edits
/// of one row, all based on the version it last pulled; its own earlier edit in the
/// same push is not a conflict.
pub(super) type Written = HashMap<(String, Uuid), i64>;

/// What happened to one row.
pub(super) enum Outcome {
    /// Written by this push: the row as now stored.
    Written(Value),
    /// Left as it was (equal values, or the server won): the server row.
    Kept(Value),
    /// Nothing to do (deleting a row the server never had).
    Nothing,
}

/// One row's result: what happened, and the conflict it met, if any.
pub(super) type Done = (Outcome, Option<ConflictReport>);

/// What a checked row calls for, given the server's copy.
pub(super) enum Plan {
    /// Deleting a row the server never had.
    Nothing,
    /// Same values as stored: the server row.
    Keep(Value),
    Insert,
    /// Based on the latest version (or this push's own earlier edit): the server row.
    Update(Value),
    /// Changed on the server since the device saw it, and the values differ.
    Conflict(Value),
}

/// The role may write the table and the row is well formed, no value over `max_value_bytes`.
pub(super) fn checked_row(
    table: &Table,
    who: &Principal,
    raw: &Value,
    max_value_bytes: usize,
) -> Result<PushedRow, RowError> {
    if !table.can_write(who.role) {
        return Err(RowError::forbidden(format!(
            "the role '{}' may not write {}",
            who.role.as_str(),
            table.name
        )));
    }
    let row = validate::pushed_row(table, raw, &who.tenant)?;
    validate::check_sizes(&row, max_value_bytes)?;
    Ok(row)
}

/// The server row, if any, provided it belongs to the caller's tenant.
pub(super) fn owned_by_caller(
    who: &Principal,
    existing: Option<(String, Value)>,
) -> Result<Option<Value>, RowError> {
    match existing {
        // Ids are global; say nothing about the other owner's row.
        Some((tenant, _)) if tenant != who.tenant => Err(RowError::forbidden(
            "this id cannot be used; generate a new one",
        )),
        other => Ok(other.map(|(_, doc)| doc)),
    }
}

/// Store devices write only their store's rows; the store column never changes.
/// Fills a store device's own store into a new row that does not name one.
pub(super) fn check_scope(
    table: &Table,
    who: &Principal,
    server: Option<&Value>,
    row: &mut PushedRow,
) -> Result<(), RowError> {
    let Some(col) = &table.scope_column else {
        return Ok(());
    };
    let sent = row
        .values
        .get(col)
        .and_then(Value::as_str)
        .map(str::to_string);
    let stored = server.and_then(|s| s.get(col)).and_then(Value::as_str);
    if who.role == Role::Store {
        let mine = who.store_id.as_deref().unwrap_or_default();
        if stored.is_some_and(|s| s != mine) || sent.as_deref().is_some_and(|s| s != mine) {
            return Err(RowError::forbidden(format!(
                "this row belongs to another store than '{mine}'"
            )));
        }
        if server.is_none() && sent.is_none() {
            row.values
                .insert(col.clone(), Value::String(mine.to_string()));
        }
    }
    if let (Some(stored), Some(sent)) = (stored, sent.as_deref())
        && stored != sent
    {
        return Err(RowError::validation(format!(
            "'{col}' of an existing row cannot change"
        )));
    }
    Ok(())
}

/// The parent id a row sets in `parent_ref`'s column, unless it is the one stored.
pub(super) fn reference_to_check<'r>(
    parent_ref: &ParentRef,
    server: Option<&Value>,
    row: &'r PushedRow,
) -> Option<&'r str> {
    let Some(Value::String(target)) = row.values.get(&parent_ref.column) else {
        return None;
    };
    let stored = server
        .and_then(|s| s.get(&parent_ref.column))
        .and_then(Value::as_str);
    (stored != Some(target.as_str())).then_some(target.as_str())
}

/// The error for a reference to a row that is not there (or not the caller's).
pub(super) fn reference_missing(column: &str, parent: &str) -> RowError {
    RowError::new(
        "REFERENCE_MISSING",
        format!("'{column}' refers to a {parent} row that does not exist"),
    )
}

/// Decides what a checked row calls for against the server's copy.
pub(super) fn plan(
    table: &Table,
    row: &PushedRow,
    server: Option<Value>,
    written: &Written,
) -> Result<Plan, RowError> {
    let Some(server) = server else {
        if row.deleted == Some(true) {
            return Ok(Plan::Nothing);
        }
        if let Some(missing) = table
            .data_columns()
            .find(|c| !c.nullable && !c.has_default && !row.values.contains_key(&c.name))
        {
            return Err(RowError::validation(format!(
                "'{}' is required",
                missing.name
            )));
        }
        return Ok(Plan::Insert);
    };
    let differs = row.values.iter().any(|(k, v)| {
        table
            .column(k)
            .is_none_or(|c| !validate::same_value(&c.kind, Some(v), server.get(k)))
    }) || row
        .deleted
        .is_some_and(|d| Some(d) != server.get("deleted").and_then(Value::as_bool));
    if !differs {
        return Ok(Plan::Keep(server));
    }
    let server_version = server.get("version").and_then(Value::as_i64).unwrap_or(0);
    let own_earlier_edit = written.get(&(table.name.clone(), row.id)) == Some(&server_version);
    if row.base_version >= server_version || own_earlier_edit {
        return Ok(Plan::Update(server));
    }
    Ok(Plan::Conflict(server))
}

/// How the table's rule settles a conflict between `row` and `server`.
/// `server_role` is the role of whoever wrote the server row last, when known.
pub(super) fn settle(
    table: &Table,
    caller: &Caller<'_>,
    row: &PushedRow,
    server: &Value,
    server_role: Option<&str>,
) -> Settlement {
    let sides = Sides {
        client_time: rules::cap_device_time(row.updated_at, caller.receipt),
        client_role: caller.who.role,
        server_time: server
            .get("updated_at")
            .and_then(Value::as_str)
            .and_then(validate::parse_time)
            .unwrap_or(DateTime::<Utc>::MIN_UTC),
        server_role: server_role.and_then(Role::parse),
    };
    match caller.strategy {
        None => rules::settlement(table.rule, &sides),
        Some(strategy) => rules::bounded(strategy, table.rule, &sides),
    }
}

/// The conflict as reported to the device: both sides, the rule (or the strategy the
/// device asked for, unless the table is `manual`), the winner.
pub(super) fn report(
    table: &Table,
    caller: &Caller<'_>,
    row: &PushedRow,
    raw: &Value,
    server: &Value,
    winner: &str,
    conflict_id: Option<Uuid>,
) -> ConflictReport {
    ConflictReport {
        table: table.name.clone(),
        record_id: row.id,
        client_data: raw.clone(),
        server_data: server.clone(),
        resolution: match caller.strategy {
            Some(strategy) if table.rule != Rule::Manual => strategy.as_str(),
            _ => table.rule.as_str(),
        }
        .to_string(),
        winner: winner.to_string(),
        conflict_id,
    }
}

/// The part of `row` a three-way merge keeps (`None`: nothing of the device's), given
/// the `base` version it saw. `deleted` merges like any field.
pub(super) fn merged_row(
    table: &Table,
    row: &PushedRow,
    base: Option<&Value>,
    server: &Value,
    overlaps_to_client: bool,
) -> Option<PushedRow> {
    let merged = merge::three_way(table, base, server, &row.values, overlaps_to_client);
    let was_deleted = |v: &Value| v.get("deleted").and_then(Value::as_bool);
    let server_deleted = was_deleted(server);
    let deleted = row.deleted.filter(|d| {
        let base_deleted = base.map(was_deleted);
        let device_changed = base_deleted.is_none_or(|b| b != Some(*d));
        let server_changed = base_deleted.is_none_or(|b| b != server_deleted);
        device_changed && Some(*d) != server_deleted && (!server_changed || overlaps_to_client)
    });
    if merged.apply.is_empty() && deleted.is_none() {
        return None;
    }
    Some(PushedRow {
        values: merged.apply,
        deleted,
        ..row.clone()
    })
}

/// The document a new row is inserted from.
pub(super) fn insert_doc(
    row: &PushedRow,
    who: &Principal,
    receipt: DateTime<Utc>,
) -> Map<String, Value> {
    let mut doc: Map<String, Value> = row.values.clone();
    doc.insert("id".into(), json!(row.id));
    doc.insert("tenant_id".into(), json!(who.tenant));
    doc.insert(
        "updated_at".into(),
        json!(rules::cap_device_time(row.updated_at, receipt)),
    );
    doc.insert("deleted".into(), json!(row.deleted.unwrap_or(false)));
    doc
}

/// The columns an update sets, and their values.
pub(super) fn update_doc(
    row: &PushedRow,
    receipt: DateTime<Utc>,
    server: &Value,
) -> Map<String, Value> {
    let mut doc: Map<String, Value> = row.values.clone();
    doc.insert(
        "updated_at".into(),
        json!(rules::cap_device_time(row.updated_at, receipt)),
    );
    let deleted = row
        .deleted
        .or_else(|| server.get("deleted").and_then(Value::as_bool));
    doc.insert("deleted".into(), json!(deleted.unwrap_or(false)));
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::registry::{Column, Kind};

    fn column(name: &str, kind: Kind, nullable: bool) -> Column {
        Column {
            name: name.into(),
            kind,
            nullable,
            has_default: false,
        }
    }

    /// A store-scoped table like `kpi_data`: `metric` required, `value` optional.
    fn kpis(rule: Rule) -> Table {
        Table {
            name: "kpi_data".into(),
            rule,
            read_roles: vec![Role::Manager, Role::Store],
            write_roles: vec![Role::Manager, Role::Store],
            scope_column: Some("store_id".into()),
            urgent: false,
            columns: vec![
                column("id", Kind::Uuid, false),
                column("tenant_id", Kind::Text, false),
                column("version", Kind::Int8, false),
                column("updated_at", Kind::Timestamptz, false),
                column("deleted", Kind::Bool, false),
                column("store_id", Kind::Text, false),
                column("metric", Kind::Text, false),
                column("value", Kind::Numeric, true),
            ],
            parents: vec![],
            rank: 0,
        }
    }

    fn principal(role: Role, store: Option<&str>) -> Principal {
        Principal {
            user_id: Uuid::nil(),
            username: "u".into(),
            tenant: "default".into(),
            role,
            store_id: store.map(str::to_string),
            device_id: "dev-1".into(),
            generation: 0,
            odoo_user_id: None,
            expires_at: 0,
        }
    }

    fn row(id: Uuid, base_version: i64, values: Value) -> PushedRow {
        PushedRow {
            id,
            base_version,
            updated_at: None,
            deleted: None,
            values: values.as_object().cloned().unwrap_or_default(),
        }
    }

    fn server(id: Uuid, version: i64, metric: &str) -> Value {
        json!({"id": id, "version": version, "store_id": "s1", "metric": metric,
               "value": null, "deleted": false, "updated_at": "2026-01-01T00:00:00Z"})
    }

    #[test]
    fn a_new_row_is_inserted_unless_a_required_column_is_missing() {
        let t = kpis(Rule::LatestWins);
        let id = Uuid::new_v4();
        let ok = row(id, 0, json!({"store_id": "s1", "metric": "sales"}));
        assert!(matches!(
            plan(&t, &ok, None, &Written::new()),
            Ok(Plan::Insert)
        ));
        let missing = row(id, 0, json!({"store_id": "s1"}));
        let err = plan(&t, &missing, None, &Written::new())
            .err()
            .map(|e| e.message);
        assert_eq!(err.as_deref(), Some("'metric' is required"));
    }

    #[test]
    fn deleting_a_row_the_server_never_had_does_nothing() {
        let t = kpis(Rule::LatestWins);
        let mut r = row(Uuid::new_v4(), 0, json!({}));
        r.deleted = Some(true);
        assert!(matches!(
            plan(&t, &r, None, &Written::new()),
            Ok(Plan::Nothing)
        ));
    }

    #[test]
    fn equal_values_are_kept_whatever_the_version() {
        let t = kpis(Rule::LatestWins);
        let id = Uuid::new_v4();
        let stale_but_equal = row(id, 1, json!({"metric": "sales"}));
        let p = plan(
            &t,
            &stale_but_equal,
            Some(server(id, 5, "sales")),
            &Written::new(),
        );
        assert!(matches!(p, Ok(Plan::Keep(_))));
    }

    #[test]
    fn a_current_base_updates_and_a_stale_one_conflicts() {
        let t = kpis(Rule::LatestWins);
        let id = Uuid::new_v4();
        let current = row(id, 3, json!({"metric": "new"}));
        let p = plan(&t, &current, Some(server(id, 3, "old")), &Written::new());
        assert!(matches!(p, Ok(Plan::Update(_))));
        let stale = row(id, 2, json!({"metric": "new"}));
        let p = plan(&t, &stale, Some(server(id, 3, "old")), &Written::new());
        assert!(matches!(p, Ok(Plan::Conflict(_))));
    }

    #[test]
    fn the_pushs_own_earlier_edit_is_not_a_conflict() {
        let t = kpis(Rule::LatestWins);
        let id = Uuid::new_v4();
        let second_edit = row(id, 2, json!({"metric": "again"}));
        let written = Written::from([(("kpi_data".to_string(), id), 3)]);
        let p = plan(&t, &second_edit, Some(server(id, 3, "once")), &written);
        assert!(matches!(p, Ok(Plan::Update(_))));
    }

    #[test]
    fn store_devices_stay_in_their_store() {
        let t = kpis(Rule::LatestWins);
        let who = principal(Role::Store, Some("s1"));
        let id = Uuid::new_v4();
        // A new row without a store gets the device's own.
        let mut fresh = row(id, 0, json!({"metric": "m"}));
        check_scope(&t, &who, None, &mut fresh).unwrap();
        assert_eq!(fresh.values["store_id"], "s1");
        // Another store's row, sent or stored, is refused.
        let mut other = row(id, 0, json!({"store_id": "s2", "metric": "m"}));
        let e = check_scope(&t, &who, None, &mut other).unwrap_err();
        assert_eq!(e.code, "FORBIDDEN");
        let stored_elsewhere = json!({"store_id": "s2"});
        let mut edit = row(id, 1, json!({"metric": "m"}));
        assert!(check_scope(&t, &who, Some(&stored_elsewhere), &mut edit).is_err());
    }

    #[test]
    fn nobody_moves_a_row_to_another_store() {
        let t = kpis(Rule::LatestWins);
        let manager = principal(Role::Manager, None);
        let stored = json!({"store_id": "s1"});
        let mut moved = row(Uuid::new_v4(), 1, json!({"store_id": "s2"}));
        let e = check_scope(&t, &manager, Some(&stored), &mut moved).unwrap_err();
        assert_eq!(e.code, "VALIDATION_FAILED");
    }

    #[test]
    fn rows_of_another_tenant_are_refused_without_saying_whose() {
        let who = principal(Role::Manager, None);
        let theirs = Some(("other".to_string(), json!({"secret": 1})));
        let e = owned_by_caller(&who, theirs).unwrap_err();
        assert_eq!(e.code, "FORBIDDEN");
        assert!(!e.message.contains("other") && !e.message.contains("secret"));
        let mine = Some(("default".to_string(), json!({"a": 1})));
        assert_eq!(owned_by_caller(&who, mine).unwrap(), Some(json!({"a": 1})));
    }

    #[test]
    fn a_role_without_write_access_is_refused() {
        let mut t = kpis(Rule::LatestWins);
        t.write_roles = vec![Role::Manager];
        let who = principal(Role::Store, Some("s1"));
        let raw = json!({"id": Uuid::new_v4(), "metric": "m"});
        assert_eq!(
            checked_row(&t, &who, &raw, 1000).unwrap_err().code,
            "FORBIDDEN"
        );
    }

    #[test]
    fn only_changed_references_are_checked() {
        let parent = ParentRef {
            column: "form_id".into(),
            parent: "forms".into(),
        };
        let r = row(Uuid::new_v4(), 1, json!({"form_id": "f-2"}));
        assert_eq!(reference_to_check(&parent, None, &r), Some("f-2"));
        let same = json!({"form_id": "f-2"});
        assert_eq!(reference_to_check(&parent, Some(&same), &r), None);
    }

    #[test]
    fn settle_follows_the_tables_rule() {
        let receipt: DateTime<Utc> = "2026-01-02T00:00:00Z".parse().unwrap();
        let who = principal(Role::Store, Some("s1"));
        let caller = Caller {
            who: &who,
            receipt,
            strategy: None,
            max_value_bytes: 1000,
        };
        let id = Uuid::new_v4();
        let mut newer = row(id, 1, json!({"metric": "device"}));
        newer.updated_at = Some("2026-01-01T12:00:00Z".parse().unwrap());
        let srv = server(id, 2, "server");

        let s = settle(&kpis(Rule::LatestWins), &caller, &newer, &srv, None);
        assert_eq!(s, Settlement::Client);
        assert_eq!(
            settle(&kpis(Rule::ServerWins), &caller, &newer, &srv, None),
            Settlement::Server
        );
        // A manager's write beats a store device's, whatever the clocks say.
        let s = settle(
            &kpis(Rule::ManagerWins),
            &caller,
            &newer,
            &srv,
            Some("manager"),
        );
        assert_eq!(s, Settlement::Server);
        assert_eq!(
            settle(&kpis(Rule::Manual), &caller, &newer, &srv, None),
            Settlement::Manual
        );

        let raw = json!({"id": id, "metric": "device"});
        let r = report(
            &kpis(Rule::LatestWins),
            &caller,
            &newer,
            &raw,
            &srv,
            "client",
            None,
        );
        assert_eq!(
            (r.resolution.as_str(), r.winner.as_str()),
            ("latest_wins", "client")
        );
        assert_eq!(r.server_data, srv);
    }

    #[test]
    fn a_merge_keeps_what_only_the_device_changed() {
        let t = kpis(Rule::Merge);
        let id = Uuid::new_v4();
        let base = json!({"metric": "m", "value": 1, "deleted": false});
        let srv = json!({"metric": "server", "value": 1, "deleted": false});
        let sent = row(id, 1, json!({"metric": "m", "value": 2}));
        let merged = merged_row(&t, &sent, Some(&base), &srv, false).unwrap();
        assert_eq!(Value::Object(merged.values), json!({"value": 2}));
        // Nothing of the device's survives when it only changed what the server did.
        let clash = row(id, 1, json!({"metric": "device"}));
        assert!(merged_row(&t, &clash, Some(&base), &srv, false).is_none());
        // Deleting merges like a field: the device's alone applies...
        let mut delete = row(id, 1, json!({}));
        delete.deleted = Some(true);
        let applied = merged_row(&t, &delete, Some(&base), &srv, false).unwrap();
        assert_eq!(applied.deleted, Some(true));
        // ...and without a base (history pruned) it goes to the rule.
        assert!(merged_row(&t, &delete, None, &srv, false).is_none());
        assert!(merged_row(&t, &delete, None, &srv, true).is_some());
    }

    #[test]
    fn documents_carry_the_sync_columns() {
        let who = principal(Role::Manager, None);
        let receipt: DateTime<Utc> = "2026-01-02T00:00:00Z".parse().unwrap();
        let id = Uuid::new_v4();
        let mut r = row(id, 0, json!({"metric": "m"}));
        // A device clock ahead of the server counts as the server's clock.
        r.updated_at = Some("2030-01-01T00:00:00Z".parse().unwrap());
        let doc = insert_doc(&r, &who, receipt);
        assert_eq!(doc["tenant_id"], "default");
        assert_eq!(doc["deleted"], false);
        assert_eq!(doc["updated_at"], json!(receipt));
        let update = update_doc(&r, receipt, &json!({"deleted": true}));
        assert_eq!(update["deleted"], true, "an edit keeps a tombstone deleted");
        assert!(!update.contains_key("tenant_id"));
    }
}
