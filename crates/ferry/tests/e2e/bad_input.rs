//! Bad input through the CLI: malformed `ferry.yaml` (offline and in a repository), unknown
//! project, ref and run, a server without Terraform, revoked and missing tokens. Each must
//! give a clear message and the documented exit code, and create nothing.

use std::time::Duration;

use ferry_test_support::{path_without_terraform, terraform_data_config, MINIMAL_FERRY_YAML};

use crate::util::{ferry, repo_with, Server};

#[test]
fn validate_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();

    write(
        "typo.yaml",
        "version: 1\nname: broken\nterraform: { dir: . }\nenviroments:\n  - name: dev\n",
    );
    let out = ferry(dir.path(), &["validate", "typo.yaml"], &[]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("typo.yaml:4:1:"),
        "file:line:col of the unknown key: {out:?}"
    );
    assert!(
        out.stderr.contains("environments"),
        "did-you-mean hint: {out:?}"
    );

    write(
        "syntax.yaml",
        "version: 1\nname: broken\nterraform: { dir: .\n",
    );
    let out = ferry(dir.path(), &["validate", "syntax.yaml"], &[]);
    assert_eq!(out.code, 1, "{out:?}");
    let first = out.stderr.lines().next().unwrap_or_default();
    let mut parts = first.splitn(4, ':');
    assert_eq!(parts.next(), Some("syntax.yaml"), "{out:?}");
    let line: u32 = parts
        .next()
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("no line number: {out:?}"));
    let column: u32 = parts
        .next()
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no column: {out:?}"));
    assert!(line >= 3 && column >= 1, "{out:?}");

    write("bad-value.yaml", "version: 1\nname: bad\nterraform: { dir: . }\nenvironments:\n  - name: dev\n    auto_apply: sometimes\n");
    let out = ferry(
        dir.path(),
        &["validate", "bad-value.yaml", "--output", "json"],
        &[],
    );
    assert_eq!(out.code, 1, "{out:?}");
    let json = out.json();
    assert_eq!(json["valid"], false);
    assert_eq!(json["diagnostics"][0]["line"], 6, "{json:#}");

    write("ferry.yaml", MINIMAL_FERRY_YAML);
    let out = ferry(dir.path(), &["validate"], &[]).ok();
    assert!(
        out.stdout.contains("is valid") && out.stdout.contains("default (auto-apply)"),
        "{out:?}"
    );

    let out = ferry(dir.path(), &["validate", "missing.yaml"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("missing.yaml"), "{out:?}");
}

#[test]
fn unknown_project_ref_and_run_and_invalid_pipeline_are_clear_errors() {
    let server = Server::start();
    let repo = repo_with(&[
        ("ferry.yaml", MINIMAL_FERRY_YAML),
        ("main.tf", &terraform_data_config(1)),
    ]);
    server.add_project("tiny", &repo);

    let out = server.cli(&["run", "no-such-project"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("no-such-project") && out.stderr.contains("not found"),
        "{out:?}"
    );

    let out = server.cli(&["run", "tiny", "--ref", "no-such-branch"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("no-such-branch"), "{out:?}");

    let out = server.cli(&["run", "tiny", "--ref", "--upload-pack=evil"]);
    assert_ne!(out.code, 0, "{out:?}");

    let out = server.cli(&["show", "99999"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("not found") && out.stderr.contains("99999"),
        "{out:?}"
    );
    let out = server.cli(&["logs", "99999"]);
    assert_eq!(out.code, 2, "{out:?}");
    let out = server.cli(&["cancel", "99999"]);
    assert_eq!(out.code, 2, "{out:?}");

    // A commit whose ferry.yaml is broken: the run is refused with the diagnostics.
    repo.write(
        "ferry.yaml",
        "version: 1\nname: tiny\nterraform: { dir: . }\nstages:\n  tset: [\"true\"]\n",
    );
    repo.commit("typo");
    let out = server.cli(&["run", "tiny"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("ferry.yaml:5:3"),
        "the diagnostics name file:line:col: {out:?}"
    );

    let runs = server.cli(&["runs", "--output", "json"]).ok().json();
    assert_eq!(
        runs["runs"].as_array().map(Vec::len),
        Some(0),
        "no run was created: {runs:#}"
    );
}

#[test]
fn a_server_without_terraform_refuses_runs_before_creating_them() {
    let server = Server::start_with(path_without_terraform(), &[]);
    let repo = repo_with(&[
        ("ferry.yaml", MINIMAL_FERRY_YAML),
        ("main.tf", &terraform_data_config(1)),
    ]);
    server.add_project("tiny", &repo);

    let out = server.cli(&["run", "tiny", "--wait"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("terraform") && out.stderr.contains("not found"),
        "{out:?}"
    );

    let runs = server.cli(&["runs", "--output", "json"]).ok().json();
    assert_eq!(
        runs["runs"].as_array().map(Vec::len),
        Some(0),
        "no run was created: {runs:#}"
    );
}

#[test]
fn revoked_and_missing_tokens_are_refused() {
    let server = Server::start();
    let frank = server.create_token("frank");
    let out = server.cli_env(&["runs"], &[("FERRY_TOKEN", &frank)]).ok();
    assert!(out.stdout.contains("STATUS"), "{out:?}");

    server.cli(&["token", "revoke", "frank"]).ok();
    let out = server.cli_env(&["runs"], &[("FERRY_TOKEN", &frank)]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("token"), "{out:?}");
    let status = reqwest::blocking::Client::new()
        .get(format!("{}/api/v1/runs", server.url))
        .bearer_auth(&frank)
        .timeout(Duration::from_secs(10))
        .send()
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 401);

    // A made-up token of the right shape, and garbage.
    for bad in [
        "ferry_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "not-a-token",
    ] {
        let out = server.cli_env(&["runs"], &[("FERRY_TOKEN", bad)]);
        assert_eq!(out.code, 2, "{bad}: {out:?}");
        assert!(out.stderr.contains("token"), "{out:?}");
    }

    // No token anywhere: a data dir without admin.token and no FERRY_TOKEN.
    let empty = tempfile::tempdir().unwrap();
    let out = ferry(
        empty.path(),
        &[
            "--data-dir",
            &empty.path().display().to_string(),
            "--server",
            &server.url,
            "runs",
        ],
        &[],
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("no token") && out.stderr.contains("FERRY_TOKEN"),
        "{out:?}"
    );

    // Revoking does not touch other tokens.
    server.cli(&["runs"]).ok();
}
