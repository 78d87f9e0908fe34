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

/// A bare mirror of a project's repository.
#[derive(Debug, Clone)]
pub struct Mirror {
    pub path: PathBuf,
}

async fn git(op: &'static str, args: &[&str], dir: Option<&Path>) -> Result<Vec<u8>, GitError> {
    let mut cmd = Command::new("git");
    if let Some(dir) = dir {
        cmd.arg("-C").arg(dir);
    }
    cmd.args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = cmd.output().await?;
    if !out.status.success() {
        let message = String::from_utf8_lossy(&out.stderr)
            .trim()
            .lines()
            .last()
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

impl Mirror {
    /// Clones `repo` (a URL or a local path) as a bare mirror at `path`, or fetches into
    /// the existing mirror.
    pub async fn sync(repo: &str, path: &Path) -> Result<Mirror, GitError> {
        if path.join("HEAD").exists() {
            git(
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
            )
            .await?;
        } else {
            if let Some(parent) = path.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            let tmp = path.with_extension("tmp");
            let _ = tokio::fs::remove_dir_all(&tmp).await;
            let tmp_str = tmp.to_string_lossy().into_owned();
            git(
                "clone",
                &["clone", "--mirror", "--quiet", "--", repo, &tmp_str],
                None,
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
                "--shared",
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
/// refused; credentials belong in a git credential helper (or, later, the secret store).
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
    if repo.is_empty() || repo.starts_with('-') {
        return Err(GitError::Failed {
            op: "ls-remote",
            message: format!("`{repo}` is not a repository address"),
        });
    }
    git(
        "ls-remote",
        &["ls-remote", "--quiet", "--", repo, "HEAD"],
        None,
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

    #[test]
    fn option_like_refs_are_refused() {
        assert!(check_ref("--upload-pack=evil").is_err());
        assert!(check_ref("main branch").is_err());
        assert!(check_ref("").is_err());
        assert!(check_ref("release/1.2").is_ok());
    }
}
