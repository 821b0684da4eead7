//! Revocation end to end: a token cached as valid is refused on its next request once a source
//! lists it — HTTP (with ETag), file and Redis (set + pub/sub, shared by two gateway processes)
//! — and a stale or unreachable source fails closed with 503 until it recovers.

use std::time::Duration;

use phigate::tls::dev_ca::DevCa;
use serde_json::json;

use crate::support::documents::DocumentServer;
use crate::support::{
    Harness, INVALID_TOKEN, Options, TestClient, assert_no_leak, eventually, eventually_status,
};

const EMPTY_LIST: &str = r#"{"version": 1, "entries": []}"#;

fn list(entries: serde_json::Value) -> String {
    json!({"version": 1, "entries": entries}).to_string()
}

fn claims_with_jti(harness: &Harness) -> (String, String, i64) {
    let claims = harness.claims("user/Patient.r");
    let jti = claims["jti"].as_str().unwrap().to_owned();
    let exp = claims["exp"].as_i64().unwrap();
    (harness.mint(&claims), jti, exp)
}

/// A gateway whose one revocation source is `revoked.json`, an empty list at first.
async fn file_source_harness() -> Harness {
    Harness::with(Options {
        revocation: "revocation:\n  sources:\n    - file: revoked.json\n      interval: 1s\n      max_stale: 10s\n".into(),
        files: vec![("revoked.json", EMPTY_LIST.to_owned())],
        ..Options::default()
    })
    .await
}

/// Replaces `revoked.json` with one rename, so the source never reads half a list.
fn publish(harness: &Harness, entries: serde_json::Value) {
    let aside = harness.dir.path().join("revoked.json.tmp");
    std::fs::write(&aside, list(entries)).unwrap();
    std::fs::rename(&aside, harness.dir.path().join("revoked.json")).unwrap();
}

#[tokio::test]
async fn file_source_revokes_a_cached_token_and_cutoffs_apply() {
    let harness = file_source_harness().await;
    let (token, jti, exp) = claims_with_jti(&harness);
    let client = harness.client();
    assert_eq!(
        client.get_with_token("/Patient/123", &token).await.status,
        200
    );
    // The verified token is now cached; revocation must still win on the next request.
    replace_file(
        &harness,
        "revoked.json",
        &list(json!([{"jti": jti, "exp": exp}])),
    );
    eventually_status(&client, "/Patient/123", &token, 401).await;
    let response = client.get_with_token("/Patient/123", &token).await;
    assert_eq!(response.headers["www-authenticate"], INVALID_TOKEN);
    assert_no_leak(&response, &[&token, &jti]);

    // "All tokens of app-1 issued before T": older refused, newer allowed.
    let now = harness.claims("x")["iat"].as_i64().unwrap();
    replace_file(
        &harness,
        "revoked.json",
        &list(json!([{"client_id": "app-1", "before": now}])),
    );
    let mut old = harness.claims("user/Patient.r");
    old["iat"] = json!(now - 5);
    let old = harness.mint(&old);
    eventually_status(&client, "/Patient/123", &old, 401).await;
    let mut new = harness.claims("user/Patient.r");
    new["iat"] = json!(now + 1);
    assert_eq!(
        client
            .get_with_token("/Patient/123", &harness.mint(&new))
            .await
            .status,
        200
    );
    // A half-written list is refused and the last good list stays in force. Every earlier list
    // was renamed into place, so no read so far failed: the first failed refresh is the
    // half-written list being read and refused, and only after it does "unchanged" mean
    // anything.
    assert_eq!(refresh_errors(&harness).await, 0);
    replace_file(&harness, "revoked.json", "{\"version\": 1, \"entr");
    eventually(Duration::from_secs(15), || async {
        refresh_errors(&harness).await > 0
    })
    .await;
    assert_eq!(
        client.get_with_token("/Patient/123", &old).await.status,
        401
    );
}

