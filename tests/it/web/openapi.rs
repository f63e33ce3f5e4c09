//! The OpenAPI document as generators read it (docs/clients.md): a schema per synced
//! table from the registry (including tables added at run time), `changes` typed by
//! table, the error shape on every 4xx and 5xx answer, unique operation ids, and the
//! 3.0 rendering. scripts/clients.sh validates both documents and generates clients.
use crate::common::*;

use std::collections::HashSet;

use serde_json::{Value, json};

async fn document(app: &TestApp, path: &str) -> Value {
    let (s, doc) = app.get(path, None).await;
    assert_eq!(s.as_u16(), 200, "{doc}");
    doc
}

#[tokio::test]
async fn rows_are_typed_by_table_and_errors_have_the_contract_shape() {
    let app = TestApp::spawn().await;
    let doc = document(&app, "/api/openapi.json").await;
    assert_eq!(doc["openapi"], "3.1.0");
    let schemas = &doc["components"]["schemas"];
    let kpi = &schemas["KpiDataRow"];
    // `id` and the nullable columns: generated clients send those even when null, so
    // a field can be cleared.
    let mut required: Vec<&str> = kpi["required"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    required.sort_unstable();
    assert_eq!(required, ["id", "period", "value"], "{kpi}");
    assert_eq!(
        kpi["properties"]["value"]["type"],
        json!(["number", "null"])
    );
    assert_eq!(kpi["properties"]["metric"]["type"], "string");
    assert_eq!(kpi["properties"]["version"]["format"], "int64");
    assert!(
        kpi["properties"].get("tenant_id").is_none(),
        "tenant_id is never sent"
    );
    for (table, schema) in [
        ("forms", "FormRow"),
        ("submissions", "SubmissionRow"),
        ("kpi_data", "KpiDataRow"),
    ] {
        assert_eq!(
            schemas["SyncChanges"]["properties"][table]["items"]["$ref"],
            json!(format!("#/components/schemas/{schema}")),
        );
    }
    for (schema, field) in [
        ("PullResponse", "changes"),
        ("PushRequest", "changes"),
        ("PushResponse", "applied"),
    ] {
        assert_eq!(
            schemas[schema]["properties"][field]["$ref"], "#/components/schemas/SyncChanges",
            "{schema}.{field}"
        );
    }
    assert!(schemas["WsMessage"]["oneOf"].is_array());
    assert_eq!(
        schemas["ApiError"]["required"],
        json!(["error", "code", "message", "details"])
    );
    // No schema takes a name every Dart or Flutter file already sees: a generated
    // class would make an ambiguous import (`Form` with material.dart) or hide
    // dart:core's (`Error`).
    let clashes = [
        "Error",
        "Exception",
        "Type",
        "Object",
        "List",
        "Map",
        "Set",
        "String",
        "Duration",
        "DateTime",
        "Uri",
        "Function",
        "Record",
        "Enum",
        "Pattern",
        "Match",
        "Stream",
        "Future",
        "Form",
        "Table",
        "TableRow",
        "Row",
        "Column",
        "Text",
        "Icon",
        "Image",
        "State",
        "Widget",
        "Key",
        "Color",
        "Size",
        "Action",
        "Page",
        "Route",
        "Title",
        "Card",
        "Chip",
        "Tab",
        "Banner",
        "Checkbox",
        "Switch",
        "Radio",
        "Slider",
        "Tooltip",
        "Notification",
        "Response",
        "Headers",
        "Options",
        "Date",
        "JsonObject",
    ];
    for name in schemas.as_object().unwrap().keys() {
        assert!(
            !clashes.contains(&name.as_str()),
            "schema {name} clashes in Dart or Flutter"
        );
    }

    // Every answer has a description; every error answer the error schema; ids unique.
    let mut ids = HashSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(ids.insert(id.to_string()), "operationId {id} twice");
            for (status, r) in op["responses"].as_object().unwrap() {
                assert!(
                    r["description"].as_str().is_some_and(|d| !d.is_empty()),
                    "{method} {path} {status}"
                );
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(
                        r["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ApiError",
                        "{method} {path} {status}"
                    );
                }
            }
            if op.get("security").is_some() {
                assert!(
                    op["responses"]["401"].is_object(),
                    "{method} {path} lacks 401"
                );
            }
        }
    }
    let pull = &doc["paths"]["/api/v1/sync/pull"]["post"]["responses"];
    assert!(
        pull["400"]["description"]
            .as_str()
            .unwrap()
            .contains("UNKNOWN_TABLE")
    );

    // The 3.0 rendering: no 3.1 type arrays left.
    let old = document(&app, "/api/openapi-3.0.json").await;
    assert_eq!(old["openapi"], "3.0.3");
    let value = &old["components"]["schemas"]["KpiDataRow"]["properties"]["value"];
    assert_eq!(value, &json!({"type": "number", "nullable": true}));
    assert!(
        !old.to_string().contains(r#""type":["#),
        "a 3.1 type array is left"
    );
}

