//! The real `nas-sync serve` binary as a child process, and what `/proc` says about
//! it: CPU time (utime + stime over the clock tick) and memory (VmRSS, VmHWM).
//!
//! The binary is found next to this example's directory: `current_exe()` is
//! `target/release/examples/bench`, so the server is `target/release/nas-sync`
//! (`scripts/bench.sh` builds both).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

/// The JWT secret the benchmark server signs with.
const JWT_SECRET: &str = "bench-secret-0123456789-abcdefghij";

/// `target/<profile>/nas-sync`, next to `target/<profile>/examples/bench`.
pub fn server_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the bench executable")?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("the bench executable has no grandparent directory")?;
    let bin = dir.join("nas-sync");
    anyhow::ensure!(
        bin.is_file(),
        "{} is missing: build it first (cargo build --release --bin nas-sync), or use scripts/bench.sh",
        bin.display()
    );
    Ok(bin)
}

/// Clock ticks per second for /proc/<pid>/stat times (`getconf CLK_TCK`, normally 100).
pub fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// A running `nas-sync serve`.
pub struct ServerProcess {
    pub child: tokio::process::Child,
    pub pid: u32,
    pub base: String,
    pub bin: PathBuf,
    ticks: f64,
}

impl ServerProcess {
    /// Starts the server on a free port over `db_url` (migrations run at start), with
    /// its log (warnings and errors) going to `log`; waits for `GET /ready`.
    pub async fn start(bin: &Path, db_url: &str, log: &Path) -> anyhow::Result<ServerProcess> {
        Self::start_with(bin, db_url, log, &[]).await
    }

    /// As `start`, with extra environment variables (settings) for this process.
    pub async fn start_with(
        bin: &Path,
        db_url: &str,
        log: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<ServerProcess> {
        Self::start_wrapped(bin, db_url, log, env, &[]).await
    }

    /// As `start_with`, the binary run through `wrapper` (a program and its first
    /// arguments, e.g. a shell that joins a cgroup and `exec`s `taskset`): the wrapper
    /// must `exec` the server, so that the child's pid is the server's.
    pub async fn start_wrapped(
        bin: &Path,
        db_url: &str,
        log: &Path,
        env: &[(&str, &str)],
        wrapper: &[String],
    ) -> anyhow::Result<ServerProcess> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .context("finding a free port")?
            .local_addr()?
            .port();
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let mut cmd = match wrapper.split_first() {
            None => tokio::process::Command::new(bin),
            Some((program, args)) => {
                let mut c = tokio::process::Command::new(program);
                c.args(args).arg(bin);
                c
            }
        };
        cmd.arg("serve")
            .env("DATABASE_URL", db_url)
            .env("NAS_SYNC_BIND", format!("127.0.0.1:{port}"))
            .env("NAS_SYNC_JWT_SECRET", JWT_SECRET)
            .env("NAS_SYNC_LOG", "warn")
            .env("NAS_SYNC_RATE_LIMIT", "off")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {} serve", bin.display()))?;
        let pid = child.id().context("the server exited at once")?;
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                anyhow::bail!(
                    "nas-sync serve exited with {status} before it was ready; see {}",
                    log.display()
                );
            }
            let ready = http
                .get(format!("{base}/ready"))
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ready {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(120),
                "nas-sync serve was not ready within 120 s; see {}",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(ServerProcess {
            child,
            pid,
            base,
            bin: bin.to_path_buf(),
            ticks: clock_ticks(),
        })
    }

    fn probe(&self) -> ServerProbe {
        ServerProbe {
            pid: self.pid,
            ticks: self.ticks,
        }
    }

    /// CPU time used so far (user + system), in seconds.
    pub fn cpu_secs(&self) -> f64 {
        self.probe().cpu_secs()
    }

    /// Resident memory now (VmRSS), KiB.
    pub fn rss_kib(&self) -> u64 {
        self.probe().status_kib("VmRSS:")
    }

    /// Peak resident memory (VmHWM), KiB.
    pub fn hwm_kib(&self) -> u64 {
        self.probe().status_kib("VmHWM:")
    }

