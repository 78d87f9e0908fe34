//! Secrets and parameters in the store: scopes and precedence, versions, removal, use by
//! runs, master key rotation, and that no value is ever stored or audited in clear.

use ferry_core::Actor;
use ferry_secrets::MasterKey;
use ferry_store::{Scope, SecretKind, SecretName, Store, StoreConfig};

struct Fixture {
    dir: tempfile::TempDir,
    store: Store,
    project: i64,
}

fn admin() -> Actor {
    Actor {
        name: "admin".into(),
        source: "test".into(),
    }
}

fn key() -> MasterKey {
    MasterKey::from_bytes([7; 32])
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        path: dir.path().join("ferry.db"),
        audit_checkpoint: dir.path().join("audit.head"),
    };
    let store = Store::open(&config, &key()).await.unwrap();
    let project = store
        .create_project(&admin(), "net", "/tmp/repo")
        .await
        .unwrap()
        .id;
    store
        .create_project(&admin(), "other", "/tmp/repo2")
        .await
        .unwrap();
    Fixture {
        dir,
        store,
        project,
    }
}

fn name(s: &str) -> SecretName {
    SecretName::parse(s).unwrap()
}

fn env_scope(p: &str, e: &str) -> Scope {
    Scope::Environment {
        project: p.into(),
        environment: e.into(),
    }
}

async fn set(f: &Fixture, kind: SecretKind, scope: &Scope, n: &str, value: &str) -> i64 {
    f.store
        .set_secret(&admin(), &key(), kind, scope, &name(n), value.as_bytes())
        .await
        .unwrap()
        .version
}

async fn resolve(f: &Fixture, env: Option<&str>, n: &str) -> Option<(String, Scope, i64)> {
    let (found, missing) = f
        .store
        .resolve_values(&key(), f.project, env, &[(SecretKind::Secret, name(n))])
        .await
        .unwrap();
    assert_eq!(found.len() + missing.len(), 1);
    found.into_iter().next().map(|r| {
        (
            String::from_utf8(r.value.expose().to_vec()).unwrap(),
            r.scope,
            r.version,
        )
    })
}

#[tokio::test]
async fn narrowest_scope_wins_and_versions_count_up() {
    let f = fixture().await;
    let s = SecretKind::Secret;
    assert_eq!(set(&f, s, &Scope::Global, "DB", "global-value").await, 1);
    assert_eq!(
        resolve(&f, Some("prod"), "DB").await.unwrap().0,
        "global-value"
    );
    set(&f, s, &Scope::Project("net".into()), "DB", "project-value").await;
    set(&f, s, &env_scope("net", "prod"), "DB", "prod-value-1").await;
    assert_eq!(
        set(&f, s, &env_scope("net", "prod"), "DB", "prod-value-2").await,
        2
    );
    // Another project's values never apply.
    set(&f, s, &env_scope("other", "dev"), "DB", "other-dev").await;

    let (v, scope, version) = resolve(&f, Some("prod"), "DB").await.unwrap();
    assert_eq!((v.as_str(), version), ("prod-value-2", 2));
    assert_eq!(scope, env_scope("net", "prod"));
    assert_eq!(
        resolve(&f, Some("dev"), "DB").await.unwrap().0,
        "project-value"
    );
    // No environment (a branch the pipeline does not deploy): no environment values.
    assert_eq!(resolve(&f, None, "DB").await.unwrap().0, "project-value");
    assert!(resolve(&f, Some("prod"), "NOPE").await.is_none());

    // A parameter of the same name is a different entry.
    assert_eq!(
        set(&f, SecretKind::Param, &Scope::Global, "DB", "param").await,
        1
    );
    let listed = f.store.list_secrets(s, Some("net")).await.unwrap();
    let scopes: Vec<String> = listed.iter().map(|m| m.scope.to_string()).collect();
    assert_eq!(
        scopes,
        ["global", "project net", "project net environment prod"]
    );
    assert_eq!(f.store.list_secrets(s, None).await.unwrap().len(), 4);
}

#[tokio::test]
async fn bad_input_is_refused_with_a_clear_error() {
    let f = fixture().await;
    let set_raw = |scope: Scope, value: &'static [u8]| {
        let store = f.store.clone();
        async move {
            store
                .set_secret(
                    &admin(),
                    &key(),
                    SecretKind::Secret,
                    &scope,
                    &name("X"),
                    value,
                )
                .await
                .unwrap_err()
                .to_string()
        }
    };
    assert_eq!(
        set_raw(Scope::Global, b"").await,
        "the secret value is empty"
    );
    assert!(set_raw(Scope::Global, b"abc").await.contains("at least 4"));
    assert_eq!(
        set_raw(Scope::Project("nope".into()), b"long enough").await,
        "project `nope` not found"
    );
    let err = f
        .store
        .remove_secret(&admin(), SecretKind::Secret, &Scope::Global, &name("X"))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "secret `X (global)` not found");
}

