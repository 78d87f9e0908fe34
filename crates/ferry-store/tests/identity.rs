//! Users, teams, grants, scoped tokens, sessions and login failures on a real SQLite file:
//! each change is audited in its own transaction, grants reach users through teams, and a
//! disabled user's sessions end.

use ferry_core::{Actor, Grant};
use ferry_secrets::MasterKey;
use ferry_store::{NewTokenRow, Store, StoreConfig, Subject};

async fn open(dir: &std::path::Path) -> Store {
    let config = StoreConfig {
        path: dir.join("ferry.db"),
        audit_checkpoint: dir.join("audit.head"),
    };
    Store::open(&config, &MasterKey::from_bytes([7; 32]))
        .await
        .unwrap()
}

fn admin() -> Actor {
    Actor {
        name: "admin".into(),
        source: "test".into(),
    }
}

fn g(text: &str) -> Grant {
    Grant::parse(text).unwrap()
}

#[tokio::test]
async fn grants_reach_users_directly_and_through_teams() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let a = admin();
    store
        .create_user(&a, "ann", Some("$argon2id$x"))
        .await
        .unwrap();
    let bob = store.create_user(&a, "bob", None).await.unwrap();
    assert!(matches!(
        store.create_user(&a, "bob", None).await,
        Err(ferry_store::Error::AlreadyExists { .. })
    ));
    // Users and service tokens share the namespace of actors.
    let svc = NewTokenRow {
        name: "ci",
        hash: "h0",
        hint: "ferry_y…",
        admin: false,
        user: None,
        scopes: &[],
        expires_at: None,
    };
    store.create_scoped_token(&a, &svc).await.unwrap();
    assert!(matches!(
        store.create_user(&a, "ci", None).await,
        Err(ferry_store::Error::Conflict(_))
    ));
    let named_like_bob = NewTokenRow { name: "bob", ..svc };
    assert!(matches!(
        store.create_scoped_token(&a, &named_like_bob).await,
        Err(ferry_store::Error::Conflict(_))
    ));
    store.create_team(&a, "platform").await.unwrap();
    store
        .set_team_member(&a, "platform", "bob", true)
        .await
        .unwrap();
    assert!(matches!(
        store.set_team_member(&a, "platform", "bob", true).await,
        Err(ferry_store::Error::Conflict(_))
    ));
    assert!(matches!(
        store.set_team_member(&a, "platform", "nobody", true).await,
        Err(ferry_store::Error::NotFound { what: "user", .. })
    ));
    let team = Subject::Team("platform".into());
    store
        .set_grant(&a, &team, &g("approver@net/staging"), true)
        .await
        .unwrap();
    store
        .set_grant(&a, &Subject::User("bob".into()), &g("viewer"), true)
        .await
        .unwrap();
    let mut grants = store.user_grants(bob.id).await.unwrap();
    grants.sort();
    assert_eq!(grants, [g("viewer"), g("approver@net/staging")]);
    assert_eq!(store.user_teams("bob").await.unwrap(), ["platform"]);
    assert!(store.user_teams("ann").await.unwrap().is_empty());
    assert_eq!(store.list_grants().await.unwrap().len(), 2);

    // Leaving the team takes its grants away.
    store
        .set_team_member(&a, "platform", "bob", false)
        .await
        .unwrap();
    assert_eq!(store.user_grants(bob.id).await.unwrap(), [g("viewer")]);
    store
        .set_grant(&a, &team, &g("approver@net/staging"), false)
        .await
        .unwrap();
    assert!(matches!(
        store
            .set_grant(&a, &team, &g("approver@net/staging"), false)
            .await,
        Err(ferry_store::Error::Conflict(_))
    ));

    let teams = store.list_teams().await.unwrap();
    assert_eq!(
        (teams[0].name.as_str(), teams[0].members.len()),
        ("platform", 0)
    );

    let records = store.audit_records(0, 100).await.unwrap();
    let actions: Vec<&str> = records.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "user.create",
            "user.create",
            "token.create",
            "team.create",
            "team.add",
            "role.grant",
            "role.grant",
            "team.remove",
            "role.revoke",
        ]
    );
    assert!(store.verify_audit().await.unwrap().is_ok());
}

