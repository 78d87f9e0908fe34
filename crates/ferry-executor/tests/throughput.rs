//! Captures a large volume of ordinary lines and reports the rate (PRODUCT.md
//! §7: at least 100 MiB/s captured and stored). The rate is printed, not
//! asserted, since debug builds and loaded CI machines vary; the count is.
//! Measure with `cargo test --release -p ferry-executor --test throughput -- --nocapture`.

mod common;

use std::time::{Duration, Instant};

use ferry_executor::{Outcome, RunLog};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn capture_rate_of_ordinary_lines() {
    const LINES: usize = 1_000_000;
    // 99 characters plus newline: a typical wide terraform plan line.
    let text = "x".repeat(99);
    let dir = tempfile::tempdir().unwrap();
    let script = format!("yes {text} | head -n {LINES}");
    let spec = common::shell(&script, dir.path(), Duration::from_secs(300));
    let path = dir.path().join("run.log");
    let mut log = RunLog::open(&path).await.unwrap();
    let started = Instant::now();
    let outcome = ferry_executor::spawn(&spec)
        .unwrap()
        .wait(&mut log.action(1), CancellationToken::new())
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(outcome, Outcome::Exited(0));
    let mib = (LINES * 100) as f64 / 1048576.0;
    eprintln!(
        "{LINES} lines ({mib:.0} MiB) in {elapsed:?}: {:.0} MiB/s of output, log file {} MiB",
        mib / elapsed.as_secs_f64(),
        log.len() / 1048576
    );
    let file = std::fs::read(&path).unwrap();
    assert_eq!(file.iter().filter(|&&b| b == b'\n').count(), LINES);
    let last = file[..file.len() - 1]
        .rsplit(|&b| b == b'\n')
        .next()
        .unwrap();
    let last: ferry_executor::LogLine = serde_json::from_slice(last).unwrap();
    assert_eq!(
        (last.seq, last.n, last.text.as_str()),
        (LINES as u64, LINES as u64, text.as_str())
    );
}
