//! The PROXY protocol header a trusted balancer puts before a connection's TLS bytes
//! (`proxy::proxy_header::read`): any bytes are read without a panic, within the format's
//! bounds, and a header that is taken is exactly what was consumed, so the next byte is the
//! client's.
#![no_main]

use std::future::Future as _;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use phigate::proxy::proxy_header;

/// Version 1's longest header; version 2's fixed part plus the most it takes.
const V1_MAX: usize = 107;
const V2_MAX: usize = 16 + 1024;

fuzz_target!(|data: &[u8]| {
    let mut stream = data;
    // A byte slice never makes a reader wait, so one poll finishes the read.
    let Poll::Ready(result) =
        pin!(proxy_header::read(&mut stream)).poll(&mut Context::from_waker(Waker::noop()))
    else {
        panic!("reading a byte slice waited");
    };
    let consumed = data.len() - stream.len();
    match result {
        Ok(_) => {
            let header = &data[..consumed];
            if header.starts_with(b"PROXY ") {
                assert!(header.ends_with(b"\r\n") && header.len() <= V1_MAX);
            } else {
                assert!(header.starts_with(b"\r\n\r\n\0\r\nQUIT\n") && header.len() <= V2_MAX);
            }
        }
        Err(_) => assert!(consumed <= V2_MAX),
    }
});
