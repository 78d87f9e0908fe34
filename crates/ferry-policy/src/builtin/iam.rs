//! IAM rules over policy documents: JSON policies (`aws_iam_policy.policy`, role, user and
//! group inline policies, `aws_iam_role.inline_policy`, trust policies) and
//! `aws_iam_policy_document` data sources. When a policy attribute is unknown at plan time
//! and refers to a policy document data source, the data source's statements are read from
//! its values, or from its configuration when it is only read during apply.

use serde_json::Value;

use super::{blocks, Eval};
use crate::plan::Resource;

/// One statement, normalised from either representation.
#[derive(Debug, Default)]
struct Statement {
    allow: bool,
    actions: Vec<String>,
    not_action: bool,
    resources: Vec<String>,
    /// (principal type, identifier): ("AWS", "*"), ("Service", "ec2.amazonaws.com").
    principals: Vec<(String, String)>,
    /// Condition keys, lowercased: `sts:externalid`, `aws:principalorgid`.
    condition_keys: Vec<String>,
}

/// A document and where it was found, for messages.
struct Document {
    origin: String,
    statements: Vec<Statement>,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect(),
        _ => Vec::new(),
    }
}

fn from_json(doc: &Value) -> Vec<Statement> {
    let stmts = match doc.get("Statement") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(obj @ Value::Object(_)) => vec![obj],
        _ => Vec::new(),
    };
    stmts
        .into_iter()
        .map(|s| {
            let mut principals = Vec::new();
            match s.get("Principal") {
                Some(Value::String(p)) => principals.push(("AWS".to_string(), p.clone())),
                Some(Value::Object(map)) => {
                    for (ty, ids) in map {
                        for id in strings(Some(ids)) {
                            principals.push((ty.clone(), id));
                        }
                    }
                }
                _ => {}
            }
            let condition_keys = s
                .get("Condition")
                .and_then(Value::as_object)
                .into_iter()
                .flat_map(|ops| ops.values())
                .filter_map(Value::as_object)
                .flat_map(|keys| keys.keys().map(|k| k.to_ascii_lowercase()))
                .collect();
            Statement {
                allow: s.get("Effect").and_then(Value::as_str) == Some("Allow"),
                actions: strings(s.get("Action").or_else(|| s.get("NotAction"))),
                not_action: s.get("NotAction").is_some(),
                resources: strings(s.get("Resource")),
                principals,
                condition_keys,
            }
        })
        .collect()
}

/// `aws_iam_policy_document` statement blocks. `read` fetches a field either from values
/// (`statement[].actions`) or from configuration expressions (`{"constant_value": …}`).
fn from_blocks(stmts: &[Value], read: fn(&Value, &str) -> Option<Value>) -> Vec<Statement> {
    stmts
        .iter()
        .map(|s| {
            let field = |k: &str| read(s, k);
            let actions = strings(field("actions").as_ref());
            let not_actions = strings(field("not_actions").as_ref());
            let principals = blocks(s.get("principals"))
                .iter()
                .flat_map(|p| {
                    let ty = read(p, "type")
                        .and_then(|t| t.as_str().map(String::from))
                        .unwrap_or_default();
                    strings(read(p, "identifiers").as_ref())
                        .into_iter()
                        .map(move |id| (ty.clone(), id))
                })
                .collect();
            let condition_keys = blocks(s.get("condition"))
                .iter()
                .filter_map(|c| read(c, "variable"))
                .filter_map(|v| v.as_str().map(str::to_ascii_lowercase))
                .collect();
            Statement {
                allow: field("effect")
                    .and_then(|e| e.as_str().map(String::from))
                    .is_none_or(|e| e == "Allow"),
                not_action: actions.is_empty() && !not_actions.is_empty(),
                actions: if actions.is_empty() {
                    not_actions
                } else {
                    actions
                },
                resources: strings(field("resources").as_ref()),
                principals,
                condition_keys,
            }
        })
        .collect()
}

fn value_field(v: &Value, k: &str) -> Option<Value> {
    v.get(k).filter(|x| !x.is_null()).cloned()
}

