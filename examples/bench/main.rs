//! `bench`: the performance benchmark of nas-sync, one command end to end.
//!
//! Starts from an empty database, loads the data each scenario needs, starts the real
//! `nas-sync serve` binary as a child process, drives it over real HTTP, and measures
//! every scenario against a baseline doing the same work directly in PostgreSQL through
//! sqlx (the driver the server uses) in the same run. Prints a table and writes JSON.
//!
//! ```sh
//! ./scripts/bench.sh            # full run (about 20 minutes on 2 cores)
//! ./scripts/bench.sh --quick    # smaller sizes, about 2 minutes: checks the tool works
//! ./scripts/bench.sh --only a,c --out /tmp/r.json --keep
//! ```
//!
//! The database server comes from `BENCH_DATABASE_URL` (default
//! `postgres://postgres:postgres@127.0.0.1:5432/postgres`); a fresh database
//! `nas_bench_<random>` is created there and dropped at the end unless `--keep`.
//!
//! Scenarios (see `scenarios/`): (a) initial sync, (b) delta pull vs table size,
//! (c) a 10,000-row push, (d) 200 devices at once, (e) 500 devices syncing every 30 s,
//! (f) pull and push with 10 million history entries, (g) the push latency curve from
//! 1 to 1,000 rows over TCP (the database relay against a direct connection), (h) the
//! BridgeCore smart-sync seed's headline numbers (a pull finding no events under
//! 200 ms, one of 100 events under 1 s) for 500 devices on a simulated 1 GB one-core
//! NAS (a cgroup memory limit and `taskset`; root and cgroup v1 needed), (i) 200
//! well-behaved devices with production limits while one attacker tries each known
//! denial of service, their p99 and errors against a quiet phase, (j) 1,000 open
//! WebSockets: poke latency and memory per socket, (k) the Odoo mirror's first pass
//! by batch size against the fake Odoo.

mod client;
mod db;
mod nas;
mod report;
mod scenarios;
mod server;
mod stats;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use serde_json::{Value, json};

use client::{Api, Device};
use report::Row;
use server::ServerProcess;

/// Command-line options.
#[derive(Debug, Clone, Parser)]
#[command(name = "bench", about = "nas-sync performance benchmark")]
pub struct Opts {
    /// Smaller sizes (about 2 minutes): checks that the tool works.
    #[arg(long)]
    pub quick: bool,
    /// Only these scenarios, comma-separated (e.g. `a,c`); default all of a-k.
    #[arg(long, value_delimiter = ',')]
    pub only: Option<Vec<String>>,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/bench/results.json")]
    pub out: PathBuf,
    /// Keep the benchmark database afterwards (its name is printed).
    #[arg(long)]
    pub keep: bool,
}

/// Sizes of the run: full, or `--quick`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sizes {
    pub a_rows: i64,
    pub a_repeats: usize,
    pub b_small: i64,
    pub b_large: i64,
    pub b_rounds: usize,
    pub c_rows: usize,
    pub c_rounds: usize,
    /// Pushes back to back in each of (c)'s timed phases.
    pub c_pushes: usize,
    pub d_devices: usize,
    pub d_closed_secs: u64,
    pub d_rate: u64,
    pub d_open_secs: u64,
    pub e_devices: usize,
    pub e_secs: u64,
    pub e_idle_secs: u64,
    pub e_period_secs: u64,
    pub f_big: i64,
    pub f_small: i64,
    pub f_rows: i64,
    pub f_rounds: usize,
    pub h_devices: usize,
    pub h_period_secs: u64,
    pub h_window_secs: u64,
    pub h_warm_secs: u64,
    pub h_rounds: usize,
    pub h_event_pulls: usize,
    pub j_sockets: usize,
    pub j_rounds: usize,
    pub k_records: usize,
    pub k_batches: &'static [i64],
}

impl Sizes {
    fn full() -> Sizes {
        Sizes {
            a_rows: 100_000,
            a_repeats: 3,
            b_small: 10_000,
            b_large: 1_000_000,
            b_rounds: 30,
            c_rows: 10_000,
            c_rounds: 3,
            c_pushes: 10,
            d_devices: 200,
            d_closed_secs: 10,
            d_rate: 5_000,
            d_open_secs: 10,
            e_devices: 500,
            e_secs: 180,
            e_idle_secs: 30,
            e_period_secs: 30,
            f_big: 10_000_000,
            f_small: 10_000,
            f_rows: 10_000,
            f_rounds: 20,
            h_devices: 500,
            h_period_secs: 30,
            h_window_secs: 30,
            h_warm_secs: 5,
            h_rounds: 2,
            h_event_pulls: 5,
            j_sockets: 1000,
            j_rounds: 20,
            k_records: 5000,
            k_batches: &[50, 200, 500, 1000],
        }
    }

