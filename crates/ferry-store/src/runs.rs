//! Runs, their stages and actions, plans, approvals and environment holds.
//!
//! Every status write reads the current status and asks `ferry_core` for the next one inside
//! a `BEGIN IMMEDIATE` transaction, so concurrent writers (the run's driver, a cancel
//! request, a newer run superseding this one) serialise and the loser sees an
//! `InvalidTransition` instead of silently overwriting.

use ferry_core::{
    ActionEvent, ActionId, ActionStatus, ApprovalRule, EventType, RunEvent, RunId, RunNumber,
    RunStatus, StageEvent, StageId, StageKind, StageStatus,
};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use crate::audit::AuditEntry;
use crate::events::{emit_in, EventAt};
use crate::model::*;
use crate::{now, parse, Actor, Error, Result, Store};

const RUN_SELECT: &str = "SELECT runs.*, projects.name AS project FROM runs JOIN projects ON projects.id = runs.project_id";
const ACTIVE: &str = "('Queued', 'InProgress', 'WaitingForApproval', 'Stopping')";

fn run_row(r: &SqliteRow) -> Result<Run> {
    Ok(Run {
        id: RunId(r.get("id")),
        project_id: r.get("project_id"),
        project: r.get("project"),
        number: RunNumber(r.get("number")),
        pipeline: r.get("pipeline"),
        pipeline_path: r.get("pipeline_path"),
        git_ref: r.get("git_ref"),
        commit_sha: r.get("commit_sha"),
        status: parse("runs", r.get::<&str, _>("status"))?,
        reason: r.get("reason"),
        triggered_by: r.get("triggered_by"),
        spec_yaml: r.get("spec_yaml"),
        waiting_env: r.get("waiting_env"),
        created_at: r.get("created_at"),
        started_at: r.get("started_at"),
        finished_at: r.get("finished_at"),
        kind: parse("runs", r.get::<&str, _>("kind"))?,
        options: serde_json::from_str(r.get::<&str, _>("options")).map_err(|e| Error::Corrupt {
            table: "runs",
            message: format!("options: {e}"),
        })?,
        source_run: r.get::<Option<i64>, _>("source_run_id").map(RunId),
        commit_author: r.get("commit_author"),
    })
}

fn binding(r: &SqliteRow, version: Option<&str>) -> Option<StateBinding> {
    let lineage: Option<String> = r.get("state_lineage");
    Some(StateBinding {
        lineage: lineage?,
        serial: r.get("state_serial"),
        version: version.map(|c| r.get(c)).unwrap_or(0),
    })
}

fn stage_row(r: &SqliteRow) -> Result<Stage> {
    Ok(Stage {
        id: StageId(r.get("id")),
        run_id: RunId(r.get("run_id")),
        position: r.get("position"),
        environment: r.get("environment"),
        kind: parse("stages", r.get::<&str, _>("kind"))?,
        status: parse("stages", r.get::<&str, _>("status"))?,
        reason: r.get("reason"),
        started_at: r.get("started_at"),
        finished_at: r.get("finished_at"),
    })
}

fn action_row(r: &SqliteRow) -> Result<Action> {
    Ok(Action {
        id: ActionId(r.get("id")),
        stage_id: StageId(r.get("stage_id")),
        run_id: RunId(r.get("run_id")),
        position: r.get("position"),
        name: r.get("name"),
        kind: r.get("kind"),
        command: r.get("command"),
        timeout_ms: r.get("timeout_ms"),
        status: parse("actions", r.get::<&str, _>("status"))?,
        exit_code: r.get("exit_code"),
        error: r.get("error"),
        pid: r.get("pid"),
        pid_start_time: r.get("pid_start_time"),
        started_at: r.get("started_at"),
        finished_at: r.get("finished_at"),
    })
}

fn plan_row(r: &SqliteRow) -> Plan {
    Plan {
        run_id: RunId(r.get("run_id")),
        environment: r.get("environment"),
        sha256: r.get("sha256"),
        has_changes: r.get::<i64, _>("has_changes") != 0,
        summary: r.get("summary"),
        plan_path: r.get("plan_path"),
        json_path: r.get("json_path"),
        created_at: r.get("created_at"),
        state: binding(r, Some("state_version")),
    }
}

fn approval_row(r: &SqliteRow) -> Result<Approval> {
    Ok(Approval {
        run_id: RunId(r.get("run_id")),
        environment: r.get("environment"),
        decision: parse("approvals", r.get::<&str, _>("decision"))?,
        comment: r.get("comment"),
        actor: r.get("actor"),
        created_at: r.get("created_at"),
        plan_sha256: r.get("plan_sha256"),
        state: binding(r, None),
        commit_sha: r.get("commit_sha"),
        break_glass: r.get::<i64, _>("break_glass") != 0,
    })
}

pub(crate) async fn load_run(conn: &mut SqliteConnection, id: RunId) -> Result<Run> {
    let row = sqlx::query(&format!("{RUN_SELECT} WHERE runs.id = ?"))
        .bind(id.0)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| Error::NotFound {
            what: "run",
            id: id.to_string(),
        })?;
    run_row(&row)
}

