//! The policy gate: pure rules over `terraform show -json` plans.
//!
//! A run's policy stage hands this crate the plan JSON and the run's [`Context`]; it gets
//! back [`Finding`]s from the built-in guardrail pack ([`builtin`]) and from the project's
//! Rego policies ([`rego::PolicySet`]), then [`Report::build`] decides which of them block
//! the run at the environment's `fail_on` level once [`Waiver`]s are applied.
//!
//! **Architecture Invariant:** no I/O beyond reading a policy directory when asked
//! ([`rego::read_policy_dir`]), no async, no store. Every decision here is a function of its
//! arguments (the clock is a parameter), so the engine can call it from a blocking task and
//! the CLI can call it offline on a plan file.

pub mod builtin;
mod levels;
mod model;
pub mod plan;
pub mod rego;
mod waiver;

pub use levels::{blocking, default_fail_on, Report, ReportEntry};
pub use model::{Config, Context, Finding, Requirement, Severity, UnknownSeverity, PLAN_ADDRESS};
pub use plan::PlanInput;
pub use rego::{run_rego_tests, touches_policy, PolicySet, TestReport};
pub use waiver::{Waiver, WaiverError, WaiverRules, DEFAULT_MAX_WAIVER_DAYS};

/// Everything the policy stage needs for one environment of one run.
#[derive(Clone, Copy, Debug)]
pub struct StageInput<'a> {
    /// `terraform show -json` of the run's plan file.
    pub plan_json: &'a [u8],
    pub context: &'a Context,
    pub config: &'a Config,
    /// The Rego policies read from the deploy branch, if the pipeline has any.
    pub policies: Option<&'a PolicySet>,
    /// Paths the commit under review changes (relative to the repository root), and the
    /// pipeline's policy directory: touching it raises FERRY-POLICY-001.
    pub changed_paths: &'a [&'a str],
    pub policy_dir: &'a str,
    pub fail_on: Severity,
    /// Waivers in force for this project (any environment; matching checks it).
    pub waivers: &'a [Waiver],
    pub now: chrono::DateTime<chrono::Utc>,
}

/// The policy stage in one call: parse the plan, run the built-in pack and the Rego
/// policies, flag policy changes, apply waivers and `fail_on`. `Ok(report)` with
/// `report.blocked()` is a policy violation (an outcome); `Err` means the gate could not
/// judge (bad plan, bad policy, time limit) and the stage failed as broken.
pub fn check(input: &StageInput<'_>) -> Result<Report, PolicyError> {
    let plan = PlanInput::parse(input.plan_json)?;
    let mut findings = builtin::evaluate(&plan, input.context, input.config);
    if let Some(policies) = input.policies {
        findings.extend(policies.evaluate(&plan, input.context)?);
    }
    findings.extend(rego::policy_change_finding(
        input.changed_paths,
        input.policy_dir,
    ));
    Ok(blocking(
        findings,
        input.fail_on,
        input.waivers,
        &plan,
        &input.context.environment,
        input.now,
    ))
}

/// Why the policy stage could not judge a plan. A plan that breaks a rule is not an error:
/// it is a [`Finding`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    #[error("invalid plan JSON at line {line}, column {column}: {message}")]
    InvalidPlanJson {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("unsupported plan format_version `{found}`: Ferry reads 1.x, the format of `terraform show -json` since Terraform 0.15")]
    UnsupportedFormatVersion { found: String },
    #[error("not a Terraform plan: {0}")]
    NotAPlan(String),
    #[error("{path}:{line}:{column}: {message}")]
    RegoSyntax {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "{path}:{line}: function `{function}` calls itself (recursion is not allowed in Rego)"
    )]
    RegoRecursion {
        path: String,
        line: usize,
        function: String,
    },
    #[error("policy evaluation failed: {message}")]
    Rego { message: String },
    #[error("policy evaluation exceeded its time limit of {limit:?}")]
    TimeLimit { limit: std::time::Duration },
    #[error("policy package {package}: {message}")]
    BadPolicyOutput { package: String, message: String },
    #[error("invalid policy configuration: {0}")]
    Config(String),
    #[error("reading {path}: {message}")]
    Io { path: String, message: String },
}

#[cfg(test)]
mod tests {
    /// The engine evaluates on a blocking thread and may share loaded policies between runs.
    #[test]
    fn types_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<super::PolicySet>();
        send_sync::<super::PlanInput>();
        send_sync::<super::Report>();
        send_sync::<super::PolicyError>();
    }
}
