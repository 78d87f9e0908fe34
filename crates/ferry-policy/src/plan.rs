//! Reading `terraform show -json PLANFILE` into something rules can query.
//!
//! The plan JSON spreads one resource over several places: its change (`resource_changes`),
//! the values it had (`prior_state`, which also holds the data sources read during the plan)
//! and the expressions that produced it (`configuration`). Links that matter to guardrails,
//! such as a bucket's encryption resource pointing at its bucket, are often unknown at plan
//! time and visible only as `references` in the configuration, so [`PlanInput`] joins the
//! three: every resource instance knows its action, its values (after the change, or before
//! it for a delete), what is still unknown, and its configuration block, and
//! [`PlanInput::refs`] follows a configuration reference to the instances it names.

use std::collections::HashMap;

use serde_json::Value;

use crate::PolicyError;

/// The format major version Ferry understands (`format_version` "1.x").
pub const SUPPORTED_FORMAT_MAJOR: u64 = 1;

/// What the plan does to one resource instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    NoOp,
    Create,
    Read,
    Update,
    Delete,
    /// Delete and create, in either order.
    Replace,
    /// Removed from state without being destroyed (`removed { lifecycle { destroy = false } }`).
    Forget,
}

impl Action {
    fn from_actions(actions: &[Value]) -> Action {
        let names: Vec<&str> = actions.iter().filter_map(Value::as_str).collect();
        match names.as_slice() {
            ["create"] => Action::Create,
            ["read"] => Action::Read,
            ["update"] => Action::Update,
            ["delete"] => Action::Delete,
            ["delete", "create"] | ["create", "delete"] => Action::Replace,
            ["forget"] => Action::Forget,
            _ => Action::NoOp,
        }
    }

    /// The resource will exist with new values after the apply: rules judge it.
    pub fn is_change(self) -> bool {
        matches!(self, Action::Create | Action::Update | Action::Replace)
    }

    /// The resource's current object is destroyed.
    pub fn destroys(self) -> bool {
        matches!(self, Action::Delete | Action::Replace)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Managed,
    Data,
}

/// One resource instance of the plan, changed or not.
#[derive(Debug)]
pub struct Resource {
    /// Full address, `module.a[0].aws_s3_bucket.b["x"]`.
    pub address: String,
    /// The module instance, `module.a[0]`, or "" for the root module.
    pub module: String,
    pub mode: Mode,
    pub r#type: String,
    pub name: String,
    pub index: Option<Value>,
    pub action: Action,
    /// Values after the change, or the current values for a delete or an unchanged resource.
    pub values: Value,
    /// Values before the change (null for a create).
    pub before: Value,
    /// `after_unknown`: `true` at every path whose value is known only after the apply.
    pub after_unknown: Value,
    /// Key into the configuration index: module path without instance keys + resource
    /// address without index.
    config_key: String,
}

impl Resource {
    /// The attribute at `path` (object keys and array indexes), if known and not null.
    pub fn get(&self, path: &[&str]) -> Option<&Value> {
        get(&self.values, path).filter(|v| !v.is_null())
    }

    pub fn str(&self, path: &[&str]) -> Option<&str> {
        self.get(path).and_then(Value::as_str)
    }

    pub fn bool(&self, path: &[&str]) -> Option<bool> {
        self.get(path).and_then(Value::as_bool)
    }

    /// Whether the value at `path` (or an enclosing value) is unknown until apply.
    pub fn unknown(&self, path: &[&str]) -> bool {
        let mut cur = &self.after_unknown;
        for seg in path {
            if cur == &Value::Bool(true) {
                return true;
            }
            match step(cur, seg) {
                Some(next) => cur = next,
                None => return false,
            }
        }
        cur == &Value::Bool(true)
    }

    /// `type.name`, or `data.type.name`.
    pub fn local_name(&self) -> String {
        match self.mode {
            Mode::Managed => format!("{}.{}", self.r#type, self.name),
            Mode::Data => format!("data.{}.{}", self.r#type, self.name),
        }
    }
}

/// Navigates objects by key and arrays by numeric index.
pub fn get<'v>(value: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(value, |cur, seg| step(cur, seg))
}

fn step<'v>(cur: &'v Value, seg: &str) -> Option<&'v Value> {
    match cur {
        Value::Object(map) => map.get(seg),
        Value::Array(items) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    }
}

/// The configuration block of a resource (`configuration.root_module.resources[]`).
#[derive(Debug)]
struct ConfigResource {
    expressions: Value,
}

