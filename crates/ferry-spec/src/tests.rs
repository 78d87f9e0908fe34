//! Data-driven tests over `test_data/{ok,err}/*.yaml`, the JSON Schema, and robustness.
//!
//! Each fixture has a `.txt` snapshot next to it: the lowered spec (and any warnings) for `ok`,
//! the rendered diagnostics for `err`. Run with `UPDATE_EXPECT=1` to rewrite snapshots after a
//! deliberate change, then review the diff.

use std::path::{Path, PathBuf};

use expect_test::expect_file;

use crate::lower::{
    APPROVAL_KEYS, COMMAND_KEYS, ENVIRONMENT_KEYS, ENV_POLICY_KEYS, EVENTS, NOTIFY_KEYS,
    POLICY_KEYS, ROOT_KEYS, SECRET_KEYS, SOURCE_KEYS, STAGES_KEYS, TERRAFORM_KEYS, WEBHOOK_KEYS,
};
use crate::{json_schema, lower, Lowered};

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("test_data")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

fn lower_fixture(path: &Path) -> (String, Lowered) {
    let source = std::fs::read_to_string(path).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let lowered = lower(&name, &source);
    (source, lowered)
}

fn render(lowered: &Lowered) -> String {
    lowered
        .diagnostics
        .iter()
        .map(|d| format!("{d}\n"))
        .collect()
}

#[test]
fn ok_fixtures() {
    for path in fixtures("ok") {
        let (_, lowered) = lower_fixture(&path);
        assert!(
            !lowered.has_errors(),
            "{}:\n{}",
            path.display(),
            render(&lowered)
        );
        let mut actual = format!("{:#?}\n", lowered.spec.as_ref().unwrap());
        if !lowered.diagnostics.is_empty() {
            actual.push('\n');
            actual.push_str(&render(&lowered));
        }
        expect_file![path.with_extension("txt")].assert_eq(&actual);
    }
}

#[test]
fn err_fixtures() {
    for path in fixtures("err") {
        let (_, lowered) = lower_fixture(&path);
        assert!(
            lowered.has_errors(),
            "{} lowered without errors",
            path.display()
        );
        assert!(lowered.spec.is_none());
        expect_file![path.with_extension("txt")].assert_eq(&render(&lowered));
    }
}

#[test]
fn minimal_file_gets_an_implicit_auto_applied_environment() {
    let lowered = lower(
        "ferry.yaml",
        "version: 1\nname: network\nterraform: infra/network\n",
    );
    let spec = lowered.spec.expect("lowers");
    assert!(lowered.diagnostics.is_empty());
    assert_eq!(spec.environments.len(), 1);
    assert_eq!(spec.environments[0].name, "default");
    assert!(spec.environments[0].auto_apply);
    assert!(!spec.environments[0].requires_approval());
}

#[test]
fn crlf_and_bom_are_accepted() {
    for path in fixtures("ok").into_iter().chain(fixtures("err")) {
        let (source, lowered) = lower_fixture(&path);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let crlf = lower(&name, &source.replace('\n', "\r\n"));
        assert_eq!(crlf, lowered, "{}", path.display());
        let bom = lower(&name, &format!("\u{feff}{source}"));
        assert_eq!(bom.spec, lowered.spec, "{}", path.display());
    }
}

#[test]
fn display_format() {
    let lowered = lower(
        "ferry.yaml",
        "version: 1\nname: n\nterraform: .\nenvironments:\n  - name: dev\n    auto_aply: true\n",
    );
    let d = lowered.errors().next().unwrap();
    assert_eq!(
        d.to_string(),
        "ferry.yaml:6:5: error: unknown key `auto_aply` in environment (did you mean `auto_apply`?)"
    );
}

#[test]
fn messages_are_lowercase_without_trailing_period() {
    for path in fixtures("err").into_iter().chain(fixtures("ok")) {
        let (_, lowered) = lower_fixture(&path);
        for d in &lowered.diagnostics {
            let first = d.message.chars().next().unwrap();
            assert!(!first.is_uppercase(), "{d}");
            assert!(!d.message.ends_with('.'), "{d}");
            assert!(d.line >= 1 && d.column >= 1, "{d}");
        }
    }
}

