//! The `Principal` extractor: verifies the bearer token (the `Authorization` header,
//! or `?access_token=` for WebSocket upgrades), spends the device's rate budget for the
//! route family before any database work, and checks on every request, in one query
//! (`auth::session::check_access`), that the device is still bound to the token's user
//! at the token's generation, not revoked, and the user not disabled. `PullCaller` is
//! the pull's variant: a session remembered from a recent check may stand in, for an
//! answer from memory only. Admission (`api::shed`) usually verifies the token first
//! and leaves it in the request's extensions (`Verified`), so it is verified once.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Uri};

use crate::auth::session::{self, Session};
use crate::auth::tenant;
use crate::auth::token::Claims;
use crate::auth::{Principal, Role};
use crate::error::AppError;
use crate::guard::limits::Family;
use crate::state::AppState;

/// The one route that takes its token from the query string.
const WS_ROUTE: &str = "/api/v1/sync/ws";

/// The bearer token of a request: the `Authorization` header, or, on the WebSocket
/// route only (browsers cannot set headers on an upgrade), `access_token` in the query
/// string. Elsewhere a token in a URL would end up in logs and proxies' histories.
fn bearer(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    if let Some(h) = headers.get(AUTHORIZATION) {
        let v = h.to_str().ok()?;
        let (scheme, token) = v.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_string());
    }
    if uri.path() != WS_ROUTE {
        return None;
    }
    uri.query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix("access_token=").map(ToString::to_string))
}

/// A token verified, and its device's budget for the route family spent, before the
/// request took a place (`api::shed`); the extractors below take it from the
/// request's extensions instead of verifying again.
#[derive(Clone)]
pub struct Verified(pub Claims);

/// The request's token, verified, with its device's budget for the route family
/// spent (before any database work); `None` when the request carries no token.
pub fn token_of(
    headers: &HeaderMap,
    uri: &Uri,
    family: Family,
    state: &AppState,
) -> Option<Result<Claims, AppError>> {
    let token = bearer(headers, uri)?;
    Some(state.keys.verify(&token).and_then(|claims| {
        let span = tracing::Span::current();
        span.record("device", claims.device_id.as_str());
        span.record("tenant", claims.tenant.as_str());
        if let Some(limits) = &state.limits {
            limits.check_device(family, &claims.tenant, &claims.client_key())?;
        }
        Ok(claims)
    }))
}

/// The verified token of a request, its device's budget for the route family spent.
fn verified(parts: &mut Parts, state: &AppState) -> Result<(Claims, Role), AppError> {
    let claims = match parts.extensions.remove::<Verified>() {
        Some(Verified(claims)) => claims,
        None => {
            let family = parts
                .extensions
                .get::<Family>()
                .copied()
                .unwrap_or(Family::Other);
            token_of(&parts.headers, &parts.uri, family, state).unwrap_or_else(|| {
                Err(AppError::Unauthorized(
                    "Send 'Authorization: Bearer <access_token>'.".into(),
                ))
            })?
        }
    };
    let role = Role::parse(&claims.role)
        .ok_or_else(|| AppError::Unauthorized("The access token is not valid.".into()))?;
    Ok((claims, role))
}

fn principal(claims: Claims, role: Role) -> Principal {
    Principal {
        user_id: claims.sub,
        username: claims.username,
        tenant: claims.tenant,
        role,
        store_id: claims.store_id,
        device_id: claims.device_id,
        generation: claims.generation,
        odoo_user_id: claims.odoo_user_id,
        expires_at: claims.exp,
    }
}

/// A BridgeCore tenant login's token names no device: it serves BridgeCore's routes
/// only (`BridgeCaller`). 403, not 401: BridgeCore's clients answer a 401 by refreshing
/// and trying again, which would loop.
fn device_token(claims: &Claims) -> Result<(), AppError> {
    if claims.sid.is_some() {
        return Err(AppError::Forbidden(
            "This token is from BridgeCore's tenant login: it serves the /api/v1/offline-sync \
             and /api/v2/sync routes. Log in at /api/v1/auth/login with a device id for this route."
                .into(),
        ));
    }
    Ok(())
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let (claims, role) = verified(parts, state)?;
        device_token(&claims)?;
        session::check_access(&state.pool, &state.sync.sessions, (&claims).into()).await?;
        Ok(principal(claims, role))
    }
}

/// The caller of a pull: a [`Principal`] whose session was either checked in PostgreSQL
/// for this request, or is remembered (`auth::remembered`) and then good only for an
/// empty page answered from memory; the pull checks it before reading anything.
pub struct PullCaller {
    pub who: Principal,
    pub session: Session,
}

impl FromRequestParts<AppState> for PullCaller {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let (claims, role) = verified(parts, state)?;
        device_token(&claims)?;
        let session = if state.sync.sessions.trusts((&claims).into()) {
            if state.sync.sessions.claim_refresh((&claims).into()) {
                refresh_in_background(state, &claims);
            }
            Session::Remembered
        } else {
            session::check_access(&state.pool, &state.sync.sessions, (&claims).into()).await?;
            Session::Checked
        };
        Ok(PullCaller {
            who: principal(claims, role),
            session,
        })
    }
}

/// Checks a remembered session again off the request path; success renews it, a
/// refusal leaves it to expire (or to the note of whatever ended it).
fn refresh_in_background(state: &AppState, claims: &Claims) {
    let (pool, sessions, claims) = (
        state.pool.clone(),
        state.sync.sessions.clone(),
        claims.clone(),
    );
    tokio::spawn(async move {
        if let Err(e) = session::check_access(&pool, &sessions, (&claims).into()).await {
            tracing::debug!(device_id = %claims.device_id, error = %e, "a remembered session was refused on refresh");
        }
    });
}

/// The caller of a BridgeCore route: a device's token (checked as `Principal` is), or
/// a BridgeCore tenant login's (`auth::tenant`), bound to a device only once the call
/// names one (`for_device`).
pub enum BridgeCaller {
    Device(Principal),
    User { who: Principal, session: uuid::Uuid },
}

impl BridgeCaller {
    /// The caller as the device `device_id` names (the package's default, `default`,
    /// when a user session's call names none); a device token must be that device's.
    pub async fn for_device(
        self,
        pool: &sqlx::PgPool,
        device_id: Option<&str>,
    ) -> Result<Principal, AppError> {
        match self {
            BridgeCaller::Device(who) => {
                who.check_device(device_id)?;
                Ok(who)
            }
            BridgeCaller::User { who, session } => {
                tenant::bind_device(pool, &who, session, device_id.unwrap_or("default")).await
            }
        }
    }

    /// The caller, whatever its device (`me`, `logout`): a user session is checked.
    pub async fn checked(&self, pool: &sqlx::PgPool) -> Result<&Principal, AppError> {
        match self {
            BridgeCaller::Device(who) => Ok(who),
            BridgeCaller::User { who, session } => {
                tenant::check(pool, *session).await?;
                Ok(who)
            }
        }
    }
}

impl FromRequestParts<AppState> for BridgeCaller {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let (claims, role) = verified(parts, state)?;
        match claims.sid {
            Some(session) => Ok(BridgeCaller::User {
                who: principal(claims, role),
                session,
            }),
            None => {
                session::check_access(&state.pool, &state.sync.sessions, (&claims).into()).await?;
                Ok(BridgeCaller::Device(principal(claims, role)))
            }
        }
    }
}
