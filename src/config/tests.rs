use super::*;

const POLICY: &str =
    "rules:\n  - name: metadata\n    methods: [GET]\n    path: /metadata\n    public: true\n";

const GOOD: &str = r#"listen:
  address: "127.0.0.1:8443"
  tls:
    cert_file: certs/server.crt
    key_file: certs/server.key
upstream:
  url: "http://127.0.0.1:8080/fhir/"
issuers:
  - issuer: "https://as.test"
    jwks_uri: "https://as.test/jwks"
    audiences: ["https://fhir.test"]
    algorithms: [ES256, RS256]
policy_file: policy.yaml
"#;

/// Loads `text` as `dir/phigate.yaml` next to a valid policy.
fn load(text: &str) -> (tempfile::TempDir, Result<Config, ConfigError>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
    let path = dir.path().join("phigate.yaml");
    std::fs::write(&path, text).unwrap();
    let result = Config::load(&path);
    (dir, result)
}

/// Checks that replacing `from` with `to` in the good config yields one problem on `line`
/// whose message contains `message`.
#[track_caller]
fn check(from: &str, to: &str, line: u64, message: &str) {
    assert!(GOOD.contains(from), "{from}");
    let (_dir, result) = load(&GOOD.replacen(from, to, 1));
    let err = result.expect_err("config should be refused");
    let problem = &err.problems[0];
    assert_eq!(problem.line, line, "{err}");
    assert!(problem.message.contains(message), "{err}");
    assert!(err.to_string().contains("phigate.yaml"), "{err}");
}

#[test]
fn good_config_loads_with_defaults_and_resolves_paths() {
    let (dir, result) = load(GOOD);
    let config = result.unwrap();
    let Transport::Tls(files) = &config.listen.transport else {
        panic!("tls expected")
    };
    assert_eq!(files.cert_file, dir.path().join("certs/server.crt"));
    assert_eq!(config.upstream.base_path, "/fhir");
    assert_eq!(config.upstream.authority.as_str(), "127.0.0.1:8080");
    assert!(!config.upstream.forward_token);
    assert_eq!(config.tokens.clock_skew.as_secs(), 30);
    assert_eq!(config.tokens.max_lifetime, Duration::from_secs(900));
    assert_eq!(config.admin.address, "127.0.0.1:9090".parse().unwrap());
    assert!(config.issuers[0].algorithms.contains(Algorithm::RS256));
}

#[test]
fn bad_values_name_the_line_and_the_problem() {
    check(
        "algorithms: [ES256, RS256]",
        "algorithms: [HS256]",
        12,
        "symmetric",
    );
    check(
        "algorithms: [ES256, RS256]",
        "algorithms: [none]",
        12,
        "none is never allowed",
    );
    check(
        "algorithms: [ES256, RS256]",
        "algorithms: []",
        12,
        "at least one",
    );
    check(
        "algorithms: [ES256, RS256]",
        "algorithms: [ES512]",
        12,
        "not supported",
    );
    check(
        "audiences: [\"https://fhir.test\"]",
        "audiences: []",
        11,
        "audience",
    );
    check(
        "jwks_uri: \"https://as.test/jwks\"",
        "jwks_uri: \"/jwks\"",
        10,
        "jwks_uri",
    );
    check(
        "address: \"127.0.0.1:8443\"",
        "address: \"localhost\"",
        2,
        "listen.address",
    );
    check(
        "url: \"http://127.0.0.1:8080/fhir/\"",
        "url: \"ftp://x/fhir\"",
        7,
        "upstream.url",
    );
    check(
        "url: \"http://127.0.0.1:8080/fhir/\"",
        "url: \"http://x/fhir?a=1\"",
        7,
        "upstream.url",
    );
}

#[test]
fn token_bounds_are_enforced() {
    let with_tokens =
        |tokens: &str| GOOD.replace("policy_file:", &format!("tokens:\n{tokens}policy_file:"));
    let (_dir, result) = load(&with_tokens("  clock_skew: 10m\n"));
    let err = result.unwrap_err();
    assert_eq!(err.problems[0].line, 14);
    assert!(err.problems[0].message.contains("clock_skew"), "{err}");
    let (_dir, result) = load(&with_tokens("  max_lifetime: soon\n"));
    assert!(
        result.unwrap_err().problems[0]
            .message
            .contains("tokens.max_lifetime")
    );
    let (_dir, result) = load(&with_tokens("  clock_skew: 5m\n  max_lifetime: 5m\n"));
    assert_eq!(result.unwrap().tokens.clock_skew.as_secs(), 300);
}