fn config_field(v: &Value, k: &str) -> Option<Value> {
    v.get(k)
        .and_then(|x| x.get("constant_value"))
        .filter(|x| !x.is_null())
        .cloned()
}

/// The documents held by `res` at `attr` (a JSON string), following references to
/// `aws_iam_policy_document` data sources when the string is unknown.
fn documents(e: &Eval<'_>, res: &Resource, attr: &[&str]) -> Vec<Document> {
    if let Some(Value::String(text)) = res.get(attr) {
        return serde_json::from_str::<Value>(text)
            .ok()
            .map(|doc| Document {
                origin: attr.join("."),
                statements: from_json(&doc),
            })
            .into_iter()
            .collect();
    }
    let mut out = Vec::new();
    for i in e.plan.refs(res, attr) {
        let data = e.res(i);
        if data.r#type != "aws_iam_policy_document" {
            continue;
        }
        let statements = if let Some(Value::String(json)) = data.get(&["json"]) {
            serde_json::from_str::<Value>(json)
                .map(|d| from_json(&d))
                .unwrap_or_default()
        } else if let Some(Value::Array(stmts)) = data.get(&["statement"]) {
            from_blocks(stmts, value_field)
        } else {
            e.plan
                .config_blocks(data, "statement")
                .map(|stmts| from_blocks(stmts, config_field))
                .unwrap_or_default()
        };
        out.push(Document {
            origin: data.address.clone(),
            statements,
        });
    }
    out
}

const POLICY_ATTRS: &[(&str, &[&str])] = &[
    ("aws_iam_policy", &["policy"]),
    ("aws_iam_role_policy", &["policy"]),
    ("aws_iam_user_policy", &["policy"]),
    ("aws_iam_group_policy", &["policy"]),
];

/// Every permission policy document of a changed resource: (address, document).
fn permission_documents(e: &Eval<'_>) -> Vec<(String, Document)> {
    let mut out = Vec::new();
    for (ty, attr) in POLICY_ATTRS {
        for i in e.plan.changed_of_type(ty) {
            let r = e.res(i);
            for d in documents(e, r, attr) {
                out.push((r.address.clone(), d));
            }
        }
    }
    for i in e.plan.changed_of_type("aws_iam_role") {
        let r = e.res(i);
        let n = blocks(r.get(&["inline_policy"])).len().max(1);
        for k in 0..n {
            let idx = k.to_string();
            for d in documents(e, r, &["inline_policy", &idx, "policy"]) {
                out.push((r.address.clone(), d));
            }
        }
    }
    out
}

fn trust_documents(e: &Eval<'_>) -> Vec<(String, Document)> {
    let mut out = Vec::new();
    for i in e.plan.changed_of_type("aws_iam_role") {
        let r = e.res(i);
        for d in documents(e, r, &["assume_role_policy"]) {
            out.push((r.address.clone(), d));
        }
    }
    out
}

fn service_wildcard(action: &str) -> bool {
    action == "*"
        || action
            .split_once(':')
            .is_some_and(|(svc, verb)| !svc.is_empty() && verb == "*")
}

/// Read-only verbs; anything else is a write.
const READ_VERBS: &[&str] = &[
    "Get", "List", "Describe", "Head", "View", "Search", "Lookup", "Query", "Scan", "BatchGet",
    "Select", "Check", "Estimate", "Preview", "Validate",
];

fn is_write(action: &str) -> bool {
    if action == "*" {
        return true;
    }
    let Some((_, verb)) = action.split_once(':') else {
        return true;
    };
    !READ_VERBS.iter().any(|r| verb.starts_with(r))
}

/// Glob match with `*` and `?`, case-insensitive (IAM action names are).
fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let t: Vec<char> = text.to_ascii_lowercase().chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

const SENSITIVE: &[&str] = &["iam:PassRole", "sts:AssumeRole", "kms:Decrypt"];

pub(super) fn wildcard_actions(e: &Eval<'_>, out: &mut Vec<(String, String)>) {
    for (address, doc) in permission_documents(e) {
        for s in doc.statements.iter().filter(|s| s.allow) {
            if s.not_action {
                out.push((
                    address.clone(),
                    format!(
                        "{}: an Allow statement uses NotAction, granting every action but a few",
                        doc.origin
                    ),
                ));
            } else if let Some(a) = s.actions.iter().find(|a| service_wildcard(a)) {
                out.push((address.clone(), format!("{}: allows `{a}`", doc.origin)));
            }
        }
    }
}

