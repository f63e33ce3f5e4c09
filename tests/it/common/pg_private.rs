//! A PostgreSQL cluster of the test's own, for tests that stop or restart the
//! database server under nas-sync. The shared cluster on 127.0.0.1:5432 is never
//! touched: other tests (and other builds) use it at the same time.
//!
//! The cluster is made with `initdb` in a temporary directory, listens on a free
//! loopback port with trust authentication, and is stopped and deleted when the
//! [`PrivatePg`] is dropped. PostgreSQL refuses to run as root, so when the test runs
//! as root (CI) every PostgreSQL command runs as the `postgres` user through `runuser`,
//! and the directory belongs to that user.
//!
//! The binaries come from `PG_BIN` (a directory holding `initdb` and `pg_ctl`) or the
//! newest `/usr/lib/postgresql/*/bin`. Without them the test fails with instructions.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A running private cluster.
pub struct PrivatePg {
    bin: PathBuf,
    dir: PathBuf,
    run_as: Option<String>,
    pub port: u16,
}

impl PrivatePg {
    /// Creates and starts a cluster on a free port.
    pub fn start() -> PrivatePg {
        let bin = binaries();
        let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        let run_as = root.then(|| "postgres".to_string());
        // As root the cluster runs as `postgres`, which must reach the directory:
        // /tmp, whatever TMPDIR says.
        let base = if root {
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!(
            "nas-sync-pg-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("create the cluster's directory");
        if let Some(user) = &run_as {
            let out = Command::new("chown")
                .arg(format!("{user}:"))
                .arg(&dir)
                .output()
                .expect("run chown");
            assert!(
                out.status.success(),
                "chown {user} {}: {} (running as root, PostgreSQL needs an unprivileged \
                 user named {user}: the postgresql package creates it)",
                dir.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let port = free_port();
        let pg = PrivatePg {
            bin,
            dir,
            run_as,
            port,
        };
        let data = pg.data();
        let out = pg.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ],
        );
        assert!(out.status.success(), "initdb failed: {}", text(&out));
        let conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             shared_buffers = 16MB\nmax_connections = 50\nfsync = off\n",
            pg.dir.display()
        );
        append(&Path::new(&data).join("postgresql.conf"), &conf);
        pg.ctl_start();
        pg
    }

    /// `postgres://postgres@127.0.0.1:PORT/DB`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Stops the cluster (fast shutdown: open sessions are ended) and waits.
    pub fn stop(&self) {
        let data = self.data();
        let out = self.run("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"]);
        assert!(out.status.success(), "pg_ctl stop failed: {}", text(&out));
    }

    /// Starts the stopped cluster again on the same port and waits until it accepts
    /// connections.
    pub fn ctl_start(&self) {
        let data = self.data();
        let log = self.dir.join("server.log").display().to_string();
        let out = self.run(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-w", "-t", "60", "start"],
        );
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\n{}",
            text(&out),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) -> Output {
        let exe = self.bin.join(tool);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        // pg_ctl's server inherits our standard streams unless told otherwise.
        cmd.args(args)
            .stdin(std::process::Stdio::null())
            .current_dir(&self.dir)
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", exe.display()))
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The directory of `initdb` and `pg_ctl`.
fn binaries() -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BIN")
        && !dir.is_empty()
    {
        return PathBuf::from(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "This test runs a PostgreSQL cluster of its own and needs initdb and pg_ctl: \
             install the server (`apt-get install postgresql`, which puts them in \
             /usr/lib/postgresql/VERSION/bin) or set PG_BIN to the directory holding them."
        ),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("find a free port")
        .port()
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open postgresql.conf");
    f.write_all(text.as_bytes()).expect("write postgresql.conf");
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