#[test]
fn the_verified_token_cache_is_bounded_in_entries_and_bytes() {
    let (_dir, result) = load(GOOD);
    let tokens = result.unwrap().tokens;
    assert_eq!(
        (tokens.cache_max_entries, tokens.cache_max_bytes),
        (10_000, 4_194_304)
    );
    for (section, expected) in [
        (
            "tokens:\n  cache_max_entries: 0\n",
            Err("tokens.cache_max_entries must be between 1 and 10000000"),
        ),
        (
            "tokens:\n  cache_max_bytes: 4096\n",
            Err("tokens.cache_max_bytes must be between 65536 and 1073741824"),
        ),
        (
            "tokens:\n  cache_max_entries: 500\n  cache_max_bytes: 1048576\n",
            Ok(()),
        ),
    ] {
        check_section(section, expected);
    }
}

#[test]
fn unknown_keys_and_syntax_errors_are_refused_with_their_line() {
    let (_dir, result) = load(&GOOD.replace("policy_file:", "polcy_file: x\npolicy_file:"));
    let err = result.unwrap_err();
    assert_eq!(err.problems[0].line, 13, "{err}");
    assert!(
        err.problems[0].message.starts_with("unknown field"),
        "{err}"
    );
    let (_dir, result) = load("listen: [unclosed\n");
    assert!(result.unwrap_err().problems[0].line >= 1);
}

#[test]
fn plaintext_needs_the_insecure_knob_and_excludes_tls() {
    let no_tls = "listen:\n  address: \"127.0.0.1:8443\"\n";
    let tls_block = "listen:\n  address: \"127.0.0.1:8443\"\n  tls:\n    cert_file: certs/server.crt\n    key_file: certs/server.key\n";
    let (_dir, result) = load(&GOOD.replace(tls_block, no_tls));
    assert!(
        result.unwrap_err().problems[0]
            .message
            .contains("insecure_plaintext")
    );
    let insecure = "listen:\n  address: \"127.0.0.1:8443\"\n  insecure_plaintext: true\n";
    let (_dir, result) = load(&GOOD.replace(tls_block, insecure));
    assert!(matches!(
        result.unwrap().listen.transport,
        Transport::InsecurePlaintext
    ));
    let both = format!("{tls_block}  insecure_plaintext: true\n");
    let (_dir, result) = load(&GOOD.replace(tls_block, &both));
    assert!(
        result.unwrap_err().problems[0]
            .message
            .contains("choose one")
    );
}

#[test]
fn client_auth_modes() {
    let mtls =
        "    key_file: certs/server.key\n    client_ca_file: ca.crt\n    client_auth: MODE\n";
    for (mode, expected) in [
        ("required", Some(ClientAuth::Required)),
        ("optional", Some(ClientAuth::Optional)),
        ("maybe", None),
    ] {
        let (_dir, result) = load(&GOOD.replace(
            "    key_file: certs/server.key\n",
            &mtls.replace("MODE", mode),
        ));
        match (result, expected) {
            (Ok(config), Some(expected)) => {
                let Transport::Tls(files) = config.listen.transport else {
                    panic!()
                };
                assert_eq!(files.client_ca.unwrap().auth, expected);
            }
            (Err(err), None) => assert!(err.problems[0].message.contains("client_auth"), "{err}"),
            (other, _) => panic!("{mode}: unexpected {:?}", other.map(|_| ())),
        }
    }
}

#[test]
fn event_loops_are_per_core_by_default_or_shared() {
    for (value, expected) in [
        (None, Some(EventLoops::PerCore)),
        (Some("shared"), Some(EventLoops::Shared)),
        (Some("per_core"), Some(EventLoops::PerCore)),
        (Some("per-core"), None),
        (Some("4"), None),
    ] {
        let text = match value {
            Some(value) => GOOD.replace("listen:\n", &format!("listen:\n  event_loops: {value}\n")),
            None => GOOD.to_owned(),
        };
        let (_dir, result) = load(&text);
        match (result, expected) {
            (Ok(config), Some(expected)) => assert_eq!(config.listen.event_loops, expected),
            (Err(err), None) => {
                let problem = &err.problems[0];
                assert_eq!(problem.line, 2, "{err}");
                assert!(
                    problem
                        .message
                        .contains("listen.event_loops must be per_core or shared"),
                    "{err}"
                );
            }
            (other, _) => panic!("{value:?}: unexpected {:?}", other.map(|_| ())),
        }
    }
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let text = GOOD
        .replace("algorithms: [ES256, RS256]", "algorithms: [HS256]")
        .replace("127.0.0.1:8443", "nowhere");
    let (_dir, result) = load(&text);
    assert_eq!(result.unwrap_err().problems.len(), 2);
}

#[test]
fn a_missing_policy_file_is_a_problem_naming_it() {
    let (_dir, result) = load(&GOOD.replace("policy.yaml", "absent.yaml"));
    let err = result.unwrap_err();
    assert!(err.to_string().contains("absent.yaml"), "{err}");
}

