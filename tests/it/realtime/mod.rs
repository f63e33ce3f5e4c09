//! Tests of WebSocket pokes (src/realtime/).

mod pokes;
