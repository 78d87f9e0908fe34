//! `ferry state …` against a real server whose pipeline wrote the state through the built-in
//! backend: list, versions, show, pull (exact bytes) and rollback, text and JSON output.

use std::time::Duration;

use ferry_test_support::{terraform_data_config, MINIMAL_FERRY_YAML};

use crate::util::{repo_with, Server};

#[test]
fn the_state_commands_list_show_pull_and_roll_back_a_pipelines_state() {
    let server = Server::start();
    let repo = repo_with(&[
        ("ferry.yaml", MINIMAL_FERRY_YAML),
        ("main.tf", &terraform_data_config(2)),
    ]);
    server.add_project("net", &repo);
    let run = server.trigger("net", &[]);
    server.wait_status(run, "Succeeded", Duration::from_secs(60));

    let out = server.cli(&["state", "list"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("net/default"), "{out:?}");
    assert!(out.stdout.contains("unlocked"), "{out:?}");
    let out = server.cli(&["--output", "json", "state", "list"]);
    assert_eq!(out.code, 0, "{out:?}");
    let states: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let current = states[0]["current"]["number"].as_i64().unwrap();
    let serial = states[0]["current"]["serial"].as_i64().unwrap();

    let out = server.cli(&["--output", "json", "state", "versions", "net/default"]);
    assert_eq!(out.code, 0, "{out:?}");
    let versions: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(versions[0]["number"].as_i64().unwrap(), current);

    let out = server.cli(&["state", "show", "net/default"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("terraform_data.r"), "{out:?}");
    assert!(out.stdout.contains("2 instance(s)"), "{out:?}");
    assert!(
        !out.stdout.contains("r-0"),
        "values must never be shown: {out:?}"
    );

    let out = server.cli(&["state", "pull", "net/default"]);
    assert_eq!(out.code, 0, "{out:?}");
    let pulled: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(pulled["serial"].as_i64().unwrap(), serial);
    assert!(out.stdout.contains("r-0"));

    let first = versions.as_array().unwrap().last().unwrap()["number"]
        .as_i64()
        .unwrap();
    let out = server.cli(&[
        "--output",
        "json",
        "state",
        "rollback",
        "net/default",
        "--to-version",
        &first.to_string(),
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let rolled: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(rolled["serial"].as_i64().unwrap(), serial + 1);
    assert_eq!(rolled["number"].as_i64().unwrap(), current + 1);

    let out = server.cli(&["state", "versions", "net/default"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.lines().count() >= 3, "{out:?}");

    // Retention from the CLI: keep only the newest version; the older ones are pruned at once.
    let out = server.cli(&[
        "state",
        "retention",
        "net/default",
        "--days",
        "0",
        "--keep",
        "1",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("newest 1"), "{out:?}");
    let out = server.cli(&["--output", "json", "state", "versions", "net/default"]);
    let versions: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let versions = versions.as_array().unwrap();
    let kept: Vec<_> = versions.iter().filter(|v| v["pruned"] != true).collect();
    assert_eq!(kept.len(), 1, "{versions:#?}");
    assert_eq!(
        kept[0]["number"].as_i64().unwrap(),
        current + 1,
        "the current version is never pruned"
    );

    // A malformed address is a usage error, not a request.
    let out = server.cli(&["state", "show", "net"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("PROJECT/ENVIRONMENT"), "{out:?}");
}

/// Raw state holds secret values in clear: operators (what Terraform needs) and admins may
/// read it, viewers and approvers may not, on all three surfaces — the backend's `GET`, the
/// API's `…/raw` and `ferry state pull`.
#[test]
fn raw_state_is_for_operators_and_admins_on_every_surface() {
    let server = Server::start();
    let repo = repo_with(&[
        ("ferry.yaml", MINIMAL_FERRY_YAML),
        ("main.tf", &terraform_data_config(1)),
    ]);
    server.add_project("net", &repo);
    let run = server.trigger("net", &[]);
    server.wait_status(run, "Succeeded", Duration::from_secs(60));
    let token = |name: &str, scope: Option<&str>| {
        let mut args = vec!["token", "create", "--name", name];
        if let Some(scope) = scope {
            args.extend(["--scope", scope]);
        }
        server.cli(&args).ok().stdout.trim().to_owned()
    };
    let admin = std::fs::read_to_string(server.data.join("admin.token")).unwrap();
    let people = [
        ("viewer", token("vera", Some("viewer")), false),
        ("approver", token("abe", None), false),
        ("operator", token("otto", Some("operator")), true),
        ("admin", admin.trim().to_owned(), true),
    ];
    let http = reqwest::blocking::Client::new();
    for (role, secret, allowed) in &people {
        let backend = http
            .get(format!("{}/tf/state/net/default", server.url))
            .basic_auth("x", Some(secret))
            .send()
            .unwrap();
        let api = http
            .get(format!("{}/api/v1/states/net/default/raw", server.url))
            .bearer_auth(secret)
            .send()
            .unwrap();
        let cli = server.cli_env(
            &["state", "pull", "net/default"],
            &[("FERRY_TOKEN", secret)],
        );
        if *allowed {
            assert_eq!(backend.status(), 200, "{role}: backend GET");
            assert_eq!(api.status(), 200, "{role}: API raw");
            assert_eq!(cli.code, 0, "{role}: {cli:?}");
            assert!(cli.stdout.contains("\"lineage\""), "{role}: {cli:?}");
        } else {
            assert_eq!(backend.status(), 403, "{role}: backend GET");
            assert_eq!(api.status(), 403, "{role}: API raw");
            let error: serde_json::Value = api.json().unwrap();
            assert!(
                error["message"].as_str().unwrap().contains("operator"),
                "{role}: {error}"
            );
            assert_ne!(cli.code, 0, "{role}: {cli:?}");
            assert!(!cli.stdout.contains("lineage"), "{role}: {cli:?}");
        }
    }
}
