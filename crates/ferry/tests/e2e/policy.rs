//! `ferry policy` offline: a real Terraform plan (`terraform_data`, no provider download)
//! judged by a custom Rego rule, blocking at prod's level and passing at dev's; the built-in
//! pack on a hand-written AWS plan fixture; `ferry policy test`; and the bad inputs the
//! policy issue names (invalid JSON, unsupported format version, Rego syntax error), each
//! with its exit code. Against a server: a run blocked by the deploy branch's policy, shown
//! by `ferry show` and `ferry approvals`, waived with `ferry policy waive` (refused to the
//! run's triggerer), listed, retried past, and revoked with `ferry policy unwaive`.

use std::path::Path;
use std::process::Command;

use ferry_test_support::terraform_dir;

use crate::util::{ferry, repo_with, Server};

const POLICY: &str = r#"package ferry.tfdata

rules := {"ACME-DATA-001": {"severity": "high", "title": "no forbidden terraform_data"}}

deny contains f if {
    some rc in input.plan.resource_changes
    rc.type == "terraform_data"
    rc.change.after.input == "forbidden"
    f := {
        "rule": "ACME-DATA-001",
        "address": rc.address,
        "severity": "high",
        "message": sprintf("%s has a forbidden input in %s", [rc.address, input.context.environment]),
    }
}
"#;

const POLICY_TEST: &str = r#"package ferry.tfdata_test

import data.ferry.tfdata

test_forbidden_is_denied if {
    count(tfdata.deny) == 1 with input as {"context": {"environment": "x"}, "plan": {"resource_changes": [
        {"type": "terraform_data", "address": "terraform_data.a", "change": {"after": {"input": "forbidden"}}}]}}
}

test_allowed_passes if {
    count(tfdata.deny) == 0 with input as {"context": {}, "plan": {"resource_changes": [
        {"type": "terraform_data", "address": "terraform_data.a", "change": {"after": {"input": "fine"}}}]}}
}
"#;

