//! State operations over `/api/v1/states`: versions recorded by real `terraform apply` runs,
//! renderings that never carry values, diff, rollback (serial rewritten, refused while
//! locked), force-unlock, push with and without `force`, soft delete and retention pruning.

use serde_json::json;

use crate::common::{api_error, TestServer};
use crate::state_backend::{audit_actions, basic, raw, registered, state_json, Tf};

const CONFIG: &str = r#"terraform {
  backend "http" {}
}

variable "secret" {
  type      = string
  sensitive = true
}

variable "apps" {
  type    = number
  default = 1
}

resource "terraform_data" "db" {
  input = var.secret
}

resource "terraform_data" "app" {
  count = var.apps
  input = "app-${count.index}"
}

output "password" {
  value     = var.secret
  sensitive = true
}
"#;

const SECRET: &str = "hunter2-sekrit-4f1d";

async fn apply(tf: &Tf, apps: u32) {
    let apps = format!("apps={apps}");
    let secret = format!("secret={SECRET}");
    let (code, out) = tf
        .run(&[
            "apply",
            "-input=false",
            "-auto-approve",
            "-var",
            &apps,
            "-var",
            &secret,
        ])
        .await;
    assert_eq!(code, 0, "{out}");
}

fn numbers(versions: &serde_json::Value) -> Vec<i64> {
    versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["number"].as_i64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_ops_list_show_diff_rollback_unlock_and_push() {
    let mut server = TestServer::start().await;
    registered(&mut server, "net").await;
    let admin = server.admin_token().to_owned();
    let alice = server.user("alice").await;
    let tf = Tf::new(&server, "net", "prod", "ci", &admin);
    std::fs::write(tf.path().join("main.tf"), CONFIG).unwrap();
    let (code, out) = tf.run(&["init", "-input=false"]).await;
    assert_eq!(code, 0, "{out}");
    apply(&tf, 1).await;
    let first = server
        .call("GET", "/api/v1/states/net/prod/versions", None)
        .await;
    assert_eq!(first.status, 200, "{}", first.text);
    let first_current = numbers(&first.json)[0];
    apply(&tf, 3).await;

    // list
    let list = server.call("GET", "/api/v1/states?project=net", None).await;
    assert_eq!(list.status, 200, "{}", list.text);
    let states = list.json.as_array().unwrap();
    assert_eq!(states.len(), 1, "{}", list.text);
    assert_eq!(states[0]["environment"], "prod");
    assert_eq!(states[0]["name"], "");
    assert!(states[0]["lock"].is_null());
    let current = states[0]["current"]["number"].as_i64().unwrap();
    let current_serial = states[0]["current"]["serial"].as_i64().unwrap();
    assert!(current > first_current);

    // versions: newest first, with metadata
    let versions = server
        .call("GET", "/api/v1/states/net/prod/versions", None)
        .await;
    let all = numbers(&versions.json);
    assert_eq!(all[0], current);
    assert!(all.contains(&first_current));
    assert_eq!(versions.json[0]["writer"], "admin");
    assert_eq!(versions.json[0]["pruned"], false);
    assert_eq!(versions.json[0]["sha256"].as_str().unwrap().len(), 64);

    // show: resources summarised, never a value, not even the sensitive ones
    let show = server.call("GET", "/api/v1/states/net/prod", None).await;
    assert_eq!(show.status, 200, "{}", show.text);
    assert!(!show.text.contains(SECRET), "{}", show.text);
    assert!(!show.text.contains("app-0"), "{}", show.text);
    let resources = show.json["resources"].as_array().unwrap();
    let app = resources
        .iter()
        .find(|r| r["address"] == "terraform_data.app")
        .unwrap();
    assert_eq!(app["instances"], 3);
    assert_eq!(show.json["version"]["number"], current);
    let old = server
        .call(
            "GET",
            &format!("/api/v1/states/net/prod?version={first_current}"),
            None,
        )
        .await;
    assert_eq!(old.status, 200, "{}", old.text);
    assert!(!old.text.contains(SECRET));
    let app = old.json["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == "terraform_data.app")
        .unwrap()
        .clone();
    assert_eq!(app["instances"], 1);

    // diff: addresses only
    let diff = server
        .call(
            "GET",
            &format!("/api/v1/states/net/prod/diff?from={first_current}&to={current}"),
            None,
        )
        .await;
    assert_eq!(diff.status, 200, "{}", diff.text);
    assert_eq!(
        diff.json["added"],
        json!(["terraform_data.app[1]", "terraform_data.app[2]"])
    );
    assert!(!diff.text.contains(SECRET));

    // raw pull: admin only, exact bytes, audited
    let pulled = server
        .call("GET", "/api/v1/states/net/prod/raw", None)
        .await;
    assert_eq!(pulled.status, 200);
    assert!(pulled.text.contains(SECRET));
    let denied = server
        .call_as(
            Some(alice.token()),
            "GET",
            "/api/v1/states/net/prod/raw",
            None,
        )
        .await;
    denied.assert_error(403, "forbidden");

    // rollback while locked: 409; force-unlock: alice 403, admin ok
    let lock_body = json!({"ID": "11111111-2222-3333-4444-555555555555", "Operation": "OperationTypeApply", "Who": "bob@laptop", "Info": "", "Version": "1.15.5", "Created": "2026-01-01T00:00:00Z", "Path": ""});
    let (status, text) = raw(
        &server,
        "LOCK",
        "/tf/state/net/prod",
        Some(&basic("x", &admin)),
        serde_json::to_vec(&lock_body).unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let info = server
        .call("GET", "/api/v1/states/net/prod/lock", None)
        .await;
    assert_eq!(info.json["who"], "bob@laptop", "{}", info.text);
    let refused = server
        .call(
            "POST",
            "/api/v1/states/net/prod/rollback",
            Some(json!({"version": first_current})),
        )
        .await;
    refused.assert_error(409, "state_locked");
    let pushed_locked = server
        .call_raw(
            "POST",
            "/api/v1/states/net/prod/push",
            "application/json",
            &pulled.text,
        )
        .await;
    pushed_locked.assert_error(409, "state_locked");
    let (status, _) = api_error(alice.state_unlock("net", "prod", None).await);
    assert_eq!(status, 403);
    let unlocked = server
        .call("DELETE", "/api/v1/states/net/prod/lock", None)
        .await;
    assert_eq!(unlocked.status, 200, "{}", unlocked.text);
    assert_eq!(unlocked.json["who"], "bob@laptop");
    let info = server
        .call("GET", "/api/v1/states/net/prod/lock", None)
        .await;
    assert!(info.json.is_null(), "{}", info.text);

    // rollback: a new version, serial current + 1, same content as the old one otherwise
    let rolled = server
        .call(
            "POST",
            "/api/v1/states/net/prod/rollback",
            Some(json!({"version": first_current, "comment": "back to one app"})),
        )
        .await;
    assert_eq!(rolled.status, 200, "{}", rolled.text);
    assert_eq!(rolled.json["serial"].as_i64().unwrap(), current_serial + 1);
    assert!(rolled.json["number"].as_i64().unwrap() > current);
    // Both the force-unlock and the rollback are events, for notifications to pick up.
    let events = server
        .admin
        .events(
            0,
            &[("type", "STATE_FORCE_UNLOCKED,STATE_ROLLED_BACK".to_owned())],
        )
        .await
        .unwrap()
        .events;
    let kinds: Vec<(&str, Option<&str>, &str)> = events
        .iter()
        .map(|e| (e.kind.as_str(), e.environment.as_deref(), e.actor.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("STATE_FORCE_UNLOCKED", Some("prod"), "admin"),
            ("STATE_ROLLED_BACK", Some("prod"), "admin")
        ]
    );
    assert!(
        events[1]
            .reason
            .as_deref()
            .unwrap()
            .contains("rolled back to version"),
        "{events:?}"
    );
    // Terraform sees the rolled-back state: with apps=3 it wants to add two again.
    let (code, out) = tf
        .run(&[
            "plan",
            "-input=false",
            "-detailed-exitcode",
            "-var",
            "apps=3",
            "-var",
            &format!("secret={SECRET}"),
        ])
        .await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("2 to add"), "{out}");
    let (code, out) = tf
        .run(&[
            "plan",
            "-input=false",
            "-detailed-exitcode",
            "-var",
            "apps=1",
            "-var",
            &format!("secret={SECRET}"),
        ])
        .await;
    assert_eq!(code, 0, "{out}");

    // push: a stale serial is refused; force is admin only and then accepted
    let stale = state_json(1, "some-other-lineage");
    let stale = String::from_utf8(stale).unwrap();
    let refused = server
        .call_raw(
            "POST",
            "/api/v1/states/net/prod/push",
            "application/json",
            &stale,
        )
        .await;
    refused.assert_error(409, "state_conflict");
    let denied = server
        .call_as(
            Some(alice.token()),
            "POST",
            "/api/v1/states/net/prod/push?force=true",
            Some(serde_json::from_str(&stale).unwrap()),
        )
        .await;
    denied.assert_error(403, "forbidden");
    let forced = server
        .call_raw(
            "POST",
            "/api/v1/states/net/prod/push?force=true",
            "application/json",
            &stale,
        )
        .await;
    assert_eq!(forced.status, 200, "{}", forced.text);
    assert_eq!(forced.json["serial"], 1);

    let data = server.stop_keeping_data().await;
    let records = audit_actions(data.path()).await;
    for action in [
        "state.pull",
        "state.force_unlock",
        "state.rollback",
        "state.push_force",
    ] {
        assert!(
            records.iter().any(|(a, who)| a == action && who == "admin"),
            "{action} not audited: {records:?}"
        );
    }
    assert!(records
        .iter()
        .any(|(a, who)| a == "state.force_unlock" && who == "alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_ops_retention_prunes_old_versions_and_delete_is_soft() {
    let mut server = TestServer::start().await;
    registered(&mut server, "net").await;
    let admin = server.admin_token().to_owned();
    let auth = basic("x", &admin);
    for serial in 1..=5 {
        let (status, text) = raw(
            &server,
            "POST",
            "/tf/state/net/dev",
            Some(&auth),
            state_json(serial, "lin-1"),
        )
        .await;
        assert_eq!(status, 200, "{text}");
    }
    let alice = server.user("alice").await;
    let denied = server
        .call_as(
            Some(alice.token()),
            "PUT",
            "/api/v1/states/net/dev/retention",
            Some(json!({"days": 0, "keep": 2})),
        )
        .await;
    denied.assert_error(403, "forbidden");
    let bad = server
        .call(
            "PUT",
            "/api/v1/states/net/dev/retention",
            Some(json!({"days": 0, "keep": 0})),
        )
        .await;
    bad.assert_error(400, "bad_request");
    // Bounds the schema states, checked before any date arithmetic (this was a 500).
    for body in [
        json!({"days": 9_223_372_036_854_775_806_i64, "keep": 2}),
        json!({"days": ferry_api::MAX_RETENTION_DAYS + 1, "keep": 2}),
        json!({"days": -1, "keep": 2}),
        json!({"days": 0, "keep": ferry_api::MAX_RETENTION_KEEP + 1}),
    ] {
        server
            .call("PUT", "/api/v1/states/net/dev/retention", Some(body))
            .await
            .assert_error(400, "bad_request");
    }
    let set = server
        .call(
            "PUT",
            "/api/v1/states/net/dev/retention",
            Some(json!({"days": 0, "keep": 2})),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.text);
    let versions = server
        .call("GET", "/api/v1/states/net/dev/versions", None)
        .await;
    let pruned: Vec<(i64, bool)> = versions
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["number"].as_i64().unwrap(),
                v["pruned"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        pruned,
        vec![(5, false), (4, false), (3, true), (2, true), (1, true)]
    );
    // The pruned blobs are gone; the current state is still served.
    let blobs = std::fs::read_dir(server.data_dir().join("blobs/state"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .count();
    assert_eq!(blobs, 2);
    let (status, body) = raw(&server, "GET", "/tf/state/net/dev", Some(&auth), vec![]).await;
    assert_eq!(status, 200);
    assert_eq!(body.as_bytes(), state_json(5, "lin-1"));
    let gone = server
        .call("GET", "/api/v1/states/net/dev/raw?version=1", None)
        .await;
    gone.assert_error(410, "pruned");

    // Soft delete: admin only, then the backend and the API no longer see it.
    let denied = server
        .call_as(
            Some(alice.token()),
            "DELETE",
            "/api/v1/states/net/dev",
            None,
        )
        .await;
    denied.assert_error(403, "forbidden");
    let deleted = server.call("DELETE", "/api/v1/states/net/dev", None).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    let (status, _) = raw(&server, "GET", "/tf/state/net/dev", Some(&auth), vec![]).await;
    assert_eq!(status, 404);
    let list = server.call("GET", "/api/v1/states", None).await;
    assert_eq!(list.json, json!([]));

    let data = server.stop_keeping_data().await;
    let records = audit_actions(data.path()).await;
    for action in ["state.retention", "state.prune", "state.delete"] {
        assert!(
            records.iter().any(|(a, _)| a == action),
            "{action} not audited: {records:?}"
        );
    }
    // The versions stay in the database after the soft delete (the unpruned ones with
    // their content, for a later restore or retention).
    let (key, _) =
        ferry_secrets::MasterKey::load(&ferry_secrets::KeySource::DataDir(data.path().to_owned()))
            .unwrap();
    let store = ferry_store::Store::open_read_only(
        &data.path().join("ferry.db"),
        &key,
        data.path().join("audit.head"),
    )
    .await
    .unwrap();
    let rows = store.stored_versions().await.unwrap();
    let kept: Vec<_> = rows
        .iter()
        .map(|r| (r.environment.as_str(), r.version.number))
        .collect();
    assert_eq!(kept, vec![("dev", 4), ("dev", 5)]);
}
