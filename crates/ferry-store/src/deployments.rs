//! What each environment runs: one row per environment a run completed, the history that
//! promotion checks and rollback returns to; and the approvals waiting for a decision.

use ferry_core::{RunId, RunNumber};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use crate::model::{Deployment, Run};
use crate::{now, parse, Result, Store};

fn deployment_row(r: &SqliteRow) -> Result<Deployment> {
    Ok(Deployment {
        project: r.get("project"),
        pipeline: r.get("pipeline"),
        environment: r.get("environment"),
        run_id: RunId(r.get("run_id")),
        run_number: RunNumber(r.get("number")),
        run_kind: parse("runs", r.get::<&str, _>("kind"))?,
        commit_sha: r.get("commit_sha"),
        plan_sha256: r.get("plan_sha256"),
        changed: r.get::<i64, _>("changed") != 0,
        completed_at: r.get("completed_at"),
    })
}

const DEPLOYMENT_SELECT: &str =
    "SELECT d.*, projects.name AS project, runs.number, runs.kind FROM deployments d \
     JOIN projects ON projects.id = d.project_id JOIN runs ON runs.id = d.run_id";

impl Store {
    /// Records that `run` completed `environment` (idempotent: a resumed driver may ask twice).
    pub async fn record_deployment(
        &self,
        run: &Run,
        environment: &str,
        plan_sha256: Option<&str>,
        changed: bool,
    ) -> Result<()> {
        sqlx::query(
            "INSERT OR IGNORE INTO deployments (project_id, pipeline, environment, run_id, commit_sha, plan_sha256, \
             changed, completed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(run.project_id)
        .bind(&run.pipeline)
        .bind(environment)
        .bind(run.id.0)
        .bind(&run.commit_sha)
        .bind(plan_sha256)
        .bind(changed as i64)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// An environment's history, newest first (`environment: None`: every environment).
    pub async fn deployments(
        &self,
        project_id: i64,
        pipeline: &str,
        environment: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Deployment>> {
        let mut sql = format!("{DEPLOYMENT_SELECT} WHERE d.project_id = ? AND d.pipeline = ?");
        if environment.is_some() {
            sql.push_str(" AND d.environment = ?");
        }
        sql.push_str(" ORDER BY d.id DESC LIMIT ?");
        let mut query = sqlx::query(&sql).bind(project_id).bind(pipeline);
        if let Some(environment) = environment {
            query = query.bind(environment);
        }
        let rows = query.bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(deployment_row).collect()
    }

    /// Whether `commit` completed `environment` in some run of the pipeline.
    pub async fn deployed(
        &self,
        project_id: i64,
        pipeline: &str,
        environment: &str,
        commit: &str,
    ) -> Result<Option<Deployment>> {
        let row = sqlx::query(&format!(
            "{DEPLOYMENT_SELECT} WHERE d.project_id = ? AND d.pipeline = ? AND d.environment = ? AND d.commit_sha = ? \
             ORDER BY d.id DESC LIMIT 1"
        ))
        .bind(project_id)
        .bind(pipeline)
        .bind(environment)
        .bind(commit)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(deployment_row).transpose()
    }

    /// Runs waiting for an approval, with the environment each waits in, oldest first.
    pub async fn waiting_approvals(&self) -> Result<Vec<(Run, String)>> {
        let rows = sqlx::query(
            "SELECT runs.id, stages.environment FROM runs JOIN stages ON stages.run_id = runs.id \
             WHERE runs.status = 'WaitingForApproval' AND stages.kind = 'approval' AND stages.status = 'WaitingForApproval' \
             ORDER BY runs.id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let run = self.run(RunId(row.get(0))).await?;
            out.push((run, row.get(1)));
        }
        Ok(out)
    }
}
