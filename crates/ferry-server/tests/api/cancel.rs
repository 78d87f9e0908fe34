//! Cancelling through the API: the running action's processes are terminated, the run,
//! its stages and the action end `Cancelled`, the environment is free again, and cancelling
//! a run that already ended is a 409 `run_finished`.

use std::time::Duration;

use crate::common::{TestServer, RUN_TIMEOUT};

/// A `sleep` whose command line no other test (or process) has.
fn unique_sleep() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("600.{}{:09}", std::process::id(), nanos)
}

async fn assert_cancelled_and_cleaned_up(server: &TestServer, id: i64, kind: &str, marker: &str) {
    let answer = server
        .call("POST", &format!("/api/v1/runs/{id}/cancel"), None)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(
        answer.json["status"], "Cancelled",
        "cancel answers with the final status: {}",
        answer.text
    );
    assert_eq!(answer.json["reason"], "cancelled by admin");

    let detail = server.admin.runs_get(id).await.unwrap();
    assert_eq!(detail.run.status, "Cancelled");
    assert!(detail.run.finished_at.is_some());
    let action = detail
        .stages
        .iter()
        .flat_map(|s| &s.actions)
        .find(|a| a.kind == kind)
        .unwrap();
    assert_eq!(action.status, "Cancelled", "{action:?}");
    assert!(action.finished_at.is_some());
    assert!(
        detail
            .stages
            .iter()
            .all(|s| matches!(s.status.as_str(), "Succeeded" | "Cancelled" | "Skipped")),
        "no stage may be left pending or running: {detail:#?}"
    );
    assert!(
        !ferry_test_support::process_running(marker),
        "the action's process outlived the cancel"
    );
    let queue = server.admin.queue().await.unwrap();
    assert!(
        queue
            .iter()
            .all(|q| q.held_by.is_none() && q.waiting.is_empty()),
        "environment not freed: {queue:?}"
    );

    // A second cancel finds the run finished.
    let again = server
        .call("POST", &format!("/api/v1/runs/{id}/cancel"), None)
        .await;
    let body = again.assert_error(409, "run_finished");
    assert!(body.message.contains("Cancelled"), "{body:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_terminates_a_running_command_and_frees_the_environment() {
    let marker = format!("sleep {}", unique_sleep());
    let yaml = format!("version: 1\nname: slow\nterraform: {{ dir: . }}\nstages:\n  test:\n    - \"{marker}; echo done\"\n");
    let mut server = TestServer::start().await;
    server
        .project(
            "slow",
            &[
                ("ferry.yaml", &yaml),
                ("main.tf", &ferry_test_support::terraform_data_config(1)),
            ],
        )
        .await;
    let id = server
        .admin
        .runs_create("slow", &ferry_api::RunCreate::default())
        .await
        .unwrap()
        .id;

    let m = marker.clone();
    server
        .wait_run(id, "the sleep running", RUN_TIMEOUT, move |d| {
            d.stages
                .iter()
                .flat_map(|s| &s.actions)
                .any(|a| a.kind == "command" && a.status == "InProgress")
                && ferry_test_support::process_running(&m)
        })
        .await;
    assert_cancelled_and_cleaned_up(&server, id, "command", &marker).await;
    let detail = server.admin.runs_get(id).await.unwrap();
    let apply = detail.stages.iter().find(|s| s.kind == "apply").unwrap();
    assert_eq!(
        apply.status, "Skipped",
        "the apply after the cancelled test stage never runs"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_during_apply_stops_terraform_and_its_provisioner() {
    let marker = format!("sleep {}", unique_sleep());
    let tf = format!(
        "resource \"terraform_data\" \"slow\" {{\n  provisioner \"local-exec\" {{\n    command = \"{marker}\"\n  }}\n}}\n"
    );
    let mut server = TestServer::start().await;
    server
        .project(
            "slowapply",
            &[
                ("ferry.yaml", ferry_test_support::MINIMAL_FERRY_YAML),
                ("main.tf", &tf),
            ],
        )
        .await;
    let id = server
        .admin
        .runs_create("slowapply", &ferry_api::RunCreate::default())
        .await
        .unwrap()
        .id;
    let m = marker.clone();
    server
        .wait_run(id, "apply running the provisioner", RUN_TIMEOUT, move |d| {
            d.stages
                .iter()
                .flat_map(|s| &s.actions)
                .any(|a| a.kind == "terraform_apply" && a.status == "InProgress")
                && ferry_test_support::process_running(&m)
        })
        .await;
    assert_cancelled_and_cleaned_up(&server, id, "terraform_apply", &marker).await;
    // Nothing of the run's Terraform is left either.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let data = server.data_dir().to_string_lossy().into_owned();
    assert!(
        !ferry_test_support::process_running(&format!("{data}/plans/run-{id}")),
        "terraform apply survived the cancel"
    );
    server.stop().await;
}
