//! State locks as Terraform's `http` backend speaks them: the LockInfo body of LOCK and UNLOCK,
//! the lock decisions, and which writes a held lock lets through (design doc §2.4–§2.6, §5).
//!
//! Every decision is idempotent, because go-retryablehttp resends LOCK, UNLOCK and writes whose
//! first attempt may have succeeded (§6).

use chrono::{DateTime, Datelike as _, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{json_error, StateError};

/// A lock's description exactly as Terraform sends it (`statemgr.LockInfo`, Go field names).
///
/// Serialises to the JSON Terraform expects in a 409/423 body, fields in Go's order. Fields other
/// than these seven are dropped when parsing; Terraform and OpenTofu send no others, and the
/// server still has the request's raw bytes if it wants to keep them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// The client's random lock id (UUID format). Never empty in a [`LockRequest::Lock`].
    #[serde(rename = "ID")]
    pub id: String,
    /// E.g. `OperationTypeApply`, `state-push`.
    #[serde(rename = "Operation", default)]
    pub operation: String,
    /// Free text; Ferry's own locks say which run holds them.
    #[serde(rename = "Info", default)]
    pub info: String,
    /// `user@hostname`.
    #[serde(rename = "Who", default)]
    pub who: String,
    /// The client's Terraform version.
    #[serde(rename = "Version", default)]
    pub version: String,
    /// RFC 3339; see [`LockInfo::with_created_default`].
    #[serde(rename = "Created", default)]
    pub created: String,
    /// Always empty for `http`.
    #[serde(rename = "Path", default)]
    pub path: String,
}

impl LockInfo {
    /// The lock info with `Created` fit to store and to send back to Terraform.
    ///
    /// Terraform ≥1.15 parses the holder's `Created` with Go's `time.Time` and gives up waiting
    /// (`-lock-timeout`) when it is not RFC 3339. So a `Created` that is empty, not RFC 3339, or
    /// Go's zero time (`0001-01-01T00:00:00Z`, what OpenTofu's force-unlock sends) becomes `now`,
    /// in Terraform's own form (RFC 3339 with nanoseconds, `Z`).
    pub fn with_created_default(mut self, now: DateTime<Utc>) -> LockInfo {
        let valid = DateTime::parse_from_rfc3339(self.created.trim())
            .is_ok_and(|created| created.year() > 1);
        if !valid {
            self.created = now.to_rfc3339_opts(SecondsFormat::Nanos, true);
        }
        self
    }

    /// Compact JSON, as a 409/423 conflict body or a `lock-info` answer.
    pub fn to_json(&self) -> Vec<u8> {
        // Invariant: seven `String` fields always serialise.
        serde_json::to_vec(self).expect("LockInfo holds only strings")
    }
}

/// A LOCK or UNLOCK body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockRequest {
    /// A LockInfo with a non-empty `ID`: every LOCK, a normal UNLOCK (byte-identical to its
    /// LOCK), and OpenTofu ≥1.10's force-unlock (only `ID` set).
    Lock(LockInfo),
    /// An empty body: Terraform's `force-unlock`, which never sends the id
    /// (hashicorp/terraform#28421). Only meaningful on UNLOCK.
    Force,
}

/// Reads a LOCK or UNLOCK body.
///
/// An empty (or all-whitespace) body is [`LockRequest::Force`]. Otherwise the body must be a JSON
/// object with a non-empty string `ID`; the other fields are optional strings (`null` reads as
/// empty, like Go) and unknown fields are ignored. A JSON body with an empty `ID` is an error,
/// not a force-unlock: neither Terraform nor OpenTofu sends one.
pub fn parse_lock(body: &[u8]) -> Result<LockRequest, StateError> {
    const WHAT: &str = "lock info";
    if body.trim_ascii().is_empty() {
        return Ok(LockRequest::Force);
    }
    let value: Value = serde_json::from_slice(body).map_err(|err| json_error(WHAT, &err))?;
    let Value::Object(object) = value else {
        return Err(StateError::NotObject { what: WHAT });
    };
    let field = |name: &'static str| -> Result<Option<String>, StateError> {
        match object.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(StateError::InvalidLockField { field: name }),
        }
    };
    let id = field("ID")?.ok_or(StateError::MissingField {
        what: WHAT,
        field: "ID",
    })?;
    if id.is_empty() {
        return Err(StateError::EmptyLockId);
    }
    Ok(LockRequest::Lock(LockInfo {
        id,
        operation: field("Operation")?.unwrap_or_default(),
        info: field("Info")?.unwrap_or_default(),
        who: field("Who")?.unwrap_or_default(),
        version: field("Version")?.unwrap_or_default(),
        created: field("Created")?.unwrap_or_default(),
        path: field("Path")?.unwrap_or_default(),
    }))
}

