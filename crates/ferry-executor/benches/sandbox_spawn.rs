//! What the action sandbox costs at spawn (PRODUCT.md §7: engine overhead): the same no-op
//! action (`/bin/true`) started and awaited unsandboxed and inside a sandbox that hides a
//! data dir and a work dir, alternating, in one process; prints both medians, their
//! difference and ratio. Measure with `cargo bench -p ferry-executor --bench sandbox_spawn`.

use std::time::{Duration, Instant};

use ferry_executor::{sandbox, ActionSpec, Command, RunLog, Sandbox};
use tokio_util::sync::CancellationToken;

const ROUNDS: usize = 60;

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    assert!(
        sandbox::probe().is_available(),
        "{}",
        sandbox::probe().describe()
    );
    let base = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (data, work) = (base.path().join("data"), base.path().join("work"));
    let run = work.join("run-1");
    for d in [&data, &run] {
        std::fs::create_dir_all(d).unwrap();
    }
    let mut log = RunLog::open(&data.join("run.log")).await.unwrap();
    let plain = ActionSpec::new(
        Command::Argv(vec!["/bin/true".into()]),
        &run,
        vec![("PATH".into(), "/usr/bin:/bin".into())],
        Duration::from_secs(30),
    );
    let boxed = plain.clone().sandboxed(Sandbox {
        writable: vec![run.clone()],
        readable: vec![],
        hidden: vec![data.clone(), work.clone()],
    });
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for i in 0..ROUNDS * 2 {
        let spec = if i % 2 == 0 { &plain } else { &boxed };
        let started = Instant::now();
        let running = ferry_executor::spawn(spec).unwrap();
        let mut action = log.action(1);
        let outcome = running
            .wait(&mut action, CancellationToken::new())
            .await
            .unwrap();
        assert!(outcome.success());
        let took = started.elapsed();
        if i % 2 == 0 {
            a.push(took)
        } else {
            b.push(took)
        }
    }
    let (a, b) = (median(a), median(b));
    println!("spawn+wait of /bin/true, median of {ROUNDS}:");
    println!("  unsandboxed  {:>8.2} ms", a.as_secs_f64() * 1e3);
    println!("  sandboxed    {:>8.2} ms", b.as_secs_f64() * 1e3);
    println!(
        "  sandbox cost {:+.2} ms per action ({:.2}x)",
        (b.as_secs_f64() - a.as_secs_f64()) * 1e3,
        b.as_secs_f64() / a.as_secs_f64()
    );
}