#[test]
fn the_shipped_example_config_loads() {
    let path = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/phigate.yaml"
    ));
    let config = Config::load(path).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(config.revocation.len(), 1);
    assert!(config.dpop.replay_redis.is_some());
    assert_eq!(
        config.listen.public_base_url.as_deref(),
        Some("https://fhir-gw.example.org")
    );
}

/// The good config with a public base URL, so that a `dpop:` section is valid.
fn with_base_url() -> String {
    GOOD.replace(
        "  address: \"127.0.0.1:8443\"\n",
        "  address: \"127.0.0.1:8443\"\n  public_base_url: \"https://gw.test\"\n",
    )
}

/// Loads the good config (with a public base URL) with `section` added before `policy_file:`:
/// `Ok(())` when it loads, else a piece of the first problem's message.
#[track_caller]
fn check_section(section: &str, expected: Result<(), &str>) {
    let text = with_base_url().replace("policy_file:", &format!("{section}policy_file:"));
    let (_dir, result) = load(&text);
    match (result, expected) {
        (Ok(_), Ok(())) => {}
        (Err(err), Err(piece)) => assert!(err.problems[0].message.contains(piece), "{err}"),
        (result, expected) => panic!("{section}: {:?}, expected {expected:?}", result.err()),
    }
}

#[test]
fn zero_is_refused_where_it_means_nothing_and_kept_where_it_does() {
    for (section, key) in [
        ("tokens:\n  max_lifetime: 0s\n", "tokens.max_lifetime"),
        ("tokens:\n  jwks_cache_ttl: 0s\n", "tokens.jwks_cache_ttl"),
        ("tokens:\n  jwks_max_stale: 0ms\n", "tokens.jwks_max_stale"),
        (
            "tokens:\n  jwks_refetch_cooldown: 0s\n",
            "tokens.jwks_refetch_cooldown",
        ),
        (
            "tokens:\n  jwks_fetch_timeout: 0s\n",
            "tokens.jwks_fetch_timeout",
        ),
        ("dpop:\n  max_age: 0s\n", "dpop.max_age"),
        (
            "revocation:\n  sources:\n    - file: r.json\n      interval: 0s\n",
            "revocation interval",
        ),
    ] {
        check_section(section, Err(&format!("{key} must be longer than 0s")));
    }
    for section in [
        "tokens:\n  clock_skew: 0s\n",
        "dpop:\n  max_future: 0s\n",
        "tokens:\n  max_lifetime: 1m30s\n  jwks_refetch_cooldown: 1500ms\n",
    ] {
        check_section(section, Ok(()));
    }
    let timeout = "  timeout: 0s\n";
    let (_dir, result) = load(&GOOD.replace("upstream:\n", &format!("upstream:\n{timeout}")));
    assert!(
        result.unwrap_err().problems[0]
            .message
            .contains("upstream.timeout must be longer than 0s")
    );
}

#[test]
fn durations_are_whole_numbers_with_a_unit() {
    check_section(
        "tokens:\n  jwks_fetch_timeout: 30sec\n",
        Err(
            "tokens.jwks_fetch_timeout: \"30sec\" is not a duration like 30s, 1500ms or 1m30s: the units are ms, s, m, h and d",
        ),
    );
    check_section(
        "tokens:\n  clock_skew: 1.5s\n",
        Err("fractions are not accepted (write 1500ms, not 1.5s)"),
    );
    check_section("dpop:\n  max_age: 60\n", Err("every number needs a unit"));
}

#[test]
fn dpop_without_a_public_base_url_is_an_error_when_configured_and_a_warning_otherwise() {
    let (_dir, result) = load(&with_base_url());
    assert!(result.unwrap().warnings.is_empty());
    let (_dir, result) = load(GOOD);
    let warnings = result.unwrap().warnings;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].line, 2);
    assert!(
        warnings[0]
            .message
            .contains("listen.public_base_url is not set: DPoP proofs cannot be checked, so every DPoP-bound token (cnf.jkt) is refused (dpop_htu_mismatch)"),
        "{warnings:?}"
    );
    let (_dir, result) = load(&GOOD.replace("policy_file:", "dpop:\n  nonce: true\npolicy_file:"));
    let err = result.unwrap_err();
    assert_eq!(err.problems.len(), 1, "{err}");
    assert_eq!(err.problems[0].line, 14, "{err}");
    assert!(
        err.problems[0]
            .message
            .starts_with("dpop: is configured but listen.public_base_url is not set"),
        "{err}"
    );
}

