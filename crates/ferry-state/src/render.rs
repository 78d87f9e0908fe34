//! Human renderings of a state version: resources summarised, two versions compared, and the
//! whole state with what Terraform marks sensitive redacted (`ferry state show/diff`, the UI).
//!
//! These read Terraform's state format 4 (Terraform ≥ 0.12). OpenTofu's encrypted envelope has
//! no visible resources. A raw pull is a separate, privileged operation; nothing here returns a
//! sensitive value.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::{json_error, StateError};

/// What a redacted value is replaced with.
pub const REDACTED: &str = "(sensitive)";

/// A known secret at least this long is also redacted where it appears *inside* another string
/// (a connection string, a JSON-encoded attribute). Shorter ones only where a string equals them,
/// so that a short secret does not blank out half the state.
const MIN_EMBEDDED_SECRET: usize = 6;

/// One resource of a state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceSummary {
    /// `module.app.terraform_data.this`, `data.aws_ami.ubuntu`: module path, `data.` for data
    /// sources, type and name; without an instance key.
    pub address: String,
    /// The resource type, e.g. `terraform_data`.
    pub kind: String,
    /// How many instances (`count`/`for_each` keys, plus deposed objects) the state holds.
    pub instances: usize,
}

/// The resources of a state, in the state's order. Empty for OpenTofu's encrypted envelope and
/// for a state without resources.
pub fn resources(body: &[u8]) -> Result<Vec<ResourceSummary>, StateError> {
    let doc = object(body)?;
    if is_encrypted(&doc) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for resource in resource_list(&doc)? {
        let r = Resource::read(resource)?;
        out.push(ResourceSummary {
            address: r.address.clone(),
            kind: r.kind.to_owned(),
            instances: r.instances.len(),
        });
    }
    Ok(out)
}

/// What changed between two state versions, by instance address
/// (`terraform_data.web[0]`, `terraform_data.tagged["blue"]`), each list sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateDiff {
    /// Instances only in the second state.
    pub added: Vec<String>,
    /// Instances only in the first state.
    pub removed: Vec<String>,
    /// Instances in both whose attributes differ.
    pub changed: Vec<String>,
}

/// Compares state `a` (older) with state `b` (newer).
///
/// An encrypted envelope on either side is [`StateError::Encrypted`]: its resources cannot be
/// seen, and an empty diff (or "everything removed") would mislead.
pub fn diff(a: &[u8], b: &[u8]) -> Result<StateDiff, StateError> {
    let (a, b) = (object(a)?, object(b)?);
    let (a, b) = (instances_by_address(&a)?, instances_by_address(&b)?);
    let mut out = StateDiff::default();
    for (address, attributes) in &a {
        match b.get(address) {
            None => out.removed.push(address.clone()),
            Some(other) if other != attributes => out.changed.push(address.clone()),
            Some(_) => {}
        }
    }
    out.added = b
        .keys()
        .filter(|address| !a.contains_key(*address))
        .cloned()
        .collect();
    Ok(out)
}

