//! `GET /api/v1/sync/ws`: the WebSocket a device keeps open to hear about changes
//! (docs/contract.md §6). Authenticated like every route (header, or
//! `?access_token=` for clients that cannot set headers), before the upgrade.
//!
//! The socket task coalesces: a change after a quiet spell is sent at once; changes
//! arriving within `COALESCE` of the last message are gathered into the next one
//! (`{"type":"changes","tables":[...]}`), so a burst of commits is a message or two. Rows to send whole come as
//! `{"type":"event","table","record"}`. A ping goes out every `PING`; a socket
//! silent for three pings, or whose writes stall for `SEND_TIMEOUT`, is closed.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;

use crate::auth::Principal;
use crate::error::AppError;
use crate::realtime::hub::Outgoing;
use crate::state::AppState;

/// Least time between two `changes` messages on one socket.
const COALESCE: Duration = Duration::from_millis(100);
/// Ping period (NAT mappings often expire after 30 s of silence).
const PING: Duration = Duration::from_secs(25);
/// A write that takes longer than this means the client stopped reading.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Most WebSockets one device may hold open at once (docs/contract.md §9).
pub const MAX_SOCKETS_PER_DEVICE: usize = 8;

/// Upgrades to a WebSocket that receives pokes.
#[utoipa::path(get, path = "/api/v1/sync/ws", operation_id = "webSocket", tag = "sync",
    responses((status = 101, description = "WebSocket: {\"type\":\"changes\",\"tables\":[...]} and {\"type\":\"event\",\"table\",\"record\"}"),
              (status = 401, description = "UNAUTHORIZED, TOKEN_EXPIRED, DEVICE_REVOKED"),
              (status = 429, description = "RATE_LIMITED: the device already holds 8 WebSockets")),
    security(("bearer" = [])))]
pub async fn ws(
    State(state): State<AppState>,
    who: Principal,
    upgrade: WebSocketUpgrade,
) -> Response {
    // A device has a few sockets at most (an app, a background isolate); more is a bug
    // or an attack, and each costs a task and buffers.
    if state.hub.count_for(&who.tenant, &who.device_id) >= MAX_SOCKETS_PER_DEVICE {
        tracing::warn!(device_id = %who.device_id, tenant = %who.tenant, "WebSocket refused: too many open for this device");
        return AppError::RateLimited {
            retry_after_secs: 30,
        }
        .into_response();
    }
    // Small buffers: pokes are tiny, and a NAS holds thousands of idle sockets
    // (tungstenite's default 128 KiB read buffer per socket would dominate memory).
    upgrade
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(64 * 1024)
        .on_upgrade(move |socket| serve(state, who, socket))
}

async fn serve(state: AppState, who: Principal, socket: WebSocket) {
    let (id, mut rx) = state.hub.subscribe(&who);
    // Upgrades racing past the check above: the ones over the limit close at once.
    if state.hub.count_for(&who.tenant, &who.device_id) > MAX_SOCKETS_PER_DEVICE {
        state.hub.unsubscribe(id);
        let (mut sink, _) = socket.split();
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code: 1008,
                reason: Utf8Bytes::from_static("too many WebSockets for this device"),
            })))
            .await;
        return;
    }
    tracing::info!(socket = id, device_id = %who.device_id, tenant = %who.tenant, "WebSocket open");
    let (mut sink, mut stream) = socket.split();
    let mut pending: BTreeSet<String> = BTreeSet::new();
    let flush = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(flush);
    let mut armed = false;
    let mut last_sent = tokio::time::Instant::now() - COALESCE;
    let mut ping = tokio::time::interval(PING);
    ping.tick().await;
    let mut last_heard = Instant::now();
    // The socket lives as long as the token it was opened with; the client then
    // reconnects with a refreshed one (revocation closes it at once anyway).
    let lifetime = (who.expires_at - chrono::Utc::now().timestamp()).max(0) as u64;
    let expiry = tokio::time::sleep(Duration::from_secs(lifetime));
    tokio::pin!(expiry);
    let why = loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                None => break "dropped: too slow",
                Some(Outgoing::Changed(table)) => {
                    pending.insert(table);
                    if !armed {
                        // At once after a quiet spell, else when the spell is over.
                        flush.as_mut().reset((last_sent + COALESCE).max(tokio::time::Instant::now()));
                        armed = true;
                    }
                }
                Some(Outgoing::Event { table, record }) => {
                    let text = json!({"type": "event", "table": table, "record": record}).to_string();
                    if !out(&mut sink, Message::Text(text.into())).await {
                        break "send failed";
                    }
                }
                Some(Outgoing::Close { code, reason }) => {
                    let frame = CloseFrame { code, reason: Utf8Bytes::from(reason) };
                    let _ = out(&mut sink, Message::Close(Some(frame))).await;
                    break "closed by the server";
                }
            },
            _ = &mut flush, if armed => {
                armed = false;
                let tables: Vec<String> = std::mem::take(&mut pending).into_iter().collect();
                let text = json!({"type": "changes", "tables": tables}).to_string();
                if !out(&mut sink, Message::Text(text.into())).await {
                    break "send failed";
                }
                last_sent = tokio::time::Instant::now();
            }
            _ = &mut expiry => {
                let frame = CloseFrame { code: 4002, reason: Utf8Bytes::from_static("TOKEN_EXPIRED") };
                let _ = out(&mut sink, Message::Close(Some(frame))).await;
                break "token expired";
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > PING * 3 {
                    break "silent client";
                }
                if !out(&mut sink, Message::Ping(Default::default())).await {
                    break "send failed";
                }
            }
            incoming = stream.next() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break "closed by the client",
                Some(Ok(Message::Text(t))) if t.as_str().contains("\"ping\"") => {
                    last_heard = Instant::now();
                    if !out(&mut sink, Message::Text(json!({"type": "pong"}).to_string().into())).await {
                        break "send failed";
                    }
                }
                Some(Ok(_)) => last_heard = Instant::now(),
            },
        }
    };
    state.hub.unsubscribe(id);
    tracing::info!(socket = id, device_id = %who.device_id, reason = why, "WebSocket closed");
}

/// Sends one message, giving up when the client stops reading.
async fn out(sink: &mut futures_util::stream::SplitSink<WebSocket, Message>, msg: Message) -> bool {
    let counted = matches!(msg, Message::Text(_));
    let sent = matches!(
        tokio::time::timeout(SEND_TIMEOUT, sink.send(msg)).await,
        Ok(Ok(()))
    );
    if sent && counted {
        metrics::counter!("ws_messages_sent_total").increment(1);
    }
    sent
}
