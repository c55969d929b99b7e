//! `/api/v1/events`: the live view as server-sent events.
//!
//! A client first gets a replay (the events after its `Last-Event-ID`, or the latest of every
//! kind), then every new event. Frames are formatted once by [`Live`](super::live::Live) and
//! shared by every client; what is ready at once goes out in one write. A client more than
//! [`LiveLimits::client_buffer`](super::LiveLimits) events behind is dropped and counted: its
//! browser reconnects and resumes from the ring. Clients are capped; every stream ends with
//! the process's shutdown.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use metrics::{counter, gauge};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::live::Subscription;
use super::problem::Problem;
use super::WebState;
use crate::metrics as m;

/// The browser's reconnection delay, sent first on every stream.
const RETRY: &[u8] = b"retry: 2000\n\n";
/// Most bytes gathered into one write.
const BATCH_BYTES: usize = 64 * 1024;

/// Counts a connected client for as long as it lives.
struct Connected {
    _slot: OwnedSemaphorePermit,
}

impl Connected {
    fn new(slot: OwnedSemaphorePermit) -> Connected {
        gauge!(m::WEB_SSE_CLIENTS).increment(1.0);
        Connected { _slot: slot }
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        gauge!(m::WEB_SSE_CLIENTS).decrement(1.0);
    }
}

struct Stream {
    replay: VecDeque<Bytes>,
    sub: Subscription,
    shutdown: CancellationToken,
    keepalive: Interval,
    _client: Connected,
}

/// The `Last-Event-ID` a reconnecting client sends (ids are decimal numbers).
pub fn last_event_id(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// The event-stream response for a client that last saw `last_id`, or 503 at the cap.
pub fn respond(state: &WebState, last_id: Option<u64>) -> Response {
    let Ok(slot) = state.sse_slots.clone().try_acquire_owned() else {
        counter!(m::WEB_SSE_REFUSED).increment(1);
        return Problem::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "too_many_streams",
            format!(
                "{} event streams are open, the most this server serves; retry later",
                state.config.max_sse_clients
            ),
        )
        .into_response();
    };
    let sub = state.live.subscribe(last_id);
    let mut replay: VecDeque<Bytes> = VecDeque::with_capacity(sub.replay.len() + 1);
    replay.push_back(Bytes::from_static(RETRY));
    replay.extend(sub.replay.iter().cloned());
    let start = tokio::time::Instant::now() + state.config.keepalive;
    let mut keepalive =
        tokio::time::interval_at(start, state.config.keepalive.max(Duration::from_millis(10)));
    keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let stream = Stream {
        replay,
        sub,
        shutdown: state.shutdown.clone(),
        keepalive,
        _client: Connected::new(slot),
    };
    let body = Body::from_stream(futures_util::stream::unfold(stream, next_chunk));
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Reverse proxies (nginx) must not buffer the stream.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// Appends every frame already waiting, up to [`BATCH_BYTES`]; `false` if the client lagged.
fn gather(s: &mut Stream, out: &mut BytesMut) -> bool {
    while out.len() < BATCH_BYTES {
        match s.sub.events.try_recv() {
            Ok(f) if f.id <= s.sub.last_id => {}
            Ok(f) => {
                s.sub.last_id = f.id;
                out.extend_from_slice(&f.bytes);
            }
            Err(TryRecvError::Lagged(_)) => return false,
            Err(TryRecvError::Empty | TryRecvError::Closed) => break,
        }
    }
    true
}

async fn next_chunk(mut s: Stream) -> Option<(Result<Bytes, Infallible>, Stream)> {
    if !s.replay.is_empty() {
        let mut out = BytesMut::new();
        while let Some(b) = s.replay.pop_front() {
            out.extend_from_slice(&b);
            if out.len() >= BATCH_BYTES {
                break;
            }
        }
        return Some((Ok(out.freeze()), s));
    }
    loop {
        tokio::select! {
            biased;
            _ = s.shutdown.cancelled() => return None,
            event = s.sub.events.recv() => match event {
                Ok(f) if f.id <= s.sub.last_id => continue,
                Ok(f) => {
                    s.sub.last_id = f.id;
                    let mut out = BytesMut::new();
                    out.extend_from_slice(&f.bytes);
                    let kept_up = gather(&mut s, &mut out);
                    if !kept_up {
                        return dropped();
                    }
                    return Some((Ok(out.freeze()), s));
                }
                Err(RecvError::Lagged(missed)) => {
                    debug!(missed, "event-stream client too slow");
                    return dropped();
                }
                Err(RecvError::Closed) => return None,
            },
            _ = s.keepalive.tick() => return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), s)),
        }
    }
}

fn dropped() -> Option<(Result<Bytes, Infallible>, Stream)> {
    counter!(m::WEB_SSE_DROPPED).increment(1);
    None
}