    fn quick() -> Sizes {
        Sizes {
            a_rows: 20_000,
            a_repeats: 2,
            b_small: 10_000,
            b_large: 100_000,
            b_rounds: 10,
            c_rows: 2_000,
            c_rounds: 2,
            c_pushes: 4,
            d_devices: 100,
            d_closed_secs: 3,
            d_rate: 2_000,
            d_open_secs: 3,
            e_devices: 100,
            e_secs: 40,
            e_idle_secs: 10,
            e_period_secs: 30,
            f_big: 1_000_000,
            f_small: 10_000,
            f_rows: 10_000,
            f_rounds: 10,
            h_devices: 100,
            h_period_secs: 10,
            h_window_secs: 10,
            h_warm_secs: 2,
            h_rounds: 1,
            h_event_pulls: 3,
            j_sockets: 200,
            j_rounds: 5,
            k_records: 1000,
            k_batches: &[200],
        }
    }
}

/// Everything a scenario needs: the server, an HTTP client, a pool on the bench
/// database, and the shared fleet of logged-in load devices.
pub struct Ctx {
    pub sizes: Sizes,
    pub quick: bool,
    pub api: Api,
    pub pool: sqlx::PgPool,
    pub db_url: String,
    pub server: ServerProcess,
    /// Where server processes write their warnings (a scenario may start its own).
    pub log_path: PathBuf,
    pub started: Instant,
    /// (phase, seconds), in order.
    pub phases: Vec<(String, f64)>,
    /// Remarks printed under the table and stored in the JSON.
    pub notes: Vec<String>,
    /// Rows of the table that belong to no scenario (server memory, logins).
    pub general: Vec<Row>,
    /// The load tenant's devices, logged in once for (d), (e) and (h).
    pub fleet: Option<Vec<Device>>,
    /// How many fleet devices the selected scenarios need (logged in on first use).
    pub fleet_size: usize,
    pub fleet_details: Value,
}

/// KiB (as /proc reports memory) to MB (10^6 bytes), the unit of the goals.
pub fn mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

/// Password of every benchmark user.
pub const PASSWORD: &str = "bench-password-1";

impl Ctx {
    /// Prints a progress line to stderr, prefixed with the time since start.
    pub fn progress(&self, msg: impl AsRef<str>) {
        let s = self.started.elapsed().as_secs();
        eprintln!("[{:02}:{:02}] {}", s / 60, s % 60, msg.as_ref());
    }

    /// Records how long a phase took (and says so on stderr).
    pub fn phase_done(&mut self, name: &str, since: Instant) -> f64 {
        let secs = since.elapsed().as_secs_f64();
        self.progress(format!("{name}: {secs:.1} s"));
        self.phases.push((name.to_string(), secs));
        secs
    }

    /// Creates a user with the real CLI (`nas-sync user add ... --password-stdin`).
    pub async fn add_user(
        &self,
        username: &str,
        role: &str,
        store: Option<&str>,
        tenant: &str,
    ) -> anyhow::Result<()> {
        self.server
            .add_user(&self.db_url, username, role, store, tenant, PASSWORD)
            .await
    }

