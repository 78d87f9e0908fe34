//! Authorisation: one table, [`RULES`], says what every route needs, and one middleware,
//! [`authorise`], applies it before any handler runs.
//!
//! A rule names a permission (`ferry_core::Permission`) and where the request's target comes
//! from: Ferry as a whole, the `{project}` in the path, the project of the run `{id}`, the
//! `{project}/{environment}` of a state, or a run plus the environment named in the JSON
//! body (approvals). The middleware authenticates the caller (see [`crate::auth`]), resolves
//! the target, and answers:
//!
//! - 401 when there is no valid credential;
//! - 404 when the target's project is one the identity cannot see (its existence is not
//!   revealed), exactly as for a project or run that does not exist;
//! - 403 when the identity sees the project but lacks the permission, and for a
//!   cookie-authenticated state-changing request without the session's CSRF token;
//!
//! and records refused state-changing requests in the audit chain. A route without a rule
//! answers 500 and fails the route × role matrix test, so a new endpoint cannot ship
//! unguarded: adding a route means adding one line here.

use axum::body::Body;
use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::header::WWW_AUTHENTICATE;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ferry_core::{Permission, RunId, Target};
use subtle::ConstantTimeEq;

use crate::auth::{authenticate, Credential, Identity};
use crate::error::ApiError;
use crate::AppState;

/// Where a rule finds the target of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// No credential needed (health, metrics, the OpenAPI document, login).
    Public,
    /// Any authenticated identity. The handler narrows further: lists show only visible
    /// projects; tokens are managed by their owner or an admin.
    Anyone,
    /// Ferry as a whole: users, teams, grants, project registration.
    Global,
    /// The `{project}` path segment.
    Project,
    /// The project of run `{id}`.
    Run,
    /// Run `{id}`, in the environment named by this top-level field of the JSON body.
    RunEnvironment(&'static str),
    /// The `{project}` path segment, in the environment named by this top-level field of the
    /// JSON body (promote and rollback act on one environment).
    ProjectEnvironment(&'static str),
    /// The `{project}/{environment}` path segments.
    Environment,
    /// The Terraform state backend: `{project}/{environment}`; the permission follows the
    /// method (GET reads the raw state, DELETE is an admin's, the rest write or lock).
    Backend,
}

/// What one route needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rule {
    /// An HTTP method, or `*` for every method (the state backend dispatches its own).
    pub method: &'static str,
    /// The route template exactly as registered in `app()`.
    pub path: &'static str,
    pub permission: Permission,
    pub scope: Scope,
    /// `?force=true` needs `admin` instead (state pushes that skip the serial guard).
    pub force_needs_admin: bool,
    /// The audit action recorded when the request is refused (state-changing routes).
    pub action: &'static str,
    /// The audit target; `{x}` is replaced by the path parameter `x`.
    pub target: &'static str,
}

const fn rule(
    method: &'static str,
    path: &'static str,
    permission: Permission,
    scope: Scope,
) -> Rule {
    Rule {
        method,
        path,
        permission,
        scope,
        force_needs_admin: false,
        action: "",
        target: "",
    }
}

impl Rule {
    const fn audited(mut self, action: &'static str, target: &'static str) -> Rule {
        self.action = action;
        self.target = target;
        self
    }

    const fn force_needs_admin(mut self) -> Rule {
        self.force_needs_admin = true;
        self
    }
}

use Permission::{Admin, Approve, Operate, Read, ReadRaw};
use Scope::{
    Anyone, Backend, Environment, Global, Project, ProjectEnvironment, Public, Run, RunEnvironment,
};

/// Reads the JSON body (up to 1 MiB) for the environment it names, and gives it back.
async fn environment_in_body(body: Body, field: &str) -> Result<(Body, String), Response> {
    let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "the body is limited to 1 MiB",
        )
        .into_response());
    };
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    match value.get(field).and_then(|v| v.as_str()) {
        Some(env) => {
            let env = env.to_owned();
            Ok((Body::from(bytes), env))
        }
        None => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("the JSON body must name the `{field}`"),
        )
        .into_response()),
    }
}

