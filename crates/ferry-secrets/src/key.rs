//! The master key: the one secret every other secret in Ferry hangs off.
//! Encryption keys and the audit-chain MAC key are derived from it per
//! purpose, so it is loaded once at start-up and never used directly.
//!
//! It comes from `FERRY_MASTER_KEY`, from the file named by
//! `FERRY_MASTER_KEY_FILE`, or from `DATA_DIR/master.key`, which is generated
//! on first start so that `ferry server` alone works (PRODUCT.md §5).

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use hkdf::Hkdf;
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::file::{create_new_owner_only, parent_dir, sync_dir, temp_path};
use crate::Error;

/// File name of the generated key inside the data directory.
pub const DATA_DIR_KEY_FILE: &str = "master.key";

/// Where the master key comes from. The binary resolves configuration
/// (`FERRY_MASTER_KEY` wins over `FERRY_MASTER_KEY_FILE`, which wins over the
/// data directory); this crate never reads environment variables itself.
#[derive(Clone)]
pub enum KeySource {
    /// The value of `FERRY_MASTER_KEY`: 64 hex characters or base64 of
    /// 32 bytes.
    Env(String),
    /// `FERRY_MASTER_KEY_FILE`: a file that must exist, in the same
    /// encodings; surrounding whitespace (a trailing newline) is ignored.
    /// Its permissions are not checked, since mounted secrets (Kubernetes,
    /// systemd credentials) are often group-readable by design.
    File(PathBuf),
    /// `DIR/master.key`, generated (32 random bytes, hex, mode 0600) on first
    /// start. A key file that group or others may access is refused.
    DataDir(PathBuf),
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Env(_) => f.write_str("Env(<redacted>)"),
            KeySource::File(p) => f.debug_tuple("File").field(p).finish(),
            KeySource::DataDir(p) => f.debug_tuple("DataDir").field(p).finish(),
        }
    }
}

/// The 256-bit master key. It has no `Display`, `Serialize` or `Clone`;
/// `Debug` shows only [`MasterKey::id`]. Share it behind an `Arc`.
pub struct MasterKey {
    // Invariant: zeroized on drop; never leaves this module except through
    // `derive` and `id`, which are one-way.
    bytes: Zeroizing<[u8; 32]>,
    // Invariant: `id == key_id(&bytes)`.
    id: String,
}

impl MasterKey {
    /// Loads (or, for [`KeySource::DataDir`], creates on first start) the
    /// master key. The `bool` is `true` when a new key file was generated,
    /// so the caller can tell the operator to back it up.
    pub fn load(source: &KeySource) -> Result<(MasterKey, bool), Error> {
        match source {
            KeySource::Env(value) => Ok((parse_key(value, "FERRY_MASTER_KEY")?, false)),
            KeySource::File(path) => {
                let text = read_key_text(File::open(path), path)?;
                let origin = format!("FERRY_MASTER_KEY_FILE {}", path.display());
                Ok((parse_key(&text, &origin)?, false))
            }
            KeySource::DataDir(dir) => load_or_create(&dir.join(DATA_DIR_KEY_FILE)),
        }
    }

    /// A fresh random key and its hex encoding (the `master.key` file format), for rotation.
    pub fn generate() -> (MasterKey, zeroize::Zeroizing<String>) {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes[..]);
        let text = zeroize::Zeroizing::new(hex::encode(bytes));
        (MasterKey::from_bytes(bytes), text)
    }

    pub fn from_bytes(bytes: [u8; 32]) -> MasterKey {
        let bytes = Zeroizing::new(bytes);
        let id = key_id(&bytes);
        MasterKey { bytes, id }
    }

    /// A stable, non-secret identifier of this key: the first 16 hex
    /// characters of SHA-256("ferry key id" || key). Stored next to data
    /// sealed with the key so a wrong key is reported as such.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A 32-byte subkey for one purpose: HKDF-SHA256 with the master key as
    /// input key material, no salt, and info `"ferry/" + purpose`. Distinct
    /// purposes give independent keys; the caller should zeroize the result
    /// when it is done with it.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        let hk = Hkdf::<Sha256>::new(None, &self.bytes[..]);
        let mut info = Vec::with_capacity(6 + purpose.len());
        info.extend_from_slice(b"ferry/");
        info.extend_from_slice(purpose.as_bytes());
        let mut out = [0u8; 32];
        hk.expand(&info, &mut out)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        out
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn key_id(bytes: &[u8; 32]) -> String {
    let mut h = Sha256::new();
    h.update(b"ferry key id");
    h.update(bytes);
    let digest = h.finalize();
    hex::encode(&digest[..8])
}