    /// The load tenant's devices (created and logged in on first use, as many as the
    /// selected scenarios need): a manager and nine store users, devices spread over
    /// them round-robin.
    pub async fn fleet(&mut self, n: usize) -> anyhow::Result<Vec<Device>> {
        let have = self.fleet.as_ref().map_or(0, Vec::len);
        if have < n {
            let n = n.max(self.fleet_size);
            let started = Instant::now();
            if have == 0 {
                self.add_user("load-manager", "manager", None, "t-load")
                    .await?;
                for s in 1..=9 {
                    self.add_user(
                        &format!("load-store-{s}"),
                        "store",
                        Some(&format!("store-{s}")),
                        "t-load",
                    )
                    .await?;
                }
            }
            let users: Vec<String> = std::iter::once("load-manager".to_string())
                .chain((1..=9).map(|s| format!("load-store-{s}")))
                .collect();
            let wanted: Vec<(String, String)> = (have..n)
                .map(|i| (users[i % users.len()].clone(), format!("load-dev-{i:04}")))
                .collect();
            self.progress(format!(
                "logging in {} devices (4 at a time; argon2 makes each login slow)",
                wanted.len()
            ));
            let rss_before = self.server.rss_kib();
            let (devices, per_login_ms) = self.api.login_many(&wanted, PASSWORD, 4).await?;
            let secs = self.phase_done(&format!("log in {} devices", wanted.len()), started);
            let rss_after = self.server.rss_kib();
            let per = stats::Summary::of(per_login_ms);
            self.general.push(
                Row::new(
                    "setup",
                    &format!("log in {} devices, 4 concurrent (total)", wanted.len()),
                    secs,
                    "s",
                )
                .detail(&format!(
                    "one login p50 {:.0} ms, p99 {:.0} ms; server RSS {:.1} MB before, {:.1} MB after",
                    per.p50,
                    per.p99,
                    mb(rss_before),
                    mb(rss_after)
                )),
            );
            self.fleet_details = json!({
                "devices": n, "tenant": "t-load", "users": users, "concurrency": 4, "seconds": secs,
                "login_ms": per.to_json(),
                "server_rss_kib_before": rss_before, "server_rss_kib_after": rss_after,
            });
            self.fleet.get_or_insert_with(Vec::new).extend(devices);
        }
        Ok(self
            .fleet
            .as_ref()
            .map(|f| f[..n].to_vec())
            .unwrap_or_default())
    }
}

/// Deletes a file when dropped (the private server binary).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let opts = Opts::parse();
    match run(opts).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench failed: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(opts: Opts) -> anyhow::Result<()> {
    nas_sync::install_tls_provider();
    let started = Instant::now();
    let selected: BTreeSet<char> = match &opts.only {
        None => "abcdefghijkl".chars().collect(),
        Some(list) => {
            let mut set = BTreeSet::new();
            for item in list {
                let item = item.trim().to_ascii_lowercase();
                match item.as_str() {
                    "a" | "b" | "c" | "d" | "e" | "f" | "g" | "h" | "i" | "j" | "k" | "l" => {
                        set.extend(item.chars());
                    }
                    _ => anyhow::bail!("--only: unknown scenario '{item}' (use a to l)"),
                }
            }
            set
        }
    };
    let sizes = if opts.quick {
        Sizes::quick()
    } else {
        Sizes::full()
    };
    let base_url = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".into());

    let scratch = db::ScratchDb::create(&base_url).await?;
    eprintln!("benchmark database: {}", scratch.name);
    let outcome = run_in(&opts, sizes, &selected, &scratch, started).await;
    if opts.keep {
        eprintln!("kept database {} (--keep)", scratch.name);
    } else if let Err(e) = scratch.drop_db().await {
        eprintln!("warning: could not drop {}: {e:#}", scratch.name);
    }
    outcome
}

