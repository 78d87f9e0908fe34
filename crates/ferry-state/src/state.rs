//! State bodies: what Ferry reads from them (`serial`, `lineage`), the serial/lineage guard on
//! writes (design doc §4) and the serial rewrite of a rollback.
//!
//! Only `serial` and `lineage` are relied on, because OpenTofu's encrypted envelope
//! (`{"serial","lineage","meta","encrypted_data","encryption_version"}`) has no `version` and no
//! resources; a server that checks more breaks OpenTofu users.

use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use crate::error::{json_error, StateError};

/// What Ferry needs from a state body, plain Terraform state or OpenTofu's encrypted envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateMeta {
    /// Terraform's write counter; increases with every change within a lineage.
    pub serial: u64,
    /// The id Terraform gives a state when it is first created; never empty.
    pub lineage: String,
    /// Whether the body lists at least one resource. `false` for the encrypted envelope, whose
    /// resources cannot be seen (see [`Current::new`] for what the write guard makes of that).
    pub has_resources: bool,
    /// Whether the body is OpenTofu's encrypted envelope (a non-empty `encryption_version`).
    pub encrypted: bool,
}

/// Reads `serial`, `lineage`, whether resources exist and whether the body is encrypted.
///
/// The body must be a JSON object with a non-negative integer `serial` and a non-empty string
/// `lineage`, each present once. Nothing else is checked: no `version`, no resource shapes.
/// The whole body is scanned but not built into a tree, so this is cheap on large states.
pub fn parse_state(body: &[u8]) -> Result<StateMeta, StateError> {
    const WHAT: &str = "state";
    // Tell "not JSON" from "not an object" before the object-only reader runs.
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(match serde_json::from_slice::<IgnoredAny>(body) {
            Ok(_) => StateError::NotObject { what: WHAT },
            Err(err) => json_error(WHAT, &err),
        });
    }
    let probe: Probe = serde_json::from_slice(body).map_err(|err| json_error(WHAT, &err))?;
    if let Some(field) = probe.duplicate {
        return Err(StateError::DuplicateField { what: WHAT, field });
    }
    let serial = match probe.serial {
        None => {
            return Err(StateError::MissingField {
                what: WHAT,
                field: "serial",
            })
        }
        Some(Value::Number(n)) => n.as_u64().ok_or(StateError::InvalidSerial)?,
        Some(_) => return Err(StateError::InvalidSerial),
    };
    let lineage = match probe.lineage {
        None => {
            return Err(StateError::MissingField {
                what: WHAT,
                field: "lineage",
            })
        }
        Some(Value::String(s)) if !s.is_empty() => s,
        Some(_) => return Err(StateError::InvalidLineage),
    };
    let encrypted = matches!(&probe.encryption_version, Some(Value::String(v)) if !v.is_empty());
    let has_resources = !encrypted && (probe.resources || probe.v3_resources);
    Ok(StateMeta {
        serial,
        lineage,
        has_resources,
        encrypted,
    })
}

/// The current version of a state, as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    /// The stored version's serial.
    pub serial: u64,
    /// The stored version's lineage.
    pub lineage: String,
    /// [`crate::sha256_hex`] of the stored bytes.
    pub sha256: String,
    /// Whether the stored state *may* hold resources. While it does, a write with another
    /// lineage is refused; prefer [`Current::new`], which counts an encrypted state as holding
    /// resources because nobody can see inside it.
    pub has_resources: bool,
}

impl Current {
    /// The guard's view of a stored version.
    ///
    /// `has_resources` is `meta.has_resources || meta.encrypted`: Ferry cannot tell whether an
    /// encrypted state is empty, so it keeps the lineage guard on rather than letting any
    /// foreign state replace an OpenTofu user's encrypted one.
    pub fn new(meta: &StateMeta, sha256: String) -> Current {
        Current {
            serial: meta.serial,
            lineage: meta.lineage.clone(),
            sha256,
            has_resources: meta.has_resources || meta.encrypted,
        }
    }
}

/// What to do with a state write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteDecision {
    /// Store it as a new version.
    Accept,
    /// The bytes are already the current version (a retried write): answer 200, store nothing.
    Idempotent,
    /// Answer 409 with the refusal's message.
    Refuse(Refusal),
}

