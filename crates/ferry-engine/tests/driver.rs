//! The run driver's state machine, with a scripted executor instead of processes: a stage
//! failure, cancellation mid-action, an action timeout, an approval that times out, a plan
//! that went stale after its approval, and recovery after the server died mid-action. The
//! store, the git mirror, the run log and the masker are real; only the processes are not.

use std::sync::Arc;
use std::time::Duration;

use ferry_core::{ActionStatus, Actor, RunId, RunStatus, StageKind, StageStatus};
use ferry_engine::executor::{Scripted, Started, Step};
use ferry_engine::{Engine, EngineConfig, RunRequest, SandboxMode};
use ferry_executor::{Command, Stream};
use ferry_secrets::{KeySource, MasterKey};
use ferry_store::{ApprovalMode, Decision, RunDetail, Store, StoreConfig};
use ferry_test_support::GitRepo;

/// A `terraform show -json` document with one resource to create.
const PLAN_JSON: &str = r#"{"format_version":"1.2","terraform_version":"1.15.0","planned_values":{"root_module":{}},"resource_changes":[{"address":"terraform_data.app","mode":"managed","type":"terraform_data","name":"app","provider_name":"terraform.io/builtin/terraform","change":{"actions":["create"],"before":null,"after":{"input":"x"},"after_unknown":{"id":true},"before_sensitive":false,"after_sensitive":{}}}],"configuration":{"root_module":{}}}"#;

struct Harness {
    data: tempfile::TempDir,
    work: tempfile::TempDir,
    store: Store,
    engine: Engine,
    executor: Scripted,
    _repo: GitRepo,
}

fn alice() -> Actor {
    Actor {
        name: "alice".into(),
        source: "test".into(),
    }
}

fn bob() -> Actor {
    Actor {
        name: "bob".into(),
        source: "test".into(),
    }
}

/// What Terraform would do, by subcommand: `plan -out=P` writes a plan file, the show
/// script writes the plan JSON; everything else succeeds. `commands` decides user commands.
fn terraform(started: &Started, commands: &(dyn Fn(&str) -> Step + Send + Sync)) -> Step {
    match &started.command {
        Command::Shell(line) => commands(line),
        Command::Argv(argv) if argv.get(1).map(String::as_str) == Some("plan") => {
            let out = argv
                .iter()
                .find_map(|a| a.strip_prefix("-out="))
                .expect("plan -out=");
            Step::ok()
                .print(Stream::Out, "Plan: 1 to add, 0 to change, 0 to destroy.")
                .write(out, b"a plan".to_vec())
        }
        // `/bin/sh -c 'exec "$0" show -json -no-color "$1" > "$2"' terraform PLAN JSON`
        Command::Argv(argv) if argv.first().map(String::as_str) == Some("/bin/sh") => {
            Step::ok().write(&argv[argv.len() - 1], PLAN_JSON.as_bytes().to_vec())
        }
        Command::Argv(_) => Step::ok(),
    }
}

async fn open_store(data: &std::path::Path) -> (Store, Arc<MasterKey>) {
    let (key, _) = MasterKey::load(&KeySource::DataDir(data.to_owned())).unwrap();
    let store = Store::open(
        &StoreConfig {
            path: data.join("ferry.db"),
            audit_checkpoint: data.join("audit.checkpoint"),
        },
        &key,
    )
    .await
    .unwrap();
    (store, Arc::new(key))
}

fn engine_on(
    data: &std::path::Path,
    work: &std::path::Path,
    store: Store,
    key: Arc<MasterKey>,
    executor: Scripted,
) -> Engine {
    let config = EngineConfig {
        data_dir: data.to_owned(),
        work_dir: work.to_owned(),
        sandbox: SandboxMode::Disabled,
        kill_grace: Duration::from_millis(200),
        path_var: ferry_test_support::path_with_terraform(),
        passthrough_env: Vec::new(),
        backend_url: "http://127.0.0.1:9".into(),
        git: Default::default(),
    };
    Engine::with_executor(config, store, key, Arc::new(executor))
}

impl Harness {
    async fn new(
        ferry_yaml: &str,
        commands: impl Fn(&str) -> Step + Send + Sync + 'static,
    ) -> Harness {
        let data = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let repo = GitRepo::new();
        repo.write("ferry.yaml", ferry_yaml).write(
            "main.tf",
            "resource \"terraform_data\" \"app\" { input = \"x\" }\n",
        );
        repo.commit("infra");
        let (store, key) = open_store(data.path()).await;
        store
            .create_project(&alice(), "net", &repo.path().display().to_string())
            .await
            .unwrap();
        let executor = Scripted::new(move |started| terraform(started, &commands));
        let engine = engine_on(
            data.path(),
            work.path(),
            store.clone(),
            key,
            executor.clone(),
        );
        engine.recover().await.unwrap();
        Harness {
            data,
            work,
            store,
            engine,
            executor,
            _repo: repo,
        }
    }

