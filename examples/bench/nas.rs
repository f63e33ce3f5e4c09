//! The simulated NAS of scenario (h): a cgroup v1 memory group with a limit (the NAS's
//! RAM) and CPU affinity (`taskset`, the NAS's one core) for the server, PostgreSQL
//! and the load generator.
//!
//! Everything changed here is undone by a guard's `Drop`, on error as on success, and
//! also on Ctrl-C or SIGTERM: while a guard lives, a signal listener restores what
//! the live guards changed and then exits (130). PostgreSQL may be shared with other
//! work on the machine, so it must never stay pinned to one core.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

/// Where cgroup v1 mounts the memory controller.
pub const MEMORY_ROOT: &str = "/sys/fs/cgroup/memory";

type Cleanup = Box<dyn Fn() + Send>;

/// Cleanups of the live guards, run by the signal listener.
static CLEANUPS: Mutex<BTreeMap<u64, Cleanup>> = Mutex::new(BTreeMap::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static LISTENER: Once = Once::new();

/// Registers a cleanup for signals; returns its key (for `unregister`).
fn register(cleanup: Cleanup) -> u64 {
    LISTENER.call_once(|| {
        tokio::spawn(async {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("warning: no SIGTERM listener: {e}");
                        return;
                    }
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            eprintln!("interrupted: restoring CPU affinities and removing the memory cgroup");
            let all = std::mem::take(
                &mut *CLEANUPS
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
            for (_, cleanup) in all.into_iter().rev() {
                cleanup();
            }
            std::process::exit(130);
        });
    });
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    CLEANUPS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(id, cleanup);
    id
}

fn unregister(id: u64) {
    CLEANUPS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(&id);
}

/// Runs `taskset` with `args`; its stdout, or an error with its stderr.
fn taskset(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("taskset")
        .args(args)
        .output()
        .context("running taskset (util-linux) failed: is it installed?")?;
    anyhow::ensure!(
        out.status.success(),
        "taskset {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The CPU list a process may run on (`taskset -cp`), e.g. `0,1` or `0-1`.
pub fn cpu_list(pid: u32) -> anyhow::Result<String> {
    let out = taskset(&["-cp", &pid.to_string()])?;
    out.rsplit_once(": ")
        .map(|(_, l)| l.trim().to_string())
        .with_context(|| format!("unexpected taskset answer: {out}"))
}

/// The CPUs of a list such as `0-1`, `0,2-3`.
pub fn parse_cpus(list: &str) -> Vec<u32> {
    let mut cpus = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.trim().parse::<u32>(), b.trim().parse::<u32>()) {
            cpus.extend(a..=b);
        }
    }
    cpus
}

/// `Cpus_allowed_list` of /proc/<pid>/status (what the kernel applies, no `taskset`).
pub fn allowed_cpus(pid: u32) -> Option<String> {
    proc_status(pid, "Cpus_allowed_list:")
}

/// Resident memory of a process by kind (KiB): anonymous, file-backed (the binary and
/// libraries), shared memory, and the peak (VmHWM), from /proc/<pid>/status.
pub fn rss_kinds(pid: u32) -> Value {
    let kib = |k: &str| {
        proc_status(pid, k)
            .and_then(|v| v.split_whitespace().next().map(str::to_string))
            .and_then(|v| v.parse::<u64>().ok())
    };
    json!({
        "rss_anon_kib": kib("RssAnon:"), "rss_file_kib": kib("RssFile:"),
        "rss_shmem_kib": kib("RssShmem:"), "vm_hwm_kib": kib("VmHWM:"),
    })
}

fn proc_status(pid: u32, key: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with(key))
        .map(|l| l[key.len()..].trim().to_string())
}

/// Every thread of `pid` (and, with `children`, every current child process) onto
/// `cpus`. A child that exits meanwhile is no error; `pid` itself must succeed.
fn set_cpus(pid: u32, cpus: &str, children: bool) -> anyhow::Result<usize> {
    taskset(&["-a", "-cp", cpus, &pid.to_string()])?;
    let mut n = 1;
    if children {
        for child in children_of(pid) {
            if taskset(&["-a", "-cp", cpus, &child.to_string()]).is_ok() {
                n += 1;
            }
        }
    }
    Ok(n)
}