/// The plan recorded for `run` in `environment`, if any.
async fn plan_in(
    conn: &mut SqliteConnection,
    run: RunId,
    environment: &str,
) -> Result<Option<Plan>> {
    let row = sqlx::query("SELECT * FROM plans WHERE run_id = ? AND environment = ?")
        .bind(run.0)
        .bind(environment)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.as_ref().map(plan_row))
}

/// Moves a run to its next status and, when that status is terminal, closes every stage and
/// action still open (pending ones are skipped, running ones take `child_event`), releases
/// its environment holds and stops it queueing.
pub(crate) async fn transition_run_in(
    conn: &mut SqliteConnection,
    run: &Run,
    event: RunEvent,
    reason: Option<&str>,
    actor: &str,
) -> Result<RunStatus> {
    let next = run.status.apply(event)?;
    if let Some(kind) = EventType::for_run(event, next) {
        let details = serde_json::json!({ "from": run.status.as_str(), "to": next.as_str(), "run_kind": run.kind.as_str() });
        emit_in(conn, kind, run, EventAt::default(), actor, reason, details).await?;
    }
    let ts = now();
    let started = if event == RunEvent::Start {
        Some(ts.clone())
    } else {
        None
    };
    let finished = if next.is_terminal() {
        Some(ts.clone())
    } else {
        None
    };
    sqlx::query(
        "UPDATE runs SET status = ?, reason = COALESCE(?, reason), started_at = COALESCE(started_at, ?), \
         finished_at = COALESCE(?, finished_at) WHERE id = ?",
    )
    .bind(next.as_str())
    .bind(reason)
    .bind(started)
    .bind(finished)
    .bind(run.id.0)
    .execute(&mut *conn)
    .await?;
    if next.is_terminal() {
        let (stage_event, action_event) = match next {
            RunStatus::Interrupted => (StageEvent::Interrupt, ActionEvent::Interrupt),
            _ => (StageEvent::Cancel, ActionEvent::Cancel),
        };
        close_children(conn, run, stage_event, action_event, actor).await?;
        sqlx::query("DELETE FROM env_holds WHERE run_id = ?")
            .bind(run.id.0)
            .execute(&mut *conn)
            .await?;
        sqlx::query("UPDATE runs SET waiting_env = NULL WHERE id = ?")
            .bind(run.id.0)
            .execute(&mut *conn)
            .await?;
    }
    Ok(next)
}

async fn close_children(
    conn: &mut SqliteConnection,
    run: &Run,
    stage_event: StageEvent,
    action_event: ActionEvent,
    actor: &str,
) -> Result<()> {
    let ts = now();
    let stages = sqlx::query("SELECT * FROM stages WHERE run_id = ?")
        .bind(run.id.0)
        .fetch_all(&mut *conn)
        .await?;
    for row in &stages {
        let stage = stage_row(row)?;
        if stage.status.is_terminal() {
            continue;
        }
        let event = if stage.status == StageStatus::Pending {
            StageEvent::Skip
        } else {
            stage_event
        };
        let next = stage.status.apply(event)?;
        sqlx::query("UPDATE stages SET status = ?, finished_at = ? WHERE id = ?")
            .bind(next.as_str())
            .bind(&ts)
            .bind(stage.id.0)
            .execute(&mut *conn)
            .await?;
        if let Some(kind) = EventType::for_stage(stage.kind, event, next) {
            emit_in(
                conn,
                kind,
                run,
                stage_at(&stage),
                actor,
                None,
                serde_json::Value::Null,
            )
            .await?;
        }
    }
    let actions = sqlx::query(
        "SELECT actions.*, stages.environment, stages.kind AS stage_kind FROM actions \
         JOIN stages ON stages.id = actions.stage_id WHERE actions.run_id = ?",
    )
    .bind(run.id.0)
    .fetch_all(&mut *conn)
    .await?;
    for row in &actions {
        let action = action_row(row)?;
        if action.status.is_terminal() {
            continue;
        }
        let event = if action.status == ActionStatus::Pending {
            ActionEvent::Skip
        } else {
            action_event
        };
        let next = action.status.apply(event)?;
        sqlx::query("UPDATE actions SET status = ?, finished_at = ? WHERE id = ?")
            .bind(next.as_str())
            .bind(&ts)
            .bind(action.id.0)
            .execute(&mut *conn)
            .await?;
        if let Some(kind) = EventType::for_action(event) {
            let at = EventAt {
                environment: Some(row.get("environment")),
                stage: Some(row.get("stage_kind")),
                action: Some(&action.name),
            };
            emit_in(conn, kind, run, at, actor, None, serde_json::Value::Null).await?;
        }
    }
    Ok(())
}

fn stage_at(stage: &Stage) -> EventAt<'_> {
    EventAt {
        environment: Some(&stage.environment),
        stage: Some(stage.kind.as_str()),
        action: None,
    }
}

