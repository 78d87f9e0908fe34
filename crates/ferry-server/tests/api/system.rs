//! The operational surface: health and readiness probes, Prometheus metrics that count runs
//! and time actions and requests, and an OpenAPI document that lists exactly the routes the
//! router serves (so a route added to `app()` without documentation fails here).

use std::collections::BTreeSet;
use std::time::Duration;

use ferry_test_support::{terraform_data_config, MINIMAL_FERRY_YAML};

use crate::common::{TestServer, RUN_TIMEOUT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_answer_without_a_token() {
    let server = TestServer::start().await;
    let health = server.call_as(None, "GET", "/healthz", None).await;
    assert_eq!(
        (health.status, &health.json),
        (200, &serde_json::json!({"status": "ok"}))
    );
    let ready = server.call_as(None, "GET", "/readyz", None).await;
    assert_eq!(
        (ready.status, &ready.json["status"]),
        (200, &serde_json::json!("ready"))
    );
    // Ready also says how actions are confined (issue 12: the sandbox, or its opt-out).
    assert!(
        ready.json["sandbox"]
            .as_str()
            .is_some_and(|s| s.starts_with("landlock (ABI ")),
        "{}",
        ready.json
    );
    assert!(
        ready.headers.get("x-request-id").is_some(),
        "every response carries a request id"
    );
    server.stop().await;
}

/// The value of the exposition line whose name is `name` and whose labels include all of
/// `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name && labels.iter().all(|l| rest.contains(l)))
                .then(|| value.parse().ok())?
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_runs_by_status_and_time_actions_and_requests() {
    let mut server = TestServer::start().await;
    server
        .project(
            "ok",
            &[
                ("ferry.yaml", MINIMAL_FERRY_YAML),
                ("main.tf", &terraform_data_config(1)),
            ],
        )
        .await;
    let failing = format!("{MINIMAL_FERRY_YAML}stages:\n  test: [\"exit 3\"]\n");
    server
        .project(
            "bad",
            &[
                ("ferry.yaml", &failing),
                ("main.tf", &terraform_data_config(1)),
            ],
        )
        .await;

    let a = server
        .admin
        .runs_create("ok", &ferry_api::RunCreate::default())
        .await
        .unwrap()
        .id;
    let b = server
        .admin
        .runs_create("ok", &ferry_api::RunCreate::default())
        .await
        .unwrap()
        .id;
    let c = server
        .admin
        .runs_create("bad", &ferry_api::RunCreate::default())
        .await
        .unwrap()
        .id;
    server.wait_status(a, "Succeeded", RUN_TIMEOUT).await;
    server.wait_status(b, "Succeeded", RUN_TIMEOUT).await;
    let failed = server.wait_status(c, "Failed", RUN_TIMEOUT).await;
    let reason = failed.run.reason.unwrap_or_default();
    assert!(
        reason.contains("exit 3") || reason.contains("exit code 3") || reason.contains('3'),
        "{reason:?}"
    );

    let resp = server
        .http
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(
        ct.starts_with("application/openmetrics-text") || ct.starts_with("text/plain"),
        "{ct}"
    );
    let text = resp.text().await.unwrap();
    assert_eq!(
        sample(&text, "ferry_runs", &["status=\"Succeeded\""]),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "ferry_runs", &["status=\"Failed\""]),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "ferry_runs", &["status=\"Cancelled\""]),
        Some(0.0)
    );
    // The second `ok` run found nothing to change and skipped its apply.
    assert_eq!(
        sample(
            &text,
            "ferry_action_duration_seconds_count",
            &["kind=\"terraform_apply\"", "outcome=\"succeeded\""]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "ferry_action_duration_seconds_count",
            &["kind=\"terraform_plan\"", "outcome=\"succeeded\""]
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &text,
            "ferry_action_duration_seconds_count",
            &["kind=\"command\"", "outcome=\"failed\""]
        ),
        Some(1.0)
    );
    let apply_seconds = sample(
        &text,
        "ferry_action_duration_seconds_sum",
        &["kind=\"terraform_apply\""],
    )
    .unwrap();
    assert!(apply_seconds > 0.0);
    // Requests are labelled by route template, not by raw path.
    let gets = sample(
        &text,
        "ferry_http_request_duration_seconds_count",
        &[
            "method=\"GET\"",
            "route=\"/api/v1/runs/{id}\"",
            "status=\"200\"",
        ],
    );
    assert!(gets.is_some_and(|n| n >= 3.0), "{text}");
    assert!(
        sample(
            &text,
            "ferry_http_request_duration_seconds_count",
            &[
                "method=\"POST\"",
                "route=\"/api/v1/projects/{project}/runs\"",
                "status=\"201\""
            ]
        ) == Some(3.0)
    );
    assert!(
        !text.contains(&format!("/api/v1/runs/{a}\"")),
        "a raw path became a label"
    );
    server.stop().await;
}

