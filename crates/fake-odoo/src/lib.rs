//! A faithful fake of Odoo's external API, for nas-sync's integration tests: what
//! `docs/odoo-api.md` describes in §1 (the external APIs' exact shapes), §2
//! (incremental extraction: `write_date` per transaction, its precision) and §6
//! (what a faithful fake must emulate). nas-sync's Odoo mirror is tested against
//! it over real HTTP; `tests/fake_odoo.rs` in this crate tests the fake itself.
//!
//! Real HTTP on 127.0.0.1 port 0 (axum):
//! - `GET /web/version`;
//! - `POST /jsonrpc`: service `common` (`version`, `authenticate` → uid or
//!   `false`, `login`) and `object` (`execute_kw`, `execute`); errors are HTTP
//!   200 envelopes with `data.name` (`code` 200 before 19, 0 from 19). With
//!   `version >= 19` and `jsonrpc_disabled`, object calls and
//!   login/authenticate answer the NotFound envelope (`code` 404) like
//!   `addons/rpc/controllers/jsonrpc.py` without `rpc.use_deprecated_services`;
//! - `POST /json/2/<model>/<method>` from 19 on: bearer API key, named
//!   arguments, bare JSON results, real HTTP statuses with a
//!   `serialize_exception` body.
//!
//! Models: `res.partner`, `product.category`, `product.product`, `sale.order`,
//! `sale.order.line`, `account.move`, `hr.department`, `hr.employee`; methods
//! `search`, `search_count`, `search_read`, `read`, `create`, `write`, `unlink`,
//! `fields_get` and `action_noop` (returns None). Domains, ordering, value
//! formats, `active_test`, cascades and stored computes follow Odoo (see the
//! submodules).
//!
//! `write_date`: every call is one transaction stamped with the fake clock at
//! arrival (microseconds, UTC); all rows it touches share that stamp, `write`
//! bumps it even when nothing changes, a changed `sale.order.amount_total`
//! bumps the order too. Served datetimes are truncated to seconds. The fake
//! clock (real UTC + an offset) also stamps every response's `Date` header.
//!
//! The test-control methods (`insert`, `update`, `delete`, `late_commit`, ...)
//! act directly on the data, bypass faults and the call log, and panic on
//! errors. Their `vals` may set `create_date` / `write_date` explicitly, with
//! microseconds (`"2024-05-01 10:00:00.500000"`).
//!
//! Quirks reproduced from Odoo's source on purpose:
//! - a JSON-RPC call whose method returns None gets an envelope *without* a
//!   `result` member (`JsonRPCDispatcher._response` skips None); JSON-2 `null`;
//! - `load` defaults to `'_classic_read'` on both protocols (it is `read()`'s
//!   Python default; JSON-2 only binds what the body names), so many2one
//!   values are `[id, display_name]` unless `load` is given another value;
//! - unknown model over JSON-RPC: `odoo.exceptions.UserError` "Object x
//!   doesn't exist" (`execute_cr`); unknown method: `builtins.AttributeError`;
//! - required-field and foreign-key violations are the `ValidationError`s
//!   `_as_validation_error` builds from the IntegrityError (with its odd
//!   "record being deleted" wording for foreign keys);
//! - `res.partner.display_name` is "Company, Contact" for a contact with a
//!   parent, `product.product`'s is "[CODE] Name"; `comment` / `note` are `html`;
//! - `!=`, `not in`, `not like` match NULL; `limit: 0` means no limit;
//! - empty strings stay `""` (only NULL reads as `false`).
//!
//! Faults (`fail_next`): see [`Fault`]. A matcher is `"*"` (every object
//! call), a method name (`"search_read"`; also `"authenticate"`, `"version"`,
//! `"login"` for the `common` service, which `"*"` does not match) or
//! `"<model>/<method>"`.

mod domain;
mod error;
mod orm;
mod schema;
mod server;
mod store;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{NaiveDateTime, Utc};
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;

use store::Db;

/// Configuration of one fake server.
#[derive(Clone, Debug)]
pub struct FakeOptions {
    /// Odoo major version (17 or 19; ≥ 19 serves JSON-2).
    pub version: u32,
    pub db: String,
    pub login: String,
    pub password: String,
    /// Accepted as a bearer token (JSON-2) and as a password (JSON-RPC).
    pub api_key: String,
    pub uid: i64,
    /// Adds the custom char field `x_nas_sync_uuid` to `sale.order` and
    /// `sale.order.line`.
    pub with_tag_field: bool,
    /// With `version >= 19`: `/jsonrpc` object calls answer NotFound.
    pub jsonrpc_disabled: bool,
    /// Fixed delay before every call is processed.
    pub call_delay: Duration,
}

