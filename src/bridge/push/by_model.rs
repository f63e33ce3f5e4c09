//! The bridgecore_flutter package's push (`pushLocalChanges`): `changes` as a map of
//! model → records, each record its fields plus `id` and `_action`
//! (`{"sale.order": [{"id": 1, "state": "sale", "_action": "update"}]}`), and its
//! answer read as lists (`successful` of strings, `failed` and `conflicts` of maps).
//! BridgeCore's own server accepts neither; nas-sync turns the records into the
//! list form's changes, runs the same push, and answers the lists the package reads.
//!
//! A record becomes a change:
//! - `_action`: `create`, `update` or `delete`; without it, `update` when `id` is set,
//!   else `create`;
//! - `id`: the row an update or delete names (the Odoo id of a mirrored row, or a
//!   UUID); on a create, the app's own temporary id, kept as the local id
//!   `model/id`, so a retried create maps to the same row;
//! - `_local_id`, `_version`, `_local_timestamp`: the list form's `local_id`,
//!   `version` and `local_timestamp`;
//! - every other field is the change's `data` (keys starting with `_` are the app's
//!   own bookkeeping and are not stored).

use serde_json::{Map, Value, json};

/// The list form's changes for the package's records, model by model in the order
/// sent.
pub(super) fn flatten(by_model: Map<String, Value>) -> Vec<Value> {
    let mut out = Vec::new();
    for (model, records) in by_model {
        match records {
            Value::Array(records) => {
                out.extend(records.into_iter().map(|r| change(&model, r)));
            }
            // Not a list: one malformed change, named by its model.
            other => out.push(malformed(&model, other)),
        }
    }
    out
}

/// One record as a list-form change.
fn change(model: &str, record: Value) -> Value {
    let Value::Object(mut fields) = record else {
        return malformed(model, record);
    };
    let id = fields.remove("id").filter(|v| !v.is_null());
    let action = match fields.remove("_action") {
        Some(Value::String(a)) => a,
        Some(other) => other.to_string(),
        None if id.is_some() => "update".into(),
        None => "create".into(),
    };
    let local_id = match (fields.remove("_local_id"), &id) {
        (Some(Value::String(l)), _) => Some(l),
        (Some(l), _) if !l.is_null() => Some(l.to_string()),
        // A create's `id` is the app's temporary id, unique within its model.
        (_, Some(id)) if action == "create" => Some(format!("{model}/{}", plain(id))),
        // Without either, a create is a new row each time it is sent.
        _ if action == "create" => Some(format!("{model}/{}", uuid::Uuid::new_v4())),
        _ => None,
    };
    let version = fields.remove("_version");
    let local_timestamp = fields.remove("_local_timestamp");
    fields.retain(|k, _| !k.starts_with('_'));
    let mut c = json!({
        "model": model,
        "action": action,
        "local_id": local_id,
        "data": fields,
    });
    if action != "create" {
        c["record_id"] = id.unwrap_or(Value::Null);
    }
    if let Some(v) = version {
        c["version"] = v;
    }
    if let Some(t) = local_timestamp {
        c["local_timestamp"] = t;
    }
    c
}

/// A record that is not an object: the push's checks fail it ("the change is
/// malformed") under its model.
fn malformed(model: &str, record: Value) -> Value {
    json!({"model": model, "action": "update", "data": record})
}

/// An id as text: a string as it is, a number in digits.
fn plain(id: &Value) -> String {
    match id {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The list form's answer, reshaped as the package reads it: `successful` lists the
/// id of each row applied (as a string: the package reads `List<String>`), `failed`
/// and `conflicts` the results that failed or met a conflict, `pending` the creates
/// still waiting for their Odoo id. The counts stay under `failed_count` and
/// `conflict_count`; `results`, `id_mapping` and the rest are unchanged.
pub(super) fn reshape(mut answer: Value) -> Value {
    let results = answer["results"].as_array().cloned().unwrap_or_default();
    let with = |status: &str| -> Vec<Value> {
        results
            .iter()
            .filter(|r| r["status"] == status)
            .cloned()
            .collect()
    };
    let successful: Vec<Value> = with("success")
        .iter()
        .filter_map(|r| {
            let id = r.get("server_id").filter(|v| !v.is_null())?;
            Some(Value::String(plain(id)))
        })
        .collect();
    let (failed, conflicts) = (with("failed"), with("conflict"));
    answer["failed_count"] = json!(failed.len());
    answer["conflict_count"] = json!(conflicts.len());
    answer["successful"] = Value::Array(successful);
    answer["failed"] = Value::Array(failed);
    answer["conflicts"] = Value::Array(conflicts);
    answer["pending"] = Value::Array(with("pending"));
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_become_list_form_changes() {
        let by_model = json!({
            "sale.order": [
                {"id": 7, "state": "sale", "_action": "update", "_synced": false},
                {"id": -1, "partner_id": 42},
                {"id": -1, "partner_id": 42, "_action": "create", "_local_id": "so-9"},
                {"id": 8, "_action": "delete", "_version": 3},
                "nonsense"
            ],
            "res.partner": {"id": 1}
        });
        let Value::Object(m) = by_model else {
            unreachable!()
        };
        let c = flatten(m);
        assert_eq!(c.len(), 6);
        // serde_json's map is ordered by key: res.partner first.
        assert_eq!(c[0]["model"], "res.partner");
        assert!(
            c[0]["data"].is_object(),
            "a non-list is one malformed change"
        );
        assert_eq!(
            c[1],
            json!({"model": "sale.order", "action": "update", "local_id": null,
                   "record_id": 7, "data": {"state": "sale"}})
        );
        assert_eq!(c[2]["action"], "update", "an id means update");
        assert_eq!(c[2]["record_id"], -1);
        assert_eq!(c[3]["local_id"], "so-9");
        assert!(c[3].get("record_id").is_none());
        assert_eq!(c[4]["version"], 3);
        assert_eq!(c[5]["data"], "nonsense");
    }

    #[test]
    fn a_create_without_an_id_gets_a_fresh_local_id_each_time() {
        let one = change("x", json!({"name": "a"}));
        let two = change("x", json!({"name": "a"}));
        assert_eq!(one["action"], "create");
        assert_ne!(one["local_id"], two["local_id"]);
        let temp = change("x", json!({"id": "tmp-1", "_action": "create"}));
        assert_eq!(temp["local_id"], "x/tmp-1");
    }

    #[test]
    fn the_answer_lists_what_the_package_reads() {
        let a = reshape(json!({"failed": 1, "conflicts": 1, "results": [
            {"status": "success", "server_id": 12},
            {"status": "success", "server_id": "5d1e"},
            {"status": "failed", "code": "NOT_FOUND"},
            {"status": "conflict", "server_id": 3},
            {"status": "pending", "local_id": "sale.order/-1"}
        ]}));
        assert_eq!(a["successful"], json!(["12", "5d1e"]));
        assert_eq!(a["failed"][0]["code"], "NOT_FOUND");
        assert_eq!(a["conflicts"][0]["server_id"], 3);
        assert_eq!(a["pending"][0]["local_id"], "sale.order/-1");
        assert_eq!(
            (a["failed_count"].clone(), a["conflict_count"].clone()),
            (json!(1), json!(1))
        );
    }
}