    /// Samples CPU and RSS every second until the returned handle is finished.
    pub fn sample(&self) -> Sampler {
        let samples: Arc<Mutex<Vec<u64>>> = Arc::default();
        let stop = tokio_util::sync::CancellationToken::new();
        let probe = self.probe();
        let cpu0 = probe.cpu_secs();
        let others0 = other_cpu_secs(self.ticks);
        let task = {
            let samples = samples.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tick.tick() => {}
                    }
                    let rss = probe.status_kib("VmRSS:");
                    if let Ok(mut s) = samples.lock() {
                        s.push(rss);
                    }
                }
            })
        };
        Sampler {
            probe,
            samples,
            stop,
            task,
            cpu0,
            others0,
            started: Instant::now(),
        }
    }

    /// Creates a user with `nas-sync user add` (the operator's way), password on stdin.
    pub async fn add_user(
        &self,
        db_url: &str,
        username: &str,
        role: &str,
        store: Option<&str>,
        tenant: &str,
        password: &str,
    ) -> anyhow::Result<()> {
        use tokio::io::AsyncWriteExt;
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.args(["user", "add", username, "--role", role, "--tenant", tenant])
            .arg("--password-stdin")
            .env("DATABASE_URL", db_url)
            .env("NAS_SYNC_JWT_SECRET", JWT_SECRET)
            .env("NAS_SYNC_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(s) = store {
            cmd.args(["--store", s]);
        }
        let mut child = cmd.spawn().context("running nas-sync user add")?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(format!("{password}\n").as_bytes()).await?;
        }
        let out = child.wait_with_output().await?;
        anyhow::ensure!(
            out.status.success(),
            "nas-sync user add {username} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(())
    }

    /// Stops the server (SIGTERM, graceful; killed after 15 s); says how it ended.
    pub async fn stop(&mut self) -> String {
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        match tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await {
            Ok(Ok(status)) => status.to_string(),
            _ => {
                let _ = self.child.kill().await;
                "did not stop within 15 s of SIGTERM; killed".to_string()
            }
        }
    }
}

/// Warnings and errors in the server log (every server process of the run appends),
/// grouped by message (numbers and field values left out).
pub fn summarize_log(log: &Path, exits: &[String]) -> Value {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut kinds: std::collections::BTreeMap<(String, String), (usize, String, String)> =
        Default::default();
    let (mut warn, mut error) = (0, 0);
    for line in text.lines().map(strip_ansi) {
        let level = if line.contains(" WARN ") {
            warn += 1;
            "WARN"
        } else if line.contains(" ERROR ") {
            error += 1;
            "ERROR"
        } else {
            continue;
        };
        let time = line.split_whitespace().next().unwrap_or("").to_string();
        let msg = line
            .split_once(level)
            .map_or(line.as_str(), |(_, m)| m)
            .trim();
        // The message up to its first field (`key=value`).
        let key: String = msg
            .split_whitespace()
            .take_while(|w| !w.contains('='))
            .collect::<Vec<_>>()
            .join(" ");
        let entry =
            kinds
                .entry((level.to_string(), key))
                .or_insert((0, time.clone(), msg.to_string()));
        entry.0 += 1;
        entry.2 = format!(
            "last at {time}; e.g. {}",
            msg.chars().take(200).collect::<String>()
        );
    }
    let mut kinds: Vec<_> = kinds.into_iter().collect();
    kinds.sort_by_key(|k| std::cmp::Reverse(k.1.0));
    json!({
        "file": log.display().to_string(),
        "exits": exits,
        "warn_lines": warn,
        "error_lines": error,
        "kinds": kinds.iter().take(10).map(|((level, key), (n, first, example))| json!({
            "level": level, "message": key, "count": n, "first_at": first, "example": example,
        })).collect::<Vec<_>>(),
    })
}

/// The line without terminal colour codes (`ESC [ ... m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Reads /proc for one pid (usable from a spawned task).
#[derive(Clone, Copy)]
struct ServerProbe {
    pid: u32,
    ticks: f64,
}

