//! The built-in guardrail pack: one rule per failure infrastructure pipelines keep shipping
//! (PRODUCT.md §1), each with a stable id, a severity and a rationale (`docs/guardrails.md`).
//!
//! Rules judge resources the plan creates, updates or replaces, but read everything else in
//! the plan for context: an unchanged encryption resource still encrypts its bucket, and a
//! link that is unknown until apply (`bucket = aws_s3_bucket.b.id`) is followed through the
//! configuration's `references`. [`rules`] is the registry (the waiver check and the docs use
//! it); [`evaluate`] runs every enabled rule.

mod iam;
mod other;
mod s3;

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;
use serde_json::Value;

use crate::plan::{Action, Mode, Resource};
use crate::{Config, Context, Finding, PlanInput, Severity};

/// A built-in rule as the registry describes it.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct RuleInfo {
    pub id: &'static str,
    /// Severity of its findings (FERRY-CHG-001: outside protected environments).
    pub severity: Severity,
    /// Severity in environments marked `protected`, when it differs.
    pub protected_severity: Option<Severity>,
    pub title: &'static str,
    pub rationale: &'static str,
    pub remediation: &'static str,
}

struct Rule {
    info: RuleInfo,
    check: fn(&Eval<'_>, &mut Vec<(String, String)>),
}

macro_rules! rule {
    ($id:literal, $sev:ident, $title:literal, $rationale:literal, $remediation:literal, $check:path) => {
        Rule {
            info: RuleInfo {
                id: $id,
                severity: Severity::$sev,
                protected_severity: None,
                title: $title,
                rationale: $rationale,
                remediation: $remediation,
            },
            check: $check,
        }
    };
}

static RULES: &[Rule] = &[
    rule!("FERRY-IAM-001", High,
        "IAM policy grants every action, or every action of a service",
        "`Action: \"*\"` or `s3:*` grants actions nobody reviewed, including ones AWS adds later; a leaked credential then has the run of the account or service.",
        "List the actions the workload needs.",
        iam::wildcard_actions),
    rule!("FERRY-IAM-002", High,
        "IAM policy allows write actions on every resource",
        "Write access to `Resource: \"*\"` lets one compromised role change or delete every resource of that kind in the account.",
        "Scope write actions to the ARNs they need.",
        iam::wildcard_resources),
    rule!("FERRY-IAM-003", High,
        "Sensitive IAM action allowed without a condition",
        "`iam:PassRole`, `sts:AssumeRole` and `kms:Decrypt` are privilege escalation and data access paths; without a `Condition` they work from anywhere, for anything.",
        "Add a `Condition` (for example `iam:PassedToService`, `aws:PrincipalOrgID`, `kms:ViaService`) or scope the resources tightly.",
        iam::sensitive_without_condition),
    rule!("FERRY-IAM-004", Critical,
        "Role trust policy trusts any principal",
        "A trust policy with `Principal: \"*\"` lets any AWS account assume the role.",
        "Name the accounts, roles or services allowed to assume the role, or restrict with `aws:PrincipalOrgID`.",
        iam::trust_any_principal),
    rule!("FERRY-IAM-005", High,
        "Role trust policy trusts another account without an external id or organisation condition",
        "A third party trusted without `sts:ExternalId` can be tricked into acting on your account (the confused-deputy problem); an organisation condition limits trust to your own accounts.",
        "Add a `Condition` on `sts:ExternalId` (third parties) or `aws:PrincipalOrgID` (your organisation); list your own account ids in `policy.account_ids`.",
        iam::cross_account_trust),
    rule!("FERRY-S3-001", High,
        "S3 bucket without server-side encryption",
        "Unencrypted buckets leak data through misplaced backups, snapshots and replicas, and fail most compliance regimes.",
        "Add an `aws_s3_bucket_server_side_encryption_configuration` for the bucket.",
        s3::encryption),
    rule!("FERRY-S3-002", Medium,
        "S3 bucket not encrypted with a customer-managed KMS key where the environment requires it",
        "With a customer-managed key you control who can decrypt (key policy), can audit every use and can revoke access by disabling the key.",
        "Set `sse_algorithm = \"aws:kms\"` and `kms_master_key_id` to an `aws_kms_key` you manage.",
        s3::customer_managed_key),
    rule!("FERRY-S3-003", High,
        "S3 bucket without a public access block with all four settings on",
        "Public buckets remain the most common cloud data leak; the public access block stops a stray ACL or bucket policy from exposing data.",
        "Add an `aws_s3_bucket_public_access_block` with `block_public_acls`, `block_public_policy`, `ignore_public_acls` and `restrict_public_buckets` all `true` (or an account-level block).",
        s3::public_access_block),
    rule!("FERRY-S3-004", Medium,
        "S3 bucket versioning not enabled",
        "Without versioning an overwrite or delete (by mistake, a bug or ransomware) cannot be undone.",
        "Add an `aws_s3_bucket_versioning` with `status = \"Enabled\"`.",
        s3::versioning),
    rule!("FERRY-S3-005", Low,
        "S3 bucket without a lifecycle rule for noncurrent versions",
        "With versioning on, every overwrite keeps the old object forever; costs grow silently without a noncurrent-version expiry or transition.",
        "Add an `aws_s3_bucket_lifecycle_configuration` rule with `noncurrent_version_expiration` or `noncurrent_version_transition`.",
        s3::noncurrent_lifecycle),
    rule!("FERRY-S3-006", Medium,
        "S3 bucket without access logging",
        "Without server access logs there is no record of who read or deleted what, which makes incidents uninvestigable.",
        "Add an `aws_s3_bucket_logging` pointing at a log bucket (log buckets themselves are exempt).",
        s3::access_logging),
    rule!("FERRY-S3-007", Low,
        "S3 bucket MFA delete off",
        "MFA delete makes permanently deleting object versions or suspending versioning require a second factor.",
        "Set `mfa_delete = \"Enabled\"` in the bucket's `aws_s3_bucket_versioning`.",
        s3::mfa_delete),
    rule!("FERRY-S3-008", Low,
        "Critical S3 bucket without cross-region replication",
        "A bucket tagged critical should survive the loss of its region.",
        "Add an `aws_s3_bucket_replication_configuration` to a bucket in another region.",
        s3::replication),
    rule!("FERRY-DDB-001", Medium,
        "DynamoDB table without point-in-time recovery",
        "Without PITR a bad write or delete cannot be rolled back; restores are limited to manual backups.",
        "Add `point_in_time_recovery { enabled = true }`.",
        other::dynamodb_pitr),
    rule!("FERRY-LOG-001", Medium,
        "CloudWatch log group without retention",
        "Log groups without `retention_in_days` keep logs forever, growing cost and the amount of sensitive data held.",
        "Set `retention_in_days`.",
        other::log_retention),
    rule!("FERRY-LOG-002", Low,
        "No CloudTrail trail in a configuration managing AWS resources",
        "Without CloudTrail there is no audit record of API calls. Turn this off (`policy.require_cloudtrail: false`) where the trail is managed elsewhere.",
        "Add an `aws_cloudtrail`, or set `require_cloudtrail: false` if another stack owns the trail.",
        other::cloudtrail_present),
    rule!("FERRY-LOG-003", High,
        "CloudTrail trail not multi-region",
        "A single-region trail misses activity in every other region, where attackers like to work.",
        "Set `is_multi_region_trail = true`.",
        other::cloudtrail_multi_region),
    rule!("FERRY-LOG-004", High,
        "CloudTrail trail without log file validation",
        "Without digest files nobody can prove the trail's logs were not edited or deleted.",
        "Set `enable_log_file_validation = true`.",
        other::cloudtrail_validation),
    rule!("FERRY-LOG-005", Medium,
        "VPC without flow logs",
        "Flow logs are the only record of network traffic for incident response.",
        "Add an `aws_flow_log` with `vpc_id` set to the VPC.",
        other::vpc_flow_logs),
    rule!("FERRY-SEC-001", High,
        "Credential in a plaintext environment variable",
        "Plaintext environment values are visible to anyone who can describe the resource, end up in plan output and state, and are echoed into logs.",
        "Use the secret store integration (`secrets` with Secrets Manager or SSM in task definitions, `PARAMETER_STORE`/`SECRETS_MANAGER` in CodeBuild, a secret ARN read at start-up in Lambda).",
        other::plaintext_env_secrets),
    rule!("FERRY-SEC-002", High,
        "Database password set from a literal",
        "A password written in the configuration (or as a variable default) lives in git forever.",
        "Use `manage_master_user_password = true`, a `random_password`, or a variable without a default fed from Ferry's secret store.",
        other::literal_db_password),
    rule!("FERRY-NET-001", High,
        "Security group open to the internet on ports other than 80/443",
        "SSH, RDP, databases and admin ports open to `0.0.0.0/0` or `::/0` are scanned within minutes of creation.",
        "Restrict the source to known CIDRs or security groups, or reach the port through a bastion, SSM or a VPN.",
        other::open_ingress),
    rule!("FERRY-NET-002", Low,
        "Internet-facing load balancer without a WAF",
        "A web application firewall blocks common injection and bot traffic before it reaches the application.",
        "Add an `aws_wafv2_web_acl_association` for the load balancer.",
        other::lb_waf),
    rule!("FERRY-CTR-001", Medium,
        "ECR repository without scan on push",
        "Images with known vulnerabilities are deployed unnoticed when nothing scans them.",
        "Set `image_scanning_configuration { scan_on_push = true }` or enable registry scanning.",
        other::ecr_scan),
    rule!("FERRY-CTR-002", Low,
        "ECR repository without a lifecycle policy",
        "Without a lifecycle policy every image ever pushed is kept (and billed), old vulnerable ones included.",
        "Add an `aws_ecr_lifecycle_policy` for the repository.",
        other::ecr_lifecycle),
    rule!("FERRY-CTR-003", Medium,
        "ECS service or auto-scaling group in a single availability zone",
        "One availability zone is one failure away from an outage.",
        "Spread the service's or group's subnets over at least two availability zones.",
        other::single_az),
    rule!("FERRY-KMS-001", Medium,
        "KMS customer-managed key without rotation",
        "Automatic rotation limits how much data one key version protects and is required by most compliance regimes.",
        "Set `enable_key_rotation = true`.",
        other::kms_rotation),
    rule!("FERRY-SNS-001", Medium,
        "SNS topic without encryption",
        "Messages (often containing identifiers and event details) are stored unencrypted.",
        "Set `kms_master_key_id` (for example `alias/aws/sns` or your own key).",
        other::sns_encryption),
    rule!("FERRY-TAG-001", Low,
        "Required tags missing",
        "Untagged resources have no owner to call, no cost centre to bill and no data classification to protect them by.",
        "Add the missing tags, or set them once with the provider's `default_tags`.",
        other::required_tags),
    rule!("FERRY-TAG-002", Medium,
        "Environment tag does not match the environment being deployed",
        "A resource tagged for another environment is usually a copy-paste or variable mistake that mixes environments.",
        "Set the environment tag from the environment being deployed.",
        other::environment_tag),
    rule!("FERRY-TAG-003", Low,
        "Resource name does not match the naming pattern",
        "Consistent names make ownership and environment obvious in the console, in bills and in alerts.",
        "Rename the resource to match `policy.name_pattern`.",
        other::naming),
    Rule {
        info: RuleInfo {
            id: "FERRY-CHG-001",
            severity: Severity::Medium,
            protected_severity: Some(Severity::Critical),
            title: "Stateful resource deleted or replaced",
            rationale: "Deleting or replacing a database, bucket, table, key or volume destroys its data; a replacement caused by an innocent-looking attribute change is a classic way to lose production data.",
            remediation: "If the data must survive, change the attribute in place, add `lifecycle { prevent_destroy = true }`, or use a `moved` block; otherwise waive the finding with a reason.",
        },
        check: other::stateful_destroy,
    },
];

/// The registry of built-in rules, in documentation order.
pub fn rules() -> impl Iterator<Item = &'static RuleInfo> {
    RULES.iter().map(|r| &r.info)
}

