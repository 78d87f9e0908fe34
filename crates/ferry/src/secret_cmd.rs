//! `ferry secret …` and `ferry param …`: secrets (write-only) and parameters (readable)
//! over the REST API. A secret's value is read from standard input, or from a hidden
//! prompt when standard input is a terminal, never from the command line (argv is visible
//! to every user of the machine and lands in shell history). Nothing prints a secret's
//! value: there is no command that could.

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use ferry_api::{Client, ScopeQuery, SecretInfo, SecretKind, SecretSet};
use zeroize::Zeroizing;

use crate::{Global, Output};

#[derive(Args, Debug, Clone)]
pub struct ScopeArgs {
    /// Scope the value to this project (default: global).
    #[arg(long)]
    pub project: Option<String>,
    /// Scope the value to this environment of `--project`.
    #[arg(long = "env")]
    pub env: Option<String>,
}

impl ScopeArgs {
    fn query(&self) -> ScopeQuery {
        ScopeQuery::new(self.project.as_deref(), self.env.as_deref())
    }
}

#[derive(Subcommand, Debug)]
pub enum SecretCmd {
    /// Set a secret (a new version); the value is read from stdin or a hidden prompt.
    Set {
        name: String,
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// List secrets' metadata (never values).
    List {
        /// Only this project's secrets and the global ones.
        #[arg(long)]
        project: Option<String>,
    },
    /// Remove a secret (its stored versions are erased).
    Rm {
        name: String,
        #[command(flatten)]
        scope: ScopeArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum ParamCmd {
    /// Set a parameter (a new version): VALUE, or stdin / a prompt when omitted.
    Set {
        name: String,
        value: Option<String>,
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Print a parameter's value at exactly this scope.
    Get {
        name: String,
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// List parameters' metadata.
    List {
        #[arg(long)]
        project: Option<String>,
    },
    /// Remove a parameter.
    Rm {
        name: String,
        #[command(flatten)]
        scope: ScopeArgs,
    },
}

/// The value from stdin (one trailing newline removed, as `echo` and here-strings add it)
/// or, on a terminal, from a prompt that does not echo.
fn read_value(kind: &str, name: &str) -> Result<Zeroizing<String>> {
    let stdin = std::io::stdin();
    let mut value = Zeroizing::new(if stdin.is_terminal() {
        rpassword::prompt_password(format!("value of {kind} {name}: "))
            .context("reading the value from the terminal")?
    } else {
        let mut buf = String::new();
        stdin
            .lock()
            .read_to_string(&mut buf)
            .context("reading the value from stdin (it must be UTF-8)")?;
        buf
    });
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    Ok(value)
}

fn scope_text(i: &SecretInfo) -> String {
    match (&i.project, &i.environment) {
        (None, _) => "global".to_owned(),
        (Some(p), None) => format!("project {p}"),
        (Some(p), Some(e)) => format!("project {p} environment {e}"),
    }
}

fn print_list(out: &mut impl Write, json: bool, items: &[SecretInfo]) -> Result<()> {
    if json {
        serde_json::to_writer_pretty(&mut *out, items)?;
        writeln!(out)?;
        return Ok(());
    }
    for i in items {
        let used = match (&i.last_used_at, i.last_used_run) {
            (Some(at), Some(run)) => format!("last used {at} by run {run}"),
            _ => "never used".to_owned(),
        };
        writeln!(
            out,
            "{:<24} {:<32} v{:<4} updated {} by {}, {used}",
            i.name,
            scope_text(i),
            i.version,
            i.updated_at,
            i.updated_by
        )?;
    }
    Ok(())
}

fn print_one(out: &mut impl Write, json: bool, verb: &str, i: &SecretInfo) -> Result<()> {
    if json {
        serde_json::to_writer_pretty(&mut *out, i)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "{} `{}` ({}) {verb}: version {}",
            i.kind,
            i.name,
            scope_text(i),
            i.version
        )?;
    }
    Ok(())
}

pub(crate) async fn run_secret(g: &Global, client: &Client, cmd: SecretCmd) -> Result<ExitCode> {
    let json = g.output == Output::Json;
    let mut out = std::io::stdout().lock();
    let kind = SecretKind::Secret;
    match cmd {
        SecretCmd::Set { name, scope } => {
            let value = read_value("secret", &name)?;
            if value.is_empty() {
                bail!("the secret value is empty (pipe it on stdin or type it at the prompt)");
            }
            // The CLI process ends right after; only `value` itself is zeroized.
            let body = SecretSet {
                value: value.to_string(),
            };
            let info = client
                .secrets_set(kind, &name, &scope.query(), &body)
                .await?;
            print_one(&mut out, json, "set", &info)?;
        }
        SecretCmd::List { project } => {
            let items = client.secrets_list(kind, project.as_deref()).await?;
            print_list(&mut out, json, &items)?;
        }
        SecretCmd::Rm { name, scope } => {
            let info = client.secrets_delete(kind, &name, &scope.query()).await?;
            print_one(&mut out, json, "removed", &info)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn run_param(g: &Global, client: &Client, cmd: ParamCmd) -> Result<ExitCode> {
    let json = g.output == Output::Json;
    let mut out = std::io::stdout().lock();
    let kind = SecretKind::Param;
    match cmd {
        ParamCmd::Set { name, value, scope } => {
            let value = match value {
                Some(v) => v,
                None => read_value("param", &name)?.to_string(),
            };
            let info = client
                .secrets_set(kind, &name, &scope.query(), &SecretSet { value })
                .await?;
            print_one(&mut out, json, "set", &info)?;
        }
        ParamCmd::Get { name, scope } => {
            let got = client.params_get(&name, &scope.query()).await?;
            if json {
                serde_json::to_writer_pretty(&mut out, &got)?;
                writeln!(out)?;
            } else {
                writeln!(out, "{}", got.value)?;
            }
        }
        ParamCmd::List { project } => {
            let items = client.secrets_list(kind, project.as_deref()).await?;
            print_list(&mut out, json, &items)?;
        }
        ParamCmd::Rm { name, scope } => {
            let info = client.secrets_delete(kind, &name, &scope.query()).await?;
            print_one(&mut out, json, "removed", &info)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
