//! (i) Load and abuse: 200 well-behaved devices of one tenant sync while
//! one attacker, from an address of its own, does each of the known denial-of-service
//! attacks in turn. Reports the well-behaved devices' p99 and error count in every
//! phase, side by side with the quiet phase of the same run.
//!
//! The server runs with the production defaults (rate limits on, unlike the other
//! scenarios), and every well-behaved device has an address of its own (127.0.1.x),
//! as phones on a network do, so per-address limits count them apart. Each device
//! pulls once a second (random phase), pushes one row every 5th cycle and lists
//! conflicts every 5th; a newcomer logs in every 2 s (a store user of the same
//! tenant, from 127.0.2.1). The attacker's phases:
//! - slow logins: 540 connections to `/api/v1/auth/login`, each announcing 100 bytes
//!   and sending one, reconnecting when cut off;
//! - stalled pushes: a store user of another tenant holding 140 pushes the same way;
//! - connection flood: 1,000 idle keep-alive connections, reopened when closed;
//! - password guessing: wrong passwords for the tenant's manager as fast as answers
//!   come, 64 at a time, each from a different address of one IPv6 /64 (sent through
//!   a trusted proxy, 127.0.0.9, with `X-Forwarded-For`).
//!
//! The attacker holds what it can and comes back one second (`Retry-After`) after
//! each refusal or cut-off. An attacker that reconnects as fast as it can is a flood
//! of a different kind: on the machine's shared cores it measured 14,000 refused
//! connections a second and took the server's CPU with them; that is for a firewall
//! in front of the NAS (docs/operations.md, "Security"), not for the application.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::Mutex;
use uuid::Uuid;

use super::Outcome;
use crate::client::{Api, Device, kpi_row};
use crate::report::{Goal, Row};
use crate::server::ServerProcess;
use crate::stats::{self, Summary};
use crate::{Ctx, PASSWORD};

const DEVICES: usize = 200;
const ATTACKER: &str = "127.0.0.2";
const PROXY: &str = "127.0.0.9";
const NEWCOMER: &str = "127.0.2.1";

/// The attacks, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Attack {
    SlowLogins,
    StalledPushes,
    ConnectionFlood,
    PasswordGuessing,
}

impl Attack {
    const ALL: [Attack; 4] = [
        Attack::SlowLogins,
        Attack::StalledPushes,
        Attack::ConnectionFlood,
        Attack::PasswordGuessing,
    ];

    fn label(self) -> &'static str {
        match self {
            Attack::SlowLogins => "540 stalled logins",
            Attack::StalledPushes => "140 stalled pushes of another tenant's store user",
            Attack::ConnectionFlood => "1,000 idle connections",
            Attack::PasswordGuessing => "wrong passwords for the manager from one /64",
        }
    }
}

/// One well-behaved request: when it started (since the load began), what it was,
/// how long it took, and whether it failed.
struct Sample {
    at: Duration,
    kind: &'static str,
    ms: f64,
    error: Option<String>,
    /// Sent again once because its keep-alive connection closed under it.
    retried: bool,
}

