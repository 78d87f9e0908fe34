//! The fixtures every end-to-end test uses: a real `ferry server` process on 127.0.0.1:0 with
//! its own temp data dir, the real `ferry` CLI pointed at it, process and SQLite helpers.
//!
//! Nothing is mocked: the server is the binary cargo built, Terraform is the test Terraform
//! (`ferry_test_support::terraform_dir`), repositories are real git repositories.

#![allow(dead_code)]

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use ferry_test_support::{path_with_terraform, wait_for, GitRepo};
use serde_json::Value;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_ferry");

/// Variables that would point the binary at something other than the test's own server.
const FERRY_VARS: &[&str] = &[
    "FERRY_SERVER",
    "FERRY_TOKEN",
    "FERRY_DATA_DIR",
    "FERRY_LISTEN",
    "FERRY_CONFIG",
    "FERRY_MASTER_KEY",
    "FERRY_MASTER_KEY_FILE",
    "FERRY_SHUTDOWN_GRACE",
    "FERRY_KILL_GRACE",
    "FERRY_LOG",
];

/// How long a single CLI call may take before the test gives up on it.
const CLI_TIMEOUT: Duration = Duration::from_secs(120);

/// What a finished `ferry` invocation gave.
pub(crate) struct Out {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Out {
    /// Asserts exit 0 and returns self.
    #[track_caller]
    pub(crate) fn ok(self) -> Out {
        assert_eq!(self.code, 0, "ferry failed: {self:?}");
        self
    }

    #[track_caller]
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }
}

/// Runs a command to completion with a deadline, capturing both streams.
pub(crate) fn output(mut cmd: Command, timeout: Duration) -> Out {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ferry");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = out_t.join().expect("stdout reader");
    let stderr = err_t.join().expect("stderr reader");
    Out {
        code: exit_code(status),
        stdout,
        stderr,
    }
}

pub(crate) fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// A `ferry` command with no `FERRY_*` variables inherited from the test's environment.
pub(crate) fn ferry_command(cwd: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    for var in FERRY_VARS {
        cmd.env_remove(var);
    }
    cmd.current_dir(cwd);
    cmd
}

/// Runs `ferry ARGS` with no server involved (`validate`, `audit verify`...).
pub(crate) fn ferry(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = ferry_command(cwd);
    cmd.args(args).envs(env.iter().copied());
    output(cmd, CLI_TIMEOUT)
}

/// A running `ferry server` on 127.0.0.1:0 with a data dir of its own.
pub(crate) struct Server {
    /// Holds `data/` and the server's logs; removed on drop.
    root: tempfile::TempDir,
    pub(crate) data: PathBuf,
    path_var: String,
    args: Vec<String>,
    child: Option<Child>,
    pub(crate) url: String,
    starts: u32,
}

impl Server {
    /// A server whose PATH has the test Terraform first.
    pub(crate) fn start() -> Server {
        Server::start_with(path_with_terraform(), &[])
    }

    /// A server with a given PATH and extra `ferry server` flags.
    pub(crate) fn start_with(path_var: String, args: &[&str]) -> Server {
        let root = tempfile::Builder::new()
            .prefix("ferry-e2e-")
            .tempdir()
            .expect("temp dir");
        Server::spawn_in(root, path_var, args)
    }

    /// A server on `root/data` (which the test may have prepared).
    pub(crate) fn start_in(root: tempfile::TempDir) -> Server {
        Server::spawn_in(root, path_with_terraform(), &[])
    }

    fn spawn_in(root: tempfile::TempDir, path_var: String, args: &[&str]) -> Server {
        let data = root.path().join("data");
        let mut server = Server {
            root,
            data,
            path_var,
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            child: None,
            url: String::new(),
            starts: 0,
        };
        server.spawn();
        server
    }

