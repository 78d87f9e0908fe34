//! State operations beyond the backend protocol: listing states and their versions, reading
//! one version's metadata, soft delete, per-state retention settings and pruning old versions.
//! Pruning never touches a state's current version nor its newest `retention_keep` versions;
//! a pruned version keeps its row (with `pruned_at`) while its encrypted blob is deleted.

use std::path::Path;

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::audit::AuditEntry;
use crate::states::{find_state, state_row, version_by_id, version_row};
use crate::{now, Actor, Error, Result, StateAddr, StateRow, StateVersion, Store};

/// One state in a listing, with its project's name and its current version.
#[derive(Debug, Clone)]
pub struct StateListing {
    pub project: String,
    pub state: StateRow,
    pub current: Option<StateVersion>,
}

/// A version with its pruning mark.
#[derive(Debug, Clone)]
pub struct VersionInfo {
    pub version: StateVersion,
    /// Set when retention deleted the content; the metadata stays.
    pub pruned_at: Option<String>,
}

/// What one pruning pass removed from one state.
#[derive(Debug, Clone)]
pub struct PrunedVersions {
    pub state: String,
    pub numbers: Vec<i64>,
}

fn version_info(r: &sqlx::sqlite::SqliteRow) -> VersionInfo {
    VersionInfo {
        version: version_row(r),
        pruned_at: r.get("pruned_at"),
    }
}

fn not_found(addr: StateAddr<'_>) -> Error {
    Error::NotFound {
        what: "state",
        id: addr.display(),
    }
}

