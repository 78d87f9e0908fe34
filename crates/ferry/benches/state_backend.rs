//! Ferry's Terraform state backend (`/tf/state/PROJECT/ENV`, docs/state-backend.md) against
//! PRODUCT.md §7, measured in one process on one machine against the real `ferry` binary:
//!
//! 1. GET and POST of a 1 MiB state (a valid Terraform state padded with `terraform_data`
//!    resources; the serial goes up on every POST, so each write is a new durable, encrypted
//!    version), written the way Terraform writes: under a lock, with `?ID=`. p50/p90/p99 over
//!    `FERRY_BENCH_REQUESTS` requests each (default 200) with one keep-alive client. Target:
//!    p50 < 5 ms.
//! 2. LOCK/UNLOCK pairs per second on SQLite: sequential pairs on one state, and 4 clients on 4
//!    states at once. Target: ≥ 2,000 pairs/s.
//! 3. `terraform init`/`plan`/`apply -auto-approve`/`plan` of 100 `terraform_data` resources
//!    with `backend "http" {}` pointed at Ferry (`TF_HTTP_*`) against the same with a local
//!    state file, taking turns going first; a fresh state address per iteration, so every apply
//!    creates 100 resources, and a second plan on the applied state. Medians of
//!    `FERRY_BENCH_ITERS` (default 5). Target: ratio ≤ 1.1×.
//! 4. Where the time of a state write goes, piece by piece, in this process: JSON parsing,
//!    SHA-256, AES-256-GCM seal/open, fsync of a 1 MiB file and its directory, a SQLite
//!    (WAL, `synchronous=FULL`) commit — on the same file system as the server's data dir.
//!
//! This is a benchmark, not a timed test: it prints figures and verdicts and never fails on
//! them (the machine is shared and noisy). It exits non-zero only when something does not
//! work: a request answered with an unexpected status, a Terraform command that fails.
//! Run: `cargo bench -p ferry --bench state_backend`. See docs/benchmarks.md.

mod support;

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use ferry_test_support::GitRepo;
use reqwest::blocking::Client;
use reqwest::{Method, StatusCode};

/// Size of the state of part 1.
const STATE_BYTES: usize = 1024 * 1024;
const PROJECT: &str = "bench";

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

fn env_number(name: &str, default: usize) -> Result<usize> {
    let n = match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name}={v} is not a number"))?,
        Err(_) => default,
    };
    ensure!(n >= 1, "{name} must be at least 1");
    Ok(n)
}

fn run() -> Result<()> {
    let iters = env_number("FERRY_BENCH_ITERS", 5)?;
    let requests = env_number("FERRY_BENCH_REQUESTS", 200)?;
    let terraform = ferry_test_support::terraform_dir().join("terraform");
    let path_var = ferry_test_support::path_with_terraform();
    let server = Server::start(&path_var)?;
    println!(
        "ferry state backend bench: {requests} requests, {iters} terraform iterations (median), {} CPUs, terraform {}",
        cpus(),
        terraform.display()
    );
    println!(
        "server {} (data dir {})",
        server.url,
        server.data_dir.display()
    );
    // States live under a project; any environment name is a state address.
    let repo = GitRepo::new();
    repo.write("ferry.yaml", ferry_test_support::MINIMAL_FERRY_YAML)
        .write("main.tf", &ferry_test_support::terraform_data_config(1));
    repo.commit("bench project");
    server.add_project(PROJECT, repo.path())?;

    let mut summary = Vec::new();
    summary.extend(get_post(&server, requests)?);
    summary.extend(lock_pairs(&server)?);
    summary.extend(plan_apply(&server, &terraform, &path_var, iters)?);
    pieces(&server.data_dir)?;

    println!("\n== Summary (PRODUCT.md §7; the machine is shared, expect noise) ==");
    for line in summary {
        println!("{line}");
    }
    Ok(())
}

fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0)
}

fn pass(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    percentile(&values.collect::<Vec<_>>(), 50.0)
}

