//! Ferry's secret-handling primitives, kept in one small crate so the code that
//! touches key material can be read and reviewed on its own.
//!
//! - [`key`]: the master key (`FERRY_MASTER_KEY`, `FERRY_MASTER_KEY_FILE` or
//!   `DATA_DIR/master.key`) and per-purpose subkeys derived from it.
//! - [`token`]: API tokens, which are stored only as SHA-256 hashes.
//! - [`password`]: argon2id hashes of local users' passwords.
//! - [`mod@file`]: atomic, owner-only writes for files such as `admin.token`.
//! - [`envelope`]: AES-256-GCM envelope encryption of values at rest.
//! - [`mask`]: streaming masking of secret values (and their common
//!   encodings) in output.
//! - [`audit`]: the HMAC hash chain over audit entries and its checkpoint
//!   outside the database (PRODUCT.md §4 invariant 4).
//!
//! **Architecture Invariant:** nothing in this crate prints, serializes or
//! puts into an error message any key material, token plaintext or raw key
//! input (PRODUCT.md §4 invariant 2). Types holding secrets have no `Display`
//! or `Serialize`, and their `Debug` shows only non-secret identifiers.
//!
//! This crate does no logging and reads no environment variables; the binary
//! decides where the key comes from and hands over a [`KeySource`].

pub mod audit;
pub mod envelope;
pub mod file;
pub mod key;
pub mod mask;
pub mod password;
pub mod token;

mod error;

pub use audit::{
    read_checkpoint, write_checkpoint, AuditKey, AuditRecord, ChainError, Checkpoint, VerifyReport,
};
pub use envelope::{Plaintext, Sealed};
pub use error::Error;
pub use file::write_secret_file;
pub use key::{KeySource, MasterKey};
pub use mask::{MaskError, MaskStream, Masker};
pub use token::{generate_token, hash_token, looks_like_token, token_matches, NewToken};
