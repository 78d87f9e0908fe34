//! The built-in Terraform state backend, driven by a real `terraform` with only a
//! `backend "http" {}` block and `TF_HTTP_*` variables, plus the protocol's bad inputs over
//! raw HTTP. This is the contract that stock Terraform and OpenTofu rely on.

use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use serde_json::json;

use crate::common::TestServer;

const CONFIG: &str = r#"terraform {
  backend "http" {}
}

resource "terraform_data" "net" {
  input = "plaintext-marker-7c1e"
}

resource "terraform_data" "app" {
  count = 3
  input = "app-${count.index}"
}
"#;

pub(crate) struct Tf {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Tf {
    pub(crate) fn new(
        server: &TestServer,
        project: &str,
        environment: &str,
        user: &str,
        password: &str,
    ) -> Tf {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.tf"), CONFIG).unwrap();
        let address = format!("{}/tf/state/{project}/{environment}", server.url);
        let env = vec![
            ("TF_HTTP_ADDRESS".to_owned(), address.clone()),
            ("TF_HTTP_LOCK_ADDRESS".to_owned(), address.clone()),
            ("TF_HTTP_UNLOCK_ADDRESS".to_owned(), address),
            ("TF_HTTP_USERNAME".to_owned(), user.to_owned()),
            ("TF_HTTP_PASSWORD".to_owned(), password.to_owned()),
            ("TF_HTTP_RETRY_MAX".to_owned(), "0".to_owned()),
            ("TF_IN_AUTOMATION".to_owned(), "1".to_owned()),
            ("CHECKPOINT_DISABLE".to_owned(), "1".to_owned()),
            ("PATH".to_owned(), ferry_test_support::path_with_terraform()),
        ];
        Tf { dir, env }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs terraform with `-no-color`; returns (exit code, stdout + stderr).
    pub(crate) async fn run(&self, args: &[&str]) -> (i32, String) {
        let mut args = args.to_vec();
        args.push("-no-color");
        self.run_plain(&args).await
    }

    /// Runs terraform exactly as given (for commands that do not take `-no-color`).
    async fn run_plain(&self, args: &[&str]) -> (i32, String) {
        let dir = self.path().to_owned();
        let env = self.env.clone();
        let home = std::env::var("HOME").unwrap_or_default();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let out = Command::new("terraform")
                .args(&args)
                .current_dir(dir)
                .env_clear()
                .envs(env)
                .env("HOME", home)
                .output()
                .expect("terraform runs");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            (out.status.code().unwrap_or(-1), text)
        })
        .await
        .unwrap()
    }
}

pub(crate) fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

pub(crate) async fn raw(
    server: &TestServer,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Vec<u8>,
) -> (u16, String) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = server
        .http
        .request(method, format!("{}{path}", server.url))
        .body(body);
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

