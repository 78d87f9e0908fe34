//! Issue 12, as an attacker with a commit would try it against the real binary: a stage
//! command that goes for the master key, the database and another run's directory; committed
//! symlinks that lead out of the checkout; a `kill -9` with a secret file on disk; a data
//! dir made by hand with loose modes.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use ferry_test_support::{wait_for, GitRepo, MINIMAL_FERRY_YAML};

use crate::util::{action, marker, pids_matching, repo_with, Server};

const MAIN_TF: &str = "resource \"terraform_data\" \"x\" {\n  input = \"hello\"\n}\n";

/// Every byte of every regular file beneath `dir`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            stack.extend(
                std::fs::read_dir(&path)
                    .unwrap()
                    .flatten()
                    .map(|e| e.path()),
            );
        } else if meta.is_file() {
            let bytes = std::fs::read(&path).unwrap_or_default();
            if bytes.windows(needle.len()).any(|w| w == needle) {
                hits.push(path.display().to_string());
            }
        }
    }
    hits
}

#[test]
fn a_stage_command_cannot_read_ferrys_keys_its_database_or_another_runs_checkout() {
    let server = Server::start();
    let data = server.data.display().to_string();
    let work = format!("{data}-work");
    // Run 1 waits for an approval, so its checkout stays on disk for run 2 to go after.
    let waiting = repo_with(&[
        (
            "ferry.yaml",
            "version: 1\nname: waiting\nterraform: { dir: . }\nenvironments:\n  - name: prod\n",
        ),
        (
            "main.tf",
            "resource \"terraform_data\" \"w\" {\n  input = \"other-run-canary\"\n}\n",
        ),
    ]);
    server.add_project("waiting", &waiting);
    let first = server.trigger("waiting", &[]);
    server.wait_status(first, "WaitingForApproval", Duration::from_secs(120));
    assert!(Path::new(&format!("{work}/run-{first}/src/main.tf")).exists());

    let pid = server.pid();
    let probes = format!(
        r#"probe() {{ n=$1; shift; if "$@" >/dev/null 2>&1; then echo "PROBE $n ok"; else echo "PROBE $n denied"; fi; }}
probe master_key cat {data}/master.key
probe admin_token cat {data}/admin.token
probe admin_password cat {data}/admin.password
probe database cat {data}/ferry.db
probe data_listing ls {data}
probe relative_key cat ../../../data/master.key
probe other_run cat {work}/run-{first}/src/main.tf
probe work_listing ls {work}
probe server_environ cat /proc/{pid}/environ
probe server_memory head -c 1 /proc/{pid}/mem
probe server_root ls /proc/{pid}/root/
probe signal_server kill -0 {pid}
probe own_checkout cat main.tf
probe own_git git log -1 --format=%H
probe own_tmp sh -c 'echo x > "$TMPDIR/f" && cat "$TMPDIR/f"'"#
    );
    let attacker = repo_with(&[
        (
            "ferry.yaml",
            "version: 1\nname: attack\nterraform: { dir: . }\nstages:\n  validate: [\"sh probes.sh\"]\n",
        ),
        ("probes.sh", &probes),
        ("main.tf", MAIN_TF),
    ]);
    server.add_project("attack", &attacker);
    let run = server.trigger("attack", &[]);
    let detail = server.wait_status(run, "Succeeded", Duration::from_secs(120));
    // Terraform init, validate, plan and apply worked inside the same sandbox.
    assert_eq!(action(&detail, "default", "apply")["status"], "Succeeded");
    let logs = server.cli(&["logs", &run.to_string()]).ok();
    let verdict = |name: &str| {
        logs.stdout
            .lines()
            .find_map(|l| {
                l.split_once(&format!("PROBE {name} "))
                    .map(|(_, v)| v.trim())
            })
            .unwrap_or_else(|| panic!("probe {name} printed nothing:\n{}", logs.stdout))
            .to_owned()
    };
    for denied in [
        "master_key",
        "admin_token",
        "admin_password",
        "database",
        "data_listing",
        "relative_key",
        "other_run",
        "work_listing",
        "server_environ",
        "server_memory",
        "server_root",
        "signal_server",
    ] {
        assert_eq!(verdict(denied), "denied", "{denied}:\n{}", logs.stdout);
    }
    assert_eq!(verdict("own_checkout"), "ok", "{}", logs.stdout);
    assert_eq!(
        verdict("own_git"),
        "ok",
        "git works in the checkout: {}",
        logs.stdout
    );
    assert_eq!(verdict("own_tmp"), "ok", "{}", logs.stdout);
    // The run's directory is outside the data dir, and gone once the run ended.
    assert!(!Path::new(&format!("{work}/run-{run}")).exists());
    assert!(!server.data.join("work").exists());
    let ready = reqwest::blocking::get(format!("{}/readyz", server.url))
        .unwrap()
        .json::<serde_json::Value>()
        .unwrap();
    assert!(
        ready["sandbox"]
            .as_str()
            .unwrap_or_default()
            .starts_with("landlock"),
        "{ready}"
    );
}

