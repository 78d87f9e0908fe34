//! Bad input and hostile output through the API: every client mistake answers a 4xx with
//! the JSON `{code, message}` body and a stable code, never a 500 and never a run; tokens
//! are enforced (and refusals audited); and a command printing a 100 MB line neither fails
//! the run nor blows up the server's memory.

use std::time::Duration;

use ferry_api::{ProjectCreate, RunCreate, TokenCreate};
use ferry_secrets::{KeySource, MasterKey};
use ferry_test_support::{terraform_data_config, MINIMAL_FERRY_YAML};
use serde_json::json;

use crate::common::{api_error, command_action, TestServer};

fn run_create(git_ref: Option<&str>, pipeline: Option<&str>) -> RunCreate {
    RunCreate {
        git_ref: git_ref.map(str::to_owned),
        pipeline: pipeline.map(str::to_owned),
        ..Default::default()
    }
}

async fn assert_no_runs(server: &TestServer) {
    let page = server.admin.runs_list(None, None, 500, None).await.unwrap();
    assert!(
        page.runs.is_empty(),
        "a refused request created a run: {:?}",
        page.runs
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_json_4xx_errors() {
    let mut server = TestServer::start().await;
    let repo = server
        .project(
            "one",
            &[
                ("ferry.yaml", MINIMAL_FERRY_YAML),
                ("main.tf", &terraform_data_config(1)),
            ],
        )
        .await;
    let repo_path = repo.path().to_string_lossy().into_owned();

    // Bodies.
    server
        .call_raw(
            "POST",
            "/api/v1/projects",
            "application/json",
            "{\"name\": \"x\",",
        )
        .await
        .assert_error(400, "invalid_body");
    server
        .call_raw(
            "POST",
            "/api/v1/projects",
            "text/plain",
            "{\"name\":\"x\",\"repo\":\"/tmp\"}",
        )
        .await
        .assert_error(415, "unsupported_media_type");
    server
        .call_raw(
            "POST",
            "/api/v1/projects/one/runs",
            "application/json",
            "[1, 2]",
        )
        .await
        .assert_error(422, "invalid_body");
    let unknown = server
        .call(
            "POST",
            "/api/v1/projects/one/runs",
            Some(json!({"ref": "main", "branch": "main"})),
        )
        .await;
    let body = unknown.assert_error(422, "invalid_body");
    assert!(
        body.message.contains("branch"),
        "the message names the unknown field: {body:?}"
    );
    server
        .call("POST", "/api/v1/projects", Some(json!({"name": "x"})))
        .await
        .assert_error(422, "invalid_body");
    // Authorisation resolves the run (and its project) before the body is judged.
    server
        .call(
            "POST",
            "/api/v1/runs/1/approvals",
            Some(json!({"environment": "prod", "decision": "maybe", "comment": "hm"})),
        )
        .await
        .assert_error(404, "not_found");
    server
        .call(
            "POST",
            "/api/v1/runs/x/approvals",
            Some(json!({"environment": "prod", "decision": "approve", "comment": "hm"})),
        )
        .await
        .assert_error(400, "invalid_path");

    // Projects.
    for name in ["Bad Name", "-x", "", "a/b", &"x".repeat(64)] {
        let answer = server
            .call(
                "POST",
                "/api/v1/projects",
                Some(json!({"name": name, "repo": repo_path})),
            )
            .await;
        answer.assert_error(422, "invalid_name");
    }
    let missing = format!("{}/no-such-repo", repo_path);
    let body = server
        .call(
            "POST",
            "/api/v1/projects",
            Some(json!({"name": "gone", "repo": missing})),
        )
        .await
        .assert_error(422, "repo_unreachable");
    assert!(body.message.contains("no-such-repo"), "{body:?}");
    // Transports git is not allowed to use are refused by git at once: `fd::3` used to leave
    // `git remote-fd` waiting forever, `ext::` runs a command.
    let started = std::time::Instant::now();
    for (repo, transport) in [
        ("fd::3", "fd"),
        ("ext::sh -c id", "ext"),
        ("git://127.0.0.1:9/infra.git", "git"),
    ] {
        let body = server
            .call(
                "POST",
                "/api/v1/projects",
                Some(json!({"name": "transport", "repo": repo})),
            )
            .await
            .assert_error(422, "repo_unreachable");
        assert!(
            body.message
                .contains(&format!("transport '{transport}' not allowed")),
            "{repo}: {body:?}"
        );
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    // Ferry's own mirrors (another project's code) are not a repository for a new project.
    let own_mirror = server.data_dir().join("repos");
    std::fs::create_dir_all(&own_mirror).unwrap();
    let body = server
        .call(
            "POST",
            "/api/v1/projects",
            Some(json!({"name": "inside", "repo": own_mirror.display().to_string()})),
        )
        .await
        .assert_error(422, "repo_unreachable");
    assert!(
        body.message.contains("inside Ferry's own directory"),
        "{body:?}"
    );
    // A password in the address would be stored, listed and audited: refused, and not echoed.
    let body = server
        .call(
            "POST",
            "/api/v1/projects",
            Some(json!({"name": "leaky", "repo": "https://bob:hunter2@127.0.0.1:1/infra.git"})),
        )
        .await
        .assert_error(422, "credentials_in_url");
    assert!(!body.message.contains("hunter2"), "{body:?}");
    let (status, body) = api_error(
        server
            .admin
            .projects_create(&ProjectCreate {
                name: "one".into(),
                repo: repo_path.clone(),
                ..Default::default()
            })
            .await,
    );
    assert_eq!(
        (status, body.code.as_str()),
        (409, "already_exists"),
        "{body:?}"
    );
    let projects = server.admin.projects_list().await.unwrap();
    assert_eq!(
        projects.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["one"],
        "refused projects were stored"
    );

    // Unknown project, ref, pipeline.
    server
        .call("GET", "/api/v1/projects/nope", None)
        .await
        .assert_error(404, "not_found");
    server
        .call("GET", "/api/v1/projects/nope/pipelines", None)
        .await
        .assert_error(404, "not_found");
    let (status, body) = api_error(
        server
            .admin
            .runs_create("nope", &run_create(None, None))
            .await,
    );
    assert_eq!((status, body.code.as_str()), (404, "not_found"), "{body:?}");
    let (status, body) = api_error(
        server
            .admin
            .runs_create("one", &run_create(Some("no-such-branch"), None))
            .await,
    );
    assert_eq!(
        (status, body.code.as_str()),
        (404, "ref_not_found"),
        "{body:?}"
    );
    assert!(body.message.contains("no-such-branch"));
    for bad_ref in ["--upload-pack=x", "-x", "main branch", "a\nb"] {
        let (status, body) = api_error(
            server
                .admin
                .runs_create("one", &run_create(Some(bad_ref), None))
                .await,
        );
        assert_eq!(
            (status, body.code.as_str()),
            (400, "invalid_ref"),
            "ref {bad_ref:?}: {body:?}"
        );
        let (status, body) = api_error(server.admin.pipelines_list("one", Some(bad_ref)).await);
        assert_eq!(
            (status, body.code.as_str()),
            (400, "invalid_ref"),
            "ref {bad_ref:?}: {body:?}"
        );
    }
    let (status, body) = api_error(
        server
            .admin
            .runs_create("one", &run_create(None, Some("other")))
            .await,
    );
    assert_eq!(
        (status, body.code.as_str()),
        (404, "pipeline_not_found"),
        "{body:?}"
    );
    assert!(
        body.message.contains("tiny"),
        "the message lists the available pipelines: {body:?}"
    );

    // Runs.
    server
        .call("GET", "/api/v1/runs/424242", None)
        .await
        .assert_error(404, "not_found");
    server
        .call("POST", "/api/v1/runs/424242/cancel", None)
        .await
        .assert_error(404, "not_found");
    server
        .call("GET", "/api/v1/runs/424242/logs", None)
        .await
        .assert_error(404, "not_found");
    server
        .call("GET", "/api/v1/runs/424242/logs/stream", None)
        .await
        .assert_error(404, "not_found");
    server
        .call("GET", "/api/v1/runs/abc", None)
        .await
        .assert_error(400, "invalid_path");
    server
        .call("GET", "/api/v1/runs/abc/logs", None)
        .await
        .assert_error(400, "invalid_path");
    server
        .call("GET", "/api/v1/runs?status=Bogus", None)
        .await
        .assert_error(400, "bad_request");
    server
        .call("GET", "/api/v1/runs?limit=0", None)
        .await
        .assert_error(400, "bad_request");
    server
        .call("GET", "/api/v1/runs?limit=501", None)
        .await
        .assert_error(400, "bad_request");
    server
        .call("GET", "/api/v1/runs?limit=ten", None)
        .await
        .assert_error(400, "invalid_query");
    server
        .call("GET", "/api/v1/runs?colour=red", None)
        .await
        .assert_error(400, "invalid_query");

    // Every body is a JSON object: serde would read a struct from an array of its fields.
    for (method, path) in [
        ("PATCH", "/api/v1/projects/one"),
        ("POST", "/api/v1/tokens"),
        ("PUT", "/api/v1/states/one/dev/retention"),
    ] {
        server
            .call_raw(method, path, "application/json", "[]")
            .await
            .assert_error(422, "invalid_body");
    }
    // An environment scope without its project is well-formed but names nothing.
    server
        .call(
            "PUT",
            "/api/v1/params/region?env=dev",
            Some(json!({"value": "eu"})),
        )
        .await
        .assert_error(422, "invalid_scope");
    // Event types are matched exactly; an unknown one is named.
    let body = server
        .call(
            "GET",
            "/api/v1/events?type=PIPELINE_EXECUTION_FAILED,%20x",
            None,
        )
        .await
        .assert_error(400, "bad_request");
    assert!(body.message.contains("` x`"), "{body:?}");

    // Routes and methods.
    let answer = server.call("GET", "/api/v1/nothing-here", None).await;
    answer.assert_error(404, "not_found");
    server
        .call_as(None, "GET", "/no/such/path", None)
        .await
        .assert_error(404, "not_found");
    server
        .call("DELETE", "/api/v1/projects", None)
        .await
        .assert_error(405, "method_not_allowed");
    server
        .call("PUT", "/api/v1/runs/1", None)
        .await
        .assert_error(405, "method_not_allowed");
    server
        .call("POST", "/healthz", None)
        .await
        .assert_error(405, "method_not_allowed");

    assert_no_runs(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_that_cannot_run_is_refused_before_a_run_exists() {
    let mut server = TestServer::start().await;
    let tf = terraform_data_config(1);
    let repo = server
        .project("p", &[("ferry.yaml", MINIMAL_FERRY_YAML), ("main.tf", &tf)])
        .await;
    // One branch per way a pipeline file can be unusable at a commit.
    let branches = [
        ("bad-yaml", "version: 1\nname: tiny\nterraform: { dir: . }\nenvironments:\n  - name: prod\n    auto_aply: true\n"),
        ("secret", "version: 1\nname: tiny\nterraform: { dir: . }\nsecrets:\n  - { name: db_password, as: TF_VAR_db_password }\n"),
        ("no-binary", "version: 1\nname: tiny\nterraform: { dir: ., binary: no-such-tf }\n"),
        ("old-tf", "version: 1\nname: tiny\nterraform: { dir: ., version: \">= 99\" }\n"),
    ];
    for (branch, yaml) in branches {
        repo.branch(branch);
        repo.write("ferry.yaml", yaml);
        repo.commit(branch);
    }
    repo.branch("two");
    repo.write("ferry.yaml", MINIMAL_FERRY_YAML);
    repo.write(
        "other/ferry.yaml",
        "version: 1\nname: other\nterraform: { dir: . }\n",
    );
    repo.commit("two pipelines");

    let trigger = async |r: &str| {
        server
            .admin
            .runs_create("p", &run_create(Some(r), None))
            .await
    };
    let (status, body) = api_error(trigger("bad-yaml").await);
    assert_eq!(
        (status, body.code.as_str()),
        (422, "invalid_pipeline"),
        "{body:?}"
    );
    assert!(
        body.details.iter().any(|d| d.starts_with("ferry.yaml:6:5")
            && d.contains("auto_aply")
            && d.contains("auto_apply")),
        "details must locate the error as ferry.yaml:LINE:COL with a hint: {:?}",
        body.details
    );
    // The pipeline list shows the same diagnostics instead of failing.
    let list = server
        .admin
        .pipelines_list("p", Some("bad-yaml"))
        .await
        .unwrap();
    assert_eq!(list.pipelines.len(), 1);
    assert!(
        list.pipelines[0]
            .errors
            .iter()
            .any(|e| e.starts_with("ferry.yaml:6:5")),
        "{list:?}"
    );

    let (status, body) = api_error(trigger("secret").await);
    assert_eq!(
        (status, body.code.as_str()),
        (422, "missing_secret"),
        "{body:?}"
    );
    assert!(body.message.contains("db_password"));
    let (status, body) = api_error(trigger("no-binary").await);
    assert_eq!(
        (status, body.code.as_str()),
        (422, "terraform_unavailable"),
        "{body:?}"
    );
    assert!(body.message.contains("no-such-tf"), "{body:?}");
    let (status, body) = api_error(trigger("old-tf").await);
    assert_eq!(
        (status, body.code.as_str()),
        (422, "terraform_unavailable"),
        "{body:?}"
    );
    assert!(body.message.contains(">= 99"), "{body:?}");

    let (status, body) = api_error(trigger("two").await);
    assert_eq!(
        (status, body.code.as_str()),
        (422, "pipeline_required"),
        "{body:?}"
    );
    assert!(
        body.message.contains("tiny") && body.message.contains("other"),
        "{body:?}"
    );
    let list = server.admin.pipelines_list("p", Some("two")).await.unwrap();
    let mut names: Vec<&str> = list.pipelines.iter().map(|p| p.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["other", "tiny"]);
    assert_no_runs(&server).await;

    // Naming one of the two works (and is not run here beyond its creation).
    let run = server
        .admin
        .runs_create("p", &run_create(Some("two"), Some("other")))
        .await
        .unwrap();
    assert_eq!(run.pipeline, "other");
    server.admin.runs_cancel(run.id).await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_required_and_only_admins_manage_them() {
    let server = TestServer::start().await;
    let assert_401 = |answer: crate::common::Answer| {
        answer.assert_error(401, "unauthorized");
        let challenge = answer
            .headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(
            challenge.starts_with("Bearer"),
            "WWW-Authenticate: {challenge:?}"
        );
    };
    assert_401(server.call_as(None, "GET", "/api/v1/whoami", None).await);
    assert_401(server.call_as(None, "GET", "/api/v1/runs", None).await);
    assert_401(
        server
            .call_as(
                None,
                "POST",
                "/api/v1/projects",
                Some(json!({"name": "x", "repo": "/tmp"})),
            )
            .await,
    );
    assert_401(
        server
            .call_as(Some("garbage"), "GET", "/api/v1/whoami", None)
            .await,
    );
    // Well-formed but unknown: one character of the admin token changed.
    let mut forged = server.admin_token().to_owned();
    let last = forged.pop().unwrap();
    forged.push(if last == 'a' { 'b' } else { 'a' });
    assert_401(
        server
            .call_as(Some(&forged), "GET", "/api/v1/whoami", None)
            .await,
    );
    let basic = server
        .http
        .get(format!("{}/api/v1/whoami", server.url))
        .basic_auth("admin", Some(server.admin_token()))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);

    let me = server.admin.whoami().await.unwrap();
    assert_eq!((me.name.as_str(), me.admin), ("admin", true));

    // A non-admin identity works, but may not manage tokens; the refusal is audited.
    let alice = server.user("alice").await;
    let me = alice.whoami().await.unwrap();
    assert_eq!((me.name.as_str(), me.admin), ("alice", false));
    let (status, body) = api_error(
        alice
            .tokens_create(&TokenCreate {
                name: "mallory".into(),
                admin: true,
                ..Default::default()
            })
            .await,
    );
    assert_eq!((status, body.code.as_str()), (403, "forbidden"), "{body:?}");
    let (status, _) = api_error(alice.tokens_list().await);
    assert_eq!(status, 403);
    let (status, _) = api_error(alice.tokens_revoke("admin").await);
    assert_eq!(status, 403);
    let tokens = server.admin.tokens_list().await.unwrap();
    let mut names: Vec<&str> = tokens.iter().map(|t| t.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["admin", "alice"], "the refused token exists");
    let admin_hint = &tokens.iter().find(|t| t.name == "admin").unwrap().hint;
    let shown = admin_hint.trim_end_matches('…');
    assert!(
        shown.len() >= 4
            && shown.len() < server.admin_token().len() / 2
            && server.admin_token().starts_with(shown),
        "a hint is a short prefix of the token, never the token: {admin_hint:?}"
    );

    // Revoked: refused at once.
    let (status, body) = api_error(
        server
            .admin
            .tokens_create(&TokenCreate {
                name: "alice".into(),
                admin: false,
                ..Default::default()
            })
            .await,
    );
    assert_eq!((status, body.code.as_str()), (409, "already_exists"));
    let revoked = server.admin.tokens_revoke("alice").await.unwrap();
    assert!(revoked.revoked_at.is_some());
    assert_401(
        server
            .call_as(Some(alice.token()), "GET", "/api/v1/whoami", None)
            .await,
    );

    // The audit chain holds the denied attempt, and verifies.
    let data_dir = server.stop_keeping_data().await;
    let data = data_dir.path();
    {
        let (master, created) = MasterKey::load(&KeySource::DataDir(data.to_owned())).unwrap();
        assert!(!created);
        let store = ferry_store::Store::open_read_only(
            &ferry_server::db_path(data),
            &master,
            ferry_server::audit_checkpoint_path(data),
        )
        .await
        .unwrap();
        let records = store.audit_records(0, 10_000).await.unwrap();
        let denied: Vec<_> = records.iter().filter(|r| r.outcome == "denied").collect();
        assert!(
            denied.iter().any(|r| r.actor == "alice"
                && r.action == "token.create"
                && r.target == "token/mallory"),
            "no denied token.create by alice in {records:#?}"
        );
        assert!(denied.iter().any(|r| r.actor == "alice"
            && r.action == "token.revoke"
            && r.target == "token/admin"));
        assert!(records.iter().any(|r| r.actor == "admin"
            && r.action == "token.revoke"
            && r.target == "token/alice"
            && r.outcome == "ok"));
        let report = store.verify_audit().await.unwrap();
        assert!(report.is_ok(), "{report:?}");
        store.close().await;
    }
}

/// Peak resident set size of this process, in KiB.
fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_line_of_output_is_logged_in_segments_in_bounded_memory() {
    const TOTAL: usize = 100_000_000;
    let yaml = format!(
        "{MINIMAL_FERRY_YAML}stages:\n  test:\n    - head -c {TOTAL} /dev/zero | tr '\\0' a\n"
    );
    let mut server = TestServer::start().await;
    server
        .project(
            "big",
            &[
                ("ferry.yaml", &yaml),
                ("main.tf", &terraform_data_config(1)),
            ],
        )
        .await;
    let before = vm_hwm_kib();
    let id = server
        .admin
        .runs_create("big", &run_create(None, None))
        .await
        .unwrap()
        .id;
    let detail = server
        .wait_status(id, "Succeeded", Duration::from_secs(150))
        .await;
    let grew_mib = vm_hwm_kib().saturating_sub(before) / 1024;
    eprintln!("100 MB line: peak RSS grew by {grew_mib} MiB");
    assert!(
        grew_mib < 100,
        "peak RSS grew by {grew_mib} MiB while a 100 MB line was logged"
    );

    let action = command_action(&detail);
    assert_eq!(
        (action.status.as_str(), action.exit_code),
        ("Succeeded", Some(0))
    );
    // Page through that action's output in bounded pages: segments of one line, the first
    // not continued and every later one continued, adding up to exactly the output.
    let mut offset = 0;
    let mut total = 0usize;
    let mut segments = 0usize;
    loop {
        let answer = server
            .call(
                "GET",
                &format!(
                    "/api/v1/runs/{id}/logs?action={}&offset={offset}&limit=200",
                    action.id
                ),
                None,
            )
            .await;
        assert_eq!(answer.status, 200);
        let page: ferry_api::LogPage = serde_json::from_str(&answer.text).unwrap();
        for line in page.lines.iter().filter(|l| l.stream == "out") {
            assert!(
                line.text.len() <= 64 * 1024,
                "a segment of {} bytes",
                line.text.len()
            );
            assert!(
                line.text.bytes().all(|b| b == b'a'),
                "segment text corrupted"
            );
            assert_eq!(
                line.continued,
                segments > 0,
                "segment {segments}: continued must be false only on the first"
            );
            total += line.text.len();
            segments += 1;
        }
        if page.complete {
            break;
        }
        offset = page.next_offset;
    }
    assert_eq!(
        total, TOTAL,
        "the logged segments do not add up to the output"
    );
    assert!(segments > 1000, "only {segments} segments");

    // Ferry's own run-level lines (action 0) sit on both sides of the 100 MB: paging and
    // streaming with an `action` filter must read past it to the last line.
    let mut offset = 0;
    let mut run_lines = Vec::new();
    loop {
        let page: ferry_api::LogPage = serde_json::from_str(
            &server
                .call(
                    "GET",
                    &format!("/api/v1/runs/{id}/logs?action=0&offset={offset}"),
                    None,
                )
                .await
                .text,
        )
        .unwrap();
        run_lines.extend(page.lines.into_iter().map(|l| l.text));
        if page.complete {
            break;
        }
        offset = page.next_offset;
    }
    assert_eq!(
        run_lines.last().map(String::as_str),
        Some("run succeeded"),
        "{run_lines:?}"
    );
    let resp = server
        .http
        .get(format!(
            "{}/api/v1/runs/{id}/logs/stream?action=0",
            server.url
        ))
        .bearer_auth(server.admin_token())
        .send()
        .await
        .unwrap();
    let body = tokio::time::timeout(Duration::from_secs(60), resp.text())
        .await
        .expect("the stream of a finished run ends")
        .unwrap();
    let streamed: Vec<String> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
        .filter_map(|d| serde_json::from_str::<Vec<ferry_api::LogLine>>(d).ok())
        .flatten()
        .map(|l| l.text)
        .collect();
    assert_eq!(
        streamed, run_lines,
        "the filtered stream ended early or differs from the pages"
    );
    assert!(
        body.contains("event: end\ndata: Succeeded"),
        "no end event: {}",
        &body[body.len().saturating_sub(300)..]
    );
    server.stop().await;
}