/// Nearest-rank percentile (`p` in 0..=100) of unsorted values.
fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    if p == 50.0 && v.len().is_multiple_of(2) {
        let n = v.len();
        return (v[n / 2 - 1] + v[n / 2]) / 2.0;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

fn quantiles(values: &[f64]) -> String {
    format!(
        "p50 {:6.2} ms   p90 {:6.2} ms   p99 {:6.2} ms   max {:6.2} ms",
        percentile(values, 50.0),
        percentile(values, 90.0),
        percentile(values, 99.0),
        percentile(values, 100.0)
    )
}

// ---------------------------------------------------------------------------------------------
// A Terraform state of a given size
// ---------------------------------------------------------------------------------------------

const LINEAGE: &str = "6f1c3b8e-bench-4f00-9e1a-ferrystate01";

/// A valid version-4 state of `terraform_data` instances, at least `bytes` long.
fn state_json(serial: u64, bytes: usize) -> Vec<u8> {
    let instance = |i: usize| {
        serde_json::json!({
            "index_key": i,
            "schema_version": 0,
            "attributes": {
                "id": format!("{:08x}-5e1f-8c3a-b1d2-{:012x}", i, i * 7919),
                "input": {"value": format!("r-{i}-{}", "x".repeat(64)), "type": "string"},
                "output": {"value": format!("r-{i}-{}", "x".repeat(64)), "type": "string"},
                "triggers_replace": null
            },
            "sensitive_attributes": []
        })
    };
    // ~300 bytes an instance (compact); add until big enough.
    let mut instances = Vec::new();
    let mut size = 400;
    while size < bytes {
        let one = instance(instances.len());
        size += one.to_string().len() + 1;
        instances.push(one);
    }
    let state = serde_json::json!({
        "version": 4,
        "terraform_version": "1.9.8",
        "serial": serial,
        "lineage": LINEAGE,
        "outputs": {},
        "resources": [{
            "mode": "managed",
            "type": "terraform_data",
            "name": "r",
            "provider": "provider[\"terraform.io/builtin/terraform\"]",
            "instances": instances
        }],
        "check_results": null
    });
    serde_json::to_vec(&state).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// 1. GET and POST of a 1 MiB state
// ---------------------------------------------------------------------------------------------

fn get_post(server: &Server, requests: usize) -> Result<Vec<String>> {
    println!("\n== 1. GET and POST of a 1 MiB state, one keep-alive client, loopback ==");
    let client = server.client()?;
    let addr = server.state_url("mib");
    let first = state_json(1, STATE_BYTES);
    println!(
        "state: {} bytes ({} instances of terraform_data), serial +1 on every POST",
        first.len(),
        serde_json::from_slice::<serde_json::Value>(&first)?["resources"][0]["instances"]
            .as_array()
            .map_or(0, Vec::len)
    );
    // Terraform writes under its lock, naming it with `?ID=`.
    let lock = LockBody::new("post-bench");
    server.expect(
        server.req(&client, "LOCK", &addr).body(lock.json()),
        StatusCode::OK,
    )?;
    let write_url = format!("{addr}?ID={}", lock.id);
    // Bodies made before the clock starts.
    let bodies: Vec<Vec<u8>> = (0..requests + 5)
        .map(|i| {
            let mut b = first.clone();
            set_serial(&mut b, 1 + i as u64)?;
            Ok(b)
        })
        .collect::<Result<_>>()?;
    // Warm-up: the first write creates the state row, and the connection gets opened.
    let mut next = 0;
    for _ in 0..5 {
        server.expect(
            server
                .req(&client, "POST", &write_url)
                .body(bodies[next].clone()),
            StatusCode::OK,
        )?;
        next += 1;
    }
    let mut post = Vec::with_capacity(requests);
    for _ in 0..requests {
        let body = bodies[next].clone();
        next += 1;
        let started = Instant::now();
        server.expect(
            server.req(&client, "POST", &write_url).body(body),
            StatusCode::OK,
        )?;
        post.push(ms(started.elapsed()));
    }
    server.expect(
        server.req(&client, "UNLOCK", &addr).body(lock.json()),
        StatusCode::OK,
    )?;
    let last = &bodies[next - 1];

    let mut get = Vec::with_capacity(requests);
    for i in 0..requests + 5 {
        let started = Instant::now();
        let resp = server.req(&client, "GET", &addr).send()?;
        ensure!(
            resp.status() == StatusCode::OK,
            "GET: HTTP {}",
            resp.status()
        );
        let bytes = resp.bytes()?;
        let elapsed = ms(started.elapsed());
        ensure!(
            bytes.as_ref() == last.as_slice(),
            "GET did not answer the last write"
        );
        if i >= 5 {
            get.push(elapsed);
        }
    }
    // For scale: the same client, a request with no body and no state work.
    let mut health = Vec::new();
    for _ in 0..requests {
        let started = Instant::now();
        server.expect(
            client.get(format!("{}/healthz", server.url)),
            StatusCode::OK,
        )?;
        health.push(ms(started.elapsed()));
    }
    // And the cheapest authenticated state request: GET of a state with no version (token
    // lookup + one SQLite read, a 404).
    let mut empty = Vec::new();
    let none = server.state_url("never-written");
    for _ in 0..requests {
        let started = Instant::now();
        server.expect(server.req(&client, "GET", &none), StatusCode::NOT_FOUND)?;
        empty.push(ms(started.elapsed()));
    }
    println!(
        "  GET  1 MiB state (decrypt, answer)      {}",
        quantiles(&get)
    );
    println!(
        "  POST 1 MiB state (new version, ?ID=)    {}",
        quantiles(&post)
    );
    println!(
        "  GET  /healthz (HTTP floor)              {}",
        quantiles(&health)
    );
    println!(
        "  GET  state with no version (auth + read, 404) {}",
        quantiles(&empty)
    );
    let g = percentile(&get, 50.0);
    let p = percentile(&post, 50.0);
    Ok(vec![
        format!(
            "GET 1 MiB state: p50 {g:.2} ms, p90 {:.2}, p99 {:.2} (target p50 < 5 ms): {}",
            percentile(&get, 90.0),
            percentile(&get, 99.0),
            pass(g < 5.0)
        ),
        format!(
            "POST 1 MiB state: p50 {p:.2} ms, p90 {:.2}, p99 {:.2} (target p50 < 5 ms): {}",
            percentile(&post, 90.0),
            percentile(&post, 99.0),
            pass(p < 5.0)
        ),
    ])
}

/// Rewrites the `"serial":N` field of a compact state to `serial`.
fn set_serial(body: &mut Vec<u8>, serial: u64) -> Result<()> {
    let text = String::from_utf8_lossy(body).into_owned();
    let key = "\"serial\":";
    let start = text
        .find(key)
        .map(|i| i + key.len())
        .context("the generated state has no serial")?;
    let end = start + text[start..].find(',').unwrap_or(0);
    let replaced = format!("{}{}{}", &text[..start], serial, &text[end..]);
    *body = replaced.into_bytes();
    Ok(())
}

struct LockBody {
    id: String,
}

impl LockBody {
    fn new(tag: &str) -> LockBody {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        LockBody {
            id: format!(
                "0000{n:04x}-{:04x}-4000-8000-{:012x}",
                tag.len(),
                std::process::id()
            ),
        }
    }

    fn json(&self) -> String {
        serde_json::json!({
            "ID": self.id,
            "Operation": "OperationTypeApply",
            "Info": "",
            "Who": "bench@localhost",
            "Version": "1.9.8",
            "Created": "2026-01-01T00:00:00Z",
            "Path": ""
        })
        .to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// 2. LOCK/UNLOCK pairs per second
// ---------------------------------------------------------------------------------------------

const PAIRS_SECONDS: f64 = 3.0;

/// LOCK then UNLOCK of `state`, as many pairs as fit in `PAIRS_SECONDS`; (pairs, seconds,
/// per-pair latencies in ms).
fn pairs(server: &Server, state: &str) -> Result<(usize, f64, Vec<f64>)> {
    let client = server.client()?;
    let addr = server.state_url(state);
    let lock = LockBody::new(state);
    let body = lock.json();
    // Warm-up.
    for _ in 0..20 {
        server.expect(
            server.req(&client, "LOCK", &addr).body(body.clone()),
            StatusCode::OK,
        )?;
        server.expect(
            server.req(&client, "UNLOCK", &addr).body(body.clone()),
            StatusCode::OK,
        )?;
    }
    let mut lat = Vec::new();
    let started = Instant::now();
    while started.elapsed().as_secs_f64() < PAIRS_SECONDS {
        let one = Instant::now();
        server.expect(
            server.req(&client, "LOCK", &addr).body(body.clone()),
            StatusCode::OK,
        )?;
        server.expect(
            server.req(&client, "UNLOCK", &addr).body(body.clone()),
            StatusCode::OK,
        )?;
        lat.push(ms(one.elapsed()));
    }
    Ok((lat.len(), started.elapsed().as_secs_f64(), lat))
}

fn lock_pairs(server: &Server) -> Result<Vec<String>> {
    println!("\n== 2. LOCK/UNLOCK pairs per second (SQLite), loopback, {PAIRS_SECONDS} s each ==");
    let (n, secs, lat) = pairs(server, "lock-seq")?;
    let seq = n as f64 / secs;
    println!("  sequential, one client, one state: {n} pairs in {secs:.2} s = {seq:7.0} pairs/s; per pair {}", quantiles(&lat));

    let results: Vec<Result<(usize, f64, Vec<f64>)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|i| scope.spawn(move || pairs(server, &format!("lock-par-{i}"))))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("client thread panicked")))
            })
            .collect()
    });
    let mut total = 0;
    let mut wall: f64 = 0.0;
    let mut all = Vec::new();
    for r in results {
        let (n, secs, lat) = r?;
        total += n;
        wall = wall.max(secs);
        all.extend(lat);
    }
    let par = total as f64 / wall;
    println!("  4 clients on 4 states at once:     {total} pairs in {wall:.2} s = {par:7.0} pairs/s; per pair {}", quantiles(&all));
    Ok(vec![
        format!(
            "LOCK/UNLOCK sequential: {seq:.0} pairs/s (target ≥ 2,000): {}",
            pass(seq >= 2000.0)
        ),
        format!(
            "LOCK/UNLOCK 4 clients × 4 states: {par:.0} pairs/s (target ≥ 2,000): {}",
            pass(par >= 2000.0)
        ),
    ])
}

