//! Ferry against the same work done by hand (PRODUCT.md §7), as ratios measured in one
//! process on one machine: the real `ferry` binary serves a real git repository and runs real
//! Terraform, and the baselines run the same commands from this process right after.
//!
//! 1. Engine overhead: a 5-stage pipeline of no-op commands over an empty Terraform
//!    configuration, trigger → `Succeeded`, against a shell script running exactly the
//!    commands the run ran (checked against the run's own log), in a fresh checkout.
//! 2. Plan/apply: 100 `terraform_data` resources through Ferry against `terraform init`,
//!    `plan -out`, `apply` by hand with a local state file; plus the bundled example's `dev`
//!    environment once, for a realistic figure.
//!
//! This is a benchmark, not a timed test: it prints figures and verdicts and never fails on
//! them (the machine is shared and noisy). It exits non-zero only when something does not
//! work: a run that does not succeed, a baseline command that fails.
//! Run: `cargo bench -p ferry --bench overhead` (`FERRY_BENCH_ITERS`, default 5). See
//! docs/benchmarks.md.

mod support;

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use chrono::{DateTime, Utc};
use ferry_api::{LogPage, Run, RunDetail};
use ferry_test_support::GitRepo;
use serde::de::DeserializeOwned;

/// How often the bench polls a run. Totals come from the run's own `finished_at`, so this only
/// bounds the extra "observed" figure and adds a little load to the server.
const POLL: Duration = Duration::from_millis(25);

/// Variables of the server's environment that Ferry passes to actions; the baselines get
/// the same ones.
const PASSTHROUGH: &[&str] = ferry_engine::PASSTHROUGH_ENV;

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; arguments are ignored (every part always runs).
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nbench failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let iters: usize = match std::env::var("FERRY_BENCH_ITERS") {
        Ok(v) => v
            .parse()
            .with_context(|| format!("FERRY_BENCH_ITERS={v} is not a number"))?,
        Err(_) => 5,
    };
    ensure!(iters >= 1, "FERRY_BENCH_ITERS must be at least 1");
    let terraform = ferry_test_support::terraform_dir().join("terraform");
    let path_var = ferry_test_support::path_with_terraform();
    let server = Server::start(&path_var)?;
    println!(
        "ferry bench: {} iterations (median reported), {} CPUs, terraform {}",
        iters,
        cpus(),
        terraform.display()
    );
    println!(
        "server {} (data dir {})",
        server.url,
        server.data_dir.display()
    );
    let ctx = Ctx {
        server,
        terraform: terraform.to_string_lossy().into_owned(),
        path_var,
    };

    let overhead = engine_overhead(&ctx, iters)?;
    let plan_apply = plan_apply(&ctx, iters)?;
    let example = example(&ctx)?;

    println!(
        "\n== Summary (PRODUCT.md §7; medians of {iters}; the machine is shared, expect noise) =="
    );
    for line in [overhead, plan_apply, example] {
        println!("{line}");
    }
    Ok(())
}

fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0)
}

struct Ctx {
    server: Server,
    /// The absolute path Ferry resolves `terraform` to (the first on its PATH).
    terraform: String,
    path_var: String,
}

// ---------------------------------------------------------------------------------------------
// 1. Engine overhead
// ---------------------------------------------------------------------------------------------

const NOOP_YAML: &str = "version: 1\nname: noop\nterraform: { dir: . }\n\
stages:\n  validate: [\"true\"]\n  test: [\"true\"]\n  verify: [\"true\"]\n";

