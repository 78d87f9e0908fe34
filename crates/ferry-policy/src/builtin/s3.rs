//! S3 bucket rules. Since AWS provider 4 a bucket's settings live in separate resources
//! (`aws_s3_bucket_versioning`, `…_server_side_encryption_configuration`, …) whose `bucket`
//! usually refers to the bucket's id, unknown until the bucket exists; the links are found
//! through configuration references (see [`Eval::incoming`]). The provider-3 inline blocks
//! on `aws_s3_bucket` are honoured too.

use serde_json::Value;

use super::{blocks, is_true, Eval, Incoming};
use crate::plan::get;

const BUCKET: &str = "aws_s3_bucket";
const KEYS: &[&str] = &["id", "bucket"];

fn incoming(e: &Eval<'_>, companion: &str) -> Incoming {
    e.incoming(BUCKET, companion, &["bucket"], KEYS)
}

/// `apply_server_side_encryption_by_default` blocks of the bucket (inline and companions),
/// with the resource index they come from.
fn sse_defaults<'a>(e: &Eval<'a>, bucket: usize, enc: &Incoming) -> Vec<(usize, &'a Value)> {
    let mut out = Vec::new();
    let b = e.res(bucket);
    for rule in blocks(b.get(&["server_side_encryption_configuration", "0", "rule"])) {
        for d in blocks(rule.get("apply_server_side_encryption_by_default")) {
            out.push((bucket, d));
        }
    }
    for &c in enc.of(bucket) {
        for rule in blocks(e.res(c).get(&["rule"])) {
            for d in blocks(rule.get("apply_server_side_encryption_by_default")) {
                out.push((c, d));
            }
        }
    }
    out
}

pub(super) fn encryption(e: &Eval<'_>, out: &mut Vec<(String, String)>) {
    let enc = incoming(e, "aws_s3_bucket_server_side_encryption_configuration");
    for b in e.judged(BUCKET, &enc) {
        let res = e.res(b);
        if enc.of(b).is_empty() && sse_defaults(e, b, &enc).is_empty() {
            out.push((
                res.address.clone(),
                "bucket has no server-side encryption: no aws_s3_bucket_server_side_encryption_configuration refers to it".to_string(),
            ));
        }
    }
}

pub(super) fn customer_managed_key(e: &Eval<'_>, out: &mut Vec<(String, String)>) {
    if !e.config.require_customer_managed_keys.applies(e.ctx) {
        return;
    }
    let enc = incoming(e, "aws_s3_bucket_server_side_encryption_configuration");
    for b in e.judged(BUCKET, &enc) {
        let defaults = sse_defaults(e, b, &enc);
        let cmk = defaults.iter().any(|(src, d)| {
            let algorithm = d.get("sse_algorithm").and_then(Value::as_str).unwrap_or("");
            if !algorithm.starts_with("aws:kms") {
                return false;
            }
            match d.get("kms_master_key_id") {
                Some(Value::String(k)) if !k.is_empty() => {
                    !k.starts_with("alias/aws/") && !k.ends_with(":alias/aws/s3")
                }
                _ => {
                    // Unknown at plan time: a customer key when the configuration points at one.
                    let r = e.res(*src);
                    e.plan
                        .refs(
                            r,
                            &[
                                "rule",
                                "apply_server_side_encryption_by_default",
                                "kms_master_key_id",
                            ],
                        )
                        .into_iter()
                        .chain(e.plan.refs(
                            r,
                            &[
                                "server_side_encryption_configuration",
                                "rule",
                                "apply_server_side_encryption_by_default",
                                "kms_master_key_id",
                            ],
                        ))
                        .any(|i| {
                            matches!(
                                e.res(i).r#type.as_str(),
                                "aws_kms_key" | "aws_kms_alias" | "aws_kms_replica_key"
                            )
                        })
                }
            }
        });
        if !cmk {
            out.push((
                e.res(b).address.clone(),
                format!(
                    "environment `{}` requires S3 encryption with a customer-managed KMS key; this bucket uses {}",
                    e.ctx.environment,
                    if defaults.is_empty() { "no encryption configuration" } else { "SSE-S3 or an AWS-managed key" }
                ),
            ));
        }
    }
}

pub(super) fn public_access_block(e: &Eval<'_>, out: &mut Vec<(String, String)>) {
    const FLAGS: [&str; 4] = [
        "block_public_acls",
        "block_public_policy",
        "ignore_public_acls",
        "restrict_public_buckets",
    ];
    let account_wide = e
        .plan
        .of_type("aws_s3_account_public_access_block")
        .iter()
        .any(|&i| {
            let r = e.res(i);
            !r.action.destroys()
                && FLAGS
                    .iter()
                    .all(|f| r.bool(&[f]) == Some(true) || r.unknown(&[f]))
        });
    if account_wide {
        return;
    }
    let pab = incoming(e, "aws_s3_bucket_public_access_block");
    for b in e.judged(BUCKET, &pab) {
        let blocks = pab.of(b);
        let address = e.res(b).address.clone();
        if blocks.is_empty() {
            out.push((
                address,
                "bucket has no aws_s3_bucket_public_access_block".to_string(),
            ));
            continue;
        }
        let off: Vec<&str> = FLAGS
            .iter()
            .copied()
            .filter(|f| {
                !blocks.iter().any(|&c| {
                    let r = e.res(c);
                    r.bool(&[f]) == Some(true) || r.unknown(&[f])
                })
            })
            .collect();
        if !off.is_empty() {
            out.push((
                address,
                format!(
                    "the bucket's public access block leaves {} off",
                    off.join(", ")
                ),
            ));
        }
    }
}

