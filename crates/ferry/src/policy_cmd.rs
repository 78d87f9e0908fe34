//! `ferry policy …`: the policy gate offline. `check` judges a plan JSON file with the
//! built-in pack and the Rego policies of a directory, exactly as the policy stage would for
//! one environment; `test` runs the policies' own Rego tests; `rules` lists the built-in
//! rules. None of them talks to a server. `waive`, `waivers` and `unwaive` manage a
//! server's waivers.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Subcommand;
use ferry_policy::rego::TestOutcome;
use ferry_policy::{builtin, Config, Context, PolicySet, Severity, StageInput};
use serde::Serialize;

use crate::{Global, Output};

/// Exit code of a check with blocking findings or of failing policy tests.
const FAILED: u8 = 1;

/// Where policies live unless `--policy-dir` says otherwise.
const DEFAULT_POLICY_DIR: &str = "policy";

#[derive(Subcommand, Debug)]
pub enum PolicyCmd {
    /// Evaluate a plan (`terraform show -json PLANFILE > plan.json`) offline; exit 1 when a
    /// finding blocks.
    Check {
        /// The plan JSON file.
        plan: PathBuf,
        /// Environment the plan would deploy to (checked against the Environment tag).
        #[arg(long)]
        env: Option<String>,
        /// Treat the environment as protected (deletes of stateful resources are critical).
        #[arg(long)]
        protected: bool,
        /// Directory of Rego policies (default: ./policy when it exists).
        #[arg(long)]
        policy_dir: Option<PathBuf>,
        /// Lowest blocking severity: info, low, medium, high or critical.
        #[arg(long, default_value = "high")]
        fail_on: Severity,
    },
    /// Run the Rego tests (rules named test_*) of a policy directory.
    Test {
        /// The directory (default: ./policy).
        dir: Option<PathBuf>,
    },
    /// List the built-in rules.
    Rules,
    /// Waive one finding of a run in one environment (not allowed to the change's author).
    Waive {
        /// The run whose finding is waived.
        run: i64,
        /// The finding's rule id (FERRY-S3-001, or a Rego policy's id).
        #[arg(long)]
        rule: String,
        /// The finding's resource address.
        #[arg(long)]
        address: String,
        #[arg(long)]
        env: String,
        /// Why the finding is acceptable (recorded and audited).
        #[arg(long, short = 'm')]
        reason: String,
        /// How long the waiver lasts (`7d`, `36h`; at most the pipeline's max_waiver_days).
        #[arg(long, default_value = "7d")]
        expires_in: humantime::Duration,
    },
    /// List a project's waivers.
    Waivers {
        project: String,
        /// Include revoked waivers.
        #[arg(long)]
        all: bool,
    },
    /// Revoke a waiver.
    Unwaive { id: i64 },
}

impl PolicyCmd {
    /// Whether the command talks to a server.
    pub(crate) fn is_remote(&self) -> bool {
        matches!(
            self,
            PolicyCmd::Waive { .. } | PolicyCmd::Waivers { .. } | PolicyCmd::Unwaive { .. }
        )
    }
}

macro_rules! out {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*)?
    };
}

pub(crate) fn run(g: &Global, cmd: PolicyCmd) -> Result<ExitCode> {
    match cmd {
        PolicyCmd::Check {
            plan,
            env,
            protected,
            policy_dir,
            fail_on,
        } => check(g, &plan, env, protected, policy_dir, fail_on),
        PolicyCmd::Test { dir } => test(g, dir.as_deref()),
        PolicyCmd::Rules => rules(g),
        PolicyCmd::Waive { .. } | PolicyCmd::Waivers { .. } | PolicyCmd::Unwaive { .. } => {
            unreachable!("remote commands go through `remote`")
        }
    }
}

/// `waive`, `waivers`, `unwaive`: against the server.
pub(crate) async fn remote(
    g: &Global,
    client: &ferry_api::Client,
    cmd: PolicyCmd,
) -> Result<ExitCode> {
    let json = g.output == Output::Json;
    match cmd {
        PolicyCmd::Waive {
            run,
            rule,
            address,
            env,
            reason,
            expires_in,
        } => {
            let detail = client.runs_get(run).await?;
            let expires = chrono::Utc::now()
                + chrono::Duration::from_std(*expires_in).context("--expires-in is too long")?;
            let body = ferry_api::WaiverCreate {
                run_id: run,
                rule,
                address,
                environment: env,
                reason,
                expires_at: expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            };
            let w = client.waiver_create(&detail.run.project, &body).await?;
            if json {
                crate::cli::print_json(&w)?;
            } else {
                out!(
                    "waiver {} granted: {} on {} in {} until {}",
                    w.id,
                    w.rule,
                    w.address,
                    w.environment,
                    w.expires_at
                );
            }
        }
        PolicyCmd::Waivers { project, all } => {
            let list = client.waivers(&project, all).await?;
            if json {
                crate::cli::print_json(&list)?;
            } else if list.is_empty() {
                out!("no waivers in {project}");
            } else {
                for w in &list {
                    let state = match &w.revoked_at {
                        Some(at) => {
                            format!("revoked {at} by {}", w.revoked_by.as_deref().unwrap_or("?"))
                        }
                        None => format!("until {}", w.expires_at),
                    };
                    out!(
                        "{:>4}  {:<10} {:<16} {:<40} by {:<12} {state}: {}",
                        w.id,
                        w.environment,
                        w.rule,
                        w.address,
                        w.created_by,
                        w.reason
                    );
                }
            }
        }
        PolicyCmd::Unwaive { id } => {
            let w = client.waiver_revoke(id).await?;
            if json {
                crate::cli::print_json(&w)?;
            } else {
                out!(
                    "waiver {} revoked ({} on {} in {})",
                    w.id,
                    w.rule,
                    w.address,
                    w.environment
                );
            }
        }
        _ => unreachable!("local commands go through `run`"),
    }
    Ok(ExitCode::SUCCESS)
}

