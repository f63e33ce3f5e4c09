//! The OpenAPI 3 document, generated from the handlers' annotations.

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
        super::bridge::push_v1, super::bridge::resolve_v1, super::bridge::pull_v1, super::bridge::state_v1, super::bridge::reset_v1,
        super::bridge::pull_v2, super::bridge::state_v2, super::bridge::reset_v2, super::bridge::health_v2,
        super::odoo::create, super::odoo::list, super::odoo::show, super::odoo::update, super::odoo::status, super::odoo::retry,
        super::odoo::delete,
        openapi_json,
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

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "ops", responses((status = 200, description = "OpenAPI 3 JSON")))]
pub async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}