/// Pids whose parent is `pid` (from /proc/*/status).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|p| proc_status(*p, "PPid:").and_then(|v| v.parse::<u32>().ok()) == Some(pid))
        .collect()
}

/// The local PostgreSQL postmaster: the parent of this pool's backend, when that
/// backend is a process on this machine named `postgres`; `None` when PostgreSQL runs
/// elsewhere (another host or container).
pub async fn local_postmaster(pool: &sqlx::PgPool) -> anyhow::Result<Option<u32>> {
    let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(pool)
        .await
        .context("asking PostgreSQL for its backend pid")?;
    let comm = |p: u32| std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
    if comm(backend as u32).trim() != "postgres" {
        return Ok(None);
    }
    let parent = proc_status(backend as u32, "PPid:").and_then(|v| v.parse::<u32>().ok());
    Ok(parent.filter(|p| comm(*p).trim() == "postgres"))
}

/// One process whose affinity a `Pinned` changed.
#[derive(Debug, Clone)]
struct Target {
    name: String,
    pid: u32,
    /// Its CPU list before (restored at the end).
    original: String,
    /// The postmaster: its children (backends, workers) are set too; new backends
    /// inherit the postmaster's affinity.
    with_children: bool,
    /// Processes set when pinning (the pid and its children then).
    pinned_processes: usize,
}

/// CPU affinities changed for a while; restored on drop (and on Ctrl-C / SIGTERM).
pub struct Pinned {
    targets: Vec<Target>,
    key: u64,
    restored: Option<Vec<String>>,
}

impl Pinned {
    /// Pins each (name, pid, cpus, with_children), in order. On a failure, what was
    /// already pinned is restored and the error returned.
    pub fn pin(wanted: &[(&str, u32, &str, bool)]) -> anyhow::Result<Pinned> {
        let mut pinned = Pinned {
            targets: Vec::new(),
            key: register(Box::new(|| {})),
            restored: None,
        };
        for (name, pid, cpus, with_children) in wanted {
            let original = cpu_list(*pid).with_context(|| format!("reading {name}'s affinity"))?;
            // Registered before the change, so a signal in between restores it too
            // (and a failure below restores it with the others when `pinned` drops).
            pinned.targets.push(Target {
                name: name.to_string(),
                pid: *pid,
                original,
                with_children: *with_children,
                pinned_processes: 0,
            });
            pinned.reregister();
            let n = set_cpus(*pid, cpus, *with_children)
                .with_context(|| format!("pinning {name} (pid {pid}) to CPU {cpus}"))?;
            if let Some(last) = pinned.targets.last_mut() {
                last.pinned_processes = n;
            }
        }
        Ok(pinned)
    }

    fn reregister(&mut self) {
        unregister(self.key);
        let targets = self.targets.clone();
        self.key = register(Box::new(move || {
            for e in restore(&targets) {
                eprintln!("warning: {e}");
            }
        }));
    }

    /// Restores every affinity now; the problems, if any (also printed).
    pub fn restore(&mut self) -> Vec<String> {
        if let Some(r) = &self.restored {
            return r.clone();
        }
        let problems = restore(&self.targets);
        for p in &problems {
            eprintln!("warning: {p}");
        }
        unregister(self.key);
        self.restored = Some(problems.clone());
        problems
    }

    /// What was pinned, for the JSON.
    pub fn to_json(&self) -> Value {
        json!(
            self.targets
                .iter()
                .map(|t| json!({
                    "process": t.name, "pid": t.pid, "original_cpus": t.original,
                    "with_children": t.with_children, "processes_pinned": t.pinned_processes,
                }))
                .collect::<Vec<_>>()
        )
    }
}

/// Sets each target back to its original CPU list, the last pinned first.
fn restore(targets: &[Target]) -> Vec<String> {
    let mut problems = Vec::new();
    for t in targets.iter().rev() {
        if let Err(e) = set_cpus(t.pid, &t.original, t.with_children) {
            problems.push(format!(
                "could not restore {} (pid {}) to CPUs {}: {e:#}; run: taskset -a -cp {} {}",
                t.name, t.pid, t.original, t.original, t.pid
            ));
        }
    }
    problems
}

impl Drop for Pinned {
    fn drop(&mut self) {
        self.restore();
    }
}

/// A cgroup v1 memory group of its own, removed on drop (its remaining processes,
/// which this tool started, are killed first).
pub struct MemCgroup {
    pub path: PathBuf,
    key: u64,
}

