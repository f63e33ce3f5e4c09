//! The OpenAPI document: generated from the handlers' annotations (`ApiDoc`), then
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

use axum::extract::State;
use serde_json::Value;

use crate::bridge::BridgeCtx;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "nas-sync", description = "Delta-sync server for offline-first apps (docs/contract.md)."),
    paths(
        super::health::health, super::health::ready, super::health::metrics,
        super::auth::login, super::auth::refresh, super::auth::logout,
        super::sync::pull, super::sync::push, super::sync::status, super::sync::state, super::sync::reset, super::ws::ws,
        super::conflicts::list, super::conflicts::resolve,
        super::bridge::push_v1, super::bridge::resolve_v1, super::bridge::pull_v1, super::bridge::state_v1, super::bridge::reset_v1, super::bridge::health_v1,
        super::bridge::pull_v2, super::bridge::state_v2, super::bridge::reset_v2, super::bridge::health_v2,
        super::odoo::create, super::odoo::list, super::odoo::show, super::odoo::update, super::odoo::status, super::odoo::retry,
        super::odoo::delete,
        super::admin::list_users, super::admin::add_user, super::admin::disable_user, super::admin::enable_user,
        super::admin::set_password, super::admin::list_devices, super::admin::revoke_device, super::admin::release_device,
        openapi_json, openapi_30_json,
    ),
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

/// The completed 3.1 document for the current registry and app types.
pub fn document(ctx: &BridgeCtx) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    // utoipa fills an empty license from Cargo.toml; an empty one is invalid to some
    // generators.
    if let Some(info) = doc["info"].as_object_mut() {
        info.remove("license");
    }
    rows::add(&mut doc, &ctx.sync.registry.current());
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
#[utoipa::path(get, path = "/api/openapi.json", operation_id = "openapi", tag = "ops", responses((status = 200, description = "OpenAPI 3.1 JSON")))]
pub async fn openapi_json(State(ctx): State<BridgeCtx>) -> axum::Json<Value> {
    axum::Json(document(&ctx))
}

/// The same document as OpenAPI 3.0, for generators whose 3.1 support is partial.
#[utoipa::path(get, path = "/api/openapi-3.0.json", operation_id = "openapi30", tag = "ops", responses((status = 200, description = "OpenAPI 3.0.3 JSON")))]
pub async fn openapi_30_json(State(ctx): State<BridgeCtx>) -> axum::Json<Value> {
    axum::Json(v30::convert(document(&ctx)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every constraint of `requests` lands on a field the document has.
    #[test]
    fn request_constraints_name_existing_fields() {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let missing = requests::add(&mut doc, &["store_app"]);
        assert!(missing.is_empty(), "{missing:?}");
    }
}