impl Default for FakeOptions {
    fn default() -> Self {
        FakeOptions {
            version: 17,
            db: "odoo".into(),
            login: "bot".into(),
            password: "bot-password".into(),
            api_key: "bot-api-key".into(),
            uid: 2,
            with_tag_field: false,
            jsonrpc_disabled: false,
            call_delay: Duration::ZERO,
        }
    }
}

/// An injected failure for the next matching call(s).
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Wait this long (on top of the call delay), then process and answer
    /// normally. The call's transaction starts on arrival, so its writes carry
    /// the arrival time; they are applied even if the client gave up.
    Timeout(Duration),
    /// A proxy answers `502 Bad Gateway` (nginx HTML); nothing is applied.
    Proxy502,
    /// A proxy answers `504 Gateway Time-out` (nginx HTML); nothing is applied.
    Gateway504,
    /// A proxy answers `429 Too Many Requests` (nginx HTML); nothing is applied.
    TooMany429,
    /// `psycopg2.errors.SerializationFailure` "could not serialize access due
    /// to concurrent update\n" after Odoo's own retries: JSON-RPC error
    /// envelope, JSON-2 status 500 (not a `UserError`, so
    /// `Json2RpcDispatcher.handle_error` answers 500). Nothing is applied.
    SerializationFailure,
    /// `odoo.exceptions.AccessError` (JSON-2: 403). Nothing is applied.
    AccessError,
    /// `odoo.exceptions.ValidationError` with this message (JSON-2: 422).
    /// Nothing is applied.
    ValidationError(String),
    /// The call is processed and committed, then the connection is closed
    /// without a single byte of response (the client sees "connection closed
    /// before message completed"), like a worker killed after commit.
    DropAfterApply,
    /// `odoo.http.SessionExpiredException`: JSON-RPC envelope with `code` 100
    /// "Odoo Session Expired"; JSON-2 status 403. Nothing is applied.
    SessionExpired,
    /// A proxy in front of Odoo (or a moved site) answers a redirect with this
    /// status (301, 302, 307, 308) to `location`, nginx style; nothing is applied.
    Redirect { status: u16, location: String },
    /// A broken proxy or server answers `200 application/json` with a streamed
    /// body of about this many bytes (no `Content-Length`); nothing is applied.
    /// [`FakeOdoo::huge_bytes_sent`] counts what was actually sent.
    HugeBody(usize),
}

struct FaultRule {
    matcher: String,
    remaining: usize,
    fault: Fault,
}

/// State shared by the HTTP handlers and the test-control API.
pub(crate) struct Shared {
    opts: FakeOptions,
    db: Mutex<Db>,
    clock_offset: Mutex<chrono::Duration>,
    call_delay: Mutex<Duration>,
    calls: Mutex<Vec<(String, String)>>,
    faults: Mutex<Vec<FaultRule>>,
    /// Bytes of [`Fault::HugeBody`] bodies handed to the connection.
    pub(crate) huge_sent: Arc<std::sync::atomic::AtomicUsize>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    /// The fake clock: real UTC now + offset, at microsecond precision.
    fn now(&self) -> NaiveDateTime {
        let t = Utc::now().naive_utc() + *lock(&self.clock_offset);
        let micros = t.and_utc().timestamp_micros();
        chrono::DateTime::from_timestamp_micros(micros)
            .expect("in range")
            .naive_utc()
    }

    fn take_fault(&self, model: Option<&str>, method: &str) -> Option<Fault> {
        let mut rules = lock(&self.faults);
        let pos = rules
            .iter()
            .position(|r| match (r.matcher.as_str(), model) {
                ("*", m) => m.is_some(),
                (mt, Some(model)) if mt.contains('/') => mt == format!("{model}/{method}"),
                (mt, _) => mt == method,
            })?;
        let rule = &mut rules[pos];
        let fault = rule.fault.clone();
        rule.remaining -= 1;
        if rule.remaining == 0 {
            rules.remove(pos);
        }
        Some(fault)
    }
}

/// Ids created by [`FakeOdoo::seed_demo`].
#[derive(Clone, Debug)]
pub struct Demo {
    /// "Azure Interior" (is_company).
    pub company: i64,
    /// "Brandon Freeman", contact of `company`.
    pub contact: i64,
    /// "Deco Addict" (is_company, customer_rank 1).
    pub customer: i64,
    /// "Old Customer", archived.
    pub archived: i64,
    /// `[FURN_0001] Desk` (150.0), `[FURN_0002] Chair` (45.5), `Service` (no code).
    pub products: Vec<i64>,
    /// Two orders of `customer`: 2 lines (draft) and 1 line (sale).
    pub orders: Vec<i64>,
    pub lines: Vec<i64>,
}

/// A running fake Odoo. Dropping it shuts the server down.
pub struct FakeOdoo {
    /// `http://127.0.0.1:<port>` (no trailing slash).
    pub url: String,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
}