impl ServerProbe {
    /// utime + stime over the clock tick, in seconds.
    fn cpu_secs(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        stat_ticks(&stat).map_or(0.0, |(_, t)| t / self.ticks)
    }

    /// A `kB` line of /proc/<pid>/status (`VmRSS:`, `VmHWM:`), in KiB.
    fn status_kib(&self, key: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

/// utime + stime of one /proc/<pid>/stat text, in clock ticks, and the command name.
fn stat_ticks(stat: &str) -> Option<(String, f64)> {
    stat_fields(stat).map(|(comm, own, _)| (comm, own))
}

/// Command name, own CPU (utime + stime) and reaped children's CPU (cutime + cstime),
/// in clock ticks.
fn stat_fields(stat: &str) -> Option<(String, f64, f64)> {
    let (head, rest) = stat.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_string();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    Some((comm, num(11)? + num(12)?, num(13)? + num(14)?))
}

/// CPU seconds used so far by every local process named `postgres` (the PostgreSQL
/// server and its backends; 0 when PostgreSQL runs elsewhere) and by this process.
/// Children's time (cutime + cstime) counts too: backends and autovacuum workers that
/// exited were reaped by the postmaster, whose counters then hold their CPU time.
fn other_cpu_secs(ticks: f64) -> (f64, f64) {
    let mut pg = 0.0;
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let name = entry.file_name();
            if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            if let Some((comm, own, children)) = stat_fields(&stat)
                && comm == "postgres"
            {
                pg += own + children;
            }
        }
    }
    let own = stat_ticks(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default())
        .map_or(0.0, |(_, t)| t);
    (pg / ticks, own / ticks)
}

/// CPU and memory of the server over a window (RSS sampled every second), with the
/// CPU of PostgreSQL and of the load generator over the same window.
pub struct Sampler {
    probe: ServerProbe,
    samples: Arc<Mutex<Vec<u64>>>,
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
    cpu0: f64,
    others0: (f64, f64),
    started: Instant,
}

/// What a `Sampler` saw.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub wall_secs: f64,
    pub cpu_secs: f64,
    /// CPU time over wall time, in percent of one core.
    pub cpu_pct: f64,
    pub rss_avg_kib: f64,
    pub rss_max_kib: u64,
    /// PostgreSQL processes' CPU over the window, % of one core.
    pub pg_cpu_pct: f64,
    /// This benchmark process (the load generator), % of one core.
    pub bench_cpu_pct: f64,
}

impl Usage {
    pub fn to_json(self) -> Value {
        json!({
            "wall_secs": self.wall_secs, "cpu_secs": self.cpu_secs, "cpu_pct_of_one_core": self.cpu_pct,
            "rss_avg_kib": self.rss_avg_kib, "rss_max_kib": self.rss_max_kib,
            "postgres_cpu_pct_of_one_core": self.pg_cpu_pct,
            "bench_cpu_pct_of_one_core": self.bench_cpu_pct,
        })
    }
}

impl Sampler {
    pub async fn finish(self) -> Usage {
        let cpu = self.probe.cpu_secs() - self.cpu0;
        let (pg, own) = other_cpu_secs(self.probe.ticks);
        let wall = self.started.elapsed().as_secs_f64();
        let last = self.probe.status_kib("VmRSS:");
        self.stop.cancel();
        let _ = self.task.await;
        let mut samples = self.samples.lock().map(|s| s.clone()).unwrap_or_default();
        samples.push(last);
        let avg = samples.iter().sum::<u64>() as f64 / samples.len() as f64;
        Usage {
            wall_secs: wall,
            cpu_secs: cpu,
            cpu_pct: 100.0 * cpu / wall.max(1e-9),
            rss_avg_kib: avg,
            rss_max_kib: samples.iter().copied().max().unwrap_or(0),
            pg_cpu_pct: 100.0 * (pg - self.others0.0) / wall.max(1e-9),
            bench_cpu_pct: 100.0 * (own - self.others0.1) / wall.max(1e-9),
        }
    }
}