    pub(crate) fn root(&self) -> &Path {
        self.root.path()
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "the server is already running");
        let url_file = self.data.join("server.url");
        let _ = std::fs::remove_file(&url_file);
        self.starts += 1;
        let log_path = self.root.path().join(format!("server-{}.log", self.starts));
        let log = File::create(&log_path).expect("server log");
        let mut cmd = ferry_command(self.root.path());
        cmd.args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&self.data)
            .args(&self.args)
            .env("PATH", &self.path_var)
            .env("FERRY_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log);
        self.child = Some(cmd.spawn().expect("spawn ferry server"));
        let child = self.child.as_mut().expect("child");
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("http client");
        let url = wait_for("the server to be ready", Duration::from_secs(30), || {
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!(
                    "ferry server exited early ({status}):\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            let url = std::fs::read_to_string(&url_file).ok()?.trim().to_owned();
            let ready = http.get(format!("{url}/readyz")).send().ok()?;
            ready.status().is_success().then_some(url)
        });
        assert!(
            url.starts_with("http://127.0.0.1:"),
            "the server must listen on loopback only: {url}"
        );
        self.url = url;
    }

    pub(crate) fn pid(&self) -> i32 {
        self.child.as_ref().expect("the server is running").id() as i32
    }

    /// `kill -9` the server (its action process groups are left behind, as in a real crash).
    pub(crate) fn kill9(&mut self) {
        let mut child = self.child.take().expect("the server is running");
        child.kill().expect("SIGKILL the server");
        child.wait().expect("reap the server");
    }

    /// Sends SIGTERM; the server is still tracked until `wait_exit`.
    pub(crate) fn sigterm(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("SIGTERM the server");
    }

    /// Waits for the server process to exit and returns its exit code.
    #[track_caller]
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let child = self.child.as_mut().expect("the server is running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return exit_code(status);
            }
            if Instant::now() > deadline {
                panic!(
                    "the server did not exit within {timeout:?}:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server gracefully (no action should be running).
    pub(crate) fn stop(&mut self) {
        self.sigterm();
        let code = self.wait_exit(Duration::from_secs(30));
        assert_eq!(code, 0, "the server did not stop cleanly:\n{}", self.logs());
    }

    /// Starts the server again on the same data dir.
    pub(crate) fn restart(&mut self) {
        self.spawn();
    }

    /// Everything the server processes printed, for failure messages.
    pub(crate) fn logs(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                let text =
                    std::fs::read_to_string(self.root.path().join(format!("server-{n}.log")))
                        .unwrap_or_default();
                format!("=== server start {n}\n{text}")
            })
            .collect()
    }

    /// `ferry --data-dir DATA ARGS` (server URL and admin token found in the data dir).
    pub(crate) fn cli(&self, args: &[&str]) -> Out {
        self.cli_env(args, &[])
    }

    pub(crate) fn cli_env(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        output(self.command(args, env), CLI_TIMEOUT)
    }

    /// The command `cli_env` would run, for spawning in the background.
    pub(crate) fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = ferry_command(self.root.path());
        cmd.arg("--data-dir")
            .arg(&self.data)
            .args(args)
            .envs(env.iter().copied());
        cmd
    }

    pub(crate) fn add_project(&self, name: &str, repo: &GitRepo) {
        let out = self
            .cli(&["project", "add", name, &repo.path().display().to_string()])
            .ok();
        assert!(out.stdout.contains(name), "{out:?}");
    }

    /// Triggers a run (not waiting) and returns its id.
    pub(crate) fn trigger(&self, project: &str, extra: &[&str]) -> i64 {
        let mut args = vec!["run", project, "--output", "json"];
        args.extend_from_slice(extra);
        let out = self.cli(&args).ok();
        out.json()["id"]
            .as_i64()
            .unwrap_or_else(|| panic!("no run id: {out:?}"))
    }

    /// Creates a named (non-admin) token and returns its secret.
    pub(crate) fn create_token(&self, name: &str) -> String {
        let out = self.cli(&["token", "create", "--name", name]).ok();
        let secret = out.stdout.trim().to_owned();
        assert!(
            secret.starts_with("ferry_") && !secret.contains('\n'),
            "{out:?}"
        );
        secret
    }

    /// `ferry show RUN --output json`.
    #[track_caller]
    pub(crate) fn show(&self, run: i64) -> Value {
        self.cli(&["show", &run.to_string(), "--output", "json"])
            .ok()
            .json()
    }

    /// Polls `show` until `check` holds; panics (with the run and the server log) after
    /// `timeout`, or as soon as the run ends without `check` holding.
    #[track_caller]
    pub(crate) fn wait_run(
        &self,
        run: i64,
        what: &str,
        timeout: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let detail = self.show(run);
            if check(&detail) {
                return detail;
            }
            if is_finished(&detail) {
                panic!(
                    "run {run} ended before {what}:\n{detail:#}\n{}",
                    self.logs()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}:\n{detail:#}\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    #[track_caller]
    pub(crate) fn wait_status(&self, run: i64, status: &str, timeout: Duration) -> Value {
        self.wait_run(run, &format!("run {run} to be {status}"), timeout, |d| {
            d["status"] == status
        })
    }

    /// The environments the server reports as held, with their holder.
    pub(crate) fn holders(&self) -> Vec<(String, Option<i64>)> {
        let queue = self.cli(&["queue", "--output", "json"]).ok().json();
        queue
            .as_array()
            .expect("queue is a list")
            .iter()
            .map(|q| {
                (
                    q["environment"].as_str().unwrap_or_default().to_owned(),
                    q["held_by"].as_i64(),
                )
            })
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // A failed test may leave actions of its runs behind; end them (only processes
        // working inside this server's data dir, which this test started).
        kill_processes_under(&self.data);
    }
}

/// SIGKILLs every process whose working directory is inside `dir`.
pub(crate) fn kill_processes_under(dir: &Path) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if let Ok(cwd) = std::fs::read_link(entry.path().join("cwd")) {
            if cwd.starts_with(dir) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

pub(crate) fn is_finished(detail: &Value) -> bool {
    matches!(
        detail["status"].as_str(),
        Some("Succeeded" | "Failed" | "Stopped" | "Cancelled" | "Superseded" | "Interrupted")
    )
}

/// The stage of `environment` of `kind` in a `show --output json` document.
#[track_caller]
pub(crate) fn stage<'a>(detail: &'a Value, environment: &str, kind: &str) -> &'a Value {
    detail["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .find(|s| s["environment"] == environment && s["kind"] == kind)
        .unwrap_or_else(|| panic!("no {environment}/{kind} stage in {detail:#}"))
}

/// The first action of a stage.
#[track_caller]
pub(crate) fn action<'a>(detail: &'a Value, environment: &str, kind: &str) -> &'a Value {
    &stage(detail, environment, kind)["actions"][0]
}