/// Why a write was refused. `Display` is the message for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The write is older than what is stored.
    #[error(
        "state serial {incoming} is older than the current serial {current}; \
         pull the latest state and retry"
    )]
    LowerSerial {
        /// The stored serial.
        current: u64,
        /// The written serial.
        incoming: u64,
    },
    /// The serial is already stored with other bytes.
    #[error(
        "state serial {serial} is already stored with different content; \
         pull the latest state and retry"
    )]
    SameSerialDifferentContent {
        /// The serial both versions carry.
        serial: u64,
    },
    /// The write belongs to another state.
    #[error(
        "state lineage {} does not match the current lineage {}, so it belongs to a \
         different state; check the backend address, or have an admin push it with --force",
        quoted(.incoming), quoted(.current)
    )]
    ForeignLineage {
        /// The stored lineage.
        current: String,
        /// The written lineage.
        incoming: String,
    },
}

impl Refusal {
    /// A stable code for API errors and audit rows.
    pub fn as_str(&self) -> &'static str {
        match self {
            Refusal::LowerSerial { .. } => "lower_serial",
            Refusal::SameSerialDifferentContent { .. } => "same_serial_different_content",
            Refusal::ForeignLineage { .. } => "foreign_lineage",
        }
    }
}

/// Quotes a client-chosen lineage for a message, cut to a sane length.
fn quoted(lineage: &str) -> String {
    const MAX: usize = 64;
    match lineage.char_indices().nth(MAX) {
        None => format!("{lineage:?}"),
        Some((cut, _)) => format!("{:?}…", &lineage[..cut]),
    }
}

/// Decides a state write (design doc §4, the reference server's policy).
///
/// In order:
/// 1. No current version → [`WriteDecision::Accept`].
/// 2. Same bytes as the current version (`incoming_sha256` equals [`Current::sha256`]) →
///    [`WriteDecision::Idempotent`], **even with `force`**, so a retried forced push does not
///    store a duplicate version.
/// 3. `force` (an admin's `ferry state push --force`, authorised and audited by the caller) →
///    Accept.
/// 4. Another lineage → [`Refusal::ForeignLineage`] while the current state may hold resources.
///    Over a state without resources it is accepted whatever its serial: that is the case
///    Terraform's own `CheckValidImport` allows ("pushing over an empty state"), e.g.
///    `terraform init -migrate-state` into a state that was destroyed, and the new lineage's
///    serials have nothing to do with the old one's.
/// 5. Lower serial → [`Refusal::LowerSerial`]; the same serial (with other bytes, see 2) →
///    [`Refusal::SameSerialDifferentContent`]; a higher serial → Accept.
pub fn decide_write(
    current: Option<&Current>,
    incoming: &StateMeta,
    incoming_sha256: &str,
    force: bool,
) -> WriteDecision {
    let Some(current) = current else {
        return WriteDecision::Accept;
    };
    if !incoming_sha256.is_empty() && current.sha256.eq_ignore_ascii_case(incoming_sha256) {
        return WriteDecision::Idempotent;
    }
    if force {
        return WriteDecision::Accept;
    }
    if incoming.lineage != current.lineage {
        if !current.has_resources {
            return WriteDecision::Accept;
        }
        return WriteDecision::Refuse(Refusal::ForeignLineage {
            current: current.lineage.clone(),
            incoming: incoming.lineage.clone(),
        });
    }
    match incoming.serial.cmp(&current.serial) {
        std::cmp::Ordering::Less => WriteDecision::Refuse(Refusal::LowerSerial {
            current: current.serial,
            incoming: incoming.serial,
        }),
        std::cmp::Ordering::Equal => WriteDecision::Refuse(Refusal::SameSerialDifferentContent {
            serial: incoming.serial,
        }),
        std::cmp::Ordering::Greater => WriteDecision::Accept,
    }
}

