//! The geographic detectors end to end: clients connect from different loopback addresses,
//! which a city database of the test's own places around the world; the detectors judge the
//! TCP peer and their actions refuse what follows.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::monitor::{fired_on_token_client_and_subject_then_blocked, wait_metric};
use crate::support::{Harness, Options, eventually};

const NEW_YORK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
const BOSTON: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 3));
const PARIS: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 4));

/// A city database placing each of the addresses above (with a 20 km accuracy radius), and
/// every other loopback address in New York.
fn city_database(dir: &Path) -> PathBuf {
    #[derive(serde::Serialize)]
    struct Country {
        iso_code: &'static str,
    }
    #[derive(serde::Serialize)]
    struct Location {
        latitude: f64,
        longitude: f64,
        accuracy_radius: u16,
    }
    #[derive(serde::Serialize)]
    struct Record {
        country: Country,
        location: Location,
    }
    let mut writer = mmdb_writer::Writer::new("GeoIP2-City");
    for (net, iso_code, latitude, longitude) in [
        ("127.0.0.0/8", "US", 40.7128, -74.0060),
        ("127.0.0.3/32", "US", 42.3601, -71.0589),
        ("127.0.0.4/32", "FR", 48.8566, 2.3522),
    ] {
        let record = Record {
            country: Country { iso_code },
            location: Location {
                latitude,
                longitude,
                accuracy_radius: 20,
            },
        };
        let net = net.parse::<mmdb_writer::ipnet::IpNet>().unwrap();
        writer.insert(net, &record).unwrap();
    }
    let path = dir.join("city.mmdb");
    std::fs::write(&path, writer.to_bytes().unwrap()).unwrap();
    path
}

/// A gateway with the city database and the `monitor:` keys in `detectors`.
async fn gateway(dir: &Path, detectors: &str) -> Harness {
    Harness::with(options(dir, detectors)).await
}

fn options(dir: &Path, detectors: &str) -> Options {
    Options {
        extra: format!(
            "monitor:\n  geoip: {}\n{detectors}",
            city_database(dir).display()
        ),
        ..Options::default()
    }
}

#[tokio::test]
async fn new_york_then_paris_within_minutes_is_impossible_travel_and_blocks_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let harness = gateway(
        dir.path(),
        "  impossible_travel:\n    actions:\n      block: 10m\n",
    )
    .await;
    let token = harness.token("user/Patient.r");
    // New York to Boston (~300 km) is under the minimum distance; then Paris, minutes later.
    for place in [NEW_YORK, BOSTON, NEW_YORK, PARIS] {
        let response = harness
            .client_from(place)
            .get_with_token("/Patient/123", &token)
            .await;
        assert_eq!(response.status, 200, "{place}");
    }
    fired_on_token_client_and_subject_then_blocked(&harness, "impossible_travel", &token).await;
    let upstream = harness.upstream.received().len();
    let response = harness
        .client_from(NEW_YORK)
        .get_with_token("/Patient/123", &token)
        .await;
    assert_eq!(response.status, 403);
    assert_eq!(harness.upstream.received().len(), upstream);
}

#[tokio::test]
async fn outside_the_country_allow_list_even_the_first_request_fires_new_country() {
    let dir = tempfile::tempdir().unwrap();
    let harness = gateway(
        dir.path(),
        "  new_country:\n    allowed: [FR]\n    actions:\n      block: 10m\n",
    )
    .await;
    let token = harness.token("user/Patient.r");
    // The token's first and only country so far: no change of place, but not an allowed one.
    let response = harness
        .client_from(NEW_YORK)
        .get_with_token("/Patient/123", &token)
        .await;
    assert_eq!(response.status, 200);
    fired_on_token_client_and_subject_then_blocked(&harness, "new_country", &token).await;
}

#[tokio::test]
async fn with_redis_two_gateways_share_sightings_and_countries() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("phigate:test:{}", uuid::Uuid::new_v4());
    let detectors = format!(
        "  redis: redis://127.0.0.1:6379\n  redis_prefix: {prefix}\n  new_country: {{}}\n  impossible_travel: {{}}\n"
    );
    let first = gateway(dir.path(), &detectors).await;
    // Two replicas of one deployment: the same issuer's tokens.
    let options = options(dir.path(), &detectors);
    let second = Harness::with_issuer(options, first.issuer.clone()).await;
    let token = first.token("user/Patient.r");
    let response = first
        .client_from(NEW_YORK)
        .get_with_token("/Patient/123", &token)
        .await;
    assert_eq!(response.status, 200);
    // The first gateway has shared where the token, its client and its subject were seen.
    let redis = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let redis = redis.get_multiplexed_async_connection().await.unwrap();
    let pattern = format!("{prefix}-counts:sighting:*");
    eventually(Duration::from_secs(15), || {
        let (mut redis, pattern) = (redis.clone(), pattern.clone());
        async move {
            let keys: Vec<String> = redis::AsyncCommands::keys(&mut redis, &pattern)
                .await
                .unwrap();
            keys.len() == 3
        }
    })
    .await;
    // The second gateway never saw the token before, yet judges Paris against New York.
    let response = second
        .client_from(PARIS)
        .get_with_token("/Patient/123", &token)
        .await;
    assert_eq!(response.status, 200);
    for detector in ["impossible_travel", "new_country"] {
        let fired = format!("phigate_detector_firings_total{{detector=\"{detector}\"}} 3");
        wait_metric(&second, &fired).await;
        let quiet = format!("phigate_detector_firings_total{{detector=\"{detector}\"}} 0");
        let (_, metrics) = first.admin_get("/metrics").await;
        assert!(metrics.lines().any(|l| l == quiet), "{metrics}");
    }
}
