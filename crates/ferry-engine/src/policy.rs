//! The policy stage inside runs, and waivers: gathers what `ferry_policy::check` needs for one
//! environment (the stored plan JSON, the Rego policies of the **deploy branch**, the paths
//! the commit changes, the stored waivers, the environment's `fail_on`) and turns its report
//! into the stage's verdict.
//!
//! **Architecture Invariant:** policies are never read from the commit under review. They
//! come from the pipeline's deploy branch (its first literal `source.branches` entry, else
//! the repository's default branch), so a change cannot weaken the gate that judges it; a
//! change that touches the policy directory is reported as `FERRY-POLICY-001`.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use ferry_core::{Actor, RunId};
use ferry_policy::{Config, Context, PolicySet, Report, Requirement, Severity, Waiver};
use ferry_spec::{EnvironmentSpec, FailOn, PipelineSpec};
use ferry_store::{NewWaiver, Run, WaiverRow};

use crate::{git, Engine, Error, Result};

/// The built-in pack's configuration from `ferry.yaml`'s `policy:` block.
pub(crate) fn config(spec: &PipelineSpec) -> Config {
    let p = &spec.policy;
    let mut c = Config::default();
    if let Some(tags) = &p.required_tags {
        c.required_tags = tags.clone();
    }
    if let Some(tag) = &p.environment_tag {
        c.environment_tag = tag.clone();
    }
    c.name_pattern = p.name_pattern.clone();
    c.require_customer_managed_keys = match p.require_customer_managed_keys.as_deref() {
        Some("always") => Requirement::Always,
        Some("protected") => Requirement::Protected,
        _ => Requirement::Never,
    };
    if let Some(b) = p.require_cloudtrail {
        c.require_cloudtrail = b;
    }
    if let Some(tag) = &p.criticality_tag {
        c.criticality_tag = tag.clone();
    }
    c.account_ids = p.account_ids.clone();
    c.extra_stateful_types = p.extra_stateful_types.clone();
    c.disabled_rules = p.disabled_rules.clone();
    c
}

/// The environment's lowest blocking severity: its own `policy.fail_on`, else the default by
/// its position among the pipeline's environments.
pub(crate) fn fail_on(spec: &PipelineSpec, env: &EnvironmentSpec) -> Severity {
    match env.policy_fail_on {
        Some(level) => match level {
            FailOn::Info => Severity::Info,
            FailOn::Low => Severity::Low,
            FailOn::Medium => Severity::Medium,
            FailOn::High => Severity::High,
            FailOn::Critical => Severity::Critical,
        },
        None => {
            let index = spec
                .environments
                .iter()
                .position(|e| e.name == env.name)
                .unwrap_or(0);
            ferry_policy::default_fail_on(index, spec.environments.len())
        }
    }
}

/// The branch whose policies judge the pipeline's runs: the first `source.branches` entry
/// that is a plain name (not a pattern), else the repository's default branch.
/// The first plain (non-glob) entry of `source.branches`, if any.
fn named_deploy_branch(spec: &PipelineSpec) -> Option<&str> {
    spec.source
        .branches
        .iter()
        .find(|b| !b.contains(['*', '?', '[']))
        .map(String::as_str)
}

async fn deploy_branch(spec: &PipelineSpec, mirror: &git::Mirror) -> Result<String> {
    match named_deploy_branch(spec) {
        Some(branch) => Ok(branch.to_owned()),
        None => Ok(mirror.default_branch().await?),
    }
}

/// The deploy branch's policies: `(branch, its commit, [(path, text)])` of every `*.rego`
/// under the policy directory.
pub(crate) struct Policies {
    pub branch: String,
    pub commit: String,
    pub files: PolicyFiles,
}

/// `(path, text)` of each policy file, shared between the cache and the checks.
type PolicyFiles = Arc<Vec<(String, String)>>;
/// (mirror, deploy-branch commit, policy directory).
type PolicyKey = (PathBuf, String, String);

/// The policy files of one (mirror, commit, directory): a commit's files never change, so
/// every policy check of runs deploying past the same deploy-branch commit reads git once.
#[derive(Default)]
pub(crate) struct PolicyFileCache {
    // Invariant: at most CACHED entries (cleared when full; a miss only costs git reads).
    entries: std::sync::Mutex<HashMap<PolicyKey, PolicyFiles>>,
}

const CACHED: usize = 256;

impl PolicyFileCache {
    fn get(&self, key: &PolicyKey) -> Option<PolicyFiles> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(key).cloned()
    }

    fn put(&self, key: PolicyKey, files: PolicyFiles) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CACHED {
            entries.clear();
        }
        entries.insert(key, files);
    }
}

