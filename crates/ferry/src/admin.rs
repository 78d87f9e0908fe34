//! `ferry admin backup DIR` and `ferry admin restore DIR`: a consistent online snapshot of
//! the data directory's records (database, encrypted state versions, plans, logs, audit
//! checkpoint) — never the master key — and its verified return.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use ferry_secrets::{KeySource, MasterKey};
use ferry_store::Store;
use sha2::Digest;

/// Directories of the data dir that hold records (everything but the key, the bootstrap
/// token, mirrors and per-run scratch space, which are derived or secret).
const RECORD_DIRS: &[&str] = &["blobs", "plans", "logs"];

fn copy_tree(src: &Path, dst: &Path) -> Result<u64> {
    let mut files = 0;
    if !src.exists() {
        return Ok(0);
    }
    std::fs::create_dir_all(dst).with_context(|| format!("creating {}", dst.display()))?;
    for entry in std::fs::read_dir(src).with_context(|| format!("reading {}", src.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with(".tmp-") {
            continue; // an unfinished blob write, referenced by nothing
        }
        let target = dst.join(&name);
        if entry.file_type()?.is_dir() {
            files += copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("copying {}", entry.path().display()))?;
            files += 1;
        }
    }
    Ok(files)
}

fn private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!(
            "{} is not empty; back up into a new directory",
            dir.display()
        );
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Snapshot first, then copy the immutable files: every blob the snapshot references was
/// fsync'd before its row committed, so it is already on disk.
pub(crate) async fn backup(data: &Path, dest: &Path) -> Result<ExitCode> {
    let db = ferry_server::db_path(data);
    if !db.exists() {
        bail!("no Ferry database at {}", db.display());
    }
    private_dir(dest)?;
    let key = load_key(data)?;
    let store = Store::open_read_only(&db, &key, ferry_server::audit_checkpoint_path(data)).await?;
    store
        .snapshot_into(&ferry_server::db_path(dest))
        .await
        .context("snapshotting the database")?;
    store.close().await;
    let checkpoint = ferry_server::audit_checkpoint_path(data);
    if checkpoint.exists() {
        std::fs::copy(&checkpoint, ferry_server::audit_checkpoint_path(dest))?;
    }
    let mut files = 0;
    for dir in RECORD_DIRS {
        files += copy_tree(&data.join(dir), &dest.join(dir))?;
    }
    println!(
        "backed up {} into {} ({files} files)",
        data.display(),
        dest.display()
    );
    println!(
        "the master key (id {}) is NOT in the backup: keep {} (or your FERRY_MASTER_KEY) somewhere else, \
         such as a password manager or a KMS; without it the backup can be neither decrypted nor verified",
        key.id(),
        data.join(ferry_secrets::key::DATA_DIR_KEY_FILE).display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The master key as the server would load it, never created here.
fn load_key(data: &Path) -> Result<MasterKey> {
    let source = match (
        std::env::var("FERRY_MASTER_KEY")
            .ok()
            .filter(|v| !v.is_empty()),
        std::env::var_os("FERRY_MASTER_KEY_FILE"),
    ) {
        (Some(value), _) => KeySource::Env(value),
        (None, Some(file)) => KeySource::File(PathBuf::from(file)),
        (None, None) => {
            let path = data.join(ferry_secrets::key::DATA_DIR_KEY_FILE);
            if !path.exists() {
                bail!(
                    "no master key at {} (set FERRY_MASTER_KEY or FERRY_MASTER_KEY_FILE)",
                    path.display()
                );
            }
            KeySource::DataDir(data.to_owned())
        }
    };
    Ok(MasterKey::load(&source)?.0)
}

/// Copies a backup into an empty data dir, then proves it: the audit chain verifies against
/// its checkpoint and every state version decrypts to content with its recorded digest.
pub(crate) async fn restore(backup: &Path, data: &Path) -> Result<ExitCode> {
    if !ferry_server::db_path(backup).exists() {
        bail!("{} is not a Ferry backup (no ferry.db)", backup.display());
    }
    if ferry_server::db_path(data).exists() {
        bail!(
            "{} already holds a Ferry database; restore into an empty data dir",
            data.display()
        );
    }
    std::fs::create_dir_all(data)?;
    std::fs::copy(ferry_server::db_path(backup), ferry_server::db_path(data))?;
    if ferry_server::audit_checkpoint_path(backup).exists() {
        std::fs::copy(
            ferry_server::audit_checkpoint_path(backup),
            ferry_server::audit_checkpoint_path(data),
        )?;
    }
    for dir in RECORD_DIRS {
        copy_tree(&backup.join(dir), &data.join(dir))?;
    }
    let key = load_key(data).context("the restored data needs its master key: put it at DATA_DIR/master.key (0600) or set FERRY_MASTER_KEY")?;
    let store = Store::open_read_only(
        &ferry_server::db_path(data),
        &key,
        ferry_server::audit_checkpoint_path(data),
    )
    .await?;
    let chain = store.verify_audit().await?;
    let versions = store.stored_versions().await?;
    store.close().await;
    let mut problems = Vec::new();
    if let Err(e) = &chain {
        problems.push(format!("audit chain: {e}"));
    }
    for stored in &versions {
        let addr = ferry_store::StateAddr {
            project_id: 0,
            project: &stored.project,
            environment: &stored.environment,
            name: &stored.name,
        };
        let what = format!("state {} version {}", addr.display(), stored.version.number);
        let sealed = match ferry_store::blob::read(data, &stored.version.blob) {
            Ok(bytes) => bytes,
            Err(e) => {
                problems.push(format!("{what}: blob missing ({e})"));
                continue;
            }
        };
        let opened = ferry_secrets::envelope::Sealed::from_bytes(&sealed)
            .map_err(|e| e.to_string())
            .and_then(|s| {
                ferry_secrets::envelope::open(
                    &key,
                    &s,
                    &ferry_engine::state::context(addr, &stored.version.sha256),
                )
                .map_err(|e| e.to_string())
            });
        match opened {
            Ok(plain)
                if hex::encode(sha2::Sha256::digest(plain.expose())) == stored.version.sha256 => {}
            Ok(_) => problems.push(format!("{what}: content does not match its sha256")),
            Err(e) => problems.push(format!("{what}: does not decrypt ({e})")),
        }
    }
    if problems.is_empty() {
        let entries = chain.map(|r| r.entries).unwrap_or(0);
        println!(
            "restored into {}: audit chain ok ({entries} entries), {} state versions verified",
            data.display(),
            versions.len()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        for p in &problems {
            eprintln!("restore check failed: {p}");
        }
        Ok(ExitCode::from(1))
    }
}

/// Re-encrypts every state version under a new master key and re-wraps the keyring (the audit
/// chain's key), with the server stopped. The new key waits in `master.key.next` until the
/// one database transaction that switches every version commits; a crash before that keeps
/// the old key, after it the next start (or this command) finishes the switch.
pub(crate) async fn rotate_master_key(data: &Path) -> Result<ExitCode> {
    if std::env::var_os("FERRY_MASTER_KEY").is_some()
        || std::env::var_os("FERRY_MASTER_KEY_FILE").is_some()
    {
        bail!("rotation replaces DATA_DIR/master.key; with FERRY_MASTER_KEY or FERRY_MASTER_KEY_FILE, unset it and put the current key in DATA_DIR/master.key (0600) first");
    }
    let db = ferry_server::db_path(data);
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
    ferry_server::finish_interrupted_rotation(data).await?;
    let old = load_key(data)?;
    let (new, text) = MasterKey::generate();
    let next = ferry_server::next_key_path(data);
    ferry_secrets::write_secret_file(&next, format!("{}\n", text.as_str()).as_bytes())?;
    let config = ferry_store::StoreConfig {
        path: db.clone(),
        audit_checkpoint: ferry_server::audit_checkpoint_path(data),
    };
    let store = Store::open(&config, &old).await?;
    let mut moved = Vec::new();
    let mut old_blobs = Vec::new();
    for stored in store.stored_versions().await? {
        let addr = ferry_store::StateAddr {
            project_id: 0,
            project: &stored.project,
            environment: &stored.environment,
            name: &stored.name,
        };
        let context = ferry_engine::state::context(addr, &stored.version.sha256);
        let sealed = ferry_secrets::envelope::Sealed::from_bytes(&ferry_store::blob::read(
            data,
            &stored.version.blob,
        )?)?;
        let plain = ferry_secrets::envelope::open(&old, &sealed, &context)?;
        let resealed = ferry_secrets::envelope::seal(&new, plain.expose(), &context).to_bytes();
        let blob = format!(
            "{}.{}.bin",
            stored.version.blob.trim_end_matches(".bin"),
            &new.id()[..8]
        );
        ferry_store::blob::write_durable(data, &blob, &resealed)?;
        moved.push(ferry_store::Reencrypted {
            version_id: stored.version.id,
            blob,
        });
        old_blobs.push(stored.version.blob.clone());
    }
    store
        .commit_rotation(&ferry_core::Actor::system("cli"), &old, &new, &moved)
        .await?;
    store.close().await;
    ferry_server::finish_interrupted_rotation(data).await?;
    for blob in old_blobs {
        let _ = std::fs::remove_file(data.join(blob));
    }
    println!(
        "master key rotated: {} → {}; {} state versions re-encrypted, the keyring, secrets and parameters re-wrapped",
        old.id(),
        new.id(),
        moved.len()
    );
    println!(
        "backups taken before now still need the old key (id {}); keep it until they expire",
        old.id()
    );
    Ok(ExitCode::SUCCESS)
}