pub async fn run(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let phase_len = Duration::from_secs(if ctx.quick { 10 } else { 30 });
    let settle = Duration::from_secs(2);

    // A server of its own with the production limits, believing the proxy address.
    let t = Instant::now();
    ctx.server.stop().await;
    ctx.server = ServerProcess::start_with(
        &ctx.server.bin.clone(),
        &ctx.db_url,
        &ctx.log_path,
        &[
            ("NAS_SYNC_RATE_LIMIT", "on"),
            ("NAS_SYNC_TRUSTED_PROXIES", "127.0.0.9/32"),
        ],
    )
    .await?;
    let base = ctx.server.base.clone();
    ctx.add_user("calm-manager", "manager", None, "t-calm")
        .await?;
    for s in 1..=9 {
        ctx.add_user(
            &format!("calm-store-{s}"),
            "store",
            Some(&format!("store-{s}")),
            "t-calm",
        )
        .await?;
    }
    ctx.add_user("abuser", "store", Some("store-x"), "t-abuse")
        .await?;

    // Each device logs in from its own address, four at a time (argon2).
    let gate = Arc::new(tokio::sync::Semaphore::new(4));
    let mut tasks = Vec::new();
    for i in 0..DEVICES {
        let base = base.clone();
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let _p = gate.acquire_owned().await?;
            let api = api_from(&base, &format!("127.0.1.{}", i + 1))?;
            let user = if i % 10 == 0 {
                "calm-manager".to_string()
            } else {
                format!("calm-store-{}", i % 10)
            };
            let dev = api.login(&user, PASSWORD, &format!("calm-{i:03}")).await?;
            let (cursor, _, _) = api.sync_down(&dev, None, Some(5000)).await?;
            anyhow::Ok((api, dev, cursor))
        }));
    }
    let mut fleet = Vec::with_capacity(DEVICES);
    for t in tasks {
        fleet.push(t.await??);
    }
    let abuser = api_from(&base, ATTACKER)?
        .login("abuser", PASSWORD, "abuse-phone")
        .await?;
    ctx.phase_done(
        "(i) server with production limits, 200 devices logged in",
        t,
    );

    // The well-behaved load runs through every phase.
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let start = tokio::time::Instant::now();
    let mut load = Vec::new();
    for (api, dev, cursor) in fleet {
        let (samples, stop) = (samples.clone(), stop.clone());
        let phase = Duration::from_millis(stats::random_below(1000));
        let offset = stats::random_below(5);
        load.push(tokio::spawn(async move {
            let mut cursor = cursor;
            let store = dev.store.clone().unwrap_or_else(|| "store-0".into());
            for k in 0u64.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                tokio::time::sleep_until(start + phase + Duration::from_secs(k)).await;
                let at = start.elapsed();
                let t0 = Instant::now();
                let (r, retried) =
                    once_more(|| api.sync_down(&dev, Some(cursor.clone()), None)).await;
                let error = match r {
                    Ok((c, _, _)) => {
                        cursor = c;
                        None
                    }
                    Err(e) => Some(format!("{e:#}")),
                };
                let mut mine = vec![sample(at, "pull", t0, error, retried)];
                if (k + offset) % 5 == 4 {
                    let t0 = Instant::now();
                    // One row with one id: a retry sends the same push again.
                    let row = kpi_row(Uuid::new_v4(), &store, k as usize, 0);
                    let (r, retried) =
                        once_more(|| api.push_kpi(&dev, std::slice::from_ref(&row))).await;
                    mine.push(sample(
                        at,
                        "push",
                        t0,
                        r.err().map(|e| format!("{e:#}")),
                        retried,
                    ));
                }
                if (k + offset) % 5 == 2 {
                    let t0 = Instant::now();
                    let (r, retried) = once_more(|| conflicts(&api, &dev)).await;
                    mine.push(sample(
                        at,
                        "conflicts",
                        t0,
                        r.err().map(|e| format!("{e:#}")),
                        retried,
                    ));
                }
                samples.lock().await.extend(mine);
            }
        }));
    }
    // The newcomer: a login every 2 s, cycling through the store users.
    {
        let (samples, stop) = (samples.clone(), stop.clone());
        let api = api_from(&base, NEWCOMER)?;
        load.push(tokio::spawn(async move {
            for k in 0u64.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                tokio::time::sleep_until(start + Duration::from_secs(2 * k)).await;
                let at = start.elapsed();
                let user = format!("calm-store-{}", k % 9 + 1);
                let t0 = Instant::now();
                let device = format!("newcomer-{user}");
                let (r, retried) = once_more(|| api.login(&user, PASSWORD, &device)).await;
                samples.lock().await.push(sample(
                    at,
                    "login",
                    t0,
                    r.err().map(|e| format!("{e:#}")),
                    retried,
                ));
            }
        }));
    }

    // Phases: quiet, each attack, quiet again.
    let mut windows: Vec<(String, Duration, Duration, Value)> = Vec::new();
    tokio::time::sleep(settle).await;
    let from = start.elapsed();
    ctx.progress(format!("  (i) quiet for {} s", phase_len.as_secs()));
    tokio::time::sleep(phase_len).await;
    windows.push(("quiet".into(), from, start.elapsed(), Value::Null));
    let server: SocketAddr = base.trim_start_matches("http://").parse()?;
    for attack in Attack::ALL {
        ctx.progress(format!(
            "  (i) under attack for {} s: {}",
            phase_len.as_secs(),
            attack.label()
        ));
        let halt = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(
            std::collections::BTreeMap::<String, usize>::new(),
        ));
        let attackers = launch(attack, server, &base, &abuser, halt.clone(), tally.clone())?;
        // Measured once the attack is in place.
        tokio::time::sleep(settle).await;
        let from = start.elapsed();
        tokio::time::sleep(phase_len).await;
        let to = start.elapsed();
        halt.store(true, Ordering::Relaxed);
        for a in attackers {
            a.abort();
        }
        let seen = json!(*tally.lock().await);
        windows.push((attack.label().into(), from, to, seen));
        tokio::time::sleep(settle).await;
    }
    let from = start.elapsed();
    ctx.progress(format!("  (i) quiet again for {} s", phase_len.as_secs()));
    tokio::time::sleep(phase_len).await;
    windows.push(("quiet again".into(), from, start.elapsed(), Value::Null));
    stop.store(true, Ordering::Relaxed);
    for t in load {
        let _ = t.await;
    }

    let samples = samples.lock().await;
    let in_window = |from: Duration, to: Duration, login: bool| {
        samples
            .iter()
            .filter(|s| s.at >= from && s.at < to && (s.kind == "login") == login)
            .collect::<Vec<_>>()
    };
    let quiet = &windows[0];
    let quiet_sync = Summary::of(
        in_window(quiet.1, quiet.2, false)
            .iter()
            .map(|s| s.ms)
            .collect(),
    );
    let quiet_login = Summary::of(
        in_window(quiet.1, quiet.2, true)
            .iter()
            .map(|s| s.ms)
            .collect(),
    );
    let mut rows = Vec::new();
    let mut details = Vec::new();
    for (name, from, to, seen) in &windows {
        let sync = in_window(*from, *to, false);
        let logins = in_window(*from, *to, true);
        let errors: Vec<String> = sync
            .iter()
            .chain(logins.iter())
            .filter_map(|s| {
                s.error
                    .as_ref()
                    .map(|e| format!("at {:.1} s: {e}", s.at.as_secs_f64()))
            })
            .collect();
        let s = Summary::of(sync.iter().map(|s| s.ms).collect());
        let l = Summary::of(logins.iter().map(|s| s.ms).collect());
        let retried = sync
            .iter()
            .chain(logins.iter())
            .filter(|s| s.retried)
            .count();
        let mut row = Row::new(
            "i",
            &format!("well-behaved sync p99: {name}"),
            s.p99,
            "ms",
        )
        .detail(&format!(
            "{} requests (p50 {:.1} ms), {} errors, {} sent twice (connection closed under them); newcomer logins p99 {:.0} ms (quiet {:.0} ms){}",
            s.n,
            s.p50,
            errors.len(),
            retried,
            l.p99,
            quiet_login.p99,
            errors
                .first()
                .map(|e| format!("; first error: {e}"))
                .unwrap_or_default()
        ));
        if name != "quiet" {
            row = row
                .vs(quiet_sync.p99, "quiet phase, same run")
                .goal(Goal::RatioBelow(2.0));
        }
        rows.push(row);
        rows.push(
            Row::new(
                "i",
                &format!("well-behaved errors: {name}"),
                errors.len() as f64,
                "errors",
            )
            .goal(Goal::ValueBelow(1.0)),
        );
        details.push(json!({
            "phase": name, "from_secs": from.as_secs_f64(), "to_secs": to.as_secs_f64(),
            "sync_ms": s.to_json(), "login_ms": l.to_json(), "errors": errors.len(), "retried": retried,
            "first_errors": errors.iter().take(5).collect::<Vec<_>>(),
            "attacker_answers": seen,
        }));
    }
    Ok(Outcome {
        rows,
        details: json!({"devices": DEVICES, "phase_secs": phase_len.as_secs(), "phases": details}),
    })
}

