//! `ferry user …`, `ferry team …`, `ferry grant` / `ferry revoke` / `ferry grants`: users,
//! teams and role grants over the REST API (admin). Passwords are read from standard input,
//! never from the command line (where `ps` and shell history would keep them).

use std::io::{BufRead, Write};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use ferry_api::{Client, RoleGrant, TeamCreate, UserCreate, UserUpdate};
use serde::Serialize;

use crate::{Global, Output};

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Create a user. With --password-stdin the first line of standard input is the password.
    Add {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users with their teams and grants.
    List,
    /// Disable a user: their sessions end, their personal tokens stop working.
    Disable { name: String },
    /// Enable a disabled user again.
    Enable { name: String },
    /// Set a user's password from the first line of standard input (ends their sessions).
    Passwd { name: String },
}

#[derive(Subcommand, Debug)]
pub enum TeamCmd {
    /// Create a team.
    Create { name: String },
    /// Add a user to a team.
    Add { team: String, user: String },
    /// Remove a user from a team.
    Remove { team: String, user: String },
    /// List teams with their members and grants.
    List,
}

/// `ROLE[@PROJECT[/ENVIRONMENT]]` for a user or a team.
#[derive(Args, Debug)]
pub struct GrantArgs {
    /// viewer, operator, approver or admin, optionally `@PROJECT` and `/ENVIRONMENT`
    /// (e.g. `approver@network/staging`; no `@`: every project).
    pub grant: String,
    #[arg(long, conflicts_with = "team", required_unless_present = "team")]
    pub user: Option<String>,
    #[arg(long)]
    pub team: Option<String>,
}

fn read_password() -> Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        bail!("no password on standard input");
    }
    Ok(password)
}

fn print_json<T: Serialize>(value: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

pub(crate) async fn user(g: &Global, client: &Client, cmd: UserCmd) -> Result<ExitCode> {
    let json = g.output == Output::Json;
    let mut out = std::io::stdout().lock();
    let changed = match cmd {
        UserCmd::Add {
            name,
            password_stdin,
        } => {
            let password = if password_stdin {
                Some(read_password()?)
            } else {
                None
            };
            client.users_create(&UserCreate { name, password }).await?
        }
        UserCmd::List => {
            let users = client.users_list().await?;
            if json {
                return print_json(&users).map(|()| ExitCode::SUCCESS);
            }
            for u in users {
                writeln!(
                    out,
                    "{:<20} {:<8} teams [{}] grants [{}]",
                    u.name,
                    if u.disabled { "disabled" } else { "active" },
                    u.teams.join(", "),
                    u.grants.join(", ")
                )?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        UserCmd::Disable { name } => {
            let update = UserUpdate {
                disabled: Some(true),
                ..Default::default()
            };
            client.users_update(&name, &update).await?
        }
        UserCmd::Enable { name } => {
            let update = UserUpdate {
                disabled: Some(false),
                ..Default::default()
            };
            client.users_update(&name, &update).await?
        }
        UserCmd::Passwd { name } => {
            let update = UserUpdate {
                password: Some(read_password()?),
                ..Default::default()
            };
            client.users_update(&name, &update).await?
        }
    };
    if json {
        print_json(&changed)?;
    } else {
        writeln!(
            out,
            "user `{}`: {}",
            changed.name,
            if changed.disabled {
                "disabled"
            } else {
                "active"
            }
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn team(g: &Global, client: &Client, cmd: TeamCmd) -> Result<ExitCode> {
    let json = g.output == Output::Json;
    let mut out = std::io::stdout().lock();
    let team = match cmd {
        TeamCmd::Create { name } => client.teams_create(&TeamCreate { name }).await?,
        TeamCmd::Add { team, user } => client.team_members_add(&team, &user).await?,
        TeamCmd::Remove { team, user } => client.team_members_remove(&team, &user).await?,
        TeamCmd::List => {
            let teams = client.teams_list().await?;
            if json {
                return print_json(&teams).map(|()| ExitCode::SUCCESS);
            }
            for t in teams {
                writeln!(
                    out,
                    "{:<20} members [{}] grants [{}]",
                    t.name,
                    t.members.join(", "),
                    t.grants.join(", ")
                )?;
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    if json {
        print_json(&team)?;
    } else {
        writeln!(
            out,
            "team `{}`: members [{}]",
            team.name,
            team.members.join(", ")
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn grant(
    g: &Global,
    client: &Client,
    args: GrantArgs,
    granted: bool,
) -> Result<ExitCode> {
    let body = RoleGrant {
        user: args.user,
        team: args.team,
        grant: args.grant,
    };
    let done = if granted {
        client.grants_create(&body).await?
    } else {
        client.grants_revoke(&body).await?
    };
    if g.output == Output::Json {
        print_json(&done)?;
    } else {
        let who = done
            .user
            .map(|u| format!("user {u}"))
            .or(done.team.map(|t| format!("team {t}")))
            .unwrap_or_default();
        let verb = if granted {
            "granted to"
        } else {
            "revoked from"
        };
        writeln!(std::io::stdout(), "{} {verb} {who}", done.grant)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn grants(g: &Global, client: &Client) -> Result<ExitCode> {
    let all = client.grants_list().await?;
    if g.output == Output::Json {
        print_json(&all)?;
    } else {
        let mut out = std::io::stdout().lock();
        for grant in all {
            let who = grant
                .user
                .map(|u| format!("user {u}"))
                .or(grant.team.map(|t| format!("team {t}")))
                .unwrap_or_default();
            writeln!(out, "{who:<24} {}", grant.grant)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
