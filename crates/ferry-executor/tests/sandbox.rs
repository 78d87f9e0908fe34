//! The action sandbox against a real shell: what an action of one run can and cannot reach
//! (keys, the database, another run's directory, the parent process), by several routes.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{run, shell};
use ferry_executor::{sandbox, Outcome, Sandbox, Stream};
use tokio_util::sync::CancellationToken;

/// Each probe prints `NAME:ok` or `NAME:denied`.
const PROBES: &str = r#"
probe() { name=$1; shift; if "$@" >/dev/null 2>&1; then echo "$name:ok"; else echo "$name:denied"; fi; }
probe key_absolute cat "$DATA/master.key"
probe key_relative cat ../../../data/master.key
probe db cat "$DATA/ferry.db"
probe data_listing ls "$DATA"
probe other_run cat "$WORK/run-2/src/secret.txt"
probe other_run_listing ls "$WORK/run-2"
probe work_listing ls "$WORK"
ln -s "$DATA/master.key" key-link
probe key_via_symlink cat key-link
probe key_via_proc_root cat "/proc/self/root$DATA/master.key"
probe key_via_hardlink ln "$DATA/master.key" key-hardlink
probe parent_environ cat /proc/$PPID/environ
probe parent_mem head -c 1 /proc/$PPID/mem
probe signal_parent kill -0 $PPID
probe raw_disk sh -c 'for d in /dev/vda /dev/sda /dev/nvme0n1 /dev/mem; do [ -e $d ] && head -c 1 $d && exit 0; done; exit 1'
probe write_outside touch "$BASE/planted"
probe shared_tmp touch /tmp/ferry-sandbox-planted
probe own_write sh -c 'echo hi > own.txt && cat own.txt'
probe own_tmp sh -c 'echo hi > "$TMPDIR/t" && cat "$TMPDIR/t"'
probe readable_system cat /etc/hostname
probe readable_binary_dir ls "$TOOLS"
probe visible_file cat "$BASE/visible.txt"
probe dev_null sh -c 'echo x > /dev/null'
grep CapEff /proc/self/status
"#;

fn layout(base: &Path) {
    for dir in [
        "data",
        "work/run-1/src",
        "work/run-1/tmp",
        "work/run-2/src",
        "tools",
    ] {
        std::fs::create_dir_all(base.join(dir)).unwrap();
    }
    std::fs::write(base.join("data/master.key"), "MASTER-KEY-BYTES").unwrap();
    std::fs::write(base.join("data/ferry.db"), "DATABASE-BYTES").unwrap();
    std::fs::write(base.join("work/run-2/src/secret.txt"), "OTHER-RUN").unwrap();
    std::fs::write(base.join("visible.txt"), "visible").unwrap();
    std::fs::write(base.join("data/tools-marker"), "").unwrap();
}

#[tokio::test]
async fn an_action_reaches_its_own_directories_and_the_system_but_not_ferrys_data() {
    assert!(
        sandbox::probe().is_available(),
        "this machine's kernel must enforce Landlock for the sandbox tests: {}",
        sandbox::probe().describe()
    );
    // Not under /tmp, which every sandbox hides anyway: the hidden paths must do the work.
    let base = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let base = std::fs::canonicalize(base.path()).unwrap();
    layout(&base);
    let cwd = base.join("work/run-1/src");
    let mut spec = shell(PROBES, &cwd, Duration::from_secs(60));
    for (k, v) in [
        ("DATA", base.join("data")),
        ("WORK", base.join("work")),
        ("BASE", base.clone()),
        ("TMPDIR", base.join("work/run-1/tmp")),
        ("TOOLS", base.join("data/tools")),
    ] {
        spec.env
            .push((k.to_owned(), v.to_string_lossy().into_owned()));
    }
    std::fs::create_dir_all(base.join("data/tools")).unwrap();
    let spec = spec.sandboxed(Sandbox {
        writable: vec![base.join("work/run-1/src"), base.join("work/run-1/tmp")],
        readable: vec![base.join("data/tools")],
        hidden: vec![base.join("data"), base.join("work")],
    });
    let logs = tempfile::tempdir().unwrap();
    let ran = run(logs.path(), &spec, CancellationToken::new()).await;
    assert_eq!(ran.outcome, Outcome::Exited(0), "{:?}", ran.lines);
    let out = ran.texts(Stream::Out);
    let verdict = |name: &str| -> String {
        out.iter()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("probe {name} printed nothing: {out:?}"))
            .to_owned()
    };
    for denied in [
        "key_absolute",
        "key_relative",
        "db",
        "data_listing",
        "other_run",
        "other_run_listing",
        "work_listing",
        "key_via_symlink",
        "key_via_proc_root",
        "key_via_hardlink",
        "parent_environ",
        "parent_mem",
        "signal_parent",
        "raw_disk",
        "write_outside",
        "shared_tmp",
    ] {
        assert_eq!(
            verdict(denied),
            "denied",
            "{denied} must be denied: {out:?}"
        );
    }
    for allowed in [
        "own_write",
        "own_tmp",
        "readable_system",
        "readable_binary_dir",
        "visible_file",
        "dev_null",
    ] {
        assert_eq!(verdict(allowed), "ok", "{allowed} must work: {out:?}");
    }
    assert!(
        out.iter()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["CapEff:", "0000000000000000"]),
        "an action holds no capability: {out:?}"
    );
    assert!(!base.join("planted").exists());
    assert!(!Path::new("/tmp/ferry-sandbox-planted").exists());
}

#[tokio::test]
async fn the_probe_reports_what_the_kernel_enforces() {
    let support = sandbox::probe();
    assert!(
        support.describe().starts_with("landlock (ABI "),
        "{support:?}"
    );
}
