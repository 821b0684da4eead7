use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;

use super::*;
use crate::demo::tests::{Reply, get, send, send_h2};

async fn start() -> SyntheticFhir {
    SyntheticFhir::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// Expected answer: status, resourceType, and for bundles the ids in order.
struct Expect {
    status: u16,
    resource_type: &'static str,
    ids: &'static [&'static str],
}

const fn expect(status: u16, resource_type: &'static str, ids: &'static [&'static str]) -> Expect {
    Expect {
        status,
        resource_type,
        ids,
    }
}

#[track_caller]
fn check(path: &str, reply: &Reply, expected: &Expect) {
    assert_eq!(reply.status.as_u16(), expected.status, "{path}");
    assert_eq!(
        reply.header("content-type"),
        Some("application/fhir+json"),
        "{path}"
    );
    let body = reply.json();
    assert_eq!(body["resourceType"], expected.resource_type, "{path}");
    let ids: Vec<&str> = match expected.resource_type {
        "Bundle" => {
            assert_eq!(body["type"], "searchset", "{path}");
            body["entry"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["resource"]["id"].as_str().unwrap())
                .collect()
        }
        _ => body["id"].as_str().into_iter().collect(),
    };
    assert_eq!(ids, expected.ids, "{path}");
}

#[tokio::test]
async fn data_endpoints() {
    let fhir = start().await;
    let cases = [
        ("/fhir/metadata", expect(200, "CapabilityStatement", &[])),
        ("/fhir/Patient/123", expect(200, "Patient", &["123"])),
        ("/fhir/Patient/456", expect(200, "Patient", &["456"])),
        ("/fhir/Patient/789", expect(404, "OperationOutcome", &[])),
        ("/fhir/Patient", expect(200, "Bundle", &["123", "456"])),
        ("/fhir/Patient?_id=456", expect(200, "Bundle", &["456"])),
        (
            "/fhir/Observation/o-123-vit",
            expect(200, "Observation", &["o-123-vit"]),
        ),
        (
            "/fhir/Observation/o-999",
            expect(404, "OperationOutcome", &[]),
        ),
        (
            "/fhir/Observation",
            expect(200, "Bundle", &["o-123-lab", "o-123-vit", "o-456-lab"]),
        ),
        (
            "/fhir/Observation?patient=123",
            expect(200, "Bundle", &["o-123-lab", "o-123-vit"]),
        ),
        (
            "/fhir/Observation?subject=Patient%2F456",
            expect(200, "Bundle", &["o-456-lab"]),
        ),
        (
            "/fhir/Observation?patient=Patient/123&_count=10",
            expect(200, "Bundle", &["o-123-lab", "o-123-vit"]),
        ),
        ("/fhir/Observation?patient=999", expect(200, "Bundle", &[])),
        (
            "/fhir?_getpages=page1&_getpagesoffset=1",
            expect(200, "Bundle", &["o-123-lab", "o-123-vit", "o-456-lab"]),
        ),
        (
            "/fhir/Patient/123/Observation",
            expect(200, "Bundle", &["o-123-lab", "o-123-vit"]),
        ),
        ("/fhir/Encounter/1", expect(404, "OperationOutcome", &[])),
        ("/fhir", expect(404, "OperationOutcome", &[])),
        ("/other/Patient/123", expect(404, "OperationOutcome", &[])),
        ("/fhirPatient/123", expect(404, "OperationOutcome", &[])),
    ];
    for (path, expected) in &cases {
        check(path, &get(fhir.local_addr(), path).await, expected);
    }
    assert_eq!(fhir.received().len(), cases.len());
}

#[tokio::test]
async fn observation_categories_and_subjects() {
    let fhir = start().await;
    let cases = [
        ("o-123-lab", "laboratory", "Patient/123"),
        ("o-123-vit", "vital-signs", "Patient/123"),
        ("o-456-lab", "laboratory", "Patient/456"),
    ];
    for (id, category, subject) in cases {
        let body = get(fhir.local_addr(), &format!("/fhir/Observation/{id}"))
            .await
            .json();
        assert_eq!(body["category"][0]["coding"][0]["code"], category, "{id}");
        assert_eq!(body["subject"]["reference"], subject, "{id}");
    }
}

#[tokio::test]
async fn post_creates_an_observation_with_location() {
    let fhir = start().await;
    let observation = json!({ "resourceType": "Observation", "status": "final",
        "subject": { "reference": "Patient/456" } });
    let req = Request::post("/fhir/Observation")
        .header("host", "upstream")
        .header("content-type", "application/fhir+json")
        .body(Full::new(Bytes::from(observation.to_string())))
        .unwrap();
    let reply = send(fhir.local_addr(), req).await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(
        reply.header("location"),
        Some("/fhir/Observation/new-1/_history/1")
    );
    assert_eq!(reply.json()["id"], "new-1");
    check(
        "/fhir/Observation/new-1",
        &get(fhir.local_addr(), "/fhir/Observation/new-1").await,
        &expect(200, "Observation", &["new-1"]),
    );
    check(
        "/fhir/Observation?patient=456",
        &get(fhir.local_addr(), "/fhir/Observation?patient=456").await,
        &expect(200, "Bundle", &["o-456-lab", "new-1"]),
    );

    let bad = Request::post("/fhir/Observation")
        .header("host", "upstream")
        .body(Full::new(Bytes::from_static(
            b"{\"resourceType\":\"Patient\"}",
        )))
        .unwrap();
    assert_eq!(
        send(fhir.local_addr(), bad).await.status,
        StatusCode::BAD_REQUEST
    );
    let wrong_method = Request::delete("/fhir/Patient/123")
        .header("host", "upstream")
        .body(Full::default())
        .unwrap();
    assert_eq!(
        send(fhir.local_addr(), wrong_method).await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[tokio::test]
async fn records_requests_in_order_with_body_and_repeated_headers() {
    let fhir = start().await;
    get(fhir.local_addr(), "/fhir/Patient/123").await;
    let req = Request::post("/fhir/Observation?_format=json")
        .header("Host", "upstream")
        .header("X-Trace", "one")
        .header("Accept", "application/fhir+json")
        .header("X-Trace", "two")
        .body(Full::new(Bytes::from_static(b"not json")))
        .unwrap();
    send(fhir.local_addr(), req).await;
    get(fhir.local_addr(), "/fhir/metadata").await;

    let received = fhir.received();
    let summary: Vec<(&str, &str)> = received
        .iter()
        .map(|r| (r.method.as_str(), r.path_and_query.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("GET", "/fhir/Patient/123"),
            ("POST", "/fhir/Observation?_format=json"),
            ("GET", "/fhir/metadata"),
        ]
    );
    let post = &received[1];
    assert_eq!(post.body, b"not json");
    assert_eq!(post.version, "HTTP/1.1");
    assert_eq!(
        post.header_values("x-trace").collect::<Vec<_>>(),
        ["one", "two"]
    );
    assert_eq!(post.header("ACCEPT"), Some("application/fhir+json"));
    assert!(
        post.headers
            .iter()
            .all(|(name, _)| name == &name.to_ascii_lowercase())
    );

    fhir.clear_received();
    assert!(fhir.received().is_empty());
}

#[tokio::test]
async fn http2_prior_knowledge_is_recorded_as_such() {
    let fhir = start().await;
    let req = Request::get(format!("{}/Patient/123", fhir.url()))
        .version(http::Version::HTTP_2)
        .body(Full::default())
        .unwrap();
    let reply = send_h2(fhir.local_addr(), req).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(fhir.received()[0].version, "HTTP/2.0");
}

/// Response headers a mode must add.
type Headers = &'static [(&'static str, &'static str)];

#[tokio::test]
async fn modes_add_headers_or_force_status() {
    let fhir = start().await;
    let cases: [(UpstreamMode, u16, Headers); 4] = [
        (UpstreamMode::Normal, 200, &[]),
        (
            UpstreamMode::LeakyHeaders,
            200,
            &[("server", "Jetty(11)"), ("x-powered-by", "HAPI FHIR 7.0")],
        ),
        (
            UpstreamMode::HopByHopHeaders,
            200,
            &[
                ("x-upstream-secret", "must-not-pass"),
                ("keep-alive", "timeout=5"),
            ],
        ),
        (UpstreamMode::FixedStatus(500), 500, &[]),
    ];
    for (mode, status, headers) in cases {
        fhir.set_mode(mode);
        let reply = get(fhir.local_addr(), "/fhir/Patient/123").await;
        assert_eq!(reply.status.as_u16(), status, "{mode:?}");
        for (name, value) in headers {
            assert_eq!(reply.header(name), Some(*value), "{mode:?}");
        }
        if mode == UpstreamMode::Normal {
            assert!(reply.header("server").is_none());
            assert!(reply.header("x-powered-by").is_none());
        }
    }
}

#[tokio::test]
async fn delay_holds_the_response_but_records_at_once() {
    let fhir = start().await;
    fhir.set_response_delay(Duration::from_millis(300));
    let started = Instant::now();
    let pending = tokio::spawn({
        let addr = fhir.local_addr();
        async move { get(addr, "/fhir/metadata").await.status }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(fhir.received().len(), 1, "recorded before the delay ends");
    assert_eq!(pending.await.unwrap(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn url_and_shutdown() {
    let fhir = start().await;
    assert_eq!(fhir.url(), format!("http://{}/fhir", fhir.local_addr()));
    fhir.shutdown();
    fhir.stopped().await;
    assert!(
        tokio::net::TcpStream::connect(fhir.local_addr())
            .await
            .is_err()
    );
}
