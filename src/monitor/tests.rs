use std::net::IpAddr;
use std::time::Duration;

use super::*;
use crate::record::{FhirAccess, Identity};
use crate::token::{ClientId, Jti};

const PEER: [u8; 4] = [192, 0, 2, 7];

fn record(status: u16, reason: &'static str, client: Option<&str>) -> DecisionRecord {
    DecisionRecord {
        time: SystemTime::now(),
        request_id: uuid::Uuid::nil(),
        peer: IpAddr::from(PEER),
        method: http::Method::GET,
        params: None,
        rule: None,
        policy_version: None,
        identity: client.map(|client| Identity {
            issuer: Arc::from("https://as"),
            client_id: ClientId::parse(client),
            subject: None,
            jti: Jti::parse("t-1"),
            patient: None,
        }),
        cert_thumbprint: None,
        binding: None,
        fhir: None,
        break_glass: None,
        decision: if status < 400 { "allow" } else { "deny" },
        reason,
        status,
        upstream_status: None,
        latency: Duration::ZERO,
        slot: None,
    }
}

fn detectors(block: Option<Duration>) -> (Detectors, Arc<BlockList>) {
    let blocks = Arc::new(BlockList::new(100, Duration::from_secs(900)));
    let config = MonitorConfig {
        queue: 10,
        max_keys: 100,
        alert: None,
        revoke: None,
        redis: None,
        redis_prefix: String::new(),
        repeated_failures: Some(WindowDetector {
            threshold: 2,
            window: Duration::from_secs(60),
            actions: Actions {
                block,
                ..Actions::default()
            },
        }),
        refused_token_reuse: None,
        traffic_spike: None,
        bulk_access: None,
        geoip: None,
        new_country: None,
        impossible_travel: None,
    };
    let responder = Responder {
        blocks: Arc::clone(&blocks),
        revoker: None,
        shared: None,
        alerts: None,
        audit: None,
        metrics: Arc::new(Metrics::new()),
    };
    (Detectors::new(&config, responder, None), blocks)
}

#[test]
fn each_detector_counts_its_records_against_its_keys() {
    let address = BlockKey::Address(PeerNetwork::of(IpAddr::from(PEER)));
    let client = BlockKey::Client(ClientId::parse("app-1").unwrap());
    let token = BlockKey::Token(Jti::parse("t-1").unwrap());
    let failures = Counted::RepeatedFailures;
    let reuse = Counted::RefusedTokenReuse;
    let cases = [
        (failures, 401, "expired", None, vec![address.clone()]),
        (
            failures,
            403,
            "insufficient_scope",
            Some("app-1"),
            vec![address, client.clone()],
        ),
        (failures, 200, "ok", Some("app-1"), vec![]),
        (failures, 400, "path_malformed", None, vec![]),
        // The block list's own refusals never extend a block.
        (failures, 403, "blocked", Some("app-1"), vec![]),
        (
            failures,
            401,
            "reauthentication_required",
            Some("app-1"),
            vec![],
        ),
        (
            reuse,
            401,
            "revoked",
            Some("app-1"),
            vec![token.clone(), client.clone()],
        ),
        (reuse, 403, "blocked", Some("app-1"), vec![token, client]),
        (reuse, 403, "blocked", None, vec![]),
        (reuse, 401, "expired", Some("app-1"), vec![]),
    ];
    for (counted, status, reason, client, expected) in cases {
        let keys = counted.keys(&record(status, reason, client));
        assert_eq!(keys, expected, "{counted:?} {status} {reason}");
    }
}

#[test]
fn only_allowed_everything_and_export_kick_offs_count_as_bulk_operations() {
    let identity = vec![
        BlockKey::Token(Jti::parse("t-1").unwrap()),
        BlockKey::Client(ClientId::parse("app-1").unwrap()),
    ];
    let cases = [
        (200, "operation $everything", identity.clone()),
        (202, "operation $export", identity),
        (403, "operation $export", vec![]),
        (200, "operation $export-poll-status", vec![]),
        (200, "operation $validate", vec![]),
        (200, "read", vec![]),
    ];
    for (status, interaction, expected) in cases {
        let reason = if status < 400 {
            "ok"
        } else {
            "insufficient_scope"
        };
        let record = DecisionRecord {
            fhir: Some(FhirAccess {
                interaction: interaction.to_owned(),
                resource_type: Some("Patient".to_owned()),
                resource_id: None,
            }),
            ..record(status, reason, Some("app-1"))
        };
        let keys = Counted::BulkOperations.keys(&record);
        assert_eq!(keys, expected, "{status} {interaction}");
    }
}

/// Feeds two identical records and says whether the peer ended up blocked.
#[track_caller]
fn check(block: Option<Duration>, blocked: bool) {
    let (detectors, blocks) = detectors(block);
    let now = Instant::now();
    for _ in 0..2 {
        // Without a shared counter nothing awaits: the future is ready at once.
        futures_util::FutureExt::now_or_never(
            detectors.observe(&record(401, "expired", None), now),
        )
        .unwrap();
    }
    let expected = if blocked {
        Err(BlockFault::Blocked)
    } else {
        Ok(())
    };
    assert_eq!(blocks.check_address(IpAddr::from(PEER)), expected);
}

#[test]
fn a_firing_blocks_only_when_its_actions_say_so() {
    check(Some(Duration::from_secs(60)), true);
    check(None, false);
}

/// An IPv6 client that takes a fresh address for every try is still one client: its failures
/// count together by /64, and the block covers every address in it, not another /64.
#[test]
fn ipv6_failures_count_and_block_by_their_64() {
    let (detectors, blocks) = detectors(Some(Duration::from_secs(60)));
    let now = Instant::now();
    for address in ["2001:db8:1:2::a", "2001:db8:1:2:ffff::b"] {
        let failure = DecisionRecord {
            peer: address.parse().unwrap(),
            ..record(401, "expired", None)
        };
        futures_util::FutureExt::now_or_never(detectors.observe(&failure, now)).unwrap();
    }
    let peer = |text: &str| text.parse::<IpAddr>().unwrap();
    assert_eq!(
        blocks.check_address(peer("2001:db8:1:2::c")),
        Err(BlockFault::Blocked)
    );
    assert_eq!(blocks.check_address(peer("2001:db8:1:3::a")), Ok(()));
}
