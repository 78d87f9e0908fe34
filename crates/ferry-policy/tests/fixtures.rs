//! Every built-in rule against its hand-written plan fixtures
//! (`test_data/rules/<RULE>/{fail,pass}.json`, laid out by `test_data/fixtures.py`).
//!
//! `case.json` says which addresses the rule must report on the failing plan, in which
//! context and configuration, and which secret values must never appear in a message. The
//! passing plan must draw no finding from that rule. A rule without a fixture directory (or a
//! directory without a rule) fails the test.

use std::collections::BTreeSet;
use std::path::Path;

use ferry_policy::{builtin, Config, Context, PlanInput, Severity};
use serde_json::Value;

fn load(path: &Path) -> PlanInput {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    PlanInput::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_rule_has_fixtures_and_they_hold() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/rules");
    let dirs: BTreeSet<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let ids: BTreeSet<String> = builtin::rules().map(|r| r.id.to_string()).collect();
    assert_eq!(dirs, ids, "fixture directories and rule ids differ");

    let mut failures = Vec::new();
    for id in &ids {
        let dir = root.join(id);
        let case: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap();
        let ctx: Context = serde_json::from_value(case["context"].clone()).unwrap();
        let config: Config = serde_json::from_value(case["config"].clone()).unwrap();
        let expect: Vec<String> = serde_json::from_value(case["expect"].clone()).unwrap();
        assert!(
            !expect.is_empty(),
            "{id}: a failing fixture must expect findings"
        );

        let findings = builtin::evaluate(&load(&dir.join("fail.json")), &ctx, &config);
        let mut got: Vec<String> = findings
            .iter()
            .filter(|f| f.rule == *id)
            .map(|f| f.address.clone())
            .collect();
        got.sort();
        if got != expect {
            failures.push(format!("{id} fail.json: expected {expect:?}, got {got:?}"));
        }
        if let Some(sev) = case["severity"].as_str() {
            let sev: Severity = sev.parse().unwrap();
            for f in findings.iter().filter(|f| f.rule == *id) {
                if f.severity != sev {
                    failures.push(format!("{id}: severity {} instead of {sev}", f.severity));
                }
            }
        }
        for secret in case["secrets_never_in_messages"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let secret = secret.as_str().unwrap();
            for f in &findings {
                if f.message.contains(secret) || f.remediation.contains(secret) {
                    failures.push(format!("{id}: a message shows a secret value: {f:?}"));
                }
            }
        }

        let passing = builtin::evaluate(&load(&dir.join("pass.json")), &ctx, &config);
        let wrong: Vec<String> = passing
            .iter()
            .filter(|f| f.rule == *id)
            .map(|f| format!("{} ({})", f.address, f.message))
            .collect();
        if !wrong.is_empty() {
            failures.push(format!("{id} pass.json: unexpected findings {wrong:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn change_safety_is_milder_outside_protected_environments() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/rules/FERRY-CHG-001");
    let plan = load(&root.join("fail.json"));
    let dev = Context {
        environment: "dev".into(),
        ..Context::default()
    };
    let findings = builtin::evaluate(&plan, &dev, &Config::default());
    let sevs: Vec<Severity> = findings
        .iter()
        .filter(|f| f.rule == "FERRY-CHG-001")
        .map(|f| f.severity)
        .collect();
    assert_eq!(sevs, [Severity::Medium, Severity::Medium]);
}

#[test]
fn disabled_rules_are_skipped() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/rules/FERRY-S3-001");
    let plan = load(&root.join("fail.json"));
    let config = Config {
        disabled_rules: vec!["FERRY-S3-001".into()],
        ..Config::default()
    };
    let findings = builtin::evaluate(&plan, &Context::default(), &config);
    assert!(findings.iter().all(|f| f.rule != "FERRY-S3-001"));
    assert!(findings.iter().any(|f| f.rule == "FERRY-S3-003"));
}

#[test]
fn guardrails_doc_describes_every_rule_with_its_severity() {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/guardrails.md"),
    )
    .unwrap();
    let mut missing = Vec::new();
    for rule in builtin::rules() {
        let severity = match rule.protected_severity {
            Some(p) => format!("{}, {p} in protected environments", rule.severity),
            None => rule.severity.to_string(),
        };
        let heading = format!("### {} — {} — {}", rule.id, severity, rule.title);
        if !doc.contains(&heading) {
            missing.push(heading);
        }
    }
    assert!(
        missing.is_empty(),
        "docs/guardrails.md lacks:\n{}",
        missing.join("\n")
    );
}

/// Replaces every `every`-th node (from `offset`) of a plan with a value of another shape.
fn mangle(v: &mut Value, counter: &mut usize, offset: usize, every: usize) {
    *counter += 1;
    if (*counter + offset).is_multiple_of(every) {
        let replacements = [
            Value::Null,
            Value::from(7),
            Value::from("x"),
            Value::Array(vec![]),
            serde_json::json!({}),
            Value::Bool(true),
        ];
        *v = replacements[*counter % replacements.len()].clone();
        return;
    }
    match v {
        Value::Object(map) => map
            .values_mut()
            .for_each(|c| mangle(c, counter, offset, every)),
        Value::Array(items) => items
            .iter_mut()
            .for_each(|c| mangle(c, counter, offset, every)),
        _ => {}
    }
}

/// Plans of the right format but with values of unexpected shapes anywhere must give
/// findings or errors, never a panic.
#[test]
fn odd_shapes_never_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/rules");
    let ctx = Context {
        environment: "prod".into(),
        protected: true,
        ..Context::default()
    };
    let config = Config {
        name_pattern: Some("acme-.*".into()),
        require_customer_managed_keys: ferry_policy::Requirement::Always,
        ..Config::default()
    };
    let mut runs = 0;
    for rule in builtin::rules() {
        for file in ["fail.json", "pass.json"] {
            let text = std::fs::read_to_string(root.join(rule.id).join(file)).unwrap();
            let original: Value = serde_json::from_str(&text).unwrap();
            for every in [3, 5, 11] {
                for offset in 0..every {
                    let mut doc = original.clone();
                    mangle(&mut doc, &mut 0, offset, every);
                    if let Ok(plan) = PlanInput::from_value(doc) {
                        builtin::evaluate(&plan, &ctx, &config);
                        runs += 1;
                    }
                }
            }
        }
    }
    assert!(runs > 100, "only {runs} mangled plans parsed");
}

