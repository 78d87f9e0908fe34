//! `kill -9` of the server, for real: mid-`terraform apply` (after restart the orphaned
//! apply's process group is gone, the run is `Interrupted`, the environment is free and the
//! next run succeeds) and during an approval wait (the run still waits and can be approved).

use std::time::Duration;

use ferry_test_support::{example_dir, process_running, wait_for, GitRepo, MINIMAL_FERRY_YAML};

use crate::util::{
    action, assert_gone, audit_rows, marker, pids_matching, repo_with, slow_apply_tf, stage, Server,
};

#[test]
fn kill_9_during_apply_interrupts_the_run_kills_its_terraform_and_frees_the_environment() {
    let marker = marker("sleep 47.31");
    let mut server = Server::start();
    let repo = repo_with(&[
        ("ferry.yaml", MINIMAL_FERRY_YAML),
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
    assert_eq!(server.holders(), [("default".to_owned(), Some(run))]);

    server.kill9();
    // The apply outlives its server: this is what recovery has to clean up.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        process_running(&marker),
        "the apply's process group should survive a kill -9 of the server"
    );

    server.restart();
    assert_gone(&marker, Duration::from_secs(2));

    let detail = server.show(run);
    assert_eq!(
        detail["status"],
        "Interrupted",
        "{detail:#}\n{}",
        server.logs()
    );
    let reason = detail["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("server stopped"), "reason: {reason:?}");
    assert_eq!(
        action(&detail, "default", "apply")["status"],
        "Interrupted",
        "{detail:#}"
    );
    assert!(
        server.holders().iter().all(|(_, holder)| holder.is_none()),
        "the environment is free: {:?}",
        server.holders()
    );

    // Fix the configuration; the next run gets the environment and succeeds.
    repo.write("main.tf", &ferry_test_support::terraform_data_config(1));
    let fixed = repo.commit("no more sleeping");
    let out = server.cli(&["run", "slow", "--wait", "--output", "json"]);
    assert_eq!(out.code, 0, "{out:?}\n{}", server.logs());
    let next = out.json();
    assert_eq!(
        (next["status"].as_str(), next["commit"].as_str()),
        (Some("Succeeded"), Some(fixed.as_str())),
        "{next:#}"
    );
    assert_eq!(stage(&next, "default", "apply")["status"], "Succeeded");

    // The interruption is in the audit log, and the chain is intact.
    server.stop();
    let verified = server.cli(&["audit", "verify"]);
    assert_eq!(verified.code, 0, "{verified:?}");
    let rows = audit_rows(&server.data.join("ferry.db"));
    let interrupt = rows
        .iter()
        .find(|r| r.action == "run.interrupt" && r.target == format!("run/{run}"))
        .unwrap_or_else(|| panic!("no run.interrupt entry for run {run}: {rows:#?}"));
    assert_eq!(
        (
            interrupt.actor.as_str(),
            interrupt.source.as_str(),
            interrupt.outcome.as_str()
        ),
        ("system", "startup", "ok"),
        "{interrupt:?}"
    );
    assert!(
        interrupt.details.contains("server stopped"),
        "{interrupt:?}"
    );
    // The killed apply held the state lock through its per-action credential; recovery
    // released it (audited), which is also why the next run could plan and apply.
    assert!(
        rows.iter()
            .any(|r| r.action == "state.release_abandoned_lock"
                && r.target == "state/slow/default"
                && r.actor == "system"),
        "no released lock in {rows:#?}"
    );
    assert!(
        verified.stdout.contains(&format!("{} entries", rows.len())),
        "{verified:?}"
    );
}

/// What really happens when the server stays down for a while: Terraform dies on its next
/// progress line to the dead pipe (about 10s in) and init reaps it, while its `local-exec`
/// children stay in the group. The test plays init: it becomes the subreaper that inherits
/// the orphaned Terraform, kills it and reaps it, so its pid is truly gone (a zombie would
/// still let recovery find the group by its leader).
#[test]
fn kill_9_during_apply_then_terraform_exits_its_leftover_children_are_still_killed_at_restart() {
    let marker = marker("sleep 45.93");
    // Harmless for the other tests: orphans they leave become zombies of this process
    // instead of init's, which nothing checks.
    nix::sys::prctl::set_child_subreaper(true).expect("become a subreaper");
    let mut server = Server::start();
    let repo = repo_with(&[
        ("ferry.yaml", MINIMAL_FERRY_YAML),
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

    server.kill9();
    // `terraform apply ... <work>/run-N/plan/default.tfplan` is the action's group leader.
    let apply = format!(
        "{}-work/run-{run}/plan/default.tfplan",
        server.data.display()
    );
    let leaders = pids_matching(&apply);
    assert_eq!(leaders.len(), 1, "one terraform apply process: {leaders:?}");
    let leader = nix::unistd::Pid::from_raw(leaders[0]);
    nix::sys::signal::kill(leader, nix::sys::signal::Signal::SIGKILL).unwrap();
    nix::sys::wait::waitpid(leader, None).expect("reap the orphaned terraform");
    assert!(
        !std::path::Path::new(&format!("/proc/{leader}")).exists(),
        "the group leader is gone"
    );
    assert!(
        process_running(&marker),
        "the local-exec child outlives its terraform"
    );

    server.restart();
    assert_gone(&marker, Duration::from_secs(2));
    let detail = server.show(run);
    assert_eq!(
        detail["status"],
        "Interrupted",
        "{detail:#}\n{}",
        server.logs()
    );
    assert!(
        server.holders().iter().all(|(_, holder)| holder.is_none()),
        "{:?}",
        server.holders()
    );
}

#[test]
fn kill_9_while_waiting_for_approval_keeps_the_wait_and_approval_still_works() {
    let mut server = Server::start();
    let repo = GitRepo::from_dir(&example_dir());
    server.add_project("hello", &repo);
    let run = server.trigger("hello", &[]);
    let before = server.wait_status(run, "WaitingForApproval", Duration::from_secs(90));

    server.kill9();
    server.restart();

    let after = server.show(run);
    assert_eq!(
        after["status"],
        "WaitingForApproval",
        "{after:#}\n{}",
        server.logs()
    );
    assert_eq!(
        stage(&after, "prod", "approval")["status"],
        "WaitingForApproval"
    );
    assert_eq!(
        after["plans"], before["plans"],
        "the plans survive the restart"
    );
    assert!(
        server.holders().contains(&("prod".to_owned(), Some(run))),
        "prod stays held: {:?}",
        server.holders()
    );

    let carol = server.create_token("carol");
    server
        .cli_env(
            &[
                "approve",
                &run.to_string(),
                "--env",
                "prod",
                "-m",
                "after the crash",
            ],
            &[("FERRY_TOKEN", &carol)],
        )
        .ok();
    let done = server.wait_run(
        run,
        "the run to end",
        Duration::from_secs(90),
        crate::util::is_finished,
    );
    assert_eq!(done["status"], "Succeeded", "{done:#}\n{}", server.logs());
    assert_eq!(stage(&done, "prod", "apply")["status"], "Succeeded");
    let log = server.cli(&["logs", &run.to_string()]).ok().stdout;
    assert!(
        log.contains("Apply complete! Resources: 3 added"),
        "prod applied after the restart:\n{log}"
    );
    wait_for("prod to be released", Duration::from_secs(10), || {
        server
            .holders()
            .iter()
            .all(|(_, holder)| holder.is_none())
            .then_some(())
    });
}

/// Terraform writes `errored.tfstate` when it cannot save state to the backend (as when the
/// server died under it). Recovery imports it as a new version of the environment's state,
/// audited, and says so in the run's log. An action plays Terraform here: it leaves the file
/// and keeps running until the server is killed.
#[test]
fn kill_9_leaves_an_errored_tfstate_that_recovery_imports_as_a_new_version() {
    let marker = marker("sleep 44.17");
    let state = r#"{"version": 4, "terraform_version": "1.15.5", "serial": 7, "lineage": "e2e-errored-lineage", "outputs": {}, "resources": [], "check_results": null}"#;
    let ferry_yaml = format!(
        "version: 1\nname: errstate\nterraform: {{ dir: . }}\nstages:\n  test:\n    - \"cp left-behind.json errored.tfstate && {marker}\"\n"
    );
    let mut server = Server::start();
    let repo = repo_with(&[
        ("ferry.yaml", &ferry_yaml),
        ("main.tf", ""),
        ("left-behind.json", state),
    ]);
    server.add_project("errstate", &repo);
    let run = server.trigger("errstate", &[]);
    server.wait_run(
        run,
        "the test action to be running",
        Duration::from_secs(60),
        |d| action(d, "default", "test")["status"] == "InProgress" && process_running(&marker),
    );
    server.kill9();
    server.restart();
    assert_gone(&marker, Duration::from_secs(2));
    assert_eq!(server.show(run)["status"], "Interrupted");
    let logs = server.cli(&["logs", &run.to_string()]);
    assert!(
        logs.stdout.contains("imported the errored.tfstate"),
        "{logs:?}"
    );
    server.stop();
    let rows = audit_rows(&server.data.join("ferry.db"));
    let import = rows
        .iter()
        .find(|r| r.action == "state.write" && r.target == "state/errstate/default")
        .unwrap_or_else(|| panic!("no state.write for the import in {rows:#?}"));
    assert_eq!(
        (import.actor.as_str(), import.source.as_str()),
        ("system", "startup")
    );
    assert!(import.details.contains("\"serial\":7"), "{import:?}");
    assert_eq!(server.cli(&["audit", "verify"]).code, 0);
}
