//! `nas-sync doctor`: checks what usually goes wrong on a NAS and says what to fix:
//! settings, database reachability and version, migrations, clock skew against the
//! database, the change-feed horizon lag, and free disk where the database keeps its
//! data (when it runs on this host). Exits non-zero when a check fails.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;

use crate::config::Config;

/// How a check went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
}

/// One line of the report.
#[derive(Debug)]
pub struct Check {
    pub name: &'static str,
    pub verdict: Verdict,
    pub detail: String,
    /// What to do about it (empty when fine).
    pub fix: String,
}

fn check(
    name: &'static str,
    verdict: Verdict,
    detail: impl Into<String>,
    fix: impl Into<String>,
) -> Check {
    Check {
        name,
        verdict,
        detail: detail.into(),
        fix: fix.into(),
    }
}

/// Runs every check; stops after the database checks when it is unreachable.
pub async fn run(config: &Config) -> Vec<Check> {
    let mut out = Vec::new();
    out.push(check(
        "settings",
        if config.bind.ip().is_loopback() { Verdict::Warn } else { Verdict::Ok },
        format!(
            "bind {}, rate limits {}, JWT secret {}",
            config.bind,
            if config.rate_limit { "on" } else { "off" },
            if config.jwt_secret.is_some() { "from the environment" } else { "kept in the database" }
        ),
        if config.bind.ip().is_loopback() {
            "NAS_SYNC_BIND listens on loopback only: devices (and a container's port mapping) cannot reach it; use 0.0.0.0:8080 in a container"
        } else {
            ""
        },
    ));
    let opts = match crate::db::connect_options(&config.database_url) {
        Ok(o) => o,
        Err(e) => {
            out.push(check(
                "database",
                Verdict::Fail,
                format!("{e:#}"),
                "fix DATABASE_URL (postgres://user:password@host:5432/nas_sync)",
            ));
            return out;
        }
    };
    let pool = match PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(opts)
        .await
    {
        Ok(p) => p,
        Err(e) => {
            let fix = match &e {
                sqlx::Error::Database(d) if d.code().as_deref() == Some("3D000") => {
                    "the database does not exist yet: run `nas-sync migrate` (or start the server, which creates it)"
                }
                sqlx::Error::Database(d) if d.code().as_deref() == Some("28P01") => {
                    "wrong password: check the user and password in DATABASE_URL (and POSTGRES_PASSWORD of the database container)"
                }
                _ => {
                    "is PostgreSQL running and reachable at the host and port of DATABASE_URL? (docker compose ps; pg_isready -h HOST -p PORT)"
                }
            };
            out.push(check(
                "database",
                Verdict::Fail,
                format!(
                    "cannot connect: {}",
                    match &e {
                        sqlx::Error::Database(d) => d.message().to_string(),
                        other => other.to_string(),
                    }
                ),
                fix,
            ));
            return out;
        }
    };
    match sqlx::query_as::<_, (i32, String)>(
        "SELECT current_setting('server_version_num')::int, current_setting('server_version')",
    )
    .fetch_one(&pool)
    .await
    {
        Ok((num, text)) if num >= 130_000 => out.push(check(
            "database",
            Verdict::Ok,
            format!("reachable, PostgreSQL {text}"),
            "",
        )),
        Ok((_, text)) => out.push(check(
            "database",
            Verdict::Fail,
            format!("PostgreSQL {text} is too old"),
            "use PostgreSQL 13 or later (15 recommended)",
        )),
        Err(e) => out.push(check("database", Verdict::Fail, format!("{e}"), "")),
    }
    let current = crate::db::migrate::is_current(&pool).await;
    out.push(if current {
        check(
            "migrations",
            Verdict::Ok,
            format!("at version {}", crate::db::migrate::latest_version()),
            "",
        )
    } else {
        check(
            "migrations",
            Verdict::Fail,
            "the schema is missing or behind this version",
            "run `nas-sync migrate` (serve does it too)",
        )
    });
    match sqlx::query_scalar::<_, chrono::DateTime<chrono::Utc>>("SELECT now()")
        .fetch_one(&pool)
        .await
    {
        Ok(db_now) => {
            let skew = (chrono::Utc::now() - db_now).num_milliseconds().abs() as f64 / 1000.0;
            let verdict = if skew > 60.0 {
                Verdict::Fail
            } else if skew > 5.0 {
                Verdict::Warn
            } else {
                Verdict::Ok
            };
            out.push(check(
                "clock",
                verdict,
                format!("{skew:.1} s apart from the database's clock"),
                if verdict == Verdict::Ok { "" } else { "enable NTP on the NAS (and the database host); device-time capping and token expiry use the clocks" },
            ));
        }
        Err(e) => out.push(check("clock", Verdict::Warn, format!("{e}"), "")),
    }
    match crate::sync::horizon::horizon_lag_seconds(&pool).await {
        Ok(lag) => {
            let verdict = if lag > 300.0 {
                Verdict::Fail
            } else if lag > 60.0 {
                Verdict::Warn
            } else {
                Verdict::Ok
            };
            out.push(check(
                "change feed",
                verdict,
                format!("horizon lag {lag:.0} s"),
                if verdict == Verdict::Ok {
                    ""
                } else {
                    "a transaction has been open that long and holds every pull back: find it with \
                     SELECT pid, state, xact_start, query FROM pg_stat_activity ORDER BY xact_start; \
                     set idle_in_transaction_session_timeout"
                },
            ));
        }
        Err(e) => out.push(check("change feed", Verdict::Warn, format!("{e}"), "")),
    }
    out.push(disk(&pool).await);
    pool.close().await;
    out
}