async fn run_in(
    opts: &Opts,
    sizes: Sizes,
    selected: &BTreeSet<char>,
    scratch: &db::ScratchDb,
    started: Instant,
) -> anyhow::Result<()> {
    let machine = report::machine();
    // The tree as built (scripts/bench.sh builds just before this starts).
    let (commit, tree_changes) = (report::commit(), report::tree_changes());
    let pg_version = scratch.server_version().await?;

    let (sizes_d, sizes_e, sizes_h) = (sizes.d_devices, sizes.e_devices, sizes.h_devices);
    let t = Instant::now();
    let log_dir = opts
        .out
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
    // A private copy: the server restarts between scenarios, and target/ may be rebuilt
    // meanwhile (by another cargo command); every scenario must run the same build.
    let built = server::server_binary()?;
    let bin = log_dir.join(format!("nas-sync-{}", scratch.name));
    std::fs::copy(&built, &bin)
        .with_context(|| format!("copying {} to {}", built.display(), bin.display()))?;
    let _remove_copy = RemoveOnDrop(bin.clone());
    let log_path = log_dir.join("server.log");
    std::fs::write(&log_path, "").with_context(|| format!("creating {}", log_path.display()))?;
    let server = ServerProcess::start(&bin, &scratch.url, &log_path).await?;
    let startup_secs = t.elapsed().as_secs_f64();
    // Right after start (migrations applied, /ready answered): the idle footprint.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = server.rss_kib();
    // The baselines connect as the server does: through the TCP_NODELAY relay, so a
    // large parameter does not wait for PostgreSQL's delayed ACK.
    let db_opts =
        nas_sync::db::relay::route(nas_sync::db::connect_options(&scratch.url)?, true).await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect_with(db_opts)
        .await
        .context("connecting to the benchmark database")?;
    let api = Api::new(&server.base)?;
    let mut ctx = Ctx {
        sizes,
        quick: opts.quick,
        api,
        pool,
        db_url: scratch.url.clone(),
        server,
        log_path: log_path.clone(),
        started,
        phases: Vec::new(),
        notes: vec![
            "The server runs with NAS_SYNC_RATE_LIMIT=off: rate limits are per device and \
             would throttle the load generator."
                .into(),
            "Client and server share the machine's cores (load generator, server and \
             PostgreSQL on the same host); figures are medians within one run."
                .into(),
            "Each scenario runs on a freshly started server process (same database), so its \
             memory figures are its own; peak RSS is the VmHWM of that process."
                .into(),
            "HTTP: one reqwest client, HTTP/1.1 keep-alive, Accept-Encoding gzip (as the \
             Flutter http client), so responses are gzip-compressed by the server."
                .into(),
        ],
        general: Vec::new(),
        fleet: None,
        fleet_size: [('d', sizes_d), ('e', sizes_e), ('h', sizes_h)]
            .iter()
            .filter(|(s, _)| selected.contains(s))
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(0),
        fleet_details: Value::Null,
    };
    ctx.phases
        .push(("server start (migrations)".into(), startup_secs));
    ctx.progress(format!(
        "server pid {} at {} ready in {startup_secs:.1} s, idle RSS {:.1} MB",
        ctx.server.pid,
        ctx.server.base,
        mb(idle_rss)
    ));
    ctx.general.push(
        Row::new(
            "setup",
            "server idle RSS right after start",
            mb(idle_rss),
            "MB",
        )
        .goal(report::Goal::ValueBelow(30.0)),
    );

    let mut results: Vec<(char, scenarios::Outcome)> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    let mut exits: Vec<String> = Vec::new();
    let mut peak = 0;
    for (i, s) in selected.iter().copied().enumerate() {
        if i > 0 {
            // A fresh server process per scenario: memory figures are the scenario's own.
            let t = Instant::now();
            exits.push(ctx.server.stop().await);
            ctx.server = ServerProcess::start(&bin, &scratch.url, &log_path).await?;
            ctx.api = Api::new(&ctx.server.base)?;
            ctx.phase_done(&format!("restart server before ({s})"), t);
        }
        ctx.progress(format!("== scenario ({s}): {}", scenarios::title(s)));
        let t = Instant::now();
        let start_rss = ctx.server.rss_kib();
        match scenarios::run(s, &mut ctx).await {
            Ok(mut outcome) => {
                let hwm = ctx.server.hwm_kib();
                outcome.rows.push(
                    Row::new(
                        &s.to_string(),
                        "server peak RSS in this scenario (VmHWM)",
                        mb(hwm),
                        "MB",
                    )
                    .detail(&format!(
                        "fresh process: {:.1} MB at the start",
                        mb(start_rss)
                    )),
                );
                results.push((s, outcome));
            }
            Err(e) => {
                let msg = format!("scenario ({s}) failed: {e:#}");
                ctx.progress(&msg);
                failures.push(msg);
            }
        }
        peak = peak.max(ctx.server.hwm_kib());
        ctx.phase_done(&format!("scenario ({s}) total"), t);
    }

    ctx.general.push(Row::new(
        "setup",
        "server peak RSS over the run (max VmHWM)",
        mb(peak),
        "MB",
    ));
    exits.push(ctx.server.stop().await);
    let server_log = server::summarize_log(&log_path, &exits);
    ctx.pool.close().await;

    let doc = report::Document {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        commit,
        tree_changes,
        date: chrono::Utc::now().to_rfc3339(),
        machine,
        postgresql: pg_version,
        database: scratch.name.clone(),
        quick: opts.quick,
        sizes: serde_json::to_value(&ctx.sizes)?,
        phases: ctx.phases.clone(),
        notes: ctx.notes.clone(),
        general: ctx.general.clone(),
        fleet: ctx.fleet_details.clone(),
        results,
        failures: failures.clone(),
        server_idle_rss_kib: idle_rss,
        server_peak_rss_kib: peak,
        server_log,
        total_secs: started.elapsed().as_secs_f64(),
    };
    println!("{}", doc.render_text());
    if let Some(dir) = opts.out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&opts.out, serde_json::to_string_pretty(&doc.to_json())?)
        .with_context(|| format!("writing {}", opts.out.display()))?;
    eprintln!("results written to {}", opts.out.display());
    if !failures.is_empty() {
        anyhow::bail!(
            "{} scenario(s) failed: {}",
            failures.len(),
            failures.join("; ")
        );
    }
    Ok(())
}