impl MemCgroup {
    /// Creates `MEMORY_ROOT/<name>` with `memory.limit_in_bytes = limit`.
    pub fn create(name: &str, limit: u64) -> anyhow::Result<MemCgroup> {
        let root = Path::new(MEMORY_ROOT);
        anyhow::ensure!(
            root.join("memory.limit_in_bytes").is_file(),
            "no cgroup v1 memory controller at {MEMORY_ROOT}: the simulated NAS needs one \
             (run as root on a host with cgroup v1)"
        );
        let path = root.join(name);
        std::fs::create_dir(&path).with_context(|| {
            format!(
                "creating the memory cgroup {} (root needed)",
                path.display()
            )
        })?;
        let cleanup_path = path.clone();
        let key = register(Box::new(move || remove_group(&cleanup_path)));
        let group = MemCgroup { path, key };
        group.write("memory.limit_in_bytes", &limit.to_string())?;
        let set = group.read_u64("memory.limit_in_bytes")?;
        anyhow::ensure!(
            set == limit,
            "{}: memory.limit_in_bytes reads {set}, not {limit}",
            group.path.display()
        );
        Ok(group)
    }

    /// `cgroup.procs`: a pid written there moves into the group.
    pub fn procs_path(&self) -> PathBuf {
        self.path.join("cgroup.procs")
    }

    pub fn write(&self, file: &str, value: &str) -> anyhow::Result<()> {
        let p = self.path.join(file);
        std::fs::write(&p, value).with_context(|| format!("writing {value} to {}", p.display()))
    }

    pub fn read_u64(&self, file: &str) -> anyhow::Result<u64> {
        let p = self.path.join(file);
        let text =
            std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        text.trim()
            .parse()
            .with_context(|| format!("{} is not a number: {text}", p.display()))
    }

    /// Whether `pid` is a member (its /proc/<pid>/cgroup memory line names this group).
    pub fn contains(&self, pid: u32) -> bool {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().to_string());
        std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(":memory:"))
            .any(|(_, p)| Some(p.trim_start_matches('/').to_string()) == name)
    }

    /// Peak, usage, limit, failcnt, OOM kills and the rss/cache split, for the JSON.
    pub fn stats(&self) -> Value {
        let get = |f: &str| self.read_u64(f).ok();
        let stat = std::fs::read_to_string(self.path.join("memory.stat")).unwrap_or_default();
        let stat_of = |k: &str| {
            stat.lines()
                .filter_map(|l| l.split_once(' '))
                .find(|(key, _)| *key == k)
                .and_then(|(_, v)| v.trim().parse::<u64>().ok())
        };
        let oom = std::fs::read_to_string(self.path.join("memory.oom_control")).unwrap_or_default();
        let oom_kills = oom
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|v| v.trim().parse::<u64>().ok());
        json!({
            "path": self.path.display().to_string(),
            "limit_in_bytes": get("memory.limit_in_bytes"),
            "max_usage_in_bytes": get("memory.max_usage_in_bytes"),
            "usage_in_bytes": get("memory.usage_in_bytes"),
            "failcnt": get("memory.failcnt"),
            "oom_kills": oom_kills,
            "stat": {"rss": stat_of("rss"), "cache": stat_of("cache"),
                     "mapped_file": stat_of("mapped_file"), "total_rss": stat_of("total_rss")},
        })
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        unregister(self.key);
        remove_group(&self.path);
    }
}

/// Kills what is left in the group (processes this tool started), then removes it.
fn remove_group(path: &Path) {
    let started = Instant::now();
    loop {
        let procs = std::fs::read_to_string(path.join("cgroup.procs")).unwrap_or_default();
        let pids: Vec<&str> = procs.split_whitespace().collect();
        if pids.is_empty() {
            break;
        }
        if started.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "warning: {} still holds {}; not removed",
                path.display(),
                pids.join(" ")
            );
            return;
        }
        for pid in &pids {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if let Err(e) = std::fs::remove_dir(path)
        && path.exists()
    {
        eprintln!(
            "warning: could not remove {}: {e} (rmdir it by hand)",
            path.display()
        );
    }
}

/// `/proc/loadavg`: the 1, 5 and 15 minute load averages and running/total tasks.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(4)
        .collect::<Vec<_>>()
        .join(" ")
}
