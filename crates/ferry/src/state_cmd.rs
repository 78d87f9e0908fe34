//! `ferry state …`: the built-in state backend's states over the REST API. A state is named
//! `PROJECT/ENVIRONMENT` (its environment's main state) or `PROJECT/ENVIRONMENT/NAME` (a named
//! state). Every command takes `--output json`; text output is a table or a short line.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use ferry_api::{Client, StateRollback};
use serde::Serialize;

use crate::{Global, Output};

#[derive(Subcommand, Debug)]
pub enum StateCmd {
    /// List states with their current version and lock holder.
    List {
        #[arg(long)]
        project: Option<String>,
    },
    /// Show a version's metadata and resources (never values).
    Show {
        /// PROJECT/ENVIRONMENT[/NAME]
        state: String,
        /// A version number (default: the current one).
        #[arg(long)]
        version: Option<i64>,
    },
    /// List a state's versions, newest first.
    Versions { state: String },
    /// Print a version's exact bytes, secret values in clear (operator or admin; audited as
    /// `state.pull`).
    Pull {
        state: String,
        #[arg(long)]
        version: Option<i64>,
    },
    /// Resources added, removed and changed between versions A and B.
    Diff { state: String, from: i64, to: i64 },
    /// Who holds the state's lock.
    LockInfo { state: String },
    /// Force-unlock the state (admin only; audited).
    Unlock { state: String },
    /// Write version N's content as a new version (refused while locked; audited).
    Rollback {
        state: String,
        #[arg(long)]
        to_version: i64,
        /// Why, recorded in the audit log.
        #[arg(long, short = 'm')]
        message: Option<String>,
    },
    /// Write FILE as a new version; `--force` skips the serial and lineage guard (admin only).
    Push {
        state: String,
        file: std::path::PathBuf,
        #[arg(long)]
        force: bool,
    },
    /// Soft-delete the state (admin only; its versions stay until retention prunes them).
    Delete { state: String },
    /// Set how long versions are kept (admin only; audited): versions older than DAYS are
    /// pruned, except the newest KEEP and the current one. Applies at once.
    Retention {
        state: String,
        #[arg(long)]
        days: i64,
        #[arg(long)]
        keep: i64,
    },
}

/// `project/environment[/name]`.
fn address(state: &str) -> Result<(String, String, Option<String>)> {
    let parts: Vec<&str> = state.split('/').collect();
    match parts.as_slice() {
        [p, e] if !p.is_empty() && !e.is_empty() => Ok((p.to_string(), e.to_string(), None)),
        [p, e, n] if !p.is_empty() && !e.is_empty() && !n.is_empty() => {
            Ok((p.to_string(), e.to_string(), Some(n.to_string())))
        }
        _ => bail!("a state is PROJECT/ENVIRONMENT or PROJECT/ENVIRONMENT/NAME, not `{state}`"),
    }
}

