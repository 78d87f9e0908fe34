//! Terraform states and their versions. The protocol decisions (may this write, lock or
//! unlock happen?) are `ferry_state`'s pure functions; this module applies them inside one
//! `BEGIN IMMEDIATE` transaction, so two writers or lockers can never both win, and records
//! every new version durably: the encrypted blob is fsync'd before the row that references it
//! commits, so a crash leaves the old current version or the new one, never a partial one.

use std::path::Path;

use ferry_state::{
    Current, LockDecision, LockInfo, LockRequest, Refusal, UnlockDecision, WriteDecision,
    WriteLockCheck,
};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use crate::audit::AuditEntry;
use crate::{blob, now, Actor, Error, Result, Store};

/// Which state: a project's environment, optionally one of its extra named states.
#[derive(Debug, Clone, Copy)]
pub struct StateAddr<'a> {
    pub project_id: i64,
    pub project: &'a str,
    pub environment: &'a str,
    /// `""` for the environment's main state.
    pub name: &'a str,
}

impl StateAddr<'_> {
    pub fn display(&self) -> String {
        if self.name.is_empty() {
            format!("{}/{}", self.project, self.environment)
        } else {
            format!("{}/{}/{}", self.project, self.environment, self.name)
        }
    }
}

#[derive(Debug, Clone)]
pub struct StateRow {
    pub id: i64,
    pub environment: String,
    pub name: String,
    pub current_version: Option<i64>,
    pub lock: Option<LockInfo>,
    pub locked_by: Option<String>,
    /// Who took the lock, as a [`LockOwner`] key (`None` for locks older than the column).
    pub lock_owner: Option<String>,
    pub retention_days: i64,
    pub retention_keep: i64,
    pub created_at: String,
}

#[derive(Debug, Clone)]
pub struct StateVersion {
    pub id: i64,
    pub number: i64,
    pub serial: i64,
    pub lineage: String,
    pub sha256: String,
    pub size: i64,
    pub has_resources: bool,
    pub writer: String,
    pub lock_id: Option<String>,
    pub key_id: String,
    pub blob: String,
    pub created_at: String,
}

/// A version to write: metadata from `ferry_state::parse_state` and the sealed content.
pub struct NewStateVersion<'a> {
    pub meta: &'a ferry_state::StateMeta,
    pub sha256: &'a str,
    pub size: usize,
    pub key_id: &'a str,
    pub sealed: &'a [u8],
}

#[derive(Debug)]
pub enum WriteOutcome {
    Written(StateVersion),
    /// The same serial with identical content again (a retry): nothing new is stored.
    Idempotent,
    Refused(Refusal),
    /// The state is locked and the write names no lock.
    LockMissing(LockInfo),
    /// The write names a lock that is not the current one.
    LockMismatch(Option<LockInfo>),
}

#[derive(Debug)]
pub enum UnlockOutcome {
    /// The holder released its own lock.
    Released,
    /// Someone removed a lock: an admin, or the holder through `terraform force-unlock`;
    /// audited as `state.force_unlock` and emitted as `STATE_FORCE_UNLOCKED`.
    ForceReleased(LockInfo),
    NotLocked,
    Conflict(LockInfo),
    /// A force-unlock (or a release of another identity's lock) by someone who may not force
    /// it; `locked_by` names the holder.
    ForceDenied {
        holder: LockInfo,
        locked_by: Option<String>,
    },
}

/// Who holds a lock, for deciding whether releasing it is the holder's own UNLOCK or a
/// force-unlock. A run's actions each have their own credential, so a run owns its locks as a
/// whole; people and service tokens own theirs by identity, never by a name another kind of
/// identity could also carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockOwner {
    Run(i64),
    User(String),
    Token(i64),
}

impl LockOwner {
    pub fn key(&self) -> String {
        match self {
            LockOwner::Run(id) => format!("run:{id}"),
            LockOwner::User(name) => format!("user:{name}"),
            LockOwner::Token(id) => format!("token:{id}"),
        }
    }

    /// Whether this identity took the lock of `state` (for a lock taken before owners were
    /// recorded: whether `actor` is the name that took it).
    fn holds(&self, state: &StateRow, actor: &Actor) -> bool {
        match &state.lock_owner {
            Some(owner) => *owner == self.key(),
            None => state.locked_by.as_deref() == Some(actor.name.as_str()),
        }
    }
}

