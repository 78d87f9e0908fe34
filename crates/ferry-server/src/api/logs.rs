//! Run logs: pages from a byte offset, and a live Server-Sent Events stream.
//!
//! Offsets are byte positions in the run's append-only log file, always on a record
//! boundary, so a client resumes exactly where it stopped (SSE `Last-Event-ID` is the same
//! offset).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use ferry_api as api;
use ferry_core::RunId;
use futures::Stream;
use serde::Deserialize;

use crate::auth::Identity;
use crate::convert;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Path, Query};
use crate::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogQuery {
    /// Byte offset from a previous `next_offset` (default 0).
    #[param(minimum = 0, maximum = 9223372036854775807_u64)]
    offset: Option<u64>,
    /// Lines per page (per `lines` event when streaming), 1–10000 (default 1000).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<usize>,
    /// Only lines of this action.
    action: Option<i64>,
}

fn check_limit(limit: Option<usize>) -> ApiResult<usize> {
    let limit = limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 10000"));
    }
    Ok(limit)
}

/// A page of a run's log.
#[utoipa::path(get, path = "/api/v1/runs/{id}/logs", params(("id" = i64, Path), LogQuery),
    responses((status = 200, body = api::LogPage), (status = 404, body = api::ErrorBody)))]
pub(crate) async fn logs_get(
    State(state): State<AppState>,
    _identity: Identity,
    Path(id): Path<i64>,
    Query(query): Query<LogQuery>,
) -> ApiResult<axum::Json<api::LogPage>> {
    let run = RunId(id);
    let limit = check_limit(query.limit)?;
    // Decide completeness before reading, so a line written in between is never missed.
    let was_finished = state.engine.log_complete(run).await?;
    let offset = query.offset.unwrap_or(0);
    state.engine.check_log_offset(run, offset).await?;
    let chunk = state
        .engine
        .read_log(run, offset, limit, query.action)
        .await?;
    // A page short of `limit` is not necessarily the last: a read stops after about 1 MiB
    // (and, with `action`, may skip other actions' lines). Complete means the page reached
    // the end of a log that can no longer grow.
    let complete = was_finished && chunk.next_offset >= state.engine.log_len(run).await?;
    Ok(axum::Json(api::LogPage {
        lines: chunk.lines.into_iter().map(convert::log_line).collect(),
        next_offset: chunk.next_offset,
        complete,
    }))
}

/// Follows a run's log live. Events: `lines` (data: a JSON array of log lines; id: the
/// offset to resume from), a final `end` (data: the run's status) when the run is over, or
/// `shutdown` when the server stops first.
#[utoipa::path(get, path = "/api/v1/runs/{id}/logs/stream", params(("id" = i64, Path), LogQuery),
    responses((status = 200, description = "text/event-stream"), (status = 404, body = api::ErrorBody)))]
pub(crate) async fn logs_stream(
    State(state): State<AppState>,
    _identity: Identity,
    Path(id): Path<i64>,
    Query(query): Query<LogQuery>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let run = RunId(id);
    let limit = check_limit(query.limit)?;
    state.engine.run(run).await?;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let offset = resume.or(query.offset).unwrap_or(0);
    state.engine.check_log_offset(run, offset).await?;
    let action = query.action;
    let updates = state.engine.log_updates(run);
    let start = Follow {
        state,
        run,
        offset,
        action,
        limit,
        updates,
        done: false,
    };
    let stream = futures::stream::unfold(start, |mut f| async move {
        if f.done {
            return None;
        }
        loop {
            let was_finished = f.state.engine.log_complete(f.run).await.unwrap_or(true);
            let chunk = match f
                .state
                .engine
                .read_log(f.run, f.offset, f.limit, f.action)
                .await
            {
                Ok(chunk) => chunk,
                Err(_) => {
                    f.done = true;
                    return Some((
                        Ok(Event::default()
                            .event("error")
                            .data("the log could not be read")),
                        f,
                    ));
                }
            };
            let advanced = chunk.next_offset > f.offset;
            f.offset = chunk.next_offset;
            if !chunk.lines.is_empty() {
                let lines: Vec<api::LogLine> =
                    chunk.lines.into_iter().map(convert::log_line).collect();
                let data = serde_json::to_string(&lines).unwrap_or_else(|_| "[]".into());
                return Some((
                    Ok(Event::default()
                        .event("lines")
                        .id(f.offset.to_string())
                        .data(data)),
                    f,
                ));
            }
            if advanced {
                // Only other actions' lines in this read (`action` filter): read on.
                continue;
            }
            if was_finished {
                f.done = true;
                let status = f
                    .state
                    .engine
                    .run(f.run)
                    .await
                    .map(|r| r.status.as_str())
                    .unwrap_or("unknown");
                return Some((Ok(Event::default().event("end").data(status)), f));
            }
            if f.state.shutting_down() {
                // Open streams must not hold up a graceful shutdown.
                f.done = true;
                return Some((
                    Ok(Event::default()
                        .event("shutdown")
                        .data("the server is shutting down")),
                    f,
                ));
            }
            if f.updates.is_none() {
                f.updates = f.state.engine.log_updates(f.run);
            }
            let shutdown = f.state.shutdown.clone();
            match f.updates.as_mut() {
                Some(rx) => {
                    tokio::select! {
                        _ = tokio::time::timeout(Duration::from_millis(500), rx.changed()) => {}
                        _ = shutdown.cancelled() => {}
                    }
                }
                None => {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        _ = shutdown.cancelled() => {}
                    }
                }
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

struct Follow {
    state: AppState,
    run: RunId,
    offset: u64,
    action: Option<i64>,
    limit: usize,
    updates: Option<tokio::sync::watch::Receiver<u64>>,
    done: bool,
}