/// The plan summary of `environment`.
#[track_caller]
pub(crate) fn plan<'a>(detail: &'a Value, environment: &str) -> &'a Value {
    detail["plans"]
        .as_array()
        .expect("plans")
        .iter()
        .find(|p| p["environment"] == environment)
        .unwrap_or_else(|| panic!("no plan for {environment} in {detail:#}"))
}

/// A git repository with the given files committed on `main`.
pub(crate) fn repo_with(files: &[(&str, &str)]) -> GitRepo {
    let repo = GitRepo::new();
    for (path, text) in files {
        repo.write(path, text);
    }
    repo.commit("initial");
    repo
}

/// A configuration whose apply runs `command` through a local-exec provisioner, so a test
/// can catch `terraform apply` mid-way by the command's (unique) marker.
pub(crate) fn slow_apply_tf(command: &str) -> String {
    format!("resource \"terraform_data\" \"slow\" {{\n  provisioner \"local-exec\" {{\n    command = \"{command}\"\n  }}\n}}\n")
}

/// Runs SQL statements against a Ferry database directly, as an attacker with file access
/// would (the server should be stopped).
#[track_caller]
pub(crate) fn sql(db: &Path, statements: &[&str]) {
    if let Err(e) = try_sql(db, statements) {
        panic!("{e}");
    }
}

/// Like `sql`, returning the first failure.
pub(crate) fn try_sql(db: &Path, statements: &[&str]) -> Result<(), String> {
    block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect_with(
            &sqlx::sqlite::SqliteConnectOptions::new().filename(db),
        )
        .await
        .map_err(|e| format!("open {}: {e}", db.display()))?;
        for statement in statements {
            sqlx::query(statement)
                .execute(&mut conn)
                .await
                .map_err(|e| format!("{statement}: {e}"))?;
        }
        conn.close().await.map_err(|e| e.to_string())
    })
}

/// One row of the `audit` table.
#[derive(Debug, Clone)]
pub(crate) struct AuditRow {
    pub(crate) seq: i64,
    pub(crate) actor: String,
    pub(crate) action: String,
    pub(crate) target: String,
    pub(crate) outcome: String,
    pub(crate) source: String,
    pub(crate) details: String,
}

