//! The built-in pack on a generated 10,000-resource plan (target: under 1 s on the 2-core
//! machine). The plan mixes the rule-heavy types, in the shape `terraform show -json`
//! produces, with bucket settings linked to their buckets only through configuration
//! references (the slow path). Prints parse and evaluation time, the median of several
//! runs, and the ratio to the target. Like the other benches it never fails on a figure
//! (the machine is shared and noisy). See docs/benchmarks.md.

use std::time::{Duration, Instant};

use ferry_policy::{builtin, Config, Context, PlanInput};
use serde_json::{json, Value};

const RESOURCES: usize = 10_000;
const PER_UNIT: usize = 10;
const TARGET: Duration = Duration::from_secs(1);

fn change(address: &str, ty: &str, name: &str, after: Value, unknown: Value) -> Value {
    json!({
        "address": address, "mode": "managed", "type": ty, "name": name,
        "provider_name": "registry.terraform.io/hashicorp/aws",
        "change": {"actions": ["create"], "before": null, "after": after,
                   "after_unknown": unknown, "before_sensitive": false, "after_sensitive": {}}
    })
}

fn config(ty: &str, name: &str, expressions: Value) -> Value {
    json!({"address": format!("{ty}.{name}"), "mode": "managed", "type": ty, "name": name,
           "provider_config_key": "aws", "expressions": expressions, "schema_version": 0})
}

fn reference(target: &str) -> Value {
    json!({"references": [format!("{target}.id"), target]})
}

fn generate() -> Vec<u8> {
    let mut changes = Vec::with_capacity(RESOURCES);
    let mut configs = Vec::with_capacity(RESOURCES);
    let tags = json!({"Environment": "prod", "Owner": "team", "CostCenter": "cc"});
    for u in 0..RESOURCES / PER_UNIT {
        let b = format!("b{u}");
        let bucket = format!("aws_s3_bucket.{b}");
        let mut add = |ty: &str, after: Value, unknown: Value, expressions: Value| {
            changes.push(change(&format!("{ty}.{b}"), ty, &b, after, unknown));
            configs.push(config(ty, &b, expressions));
        };
        add(
            "aws_s3_bucket",
            json!({"bucket": format!("acme-{u}"), "tags": tags, "tags_all": tags}),
            json!({"id": true, "arn": true}),
            json!({"bucket": {"constant_value": format!("acme-{u}")}}),
        );
        for (ty, after) in [
            (
                "aws_s3_bucket_server_side_encryption_configuration",
                json!({"rule": [{"apply_server_side_encryption_by_default": [{"sse_algorithm": "AES256", "kms_master_key_id": null}]}]}),
            ),
            (
                "aws_s3_bucket_public_access_block",
                json!({"block_public_acls": true, "block_public_policy": true, "ignore_public_acls": true, "restrict_public_buckets": u % 7 != 0}),
            ),
            (
                "aws_s3_bucket_versioning",
                json!({"versioning_configuration": [{"status": "Enabled", "mfa_delete": null}]}),
            ),
        ] {
            add(
                ty,
                after,
                json!({"bucket": true, "id": true}),
                json!({"bucket": reference(&bucket)}),
            );
        }
        let policy = json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": if u % 5 == 0 { json!("s3:*") } else { json!(["s3:GetObject", "s3:PutObject"]) },
             "Resource": if u % 3 == 0 { json!("*") } else { json!(format!("arn:aws:s3:::acme-{u}/*")) }}]});
        add(
            "aws_iam_policy",
            json!({"name": b, "policy": policy.to_string(), "tags": tags, "tags_all": tags}),
            json!({"id": true, "arn": true}),
            json!({}),
        );
        add(
            "aws_security_group",
            json!({"name": b, "ingress": [{"from_port": if u % 4 == 0 { 22 } else { 443 }, "to_port": if u % 4 == 0 { 22 } else { 443 },
                   "protocol": "tcp", "cidr_blocks": ["0.0.0.0/0"], "ipv6_cidr_blocks": []}], "tags": tags, "tags_all": tags}),
            json!({"id": true, "arn": true, "vpc_id": true}),
            json!({}),
        );
        add(
            "aws_cloudwatch_log_group",
            json!({"name": format!("/app/{u}"), "retention_in_days": if u % 2 == 0 { 30 } else { 0 }, "tags": tags, "tags_all": tags}),
            json!({"arn": true}),
            json!({}),
        );
        add(
            "aws_lambda_function",
            json!({"function_name": b, "environment": [{"variables": {"LOG_LEVEL": "info", "API_TOKEN": if u % 9 == 0 { "t0ken" } else { "" }}}], "tags": tags, "tags_all": tags}),
            json!({"arn": true}),
            json!({}),
        );
        add(
            "aws_dynamodb_table",
            json!({"name": b, "hash_key": "id", "point_in_time_recovery": [{"enabled": u % 2 == 0}], "tags": tags, "tags_all": tags}),
            json!({"arn": true}),
            json!({}),
        );
        add(
            "aws_sqs_queue",
            json!({"name": b, "tags": {"Environment": "prod"}, "tags_all": {"Environment": "prod"}}),
            json!({"arn": true, "url": true}),
            json!({}),
        );
    }
    let plan = json!({
        "format_version": "1.2",
        "terraform_version": "1.11.0",
        "planned_values": {"root_module": {"resources": []}},
        "resource_changes": changes,
        "configuration": {"root_module": {"resources": configs}},
    });
    serde_json::to_vec(&plan).expect("serialize")
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let bytes = generate();
    let ctx = Context {
        environment: "prod".into(),
        protected: true,
        ..Context::default()
    };
    let config = Config::default();
    let (mut parse, mut eval, mut total) = (Vec::new(), Vec::new(), Vec::new());
    let mut findings = 0;
    for _ in 0..5 {
        let started = Instant::now();
        let plan = PlanInput::parse(&bytes).expect("generated plan parses");
        let parsed = Instant::now();
        let found = builtin::evaluate(&plan, &ctx, &config);
        let done = Instant::now();
        assert_eq!(plan.resources().len(), RESOURCES);
        findings = found.len();
        parse.push(parsed - started);
        eval.push(done - parsed);
        total.push(done - started);
    }
    let total = median(total);
    println!(
        "built-in pack, {RESOURCES} resources ({:.1} MiB of plan JSON, {findings} findings): parse {:.0} ms + evaluate {:.0} ms = {:.0} ms (median of 5); target {} ms; ratio {:.2}",
        bytes.len() as f64 / (1024.0 * 1024.0),
        median(parse).as_secs_f64() * 1000.0,
        median(eval).as_secs_f64() * 1000.0,
        total.as_secs_f64() * 1000.0,
        TARGET.as_millis(),
        total.as_secs_f64() / TARGET.as_secs_f64(),
    );
}
