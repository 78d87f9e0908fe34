//! Tests of git access: credentials kept out of addresses and errors, the askpass helper,
//! allowed transports, timeouts that kill every git process, and the one-question deploy base.
use super::*;

#[test]
fn credentials_in_addresses_are_spotted() {
    assert!(has_embedded_credentials(
        "https://bob:hunter2@git.example.com/infra.git"
    ));
    assert!(has_embedded_credentials(
        "https://x-access-token:ghp_abc@github.example/o/r"
    ));
    assert!(!has_embedded_credentials(
        "https://git.example.com/infra.git"
    ));
    assert!(!has_embedded_credentials(
        "ssh://git@git.example.com/infra.git"
    ));
    assert!(!has_embedded_credentials("git@git.example.com:infra.git"));
    assert!(!has_embedded_credentials("/srv/repos/infra"));
    assert!(!has_embedded_credentials("https://git.example.com/a@b:c"));
}

fn auth(password: &str) -> GitAuth {
    GitAuth {
        username: "bot".to_owned(),
        password: ferry_secrets::Plaintext::new(password.as_bytes().to_vec()),
        masker: ferry_secrets::Masker::new([password], true).unwrap(),
    }
}

#[test]
fn the_askpass_helper_answers_from_its_environment_only() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, script) = askpass_dir().unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(dir.path()), 0o700);
    assert_eq!(mode(&script), 0o700);
    assert!(!std::fs::read_to_string(&script)
        .unwrap()
        .contains("pw-Zx81"));
    let ask = |prompt: &str| {
        // Run at once, the fresh script can be "busy" while a process forked by another
        // test thread still holds its write handle (git runs it much later).
        for _ in 0..50 {
            match std::process::Command::new(&script)
                .arg(prompt)
                .env("FERRY_GIT_USERNAME", "bot")
                .env("FERRY_GIT_PASSWORD", "pw-Zx81")
                .output()
            {
                Ok(out) => return String::from_utf8(out.stdout).unwrap(),
                Err(e) if e.raw_os_error() == Some(26) => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                Err(e) => panic!("askpass: {e}"),
            }
        }
        panic!("askpass stayed busy");
    };
    assert_eq!(ask("Username for 'https://h': "), "bot\n");
    assert_eq!(ask("Password for 'https://bot@h': "), "pw-Zx81\n");
    let path = dir.path().to_owned();
    drop(dir);
    assert!(!path.exists());
}