#[test]
fn the_audit_section_is_checked_at_load() {
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("audit.key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    let short = keys.path().join("short.key");
    std::fs::write(&short, [7u8; 31]).unwrap();
    let section = |file: &str, key: &Path, rest: &str| {
        format!(
            "audit:\n  file: {file}\n  key_file: {}\n{rest}",
            key.display()
        )
    };
    check_section(&section("audit.log", &key, ""), Ok(()));
    check_section(
        &section("\"-\"", &key, "  when_full: serve_unaudited\n"),
        Ok(()),
    );
    for (rest, piece) in [
        ("  queue: 0\n", "audit.queue must be at least 1"),
        (
            "  max_file_bytes: 100\n",
            "audit.max_file_bytes must be at least 4096",
        ),
        (
            "  when_full: drop\n",
            "audit.when_full must be refuse or serve_unaudited",
        ),
        ("  stdout: true\n", "unknown field"),
    ] {
        check_section(&section("audit.log", &key, rest), Err(piece));
    }
    let missing = keys.path().join("missing.key");
    for key in [&short, &missing] {
        check_section(
            &section("audit.log", key, ""),
            Err("audit.key_file must hold at least 32 bytes"),
        );
    }
    let (dir, config) = load(&GOOD.replace(
        "policy_file:",
        &format!("{}policy_file:", section("logs/audit.log", &key, "")),
    ));
    let audit = config.unwrap().audit.unwrap();
    assert_eq!(
        audit.destination,
        AuditDestination::File(dir.path().join("logs/audit.log"))
    );
    assert_eq!((audit.queue, audit.max_file_bytes), (10_000, 64 << 20));
    assert_eq!(audit.when_full, WhenFull::Refuse);
    // The weakening knob is allowed, and said out loud.
    let (_dir, config) = load(&GOOD.replace(
        "policy_file:",
        &format!(
            "{}policy_file:",
            section("audit.log", &key, "  when_full: serve_unaudited\n")
        ),
    ));
    let config = config.unwrap();
    assert_eq!(config.audit.unwrap().when_full, WhenFull::ServeUnaudited);
    let warned = |w: &ConfigProblem| w.message.contains("serve_unaudited");
    assert!(config.warnings.iter().any(warned), "{:?}", config.warnings);
}

#[test]
fn monitor_detectors_are_off_unless_named_and_take_documented_defaults() {
    let (_dir, result) = load(GOOD);
    assert!(!result.unwrap().monitor.is_enabled());
    let text = GOOD.replace(
        "policy_file:",
        "monitor:\n  repeated_failures: {}\npolicy_file:",
    );
    let (_dir, result) = load(&text);
    let monitor = result.unwrap().monitor;
    assert_eq!(monitor.queue, 10_000);
    assert_eq!(monitor.max_keys, 100_000);
    assert_eq!(
        monitor.repeated_failures,
        Some(WindowDetector {
            threshold: 20,
            window: Duration::from_secs(60),
            actions: Actions::default(),
        })
    );
    assert!(monitor.refused_token_reuse.is_none());
    let text = GOOD.replace(
        "policy_file:",
        "monitor:\n  refused_token_reuse: {}\npolicy_file:",
    );
    let (_dir, result) = load(&text);
    let reuse = result.unwrap().monitor.refused_token_reuse.unwrap();
    assert_eq!(
        (reuse.threshold, reuse.window),
        (5, Duration::from_secs(600))
    );
    let text = GOOD.replace("policy_file:", "monitor:\n  bulk_access: {}\npolicy_file:");
    let (_dir, result) = load(&text);
    assert_eq!(
        result.unwrap().monitor.bulk_access,
        Some(BulkDetector {
            threshold: 50,
            operations: 3,
            window: Duration::from_secs(300),
            actions: Actions::default(),
        })
    );
    for (section, expected) in [
        (
            "monitor:\n  bulk_access:\n    operations: 10000\n    window: 1h\n",
            Ok(()),
        ),
        (
            "monitor:\n  bulk_access:\n    operations: 0\n",
            Err("monitor.bulk_access.operations must be from 1 to 10000"),
        ),
        (
            "monitor:\n  bulk_access:\n    operations: 10001\n",
            Err("monitor.bulk_access.operations must be from 1 to 10000"),
        ),
        (
            "monitor:\n  bulk_access:\n    threshold: 0\n",
            Err("monitor.bulk_access.threshold must be from 1 to 10000"),
        ),
        // Only bulk_access counts operations.
        (
            "monitor:\n  repeated_failures:\n    operations: 3\n",
            Err("unknown field"),
        ),
        (
            "monitor:\n  repeated_failures:\n    threshold: 5\n    window: 10s\n    actions:\n      block: 15m\n      reauthenticate: true\n",
            Ok(()),
        ),
        (
            "monitor:\n  repeated_failures:\n    threshold: 0\n",
            Err("monitor.repeated_failures.threshold must be from 1 to 10000"),
        ),
        (
            "monitor:\n  repeated_failures:\n    actions:\n      block: 0s\n",
            Err("monitor.repeated_failures.actions.block must be longer than 0s"),
        ),
        (
            "monitor:\n  repeated_failures:\n    actions:\n      alert: true\n",
            Err("monitor.repeated_failures.actions.alert needs monitor.alert.webhook"),
        ),
        (
            "monitor:\n  alert:\n    webhook: http://127.0.0.1:9/a\n  repeated_failures:\n    actions:\n      alert: true\n",
            Ok(()),
        ),
        (
            "monitor:\n  alert:\n    webhook: /relative\n",
            Err("monitor.alert.webhook must be an absolute http:// or https:// URL"),
        ),
        ("monitor:\n  redis: redis://127.0.0.1:6379\n", Ok(())),
        (
            "monitor:\n  redis: http://127.0.0.1:6379\n",
            Err("monitor.redis must be a redis:// or rediss:// URL"),
        ),
        (
            "monitor:\n  queue: 0\n",
            Err("monitor.queue must be from 1 to"),
        ),
        ("monitor:\n  repeated_failure: {}\n", Err("unknown field")),
        (
            "monitor:\n  revoke:\n    endpoint: ftp://as/revoke\n    client_id: phigate\n    client_secret_file: /nonexistent/secret\n",
            Err("monitor.revoke.endpoint must be an absolute http:// or https:// URL"),
        ),
        (
            "monitor:\n  revoke:\n    endpoint: https://as/revoke\n    client_id: phigate\n    client_secret_file: /nonexistent/secret\n",
            Err("monitor.revoke.client_secret_file cannot be read or is empty"),
        ),
        (
            "monitor:\n  geoip: city.mmdb\n  new_country:\n    allowed: [US, CA]\n  impossible_travel:\n    max_speed_kmh: 900\n    min_distance_km: 100\n",
            Ok(()),
        ),
        (
            "monitor:\n  impossible_travel: {}\n",
            Err("monitor.impossible_travel needs monitor.geoip"),
        ),
        (
            "monitor:\n  geoip: city.mmdb\n  impossible_travel:\n    max_speed_kmh: 0\n",
            Err("monitor.impossible_travel.max_speed_kmh must be from 1 to 40000"),
        ),
        (
            "monitor:\n  geoip: city.mmdb\n  impossible_travel:\n    min_distance_km: 30000\n",
            Err("monitor.impossible_travel.min_distance_km must be from 1 to 20000"),
        ),
        (
            "monitor:\n  geoip: city.mmdb\n  new_country:\n    allowed: [US, usa]\n",
            Err("monitor.new_country.allowed takes ISO 3166-1 alpha-2 codes"),
        ),
    ] {
        check_section(section, expected);
    }
}

#[test]
fn geographic_detectors_take_documented_defaults() {
    let text = GOOD.replace(
        "policy_file:",
        "monitor:\n  geoip: city.mmdb\n  new_country: {}\n  impossible_travel: {}\npolicy_file:",
    );
    let (_dir, result) = load(&text);
    let monitor = result.unwrap().monitor;
    assert_eq!(
        monitor.new_country,
        Some(CountryDetector {
            allowed: Vec::new(),
            actions: Actions::default(),
        })
    );
    assert_eq!(
        monitor.impossible_travel,
        Some(TravelDetector {
            max_speed_kmh: 1_000,
            min_distance_km: 500,
            actions: Actions::default(),
        })
    );
}

#[test]
fn connection_and_upstream_body_bounds_take_documented_defaults() {
    let (_dir, result) = load(GOOD);
    let config = result.unwrap();
    let listen = &config.listen;
    assert_eq!(listen.handshake_timeout, Duration::from_secs(10));
    assert_eq!(listen.first_request_timeout, Duration::from_secs(10));
    assert_eq!(listen.max_connections, 10_000);
    assert_eq!(listen.max_connections_per_address, 1_000);
    assert_eq!(listen.idle_timeout, Duration::from_secs(300));
    assert_eq!(listen.max_connection_age, Duration::from_secs(3600));
    assert_eq!(listen.shutdown_grace, Duration::from_secs(5));
    assert_eq!(config.upstream.body_timeout, Duration::from_secs(300));
    assert_eq!(config.upstream.body_idle_timeout, Duration::from_secs(30));
    // An idle bound never outlasts the whole: a short body_timeout shortens its default.
    let short = GOOD.replace("upstream:\n", "upstream:\n  body_timeout: 10s\n");
    let (_dir, result) = load(&short);
    let upstream = result.unwrap().upstream;
    assert_eq!(upstream.body_idle_timeout, Duration::from_secs(10));
    // Zero grace is a choice: a gateway no load balancer watches closes its port at once.
    let (_dir, result) = load(&GOOD.replace("listen:\n", "listen:\n  shutdown_grace: 0s\n"));
    assert_eq!(result.unwrap().listen.shutdown_grace, Duration::ZERO);
}

#[test]
fn connection_and_upstream_body_bounds_are_enforced() {
    let listen = |key: &str| GOOD.replace("listen:\n", &format!("listen:\n  {key}\n"));
    let upstream = |keys: &str| GOOD.replace("upstream:\n", &format!("upstream:\n{keys}"));
    for (text, line, message) in [
        (
            listen("handshake_timeout: 0s"),
            2,
            "listen.handshake_timeout must be longer than 0s",
        ),
        (
            listen("handshake_timeout: 2m"),
            2,
            "listen.handshake_timeout must be at most 1m",
        ),
        (
            listen("first_request_timeout: 0s"),
            2,
            "listen.first_request_timeout must be longer than 0s",
        ),
        (
            listen("first_request_timeout: 10m"),
            2,
            "listen.first_request_timeout must be at most 5m",
        ),
        (
            listen("max_connections: 0"),
            2,
            "listen.max_connections must be between 1 and 1000000",
        ),
        (
            listen("shutdown_grace: 6m"),
            2,
            "listen.shutdown_grace must be at most 5m",
        ),
        (
            listen("max_connections_per_address: 0"),
            2,
            "listen.max_connections_per_address must be between 1 and 1000000",
        ),
        (
            listen("idle_timeout: 0s"),
            2,
            "listen.idle_timeout must be longer than 0s",
        ),
        (
            listen("max_connection_age: 8d"),
            2,
            "listen.max_connection_age must be at most 7d",
        ),
        (
            upstream("  body_timeout: 0s\n"),
            7,
            "upstream.body_timeout must be longer than 0s",
        ),
        (
            upstream("  body_idle_timeout: 0s\n"),
            7,
            "upstream.body_idle_timeout must be longer than 0s",
        ),
        (
            upstream("  body_timeout: 1m\n  body_idle_timeout: 2m\n"),
            8,
            "upstream.body_idle_timeout must not be longer than upstream.body_timeout",
        ),
    ] {
        let (_dir, result) = load(&text);
        let err = result.expect_err(message);
        assert_eq!(err.problems.len(), 1, "{err}");
        assert_eq!(err.problems[0].line, line, "{err}");
        assert!(err.problems[0].message.contains(message), "{err}");
    }
}

#[test]
fn upstream_http2_is_off_unless_asked() {
    let (_dir, result) = load(GOOD);
    assert!(!result.unwrap().upstream.http2);
    let text = GOOD.replacen("upstream:\n", "upstream:\n  http2: true\n", 1);
    let (_dir, result) = load(&text);
    assert!(result.unwrap().upstream.http2);
}

#[test]
fn client_secrets_never_reach_debug_output() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
    std::fs::write(dir.path().join("secret"), "s3cret-value\n").unwrap();
    let text = GOOD.replace(
        "policy_file:",
        "monitor:\n  revoke:\n    endpoint: https://as/revoke\n    client_id: phigate\n    client_secret_file: secret\npolicy_file:",
    );
    let path = dir.path().join("phigate.yaml");
    std::fs::write(&path, text).unwrap();
    let monitor = Config::load(&path).unwrap().monitor;
    let revoke = monitor.revoke.as_ref().unwrap();
    assert_eq!(revoke.credentials.client_secret, "s3cret-value");
    let printed = format!("{monitor:?}");
    assert!(
        printed.contains("phigate") && !printed.contains("s3cret"),
        "{printed}"
    );
}

