//! Results: table rows (measure, nas-sync, baseline, ratio, goal, met?), the machine
//! description read from /proc, the git commit, the text table and the JSON document.

use serde_json::{Value, json};

use crate::scenarios::Outcome;

/// What a row must show to meet its goal.
#[derive(Debug, Clone, Copy)]
pub enum Goal {
    /// `value / baseline` at least this (throughput against the baseline).
    RatioAtLeast(f64),
    /// `value / baseline` below this (cost that should not grow).
    RatioBelow(f64),
    /// The value itself below this (in the row's unit).
    ValueBelow(f64),
    /// The value itself at least this (in the row's unit).
    ValueAtLeast(f64),
}

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    pub scenario: String,
    pub measure: String,
    pub unit: String,
    pub value: f64,
    pub baseline: Option<f64>,
    /// What the baseline is, when not obvious from the scenario.
    pub baseline_label: Option<String>,
    pub goal: Option<Goal>,
    /// Extra context printed under the table (e.g. p99 of a median).
    pub detail: Option<String>,
}

impl Row {
    pub fn new(scenario: &str, measure: &str, value: f64, unit: &str) -> Row {
        Row {
            scenario: scenario.to_string(),
            measure: measure.to_string(),
            unit: unit.to_string(),
            value,
            baseline: None,
            baseline_label: None,
            goal: None,
            detail: None,
        }
    }

    pub fn vs(mut self, baseline: f64, label: &str) -> Row {
        self.baseline = Some(baseline);
        self.baseline_label = Some(label.to_string());
        self
    }

    pub fn goal(mut self, goal: Goal) -> Row {
        self.goal = Some(goal);
        self
    }

    pub fn detail(mut self, detail: &str) -> Row {
        self.detail = Some(detail.to_string());
        self
    }

    pub fn ratio(&self) -> Option<f64> {
        self.baseline.filter(|b| *b != 0.0).map(|b| self.value / b)
    }

    pub fn goal_text(&self) -> String {
        match self.goal {
            None => String::new(),
            Some(Goal::RatioAtLeast(r)) => format!("ratio >= {r}"),
            Some(Goal::RatioBelow(r)) => format!("ratio < {r}"),
            Some(Goal::ValueBelow(v)) => format!("< {} {}", fmt_num(v), self.unit),
            Some(Goal::ValueAtLeast(v)) => format!(">= {} {}", fmt_num(v), self.unit),
        }
    }

    pub fn met(&self) -> Option<bool> {
        match self.goal? {
            Goal::RatioAtLeast(r) => self.ratio().map(|x| x >= r),
            Goal::RatioBelow(r) => self.ratio().map(|x| x < r),
            Goal::ValueBelow(v) => Some(self.value < v),
            Goal::ValueAtLeast(v) => Some(self.value >= v),
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "scenario": self.scenario, "measure": self.measure, "unit": self.unit,
            "nas_sync": finite(self.value), "baseline": self.baseline.map(finite),
            "baseline_is": self.baseline_label, "ratio": self.ratio().map(finite),
            "goal": self.goal.map(|_| self.goal_text()), "met": self.met(), "detail": self.detail,
        })
    }
}

fn finite(v: f64) -> Value {
    if v.is_finite() { json!(v) } else { Value::Null }
}

/// A number for the table: thousands separators for large values, 1-2 decimals else.
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let a = v.abs();
    if a >= 1000.0 {
        let s = format!("{a:.0}");
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if v < 0.0 { format!("-{out}") } else { out }
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// CPU model, cores and memory, from /proc.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let cpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    json!({
        "cpu_model": model,
        "cpus": cpus,
        "available_parallelism": std::thread::available_parallelism().map(std::num::NonZero::get).unwrap_or(0),
        "memory_gib": (mem_kib as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
    })
}

/// `git rev-parse --short HEAD`, with `-dirty` when the tree has changes.
pub fn commit() -> String {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match run(&["rev-parse", "--short", "HEAD"]) {
        None => "unknown".into(),
        Some(c) => match run(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(s) if !s.is_empty() => format!("{c}-dirty"),
            _ => c,
        },
    }
}