/// Moves a stage to its next status and reports it as an event, in one transaction.
pub(crate) async fn transition_stage_in(
    conn: &mut SqliteConnection,
    run: &Run,
    stage: &Stage,
    event: StageEvent,
    reason: Option<&str>,
    actor: &str,
    details: serde_json::Value,
) -> Result<StageStatus> {
    let next = stage.status.apply(event)?;
    let ts = now();
    let started = (event == StageEvent::Start).then(|| ts.clone());
    let finished = next.is_terminal().then(|| ts.clone());
    sqlx::query(
        "UPDATE stages SET status = ?, reason = COALESCE(?, reason), started_at = COALESCE(started_at, ?), \
         finished_at = COALESCE(?, finished_at) WHERE id = ?",
    )
    .bind(next.as_str())
    .bind(reason)
    .bind(started)
    .bind(finished)
    .bind(stage.id.0)
    .execute(&mut *conn)
    .await?;
    if let Some(kind) = EventType::for_stage(stage.kind, event, next) {
        emit_in(conn, kind, run, stage_at(stage), actor, reason, details).await?;
    }
    Ok(next)
}

pub(crate) async fn load_stage(conn: &mut SqliteConnection, id: StageId) -> Result<Stage> {
    let row = sqlx::query("SELECT * FROM stages WHERE id = ?")
        .bind(id.0)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| Error::NotFound {
            what: "stage",
            id: id.to_string(),
        })?;
    stage_row(&row)
}

pub(crate) async fn load_action(conn: &mut SqliteConnection, id: ActionId) -> Result<Action> {
    let row = sqlx::query("SELECT * FROM actions WHERE id = ?")
        .bind(id.0)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| Error::NotFound {
            what: "action",
            id: id.to_string(),
        })?;
    action_row(&row)
}

/// An audit entry about a run: its project, pipeline and number, plus `extra` details.
fn run_audit(action: &str, run: &Run, extra: serde_json::Value) -> AuditEntry {
    let mut details = serde_json::json!({ "project": run.project, "pipeline": run.pipeline, "number": run.number.0 });
    if let (Some(into), serde_json::Value::Object(from)) = (details.as_object_mut(), extra) {
        into.extend(from);
    }
    AuditEntry::new(action, format!("run/{}", run.id)).details(details)
}

