//! The data directory as a whole: where its files live, opening it for a server (the master
//! key, the store, the bootstrap admin token and user, a master key rotation that stopped
//! half-way), and the offline operations on it — backup, restore with verification, master
//! key rotation and audit chain verification — that the binary runs with the server stopped
//! or beside it. The engine never reads the process environment: callers say where the key
//! comes from.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_core::{Actor, Grant, Role};
pub use ferry_secrets::{KeySource, VerifyReport};
use ferry_secrets::{MasterKey, Sealed};
use ferry_store::{StateAddr, Store, StoreConfig, Subject};
use sha2::Digest;

/// The file of the master key inside the data dir (when it is kept there).
pub const KEY_FILE: &str = ferry_secrets::key::DATA_DIR_KEY_FILE;

/// Directories of the data dir that hold records (everything but the key, the bootstrap
/// token, mirrors and per-run scratch space, which are derived or secret).
const RECORD_DIRS: &[&str] = &["blobs", "plans", "logs"];

pub fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join("ferry.db")
}

pub fn audit_checkpoint_path(data_dir: &Path) -> PathBuf {
    data_dir.join("audit.head")
}

pub fn admin_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.token")
}

/// Where the first admin's generated password is written (mode 0600) when none is given.
pub fn admin_password_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.password")
}

/// Where a master key rotation keeps the new key until it commits.
pub fn next_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("master.key.next")
}

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("master key: {0}")]
    MasterKey(#[from] ferry_secrets::Error),
    #[error("store: {0}")]
    Store(#[from] ferry_store::Error),
    #[error("{0}")]
    AdminPassword(String),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

type Result<T, E = DataDirError> = std::result::Result<T, E>;

/// An opened data dir, ready to become an engine ([`crate::Engine::new`]).
pub struct Opened {
    pub(crate) store: Store,
    pub(crate) master: Arc<MasterKey>,
    /// The master key was created by this open (a new data dir).
    pub key_created: bool,
    pub key_id: String,
    /// The bootstrap admin token was written to [`admin_token_path`] by this open.
    pub wrote_admin_token: bool,
    /// The first admin's generated password was written to [`admin_password_path`].
    pub wrote_admin_password: bool,
}

/// Opens the data dir for a server: finishes an interrupted key rotation, loads (or on first
/// start creates) the master key, opens the store, and on first start creates the bootstrap
/// admin token and the user `admin` (with `admin_password`, or a generated one).
pub async fn open(dir: &Path, key: &KeySource, admin_password: Option<&str>) -> Result<Opened> {
    if let KeySource::DataDir(dir) = key {
        finish_interrupted_rotation(dir).await?;
    }
    let (master, key_created) = MasterKey::load(key)?;
    let store = Store::open(
        &StoreConfig {
            path: db_path(dir),
            audit_checkpoint: audit_checkpoint_path(dir),
        },
        &master,
    )
    .await?;
    let mut wrote_admin_token = false;
    if store.count_tokens().await? == 0 {
        let token = ferry_secrets::generate_token();
        store
            .create_token(
                &Actor::system("bootstrap"),
                "admin",
                &token.hash,
                &token.hint,
                true,
            )
            .await?;
        ferry_secrets::write_secret_file(
            &admin_token_path(dir),
            format!("{}\n", token.plaintext).as_bytes(),
        )?;
        wrote_admin_token = true;
    }
    let wrote_admin_password = bootstrap_admin_user(&store, dir, admin_password).await?;
    Ok(Opened {
        key_id: master.id().to_owned(),
        store,
        master: Arc::new(master),
        key_created,
        wrote_admin_token,
        wrote_admin_password,
    })
}

/// On first start (no users yet), creates the user `admin` with the admin role on
/// everything. Returns whether a generated password was written.
async fn bootstrap_admin_user(store: &Store, dir: &Path, password: Option<&str>) -> Result<bool> {
    if store.count_users().await? > 0 {
        return Ok(false);
    }
    let min = ferry_secrets::password::MIN_PASSWORD_LEN;
    let generated;
    let (password, wrote) = match password {
        Some(p) if p.chars().count() >= min => (p, false),
        Some(_) => {
            return Err(DataDirError::AdminPassword(format!(
                "FERRY_ADMIN_PASSWORD needs at least {min} characters"
            )))
        }
        None => {
            generated = ferry_secrets::password::generate_password();
            ferry_secrets::write_secret_file(
                &admin_password_path(dir),
                format!("{}\n", generated.as_str()).as_bytes(),
            )?;
            (generated.as_str(), true)
        }
    };
    let hash = ferry_secrets::password::hash_password(password);
    let actor = Actor::system("bootstrap");
    store.create_user(&actor, "admin", Some(&hash)).await?;
    store
        .set_grant(
            &actor,
            &Subject::User("admin".into()),
            &Grant::everywhere(Role::Admin),
            true,
        )
        .await?;
    Ok(wrote)
}

/// Finishes or undoes a master key rotation that stopped half-way: the new key waits in
/// `master.key.next` until the database commit that re-wrapped everything; if the keyring
/// already names the new key, the commit happened and the new key takes its place, otherwise
/// the old key still rules and the new one is dropped.
pub async fn finish_interrupted_rotation(data_dir: &Path) -> Result<()> {
    let next = next_key_path(data_dir);
    if !next.exists() {
        return Ok(());
    }
    let (new, _) = MasterKey::load(&KeySource::File(next.clone()))?;
    let db = db_path(data_dir);
    let committed =
        db.exists() && ferry_store::keyring_key_id(&db).await?.as_deref() == Some(new.id());
    if committed {
        std::fs::rename(&next, data_dir.join(KEY_FILE))?;
        std::fs::File::open(data_dir)?.sync_all()?;
        tracing::warn!(
            key_id = new.id(),
            "finished an interrupted master key rotation"
        );
    } else {
        std::fs::remove_file(&next)?;
        tracing::warn!("dropped the new key of a master key rotation that never committed");
    }
    Ok(())
}

fn copy_tree(src: &Path, dst: &Path) -> Result<u64> {
    let mut files = 0;
    if !src.exists() {
        return Ok(0);
    }
    std::fs::create_dir_all(dst)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with(".tmp-") {
            continue; // an unfinished blob write, referenced by nothing
        }
        let target = dst.join(&name);
        if entry.file_type()?.is_dir() {
            files += copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
            files += 1;
        }
    }
    Ok(files)
}

fn private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        return Err(DataDirError::Refused(format!(
            "{} is not empty; back up into a new directory",
            dir.display()
        )));
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    Ok(())
}

