//! Ferry's local executor: runs one action as a process group with a timeout
//! and cancellation, and captures its output into the run log.
//!
//! - [`process`]: spawning, supervising and killing an action's process group.
//! - [`log`]: the per-run log file (JSON lines) and its reader for followers.
//! - [`sandbox`]: what an action's process tree may reach (Landlock, no capabilities).
//! - [`filter`]: the hook through which output passes before it is stored
//!   (secret masking).
//!
//! **Architecture Invariant:** this crate knows nothing of runs, stages,
//! secrets or the store; the engine gives it a command, an environment and a
//! log, and gets an [`Outcome`] back.

pub mod filter;
mod lines;
pub mod log;
pub mod process;
pub mod sandbox;

pub use filter::{Identity, OutputFilter};
pub use lines::MAX_LINE;
pub use log::{read_log, ActionLog, LogChunk, LogLine, RunLog, Stream};
pub use process::{
    kill_leaderless_group, kill_recorded_group, process_start_time, spawn, ActionSpec, Command,
    Outcome, Running, DEFAULT_KILL_GRACE,
};
pub use sandbox::{Sandbox, Support as SandboxSupport};
