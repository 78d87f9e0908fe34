//! The state backend's other operations: reading states and their versions, locking,
//! soft delete, retention and pruning (writes are `state.rs`).

use std::path::Path;

use chrono::{DateTime, Utc};
use ferry_core::Actor;
use ferry_state::{LockDecision, LockInfo, LockRequest};
use ferry_store::{
    LockOwner, PrunedVersions, StateAddr, StateListing, StateRow, StateVersion, UnlockOutcome,
    VersionInfo,
};

use crate::{Engine, Result};

impl Engine {
    pub async fn state(
        &self,
        addr: StateAddr<'_>,
    ) -> Result<Option<(StateRow, Option<StateVersion>)>> {
        Ok(self.inner.store.state(addr).await?)
    }

    pub async fn state_version(
        &self,
        addr: StateAddr<'_>,
        number: i64,
    ) -> Result<(StateRow, VersionInfo)> {
        Ok(self.inner.store.state_version(addr, number).await?)
    }

    pub async fn state_versions(&self, addr: StateAddr<'_>) -> Result<Vec<VersionInfo>> {
        Ok(self.inner.store.state_versions(addr).await?)
    }

    pub async fn list_states(&self, project: Option<&str>) -> Result<Vec<StateListing>> {
        Ok(self.inner.store.list_states(project).await?)
    }

    pub async fn delete_state(&self, actor: &Actor, addr: StateAddr<'_>) -> Result<StateRow> {
        Ok(self.inner.store.delete_state(actor, addr).await?)
    }

    pub async fn set_state_retention(
        &self,
        actor: &Actor,
        addr: StateAddr<'_>,
        days: i64,
        keep: i64,
    ) -> Result<StateRow> {
        Ok(self
            .inner
            .store
            .set_state_retention(actor, addr, days, keep)
            .await?)
    }

    pub async fn prune_state_versions(
        &self,
        actor: &Actor,
        now_at: DateTime<Utc>,
        data_dir: &Path,
    ) -> Result<Vec<PrunedVersions>> {
        Ok(self
            .inner
            .store
            .prune_state_versions(actor, now_at, data_dir)
            .await?)
    }

    pub async fn state_lock(
        &self,
        actor: &Actor,
        owner: &LockOwner,
        addr: StateAddr<'_>,
        request: &LockInfo,
    ) -> Result<LockDecision> {
        Ok(self
            .inner
            .store
            .state_lock(actor, owner, addr, request)
            .await?)
    }

    pub async fn state_unlock(
        &self,
        actor: &Actor,
        owner: &LockOwner,
        addr: StateAddr<'_>,
        request: &LockRequest,
        may_force: bool,
    ) -> Result<UnlockOutcome> {
        Ok(self
            .inner
            .store
            .state_unlock(actor, owner, addr, request, may_force)
            .await?)
    }
}
