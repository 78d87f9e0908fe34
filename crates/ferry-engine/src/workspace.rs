//! A run's working directory, outside the data dir, and the rules for every path Ferry
//! derives from a commit.
//!
//! ```text
//! WORK/run-N/          0700, Ferry's; an action may read it but not change its entries
//!   src/               the checkout                        (action: read-write)
//!   tf/ENV/            TF_DATA_DIR per environment          (action: read-write)
//!   tmp/               TMPDIR                               (action: read-write)
//!   out/               where `terraform plan -out` and `show -json` write (read-write)
//!   plan/              the approved plan, copied in for apply (action: read-only)
//!   secrets-K/         one action's secret files            (action: read-only)
//! ```
//!
//! A commit controls what is inside `src/`, symlinks included. So every path Ferry takes
//! from a commit (the Terraform directory, vars files) must resolve inside the checkout —
//! checked in the commit's git tree at trigger time ([`check_tree_paths`]) and on disk right
//! before each use ([`inside`]) — and Ferry's own reads and writes of files an action could
//! have touched go through `openat2(RESOLVE_BENEATH)` or `O_NOFOLLOW`, so no symlink swapped
//! in by a running action can redirect them.

use std::collections::VecDeque;
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use ferry_spec::PipelineSpec;
use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};

use crate::git::Mirror;

/// The directory of one run.
#[derive(Debug, Clone)]
pub(crate) struct RunDir {
    root: PathBuf,
}

impl RunDir {
    pub(crate) fn new(root: PathBuf) -> RunDir {
        RunDir { root }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn src(&self) -> PathBuf {
        self.root.join("src")
    }

    pub(crate) fn tf_data(&self, environment: &str) -> PathBuf {
        self.root.join("tf").join(environment)
    }

    pub(crate) fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub(crate) fn out(&self) -> PathBuf {
        self.root.join("out")
    }

    pub(crate) fn plan(&self) -> PathBuf {
        self.root.join("plan")
    }

    /// Creates the run's directories (0700) that do not exist yet.
    pub(crate) fn create(&self) -> io::Result<()> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true).mode(0o700);
        for dir in [
            self.root.clone(),
            self.root.join("tf"),
            self.tmp(),
            self.out(),
            self.plan(),
        ] {
            builder.create(&dir)?;
        }
        Ok(())
    }

    /// What an action of this run may reach: its writable directories, the run directory
    /// (its secret files, the approved plan) read-only, and `readable` (the Terraform binary's
    /// directory); everything `hidden` stays out of reach.
    pub(crate) fn sandbox(
        &self,
        writable_extra: &[PathBuf],
        readable: &[PathBuf],
        hidden: &[PathBuf],
    ) -> ferry_executor::Sandbox {
        let mut writable = vec![self.src(), self.root.join("tf"), self.tmp(), self.out()];
        writable.extend(writable_extra.iter().cloned());
        let mut read = vec![self.root.clone()];
        read.extend(readable.iter().cloned());
        ferry_executor::Sandbox {
            writable,
            readable: read,
            hidden: hidden.to_vec(),
        }
    }
}

/// Why a path from a commit is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} `{path}` resolves to {target}, outside the checkout; Ferry refuses paths that leave the repository")]
pub struct Escape {
    pub what: String,
    pub path: String,
    pub target: String,
}

/// `root/rel` with every symlink followed, refused unless it stays inside `root`. A path
/// that does not exist is returned as joined (the caller reports it missing).
pub(crate) fn inside(root: &Path, rel: &str, what: &str) -> Result<PathBuf, Escape> {
    let joined = root.join(rel);
    let Ok(real_root) = std::fs::canonicalize(root) else {
        return Ok(joined);
    };
    match std::fs::canonicalize(&joined) {
        Ok(real) if real.starts_with(&real_root) => Ok(real),
        Ok(real) => Err(Escape {
            what: what.to_owned(),
            path: rel.to_owned(),
            target: real.display().to_string(),
        }),
        Err(_) => {
            // A dangling link still may not point out: resolve what exists.
            match std::fs::read_link(&joined) {
                Ok(target) if target.is_absolute() || !joined.starts_with(root) => Err(Escape {
                    what: what.to_owned(),
                    path: rel.to_owned(),
                    target: target.display().to_string(),
                }),
                _ => Ok(joined),
            }
        }
    }
}

/// Every path the pipeline takes from the commit — the Terraform directory and each
/// environment's vars file — checked in the commit's tree: following the symlinks git
/// stores, each must stay inside the repository.
pub(crate) async fn check_tree_paths(
    mirror: &Mirror,
    commit: &str,
    spec: &PipelineSpec,
) -> Result<(), crate::Error> {
    let mut paths = vec![("terraform.dir".to_owned(), spec.terraform.dir.clone())];
    for env in &spec.environments {
        if let Some(vars) = &env.vars_file {
            paths.push((
                format!("environments.{}.vars_file", env.name),
                join_rel(&spec.terraform.dir, vars),
            ));
        }
    }
    for (what, path) in paths {
        resolve_in_tree(mirror, commit, &what, &path).await?;
    }
    Ok(())
}

fn join_rel(dir: &str, file: &str) -> String {
    if dir == "." || dir.is_empty() {
        file.to_owned()
    } else {
        format!("{dir}/{file}")
    }
}

