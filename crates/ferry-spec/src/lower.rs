//! Lowering: from the positioned YAML tree to a checked [`PipelineSpec`].
//!
//! This is hand-written rather than derived so that every problem can name the exact node, so
//! that lowering goes on after a problem and reports all of them in one pass, and so that
//! messages can be specific ("stage `plan` is built in") rather than generic. The sets of keys
//! allowed at each level are constants here; a test keeps them equal to the JSON Schema's.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::diagnostic::{Pos, Sink};
use crate::model::{
    ApprovalSpec, CommandSpec, EnvironmentSpec, ExecutionMode, FailOn, NotifySpec, NotifyTarget,
    PipelineSpec, PolicySpec, SecretRef, SecretTarget, SourceSpec, StagesSpec, TerraformSpec,
    VersionConstraint,
};
use crate::yaml::{Entry, Node, NodeKind, ScalarType};

pub(crate) const ROOT_KEYS: &[&str] = &[
    "version",
    "name",
    "source",
    "mode",
    "terraform",
    "timeout",
    "env",
    "environments",
    "secrets",
    "params",
    "stages",
    "notify",
    "policy",
];
pub(crate) const SOURCE_KEYS: &[&str] = &["branches", "paths"];
pub(crate) const TERRAFORM_KEYS: &[&str] = &["dir", "binary", "version"];
pub(crate) const ENVIRONMENT_KEYS: &[&str] = &[
    "name",
    "auto_apply",
    "protected",
    "mode",
    "approval",
    "vars_file",
    "env",
    "timeout",
    "policy",
];
pub(crate) const POLICY_KEYS: &[&str] = &[
    "dir",
    "required_tags",
    "environment_tag",
    "name_pattern",
    "require_customer_managed_keys",
    "require_cloudtrail",
    "criticality_tag",
    "account_ids",
    "extra_stateful_types",
    "disabled_rules",
    "max_waiver_days",
];
pub(crate) const ENV_POLICY_KEYS: &[&str] = &["fail_on"];
pub(crate) const APPROVAL_KEYS: &[&str] = &["approvers", "required", "timeout"];
pub(crate) const SECRET_KEYS: &[&str] = &["name", "as", "file", "stages", "branches"];
pub(crate) const STAGES_KEYS: &[&str] = &["validate", "test", "verify"];
/// Stages Ferry runs itself; naming one under `stages` gets its own error.
const BUILTIN_STAGES: &[&str] = &["plan", "policy", "approval", "apply"];
pub(crate) const COMMAND_KEYS: &[&str] = &["name", "run", "timeout"];
pub(crate) const NOTIFY_KEYS: &[&str] = &["on", "webhook"];
pub(crate) const WEBHOOK_KEYS: &[&str] = &["url", "secret"];

/// Event names, spelled as in PRODUCT.md §2.
pub(crate) const EVENTS: &[&str] = &[
    "PIPELINE_EXECUTION_STARTED",
    "PIPELINE_EXECUTION_SUCCEEDED",
    "PIPELINE_EXECUTION_FAILED",
    "PIPELINE_EXECUTION_CANCELED",
    "PIPELINE_EXECUTION_SUPERSEDED",
    "PIPELINE_EXECUTION_RESUMED",
    "STAGE_EXECUTION_STARTED",
    "STAGE_EXECUTION_SUCCEEDED",
    "STAGE_EXECUTION_FAILED",
    "STAGE_EXECUTION_CANCELED",
    "STAGE_EXECUTION_RESUMED",
    "ACTION_EXECUTION_STARTED",
    "ACTION_EXECUTION_SUCCEEDED",
    "ACTION_EXECUTION_FAILED",
    "ACTION_EXECUTION_CANCELED",
    "MANUAL_APPROVAL_NEEDED",
    "MANUAL_APPROVAL_SUCCEEDED",
    "MANUAL_APPROVAL_FAILED",
    "DRIFT_DETECTED",
    "POLICY_VIOLATION",
    "STATE_FORCE_UNLOCKED",
    "STATE_ROLLED_BACK",
];

pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);
pub(crate) const DEFAULT_BINARY: &str = "terraform";
pub(crate) const IMPLICIT_ENVIRONMENT: &str = "default";

const NAME_RULE: &str =
    "use lowercase letters, digits, `-` and `_`, start with a letter or digit, at most 63 characters";