/// A parsed and indexed plan. Cheap to query; built once per evaluation.
#[derive(Debug)]
pub struct PlanInput {
    raw: Value,
    format_version: String,
    terraform_version: String,
    resources: Vec<Resource>,
    by_address: HashMap<String, usize>,
    /// module instance + "\u{0}" + local name → instances.
    by_local: HashMap<String, Vec<usize>>,
    by_type: HashMap<String, Vec<usize>>,
    configs: HashMap<String, ConfigResource>,
    /// module path (no instance keys) + "\u{0}" + variable name → its default, if any.
    variable_defaults: HashMap<String, Option<Value>>,
    /// Tags set by `default_tags` in an `aws` provider block (literal values only).
    default_tags: serde_json::Map<String, Value>,
}

impl PlanInput {
    /// Parses `terraform show -json PLANFILE` output.
    pub fn parse(bytes: &[u8]) -> Result<PlanInput, PolicyError> {
        let raw: Value =
            serde_json::from_slice(bytes).map_err(|e| PolicyError::InvalidPlanJson {
                line: e.line(),
                column: e.column(),
                message: strip_position(&e.to_string()),
            })?;
        PlanInput::from_value(raw)
    }

    /// Builds the index from an already parsed plan document.
    pub fn from_value(raw: Value) -> Result<PlanInput, PolicyError> {
        let Some(obj) = raw.as_object() else {
            return Err(PolicyError::NotAPlan(
                "the document is not a JSON object".to_string(),
            ));
        };
        let Some(format_version) = obj.get("format_version").and_then(Value::as_str) else {
            return Err(PolicyError::NotAPlan(
                "no `format_version`: expected the output of `terraform show -json PLANFILE`"
                    .to_string(),
            ));
        };
        let major = format_version
            .split('.')
            .next()
            .and_then(|m| m.parse::<u64>().ok());
        if major != Some(SUPPORTED_FORMAT_MAJOR) {
            return Err(PolicyError::UnsupportedFormatVersion {
                found: format_version.to_string(),
            });
        }
        if !obj.contains_key("resource_changes") && !obj.contains_key("planned_values") {
            return Err(PolicyError::NotAPlan(
                "no `resource_changes` or `planned_values`: this looks like state, not a plan"
                    .to_string(),
            ));
        }
        let mut plan = PlanInput {
            format_version: format_version.to_string(),
            terraform_version: obj
                .get("terraform_version")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            resources: Vec::new(),
            by_address: HashMap::new(),
            by_local: HashMap::new(),
            by_type: HashMap::new(),
            configs: HashMap::new(),
            variable_defaults: HashMap::new(),
            default_tags: serde_json::Map::new(),
            raw: Value::Null,
        };
        if let Some(changes) = obj.get("resource_changes").and_then(Value::as_array) {
            for rc in changes {
                let change = rc.get("change").unwrap_or(&Value::Null);
                let action = Action::from_actions(
                    change
                        .get("actions")
                        .and_then(Value::as_array)
                        .map(Vec::as_slice)
                        .unwrap_or(&[]),
                );
                let before = change.get("before").cloned().unwrap_or(Value::Null);
                let after = change.get("after").cloned().unwrap_or(Value::Null);
                let values = if after.is_null() {
                    before.clone()
                } else {
                    after
                };
                plan.push(
                    rc,
                    rc.get("module_address").and_then(Value::as_str),
                    action,
                    values,
                    before,
                    change.get("after_unknown").cloned().unwrap_or(Value::Null),
                )?;
            }
        }
        if let Some(root) = get(&raw, &["prior_state", "values", "root_module"]) {
            plan.add_state_module(root)?;
        }
        if let Some(root) = get(&raw, &["configuration", "root_module"]) {
            plan.add_config_module(root, "");
        }
        if let Some(providers) = get(&raw, &["configuration", "provider_config"]) {
            for provider in providers.as_object().into_iter().flat_map(|m| m.values()) {
                if provider.get("name").and_then(Value::as_str) != Some("aws") {
                    continue;
                }
                let tags = get(
                    provider,
                    &["expressions", "default_tags", "0", "tags", "constant_value"],
                );
                if let Some(Value::Object(tags)) = tags {
                    plan.default_tags
                        .extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
        }
        plan.raw = raw;
        Ok(plan)
    }

    fn push(
        &mut self,
        rc: &Value,
        module: Option<&str>,
        action: Action,
        values: Value,
        before: Value,
        after_unknown: Value,
    ) -> Result<(), PolicyError> {
        let field = |k: &str| rc.get(k).and_then(Value::as_str).unwrap_or_default();
        let address = field("address").to_string();
        if address.is_empty() || field("type").is_empty() {
            return Err(PolicyError::NotAPlan(
                "a resource without `address` or `type`".to_string(),
            ));
        }
        if self.by_address.contains_key(&address) {
            return Ok(());
        }
        let mode = if field("mode") == "data" {
            Mode::Data
        } else {
            Mode::Managed
        };
        let module = module.unwrap_or_default().to_string();
        let mut res = Resource {
            address: address.clone(),
            module: module.clone(),
            mode,
            r#type: field("type").to_string(),
            name: field("name").to_string(),
            index: rc.get("index").cloned(),
            action,
            values,
            before,
            after_unknown,
            config_key: String::new(),
        };
        res.config_key = format!("{}\u{0}{}", strip_keys(&module), res.local_name());
        let i = self.resources.len();
        self.by_address.insert(address, i);
        self.by_local
            .entry(format!("{}\u{0}{}", module, res.local_name()))
            .or_default()
            .push(i);
        self.by_type.entry(res.r#type.clone()).or_default().push(i);
        self.resources.push(res);
        Ok(())
    }

    fn add_state_module(&mut self, module: &Value) -> Result<(), PolicyError> {
        let module_address = module.get("address").and_then(Value::as_str);
        for r in module
            .get("resources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let values = r.get("values").cloned().unwrap_or(Value::Null);
            self.push(
                r,
                module_address,
                Action::NoOp,
                values.clone(),
                values,
                Value::Null,
            )?;
        }
        for child in module
            .get("child_modules")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.add_state_module(child)?;
        }
        Ok(())
    }

    fn add_config_module(&mut self, module: &Value, prefix: &str) {
        for r in module
            .get("resources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(addr) = r.get("address").and_then(Value::as_str) else {
                continue;
            };
            self.configs.insert(
                format!("{prefix}\u{0}{addr}"),
                ConfigResource {
                    expressions: r.get("expressions").cloned().unwrap_or(Value::Null),
                },
            );
        }
        if let Some(Value::Object(vars)) = module.get("variables") {
            for (name, var) in vars {
                self.variable_defaults.insert(
                    format!("{prefix}\u{0}{name}"),
                    var.get("default").cloned().filter(|d| !d.is_null()),
                );
            }
        }
        if let Some(Value::Object(calls)) = module.get("module_calls") {
            for (name, call) in calls {
                let child_prefix = if prefix.is_empty() {
                    format!("module.{name}")
                } else {
                    format!("{prefix}.module.{name}")
                };
                if let Some(child) = call.get("module") {
                    self.add_config_module(child, &child_prefix);
                }
            }
        }
    }

    pub fn format_version(&self) -> &str {
        &self.format_version
    }

    pub fn terraform_version(&self) -> &str {
        &self.terraform_version
    }

    /// The plan document as parsed (what Rego policies see as `input.plan`).
    pub fn raw(&self) -> &Value {
        &self.raw
    }

    /// Every resource instance: changed ones first (in plan order), then the unchanged ones
    /// only present in `prior_state` (data sources).
    pub fn resources(&self) -> &[Resource] {
        &self.resources
    }

    pub fn resource(&self, i: usize) -> &Resource {
        &self.resources[i]
    }

    pub fn by_address(&self, address: &str) -> Option<&Resource> {
        self.by_address.get(address).map(|&i| &self.resources[i])
    }

    /// Indexes of the instances of a resource type.
    pub fn of_type(&self, ty: &str) -> &[usize] {
        self.by_type.get(ty).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Indexes of the managed instances of a type whose action is create/update/replace.
    pub fn changed_of_type<'a>(&'a self, ty: &str) -> impl Iterator<Item = usize> + 'a {
        self.of_type(ty).iter().copied().filter(move |&i| {
            let r = &self.resources[i];
            r.mode == Mode::Managed && r.action.is_change()
        })
    }

