//! Every route of the API, declared once. A route's method and path come from its
//! handler's `#[utoipa::path]` annotation, which also puts it in the OpenAPI
//! document; the family it is declared under gives its rate limits and its places
//! under load shedding (`guard`). Adding a route is one line here and the annotation
//! on its handler: the router, the limits and the document follow.
//!
//! `declare` takes the wrapping each family gets, so the same declaration serves the
//! server (`app::router`: admission and limits around each family) and the document
//! (`openapi`: no wrapping).

use std::sync::LazyLock;

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{admin, audit, auth, bridge, conflicts, health, odoo, openapi, sync, tenant, ws};
use crate::guard::limits::Family;
use crate::state::AppState;

/// Routes of one family, or the open ones.
pub type Routes = OpenApiRouter<AppState>;

/// The API: the guarded families, each passed through `guard`, and the open routes
/// (probes and the document), which are not.
pub fn declare(guard: impl Fn(Family, Routes) -> Routes, metrics: bool) -> Routes {
    let auth = Routes::new()
        .routes(routes!(auth::login))
        .routes(routes!(auth::refresh))
        .routes(routes!(auth::logout))
        .routes(routes!(tenant::login))
        .routes(routes!(tenant::refresh))
        .routes(routes!(tenant::logout));
    let pull = Routes::new()
        .routes(routes!(sync::pull))
        .routes(routes!(bridge::pull_v1))
        .routes(routes!(bridge::pull_v2))
        // They read a pull's page (without moving the position).
        .routes(routes!(bridge::check_updates))
        .routes(routes!(bridge::webhook_events));
    let push = Routes::new()
        .routes(routes!(sync::push))
        .routes(routes!(bridge::push_v1));
    let state = Routes::new()
        .routes(routes!(sync::status))
        .routes(routes!(sync::state))
        .routes(routes!(bridge::state_v1))
        .routes(routes!(bridge::state_v2));
    let reset = Routes::new()
        .routes(routes!(sync::reset))
        .routes(routes!(bridge::reset_v1))
        .routes(routes!(bridge::reset_v2));
    let ws = Routes::new().routes(routes!(ws::ws));
    let other = Routes::new()
        .routes(routes!(conflicts::list))
        .routes(routes!(conflicts::resolve))
        .routes(routes!(bridge::resolve_v1))
        .routes(routes!(bridge::health_v1))
        .routes(routes!(bridge::health_v2))
        .routes(routes!(tenant::me, tenant::me_post))
        .routes(routes!(odoo::create, odoo::list))
        .routes(routes!(odoo::show, odoo::update, odoo::delete))
        .routes(routes!(odoo::status))
        .routes(routes!(odoo::retry))
        .routes(routes!(admin::list_users, admin::add_user))
        .routes(routes!(admin::set_identity))
        .routes(routes!(admin::disable_user))
        .routes(routes!(admin::enable_user))
        .routes(routes!(admin::set_password))
        .routes(routes!(admin::list_devices))
        .routes(routes!(admin::revoke_device))
        .routes(routes!(admin::release_device))
        .routes(routes!(audit::list))
        .routes(routes!(audit::export));
    let mut open = Routes::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(health::health))
        .routes(routes!(health::ready))
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(openapi::openapi_30_json));
    // With a metrics listener of its own, /metrics leaves the API port (the document
    // still describes it).
    if metrics {
        open = open.routes(routes!(health::metrics));
    } else {
        let (_, with_metrics) = Routes::new()
            .routes(routes!(health::metrics))
            .split_for_parts();
        open.get_openapi_mut().merge(with_metrics);
    }
    [
        (Family::Auth, auth),
        (Family::Pull, pull),
        (Family::Push, push),
        (Family::State, state),
        (Family::Reset, reset),
        (Family::Ws, ws),
        (Family::Other, other),
    ]
    .into_iter()
    .fold(open, |all, (family, routes)| {
        all.merge(guard(family, routes))
    })
}

/// The document's part the annotations give, from the same declaration.
pub fn annotated() -> utoipa::openapi::OpenApi {
    static DOC: LazyLock<utoipa::openapi::OpenApi> =
        LazyLock::new(|| declare(|_, routes| routes, true).into_openapi());
    DOC.clone()
}
