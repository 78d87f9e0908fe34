//! Projects: registration, their git credentials, and reading them back.

use ferry_core::Actor;
use ferry_store::{GitCredentials, Project};

use crate::{Engine, Result};

impl Engine {
    pub async fn project(&self, name: &str) -> Result<Project> {
        Ok(self.inner.store.project(name).await?)
    }

    pub async fn list_projects(&self) -> Result<Vec<Project>> {
        Ok(self.inner.store.list_projects().await?)
    }

    pub async fn create_project_with(
        &self,
        actor: &Actor,
        name: &str,
        repo: &str,
        git: Option<&GitCredentials>,
    ) -> Result<Project> {
        Ok(self
            .inner
            .store
            .create_project_with(actor, name, repo, git)
            .await?)
    }

    pub async fn set_project_git(
        &self,
        actor: &Actor,
        name: &str,
        git: Option<&GitCredentials>,
    ) -> Result<Project> {
        Ok(self.inner.store.set_project_git(actor, name, git).await?)
    }
}
