//! One integration-test binary (one link step instead of many), a module per concern. Every
//! test runs real parts: TLS with rcgen certificates, a JWKS served over HTTP, a recording
//! upstream, and the gateway on an ephemeral loopback port.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "test support outside #[test] functions: a failed step should stop the test at once"
)]

mod admin;
mod audit;
mod binding;
mod break_glass;
mod chain;
mod cli;
mod deploy;
mod discovery;
mod dpop;
mod errors;
mod event_loops;
mod examples;
mod fhir;
mod fhir_real;
mod floods;
mod forwarding;
mod geo;
mod hygiene;
mod introspection;
mod jwks;
mod monitor;
mod policy;
mod probe;
mod reload;
mod revocation;
mod rotation;
mod support;
mod tidy;
mod tls;
mod token_cache;
mod tokens;
