//! Execution modes as seen through the API: in `queued` mode runs wait for an environment in
//! arrival order and the queue endpoint shows who holds it and who waits; in `superseded`
//! mode (per pipeline, or per environment) a newer run replaces an older one still waiting.

use std::time::Duration;

use ferry_api::RunCreate;

use crate::common::{api_error, approve, prod_only_yaml, TestServer, RUN_TIMEOUT};

/// A configuration whose every plan has a change (the timestamp differs), so each run of it
/// reaches its approval step even after an earlier run applied.
const ALWAYS_CHANGES_TF: &str =
    "resource \"terraform_data\" \"stamp\" {\n  triggers_replace = uuid()\n}\n";

async fn trigger(server: &TestServer, project: &str) -> i64 {
    server
        .admin
        .runs_create(
            project,
            &RunCreate {
                git_ref: Some("main".into()),
                pipeline: None,
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .id
}

/// Waits until the run queues for `env` (it is recorded as waiting for it).
async fn wait_queued_for(server: &TestServer, id: i64, env: &str) -> ferry_api::RunDetail {
    let env = env.to_owned();
    server
        .wait_run(id, &format!("waiting_for {env}"), RUN_TIMEOUT, move |d| {
            d.run.waiting_for.as_deref() == Some(&env)
        })
        .await
}

async fn prod_queue(server: &TestServer) -> (Option<i64>, Vec<i64>) {
    let queue = server.admin.queue().await.unwrap();
    let prod: Vec<_> = queue.iter().filter(|q| q.environment == "prod").collect();
    assert!(prod.len() <= 1, "one queue per environment: {queue:?}");
    prod.first()
        .map(|q| (q.held_by, q.waiting.clone()))
        .unwrap_or((None, Vec::new()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_runs_wait_for_the_environment_in_arrival_order() {
    let mut server = TestServer::start().await;
    server
        .project(
            "q",
            &[
                ("ferry.yaml", &prod_only_yaml("q", "queued")),
                ("main.tf", ALWAYS_CHANGES_TF),
            ],
        )
        .await;
    let alice = server.user("alice").await;

    let first = trigger(&server, "q").await;
    server
        .wait_status(first, "WaitingForApproval", RUN_TIMEOUT)
        .await;
    let second = trigger(&server, "q").await;
    let detail = wait_queued_for(&server, second, "prod").await;
    assert_eq!(detail.run.status, "Queued");
    let third = trigger(&server, "q").await;
    wait_queued_for(&server, third, "prod").await;

    // The first holds prod through its approval wait; the others wait behind it, in order.
    assert_eq!(
        prod_queue(&server).await,
        (Some(first), vec![second, third])
    );
    // A queued run does nothing while it waits: not even its validate stage starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for id in [second, third] {
        let d = server.admin.runs_get(id).await.unwrap();
        assert_eq!(d.run.status, "Queued", "{d:#?}");
        assert!(
            d.stages.iter().all(|s| s.status == "Pending"),
            "run {id} started while queued: {d:#?}"
        );
        assert!(d.plans.is_empty());
    }

    // When the first finishes, the second (not the third) gets prod.
    alice
        .approvals_create(first, &approve("prod"))
        .await
        .unwrap();
    server.wait_status(first, "Succeeded", RUN_TIMEOUT).await;
    let detail = server
        .wait_status(second, "WaitingForApproval", RUN_TIMEOUT)
        .await;
    assert_eq!(detail.run.waiting_for, None);
    assert_eq!(
        server
            .admin
            .runs_get(third)
            .await
            .unwrap()
            .run
            .waiting_for
            .as_deref(),
        Some("prod")
    );
    assert_eq!(prod_queue(&server).await, (Some(second), vec![third]));

    alice
        .approvals_create(second, &approve("prod"))
        .await
        .unwrap();
    server.wait_status(second, "Succeeded", RUN_TIMEOUT).await;
    server
        .wait_status(third, "WaitingForApproval", RUN_TIMEOUT)
        .await;
    assert_eq!(prod_queue(&server).await, (Some(third), vec![]));

    // Cancelling the waiting holder frees prod.
    let cancelled = server.admin.runs_cancel(third).await.unwrap();
    assert_eq!(cancelled.status, "Cancelled");
    assert_eq!(prod_queue(&server).await, (None, vec![]));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_run_supersedes_an_older_one_waiting_for_approval() {
    let mut server = TestServer::start().await;
    server
        .project(
            "s",
            &[
                ("ferry.yaml", &prod_only_yaml("s", "superseded")),
                ("main.tf", ALWAYS_CHANGES_TF),
            ],
        )
        .await;

    let older = trigger(&server, "s").await;
    server
        .wait_status(older, "WaitingForApproval", RUN_TIMEOUT)
        .await;
    let newer = trigger(&server, "s").await;
    let detail = server.wait_status(older, "Superseded", RUN_TIMEOUT).await;
    let reason = detail.run.reason.clone().unwrap_or_default();
    assert!(
        reason.contains(&format!("superseded by run {newer}")),
        "reason does not name run {newer}: {reason:?}"
    );
    assert!(detail.run.finished_at.is_some());
    assert!(
        detail
            .stages
            .iter()
            .all(|s| s.status != "WaitingForApproval" && s.status != "Pending"),
        "{detail:#?}"
    );

    // A superseded run cannot be approved any more.
    let bob = server.user("bob").await;
    let (status, body) = api_error(bob.approvals_create(older, &approve("prod")).await);
    assert_eq!(status, 409, "{}", body.message);
    // The supersession is an event and an audit entry naming the plan it dropped.
    let events = server
        .admin
        .events(
            0,
            &[
                ("run", older.to_string()),
                ("type", "PIPELINE_EXECUTION_SUPERSEDED".into()),
            ],
        )
        .await
        .unwrap();
    assert_eq!(events.events.len(), 1);
    assert!(events.events[0]
        .reason
        .as_deref()
        .is_some_and(|r| r.contains(&format!("superseded by run {newer}"))));
    let audit = server
        .admin
        .audit(0, &[("action", "run.supersede".into())])
        .await
        .unwrap();
    assert_eq!(audit.entries.len(), 1);
    assert_eq!(audit.entries[0].target, format!("run/{older}"));
    assert!(audit.entries[0].details["plan_sha256"].is_string());

    // The newer run takes prod and waits for its own approval.
    server
        .wait_status(newer, "WaitingForApproval", RUN_TIMEOUT)
        .await;
    assert_eq!(prod_queue(&server).await, (Some(newer), vec![]));
    server.admin.runs_cancel(newer).await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_can_override_a_queued_pipeline_with_superseded() {
    let yaml = "version: 1\nname: o\nmode: queued\nterraform: { dir: . }\nenvironments:\n  - name: dev\n    auto_apply: true\n  - name: prod\n    mode: superseded\n";
    let mut server = TestServer::start().await;
    server
        .project("o", &[("ferry.yaml", yaml), ("main.tf", ALWAYS_CHANGES_TF)])
        .await;

    let older = trigger(&server, "o").await;
    server
        .wait_status(older, "WaitingForApproval", RUN_TIMEOUT)
        .await;
    // dev is queued-mode and free again, so the newer run deploys dev, then supersedes the
    // older run at prod.
    let newer = trigger(&server, "o").await;
    let detail = server.wait_status(older, "Superseded", RUN_TIMEOUT).await;
    let reason = detail.run.reason.clone().unwrap_or_default();
    assert!(
        reason.contains(&format!("superseded by run {newer}")) && reason.contains("prod"),
        "{reason:?}"
    );
    let detail = server
        .wait_status(newer, "WaitingForApproval", RUN_TIMEOUT)
        .await;
    let dev_apply = detail
        .stages
        .iter()
        .find(|s| s.environment == "dev" && s.kind == "apply")
        .unwrap();
    assert_eq!(dev_apply.status, "Succeeded");
    assert_eq!(prod_queue(&server).await, (Some(newer), vec![]));
    server.admin.runs_cancel(newer).await.unwrap();
    server.stop().await;
}
