//! The log sink: one JSON line per request. The token is never a field — its `jti` stands in —
//! and neither is the path or a query value (they hold resource ids and PHI); the audit trail,
//! not the log, is where resource ids go.

use super::{DecisionRecord, Sink};
use crate::token::{ClientId, Jti, Subject};

/// Writes the request log line through `tracing`.
pub struct LogSink;

impl Sink for LogSink {
    fn record(&self, record: &DecisionRecord) {
        let identity = record.identity.as_ref();
        tracing::info!(
            request.id = %record.request_id,
            request.method = %record.method,
            route.name = record.rule.as_deref().unwrap_or("none"),
            policy.version = record.policy_version.as_deref(),
            fhir.interaction = record.fhir.as_ref().map(|f| f.interaction.as_str()),
            request.params = record.params.as_deref(),
            decision = record.decision,
            denial.reason = record.reason,
            response.status = record.status,
            client.id = identity.and_then(|i| i.client_id.as_ref()).map(ClientId::as_str),
            subject = identity.and_then(|i| i.subject.as_ref()).map(Subject::as_str),
            token.jti = identity.and_then(|i| i.jti.as_ref()).map(Jti::as_str),
            tls.client_cert = record.cert_thumbprint.as_deref(),
            break_glass = record.break_glass.is_some(),
            "request"
        );
        // The alert line: an emergency access is announced at once, apart from routine lines.
        if let Some(emergency) = &record.break_glass {
            tracing::warn!(
                request.id = %record.request_id,
                break_glass = true,
                break_glass.rule = &*emergency.rule,
                break_glass.justification = emergency.justification.as_str(),
                route.name = record.rule.as_deref().unwrap_or("none"),
                fhir.interaction = record.fhir.as_ref().map(|f| f.interaction.as_str()),
                response.status = record.status,
                client.id = identity.and_then(|i| i.client_id.as_ref()).map(ClientId::as_str),
                subject = identity.and_then(|i| i.subject.as_ref()).map(Subject::as_str),
                token.jti = identity.and_then(|i| i.jti.as_ref()).map(Jti::as_str),
                "BREAK-GLASS access granted"
            );
        }
    }
}
