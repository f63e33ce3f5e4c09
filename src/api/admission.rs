//! Admission: a request earns its place in its route family (`guard::shed`) in this
//! order, so that no single client can hold the places others need:
//! 1. its token, when it carries one, is verified (no database) and its device's
//!    budget spent; the families that need a token refuse a request without a valid
//!    one here, before it holds anything;
//! 2. its client (the device of a verified token, else the client address, an IPv6
//!    address as its /64) may hold at most its share of the family's places, beyond
//!    which it gets 429 `RATE_LIMITED`;
//! 3. its body must arrive at a minimum rate (`guard::arrival`);
//! 4. only then does it take a place, waiting for a running slot if need be.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::principal::{Verified, token_of};
use crate::error::AppError;
use crate::guard::limits::{Family, limit_key};
use crate::guard::shed::{Client, RETRY_AFTER_SECS};
use crate::state::AppState;

fn shed_metric(family: Family, reason: &'static str) {
    metrics::counter!("sync_shed_total", "family" => format!("{family:?}").to_lowercase(),
        "reason" => reason)
    .increment(1);
}

/// Admits the request in the order the module doc gives, then runs it.
pub async fn admit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let family = req
        .extensions()
        .get::<Family>()
        .copied()
        .unwrap_or(Family::Other);
    let (mut parts, body) = req.into_parts();
    let client = match token_of(&parts.headers, &parts.uri, family, &state) {
        Some(Ok(claims)) => {
            let client = Client::Device(claims.tenant.clone(), claims.client_key());
            parts.extensions.insert(Verified(claims));
            client
        }
        Some(Err(e)) if family.needs_token() => return e.into_response(),
        None if family.needs_token() => {
            return AppError::Unauthorized("Send 'Authorization: Bearer <access_token>'.".into())
                .into_response();
        }
        // Routes open without a token (login, refresh) and those that answer a bad
        // one themselves: counted by address.
        _ => Client::Address(limit_key(super::middleware::client_ip(&parts.extensions))),
    };
    let gate = state.shed.gate(family);
    let _share = match gate.map(|g| g.share(client)) {
        Some(None) => {
            shed_metric(family, "share");
            return AppError::RateLimited {
                retry_after_secs: RETRY_AFTER_SECS,
            }
            .into_response();
        }
        Some(Some(share)) => Some(share),
        None => None,
    };
    let arrived = match state.shed.arrival().read(body).await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let (bytes, _buffered) = arrived.into_parts();
    let req = Request::from_parts(parts, Body::from(bytes));
    let Some(gate) = gate else {
        return next.run(req).await;
    };
    let Some(_admitted) = gate.admit() else {
        shed_metric(family, "full");
        return AppError::Overloaded {
            retry_after_secs: RETRY_AFTER_SECS,
        }
        .into_response();
    };
    let _running = gate.run().await;
    next.run(req).await
}
