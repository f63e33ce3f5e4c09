//! The OpenAPI document: generated from the handlers' annotations (`ApiDoc` gives the
//! title and security scheme, `api::routes` the operations, handed to the handlers
//! below as `Annotated`), then
//! completed with what annotations cannot know: a typed row schema per synced table
//! (`rows`, from the registry at each request), the checks the server makes on
//! request values, the statuses every route can answer and links between routes
//! (`requests`, what a fuzzer needs to reach the real logic), the error schema on
//! every 4xx and 5xx answer (`errors`), and a 3.0 rendering for generators that need
//! it (`v30`).

mod errors;
mod requests;
mod rows;
mod v30;

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use serde_json::Value;

use super::decimals::Decimals;
use super::extract;
use crate::bridge::BridgeCtx;
use crate::error::AppResult;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "nas-sync", description = "Delta-sync server for offline-first apps (docs/contract.md)."),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The part of the document the annotations give (`api::routes::annotated`), as the
/// router hands it to the document's handlers.
#[derive(Clone)]
pub struct Annotated(pub Arc<utoipa::openapi::OpenApi>);

/// The document's query: `?decimals=string` types numeric columns as decimal strings
/// (for clients that send `Nas-Sync-Decimals: string`, `api::decimals`).
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct DocQuery {
    /// `string` or `number` (the default).
    pub decimals: Option<String>,
}

impl DocQuery {
    fn form(&self) -> AppResult<Decimals> {
        self.decimals
            .as_deref()
            .map_or(Ok(Decimals::Number), Decimals::parse)
    }
}

/// The completed 3.1 document for the current registry and app types.
pub fn document(
    annotated: &utoipa::openapi::OpenApi,
    ctx: &BridgeCtx,
    decimals: Decimals,
) -> Value {
    let mut doc = serde_json::to_value(annotated).unwrap_or_default();
    // utoipa fills an empty license from Cargo.toml; an empty one is invalid to some
    // generators.
    if let Some(info) = doc["info"].as_object_mut() {
        info.remove("license");
        if decimals == Decimals::String {
            info.insert(
                "description".into(),
                serde_json::json!(
                    "Delta-sync server for offline-first apps (docs/contract.md). \
                    Numeric columns are decimal strings: send `Nas-Sync-Decimals: string` \
                    with every call."
                ),
            );
        }
    }
    rows::add(&mut doc, &ctx.sync.registry.current(), decimals);
    let missing = requests::add(&mut doc, &ctx.app_types.names());
    if !missing.is_empty() {
        tracing::warn!(
            ?missing,
            "OpenAPI constraints name fields the document lacks"
        );
    }
    errors::add(&mut doc);
    doc
}

/// This document (OpenAPI 3.1), with a schema per synced table.
#[utoipa::path(get, path = "/api/openapi.json", operation_id = "openapi", tag = "ops", params(DocQuery),
    responses((status = 200, description = "OpenAPI 3.1 JSON"), (status = 400, description = "VALIDATION_FAILED")))]
pub async fn openapi_json(
    State(ctx): State<BridgeCtx>,
    Extension(Annotated(doc)): Extension<Annotated>,
    extract::Query(q): extract::Query<DocQuery>,
) -> AppResult<axum::Json<Value>> {
    Ok(axum::Json(document(&doc, &ctx, q.form()?)))
}

/// The same document as OpenAPI 3.0, for generators whose 3.1 support is partial.
#[utoipa::path(get, path = "/api/openapi-3.0.json", operation_id = "openapi30", tag = "ops", params(DocQuery),
    responses((status = 200, description = "OpenAPI 3.0.3 JSON"), (status = 400, description = "VALIDATION_FAILED")))]
pub async fn openapi_30_json(
    State(ctx): State<BridgeCtx>,
    Extension(Annotated(doc)): Extension<Annotated>,
    extract::Query(q): extract::Query<DocQuery>,
) -> AppResult<axum::Json<Value>> {
    Ok(axum::Json(v30::convert(document(&doc, &ctx, q.form()?))))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every constraint of `requests` lands on a field the document has.
    #[test]
    fn request_constraints_name_existing_fields() {
        let mut doc = serde_json::to_value(crate::api::routes::annotated()).unwrap();
        let missing = requests::add(&mut doc, &["store_app"]);
        assert!(missing.is_empty(), "{missing:?}");
    }
}
