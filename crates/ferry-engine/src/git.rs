//! Git through the `git` CLI: one bare mirror per project, refreshed before each trigger,
//! and a clean checkout of a run's exact commit.
//!
//! The CLI (rather than a library) is what every user already has and trusts for auth
//! helpers, SSH config and odd hosting setups. Every argument that comes from a user is
//! validated or placed after `--`, so a ref cannot become an option.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("git {op} failed: {message}")]
    Failed { op: &'static str, message: String },
    #[error("ref `{0}` not found")]
    RefNotFound(String),
    #[error("`{0}` is not a valid git ref")]
    InvalidRef(String),
    #[error("could not run git: {0}")]
    Spawn(#[from] std::io::Error),
}

/// Credentials for one git operation: git asks a per-operation `GIT_ASKPASS` helper (a
/// script written 0700 into a fresh temp dir, removed afterwards) which prints the username
/// or the password from its own environment. The password is never in argv, a URL, a file
/// or git's config; git's configured credential helpers are switched off so none can store
/// it. Git's error output is masked with `masker` before it becomes an error message.
pub struct GitAuth {
    pub username: String,
    pub password: ferry_secrets::Plaintext,
    pub masker: ferry_secrets::Masker,
}

impl std::fmt::Debug for GitAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitAuth")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

const ASKPASS_SCRIPT: &str = "#!/bin/sh\n\
# Ferry's per-operation askpass helper: answers git's prompts from its environment.\n\
case \"$1\" in\n\
  Username*|username*) printf '%s\\n' \"$FERRY_GIT_USERNAME\" ;;\n\
  *) printf '%s\\n' \"$FERRY_GIT_PASSWORD\" ;;\n\
esac\n";

/// Writes the askpass helper into a fresh private temp dir (removed when the guard drops).
fn askpass_dir() -> std::io::Result<(tempfile::TempDir, PathBuf)> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = tempfile::Builder::new()
        .prefix("ferry-askpass-")
        .tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
    let script = dir.path().join("askpass.sh");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o700)
        .open(&script)?;
    file.write_all(ASKPASS_SCRIPT.as_bytes())?;
    file.sync_all()?;
    drop(file);
    Ok((dir, script))
}

/// A bare mirror of a project's repository.
#[derive(Debug, Clone)]
pub struct Mirror {
    pub path: PathBuf,
}

async fn git(op: &'static str, args: &[&str], dir: Option<&Path>) -> Result<Vec<u8>, GitError> {
    git_with(op, args, dir, None).await
}

/// Runs git; with `auth`, through a fresh askpass helper whose password is only in this
/// git process's environment.
async fn git_with(
    op: &'static str,
    args: &[&str],
    dir: Option<&Path>,
    auth: Option<&GitAuth>,
) -> Result<Vec<u8>, GitError> {
    use std::os::unix::ffi::OsStrExt as _;
    let mut cmd = Command::new("git");
    if let Some(dir) = dir {
        cmd.arg("-C").arg(dir);
    }
    let mut _askpass = None;
    if let Some(auth) = auth {
        let (tmp, script) = askpass_dir()?;
        // No configured credential helper may answer for (or store) these credentials.
        cmd.args(["-c", "credential.helper="])
            .env("GIT_ASKPASS", &script)
            .env("FERRY_GIT_USERNAME", &auth.username)
            .env(
                "FERRY_GIT_PASSWORD",
                std::ffi::OsStr::from_bytes(auth.password.expose()),
            );
        _askpass = Some(tmp);
    } else {
        cmd.env("GIT_ASKPASS", "true");
    }
    cmd.args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("SSH_ASKPASS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = cmd.output().await?;
    drop(_askpass);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stderr = match auth {
            Some(auth) => auth.masker.mask_str(&stderr),
            None => stderr.into_owned(),
        };
        // git's `fatal:` line says what went wrong; hints and advice follow it.
        let lines: Vec<&str> = stderr.trim().lines().collect();
        let message = lines
            .iter()
            .find(|l| l.starts_with("fatal:"))
            .or(lines.last())
            .copied()
            .unwrap_or("")
            .to_owned();
        return Err(GitError::Failed { op, message });
    }
    Ok(out.stdout)
}

/// Refs may not start with `-` and may not hold whitespace or control characters; git's own
/// `check-ref-format` rules are applied by git when the ref is resolved.
pub fn check_ref(r: &str) -> Result<(), GitError> {
    if r.is_empty()
        || r.starts_with('-')
        || r.chars().any(|c| c.is_whitespace() || c.is_control())
        || r.len() > 255
    {
        return Err(GitError::InvalidRef(r.to_owned()));
    }
    Ok(())
}

/// One entry of a commit's tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    /// `100644`, `100755`, `120000` (a symlink), `040000` (a tree), `160000` (a submodule).
    pub mode: String,
    pub object: String,
    pub path: String,
}

impl Mirror {
    /// Clones `repo` (a URL or a local path) as a bare mirror at `path`, or fetches into
    /// the existing mirror.
    pub async fn sync(repo: &str, path: &Path) -> Result<Mirror, GitError> {
        Mirror::sync_with(repo, path, None).await
    }

