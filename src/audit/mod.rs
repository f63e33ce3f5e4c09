//! The audit trail (docs/audit.md): every version of every synced row, who wrote it,
//! from which device and by which path, with the fields that changed, chained per
//! tenant so that nobody can quietly rewrite it.
//!
//! Recording costs the write path nothing new: the change trigger already keeps each
//! version in `sync_row_history` and now also the writer's user and origin (V18).
//! `seal` turns that history into `audit_log` entries in the background, in history
//! order, once no transaction that could still add an older entry is running; each
//! entry is sealed with an HMAC over the previous seal and its own content (`mac`).
//! `verify` walks a tenant's chain and names the first entry that was edited,
//! deleted or inserted. `prune` applies the audit's own retention, leaving a signed
//! checkpoint where each chain now starts.

pub mod mac;
pub mod prune;
pub mod read;
pub mod seal;
pub mod verify;

pub use mac::SealKey;

/// The advisory lock that makes one process seal or prune the trail at a time (a value
/// no other lock of nas-sync uses).
const LOCK: i64 = 0x6e61_7375_6469_7431;
