//! Custom policies in Rego, evaluated with the `regorus` interpreter.
//!
//! Policies are `*.rego` files (Rego v1 syntax, OPA 1.0). Every package named `ferry` or
//! `ferry.*` is a policy: its `deny` and `warn` collections become findings of the same shape
//! as the built-in pack's (see `docs/policy.md`). Files come as `(path, text)` pairs because
//! the engine reads them from the deploy branch's git tree, not from a checkout of the commit
//! under review; [`read_policy_dir`] reads a directory for the CLI.
//!
//! A policy is code someone else wrote, so evaluation is bounded: regorus's cooperative
//! execution timer stops a slow policy after the time limit (one budget for the whole
//! evaluation, not per rule), and recursive functions, which regorus would follow until the
//! stack overflows and the process aborts, are refused when the policies are loaded, like
//! OPA's `rego_recursion_error`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::num::NonZeroU32;
use std::path::Path;
use std::time::{Duration, Instant};

use regorus::utils::limits::ExecutionTimerConfig;
use serde::Serialize;
use serde_json::Value;

use crate::{Context, Finding, PlanInput, PolicyError, Severity, PLAN_ADDRESS};

/// Time budget of one evaluation of all policies, unless the caller sets another.
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(5);

/// The documented input: `{"plan": <terraform show -json>, "context": {...}}`.
pub fn input_document(plan: &PlanInput, ctx: &Context) -> Value {
    serde_json::json!({ "plan": plan.raw(), "context": ctx })
}

/// A loaded, checked set of Rego policies.
#[derive(Debug, Clone)]
pub struct PolicySet {
    engine: regorus::Engine,
    files: Vec<String>,
    /// Packages that are policies (`ferry`, `ferry.*`), without the `data.` prefix.
    packages: Vec<String>,
    /// Test rules: (package, rule name, file, line).
    tests: Vec<(String, String, String, usize)>,
    rule_ids: BTreeSet<String>,
    time_limit: Duration,
}

impl PolicySet {
    /// Parses and checks the given files. Errors name the file, line and column.
    pub fn from_sources(files: &[(String, String)]) -> Result<PolicySet, PolicyError> {
        PolicySet::with_time_limit(files, DEFAULT_TIME_LIMIT)
    }

    pub fn with_time_limit(
        files: &[(String, String)],
        time_limit: Duration,
    ) -> Result<PolicySet, PolicyError> {
        let mut engine = regorus::Engine::new();
        for (path, text) in files {
            engine
                .add_policy(path.clone(), text.clone())
                .map_err(|e| syntax_error(path, &format!("{e:#}")))?;
        }
        let ast: Value =
            serde_json::from_str(&engine.get_ast_as_json().map_err(|e| PolicyError::Rego {
                message: format!("{e:#}"),
            })?)
            .map_err(|e| PolicyError::Rego {
                message: e.to_string(),
            })?;
        let modules = ast.as_array().cloned().unwrap_or_default();
        check_recursion(&modules)?;
        let mut packages = BTreeSet::new();
        let mut tests = Vec::new();
        for module in &modules {
            let file = get_str(module, &["source", "file"]).to_string();
            let package = flatten_ref(&module["ast"]["package"]["refr"]).join(".");
            if package == "ferry" || package.starts_with("ferry.") {
                packages.insert(package.clone());
            }
            for rule in module["ast"]["rules"].as_array().into_iter().flatten() {
                let Some((name, line)) = rule_head_name(rule) else {
                    continue;
                };
                if name.starts_with("test_") {
                    let key = (package.clone(), name, file.clone(), line);
                    if !tests
                        .iter()
                        .any(|t: &(String, String, String, usize)| t.0 == key.0 && t.1 == key.1)
                    {
                        tests.push(key);
                    }
                }
            }
        }
        let mut set = PolicySet {
            engine,
            files: files.iter().map(|(p, _)| p.clone()).collect(),
            packages: packages.into_iter().collect(),
            tests,
            rule_ids: BTreeSet::new(),
            time_limit,
        };
        set.rule_ids = set.collect_rule_ids()?;
        Ok(set)
    }

    /// Reads every `*.rego` under `dir` and loads it.
    pub fn load_dir(dir: &Path) -> Result<PolicySet, PolicyError> {
        PolicySet::from_sources(&read_policy_dir(dir)?)
    }

    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// The policy packages (`ferry`, `ferry.*`).
    pub fn packages(&self) -> &[String] {
        &self.packages
    }