/// Every route and what it needs. Keep one line per (method, route) of `app()`.
pub(crate) static RULES: &[Rule] = &[
    rule("GET", "/healthz", Read, Public),
    rule("GET", "/readyz", Read, Public),
    rule("GET", "/metrics", Read, Public),
    rule("GET", "/api/v1/openapi.json", Read, Public),
    rule("POST", "/api/v1/login", Read, Public),
    rule("POST", "/api/v1/logout", Read, Anyone),
    rule("GET", "/api/v1/whoami", Read, Anyone),
    rule("GET", "/api/v1/queue", Read, Anyone),
    rule("GET", "/api/v1/projects", Read, Anyone),
    rule("POST", "/api/v1/projects", Admin, Global).audited("project.create", "project"),
    rule("GET", "/api/v1/projects/{project}", Read, Project),
    rule("PATCH", "/api/v1/projects/{project}", Admin, Project)
        .audited("project.update", "project/{project}"),
    rule("GET", "/api/v1/projects/{project}/pipelines", Read, Project),
    rule("POST", "/api/v1/projects/{project}/runs", Operate, Project)
        .audited("run.create", "project/{project}"),
    rule("GET", "/api/v1/runs", Read, Anyone),
    rule("GET", "/api/v1/runs/{id}", Read, Run),
    rule("POST", "/api/v1/runs/{id}/cancel", Operate, Run).audited("run.cancel", "run/{id}"),
    rule(
        "POST",
        "/api/v1/runs/{id}/approvals",
        Approve,
        RunEnvironment("environment"),
    )
    .audited("run.decide", "run/{id}"),
    rule(
        "GET",
        "/api/v1/runs/{id}/approvals/{environment}",
        Read,
        Run,
    ),
    rule("POST", "/api/v1/runs/{id}/retry", Operate, Run).audited("run.retry", "run/{id}"),
    rule(
        "POST",
        "/api/v1/projects/{project}/promote",
        Operate,
        ProjectEnvironment("environment"),
    )
    .audited("run.promote", "project/{project}"),
    rule(
        "POST",
        "/api/v1/projects/{project}/rollback",
        Operate,
        ProjectEnvironment("environment"),
    )
    .audited("run.rollback", "project/{project}"),
    rule(
        "GET",
        "/api/v1/projects/{project}/deployments",
        Read,
        Project,
    ),
    rule(
        "POST",
        "/api/v1/projects/{project}/waivers",
        Approve,
        ProjectEnvironment("environment"),
    )
    .audited("policy.waive", "project/{project}"),
    rule("GET", "/api/v1/projects/{project}/waivers", Read, Project),
    // The waiver's project and environment are known only from the waiver: the handler
    // requires the approver role there.
    rule("DELETE", "/api/v1/waivers/{id}", Read, Anyone),
    rule("GET", "/api/v1/approvals", Read, Anyone),
    rule("GET", "/api/v1/events", Read, Anyone),
    rule("GET", "/api/v1/events/stream", Read, Anyone),
    rule("GET", "/api/v1/audit", Admin, Global),
    rule("GET", "/api/v1/secrets", Read, Anyone),
    rule("PUT", "/api/v1/secrets/{name}", Read, Anyone),
    rule("DELETE", "/api/v1/secrets/{name}", Read, Anyone),
    rule("GET", "/api/v1/params", Read, Anyone),
    rule("GET", "/api/v1/params/{name}", Read, Anyone),
    rule("PUT", "/api/v1/params/{name}", Read, Anyone),
    rule("DELETE", "/api/v1/params/{name}", Read, Anyone),
    rule("GET", "/api/v1/runs/{id}/logs", Read, Run),
    rule("GET", "/api/v1/runs/{id}/logs/stream", Read, Run),
    rule("GET", "/api/v1/tokens", Read, Anyone),
    rule("POST", "/api/v1/tokens", Read, Anyone),
    rule("DELETE", "/api/v1/tokens/{name}", Read, Anyone),
    rule("GET", "/api/v1/users", Admin, Global),
    rule("POST", "/api/v1/users", Admin, Global).audited("user.create", "user"),
    rule("PATCH", "/api/v1/users/{name}", Admin, Global).audited("user.update", "user/{name}"),
    rule("GET", "/api/v1/teams", Admin, Global),
    rule("POST", "/api/v1/teams", Admin, Global).audited("team.create", "team"),
    rule("POST", "/api/v1/teams/{team}/members", Admin, Global).audited("team.add", "team/{team}"),
    rule(
        "DELETE",
        "/api/v1/teams/{team}/members/{user}",
        Admin,
        Global,
    )
    .audited("team.remove", "team/{team}"),
    rule("GET", "/api/v1/grants", Admin, Global),
    rule("POST", "/api/v1/grants", Admin, Global).audited("role.grant", "grants"),
    rule("POST", "/api/v1/grants/revoke", Admin, Global).audited("role.revoke", "grants"),
    rule("GET", "/api/v1/states", Read, Anyone),
    rule(
        "GET",
        "/api/v1/states/{project}/{environment}",
        Read,
        Environment,
    ),
    rule(
        "DELETE",
        "/api/v1/states/{project}/{environment}",
        Admin,
        Environment,
    )
    .audited("state.delete", "state/{project}/{environment}"),
    rule(
        "GET",
        "/api/v1/states/{project}/{environment}/versions",
        Read,
        Environment,
    ),
    rule(
        "GET",
        "/api/v1/states/{project}/{environment}/raw",
        ReadRaw,
        Environment,
    )
    .audited("state.pull", "state/{project}/{environment}"),
    rule(
        "GET",
        "/api/v1/states/{project}/{environment}/diff",
        Read,
        Environment,
    ),
    rule(
        "GET",
        "/api/v1/states/{project}/{environment}/lock",
        Read,
        Environment,
    ),
    rule(
        "DELETE",
        "/api/v1/states/{project}/{environment}/lock",
        Admin,
        Environment,
    )
    .audited("state.force_unlock", "state/{project}/{environment}"),
    rule(
        "POST",
        "/api/v1/states/{project}/{environment}/rollback",
        Admin,
        Environment,
    )
    .audited("state.rollback", "state/{project}/{environment}"),
    rule(
        "POST",
        "/api/v1/states/{project}/{environment}/push",
        Operate,
        Environment,
    )
    .force_needs_admin()
    .audited("state.push", "state/{project}/{environment}"),
    rule(
        "PUT",
        "/api/v1/states/{project}/{environment}/retention",
        Admin,
        Environment,
    )
    .audited("state.retention", "state/{project}/{environment}"),
    rule("*", "/tf/state/{project}/{environment}", Operate, Backend)
        .force_needs_admin()
        .audited("state.backend", "state/{project}/{environment}"),
    rule(
        "*",
        "/tf/state/{project}/{environment}/{name}",
        Operate,
        Backend,
    )
    .force_needs_admin()
    .audited("state.backend", "state/{project}/{environment}/{name}"),
    rule(
        "*",
        "/tf/state/{project}/{environment}/{name}/lock",
        Operate,
        Backend,
    )
    .audited("state.backend", "state/{project}/{environment}/{name}"),
];

