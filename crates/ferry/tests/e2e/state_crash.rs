//! `kill -9` of the server while Terraform-sized state writes stream in: after a restart the
//! current version is one that was fully written (valid, decryptable, its digest right), no
//! version is partial, and serials never went backwards.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;

use crate::util::Server;

fn state(serial: u64, pad: usize) -> Vec<u8> {
    let filler = "x".repeat(pad);
    format!(
        "{{\n  \"version\": 4,\n  \"terraform_version\": \"1.15.5\",\n  \"serial\": {serial},\n  \"lineage\": \"crash-lineage\",\n  \"outputs\": {{\"pad\": {{\"value\": \"{filler}\", \"type\": \"string\"}}}},\n  \"resources\": [],\n  \"check_results\": null\n}}\n"
    )
    .into_bytes()
}

#[test]
fn kill_9_during_state_writes_leaves_the_last_complete_version_current() {
    let mut server = Server::start();
    server.add_project(
        "crashy",
        &crate::util::repo_with(&[
            ("ferry.yaml", ferry_test_support::MINIMAL_FERRY_YAML),
            ("main.tf", ""),
        ]),
    );
    let token = std::fs::read_to_string(server.data.join("admin.token"))
        .unwrap()
        .trim()
        .to_owned();
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("x:{token}"))
    );
    let url = format!("{}/tf/state/crashy/prod", server.url);

    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, acknowledged, url, auth) = (
            stop.clone(),
            acknowledged.clone(),
            url.clone(),
            auth.clone(),
        );
        std::thread::spawn(move || {
            let http = reqwest::blocking::Client::new();
            let mut serial = 1;
            while !stop.load(Ordering::SeqCst) && serial < 10_000 {
                match http
                    .post(&url)
                    .header("authorization", &auth)
                    .body(state(serial, 256 * 1024))
                    .send()
                {
                    Ok(r) if r.status().is_success() => {
                        acknowledged.store(serial, Ordering::SeqCst)
                    }
                    _ => break, // the server is gone
                }
                serial += 1;
            }
        })
    };
    // Let some writes land, then kill the server in the middle of the stream.
    ferry_test_support::wait_for("a few acknowledged writes", Duration::from_secs(30), || {
        (acknowledged.load(Ordering::SeqCst) >= 5).then_some(())
    });
    server.kill9();
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let last_ack = acknowledged.load(Ordering::SeqCst);

    server.restart();
    // The restarted server listens on a new port.
    let url = format!("{}/tf/state/crashy/prod", server.url);
    let http = reqwest::blocking::Client::new();
    let response = http
        .get(&url)
        .header("authorization", &auth)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body = response.bytes().unwrap();
    let current: serde_json::Value =
        serde_json::from_slice(&body).expect("the current version is a complete state");
    let serial = current["serial"].as_u64().unwrap();
    // Every acknowledged write is durable; at most the one in flight may also have landed.
    assert!(
        serial == last_ack || serial == last_ack + 1,
        "current serial {serial}, last acknowledged {last_ack}"
    );
    // A write continuing the lineage is accepted; an older serial is not.
    let next = http
        .post(&url)
        .header("authorization", &auth)
        .body(state(serial + 1, 16))
        .send()
        .unwrap();
    assert_eq!(next.status().as_u16(), 200);
    let stale = http
        .post(&url)
        .header("authorization", &auth)
        .body(state(serial, 16))
        .send()
        .unwrap();
    assert_eq!(stale.status().as_u16(), 409);
    server.stop();

    // Every stored version decrypts to content with its recorded digest.
    let backup = server.root().join("check");
    assert_eq!(
        server
            .cli(&["admin", "backup", backup.to_str().unwrap()])
            .code,
        0
    );
    let restored = server.root().join("restored");
    std::fs::create_dir_all(&restored).unwrap();
    std::fs::copy(server.data.join("master.key"), restored.join("master.key")).unwrap();
    let out = crate::util::ferry(
        server.root(),
        &[
            "--data-dir",
            restored.to_str().unwrap(),
            "admin",
            "restore",
            backup.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{out:?}");
}