/// Lowers the document root. Returns `None` when nothing sensible can be built; the caller
/// still drops the spec if any error was reported.
pub(crate) fn lower_root(cx: &mut Sink, root: &Node) -> Option<PipelineSpec> {
    let NodeKind::Map(_) = root.kind else {
        cx.error(
            root.pos,
            format!(
                "expected a mapping at the top level, found {}",
                root.describe()
            ),
        )
        .hint("a ferry.yaml needs at least `version: 1`, `name` and `terraform`");
        return None;
    };
    let f = fields(cx, root, "at the top level", ROOT_KEYS)?;

    let version = f
        .require(cx, "version", Some("add `version: 1`"))
        .and_then(|n| lower_version(cx, n));
    let name = f
        .require(cx, "name", None)
        .and_then(|n| name(cx, n, "pipeline name"));
    let source = f
        .get("source")
        .map_or(Some(SourceSpec::default()), |n| lower_source(cx, n));
    let mode = f
        .get("mode")
        .map_or(Some(ExecutionMode::default()), |n| lower_mode(cx, n));
    let terraform = f
        .require(cx, "terraform", Some("add `terraform: { dir: . }`"))
        .and_then(|n| lower_terraform(cx, n));
    let timeout = f
        .get("timeout")
        .map_or(Some(DEFAULT_TIMEOUT), |n| duration(cx, n));
    let env = f
        .get("env")
        .map_or(Some(BTreeMap::new()), |n| lower_env(cx, n));
    let environments = match f.entry("environments") {
        Some(e) => lower_environments(cx, e),
        None => Some(vec![implicit_environment()]),
    };
    // Secrets and parameters share their targets: one variable or file, one value.
    let mut targets = HashMap::new();
    let secrets = f.get("secrets").map_or(Some(Vec::new()), |n| {
        lower_secrets(cx, n, "secret", &mut targets)
    });
    let params = f.get("params").map_or(Some(Vec::new()), |n| {
        lower_secrets(cx, n, "parameter", &mut targets)
    });
    let stages = f
        .get("stages")
        .map_or(Some(StagesSpec::default()), |n| lower_stages(cx, n));
    let notify = f
        .get("notify")
        .map_or(Some(Vec::new()), |n| lower_notify(cx, n));
    let policy = f
        .get("policy")
        .map_or(Some(PolicySpec::default()), |n| lower_policy(cx, n));

    Some(PipelineSpec {
        version: version?,
        name: name?,
        source: source?,
        mode: mode?,
        terraform: terraform?,
        timeout: timeout?,
        env: env?,
        environments: environments?,
        stages: stages?,
        secrets: secrets?,
        params: params?,
        notify: notify?,
        policy: policy?,
    })
}

fn lower_policy(cx: &mut Sink, node: &Node) -> Option<PolicySpec> {
    let f = fields(cx, node, "in `policy`", POLICY_KEYS)?;
    let defaults = PolicySpec::default();
    let dir = f.get("dir").map_or(Some(defaults.dir), |n| dir_path(cx, n));
    let opt_list = |cx: &mut Sink, key: &str, what: &str| {
        f.get(key)
            .map_or(Some(None), |n| string_list(cx, n, what).map(Some))
    };
    let required_tags = opt_list(cx, "required_tags", "tag");
    let account_ids = opt_list(cx, "account_ids", "account id");
    let extra_stateful_types = opt_list(cx, "extra_stateful_types", "resource type");
    let disabled_rules = opt_list(cx, "disabled_rules", "rule id");
    let opt_string = |cx: &mut Sink, key: &str| {
        f.get(key).map_or(Some(None), |n| {
            non_empty_string(cx, n).map(|s| Some(s.to_owned()))
        })
    };
    let environment_tag = opt_string(cx, "environment_tag");
    let criticality_tag = opt_string(cx, "criticality_tag");
    let name_pattern = match f.get("name_pattern") {
        Some(n) => match non_empty_string(cx, n) {
            Some(text) => match regex::Regex::new(text) {
                Ok(_) => Some(Some(text.to_owned())),
                Err(e) => {
                    let first = e.to_string();
                    let last = first.lines().last().unwrap_or("").trim();
                    let last = last.trim_start_matches("error: ").to_owned();
                    cx.error(n.pos, format!("invalid `name_pattern`: {last}"));
                    None
                }
            },
            None => None,
        },
        None => Some(None),
    };
    let cmk = match f.get("require_customer_managed_keys") {
        Some(n) => match string(cx, n) {
            Some(t @ ("never" | "protected" | "always")) => Some(Some(t.to_owned())),
            Some(t) => {
                cx.error(n.pos, format!("unknown value `{t}`"))
                    .hint("expected `never`, `protected` or `always`");
                None
            }
            None => None,
        },
        None => Some(None),
    };
    let require_cloudtrail = f
        .get("require_cloudtrail")
        .map_or(Some(None), |n| boolean(cx, n).map(Some));
    let max_waiver_days = match f.get("max_waiver_days") {
        Some(n) => match n.scalar().filter(|s| s.ty() == ScalarType::Int) {
            Some(s) => match s.as_int().and_then(|v| u32::try_from(v).ok()) {
                Some(v) if (1..=365).contains(&v) => Some(v),
                _ => {
                    cx.error(n.pos, "`max_waiver_days` must be between 1 and 365");
                    None
                }
            },
            None => {
                cx.error(
                    n.pos,
                    format!("expected an integer, found {}", n.describe()),
                );
                None
            }
        },
        None => Some(defaults.max_waiver_days),
    };
    Some(PolicySpec {
        dir: dir?,
        required_tags: required_tags?,
        environment_tag: environment_tag?,
        name_pattern: name_pattern?,
        require_customer_managed_keys: cmk?,
        require_cloudtrail: require_cloudtrail?,
        criticality_tag: criticality_tag?,
        account_ids: account_ids?.unwrap_or_default(),
        extra_stateful_types: extra_stateful_types?.unwrap_or_default(),
        disabled_rules: disabled_rules?.unwrap_or_default(),
        max_waiver_days: max_waiver_days?,
    })
}

