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
