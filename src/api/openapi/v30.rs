//! The same document in OpenAPI 3.0 (`/api/openapi-3.0.json`), for generators whose
//! 3.1 support is partial: `type: [T, "null"]` becomes `nullable`, `oneOf` with a null
//! branch becomes a nullable reference, and 3.1-only keywords go.

use serde_json::{Map, Value, json};

/// Converts a 3.1 document to 3.0.3.
pub fn convert(mut doc: Value) -> Value {
    doc["openapi"] = json!("3.0.3");
    if let Some(o) = doc.as_object_mut() {
        o.remove("jsonSchemaDialect");
        o.remove("webhooks");
    }
    if let Some(license) = doc["info"]
        .get_mut("license")
        .and_then(Value::as_object_mut)
    {
        license.remove("identifier");
    }
    walk(&mut doc);
    doc
}

/// Rewrites every schema-like object below `v`.
fn walk(v: &mut Value) {
    match v {
        Value::Object(o) => {
            schema(o);
            for (_, child) in o.iter_mut() {
                walk(child);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(walk),
        _ => {}
    }
}

/// One object: 3.1 spellings to 3.0.
fn schema(o: &mut Map<String, Value>) {
    // type: ["string", "null"] → type: string, nullable: true
    if let Some(Value::Array(types)) = o.get("type").cloned() {
        let rest: Vec<Value> = types.into_iter().filter(|t| t != "null").collect();
        let nullable = rest.len() < o["type"].as_array().map_or(0, Vec::len);
        match rest.as_slice() {
            [one] => {
                o.insert("type".into(), one.clone());
            }
            _ => {
                o.remove("type");
            }
        }
        if nullable {
            o.insert("nullable".into(), json!(true));
        }
    }
    // oneOf: [{type: null}, X] → X (inlined as allOf) + nullable
    for key in ["oneOf", "anyOf"] {
        if let Some(Value::Array(branches)) = o.get(key).cloned() {
            let is_null = |b: &Value| b.get("type") == Some(&json!("null"));
            if branches.iter().any(is_null) {
                let rest: Vec<Value> = branches.into_iter().filter(|b| !is_null(b)).collect();
                o.remove(key);
                o.insert("nullable".into(), json!(true));
                match rest.len() {
                    0 => {}
                    1 => {
                        o.insert("allOf".into(), json!(rest));
                    }
                    _ => {
                        o.insert(key.into(), json!(rest));
                    }
                }
            }
        }
    }
    // A $ref with siblings is not allowed in 3.0: wrap it.
    if o.len() > 1
        && let Some(r) = o.remove("$ref")
    {
        o.insert("allOf".into(), json!([{"$ref": r}]));
    }
    if let Some(c) = o.remove("const") {
        o.insert("enum".into(), json!([c]));
    }
    if let Some(Value::Array(examples)) = o.get("examples").cloned()
        && o.get("example").is_none()
        && !o.contains_key("value")
    {
        // Schema `examples` (3.1) become `example`; media-type `examples` maps stay.
        o.remove("examples");
        if let Some(first) = examples.into_iter().next() {
            o.insert("example".into(), first);
        }
    }
    for gone in [
        "propertyNames",
        "contentMediaType",
        "contentEncoding",
        "$schema",
        "unevaluatedProperties",
    ] {
        o.remove(gone);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nullable_types_and_refs_become_3_0() {
        let doc = json!({
            "openapi": "3.1.0",
            "info": {"title": "t", "version": "1", "license": {"name": "MIT", "identifier": "MIT"}},
            "components": {"schemas": {
                "A": {"type": ["string", "null"]},
                "B": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/A"}]},
                "C": {"$ref": "#/components/schemas/A", "description": "x"},
                "D": {"type": "object", "propertyNames": {"type": "string"}, "examples": [1, 2]}
            }}
        });
        let out = convert(doc);
        assert_eq!(out["openapi"], "3.0.3");
        assert!(out["info"]["license"].get("identifier").is_none());
        let s = &out["components"]["schemas"];
        assert_eq!(s["A"], json!({"type": "string", "nullable": true}));
        assert_eq!(
            s["B"],
            json!({"nullable": true, "allOf": [{"$ref": "#/components/schemas/A"}]})
        );
        assert_eq!(
            s["C"],
            json!({"description": "x", "allOf": [{"$ref": "#/components/schemas/A"}]})
        );
        assert_eq!(s["D"], json!({"type": "object", "example": 1}));
    }
}
