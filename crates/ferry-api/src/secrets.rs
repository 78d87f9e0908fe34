//! Wire types and client calls for secrets and parameters (`/api/v1/secrets`,
//! `/api/v1/params`). A secret's value travels only *to* the server, in [`SecretSet`];
//! no response type has a field that could carry it. A parameter's value is readable
//! ([`ParamValue`]).

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::client::enc;
use crate::{Client, ClientError};

/// Metadata of a secret or parameter. Never its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SecretInfo {
    /// `secret` or `param`.
    pub kind: String,
    pub name: String,
    /// Absent for a global value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Present for a value scoped to one environment of `project`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// The current version (1, 2, …); each set makes a new one.
    pub version: i64,
    pub created_at: String,
    pub created_by: String,
    pub updated_at: String,
    pub updated_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<String>,
    /// The run that used it last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_run: Option<i64>,
}

/// The body of a set. Its `Debug` never shows the value.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretSet {
    /// At least 4 bytes for a secret, 1 for a parameter; at most 64 KiB.
    pub value: String,
}

impl fmt::Debug for SecretSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretSet")
            .field("value", &"<redacted>")
            .finish()
    }
}

/// A parameter with its current value.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ParamValue {
    #[serde(flatten)]
    pub param: SecretInfo,
    pub value: String,
}

/// The scope of a value: none (global), a project, or a project's environment.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ScopeQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Needs `project`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
}

impl ScopeQuery {
    pub fn new(project: Option<&str>, env: Option<&str>) -> ScopeQuery {
        ScopeQuery {
            project: project.map(str::to_owned),
            env: env.map(str::to_owned),
        }
    }
}

/// Which collection: `secrets` or `params`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    Secret,
    Param,
}

impl SecretKind {
    fn path(self) -> &'static str {
        match self {
            SecretKind::Secret => "/api/v1/secrets",
            SecretKind::Param => "/api/v1/params",
        }
    }
}

impl Client {
    /// Metadata of every secret or parameter (of `project` and global ones, if given).
    pub async fn secrets_list(
        &self,
        kind: SecretKind,
        project: Option<&str>,
    ) -> Result<Vec<SecretInfo>, ClientError> {
        let mut req = self.http().get(self.url(kind.path()));
        if let Some(p) = project {
            req = req.query(&[("project", p)]);
        }
        self.send(req).await
    }

    /// Sets a new version of a secret or parameter.
    pub async fn secrets_set(
        &self,
        kind: SecretKind,
        name: &str,
        scope: &ScopeQuery,
        body: &SecretSet,
    ) -> Result<SecretInfo, ClientError> {
        let url = self.url(&format!("{}/{}", kind.path(), enc(name)));
        self.send(self.http().put(url).query(scope).json(body))
            .await
    }

    pub async fn secrets_delete(
        &self,
        kind: SecretKind,
        name: &str,
        scope: &ScopeQuery,
    ) -> Result<SecretInfo, ClientError> {
        let url = self.url(&format!("{}/{}", kind.path(), enc(name)));
        self.send(self.http().delete(url).query(scope)).await
    }

    /// A parameter's value at exactly `scope` (secrets have no such call).
    pub async fn params_get(
        &self,
        name: &str,
        scope: &ScopeQuery,
    ) -> Result<ParamValue, ClientError> {
        let url = self.url(&format!("/api/v1/params/{}", enc(name)));
        self.send(self.http().get(url).query(scope)).await
    }
}
