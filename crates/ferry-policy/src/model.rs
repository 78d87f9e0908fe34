//! The vocabulary every rule speaks: severities, findings, the run context a plan is judged
//! in, and the configuration of the built-in pack.
//!
//! These types are serde on purpose: findings travel to the approval view and the API as
//! JSON, and `Config` is read from `ferry.yaml`'s `policy:` block.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How bad a finding is. Ordered: `Info < Low < Medium < High < Critical`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The error of [`Severity::from_str`]: names the text and the accepted values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown severity `{0}` (expected one of info, low, medium, high, critical)")]
pub struct UnknownSeverity(pub String);

impl FromStr for Severity {
    type Err = UnknownSeverity;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Severity::ALL
            .into_iter()
            .find(|sev| sev.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownSeverity(s.to_string()))
    }
}

/// One problem a rule found on one resource (or on the plan as a whole, see
/// [`PLAN_ADDRESS`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable rule id: `FERRY-S3-001` for built-in rules, whatever a Rego policy names.
    pub rule: String,
    pub severity: Severity,
    /// Terraform resource address (`module.net.aws_security_group.web`), or
    /// [`PLAN_ADDRESS`] for findings about the configuration as a whole.
    pub address: String,
    /// What is wrong. Never contains an attribute value that may be secret.
    pub message: String,
    /// How to fix it.
    pub remediation: String,
}

/// The address of findings that belong to no single resource (for example "this
/// configuration has no CloudTrail").
pub const PLAN_ADDRESS: &str = "(configuration)";

/// Where and by whom the plan is being judged. Rules read `environment` and `protected`; the
/// rest is handed to Rego policies as `input.context`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Context {
    pub project: String,
    pub pipeline: String,
    pub environment: String,
    pub commit: String,
    pub actor: String,
    /// The environment is marked `protected: true` (prod-like).
    pub protected: bool,
}

/// When a rule that depends on the environment applies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Requirement {
    /// Never required.
    #[default]
    Never,
    /// Required in environments marked `protected`.
    Protected,
    /// Required everywhere.
    Always,
}

impl Requirement {
    pub fn applies(self, ctx: &Context) -> bool {
        match self {
            Requirement::Never => false,
            Requirement::Protected => ctx.protected,
            Requirement::Always => true,
        }
    }
}

/// Configuration of the built-in pack (`policy:` in `ferry.yaml`). Every field has a default,
/// so `{}` is a valid configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Tags every taggable resource must carry (FERRY-TAG-001). Provider `default_tags` count.
    pub required_tags: Vec<String>,
    /// The tag whose value must equal the environment's name, case-insensitively (FERRY-TAG-002).
    pub environment_tag: String,
    /// A regular expression resource names must match (FERRY-TAG-003); unset disables the rule.
    pub name_pattern: Option<String>,
    /// Where S3 buckets must be encrypted with a customer-managed KMS key (FERRY-S3-002).
    pub require_customer_managed_keys: Requirement,
    /// Whether a configuration managing AWS resources must also manage a CloudTrail trail
    /// (FERRY-LOG-002). Turn off in stacks whose trail lives elsewhere.
    pub require_cloudtrail: bool,
    /// A bucket carrying this tag key with the value `critical` (any case) needs replication
    /// (FERRY-S3-008).
    pub criticality_tag: String,
    /// AWS account ids that are "ours": trust policies naming another account need
    /// `sts:ExternalId` or an organisation condition (FERRY-IAM-005). The account of a
    /// `data.aws_caller_identity` in the plan is added automatically.
    pub account_ids: Vec<String>,
    /// Resource types treated as stateful by FERRY-CHG-001, on top of the built-in list.
    pub extra_stateful_types: Vec<String>,
    /// Built-in rule ids to skip entirely.
    pub disabled_rules: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            required_tags: ["Environment", "Owner", "CostCenter", "DataClassification"]
                .map(String::from)
                .to_vec(),
            environment_tag: "Environment".to_string(),
            name_pattern: None,
            require_customer_managed_keys: Requirement::Never,
            require_cloudtrail: true,
            criticality_tag: "Criticality".to_string(),
            account_ids: Vec::new(),
            extra_stateful_types: Vec::new(),
            disabled_rules: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_orders_parses_and_serializes_lowercase() {
        assert!(Severity::Info < Severity::Low && Severity::High < Severity::Critical);
        assert_eq!("HIGH".parse::<Severity>(), Ok(Severity::High));
        assert_eq!(Severity::Medium.to_string(), "medium");
        assert_eq!(
            serde_json::to_string(&Severity::Critical).unwrap(),
            "\"critical\""
        );
        let err = "severe".parse::<Severity>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown severity `severe` (expected one of info, low, medium, high, critical)"
        );
    }

    #[test]
    fn config_defaults_and_refuses_unknown_keys() {
        let c: Config = serde_json::from_str("{}").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.required_tags.len(), 4);
        let c: Config =
            serde_json::from_str(r#"{"require_customer_managed_keys": "protected"}"#).unwrap();
        assert_eq!(c.require_customer_managed_keys, Requirement::Protected);
        assert!(serde_json::from_str::<Config>(r#"{"required_tag": []}"#).is_err());
    }
}
