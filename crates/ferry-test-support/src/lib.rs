//! Fixtures shared by Ferry's integration and end-to-end tests: real git repositories made
//! in temp dirs, the real Terraform the test command installed, and polling with a deadline.
//!
//! Nothing here is a mock. A test that needs Terraform and cannot find one panics with the
//! command to run instead of skipping: a test that silently skips is not a test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The directory holding the `terraform` the tests use: `FERRY_TEST_TERRAFORM_DIR` (set by
/// `scripts/test`), else the one on PATH.
pub fn terraform_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FERRY_TEST_TERRAFORM_DIR") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("terraform").exists(),
            "FERRY_TEST_TERRAFORM_DIR={} has no terraform",
            dir.display()
        );
        return dir;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        if dir.join("terraform").is_file() {
            return dir;
        }
    }
    panic!("no terraform found: run the tests with ./scripts/test (it installs one), or put terraform on PATH");
}

/// A PATH whose first entry holds the test Terraform.
pub fn path_with_terraform() -> String {
    let mut dirs = vec![terraform_dir()];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs)
        .expect("valid PATH")
        .to_string_lossy()
        .into_owned()
}

/// A PATH with no Terraform on it (for "missing terraform" tests): the standard system
/// directories, minus any that hold a `terraform` (some machines install one in
/// /usr/local/bin).
pub fn path_without_terraform() -> String {
    let dirs: Vec<&str> = ["/usr/local/bin", "/usr/bin", "/bin"]
        .into_iter()
        .filter(|d| !Path::new(d).join("terraform").exists())
        .collect();
    assert!(
        !dirs.is_empty(),
        "every system bin directory holds a terraform"
    );
    dirs.join(":")
}

/// The repository's `examples/hello-infra`.
pub fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/hello-infra")
        .canonicalize()
        .expect("examples/hello-infra exists")
}

/// A real git repository in a temp dir.
pub struct GitRepo {
    pub dir: tempfile::TempDir,
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=Ferry Test",
            "-c",
            "user.email=test@ferry.invalid",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl GitRepo {
    /// An empty repository on branch `main`.
    pub fn new() -> GitRepo {
        let dir = tempfile::Builder::new()
            .prefix("ferry-repo-")
            .tempdir()
            .expect("temp dir");
        git(dir.path(), &["init", "-q", "-b", "main"]);
        GitRepo { dir }
    }

    /// A repository holding a copy of a directory (e.g. the example), committed.
    pub fn from_dir(src: &Path) -> GitRepo {
        let repo = GitRepo::new();
        copy_dir(src, repo.path());
        repo.commit("initial");
        repo
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, contents: &str) -> &GitRepo {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, contents).expect("write");
        self
    }

    /// Commits everything and returns the commit id.
    pub fn commit(&self, message: &str) -> String {
        git(self.path(), &["add", "-A"]);
        git(
            self.path(),
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        self.head()
    }

    pub fn head(&self) -> String {
        git(self.path(), &["rev-parse", "HEAD"])
    }

    pub fn branch(&self, name: &str) {
        git(self.path(), &["checkout", "-q", "-B", name]);
    }
}

impl Default for GitRepo {
    fn default() -> Self {
        GitRepo::new()
    }
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("mkdir");
    for entry in std::fs::read_dir(src).expect("read dir") {
        let entry = entry.expect("entry");
        let target = dst.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// Polls `check` until it returns `Some`, or panics after `timeout` naming `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A minimal pipeline: one `default` environment, auto-applied, Terraform in the root.
pub const MINIMAL_FERRY_YAML: &str = "version: 1\nname: tiny\nterraform: { dir: . }\n";

/// A configuration of `n` terraform_data resources.
pub fn terraform_data_config(n: usize) -> String {
    format!("resource \"terraform_data\" \"r\" {{\n  count = {n}\n  input = \"r-${{count.index}}\"\n}}\n")
}

/// Whether any live process's command line contains `marker`.
pub fn process_running(marker: &str) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|e| {
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        text.contains(marker) && !text.contains("ferry-test-marker-probe")
    })
}