/// The state as JSON with everything Terraform marks sensitive replaced by [`REDACTED`].
///
/// - Each instance's `sensitive_attributes` paths (lists of `get_attr` / `index` steps) are
///   followed into its `attributes`, through nested objects, lists and maps, and through the
///   `{"value","type"}` wrapper Terraform writes for dynamically typed attributes. A step that
///   cannot be understood, or that does not fit the value's shape, redacts the whole value at
///   that point; an unreadable `sensitive_attributes` redacts every attribute of the instance.
/// - Outputs with `"sensitive": true` get the value [`REDACTED`].
/// - Terraform does not propagate the mark through every provider: `terraform_data`'s `output`
///   holds its sensitive `input` unmarked. So every string found under a redacted value is a
///   *known secret*, and any other string in the document equal to one (or, for secrets of at
///   least six characters, containing one) is redacted too. Numbers and booleans are only
///   redacted where marked.
/// - Each instance's `private` (provider-private, base64, unreadable) becomes [`REDACTED`], and
///   OpenTofu's `encrypted_data` becomes `"(encrypted)"`.
pub fn redacted(body: &[u8]) -> Result<Value, StateError> {
    let mut doc = object(body)?;
    if is_encrypted(&doc) {
        if let Some(data) = doc.get_mut("encrypted_data") {
            *data = Value::String("(encrypted)".to_owned());
        }
        return Ok(Value::Object(doc));
    }
    let mut secrets = Vec::new();
    if let Some(Value::Object(outputs)) = doc.get_mut("outputs") {
        for output in outputs.values_mut() {
            let Value::Object(output) = output else {
                continue;
            };
            if output.get("sensitive") == Some(&Value::Bool(true)) {
                if let Some(value) = output.get_mut("value") {
                    redact(value, &mut secrets);
                }
            }
        }
    }
    if let Some(Value::Array(resources)) = doc.get_mut("resources") {
        for resource in resources {
            let Some(Value::Array(instances)) = resource.get_mut("instances") else {
                continue;
            };
            for instance in instances.iter_mut().filter_map(Value::as_object_mut) {
                redact_instance(instance, &mut secrets);
            }
        }
    }
    secrets.sort();
    secrets.dedup();
    secrets.retain(|s| !s.is_empty() && s != REDACTED);
    let mut doc = Value::Object(doc);
    if !secrets.is_empty() {
        scrub(&mut doc, &secrets);
    }
    Ok(doc)
}

fn redact_instance(instance: &mut Map<String, Value>, secrets: &mut Vec<String>) {
    if let Some(private) = instance.get_mut("private") {
        *private = Value::String(REDACTED.to_owned());
    }
    let paths = instance.get("sensitive_attributes").cloned();
    let key = if instance.contains_key("attributes") {
        "attributes"
    } else {
        "attributes_flat"
    };
    let Some(attributes) = instance.get_mut(key) else {
        return;
    };
    match paths {
        None | Some(Value::Null) => {}
        Some(Value::Array(paths)) => {
            for path in &paths {
                match path {
                    Value::Array(steps) => redact_path(attributes, steps, secrets),
                    _ => redact(attributes, secrets),
                }
            }
        }
        Some(_) => redact(attributes, secrets),
    }
}

/// One step of a `sensitive_attributes` path.
enum Step<'a> {
    Attr(&'a str),
    Index(usize),
    Key(&'a str),
    /// Anything else: a set element, a step type Ferry does not know.
    Unknown,
}

fn step(step: &Value) -> Step<'_> {
    let kind = step.get("type").and_then(Value::as_str);
    let value = step.get("value");
    match (kind, value) {
        (Some("get_attr"), Some(Value::String(name))) => Step::Attr(name),
        (Some("index"), Some(key)) => {
            // The key is cty JSON: {"value": 0, "type": "number"} or {"value": "k", "type": "string"}.
            match (key.get("type").and_then(Value::as_str), key.get("value")) {
                (Some("number"), Some(Value::Number(n))) => n
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .map_or(Step::Unknown, Step::Index),
                (Some("number"), Some(Value::String(n))) => {
                    n.parse().map_or(Step::Unknown, Step::Index)
                }
                (Some("string"), Some(Value::String(k))) => Step::Key(k),
                _ => Step::Unknown,
            }
        }
        _ => Step::Unknown,
    }
}

/// Follows `steps` from `node` and redacts what they reach; redacts `node` itself where the path
/// does not fit (be safe when unsure). A key that is simply absent holds nothing to hide.
fn redact_path(node: &mut Value, steps: &[Value], secrets: &mut Vec<String>) {
    let Some((first, rest)) = steps.split_first() else {
        return redact(node, secrets);
    };
    // Terraform writes dynamically typed values as {"value": …, "type": …}; paths skip it.
    let wrapped = is_type_wrapper(node);
    match (step(first), node) {
        (Step::Attr(key) | Step::Key(key), Value::Object(object)) if object.contains_key(key) => {
            redact_path(&mut object[key], rest, secrets)
        }
        (Step::Index(i), Value::Array(items)) => {
            if let Some(item) = items.get_mut(i) {
                redact_path(item, rest, secrets)
            }
        }
        (Step::Unknown, node) => redact(node, secrets),
        (_, Value::Object(object)) if wrapped => {
            if let Some(inner) = object.get_mut("value") {
                redact_path(inner, steps, secrets)
            }
        }
        (Step::Attr(_) | Step::Key(_), Value::Object(_)) => {}
        (_, Value::Null) => {}
        (_, node) => redact(node, secrets),
    }
}

