//! Scheduled backups (`nas-sync backup-loop`) and their health check
//! (`nas-sync backup-check`): what the compose file's `backup` service runs.
//!
//! The loop waits until the database carries this build's schema before its first
//! dump (it starts beside the server, which may still be migrating: a dump taken then
//! holds nothing), then writes `nas-sync-YYYYMMDDTHHMMSSZ.dump` every period and keeps
//! the newest few. A failed dump is retried ten minutes later. It is a process of its
//! own, not a shell loop, so the container stops at once on SIGTERM.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use sqlx::Connection;

/// The files the loop writes and prunes; others (`before-update-*.dump`) are kept.
const PREFIX: &str = "nas-sync-";
const SUFFIX: &str = ".dump";
/// How long a failed dump waits before the next try.
const RETRY: Duration = Duration::from_secs(600);
/// How long the first dump waits for the server's migrations before it dumps what is
/// there (a server that cannot migrate must not leave the data without backups).
const SCHEMA_PATIENCE: Duration = Duration::from_secs(600);

/// Where, how often and how many.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub dir: PathBuf,
    pub every: Duration,
    pub keep: usize,
}

/// Runs until the process is stopped: dumps, prunes, sleeps.
pub async fn run(settings: &super::DbSettings, schedule: &Schedule) -> anyhow::Result<()> {
    remove_partials(&schedule.dir);
    wait_for_schema(settings).await;
    loop {
        let file = schedule.dir.join(format!(
            "{PREFIX}{}{SUFFIX}",
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
        ));
        let cfg = settings.clone();
        let target = file.clone();
        let done = tokio::task::spawn_blocking(move || super::backup::backup(&cfg, &target))
            .await
            .context("the backup task ended abnormally")?;
        match done {
            Ok(bytes) => {
                tracing::info!(file = %file.display(), bytes, "backup written");
                for old in prune(&schedule.dir, schedule.keep) {
                    tracing::info!(file = %old.display(), "old backup removed");
                }
                tokio::time::sleep(schedule.every).await;
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), retry_in_s = RETRY.as_secs(),
                    "backup failed");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// Waits until the database holds every migration of this build, or until
/// `SCHEMA_PATIENCE` has passed with at least some schema there.
async fn wait_for_schema(settings: &super::DbSettings) {
    let latest = super::migrate::latest_version();
    let started = std::time::Instant::now();
    let mut told = None::<std::time::Instant>;
    loop {
        let found = schema_version(&settings.url).await;
        match &found {
            Ok(Some(v)) if *v >= latest => return,
            Ok(Some(v)) if started.elapsed() > SCHEMA_PATIENCE => {
                tracing::warn!(
                    schema = v,
                    expected = latest,
                    "the schema is still behind this version; backing up what is there"
                );
                return;
            }
            _ => {}
        }
        if told.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
            let state = match &found {
                Ok(Some(v)) => format!("schema at version {v} of {latest}"),
                Ok(None) => "no nas-sync schema yet".to_string(),
                Err(e) => format!("database not reachable: {e:#}"),
            };
            tracing::info!(%state, "waiting for nas-sync to migrate the database before the first backup");
            told = Some(std::time::Instant::now());
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

/// The newest applied migration, `None` when the database holds no nas-sync schema.
pub async fn schema_version(database_url: &str) -> anyhow::Result<Option<i64>> {
    let opts = super::connect_options(database_url)?;
    let mut conn = tokio::time::timeout(
        Duration::from_secs(5),
        sqlx::PgConnection::connect_with(&opts),
    )
    .await
    .context("connecting to the database timed out")??;
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass('refinery_schema_history') IS NOT NULL")
            .fetch_one(&mut conn)
            .await?;
    let version = if exists {
        sqlx::query_scalar::<_, Option<i64>>(
            "SELECT max(version)::bigint FROM refinery_schema_history",
        )
        .fetch_one(&mut conn)
        .await?
    } else {
        None
    };
    let _ = conn.close().await;
    Ok(version)
}

/// The loop's dumps in `dir`, newest first.
fn dumps(dir: &Path) -> Vec<(PathBuf, SystemTime)> {
    let mut found: Vec<(PathBuf, SystemTime)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with(PREFIX) && name.ends_with(SUFFIX)
        })
        .filter_map(|e| Some((e.path(), e.metadata().ok()?.modified().ok()?)))
        .collect();
    found.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    found
}

/// Removes all but the `keep` newest dumps; returns what it removed.
fn prune(dir: &Path, keep: usize) -> Vec<PathBuf> {
    dumps(dir)
        .into_iter()
        .skip(keep.max(1))
        .filter_map(|(path, _)| std::fs::remove_file(&path).ok().map(|()| path))
        .collect()
}

/// Dumps cut short by a stop (the loop's own `.partial` files).
fn remove_partials(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(PREFIX) && name.ends_with(".partial") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The health check: `Ok` with a line about the newest dump when it is younger than
/// the period plus an hour (time for the dump itself), else `Err` saying why.
pub fn check(schedule: &Schedule) -> Result<String, String> {
    let Some((newest, modified)) = dumps(&schedule.dir).into_iter().next() else {
        return Err(format!("no backup yet in {}", schedule.dir.display()));
    };
    let age = SystemTime::now()
        .duration_since(modified)
        .unwrap_or_default();
    let line = format!(
        "newest backup: {}, {} minutes old",
        newest.display(),
        age.as_secs() / 60
    );
    if age <= schedule.every + Duration::from_secs(3600) {
        Ok(line)
    } else {
        Err(format!(
            "{line}: older than every {} hours plus one",
            schedule.every.as_secs() / 3600
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, name: &str, age_s: u64) {
        let path = dir.join(name);
        std::fs::write(&path, b"x").unwrap();
        let when = SystemTime::now() - Duration::from_secs(age_s);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(when)
            .unwrap();
    }

    #[test]
    fn keeps_the_newest_dumps_and_never_touches_other_files() {
        let dir = std::env::temp_dir().join(format!("nas-sync-prune-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        touch(&dir, "nas-sync-20260101T000000Z.dump", 300);
        touch(&dir, "nas-sync-20260102T000000Z.dump", 200);
        touch(&dir, "nas-sync-20260103T000000Z.dump", 100);
        touch(&dir, "before-update-2026-01-01.dump", 900);
        touch(&dir, "nas-sync-20260104T000000Z.dump.partial", 50);
        let schedule = Schedule {
            dir: dir.clone(),
            every: Duration::from_secs(3600),
            keep: 2,
        };
        assert!(check(&schedule).unwrap().contains("20260103"));
        let removed = prune(&dir, 2);
        assert_eq!(removed, vec![dir.join("nas-sync-20260101T000000Z.dump")]);
        remove_partials(&dir);
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "before-update-2026-01-01.dump",
                "nas-sync-20260102T000000Z.dump",
                "nas-sync-20260103T000000Z.dump"
            ]
        );
        // Older than the period plus an hour: unhealthy.
        touch(&dir, "nas-sync-20260103T000000Z.dump", 3 * 3600);
        touch(&dir, "nas-sync-20260102T000000Z.dump", 4 * 3600);
        assert!(check(&schedule).unwrap_err().contains("older than"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(check(&schedule).unwrap_err().contains("no backup yet"));
    }
}
