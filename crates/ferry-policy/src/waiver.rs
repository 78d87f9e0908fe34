//! Waivers as a pure model: what a waiver says, when it applies, and what makes one invalid.
//!
//! Storing, listing, revoking and auditing waivers belongs to the store and the server; this
//! module only decides. A waiver names one rule on one resource address in one environment,
//! records the resource's type when it was granted, and stops applying at its expiry or as
//! soon as the resource at that address has another type (a different thing now lives
//! there, and nobody looked at it).

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::{builtin, rego, Finding};

/// Longest waiver, in days, unless configured otherwise.
pub const DEFAULT_MAX_WAIVER_DAYS: u32 = 30;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiver {
    pub rule: String,
    pub address: String,
    pub environment: String,
    /// The resource type at `address` when the waiver was granted (`None` for findings about
    /// the configuration as a whole).
    pub resource_type: Option<String>,
    pub reason: String,
    pub expires_at: DateTime<Utc>,
    pub created_by: String,
}

/// What a new waiver is checked against.
#[derive(Clone, Debug)]
pub struct WaiverRules<'a> {
    /// Rule ids of the loaded Rego policies ([`rego::PolicySet::rule_ids`]).
    pub custom_rule_ids: &'a BTreeSet<String>,
    pub max_days: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WaiverError {
    #[error("unknown rule `{rule}`: not a built-in rule and not defined by the loaded policies")]
    UnknownRule { rule: String },
    #[error("waiver field `{0}` is empty")]
    Missing(&'static str),
    #[error("waiver expiry {expires_at} is not in the future")]
    AlreadyExpired { expires_at: DateTime<Utc> },
    #[error("waiver expiry {expires_at} is more than {max_days} days away")]
    TooLong {
        expires_at: DateTime<Utc>,
        max_days: u32,
    },
    #[error("{actor} is the change's author and cannot waive its findings")]
    SelfWaiver { actor: String },
}

impl Waiver {
    /// Checks a waiver before it is granted. `change_author` is whoever triggered the run.
    pub fn validate(
        &self,
        rules: &WaiverRules<'_>,
        change_author: &str,
        now: DateTime<Utc>,
    ) -> Result<(), WaiverError> {
        for (name, value) in [
            ("rule", &self.rule),
            ("address", &self.address),
            ("environment", &self.environment),
            ("reason", &self.reason),
            ("created_by", &self.created_by),
        ] {
            if value.trim().is_empty() {
                return Err(WaiverError::Missing(name));
            }
        }
        let known = builtin::rule(&self.rule).is_some()
            || self.rule == rego::POLICY_CHANGE_RULE
            || rules.custom_rule_ids.contains(&self.rule);
        if !known {
            return Err(WaiverError::UnknownRule {
                rule: self.rule.clone(),
            });
        }
        if self.expires_at <= now {
            return Err(WaiverError::AlreadyExpired {
                expires_at: self.expires_at,
            });
        }
        if self.expires_at > now + Duration::days(i64::from(rules.max_days)) {
            return Err(WaiverError::TooLong {
                expires_at: self.expires_at,
                max_days: rules.max_days,
            });
        }
        if self.created_by == change_author {
            return Err(WaiverError::SelfWaiver {
                actor: self.created_by.clone(),
            });
        }
        Ok(())
    }

    /// Whether this waiver covers `finding` in `environment` now, given the type of the
    /// resource currently at the finding's address.
    pub fn applies_to(
        &self,
        finding: &Finding,
        environment: &str,
        resource_type: Option<&str>,
        now: DateTime<Utc>,
    ) -> bool {
        self.rule == finding.rule
            && self.address == finding.address
            && self.environment == environment
            && now < self.expires_at
            && self.resource_type.as_deref() == resource_type
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Severity, PLAN_ADDRESS};
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap()
    }

    fn waiver() -> Waiver {
        Waiver {
            rule: "FERRY-S3-004".into(),
            address: "aws_s3_bucket.logs".into(),
            environment: "prod".into(),
            resource_type: Some("aws_s3_bucket".into()),
            reason: "log bucket, versioning not wanted".into(),
            expires_at: now() + Duration::days(7),
            created_by: "bob".into(),
        }
    }

    fn finding() -> Finding {
        Finding {
            rule: "FERRY-S3-004".into(),
            severity: Severity::Medium,
            address: "aws_s3_bucket.logs".into(),
            message: String::new(),
            remediation: String::new(),
        }
    }

    #[test]
    fn validation() {
        let custom = BTreeSet::from(["ACME-1".to_string()]);
        let rules = WaiverRules {
            custom_rule_ids: &custom,
            max_days: DEFAULT_MAX_WAIVER_DAYS,
        };
        assert_eq!(waiver().validate(&rules, "alice", now()), Ok(()));
        let w = Waiver {
            rule: "FERRY-S3-999".into(),
            ..waiver()
        };
        assert_eq!(
            w.validate(&rules, "alice", now()).unwrap_err().to_string(),
            "unknown rule `FERRY-S3-999`: not a built-in rule and not defined by the loaded policies"
        );
        let w = Waiver {
            rule: "ACME-1".into(),
            ..waiver()
        };
        assert_eq!(w.validate(&rules, "alice", now()), Ok(()));
        let w = Waiver {
            rule: "ACME-2".into(),
            ..waiver()
        };
        assert!(matches!(
            w.validate(&rules, "alice", now()),
            Err(WaiverError::UnknownRule { .. })
        ));
        let w = Waiver {
            expires_at: now() + Duration::days(31),
            ..waiver()
        };
        assert!(matches!(
            w.validate(&rules, "alice", now()),
            Err(WaiverError::TooLong { max_days: 30, .. })
        ));
        let short = WaiverRules {
            custom_rule_ids: &custom,
            max_days: 3,
        };
        assert!(waiver().validate(&short, "alice", now()).is_err());
        let w = Waiver {
            expires_at: now(),
            ..waiver()
        };
        assert!(matches!(
            w.validate(&rules, "alice", now()),
            Err(WaiverError::AlreadyExpired { .. })
        ));
        let w = Waiver {
            reason: " ".into(),
            ..waiver()
        };
        assert_eq!(
            w.validate(&rules, "alice", now()),
            Err(WaiverError::Missing("reason"))
        );
        assert!(matches!(
            waiver().validate(&rules, "bob", now()),
            Err(WaiverError::SelfWaiver { .. })
        ));
    }

    #[test]
    fn matching_stops_at_expiry_and_on_type_change() {
        let w = waiver();
        let f = finding();
        assert!(w.applies_to(&f, "prod", Some("aws_s3_bucket"), now()));
        assert!(!w.applies_to(&f, "staging", Some("aws_s3_bucket"), now()));
        assert!(!w.applies_to(&f, "prod", Some("aws_s3_bucket"), now() + Duration::days(7)));
        assert!(!w.applies_to(&f, "prod", Some("aws_s3_directory_bucket"), now()));
        let other_rule = Finding {
            rule: "FERRY-S3-005".into(),
            ..finding()
        };
        assert!(!w.applies_to(&other_rule, "prod", Some("aws_s3_bucket"), now()));
        let plan_level = Waiver {
            address: PLAN_ADDRESS.into(),
            resource_type: None,
            ..waiver()
        };
        let f = Finding {
            address: PLAN_ADDRESS.into(),
            ..finding()
        };
        assert!(plan_level.applies_to(&f, "prod", None, now()));
    }
}
