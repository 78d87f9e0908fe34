//! The durable event log: one row per run, stage, action and approval transition, written in
//! the same transaction as the transition itself, so an event exists exactly when its change
//! does (a crash can lose neither one alone). Rows are append-only; the id is the cursor.

use ferry_core::EventType;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use crate::model::Run;
use crate::{now, Result, Store};

/// One event, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: i64,
    pub kind: EventType,
    pub time: String,
    pub project: String,
    pub pipeline: String,
    pub run_id: i64,
    pub run_number: i64,
    pub environment: Option<String>,
    pub stage: Option<String>,
    pub action: Option<String>,
    pub commit: String,
    pub actor: String,
    pub reason: Option<String>,
    /// A JSON object with event-specific details (the plan digest of an approval, ...).
    pub details: String,
}

/// Which events to list: all filters are optional and combine with AND.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only events with a larger id (the cursor).
    pub after: Option<i64>,
    pub run: Option<i64>,
    pub project: Option<String>,
    pub pipeline: Option<String>,
    pub environment: Option<String>,
    pub types: Vec<EventType>,
    /// Only events of these projects (`None`: every project).
    pub visible: Option<Vec<String>>,
    pub limit: i64,
}

/// What an event is about, below the run.
#[derive(Debug, Clone, Default)]
pub(crate) struct EventAt<'a> {
    pub environment: Option<&'a str>,
    pub stage: Option<&'a str>,
    pub action: Option<&'a str>,
}

pub(crate) async fn emit_in(
    conn: &mut SqliteConnection,
    kind: EventType,
    run: &Run,
    at: EventAt<'_>,
    actor: &str,
    reason: Option<&str>,
    details: serde_json::Value,
) -> Result<()> {
    let about = About {
        project: &run.project,
        pipeline: &run.pipeline,
        run_id: run.id.0,
        run_number: run.number.0,
        commit: &run.commit_sha,
    };
    insert_event(conn, kind, about, at, actor, reason, details).await
}

/// An event about a state rather than a run (`STATE_FORCE_UNLOCKED`, `STATE_ROLLED_BACK`):
/// attached to `run` when one is involved (the run whose lock was removed), otherwise with
/// run id and number 0 and an empty pipeline and commit.
pub(crate) async fn emit_state_in(
    conn: &mut SqliteConnection,
    kind: EventType,
    (project, environment): (&str, &str),
    run: Option<&Run>,
    actor: &str,
    reason: Option<&str>,
    details: serde_json::Value,
) -> Result<()> {
    let about = match run {
        Some(run) => About {
            project,
            pipeline: &run.pipeline,
            run_id: run.id.0,
            run_number: run.number.0,
            commit: &run.commit_sha,
        },
        None => About {
            project,
            pipeline: "",
            run_id: 0,
            run_number: 0,
            commit: "",
        },
    };
    let at = EventAt {
        environment: Some(environment),
        ..EventAt::default()
    };
    insert_event(conn, kind, about, at, actor, reason, details).await
}

/// Which project and run an event belongs to.
struct About<'a> {
    project: &'a str,
    pipeline: &'a str,
    run_id: i64,
    run_number: i64,
    commit: &'a str,
}

async fn insert_event(
    conn: &mut SqliteConnection,
    kind: EventType,
    about: About<'_>,
    at: EventAt<'_>,
    actor: &str,
    reason: Option<&str>,
    details: serde_json::Value,
) -> Result<()> {
    let details = match details {
        serde_json::Value::Null => "{}".to_owned(),
        other => other.to_string(),
    };
    sqlx::query(
        "INSERT INTO events (type, ts, project, pipeline, run_id, run_number, environment, stage, action, commit_sha, \
         actor, reason, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(kind.as_str())
    .bind(now())
    .bind(about.project)
    .bind(about.pipeline)
    .bind(about.run_id)
    .bind(about.run_number)
    .bind(at.environment)
    .bind(at.stage)
    .bind(at.action)
    .bind(about.commit)
    .bind(actor)
    .bind(reason)
    .bind(details)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn event_row(r: &SqliteRow) -> Result<Event> {
    Ok(Event {
        id: r.get("id"),
        kind: crate::parse("events", r.get::<&str, _>("type"))?,
        time: r.get("ts"),
        project: r.get("project"),
        pipeline: r.get("pipeline"),
        run_id: r.get("run_id"),
        run_number: r.get("run_number"),
        environment: r.get("environment"),
        stage: r.get("stage"),
        action: r.get("action"),
        commit: r.get("commit_sha"),
        actor: r.get("actor"),
        reason: r.get("reason"),
        details: r.get("details"),
    })
}

impl Store {
    /// Events oldest first, after the cursor.
    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<Event>> {
        let mut sql = String::from("SELECT * FROM events WHERE id > ?");
        if filter.run.is_some() {
            sql.push_str(" AND run_id = ?");
        }
        if filter.project.is_some() {
            sql.push_str(" AND project = ?");
        }
        if filter.pipeline.is_some() {
            sql.push_str(" AND pipeline = ?");
        }
        if filter.environment.is_some() {
            sql.push_str(" AND environment = ?");
        }
        if !filter.types.is_empty() {
            let marks = vec!["?"; filter.types.len()].join(", ");
            sql.push_str(&format!(" AND type IN ({marks})"));
        }
        if let Some(visible) = &filter.visible {
            let marks = vec!["?"; visible.len()].join(", ");
            sql.push_str(&format!(" AND project IN ({marks})"));
        }
        sql.push_str(" ORDER BY id LIMIT ?");
        let mut query = sqlx::query(&sql).bind(filter.after.unwrap_or(0));
        if let Some(run) = filter.run {
            query = query.bind(run);
        }
        for value in [&filter.project, &filter.pipeline, &filter.environment]
            .into_iter()
            .flatten()
        {
            query = query.bind(value);
        }
        for t in &filter.types {
            query = query.bind(t.as_str());
        }
        for project in filter.visible.iter().flatten() {
            query = query.bind(project);
        }
        let rows = query.bind(filter.limit).fetch_all(&self.pool).await?;
        rows.iter().map(event_row).collect()
    }

    /// A receiver that changes after every committed transaction that wrote events.
    pub fn event_updates(&self) -> tokio::sync::watch::Receiver<u64> {
        self.events.subscribe()
    }

    pub(crate) fn events_committed(&self) {
        self.events.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Records an event that is not a status change (a run resumed after a restart).
    pub async fn record_event(
        &self,
        kind: EventType,
        run: &Run,
        environment: Option<&str>,
        stage: Option<&str>,
        actor: &str,
        reason: Option<&str>,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        let at = EventAt {
            environment,
            stage,
            action: None,
        };
        emit_in(
            &mut tx,
            kind,
            run,
            at,
            actor,
            reason,
            serde_json::Value::Null,
        )
        .await?;
        tx.commit().await?;
        self.events_committed();
        Ok(())
    }
}