/// The run whose action took the lock of `state`, if one did.
fn holding_run(state: &StateRow) -> Option<i64> {
    if let Some(owner) = &state.lock_owner {
        return owner.strip_prefix("run:").and_then(|id| id.parse().ok());
    }
    let by = state.locked_by.as_deref()?.strip_prefix("run-")?;
    by.split('-').next()?.parse().ok()
}

pub(crate) fn state_row(r: &SqliteRow) -> StateRow {
    let lock = r
        .get::<Option<String>, _>("lock_info")
        .and_then(|text| serde_json::from_str::<LockInfo>(&text).ok());
    StateRow {
        id: r.get("id"),
        environment: r.get("environment"),
        name: r.get("name"),
        current_version: r.get("current_version"),
        lock,
        locked_by: r.get("locked_by"),
        lock_owner: r.get("lock_owner"),
        retention_days: r.get("retention_days"),
        retention_keep: r.get("retention_keep"),
        created_at: r.get("created_at"),
    }
}

pub(crate) fn version_row(r: &SqliteRow) -> StateVersion {
    StateVersion {
        id: r.get("id"),
        number: r.get("number"),
        serial: r.get("serial"),
        lineage: r.get("lineage"),
        sha256: r.get("sha256"),
        size: r.get("size"),
        has_resources: r.get::<i64, _>("has_resources") != 0,
        writer: r.get("writer"),
        lock_id: r.get("lock_id"),
        key_id: r.get("key_id"),
        blob: r.get("blob"),
        created_at: r.get("created_at"),
    }
}

pub(crate) async fn find_state(
    conn: &mut SqliteConnection,
    addr: StateAddr<'_>,
) -> Result<Option<StateRow>> {
    let row = sqlx::query("SELECT * FROM states WHERE project_id = ? AND environment = ? AND name = ? AND deleted_at IS NULL")
        .bind(addr.project_id)
        .bind(addr.environment)
        .bind(addr.name)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.as_ref().map(state_row))
}

/// The state at `addr`, created (empty, unlocked) on first use.
async fn state_or_create(conn: &mut SqliteConnection, addr: StateAddr<'_>) -> Result<StateRow> {
    if let Some(state) = find_state(conn, addr).await? {
        return Ok(state);
    }
    // A soft-deleted state at this address starts again empty: its old versions stay in the
    // history (until retention prunes them), but none of them is current.
    let revived = sqlx::query(
        "UPDATE states SET deleted_at = NULL, current_version = NULL, lock_id = NULL, lock_info = NULL, \
         locked_by = NULL, lock_owner = NULL, locked_at = NULL \
         WHERE project_id = ? AND environment = ? AND name = ? AND deleted_at IS NOT NULL RETURNING *",
    )
    .bind(addr.project_id)
    .bind(addr.environment)
    .bind(addr.name)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = revived {
        return Ok(state_row(&row));
    }
    let row = sqlx::query("INSERT INTO states (project_id, environment, name, created_at) VALUES (?, ?, ?, ?) RETURNING *")
        .bind(addr.project_id)
        .bind(addr.environment)
        .bind(addr.name)
        .bind(now())
        .fetch_one(&mut *conn)
        .await?;
    Ok(state_row(&row))
}

pub(crate) async fn version_by_id(conn: &mut SqliteConnection, id: i64) -> Result<StateVersion> {
    let row = sqlx::query("SELECT * FROM state_versions WHERE id = ?")
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
    Ok(version_row(&row))
}

impl Store {
    /// The state and its current version, if the state exists.
    pub async fn state(
        &self,
        addr: StateAddr<'_>,
    ) -> Result<Option<(StateRow, Option<StateVersion>)>> {
        let mut conn = self.pool.acquire().await?;
        let Some(state) = find_state(&mut conn, addr).await? else {
            return Ok(None);
        };
        let current = match state.current_version {
            Some(id) => Some(version_by_id(&mut conn, id).await?),
            None => None,
        };
        Ok(Some((state, current)))
    }

