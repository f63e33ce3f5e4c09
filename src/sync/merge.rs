//! Three-way merge of one row, field by field, against the version the device based
//! its change on (the base, read from `sync_row_history`): a field only the device
//! changed is applied, a field only the server changed stays, a field both changed to
//! different values goes to one side as the rule decides. Without a base (history
//! pruned), every field the device sends that differs from the server counts as
//! changed by both.

use serde_json::{Map, Value};

use super::registry::Table;
use super::validate::same_value;

/// What a merge takes from the device.
#[derive(Debug, Default, PartialEq)]
pub struct Merged {
    /// The fields to write over the server row.
    pub apply: Map<String, Value>,
    /// Fields both sides changed to different values.
    pub overlapping: Vec<String>,
}

/// Merges the fields the device `sent` into `server`, given the `base` it saw.
/// Overlapping fields take the device's value when `overlaps_to_client`.
pub fn three_way(
    table: &Table,
    base: Option<&Value>,
    server: &Value,
    sent: &Map<String, Value>,
    overlaps_to_client: bool,
) -> Merged {
    let mut merged = Merged::default();
    for (field, value) in sent {
        let Some(column) = table.column(field) else {
            continue;
        };
        let same = |a: Option<&Value>, b: Option<&Value>| same_value(&column.kind, a, b);
        let before = base.map(|b| b.get(field));
        let device_changed = before.is_none_or(|b| !same(b, Some(value)));
        let server_changed = before.is_none_or(|b| !same(b, server.get(field)));
        if !device_changed || same(Some(value), server.get(field)) {
            continue;
        }
        if server_changed {
            merged.overlapping.push(field.clone());
            if !overlaps_to_client {
                continue;
            }
        }
        merged.apply.insert(field.clone(), value.clone());
    }
    merged
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::auth::Role;
    use crate::sync::registry::{Column, Kind};
    use crate::sync::rules::Rule;

    fn partners() -> Table {
        let col = |name: &str, kind: Kind| Column {
            name: name.into(),
            kind,
            nullable: true,
            has_default: false,
        };
        Table {
            name: "partners".into(),
            rule: Rule::Merge,
            read_roles: vec![Role::Manager],
            write_roles: vec![Role::Manager],
            scope_column: None,
            urgent: false,
            columns: vec![
                col("id", Kind::Uuid),
                col("name", Kind::Text),
                col("phone", Kind::Text),
                col("email", Kind::Text),
                col("credit", Kind::Numeric),
            ],
            parents: vec![],
            rank: 0,
        }
    }

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn disjoint_changes_merge() {
        let base = json!({"name": "Ann", "phone": "1", "email": "a@x"});
        let server = json!({"name": "Ann", "phone": "2", "email": "a@x"});
        // The device changed the email; the server changed the phone.
        let sent = map(json!({"name": "Ann", "phone": "1", "email": "b@x"}));
        let m = three_way(&partners(), Some(&base), &server, &sent, false);
        assert_eq!(m.apply, map(json!({"email": "b@x"})));
        assert!(m.overlapping.is_empty());
    }

    #[test]
    fn the_same_field_goes_to_the_rule() {
        let base = json!({"phone": "1"});
        let server = json!({"phone": "2"});
        let sent = map(json!({"phone": "3"}));
        let to_server = three_way(&partners(), Some(&base), &server, &sent, false);
        assert!(to_server.apply.is_empty());
        assert_eq!(to_server.overlapping, vec!["phone".to_string()]);
        let to_client = three_way(&partners(), Some(&base), &server, &sent, true);
        assert_eq!(to_client.apply, map(json!({"phone": "3"})));
    }

    #[test]
    fn both_changing_to_the_same_value_is_no_overlap() {
        let base = json!({"phone": "1"});
        let server = json!({"phone": "2"});
        let m = three_way(
            &partners(),
            Some(&base),
            &server,
            &map(json!({"phone": "2"})),
            false,
        );
        assert_eq!(m, Merged::default());
    }

    #[test]
    fn numbers_compare_by_value_and_unknown_fields_are_skipped() {
        let base = json!({"credit": 10});
        let server = json!({"credit": 10.0});
        let sent = map(json!({"credit": 10.00, "nope": 1}));
        let m = three_way(&partners(), Some(&base), &server, &sent, true);
        assert_eq!(m, Merged::default());
    }

    #[test]
    fn without_a_base_every_difference_overlaps() {
        let server = json!({"phone": "2", "email": "a@x"});
        let sent = map(json!({"phone": "3", "email": "a@x"}));
        let m = three_way(&partners(), None, &server, &sent, false);
        assert!(m.apply.is_empty());
        assert_eq!(m.overlapping, vec!["phone".to_string()]);
    }
}