fn no_database(db: &Path) -> DataDirError {
    DataDirError::Refused(format!("no Ferry database at {}", db.display()))
}

/// What a backup wrote.
#[derive(Debug)]
pub struct BackupReport {
    pub files: u64,
    /// The key the backup needs (and does not contain).
    pub key_id: String,
}

/// A consistent online snapshot of the data dir's records (database, encrypted state
/// versions, plans, logs, audit checkpoint) into `dest`, an empty or new directory — never
/// the master key. Snapshot first, then the immutable files: every blob the snapshot
/// references was fsync'd before its row committed.
pub async fn backup(data: &Path, dest: &Path, key: &KeySource) -> Result<BackupReport> {
    let db = db_path(data);
    if !db.exists() {
        return Err(no_database(&db));
    }
    private_dir(dest)?;
    let (key, _) = MasterKey::load(key)?;
    let store = Store::open_read_only(&db, &key, audit_checkpoint_path(data)).await?;
    store.snapshot_into(&db_path(dest)).await?;
    store.close().await;
    let checkpoint = audit_checkpoint_path(data);
    if checkpoint.exists() {
        std::fs::copy(&checkpoint, audit_checkpoint_path(dest))?;
    }
    let mut files = 0;
    for dir in RECORD_DIRS {
        files += copy_tree(&data.join(dir), &dest.join(dir))?;
    }
    Ok(BackupReport {
        files,
        key_id: key.id().to_owned(),
    })
}

/// What a restore found when it proved the copy.
#[derive(Debug)]
pub struct RestoreReport {
    pub audit_entries: u64,
    pub versions: usize,
    /// Empty when the restore is sound.
    pub problems: Vec<String>,
}