fn lower_env_policy(cx: &mut Sink, node: &Node) -> Option<Option<FailOn>> {
    let f = fields(cx, node, "in environment `policy`", ENV_POLICY_KEYS)?;
    let Some(n) = f.get("fail_on") else {
        return Some(None);
    };
    let text = string(cx, n)?;
    match FailOn::parse(text) {
        Some(s) => Some(Some(s)),
        None => {
            let d = cx.error(n.pos, format!("unknown severity `{text}`"));
            match suggest(text, &FailOn::NAMES) {
                Some(s) => d.hint(format!("did you mean `{s}`?")),
                None => d.hint("expected one of `info`, `low`, `medium`, `high`, `critical`"),
            };
            None
        }
    }
}

fn implicit_environment() -> EnvironmentSpec {
    EnvironmentSpec {
        name: IMPLICIT_ENVIRONMENT.to_owned(),
        auto_apply: true,
        protected: false,
        mode: None,
        approval: ApprovalSpec::default(),
        vars_file: None,
        env: BTreeMap::new(),
        timeout: None,
        policy_fail_on: None,
    }
}

fn lower_version(cx: &mut Sink, node: &Node) -> Option<u32> {
    let Some(v) = node.scalar().filter(|s| s.ty() == ScalarType::Int) else {
        cx.error(
            node.pos,
            format!("expected an integer, found {}", node.describe()),
        )
        .hint("write `version: 1`");
        return None;
    };
    if v.as_int() != Some(1) {
        cx.error(node.pos, format!("unsupported version `{}`", v.text))
            .hint("this ferry understands `version: 1`");
        return None;
    }
    Some(1)
}

fn lower_source(cx: &mut Sink, node: &Node) -> Option<SourceSpec> {
    let f = fields(cx, node, "in `source`", SOURCE_KEYS)?;
    let branches = f
        .get("branches")
        .map_or(Some(Vec::new()), |n| string_list(cx, n, "branch"));
    let paths = f
        .get("paths")
        .map_or(Some(Vec::new()), |n| string_list(cx, n, "path"));
    Some(SourceSpec {
        branches: branches?,
        paths: paths?,
    })
}

fn lower_mode(cx: &mut Sink, node: &Node) -> Option<ExecutionMode> {
    let text = string(cx, node)?;
    match text {
        "queued" => Some(ExecutionMode::Queued),
        "superseded" => Some(ExecutionMode::Superseded),
        "parallel" => {
            cx.error(node.pos, "mode `parallel` is not supported yet")
                .hint("use `queued` or `superseded`");
            None
        }
        _ => {
            let d = cx.error(node.pos, format!("unknown mode `{text}`"));
            match suggest(text, &["queued", "superseded"]) {
                Some(s) => d.hint(format!("did you mean `{s}`?")),
                None => d.hint("expected `queued` or `superseded`"),
            };
            None
        }
    }
}

fn lower_terraform(cx: &mut Sink, node: &Node) -> Option<TerraformSpec> {
    // Shorthand: `terraform: infra/network`.
    if node.scalar().is_some_and(|s| s.ty() == ScalarType::Str) {
        let dir = dir_path(cx, node)?;
        return Some(TerraformSpec {
            dir,
            binary: DEFAULT_BINARY.to_owned(),
            version: None,
        });
    }
    if !matches!(node.kind, NodeKind::Map(_)) {
        cx.error(
            node.pos,
            format!(
                "expected a mapping or a directory, found {}",
                node.describe()
            ),
        )
        .hint("write `terraform: { dir: infra/network }` or `terraform: infra/network`");
        return None;
    }
    let f = fields(cx, node, "in `terraform`", TERRAFORM_KEYS)?;
    let dir = f
        .require(cx, "dir", Some("use `dir: .` for the repository root"))
        .and_then(|n| dir_path(cx, n));
    let binary = match f.get("binary") {
        Some(n) => non_empty_string(cx, n).map(str::to_owned),
        None => Some(DEFAULT_BINARY.to_owned()),
    };
    let version = match f.get("version") {
        Some(n) => {
            let text = string(cx, n);
            match text.map(VersionConstraint::parse) {
                Some(Ok(c)) => Some(Some(c)),
                Some(Err(e)) => {
                    cx.error(n.pos, format!("invalid version constraint: {e}"))
                        .hint("write constraints like `>= 1.6`, `~> 1.6` or `>= 1.6, < 2.0`");
                    None
                }
                None => None,
            }
        }
        None => Some(None),
    };
    Some(TerraformSpec {
        dir: dir?,
        binary: binary?,
        version: version?,
    })
}

