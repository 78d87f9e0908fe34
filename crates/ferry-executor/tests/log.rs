//! The run log file: writing, reading in pages, following, torn records and
//! reopening after a restart.

mod common;

use std::io::Write;

use ferry_executor::{read_log, LogChunk, LogLine, RunLog, Stream};

async fn write_sample(log: &mut RunLog) {
    let mut a = log.action(1);
    a.line(Stream::Sys, "$ terraform plan").await.unwrap();
    a.line(Stream::Out, "line \"two\" \\ \u{1} é")
        .await
        .unwrap();
    a.line(Stream::Err, "three").await.unwrap();
    a.flush().await.unwrap();
    let mut b = log.action(2);
    b.line(Stream::Out, "b1").await.unwrap();
    b.line(Stream::Out, "b2").await.unwrap();
    b.flush().await.unwrap();
}

fn summary(lines: &[LogLine]) -> Vec<(u64, i64, u64, Stream, &str)> {
    lines
        .iter()
        .map(|l| (l.seq, l.action, l.n, l.stream, l.text.as_str()))
        .collect()
}

#[tokio::test]
async fn lines_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/run.log");
    let mut log = RunLog::open(&path).await.unwrap();
    write_sample(&mut log).await;
    let file_len = std::fs::metadata(&path).unwrap().len();
    assert_eq!(log.len(), file_len);

    let chunk = read_log(&path, 0, 100, None).await.unwrap();
    assert_eq!(chunk.next_offset, file_len);
    assert_eq!(
        summary(&chunk.lines),
        [
            (1, 1, 1, Stream::Sys, "$ terraform plan"),
            (2, 1, 2, Stream::Out, "line \"two\" \\ \u{1} é"),
            (3, 1, 3, Stream::Err, "three"),
            (4, 2, 1, Stream::Out, "b1"),
            (5, 2, 2, Stream::Out, "b2"),
        ]
    );
    let raw = std::fs::read_to_string(&path).unwrap();
    assert!(
        raw.starts_with(r#"{"seq":1,"action":1,"n":1,"ts":""#),
        "{raw}"
    );
    assert!(!raw.contains("\"c\""), "c is omitted when false");
    assert_eq!(raw.lines().count(), 5);
}

#[test]
fn continuation_flag_serializes_only_when_set() {
    let mut line = LogLine {
        seq: 1,
        action: 1,
        n: 1,
        ts: chrono::DateTime::from_timestamp_millis(1_700_000_000_123).unwrap(),
        stream: Stream::Out,
        text: "x".to_owned(),
        c: true,
    };
    let json = serde_json::to_string(&line).unwrap();
    assert_eq!(
        json,
        r#"{"seq":1,"action":1,"n":1,"ts":"2023-11-14T22:13:20.123Z","stream":"out","text":"x","c":true}"#
    );
    assert_eq!(serde_json::from_str::<LogLine>(&json).unwrap(), line);
    line.c = false;
    let json = serde_json::to_string(&line).unwrap();
    assert!(!json.contains("\"c\""));
    assert_eq!(serde_json::from_str::<LogLine>(&json).unwrap(), line);
}

#[tokio::test]
async fn pages_resume_at_next_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.log");
    let mut log = RunLog::open(&path).await.unwrap();
    write_sample(&mut log).await;

    let mut seqs = Vec::new();
    let mut offset = 0;
    loop {
        let chunk = read_log(&path, offset, 2, None).await.unwrap();
        assert!(chunk.lines.len() <= 2);
        if chunk.lines.is_empty() {
            break;
        }
        seqs.push(chunk.lines.iter().map(|l| l.seq).collect::<Vec<_>>());
        offset = chunk.next_offset;
    }
    assert_eq!(seqs, [vec![1, 2], vec![3, 4], vec![5]]);
    assert_eq!(offset, log.len());

    // Filtered by action: offsets still advance over other actions' records.
    let only2 = read_log(&path, 0, 1, Some(2)).await.unwrap();
    assert_eq!(summary(&only2.lines), [(4, 2, 1, Stream::Out, "b1")]);
    let rest = read_log(&path, only2.next_offset, 10, Some(2))
        .await
        .unwrap();
    assert_eq!(summary(&rest.lines), [(5, 2, 2, Stream::Out, "b2")]);
    assert_eq!(rest.next_offset, log.len());
    let none = read_log(&path, 0, 10, Some(99)).await.unwrap();
    assert_eq!(
        none,
        LogChunk {
            lines: vec![],
            next_offset: log.len()
        }
    );
}

#[tokio::test]
async fn missing_file_and_offset_past_end_read_as_empty() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.log");
    assert_eq!(
        read_log(&missing, 0, 10, None).await.unwrap(),
        LogChunk {
            lines: vec![],
            next_offset: 0
        }
    );

    let path = dir.path().join("run.log");
    let mut log = RunLog::open(&path).await.unwrap();
    write_sample(&mut log).await;
    let past = log.len() + 1000;
    assert_eq!(
        read_log(&path, past, 10, None).await.unwrap(),
        LogChunk {
            lines: vec![],
            next_offset: past
        }
    );
    let at_end = log.len();
    assert_eq!(
        read_log(&path, at_end, 10, None).await.unwrap(),
        LogChunk {
            lines: vec![],
            next_offset: at_end
        }
    );
}

#[tokio::test]
async fn torn_record_is_hidden_then_truncated_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.log");
    let mut log = RunLog::open(&path).await.unwrap();
    write_sample(&mut log).await;
    let good_len = log.len();
    drop(log);

    // A crash in the middle of a write.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(br#"{"seq":6,"action":2,"n":3,"ts":"2025-01"#)
        .unwrap();
    drop(f);

    let chunk = read_log(&path, 0, 100, None).await.unwrap();
    assert_eq!(chunk.lines.len(), 5);
    assert_eq!(chunk.next_offset, good_len);
    let tail = read_log(&path, good_len, 100, None).await.unwrap();
    assert_eq!(
        tail,
        LogChunk {
            lines: vec![],
            next_offset: good_len
        }
    );

    let mut log = RunLog::open(&path).await.unwrap();
    assert_eq!(log.len(), good_len);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), good_len);
    let mut a = log.action(2);
    a.line(Stream::Out, "after restart").await.unwrap();
    a.flush().await.unwrap();

    let lines = common::read_all(&path).await;
    assert_eq!(lines.len(), 6);
    assert_eq!(
        summary(&lines[5..]),
        [(6, 2, 1, Stream::Out, "after restart")]
    );
}

#[tokio::test]
async fn reopen_continues_seq() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.log");
    let mut log = RunLog::open(&path).await.unwrap();
    write_sample(&mut log).await;
    drop(log);
    let mut log = RunLog::open(&path).await.unwrap();
    write_sample(&mut log).await;
    let seqs: Vec<u64> = common::read_all(&path)
        .await
        .iter()
        .map(|l| l.seq)
        .collect();
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
}

#[tokio::test]
async fn subscribe_reports_committed_length() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.log");
    let mut log = RunLog::open(&path).await.unwrap();
    let mut len = log.subscribe();
    assert_eq!(*len.borrow_and_update(), 0);
    let mut a = log.action(1);
    a.line(Stream::Out, "hello").await.unwrap();
    // Buffered, not yet committed.
    assert!(!len.has_changed().unwrap());
    a.flush().await.unwrap();
    assert!(len.has_changed().unwrap());
    let committed = *len.borrow_and_update();
    assert_eq!(committed, std::fs::metadata(&path).unwrap().len());
    assert_eq!(committed, log.len());
    assert!(committed > 0);
}
