//! The quick start as a user runs it: register the bundled example, run it, watch dev apply
//! and prod wait, approve (not as the trigger) or reject, follow logs, re-run a no-op — all
//! through the `ferry` CLI against a real server and real Terraform.

use std::process::Stdio;
use std::time::Duration;

use ferry_test_support::{example_dir, wait_for, GitRepo};

use crate::util::{action, plan, stage, Background, Server};

const RUN_TIMEOUT: Duration = Duration::from_secs(90);

#[test]
fn quick_start_dev_applies_prod_waits_for_a_second_identity_then_a_rerun_is_a_no_op() {
    let server = Server::start();
    let repo = GitRepo::from_dir(&example_dir());
    server.add_project("hello", &repo);

    // `ferry run --wait` in its own process: it must block through the approval wait.
    let waiter = Background::spawn(server.command(&["run", "hello", "--wait"], &[]));
    let run = wait_for("the run to be created", Duration::from_secs(30), || {
        server.cli(&["runs", "--output", "json"]).ok().json()["runs"][0]["id"].as_i64()
    });
    let id = run.to_string();

    let detail = server.wait_status(run, "WaitingForApproval", RUN_TIMEOUT);
    assert_eq!(detail["commit"], repo.head(), "{detail:#}");
    assert_eq!(detail["triggered_by"], "admin");
    for kind in ["validate", "plan", "apply", "verify"] {
        assert_eq!(
            stage(&detail, "dev", kind)["status"],
            "Succeeded",
            "dev {kind}: {detail:#}"
        );
    }
    assert_eq!(stage(&detail, "prod", "plan")["status"], "Succeeded");
    assert_eq!(
        stage(&detail, "prod", "approval")["status"],
        "WaitingForApproval"
    );
    assert_eq!(stage(&detail, "prod", "apply")["status"], "Pending");
    assert_eq!(action(&detail, "prod", "apply")["status"], "Pending");
    let dev_plan = plan(&detail, "dev");
    assert_eq!(
        (
            dev_plan["add"].as_u64(),
            dev_plan["change"].as_u64(),
            dev_plan["destroy"].as_u64()
        ),
        (Some(2), Some(0), Some(0))
    );
    assert_eq!(dev_plan["has_changes"], true);
    let sha = dev_plan["sha256"].as_str().expect("sha256");
    assert!(
        sha.len() == 64 && sha.chars().all(|c| c.is_ascii_hexdigit()),
        "sha256 {sha}"
    );
    let resources: Vec<&str> = dev_plan["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["address"].as_str().unwrap())
        .collect();
    assert!(
        resources.contains(&"terraform_data.network")
            && resources.contains(&"terraform_data.app[0]"),
        "{resources:?}"
    );
    // prod.tfvars asks for two app servers: network + 2.
    assert_eq!(plan(&detail, "prod")["add"], 3);

    // The run holds prod while it waits, and the queue says so.
    assert!(
        server.holders().contains(&("prod".to_owned(), Some(run))),
        "{:?}",
        server.holders()
    );
    let runs = server.cli(&["runs", "--output", "json"]).ok().json();
    assert_eq!(runs["runs"][0]["status"], "WaitingForApproval", "{runs:#}");

    // Follow the log live from now on; the prod apply happens while we are attached.
    let follower = Background::spawn(server.command(&["logs", "-f", &id], &[]));
    // Attached once the history has been replayed.
    follower.wait_line(false, "prod: waiting for approval", Duration::from_secs(20));
    // `run --wait` shows the progress it has seen, including the wait and how to end it.
    waiter.wait_line(
        true,
        &format!("waiting for approval: ferry approve {id} --env prod"),
        Duration::from_secs(20),
    );

    // The identity that triggered the run cannot approve it.
    let denied = server.cli(&["approve", &id, "--env", "prod", "-m", "self-approval"]);
    assert_eq!(denied.code, 1, "{denied:?}");
    assert!(denied.stderr.contains("cannot approve"), "{denied:?}");
    assert_eq!(server.show(run)["status"], "WaitingForApproval");

    let alice = server.create_token("alice");
    let approved = server
        .cli_env(
            &["approve", &id, "--env", "prod", "-m", "ok"],
            &[("FERRY_TOKEN", &alice)],
        )
        .ok();
    assert!(approved.stdout.contains("approved"), "{approved:?}");

    let waited = waiter.finish(Duration::from_secs(60));
    assert_eq!(waited.code, 0, "run --wait: {waited:?}\n{}", server.logs());
    assert!(
        waited.stderr.contains(&format!("[run {id}] Succeeded")),
        "{waited:?}"
    );

    let detail = server.show(run);
    assert_eq!(detail["status"], "Succeeded", "{detail:#}");
    assert_eq!(stage(&detail, "prod", "apply")["status"], "Succeeded");
    assert_eq!(stage(&detail, "prod", "verify")["status"], "Succeeded");
    let approvals = detail["approvals"].as_array().unwrap();
    assert_eq!(approvals.len(), 1, "{detail:#}");
    assert_eq!(
        (
            approvals[0]["actor"].as_str(),
            approvals[0]["decision"].as_str(),
            approvals[0]["comment"].as_str()
        ),
        (Some("alice"), Some("approve"), Some("ok"))
    );

    // `logs -f` streamed the rest and ended with the run.
    let followed = follower.finish(Duration::from_secs(30));
    assert_eq!(followed.code, 0, "logs -f: {followed:?}");
    assert!(
        followed
            .stdout
            .contains("Apply complete! Resources: 3 added"),
        "the prod apply was streamed: {followed:?}"
    );
    assert!(followed.stderr.contains("Succeeded"), "{followed:?}");

    let log = server.cli(&["logs", &id]).ok().stdout;
    assert!(
        log.contains("Terraform has been successfully initialized"),
        "{log}"
    );
    assert!(
        log.contains("Apply complete! Resources: 2 added"),
        "dev apply in the log:\n{log}"
    );
    assert!(
        log.contains("Apply complete! Resources: 3 added"),
        "prod apply in the log:\n{log}"
    );
    assert!(log.contains(sha), "the log names the applied plan's sha256");

    // The same commit again: nothing to change, so no approval is asked and nothing applied.
    let rerun = server.cli(&["run", "hello", "--wait", "--output", "json"]);
    assert_eq!(rerun.code, 0, "{rerun:?}\n{}", server.logs());
    let second = rerun.json();
    assert_eq!(second["status"], "Succeeded", "{second:#}");
    assert_eq!(second["commit"], repo.head());
    for env in ["dev", "prod"] {
        let p = plan(&second, env);
        assert_eq!(
            (p["has_changes"].as_bool(), p["add"].as_u64()),
            (Some(false), Some(0)),
            "{env}: {second:#}"
        );
        assert_eq!(
            stage(&second, env, "apply")["status"],
            "Skipped",
            "{env}: {second:#}"
        );
    }
    assert_eq!(stage(&second, "prod", "approval")["status"], "Skipped");
    assert!(second["approvals"].as_array().unwrap().is_empty());

    let runs = server.cli(&["runs", "--output", "json"]).ok().json();
    let statuses: Vec<&str> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["Succeeded", "Succeeded"], "{runs:#}");
    assert!(
        server.holders().iter().all(|(_, holder)| holder.is_none()),
        "{:?}",
        server.holders()
    );
    let text = server.cli(&["show", &id]).ok().stdout;
    assert!(
        text.contains("Succeeded") && text.contains("plan dev: +2 ~0 -0"),
        "{text}"
    );

    // A reader that goes away early (`ferry show -o json | head -1`) is not an error.
    let mut early = server
        .command(&["show", &id, "--output", "json"], &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn show");
    drop(early.stdout.take());
    let early = early.wait_with_output().expect("show");
    assert_eq!(
        early.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&early.stderr)
    );
}