fn lower_env(cx: &mut Sink, node: &Node) -> Option<BTreeMap<String, String>> {
    let NodeKind::Map(entries) = &node.kind else {
        cx.error(
            node.pos,
            format!(
                "expected a mapping of variable names to values, found {}",
                node.describe()
            ),
        );
        return None;
    };
    let mut env = BTreeMap::new();
    let mut ok = true;
    for e in entries {
        ok &= env_var_name(cx, &e.key, e.key_pos);
        // Numbers and booleans are accepted as written, as in other CI formats.
        match e.value.scalar().filter(|s| s.ty() != ScalarType::Null) {
            Some(s) => {
                env.insert(e.key.clone(), s.text.clone());
            }
            None => {
                cx.error(
                    e.value.pos,
                    format!("expected a string, found {}", e.value.describe()),
                )
                .hint("write `\"\"` for an empty value");
                ok = false;
            }
        }
    }
    ok.then_some(env)
}

fn env_var_name(cx: &mut Sink, name: &str, pos: Pos) -> bool {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        cx.error(pos, format!("invalid environment variable name `{name}`"))
            .hint("use letters, digits and `_`, not starting with a digit");
        return false;
    }
    if name.starts_with("FERRY_") {
        cx.error(
            pos,
            format!("environment variable `{name}` uses the reserved prefix `FERRY_`"),
        )
        .hint("`FERRY_*` variables configure ferry itself and are never passed to actions");
        return false;
    }
    true
}

fn lower_environments(cx: &mut Sink, entry: &Entry) -> Option<Vec<EnvironmentSpec>> {
    let items = list(cx, &entry.value, "a list of environments")?;
    if items.is_empty() {
        cx.error(entry.value.pos, "`environments` must not be empty")
            .hint("remove `environments` to get the single implicit `default` environment");
        return None;
    }
    let mut seen: HashMap<String, Pos> = HashMap::new();
    let mut out = Vec::new();
    let mut ok = true;
    for item in items {
        let Some(env) = lower_environment(cx, item) else {
            ok = false;
            continue;
        };
        let name_pos = item_key_pos(item, "name");
        if let Some(first) = seen.get(&env.name) {
            cx.error(
                name_pos,
                format!("duplicate environment name `{}`", env.name),
            )
            .hint(format!("first defined at line {}", first.line));
            ok = false;
            continue;
        }
        seen.insert(env.name.clone(), name_pos);
        out.push(env);
    }
    ok.then_some(out)
}

fn item_key_pos(node: &Node, key: &str) -> Pos {
    match &node.kind {
        NodeKind::Map(entries) => entries
            .iter()
            .find(|e| e.key == key)
            .map_or(node.pos, |e| e.value.pos),
        _ => node.pos,
    }
}

fn lower_environment(cx: &mut Sink, node: &Node) -> Option<EnvironmentSpec> {
    let f = fields(cx, node, "in environment", ENVIRONMENT_KEYS)?;
    let name = f
        .require(cx, "name", None)
        .and_then(|n| name(cx, n, "environment name"));
    let auto_apply = f.get("auto_apply").map_or(Some(false), |n| boolean(cx, n));
    let protected = f.get("protected").map_or(Some(false), |n| boolean(cx, n));
    let mode = f
        .get("mode")
        .map_or(Some(None), |n| lower_mode(cx, n).map(Some));
    let approval = f
        .get("approval")
        .map_or(Some(ApprovalSpec::default()), |n| lower_approval(cx, n));
    let vars_file = f
        .get("vars_file")
        .map_or(Some(None), |n| file_path(cx, n).map(Some));
    let env = f
        .get("env")
        .map_or(Some(BTreeMap::new()), |n| lower_env(cx, n));
    let timeout = f
        .get("timeout")
        .map_or(Some(None), |n| duration(cx, n).map(Some));
    let policy_fail_on = f
        .get("policy")
        .map_or(Some(None), |n| lower_env_policy(cx, n));
    if let (Some(true), Some(approval)) = (auto_apply, f.entry("approval")) {
        cx.warning(
            approval.key_pos,
            "`approval` is ignored because `auto_apply` is true",
        )
        .hint("remove `approval` or set `auto_apply: false`");
    }
    Some(EnvironmentSpec {
        name: name?,
        auto_apply: auto_apply?,
        protected: protected?,
        mode: mode?,
        approval: approval?,
        vars_file: vars_file?,
        env: env?,
        timeout: timeout?,
        policy_fail_on: policy_fail_on?,
    })
}

fn lower_approval(cx: &mut Sink, node: &Node) -> Option<ApprovalSpec> {
    let f = fields(cx, node, "in `approval`", APPROVAL_KEYS)?;
    let defaults = ApprovalSpec::default();
    let approvers = match f.get("approvers") {
        Some(n) => lower_approvers(cx, n),
        None => Some(Vec::new()),
    };
    let required = match f.get("required") {
        Some(n) => required_count(cx, n),
        None => Some(defaults.required),
    };
    let timeout = f
        .get("timeout")
        .map_or(Some(defaults.timeout), |n| duration(cx, n));
    if let (Some(approvers), Some(required), Some(n)) = (&approvers, required, f.get("required")) {
        // A team may have any number of members, so only a list of plain users can be too short.
        let all_users = approvers.iter().all(|a| !a.starts_with("team:"));
        if !approvers.is_empty() && all_users && required as usize > approvers.len() {
            cx.warning(
                n.pos,
                format!(
                    "`required: {required}` can never be satisfied by {} listed approver{}",
                    approvers.len(),
                    if approvers.len() == 1 { "" } else { "s" }
                ),
            )
            .hint("add approvers, name a team (`team:NAME`) or lower `required`");
        }
    }
    Some(ApprovalSpec {
        approvers: approvers?,
        required: required?,
        timeout: timeout?,
    })
}