    /// Rule ids these policies can emit: each policy package's own name (the id of findings
    /// that name no rule) and the keys of each package's `rules` metadata object.
    pub fn rule_ids(&self) -> &BTreeSet<String> {
        &self.rule_ids
    }

    pub fn time_limit(&self) -> Duration {
        self.time_limit
    }

    fn collect_rule_ids(&self) -> Result<BTreeSet<String>, PolicyError> {
        let mut engine = self.engine.clone();
        let deadline = Instant::now() + self.time_limit;
        let mut ids = BTreeSet::new();
        for package in &self.packages {
            ids.insert(package.clone());
            let rules = query(
                &mut engine,
                &format!("data.{package}.rules"),
                deadline,
                self,
            )?;
            if let Some(Value::Object(map)) = rules {
                ids.extend(map.keys().cloned());
            }
        }
        Ok(ids)
    }

    /// Evaluates every policy package against the plan. A policy's `deny` entries default to
    /// severity `high`, `warn` entries to `low`.
    pub fn evaluate(&self, plan: &PlanInput, ctx: &Context) -> Result<Vec<Finding>, PolicyError> {
        let mut engine = self.engine.clone();
        engine.set_input(regorus::Value::from(input_document(plan, ctx)));
        let deadline = Instant::now() + self.time_limit;
        let mut findings = Vec::new();
        for package in &self.packages {
            for (collection, default) in [("deny", Severity::High), ("warn", Severity::Low)] {
                let Some(value) = query(
                    &mut engine,
                    &format!("data.{package}.{collection}"),
                    deadline,
                    self,
                )?
                else {
                    continue;
                };
                let items = match value {
                    Value::Array(items) => items,
                    other => {
                        return Err(PolicyError::BadPolicyOutput {
                            package: package.clone(),
                            message: format!(
                                "`{collection}` must be a set or array, found {}",
                                json_kind(&other)
                            ),
                        })
                    }
                };
                for item in items {
                    findings.push(finding_from(package, collection, default, item)?);
                }
            }
        }
        findings.sort_by(|a, b| (&a.address, &a.rule).cmp(&(&b.address, &b.rule)));
        Ok(findings)
    }

    /// Runs every rule named `test_*` (see `ferry policy test`). Each test gets a fresh
    /// engine, so one failing test does not affect another; the time limit applies to each.
    pub fn run_tests(&self) -> TestReport {
        let mut results = Vec::new();
        for (package, name, file, line) in &self.tests {
            let mut engine = self.engine.clone();
            let started = Instant::now();
            let deadline = started + self.time_limit;
            let outcome = match query(
                &mut engine,
                &format!("data.{package}.{name}"),
                deadline,
                self,
            ) {
                Ok(Some(Value::Bool(true))) => TestOutcome::Pass,
                Ok(Some(other)) => TestOutcome::Fail {
                    reason: format!("evaluated to {}", json_kind(&other)),
                },
                Ok(None) => TestOutcome::Fail {
                    reason: "undefined".to_string(),
                },
                Err(e) => TestOutcome::Error {
                    message: e.to_string(),
                },
            };
            results.push(TestResult {
                package: package.clone(),
                name: name.clone(),
                file: file.clone(),
                line: *line,
                outcome,
                duration_ms: started.elapsed().as_secs_f64() * 1000.0,
            });
        }
        TestReport { results }
    }
}

/// Loads the files and runs their tests (`ferry policy test`).
pub fn run_rego_tests(files: &[(String, String)]) -> Result<TestReport, PolicyError> {
    Ok(PolicySet::from_sources(files)?.run_tests())
}

