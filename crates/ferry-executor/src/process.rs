//! Runs one action as a local process group and captures its output into the
//! run log.
//!
//! Lifecycle: [`spawn`] starts the child as the leader of a new process group
//! (so a `terraform apply` and every provider plugin it starts can be killed
//! together), with a cleared environment and stdin from `/dev/null`. The
//! engine records [`Running::pid`] and [`Running::start_time`] before calling
//! [`Running::wait`], which copies output to the log until the action ends,
//! enforcing the timeout and the cancellation token. If the server dies, the
//! group outlives it; on restart [`kill_recorded_group`] ends it, but only if
//! the pid still belongs to the same process (same start time).
//!
//! When the action ends, whatever is left of its group is killed: an action
//! may not leave daemons behind, and a background child holding stdout open
//! must not hang the run.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, ChildStderr, ChildStdout};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use crate::filter::{Identity, OutputFilter};
use crate::lines::LineSplitter;
use crate::log::{ActionLog, Stream};
use crate::sandbox::Sandbox;

/// How long a process group gets between SIGTERM and SIGKILL by default.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(10);

/// After the leader has exited, how long its leftover processes may keep
/// stdout/stderr open before the group is killed.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// After SIGKILL, how long to wait for the pipes to close. Only a process that
/// left the group (`setsid`) yet holds the pipe can outlast this; its output
/// is then abandoned.
const ABANDON_AFTER_KILL: Duration = Duration::from_secs(1);

/// Output is read in chunks of this size, per stream.
const CHUNK: usize = 64 * 1024;

/// What to run, where, and for how long.
///
/// `Debug` prints the names of the environment variables but not their
/// values, which may be secrets.
#[derive(Clone)]
pub struct ActionSpec {
    pub command: Command,
    pub cwd: PathBuf,
    /// The complete environment: the child's environment is cleared first,
    /// then these are set. `Command::Argv` programs are looked up in the `PATH`
    /// given here, not the server's.
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    /// After SIGTERM, how long to wait before SIGKILL of the whole group.
    pub kill_grace: Duration,
    /// Where the action's process tree may reach; `None` runs it unsandboxed, which the
    /// engine does only when the operator opted out (`--insecure-no-sandbox`).
    pub sandbox: Option<Sandbox>,
}

impl ActionSpec {
    /// A spec with the default kill grace.
    pub fn new(
        command: Command,
        cwd: impl Into<PathBuf>,
        env: Vec<(String, String)>,
        timeout: Duration,
    ) -> ActionSpec {
        ActionSpec {
            command,
            cwd: cwd.into(),
            env,
            timeout,
            kill_grace: DEFAULT_KILL_GRACE,
            sandbox: None,
        }
    }

    /// The same spec, run inside `sandbox`.
    pub fn sandboxed(mut self, sandbox: Sandbox) -> ActionSpec {
        self.sandbox = Some(sandbox);
        self
    }
}

impl std::fmt::Debug for ActionSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let env_names: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("ActionSpec")
            .field("command", &self.command)
            .field("cwd", &self.cwd)
            .field("env", &env_names)
            .field("timeout", &self.timeout)
            .field("kill_grace", &self.kill_grace)
            .field("sandbox", &self.sandbox)
            .finish()
    }
}

/// The program of an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run via `/bin/sh -c`.
    Shell(String),
    /// Program and arguments; a program without `/` is looked up in the `PATH`
    /// of `ActionSpec::env`, a relative path with `/` is relative to `cwd`.
    Argv(Vec<String>),
}

/// How an action ended. A failed command is an outcome, not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The leader exited with this code.
    Exited(i32),
    /// The leader was killed by this signal (not by Ferry).
    Signaled(i32),
    /// Ferry killed the group because `ActionSpec::timeout` passed.
    TimedOut,
    /// Ferry killed the group because the cancellation token fired.
    Cancelled,
}

impl Outcome {
    pub fn success(&self) -> bool {
        matches!(self, Outcome::Exited(0))
    }

    /// For humans: `exit code 2`, `killed by signal 9 (SIGKILL)`, `timed out`,
    /// `cancelled`. The timeout itself is logged as a `Sys` line by
    /// `Running::wait` ("timed out after 30s; …").
    pub fn describe(&self) -> String {
        match *self {
            Outcome::Exited(code) => format!("exit code {code}"),
            Outcome::Signaled(sig) => match Signal::try_from(sig) {
                Ok(s) => format!("killed by signal {sig} ({})", s.as_str()),
                Err(_) => format!("killed by signal {sig}"),
            },
            Outcome::TimedOut => "timed out".to_owned(),
            Outcome::Cancelled => "cancelled".to_owned(),
        }
    }
}

