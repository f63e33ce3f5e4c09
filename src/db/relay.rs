//! The in-process relay that keeps Nagle's algorithm off the database connections.
//!
//! sqlx 0.9.0 opens its TCP sockets without `TCP_NODELAY` and offers no hook to supply
//! or configure the socket. A statement whose bind parameters span more than one
//! segment then waits for PostgreSQL's delayed ACK (about 40 ms) before its last
//! segment leaves. For a TCP `DATABASE_URL` the pool therefore connects through a Unix
//! socket in a private (0700) temporary directory to a task of this module, which opens
//! the TCP connection to PostgreSQL itself with `TCP_NODELAY` and copies bytes both ways.
//!
//! Everything else is unchanged: the relay does not read the protocol, so TLS (which
//! PostgreSQL negotiates in-band, after an `SSLRequest` on the same stream) passes
//! through, and sqlx still verifies the certificate against the URL's host name
//! (`TlsConfig::hostname` is the options' host whether the socket is TCP or Unix).
//! `NAS_SYNC_DB_TCP_RELAY=off` connects directly (docs/operations.md).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::PgConnectOptions;
use tokio::net::{TcpStream, UnixListener, UnixStream};

/// Bytes buffered per direction and relayed connection.
const BUF: usize = 32 * 1024;

/// One open relayed connection to PostgreSQL, as its socket reports it.
#[derive(Clone, Copy, Debug)]
pub struct Upstream {
    /// The local address of the TCP socket (PostgreSQL's `client_addr:client_port`).
    pub local: SocketAddr,
    /// `TCP_NODELAY` as read back from the socket after it was set.
    pub nodelay: bool,
}

/// The open relayed connections of this process, by local address.
static OPEN: Mutex<BTreeMap<SocketAddr, Upstream>> = Mutex::new(BTreeMap::new());

/// The TCP connections the relays of this process hold open to PostgreSQL now.
pub fn open_upstreams() -> Vec<Upstream> {
    OPEN.lock()
        .map(|m| m.values().copied().collect())
        .unwrap_or_default()
}

/// Routes `opts` through a relay started on the current runtime when they name a TCP
/// host and `enabled`; otherwise returns them unchanged. The relay runs as long as the
/// runtime does and removes its directory when it stops. When the socket cannot be
/// made (for example a temporary directory path too long for a Unix socket), it warns
/// and connects directly.
pub async fn route(opts: PgConnectOptions, enabled: bool) -> PgConnectOptions {
    if !enabled || opts.get_socket().is_some() || opts.get_host().starts_with('/') {
        return opts;
    }
    let host = opts.get_host().to_string();
    let port = opts.get_port();
    match start(host, port) {
        Ok(dir) => opts.socket(dir),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"),
                "cannot start the database relay; connecting over TCP directly (Nagle's algorithm stays on)");
            opts
        }
    }
}

/// Removes the relay's directory when the relay task ends (its runtime shut down).
struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Binds `<tmp>/nas-sync-db-<random>/.s.PGSQL.<port>` and spawns the accept loop;
/// returns the directory (what `PgConnectOptions::socket` takes).
fn start(host: String, port: u16) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("nas-sync-db-{}", uuid::Uuid::new_v4().simple()));
    make_private_dir(&dir)?;
    let guard = DirGuard(dir.clone());
    let path = dir.join(format!(".s.PGSQL.{port}"));
    let listener = UnixListener::bind(&path)
        .with_context(|| format!("binding the relay socket {}", path.display()))?;
    tracing::debug!(socket = %path.display(), %host, port, "database relay started");
    tokio::spawn(async move {
        let _guard = guard;
        loop {
            match listener.accept().await {
                Ok((client, _)) => {
                    tokio::spawn(relay_one(client, host.clone(), port));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "database relay: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(dir)
}

fn make_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating the relay directory {}", dir.display()))
}

/// Connects to PostgreSQL with `TCP_NODELAY` and copies bytes until either side closes.
/// A failed connection closes the client's socket; sqlx reports it as an I/O error on
/// connect, and the cause is logged here.
async fn relay_one(mut client: UnixStream, host: String, port: u16) {
    let mut server = match TcpStream::connect((host.as_str(), port)).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, %host, port, "database relay: cannot connect to PostgreSQL");
            return;
        }
    };
    if let Err(e) = server.set_nodelay(true) {
        tracing::warn!(error = %e, "database relay: cannot set TCP_NODELAY");
    }
    let local = server.local_addr().ok();
    let _listed = local.map(|local| Listed::new(local, server.nodelay().unwrap_or(false)));
    let _ = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut server, BUF, BUF).await;
}

/// An upstream in `OPEN` for as long as this lives: removed when the relay ends, and
/// also when its task is dropped (its runtime shut down mid-copy), so a closed
/// connection's port is never listed after the OS gives it to another socket.
struct Listed(SocketAddr);

impl Listed {
    fn new(local: SocketAddr, nodelay: bool) -> Listed {
        if let Ok(mut open) = OPEN.lock() {
            open.insert(local, Upstream { local, nodelay });
        }
        Listed(local)
    }
}

impl Drop for Listed {
    fn drop(&mut self) {
        if let Ok(mut open) = OPEN.lock() {
            open.remove(&self.0);
        }
    }
}
