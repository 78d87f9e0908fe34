//! Stopping a running action for real: a command that hangs past its `timeout` fails the run,
//! and `ferry cancel` during `terraform apply` cancels the run — in both cases the action's
//! processes are gone and the environment is free again.

use std::time::{Duration, Instant};

use ferry_test_support::{path_with_terraform, process_running, terraform_data_config};

use crate::util::{action, assert_gone, marker, repo_with, slow_apply_tf, Server};

#[test]
fn an_action_that_hangs_past_its_timeout_fails_the_run_and_is_killed() {
    let marker = marker("sleep 300.53");
    let server = Server::start();
    let yaml = format!(
        "version: 1\nname: hangs\nterraform: {{ dir: . }}\nstages: {{ test: [{{ name: hang, run: \"{marker}\", timeout: 2s }}] }}\n"
    );
    let repo = repo_with(&[
        ("ferry.yaml", &yaml),
        ("main.tf", &terraform_data_config(1)),
    ]);
    server.add_project("hangs", &repo);
    let run = server.trigger("hangs", &[]);

    server.wait_run(
        run,
        "the hanging action to start",
        Duration::from_secs(60),
        |d| action(d, "default", "test")["status"] == "InProgress" && process_running(&marker),
    );
    let started = Instant::now();
    let detail = server.wait_run(
        run,
        "the run to end",
        Duration::from_secs(15),
        crate::util::is_finished,
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(detail["status"], "Failed", "{detail:#}");
    let reason = detail["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("hang") && reason.contains("timed out"),
        "reason: {reason:?}"
    );
    let hang = action(&detail, "default", "test");
    assert_eq!(hang["status"], "Failed", "{detail:#}");
    let apply = action(&detail, "default", "apply");
    assert!(
        apply["started_at"].is_null() && apply["status"] != "Succeeded",
        "nothing was applied: {detail:#}"
    );
    assert_gone(&marker, Duration::from_secs(2));
    assert!(
        server.holders().iter().all(|(_, h)| h.is_none()),
        "{:?}",
        server.holders()
    );
    let log = server.cli(&["logs", &run.to_string()]).ok().stdout;
    assert!(log.contains("timed out"), "{log}");
}

#[test]
fn cancel_during_apply_stops_terraform_and_frees_the_environment() {
    let marker = marker("sleep 46.21");
    let server = Server::start_with(path_with_terraform(), &["--kill-grace", "3s"]);
    let repo = repo_with(&[
        ("ferry.yaml", ferry_test_support::MINIMAL_FERRY_YAML),
        ("main.tf", &slow_apply_tf(&marker)),
    ]);
    server.add_project("slow", &repo);
    let run = server.trigger("slow", &[]);
    server.wait_run(
        run,
        "the apply to be running",
        Duration::from_secs(60),
        |d| action(d, "default", "apply")["status"] == "InProgress" && process_running(&marker),
    );

    let started = Instant::now();
    let out = server.cli(&["cancel", &run.to_string()]).ok();
    assert!(
        out.stdout.contains("Cancelled"),
        "cancel waits for the final status: {out:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "cancel took {:?}",
        started.elapsed()
    );

    let detail = server.show(run);
    assert_eq!(detail["status"], "Cancelled", "{detail:#}");
    assert!(
        detail["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("admin"),
        "who cancelled: {detail:#}"
    );
    assert_eq!(
        action(&detail, "default", "apply")["status"],
        "Cancelled",
        "{detail:#}"
    );
    assert_gone(&marker, Duration::from_secs(2));
    assert!(
        server.holders().iter().all(|(_, h)| h.is_none()),
        "{:?}",
        server.holders()
    );

    // A finished run cannot be cancelled again.
    let again = server.cli(&["cancel", &run.to_string()]);
    assert_eq!(again.code, 2, "{again:?}");
    assert!(again.stderr.contains("already Cancelled"), "{again:?}");
}
