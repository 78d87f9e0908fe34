//! A small typed client over reqwest, used by the CLI and the end-to-end tests.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::*;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error body.
    #[error("{}{}", body.message, if body.details.is_empty() { String::new() } else { format!("\n{}", body.details.join("\n")) })]
    Api { status: u16, body: ErrorBody },
    #[error("cannot reach the ferry server at {url}: {source}")]
    Connect { url: String, source: reqwest::Error },
    #[error("unexpected response from the server: {0}")]
    Protocol(String),
}

impl ClientError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(base: &str, token: &str) -> Client {
        Client {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// A client over a given HTTP client (for a private CA, a proxy, timeouts).
    pub fn with_http(http: reqwest::Client, base: &str, token: &str) -> Client {
        Client {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http,
        }
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub(crate) async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let bytes = self.send_bytes(req).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Protocol(format!("{e}: {}", String::from_utf8_lossy(&bytes))))
    }

    /// Sends the request and returns the body of a successful answer as it came.
    async fn send_bytes(&self, req: reqwest::RequestBuilder) -> Result<Vec<u8>, ClientError> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|source| ClientError::Connect {
                url: self.base.clone(),
                source,
            })?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        if !status.is_success() {
            let body = serde_json::from_slice::<ErrorBody>(&bytes).unwrap_or_else(|_| ErrorBody {
                code: "http_error".into(),
                message: format!("HTTP {status}: {}", String::from_utf8_lossy(&bytes)),
                details: Vec::new(),
                request_id: None,
            });
            return Err(ClientError::Api {
                status: status.as_u16(),
                body,
            });
        }
        Ok(bytes.to_vec())
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(self.http.get(self.url(path))).await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    pub async fn whoami(&self) -> Result<Whoami, ClientError> {
        self.get("/api/v1/whoami").await
    }

    pub async fn projects_create(&self, body: &ProjectCreate) -> Result<Project, ClientError> {
        self.post("/api/v1/projects", body).await
    }

    /// Sets (both fields) or clears (neither) a project's git credentials.
    pub async fn projects_update(
        &self,
        name: &str,
        body: &ProjectUpdate,
    ) -> Result<Project, ClientError> {
        self.send(
            self.http
                .patch(self.url(&format!("/api/v1/projects/{}", enc(name))))
                .json(body),
        )
        .await
    }

    pub async fn projects_list(&self) -> Result<Vec<Project>, ClientError> {
        self.get("/api/v1/projects").await
    }

    pub async fn pipelines_list(
        &self,
        project: &str,
        git_ref: Option<&str>,
    ) -> Result<PipelineList, ClientError> {
        let mut req = self
            .http
            .get(self.url(&format!("/api/v1/projects/{}/pipelines", enc(project))));
        if let Some(r) = git_ref {
            req = req.query(&[("ref", r)]);
        }
        self.send(req).await
    }

    pub async fn runs_create(&self, project: &str, body: &RunCreate) -> Result<Run, ClientError> {
        self.post(&format!("/api/v1/projects/{}/runs", enc(project)), body)
            .await
    }

    pub async fn runs_list(
        &self,
        project: Option<&str>,
        status: Option<&str>,
        limit: u32,
        before: Option<i64>,
    ) -> Result<RunPage, ClientError> {
        let mut query: Vec<(&str, String)> = vec![("limit", limit.to_string())];
        if let Some(p) = project {
            query.push(("project", p.to_owned()));
        }
        if let Some(s) = status {
            query.push(("status", s.to_owned()));
        }
        if let Some(b) = before {
            query.push(("before", b.to_string()));
        }
        self.send(self.http.get(self.url("/api/v1/runs")).query(&query))
            .await
    }

    pub async fn runs_get(&self, id: i64) -> Result<RunDetail, ClientError> {
        self.get(&format!("/api/v1/runs/{id}")).await
    }

    pub async fn runs_cancel(&self, id: i64) -> Result<Run, ClientError> {
        self.post(&format!("/api/v1/runs/{id}/cancel"), &serde_json::json!({}))
            .await
    }

    pub async fn approvals_create(
        &self,
        id: i64,
        body: &ApprovalCreate,
    ) -> Result<Run, ClientError> {
        self.post(&format!("/api/v1/runs/{id}/approvals"), body)
            .await
    }

    pub async fn logs_get(&self, id: i64, offset: u64, limit: u32) -> Result<LogPage, ClientError> {
        let query = [("offset", offset.to_string()), ("limit", limit.to_string())];
        self.send(
            self.http
                .get(self.url(&format!("/api/v1/runs/{id}/logs")))
                .query(&query),
        )
        .await
    }

    pub async fn runs_retry(&self, id: i64) -> Result<Run, ClientError> {
        self.post(&format!("/api/v1/runs/{id}/retry"), &serde_json::json!({}))
            .await
    }

    pub async fn promote(&self, project: &str, body: &PromoteCreate) -> Result<Run, ClientError> {
        self.post(&format!("/api/v1/projects/{}/promote", enc(project)), body)
            .await
    }

    pub async fn rollback(&self, project: &str, body: &RollbackCreate) -> Result<Run, ClientError> {
        self.post(&format!("/api/v1/projects/{}/rollback", enc(project)), body)
            .await
    }

    pub async fn deployments(
        &self,
        project: &str,
        pipeline: Option<&str>,
        environment: Option<&str>,
    ) -> Result<Vec<Deployment>, ClientError> {
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(p) = pipeline {
            query.push(("pipeline", p));
        }
        if let Some(e) = environment {
            query.push(("environment", e));
        }
        let url = self.url(&format!("/api/v1/projects/{}/deployments", enc(project)));
        self.send(self.http.get(url).query(&query)).await
    }

    /// The approvals the caller may give now.
    pub async fn approvals_pending(&self) -> Result<Vec<PendingApproval>, ClientError> {
        self.get("/api/v1/approvals").await
    }

    pub async fn approval_view(
        &self,
        id: i64,
        environment: &str,
    ) -> Result<ApprovalView, ClientError> {
        self.get(&format!("/api/v1/runs/{id}/approvals/{}", enc(environment)))
            .await
    }

    /// Waives one finding of a run (`ferry policy waive`).
    pub async fn waiver_create(
        &self,
        project: &str,
        body: &WaiverCreate,
    ) -> Result<Waiver, ClientError> {
        let url = self.url(&format!("/api/v1/projects/{}/waivers", enc(project)));
        self.send(self.http.post(url).json(body)).await
    }

    /// A project's waivers, newest first; revoked ones too with `all`.
    pub async fn waivers(&self, project: &str, all: bool) -> Result<Vec<Waiver>, ClientError> {
        let url = self.url(&format!("/api/v1/projects/{}/waivers", enc(project)));
        let query: &[(&str, &str)] = if all { &[("all", "true")] } else { &[] };
        self.send(self.http.get(url).query(query)).await
    }

    /// Revokes a waiver.
    pub async fn waiver_revoke(&self, id: i64) -> Result<Waiver, ClientError> {
        let url = self.url(&format!("/api/v1/waivers/{id}"));
        self.send(self.http.delete(url)).await
    }

    /// Events after the cursor `after`, filtered by `query` pairs (run, project, pipeline,
    /// environment, type, limit).
    pub async fn events(
        &self,
        after: i64,
        query: &[(&str, String)],
    ) -> Result<EventPage, ClientError> {
        let mut q: Vec<(&str, String)> = vec![("after", after.to_string())];
        q.extend(query.iter().cloned());
        self.send(self.http.get(self.url("/api/v1/events")).query(&q))
            .await
    }

    /// Audit entries after `after`, filtered by `query` pairs (actor, target, action, since,
    /// until, limit).
    pub async fn audit(
        &self,
        after: i64,
        query: &[(&str, String)],
    ) -> Result<AuditPage, ClientError> {
        let mut q: Vec<(&str, String)> = vec![("after", after.to_string())];
        q.extend(query.iter().cloned());
        self.send(self.http.get(self.url("/api/v1/audit")).query(&q))
            .await
    }

    pub async fn queue(&self) -> Result<Vec<EnvironmentQueue>, ClientError> {
        self.get("/api/v1/queue").await
    }

    pub async fn tokens_create(&self, body: &TokenCreate) -> Result<TokenCreated, ClientError> {
        self.post("/api/v1/tokens", body).await
    }

    pub async fn tokens_list(&self) -> Result<Vec<Token>, ClientError> {
        self.get("/api/v1/tokens").await
    }

    pub async fn users_list(&self) -> Result<Vec<User>, ClientError> {
        self.get("/api/v1/users").await
    }

    pub async fn users_create(&self, body: &UserCreate) -> Result<User, ClientError> {
        self.post("/api/v1/users", body).await
    }

    pub async fn users_update(&self, name: &str, body: &UserUpdate) -> Result<User, ClientError> {
        self.send(
            self.http
                .patch(self.url(&format!("/api/v1/users/{}", enc(name))))
                .json(body),
        )
        .await
    }

    pub async fn teams_list(&self) -> Result<Vec<Team>, ClientError> {
        self.get("/api/v1/teams").await
    }

    pub async fn teams_create(&self, body: &TeamCreate) -> Result<Team, ClientError> {
        self.post("/api/v1/teams", body).await
    }

    pub async fn team_members_add(&self, team: &str, user: &str) -> Result<Team, ClientError> {
        let body = TeamMember {
            user: user.to_owned(),
        };
        self.post(&format!("/api/v1/teams/{}/members", enc(team)), &body)
            .await
    }

    pub async fn team_members_remove(&self, team: &str, user: &str) -> Result<Team, ClientError> {
        self.send(self.http.delete(self.url(&format!(
            "/api/v1/teams/{}/members/{}",
            enc(team),
            enc(user)
        ))))
        .await
    }

    pub async fn grants_list(&self) -> Result<Vec<RoleGrant>, ClientError> {
        self.get("/api/v1/grants").await
    }

    pub async fn grants_create(&self, body: &RoleGrant) -> Result<RoleGrant, ClientError> {
        self.post("/api/v1/grants", body).await
    }

    pub async fn grants_revoke(&self, body: &RoleGrant) -> Result<RoleGrant, ClientError> {
        self.post("/api/v1/grants/revoke", body).await
    }

    pub async fn states_list(
        &self,
        project: Option<&str>,
    ) -> Result<Vec<StateSummary>, ClientError> {
        match project {
            Some(p) => {
                self.get(&format!("/api/v1/states?project={}", enc(p)))
                    .await
            }
            None => self.get("/api/v1/states").await,
        }
    }

    pub async fn state_show(
        &self,
        project: &str,
        environment: &str,
        name: Option<&str>,
        version: Option<i64>,
    ) -> Result<StateDetail, ClientError> {
        let extra: Vec<_> = version
            .map(|v| ("version", v.to_string()))
            .into_iter()
            .collect();
        self.get(&state_path(project, environment, name, "", &extra))
            .await
    }

    pub async fn state_versions(
        &self,
        project: &str,
        environment: &str,
        name: Option<&str>,
    ) -> Result<Vec<StateVersion>, ClientError> {
        self.get(&state_path(project, environment, name, "/versions", &[]))
            .await
    }

    /// The exact bytes of a version (admin only).
    pub async fn state_pull(
        &self,
        project: &str,
        environment: &str,
        name: Option<&str>,
        version: Option<i64>,
    ) -> Result<Vec<u8>, ClientError> {
        let extra: Vec<_> = version
            .map(|v| ("version", v.to_string()))
            .into_iter()
            .collect();
        self.send_bytes(self.http.get(self.url(&state_path(
            project,
            environment,
            name,
            "/raw",
            &extra,
        ))))
        .await
    }

    pub async fn state_diff(
        &self,
        project: &str,
        environment: &str,
        name: Option<&str>,
        from: i64,
        to: i64,
    ) -> Result<StateDiff, ClientError> {
        let extra = [("from", from.to_string()), ("to", to.to_string())];
        self.get(&state_path(project, environment, name, "/diff", &extra))
            .await
    }

    pub async fn state_lock_info(
        &self,
        project: &str,
        environment: &str,
        name: Option<&str>,
    ) -> Result<Option<StateLock>, ClientError> {
        self.get(&state_path(project, environment, name, "/lock", &[]))
            .await
    }

    /// Force-unlocks (admin only); returns the lock that was removed.
    pub async fn state_unlock(
        &self,
        project: &str,
        environment: &str,
        name: Option<&str>,
    ) -> Result<Option<StateLock>, ClientError> {
        self.send(
            self.http
                .delete(self.url(&state_path(project, environment, name, "/lock", &[]))),
        )
        .await
    }

    pub async fn state_rollback(
        &self,
        project: &str,
        environment: &str,
        name: Option<&str>,
        body: &StateRollback,
    ) -> Result<StateVersion, ClientError> {
        self.post(
            &state_path(project, environment, name, "/rollback", &[]),
            body,
        )
        .await
    }

    /// Writes `body` as a new version; `None` when it equals the current one.
    pub async fn state_push(
        &self,
        project: &str,
        environment: &str,
        name: Option<&str>,
        body: Vec<u8>,
        force: bool,
    ) -> Result<Option<StateVersion>, ClientError> {
        let extra: Vec<_> = force
            .then(|| ("force", "true".to_owned()))
            .into_iter()
            .collect();
        let url = self.url(&state_path(project, environment, name, "/push", &extra));
        self.send(
            self.http
                .post(url)
                .header("content-type", "application/json")
                .body(body),
        )
        .await
    }

    /// Soft-deletes the state (admin only).
    pub async fn state_delete(
        &self,
        project: &str,
        environment: &str,
        name: Option<&str>,
    ) -> Result<(), ClientError> {
        self.send_bytes(self.http.delete(self.url(&state_path(
            project,
            environment,
            name,
            "",
            &[],
        ))))
        .await?;
        Ok(())
    }

    pub async fn state_retention(
        &self,
        project: &str,
        environment: &str,
        name: Option<&str>,
        body: &StateRetention,
    ) -> Result<StateRetention, ClientError> {
        self.send(
            self.http
                .put(self.url(&state_path(project, environment, name, "/retention", &[])))
                .json(body),
        )
        .await
    }

    pub async fn tokens_revoke(&self, name: &str) -> Result<Token, ClientError> {
        self.send(
            self.http
                .delete(self.url(&format!("/api/v1/tokens/{}", enc(name)))),
        )
        .await
    }
}