// ---------------------------------------------------------------------------------------------
// 3. terraform plan/apply against Ferry's backend vs a local state file
// ---------------------------------------------------------------------------------------------

const STEPS: [&str; 4] = ["init", "plan (no state)", "apply", "plan (applied)"];

/// One `terraform` workspace: init, plan, apply -auto-approve, plan again; ms each.
fn terraform_once(
    server: &Server,
    terraform: &Path,
    path_var: &str,
    state: Option<&str>,
) -> Result<Vec<f64>> {
    let dir = tempfile::Builder::new()
        .prefix("ferry-sbench-tf-")
        .tempdir()?;
    std::fs::write(
        dir.path().join("main.tf"),
        ferry_test_support::terraform_data_config(100),
    )?;
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), path_var.into()),
        (
            "HOME".into(),
            std::env::var("HOME").unwrap_or_else(|_| "/tmp".into()),
        ),
        ("CHECKPOINT_DISABLE".into(), "1".into()),
        ("TF_IN_AUTOMATION".into(), "1".into()),
        ("TF_INPUT".into(), "0".into()),
    ];
    if let Some(name) = state {
        std::fs::write(
            dir.path().join("backend.tf"),
            "terraform {\n  backend \"http\" {}\n}\n",
        )?;
        let addr = server.state_url(name);
        for key in [
            "TF_HTTP_ADDRESS",
            "TF_HTTP_LOCK_ADDRESS",
            "TF_HTTP_UNLOCK_ADDRESS",
        ] {
            env.push((key.into(), addr.clone()));
        }
        env.push(("TF_HTTP_USERNAME".into(), "bench".into()));
        env.push(("TF_HTTP_PASSWORD".into(), server.token.clone()));
    }
    let argvs: [&[&str]; 4] = [
        &["init", "-input=false", "-no-color"],
        &["plan", "-input=false", "-no-color"],
        &["apply", "-input=false", "-no-color", "-auto-approve"],
        &["plan", "-input=false", "-no-color", "-detailed-exitcode"],
    ];
    let mut times = Vec::new();
    for (i, args) in argvs.iter().enumerate() {
        let log = dir.path().join("step.log");
        let out = File::create(&log)?;
        let started = Instant::now();
        let status = Command::new(terraform)
            .args(*args)
            .current_dir(dir.path())
            .env_clear()
            .envs(env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .status()?;
        times.push(ms(started.elapsed()));
        // The last plan must find nothing to do (exit 0 with -detailed-exitcode).
        if !status.success() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            bail!(
                "terraform {} ({}) failed ({status}):\n{text}",
                args.join(" "),
                STEPS[i]
            );
        }
    }
    if state.is_none() {
        ensure!(
            dir.path().join("terraform.tfstate").exists(),
            "the local apply wrote no terraform.tfstate"
        );
    }
    Ok(times)
}