    /// Whether any instance of the type is present (changed or not, and not being deleted).
    pub fn has_live_type(&self, ty: &str) -> bool {
        self.of_type(ty)
            .iter()
            .any(|&i| !matches!(self.resources[i].action, Action::Delete | Action::Forget))
    }

    /// The configuration expression of a resource at `path`; array elements (blocks) on the
    /// way are all visited.
    fn expressions_at<'a>(&'a self, res: &Resource, path: &[&str]) -> Vec<&'a Value> {
        let Some(cfg) = self.configs.get(&res.config_key) else {
            return Vec::new();
        };
        let mut cur = vec![&cfg.expressions];
        for seg in path {
            let mut next = Vec::new();
            for v in cur {
                match v {
                    Value::Array(items) => {
                        if let Ok(i) = seg.parse::<usize>() {
                            next.extend(items.get(i));
                        } else {
                            next.extend(items.iter().filter_map(|item| item.get(*seg)));
                        }
                    }
                    Value::Object(map) => next.extend(map.get(*seg)),
                    _ => {}
                }
            }
            cur = next;
        }
        cur
    }

    /// The raw `references` of the expression at `path` (e.g. `["aws_s3_bucket.b.id",
    /// "aws_s3_bucket.b"]`).
    pub fn reference_strings(&self, res: &Resource, path: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        for expr in self.expressions_at(res, path) {
            collect_references(expr, &mut out);
        }
        out
    }

    /// The literal (`constant_value`) written at `path` in the configuration, if any.
    pub fn constant(&self, res: &Resource, path: &[&str]) -> Option<&Value> {
        self.expressions_at(res, path)
            .into_iter()
            .find_map(|e| e.get("constant_value"))
    }

    /// The configuration's nested blocks of a resource (`statement` of an
    /// `aws_iam_policy_document`), each field an expression object.
    pub fn config_blocks(&self, res: &Resource, name: &str) -> Option<&[Value]> {
        self.configs
            .get(&res.config_key)?
            .expressions
            .get(name)?
            .as_array()
            .map(Vec::as_slice)
    }

    /// The resource instances the expression at `path` refers to, in the referring
    /// resource's module instance. `aws_s3_bucket.b[1]` picks that instance; an unindexed
    /// reference to a counted resource picks the instance with the referrer's own index, or
    /// all of them when the referrer has none.
    pub fn refs(&self, res: &Resource, path: &[&str]) -> Vec<usize> {
        let strings = self.reference_strings(res, path);
        // Terraform lists `x.b[1].id`, `x.b[1]` and `x.b` for one reference to `x.b[1]`:
        // the bare name must not widen it to every instance.
        let indexed: Vec<String> = strings
            .iter()
            .filter_map(|r| parse_reference(r))
            .filter(|(_, index)| matches!(index, RefIndex::Literal(_)))
            .map(|(local, _)| local)
            .collect();
        let mut out = Vec::new();
        for r in strings {
            if parse_reference(&r)
                .is_some_and(|(local, index)| index == RefIndex::None && indexed.contains(&local))
            {
                continue;
            }
            for i in self.resolve_reference(res, &r) {
                if !out.contains(&i) {
                    out.push(i);
                }
            }
        }
        out
    }

    fn resolve_reference(&self, from: &Resource, reference: &str) -> Vec<usize> {
        let Some((local, index)) = parse_reference(reference) else {
            return Vec::new();
        };
        let Some(instances) = self.by_local.get(&format!("{}\u{0}{}", from.module, local)) else {
            return Vec::new();
        };
        match index {
            RefIndex::Literal(key) => instances
                .iter()
                .copied()
                .filter(|&i| self.resources[i].index.as_ref() == Some(&key))
                .collect(),
            RefIndex::Dynamic | RefIndex::None if instances.len() == 1 => instances.clone(),
            RefIndex::Dynamic | RefIndex::None => {
                let same: Vec<usize> = instances
                    .iter()
                    .copied()
                    .filter(|&i| from.index.is_some() && self.resources[i].index == from.index)
                    .collect();
                if same.is_empty() && index == RefIndex::None {
                    instances.clone()
                } else {
                    same
                }
            }
        }
    }

    /// Whether the expression at `path` refers to an input variable that has a literal
    /// default in the configuration.
    pub fn refers_to_defaulted_variable(&self, res: &Resource, path: &[&str]) -> bool {
        let prefix = strip_keys(&res.module);
        self.reference_strings(res, path).iter().any(|r| {
            r.strip_prefix("var.")
                .map(|name| name.split(['.', '[']).next().unwrap_or(name))
                .and_then(|name| self.variable_defaults.get(&format!("{prefix}\u{0}{name}")))
                .is_some_and(Option::is_some)
        })
    }

    /// `default_tags` of the `aws` provider blocks (literal values only).
    pub fn default_tags(&self) -> &serde_json::Map<String, Value> {
        &self.default_tags
    }
}