/// The built-in rule with this id.
pub fn rule(id: &str) -> Option<&'static RuleInfo> {
    rules().find(|r| r.id == id)
}

/// Runs every built-in rule not disabled in `config`.
pub fn evaluate(plan: &PlanInput, ctx: &Context, config: &Config) -> Vec<Finding> {
    let eval = Eval::new(plan, ctx, config);
    let mut findings = Vec::new();
    for rule in RULES {
        if config.disabled_rules.iter().any(|d| d == rule.info.id) {
            continue;
        }
        let mut hits = Vec::new();
        (rule.check)(&eval, &mut hits);
        let severity = match rule.info.protected_severity {
            Some(sev) if ctx.protected => sev,
            _ => rule.info.severity,
        };
        for (address, message) in hits {
            findings.push(Finding {
                rule: rule.info.id.to_string(),
                severity,
                address,
                message,
                remediation: rule.info.remediation.to_string(),
            });
        }
    }
    findings
}

/// What every check gets: the plan, the context, the configuration and a few derived facts.
struct Eval<'a> {
    plan: &'a PlanInput,
    ctx: &'a Context,
    config: &'a Config,
    /// `Err` holds the message for an invalid `name_pattern`.
    name_pattern: Option<Result<regex::Regex, String>>,
    own_accounts: BTreeSet<String>,
}

