//! Git through the `git` CLI: one bare mirror per project, refreshed before each trigger,
//! and a clean checkout of a run's exact commit.
//!
//! The CLI (rather than a library) is what every user already has and trusts for auth
//! helpers, SSH config and odd hosting setups. Every argument that comes from a user is
//! validated or placed after `--`, so a ref cannot become an option.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

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
    #[error(
        "git {op} did not finish within {}; the remote may be unreachable or not answering (git_timeout in the server configuration)",
        humantime::format_duration(*after)
    )]
    Timeout { op: &'static str, after: Duration },
}

/// A git transport Ferry may fetch over, by git's own protocol names (`protocol.<name>.allow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Https,
    Ssh,
    /// Plain HTTP: credentials and code in clear; off unless configured.
    Http,
    /// `git://`: unauthenticated and unencrypted; off unless configured.
    Git,
    /// Local paths and `file://` addresses on the server's machine.
    File,
}

impl Protocol {
    pub const ALL: [Protocol; 5] = [
        Protocol::Https,
        Protocol::Ssh,
        Protocol::Http,
        Protocol::Git,
        Protocol::File,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Https => "https",
            Protocol::Ssh => "ssh",
            Protocol::Http => "http",
            Protocol::Git => "git",
            Protocol::File => "file",
        }
    }

    pub fn parse(name: &str) -> Option<Protocol> {
        Protocol::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

/// How Ferry runs git against a project's remote: which transports git may use (enforced by
/// git itself through `GIT_ALLOW_PROTOCOL`, so remote helpers such as `ext::` and `fd::`,
/// submodules and redirects are held to the same list) and how long one operation may take
/// before its whole process group is killed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitOptions {
    pub protocols: Vec<Protocol>,
    pub timeout: Duration,
}

impl Default for GitOptions {
    /// `https`, `ssh` and local paths; 10 minutes per operation.
    fn default() -> GitOptions {
        GitOptions {
            protocols: vec![Protocol::Https, Protocol::Ssh, Protocol::File],
            timeout: Duration::from_secs(600),
        }
    }
}

impl GitOptions {
    /// The value of `GIT_ALLOW_PROTOCOL`: git treats every transport not listed as `never`.
    fn allow_protocol(&self) -> String {
        let names: Vec<&str> = self.protocols.iter().map(|p| p.as_str()).collect();
        names.join(":")
    }

    /// The same timeout, but only Ferry's own local copies (a checkout clones the mirror).
    fn local(&self) -> GitOptions {
        GitOptions {
            protocols: vec![Protocol::File],
            timeout: self.timeout,
        }
    }
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
    /// Timeout of every operation on the mirror; git may only read local paths through it.
    pub options: GitOptions,
}

impl Mirror {
    async fn git(&self, op: &'static str, args: &[&str]) -> Result<Vec<u8>, GitError> {
        git_with(op, args, Some(&self.path), None, &self.options.local()).await
    }
}

