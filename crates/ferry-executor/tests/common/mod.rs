//! Helpers shared by the executor's integration tests: run a real command into
//! a real run log and read it back, and inspect process groups via /proc.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_executor::{read_log, ActionSpec, Command, LogLine, Outcome, RunLog, Stream};
use tokio_util::sync::CancellationToken;

pub const PATH: &str = "/usr/bin:/bin";

pub fn shell(script: &str, cwd: &Path, timeout: Duration) -> ActionSpec {
    ActionSpec::new(
        Command::Shell(script.to_owned()),
        cwd,
        vec![("PATH".to_owned(), PATH.to_owned())],
        timeout,
    )
}

/// The result of running one action into a fresh run log.
pub struct Ran {
    pub outcome: Outcome,
    pub lines: Vec<LogLine>,
    pub pid: u32,
    pub elapsed: Duration,
    pub log_path: PathBuf,
}

impl Ran {
    /// Texts of the lines of one stream.
    pub fn texts(&self, stream: Stream) -> Vec<String> {
        self.lines
            .iter()
            .filter(|l| l.stream == stream)
            .map(|l| l.text.clone())
            .collect()
    }
}

pub async fn run(dir: &Path, spec: &ActionSpec, cancel: CancellationToken) -> Ran {
    let log_path = dir.join("logs").join("run.log");
    let mut log = RunLog::open(&log_path).await.unwrap();
    let mut action = log.action(1);
    let started = std::time::Instant::now();
    let running = ferry_executor::spawn(spec).unwrap();
    let pid = running.pid();
    let outcome = running.wait(&mut action, cancel).await.unwrap();
    let elapsed = started.elapsed();
    let lines = read_all(&log_path).await;
    Ran {
        outcome,
        lines,
        pid,
        elapsed,
        log_path,
    }
}

pub async fn read_all(path: &Path) -> Vec<LogLine> {
    let mut lines = Vec::new();
    let mut offset = 0;
    loop {
        let chunk = read_log(path, offset, 10_000, None).await.unwrap();
        if chunk.lines.is_empty() {
            assert_eq!(chunk.next_offset, offset);
            return lines;
        }
        assert!(chunk.next_offset > offset);
        offset = chunk.next_offset;
        lines.extend(chunk.lines);
    }
}

/// Pids of live (non-zombie) processes in process group `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let rest = &stat[stat.rfind(')').unwrap() + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let (state, pgrp) = (fields[0], fields[2].parse::<u32>().unwrap());
        if pgrp == pgid && state != "Z" && state != "X" {
            pids.push(pid);
        }
    }
    pids
}

/// Waits up to `limit` for group `pgid` to have no live process.
pub async fn group_gone_within(pgid: u32, limit: Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if group_members(pgid).is_empty() {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether `pid` is a live (non-zombie) process.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat[stat.rfind(')').unwrap() + 1..]
                .split_whitespace()
                .next()
                .unwrap();
            state != "Z" && state != "X"
        }
        Err(_) => false,
    }
}

/// Pids printed by the action (`echo $!`) on stdout.
pub fn printed_pids(ran: &Ran) -> Vec<u32> {
    ran.texts(ferry_executor::Stream::Out)
        .iter()
        .filter_map(|t| t.parse().ok())
        .collect()
}
