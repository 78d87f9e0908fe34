//! The policy gate's records: each environment's policy report (stored with its plan for the
//! approval view), the `POLICY_VIOLATION` failure of a policy stage, and waivers.
//!
//! The store does not know `ferry_policy`: reports are JSON text the engine produced, and a
//! waiver row carries plain fields the engine turns into a `ferry_policy::Waiver`.

use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use crate::audit::AuditEntry;
use crate::{now, Actor, Error, Result, Store};

/// One environment's policy verdict for a run.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyReportRow {
    pub run_id: i64,
    pub environment: String,
    pub blocked: bool,
    /// JSON of `ferry_policy::Report`.
    pub report: String,
    pub created_at: String,
}

/// A waiver as stored. `revoked_at` is set once revoked; the row stays for the record.
#[derive(Debug, Clone, PartialEq)]
pub struct WaiverRow {
    pub id: i64,
    pub project: String,
    pub rule: String,
    pub address: String,
    pub environment: String,
    pub resource_type: Option<String>,
    pub reason: String,
    pub expires_at: String,
    pub created_by: String,
    pub created_at: String,
    pub run_id: Option<i64>,
    pub revoked_at: Option<String>,
    pub revoked_by: Option<String>,
}

/// What a new waiver says; the engine has validated it.
#[derive(Debug, Clone)]
pub struct NewWaiver {
    pub project_id: i64,
    pub rule: String,
    pub address: String,
    pub environment: String,
    pub resource_type: Option<String>,
    pub reason: String,
    pub expires_at: String,
    pub run_id: Option<i64>,
}

const WAIVER_SELECT: &str =
    "SELECT waivers.*, projects.name AS project FROM waivers JOIN projects ON projects.id = waivers.project_id";

fn waiver_row(r: &SqliteRow) -> WaiverRow {
    WaiverRow {
        id: r.get("id"),
        project: r.get("project"),
        rule: r.get("rule"),
        address: r.get("address"),
        environment: r.get("environment"),
        resource_type: r.get("resource_type"),
        reason: r.get("reason"),
        expires_at: r.get("expires_at"),
        created_by: r.get("created_by"),
        created_at: r.get("created_at"),
        run_id: r.get("run_id"),
        revoked_at: r.get("revoked_at"),
        revoked_by: r.get("revoked_by"),
    }
}

fn report_row(r: &SqliteRow) -> PolicyReportRow {
    PolicyReportRow {
        run_id: r.get("run_id"),
        environment: r.get("environment"),
        blocked: r.get::<i64, _>("blocked") != 0,
        report: r.get("report"),
        created_at: r.get("created_at"),
    }
}

impl Store {
    /// Records (or replaces, on a re-run of the stage) an environment's policy report.
    pub async fn record_policy_report(
        &self,
        run_id: i64,
        environment: &str,
        blocked: bool,
        report: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO policy_reports (run_id, environment, blocked, report, created_at) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (run_id, environment) DO UPDATE SET blocked = excluded.blocked, \
             report = excluded.report, created_at = excluded.created_at",
        )
        .bind(run_id)
        .bind(environment)
        .bind(blocked as i64)
        .bind(report)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every environment's policy report of a run, in the order they were made.
    pub async fn policy_reports(&self, run_id: i64) -> Result<Vec<PolicyReportRow>> {
        let rows = sqlx::query("SELECT * FROM policy_reports WHERE run_id = ? ORDER BY created_at")
            .bind(run_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(report_row).collect())
    }

    pub async fn policy_report(
        &self,
        run_id: i64,
        environment: &str,
    ) -> Result<Option<PolicyReportRow>> {
        let row = sqlx::query("SELECT * FROM policy_reports WHERE run_id = ? AND environment = ?")
            .bind(run_id)
            .bind(environment)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(report_row))
    }

    /// Grants a waiver, audited as `policy.waive`.
    pub async fn create_waiver(&self, actor: &Actor, new: &NewWaiver) -> Result<WaiverRow> {
        let mut tx = self.write().await?;
        let id: i64 = sqlx::query(
            "INSERT INTO waivers (project_id, rule, address, environment, resource_type, reason, expires_at, \
             created_by, created_at, run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(new.project_id)
        .bind(&new.rule)
        .bind(&new.address)
        .bind(&new.environment)
        .bind(&new.resource_type)
        .bind(&new.reason)
        .bind(&new.expires_at)
        .bind(&actor.name)
        .bind(now())
        .bind(new.run_id)
        .fetch_one(&mut *tx)
        .await?
        .get(0);
        let row = sqlx::query(&format!("{WAIVER_SELECT} WHERE waivers.id = ?"))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let waiver = waiver_row(&row);
        let entry =
            AuditEntry::new("policy.waive", format!("waiver/{id}")).details(serde_json::json!({
                "project": waiver.project,
                "rule": waiver.rule,
                "address": waiver.address,
                "environment": waiver.environment,
                "resource_type": waiver.resource_type,
                "reason": waiver.reason,
                "expires_at": waiver.expires_at,
                "run_id": waiver.run_id,
            }));
        let record = self.audit_in(&mut tx, actor, entry).await?;
        tx.commit().await?;
        self.audit_committed(&record)?;
        Ok(waiver)
    }

    /// Revokes a waiver, audited as `policy.unwaive`. Revoking twice is a conflict.
    pub async fn revoke_waiver(&self, actor: &Actor, id: i64) -> Result<WaiverRow> {
        let mut tx = self.write().await?;
        let row = sqlx::query(&format!("{WAIVER_SELECT} WHERE waivers.id = ?"))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: "waiver",
                id: id.to_string(),
            })?;
        let waiver = waiver_row(&row);
        if waiver.revoked_at.is_some() {
            return Err(Error::Conflict(format!("waiver {id} is already revoked")));
        }
        sqlx::query("UPDATE waivers SET revoked_at = ?, revoked_by = ? WHERE id = ?")
            .bind(now())
            .bind(&actor.name)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let entry =
            AuditEntry::new("policy.unwaive", format!("waiver/{id}")).details(serde_json::json!({
                "project": waiver.project,
                "rule": waiver.rule,
                "address": waiver.address,
                "environment": waiver.environment,
            }));
        let record = self.audit_in(&mut tx, actor, entry).await?;
        let row = sqlx::query(&format!("{WAIVER_SELECT} WHERE waivers.id = ?"))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        self.audit_committed(&record)?;
        Ok(waiver_row(&row))
    }

    pub async fn waiver(&self, id: i64) -> Result<WaiverRow> {
        let row = sqlx::query(&format!("{WAIVER_SELECT} WHERE waivers.id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: "waiver",
                id: id.to_string(),
            })?;
        Ok(waiver_row(&row))
    }

    /// A project's waivers, newest first; revoked ones only when asked for.
    pub async fn waivers(&self, project_id: i64, include_revoked: bool) -> Result<Vec<WaiverRow>> {
        let sql = format!(
            "{WAIVER_SELECT} WHERE waivers.project_id = ?{} ORDER BY waivers.id DESC",
            if include_revoked {
                ""
            } else {
                " AND waivers.revoked_at IS NULL"
            }
        );
        let rows = sqlx::query(&sql)
            .bind(project_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(waiver_row).collect())
    }
}