/// Every (method, path) the router serves. Keep in sync with `app()`; the test below checks
/// this list against the source of `app()`, the OpenAPI document and the live router.
pub(crate) const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/api/v1/whoami"),
    ("get", "/api/v1/approvals"),
    ("get", "/api/v1/audit"),
    ("get", "/api/v1/events"),
    ("get", "/api/v1/events/stream"),
    ("get", "/api/v1/projects/{project}/deployments"),
    ("get", "/api/v1/runs/{id}/approvals/{environment}"),
    ("post", "/api/v1/projects/{project}/promote"),
    ("post", "/api/v1/projects/{project}/rollback"),
    ("post", "/api/v1/runs/{id}/retry"),
    ("get", "/api/v1/queue"),
    ("get", "/api/v1/projects"),
    ("post", "/api/v1/projects"),
    ("get", "/api/v1/projects/{project}"),
    ("patch", "/api/v1/projects/{project}"),
    ("get", "/api/v1/projects/{project}/pipelines"),
    ("post", "/api/v1/projects/{project}/runs"),
    ("get", "/api/v1/runs"),
    ("get", "/api/v1/runs/{id}"),
    ("post", "/api/v1/runs/{id}/cancel"),
    ("post", "/api/v1/runs/{id}/approvals"),
    ("get", "/api/v1/runs/{id}/logs"),
    ("get", "/api/v1/runs/{id}/logs/stream"),
    ("get", "/api/v1/tokens"),
    ("post", "/api/v1/tokens"),
    ("delete", "/api/v1/tokens/{name}"),
    ("post", "/api/v1/login"),
    ("post", "/api/v1/logout"),
    ("get", "/api/v1/users"),
    ("post", "/api/v1/users"),
    ("patch", "/api/v1/users/{name}"),
    ("get", "/api/v1/teams"),
    ("post", "/api/v1/teams"),
    ("post", "/api/v1/teams/{team}/members"),
    ("delete", "/api/v1/teams/{team}/members/{user}"),
    ("get", "/api/v1/grants"),
    ("post", "/api/v1/grants"),
    ("post", "/api/v1/grants/revoke"),
    ("get", "/api/v1/projects/{project}/waivers"),
    ("post", "/api/v1/projects/{project}/waivers"),
    ("delete", "/api/v1/waivers/{id}"),
    ("get", "/api/v1/states"),
    ("get", "/api/v1/states/{project}/{environment}"),
    ("delete", "/api/v1/states/{project}/{environment}"),
    ("get", "/api/v1/states/{project}/{environment}/versions"),
    ("get", "/api/v1/states/{project}/{environment}/raw"),
    ("get", "/api/v1/states/{project}/{environment}/diff"),
    ("get", "/api/v1/states/{project}/{environment}/lock"),
    ("delete", "/api/v1/states/{project}/{environment}/lock"),
    ("post", "/api/v1/states/{project}/{environment}/rollback"),
    ("post", "/api/v1/states/{project}/{environment}/push"),
    ("put", "/api/v1/states/{project}/{environment}/retention"),
    ("get", "/api/v1/secrets"),
    ("put", "/api/v1/secrets/{name}"),
    ("delete", "/api/v1/secrets/{name}"),
    ("get", "/api/v1/params"),
    ("get", "/api/v1/params/{name}"),
    ("put", "/api/v1/params/{name}"),
    ("delete", "/api/v1/params/{name}"),
];

const METHODS: &[&str] = &["get", "post", "put", "patch", "delete"];