impl Store {
    /// Creates a run in `Queued`, with all its stages and actions `Pending`, queueing for its
    /// first environment.
    pub async fn create_run(&self, actor: &Actor, new: &NewRun) -> Result<Run> {
        let mut tx = self.write().await?;
        let number: i64 =
            sqlx::query("SELECT COALESCE(MAX(number), 0) + 1 FROM runs WHERE project_id = ?")
                .bind(new.project_id)
                .fetch_one(&mut *tx)
                .await?
                .get(0);
        let id: i64 = sqlx::query(
            "INSERT INTO runs (project_id, number, pipeline, pipeline_path, git_ref, commit_sha, status, triggered_by, \
             spec_yaml, waiting_env, created_at, kind, options, source_run_id, commit_author) \
             VALUES (?, ?, ?, ?, ?, ?, 'Queued', ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(new.project_id)
        .bind(number)
        .bind(&new.pipeline)
        .bind(&new.pipeline_path)
        .bind(&new.git_ref)
        .bind(&new.commit_sha)
        .bind(&actor.name)
        .bind(&new.spec_yaml)
        .bind(&new.first_environment)
        .bind(now())
        .bind(new.kind.as_str())
        .bind(serde_json::to_string(&new.options).unwrap_or_else(|_| "{}".into()))
        .bind(new.source_run.map(|r| r.0))
        .bind(&new.commit_author)
        .fetch_one(&mut *tx)
        .await?
        .get(0);
        for (position, stage) in new.stages.iter().enumerate() {
            let stage_id: i64 = sqlx::query(
                "INSERT INTO stages (run_id, position, environment, kind, status) VALUES (?, ?, ?, ?, 'Pending') RETURNING id",
            )
            .bind(id)
            .bind(position as i64)
            .bind(&stage.environment)
            .bind(stage.kind.as_str())
            .fetch_one(&mut *tx)
            .await?
            .get(0);
            for (apos, action) in stage.actions.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO actions (stage_id, run_id, position, name, kind, command, timeout_ms, status) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, 'Pending')",
                )
                .bind(stage_id)
                .bind(id)
                .bind(apos as i64)
                .bind(&action.name)
                .bind(&action.kind)
                .bind(&action.command)
                .bind(action.timeout_ms)
                .execute(&mut *tx)
                .await?;
            }
        }
        let run = load_run(&mut tx, RunId(id)).await?;
        // Each kind of run is its own decision in the audit log (run.create, run.retry,
        // run.promote, run.rollback, run.destroy), with what it was asked to do.
        let action = match run.kind {
            RunKind::Deploy => "run.create".to_owned(),
            other => format!("run.{}", other.as_str()),
        };
        let entry = run_audit(
            &action,
            &run,
            serde_json::json!({
                "ref": run.git_ref, "commit": run.commit_sha, "kind": run.kind.as_str(),
                "source_run": run.source_run.map(|r| r.0), "options": new.options,
            }),
        );
        let record = self.audit_in(&mut tx, actor, entry).await?;
        tx.commit().await?;
        self.audit_committed(&record)?;
        Ok(run)
    }

    pub async fn run(&self, id: RunId) -> Result<Run> {
        let mut conn = self.pool.acquire().await?;
        load_run(&mut conn, id).await
    }

    pub async fn run_detail(&self, id: RunId) -> Result<RunDetail> {
        let mut conn = self.pool.acquire().await?;
        let run = load_run(&mut conn, id).await?;
        let stages = sqlx::query("SELECT * FROM stages WHERE run_id = ? ORDER BY position")
            .bind(id.0)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(stage_row)
            .collect::<Result<Vec<_>>>()?;
        let actions = sqlx::query(
            "SELECT actions.* FROM actions JOIN stages ON stages.id = actions.stage_id \
             WHERE actions.run_id = ? ORDER BY stages.position, actions.position",
        )
        .bind(id.0)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(action_row)
        .collect::<Result<Vec<_>>>()?;
        let plans = sqlx::query("SELECT * FROM plans WHERE run_id = ? ORDER BY id")
            .bind(id.0)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(plan_row)
            .collect();
        let approvals = sqlx::query("SELECT * FROM approvals WHERE run_id = ? ORDER BY id")
            .bind(id.0)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(approval_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(RunDetail {
            run,
            stages,
            actions,
            plans,
            approvals,
        })
    }

    /// Runs newest first, filtered, keyset-paginated by id.
    pub async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        let mut sql = format!("{RUN_SELECT} WHERE 1 = 1");
        if filter.project.is_some() {
            sql.push_str(" AND projects.name = ?");
        }
        if filter.status.is_some() {
            sql.push_str(" AND runs.status = ?");
        }
        if filter.before.is_some() {
            sql.push_str(" AND runs.id < ?");
        }
        if let Some(visible) = &filter.visible {
            let marks = vec!["?"; visible.len()].join(", ");
            sql.push_str(&format!(" AND projects.name IN ({marks})"));
        }
        sql.push_str(" ORDER BY runs.id DESC LIMIT ?");
        let mut query = sqlx::query(&sql);
        if let Some(project) = &filter.project {
            query = query.bind(project);
        }
        if let Some(status) = filter.status {
            query = query.bind(status.as_str());
        }
        if let Some(before) = filter.before {
            query = query.bind(before.0);
        }
        for project in filter.visible.iter().flatten() {
            query = query.bind(project);
        }
        let rows = query.bind(filter.limit).fetch_all(&self.pool).await?;
        rows.iter().map(run_row).collect()
    }

    /// Runs that are not finished, oldest first.
    pub async fn active_runs(&self) -> Result<Vec<Run>> {
        let rows = sqlx::query(&format!(
            "{RUN_SELECT} WHERE runs.status IN {ACTIVE} ORDER BY runs.id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_row).collect()
    }

    /// Counts of runs by status, for `/metrics`.
    pub async fn run_counts(&self) -> Result<Vec<(RunStatus, i64)>> {
        let rows = sqlx::query("SELECT status, COUNT(*) FROM runs GROUP BY status")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((parse("runs", r.get::<&str, _>(0))?, r.get(1))))
            .collect()
    }

    /// Applies `event` to a run. With an `actor` (a person cancelling, say) the change is
    /// audited; the engine's own progress (a stage succeeded) is not a decision and is not.
    pub async fn transition_run(
        &self,
        id: RunId,
        event: RunEvent,
        reason: Option<&str>,
        actor: Option<&Actor>,
    ) -> Result<Run> {
        let mut tx = self.write().await?;
        let run = load_run(&mut tx, id).await?;
        let name = actor.map_or(Actor::SYSTEM, |a| a.name.as_str());
        transition_run_in(&mut tx, &run, event, reason, name).await?;
        let record = match actor {
            Some(actor) => {
                let entry = run_audit(
                    &format!("run.{}", event.as_str()),
                    &run,
                    serde_json::json!({ "from": run.status.as_str(), "reason": reason }),
                );
                Some(self.audit_in(&mut tx, actor, entry).await?)
            }
            None => None,
        };
        let run = load_run(&mut tx, id).await?;
        tx.commit().await?;
        self.events_committed();
        if let Some(record) = record {
            self.audit_committed(&record)?;
        }
        Ok(run)
    }

    /// Applies `event` to a stage (the engine's own progress, reported as an event).
    pub async fn transition_stage(
        &self,
        id: StageId,
        event: StageEvent,
        reason: Option<&str>,
    ) -> Result<StageStatus> {
        let mut tx = self.write().await?;
        let stage = load_stage(&mut tx, id).await?;
        let run = load_run(&mut tx, stage.run_id).await?;
        let next = transition_stage_in(
            &mut tx,
            &run,
            &stage,
            event,
            reason,
            Actor::SYSTEM,
            serde_json::Value::Null,
        )
        .await?;
        tx.commit().await?;
        self.events_committed();
        Ok(next)
    }

    /// Records the process group of a running action, so a restarted server can kill it.
    ///
    /// Committed without an fsync of its own (`synchronous = NORMAL` for this one statement):
    /// in WAL mode that survives a crash of the server, which is what the record is for, and
    /// is lost only with the machine — whose reboot ended the process anyway. The next
    /// ordinary commit makes it durable too.
    pub async fn set_action_process(&self, id: ActionId, pid: u32, start_time: u64) -> Result<()> {
        let _turn = self.writer.clone().lock_owned().await;
        let mut conn = self.pool.acquire().await?;
        sqlx::query("PRAGMA synchronous = NORMAL")
            .execute(&mut *conn)
            .await?;
        let result = sqlx::query("UPDATE actions SET pid = ?, pid_start_time = ? WHERE id = ?")
            .bind(pid as i64)
            .bind(start_time as i64)
            .bind(id.0)
            .execute(&mut *conn)
            .await;
        // Back to the store's default before the connection serves anyone else; a
        // connection that cannot be reset is closed rather than returned to the pool.
        if sqlx::query("PRAGMA synchronous = FULL")
            .execute(&mut *conn)
            .await
            .is_err()
        {
            conn.detach();
        }
        result?;
        Ok(())
    }

    /// Actions recorded as running: after a crash, their process groups may still be alive.
    pub async fn orphan_actions(&self) -> Result<Vec<OrphanAction>> {
        let rows = sqlx::query(
            "SELECT id, run_id, pid, pid_start_time FROM actions WHERE status = 'InProgress'",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| OrphanAction {
                action: ActionId(r.get(0)),
                run_id: RunId(r.get(1)),
                pid: r.get(2),
                pid_start_time: r.get(3),
            })
            .collect())
    }

    pub async fn record_plan(&self, plan: &Plan) -> Result<()> {
        sqlx::query(
            "INSERT INTO plans (run_id, environment, sha256, has_changes, summary, plan_path, json_path, created_at, \
             state_lineage, state_serial, state_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (run_id, environment) DO UPDATE SET sha256 = excluded.sha256, \
             has_changes = excluded.has_changes, summary = excluded.summary, plan_path = excluded.plan_path, \
             json_path = excluded.json_path, created_at = excluded.created_at, state_lineage = excluded.state_lineage, \
             state_serial = excluded.state_serial, state_version = excluded.state_version",
        )
        .bind(plan.run_id.0)
        .bind(&plan.environment)
        .bind(&plan.sha256)
        .bind(plan.has_changes as i64)
        .bind(&plan.summary)
        .bind(&plan.plan_path)
        .bind(&plan.json_path)
        .bind(&plan.created_at)
        .bind(plan.state.as_ref().map(|b| &b.lineage))
        .bind(plan.state.as_ref().map(|b| b.serial))
        .bind(plan.state.as_ref().map(|b| b.version))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn plan(&self, run: RunId, environment: &str) -> Result<Option<Plan>> {
        let mut conn = self.pool.acquire().await?;
        plan_in(&mut conn, run, environment).await
    }

    /// Puts the run in `WaitingForApproval` with its approval stage waiting, atomically; the
    /// `MANUAL_APPROVAL_NEEDED` event names the plan waiting for a decision.
    pub async fn await_approval(&self, run: RunId, stage: StageId) -> Result<()> {
        let mut tx = self.write().await?;
        let current = load_run(&mut tx, run).await?;
        let stage = load_stage(&mut tx, stage).await?;
        let plan = plan_in(&mut tx, run, &stage.environment).await?;
        transition_run_in(
            &mut tx,
            &current,
            RunEvent::AwaitApproval,
            None,
            Actor::SYSTEM,
        )
        .await?;
        let details = serde_json::json!({
            "plan_sha256": plan.as_ref().map(|p| &p.sha256),
            "triggered_by": current.triggered_by,
        });
        transition_stage_in(
            &mut tx,
            &current,
            &stage,
            StageEvent::AwaitApproval,
            None,
            Actor::SYSTEM,
            details,
        )
        .await?;
        tx.commit().await?;
        self.events_committed();
        Ok(())
    }

    /// Fails a run whose approval in `stage` waited past its timeout: the approval stage
    /// (`MANUAL_APPROVAL_FAILED`) and the run fail together, audited with the plan digest
    /// nobody decided on.
    pub async fn expire_approval(&self, stage: StageId, reason: &str) -> Result<Run> {
        let mut tx = self.write().await?;
        let stage = load_stage(&mut tx, stage).await?;
        let run = load_run(&mut tx, stage.run_id).await?;
        let plan_sha256 = plan_in(&mut tx, run.id, &stage.environment)
            .await?
            .map(|p| p.sha256);
        let details =
            serde_json::json!({ "environment": stage.environment, "plan_sha256": plan_sha256 });
        transition_stage_in(
            &mut tx,
            &run,
            &stage,
            StageEvent::Fail,
            Some(reason),
            Actor::SYSTEM,
            details.clone(),
        )
        .await?;
        transition_run_in(&mut tx, &run, RunEvent::Fail, Some(reason), Actor::SYSTEM).await?;
        let mut details = details;
        details["reason"] = reason.into();
        let entry = run_audit("run.approval_timeout", &run, details);
        let record = self
            .audit_in(&mut tx, &Actor::system("approval-timeout"), entry)
            .await?;
        let run = load_run(&mut tx, run.id).await?;
        tx.commit().await?;
        self.events_committed();
        self.audit_committed(&record)?;
        Ok(run)
    }

    /// Records an approval decision, bound to the plan it is about (its digest, the state it
    /// was planned against, the commit). Refused unless the run waits for an approval in
    /// `environment` and the decider may decide there (not the run's triggerer or commit
    /// author, listed if the rule lists approvers, not already decided). An approval lets the
    /// run continue once the rule's count is reached; a rejection fails it. A break-glass
    /// approval (admins only, checked by the caller) satisfies the count on its own.
    #[allow(clippy::too_many_arguments)]
    pub async fn decide(
        &self,
        actor: &Actor,
        run_id: RunId,
        environment: &str,
        rule: &ApprovalRule,
        decision: Decision,
        comment: &str,
        mode: ApprovalMode,
    ) -> Result<Run> {
        let mut tx = self.write().await?;
        let run = load_run(&mut tx, run_id).await?;
        let target = format!("run/{run_id}");
        let break_glass = mode == ApprovalMode::BreakGlass;
        let teams = crate::identity::user_teams_in(&mut tx, &actor.name).await?;
        let audit_action = if break_glass {
            "run.break_glass".to_owned()
        } else {
            format!("run.{}", decision.as_str())
        };
        let stage = match sqlx::query(
            "SELECT * FROM stages WHERE run_id = ? AND environment = ? AND kind = ?",
        )
        .bind(run_id.0)
        .bind(environment)
        .bind(StageKind::Approval.as_str())
        .fetch_optional(&mut *tx)
        .await?
        {
            Some(row) => Some(stage_row(&row)?),
            None => None,
        };
        let decisions = sqlx::query(
            "SELECT actor, decision FROM approvals WHERE run_id = ? AND environment = ?",
        )
        .bind(run_id.0)
        .bind(environment)
        .fetch_all(&mut *tx)
        .await?;
        let decided_by: Vec<String> = decisions.iter().map(|r| r.get(0)).collect();
        let mut approvers: Vec<&str> = decisions
            .iter()
            .filter(|r| r.get::<&str, _>(1) == Decision::Approve.as_str())
            .map(|r| r.get(0))
            .collect();
        approvers.sort_unstable();
        approvers.dedup();
        let plan = plan_in(&mut tx, run_id, environment).await?;
        let waiting = run.status == RunStatus::WaitingForApproval
            && stage
                .as_ref()
                .is_some_and(|s| s.status == StageStatus::WaitingForApproval);
        let input = ferry_core::approval::DecisionInput {
            rule,
            triggered_by: &run.triggered_by,
            commit_author: run.commit_author.as_deref(),
            approver: &actor.name,
            teams: &teams,
            verdict: match decision {
                Decision::Approve => ferry_core::approval::Verdict::Approve,
                Decision::Reject => ferry_core::approval::Verdict::Reject,
            },
            break_glass,
            comment,
            has_step: stage.is_some(),
            waiting,
            decided_by: &decided_by,
            approvals: approvers.len() as u32,
            plan_recorded: plan.is_some(),
        };
        let outcome = match ferry_core::approval::decide(&input) {
            Ok(outcome) => outcome,
            Err(refusal) => {
                use ferry_core::approval::{ConflictReason as C, Refusal};
                let err = match refusal {
                    Refusal::Invalid(message) => Error::Invalid(message.to_owned()),
                    Refusal::Denied(denied) => Error::Denied(denied.to_string()),
                    Refusal::Conflict(C::NoApprovalStep) => Error::Conflict(format!(
                        "run {run_id} has no approval step in environment `{environment}`"
                    )),
                    Refusal::Conflict(C::NotWaiting) => Error::Conflict(format!(
                        "run {run_id} is not waiting for an approval in `{environment}` (run is {}, approval step is {})",
                        run.status,
                        stage.as_ref().map_or("absent".to_owned(), |s| s.status.to_string())
                    )),
                    Refusal::Conflict(C::AlreadyDecided) => Error::Conflict(format!(
                        "{} already decided on run {run_id} in `{environment}`",
                        actor.name
                    )),
                    Refusal::Conflict(C::NoPlan) => Error::Conflict(format!(
                        "run {run_id} has no plan in `{environment}` to approve"
                    )),
                };
                // A refused identity is audited; a request that was wrong or late is not.
                if matches!(err, Error::Denied(_)) {
                    let entry = AuditEntry::new(&audit_action, target)
                        .outcome("denied")
                        .details(serde_json::json!({ "environment": environment, "reason": err.to_string() }));
                    let record = self.audit_in(&mut tx, actor, entry).await?;
                    tx.commit().await?;
                    self.audit_committed(&record)?;
                }
                return Err(err);
            }
        };
        // `decide` refuses a decision without a step or a plan; this keeps it that way.
        let (Some(stage), Some(plan)) = (stage, plan) else {
            return Err(Error::Conflict(format!(
                "run {run_id} has no approval step or no plan in `{environment}`"
            )));
        };
        sqlx::query(
            "INSERT INTO approvals (run_id, environment, decision, comment, actor, created_at, plan_sha256, \
             state_lineage, state_serial, commit_sha, break_glass) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(run_id.0)
        .bind(environment)
        .bind(decision.as_str())
        .bind(comment)
        .bind(&actor.name)
        .bind(now())
        .bind(&plan.sha256)
        .bind(plan.state.as_ref().map(|b| &b.lineage))
        .bind(plan.state.as_ref().map(|b| b.serial))
        .bind(&run.commit_sha)
        .bind(break_glass as i64)
        .execute(&mut *tx)
        .await?;
        let approvals = match outcome {
            ferry_core::approval::Outcome::Counted { approvals, .. }
            | ferry_core::approval::Outcome::Approved { approvals, .. } => approvals,
            ferry_core::approval::Outcome::Rejected => approvers.len() as u32,
        };
        let bound = serde_json::json!({
            "environment": environment, "comment": comment, "plan_sha256": plan.sha256,
            "state_lineage": plan.state.as_ref().map(|b| &b.lineage),
            "state_serial": plan.state.as_ref().map(|b| b.serial),
            "commit": run.commit_sha, "approvals": approvals, "required": rule.required,
        });
        if matches!(outcome, ferry_core::approval::Outcome::Counted { .. }) {
            // Recorded, but more distinct approvals are needed before the run continues.
            let entry = run_audit("run.approve", &run, bound);
            let record = self.audit_in(&mut tx, actor, entry).await?;
            let run = load_run(&mut tx, run_id).await?;
            tx.commit().await?;
            self.audit_committed(&record)?;
            return Ok(run);
        }
        let (stage_event, run_event, reason) = match decision {
            Decision::Approve => (StageEvent::Succeed, RunEvent::Approved, None),
            Decision::Reject => (
                StageEvent::Fail,
                RunEvent::Fail,
                Some(
                    ferry_core::FailureCode::ManualApprovalFailed.reason(format_args!(
                        "rejected in {environment} by {}: {comment}",
                        actor.name
                    )),
                ),
            ),
        };
        if break_glass {
            emit_in(
                &mut tx,
                EventType::ApprovalOverridden,
                &run,
                stage_at(&stage),
                &actor.name,
                Some(comment),
                bound.clone(),
            )
            .await?;
        }
        transition_stage_in(
            &mut tx,
            &run,
            &stage,
            stage_event,
            reason.as_deref(),
            &actor.name,
            bound.clone(),
        )
        .await?;
        transition_run_in(&mut tx, &run, run_event, reason.as_deref(), &actor.name).await?;
        let entry = run_audit(&audit_action, &run, bound);
        let entry = if break_glass {
            entry.outcome("break_glass")
        } else {
            entry
        };
        let record = self.audit_in(&mut tx, actor, entry).await?;
        let run = load_run(&mut tx, run_id).await?;
        tx.commit().await?;
        self.events_committed();
        self.audit_committed(&record)?;
        Ok(run)
    }

    /// Tries to hold `environment` for `run`. Fair: a run gets a free environment only if no
    /// older run is queueing for it. When the answer is `Waiting`, the run is recorded as
    /// queueing for it (visible in [`Store::queue`]).
    pub async fn acquire_environment(&self, run_id: RunId, environment: &str) -> Result<Hold> {
        let mut tx = self.write().await?;
        let run = load_run(&mut tx, run_id).await?;
        if run.status.is_terminal() {
            return Ok(Hold::RunFinished(run.status));
        }
        let holder: Option<i64> = sqlx::query(
            "SELECT run_id FROM env_holds WHERE project_id = ? AND pipeline = ? AND environment = ?",
        )
        .bind(run.project_id)
        .bind(&run.pipeline)
        .bind(environment)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.get(0));
        if holder == Some(run_id.0) {
            return Ok(Hold::Acquired);
        }
        let older_waiting = sqlx::query(&format!(
            "SELECT 1 FROM runs WHERE project_id = ? AND pipeline = ? AND waiting_env = ? AND id < ? AND status IN {ACTIVE} LIMIT 1"
        ))
        .bind(run.project_id)
        .bind(&run.pipeline)
        .bind(environment)
        .bind(run_id.0)
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
        let hold = if holder.is_none() && !older_waiting {
            sqlx::query("INSERT INTO env_holds (project_id, pipeline, environment, run_id, since) VALUES (?, ?, ?, ?, ?)")
                .bind(run.project_id)
                .bind(&run.pipeline)
                .bind(environment)
                .bind(run_id.0)
                .bind(now())
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE runs SET waiting_env = NULL WHERE id = ?")
                .bind(run_id.0)
                .execute(&mut *tx)
                .await?;
            Hold::Acquired
        } else {
            sqlx::query("UPDATE runs SET waiting_env = ? WHERE id = ?")
                .bind(environment)
                .bind(run_id.0)
                .execute(&mut *tx)
                .await?;
            Hold::Waiting {
                holder: holder.map(RunId),
            }
        };
        tx.commit().await?;
        Ok(hold)
    }

    pub async fn release_environment(&self, run_id: RunId, environment: &str) -> Result<()> {
        sqlx::query("DELETE FROM env_holds WHERE run_id = ? AND environment = ?")
            .bind(run_id.0)
            .bind(environment)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// In `superseded` mode: ends older runs of the same pipeline that still wait for
    /// `environment` (queued for it, or holding it while waiting for an approval). Returns
    /// the runs it superseded.
    pub async fn supersede_older(&self, run_id: RunId, environment: &str) -> Result<Vec<RunId>> {
        let mut tx = self.write().await?;
        let run = load_run(&mut tx, run_id).await?;
        let rows = sqlx::query(&format!(
            "{RUN_SELECT} WHERE runs.project_id = ? AND runs.pipeline = ? AND runs.id < ? AND ( \
               (runs.waiting_env = ? AND runs.status IN ('Queued', 'InProgress')) OR \
               (runs.status = 'WaitingForApproval' AND EXISTS (SELECT 1 FROM env_holds h WHERE h.run_id = runs.id AND h.environment = ?)) \
             ) ORDER BY runs.id"
        ))
        .bind(run.project_id)
        .bind(&run.pipeline)
        .bind(run_id.0)
        .bind(environment)
        .bind(environment)
        .fetch_all(&mut *tx)
        .await?;
        let system = Actor::system("engine");
        let mut superseded = Vec::new();
        let mut records = Vec::new();
        for row in &rows {
            let old = run_row(row)?;
            let reason = format!(
                "superseded by run {} (#{}) in {environment}",
                run.id, run.number
            );
            transition_run_in(
                &mut tx,
                &old,
                RunEvent::Supersede,
                Some(&reason),
                Actor::SYSTEM,
            )
            .await?;
            let plan_sha256 = plan_in(&mut tx, old.id, environment)
                .await?
                .map(|p| p.sha256);
            let entry = run_audit(
                "run.supersede",
                &old,
                serde_json::json!({ "by": run.id.0, "environment": environment, "plan_sha256": plan_sha256 }),
            );
            records.push(self.audit_in(&mut tx, &system, entry).await?);
            superseded.push(old.id);
        }
        tx.commit().await?;
        self.events_committed();
        for record in &records {
            self.audit_committed(record)?;
        }
        Ok(superseded)
    }

    /// Who holds each environment and who queues for it.
    pub async fn queue(&self) -> Result<Vec<EnvQueue>> {
        let holds = sqlx::query(
            "SELECT projects.name, h.pipeline, h.environment, h.run_id, h.since FROM env_holds h \
             JOIN projects ON projects.id = h.project_id",
        )
        .fetch_all(&self.pool)
        .await?;
        let waiting = sqlx::query(&format!(
            "SELECT projects.name, runs.pipeline, runs.waiting_env, runs.id FROM runs JOIN projects ON projects.id = runs.project_id \
             WHERE runs.waiting_env IS NOT NULL AND runs.status IN {ACTIVE} ORDER BY runs.id"
        ))
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<EnvQueue> = Vec::new();
        fn slot(
            out: &mut Vec<EnvQueue>,
            project: String,
            pipeline: String,
            environment: String,
        ) -> &mut EnvQueue {
            let pos = out
                .iter()
                .position(|q| {
                    q.project == project && q.pipeline == pipeline && q.environment == environment
                })
                .unwrap_or_else(|| {
                    out.push(EnvQueue {
                        project,
                        pipeline,
                        environment,
                        holder: None,
                        waiting: Vec::new(),
                    });
                    out.len() - 1
                });
            &mut out[pos]
        }
        for r in &holds {
            slot(&mut out, r.get(0), r.get(1), r.get(2)).holder = Some((RunId(r.get(3)), r.get(4)));
        }
        for r in &waiting {
            slot(&mut out, r.get(0), r.get(1), r.get(2))
                .waiting
                .push(RunId(r.get(3)));
        }
        out.sort_by(|a, b| {
            (&a.project, &a.pipeline, &a.environment).cmp(&(
                &b.project,
                &b.pipeline,
                &b.environment,
            ))
        });
        Ok(out)
    }
}
