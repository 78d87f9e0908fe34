//! Plain rows the store hands out. They are deliberately not `Serialize`: the HTTP layer
//! converts them to the wire types of `ferry-api` by hand, so the database shape and the API
//! shape can change independently.

use ferry_core::{
    ActionId, ActionStatus, RunId, RunNumber, RunStatus, StageId, StageKind, StageStatus,
};

#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub id: i64,
    pub name: String,
    /// Set for a run's per-action credential: it may only use the state backend, and only
    /// for this project and environment.
    pub scope: Option<TokenScope>,
    pub hint: String,
    pub admin: bool,
    pub created_at: String,
    pub created_by: String,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
    /// Set for a personal token: it acts as this user, within the user's grants.
    pub user_id: Option<i64>,
    /// After this instant (RFC 3339) the token is refused.
    pub expires_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TokenScope {
    pub run_id: i64,
    pub project_id: i64,
    pub environment: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Project {
    pub id: i64,
    pub name: String,
    pub repo: String,
    pub created_at: String,
    pub created_by: String,
    /// Credentials Ferry uses when it fetches the repository, if any.
    pub git: Option<GitCredentials>,
}

/// A project's git credentials: a username and the NAME of a secret in the secret store
/// (resolved, project scope first, then global, each time Ferry fetches). Never the value.
#[derive(Debug, Clone, PartialEq)]
pub struct GitCredentials {
    pub username: String,
    pub secret: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub id: RunId,
    pub project_id: i64,
    pub project: String,
    pub number: RunNumber,
    pub pipeline: String,
    pub pipeline_path: String,
    pub git_ref: String,
    pub commit_sha: String,
    pub status: RunStatus,
    pub reason: Option<String>,
    pub triggered_by: String,
    pub spec_yaml: String,
    pub waiting_env: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub kind: RunKind,
    pub options: RunOptions,
    /// The run this one retries, or whose commit a rollback returns to.
    pub source_run: Option<RunId>,
    /// `Name <email>` of the commit's author, who may not approve it.
    pub commit_author: Option<String>,
}

/// Why a run exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    /// A commit deployed through the pipeline's environments.
    Deploy,
    /// A failed, stale or interrupted run again, re-planned from its first unfinished environment.
    Retry,
    /// A commit that already went through the earlier environments, started at a later one.
    Promote,
    /// An environment returned to the commit of an earlier successful run.
    Rollback,
    /// `terraform plan -destroy` in one environment, always approved.
    Destroy,
}

impl RunKind {
    pub const ALL: &'static [RunKind] = &[
        RunKind::Deploy,
        RunKind::Retry,
        RunKind::Promote,
        RunKind::Rollback,
        RunKind::Destroy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Deploy => "deploy",
            RunKind::Retry => "retry",
            RunKind::Promote => "promote",
            RunKind::Rollback => "rollback",
            RunKind::Destroy => "destroy",
        }
    }
}

impl std::str::FromStr for RunKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        RunKind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown run kind `{s}`"))
    }
}

/// What a run was asked to do beyond its pipeline's defaults; recorded on the run and shown
/// with its approvals.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunOptions {
    /// The environments this run goes through, in pipeline order (empty: all of them).
    pub environments: Vec<String>,
    /// `terraform plan -target=ADDR`.
    pub targets: Vec<String>,
    /// `terraform plan -replace=ADDR`.
    pub replaces: Vec<String>,
    /// `terraform plan -destroy`.
    pub destroy: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub id: StageId,
    pub run_id: RunId,
    pub position: i64,
    pub environment: String,
    pub kind: StageKind,
    pub status: StageStatus,
    pub reason: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub id: ActionId,
    pub stage_id: StageId,
    pub run_id: RunId,
    pub position: i64,
    pub name: String,
    pub kind: String,
    pub command: Option<String>,
    pub timeout_ms: i64,
    pub status: ActionStatus,
    pub exit_code: Option<i64>,
    pub error: Option<String>,
    pub pid: Option<i64>,
    pub pid_start_time: Option<i64>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub run_id: RunId,
    pub environment: String,
    pub sha256: String,
    pub has_changes: bool,
    /// JSON text produced by the engine (counts and per-resource actions).
    pub summary: String,
    pub plan_path: String,
    pub json_path: String,
    pub created_at: String,
    /// The state the plan was made against; `None` when the environment had no state yet.
    pub state: Option<StateBinding>,
}