fn object(vals: Value) -> Map<String, Value> {
    match vals {
        Value::Object(o) => o,
        other => panic!("fake Odoo: vals must be a JSON object, got {other}"),
    }
}

impl FakeOdoo {
    /// Starts a server on 127.0.0.1:0 (needs a Tokio runtime).
    pub async fn start(opts: FakeOptions) -> FakeOdoo {
        let mut db = Db::new(opts.version, opts.uid, opts.with_tag_field);
        let ts = Utc::now().naive_utc();
        db.create(
            "product.category",
            &[object(json!({"name": "All"}))],
            ts,
            true,
        )
        .expect("seed product.category");
        let shared = Arc::new(Shared {
            call_delay: Mutex::new(opts.call_delay),
            opts,
            db: Mutex::new(db),
            clock_offset: Mutex::new(chrono::Duration::zero()),
            calls: Mutex::new(Vec::new()),
            faults: Mutex::new(Vec::new()),
            huge_sent: Arc::default(),
        });
        let (url, tx) = server::serve(shared.clone()).await;
        FakeOdoo {
            url,
            shared,
            shutdown: Some(tx),
        }
    }

    /// Starts a server with default options and the given version.
    pub async fn start_version(version: u32) -> FakeOdoo {
        FakeOdoo::start(FakeOptions {
            version,
            ..FakeOptions::default()
        })
        .await
    }

    /// `<url>/jsonrpc`.
    pub fn jsonrpc_url(&self) -> String {
        format!("{}/jsonrpc", self.url)
    }

    /// `<url>/json/2/<model>/<method>`.
    pub fn json2_url(&self, model: &str, method: &str) -> String {
        format!("{}/json/2/{model}/{method}", self.url)
    }

    /// Stops accepting connections; open ones close after their current call.
    pub fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    // ------------------------------------------------------------ clock

    /// The fake clock (UTC, microseconds).
    pub fn now(&self) -> NaiveDateTime {
        self.shared.now()
    }

    /// Skews the fake clock (and the `Date` header) by `offset` from real UTC.
    pub fn set_clock_offset(&self, offset: chrono::Duration) {
        *lock(&self.shared.clock_offset) = offset;
    }

    // ------------------------------------------------------- data control

    /// Runs a control transaction; rolls back and panics on error.
    fn txn<T>(&self, what: &str, f: impl FnOnce(&mut Db) -> error::OResult<T>) -> T {
        // The guard is dropped before panicking: the mutex stays usable.
        let result = lock(&self.shared.db).transaction(f);
        result.unwrap_or_else(|e| panic!("fake Odoo {what}: {}: {}", e.name(), e.message))
    }

    /// Creates one record (one transaction, stamped now).
    pub fn insert(&self, model: &str, vals: Value) -> i64 {
        self.bulk_insert(model, vec![vals])[0]
    }

    /// Creates records in one transaction: they share one `write_date`.
    pub fn bulk_insert(&self, model: &str, vals: Vec<Value>) -> Vec<i64> {
        let ts = self.now();
        let list: Vec<_> = vals.into_iter().map(object).collect();
        self.txn("insert", |db| db.create(model, &list, ts, true))
    }

    /// `write(vals)` on one record (bumps its `write_date`).
    pub fn update(&self, model: &str, id: i64, vals: Value) {
        self.bulk_update(model, &[id], vals);
    }

    /// `write(vals)` on several records in one transaction (same `write_date`).
    pub fn bulk_update(&self, model: &str, ids: &[i64], vals: Value) {
        let ts = self.now();
        let vals = object(vals);
        self.txn("update", |db| db.write(model, ids, &vals, ts, true));
    }

    /// `active = False` (a write).
    pub fn archive(&self, model: &str, id: i64) {
        self.update(model, id, json!({"active": false}));
    }

    /// `unlink()`: hard delete, database cascades (an order's lines vanish
    /// with it); nothing records the deletion.
    pub fn delete(&self, model: &str, id: i64) {
        let ts = self.now();
        self.txn("delete", |db| db.unlink(model, &[id], ts));
    }

    /// A record created by a transaction that started `age` ago and commits
    /// now: visible from now on, with `create_date = write_date = now - age`.
    pub fn late_commit(&self, model: &str, vals: Value, age: Duration) -> i64 {
        let ts = self.now() - chrono::Duration::from_std(age).expect("age");
        let list = vec![object(vals)];
        self.txn("late_commit", |db| db.create(model, &list, ts, true))[0]
    }

    /// An update committed now by a transaction that started `age` ago.
    pub fn touch_late(&self, model: &str, id: i64, vals: Value, age: Duration) {
        let ts = self.now() - chrono::Duration::from_std(age).expect("age");
        let vals = object(vals);
        self.txn("touch_late", |db| db.write(model, &[id], &vals, ts, true));
    }