fn sample(
    at: Duration,
    kind: &'static str,
    t0: Instant,
    error: Option<String>,
    retried: bool,
) -> Sample {
    Sample {
        at,
        kind,
        ms: t0.elapsed().as_secs_f64() * 1e3,
        error,
        retried,
    }
}

/// Runs `op`, and once more if its keep-alive connection closed under it before an
/// answer came, as an app's HTTP client does (a push carries its `push_id`, so a
/// second send applies once). The HTTP client sometimes opens a spare connection
/// that carries no request; the server closes it after the header timeout, and a
/// request sent on it at that moment meets the close. Also says whether it retried.
async fn once_more<T, F, Fut>(op: F) -> (anyhow::Result<T>, bool)
where
    F: Fn() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    match op().await {
        Err(e) if connection_race(&e) => (op().await, true),
        r => (r, false),
    }
}

fn connection_race(e: &anyhow::Error) -> bool {
    let text = format!("{e:#}");
    text.contains("connection closed before message completed")
        || text.contains("Connection reset by peer")
}

/// A client of its own address.
fn api_from(base: &str, local: &str) -> anyhow::Result<Api> {
    let http = reqwest::Client::builder()
        .http1_only()
        .local_address(local.parse::<IpAddr>()?)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()
        .context("building a device's HTTP client")?;
    Ok(Api {
        http,
        base: base.to_string(),
    })
}

