//! Every JSON shape of Ferry's REST API, and a typed client for it.
//!
//! **API Boundary:** this crate depends on no other Ferry crate, so the CLI (and any
//! third-party tool) can talk to a server without compiling the engine. The server converts
//! its internal types into these by hand; a change here is a change to the public API.

mod client;
mod secrets;

pub use client::{login_for_token, Client, ClientError};
pub use secrets::{ParamValue, ScopeQuery, SecretInfo, SecretKind, SecretSet};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// A stable, machine-readable code such as `not_found` or `invalid_pipeline`.
    pub code: String,
    /// A human-readable explanation.
    pub message: String,
    /// Further detail, such as the diagnostics of an invalid ferry.yaml.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
    /// Present on server errors: quote it when reporting a problem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    /// `/readyz` only: how actions are confined — `landlock (ABI 7, fully enforced)`, or
    /// `disabled: …` when the operator started the server with `--insecure-no-sandbox`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Whoami {
    pub name: String,
    /// A global admin.
    pub admin: bool,
    /// The user behind a personal token or session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The identity's grants, `ROLE[@PROJECT[/ENVIRONMENT]]`.
    #[serde(default)]
    pub grants: Vec<String>,
    /// Scopes that narrow those grants (a scoped personal token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limited_to: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ProjectCreate {
    /// `[a-z0-9][a-z0-9_-]*`, at most 63 characters.
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]*$", max_length = 63)]
    pub name: String,
    /// A git URL or a local path to a git repository.
    pub repo: String,
    /// Username Ferry fetches the repository with (with `git_secret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[^:\\x00-\\x1f\\x7f-\\x9f]{1,255}$")]
    pub git_username: Option<String>,
    /// NAME of the secret (in the secret store, global scope at registration) holding the
    /// password or token; never the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[A-Za-z_][A-Za-z0-9_]*$", max_length = 128)]
    pub git_secret: Option<String>,
}

/// Sets or clears the git credentials of a project: both fields, or neither to clear them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectUpdate {
    #[serde(default)]
    #[schema(pattern = "^[^:\\x00-\\x1f\\x7f-\\x9f]{1,255}$")]
    pub git_username: Option<String>,
    /// NAME of the secret (project scope first, then global) holding the password or token.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z_][A-Za-z0-9_]*$", max_length = 128)]
    pub git_secret: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Project {
    pub name: String,
    pub repo: String,
    pub created_at: String,
    pub created_by: String,
    /// Username of the project's git credentials, if it has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_username: Option<String>,
    /// NAME of the secret holding the git password or token (never its value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_secret: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Pipeline {
    pub name: String,
    /// Path of its ferry.yaml in the repository.
    pub path: String,
    pub environments: Vec<String>,
    /// Diagnostics when the file is invalid at this commit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PipelineList {
    pub commit: String,
    pub pipelines: Vec<Pipeline>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunCreate {
    /// Branch, tag or commit id; the repository's default branch when absent.
    #[serde(default, rename = "ref")]
    pub git_ref: Option<String>,
    /// Pipeline name; optional when the project has exactly one.
    #[serde(default)]
    pub pipeline: Option<String>,
    /// Only this environment (and, unless destroying, the ones after it). A deploy starting
    /// past the first environment needs the commit to have completed the earlier ones.
    #[serde(default)]
    pub environment: Option<String>,
    /// Plan a destroy of `environment`; always needs an approval.
    #[serde(default)]
    pub destroy: bool,
    /// `terraform plan -target=ADDR`, recorded on the run and shown to approvers.
    #[serde(default)]
    pub targets: Vec<String>,
    /// `terraform plan -replace=ADDR`, recorded on the run and shown to approvers.
    #[serde(default)]
    pub replaces: Vec<String>,
}

/// What a run was asked to do beyond its pipeline's defaults.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct RunOptions {
    /// The environments the run goes through (empty: all of the pipeline's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environments: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replaces: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub destroy: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Run {
    pub id: i64,
    pub project: String,
    pub number: i64,
    pub pipeline: String,
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub commit: String,
    /// One of Queued, InProgress, WaitingForApproval, Succeeded, Failed, Stopping, Stopped,
    /// Cancelled, Superseded, Interrupted.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub triggered_by: String,
    /// The environment this run queues for, when it waits for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// deploy, retry, promote, rollback or destroy.
    pub kind: String,
    #[serde(default)]
    pub options: RunOptions,
    /// The run this one retries, or whose commit a rollback returns to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_run: Option<i64>,
    /// `Name <email>` of the commit's author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_author: Option<String>,
}

