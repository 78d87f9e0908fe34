//! The one rule for the names Ferry puts in paths, URLs and directory names: projects,
//! environments, pipelines, states, users, teams and tokens.

/// The rule as a regular expression, for documents (the OpenAPI schema) and messages.
pub const NAME_PATTERN: &str = "^[a-z0-9][a-z0-9_-]*$";
/// The rule as people read it in an error message.
pub const NAME_RULE: &str = "[a-z0-9][a-z0-9_-]*";
/// At most this many bytes (all of them ASCII).
pub const NAME_MAX_LEN: usize = 63;

/// Whether `name` follows [`NAME_PATTERN`] within [`NAME_MAX_LEN`].
pub fn is_name(name: &str) -> bool {
    name.len() <= NAME_MAX_LEN
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["a", "0", "hello-infra", "a_b", &"x".repeat(63)] {
            assert!(is_name(good), "{good}");
        }
        for bad in [
            "",
            "-a",
            "_a",
            "A",
            "a b",
            "a/b",
            "../x",
            "a\0b",
            "é",
            &"x".repeat(64),
        ] {
            assert!(!is_name(bad), "{bad}");
        }
    }
}