/// A state's identity at one moment: apply refuses a plan whose state moved on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateBinding {
    pub lineage: String,
    pub serial: i64,
    /// Ferry's version number of that state.
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Approval {
    pub run_id: RunId,
    pub environment: String,
    pub decision: Decision,
    pub comment: String,
    pub actor: String,
    pub created_at: String,
    /// The plan this decision was about: its digest, the state it was planned against and
    /// the commit.
    pub plan_sha256: Option<String>,
    pub state: Option<StateBinding>,
    pub commit_sha: Option<String>,
    /// An admin's emergency approval that bypassed the count (never the plan binding).
    pub break_glass: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Reject,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Reject => "reject",
        }
    }
}

impl std::str::FromStr for Decision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "approve" => Ok(Decision::Approve),
            "reject" => Ok(Decision::Reject),
            _ => Err(format!(
                "unknown decision `{s}` (expected approve or reject)"
            )),
        }
    }
}

/// A run with everything a detail view shows.
#[derive(Debug, Clone)]
pub struct RunDetail {
    pub run: Run,
    pub stages: Vec<Stage>,
    pub actions: Vec<Action>,
    pub plans: Vec<Plan>,
    pub approvals: Vec<Approval>,
}

impl RunDetail {
    /// The run's environments, in the order it goes through them.
    pub fn environments(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for stage in &self.stages {
            if out.last() != Some(&stage.environment.as_str()) {
                out.push(&stage.environment);
            }
        }
        out
    }
}

/// What to create for a new run: its stages and their actions, all `Pending`.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub project_id: i64,
    pub pipeline: String,
    pub pipeline_path: String,
    pub git_ref: String,
    pub commit_sha: String,
    pub spec_yaml: String,
    /// The first environment, which the new run queues for.
    pub first_environment: String,
    pub stages: Vec<NewStage>,
    pub kind: RunKind,
    pub options: RunOptions,
    pub source_run: Option<RunId>,
    pub commit_author: Option<String>,
}

/// An environment a run completed: the history of what each environment runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    pub project: String,
    pub pipeline: String,
    pub environment: String,
    pub run_id: RunId,
    pub run_number: RunNumber,
    pub run_kind: RunKind,
    pub commit_sha: String,
    pub plan_sha256: Option<String>,
    /// Whether the plan had changes (false: the environment was already there).
    pub changed: bool,
    pub completed_at: String,
}

/// How an approval is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalMode {
    /// Counted against the environment's rule.
    Normal,
    /// An admin's emergency approval: needs a reason, satisfies the count on its own, and
    /// is audited and announced as such. It never bypasses the plan binding.
    BreakGlass,
}

#[derive(Debug, Clone)]
pub struct NewStage {
    pub environment: String,
    pub kind: StageKind,
    pub actions: Vec<NewAction>,
}

#[derive(Debug, Clone)]
pub struct NewAction {
    pub name: String,
    pub kind: String,
    pub command: Option<String>,
    pub timeout_ms: i64,
}

#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub project: Option<String>,
    pub status: Option<RunStatus>,
    /// Only runs with a smaller id (keyset pagination, newest first).
    pub before: Option<RunId>,
    pub limit: i64,
    /// `Some`: only runs of these projects (the ones the caller may see).
    pub visible: Option<Vec<String>>,
}

/// One environment's hold and queue.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvQueue {
    pub project: String,
    pub pipeline: String,
    pub environment: String,
    pub holder: Option<(RunId, String)>,
    /// Waiting runs in the order they will get the environment.
    pub waiting: Vec<RunId>,
}

/// The answer to an attempt to hold an environment.
#[derive(Debug, Clone, PartialEq)]
pub enum Hold {
    Acquired,
    /// Someone else holds it, or an earlier run queues for it.
    Waiting {
        holder: Option<RunId>,
    },
    /// The run is already over (cancelled or superseded meanwhile).
    RunFinished(RunStatus),
}

/// An action whose process may still be alive after a crash.
#[derive(Debug, Clone)]
pub struct OrphanAction {
    pub action: ActionId,
    pub run_id: RunId,
    pub pid: Option<i64>,
    pub pid_start_time: Option<i64>,
}