#[test]
fn committed_symlinks_cannot_lead_a_pipeline_out_of_its_checkout() {
    let server = Server::start();
    // `infra -> /etc`: refused at trigger time, naming the path.
    let repo = GitRepo::new();
    repo.write(
        "ferry.yaml",
        "version: 1\nname: escape\nterraform: { dir: infra }\n",
    );
    std::os::unix::fs::symlink("/etc", repo.path().join("infra")).unwrap();
    repo.commit("infra is /etc");
    server.add_project("escape", &repo);
    let out = server.cli(&["run", "escape"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("terraform.dir `infra` resolves to /etc, outside the checkout"),
        "{out:?}"
    );
    // A relative link that climbs out, and a vars file that is a link out, likewise.
    for (what, files, link, target) in [
        (
            "terraform.dir `infra/net`",
            vec![("ferry.yaml", "version: 1\nname: up\nterraform: { dir: infra/net }\n")],
            "infra",
            "../..",
        ),
        (
            "environments.prod.vars_file `env/prod.tfvars`",
            vec![
                (
                    "ferry.yaml",
                    "version: 1\nname: vars\nterraform: { dir: . }\nenvironments:\n  - name: prod\n    vars_file: env/prod.tfvars\n",
                ),
                ("main.tf", MAIN_TF),
            ],
            "env",
            "/root",
        ),
    ] {
        let repo = GitRepo::new();
        for (path, text) in files {
            repo.write(path, text);
        }
        std::os::unix::fs::symlink(target, repo.path().join(link)).unwrap();
        repo.commit("a link out");
        let name = format!("p{}", what.len());
        server.add_project(&name, &repo);
        let out = server.cli(&["run", &name]);
        assert_eq!(out.code, 2, "{out:?}");
        assert!(
            out.stderr.contains(what) && out.stderr.contains("outside the checkout"),
            "{what}: {out:?}"
        );
    }
    // A link inside the repository is fine.
    let repo = repo_with(&[
        (
            "ferry.yaml",
            "version: 1\nname: inner\nterraform: { dir: live }\n",
        ),
        ("modules/live/main.tf", MAIN_TF),
    ]);
    std::os::unix::fs::symlink("modules/live", repo.path().join("live")).unwrap();
    repo.commit("live is a link to modules/live");
    server.add_project("inner", &repo);
    let run = server.trigger("inner", &[]);
    server.wait_status(run, "Succeeded", Duration::from_secs(120));

    // A directory swapped for a link during the run does not win: the next action is
    // refused, and Ferry writes nothing where the link points.
    let outside = tempfile::tempdir().unwrap();
    let swap = format!(
        "cd .. && mv infra infra.real && ln -s {} infra",
        outside.path().display()
    );
    let repo = repo_with(&[
        (
            "ferry.yaml",
            &format!(
                "version: 1\nname: swap\nterraform: {{ dir: infra }}\nstages:\n  validate: [\"{swap}\"]\n"
            ),
        ),
        ("infra/main.tf", MAIN_TF),
    ]);
    server.add_project("swap", &repo);
    let run = server.trigger("swap", &[]);
    let detail = server.wait_status(run, "Failed", Duration::from_secs(120));
    let reason = detail["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("terraform.dir `infra` resolves to")
            && reason.contains("outside the checkout"),
        "{detail:#}"
    );
    assert!(
        std::fs::read_dir(outside.path()).unwrap().next().is_none(),
        "nothing may be written through the link"
    );
}

#[test]
fn a_crash_during_an_action_leaves_no_secret_file_and_no_run_directory_behind() {
    let mut server = Server::start();
    let canary = "crash-secret-canary-7d31";
    let out = crate::secrets::cli_stdin(&server, &["secret", "set", "db_password"], canary);
    assert_eq!(out.code, 0, "{out:?}");
    let marker = marker("sleep 53.17");
    let repo = repo_with(&[
        (
            "ferry.yaml",
            &format!(
                "version: 1\nname: crash\nterraform: {{ dir: . }}\nsecrets:\n  - {{ name: db_password, file: db.txt }}\nstages:\n  validate: [\"{marker}\"]\n"
            ),
        ),
        ("main.tf", MAIN_TF),
    ]);
    server.add_project("crash", &repo);
    let run = server.trigger("crash", &[]);
    let work = std::path::PathBuf::from(format!("{}-work", server.data.display()));
    wait_for(
        "the action with its secret file",
        Duration::from_secs(60),
        || {
            (!pids_matching(&marker).is_empty()
                && !files_containing(&work, canary.as_bytes()).is_empty())
            .then_some(())
        },
    );
    server.kill9();
    server.restart();
    let detail = server.show(run);
    assert_eq!(detail["status"], "Interrupted", "{detail:#}");
    assert!(
        files_containing(&work, canary.as_bytes()).is_empty(),
        "a secret file survived the crash"
    );
    assert!(files_containing(&server.data, canary.as_bytes()).is_empty());
    let left: Vec<_> = std::fs::read_dir(&work)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "run directories left behind: {left:?}");
}