/// Writes `name` in the harness folder whole: written aside, then renamed into place, so a
/// reader never sees it half-written unless the content itself is.
fn replace_file(harness: &Harness, name: &str, text: &str) {
    let aside = harness.dir.path().join(format!("{name}.tmp"));
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(&aside, harness.dir.path().join(name)).unwrap();
}

/// Failed refreshes of the `revoked.json` file source so far, from `/metrics`.
async fn refresh_errors(harness: &Harness) -> u64 {
    let (_, metrics) = harness.admin_get("/metrics").await;
    metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix(
                "phigate_revocation_refreshes_total{source=\"file:revoked.json\",result=\"error\"} ",
            )
        })
        .map_or(0, |count| count.trim().parse().unwrap())
}

/// README: `token_sha256` is the base64url SHA-256 of the token text, computed here apart from
/// phigate's own digest.
fn token_sha256(token: &str) -> String {
    use base64::Engine;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

#[tokio::test]
async fn a_token_listed_by_its_sha256_is_refused_even_once_cached() {
    let harness = file_source_harness().await;
    let (token, _, exp) = claims_with_jti(&harness);
    let other = harness.token("user/Patient.r");
    let client = harness.client();
    assert_eq!(
        client.get_with_token("/Patient/123", &token).await.status,
        200
    );
    publish(
        &harness,
        json!([{"token_sha256": token_sha256(&token), "exp": exp}]),
    );
    eventually_status(&client, "/Patient/123", &token, 401).await;
    let response = client.get_with_token("/Patient/123", &token).await;
    assert_eq!(response.headers["www-authenticate"], INVALID_TOKEN);
    assert_no_leak(&response, &[&token, &token_sha256(&token)]);
    assert_eq!(
        client.get_with_token("/Patient/123", &other).await.status,
        200,
        "only the listed token is revoked"
    );
}

#[tokio::test]
async fn a_stale_source_fails_closed_with_503_and_recovers() {
    let options = Options {
        revocation: "revocation:\n  sources:\n    - file: revoked.json\n      interval: 500ms\n      max_stale: 2s\n".into(),
        files: vec![("revoked.json", EMPTY_LIST.to_owned())],
        ..Options::default()
    };
    let harness = Harness::with(options).await;
    let token = harness.token("user/Patient.r");
    let client = harness.client();
    assert_eq!(
        client.get_with_token("/Patient/123", &token).await.status,
        200
    );
    std::fs::remove_file(harness.dir.path().join("revoked.json")).unwrap();
    eventually_status(&client, "/Patient/123", &token, 503).await;
    let response = client.get_with_token("/Patient/123", &token).await;
    assert!(
        response.headers.get("www-authenticate").is_none(),
        "a stale list must not blame the token"
    );
    assert_eq!(response.headers["retry-after"], "5");
    assert_eq!(harness.admin_get("/readyz").await.0, 503);
    // Public rules need no list.
    assert_eq!(client.get("/metadata").await.status, 200);
    std::fs::write(harness.dir.path().join("revoked.json"), EMPTY_LIST).unwrap();
    eventually_status(&client, "/Patient/123", &token, 200).await;
    let (_, metrics) = harness.admin_get("/metrics").await;
    assert!(
        metrics.contains("phigate_revocation_list_age_seconds{source=\"file:revoked.json\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn http_source_honours_etag_and_revokes() {
    let server = DocumentServer::start(EMPTY_LIST).await;
    let options = Options {
        revocation: format!(
            "revocation:\n  sources:\n    - http: \"http://{}/revoked.json\"\n      interval: 300ms\n      max_stale: 10s\n",
            server.addr
        ),
        ..Options::default()
    };
    let harness = Harness::with(options).await;
    let (token, jti, exp) = claims_with_jti(&harness);
    let client = harness.client();
    assert_eq!(
        client.get_with_token("/Patient/123", &token).await.status,
        200
    );
    for _ in 0..50 {
        if server.not_modified() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        server.not_modified() > 0,
        "the source never sent If-None-Match"
    );
    server.publish(list(json!([{"jti": jti, "exp": exp}])));
    eventually_status(&client, "/Patient/123", &token, 401).await;
}

fn redis_connection() -> redis::Connection {
    redis::Client::open("redis://127.0.0.1:6379/")
        .unwrap()
        .get_connection()
        .expect("a Redis server on 127.0.0.1:6379")
}

/// Adds a revocation entry for `jti` to the set `key` and publishes it on `channel`, as an
/// operator would (README: SADD, then PUBLISH).
fn revoke_in_redis(
    connection: &mut redis::Connection,
    (key, channel): (&str, &str),
    jti: &str,
    exp: i64,
) {
    let entry = json!({"jti": jti, "exp": exp}).to_string();
    let _: () = redis::cmd("SADD")
        .arg(key)
        .arg(&entry)
        .query(connection)
        .unwrap();
    let _: () = redis::cmd("PUBLISH")
        .arg(channel)
        .arg(&entry)
        .query(connection)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_revocation_reaches_two_gateway_processes() {
    let key = format!("phigate-test:{}", uuid::Uuid::new_v4());
    let channel = format!("{key}:events");
    let options = Options {
        revocation: format!(
            "revocation:\n  sources:\n    - redis: \"redis://127.0.0.1:6379/\"\n      key: \"{key}\"\n      channel: \"{channel}\"\n      interval: 5s\n      max_stale: 30s\n"
        ),
        ..Options::default()
    };
    let harness = Harness::with(options).await;
    // The second gateway is the binary, started from the same configuration.
    let (child, other_addr) = crate::support::spawn_binary_gateway(&harness.config_file).await;
    let other = TestClient::new(other_addr, &harness.ca, None, false);
    let (token, jti, exp) = claims_with_jti(&harness);
    let client = harness.client();
    assert_eq!(
        client.get_with_token("/Patient/123", &token).await.status,
        200
    );
    eventually_status(&other, "/Patient/123", &token, 200).await;

    let mut redis = redis_connection();
    revoke_in_redis(&mut redis, (&key, &channel), &jti, exp);
    eventually_status(&client, "/Patient/123", &token, 401).await;
    eventually_status(&other, "/Patient/123", &token, 401).await;

    crate::support::stop_binary_gateway(child).await;
    let _: () = redis::cmd("DEL").arg(&key).query(&mut redis).unwrap();
}

#[tokio::test]
async fn unreachable_redis_is_never_fresh_so_tokens_get_503() {
    let options = Options {
        revocation: "revocation:\n  sources:\n    - redis: \"redis://127.0.0.1:1/\"\n      interval: 1s\n      max_stale: 2s\n".into(),
        wait_ready: false,
        ..Options::default()
    };
    let harness = Harness::with(options).await;
    let token = harness.token("user/Patient.r");
    let response = harness
        .client()
        .get_with_token("/Patient/123", &token)
        .await;
    assert_eq!(response.status, 503);
    assert!(harness.upstream.received().is_empty());
    assert_eq!(harness.admin_get("/readyz").await.0, 503);
}

// Issue #13 point 6: an entry naming its issuer revokes that issuer's token only — the same
// `jti` from another issuer is another token.
#[tokio::test]
async fn an_entry_naming_another_issuer_leaves_this_issuers_token_alone() {
    let harness = file_source_harness().await;
    let (token, jti, exp) = claims_with_jti(&harness);
    let client = harness.client();
    assert_eq!(
        client.get_with_token("/Patient/123", &token).await.status,
        200
    );
    // The list was read (a marker entry of this issuer, for another token, shows it) and the
    // token still passes.
    let (marker, marker_jti, marker_exp) = claims_with_jti(&harness);
    publish(
        &harness,
        json!([
            {"jti": jti, "exp": exp, "iss": "https://another-issuer.test"},
            {"client_id": "app-1", "before": exp, "iss": "https://another-issuer.test"},
            {"jti": marker_jti, "exp": marker_exp, "iss": crate::support::ISSUER},
        ]),
    );
    eventually_status(&client, "/Patient/123", &marker, 401).await;
    assert_eq!(
        client.get_with_token("/Patient/123", &token).await.status,
        200
    );
    publish(
        &harness,
        json!([{"jti": jti, "exp": exp, "iss": crate::support::ISSUER}]),
    );
    eventually_status(&client, "/Patient/123", &token, 401).await;
}

/// A gateway whose revocation source cannot be read: once the source has tried and failed (so
/// the 503 is its verdict, not its start), a token request gets 503, `/readyz` is 503 and
/// nothing reaches the upstream.
async fn assert_failing_source_fails_closed(options: Options) {
    let refused = Harness::with(Options {
        wait_ready: false,
        ..options
    })
    .await;
    eventually(Duration::from_secs(20), || async {
        let (_, metrics) = refused.admin_get("/metrics").await;
        metrics.lines().any(|line| {
            line.starts_with("phigate_revocation_refreshes_total{")
                && line.contains("result=\"error\"")
                && !line.ends_with(" 0")
        })
    })
    .await;
    let token = refused.token("user/Patient.r");
    let response = refused
        .client()
        .get_with_token("/Patient/123", &token)
        .await;
    assert_eq!(response.status, 503);
    assert_eq!(refused.admin_get("/readyz").await.0, 503);
    assert!(refused.upstream.received().is_empty());
}

/// A Redis server of its own on a free port, killed when dropped.
struct OwnRedis {
    _server: tokio::process::Child,
    port: u16,
}

impl OwnRedis {
    /// One that demands `password` (`requirepass`).
    async fn with_password(password: &str) -> Self {
        Self::start(
            |port| {
                vec![
                    "--port".into(),
                    port.to_string(),
                    "--requirepass".into(),
                    password.into(),
                ]
            },
            |port| redis::Client::open(format!("redis://:{password}@127.0.0.1:{port}/")).unwrap(),
        )
        .await
    }

    /// One that speaks TLS only, with `cert` issued by `ca` (written into `dir`).
    async fn with_tls(dir: &std::path::Path, ca: &DevCa) -> Self {
        let (cert, key) = ca
            .issue_server(&["127.0.0.1"])
            .unwrap()
            .write_pem_files(dir, "redis-server")
            .unwrap();
        let ca_file = ca.write_cert_pem(dir, "redis-server-ca.pem").unwrap();
        let ca_pem = ca.cert_pem().into_bytes();
        let path = |p: &std::path::Path| p.display().to_string();
        Self::start(
            |port| {
                vec![
                    "--port".into(),
                    "0".into(),
                    "--tls-port".into(),
                    port.to_string(),
                    "--tls-cert-file".into(),
                    path(&cert),
                    "--tls-key-file".into(),
                    path(&key),
                    "--tls-ca-cert-file".into(),
                    path(&ca_file),
                    "--tls-auth-clients".into(),
                    "no".into(),
                ]
            },
            |port| tls_client(port, &ca_pem),
        )
        .await
    }

    async fn start(
        args: impl Fn(u16) -> Vec<String>,
        client: impl Fn(u16) -> redis::Client,
    ) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = tokio::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(args(port))
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server must be installed (.ci/run installs it)");
        let client = client(port);
        crate::support::eventually(Duration::from_secs(10), || {
            let client = client.clone();
            async move { client.get_connection().is_ok() }
        })
        .await;
        Self {
            _server: server,
            port,
        }
    }
}

/// A client of the TLS Redis on `port` that trusts `ca_pem`.
fn tls_client(port: u16, ca_pem: &[u8]) -> redis::Client {
    redis::Client::build_with_tls(
        format!("rediss://127.0.0.1:{port}/"),
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(ca_pem.to_vec()),
        },
    )
    .unwrap()
}

/// `redis_password_file`: a Redis that demands a password is reached with the file's password,
/// and revocations published there take effect; without the file the source never becomes
/// fresh, so tokens get 503 (fail closed), and the password appears in no answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_protected_redis_is_reached_with_the_password_file() {
    let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
    let redis = OwnRedis::with_password(&password).await;
    let key = format!("phigate-test:{}", uuid::Uuid::new_v4());
    let channel = format!("{key}:events");
    let source = format!(
        "revocation:\n  sources:\n    - redis: \"redis://127.0.0.1:{}/\"\n      key: \"{key}\"\n      channel: \"{channel}\"\n      interval: 1s\n      max_stale: 3s\n",
        redis.port
    );
    let harness = Harness::with(Options {
        revocation: format!("redis_password_file: redis-password\n{source}"),
        files: vec![("redis-password", format!("{password}\n"))],
        ..Options::default()
    })
    .await;
    let (token, jti, exp) = claims_with_jti(&harness);
    let client = harness.client();
    eventually_status(&client, "/Patient/123", &token, 200).await;
    let mut connection =
        redis::Client::open(format!("redis://:{password}@127.0.0.1:{}/", redis.port))
            .unwrap()
            .get_connection()
            .unwrap();
    revoke_in_redis(&mut connection, (&key, &channel), &jti, exp);
    eventually_status(&client, "/Patient/123", &token, 401).await;
    let refused = client.get_with_token("/Patient/123", &token).await;
    crate::support::assert_no_leak(&refused, &[&password]);

    assert_failing_source_fails_closed(Options {
        revocation: source,
        ..Options::default()
    })
    .await;
}

/// `rediss://`: phigate reaches a Redis that speaks only TLS, verifying its certificate against
/// `redis_ca_file`, and revocations published there take effect. Without the CA file the
/// server's certificate chains to no trusted root, so the source never becomes fresh and tokens
/// get 503 (fail closed); a plaintext URL to the TLS port never becomes fresh either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_redis_is_reached_over_rediss_with_its_ca_file_and_refused_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca = DevCa::new("redis CA").unwrap();
    let redis = OwnRedis::with_tls(dir.path(), &ca).await;
    let key = format!("phigate-test:{}", uuid::Uuid::new_v4());
    let channel = format!("{key}:events");
    let source = |scheme: &str| {
        format!(
            "revocation:\n  sources:\n    - redis: \"{scheme}://127.0.0.1:{}/\"\n      key: \"{key}\"\n      channel: \"{channel}\"\n      interval: 1s\n      max_stale: 3s\n",
            redis.port
        )
    };
    let harness = Harness::with(Options {
        revocation: format!("redis_ca_file: redis-ca.pem\n{}", source("rediss")),
        files: vec![("redis-ca.pem", ca.cert_pem())],
        ..Options::default()
    })
    .await;
    let (token, jti, exp) = claims_with_jti(&harness);
    let client = harness.client();
    eventually_status(&client, "/Patient/123", &token, 200).await;
    let mut connection = tls_client(redis.port, ca.cert_pem().as_bytes())
        .get_connection()
        .unwrap();
    revoke_in_redis(&mut connection, (&key, &channel), &jti, exp);
    eventually_status(&client, "/Patient/123", &token, 401).await;

    for (revocation, files) in [
        // The server's certificate chains to the test CA, which the Mozilla roots do not hold.
        (source("rediss"), vec![]),
        // Another CA's file.
        (
            format!("redis_ca_file: other-ca.pem\n{}", source("rediss")),
            vec![("other-ca.pem", DevCa::new("other CA").unwrap().cert_pem())],
        ),
        // Plaintext to a TLS port.
        (source("redis"), vec![]),
    ] {
        assert_failing_source_fails_closed(Options {
            revocation,
            files,
            ..Options::default()
        })
        .await;
    }
}
