//! Client addresses behind a reverse proxy: the middleware that finds each request's
//! client with the trusted proxies (`guard::proxies`) and records it ([`ClientAddr`])
//! for the limits and the request's log span.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::state::AppState;

/// The client address of a request, once [`client_addr`] has run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// Headers believed from trusted proxies only: the host the original request named
/// (the console's `Origin` check reads it). From anyone else they are dropped before
/// any handler runs. (`X-Forwarded-Proto: https` is kept from anyone: it only makes
/// the console's cookie `Secure`, which a liar only denies itself.)
const PROXY_ONLY: [&str; 1] = ["x-forwarded-host"];

/// Finds the request's client address and records it for the limits and the log;
/// drops `X-Forwarded-Host` unless the peer is a trusted proxy.
pub async fn client_addr(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip());
    if let Some(peer) = peer {
        let client = state.config.trusted_proxies.client_of(peer, req.headers());
        req.extensions_mut().insert(ClientAddr(client));
    }
    if !peer.is_some_and(|p| state.config.trusted_proxies.trusts(p)) {
        for name in PROXY_ONLY {
            req.headers_mut().remove(name);
        }
    }
    next.run(req).await
}
