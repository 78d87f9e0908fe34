//! Masked log capture throughput (PRODUCT.md §7: at least 100 MiB/s of step
//! output captured, masked with 100 secrets, and stored). Captures the same
//! output once without masking and once through the engine's `MaskFilter` with
//! 100 secrets, prints both rates and their ratio, and checks that every
//! planted secret was masked. Rates are printed, not asserted (debug builds
//! and loaded machines vary). Measure with
//! `cargo bench -p ferry-engine --bench mask_throughput`.

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_engine::secrets::MaskFilter;
use ferry_executor::{ActionSpec, Command, Outcome, RunLog};
use ferry_secrets::Masker;
use tokio_util::sync::CancellationToken;

const MIB: usize = 1 << 20;
/// 200 MiB in release builds (the measurement); 16 MiB in debug builds, where the test
/// still checks that every planted secret is masked but the rate means nothing.
const TARGET_BYTES: usize = if cfg!(debug_assertions) {
    16 * MIB
} else {
    200 * MIB
};

/// Plan-like output with a counter in every line, and one of the secrets
/// every 1,000 lines.
fn write_output(path: &std::path::Path, secrets: &[String]) -> (usize, usize) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let (mut bytes, mut planted, mut i) = (0, 0, 0usize);
    while bytes < TARGET_BYTES {
        let line = if i % 1000 == 999 {
            planted += 1;
            format!(
                "      + password = \"{}\" # line {i}\n",
                secrets[i % secrets.len()]
            )
        } else {
            match i % 4 {
                0 => format!("  # terraform_data.item[{i}] will be created\n"),
                1 => format!("  + resource \"terraform_data\" \"item\" {{ input = \"value-{i}-abcdefghij\" }}\n"),
                2 => format!("      + id     = (known after apply) /* {i:>10} */\n"),
                _ => format!("{{\"@level\":\"info\",\"@message\":\"terraform_data.item[{i}]: Creating...\"}}\n"),
            }
        };
        file.write_all(line.as_bytes()).unwrap();
        bytes += line.len();
        i += 1;
    }
    file.flush().unwrap();
    (bytes, planted)
}

async fn capture(
    dir: &std::path::Path,
    src: &std::path::Path,
    masker: Option<Arc<Masker>>,
) -> (Duration, Vec<u8>) {
    let spec = ActionSpec::new(
        Command::Argv(vec!["/bin/cat".into(), src.to_string_lossy().into_owned()]),
        dir,
        vec![("PATH".to_owned(), "/usr/bin:/bin".to_owned())],
        Duration::from_secs(600),
    );
    let path = dir.join(format!("run-{}.log", masker.is_some()));
    let mut log = RunLog::open(&path).await.unwrap();
    let started = Instant::now();
    let mut running = ferry_executor::spawn(&spec).unwrap();
    if let Some(m) = &masker {
        let (out, err) = MaskFilter::pair(m);
        running = running.with_filters(out, err);
    }
    let outcome = running
        .wait(&mut log.action(1), CancellationToken::new())
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(outcome, Outcome::Exited(0));
    drop(log);
    (elapsed, std::fs::read(&path).unwrap())
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(masked_capture_rate_with_100_secrets());
}

async fn masked_capture_rate_with_100_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let secrets: Vec<String> = (0..100)
        .map(|_| ferry_secrets::generate_token().plaintext[6..38].to_owned())
        .collect();
    let src = dir.path().join("output.txt");
    let (bytes, planted) = write_output(&src, &secrets);
    let masker = Arc::new(Masker::new(&secrets, true).unwrap());

    // The masker alone, in the executor's 64 KiB chunks.
    let raw = std::fs::read(&src).unwrap();
    let mut stream = ferry_secrets::MaskStream::new(masker.clone());
    let mut out = Vec::with_capacity(raw.len());
    let started = Instant::now();
    for chunk in raw.chunks(64 * 1024) {
        stream.filter(chunk, &mut out);
    }
    stream.finish(&mut out);
    let alone = bytes as f64 / MIB as f64 / started.elapsed().as_secs_f64();
    assert_eq!(out.windows(3).filter(|w| w == b"***").count(), planted);
    // And in 4 KiB chunks (a pipe often delivers less than the 64 KiB asked for).
    let mut stream = ferry_secrets::MaskStream::new(masker.clone());
    out.clear();
    let started = Instant::now();
    for chunk in raw.chunks(4 * 1024) {
        stream.filter(chunk, &mut out);
    }
    stream.finish(&mut out);
    let alone_small = bytes as f64 / MIB as f64 / started.elapsed().as_secs_f64();
    drop((raw, out));

    let (plain_time, plain_log) = capture(dir.path(), &src, None).await;
    let (masked_time, masked_log) = capture(dir.path(), &src, Some(masker)).await;

    let mib = bytes as f64 / MIB as f64;
    let plain_rate = mib / plain_time.as_secs_f64();
    let masked_rate = mib / masked_time.as_secs_f64();
    eprintln!(
        "{mib:.0} MiB of output: unmasked {plain_rate:.0} MiB/s, masked (100 secrets) {masked_rate:.0} MiB/s, ratio {:.2}; the masker alone {alone:.0} MiB/s (4 KiB chunks: {alone_small:.0} MiB/s)",
        masked_rate / plain_rate
    );

    let text = String::from_utf8(masked_log).unwrap();
    for s in &secrets {
        assert!(!text.contains(s.as_str()), "a secret survived masking");
    }
    assert_eq!(text.matches("***").count(), planted);
    assert!(String::from_utf8(plain_log)
        .unwrap()
        .contains(secrets[99].as_str()));
}
