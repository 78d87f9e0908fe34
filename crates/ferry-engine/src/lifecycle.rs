//! A run's life beyond its driver: cancelling it, starting its driver, recovering every run
//! a stopped server left behind, and shutting down gracefully.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_core::{Actor, EventType, RunEvent, RunId, RunStatus};
use ferry_store::Run;
use tokio_util::sync::CancellationToken;

use crate::{driver, workspace, Engine, Error, Result, RunHandle, StopReason};

impl Engine {
    /// Cancels a run: a running action is terminated (TERM, then KILL its process group).
    pub async fn cancel(&self, actor: &Actor, run: RunId) -> Result<Run> {
        let current = self.inner.store.run(run).await?;
        if current.status.is_terminal() {
            return Err(Error::RunFinished {
                run,
                status: current.status,
            });
        }
        let handle = self
            .inner
            .runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&run)
            .cloned();
        match handle {
            Some(handle) => {
                handle
                    .reason
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert(StopReason::Cancel(actor.clone()));
                handle.cancel.cancel();
                // The driver records the cancellation once the action is gone; wait for it so
                // the caller sees the final status.
                let mut rx = self.inner.changed.subscribe();
                let deadline = tokio::time::Instant::now()
                    + self.inner.config.kill_grace
                    + Duration::from_secs(5);
                loop {
                    let latest = self.inner.store.run(run).await?;
                    if latest.status.is_terminal() {
                        return Ok(latest);
                    }
                    tokio::select! {
                        _ = rx.changed() => {}
                        _ = tokio::time::sleep_until(deadline) => return Ok(latest),
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
            }
            None => {
                let run = self
                    .inner
                    .store
                    .transition_run(run, RunEvent::Cancel, Some("cancelled"), Some(actor))
                    .await?;
                self.notify_changed();
                Ok(run)
            }
        }
    }

    /// Start-up recovery, before any new work: kill the process groups of actions that were
    /// executing when the server died, mark their runs `Interrupted` (releasing their
    /// environments, with an audit entry), then resume every other unfinished run.
    pub async fn recover(&self) -> Result<()> {
        let store = &self.inner.store;
        let system = Actor::system("startup");
        let mut interrupted = std::collections::BTreeSet::new();
        for orphan in store.orphan_actions().await? {
            if let (Some(pid), Some(start)) = (orphan.pid, orphan.pid_start_time) {
                let grace = self.inner.config.kill_grace;
                let killed = ferry_executor::kill_recorded_group(pid as u32, start as u64, grace)
                    .await
                    || ferry_executor::kill_leaderless_group(
                        pid as u32,
                        &self.work_dir(orphan.run_id),
                        grace,
                    )
                    .await;
                tracing::warn!(run = %orphan.run_id, action = %orphan.action, pid, killed, "killed the process group of an interrupted action");
            }
            interrupted.insert(orphan.run_id);
        }
        for run in store.active_runs().await? {
            let detail = store.run_detail(run.id).await?;
            let mid_stage = detail
                .stages
                .iter()
                .any(|s| s.status == ferry_core::StageStatus::InProgress);
            if interrupted.contains(&run.id) || mid_stage || run.status == RunStatus::Stopping {
                let reason = "the server stopped while this run was executing";
                if let Some(stage) = detail
                    .stages
                    .iter()
                    .find(|s| s.status == ferry_core::StageStatus::InProgress)
                {
                    self.import_errored_state(&run, &stage.environment, &system)
                        .await;
                }
                store
                    .transition_run(run.id, RunEvent::Interrupt, Some(reason), Some(&system))
                    .await?;
                // Its processes are gone (killed above), so its credentials and any state
                // lock they held can go too.
                store.revoke_run_tokens(run.id.0).await?;
                store
                    .release_locks_held_by(&system, &format!("run-{}-", run.id))
                    .await?;
                tracing::warn!(run = %run.id, "run interrupted by a server stop");
            } else {
                let waiting = detail
                    .stages
                    .iter()
                    .find(|s| s.status == ferry_core::StageStatus::WaitingForApproval);
                store
                    .record_event(
                        EventType::PipelineResumed,
                        &run,
                        waiting.map(|s| s.environment.as_str()),
                        waiting.map(|s| s.kind.as_str()),
                        Actor::SYSTEM,
                        Some("the server restarted"),
                    )
                    .await?;
                self.spawn_driver(run.id);
            }
        }
        // Nothing of a run that is not executing may stay on disk: its secret files above
        // all. Resumed runs check out afresh.
        self.remove_run_dirs().await?;
        self.notify_changed();
        Ok(())
    }

    /// Removes every run directory (`run-N`) of the work dir, and the data dir's `work/`
    /// left by versions that kept checkouts there. Only at start-up, before any driver.
    async fn remove_run_dirs(&self) -> Result<()> {
        let config = &self.inner.config;
        let legacy = config.data_dir.join("work");
        if tokio::fs::symlink_metadata(&legacy).await.is_ok() {
            tokio::fs::remove_dir_all(&legacy).await?;
            tracing::info!(path = %legacy.display(), "removed run directories left in the data dir");
        }
        let mut entries = match tokio::fs::read_dir(&config.work_dir).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        while let Some(entry) = entries.next_entry().await? {
            let name = entry.file_name();
            let is_run = name
                .to_str()
                .and_then(|n| n.strip_prefix("run-"))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if is_run {
                tokio::fs::remove_dir_all(entry.path()).await?;
                tracing::info!(path = %entry.path().display(), "removed a run directory left by an earlier process");
            }
        }
        Ok(())
    }

    /// Imports the `errored.tfstate` a `terraform` of an interrupted run left behind (it
    /// writes one when it cannot save state to the backend) as a new state version, under
    /// the lock the run held. Never fails recovery: what cannot be imported is logged, and the
    /// file is kept (0600) in the data dir's `errored/` for a human.
    async fn import_errored_state(&self, run: &Run, environment: &str, actor: &Actor) {
        let lowered = ferry_spec::lower(&run.pipeline_path, &run.spec_yaml);
        let Some(spec) = lowered.spec else { return };
        let src = self.work_dir(run.id).join("src");
        // The directory comes from the commit: it must still resolve inside the checkout,
        // and the file must be a regular file, not a link to one of Ferry's own.
        let Ok(dir) = workspace::inside(&src, &spec.terraform.dir, "terraform.dir") else {
            return;
        };
        let path = dir.join("errored.tfstate");
        let Ok(body) = workspace::read_regular(&path) else {
            return;
        };
        // Run directories are removed at start-up: keep a copy that cannot be lost.
        let kept = self
            .inner
            .config
            .data_dir
            .join("errored")
            .join(format!("run-{}-{environment}.tfstate", run.id));
        let kept_ok = kept
            .parent()
            .map(|d| std::fs::create_dir_all(d).and_then(|()| workspace::write_new(&kept, &body)))
            .is_some_and(|r| r.is_ok());
        let path = if kept_ok { kept } else { path };
        let addr = ferry_store::StateAddr {
            project_id: run.project_id,
            project: &run.project,
            environment,
            name: "",
        };
        let held = match self.inner.store.state(addr).await {
            Ok(Some((state, _))) => state
                .lock
                .filter(|_| {
                    state
                        .locked_by
                        .as_deref()
                        .is_some_and(|by| by.starts_with(&format!("run-{}-", run.id)))
                })
                .map(|lock| lock.id),
            _ => None,
        };
        let message = match self
            .write_state(actor, addr, &body, held.as_deref(), false)
            .await
        {
            Ok(ferry_store::WriteOutcome::Written(version)) => {
                let _ = tokio::fs::remove_file(&path).await;
                format!(
                    "imported the errored.tfstate Terraform left behind as version {} of state {}",
                    version.number,
                    addr.display()
                )
            }
            Ok(ferry_store::WriteOutcome::Idempotent) => {
                let _ = tokio::fs::remove_file(&path).await;
                format!(
                    "errored.tfstate matches the current version of state {}",
                    addr.display()
                )
            }
            Ok(other) => format!(
                "errored.tfstate was not imported into state {} ({other:?}); it is kept at {}",
                addr.display(),
                path.display()
            ),
            Err(e) => format!(
                "errored.tfstate was not imported into state {}: {e}; it is kept at {}",
                addr.display(),
                path.display()
            ),
        };
        tracing::warn!(run = %run.id, "{message}");
        if let Ok(mut log) = ferry_executor::RunLog::open(&self.log_path(run.id)).await {
            let mut action = log.action(0);
            let _ = action.line(ferry_executor::Stream::Sys, &message).await;
            let _ = action.flush().await;
        }
    }

    /// Graceful shutdown: take no new work, let running actions finish within `grace`, then
    /// terminate them; their runs are recorded `Interrupted`. Queued runs and runs waiting
    /// for an approval are left as they are and resume at the next start.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        self.notify_changed();
        self.inner.tasks.close();
        if tokio::time::timeout(grace, self.inner.tasks.wait())
            .await
            .is_err()
        {
            let handles: Vec<_> = self
                .inner
                .runs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .cloned()
                .collect();
            for handle in handles {
                handle
                    .reason
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert(StopReason::Shutdown);
                handle.cancel.cancel();
            }
            self.inner.tasks.wait().await;
        }
    }

    pub(crate) fn spawn_driver(&self, run: RunId) {
        let handle = Arc::new(RunHandle {
            cancel: CancellationToken::new(),
            reason: Mutex::new(None),
            log: Mutex::new(None),
        });
        {
            let mut runs = self.inner.runs.lock().unwrap_or_else(|e| e.into_inner());
            if runs.contains_key(&run) {
                return;
            }
            runs.insert(run, handle.clone());
        }
        let engine = self.clone();
        self.inner.tasks.spawn(async move {
            if let Err(error) = driver::drive(&engine, run, &handle).await {
                tracing::error!(run = %run, error = %error, "run driver failed");
                let reason = format!("ferry failed to drive this run: {error}");
                let _ = engine
                    .inner
                    .store
                    .transition_run(run, RunEvent::Fail, Some(&reason), None)
                    .await;
            }
            engine
                .inner
                .runs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&run);
            engine.notify_changed();
        });
    }
}