/// The one-call stage API: built-in pack, Rego, policy-change flag, waivers and fail_on.
#[test]
fn stage_check_combines_everything() {
    use chrono::{Duration, TimeZone, Utc};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/rules/FERRY-S3-001");
    let plan_json = std::fs::read(root.join("fail.json")).unwrap();
    let policies = ferry_policy::PolicySet::from_sources(&[(
        "policy/prod.rego".to_string(),
        "package ferry.prod\n\ndeny contains {\"rule\": \"ferry.prod\", \"severity\": \"critical\", \"message\": \"no buckets on fridays\", \"address\": \"aws_s3_bucket.data\"} if input.context.environment == \"prod\"\n".to_string(),
    )])
    .unwrap();
    let now = Utc.with_ymd_and_hms(2026, 11, 27, 9, 0, 0).unwrap();
    let ctx = Context {
        environment: "prod".into(),
        actor: "alice".into(),
        ..Context::default()
    };
    let waiver = ferry_policy::Waiver {
        rule: "FERRY-S3-001".into(),
        address: "aws_s3_bucket.data".into(),
        environment: "prod".into(),
        resource_type: Some("aws_s3_bucket".into()),
        reason: "encrypted by bucket default".into(),
        expires_at: now + Duration::days(3),
        created_by: "bob".into(),
    };
    let config = Config::default();
    let input = ferry_policy::StageInput {
        plan_json: &plan_json,
        context: &ctx,
        config: &config,
        policies: Some(&policies),
        changed_paths: &["main.tf", "policy/prod.rego"],
        policy_dir: "policy",
        fail_on: Severity::High,
        waivers: std::slice::from_ref(&waiver),
        now,
    };
    let report = ferry_policy::check(&input).unwrap();
    let blocking: Vec<(&str, &str)> = report
        .blocking()
        .map(|f| (f.rule.as_str(), f.address.as_str()))
        .collect();
    assert_eq!(
        blocking,
        [
            ("ferry.prod", "aws_s3_bucket.data"),
            ("FERRY-POLICY-001", "(configuration)"),
            ("FERRY-S3-003", "aws_s3_bucket.data"),
            ("FERRY-S3-003", "aws_s3_bucket.other"),
        ]
    );
    let waived: Vec<&str> = report
        .entries
        .iter()
        .filter(|e| e.waiver.is_some())
        .map(|e| e.finding.rule.as_str())
        .collect();
    assert_eq!(waived, ["FERRY-S3-001"]);
    let bad = ferry_policy::StageInput {
        plan_json: b"{",
        ..input
    };
    assert!(ferry_policy::check(&bad).is_err());
}