/// The outcome of one Rego test rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum TestOutcome {
    Pass,
    Fail { reason: String },
    Error { message: String },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestResult {
    pub package: String,
    pub name: String,
    pub file: String,
    pub line: usize,
    #[serde(flatten)]
    pub outcome: TestOutcome,
    pub duration_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestReport {
    pub results: Vec<TestResult>,
}

impl TestReport {
    pub fn passed(&self) -> usize {
        self.results
            .iter()
            .filter(|r| r.outcome == TestOutcome::Pass)
            .count()
    }

    pub fn failed(&self) -> usize {
        self.results.len() - self.passed()
    }

    /// True when there was at least one test and none failed.
    pub fn ok(&self) -> bool {
        !self.results.is_empty() && self.failed() == 0
    }
}

/// Every `*.rego` under `dir` (recursively, sorted), as (path relative to `dir`, text).
pub fn read_policy_dir(dir: &Path) -> Result<Vec<(String, String)>, PolicyError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| PolicyError::Io {
            path: d.display().to_string(),
            message: e.to_string(),
        })?;
        for entry in entries {
            let entry = entry.map_err(|e| PolicyError::Io {
                path: d.display().to_string(),
                message: e.to_string(),
            })?;
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rego") {
                let text = std::fs::read_to_string(&path).map_err(|e| PolicyError::Io {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?;
                let rel = path.strip_prefix(dir).unwrap_or(&path);
                out.push((rel.display().to_string(), text));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The changed paths that lie in the policy directory (`policy/` by default). A change that
/// edits the policies that judge it is itself worth a finding; see [`policy_change_finding`].
pub fn touches_policy<'a>(changed_paths: &[&'a str], policy_dir: &str) -> Vec<&'a str> {
    let dir = policy_dir.trim_start_matches("./").trim_end_matches('/');
    changed_paths
        .iter()
        .copied()
        .filter(|p| {
            let p = p.trim_start_matches("./");
            dir.is_empty() || dir == "." || p == dir || p.starts_with(&format!("{dir}/"))
        })
        .collect()
}

/// The rule id of [`policy_change_finding`].
pub const POLICY_CHANGE_RULE: &str = "FERRY-POLICY-001";

/// A finding saying the change edits policy files; `None` when it touches none.
pub fn policy_change_finding(changed_paths: &[&str], policy_dir: &str) -> Option<Finding> {
    let touched = touches_policy(changed_paths, policy_dir);
    if touched.is_empty() {
        return None;
    }
    Some(Finding {
        rule: POLICY_CHANGE_RULE.to_string(),
        severity: Severity::High,
        address: PLAN_ADDRESS.to_string(),
        message: format!(
            "this change edits policy files ({}); it is judged by the policies of the deploy branch, not by its own",
            touched.join(", ")
        ),
        remediation: "have the policy change reviewed on its own before relying on it".to_string(),
    })
}

fn query(
    engine: &mut regorus::Engine,
    q: &str,
    deadline: Instant,
    set: &PolicySet,
) -> Result<Option<Value>, PolicyError> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return Err(PolicyError::TimeLimit {
            limit: set.time_limit,
        });
    }
    engine.set_execution_timer_config(ExecutionTimerConfig {
        limit: remaining,
        check_interval: NonZeroU32::new(32).expect("non-zero"),
    });
    let results = engine.eval_query(q.to_string(), false).map_err(|e| {
        let limited = e
            .chain()
            .any(|c| c.downcast_ref::<regorus::LimitError>().is_some())
            || format!("{e:#}").contains("exceeded time limit");
        if limited {
            PolicyError::TimeLimit {
                limit: set.time_limit,
            }
        } else {
            PolicyError::Rego {
                message: format!("{e:#}").trim().to_string(),
            }
        }
    })?;
    let Some(value) = results
        .result
        .first()
        .and_then(|r| r.expressions.first())
        .map(|e| &e.value)
    else {
        return Ok(None);
    };
    if *value == regorus::Value::Undefined {
        return Ok(None);
    }
    let json = value.to_json_str().map_err(|e| PolicyError::Rego {
        message: format!("{e:#}"),
    })?;
    serde_json::from_str(&json)
        .map(Some)
        .map_err(|e| PolicyError::Rego {
            message: e.to_string(),
        })
}

fn finding_from(
    package: &str,
    collection: &str,
    default: Severity,
    item: Value,
) -> Result<Finding, PolicyError> {
    let bad = |message: String| PolicyError::BadPolicyOutput {
        package: package.to_string(),
        message,
    };
    match item {
        Value::String(message) => Ok(Finding {
            rule: package.to_string(),
            severity: default,
            address: PLAN_ADDRESS.to_string(),
            message,
            remediation: String::new(),
        }),
        Value::Object(map) => {
            let text = |k: &str| -> Result<Option<String>, PolicyError> {
                match map.get(k) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s.clone())),
                    Some(other) => Err(bad(format!(
                        "`{collection}` entry field `{k}` must be a string, found {}",
                        json_kind(other)
                    ))),
                }
            };
            for key in map.keys() {
                if !["rule", "severity", "address", "message", "remediation"]
                    .contains(&key.as_str())
                {
                    return Err(bad(format!(
                        "`{collection}` entry has unknown field `{key}`"
                    )));
                }
            }
            let severity = match text("severity")? {
                Some(s) => s.parse::<Severity>().map_err(|e| bad(e.to_string()))?,
                None => default,
            };
            let message = text("message")?
                .ok_or_else(|| bad(format!("`{collection}` entry has no `message`")))?;
            Ok(Finding {
                rule: text("rule")?.unwrap_or_else(|| package.to_string()),
                severity,
                address: text("address")?
                    .filter(|a| !a.is_empty())
                    .unwrap_or_else(|| PLAN_ADDRESS.to_string()),
                message,
                remediation: text("remediation")?.unwrap_or_default(),
            })
        }
        other => Err(bad(format!(
            "`{collection}` entries must be strings or objects, found {}",
            json_kind(&other)
        ))),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// regorus reports `--> path:line:col` followed by the source line and `error: message`.