#[test]
fn a_rejection_fails_the_run_with_the_comment_and_frees_the_environment() {
    let server = Server::start();
    let repo = GitRepo::from_dir(&example_dir());
    server.add_project("hello", &repo);
    let run = server.trigger("hello", &[]);
    server.wait_status(run, "WaitingForApproval", RUN_TIMEOUT);

    let bob = server.create_token("bob");
    let rejected = server
        .cli_env(
            &[
                "reject",
                &run.to_string(),
                "--env",
                "prod",
                "-m",
                "change freeze until Monday",
            ],
            &[("FERRY_TOKEN", &bob)],
        )
        .ok();
    assert!(rejected.stdout.contains("rejected"), "{rejected:?}");

    let detail = server.wait_run(run, "the run to end", RUN_TIMEOUT, crate::util::is_finished);
    assert_eq!(detail["status"], "Failed", "{detail:#}");
    let reason = detail["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("change freeze until Monday"),
        "reason: {reason}"
    );
    assert_ne!(stage(&detail, "prod", "apply")["status"], "Succeeded");
    assert_ne!(action(&detail, "prod", "apply")["status"], "InProgress");
    assert_eq!(detail["approvals"][0]["decision"], "reject");
    assert_eq!(detail["approvals"][0]["actor"], "bob");
    assert!(
        !server.holders().contains(&("prod".to_owned(), Some(run))),
        "{:?}",
        server.holders()
    );
}
