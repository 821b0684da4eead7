//! The one body type phigate sends, in either direction: requests to the upstream and responses
//! to clients, streamed or read whole; and [`TimedBody`], the deadlines on a body phigate waits
//! for. Its own module so that what reads bodies (`request_body`) and what sends them (`proxy`)
//! need not depend on each other. It never looks inside a body.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use tokio::time::{Instant, Sleep};

/// Errors crossing a body boundary.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of everything phigate sends, in either direction.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// The deadlines on a body: the whole of it, and each wait for its next piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// From the moment the body is wrapped (its head has arrived) to its last byte.
    pub total: Duration,
    /// The longest wait for the next frame while the reader is asking for one.
    pub idle: Duration,
}

/// A body whose deadline passed: the sender stopped sending, or trickled too slowly.
#[derive(Debug, thiserror::Error)]
#[error("the body did not arrive within its deadline")]
pub struct BodyTimedOut;

impl BodyTimedOut {
    /// Whether `err` (as a body reader or `Limited` passes it on) is a passed deadline.
    pub fn is(err: &BoxError) -> bool {
        err.downcast_ref::<Self>().is_some()
    }
}

/// A body that fails with [`BodyTimedOut`] once a deadline passes, so whatever reads it — a
/// buffer, or a client connection it streams to — ends with an error instead of waiting forever
/// on a sender that trickles or stalls. Time spent while nobody asks for a frame (a slow client
/// reading a stream) counts against the total deadline only, never against the idle one.
pub struct TimedBody<B> {
    inner: B,
    total: Pin<Box<Sleep>>,
    idle: Pin<Box<Sleep>>,
    idle_for: Duration,
    /// Whether the idle timer runs: the last poll of `inner` was pending.
    waiting: bool,
}

impl<B> TimedBody<B> {
    /// `inner`, whose total deadline starts now.
    pub fn new(inner: B, deadlines: Deadlines) -> Self {
        let now = Instant::now();
        Self {
            inner,
            total: Box::pin(tokio::time::sleep_until(now + deadlines.total)),
            idle: Box::pin(tokio::time::sleep_until(now + deadlines.idle)),
            idle_for: deadlines.idle,
            waiting: false,
        }
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        // The total deadline first: a sender that keeps a trickle going still ends.
        if this.total.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(BodyTimedOut.into())));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.waiting = false;
                Poll::Ready(frame.map(|result| result.map_err(Into::into)))
            }
            Poll::Pending => {
                if !this.waiting {
                    this.waiting = true;
                    let at = Instant::now() + this.idle_for;
                    this.idle.as_mut().reset(at);
                }
                if this.idle.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(BodyTimedOut.into())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests;