fn lower_approvers(cx: &mut Sink, node: &Node) -> Option<Vec<String>> {
    let items = list(cx, node, "a list of approvers")?;
    let mut out: Vec<String> = Vec::new();
    let mut ok = true;
    for item in items {
        let Some(text) = string(cx, item) else {
            ok = false;
            continue;
        };
        let who = text.strip_prefix("team:").unwrap_or(text);
        if text.is_empty() {
            cx.error(item.pos, "approver must not be empty");
            ok = false;
            continue;
        }
        if who.is_empty() || who.chars().any(|c| c.is_whitespace() || c.is_control()) {
            cx.error(item.pos, format!("invalid approver `{text}`"))
                .hint("write a user name like `alice` or a team like `team:platform`");
            ok = false;
            continue;
        }
        if out.iter().any(|a| a == text) {
            cx.warning(item.pos, format!("approver `{text}` is listed twice"));
            continue;
        }
        out.push(text.to_owned());
    }
    ok.then_some(out)
}

fn required_count(cx: &mut Sink, node: &Node) -> Option<u32> {
    let Some(s) = node.scalar().filter(|s| s.ty() == ScalarType::Int) else {
        cx.error(
            node.pos,
            format!("expected an integer, found {}", node.describe()),
        );
        return None;
    };
    match s.as_int() {
        Some(n) if n >= 1 => match u32::try_from(n) {
            Ok(n) => Some(n),
            Err(_) => {
                cx.error(node.pos, format!("`required` is too large: {n}"));
                None
            }
        },
        Some(_) => {
            cx.error(node.pos, "`required` must be at least 1")
                .hint("use `auto_apply: true` for an environment that needs no approval");
            None
        }
        None => {
            cx.error(node.pos, format!("`required` is too large: {}", s.text));
            None
        }
    }
}

fn lower_secrets(
    cx: &mut Sink,
    node: &Node,
    what: &str,
    targets: &mut HashMap<String, (String, usize)>,
) -> Option<Vec<SecretRef>> {
    let items = list(cx, node, &format!("a list of {what}s"))?;
    let mut out = Vec::new();
    let mut ok = true;
    for item in items {
        let Some(secret) = lower_secret(cx, item, what) else {
            ok = false;
            continue;
        };
        let (key, target_what) = match &secret.target {
            SecretTarget::Env(v) => (format!("env:{v}"), format!("environment variable `{v}`")),
            SecretTarget::File(p) => (format!("file:{p}"), format!("file `{p}`")),
        };
        let target_key = if matches!(secret.target, SecretTarget::Env(_)) {
            "as"
        } else {
            "file"
        };
        let pos = item_key_pos(item, target_key);
        if let Some((first, line)) = targets.get(&key) {
            cx.error(
                pos,
                format!("{target_what} is already the target of `{first}`"),
            )
            .hint(format!("see line {line}"));
            ok = false;
            continue;
        }
        targets.insert(key, (secret.name.clone(), pos.line));
        out.push(secret);
    }
    ok.then_some(out)
}

fn lower_secret(cx: &mut Sink, node: &Node, what: &str) -> Option<SecretRef> {
    let place = if what == "secret" {
        "in secret"
    } else {
        "in parameter"
    };
    let f = fields(cx, node, place, SECRET_KEYS)?;
    let name = f.require(cx, "name", None).and_then(|n| secret_name(cx, n));
    let target = match (f.entry("as"), f.entry("file")) {
        (Some(_), Some(file)) => {
            cx.error(
                file.key_pos,
                format!("a {what} takes either `as` or `file`, not both"),
            )
            .hint(format!("list the {what} twice to get both"));
            None
        }
        (Some(e), None) => string(cx, &e.value)
            .filter(|v| env_var_name(cx, v, e.value.pos))
            .map(|v| SecretTarget::Env(v.to_owned())),
        (None, Some(e)) => file_path(cx, &e.value).map(SecretTarget::File),
        (None, None) => {
            cx.error(
                node.pos,
                format!("{what} needs a target: `as` (an environment variable) or `file` (a path)"),
            )
            .hint("for example `as: TF_VAR_db_password`");
            None
        }
    };
    let stages = match f.get("stages") {
        None => Some(Vec::new()),
        Some(n) => string_list(cx, n, "a stage name").and_then(|stages| {
            let mut ok = true;
            let items = match &n.kind {
                NodeKind::Seq(items) => &items[..],
                _ => &[],
            };
            for (stage, item) in stages.iter().zip(items) {
                if !crate::model::SECRET_STAGES.contains(&stage.as_str()) {
                    cx.error(item.pos, format!("unknown stage `{stage}`"))
                        .hint(format!("one of {}", crate::model::SECRET_STAGES.join(", ")));
                    ok = false;
                }
            }
            ok.then_some(stages)
        }),
    };
    let branches = f
        .get("branches")
        .map_or(Some(Vec::new()), |n| string_list(cx, n, "a branch"));
    Some(SecretRef {
        name: name?,
        target: target?,
        stages: stages?,
        branches: branches?,
    })
}