/// (versioning enabled, MFA delete enabled), from companions and inline blocks; unknown
/// values count as compliant.
fn versioning_state(e: &Eval<'_>, b: usize, ver: &Incoming) -> (bool, bool) {
    let res = e.res(b);
    let mut enabled = is_true(res.get(&["versioning", "0", "enabled"]));
    let mut mfa = is_true(res.get(&["versioning", "0", "mfa_delete"]));
    for &c in ver.of(b) {
        let r = e.res(c);
        let status = ["versioning_configuration", "0", "status"];
        enabled |= r.str(&status) == Some("Enabled") || r.unknown(&status);
        let m = ["versioning_configuration", "0", "mfa_delete"];
        mfa |= r.str(&m) == Some("Enabled") || r.unknown(&m);
    }
    (enabled, mfa)
}

pub(super) fn versioning(e: &Eval<'_>, out: &mut Vec<(String, String)>) {
    let ver = incoming(e, "aws_s3_bucket_versioning");
    for b in e.judged(BUCKET, &ver) {
        if !versioning_state(e, b, &ver).0 {
            out.push((
                e.res(b).address.clone(),
                "bucket versioning is not enabled".to_string(),
            ));
        }
    }
}

pub(super) fn mfa_delete(e: &Eval<'_>, out: &mut Vec<(String, String)>) {
    let ver = incoming(e, "aws_s3_bucket_versioning");
    for b in e.judged(BUCKET, &ver) {
        if !versioning_state(e, b, &ver).1 {
            out.push((
                e.res(b).address.clone(),
                "bucket versioning does not require MFA to delete versions".to_string(),
            ));
        }
    }
}

pub(super) fn noncurrent_lifecycle(e: &Eval<'_>, out: &mut Vec<(String, String)>) {
    let lc = incoming(e, "aws_s3_bucket_lifecycle_configuration");
    for b in e.judged(BUCKET, &lc) {
        let res = e.res(b);
        let inline = blocks(res.get(&["lifecycle_rule"])).iter().any(|r| {
            is_true(r.get("enabled"))
                && (!blocks(r.get("noncurrent_version_expiration")).is_empty()
                    || !blocks(r.get("noncurrent_version_transition")).is_empty())
        });
        let companion = lc.of(b).iter().any(|&c| {
            let r = e.res(c);
            r.unknown(&["rule"])
                || blocks(r.get(&["rule"])).iter().any(|rule| {
                    rule.get("status").and_then(Value::as_str) != Some("Disabled")
                        && (!blocks(rule.get("noncurrent_version_expiration")).is_empty()
                            || !blocks(rule.get("noncurrent_version_transition")).is_empty())
                })
        });
        if !inline && !companion {
            out.push((
                res.address.clone(),
                "no enabled lifecycle rule expires or transitions noncurrent object versions"
                    .to_string(),
            ));
        }
    }
}

pub(super) fn access_logging(e: &Eval<'_>, out: &mut Vec<(String, String)>) {
    let logging = incoming(e, "aws_s3_bucket_logging");
    let targets = e.incoming(BUCKET, "aws_s3_bucket_logging", &["target_bucket"], KEYS);
    // Buckets named as an inline logging target are log buckets too.
    let inline_targets: Vec<&str> = e
        .plan
        .of_type(BUCKET)
        .iter()
        .flat_map(|&i| blocks(e.res(i).get(&["logging"])))
        .filter_map(|l| l.get("target_bucket").and_then(Value::as_str))
        .collect();
    for b in e.judged(BUCKET, &logging) {
        let res = e.res(b);
        let is_log_bucket = !targets.of(b).is_empty()
            || KEYS
                .iter()
                .filter_map(|k| res.str(&[k]))
                .any(|name| inline_targets.contains(&name));
        let inline = !blocks(res.get(&["logging"])).is_empty();
        if !is_log_bucket && !inline && logging.of(b).is_empty() {
            out.push((
                res.address.clone(),
                "bucket has no access logging (no aws_s3_bucket_logging refers to it)".to_string(),
            ));
        }
    }
}

pub(super) fn replication(e: &Eval<'_>, out: &mut Vec<(String, String)>) {
    let rep = incoming(e, "aws_s3_bucket_replication_configuration");
    for b in e.judged(BUCKET, &rep) {
        let res = e.res(b);
        let critical = e.tags(res).is_some_and(|tags| {
            tags.get(&e.config.criticality_tag)
                .and_then(Value::as_str)
                .is_some_and(|v| v.eq_ignore_ascii_case("critical"))
        });
        if !critical {
            continue;
        }
        let inline = !blocks(get(&res.values, &["replication_configuration"])).is_empty();
        if !inline && rep.of(b).is_empty() {
            out.push((
                res.address.clone(),
                format!(
                    "bucket is tagged {}=critical but is not replicated to another region",
                    e.config.criticality_tag
                ),
            ));
        }
    }
}
