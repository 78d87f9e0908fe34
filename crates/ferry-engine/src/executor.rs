//! The seam between the engine and whatever runs an action's processes.
//!
//! The driver decides *what* runs (the command, its directory, its environment, its
//! sandbox, its deadline) and records every outcome; an [`Executor`] only runs it and reports
//! how it ended. [`Local`] runs process groups on this machine (`ferry-executor`);
//! [`Scripted`] runs nothing and answers from a script, for engine tests. A remote-agent
//! executor (scale-out) goes behind the same trait.
//!
//! ## Lifecycle, for every implementation
//! 1. [`Executor::start`] begins one process of an action and returns at once. An `Err` is
//!    "could not run" (the action fails with that message); a command that runs and fails
//!    is an `Ok` start whose [`Execution::wait`] answers a failing [`Outcome`].
//! 2. [`Execution::process`] names a process group on this machine, if there is one: the
//!    engine records it *before* waiting, so crash recovery can kill what a dead server left
//!    running. A remote executor answers `None` and instead holds a lease on the agent that
//!    ends when the server stops renewing it; the agent then kills the group itself.
//! 3. [`Execution::wait`] copies the output, through the [`Job`]'s filters (the secret
//!    masker: nothing reaches the log unfiltered), into the action's log until the process
//!    and its group are gone, then says how it ended. It must end the group and answer
//!    [`Outcome::Cancelled`] soon after `cancel` fires, and [`Outcome::TimedOut`] once the
//!    spec's timeout passes. An executor that loses its process (an agent that vanished)
//!    answers `Err`: the action fails, it is never reported as a success.
//! 4. Dropping a future of `wait` before it completes leaves the group running; only the
//!    recorded process (or the lease) can end it then.

use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_core::{ActionId, RunId};
use ferry_executor::{ActionLog, ActionSpec, Command, Outcome, OutputFilter, Stream};
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

/// One process of one action, as the driver built it.
pub struct Job {
    pub run: RunId,
    pub action: ActionId,
    pub spec: ActionSpec,
    /// Every byte of stdout passes through this before it is split into lines.
    pub stdout: Box<dyn OutputFilter>,
    pub stderr: Box<dyn OutputFilter>,
}

/// Where an action's processes run. See the module documentation for the lifecycle.
pub trait Executor: Send + Sync + 'static {
    fn start(&self, job: Job) -> io::Result<Box<dyn Execution>>;
}

/// A started process of an action.
pub trait Execution: Send {
    /// The process group on this machine (leader pid, its start time in clock ticks since
    /// boot), when there is one.
    fn process(&self) -> Option<(u32, u64)>;

    /// Copies output into `log` until the process ended, and says how it ended.
    fn wait<'a>(
        self: Box<Self>,
        log: &'a mut ActionLog<'_>,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, io::Result<Outcome>>;
}

/// Process groups on this machine, confined by each spec's sandbox.
#[derive(Debug, Default, Clone, Copy)]
pub struct Local;

impl Executor for Local {
    fn start(&self, job: Job) -> io::Result<Box<dyn Execution>> {
        let running = ferry_executor::spawn(&job.spec)?.with_filters(job.stdout, job.stderr);
        Ok(Box::new(running))
    }
}

impl Execution for ferry_executor::Running {
    fn process(&self) -> Option<(u32, u64)> {
        Some((self.pid(), self.start_time()))
    }

    fn wait<'a>(
        self: Box<Self>,
        log: &'a mut ActionLog<'_>,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, io::Result<Outcome>> {
        Box::pin(ferry_executor::Running::wait(*self, log, cancel))
    }
}

/// What a [`Scripted`] process does.
#[derive(Debug, Clone)]
pub struct Step {
    /// Printed as lines of their streams (through the job's filters); stdout's first.
    pub output: Vec<(Stream, String)>,
    /// Files written before the step ends (a plan file where `terraform plan -out=` would
    /// put it).
    pub files: Vec<(PathBuf, Vec<u8>)>,
    /// How long the step takes before it ends; it still ends early on cancel or timeout.
    pub duration: Duration,
    /// Run until cancelled or timed out instead of ending by itself.
    pub hang: bool,
    pub outcome: Outcome,
    /// `start` fails with this message: the executor could not run the process at all.
    pub refuse: Option<String>,
}

impl Step {
    /// A step that prints nothing and exits 0 at once.
    pub fn ok() -> Step {
        Step {
            output: Vec::new(),
            files: Vec::new(),
            duration: Duration::ZERO,
            hang: false,
            outcome: Outcome::Exited(0),
            refuse: None,
        }
    }

