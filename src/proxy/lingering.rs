//! Lingering close (RFC 9112 §9.6): a connection phigate closes is closed in stages. Its write
//! side shuts first (TLS `close_notify`, then TCP FIN), so the client sees the end of the answer
//! at once; then what the client still sends is read and dropped until it closes too, or
//! [`LINGER`] passes. Closing outright while a refused upload is still arriving makes the
//! kernel answer the unread bytes with a reset, which can destroy the refusal in flight: the
//! client reports a broken pipe or a reset instead of the 413 or 401 it was sent.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// How long a closing connection may keep sending before it is dropped anyway.
pub const LINGER: Duration = Duration::from_secs(2);
/// Bytes dropped in one poll before yielding, so a fast sender cannot hold the event loop.
const DRAIN_PER_POLL: usize = 64 * 1024;

/// A stream whose shutdown lingers.
pub struct Lingering<S> {
    inner: S,
    linger: Duration,
    closing: Closing,
}

enum Closing {
    /// Not shutting down.
    Open,
    /// The write side is shut; reading until the client closes or the deadline.
    Draining(Pin<Box<Sleep>>),
    /// Done: the client closed, failed, or took too long.
    Closed,
}

impl<S> Lingering<S> {
    /// Wraps `inner`, lingering at most `linger` ([`LINGER`] on the listener).
    pub fn new(inner: S, linger: Duration) -> Self {
        Self {
            inner,
            linger,
            closing: Closing::Open,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Lingering<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Lingering<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match &mut this.closing {
                Closing::Open => {
                    ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
                    this.closing = Closing::Draining(Box::pin(tokio::time::sleep(this.linger)));
                }
                Closing::Draining(deadline) => {
                    if deadline.as_mut().poll(cx).is_ready() {
                        this.closing = Closing::Closed;
                        continue;
                    }
                    let mut scratch = [0u8; 8192];
                    let mut dropped = 0;
                    while dropped < DRAIN_PER_POLL {
                        let mut buf = ReadBuf::new(&mut scratch);
                        match Pin::new(&mut this.inner).poll_read(cx, &mut buf) {
                            Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                                dropped += buf.filled().len();
                            }
                            // End of stream, or a failure: the client is gone either way.
                            Poll::Ready(_) => {
                                this.closing = Closing::Closed;
                                return Poll::Ready(Ok(()));
                            }
                            Poll::Pending => return Poll::Pending,
                        }
                    }
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Closing::Closed => return Poll::Ready(Ok(())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, duplex};

    use super::*;

    /// The client sees the end at once, while what it still sends is read, not refused.
    #[tokio::test]
    async fn shutdown_ends_the_answer_then_reads_until_the_client_closes() {
        let (server, mut client) = duplex(1024);
        let mut server = Lingering::new(server, LINGER);
        server.write_all(b"HTTP/1.1 413 \r\n\r\n").await.unwrap();
        let closing = tokio::spawn(async move { server.shutdown().await });
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"HTTP/1.1 413 \r\n\r\n");
        // 64 KiB more of the upload, through a 1 KiB pipe: only a reader makes room for it.
        client.write_all(&[b'a'; 64 * 1024]).await.unwrap();
        assert!(!closing.is_finished());
        drop(client);
        closing.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_client_that_never_closes_is_dropped_at_the_deadline() {
        let (server, _client) = duplex(1024);
        let mut server = Lingering::new(server, Duration::from_millis(20));
        tokio::time::timeout(Duration::from_secs(10), server.shutdown())
            .await
            .expect("the deadline ends the lingering")
            .unwrap();
    }

    /// A client that never stops sending cannot hold the connection past the deadline either.
    #[tokio::test]
    async fn a_client_that_keeps_sending_is_dropped_at_the_deadline() {
        let (server, mut client) = duplex(1024);
        let sender =
            tokio::spawn(async move { while client.write_all(&[b'a'; 512]).await.is_ok() {} });
        let mut server = Lingering::new(server, Duration::from_millis(20));
        tokio::time::timeout(Duration::from_secs(10), server.shutdown())
            .await
            .expect("the deadline ends the lingering")
            .unwrap();
        drop(server);
        sender.await.unwrap();
    }
}
