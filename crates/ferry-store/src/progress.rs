//! An action's start and end as single transactions: the driver's hot path. Starting an
//! action also mints its state credential; ending it retires the credential (revoked, and any
//! lock it left released and audited) and, when the action failed the run, fails its stage
//! and its run with their events in the same commit. Every path that fails a run because an
//! action failed (a command, a refused apply, a blocking policy finding) goes through
//! [`Store::end_action`], so no crash can leave a failed action under a running stage.

use ferry_core::{ActionEvent, ActionId, EventType, RunEvent, StageEvent};
use sqlx::{Row, SqliteConnection};

use crate::audit::AuditEntry;
use crate::events::{emit_in, EventAt};
use crate::runs::{load_action, load_run, load_stage, transition_run_in, transition_stage_in};
use crate::states::state_row;
use crate::{now, Actor, Result, StateAddr, Store, TokenScope};

/// The state-backend credential an action gets when it starts (hashed; the plaintext goes
/// to the action's environment only).
#[derive(Debug, Clone)]
pub struct RunCredential<'a> {
    pub name: &'a str,
    pub hash: &'a str,
    pub hint: &'a str,
    pub scope: &'a TokenScope,
}

/// What an action's failure does beyond the action: the stage and the run fail with
/// `reason`, and `event` (`POLICY_VIOLATION` with its details) is emitted with them.
#[derive(Debug, Clone)]
pub struct Failure<'a> {
    pub reason: &'a str,
    pub event: Option<(EventType, serde_json::Value)>,
}

/// How an action ended.
#[derive(Debug, Clone)]
pub struct ActionEnd<'a> {
    pub event: ActionEvent,
    pub exit_code: Option<i32>,
    pub error: Option<&'a str>,
    /// The action's credential, retired in the same commit.
    pub credential: Option<&'a str>,
    /// Set when the action fails its stage and run.
    pub failure: Option<Failure<'a>>,
}

impl Store {
    /// Marks an action started and, for one that runs processes, mints its credential.
    pub async fn start_action(
        &self,
        id: ActionId,
        credential: Option<&RunCredential<'_>>,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        if let Some(c) = credential {
            sqlx::query(
                "INSERT INTO tokens (name, hash, hint, admin, created_at, created_by, run_id, scope_project_id, scope_environment) \
                 VALUES (?, ?, ?, 0, ?, 'system', ?, ?, ?)",
            )
            .bind(c.name)
            .bind(c.hash)
            .bind(c.hint)
            .bind(now())
            .bind(c.scope.run_id)
            .bind(c.scope.project_id)
            .bind(&c.scope.environment)
            .execute(&mut *tx)
            .await?;
        }
        apply_action_in(&mut tx, id, ActionEvent::Start, None, None).await?;
        tx.commit().await?;
        self.events_committed();
        Ok(())
    }

    /// Ends an action as `end` says, in one transaction. Returns the states whose locks the
    /// action's credential had left behind (now released).
    pub async fn end_action(&self, id: ActionId, end: &ActionEnd<'_>) -> Result<Vec<String>> {
        let mut tx = self.write().await?;
        let mut released = Vec::new();
        let mut records = Vec::new();
        if let Some(name) = end.credential {
            sqlx::query("UPDATE tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL")
                .bind(now())
                .bind(name)
                .execute(&mut *tx)
                .await?;
            let actor = Actor::system("engine");
            for (state, entry) in release_locks_in(&mut tx, name).await? {
                records.push(self.audit_in(&mut tx, &actor, entry).await?);
                released.push(state);
            }
        }
        apply_action_in(&mut tx, id, end.event, end.exit_code, end.error).await?;
        if let Some(failure) = &end.failure {
            let action = load_action(&mut tx, id).await?;
            let stage = load_stage(&mut tx, action.stage_id).await?;
            let run = load_run(&mut tx, action.run_id).await?;
            if let Some((kind, details)) = &failure.event {
                let at = EventAt {
                    environment: Some(&stage.environment),
                    stage: Some(stage.kind.as_str()),
                    action: None,
                };
                emit_in(
                    &mut tx,
                    *kind,
                    &run,
                    at,
                    Actor::SYSTEM,
                    Some(failure.reason),
                    details.clone(),
                )
                .await?;
            }
            transition_stage_in(
                &mut tx,
                &run,
                &stage,
                StageEvent::Fail,
                Some(failure.reason),
                Actor::SYSTEM,
                serde_json::Value::Null,
            )
            .await?;
            transition_run_in(
                &mut tx,
                &run,
                RunEvent::Fail,
                Some(failure.reason),
                Actor::SYSTEM,
            )
            .await?;
        }
        tx.commit().await?;
        self.events_committed();
        for record in &records {
            self.audit_committed(record)?;
        }
        Ok(released)
    }
}