#[test]
fn a_data_dir_made_by_hand_is_made_private_and_another_users_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir(data.join("logs")).unwrap();
    std::fs::set_permissions(data.join("logs"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(data.join("logs/old.log"), "x").unwrap();
    std::fs::set_permissions(
        data.join("logs/old.log"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let mut server = Server::start_in(root);
    let repo = repo_with(&[("ferry.yaml", MINIMAL_FERRY_YAML), ("main.tf", MAIN_TF)]);
    server.add_project("hello", &repo);
    let run = server.trigger("hello", &[]);
    server.wait_status(run, "Succeeded", Duration::from_secs(120));
    server.stop();
    let mut stack = vec![server.data.clone()];
    let mut seen = 0;
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_dir() {
            assert_eq!(mode, 0o700, "{}", path.display());
            stack.extend(
                std::fs::read_dir(&path)
                    .unwrap()
                    .flatten()
                    .map(|e| e.path()),
            );
        } else if meta.is_file() {
            // Git writes its objects 0444 (so 0400 here); everything else Ferry writes 0600.
            assert_eq!(mode & 0o077, 0, "{} is {mode:o}", path.display());
            seen += 1;
        }
    }
    for file in [
        "ferry.db".to_owned(),
        "master.key".to_owned(),
        "admin.token".to_owned(),
        "audit.head".to_owned(),
        format!("logs/run-{run}.log"),
        format!("plans/run-{run}/default.tfplan"),
        format!("plans/run-{run}/default.json"),
        "logs/old.log".to_owned(),
    ] {
        let meta = std::fs::metadata(server.data.join(&file)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{file}");
    }
    assert!(
        seen > 5,
        "the data dir holds the database, keys, logs and plans"
    );

    // A data dir that belongs to someone else is not ours to use.
    let other = tempfile::tempdir().unwrap();
    let theirs = other.path().join("data");
    std::fs::create_dir(&theirs).unwrap();
    // Only root can give a directory away; as anyone else there is nothing to check here.
    if std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).is_ok() {
        assert_eq!(std::fs::metadata(&theirs).unwrap().uid(), 65534);
        let out = crate::util::ferry(
            other.path(),
            &[
                "server",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                &theirs.display().to_string(),
            ],
            &[],
        );
        assert_eq!(out.code, 2, "{out:?}");
        assert!(out.stderr.contains("is owned by uid 65534"), "{out:?}");
    }
}

#[test]
fn without_the_sandbox_the_operator_must_say_so_and_every_surface_shows_it() {
    let server = Server::start_with(
        ferry_test_support::path_with_terraform(),
        &["--insecure-no-sandbox"],
    );
    let ready = reqwest::blocking::get(format!("{}/readyz", server.url))
        .unwrap()
        .json::<serde_json::Value>()
        .unwrap();
    assert!(
        ready["sandbox"]
            .as_str()
            .unwrap_or_default()
            .starts_with("disabled"),
        "{ready}"
    );
    assert!(server.logs().contains("UNCONFINED"), "{}", server.logs());
    let out = server
        .cli(&["config", "check", "--insecure-no-sandbox"])
        .ok();
    assert!(
        out.stdout.contains("disabled (--insecure-no-sandbox)"),
        "{out:?}"
    );
    let out = server.cli(&["config", "check"]).ok();
    assert!(out.stdout.contains("\"sandbox\": \"landlock"), "{out:?}");
}
