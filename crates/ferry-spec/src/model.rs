//! The lowered, validated pipeline model that the rest of Ferry consumes.
//!
//! These types are the *output* of lowering a `ferry.yaml`; they carry no serde derives on
//! purpose: the YAML format is described by the hand-written lowering in `lower.rs` (and the
//! JSON Schema in `schema/ferry.schema.json`), while everything after lowering works only with
//! these checked values.

use std::collections::BTreeMap;
use std::time::Duration;

/// A pipeline definition after every default was applied and every check passed.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineSpec {
    /// Always 1 today; the format carries it so it can evolve.
    pub version: u32,
    pub name: String,
    pub source: SourceSpec,
    pub mode: ExecutionMode,
    pub terraform: TerraformSpec,
    /// Default timeout of every action that does not set its own (default 1h).
    pub timeout: Duration,
    /// Environment variables declared for every action of every environment.
    pub env: BTreeMap<String, String>,
    /// Ordered; never empty. A file without `environments` gets one implicit `default`
    /// environment with `auto_apply: true`.
    pub environments: Vec<EnvironmentSpec>,
    pub stages: StagesSpec,
    pub secrets: Vec<SecretRef>,
    /// Parameters (readable values from the same store), mapped like secrets.
    pub params: Vec<SecretRef>,
    pub notify: Vec<NotifySpec>,
    /// The policy gate's pipeline-wide settings (`policy:`).
    pub policy: PolicySpec,
}

impl PipelineSpec {
    pub fn environment(&self, name: &str) -> Option<&EnvironmentSpec> {
        self.environments.iter().find(|e| e.name == name)
    }

    /// The execution mode that applies to `environment` (its own override, else the pipeline's).
    pub fn mode_for(&self, environment: &EnvironmentSpec) -> ExecutionMode {
        environment.mode.unwrap_or(self.mode)
    }
}

/// Which commits the pipeline deploys. Empty lists mean "any".
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SourceSpec {
    pub branches: Vec<String>,
    pub paths: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExecutionMode {
    /// Waiting runs queue in arrival order (the default).
    #[default]
    Queued,
    /// A newer run replaces older runs still waiting (for an environment or an approval).
    Superseded,
}

impl ExecutionMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionMode::Queued => "queued",
            ExecutionMode::Superseded => "superseded",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TerraformSpec {
    /// Directory of the Terraform configuration, relative to the repository root, normalised
    /// (no leading `./`, no trailing `/`, never escaping the repository; `.` for the root).
    pub dir: String,
    /// The binary to run: a name looked up on PATH (`terraform`, `tofu`) or a path.
    pub binary: String,
    /// Accepted versions of the binary, in Terraform's constraint syntax.
    pub version: Option<VersionConstraint>,
}

/// A Terraform-style version constraint such as `>= 1.6, < 2.0` or `~> 1.6`.
#[derive(Clone, PartialEq)]
pub struct VersionConstraint {
    /// The text as written, for messages.
    pub text: String,
    req: semver::VersionReq,
    /// Versions ruled out with `!=`, which `semver::VersionReq` cannot express.
    excluded: Vec<semver::Version>,
}

/// Shows the text as written and its translation: `">= 1.6" => ">=1.6.0"`.
impl std::fmt::Debug for VersionConstraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} => \"{}", self.text, self.req)?;
        for v in &self.excluded {
            write!(f, ", !={v}")?;
        }
        f.write_str("\"")
    }
}

impl VersionConstraint {
    /// Parses Terraform's constraint syntax (`=`, `!=`, `>`, `>=`, `<`, `<=`, `~>`, comma
    /// separated). Returns a message on error.
    pub fn parse(text: &str) -> Result<VersionConstraint, String> {
        crate::version::parse_constraint(text)
    }

    pub(crate) fn from_parts(
        text: String,
        req: semver::VersionReq,
        excluded: Vec<semver::Version>,
    ) -> VersionConstraint {
        VersionConstraint {
            text,
            req,
            excluded,
        }
    }

