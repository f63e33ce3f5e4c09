//! `nas-sync backup` and `nas-sync restore`: PostgreSQL's own `pg_dump` and
//! `pg_restore` (custom format), with clear errors when they are missing or fail.
//!
//! A restore draws a new epoch, so every cursor issued before it answers
//! `RESYNC_REQUIRED`: devices then full-sync and receive exactly the restored data,
//! while the changes they made offline stay queued on the device and can still be
//! pushed. The password travels in `PGPASSWORD`, never on a command line.

use std::path::Path;
use std::process::{Command, Output};

use anyhow::{Context, bail};
use reqwest::Url;

use crate::config::Config;

/// The environment that points libpq tools at `DATABASE_URL`.
fn libpq_env(database_url: &str) -> anyhow::Result<Vec<(&'static str, String)>> {
    let url = Url::parse(database_url).context("DATABASE_URL is not a valid URL")?;
    let mut env = vec![
        ("PGHOST", url.host_str().unwrap_or("127.0.0.1").to_string()),
        ("PGPORT", url.port().unwrap_or(5432).to_string()),
        ("PGDATABASE", url.path().trim_start_matches('/').to_string()),
    ];
    if !url.username().is_empty() {
        env.push(("PGUSER", decode(url.username())));
    }
    if let Some(p) = url.password() {
        env.push(("PGPASSWORD", decode(p)));
    }
    for (k, v) in url.query_pairs() {
        if k == "sslmode" {
            env.push(("PGSSLMODE", v.to_string()));
        }
    }
    Ok(env)
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs a libpq tool; a missing tool or a failure says what to do.
fn run_tool(tool: &str, args: &[&str], env: &[(&'static str, String)]) -> anyhow::Result<Output> {
    let out = Command::new(tool)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{tool} was not found. Install PostgreSQL's client tools in the same major version as \
             the server (Debian/Ubuntu: apt install postgresql-client-15; Alpine: apk add \
             postgresql15-client), or run the command in the database container."
        ),
        Err(e) => return Err(e).with_context(|| format!("running {tool}")),
    };
    if !out.status.success() {
        bail!(
            "{tool} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// Writes a custom-format dump of the database to `output` (atomically: a partial
/// file never takes the name).
pub fn backup(config: &Config, output: &Path) -> anyhow::Result<u64> {
    let env = libpq_env(&config.database_url)?;
    let partial = std::path::PathBuf::from(format!("{}.partial", output.display()));
    let partial_str = partial
        .to_str()
        .context("the output path is not valid UTF-8")?;
    if let Err(e) = run_tool(
        "pg_dump",
        &[
            "--format=custom",
            "--no-owner",
            "--no-privileges",
            "--file",
            partial_str,
        ],
        &env,
    ) {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, output)
        .with_context(|| format!("moving the backup to {}", output.display()))?;
    Ok(std::fs::metadata(output)?.len())
}

/// Restores a dump made by `backup` into the database of `DATABASE_URL` (created if
/// missing). A database that already holds nas-sync data is only replaced when
/// `replace` is set. Ends with migrations and a new epoch.
pub async fn restore(config: &Config, input: &Path, replace: bool) -> anyhow::Result<()> {
    if !input.is_file() {
        bail!("{} is not a file", input.display());
    }
    let input_str = input
        .to_str()
        .context("the input path is not valid UTF-8")?;
    let env = libpq_env(&config.database_url)?;
    // A readable table of contents, before anything is touched.
    run_tool("pg_restore", &["--list", input_str], &env).with_context(|| {
        format!(
            "{} is not a backup made by nas-sync backup",
            input.display()
        )
    })?;
    super::ensure_database(&config.database_url, config.db_connect_timeout).await?;
    let opts = super::connect_options(&config.database_url)?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await
        .context("connecting to the database to restore into")?;
    let in_use: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.tables
                        WHERE table_schema = current_schema() AND table_name = 'server_meta')",
    )
    .fetch_one(&pool)
    .await?;
    if in_use {
        if !replace {
            bail!(
                "the database already holds nas-sync data; stop the server and pass --replace to \
                 overwrite it with the backup"
            );
        }
        sqlx::query("DROP SCHEMA public CASCADE")
            .execute(&pool)
            .await?;
        sqlx::query("CREATE SCHEMA public").execute(&pool).await?;
    }
    pool.close().await;
    run_tool(
        "pg_restore",
        &[
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "--single-transaction",
            "--dbname",
            &env_db(&env),
            input_str,
        ],
        &env,
    )?;
    // Newer migrations on an older backup, then cursors issued before are void.
    let pool = super::prepare(config).await?;
    sqlx::query("UPDATE server_meta SET value = gen_random_uuid()::text WHERE key = 'epoch'")
        .execute(&pool)
        .await?;
    pool.close().await;
    Ok(())
}

fn env_db(env: &[(&'static str, String)]) -> String {
    env.iter()
        .find(|(k, _)| *k == "PGDATABASE")
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_become_libpq_variables_without_the_password_on_a_command_line() {
        let env =
            libpq_env("postgres://nas:p%40ss@db.local:5433/nas_sync?sslmode=require").unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("PGHOST"), Some("db.local"));
        assert_eq!(get("PGPORT"), Some("5433"));
        assert_eq!(get("PGUSER"), Some("nas"));
        assert_eq!(get("PGPASSWORD"), Some("p@ss"));
        assert_eq!(get("PGDATABASE"), Some("nas_sync"));
        assert_eq!(get("PGSSLMODE"), Some("require"));
    }
}