fn syntax_error(path: &str, rendered: &str) -> PolicyError {
    let mut line = 0;
    let mut column = 0;
    for l in rendered.lines() {
        if let Some(loc) = l.trim().strip_prefix("--> ") {
            let mut parts = loc.rsplitn(3, ':');
            column = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
            line = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
        }
    }
    let message = rendered
        .lines()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .unwrap_or_else(|| rendered.trim())
        .to_string();
    PolicyError::RegoSyntax {
        path: path.to_string(),
        line,
        column,
        message,
    }
}

fn get_str<'v>(v: &'v Value, path: &[&str]) -> &'v str {
    crate::plan::get(v, path)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// `Var a` / `RefDot{refr, field}` chains → ["a", "b", …]. Empty when not a plain reference.
fn flatten_ref(expr: &Value) -> Vec<String> {
    if let Some(var) = expr.get("Var") {
        return vec![var["value"].as_str().unwrap_or_default().to_string()];
    }
    if let Some(dot) = expr.get("RefDot") {
        let mut head = flatten_ref(&dot["refr"]);
        if head.is_empty() {
            return head;
        }
        if let Some(field) = dot["field"].get(1).and_then(Value::as_str) {
            head.push(field.to_string());
        }
        return head;
    }
    if let Some(brack) = expr.get("RefBrack") {
        let mut head = flatten_ref(&brack["refr"]);
        if let Some(s) = brack["index"]
            .get("String")
            .and_then(|s| s["value"].as_str())
        {
            head.push(s.to_string());
            return head;
        }
        return Vec::new();
    }
    Vec::new()
}

fn rule_head(rule: &Value) -> Option<(&str, &Value)> {
    let head = rule.get("Spec")?.get("head")?;
    let (kind, body) = head.as_object()?.iter().next()?;
    Some((kind.as_str(), body))
}

/// The name and line of a rule's head (`deny`, `test_x`, `f`).
fn rule_head_name(rule: &Value) -> Option<(String, usize)> {
    let (_, head) = rule_head(rule)?;
    let name = flatten_ref(&head["refr"]).join(".");
    let line = head["span"]["line"].as_u64().unwrap_or(0) as usize;
    (!name.is_empty()).then_some((name, line))
}

/// Refuses function definitions that call themselves, directly or through other functions.
fn check_recursion(modules: &[Value]) -> Result<(), PolicyError> {
    // Function full name (package.fn) → (file, line, called function names).
    let mut functions: BTreeMap<String, (String, usize, Vec<String>)> = BTreeMap::new();
    for module in modules {
        let file = get_str(module, &["source", "file"]).to_string();
        let package = flatten_ref(&module["ast"]["package"]["refr"]).join(".");
        let mut aliases: HashMap<String, String> = HashMap::new();
        for import in module["ast"]["imports"].as_array().into_iter().flatten() {
            let path = flatten_ref(&import["refr"]);
            if path.first().map(String::as_str) == Some("data") && path.len() > 1 {
                let alias = path.last().cloned().unwrap_or_default();
                aliases.insert(alias, path[1..].join("."));
            }
        }
        for rule in module["ast"]["rules"].as_array().into_iter().flatten() {
            let Some(("Func", head)) = rule_head(rule) else {
                continue;
            };
            let name = format!("{package}.{}", flatten_ref(&head["refr"]).join("."));
            let line = head["span"]["line"].as_u64().unwrap_or(0) as usize;
            let mut calls = Vec::new();
            collect_calls(rule, &package, &aliases, &mut calls);
            let entry = functions
                .entry(name)
                .or_insert_with(|| (file.clone(), line, Vec::new()));
            entry.2.extend(calls);
        }
    }
    // Depth-first search for a cycle; states: 1 = on the stack, 2 = done.
    let mut state: HashMap<&str, u8> = HashMap::new();
    for start in functions.keys() {
        let mut stack: Vec<(&str, usize)> = vec![(start.as_str(), 0)];
        if state.get(start.as_str()).copied().unwrap_or(0) == 2 {
            continue;
        }
        state.insert(start, 1);
        while let Some((node, next)) = stack.pop() {
            let calls = &functions[node].2;
            if next < calls.len() {
                stack.push((node, next + 1));
                let callee = calls[next].as_str();
                let Some((callee_key, _)) = functions.get_key_value(callee) else {
                    continue;
                };
                match state.get(callee).copied().unwrap_or(0) {
                    1 => {
                        let (file, line, _) = &functions[callee];
                        return Err(PolicyError::RegoRecursion {
                            path: file.clone(),
                            line: *line,
                            function: callee.to_string(),
                        });
                    }
                    0 => {
                        state.insert(callee_key.as_str(), 1);
                        stack.push((callee_key.as_str(), 0));
                    }
                    _ => {}
                }
            } else {
                state.insert(node, 2);
            }
        }
    }
    Ok(())
}

