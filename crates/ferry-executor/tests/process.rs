//! Runs real processes through the executor: exit codes, environment, working
//! directory, output capture, timeouts, cancellation and process-group
//! cleanup.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use chrono::Utc;
use common::{alive, group_members, printed_pids, run, shell, PATH};
use ferry_executor::{
    kill_leaderless_group, kill_recorded_group, process_start_time, read_log, spawn, ActionSpec,
    Command, Identity, Outcome, OutputFilter, RunLog, Stream,
};
use tokio_util::sync::CancellationToken;

const MINUTE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("true", Outcome::Exited(0)),
        ("exit 3", Outcome::Exited(3)),
        ("kill -9 $$", Outcome::Signaled(9)),
    ];
    for (script, want) in cases {
        let ran = run(
            dir.path(),
            &shell(script, dir.path(), MINUTE),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(ran.outcome, want, "{script}");
        assert_eq!(ran.outcome.success(), want == Outcome::Exited(0));
    }
    assert_eq!(Outcome::Exited(3).describe(), "exit code 3");
}

#[tokio::test]
async fn env_is_exactly_what_was_given() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ActionSpec::new(
        Command::Argv(vec!["env".to_owned()]),
        dir.path(),
        vec![
            ("PATH".to_owned(), PATH.to_owned()),
            ("FOO".to_owned(), "bar baz".to_owned()),
        ],
        MINUTE,
    );
    let ran = run(dir.path(), &spec, CancellationToken::new()).await;
    assert_eq!(ran.outcome, Outcome::Exited(0));
    let mut vars = ran.texts(Stream::Out);
    vars.sort();
    assert_eq!(vars, ["FOO=bar baz".to_owned(), format!("PATH={PATH}")]);
}

#[tokio::test]
async fn argv_program_is_found_in_the_actions_path_only() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let tool = bin.join("ferry-test-tool");
    std::fs::write(&tool, "#!/bin/sh\necho \"tool says $1\"\n").unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();

    let argv = Command::Argv(vec!["ferry-test-tool".to_owned(), "hi".to_owned()]);
    let with_bin = format!("{}:{PATH}", bin.display());
    let spec = ActionSpec::new(
        argv.clone(),
        dir.path(),
        vec![("PATH".to_owned(), with_bin)],
        MINUTE,
    );
    let ran = run(dir.path(), &spec, CancellationToken::new()).await;
    assert_eq!(ran.texts(Stream::Out), ["tool says hi"]);

    let spec = ActionSpec::new(
        argv.clone(),
        dir.path(),
        vec![("PATH".to_owned(), PATH.to_owned())],
        MINUTE,
    );
    let err = spawn(&spec).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{err}");

    // No PATH in the action's environment: the server's PATH is not used.
    let spec = ActionSpec::new(
        Command::Argv(vec!["env".to_owned()]),
        dir.path(),
        vec![],
        MINUTE,
    );
    let err = spawn(&spec).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{err}");
}

#[tokio::test]
async fn runs_in_cwd() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work dir");
    std::fs::create_dir(&work).unwrap();
    let ran = run(
        dir.path(),
        &shell("pwd", &work, MINUTE),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(
        ran.texts(Stream::Out),
        [work.canonicalize().unwrap().display().to_string()]
    );
}

#[tokio::test]
async fn stdout_and_stderr_interleave_in_arrival_order() {
    let dir = tempfile::tempdir().unwrap();
    let script = "echo o1; sleep 0.1; echo e1 >&2; sleep 0.1; echo o2; sleep 0.1; echo e2 >&2";
    let before = Utc::now() - chrono::Duration::milliseconds(1);
    let ran = run(
        dir.path(),
        &shell(script, dir.path(), MINUTE),
        CancellationToken::new(),
    )
    .await;
    let after = Utc::now();
    let got: Vec<(Stream, &str, u64, u64)> = ran
        .lines
        .iter()
        .map(|l| (l.stream, l.text.as_str(), l.n, l.seq))
        .collect();
    assert_eq!(
        got,
        [
            (Stream::Out, "o1", 1, 1),
            (Stream::Err, "e1", 2, 2),
            (Stream::Out, "o2", 3, 3),
            (Stream::Err, "e2", 4, 4),
        ]
    );
    for pair in ran.lines.windows(2) {
        // The sleeps separate the lines by ~100 ms.
        assert!(
            pair[1].ts - pair[0].ts >= chrono::Duration::milliseconds(50),
            "{pair:?}"
        );
    }
    for line in &ran.lines {
        assert!(line.ts >= before && line.ts <= after, "{line:?}");
        assert_eq!(
            line.ts.timestamp_subsec_nanos() % 1_000_000,
            0,
            "ms precision"
        );
        assert_eq!(line.action, 1);
        assert!(!line.c);
    }
}

#[tokio::test]
async fn partial_last_line_and_invalid_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let script = r"printf 'a\n\nb\377c'";
    let ran = run(
        dir.path(),
        &shell(script, dir.path(), MINUTE),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(ran.texts(Stream::Out), ["a", "", "b\u{FFFD}c"]);
}

