//! The metrics sink: `phigate_decisions_total` and the request latency histogram, labelled by
//! rule, decision and reason only, and `phigate_break_glass_total` by break-glass rule.

use std::sync::Arc;

use super::{DecisionRecord, Sink};
use crate::telemetry::{DecisionLabels, Metrics, RuleName};

/// Counts decisions in the gateway's registry.
pub struct MetricsSink(pub Arc<Metrics>);

impl Sink for MetricsSink {
    fn record(&self, record: &DecisionRecord) {
        let labels = DecisionLabels {
            rule: record.rule.clone().map_or_else(RuleName::none, RuleName),
            decision: record.decision,
            reason: record.reason,
        };
        self.0
            .record_decision(&labels, record.latency.as_secs_f64());
        if let Some(emergency) = &record.break_glass {
            self.0.record_break_glass(&emergency.rule);
        }
    }
}
