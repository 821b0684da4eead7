//! Criterion benchmarks of the request decision chain: path normalisation, strict JWS parsing,
//! and `Pipeline::decide` for a public route, a cached token, and a token seen for the first time
//! (one ES256 signature check). Run: `cargo bench --bench decide`.

#![expect(
    clippy::expect_used,
    reason = "a failed benchmark setup should stop the run at once"
)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use phigate::config::Config;
use phigate::demo::DevIssuer;
use phigate::pipeline::{Connection, Facts, Pipeline};
use phigate::policy::PolicyTable;
use phigate::request_body::RequestBody;
use phigate::telemetry::Metrics;
use phigate::tls::ClientIdentity;
use phigate::token::Verifier;

const ISSUER: &str = "https://bench-issuer.test";
const AUDIENCE: &str = "https://fhir.bench.test";

fn request(path: &str, token: Option<&str>) -> http::request::Parts {
    let mut builder = http::Request::get(path).header("host", "gw.test");
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder
        .body(())
        .map(|r| r.into_parts().0)
        .expect("static request")
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let issuer = runtime
        .block_on(DevIssuer::start(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            ISSUER,
        ))
        .expect("issuer");
    let dir = std::env::temp_dir().join(format!("phigate-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench dir");
    std::fs::write(
        dir.join("policy.yaml"),
        include_str!("../policies/example.yaml"),
    )
    .expect("policy");
    let config_text = format!(
        "listen:\n  address: \"127.0.0.1:0\"\n  insecure_plaintext: true\nupstream:\n  url: \"http://127.0.0.1:9/fhir\"\nissuers:\n  - issuer: \"{ISSUER}\"\n    jwks_uri: \"{}\"\n    audiences: [\"{AUDIENCE}\"]\n    algorithms: [ES256]\npolicy_file: policy.yaml\n",
        issuer.jwks_uri()
    );
    let config = Config::from_yaml(&config_text, &dir.join("phigate.yaml")).expect("config");
    let verifier = Arc::new(
        Verifier::new(&config.issuers, &config.tokens, Arc::new(Metrics::new())).expect("verifier"),
    );
    let _refreshers = runtime.block_on(async { verifier.spawn_refreshers() });
    while !verifier.is_ready() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let policy = PolicyTable::from_yaml(
        include_str!("../policies/example.yaml"),
        Path::new("example.yaml"),
    )
    .expect("policy");
    let revocation = phigate::revocation::Revocation::new(
        &[],
        config.tokens.max_lifetime,
        Arc::new(Metrics::new()),
    )
    .unwrap_or_else(|_| panic!("no revocation sources, nothing to fail"));
    let replay = phigate::binding::replay::ReplayCache::new(
        Duration::from_secs(70),
        None,
        prometheus_client::metrics::gauge::Gauge::default(),
    )
    .expect("replay cache");
    let dpop = phigate::binding::DpopChecker::new(
        phigate::binding::dpop::ProofSettings::default(),
        None,
        replay,
    );
    let pipeline = Pipeline::new(
        Arc::new(phigate::policy::PolicyStore::new(policy)),
        verifier,
        Arc::new(revocation),
        Arc::new(dpop),
        phigate::config::RequestLimits::default(),
        Arc::new(phigate::policy::seal::LinkSealer::new(&[7u8; 32])),
        // An empty block list: the bench measures its lookups on every request.
        phigate::monitor::Hooks {
            blocks: Arc::new(phigate::monitor::BlockList::new(
                1_000,
                Duration::from_secs(900),
            )),
            revoker: None,
        },
    );
    let conn = Connection {
        peer: SocketAddr::from(([127, 0, 0, 1], 40000)),
        identity: ClientIdentity::anonymous(),
        tls: true,
    };
    let mint = || {
        issuer.mint(&issuer.standard_claims(
            "u-1",
            "app-1",
            "user/Patient.r",
            AUDIENCE,
            Duration::from_secs(600),
        ))
    };

    c.bench_function("normalise /Patient/123", |b| {
        b.iter(|| phigate::policy::path::normalise(std::hint::black_box("//Patient/%31%32%33")))
    });
    let token = mint();
    c.bench_function("jose::compact::parse ES256 access token", |b| {
        b.iter(|| phigate::jose::compact::parse(std::hint::black_box(&token)))
    });
    let public = request("/metadata", None);
    c.bench_function("decide public route", |b| {
        b.to_async(&runtime).iter(|| async {
            pipeline
                .decide(
                    &public,
                    &mut RequestBody::complete_from(Bytes::new()),
                    &conn,
                    &mut Facts::default(),
                )
                .await
        })
    });
    let cached = request("/Patient/123", Some(&token));
    c.bench_function("decide cached token", |b| {
        b.to_async(&runtime).iter(|| async {
            pipeline
                .decide(
                    &cached,
                    &mut RequestBody::complete_from(Bytes::new()),
                    &conn,
                    &mut Facts::default(),
                )
                .await
        })
    });
    c.bench_function("decide new token (ES256 verify)", |b| {
        b.to_async(&runtime).iter_batched(
            || request("/Patient/123", Some(&mint())),
            |parts| {
                let pipeline = &pipeline;
                let conn = &conn;
                async move {
                    pipeline
                        .decide(
                            &parts,
                            &mut RequestBody::complete_from(Bytes::new()),
                            conn,
                            &mut Facts::default(),
                        )
                        .await
                }
            },
            BatchSize::SmallInput,
        )
    });
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
