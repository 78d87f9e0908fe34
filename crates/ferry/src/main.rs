//! `ferry`: the one binary. The server, the CLI that talks to it, and offline tools
//! (`validate`, `audit verify`). This file only parses arguments and dispatches; the work
//! lives in the library crates and in `cli.rs`.

mod admin;
mod cli;
mod config;
mod delivery_cmd;
mod identity_cmd;
mod policy_cmd;
mod secret_cmd;
mod state_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "ferry",
    version,
    about = "Continuous delivery for Terraform and OpenTofu"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Server URL (default: the URL the local server wrote to DATA_DIR/server.url, else http://127.0.0.1:8080).
    #[arg(long, global = true, env = "FERRY_SERVER")]
    pub server: Option<String>,
    /// API token (default: DATA_DIR/admin.token).
    #[arg(long, global = true, env = "FERRY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Data directory of the local server.
    #[arg(long, global = true, env = "FERRY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the Ferry server.
    Server(ServerArgs),
    /// Check a ferry.yaml offline.
    Validate {
        /// The file (default: ./ferry.yaml).
        path: Option<PathBuf>,
    },
    /// Manage projects.
    #[command(subcommand)]
    Project(ProjectCmd),
    /// List the pipelines of a project.
    Pipelines {
        project: String,
        #[arg(long = "ref")]
        git_ref: Option<String>,
    },
    /// Trigger a run.
    Run {
        project: String,
        /// Branch, tag or commit (default: the default branch).
        #[arg(long = "ref")]
        git_ref: Option<String>,
        #[arg(long)]
        pipeline: Option<String>,
        /// Only this environment and the ones after it (the commit must have completed the
        /// earlier ones); with --destroy, only this environment.
        #[arg(long)]
        env: Option<String>,
        /// Plan a destroy of --env; always waits for an approval.
        #[arg(long, requires = "env")]
        destroy: bool,
        /// Limit the plan to this resource address (repeatable).
        #[arg(long = "target", value_name = "ADDR")]
        targets: Vec<String>,
        /// Force replacement of this resource address (repeatable).
        #[arg(long = "replace", value_name = "ADDR")]
        replaces: Vec<String>,
        /// Wait for the run to finish, showing stage progress; exit 1 if it does not succeed.
        #[arg(long)]
        wait: bool,
    },
    /// Run a failed, interrupted or cancelled run again from its first unfinished environment (re-plans).
    Retry {
        run: i64,
        #[arg(long)]
        wait: bool,
    },
    /// Start a later environment for a commit that completed the earlier ones.
    Promote {
        project: String,
        /// The environment to start at.
        #[arg(long)]
        env: String,
        #[arg(long)]
        pipeline: Option<String>,
        /// The commit of this run (default: --ref, else the default branch).
        #[arg(long, conflicts_with = "git_ref")]
        from_run: Option<i64>,
        #[arg(long = "ref")]
        git_ref: Option<String>,
        #[arg(long)]
        wait: bool,
    },
    /// Return an environment to the commit of an earlier successful run (planned and approved as usual).
    Rollback {
        project: String,
        #[arg(long)]
        env: String,
        #[arg(long)]
        pipeline: Option<String>,
        /// The run whose commit to return to (default: the latest commit before the current one).
        #[arg(long)]
        to_run: Option<i64>,
        #[arg(long)]
        wait: bool,
    },
    /// Approvals waiting on me; with RUN and --env, what that approval is about.
    Approvals {
        run: Option<i64>,
        #[arg(long, requires = "run")]
        env: Option<String>,
    },
    /// The commits each environment ran, newest first.
    History {
        project: String,
        #[arg(long)]
        pipeline: Option<String>,
        #[arg(long)]
        env: Option<String>,
    },
    /// The event log; -f follows it live.
    Events {
        #[arg(long)]
        run: Option<i64>,
        #[arg(long)]
        project: Option<String>,
        #[arg(long)]
        env: Option<String>,
        /// Only these types, comma-separated (PIPELINE_EXECUTION_FAILED,...).
        #[arg(long = "type")]
        types: Option<String>,
        /// Keep following new events.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// List runs, newest first.
    Runs {
        #[arg(long)]
        project: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Show a run with its stages, actions and plans.
    Show { run: i64 },
    /// Print a run's log.
    Logs {
        run: i64,
        /// Follow the log until the run ends.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Cancel a run (its running action is terminated).
    Cancel { run: i64 },
    /// Approve the approval a run waits for.
    Approve(DecisionArgs),
    /// Reject the approval a run waits for (the run fails).
    Reject(DecisionArgs),
    /// Who holds each environment and who waits for it.
    Queue,
    /// Manage API tokens (personal and service).
    #[command(subcommand)]
    Token(TokenCmd),
    /// Secrets: write-only values for runs (set, list, rm).
    #[command(subcommand)]
    Secret(secret_cmd::SecretCmd),
    /// Parameters: readable configuration values for runs (set, get, list, rm).
    #[command(subcommand)]
    Param(secret_cmd::ParamCmd),
    /// Manage users (admin).
    #[command(subcommand)]
    User(identity_cmd::UserCmd),
    /// Manage teams (admin).
    #[command(subcommand)]
    Team(identity_cmd::TeamCmd),
    /// Grant a role to a user or a team (admin).
    Grant(identity_cmd::GrantArgs),
    /// Take a role away from a user or a team (admin).
    Revoke(identity_cmd::GrantArgs),
    /// List every role grant (admin).
    Grants,
    /// The calling identity and its grants.
    Whoami,
    /// Get a personal token with your password (read from standard input); it is printed
    /// once. Use it as FERRY_TOKEN.
    Login {
        #[arg(long)]
        user: String,
        /// The new token's name (default: USER-cli).
        #[arg(long)]
        token_name: Option<String>,
        /// The token's lifetime (default: 30d).
        #[arg(long, default_value = "30d")]
        expires: String,
    },
    /// Terraform states held by the built-in backend.
    #[command(subcommand)]
    State(state_cmd::StateCmd),
    /// The policy gate offline: check a plan JSON, run Rego policy tests, list rules.
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCmd),
    /// Audit log tools.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Administration of a local data dir.
    #[command(subcommand)]
    Admin(AdminCmd),
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCmd),
}

#[derive(Args, Debug)]
pub struct ServerArgs {
    /// Address to listen on.
    #[arg(long, env = "FERRY_LISTEN")]
    pub listen: Option<String>,
    /// Configuration file (default: ./ferry.toml when it exists).
    #[arg(long, env = "FERRY_CONFIG")]
    pub config: Option<PathBuf>,
    /// How long running actions may finish after SIGTERM before they are terminated.
    #[arg(long, env = "FERRY_SHUTDOWN_GRACE")]
    pub shutdown_grace: Option<String>,
    /// After SIGTERM to an action's process group, how long before SIGKILL.
    #[arg(long, env = "FERRY_KILL_GRACE")]
    pub kill_grace: Option<String>,
    /// The URL users reach Ferry at, when a proxy stands in front of it.
    #[arg(long, env = "FERRY_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Comma-separated addresses of reverse proxies whose X-Forwarded-For is believed.
    #[arg(long, env = "FERRY_TRUSTED_PROXIES")]
    pub trusted_proxies: Option<String>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, env = "FERRY_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "FERRY_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Session cookies without the Secure flag: only for plain HTTP on loopback.
    #[arg(long, env = "FERRY_INSECURE_COOKIES")]
    pub insecure_cookies: bool,
    /// Where runs' working directories go (default: DATA_DIR-work, beside the data dir).
    #[arg(long, env = "FERRY_WORK_DIR")]
    pub work_dir: Option<PathBuf>,
    /// Run actions WITHOUT the sandbox: code from any commit can then read the data dir,
    /// the master key and every secret. Only for a kernel without Landlock, on a machine
    /// nobody else uses.
    #[arg(long, env = "FERRY_INSECURE_NO_SANDBOX")]
    pub insecure_no_sandbox: bool,
}

#[derive(Args, Debug)]
pub struct DecisionArgs {
    pub run: i64,
    /// The environment whose approval this is.
    #[arg(long)]
    pub env: String,
    /// Why (required; for --break-glass, the emergency).
    #[arg(long, short = 'm')]
    pub message: String,
    /// Admins only: approve alone in an emergency, bypassing the count (never the plan
    /// binding); loudly audited and announced.
    #[arg(long)]
    pub break_glass: bool,
}

#[derive(Subcommand, Debug)]
pub enum ProjectCmd {
    /// Register a git repository (a URL or a local path).
    Add {
        name: String,
        repo: String,
        /// Username for fetching a private repository (with --git-secret).
        #[arg(long, requires = "git_secret")]
        git_username: Option<String>,
        /// NAME of the secret holding the password or token (set it first, globally, with
        /// `ferry secret set NAME`).
        #[arg(long, requires = "git_username")]
        git_secret: Option<String>,
    },
    List,
    /// Set (or, with --clear, remove) the git credentials a project is fetched with.
    SetCredentials {
        name: String,
        /// Username for fetching the repository (with --git-secret).
        #[arg(long, required_unless_present = "clear", requires = "git_secret")]
        git_username: Option<String>,
        /// NAME of the secret (project scope first, then global) holding the password or token.
        #[arg(long, required_unless_present = "clear", requires = "git_username")]
        git_secret: Option<String>,
        /// Remove the credentials: the repository is fetched without any.
        #[arg(long, conflicts_with_all = ["git_username", "git_secret"])]
        clear: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Create a named token; it is printed once.
    Create {
        #[arg(long)]
        name: String,
        /// A service token that is a global admin.
        #[arg(long, conflicts_with_all = ["user", "scope"])]
        admin: bool,
        /// A personal token of this user (yourself, or anyone for an admin).
        #[arg(long)]
        user: Option<String>,
        /// ROLE[@PROJECT[/ENVIRONMENT]], repeatable: a service token's grants, or the limit
        /// of a personal token. A service token without scopes is an approver everywhere.
        #[arg(long)]
        scope: Vec<String>,
        /// Lifetime, e.g. 30d or 12h (default: no expiry).
        #[arg(long)]
        expires: Option<String>,
    },
    List,
    Revoke {
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum AdminCmd {
    /// Take a consistent snapshot of the data dir's records into DIR (online-safe; never the master key).
    Backup { dir: PathBuf },
    /// Restore a backup into the (empty) data dir and verify its audit chain and state versions.
    Restore { dir: PathBuf },
    /// Re-encrypt every state version, secret and parameter under a new master key (server stopped; audited).
    RotateMasterKey,
}

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Verify the audit chain of a local data dir; names the first bad entry.
    Verify,
    /// Write the audit chain (or a filtered part) as JSON lines, through the API (admin token).
    Export {
        #[arg(long)]
        actor: Option<String>,
        /// A target, or a prefix ending in `/` (run/, state/).
        #[arg(long)]
        target: Option<String>,
        /// An action, or a prefix ending in `.` (run., state.).
        #[arg(long)]
        action: Option<String>,
        /// RFC 3339 time, inclusive.
        #[arg(long)]
        since: Option<String>,
        /// RFC 3339 time, exclusive.
        #[arg(long)]
        until: Option<String>,
        /// Write to this file instead of stdout.
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Print the resolved server configuration, secrets redacted.
    Check(ServerArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(code) => code,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    // `--output json` writes through serde_json, whose error hides the io::Error it wraps.
    err.chain().any(|e| {
        let kind = match e.downcast_ref::<serde_json::Error>() {
            Some(json) => json.io_error_kind(),
            None => e.downcast_ref::<std::io::Error>().map(std::io::Error::kind),
        };
        kind == Some(std::io::ErrorKind::BrokenPipe)
    })
}
