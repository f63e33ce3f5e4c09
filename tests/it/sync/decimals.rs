//! Exact decimals for generated clients (`api::decimals`): with `Nas-Sync-Decimals:
//! string`, numeric columns come back as strings of every digit in pull and push
//! answers, and `?decimals=string` documents them so; without it, numbers with every
//! digit, as before. A push may send either form.

use crate::common::*;

use reqwest::StatusCode;
use serde_json::{Value, json};

/// More digits than a double holds: a client decoding it as a number loses some.
const EXACT: &str = "12345678901234567890.123456789";

async fn post_with(dev: &Device, path: &str, body: &Value, decimals: &str) -> (StatusCode, Value) {
    let req = dev
        .http
        .post(format!("{}{path}", dev.base))
        .bearer_auth(&dev.token)
        .header("Nas-Sync-Decimals", decimals)
        .json(body);
    read(req.send().await.expect("request")).await
}

fn row<'a>(body: &'a Value, table: &str, id: &str) -> &'a Value {
    body[table]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["id"] == id))
        .unwrap_or_else(|| panic!("no {table} row {id} in {body}"))
}

#[tokio::test]
async fn decimals_come_back_as_strings_of_every_digit_when_asked() {
    let app = TestApp::spawn().await;
    let dev = app.manager("boss", "boss-tablet").await;
    let (as_string, as_number, cleared) = (id(), id(), id());
    let push = json!({"device_id": dev.device_id, "timestamp": "2026-12-07T10:00:00Z", "changes": {
    "kpi_data": [
        {"id": as_string, "store_id": "s1", "metric": "sales", "value": EXACT, "period": null},
        {"id": as_number, "store_id": "s1", "metric": "sales",
         "value": serde_json::from_str::<Value>(EXACT).unwrap(), "period": null},
        {"id": cleared, "store_id": "s1", "metric": "sales", "value": null, "period": null},
    ]}});
    let (s, answer) = post_with(&dev, "/api/v1/sync/push", &push, "string").await;
    assert_eq!(s, 200, "{answer}");
    for id in [&as_string, &as_number] {
        assert_eq!(
            row(&answer["applied"], "kpi_data", id)["value"],
            json!(EXACT),
            "{answer}"
        );
    }
    assert_eq!(
        row(&answer["applied"], "kpi_data", &cleared)["value"],
        Value::Null
    );
    settle(&app.pool).await;

    let pull = json!({"device_id": dev.device_id, "tables": ["kpi_data"]});
    let (s, page) = post_with(&dev, "/api/v1/sync/pull", &pull, "string").await;
    assert_eq!(s, 200, "{page}");
    for id in [&as_string, &as_number] {
        assert_eq!(
            row(&page["changes"], "kpi_data", id)["value"],
            json!(EXACT),
            "{page}"
        );
    }
    assert_eq!(
        row(&page["changes"], "kpi_data", &cleared)["value"],
        Value::Null
    );

    // Without the header: a JSON number with every digit, as before.
    let (s, page) = post_with(&dev, "/api/v1/sync/pull", &pull, "number").await;
    assert_eq!(s, 200);
    let value = &row(&page["changes"], "kpi_data", &as_string)["value"];
    assert!(value.is_number(), "{value}");
    assert_eq!(value.to_string(), EXACT);
    let (_, page) = dev.post("/api/v1/sync/pull", &pull).await;
    assert!(row(&page["changes"], "kpi_data", &as_number)["value"].is_number());

    // A form the server does not know is refused, not ignored.
    let (s, b) = post_with(&dev, "/api/v1/sync/pull", &pull, "float").await;
    assert_error(s, &b, 400, "VALIDATION_FAILED");
}

#[tokio::test]
async fn a_conflicts_rows_carry_decimal_strings_too() {
    let app = TestApp::spawn().await;
    let a = app.manager("boss", "boss-tablet").await;
    let b = app.manager("boss2", "boss-phone").await;
    let row_id = id();
    let first = json!({"device_id": a.device_id, "timestamp": "2026-12-07T10:00:00Z", "changes": {
        "kpi_data": [{"id": row_id, "store_id": "s1", "metric": "m", "value": "1.5", "period": null,
                      "updated_at": "2026-12-07T10:00:00Z"}]}});
    assert_eq!(
        post_with(&a, "/api/v1/sync/push", &first, "string").await.0,
        200
    );
    for (dev, value) in [(&a, "2.25"), (&b, EXACT)] {
        let edit = json!({"device_id": dev.device_id, "timestamp": "2026-12-07T10:00:00Z", "changes": {
            "kpi_data": [{"id": row_id, "store_id": "s1", "metric": "m", "value": value,
                          "period": null, "version": 1, "updated_at": "2026-12-07T10:00:00Z"}]}});
        let (s, answer) = post_with(dev, "/api/v1/sync/push", &edit, "string").await;
        assert_eq!(s, 200, "{answer}");
        if dev.device_id == b.device_id {
            let c = &answer["conflicts"][0];
            assert_eq!(c["server_data"]["value"], json!("2.25"), "{answer}");
            assert_eq!(c["client_data"]["value"], json!(EXACT), "{answer}");
        }
    }
}

#[tokio::test]
async fn the_document_types_decimals_as_strings_when_asked() {
    let app = TestApp::spawn().await;
    for path in ["/api/openapi.json", "/api/openapi-3.0.json"] {
        let (s, doc) = app.get(&format!("{path}?decimals=string"), None).await;
        assert_eq!(s, 200);
        let value = &doc["components"]["schemas"]["KpiDataRow"]["properties"]["value"];
        // A string, without `format: decimal` (openapi-generator makes that a double).
        assert!(value.to_string().contains("\"string\""), "{path}: {value}");
        assert!(value.get("format").is_none(), "{path}: {value}");
        let (_, plain) = app.get(path, None).await;
        let value = &plain["components"]["schemas"]["KpiDataRow"]["properties"]["value"];
        assert!(value.to_string().contains("\"number\""), "{path}: {value}");
        let (s, b) = app.get(&format!("{path}?decimals=float"), None).await;
        assert_error(s, &b, 400, "VALIDATION_FAILED");
    }
}
