//! The keyring: keys Ferry keeps wrapped by the master key. Today one, the audit chain's MAC
//! key. It starts as the key derived from the first master key (so existing chains keep
//! verifying) and is then stored wrapped, so rotating the master key re-wraps it instead of
//! breaking every MAC in the chain.

use ferry_secrets::envelope::{open, seal, Sealed};
use ferry_secrets::{AuditKey, MasterKey};
use sqlx::{Row, SqlitePool};

use crate::{Error, Result};

const AUDIT: &str = "audit-chain";

fn context(purpose: &str) -> Vec<u8> {
    format!("ferry/keyring/{purpose}").into_bytes()
}

fn unwrap_key(master: &MasterKey, sealed: &[u8], purpose: &str) -> Result<[u8; 32]> {
    let corrupt = |message: String| Error::Corrupt {
        table: "keyring",
        message,
    };
    let sealed = Sealed::from_bytes(sealed).map_err(|e| corrupt(e.to_string()))?;
    let plain =
        open(master, &sealed, &context(purpose)).map_err(|e| corrupt(format!("{purpose}: {e}")))?;
    plain
        .expose()
        .try_into()
        .map_err(|_| corrupt(format!("{purpose}: not a 32-byte key")))
}

/// The audit chain's key: from the keyring, or (first open) derived from the master key and
/// stored wrapped when `store` is set.
pub(crate) async fn audit_key(
    pool: &SqlitePool,
    master: &MasterKey,
    store: bool,
) -> Result<AuditKey> {
    let row = sqlx::query("SELECT sealed FROM keyring WHERE purpose = ?")
        .bind(AUDIT)
        .fetch_optional(pool)
        .await;
    // A database from before the keyring (read-only, not migrated) has no table: derive.
    if let Ok(Some(row)) = row {
        return Ok(AuditKey::from_bytes(unwrap_key(
            master,
            row.get::<&[u8], _>(0),
            AUDIT,
        )?));
    }
    let bytes = master.derive(AUDIT);
    if store {
        let sealed = seal(master, &bytes, &context(AUDIT)).to_bytes();
        sqlx::query("INSERT OR IGNORE INTO keyring (purpose, key_id, sealed) VALUES (?, ?, ?)")
            .bind(AUDIT)
            .bind(master.id())
            .bind(sealed)
            .execute(pool)
            .await?;
    }
    Ok(AuditKey::from_bytes(bytes))
}

/// Re-wraps every keyring entry from `old` to `new`, inside the caller's transaction.
pub(crate) async fn rewrap(
    conn: &mut sqlx::SqliteConnection,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<()> {
    let rows = sqlx::query("SELECT purpose, sealed FROM keyring")
        .fetch_all(&mut *conn)
        .await?;
    for row in &rows {
        let purpose: String = row.get(0);
        let bytes = unwrap_key(old, row.get::<&[u8], _>(1), &purpose)?;
        let sealed = seal(new, &bytes, &context(&purpose)).to_bytes();
        sqlx::query("UPDATE keyring SET key_id = ?, sealed = ? WHERE purpose = ?")
            .bind(new.id())
            .bind(sealed)
            .bind(&purpose)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The id of the master key that wraps the keyring, read without any key (to finish an
/// interrupted rotation at start-up).
pub async fn keyring_key_id(db: &std::path::Path) -> Result<Option<String>> {
    let options = crate::connect_options(db)?.read_only(true);
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await?;
    let row = sqlx::query("SELECT key_id FROM keyring WHERE purpose = ?")
        .bind(AUDIT)
        .fetch_optional(&pool)
        .await;
    pool.close().await;
    Ok(row.ok().flatten().map(|r| r.get(0)))
}
