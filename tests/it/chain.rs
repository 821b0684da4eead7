//! One decision chain: every shipped policy test case is decided twice — offline, by the code
//! behind `phigate explain` and `phigate test`, and by the gateway through its real listener —
//! and both must agree on allow or deny and on the reason. An allowed case reaches the upstream;
//! a denied one never does.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::Method;
use phigate::cli::offline::{self, Allowed, OfflineToken};
use phigate::config::{DiscoveryConfig, IssuerConfig, TokenBounds};
use phigate::policy::PolicyTable;
use serde_json::{Map, Value};

use crate::support::{Harness, Options};

/// Decision counters by `(decision, reason)`, read from `/metrics`.
async fn decisions(harness: &Harness) -> BTreeMap<(String, String), f64> {
    let (_, text) = harness.admin_get("/metrics").await;
    let mut counts = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("phigate_decisions_total{"))
    {
        let label = |name: &str| {
            let start = line.find(&format!("{name}=\""))? + name.len() + 2;
            let end = line[start..].find('"')? + start;
            Some(line[start..end].to_owned())
        };
        let value: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        if let (Some(decision), Some(reason)) = (label("decision"), label("reason")) {
            *counts.entry((decision, reason)).or_insert(0.0) += value;
        }
    }
    counts
}

#[tokio::test]
async fn explain_and_the_gateway_decide_every_shipped_case_alike() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let text = std::fs::read_to_string(root.join("smart-v2.tests.yaml")).unwrap();
    let file: Value = serde_saphyr::from_str(&text).unwrap();
    let policy_text = std::fs::read_to_string(root.join("smart-v2.yaml")).unwrap();
    let policy = PolicyTable::load(&root.join("smart-v2.yaml")).unwrap();
    let harness = Harness::with(Options {
        policy: policy_text,
        ..Options::default()
    })
    .await;
    let client = harness.client();
    let issuer = IssuerConfig::offline("patient");
    let bounds = TokenBounds::default();
    let cases = file["cases"].as_array().unwrap();
    assert!(cases.len() > 90, "the shipped cases are all here");
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let method =
            Method::from_bytes(case["request"]["method"].as_str().unwrap().as_bytes()).unwrap();
        let path = case["request"]["path"].as_str().unwrap();
        let body = match (&case["request"]["json"], &case["request"]["body"]) {
            (Value::Null, Value::String(text)) => Some(text.clone().into_bytes()),
            (Value::Null, _) => None,
            (json, _) => Some(json.to_string().into_bytes()),
        };
        let claims: Option<Map<String, Value>> = case["claims"].as_object().cloned();
        // Offline: the claims taken as verified.
        let verified = claims
            .clone()
            .map(|c| phigate::token::trusted_claims(c, &issuer, &bounds));
        let token = match &verified {
            None => OfflineToken::Absent,
            Some(Ok(token)) => OfflineToken::Verified(token),
            Some(Err(fault)) => OfflineToken::Refused(*fault),
        };
        let request = offline::OfflineRequest {
            method: &method,
            target: path,
            headers: &[],
            body: body.as_deref(),
        };
        let verdict = offline::decide(&policy, &DiscoveryConfig::default(), &request, &token);
        let offline = match &verdict.outcome {
            Ok(Allowed::Answered(_)) => "allow well_known".to_owned(),
            Ok(Allowed::Forwarded(permit)) if permit.would_deny().is_some() => {
                "would_deny".to_owned()
            }
            Ok(Allowed::Forwarded(_)) => "allow".to_owned(),
            Err(denied) => format!("deny {}", denied.reason),
        };
        // Live: a real token with the same claims, through the listener.
        let mut headers: Vec<(&str, String)> = Vec::new();
        if let Some(claims) = &claims {
            let mut all = harness.claims("");
            for (key, value) in claims {
                all[key] = value.clone();
            }
            headers.push(("authorization", format!("Bearer {}", harness.mint(&all))));
        }
        if body.is_some() {
            let form = path
                .split('?')
                .next()
                .unwrap_or_default()
                .ends_with("/_search");
            let content_type = if form {
                "application/x-www-form-urlencoded"
            } else {
                "application/fhir+json"
            };
            headers.push(("content-type", content_type.to_owned()));
        }
        let before = decisions(&harness).await;
        harness.upstream.clear_received();
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let response = client
            .send(
                method.clone(),
                path,
                &headers,
                Bytes::from(body.unwrap_or_default()),
            )
            .await;
        let forwarded = !harness.upstream.received().is_empty();
        let after = decisions(&harness).await;
        let moved: Vec<&(String, String)> = after
            .iter()
            .filter(|(key, count)| before.get(key).copied().unwrap_or(0.0) < **count)
            .map(|(key, _)| key)
            .collect();
        if offline.starts_with("deny") || offline == "allow well_known" {
            let [(decision, reason)] = moved.as_slice() else {
                panic!("{name}: no single decision counted: {moved:?}");
            };
            assert_eq!(
                format!("{decision} {reason}"),
                offline,
                "{name}: {method} {path} answered {}",
                response.status
            );
            assert!(
                !forwarded,
                "{name}: {offline}, yet the upstream got the request"
            );
        } else {
            // Allowed (or report-only): the request went upstream, whatever the upstream said.
            assert!(
                forwarded,
                "{name}: {method} {path}: offline {offline}, live {} {moved:?}",
                response.status
            );
        }
    }
}
