//! `nas-sync backup` and `nas-sync restore`: PostgreSQL's own `pg_dump` and
//! `pg_restore` (custom format), with clear errors when they are missing or fail.
//!
//! A backup file is private to its owner (mode 0600 from its first byte): it holds
//! every row, password hashes and, unless `NAS_SYNC_JWT_SECRET` is set, the signing
//! secret.
//!
//! A restore is one transaction: `pg_restore` turns the dump into SQL, which `psql`
//! runs after dropping the old schema, inside one `BEGIN`; the `COMMIT` is sent only
//! once `pg_restore` has read the whole file. A truncated or damaged dump, or any
//! failing statement, rolls everything back and leaves the current data as it was.
//!
//! A restore draws a new epoch, so every cursor issued before it answers
//! `RESYNC_REQUIRED`: devices then full-sync and receive exactly the restored data,
//! while the changes they made offline stay queued on the device and can still be
//! pushed. The password travels in `PGPASSWORD`, never on a command line.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use anyhow::{Context, bail};
use reqwest::Url;

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

/// What to do when a libpq tool is missing.
fn missing_tool(tool: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{tool} was not found. Install PostgreSQL's client tools in the same major version as \
         the server (Debian/Ubuntu: apt install postgresql-client-15; Alpine: apk add \
         postgresql15-client), or run the command in the database container."
    )
}

/// Starts a libpq tool with the connection's environment.
fn spawn_tool(
    tool: &str,
    args: &[&str],
    env: &[(&'static str, String)],
    stdin: Stdio,
    stdout: Stdio,
) -> anyhow::Result<std::process::Child> {
    Command::new(tool)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                missing_tool(tool)
            } else {
                anyhow::Error::new(e).context(format!("running {tool}"))
            }
        })
}

