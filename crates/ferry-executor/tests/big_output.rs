//! A 100 MB line without a newline must be stored in bounded memory, as
//! 64 KiB continuation segments. Its own test binary, so the peak-RSS
//! measurement is not disturbed by other tests.

mod common;

use std::io::BufRead;
use std::time::Duration;

use ferry_executor::{LogLine, Outcome, MAX_LINE};
use tokio_util::sync::CancellationToken;

const TOTAL: usize = 100_000_000;

/// Peak resident set size of this process, in KiB.
fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_100_mb_line_is_stored_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let script = format!(r"head -c {TOTAL} /dev/zero | tr '\0' a");
    let spec = common::shell(&script, dir.path(), Duration::from_secs(300));
    let before = vm_hwm_kib();

    let log_path = dir.path().join("run.log");
    let mut log = ferry_executor::RunLog::open(&log_path).await.unwrap();
    let started = std::time::Instant::now();
    let running = ferry_executor::spawn(&spec).unwrap();
    let outcome = running
        .wait(&mut log.action(1), CancellationToken::new())
        .await
        .unwrap();
    let elapsed = started.elapsed();
    let grew_kib = vm_hwm_kib().saturating_sub(before);
    assert_eq!(outcome, Outcome::Exited(0));
    eprintln!(
        "100 MB line: {elapsed:?} ({:.0} MiB/s), peak RSS grew by {grew_kib} KiB",
        TOTAL as f64 / 1048576.0 / elapsed.as_secs_f64()
    );
    assert!(grew_kib < 32 * 1024, "peak RSS grew by {grew_kib} KiB");

    // Read back one record at a time, again without holding the whole line.
    let file = std::io::BufReader::new(std::fs::File::open(&log_path).unwrap());
    let mut segments = 0;
    let mut bytes = 0;
    for (i, record) in file.lines().enumerate() {
        let line: LogLine = serde_json::from_str(&record.unwrap()).unwrap();
        assert_eq!(line.c, i > 0, "segment {i}");
        assert!(line.text.len() <= MAX_LINE);
        assert!(line.text.bytes().all(|b| b == b'a'));
        assert_eq!(line.n, i as u64 + 1);
        segments += 1;
        bytes += line.text.len();
    }
    assert_eq!(bytes, TOTAL);
    assert_eq!(segments, TOTAL.div_ceil(MAX_LINE));
    assert_eq!(segments, 1526);
}