fn terraform(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new(terraform_dir().join("terraform"))
        .args(args)
        .current_dir(dir)
        .env("TF_IN_AUTOMATION", "1")
        .env("CHECKPOINT_DISABLE", "1")
        .output()
        .expect("run terraform");
    assert!(
        out.status.success(),
        "terraform {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn custom_rego_rule_blocks_in_prod_and_passes_in_dev() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(
        root.join("main.tf"),
        "resource \"terraform_data\" \"bad\" {\n  input = \"forbidden\"\n}\n\nresource \"terraform_data\" \"follower\" {\n  input = terraform_data.bad.id\n}\n",
    )
    .unwrap();
    std::fs::create_dir(root.join("policy")).unwrap();
    std::fs::write(root.join("policy/data.rego"), POLICY).unwrap();
    std::fs::write(root.join("policy/data_test.rego"), POLICY_TEST).unwrap();
    terraform(root, &["init", "-input=false", "-no-color"]);
    terraform(root, &["plan", "-input=false", "-no-color", "-out=tfplan"]);
    let json = terraform(root, &["show", "-json", "tfplan"]);
    std::fs::write(root.join("plan.json"), json).unwrap();

    // Prod, the last environment: fail_on medium. The Rego finding (high) blocks.
    let out = ferry(
        root,
        &[
            "policy",
            "check",
            "plan.json",
            "--env",
            "prod",
            "--fail-on",
            "medium",
            "--output",
            "json",
        ],
        &[],
    );
    assert_eq!(out.code, 1, "{out:?}");
    let report = out.json();
    let entries = report["entries"].as_array().unwrap();
    let custom: Vec<&serde_json::Value> = entries
        .iter()
        .filter(|e| e["rule"] == "ACME-DATA-001")
        .collect();
    assert_eq!(custom.len(), 1, "{report:#}");
    assert_eq!(custom[0]["address"], "terraform_data.bad");
    assert_eq!(custom[0]["blocking"], true);
    assert_eq!(
        custom[0]["message"],
        "terraform_data.bad has a forbidden input in prod"
    );

    // Dev, the first environment: fail_on critical. The same finding shows but passes.
    let out = ferry(
        root,
        &[
            "policy",
            "check",
            "plan.json",
            "--env",
            "dev",
            "--fail-on",
            "critical",
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("ACME-DATA-001"), "{out:?}");
    assert!(
        out.stdout.contains("0 blocking at fail_on critical"),
        "{out:?}"
    );

    // The policies' own tests.
    let out = ferry(root, &["policy", "test"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("policy tests: 2 passed, 0 failed"),
        "{out:?}"
    );
    std::fs::write(
        root.join("policy/wrong_test.rego"),
        "package ferry.wrong_test\n\ntest_wrong if { 1 == 2 }\n",
    )
    .unwrap();
    let out = ferry(root, &["policy", "test", "policy"], &[]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout
            .contains("FAIL data.ferry.wrong_test.test_wrong (policy/wrong_test.rego:3)"),
        "{out:?}"
    );
}

#[test]
fn builtin_pack_on_a_fixture() {
    let fixtures =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../ferry-policy/test_data/rules/FERRY-CHG-001");
    let args = |extra: &[&str]| {
        let mut a = vec!["policy", "check", "fail.json", "--env", "prod"];
        a.extend_from_slice(extra);
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run = |extra: &[&str]| {
        let a = args(extra);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        ferry(&fixtures, &a, &[])
    };
    let out = run(&["--protected", "--output", "json"]);
    assert_eq!(out.code, 1, "{out:?}");
    let report = out.json();
    let first = &report["entries"][0];
    assert_eq!(first["rule"], "FERRY-CHG-001", "{report:#}");
    assert_eq!(first["severity"], "critical");
    // Not protected: deletes are medium, below the default fail_on (high).
    let out = run(&["--fail-on", "high"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("medium   FERRY-CHG-001"), "{out:?}");
}

#[test]
fn bad_input_exits_2_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let write = |name: &str, text: &str| std::fs::write(root.join(name), text).unwrap();
    write(
        "broken.json",
        "{\n  \"format_version\": \"1.2\",\n  \"resource_changes\": [\n}\n",
    );
    let out = ferry(root, &["policy", "check", "broken.json"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("broken.json: invalid plan JSON at line 4, column 1"),
        "{out:?}"
    );

    write(
        "future.json",
        r#"{"format_version": "2.0", "resource_changes": []}"#,
    );
    let out = ferry(root, &["policy", "check", "future.json"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("unsupported plan format_version `2.0`"),
        "{out:?}"
    );

    write(
        "ok.json",
        r#"{"format_version": "1.2", "resource_changes": []}"#,
    );
    std::fs::create_dir(root.join("rules")).unwrap();
    write(
        "rules/bad.rego",
        "package ferry.bad\n\ndeny contains msg if {\n  msg := \n}\n",
    );
    let out = ferry(
        root,
        &["policy", "check", "ok.json", "--policy-dir", "rules"],
        &[],
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("rules/bad.rego:4:7:"), "{out:?}");
    let out = ferry(
        root,
        &["policy", "check", "ok.json", "--fail-on", "severe"],
        &[],
    );
    assert_eq!(out.code, 2, "{out:?}");
}

const SERVER_PIPELINE: &str = "version: 1\nname: app\nterraform: { dir: . }\nenvironments:\n  - name: prod\n    auto_apply: true\n";
const SERVER_TF: &str = "resource \"terraform_data\" \"bad\" {\n  input = \"forbidden\"\n}\n";

#[test]
fn a_blocked_run_is_shown_waived_retried_and_the_waiver_revoked() {
    let mut server = Server::start();
    let repo = repo_with(&[
        ("ferry.yaml", SERVER_PIPELINE),
        ("main.tf", SERVER_TF),
        ("policy/data.rego", POLICY),
    ]);
    server.add_project("app", &repo);
    let carol = server.create_token("carol");
    let as_carol = [("FERRY_TOKEN", carol.as_str())];
    let run = server.trigger("app", &[]);
    let id = run.to_string();
    let detail = server.wait_status(run, "Failed", std::time::Duration::from_secs(120));
    assert!(
        detail["reason"]
            .as_str()
            .unwrap_or("")
            .starts_with("POLICY_VIOLATION: 1 finding at or above high in prod: ACME-DATA-001 on terraform_data.bad"),
        "{detail}"
    );
    let shown = server.cli(&["show", &id]).ok();
    assert!(
        shown
            .stdout
            .contains("policy prod: 1 finding(s), 1 blocking, 0 waived (fail_on high)"),
        "{shown:?}"
    );
    let view = server.cli(&["approvals", &id, "--env", "prod"]).ok();
    assert!(view.stdout.contains("BLOCKED"), "{view:?}");
    assert!(
        view.stdout.contains("BLOCKS high     ACME-DATA-001"),
        "{view:?}"
    );

    let waive = |env: &[(&str, &str)]| {
        server.cli_env(
            &[
                "policy",
                "waive",
                &id,
                "--rule",
                "ACME-DATA-001",
                "--address",
                "terraform_data.bad",
                "--env",
                "prod",
                "-m",
                "known fixture",
                "--expires-in",
                "2d",
            ],
            env,
        )
    };
    // The admin triggered the run: denied (exit 1).
    let own = waive(&[]);
    assert_eq!(own.code, 1, "{own:?}");
    assert!(own.stderr.contains("denied"), "{own:?}");
    let granted = waive(&as_carol).ok();
    assert!(
        granted
            .stdout
            .contains("waiver 1 granted: ACME-DATA-001 on terraform_data.bad in prod"),
        "{granted:?}"
    );
    let list = server.cli(&["policy", "waivers", "app"]).ok();
    assert!(
        list.stdout.contains("ACME-DATA-001") && list.stdout.contains("carol"),
        "{list:?}"
    );

    let retry = server.cli(&["retry", &id, "--output", "json"]).ok();
    let retried = retry.json()["id"].as_i64().expect("retry id");
    let detail = server.wait_status(retried, "Succeeded", std::time::Duration::from_secs(120));
    assert_eq!(
        detail["policy"][0]["findings"][0]["waived"], true,
        "{detail}"
    );

    let revoked = server.cli(&["policy", "unwaive", "1"]).ok();
    assert!(revoked.stdout.contains("waiver 1 revoked"), "{revoked:?}");
    let list = server.cli(&["policy", "waivers", "app"]).ok();
    assert!(list.stdout.contains("no waivers in app"), "{list:?}");
    let all = server.cli(&["policy", "waivers", "app", "--all"]).ok();
    assert!(all.stdout.contains("revoked"), "{all:?}");
    server.stop();
}
