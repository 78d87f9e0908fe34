//! Envelope encryption for values at rest: secrets, state versions, plan
//! files and logs (PRODUCT.md §4 invariant 2). Each value gets its own random
//! AES-256-GCM data key; that key is stored next to the ciphertext, wrapped
//! (AES-256-GCM) under a key-encryption key derived from the master key.
//! A fresh data key per value means nonces can never repeat under one key,
//! and rotating the master key later only needs the small wrapped keys
//! re-wrapped, not every blob re-encrypted.
//!
//! Every value is sealed for a `context` (e.g. `b"secret/proj/prod/db_password"`
//! or `b"state/proj/prod/v7"`), which is authenticated but not stored: a
//! ciphertext copied into another row does not open there.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use rand::RngCore;
use zeroize::Zeroizing;

use crate::{Error, MasterKey};

const KEK_PURPOSE: &str = "envelope-kek";
const DATA_AAD: &[u8] = b"ferry/envelope/data/v1";
const WRAP_AAD: &[u8] = b"ferry/envelope/wrap/v1";
const MAGIC: &[u8; 4] = b"FEV1";
const NONCE_LEN: usize = 12;
/// Wrap nonce, 32-byte data key, 16-byte tag.
const WRAPPED_LEN: usize = NONCE_LEN + 32 + 16;
const KEY_ID_LEN: usize = 16;

/// Decrypted bytes. Zeroized on drop, with no `Debug`, `Display`, `Clone` or
/// `Serialize`, so it cannot end up in a log line, an error or a response by
/// accident; reading it takes an explicit, greppable [`Plaintext::expose`].
pub struct Plaintext(
    // Invariant: never formatted or serialized.
    Zeroizing<Vec<u8>>,
);

impl Plaintext {
    pub fn new(bytes: Vec<u8>) -> Plaintext {
        Plaintext(Zeroizing::new(bytes))
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl From<String> for Plaintext {
    fn from(s: String) -> Plaintext {
        Plaintext::new(s.into_bytes())
    }
}

/// A sealed value. Nothing in it is secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    /// [`MasterKey::id`] of the key that wrapped `wrapped_key`.
    pub key_id: String,
    /// Wrap nonce || data key encrypted under the key-encryption key || tag.
    pub wrapped_key: Vec<u8>,
    pub nonce: [u8; NONCE_LEN],
    /// The value encrypted under the data key, with its 16-byte tag.
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed")
            .field("key_id", &self.key_id)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

/// Encrypts `plaintext` for `context` under a fresh data key.
pub fn seal(master: &MasterKey, plaintext: &[u8], context: &[u8]) -> Sealed {
    let mut data_key = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(&mut data_key[..]);
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let aad = data_aad(master.id(), context);
    let ciphertext = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&data_key[..]))
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .expect("aes-gcm encrypts any input under 64 GiB");

    let kek = kek(master);
    let mut wrap_nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut wrap_nonce);
    let wrapped = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&kek[..]))
        .encrypt(
            Nonce::from_slice(&wrap_nonce),
            Payload {
                msg: &data_key[..],
                aad: &wrap_aad(master.id()),
            },
        )
        .expect("aes-gcm encrypts 32 bytes");
    let mut wrapped_key = Vec::with_capacity(WRAPPED_LEN);
    wrapped_key.extend_from_slice(&wrap_nonce);
    wrapped_key.extend_from_slice(&wrapped);

    Sealed {
        key_id: master.id().to_owned(),
        wrapped_key,
        nonce,
        ciphertext,
    }
}

/// Decrypts a value sealed by [`seal`] for the same `context`.
pub fn open(master: &MasterKey, sealed: &Sealed, context: &[u8]) -> Result<Plaintext, Error> {
    if sealed.key_id != master.id() {
        return Err(Error::WrongKey {
            sealed_with: sealed.key_id.clone(),
            loaded: master.id().to_owned(),
        });
    }
    if sealed.wrapped_key.len() != WRAPPED_LEN {
        return Err(Error::Decrypt);
    }
    let (wrap_nonce, wrapped) = sealed.wrapped_key.split_at(NONCE_LEN);
    let kek = kek(master);
    let data_key = Zeroizing::new(
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&kek[..]))
            .decrypt(
                Nonce::from_slice(wrap_nonce),
                Payload {
                    msg: wrapped,
                    aad: &wrap_aad(master.id()),
                },
            )
            .map_err(|_| Error::Decrypt)?,
    );
    let aad = data_aad(master.id(), context);
    let plaintext = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&data_key[..]))
        .decrypt(
            Nonce::from_slice(&sealed.nonce),
            Payload {
                msg: &sealed.ciphertext,
                aad: &aad,
            },
        )
        .map_err(|_| Error::Decrypt)?;
    Ok(Plaintext::new(plaintext))
}