fn engine_overhead(ctx: &Ctx, iters: usize) -> Result<String> {
    println!("\n== 1. Engine overhead: 5-stage no-op pipeline vs a shell script ==");
    println!("pipeline: validate [terraform init, `true`] → plan [terraform plan + show -json] → test [`true`]");
    println!(
        "          → apply (skipped: an empty configuration plans no changes) → verify [`true`]"
    );
    let repo = GitRepo::new();
    repo.write("ferry.yaml", NOOP_YAML).write(
        "main.tf",
        "# Intentionally empty: the bench measures Ferry, not Terraform.\n",
    );
    let commit = repo.commit("noop pipeline");
    ctx.server.add_project("noop", repo.path())?;

    // Warm-up: the first trigger clones the project's mirror; the first baseline warms caches.
    let warm = ctx.server.run_to_end("noop", "Succeeded")?;
    let steps = Steps::from_run(ctx, &warm.detail, "default", None);
    steps.check_against_log(ctx, &warm)?;
    println!("commands the run executed (each its own process, checked against the run log):");
    for step in &steps.list {
        println!(
            "  [{}] {}",
            step.action,
            step.render(&ctx.server.plans_dir(warm.detail.run.id))
        );
    }
    Baseline::new(&repo, &commit, ".")?.script(ctx, &steps)?;

    let mut ferry = Vec::new();
    let mut shell = Vec::new();
    let mut one_by_one: Vec<Vec<f64>> = Vec::new();
    let mut checkout = Vec::new();
    // Ferry and the baselines take turns going first, so slow phases of a noisy machine
    // do not all fall on one side.
    let baseline = || -> Result<(Duration, Duration, Vec<f64>)> {
        let base = Baseline::new(&repo, &commit, ".")?;
        let script = base.script(ctx, &steps)?;
        let each = Baseline::new(&repo, &commit, ".")?.each(ctx, &steps)?;
        Ok((base.checkout, script, each))
    };
    for i in 0..iters {
        let (run, (cloned, script, each)) = if i % 2 == 0 {
            let run = ctx.server.run_to_end("noop", "Succeeded")?;
            (run, baseline()?)
        } else {
            let base = baseline()?;
            (ctx.server.run_to_end("noop", "Succeeded")?, base)
        };
        let t = Timing::of(&run, "default")?;
        checkout.push(ms(cloned));
        println!(
            "  iteration {}: ferry {:.0} ms (Σ actions {:.0} ms), shell script {:.0} ms, commands one by one {:.0} ms",
            i + 1,
            t.total,
            t.actions_sum(),
            ms(script),
            each.iter().sum::<f64>()
        );
        shell.push(ms(script));
        one_by_one.push(each);
        ferry.push(t);
    }

    let version = version_check(ctx)?;
    let total = median(ferry.iter().map(|t| t.total));
    let observed = median(ferry.iter().map(|t| t.observed));
    let sh = median(shell.iter().copied());
    let in_actions = median(ferry.iter().map(Timing::actions_sum));
    let engine = median(ferry.iter().map(|t| t.total - t.actions_sum()));
    let created = median(ferry.iter().map(|t| t.created));
    let before = median(ferry.iter().map(|t| t.before_first - t.created));
    let gaps = median(ferry.iter().map(|t| t.gaps));
    let tail = median(ferry.iter().map(|t| t.tail));
    let each_sum = median(one_by_one.iter().map(|e| e.iter().sum()));

    println!("\nmedians of {iters}:");
    println!("  ferry, POST → Succeeded (server's finished_at)   {total:7.0} ms   (seen by polling every {} ms: {observed:.0} ms)", POLL.as_millis());
    println!("  shell script, same commands                      {sh:7.0} ms   (fresh `git clone` + checkout before it, not timed: {:.0} ms)", median(checkout.iter().copied()));
    println!("where Ferry's time goes:");
    println!("  POST → run created                               {created:7.0} ms   (trigger: git fetch, ref, ferry.yaml, terraform version check, run rows)");
    println!("  run created → first action started               {before:7.0} ms   (driver start, environment hold, stage start)");
    println!("  inside actions (Σ action started→finished)       {in_actions:7.0} ms   vs {each_sum:.0} ms for the same processes timed one by one");
    println!("                                                               (the first action also checks the binary and checks out the commit)");
    println!(
        "  of which: one `terraform version -json`, as Ferry runs it at trigger: {version:.0} ms"
    );
    println!("  between actions (stage/status writes, log)       {gaps:7.0} ms");
    println!("  last action finished → run Succeeded             {tail:7.0} ms");
    println!("  engine overhead = total − Σ action durations     {engine:7.0} ms");
    println!("per action (median ms): ferry action   same process(es) from the bench   difference");
    let per_action = per_action_rows(&ferry, &one_by_one, &steps);
    print!("{per_action}");

    Ok(verdict_overhead(
        "engine overhead (5-stage no-op pipeline)",
        total,
        sh,
    ))
}

/// The median wall time of `terraform version -json` (Ferry's binary check), ms.
fn version_check(ctx: &Ctx) -> Result<f64> {
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        sh_ok(
            Command::new(&ctx.terraform)
                .args(["version", "-json"])
                .env("CHECKPOINT_DISABLE", "1"),
        )?;
        times.push(ms(started.elapsed()));
    }
    Ok(median(times.into_iter()))
}