fn print_json<T: Serialize>(value: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

fn display(project: &str, environment: &str, name: &str) -> String {
    if name.is_empty() {
        format!("{project}/{environment}")
    } else {
        format!("{project}/{environment}/{name}")
    }
}

fn lock_text(lock: &Option<ferry_api::StateLock>) -> String {
    match lock {
        Some(l) => format!("locked by {} ({}, since {})", l.who, l.operation, l.created),
        None => "unlocked".into(),
    }
}

pub(crate) async fn run(g: &Global, client: &Client, command: StateCmd) -> Result<ExitCode> {
    let json = g.output == Output::Json;
    let mut out = std::io::stdout().lock();
    match command {
        StateCmd::List { project } => {
            let states = client.states_list(project.as_deref()).await?;
            if json {
                print_json(&states)?;
            } else {
                writeln!(
                    out,
                    "{:<32} {:>7} {:>7} {:>9} {:<24} LOCK",
                    "STATE", "VERSION", "SERIAL", "SIZE", "UPDATED"
                )?;
                for s in &states {
                    let (number, serial, size, updated) = match &s.current {
                        Some(v) => (
                            v.number.to_string(),
                            v.serial.to_string(),
                            v.size.to_string(),
                            v.created_at.clone(),
                        ),
                        None => ("-".into(), "-".into(), "-".into(), "-".into()),
                    };
                    writeln!(
                        out,
                        "{:<32} {:>7} {:>7} {:>9} {:<24} {}",
                        display(&s.project, &s.environment, &s.name),
                        number,
                        serial,
                        size,
                        updated,
                        lock_text(&s.lock)
                    )?;
                }
            }
        }
        StateCmd::Show { state, version } => {
            let (p, e, n) = address(&state)?;
            let d = client.state_show(&p, &e, n.as_deref(), version).await?;
            if json {
                print_json(&d)?;
            } else {
                let v = &d.version;
                writeln!(
                    out,
                    "state {} version {} (serial {}, lineage {})",
                    display(&p, &e, n.as_deref().unwrap_or("")),
                    v.number,
                    v.serial,
                    v.lineage
                )?;
                writeln!(
                    out,
                    "  written by {} at {}, {} bytes, sha256 {}",
                    v.writer, v.created_at, v.size, v.sha256
                )?;
                writeln!(out, "  {}", lock_text(&d.state.lock))?;
                if d.encrypted {
                    writeln!(out, "  encrypted by OpenTofu: resources cannot be shown")?;
                }
                for r in &d.resources {
                    writeln!(out, "  {:<48} {:>4} instance(s)", r.address, r.instances)?;
                }
            }
        }
        StateCmd::Versions { state } => {
            let (p, e, n) = address(&state)?;
            let versions = client.state_versions(&p, &e, n.as_deref()).await?;
            if json {
                print_json(&versions)?;
            } else {
                writeln!(
                    out,
                    "{:>7} {:>7} {:>9} {:<24} {:<20} {:<14} LINEAGE",
                    "VERSION", "SERIAL", "SIZE", "CREATED", "WRITER", "SHA256"
                )?;
                for v in &versions {
                    let sha = if v.pruned {
                        "(pruned)".to_owned()
                    } else {
                        v.sha256.chars().take(12).collect()
                    };
                    writeln!(
                        out,
                        "{:>7} {:>7} {:>9} {:<24} {:<20} {:<14} {}",
                        v.number, v.serial, v.size, v.created_at, v.writer, sha, v.lineage
                    )?;
                }
            }
        }
        StateCmd::Pull { state, version } => {
            let (p, e, n) = address(&state)?;
            let bytes = client.state_pull(&p, &e, n.as_deref(), version).await?;
            // The exact bytes, whatever --output says: `ferry state pull > file` must be usable.
            out.write_all(&bytes)?;
        }
        StateCmd::Diff { state, from, to } => {
            let (p, e, n) = address(&state)?;
            let d = client.state_diff(&p, &e, n.as_deref(), from, to).await?;
            if json {
                print_json(&d)?;
            } else {
                for a in &d.added {
                    writeln!(out, "+ {a}")?;
                }
                for r in &d.removed {
                    writeln!(out, "- {r}")?;
                }
                for c in &d.changed {
                    writeln!(out, "~ {c}")?;
                }
                if d.added.is_empty() && d.removed.is_empty() && d.changed.is_empty() {
                    writeln!(out, "no resource changes between {from} and {to}")?;
                }
            }
        }
        StateCmd::LockInfo { state } => {
            let (p, e, n) = address(&state)?;
            let lock = client.state_lock_info(&p, &e, n.as_deref()).await?;
            if json {
                print_json(&lock)?;
            } else {
                match &lock {
                    Some(l) => {
                        writeln!(
                            out,
                            "locked by {} (Ferry identity {})",
                            l.who,
                            l.locked_by.as_deref().unwrap_or("?")
                        )?;
                        writeln!(out, "  lock id   {}", l.id)?;
                        writeln!(out, "  operation {}", l.operation)?;
                        writeln!(out, "  since     {}", l.created)?;
                        if !l.info.is_empty() {
                            writeln!(out, "  info      {}", l.info)?;
                        }
                    }
                    None => writeln!(out, "{state} is not locked")?,
                }
            }
        }
        StateCmd::Unlock { state } => {
            let (p, e, n) = address(&state)?;
            let released = client.state_unlock(&p, &e, n.as_deref()).await?;
            if json {
                print_json(&released)?;
            } else {
                match released {
                    Some(l) => writeln!(out, "{state} unlocked (was {} by {})", l.id, l.who)?,
                    None => writeln!(out, "{state} was not locked")?,
                }
            }
        }
        StateCmd::Rollback {
            state,
            to_version,
            message,
        } => {
            let (p, e, n) = address(&state)?;
            let body = StateRollback {
                version: to_version,
                comment: message,
            };
            let v = client.state_rollback(&p, &e, n.as_deref(), &body).await?;
            if json {
                print_json(&v)?;
            } else {
                writeln!(
                    out,
                    "{state} rolled back to version {to_version}: now version {} (serial {})",
                    v.number, v.serial
                )?;
            }
        }
        StateCmd::Push { state, file, force } => {
            let (p, e, n) = address(&state)?;
            let body =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let v = client.state_push(&p, &e, n.as_deref(), body, force).await?;
            if json {
                print_json(&v)?;
            } else {
                match v {
                    Some(v) => writeln!(
                        out,
                        "{state}: pushed as version {} (serial {})",
                        v.number, v.serial
                    )?,
                    None => writeln!(
                        out,
                        "{state}: identical to the current version, nothing written"
                    )?,
                }
            }
        }
        StateCmd::Delete { state } => {
            let (p, e, n) = address(&state)?;
            client.state_delete(&p, &e, n.as_deref()).await?;
            if json {
                print_json(&serde_json::json!({ "deleted": state }))?;
            } else {
                writeln!(
                    out,
                    "{state} deleted (its versions are kept until retention prunes them)"
                )?;
            }
        }
        StateCmd::Retention { state, days, keep } => {
            let (p, e, n) = address(&state)?;
            let body = ferry_api::StateRetention { days, keep };
            let set = client.state_retention(&p, &e, n.as_deref(), &body).await?;
            if json {
                print_json(&set)?;
            } else {
                writeln!(
                    out,
                    "{state}: versions kept {} days, and always the newest {}",
                    set.days, set.keep
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
