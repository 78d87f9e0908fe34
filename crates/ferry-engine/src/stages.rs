//! From a lowered pipeline to the stages and actions of a run: the one place that decides
//! what a run will do, written as a pure function so it can be read and tested alone.

use std::time::Duration;

use ferry_core::StageKind;
use ferry_spec::{CommandSpec, EnvironmentSpec, PipelineSpec};
use ferry_store::{NewAction, NewStage, RunOptions};

/// Built-in action kinds, as stored in the `actions.kind` column.
pub const INIT: &str = "terraform_init";
pub const VALIDATE: &str = "terraform_validate";
pub const PLAN: &str = "terraform_plan";
pub const APPLY: &str = "terraform_apply";
pub const COMMAND: &str = "command";
/// The policy gate (`ferry_policy::check` on the plan JSON): runs in the server, no process.
pub const POLICY_CHECK: &str = "policy_check";

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn builtin(kind: &str, name: &str, timeout: Duration) -> NewAction {
    NewAction {
        name: name.to_owned(),
        kind: kind.to_owned(),
        command: None,
        timeout_ms: ms(timeout),
    }
}

fn commands(list: &[CommandSpec], timeout: Duration) -> Vec<NewAction> {
    list.iter()
        .map(|c| NewAction {
            name: c.name.clone(),
            kind: COMMAND.to_owned(),
            command: Some(c.run.clone()),
            timeout_ms: ms(c.timeout.unwrap_or(timeout)),
        })
        .collect()
}

/// Per environment, in order: validate (init, then `terraform validate` or the pipeline's
/// own validate commands) → plan → policy → test (if any) → approval (unless the
/// environment auto-applies; always for a destroy) → apply → verify (if any). Only the
/// environments named in `options` when it names any, in the pipeline's order.
pub fn plan_stages(spec: &PipelineSpec, options: &RunOptions) -> Vec<NewStage> {
    let mut stages = Vec::new();
    for env in &spec.environments {
        if options.environments.is_empty() || options.environments.contains(&env.name) {
            stages.extend(environment_stages(spec, env, options));
        }
    }
    stages
}

fn environment_stages(
    spec: &PipelineSpec,
    env: &EnvironmentSpec,
    options: &RunOptions,
) -> Vec<NewStage> {
    let timeout = env.timeout.unwrap_or(spec.timeout);
    let stage = |kind, actions| NewStage {
        environment: env.name.clone(),
        kind,
        actions,
    };
    let mut validate = vec![builtin(INIT, "terraform init", timeout)];
    match &spec.stages.validate {
        Some(list) => validate.extend(commands(list, timeout)),
        None => validate.push(builtin(VALIDATE, "terraform validate", timeout)),
    }
    let mut out = vec![
        stage(StageKind::Validate, validate),
        stage(
            StageKind::Plan,
            vec![builtin(PLAN, "terraform plan", timeout)],
        ),
        stage(
            StageKind::Policy,
            vec![builtin(POLICY_CHECK, "policy check", timeout)],
        ),
    ];
    if let Some(list) = spec.stages.test.as_deref().filter(|l| !l.is_empty()) {
        out.push(stage(StageKind::Test, commands(list, timeout)));
    }
    if env.requires_approval() || options.destroy {
        out.push(stage(StageKind::Approval, Vec::new()));
    }
    out.push(stage(
        StageKind::Apply,
        vec![builtin(APPLY, "terraform apply", timeout)],
    ));
    if let Some(list) = spec.stages.verify.as_deref().filter(|l| !l.is_empty()) {
        out.push(stage(StageKind::Verify, commands(list, timeout)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(yaml: &str) -> Vec<String> {
        kinds_with(yaml, &RunOptions::default())
    }

    fn kinds_with(yaml: &str, options: &RunOptions) -> Vec<String> {
        let lowered = ferry_spec::lower("ferry.yaml", yaml);
        let spec = lowered
            .spec
            .unwrap_or_else(|| panic!("{:?}", lowered.diagnostics));
        plan_stages(&spec, options)
            .iter()
            .map(|s| {
                let actions: Vec<&str> = s.actions.iter().map(|a| a.name.as_str()).collect();
                format!("{}/{}[{}]", s.environment, s.kind, actions.join(","))
            })
            .collect()
    }

    #[test]
    fn minimal_file_validates_plans_and_applies_without_approval() {
        let got = kinds("version: 1\nname: hello\nterraform: { dir: . }\n");
        assert_eq!(
            got,
            [
                "default/validate[terraform init,terraform validate]",
                "default/plan[terraform plan]",
                "default/policy[policy check]",
                "default/apply[terraform apply]"
            ]
        );
    }

    #[test]
    fn environments_without_auto_apply_wait_for_approval_after_tests() {
        let got = kinds(
            "version: 1\nname: net\nterraform: { dir: infra }\nenvironments:\n  - name: dev\n    auto_apply: true\n  - name: prod\n\
             stages:\n  test: [\"./smoke.sh\"]\n  verify: [\"./check.sh\"]\n",
        );
        assert_eq!(
            got,
            [
                "dev/validate[terraform init,terraform validate]",
                "dev/plan[terraform plan]",
                "dev/policy[policy check]",
                "dev/test[./smoke.sh]",
                "dev/apply[terraform apply]",
                "dev/verify[./check.sh]",
                "prod/validate[terraform init,terraform validate]",
                "prod/plan[terraform plan]",
                "prod/policy[policy check]",
                "prod/test[./smoke.sh]",
                "prod/approval[]",
                "prod/apply[terraform apply]",
                "prod/verify[./check.sh]",
            ]
        );
    }

    #[test]
    fn a_destroy_of_one_environment_always_waits_for_approval() {
        let options = RunOptions {
            environments: vec!["dev".into()],
            destroy: true,
            ..RunOptions::default()
        };
        let got = kinds_with(
            "version: 1\nname: net\nterraform: { dir: . }\nenvironments:\n  - name: dev\n    auto_apply: true\n  - name: prod\n",
            &options,
        );
        assert_eq!(
            got,
            [
                "dev/validate[terraform init,terraform validate]",
                "dev/plan[terraform plan]",
                "dev/policy[policy check]",
                "dev/approval[]",
                "dev/apply[terraform apply]",
            ]
        );
    }
}
