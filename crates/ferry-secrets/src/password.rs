//! Passwords of local users: argon2id with a random salt, stored as a PHC string
//! (`$argon2id$v=19$m=…`). Tokens use SHA-256 instead (see [`crate::token`]): they carry 256
//! random bits, passwords do not, so only passwords need a deliberately slow hash.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;
use zeroize::Zeroizing;

/// The shortest password Ferry accepts.
pub const MIN_PASSWORD_LEN: usize = 12;

/// Hashes a password with argon2id (the `argon2` crate's defaults: 19 MiB, 2 passes).
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        // Hashing only fails for parameters out of range, and ours are the defaults.
        .unwrap_or_default()
}

/// Whether `password` matches a stored PHC string. A malformed stored hash matches nothing.
pub fn verify_password(password: &str, stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// A hash that no password matches, verified against when the user is unknown so that a
/// failed login takes as long for an unknown user as for a wrong password.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&generate_password()))
}

/// A random 24-character password (144 bits), for the first admin when none is given.
pub fn generate_password() -> Zeroizing<String> {
    use base64::Engine as _;
    let mut bytes = Zeroizing::new([0u8; 18]);
    rand::rngs::OsRng.fill_bytes(&mut bytes[..]);
    Zeroizing::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes[..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let a = hash_password("correct horse battery");
        let b = hash_password("correct horse battery");
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "a random salt per hash");
        assert!(verify_password("correct horse battery", &a));
        assert!(!verify_password("correct horse battery!", &a));
        assert!(!verify_password("anything", "not a phc string"));
        assert!(!verify_password("", decoy_hash()));
        assert_eq!(generate_password().len(), 24);
    }
}