/// The routes registered in `app()`, read from its source: `let NAME = Router::new()...;`
/// blocks mounted with `.nest(PREFIX, NAME)`, and the top-level router's own `.route(...)`s.
fn routes_in_source() -> BTreeSet<(String, String)> {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/lib.rs"))
        .expect("read src/lib.rs");
    let start = src.find("pub fn app(").expect("fn app in src/lib.rs");
    let body = &src[start..];
    let body = &body[..body.find("\n}\n").expect("end of fn app")];

    fn routes_of(block: &str, prefix: &str, out: &mut BTreeSet<(String, String)>) {
        for piece in block.split(".route(").skip(1) {
            let path = piece.split('"').nth(1).expect("route path literal");
            let end = [
                ".nest(",
                ".fallback(",
                ".layer(",
                ".method_not_allowed_fallback(",
                ".with_state(",
                ";",
            ]
            .iter()
            .filter_map(|m| piece.find(m))
            .min()
            .unwrap_or(piece.len());
            let handlers = &piece[..end];
            let bytes = handlers.as_bytes();
            for method in METHODS {
                let needle = format!("{method}(");
                let found = handlers.match_indices(&needle).any(|(i, _)| {
                    i == 0
                        || !(bytes[i - 1].is_ascii_alphanumeric()
                            || bytes[i - 1] == b'_'
                            || bytes[i - 1] == b':')
                });
                if found {
                    out.insert(((*method).to_owned(), format!("{prefix}{path}")));
                }
            }
        }
    }

    let mut out = BTreeSet::new();
    let mut top = body.to_owned();
    while let Some(let_at) = top.find("let ") {
        let rest = &top[let_at + 4..];
        let name = rest
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .next()
            .unwrap()
            .to_owned();
        let stmt_end = let_at + 4 + rest.find(';').expect("end of let");
        let block = top[let_at..stmt_end].to_owned();
        let nest = format!(", {name})");
        let prefix = top
            .match_indices(".nest(\"")
            .map(|(i, _)| &top[i + 7..])
            .find(|after| {
                after
                    .split(')')
                    .next()
                    .is_some_and(|args| format!("{args})").ends_with(&nest))
            })
            .and_then(|after| after.split('"').next())
            .unwrap_or_else(|| panic!("router `{name}` is built but not nested"))
            .to_owned();
        routes_of(&block, &prefix, &mut out);
        top.replace_range(let_at..=stmt_end, "");
    }
    routes_of(&top, "", &mut out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_exactly_the_routes_the_router_serves() {
    let mut server = TestServer::start().await;
    let listed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(listed.len(), ROUTES.len(), "duplicate in ROUTES");

    // 1. The list is what `app()` registers.
    assert_eq!(
        routes_in_source(),
        listed,
        "ROUTES and the routes of app() differ"
    );

    // 2. The document is valid JSON and documents exactly these routes.
    let doc = server
        .call_as(None, "GET", "/api/v1/openapi.json", None)
        .await;
    assert_eq!(doc.status, 200, "{}", doc.text);
    assert!(
        doc.json["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")),
        "{}",
        &doc.text[..doc.text.len().min(200)]
    );
    let paths = doc.json["paths"].as_object().expect("paths object");
    let mut documented = BTreeSet::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            if METHODS.contains(&method.as_str()) {
                assert!(
                    op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                    "{method} {path} documents no responses"
                );
                documented.insert((method.clone(), path.clone()));
            }
        }
    }
    assert_eq!(
        documented, listed,
        "the OpenAPI document and the router differ"
    );
    // The error answers authorisation and body parsing give are documented everywhere.
    let public = [
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/v1/openapi.json",
        "/api/v1/login",
    ];
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            let responses = op["responses"].as_object().unwrap();
            let mut needed = Vec::new();
            if !public.contains(&path.as_str()) {
                needed.extend(["401", "403"]);
            }
            if op.get("requestBody").is_some() {
                needed.extend(["400", "413", "415", "422"]);
            }
            for status in needed {
                assert!(
                    responses.contains_key(status),
                    "{method} {path} does not document {status}"
                );
            }
        }
    }
    // The rules the handlers enforce are stated: name patterns, page sizes, grants, refs.
    let param = |path: &str, method: &str, name: &str| -> serde_json::Value {
        paths[path][method]["parameters"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name))
            .unwrap_or_else(|| panic!("{method} {path} has no parameter {name}"))["schema"]
            .clone()
    };
    let project = param("/api/v1/projects/{project}", "get", "project");
    assert_eq!(project["pattern"], ferry_core::NAME_PATTERN, "{project}");
    assert_eq!(project["maxLength"], ferry_core::NAME_MAX_LEN, "{project}");
    let secret = param("/api/v1/secrets/{name}", "put", "name");
    assert_eq!(secret["pattern"], "^[A-Za-z_][A-Za-z0-9_]*$", "{secret}");
    let limit = param("/api/v1/runs", "get", "limit");
    assert_eq!(
        (limit["minimum"].as_i64(), limit["maximum"].as_i64()),
        (Some(1), Some(500)),
        "{limit}"
    );
    let status = param("/api/v1/runs", "get", "status");
    assert_eq!(
        status["enum"].as_array().map(Vec::len),
        Some(ferry_core::RunStatus::ALL.len()),
        "{status}"
    );
    // Body fields carry the rule as literals in `ferry_api` (which depends on no ferry
    // crate): they must be the same rule.
    for (schema, field) in [
        ("ProjectCreate", "name"),
        ("TokenCreate", "name"),
        ("UserCreate", "name"),
        ("TeamCreate", "name"),
        ("TeamMember", "user"),
        ("ApprovalCreate", "environment"),
    ] {
        let property = &doc.json["components"]["schemas"][schema]["properties"][field];
        assert_eq!(
            property["pattern"],
            ferry_core::NAME_PATTERN,
            "{schema}.{field}: {property}"
        );
        assert_eq!(
            property["maxLength"],
            ferry_core::NAME_MAX_LEN,
            "{schema}.{field}: {property}"
        );
    }
    let scopes = &doc.json["components"]["schemas"]["TokenCreate"]["properties"]["scopes"];
    assert_eq!(
        scopes["items"]["pattern"],
        ferry_core::Grant::pattern(),
        "{scopes}"
    );
    let grant = &doc.json["components"]["schemas"]["RoleGrant"];
    assert!(
        grant["allOf"][1]["oneOf"].is_array(),
        "user or team: {grant}"
    );
    let retention = &doc.json["components"]["schemas"]["StateRetention"]["properties"]["days"];
    assert_eq!(
        retention["maximum"],
        ferry_api::MAX_RETENTION_DAYS,
        "{retention}"
    );
    // A query can be refused for what it means (422); a body can name a missing thing (404).
    for (path, method, status) in [
        ("/api/v1/runs", "get", "422"),
        ("/api/v1/tokens", "post", "404"),
        ("/api/v1/states/{project}/{environment}/raw", "get", "410"),
    ] {
        assert!(
            paths[path][method]["responses"].get(status).is_some(),
            "{method} {path} does not document {status}"
        );
    }

    // A raw state is Terraform's JSON object, and is declared so.
    let raw = &paths["/api/v1/states/{project}/{environment}/raw"]["get"]["responses"]["200"];
    assert_eq!(
        raw["content"]["application/json"]["schema"]["type"], "object",
        "{raw}"
    );
    // Every schema a path refers to exists.
    let schemas = doc.json["components"]["schemas"]
        .as_object()
        .expect("schemas");
    for reference in doc
        .text
        .match_indices("#/components/schemas/")
        .map(|(i, _)| &doc.text[i + 21..])
    {
        let name = reference.split('"').next().unwrap();
        assert!(
            schemas.contains_key(name),
            "dangling schema reference {name}"
        );
    }

    // 3. The live router serves every listed route, and no other method on those paths.
    server
        .project(
            "demo",
            &[("ferry.yaml", MINIMAL_FERRY_YAML), ("main.tf", "")],
        )
        .await;
    let run = server
        .admin
        .runs_create("demo", &ferry_api::RunCreate::default())
        .await
        .unwrap();
    // A finished, successful run: probes of cancel and retry are refused, not acted on.
    server
        .wait_status(run.id, "Succeeded", crate::common::RUN_TIMEOUT)
        .await;
    server.user("probe").await;
    let concrete = |path: &str| {
        path.replace("{project}", "demo")
            .replace("{id}", &run.id.to_string())
            .replace("{name}", "probe")
    };
    for (method, path) in ROUTES {
        // A body no handler accepts, so a probe never creates anything.
        let req = server
            .http
            .request(
                method.to_uppercase().parse().unwrap(),
                format!("{}{}", server.url, concrete(path)),
            )
            .bearer_auth(server.admin_token())
            .json(&serde_json::json!({"probe": [1]}))
            .timeout(Duration::from_secs(20));
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let text = if path.ends_with("/stream") {
            String::new()
        } else {
            resp.text().await.unwrap_or_default()
        };
        assert_ne!(status, 405, "{method} {path} is documented but not served");
        assert!(
            !(status == 404 && text.contains("no such route")),
            "{method} {path} is documented but not served"
        );
        assert!(status < 500, "{method} {path}: {status} {text}");
        for other in METHODS.iter().filter(|m| !ROUTES.contains(&(**m, *path))) {
            let answer = server
                .call(&other.to_uppercase(), &concrete(path), None)
                .await;
            assert_eq!(
                answer.status, 405,
                "{other} {path} is served but not documented: {}",
                answer.text
            );
        }
    }
    // The probes changed nothing.
    assert_eq!(
        server
            .admin
            .runs_list(None, None, 50, None)
            .await
            .unwrap()
            .runs
            .len(),
        1
    );
    assert_eq!(server.admin.projects_list().await.unwrap().len(), 1);
    server.stop().await;
}