/// The audit table, oldest first, read directly from SQLite.
pub(crate) fn audit_rows(db: &Path) -> Vec<AuditRow> {
    block_on(async {
        use sqlx::{Connection, Row};
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(db)
            .read_only(true);
        let mut conn = sqlx::SqliteConnection::connect_with(&options)
            .await
            .expect("open the database");
        let rows = sqlx::query(
            "SELECT seq, actor, action, target, outcome, source, details FROM audit ORDER BY seq",
        )
        .fetch_all(&mut conn)
        .await
        .expect("read the audit table");
        let rows = rows
            .iter()
            .map(|r| AuditRow {
                seq: r.get(0),
                actor: r.get(1),
                action: r.get(2),
                target: r.get(3),
                outcome: r.get(4),
                source: r.get(5),
                details: r.get(6),
            })
            .collect();
        conn.close().await.expect("close");
        rows
    })
}

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

/// Copies the files of a data dir (database, key, checkpoint), not its subdirectories.
/// A SQLite `-wal`/`-shm` file that vanishes meanwhile (its last connection closed) is skipped.
pub(crate) fn copy_data_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("mkdir");
    for entry in std::fs::read_dir(src).expect("read data dir").flatten() {
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            match std::fs::copy(entry.path(), dst.join(entry.file_name())) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => panic!("copy {}: {e}", entry.path().display()),
            }
        }
    }
}

/// Asserts that no process with `marker` in its command line is left, allowing `within`
/// for one that was just signalled to go away.
#[track_caller]
pub(crate) fn assert_gone(marker: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while ferry_test_support::process_running(marker) {
        assert!(
            Instant::now() < deadline,
            "a `{marker}` process is still running"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Pids of live processes whose command line contains `marker`.
pub(crate) fn pids_matching(marker: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<i32>().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            String::from_utf8_lossy(&cmdline)
                .replace('\0', " ")
                .contains(marker)
                .then_some(pid)
        })
        .collect()
}

/// A `ferry` process running in the background (`run --wait`, `logs -f`) whose output
/// lines are collected as they arrive, so a test can wait for what it printed so far.
pub(crate) struct Background {
    child: Child,
    /// stdout lines, stderr lines.
    lines: std::sync::Arc<std::sync::Mutex<[Vec<String>; 2]>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Background {
    pub(crate) fn spawn(mut cmd: Command) -> Background {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ferry");
        let lines = std::sync::Arc::new(std::sync::Mutex::new([Vec::new(), Vec::new()]));
        let stdout: Box<dyn Read + Send> = Box::new(child.stdout.take().expect("stdout"));
        let stderr: Box<dyn Read + Send> = Box::new(child.stderr.take().expect("stderr"));
        let readers = [stdout, stderr]
            .into_iter()
            .enumerate()
            .map(|(i, stream)| {
                let lines = lines.clone();
                std::thread::spawn(move || {
                    use std::io::BufRead;
                    for line in std::io::BufReader::new(stream)
                        .lines()
                        .map_while(Result::ok)
                    {
                        lines.lock().expect("lines")[i].push(line);
                    }
                })
            })
            .collect();
        Background {
            child,
            lines,
            readers,
        }
    }

    /// Waits until a line of stderr (or stdout) contains `needle`.
    #[track_caller]
    pub(crate) fn wait_line(&self, stderr: bool, needle: &str, timeout: Duration) {
        let i = usize::from(stderr);
        wait_for(&format!("a line with `{needle}`"), timeout, || {
            self.lines.lock().expect("lines")[i]
                .iter()
                .any(|l| l.contains(needle))
                .then_some(())
        });
    }

    /// Waits for the process to exit.
    #[track_caller]
    pub(crate) fn finish(mut self, timeout: Duration) -> Out {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "ferry did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        for reader in self.readers.drain(..) {
            reader.join().expect("reader");
        }
        let [stdout, stderr] = std::mem::take(&mut *self.lines.lock().expect("lines"));
        Out {
            code: exit_code(status),
            stdout: stdout.join("\n"),
            stderr: stderr.join("\n"),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A command line unique to this test process, e.g. `sleep 47.31` → `sleep 47.310012345`:
/// tests find (and assert the absence of) their actions' processes by it, so neither a
/// parallel test nor another copy of this suite may share it. Fixed width, so no marker
/// is a prefix of another.
pub(crate) fn marker(base: &str) -> String {
    format!("{base}{:07}", std::process::id())
}
