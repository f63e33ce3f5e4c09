//! What the handlers' and types' annotations leave out and a fuzzer (scripts/fuzz-api.sh,
//! Schemathesis) or a generated client needs to send what the server accepts and to
//! reach the real logic: the values a plain string field may take (enums), UUID path ids, the statuses every route can answer
//! (a bad body or query is 400, a body over the limit 413, an unknown `{id}` 404, a
//! route a store device may not use 403), answer schemas the annotations only
//! describe in words, and OpenAPI links from the answers that carry ids to the
//! routes that take them (`createOdooConnection` to the `{id}` routes, the conflict
//! inbox and a push's conflicts to `resolveConflict`).

use serde_json::{Map, Value, json};

/// The allowed values of request fields whose type is a plain string (bounds,
/// lengths, patterns and formats are attributes on the request types themselves; the
/// app types are the server's configuration).
fn constraints(app_types: &[&str]) -> Vec<(&'static str, &'static str, Value)> {
    let strategies = json!({"enum": ["server_wins", "client_wins", "merge", "custom"]});
    let app_type = json!({"enum": app_types});
    vec![
        // sync/resolve.rs and bridge/resolve.rs: the strategies of a resolution.
        ("Resolve", "strategy", strategies.clone()),
        ("Resolution", "strategy", strategies),
        // bridge/push: the per-push strategy.
        (
            "OfflinePush",
            "conflict_strategy",
            json!({"enum": ["server_wins", "client_wins", "newest_wins", "merge", "manual", null]}),
        ),
        // bridge/wire.rs: the configured app types.
        ("PullV1", "app_type", app_type.clone()),
        ("PullV2", "app_type", app_type),
    ]
}

/// Adds the constraints, statuses, answer schemas and links. Returns the
/// constraints whose schema or property the document lacks (a unit test keeps it
/// empty, so a renamed field cannot silently lose its checks).
pub fn add(doc: &mut Value, app_types: &[&str]) -> Vec<String> {
    let mut missing = Vec::new();
    if let Some(schemas) = doc["components"]["schemas"].as_object_mut() {
        for (schema, prop, extra) in constraints(app_types) {
            match schemas
                .get_mut(schema)
                .and_then(|s| s.get_mut("properties"))
                .and_then(|p| p.get_mut(prop))
                .and_then(Value::as_object_mut)
            {
                Some(target) => merge(target, extra),
                None => missing.push(format!("{schema}.{prop}")),
            }
        }
        answer_schemas(schemas);
    }
    let Some(paths) = doc["paths"].as_object_mut() else {
        return missing;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            if matches!(method.as_str(), "get" | "post" | "patch" | "delete") {
                operation(path, op);
            }
        }
    }
    links(paths);
    missing
}

/// Merges `extra` into a property schema; an `enum` on a nullable property keeps null.
fn merge(target: &mut Map<String, Value>, extra: Value) {
    let nullable = target
        .get("type")
        .and_then(Value::as_array)
        .is_some_and(|t| t.iter().any(|t| t == "null"));
    let Value::Object(extra) = extra else {
        return;
    };
    for (k, mut v) in extra {
        if k == "enum"
            && nullable
            && let Some(values) = v.as_array_mut()
            && !values.contains(&Value::Null)
        {
            values.push(Value::Null);
        }
        target.insert(k, v);
    }
}