/// Runs a libpq tool; a missing tool or a failure says what to do.
fn run_tool(tool: &str, args: &[&str], env: &[(&'static str, String)]) -> anyhow::Result<Output> {
    let out = spawn_tool(tool, args, env, Stdio::null(), Stdio::piped())?
        .wait_with_output()
        .with_context(|| format!("running {tool}"))?;
    if !out.status.success() {
        bail!(
            "{tool} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// Creates (or empties) `path` readable and writable by its owner only.
fn private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        options.open(path)?;
        // An existing file keeps its mode through open(): set it.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
    }
    #[cfg(not(unix))]
    options.open(path).map(drop)
}

/// Writes a custom-format dump of the database to `output` (atomically: a partial
/// file never takes the name), mode 0600 from its first byte.
pub fn backup(settings: &super::DbSettings, output: &Path) -> anyhow::Result<u64> {
    let env = libpq_env(&settings.url)?;
    let partial = std::path::PathBuf::from(format!("{}.partial", output.display()));
    let partial_str = partial
        .to_str()
        .context("the output path is not valid UTF-8")?;
    // pg_dump opens an existing file without changing its mode.
    private_file(&partial).with_context(|| format!("creating {}", partial.display()))?;
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
/// `replace` is set, and only if the whole restore succeeds. Ends with migrations
/// and a new epoch.
pub async fn restore(
    settings: &super::DbSettings,
    input: &Path,
    replace: bool,
) -> anyhow::Result<()> {
    if !input.is_file() {
        bail!("{} is not a file", input.display());
    }
    let input_str = input
        .to_str()
        .context("the input path is not valid UTF-8")?
        .to_string();
    let env = libpq_env(&settings.url)?;
    // A readable table of contents, before anything is touched.
    run_tool("pg_restore", &["--list", &input_str], &env).with_context(|| {
        format!(
            "{} is not a backup made by nas-sync backup",
            input.display()
        )
    })?;
    super::ensure_database(&settings.url, settings.connect_timeout).await?;
    let opts = super::connect_options(&settings.url)?;
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
    pool.close().await;
    if in_use && !replace {
        bail!(
            "the database already holds nas-sync data; stop the server and pass --replace to \
             overwrite it with the backup"
        );
    }
    let shown = input.display().to_string();
    tokio::task::spawn_blocking(move || restore_in_one_transaction(&env, &input_str, in_use))
        .await
        .context("the restore task ended abnormally")?
        .with_context(|| {
            format!(
                "restoring {shown} failed and was rolled back: the database still holds {}",
                if in_use {
                    "its previous data"
                } else {
                    "what it held before (nothing of the backup)"
                }
            )
        })?;
    // Newer migrations on an older backup, then cursors issued before are void.
    let pool = super::prepare(settings).await?;
    sqlx::query("UPDATE server_meta SET value = gen_random_uuid()::text WHERE key = 'epoch'")
        .execute(&pool)
        .await?;
    pool.close().await;
    Ok(())
}

/// Reads a child's standard error on a thread of its own, so a chatty child never
/// blocks on a full pipe while the other end is busy.
fn drain_stderr(child: &mut std::process::Child) -> std::thread::JoinHandle<String> {
    let stderr = child.stderr.take();
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut e) = stderr {
            let _ = std::io::Read::read_to_string(&mut e, &mut text);
        }
        text.trim().to_string()
    })
}

/// `pg_restore` writes the dump as SQL into `psql`, after `BEGIN` and (with `replace`)
/// the old schema's drop; `COMMIT` follows only when `pg_restore` read the whole dump
/// and `psql` ran every statement. Otherwise `psql` is killed before it sees a
/// `COMMIT`, and PostgreSQL rolls the transaction back, drop included.
fn restore_in_one_transaction(
    env: &[(&'static str, String)],
    input: &str,
    replace: bool,
) -> anyhow::Result<()> {
    let mut psql = spawn_tool(
        "psql",
        &["--no-psqlrc", "--quiet", "--set", "ON_ERROR_STOP=1"],
        env,
        Stdio::piped(),
        Stdio::null(),
    )?;
    let psql_err = drain_stderr(&mut psql);
    let mut pg_restore = match spawn_tool(
        "pg_restore",
        &["--no-owner", "--no-privileges", "--file", "-", input],
        env,
        Stdio::null(),
        Stdio::piped(),
    ) {
        Ok(child) => child,
        Err(e) => {
            let _ = psql.kill();
            let _ = psql.wait();
            return Err(e);
        }
    };
    let restore_err = drain_stderr(&mut pg_restore);
    let (Some(mut sql_in), Some(mut sql_out)) = (psql.stdin.take(), pg_restore.stdout.take())
    else {
        let _ = (psql.kill(), pg_restore.kill());
        let _ = (psql.wait(), pg_restore.wait());
        bail!("could not connect pg_restore to psql");
    };
    let mut preamble = String::from("BEGIN;\nSET LOCAL client_min_messages = warning;\n");
    if replace {
        preamble.push_str("DROP SCHEMA public CASCADE;\nCREATE SCHEMA public;\n");
    }
    // A write fails when psql stopped on an error; its own message says why.
    let piped = sql_in
        .write_all(preamble.as_bytes())
        .and_then(|()| std::io::copy(&mut sql_out, &mut sql_in).map(drop));
    drop(sql_out);
    if piped.is_err() {
        let _ = pg_restore.kill();
    }
    let read_all = pg_restore.wait().context("waiting for pg_restore")?;
    let restore_err = restore_err.join().unwrap_or_default();
    if !read_all.success() || piped.is_err() {
        // No COMMIT: end psql's session, so PostgreSQL rolls everything back.
        let _ = psql.kill();
        let _ = psql.wait();
        drop(sql_in);
        let psql_err = psql_err.join().unwrap_or_default();
        if piped.is_err() && !psql_err.is_empty() {
            bail!("psql stopped on an error: {psql_err}");
        }
        bail!("pg_restore could not read the whole backup (truncated or damaged?): {restore_err}");
    }
    let committed = sql_in.write_all(b"COMMIT;\n");
    drop(sql_in);
    let applied = psql.wait().context("waiting for psql")?;
    let psql_err = psql_err.join().unwrap_or_default();
    if committed.is_err() || !applied.success() {
        bail!("psql failed ({applied}): {psql_err}");
    }
    Ok(())
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