fn is_type_wrapper(node: &Value) -> bool {
    node.as_object()
        .is_some_and(|o| o.len() == 2 && o.contains_key("value") && o.contains_key("type"))
}

/// Replaces `node` with [`REDACTED`], remembering the strings it held as known secrets. Of a
/// `{"value","type"}` wrapper only the value's strings count: type names are no secrets.
fn redact(node: &mut Value, secrets: &mut Vec<String>) {
    if is_type_wrapper(node) {
        collect_strings(&node["value"], secrets);
    } else {
        collect_strings(node, secrets);
    }
    *node = Value::String(REDACTED.to_owned());
}

fn collect_strings(node: &Value, out: &mut Vec<String>) {
    match node {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|item| collect_strings(item, out)),
        Value::Object(object) => object.values().for_each(|item| collect_strings(item, out)),
        _ => {}
    }
}

/// Redacts every string that is, or contains, a known secret.
fn scrub(node: &mut Value, secrets: &[String]) {
    match node {
        Value::String(s) => {
            let leaks = secrets.iter().any(|secret| {
                s == secret || (secret.len() >= MIN_EMBEDDED_SECRET && s.contains(secret.as_str()))
            });
            if leaks {
                *s = REDACTED.to_owned();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| scrub(item, secrets)),
        Value::Object(object) => object.values_mut().for_each(|item| scrub(item, secrets)),
        _ => {}
    }
}

fn object(body: &[u8]) -> Result<Map<String, Value>, StateError> {
    match serde_json::from_slice(body).map_err(|err| json_error("state", &err))? {
        Value::Object(object) => Ok(object),
        _ => Err(StateError::NotObject { what: "state" }),
    }
}

fn is_encrypted(doc: &Map<String, Value>) -> bool {
    matches!(doc.get("encryption_version"), Some(Value::String(v)) if !v.is_empty())
}

fn resource_list(doc: &Map<String, Value>) -> Result<&[Value], StateError> {
    match doc.get("resources") {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(resources)) => Ok(resources),
        Some(_) => Err(StateError::MalformedResources),
    }
}

/// A resource entry of state format 4.
struct Resource<'a> {
    address: String,
    kind: &'a str,
    instances: &'a [Value],
}