    pub fn matches(&self, version: &semver::Version) -> bool {
        self.req.matches(version) && !self.excluded.iter().any(|v| v == version)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct EnvironmentSpec {
    pub name: String,
    /// Apply without waiting for an approval.
    pub auto_apply: bool,
    /// Prod-like: destroying stateful resources needs extra care.
    pub protected: bool,
    /// Overrides the pipeline's execution mode for this environment.
    pub mode: Option<ExecutionMode>,
    pub approval: ApprovalSpec,
    /// A `-var-file` for plan, relative to `terraform.dir`.
    pub vars_file: Option<String>,
    /// Environment variables for this environment's actions (override the pipeline's).
    pub env: BTreeMap<String, String>,
    pub timeout: Option<Duration>,
    /// The lowest severity that blocks a run here (`policy: { fail_on: high }`); `None`
    /// takes the default by position (first `critical`, last `medium`, others `high`).
    pub policy_fail_on: Option<FailOn>,
}

impl EnvironmentSpec {
    pub fn requires_approval(&self) -> bool {
        !self.auto_apply
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalSpec {
    /// Identities allowed to approve (`alice`, `team:platform`); empty means anyone allowed.
    pub approvers: Vec<String>,
    /// Distinct approvals needed (default 1).
    pub required: u32,
    /// How long the run may wait (default 7 days).
    pub timeout: Duration,
}

impl Default for ApprovalSpec {
    fn default() -> Self {
        ApprovalSpec {
            approvers: Vec::new(),
            required: 1,
            timeout: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// User commands per stage. `None` means the stage keeps its default actions: `validate`
/// runs `terraform validate`; `test` and `verify` have no default and are absent.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StagesSpec {
    pub validate: Option<Vec<CommandSpec>>,
    pub test: Option<Vec<CommandSpec>>,
    pub verify: Option<Vec<CommandSpec>>,
}

/// One user command, run with `sh -c` in the Terraform directory.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandSpec {
    /// Display name (defaults to the command text).
    pub name: String,
    pub run: String,
    pub timeout: Option<Duration>,
}

/// A secret (or parameter) mapped into an action's environment (`as: TF_VAR_x`) or a file
/// (`file: path`), optionally only for some stages and some branches.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretRef {
    pub name: String,
    pub target: SecretTarget,
    /// The stages whose actions receive it (`validate`, `plan`, `policy`, `test`, `apply`,
    /// `verify`); empty means every stage.
    pub stages: Vec<String>,
    /// Branch names or globs whose runs receive it; empty means every branch.
    pub branches: Vec<String>,
}

impl SecretRef {
    /// Whether actions of stage `stage` (a `StageKind` name) receive it.
    pub fn applies_to_stage(&self, stage: &str) -> bool {
        self.stages.is_empty() || self.stages.iter().any(|s| s == stage)
    }
}

/// The stages a secret can be limited to (`approval` runs no action).
pub const SECRET_STAGES: &[&str] = &["validate", "plan", "policy", "test", "apply", "verify"];

#[derive(Debug, Clone, PartialEq)]
pub enum SecretTarget {
    Env(String),
    File(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct NotifySpec {
    pub on: Vec<String>,
    pub target: NotifyTarget,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NotifyTarget {
    Webhook { url: String, secret: Option<String> },
}

/// A policy finding's severity, as `fail_on` names it. Ordered: `Info < … < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FailOn {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl FailOn {
    pub const NAMES: [&'static str; 5] = ["info", "low", "medium", "high", "critical"];

    pub fn as_str(self) -> &'static str {
        FailOn::NAMES[self as usize]
    }

    pub(crate) fn parse(text: &str) -> Option<FailOn> {
        use FailOn::*;
        [Info, Low, Medium, High, Critical]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// The policy gate's settings for the whole pipeline (`policy:` at the top level). Fields
/// left unset keep the built-in pack's defaults (documented in `docs/policy.md`); the engine
/// maps this to `ferry_policy::Config`.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicySpec {
    /// Where the Rego policies live, relative to the repository root, read from the deploy
    /// branch (default `policy`).
    pub dir: String,
    pub required_tags: Option<Vec<String>>,
    pub environment_tag: Option<String>,
    /// A regular expression resource names must match.
    pub name_pattern: Option<String>,
    /// `never`, `protected` or `always`.
    pub require_customer_managed_keys: Option<String>,
    pub require_cloudtrail: Option<bool>,
    pub criticality_tag: Option<String>,
    pub account_ids: Vec<String>,
    pub extra_stateful_types: Vec<String>,
    pub disabled_rules: Vec<String>,
    /// The longest waiver allowed, in days (default 30).
    pub max_waiver_days: u32,
}

impl Default for PolicySpec {
    fn default() -> Self {
        PolicySpec {
            dir: "policy".to_owned(),
            required_tags: None,
            environment_tag: None,
            name_pattern: None,
            require_customer_managed_keys: None,
            require_cloudtrail: None,
            criticality_tag: None,
            account_ids: Vec::new(),
            extra_stateful_types: Vec::new(),
            disabled_rules: Vec::new(),
            max_waiver_days: 30,
        }
    }
}
