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

    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
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
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Protocol(format!("{e}: {}", String::from_utf8_lossy(&bytes))))
    }

    fn url(&self, path: &str) -> String {
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

    pub async fn queue(&self) -> Result<Vec<EnvironmentQueue>, ClientError> {
        self.get("/api/v1/queue").await
    }

    pub async fn tokens_create(&self, body: &TokenCreate) -> Result<TokenCreated, ClientError> {
        self.post("/api/v1/tokens", body).await
    }

    pub async fn tokens_list(&self) -> Result<Vec<Token>, ClientError> {
        self.get("/api/v1/tokens").await
    }

    pub async fn tokens_revoke(&self, name: &str) -> Result<Token, ClientError> {
        self.send(
            self.http
                .delete(self.url(&format!("/api/v1/tokens/{}", enc(name)))),
        )
        .await
    }
}

/// Percent-encodes a path segment.
fn enc(segment: &str) -> String {
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
