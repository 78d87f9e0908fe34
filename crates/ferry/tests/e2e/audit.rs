//! Tampering with the audit log directly in SQLite, as an attacker with file access would
//! (dropping the append-only triggers first): `ferry audit verify` must fail and name the
//! entry for an edited row, a deleted row, and the newest rows truncated away.

use std::path::Path;

use ferry_test_support::{terraform_data_config, MINIMAL_FERRY_YAML};

use crate::util::{audit_rows, copy_data_dir, ferry, repo_with, sql, try_sql, Out, Server};

const DROP_TRIGGERS: &[&str] = &[
    "DROP TRIGGER audit_no_update",
    "DROP TRIGGER audit_no_delete",
];

fn verify(data: &Path) -> Out {
    ferry(
        data.parent().expect("parent"),
        &["--data-dir", &data.display().to_string(), "audit", "verify"],
        &[],
    )
}

#[test]
fn audit_verify_names_edited_deleted_and_truncated_entries() {
    // Some real activity: a project, tokens (one revoked), a run with an apply.
    let mut server = Server::start();
    let repo = repo_with(&[
        ("ferry.yaml", MINIMAL_FERRY_YAML),
        ("main.tf", &terraform_data_config(2)),
    ]);
    server.add_project("tiny", &repo);
    server.create_token("dora");
    server.create_token("eve");
    server.cli(&["token", "revoke", "eve"]).ok();
    server.cli(&["run", "tiny", "--wait"]).ok();
    server.stop();

    let clean = verify(&server.data);
    assert_eq!(clean.code, 0, "{clean:?}");
    // Copies to tamper with, taken before anything else opens the database.
    let edited = server.root().join("edited");
    let deleted = server.root().join("deleted");
    let truncated = server.root().join("truncated");
    for copy in [&edited, &deleted, &truncated] {
        copy_data_dir(&server.data, copy);
    }
    let rows = audit_rows(&server.data.join("ferry.db"));
    assert!(rows.len() >= 5, "expected several audit entries: {rows:#?}");
    assert!(
        clean.stdout.contains(&format!(
            "{} entries, head at {}",
            rows.len(),
            rows.last().unwrap().seq
        )),
        "{clean:?}"
    );
    let actions: Vec<&str> = rows.iter().map(|r| r.action.as_str()).collect();
    for expected in [
        "project.create",
        "token.create",
        "token.revoke",
        "run.create",
    ] {
        assert!(
            actions.iter().any(|a| a.contains(expected)),
            "no {expected} entry in {actions:?}"
        );
    }
    let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    let middle = seqs[seqs.len() / 2];
    let head = *seqs.last().unwrap();

    // The append-only triggers stop casual edits.
    let blocked = try_sql(
        &server.data.join("ferry.db"),
        &["UPDATE audit SET actor = 'mallory' WHERE seq = 1"],
    );
    assert!(
        blocked.is_err_and(|e| e.contains("append-only")),
        "the audit table must refuse updates while its triggers exist"
    );

    // (a) One row's details edited.
    let mut statements = DROP_TRIGGERS.to_vec();
    let update = format!(
        "UPDATE audit SET details = replace(details, '}}', ',\"x\":1}}') WHERE seq = {middle}"
    );
    statements.push(&update);
    sql(&edited.join("ferry.db"), &statements);
    assert_ne!(
        audit_rows(&edited.join("ferry.db"))[seqs.len() / 2].details,
        rows[seqs.len() / 2].details,
        "the edit took"
    );
    let out = verify(&edited);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains(&format!("audit entry {middle} ")),
        "names entry {middle}: {out:?}"
    );

    // (b) A middle row deleted.
    let mut statements = DROP_TRIGGERS.to_vec();
    let delete = format!("DELETE FROM audit WHERE seq = {middle}");
    statements.push(&delete);
    sql(&deleted.join("ferry.db"), &statements);
    let out = verify(&deleted);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains(&format!("audit entry {middle} ")),
        "names entry {middle}: {out:?}"
    );

    // (c) The newest two rows truncated: only the checkpoint outside the database shows it.
    let mut statements = DROP_TRIGGERS.to_vec();
    let truncate = format!("DELETE FROM audit WHERE seq > {}", head - 2);
    statements.push(&truncate);
    sql(&truncated.join("ferry.db"), &statements);
    assert_eq!(
        audit_rows(&truncated.join("ferry.db")).len(),
        rows.len() - 2
    );
    let out = verify(&truncated);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains(&format!("entry {}", head - 2))
            && out.stderr.contains(&format!("entry {head}")),
        "names where the chain ends and the checkpointed head: {out:?}"
    );

    // The JSON form says the same.
    let out = ferry(
        server.root(),
        &[
            "--data-dir",
            &truncated.display().to_string(),
            "audit",
            "verify",
            "--output",
            "json",
        ],
        &[],
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(out.json()["ok"], false);

    // The untouched original still verifies.
    assert_eq!(verify(&server.data).code, 0);
}
