//! What each command does. Client commands talk to the API through `ferry_api::Client`;
//! `server`, `validate`, `audit verify` and `config check` work locally.
//!
//! Exit codes: 0 success, 1 a failed or denied run (or a failed check), 2 an error.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ferry_api::{
    ApprovalCreate, Client, ClientError, ProjectCreate, ProjectUpdate, RunCreate, TokenCreate,
};
use futures::StreamExt;
use serde::Serialize;

use crate::config::{Config, Overrides, RawConfig, DEFAULT_DATA_DIR};
use crate::AdminCmd;
use crate::{
    AuditCmd, Cli, Command, ConfigCmd, DecisionArgs, Global, Output, ProjectCmd, ServerArgs,
    TokenCmd,
};

const FAILED: u8 = 1;

/// `println!` that returns the error instead of panicking, so `ferry runs | head` ends
/// quietly (main treats a broken pipe as success).
macro_rules! out {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*)?
    };
}

pub(crate) async fn run(cli: Cli) -> Result<ExitCode> {
    let g = cli.global;
    match cli.command {
        Command::Server(args) => server(&g, args).await,
        Command::Validate { path } => validate(&g, path.as_deref()),
        Command::Config(ConfigCmd::Check(args)) => {
            let config = server_config(&g, &args)?;
            print_json(&config.redacted())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(AuditCmd::Verify) => audit_verify(&g).await,
        Command::Audit(AuditCmd::Export {
            actor,
            target,
            action,
            since,
            until,
            file,
        }) => {
            let client = client(&g)?;
            let filter = [
                ("actor", actor),
                ("target", target),
                ("action", action),
                ("since", since),
                ("until", until),
            ];
            crate::delivery_cmd::audit_export(&client, &filter, file.as_deref()).await
        }
        Command::Policy(cmd) if cmd.is_remote() => {
            let client = client(&g)?;
            match crate::policy_cmd::remote(&g, &client, cmd).await {
                Err(e) => match e.downcast_ref::<ClientError>() {
                    Some(ClientError::Api { status: 403, .. }) => {
                        eprintln!("denied: {e:#}");
                        Ok(ExitCode::from(FAILED))
                    }
                    _ => Err(e),
                },
                ok => ok,
            }
        }
        Command::Policy(cmd) => crate::policy_cmd::run(&g, cmd),
        Command::Admin(AdminCmd::Backup { dir }) => crate::admin::backup(&data_dir(&g), &dir).await,
        Command::Admin(AdminCmd::RotateMasterKey) => {
            crate::admin::rotate_master_key(&data_dir(&g)).await
        }
        Command::Admin(AdminCmd::Restore { dir }) => {
            crate::admin::restore(&dir, &data_dir(&g)).await
        }
        Command::Login {
            user,
            token_name,
            expires,
        } => login(&g, user, token_name, &expires).await,
        command => {
            let client = client(&g)?;
            match client_command(&g, &client, command).await {
                Err(e) => match e.downcast_ref::<ClientError>() {
                    // A refused decision is a denied run, not a broken tool.
                    Some(ClientError::Api { status: 403, .. }) => {
                        eprintln!("denied: {e:#}");
                        Ok(ExitCode::from(FAILED))
                    }
                    _ => Err(e),
                },
                ok => ok,
            }
        }
    }
}

fn data_dir(g: &Global) -> PathBuf {
    g.data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
}

fn server_url(g: &Global) -> String {
    match &g.server {
        Some(s) => s.clone(),
        None => std::fs::read_to_string(ferry_server::server_url_path(&data_dir(g)))
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| format!("http://{}", crate::config::DEFAULT_LISTEN)),
    }
}