impl Store {
    /// Every live state, optionally of one project, ordered by project, environment, name.
    pub async fn list_states(&self, project: Option<&str>) -> Result<Vec<StateListing>> {
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query(
            "SELECT states.*, projects.name AS project FROM states JOIN projects ON projects.id = states.project_id \
             WHERE states.deleted_at IS NULL AND (? IS NULL OR projects.name = ?) \
             ORDER BY projects.name, states.environment, states.name",
        )
        .bind(project)
        .bind(project)
        .fetch_all(&mut *conn)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let state = state_row(row);
            let current = match state.current_version {
                Some(id) => Some(version_by_id(&mut conn, id).await?),
                None => None,
            };
            out.push(StateListing {
                project: row.get("project"),
                state,
                current,
            });
        }
        Ok(out)
    }

    /// A live state's versions, newest first.
    pub async fn state_versions(&self, addr: StateAddr<'_>) -> Result<Vec<VersionInfo>> {
        let mut conn = self.pool.acquire().await?;
        let state = find_state(&mut conn, addr)
            .await?
            .ok_or_else(|| not_found(addr))?;
        let rows =
            sqlx::query("SELECT * FROM state_versions WHERE state_id = ? ORDER BY number DESC")
                .bind(state.id)
                .fetch_all(&mut *conn)
                .await?;
        Ok(rows.iter().map(version_info).collect())
    }

    /// The live state and its version `number`.
    pub async fn state_version(
        &self,
        addr: StateAddr<'_>,
        number: i64,
    ) -> Result<(StateRow, VersionInfo)> {
        let mut conn = self.pool.acquire().await?;
        let state = find_state(&mut conn, addr)
            .await?
            .ok_or_else(|| not_found(addr))?;
        let row = sqlx::query("SELECT * FROM state_versions WHERE state_id = ? AND number = ?")
            .bind(state.id)
            .bind(number)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: "state version",
                id: format!("{}@{number}", addr.display()),
            })?;
        Ok((state, version_info(&row)))
    }

    /// Soft-deletes a state: it disappears from the backend and listings; its versions stay
    /// until retention prunes them. Refused while locked.
    pub async fn delete_state(&self, actor: &Actor, addr: StateAddr<'_>) -> Result<StateRow> {
        let mut tx = self.write().await?;
        let state = find_state(&mut tx, addr)
            .await?
            .ok_or_else(|| not_found(addr))?;
        if let Some(lock) = &state.lock {
            return Err(Error::Conflict(format!(
                "state {} is locked by {} ({}); unlock it first",
                addr.display(),
                lock.who,
                lock.id
            )));
        }
        sqlx::query("UPDATE states SET deleted_at = ? WHERE id = ?")
            .bind(now())
            .bind(state.id)
            .execute(&mut *tx)
            .await?;
        let entry = AuditEntry::new("state.delete", format!("state/{}", addr.display()))
            .details(serde_json::json!({ "current_version": state.current_version }));
        let record = self.audit_in(&mut tx, actor, entry).await?;
        tx.commit().await?;
        self.audit_committed(&record)?;
        Ok(state)
    }

    /// Sets a state's retention: keep versions `days` days and at least the newest `keep`.
    pub async fn set_state_retention(
        &self,
        actor: &Actor,
        addr: StateAddr<'_>,
        days: i64,
        keep: i64,
    ) -> Result<StateRow> {
        // The same bounds as `ferry_api::MAX_RETENTION_*`: past a century, `now - days`
        // would leave the calendar.
        if !(0..=36_500).contains(&days) || !(1..=1_000_000).contains(&keep) {
            return Err(Error::Conflict(
                "retention needs days from 0 to 36500 and keep from 1 to 1000000".into(),
            ));
        }
        let mut tx = self.write().await?;
        let state = find_state(&mut tx, addr)
            .await?
            .ok_or_else(|| not_found(addr))?;
        let row = sqlx::query(
            "UPDATE states SET retention_days = ?, retention_keep = ? WHERE id = ? RETURNING *",
        )
        .bind(days)
        .bind(keep)
        .bind(state.id)
        .fetch_one(&mut *tx)
        .await?;
        let entry = AuditEntry::new("state.retention", format!("state/{}", addr.display()))
            .details(serde_json::json!({
                "days": days, "keep": keep,
                "previous": { "days": state.retention_days, "keep": state.retention_keep },
            }));
        let record = self.audit_in(&mut tx, actor, entry).await?;
        tx.commit().await?;
        self.audit_committed(&record)?;
        Ok(state_row(&row))
    }

    /// Prunes versions older than their state's `retention_days` that are neither among its
    /// newest `retention_keep` nor its current version: marks them `pruned_at` and deletes
    /// their blob files. Applies to soft-deleted states too. One audit entry per state.
    pub async fn prune_state_versions(
        &self,
        actor: &Actor,
        now_at: DateTime<Utc>,
        data_dir: &Path,
    ) -> Result<Vec<PrunedVersions>> {
        let mut tx = self.write().await?;
        let states = sqlx::query(
            "SELECT states.*, projects.name AS project FROM states JOIN projects ON projects.id = states.project_id",
        )
        .fetch_all(&mut *tx)
        .await?;
        let stamp = now();
        let mut pruned = Vec::new();
        let mut records = Vec::new();
        let mut blobs = Vec::new();
        for row in &states {
            let state = state_row(row);
            let project: String = row.get("project");
            let cutoff = now_at - chrono::Duration::days(state.retention_days);
            let versions =
                sqlx::query("SELECT * FROM state_versions WHERE state_id = ? ORDER BY number DESC")
                    .bind(state.id)
                    .fetch_all(&mut *tx)
                    .await?;
            let mut numbers = Vec::new();
            for (index, v) in versions.iter().map(version_info).enumerate() {
                if v.pruned_at.is_some()
                    || (index as i64) < state.retention_keep
                    || Some(v.version.id) == state.current_version
                {
                    continue;
                }
                let created = DateTime::parse_from_rfc3339(&v.version.created_at)
                    .map_err(|e| Error::Corrupt {
                        table: "state_versions",
                        message: e.to_string(),
                    })?
                    .with_timezone(&Utc);
                if created > cutoff {
                    continue;
                }
                sqlx::query("UPDATE state_versions SET pruned_at = ? WHERE id = ?")
                    .bind(&stamp)
                    .bind(v.version.id)
                    .execute(&mut *tx)
                    .await?;
                numbers.push(v.version.number);
                blobs.push(v.version.blob.clone());
            }
            if numbers.is_empty() {
                continue;
            }
            numbers.sort_unstable();
            let addr = StateAddr {
                project_id: 0,
                project: &project,
                environment: &state.environment,
                name: &state.name,
            };
            let target = addr.display();
            let entry = AuditEntry::new("state.prune", format!("state/{target}")).details(
                serde_json::json!({
                    "versions": numbers,
                    "retention_days": state.retention_days,
                    "retention_keep": state.retention_keep,
                }),
            );
            records.push(self.audit_in(&mut tx, actor, entry).await?);
            pruned.push(PrunedVersions {
                state: target,
                numbers,
            });
        }
        tx.commit().await?;
        for record in &records {
            self.audit_committed(record)?;
        }
        // The rows say "pruned" before any content goes: a crash here leaves an orphan blob,
        // never a version row whose content is missing without saying so.
        for rel in &blobs {
            match std::fs::remove_file(data_dir.join(rel)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(blob = %rel, error = %e, "cannot delete a pruned state blob")
                }
            }
        }
        for p in &pruned {
            tracing::info!(state = %p.state, versions = ?p.numbers, "pruned state versions");
        }
        Ok(pruned)
    }
}