#[tokio::test]
async fn git_errors_are_masked_with_the_password() {
    let error = check_remote_with(
        "/nonexistent/pw-Qm5Tr7",
        Some(&auth("pw-Qm5Tr7")),
        &GitOptions::default(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(error.contains("/nonexistent/***"), "{error}");
    assert!(!error.contains("pw-Qm5Tr7"), "{error}");
}

#[tokio::test]
async fn transports_not_allowed_are_refused_by_git_at_once() {
    let options = GitOptions {
        timeout: Duration::from_secs(20),
        ..GitOptions::default()
    };
    let started = std::time::Instant::now();
    for (repo, transport) in [
        ("fd::3", "fd"),
        ("ext::sh -c touch% /tmp/ferry-ext-pwned", "ext"),
        ("http://127.0.0.1:9/repo.git", "http"),
        ("git://127.0.0.1:9/repo.git", "git"),
    ] {
        let error = check_remote_with(repo, None, &options)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(&format!("transport '{transport}' not allowed")),
            "{repo}: {error}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!Path::new("/tmp/ferry-ext-pwned").exists());
    // Local paths are a deployment's choice.
    let repo = tempfile::tempdir().unwrap();
    std::process::Command::new("git")
        .args(["init", "--quiet"])
        .arg(repo.path())
        .status()
        .unwrap();
    let path = repo.path().to_str().unwrap();
    check_remote_with(path, None, &options).await.unwrap();
    let remote_only = GitOptions {
        protocols: vec![Protocol::Https, Protocol::Ssh],
        ..options
    };
    let error = check_remote_with(path, None, &remote_only)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("transport 'file' not allowed"), "{error}");
}

#[tokio::test]
async fn the_deploy_base_is_one_question_with_the_answers_of_the_slow_path() {
    let sh = |dir: &Path, args: &[&str]| {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@ferry.invalid"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let work = tempfile::tempdir().unwrap();
    sh(work.path(), &["init", "-q", "-b", "trunk"]);
    sh(work.path(), &["commit", "-q", "--allow-empty", "-m", "one"]);
    let one = sh(work.path(), &["rev-parse", "HEAD"]);
    sh(work.path(), &["checkout", "-q", "-b", "release"]);
    sh(work.path(), &["commit", "-q", "--allow-empty", "-m", "two"]);
    let two = sh(work.path(), &["rev-parse", "HEAD"]);
    let mirrors = tempfile::tempdir().unwrap();
    let mirror = Mirror::sync_with(
        work.path().to_str().unwrap(),
        &mirrors.path().join("m.git"),
        None,
        &GitOptions::default(),
    )
    .await
    .unwrap();
    // The default branch, as the slow path names it.
    let default = mirror.default_branch().await.unwrap();
    let expected = (default.clone(), mirror.resolve(&default).await.unwrap());
    assert_eq!(mirror.deploy_base(None, &two).await, Some(expected));
    assert_eq!(
        mirror.deploy_base(Some("trunk"), &two).await,
        Some(("trunk".to_owned(), one.clone()))
    );
    assert_eq!(
        mirror.deploy_base(Some("release"), &one).await,
        Some(("release".to_owned(), two.clone()))
    );
    // Anything that does not resolve sends the caller down the slow path.
    let absent = "0".repeat(40);
    assert_eq!(mirror.deploy_base(None, &absent).await, None);
    assert_eq!(mirror.deploy_base(Some("gone"), &one).await, None);
    assert_eq!(mirror.deploy_base(Some("-x"), &one).await, None);
}

/// Every process of a running git, on loopback.
fn processes_naming(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) {
                found.push(cmdline);
            }
        }
    }
    found
}

#[tokio::test]
async fn a_remote_that_never_answers_times_out_and_its_processes_die() {
    // Accepts connections and never says a word: git's TLS handshake waits forever.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        for conn in listener.incoming() {
            conns.push(conn);
        }
    });
    let repo = format!("https://127.0.0.1:{port}/never.git");
    let options = GitOptions {
        timeout: Duration::from_secs(2),
        ..GitOptions::default()
    };
    let started = std::time::Instant::now();
    let error = check_remote_with(&repo, None, &options).await.unwrap_err();
    assert!(matches!(error, GitError::Timeout { .. }), "{error}");
    assert!(error.to_string().contains("within 2s"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(15));
    // git and its `git-remote-https` helper are gone, not left waiting.
    let needle = format!("127.0.0.1:{port}");
    for _ in 0..50 {
        if processes_naming(&needle).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("still running: {:?}", processes_naming(&needle));
}

#[test]
fn local_addresses_are_told_from_remote_ones() {
    for (repo, local) in [
        ("/srv/repos/infra", Some("/srv/repos/infra")),
        ("./infra", Some("./infra")),
        ("file:///srv/infra.git", Some("/srv/infra.git")),
        ("https://git.example.com/infra.git", None),
        ("ssh://git@host/infra.git", None),
        ("git@host:org/infra.git", None),
        ("host:infra", None),
    ] {
        assert_eq!(local_path(repo).as_deref(), local.map(Path::new), "{repo}");
    }
}

#[test]
fn option_like_refs_are_refused() {
    assert!(check_ref("--upload-pack=evil").is_err());
    assert!(check_ref("main branch").is_err());
    assert!(check_ref("").is_err());
    assert!(check_ref("release/1.2").is_ok());
}