    /// [`Mirror::sync`] with credentials for the remote.
    pub async fn sync_with(
        repo: &str,
        path: &Path,
        auth: Option<&GitAuth>,
    ) -> Result<Mirror, GitError> {
        if path.join("HEAD").exists() {
            git_with(
                "fetch",
                &[
                    "fetch",
                    "--prune",
                    "--quiet",
                    "origin",
                    "+refs/heads/*:refs/heads/*",
                    "+refs/tags/*:refs/tags/*",
                ],
                Some(path),
                auth,
            )
            .await?;
        } else {
            if let Some(parent) = path.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            let tmp = path.with_extension("tmp");
            let _ = tokio::fs::remove_dir_all(&tmp).await;
            let tmp_str = tmp.to_string_lossy().into_owned();
            git_with(
                "clone",
                // No hard links into a local source repository: its owner could otherwise
                // change objects under the mirror.
                &[
                    "clone",
                    "--mirror",
                    "--no-hardlinks",
                    "--quiet",
                    "--",
                    repo,
                    &tmp_str,
                ],
                None,
                auth,
            )
            .await?;
            tokio::fs::rename(&tmp, path).await?;
        }
        Ok(Mirror {
            path: path.to_owned(),
        })
    }

    /// The default branch's name, from the mirror's HEAD.
    pub async fn default_branch(&self) -> Result<String, GitError> {
        let out = git(
            "symbolic-ref",
            &["symbolic-ref", "--quiet", "HEAD"],
            Some(&self.path),
        )
        .await?;
        let full = String::from_utf8_lossy(&out).trim().to_owned();
        Ok(full.strip_prefix("refs/heads/").unwrap_or(&full).to_owned())
    }

    /// Resolves a branch, tag or commit id to a full commit id.
    pub async fn resolve(&self, r: &str) -> Result<String, GitError> {
        check_ref(r)?;
        for candidate in [
            format!("refs/heads/{r}"),
            format!("refs/tags/{r}"),
            r.to_owned(),
        ] {
            let spec = format!("{candidate}^{{commit}}");
            if let Ok(out) = git(
                "rev-parse",
                &[
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    "--end-of-options",
                    &spec,
                ],
                Some(&self.path),
            )
            .await
            {
                let sha = String::from_utf8_lossy(&out).trim().to_owned();
                if !sha.is_empty() {
                    return Ok(sha);
                }
            }
        }
        Err(GitError::RefNotFound(r.to_owned()))
    }

    /// Paths of every `ferry.yaml` in the commit's tree.
    pub async fn pipeline_files(&self, commit: &str) -> Result<Vec<String>, GitError> {
        let out = git(
            "ls-tree",
            &["ls-tree", "-r", "--name-only", "--full-tree", commit],
            Some(&self.path),
        )
        .await?;
        Ok(String::from_utf8_lossy(&out)
            .lines()
            .filter(|p| {
                *p == ferry_spec::FILE_NAME || p.ends_with(&format!("/{}", ferry_spec::FILE_NAME))
            })
            .map(str::to_owned)
            .collect())
    }

