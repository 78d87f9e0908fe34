//! The run engine: turns a trigger into a run, drives each run through its environments and
//! stages with the local executor, and recovers truthfully after a crash.
//!
//! One task (a *driver*) per unfinished run. A driver re-reads its run from the store at
//! every step and decides the next one, so its only memory is the database: a run that was
//! queued or waiting for an approval when the server died simply gets a new driver after
//! restart. Drivers wait on one shared "something changed" signal (an environment was
//! released, an approval arrived, a run was superseded) and re-check, which keeps wake-ups
//! simple and impossible to lose.
//!
//! **Architecture Invariant:** the engine never writes a status itself; it asks the store,
//! which checks every change against `ferry_core`'s state machine.

mod approvals;
mod audit;
pub mod datadir;
mod driver;
pub mod executor;
pub mod git;
pub mod identity;
mod lifecycle;
mod logs;
pub mod model;
mod policy;
mod projects;
pub mod records;
mod requests;
mod runs;
pub mod secrets;
pub mod stages;
pub mod state;
mod state_reads;
mod system;
pub mod terraform;
mod workspace;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_core::{Actor, RunId, RunStatus};
use ferry_store::Store;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use approvals::{ApprovalView, CheckResult};
pub use ferry_executor::sandbox::probe as probe_sandbox;
pub use ferry_executor::SandboxSupport;
pub use policy::WaiverRequest;
pub use requests::RunRequest;
pub use terraform::PlanSummary;
pub use workspace::Escape;

/// The variables of the server's own environment that actions receive (the binary reads
/// them; the engine never reads the environment). Nothing else of the server's environment
/// reaches an action, and never a `FERRY_*` configuration variable.
pub const PASSTHROUGH_ENV: &[&str] = &[
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "TF_PLUGIN_CACHE_DIR",
    "TF_CLI_CONFIG_FILE",
];

/// What the engine needs; the binary builds it from flags and its own environment.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    /// Where runs' working directories live (`WORK/run-N`): outside the data dir, which
    /// actions never see.
    pub work_dir: PathBuf,
    /// How actions are confined.
    pub sandbox: SandboxMode,
    /// After SIGTERM to an action's process group, how long before SIGKILL.
    pub kill_grace: Duration,
    /// The PATH used to find `terraform` and given to actions.
    pub path_var: String,
    /// Variables of the server's environment passed to actions (HOME, LANG, proxies...).
    /// Never `FERRY_*` ones.
    pub passthrough_env: Vec<(String, String)>,
    /// Where actions reach the built-in state backend (`http://127.0.0.1:8080`).
    pub backend_url: String,
    /// Which transports git may fetch projects over, and how long one git operation may take.
    pub git: git::GitOptions,
}

/// How actions are confined (docs/security.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxMode {
    /// Every action runs in the Landlock sandbox; on a kernel without it, actions are
    /// refused. Beneath `hidden` (the data dir, the work dir and the key files are added by
    /// the engine) nothing is visible to an action.
    Enforce {
        hidden: Vec<PathBuf>,
        /// Directories every action may also write (shared caches), never inside a hidden
        /// path.
        writable: Vec<PathBuf>,
    },
    /// `--insecure-no-sandbox`: the operator accepted that code from a commit can read
    /// everything the server can.
    Disabled,
}

