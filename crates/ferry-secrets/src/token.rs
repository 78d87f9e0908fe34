//! API tokens. They are 256-bit random values with a recognisable `ferry_`
//! prefix (so secret scanners and log masking can spot them), shown to the
//! user once, and stored only as a SHA-256 hash: a stolen database yields no
//! usable token. A fast hash is enough because the input has 256 bits of
//! entropy; there is nothing to brute-force.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

pub const TOKEN_PREFIX: &str = "ferry_";
/// `ferry_` plus 43 base64url characters (32 bytes, no padding).
pub const TOKEN_LEN: usize = 6 + 43;
const HINT_LEN: usize = 10;

/// A freshly generated token. `plaintext` is shown to the user once and
/// then dropped; only `hash` and `hint` are stored. `Debug` omits the
/// plaintext.
pub struct NewToken {
    /// `ferry_` + 43 base64url characters.
    pub plaintext: String,
    /// Lowercase hex SHA-256 of `plaintext`; what the store keeps and looks up.
    pub hash: String,
    /// The first 10 characters of `plaintext` followed by `…`, e.g.
    /// `ferry_AbCd…`, so users can tell their tokens apart in lists. It reveals
    /// 24 of the 256 random bits.
    pub hint: String,
}

impl fmt::Debug for NewToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewToken")
            .field("hash", &self.hash)
            .field("hint", &self.hint)
            .finish_non_exhaustive()
    }
}

pub fn generate_token() -> NewToken {
    let mut bytes = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(&mut bytes[..]);
    let plaintext = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(&bytes[..]));
    let hash = hash_token(&plaintext);
    let hint = format!("{}…", &plaintext[..HINT_LEN]);
    NewToken {
        plaintext,
        hash,
        hint,
    }
}

/// Lowercase hex SHA-256 of the token text, exactly as presented.
pub fn hash_token(plaintext: &str) -> String {
    hex::encode(Sha256::digest(plaintext.as_bytes()))
}

/// Whether `s` has the exact shape of a Ferry token: the prefix and the
/// canonical base64url-no-pad encoding of 32 bytes. Cheap; use it to reject
/// garbage before touching the store, and to spot tokens in text.
pub fn looks_like_token(s: &str) -> bool {
    let Some(body) = s.strip_prefix(TOKEN_PREFIX) else {
        return false;
    };
    if s.len() != TOKEN_LEN {
        return false;
    }
    // The decoder rejects non-canonical trailing bits, so only the 2^256
    // strings `generate_token` can produce pass.
    matches!(URL_SAFE_NO_PAD.decode(body), Ok(v) if v.len() == 32)
}

/// Constant-time check of a presented token against a stored hash, for
/// callers that fetched the row by some other key.
pub fn token_matches(plaintext: &str, stored_hash: &str) -> bool {
    hash_token(plaintext)
        .as_bytes()
        .ct_eq(stored_hash.as_bytes())
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_have_the_documented_shape() {
        let t = generate_token();
        assert_eq!(t.plaintext.len(), 49);
        assert!(t.plaintext.starts_with("ferry_"));
        assert!(t.plaintext[6..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(URL_SAFE_NO_PAD.decode(&t.plaintext[6..]).unwrap().len(), 32);
        assert!(looks_like_token(&t.plaintext));
        assert_eq!(t.hash, hash_token(&t.plaintext));
        assert_eq!(t.hint, format!("{}…", &t.plaintext[..10]));
        assert_ne!(generate_token().plaintext, t.plaintext);
        assert!(!format!("{t:?}").contains(&t.plaintext));
    }

    #[test]
    fn hash_is_hex_sha256_of_the_plaintext() {
        // sha256("abc"), the FIPS 180-2 test vector.
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let t = generate_token();
        assert!(token_matches(&t.plaintext, &t.hash));
        assert!(!token_matches(&generate_token().plaintext, &t.hash));
        assert!(!token_matches(&t.plaintext, ""));
    }

    #[test]
    fn looks_like_token_rejects_near_misses() {
        let good = generate_token().plaintext;
        let body = &good[6..];
        let cases: Vec<(String, bool)> = vec![
            (good.clone(), true),
            (format!("ferry_{}", "A".repeat(43)), true),
            (String::new(), false),
            ("ferry_".to_owned(), false),
            (format!("Ferry_{body}"), false),
            (format!("ferri_{body}"), false),
            (good[..48].to_owned(), false),
            (format!("{good}A"), false),
            (format!("{good}\n"), false),
            (format!("ferry_{}+", &body[..42]), false),
            (format!("ferry_{}=", &body[..42]), false),
            // 'B' leaves non-zero trailing bits in the last character.
            (format!("ferry_{}B", "A".repeat(42)), false),
            (format!("ferry_{}A", "é".repeat(21)), false),
        ];
        for (input, expected) in cases {
            assert_eq!(looks_like_token(&input), expected, "{input:?}");
        }
    }
}
