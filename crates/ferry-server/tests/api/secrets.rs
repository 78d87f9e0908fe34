//! `/api/v1/secrets` and `/api/v1/params`: set, list, remove, read parameters; every bad
//! input answered with a 4xx JSON error; no route ever returns a secret's value.

use ferry_api::{ScopeQuery, SecretKind, SecretSet};
use serde_json::json;

use crate::common::{api_error, TestServer};

const CANARY: &str = "canary-Zq8v1-secret-value";

fn value(v: &str) -> SecretSet {
    SecretSet {
        value: v.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_list_remove_and_the_value_never_comes_back() {
    let mut server = TestServer::start().await;
    server.project("net", &[("main.tf", "")]).await;
    let admin = &server.admin;
    let global = ScopeQuery::default();
    let prod = ScopeQuery::new(Some("net"), Some("prod"));

    let info = admin
        .secrets_set(SecretKind::Secret, "DB_PASSWORD", &global, &value(CANARY))
        .await
        .unwrap();
    assert_eq!((info.kind.as_str(), info.version), ("secret", 1));
    assert_eq!(info.project, None);
    let info = admin
        .secrets_set(SecretKind::Secret, "DB_PASSWORD", &prod, &value(CANARY))
        .await
        .unwrap();
    assert_eq!(
        (info.project.as_deref(), info.environment.as_deref()),
        (Some("net"), Some("prod"))
    );
    let info = admin
        .secrets_set(
            SecretKind::Secret,
            "DB_PASSWORD",
            &prod,
            &value("second-value"),
        )
        .await
        .unwrap();
    assert_eq!(info.version, 2);
    assert_eq!(info.created_by, "admin");

    let listed = admin.secrets_list(SecretKind::Secret, None).await.unwrap();
    assert_eq!(listed.len(), 2);
    let listed = admin
        .secrets_list(SecretKind::Secret, Some("other"))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1, "only the global one");

    // A non-admin may list (metadata) but not set or remove.
    let user = server.user("viewer").await;
    assert_eq!(
        user.secrets_list(SecretKind::Secret, None)
            .await
            .unwrap()
            .len(),
        2
    );
    let (status, err) = api_error(
        user.secrets_set(SecretKind::Secret, "X_Y", &global, &value(CANARY))
            .await,
    );
    assert_eq!((status, err.code.as_str()), (403, "forbidden"));

    // Every read route: no value. A secret has no GET of its own.
    for path in [
        "/api/v1/secrets",
        "/api/v1/secrets?project=net",
        "/api/v1/secrets/DB_PASSWORD",
        "/api/v1/secrets/DB_PASSWORD?project=net&env=prod",
        "/api/v1/params/DB_PASSWORD",
    ] {
        let answer = server.call("GET", path, None).await;
        assert!(!answer.text.contains(CANARY), "{path}: {}", answer.text);
        assert!(answer.status == 200 || answer.status >= 400, "{path}");
    }
    assert_eq!(
        server
            .call("GET", "/api/v1/secrets/DB_PASSWORD", None)
            .await
            .status,
        405
    );

    let removed = admin
        .secrets_delete(SecretKind::Secret, "DB_PASSWORD", &prod)
        .await
        .unwrap();
    assert_eq!(removed.version, 2);
    assert_eq!(
        admin
            .secrets_list(SecretKind::Secret, None)
            .await
            .unwrap()
            .len(),
        1
    );
    let (status, err) = api_error(
        admin
            .secrets_delete(SecretKind::Secret, "DB_PASSWORD", &prod)
            .await,
    );
    assert_eq!((status, err.code.as_str()), (404, "not_found"));

    // The audit trail names set and remove with versions, never the value.
    let db = std::fs::read(server.data_dir().join("ferry.db")).unwrap();
    let wal = std::fs::read(server.data_dir().join("ferry.db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        assert!(!bytes.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()));
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn params_are_readable() {
    let mut server = TestServer::start().await;
    server.project("net", &[("main.tf", "")]).await;
    let admin = &server.admin;
    let scope = ScopeQuery::new(Some("net"), None);
    admin
        .secrets_set(SecretKind::Param, "REGION", &scope, &value("eu-west-1"))
        .await
        .unwrap();
    let got = admin.params_get("REGION", &scope).await.unwrap();
    assert_eq!((got.value.as_str(), got.param.version), ("eu-west-1", 1));
    // Exactly that scope: the global one does not exist.
    let (status, _) = api_error(admin.params_get("REGION", &ScopeQuery::default()).await);
    assert_eq!(status, 404);
    // A one-character parameter is fine (it is not masked).
    admin
        .secrets_set(SecretKind::Param, "FLAG", &scope, &value("1"))
        .await
        .unwrap();
    let listed = admin.secrets_list(SecretKind::Param, None).await.unwrap();
    assert_eq!(listed.len(), 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_4xx_and_never_echoes_the_body() {
    let mut server = TestServer::start().await;
    server.project("net", &[("main.tf", "")]).await;
    let cases: &[(&str, &str, Option<serde_json::Value>, u16, &str)] = &[
        (
            "PUT",
            "/api/v1/secrets/OK_NAME",
            Some(json!({ "value": "" })),
            400,
            "bad_request",
        ),
        (
            "PUT",
            "/api/v1/secrets/OK_NAME",
            Some(json!({ "value": "abc" })),
            400,
            "bad_request",
        ),
        (
            "PUT",
            "/api/v1/secrets/1BAD",
            Some(json!({ "value": CANARY })),
            400,
            "bad_request",
        ),
        (
            "PUT",
            "/api/v1/secrets/bad-name",
            Some(json!({ "value": CANARY })),
            400,
            "bad_request",
        ),
        (
            "PUT",
            "/api/v1/secrets/OK_NAME?env=prod",
            Some(json!({ "value": CANARY })),
            422,
            "invalid_scope",
        ),
        (
            "PUT",
            "/api/v1/secrets/OK_NAME?scope=team",
            Some(json!({ "value": CANARY })),
            400,
            "invalid_query",
        ),
        (
            "PUT",
            "/api/v1/secrets/OK_NAME?project=nope",
            Some(json!({ "value": CANARY })),
            404,
            "not_found",
        ),
        (
            "PUT",
            "/api/v1/secrets/OK_NAME",
            Some(json!({ "value": 12345678 })),
            400,
            "invalid_body",
        ),
        (
            "PUT",
            "/api/v1/secrets/OK_NAME",
            Some(json!({ "value": CANARY, "extra": CANARY })),
            400,
            "invalid_body",
        ),
        (
            "PUT",
            "/api/v1/secrets/OK_NAME",
            Some(json!(CANARY)),
            400,
            "invalid_body",
        ),
        (
            "PUT",
            "/api/v1/params/OK_NAME",
            Some(json!({ "value": "" })),
            400,
            "bad_request",
        ),
        (
            "DELETE",
            "/api/v1/secrets/NOT_THERE",
            None,
            404,
            "not_found",
        ),
        ("GET", "/api/v1/params/NOT_THERE", None, 404, "not_found"),
        // Scopes are project and environment names, nothing else.
        (
            "PUT",
            "/api/v1/secrets/OK_NAME?project=net&env=../../etc",
            Some(json!({ "value": CANARY })),
            422,
            "invalid_name",
        ),
        (
            "PUT",
            "/api/v1/params/OK_NAME?project=net&env=a%00b",
            Some(json!({ "value": CANARY })),
            422,
            "invalid_name",
        ),
        (
            "GET",
            "/api/v1/params/OK_NAME?project=net&env=a%00b",
            None,
            422,
            "invalid_name",
        ),
        (
            "GET",
            "/api/v1/secrets?project=..%2F..",
            None,
            422,
            "invalid_name",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let answer = server.call(method, path, body.clone()).await;
        let err = answer.assert_error(*status, code);
        assert!(
            !answer.text.contains(CANARY),
            "{method} {path}: {}",
            answer.text
        );
        assert!(!err.message.contains("12345678"), "{}", err.message);
    }
    let answer = server
        .call_raw(
            "PUT",
            "/api/v1/secrets/OK_NAME",
            "application/json",
            &format!("{{\"value\": \"{CANARY}"),
        )
        .await;
    answer.assert_error(400, "invalid_body");
    assert!(!answer.text.contains(CANARY));
    // A body over the limit is refused with a JSON error, not axum's plain text. (3 MiB, not
    // 100 MB: this binary's bounded-memory test measures the process's peak RSS.)
    let huge = format!("{{\"value\": \"{}\"}}", "x".repeat(3 * 1024 * 1024));
    // On a connection of its own: the server answers before reading the whole body and closes
    // it, which a pooled connection would carry into the next request.
    let response = reqwest::Client::new()
        .put(format!("{}/api/v1/secrets/OK_NAME", server.url))
        .bearer_auth(server.admin_token())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let error: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error["code"], "too_large", "{error}");
    // And a body of the wrong type.
    let answer = server
        .call_raw("POST", "/api/v1/projects", "text/plain", "{}")
        .await;
    assert!(
        answer.status == 415 || answer.status == 400,
        "{}",
        answer.text
    );
    assert!(answer.json.is_object(), "{}", answer.text);

    // Failed attempts are audited by code only.
    let audit = std::fs::read(server.data_dir().join("ferry.db")).unwrap();
    assert!(!audit.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()));
    server.stop().await;
}