fn verdict_overhead(what: &str, ferry: f64, shell: f64) -> String {
    let ratio = ferry / shell;
    let extra = ferry - shell;
    let strict = ratio <= 1.2 && extra <= 30.0;
    let bound = 1.2 * shell + 30.0;
    format!(
        "{what}: ferry {ferry:.0} ms vs shell {shell:.0} ms → ratio {ratio:.2}, {extra:+.0} ms \
         (target ≤1.2× and ≤ +30 ms): {}; [1.2×shell + 30 ms = {bound:.0} ms: {}]",
        pass(strict),
        pass(ferry <= bound)
    )
}

fn pass(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}

fn per_action_rows(ferry: &[Timing], one_by_one: &[Vec<f64>], steps: &Steps) -> String {
    let mut out = String::new();
    let Some(first) = ferry.first() else {
        return out;
    };
    for (index, (name, _)) in first.actions.iter().enumerate() {
        let f = median(
            ferry
                .iter()
                .filter_map(|t| t.actions.get(index).map(|a| a.1)),
        );
        // Several baseline steps belong to one action (plan runs `plan` and `show -json`).
        let idx: Vec<usize> = steps
            .list
            .iter()
            .enumerate()
            .filter(|(_, s)| s.action_index == index)
            .map(|(i, _)| i)
            .collect();
        let b = median(one_by_one.iter().map(|e| idx.iter().map(|&i| e[i]).sum()));
        let _ = writeln!(out, "  {name:<34} {f:7.0}   {b:7.0}   {:+7.0}", f - b);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// 2. Plan/apply of 100 terraform_data resources, and the bundled example
// ---------------------------------------------------------------------------------------------

fn plan_apply(ctx: &Ctx, iters: usize) -> Result<String> {
    println!("\n== 2. 100 terraform_data resources: plan/apply through Ferry vs by hand ==");
    let repo = GitRepo::new();
    repo.write("ferry.yaml", ferry_test_support::MINIMAL_FERRY_YAML)
        .write("main.tf", &ferry_test_support::terraform_data_config(100));
    let commit = repo.commit("100 resources");
    println!("pipeline: the three-line default (one `default` environment, auto-applied); a new project per iteration, so every run creates 100 resources");
    println!("by hand: the same terraform argv in a fresh checkout with local state (terraform.tfstate in the checkout), same environment variables");

    let hand_steps = |dir: &Path| -> Vec<Step> {
        let plan = dir.join("tfplan").to_string_lossy().into_owned();
        let tf = |args: &[&str]| {
            std::iter::once(ctx.terraform.clone())
                .chain(args.iter().map(|s| s.to_string()))
                .collect::<Vec<_>>()
        };
        vec![
            Step::plain("init", tf(&["init", "-input=false", "-no-color"])),
            Step::plain(
                "plan",
                tf(&["plan", "-input=false", "-no-color", &format!("-out={plan}")]),
            ),
            Step::plain("apply", tf(&["apply", "-input=false", "-no-color", &plan])),
        ]
    };
    // Warm-up, by hand and through Ferry, discarded.
    {
        let base = Baseline::new(&repo, &commit, ".")?;
        base.each(ctx, &Steps::by_hand(hand_steps(base.dir.path())))?;
        ctx.server.add_project("tfdata-warm", repo.path())?;
        ctx.server.run_to_end("tfdata-warm", "Succeeded")?;
    }
    let mut ferry = Vec::new();
    let mut hand: Vec<Vec<f64>> = Vec::new();
    let by_hand = || -> Result<Vec<f64>> {
        let base = Baseline::new(&repo, &commit, ".")?;
        let steps = Steps::by_hand(hand_steps(base.dir.path()));
        let each = base.each_local_state(ctx, &steps)?;
        ensure!(
            base.tf_dir.join("terraform.tfstate").exists(),
            "the by-hand apply wrote no terraform.tfstate"
        );
        Ok(each)
    };
    for i in 0..iters {
        let name = format!("tfdata-{i}");
        ctx.server.add_project(&name, repo.path())?;
        // Taking turns going first, as above.
        let (run, each) = if i % 2 == 0 {
            let run = ctx.server.run_to_end(&name, "Succeeded")?;
            (run, by_hand()?)
        } else {
            let each = by_hand()?;
            (ctx.server.run_to_end(&name, "Succeeded")?, each)
        };
        let summary = run
            .detail
            .plans
            .first()
            .map(|p| (p.add, p.change, p.destroy));
        ensure!(
            summary == Some((100, 0, 0)),
            "run {} planned {summary:?}, not +100",
            run.detail.run.id
        );
        let t = Timing::of(&run, "default")?;
        println!(
            "  iteration {}: ferry init {:.0} / plan {:.0} / apply {:.0} ms (run {:.0} ms); by hand init {:.0} / plan {:.0} / apply {:.0} ms",
            i + 1,
            t.action("terraform init"),
            t.action("terraform plan"),
            t.action("terraform apply"),
            t.total,
            each[0],
            each[1],
            each[2]
        );
        ferry.push(t);
        hand.push(each);
    }
    let f_plan = median(ferry.iter().map(|t| t.action("terraform plan")));
    let f_apply = median(ferry.iter().map(|t| t.action("terraform apply")));
    let f_init = median(ferry.iter().map(|t| t.action("terraform init")));
    let f_validate = median(ferry.iter().map(|t| t.action("terraform validate")));
    let f_total = median(ferry.iter().map(|t| t.total));
    let h_init = median(hand.iter().map(|e| e[0]));
    let h_plan = median(hand.iter().map(|e| e[1]));
    let h_apply = median(hand.iter().map(|e| e[2]));
    let f_pa = median(
        ferry
            .iter()
            .map(|t| t.action("terraform plan") + t.action("terraform apply")),
    );
    let h_pa = median(hand.iter().map(|e| e[1] + e[2]));
    let f_ipa = median(ferry.iter().map(|t| {
        t.action("terraform init") + t.action("terraform plan") + t.action("terraform apply")
    }));
    let h_ipa = median(hand.iter().map(|e| e[0] + e[1] + e[2]));
    println!("\nmedians of {iters} (ms):      ferry    by hand   ratio");
    println!(
        "  terraform init          {f_init:7.0}   {h_init:7.0}   {:.2}",
        f_init / h_init
    );
    println!("  terraform plan          {f_plan:7.0}   {h_plan:7.0}   {:.2}   (Ferry's plan action also runs `terraform show -json` and hashes the plan)", f_plan / h_plan);
    println!(
        "  terraform apply         {f_apply:7.0}   {h_apply:7.0}   {:.2}",
        f_apply / h_apply
    );
    println!(
        "  init + plan + apply     {f_ipa:7.0}   {h_ipa:7.0}   {:.2}",
        f_ipa / h_ipa
    );
    println!("  (ferry also ran terraform validate: {f_validate:.0} ms; whole run POST → Succeeded: {f_total:.0} ms)");
    let ratio = f_pa / h_pa;
    Ok(format!(
        "100-resource plan+apply: ferry {f_pa:.0} ms vs by hand {h_pa:.0} ms → ratio {ratio:.2}, {:+.0} ms (target ≤1.1×): {}; \
         [init+plan+apply: {f_ipa:.0} vs {h_ipa:.0} ms → {:.2}]",
        f_pa - h_pa,
        pass(ratio <= 1.1),
        f_ipa / h_ipa
    ))
}

fn example(ctx: &Ctx) -> Result<String> {
    println!("\n== 2b. examples/hello-infra, environment dev, once ==");
    let repo = GitRepo::from_dir(&ferry_test_support::example_dir());
    let commit = repo.head();
    ctx.server.add_project("hello-infra", repo.path())?;
    let run = ctx.server.run_to_end("hello-infra", "WaitingForApproval")?;
    let id = run.detail.run.id;
    let vars = Some("env/dev.tfvars");
    let steps = Steps::from_run(ctx, &run.detail, "dev", vars);
    steps.check_against_log(ctx, &run)?;
    let t = Timing::of(&run, "dev")?;
    let base = Baseline::new(&repo, &commit, ".")?;
    let script = ms(base.script(ctx, &steps)?);
    ctx.server
        .post::<Run>(&format!("/api/v1/runs/{id}/cancel"), serde_json::json!({}))?;
    println!(
        "dev ran {} actions ({} processes): {}",
        t.actions.len(),
        steps.list.len(),
        t.actions
            .iter()
            .map(|a| a.0.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("  ferry, POST → dev's last action finished         {:7.0} ms   (Σ action durations {:.0} ms)", t.end, t.actions_sum());
    println!("  shell script, same commands                      {script:7.0} ms");
    Ok(format!(
        "hello-infra dev (once): ferry {:.0} ms vs shell {script:.0} ms → ratio {:.2}, {:+.0} ms",
        t.end,
        t.end / script,
        t.end - script
    ))
}

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

struct Server {
    _process: support::Process,
    url: String,
    token: String,
    data_dir: PathBuf,
    http: reqwest::blocking::Client,
    _tmp: tempfile::TempDir,
}

/// A finished (or waiting) run, as the bench saw it.
struct Observed {
    detail: RunDetail,
    /// Wall-clock time just before the trigger POST was sent.
    posted: DateTime<Utc>,
    /// Time from sending the POST to seeing the wanted status.
    observed: Duration,
}

impl Server {
    fn start(path_var: &str) -> Result<Server> {
        let launched = support::launch(path_var, "ferry-bench-")?;
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()?;
        Ok(Server {
            _process: launched.process,
            url: launched.url,
            token: launched.token,
            data_dir: launched.data_dir,
            http,
            _tmp: launched.tmp,
        })
    }

    /// Where the run's Terraform writes its plan: the run's `out/` in the work dir (Ferry
    /// then copies it into the data dir, which no action sees).
    fn plans_dir(&self, run: i64) -> PathBuf {
        ferry_server::default_work_dir(&self.data_dir)
            .join(format!("run-{run}"))
            .join("out")
    }

    fn check<T: DeserializeOwned>(resp: reqwest::blocking::Response) -> Result<T> {
        let status = resp.status();
        let bytes = resp.bytes()?;
        ensure!(
            status.is_success(),
            "HTTP {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
        serde_json::from_slice(&bytes)
            .with_context(|| format!("unexpected response: {}", String::from_utf8_lossy(&bytes)))
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        Self::check(
            self.http
                .get(format!("{}{path}", self.url))
                .bearer_auth(&self.token)
                .send()?,
        )
    }

    fn post<T: DeserializeOwned>(&self, path: &str, body: serde_json::Value) -> Result<T> {
        Self::check(
            self.http
                .post(format!("{}{path}", self.url))
                .bearer_auth(&self.token)
                .json(&body)
                .send()?,
        )
    }

    fn add_project(&self, name: &str, repo: &Path) -> Result<()> {
        let _: serde_json::Value = self.post(
            "/api/v1/projects",
            serde_json::json!({"name": name, "repo": repo.to_string_lossy()}),
        )?;
        Ok(())
    }

    /// Triggers a run of `project` on `main` and polls until it reaches `want`; any other
    /// final status is a functional failure.
    fn run_to_end(&self, project: &str, want: &str) -> Result<Observed> {
        let posted = Utc::now();
        let started = Instant::now();
        let run: Run = self.post(
            &format!("/api/v1/projects/{project}/runs"),
            serde_json::json!({"ref": "main"}),
        )?;
        let deadline = started + Duration::from_secs(600);
        loop {
            let detail: RunDetail = self.get(&format!("/api/v1/runs/{}", run.id))?;
            if detail.run.status == want {
                return Ok(Observed {
                    detail,
                    posted,
                    observed: started.elapsed(),
                });
            }
            if detail.run.is_finished() {
                let log = self.log_text(run.id).unwrap_or_default();
                bail!(
                    "run {} of {project} ended {} ({}), not {want}; its log:\n{log}",
                    run.id,
                    detail.run.status,
                    detail.run.reason.as_deref().unwrap_or("no reason")
                );
            }
            ensure!(
                Instant::now() < deadline,
                "run {} of {project} still {} after 10 minutes",
                run.id,
                detail.run.status
            );
            std::thread::sleep(POLL);
        }
    }

    fn log_lines(&self, run: i64) -> Result<Vec<ferry_api::LogLine>> {
        let mut lines = Vec::new();
        let mut offset = 0;
        loop {
            let page: LogPage = self.get(&format!(
                "/api/v1/runs/{run}/logs?offset={offset}&limit=10000"
            ))?;
            if page.lines.is_empty() || page.next_offset == offset {
                return Ok(lines);
            }
            offset = page.next_offset;
            lines.extend(page.lines);
        }
    }

    fn log_text(&self, run: i64) -> Result<String> {
        Ok(self
            .log_lines(run)?
            .iter()
            .map(|l| format!("  [{} {}] {}\n", l.action, l.stream, l.text))
            .collect())
    }
}

// ---------------------------------------------------------------------------------------------
// Timings of a run, from its own timestamps
// ---------------------------------------------------------------------------------------------

fn parse_time(text: Option<&str>, what: &str) -> Result<DateTime<Utc>> {
    let text = text.with_context(|| format!("{what} has no timestamp"))?;
    Ok(DateTime::parse_from_rfc3339(text)
        .with_context(|| format!("{what}: `{text}`"))?
        .with_timezone(&Utc))
}

fn between(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    (b - a).num_microseconds().unwrap_or(0) as f64 / 1000.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One run's time split up (milliseconds; the server stores timestamps to the millisecond).
struct Timing {
    /// POST sent → run finished (`finished_at`); for a run still waiting, → `end`.
    total: f64,
    /// POST sent → the bench saw the wanted status.
    observed: f64,
    /// POST sent → the environment's last action finished.
    end: f64,
    /// POST sent → the first action started.
    before_first: f64,
    /// POST sent → the run row was created (the trigger's own work).
    created: f64,
    /// Σ of the idle time between one action's end and the next one's start.
    gaps: f64,
    /// Last action finished → run finished.
    tail: f64,
    /// (name, duration) of each action that ran, in order.
    actions: Vec<(String, f64)>,
}

impl Timing {
    fn of(run: &Observed, environment: &str) -> Result<Timing> {
        let mut spans = Vec::new();
        for stage in run
            .detail
            .stages
            .iter()
            .filter(|s| s.environment == environment)
        {
            for action in &stage.actions {
                if action.started_at.is_none() {
                    continue;
                }
                let what = format!("action {}", action.id);
                let start = parse_time(action.started_at.as_deref(), &what)?;
                let end = parse_time(action.finished_at.as_deref(), &what)?;
                spans.push((action.name.clone(), start, end));
            }
        }
        ensure!(
            !spans.is_empty(),
            "run {} ran no action in {environment}",
            run.detail.run.id
        );
        let first = spans[0].1;
        let last = spans[spans.len() - 1].2;
        let finished = match run.detail.run.finished_at.as_deref() {
            Some(t) => parse_time(Some(t), "run")?,
            None => last,
        };
        let gaps = spans.windows(2).map(|w| between(w[0].2, w[1].1)).sum();
        Ok(Timing {
            total: between(run.posted, finished),
            observed: ms(run.observed),
            end: between(run.posted, last),
            before_first: between(run.posted, first),
            created: between(
                run.posted,
                parse_time(Some(&run.detail.run.created_at), "run")?,
            ),
            gaps,
            tail: between(last, finished),
            actions: spans
                .iter()
                .map(|(n, s, e)| (n.clone(), between(*s, *e)))
                .collect(),
        })
    }

    fn actions_sum(&self) -> f64 {
        self.actions.iter().map(|a| a.1).sum()
    }

    fn action(&self, name: &str) -> f64 {
        self.actions
            .iter()
            .filter(|a| a.0 == name)
            .map(|a| a.1)
            .sum()
    }
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

// ---------------------------------------------------------------------------------------------
// The baseline: the processes a run executed, run from this process
// ---------------------------------------------------------------------------------------------

/// One process, with `{PLANS}` standing for the directory of plan files (the run's `out/`,
/// or the baseline's own).
struct Step {
    /// The action it belongs to (its name, and its index among the run's actions).
    action: String,
    action_index: usize,
    /// The run's action id (0 for by-hand steps).
    action_id: i64,
    argv: Vec<String>,
}

const PLANS: &str = "{PLANS}";
/// The directory an apply reads its plan from.
const APPLIED: &str = "{APPLIED}";

impl Step {
    fn plain(name: &str, argv: Vec<String>) -> Step {
        Step {
            action: name.to_owned(),
            action_index: 0,
            action_id: 0,
            argv,
        }
    }

    fn argv(&self, plans: &Path) -> Vec<String> {
        // An apply reads the approved plan's copy from the run's `plan/`, beside the `out/`
        // Terraform planned into; a baseline keeps both in its own directory.
        let applied = if plans.file_name().is_some_and(|n| n == "out") {
            plans.with_file_name("plan")
        } else {
            plans.to_owned()
        };
        let plans = plans.to_string_lossy();
        let applied = applied.to_string_lossy();
        self.argv
            .iter()
            .map(|a| a.replace(APPLIED, &applied).replace(PLANS, &plans))
            .collect()
    }

    /// As Ferry shows it in the log: `$ ` and the argv joined by spaces, or the script of a
    /// user command (which runs as `/bin/sh -c SCRIPT`).
    fn render(&self, plans: &Path) -> String {
        let argv = self.argv(plans);
        match argv.as_slice() {
            [sh, c, script] if sh == "/bin/sh" && c == "-c" => script.clone(),
            _ => argv.join(" "),
        }
    }
}

struct Steps {
    list: Vec<Step>,
}

impl Steps {
    fn by_hand(list: Vec<Step>) -> Steps {
        Steps { list }
    }

    /// The processes Ferry starts for each action of `environment` that ran, mirroring
    /// `ferry-engine/src/driver/action.rs` (`run_action`, `plan`); `check_against_log` verifies it.
    fn from_run(
        ctx: &Ctx,
        detail: &RunDetail,
        environment: &str,
        vars_file: Option<&str>,
    ) -> Steps {
        let tf = |args: &[&str]| {
            std::iter::once(ctx.terraform.clone())
                .chain(args.iter().map(|s| s.to_string()))
                .collect::<Vec<_>>()
        };
        let mut list = Vec::new();
        let ran = detail
            .stages
            .iter()
            .filter(|s| s.environment == environment)
            .flat_map(|s| &s.actions)
            .filter(|a| a.started_at.is_some());
        for (index, action) in ran.enumerate() {
            let mut push = |argv: Vec<String>| {
                list.push(Step {
                    action: action.name.clone(),
                    action_index: index,
                    action_id: action.id,
                    argv,
                })
            };
            let plan = format!("{PLANS}/{environment}.tfplan");
            let json = format!("{PLANS}/{environment}.json");
            match action.kind.as_str() {
                "terraform_init" => push(tf(&["init", "-input=false", "-no-color"])),
                "terraform_validate" => push(tf(&["validate", "-no-color"])),
                "terraform_plan" => {
                    let mut argv =
                        tf(&["plan", "-input=false", "-no-color", &format!("-out={plan}")]);
                    argv.extend(vars_file.map(|v| format!("-var-file={v}")));
                    push(argv);
                    push(vec![
                        "/bin/sh".into(),
                        "-c".into(),
                        r#"exec "$0" show -json -no-color "$1" > "$2""#.into(),
                        ctx.terraform.clone(),
                        plan,
                        json,
                    ]);
                }
                "terraform_apply" => push(tf(&[
                    "apply",
                    "-input=false",
                    "-no-color",
                    &format!("{APPLIED}/{environment}.tfplan"),
                ])),
                // Judged inside the server: no process, so nothing for the baseline to run;
                // its time is part of Ferry's overhead.
                "policy_check" => {}
                _ => push(vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    action.command.clone().unwrap_or_default(),
                ]),
            }
        }
        Steps { list }
    }

    /// The baseline is only fair if it runs what the run ran: compare with the `$ ...` lines
    /// Ferry logged before starting each process.
    fn check_against_log(&self, ctx: &Ctx, run: &Observed) -> Result<()> {
        let id = run.detail.run.id;
        let ids: Vec<i64> = self.list.iter().map(|s| s.action_id).collect();
        let logged: Vec<String> = ctx
            .server
            .log_lines(id)?
            .into_iter()
            .filter(|l| l.stream == "sys" && ids.contains(&l.action))
            .filter_map(|l| l.text.strip_prefix("$ ").map(str::to_owned))
            .collect();
        let ours: Vec<String> = self
            .list
            .iter()
            .map(|s| s.render(&ctx.server.plans_dir(id)))
            .collect();
        if logged != ours {
            bail!(
                "the baseline does not match what run {id} executed; update Steps::from_run.\n ran:\n  {}\n baseline:\n  {}",
                logged.join("\n  "),
                ours.join("\n  ")
            );
        }
        Ok(())
    }
}

/// A fresh checkout of the commit, as Ferry makes one, with Ferry's backend override pointing
/// at a state file of its own.
struct Baseline {
    dir: tempfile::TempDir,
    /// How long `git clone` + `git checkout` took (reported, not part of the baseline).
    checkout: Duration,
    tf_dir: PathBuf,
}

impl Baseline {
    fn new(repo: &GitRepo, commit: &str, tf_dir: &str) -> Result<Baseline> {
        let dir = tempfile::Builder::new()
            .prefix("ferry-bench-base-")
            .tempdir()?;
        let src = dir.path().join("src");
        let started = Instant::now();
        sh_ok(
            Command::new("git")
                .args(["clone", "--quiet", "--no-checkout", "--"])
                .arg(repo.path())
                .arg(&src),
        )?;
        sh_ok(
            Command::new("git")
                .arg("-C")
                .arg(&src)
                .args(["checkout", "--quiet", "--detach", commit]),
        )?;
        let checkout = started.elapsed();
        std::fs::create_dir_all(dir.path().join("plans"))?;
        Ok(Baseline {
            tf_dir: src.join(tf_dir),
            dir,
            checkout,
        })
    }

    fn plans(&self) -> PathBuf {
        self.dir.path().join("plans")
    }

    /// The environment Ferry gives an action (less `FERRY_*` run metadata, which no command
    /// here reads).
    fn env(&self, ctx: &Ctx, tf_data: bool) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = PASSTHROUGH
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| ((*k).to_owned(), v)))
            .collect();
        env.push(("PATH".into(), ctx.path_var.clone()));
        for (k, v) in [
            ("CI", "true"),
            ("TF_IN_AUTOMATION", "1"),
            ("TF_INPUT", "0"),
            ("CHECKPOINT_DISABLE", "1"),
        ] {
            env.push((k.into(), v.into()));
        }
        if tf_data {
            env.push((
                "TF_DATA_DIR".into(),
                self.dir.path().join("tf").to_string_lossy().into_owned(),
            ));
        }
        env
    }

    fn with_backend_override(&self) -> Result<()> {
        let state = self.dir.path().join("state").join("terraform.tfstate");
        std::fs::create_dir_all(state.parent().unwrap_or(self.dir.path()))?;
        // The baseline keeps its state in a local file, as PRODUCT.md §7 compares against.
        let path = serde_json::to_string(&state.to_string_lossy()).unwrap_or_default();
        let text = format!("terraform {{\n  backend \"local\" {{\n    path = {path}\n  }}\n}}\n");
        std::fs::write(
            self.tf_dir.join(ferry_engine::terraform::OVERRIDE_FILE),
            text,
        )?;
        Ok(())
    }

    /// Runs the steps as one `/bin/sh` script (`set -e`), output to a file; returns its wall time.
    fn script(&self, ctx: &Ctx, steps: &Steps) -> Result<Duration> {
        self.with_backend_override()?;
        let mut text = String::from("set -e\n");
        for step in &steps.list {
            let line: Vec<String> = step.argv(&self.plans()).iter().map(|a| quote(a)).collect();
            let _ = writeln!(text, "{}", line.join(" "));
        }
        let script = self.dir.path().join("baseline.sh");
        std::fs::write(&script, text)?;
        let out = File::create(self.dir.path().join("baseline.log"))?;
        let started = Instant::now();
        let status = Command::new("/bin/sh")
            .arg(&script)
            .current_dir(&self.tf_dir)
            .env_clear()
            .envs(self.env(ctx, true))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .status()?;
        let elapsed = started.elapsed();
        if !status.success() {
            let log =
                std::fs::read_to_string(self.dir.path().join("baseline.log")).unwrap_or_default();
            bail!("the baseline script failed ({status}):\n{log}");
        }
        Ok(elapsed)
    }

    /// Runs each step as its own process from this one, timing each (ms).
    fn each(&self, ctx: &Ctx, steps: &Steps) -> Result<Vec<f64>> {
        self.with_backend_override()?;
        self.each_inner(ctx, steps, true)
    }

    /// Like `each`, by hand: no override, no TF_DATA_DIR (`.terraform` and `terraform.tfstate`
    /// in the checkout).
    fn each_local_state(&self, ctx: &Ctx, steps: &Steps) -> Result<Vec<f64>> {
        self.each_inner(ctx, steps, false)
    }

    fn each_inner(&self, ctx: &Ctx, steps: &Steps, ferry_like: bool) -> Result<Vec<f64>> {
        let mut times = Vec::new();
        for step in &steps.list {
            let argv = step.argv(&self.plans());
            let out = File::create(self.dir.path().join("step.log"))?;
            let started = Instant::now();
            let status = Command::new(&argv[0])
                .args(&argv[1..])
                .current_dir(&self.tf_dir)
                .env_clear()
                .envs(self.env(ctx, ferry_like))
                .stdin(Stdio::null())
                .stdout(out.try_clone()?)
                .stderr(out)
                .status()?;
            times.push(ms(started.elapsed()));
            if !status.success() {
                let log =
                    std::fs::read_to_string(self.dir.path().join("step.log")).unwrap_or_default();
                bail!(
                    "baseline step `{}` failed ({status}):\n{log}",
                    argv.join(" ")
                );
            }
        }
        Ok(times)
    }
}

fn sh_ok(cmd: &mut Command) -> Result<()> {
    let out = cmd.stdin(Stdio::null()).output()?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Quotes one word for `/bin/sh`.
fn quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@,+%".contains(c))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r#"'\''"#))
    }
}
