//! Identity end to end, through the CLI only: an admin creates a team and an approver, grants
//! the team the approver role in staging, and hands the approver a personal token; the
//! approver approves staging with it and is refused on prod.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use crate::util::{repo_with, stage, Server};

const YAML: &str = "version: 1\nname: net\nterraform: { dir: . }\nenvironments:\n  - name: dev\n    auto_apply: true\n  - name: staging\n    approval: { approvers: [team:platform] }\n  - name: prod\n    approval: { approvers: [team:platform] }\n";

fn waiting_in(detail: &serde_json::Value, environment: &str) -> bool {
    detail["status"] == "WaitingForApproval"
        && stage(detail, environment, "approval")["status"] == "WaitingForApproval"
}

#[test]
fn an_approver_from_a_team_approves_staging_with_a_personal_token_but_not_prod() {
    let server = Server::start();
    let repo = repo_with(&[
        ("ferry.yaml", YAML),
        (
            "main.tf",
            "resource \"terraform_data\" \"x\" {\n  input = \"1\"\n}\n",
        ),
    ]);
    server.add_project("net", &repo);

    // The admin: a user with a password from standard input, a team, a grant.
    let added = with_stdin(
        server.command(&["user", "add", "pat", "--password-stdin"], &[]),
        "a long enough password\n",
    );
    assert!(added.status.success(), "{added:?}");
    server.cli(&["team", "create", "platform"]).ok();
    server.cli(&["team", "add", "platform", "pat"]).ok();
    server
        .cli(&["grant", "approver@net/staging", "--team", "platform"])
        .ok();
    let teams = server.cli(&["team", "list"]).ok();
    assert!(
        teams.stdout.contains("platform") && teams.stdout.contains("pat"),
        "{teams:?}"
    );
    let users = server
        .cli(&["user", "list", "--output", "json"])
        .ok()
        .json();
    assert!(
        users.as_array().unwrap().iter().any(|u| u["name"] == "pat"),
        "{users:#}"
    );
    // pat gets a personal token with their password; a wrong password gets nothing.
    let wrong = with_stdin(
        server.command(&["login", "--user", "pat"], &[]),
        "not the password\n",
    );
    assert!(!wrong.status.success(), "{wrong:?}");
    let created = with_stdin(
        server.command(&["login", "--user", "pat", "--expires", "1h"], &[]),
        "a long enough password\n",
    );
    assert!(created.status.success(), "{created:?}");
    let token = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("ferry_"), "{token}");
    let me = server.cli_env(&["whoami"], &[("FERRY_TOKEN", &token)]).ok();
    assert!(
        me.stdout.starts_with("pat ") && me.stdout.contains("approver@net/staging"),
        "{me:?}"
    );
    let as_pat = [("FERRY_TOKEN", token.as_str())];
    let me = server.cli_env(&["token", "list"], &as_pat).ok();
    assert!(
        me.stdout.contains("pat-cli") && !me.stdout.contains("admin "),
        "{me:?}"
    );

    let run = server.trigger("net", &[]);
    let id = run.to_string();
    server.wait_run(run, "the staging approval", Duration::from_secs(90), |d| {
        waiting_in(d, "staging")
    });
    // pat may not trigger (no operator role), and may not approve prod.
    let refused = server.cli_env(&["run", "net"], &as_pat);
    assert_ne!(refused.code, 0, "{refused:?}");
    let approved = server
        .cli_env(
            &[
                "approve",
                &id,
                "--env",
                "staging",
                "-m",
                "staging looks fine",
            ],
            &as_pat,
        )
        .ok();
    assert!(approved.stdout.contains("approved"), "{approved:?}");
    server.wait_run(run, "the prod approval", Duration::from_secs(90), |d| {
        waiting_in(d, "prod")
    });
    let denied = server.cli_env(
        &["approve", &id, "--env", "prod", "-m", "prod too"],
        &as_pat,
    );
    assert_ne!(denied.code, 0, "{denied:?}");
    assert!(
        denied.stderr.contains("approve permission in net/prod"),
        "{denied:?}"
    );
    let detail = server.show(run);
    let approvals = detail["approvals"].as_array().unwrap();
    assert_eq!(approvals.len(), 1, "{detail:#}");
    assert_eq!(approvals[0]["actor"], "pat");
    server.cli(&["cancel", &id]).ok();
}

/// Runs `cmd` with `input` on its standard input.
fn with_stdin(mut cmd: std::process::Command, input: &str) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}
