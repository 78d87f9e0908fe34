//! `ferry admin backup` while the server runs and `ferry admin restore` into a fresh data
//! dir: the backup never holds the master key, a restore proves the audit chain and every
//! state version, and a damaged state blob in a backup is named rather than restored quietly.

use std::time::Duration;

use ferry_test_support::{terraform_data_config, MINIMAL_FERRY_YAML};

use crate::util::{ferry, repo_with, Server};

#[test]
fn an_online_backup_restores_and_verifies_and_a_damaged_one_is_refused() {
    let mut server = Server::start();
    let repo = repo_with(&[
        ("ferry.yaml", MINIMAL_FERRY_YAML),
        ("main.tf", &terraform_data_config(3)),
    ]);
    server.add_project("kept", &repo);
    let run = server.trigger("kept", &[]);
    server.wait_status(run, "Succeeded", Duration::from_secs(60));

    // Online: the server keeps running while the snapshot is taken.
    let backup = server.root().join("backup");
    let out = server.cli(&["admin", "backup", backup.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("NOT in the backup"), "{out:?}");
    assert!(backup.join("ferry.db").exists() && backup.join("blobs").exists());
    assert!(
        !backup.join("master.key").exists(),
        "the master key never goes into a backup"
    );
    server.stop();

    // Restore into an empty data dir holding only the master key.
    let restored = server.root().join("restored");
    std::fs::create_dir_all(&restored).unwrap();
    std::fs::copy(server.data.join("master.key"), restored.join("master.key")).unwrap();
    let args = [
        "--data-dir",
        restored.to_str().unwrap(),
        "admin",
        "restore",
        backup.to_str().unwrap(),
    ];
    let out = ferry(server.root(), &args, &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("state versions verified") && out.stdout.contains("audit chain ok"),
        "{out:?}"
    );
    // A second restore into the same dir is refused: it would overwrite a database.
    assert_eq!(ferry(server.root(), &args, &[]).code, 2);

    // Damage one state blob in the backup: the restore names it and fails.
    let blob = first_file(&backup.join("blobs/state"));
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let damaged = server.root().join("damaged");
    std::fs::create_dir_all(&damaged).unwrap();
    std::fs::copy(server.data.join("master.key"), damaged.join("master.key")).unwrap();
    let out = ferry(
        server.root(),
        &[
            "--data-dir",
            damaged.to_str().unwrap(),
            "admin",
            "restore",
            backup.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("state kept/default version 1"),
        "{out:?}"
    );
}

fn first_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .next()
        .unwrap_or_else(|| panic!("no file under {}", dir.display()));
    if path.is_dir() {
        first_file(&path)
    } else {
        path
    }
}

#[test]
fn rotating_the_master_key_keeps_state_readable_and_the_audit_chain_verifiable() {
    let mut server = Server::start();
    let repo = repo_with(&[
        ("ferry.yaml", MINIMAL_FERRY_YAML),
        ("main.tf", &terraform_data_config(2)),
    ]);
    server.add_project("rot", &repo);
    let run = server.trigger("rot", &[]);
    server.wait_status(run, "Succeeded", Duration::from_secs(60));
    let before = server.cli(&["state", "pull", "rot/default"]);
    assert_eq!(before.code, 0, "{before:?}");

    // A parameter and a secret, re-wrapped with everything else.
    assert_eq!(
        server.cli(&["param", "set", "REGION", "eu-north-1"]).code,
        0
    );
    let set = crate::secrets::cli_stdin(&server, &["secret", "set", "API_KEY"], "rotated-secret\n");
    assert_eq!(set.code, 0, "{set:?}");

    // Refused while the server runs.
    let out = server.cli(&["admin", "rotate-master-key"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("stop it"), "{out:?}");
    server.stop();

    let old_key = std::fs::read_to_string(server.data.join("master.key")).unwrap();
    let out = server.cli(&["admin", "rotate-master-key"]);
    assert_eq!(out.code, 0, "{out:?}");
    let new_key = std::fs::read_to_string(server.data.join("master.key")).unwrap();
    assert_ne!(old_key, new_key, "the key file holds the new key");
    assert!(!server.data.join("master.key.next").exists());
    assert_eq!(
        server.cli(&["audit", "verify"]).code,
        0,
        "the chain still verifies under the new key"
    );

    // A rotation that never committed leaves a stray next key: the next start drops it.
    std::fs::write(
        server.data.join("master.key.next"),
        format!("{}\n", "ab".repeat(32)),
    )
    .unwrap();
    std::fs::set_permissions(
        server.data.join("master.key.next"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    server.restart();
    assert!(!server.data.join("master.key.next").exists());
    assert_eq!(
        std::fs::read_to_string(server.data.join("master.key")).unwrap(),
        new_key
    );

    // The parameter reads back under the new key.
    let param = server.cli(&["param", "get", "REGION"]);
    assert_eq!(param.stdout, "eu-north-1\n", "{param:?}");

    // Same state bytes, and the pipeline goes on with its state.
    let after = server.cli(&["state", "pull", "rot/default"]);
    assert_eq!(after.stdout, before.stdout);
    let again = server.trigger("rot", &[]);
    let detail = server.wait_status(again, "Succeeded", Duration::from_secs(60));
    assert_eq!(detail["plans"][0]["has_changes"], false, "{detail:#}");
}
