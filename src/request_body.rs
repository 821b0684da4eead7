//! A request body, read whole before anything is forwarded. Reading happens only inside the
//! decision chain: under the small unauthenticated cap on public routes, under the full cap once
//! the token verified, always by a deadline. Reading it whole means a framing error (a bad chunk
//! size, a missing CRLF, a body cut short) is found while the client is still being answered —
//! a 400 that is the client's, never an upstream failure — and the upstream never receives half
//! a request. It never inspects what it reads; decision steps do.

use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http::header::CONTENT_TYPE;
use http_body::Body as _;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;

use crate::body::ProxyBody;
use crate::denial::Denial;

/// A request body, not read yet or read whole.
pub struct RequestBody {
    state: State,
    deadline: Duration,
}

enum State {
    Unread(Incoming),
    Complete(Bytes),
}

impl RequestBody {
    /// A body not read yet, which must arrive whole within `deadline` once reading starts.
    pub fn new(incoming: Incoming, deadline: Duration) -> Self {
        Self {
            state: State::Unread(incoming),
            deadline,
        }
    }

    /// A body already in memory (tests and benchmarks).
    pub fn complete_from(bytes: Bytes) -> Self {
        Self {
            state: State::Complete(bytes),
            deadline: Duration::ZERO,
        }
    }

    /// Reads the whole body, at most `limit` bytes: 413 beyond, 408 past the deadline, 400 when
    /// the client's framing is broken. Reading twice returns what the first read kept.
    pub async fn complete(&mut self, limit: usize) -> Result<&Bytes, Denial> {
        let state = std::mem::replace(&mut self.state, State::Complete(Bytes::new()));
        let bytes = match state {
            State::Complete(bytes) if bytes.len() > limit => return Err(Denial::BodyTooLarge),
            State::Complete(bytes) => bytes,
            State::Unread(incoming) => read_whole(incoming, limit, self.deadline).await?,
        };
        self.state = State::Complete(bytes);
        match &self.state {
            State::Complete(bytes) => Ok(bytes),
            State::Unread(_) => Err(Denial::BodyMalformed),
        }
    }

    /// Reads and drops what is left of a body the decision never read, before its refusal goes
    /// out: at most `limit` bytes, for at most `grace`. An HTTP/2 stream whose request body is
    /// dropped unread is reset, and the reset can reach the client before the refusal (curl
    /// reports a framing error instead of the 403); a body that has already arrived, as a small one
    /// usually has, ends the stream cleanly instead. A larger or slower body is left to the
    /// reset.
    pub async fn discard(self, limit: usize, grace: Duration) {
        let State::Unread(mut incoming) = self.state else {
            return;
        };
        let mut read = 0usize;
        let drain = async {
            while !incoming.is_end_stream() {
                let Some(Ok(frame)) = incoming.frame().await else {
                    return;
                };
                read = read.saturating_add(frame.data_ref().map_or(0, Bytes::len));
                if read > limit {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(grace, drain).await;
    }

    /// The body, once read whole.
    pub fn bytes(&self) -> Option<&Bytes> {
        match &self.state {
            State::Complete(bytes) => Some(bytes),
            State::Unread(_) => None,
        }
    }

    /// The body for the upstream request: only a body read whole is ever forwarded.
    pub fn into_proxy_body(self) -> Result<ProxyBody, Denial> {
        match self.state {
            State::Complete(bytes) => Ok(Full::new(bytes)
                .map_err(|never| match never {})
                .boxed_unsync()),
            State::Unread(_) => Err(Denial::BodyMalformed),
        }
    }
}

async fn read_whole(incoming: Incoming, limit: usize, deadline: Duration) -> Result<Bytes, Denial> {
    let collected = tokio::time::timeout(deadline, Limited::new(incoming, limit).collect())
        .await
        .map_err(|_| Denial::BodyTimedOut)?;
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => Err(Denial::BodyTooLarge),
        // hyper's chunked decoder and length checks: the client's framing, not ours.
        Err(_) => Err(Denial::BodyMalformed),
    }
}

/// Whether the request carries an `application/x-www-form-urlencoded` body.
pub fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| {
            essence
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}