/// The body of an old version with its top-level `serial` set to `serial`, for a rollback.
///
/// Only the digits of the top-level `serial` change; every other byte (indentation, key order,
/// numbers, a nested `serial` attribute, OpenTofu's envelope fields) is kept as it was. That is
/// stricter than re-serialising: a JSON round trip would reorder keys and could round large
/// numbers. The result's SHA-256 therefore differs from the old version's only because of the
/// serial. The body must pass [`parse_state`] first.
pub fn with_serial(body: &[u8], serial: u64) -> Result<Vec<u8>, StateError> {
    parse_state(body)?;
    let span = top_level_value(body, "serial").ok_or(StateError::MissingField {
        what: "state",
        field: "serial",
    })?;
    let mut out = Vec::with_capacity(body.len() + 20);
    out.extend_from_slice(&body[..span.start]);
    out.extend_from_slice(serial.to_string().as_bytes());
    out.extend_from_slice(&body[span.end..]);
    Ok(out)
}

/// The byte range of the value of `key` in the top-level object of valid JSON `body`.
fn top_level_value(body: &[u8], key: &str) -> Option<std::ops::Range<usize>> {
    let mut i = skip_ws(body, 0);
    if *body.get(i)? != b'{' {
        return None;
    }
    i += 1;
    loop {
        i = skip_ws(body, i);
        if *body.get(i)? == b'}' {
            return None;
        }
        let key_end = string_end(body, i)?;
        let name: String = serde_json::from_slice(&body[i..key_end]).ok()?;
        i = skip_ws(body, key_end);
        if *body.get(i)? != b':' {
            return None;
        }
        let start = skip_ws(body, i + 1);
        let end = value_end(body, start)?;
        if name == key {
            return Some(start..end);
        }
        i = skip_ws(body, end);
        match *body.get(i)? {
            b',' => i += 1,
            _ => return None,
        }
    }
}

fn skip_ws(body: &[u8], mut i: usize) -> usize {
    while body.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
        i += 1;
    }
    i
}