impl Sealed {
    /// A self-describing byte string for blob storage:
    /// `"FEV1" || key_id (16 ASCII) || wrapped_key (60) || nonce (12) || ciphertext`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(4 + KEY_ID_LEN + WRAPPED_LEN + NONCE_LEN + self.ciphertext.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(self.key_id.as_bytes());
        out.extend_from_slice(&self.wrapped_key);
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.ciphertext);
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Sealed, Error> {
        let header = 4 + KEY_ID_LEN + WRAPPED_LEN + NONCE_LEN;
        if bytes.len() < header + 16 || &bytes[..4] != MAGIC {
            return Err(Error::NotSealed);
        }
        let key_id =
            std::str::from_utf8(&bytes[4..4 + KEY_ID_LEN]).map_err(|_| Error::NotSealed)?;
        let rest = &bytes[4 + KEY_ID_LEN..];
        let (wrapped_key, rest) = rest.split_at(WRAPPED_LEN);
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        Ok(Sealed {
            key_id: key_id.to_owned(),
            wrapped_key: wrapped_key.to_vec(),
            nonce: nonce.try_into().expect("split at NONCE_LEN"),
            ciphertext: ciphertext.to_vec(),
        })
    }
}

fn kek(master: &MasterKey) -> Zeroizing<[u8; 32]> {
    Zeroizing::new(master.derive(KEK_PURPOSE))
}

fn wrap_aad(key_id: &str) -> Vec<u8> {
    let mut aad = WRAP_AAD.to_vec();
    aad.extend_from_slice(key_id.as_bytes());
    aad
}

/// Length-prefixed, so distinct (key id, context) pairs never collide.
fn data_aad(key_id: &str, context: &[u8]) -> Vec<u8> {
    let mut aad = DATA_AAD.to_vec();
    for part in [key_id.as_bytes(), context] {
        aad.extend_from_slice(&(part.len() as u64).to_be_bytes());
        aad.extend_from_slice(part);
    }
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master() -> MasterKey {
        MasterKey::from_bytes([9; 32])
    }

    #[test]
    fn round_trips_and_hides_the_plaintext() {
        let m = master();
        let secret = b"hunter2-hunter2-hunter2";
        let s = seal(&m, secret, b"secret/p/prod/db");
        assert_eq!(s.key_id, m.id());
        assert_eq!(s.ciphertext.len(), secret.len() + 16);
        assert!(!s.ciphertext.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(open(&m, &s, b"secret/p/prod/db").unwrap().expose(), secret);
        // Fresh data key and nonce each time.
        let s2 = seal(&m, secret, b"secret/p/prod/db");
        assert_ne!(s.ciphertext, s2.ciphertext);
        assert_ne!(s.wrapped_key, s2.wrapped_key);
        assert!(!format!("{s:?}").contains("hunter2"));
        // Empty values work too.
        assert_eq!(open(&m, &seal(&m, b"", b"c"), b"c").unwrap().expose(), b"");
    }

    #[test]
    fn bytes_round_trip() {
        let m = master();
        let s = seal(&m, b"state", b"state/p/dev/v1");
        let back = Sealed::from_bytes(&s.to_bytes()).unwrap();
        assert_eq!(back, s);
        assert_eq!(
            open(&m, &back, b"state/p/dev/v1").unwrap().expose(),
            b"state"
        );
        assert!(matches!(
            Sealed::from_bytes(b"{\"version\":4}"),
            Err(Error::NotSealed)
        ));
        assert!(matches!(
            Sealed::from_bytes(&s.to_bytes()[..100]),
            Err(Error::NotSealed)
        ));
    }

    #[test]
    fn wrong_context_key_or_any_flipped_bit_fails() {
        let m = master();
        let s = seal(&m, b"value", b"secret/a");
        assert!(matches!(open(&m, &s, b"secret/b"), Err(Error::Decrypt)));

        let other = MasterKey::from_bytes([10; 32]);
        let Err(err) = open(&other, &s, b"secret/a") else {
            panic!("opened under another key")
        };
        assert!(matches!(err, Error::WrongKey { .. }));
        assert_eq!(
            err.to_string(),
            format!(
                "value was sealed with master key {} but key {} is loaded",
                m.id(),
                other.id()
            )
        );
        // Same id claimed, different key: still refused.
        let mut forged = s.clone();
        forged.key_id = other.id().to_owned();
        assert!(matches!(
            open(&other, &forged, b"secret/a"),
            Err(Error::Decrypt)
        ));

        let bytes = s.to_bytes();
        for i in 4 + KEY_ID_LEN..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 1;
            let t = Sealed::from_bytes(&b).unwrap();
            assert!(
                matches!(open(&m, &t, b"secret/a"), Err(Error::Decrypt)),
                "byte {i}"
            );
        }
    }
}