#[tokio::test]
async fn many_lines_are_numbered_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let ran = run(
        dir.path(),
        &shell("seq 1 100000", dir.path(), MINUTE),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(ran.outcome, Outcome::Exited(0));
    assert_eq!(ran.lines.len(), 100_000);
    for (i, line) in ran.lines.iter().enumerate() {
        let i = i as u64 + 1;
        assert_eq!(
            (line.seq, line.n, line.text.as_str()),
            (i, i, i.to_string().as_str())
        );
    }
}

#[tokio::test]
async fn timeout_kills_the_action_and_its_grandchildren() {
    let dir = tempfile::tempdir().unwrap();
    let script = "sleep 1000 & echo $!; sleep 1000; wait";
    let mut spec = shell(script, dir.path(), Duration::from_millis(300));
    spec.kill_grace = Duration::from_secs(20);
    let ran = run(dir.path(), &spec, CancellationToken::new()).await;
    assert_eq!(ran.outcome, Outcome::TimedOut);
    // Everything died of SIGTERM; the grace did not have to run out.
    assert!(ran.elapsed < Duration::from_secs(5), "{:?}", ran.elapsed);
    assert_eq!(group_members(ran.pid), Vec::<u32>::new());
    let grandchild = printed_pids(&ran);
    assert_eq!(grandchild.len(), 1);
    assert!(!alive(grandchild[0]));
    assert_eq!(
        ran.texts(Stream::Sys),
        ["timed out after 300ms; sending SIGTERM to the process group"]
    );
}

#[tokio::test]
async fn term_ignoring_group_is_killed_after_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let script = r#"trap "" TERM; sleep 1000 & echo $!; sleep 1000; wait"#;
    let mut spec = shell(script, dir.path(), Duration::from_millis(200));
    spec.kill_grace = Duration::from_millis(800);
    let ran = run(dir.path(), &spec, CancellationToken::new()).await;
    assert_eq!(ran.outcome, Outcome::TimedOut);
    assert!(
        ran.elapsed >= Duration::from_millis(1000),
        "{:?}",
        ran.elapsed
    );
    assert!(ran.elapsed < Duration::from_secs(5), "{:?}", ran.elapsed);
    assert_eq!(group_members(ran.pid), Vec::<u32>::new());
    let grandchild = printed_pids(&ran);
    assert_eq!(grandchild.len(), 1);
    assert!(!alive(grandchild[0]));
    assert_eq!(
        ran.texts(Stream::Sys),
        [
            "timed out after 200ms; sending SIGTERM to the process group",
            "process group still running 800ms after SIGTERM; sending SIGKILL",
        ]
    );
}

#[tokio::test]
async fn cancel_token_stops_the_action() {
    let dir = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        trigger.cancel();
    });
    let ran = run(
        dir.path(),
        &shell("echo started; sleep 1000", dir.path(), MINUTE),
        cancel,
    )
    .await;
    assert_eq!(ran.outcome, Outcome::Cancelled);
    assert!(ran.elapsed < Duration::from_secs(5), "{:?}", ran.elapsed);
    assert_eq!(group_members(ran.pid), Vec::<u32>::new());
    assert_eq!(ran.texts(Stream::Out), ["started"]);
    assert_eq!(
        ran.texts(Stream::Sys),
        ["cancelled; sending SIGTERM to the process group"]
    );
}

#[tokio::test]
async fn background_child_holding_the_pipe_does_not_hang_wait() {
    let dir = tempfile::tempdir().unwrap();
    let ran = run(
        dir.path(),
        &shell("sleep 1000 & echo $!", dir.path(), MINUTE),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(ran.outcome, Outcome::Exited(0));
    assert!(ran.elapsed < Duration::from_secs(5), "{:?}", ran.elapsed);
    assert_eq!(group_members(ran.pid), Vec::<u32>::new());
    let background = printed_pids(&ran);
    assert_eq!(background.len(), 1);
    assert!(!alive(background[0]));
    assert_eq!(ran.texts(Stream::Sys).len(), 1);
}

#[tokio::test]
async fn leftover_background_process_is_killed_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let script = "sleep 1000 >/dev/null 2>&1 & echo $!";
    let ran = run(
        dir.path(),
        &shell(script, dir.path(), MINUTE),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(ran.outcome, Outcome::Exited(0));
    // The pipes closed at once, so there was no drain wait.
    assert!(
        ran.elapsed < Duration::from_millis(1500),
        "{:?}",
        ran.elapsed
    );
    assert_eq!(group_members(ran.pid), Vec::<u32>::new());
    let background = printed_pids(&ran);
    assert_eq!(background.len(), 1);
    assert!(!alive(background[0]));
    assert_eq!(ran.texts(Stream::Sys), Vec::<String>::new());
}

#[tokio::test]
async fn follower_sees_a_line_while_the_action_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.log");
    let mut log = RunLog::open(&path).await.unwrap();
    let mut len = log.subscribe();
    let mut action = log.action(1);
    let running = spawn(&shell("echo hi; sleep 2", dir.path(), MINUTE)).unwrap();
    let started = Instant::now();

    let follow = async {
        loop {
            len.changed().await.unwrap();
            let chunk = read_log(&path, 0, 10, None).await.unwrap();
            if chunk.lines.iter().any(|l| l.text == "hi") {
                return started.elapsed();
            }
        }
    };
    let (outcome, seen_after) =
        tokio::join!(running.wait(&mut action, CancellationToken::new()), follow);
    assert_eq!(outcome.unwrap(), Outcome::Exited(0));
    // Flushed by the 50 ms timer, long before the action ends.
    assert!(seen_after < Duration::from_millis(1000), "{seen_after:?}");
}