/// `/api/v1/states/{project}/{environment}{suffix}?name=…&extra`: a named state is a query
/// parameter on every state address.
fn state_path(
    project: &str,
    environment: &str,
    name: Option<&str>,
    suffix: &str,
    extra: &[(&str, String)],
) -> String {
    let mut query: Vec<String> = Vec::new();
    if let Some(name) = name.filter(|n| !n.is_empty()) {
        query.push(format!("name={}", enc(name)));
    }
    for (key, value) in extra {
        query.push(format!("{key}={}", enc(value)));
    }
    let mut path = format!(
        "/api/v1/states/{}/{}{suffix}",
        enc(project),
        enc(environment)
    );
    if !query.is_empty() {
        path.push('?');
        path.push_str(&query.join("&"));
    }
    path
}

/// Percent-encodes a path segment.
pub(crate) fn enc(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Logs in with a password, mints a personal token with that browser-style session (cookie
/// plus CSRF token), and ends the session: how `ferry login` gets a user their own token
/// without an admin. The password is sent once, over the connection to `base`.
pub async fn login_for_token(
    base: &str,
    login: &Login,
    token: &TokenCreate,
) -> Result<TokenCreated, ClientError> {
    let base = base.trim_end_matches('/');
    let http = reqwest::Client::new();
    let connect = |source| ClientError::Connect {
        url: base.to_owned(),
        source,
    };
    let resp = http
        .post(format!("{base}/api/v1/login"))
        .json(login)
        .send()
        .await
        .map_err(connect)?;
    // `name=value`, the first part of the Set-Cookie header.
    let cookie = resp
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    let session: SessionInfo = decode(resp).await?;
    let cookie =
        cookie.ok_or_else(|| ClientError::Protocol("the login set no session cookie".into()))?;
    let with_session = |req: reqwest::RequestBuilder| {
        req.header(reqwest::header::COOKIE, &cookie)
            .header("x-csrf-token", &session.csrf_token)
    };
    let created = with_session(http.post(format!("{base}/api/v1/tokens")).json(token))
        .send()
        .await
        .map_err(connect)?;
    let created: Result<TokenCreated, ClientError> = decode(created).await;
    // End the session whatever happened; the token (if any) is what the user keeps.
    let _ = with_session(http.post(format!("{base}/api/v1/logout")))
        .send()
        .await;
    created
}

/// The JSON body of a successful answer, or the error body as a [`ClientError::Api`].
async fn decode<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T, ClientError> {
    let status = resp.status();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
    if !status.is_success() {
        let body = serde_json::from_slice::<ErrorBody>(&bytes).unwrap_or_else(|_| ErrorBody {
            code: "http_error".into(),
            message: format!("HTTP {status}: {}", String::from_utf8_lossy(&bytes)),
            details: Vec::new(),
            request_id: None,
        });
        return Err(ClientError::Api {
            status: status.as_u16(),
            body,
        });
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ClientError::Protocol(format!("{e}: {}", String::from_utf8_lossy(&bytes))))
}