/// `GET /api/v1/sync/conflicts` (a manager sees the tenant's, a store user its own).
async fn conflicts(api: &Api, dev: &Device) -> anyhow::Result<()> {
    let resp = api
        .http
        .get(api.url("/api/v1/sync/conflicts"))
        .bearer_auth(&dev.token)
        .send()
        .await?;
    anyhow::ensure!(
        resp.status().is_success(),
        "conflicts: HTTP {}",
        resp.status()
    );
    resp.bytes().await?;
    Ok(())
}

/// Starts the attacker's tasks; each counts the answers it gets by status.
fn launch(
    attack: Attack,
    server: SocketAddr,
    base: &str,
    abuser: &Device,
    halt: Arc<AtomicBool>,
    tally: Arc<Mutex<std::collections::BTreeMap<String, usize>>>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut tasks = Vec::new();
    match attack {
        Attack::SlowLogins | Attack::StalledPushes | Attack::ConnectionFlood => {
            let (n, head) = match attack {
                Attack::SlowLogins => (
                    540,
                    "POST /api/v1/auth/login HTTP/1.1\r\nhost: nas\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{".to_string(),
                ),
                Attack::StalledPushes => (
                    140,
                    format!(
                        "POST /api/v1/sync/push HTTP/1.1\r\nhost: nas\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{",
                        abuser.token
                    ),
                ),
                _ => (1000, "GET /health HTTP/1.1\r\nhost: nas\r\n\r\n".to_string()),
            };
            for _ in 0..n {
                let (head, halt, tally) = (head.clone(), halt.clone(), tally.clone());
                tasks.push(tokio::spawn(async move {
                    while !halt.load(Ordering::Relaxed) {
                        let status = hold(server, &head).await;
                        *tally.lock().await.entry(status).or_insert(0) += 1;
                        // Back after Retry-After (1 s): the attacker keeps its
                        // connections up; it does not flood (see the module doc).
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }));
            }
        }
        Attack::PasswordGuessing => {
            let proxy = api_from(base, PROXY)?;
            for i in 0..64u32 {
                let (proxy, halt, tally) = (proxy.clone(), halt.clone(), tally.clone());
                tasks.push(tokio::spawn(async move {
                    let from = format!("2001:db8:0:1::{:x}", i + 1);
                    while !halt.load(Ordering::Relaxed) {
                        let status = match proxy
                            .http
                            .post(proxy.url("/api/v1/auth/login"))
                            .header("x-forwarded-for", &from)
                            .json(&json!({"username": "calm-manager", "password": "wrong", "device_id": "guess"}))
                            .send()
                            .await
                        {
                            Ok(r) => r.status().as_u16(),
                            Err(_) => 0,
                        };
                        *tally.lock().await.entry(status.to_string()).or_insert(0) += 1;
                        // The next guess as soon as one is answered; after a refusal,
                        // once Retry-After (1 s) has passed.
                        if status != 401 {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }));
            }
        }
    }
    Ok(tasks)
}

/// One attacking connection: sends `head`, then holds the connection until the
/// server answers or closes it; the answer's status ("closed" without one).
async fn hold(server: SocketAddr, head: &str) -> String {
    let Ok(socket) = TcpSocket::new_v4() else {
        return "refused".into();
    };
    let Ok(local) = ATTACKER.parse::<IpAddr>() else {
        return "refused".into();
    };
    if socket.bind(SocketAddr::new(local, 0)).is_err() {
        return "refused".into();
    }
    let Ok(mut tcp) = socket.connect(server).await else {
        return "refused".into();
    };
    if tcp.write_all(head.as_bytes()).await.is_err() {
        return "closed".into();
    }
    let mut first = Vec::new();
    let mut buf = [0u8; 1024];
    // Keep reading (holding the connection) until the server closes it.
    loop {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) if first.len() < 12 => first.extend_from_slice(&buf[..n]),
            Ok(_) => {}
        }
    }
    String::from_utf8_lossy(&first)
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .map_or_else(|| "closed".to_string(), ToString::to_string)
}