/// A started action. Dropping it without `wait` leaves the group running (it
/// can still be ended with `kill_recorded_group`).
#[derive(Debug)]
pub struct Running {
    child: Child,
    // Invariant: the child's pid, which is also its process-group id.
    pid: u32,
    start_time: u64,
    timeout: Duration,
    kill_grace: Duration,
    stdout: ChildStdout,
    stderr: ChildStderr,
    filters: Option<(Box<dyn OutputFilter>, Box<dyn OutputFilter>)>,
}

/// Starts an action: its own process group, cleared environment, stdin from
/// `/dev/null`, stdout and stderr piped, inside its sandbox when it has one.
pub fn spawn(spec: &ActionSpec) -> io::Result<Running> {
    match &spec.sandbox {
        None => spawn_here(spec),
        Some(sandbox) => {
            // The restrictions are the thread's for good, so a thread of its own takes them
            // and spawns the child, which inherits them; then the thread ends.
            let runtime = tokio::runtime::Handle::current();
            std::thread::scope(|scope| {
                scope
                    .spawn(|| {
                        let _runtime = runtime.enter();
                        sandbox.restrict_current_thread()?;
                        spawn_here(spec)
                    })
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("the sandboxed spawn panicked")))
            })
        }
    }
}

fn spawn_here(spec: &ActionSpec) -> io::Result<Running> {
    let (program, args): (PathBuf, &[String]) = match &spec.command {
        Command::Shell(script) => ("/bin/sh".into(), std::slice::from_ref(script)),
        Command::Argv(argv) => {
            let Some((program, args)) = argv.split_first() else {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty argv"));
            };
            (resolve_program(program, spec)?, args)
        }
    };
    let mut cmd = tokio::process::Command::new(&program);
    if matches!(spec.command, Command::Shell(_)) {
        cmd.arg("-c");
    }
    cmd.args(args);
    cmd.current_dir(&spec.cwd)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    let mut child = cmd.spawn().map_err(|e| {
        let (program, cwd) = (program.display(), spec.cwd.display());
        io::Error::new(e.kind(), format!("cannot start {program} in {cwd}: {e}"))
    })?;
    let pid = child
        .id()
        .ok_or_else(|| io::Error::other("spawned child has no pid"))?;
    // The child cannot have been reaped yet, so its /proc entry exists.
    let start_time = process_start_time(pid)
        .ok_or_else(|| io::Error::other(format!("cannot read start time of pid {pid}")))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("stdout not piped"))?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| io::Error::other("stderr not piped"))?;
    Ok(Running {
        child,
        pid,
        start_time,
        timeout: spec.timeout,
        kill_grace: spec.kill_grace,
        stdout,
        stderr,
        filters: None,
    })
}

/// Finds the program to execute, using only the action's own `PATH`.
fn resolve_program(program: &str, spec: &ActionSpec) -> io::Result<PathBuf> {
    if program.contains('/') {
        return Ok(spec.cwd.join(program));
    }
    let path = spec
        .env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("cannot find program `{program}`: the action environment has no PATH"),
            )
        })?;
    for dir in path.split(':') {
        // An empty PATH entry means the working directory.
        let candidate = spec.cwd.join(dir).join(program);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("cannot find program `{program}` in the action's PATH ({path})"),
    ))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Why Ferry is killing the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    TimedOut,
    Cancelled,
}

/// Where the kill escalation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kill {
    /// Nothing sent.
    None,
    /// SIGTERM sent; SIGKILL at the instant.
    Termed(Instant),
    /// SIGKILL sent; the pipes are abandoned at the instant.
    Killed(Instant),
}

/// One output stream being copied to the log.
struct Pipe<R> {
    // Invariant: `None` once end of file (or a read error) was seen and the
    // filter and splitter were finished.
    reader: Option<R>,
    stream: Stream,
    chunk: Box<[u8]>,
    filtered: Vec<u8>,
    filter: Box<dyn OutputFilter>,
    splitter: LineSplitter,
}

impl<R: AsyncRead + Unpin> Pipe<R> {
    fn new(reader: R, stream: Stream, filter: Box<dyn OutputFilter>) -> Pipe<R> {
        Pipe {
            reader: Some(reader),
            stream,
            chunk: vec![0; CHUNK].into_boxed_slice(),
            filtered: Vec::with_capacity(CHUNK),
            filter,
            splitter: LineSplitter::new(),
        }
    }

    fn is_open(&self) -> bool {
        self.reader.is_some()
    }

