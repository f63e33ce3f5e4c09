//! The scenarios of the benchmark (and (h), the BridgeCore seed's numbers on a simulated
//! NAS; (i), load and abuse; (j), WebSockets; (k), the Odoo mirror; (l), a foreign long transaction), one module each. Every scenario loads what it needs,
//! measures nas-sync over HTTP and its baseline in the same run, and returns table
//! rows plus details for the JSON.

mod a_initial_sync;
mod b_delta_pull;
mod c_push;
mod d_concurrent;
mod e_fleet;
mod f_history;
mod g_push_curve;
mod h_nas;
mod i_abuse;
mod j_sockets;
mod k_odoo;
mod l_foreign_tx;

use serde_json::Value;

use crate::Ctx;
use crate::report::Row;

/// What a scenario produced.
pub struct Outcome {
    pub rows: Vec<Row>,
    pub details: Value,
}

pub fn title(s: char) -> &'static str {
    match s {
        'a' => "initial sync of a large table, in pages",
        'b' => "delta pull of 100 changed rows: 10k-row vs 1M-row tenant",
        'c' => "pushes of 10,000 rows (half new, half updates), audit trail recording and off",
        'd' => "200 devices doing empty delta pulls at once",
        'e' => "500 devices syncing every 30 s: server CPU and memory",
        'f' => "pull and push with 10M vs 10k change-history entries",
        'g' => "push latency curve, 1 to 1,000 rows, over TCP: relay vs direct",
        'h' => "BridgeCore v2 pulls on a simulated 1 GB one-core NAS, 500 devices",
        'i' => "200 well-behaved devices while one attacker tries each denial of service",
        'j' => "1,000 open WebSockets: poke latency and memory per socket",
        'k' => "the Odoo mirror's first pass by batch size, against the fake Odoo",
        'l' => "push-to-pull lag while another database holds a transaction open",
        _ => "unknown",
    }
}

pub async fn run(s: char, ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    match s {
        'a' => a_initial_sync::run(ctx).await,
        'b' => b_delta_pull::run(ctx).await,
        'c' => c_push::run(ctx).await,
        'd' => d_concurrent::run(ctx).await,
        'e' => e_fleet::run(ctx).await,
        'f' => f_history::run(ctx).await,
        'g' => g_push_curve::run(ctx).await,
        'h' => h_nas::run(ctx).await,
        'i' => i_abuse::run(ctx).await,
        'j' => j_sockets::run(ctx).await,
        'k' => k_odoo::run(ctx).await,
        'l' => l_foreign_tx::run(ctx).await,
        _ => anyhow::bail!("unknown scenario {s}"),
    }
}