/// The rule for a route, if there is one. `HEAD` is answered by the `GET` handler (axum
/// does so), so it needs what `GET` needs.
pub(crate) fn rule_for(method: &str, path: &str) -> Option<&'static Rule> {
    let method = if method.eq_ignore_ascii_case("HEAD") {
        "GET"
    } else {
        method
    };
    RULES
        .iter()
        .find(|r| r.path == path && (r.method == "*" || r.method.eq_ignore_ascii_case(method)))
}

/// `(method, route, needs)` for every rule, for the route × role matrix test and docs.
pub fn rule_table() -> Vec<(String, String, String)> {
    RULES
        .iter()
        .map(|r| {
            let needs = match r.scope {
                Scope::Public => "public".to_owned(),
                Scope::Anyone => "authenticated".to_owned(),
                Scope::Backend => "state backend".to_owned(),
                _ => r.permission.as_str().to_owned(),
            };
            (r.method.to_owned(), r.path.to_owned(), needs)
        })
        .collect()
}

/// What the state backend needs for this method: reading the raw state is an operator's,
/// deleting a state an admin's, and writing, locking and unlocking an operator's (a run's
/// credential holds exactly that). A forced write (`?force=true`) is an admin's.
fn backend_permission(method: &Method, lock_route: bool, name: Option<&str>) -> Permission {
    let lock_path = lock_route || name == Some("lock");
    match method.as_str() {
        "GET" if !lock_path => ReadRaw,
        "DELETE" if !lock_path => Admin,
        _ => Operate,
    }
}

fn forced(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.split('&')
            .any(|kv| matches!(kv, "force=true" | "force=1"))
    })
}

fn unauthorized(backend: bool) -> Response {
    let mut response = ApiError::unauthorized().into_response();
    if backend {
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"ferry\""),
        );
    }
    response
}

