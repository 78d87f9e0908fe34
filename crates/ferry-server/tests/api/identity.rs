//! Identity and access over real HTTP: the route × role matrix (every route, every role,
//! allowed or denied, so a route without a rule fails here), users and teams as approvers,
//! sessions with CSRF, login throttling, token expiry and scopes, and run credentials that
//! die with their action.

use std::collections::BTreeSet;
use std::time::Duration;

use ferry_api::{Client, RoleGrant, RunCreate, TeamCreate, TokenCreate, UserCreate, UserUpdate};
use ferry_test_support::{terraform_data_config, MINIMAL_FERRY_YAML};
use serde_json::{json, Value};

use crate::common::{api_error, approve, Answer, TestServer, RUN_TIMEOUT};
use crate::system::ROUTES;

const PASSWORD: &str = "correct horse battery staple";

/// Creates user `name` (password [`PASSWORD`]) with `grants`, and a personal token for them.
async fn user_with(server: &TestServer, name: &str, grants: &[&str]) -> Client {
    server
        .admin
        .users_create(&UserCreate {
            name: name.to_owned(),
            password: Some(PASSWORD.to_owned()),
        })
        .await
        .unwrap();
    for grant in grants {
        server
            .admin
            .grants_create(&RoleGrant {
                user: Some(name.to_owned()),
                grant: (*grant).to_owned(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let token = server
        .admin
        .tokens_create(&TokenCreate {
            name: format!("{name}-token"),
            user: Some(name.to_owned()),
            ..Default::default()
        })
        .await
        .unwrap();
    Client::new(&server.url, &token.secret)
}

/// What a route needs, written out here independently of the server's rule table.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Need {
    Public,
    Anyone,
    Read,
    Raw,
    Operate,
    Approve,
    ProjectAdmin,
    GlobalAdmin,
}

const EXPECTED: &[(&str, &str, Need)] = &[
    ("get", "/healthz", Need::Public),
    ("get", "/readyz", Need::Public),
    ("get", "/metrics", Need::Public),
    ("get", "/api/v1/openapi.json", Need::Public),
    ("post", "/api/v1/login", Need::Public),
    ("post", "/api/v1/logout", Need::Anyone),
    ("get", "/api/v1/whoami", Need::Anyone),
    ("get", "/api/v1/queue", Need::Anyone),
    ("get", "/api/v1/projects", Need::Anyone),
    ("post", "/api/v1/projects", Need::GlobalAdmin),
    ("get", "/api/v1/projects/{project}", Need::Read),
    ("patch", "/api/v1/projects/{project}", Need::ProjectAdmin),
    ("get", "/api/v1/projects/{project}/pipelines", Need::Read),
    ("post", "/api/v1/projects/{project}/runs", Need::Operate),
    ("get", "/api/v1/runs", Need::Anyone),
    ("get", "/api/v1/runs/{id}", Need::Read),
    ("post", "/api/v1/runs/{id}/cancel", Need::Operate),
    ("post", "/api/v1/runs/{id}/approvals", Need::Approve),
    (
        "get",
        "/api/v1/runs/{id}/approvals/{environment}",
        Need::Read,
    ),
    ("post", "/api/v1/runs/{id}/retry", Need::Operate),
    ("post", "/api/v1/projects/{project}/promote", Need::Operate),
    ("post", "/api/v1/projects/{project}/rollback", Need::Operate),
    ("get", "/api/v1/projects/{project}/deployments", Need::Read),
    ("post", "/api/v1/projects/{project}/waivers", Need::Approve),
    ("get", "/api/v1/projects/{project}/waivers", Need::Read),
    ("delete", "/api/v1/waivers/{id}", Need::Anyone),
    ("get", "/api/v1/approvals", Need::Anyone),
    ("get", "/api/v1/events", Need::Anyone),
    ("get", "/api/v1/events/stream", Need::Anyone),
    ("get", "/api/v1/audit", Need::GlobalAdmin),
    // Secrets and parameters: the scope is in the query, so the handler decides (admin on
    // the scope to change, read on it to get a parameter, lists narrowed to what is visible).
    ("get", "/api/v1/secrets", Need::Anyone),
    ("put", "/api/v1/secrets/{name}", Need::Anyone),
    ("delete", "/api/v1/secrets/{name}", Need::Anyone),
    ("get", "/api/v1/params", Need::Anyone),
    ("get", "/api/v1/params/{name}", Need::Anyone),
    ("put", "/api/v1/params/{name}", Need::Anyone),
    ("delete", "/api/v1/params/{name}", Need::Anyone),
    ("get", "/api/v1/runs/{id}/logs", Need::Read),
    ("get", "/api/v1/runs/{id}/logs/stream", Need::Read),
    ("get", "/api/v1/tokens", Need::Anyone),
    ("post", "/api/v1/tokens", Need::Anyone),
    ("delete", "/api/v1/tokens/{name}", Need::Anyone),
    ("get", "/api/v1/users", Need::GlobalAdmin),
    ("post", "/api/v1/users", Need::GlobalAdmin),
    ("patch", "/api/v1/users/{name}", Need::GlobalAdmin),
    ("get", "/api/v1/teams", Need::GlobalAdmin),
    ("post", "/api/v1/teams", Need::GlobalAdmin),
    ("post", "/api/v1/teams/{team}/members", Need::GlobalAdmin),
    (
        "delete",
        "/api/v1/teams/{team}/members/{user}",
        Need::GlobalAdmin,
    ),
    ("get", "/api/v1/grants", Need::GlobalAdmin),
    ("post", "/api/v1/grants", Need::GlobalAdmin),
    ("post", "/api/v1/grants/revoke", Need::GlobalAdmin),
    ("get", "/api/v1/states", Need::Anyone),
    ("get", "/api/v1/states/{project}/{environment}", Need::Read),
    (
        "delete",
        "/api/v1/states/{project}/{environment}",
        Need::ProjectAdmin,
    ),
    (
        "get",
        "/api/v1/states/{project}/{environment}/versions",
        Need::Read,
    ),
    (
        "get",
        "/api/v1/states/{project}/{environment}/raw",
        Need::Raw,
    ),
    (
        "get",
        "/api/v1/states/{project}/{environment}/diff",
        Need::Read,
    ),
    (
        "get",
        "/api/v1/states/{project}/{environment}/lock",
        Need::Read,
    ),
    (
        "delete",
        "/api/v1/states/{project}/{environment}/lock",
        Need::ProjectAdmin,
    ),
    (
        "post",
        "/api/v1/states/{project}/{environment}/rollback",
        Need::ProjectAdmin,
    ),
    (
        "post",
        "/api/v1/states/{project}/{environment}/push",
        Need::Operate,
    ),
    (
        "put",
        "/api/v1/states/{project}/{environment}/retention",
        Need::ProjectAdmin,
    ),
    // The state backend (one route, methods dispatched by hand).
    ("get", "/tf/state/{project}/{environment}", Need::Raw),
    ("post", "/tf/state/{project}/{environment}", Need::Operate),
    ("lock", "/tf/state/{project}/{environment}", Need::Operate),
    (
        "delete",
        "/tf/state/{project}/{environment}",
        Need::ProjectAdmin,
    ),
    ("get", "/tf/state/{project}/{environment}/{name}", Need::Raw),
    (
        "lock",
        "/tf/state/{project}/{environment}/{name}/lock",
        Need::Operate,
    ),
];

/// The roles of the matrix: who they are and what they hold.
const ROLES: &[(&str, &[&str])] = &[
    ("viewer", &["viewer@demo"]),
    ("operator", &["operator@demo"]),
    ("approver", &["approver@demo"]),
    ("padmin", &["admin@demo"]),
    // Sees another project only: every object of `demo` must look absent.
    ("outsider", &["admin@other"]),
];

fn allowed(role: &str, need: Need) -> bool {
    match need {
        Need::Public | Need::Anyone => true,
        Need::Read => role != "outsider",
        Need::Raw | Need::Operate => matches!(role, "operator" | "padmin" | "admin"),
        Need::Approve => matches!(role, "approver" | "padmin" | "admin"),
        Need::ProjectAdmin => matches!(role, "padmin" | "admin"),
        Need::GlobalAdmin => role == "admin",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_role_matrix() {
    let mut server = TestServer::start().await;

    // Every route has an expectation here and a rule in the server; the expectation list
    // and the served routes are the same set (system.rs checks ROUTES against the router).
    let expected: BTreeSet<(String, String)> = EXPECTED
        .iter()
        .filter(|(_, p, _)| !p.starts_with("/tf/"))
        .map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(expected, served, "a route has no expectation in EXPECTED");
    let rules = ferry_server::authz::rule_table();
    for (method, path, _) in EXPECTED {
        assert!(
            rules
                .iter()
                .any(|(m, p, _)| p == path && (m == "*" || m.eq_ignore_ascii_case(method))),
            "{method} {path} has no authorisation rule"
        );
    }

    server
        .project(
            "demo",
            &[("ferry.yaml", MINIMAL_FERRY_YAML), ("main.tf", "")],
        )
        .await;
    server
        .project(
            "other",
            &[("ferry.yaml", MINIMAL_FERRY_YAML), ("main.tf", "")],
        )
        .await;
    let run = server
        .admin
        .runs_create("demo", &RunCreate::default())
        .await
        .unwrap();
    server.admin.runs_cancel(run.id).await.unwrap();
    let (status, text) = crate::state_backend::raw(
        &server,
        "POST",
        "/tf/state/demo/default",
        Some(&crate::state_backend::basic("admin", server.admin_token())),
        crate::state_backend::state_json(1, "6a1f3c52-1f0e-4d5c-9c55-3e8d2b8f0a11"),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let mut tokens = vec![("admin".to_owned(), server.admin_token().to_owned())];
    for (role, grants) in ROLES {
        let client = user_with(&server, role, grants).await;
        tokens.push(((*role).to_owned(), client.token().to_owned()));
    }

    let concrete = |path: &str| {
        path.replace("{project}", "demo")
            .replace("{environment}", "default")
            .replace("{id}", &run.id.to_string())
            .replace("{name}", "nobody")
            .replace("{team}", "nobody")
            .replace("{user}", "nobody")
    };
    let http = reqwest::Client::new();
    let send = |method: &str, path: &str, token: Option<&str>| {
        // Deletions aim at a state that does not exist, so the probes that follow still
        // find theirs.
        let mut path = concrete(path);
        if method == "delete" && path.contains("/state") {
            path = path.replace("/default", "/absent");
        }
        let mut req = http
            .request(
                method.to_uppercase().parse().unwrap(),
                format!("{}{path}", server.url),
            )
            .timeout(Duration::from_secs(20));
        if let Some(token) = token {
            req = if path.starts_with("/tf/") {
                req.basic_auth("probe", Some(token))
            } else {
                req.bearer_auth(token)
            };
        }
        // A body no handler accepts, so an allowed probe changes nothing (approvals must
        // name an environment to be authorised, then fail on the decision).
        let body = if path.ends_with("/approvals") {
            json!({"environment": "default", "decision": "maybe", "comment": "probe"})
        } else if path.ends_with("/promote")
            || path.ends_with("/rollback")
            || path.ends_with("/waivers")
        {
            json!({"environment": "default", "probe": [1]})
        } else {
            json!({"probe": [1]})
        };
        req.json(&body).send()
    };

    let mut failures = Vec::new();
    for (method, path, need) in EXPECTED {
        let anonymous = send(method, path, None).await.unwrap().status().as_u16();
        if *need != Need::Public && anonymous != 401 {
            failures.push(format!(
                "{method} {path} without a token: {anonymous}, want 401"
            ));
        }
        for (role, token) in &tokens {
            let status = send(method, path, Some(token))
                .await
                .unwrap()
                .status()
                .as_u16();
            let ok = if *need == Need::Anyone {
                // The handler narrows (own tokens only, visible projects only).
                status != 401
            } else if allowed(role, *need) {
                // A readable object exists (the fixture made it), so 404 would be a refusal.
                let hidden = status == 404 && *need == Need::Read;
                !(matches!(status, 401 | 403) || hidden)
            } else if role == "outsider" && !matches!(need, Need::GlobalAdmin) {
                // Objects of a project it cannot see do not exist for it.
                status == 404
            } else {
                status == 403
            };
            if !ok {
                failures.push(format!(
                    "{method} {path} as {role}: {status} ({})",
                    if allowed(role, *need) {
                        "should be allowed"
                    } else {
                        "should be denied"
                    }
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // HEAD needs what GET needs.
    let head = http
        .head(format!("{}/api/v1/runs/{}", server.url, run.id))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 401);
    let head = http
        .head(format!("{}/api/v1/runs/{}", server.url, run.id))
        .bearer_auth(&tokens.iter().find(|t| t.0 == "viewer").unwrap().1)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);

    // A hidden run looks absent even to a malformed request.
    let outsider_token = &tokens.iter().find(|t| t.0 == "outsider").unwrap().1;
    server
        .call_as(
            Some(outsider_token),
            "POST",
            &format!("/api/v1/runs/{}/approvals", run.id),
            Some(json!({"probe": 1})),
        )
        .await
        .assert_error(404, "not_found");

    // Lists show only what the identity may see.
    let outsider = Client::new(
        &server.url,
        &tokens.iter().find(|t| t.0 == "outsider").unwrap().1,
    );
    let projects: Vec<String> = outsider
        .projects_list()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(projects, ["other"]);
    assert!(outsider
        .runs_list(None, None, 50, None)
        .await
        .unwrap()
        .runs
        .is_empty());
    let viewer = Client::new(
        &server.url,
        &tokens.iter().find(|t| t.0 == "viewer").unwrap().1,
    );
    assert_eq!(
        viewer
            .runs_list(None, None, 50, None)
            .await
            .unwrap()
            .runs
            .len(),
        1
    );
    server.stop().await;
}

/// A pipeline with dev (auto-applied), staging and prod, approved by team `platform`.
fn three_env_yaml() -> String {
    "version: 1\nname: net\nterraform: { dir: . }\nenvironments:\n  - name: dev\n    auto_apply: true\n  - name: staging\n    approval: { approvers: [team:platform] }\n  - name: prod\n    approval: { approvers: [team:platform] }\n".to_owned()
}

fn waiting_in(detail: &ferry_api::RunDetail, environment: &str) -> bool {
    detail.run.status == "WaitingForApproval"
        && detail.stages.iter().any(|s| {
            s.environment == environment && s.kind == "approval" && s.status == "WaitingForApproval"
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_approvers_need_the_role_in_that_environment() {
    let mut server = TestServer::start().await;
    server
        .project(
            "net",
            &[
                ("ferry.yaml", &three_env_yaml()),
                ("main.tf", &terraform_data_config(1)),
            ],
        )
        .await;
    // dora: in team platform, approver for staging only. erin: approver everywhere in net,
    // but not in the team. olga: operator and in the team (she triggers).
    let dora = user_with(&server, "dora", &["approver@net/staging"]).await;
    let erin = user_with(&server, "erin", &["approver@net"]).await;
    let olga = user_with(&server, "olga", &["operator@net", "approver@net"]).await;
    server
        .admin
        .teams_create(&TeamCreate {
            name: "platform".into(),
        })
        .await
        .unwrap();
    for member in ["dora", "olga"] {
        server
            .admin
            .team_members_add("platform", member)
            .await
            .unwrap();
    }

    let run = olga
        .runs_create("net", &RunCreate::default())
        .await
        .unwrap();
    server
        .wait_run(run.id, "waiting in staging", RUN_TIMEOUT, |d| {
            waiting_in(d, "staging")
        })
        .await;
    // Self-approval: olga is in the team and holds the role, but triggered the run.
    let (status, body) = api_error(olga.approvals_create(run.id, &approve("staging")).await);
    assert_eq!((status, body.code.as_str()), (403, "forbidden"), "{body:?}");
    // erin holds the role but is not in the team.
    let (status, body) = api_error(erin.approvals_create(run.id, &approve("staging")).await);
    assert_eq!(status, 403, "{body:?}");
    assert!(body.message.contains("not among"), "{body:?}");
    // dora may not approve prod (no role there), whatever the run waits for.
    let (status, _) = api_error(dora.approvals_create(run.id, &approve("prod")).await);
    assert_eq!(status, 403);
    dora.approvals_create(run.id, &approve("staging"))
        .await
        .unwrap();
    server
        .wait_run(run.id, "waiting in prod", RUN_TIMEOUT, |d| {
            waiting_in(d, "prod")
        })
        .await;
    let (status, _) = api_error(dora.approvals_create(run.id, &approve("prod")).await);
    assert_eq!(status, 403, "an approver for staging cannot approve prod");
    // Joining the team makes erin an approver of prod.
    server
        .admin
        .team_members_add("platform", "erin")
        .await
        .unwrap();
    erin.approvals_create(run.id, &approve("prod"))
        .await
        .unwrap();
    server.wait_status(run.id, "Succeeded", RUN_TIMEOUT).await;
    let detail = server.admin.runs_get(run.id).await.unwrap();
    let approvers: Vec<&str> = detail.approvals.iter().map(|a| a.actor.as_str()).collect();
    assert_eq!(approvers, ["dora", "erin"]);
    server.stop().await;
}

/// Logs in and returns the session cookie (`name=value`) and CSRF token.
async fn login(
    server: &TestServer,
    user: &str,
    password: &str,
) -> (Answer, Option<(String, String)>) {
    let answer = server
        .call_as(
            None,
            "POST",
            "/api/v1/login",
            Some(json!({"username": user, "password": password})),
        )
        .await;
    let cookie = answer
        .headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap().to_owned());
    let csrf = answer.json["csrf_token"].as_str().map(str::to_owned);
    let session = cookie.zip(csrf);
    (answer, session)
}

async fn with_cookie(
    server: &TestServer,
    method: &str,
    path: &str,
    cookie: &str,
    csrf: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let mut req = server
        .http
        .request(method.parse().unwrap(), format!("{}{path}", server.url))
        .header("cookie", cookie);
    if let Some(csrf) = csrf {
        req = req.header("x-csrf-token", csrf);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    Answer {
        status,
        headers,
        json: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_logins_and_their_faults() {
    let mut server = TestServer::start().await;
    server
        .project(
            "demo",
            &[("ferry.yaml", MINIMAL_FERRY_YAML), ("main.tf", "")],
        )
        .await;
    user_with(&server, "pia", &["operator@demo"]).await;

    // X-Forwarded-For from a peer that is not a trusted proxy is ignored.
    let spoofed = server
        .http
        .post(format!("{}/api/v1/login", server.url))
        .header("x-forwarded-for", "203.0.113.9")
        .json(&json!({"username": "spoofer", "password": "whatever it is"}))
        .send()
        .await
        .unwrap();
    assert_eq!(spoofed.status(), 401);

    // Wrong password, unknown user: the same 401.
    let (wrong, _) = login(&server, "pia", "not the password at all").await;
    let wrong = wrong.assert_error(401, "login_failed");
    let (unknown, _) = login(&server, "nobody", PASSWORD).await;
    assert_eq!(
        unknown.assert_error(401, "login_failed").message,
        wrong.message
    );
    // A form works as well as JSON.
    let form = server
        .http
        .post(format!("{}/api/v1/login", server.url))
        .form(&[("username", "pia"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 200);

    let (ok, session) = login(&server, "pia", PASSWORD).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    let set_cookie = ok.headers["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(!ok.text.contains(
        set_cookie
            .split(';')
            .next()
            .unwrap()
            .split('=')
            .nth(1)
            .unwrap()
    ));
    let (cookie, csrf) = session.unwrap();

    // Reads need only the cookie; changes need the CSRF token too.
    let me = with_cookie(&server, "GET", "/api/v1/whoami", &cookie, None, None).await;
    assert_eq!((me.status, me.json["name"].as_str()), (200, Some("pia")));
    let trigger = Some(json!({}));
    for bad in [None, Some("wrong"), Some("")] {
        with_cookie(
            &server,
            "POST",
            "/api/v1/projects/demo/runs",
            &cookie,
            bad,
            trigger.clone(),
        )
        .await
        .assert_error(403, "csrf");
    }
    let created = with_cookie(
        &server,
        "POST",
        "/api/v1/projects/demo/runs",
        &cookie,
        Some(&csrf),
        trigger,
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json["triggered_by"], "pia");

    // Forged and tampered cookies.
    let (name, value) = cookie.split_once('=').unwrap();
    let mut tampered = value.to_owned();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let forged = ferry_secrets::generate_token().plaintext;
    for bad in [tampered.as_str(), forged.as_str(), "garbage", ""] {
        let answer = with_cookie(
            &server,
            "GET",
            "/api/v1/whoami",
            &format!("{name}={bad}"),
            None,
            None,
        )
        .await;
        answer.assert_error(401, "unauthorized");
    }

    // Logout is for sessions: a token is revoked, not logged out.
    server
        .call("POST", "/api/v1/logout", None)
        .await
        .assert_error(403, "not_a_session");

    // Logout ends the session on the server: the old cookie is refused afterwards.
    let out = with_cookie(
        &server,
        "POST",
        "/api/v1/logout",
        &cookie,
        Some(&csrf),
        None,
    )
    .await;
    assert_eq!(out.status, 204, "{}", out.text);
    with_cookie(&server, "GET", "/api/v1/whoami", &cookie, None, None)
        .await
        .assert_error(401, "unauthorized");

    // A disabled user cannot log in, and their personal token stops working.
    let quinn = user_with(&server, "quinn", &["viewer@demo"]).await;
    let (_, quinn_session) = login(&server, "quinn", PASSWORD).await;
    let (quinn_cookie, _) = quinn_session.unwrap();
    server
        .admin
        .users_update(
            "quinn",
            &UserUpdate {
                disabled: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (refused, _) = login(&server, "quinn", PASSWORD).await;
    refused.assert_error(401, "login_failed");
    assert_eq!(api_error(quinn.whoami().await).0, 401);
    with_cookie(&server, "GET", "/api/v1/whoami", &quinn_cookie, None, None)
        .await
        .assert_error(401, "unauthorized");

    // Brute force: after 5 failures for an account, even the right password is throttled.
    for _ in 0..5 {
        login(&server, "pia", "guess guess guess")
            .await
            .0
            .assert_error(401, "login_failed");
    }
    let (throttled, _) = login(&server, "pia", PASSWORD).await;
    throttled.assert_error(429, "too_many_attempts");
    assert!(throttled.headers.get("retry-after").is_some());

    let data = server.stop_keeping_data().await;
    let records = audit_records(data.path()).await;
    let logins: Vec<(&str, &str)> = records
        .iter()
        .filter(|r| r.action == "login")
        .map(|r| (r.actor.as_str(), r.outcome.as_str()))
        .collect();
    for expected in [
        ("pia", "failed"),
        ("nobody", "failed"),
        ("pia", "ok"),
        ("quinn", "denied"),
        ("pia", "throttled"),
    ] {
        assert!(logins.contains(&expected), "{expected:?} not in {logins:?}");
    }
    assert!(records
        .iter()
        .any(|r| r.action == "logout" && r.actor == "pia"));
    assert!(records.iter().any(|r| r.action == "user.disable"));
    for r in &records {
        assert!(
            !r.details.contains(PASSWORD),
            "a password reached the audit log: {r:?}"
        );
    }
}

async fn audit_records(data: &std::path::Path) -> Vec<ferry_secrets::AuditRecord> {
    let (master, _) =
        ferry_secrets::MasterKey::load(&ferry_secrets::KeySource::DataDir(data.to_owned()))
            .unwrap();
    let store = ferry_store::Store::open_read_only(
        &ferry_server::db_path(data),
        &master,
        ferry_server::audit_checkpoint_path(data),
    )
    .await
    .unwrap();
    let records = store.audit_records(0, 100_000).await.unwrap();
    assert!(store.verify_audit().await.unwrap().is_ok());
    store.close().await;
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_scopes_expiry_and_revocation() {
    let mut server = TestServer::start().await;
    server
        .project(
            "demo",
            &[("ferry.yaml", MINIMAL_FERRY_YAML), ("main.tf", "")],
        )
        .await;
    user_with(&server, "rita", &["operator@demo"]).await;
    // A personal token limited to viewing: the user may trigger, the token may not.
    let narrow = server
        .admin
        .tokens_create(&TokenCreate {
            name: "rita-readonly".into(),
            user: Some("rita".into()),
            scopes: vec!["viewer@demo".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let narrow = Client::new(&server.url, &narrow.secret);
    assert_eq!(narrow.whoami().await.unwrap().name, "rita");
    let (status, _) = api_error(narrow.runs_create("demo", &RunCreate::default()).await);
    assert_eq!(status, 403, "wrong scope");
    // A service token scoped to another project sees nothing of demo.
    let other = server
        .admin
        .tokens_create(&TokenCreate {
            name: "ci-other".into(),
            scopes: vec!["operator@other".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let other = Client::new(&server.url, &other.secret);
    assert_eq!(
        api_error(other.runs_create("demo", &RunCreate::default()).await).0,
        404
    );
    // Bad scopes and expiries are refused.
    for (scopes, expires) in [
        (vec!["boss@demo".to_owned()], None),
        (vec!["viewer@Demo!".to_owned()], None),
        (vec![], Some("yesterday".to_owned())),
        (vec![], Some("2001-01-01T00:00:00Z".to_owned())),
    ] {
        let (status, body) = api_error(
            server
                .admin
                .tokens_create(&TokenCreate {
                    name: "bad".into(),
                    scopes,
                    expires_at: expires,
                    ..Default::default()
                })
                .await,
        );
        assert_eq!(status, 422, "{body:?}");
    }
    // A user may make their own personal token, not someone else's or a service token.
    let rita = Client::new(&server.url, narrow.token());
    let (status, _) = api_error(
        rita.tokens_create(&TokenCreate {
            name: "x".into(),
            user: Some("admin".into()),
            ..Default::default()
        })
        .await,
    );
    assert_eq!(status, 403);
    let (status, _) = api_error(
        rita.tokens_create(&TokenCreate {
            name: "svc".into(),
            ..Default::default()
        })
        .await,
    );
    assert_eq!(status, 403);
    let own = rita
        .tokens_create(&TokenCreate {
            name: "rita-2".into(),
            user: Some("rita".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let listed: Vec<String> = rita
        .tokens_list()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(listed, ["rita-token", "rita-readonly", "rita-2"]);
    assert_eq!(api_error(rita.tokens_revoke("ci-other").await).0, 403);
    rita.tokens_revoke("rita-2").await.unwrap();
    assert_eq!(
        api_error(Client::new(&server.url, &own.secret).whoami().await).0,
        401
    );

    // Expiry: refused once the time passes.
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let brief = server
        .admin
        .tokens_create(&TokenCreate {
            name: "brief".into(),
            scopes: vec!["viewer".into()],
            expires_at: Some(soon),
            ..Default::default()
        })
        .await
        .unwrap();
    let brief = Client::new(&server.url, &brief.secret);
    assert_eq!(brief.whoami().await.unwrap().name, "brief");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(api_error(brief.whoami().await).0, 401, "expired");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_credential_works_only_on_its_own_state_and_only_while_its_action_runs() {
    // The action copies its credential out, to a directory every action may write.
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start_with(
        |c| c.sandbox.writable.push(dir.path().to_owned()),
        reqwest::Client::new(),
    )
    .await;
    let file = dir.path().join("credential");
    let yaml = format!(
        "{MINIMAL_FERRY_YAML}stages:\n  test: [\"printenv TF_HTTP_PASSWORD > {}.tmp && mv {0}.tmp {0} && sleep 4\"]\n",
        file.display()
    );
    server
        .project(
            "demo",
            &[
                ("ferry.yaml", &yaml),
                ("main.tf", &terraform_data_config(1)),
            ],
        )
        .await;
    server
        .project(
            "other",
            &[("ferry.yaml", MINIMAL_FERRY_YAML), ("main.tf", "")],
        )
        .await;
    let run = server
        .admin
        .runs_create("demo", &RunCreate::default())
        .await
        .unwrap();
    let token = tokio::task::block_in_place(|| {
        ferry_test_support::wait_for("the action's credential", Duration::from_secs(60), || {
            std::fs::read_to_string(&file).ok()
        })
    });
    let token = token.trim();
    let backend = |path: &str| {
        server
            .http
            .get(format!("{}{path}", server.url))
            .basic_auth("run", Some(token))
            .send()
    };
    // While the action runs: its own state answers (no version yet), others look absent,
    // the API refuses it.
    let own = backend("/tf/state/demo/default").await.unwrap();
    let own_status = own.status().as_u16();
    let own_text = own.text().await.unwrap();
    assert!(
        own_status == 200 || own_text.contains("no versions"),
        "{own_status} {own_text}"
    );
    assert_eq!(
        backend("/tf/state/other/default").await.unwrap().status(),
        404
    );
    assert_eq!(backend("/tf/state/demo/prod").await.unwrap().status(), 403);
    server
        .call_as(Some(token), "GET", "/api/v1/runs", None)
        .await
        .assert_error(403, "forbidden");
    server.wait_status(run.id, "Succeeded", RUN_TIMEOUT).await;
    // After: refused.
    let after = backend("/tf/state/demo/default").await.unwrap();
    assert_eq!(after.status(), 401);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_termination_and_trusted_proxy_addresses() {
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let server = TestServer::start_with(
        |config| {
            config.tls = Some(ferry_server::TlsFiles {
                cert: cert_path.clone(),
                key: key_path.clone(),
            });
            config.access.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        },
        trusting,
    )
    .await;
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );
    assert_eq!(server.admin.whoami().await.unwrap().name, "admin");
    // Plain HTTP to the TLS port, and a client that does not trust the certificate, fail.
    let plain = server.url.replace("https://", "http://");
    let answer = reqwest::get(format!("{plain}/healthz")).await;
    assert!(answer.map(|r| !r.status().is_success()).unwrap_or(true));
    assert!(reqwest::get(format!("{}/healthz", server.url))
        .await
        .is_err());

    // Behind a trusted proxy, the client address is the nearest untrusted hop.
    let failed = server
        .http
        .post(format!("{}/api/v1/login", server.url))
        .header("x-forwarded-for", "198.51.100.1, 203.0.113.7")
        .json(&json!({"username": "admin", "password": "not the admin password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 401);
    let data = server.stop_keeping_data().await;
    let records = audit_records(data.path()).await;
    let login = records.iter().find(|r| r.action == "login").unwrap();
    assert_eq!(login.source, "203.0.113.7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_are_throttled_per_source_address() {
    let server = TestServer::start_with(
        |config| config.access.login_max_per_source = 3,
        // No connection is reused: every login comes from a new source port.
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap(),
    )
    .await;
    // Three different accounts from one address, each over a new connection (a new source
    // port): the address is throttled, whatever the account (password spraying).
    for user in ["u1", "u2", "u3"] {
        login(&server, user, "spray spray spray")
            .await
            .0
            .assert_error(401, "login_failed");
    }
    let (answer, _) = login(&server, "u4", "spray spray spray").await;
    let body = answer.assert_error(429, "too_many_attempts");
    assert!(body.message.contains("address"), "{body:?}");
    server.stop().await;
}
