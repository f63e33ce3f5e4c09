//! The admin console in a real browser: headless Chromium driven over chromedriver
//! (fantoccini) against a real server on port 0. A store user is refused at sign-in;
//! a manager signs in, revokes a device (whose token then fails), adds a user (who
//! then logs in through the API), resolves conflicts ("Take device", and edit and
//! "Save"), and signs out. Every page is saved as a screenshot at desktop and phone
//! width under target/admin-screenshots/.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them); without
//! them the test fails and says how to install them.
use crate::common::*;

use std::path::PathBuf;
use std::process::Stdio;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// A program on PATH, or a failure that says how to get it.
fn program(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not installed. The admin console's browser tests need headless Chromium \
                 and chromedriver: `apt-get install -y chromium chromium-driver` (Debian/Ubuntu; \
                 .ci/run does this)."
            )
        })
}

/// chromedriver on a free port, stopped when dropped.
struct Driver {
    _child: tokio::process::Child,
    url: String,
}

async fn start_driver() -> Driver {
    let driver = program("chromedriver");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = tokio::process::Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start chromedriver");
    // Wait until it listens (a readiness wait, not a timing assertion).
    for _ in 0..600 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Driver {
                _child: child,
                url: format!("http://127.0.0.1:{port}"),
            };
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not start listening on port {port}");
}

async fn browser(driver: &Driver, profile: &std::path::Path) -> Client {
    let chromium = program("chromium");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-background-networking",
                "--disable-component-update", "--disable-gpu", "--no-first-run",
                "--disable-dev-shm-usage", "--window-size=1280,1000",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session through chromedriver")
}

fn screenshots_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/admin-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(screenshots_dir().join(format!("{name}.png")), png).unwrap();
}

/// The text of the page's one-shot message, once the page after an action is there.
async fn flash(c: &Client) -> String {
    c.wait()
        .for_element(Locator::Css("p.flash"))
        .await
        .expect("a message after the action")
        .text()
        .await
        .unwrap()
}

async fn click(c: &Client, xpath: &str) {
    c.find(Locator::XPath(xpath))
        .await
        .unwrap_or_else(|e| panic!("{xpath}: {e}"))
        .click()
        .await
        .unwrap();
}