fn plan_apply(
    server: &Server,
    terraform: &Path,
    path_var: &str,
    iters: usize,
) -> Result<Vec<String>> {
    println!("\n== 3. 100 terraform_data resources: Ferry's http backend vs a local state file ==");
    println!("each iteration, both ways in a fresh directory: init, plan, apply -auto-approve, plan -detailed-exitcode (no changes)");
    println!("ferry: backend \"http\" {{}} + TF_HTTP_*, a fresh state address per iteration; local: no backend block");
    // Warm-up, both, discarded.
    terraform_once(server, terraform, path_var, Some("tf-warm"))?;
    terraform_once(server, terraform, path_var, None)?;
    let client = server.client()?;
    let mut ferry = Vec::new();
    let mut local = Vec::new();
    for i in 0..iters {
        let name = format!("tf-{i}");
        let (f, l) = if i % 2 == 0 {
            let f = terraform_once(server, terraform, path_var, Some(&name))?;
            (f, terraform_once(server, terraform, path_var, None)?)
        } else {
            let l = terraform_once(server, terraform, path_var, None)?;
            (terraform_once(server, terraform, path_var, Some(&name))?, l)
        };
        // The apply's state is in Ferry, with 100 instances.
        let resp = server
            .req(&client, "GET", &server.state_url(&name))
            .send()?;
        ensure!(
            resp.status() == StatusCode::OK,
            "GET {name}: HTTP {}",
            resp.status()
        );
        let state: serde_json::Value = serde_json::from_slice(&resp.bytes()?)?;
        let n = state["resources"].as_array().map_or(0, |r| {
            r.iter()
                .map(|r| r["instances"].as_array().map_or(0, Vec::len))
                .sum()
        });
        ensure!(n == 100, "state {name} holds {n} instances, not 100");
        println!(
            "  iteration {}: ferry {} ms; local {} ms",
            i + 1,
            f.iter()
                .map(|t| format!("{t:.0}"))
                .collect::<Vec<_>>()
                .join(" / "),
            l.iter()
                .map(|t| format!("{t:.0}"))
                .collect::<Vec<_>>()
                .join(" / ")
        );
        ferry.push(f);
        local.push(l);
    }
    println!("\nmedians of {iters} (ms):          ferry     local   ratio");
    let mut rows = Vec::new();
    for (k, step) in STEPS.iter().enumerate() {
        let f = median(ferry.iter().map(|t| t[k]));
        let l = median(local.iter().map(|t| t[k]));
        println!("  terraform {step:<16} {f:7.0}   {l:7.0}   {:.2}", f / l);
        rows.push((f, l));
    }
    let pa_f = median(ferry.iter().map(|t| t[1] + t[2]));
    let pa_l = median(local.iter().map(|t| t[1] + t[2]));
    println!(
        "  plan + apply               {pa_f:7.0}   {pa_l:7.0}   {:.2}",
        pa_f / pa_l
    );
    let mut out = Vec::new();
    for (k, what) in [
        (2, "apply (creates 100)"),
        (3, "plan (100 applied, no changes)"),
        (1, "plan (empty state)"),
    ] {
        let (f, l) = rows[k];
        out.push(format!(
            "terraform {what}: ferry {f:.0} ms vs local {l:.0} ms → ratio {:.2}, {:+.0} ms (target ≤ 1.1×): {}",
            f / l,
            f - l,
            pass(f / l <= 1.1)
        ));
    }
    out.push(format!(
        "terraform plan + apply: ferry {pa_f:.0} ms vs local {pa_l:.0} ms → ratio {:.2} (target ≤ 1.1×): {}",
        pa_f / pa_l,
        pass(pa_f / pa_l <= 1.1)
    ));
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// 4. The pieces of a state write, in this process
// ---------------------------------------------------------------------------------------------

fn pieces(data_dir: &Path) -> Result<()> {
    println!("\n== 4. The pieces of a 1 MiB state write and of a lock, in this process (median of 50, ms) ==");
    let body = state_json(1, STATE_BYTES);
    let n = 50;
    let time = |f: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
        let mut v = Vec::new();
        for _ in 0..n {
            let started = Instant::now();
            f()?;
            v.push(ms(started.elapsed()));
        }
        Ok(median(v.into_iter()))
    };
    let parse_tree = time(&mut || {
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        std::hint::black_box(v);
        Ok(())
    })?;
    // What `ferry_state::parse_state` does: a scan that builds no tree.
    let parse_scan = time(&mut || {
        let v: serde::de::IgnoredAny = serde_json::from_slice(&body)?;
        std::hint::black_box(v);
        Ok(())
    })?;
    let text = String::from_utf8(body.clone())?;
    let sha = time(&mut || {
        std::hint::black_box(ferry_secrets::hash_token(&text));
        Ok(())
    })?;
    let master = ferry_secrets::MasterKey::from_bytes([7; 32]);
    let seal = time(&mut || {
        std::hint::black_box(ferry_secrets::envelope::seal(&master, &body, b"ctx").to_bytes());
        Ok(())
    })?;
    let sealed = ferry_secrets::envelope::seal(&master, &body, b"ctx");
    let sealed_bytes = sealed.to_bytes();
    let from_bytes = time(&mut || {
        std::hint::black_box(ferry_secrets::envelope::Sealed::from_bytes(&sealed_bytes)?);
        Ok(())
    })?;
    let open = time(&mut || {
        std::hint::black_box(ferry_secrets::envelope::open(&master, &sealed, b"ctx")?);
        Ok(())
    })?;
    let copy = time(&mut || {
        std::hint::black_box(body.clone());
        Ok(())
    })?;
    // On the server's file system (a sibling of its data dir: nothing of the server's is
    // touched).
    let scratch = tempfile::Builder::new()
        .prefix("pieces-")
        .tempdir_in(data_dir.parent().unwrap_or(data_dir))?;
    let mut k = 0;
    let write_only = time(&mut || {
        k += 1;
        let mut f = File::create(scratch.path().join(format!("w{k}")))?;
        f.write_all(&sealed_bytes)?;
        Ok(())
    })?;
    let read_back = time(&mut || {
        std::hint::black_box(std::fs::read(scratch.path().join("w1"))?);
        Ok(())
    })?;
    // `blob::write_durable`: temp file, fsync, rename, fsync of the directory.
    let durable = time(&mut || {
        k += 1;
        let tmp = scratch.path().join(format!(".tmp-{k}"));
        let mut f = File::create(&tmp)?;
        f.write_all(&sealed_bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, scratch.path().join(format!("d{k}")))?;
        File::open(scratch.path())?.sync_all()?;
        Ok(())
    })?;
    let file_fsync = time(&mut || {
        k += 1;
        let mut f = File::create(scratch.path().join(format!("f{k}")))?;
        f.write_all(&sealed_bytes)?;
        f.sync_all()?;
        Ok(())
    })?;
    let dir_fsync = time(&mut || {
        k += 1;
        File::create(scratch.path().join(format!("e{k}")))?;
        File::open(scratch.path())?.sync_all()?;
        Ok(())
    })?;
    // The audit checkpoint after each state write: a small file, the same dance.
    let small = time(&mut || {
        k += 1;
        let tmp = scratch.path().join(format!(".tmp-{k}"));
        let mut f = File::create(&tmp)?;
        f.write_all(&[b'x'; 300])?;
        f.sync_all()?;
        std::fs::rename(&tmp, scratch.path().join("checkpoint.json"))?;
        File::open(scratch.path())?.sync_all()?;
        Ok(())
    })?;
    let md5 = md5_ms_per_body(scratch.path(), body.len());
    let sqlite = sqlite_commits(scratch.path(), n)?;
    println!("  state body: {} bytes", body.len());
    println!("  serde_json parse to a Value tree         {parse_tree:7.2}");
    println!("  serde_json scan (IgnoredAny; parse_state){parse_scan:7.2}");
    println!("  SHA-256                                  {sha:7.2}");
    match md5 {
        Some(md5) => println!("  MD5 (md5sum, per body; Content-MD5)      {md5:7.2}"),
        None => println!("  MD5                                      (md5sum not available)"),
    }
    println!("  AES-256-GCM seal (+ to_bytes)            {seal:7.2}");
    println!("  Sealed::from_bytes                       {from_bytes:7.2}");
    println!("  AES-256-GCM open                         {open:7.2}");
    println!("  copy of the body                         {copy:7.2}");
    println!("  write the sealed file, no fsync          {write_only:7.2}");
    println!("  read it back (page cache)                {read_back:7.2}");
    println!("  durable write (fsync, rename, dir fsync) {durable:7.2}");
    println!("    of which: write + fsync of the file    {file_fsync:7.2}");
    println!("    of which: fsync of the directory       {dir_fsync:7.2}   (after creating a file in it)");
    println!("  small file, same (audit checkpoint)      {small:7.2}");
    for (what, t) in sqlite {
        println!("  SQLite {what:<45}{t:8.2}");
    }
    Ok(())
}

