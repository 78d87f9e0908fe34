//! Run logs over the API: paging by `next_offset` returns every line exactly once and in
//! order, `complete` is only true once the run is over, and the SSE stream delivers lines
//! while an action is still running, ends with the run's final status, and resumes from
//! `Last-Event-ID` without repeating lines.

use std::time::Duration;

use ferry_api::{LogLine, LogPage};
use futures::StreamExt;

use crate::common::{command_action, TestServer, RUN_TIMEOUT};

const CHATTY_YAML: &str = "version: 1\nname: chatty\nterraform: { dir: . }\nstages:\n  test:\n    - \"for i in 1 2 3 4 5; do echo line-$i; sleep 0.3; done\"\n";

async fn chatty_project(server: &mut TestServer) {
    server
        .project(
            "chatty",
            &[
                ("ferry.yaml", CHATTY_YAML),
                ("main.tf", &ferry_test_support::terraform_data_config(1)),
            ],
        )
        .await;
}

async fn trigger(server: &TestServer) -> i64 {
    server
        .admin
        .runs_create("chatty", &ferry_api::RunCreate::default())
        .await
        .unwrap()
        .id
}

/// Every line of a finished run in one page. The log is complete once the run's driver
/// has let go of it, a moment after the run's final status is stored.
async fn all_lines(server: &TestServer, id: i64) -> Vec<LogLine> {
    for _ in 0..100 {
        let page = server.admin.logs_get(id, 0, 10_000).await.unwrap();
        if page.complete {
            return page.lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the log of finished run {id} never became complete");
}

fn texts(lines: &[LogLine]) -> Vec<&str> {
    lines.iter().map(|l| l.text.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_by_next_offset_returns_every_line_once_and_completes_after_the_run() {
    let mut server = TestServer::start().await;
    chatty_project(&mut server).await;
    let id = trigger(&server).await;

    // While the run executes, no page claims to be complete, short or not.
    let early = server.admin.logs_get(id, 0, 10_000).await.unwrap();
    assert!(!early.complete, "complete before the run ended: {early:?}");
    let detail = server.wait_status(id, "Succeeded", RUN_TIMEOUT).await;

    let full = all_lines(&server, id).await;
    let seqs: Vec<u64> = full.iter().map(|l| l.seq).collect();
    assert_eq!(
        seqs,
        (1..=full.len() as u64).collect::<Vec<_>>(),
        "seq must count 1, 2, 3, ..."
    );
    // The command's output is there, in order, attributed to its action.
    let action = command_action(&detail).id;
    let out: Vec<&LogLine> = full
        .iter()
        .filter(|l| l.action == action && l.stream == "out")
        .collect();
    assert_eq!(
        out.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(),
        ["line-1", "line-2", "line-3", "line-4", "line-5"]
    );
    assert!(
        out.windows(2).all(|w| w[0].n < w[1].n),
        "n must increase within an action"
    );
    assert!(
        full.iter()
            .any(|l| l.stream == "sys" && l.text.contains("line-$i")),
        "the command line is logged"
    );
    assert!(full.iter().all(|l| !l.ts.is_empty()));

    // Small pages, following next_offset: the same lines, each exactly once.
    const LIMIT: u32 = 7;
    let mut offset = 0;
    let mut paged: Vec<LogLine> = Vec::new();
    let mut pages = 0;
    loop {
        let page: LogPage = server.admin.logs_get(id, offset, LIMIT).await.unwrap();
        pages += 1;
        assert!(pages < 1000, "paging does not terminate");
        assert!(page.next_offset >= offset, "next_offset went backwards");
        assert!(page.lines.len() <= LIMIT as usize);
        if page.complete {
            paged.extend(page.lines);
            break;
        }
        assert!(
            !page.lines.is_empty(),
            "an incomplete page of a finished run must hold lines"
        );
        paged.extend(page.lines);
        offset = page.next_offset;
    }
    assert_eq!(paged, full);
    assert!(
        pages > 2,
        "the test must actually page ({} lines)",
        full.len()
    );

    // Past the end: nothing more, still complete, same offset.
    let end = server
        .admin
        .logs_get(id, 0, 10_000)
        .await
        .unwrap()
        .next_offset;
    let after = server.admin.logs_get(id, end, 10).await.unwrap();
    assert!(
        after.lines.is_empty() && after.complete && after.next_offset == end,
        "{after:?}"
    );

    // An offset that is not a record boundary is the client's mistake, not a server fault.
    for bad in [1, 3, end - 1] {
        let answer = server
            .call("GET", &format!("/api/v1/runs/{id}/logs?offset={bad}"), None)
            .await;
        answer.assert_error(400, "invalid_offset");
        let answer = server
            .call(
                "GET",
                &format!("/api/v1/runs/{id}/logs/stream?offset={bad}"),
                None,
            )
            .await;
        answer.assert_error(400, "invalid_offset");
    }

    // Log streams check their batch size like log pages.
    for bad in [0, 10_001] {
        server
            .call(
                "GET",
                &format!("/api/v1/runs/{id}/logs/stream?limit={bad}"),
                None,
            )
            .await
            .assert_error(400, "bad_request");
    }

    // Only one action's lines.
    let only = server
        .call(
            "GET",
            &format!("/api/v1/runs/{id}/logs?action={action}"),
            None,
        )
        .await;
    assert_eq!(only.status, 200, "{}", only.text);
    let only: LogPage = serde_json::from_value(only.json).unwrap();
    assert!(only.lines.iter().all(|l| l.action == action));
    assert_eq!(only.lines.iter().filter(|l| l.stream == "out").count(), 5);
    server.stop().await;
}

/// One Server-Sent Event.
#[derive(Debug)]
struct Event {
    event: String,
    id: Option<String>,
    data: String,
}

/// Reads events from an SSE response, calling `on_event` for each until it returns false
/// or the stream ends.
async fn read_events(resp: reqwest::Response, mut on_event: impl AsyncFnMut(&Event) -> bool) {
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    while let Some(chunk) = body.next().await {
        buf.push_str(&String::from_utf8_lossy(&chunk.expect("stream chunk")));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut event = Event {
                event: "message".into(),
                id: None,
                data: String::new(),
            };
            let mut data_lines = Vec::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event.event = v.trim_start().to_owned();
                } else if let Some(v) = line.strip_prefix("id:") {
                    event.id = Some(v.trim_start().to_owned());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data_lines.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
                }
            }
            if data_lines.is_empty() && event.id.is_none() {
                continue; // a keep-alive comment
            }
            event.data = data_lines.join("\n");
            if !on_event(&event).await {
                return;
            }
        }
    }
}

async fn open_stream(
    server: &TestServer,
    id: i64,
    last_event_id: Option<&str>,
) -> reqwest::Response {
    let mut req = server
        .http
        .get(format!("{}/api/v1/runs/{id}/logs/stream", server.url))
        .bearer_auth(server.admin_token());
    if let Some(last) = last_event_id {
        req = req.header("Last-Event-ID", last);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(ct.starts_with("text/event-stream"), "content-type {ct}");
    resp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sse_stream_follows_a_running_action_and_resumes_from_last_event_id() {
    let mut server = TestServer::start().await;
    chatty_project(&mut server).await;
    let id = trigger(&server).await;

    let resp = open_stream(&server, id, None).await;
    let mut streamed: Vec<LogLine> = Vec::new();
    let mut resume_from: Option<(String, usize)> = None; // (event id, lines before it)
    let mut end_status = None;
    let mut seen_line_1_while_running = false;
    let client = server.admin.clone();
    let read = read_events(resp, async |event: &Event| {
        match event.event.as_str() {
            "lines" => {
                let lines: Vec<LogLine> =
                    serde_json::from_str(&event.data).expect("lines data is a JSON array of lines");
                assert!(!lines.is_empty(), "empty lines event");
                assert!(
                    event.id.is_some(),
                    "lines events carry an id to resume from"
                );
                streamed.extend(lines.iter().cloned());
                if lines.iter().any(|l| l.text == "line-1") && resume_from.is_none() {
                    // Live: the action that printed line-1 is still running.
                    let detail = client.runs_get(id).await.unwrap();
                    let action = command_action(&detail);
                    assert_eq!(
                        action.status, "InProgress",
                        "line-1 arrived only after the action ended: {action:?}"
                    );
                    assert!(
                        !streamed.iter().any(|l| l.text == "line-5"),
                        "line-1 and line-5 arrived together"
                    );
                    seen_line_1_while_running = true;
                    resume_from = Some((event.id.clone().unwrap(), streamed.len()));
                }
                true
            }
            "end" => {
                end_status = Some(event.data.clone());
                false
            }
            other => panic!("unexpected event `{other}`: {event:?}"),
        }
    });
    tokio::time::timeout(Duration::from_secs(90), read)
        .await
        .expect("the stream ends with the run");
    assert!(seen_line_1_while_running);
    assert_eq!(end_status.as_deref(), Some("Succeeded"));
    assert_eq!(
        server.admin.runs_get(id).await.unwrap().run.status,
        "Succeeded"
    );

    // The stream delivered exactly the stored log.
    let full = all_lines(&server, id).await;
    assert_eq!(texts(&streamed), texts(&full));
    assert_eq!(streamed, full);

    // Resuming after the event that held line-1 gives exactly the lines after it.
    let (last_id, before) = resume_from.unwrap();
    let resp = open_stream(&server, id, Some(&last_id)).await;
    let mut resumed: Vec<LogLine> = Vec::new();
    let mut end_again = None;
    let read = read_events(resp, async |event: &Event| match event.event.as_str() {
        "lines" => {
            resumed.extend(serde_json::from_str::<Vec<LogLine>>(&event.data).unwrap());
            true
        }
        "end" => {
            end_again = Some(event.data.clone());
            false
        }
        other => panic!("unexpected event `{other}`"),
    });
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("a finished run's stream ends");
    assert_eq!(end_again.as_deref(), Some("Succeeded"));
    assert_eq!(resumed, full[before..], "resume repeated or lost lines");
    assert!(texts(&resumed).contains(&"line-5") && !texts(&resumed).contains(&"line-1"));
    server.stop().await;
}
