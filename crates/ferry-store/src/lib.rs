//! Ferry's metadata store: projects, runs, stages, actions, plans, approvals, environment
//! holds, users, teams, role grants, tokens, sessions and the audit chain.
//!
//! **Architecture Invariant:** this is the only crate that speaks SQL. Every status change
//! is checked against `ferry_core`'s state machine inside the write transaction that
//! persists it, and every mutation made on behalf of an [`Actor`] writes its audit row in
//! that same transaction, so a change and its audit entry commit or vanish together.
//!
//! Today the store is SQLite (WAL, `synchronous=FULL`, read-modify-write transactions opened
//! with `BEGIN IMMEDIATE`). The public surface is the [`Store`] type's methods and the plain
//! row structs in [`model`]; nothing outside this crate sees a pool, a connection or a query,
//! so a PostgreSQL implementation can be added behind the same methods.

mod audit;
mod backup;
pub mod blob;
mod deployments;
mod events;
mod identity;
mod keyring;
pub mod model;
mod policy;
mod progress;
mod state_ops;
mod states;

pub use audit::{AuditEntry, AuditFilter};
mod runs;
pub mod secrets;
mod tokens;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

pub use backup::{Reencrypted, StoredVersion};
pub use events::{Event, EventFilter};
pub use ferry_core::Actor;
pub use identity::{NewTokenRow, Session, Subject, Team, User};
pub use keyring::keyring_key_id;
pub use model::*;
pub use policy::{NewWaiver, PolicyReportRow, WaiverRow};
pub use progress::{ActionEnd, Failure, RunCredential};
pub use secrets::{Resolved, Scope, SecretKind, SecretMeta, SecretName};
pub use state_ops::{PrunedVersions, StateListing, VersionInfo};
pub use states::{
    LockOwner, NewStateVersion, StateAddr, StateRow, StateVersion, UnlockOutcome, WriteOutcome,
};

/// Errors from the store. Expected conflicts carry what the caller needs to explain them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what} `{id}` not found")]
    NotFound { what: &'static str, id: String },
    #[error("{what} `{id}` already exists")]
    AlreadyExists { what: &'static str, id: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Denied(String),
    /// Input the caller should have refused (a value too short for a secret, …).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    InvalidTransition(#[from] ferry_core::InvalidTransition),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt row in {table}: {message}")]
    Corrupt {
        table: &'static str,
        message: String,
    },
    #[error("audit checkpoint: {0}")]
    Checkpoint(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the store needs to open.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The SQLite database file (created when missing).
    pub path: PathBuf,
    /// Where the audit chain head is checkpointed, outside the database.
    pub audit_checkpoint: PathBuf,
}

/// The handle every other crate uses. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    audit: Arc<audit::Chain>,
    // Invariant: held for the whole of every write transaction. Writers queue here, in
    // order, instead of colliding inside SQLite, whose busy handler sleeps 1–100 ms between
    // retries.
    writer: Arc<tokio::sync::Mutex<()>>,
    // Invariant: bumped after every commit that wrote events (live event streams wait on it).
    events: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Store {
    /// Opens (creating if needed) the database and applies the embedded migrations.
    pub async fn open(config: &StoreConfig, master: &ferry_secrets::MasterKey) -> Result<Store> {
        let options = connect_options(&config.path)?
            .journal_mode(SqliteJournalMode::Wal)
            .create_if_missing(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        let audit_key = keyring::audit_key(&pool, master, true).await?;
        let audit = audit::Chain::new(audit_key, config.audit_checkpoint.clone());
        Ok(Store {
            pool,
            audit: Arc::new(audit),
            writer: Arc::default(),
            events: Arc::new(tokio::sync::watch::channel(0).0),
        })
    }

    /// Opens an existing database read-only, for offline tools such as `ferry audit verify`.
    pub async fn open_read_only(
        path: &Path,
        master: &ferry_secrets::MasterKey,
        checkpoint: PathBuf,
    ) -> Result<Store> {
        if !path.exists() {
            return Err(Error::NotFound {
                what: "database",
                id: path.display().to_string(),
            });
        }
        let options = connect_options(path)?.read_only(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        let audit_key = keyring::audit_key(&pool, master, false).await?;
        Ok(Store {
            pool,
            audit: Arc::new(audit::Chain::new(audit_key, checkpoint)),
            writer: Arc::default(),
            events: Arc::new(tokio::sync::watch::channel(0).0),
        })
    }

    pub async fn close(&self) {
        self.audit.flush();
        self.pool.close().await;
    }

    /// A cheap query, for `/readyz`.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// A read-modify-write transaction: `BEGIN IMMEDIATE` takes SQLite's write lock up front,
    /// so two writers never both read the old value and then collide on upgrade.
    async fn write(&self) -> Result<WriteTx> {
        let turn = self.writer.clone().lock_owned().await;
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok(WriteTx { tx, _turn: turn })
    }
}

/// A write transaction holding this process's writer turn until it commits or drops.
pub(crate) struct WriteTx {
    tx: sqlx::Transaction<'static, sqlx::Sqlite>,
    _turn: tokio::sync::OwnedMutexGuard<()>,
}

impl WriteTx {
    pub(crate) async fn commit(self) -> Result<()> {
        Ok(self.tx.commit().await?)
    }
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::SqliteConnection;
    fn deref(&self) -> &sqlx::SqliteConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut sqlx::SqliteConnection {
        &mut self.tx
    }
}

pub(crate) fn connect_options(path: &Path) -> Result<SqliteConnectOptions> {
    let url = format!("sqlite://{}", path.display());
    // The journal mode is set by `open` only: a read-only connection must not try to change
    // it (a snapshot from `VACUUM INTO` is not in WAL mode).
    Ok(SqliteConnectOptions::from_str(&url)?
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10)))
}

pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub(crate) fn parse<T: FromStr>(table: &'static str, text: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    text.parse().map_err(|e: T::Err| Error::Corrupt {
        table,
        message: e.to_string(),
    })
}