/// One operation: typed `{id}`, query constraints, and the statuses any such route
/// can answer.
fn operation(path: &str, op: &mut Value) {
    let has_body = op.get("requestBody").is_some();
    let mut has_query = false;
    if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
        for p in params.iter_mut() {
            match (p["in"].as_str(), p["name"].as_str()) {
                // Ids are UUIDs; anything else is answered 404 like an unknown one.
                (Some("path"), Some("id")) => {
                    p["schema"] = json!({"type": "string", "format": "uuid"});
                }
                (Some("query"), Some("status")) if path.ends_with("/conflicts") => {
                    p["schema"]["enum"] = json!(["open", "resolved", "all", null]);
                }
                (Some("query"), Some("limit")) if path.ends_with("/conflicts") => {
                    p["schema"]["minimum"] = json!(1);
                    p["schema"]["maximum"] = json!(1000);
                }
                _ => {}
            }
            has_query |= p["in"] == "query";
        }
    }
    let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
        return;
    };
    let mut add = |status: &str, codes: &str| {
        responses
            .entry(status)
            .or_insert_with(|| json!({"description": codes}));
    };
    if has_body {
        add(
            "400",
            "VALIDATION_FAILED (malformed JSON, a wrong type, a missing field)",
        );
        add(
            "408",
            "REQUEST_TIMEOUT: the body arrived slower than NAS_SYNC_BODY_MIN_RATE_BYTES once the header timeout had passed; send it again",
        );
        add(
            "413",
            "PAYLOAD_TOO_LARGE: the body is over NAS_SYNC_BODY_LIMIT_BYTES",
        );
        add(
            "415",
            "UNSUPPORTED_MEDIA_TYPE: a Content-Encoding other than gzip",
        );
    }
    if has_query || path.contains("{id}") {
        add(
            "400",
            "VALIDATION_FAILED (a query or path value that cannot be read)",
        );
    }
    if path.contains("{id}") {
        add("404", "NOT_FOUND");
    }
    if path.starts_with("/api/v1/odoo/") {
        add("403", "FORBIDDEN (not a manager)");
    }
}

/// Answer schemas the handlers give only in words.
fn answer_schemas(schemas: &mut Map<String, Value>) {
    schemas.insert(
        "ConnectionList".into(),
        json!({
            "type": "object",
            "description": "The tenant's Odoo connections (never their keys).",
            "required": ["connections"],
            "properties": {"connections": {"type": "array", "items": {"$ref": "#/components/schemas/ConnectionView"}}}
        }),
    );
    schemas.insert(
        "RetryAnswer".into(),
        json!({
            "type": "object",
            "required": ["batches_requeued"],
            "properties": {"batches_requeued": {"type": "integer", "minimum": 0}}
        }),
    );
}

/// Links from answers that carry ids to the routes that take them.
fn links(paths: &mut Map<String, Value>) {
    let by_id = [
        "getOdooConnection",
        "updateOdooConnection",
        "odooConnectionStatus",
        "retryOdooConnection",
        "deleteOdooConnection",
    ];
    let odoo = |pointer: &str| -> Value {
        by_id
            .iter()
            .map(|op| {
                (
                    (*op).to_string(),
                    json!({"operationId": op, "parameters": {"id": format!("$response.body#{pointer}")}}),
                )
            })
            .collect::<Map<String, Value>>()
            .into()
    };
    let resolve = |pointer: &str| -> Value {
        json!({"resolveConflict": {"operationId": "resolveConflict",
                                   "parameters": {"id": format!("$response.body#{pointer}")}}})
    };
    let mut set = |path: &str, method: &str, status: &str, links: Value, schema: Option<&str>| {
        let Some(r) = paths
            .get_mut(path)
            .and_then(|i| i.get_mut(method))
            .and_then(|o| o.get_mut("responses"))
            .and_then(|r| r.get_mut(status))
            .and_then(Value::as_object_mut)
        else {
            return;
        };
        if !links.is_null() {
            r.insert("links".into(), links);
        }
        if let Some(schema) = schema {
            r.insert(
                "content".into(),
                json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}),
            );
        }
    };
    set("/api/v1/odoo/connections", "post", "201", odoo("/id"), None);
    set(
        "/api/v1/odoo/connections",
        "get",
        "200",
        odoo("/connections/0/id"),
        Some("ConnectionList"),
    );
    set(
        "/api/v1/odoo/connections/{id}/retry",
        "post",
        "200",
        Value::Null,
        Some("RetryAnswer"),
    );
    set(
        "/api/v1/sync/conflicts",
        "get",
        "200",
        resolve("/0/id"),
        None,
    );
    set(
        "/api/v1/sync/push",
        "post",
        "200",
        resolve("/conflicts/0/conflict_id"),
        None,
    );
    // A second resolution of the same conflict: 409 CONFLICT_ALREADY_RESOLVED.
    set(
        "/api/v1/sync/conflicts/{id}/resolve",
        "post",
        "200",
        resolve("/id"),
        None,
    );
}
