//! Criterion benchmarks of the request decision chain and its parts: path normalisation in a few
//! shapes, strict JWS parsing, `Pipeline::decide` for a public route, a cached token, and a
//! cache miss for each algorithm the dev issuer signs with (ES256, ES384, RS256, PS256, EdDSA),
//! first-match resolution on a generated 200-rule policy, and FHIR classification with its
//! scope check (a read, a search, a batch Bundle). Run: `cargo bench --bench decide`.

#![expect(
    clippy::expect_used,
    reason = "a failed benchmark setup should stop the run at once"
)]

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Method;
use jsonwebtoken::{Algorithm, Header};
use phigate::config::Config;
use phigate::demo::DevIssuer;
use phigate::demo::issuer::{ACCESS_TOKEN_TYP, INITIAL_KID};
use phigate::pipeline::{Connection, Facts, Pipeline};
use phigate::policy::PolicyTable;
use phigate::policy::fhir::{self, Context, FhirRequest, Settings, SmartScope};
use phigate::request_body::RequestBody;
use phigate::telemetry::Metrics;
use phigate::tls::ClientIdentity;
use phigate::token::Verifier;
use tokio::runtime::Runtime;

const ISSUER: &str = "https://bench-issuer.test";
const AUDIENCE: &str = "https://fhir.bench.test";
/// Every algorithm the dev issuer can sign with, each under its own kid.
const ALGORITHMS: [(Algorithm, &str); 5] = [
    (Algorithm::ES256, INITIAL_KID),
    (Algorithm::ES384, "es384"),
    (Algorithm::RS256, "rs256"),
    (Algorithm::PS256, "ps256"),
    (Algorithm::EdDSA, "ed25519"),
];
/// Tokens minted ahead per algorithm for the cache-miss benchmarks (an RSA signature takes
/// about a millisecond, so minting inside the loop would dwarf what is measured).
const MISS_POOL: usize = 500;

fn request(method: Method, path: &str, token: Option<&str>) -> http::request::Parts {
    let mut builder = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "gw.test");
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder
        .body(())
        .map(|r| r.into_parts().0)
        .expect("static request")
}

/// What the decision benchmarks share: the issuer, the pipeline (its verifier fetching from that
/// issuer), and a connection.
struct Chain {
    issuer: DevIssuer,
    pipeline: Pipeline,
    conn: Connection,
    _dir: TempDir,
}

/// A scratch folder for the configuration, removed when the benchmarks end.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Chain {
    /// An issuer with a key of every algorithm, and a pipeline over the example policy that
    /// accepts them all.
    fn start(runtime: &Runtime) -> Self {
        let issuer = runtime
            .block_on(DevIssuer::start(
                SocketAddr::from(([127, 0, 0, 1], 0)),
                ISSUER,
            ))
            .expect("issuer");
        for (alg, kid) in ALGORITHMS.iter().skip(1) {
            issuer.add_key(*alg, kid).expect("dev key");
        }
        let dir =
            TempDir(std::env::temp_dir().join(format!("phigate-bench-{}", std::process::id())));
        std::fs::create_dir_all(&dir.0).expect("bench dir");
        std::fs::write(
            dir.0.join("policy.yaml"),
            include_str!("../policies/example.yaml"),
        )
        .expect("policy");
        let config_text = format!(
            "listen:\n  address: \"127.0.0.1:0\"\n  insecure_plaintext: true\nupstream:\n  url: \"http://127.0.0.1:9/fhir\"\nissuers:\n  - issuer: \"{ISSUER}\"\n    jwks_uri: \"{}\"\n    audiences: [\"{AUDIENCE}\"]\n    algorithms: [ES256, ES384, RS256, PS256, EdDSA]\npolicy_file: policy.yaml\n",
            issuer.jwks_uri()
        );
        let config = Config::from_yaml(&config_text, &dir.0.join("phigate.yaml")).expect("config");
        let verifier = Arc::new(
            Verifier::new(&config.issuers, &config.tokens, Arc::new(Metrics::new()))
                .expect("verifier"),
        );
        // Dropping the handles detaches the refreshers; they run as long as the runtime.
        drop(runtime.block_on(async { verifier.spawn_refreshers() }));
        while !verifier.is_ready() {
            std::thread::sleep(Duration::from_millis(10));
        }
        let pipeline = pipeline(&config, Arc::clone(&verifier));
        let conn = Connection {
            peer: SocketAddr::from(([127, 0, 0, 1], 40000)),
            identity: ClientIdentity::anonymous(),
            tls: true,
        };
        Self {
            issuer,
            pipeline,
            conn,
            _dir: dir,
        }
    }

    /// A token for `GET /Patient/123` signed with the key `kid`.
    fn mint(&self, alg: Algorithm, kid: &str) -> String {
        let claims = self.issuer.standard_claims(
            "u-1",
            "app-1",
            "user/Patient.r",
            AUDIENCE,
            Duration::from_secs(600),
        );
        let header = Header {
            typ: Some(ACCESS_TOKEN_TYP.to_owned()),
            kid: Some(kid.to_owned()),
            ..Header::new(alg)
        };
        self.issuer
            .sign_with(kid, header, &claims)
            .expect("dev key signs")
    }

    async fn decide(&self, parts: &http::request::Parts) -> bool {
        self.pipeline
            .decide(
                parts,
                &mut RequestBody::complete_from(Bytes::new()),
                &self.conn,
                &mut Facts::default(),
            )
            .await
            .is_ok()
    }
}