/// The index just past the string starting at `i` (which must be `"`).
fn string_end(body: &[u8], i: usize) -> Option<usize> {
    if *body.get(i)? != b'"' {
        return None;
    }
    let mut j = i + 1;
    loop {
        match *body.get(j)? {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
}

/// The index just past the JSON value starting at `i`.
fn value_end(body: &[u8], i: usize) -> Option<usize> {
    match *body.get(i)? {
        b'"' => string_end(body, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match *body.get(j)? {
                    b'"' => {
                        j = string_end(body, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = i;
            while body
                .get(j)
                .is_some_and(|b| !matches!(b, b',' | b'}' | b']') && !b.is_ascii_whitespace())
            {
                j += 1;
            }
            Some(j)
        }
    }
}

/// The few top-level fields [`parse_state`] looks at; everything else is skipped unbuilt.
#[derive(Default)]
struct Probe {
    serial: Option<Value>,
    lineage: Option<Value>,
    encryption_version: Option<Value>,
    /// `resources` is a non-empty array (state format 4).
    resources: bool,
    /// `modules[*].resources` has an entry (state format 3, Terraform < 0.12).
    v3_resources: bool,
    duplicate: Option<&'static str>,
}

impl<'de> Deserialize<'de> for Probe {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Probe, D::Error> {
        deserializer.deserialize_map(ProbeVisitor)
    }
}

struct ProbeVisitor;

impl<'de> Visitor<'de> for ProbeVisitor {
    type Value = Probe;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a state object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Probe, A::Error> {
        let mut probe = Probe::default();
        let mut seen_resources = false;
        let mut seen_modules = false;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let (field, seen): (&'static str, bool) = match key.as_ref() {
                "serial" => {
                    let seen = probe.serial.is_some();
                    probe.serial = Some(map.next_value()?);
                    ("serial", seen)
                }
                "lineage" => {
                    let seen = probe.lineage.is_some();
                    probe.lineage = Some(map.next_value()?);
                    ("lineage", seen)
                }
                "encryption_version" => {
                    let seen = probe.encryption_version.is_some();
                    probe.encryption_version = Some(map.next_value()?);
                    ("encryption_version", seen)
                }
                "resources" => {
                    probe.resources = map.next_value::<NonEmpty>()?.0;
                    ("resources", std::mem::replace(&mut seen_resources, true))
                }
                "modules" => {
                    let modules: Value = map.next_value()?;
                    probe.v3_resources = v3_has_resources(&modules);
                    ("modules", std::mem::replace(&mut seen_modules, true))
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            if seen && probe.duplicate.is_none() {
                probe.duplicate = Some(field);
            }
        }
        Ok(probe)
    }
}

fn v3_has_resources(modules: &Value) -> bool {
    modules.as_array().is_some_and(|modules| {
        modules.iter().any(|m| {
            m.get("resources")
                .and_then(Value::as_object)
                .is_some_and(|r| !r.is_empty())
        })
    })
}

/// Whether a value is a non-empty array, read without building its elements.
struct NonEmpty(bool);

impl<'de> Deserialize<'de> for NonEmpty {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<NonEmpty, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NonEmpty;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NonEmpty, A::Error> {
                let first = seq.next_element::<IgnoredAny>()?.is_some();
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(NonEmpty(first))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NonEmpty, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(NonEmpty(false))
            }
            fn visit_unit<E>(self) -> Result<NonEmpty, E> {
                Ok(NonEmpty(false))
            }
            fn visit_bool<E>(self, _: bool) -> Result<NonEmpty, E> {
                Ok(NonEmpty(false))
            }
            fn visit_i64<E>(self, _: i64) -> Result<NonEmpty, E> {
                Ok(NonEmpty(false))
            }
            fn visit_u64<E>(self, _: u64) -> Result<NonEmpty, E> {
                Ok(NonEmpty(false))
            }
            fn visit_f64<E>(self, _: f64) -> Result<NonEmpty, E> {
                Ok(NonEmpty(false))
            }
            fn visit_str<E>(self, _: &str) -> Result<NonEmpty, E> {
                Ok(NonEmpty(false))
            }
        }
        deserializer.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};

    use super::*;

    const TF: &[u8] = include_bytes!("../test_data/terraform.tfstate");
    const TF_DESTROYED: &[u8] = include_bytes!("../test_data/terraform-destroyed.tfstate");
    const TOFU: &[u8] = include_bytes!("../test_data/tofu-encrypted.tfstate");

    fn check_parse(input: &str, expect: &Expect) {
        let actual = match parse_state(input.as_bytes()) {
            Ok(meta) => format!("{meta:?}"),
            Err(err) => format!("error: {err}"),
        };
        expect.assert_eq(&actual);
    }

    #[test]
    fn parses_real_states() {
        let cases: &[(&[u8], Expect)] = &[
            (
                TF,
                expect![[
                    r#"StateMeta { serial: 9, lineage: "f2e2ea60-e677-9d44-7e60-4792a93bb7d4", has_resources: true, encrypted: false }"#
                ]],
            ),
            (
                TF_DESTROYED,
                expect![[
                    r#"StateMeta { serial: 22, lineage: "f2e2ea60-e677-9d44-7e60-4792a93bb7d4", has_resources: false, encrypted: false }"#
                ]],
            ),
            (
                TOFU,
                expect![[
                    r#"StateMeta { serial: 7, lineage: "0b7e3c52-6d1a-4f2e-9c3b-3f1d2a7e9b10", has_resources: false, encrypted: true }"#
                ]],
            ),
        ];
        for (body, expect) in cases {
            check_parse(std::str::from_utf8(body).unwrap(), expect);
        }
    }

    #[test]
    fn parse_accepts() {
        check_parse(
            r#"{"serial":0,"lineage":"l"}"#,
            &expect![[
                r#"StateMeta { serial: 0, lineage: "l", has_resources: false, encrypted: false }"#
            ]],
        );
        check_parse(
            &format!(
                r#" {{"serial":{},"lineage":"l","resources":[{{}}]}} "#,
                u64::MAX
            ),
            &expect![[
                r#"StateMeta { serial: 18446744073709551615, lineage: "l", has_resources: true, encrypted: false }"#
            ]],
        );
        // An envelope that happens to carry resources still counts as encrypted and opaque.
        check_parse(
            r#"{"serial":1,"lineage":"l","resources":[1],"encryption_version":"v0"}"#,
            &expect![[
                r#"StateMeta { serial: 1, lineage: "l", has_resources: false, encrypted: true }"#
            ]],
        );
        // An empty `encryption_version` is not OpenTofu's sigil.
        check_parse(
            r#"{"serial":1,"lineage":"l","encryption_version":""}"#,
            &expect![[
                r#"StateMeta { serial: 1, lineage: "l", has_resources: false, encrypted: false }"#
            ]],
        );
        check_parse(
            r#"{"serial":1,"lineage":"l","resources":{"a":1}}"#,
            &expect![[
                r#"StateMeta { serial: 1, lineage: "l", has_resources: false, encrypted: false }"#
            ]],
        );
        // Terraform < 0.12 (state format 3).
        check_parse(
            r#"{"version":3,"serial":4,"lineage":"l","modules":[{"path":["root"],"resources":{"null_resource.a":{}}}]}"#,
            &expect![[
                r#"StateMeta { serial: 4, lineage: "l", has_resources: true, encrypted: false }"#
            ]],
        );
        check_parse(
            r#"{"version":3,"serial":4,"lineage":"l","modules":[{"path":["root"],"resources":{}}]}"#,
            &expect![[
                r#"StateMeta { serial: 4, lineage: "l", has_resources: false, encrypted: false }"#
            ]],
        );
    }

    #[test]
    fn parse_rejects() {
        let cases: &[(&str, Expect)] = &[
            (
                "",
                expect!["error: state is not valid JSON (line 1, column 0)"],
            ),
            (
                "garbage",
                expect!["error: state is not valid JSON (line 1, column 1)"],
            ),
            (
                "{\"serial\":1,",
                expect!["error: state is not valid JSON (line 1, column 12)"],
            ),
            (
                r#"{"serial":1,"lineage":"l"} x"#,
                expect!["error: state is not valid JSON (line 1, column 28)"],
            ),
            ("[1,2]", expect!["error: state must be a JSON object"]),
            (
                "\"secret-string\"",
                expect!["error: state must be a JSON object"],
            ),
            ("null", expect!["error: state must be a JSON object"]),
            ("42", expect!["error: state must be a JSON object"]),
            (
                r#"{"lineage":"l"}"#,
                expect!["error: state has no `serial` field"],
            ),
            (
                r#"{"serial":-1,"lineage":"l"}"#,
                expect!["error: state `serial` must be a non-negative integer"],
            ),
            (
                r#"{"serial":1.5,"lineage":"l"}"#,
                expect!["error: state `serial` must be a non-negative integer"],
            ),
            (
                r#"{"serial":1.0,"lineage":"l"}"#,
                expect!["error: state `serial` must be a non-negative integer"],
            ),
            (
                r#"{"serial":1e3,"lineage":"l"}"#,
                expect!["error: state `serial` must be a non-negative integer"],
            ),
            (
                r#"{"serial":18446744073709551616,"lineage":"l"}"#,
                expect!["error: state `serial` must be a non-negative integer"],
            ),
            (
                r#"{"serial":"1","lineage":"l"}"#,
                expect!["error: state `serial` must be a non-negative integer"],
            ),
            (
                r#"{"serial":null,"lineage":"l"}"#,
                expect!["error: state `serial` must be a non-negative integer"],
            ),
            (
                r#"{"serial":1}"#,
                expect!["error: state has no `lineage` field"],
            ),
            (
                r#"{"serial":1,"lineage":""}"#,
                expect!["error: state `lineage` must be a non-empty string"],
            ),
            (
                r#"{"serial":1,"lineage":7}"#,
                expect!["error: state `lineage` must be a non-empty string"],
            ),
            (
                r#"{"serial":1,"serial":2,"lineage":"l"}"#,
                expect!["error: state has more than one `serial` field"],
            ),
            (
                r#"{"serial":1,"lineage":"l","lineage":"m"}"#,
                expect!["error: state has more than one `lineage` field"],
            ),
        ];
        for (input, expect) in cases {
            check_parse(input, expect);
        }
    }

    #[test]
    fn parse_errors_never_echo_the_body() {
        for body in [
            r#"{"serial":"hunter2","lineage":"l"}"#,
            "hunter2",
            r#"{"hunter2": }"#,
        ] {
            let err = parse_state(body.as_bytes()).unwrap_err().to_string();
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    fn meta(serial: u64, lineage: &str) -> StateMeta {
        StateMeta {
            serial,
            lineage: lineage.to_owned(),
            has_resources: true,
            encrypted: false,
        }
    }

    /// Every combination of stored state, incoming serial/lineage/bytes and `force`.
    #[test]
    fn write_decision_table() {
        let currents: [(&str, Option<Current>); 3] = [
            ("none", None),
            (
                "L@5+res",
                Some(Current {
                    serial: 5,
                    lineage: "L".into(),
                    sha256: "aa".into(),
                    has_resources: true,
                }),
            ),
            (
                "L@5-res",
                Some(Current {
                    serial: 5,
                    lineage: "L".into(),
                    sha256: "aa".into(),
                    has_resources: false,
                }),
            ),
        ];
        let incomings = [
            ("L@4", meta(4, "L"), "bb"),
            ("L@5 same bytes", meta(5, "L"), "AA"),
            ("L@5 other bytes", meta(5, "L"), "bb"),
            ("L@6", meta(6, "L"), "bb"),
            ("X@4", meta(4, "X"), "bb"),
            ("X@5", meta(5, "X"), "bb"),
            ("X@6", meta(6, "X"), "bb"),
        ];
        let mut table = String::new();
        for (cname, current) in &currents {
            for (iname, incoming, sha) in &incomings {
                for force in [false, true] {
                    let decision = decide_write(current.as_ref(), incoming, sha, force);
                    let shown = match &decision {
                        WriteDecision::Refuse(r) => format!("Refuse({})", r.as_str()),
                        other => format!("{other:?}"),
                    };
                    table += &format!("{cname:8} {iname:16} force={force:5} -> {shown}\n");
                }
            }
        }
        expect![[r#"
            none     L@4              force=false -> Accept
            none     L@4              force=true  -> Accept
            none     L@5 same bytes   force=false -> Accept
            none     L@5 same bytes   force=true  -> Accept
            none     L@5 other bytes  force=false -> Accept
            none     L@5 other bytes  force=true  -> Accept
            none     L@6              force=false -> Accept
            none     L@6              force=true  -> Accept
            none     X@4              force=false -> Accept
            none     X@4              force=true  -> Accept
            none     X@5              force=false -> Accept
            none     X@5              force=true  -> Accept
            none     X@6              force=false -> Accept
            none     X@6              force=true  -> Accept
            L@5+res  L@4              force=false -> Refuse(lower_serial)
            L@5+res  L@4              force=true  -> Accept
            L@5+res  L@5 same bytes   force=false -> Idempotent
            L@5+res  L@5 same bytes   force=true  -> Idempotent
            L@5+res  L@5 other bytes  force=false -> Refuse(same_serial_different_content)
            L@5+res  L@5 other bytes  force=true  -> Accept
            L@5+res  L@6              force=false -> Accept
            L@5+res  L@6              force=true  -> Accept
            L@5+res  X@4              force=false -> Refuse(foreign_lineage)
            L@5+res  X@4              force=true  -> Accept
            L@5+res  X@5              force=false -> Refuse(foreign_lineage)
            L@5+res  X@5              force=true  -> Accept
            L@5+res  X@6              force=false -> Refuse(foreign_lineage)
            L@5+res  X@6              force=true  -> Accept
            L@5-res  L@4              force=false -> Refuse(lower_serial)
            L@5-res  L@4              force=true  -> Accept
            L@5-res  L@5 same bytes   force=false -> Idempotent
            L@5-res  L@5 same bytes   force=true  -> Idempotent
            L@5-res  L@5 other bytes  force=false -> Refuse(same_serial_different_content)
            L@5-res  L@5 other bytes  force=true  -> Accept
            L@5-res  L@6              force=false -> Accept
            L@5-res  L@6              force=true  -> Accept
            L@5-res  X@4              force=false -> Accept
            L@5-res  X@4              force=true  -> Accept
            L@5-res  X@5              force=false -> Accept
            L@5-res  X@5              force=true  -> Accept
            L@5-res  X@6              force=false -> Accept
            L@5-res  X@6              force=true  -> Accept
        "#]]
        .assert_eq(&table);
    }

    #[test]
    fn refusal_messages() {
        let long = "x".repeat(100);
        let refusals = [
            Refusal::LowerSerial {
                current: 5,
                incoming: 3,
            },
            Refusal::SameSerialDifferentContent { serial: 5 },
            Refusal::ForeignLineage {
                current: "aaa".into(),
                incoming: "b\"b".into(),
            },
            Refusal::ForeignLineage {
                current: "aaa".into(),
                incoming: long,
            },
        ];
        let shown: Vec<String> = refusals
            .iter()
            .map(|r| format!("{}: {r}", r.as_str()))
            .collect();
        expect![[r#"
            lower_serial: state serial 3 is older than the current serial 5; pull the latest state and retry
            same_serial_different_content: state serial 5 is already stored with different content; pull the latest state and retry
            foreign_lineage: state lineage "b\"b" does not match the current lineage "aaa", so it belongs to a different state; check the backend address, or have an admin push it with --force
            foreign_lineage: state lineage "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"… does not match the current lineage "aaa", so it belongs to a different state; check the backend address, or have an admin push it with --force"#]]
        .assert_eq(&shown.join("\n"));
    }

    #[test]
    fn idempotent_retry_of_a_real_state() {
        let meta = parse_state(TF).unwrap();
        let sha = crate::sha256_hex(TF);
        let current = Current::new(&meta, sha.clone());
        assert_eq!(
            decide_write(Some(&current), &meta, &sha, false),
            WriteDecision::Idempotent
        );
        // The same serial with one byte more is a conflict, not a retry.
        let mut other = TF.to_vec();
        other.push(b'\n');
        assert_eq!(
            decide_write(Some(&current), &meta, &crate::sha256_hex(&other), false),
            WriteDecision::Refuse(Refusal::SameSerialDifferentContent { serial: 9 })
        );
    }

    #[test]
    fn encrypted_current_keeps_the_lineage_guard() {
        let tofu = parse_state(TOFU).unwrap();
        let current = Current::new(&tofu, crate::sha256_hex(TOFU));
        assert!(current.has_resources);
        let foreign = parse_state(TF).unwrap();
        assert!(matches!(
            decide_write(Some(&current), &foreign, &crate::sha256_hex(TF), false),
            WriteDecision::Refuse(Refusal::ForeignLineage { .. })
        ));
        // A destroyed (empty) plain state lets a foreign lineage in: the migration case.
        let destroyed = parse_state(TF_DESTROYED).unwrap();
        let current = Current::new(&destroyed, crate::sha256_hex(TF_DESTROYED));
        assert_eq!(
            decide_write(Some(&current), &tofu, "x", false),
            WriteDecision::Accept
        );
    }

    /// Checks that `with_serial` changed only the serial, and returns the new body.
    fn rollback(body: &[u8], serial: u64) -> Vec<u8> {
        let out = with_serial(body, serial).unwrap();
        let before = parse_state(body).unwrap();
        let after = parse_state(&out).unwrap();
        assert_eq!(after, StateMeta { serial, ..before });
        let mut a: Value = serde_json::from_slice(body).unwrap();
        let mut b: Value = serde_json::from_slice(&out).unwrap();
        a["serial"] = Value::Null;
        b["serial"] = Value::Null;
        assert_eq!(a, b);
        out
    }

    #[test]
    fn rollback_rewrites_only_the_serial_of_a_terraform_state() {
        let out = rollback(TF, 23);
        let text = String::from_utf8(out).unwrap();
        let original = std::str::from_utf8(TF).unwrap();
        assert_eq!(
            text,
            original.replacen("\"serial\": 9,", "\"serial\": 23,", 1)
        );
    }

    #[test]
    fn rollback_rewrites_only_the_serial_of_an_encrypted_envelope() {
        let out = rollback(TOFU, 8);
        let original = std::str::from_utf8(TOFU).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            original.replacen("{\"serial\":7,", "{\"serial\":8,", 1)
        );
    }

    #[test]
    fn rollback_edge_cases() {
        // A nested `serial`, an escaped key, odd spacing and big numbers elsewhere survive.
        let body = br#"{ "outputs" : {"serial": {"value": 1}, "s": "\"serial\": 3"}, "big": 123456789012345678901234567890,
            "ser\u0069al"  :  3 , "lineage":"l"}"#;
        let out = rollback(body, 1000);
        expect![[r#"
            { "outputs" : {"serial": {"value": 1}, "s": "\"serial\": 3"}, "big": 123456789012345678901234567890,
                        "ser\u0069al"  :  1000 , "lineage":"l"}"#]]
        .assert_eq(std::str::from_utf8(&out).unwrap());
        assert_eq!(
            with_serial(b"[]", 1),
            Err(StateError::NotObject { what: "state" })
        );
        assert_eq!(
            with_serial(br#"{"serial":-4,"lineage":"l"}"#, 1),
            Err(StateError::InvalidSerial)
        );
    }
}