impl Run {
    /// Whether the run can change no more.
    pub fn is_finished(&self) -> bool {
        matches!(
            self.status.as_str(),
            "Succeeded" | "Failed" | "Stopped" | "Cancelled" | "Superseded" | "Interrupted"
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunPage {
    pub runs: Vec<Run>,
    /// Pass as `before` to get the next (older) page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Action {
    pub id: i64,
    pub name: String,
    /// `terraform_init`, `terraform_validate`, `terraform_plan`, `terraform_apply` or `command`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Stage {
    pub id: i64,
    pub environment: String,
    /// validate, plan, policy, test, approval, apply or verify.
    pub kind: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    pub actions: Vec<Action>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ResourceChange {
    pub address: String,
    /// create, update, delete, replace or read.
    pub action: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PlanSummary {
    pub environment: String,
    /// SHA-256 of the saved plan file; apply uses exactly this file.
    pub sha256: String,
    /// The state the plan was made against (absent: the environment had no state yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<StateBinding>,
    pub add: u32,
    pub change: u32,
    pub destroy: u32,
    pub has_changes: bool,
    pub resources: Vec<ResourceChange>,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Approval {
    pub environment: String,
    /// approve or reject.
    pub decision: String,
    pub comment: String,
    pub actor: String,
    pub created_at: String,
    /// The plan this decision is bound to: apply refuses any other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<StateBinding>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// An admin's emergency approval that bypassed the count.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub break_glass: bool,
}

/// A state's lineage and serial at one moment.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct StateBinding {
    pub lineage: String,
    pub serial: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunDetail {
    #[serde(flatten)]
    pub run: Run,
    pub stages: Vec<Stage>,
    pub plans: Vec<PlanSummary>,
    pub approvals: Vec<Approval>,
    /// Each environment's policy report, once its policy stage ran.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy: Vec<PolicyReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalCreate {
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]*$", max_length = 63)]
    pub environment: String,
    /// approve or reject.
    #[schema(pattern = "^(approve|reject)$")]
    pub decision: String,
    /// Why; required (for a break-glass approval, the emergency).
    #[schema(pattern = "\\S")]
    pub comment: String,
    /// An admin's emergency approval: satisfies the count on its own, never the plan
    /// binding; loudly audited and announced as `MANUAL_APPROVAL_OVERRIDDEN`.
    #[serde(default)]
    pub break_glass: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct LogLine {
    /// Run-wide line sequence number, from 1.
    pub seq: u64,
    /// The action that wrote the line (0 for Ferry's own run-level lines).
    pub action: i64,
    /// Line number within the action.
    pub n: u64,
    pub ts: String,
    /// out, err or sys (a line Ferry wrote).
    pub stream: String,
    pub text: String,
    /// The line continues the previous one (a line longer than 64 KiB is split).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub continued: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LogPage {
    pub lines: Vec<LogLine>,
    /// Byte offset to pass as `offset` to continue.
    pub next_offset: u64,
    /// The run is finished and every line has been returned.
    pub complete: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EnvironmentQueue {
    pub project: String,
    pub pipeline: String,
    pub environment: String,
    /// The run holding the environment (from its plan through its apply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_by: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_since: Option<String>,
    /// Runs waiting for it, first in line first.
    pub waiting: Vec<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenCreate {
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]*$", max_length = 63)]
    pub name: String,
    /// A service token that is a global admin (may manage users, teams and tokens).
    #[serde(default)]
    pub admin: bool,
    /// A personal token of this user: it acts as the user, within the user's grants (and
    /// its scopes, if any). Users may create their own; an admin may create anyone's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]*$", max_length = 63)]
    pub user: Option<String>,
    /// `ROLE[@PROJECT[/ENVIRONMENT]]` entries: a service token's grants, or the limit of a
    /// personal token. A service token without scopes is an approver on every project.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// RFC 3339; the token is refused from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Token {
    pub name: String,
    /// The first characters, to recognise it.
    pub hint: String,
    pub admin: bool,
    /// The owner of a personal token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    pub created_at: String,
    pub created_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenCreated {
    #[serde(flatten)]
    pub token: Token,
    /// The token itself: shown once, never stored by Ferry.
    pub secret: String,
}

/// Who holds a state's lock, as Terraform reported it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StateLock {
    pub id: String,
    pub operation: String,
    pub info: String,
    /// `user@hostname` as the client sent it.
    pub who: String,
    pub created: String,
    /// The Ferry identity (token or run credential) that took the lock.
    pub locked_by: Option<String>,
}

/// One version of a state: metadata only, never content.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StateVersion {
    /// 1, 2, 3 … within the state.
    pub number: i64,
    pub serial: i64,
    pub lineage: String,
    pub sha256: String,
    pub size: i64,
    /// The identity that wrote it.
    pub writer: String,
    pub created_at: String,
    /// Retention deleted its content; the metadata stays.
    pub pruned: bool,
}

/// A state in a listing. `name` is empty for an environment's main state.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StateSummary {
    pub project: String,
    pub environment: String,
    pub name: String,
    pub current: Option<StateVersion>,
    pub lock: Option<StateLock>,
    pub retention_days: i64,
    pub retention_keep: i64,
}

/// One resource of a state, summarised: no attribute values.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StateResource {
    pub address: String,
    pub kind: String,
    pub instances: usize,
}

/// A state version with its resources summarised.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StateDetail {
    #[serde(flatten)]
    pub state: StateSummary,
    /// The version shown (the current one unless `?version=` asked for another).
    pub version: StateVersion,
    /// Empty for OpenTofu's encrypted state, whose resources Ferry cannot see.
    pub resources: Vec<StateResource>,
    pub encrypted: bool,
}

/// Resources added, removed and changed between two versions (addresses only).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StateDiff {
    pub from: i64,
    pub to: i64,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StateRollback {
    /// The version whose content becomes current again.
    pub version: i64,
    #[serde(default)]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StateRetention {
    /// Keep versions at least this many days (at most [`MAX_RETENTION_DAYS`]).
    #[schema(minimum = 0, maximum = 36500)]
    pub days: i64,
    /// And always the newest this many (at most [`MAX_RETENTION_KEEP`]).
    #[schema(minimum = 1, maximum = 1000000)]
    pub keep: i64,
}

/// A century: retention is a policy, not a date computation that can overflow.
pub const MAX_RETENTION_DAYS: i64 = 36_500;
pub const MAX_RETENTION_KEEP: i64 = 1_000_000;

/// `POST /api/v1/projects/{project}/promote`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromoteCreate {
    /// The environment to start at; the commit must have completed every earlier one.
    pub environment: String,
    #[serde(default)]
    pub pipeline: Option<String>,
    /// The commit of this run (default: what `ref` resolves to, or the default branch).
    #[serde(default)]
    pub from_run: Option<i64>,
    #[serde(default, rename = "ref")]
    pub git_ref: Option<String>,
}

/// `POST /api/v1/projects/{project}/rollback`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackCreate {
    pub environment: String,
    #[serde(default)]
    pub pipeline: Option<String>,
    /// Return to this run's commit (default: the latest commit that completed the
    /// environment before the one it runs now).
    #[serde(default)]
    pub to_run: Option<i64>,
}

/// One environment a run completed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Deployment {
    pub environment: String,
    pub pipeline: String,
    pub run_id: i64,
    pub run_number: i64,
    /// deploy, retry, promote, rollback or destroy.
    pub run_kind: String,
    pub commit: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_sha256: Option<String>,
    /// false when the plan had nothing to change.
    pub changed: bool,
    pub completed_at: String,
}