impl<'a> Eval<'a> {
    fn new(plan: &'a PlanInput, ctx: &'a Context, config: &'a Config) -> Eval<'a> {
        let mut own_accounts: BTreeSet<String> = config.account_ids.iter().cloned().collect();
        for r in plan.resources() {
            if r.mode == Mode::Data && r.r#type == "aws_caller_identity" {
                own_accounts.extend(r.str(&["account_id"]).map(String::from));
            }
            if r.mode == Mode::Managed && !r.r#type.starts_with("aws_iam_") {
                if let Some(account) = r.str(&["arn"]).and_then(arn_account) {
                    own_accounts.insert(account.to_string());
                }
            }
        }
        Eval {
            plan,
            ctx,
            config,
            name_pattern: config
                .name_pattern
                .as_ref()
                .map(|p| regex::Regex::new(&format!("^(?:{p})$")).map_err(|e| e.to_string())),
            own_accounts,
        }
    }

    fn res(&self, i: usize) -> &'a Resource {
        self.plan.resource(i)
    }

    /// Changed managed instances of one of the types.
    fn changed(&self, types: &[&str]) -> Vec<usize> {
        let mut out: Vec<usize> = types
            .iter()
            .flat_map(|t| self.plan.changed_of_type(t))
            .collect();
        out.sort_unstable();
        out
    }

    /// For each instance of `target_type`, the instances of `companion_type` whose `attr`
    /// points at it: through a configuration reference, or by equal known value (the
    /// target's `keys` attributes, e.g. `id` and `bucket`). Deleted companions are left out.
    /// Also returns the targets some companion points at while it changes or is deleted, so
    /// an unchanged bucket is judged again when its encryption resource changes.
    fn incoming(
        &self,
        target_type: &str,
        companion_type: &str,
        attr: &[&str],
        keys: &[&str],
    ) -> Incoming {
        let targets = self.plan.of_type(target_type);
        let mut by_value: HashMap<&str, Vec<usize>> = HashMap::new();
        for &t in targets {
            for key in keys {
                if let Some(v) = self.res(t).str(&[key]) {
                    by_value.entry(v).or_default().push(t);
                }
            }
        }
        let mut incoming = Incoming::default();
        for &c in self.plan.of_type(companion_type) {
            let comp = self.res(c);
            if comp.mode != Mode::Managed || comp.action == Action::Forget {
                continue;
            }
            let mut linked: Vec<usize> = self
                .plan
                .refs(comp, attr)
                .into_iter()
                .filter(|&i| self.res(i).r#type == target_type)
                .collect();
            if linked.is_empty() {
                if let Some(v) = comp.get(attr).and_then(Value::as_str) {
                    linked = by_value.get(v).cloned().unwrap_or_default();
                }
            }
            for t in linked {
                if comp.action != Action::NoOp && comp.action != Action::Read {
                    incoming.touched.insert(t);
                }
                if comp.action != Action::Delete {
                    incoming.links.entry(t).or_default().push(c);
                }
            }
        }
        incoming
    }

    /// Targets of `target_type` to judge: changed ones, plus unchanged ones whose companion
    /// changes.
    fn judged(&self, target_type: &str, incoming: &Incoming) -> Vec<usize> {
        let mut out: Vec<usize> = self.plan.changed_of_type(target_type).collect();
        for &t in &incoming.touched {
            let r = self.res(t);
            if r.mode == Mode::Managed && !r.action.destroys() && !out.contains(&t) {
                out.push(t);
            }
        }
        out.sort_unstable();
        out
    }

    /// The tags a resource ends up with: `tags_all` when known, else `tags` plus the
    /// provider's `default_tags`. `None` when they are unknown until apply.
    fn tags(&self, r: &Resource) -> Option<serde_json::Map<String, Value>> {
        if let Some(Value::Object(all)) = r.get(&["tags_all"]) {
            if !r.unknown(&["tags_all"]) {
                return Some(all.clone());
            }
        }
        if r.unknown(&["tags"]) {
            return None;
        }
        let mut tags = self.plan.default_tags().clone();
        if let Some(Value::Object(own)) = r.get(&["tags"]) {
            tags.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        Some(tags)
    }
}

#[derive(Default)]
struct Incoming {
    links: HashMap<usize, Vec<usize>>,
    touched: BTreeSet<usize>,
}

impl Incoming {
    fn of(&self, target: usize) -> &[usize] {
        self.links.get(&target).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// The account id of an ARN (`arn:aws:s3:eu-west-1:123456789012:…`).
fn arn_account(arn: &str) -> Option<&str> {
    let account = arn.split(':').nth(4)?;
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())).then_some(account)
}

/// The elements of a block list (`[]` when absent or not a list).
fn blocks(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn is_true(v: Option<&Value>) -> bool {
    v == Some(&Value::Bool(true))
}
