//! The policy gate inside runs, through the API on real git and real Terraform: a custom Rego
//! rule on the deploy branch blocks prod (`POLICY_VIOLATION`) and not dev (levels by
//! position), the approval view shows the findings, a waiver lets a retry pass and can be
//! revoked, a commit that edits the policies is still judged by the deploy branch's (and is
//! flagged), a Rego syntax error fails the stage naming file:line, and bad waivers are
//! refused (unknown rule 422, too long 422, the change's author 403).

use std::process::Command;

use ferry_api::{RunCreate, WaiverCreate};
use serde_json::json;

use crate::common::{api_error, TestServer, RUN_TIMEOUT};

/// dev first (fail_on critical by default), prod last (medium) and approved by hand.
const TWO_ENVS: &str = "version: 1\nname: app\nsource: { branches: [main] }\nterraform: { dir: . }\nenvironments:\n  - name: dev\n    auto_apply: true\n  - name: prod\n";

const POLICY: &str = r#"package ferry.data

rules := {"ACME-DATA-001": {"severity": "high", "title": "no forbidden inputs"}}

deny contains f if {
    some rc in input.plan.resource_changes
    rc.type == "terraform_data"
    "create" in rc.change.actions
    startswith(rc.change.after.input, "forbidden")
    f := {
        "rule": "ACME-DATA-001",
        "severity": "high",
        "address": rc.address,
        "message": sprintf("%s holds a forbidden input", [rc.address]),
        "remediation": "use another input",
    }
}
"#;

const MAIN_TF: &str = "resource \"terraform_data\" \"ok\" {\n  input = \"fine\"\n}\n\nresource \"terraform_data\" \"bad\" {\n  input = \"forbidden-1\"\n}\n";

fn git(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=Ferry Test",
            "-c",
            "user.email=test@ferry.invalid",
        ])
        .args(args)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {out:?}");
}

fn stage<'a>(d: &'a ferry_api::RunDetail, env: &str, kind: &str) -> &'a ferry_api::Stage {
    d.stages
        .iter()
        .find(|s| s.environment == env && s.kind == kind)
        .unwrap_or_else(|| panic!("no {env}/{kind} in {d:#?}"))
}