fn load_policies(dir: Option<PathBuf>) -> Result<Option<PolicySet>> {
    let dir = match dir {
        Some(dir) => dir,
        None if Path::new(DEFAULT_POLICY_DIR).is_dir() => PathBuf::from(DEFAULT_POLICY_DIR),
        None => return Ok(None),
    };
    let files = ferry_policy::rego::read_policy_dir(&dir)?;
    // Name files as the user sees them, so errors read `policy/s3.rego:4:7`.
    let files: Vec<(String, String)> = files
        .into_iter()
        .map(|(p, t)| (dir.join(p).display().to_string(), t))
        .collect();
    Ok(Some(PolicySet::from_sources(&files)?))
}

fn check(
    g: &Global,
    path: &Path,
    env: Option<String>,
    protected: bool,
    policy_dir: Option<PathBuf>,
    fail_on: Severity,
) -> Result<ExitCode> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let policies = load_policies(policy_dir)?;
    let environment = env.unwrap_or_default();
    let ctx = Context {
        environment,
        protected,
        actor: "ferry policy check".to_string(),
        ..Context::default()
    };
    let config = Config::default();
    // The same call the policy stage makes; offline there is no commit, so no changed
    // paths, and no stored waivers.
    let report = ferry_policy::check(&StageInput {
        plan_json: &bytes,
        context: &ctx,
        config: &config,
        policies: policies.as_ref(),
        changed_paths: &[],
        policy_dir: DEFAULT_POLICY_DIR,
        fail_on,
        waivers: &[],
        now: chrono::Utc::now(),
    })
    .with_context(|| format!("{}", path.display()))?;
    if g.output == Output::Json {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        for e in &report.entries {
            let f = &e.finding;
            out!(
                "{}{:<8} {:<14} {}: {}",
                if e.blocking { "BLOCK " } else { "      " },
                f.severity,
                f.rule,
                f.address,
                f.message
            );
            if !f.remediation.is_empty() {
                out!("{:29}fix: {}", "", f.remediation);
            }
        }
        let blocking = report.blocking().count();
        out!(
            "{} finding(s), {} blocking at fail_on {}{}",
            report.entries.len(),
            blocking,
            fail_on,
            policies
                .as_ref()
                .map(|p| format!(" ({} policy file(s))", p.files().len()))
                .unwrap_or_default()
        );
    }
    Ok(if report.blocked() {
        ExitCode::from(FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

fn test(g: &Global, dir: Option<&Path>) -> Result<ExitCode> {
    let dir = dir.unwrap_or(Path::new(DEFAULT_POLICY_DIR));
    let files = ferry_policy::rego::read_policy_dir(dir)?;
    let files: Vec<(String, String)> = files
        .into_iter()
        .map(|(p, t)| (dir.join(p).display().to_string(), t))
        .collect();
    let report = ferry_policy::run_rego_tests(&files)?;
    if g.output == Output::Json {
        #[derive(Serialize)]
        struct Summary<'a> {
            passed: usize,
            failed: usize,
            #[serde(flatten)]
            report: &'a ferry_policy::TestReport,
        }
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(
            &mut out,
            &Summary {
                passed: report.passed(),
                failed: report.failed(),
                report: &report,
            },
        )?;
        writeln!(out)?;
    } else {
        for r in &report.results {
            let name = format!("data.{}.{}", r.package, r.name);
            match &r.outcome {
                TestOutcome::Pass => out!("PASS {name} ({:.1} ms)", r.duration_ms),
                TestOutcome::Fail { reason } => {
                    out!("FAIL {name} ({}:{}): {reason}", r.file, r.line)
                }
                TestOutcome::Error { message } => {
                    out!("ERROR {name} ({}:{}): {message}", r.file, r.line)
                }
            }
        }
        if report.results.is_empty() {
            out!("no test rules (test_*) in {}", dir.display());
        } else {
            out!(
                "policy tests: {} passed, {} failed",
                report.passed(),
                report.failed()
            );
        }
    }
    Ok(if report.failed() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(FAILED)
    })
}

fn rules(g: &Global) -> Result<ExitCode> {
    let rules: Vec<_> = builtin::rules().collect();
    if g.output == Output::Json {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &rules)?;
        writeln!(out)?;
    } else {
        for r in rules {
            let sev = match r.protected_severity {
                Some(p) => format!("{}/{p}", r.severity),
                None => r.severity.to_string(),
            };
            out!("{:<14} {:<16} {}", r.id, sev, r.title);
        }
    }
    Ok(ExitCode::SUCCESS)
}
