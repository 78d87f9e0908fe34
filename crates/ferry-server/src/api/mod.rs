//! The `/api/v1` routes, one module per resource, and the OpenAPI document built from their
//! annotations.

pub(crate) mod delivery;
pub(crate) mod events;
pub(crate) mod identity;
pub(crate) mod logs;
pub(crate) mod projects;
pub(crate) mod runs;
pub(crate) mod secrets;
pub(crate) mod states;
pub(crate) mod system;
pub(crate) mod tokens;
pub(crate) mod waivers;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "Ferry API", description = "Continuous delivery for Terraform and OpenTofu."),
    paths(
        system::healthz, system::readyz, system::metrics, system::openapi, system::whoami, system::queue,
        projects::projects_create, projects::projects_list, projects::projects_get, projects::projects_update, projects::pipelines_list,
        runs::runs_create, runs::runs_list, runs::runs_get, runs::runs_cancel, runs::approvals_create,
        delivery::runs_retry, delivery::promote, delivery::rollback, delivery::deployments,
        delivery::approvals_pending, delivery::approval_view,
        events::events_list, events::events_stream, events::audit_list,
        logs::logs_get, logs::logs_stream,
        tokens::tokens_create, tokens::tokens_list, tokens::tokens_revoke,
        identity::login, identity::logout, identity::users_list, identity::users_create, identity::users_update,
        identity::teams_list, identity::teams_create, identity::team_members_add, identity::team_members_remove,
        identity::grants_list, identity::grants_create, identity::grants_revoke,
        waivers::waivers_create, waivers::waivers_list, waivers::waivers_revoke,
        states::states_list, states::state_show, states::state_versions, states::state_raw, states::state_diff,
        states::state_lock_info, states::state_unlock, states::state_rollback, states::state_push,
        states::state_delete, states::state_retention,
        secrets::secrets_list, secrets::secrets_set, secrets::secrets_delete,
        secrets::params_list, secrets::params_get, secrets::params_set, secrets::params_delete,
    ),
    components(schemas(
        ferry_api::ErrorBody, ferry_api::Health, ferry_api::Whoami, ferry_api::ProjectCreate, ferry_api::ProjectUpdate, ferry_api::Project,
        ferry_api::Pipeline, ferry_api::PipelineList, ferry_api::RunCreate, ferry_api::Run, ferry_api::RunPage,
        ferry_api::RunDetail, ferry_api::Stage, ferry_api::Action, ferry_api::PlanSummary, ferry_api::ResourceChange,
        ferry_api::Approval, ferry_api::ApprovalCreate, ferry_api::LogLine, ferry_api::LogPage,
        ferry_api::EnvironmentQueue, ferry_api::TokenCreate, ferry_api::Token, ferry_api::TokenCreated,
        ferry_api::StateLock, ferry_api::StateVersion, ferry_api::StateSummary, ferry_api::StateResource,
        ferry_api::StateDetail, ferry_api::StateDiff, ferry_api::StateRollback, ferry_api::StateRetention,
        ferry_api::RunOptions, ferry_api::StateBinding, ferry_api::PromoteCreate, ferry_api::RollbackCreate,
        ferry_api::Deployment, ferry_api::PendingApproval, ferry_api::ApprovalView, ferry_api::Check,
        ferry_api::CheckAction, ferry_api::Event, ferry_api::EventPage, ferry_api::AuditEntry, ferry_api::AuditPage,
        ferry_api::SecretInfo, ferry_api::SecretSet, ferry_api::ParamValue,
        ferry_api::User, ferry_api::UserCreate, ferry_api::UserUpdate, ferry_api::Team, ferry_api::TeamCreate,
        ferry_api::TeamMember, ferry_api::RoleGrant, ferry_api::Login, ferry_api::SessionInfo,
        ferry_api::PolicyReport, ferry_api::PolicyFinding, ferry_api::WaiverCreate, ferry_api::Waiver,
    )),
    modifiers(&BearerAuth, &CommonErrors),
    security(("bearer" = [])),
)]
pub(crate) struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Documents the error answers every operation can give besides its own: 401 and 403 from
/// authorisation (except on the public routes), 404 where the path names something, and 400,
/// 413, 415 and 422 where there is a request body. All carry [`ferry_api::ErrorBody`].
struct CommonErrors;

/// Routes anyone may call (see `authz::RULES`).
const PUBLIC: &[&str] = &[
    "/healthz",
    "/readyz",
    "/metrics",
    "/api/v1/openapi.json",
    "/api/v1/login",
];

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let public = PUBLIC.contains(&path.as_str());
            let names_something = path.contains('{');
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                let mut wanted: Vec<(&str, &str)> = Vec::new();
                if !public {
                    wanted.push(("401", "no valid token or session"));
                    wanted.push(("403", "the identity lacks the role this needs"));
                }
                if names_something {
                    wanted.push(("404", "no such object, or one the identity cannot see"));
                }
                if operation.request_body.is_some() {
                    wanted.push(("400", "the body or query is malformed"));
                    wanted.push(("413", "the body is over the limit"));
                    wanted.push(("415", "the body is not JSON"));
                    wanted.push(("422", "the request is well-formed but refused"));
                } else if operation.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
                    wanted.push(("400", "a query parameter is malformed"));
                }
                for (status, description) in wanted {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| error(description).into());
                }
            }
        }
    }
}