/// Follows `path` through the commit's tree, symlink by symlink (at most 40, as the kernel
/// does), and refuses it if it leaves the repository.
async fn resolve_in_tree(
    mirror: &Mirror,
    commit: &str,
    what: &str,
    path: &str,
) -> Result<(), crate::Error> {
    let escape = |target: String| {
        crate::Error::Escape(Escape {
            what: what.to_owned(),
            path: path.to_owned(),
            target,
        })
    };
    let mut todo: VecDeque<String> = components(path).into();
    let mut resolved: Vec<String> = Vec::new();
    let mut hops = 0;
    'walk: loop {
        // Every prefix still to walk, so that one git call answers for all of them.
        let mut prefixes = Vec::new();
        let mut walk = resolved.clone();
        for c in &todo {
            match c.as_str() {
                "." => {}
                ".." => {
                    if walk.pop().is_none() {
                        return Err(escape("a path above the repository root".to_owned()));
                    }
                }
                name => {
                    walk.push(name.to_owned());
                    prefixes.push(walk.join("/"));
                }
            }
        }
        if prefixes.is_empty() {
            return Ok(());
        }
        let entries = mirror.tree_entries(commit, &prefixes).await?;
        while let Some(c) = todo.pop_front() {
            match c.as_str() {
                "." => continue,
                ".." => {
                    resolved.pop();
                    continue;
                }
                _ => resolved.push(c),
            }
            let here = resolved.join("/");
            let Some(entry) = entries.iter().find(|e| e.path == here) else {
                // Absent at this commit: whoever uses the path reports that.
                return Ok(());
            };
            if entry.mode != "120000" {
                continue;
            }
            hops += 1;
            if hops > 40 {
                return Err(escape(format!(
                    "{here} (too many levels of symbolic links)"
                )));
            }
            let target = mirror.read_blob(&entry.object).await?;
            if target.starts_with('/') {
                return Err(escape(target));
            }
            resolved.pop();
            for c in components(&target).into_iter().rev() {
                todo.push_front(c);
            }
            continue 'walk;
        }
        return Ok(());
    }
}

fn components(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Reads a regular file an action could have written, refusing a symlink or anything
/// but a regular file at that name.
pub(crate) fn read_regular(path: &Path) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc_o_nofollow())
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    let mut bytes = Vec::with_capacity(meta.size() as usize);
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn libc_o_nofollow() -> i32 {
    OFlags::NOFOLLOW.bits() as i32
}

/// Writes `bytes` as `name` (0600) in the directory `dir` of `root`: `dir` is opened with
/// every symlink required to stay beneath `root`, whatever is at `name` is removed (never
/// followed), and the file is created anew. A commit cannot redirect the write.
pub(crate) fn write_beneath(root: &Path, dir: &str, name: &str, bytes: &[u8]) -> io::Result<()> {
    let root_fd = rustix::fs::open(
        root,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )?;
    let dir_fd = rustix::fs::openat2(
        &root_fd,
        if dir.is_empty() { "." } else { dir },
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("`{dir}` does not resolve inside the checkout ({e})"),
        )
    })?;
    match rustix::fs::unlinkat(&dir_fd, name, AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(e.into()),
    }
    let fd = rustix::fs::openat(
        &dir_fd,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    let mut file = std::fs::File::from(fd);
    file.write_all(bytes)?;
    Ok(())
}

/// Writes a file Ferry owns, in a directory Ferry created: created anew (0600), never
/// through a symlink, and fsync'd (a record a database row will name).
pub(crate) fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_new_file(path, bytes)?.sync_all()
}

/// [`write_new`] for scratch space of a run (its working directory), which a crash throws
/// away: not fsync'd.
pub(crate) fn write_scratch(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_new_file(path, bytes).map(drop)
}

fn write_new_file(path: &Path, bytes: &[u8]) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc_o_nofollow())
        .open(path)?;
    file.write_all(bytes)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_leave_the_checkout_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("src");
        std::fs::create_dir_all(root.join("infra/real")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("etc-link")).unwrap();
        std::os::unix::fs::symlink("real", root.join("infra/inner")).unwrap();
        std::os::unix::fs::symlink("../..", root.join("infra/up")).unwrap();
        std::os::unix::fs::symlink("/nonexistent/x", root.join("dangling")).unwrap();
        assert!(inside(&root, "infra/inner", "terraform.dir").is_ok());
        let err = inside(&root, "etc-link", "terraform.dir").unwrap_err();
        assert_eq!(
            err.to_string(),
            "terraform.dir `etc-link` resolves to /etc, outside the checkout; Ferry refuses paths that leave the repository"
        );
        assert!(inside(&root, "infra/up", "terraform.dir").is_err());
        assert!(inside(&root, "dangling", "vars_file").is_err());
        assert!(inside(&root, "missing", "vars_file").is_ok());
    }

    #[test]
    fn writes_never_follow_a_symlink_out_of_the_checkout() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("src");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(root.join("infra")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
        std::os::unix::fs::symlink(outside.join("victim"), root.join("infra/f.tf")).unwrap();
        // The directory resolves outside: refused.
        let err = write_beneath(&root, "escape", "f.tf", b"x").unwrap_err();
        assert!(err.to_string().contains("does not resolve inside"), "{err}");
        // The file name is a symlink out: replaced, not followed.
        write_beneath(&root, "infra", "f.tf", b"mine").unwrap();
        assert_eq!(std::fs::read(root.join("infra/f.tf")).unwrap(), b"mine");
        assert!(!outside.join("victim").exists());
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
        // Reads refuse a symlink.
        std::os::unix::fs::symlink(outside.join("x"), root.join("plan")).unwrap();
        std::fs::write(outside.join("x"), "secret").unwrap();
        assert!(read_regular(&root.join("plan")).is_err());
        assert_eq!(read_regular(&root.join("infra/f.tf")).unwrap(), b"mine");
    }
}
