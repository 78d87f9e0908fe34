//! The rules of the pack outside IAM and S3: DynamoDB, logs and audit, secrets, network,
//! containers, KMS/SNS, tagging and naming, change safety.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use super::{blocks, is_true, Eval};
use crate::plan::{Action, Mode};
use crate::PLAN_ADDRESS;

pub(super) fn dynamodb_pitr(e: &Eval<'_>, out: &mut Vec<(String, String)>) {
    for i in e.changed(&["aws_dynamodb_table"]) {
        let r = e.res(i);
        let path = ["point_in_time_recovery", "0", "enabled"];
        if r.bool(&path) != Some(true) && !r.unknown(&path) {
            out.push((
                r.address.clone(),
                "point-in-time recovery is off".to_string(),
            ));
        }
    }
}

pub(super) fn log_retention(e: &Eval<'_>, out: &mut Vec<(String, String)>) {
    for i in e.changed(&["aws_cloudwatch_log_group"]) {
        let r = e.res(i);
        let days = r.get(&["retention_in_days"]).and_then(Value::as_u64);
        if days.unwrap_or(0) == 0 && !r.unknown(&["retention_in_days"]) {
            out.push((
                r.address.clone(),
                "log group has no retention_in_days: its logs are kept forever".to_string(),
            ));
        }
    }
}

pub(super) fn cloudtrail_present(e: &Eval<'_>, out: &mut Vec<(String, String)>) {
    if !e.config.require_cloudtrail || e.plan.has_live_type("aws_cloudtrail") {
        return;
    }
    let manages_aws =
        e.plan.resources().iter().any(|r| {
            r.mode == Mode::Managed && r.action.is_change() && r.r#type.starts_with("aws_")
        });
    if manages_aws {
        out.push((
            PLAN_ADDRESS.to_string(),
            "the configuration manages AWS resources but no aws_cloudtrail trail".to_string(),
        ));
    }
}

pub(super) fn cloudtrail_multi_region(e: &Eval<'_>, out: &mut Vec<(String, String)>) {
    for i in e.changed(&["aws_cloudtrail"]) {
        let r = e.res(i);
        if r.bool(&["is_multi_region_trail"]) != Some(true)
            && !r.unknown(&["is_multi_region_trail"])
        {
            out.push((
                r.address.clone(),
                "the trail records one region only".to_string(),
            ));
        }
    }
}

pub(super) fn cloudtrail_validation(e: &Eval<'_>, out: &mut Vec<(String, String)>) {
    for i in e.changed(&["aws_cloudtrail"]) {
        let r = e.res(i);
        let path = ["enable_log_file_validation"];
        if r.bool(&path) != Some(true) && !r.unknown(&path) {
            out.push((r.address.clone(), "log file validation is off".to_string()));
        }
    }
}

pub(super) fn vpc_flow_logs(e: &Eval<'_>, out: &mut Vec<(String, String)>) {
    let logs = e.incoming("aws_vpc", "aws_flow_log", &["vpc_id"], &["id"]);
    for v in e.judged("aws_vpc", &logs) {
        if logs.of(v).is_empty() {
            out.push((
                e.res(v).address.clone(),
                "no aws_flow_log records this VPC's traffic".to_string(),
            ));
        }
    }
}

static SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "key",
    "apikey",
    "credential",
    "credentials",
    "passphrase",
    "privatekey",
];

/// Last words that make a name describe a secret rather than hold one (`DB_PASSWORD_ARN`).
static REFERENCE_WORDS: &[&str] = &[
    "id",
    "arn",
    "name",
    "path",
    "file",
    "url",
    "uri",
    "region",
    "endpoint",
    "header",
    "param",
    "parameter",
    "type",
    "length",
    "ttl",
    "expiry",
    "prefix",
];

static ACCESS_KEY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b").expect("valid regex"));

