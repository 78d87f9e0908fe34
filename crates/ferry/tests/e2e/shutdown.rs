//! SIGTERM to the server, as documented on `Engine::shutdown`: running actions may finish
//! within the shutdown grace (the server then exits 0); an action still running when the
//! grace ends is terminated and its run recorded `Interrupted`; a run caught between stages
//! is left as it is and resumes at the next start.

use std::time::{Duration, Instant};

use ferry_test_support::{path_with_terraform, process_running, terraform_data_config};

use crate::util::{action, assert_gone, marker, repo_with, stage, Server};

fn yaml_with_tests(tests: &str) -> String {
    format!("version: 1\nname: naps\nterraform: {{ dir: . }}\nstages: {{ test: [{tests}] }}\n")
}

/// Waits until the test stage's first action runs `marker`.
fn wait_running(server: &Server, run: i64, marker: &str) {
    server.wait_run(
        run,
        "the test action to be running",
        Duration::from_secs(60),
        |d| action(d, "default", "test")["status"] == "InProgress" && process_running(marker),
    );
}

#[test]
fn sigterm_lets_the_running_action_finish_then_interrupts_the_run_mid_stage() {
    let marker = marker("sleep 3.17");
    let mut server = Server::start_with(path_with_terraform(), &["--shutdown-grace", "20s"]);
    let yaml = yaml_with_tests(&format!("\"{marker}\", \"echo after-the-nap\""));
    let repo = repo_with(&[
        ("ferry.yaml", &yaml),
        ("main.tf", &terraform_data_config(1)),
    ]);
    server.add_project("naps", &repo);
    let run = server.trigger("naps", &[]);
    wait_running(&server, run, &marker);

    server.sigterm();
    let code = server.wait_exit(Duration::from_secs(25));
    assert_eq!(code, 0, "{}", server.logs());
    assert!(
        !process_running(&marker),
        "the server exited before its action did"
    );

    server.restart();
    let detail = server.show(run);
    assert_eq!(
        detail["status"],
        "Interrupted",
        "{detail:#}\n{}",
        server.logs()
    );
    let reason = detail["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("shut down") && reason.contains("test"),
        "reason: {reason:?}"
    );
    let actions = stage(&detail, "default", "test")["actions"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        (
            actions[0]["status"].as_str(),
            actions[0]["exit_code"].as_i64()
        ),
        (Some("Succeeded"), Some(0)),
        "the nap finished: {detail:#}"
    );
    assert_ne!(
        actions[1]["status"], "Succeeded",
        "no new action started after SIGTERM: {detail:#}"
    );
    assert!(
        action(&detail, "default", "apply")["started_at"].is_null(),
        "nothing was applied: {detail:#}"
    );
    assert!(
        server.holders().iter().all(|(_, h)| h.is_none()),
        "{:?}",
        server.holders()
    );
    // After the restart Ferry works as usual.
    server.cli(&["run", "naps", "--wait"]).ok();
}

#[test]
fn sigterm_between_stages_leaves_the_run_to_resume_after_restart() {
    let marker = marker("sleep 3.19");
    let mut server = Server::start_with(path_with_terraform(), &["--shutdown-grace", "20s"]);
    let repo = repo_with(&[
        ("ferry.yaml", &yaml_with_tests(&format!("\"{marker}\""))),
        ("main.tf", &terraform_data_config(1)),
    ]);
    server.add_project("naps", &repo);
    let run = server.trigger("naps", &[]);
    wait_running(&server, run, &marker);

    server.sigterm();
    assert_eq!(
        server.wait_exit(Duration::from_secs(25)),
        0,
        "{}",
        server.logs()
    );
    assert!(!process_running(&marker));

    // The test stage completed within the grace; the run resumes with its apply.
    server.restart();
    let detail = server.wait_run(
        run,
        "the run to end",
        Duration::from_secs(60),
        crate::util::is_finished,
    );
    assert_eq!(
        detail["status"],
        "Succeeded",
        "{detail:#}\n{}",
        server.logs()
    );
    assert_eq!(stage(&detail, "default", "test")["status"], "Succeeded");
    assert_eq!(stage(&detail, "default", "apply")["status"], "Succeeded");
}

#[test]
fn sigterm_with_a_short_grace_terminates_the_action_and_interrupts_the_run() {
    let marker = marker("sleep 300.41");
    let mut server = Server::start_with(
        path_with_terraform(),
        &["--shutdown-grace", "1s", "--kill-grace", "2s"],
    );
    let repo = repo_with(&[
        ("ferry.yaml", &yaml_with_tests(&format!("\"{marker}\""))),
        ("main.tf", &terraform_data_config(1)),
    ]);
    server.add_project("naps", &repo);
    let run = server.trigger("naps", &[]);
    wait_running(&server, run, &marker);

    let signalled = Instant::now();
    server.sigterm();
    assert_eq!(
        server.wait_exit(Duration::from_secs(10)),
        0,
        "{}",
        server.logs()
    );
    assert!(
        signalled.elapsed() < Duration::from_secs(6),
        "took {:?} to exit",
        signalled.elapsed()
    );
    assert_gone(&marker, Duration::from_secs(1));

    server.restart();
    let detail = server.show(run);
    assert_eq!(
        detail["status"],
        "Interrupted",
        "{detail:#}\n{}",
        server.logs()
    );
    assert!(
        detail["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("shut down"),
        "{detail:#}"
    );
    assert_eq!(
        action(&detail, "default", "test")["status"],
        "Interrupted",
        "{detail:#}"
    );
    assert!(
        server.holders().iter().all(|(_, h)| h.is_none()),
        "{:?}",
        server.holders()
    );
}