    pub fn exit(code: i32) -> Step {
        Step {
            outcome: Outcome::Exited(code),
            ..Step::ok()
        }
    }

    pub fn hang() -> Step {
        Step {
            hang: true,
            ..Step::ok()
        }
    }

    pub fn print(mut self, stream: Stream, line: impl Into<String>) -> Step {
        self.output.push((stream, line.into()));
        self
    }

    pub fn write(mut self, path: impl Into<PathBuf>, bytes: impl Into<Vec<u8>>) -> Step {
        self.files.push((path.into(), bytes.into()));
        self
    }
}

type Script = dyn Fn(&Started) -> Step + Send + Sync;

/// What a [`Scripted`] executor was asked to run.
#[derive(Debug, Clone)]
pub struct Started {
    pub run: RunId,
    pub action: ActionId,
    pub command: Command,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    pub sandboxed: bool,
}

impl Started {
    /// The command as one line (`sh -c` text, or argv joined by spaces).
    pub fn line(&self) -> String {
        match &self.command {
            Command::Shell(s) => s.clone(),
            Command::Argv(argv) => argv.join(" "),
        }
    }

    pub fn env(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An executor that starts no process: each job's [`Step`] comes from a script, and every
/// job is remembered for the test to inspect. Output goes through the job's filters and
/// into the real run log, cancellation and timeouts behave as the lifecycle says.
#[derive(Clone)]
pub struct Scripted {
    script: Arc<Script>,
    started: Arc<Mutex<VecDeque<Started>>>,
}

impl Scripted {
    pub fn new(script: impl Fn(&Started) -> Step + Send + Sync + 'static) -> Scripted {
        Scripted {
            script: Arc::new(script),
            started: Arc::default(),
        }
    }

    /// Every job started so far, in order.
    pub fn started(&self) -> Vec<Started> {
        let started = self.started.lock().unwrap_or_else(|e| e.into_inner());
        started.iter().cloned().collect()
    }
}

impl std::fmt::Debug for Scripted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scripted")
            .field("started", &self.started().len())
            .finish()
    }
}

impl Executor for Scripted {
    fn start(&self, job: Job) -> io::Result<Box<dyn Execution>> {
        let started = Started {
            run: job.run,
            action: job.action,
            command: job.spec.command.clone(),
            cwd: job.spec.cwd.clone(),
            env: job.spec.env.clone(),
            timeout: job.spec.timeout,
            sandboxed: job.spec.sandbox.is_some(),
        };
        let step = (self.script)(&started);
        self.started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(started);
        if let Some(message) = step.refuse {
            return Err(io::Error::other(message));
        }
        Ok(Box::new(ScriptedRun {
            step,
            timeout: job.spec.timeout,
            stdout: job.stdout,
            stderr: job.stderr,
        }))
    }
}

struct ScriptedRun {
    step: Step,
    timeout: Duration,
    stdout: Box<dyn OutputFilter>,
    stderr: Box<dyn OutputFilter>,
}

impl Execution for ScriptedRun {
    fn process(&self) -> Option<(u32, u64)> {
        None
    }

    fn wait<'a>(
        self: Box<Self>,
        log: &'a mut ActionLog<'_>,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, io::Result<Outcome>> {
        Box::pin(async move {
            let ScriptedRun {
                step,
                timeout,
                mut stdout,
                mut stderr,
            } = *self;
            // Each stream passes through its filter as one piece (a filter keeps state
            // across chunks); stdout's lines are logged before stderr's.
            for (stream, filter) in [(Stream::Out, &mut stdout), (Stream::Err, &mut stderr)] {
                let text: String = step
                    .output
                    .iter()
                    .filter(|(s, _)| *s == stream)
                    .map(|(_, line)| format!("{line}\n"))
                    .collect();
                let mut out = Vec::new();
                filter.filter(text.as_bytes(), &mut out);
                filter.finish(&mut out);
                for line in String::from_utf8_lossy(&out).lines() {
                    log.line(stream, line).await?;
                }
            }
            for (path, bytes) in &step.files {
                tokio::fs::write(path, bytes).await?;
            }
            let ends = async {
                if step.hang {
                    std::future::pending::<()>().await
                } else {
                    tokio::time::sleep(step.duration).await
                }
            };
            let outcome = tokio::select! {
                _ = ends => step.outcome,
                _ = cancel.cancelled() => Outcome::Cancelled,
                _ = tokio::time::sleep(timeout) => {
                    log.line(Stream::Sys, &format!("timed out after {}", humantime::format_duration(timeout))).await?;
                    Outcome::TimedOut
                }
            };
            log.flush().await?;
            Ok(outcome)
        })
    }
}
