//! Tests of the fake Odoo server (this crate), driven over HTTP the way a client
//! drives a real Odoo: JSON-RPC and JSON-2 with reqwest.

use std::time::{Duration, Instant};

use chrono::{NaiveDateTime, Timelike};
use fake_odoo::{FakeOdoo, FakeOptions, Fault};
use serde_json::{Value, json};

const DT: &str = "%Y-%m-%d %H:%M:%S";

/// Installs ring as the TLS crypto provider: in a workspace build reqwest has
/// nas-sync's `rustls-no-provider` feature, and a client cannot be built without one.
fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn http() -> reqwest::Client {
    install_tls_provider();
    reqwest::Client::new()
}

/// A JSON-RPC call; returns the whole envelope (HTTP 200 asserted).
async fn rpc(f: &FakeOdoo, service: &str, method: &str, args: Value) -> Value {
    let resp = http()
        .post(f.jsonrpc_url())
        .json(&json!({"jsonrpc": "2.0", "method": "call",
                      "params": {"service": service, "method": method, "args": args}, "id": 7}))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let env: Value = resp.json().await.expect("json body");
    assert_eq!(env["jsonrpc"], "2.0");
    assert_eq!(env["id"], 7);
    env
}

/// `execute_kw` as the default bot user.
async fn kw(f: &FakeOdoo, model: &str, method: &str, args: Value, kwargs: Value) -> Value {
    rpc(
        f,
        "object",
        "execute_kw",
        json!(["odoo", 2, "bot-password", model, method, args, kwargs]),
    )
    .await
}

fn ok(env: Value) -> Value {
    assert!(env.get("error").is_none(), "unexpected error: {env}");
    env["result"].clone()
}

