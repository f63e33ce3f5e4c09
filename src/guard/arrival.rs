//! A request body's arrival, bounded before the request holds a place in its route
//! family (`super::shed`): a client that announces a body and then sends it slowly
//! (or not at all) is cut off instead of holding a place others need.
//!
//! The body must keep up with a minimum rate after a grace period: at any moment,
//! `received >= min_rate * (elapsed - grace)`. A client that sends one byte of a
//! hundred and stops is answered 408 `REQUEST_TIMEOUT` after the grace (the header
//! timeout, 10 s by default); a phone on a slow uplink that keeps sending is not.
//! Bodies read this way are held in memory until their request ends, so all of them
//! together draw on one byte budget (`NAS_SYNC_BODY_BUFFER_BYTES`); a body that finds
//! the budget spent is answered 503 `UNAVAILABLE` with `Retry-After` at once.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use futures_util::StreamExt;
use http_body::Body as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::error::AppError;

/// How bodies must arrive, and the memory all buffered bodies may hold.
pub struct Arrival {
    /// Bytes per second a body must keep up with, after the grace.
    min_rate: u64,
    /// How long a body may take before the rate counts.
    grace: Duration,
    /// The largest body accepted (`NAS_SYNC_BODY_LIMIT_BYTES`).
    limit: usize,
    budget: Arc<Semaphore>,
    budget_bytes: usize,
}

/// A body that has arrived, with its share of the byte budget (returned on drop,
/// when the request ends).
pub struct Arrived {
    bytes: Bytes,
    held: Option<OwnedSemaphorePermit>,
}

/// The budget a body holds, given back when dropped.
pub struct Held {
    _permit: Option<OwnedSemaphorePermit>,
}

impl Arrived {
    /// The body, and its hold on the budget (keep it until the request ends).
    pub fn into_parts(self) -> (Bytes, Held) {
        (self.bytes, Held { _permit: self.held })
    }
}

impl Arrival {
    pub fn new(min_rate: u64, grace: Duration, limit: usize, budget: usize) -> Arrival {
        let budget_bytes = budget.min(Semaphore::MAX_PERMITS);
        Arrival {
            min_rate: min_rate.max(1),
            grace,
            limit,
            budget: Arc::new(Semaphore::new(budget_bytes)),
            budget_bytes,
        }
    }

    /// Bytes of the budget in use now.
    pub fn buffered(&self) -> usize {
        self.budget_bytes
            .saturating_sub(self.budget.available_permits())
    }

    /// Reads `body` to its end under the rate, the size limit and the budget. A body
    /// known to be empty costs nothing.
    pub async fn read(&self, body: Body) -> Result<Arrived, AppError> {
        let hint = body.size_hint();
        if hint.exact() == Some(0) {
            return Ok(Arrived {
                bytes: Bytes::new(),
                held: None,
            });
        }
        if usize::try_from(hint.lower()).unwrap_or(usize::MAX) > self.limit {
            return Err(too_large());
        }
        let started = Instant::now();
        let mut stream = body.into_data_stream();
        let mut buf: Vec<u8> = Vec::new();
        let mut held: Option<OwnedSemaphorePermit> = None;
        loop {
            // The next bytes are due when what has come so far stops covering the
            // time since the grace ended.
            let covered = Duration::from_secs_f64(buf.len() as f64 / self.min_rate as f64);
            let due = started + self.grace + covered;
            let next = tokio::time::timeout_at(due, stream.next())
                .await
                .map_err(|_| AppError::SlowBody {
                    min_rate: self.min_rate,
                })?;
            let chunk = match next {
                None => break,
                Some(Ok(chunk)) => chunk,
                Some(Err(_)) => {
                    return Err(AppError::validation(
                        "body",
                        "the request body could not be read (bad gzip encoding, or the connection ended)",
                    ));
                }
            };
            if buf.len() + chunk.len() > self.limit {
                return Err(too_large());
            }
            let n = u32::try_from(chunk.len()).map_err(|_| too_large())?;
            let permit = self.budget.clone().try_acquire_many_owned(n).map_err(|_| {
                metrics::counter!("sync_shed_total", "family" => "body_buffer").increment(1);
                AppError::Overloaded {
                    retry_after_secs: super::RETRY_AFTER_SECS,
                }
            })?;
            match &mut held {
                Some(h) => h.merge(permit),
                None => held = Some(permit),
            }
            if buf.is_empty() && hint.exact().is_some() {
                buf.reserve_exact(usize::try_from(hint.lower()).unwrap_or(0));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(Arrived {
            bytes: Bytes::from(buf),
            held,
        })
    }
}

fn too_large() -> AppError {
    AppError::PayloadTooLarge("The request body is larger than the server accepts.".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrival(budget: usize) -> Arrival {
        Arrival::new(1000, Duration::from_millis(200), 4096, budget)
    }

    #[tokio::test]
    async fn a_whole_body_arrives_and_holds_its_bytes_of_the_budget_until_dropped() {
        let a = arrival(100);
        let got = a.read(Body::from("hello")).await.unwrap();
        let (bytes, held) = got.into_parts();
        assert_eq!(&bytes[..], b"hello");
        assert_eq!(a.buffered(), 5);
        drop(held);
        assert_eq!(a.buffered(), 0);
    }

    #[tokio::test]
    async fn too_large_and_over_budget_are_refused() {
        let big = vec![b'x'; 4097];
        let e = arrival(10_000).read(Body::from(big)).await.err().unwrap();
        assert_eq!(e.code(), "PAYLOAD_TOO_LARGE");
        let e = arrival(10)
            .read(Body::from(vec![b'x'; 20]))
            .await
            .err()
            .unwrap();
        assert_eq!(e.code(), "UNAVAILABLE");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stalls_after_the_grace_is_cut_off() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        let body = Body::from_stream(tokio_stream_from(rx));
        tx.send(Ok(Bytes::from_static(b"a"))).await.unwrap();
        let a = arrival(1000);
        let e = a.read(body).await.err().unwrap();
        assert_eq!(e.code(), "REQUEST_TIMEOUT");
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_keeps_the_rate_arrives_however_long_it_takes() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        let body = Body::from_stream(tokio_stream_from(rx));
        tokio::spawn(async move {
            // 10 bytes every 5 ms is 2000 bytes/s, twice the minimum, for 500 ms.
            for _ in 0..100 {
                tx.send(Ok(Bytes::from_static(b"0123456789")))
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        let got = arrival(4096).read(body).await.unwrap();
        assert_eq!(got.into_parts().0.len(), 1000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_below_the_rate_is_cut_off_once_the_grace_is_spent() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        let body = Body::from_stream(tokio_stream_from(rx));
        let sender = tokio::spawn(async move {
            // One byte every 5 ms is 200 bytes/s: behind the minimum from ~250 ms.
            for _ in 0..1000 {
                if tx.send(Ok(Bytes::from_static(b"x"))).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        let started = Instant::now();
        let e = arrival(4096).read(body).await.err().unwrap();
        assert_eq!(e.code(), "REQUEST_TIMEOUT");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(240) && took <= Duration::from_millis(300),
            "{took:?}"
        );
        sender.abort();
    }

    /// A stream of a channel's items (what a socket delivering chunks looks like).
    fn tokio_stream_from<T: Send + 'static>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> + Send {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
