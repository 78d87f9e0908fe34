//! The one error type of `ferry-state`: a body that cannot be read as what it claims to be.
//!
//! Messages are lowercase, have no trailing period and never quote the body. The server can put
//! them into a 400 response as they are, without reflecting client data (possibly a secret pushed
//! by mistake) into logs or terminals.

/// Why a state or lock body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The body is not JSON.
    #[error("{what} is not valid JSON (line {line}, column {column})")]
    NotJson {
        /// `"state"` or `"lock info"`.
        what: &'static str,
        /// Where the parser gave up, 1-based.
        line: usize,
        /// Where the parser gave up, 1-based.
        column: usize,
    },
    /// The body is JSON, but not an object.
    #[error("{what} must be a JSON object")]
    NotObject {
        /// `"state"` or `"lock info"`.
        what: &'static str,
    },
    /// A required field is absent.
    #[error("{what} has no `{field}` field")]
    MissingField {
        /// `"state"` or `"lock info"`.
        what: &'static str,
        /// The JSON field name.
        field: &'static str,
    },
    /// A field Ferry relies on appears twice, so the body is ambiguous.
    #[error("{what} has more than one `{field}` field")]
    DuplicateField {
        /// `"state"` or `"lock info"`.
        what: &'static str,
        /// The JSON field name.
        field: &'static str,
    },
    /// `serial` is negative, fractional, too large or not a number.
    #[error("state `serial` must be a non-negative integer")]
    InvalidSerial,
    /// `lineage` is empty or not a string.
    #[error("state `lineage` must be a non-empty string")]
    InvalidLineage,
    /// A lock info field is not a string.
    #[error("lock info `{field}` must be a string")]
    InvalidLockField {
        /// The JSON field name, as Terraform spells it (`ID`, `Who`, …).
        field: &'static str,
    },
    /// The lock info's `ID` is the empty string.
    #[error("lock info `ID` must not be empty")]
    EmptyLockId,
    /// A LOCK request came without a body.
    #[error("lock request has no body; expected Terraform's lock info JSON")]
    EmptyLockBody,
    /// `resources` (or an entry of it) is not in Terraform's state format.
    #[error("state `resources` is not in terraform's state format")]
    MalformedResources,
    /// The state is OpenTofu's encrypted envelope, so its resources cannot be read.
    #[error("state is encrypted by opentofu, so its resources cannot be read")]
    Encrypted,
}

/// Maps a `serde_json` error to [`StateError`] without its message, which may quote the body.
pub(crate) fn json_error(what: &'static str, err: &serde_json::Error) -> StateError {
    StateError::NotJson {
        what,
        line: err.line(),
        column: err.column(),
    }
}