fn waiver(run: i64, rule: &str, days: i64) -> WaiverCreate {
    WaiverCreate {
        run_id: run,
        rule: rule.to_owned(),
        address: "terraform_data.bad".to_owned(),
        environment: "prod".to_owned(),
        reason: "a test fixture, reviewed".to_owned(),
        expires_at: (chrono::Utc::now() + chrono::Duration::days(days))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_rule_blocks_prod_not_dev_and_a_waiver_lets_a_retry_pass() {
    let mut server = TestServer::start().await;
    server
        .project(
            "app",
            &[
                ("ferry.yaml", TWO_ENVS),
                ("main.tf", MAIN_TF),
                ("policy/data.rego", POLICY),
            ],
        )
        .await;
    let bob = server.user_with("bob", &["operator", "approver"]).await;
    let carol = server.user("carol").await;
    let run = bob.runs_create("app", &RunCreate::default()).await.unwrap();
    let detail = server.wait_status(run.id, "Failed", RUN_TIMEOUT).await;

    // dev: the high finding is below its `critical` level; it applied.
    assert_eq!(stage(&detail, "dev", "policy").status, "Succeeded");
    assert_eq!(stage(&detail, "dev", "apply").status, "Succeeded");
    let policy_actions: Vec<(&str, &str)> = stage(&detail, "dev", "policy")
        .actions
        .iter()
        .map(|a| (a.name.as_str(), a.kind.as_str()))
        .collect();
    assert_eq!(policy_actions, [("policy check", "policy_check")]);
    // prod: blocked at `medium`.
    let prod_policy = stage(&detail, "prod", "policy");
    assert_eq!(prod_policy.status, "Failed");
    let reason = detail.run.reason.clone().unwrap_or_default();
    assert!(
        reason.starts_with("POLICY_VIOLATION:")
            && reason.contains("ACME-DATA-001 on terraform_data.bad"),
        "{reason}"
    );
    assert_eq!(prod_policy.reason.as_deref(), Some(reason.as_str()));
    assert_eq!(stage(&detail, "prod", "apply").status, "Skipped");

    // One POLICY_VIOLATION event, naming the blocking finding.
    let events = server
        .call(
            "GET",
            &format!("/api/v1/events?run={}&type=POLICY_VIOLATION", run.id),
            None,
        )
        .await;
    let events = events.json["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["environment"], "prod");
    assert_eq!(events[0]["stage"], "policy");
    assert_eq!(events[0]["details"]["findings"][0]["rule"], "ACME-DATA-001");
    assert_eq!(
        events[0]["details"]["findings"][0]["address"],
        "terraform_data.bad"
    );

    // The approval view shows the findings with their verdicts, in both environments.
    let view = carol.approval_view(run.id, "prod").await.unwrap();
    let policy = view.policy.expect("policy report in the approval view");
    assert!(policy.blocked);
    assert_eq!(policy.fail_on, "medium");
    let f = &policy.findings[0];
    assert_eq!(
        (f.rule.as_str(), f.address.as_str(), f.severity.as_str()),
        ("ACME-DATA-001", "terraform_data.bad", "high")
    );
    assert!(f.blocking && !f.waived);
    let dev = carol.approval_view(run.id, "dev").await.unwrap();
    let dev_policy = dev.policy.expect("dev report");
    assert_eq!(dev_policy.fail_on, "critical");
    assert!(!dev_policy.blocked && !dev_policy.findings[0].blocking);

    // The run detail (`ferry show`) carries both environments' reports.
    let shown = bob.runs_get(run.id).await.unwrap();
    let envs: Vec<(&str, bool)> = shown
        .policy
        .iter()
        .map(|p| (p.environment.as_str(), p.blocked))
        .collect();
    assert_eq!(envs, [("dev", false), ("prod", true)]);

    // The run log has the readable summary.
    let log = server
        .call("GET", &format!("/api/v1/runs/{}/logs", run.id), None)
        .await;
    assert!(log.text.contains("[BLOCKS] high"), "{}", log.text);

    // Bad waivers.
    let (status, body) = api_error(
        carol
            .waiver_create("app", &waiver(run.id, "ACME-NOPE-9", 7))
            .await,
    );
    assert_eq!(status, 422, "{}", body.message);
    assert!(
        body.message.contains("unknown rule `ACME-NOPE-9`"),
        "{}",
        body.message
    );
    let (status, body) = api_error(
        carol
            .waiver_create("app", &waiver(run.id, "ACME-DATA-001", 45))
            .await,
    );
    assert_eq!(status, 422, "{}", body.message);
    assert!(
        body.message.contains("more than 30 days"),
        "{}",
        body.message
    );
    let (status, body) = api_error(
        bob.waiver_create("app", &waiver(run.id, "ACME-DATA-001", 7))
            .await,
    );
    assert_eq!(status, 403, "{}", body.message);
    let mut bad = waiver(run.id, "ACME-DATA-001", 7);
    bad.address = "terraform_data.nowhere".into();
    let (status, _) = api_error(carol.waiver_create("app", &bad).await);
    assert_eq!(status, 422);
    assert!(carol.waivers("app", false).await.unwrap().is_empty());

    // A valid waiver: the retry's prod policy passes and the finding shows as waived.
    let granted = carol
        .waiver_create("app", &waiver(run.id, "ACME-DATA-001", 7))
        .await
        .unwrap();
    assert_eq!(granted.resource_type.as_deref(), Some("terraform_data"));
    assert_eq!(granted.created_by, "carol");
    let listed = bob.waivers("app", false).await.unwrap();
    assert_eq!(listed.len(), 1);
    let retry = bob.runs_retry(run.id).await.unwrap();
    let retried = server
        .wait_status(retry.id, "WaitingForApproval", RUN_TIMEOUT)
        .await;
    assert_eq!(stage(&retried, "prod", "policy").status, "Succeeded");
    let view = carol.approval_view(retry.id, "prod").await.unwrap();
    let policy = view.policy.expect("report");
    assert!(!policy.blocked);
    assert!(policy.findings[0].waived && !policy.findings[0].blocking);
    assert_eq!(policy.findings[0].waived_by.as_deref(), Some("carol"));

    // Waivers are audited, and revoked once.
    let audit = server
        .call("GET", "/api/v1/audit?action=policy.waive", None)
        .await;
    let outcomes: Vec<&str> = audit.json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert!(outcomes.contains(&"ok"), "{outcomes:?}");
    assert!(outcomes.contains(&"denied"), "{outcomes:?}");
    let revoked = carol.waiver_revoke(granted.id).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    let (status, _) = api_error(carol.waiver_revoke(granted.id).await);
    assert_eq!(status, 409);
    assert!(bob.waivers("app", false).await.unwrap().is_empty());
    assert_eq!(bob.waivers("app", true).await.unwrap().len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_come_from_the_deploy_branch_and_broken_ones_name_the_file() {
    let mut server = TestServer::start().await;
    let prod_only = "version: 1\nname: app\nsource: { branches: [main] }\nterraform: { dir: . }\nenvironments:\n  - name: prod\n    auto_apply: true\n";
    let path = server
        .project(
            "app",
            &[
                ("ferry.yaml", prod_only),
                ("main.tf", MAIN_TF),
                ("policy/data.rego", POLICY),
            ],
        )
        .await
        .path()
        .to_owned();
    let write = |rel: &str, text: &str| std::fs::write(path.join(rel), text).unwrap();
    // A branch that empties the rule out: the gate still uses main's policy, and flags it.
    git(&path, &["checkout", "-q", "-b", "feature"]);
    write(
        "policy/data.rego",
        "package ferry.data\n\ndeny contains \"never\" if { false }\n",
    );
    git(&path, &["commit", "-q", "-am", "weaken the policy"]);
    git(&path, &["checkout", "-q", "main"]);
    let bob = server.user_with("bob", &["operator", "approver"]).await;
    let run = bob
        .runs_create(
            "app",
            &RunCreate {
                git_ref: Some("feature".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let detail = server.wait_status(run.id, "Failed", RUN_TIMEOUT).await;
    let reason = detail.run.reason.clone().unwrap_or_default();
    assert!(
        reason.starts_with("POLICY_VIOLATION:") && reason.contains("ACME-DATA-001"),
        "{reason}"
    );
    assert!(reason.contains("FERRY-POLICY-001"), "{reason}");
    let view = bob.approval_view(run.id, "prod").await.unwrap();
    let rules: Vec<String> = view
        .policy
        .expect("report")
        .findings
        .iter()
        .map(|f| f.rule.clone())
        .collect();
    assert!(rules.contains(&"FERRY-POLICY-001".to_owned()), "{rules:?}");

    // A syntax error on the deploy branch fails the stage as broken, naming file:line.
    write(
        "policy/broken.rego",
        "package ferry.broken\n\ndeny contains f if {\n  f := \n",
    );
    git(&path, &["add", "-A"]);
    git(&path, &["commit", "-q", "-m", "broken policy"]);
    let run = bob.runs_create("app", &RunCreate::default()).await.unwrap();
    let detail = server.wait_status(run.id, "Failed", RUN_TIMEOUT).await;
    let reason = detail.run.reason.clone().unwrap_or_default();
    assert!(reason.contains("policy/broken.rego:"), "{reason}");
    assert!(!reason.starts_with("POLICY_VIOLATION"), "{reason}");
    assert_eq!(stage(&detail, "prod", "policy").status, "Failed");
    let events = server
        .call(
            "GET",
            &format!("/api/v1/events?run={}&type=POLICY_VIOLATION", run.id),
            None,
        )
        .await;
    assert_eq!(events.json["events"], json!([]));
    server.stop().await;
}