pub(crate) async fn deploy_branch_policies(
    engine: &Engine,
    spec: &PipelineSpec,
    mirror: &git::Mirror,
) -> Result<Policies> {
    let branch = deploy_branch(spec, mirror).await?;
    let commit = mirror.resolve(&branch).await?;
    policies_at(engine, spec, mirror, branch, commit).await
}

/// The policy files of the deploy branch `branch` at `commit` (cached per commit).
async fn policies_at(
    engine: &Engine,
    spec: &PipelineSpec,
    mirror: &git::Mirror,
    branch: String,
    commit: String,
) -> Result<Policies> {
    let key = (mirror.path.clone(), commit.clone(), spec.policy.dir.clone());
    let cache = &engine.inner.policy_files;
    let files = match cache.get(&key) {
        Some(files) => files,
        None => {
            let mut files = Vec::new();
            for path in mirror.ls_tree(&commit, &spec.policy.dir).await? {
                if path.ends_with(".rego") {
                    let text = mirror.read_file(&commit, &path).await?;
                    files.push((path, text));
                }
            }
            let files = Arc::new(files);
            cache.put(key, files.clone());
            files
        }
    };
    Ok(Policies {
        branch,
        commit,
        files,
    })
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A stored waiver as the policy crate sees it.
fn to_waiver(row: &WaiverRow) -> Option<Waiver> {
    Some(Waiver {
        rule: row.rule.clone(),
        address: row.address.clone(),
        environment: row.environment.clone(),
        resource_type: row.resource_type.clone(),
        reason: row.reason.clone(),
        expires_at: parse_time(&row.expires_at)?,
        created_by: row.created_by.clone(),
    })
}

/// What the policy stage decided.
pub(crate) enum Verdict {
    /// No finding blocks (the report may still hold findings).
    Passed,
    /// `POLICY_VIOLATION`: the reason names the blocking findings; `details` goes with the
    /// event.
    Violation {
        reason: String,
        details: serde_json::Value,
    },
    /// The gate could not judge (bad plan, bad policy, time limit, missing deploy branch).
    Broken(String),
}

/// Runs the policy gate for one environment of a run. `log` receives readable lines for the
/// run log. Only store failures are `Err`; anything wrong with the inputs is
/// [`Verdict::Broken`].
pub(crate) async fn check(
    engine: &Engine,
    spec: &PipelineSpec,
    run: &Run,
    environment: &str,
    log: &mut Vec<String>,
) -> Result<Verdict> {
    let store = engine.store();
    let Some(env) = spec.environment(environment) else {
        return Ok(Verdict::Broken(format!(
            "environment `{environment}` is not in the pipeline"
        )));
    };
    let Some(plan) = store.plan(run.id, environment).await? else {
        return Ok(Verdict::Broken(format!(
            "no plan is recorded for {environment}"
        )));
    };
    let plan_json = match tokio::fs::read(&plan.json_path).await {
        Ok(bytes) => bytes,
        Err(e) => {
            return Ok(Verdict::Broken(format!(
                "the plan JSON of {environment} cannot be read: {e}"
            )))
        }
    };
    let project = store.project(&run.project).await?;
    let gathered = async {
        // One git process answers the deploy branch, its head and the run's commit when the
        // mirror has them all (the trigger fetched it moments ago); otherwise fetch and ask
        // one question at a time.
        let mirror = engine.mirror_of(&project);
        let policies = match mirror
            .deploy_base(named_deploy_branch(spec), &run.commit_sha)
            .await
        {
            Some((branch, commit)) => policies_at(engine, spec, &mirror, branch, commit).await?,
            None => {
                let mirror = engine.mirror_with(&project, &run.commit_sha).await?;
                deploy_branch_policies(engine, spec, &mirror).await?
            }
        };
        // Deploying the deploy branch's own head changes nothing relative to it.
        let changed = if policies.commit == run.commit_sha {
            Vec::new()
        } else {
            mirror
                .changed_paths(&policies.commit, &run.commit_sha)
                .await?
        };
        Ok::<_, Error>((policies, changed))
    }
    .await;
    let (policies, changed) = match gathered {
        Ok(v) => v,
        Err(Error::Store(e)) => return Err(Error::Store(e)),
        Err(e) => {
            return Ok(Verdict::Broken(format!(
                "could not read the policies of the deploy branch: {e}"
            )))
        }
    };
    log.push(format!(
        "policies from {} ({}) at {}: {}",
        policies.branch,
        spec.policy.dir,
        &policies.commit[..policies.commit.len().min(12)],
        if policies.files.is_empty() {
            "none".to_owned()
        } else {
            policies
                .files
                .iter()
                .map(|(p, _)| p.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        }
    ));
    let waivers: Vec<Waiver> = store
        .waivers(project.id, false)
        .await?
        .iter()
        .filter_map(to_waiver)
        .collect();
    let context = Context {
        project: run.project.clone(),
        pipeline: run.pipeline.clone(),
        environment: environment.to_owned(),
        commit: run.commit_sha.clone(),
        actor: run.triggered_by.clone(),
        protected: env.protected,
    };
    let config = config(spec);
    let fail_on = fail_on(spec, env);
    let policy_dir = spec.policy.dir.clone();
    let files = policies.files;
    let judged = tokio::task::spawn_blocking(move || {
        let set = if files.is_empty() {
            None
        } else {
            Some(PolicySet::from_sources(files.as_slice())?)
        };
        let changed: Vec<&str> = changed.iter().map(String::as_str).collect();
        ferry_policy::check(&ferry_policy::StageInput {
            plan_json: &plan_json,
            context: &context,
            config: &config,
            policies: set.as_ref(),
            changed_paths: &changed,
            policy_dir: &policy_dir,
            fail_on,
            waivers: &waivers,
            now: Utc::now(),
        })
    })
    .await
    .map_err(|e| Error::Io(std::io::Error::other(format!("policy check panicked: {e}"))))?;
    let report = match judged {
        Ok(report) => report,
        Err(e) => return Ok(Verdict::Broken(format!("policy check failed: {e}"))),
    };
    log.extend(summary(&report));
    let json = crate::records::encode(&report);
    store
        .record_policy_report(run.id.0, environment, report.blocked(), &json)
        .await?;
    if !report.blocked() {
        return Ok(Verdict::Passed);
    }
    let blocking: Vec<_> = report.blocking().collect();
    let names: Vec<String> = blocking
        .iter()
        .map(|f| format!("{} on {}", f.rule, f.address))
        .collect();
    let reason = ferry_core::FailureCode::PolicyViolation.reason(format_args!(
        "{} finding{} at or above {} in {environment}: {}",
        blocking.len(),
        if blocking.len() == 1 { "" } else { "s" },
        report.fail_on,
        names.join(", ")
    ));
    let details = serde_json::json!({
        "environment": environment,
        "fail_on": report.fail_on,
        "findings": blocking,
        "plan_sha256": plan.sha256,
    });
    Ok(Verdict::Violation { reason, details })
}

/// The report as log lines: a count, then one line per finding.
fn summary(report: &Report) -> Vec<String> {
    let mut lines = vec![format!(
        "{} finding{} (fail_on {}): {} blocking, {} waived",
        report.entries.len(),
        if report.entries.len() == 1 { "" } else { "s" },
        report.fail_on,
        report.entries.iter().filter(|e| e.blocking).count(),
        report.entries.iter().filter(|e| e.waiver.is_some()).count(),
    )];
    for e in &report.entries {
        let mark = if e.blocking {
            "BLOCKS"
        } else if e.waiver.is_some() {
            "waived"
        } else {
            "ok"
        };
        lines.push(format!(
            "  [{mark}] {:<8} {} {}: {}",
            e.finding.severity, e.finding.rule, e.finding.address, e.finding.message
        ));
    }
    lines
}

/// A request to waive one finding of one run.
#[derive(Debug, Clone)]
pub struct WaiverRequest {
    pub run: RunId,
    pub rule: String,
    pub address: String,
    pub environment: String,
    pub reason: String,
    pub expires_at: DateTime<Utc>,
}

impl Engine {
    pub async fn waiver(&self, id: i64) -> Result<WaiverRow> {
        Ok(self.store().waiver(id).await?)
    }

    pub async fn waivers(&self, project_id: i64, include_revoked: bool) -> Result<Vec<WaiverRow>> {
        Ok(self.store().waivers(project_id, include_revoked).await?)
    }

    pub async fn revoke_waiver(&self, actor: &Actor, id: i64) -> Result<WaiverRow> {
        Ok(self.store().revoke_waiver(actor, id).await?)
    }

    /// Grants a waiver for a finding of `request.run`. Refused (422) for a rule that is
    /// neither built in nor declared by the deploy branch's policies, an expiry in the past or
    /// beyond `policy.max_waiver_days`; refused (403) to the run's triggerer and the commit's
    /// author. The resource's type is taken from the run's plan.
    pub async fn create_waiver(&self, actor: &Actor, request: &WaiverRequest) -> Result<WaiverRow> {
        let store = self.store();
        let run = store.run(request.run).await?;
        let spec = self.lower_run(&run)?;
        if spec.environment(&request.environment).is_none() {
            return Err(Error::Refused(format!(
                "environment `{}` is not in pipeline {}",
                request.environment, run.pipeline
            )));
        }
        if ferry_core::may_approve(&run.triggered_by, run.commit_author.as_deref(), &actor.name)
            .is_err()
        {
            return Err(Error::Store(ferry_store::Error::Denied(format!(
                "{} is the change's author (run {} was triggered by {}{}) and cannot waive its findings",
                actor.name,
                run.id,
                run.triggered_by,
                run.commit_author
                    .as_deref()
                    .map(|a| format!(", commit by {a}"))
                    .unwrap_or_default()
            ))));
        }
        let project = store.project(&run.project).await?;
        let mirror = self.mirror_with(&project, &run.commit_sha).await?;
        let policies = deploy_branch_policies(self, &spec, &mirror).await?;
        let custom: BTreeSet<String> = if policies.files.is_empty() {
            BTreeSet::new()
        } else {
            let files = policies.files;
            tokio::task::spawn_blocking(move || PolicySet::from_sources(files.as_slice()))
                .await
                .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?
                .map_err(|e| {
                    Error::Refused(format!("the deploy branch's policies do not load: {e}"))
                })?
                .rule_ids()
                .clone()
        };
        let resource_type = match store.plan(run.id, &request.environment).await? {
            Some(plan) => {
                let bytes = tokio::fs::read(&plan.json_path).await?;
                let parsed = ferry_policy::PlanInput::parse(&bytes)
                    .map_err(|e| Error::Refused(format!("the run's plan: {e}")))?;
                parsed
                    .by_address(&request.address)
                    .map(|r| r.r#type.clone())
            }
            None => None,
        };
        if resource_type.is_none() && request.address != ferry_policy::PLAN_ADDRESS {
            return Err(Error::Refused(format!(
                "`{}` is not a resource of run {}'s plan for {}",
                request.address, run.id, request.environment
            )));
        }
        let waiver = Waiver {
            rule: request.rule.clone(),
            address: request.address.clone(),
            environment: request.environment.clone(),
            resource_type: resource_type.clone(),
            reason: request.reason.clone(),
            expires_at: request.expires_at,
            created_by: actor.name.clone(),
        };
        let rules = ferry_policy::WaiverRules {
            custom_rule_ids: &custom,
            max_days: spec.policy.max_waiver_days,
        };
        match waiver.validate(&rules, &run.triggered_by, Utc::now()) {
            Ok(()) => {}
            Err(e @ ferry_policy::WaiverError::SelfWaiver { .. }) => {
                return Err(Error::Store(ferry_store::Error::Denied(e.to_string())))
            }
            Err(e) => return Err(Error::Refused(e.to_string())),
        }
        Ok(store
            .create_waiver(
                actor,
                &NewWaiver {
                    project_id: project.id,
                    rule: waiver.rule,
                    address: waiver.address,
                    environment: waiver.environment,
                    resource_type,
                    reason: waiver.reason,
                    expires_at: waiver
                        .expires_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    run_id: Some(run.id.0),
                },
            )
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> PipelineSpec {
        let lowered = ferry_spec::lower("ferry.yaml", yaml);
        lowered
            .spec
            .unwrap_or_else(|| panic!("{:?}", lowered.diagnostics))
    }

    #[test]
    fn fail_on_is_the_environments_own_else_by_position() {
        let s = spec(
            "version: 1\nname: n\nterraform: .\nenvironments:\n  - name: dev\n  - name: qa\n  - name: stage\n    policy: { fail_on: low }\n  - name: prod\n",
        );
        let levels: Vec<Severity> = s.environments.iter().map(|e| fail_on(&s, e)).collect();
        assert_eq!(
            levels,
            [
                Severity::Critical,
                Severity::High,
                Severity::Low,
                Severity::Medium
            ]
        );
    }

    #[test]
    fn ferry_yaml_settings_override_the_packs_defaults_only_where_given() {
        assert_eq!(
            config(&spec("version: 1\nname: n\nterraform: .\n")),
            Config::default()
        );
        let c = config(&spec(
            "version: 1\nname: n\nterraform: .\npolicy:\n  required_tags: [Team]\n  require_customer_managed_keys: protected\n  require_cloudtrail: false\n  disabled_rules: [FERRY-S3-006]\n",
        ));
        assert_eq!(c.required_tags, ["Team"]);
        assert_eq!(c.require_customer_managed_keys, Requirement::Protected);
        assert!(!c.require_cloudtrail);
        assert_eq!(c.disabled_rules, ["FERRY-S3-006"]);
        assert_eq!(c.environment_tag, Config::default().environment_tag);
    }
}
