//! The command line (docs/contract.md §1): `serve`, `migrate`, `user add`, `user list`,
//! `user disable`, `user enable`, `user passwd`, `device list`, `device revoke`,
//! `device release`; and for operators `backup`, `backup-loop`, `backup-check`,
//! `restore`, `doctor`, `healthcheck`.

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::auth::identity::{Identity, IdentityChange};
use crate::auth::session::{self, Released};
use crate::auth::{Role, devices, users};
use crate::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "nas-sync",
    version,
    about = "Delta-sync server for offline-first apps"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the database if missing, apply migrations, serve HTTP until SIGTERM/SIGINT.
    Serve,
    /// Create the database if missing, apply migrations, exit.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage devices.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Write a backup of the database (pg_dump, custom format) to FILE.
    Backup {
        #[arg(long)]
        output: std::path::PathBuf,
    },
    /// Back up every period into a folder, keeping the newest dumps (the compose
    /// `backup` service). Waits for the server's migrations before the first dump;
    /// stops at once on SIGTERM.
    BackupLoop {
        /// The folder the dumps go to.
        #[arg(long, default_value = "/backups")]
        dir: std::path::PathBuf,
        /// Hours between dumps.
        #[arg(long, env = "BACKUP_EVERY_HOURS", default_value_t = 24, value_parser = clap::value_parser!(u64).range(1..=8760))]
        every_hours: u64,
        /// How many `nas-sync-*.dump` files to keep (others are never removed).
        #[arg(long, env = "BACKUP_KEEP", default_value_t = 14, value_parser = clap::value_parser!(u64).range(1..=10000))]
        keep: u64,
    },
    /// Exit 0 while the newest scheduled dump is younger than the period plus an
    /// hour (the compose `backup` service's health check); prints it either way.
    BackupCheck {
        #[arg(long, default_value = "/backups")]
        dir: std::path::PathBuf,
        #[arg(long, env = "BACKUP_EVERY_HOURS", default_value_t = 24, value_parser = clap::value_parser!(u64).range(1..=8760))]
        every_hours: u64,
    },
    /// Restore a backup into DATABASE_URL; devices then resync (their old cursors
    /// answer RESYNC_REQUIRED). Stop the server first.
    Restore {
        #[arg(long)]
        input: std::path::PathBuf,
        /// Overwrite a database that already holds nas-sync data.
        #[arg(long)]
        replace: bool,
    },
    /// The audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Check settings, database, migrations, clocks, the change feed and disk space.
    Doctor,
    /// Exit 0 when the local server answers /ready (for container health checks).
    Healthcheck,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk each tenant's chain of audit entries and name the first one that was
    /// edited, deleted or inserted; exit 1 if any chain does not hold. Needs the
    /// server's secret (NAS_SYNC_JWT_SECRET) to check the seals.
    Verify {
        /// Only this tenant's chain.
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is the first line of standard input.
    Add {
        username: String,
        /// manager or store
        #[arg(long)]
        role: String,
        /// The user's store (required for role store).
        #[arg(long)]
        store: Option<String>,
        #[arg(long, default_value = "default")]
        tenant: String,
        /// Read the password from the first line of standard input.
        #[arg(long, required = true)]
        password_stdin: bool,
        /// The email BridgeCore's tenant login takes (unique across tenants).
        #[arg(long)]
        email: Option<String>,
        /// The Odoo user id BridgeCore's smart-sync routes name (unique in the tenant).
        #[arg(long)]
        odoo_user_id: Option<i64>,
    },
    /// Set or clear a user's email and Odoo user id (for apps built on BridgeCore).
    Set {
        username: String,
        #[arg(long, conflicts_with = "no_email")]
        email: Option<String>,
        /// Clear the email.
        #[arg(long)]
        no_email: bool,
        #[arg(long, conflicts_with = "no_odoo_user_id")]
        odoo_user_id: Option<i64>,
        /// Clear the Odoo user id.
        #[arg(long)]
        no_odoo_user_id: bool,
    },
    /// List users: name, role, store, tenant, whether disabled, email and Odoo user id.
    List {
        /// Only this tenant's users.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Disable a user: it cannot log in, and every token of its devices ends at once.
    Disable { username: String },
    /// Enable a disabled user again; it logs in anew.
    Enable { username: String },
    /// Set a user's password (the first line of standard input); every token of its
    /// devices ends.
    Passwd {
        username: String,
        /// Read the password from the first line of standard input.
        #[arg(long, required = true)]
        password_stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// List devices with their last sync times.
    List {
        /// Only this tenant's devices.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a device: its tokens fail with DEVICE_REVOKED at once.
    Revoke {
        device_id: String,
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Release a device: its tokens end at once and its sync state is forgotten, so
    /// another user may log in with its id (a revoked device stays revoked).
    Release {
        device_id: String,
        #[arg(long, default_value = "default")]
        tenant: String,
    },
}

/// Runs a parsed command line; the exit code says how it went.
pub async fn run(cli: Cli) -> ExitCode {
    if let Command::BackupCheck { dir, every_hours } = &cli.command {
        // Needs no database: run every minute by Docker, it only reads the folder.
        let schedule = crate::db::schedule::Schedule {
            dir: dir.clone(),
            every: std::time::Duration::from_secs(every_hours * 3600),
            keep: 0,
        };
        return match crate::db::schedule::check(&schedule) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(why) => {
                println!("{why}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("nas-sync: configuration error: {e:#}");
            return ExitCode::from(2);
        }
    };
    init_tracing(&config.log, config.log_json);
    match dispatch(cli.command, config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nas-sync: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to standard error, as text for people or as JSON lines for collectors. Colours
/// only on a terminal (`docker logs` and log files get plain text). refinery's lines
/// and PostgreSQL's notices (`relation ... already exists, skipping`) are capped at
/// warnings: the migration runner logs each migration it applies itself, so a
/// command that applies none prints nothing about migrations.
fn init_tracing(filter: &str, json: bool) {
    let quiet = "refinery_core=warn,tokio_postgres=warn";
    let filter = tracing_subscriber::EnvFilter::try_new(format!("{filter},{quiet}"))
        .unwrap_or_else(|e| {
            eprintln!(
                "nas-sync: NAS_SYNC_LOG={filter:?} is not a valid filter ({e}); using 'info'"
            );
            tracing_subscriber::EnvFilter::new(format!("info,{quiet}"))
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().with_current_span(true).try_init()
    } else {
        builder.try_init()
    };
}

async fn dispatch(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Backup { output } => {
            if let Ok(None) = crate::db::schedule::schema_version(&config.database_url).await {
                anyhow::bail!(
                    "the database holds no nas-sync schema yet, so a backup would hold nothing: \
                     start the server (or run `nas-sync migrate`) first"
                );
            }
            let bytes = crate::db::backup::backup(&config.db(), &output)?;
            println!("backup written to {} ({bytes} bytes)", output.display());
            Ok(())
        }
        Command::BackupLoop {
            dir,
            every_hours,
            keep,
        } => {
            let schedule = crate::db::schedule::Schedule {
                dir,
                every: std::time::Duration::from_secs(every_hours * 3600),
                keep: usize::try_from(keep).unwrap_or(usize::MAX),
            };
            tracing::info!(dir = %schedule.dir.display(), every_hours, keep,
                "scheduled backups: the first once the database is migrated");
            let db = config.db();
            tokio::select! {
                r = crate::db::schedule::run(&db, &schedule) => r,
                () = crate::app::shutdown_signal() => Ok(()),
            }
        }
        Command::BackupCheck { .. } => Ok(()),
        Command::Restore { input, replace } => {
            crate::db::backup::restore(&config.db(), &input, replace).await?;
            println!(
                "restored {}; devices will resync on their next pull (RESYNC_REQUIRED)",
                input.display()
            );
            Ok(())
        }
        Command::Healthcheck => {
            let mut addr = config.bind;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            crate::install_tls_provider();
            let client = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(4))
                .build()?;
            let resp = client.get(format!("http://{addr}/ready")).send().await?;
            if !resp.status().is_success() {
                anyhow::bail!("/ready answered {}", resp.status());
            }
            println!("ready");
            Ok(())
        }
        Command::Doctor => {
            let checks = crate::doctor::run(&config).await;
            let (text, healthy) = crate::doctor::render(&checks);
            print!("{text}");
            if healthy {
                Ok(())
            } else {
                anyhow::bail!("doctor found problems")
            }
        }
        Command::Serve => serve(config).await,
        Command::Migrate => {
            crate::db::ensure_database(&config.database_url, config.db_connect_timeout).await?;
            crate::db::migrate::run(&config.database_url).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::User(UserCommand::Add {
            username,
            role,
            store,
            tenant,
            password_stdin: _,
            email,
            odoo_user_id,
        }) => {
            let role = Role::parse(&role).with_context(|| {
                format!("unknown role '{role}': use --role manager or --role store")
            })?;
            let password = read_password()?;
            let pool = crate::db::prepare(&config.db()).await?;
            let identity = Identity {
                email,
                odoo_user_id,
            };
            let user = users::add_with(
                &pool,
                &tenant,
                &username,
                role,
                store.as_deref(),
                &password,
                identity,
            )
            .await?;
            println!(
                "created user {} ({}, tenant {}, id {})",
                user.username, user.role, user.tenant_id, user.id
            );
            Ok(())
        }
        Command::User(UserCommand::List { tenant }) => {
            let pool = crate::db::prepare(&config.db()).await?;
            let list = users::list(&pool, tenant.as_deref()).await?;
            println!(
                "{:<20} {:<8} {:<16} {:<16} {:<8} {:<24} ODOO_USER",
                "USERNAME", "ROLE", "STORE", "TENANT", "STATUS", "EMAIL"
            );
            for u in list {
                println!(
                    "{:<20} {:<8} {:<16} {:<16} {:<8} {:<24} {}",
                    u.username,
                    u.role,
                    u.store_id.as_deref().unwrap_or("-"),
                    u.tenant_id,
                    if u.disabled_at.is_some() {
                        "disabled"
                    } else {
                        "active"
                    },
                    u.email.as_deref().unwrap_or("-"),
                    u.odoo_user_id.map_or("-".to_string(), |i| i.to_string()),
                );
            }
            Ok(())
        }
        Command::User(UserCommand::Set {
            username,
            email,
            no_email,
            odoo_user_id,
            no_odoo_user_id,
        }) => {
            let change = IdentityChange {
                email: if no_email {
                    Some(None)
                } else {
                    email.map(Some)
                },
                odoo_user_id: if no_odoo_user_id {
                    Some(None)
                } else {
                    odoo_user_id.map(Some)
                },
            };
            let pool = crate::db::prepare(&config.db()).await?;
            let now = users::set_identity(&pool, None, &username, change).await?;
            println!(
                "user {username}: email {}, Odoo user id {}",
                now.email.as_deref().unwrap_or("none"),
                now.odoo_user_id
                    .map_or("none".to_string(), |i| i.to_string())
            );
            Ok(())
        }
        Command::User(UserCommand::Disable { username }) => {
            let pool = crate::db::prepare(&config.db()).await?;
            let was = users::set_disabled(&pool, &username, true).await?;
            println!(
                "disabled user {username}{}; its devices' tokens were ended",
                if was {
                    " (it was already disabled)"
                } else {
                    ""
                }
            );
            Ok(())
        }
        Command::User(UserCommand::Enable { username }) => {
            let pool = crate::db::prepare(&config.db()).await?;
            let was = users::set_disabled(&pool, &username, false).await?;
            println!(
                "enabled user {username}{}",
                if was { "" } else { " (it was not disabled)" }
            );
            Ok(())
        }
        Command::User(UserCommand::Passwd {
            username,
            password_stdin: _,
        }) => {
            let password = read_password()?;
            let pool = crate::db::prepare(&config.db()).await?;
            users::set_password(&pool, &username, &password).await?;
            println!("changed the password of {username}; its devices log in again");
            Ok(())
        }
        Command::Device(DeviceCommand::Release { device_id, tenant }) => {
            let pool = crate::db::prepare(&config.db()).await?;
            match session::release(&pool, &tenant, &device_id).await? {
                Released::Done => {
                    println!("released device {device_id} (tenant {tenant})");
                    Ok(())
                }
                Released::Unknown => anyhow::bail!(
                    "no device '{device_id}' in tenant '{tenant}' (see `nas-sync device list`)"
                ),
                Released::Revoked => anyhow::bail!(
                    "device '{device_id}' (tenant '{tenant}') is revoked and stays revoked"
                ),
            }
        }
        Command::Device(DeviceCommand::List { tenant }) => {
            let pool = crate::db::prepare(&config.db()).await?;
            let list = devices::list(&pool, tenant.as_deref()).await?;
            println!(
                "{:<16} {:<32} {:<20} {:<25} {:<25} {:>6} STATUS",
                "TENANT", "DEVICE", "USER", "LAST PULL", "LAST PUSH", "SYNCS"
            );
            let t = |v: Option<chrono::DateTime<chrono::Utc>>| {
                v.map_or("-".to_string(), |t| t.to_rfc3339())
            };
            for d in list {
                println!(
                    "{:<16} {:<32} {:<20} {:<25} {:<25} {:>6} {}",
                    d.tenant_id,
                    d.device_id,
                    d.username,
                    t(d.last_pull_at),
                    t(d.last_push_at),
                    d.sync_count,
                    if d.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    }
                );
            }
            Ok(())
        }
        Command::Audit(AuditCommand::Verify { tenant }) => {
            let pool = crate::db::prepare(&config.db()).await?;
            let secret =
                crate::auth::token::load_secret(&pool, config.jwt_secret.as_deref()).await?;
            let key = crate::audit::SealKey::from_secret(&secret);
            let reports = crate::audit::verify::verify(&pool, &key, tenant.as_deref()).await?;
            let mut broken = 0;
            for r in &reports {
                match &r.problem {
                    None => println!(
                        "tenant {}: {} entries, the chain holds; newest seal {}",
                        r.tenant,
                        r.entries,
                        hex(&r.head)
                    ),
                    Some((_, what)) => {
                        broken += 1;
                        println!(
                            "tenant {}: {what} ({} entries before it hold)",
                            r.tenant, r.entries
                        );
                    }
                }
            }
            if reports.is_empty() {
                println!("no audit entries yet");
            }
            if broken > 0 {
                anyhow::bail!("the audit chain of {broken} tenant(s) does not hold");
            }
            Ok(())
        }
        Command::Device(DeviceCommand::Revoke { device_id, tenant }) => {
            let pool = crate::db::prepare(&config.db()).await?;
            if !devices::revoke(&pool, &tenant, &device_id).await? {
                anyhow::bail!(
                    "no device '{device_id}' in tenant '{tenant}' (see `nas-sync device list`)"
                );
            }
            println!("revoked device {device_id} (tenant {tenant})");
            Ok(())
        }
    }
}

/// The password: the first line of standard input, without its line ending.
fn read_password() -> anyhow::Result<String> {
    let mut password = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut password)
        .context("reading the password from standard input")?;
    Ok(password.trim_end_matches(['\r', '\n']).to_string())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let open_files = crate::serve::raise_open_files();
    tracing::info!(open_files, "open-files limit");
    let bind = config.bind;
    let state = crate::state::AppState::prepare(config).await?;
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("binding {bind} (NAS_SYNC_BIND)"))?;
    tracing::info!(address = %listener.local_addr()?, version = env!("CARGO_PKG_VERSION"), "nas-sync listening");
    crate::app::launch(listener, state, crate::app::shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