#[test]
fn an_issuer_without_jwks_uri_is_discovered_from_its_identifier() {
    let (_dir, result) = load(&GOOD.replace("    jwks_uri: \"https://as.test/jwks\"\n", ""));
    let config = result.unwrap();
    assert_eq!(config.issuers[0].jwks_uri, None);
    check(
        "  - issuer: \"https://as.test\"\n    jwks_uri: \"https://as.test/jwks\"\n",
        "  - issuer: \"urn:as\"\n",
        9,
        "without jwks_uri",
    );
    let (_dir, result) = load(&GOOD.replace(
        "  - issuer: \"https://as.test\"\n    jwks_uri: \"https://as.test/jwks\"\n",
        "  - issuer: \"http://127.0.0.1:9000\"\n",
    ));
    let config = result.unwrap();
    assert!(
        config
            .warnings
            .iter()
            .any(|w| w.message.contains("development only")),
        "{:?}",
        config.warnings
    );
}

#[test]
fn the_resource_comes_from_discovery_or_the_single_https_audience() {
    let (_dir, result) = load(GOOD);
    let config = result.unwrap();
    let resource = config.discovery.resource.unwrap();
    assert_eq!(resource.as_str(), "https://fhir.test");
    assert_eq!(
        config.discovery.authorization_server.as_deref(),
        Some("https://as.test")
    );
    let with_discovery = |section: &str| {
        GOOD.replace(
            "policy_file:",
            &format!("discovery:\n{section}policy_file:"),
        )
    };
    let (_dir, result) = load(&with_discovery(
        "  resource: \"https://fhir.example.org/r4/\"\n  resource_name: Example\n  smart_configuration:\n    capabilities: [launch-standalone]\n    x-custom: {a: 1}\n",
    ));
    let config = result.unwrap();
    let discovery = config.discovery;
    assert_eq!(
        discovery.resource.unwrap().metadata_url(),
        "https://fhir.example.org/.well-known/oauth-protected-resource/r4"
    );
    assert_eq!(discovery.resource_name.as_deref(), Some("Example"));
    assert_eq!(
        discovery.smart_overrides["x-custom"],
        serde_json::json!({"a": 1})
    );
    for (section, message) in [
        ("  resource: \"http://fhir.test\"\n", "resource identifier"),
        ("  smart_configuration: [a]\n", "map of JSON members"),
        (
            "  authorization_server: \"https://other.test\"\n",
            "one of issuers",
        ),
        (
            "  resource_documentation: \"ftp://x\"\n",
            "resource_documentation",
        ),
    ] {
        let (_dir, result) = load(&with_discovery(section));
        let err = result.expect_err(section);
        assert!(err.to_string().contains(message), "{err}");
    }
    // Two audiences: no guess, and a warning saying so.
    let (_dir, result) = load(&GOOD.replace(
        "audiences: [\"https://fhir.test\"]",
        "audiences: [\"https://fhir.test\", \"https://other.test\"]",
    ));
    let config = result.unwrap();
    assert!(config.discovery.resource.is_none());
    assert!(
        config
            .warnings
            .iter()
            .any(|w| w.message.contains("discovery.resource is not set"))
    );
}