fn name_words(name: &str) -> Vec<String> {
    // Split on separators and on lower→upper case changes (dbPassword → db, password).
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_ascii_alphanumeric() {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && prev_lower && !cur.is_empty() {
            words.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        cur.push(c.to_ascii_lowercase());
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// Why `name = value` looks like a credential in plain text, or `None`. Never quotes the value.
fn credential_reason(name: &str, value: &str) -> Option<&'static str> {
    if ACCESS_KEY.is_match(value) {
        return Some("its value looks like an AWS access key id");
    }
    if value.contains("PRIVATE KEY-----") {
        return Some("its value is a private key");
    }
    let v = value.trim();
    if v.is_empty() || v.starts_with("arn:") || v.starts_with('/') || v.starts_with("{{resolve:") {
        return None;
    }
    let words = name_words(name);
    if words
        .last()
        .is_some_and(|w| REFERENCE_WORDS.contains(&w.as_str()))
    {
        return None;
    }
    words
        .iter()
        .any(|w| SECRET_WORDS.contains(&w.as_str()))
        .then_some("its name says it holds a credential")
}

pub(super) fn plaintext_env_secrets(e: &Eval<'_>, out: &mut Vec<(String, String)>) {
    let mut report = |address: &str, name: &str, value: &str, place: &str| {
        if let Some(reason) = credential_reason(name, value) {
            out.push((
                address.to_string(),
                format!("{place} environment variable `{name}` is plaintext and {reason}"),
            ));
        }
    };
    for i in e.changed(&["aws_codebuild_project"]) {
        let r = e.res(i);
        for var in blocks(r.get(&["environment", "0", "environment_variable"])) {
            let ty = var
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("PLAINTEXT");
            if ty != "PLAINTEXT" {
                continue;
            }
            if let (Some(n), Some(v)) = (
                var.get("name").and_then(Value::as_str),
                var.get("value").and_then(Value::as_str),
            ) {
                report(&r.address, n, v, "build");
            }
        }
    }
    for i in e.changed(&["aws_ecs_task_definition"]) {
        let r = e.res(i);
        let Some(defs) = r
            .str(&["container_definitions"])
            .and_then(|s| serde_json::from_str::<Value>(s).ok())
        else {
            continue;
        };
        for c in blocks(Some(&defs)) {
            let container = c.get("name").and_then(Value::as_str).unwrap_or("?");
            for var in blocks(c.get("environment")) {
                if let (Some(n), Some(v)) = (
                    var.get("name").and_then(Value::as_str),
                    var.get("value").and_then(Value::as_str),
                ) {
                    report(&r.address, n, v, &format!("container `{container}`"));
                }
            }
        }
    }
    for i in e.changed(&["aws_lambda_function"]) {
        let r = e.res(i);
        if let Some(Value::Object(vars)) = r.get(&["environment", "0", "variables"]) {
            for (n, v) in vars {
                if let Some(v) = v.as_str() {
                    report(&r.address, n, v, "function");
                }
            }
        }
    }
}

const DB_PASSWORDS: &[(&str, &[&str])] = &[
    ("aws_db_instance", &["password", "password_wo"]),
    (
        "aws_rds_cluster",
        &["master_password", "master_password_wo"],
    ),
    ("aws_docdb_cluster", &["master_password"]),
    ("aws_redshift_cluster", &["master_password"]),
    ("aws_neptune_cluster", &["master_password"]),
    ("aws_elasticache_replication_group", &["auth_token"]),
];

pub(super) fn literal_db_password(e: &Eval<'_>, out: &mut Vec<(String, String)>) {
    for (ty, attrs) in DB_PASSWORDS {
        for i in e.plan.changed_of_type(ty) {
            let r = e.res(i);
            for attr in *attrs {
                let literal = e.plan.constant(r, &[attr]).is_some_and(|v| !v.is_null());
                if literal {
                    out.push((
                        r.address.clone(),
                        format!("`{attr}` is a literal in the configuration"),
                    ));
                } else if e.plan.refers_to_defaulted_variable(r, &[attr]) {
                    out.push((
                        r.address.clone(),
                        format!("`{attr}` comes from a variable with a literal default"),
                    ));
                }
            }
        }
    }
}

const OPEN: [&str; 2] = ["0.0.0.0/0", "::/0"];

/// Describes what an open rule exposes, or `None` when it only opens 80 or 443 (or ICMP).
fn exposed(protocol: &str, from: Option<i64>, to: Option<i64>) -> Option<String> {
    let p = protocol.to_ascii_lowercase();
    if p == "-1" || p == "all" {
        return Some("all protocols and ports".to_string());
    }
    if matches!(p.as_str(), "icmp" | "icmpv6" | "1" | "58") {
        return None;
    }
    match (from, to) {
        (Some(f), Some(t)) if f == t && (f == 80 || f == 443) => None,
        (Some(f), Some(t)) if f == t => Some(format!("port {f}")),
        (Some(f), Some(t)) => Some(format!("ports {f}-{t}")),
        _ => Some("unknown ports".to_string()),
    }
}

fn ingress_finding(
    address: &str,
    cidrs: &[&str],
    protocol: &str,
    from: Option<i64>,
    to: Option<i64>,
    out: &mut Vec<(String, String)>,
) {
    let open: Vec<&str> = cidrs.iter().copied().filter(|c| OPEN.contains(c)).collect();
    if open.is_empty() {
        return;
    }
    if let Some(what) = exposed(protocol, from, to) {
        out.push((
            address.to_string(),
            format!("ingress from {} on {what}", open.join(" and ")),
        ));
    }
}

fn strs(v: Option<&Value>) -> Vec<&str> {
    blocks(v).iter().filter_map(Value::as_str).collect()
}

pub(super) fn open_ingress(e: &Eval<'_>, out: &mut Vec<(String, String)>) {
    let port = |v: &Value, k: &str| v.get(k).and_then(Value::as_i64);
    for i in e.changed(&["aws_security_group"]) {
        let r = e.res(i);
        for rule in blocks(r.get(&["ingress"])) {
            let mut cidrs = strs(rule.get("cidr_blocks"));
            cidrs.extend(strs(rule.get("ipv6_cidr_blocks")));
            let protocol = rule.get("protocol").and_then(Value::as_str).unwrap_or("-1");
            ingress_finding(
                &r.address,
                &cidrs,
                protocol,
                port(rule, "from_port"),
                port(rule, "to_port"),
                out,
            );
        }
    }
    for i in e.changed(&["aws_security_group_rule"]) {
        let r = e.res(i);
        if r.str(&["type"]) != Some("ingress") {
            continue;
        }
        let mut cidrs = strs(r.get(&["cidr_blocks"]));
        cidrs.extend(strs(r.get(&["ipv6_cidr_blocks"])));
        let protocol = r.str(&["protocol"]).unwrap_or("-1");
        ingress_finding(
            &r.address,
            &cidrs,
            protocol,
            port(&r.values, "from_port"),
            port(&r.values, "to_port"),
            out,
        );
    }
    for i in e.changed(&["aws_vpc_security_group_ingress_rule"]) {
        let r = e.res(i);
        let cidrs: Vec<&str> = [r.str(&["cidr_ipv4"]), r.str(&["cidr_ipv6"])]
            .into_iter()
            .flatten()
            .collect();
        let protocol = r.str(&["ip_protocol"]).unwrap_or("-1");
        ingress_finding(
            &r.address,
            &cidrs,
            protocol,
            port(&r.values, "from_port"),
            port(&r.values, "to_port"),
            out,
        );
    }
}

pub(super) fn lb_waf(e: &Eval<'_>, out: &mut Vec<(String, String)>) {
    for ty in ["aws_lb", "aws_alb"] {
        let waf = e.incoming(
            ty,
            "aws_wafv2_web_acl_association",
            &["resource_arn"],
            &["arn", "id"],
        );
        let regional = e.incoming(
            ty,
            "aws_wafregional_web_acl_association",
            &["resource_arn"],
            &["arn", "id"],
        );
        for i in e.judged(ty, &waf) {
            let r = e.res(i);
            let application = r
                .str(&["load_balancer_type"])
                .is_none_or(|t| t == "application");
            if !application || is_true(r.get(&["internal"])) {
                continue;
            }
            if waf.of(i).is_empty() && regional.of(i).is_empty() {
                out.push((
                    r.address.clone(),
                    "internet-facing application load balancer has no WAF web ACL association"
                        .to_string(),
                ));
            }
        }
    }
}

pub(super) fn ecr_scan(e: &Eval<'_>, out: &mut Vec<(String, String)>) {
    let registry_scans = e
        .plan
        .of_type("aws_ecr_registry_scanning_configuration")
        .iter()
        .any(|&i| {
            let r = e.res(i);
            !r.action.destroys()
                && (r.str(&["scan_type"]) == Some("ENHANCED")
                    || blocks(r.get(&["rule"])).iter().any(|rule| {
                        matches!(
                            rule.get("scan_frequency").and_then(Value::as_str),
                            Some("SCAN_ON_PUSH" | "CONTINUOUS_SCAN")
                        )
                    }))
        });
    if registry_scans {
        return;
    }
    for i in e.changed(&["aws_ecr_repository"]) {
        let r = e.res(i);
        let path = ["image_scanning_configuration", "0", "scan_on_push"];
        if r.bool(&path) != Some(true) && !r.unknown(&path) {
            out.push((
                r.address.clone(),
                "images are not scanned on push".to_string(),
            ));
        }
    }
}

pub(super) fn ecr_lifecycle(e: &Eval<'_>, out: &mut Vec<(String, String)>) {
    let policies = e.incoming(
        "aws_ecr_repository",
        "aws_ecr_lifecycle_policy",
        &["repository"],
        &["name", "id"],
    );
    for i in e.judged("aws_ecr_repository", &policies) {
        if policies.of(i).is_empty() {
            out.push((
                e.res(i).address.clone(),
                "no aws_ecr_lifecycle_policy expires old images".to_string(),
            ));
        }
    }
}

/// How many availability zones the subnets at `path` span: through references to
/// `aws_subnet` resources (their `availability_zone`, or one zone each when unknown), or by
/// counting known subnet ids. `None` when it cannot be told.
fn zones(e: &Eval<'_>, i: usize, path: &[&str]) -> Option<usize> {
    let r = e.res(i);
    let subnets: Vec<usize> = e
        .plan
        .refs(r, path)
        .into_iter()
        .filter(|&s| e.res(s).r#type == "aws_subnet")
        .collect();
    let others = e
        .plan
        .reference_strings(r, path)
        .iter()
        .any(|s| !s.starts_with("aws_subnet."));
    if !subnets.is_empty() && !others {
        let mut azs = BTreeSet::new();
        for s in subnets {
            let sub = e.res(s);
            let az = sub
                .str(&["availability_zone"])
                .or_else(|| sub.str(&["availability_zone_id"]))
                .map(String::from)
                .unwrap_or_else(|| format!("unknown:{}", sub.address));
            azs.insert(az);
        }
        return Some(azs.len());
    }
    if r.unknown(path) || !others && !e.plan.reference_strings(r, path).is_empty() {
        return None;
    }
    let ids = strs(r.get(path));
    if ids.is_empty() {
        return None;
    }
    let mut azs = BTreeSet::new();
    for id in &ids {
        let az = e
            .plan
            .of_type("aws_subnet")
            .iter()
            .map(|&s| e.res(s))
            .find(|s| s.str(&["id"]) == Some(id))
            .and_then(|s| s.str(&["availability_zone"]).map(String::from))
            .unwrap_or_else(|| format!("subnet:{id}"));
        azs.insert(az);
    }
    Some(azs.len())
}

pub(super) fn single_az(e: &Eval<'_>, out: &mut Vec<(String, String)>) {
    for i in e.changed(&["aws_autoscaling_group"]) {
        let r = e.res(i);
        let explicit = strs(r.get(&["availability_zones"]));
        let count = if !explicit.is_empty() {
            Some(explicit.len())
        } else {
            zones(e, i, &["vpc_zone_identifier"])
        };
        if count == Some(1) {
            out.push((
                r.address.clone(),
                "the group's instances all run in one availability zone".to_string(),
            ));
        }
    }
    for i in e.changed(&["aws_ecs_service"]) {
        let r = e.res(i);
        if zones(e, i, &["network_configuration", "0", "subnets"]) == Some(1) {
            out.push((
                r.address.clone(),
                "the service's tasks all run in one availability zone".to_string(),
            ));
        }
    }
}

pub(super) fn kms_rotation(e: &Eval<'_>, out: &mut Vec<(String, String)>) {
    for i in e.changed(&["aws_kms_key"]) {
        let r = e.res(i);
        let symmetric = r
            .str(&["customer_master_key_spec"])
            .is_none_or(|s| s == "SYMMETRIC_DEFAULT");
        if symmetric
            && r.bool(&["enable_key_rotation"]) != Some(true)
            && !r.unknown(&["enable_key_rotation"])
        {
            out.push((
                r.address.clone(),
                "automatic key rotation is off".to_string(),
            ));
        }
    }
}

pub(super) fn sns_encryption(e: &Eval<'_>, out: &mut Vec<(String, String)>) {
    for i in e.changed(&["aws_sns_topic"]) {
        let r = e.res(i);
        let key = r.str(&["kms_master_key_id"]).unwrap_or("");
        if key.is_empty() && !r.unknown(&["kms_master_key_id"]) {
            out.push((
                r.address.clone(),
                "the topic has no kms_master_key_id".to_string(),
            ));
        }
    }
}

/// Changed managed resources that have a `tags` attribute.
fn taggable<'a>(e: &'a Eval<'_>) -> impl Iterator<Item = usize> + 'a {
    e.plan.resources().iter().enumerate().filter_map(|(i, r)| {
        (r.mode == Mode::Managed
            && r.action.is_change()
            && r.values
                .as_object()
                .is_some_and(|m| m.contains_key("tags") || m.contains_key("tags_all")))
        .then_some(i)
    })
}

pub(super) fn required_tags(e: &Eval<'_>, out: &mut Vec<(String, String)>) {
    if e.config.required_tags.is_empty() {
        return;
    }
    for i in taggable(e) {
        let r = e.res(i);
        let Some(tags) = e.tags(r) else { continue };
        let missing: Vec<&str> = e
            .config
            .required_tags
            .iter()
            .filter(|t| {
                tags.get(t.as_str())
                    .is_none_or(|v| v.as_str().is_some_and(|s| s.trim().is_empty()))
            })
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            out.push((
                r.address.clone(),
                format!("missing required tags: {}", missing.join(", ")),
            ));
        }
    }
}

pub(super) fn environment_tag(e: &Eval<'_>, out: &mut Vec<(String, String)>) {
    if e.ctx.environment.is_empty() {
        return;
    }
    for i in taggable(e) {
        let r = e.res(i);
        let Some(tags) = e.tags(r) else { continue };
        if let Some(Value::String(v)) = tags.get(&e.config.environment_tag) {
            if !v.eq_ignore_ascii_case(&e.ctx.environment) {
                out.push((
                    r.address.clone(),
                    format!(
                        "tag {}={v} but this run deploys to `{}`",
                        e.config.environment_tag, e.ctx.environment
                    ),
                ));
            }
        }
    }
}

const NAME_ATTRS: &[&str] = &[
    "name",
    "bucket",
    "function_name",
    "cluster_identifier",
    "identifier",
];

pub(super) fn naming(e: &Eval<'_>, out: &mut Vec<(String, String)>) {
    let Some(pattern) = &e.name_pattern else {
        return;
    };
    let re = match pattern {
        Ok(re) => re,
        Err(msg) => {
            out.push((
                PLAN_ADDRESS.to_string(),
                format!("policy.name_pattern is not a valid regular expression: {msg}"),
            ));
            return;
        }
    };
    for r in e.plan.resources() {
        if r.mode != Mode::Managed || !r.action.is_change() {
            continue;
        }
        let Some(name) = NAME_ATTRS.iter().find_map(|a| r.str(&[a])) else {
            continue;
        };
        if !re.is_match(name) {
            out.push((
                r.address.clone(),
                format!(
                    "name `{name}` does not match the pattern {}",
                    e.config.name_pattern.as_deref().unwrap_or_default()
                ),
            ));
        }
    }
}

/// Types whose destruction destroys data.
const STATEFUL: &[&str] = &[
    "aws_db_instance",
    "aws_rds_cluster",
    "aws_docdb_cluster",
    "aws_neptune_cluster",
    "aws_redshift_cluster",
    "aws_dynamodb_table",
    "aws_s3_bucket",
    "aws_kms_key",
    "aws_efs_file_system",
    "aws_ebs_volume",
    "aws_elasticache_cluster",
    "aws_elasticache_replication_group",
    "aws_opensearch_domain",
    "aws_elasticsearch_domain",
    "aws_backup_vault",
    "aws_secretsmanager_secret",
    "aws_kinesis_stream",
    "aws_sqs_queue",
    "aws_msk_cluster",
    "aws_ecr_repository",
    "aws_cloudwatch_log_group",
    "aws_fsx_lustre_file_system",
    "aws_timestream_table",
    "aws_keyspaces_table",
    "aws_memorydb_cluster",
    "google_sql_database_instance",
    "google_storage_bucket",
    "google_bigquery_dataset",
    "azurerm_storage_account",
    "azurerm_mssql_database",
    "azurerm_postgresql_flexible_server",
];

pub(super) fn stateful_destroy(e: &Eval<'_>, out: &mut Vec<(String, String)>) {
    for r in e.plan.resources() {
        if r.mode != Mode::Managed || !r.action.destroys() {
            continue;
        }
        let stateful = STATEFUL.contains(&r.r#type.as_str())
            || e.config.extra_stateful_types.iter().any(|t| t == &r.r#type);
        if !stateful {
            continue;
        }
        let what = if r.action == Action::Replace {
            "will be replaced (destroyed and created again), losing its data"
        } else {
            "will be destroyed with its data"
        };
        let env = if e.ctx.protected {
            format!(" in protected environment `{}`", e.ctx.environment)
        } else {
            String::new()
        };
        out.push((r.address.clone(), format!("{} {what}{env}", r.r#type)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_names() {
        assert!(credential_reason("DB_PASSWORD", "hunter2").is_some());
        assert!(credential_reason("apiToken", "abc").is_some());
        assert!(credential_reason("STRIPE_KEY", "sk_live").is_some());
        assert!(credential_reason("KMS_KEY_ID", "1234").is_none());
        assert!(credential_reason("DB_PASSWORD_ARN", "x").is_none());
        assert!(credential_reason("DB_PASSWORD", "arn:aws:secretsmanager:x").is_none());
        assert!(credential_reason("LOG_LEVEL", "debug").is_none());
        assert!(credential_reason("MONKEY", "x").is_none());
        assert!(credential_reason("ANY", "id AKIAABCDEFGHIJKLMNOP").is_some());
    }

    #[test]
    fn exposure() {
        assert_eq!(exposed("tcp", Some(443), Some(443)), None);
        assert_eq!(
            exposed("tcp", Some(22), Some(22)).as_deref(),
            Some("port 22")
        );
        assert_eq!(
            exposed("tcp", Some(80), Some(443)).as_deref(),
            Some("ports 80-443")
        );
        assert_eq!(
            exposed("-1", Some(0), Some(0)).as_deref(),
            Some("all protocols and ports")
        );
        assert_eq!(exposed("icmp", Some(-1), Some(-1)), None);
    }
}