/// MD5 cost of one body, from `md5sum` over a 64× larger file (the process start amortised).
fn md5_ms_per_body(dir: &Path, len: usize) -> Option<f64> {
    let file = dir.join("md5-input");
    std::fs::write(&file, vec![b'a'; len * 64]).ok()?;
    let mut best = f64::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        let ok = Command::new("md5sum")
            .arg(&file)
            .stdout(Stdio::null())
            .status()
            .ok()?
            .success();
        if !ok {
            return None;
        }
        best = best.min(ms(started.elapsed()) / 64.0);
    }
    Some(best)
}

/// Medians (ms) of SQLite write transactions like the lock's (`BEGIN IMMEDIATE`, a read, an
/// update, commit) with WAL and `synchronous=FULL` as the store opens it, with `NORMAL` for
/// comparison, and 4 writers at once on a 4-connection pool (busy waits).
fn sqlite_commits(dir: &Path, n: usize) -> Result<Vec<(String, f64)>> {
    use sqlx::sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut out = Vec::new();
        for (name, sync) in [
            ("FULL", SqliteSynchronous::Full),
            ("NORMAL", SqliteSynchronous::Normal),
        ] {
            let options = SqliteConnectOptions::new()
                .filename(dir.join(format!("bench-{name}.db")))
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(sync)
                .busy_timeout(Duration::from_secs(10));
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(options)
                .await?;
            sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, lock_id TEXT)")
                .execute(&pool)
                .await?;
            for i in 1..=4 {
                sqlx::query("INSERT INTO t (id) VALUES (?)")
                    .bind(i)
                    .execute(&pool)
                    .await?;
            }
            let one = |pool: sqlx::SqlitePool, row: i64, i: usize| async move {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                sqlx::query("SELECT * FROM t WHERE id = ?")
                    .bind(row)
                    .fetch_one(&mut *tx)
                    .await?;
                sqlx::query("UPDATE t SET lock_id = ? WHERE id = ?")
                    .bind(format!("lock {i}"))
                    .bind(row)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                anyhow::Ok(())
            };
            let mut v = Vec::new();
            for i in 0..n + 5 {
                let started = Instant::now();
                one(pool.clone(), 1, i).await?;
                if i >= 5 {
                    v.push(ms(started.elapsed()));
                }
            }
            out.push((
                format!("lock-like tx, synchronous={name}"),
                median(v.into_iter()),
            ));
            // 4 writers at once: transactions per second.
            let started = Instant::now();
            let tasks: Vec<_> = (0..4)
                .map(|w| {
                    let pool = pool.clone();
                    tokio::spawn(async move {
                        let mut lat = Vec::new();
                        for i in 0..n {
                            let t = Instant::now();
                            one(pool.clone(), 1 + w, i).await?;
                            lat.push(ms(t.elapsed()));
                        }
                        anyhow::Ok(lat)
                    })
                })
                .collect();
            let mut lat = Vec::new();
            for t in tasks {
                lat.extend(t.await??);
            }
            let secs = started.elapsed().as_secs_f64();
            out.push((format!("  4 writers, {name}: tx/s"), (4 * n) as f64 / secs));
            out.push((
                format!("  4 writers, {name}: p99 ms"),
                percentile(&lat, 99.0),
            ));
            // The same, writers queued in-process (one at a time) instead of SQLite's busy
            // handler, which sleeps 1, 2, 5, 10 … 100 ms between retries.
            let gate = std::sync::Arc::new(tokio::sync::Mutex::new(()));
            let started = Instant::now();
            let tasks: Vec<_> = (0..4)
                .map(|w| {
                    let pool = pool.clone();
                    let gate = gate.clone();
                    tokio::spawn(async move {
                        let mut lat = Vec::new();
                        for i in 0..n {
                            let t = Instant::now();
                            let _turn = gate.lock().await;
                            one(pool.clone(), 1 + w, i).await?;
                            lat.push(ms(t.elapsed()));
                        }
                        anyhow::Ok(lat)
                    })
                })
                .collect();
            let mut lat = Vec::new();
            for t in tasks {
                lat.extend(t.await??);
            }
            let secs = started.elapsed().as_secs_f64();
            out.push((
                format!("  4 writers queued in-process, {name}: tx/s"),
                (4 * n) as f64 / secs,
            ));
            out.push((
                format!("  4 writers queued in-process, {name}: p99 ms"),
                percentile(&lat, 99.0),
            ));
            pool.close().await;
        }
        Ok(out)
    })
}

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

