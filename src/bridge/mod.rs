//! BridgeCore compatibility (docs/contract.md §8, docs/bridgecore.md): the
//! offline-sync (v1) and smart-sync (v2) protocols of apps written for BridgeCore,
//! translated onto the same engine, so they keep its guarantees.
//!
//! - `app_types`: which models an `app_type` syncs.
//! - `events`: event pulls of both protocols, positions per user, device and app type.
//! - `push`: the offline push (local ids, references, strategies).
//! - `resolve`: resolutions of open conflicts by conflict or local id.
//! - `state`: those positions, read and reset.
//! - `webhooks`: BridgeCore's "anything new?" reads (`check-updates`, `events`).
//! - `wire`: the seeds' request and answer shapes.

pub mod app_types;
pub mod events;
pub mod push;
pub mod resolve;
pub mod state;
pub mod webhooks;
pub mod wire;

pub use app_types::AppTypes;

use std::sync::Arc;

use crate::sync::SyncCtx;

/// What the BridgeCore protocols use: the engine's context, the app types, and the
/// Odoo workers' wake-up (a push that created rows on mirrored models wakes them, to
/// answer with the Odoo ids).
#[derive(Clone)]
pub struct BridgeCtx {
    pub sync: SyncCtx,
    pub app_types: Arc<AppTypes>,
    pub write_back: Arc<tokio::sync::Notify>,
    /// How long that push waits for them (`NAS_SYNC_BRIDGE_CREATE_WAIT_MS`).
    pub create_wait: std::time::Duration,
}
