//! The sandbox an action's process tree runs in: code from a commit runs, but out of reach
//! of Ferry's keys and data (PRODUCT.md §4 invariant 7).
//!
//! The mechanism is the kernel's Landlock LSM (unprivileged, inherited by every child, not
//! undone by `exec` or by root), with `no_new_privs` and, when the server runs as root, every
//! capability dropped, so a root action cannot load a kernel module, read raw devices or
//! regain privileges through a setuid binary. What an action may reach:
//!
//! - read and execute the whole filesystem *except* beneath [`Sandbox::hidden`] paths (the
//!   data dir, the master key, other runs' directories, `/tmp`, device nodes…). Landlock only
//!   grants, so "everything except X" is built by granting each sibling along the way from
//!   `/` to X ([`visible_roots`]); a file created later next to X is not visible.
//! - read and execute beneath [`Sandbox::readable`] even inside a hidden path (the Terraform
//!   binary's directory, the run's secret files);
//! - read, write, create and remove beneath [`Sandbox::writable`] (its checkout, its Terraform
//!   data, its temporary directory);
//! - the harmless device nodes in [`DEVICES`].
//!
//! Landlock also keeps the action from tracing, signalling (ABI 6) or reading `/proc/PID/…`
//! of any process outside its own domain — the server and every other action included —
//! and from connecting to abstract UNIX sockets created outside it (ABI 6) and, from ABI 9,
//! to pathname UNIX sockets outside its writable directories. The network stays open: the
//! action reaches the state backend over HTTP with its own short-lived credential.
//!
//! Restrictions are applied to a short-lived thread that then spawns the child; the child
//! inherits the thread's credentials, Landlock domain and `no_new_privs`, and the thread
//! ends. No other thread of the server is touched, and nothing runs between `fork` and
//! `exec` that is not already in the standard library.

use std::io;
use std::path::{Path, PathBuf};

use landlock::{
    Access, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus, Scope, ABI,
};

/// The newest Landlock ABI this code asks for; older kernels enforce what they know.
const ABI_WANTED: ABI = ABI::V10;

/// Device nodes every action may read and write (they reveal nothing).
pub const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
];

/// Paths hidden from every action whatever the deployment: raw devices (a root action could
/// read the disk) and the machine's shared temporary directories (other programs' files;
/// actions get a private `TMPDIR`).
pub const ALWAYS_HIDDEN: &[&str] = &["/dev", "/tmp", "/var/tmp"];

/// Where an action may reach. Paths need not be canonical; they are resolved when applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sandbox {
    /// Read, write, create and remove beneath these.
    pub writable: Vec<PathBuf>,
    /// Read and execute beneath these, even inside a hidden path.
    pub readable: Vec<PathBuf>,
    /// Everything else is readable and executable except beneath these (and
    /// [`ALWAYS_HIDDEN`]).
    pub hidden: Vec<PathBuf>,
}

/// Whether this kernel can sandbox actions, found by applying a ruleset to a throw-away
/// thread ([`probe`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Support {
    /// Landlock is enforced with every restriction Ferry asks for.
    Full { abi: i32 },
    /// Landlock is enforced, without the restrictions this kernel predates.
    Partial { abi: i32 },
    /// No Landlock: actions cannot be sandboxed here.
    Unavailable { reason: String },
}

impl Support {
    pub fn is_available(&self) -> bool {
        !matches!(self, Support::Unavailable { .. })
    }

    /// For `/readyz`, `ferry config check` and the start-up log.
    pub fn describe(&self) -> String {
        match self {
            Support::Full { abi } => format!("landlock (ABI {abi})"),
            Support::Partial { abi } => {
                format!("landlock (ABI {abi}; a newer kernel would also confine UNIX sockets)")
            }
            Support::Unavailable { reason } => format!("unavailable: {reason}"),
        }
    }
}

