//! Durable, owner-only file writes. Files such as `DATA_DIR/admin.token` and
//! `DATA_DIR/audit.head` must never be seen half-written (a reader would get a
//! truncated token or checkpoint after a crash) and must never be readable by
//! other users, even for the moment between creating and `chmod`-ing them.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rand::RngCore;

/// Atomically replaces `path` with `contents`, readable and writable only by
/// the owner (mode 0600 on Unix).
///
/// The bytes go to a fresh temporary file in the same directory, which is
/// fsync'd, renamed over `path`, and then the directory is fsync'd so that
/// the rename itself survives a crash. Readers see either the old file or
/// the new one, never a mix.
pub fn write_secret_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = parent_dir(path);
    let tmp = temp_path(path);
    let result = (|| {
        let mut file = create_new_owner_only(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        // Best effort: the temp file holds secret bytes and is useless now.
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The directory holding `path`; `"."` for a bare file name.
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A unique sibling of `path` named `.NAME.tmp-RANDOM`. Being in the same
/// directory keeps the final rename (or link) on one filesystem, so atomic.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut suffix = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut suffix);
    parent_dir(path).join(format!(".{name}.tmp-{}", hex::encode(suffix)))
}

/// Creates a file that must not exist yet, with mode 0600 from the start (the
/// umask can only remove bits), so no other user can ever open it.
pub(crate) fn create_new_owner_only(path: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
}

/// Flushes a directory's entries (new names, renames) to disk.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_owner_only_and_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.token");
        write_secret_file(&path, b"first").unwrap();
        write_secret_file(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // No temp files are left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("admin.token")]);
    }

    #[cfg(unix)]
    #[test]
    fn replacing_a_world_readable_file_leaves_it_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.token");
        fs::write(&path, b"old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        write_secret_file(&path, b"new").unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn failed_write_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        // Renaming a file over a non-empty directory fails.
        let target = dir.path().join("occupied");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("x"), b"").unwrap();
        assert!(write_secret_file(&target, b"secret").is_err());
        let count = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(count, 1);
    }
}
