use std::net::IpAddr;
use std::time::Duration;

use super::*;
use crate::record::Identity;
use crate::token::ClientId;

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
            jti: None,
            patient: None,
        }),
        cert_thumbprint: None,
        binding: None,
        fhir: None,
        decision: if status < 400 { "allow" } else { "deny" },
        reason,
        status,
        upstream_status: None,
        latency: Duration::ZERO,
    }
}

fn detectors(block: Option<Duration>) -> (Detectors, Arc<BlockList>) {
    let blocks = Arc::new(BlockList::new(100, Duration::from_secs(900)));
    let config = MonitorConfig {
        queue: 10,
        max_keys: 100,
        repeated_failures: Some(WindowDetector {
            threshold: 2,
            window: Duration::from_secs(60),
            actions: Actions {
                block,
                reauthenticate: false,
            },
        }),
    };
    let metrics = Arc::new(Metrics::new());
    (
        Detectors::new(&config, Arc::clone(&blocks), metrics),
        blocks,
    )
}

/// Feeds two identical records and says whether the peer ended up blocked.
#[track_caller]
fn check(status: u16, reason: &'static str, block: Option<Duration>, blocked: bool) {
    let (detectors, blocks) = detectors(block);
    let now = Instant::now();
    for _ in 0..2 {
        detectors.observe(&record(status, reason, Some("app-1")), now);
    }
    let expected = if blocked {
        Err(BlockFault::Blocked)
    } else {
        Ok(())
    };
    assert_eq!(
        blocks.check_address(IpAddr::from(PEER)),
        expected,
        "{status} {reason}"
    );
}

#[test]
fn only_access_failures_count_and_only_block_actions_block() {
    let period = Some(Duration::from_secs(60));
    check(401, "token_expired", period, true);
    check(403, "insufficient_scope", period, true);
    check(200, "ok", period, false);
    check(400, "path_malformed", period, false);
    // The block list's own refusals never extend a block.
    check(403, "blocked", period, false);
    check(401, "reauthentication_required", period, false);
    // Without a block action the detector only logs.
    check(401, "token_expired", None, false);
}