/// Applies a minimal ruleset to a thread that then ends, and reports what the kernel
/// enforced. Cheap enough to call at start-up.
pub fn probe() -> Support {
    let result = std::thread::spawn(|| -> Result<(RulesetStatus, i32), String> {
        let status = Ruleset::default()
            .handle_access(AccessFs::from_all(ABI_WANTED))
            .map_err(|e| e.to_string())?
            .create()
            .map_err(|e| e.to_string())?
            .add_rules(landlock::path_beneath_rules(
                ["/"],
                AccessFs::from_all(ABI_WANTED),
            ))
            .map_err(|e| e.to_string())?
            .restrict_self()
            .map_err(|e| e.to_string())?;
        let abi = match status.landlock {
            landlock::LandlockStatus::Available {
                effective_abi,
                kernel_abi,
            } => kernel_abi.unwrap_or(effective_abi as i32),
            _ => 0,
        };
        Ok((status.ruleset, abi))
    })
    .join();
    match result {
        Ok(Ok((RulesetStatus::FullyEnforced, abi))) => Support::Full { abi },
        Ok(Ok((RulesetStatus::PartiallyEnforced, abi))) => Support::Partial { abi },
        Ok(Ok((RulesetStatus::NotEnforced, _))) => Support::Unavailable {
            reason: "the kernel does not enforce Landlock (needs Linux 5.13+ with landlock in the lsm= boot list)".to_owned(),
        },
        Ok(Err(e)) => Support::Unavailable { reason: e },
        Err(_) => Support::Unavailable {
            reason: "the Landlock probe panicked".to_owned(),
        },
    }
}

impl Sandbox {
    /// Restricts the calling thread to this sandbox, for good: call it only on a thread that
    /// exists to spawn the action. Fails when the kernel enforces no Landlock at all.
    pub(crate) fn restrict_current_thread(&self) -> io::Result<()> {
        let read = AccessFs::from_read(ABI_WANTED);
        let all = AccessFs::from_all(ABI_WANTED);
        let mut hidden: Vec<PathBuf> = ALWAYS_HIDDEN.iter().map(PathBuf::from).collect();
        hidden.extend(self.hidden.iter().cloned());
        let hidden = canonical_all(&hidden);
        let mut roots = visible_roots(&hidden);
        for extra in &self.readable {
            split(extra, &hidden, true, 0, &mut roots);
        }
        let writable: Vec<PathBuf> = self
            .writable
            .iter()
            .filter_map(|p| std::fs::canonicalize(p).ok())
            .collect();
        let ruleset = Ruleset::default()
            .set_compatibility(CompatLevel::BestEffort)
            .handle_access(all)
            .and_then(|r| r.scope(Scope::from_all(ABI_WANTED)))
            .and_then(|r| r.create())
            .and_then(|r| r.add_rules(landlock::path_beneath_rules(&roots, read)))
            .and_then(|r| r.add_rules(landlock::path_beneath_rules(DEVICES, all)))
            .and_then(|r| r.add_rules(landlock::path_beneath_rules(&writable, all)))
            .map_err(|e| io::Error::other(format!("cannot build the action sandbox: {e}")))?;
        // The bounding set first (dropping it needs CAP_SETPCAP, which goes next); an
        // unprivileged server has nothing to drop and gets EPERM, which is fine.
        drop_bounding_set();
        let status = ruleset
            .restrict_self()
            .map_err(|e| io::Error::other(format!("cannot enter the action sandbox: {e}")))?;
        if status.ruleset == RulesetStatus::NotEnforced {
            return Err(io::Error::other(
                "this kernel does not enforce Landlock, so the action cannot be sandboxed",
            ));
        }
        if !status.no_new_privs {
            return Err(io::Error::other("cannot set no_new_privs for the action"));
        }
        clear_capabilities()?;
        Ok(())
    }
}

fn drop_bounding_set() {
    for cap in caps::all() {
        let _ = caps::drop(None, caps::CapSet::Bounding, cap);
    }
}

/// Empties the thread's capability sets. With `no_new_privs` set, `exec` cannot give any
/// back, not even to root.
fn clear_capabilities() -> io::Result<()> {
    for set in [
        caps::CapSet::Ambient,
        caps::CapSet::Inheritable,
        caps::CapSet::Effective,
        caps::CapSet::Permitted,
    ] {
        caps::clear(None, set)
            .map_err(|e| io::Error::other(format!("cannot drop capabilities ({set:?}): {e}")))?;
    }
    Ok(())
}