#[tokio::test]
async fn a_table_added_at_run_time_appears_in_the_document() {
    let app = TestApp::spawn().await;
    sqlx::query(
        "CREATE TABLE delivery_notes (
             id uuid PRIMARY KEY, tenant_id text NOT NULL, version bigint NOT NULL DEFAULT 1,
             updated_at timestamptz NOT NULL DEFAULT now(), deleted boolean NOT NULL DEFAULT false,
             note text NOT NULL, pieces int)",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query("SELECT sync_register('delivery_notes', 'latest_wins', '{manager}', '{manager}')")
        .execute(&app.pool)
        .await
        .unwrap();
    app.state.sync.registry.reload(&app.pool).await.unwrap();
    let doc = document(&app, "/api/openapi.json").await;
    let note = &doc["components"]["schemas"]["DeliveryNoteRow"];
    assert_eq!(note["properties"]["note"]["type"], "string", "{note}");
    assert_eq!(
        note["properties"]["pieces"]["type"],
        json!(["integer", "null"])
    );
    assert!(
        doc["components"]["schemas"]["SyncChanges"]["properties"]["delivery_notes"].is_object()
    );
}

/// What a fuzzer (scripts/fuzz-api.sh) needs to reach the logic: links from the
/// answers carrying ids to the routes taking them, ids typed as UUIDs, the values the
/// server accepts as enums and patterns, and the statuses bad input gets.
#[tokio::test]
async fn the_document_links_ids_and_says_what_the_server_accepts() {
    let app = TestApp::spawn().await;
    let doc = document(&app, "/api/openapi.json").await;
    let mut ids = HashSet::new();
    for item in doc["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            ids.insert(op["operationId"].as_str().unwrap().to_string());
        }
    }
    let links = |path: &str, method: &str, status: &str| {
        doc["paths"][path][method]["responses"][status]["links"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} {status} has no links"))
            .clone()
    };
    let created = links("/api/v1/odoo/connections", "post", "201");
    for op in [
        "getOdooConnection",
        "updateOdooConnection",
        "deleteOdooConnection",
        "odooConnectionStatus",
        "retryOdooConnection",
    ] {
        assert_eq!(created[op]["operationId"], op);
        assert_eq!(created[op]["parameters"]["id"], "$response.body#/id");
    }
    let listed = links("/api/v1/sync/conflicts", "get", "200");
    assert_eq!(
        listed["resolveConflict"]["parameters"]["id"],
        "$response.body#/0/id"
    );
    let pushed = links("/api/v1/sync/push", "post", "200");
    assert_eq!(
        pushed["resolveConflict"]["parameters"]["id"],
        "$response.body#/conflicts/0/conflict_id"
    );
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (status, r) in op["responses"].as_object().unwrap() {
                for link in r["links"].as_object().into_iter().flat_map(|l| l.values()) {
                    let target = link["operationId"].as_str().unwrap();
                    assert!(
                        ids.contains(target),
                        "{method} {path} {status} links to {target}"
                    );
                }
            }
            if op.get("requestBody").is_some() {
                for status in ["400", "413", "415"] {
                    assert!(
                        op["responses"][status].is_object(),
                        "{method} {path} lacks {status}"
                    );
                }
            }
            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["in"] == "path" && p["name"] == "id" {
                    assert_eq!(p["schema"]["format"], "uuid", "{method} {path}");
                    assert!(
                        op["responses"]["404"].is_object(),
                        "{method} {path} lacks 404"
                    );
                }
            }
        }
    }
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["Resolve"]["properties"]["strategy"]["enum"],
        json!(["server_wins", "client_wins", "merge", "custom"])
    );
    assert_eq!(schemas["Resolve"]["additionalProperties"], json!(false));
    assert_eq!(
        schemas["CreateConnection"]["additionalProperties"],
        json!(false)
    );
    assert_eq!(
        schemas["CreateConnection"]["properties"]["batch_size"]["maximum"],
        json!(5000)
    );
    assert!(
        schemas["PullV1"]["properties"]["app_type"]["enum"]
            .as_array()
            .unwrap()
            .contains(&json!("store_app"))
    );
    assert_eq!(
        schemas["LoginRequest"]["properties"]["device_id"]["pattern"],
        "^[A-Za-z0-9._:-]{3,128}$"
    );
    assert_eq!(
        schemas["ConnectionList"]["properties"]["connections"]["items"]["$ref"],
        "#/components/schemas/ConnectionView"
    );
}
