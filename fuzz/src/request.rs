//! A request written as text, so that seeds are readable and libFuzzer's mutations stay near
//! real requests. The grant comes first, then an HTTP/1-style head, a blank line and the body;
//! an upstream answer for the permit's response check may follow an `@answer` line:
//!
//! ```text
//! @scope patient/Observation.rs
//! @patient 123
//! GET /Observation?patient=123
//! content-type: application/json
//!
//! {"resourceType": "Observation"}
//! @answer
//! {"resourceType": "Bundle", "type": "searchset"}
//! ```
//!
//! The request is taken as HTTP/2 (where `Host` is optional), the way hyper hands it over.

use http::request::Parts;
use http::{HeaderName, HeaderValue, Method, Request, Uri, Version};

/// A parsed written request.
pub struct WrittenRequest<'a> {
    /// Space-separated scopes from `@scope` (empty when absent).
    pub scope: &'a str,
    /// The launch patient from `@patient`.
    pub patient: Option<&'a str>,
    /// Method, URI and headers.
    pub parts: Parts,
    /// The body after the blank line.
    pub body: &'a [u8],
    /// The upstream answer after `@answer`, if any.
    pub answer: Option<&'a [u8]>,
}

/// Reads a written request; `None` when its head is not a request `http` can represent.
pub fn parse(data: &[u8]) -> Option<WrittenRequest<'_>> {
    let text = std::str::from_utf8(data).ok()?;
    let (head, rest) = text.split_once("\n\n").unwrap_or((text, ""));
    let (body, answer) = match rest.split_once("\n@answer\n") {
        Some((body, answer)) => (body, Some(answer.as_bytes())),
        None => (rest, None),
    };
    let mut lines = head.split('\n');
    let (mut scope, mut patient) = ("", None);
    let request_line = loop {
        let line = lines.next()?;
        if let Some(text) = line.strip_prefix("@scope ") {
            scope = text;
        } else if let Some(text) = line.strip_prefix("@patient ") {
            patient = Some(text);
        } else {
            break line;
        }
    };
    let (method, target) = request_line.split_once(' ')?;
    let mut request = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).ok()?)
        .uri(Uri::try_from(target).ok()?)
        .version(Version::HTTP_2);
    // A head written without a body may end in a newline.
    for line in lines.filter(|line| !line.is_empty()) {
        let (name, value) = line.split_once(':')?;
        request = request.header(
            HeaderName::from_bytes(name.as_bytes()).ok()?,
            HeaderValue::from_str(value.trim_start_matches([' ', '\t'])).ok()?,
        );
    }
    let parts = request.body(()).ok()?.into_parts().0;
    Some(WrittenRequest {
        scope,
        patient,
        parts,
        body: body.as_bytes(),
        answer,
    })
}