/// Stands in for the secret masker: replaces `s` on the stream it is given,
/// holding everything back until the end to prove `finish` is honoured.
struct HoldAndMask(Vec<u8>);

impl OutputFilter for HoldAndMask {
    fn filter(&mut self, input: &[u8], _out: &mut Vec<u8>) {
        self.0
            .extend(input.iter().map(|&b| if b == b's' { b'*' } else { b }));
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.0);
    }
}

#[tokio::test]
async fn output_filters_apply_per_stream() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.log");
    let mut log = RunLog::open(&path).await.unwrap();
    let mut action = log.action(7);
    // stderr is written (and read) well before stdout ends, so the order of
    // the stored lines is fixed: the held-back stdout comes out at its end.
    let script = "echo secret >&2; sleep 0.3; echo secret; printf 'no newline s'";
    let spec = shell(script, dir.path(), MINUTE);
    let running = spawn(&spec)
        .unwrap()
        .with_filters(Box::new(HoldAndMask(Vec::new())), Box::new(Identity));
    let outcome = running
        .wait(&mut action, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Exited(0));
    let lines = common::read_all(&path).await;
    let got: Vec<(Stream, &str)> = lines.iter().map(|l| (l.stream, l.text.as_str())).collect();
    assert_eq!(
        got,
        [
            (Stream::Err, "secret"),
            (Stream::Out, "*ecret"),
            (Stream::Out, "no newline *")
        ]
    );
}

#[tokio::test]
async fn kill_recorded_group_checks_start_time() {
    let dir = tempfile::tempdir().unwrap();
    let running = spawn(&shell("sleep 1000 & sleep 1000", dir.path(), MINUTE)).unwrap();
    let (pid, start_time) = (running.pid(), running.start_time());
    assert_eq!(process_start_time(pid), Some(start_time));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(group_members(pid).len(), 3, "sh and two sleeps");

    // A different start time means the pid was reused: leave it alone.
    assert!(!kill_recorded_group(pid, start_time + 1, Duration::from_secs(1)).await);
    assert_eq!(group_members(pid).len(), 3);

    assert!(kill_recorded_group(pid, start_time, Duration::from_secs(5)).await);
    assert_eq!(group_members(pid), Vec::<u32>::new());

    // Reap the leader; now there is nothing left to kill.
    let mut log = RunLog::open(&dir.path().join("run.log")).await.unwrap();
    let outcome = running
        .wait(&mut log.action(1), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Signaled(15));
    assert_eq!(process_start_time(pid), None);
    assert!(!kill_recorded_group(pid, start_time, Duration::from_secs(1)).await);
}

#[tokio::test]
async fn kill_leaderless_group_only_kills_a_group_working_in_the_action_dir() {
    use std::os::unix::process::CommandExt;
    // A group whose leader is gone (as after `kill -9` of the server, when Terraform dies
    // on the dead pipe) with a child left behind in the action's directory.
    let dir = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let mut leader = std::process::Command::new("/bin/sh")
        .args(["-c", "sleep 1000 & exit 0"])
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let pgid = leader.id();
    assert!(leader.wait().unwrap().success());
    assert_eq!(process_start_time(pgid), None, "the leader is gone");
    assert_eq!(group_members(pgid).len(), 1, "the sleep is left");

    assert!(!kill_leaderless_group(pgid, other.path(), Duration::from_secs(1)).await);
    assert_eq!(group_members(pgid).len(), 1, "not ours: left alone");

    assert!(kill_leaderless_group(pgid, dir.path(), Duration::from_secs(5)).await);
    assert_eq!(group_members(pgid), Vec::<u32>::new());
    assert!(!kill_leaderless_group(pgid, dir.path(), Duration::from_secs(1)).await);
}

#[tokio::test]
async fn kill_recorded_group_escalates_to_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let running = spawn(&shell(
        r#"trap "" TERM; sleep 1000 & sleep 1000"#,
        dir.path(),
        MINUTE,
    ))
    .unwrap();
    let (pid, start_time) = (running.pid(), running.start_time());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    assert!(kill_recorded_group(pid, start_time, Duration::from_millis(500)).await);
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(group_members(pid), Vec::<u32>::new());
    let mut log = RunLog::open(&dir.path().join("run.log")).await.unwrap();
    let outcome = running
        .wait(&mut log.action(1), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Signaled(9));
}