    async fn read(&mut self) -> io::Result<usize> {
        match &mut self.reader {
            Some(r) => r.read(&mut self.chunk).await,
            None => std::future::pending().await,
        }
    }

    /// Handles the result of `read`: appends the lines to the log buffer.
    fn handle(&mut self, read: io::Result<usize>, log: &mut ActionLog<'_>) {
        let n = match read {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(stream = self.stream.as_str(), error = %e, "reading action output failed");
                0
            }
        };
        self.filtered.clear();
        if n == 0 {
            self.reader = None;
            self.filter.finish(&mut self.filtered);
        } else {
            self.filter.filter(&self.chunk[..n], &mut self.filtered);
        }
        let stream = self.stream;
        let mut emit = |seg: &[u8], c: bool| log.push(stream, seg, c);
        self.splitter.feed(&self.filtered, &mut emit);
        if n == 0 {
            self.splitter.finish(&mut emit);
        }
    }

    /// Copies what is left in the pipe's buffers (after everything else is
    /// dead) and closes it.
    fn abandon(&mut self, log: &mut ActionLog<'_>) {
        if self.reader.take().is_some() {
            self.filtered.clear();
            self.filter.finish(&mut self.filtered);
            let stream = self.stream;
            let mut emit = |seg: &[u8], c: bool| log.push(stream, seg, c);
            self.splitter.feed(&self.filtered, &mut emit);
            self.splitter.finish(&mut emit);
        }
    }
}

impl Running {
    /// The leader's pid, which is also the process-group id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The leader's start time in clock ticks since boot (`/proc/<pid>/stat`
    /// field 22); with the pid it identifies the process across pid reuse.
    pub fn start_time(&self) -> u64 {
        self.start_time
    }

    /// Passes stdout and stderr through these filters (one instance per
    /// stream) before they are split into lines; the default is [`Identity`].
    pub fn with_filters(
        mut self,
        stdout: Box<dyn OutputFilter>,
        stderr: Box<dyn OutputFilter>,
    ) -> Running {
        self.filters = Some((stdout, stderr));
        self
    }

    /// Copies output to `log` until the action has ended and its group is
    /// gone, and says how it ended.
    ///
    /// On timeout or cancellation the whole group gets SIGTERM, then SIGKILL
    /// after `kill_grace`; these steps are logged as `Sys` lines. After the
    /// leader exits by itself, leftover processes may hold the pipes open for
    /// 2 s at most; then, and in any case at the end, the group is SIGKILLed.
    /// Output is flushed to the log at least every 50 ms and at the end.
    ///
    /// `Err` means Ferry could not write the log (the group is then killed) —
    /// a failing command is an `Ok` outcome. Dropping the future before it
    /// completes leaves the group running.
    pub async fn wait(
        self,
        log: &mut ActionLog<'_>,
        cancel: CancellationToken,
    ) -> io::Result<Outcome> {
        let Running {
            mut child,
            pid,
            start_time: _,
            timeout,
            kill_grace,
            stdout,
            stderr,
            filters,
        } = self;
        let (out_filter, err_filter) =
            filters.unwrap_or_else(|| (Box::new(Identity), Box::new(Identity)));
        let pipes = (
            Pipe::new(stdout, Stream::Out, out_filter),
            Pipe::new(stderr, Stream::Err, err_filter),
        );
        let limits = Limits {
            pid,
            timeout,
            kill_grace,
        };
        let result = supervise(&mut child, limits, pipes, log, &cancel).await;
        if result.is_err() {
            signal_group(pid, Signal::SIGKILL);
            let _ = child.wait().await;
        }
        result
    }
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    pid: u32,
    timeout: Duration,
    kill_grace: Duration,
}