pub(super) fn wildcard_resources(e: &Eval<'_>, out: &mut Vec<(String, String)>) {
    for (address, doc) in permission_documents(e) {
        for s in doc.statements.iter().filter(|s| s.allow) {
            if !s.resources.iter().any(|r| r == "*") {
                continue;
            }
            let writes: Vec<&str> = s
                .actions
                .iter()
                .filter(|a| s.not_action || is_write(a))
                .map(String::as_str)
                .collect();
            if !writes.is_empty() {
                out.push((
                    address.clone(),
                    format!(
                        "{}: allows write actions ({}) on Resource \"*\"",
                        doc.origin,
                        writes.join(", ")
                    ),
                ));
            }
        }
    }
}

pub(super) fn sensitive_without_condition(e: &Eval<'_>, out: &mut Vec<(String, String)>) {
    for (address, doc) in permission_documents(e) {
        for s in doc.statements.iter().filter(|s| s.allow && !s.not_action) {
            if !s.condition_keys.is_empty() {
                continue;
            }
            let hits: Vec<&str> = SENSITIVE
                .iter()
                .copied()
                .filter(|sens| {
                    s.actions
                        .iter()
                        .any(|a| !service_wildcard(a) && glob(a, sens))
                })
                .collect();
            if !hits.is_empty() {
                out.push((
                    address.clone(),
                    format!(
                        "{}: allows {} without a Condition",
                        doc.origin,
                        hits.join(", ")
                    ),
                ));
            }
        }
    }
}

const ORG_KEYS: &[&str] = &["aws:principalorgid", "aws:principalorgpaths"];

pub(super) fn trust_any_principal(e: &Eval<'_>, out: &mut Vec<(String, String)>) {
    for (address, doc) in trust_documents(e) {
        for s in doc.statements.iter().filter(|s| s.allow) {
            let any = s.principals.iter().any(|(_, id)| id == "*");
            let org = s
                .condition_keys
                .iter()
                .any(|k| ORG_KEYS.contains(&k.as_str()));
            if any && !org {
                out.push((
                    address.clone(),
                    "the role's trust policy allows any principal (\"*\") to assume it".to_string(),
                ));
            }
        }
    }
}

/// The account of an AWS principal (`123456789012` or `arn:aws:iam::123456789012:…`).
fn principal_account(id: &str) -> Option<&str> {
    if id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit()) {
        return Some(id);
    }
    super::arn_account(id)
}

pub(super) fn cross_account_trust(e: &Eval<'_>, out: &mut Vec<(String, String)>) {
    for (address, doc) in trust_documents(e) {
        for s in doc.statements.iter().filter(|s| s.allow) {
            let guarded = s
                .condition_keys
                .iter()
                .any(|k| k == "sts:externalid" || ORG_KEYS.contains(&k.as_str()));
            if guarded {
                continue;
            }
            let foreign: Vec<&str> = s
                .principals
                .iter()
                .filter(|(ty, _)| ty == "AWS")
                .filter_map(|(_, id)| principal_account(id))
                .filter(|acct| !e.own_accounts.contains(*acct))
                .collect();
            if !foreign.is_empty() {
                out.push((
                    address.clone(),
                    format!(
                        "the role trusts account {} without an sts:ExternalId or aws:PrincipalOrgID condition",
                        foreign.join(", ")
                    ),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_and_verbs() {
        assert!(glob("iam:Pass*", "iam:PassRole"));
        assert!(glob("STS:assumerole", "sts:AssumeRole"));
        assert!(!glob("kms:Encrypt", "kms:Decrypt"));
        assert!(glob("kms:*crypt", "kms:Decrypt"));
        assert!(!is_write("s3:GetObject"));
        assert!(!is_write("ec2:Describe*"));
        assert!(is_write("s3:PutObject"));
        assert!(is_write("s3:*"));
        assert!(service_wildcard("s3:*") && service_wildcard("*") && !service_wildcard("s3:Get*"));
    }
}