/// Copies a backup into an empty data dir, then proves it: the audit chain verifies against
/// its checkpoint and every state version decrypts to content with its recorded digest.
/// `key` loads the restored data's master key (`KeySource::DataDir(data)` once it is there).
pub async fn restore(backup: &Path, data: &Path, key: &KeySource) -> Result<RestoreReport> {
    if !db_path(backup).exists() {
        return Err(DataDirError::Refused(format!(
            "{} is not a Ferry backup (no ferry.db)",
            backup.display()
        )));
    }
    if db_path(data).exists() {
        return Err(DataDirError::Refused(format!(
            "{} already holds a Ferry database; restore into an empty data dir",
            data.display()
        )));
    }
    std::fs::create_dir_all(data)?;
    std::fs::copy(db_path(backup), db_path(data))?;
    if audit_checkpoint_path(backup).exists() {
        std::fs::copy(audit_checkpoint_path(backup), audit_checkpoint_path(data))?;
    }
    for dir in RECORD_DIRS {
        copy_tree(&backup.join(dir), &data.join(dir))?;
    }
    let (key, _) = MasterKey::load(key)?;
    let store = Store::open_read_only(&db_path(data), &key, audit_checkpoint_path(data)).await?;
    let chain = store.verify_audit().await?;
    let versions = store.stored_versions().await?;
    store.close().await;
    let mut problems = Vec::new();
    if let Err(e) = &chain {
        problems.push(format!("audit chain: {e}"));
    }
    for stored in &versions {
        let addr = StateAddr {
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
        let opened = Sealed::from_bytes(&sealed)
            .map_err(|e| e.to_string())
            .and_then(|s| {
                ferry_secrets::envelope::open(
                    &key,
                    &s,
                    &crate::state::context(addr, &stored.version.sha256),
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
    Ok(RestoreReport {
        audit_entries: chain.map(|r| r.entries).unwrap_or(0),
        versions: versions.len(),
        problems,
    })
}

/// What a rotation did.
#[derive(Debug)]
pub struct RotationReport {
    pub old_key_id: String,
    pub new_key_id: String,
    pub versions: usize,
}

/// Re-encrypts every state version under a new master key and re-wraps the keyring (the audit
/// chain's key, secrets and parameters), with the server stopped. The current key must be the
/// data dir's own file. The new key waits in `master.key.next` until the one database
/// transaction that switches every version commits; a crash before that keeps the old key,
/// after it the next start (or this function) finishes the switch.
pub async fn rotate_master_key(data: &Path) -> Result<RotationReport> {
    let db = db_path(data);
    if !db.exists() {
        return Err(no_database(&db));
    }
    finish_interrupted_rotation(data).await?;
    let (old, _) = MasterKey::load(&KeySource::DataDir(data.to_owned()))?;
    let (new, text) = MasterKey::generate();
    let next = next_key_path(data);
    ferry_secrets::write_secret_file(&next, format!("{}\n", text.as_str()).as_bytes())?;
    let config = StoreConfig {
        path: db.clone(),
        audit_checkpoint: audit_checkpoint_path(data),
    };
    let store = Store::open(&config, &old).await?;
    let mut moved = Vec::new();
    let mut old_blobs = Vec::new();
    for stored in store.stored_versions().await? {
        let addr = StateAddr {
            project_id: 0,
            project: &stored.project,
            environment: &stored.environment,
            name: &stored.name,
        };
        let context = crate::state::context(addr, &stored.version.sha256);
        let sealed = Sealed::from_bytes(&ferry_store::blob::read(data, &stored.version.blob)?)?;
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
        .commit_rotation(&Actor::system("cli"), &old, &new, &moved)
        .await?;
    store.close().await;
    finish_interrupted_rotation(data).await?;
    for blob in old_blobs {
        let _ = std::fs::remove_file(data.join(blob));
    }
    Ok(RotationReport {
        old_key_id: old.id().to_owned(),
        new_key_id: new.id().to_owned(),
        versions: moved.len(),
    })
}

/// Verifies the audit chain of a data dir (the server may be running: this reads only).
/// `Ok(Err(why))` when the chain does not verify, or cannot be checked for truncation
/// because its checkpoint is missing.
pub async fn verify_audit(
    data: &Path,
    key: &KeySource,
) -> Result<std::result::Result<VerifyReport, String>> {
    let db = db_path(data);
    if !db.exists() {
        return Err(no_database(&db));
    }
    let (key, _) = MasterKey::load(key)?;
    let checkpoint = audit_checkpoint_path(data);
    let store = Store::open_read_only(&db, &key, checkpoint.clone()).await?;
    let result = store.verify_audit().await?;
    store.close().await;
    Ok(match result {
        Ok(report) if report.entries > 0 && !checkpoint.exists() => Err(format!(
            "the audit checkpoint {} is missing: the chain cannot be checked for truncation",
            checkpoint.display()
        )),
        Ok(report) => Ok(report),
        Err(e) => Err(e.to_string()),
    })
}