/// What `/readyz` and `ferry config check` say about the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxStatus {
    /// `landlock`, `disabled` or `unavailable`.
    pub mode: &'static str,
    pub detail: String,
    /// Whether actions can run.
    pub actions_allowed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] ferry_store::Error),
    #[error(transparent)]
    Git(#[from] git::GitError),
    #[error("project `{project}` has no ferry.yaml at {commit}")]
    NoPipeline { project: String, commit: String },
    #[error("pipeline `{name}` not found (available: {})", available.join(", "))]
    PipelineNotFound {
        name: String,
        available: Vec<String>,
    },
    #[error("project has several pipelines ({}); name one", available.join(", "))]
    AmbiguousPipeline { available: Vec<String> },
    #[error("{path} is not a valid pipeline:\n{}", diagnostics.join("\n"))]
    InvalidPipeline {
        path: String,
        diagnostics: Vec<String>,
    },
    /// A secret or parameter the pipeline references has no value in any scope the run
    /// may use; `message` names it and the scopes searched.
    #[error("{message}")]
    MissingSecret { message: String },
    #[error(transparent)]
    Terraform(#[from] terraform::BinaryError),
    /// The request is malformed: a value that can never be right.
    #[error("{0}")]
    Invalid(String),
    /// The request is well-formed but refused by what the pipeline, the run or the clock say
    /// (an environment the pipeline does not have, an expiry already past).
    #[error("{0}")]
    Refused(String),
    /// Apply refused: the plan is not the approved one, or the state moved on since.
    #[error("{0}")]
    StalePlan(String),
    /// A log offset that is not one a reader was handed.
    #[error("{0}")]
    InvalidOffset(String),
    #[error("a password needs at least {min} characters")]
    WeakPassword { min: usize },
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("run {run} is already {status}")]
    RunFinished { run: RunId, status: RunStatus },
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A path the pipeline takes from its commit leaves the checkout.
    #[error(transparent)]
    Escape(#[from] workspace::Escape),
    /// This host cannot sandbox actions and the operator did not opt out.
    #[error("actions cannot be sandboxed on this host ({0}); Ferry refuses to run code from a commit unconfined — fix the kernel (Landlock, Linux 5.13+) or start the server with --insecure-no-sandbox")]
    NoSandbox(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A pipeline found in a project at some commit.
#[derive(Debug, Clone)]
pub struct PipelineInfo {
    pub name: String,
    pub path: String,
    pub environments: Vec<String>,
    /// Rendered diagnostics when the file does not lower.
    pub errors: Vec<String>,
}

/// Something to observe for metrics: an action ended after `duration`.
pub type ActionObserver = Arc<dyn Fn(&str, &str, Duration) + Send + Sync>;

/// Why a driver's cancellation token fired.
#[derive(Debug, Clone)]
enum StopReason {
    Cancel(Actor),
    Shutdown,
}

struct RunHandle {
    cancel: CancellationToken,
    reason: Mutex<Option<StopReason>>,
    log: Mutex<Option<watch::Receiver<u64>>>,
}

struct Inner {
    config: EngineConfig,
    store: Store,
    runs: Mutex<HashMap<RunId, Arc<RunHandle>>>,
    // Invariant: bumped after every change a waiting driver might care about.
    changed: watch::Sender<u64>,
    shutting_down: AtomicBool,
    tasks: TaskTracker,
    // Invariant: at most one git operation per project mirror at a time.
    repo_locks: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>,
    observer: Mutex<Option<ActionObserver>>,
    versions: terraform::VersionCache,
    policy_files: policy::PolicyFileCache,
    master_key: Arc<ferry_secrets::MasterKey>,
    // Invariant: what the kernel enforced when the engine started (probed once).
    sandbox_support: ferry_executor::SandboxSupport,
    executor: Arc<dyn executor::Executor>,
}

/// The engine handle. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    /// An engine on an opened data dir ([`datadir::open`]) whose actions run as local
    /// process groups.
    pub fn new(config: EngineConfig, opened: datadir::Opened) -> Engine {
        Engine::with_executor(
            config,
            opened.store,
            opened.master,
            Arc::new(executor::Local),
        )
    }

    /// An engine whose actions run on `executor` (a fake one in engine tests).
    pub fn with_executor(
        config: EngineConfig,
        store: Store,
        master_key: Arc<ferry_secrets::MasterKey>,
        executor: Arc<dyn executor::Executor>,
    ) -> Engine {
        let (changed, _) = watch::channel(0);
        let sandbox_support = match config.sandbox {
            SandboxMode::Enforce { .. } => ferry_executor::sandbox::probe(),
            SandboxMode::Disabled => ferry_executor::SandboxSupport::Unavailable {
                reason: "disabled by --insecure-no-sandbox".to_owned(),
            },
        };
        Engine {
            inner: Arc::new(Inner {
                config,
                store,
                runs: Mutex::new(HashMap::new()),
                changed,
                shutting_down: AtomicBool::new(false),
                tasks: TaskTracker::new(),
                repo_locks: Mutex::new(HashMap::new()),
                observer: Mutex::new(None),
                versions: terraform::VersionCache::default(),
                policy_files: policy::PolicyFileCache::default(),
                master_key,
                sandbox_support,
                executor,
            }),
        }
    }

    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn set_action_observer(&self, observer: ActionObserver) {
        *self
            .inner
            .observer
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(observer);
    }

    pub fn data_dir(&self) -> &Path {
        &self.inner.config.data_dir
    }

    /// Checks that `repo` can be a project's repository: reachable now over a transport the
    /// server allows, and, when it is a local path, not inside Ferry's data or work dir (the
    /// mirrors of other projects live there).
    pub async fn check_remote(
        &self,
        repo: &str,
        auth: Option<&git::GitAuth>,
    ) -> std::result::Result<(), git::GitError> {
        if let Some(path) = git::local_path(repo) {
            let path = std::fs::canonicalize(&path).unwrap_or(path);
            for own in [&self.inner.config.data_dir, &self.inner.config.work_dir] {
                let own = std::fs::canonicalize(own).unwrap_or_else(|_| own.clone());
                if path.starts_with(&own) {
                    return Err(git::GitError::Failed {
                        op: "ls-remote",
                        message: format!(
                            "`{repo}` is inside Ferry's own directory {}; a project cannot be fetched from there",
                            own.display()
                        ),
                    });
                }
            }
        }
        git::check_remote_with(repo, auth, &self.inner.config.git).await
    }

    /// A run's checkout and Terraform data; every action runs inside it.
    pub(crate) fn work_dir(&self, run: RunId) -> PathBuf {
        self.inner.config.work_dir.join(format!("run-{run}"))
    }

    /// Whether and how actions are sandboxed.
    pub fn sandbox_status(&self) -> SandboxStatus {
        let support = &self.inner.sandbox_support;
        match &self.inner.config.sandbox {
            SandboxMode::Disabled => SandboxStatus {
                mode: "disabled",
                detail: "--insecure-no-sandbox: actions run unconfined and can read the data dir and the master key".to_owned(),
                actions_allowed: true,
            },
            SandboxMode::Enforce { .. } if support.is_available() => SandboxStatus {
                mode: "landlock",
                detail: support.describe(),
                actions_allowed: true,
            },
            SandboxMode::Enforce { .. } => SandboxStatus {
                mode: "unavailable",
                detail: support.describe(),
                actions_allowed: false,
            },
        }
    }

    /// The sandbox for one action of a run, or why there can be none; `Ok(None)` only when
    /// the operator disabled sandboxing.
    pub(crate) fn action_sandbox(
        &self,
        run_dir: &workspace::RunDir,
        terraform: Option<&Path>,
        env: &[(String, String)],
    ) -> Result<Option<ferry_executor::Sandbox>> {
        let SandboxMode::Enforce { hidden, writable } = &self.inner.config.sandbox else {
            return Ok(None);
        };
        if !self.inner.sandbox_support.is_available() {
            return Err(Error::NoSandbox(self.inner.sandbox_support.describe()));
        }
        let config = &self.inner.config;
        let hide: Vec<PathBuf> = [&config.data_dir, &config.work_dir]
            .into_iter()
            .chain(hidden)
            .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
            .collect();
        // The Terraform binary's directory stays readable even inside a hidden path (a
        // wrapper script needs its neighbours), but never one that holds a hidden path.
        let readable: Vec<PathBuf> = terraform
            .and_then(|bin| std::fs::canonicalize(bin).ok())
            .and_then(|bin| bin.parent().map(Path::to_path_buf))
            .into_iter()
            .filter(|dir| !hide.iter().any(|h| h.starts_with(dir)))
            .collect();
        // Terraform's plugin cache is shared by runs and written by `terraform init`.
        let writable: Vec<PathBuf> = env
            .iter()
            .filter(|(k, _)| k == "TF_PLUGIN_CACHE_DIR")
            .map(|(_, v)| PathBuf::from(v))
            .chain(writable.iter().cloned())
            .map(|p| std::fs::canonicalize(&p).unwrap_or(p))
            .filter(|dir| {
                dir.is_dir()
                    && !hide
                        .iter()
                        .any(|h| h.starts_with(dir) || dir.starts_with(h))
            })
            .collect();
        Ok(Some(run_dir.sandbox(&writable, &readable, &hide)))
    }

    /// The append-only log file of a run.
    pub fn log_path(&self, run: RunId) -> PathBuf {
        self.inner
            .config
            .data_dir
            .join("logs")
            .join(format!("run-{run}.log"))
    }

    /// A receiver that changes whenever the run's log grows; `None` once the run has no
    /// driver (finished), when the file on disk is complete.
    pub fn log_updates(&self, run: RunId) -> Option<watch::Receiver<u64>> {
        let runs = self.inner.runs.lock().unwrap_or_else(|e| e.into_inner());
        let handle = runs.get(&run)?;
        let rx = handle.log.lock().unwrap_or_else(|e| e.into_inner()).clone();
        rx
    }

    /// Whether a driver is still working on the run.
    pub fn is_active(&self, run: RunId) -> bool {
        self.inner
            .runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&run)
    }

    fn notify_changed(&self) {
        self.inner.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn repo_lock(&self, project_id: i64) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .inner
            .repo_locks
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        locks.entry(project_id).or_default().clone()
    }

    fn mirror_path(&self, project_id: i64) -> PathBuf {
        self.inner
            .config
            .data_dir
            .join("repos")
            .join(format!("{project_id}.git"))
    }

    /// Brings the project's mirror up to date.
    pub async fn sync_project(&self, project: &ferry_store::Project) -> Result<git::Mirror> {
        let lock = self.repo_lock(project.id);
        let _guard = lock.lock().await;
        let auth = self.git_auth(project).await?;
        Ok(git::Mirror::sync_with(
            &project.repo,
            &self.mirror_path(project.id),
            auth.as_ref(),
            &self.inner.config.git,
        )
        .await?)
    }

    /// The project's mirror as it is on disk (no fetch, no check).
    pub(crate) fn mirror_of(&self, project: &ferry_store::Project) -> git::Mirror {
        git::Mirror {
            path: self.mirror_path(project.id),
            options: self.inner.config.git.clone(),
        }
    }

    /// The project's mirror, for checking out `commit`: fetched only when it lacks the commit
    /// (the trigger fetched it moments ago, so usually it has it).
    pub(crate) async fn mirror_with(
        &self,
        project: &ferry_store::Project,
        commit: &str,
    ) -> Result<git::Mirror> {
        let lock = self.repo_lock(project.id);
        let _guard = lock.lock().await;
        let mirror = self.mirror_of(project);
        if mirror.path.join("HEAD").exists() && mirror.has_commit(commit).await {
            return Ok(mirror);
        }
        let auth = self.git_auth(project).await?;
        Ok(git::Mirror::sync_with(
            &project.repo,
            &mirror.path,
            auth.as_ref(),
            &self.inner.config.git,
        )
        .await?)
    }

    /// The project, its refreshed mirror, the ref (default: the default branch) and the
    /// commit it resolves to.
    async fn resolve(
        &self,
        project: &str,
        git_ref: Option<&str>,
    ) -> Result<(ferry_store::Project, git::Mirror, String, String)> {
        let project = self.inner.store.project(project).await?;
        let mirror = self.sync_project(&project).await?;
        let git_ref = match git_ref {
            Some(r) => r.to_owned(),
            None => mirror.default_branch().await?,
        };
        let commit = mirror.resolve(&git_ref).await?;
        Ok((project, mirror, git_ref, commit))
    }

    /// Pipelines of a project at `git_ref` (default: the default branch).
    pub async fn pipelines(
        &self,
        project: &str,
        git_ref: Option<&str>,
    ) -> Result<(String, Vec<PipelineInfo>)> {
        let (_, mirror, _, commit) = self.resolve(project, git_ref).await?;
        let mut out = Vec::new();
        for (path, _, lowered) in lowered_pipelines(&mirror, &commit).await? {
            let errors: Vec<String> = lowered.errors().map(ToString::to_string).collect();
            let (name, environments) = match &lowered.spec {
                Some(spec) => (
                    spec.name.clone(),
                    spec.environments.iter().map(|e| e.name.clone()).collect(),
                ),
                None => (path.clone(), Vec::new()),
            };
            out.push(PipelineInfo {
                name,
                path,
                environments,
                errors,
            });
        }
        Ok((commit, out))
    }
}

/// Every `ferry.yaml` of a commit: its path, its text and what it lowers to.
pub(crate) async fn lowered_pipelines(
    mirror: &git::Mirror,
    commit: &str,
) -> Result<Vec<(String, String, ferry_spec::Lowered)>> {
    let mut out = Vec::new();
    for path in mirror.pipeline_files(commit).await? {
        let text = mirror.read_file(commit, &path).await?;
        let lowered = ferry_spec::lower(&path, &text);
        out.push((path, text, lowered));
    }
    Ok(out)
}