/// `git status --porcelain`: what differs from the commit in the tree that was built.
pub fn tree_changes() -> Vec<String> {
    std::process::Command::new("git")
        .args(["status", "--porcelain"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Everything one run produced.
pub struct Document {
    pub command: String,
    pub commit: String,
    pub tree_changes: Vec<String>,
    pub date: String,
    pub machine: Value,
    pub postgresql: String,
    pub database: String,
    pub quick: bool,
    pub sizes: Value,
    pub phases: Vec<(String, f64)>,
    pub notes: Vec<String>,
    pub general: Vec<Row>,
    pub fleet: Value,
    pub results: Vec<(char, Outcome)>,
    pub failures: Vec<String>,
    pub server_idle_rss_kib: u64,
    pub server_peak_rss_kib: u64,
    pub server_log: Value,
    pub total_secs: f64,
}

impl Document {
    fn all_rows(&self) -> Vec<&Row> {
        let mut rows: Vec<&Row> = self.general.iter().collect();
        for (_, o) in &self.results {
            rows.extend(o.rows.iter());
        }
        rows
    }

    pub fn render_text(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "\nnas-sync benchmark{} — {} — commit {}\nmachine: {} ({} CPUs, {} GiB); PostgreSQL: {}\ncommand: {}\n\n",
            if self.quick { " (--quick)" } else { "" },
            self.date,
            self.commit,
            self.machine["cpu_model"].as_str().unwrap_or("?"),
            self.machine["cpus"],
            self.machine["memory_gib"],
            self.postgresql.split(" on ").next().unwrap_or(&self.postgresql),
            self.command,
        ));
        if !self.tree_changes.is_empty() {
            out.push_str(&format!(
                "tree built with uncommitted changes: {}\n\n",
                self.tree_changes
                    .iter()
                    .map(|c| c.trim())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let header = [
            "scenario", "measure", "nas-sync", "baseline", "ratio", "goal", "met?",
        ];
        let mut table: Vec<[String; 7]> = Vec::new();
        for r in self.all_rows() {
            table.push([
                r.scenario.clone(),
                r.measure.clone(),
                format!("{} {}", fmt_num(r.value), r.unit),
                r.baseline
                    .map(|b| format!("{} {}", fmt_num(b), r.unit))
                    .unwrap_or_default(),
                r.ratio().map(|x| format!("{x:.2}")).unwrap_or_default(),
                r.goal_text(),
                match r.met() {
                    None => String::new(),
                    Some(true) => "yes".into(),
                    Some(false) => "NO".into(),
                },
            ]);
        }
        let mut widths = header.map(str::len);
        for row in &table {
            for (w, cell) in widths.iter_mut().zip(row.iter()) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::from("|");
            for (i, c) in cells.iter().enumerate() {
                let pad = widths[i] - c.chars().count();
                if (2..=4).contains(&i) {
                    s.push_str(&format!(" {}{} |", " ".repeat(pad), c));
                } else {
                    s.push_str(&format!(" {}{} |", c, " ".repeat(pad)));
                }
            }
            s.push('\n');
            s
        };
        out.push_str(&line(&header.map(String::from)));
        let sep: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        out.push_str(&line(&sep));
        for row in &table {
            out.push_str(&line(row));
        }

        out.push_str("\nbaselines and details:\n");
        for r in self.all_rows() {
            let mut parts = Vec::new();
            if let Some(l) = &r.baseline_label {
                parts.push(format!("baseline = {l}"));
            }
            if let Some(d) = &r.detail {
                parts.push(d.clone());
            }
            if !parts.is_empty() {
                out.push_str(&format!(
                    "  ({}) {}: {}\n",
                    r.scenario,
                    r.measure,
                    parts.join("; ")
                ));
            }
        }
        out.push_str("\nphases:\n");
        for (name, secs) in &self.phases {
            out.push_str(&format!("  {secs:>8.1} s  {name}\n"));
        }
        out.push_str(&format!("  {:>8.1} s  total\n", self.total_secs));
        out.push_str("\nnotes:\n");
        for n in &self.notes {
            out.push_str(&format!("  - {n}\n"));
        }
        out.push_str(&format!(
            "  - server log: {} warning line(s), {} error line(s) ({})\n",
            self.server_log["warn_lines"],
            self.server_log["error_lines"],
            self.server_log["file"].as_str().unwrap_or("?")
        ));
        for kind in self.server_log["kinds"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "      {} x{} from {}: {}\n",
                kind["level"].as_str().unwrap_or(""),
                kind["count"],
                kind["first_at"].as_str().unwrap_or(""),
                kind["example"].as_str().unwrap_or("")
            ));
        }
        for f in &self.failures {
            out.push_str(&format!("  - FAILED: {f}\n"));
        }
        out
    }

    pub fn to_json(&self) -> Value {
        let scenarios: serde_json::Map<String, Value> = self
            .results
            .iter()
            .map(|(s, o)| {
                (
                    s.to_string(),
                    json!({
                        "title": crate::scenarios::title(*s),
                        "rows": o.rows.iter().map(Row::to_json).collect::<Vec<_>>(),
                        "details": o.details,
                    }),
                )
            })
            .collect();
        json!({
            "tool": "examples/bench (scripts/bench.sh)",
            "date": self.date,
            "commit": self.commit,
            "tree_changes": self.tree_changes,
            "command": self.command,
            "machine": self.machine,
            "postgresql": self.postgresql,
            "database": self.database,
            "quick": self.quick,
            "sizes": self.sizes,
            "server": {
                "idle_rss_kib_at_start": self.server_idle_rss_kib,
                "peak_rss_kib": self.server_peak_rss_kib,
                "env": {"NAS_SYNC_RATE_LIMIT": "off", "NAS_SYNC_LOG": "warn"},
                "log": self.server_log,
            },
            "login": self.fleet,
            "phases": self.phases.iter().map(|(n, s)| json!({"phase": n, "seconds": s})).collect::<Vec<_>>(),
            "total_seconds": self.total_secs,
            "table": self.all_rows().iter().map(|r| r.to_json()).collect::<Vec<_>>(),
            "scenarios": scenarios,
            "notes": self.notes,
            "failures": self.failures,
        })
    }
}
