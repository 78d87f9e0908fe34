//! The crate's one error type. It lives in its own file because every variant
//! is written so that its message can never contain key material: they carry
//! paths, lengths and fixed reasons, never the offending value.

use std::io;
use std::path::PathBuf;

use crate::audit::ChainError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key text could not be decoded. `reason` is a fixed phrase and never
    /// quotes the input, which may be a nearly-correct key.
    #[error("invalid master key from {origin}: {reason}")]
    InvalidKey { origin: String, reason: String },
    #[error("cannot read master key file {}", .path.display())]
    KeyFileRead {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot create master key file {}", .path.display())]
    KeyFileCreate {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A generated key file whose permissions let anyone but the owner read or
    /// replace it is refused rather than silently repaired: it may already
    /// have leaked, and the operator should know.
    #[error(
        "master key file {} is accessible by group or others (mode {mode:03o}); run `chmod 600` on it",
        .path.display()
    )]
    KeyFilePermissions { path: PathBuf, mode: u32 },
    #[error("cannot read audit checkpoint {}", .path.display())]
    CheckpointRead {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("audit checkpoint {} is malformed: {reason}", .path.display())]
    CheckpointMalformed { path: PathBuf, reason: String },
    /// The checkpoint's own MAC does not match: someone without the master key
    /// wrote it, or it was made under a different master key.
    #[error("audit checkpoint {} failed its integrity check (mac mismatch)", .path.display())]
    CheckpointForged { path: PathBuf },
    #[error("value was sealed with master key {sealed_with} but key {loaded} is loaded")]
    WrongKey { sealed_with: String, loaded: String },
    /// Authentication failed: the ciphertext or wrapped key was modified, or
    /// it was sealed for a different context. Deliberately says no more.
    #[error("cannot decrypt value: it was modified or belongs elsewhere")]
    Decrypt,
    #[error("data is not a sealed ferry value")]
    NotSealed,
    #[error(transparent)]
    Chain(#[from] ChainError),
}