    /// Every live record (archived included), ordered by id: all stored
    /// fields in the wire format of `search_read` with `load: null`.
    pub fn records(&self, model: &str) -> Vec<Value> {
        let db = lock(&self.shared.db);
        let m = db.model(model).expect("known model");
        let fields: Vec<&schema::Field> = m
            .fields
            .iter()
            .filter(|f| f.store && f.ty != schema::Ty::One2many)
            .collect();
        db.all_ids(model)
            .into_iter()
            .map(|id| db.read_row(&m, id, &fields, false))
            .collect()
    }

    /// One record as in [`FakeOdoo::records`].
    pub fn record(&self, model: &str, id: i64) -> Option<Value> {
        self.records(model)
            .into_iter()
            .find(|r| r["id"].as_i64() == Some(id))
    }

    /// Number of live records (archived included).
    pub fn count(&self, model: &str) -> usize {
        lock(&self.shared.db).all_ids(model).len()
    }

    /// The stored `write_date` with microseconds.
    pub fn write_date_exact(&self, model: &str, id: i64) -> Option<NaiveDateTime> {
        match lock(&self.shared.db).get(model, id, "write_date") {
            store::Val::Dt(dt) => Some(*dt),
            _ => None,
        }
    }

    /// Partners, products and two sale orders with lines.
    pub fn seed_demo(&self) -> Demo {
        let company = self.insert(
            "res.partner",
            json!({"name": "Azure Interior", "is_company": true, "email": "azure@example.com",
                   "city": "Fremont", "zip": "94538", "street": "4557 De Silva St"}),
        );
        let contact = self.insert(
            "res.partner",
            json!({"name": "Brandon Freeman", "parent_id": company,
                   "email": "brandon.freeman55@example.com", "phone": "(355)-687-3262"}),
        );
        let customer = self.insert(
            "res.partner",
            json!({"name": "Deco Addict", "is_company": true, "customer_rank": 1,
                   "city": "Pleasant Hill"}),
        );
        let archived = self.insert(
            "res.partner",
            json!({"name": "Old Customer", "active": false}),
        );
        let products = self.bulk_insert(
            "product.product",
            vec![
                json!({"name": "Desk", "default_code": "FURN_0001", "list_price": 150.0}),
                json!({"name": "Chair", "default_code": "FURN_0002", "list_price": 45.5,
                       "barcode": "601647855631"}),
                json!({"name": "Service", "type": "service", "list_price": 30.0}),
            ],
        );
        let o1 = self.insert(
            "sale.order",
            json!({"partner_id": customer, "client_order_ref": "PO-1", "order_line": [
                [0, 0, {"product_id": products[0], "product_uom_qty": 2.0}],
                [0, 0, {"product_id": products[1], "product_uom_qty": 4.0, "price_unit": 40.0}],
            ]}),
        );
        let o2 = self.insert(
            "sale.order",
            json!({"partner_id": customer, "state": "sale", "order_line": [
                [0, 0, {"product_id": products[2], "product_uom_qty": 1.5}],
            ]}),
        );
        let lines = self
            .records("sale.order.line")
            .iter()
            .filter(|r| r["order_id"] == o1 || r["order_id"] == o2)
            .filter_map(|r| r["id"].as_i64())
            .collect();
        Demo {
            company,
            contact,
            customer,
            archived,
            products,
            orders: vec![o1, o2],
            lines,
        }
    }

    // ------------------------------------------------- calls and faults

    /// Makes the next `count` calls matching `matcher` fail with `fault`
    /// (rules are consulted in the order they were added).
    pub fn fail_next(&self, matcher: &str, count: usize, fault: Fault) {
        if count > 0 {
            lock(&self.shared.faults).push(FaultRule {
                matcher: matcher.to_string(),
                remaining: count,
                fault,
            });
        }
    }

    /// Drops every pending fault.
    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// Fixed delay before every call is processed (benchmarks, timeouts).
    pub fn set_call_delay(&self, delay: Duration) {
        *lock(&self.shared.call_delay) = delay;
    }

    /// Every object call received, in order: `(model, method)`, including
    /// calls that failed or had a fault injected.
    pub fn calls(&self) -> Vec<(String, String)> {
        lock(&self.shared.calls).clone()
    }

    /// Bytes of [`Fault::HugeBody`] answers sent so far (a client that stops
    /// reading early leaves most of the body unsent).
    pub fn huge_bytes_sent(&self) -> usize {
        self.shared
            .huge_sent
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn reset_calls(&self) {
        lock(&self.shared.calls).clear();
    }
}

impl Drop for FakeOdoo {
    fn drop(&mut self) {
        self.stop();
    }
}
