//! A minimal HTTP client for the demo servers' tests, and tests of the shared server loop.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, Version};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use super::*;

/// What a test sees of a response.
pub(super) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// Sends `req` on a fresh HTTP/1.1 connection to `addr`.
pub(super) async fn send(addr: SocketAddr, req: Request<Full<Bytes>>) -> Reply {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    collect(sender.send_request(req).await.unwrap()).await
}

/// Sends `req` on a fresh HTTP/2 prior-knowledge connection to `addr`.
pub(super) async fn send_h2(addr: SocketAddr, req: Request<Full<Bytes>>) -> Reply {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    collect(sender.send_request(req).await.unwrap()).await
}

/// GETs `path` over HTTP/1.1.
pub(super) async fn get(addr: SocketAddr, path: &str) -> Reply {
    let req = Request::get(path)
        .header(http::header::HOST, addr.to_string())
        .body(Full::default())
        .unwrap();
    send(addr, req).await
}

async fn collect(response: Response<Incoming>) -> Reply {
    let (parts, body) = response.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

async fn echo_server() -> Background {
    Background::spawn("127.0.0.1:0".parse().unwrap(), |req: Request<Incoming>| {
        let version = format!("{:?}", req.version());
        async move { respond(StatusCode::OK, "text/plain", version) }
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn server_speaks_http1_and_http2_prior_knowledge() {
    let server = echo_server().await;
    let addr = server.local_addr;
    assert_eq!(get(addr, "/").await.body, "HTTP/1.1");
    let req = Request::get(format!("http://{addr}/"))
        .version(Version::HTTP_2)
        .body(Full::default())
        .unwrap();
    assert_eq!(send_h2(addr, req).await.body, "HTTP/2.0");
}

#[tokio::test]
async fn shutdown_closes_the_port() {
    let server = echo_server().await;
    let addr = server.local_addr;
    assert_eq!(get(addr, "/").await.status, StatusCode::OK);
    server.shutdown();
    server.stopped().await;
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn dropping_the_handle_stops_the_server() {
    let server = echo_server().await;
    let addr = server.local_addr;
    let stopped = server.stopped.clone();
    drop(server);
    let mut stopped = stopped;
    stopped.wait_for(|done| *done).await.unwrap();
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn unspecified_bind_dials_loopback() {
    let server = Background::spawn(
        "0.0.0.0:0".parse().unwrap(),
        |_req: Request<Incoming>| async { respond(StatusCode::OK, "text/plain", "") },
    )
    .await
    .unwrap();
    assert!(server.dial_addr().ip().is_loopback());
    assert_eq!(server.dial_addr().port(), server.local_addr.port());
}