    async fn trigger(&self) -> RunId {
        self.engine
            .trigger(&alice(), "net", &RunRequest::default())
            .await
            .unwrap()
            .id
    }

    async fn detail(&self, run: RunId) -> RunDetail {
        self.store.run_detail(run).await.unwrap()
    }

    /// Waits until `check` holds for the run's detail, or fails naming `what`.
    async fn until(&self, run: RunId, what: &str, check: impl Fn(&RunDetail) -> bool) -> RunDetail {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let detail = self.detail(run).await;
            if check(&detail) {
                return detail;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: run is {} ({:?}), stages {:?}",
                detail.run.status,
                detail.run.reason,
                detail
                    .stages
                    .iter()
                    .map(|s| format!("{} {} {}", s.environment, s.kind, s.status))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the run is over and its driver is gone (it cleans up after the status).
    async fn finished(&self, run: RunId) -> RunDetail {
        let detail = self
            .until(run, "the run to finish", |d| d.run.status.is_terminal())
            .await;
        settle(&self.engine, run).await;
        detail
    }

    fn log(&self, run: RunId) -> String {
        std::fs::read_to_string(self.engine.log_path(run)).unwrap_or_default()
    }
}

fn stage(detail: &RunDetail, environment: &str, kind: StageKind) -> ferry_store::Stage {
    detail
        .stages
        .iter()
        .find(|s| s.environment == environment && s.kind == kind)
        .unwrap_or_else(|| panic!("no {environment} {kind} stage"))
        .clone()
}

const TEST_PIPELINE: &str = "version: 1
name: net
terraform: { dir: . }
environments:
  - { name: dev, auto_apply: true }
stages:
  test: [\"./smoke.sh\"]
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_command_fails_its_stage_and_the_run_and_nothing_after_it_runs() {
    let h = Harness::new(TEST_PIPELINE, |line| match line {
        "./smoke.sh" => Step::exit(3).print(Stream::Err, "smoke test failed"),
        _ => Step::ok(),
    })
    .await;
    let run = h.trigger().await;
    let detail = h.finished(run).await;
    assert_eq!(
        detail.run.status,
        RunStatus::Failed,
        "{:?}",
        detail.run.reason
    );
    let reason = detail.run.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("dev test") && reason.contains("exit code 3"),
        "{reason}"
    );
    let test = stage(&detail, "dev", StageKind::Test);
    assert_eq!(test.status, StageStatus::Failed);
    let action = detail
        .actions
        .iter()
        .find(|a| a.stage_id == test.id)
        .unwrap();
    assert_eq!(
        (action.status, action.exit_code),
        (ActionStatus::Failed, Some(3))
    );
    // Apply never started (what follows a failure is skipped), and no process of it was
    // asked for.
    assert_eq!(
        stage(&detail, "dev", StageKind::Apply).status,
        StageStatus::Skipped
    );
    assert!(
        !h.executor
            .started()
            .iter()
            .any(|s| s.line().contains(" apply ")),
        "{:?}",
        h.executor.started()
    );
    assert!(h.log(run).contains("smoke test failed"), "{}", h.log(run));
    // The run's working directory is gone once it ended.
    assert!(!h.work.path().join(format!("run-{run}")).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_mid_action_ends_the_action_and_the_run_as_cancelled() {
    let h = Harness::new(TEST_PIPELINE, |line| match line {
        "./smoke.sh" => Step::hang(),
        _ => Step::ok(),
    })
    .await;
    let run = h.trigger().await;
    h.until(run, "the test action to start", |d| {
        d.actions.iter().any(|a| {
            a.command.as_deref() == Some("./smoke.sh") && a.status == ActionStatus::InProgress
        })
    })
    .await;
    let cancelled = h.engine.cancel(&bob(), run).await.unwrap();
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    let detail = h.detail(run).await;
    assert_eq!(detail.run.reason.as_deref(), Some("cancelled by bob"));
    let action = detail
        .actions
        .iter()
        .find(|a| a.command.as_deref() == Some("./smoke.sh"))
        .unwrap();
    assert_eq!(action.status, ActionStatus::Cancelled);
    assert_eq!(
        stage(&detail, "dev", StageKind::Test).status,
        StageStatus::Cancelled
    );
    // A second cancel is refused: the run is over.
    assert!(h.engine.cancel(&bob(), run).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_past_its_timeout_fails_the_run_as_timed_out() {
    let h = Harness::new(
        "version: 1
name: net
terraform: { dir: . }
environments:
  - { name: dev, auto_apply: true }
stages:
  test:
    - { name: slow, run: ./slow.sh, timeout: 1s }
",
        |line| match line {
            "./slow.sh" => Step::hang(),
            _ => Step::ok(),
        },
    )
    .await;
    let run = h.trigger().await;
    let detail = h.finished(run).await;
    assert_eq!(detail.run.status, RunStatus::Failed);
    let slow = detail.actions.iter().find(|a| a.name == "slow").unwrap();
    assert_eq!(slow.status, ActionStatus::Failed);
    assert!(
        slow.error.as_deref().unwrap_or("").contains("timed out"),
        "{slow:?}"
    );
    let started = h.executor.started();
    let job = started.iter().find(|s| s.line() == "./slow.sh").unwrap();
    // What is left of the action's 1s when its process starts.
    assert!(
        job.timeout <= Duration::from_secs(1) && job.timeout > Duration::from_millis(500),
        "{:?}",
        job.timeout
    );
    assert!(h.log(run).contains("timed out after"), "{}", h.log(run));
}

const APPROVAL_PIPELINE: &str = "version: 1
name: net
terraform: { dir: . }
environments:
  - name: prod
    approval: { required: 1, timeout: 1s }
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_nobody_gives_in_time_fails_the_run() {
    let h = Harness::new(APPROVAL_PIPELINE, |_| Step::ok()).await;
    let run = h.trigger().await;
    let detail = h.finished(run).await;
    assert_eq!(detail.run.status, RunStatus::Failed);
    let reason = detail.run.reason.clone().unwrap_or_default();
    assert!(
        reason.starts_with("MANUAL_APPROVAL_FAILED: no decision in prod within 1s"),
        "{reason}"
    );
    assert_eq!(
        stage(&detail, "prod", StageKind::Approval).status,
        StageStatus::Failed
    );
    assert_eq!(
        stage(&detail, "prod", StageKind::Apply).status,
        StageStatus::Skipped
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_whose_file_changed_after_approval_is_not_applied() {
    let h = Harness::new(
        "version: 1
name: net
terraform: { dir: . }
environments:
  - name: prod
    approval: { required: 1 }
",
        |_| Step::ok(),
    )
    .await;
    let run = h.trigger().await;
    let waiting = h
        .until(run, "the approval wait", |d| {
            d.run.status == RunStatus::WaitingForApproval
        })
        .await;
    let plan = waiting
        .plans
        .iter()
        .find(|p| p.environment == "prod")
        .unwrap()
        .clone();
    h.engine
        .decide(
            &bob(),
            run,
            "prod",
            Decision::Approve,
            "looks right",
            ApprovalMode::Normal,
        )
        .await
        .unwrap();
    // Untouched, the approved plan is applied: a copy of exactly its bytes.
    let detail = h.finished(run).await;
    assert_eq!(
        detail.run.status,
        RunStatus::Succeeded,
        "{:?}",
        detail.run.reason
    );
    let apply = h
        .executor
        .started()
        .into_iter()
        .find(|s| s.run == run && s.line().contains(" apply "))
        .expect("an apply was started");
    let copy = apply.line().rsplit(' ').next().unwrap().to_owned();
    assert!(copy.ends_with("prod.tfplan"), "{copy}");
    assert!(h
        .log(run)
        .contains(&format!("applying the plan with sha256 {}", plan.sha256)));

    // Again, with the stored plan altered while the run waits.
    let run = h.trigger().await;
    let waiting = h
        .until(run, "the approval wait", |d| {
            d.run.status == RunStatus::WaitingForApproval
        })
        .await;
    let plan = waiting
        .plans
        .iter()
        .find(|p| p.environment == "prod")
        .unwrap();
    std::fs::write(&plan.plan_path, b"another plan").unwrap();
    h.engine
        .decide(
            &bob(),
            run,
            "prod",
            Decision::Approve,
            "looks right",
            ApprovalMode::Normal,
        )
        .await
        .unwrap();
    let detail = h.finished(run).await;
    assert_eq!(detail.run.status, RunStatus::Failed);
    let reason = detail.run.reason.clone().unwrap_or_default();
    assert!(
        reason.starts_with("prod: STALE_PLAN: the stored plan file's sha256 is"),
        "{reason}"
    );
    assert_eq!(
        stage(&detail, "prod", StageKind::Apply).status,
        StageStatus::Failed
    );
    // No `terraform apply` was asked of the executor for this run.
    assert!(
        !h.executor
            .started()
            .iter()
            .any(|s| s.run == run && s.line().contains(" apply ")),
        "{:?}",
        h.executor.started()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_died_mid_action_leaves_an_interrupted_run_after_recovery() {
    let h = Harness::new(TEST_PIPELINE, |line| match line {
        "./smoke.sh" => Step::hang(),
        _ => Step::ok(),
    })
    .await;
    let run = h.trigger().await;
    h.until(run, "the test action to start", |d| {
        d.actions.iter().any(|a| {
            a.command.as_deref() == Some("./smoke.sh") && a.status == ActionStatus::InProgress
        })
    })
    .await;
    // The old engine is abandoned without a shutdown, as a crash would; a new one opens the
    // same data dir and recovers before anything else.
    let (store, key) = open_store(h.data.path()).await;
    let fresh = Scripted::new(|started| terraform(started, &|_| Step::ok()));
    let engine = engine_on(
        h.data.path(),
        h.work.path(),
        store.clone(),
        key,
        fresh.clone(),
    );
    engine.recover().await.unwrap();
    let detail = store.run_detail(run).await.unwrap();
    assert_eq!(
        detail.run.status,
        RunStatus::Interrupted,
        "{:?}",
        detail.run.reason
    );
    let action = detail
        .actions
        .iter()
        .find(|a| a.command.as_deref() == Some("./smoke.sh"))
        .unwrap();
    assert!(action.status.is_terminal(), "{action:?}");
    // Nothing was resumed on the new executor, and the environment is free for a new run.
    assert!(fresh.started().is_empty(), "{:?}", fresh.started());
    let fresh_count = |run: RunId| fresh.started().iter().filter(|s| s.run == run).count();
    assert!(!h.work.path().join(format!("run-{run}")).exists());
    let next = engine
        .trigger(&alice(), "net", &RunRequest::default())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = store.run(next.id).await.unwrap().status;
        if status.is_terminal() {
            let reason = store.run(next.id).await.unwrap().reason;
            assert_eq!(status, RunStatus::Succeeded, "{reason:?}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the next run did not finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(fresh_count(next.id) > 0);
    assert_eq!(fresh_count(run), 0);
}

/// Waits until no driver works on the run any more.
async fn settle(engine: &Engine, run: RunId) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while engine.is_active(run) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "run {run}'s driver did not end"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `check` holds for the run's detail, or fails naming `what`.
async fn until(
    store: &Store,
    run: RunId,
    what: &str,
    check: impl Fn(&RunDetail) -> bool,
) -> RunDetail {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let detail = store.run_detail(run).await.unwrap();
        if check(&detail) {
            return detail;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn a_run_waiting_for_approval_when_the_server_died_resumes_and_takes_the_decision() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let repo = GitRepo::new();
    repo.write(
        "ferry.yaml",
        "version: 1\nname: net\nterraform: { dir: . }\nenvironments:\n  - name: prod\n    approval: { required: 1 }\n",
    )
    .write("main.tf", "resource \"terraform_data\" \"app\" { input = \"x\" }\n");
    repo.commit("infra");
    let script = |started: &Started| terraform(started, &|_| Step::ok());
    // The first server: the run reaches its approval, then the process dies — its runtime is
    // dropped with every task in it, no shutdown, no cleanup.
    let first = tokio::runtime::Runtime::new().unwrap();
    let run = first.block_on(async {
        let (store, key) = open_store(data.path()).await;
        store
            .create_project(&alice(), "net", &repo.path().display().to_string())
            .await
            .unwrap();
        let engine = engine_on(
            data.path(),
            work.path(),
            store.clone(),
            key,
            Scripted::new(script),
        );
        engine.recover().await.unwrap();
        let run = engine
            .trigger(&alice(), "net", &RunRequest::default())
            .await
            .unwrap()
            .id;
        until(&store, run, "the approval wait", |d| {
            d.run.status == RunStatus::WaitingForApproval
        })
        .await;
        run
    });
    drop(first);

    // The second server recovers: the run still waits (nothing was executing), is announced
    // as resumed, and an approval given now applies the plan made before the crash.
    let second = tokio::runtime::Runtime::new().unwrap();
    second.block_on(async {
        let (store, key) = open_store(data.path()).await;
        let executor = Scripted::new(script);
        let engine = engine_on(
            data.path(),
            work.path(),
            store.clone(),
            key,
            executor.clone(),
        );
        engine.recover().await.unwrap();
        let detail = store.run_detail(run).await.unwrap();
        assert_eq!(detail.run.status, RunStatus::WaitingForApproval);
        let events = store
            .events(&ferry_store::EventFilter {
                run: Some(run.0),
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(
            events
                .iter()
                .any(|e| e.kind == ferry_core::EventType::PipelineResumed),
            "{:?}",
            events.iter().map(|e| &e.kind).collect::<Vec<_>>()
        );
        let planned = detail.plans[0].sha256.clone();
        engine
            .decide(
                &bob(),
                run,
                "prod",
                Decision::Approve,
                "after the restart",
                ApprovalMode::Normal,
            )
            .await
            .unwrap();
        let detail = until(&store, run, "the run to finish", |d| {
            d.run.status.is_terminal()
        })
        .await;
        assert_eq!(
            detail.run.status,
            RunStatus::Succeeded,
            "{:?}",
            detail.run.reason
        );
        // Exactly one apply, on the new executor, of the plan approved before the crash.
        let applies: Vec<Started> = executor
            .started()
            .into_iter()
            .filter(|s| s.line().contains(" apply "))
            .collect();
        assert_eq!(applies.len(), 1, "{applies:?}");
        let log = std::fs::read_to_string(engine.log_path(run)).unwrap();
        assert!(
            log.contains(&format!("applying the plan with sha256 {planned}")),
            "{log}"
        );
    });
}

/// A crash at whatever transition the run has reached after `delay`: the next server's
/// recovery leaves nothing half-done — no action or stage still running, the run finished or
/// resumable — and the environment is usable by the next run.
#[test]
fn a_crash_at_any_moment_is_recovered_to_a_consistent_run() {
    for delay in [0, 3, 10, 25, 60, 120] {
        let data = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let repo = GitRepo::new();
        repo.write("ferry.yaml", TEST_PIPELINE).write(
            "main.tf",
            "resource \"terraform_data\" \"app\" { input = \"x\" }\n",
        );
        repo.commit("infra");
        let slow = |started: &Started| {
            let mut step = terraform(started, &|_| Step::ok());
            step.duration = Duration::from_millis(15);
            step
        };
        let first = tokio::runtime::Runtime::new().unwrap();
        let run = first.block_on(async {
            let (store, key) = open_store(data.path()).await;
            store
                .create_project(&alice(), "net", &repo.path().display().to_string())
                .await
                .unwrap();
            let engine = engine_on(data.path(), work.path(), store, key, Scripted::new(slow));
            engine.recover().await.unwrap();
            let run = engine
                .trigger(&alice(), "net", &RunRequest::default())
                .await
                .unwrap()
                .id;
            tokio::time::sleep(Duration::from_millis(delay)).await;
            run
        });
        drop(first);

        let second = tokio::runtime::Runtime::new().unwrap();
        second.block_on(async {
            let (store, key) = open_store(data.path()).await;
            let engine = engine_on(
                data.path(),
                work.path(),
                store.clone(),
                key,
                Scripted::new(slow),
            );
            engine.recover().await.unwrap();
            let detail = until(&store, run, "the recovered run to finish", |d| {
                d.run.status.is_terminal()
            })
            .await;
            settle(&engine, run).await;
            assert!(
                matches!(
                    detail.run.status,
                    RunStatus::Succeeded | RunStatus::Interrupted
                ),
                "after {delay} ms: {} ({:?})",
                detail.run.status,
                detail.run.reason
            );
            assert!(
                detail
                    .stages
                    .iter()
                    .all(|s| s.status.is_terminal() || s.status == StageStatus::Pending),
                "after {delay} ms: {:?}",
                detail.stages
            );
            assert!(
                detail
                    .actions
                    .iter()
                    .all(|a| a.status != ActionStatus::InProgress),
                "after {delay} ms: {:?}",
                detail.actions
            );
            assert!(!work.path().join(format!("run-{run}")).exists());
            let next = engine
                .trigger(&alice(), "net", &RunRequest::default())
                .await
                .unwrap()
                .id;
            let next = until(&store, next, "the next run", |d| d.run.status.is_terminal()).await;
            assert_eq!(
                next.run.status,
                RunStatus::Succeeded,
                "after {delay} ms: {:?}",
                next.run.reason
            );
        });
    }
}