fn secret_name(cx: &mut Sink, node: &Node) -> Option<String> {
    let text = string(cx, node)?;
    let mut chars = text.chars();
    let valid = text.len() <= 128
        && matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        cx.error(node.pos, format!("invalid secret name `{text}`"))
            .hint("use letters, digits and `_` like an environment variable, not starting with a digit, at most 128 characters");
        return None;
    }
    Some(text.to_owned())
}

fn lower_stages(cx: &mut Sink, node: &Node) -> Option<StagesSpec> {
    let f = fields_with(cx, node, "in `stages`", STAGES_KEYS, BUILTIN_STAGES)?;
    let mut ok = true;
    for e in f.entries {
        if BUILTIN_STAGES.contains(&e.key.as_str()) {
            cx.error(
                e.key_pos,
                format!("stage `{}` is built in and cannot be customised", e.key),
            )
            .hint("only `validate`, `test` and `verify` take commands");
            ok = false;
        }
    }
    let mut stage = |key: &str| {
        f.get(key)
            .map_or(Some(None), |n| lower_commands(cx, n).map(Some))
    };
    let (validate, test, verify) = (stage("validate"), stage("test"), stage("verify"));
    if !ok {
        return None;
    }
    Some(StagesSpec {
        validate: validate?,
        test: test?,
        verify: verify?,
    })
}

fn lower_commands(cx: &mut Sink, node: &Node) -> Option<Vec<CommandSpec>> {
    let items = list(cx, node, "a list of commands")?;
    let mut out = Vec::new();
    let mut ok = true;
    for item in items {
        match lower_command(cx, item) {
            Some(c) => out.push(c),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn lower_command(cx: &mut Sink, node: &Node) -> Option<CommandSpec> {
    if let NodeKind::Map(_) = node.kind {
        let f = fields(cx, node, "in command", COMMAND_KEYS)?;
        let run = f
            .require(cx, "run", Some("`run` is the shell command"))
            .and_then(|n| non_empty_string(cx, n));
        let name = f
            .get("name")
            .map_or(Some(None), |n| non_empty_string(cx, n).map(Some));
        let timeout = f
            .get("timeout")
            .map_or(Some(None), |n| duration(cx, n).map(Some));
        let run = run?.to_owned();
        return Some(CommandSpec {
            name: name?.map_or_else(|| run.clone(), str::to_owned),
            run,
            timeout: timeout?,
        });
    }
    if node.scalar().is_none_or(|s| s.ty() != ScalarType::Str) {
        cx.error(
            node.pos,
            format!(
                "expected a command (a string or a mapping with `run`), found {}",
                node.describe()
            ),
        );
        return None;
    }
    let run = non_empty_string(cx, node)?.to_owned();
    Some(CommandSpec {
        name: run.clone(),
        run,
        timeout: None,
    })
}

fn lower_notify(cx: &mut Sink, node: &Node) -> Option<Vec<NotifySpec>> {
    let items = list(cx, node, "a list of notifications")?;
    let mut out = Vec::new();
    let mut ok = true;
    for item in items {
        match lower_notification(cx, item) {
            Some(n) => out.push(n),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn lower_notification(cx: &mut Sink, node: &Node) -> Option<NotifySpec> {
    let f = fields(cx, node, "in notification", NOTIFY_KEYS)?;
    let on = f
        .require(
            cx,
            "on",
            Some("list the events, like `on: [PIPELINE_EXECUTION_FAILED]`"),
        )
        .and_then(|n| events(cx, n));
    let target = match f.get("webhook") {
        Some(n) => lower_webhook(cx, n),
        None => {
            cx.error(node.pos, "notification needs a target")
                .hint("add `webhook: { url: ... }`");
            None
        }
    };
    Some(NotifySpec {
        on: on?,
        target: target?,
    })
}

fn events(cx: &mut Sink, node: &Node) -> Option<Vec<String>> {
    let items = list(cx, node, "a list of event names")?;
    if items.is_empty() {
        cx.error(node.pos, "`on` must name at least one event");
        return None;
    }
    let mut out: Vec<String> = Vec::new();
    let mut ok = true;
    for item in items {
        let Some(text) = string(cx, item) else {
            ok = false;
            continue;
        };
        if !EVENTS.contains(&text) {
            let d = cx.error(item.pos, format!("unknown event `{text}`"));
            match suggest(text, EVENTS) {
                Some(s) => d.hint(format!("did you mean `{s}`?")),
                None => d.hint("see the list of events in the ferry.yaml guide"),
            };
            ok = false;
            continue;
        }
        if out.iter().any(|e| e == text) {
            cx.warning(item.pos, format!("event `{text}` is listed twice"));
            continue;
        }
        out.push(text.to_owned());
    }
    ok.then_some(out)
}

fn lower_webhook(cx: &mut Sink, node: &Node) -> Option<NotifyTarget> {
    let f = fields(cx, node, "in `webhook`", WEBHOOK_KEYS)?;
    let url = f.require(cx, "url", None).and_then(|n| {
        let text = string(cx, n)?;
        let rest = text
            .strip_prefix("https://")
            .or_else(|| text.strip_prefix("http://"));
        if rest
            .is_none_or(|r| r.is_empty() || r.starts_with('/') || r.contains(char::is_whitespace))
        {
            cx.error(n.pos, format!("invalid webhook url `{text}`"))
                .hint("expected an `https://` or `http://` url");
            return None;
        }
        Some(text.to_owned())
    });
    let secret = f
        .get("secret")
        .map_or(Some(None), |n| secret_name(cx, n).map(Some));
    Some(NotifyTarget::Webhook {
        url: url?,
        secret: secret?,
    })
}

// ---- Helpers for scalars and collections -------------------------------------------------

/// The entries of a mapping with unknown keys already reported.
struct Fields<'a> {
    pos: Pos,
    place: &'static str,
    entries: &'a [Entry],
}

impl<'a> Fields<'a> {
    fn entry(&self, key: &str) -> Option<&'a Entry> {
        self.entries.iter().find(|e| e.key == key)
    }

    fn get(&self, key: &str) -> Option<&'a Node> {
        self.entry(key).map(|e| &e.value)
    }

    fn require(&self, cx: &mut Sink, key: &str, hint: Option<&str>) -> Option<&'a Node> {
        let node = self.get(key);
        if node.is_none() {
            let d = cx.error(
                self.pos,
                format!("missing required key `{key}` {}", self.place),
            );
            if let Some(hint) = hint {
                d.hint(hint);
            }
        }
        node
    }
}

/// Checks that `node` is a mapping and reports its keys that are not in `allowed`.
fn fields<'a>(
    cx: &mut Sink,
    node: &'a Node,
    place: &'static str,
    allowed: &[&str],
) -> Option<Fields<'a>> {
    fields_with(cx, node, place, allowed, &[])
}