    /// Takes the lock for `request` on behalf of `owner`, or reports the holder.
    pub async fn state_lock(
        &self,
        actor: &Actor,
        owner: &LockOwner,
        addr: StateAddr<'_>,
        request: &LockInfo,
    ) -> Result<LockDecision> {
        let mut tx = self.write().await?;
        let state = state_or_create(&mut tx, addr).await?;
        let decision = ferry_state::decide_lock(state.lock.as_ref(), request);
        if let LockDecision::Acquired = decision {
            let info =
                serde_json::to_string(request).map_err(|e| Error::Conflict(e.to_string()))?;
            sqlx::query("UPDATE states SET lock_id = ?, lock_info = ?, locked_by = ?, lock_owner = ?, locked_at = ? WHERE id = ?")
                .bind(&request.id)
                .bind(info)
                .bind(&actor.name)
                .bind(owner.key())
                .bind(now())
                .bind(state.id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(decision)
    }

    /// Releases the lock. The holder's own UNLOCK (the lock's ID, from the identity or run
    /// that took it) is cheap and not audited. Anything else that removes a held lock is a
    /// force-unlock — an empty body (`terraform force-unlock`), the holder's ID repeated by
    /// another identity, an admin's `ferry state unlock` — and needs `may_force` (admin on the
    /// environment), except that the holder may force-unlock its own lock. A force-unlock is
    /// audited (`state.force_unlock`, with the holder it removed) and emitted as
    /// `STATE_FORCE_UNLOCKED`, in the transaction that removes the lock.
    pub async fn state_unlock(
        &self,
        actor: &Actor,
        owner: &LockOwner,
        addr: StateAddr<'_>,
        request: &LockRequest,
        may_force: bool,
    ) -> Result<UnlockOutcome> {
        let mut tx = self.write().await?;
        let Some(state) = find_state(&mut tx, addr).await? else {
            return Ok(UnlockOutcome::NotLocked);
        };
        let holds = owner.holds(&state, actor);
        let outcome = match ferry_state::decide_unlock(state.lock.as_ref(), request) {
            UnlockDecision::NotLocked => UnlockOutcome::NotLocked,
            UnlockDecision::Conflict(holder) => UnlockOutcome::Conflict(holder),
            UnlockDecision::Released if holds => UnlockOutcome::Released,
            UnlockDecision::Released | UnlockDecision::Force => {
                let holder = state.lock.clone().unwrap_or_default();
                if holds || may_force {
                    UnlockOutcome::ForceReleased(holder)
                } else {
                    UnlockOutcome::ForceDenied {
                        holder,
                        locked_by: state.locked_by.clone(),
                    }
                }
            }
        };
        let mut record = None;
        if let UnlockOutcome::Released | UnlockOutcome::ForceReleased(_) = outcome {
            sqlx::query("UPDATE states SET lock_id = NULL, lock_info = NULL, locked_by = NULL, lock_owner = NULL, locked_at = NULL WHERE id = ?")
                .bind(state.id)
                .execute(&mut *tx)
                .await?;
        }
        if let UnlockOutcome::ForceReleased(holder) = &outcome {
            let details = serde_json::json!({
                "state": addr.display(),
                "lock_id": holder.id,
                "who": holder.who,
                "operation": holder.operation,
                "info": holder.info,
                "locked_by": state.locked_by,
                "by_holder": holds,
            });
            let entry = AuditEntry::new("state.force_unlock", format!("state/{}", addr.display()))
                .details(details.clone());
            record = Some(self.audit_in(&mut tx, actor, entry).await?);
            let run = match holding_run(&state) {
                Some(id) => crate::runs::load_run(&mut tx, ferry_core::RunId(id))
                    .await
                    .ok(),
                None => None,
            };
            let reason = format!(
                "lock {} of state {} (held by {}) removed by {}",
                holder.id,
                addr.display(),
                state.locked_by.as_deref().unwrap_or("?"),
                actor.name
            );
            crate::events::emit_state_in(
                &mut tx,
                ferry_core::EventType::StateForceUnlocked,
                (addr.project, addr.environment),
                run.as_ref(),
                &actor.name,
                Some(&reason),
                details,
            )
            .await?;
        }
        tx.commit().await?;
        if let Some(record) = record {
            self.audit_committed(&record)?;
            self.events_committed();
        }
        Ok(outcome)
    }

    /// Writes a new version, if the lock, serial and lineage rules allow it. The sealed
    /// content is written to `data_dir` and fsync'd before the version row commits.
    pub async fn state_write(
        &self,
        actor: &Actor,
        addr: StateAddr<'_>,
        new: NewStateVersion<'_>,
        lock_id: Option<&str>,
        force: bool,
        data_dir: &Path,
    ) -> Result<WriteOutcome> {
        let mut tx = self.write().await?;
        let state = state_or_create(&mut tx, addr).await?;
        match ferry_state::check_write_lock(state.lock.as_ref(), lock_id) {
            WriteLockCheck::Ok => {}
            WriteLockCheck::Missing => {
                return Ok(WriteOutcome::LockMissing(
                    state.lock.clone().unwrap_or_else(empty_lock),
                ))
            }
            WriteLockCheck::Mismatch => return Ok(WriteOutcome::LockMismatch(state.lock.clone())),
        }
        let current = match state.current_version {
            Some(id) => Some(version_by_id(&mut tx, id).await?),
            None => None,
        };
        let current_meta = current.as_ref().map(|v| Current {
            serial: v.serial as u64,
            lineage: v.lineage.clone(),
            sha256: v.sha256.clone(),
            has_resources: v.has_resources,
        });
        match ferry_state::decide_write(current_meta.as_ref(), new.meta, new.sha256, force) {
            WriteDecision::Accept => {}
            WriteDecision::Idempotent => return Ok(WriteOutcome::Idempotent),
            WriteDecision::Refuse(refusal) => return Ok(WriteOutcome::Refused(refusal)),
        }
        let number: i64 = sqlx::query(
            "SELECT COALESCE(MAX(number), 0) + 1 FROM state_versions WHERE state_id = ?",
        )
        .bind(state.id)
        .fetch_one(&mut *tx)
        .await?
        .get(0);
        let rel = format!(
            "blobs/state/{}/{number}-{}.bin",
            state.id,
            &new.sha256[..16.min(new.sha256.len())]
        );
        blob::write_durable(data_dir, &rel, new.sealed)
            .map_err(|e| Error::Conflict(format!("cannot store the state: {e}")))?;
        let row = sqlx::query(
            "INSERT INTO state_versions (state_id, number, serial, lineage, sha256, size, has_resources, writer, lock_id, key_id, blob, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
        )
        .bind(state.id)
        .bind(number)
        .bind(new.meta.serial as i64)
        .bind(&new.meta.lineage)
        .bind(new.sha256)
        .bind(new.size as i64)
        // An encrypted (OpenTofu) state hides its resources: count it as holding some, so
        // the lineage guard protects it.
        .bind((new.meta.has_resources || new.meta.encrypted) as i64)
        .bind(&actor.name)
        .bind(lock_id)
        .bind(new.key_id)
        .bind(&rel)
        .bind(now())
        .fetch_one(&mut *tx)
        .await?;
        let version = version_row(&row);
        sqlx::query("UPDATE states SET current_version = ? WHERE id = ?")
            .bind(version.id)
            .bind(state.id)
            .execute(&mut *tx)
            .await?;
        let action = if force {
            "state.push_force"
        } else {
            "state.write"
        };
        let entry = AuditEntry::new(action, format!("state/{}", addr.display())).details(serde_json::json!({
            "version": number, "serial": version.serial, "lineage": version.lineage, "sha256": version.sha256, "size": version.size,
        }));
        let record = self.audit_in(&mut tx, actor, entry).await?;
        tx.commit().await?;
        self.audit_committed(&record)?;
        Ok(WriteOutcome::Written(version))
    }
}

impl Store {
    /// Releases the locks taken with credentials whose name starts with `holder` (one
    /// action's, or with `run-N-`, all of a run's), auditing each: a lock must not outlive
    /// the run that took it. Returns the states released.
    pub async fn release_locks_held_by(&self, actor: &Actor, holder: &str) -> Result<Vec<String>> {
        let mut tx = self.write().await?;
        let mut released = Vec::new();
        let mut records = Vec::new();
        for (state, entry) in crate::progress::release_locks_in(&mut tx, holder).await? {
            records.push(self.audit_in(&mut tx, actor, entry).await?);
            released.push(state);
        }
        tx.commit().await?;
        for record in &records {
            self.audit_committed(record)?;
        }
        Ok(released)
    }
}

fn empty_lock() -> LockInfo {
    LockInfo {
        id: String::new(),
        operation: String::new(),
        info: String::new(),
        who: String::new(),
        version: String::new(),
        created: String::new(),
        path: String::new(),
    }
}
