//! What one audit record says, as the JSON members the chain seals. A decision record names who
//! (client, subject, issuer, token `jti`, certificate thumbprint), from where (address, and
//! country when GeoIP is configured), under which
//! binding and rule, what (FHIR interaction, resource type and id, patient context) and the
//! outcome (decision, status, reason, upstream status, latency), and for emergency access the
//! break-glass rule and the operator's stated reason. It never holds the token, a
//! claim beyond identities, the path or a query value. A `chain_restart` record says why the
//! trail's chain started over ([`Restart`]).

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

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

/// Why a new chain starts: the `reason` of a `chain_restart` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartReason {
    /// The file's last line did not open (a half line, an edit, another key).
    DamagedTail,
    /// The file ended before the record its head named: whole records were cut off.
    Truncated,
    /// The file did not lead to the record its head named (another chain, or broken after it).
    HeadMismatch,
    /// The file held records but had no head.
    HeadMissing,
    /// The head did not open (edited, forged, or sealed under another key).
    HeadDamaged,
}

impl RestartReason {
    /// Its name in the record.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DamagedTail => "damaged_tail",
            Self::Truncated => "truncated",
            Self::HeadMismatch => "head_mismatch",
            Self::HeadMissing => "head_missing",
            Self::HeadDamaged => "head_damaged",
        }
    }

    /// Whether records before the restart are known to be lost, not merely unproven.
    pub fn proves_loss(self) -> bool {
        matches!(self, Self::Truncated | Self::HeadMismatch)
    }

    /// Whether the restart says the trail before it had no head to check its end against.
    pub fn lacked_head(self) -> bool {
        matches!(self, Self::HeadMissing | Self::HeadDamaged)
    }
}

/// What a `chain_restart` record says beyond its event and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restart {
    /// Why.
    pub reason: RestartReason,
    /// The `seq` the head named, when the file no longer held that record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_seq: Option<u64>,
    /// The file's last `seq` then (absent when it held no record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<u64>,
}

impl Restart {
    /// A restart for `reason` alone.
    pub fn because(reason: RestartReason) -> Self {
        Self {
            reason,
            head_seq: None,
            last_seq: None,
        }
    }
}

/// The members of a `chain_restart` record.
pub fn restart(restart: &Restart) -> String {
    #[derive(Serialize)]
    struct Event<'a> {
        event: &'static str,
        time: String,
        #[serde(flatten)]
        restart: &'a Restart,
    }
    members(&Event {
        event: "chain_restart",
        time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        restart,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_reason_is_written_as_its_name() {
        use RestartReason::*;
        for reason in [
            DamagedTail,
            Truncated,
            HeadMismatch,
            HeadMissing,
            HeadDamaged,
        ] {
            let written = serde_json::to_value(reason).unwrap();
            assert_eq!(written, reason.as_str());
        }
        let line = restart(&Restart {
            reason: Truncated,
            head_seq: Some(7),
            last_seq: None,
        });
        assert!(
            line.starts_with(r#""event":"chain_restart","time":""#),
            "{line}"
        );
        assert!(
            line.ends_with(r#","reason":"truncated","head_seq":7"#),
            "{line}"
        );
    }
}
