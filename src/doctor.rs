//! `nas-sync doctor`: checks what usually goes wrong on a NAS and says what to fix:
//! settings, the secrets (the secret key that seals Odoo API keys, where the JWT
//! secret lives, whether the stored Odoo keys are sealed and open), database
//! reachability and version, migrations, clock skew against the database, the
//! change-feed horizon lag, the open-files limit (connections), whether any role logs
//! in without a password where
//! nas-sync reaches PostgreSQL (the socket and the TCP address), and free disk where the database keeps its data (when it
//! runs on this host). Exits non-zero when a check fails.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::config::Config;
use crate::secrets::{MIN_KEY_CHARS, SecretBox};

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
            "bind {}, rate limits {}",
            config.bind,
            if config.rate_limit { "on" } else { "off" },
        ),
        if config.bind.ip().is_loopback() {
            "NAS_SYNC_BIND listens on loopback only: devices (and a container's port mapping) cannot reach it; use 0.0.0.0:8080 in a container"
        } else {
            ""
        },
    ));
    out.extend(secret_checks(config));
    out.push(open_files(config));
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
    let passwordless_routes = routes(&opts);
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
    out.push(role(&pool).await);
    out.push(passwords(&pool, &passwordless_routes).await);
    if current {
        out.push(odoo_keys(config, &pool).await);
    }
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

/// The open-files limit `serve` will have (it raises its soft limit to the hard one):
/// every connection is a descriptor, so it bounds the connections.
fn open_files(config: &Config) -> Check {
    let limit = crate::serve::raise_open_files();
    let max = config
        .max_connections
        .unwrap_or_else(|| crate::serve::default_max_connections(limit, config.db_max_connections));
    let detail = format!("{limit} open files: up to {max} connections");
    if limit < 1024 {
        check(
            "open files",
            Verdict::Warn,
            detail,
            "few descriptors for a server: raise the hard limit (compose: `ulimits: nofile: \
             65536` on the nas-sync service; systemd: LimitNOFILE=65536)",
        )
    } else {
        check("open files", Verdict::Ok, detail, "")
    }
}

/// The secret key (set, long enough) and the JWT secret (kept out of the database).
fn secret_checks(config: &Config) -> [Check; 2] {
    let generate = "put `openssl rand -hex 32` in a file only the server can read and name it \
                    in NAS_SYNC_SECRET_KEY_FILE (compose: `sh init-secrets.sh` writes \
                    secrets/secret_key.txt); keep a copy apart from the backups";
    let key = match config.secret_key.as_deref() {
        None => check(
            "secret key",
            Verdict::Fail,
            "NAS_SYNC_SECRET_KEY is not set: Odoo API keys cannot be stored encrypted, so \
             creating Odoo connections is refused (SECRET_KEY_MISSING)",
            generate,
        ),
        Some(k) if SecretBox::new(k).is_err() => check(
            "secret key",
            Verdict::Fail,
            format!(
                "NAS_SYNC_SECRET_KEY has {} characters, fewer than {MIN_KEY_CHARS}: the server \
                 refuses to start",
                k.chars().count()
            ),
            generate,
        ),
        Some(k) => check(
            "secret key",
            Verdict::Ok,
            format!("set ({} characters)", k.chars().count()),
            "",
        ),
    };
    let jwt = if config.jwt_secret.is_some() {
        check(
            "jwt secret",
            Verdict::Ok,
            "from NAS_SYNC_JWT_SECRET (not in the database or its backups)",
            "",
        )
    } else {
        check(
            "jwt secret",
            Verdict::Warn,
            "NAS_SYNC_JWT_SECRET is not set: the signing secret is kept in the database, so \
             every backup carries it (whoever holds a backup can sign tokens)",
            "set NAS_SYNC_JWT_SECRET_FILE to a file of at least 16 random characters (compose \
             does, from secrets/jwt_secret.txt); changing it logs every device out once",
        )
    };
    [key, jwt]
}

