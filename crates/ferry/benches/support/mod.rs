//! What the benches share: starting the real `ferry server` on 127.0.0.1:0 in a temp data
//! dir, with none of the caller's `FERRY_*` variables, and waiting until it answers.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

/// The server process: SIGTERM on drop (a graceful stop), SIGKILL if it lingers past 10 s.
pub(crate) struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        if let Ok(pid) = i32::try_from(self.0.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A server process that answers `/healthz`, with its URL and bootstrap admin token.
pub(crate) struct Launched {
    pub(crate) process: Process,
    pub(crate) url: String,
    pub(crate) token: String,
    pub(crate) data_dir: PathBuf,
    pub(crate) tmp: tempfile::TempDir,
}

/// Starts `ferry server` with `path_var` as its PATH and waits (30 s at most) until it serves.
pub(crate) fn launch(path_var: &str, prefix: &str) -> Result<Launched> {
    let tmp = tempfile::Builder::new().prefix(prefix).tempdir()?;
    let data_dir = tmp.path().join("data");
    let log = File::create(tmp.path().join("server.log"))?;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("FERRY_") {
            cmd.env_remove(key);
        }
    }
    let mut child = cmd
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir)
        .current_dir(tmp.path())
        .env("PATH", path_var)
        .env("FERRY_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("spawning ferry server")?;
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let log_path = tmp.path().join("server.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "ferry server exited with {status}; see {}",
                log_path.display()
            );
        }
        let url = std::fs::read_to_string(data_dir.join("server.url")).unwrap_or_default();
        let token = std::fs::read_to_string(data_dir.join("admin.token")).unwrap_or_default();
        let (url, token) = (url.trim().to_owned(), token.trim().to_owned());
        if !url.is_empty()
            && !token.is_empty()
            && http
                .get(format!("{url}/healthz"))
                .send()
                .is_ok_and(|r| r.status().is_success())
        {
            return Ok(Launched {
                process: Process(child),
                url,
                token,
                data_dir,
                tmp,
            });
        }
        ensure!(
            Instant::now() < deadline,
            "ferry server did not come up in 30 s; see {}",
            log_path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