#[tokio::test]
async fn scoped_tokens_sessions_and_login_failures() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let a = admin();
    let carol = store
        .create_user(&a, "carol", Some("$argon2id$x"))
        .await
        .unwrap();
    let scopes = [g("viewer@net"), g("approver@net/staging")];
    let token = store
        .create_scoped_token(
            &a,
            &NewTokenRow {
                name: "carol-laptop",
                hash: "h1",
                hint: "ferry_x…",
                admin: false,
                user: Some("carol"),
                scopes: &scopes,
                expires_at: Some("2030-01-01T00:00:00.000Z"),
            },
        )
        .await
        .unwrap();
    assert_eq!(token.user_id, Some(carol.id));
    assert_eq!(
        token.expires_at.as_deref(),
        Some("2030-01-01T00:00:00.000Z")
    );
    assert_eq!(store.token_scopes(token.id).await.unwrap(), scopes);
    let found = store.token_by_hash("h1").await.unwrap().unwrap();
    assert_eq!(found.id, token.id);

    // Sessions: live until revoked, and a disabled user's sessions end.
    let actor = Actor {
        name: "carol".into(),
        source: "127.0.0.1:1".into(),
    };
    let hour = chrono::Duration::hours(1);
    let session = store
        .create_session(&actor, &carol, "s1", chrono::Duration::hours(8))
        .await
        .unwrap();
    assert!(store.session_by_hash("s1", hour).await.unwrap().is_some());
    assert!(store.session_by_hash("s2", hour).await.unwrap().is_none());
    // Idle for longer than allowed: gone.
    assert!(store
        .session_by_hash("s1", chrono::Duration::milliseconds(-1))
        .await
        .unwrap()
        .is_none());
    // Past its absolute expiry: gone, however recently used.
    store
        .create_session(&actor, &carol, "s0", chrono::Duration::milliseconds(-1))
        .await
        .unwrap();
    assert!(store.session_by_hash("s0", hour).await.unwrap().is_none());
    store.revoke_session(&actor, session.id).await.unwrap();
    assert!(store.session_by_hash("s1", hour).await.unwrap().is_none());
    store
        .create_session(&actor, &carol, "s3", chrono::Duration::hours(8))
        .await
        .unwrap();
    store.set_user_disabled(&a, "carol", true).await.unwrap();
    assert!(store.session_by_hash("s3", hour).await.unwrap().is_none());

    // Failed logins count per account and per source; throttled ones are audited only.
    let since = chrono::Utc::now() - chrono::Duration::minutes(1);
    let mallory = Actor {
        name: "carol".into(),
        source: "10.0.0.9".into(),
    };
    store
        .record_login_refusal(&mallory, "failed", "wrong password")
        .await
        .unwrap();
    store
        .record_login_refusal(&mallory, "throttled", "too many")
        .await
        .unwrap();
    assert_eq!(
        store
            .login_failures("carol", "10.0.0.9", since)
            .await
            .unwrap(),
        (1, 1)
    );
    assert_eq!(
        store
            .login_failures("dave", "10.0.0.8", since)
            .await
            .unwrap(),
        (0, 0)
    );
    let records = store.audit_records(0, 100).await.unwrap();
    let logins: Vec<(&str, &str)> = records
        .iter()
        .filter(|r| r.action == "login")
        .map(|r| (r.actor.as_str(), r.outcome.as_str()))
        .collect();
    assert_eq!(
        logins,
        [
            ("carol", "ok"),
            ("carol", "ok"),
            ("carol", "ok"),
            ("carol", "failed"),
            ("carol", "throttled")
        ]
    );
    assert!(records.iter().any(|r| r.action == "logout"));
    assert!(records.iter().any(|r| r.action == "user.disable"));
    assert!(
        !records.iter().any(|r| r.details.contains("h1")),
        "no token hash in audit"
    );
}
