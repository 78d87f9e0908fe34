//! The delivery workflow through the CLI on real Terraform and git: a commit promoted dev
//! (auto) → staging (one approval) → prod (two distinct approvers), decisions with comments
//! by other identities, `ferry approvals` and the approval view, `ferry history`,
//! `ferry events`, `ferry audit export`; then the audit chain verifies, and fails (naming
//! the entry) after two entries are swapped in SQLite.

use std::time::Duration;

use ferry_test_support::terraform_data_config;

use crate::util::{audit_rows, copy_data_dir, ferry, repo_with, sql, Server};

const PIPELINE: &str = "version: 1\nname: net\nterraform: { dir: . }\nenvironments:\n  - name: dev\n    auto_apply: true\n  - name: staging\n  - name: prod\n    approval: { approvers: [carol, dave], required: 2 }\n";
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

fn waiting_in(server: &Server, run: i64, env: &str) {
    server.wait_run(run, &format!("approval in {env}"), RUN_TIMEOUT, |d| {
        d["stages"].as_array().is_some_and(|stages| {
            stages.iter().any(|s| {
                s["environment"] == env
                    && s["kind"] == "approval"
                    && s["status"] == "WaitingForApproval"
            })
        })
    });
}

#[test]
fn a_commit_is_promoted_and_every_decision_is_on_a_verifiable_record() {
    let mut server = Server::start();
    let repo = repo_with(&[
        ("ferry.yaml", PIPELINE),
        ("main.tf", &terraform_data_config(2)),
    ]);
    server.add_project("net", &repo);
    let carol = server.create_token("carol");
    let dave = server.create_token("dave");
    let as_carol = [("FERRY_TOKEN", carol.as_str())];
    let as_dave = [("FERRY_TOKEN", dave.as_str())];

    // Promotion order holds: prod cannot start before dev and staging have this commit.
    let early = server.cli(&["run", "net", "--env", "prod"]);
    assert_eq!(early.code, 2, "{early:?}");
    assert!(
        early.stderr.contains("has not completed `dev`"),
        "{early:?}"
    );

    let run = server.trigger("net", &[]);
    let id = run.to_string();
    waiting_in(&server, run, "staging");

    // carol sees it waiting on her, and what it is about.
    let mine = server.cli_env(&["approvals"], &as_carol).ok();
    assert!(
        mine.stdout.contains(&format!("run {run:>5}")) && mine.stdout.contains("staging"),
        "{mine:?}"
    );
    let view = server
        .cli_env(&["approvals", &id, "--env", "staging"], &as_carol)
        .ok();
    assert!(view.stdout.contains("plan +2 ~0 -0"), "{view:?}");
    assert!(
        view.stdout.contains("create   terraform_data.r[0]"),
        "{view:?}"
    );
    assert!(view.stdout.contains("main.tf"), "diff stat: {view:?}");
    // A decision needs a comment; the admin triggered the run and cannot approve it.
    let no_comment = server.cli_env(&["approve", &id, "--env", "staging", "-m", " "], &as_carol);
    assert_eq!(no_comment.code, 2, "{no_comment:?}");
    let own = server.cli(&["approve", &id, "--env", "staging", "-m", "mine"]);
    assert_eq!(own.code, 1, "denied: {own:?}");
    server
        .cli_env(
            &[
                "approve",
                &id,
                "--env",
                "staging",
                "-m",
                "staging looks right",
            ],
            &as_carol,
        )
        .ok();

    waiting_in(&server, run, "prod");
    let first = server
        .cli_env(
            &["approve", &id, "--env", "prod", "-m", "first of two"],
            &as_carol,
        )
        .ok();
    assert!(first.stdout.contains("WaitingForApproval"), "{first:?}");
    let twice = server.cli_env(&["approve", &id, "--env", "prod", "-m", "again"], &as_carol);
    assert_eq!(twice.code, 2, "{twice:?}");
    server
        .cli_env(
            &["approve", &id, "--env", "prod", "-m", "second of two"],
            &as_dave,
        )
        .ok();
    server.wait_status(run, "Succeeded", RUN_TIMEOUT);

    let history = server
        .cli(&["history", "net", "--output", "json"])
        .ok()
        .json();
    let mut envs: Vec<String> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["environment"].as_str().unwrap().to_owned())
        .collect();
    envs.sort();
    assert_eq!(envs, ["dev", "prod", "staging"]);
    let events = server
        .cli(&[
            "events",
            "--run",
            &id,
            "--type",
            "MANUAL_APPROVAL_SUCCEEDED,PIPELINE_EXECUTION_SUCCEEDED",
        ])
        .ok();
    let lines: Vec<&str> = events.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{events:?}");
    assert!(
        lines[0].contains("MANUAL_APPROVAL_SUCCEEDED")
            && lines[0].contains("staging")
            && lines[0].contains("by carol"),
        "{events:?}"
    );
    assert!(
        lines[2].contains("PIPELINE_EXECUTION_SUCCEEDED"),
        "{events:?}"
    );
    // Nothing to retry on a success; a rollback needs an earlier commit.
    assert_eq!(server.cli(&["retry", &id]).code, 2);
    let rollback = server.cli(&["rollback", "net", "--env", "prod"]);
    assert_eq!(rollback.code, 2, "{rollback:?}");
    assert!(
        rollback.stderr.contains("no earlier commit"),
        "{rollback:?}"
    );

    // The export holds every decision with the plan digest it concerned.
    let export = server.root().join("audit.jsonl");
    server
        .cli(&[
            "audit",
            "export",
            "--action",
            "run.",
            "--file",
            &export.display().to_string(),
        ])
        .ok();
    let text = std::fs::read_to_string(&export).unwrap();
    let entries: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let approvals: Vec<&serde_json::Value> = entries
        .iter()
        .filter(|e| e["action"] == "run.approve" && e["outcome"] != "denied")
        .collect();
    assert_eq!(approvals.len(), 3, "{text}");
    assert!(approvals.iter().all(|e| e["details"]["plan_sha256"]
        .as_str()
        .is_some_and(|d| d.len() == 64)));
    assert!(entries.iter().any(|e| e["action"] == "run.approve"
        && e["outcome"] == "denied"
        && e["actor"] == "admin"));
    // Non-admins cannot read the audit log.
    let denied = server.cli_env(&["audit", "export"], &as_carol);
    assert_eq!(denied.code, 2, "{denied:?}");
    assert!(denied.stderr.contains("admin"), "{denied:?}");
    server.stop();

    // The chain verifies; two entries swapped in SQLite are named.
    let verify = |dir: &std::path::Path| {
        ferry(
            server.root(),
            &["--data-dir", &dir.display().to_string(), "audit", "verify"],
            &[],
        )
    };
    assert_eq!(verify(&server.data).code, 0);
    let swapped = server.root().join("swapped");
    copy_data_dir(&server.data, &swapped);
    let rows = audit_rows(&swapped.join("ferry.db"));
    let (a, b) = (rows[rows.len() - 3].seq, rows[rows.len() - 2].seq);
    let columns = "ts, actor, action, target, outcome, source, details, prev_mac, mac";
    let swap = [
        "DROP TRIGGER audit_no_update".to_owned(),
        format!("CREATE TEMP TABLE keep AS SELECT {columns} FROM audit WHERE seq = {a}"),
        format!("UPDATE audit SET ({columns}) = (SELECT {columns} FROM audit WHERE seq = {b}) WHERE seq = {a}"),
        format!("UPDATE audit SET ({columns}) = (SELECT {columns} FROM keep) WHERE seq = {b}"),
    ];
    let statements: Vec<&str> = swap.iter().map(String::as_str).collect();
    sql(&swapped.join("ferry.db"), &statements);
    let after = audit_rows(&swapped.join("ferry.db"));
    assert_eq!(
        after[rows.len() - 3].action,
        rows[rows.len() - 2].action,
        "the swap took"
    );
    let out = verify(&swapped);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains(&format!("audit entry {a} ")),
        "names entry {a}: {out:?}"
    );
}