fn collect_calls(
    v: &Value,
    package: &str,
    aliases: &HashMap<String, String>,
    out: &mut Vec<String>,
) {
    match v {
        Value::Object(map) => {
            if let Some(call) = map.get("Call") {
                let path = flatten_ref(&call["fcn"]);
                let name = match path.first().map(String::as_str) {
                    Some("data") => path[1..].join("."),
                    Some(first) if path.len() > 1 && aliases.contains_key(first) => {
                        format!("{}.{}", aliases[first], path[1..].join("."))
                    }
                    Some(_) => format!("{package}.{}", path.join(".")),
                    None => String::new(),
                };
                if !name.is_empty() {
                    out.push(name);
                }
            }
            for value in map.values() {
                collect_calls(value, package, aliases, out);
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|i| collect_calls(i, package, aliases, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect()
    }

    fn plan() -> PlanInput {
        PlanInput::parse(
            br#"{"format_version":"1.2","terraform_version":"1.11.0","resource_changes":[
              {"address":"aws_s3_bucket.b","mode":"managed","type":"aws_s3_bucket","name":"b",
               "change":{"actions":["create"],"before":null,"after":{"bucket":"x","tags":{}},"after_unknown":{"id":true}}}]}"#,
        )
        .unwrap()
    }

    const POLICY: &str = r#"package ferry.buckets

rules := {"ACME-S3-001": {"severity": "high", "title": "bucket names start with acme-"}}

deny contains f if {
    some rc in input.plan.resource_changes
    rc.type == "aws_s3_bucket"
    not startswith(rc.change.after.bucket, "acme-")
    f := {"rule": "ACME-S3-001", "address": rc.address, "severity": "medium",
          "message": sprintf("bucket %s is not named acme-*", [rc.change.after.bucket])}
}

warn contains "prod deploys are watched" if input.context.environment == "prod"
"#;

    #[test]
    fn deny_and_warn_become_findings() {
        let set = PolicySet::from_sources(&files(&[("policy/buckets.rego", POLICY)])).unwrap();
        assert_eq!(set.packages(), ["ferry.buckets"]);
        assert_eq!(
            set.rule_ids().iter().collect::<Vec<_>>(),
            ["ACME-S3-001", "ferry.buckets"]
        );
        let ctx = Context {
            environment: "prod".into(),
            ..Context::default()
        };
        let findings = set.evaluate(&plan(), &ctx).unwrap();
        assert_eq!(findings.len(), 2, "{findings:?}");
        assert_eq!(findings[0].rule, "ferry.buckets");
        assert_eq!(findings[0].severity, Severity::Low);
        assert_eq!(findings[0].address, PLAN_ADDRESS);
        assert_eq!(findings[1].rule, "ACME-S3-001");
        assert_eq!(findings[1].address, "aws_s3_bucket.b");
        assert_eq!(findings[1].severity, Severity::Medium);
        assert_eq!(findings[1].message, "bucket x is not named acme-*");
        let dev = Context {
            environment: "dev".into(),
            ..Context::default()
        };
        assert_eq!(set.evaluate(&plan(), &dev).unwrap().len(), 1);
    }

    #[test]
    fn syntax_error_names_file_line_and_column() {
        let err = PolicySet::from_sources(&files(&[
            ("policy/ok.rego", "package ferry.ok\n"),
            (
                "policy/bad.rego",
                "package ferry.bad\n\ndeny contains msg if {\n  msg := \n}\n",
            ),
        ]))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "policy/bad.rego:4:7: expecting `}` while parsing set"
        );
    }

    #[test]
    fn slow_policy_hits_the_time_limit() {
        let slow = "package ferry.slow\n\nn := count([x | some a in numbers.range(1, 5000); some b in numbers.range(1, 5000); x := a * b])\n\ndeny contains \"slow\" if n > 0\n";
        let set =
            PolicySet::with_time_limit(&files(&[("slow.rego", slow)]), Duration::from_millis(200))
                .unwrap();
        let started = Instant::now();
        let err = set.evaluate(&plan(), &Context::default()).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(
            err.to_string(),
            "policy evaluation exceeded its time limit of 200ms"
        );
    }

    #[test]
    fn recursive_functions_are_refused_at_load() {
        let looping = "package ferry.loop\n\nimport data.ferry.lib\n\nf(x) := y if { y := lib.g(x) }\n\ndeny contains \"x\" if f(1)\n";
        let lib = "package ferry.lib\n\ng(x) := data.ferry.loop.f(x)\n";
        let err = PolicySet::from_sources(&files(&[("loop.rego", looping), ("lib.rego", lib)]))
            .unwrap_err();
        assert!(
            err.to_string().contains("recursion") && err.to_string().contains(".rego:"),
            "{err}"
        );
        let direct = "package ferry.d\n\nf(x) := f(x)\n";
        let err = PolicySet::from_sources(&files(&[("d.rego", direct)])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "d.rego:3: function `ferry.d.f` calls itself (recursion is not allowed in Rego)"
        );
        // Rules that depend on themselves load, and fail cleanly at evaluation.
        let cycle = "package ferry.cycle\n\na if b\n\nb if a\n\ndeny contains \"x\" if a\n";
        let err = PolicySet::from_sources(&files(&[("cycle.rego", cycle)]))
            .unwrap()
            .evaluate(&plan(), &Context::default())
            .unwrap_err();
        assert!(err.to_string().contains("recursion detected"), "{err}");
        // Non-recursive calls across packages load fine.
        let fine = "package ferry.fine\n\nimport data.ferry.lib2\n\nf(x) := lib2.g(x) + 1\n";
        let lib2 = "package ferry.lib2\n\ng(x) := x * 2\n";
        PolicySet::from_sources(&files(&[("fine.rego", fine), ("lib2.rego", lib2)])).unwrap();
    }

    #[test]
    fn rego_tests_run() {
        let tests = r#"package ferry.buckets_test

import data.ferry.buckets

test_named_bucket_passes if {
    count(buckets.deny) == 0 with input as {"plan": {"resource_changes": [{"type": "aws_s3_bucket", "address": "a", "change": {"after": {"bucket": "acme-x"}}}]}, "context": {}}
}

test_wrong_expectation if {
    count(buckets.deny) == 5 with input as {"plan": {"resource_changes": []}, "context": {}}
}
"#;
        let report = run_rego_tests(&files(&[
            ("buckets.rego", POLICY),
            ("buckets_test.rego", tests),
        ]))
        .unwrap();
        assert_eq!(report.results.len(), 2);
        assert_eq!(report.passed(), 1);
        assert_eq!(report.results[0].name, "test_named_bucket_passes");
        assert_eq!(report.results[0].line, 5);
        assert_eq!(
            report.results[1].outcome,
            TestOutcome::Fail {
                reason: "undefined".into()
            }
        );
        assert!(!report.ok());
    }

    #[test]
    fn bad_output_shape_is_an_error() {
        let p = "package ferry.bad\n\ndeny contains {\"msg\": \"x\"} if true\n";
        let err = PolicySet::from_sources(&files(&[("b.rego", p)]))
            .unwrap()
            .evaluate(&plan(), &Context::default())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "policy package ferry.bad: `deny` entry has unknown field `msg`"
        );
    }

    #[test]
    fn policy_changes_are_flagged() {
        let changed = [
            "main.tf",
            "policy/s3.rego",
            "policyx/a",
            "./policy/t/x.rego",
        ];
        assert_eq!(
            touches_policy(&changed, "policy/"),
            ["policy/s3.rego", "./policy/t/x.rego"]
        );
        assert!(policy_change_finding(&["main.tf"], "policy").is_none());
        let f = policy_change_finding(&changed, "policy").unwrap();
        assert_eq!(f.rule, POLICY_CHANGE_RULE);
    }
}