fn pipeline(config: &Config, verifier: Arc<Verifier>) -> Pipeline {
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
    Pipeline::new(
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
    )
}

fn bench_normalise(c: &mut Criterion) {
    let mut group = c.benchmark_group("normalise");
    let long = "/Patient/123/Observation/abc-def/_history/7".repeat(4);
    for (shape, path) in [
        ("plain /Patient/123", "/Patient/123"),
        ("escaped //Patient/%31%32%33", "//Patient/%31%32%33"),
        ("vread /Patient/123/_history/2", "/Patient/123/_history/2"),
        ("non-ASCII /Binary/%c3%a9", "/Binary/%c3%a9"),
        ("24 segments", long.as_str()),
        ("refused /Patient/%2e%2e/x", "/Patient/%2e%2e/x"),
    ] {
        group.bench_function(shape, |b| {
            b.iter(|| phigate::policy::path::normalise(std::hint::black_box(path)))
        });
    }
    group.finish();
}

fn bench_decide(c: &mut Criterion, runtime: &Runtime, chain: &Chain) {
    let token = chain.mint(Algorithm::ES256, INITIAL_KID);
    c.bench_function("jose::compact::parse ES256 access token", |b| {
        b.iter(|| phigate::jose::compact::parse(std::hint::black_box(&token)))
    });
    let public = request(Method::GET, "/metadata", None);
    assert!(
        runtime.block_on(chain.decide(&public)),
        "public route allowed"
    );
    c.bench_function("decide public route", |b| {
        b.to_async(runtime).iter(|| chain.decide(&public))
    });
    let cached = request(Method::GET, "/Patient/123", Some(&token));
    assert!(runtime.block_on(chain.decide(&cached)), "token allowed");
    c.bench_function("decide cached token", |b| {
        b.to_async(runtime).iter(|| chain.decide(&cached))
    });
}

/// `decide` for a token the verified-token cache cannot answer, per algorithm: each pass mints
/// (untimed) tokens never seen before, each with its own `jti`, so every decision verifies a
/// signature and validates the claims, as for a new token in service.
fn bench_cache_miss(c: &mut Criterion, runtime: &Runtime, chain: &Chain) {
    let mut group = c.benchmark_group("decide cache miss");
    for (alg, kid) in ALGORITHMS {
        let fresh = |count: usize| -> Vec<_> {
            (0..count)
                .map(|_| request(Method::GET, "/Patient/123", Some(&chain.mint(alg, kid))))
                .collect()
        };
        assert!(
            runtime.block_on(chain.decide(&fresh(1)[0])),
            "{kid} token allowed"
        );
        group.bench_function(format!("{alg:?}"), |b| {
            b.to_async(runtime).iter_custom(|iters| async move {
                let mut measured = Duration::ZERO;
                let mut left = usize::try_from(iters).unwrap_or(usize::MAX);
                while left > 0 {
                    let pass = fresh(left.min(MISS_POOL));
                    let start = Instant::now();
                    for parts in &pass {
                        std::hint::black_box(chain.decide(parts).await);
                    }
                    measured += start.elapsed();
                    left -= pass.len();
                }
                measured
            })
        });
    }
    group.finish();
}