/// The role nas-sync connects as should own its database and nothing more: a
/// superuser (earlier compose files connected as one) can read and change every
/// database of the cluster, files of the server, and its settings.
async fn role(pool: &sqlx::PgPool) -> Check {
    match sqlx::query_as::<_, (String, bool, bool, bool)>(
        "SELECT current_user::text, rolsuper, rolcreatedb, rolcreaterole
         FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(pool)
    .await
    {
        Ok((name, false, false, false)) => check(
            "database role",
            Verdict::Ok,
            format!("{name}: no superuser, CREATEDB or CREATEROLE"),
            "",
        ),
        Ok((name, superuser, ..)) => check(
            "database role",
            Verdict::Warn,
            format!(
                "{name} is {}",
                if superuser {
                    "a superuser"
                } else {
                    "allowed to create databases or roles"
                }
            ),
            "connect as a role that owns the nas_sync database and nothing else \
             (docs/operations.md#the-database-role)",
        ),
        Err(e) => check("database role", Verdict::Warn, format!("{e}"), ""),
    }
}

/// Where nas-sync reaches PostgreSQL, with an empty password: the Unix socket of
/// `host=` when the URL names one, and the URL's TCP host and port. The `postgres`
/// database, which every role may connect to unless an operator changed that.
fn routes(opts: &PgConnectOptions) -> Vec<(String, PgConnectOptions)> {
    let mut out = Vec::new();
    if let Some(socket) = opts.get_socket() {
        out.push((
            format!("the socket {}", socket.display()),
            opts.clone().password("").database("postgres"),
        ));
    }
    let tcp = PgConnectOptions::new_without_pgpass()
        .host(opts.get_host())
        .port(opts.get_port())
        .ssl_mode(sqlx::postgres::PgSslMode::Prefer)
        .password("")
        .database("postgres")
        .application_name("nas-sync doctor");
    out.push((format!("TCP {}:{}", opts.get_host(), opts.get_port()), tcp));
    out
}

/// No role may log in without a password where nas-sync connects: the postgres
/// image's initdb trusts every local (socket) connection, and the socket is shared
/// with nas-sync's container, so without this anyone in that container was a
/// superuser. Each login role is tried with an empty password (PostgreSQL never
/// accepts one, so a success means the route asks for none).
async fn passwords(pool: &sqlx::PgPool, routes: &[(String, PgConnectOptions)]) -> Check {
    let roles: Vec<String> = match sqlx::query_scalar(
        "SELECT rolname::text FROM pg_roles WHERE rolcanlogin ORDER BY rolsuper DESC, rolname LIMIT 50",
    )
    .fetch_all(pool)
    .await
    {
        Ok(r) => r,
        Err(e) => return check("passwords", Verdict::Warn, format!("{e}"), ""),
    };
    let mut open = Vec::new();
    for (route, opts) in routes {
        for role in &roles {
            let attempt = opts.clone().username(role);
            if logs_in(&attempt).await {
                open.push(format!("{role} over {route}"));
            }
        }
    }
    let tried = routes
        .iter()
        .map(|(r, _)| r.as_str())
        .collect::<Vec<_>>()
        .join(" and ");
    if open.is_empty() {
        check(
            "passwords",
            Verdict::Ok,
            format!(
                "no role logs in without a password ({} roles over {tried})",
                roles.len()
            ),
            "",
        )
    } else {
        check(
            "passwords",
            Verdict::Fail,
            format!("logs in without a password: {}", open.join(", ")),
            "PostgreSQL trusts these connections, so anyone who reaches them is that role \
             (a superuser can read and change everything): set the method of every `local` \
             and `host` line of pg_hba.conf to scram-sha-256 and reload \
             (docs/operations.md#passwords-on-every-connection)",
        )
    }
}

/// Whether a connection with these options gets past authentication.
async fn logs_in(opts: &PgConnectOptions) -> bool {
    match tokio::time::timeout(
        Duration::from_secs(3),
        <sqlx::PgConnection as sqlx::Connection>::connect_with(opts),
    )
    .await
    {
        Ok(Ok(conn)) => {
            let _ = sqlx::Connection::close(conn).await;
            true
        }
        // Refused after authentication: no such database, or no CONNECT on it.
        Ok(Err(sqlx::Error::Database(d))) => {
            matches!(d.code().as_deref(), Some("3D000" | "42501"))
        }
        _ => false,
    }
}

/// Whether the stored Odoo API keys are sealed, and open with this secret key.
async fn odoo_keys(config: &Config, pool: &sqlx::PgPool) -> Check {
    let secrets = config
        .secret_key
        .as_deref()
        .and_then(|k| SecretBox::new(k).ok());
    let counts = match crate::odoo::connections::key_counts(pool, secrets.as_ref()).await {
        Ok(c) => c,
        Err(e) => return check("odoo keys", Verdict::Warn, format!("{e}"), ""),
    };
    if counts.plain > 0 {
        return check(
            "odoo keys",
            Verdict::Fail,
            format!(
                "{} of {} Odoo API keys are stored in plain text (so is every backup of them)",
                counts.plain, counts.connections
            ),
            "set NAS_SYNC_SECRET_KEY and restart the server: it encrypts them at start",
        );
    }
    if counts.unreadable > 0 {
        return check(
            "odoo keys",
            Verdict::Fail,
            format!(
                "{} of {} Odoo API keys cannot be opened with this NAS_SYNC_SECRET_KEY (sealed \
                 under another one, or it is not set)",
                counts.unreadable, counts.connections
            ),
            "set the secret key they were sealed with, or send each connection its API key \
             again (PATCH /api/v1/odoo/connections/ID with api_key)",
        );
    }
    let detail = match counts.connections {
        0 => "no Odoo connections".to_string(),
        n => format!("{n} Odoo connections, API keys stored encrypted and readable"),
    };
    check("odoo keys", Verdict::Ok, detail, "")
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
