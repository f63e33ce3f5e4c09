//! Guards against overload and abuse, as plain types the state holds and the web
//! layer's middleware applies: rate limits (`limits`), load shedding and fair shares
//! (`shed`), how a request body must arrive (`arrival`), and whose `X-Forwarded-For`
//! is believed (`proxies`). Nothing here knows a handler, a router or `AppState`.

pub mod arrival;
pub mod limits;
pub mod proxies;
pub mod shed;

/// How long a shed or refused client is told to wait before retrying, in seconds.
pub const RETRY_AFTER_SECS: u64 = 1;
