//! The audit chain as persisted rows: appending inside a caller's transaction, moving the
//! checkpoint outside the database after commit, and reading the chain back for
//! `ferry audit verify`. The cryptography lives in `ferry_secrets::audit`.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

use ferry_secrets::{AuditKey, AuditRecord, ChainError, Checkpoint, VerifyReport};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use crate::{Actor, Error, Result, Store};

/// What happened, to what, and how it ended; `details` is JSON and must never hold a secret.
/// Which audit rows to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub after: i64,
    pub actor: Option<String>,
    pub target: Option<String>,
    pub action: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: i64,
}

#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub details: serde_json::Value,
}

impl AuditEntry {
    pub fn new(action: &str, target: impl Into<String>) -> AuditEntry {
        AuditEntry {
            action: action.to_owned(),
            target: target.into(),
            outcome: "ok".to_owned(),
            details: serde_json::json!({}),
        }
    }

    pub fn outcome(mut self, outcome: &str) -> AuditEntry {
        self.outcome = outcome.to_owned();
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> AuditEntry {
        self.details = details;
        self
    }
}

/// Columns in the order of `AUDIT_COLUMNS`; strings exactly as sealed.
fn audit_row(r: &SqliteRow) -> AuditRecord {
    AuditRecord {
        seq: r.get(0),
        ts: r.get(1),
        actor: r.get(2),
        action: r.get(3),
        target: r.get(4),
        outcome: r.get(5),
        source: r.get(6),
        details: r.get(7),
        prev_mac: r.get(8),
        mac: r.get(9),
    }
}

const AUDIT_COLUMNS: &str =
    "seq, ts, actor, action, target, outcome, source, details, prev_mac, mac";

pub(crate) struct Chain {
    shared: Arc<Shared>,
}

/// What the chain and its checkpoint writer share.
struct Shared {
    key: AuditKey,
    checkpoint_path: PathBuf,
    pending: Mutex<Pending>,
    changed: Condvar,
}

#[derive(Default)]
struct Pending {
    /// The newest committed entry not yet in the checkpoint file.
    latest: Option<Checkpoint>,
    // Invariant: the highest seq written to the checkpoint file; the file never moves back.
    written: i64,
    closed: bool,
}

impl Chain {
    /// Starts the checkpoint writer: a thread that moves the out-of-database checkpoint to
    /// the newest committed entry, coalescing bursts (one file write and fsync per
    /// [`CHECKPOINT_BATCH`] at most, instead of two fsyncs per audited request).
    pub(crate) fn new(key: AuditKey, checkpoint_path: PathBuf) -> Chain {
        let shared = Arc::new(Shared {
            key,
            checkpoint_path,
            pending: Mutex::new(Pending::default()),
            changed: Condvar::new(),
        });
        let writer = shared.clone();
        std::thread::Builder::new()
            .name("ferry-audit-checkpoint".into())
            .spawn(move || writer.run())
            .expect("spawn the audit checkpoint writer");
        Chain { shared }
    }

    fn key(&self) -> &AuditKey {
        &self.shared.key
    }