/// Reads a LOCK body: [`parse_lock`], with an empty body an error ([`StateError::EmptyLockBody`])
/// instead of a force-unlock.
pub fn parse_lock_info(body: &[u8]) -> Result<LockInfo, StateError> {
    match parse_lock(body)? {
        LockRequest::Lock(info) => Ok(info),
        LockRequest::Force => Err(StateError::EmptyLockBody),
    }
}

/// What to answer a LOCK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockDecision {
    /// Not locked: store the request as the holder, answer 200.
    Acquired,
    /// Already held under the same `ID` (a retried LOCK): answer 200, change nothing.
    AlreadyHeld,
    /// Held by another `ID`: answer 423 (or 409) with this holder's [`LockInfo::to_json`].
    Conflict(LockInfo),
}

/// Decides a LOCK against the current holder. Ids are compared exactly.
pub fn decide_lock(holder: Option<&LockInfo>, request: &LockInfo) -> LockDecision {
    match holder {
        None => LockDecision::Acquired,
        Some(holder) if holder.id == request.id => LockDecision::AlreadyHeld,
        Some(holder) => LockDecision::Conflict(holder.clone()),
    }
}

/// What to answer an UNLOCK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnlockDecision {
    /// The request named the holder's `ID`: drop the lock, answer 200.
    Released,
    /// Nothing is locked (also a retried UNLOCK, or a force-unlock of a free state): answer 200.
    NotLocked,
    /// The request named another `ID`: answer 409 with this holder's [`LockInfo::to_json`].
    Conflict(LockInfo),
    /// Terraform's empty-body force-unlock of a held lock. The caller must authorise it (admin or
    /// maintainer), audit it, then drop the lock and answer 200.
    Force,
}

/// Decides an UNLOCK against the current holder.
///
/// OpenTofu's force-unlock sends `{"ID":"<id>",…}` with the other fields empty; like any UNLOCK
/// with an `ID`, it releases the lock when the id is the holder's and conflicts otherwise.
pub fn decide_unlock(holder: Option<&LockInfo>, request: &LockRequest) -> UnlockDecision {
    match (holder, request) {
        (None, _) => UnlockDecision::NotLocked,
        (Some(_), LockRequest::Force) => UnlockDecision::Force,
        (Some(holder), LockRequest::Lock(info)) if holder.id == info.id => UnlockDecision::Released,
        (Some(holder), LockRequest::Lock(_)) => UnlockDecision::Conflict(holder.clone()),
    }
}

/// Whether a write's `?ID=` query parameter fits the lock (design doc §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteLockCheck {
    /// Go ahead with the serial/lineage guard.
    Ok,
    /// Locked, and the write names no lock: answer 423.
    Missing,
    /// The write names another lock, or names one while the state is unlocked (the writer
    /// believes it holds a lock that was force-unlocked): answer 409.
    Mismatch,
}