/// An RFC 3339 instant `text` (`30d`, `12h`) from now.
fn expiry(text: &str) -> Result<String> {
    let lifetime = humantime::parse_duration(text)
        .with_context(|| format!("--expires: `{text}` is not a duration (e.g. 30d, 12h)"))?;
    let at = chrono::Utc::now()
        + chrono::Duration::from_std(lifetime).context("--expires is too long")?;
    Ok(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// `ferry login`: the password (first line of standard input) buys a personal token.
async fn login(
    g: &Global,
    user: String,
    token_name: Option<String>,
    expires: &str,
) -> Result<ExitCode> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        bail!("no password on standard input");
    }
    let token = TokenCreate {
        name: token_name.unwrap_or_else(|| format!("{user}-cli")),
        user: Some(user.clone()),
        expires_at: Some(expiry(expires)?),
        ..Default::default()
    };
    let login = ferry_api::Login {
        username: user,
        password,
    };
    let created = ferry_api::login_for_token(&server_url(g), &login, &token).await?;
    if g.output == crate::Output::Json {
        print_json(&created)?;
    } else {
        eprintln!(
            "personal token `{}` created (expires {}); it is shown only once:",
            created.token.name,
            created.token.expires_at.as_deref().unwrap_or("never")
        );
        out!("{}", created.secret);
    }
    Ok(ExitCode::SUCCESS)
}

fn client(g: &Global) -> Result<Client> {
    let dir = data_dir(g);
    let server = server_url(g);
    let token = match &g.token {
        Some(t) => t.clone(),
        None => {
            let path = ferry_server::admin_token_path(&dir);
            std::fs::read_to_string(&path)
                .map(|s| s.trim().to_owned())
                .with_context(|| {
                    format!(
                        "no token: pass --token, set FERRY_TOKEN, or run where {} exists",
                        path.display()
                    )
                })?
        }
    };
    Ok(Client::new(&server, &token))
}