#[derive(Debug, PartialEq, Eq)]
enum RefIndex {
    None,
    Literal(Value),
    /// `[count.index]`, `[each.key]`, `[local.i]`…
    Dynamic,
}

const NOT_RESOURCES: [&str; 8] = [
    "var",
    "local",
    "module",
    "each",
    "count",
    "path",
    "terraform",
    "self",
];

/// `aws_s3_bucket.b[0].id` → (`aws_s3_bucket.b`, Literal(0)).
fn parse_reference(reference: &str) -> Option<(String, RefIndex)> {
    let (data, rest) = match reference.strip_prefix("data.") {
        Some(rest) => (true, rest),
        None => (false, reference),
    };
    let (ty, rest) = rest.split_once('.')?;
    if !data && NOT_RESOURCES.contains(&ty) {
        return None;
    }
    let name_end = rest.find(['.', '[']).unwrap_or(rest.len());
    let name = &rest[..name_end];
    if ty.is_empty() || name.is_empty() {
        return None;
    }
    let after = &rest[name_end..];
    let index = match after.strip_prefix('[') {
        Some(tail) => {
            let inner = tail.split(']').next().unwrap_or_default();
            match serde_json::from_str::<Value>(inner) {
                Ok(v @ (Value::Number(_) | Value::String(_))) => RefIndex::Literal(v),
                _ => RefIndex::Dynamic,
            }
        }
        None => RefIndex::None,
    };
    let local = if data {
        format!("data.{ty}.{name}")
    } else {
        format!("{ty}.{name}")
    };
    Some((local, index))
}