fn hidden(what: &'static str, id: &str) -> ApiError {
    ferry_engine::model::StoreError::NotFound {
        what,
        id: id.to_owned(),
    }
    .into()
}

/// The middleware: authenticate, find the rule, resolve the target, decide.
pub(crate) async fn authorise(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    match decide(&state, request).await {
        Ok(request) => next.run(request).await,
        Err(response) => response,
    }
}

async fn decide(state: &AppState, request: Request) -> Result<Request, Response> {
    let method = request.method().clone();
    let Some(route) = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
    else {
        return Ok(request);
    };
    let Some(rule) = rule_for(method.as_str(), &route) else {
        return Err(
            ApiError::internal(format!("no authorisation rule for {method} {route}"))
                .into_response(),
        );
    };
    if rule.scope == Scope::Public {
        return Ok(request);
    }
    let backend = rule.scope == Scope::Backend;
    let (mut parts, body) = request.into_parts();
    let identity = match authenticate(state, &parts, backend).await {
        Ok(Some(identity)) => identity,
        Ok(None) => return Err(unauthorized(backend)),
        Err(e) => return Err(e.into_response()),
    };
    if identity.scope.is_some() && !backend {
        return Err(
            ApiError::forbidden("a run's credential only works on the state backend")
                .into_response(),
        );
    }
    let safe = matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    if let Credential::Session { csrf, .. } = &identity.credential {
        let sent = parts
            .headers
            .get("x-csrf-token")
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if !safe && !bool::from(sent.ct_eq(csrf.as_bytes())) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf",
                "a state-changing request with a session cookie needs the session's X-CSRF-Token header",
            )
            .into_response());
        }
    }
    let params: Vec<(String, String)> =
        match RawPathParams::from_request_parts(&mut parts, state).await {
            Ok(raw) => raw
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            Err(_) => Vec::new(),
        };
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let mut body = body;
    let mut permission = rule.permission;
    if rule.force_needs_admin && forced(parts.uri.query()) {
        permission = Admin;
    }
    let mut run_project = None;
    let mut body_environment = None;
    match rule.scope {
        Scope::Run | Scope::RunEnvironment(_) => {
            let id = param("id").unwrap_or_default();
            let Ok(id) = id.parse::<i64>() else {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_path",
                    format!("`{id}` is not a run id"),
                )
                .into_response());
            };
            match state.engine.run(RunId(id)).await {
                Ok(run) => run_project = Some(run.project),
                Err(e) => return Err(ApiError::from(e).into_response()),
            }
            // Before the body is judged: a run of a hidden project must look absent, not
            // answer a validation error.
            if run_project.as_deref().is_some_and(|p| !identity.sees(p)) {
                let refusal = hidden("run", &id.to_string());
                if !safe {
                    audit_refusal(state, &identity, rule, &params, &refusal).await?;
                }
                return Err(refusal.into_response());
            }
            if let Scope::RunEnvironment(field) = rule.scope {
                let (rebuilt, env) = environment_in_body(body, field).await?;
                body = rebuilt;
                body_environment = Some(env);
            }
        }
        Scope::ProjectEnvironment(field) => {
            // Before the body is judged: a hidden project must look absent.
            if param("project").is_some_and(|p| !identity.sees(p)) {
                let refusal = hidden("project", param("project").unwrap_or_default());
                if !safe {
                    audit_refusal(state, &identity, rule, &params, &refusal).await?;
                }
                return Err(refusal.into_response());
            }
            let (rebuilt, env) = environment_in_body(body, field).await?;
            body = rebuilt;
            body_environment = Some(env);
        }
        Scope::Backend => {
            permission = backend_permission(&method, route.ends_with("/lock"), param("name"));
            if rule.force_needs_admin && forced(parts.uri.query()) {
                permission = Admin;
            }
        }
        _ => {}
    }
    let project = run_project
        .clone()
        .or_else(|| param("project").map(str::to_owned));
    let environment = body_environment
        .clone()
        .or_else(|| param("environment").map(str::to_owned));
    let target = match (rule.scope, project.as_deref(), environment.as_deref()) {
        (Scope::Anyone, _, _) => None,
        (Scope::Global, _, _) => Some(Target::Global),
        (Scope::Project | Scope::Run, Some(p), _) => Some(Target::Project(p)),
        (
            Scope::Environment
            | Scope::Backend
            | Scope::RunEnvironment(_)
            | Scope::ProjectEnvironment(_),
            Some(p),
            Some(e),
        ) => Some(Target::Environment(p, e)),
        _ => {
            return Err(ApiError::internal(format!(
                "the rule for {method} {route} names path parameters the route lacks"
            ))
            .into_response())
        }
    };
    if let Some(target) = target {
        let refusal = if target.project().is_some_and(|p| !identity.sees(p)) {
            Some(match (rule.scope, project.as_deref()) {
                (Scope::Run | Scope::RunEnvironment(_), _) => {
                    hidden("run", param("id").unwrap_or_default())
                }
                (_, Some(p)) => hidden("project", p),
                _ => hidden("project", ""),
            })
        } else if !identity.allows(permission, &target) {
            let roles = ferry_core::Role::granting(permission);
            // Raw state and plans hold secret values in clear: say so, not just "read_raw".
            let why = if permission == ReadRaw {
                " (raw state holds secret values in clear)"
            } else {
                ""
            };
            Some(ApiError::forbidden(match target {
                Target::Global => {
                    format!("this needs the {permission} permission on Ferry as a whole (an admin)")
                }
                Target::Project(p) => {
                    format!("this needs the {permission} permission in project {p}: the {roles} role{why}")
                }
                Target::Environment(p, e) => {
                    format!(
                        "this needs the {permission} permission in {p}/{e}: the {roles} role{why}"
                    )
                }
            }))
        } else {
            None
        };
        if let Some(refusal) = refusal {
            if !safe || permission != Read {
                audit_refusal(state, &identity, rule, &params, &refusal).await?;
            }
            return Err(refusal.into_response());
        }
    }
    parts.extensions.insert(identity);
    Ok(Request::from_parts(parts, body))
}