struct Server {
    _process: support::Process,
    url: String,
    token: String,
    data_dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Server {
    fn start(path_var: &str) -> Result<Server> {
        let launched = support::launch(path_var, "ferry-sbench-")?;
        Ok(Server {
            _process: launched.process,
            url: launched.url,
            token: launched.token,
            data_dir: launched.data_dir,
            _tmp: launched.tmp,
        })
    }

    /// A keep-alive client (reqwest keeps connections in its pool).
    fn client(&self) -> Result<Client> {
        Ok(Client::builder()
            .timeout(Duration::from_secs(120))
            .pool_max_idle_per_host(4)
            .build()?)
    }

    fn state_url(&self, environment: &str) -> String {
        format!("{}/tf/state/{PROJECT}/{environment}", self.url)
    }

    /// A state-backend request with basic auth (the admin token as the password).
    fn req(&self, client: &Client, method: &str, url: &str) -> reqwest::blocking::RequestBuilder {
        let method = Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET);
        client
            .request(method, url)
            .basic_auth("bench", Some(&self.token))
    }

    fn expect(&self, req: reqwest::blocking::RequestBuilder, want: StatusCode) -> Result<()> {
        let resp = req.send()?;
        let status = resp.status();
        let body = resp.bytes()?;
        ensure!(
            status == want,
            "HTTP {status} (wanted {want}): {}",
            String::from_utf8_lossy(&body[..body.len().min(2000)])
        );
        Ok(())
    }

    fn add_project(&self, name: &str, repo: &Path) -> Result<()> {
        let resp = self
            .client()?
            .post(format!("{}/api/v1/projects", self.url))
            .bearer_auth(&self.token)
            .json(&serde_json::json!({"name": name, "repo": repo.to_string_lossy()}))
            .send()?;
        let status = resp.status();
        ensure!(
            status.is_success(),
            "adding project {name}: HTTP {status}: {}",
            resp.text()?
        );
        Ok(())
    }
}