fn collect_references(expr: &Value, out: &mut Vec<String>) {
    match expr {
        Value::Object(map) => {
            if let Some(Value::Array(refs)) = map.get("references") {
                out.extend(refs.iter().filter_map(Value::as_str).map(String::from));
            }
            for (k, v) in map {
                if k != "references" && k != "constant_value" {
                    collect_references(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_references(v, out)),
        _ => {}
    }
}

/// `module.a[0].module.b["x"]` → `module.a.module.b`.
fn strip_keys(module: &str) -> String {
    let mut out = String::with_capacity(module.len());
    let mut depth = 0usize;
    let mut in_string = false;
    for c in module.chars() {
        match c {
            '"' if depth > 0 => in_string = !in_string,
            '[' if !in_string => depth += 1,
            ']' if !in_string && depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// serde_json's message ends with " at line L column C", which the error carries separately.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_json_reports_line_and_column() {
        let err =
            PlanInput::parse(b"{\n  \"format_version\": \"1.2\",\n  \"x\": [1,\n}").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid plan JSON at line 4, column 1: expected value"
        );
    }

    #[test]
    fn unsupported_format_version_is_refused() {
        let err =
            PlanInput::parse(br#"{"format_version": "2.0", "resource_changes": []}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported plan format_version `2.0`: Ferry reads 1.x, the format of `terraform show -json` since Terraform 0.15"
        );
        let err = PlanInput::parse(br#"{"values": {}}"#).unwrap_err();
        assert!(err.to_string().contains("no `format_version`"), "{err}");
        let err = PlanInput::parse(br#"{"format_version": "1.0", "values": {}}"#).unwrap_err();
        assert!(err.to_string().contains("looks like state"), "{err}");
    }

    #[test]
    fn references_parse() {
        assert_eq!(
            parse_reference("aws_s3_bucket.b.id"),
            Some(("aws_s3_bucket.b".to_string(), RefIndex::None))
        );
        assert_eq!(
            parse_reference("aws_s3_bucket.b[0].id"),
            Some(("aws_s3_bucket.b".to_string(), RefIndex::Literal(0.into())))
        );
        assert_eq!(
            parse_reference("aws_subnet.a[\"x\"]"),
            Some(("aws_subnet.a".to_string(), RefIndex::Literal("x".into())))
        );
        assert_eq!(
            parse_reference("aws_subnet.a[count.index]"),
            Some(("aws_subnet.a".to_string(), RefIndex::Dynamic))
        );
        assert_eq!(
            parse_reference("data.aws_iam_policy_document.p.json"),
            Some(("data.aws_iam_policy_document.p".to_string(), RefIndex::None))
        );
        assert_eq!(parse_reference("var.x"), None);
        assert_eq!(parse_reference("module.m.out"), None);
        assert_eq!(
            strip_keys("module.a[0].module.b[\"x]\"]"),
            "module.a.module.b"
        );
    }
}