    /// The content of one file at a commit.
    pub async fn read_file(&self, commit: &str, path: &str) -> Result<String, GitError> {
        let spec = format!("{commit}:{path}");
        let out = git("show", &["show", &spec], Some(&self.path)).await?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Paths of the files under `dir` (relative to the repository root) in the commit's tree,
    /// recursively; empty when `dir` does not exist there.
    pub async fn ls_tree(&self, commit: &str, dir: &str) -> Result<Vec<String>, GitError> {
        check_ref(commit)?;
        let out = git(
            "ls-tree",
            &[
                "ls-tree",
                "-r",
                "-z",
                "--name-only",
                "--full-tree",
                "--end-of-options",
                commit,
                "--",
                dir,
            ],
            Some(&self.path),
        )
        .await?;
        Ok(String::from_utf8_lossy(&out)
            .split('\0')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// The tree entries (mode, object, path) at exactly `paths` in the commit, for those
    /// that exist; git does not look through a symlink, so a path below one is absent.
    pub async fn tree_entries(
        &self,
        commit: &str,
        paths: &[String],
    ) -> Result<Vec<TreeEntry>, GitError> {
        check_ref(commit)?;
        let mut args = vec![
            "ls-tree",
            "-z",
            "--full-tree",
            "--end-of-options",
            commit,
            "--",
        ];
        args.extend(paths.iter().map(String::as_str));
        let out = git("ls-tree", &args, Some(&self.path)).await?;
        Ok(String::from_utf8_lossy(&out)
            .split('\0')
            .filter_map(|line| {
                let (meta, path) = line.split_once('\t')?;
                let mut meta = meta.split(' ');
                let mode = meta.next()?.to_owned();
                let _kind = meta.next()?;
                let object = meta.next()?.to_owned();
                Some(TreeEntry {
                    mode,
                    object,
                    path: path.to_owned(),
                })
            })
            .collect())
    }

    /// The content of a blob (a symlink's target, for one), as text.
    pub async fn read_blob(&self, object: &str) -> Result<String, GitError> {
        check_ref(object)?;
        let out = git(
            "cat-file",
            &["cat-file", "blob", "--end-of-options", object],
            Some(&self.path),
        )
        .await?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Paths `commit` changes since it left `base` (`git diff --name-only base...commit`:
    /// from their merge base, so changes made on `base` meanwhile are not counted).
    pub async fn changed_paths(&self, base: &str, commit: &str) -> Result<Vec<String>, GitError> {
        check_ref(base)?;
        check_ref(commit)?;
        let range = format!("{base}...{commit}");
        let out = git(
            "diff",
            &[
                "diff",
                "--name-only",
                "-z",
                "--no-renames",
                "--end-of-options",
                &range,
            ],
            Some(&self.path),
        )
        .await?;
        Ok(String::from_utf8_lossy(&out)
            .split('\0')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// Whether the mirror holds `commit` (a full commit id).
    pub async fn has_commit(&self, commit: &str) -> bool {
        if check_ref(commit).is_err() {
            return false;
        }
        let spec = format!("{commit}^{{commit}}");
        git(
            "cat-file",
            &["cat-file", "-e", "--end-of-options", &spec],
            Some(&self.path),
        )
        .await
        .is_ok()
    }

    /// A fresh working copy of exactly `commit` at `dest` (which must not exist).
    pub async fn checkout(&self, commit: &str, dest: &Path) -> Result<(), GitError> {
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let mirror = self.path.to_string_lossy().into_owned();
        let dest_str = dest.to_string_lossy().into_owned();
        git(
            "clone",
            &[
                "clone",
                "--quiet",
                "--no-checkout",
                // A copy, neither `--shared` (the checkout's git would need the mirror in the
                // data dir, which actions cannot see) nor hard links (an action could change
                // the mirror's objects through them).
                "--no-hardlinks",
                "--",
                &mirror,
                &dest_str,
            ],
            None,
        )
        .await?;
        git(
            "checkout",
            &["checkout", "--quiet", "--detach", commit],
            Some(dest),
        )
        .await?;
        Ok(())
    }

    /// `Name <email>` of the author of `commit`.
    pub async fn commit_author(&self, commit: &str) -> Result<String, GitError> {
        check_ref(commit)?;
        let out = git(
            "log",
            &[
                "log",
                "-1",
                "--format=%an <%ae>",
                "--end-of-options",
                commit,
            ],
            Some(&self.path),
        )
        .await?;
        Ok(String::from_utf8_lossy(&out).trim().to_owned())
    }

    /// `git diff --stat` from `base` (or, without one, from the commit's parent; for a root
    /// commit, from the empty tree) to `commit`.
    pub async fn diff_stat(&self, base: Option<&str>, commit: &str) -> Result<String, GitError> {
        check_ref(commit)?;
        if let Some(base) = base {
            check_ref(base)?;
        }
        let range;
        let args: Vec<&str> = match base {
            Some(base) => {
                range = format!("{base}..{commit}");
                vec!["diff", "--stat", "--no-color", "--end-of-options", &range]
            }
            None => vec![
                "show",
                "--stat",
                "--format=",
                "--no-color",
                "--root",
                "--end-of-options",
                commit,
            ],
        };
        let out = git("diff", &args, Some(&self.path)).await?;
        Ok(String::from_utf8_lossy(&out).trim_end().to_owned())
    }
}

/// Whether a repository address carries a password or token (`https://user:secret@host/…`).
/// Such an address would be stored, listed by the API and written to the audit log, so it is
/// refused; credentials belong in the secret store (a project's `git_secret`, see
/// [`GitAuth`]) or a git credential helper.
pub fn has_embedded_credentials(repo: &str) -> bool {
    let Some((_, rest)) = repo.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// Checks that `repo` is a reachable git repository, without cloning it.
pub async fn check_remote(repo: &str) -> Result<(), GitError> {
    check_remote_with(repo, None).await
}

/// [`check_remote`] with credentials for the remote.
pub async fn check_remote_with(repo: &str, auth: Option<&GitAuth>) -> Result<(), GitError> {
    if repo.is_empty() || repo.starts_with('-') {
        return Err(GitError::Failed {
            op: "ls-remote",
            message: format!("`{repo}` is not a repository address"),
        });
    }
    git_with(
        "ls-remote",
        &["ls-remote", "--quiet", "--", repo, "HEAD"],
        None,
        auth,
    )
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
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
        let error = check_remote_with("/nonexistent/pw-Qm5Tr7", Some(&auth("pw-Qm5Tr7")))
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("/nonexistent/***"), "{error}");
        assert!(!error.contains("pw-Qm5Tr7"), "{error}");
    }

    #[test]
    fn option_like_refs_are_refused() {
        assert!(check_ref("--upload-pack=evil").is_err());
        assert!(check_ref("main branch").is_err());
        assert!(check_ref("").is_err());
        assert!(check_ref("release/1.2").is_ok());
    }
}