/// Runs git with `options`' transports and timeout; with `auth`, through a fresh askpass
/// helper whose password is only in this git process's environment.
async fn git_with(
    op: &'static str,
    args: &[&str],
    dir: Option<&Path>,
    auth: Option<&GitAuth>,
    options: &GitOptions,
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
        .env("GIT_ALLOW_PROTOCOL", options.allow_protocol())
        .env_remove("SSH_ASKPASS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout also kills ssh, remote helpers and hooks.
        .process_group(0)
        .kill_on_drop(true);
    let child = cmd.spawn()?;
    let pid = child.id();
    let out = match tokio::time::timeout(options.timeout, child.wait_with_output()).await {
        Ok(out) => out?,
        Err(_) => {
            if let Some(pid) = pid.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            return Err(GitError::Timeout {
                op,
                after: options.timeout,
            });
        }
    };
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
        || r.chars().count() > 255
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
    /// the existing mirror, with credentials for the remote when there are any.
    pub async fn sync_with(
        repo: &str,
        path: &Path,
        auth: Option<&GitAuth>,
        options: &GitOptions,
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
                options,
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
                options,
            )
            .await?;
            tokio::fs::rename(&tmp, path).await?;
        }
        Ok(Mirror {
            path: path.to_owned(),
            options: options.clone(),
        })
    }

    /// The default branch's name, from the mirror's HEAD.
    pub async fn default_branch(&self) -> Result<String, GitError> {
        let out = self
            .git("symbolic-ref", &["symbolic-ref", "--quiet", "HEAD"])
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
            if let Ok(out) = self
                .git(
                    "rev-parse",
                    &[
                        "rev-parse",
                        "--verify",
                        "--quiet",
                        "--end-of-options",
                        &spec,
                    ],
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
        let out = self
            .git(
                "ls-tree",
                &["ls-tree", "-r", "--name-only", "--full-tree", commit],
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
        let out = self.git("show", &["show", &spec]).await?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Paths of the files under `dir` (relative to the repository root) in the commit's tree,
    /// recursively; empty when `dir` does not exist there.
    pub async fn ls_tree(&self, commit: &str, dir: &str) -> Result<Vec<String>, GitError> {
        check_ref(commit)?;
        let out = self
            .git(
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
        let out = self.git("ls-tree", &args).await?;
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
        let out = self
            .git(
                "cat-file",
                &["cat-file", "blob", "--end-of-options", object],
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
        let out = self
            .git(
                "diff",
                &[
                    "diff",
                    "--name-only",
                    "-z",
                    "--no-renames",
                    "--end-of-options",
                    &range,
                ],
            )
            .await?;
        Ok(String::from_utf8_lossy(&out)
            .split('\0')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// In one git process: the deploy branch (`branch`, or the mirror's default branch) and
    /// its commit, and whether the mirror holds `commit`. `None` when any of them does not
    /// resolve (the caller then takes the slow path, whose errors say which).
    pub async fn deploy_base(
        &self,
        branch: Option<&str>,
        commit: &str,
    ) -> Option<(String, String)> {
        check_ref(commit).ok()?;
        let commit = format!("{commit}^{{commit}}");
        // Inputs are checked refs (never starting with `-`), so no `--end-of-options`, which
        // would turn the trailing `--symbolic-full-name` into a revision.
        let out = match branch {
            Some(branch) => {
                check_ref(branch).ok()?;
                let base = format!("refs/heads/{branch}^{{commit}}");
                self.git("rev-parse", &["rev-parse", &base, &commit]).await
            }
            None => {
                self.git(
                    "rev-parse",
                    &[
                        "rev-parse",
                        "HEAD^{commit}",
                        &commit,
                        "--symbolic-full-name",
                        "HEAD",
                    ],
                )
                .await
            }
        }
        .ok()?;
        let text = String::from_utf8_lossy(&out);
        let mut lines = text.lines().map(str::trim);
        let base = lines.next().filter(|l| l.len() >= 40)?.to_owned();
        lines.next().filter(|l| l.len() >= 40)?;
        let name = match branch {
            Some(branch) => branch.to_owned(),
            None => {
                let full = lines.next()?;
                full.strip_prefix("refs/heads/")?.to_owned()
            }
        };
        Some((name, base))
    }

    /// Whether the mirror holds `commit` (a full commit id).
    pub async fn has_commit(&self, commit: &str) -> bool {
        if check_ref(commit).is_err() {
            return false;
        }
        let spec = format!("{commit}^{{commit}}");
        self.git("cat-file", &["cat-file", "-e", "--end-of-options", &spec])
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
        let local = self.options.local();
        git_with(
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
            None,
            &local,
        )
        .await?;
        git_with(
            "checkout",
            &["checkout", "--quiet", "--detach", commit],
            Some(dest),
            None,
            &local,
        )
        .await?;
        Ok(())
    }

    /// `Name <email>` of the author of `commit`.
    pub async fn commit_author(&self, commit: &str) -> Result<String, GitError> {
        check_ref(commit)?;
        let out = self
            .git(
                "log",
                &[
                    "log",
                    "-1",
                    "--format=%an <%ae>",
                    "--end-of-options",
                    commit,
                ],
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
        let out = self.git("diff", &args).await?;
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

/// The directory a local repository address names (`/srv/repo`, `./repo`, `file:///srv/repo`),
/// or `None` for a remote address (`https://…`, `host:path`, `ssh://…`).
pub fn local_path(repo: &str) -> Option<PathBuf> {
    if let Some(rest) = repo.strip_prefix("file://") {
        return Some(PathBuf::from(rest));
    }
    if repo.contains("://") {
        return None;
    }
    // git's rule: a colon before the first slash makes `host:path` an scp-like SSH address.
    match (repo.find(':'), repo.find('/')) {
        (Some(colon), Some(slash)) if colon < slash => None,
        (Some(_), None) => None,
        _ => Some(PathBuf::from(repo)),
    }
}

/// Checks that `repo` is a reachable git repository over an allowed transport, without
/// cloning it, with credentials for the remote when there are any.
pub async fn check_remote_with(
    repo: &str,
    auth: Option<&GitAuth>,
    options: &GitOptions,
) -> Result<(), GitError> {
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
        options,
    )
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests;