/// Every complete example in the user guide lowers cleanly, so the guide cannot rot.
#[test]
fn guide_examples_lower_cleanly() {
    let guide = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/ferry-yaml.md");
    let guide = std::fs::read_to_string(guide).unwrap();
    let mut checked = 0;
    for block in guide.split("```yaml\n").skip(1) {
        let block = block.split("```").next().unwrap();
        if block.starts_with("version: 1") {
            let lowered = lower("ferry-yaml.md", block);
            assert!(
                lowered.diagnostics.is_empty(),
                "{block}\n{}",
                render(&lowered)
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 2);
}

// ---- JSON Schema ----------------------------------------------------------------------------

#[test]
fn ok_fixtures_validate_against_the_schema() {
    let schema = json_schema();
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    for path in fixtures("ok") {
        let source = std::fs::read_to_string(&path).unwrap();
        let mut sink = crate::diagnostic::Sink::new("t");
        let instance = crate::yaml::parse(&mut sink, &source).unwrap().to_json();
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{}:\n{}",
            path.display(),
            errors.join("\n")
        );
    }
}

/// The schema's property names must equal lowering's allowed keys, so the two cannot drift.
#[test]
fn schema_keys_match_lowering() {
    let schema = json_schema();
    let defs = &schema["$defs"];
    let props = |v: &serde_json::Value| -> Vec<String> {
        let mut keys: Vec<String> = v["properties"]
            .as_object()
            .expect("properties")
            .keys()
            .cloned()
            .collect();
        keys.sort();
        keys
    };
    let sorted = |keys: &[&str]| -> Vec<String> {
        let mut keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        keys.sort();
        keys
    };
    let command = defs["commands"]["items"]["oneOf"][1].clone();
    let notification = &defs["notification"];
    let cases: Vec<(&str, &serde_json::Value, &[&str])> = vec![
        ("root", &schema, ROOT_KEYS),
        ("source", &schema["properties"]["source"], SOURCE_KEYS),
        (
            "terraform",
            &schema["properties"]["terraform"]["oneOf"][1],
            TERRAFORM_KEYS,
        ),
        ("stages", &schema["properties"]["stages"], STAGES_KEYS),
        ("environment", &defs["environment"], ENVIRONMENT_KEYS),
        ("policy", &schema["properties"]["policy"], POLICY_KEYS),
        (
            "environment policy",
            &defs["environment"]["properties"]["policy"],
            ENV_POLICY_KEYS,
        ),
        ("approval", &defs["approval"], APPROVAL_KEYS),
        ("secret", &defs["secret"], SECRET_KEYS),
        ("command", &command, COMMAND_KEYS),
        ("notification", notification, NOTIFY_KEYS),
        (
            "webhook",
            &notification["properties"]["webhook"],
            WEBHOOK_KEYS,
        ),
    ];
    for (what, node, keys) in cases {
        assert_eq!(props(node), sorted(keys), "{what}");
        assert_eq!(
            node["additionalProperties"],
            serde_json::Value::Bool(false),
            "{what}"
        );
    }
    let events: Vec<&str> = defs["event"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(events, EVENTS);
}

// ---- Robustness -----------------------------------------------------------------------------

/// A small deterministic generator, so the fuzz test needs no dependency and never flakes.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn assert_consistent(source: &str) {
    let lowered = lower("f.yaml", source);
    assert_eq!(lowered.spec.is_none(), lowered.has_errors(), "{source:?}");
    assert!(
        lowered
            .diagnostics
            .iter()
            .all(|d| d.line >= 1 && d.column >= 1),
        "{source:?}"
    );
    let positions: Vec<_> = lowered
        .diagnostics
        .iter()
        .map(|d| (d.line, d.column))
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] <= w[1]),
        "not in source order: {source:?}"
    );
}

#[test]
fn truncated_fixtures_never_panic() {
    for path in fixtures("ok").into_iter().chain(fixtures("err")) {
        let source = std::fs::read_to_string(&path).unwrap();
        for (i, _) in source.char_indices() {
            assert_consistent(&source[..i]);
        }
    }
}

#[test]
fn mutated_fixtures_never_panic() {
    const ALPHABET: &[&str] = &[
        " ", "\t", "\n", ":", "-", "[", "]", "{", "}", ",", "'", "\"", "&a", "*a", "!", "#", "|",
        ">", "?", "é", "\0", "..", "~",
    ];
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for path in fixtures("ok").into_iter().chain(fixtures("err")) {
        let source = std::fs::read_to_string(&path).unwrap();
        for _ in 0..200 {
            let mut chars: Vec<String> = source.chars().map(String::from).collect();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(chars.len());
                match rng.below(3) {
                    0 if !chars.is_empty() => {
                        chars.remove(at);
                    }
                    1 => chars.insert(at, ALPHABET[rng.below(ALPHABET.len())].to_owned()),
                    _ => {
                        if let Some(c) = chars.get_mut(at) {
                            *c = ALPHABET[rng.below(ALPHABET.len())].to_owned();
                        }
                    }
                }
            }
            assert_consistent(&chars.concat());
        }
    }
    let mut rng = XorShift(42);
    for _ in 0..2000 {
        let bytes: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
        assert_consistent(&String::from_utf8_lossy(&bytes));
    }
}