pub(crate) async fn registered(server: &mut TestServer, name: &str) {
    server
        .project(
            name,
            &[
                ("ferry.yaml", ferry_test_support::MINIMAL_FERRY_YAML),
                ("main.tf", ""),
            ],
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_terraform_applies_against_the_backend_and_its_state_is_encrypted_at_rest() {
    let mut server = TestServer::start().await;
    registered(&mut server, "net").await;
    let admin = server.admin_token().to_owned();
    let tf = Tf::new(&server, "net", "prod", "ci", &admin);

    let (code, out) = tf.run(&["init", "-input=false"]).await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = tf.run(&["apply", "-input=false", "-auto-approve"]).await;
    assert_eq!(code, 0, "{out}");
    // A second plan against the stored state has nothing to do.
    let (code, out) = tf
        .run(&["plan", "-input=false", "-detailed-exitcode"])
        .await;
    assert_eq!(code, 0, "plan should find no changes: {out}");
    assert!(
        !tf.path().join("terraform.tfstate").exists(),
        "state must not be written locally"
    );

    // `terraform state push` of an older state: Terraform refuses it itself; with -force it
    // sends it anyway, and Ferry refuses it (same serial, other content).
    let (code, pulled) = tf.run_plain(&["state", "pull"]).await;
    assert_eq!(code, 0, "{pulled}");
    std::fs::write(tf.path().join("old.tfstate"), &pulled).unwrap();
    let (code, out) = tf
        .run(&[
            "apply",
            "-input=false",
            "-auto-approve",
            "-replace=terraform_data.net",
        ])
        .await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = tf.run_plain(&["state", "push", "old.tfstate"]).await;
    assert_ne!(code, 0, "a stale push must fail: {out}");
    let (code, out) = tf
        .run_plain(&["state", "push", "-force", "old.tfstate"])
        .await;
    assert_ne!(
        code, 0,
        "a forced stale push must be refused by the server: {out}"
    );
    let (code, out) = tf
        .run(&["plan", "-input=false", "-detailed-exitcode"])
        .await;
    assert_eq!(
        code, 0,
        "the state is unchanged by the refused pushes: {out}"
    );

    // The exact state is served back, and versions were recorded.
    let (status, body) = raw(
        &server,
        "GET",
        "/tf/state/net/prod",
        Some(&basic("x", &admin)),
        vec![],
    )
    .await;
    assert_eq!(status, 200);
    let state: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(state["resources"].as_array().unwrap().len(), 2);
    assert!(body.contains("plaintext-marker-7c1e"));

    // Nothing under the data dir holds the state in clear.
    let mut files = Vec::new();
    collect(server.data_dir(), &mut files);
    let blobs: Vec<_> = files
        .iter()
        .filter(|p| p.to_string_lossy().contains("/blobs/state/"))
        .collect();
    assert!(!blobs.is_empty(), "no state blobs written");
    for path in &files {
        let bytes = std::fs::read(path).unwrap_or_default();
        assert!(
            !contains(&bytes, b"plaintext-marker-7c1e"),
            "{} holds the state in clear",
            path.display()
        );
    }

    // Wrong or missing credentials: 401 and nothing else.
    let (status, body) = raw(
        &server,
        "GET",
        "/tf/state/net/prod",
        Some(&basic("x", "ferry_wrong")),
        vec![],
    )
    .await;
    assert_eq!(status, 401);
    assert!(!body.contains("plaintext-marker"));
    let (status, _) = raw(&server, "GET", "/tf/state/net/prod", None, vec![]).await;
    assert_eq!(status, 401);
    let bad = Tf::new(
        &server,
        "net",
        "prod",
        "ci",
        "ferry_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    );
    let (code, out) = bad.run(&["init", "-input=false"]).await;
    assert_ne!(code, 0, "init with a wrong password must fail: {out}");
    server.stop().await;
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lock_stops_terraform_and_names_its_holder_until_force_unlocked() {
    let mut server = TestServer::start().await;
    registered(&mut server, "net").await;
    let admin = server.admin_token().to_owned();
    let tf = Tf::new(&server, "net", "dev", "ci", &admin);
    let (code, out) = tf.run(&["init", "-input=false"]).await;
    assert_eq!(code, 0, "{out}");

    let holder = json!({"ID": "11111111-2222-3333-4444-555555555555", "Operation": "OperationTypeApply",
        "Info": "ferry job 42", "Who": "runner@ci-7", "Version": "1.15.5", "Created": "2026-01-02T03:04:05Z", "Path": ""});
    let (status, body) = raw(
        &server,
        "LOCK",
        "/tf/state/net/dev",
        Some(&basic("x", &admin)),
        holder.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // The same lock again is fine (a retried LOCK); another one gets the holder back.
    let (status, _) = raw(
        &server,
        "LOCK",
        "/tf/state/net/dev",
        Some(&basic("x", &admin)),
        holder.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, 200);
    let other = json!({"ID": "99999999-2222-3333-4444-555555555555", "Operation": "OperationTypePlan", "Who": "me@here"});
    let (status, body) = raw(
        &server,
        "LOCK",
        "/tf/state/net/dev",
        Some(&basic("x", &admin)),
        other.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, 423);
    let answered: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answered["Who"], "runner@ci-7");
    assert_eq!(answered["ID"], "11111111-2222-3333-4444-555555555555");

    let (code, out) = tf.run(&["apply", "-input=false", "-auto-approve"]).await;
    assert_ne!(
        code, 0,
        "apply must not run while someone else holds the lock: {out}"
    );
    assert!(out.contains("Error acquiring the state lock"), "{out}");
    assert!(
        out.contains("11111111-2222-3333-4444-555555555555"),
        "the holder's lock ID is shown: {out}"
    );

    // force-unlock sends an empty body: only an admin may, and it is audited.
    let alice = server.user("alice").await;
    let as_alice = Tf::new(&server, "net", "dev", "alice", alice.token());
    let (code, out) = as_alice
        .run_plain(&[
            "force-unlock",
            "-force",
            "11111111-2222-3333-4444-555555555555",
        ])
        .await;
    assert_ne!(code, 0, "a non-admin cannot force-unlock: {out}");
    let (code, out) = tf
        .run_plain(&[
            "force-unlock",
            "-force",
            "11111111-2222-3333-4444-555555555555",
        ])
        .await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = tf.run(&["apply", "-input=false", "-auto-approve"]).await;
    assert_eq!(code, 0, "{out}");
    let data = server.stop_keeping_data().await;
    let records = audit_actions(data.path()).await;
    assert!(
        records
            .iter()
            .any(|(a, who)| a == "state.force_unlock" && who == "admin"),
        "{records:?}"
    );
}

/// Releasing someone else's lock is a force-unlock, however it is asked for: the holder's ID
/// repeated in an UNLOCK body (which every 423 answer hands out) or `terraform force-unlock`.
/// An operator may release only its own lock; an admin may release any, audited and emitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_holder_or_an_admin_releases_a_lock() {
    let mut server = TestServer::start().await;
    registered(&mut server, "net").await;
    let ops_a = server.user_with("ops-a", &["operator"]).await;
    let ops_b = server.user_with("ops-b", &["operator"]).await;
    let (a, b) = (basic("x", ops_a.token()), basic("x", ops_b.token()));
    let lock_id = "11111111-2222-3333-4444-555555555555";
    let holder =
        json!({"ID": lock_id, "Operation": "OperationTypeApply", "Info": "", "Who": "a@ci",
        "Version": "1.15.5", "Created": "2026-01-02T03:04:05Z", "Path": ""})
        .to_string();
    let (status, body) = raw(
        &server,
        "LOCK",
        "/tf/state/net/dev",
        Some(&a),
        holder.clone().into_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Another operator, by every route: the holder's LockInfo byte for byte, OpenTofu's
    // force-unlock body (only the ID), an empty body, the GitLab-style DELETE with ?ID=.
    let tofu = json!({"ID": lock_id, "Operation": "", "Info": "", "Who": "", "Version": "",
        "Created": "0001-01-01T00:00:00Z", "Path": ""})
    .to_string();
    for (method, path, body) in [
        ("UNLOCK", "/tf/state/net/dev".to_owned(), holder.clone()),
        ("UNLOCK", "/tf/state/net/dev".to_owned(), tofu.clone()),
        ("UNLOCK", "/tf/state/net/dev".to_owned(), String::new()),
        (
            "DELETE",
            format!("/tf/state/net/dev/lock?ID={lock_id}"),
            String::new(),
        ),
    ] {
        let (status, answer) = raw(&server, method, &path, Some(&b), body.into_bytes()).await;
        assert_eq!(status, 403, "{method} {path}: {answer}");
        let error: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert!(
            error["message"].as_str().unwrap().contains("held by ops-a"),
            "{answer}"
        );
    }
    // Real Terraform's force-unlock as the other operator: refused, the lock stays.
    let as_b = Tf::new(&server, "net", "dev", "ops-b", ops_b.token());
    let (code, out) = as_b.run(&["init", "-input=false"]).await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = as_b.run_plain(&["force-unlock", "-force", lock_id]).await;
    assert_ne!(
        code, 0,
        "an operator cannot force-unlock another's lock: {out}"
    );
    let info = server
        .admin
        .state_lock_info("net", "dev", None)
        .await
        .unwrap();
    assert_eq!(info.map(|l| l.id), Some(lock_id.to_owned()));

    // The holder's own UNLOCK is cheap: released, not audited, no event.
    let (status, body) = raw(
        &server,
        "UNLOCK",
        "/tf/state/net/dev",
        Some(&a),
        holder.clone().into_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Taken again by ops-a; an admin's `terraform force-unlock` removes it.
    let (status, _) = raw(
        &server,
        "LOCK",
        "/tf/state/net/dev",
        Some(&a),
        holder.clone().into_bytes(),
    )
    .await;
    assert_eq!(status, 200);
    let as_admin = Tf::new(&server, "net", "dev", "admin", server.admin_token());
    let (code, out) = as_admin.run(&["init", "-input=false"]).await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = as_admin
        .run_plain(&["force-unlock", "-force", lock_id])
        .await;
    assert_eq!(code, 0, "{out}");
    assert!(server
        .admin
        .state_lock_info("net", "dev", None)
        .await
        .unwrap()
        .is_none());

    let events = server
        .admin
        .events(0, &[("type", "STATE_FORCE_UNLOCKED".to_owned())])
        .await
        .unwrap()
        .events;
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(
        (event.project.as_str(), event.environment.as_deref()),
        ("net", Some("dev"))
    );
    assert_eq!(event.actor, "admin");
    assert!(
        event.reason.as_deref().unwrap().contains("held by ops-a"),
        "{event:?}"
    );
    let data = server.stop_keeping_data().await;
    let unlocks: Vec<(String, String)> = audit_actions(data.path())
        .await
        .into_iter()
        .filter(|(a, _)| a.starts_with("state.") && a.contains("unlock"))
        .collect();
    assert_eq!(
        unlocks,
        [("state.force_unlock".to_owned(), "admin".to_owned())],
        "only the admin's force-unlock is audited as one"
    );
}

pub(crate) async fn audit_actions(data: &Path) -> Vec<(String, String)> {
    let (key, _) =
        ferry_secrets::MasterKey::load(&ferry_secrets::KeySource::DataDir(data.to_owned()))
            .unwrap();
    let store =
        ferry_store::Store::open_read_only(&data.join("ferry.db"), &key, data.join("audit.head"))
            .await
            .unwrap();
    let records = store.audit_records(0, 10_000).await.unwrap();
    assert!(
        store.verify_audit().await.unwrap().is_ok(),
        "the audit chain verifies"
    );
    records.into_iter().map(|r| (r.action, r.actor)).collect()
}

pub(crate) fn state_json(serial: u64, lineage: &str) -> Vec<u8> {
    serde_json::to_vec_pretty(&json!({"version": 4, "terraform_version": "1.15.5", "serial": serial, "lineage": lineage,
        "outputs": {}, "resources": [{"mode": "managed", "type": "terraform_data", "name": "x", "provider": "provider[\"terraform.io/builtin/terraform\"]", "instances": []}], "check_results": null}))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_follow_serial_lineage_and_lock_rules_and_bad_bodies_get_4xx() {
    let mut server = TestServer::start().await;
    registered(&mut server, "net").await;
    let auth = basic("x", server.admin_token());
    let path = "/tf/state/net/prod";
    let lineage = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";

    assert_eq!(
        raw(&server, "GET", path, Some(&auth), vec![]).await.0,
        404,
        "no state yet"
    );
    assert_eq!(
        raw(&server, "POST", path, Some(&auth), state_json(5, lineage))
            .await
            .0,
        200
    );
    // Idempotent retry; lower serial, same serial with other content, foreign lineage: refused.
    assert_eq!(
        raw(&server, "POST", path, Some(&auth), state_json(5, lineage))
            .await
            .0,
        200
    );
    let (status, body) = raw(&server, "POST", path, Some(&auth), state_json(4, lineage)).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("serial"), "{body}");
    let mut changed = state_json(5, lineage);
    changed.extend_from_slice(b"\n");
    assert_eq!(
        raw(&server, "POST", path, Some(&auth), changed).await.0,
        409
    );
    let (status, body) = raw(
        &server,
        "POST",
        path,
        Some(&auth),
        state_json(9, "ffffffff-0000-0000-0000-000000000000"),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("lineage"), "{body}");
    // A forced push (admin) takes a foreign lineage.
    let (status, body) = raw(
        &server,
        "POST",
        &format!("{path}?force=true"),
        Some(&auth),
        state_json(1, "ffffffff-0000-0000-0000-000000000000"),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Garbage, non-JSON, a bad Content-MD5, an oversized body: 4xx, never 5xx.
    assert_eq!(
        raw(&server, "POST", path, Some(&auth), b"not json".to_vec())
            .await
            .0,
        400
    );
    assert_eq!(
        raw(&server, "POST", path, Some(&auth), b"[1,2]".to_vec())
            .await
            .0,
        400
    );
    let body = state_json(2, "ffffffff-0000-0000-0000-000000000000");
    let response = server
        .http
        .post(format!("{}{path}", server.url))
        .header("authorization", &auth)
        .header("content-md5", "1B2M2Y8AsgTpgAmY7PhCfg==")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let too_big = vec![b' '; ferry_server_max() + 1];
    let status = raw(&server, "POST", path, Some(&auth), too_big).await.0;
    assert_eq!(status, 413);

    // Locked: a write without the lock ID is 423 with the holder, a wrong ID 409.
    let lock = json!({"ID": "lock-1", "Operation": "OperationTypeApply", "Who": "a@b", "Created": "2026-01-02T03:04:05Z"});
    assert_eq!(
        raw(
            &server,
            "LOCK",
            path,
            Some(&auth),
            lock.to_string().into_bytes()
        )
        .await
        .0,
        200
    );
    let (status, body) = raw(
        &server,
        "POST",
        path,
        Some(&auth),
        state_json(3, "ffffffff-0000-0000-0000-000000000000"),
    )
    .await;
    assert_eq!(status, 423);
    assert!(body.contains("lock-1"), "{body}");
    assert_eq!(
        raw(
            &server,
            "POST",
            &format!("{path}?ID=other"),
            Some(&auth),
            state_json(3, "ffffffff-0000-0000-0000-000000000000")
        )
        .await
        .0,
        409
    );
    assert_eq!(
        raw(
            &server,
            "POST",
            &format!("{path}?ID=lock-1"),
            Some(&auth),
            state_json(3, "ffffffff-0000-0000-0000-000000000000")
        )
        .await
        .0,
        200
    );
    // Unlock with another ID: 409 and the holder; GitLab-style DELETE on /lock with the right one: 200.
    let wrong = json!({"ID": "lock-2"});
    let (status, body) = raw(
        &server,
        "UNLOCK",
        path,
        Some(&auth),
        wrong.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, 409);
    assert!(body.contains("lock-1"));
    assert_eq!(
        raw(
            &server,
            "DELETE",
            &format!("{path}/lock"),
            Some(&auth),
            lock.to_string().into_bytes()
        )
        .await
        .0,
        200
    );
    // GitLab-style POST on /lock takes it again.
    assert_eq!(
        raw(
            &server,
            "POST",
            &format!("{path}/lock"),
            Some(&auth),
            lock.to_string().into_bytes()
        )
        .await
        .0,
        200
    );

    // DELETE: admin only (a soft delete), refused while locked, then the state reads as gone.
    let alice = server.user("alice").await;
    assert_eq!(
        raw(
            &server,
            "DELETE",
            "/tf/state/net/prod/dns",
            Some(&basic("alice", alice.token())),
            vec![]
        )
        .await
        .0,
        403
    );
    assert_eq!(
        raw(&server, "DELETE", path, Some(&auth), vec![]).await.0,
        409,
        "locked"
    );
    assert_eq!(
        raw(
            &server,
            "POST",
            "/tf/state/net/prod/dns",
            Some(&auth),
            state_json(1, lineage)
        )
        .await
        .0,
        200
    );
    assert_eq!(
        raw(
            &server,
            "DELETE",
            "/tf/state/net/prod/dns",
            Some(&auth),
            vec![]
        )
        .await
        .0,
        200
    );
    assert_eq!(
        raw(
            &server,
            "GET",
            "/tf/state/net/prod/dns",
            Some(&auth),
            vec![]
        )
        .await
        .0,
        404
    );

    // Unknown project: 404; named states are separate.
    assert_eq!(
        raw(&server, "GET", "/tf/state/nope/prod", Some(&auth), vec![])
            .await
            .0,
        404
    );
    assert_eq!(
        raw(
            &server,
            "POST",
            "/tf/state/net/prod/dns",
            Some(&auth),
            state_json(1, lineage)
        )
        .await
        .0,
        200
    );
    let (status, body) = raw(
        &server,
        "GET",
        "/tf/state/net/prod/dns",
        Some(&auth),
        vec![],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["serial"],
        1
    );
    server.stop().await;
}

fn ferry_server_max() -> usize {
    64 * 1024 * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_never_move_the_serial_backwards() {
    let mut server = TestServer::start().await;
    registered(&mut server, "net").await;
    let auth = basic("x", server.admin_token());
    let lineage = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
    let mut tasks = Vec::new();
    for serial in 1..=20u64 {
        let http = server.http.clone();
        let url = format!("{}/tf/state/net/prod", server.url);
        let auth = auth.clone();
        tasks.push(tokio::spawn(async move {
            let response = http
                .post(url)
                .header("authorization", auth)
                .body(state_json(serial, lineage))
                .send()
                .await
                .unwrap();
            (serial, response.status().as_u16())
        }));
    }
    let mut accepted = Vec::new();
    for task in tasks {
        let (serial, status) = task.await.unwrap();
        assert!(status == 200 || status == 409, "status {status}");
        if status == 200 {
            accepted.push(serial);
        }
    }
    let (status, body) = raw(&server, "GET", "/tf/state/net/prod", Some(&auth), vec![]).await;
    assert_eq!(status, 200);
    let current = serde_json::from_str::<serde_json::Value>(&body).unwrap()["serial"]
        .as_u64()
        .unwrap();
    assert_eq!(
        current,
        *accepted.iter().max().unwrap(),
        "the newest accepted serial is current"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_keeps_its_state_in_the_backend_with_a_credential_that_dies_with_the_action() {
    // The action plays an attacker who copies its credential out: to a directory the
    // operator let every action write, since the sandbox allows no other.
    let leak = tempfile::tempdir().unwrap();
    let mut server = TestServer::start_with(
        |c| c.sandbox.writable.push(leak.path().to_owned()),
        reqwest::Client::new(),
    )
    .await;
    let leaked = leak.path().join("password");
    let yaml = format!(
        "version: 1\nname: tiny\nterraform: {{ dir: . }}\nstages:\n  test:\n    - \"printf %s \\\"$TF_HTTP_PASSWORD\\\" > {} && printf %s \\\"$TF_HTTP_ADDRESS\\\" > {}.address\"\n",
        leaked.display(),
        leaked.display()
    );
    let config = "terraform {\n  backend \"local\" {}\n}\n\nresource \"terraform_data\" \"r\" {\n  count = 2\n  input = \"r-${count.index}\"\n}\n";
    server
        .project(
            "tiny",
            &[("ferry.yaml", yaml.as_str()), ("main.tf", config)],
        )
        .await;
    let run = server
        .admin
        .runs_create(
            "tiny",
            &ferry_api::RunCreate {
                git_ref: Some("main".into()),
                pipeline: None,
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .id;
    let detail = server
        .wait_status(run, "Succeeded", crate::common::RUN_TIMEOUT)
        .await;
    assert_eq!(detail.plans[0].add, 2);

    // The state is in Ferry's backend, at the project's environment address, even though
    // the configuration declared a local backend (the run log says it was replaced).
    let admin = basic("x", server.admin_token());
    let (status, body) = raw(
        &server,
        "GET",
        "/tf/state/tiny/default",
        Some(&admin),
        vec![],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let state: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        state["resources"][0]["instances"].as_array().unwrap().len(),
        2
    );
    let log = server.admin.logs_get(run, 0, 10_000).await.unwrap();
    assert!(
        log.lines
            .iter()
            .any(|l| l.text.contains("declares a backend")),
        "the replacement is logged"
    );

    // The action's credential reached the action as an environment variable only, for its
    // own address, and was revoked when the action ended.
    let password = std::fs::read_to_string(&leaked).unwrap();
    assert!(password.starts_with("ferry_"), "{password:?}");
    let address = std::fs::read_to_string(format!("{}.address", leaked.display())).unwrap();
    assert!(address.ends_with("/tf/state/tiny/default"), "{address}");
    let (status, _) = raw(
        &server,
        "GET",
        "/tf/state/tiny/default",
        Some(&basic("run", &password)),
        vec![],
    )
    .await;
    assert_eq!(status, 401, "a run credential must not outlive its action");
    assert!(
        log.lines.iter().all(|l| !l.text.contains(&password)),
        "the credential is not in the log"
    );
    server.stop().await;
}