/// Like [`fields`], leaving the keys in `handled` to the caller's own messages.
fn fields_with<'a>(
    cx: &mut Sink,
    node: &'a Node,
    place: &'static str,
    allowed: &[&str],
    handled: &[&str],
) -> Option<Fields<'a>> {
    let NodeKind::Map(entries) = &node.kind else {
        cx.error(
            node.pos,
            format!("expected a mapping, found {}", node.describe()),
        );
        return None;
    };
    for e in entries {
        if !allowed.contains(&e.key.as_str()) && !handled.contains(&e.key.as_str()) {
            let d = cx.error(e.key_pos, format!("unknown key `{}` {place}", e.key));
            match suggest(&e.key, allowed) {
                Some(s) => d.hint(format!("did you mean `{s}`?")),
                None => d.hint(format!(
                    "allowed keys: {}",
                    allowed
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            };
        }
    }
    Some(Fields {
        pos: node.pos,
        place,
        entries,
    })
}

/// The closest candidate to a misspelt `word`, if any is close enough.
pub(crate) fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let word = word.to_lowercase();
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(&word, &c.to_lowercase()), *c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

fn list<'a>(cx: &mut Sink, node: &'a Node, what: &str) -> Option<&'a [Node]> {
    match &node.kind {
        NodeKind::Seq(items) => Some(items),
        _ => {
            let d = cx.error(
                node.pos,
                format!("expected {what}, found {}", node.describe()),
            );
            if node.scalar().is_some_and(|s| s.ty() != ScalarType::Null) {
                d.hint("write a one-item list as `[item]`");
            }
            None
        }
    }
}

fn string<'a>(cx: &mut Sink, node: &'a Node) -> Option<&'a str> {
    match node.scalar() {
        Some(s) if s.ty() == ScalarType::Str => Some(&s.text),
        Some(s) if s.ty() != ScalarType::Null => {
            cx.error(
                node.pos,
                format!("expected a string, found {}", node.describe()),
            )
            .hint(format!("quote it to make it a string: \"{}\"", s.text));
            None
        }
        _ => {
            cx.error(
                node.pos,
                format!("expected a string, found {}", node.describe()),
            );
            None
        }
    }
}

fn non_empty_string<'a>(cx: &mut Sink, node: &'a Node) -> Option<&'a str> {
    let text = string(cx, node)?;
    if text.trim().is_empty() {
        cx.error(node.pos, "expected a non-empty string");
        return None;
    }
    Some(text)
}

