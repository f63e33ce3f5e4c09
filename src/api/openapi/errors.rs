//! Errors as a schema: the contract's error shape (`error`, `code`, `message`,
//! `details`) on every 4xx and 5xx response, with the codes each route can answer,
//! plus the answers any route may give (401 for routes that need a token, 429 where
//! limits apply, 500, 503). Also gives every response the `description` OpenAPI
//! requires.

use serde_json::{Map, Value, json};

/// The shared error schema and the responses every operation can meet.
pub fn add(doc: &mut Value) {
    if let Some(schemas) = doc["components"]["schemas"].as_object_mut() {
        schemas.insert(
            "ApiError".into(),
            json!({
                "type": "object",
                "description": "Every error, whatever the route (docs/contract.md §2).",
                "required": ["error", "code", "message", "details"],
                "properties": {
                    "error": {"type": "string", "description": "The error's name, e.g. `ValidationFailed`."},
                    "code": {"type": "string", "description": "The stable code, e.g. `VALIDATION_FAILED`."},
                    "message": {"type": "string", "description": "A sentence for people."},
                    "details": {"type": "object", "additionalProperties": true,
                                "description": "More about it, e.g. `field` for VALIDATION_FAILED, `retry_after` for RATE_LIMITED."}
                }
            }),
        );
    }
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            if !matches!(method.as_str(), "get" | "post" | "put" | "patch" | "delete") {
                continue;
            }
            let secured = op.get("security").is_some();
            let limited = path.starts_with("/api/v");
            let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
                continue;
            };
            complete(responses, secured, limited);
        }
    }
}

/// Adds the shared answers, the error schema and the descriptions to one operation.
fn complete(responses: &mut Map<String, Value>, secured: bool, limited: bool) {
    let mut shared: Vec<(&str, &str)> = Vec::new();
    if secured {
        shared.push(("401", "UNAUTHORIZED, TOKEN_EXPIRED or DEVICE_REVOKED"));
    }
    if limited {
        shared.push(("429", "RATE_LIMITED (with Retry-After)"));
    }
    shared.push(("500", "INTERNAL"));
    shared.push((
        "503",
        "UNAVAILABLE: the database is unreachable or busy, or the request took too long",
    ));
    for (status, codes) in shared {
        responses
            .entry(status)
            .or_insert_with(|| json!({"description": codes}));
    }
    for (status, response) in responses.iter_mut() {
        let Some(r) = response.as_object_mut() else {
            continue;
        };
        let description = r
            .get("description")
            .and_then(Value::as_str)
            .filter(|d| !d.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| default_description(status).to_string());
        let is_error = status.starts_with('4') || status.starts_with('5');
        if is_error {
            r.insert(
                "description".into(),
                json!(format!("Error codes: {description}")),
            );
            r.insert(
                "content".into(),
                json!({"application/json": {"schema": {"$ref": "#/components/schemas/ApiError"}}}),
            );
        } else {
            r.insert("description".into(), json!(description));
        }
    }
}

fn default_description(status: &str) -> &'static str {
    match status {
        "200" => "OK",
        "201" => "Created",
        "204" => "No content",
        "101" => "Switching protocols (WebSocket)",
        _ => "The answer",
    }
}