/// An approval someone may give now.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PendingApproval {
    pub run: Run,
    pub environment: String,
}

/// Everything an approver is shown before deciding.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApprovalView {
    pub run: Run,
    pub environment: String,
    /// Who may approve (empty: anyone but the triggerer and the commit's author).
    pub approvers: Vec<String>,
    pub required: u32,
    /// Seconds the approval may wait before the run fails with MANUAL_APPROVAL_FAILED.
    pub timeout_seconds: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_since: Option<String>,
    /// The plan, destroys first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanSummary>,
    /// The environment's policy and test stages.
    pub checks: Vec<Check>,
    /// Decisions so far.
    pub decisions: Vec<Approval>,
    /// The commit the environment runs now, and the diff stat from it to this run's commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff_stat: Option<String>,
    /// The policy stage's findings, once it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyReport>,
}

/// The policy gate's verdict for one environment of a run.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PolicyReport {
    pub environment: String,
    /// The lowest blocking severity in this environment.
    pub fail_on: String,
    /// true: the run failed with POLICY_VIOLATION.
    pub blocked: bool,
    /// Most severe first.
    pub findings: Vec<PolicyFinding>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PolicyFinding {
    /// FERRY-S3-001, or the id a Rego policy gave.
    pub rule: String,
    /// info, low, medium, high or critical.
    pub severity: String,
    /// The resource address, or `(configuration)`.
    pub address: String,
    pub message: String,
    pub remediation: String,
    /// At or above fail_on and not waived.
    pub blocking: bool,
    /// A waiver covers this finding: who granted it, why, and until when.
    pub waived: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waived_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiver_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiver_expires_at: Option<String>,
}

