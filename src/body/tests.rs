use std::time::Duration;

use http_body_util::BodyExt;
use tokio::sync::mpsc;

use super::*;

/// A body fed by the test, a piece at a time; it ends when the sender is dropped.
struct Fed(mpsc::Receiver<Bytes>);

impl Body for Fed {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|piece| piece.map(|b| Ok(Frame::data(b))))
    }
}

fn fed() -> (mpsc::Sender<Bytes>, Fed) {
    let (tx, rx) = mpsc::channel(64);
    (tx, Fed(rx))
}

const fn deadlines(total_ms: u64, idle_ms: u64) -> Deadlines {
    Deadlines {
        total: Duration::from_millis(total_ms),
        idle: Duration::from_millis(idle_ms),
    }
}

/// Reads `body` to its end: the bytes, or whether it failed by a deadline.
async fn read(body: TimedBody<Fed>) -> Result<Bytes, bool> {
    body.collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .map_err(|err| BodyTimedOut::is(&err))
}

#[tokio::test]
async fn a_body_that_arrives_in_time_passes_whole() {
    let (tx, body) = fed();
    tx.send(Bytes::from_static(b"hello ")).await.unwrap();
    tx.send(Bytes::from_static(b"world")).await.unwrap();
    drop(tx);
    let body = TimedBody::new(body, deadlines(10_000, 5_000));
    assert_eq!(read(body).await, Ok(Bytes::from_static(b"hello world")));
}

#[tokio::test]
async fn a_stalled_body_fails_at_the_idle_deadline() {
    let (tx, body) = fed();
    tx.send(Bytes::from_static(b"half")).await.unwrap();
    // The sender stays open and sends nothing more.
    let body = TimedBody::new(body, deadlines(60_000, 50));
    assert_eq!(read(body).await, Err(true));
    drop(tx);
}

#[tokio::test]
async fn a_trickle_that_never_idles_still_ends_at_the_total_deadline() {
    let (tx, body) = fed();
    let trickle = tokio::spawn(async move {
        while tx.send(Bytes::from_static(b".")).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let mut body = TimedBody::new(body, deadlines(200, 30_000));
    let mut pieces = 0;
    let failure = loop {
        match body.frame().await {
            Some(Ok(_)) => pieces += 1,
            Some(Err(err)) => break err,
            None => panic!("the trickle never ends"),
        }
    };
    assert!(BodyTimedOut::is(&failure), "{failure}");
    assert!(pieces > 0, "the trickle flowed before the deadline");
    drop(body);
    trickle.await.unwrap();
}

#[tokio::test]
async fn time_nobody_asks_for_a_frame_is_not_idle_time() {
    let (tx, body) = fed();
    tx.send(Bytes::from_static(b"ready")).await.unwrap();
    drop(tx);
    let body = TimedBody::new(body, deadlines(60_000, 20));
    // A slow reader: the frame waits, ready, well past the idle deadline.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(read(body).await, Ok(Bytes::from_static(b"ready")));
}

/// A body that fails at once, as a reset connection does.
struct Reset;

impl Body for Reset {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(Some(Err(std::io::ErrorKind::ConnectionReset.into())))
    }
}

#[tokio::test]
async fn other_failures_pass_through_and_are_not_timeouts() {
    let body = TimedBody::new(Reset, deadlines(1_000, 1_000));
    let err = body.collect().await.unwrap_err();
    assert!(!BodyTimedOut::is(&err), "{err}");
}
