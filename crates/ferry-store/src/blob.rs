//! Durable blob files under the data directory: written to a temporary file, fsync'd,
//! renamed into place and the directory fsync'd, so a crash leaves either no file or the
//! whole file — never a partial one. Blobs are immutable: a name is never rewritten.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` at `dir/rel` durably. The caller commits the row that references the blob
/// only after this returns, so an interrupted write leaves an unreferenced file at worst.
pub fn write_durable(dir: &Path, rel: &str, bytes: &[u8]) -> std::io::Result<()> {
    let path = dir.join(rel);
    let parent = path
        .parent()
        .ok_or_else(|| std::io::Error::other("blob path has no parent"))?;
    std::fs::create_dir_all(parent)?;
    let tmp = parent.join(format!(".tmp-{}", rand_suffix()));
    {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(parent)?.sync_all()?;
    Ok(())
}

pub fn read(dir: &Path, rel: &str) -> std::io::Result<Vec<u8>> {
    std::fs::read(dir.join(rel))
}

fn rand_suffix() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{nanos}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_files_and_leaves_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        write_durable(dir.path(), "state/1/2.bin", b"hello").unwrap();
        assert_eq!(read(dir.path(), "state/1/2.bin").unwrap(), b"hello");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("state/1"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }
}
