//! The event log (listed with a cursor, and followed live over SSE) and the audit chain
//! (listed and exported; never edited: no route changes or deletes an entry).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use ferry_api as api;
use ferry_core::EventType;
use ferry_engine::model::{AuditFilter, EventFilter};
use futures::Stream;
use serde::Deserialize;

use crate::api::runs::visible_projects;
use crate::auth::Identity;
use crate::convert;
use crate::error::{ApiError, ApiResult};
use crate::extract::Query;
use crate::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventsQuery {
    /// Only events after this id (the cursor; 0 or absent: from the start).
    #[param(minimum = 0)]
    after: Option<i64>,
    run: Option<i64>,
    project: Option<String>,
    pipeline: Option<String>,
    environment: Option<String>,
    /// Comma-separated event types, e.g. `PIPELINE_EXECUTION_FAILED,MANUAL_APPROVAL_NEEDED`.
    #[serde(rename = "type")]
    types: Option<String>,
    /// 1–1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

impl EventsQuery {
    fn filter(&self, after: Option<i64>, visible: Option<Vec<String>>) -> ApiResult<EventFilter> {
        let limit = self.limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(ApiError::bad_request("limit must be between 1 and 1000"));
        }
        let types = match &self.types {
            Some(list) if list.is_empty() => Vec::new(),
            // Exactly as documented: names separated by commas, nothing else.
            Some(list) => list
                .split(',')
                .map(|t| {
                    t.parse::<EventType>()
                        .map_err(|e| ApiError::bad_request(e.to_string()))
                })
                .collect::<ApiResult<Vec<_>>>()?,
            None => Vec::new(),
        };
        let after = after.or(self.after).unwrap_or(0);
        if after < 0 {
            return Err(ApiError::bad_request("after must not be negative"));
        }
        Ok(EventFilter {
            after: Some(after),
            run: self.run,
            project: self.project.clone(),
            pipeline: self.pipeline.clone(),
            environment: self.environment.clone(),
            types,
            visible,
            limit,
        })
    }
}

/// Events oldest first after the cursor: run, stage, action and approval transitions, each
/// with run, pipeline, environment, stage, action, commit, actor, time and reason.
#[utoipa::path(get, path = "/api/v1/events", params(EventsQuery),
    responses((status = 200, body = api::EventPage), (status = 400, body = api::ErrorBody)))]
pub(crate) async fn events_list(
    State(state): State<AppState>,
    identity: Identity,
    Query(query): Query<EventsQuery>,
) -> ApiResult<axum::Json<api::EventPage>> {
    let filter = query.filter(None, visible_projects(&state, &identity).await?)?;
    let events = state.engine.events(&filter).await?;
    let next_after = events.last().map_or(filter.after.unwrap_or(0), |e| e.id);
    Ok(axum::Json(api::EventPage {
        events: events.into_iter().map(convert::event).collect(),
        next_after,
    }))
}

/// Follows the event log live. Each SSE message is one event (`event:` its type, `id:` its
/// cursor, `data:` the JSON event); reconnecting with `Last-Event-ID` resumes after it.
/// Ends with a `shutdown` message when the server stops.
#[utoipa::path(get, path = "/api/v1/events/stream", params(EventsQuery),
    responses((status = 200, description = "text/event-stream"), (status = 400, body = api::ErrorBody)))]
pub(crate) async fn events_stream(
    State(state): State<AppState>,
    identity: Identity,
    Query(query): Query<EventsQuery>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok());
    // Visibility is decided once, when the stream opens.
    let filter = query.filter(resume, visible_projects(&state, &identity).await?)?;
    let updates = state.engine.event_updates();
    let start = (state, filter, updates, Vec::<api::Event>::new(), false);
    let stream = futures::stream::unfold(
        start,
        |(state, mut filter, mut updates, mut pending, done)| async move {
            if done {
                return None;
            }
            loop {
                if let Some(event) = (!pending.is_empty()).then(|| pending.remove(0)) {
                    let data = serde_json::to_string(&event).unwrap_or_default();
                    let message = SseEvent::default()
                        .event(event.kind.clone())
                        .id(event.id.to_string())
                        .data(data);
                    return Some((Ok(message), (state, filter, updates, pending, false)));
                }
                match state.engine.events(&filter).await {
                    Ok(events) if !events.is_empty() => {
                        filter.after = events.last().map(|e| e.id);
                        pending = events.into_iter().map(convert::event).collect();
                        continue;
                    }
                    Ok(_) => {}
                    Err(_) => {
                        let message = SseEvent::default()
                            .event("error")
                            .data("the event log could not be read");
                        return Some((Ok(message), (state, filter, updates, pending, true)));
                    }
                }
                if state.shutting_down() {
                    let message = SseEvent::default()
                        .event("shutdown")
                        .data("the server is shutting down");
                    return Some((Ok(message), (state, filter, updates, pending, true)));
                }
                let shutdown = state.shutdown.clone();
                tokio::select! {
                    _ = tokio::time::timeout(Duration::from_secs(1), updates.changed()) => {}
                    _ = shutdown.cancelled() => {}
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    /// Only entries after this sequence number.
    #[param(minimum = 0)]
    after: Option<i64>,
    /// Exactly this actor.
    actor: Option<String>,
    /// Exactly this target, or a prefix ending in `/` (`run/`, `state/`).
    target: Option<String>,
    /// Exactly this action, or a prefix ending in `.` (`run.`, `state.`).
    action: Option<String>,
    /// From this time on (RFC 3339, inclusive).
    #[param(format = DateTime)]
    since: Option<String>,
    /// Before this time (RFC 3339, exclusive).
    #[param(format = DateTime)]
    until: Option<String>,
    /// 1–1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

fn rfc3339(name: &str, value: &Option<String>) -> ApiResult<Option<String>> {
    match value {
        Some(v) => chrono::DateTime::parse_from_rfc3339(v)
            .map(|t| {
                Some(
                    t.with_timezone(&chrono::Utc)
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                )
            })
            .map_err(|e| ApiError::bad_request(format!("{name} is not an RFC 3339 time: {e}"))),
        None => Ok(None),
    }
}

/// The audit chain in order, filtered (global admins only, by the route's rule). Entries can
/// be listed and exported, never changed: no route edits or deletes one.
#[utoipa::path(get, path = "/api/v1/audit", params(AuditQuery),
    responses((status = 200, body = api::AuditPage), (status = 400, body = api::ErrorBody), (status = 403, body = api::ErrorBody)))]
pub(crate) async fn audit_list(
    State(state): State<AppState>,
    _identity: Identity,
    Query(query): Query<AuditQuery>,
) -> ApiResult<axum::Json<api::AuditPage>> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 1000"));
    }
    let after = query.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::bad_request("after must not be negative"));
    }
    let filter = AuditFilter {
        after,
        actor: query.actor,
        target: query.target,
        action: query.action,
        since: rfc3339("since", &query.since)?,
        until: rfc3339("until", &query.until)?,
        limit,
    };
    let entries = state.engine.audit_filtered(&filter).await?;
    let next_after = entries.last().map_or(after, |e| e.seq);
    Ok(axum::Json(api::AuditPage {
        entries: entries.into_iter().map(convert::audit).collect(),
        next_after,
    }))
}
