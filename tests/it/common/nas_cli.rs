//! The real `nas-sync` binary run as an operator runs it: arguments, standard input,
//! only the settings the test gives; and assertions on how it ended.

use std::io::Write;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_nas-sync");

/// Runs `nas-sync ARGS` against `url`, with `stdin` as standard input.
pub async fn cli(url: &str, args: &[&str], stdin: Option<&str>) -> Output {
    cli_with(url, args, stdin, &[]).await
}

/// [`cli`] with settings of the test's choosing (`NAS_SYNC_…`, as name and value).
pub async fn cli_with(
    url: &str,
    args: &[&str],
    stdin: Option<&str>,
    settings: &[(&str, &str)],
) -> Output {
    let settings: Vec<(String, String)> = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let url = url.to_string();
    let args: Vec<String> = args.iter().map(ToString::to_string).collect();
    let stdin = stdin.map(str::to_string);
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(BIN);
        // Only the settings this test chooses.
        for (name, _) in std::env::vars() {
            if name.starts_with("NAS_SYNC_") || name.starts_with("DATABASE_URL") {
                cmd.env_remove(name);
            }
        }
        cmd.args(&args)
            .env("DATABASE_URL", &url)
            .env("NAS_SYNC_LOG", "warn")
            .env("NAS_SYNC_DB_CONNECT_TIMEOUT_SECS", "5")
            .envs(settings)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start nas-sync");
        {
            let mut input = child.stdin.take().expect("stdin");
            if let Some(s) = stdin {
                input.write_all(s.as_bytes()).expect("write stdin");
            }
        }
        child.wait_with_output().expect("wait for nas-sync")
    })
    .await
    .expect("join")
}

/// Standard output and standard error, one after the other.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[track_caller]
pub fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "nas-sync failed ({}): {}",
        out.status,
        text(out)
    );
}

#[track_caller]
pub fn assert_fails(out: &Output) {
    assert!(
        !out.status.success(),
        "nas-sync should have failed: {}",
        text(out)
    );
}
