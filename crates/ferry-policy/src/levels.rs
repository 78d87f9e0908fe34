//! Which findings block a run: the environment's `fail_on` level, its default by position,
//! and the [`Report`] the approval view shows (every finding, with whether it blocks and
//! which waiver, if any, covers it).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Finding, PlanInput, Severity, Waiver};

/// The default lowest blocking severity of the environment at `index` (0-based) among
/// `count` ordered environments: the first `critical`, the last `medium`, those between
/// `high`. A single environment is both the first and the last; it gets `high`, the middle
/// ground: nothing earlier has vetted the change, but it is often the only (and so a real)
/// environment of a minimal `ferry.yaml`.
pub fn default_fail_on(index: usize, count: usize) -> Severity {
    match count {
        0 | 1 => Severity::High,
        _ if index == 0 => Severity::Critical,
        _ if index + 1 >= count => Severity::Medium,
        _ => Severity::High,
    }
}

/// One finding as the approval view shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportEntry {
    #[serde(flatten)]
    pub finding: Finding,
    /// At or above `fail_on` and not waived.
    pub blocking: bool,
    /// The waiver that covers this finding, if any.
    pub waiver: Option<Waiver>,
}

/// The policy stage's verdict for one environment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub environment: String,
    pub fail_on: Severity,
    /// Sorted most severe first, then by address and rule.
    pub entries: Vec<ReportEntry>,
}

impl Report {
    /// Whether any finding blocks the run (`POLICY_VIOLATION`).
    pub fn blocked(&self) -> bool {
        self.entries.iter().any(|e| e.blocking)
    }

    pub fn blocking(&self) -> impl Iterator<Item = &Finding> {
        self.entries
            .iter()
            .filter(|e| e.blocking)
            .map(|e| &e.finding)
    }
}

/// Decides which findings block: those at or above `fail_on` that no waiver covers. The plan
/// gives the current type of each finding's resource, which a waiver must still match.
pub fn blocking(
    findings: Vec<Finding>,
    fail_on: Severity,
    waivers: &[Waiver],
    plan: &PlanInput,
    environment: &str,
    now: DateTime<Utc>,
) -> Report {
    let mut entries: Vec<ReportEntry> = findings
        .into_iter()
        .map(|finding| {
            let resource_type = plan.by_address(&finding.address).map(|r| r.r#type.as_str());
            let waiver = waivers
                .iter()
                .find(|w| w.applies_to(&finding, environment, resource_type, now))
                .cloned();
            ReportEntry {
                blocking: finding.severity >= fail_on && waiver.is_none(),
                waiver,
                finding,
            }
        })
        .collect();
    entries.sort_by(|a, b| {
        b.finding
            .severity
            .cmp(&a.finding.severity)
            .then_with(|| a.finding.address.cmp(&b.finding.address))
            .then_with(|| a.finding.rule.cmp(&b.finding.rule))
    });
    Report {
        environment: environment.to_string(),
        fail_on,
        entries,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    #[test]
    fn defaults_by_position() {
        let table: Vec<Vec<Severity>> = (1..=4)
            .map(|n| (0..n).map(|i| default_fail_on(i, n)).collect())
            .collect();
        use Severity::*;
        assert_eq!(
            table,
            vec![
                vec![High],
                vec![Critical, Medium],
                vec![Critical, High, Medium],
                vec![Critical, High, High, Medium],
            ]
        );
    }

    #[test]
    fn waived_and_low_findings_do_not_block() {
        let plan = PlanInput::parse(
            br#"{"format_version":"1.2","resource_changes":[
              {"address":"aws_s3_bucket.a","mode":"managed","type":"aws_s3_bucket","name":"a",
               "change":{"actions":["create"],"before":null,"after":{},"after_unknown":{}}}]}"#,
        )
        .unwrap();
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let f = |rule: &str, severity| Finding {
            rule: rule.into(),
            severity,
            address: "aws_s3_bucket.a".into(),
            message: String::new(),
            remediation: String::new(),
        };
        let waiver = Waiver {
            rule: "R-HIGH".into(),
            address: "aws_s3_bucket.a".into(),
            environment: "prod".into(),
            resource_type: Some("aws_s3_bucket".into()),
            reason: "r".into(),
            expires_at: now + Duration::days(1),
            created_by: "bob".into(),
        };
        let findings = vec![
            f("R-LOW", Severity::Low),
            f("R-HIGH", Severity::High),
            f("R-CRIT", Severity::Critical),
        ];
        let report = blocking(
            findings.clone(),
            Severity::Medium,
            std::slice::from_ref(&waiver),
            &plan,
            "prod",
            now,
        );
        let summary: Vec<(&str, bool, bool)> = report
            .entries
            .iter()
            .map(|e| (e.finding.rule.as_str(), e.blocking, e.waiver.is_some()))
            .collect();
        assert_eq!(
            summary,
            [
                ("R-CRIT", true, false),
                ("R-HIGH", false, true),
                ("R-LOW", false, false)
            ]
        );
        assert!(report.blocked());
        // After expiry the waiver no longer applies.
        let later = blocking(
            findings,
            Severity::Critical,
            &[waiver],
            &plan,
            "prod",
            now + Duration::days(2),
        );
        assert_eq!(later.blocking().count(), 1);
        assert!(later.entries.iter().all(|e| e.waiver.is_none()));
        let json = serde_json::to_value(&later).unwrap();
        assert_eq!(json["entries"][0]["rule"], "R-CRIT");
        assert_eq!(json["entries"][0]["blocking"], true);
    }
}