#[test]
fn an_introspection_endpoint_left_out_is_discovered_only_for_a_url_issuer() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
    std::fs::write(dir.path().join("secret"), "s3cret\n").unwrap();
    let path = dir.path().join("phigate.yaml");
    let with_issuer = |issuer: &str| {
        GOOD.replace("\"https://as.test\"", &format!("\"{issuer}\"")).replace(
            "    algorithms: [ES256, RS256]\n",
            "    algorithms: [ES256, RS256]\n    introspection:\n      client_id: phigate\n      client_secret_file: secret\n",
        )
    };
    std::fs::write(&path, with_issuer("https://as.test")).unwrap();
    let config = Config::load(&path).unwrap();
    let introspection = config.issuers[0].introspection.as_ref().unwrap();
    assert_eq!(introspection.endpoint, None);
    assert_eq!(introspection.credentials.client_secret, "s3cret");
    std::fs::write(&path, with_issuer("urn:as")).unwrap();
    let err = Config::load(&path).unwrap_err();
    assert!(err.to_string().contains("introspection endpoint"), "{err}");
    assert_eq!(err.problems.len(), 1, "{err}");
}

/// `redis_password_file` is read at load: a missing or empty file is a problem at its key, and
/// its password goes to every Redis URL (revocation, DPoP replay, monitor) without one.
#[test]
fn the_redis_password_file_is_read_at_load_and_shared_by_every_redis_url() {
    check_section(
        "redis_password_file: /nonexistent/redis-password\n",
        Err("redis_password_file cannot be read or is empty"),
    );
    let sections = "redis_password_file: redis-password\nrevocation:\n  sources:\n    - redis: redis://127.0.0.1:6379/0\ndpop:\n  replay_redis: redis://127.0.0.1:6379/1\nmonitor:\n  redis: redis://:own@127.0.0.1:6379/2\n";
    let text = with_base_url().replace("policy_file:", &format!("{sections}policy_file:"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
    std::fs::write(dir.path().join("redis-password"), "s3cret\n").unwrap();
    let path = dir.path().join("phigate.yaml");
    std::fs::write(&path, text).unwrap();
    let config = Config::load(&path).unwrap_or_else(|err| panic!("{err}"));
    let password = |endpoint: &RedisEndpoint| {
        endpoint
            .client()
            .unwrap()
            .get_connection_info()
            .redis_settings()
            .password()
            .map(str::to_owned)
    };
    let RevocationLocation::Redis { endpoint, .. } = &config.revocation[0].location else {
        panic!("{:?}", config.revocation[0].location);
    };
    assert_eq!(password(endpoint).as_deref(), Some("s3cret"));
    let replay = config.dpop.replay_redis.as_ref().unwrap();
    assert_eq!(password(replay).as_deref(), Some("s3cret"));
    // A URL with a password of its own keeps it.
    let monitor = config.monitor.redis.as_ref().unwrap();
    assert_eq!(password(monitor).as_deref(), Some("own"));
    assert!(!format!("{config:?}").contains("s3cret"));
    // The URL with a password of its own is loaded, with a warning at its line.
    let warned: Vec<&ConfigProblem> = config
        .warnings
        .iter()
        .filter(|w| {
            w.message
                .contains("monitor.redis carries a password in its URL")
        })
        .collect();
    assert_eq!(warned.len(), 1, "{:?}", config.warnings);
    assert!(!warned[0].message.contains("own@"), "{}", warned[0].message);
}

/// `redis_ca_file` is read at load and must hold certificates; a `rediss://` URL never turns
/// certificate verification off.
#[test]
fn redis_tls_verifies_the_server_and_its_ca_file_is_checked_at_load() {
    check_section(
        "redis_ca_file: /nonexistent/redis-ca.pem\n",
        Err("redis_ca_file: /nonexistent/redis-ca.pem"),
    );
    check_section("redis_ca_file: policy.yaml\n", Err("no certificate found"));
    for url in [
        "rediss://127.0.0.1:6379/#insecure",
        "rediss://127.0.0.1:6379/0#INSECURE",
    ] {
        check_section(
            &format!("monitor:\n  redis: \"{url}\"\n"),
            Err("monitor.redis: #insecure is refused"),
        );
    }
    check_section(
        "dpop:\n  replay_redis: \"rediss://127.0.0.1:6379/1\"\n",
        Ok(()),
    );
}

#[test]
fn trusted_proxies_are_addresses_or_ranges_never_everything() {
    let from = "  address: \"127.0.0.1:8443\"\n";
    for (list, message) in [
        ("[0.0.0.0/0]", "0.0.0.0/0 trusts every address"),
        ("[\"10.0.0.0/8\", \"::/0\"]", "::/0 trusts every address"),
        ("[nonsense]", "nonsense is not an IP address or CIDR range"),
        (
            "[10.0.0.0/33]",
            "10.0.0.0/33 is not an IP address or CIDR range",
        ),
    ] {
        check(
            from,
            &format!("{from}  trusted_proxies: {list}\n"),
            3,
            message,
        );
    }
    let text = GOOD.replace(
        from,
        &format!("{from}  trusted_proxies: [\"10.1.2.3\", \"10.0.0.0/8\", \"2001:db8::/48\"]\n"),
    );
    let (_dir, result) = load(&text);
    let config = result.unwrap_or_else(|err| panic!("{err}"));
    let proxies = &config.listen.trusted_proxies;
    let behind = |peer: &str| {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.7".parse().unwrap());
        proxies
            .client_of(peer.parse().unwrap(), &headers)
            .address
            .to_string()
    };
    assert_eq!(behind("10.200.0.1"), "203.0.113.7");
    assert_eq!(behind("2001:db8:0:1::9"), "203.0.113.7");
    assert_eq!(behind("192.0.2.1"), "192.0.2.1");
    let (_dir, result) = load(GOOD);
    assert!(result.unwrap().listen.trusted_proxies.is_empty());
}

/// PROXY protocol headers are believed from trusted proxies only, so the setting needs them.
#[test]
fn proxy_protocol_needs_trusted_proxies() {
    let from = "  address: \"127.0.0.1:8443\"\n";
    check(
        from,
        &format!("{from}  proxy_protocol: true\n"),
        3,
        "listen.proxy_protocol needs listen.trusted_proxies",
    );
    for (extra, expected) in [
        (
            "  proxy_protocol: true\n  trusted_proxies: [\"10.0.0.0/8\"]\n",
            true,
        ),
        ("  proxy_protocol: false\n", false),
        ("", false),
    ] {
        let (_dir, result) = load(&GOOD.replace(from, &format!("{from}{extra}")));
        let config = result.unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(config.listen.proxy_protocol, expected, "{extra}");
    }
}

#[test]
fn dpop_algorithms_are_asymmetric_and_default_to_fapi() {
    for (section, expected) in [
        ("dpop:\n  algorithms: [ES256]\n", Ok(())),
        (
            "dpop:\n  algorithms: [HS256]\n",
            Err("dpop.algorithm HS256 is symmetric and never allowed"),
        ),
        (
            "dpop:\n  algorithms: [none]\n",
            Err("dpop.algorithm none is never allowed"),
        ),
        (
            "dpop:\n  algorithms: []\n",
            Err("dpop.algorithms must list at least one algorithm"),
        ),
    ] {
        check_section(section, expected);
    }
    let (_dir, result) = load(GOOD);
    assert_eq!(
        result.unwrap().dpop.algorithms.names(),
        ["ES256", "PS256", "EdDSA"]
    );
}
