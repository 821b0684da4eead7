//! What one audit record says, as the JSON members the chain seals. A decision record names who
//! (client, subject, issuer, token `jti`, certificate thumbprint), from where (address, and
//! country when GeoIP is configured), under which
//! binding and rule, what (FHIR interaction, resource type and id, patient context) and the
//! outcome (decision, status, reason, upstream status, latency), and for emergency access the
//! break-glass rule and the operator's stated reason. It never holds the token, a
//! claim beyond identities, the path or a query value.

use std::time::SystemTime;

use serde::Serialize;

use crate::record::{ActionRecord, DecisionRecord};
use crate::token::{ClientId, Jti, Subject};

/// One decision's members.
#[derive(Serialize)]
struct Decision<'a> {
    event: &'static str,
    time: String,
    request_id: String,
    source: String,
    country: Option<&'a str>,
    method: &'a str,
    client_id: Option<&'a str>,
    subject: Option<&'a str>,
    patient: Option<&'a str>,
    issuer: Option<&'a str>,
    jti: Option<&'a str>,
    cert_thumbprint: Option<&'a str>,
    binding: Option<&'static str>,
    rule: Option<&'a str>,
    policy_version: Option<&'a str>,
    interaction: Option<&'a str>,
    resource_type: Option<&'a str>,
    resource_id: Option<&'a str>,
    break_glass_rule: Option<&'a str>,
    break_glass_justification: Option<&'a str>,
    decision: &'static str,
    status: u16,
    reason: &'static str,
    upstream_status: Option<u16>,
    latency_ms: f64,
}

/// The members of `record`'s audit line.
/// `country` is the source address's, when GeoIP is configured.
pub fn decision(record: &DecisionRecord, country: Option<&str>) -> String {
    let identity = record.identity.as_ref();
    let fhir = record.fhir.as_ref();
    let entry = Decision {
        event: "decision",
        time: humantime::format_rfc3339_millis(record.time).to_string(),
        request_id: record.request_id.to_string(),
        source: record.peer.to_string(),
        country,
        method: record.method.as_str(),
        client_id: identity
            .and_then(|i| i.client_id.as_ref())
            .map(ClientId::as_str),
        subject: identity
            .and_then(|i| i.subject.as_ref())
            .map(Subject::as_str),
        patient: identity.and_then(|i| i.patient.as_deref()),
        issuer: identity.map(|i| &*i.issuer),
        jti: identity.and_then(|i| i.jti.as_ref()).map(Jti::as_str),
        cert_thumbprint: record.cert_thumbprint.as_deref(),
        binding: record.binding,
        rule: record.rule.as_deref(),
        policy_version: record.policy_version.as_deref(),
        interaction: fhir.map(|f| f.interaction.as_str()),
        resource_type: fhir.and_then(|f| f.resource_type.as_deref()),
        resource_id: fhir.and_then(|f| f.resource_id.as_deref()),
        break_glass_rule: record.break_glass.as_ref().map(|b| &*b.rule),
        break_glass_justification: record
            .break_glass
            .as_ref()
            .map(|b| b.justification.as_str()),
        decision: record.decision,
        status: record.status,
        reason: record.reason,
        upstream_status: record.upstream_status,
        latency_ms: record.latency.as_secs_f64() * 1000.0,
    };
    members(&entry)
}

/// The members of an action's audit line.
pub fn action(action: &ActionRecord<'_>) -> String {
    #[derive(Serialize)]
    struct Event<'a> {
        event: &'static str,
        time: String,
        #[serde(flatten)]
        action: &'a ActionRecord<'a>,
    }
    members(&Event {
        event: "action",
        time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        action,
    })
}

/// The members of an event about the trail itself (`chain_restart`).
pub fn event(event: &'static str, reason: &'static str) -> String {
    #[derive(Serialize)]
    struct Event {
        event: &'static str,
        time: String,
        reason: &'static str,
    }
    members(&Event {
        event,
        time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        reason,
    })
}

/// A struct's JSON object without its braces, for the chain to wrap.
fn members(value: &impl Serialize) -> String {
    // Strings and numbers always serialise; were one not to, the chain still gets a valid,
    // sealed line that says a record was lost, rather than a gap.
    const LOST: &str = r#""event":"record_unserialisable""#;
    serde_json::to_string(value)
        .ok()
        .and_then(|object| {
            let inner = object.strip_prefix('{')?.strip_suffix('}')?;
            (!inner.is_empty()).then(|| inner.to_owned())
        })
        .unwrap_or_else(|| LOST.to_owned())
}
