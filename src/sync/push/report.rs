//! The push answer being assembled, row by row, in the order rows were sent: what was
//! stored, the conflicts met, the rows refused, and the versions this push wrote (so a
//! later edit of the same row in the same push is not taken for a conflict).

use std::collections::BTreeMap;

use serde_json::Value;
use uuid::Uuid;

use super::decide::{Done, Outcome, Written};
use super::wire::{ConflictReport, RowErrorReport};
use crate::sync::registry::Table;
use crate::sync::validate::{self, RowError};

#[derive(Default)]
pub(super) struct Report {
    pub applied: BTreeMap<String, Vec<Value>>,
    pub conflicts: Vec<ConflictReport>,
    pub errors: Vec<RowErrorReport>,
    pub written: Written,
}

impl Report {
    /// Adds one row's result.
    pub fn record(&mut self, table: &Table, raw: &Value, result: Result<Done, RowError>) {
        let (outcome, conflict) = match result {
            Ok(done) => done,
            Err(e) => {
                self.errors.push(RowErrorReport {
                    table: table.name.clone(),
                    record_id: validate::raw_id(raw),
                    code: e.code.to_string(),
                    message: e.message,
                });
                return;
            }
        };
        self.conflicts.extend(conflict);
        let row = match outcome {
            Outcome::Written(row) => {
                if let (Some(id), Some(v)) = (
                    row.get("id")
                        .and_then(Value::as_str)
                        .and_then(|s| Uuid::parse_str(s).ok()),
                    row.get("version").and_then(Value::as_i64),
                ) {
                    self.written.insert((table.name.clone(), id), v);
                }
                row
            }
            Outcome::Kept(row) => row,
            Outcome::Nothing => return,
        };
        self.applied
            .entry(table.name.clone())
            .or_default()
            .push(row);
    }
}