/// Free space where PostgreSQL keeps its data, when that directory is on this host.
async fn disk(pool: &sqlx::PgPool) -> Check {
    let dir: Option<String> = sqlx::query_scalar("SELECT current_setting('data_directory', true)")
        .fetch_one(pool)
        .await
        .ok()
        .flatten();
    let Some(dir) = dir.filter(|d| std::path::Path::new(d).exists()) else {
        return check(
            "disk",
            Verdict::Ok,
            "the database's data directory is not visible from here (another host or container); check its volume there",
            "",
        );
    };
    let out = std::process::Command::new("df")
        .args(["-Pk", &dir])
        .output();
    let avail_kib = out.ok().and_then(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.split_whitespace().nth(3).map(str::to_string))
            .and_then(|v| v.parse::<u64>().ok())
    });
    match avail_kib {
        Some(kib) => {
            let gib = kib as f64 / 1024.0 / 1024.0;
            let verdict = if gib < 1.0 {
                Verdict::Fail
            } else if gib < 5.0 {
                Verdict::Warn
            } else {
                Verdict::Ok
            };
            check(
                "disk",
                verdict,
                format!("{gib:.1} GiB free for {dir}"),
                if verdict == Verdict::Ok {
                    ""
                } else {
                    "free space on the database volume: PostgreSQL stops writing when it is full"
                },
            )
        }
        None => check(
            "disk",
            Verdict::Warn,
            format!("could not measure free space of {dir}"),
            "",
        ),
    }
}

/// The report as text; the second value is whether every check passed (warnings pass).
pub fn render(checks: &[Check]) -> (String, bool) {
    let mut text = String::new();
    let mut healthy = true;
    for c in checks {
        let mark = match c.verdict {
            Verdict::Ok => "ok  ",
            Verdict::Warn => "WARN",
            Verdict::Fail => {
                healthy = false;
                "FAIL"
            }
        };
        text.push_str(&format!("{mark} {:<12} {}\n", c.name, c.detail));
        if !c.fix.is_empty() {
            text.push_str(&format!("     {:<12} fix: {}\n", "", c.fix));
        }
    }
    text.push_str(if healthy {
        "\nhealthy\n"
    } else {
        "\nproblems found: see FAIL lines\n"
    });
    (text, healthy)
}