fn err_name(env: &Value) -> String {
    env["error"]["data"]["name"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error envelope, got {env}"))
        .to_string()
}

/// A JSON-2 call with the bot's API key: (status, JSON body).
async fn j2(f: &FakeOdoo, model: &str, method: &str, body: Value) -> (u16, Value) {
    let resp = http()
        .post(f.json2_url(model, method))
        .header("Authorization", "bearer bot-api-key")
        .json(&body)
        .send()
        .await
        .expect("send");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json body"))
}

async fn ids_where(f: &FakeOdoo, model: &str, domain: Value) -> Vec<i64> {
    let r = ok(kw(
        f,
        model,
        "search",
        json!([domain]),
        json!({"order": "id asc"}),
    )
    .await);
    r.as_array()
        .expect("ids")
        .iter()
        .map(|v| v.as_i64().expect("id"))
        .collect()
}

fn secs(dt: NaiveDateTime) -> String {
    dt.format(DT).to_string()
}

fn floor(dt: NaiveDateTime) -> NaiveDateTime {
    dt.with_nanosecond(0).unwrap()
}

// ------------------------------------------------------------ endpoints

#[tokio::test]
async fn version_endpoints_and_date_header() {
    for v in [17, 19] {
        let f = FakeOdoo::start_version(v).await;
        let resp = http()
            .get(format!("{}/web/version", f.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(
            body,
            json!({"version_info": [v, 0, 0, "final", 0, ""], "version": format!("{v}.0")})
        );
        let r = ok(rpc(&f, "common", "version", json!([])).await);
        assert_eq!(r["server_version"], format!("{v}.0"));
        assert_eq!(r["server_version_info"], json!([v, 0, 0, "final", 0, ""]));
        assert_eq!(r["server_serie"], format!("{v}.0"));
        assert_eq!(r["protocol_version"], 1);
    }

    // The Date header follows the skewed fake clock.
    let f = FakeOdoo::start_version(17).await;
    f.set_clock_offset(chrono::Duration::hours(-2));
    let resp = http()
        .get(format!("{}/web/version", f.url))
        .send()
        .await
        .unwrap();
    let date = resp.headers()["date"].to_str().unwrap().to_string();
    assert!(date.ends_with(" GMT"), "{date}");
    let served = chrono::DateTime::parse_from_rfc2822(&date).unwrap();
    let expected = chrono::Utc::now() - chrono::Duration::hours(2);
    let skew = (served.timestamp() - expected.timestamp()).abs();
    assert!(skew <= 2, "Date {date} is {skew}s away from the fake clock");
    assert!((f.now() - expected.naive_utc()).num_seconds().abs() <= 2);

    // Unknown routes: Odoo's HTML 404.
    let resp = http().get(format!("{}/nope", f.url)).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
}

#[tokio::test]
async fn authenticate_returns_uid_or_false() {
    let f = FakeOdoo::start(FakeOptions::default()).await;
    let auth = |db: &'static str, login: &'static str, pw: &'static str| {
        rpc(&f, "common", "authenticate", json!([db, login, pw, {}]))
    };
    assert_eq!(ok(auth("odoo", "bot", "bot-password").await), json!(2));
    assert_eq!(ok(auth("odoo", "bot", "bot-api-key").await), json!(2));
    assert_eq!(ok(auth("odoo", "bot", "wrong").await), json!(false));
    assert_eq!(
        ok(auth("odoo", "admin", "bot-password").await),
        json!(false)
    );
    assert_eq!(ok(auth("other", "bot", "bot-password").await), json!(false));
    let login = rpc(&f, "common", "login", json!(["odoo", "bot", "bot-api-key"])).await;
    assert_eq!(ok(login), json!(2));
    // Missing user_agent_env: a TypeError, not false.
    let env = rpc(
        &f,
        "common",
        "authenticate",
        json!(["odoo", "bot", "bot-password"]),
    )
    .await;
    assert_eq!(err_name(&env), "builtins.TypeError");
}

#[tokio::test]
async fn object_call_with_bad_credentials_is_access_denied() {
    for (v, code) in [(17, 200), (19, 0)] {
        let f = FakeOdoo::start_version(v).await;
        for (uid, pw) in [
            (json!(2), "nope"),
            (json!(3), "bot-password"),
            (json!(false), "bot-password"),
        ] {
            let env = rpc(
                &f,
                "object",
                "execute_kw",
                json!(["odoo", uid, pw, "res.partner", "search_count", [[]], {}]),
            )
            .await;
            assert_eq!(err_name(&env), "odoo.exceptions.AccessDenied");
            assert_eq!(env["error"]["code"], code);
            assert_eq!(env["error"]["message"], "Odoo Server Error");
            assert_eq!(env["error"]["data"]["message"], "Access Denied");
        }
        // The API key is accepted as the password.
        let env = rpc(
            &f,
            "object",
            "execute_kw",
            json!([
                "odoo",
                2,
                "bot-api-key",
                "res.partner",
                "search_count",
                [[]]
            ]),
        )
        .await;
        assert_eq!(ok(env), json!(0));
    }
}

#[tokio::test]
async fn json2_auth_and_routing() {
    let f = FakeOdoo::start_version(19).await;
    f.insert("res.partner", json!({"name": "A"}));
    let url = f.json2_url("res.partner", "search_count");
    for auth in [Some("bearer wrong"), Some("Basic Ym90OmJvdA=="), None] {
        let mut req = http().post(&url).json(&json!({"domain": []}));
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{auth:?}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["name"], "werkzeug.exceptions.Unauthorized");
        assert_eq!(body["message"], "Invalid apikey");
        assert_eq!(body["arguments"], json!(["Invalid apikey", 401]));
    }
    // Scheme is case-insensitive; X-Odoo-Database is optional but must match.
    let resp = http()
        .post(&url)
        .header("Authorization", "BEARER bot-api-key")
        .header("X-Odoo-Database", "odoo")
        .json(&json!({"domain": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!(1));
    let resp = http()
        .post(&url)
        .header("Authorization", "bearer bot-api-key")
        .header("X-Odoo-Database", "elsewhere")
        .json(&json!({"domain": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    // Unknown model / method: 404; bad kwargs and ids on a model method: 422.
    let (s, b) = j2(&f, "no.such", "search_count", json!({"domain": []})).await;
    assert_eq!(
        (s, b["name"].as_str()),
        (404, Some("werkzeug.exceptions.NotFound"))
    );
    assert_eq!(b["message"], "the model 'no.such' does not exist");
    let (s, b) = j2(&f, "res.partner", "frobnicate", json!({})).await;
    assert_eq!(s, 404);
    assert_eq!(
        b["message"],
        "The method 'frobnicate' does not exist on the model 'res.partner'"
    );
    let (s, b) = j2(
        &f,
        "res.partner",
        "search_count",
        json!({"domain": [], "bogus": 1}),
    )
    .await;
    assert_eq!(
        (s, b["name"].as_str()),
        (422, Some("werkzeug.exceptions.UnprocessableEntity"))
    );
    assert_eq!(b["message"], "got an unexpected keyword argument 'bogus'");
    let (s, b) = j2(
        &f,
        "res.partner",
        "search_read",
        json!({"ids": [1], "domain": []}),
    )
    .await;
    assert_eq!(s, 422);
    assert_eq!(b["message"], "cannot call res.partner.search_read with ids");
    let (s, b) = j2(&f, "res.partner", "write", json!({"ids": [1]})).await;
    assert_eq!(s, 422);
    assert_eq!(b["message"], "missing a required argument: 'vals'");

    // Before 19 there is no JSON-2.
    let f17 = FakeOdoo::start_version(17).await;
    let resp = http()
        .post(f17.json2_url("res.partner", "search_count"))
        .header("Authorization", "bearer bot-api-key")
        .json(&json!({"domain": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
}

#[tokio::test]
async fn jsonrpc_on_19_works_unless_disabled() {
    let f = FakeOdoo::start_version(19).await;
    let env = kw(&f, "res.partner", "search_count", json!([[]]), json!({})).await;
    assert_eq!(ok(env), json!(0));

    let f = FakeOdoo::start(FakeOptions {
        version: 19,
        jsonrpc_disabled: true,
        ..FakeOptions::default()
    })
    .await;
    let env = kw(&f, "res.partner", "search_count", json!([[]]), json!({})).await;
    assert_eq!(env["error"]["code"], 404);
    assert_eq!(env["error"]["message"], "404: Not Found");
    assert_eq!(err_name(&env), "werkzeug.exceptions.NotFound");
    let env = rpc(
        &f,
        "common",
        "authenticate",
        json!(["odoo", "bot", "bot-api-key", {}]),
    )
    .await;
    assert_eq!(env["error"]["code"], 404);
    // `version` stays available; JSON-2 is the way in.
    assert_eq!(
        ok(rpc(&f, "common", "version", json!([])).await)["server_version"],
        "19.0"
    );
    assert_eq!(
        j2(&f, "res.partner", "search_count", json!({"domain": []})).await,
        (200, json!(0))
    );

    // The switch means nothing before 19.
    let f = FakeOdoo::start(FakeOptions {
        jsonrpc_disabled: true,
        ..FakeOptions::default()
    })
    .await;
    assert_eq!(
        ok(kw(&f, "res.partner", "search_count", json!([[]]), json!({})).await),
        json!(0)
    );
}

// --------------------------------------------------------------- values

#[tokio::test]
async fn search_read_value_formats() {
    let f = FakeOdoo::start_version(17).await;
    let d = f.seed_demo();
    let rows = ok(kw(
        &f,
        "res.partner",
        "search_read",
        json!([[["id", "=", d.contact]]]),
        json!({"fields": ["name", "parent_id", "email", "comment", "customer_rank",
                          "is_company", "display_name", "write_date"]}),
    )
    .await);
    let r = &rows[0];
    assert_eq!(r["id"], d.contact);
    assert_eq!(r["parent_id"], json!([d.company, "Azure Interior"]));
    assert_eq!(r["display_name"], "Azure Interior, Brandon Freeman");
    assert_eq!(r["comment"], json!(false));
    assert_eq!(r["customer_rank"], json!(0));
    assert_eq!(r["is_company"], json!(false));
    let wd = r["write_date"].as_str().unwrap();
    assert!(NaiveDateTime::parse_from_str(wd, DT).is_ok(), "{wd}");
    assert_eq!(r.as_object().unwrap().len(), 9, "{r}");

    // load: null → bare ids; empty many2one → false.
    let rows = ok(kw(
        &f,
        "res.partner",
        "read",
        json!([[d.contact, d.company], ["parent_id"]]),
        json!({"load": null}),
    )
    .await);
    assert_eq!(
        rows,
        json!([{"id": d.contact, "parent_id": d.company},
                            {"id": d.company, "parent_id": false}])
    );

    // Orders: sequence names, defaults, computed totals, one2many ids,
    // floats served as floats.
    let resp = http()
        .post(f.jsonrpc_url())
        .json(
            &json!({"jsonrpc": "2.0", "method": "call", "id": 1, "params": {
            "service": "object", "method": "execute_kw", "args": ["odoo", 2, "bot-password",
            "sale.order", "read", [d.orders], {"fields": ["name", "state", "amount_total",
            "order_line", "partner_id", "date_order", "note"]}]}}),
        )
        .send()
        .await
        .unwrap();
    let text = resp.text().await.unwrap();
    assert!(text.contains("\"amount_total\":460.0"), "{text}");
    let orders = ok(serde_json::from_str(&text).unwrap());
    assert_eq!(orders[0]["name"], "S00001");
    assert_eq!(orders[1]["name"], "S00002");
    assert_eq!(orders[0]["state"], "draft");
    assert_eq!(orders[1]["state"], "sale");
    assert_eq!(orders[1]["amount_total"].as_f64(), Some(45.0));
    assert_eq!(orders[0]["note"], json!(false));
    assert_eq!(orders[0]["partner_id"], json!([d.customer, "Deco Addict"]));
    assert_eq!(orders[0]["order_line"], json!([d.lines[0], d.lines[1]]));
    let date_order = orders[0]["date_order"].as_str().unwrap();
    assert!(NaiveDateTime::parse_from_str(date_order, DT).is_ok());
    let lines = ok(kw(
        &f,
        "sale.order.line",
        "read",
        json!([d.lines]),
        json!({"fields": ["name", "price_unit", "price_subtotal", "product_id", "order_id"]}),
    )
    .await);
    assert_eq!(lines[0]["name"], "[FURN_0001] Desk");
    assert_eq!(lines[0]["price_unit"].as_f64(), Some(150.0));
    assert_eq!(lines[1]["price_subtotal"].as_f64(), Some(160.0));
    assert_eq!(
        lines[0]["product_id"],
        json!([d.products[0], "[FURN_0001] Desk"])
    );
    assert_eq!(lines[2]["order_id"], json!([d.orders[1], "S00002"]));

    // No fields → every field, `id` included.
    let all = ok(kw(
        &f,
        "product.product",
        "read",
        json!([[d.products[2]]]),
        json!({}),
    )
    .await);
    let p = &all[0];
    for k in [
        "id",
        "name",
        "default_code",
        "barcode",
        "list_price",
        "active",
        "type",
        "categ_id",
        "create_date",
        "write_date",
        "display_name",
    ] {
        assert!(p.get(k).is_some(), "{k} missing from {p}");
    }
    assert_eq!(p["default_code"], json!(false));
    assert_eq!(p["categ_id"], json!([1, "All"]));
    assert_eq!(p["type"], "service");

    // Unknown field.
    let env = kw(
        &f,
        "res.partner",
        "search_read",
        json!([[]]),
        json!({"fields": ["nope"]}),
    )
    .await;
    assert_eq!(err_name(&env), "builtins.ValueError");
    assert_eq!(
        env["error"]["data"]["message"],
        "Invalid field 'nope' on model 'res.partner'"
    );
    // Unknown model / method over JSON-RPC.
    let env = kw(&f, "no.such", "search", json!([[]]), json!({})).await;
    assert_eq!(err_name(&env), "odoo.exceptions.UserError");
    let env = kw(&f, "res.partner", "frobnicate", json!([[]]), json!({})).await;
    assert_eq!(err_name(&env), "builtins.AttributeError");
    let env = kw(&f, "res.partner", "_private", json!([[]]), json!({})).await;
    assert_eq!(err_name(&env), "odoo.exceptions.AccessError");
}

#[tokio::test]
async fn json2_named_arguments_and_bare_results() {
    let f = FakeOdoo::start_version(19).await;
    let d = f.seed_demo();
    let (s, rows) = j2(
        &f,
        "res.partner",
        "search_read",
        json!({
        "domain": [["is_company", "=", true]], "fields": ["name", "parent_id"],
        "order": "name desc", "limit": 10, "offset": 0, "load": null,
        "context": {"active_test": false}}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        rows,
        json!([
        {"id": d.customer, "name": "Deco Addict", "parent_id": false},
        {"id": d.company, "name": "Azure Interior", "parent_id": false}])
    );
    let (s, rows) = j2(
        &f,
        "res.partner",
        "read",
        json!({"ids": [d.contact], "fields": ["parent_id"]}),
    )
    .await;
    assert_eq!(
        (s, rows),
        (
            200,
            json!([{"id": d.contact, "parent_id": [d.company, "Azure Interior"]}])
        )
    );
    let (s, n) = j2(
        &f,
        "res.partner",
        "search_count",
        json!({"domain": [], "limit": 2}),
    )
    .await;
    assert_eq!((s, n), (200, json!(2)));
    let (s, ids) = j2(
        &f,
        "res.partner",
        "search",
        json!({"domain": [], "order": "id desc", "offset": 1,
               "context": {"active_test": false}}),
    )
    .await;
    assert_eq!((s, ids), (200, json!([d.customer, d.contact, d.company])));
    let (s, ids) = j2(
        &f,
        "res.partner",
        "create",
        json!({"vals_list": [{"name": "N1"}, {"name": "N2"}]}),
    )
    .await;
    assert_eq!(s, 200);
    let ids: Vec<i64> = serde_json::from_value(ids).unwrap();
    assert_eq!(ids.len(), 2);
    let (s, r) = j2(
        &f,
        "res.partner",
        "write",
        json!({"ids": ids, "vals": {"city": "Gent"}}),
    )
    .await;
    assert_eq!((s, r), (200, json!(true)));
    assert_eq!(f.record("res.partner", ids[1]).unwrap()["city"], "Gent");
    let (s, r) = j2(&f, "res.partner", "unlink", json!({"ids": [ids[0]]})).await;
    assert_eq!((s, r), (200, json!(true)));
    assert!(f.record("res.partner", ids[0]).is_none());

    // Errors carry real statuses.
    let (s, b) = j2(
        &f,
        "res.partner",
        "read",
        json!({"ids": [ids[0]], "fields": ["name"]}),
    )
    .await;
    assert_eq!(
        (s, b["name"].as_str()),
        (404, Some("odoo.exceptions.MissingError"))
    );
    let (s, b) = j2(
        &f,
        "res.partner",
        "create",
        json!({"vals_list": [{"email": "x@y"}]}),
    )
    .await;
    assert_eq!(
        (s, b["name"].as_str()),
        (422, Some("odoo.exceptions.ValidationError"))
    );
    let (s, b) = j2(
        &f,
        "res.partner",
        "search_read",
        json!({"domain": [["nope", "=", 1]]}),
    )
    .await;
    assert_eq!((s, b["name"].as_str()), (500, Some("builtins.ValueError")));
    // A method returning None: JSON null.
    let (s, b) = j2(&f, "sale.order", "action_noop", json!({"ids": d.orders})).await;
    assert_eq!((s, b), (200, Value::Null));
}

#[tokio::test]
async fn action_noop_has_no_result_member_over_jsonrpc() {
    let f = FakeOdoo::start_version(17).await;
    let env = kw(&f, "res.partner", "action_noop", json!([[1]]), json!({})).await;
    assert!(env.get("error").is_none(), "{env}");
    assert!(
        env.get("result").is_none(),
        "None is left out of the envelope: {env}"
    );
}

#[tokio::test]
async fn fields_get_with_attributes() {
    let f = FakeOdoo::start(FakeOptions {
        with_tag_field: true,
        ..FakeOptions::default()
    })
    .await;
    let r = ok(kw(
        &f,
        "sale.order",
        "fields_get",
        json!([]),
        json!({"attributes": ["type", "string", "relation", "required"]}),
    )
    .await);
    assert_eq!(
        r["partner_id"],
        json!({"type": "many2one", "string": "Customer",
                                       "relation": "res.partner", "required": true})
    );
    assert_eq!(
        r["amount_total"],
        json!({"type": "monetary", "string": "Total", "required": false})
    );
    assert_eq!(r["order_line"]["relation"], "sale.order.line");
    assert_eq!(r["x_nas_sync_uuid"]["type"], "char");
    let r = ok(kw(
        &f,
        "sale.order",
        "fields_get",
        json!([["state"]]),
        json!({"attributes": ["selection", "store"]}),
    )
    .await);
    assert_eq!(r.as_object().unwrap().len(), 1);
    assert_eq!(r["state"]["store"], true);
    assert_eq!(r["state"]["selection"][2], json!(["sale", "Sales Order"]));
    // Without the option the custom field does not exist.
    let f = FakeOdoo::start_version(17).await;
    let r = ok(kw(
        &f,
        "sale.order.line",
        "fields_get",
        json!([]),
        json!({"attributes": ["type"]}),
    )
    .await);
    assert!(r.get("x_nas_sync_uuid").is_none());
    assert_eq!(r["price_subtotal"], json!({"type": "monetary"}));
}

// -------------------------------------------------------------- domains

#[tokio::test]
async fn domains_operators_and_null_semantics() {
    let f = FakeOdoo::start_version(17).await;
    let a = f.insert(
        "res.partner",
        json!({"name": "Alpha", "email": "a@x.com", "city": "Gent"}),
    );
    let b = f.insert(
        "res.partner",
        json!({"name": "beta", "city": "Brussel", "customer_rank": 3}),
    );
    let c = f.insert("res.partner", json!({"name": "Gamma", "parent_id": a}));

    assert_eq!(
        ids_where(&f, "res.partner", json!([["email", "=", false]])).await,
        vec![b, c]
    );
    assert_eq!(
        ids_where(&f, "res.partner", json!([["email", "!=", false]])).await,
        vec![a]
    );
    // `!=` and `not in` match NULLs too.
    assert_eq!(
        ids_where(&f, "res.partner", json!([["city", "!=", "Gent"]])).await,
        vec![b, c]
    );
    assert_eq!(
        ids_where(&f, "res.partner", json!([["city", "not in", ["Gent"]]])).await,
        vec![b, c]
    );
    assert_eq!(
        ids_where(&f, "res.partner", json!([["city", "in", ["Gent", false]]])).await,
        vec![a, c]
    );
    assert_eq!(
        ids_where(&f, "res.partner", json!([["id", "in", [a, c, 999]]])).await,
        vec![a, c]
    );
    assert_eq!(
        ids_where(&f, "res.partner", json!([["id", "in", []]])).await,
        Vec::<i64>::new()
    );
    assert_eq!(
        ids_where(&f, "res.partner", json!([["name", "ilike", "ETA"]])).await,
        vec![b]
    );
    assert_eq!(
        ids_where(&f, "res.partner", json!([["name", "like", "ETA"]])).await,
        Vec::<i64>::new()
    );
    assert_eq!(
        ids_where(&f, "res.partner", json!([["name", "not ilike", "a"]])).await,
        Vec::<i64>::new()
    );
    assert_eq!(
        ids_where(&f, "res.partner", json!([["name", "=ilike", "g%"]])).await,
        vec![c]
    );
    assert_eq!(
        ids_where(&f, "res.partner", json!([["name", "=like", "_eta"]])).await,
        vec![b]
    );
    assert_eq!(
        ids_where(&f, "res.partner", json!([["customer_rank", ">", 0]])).await,
        vec![b]
    );
    assert_eq!(
        ids_where(&f, "res.partner", json!([["customer_rank", "=?", false]])).await,
        vec![a, b, c]
    );
    // Prefix operators and implicit AND.
    assert_eq!(
        ids_where(
            &f,
            "res.partner",
            json!(["|", ["city", "=", "Gent"], ["customer_rank", "=", 3]])
        )
        .await,
        vec![a, b]
    );
    assert_eq!(
        ids_where(&f, "res.partner", json!(["!", ["city", "=", "Gent"]])).await,
        vec![b, c]
    );
    assert_eq!(
        ids_where(
            &f,
            "res.partner",
            json!([
                "|",
                "&",
                ["city", "=", "Gent"],
                ["email", "!=", false],
                "!",
                ["parent_id", "=", false]
            ])
        )
        .await,
        vec![a, c]
    );
    assert_eq!(
        ids_where(
            &f,
            "res.partner",
            json!([["name", "ilike", "a"], ["city", "!=", false]])
        )
        .await,
        vec![a, b]
    );
    assert_eq!(
        ids_where(&f, "res.partner", json!([[1, "=", 1]])).await,
        vec![a, b, c]
    );
    assert_eq!(
        ids_where(&f, "res.partner", json!([[0, "=", 1]])).await,
        Vec::<i64>::new()
    );
    // many2one: ids, names, dotted paths, child_of.
    assert_eq!(
        ids_where(&f, "res.partner", json!([["parent_id", "=", a]])).await,
        vec![c]
    );
    assert_eq!(
        ids_where(&f, "res.partner", json!([["parent_id", "ilike", "alp"]])).await,
        vec![c]
    );
    assert_eq!(
        ids_where(&f, "res.partner", json!([["parent_id.city", "=", "Gent"]])).await,
        vec![c]
    );
    assert_eq!(
        ids_where(&f, "res.partner", json!([["id", "child_of", a]])).await,
        vec![a, c]
    );
    assert_eq!(
        ids_where(&f, "res.partner", json!([["id", "parent_of", [c]]])).await,
        vec![a, c]
    );

    // Malformed domains and unknown fields are ValueErrors.
    for bad in [
        json!(["&", ["name", "=", "x"]]),
        json!([["name", "=="]]),
        json!([["name", "~", 1]]),
        json!("name = x"),
        json!([["nope", "=", 1]]),
    ] {
        let env = kw(&f, "res.partner", "search", json!([bad]), json!({})).await;
        assert_eq!(err_name(&env), "builtins.ValueError", "{bad}");
    }
}

#[tokio::test]
async fn ordering_limit_offset() {
    let f = FakeOdoo::start_version(17).await;
    let ids = f.bulk_insert(
        "res.partner",
        vec![
            json!({"name": "b"}),
            json!({"name": "a"}),
            json!({"name": "c"}),
            json!({"name": "a"}),
        ],
    );
    let (b, a1, c, a2) = (ids[0], ids[1], ids[2], ids[3]);
    let search = |kwargs: Value| kw(&f, "res.partner", "search", json!([[]]), kwargs);
    // Default res.partner order: name asc, id desc.
    assert_eq!(ok(search(json!({})).await), json!([a2, a1, b, c]));
    // search_read takes its domain positionally or as a keyword.
    let rows = ok(kw(
        &f,
        "res.partner",
        "search_read",
        json!([]),
        json!({"domain": [["name", "=", "a"]], "fields": ["name"], "order": "id"}),
    )
    .await);
    assert_eq!(
        rows,
        json!([{"id": a1, "name": "a"}, {"id": a2, "name": "a"}])
    );
    assert_eq!(
        ok(search(json!({"order": "name desc"})).await),
        json!([c, b, a1, a2])
    );
    assert_eq!(
        ok(search(json!({"order": "name asc, id desc", "limit": 2, "offset": 1})).await),
        json!([a1, b])
    );
    assert_eq!(
        ok(search(json!({"order": "id asc", "limit": 0})).await),
        json!([b, a1, c, a2])
    );
    assert_eq!(
        ok(search(json!({"order": "id asc", "limit": false, "offset": 3})).await),
        json!([a2])
    );
    let env = search(json!({"order": "name; drop table"})).await;
    assert_eq!(err_name(&env), "builtins.ValueError");
    let env = search(json!({"order": "display_name"})).await;
    assert_eq!(err_name(&env), "builtins.ValueError");
    // sale.order: date_order desc, id desc.
    let p = f.insert("res.partner", json!({"name": "P"}));
    let o1 = f.insert(
        "sale.order",
        json!({"partner_id": p, "date_order": "2024-01-02 00:00:00"}),
    );
    let o2 = f.insert(
        "sale.order",
        json!({"partner_id": p, "date_order": "2024-01-03 00:00:00"}),
    );
    let o3 = f.insert(
        "sale.order",
        json!({"partner_id": p, "date_order": "2024-01-02 00:00:00"}),
    );
    assert_eq!(
        ok(kw(&f, "sale.order", "search", json!([[]]), json!({})).await),
        json!([o2, o3, o1])
    );
    let n = ok(kw(
        &f,
        "sale.order",
        "search_count",
        json!([[]]),
        json!({"limit": 2}),
    )
    .await);
    assert_eq!(n, json!(2));
}

// ----------------------------------------------------------- write_date

#[tokio::test]
async fn one_transaction_one_write_date_and_whole_second_windows() {
    for v in [17, 19] {
        let f = FakeOdoo::start_version(v).await;
        let ids = f.bulk_insert(
            "res.partner",
            (0..5).map(|i| json!({"name": format!("P{i}")})).collect(),
        );
        let ts = f.write_date_exact("res.partner", ids[0]).unwrap();
        for id in &ids {
            assert_eq!(f.write_date_exact("res.partner", *id), Some(ts));
        }
        let lo = floor(ts);
        let hi = lo + chrono::Duration::seconds(1);
        let window = json!([
            ["write_date", ">=", secs(lo)],
            ["write_date", "<", secs(hi)]
        ]);
        assert_eq!(ids_where(&f, "res.partner", window).await, ids, "v{v}");
        let before = json!([["write_date", "<", secs(lo)]]);
        assert_eq!(
            ids_where(&f, "res.partner", before).await,
            Vec::<i64>::new()
        );
        let after = json!([["write_date", ">=", secs(hi)]]);
        assert_eq!(ids_where(&f, "res.partner", after).await, Vec::<i64>::new());
        if v >= 19 {
            // `>` the served value misses the same-second rows.
            let gt = json!([["write_date", ">", secs(lo)]]);
            assert_eq!(ids_where(&f, "res.partner", gt).await, Vec::<i64>::new());
        }

        // An RPC write is one transaction too, and bumps write_date even when
        // nothing changes.
        f.update(
            "res.partner",
            ids[0],
            json!({"write_date": "2020-01-01 00:00:00"}),
        );
        assert_eq!(
            secs(f.write_date_exact("res.partner", ids[0]).unwrap()),
            "2020-01-01 00:00:00"
        );
        let env = kw(
            &f,
            "res.partner",
            "write",
            json!([[ids[0], ids[1]], {"name": "P0"}]),
            json!({}),
        )
        .await;
        assert_eq!(ok(env), json!(true));
        let w0 = f.write_date_exact("res.partner", ids[0]).unwrap();
        assert_eq!(f.write_date_exact("res.partner", ids[1]), Some(w0));
        assert!(w0 > ts);
        assert_eq!(
            f.record("res.partner", ids[0]).unwrap()["write_date"],
            secs(w0)
        );
    }
}

#[tokio::test]
async fn datetime_equality_is_microsecond_on_17_and_second_on_19() {
    // (version, `=`, `>`, `<=`) hits for rows written at 10:00:00.5 and 09:00:00
    for (v, eq, gt, le) in [(17, 0, 1, 1), (19, 1, 0, 2)] {
        let f = FakeOdoo::start_version(v).await;
        let id = f.insert(
            "res.partner",
            json!({"name": "X", "write_date": "2024-05-01 10:00:00.500000"}),
        );
        let _other = f.insert(
            "res.partner",
            json!({"name": "Y", "write_date": "2024-05-01 09:00:00"}),
        );
        let served = ok(kw(
            &f,
            "res.partner",
            "read",
            json!([[id], ["write_date"]]),
            json!({}),
        )
        .await);
        assert_eq!(served[0]["write_date"], "2024-05-01 10:00:00");
        let t = "2024-05-01 10:00:00";
        let count = |op: &str| {
            kw(
                &f,
                "res.partner",
                "search_count",
                json!([[["write_date", op, t]]]),
                json!({}),
            )
        };
        assert_eq!(ok(count("=").await), json!(eq), "v{v} =");
        assert_eq!(ok(count(">").await), json!(gt), "v{v} >");
        assert_eq!(ok(count("<=").await), json!(le), "v{v} <=");
        assert_eq!(ok(count(">=").await), json!(1), "v{v} >=");
        assert_eq!(ok(count("<").await), json!(1), "v{v} < (only Y)");
        // The compound keyset cursor only works where `=` is whole-second.
        let keyset = json!([
            "|",
            ["write_date", ">", t],
            "&",
            ["write_date", "=", t],
            ["id", ">", 0]
        ]);
        let n = ok(kw(
            &f,
            "res.partner",
            "search_count",
            json!([keyset]),
            json!({}),
        )
        .await);
        assert_eq!(n, json!(1), "v{v} keyset");
    }
}

#[tokio::test]
async fn late_commit_appears_with_an_old_write_date() {
    let f = FakeOdoo::start_version(17).await;
    f.insert("res.partner", json!({"name": "Early"}));
    // The cursor has read everything up to `hi` (after "Early").
    let hi = floor(f.now()) + chrono::Duration::seconds(1);
    let id = f.late_commit(
        "res.partner",
        json!({"name": "Late"}),
        Duration::from_secs(300),
    );
    let wd = f.write_date_exact("res.partner", id).unwrap();
    let age = (f.now() - wd).num_seconds();
    assert!((299..=302).contains(&age), "age {age}");
    // A cursor that already passed `hi` never sees it...
    assert_eq!(
        ids_where(&f, "res.partner", json!([["write_date", ">=", secs(hi)]])).await,
        Vec::<i64>::new()
    );
    // ...a lagging window does.
    let lo = hi - chrono::Duration::seconds(600);
    assert!(
        ids_where(&f, "res.partner", json!([["write_date", ">=", secs(lo)]]))
            .await
            .contains(&id)
    );

    let early = f.insert("res.partner", json!({"name": "Other"}));
    f.touch_late(
        "res.partner",
        early,
        json!({"city": "Late City"}),
        Duration::from_secs(120),
    );
    let r = f.record("res.partner", early).unwrap();
    assert_eq!(r["city"], "Late City");
    let age = (f.now() - f.write_date_exact("res.partner", early).unwrap()).num_seconds();
    assert!((119..=122).contains(&age), "age {age}");
}

#[tokio::test]
async fn active_test_hides_archived_records() {
    let f = FakeOdoo::start_version(17).await;
    let d = f.seed_demo();
    f.archive("res.partner", d.company);
    let all = [d.company, d.contact, d.customer, d.archived];
    assert_eq!(
        ids_where(&f, "res.partner", json!([])).await,
        vec![d.contact, d.customer]
    );
    let with_inactive = ok(kw(
        &f,
        "res.partner",
        "search",
        json!([[]]),
        json!({"context": {"active_test": false}, "order": "id"}),
    )
    .await);
    assert_eq!(with_inactive, json!(all));
    assert_eq!(
        ids_where(&f, "res.partner", json!([["active", "in", [true, false]]])).await,
        all.to_vec()
    );
    assert_eq!(
        ids_where(&f, "res.partner", json!([["active", "=", false]])).await,
        vec![d.company, d.archived]
    );
    let n = ok(kw(
        &f,
        "res.partner",
        "search_count",
        json!([[]]),
        json!({"context": {"active_test": false}}),
    )
    .await);
    assert_eq!(n, json!(4));
    // read() does not filter, models without `active` are not filtered.
    let r = ok(kw(
        &f,
        "res.partner",
        "read",
        json!([[d.archived], ["active"]]),
        json!({}),
    )
    .await);
    assert_eq!(r, json!([{"id": d.archived, "active": false}]));
    assert_eq!(
        ok(kw(&f, "sale.order", "search_count", json!([[]]), json!({})).await),
        json!(2)
    );
    // records() includes archived rows.
    assert_eq!(f.records("res.partner").len(), 4);
    assert_eq!(f.count("res.partner"), 4);
}

// ------------------------------------------------------- create / write

#[tokio::test]
async fn create_write_unlink_over_jsonrpc() {
    let f = FakeOdoo::start(FakeOptions {
        with_tag_field: true,
        ..FakeOptions::default()
    })
    .await;
    let p = ok(kw(
        &f,
        "res.partner",
        "create",
        json!([{"name": "Solo"}]),
        json!({}),
    )
    .await);
    assert!(p.is_i64(), "create(dict) returns an id: {p}");
    let many = ok(kw(
        &f,
        "res.partner",
        "create",
        json!([[{"name": "A"}, {"name": "B"}]]),
        json!({}),
    )
    .await);
    assert_eq!(many.as_array().unwrap().len(), 2);
    let p = p.as_i64().unwrap();

    let env = kw(
        &f,
        "res.partner",
        "create",
        json!([{"email": "no-name@x"}]),
        json!({}),
    )
    .await;
    assert_eq!(err_name(&env), "odoo.exceptions.ValidationError");
    assert!(
        env["error"]["data"]["message"]
            .as_str()
            .unwrap()
            .contains("Field: Name (name)")
    );
    let env = kw(
        &f,
        "sale.order",
        "create",
        json!([{"partner_id": 999}]),
        json!({}),
    )
    .await;
    assert_eq!(err_name(&env), "odoo.exceptions.ValidationError");
    assert!(
        env["error"]["data"]["message"]
            .as_str()
            .unwrap()
            .contains("sale_order_partner_id_fkey")
    );
    let env = kw(
        &f,
        "res.partner",
        "create",
        json!([{"name": "X", "bogus": 1}]),
        json!({}),
    )
    .await;
    assert_eq!(err_name(&env), "builtins.ValueError");
    let env = kw(
        &f,
        "sale.order",
        "create",
        json!([{"partner_id": p, "state": "done"}]),
        json!({}),
    )
    .await;
    assert_eq!(err_name(&env), "builtins.ValueError");
    // A failed call applies nothing (even the valid part of a batch).
    let env = kw(
        &f,
        "res.partner",
        "create",
        json!([[{"name": "ok"}, {"city": "no name"}]]),
        json!({}),
    )
    .await;
    assert_eq!(err_name(&env), "odoo.exceptions.ValidationError");
    assert_eq!(f.count("res.partner"), 3);

    // An order with lines through one2many commands, tagged.
    let o = ok(kw(
        &f,
        "sale.order",
        "create",
        json!([{
        "partner_id": p, "x_nas_sync_uuid": "u-1",
        "order_line": [[0, 0, {"name": "Work", "product_uom_qty": 3, "price_unit": 10.005,
                               "x_nas_sync_uuid": "u-1-1"}]]}]),
        json!({}),
    )
    .await)
    .as_i64()
    .unwrap();
    let order = f.record("sale.order", o).unwrap();
    assert_eq!(order["amount_total"].as_f64(), Some(30.03));
    assert_eq!(order["x_nas_sync_uuid"], "u-1");
    assert_eq!(order["partner_id"], p);
    let found = ok(kw(
        &f,
        "sale.order",
        "search",
        json!([[["x_nas_sync_uuid", "=", "u-1"]]]),
        json!({}),
    )
    .await);
    assert_eq!(found, json!([o]));
    let line = f.records("sale.order.line")[0].clone();
    assert_eq!(line["order_id"], o);
    assert_eq!(line["x_nas_sync_uuid"], "u-1-1");

    // write / unlink; MissingError on deleted ids.
    assert_eq!(
        ok(kw(
            &f,
            "res.partner",
            "write",
            json!([[p], {"phone": "123"}]),
            json!({})
        )
        .await),
        json!(true)
    );
    assert_eq!(f.record("res.partner", p).unwrap()["phone"], "123");
    let extra = many[0].as_i64().unwrap();
    assert_eq!(
        ok(kw(&f, "res.partner", "unlink", json!([[extra]]), json!({})).await),
        json!(true)
    );
    for (method, args) in [
        ("write", json!([[extra], {"phone": "1"}])),
        ("unlink", json!([[extra]])),
        ("read", json!([[extra], ["name"]])),
    ] {
        let env = kw(&f, "res.partner", method, args, json!({})).await;
        assert_eq!(err_name(&env), "odoo.exceptions.MissingError", "{method}");
    }
    // A partner with orders cannot be deleted (ondelete restrict).
    let env = kw(&f, "res.partner", "unlink", json!([[p]]), json!({})).await;
    assert_eq!(err_name(&env), "odoo.exceptions.ValidationError");
    assert!(f.record("res.partner", p).is_some());
    // Python-style argument errors.
    let env = kw(&f, "res.partner", "search", json!([]), json!({})).await;
    assert_eq!(err_name(&env), "builtins.TypeError");
    assert_eq!(
        env["error"]["data"]["message"],
        "search() missing 1 required positional argument: 'domain'"
    );
    let env = kw(
        &f,
        "res.partner",
        "read",
        json!([[p], ["name"]]),
        json!({"fields": ["name"]}),
    )
    .await;
    assert_eq!(
        env["error"]["data"]["message"],
        "read() got multiple values for argument 'fields'"
    );
}

#[tokio::test]
async fn delete_cascades_and_leaves_no_trace() {
    let f = FakeOdoo::start_version(17).await;
    let d = f.seed_demo();
    assert_eq!(f.count("sale.order.line"), 3);
    f.delete("sale.order", d.orders[0]);
    assert!(f.record("sale.order", d.orders[0]).is_none());
    assert_eq!(f.count("sale.order.line"), 1);
    assert_eq!(f.records("sale.order.line")[0]["id"], d.lines[2]);
    let env = kw(
        &f,
        "sale.order.line",
        "read",
        json!([[d.lines[0]]]),
        json!({}),
    )
    .await;
    assert_eq!(err_name(&env), "odoo.exceptions.MissingError");
    let all = ok(kw(
        &f,
        "sale.order.line",
        "search",
        json!([[]]),
        json!({"context": {"active_test": false}}),
    )
    .await);
    assert_eq!(all, json!([d.lines[2]]));

    // Deleting a line through the ORM recomputes the order total, which
    // bumps the order's write_date.
    f.update(
        "sale.order",
        d.orders[1],
        json!({"write_date": "2020-01-01 00:00:00"}),
    );
    let env = kw(
        &f,
        "sale.order.line",
        "unlink",
        json!([[d.lines[2]]]),
        json!({}),
    )
    .await;
    assert_eq!(ok(env), json!(true));
    let order = f.record("sale.order", d.orders[1]).unwrap();
    assert_eq!(order["amount_total"].as_f64(), Some(0.0));
    assert_ne!(order["write_date"], "2020-01-01 00:00:00");
    let lines = ok(kw(
        &f,
        "sale.order",
        "read",
        json!([[d.orders[1]], ["order_line"]]),
        json!({}),
    )
    .await);
    assert_eq!(lines[0]["order_line"], json!([]));

    // Deleting a parent company nulls its contacts' parent_id without a write.
    f.update(
        "res.partner",
        d.contact,
        json!({"write_date": "2020-01-01 00:00:00"}),
    );
    f.delete("res.partner", d.company);
    let c = f.record("res.partner", d.contact).unwrap();
    assert_eq!(c["parent_id"], json!(false));
    assert_eq!(c["write_date"], "2020-01-01 00:00:00");
}

// --------------------------------------------------------------- faults

#[tokio::test]
async fn proxy_faults_answer_html_and_apply_nothing() {
    let f = FakeOdoo::start_version(19).await;
    for (fault, status, title) in [
        (Fault::Proxy502, 502, "502 Bad Gateway"),
        (Fault::Gateway504, 504, "504 Gateway Time-out"),
        (Fault::TooMany429, 429, "429 Too Many Requests"),
    ] {
        f.fail_next("create", 1, fault);
        let resp = http()
            .post(f.jsonrpc_url())
            .json(
                &json!({"jsonrpc": "2.0", "method": "call", "id": 1, "params": {
                "service": "object", "method": "execute_kw",
                "args": ["odoo", 2, "bot-password", "res.partner", "create", [{"name": "X"}]]}}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(resp.text().await.unwrap().contains(title));
        assert_eq!(f.count("res.partner"), 0);
    }
    // JSON-2 gets the same proxy answers; counts and matchers are honoured.
    f.fail_next("res.partner/create", 2, Fault::Gateway504);
    f.fail_next("product.product/create", 1, Fault::TooMany429);
    let body = json!({"vals_list": [{"name": "Y"}]});
    let resp = http()
        .post(f.json2_url("res.partner", "create"))
        .header("Authorization", "bearer bot-api-key")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 504);
    let resp = http()
        .post(f.json2_url("res.partner", "create"))
        .header("Authorization", "bearer bot-api-key")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 504);
    assert_eq!(
        j2(&f, "res.partner", "search_count", json!({"domain": []})).await,
        (200, json!(0))
    );
    let (s, _) = j2(&f, "res.partner", "create", body.clone()).await;
    assert_eq!(s, 200);
    assert_eq!(f.count("res.partner"), 1);
    let resp = http()
        .post(f.json2_url("product.product", "create"))
        .header("Authorization", "bearer bot-api-key")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);

    // "*" matches object calls, not authenticate; a named matcher does.
    f.fail_next("*", 1, Fault::Proxy502);
    let env = rpc(
        &f,
        "common",
        "authenticate",
        json!(["odoo", "bot", "bot-password", {}]),
    )
    .await;
    assert_eq!(ok(env), json!(2));
    let resp = http()
        .post(f.json2_url("res.partner", "search"))
        .header("Authorization", "bearer bot-api-key")
        .json(&json!({"domain": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    f.fail_next("authenticate", 1, Fault::Proxy502);
    let resp = http().post(f.jsonrpc_url())
        .json(&json!({"jsonrpc": "2.0", "method": "call", "id": 1, "params": {
            "service": "common", "method": "authenticate", "args": ["odoo", "bot", "bot-password", {}]}}))
        .send().await.unwrap();
    assert_eq!(resp.status(), 502);
}

#[tokio::test]
async fn server_error_faults_over_both_protocols() {
    let f = FakeOdoo::start_version(19).await;
    let p = f.insert("res.partner", json!({"name": "Before"}));
    let cases = [
        (
            Fault::SerializationFailure,
            "psycopg2.errors.SerializationFailure",
            500,
            0,
        ),
        (Fault::AccessError, "odoo.exceptions.AccessError", 403, 0),
        (
            Fault::ValidationError("Nope, not today".into()),
            "odoo.exceptions.ValidationError",
            422,
            0,
        ),
        (
            Fault::SessionExpired,
            "odoo.http.SessionExpiredException",
            403,
            100,
        ),
    ];
    for (fault, name, status, code) in cases {
        f.fail_next("write", 1, fault.clone());
        let env = kw(
            &f,
            "res.partner",
            "write",
            json!([[p], {"name": "After"}]),
            json!({}),
        )
        .await;
        assert_eq!(err_name(&env), name);
        assert_eq!(env["error"]["code"], code, "{name}");
        f.fail_next("write", 1, fault.clone());
        let (s, body) = j2(
            &f,
            "res.partner",
            "write",
            json!({"ids": [p], "vals": {"name": "After"}}),
        )
        .await;
        assert_eq!((s, body["name"].as_str()), (status, Some(name)));
        assert_eq!(
            f.record("res.partner", p).unwrap()["name"],
            "Before",
            "{name} applied nothing"
        );
        match fault {
            Fault::SerializationFailure => assert!(
                env["error"]["data"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("could not serialize access due to concurrent update")
            ),
            Fault::ValidationError(_) => assert_eq!(body["message"], "Nope, not today"),
            Fault::SessionExpired => assert_eq!(env["error"]["message"], "Odoo Session Expired"),
            _ => {}
        }
    }
    // On 17 the JSON-RPC code is 200.
    let f = FakeOdoo::start_version(17).await;
    f.fail_next("search_read", 1, Fault::SerializationFailure);
    let env = kw(&f, "res.partner", "search_read", json!([[]]), json!({})).await;
    assert_eq!(env["error"]["code"], 200);
    assert_eq!(
        ok(kw(&f, "res.partner", "search_read", json!([[]]), json!({})).await),
        json!([])
    );
}

#[tokio::test]
async fn drop_after_apply_commits_then_drops_the_connection() {
    let f = FakeOdoo::start_version(19).await;
    f.fail_next("create", 1, Fault::DropAfterApply);
    let r = http()
        .post(f.jsonrpc_url())
        .json(
            &json!({"jsonrpc": "2.0", "method": "call", "id": 1, "params": {
            "service": "object", "method": "execute_kw",
            "args": ["odoo", 2, "bot-password", "res.partner", "create", [{"name": "Ghost"}]]}}),
        )
        .send()
        .await;
    let err = r.expect_err("no answer");
    assert!(!err.is_timeout() && !err.is_status(), "{err:?}");
    assert_eq!(f.count("res.partner"), 1);
    assert_eq!(f.records("res.partner")[0]["name"], "Ghost");

    f.fail_next("res.partner/write", 1, Fault::DropAfterApply);
    let r = http()
        .post(f.json2_url("res.partner", "write"))
        .header("Authorization", "bearer bot-api-key")
        .json(&json!({"ids": [1], "vals": {"name": "Ghost 2"}}))
        .send()
        .await;
    assert!(r.is_err());
    assert_eq!(f.records("res.partner")[0]["name"], "Ghost 2");
    // The server keeps serving.
    assert_eq!(
        j2(&f, "res.partner", "search_count", json!({"domain": []})).await,
        (200, json!(1))
    );
}

#[tokio::test]
async fn timeout_fault_commits_late_with_the_arrival_timestamp() {
    let f = FakeOdoo::start_version(17).await;
    f.fail_next("create", 1, Fault::Timeout(Duration::from_millis(600)));
    install_tls_provider();
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(150))
        .build()
        .unwrap();
    let sent = f.now();
    let r = impatient
        .post(f.jsonrpc_url())
        .json(
            &json!({"jsonrpc": "2.0", "method": "call", "id": 1, "params": {
            "service": "object", "method": "execute_kw",
            "args": ["odoo", 2, "bot-password", "res.partner", "create", [{"name": "Slow"}]]}}),
        )
        .send()
        .await;
    assert!(r.expect_err("timed out").is_timeout());
    assert_eq!(f.count("res.partner"), 0, "not committed yet");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        f.count("res.partner"),
        1,
        "committed although the client gave up"
    );
    let wd = f.write_date_exact("res.partner", 1).unwrap();
    assert!((wd - sent).num_milliseconds() < 100, "stamped on arrival");

    // A patient client gets the normal answer.
    f.fail_next(
        "search_count",
        1,
        Fault::Timeout(Duration::from_millis(200)),
    );
    let t = Instant::now();
    assert_eq!(
        ok(kw(&f, "res.partner", "search_count", json!([[]]), json!({})).await),
        json!(1)
    );
    assert!(t.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn call_log_and_call_delay() {
    let f = FakeOdoo::start_version(19).await;
    rpc(
        &f,
        "common",
        "authenticate",
        json!(["odoo", "bot", "bot-password", {}]),
    )
    .await;
    kw(&f, "res.partner", "search_count", json!([[]]), json!({})).await;
    j2(&f, "sale.order", "search_read", json!({"domain": []})).await;
    kw(
        &f,
        "res.partner",
        "write",
        json!([[42], {"name": "x"}]),
        json!({}),
    )
    .await; // fails: still logged
    assert_eq!(
        f.calls(),
        vec![
            ("res.partner".to_string(), "search_count".to_string()),
            ("sale.order".to_string(), "search_read".to_string()),
            ("res.partner".to_string(), "write".to_string()),
        ]
    );
    f.reset_calls();
    assert!(f.calls().is_empty());

    f.set_call_delay(Duration::from_millis(250));
    let t = Instant::now();
    kw(&f, "res.partner", "search_count", json!([[]]), json!({})).await;
    assert!(t.elapsed() >= Duration::from_millis(250));
    f.set_call_delay(Duration::ZERO);
    let t = Instant::now();
    kw(&f, "res.partner", "search_count", json!([[]]), json!({})).await;
    assert!(t.elapsed() < Duration::from_millis(250));
}

#[tokio::test]
async fn stop_closes_the_listener() {
    let mut f = FakeOdoo::start_version(17).await;
    let url = f.url.clone();
    f.stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = http().get(format!("{url}/web/version")).send().await;
    assert!(r.is_err(), "still serving after stop()");
}
