//! The probe's findings: one [`CaseResult`] per case (what was expected, what came back, the
//! verdict), and their two renderings, a text table for people and JSON for machines. It never
//! holds a token or a claim value: observations are written by the cases in fixed words.

use serde_json::{Value, json};

/// A case's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The target answered as a safe gateway must.
    Pass,
    /// The target answered in a way the case exists to catch.
    Fail,
    /// The case could not be run here; the reason says why. Never counted as passed.
    Skipped(String),
}

// === impl Verdict ===

impl Verdict {
    /// `pass`, `fail` or `skipped`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Skipped(_) => "skipped",
        }
    }
}

/// One case as run.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The case id, as in README `## Probe`.
    pub id: &'static str,
    /// The SECURITY.md catalogue entry the case stands for.
    pub reference: &'static str,
    /// What a safe target answers.
    pub expectation: String,
    /// What the target answered (status, leaks found), in fixed words.
    pub observed: String,
    /// The verdict.
    pub verdict: Verdict,
}

/// Every case of one run, in the order run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The target probed.
    pub target: String,
    /// The results, positive controls first.
    pub results: Vec<CaseResult>,
    /// Why the run stopped early (the positive control failed), if it did.
    pub stopped: Option<String>,
}

// === impl Report ===

impl Report {
    /// How many cases ended with `verdict`'s label.
    pub fn count(&self, label: &str) -> usize {
        self.results
            .iter()
            .filter(|r| r.verdict.label() == label)
            .count()
    }

    /// True when nothing failed and the run was not stopped.
    pub fn is_clean(&self) -> bool {
        self.stopped.is_none() && self.count("fail") == 0
    }

    /// The result of case `id`, if it ran.
    pub fn result(&self, id: &str) -> Option<&CaseResult> {
        self.results.iter().find(|r| r.id == id)
    }

    /// The table: case, reference, expectation, observation, verdict; then a summary line.
    pub fn render_text(&self) -> String {
        let header = ["case", "ref", "expected", "observed", "verdict"];
        let rows: Vec<[String; 5]> = self
            .results
            .iter()
            .map(|r| {
                let verdict = match &r.verdict {
                    Verdict::Skipped(reason) => format!("skipped ({reason})"),
                    other => other.label().to_owned(),
                };
                [
                    r.id.to_owned(),
                    r.reference.to_owned(),
                    r.expectation.clone(),
                    r.observed.clone(),
                    verdict,
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row.iter()).take(4) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = format!("phigate probe of {}\n", self.target);
        let line = |cells: [&str; 5]| {
            let mut text = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i == 4 {
                    text.push_str(cell);
                } else {
                    let pad = widths[i].saturating_sub(cell.chars().count());
                    text.push_str(cell);
                    text.push_str(&" ".repeat(pad + 2));
                }
            }
            text.trim_end().to_owned() + "\n"
        };
        out.push_str(&line(header));
        for row in &rows {
            out.push_str(&line([&row[0], &row[1], &row[2], &row[3], &row[4]]));
        }
        out.push_str(&format!(
            "{} cases: {} passed, {} failed, {} skipped\n",
            self.results.len(),
            self.count("pass"),
            self.count("fail"),
            self.count("skipped"),
        ));
        if let Some(stopped) = &self.stopped {
            out.push_str(&format!("stopped: {stopped}\n"));
        }
        out
    }

    /// The report as JSON: target, summary counts, `stopped`, and one object per case.
    pub fn to_json(&self) -> Value {
        let cases: Vec<Value> = self
            .results
            .iter()
            .map(|r| {
                let mut case = json!({
                    "id": r.id,
                    "reference": r.reference,
                    "expected": r.expectation,
                    "observed": r.observed,
                    "verdict": r.verdict.label(),
                });
                if let Verdict::Skipped(reason) = &r.verdict {
                    case["reason"] = json!(reason);
                }
                case
            })
            .collect();
        json!({
            "target": self.target,
            "cases": cases,
            "summary": {
                "total": self.results.len(),
                "passed": self.count("pass"),
                "failed": self.count("fail"),
                "skipped": self.count("skipped"),
            },
            "stopped": self.stopped,
        })
    }
}