/// Decodes 64 hex characters or base64 (standard or URL-safe, padded or not)
/// of exactly 32 bytes. Error reasons never quote the input: a key with one
/// typo is still nearly the whole key.
fn parse_key(text: &str, origin: &str) -> Result<MasterKey, Error> {
    let invalid = |reason: String| Error::InvalidKey {
        origin: origin.to_owned(),
        reason,
    };
    let t = text.trim();
    if t.is_empty() {
        return Err(invalid("the value is empty".to_owned()));
    }
    let all_hex = t.bytes().all(|b| b.is_ascii_hexdigit());
    if all_hex && t.len() == 64 {
        let mut out = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(t, &mut out[..]).expect("64 hex digits decode to 32 bytes");
        return Ok(MasterKey::from_bytes(*out));
    }
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let mut decoded_len = None;
    for engine in [&STANDARD, &URL_SAFE, &STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
        if let Ok(v) = engine.decode(t) {
            let v = Zeroizing::new(v);
            if let Ok(arr) = <[u8; 32]>::try_from(&v[..]) {
                let arr = Zeroizing::new(arr);
                return Ok(MasterKey::from_bytes(*arr));
            }
            decoded_len = Some(v.len());
        }
    }
    let reason = match decoded_len {
        _ if all_hex => format!("has {} hex characters, expected 64", t.len()),
        Some(n) => format!("base64 value decodes to {n} bytes, expected 32"),
        None => "expected 64 hex characters or base64 of 32 bytes".to_owned(),
    };
    Err(invalid(reason))
}

fn read_key_text(file: io::Result<File>, path: &Path) -> Result<Zeroizing<String>, Error> {
    let read_err = |source| Error::KeyFileRead {
        path: path.to_owned(),
        source,
    };
    let mut file = file.map_err(read_err)?;
    let mut text = Zeroizing::new(String::new());
    file.read_to_string(&mut text).map_err(read_err)?;
    Ok(text)
}