/// Clicks a button that submits a form, and waits until the browser has left the page
/// it was on (the next page may have the same heading, so waiting for an element alone
/// could find the old page's).
async fn submit(c: &Client, xpath: &str) {
    let old = c.find(Locator::Css("html")).await.unwrap();
    click(c, xpath).await;
    for _ in 0..600 {
        match old.tag_name().await {
            Err(fantoccini::error::CmdError::Standard(e))
                if e.error == fantoccini::error::ErrorStatus::StaleElementReference =>
            {
                return;
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
    panic!("the page after {xpath} did not load within 30 s");
}

async fn fill(c: &Client, css: &str, value: &str) {
    let e = c.find(Locator::Css(css)).await.expect(css);
    e.clear().await.unwrap();
    e.send_keys(value).await.unwrap();
}

async fn sign_in(c: &Client, base: &str, username: &str) {
    c.goto(&format!("{base}/admin/login")).await.unwrap();
    fill(c, "#username", username).await;
    fill(c, "#password", "password").await;
    submit(c, "//button[normalize-space()='Sign in']").await;
}

async fn heading(c: &Client) -> String {
    c.find(Locator::Css("h1"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A kpi row on the `manual` table whose stale edit by `store` opens a conflict.
async fn conflict(manager: &Device, store: &Device, metric: &str) -> (String, String) {
    let kpi = id();
    let r = store
        .push(
            json!({"kpi_data": [{"id": kpi, "store_id": "s1", "metric": metric,
                                     "value": 10, "period": "2026-11", "version": 0}]}),
        )
        .await;
    assert_eq!(r["errors"], json!([]), "{r}");
    let edit = |value: i64| json!({"kpi_data": [{"id": kpi, "version": 1, "updated_at": now(), "value": value}]});
    manager.push(edit(11)).await;
    let r = store.push(edit(12)).await;
    let id = r["conflicts"][0]["conflict_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no conflict: {r}"))
        .to_string();
    (kpi, id)
}

async fn stored_value(app: &TestApp, kpi: &str) -> Value {
    sqlx::query_scalar("SELECT to_jsonb(k) -> 'value' FROM kpi_data k WHERE id = $1::uuid")
        .bind(kpi)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_manager_runs_the_console_in_a_real_browser() {
    let app = TestApp::builder()
        .rules(&[("kpi_data", "manual")])
        .spawn()
        .await;
    let manager = app.manager("boss", "mgr-1").await;
    let mut store = app.store("clerk", "s1", "store-1").await;
    store.pull_page(None).await;
    let lost = app.store("clerk2", "s1", "lost-phone").await;
    let (kpi_take, _) = conflict(&manager, &store, "sales").await;
    let (kpi_edit, edit_id) = conflict(&manager, &store, "visits").await;
    // One stays open, for the screenshots.
    conflict(&manager, &store, "orders").await;

    let driver = start_driver().await;
    let profile = std::env::temp_dir().join(format!("nas-sync-chromium-{}", id()));
    let c = browser(&driver, &profile).await;
    let base = app.base.clone();

    // A store user is refused, with a clear message.
    sign_in(&c, &base, "clerk").await;
    let refusal = c
        .find(Locator::Css("p.error"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(refusal.contains("Store users cannot sign in"), "{refusal}");
    shot(&c, "signin-refused-desktop").await;

    // The manager signs in and lands on the Overview.
    sign_in(&c, &base, "boss").await;
    assert_eq!(heading(&c).await, "Overview");
    let overview = c.source().await.unwrap();
    assert!(
        overview.contains("Devices active in 24 hours"),
        "{overview}"
    );
    assert!(overview.contains("<svg"), "the chart");
    // The chart's counts: one pull, and the six pushes that changed rows.
    let caption = c
        .find(Locator::Css("figcaption"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(caption.contains("1 pulls, 6 pushes"), "{caption}");

    // Revoke: the device's token fails at once.
    c.goto(&format!("{base}/admin/devices")).await.unwrap();
    click(
        &c,
        "//tr[@data-device='lost-phone']//button[normalize-space()='Revoke']",
    )
    .await;
    assert_eq!(flash(&c).await, "Device lost-phone revoked.");
    let (status, body) = lost.get("/api/v1/sync/status").await;
    assert_error(status, &body, 401, "DEVICE_REVOKED");

    // Add user: the new user logs in through the API.
    c.goto(&format!("{base}/admin/users")).await.unwrap();
    fill(&c, "#new-username", "newbie").await;
    fill(&c, "#new-password", "newbie-password").await;
    c.find(Locator::Css("#new-role"))
        .await
        .unwrap()
        .select_by_value("store")
        .await
        .unwrap();
    fill(&c, "#new-store", "s2").await;
    click(&c, "//button[normalize-space()='Add user']").await;
    assert_eq!(flash(&c).await, "User newbie added (store).");
    let (status, body) = app
        .login_raw("newbie", "newbie-password", "newbie-phone")
        .await;
    assert_eq!(status.as_u16(), 200, "{body}");
    assert_eq!(body["user"]["store_id"], "s2");

    // Conflicts: both sides shown, the differing field marked.
    c.goto(&format!("{base}/admin/conflicts")).await.unwrap();
    let marked = c
        .find_all(Locator::Css("article.conflict tr.differs"))
        .await
        .unwrap();
    assert_eq!(marked.len(), 3, "one differing field (value) per conflict");
    // "Take device" on the first; edit and "Save" on the other.
    let first = c
        .find(Locator::XPath(
            "//article[.//td[code='sales']]//button[normalize-space()='Take device']",
        ))
        .await
        .expect("the sales conflict's Take device");
    first.click().await.unwrap();
    assert!(flash(&c).await.contains("took the device's values"));
    assert_eq!(stored_value(&app, &kpi_take).await, json!(12));
    c.goto(&format!("{base}/admin/conflicts")).await.unwrap();
    click(
        &c,
        &format!("//article[@data-conflict='{edit_id}']//summary"),
    )
    .await;
    fill(&c, &format!("[id='f-{edit_id}-value']"), "42").await;
    click(
        &c,
        &format!("//article[@data-conflict='{edit_id}']//button[normalize-space()='Save']"),
    )
    .await;
    assert!(flash(&c).await.contains("saved the edited values"));
    assert_eq!(stored_value(&app, &kpi_edit).await, json!(42));

    // Every page, at desktop and at phone width.
    for (width, height, suffix) in [(1280, 1000, "desktop"), (390, 844, "phone")] {
        c.set_window_size(width, height).await.unwrap();
        for (name, path) in [
            ("overview", "/admin"),
            ("devices", "/admin/devices"),
            ("users", "/admin/users"),
            ("conflicts", "/admin/conflicts"),
            ("odoo", "/admin/odoo"),
        ] {
            c.goto(&format!("{base}{path}")).await.unwrap();
            c.wait().for_element(Locator::Css("h1")).await.unwrap();
            shot(&c, &format!("{name}-{suffix}")).await;
        }
    }

    // Sign out: back to the sign-in form, and the pages need it again.
    submit(&c, "//button[normalize-space()='Sign out']").await;
    c.wait()
        .for_element(Locator::Css("#username"))
        .await
        .unwrap();
    shot(&c, "signin-phone").await;
    c.goto(&format!("{base}/admin/users")).await.unwrap();
    assert_eq!(heading(&c).await, "Sign in");

    c.close().await.unwrap();
    let _ = std::fs::remove_dir_all(&profile);
}