impl<'a> Resource<'a> {
    fn read(resource: &'a Value) -> Result<Resource<'a>, StateError> {
        let text = |key: &str| resource.get(key).and_then(Value::as_str);
        let (Some(kind), Some(name)) = (text("type"), text("name")) else {
            return Err(StateError::MalformedResources);
        };
        let mut address = String::new();
        if let Some(module) = text("module").filter(|m| !m.is_empty()) {
            address.push_str(module);
            address.push('.');
        }
        if text("mode") == Some("data") {
            address.push_str("data.");
        }
        address.push_str(kind);
        address.push('.');
        address.push_str(name);
        let instances = match resource.get("instances") {
            None | Some(Value::Null) => &[][..],
            Some(Value::Array(instances)) => instances,
            Some(_) => return Err(StateError::MalformedResources),
        };
        Ok(Resource {
            address,
            kind,
            instances,
        })
    }
}

/// Every instance's address, mapped to its attributes.
fn instances_by_address(doc: &Map<String, Value>) -> Result<BTreeMap<String, &Value>, StateError> {
    if is_encrypted(doc) {
        return Err(StateError::Encrypted);
    }
    let mut out = BTreeMap::new();
    for resource in resource_list(doc)? {
        let r = Resource::read(resource)?;
        for instance in r.instances {
            let mut address = r.address.clone();
            match instance.get("index_key") {
                None | Some(Value::Null) => {}
                Some(Value::String(key)) => {
                    address.push('[');
                    address.push_str(&Value::String(key.clone()).to_string());
                    address.push(']');
                }
                Some(key) => address.push_str(&format!("[{key}]")),
            }
            if let Some(deposed) = instance.get("deposed").and_then(Value::as_str) {
                address.push_str(&format!(" (deposed object {deposed})"));
            }
            let attributes = instance
                .get("attributes")
                .or_else(|| instance.get("attributes_flat"))
                .unwrap_or(&Value::Null);
            out.insert(address, attributes);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;

    const TF: &[u8] = include_bytes!("../test_data/terraform.tfstate");
    const TF_NEXT: &[u8] = include_bytes!("../test_data/terraform-next.tfstate");
    const TF_DESTROYED: &[u8] = include_bytes!("../test_data/terraform-destroyed.tfstate");
    const TOFU: &[u8] = include_bytes!("../test_data/tofu-encrypted.tfstate");

    /// Every sensitive value the fixture configuration (`test_data/config`) uses.
    const SECRETS: &[&str] = &[
        "hunter2-input-secret",
        "s3cr3t-nested-pw",
        "s3cr3t-nested-pw-v2",
        "tok-module-secret",
    ];

    fn summary(body: &[u8]) -> String {
        let rows: Vec<String> = resources(body)
            .unwrap()
            .iter()
            .map(|r| format!("{} ({}) x{}", r.address, r.kind, r.instances))
            .collect();
        rows.join("\n")
    }

    #[test]
    fn summarises_real_states() {
        expect![[r#"
            terraform_data.creds (terraform_data) x1
            terraform_data.db (terraform_data) x1
            terraform_data.tagged (terraform_data) x2
            terraform_data.web (terraform_data) x2
            module.app.terraform_data.secret (terraform_data) x1
            module.app.terraform_data.this (terraform_data) x1"#]]
        .assert_eq(&summary(TF));
        assert_eq!(summary(TF_DESTROYED), "");
        assert_eq!(summary(TOFU), "");
    }

    #[test]
    fn summary_addresses_data_sources_and_nested_modules() {
        let body = br#"{"serial":1,"lineage":"l","resources":[
            {"mode":"data","type":"aws_ami","name":"ubuntu","instances":[{"attributes":{}}]},
            {"module":"module.a[0].module.b[\"x\"]","mode":"managed","type":"null_resource","name":"n","instances":[]}
        ]}"#;
        expect![[r#"
            data.aws_ami.ubuntu (aws_ami) x1
            module.a[0].module.b["x"].null_resource.n (null_resource) x0"#]]
        .assert_eq(&summary(body));
    }

    #[test]
    fn malformed_resources_are_errors() {
        for body in [
            r#"{"resources":{}}"#,
            r#"{"resources":[{"name":"x"}]}"#,
            r#"{"resources":[{"type":"t","name":"x","instances":{}}]}"#,
        ] {
            assert_eq!(
                resources(body.as_bytes()),
                Err(StateError::MalformedResources),
                "{body}"
            );
        }
        assert_eq!(
            resources(b"[]"),
            Err(StateError::NotObject { what: "state" })
        );
        assert!(matches!(resources(b"{"), Err(StateError::NotJson { .. })));
    }

    #[test]
    fn diff_of_two_real_applies() {
        let d = diff(TF, TF_NEXT).unwrap();
        expect![[r#"
            StateDiff {
                added: [
                    "terraform_data.tagged[\"red\"]",
                ],
                removed: [
                    "terraform_data.web[1]",
                ],
                changed: [
                    "terraform_data.creds",
                ],
            }"#]]
        .assert_eq(&format!("{d:#?}"));
        let back = diff(TF_NEXT, TF).unwrap();
        assert_eq!(
            (back.added, back.removed, back.changed),
            (d.removed, d.added, d.changed)
        );
        assert_eq!(diff(TF, TF).unwrap(), StateDiff::default());
        let gone = diff(TF, TF_DESTROYED).unwrap();
        assert_eq!(gone.removed.len(), 8);
        assert!(gone.added.is_empty() && gone.changed.is_empty());
    }

    #[test]
    fn diff_refuses_encrypted_states() {
        assert_eq!(diff(TF, TOFU), Err(StateError::Encrypted));
        assert_eq!(diff(TOFU, TOFU), Err(StateError::Encrypted));
    }

    #[test]
    fn diff_addresses_deposed_objects() {
        let a =
            br#"{"resources":[{"type":"t","name":"n","instances":[{"attributes":{"id":"1"}}]}]}"#;
        let b = br#"{"resources":[{"type":"t","name":"n","instances":[{"attributes":{"id":"2"}},{"deposed":"00000001","attributes":{"id":"1"}}]}]}"#;
        let d = diff(a, b).unwrap();
        assert_eq!(d.added, ["t.n (deposed object 00000001)"]);
        assert_eq!(d.changed, ["t.n"]);
    }

    fn assert_no_secret(rendered: &str) {
        for secret in SECRETS {
            assert!(!rendered.contains(secret), "{secret} leaked:\n{rendered}");
        }
    }

    #[test]
    fn redaction_of_real_states_hides_every_secret() {
        for body in [TF, TF_NEXT, TF_DESTROYED] {
            let original = std::str::from_utf8(body).unwrap();
            let rendered = serde_json::to_string_pretty(&redacted(body).unwrap()).unwrap();
            assert_no_secret(&rendered);
            // What is not sensitive is still shown.
            for visible in [
                "web-0",
                "\"admin\"",
                "app-one",
                "443",
                "f2e2ea60-e677-9d44-7e60-4792a93bb7d4",
            ] {
                assert_eq!(
                    rendered.contains(visible),
                    original.contains(visible),
                    "{visible}"
                );
            }
        }
    }

    #[test]
    fn redaction_of_a_real_state_in_detail() {
        let doc = redacted(TF).unwrap();
        let creds = &doc["resources"][0]["instances"][0]["attributes"];
        expect![[r#"
            {
              "id": "18561970-2c11-4682-c5f9-498602756a08",
              "input": {
                "type": [
                  "object",
                  {
                    "password": "string",
                    "ports": [
                      "tuple",
                      [
                        "number",
                        "number"
                      ]
                    ],
                    "user": "string"
                  }
                ],
                "value": {
                  "password": "(sensitive)",
                  "ports": [
                    80,
                    443
                  ],
                  "user": "admin"
                }
              },
              "output": {
                "type": [
                  "object",
                  {
                    "password": "string",
                    "ports": [
                      "tuple",
                      [
                        "number",
                        "number"
                      ]
                    ],
                    "user": "string"
                  }
                ],
                "value": {
                  "password": "(sensitive)",
                  "ports": [
                    80,
                    443
                  ],
                  "user": "admin"
                }
              },
              "triggers_replace": null
            }"#]]
        .assert_eq(&serde_json::to_string_pretty(creds).unwrap());
        expect![[r#"
            {
              "db_password": {
                "sensitive": true,
                "type": "string",
                "value": "(sensitive)"
              },
              "web_ids": {
                "type": [
                  "tuple",
                  [
                    "string",
                    "string"
                  ]
                ],
                "value": [
                  "834632e7-50ec-44b4-5120-5704a9d23ddc",
                  "92e5b3e0-c064-119d-0cdb-5bf1a08fd144"
                ]
              }
            }"#]]
        .assert_eq(&serde_json::to_string_pretty(&doc["outputs"]).unwrap());
    }

    #[test]
    fn redaction_follows_nested_paths_and_is_safe_when_unsure() {
        let attr = |name: &str| format!(r#"{{"type":"get_attr","value":"{name}"}}"#);
        let num = |i: u64| format!(r#"{{"type":"index","value":{{"value":{i},"type":"number"}}}}"#);
        let key =
            |k: &str| format!(r#"{{"type":"index","value":{{"value":"{k}","type":"string"}}}}"#);
        let paths = [
            format!("[{},{},{}]", attr("list"), num(1), attr("pw")),
            format!("[{},{}]", attr("tags"), key("token")),
            format!(
                "[{},{}]",
                attr("set"),
                r#"{"type":"index","value":{"value":{"a":"set-secret"},"type":["object",{"a":"string"}]}}"#
            ),
            format!("[{},{}]", attr("weird"), r#"{"type":"teleport","value":1}"#),
            format!("[{},{}]", attr("scalar"), attr("deeper")),
            format!("[{}]", attr("absent")),
            format!("[{},{}]", attr("list"), num(9)),
        ];
        let body = format!(
            r#"{{"serial":1,"lineage":"l","resources":[
              {{"type":"t","name":"a","instances":[{{
                "private":"eyJzZWNyZXQiOiJ4In0=",
                "attributes":{{
                  "list":[{{"pw":"keep-me-1"}},{{"pw":"list-secret","user":"u"}}],
                  "tags":{{"token":"tag-secret","env":"prod"}},
                  "set":[{{"a":"set-secret"}},{{"a":"other"}}],
                  "weird":{{"x":"weird-secret"}},
                  "scalar":"scalar-secret",
                  "echo":"prefix-tag-secret-suffix",
                  "short":"x"
                }},
                "sensitive_attributes":[{paths}]
              }}]}},
              {{"type":"t","name":"b","instances":[
                {{"attributes":{{"a":"b-secret","b":"visible"}},"sensitive_attributes":"??"}},
                {{"attributes":{{"a":"c-secret"}},"sensitive_attributes":["not a path"]}}
              ]}}
            ]}}"#,
            paths = paths.join(",")
        );
        let rendered = serde_json::to_string_pretty(&redacted(body.as_bytes()).unwrap()).unwrap();
        expect![[r#"
            {
              "lineage": "l",
              "resources": [
                {
                  "instances": [
                    {
                      "attributes": {
                        "echo": "(sensitive)",
                        "list": [
                          {
                            "pw": "keep-me-1"
                          },
                          {
                            "pw": "(sensitive)",
                            "user": "u"
                          }
                        ],
                        "scalar": "(sensitive)",
                        "set": "(sensitive)",
                        "short": "x",
                        "tags": {
                          "env": "prod",
                          "token": "(sensitive)"
                        },
                        "weird": "(sensitive)"
                      },
                      "private": "(sensitive)",
                      "sensitive_attributes": [
                        [
                          {
                            "type": "get_attr",
                            "value": "list"
                          },
                          {
                            "type": "index",
                            "value": {
                              "type": "number",
                              "value": 1
                            }
                          },
                          {
                            "type": "get_attr",
                            "value": "pw"
                          }
                        ],
                        [
                          {
                            "type": "get_attr",
                            "value": "tags"
                          },
                          {
                            "type": "index",
                            "value": {
                              "type": "string",
                              "value": "token"
                            }
                          }
                        ],
                        [
                          {
                            "type": "get_attr",
                            "value": "set"
                          },
                          {
                            "type": "index",
                            "value": {
                              "type": [
                                "object",
                                {
                                  "a": "string"
                                }
                              ],
                              "value": {
                                "a": "(sensitive)"
                              }
                            }
                          }
                        ],
                        [
                          {
                            "type": "get_attr",
                            "value": "weird"
                          },
                          {
                            "type": "teleport",
                            "value": 1
                          }
                        ],
                        [
                          {
                            "type": "get_attr",
                            "value": "scalar"
                          },
                          {
                            "type": "get_attr",
                            "value": "deeper"
                          }
                        ],
                        [
                          {
                            "type": "get_attr",
                            "value": "absent"
                          }
                        ],
                        [
                          {
                            "type": "get_attr",
                            "value": "list"
                          },
                          {
                            "type": "index",
                            "value": {
                              "type": "number",
                              "value": 9
                            }
                          }
                        ]
                      ]
                    }
                  ],
                  "name": "a",
                  "type": "t"
                },
                {
                  "instances": [
                    {
                      "attributes": "(sensitive)",
                      "sensitive_attributes": "??"
                    },
                    {
                      "attributes": "(sensitive)",
                      "sensitive_attributes": [
                        "not a path"
                      ]
                    }
                  ],
                  "name": "b",
                  "type": "t"
                }
              ],
              "serial": 1
            }"#]]
        .assert_eq(&rendered);
        for secret in [
            "list-secret",
            "tag-secret",
            "set-secret",
            "weird-secret",
            "scalar-secret",
            "b-secret",
            "c-secret",
        ] {
            assert!(!rendered.contains(secret), "{secret} leaked");
        }
    }

    #[test]
    fn redaction_of_the_encrypted_envelope_hides_the_ciphertext() {
        let doc = redacted(TOFU).unwrap();
        assert_eq!(doc["encrypted_data"], "(encrypted)");
        assert_eq!(doc["serial"], 7);
        assert_eq!(doc["encryption_version"], "v0");
    }
}
