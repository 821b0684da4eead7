//! The one body type phigate sends, in either direction: requests to the upstream and responses
//! to clients, streamed or read whole. Its own module so that what reads bodies
//! (`request_body`) and what sends them (`proxy`) need not depend on each other.

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;

/// Errors crossing a body boundary.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of everything phigate sends, in either direction.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;
