//! Reading runs: one run, its stages and actions, lists and counts, the environment
//! queues, and the policy reports of a run.

use ferry_core::{RunId, RunStatus};
use ferry_store::{EnvQueue, PolicyReportRow, Run, RunDetail, RunFilter};

use crate::{Engine, Result};

impl Engine {
    pub async fn run(&self, id: RunId) -> Result<Run> {
        Ok(self.inner.store.run(id).await?)
    }

    pub async fn run_detail(&self, id: RunId) -> Result<RunDetail> {
        Ok(self.inner.store.run_detail(id).await?)
    }

    pub async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        Ok(self.inner.store.list_runs(filter).await?)
    }

    pub async fn run_counts(&self) -> Result<Vec<(RunStatus, i64)>> {
        Ok(self.inner.store.run_counts().await?)
    }

    pub async fn queue(&self) -> Result<Vec<EnvQueue>> {
        Ok(self.inner.store.queue().await?)
    }

    pub async fn policy_reports(&self, run_id: i64) -> Result<Vec<PolicyReportRow>> {
        Ok(self.inner.store.policy_reports(run_id).await?)
    }
}