    /// Waits until every committed entry handed to [`Chain::checkpoint`] is in the file (on
    /// close, so a clean stop leaves no lag).
    pub(crate) fn flush(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut pending = self
            .shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        while pending.latest.is_some() && std::time::Instant::now() < deadline {
            pending = self
                .shared
                .changed
                .wait_timeout(pending, std::time::Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// How long the writer lets entries accumulate after a write before the next one.
const CHECKPOINT_BATCH: std::time::Duration = std::time::Duration::from_millis(50);

impl Shared {
    fn run(&self) {
        loop {
            let cp = {
                let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                while pending.latest.is_none() && !pending.closed {
                    pending = self
                        .changed
                        .wait(pending)
                        .unwrap_or_else(|e| e.into_inner());
                }
                match pending.latest.clone() {
                    Some(cp) => cp,
                    None => return,
                }
            };
            if let Err(error) =
                ferry_secrets::write_checkpoint(&self.checkpoint_path, &self.key, &cp)
            {
                tracing::error!(%error, path = %self.checkpoint_path.display(), "cannot write the audit checkpoint");
            }
            {
                let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                pending.written = pending.written.max(cp.seq);
                if pending
                    .latest
                    .as_ref()
                    .is_some_and(|l| l.seq <= pending.written)
                {
                    pending.latest = None;
                }
                self.changed.notify_all();
            }
            std::thread::sleep(CHECKPOINT_BATCH);
        }
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        let mut pending = self
            .shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        pending.closed = true;
        self.shared.changed.notify_all();
    }
}

impl Chain {
    /// Appends one entry inside the caller's write transaction.
    pub(crate) async fn append(
        &self,
        conn: &mut SqliteConnection,
        actor: &Actor,
        entry: &AuditEntry,
    ) -> Result<AuditRecord> {
        let head = sqlx::query("SELECT seq, mac FROM audit ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
        let (seq, prev_mac) = match head {
            Some(row) => (row.get::<i64, _>(0) + 1, row.get::<String, _>(1)),
            None => (1, String::new()),
        };
        let record = self.key().seal(
            seq,
            &crate::now(),
            &actor.name,
            &entry.action,
            &entry.target,
            &entry.outcome,
            &actor.source,
            &entry.details.to_string(),
            &prev_mac,
        );
        sqlx::query(
            "INSERT INTO audit (seq, ts, actor, action, target, outcome, source, details, prev_mac, mac) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(record.seq)
        .bind(&record.ts)
        .bind(&record.actor)
        .bind(&record.action)
        .bind(&record.target)
        .bind(&record.outcome)
        .bind(&record.source)
        .bind(&record.details)
        .bind(&record.prev_mac)
        .bind(&record.mac)
        .execute(&mut *conn)
        .await?;
        Ok(record)
    }

    /// Hands the out-of-database checkpoint the entry whose transaction just committed; the
    /// writer thread moves the file shortly after. A crash before that leaves the checkpoint
    /// behind the database, which verification accepts; it is never ahead of committed rows.
    pub(crate) fn checkpoint(&self, record: &AuditRecord) -> Result<()> {
        let mut pending = self
            .shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let newest = pending
            .latest
            .as_ref()
            .map(|l| l.seq)
            .unwrap_or(0)
            .max(pending.written);
        if record.seq > newest {
            pending.latest = Some(Checkpoint {
                seq: record.seq,
                mac: record.mac.clone(),
            });
            self.shared.changed.notify_all();
        }
        Ok(())
    }
}

impl Store {
    /// Records an entry on its own (a denied request, a system action).
    pub async fn audit(&self, actor: &Actor, entry: AuditEntry) -> Result<()> {
        let mut tx = self.write().await?;
        let record = self.audit.append(&mut tx, actor, &entry).await?;
        tx.commit().await?;
        self.audit.checkpoint(&record)
    }

    /// Appends `entry` and emits the state event `kind` (`STATE_ROLLED_BACK`, …) for the
    /// environment `project`/`environment` in one transaction: both exist, or neither.
    /// The event's details are the entry's.
    pub async fn audit_state_event(
        &self,
        actor: &Actor,
        entry: AuditEntry,
        kind: ferry_core::EventType,
        (project, environment): (&str, &str),
        reason: &str,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        let record = self.audit.append(&mut tx, actor, &entry).await?;
        crate::events::emit_state_in(
            &mut tx,
            kind,
            (project, environment),
            None,
            &actor.name,
            Some(reason),
            entry.details.clone(),
        )
        .await?;
        tx.commit().await?;
        self.audit.checkpoint(&record)?;
        self.events_committed();
        Ok(())
    }

    /// Appends within `tx`; the caller must call [`Store::audit_committed`] after commit.
    pub(crate) async fn audit_in(
        &self,
        tx: &mut SqliteConnection,
        actor: &Actor,
        entry: AuditEntry,
    ) -> Result<AuditRecord> {
        self.audit.append(tx, actor, &entry).await
    }

    pub(crate) fn audit_committed(&self, record: &AuditRecord) -> Result<()> {
        self.audit.checkpoint(record)
    }

    /// Every audit row in chain order.
    pub async fn audit_records(&self, after_seq: i64, limit: i64) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit WHERE seq > ? ORDER BY seq LIMIT ?"
        ))
        .bind(after_seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(audit_row).collect())
    }

    /// Audit rows in chain order after `after`, filtered: `actor` exactly, `target` and
    /// `action` exactly or as a prefix ending in `/` or `.` (`run/`, `state.`), and a time
    /// window (RFC 3339, inclusive since, exclusive until).
    pub async fn audit_filtered(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>> {
        let mut sql = format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE seq > ?");
        let mut binds: Vec<String> = Vec::new();
        for (column, value) in [("target", &filter.target), ("action", &filter.action)] {
            if let Some(value) = value {
                if value.ends_with('/') || value.ends_with('.') {
                    sql.push_str(&format!(" AND substr({column}, 1, ?) = ?"));
                    binds.push(value.len().to_string());
                } else {
                    sql.push_str(&format!(" AND {column} = ?"));
                }
                binds.push(value.clone());
            }
        }
        if let Some(actor) = &filter.actor {
            sql.push_str(" AND actor = ?");
            binds.push(actor.clone());
        }
        if let Some(since) = &filter.since {
            sql.push_str(" AND ts >= ?");
            binds.push(since.clone());
        }
        if let Some(until) = &filter.until {
            sql.push_str(" AND ts < ?");
            binds.push(until.clone());
        }
        sql.push_str(" ORDER BY seq LIMIT ?");
        let mut query = sqlx::query(&sql).bind(filter.after);
        for b in &binds {
            query = query.bind(b);
        }
        let rows = query.bind(filter.limit).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(audit_row).collect())
    }

    /// Walks the whole chain (in rowid order, as stored) and compares it with the checkpoint.
    pub async fn verify_audit(&self) -> Result<Result<VerifyReport, ChainError>> {
        let rows = sqlx::query(&format!("SELECT {AUDIT_COLUMNS} FROM audit ORDER BY rowid"))
            .fetch_all(&self.pool)
            .await?;
        let records = rows.iter().map(audit_row);
        let checkpoint = ferry_secrets::read_checkpoint(
            &self.audit.shared.checkpoint_path,
            &self.audit.shared.key,
        )
        .map_err(|e| Error::Checkpoint(e.to_string()))?;
        Ok(self
            .audit
            .shared
            .key
            .verify_chain(records, checkpoint.as_ref()))
    }
}
