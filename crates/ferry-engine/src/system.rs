//! The server's own bookkeeping: readiness, counts for bootstrap, closing the store.

use ferry_core::{Actor, Grant};
use ferry_store::{Scope, SecretKind, SecretMeta, SecretName, User, WaiverRow};

use crate::{Engine, Result};

impl Engine {
    pub async fn ping(&self) -> Result<()> {
        Ok(self.inner.store.ping().await?)
    }

    pub async fn count_tokens(&self) -> Result<i64> {
        Ok(self.inner.store.count_tokens().await?)
    }

    pub async fn count_users(&self) -> Result<i64> {
        Ok(self.inner.store.count_users().await?)
    }

    pub async fn token_scopes(&self, token_id: i64) -> Result<Vec<Grant>> {
        Ok(self.inner.store.token_scopes(token_id).await?)
    }

    pub async fn user_by_id(&self, id: i64) -> Result<User> {
        Ok(self.inner.store.user_by_id(id).await?)
    }

    pub async fn user_grants(&self, user_id: i64) -> Result<Vec<Grant>> {
        Ok(self.inner.store.user_grants(user_id).await?)
    }

    pub async fn remove_secret(
        &self,
        actor: &Actor,
        kind: SecretKind,
        scope: &Scope,
        name: &SecretName,
    ) -> Result<SecretMeta> {
        Ok(self
            .inner
            .store
            .remove_secret(actor, kind, scope, name)
            .await?)
    }

    pub async fn list_secrets(
        &self,
        kind: SecretKind,
        project: Option<&str>,
    ) -> Result<Vec<SecretMeta>> {
        Ok(self.inner.store.list_secrets(kind, project).await?)
    }

    pub async fn waiver(&self, id: i64) -> Result<WaiverRow> {
        Ok(self.inner.store.waiver(id).await?)
    }

    pub async fn waivers(&self, project_id: i64, include_revoked: bool) -> Result<Vec<WaiverRow>> {
        Ok(self
            .inner
            .store
            .waivers(project_id, include_revoked)
            .await?)
    }

    pub async fn revoke_waiver(&self, actor: &Actor, id: i64) -> Result<WaiverRow> {
        Ok(self.inner.store.revoke_waiver(actor, id).await?)
    }

    /// Closes the store's connections (at shutdown, after every driver stopped).
    pub async fn close(&self) {
        self.inner.store.close().await
    }
}