pub(crate) fn print_json<T: Serialize>(value: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

fn server_config(g: &Global, args: &ServerArgs) -> Result<Config> {
    let file = match &args.config {
        Some(path) => RawConfig::load(path)?,
        None if Path::new("ferry.toml").exists() => RawConfig::load(Path::new("ferry.toml"))?,
        None => RawConfig::default(),
    };
    let over = Overrides {
        listen: args.listen.clone(),
        data_dir: g.data_dir.clone(),
        master_key: std::env::var("FERRY_MASTER_KEY")
            .ok()
            .filter(|v| !v.is_empty()),
        master_key_file: std::env::var_os("FERRY_MASTER_KEY_FILE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from),
        shutdown_grace: args.shutdown_grace.clone(),
        kill_grace: args.kill_grace.clone(),
        public_url: args.public_url.clone(),
        trusted_proxies: args.trusted_proxies.clone(),
        tls_cert: args.tls_cert.clone(),
        tls_key: args.tls_key.clone(),
        insecure_cookies: args.insecure_cookies.then_some(true),
        admin_password: std::env::var("FERRY_ADMIN_PASSWORD")
            .ok()
            .filter(|v| !v.is_empty()),
        work_dir: args.work_dir.clone(),
        insecure_no_sandbox: args.insecure_no_sandbox.then_some(true),
        home: std::env::var_os("HOME").map(PathBuf::from),
        config_file: args.config.clone().or_else(|| {
            Path::new("ferry.toml")
                .exists()
                .then(|| "ferry.toml".into())
        }),
    };
    Config::resolve(file, over)
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn server(g: &Global, args: ServerArgs) -> Result<ExitCode> {
    init_tracing("info");
    let config = server_config(g, &args)?;
    let passthrough_env = ferry_engine::PASSTHROUGH_ENV
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| ((*k).to_owned(), v)))
        .collect();
    let server_config = ferry_server::ServerConfig {
        listen: config.listen,
        data_dir: config.data_dir.clone(),
        master_key: config.key_source(),
        kill_grace: config.kill_grace,
        shutdown_grace: config.shutdown_grace,
        path_var: std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
        passthrough_env,
        access: config.access.clone(),
        tls: config.tls.clone(),
        work_dir: Some(config.work_dir.clone()),
        sandbox: config.sandbox.clone(),
        git: config.git.clone(),
    };
    if config.sandbox.insecure_no_sandbox {
        eprintln!("WARNING: --insecure-no-sandbox: actions run UNCONFINED; code from any commit can read the data dir, the master key and every secret");
    }
    let server = ferry_server::start(server_config)
        .await
        .context("starting the server")?;
    tracing::info!(url = %server.url, data_dir = %config.data_dir.display(), "ferry is listening");
    eprintln!("Ferry is listening on {}", server.url);
    eprintln!(
        "Admin token: {}",
        ferry_server::admin_token_path(&config.data_dir).display()
    );
    let password_file = ferry_server::admin_password_path(&config.data_dir);
    if password_file.exists() {
        eprintln!(
            "Admin user `admin`, password in {}",
            password_file.display()
        );
    }
    server.serve(shutdown_signal()).await.context("serving")?;
    tracing::info!("ferry stopped");
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down: no new work, waiting for running actions");
}

fn validate(g: &Global, path: Option<&Path>) -> Result<ExitCode> {
    let path = path
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from(ferry_spec::FILE_NAME));
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let lowered = ferry_spec::lower(&path.display().to_string(), &text);
    if g.output == Output::Json {
        let diagnostics: Vec<_> = lowered
            .diagnostics
            .iter()
            .map(|d| {
                serde_json::json!({
                    "severity": d.severity.as_str(), "file": d.file, "line": d.line, "column": d.column,
                    "message": d.message, "hint": d.hint,
                })
            })
            .collect();
        print_json(
            &serde_json::json!({ "valid": !lowered.has_errors(), "diagnostics": diagnostics }),
        )?;
    } else {
        for d in &lowered.diagnostics {
            eprintln!("{d}");
        }
        if let Some(spec) = &lowered.spec {
            let envs: Vec<String> = spec
                .environments
                .iter()
                .map(|e| {
                    if e.requires_approval() {
                        format!("{} (approval)", e.name)
                    } else {
                        format!("{} (auto-apply)", e.name)
                    }
                })
                .collect();
            out!(
                "{}: pipeline `{}` is valid; environments: {}",
                path.display(),
                spec.name,
                envs.join(" → ")
            );
        }
    }
    Ok(if lowered.has_errors() {
        ExitCode::from(FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

async fn audit_verify(g: &Global) -> Result<ExitCode> {
    let dir = data_dir(g);
    let db = ferry_server::db_path(&dir);
    if !db.exists() {
        bail!("no Ferry database at {}", db.display());
    }
    let result =
        ferry_engine::datadir::verify_audit(&dir, &crate::admin::existing_key(&dir)?).await?;
    match result {
        Ok(report) => {
            if g.output == Output::Json {
                print_json(
                    &serde_json::json!({ "ok": true, "entries": report.entries, "head_seq": report.head_seq }),
                )?;
            } else {
                out!(
                    "audit chain ok: {} entries, head at {}",
                    report.entries,
                    report.head_seq
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(message) => {
            if g.output == Output::Json {
                print_json(&serde_json::json!({ "ok": false, "error": message }))?;
            } else {
                eprintln!("audit chain BROKEN: {message}");
            }
            Ok(ExitCode::from(FAILED))
        }
    }
}

async fn client_command(g: &Global, client: &Client, command: Command) -> Result<ExitCode> {
    let json = g.output == Output::Json;
    match command {
        Command::Project(ProjectCmd::Add {
            name,
            repo,
            git_username,
            git_secret,
        }) => {
            // A local path is resolved here, where the user typed it.
            let repo = match std::fs::canonicalize(&repo) {
                Ok(path) => path.display().to_string(),
                Err(_) => repo,
            };
            let project = client
                .projects_create(&ProjectCreate {
                    name,
                    repo,
                    git_username,
                    git_secret,
                })
                .await?;
            if json {
                print_json(&project)?;
            } else {
                out!("project {} registered ({})", project.name, project.repo);
            }
        }
        Command::Project(ProjectCmd::SetCredentials {
            name,
            git_username,
            git_secret,
            clear: _,
        }) => {
            let project = client
                .projects_update(
                    &name,
                    &ProjectUpdate {
                        git_username,
                        git_secret,
                    },
                )
                .await?;
            if json {
                print_json(&project)?;
            } else {
                match (&project.git_username, &project.git_secret) {
                    (Some(user), Some(secret)) => out!(
                        "project {} is fetched as {user} with secret {secret}",
                        project.name
                    ),
                    _ => out!("project {} has no git credentials", project.name),
                }
            }
        }
        Command::Project(ProjectCmd::List) => {
            let projects = client.projects_list().await?;
            if json {
                print_json(&projects)?;
            } else {
                for p in projects {
                    out!("{:<24} {}", p.name, p.repo);
                }
            }
        }
        Command::Pipelines { project, git_ref } => {
            let list = client.pipelines_list(&project, git_ref.as_deref()).await?;
            if json {
                print_json(&list)?;
            } else {
                for p in &list.pipelines {
                    out!(
                        "{:<24} {:<40} {}",
                        p.name,
                        p.path,
                        p.environments.join(" → ")
                    );
                    for e in &p.errors {
                        out!("    {e}");
                    }
                }
            }
        }
        Command::Run {
            project,
            git_ref,
            pipeline,
            env,
            destroy,
            targets,
            replaces,
            wait,
        } => {
            let body = RunCreate {
                git_ref,
                pipeline,
                environment: env,
                destroy,
                targets,
                replaces,
            };
            let run = client.runs_create(&project, &body).await?;
            if !wait {
                if json {
                    print_json(&run)?;
                } else {
                    out!(
                        "run {} (#{} of {}) queued at {} ({})",
                        run.id,
                        run.number,
                        run.project,
                        short(&run.commit),
                        run.git_ref
                    );
                    out!("follow it with: ferry logs -f {}", run.id);
                }
                return Ok(ExitCode::SUCCESS);
            }
            return wait_for(client, run.id, json).await;
        }
        Command::Runs {
            project,
            status,
            limit,
        } => {
            let page = client
                .runs_list(project.as_deref(), status.as_deref(), limit, None)
                .await?;
            if json {
                print_json(&page)?;
            } else {
                out!(
                    "{:>6}  {:<16} {:>5}  {:<20} {:<10} {:<9} {}",
                    "ID",
                    "PROJECT",
                    "#",
                    "STATUS",
                    "COMMIT",
                    "REF",
                    "CREATED"
                );
                for r in page.runs {
                    out!(
                        "{:>6}  {:<16} {:>5}  {:<20} {:<10} {:<9} {}",
                        r.id,
                        r.project,
                        r.number,
                        r.status,
                        short(&r.commit),
                        r.git_ref,
                        r.created_at
                    );
                }
            }
        }
        Command::Show { run } => {
            let detail = client.runs_get(run).await?;
            if json {
                print_json(&detail)?;
            } else {
                print_detail(&detail)?;
            }
        }
        Command::Logs { run, follow } => return logs(client, run, follow, json).await,
        Command::Cancel { run } => {
            let run = client.runs_cancel(run).await?;
            if json {
                print_json(&run)?;
            } else {
                out!("run {} is {}", run.id, run.status);
            }
        }
        Command::Retry { run, wait } => {
            let run = client.runs_retry(run).await?;
            return crate::delivery_cmd::started(client, run, wait, json).await;
        }
        Command::Promote {
            project,
            env,
            pipeline,
            from_run,
            git_ref,
            wait,
        } => {
            let body = ferry_api::PromoteCreate {
                environment: env,
                pipeline,
                from_run,
                git_ref,
            };
            let run = client.promote(&project, &body).await?;
            return crate::delivery_cmd::started(client, run, wait, json).await;
        }
        Command::Rollback {
            project,
            env,
            pipeline,
            to_run,
            wait,
        } => {
            let body = ferry_api::RollbackCreate {
                environment: env,
                pipeline,
                to_run,
            };
            let run = client.rollback(&project, &body).await?;
            return crate::delivery_cmd::started(client, run, wait, json).await;
        }
        Command::Approvals { run, env } => {
            return crate::delivery_cmd::approvals(client, run, env, json).await
        }
        Command::History {
            project,
            pipeline,
            env,
        } => return crate::delivery_cmd::history(client, &project, pipeline, env, json).await,
        Command::Events {
            run,
            project,
            env,
            types,
            follow,
        } => {
            let mut filter: Vec<(&str, String)> = Vec::new();
            for (k, v) in [
                ("run", run.map(|r| r.to_string())),
                ("project", project),
                ("environment", env),
                ("type", types),
            ] {
                if let Some(v) = v {
                    filter.push((k, v));
                }
            }
            return crate::delivery_cmd::events(client, &filter, follow, json).await;
        }
        Command::Approve(args) => return decide(client, args, "approve", json).await,
        Command::Reject(args) => return decide(client, args, "reject", json).await,
        Command::Queue => {
            let queue = client.queue().await?;
            if json {
                print_json(&queue)?;
            } else if queue.is_empty() {
                out!("no environment is held or awaited");
            } else {
                for q in queue {
                    let holder = q
                        .held_by
                        .map(|r| format!("held by run {r}"))
                        .unwrap_or_else(|| "free".into());
                    let waiting: Vec<String> = q.waiting.iter().map(ToString::to_string).collect();
                    out!(
                        "{}/{}/{}: {holder}; waiting: [{}]",
                        q.project,
                        q.pipeline,
                        q.environment,
                        waiting.join(", ")
                    );
                }
            }
        }
        Command::Token(TokenCmd::Create {
            name,
            admin,
            user,
            scope,
            expires,
        }) => {
            let expires_at = expires.as_deref().map(expiry).transpose()?;
            let created = client
                .tokens_create(&TokenCreate {
                    name,
                    admin,
                    user,
                    scopes: scope,
                    expires_at,
                })
                .await?;
            if json {
                print_json(&created)?;
            } else {
                eprintln!(
                    "token `{}` created; it is shown only once:",
                    created.token.name
                );
                out!("{}", created.secret);
            }
        }
        Command::Token(TokenCmd::List) => {
            let tokens = client.tokens_list().await?;
            if json {
                print_json(&tokens)?;
            } else {
                for t in tokens {
                    let state = if t.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    };
                    let role = match (&t.user, t.admin) {
                        (_, true) => "admin".to_owned(),
                        (Some(user), _) => format!("user {user}"),
                        (None, _) if t.scopes.is_empty() => "approver".to_owned(),
                        (None, _) => t.scopes.join(","),
                    };
                    out!(
                        "{:<20} {:<14} {:<24} {:<8} expires {} last used {}",
                        t.name,
                        t.hint,
                        role,
                        state,
                        t.expires_at.as_deref().unwrap_or("never"),
                        t.last_used_at.as_deref().unwrap_or("never")
                    );
                }
            }
        }
        Command::State(cmd) => return crate::state_cmd::run(g, client, cmd).await,
        Command::Secret(cmd) => return crate::secret_cmd::run_secret(g, client, cmd).await,
        Command::Param(cmd) => return crate::secret_cmd::run_param(g, client, cmd).await,
        Command::User(cmd) => return crate::identity_cmd::user(g, client, cmd).await,
        Command::Team(cmd) => return crate::identity_cmd::team(g, client, cmd).await,
        Command::Grant(args) => return crate::identity_cmd::grant(g, client, args, true).await,
        Command::Revoke(args) => return crate::identity_cmd::grant(g, client, args, false).await,
        Command::Grants => return crate::identity_cmd::grants(g, client).await,
        Command::Whoami => {
            let me = client.whoami().await?;
            if json {
                print_json(&me)?;
            } else {
                out!(
                    "{}{} grants [{}]{}",
                    me.name,
                    if me.admin { " (admin)" } else { "" },
                    me.grants.join(", "),
                    me.limited_to
                        .map(|l| format!(" limited to [{}]", l.join(", ")))
                        .unwrap_or_default()
                );
            }
        }
        Command::Token(TokenCmd::Revoke { name }) => {
            let token = client.tokens_revoke(&name).await?;
            if json {
                print_json(&token)?;
            } else {
                out!("token `{}` revoked", token.name);
            }
        }
        Command::Server(_)
        | Command::Login { .. }
        | Command::Validate { .. }
        | Command::Audit(_)
        | Command::Policy(_)
        | Command::Admin(_)
        | Command::Config(_) => {
            unreachable!("handled locally")
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn short(commit: &str) -> &str {
    &commit[..commit.len().min(10)]
}

fn print_detail(d: &ferry_api::RunDetail) -> Result<()> {
    let r = &d.run;
    out!(
        "run {} (#{} of {}, pipeline {}) {}",
        r.id,
        r.number,
        r.project,
        r.pipeline,
        r.status
    );
    out!(
        "  commit {} ({}), triggered by {}",
        r.commit,
        r.git_ref,
        r.triggered_by
    );
    if r.kind != "deploy" {
        let source = r
            .source_run
            .map(|id| format!(" (from run {id})"))
            .unwrap_or_default();
        out!("  kind: {}{source}", r.kind);
    }
    let o = &r.options;
    if !o.environments.is_empty() {
        out!("  environments: {}", o.environments.join(", "));
    }
    if o.destroy {
        out!("  DESTROY");
    }
    if !o.targets.is_empty() {
        out!("  targets: {}", o.targets.join(", "));
    }
    if !o.replaces.is_empty() {
        out!("  replaces: {}", o.replaces.join(", "));
    }
    if let Some(reason) = &r.reason {
        out!("  reason: {reason}");
    }
    for s in &d.stages {
        out!("  {:<10} {:<10} {}", s.environment, s.kind, s.status);
        for a in &s.actions {
            let code = a
                .exit_code
                .map(|c| format!(" (exit {c})"))
                .unwrap_or_default();
            out!("      {:<32} {}{code}", a.name, a.status);
        }
    }
    for p in &d.plans {
        out!(
            "  plan {}: +{} ~{} -{} sha256 {}",
            p.environment,
            p.add,
            p.change,
            p.destroy,
            p.sha256
        );
        for res in &p.resources {
            out!("      {:<8} {}", res.action, res.address);
        }
    }
    for p in &d.policy {
        let blocking = p.findings.iter().filter(|f| f.blocking).count();
        let waived = p.findings.iter().filter(|f| f.waived).count();
        out!(
            "  policy {}: {} finding(s), {blocking} blocking, {waived} waived (fail_on {})",
            p.environment,
            p.findings.len(),
            p.fail_on
        );
        for f in &p.findings {
            let mark = if f.blocking {
                "BLOCKS"
            } else if f.waived {
                "waived"
            } else {
                "      "
            };
            out!(
                "      {mark} {:<8} {:<16} {}",
                f.severity,
                f.rule,
                f.address
            );
        }
    }
    for a in &d.approvals {
        let glass = if a.break_glass { " (BREAK GLASS)" } else { "" };
        out!(
            "  {} {}{glass} by {}: {} [plan {}]",
            a.environment,
            a.decision,
            a.actor,
            a.comment,
            a.plan_sha256.as_deref().map(short).unwrap_or("-")
        );
    }
    Ok(())
}

/// Polls the run, printing each stage as it changes, until it ends.
pub(crate) async fn wait_for(client: &Client, id: i64, json: bool) -> Result<ExitCode> {
    let mut seen: Vec<(i64, String)> = Vec::new();
    let mut hinted = false;
    loop {
        let detail = client.runs_get(id).await?;
        if !json {
            for s in &detail.stages {
                let key = (s.id, s.status.clone());
                if s.status != "Pending" && !seen.contains(&key) {
                    seen.push(key);
                    eprintln!(
                        "[run {id}] {:<10} {:<10} {}",
                        s.environment, s.kind, s.status
                    );
                }
            }
            if detail.run.status == "WaitingForApproval" && !hinted {
                if let Some(s) = detail
                    .stages
                    .iter()
                    .find(|s| s.status == "WaitingForApproval")
                {
                    eprintln!(
                        "[run {id}] waiting for approval: ferry approve {id} --env {} -m \"...\"",
                        s.environment
                    );
                }
                hinted = true;
            }
            if detail.run.status != "WaitingForApproval" {
                hinted = false;
            }
        }
        if detail.run.is_finished() {
            if json {
                print_json(&detail)?;
            } else {
                let reason = detail
                    .run
                    .reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default();
                eprintln!("[run {id}] {}{reason}", detail.run.status);
            }
            return Ok(if detail.run.status == "Succeeded" {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(FAILED)
            });
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn decide(
    client: &Client,
    args: DecisionArgs,
    decision: &str,
    json: bool,
) -> Result<ExitCode> {
    let body = ApprovalCreate {
        environment: args.env,
        decision: decision.to_owned(),
        comment: args.message,
        break_glass: args.break_glass,
    };
    let run = client.approvals_create(args.run, &body).await?;
    if json {
        print_json(&run)?;
    } else {
        let done = if decision == "approve" {
            "approved"
        } else {
            "rejected"
        };
        out!(
            "run {}: {done} in {}; run is {}",
            run.id,
            body.environment,
            run.status
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_line(out: &mut impl Write, line: &ferry_api::LogLine) -> std::io::Result<()> {
    match line.stream.as_str() {
        "sys" => writeln!(out, "--- {}", line.text),
        _ => writeln!(out, "{}", line.text),
    }
}

/// Prints the log; with `follow`, streams it live over SSE until the run ends.
async fn logs(client: &Client, id: i64, follow: bool, json: bool) -> Result<ExitCode> {
    if !follow {
        let mut offset = 0;
        loop {
            let page = client.logs_get(id, offset, 5000).await?;
            {
                let mut out = std::io::stdout().lock();
                for line in &page.lines {
                    if json {
                        serde_json::to_writer(&mut out, line)?;
                        writeln!(out)?;
                    } else {
                        print_line(&mut out, line)?;
                    }
                }
            }
            if page.lines.is_empty() || page.next_offset == offset {
                return Ok(ExitCode::SUCCESS);
            }
            offset = page.next_offset;
        }
    }
    let url = format!("{}/api/v1/runs/{id}/logs/stream", client.base_url());
    let token = client_token(client);
    let response = reqwest::Client::new()
        .get(&url)
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("connecting to {url}"))?;
    if !response.status().is_success() {
        // Let the typed client produce the proper error message.
        client.runs_get(id).await?;
        bail!("cannot follow the log: HTTP {}", response.status());
    }
    let mut body = response.bytes_stream();
    let mut buffer = Vec::new();
    while let Some(chunk) = body.next().await {
        buffer.extend_from_slice(&chunk.context("reading the log stream")?);
        while let Some(end) = find_event_end(&buffer) {
            let event: Vec<u8> = buffer.drain(..end).collect();
            let (name, data) = parse_event(&String::from_utf8_lossy(&event));
            match name.as_str() {
                "lines" => {
                    let lines: Vec<ferry_api::LogLine> =
                        serde_json::from_str(&data).context("decoding log lines")?;
                    let mut out = std::io::stdout().lock();
                    for line in &lines {
                        if json {
                            serde_json::to_writer(&mut out, line)?;
                            writeln!(out)?;
                        } else {
                            print_line(&mut out, line)?;
                        }
                    }
                    out.flush()?;
                }
                "end" => {
                    if !json {
                        eprintln!("--- run {id} {data}");
                    }
                    return Ok(if data == "Succeeded" {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(FAILED)
                    });
                }
                "error" => bail!("the server could not read the log: {data}"),
                "shutdown" => bail!(
                    "the server is shutting down; run `ferry logs -f {id}` again once it is back"
                ),
                _ => {}
            }
        }
    }
    bail!("the log stream ended before the run did")
}

fn client_token(client: &Client) -> String {
    client.token().to_owned()
}

/// The end (exclusive, including the blank line) of the first complete SSE event.
pub(crate) fn find_event_end(buffer: &[u8]) -> Option<usize> {
    buffer.windows(2).position(|w| w == b"\n\n").map(|p| p + 2)
}

pub(crate) fn parse_event(text: &str) -> (String, String) {
    let mut name = String::from("message");
    let mut data = Vec::new();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            name = v.trim().to_owned();
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
        }
    }
    (name, data.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sse_events() {
        let buf =
            b"event: lines\nid: 42\ndata: [1]\n\n: keep-alive\n\nevent: end\ndata: Succeeded\n\n";
        let end = find_event_end(buf).unwrap();
        assert_eq!(
            parse_event(&String::from_utf8_lossy(&buf[..end])),
            ("lines".into(), "[1]".into())
        );
        let rest = &buf[end..];
        let end2 = find_event_end(rest).unwrap();
        assert_eq!(
            parse_event(&String::from_utf8_lossy(&rest[..end2])).0,
            "message"
        );
        assert_eq!(
            parse_event(&String::from_utf8_lossy(&rest[end2..])),
            ("end".into(), "Succeeded".into())
        );
    }
}