fn load_or_create(path: &Path) -> Result<(MasterKey, bool), Error> {
    // Two rounds: if another process creates the file between our failed open
    // and our link, the second round loads its key instead.
    for _ in 0..2 {
        match File::open(path) {
            Ok(file) => return load_data_dir_key(file, path).map(|k| (k, false)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(Error::KeyFileRead {
                    path: path.to_owned(),
                    source,
                })
            }
        }
        match create_key_file(path) {
            Ok(key) => return Ok((key, true)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(source) => {
                return Err(Error::KeyFileCreate {
                    path: path.to_owned(),
                    source,
                })
            }
        }
    }
    Err(Error::KeyFileCreate {
        path: path.to_owned(),
        source: io::Error::other("the key file appeared and vanished while being created"),
    })
}

fn load_data_dir_key(file: File, path: &Path) -> Result<MasterKey, Error> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // fstat the handle we read from, so the checked file is the read file.
        let meta = file.metadata().map_err(|source| Error::KeyFileRead {
            path: path.to_owned(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(Error::KeyFilePermissions {
                path: path.to_owned(),
                mode,
            });
        }
    }
    let text = read_key_text(Ok(file), path)?;
    parse_key(&text, &path.display().to_string())
}

/// Writes a fresh key to a temp file (mode 0600, fsync'd) and hard-links it
/// to `path`. Linking never replaces an existing file, so two racing first
/// starts cannot end up with different keys, and `path` never exists
/// half-written. The directory is fsync'd before the key is used.
fn create_key_file(path: &Path) -> io::Result<MasterKey> {
    let dir = parent_dir(path);
    if !dir.exists() {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(dir)?;
        if let Some(grandparent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(grandparent)?;
        }
    }
    let mut bytes = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(&mut bytes[..]);
    let mut text = Zeroizing::new(hex::encode(&bytes[..]));
    text.push('\n');

    let tmp = temp_path(path);
    let result = (|| {
        let mut file = create_new_owner_only(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        drop(file);
        fs::hard_link(&tmp, path)
    })();
    let _ = fs::remove_file(&tmp);
    result?;
    sync_dir(dir)?;
    Ok(MasterKey::from_bytes(*bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn seq_bytes() -> [u8; 32] {
        std::array::from_fn(|i| i as u8)
    }

    fn load(source: &KeySource) -> Result<MasterKey, Error> {
        MasterKey::load(source).map(|(k, _)| k)
    }

    #[test]
    fn env_hex_and_base64_give_the_same_key() {
        let from_hex = load(&KeySource::Env(HEX.to_owned())).unwrap();
        let upper = load(&KeySource::Env(HEX.to_uppercase())).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(seq_bytes());
        let from_b64 = load(&KeySource::Env(b64.clone())).unwrap();
        let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(seq_bytes());
        let from_b64url = load(&KeySource::Env(b64url)).unwrap();
        let direct = MasterKey::from_bytes(seq_bytes());
        for k in [&from_hex, &upper, &from_b64, &from_b64url] {
            assert_eq!(k.id(), direct.id());
            assert_eq!(k.derive("x"), direct.derive("x"));
        }
        // The bytes really are the decoded ones, not e.g. a hash of the text.
        let zero = MasterKey::from_bytes([0; 32]);
        assert_ne!(from_hex.id(), zero.id());
    }

    #[test]
    fn bad_keys_are_refused_without_echoing_them() {
        let cases = [
            // (input, expected message)
            ("", "invalid master key from FERRY_MASTER_KEY: the value is empty"),
            (
                &HEX[..62],
                "invalid master key from FERRY_MASTER_KEY: has 62 hex characters, expected 64",
            ),
            (
                "c2VjcmV0LWJ1dC10b28tc2hvcnQ=",
                "invalid master key from FERRY_MASTER_KEY: base64 value decodes to 20 bytes, expected 32",
            ),
            (
                "zzzz-not-a-key-at-all-!!!!-zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
                "invalid master key from FERRY_MASTER_KEY: expected 64 hex characters or base64 of 32 bytes",
            ),
            // One bad hex digit: not 64 hex digits, not base64 of 32 bytes.
            (
                "g00102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
                "invalid master key from FERRY_MASTER_KEY: base64 value decodes to 48 bytes, expected 32",
            ),
        ];
        for (input, expected) in cases {
            let err = load(&KeySource::Env(input.to_owned())).unwrap_err();
            let msg = err.to_string();
            assert_eq!(msg, expected);
            if !input.is_empty() {
                assert!(!msg.contains(input), "message echoes the key: {msg}");
                assert!(!format!("{err:?}").contains(input), "debug echoes the key");
            }
        }
    }

    #[test]
    fn key_file_allows_trailing_whitespace_and_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        fs::write(&path, format!("{HEX}\n\n")).unwrap();
        let k = load(&KeySource::File(path.clone())).unwrap();
        assert_eq!(k.id(), MasterKey::from_bytes(seq_bytes()).id());

        let missing = dir.path().join("missing");
        let err = load(&KeySource::File(missing)).unwrap_err();
        assert!(matches!(err, Error::KeyFileRead { .. }), "{err:?}");

        fs::write(&path, "nope nope\n").unwrap();
        let err = load(&KeySource::File(path.clone())).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("invalid master key from FERRY_MASTER_KEY_FILE "));
        assert!(!err.to_string().contains("nope"));
    }

    #[test]
    fn data_dir_key_is_created_0600_then_reloaded_identically() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("nested/.ferry");
        let (first, created) = MasterKey::load(&KeySource::DataDir(data.clone())).unwrap();
        assert!(created);
        let path = data.join("master.key");
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim_end().len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
            assert_eq!(
                fs::metadata(&data).unwrap().permissions().mode() & 0o777,
                0o700
            );
        }
        let (again, created) = MasterKey::load(&KeySource::DataDir(data.clone())).unwrap();
        assert!(!created);
        assert_eq!(first.id(), again.id());
        assert_eq!(first.derive("audit-chain"), again.derive("audit-chain"));
        // Only the key file is left in the directory (no temp files).
        assert_eq!(fs::read_dir(&data).unwrap().count(), 1);
        // A different data dir gets a different key.
        let (other, _) = MasterKey::load(&KeySource::DataDir(dir.path().join("b"))).unwrap();
        assert_ne!(other.id(), first.id());
    }

    #[cfg(unix)]
    #[test]
    fn data_dir_key_readable_by_group_or_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        MasterKey::load(&KeySource::DataDir(dir.path().to_owned())).unwrap();
        let path = dir.path().join("master.key");
        for mode in [0o640, 0o604, 0o660, 0o644] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let err = MasterKey::load(&KeySource::DataDir(dir.path().to_owned())).unwrap_err();
            assert!(
                matches!(err, Error::KeyFilePermissions { mode: m, .. } if m == mode),
                "{err:?}"
            );
            assert!(
                err.to_string().contains(&format!("(mode {mode:03o})")),
                "{err}"
            );
        }
        // The file was refused, not replaced.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let (_, created) = MasterKey::load(&KeySource::DataDir(dir.path().to_owned())).unwrap();
        assert!(!created);
    }

    #[test]
    fn id_is_stable_and_derivation_is_per_purpose() {
        let k = MasterKey::from_bytes(seq_bytes());
        // Pinned: changing the id derivation would orphan every stored key id.
        let mut h = Sha256::new();
        h.update(b"ferry key id");
        h.update(seq_bytes());
        assert_eq!(k.id(), &hex::encode(h.finalize())[..16]);
        assert_eq!(k.id(), "8dad1a48f123ad77");
        assert_eq!(k.id(), MasterKey::from_bytes(seq_bytes()).id());
        assert_ne!(k.derive("audit-chain"), k.derive("secrets"));
        assert_ne!(
            k.derive("audit-chain"),
            MasterKey::from_bytes([1; 32]).derive("audit-chain")
        );
        // HKDF with info "ferry/" + purpose, checked against a direct computation.
        let hk = Hkdf::<Sha256>::new(None, &seq_bytes());
        let mut expect = [0u8; 32];
        hk.expand(b"ferry/audit-chain", &mut expect).unwrap();
        assert_eq!(k.derive("audit-chain"), expect);
    }

    #[test]
    fn debug_shows_only_the_id() {
        let k = MasterKey::from_bytes(seq_bytes());
        let dbg = format!("{k:?}");
        assert_eq!(dbg, format!("MasterKey {{ id: {:?}, .. }}", k.id()));
        let src = format!("{:?}", KeySource::Env(HEX.to_owned()));
        assert_eq!(src, "Env(<redacted>)");
    }
}