async fn supervise(
    child: &mut Child,
    limits: Limits,
    (mut out, mut err): (Pipe<ChildStdout>, Pipe<ChildStderr>),
    log: &mut ActionLog<'_>,
    cancel: &CancellationToken,
) -> io::Result<Outcome> {
    let Limits {
        pid,
        timeout,
        kill_grace,
    } = limits;
    let timeout_at = Instant::now().checked_add(timeout);
    let mut status: Option<ExitStatus> = None;
    let mut reason: Option<Reason> = None;
    let mut kill = Kill::None;
    let mut drain_until: Option<Instant> = None;

    loop {
        if status.is_some() && !out.is_open() && !err.is_open() {
            break;
        }
        let flush_at = log.run_log().flush_deadline();
        let running = status.is_none();
        tokio::select! {
            r = out.read(), if out.is_open() => {
                out.handle(r, log);
                log.run_log().maybe_flush().await?;
            }
            r = err.read(), if err.is_open() => {
                err.handle(r, log);
                log.run_log().maybe_flush().await?;
            }
            s = child.wait(), if running => {
                status = Some(s?);
                drain_until = Some(Instant::now() + DRAIN_AFTER_EXIT);
            }
            _ = sleep_until_opt(flush_at) => {
                log.run_log().flush().await?;
            }
            _ = sleep_until_opt(timeout_at), if running && kill == Kill::None => {
                reason = Some(Reason::TimedOut);
                let msg = format!(
                    "timed out after {}; sending SIGTERM to the process group",
                    fmt_duration(timeout)
                );
                log.line(Stream::Sys, &msg).await?;
                signal_group(pid, Signal::SIGTERM);
                kill = Kill::Termed(Instant::now() + kill_grace);
            }
            _ = cancel.cancelled(), if running && kill == Kill::None => {
                reason = Some(Reason::Cancelled);
                log.line(Stream::Sys, "cancelled; sending SIGTERM to the process group").await?;
                signal_group(pid, Signal::SIGTERM);
                kill = Kill::Termed(Instant::now() + kill_grace);
            }
            _ = sleep_until_opt(termed_until(kill)) => {
                let msg = format!(
                    "process group still running {} after SIGTERM; sending SIGKILL",
                    fmt_duration(kill_grace)
                );
                log.line(Stream::Sys, &msg).await?;
                signal_group(pid, Signal::SIGKILL);
                kill = Kill::Killed(Instant::now() + ABANDON_AFTER_KILL);
            }
            // The leader exited by itself but something still holds its
            // output open (a TERM'd group gets its grace instead).
            _ = sleep_until_opt(drain_until), if kill == Kill::None => {
                log.line(
                    Stream::Sys,
                    "the command exited but processes it started still hold its output open; killing the process group",
                )
                .await?;
                signal_group(pid, Signal::SIGKILL);
                kill = Kill::Killed(Instant::now() + ABANDON_AFTER_KILL);
            }
            _ = sleep_until_opt(killed_until(kill)), if !running => {
                // Only a process that left the group can still hold the
                // pipes; stop waiting for it.
                tracing::warn!(pid, "abandoning action output held open outside its process group");
                out.abandon(log);
                err.abandon(log);
            }
        }
    }

    // The leader is gone and the pipes are closed. Give processes that got
    // SIGTERM the rest of their grace to exit, then kill what is left.
    if let Kill::Termed(deadline) = kill {
        wait_group_gone(pid, deadline).await;
    }
    if signal_group(pid, Signal::SIGKILL) {
        // SIGKILL is asynchronous; make "wait returned" mean "nothing of the
        // group runs any more" (a process in uninterruptible sleep may take a
        // moment).
        wait_group_gone(pid, Instant::now() + Duration::from_secs(1)).await;
    }

    let status = status.expect("loop ends only after the leader was reaped");
    let outcome = match reason {
        Some(Reason::TimedOut) => Outcome::TimedOut,
        Some(Reason::Cancelled) => Outcome::Cancelled,
        None => match (status.code(), status.signal()) {
            (Some(code), _) => Outcome::Exited(code),
            (None, Some(sig)) => Outcome::Signaled(sig),
            (None, None) => Outcome::Exited(-1),
        },
    };
    log.flush().await?;
    Ok(outcome)
}

fn termed_until(kill: Kill) -> Option<Instant> {
    match kill {
        Kill::Termed(t) => Some(t),
        _ => None,
    }
}

fn killed_until(kill: Kill) -> Option<Instant> {
    match kill {
        Kill::Killed(t) => Some(t),
        _ => None,
    }
}

/// Sleeps until `at`, or forever if `None`.
async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Sends `signal` to process group `pgid`; returns whether the group existed.
/// A group that no longer exists is fine.
fn signal_group(pgid: u32, signal: Signal) -> bool {
    let Ok(raw) = i32::try_from(pgid) else {
        return false;
    };
    if raw <= 1 {
        // Never signal "every process" or init's group by accident.
        return false;
    }
    match killpg(Pid::from_raw(raw), signal) {
        Ok(()) => true,
        Err(Errno::ESRCH) => false,
        Err(e) => {
            tracing::warn!(pgid, signal = signal.as_str(), error = %e, "signalling process group failed");
            false
        }
    }
}