#[tokio::test]
async fn remove_erases_values_and_set_again_continues_versions() {
    let f = fixture().await;
    let s = SecretKind::Secret;
    set(&f, s, &Scope::Global, "TOKEN", "first-value").await;
    set(&f, s, &Scope::Global, "TOKEN", "second-value").await;
    f.store
        .remove_secret(&admin(), s, &Scope::Global, &name("TOKEN"))
        .await
        .unwrap();
    assert!(resolve(&f, None, "TOKEN").await.is_none());
    assert!(f.store.list_secrets(s, None).await.unwrap().is_empty());
    assert_eq!(set(&f, s, &Scope::Global, "TOKEN", "third-value").await, 3);
    assert_eq!(resolve(&f, None, "TOKEN").await.unwrap().0, "third-value");
}

#[tokio::test]
async fn use_is_recorded_once_per_run_and_audited_without_values() {
    let f = fixture().await;
    set(
        &f,
        SecretKind::Secret,
        &Scope::Global,
        "API_KEY",
        "canary-api-key-value",
    )
    .await;
    set(
        &f,
        SecretKind::Param,
        &Scope::Project("net".into()),
        "REGION",
        "canary-region",
    )
    .await;
    let wanted = [
        (SecretKind::Secret, name("API_KEY")),
        (SecretKind::Param, name("REGION")),
    ];
    let (found, missing) = f
        .store
        .resolve_values(&key(), f.project, Some("dev"), &wanted)
        .await
        .unwrap();
    assert!(missing.is_empty());
    let run = insert_run(&f).await;
    let used: Vec<_> = found.iter().collect();
    f.store
        .record_secret_use(&Actor::system("engine"), run, &used)
        .await
        .unwrap();
    f.store
        .record_secret_use(&Actor::system("engine"), run, &used)
        .await
        .unwrap();
    let versions = f.store.run_secret_versions(run).await.unwrap();
    assert_eq!(versions.len(), 2);
    let meta = f
        .store
        .list_secrets(SecretKind::Secret, None)
        .await
        .unwrap();
    assert_eq!(meta[0].last_used_run, Some(run));

    let audit = f.store.audit_records(0, 1000).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(
        actions.iter().filter(|a| a.ends_with(".use")).count(),
        2,
        "{actions:?}"
    );
    assert!(actions.contains(&"secret.set") && actions.contains(&"param.set"));
    let use_entry = audit.iter().find(|r| r.action == "secret.use").unwrap();
    assert!(
        use_entry.details.contains("\"version\":1"),
        "{}",
        use_entry.details
    );
    for r in &audit {
        let all = format!("{} {} {}", r.target, r.details, r.outcome);
        assert!(!all.contains("canary"), "value in audit: {all}");
    }
    assert!(f.store.verify_audit().await.unwrap().is_ok());
    scan_data_dir(&f, &["canary-api-key-value", "canary-region"]);
}

#[tokio::test]
async fn rotation_rewraps_every_version() {
    let f = fixture().await;
    set(&f, SecretKind::Secret, &Scope::Global, "A", "value-a-1").await;
    set(&f, SecretKind::Secret, &Scope::Global, "A", "value-a-2").await;
    set(
        &f,
        SecretKind::Param,
        &env_scope("net", "prod"),
        "B",
        "value-b",
    )
    .await;
    let new = MasterKey::from_bytes([8; 32]);
    f.store
        .commit_rotation(&admin(), &key(), &new, &[])
        .await
        .unwrap();
    // The old key opens nothing any more; the new one opens every version.
    assert!(f
        .store
        .resolve_values(&key(), f.project, None, &[(SecretKind::Secret, name("A"))])
        .await
        .is_err());
    let (found, _) = f
        .store
        .resolve_values(
            &new,
            f.project,
            Some("prod"),
            &[
                (SecretKind::Secret, name("A")),
                (SecretKind::Param, name("B")),
            ],
        )
        .await
        .unwrap();
    let values: Vec<&[u8]> = found.iter().map(|r| r.value.expose()).collect();
    assert_eq!(values, [&b"value-a-2"[..], b"value-b"]);
    let (_, b) = f
        .store
        .param_value(&new, &env_scope("net", "prod"), &name("B"))
        .await
        .unwrap();
    assert_eq!(b.expose(), b"value-b");
    let rotation = f
        .store
        .audit_records(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.action == "admin.rotate_master_key")
        .unwrap();
    assert!(
        rotation.details.contains("\"secret_versions\":3"),
        "{}",
        rotation.details
    );
}

async fn insert_run(f: &Fixture) -> i64 {
    let run = f
        .store
        .create_run(
            &admin(),
            &ferry_store::NewRun {
                project_id: f.project,
                pipeline: "p".into(),
                pipeline_path: "ferry.yaml".into(),
                git_ref: "main".into(),
                commit_sha: "0".repeat(40),
                spec_yaml: String::new(),
                first_environment: "dev".into(),
                stages: Vec::new(),
                kind: ferry_store::RunKind::Deploy,
                options: ferry_store::RunOptions::default(),
                source_run: None,
                commit_author: None,
            },
        )
        .await
        .unwrap();
    run.id.0
}

/// Every file of the data dir (database, WAL, checkpoint) is free of the plaintexts.
fn scan_data_dir(f: &Fixture, needles: &[&str]) {
    for entry in std::fs::read_dir(f.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        for n in needles {
            assert!(
                !bytes.windows(n.len()).any(|w| w == n.as_bytes()),
                "{n} found in {}",
                path.display()
            );
        }
    }
}
