//! `ferry admin backup DIR`, `ferry admin restore DIR` and `ferry admin rotate-master-key`:
//! the binary's side of `ferry_engine::datadir` — where the master key comes from (the
//! environment, which only the binary reads) and what is printed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use ferry_engine::datadir::{self, KeySource};

/// Where the master key comes from, as the server would load it; never created here.
pub(crate) fn existing_key(data: &Path) -> Result<KeySource> {
    Ok(
        match (
            std::env::var("FERRY_MASTER_KEY")
                .ok()
                .filter(|v| !v.is_empty()),
            std::env::var_os("FERRY_MASTER_KEY_FILE"),
        ) {
            (Some(value), _) => KeySource::Env(value),
            (None, Some(file)) => KeySource::File(PathBuf::from(file)),
            (None, None) => {
                let path = data.join(datadir::KEY_FILE);
                if !path.exists() {
                    bail!(
                        "no master key at {} (set FERRY_MASTER_KEY or FERRY_MASTER_KEY_FILE)",
                        path.display()
                    );
                }
                KeySource::DataDir(data.to_owned())
            }
        },
    )
}

/// A consistent online snapshot of the data directory's records — never the master key.
pub(crate) async fn backup(data: &Path, dest: &Path) -> Result<ExitCode> {
    let db = datadir::db_path(data);
    if !db.exists() {
        bail!("no Ferry database at {}", db.display());
    }
    let report = datadir::backup(data, dest, &existing_key(data)?)
        .await
        .context("backing up")?;
    println!(
        "backed up {} into {} ({} files)",
        data.display(),
        dest.display(),
        report.files
    );
    println!(
        "the master key (id {}) is NOT in the backup: keep {} (or your FERRY_MASTER_KEY) somewhere else, \
         such as a password manager or a KMS; without it the backup can be neither decrypted nor verified",
        report.key_id,
        data.join(datadir::KEY_FILE).display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Copies a backup into an empty data dir, then proves it (audit chain, every state
/// version).
pub(crate) async fn restore(backup: &Path, data: &Path) -> Result<ExitCode> {
    if !datadir::db_path(backup).exists() {
        bail!("{} is not a Ferry backup (no ferry.db)", backup.display());
    }
    if datadir::db_path(data).exists() {
        bail!(
            "{} already holds a Ferry database; restore into an empty data dir",
            data.display()
        );
    }
    let key = existing_key(data).context("the restored data needs its master key: put it at DATA_DIR/master.key (0600) or set FERRY_MASTER_KEY")?;
    let report = datadir::restore(backup, data, &key).await?;
    if report.problems.is_empty() {
        println!(
            "restored into {}: audit chain ok ({} entries), {} state versions verified",
            data.display(),
            report.audit_entries,
            report.versions
        );
        Ok(ExitCode::SUCCESS)
    } else {
        for p in &report.problems {
            eprintln!("restore check failed: {p}");
        }
        Ok(ExitCode::from(1))
    }
}

/// Re-encrypts every state version under a new master key, with the server stopped.
pub(crate) async fn rotate_master_key(data: &Path) -> Result<ExitCode> {
    if std::env::var_os("FERRY_MASTER_KEY").is_some()
        || std::env::var_os("FERRY_MASTER_KEY_FILE").is_some()
    {
        bail!("rotation replaces DATA_DIR/master.key; with FERRY_MASTER_KEY or FERRY_MASTER_KEY_FILE, unset it and put the current key in DATA_DIR/master.key (0600) first");
    }
    let db = datadir::db_path(data);
    if !db.exists() {
        bail!("no Ferry database at {}", db.display());
    }
    if let Ok(url) = std::fs::read_to_string(ferry_server::server_url_path(data)) {
        let addr = url.trim().trim_start_matches("http://").to_owned();
        if let Ok(addr) = addr.parse::<std::net::SocketAddr>() {
            if std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(500))
                .is_ok()
            {
                bail!("a server is running on {addr}; stop it before rotating the master key");
            }
        }
    }
    existing_key(data)?;
    let report = datadir::rotate_master_key(data).await?;
    println!(
        "master key rotated: {} → {}; {} state versions re-encrypted, the keyring, secrets and parameters re-wrapped",
        report.old_key_id, report.new_key_id, report.versions
    );
    println!(
        "backups taken before now still need the old key (id {}); keep it until they expire",
        report.old_key_id
    );
    Ok(ExitCode::SUCCESS)
}