/// "30s", "1m30s", "1h", "250ms".
fn fmt_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let millis = d.subsec_millis();
    if secs == 0 {
        return format!("{millis}ms");
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if millis > 0 {
        out.push_str(&format!("{s}.{millis:03}s"));
    } else if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// The start time (clock ticks since boot, `/proc/<pid>/stat` field 22) of a
/// live or zombie process, or `None` if there is no such process.
pub fn process_start_time(pid: u32) -> Option<u64> {
    read_stat(pid).map(|s| s.start_time)
}

/// The fields of `/proc/<pid>/stat` Ferry uses.
struct Stat {
    state: char,
    pgrp: u32,
    start_time: u64,
}

fn read_stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

fn parse_stat(text: &str) -> Option<Stat> {
    // The command name (field 2) is in parentheses and may itself contain
    // spaces and parentheses, so fields are counted from the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // `fields[0]` is field 3 (state), so field N is `fields[N - 3]`.
    Some(Stat {
        state: fields.first()?.chars().next()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// Whether any process other than a zombie is in process group `pgid`.
fn group_alive(pgid: u32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(read_stat)
        .any(|s| s.pgrp == pgid && s.state != 'Z' && s.state != 'X')
}

/// Ends a process group recorded before a server crash: only if
/// `/proc/<pid>/stat` still shows a group leader with the recorded start time
/// (otherwise the pid was reused and the group is not ours). Sends SIGTERM,
/// waits up to `grace` for the group to exit, then SIGKILL. Returns whether a
/// group was found and signalled.
///
/// If the leader itself is already gone, its leftover group members cannot be
/// told apart from a later group that reused the pid, so nothing is killed here;
/// see [`kill_leaderless_group`].
pub async fn kill_recorded_group(pid: u32, start_time: u64, grace: Duration) -> bool {
    match read_stat(pid) {
        Some(s) if s.start_time == start_time && s.pgrp == pid => {}
        _ => return false,
    }
    terminate_group(pid, grace).await
}

/// Ends what is left of a recorded process group whose leader already exited: a
/// `terraform apply` whose server was killed dies on its next write to the dead
/// pipe, while the commands it started (`local-exec`, plugins) stay in the group.
/// The group id alone could belong to a later group that reused it, so the group
/// is signalled only if one of its members works inside `workdir` (the action's
/// own directory): a group id is not reused while the group has members, so that
/// member proves the whole group is the action's. Returns whether it was signalled.
pub async fn kill_leaderless_group(pgid: u32, workdir: &Path, grace: Duration) -> bool {
    let workdir = std::fs::canonicalize(workdir).unwrap_or_else(|_| workdir.to_owned());
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    let ours = dir
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            read_stat(*pid).is_some_and(|s| s.pgrp == pgid && s.state != 'Z' && s.state != 'X')
        })
        .any(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd"))
                .is_ok_and(|cwd| cwd.starts_with(&workdir))
        });
    ours && terminate_group(pgid, grace).await
}

/// SIGTERM to the group, SIGKILL after `grace`; whether the group was signalled.
async fn terminate_group(pgid: u32, grace: Duration) -> bool {
    if !signal_group(pgid, Signal::SIGTERM) {
        return false;
    }
    if wait_group_gone(pgid, Instant::now() + grace).await {
        return true;
    }
    // With the group still alive its id cannot have been reused.
    if signal_group(pgid, Signal::SIGKILL) {
        wait_group_gone(pgid, Instant::now() + Duration::from_secs(1)).await;
    }
    true
}

/// Polls until process group `pgid` has no live process or `deadline`
/// passes; returns whether it is gone.
async fn wait_group_gone(pgid: u32, deadline: Instant) -> bool {
    loop {
        if !group_alive(pgid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_command_name() {
        let text = "1234 (a) b (c) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100 18446744073709551615";
        let s = parse_stat(text).unwrap();
        assert_eq!((s.state, s.pgrp, s.start_time), ('S', 1234, 987654));
    }

    #[test]
    fn durations() {
        let cases = [
            (30_000, "30s"),
            (90_000, "1m30s"),
            (3_600_000, "1h"),
            (250, "250ms"),
            (1_500, "1.500s"),
            (0, "0ms"),
        ];
        for (ms, want) in cases {
            assert_eq!(fmt_duration(Duration::from_millis(ms)), want);
        }
    }

    #[test]
    fn describe() {
        assert_eq!(Outcome::Exited(2).describe(), "exit code 2");
        assert_eq!(
            Outcome::Signaled(9).describe(),
            "killed by signal 9 (SIGKILL)"
        );
        assert!(Outcome::Exited(0).success());
        assert!(!Outcome::Exited(1).success() && !Outcome::TimedOut.success());
    }
}