/// Applies `event` to an action within `tx`, with its exit code or error when it ends, and
/// emits the action's event.
pub(crate) async fn apply_action_in(
    tx: &mut SqliteConnection,
    id: ActionId,
    event: ActionEvent,
    exit_code: Option<i32>,
    error: Option<&str>,
) -> Result<()> {
    let action = load_action(tx, id).await?;
    let next = action.status.apply(event)?;
    if let Some(kind) = EventType::for_action(event) {
        let stage = load_stage(tx, action.stage_id).await?;
        let run = load_run(tx, action.run_id).await?;
        let at = EventAt {
            environment: Some(&stage.environment),
            stage: Some(stage.kind.as_str()),
            action: Some(&action.name),
        };
        let details = serde_json::json!({ "exit_code": exit_code, "kind": action.kind });
        emit_in(tx, kind, &run, at, Actor::SYSTEM, error, details).await?;
    }
    let ts = now();
    let started = (event == ActionEvent::Start).then(|| ts.clone());
    let finished = next.is_terminal().then_some(ts);
    sqlx::query(
        "UPDATE actions SET status = ?, exit_code = COALESCE(?, exit_code), error = COALESCE(?, error), \
         started_at = COALESCE(started_at, ?), finished_at = COALESCE(?, finished_at) WHERE id = ?",
    )
    .bind(next.as_str())
    .bind(exit_code)
    .bind(error)
    .bind(started)
    .bind(finished)
    .bind(id.0)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Releases, within `tx`, the locks taken with credentials whose name starts with `holder`;
/// returns each state released with the audit entry to append for it.
pub(crate) async fn release_locks_in(
    tx: &mut SqliteConnection,
    holder: &str,
) -> Result<Vec<(String, AuditEntry)>> {
    let rows = sqlx::query(
        "SELECT states.*, projects.name AS project FROM states JOIN projects ON projects.id = states.project_id \
         WHERE states.locked_by IS NOT NULL AND substr(states.locked_by, 1, length(?)) = ?",
    )
    .bind(holder)
    .bind(holder)
    .fetch_all(&mut *tx)
    .await?;
    let mut released = Vec::new();
    for row in &rows {
        let state = state_row(row);
        let project: String = row.get("project");
        let addr = StateAddr {
            project_id: 0,
            project: &project,
            environment: &state.environment,
            name: &state.name,
        };
        sqlx::query("UPDATE states SET lock_id = NULL, lock_info = NULL, locked_by = NULL, lock_owner = NULL, locked_at = NULL WHERE id = ?")
            .bind(state.id)
            .execute(&mut *tx)
            .await?;
        let entry = AuditEntry::new(
            "state.release_abandoned_lock",
            format!("state/{}", addr.display()),
        )
        .details(serde_json::json!({
            "lock_id": state.lock.as_ref().map(|l| l.id.clone()),
            "locked_by": state.locked_by,
        }));
        released.push((addr.display(), entry));
    }
    Ok(released)
}