/// Records a refused request in the audit chain, before the refusal is answered.
async fn audit_refusal(
    state: &AppState,
    identity: &Identity,
    rule: &Rule,
    params: &[(String, String)],
    refusal: &ApiError,
) -> Result<(), Response> {
    let mut target = rule.target.to_owned();
    for (k, v) in params {
        target = target.replace(&format!("{{{k}}}"), v);
    }
    let action = if rule.action.is_empty() {
        format!("{} {}", rule.method, rule.path)
    } else {
        rule.action.to_owned()
    };
    let entry = ferry_engine::model::AuditEntry::new(&action, target)
        .outcome("denied")
        .details(serde_json::json!({ "status": refusal.status.as_u16() }));
    state
        .engine
        .audit(&identity.actor(), entry)
        .await
        .map_err(|e| ApiError::from(e).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_is_unique_and_names_the_parameters_it_uses() {
        let mut seen = std::collections::BTreeSet::new();
        for r in RULES {
            assert!(
                seen.insert((r.method, r.path)),
                "duplicate rule {} {}",
                r.method,
                r.path
            );
            let needs: &[&str] = match r.scope {
                Scope::Project => &["{project}"],
                Scope::Run | Scope::RunEnvironment(_) => &["{id}"],
                Scope::Environment | Scope::Backend => &["{project}", "{environment}"],
                _ => &[],
            };
            for n in needs {
                assert!(r.path.contains(n), "{} {} lacks {n}", r.method, r.path);
            }
            let mutating = !matches!(r.method, "GET");
            if mutating && !matches!(r.scope, Scope::Public | Scope::Anyone) {
                assert!(
                    !r.action.is_empty(),
                    "{} {} has no audit action",
                    r.method,
                    r.path
                );
            }
        }
    }

    #[test]
    fn the_backend_permission_follows_the_method() {
        let m = |s: &str| Method::from_bytes(s.as_bytes()).unwrap();
        assert_eq!(backend_permission(&m("GET"), false, None), ReadRaw);
        assert_eq!(backend_permission(&m("POST"), false, None), Operate);
        assert_eq!(backend_permission(&m("LOCK"), false, None), Operate);
        assert_eq!(backend_permission(&m("DELETE"), false, None), Admin);
        assert_eq!(
            backend_permission(&m("DELETE"), false, Some("lock")),
            Operate
        );
        assert_eq!(backend_permission(&m("DELETE"), true, Some("net")), Operate);
        assert!(forced(Some("ID=1&force=true")));
        assert!(!forced(Some("forced=true")));
    }
}
