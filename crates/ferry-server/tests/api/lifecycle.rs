//! The happy path through the API: register a project, list its pipelines, trigger runs and
//! follow them to `Succeeded` on real Terraform, including an environment that waits for an
//! approval from a second identity. These are the calls the CLI and the quick start rely on.

use ferry_test_support::{terraform_data_config, MINIMAL_FERRY_YAML};
use serde_json::json;

use crate::common::{api_error, approve, two_env_yaml, TestServer, RUN_TIMEOUT};

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn stage_table(detail: &ferry_api::RunDetail) -> Vec<(String, String, String)> {
    detail
        .stages
        .iter()
        .map(|s| (s.environment.clone(), s.kind.clone(), s.status.clone()))
        .collect()
}

fn row(env: &str, kind: &str, status: &str) -> (String, String, String) {
    (env.to_owned(), kind.to_owned(), status.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minimal_pipeline_validates_plans_and_applies_its_default_environment() {
    let server = TestServer::start().await;
    let repo = ferry_test_support::GitRepo::new();
    repo.write("ferry.yaml", MINIMAL_FERRY_YAML)
        .write("main.tf", &terraform_data_config(3));
    let head = repo.commit("three resources");

    // Register: 201 with the project echoed back, created by the admin identity.
    let created = server
        .call(
            "POST",
            "/api/v1/projects",
            Some(json!({"name": "tiny", "repo": repo.path().to_string_lossy()})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json["name"], "tiny");
    assert_eq!(created.json["repo"], repo.path().to_string_lossy().as_ref());
    assert_eq!(created.json["created_by"], "admin");
    let projects = server.admin.projects_list().await.unwrap();
    assert_eq!(
        projects.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["tiny"]
    );

    // Pipelines at the default branch: one, with the implicit `default` environment.
    let pipelines = server.admin.pipelines_list("tiny", None).await.unwrap();
    assert_eq!(pipelines.commit, head);
    assert_eq!(pipelines.pipelines.len(), 1, "{pipelines:?}");
    let p = &pipelines.pipelines[0];
    assert_eq!((p.name.as_str(), p.path.as_str()), ("tiny", "ferry.yaml"));
    assert_eq!(p.environments, ["default"]);
    assert!(p.errors.is_empty(), "{:?}", p.errors);

    // Trigger on `main`: 201 with the resolved commit.
    let triggered = server
        .call(
            "POST",
            "/api/v1/projects/tiny/runs",
            Some(json!({"ref": "main"})),
        )
        .await;
    assert_eq!(triggered.status, 201, "{}", triggered.text);
    let run: ferry_api::Run = serde_json::from_value(triggered.json.clone()).unwrap();
    assert_eq!(
        (
            run.project.as_str(),
            run.pipeline.as_str(),
            run.git_ref.as_str()
        ),
        ("tiny", "tiny", "main")
    );
    assert_eq!(run.commit, head);
    assert_eq!(run.number, 1);
    assert_eq!(run.triggered_by, "admin");
    assert!(
        !run.is_finished(),
        "a new run cannot be finished already: {run:?}"
    );

    let detail = server.wait_status(run.id, "Succeeded", RUN_TIMEOUT).await;
    assert_eq!(
        stage_table(&detail),
        [
            row("default", "validate", "Succeeded"),
            row("default", "plan", "Succeeded"),
            row("default", "policy", "Succeeded"),
            row("default", "apply", "Succeeded")
        ]
    );
    let kinds: Vec<Vec<&str>> = detail
        .stages
        .iter()
        .map(|s| s.actions.iter().map(|a| a.kind.as_str()).collect())
        .collect();
    assert_eq!(
        kinds,
        [
            vec!["terraform_init", "terraform_validate"],
            vec!["terraform_plan"],
            vec!["policy_check"],
            vec!["terraform_apply"]
        ]
    );
    assert!(
        detail
            .stages
            .iter()
            .flat_map(|s| &s.actions)
            .all(|a| a.status == "Succeeded" && a.exit_code == Some(0)),
        "{detail:#?}"
    );
    assert!(detail.run.started_at.is_some() && detail.run.finished_at.is_some());
    assert_eq!(detail.plans.len(), 1, "{:?}", detail.plans);
    let plan = &detail.plans[0];
    assert_eq!(plan.environment, "default");
    assert_eq!(
        (plan.add, plan.change, plan.destroy, plan.has_changes),
        (3, 0, 0, true)
    );
    let mut resources: Vec<(String, String)> = plan
        .resources
        .iter()
        .map(|r| (r.address.clone(), r.action.clone()))
        .collect();
    resources.sort();
    let want: Vec<(String, String)> = (0..3)
        .map(|i| (format!("terraform_data.r[{i}]"), "create".to_owned()))
        .collect();
    assert_eq!(resources, want);
    assert!(is_sha256_hex(&plan.sha256), "not a sha256: {}", plan.sha256);

    // Trigger with no fields at all: default branch, the only pipeline. The state from run 1
    // persisted, so this plan has no changes and the apply is skipped.
    let triggered = server
        .call("POST", "/api/v1/projects/tiny/runs", Some(json!({})))
        .await;
    assert_eq!(triggered.status, 201, "{}", triggered.text);
    assert_eq!(triggered.json["ref"], "main");
    assert_eq!(triggered.json["pipeline"], "tiny");
    assert_eq!(triggered.json["number"], 2);
    let id = triggered.json["id"].as_i64().unwrap();
    let detail = server.wait_status(id, "Succeeded", RUN_TIMEOUT).await;
    let plan = &detail.plans[0];
    assert_eq!(
        (plan.add, plan.change, plan.destroy, plan.has_changes),
        (0, 0, 0, false),
        "{plan:?}"
    );
    assert_eq!(
        detail
            .stages
            .last()
            .map(|s| (s.kind.as_str(), s.status.as_str())),
        Some(("apply", "Skipped"))
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_without_auto_apply_waits_for_another_identity_to_approve() {
    let mut server = TestServer::start().await;
    server
        .project(
            "app",
            &[
                ("ferry.yaml", &two_env_yaml("app", "queued")),
                ("main.tf", &terraform_data_config(2)),
            ],
        )
        .await;
    let alice = server.user("alice").await;

    let run = server
        .admin
        .runs_create(
            "app",
            &ferry_api::RunCreate {
                git_ref: Some("main".into()),
                pipeline: None,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let detail = server
        .wait_status(run.id, "WaitingForApproval", RUN_TIMEOUT)
        .await;
    assert_eq!(
        stage_table(&detail),
        [
            row("dev", "validate", "Succeeded"),
            row("dev", "plan", "Succeeded"),
            row("dev", "policy", "Succeeded"),
            row("dev", "apply", "Succeeded"),
            row("prod", "validate", "Succeeded"),
            row("prod", "plan", "Succeeded"),
            row("prod", "policy", "Succeeded"),
            row("prod", "approval", "WaitingForApproval"),
            row("prod", "apply", "Pending"),
        ]
    );
    assert_eq!(
        detail.run.waiting_for, None,
        "the run holds prod; it does not queue for it"
    );
    let plan_envs: Vec<&str> = detail
        .plans
        .iter()
        .map(|p| p.environment.as_str())
        .collect();
    assert_eq!(plan_envs, ["dev", "prod"]);

    // The queue shows the run holding prod while it waits; dev was released after its apply.
    let queue = server.admin.queue().await.unwrap();
    let prod = queue
        .iter()
        .find(|q| q.environment == "prod")
        .unwrap_or_else(|| panic!("no prod in {queue:?}"));
    assert_eq!(
        (prod.project.as_str(), prod.pipeline.as_str()),
        ("app", "app")
    );
    assert_eq!(prod.held_by, Some(run.id));
    assert!(prod.held_since.is_some());
    assert!(prod.waiting.is_empty(), "{queue:?}");
    assert!(
        queue
            .iter()
            .all(|q| q.environment != "dev" || q.held_by.is_none()),
        "dev still held: {queue:?}"
    );

    // Whoever triggered the run may not approve it.
    let (status, body) = api_error(
        server
            .admin
            .approvals_create(run.id, &approve("prod"))
            .await,
    );
    assert_eq!((status, body.code.as_str()), (403, "forbidden"), "{body:?}");
    // dev has no approval step.
    let (status, body) = api_error(alice.approvals_create(run.id, &approve("dev")).await);
    assert_eq!(status, 409, "{body:?}");
    // A comment is required.
    let empty = ferry_api::ApprovalCreate {
        comment: "  ".into(),
        ..approve("prod")
    };
    let (status, _) = api_error(alice.approvals_create(run.id, &empty).await);
    assert_eq!(status, 400);
    // The refusals changed nothing.
    assert_eq!(
        server.admin.runs_get(run.id).await.unwrap().run.status,
        "WaitingForApproval"
    );

    let approved = alice
        .approvals_create(run.id, &approve("prod"))
        .await
        .unwrap();
    assert_eq!(approved.id, run.id);
    assert_ne!(approved.status, "WaitingForApproval");
    let detail = server.wait_status(run.id, "Succeeded", RUN_TIMEOUT).await;
    assert_eq!(detail.approvals.len(), 1, "{:?}", detail.approvals);
    let a = &detail.approvals[0];
    assert_eq!(
        (
            a.environment.as_str(),
            a.decision.as_str(),
            a.actor.as_str(),
            a.comment.as_str()
        ),
        ("prod", "approve", "alice", "looks good")
    );
    assert!(
        detail.stages.iter().all(|s| s.status == "Succeeded"),
        "{detail:#?}"
    );

    // Nothing to approve any more: 409, and prod is free.
    let (status, body) = api_error(alice.approvals_create(run.id, &approve("prod")).await);
    assert_eq!((status, body.code.as_str()), (409, "conflict"), "{body:?}");
    let queue = server.admin.queue().await.unwrap();
    assert!(
        queue
            .iter()
            .all(|q| q.held_by.is_none() && q.waiting.is_empty()),
        "{queue:?}"
    );
    server.stop().await;
}