/// `paths` with symlinks resolved; a path that does not exist yet is resolved as far as it
/// exists, so that it is hidden when it appears.
fn canonical_all(paths: &[PathBuf]) -> Vec<PathBuf> {
    paths.iter().filter_map(|p| canonical_prefix(p)).collect()
}

fn canonical_prefix(path: &Path) -> Option<PathBuf> {
    if let Ok(real) = std::fs::canonicalize(path) {
        return Some(real);
    }
    let parent = path.parent()?;
    let name = path.file_name()?;
    Some(canonical_prefix(parent)?.join(name))
}

/// The directories and files beneath which an action may read: all of `/` but the hidden
/// paths (canonical), as the smallest set of roots.
pub fn visible_roots(hidden: &[PathBuf]) -> Vec<PathBuf> {
    let mut roots = Vec::new();
    split(Path::new("/"), hidden, false, 0, &mut roots);
    roots
}

/// Adds `dir` to `roots` when nothing hidden is beneath it, or else each of its entries
/// that is not hidden, recursively. Symlinks are followed, so a link that points into a
/// hidden path grants nothing. `inside_hidden_ok` lets an explicitly readable path inside a
/// hidden one through (but still not one that contains a hidden path).
fn split(
    dir: &Path,
    hidden: &[PathBuf],
    inside_hidden_ok: bool,
    depth: usize,
    roots: &mut Vec<PathBuf>,
) {
    if depth > 40 {
        return;
    }
    let Ok(dir) = std::fs::canonicalize(dir) else {
        return;
    };
    if hidden.contains(&dir) {
        return;
    }
    if !inside_hidden_ok && hidden.iter().any(|h| dir.starts_with(h)) {
        return;
    }
    if !hidden.iter().any(|h| h.starts_with(&dir)) {
        if !roots.contains(&dir) {
            roots.push(dir);
        }
        return;
    }
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    let mut children: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
    children.sort();
    for child in children {
        split(&child, hidden, inside_hidden_ok, depth + 1, roots);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_roots_cover_everything_but_the_hidden_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(tmp.path()).unwrap();
        for d in ["a/secret", "a/open", "b"] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        std::fs::write(base.join("a/file"), "x").unwrap();
        std::os::unix::fs::symlink(base.join("a/secret"), base.join("b/link")).unwrap();
        let hidden = vec![base.join("a/secret")];
        let mut roots = Vec::new();
        split(&base, &hidden, false, 0, &mut roots);
        let shown: Vec<String> = roots
            .iter()
            .map(|r| r.strip_prefix(&base).unwrap().display().to_string())
            .collect();
        // `a` is split around `secret`; `b` is granted whole: Landlock judges the path a
        // link resolves to, so `b/link` still reaches nothing of `a/secret`.
        assert_eq!(shown, ["a/file", "a/open", "b"]);
        // A link that is itself one of the entries split grants nothing either.
        std::os::unix::fs::symlink(base.join("a/secret"), base.join("a/link")).unwrap();
        let mut roots = Vec::new();
        split(&base, &hidden, false, 0, &mut roots);
        assert!(!roots.contains(&base.join("a/secret")));
    }

    #[test]
    fn a_path_that_does_not_exist_yet_is_hidden_by_its_real_parent() {
        let tmp = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(tmp.path()).unwrap();
        let link = real.join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(
            canonical_prefix(&link.join("later/deeper")),
            Some(real.join("later/deeper"))
        );
    }

    #[test]
    fn the_root_split_never_lists_the_hidden_path_or_its_ancestors() {
        let hidden = canonical_all(&[PathBuf::from("/tmp"), PathBuf::from("/dev")]);
        let roots = visible_roots(&hidden);
        assert!(!roots.is_empty());
        for root in &roots {
            assert!(
                !hidden
                    .iter()
                    .any(|h| h.starts_with(root) || root.starts_with(h)),
                "{} overlaps a hidden path",
                root.display()
            );
        }
        assert!(roots.iter().any(|r| r == Path::new("/usr")));
    }
}