/// First-match resolution on 200 rules, `/svc{i}/Patient/{id}` each, as `PolicyTable::resolve`
/// runs it: the path normalised, then the rules tried in order.
fn bench_policy(c: &mut Criterion) {
    let mut yaml = String::from("rules:\n");
    for i in 0..200 {
        let _ = write!(
            yaml,
            "  - name: rule-{i}\n    methods: [GET]\n    path: /svc{i}/Patient/{{id}}\n    scopes: [user/Patient.r]\n"
        );
    }
    let table = PolicyTable::from_yaml(&yaml, Path::new("generated.yaml")).expect("200 rules");
    assert_eq!(table.rules().len(), 200);
    let mut group = c.benchmark_group("policy resolve, 200 rules");
    for (case, path) in [
        ("first rule", "/svc0/Patient/123"),
        ("rule 100", "/svc99/Patient/123"),
        ("last rule", "/svc199/Patient/123"),
        ("no rule", "/elsewhere/Patient/123"),
    ] {
        let uri: http::Uri = path.parse().expect("static uri");
        group.bench_function(case, |b| {
            b.iter(|| {
                table
                    .resolve(&Method::GET, std::hint::black_box(&uri))
                    .is_ok()
            })
        });
    }
    group.finish();
}

/// FHIR classification with the SMART scope check it feeds, for a `fhir: smart` rule.
fn bench_fhir(c: &mut Criterion) {
    let settings = Settings {
        contexts: vec![Context::Patient, Context::User, Context::System],
        resource_types: None,
        allowed_search_params: Vec::new(),
        export_contexts: vec![Context::System],
    };
    let grants: Vec<SmartScope> = ["user/Patient.r", "user/Observation.rs"]
        .iter()
        .map(|s| SmartScope::parse(s).expect("SMART scope"))
        .collect();
    let mut group = c.benchmark_group("fhir authorize");
    for (case, path, query) in [
        ("read GET /Patient/123", "/Patient/123", None),
        (
            "search GET /Observation?patient&code&_count",
            "/Observation",
            Some("patient=Patient%2F123&code=http%3A%2F%2Floinc.org%7C8867-4&_count=50"),
        ),
    ] {
        let request = FhirRequest {
            method: &Method::GET,
            path,
            query,
            form_body: None,
            if_none_exist: None,
        };
        assert!(
            fhir::authorize(&request, &grants, None, &settings).is_ok(),
            "{case}"
        );
        group.bench_function(case, |b| {
            b.iter(|| fhir::authorize(std::hint::black_box(&request), &grants, None, &settings))
        });
    }
    let bundle = br#"{"resourceType":"Bundle","type":"batch","entry":[
        {"request":{"method":"GET","url":"Patient/123"}},
        {"request":{"method":"GET","url":"Observation?patient=Patient%2F123&_count=10"}},
        {"request":{"method":"GET","url":"Observation/abc"}}]}"#;
    assert!(
        fhir::authorize_bundle(bundle, &grants, None, &settings).is_ok(),
        "bundle"
    );
    group.bench_function("batch Bundle of 3 reads and searches", |b| {
        b.iter(|| fhir::authorize_bundle(std::hint::black_box(bundle), &grants, None, &settings))
    });
    group.finish();
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    bench_normalise(c);
    bench_policy(c);
    bench_fhir(c);
    let chain = Chain::start(&runtime);
    bench_decide(c, &runtime, &chain);
    bench_cache_miss(c, &runtime, &chain);
}

criterion_group!(benches, bench);
criterion_main!(benches);