/// `POST /api/v1/projects/{project}/waivers`: waive one finding of one run.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WaiverCreate {
    /// The run whose finding is waived (its triggerer and commit author may not waive it).
    pub run_id: i64,
    #[schema(pattern = "\\S")]
    pub rule: String,
    #[schema(pattern = "\\S")]
    pub address: String,
    #[schema(pattern = "\\S")]
    pub environment: String,
    #[schema(pattern = "\\S")]
    pub reason: String,
    /// RFC 3339 time, at most `policy.max_waiver_days` (default 30) ahead.
    #[schema(format = DateTime)]
    pub expires_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Waiver {
    pub id: i64,
    pub project: String,
    pub rule: String,
    pub address: String,
    pub environment: String,
    /// The resource's type when waived: the waiver stops applying if it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    pub reason: String,
    pub expires_at: String,
    pub created_by: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Check {
    /// policy or test.
    pub stage: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub actions: Vec<CheckAction>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CheckAction {
    pub name: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
}

/// One event of the event log (docs/events.md). The shape is a stable contract.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Event {
    /// The cursor: events are numbered in the order they happened.
    pub id: i64,
    /// PIPELINE_EXECUTION_STARTED, STAGE_EXECUTION_FAILED, MANUAL_APPROVAL_NEEDED, ...
    #[serde(rename = "type")]
    pub kind: String,
    pub time: String,
    pub project: String,
    pub pipeline: String,
    pub run_id: i64,
    pub run_number: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    pub commit: String,
    /// Who caused it: a person or token, or `system` for the engine's own progress.
    pub actor: String,
    /// Why, for failures, cancellations and decisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Event-specific details (the plan digest of an approval, an action's exit code, ...).
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventPage {
    pub events: Vec<Event>,
    /// Pass as `after` to get the next page; the last event's id (or the `after` given).
    pub next_after: i64,
}

/// One entry of the audit chain.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct AuditEntry {
    pub seq: i64,
    pub time: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub source: String,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// The entry's HMAC over its content and the previous entry's MAC.
    pub mac: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub next_after: i64,
}

/// A local user.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub name: String,
    pub disabled: bool,
    /// Whether the user can log in with a password.
    pub has_password: bool,
    pub teams: Vec<String>,
    /// The user's own grants (team grants are listed with the team).
    pub grants: Vec<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserCreate {
    /// `[a-z0-9][a-z0-9_-]*`, at most 63 characters.
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]*$", max_length = 63)]
    pub name: String,
    /// At least 12 characters. Without one the user can only use tokens an admin makes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 12)]
    pub password: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// At least 12 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 12)]
    pub password: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Team {
    pub name: String,
    pub members: Vec<String>,
    pub grants: Vec<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamCreate {
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]*$", max_length = 63)]
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamMember {
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]*$", max_length = 63)]
    pub user: String,
}

/// A role granted to a user or a team: exactly one of `user` and `team`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RoleGrant {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// `ROLE[@PROJECT[/ENVIRONMENT]]`, e.g. `approver@network/staging`.
    pub grant: String,
}

/// `POST /api/v1/login`, as JSON or as a form.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub username: String,
    pub password: String,
}

/// A started session. The cookie carries the session; state-changing requests must also
/// send `csrf_token` in the `X-CSRF-Token` header.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionInfo {
    pub user: String,
    pub csrf_token: String,
    pub expires_at: String,
}