fn string_list(cx: &mut Sink, node: &Node, what: &str) -> Option<Vec<String>> {
    let items = list(cx, node, "a list of strings")?;
    let mut ok = true;
    let mut out = Vec::new();
    for item in items {
        match string(cx, item) {
            Some(t) if t.trim().is_empty() => {
                cx.error(item.pos, format!("{what} must not be empty"));
                ok = false;
            }
            Some(t) => out.push(t.to_owned()),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn boolean(cx: &mut Sink, node: &Node) -> Option<bool> {
    let b = node.scalar().and_then(|s| s.as_bool());
    if b.is_none() {
        let d = cx.error(
            node.pos,
            format!("expected `true` or `false`, found {}", node.describe()),
        );
        let text = node.scalar().map_or("", |s| s.text.as_str()).to_lowercase();
        if matches!(text.as_str(), "yes" | "no" | "on" | "off" | "y" | "n") {
            d.hint(format!(
                "yaml 1.2 reads `{text}` as a string; write `true` or `false`"
            ));
        }
    }
    b
}

fn name(cx: &mut Sink, node: &Node, what: &str) -> Option<String> {
    let text = string(cx, node)?;
    let mut chars = text.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && text.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        cx.error(node.pos, format!("invalid {what} `{text}`"))
            .hint(NAME_RULE);
        return None;
    }
    Some(text.to_owned())
}

fn duration(cx: &mut Sink, node: &Node) -> Option<Duration> {
    let Some(s) = node
        .scalar()
        .filter(|s| matches!(s.ty(), ScalarType::Str | ScalarType::Int))
    else {
        cx.error(
            node.pos,
            format!("expected a duration, found {}", node.describe()),
        )
        .hint("write a duration like `30m` or `1h30m`");
        return None;
    };
    if s.ty() == ScalarType::Int {
        cx.error(node.pos, format!("duration `{}` has no unit", s.text))
            .hint(format!("write `{}s` or `{}m`, for example", s.text, s.text));
        return None;
    }
    match humantime::parse_duration(s.text.trim()) {
        Ok(d) if d.is_zero() => {
            cx.error(node.pos, "duration must be greater than zero");
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            let message = match e {
                humantime::DurationError::UnknownUnit { unit, .. } => {
                    format!("invalid duration `{}`: unknown unit `{unit}`", s.text)
                }
                humantime::DurationError::NumberOverflow => {
                    format!("duration `{}` is too large", s.text)
                }
                _ => format!("invalid duration `{}`", s.text),
            };
            cx.error(node.pos, message)
                .hint("write a duration like `30m`, `1h30m` or `7d`");
            None
        }
    }
}

/// A directory relative to the repository root: `terraform.dir`.
fn dir_path(cx: &mut Sink, node: &Node) -> Option<String> {
    let text = string(cx, node)?;
    match normalise_path(text) {
        Ok(p) => Some(p),
        Err(e) => {
            cx.error(node.pos, e);
            None
        }
    }
}

/// A file relative to `terraform.dir`: `vars_file`, a secret's `file`.
fn file_path(cx: &mut Sink, node: &Node) -> Option<String> {
    let text = string(cx, node)?;
    match normalise_path(text) {
        Ok(p) if p == "." => {
            cx.error(
                node.pos,
                format!("path `{text}` names a directory, not a file"),
            );
            None
        }
        Ok(p) => Some(p),
        Err(e) => {
            cx.error(node.pos, e);
            None
        }
    }
}

/// Normalises a relative path: no `./`, no doubled or trailing `/`, `.` for the root. Absolute
/// paths and `..` are refused so that no path can leave the repository.
pub(crate) fn normalise_path(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err("path must not be empty".to_owned());
    }
    let bytes = text.as_bytes();
    let windows_drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    if text.starts_with('/') || text.starts_with('\\') || windows_drive {
        return Err(format!("path `{text}` must be relative, not absolute"));
    }
    if text.contains('\\') {
        return Err(format!("path `{text}` must use `/` as separator"));
    }
    let mut parts = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(format!("path `{text}` must not contain `..`")),
            p => parts.push(p),
        }
    }
    Ok(if parts.is_empty() {
        ".".to_owned()
    } else {
        parts.join("/")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised() {
        let cases = [
            ("infra/network", Ok("infra/network")),
            ("./infra//network/", Ok("infra/network")),
            (".", Ok(".")),
            ("./", Ok(".")),
            ("/etc", Err(())),
            ("C:/x", Err(())),
            ("a/../b", Err(())),
            ("..", Err(())),
            ("", Err(())),
            ("a\\b", Err(())),
        ];
        for (input, want) in cases {
            let got = normalise_path(input).map_err(|_| ());
            assert_eq!(got.as_deref().map_err(|_| ()), want, "{input}");
        }
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("auto_aply", ENVIRONMENT_KEYS), Some("auto_apply"));
        assert_eq!(suggest("nmae", ROOT_KEYS), Some("name"));
        assert_eq!(suggest("Name", ROOT_KEYS), Some("name"));
        assert_eq!(suggest("environment", ROOT_KEYS), Some("environments"));
        assert_eq!(suggest("xyzzy", ROOT_KEYS), None);
        assert_eq!(
            suggest("PIPELINE_FAILED", EVENTS),
            Some("PIPELINE_EXECUTION_FAILED")
        );
    }
}
