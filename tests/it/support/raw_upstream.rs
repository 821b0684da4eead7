//! An upstream written in raw bytes, for answers no HTTP library would send: conflicting
//! framing, a body that trickles or stalls, the upstream's own authentication challenge. It
//! reads each request head, writes its scripted answer, and counts the requests it received.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the upstream does once it has written an answer's first bytes.
#[derive(Clone, Copy, Debug)]
pub enum Then {
    /// Closes the connection.
    Close,
    /// Keeps the connection open and sends nothing more (a stalled body).
    Hold,
    /// Sends a one-byte chunk (a space) every `interval`, forever (a trickling body).
    Trickle(Duration),
}

/// One scripted answer.
#[derive(Clone, Debug)]
pub struct Answer {
    /// Written at once: the status line, the header block and any body bytes.
    pub bytes: Vec<u8>,
    /// What follows them.
    pub then: Then,
}

impl Answer {
    pub fn new(bytes: impl Into<Vec<u8>>, then: Then) -> Self {
        Self {
            bytes: bytes.into(),
            then,
        }
    }
}

/// A loopback TCP server answering the n-th request with the n-th answer (the last one
/// again once they run out), one request per connection.
pub struct RawUpstream {
    addr: SocketAddr,
    received: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl RawUpstream {
    pub async fn start(answers: Vec<Answer>) -> Self {
        assert!(!answers.is_empty());
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&received);
        let answers = Arc::new(answers);
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (count, answers) = (Arc::clone(&count), Arc::clone(&answers));
                tokio::spawn(async move {
                    let _ = answer(tcp, &count, &answers).await;
                });
            }
        });
        Self {
            addr,
            received,
            task,
        }
    }

    /// The base URL to configure as `upstream.url`.
    pub fn url(&self) -> String {
        format!("http://{}/fhir", self.addr)
    }

    /// How many request heads arrived.
    pub fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    mut tcp: TcpStream,
    count: &AtomicUsize,
    answers: &[Answer],
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tcp.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let index = count.fetch_add(1, Ordering::SeqCst).min(answers.len() - 1);
    let Answer { bytes, then } = &answers[index];
    tcp.write_all(bytes).await?;
    match *then {
        Then::Close => tcp.shutdown().await,
        Then::Hold => {
            // Until phigate gives up and closes its end.
            while tcp.read(&mut buf).await? > 0 {}
            Ok(())
        }
        Then::Trickle(interval) => loop {
            tcp.write_all(b"1\r\n \r\n").await?;
            tokio::time::sleep(interval).await;
        },
    }
}