/// Checks a write's `?ID=` against the holder. An empty `ID` counts as absent; Terraform adds the
/// parameter only when it holds a lock, and `-lock=false` writes to an unlocked state are fine.
pub fn check_write_lock(holder: Option<&LockInfo>, query_id: Option<&str>) -> WriteLockCheck {
    let query_id = query_id.filter(|id| !id.is_empty());
    match (holder, query_id) {
        (None, None) => WriteLockCheck::Ok,
        (None, Some(_)) => WriteLockCheck::Mismatch,
        (Some(_), None) => WriteLockCheck::Missing,
        (Some(holder), Some(id)) if holder.id == id => WriteLockCheck::Ok,
        (Some(_), Some(_)) => WriteLockCheck::Mismatch,
    }
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};

    use super::*;

    /// Observed on the wire from Terraform 1.15.5 (design doc §2.4).
    const TF_LOCK: &str = r#"{"ID":"3dbd7d7e-96cb-fc87-e861-58e4409ed8f9","Operation":"OperationTypeApply","Info":"","Who":"root@vm","Version":"1.15.5","Created":"2026-11-26T10:08:59.102618613Z","Path":""}"#;
    /// OpenTofu ≥1.10's force-unlock body (design doc §2.6).
    const TOFU_FORCE: &str = r#"{"ID":"3dbd7d7e-96cb-fc87-e861-58e4409ed8f9","Operation":"","Info":"","Who":"","Version":"","Created":"0001-01-01T00:00:00Z","Path":""}"#;

    fn check(input: &str, expect: &Expect) {
        let actual = match parse_lock(input.as_bytes()) {
            Ok(request) => format!("{request:?}"),
            Err(err) => format!("error: {err}"),
        };
        expect.assert_eq(&actual);
    }

    #[test]
    fn parse_lock_bodies() {
        let cases: &[(&str, Expect)] = &[
            ("", expect!["Force"]),
            (" \r\n\t", expect!["Force"]),
            (
                TF_LOCK,
                expect![[
                    r#"Lock(LockInfo { id: "3dbd7d7e-96cb-fc87-e861-58e4409ed8f9", operation: "OperationTypeApply", info: "", who: "root@vm", version: "1.15.5", created: "2026-11-26T10:08:59.102618613Z", path: "" })"#
                ]],
            ),
            (
                TOFU_FORCE,
                expect![[
                    r#"Lock(LockInfo { id: "3dbd7d7e-96cb-fc87-e861-58e4409ed8f9", operation: "", info: "", who: "", version: "", created: "0001-01-01T00:00:00Z", path: "" })"#
                ]],
            ),
            (
                r#"{"ID":"a","Who":null,"Extra":{"x":1}}"#,
                expect![[
                    r#"Lock(LockInfo { id: "a", operation: "", info: "", who: "", version: "", created: "", path: "" })"#
                ]],
            ),
            (
                "garbage",
                expect!["error: lock info is not valid JSON (line 1, column 1)"],
            ),
            ("[1]", expect!["error: lock info must be a JSON object"]),
            ("\"ID\"", expect!["error: lock info must be a JSON object"]),
            ("{}", expect!["error: lock info has no `ID` field"]),
            (
                r#"{"ID":null}"#,
                expect!["error: lock info has no `ID` field"],
            ),
            (
                r#"{"ID":""}"#,
                expect!["error: lock info `ID` must not be empty"],
            ),
            (
                r#"{"ID":1}"#,
                expect!["error: lock info `ID` must be a string"],
            ),
            (
                r#"{"ID":"a","Who":["x"]}"#,
                expect!["error: lock info `Who` must be a string"],
            ),
        ];
        for (input, expect) in cases {
            check(input, expect);
        }
        assert_eq!(parse_lock_info(b""), Err(StateError::EmptyLockBody));
        assert_eq!(parse_lock_info(TF_LOCK.as_bytes()).unwrap().who, "root@vm");
    }

    #[test]
    fn lock_info_json_round_trips_in_go_field_order() {
        let info = parse_lock_info(TF_LOCK.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(info.to_json()).unwrap(), TF_LOCK);
        let back: LockInfo = serde_json::from_slice(&info.to_json()).unwrap();
        assert_eq!(back, info);
    }

    #[test]
    fn created_defaults_to_now_unless_rfc3339() {
        let now = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.5Z")
            .unwrap()
            .to_utc();
        let cases = [
            (
                "2026-11-26T10:08:59.102618613Z",
                "2026-11-26T10:08:59.102618613Z",
            ),
            ("2026-11-26T10:08:59+01:00", "2026-11-26T10:08:59+01:00"),
            ("", "2026-01-02T03:04:05.500000000Z"),
            ("yesterday", "2026-01-02T03:04:05.500000000Z"),
            ("0001-01-01T00:00:00Z", "2026-01-02T03:04:05.500000000Z"),
        ];
        for (created, expected) in cases {
            let info = LockInfo {
                id: "a".into(),
                created: created.into(),
                ..LockInfo::default()
            };
            assert_eq!(
                info.with_created_default(now).created,
                expected,
                "{created:?}"
            );
        }
    }

    fn lock(id: &str) -> LockInfo {
        LockInfo {
            id: id.into(),
            who: format!("{id}@host"),
            ..LockInfo::default()
        }
    }

    fn holders() -> [(&'static str, Option<LockInfo>); 2] {
        [("unlocked", None), ("held A", Some(lock("A")))]
    }

    #[test]
    fn lock_decision_table() {
        let mut table = String::new();
        for (hname, holder) in holders() {
            for (rname, request) in [("A", lock("A")), ("B", lock("B"))] {
                let decision = decide_lock(holder.as_ref(), &request);
                let shown = match decision {
                    LockDecision::Conflict(h) => format!("Conflict(holder {})", h.id),
                    other => format!("{other:?}"),
                };
                table += &format!("{hname:8} LOCK {rname} -> {shown}\n");
            }
        }
        expect![[r#"
            unlocked LOCK A -> Acquired
            unlocked LOCK B -> Acquired
            held A   LOCK A -> AlreadyHeld
            held A   LOCK B -> Conflict(holder A)
        "#]]
        .assert_eq(&table);
    }

    #[test]
    fn unlock_decision_table() {
        let requests = [
            ("empty body", LockRequest::Force),
            ("ID A", LockRequest::Lock(lock("A"))),
            ("ID B", LockRequest::Lock(lock("B"))),
            (
                "tofu force A",
                parse_lock(
                    TOFU_FORCE
                        .replace("3dbd7d7e-96cb-fc87-e861-58e4409ed8f9", "A")
                        .as_bytes(),
                )
                .unwrap(),
            ),
            (
                "tofu force B",
                parse_lock(
                    TOFU_FORCE
                        .replace("3dbd7d7e-96cb-fc87-e861-58e4409ed8f9", "B")
                        .as_bytes(),
                )
                .unwrap(),
            ),
        ];
        let mut table = String::new();
        for (hname, holder) in holders() {
            for (rname, request) in &requests {
                let decision = decide_unlock(holder.as_ref(), request);
                let shown = match decision {
                    UnlockDecision::Conflict(h) => format!("Conflict(holder {})", h.id),
                    other => format!("{other:?}"),
                };
                table += &format!("{hname:8} UNLOCK {rname:12} -> {shown}\n");
            }
        }
        expect![[r#"
            unlocked UNLOCK empty body   -> NotLocked
            unlocked UNLOCK ID A         -> NotLocked
            unlocked UNLOCK ID B         -> NotLocked
            unlocked UNLOCK tofu force A -> NotLocked
            unlocked UNLOCK tofu force B -> NotLocked
            held A   UNLOCK empty body   -> Force
            held A   UNLOCK ID A         -> Released
            held A   UNLOCK ID B         -> Conflict(holder A)
            held A   UNLOCK tofu force A -> Released
            held A   UNLOCK tofu force B -> Conflict(holder A)
        "#]]
        .assert_eq(&table);
    }

    #[test]
    fn write_lock_table() {
        let mut table = String::new();
        for (hname, holder) in holders() {
            for query in [None, Some(""), Some("A"), Some("B")] {
                let check = check_write_lock(holder.as_ref(), query);
                table += &format!("{hname:8} ?ID={:8} -> {check:?}\n", format!("{query:?}"));
            }
        }
        expect![[r#"
            unlocked ?ID=None     -> Ok
            unlocked ?ID=Some("") -> Ok
            unlocked ?ID=Some("A") -> Mismatch
            unlocked ?ID=Some("B") -> Mismatch
            held A   ?ID=None     -> Missing
            held A   ?ID=Some("") -> Missing
            held A   ?ID=Some("A") -> Ok
            held A   ?ID=Some("B") -> Mismatch
        "#]]
        .assert_eq(&table);
    }

    #[test]
    fn lock_unlock_sequence_is_idempotent_under_retries() {
        // LOCK, LOCK again (lost response), write, UNLOCK, UNLOCK again (lost response).
        let a = parse_lock_info(TF_LOCK.as_bytes()).unwrap();
        let mut holder: Option<LockInfo> = None;
        assert_eq!(decide_lock(holder.as_ref(), &a), LockDecision::Acquired);
        holder = Some(a.clone());
        assert_eq!(decide_lock(holder.as_ref(), &a), LockDecision::AlreadyHeld);
        assert_eq!(
            check_write_lock(holder.as_ref(), Some(&a.id)),
            WriteLockCheck::Ok
        );
        let unlock = parse_lock(TF_LOCK.as_bytes()).unwrap();
        assert_eq!(
            decide_unlock(holder.as_ref(), &unlock),
            UnlockDecision::Released
        );
        holder = None;
        assert_eq!(
            decide_unlock(holder.as_ref(), &unlock),
            UnlockDecision::NotLocked
        );
        // A write from the same client after its lock was released names a lock that is gone.
        assert_eq!(
            check_write_lock(holder.as_ref(), Some(&a.id)),
            WriteLockCheck::Mismatch
        );
    }
}
