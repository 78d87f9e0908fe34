//! Digests of request bodies: the `Content-MD5` header Terraform sends with every body (§3), and
//! the SHA-256 the store keys versions and idempotency on.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;
use md5::{Digest as _, Md5};
use sha2::Sha256;

/// `base64(md5(body))`, the value Terraform puts in `Content-MD5` and Ferry may send on GET.
pub fn content_md5(body: &[u8]) -> String {
    STANDARD.encode(Md5::digest(body))
}

/// Whether a `Content-MD5` header value is the MD5 of `body`.
///
/// Surrounding whitespace and missing `=` padding are tolerated; anything that is not base64 of
/// 16 bytes is `false`, so the caller answers 400 either way.
pub fn content_md5_matches(header_value: &str, body: &[u8]) -> bool {
    let value = header_value.trim();
    let decoded = STANDARD
        .decode(value)
        .or_else(|_| STANDARD_NO_PAD.decode(value));
    match decoded {
        Ok(sent) => sent.as_slice() == Md5::digest(body).as_slice(),
        Err(_) => false,
    }
}

/// The lowercase hex SHA-256 of `body`: what [`crate::Current::sha256`] and the
/// `incoming_sha256` of [`crate::decide_write`] are expected to hold.
pub fn sha256_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_body_md5_matches_what_terraform_sends_on_force_unlock() {
        // Observed on the wire (design doc §2): force-unlock's empty body.
        assert_eq!(content_md5(b""), "1B2M2Y8AsgTpgAmY7PhCfg==");
        assert!(content_md5_matches("1B2M2Y8AsgTpgAmY7PhCfg==", b""));
    }

    #[test]
    fn md5_header_checks() {
        let body = br#"{"serial":1}"#;
        let good = content_md5(body);
        let cases: &[(&str, bool)] = &[
            (&good, true),
            (&format!("  {good}\t"), true),
            (good.trim_end_matches('='), true),
            ("1B2M2Y8AsgTpgAmY7PhCfg==", false),
            ("not base64!", false),
            ("", false),
            ("AAAA", false),
            (&hex::encode(Md5::digest(body)), false),
        ];
        for (header, expected) in cases {
            assert_eq!(
                content_md5_matches(header, body),
                *expected,
                "header {header:?}"
            );
        }
    }

    #[test]
    fn sha256_is_lowercase_hex() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
