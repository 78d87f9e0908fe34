//! Consistent online snapshots of the database, and the walk over every stored state version
//! that a restore uses to prove the blobs and the rows still agree.

use std::path::Path;

use sqlx::Row;

use crate::{Result, Store};

/// One state version with its address, for verification after a restore.
#[derive(Debug, Clone)]
pub struct StoredVersion {
    pub project: String,
    pub environment: String,
    pub name: String,
    pub version: crate::StateVersion,
}

impl Store {
    /// Writes a consistent snapshot of the database to `path` (`VACUUM INTO`), safe while the
    /// server is running: it reads one transaction's view. Blob files are immutable and
    /// written before the rows that reference them commit, so copying the blob directory
    /// *after* this snapshot captures every blob the snapshot references.
    pub async fn snapshot_into(&self, path: &Path) -> Result<()> {
        sqlx::query("VACUUM INTO ?")
            .bind(path.to_string_lossy().into_owned())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every state version that has not been pruned, with its state's address.
    pub async fn stored_versions(&self) -> Result<Vec<StoredVersion>> {
        let rows = sqlx::query(
            "SELECT v.*, p.name AS project, s.environment AS environment, s.name AS state_name \
             FROM state_versions v JOIN states s ON s.id = v.state_id JOIN projects p ON p.id = s.project_id \
             WHERE v.pruned_at IS NULL ORDER BY v.id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| StoredVersion {
                project: r.get("project"),
                environment: r.get("environment"),
                name: r.get("state_name"),
                version: crate::states::version_row(r),
            })
            .collect())
    }
}

/// A state version re-encrypted under a new master key: its new blob, already durable.
#[derive(Debug, Clone)]
pub struct Reencrypted {
    pub version_id: i64,
    pub blob: String,
}

impl Store {
    /// The commit point of a master key rotation: every version's row moves to its
    /// re-encrypted blob, the keyring and every secret and parameter version are re-wrapped, in
    /// one transaction, audited.
    pub async fn commit_rotation(
        &self,
        actor: &crate::Actor,
        old: &ferry_secrets::MasterKey,
        new: &ferry_secrets::MasterKey,
        versions: &[Reencrypted],
    ) -> Result<()> {
        let mut tx = self.write().await?;
        for v in versions {
            sqlx::query("UPDATE state_versions SET blob = ?, key_id = ? WHERE id = ?")
                .bind(&v.blob)
                .bind(new.id())
                .bind(v.version_id)
                .execute(&mut *tx)
                .await?;
        }
        crate::keyring::rewrap(&mut tx, old, new).await?;
        let secret_versions = crate::secrets::rewrap(&mut tx, old, new).await?;
        let entry = crate::AuditEntry::new("admin.rotate_master_key", "master-key").details(
            serde_json::json!({
                "from": old.id(), "to": new.id(), "state_versions": versions.len(),
                "secret_versions": secret_versions,
            }),
        );
        let record = self.audit_in(&mut tx, actor, entry).await?;
        tx.commit().await?;
        self.audit_committed(&record)
    }
}
