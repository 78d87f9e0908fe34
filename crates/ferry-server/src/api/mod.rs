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
    modifiers(&BearerAuth, &CommonErrors, &Constraints),
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

/// Every operation of a path.
fn operations(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
    ]
    .into_iter()
    .flatten()
}

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
            for operation in operations(item) {
                let mut wanted: Vec<(&str, &str)> = Vec::new();
                if !public {
                    wanted.push(("401", "no valid token or session"));
                    wanted.push(("403", "the identity lacks the role this needs"));
                }
                let has_body = operation.request_body.is_some();
                // A body can name something too (a user, a secret, a run's environment).
                if names_something || has_body {
                    wanted.push(("404", "no such object, or one the identity cannot see"));
                }
                if has_body {
                    wanted.push(("400", "the body or query is malformed"));
                    wanted.push(("413", "the body is over the limit"));
                    wanted.push(("415", "the body is not JSON"));
                    wanted.push(("422", "the request is well-formed but refused"));
                } else if operation.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
                    wanted.push(("400", "a query parameter is malformed"));
                    wanted.push(("422", "the request is well-formed but refused"));
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

/// The rules the handlers enforce on names in paths and queries, and the grant body's
/// "exactly one of `user` and `team`", stated in the document so a client can check a request
/// before sending it. Body fields carry their patterns on the types in `ferry_api`.
struct Constraints;

/// Project, environment, pipeline, team, user and token names (`projects::check_name`).
use ferry_core::{NAME_MAX_LEN, NAME_PATTERN};
/// Secret and parameter names (`ferry_engine::model::SecretName`).
pub(crate) const SECRET_NAME_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_]*$";

impl Modify for Constraints {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::ParameterIn;
        use utoipa::openapi::schema::{
            AllOfBuilder, AnyOfBuilder, ArrayItems, ObjectBuilder, OneOfBuilder, Schema, Type,
        };
        use utoipa::openapi::RefOr;

        let pattern = |pattern: &str, max: Option<usize>| {
            RefOr::T(Schema::Object(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(pattern))
                    .max_length(max)
                    .build(),
            ))
        };
        let string = |rule: &str| pattern(rule, None);
        let statuses = || {
            RefOr::T(Schema::Object(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(ferry_core::RunStatus::ALL.iter().map(|s| s.as_str())))
                    .build(),
            ))
        };
        // A comma-separated list of event types, or nothing.
        let event_type = ferry_core::EventType::ALL
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join("|");
        let event_types = format!("^(({event_type})(,({event_type}))*)?$");
        // Empty means "none": the main state, the global scope.
        let optional_name = format!(
            "^({})?$",
            NAME_PATTERN.trim_start_matches('^').trim_end_matches('$')
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            let secret_path =
                path.starts_with("/api/v1/secrets") || path.starts_with("/api/v1/params");
            let state_path = path.starts_with("/api/v1/states/");
            for operation in operations(item) {
                for parameter in operation.parameters.iter_mut().flatten() {
                    let schema = match (&parameter.parameter_in, parameter.name.as_str()) {
                        // The scope of a secret or parameter (`secrets::check_scope`).
                        (ParameterIn::Query, "project" | "env") if secret_path => {
                            string(&optional_name)
                        }
                        (ParameterIn::Query, "name") if state_path => string(&optional_name),
                        (ParameterIn::Query, "ref") => string(REF_PATTERN),
                        (ParameterIn::Query, "status") if path == "/api/v1/runs" => statuses(),
                        (ParameterIn::Query, "type") if path.starts_with("/api/v1/events") => {
                            string(&event_types)
                        }
                        (ParameterIn::Path, "name") if secret_path => pattern(
                            SECRET_NAME_PATTERN,
                            Some(ferry_engine::model::MAX_SECRET_NAME_LEN),
                        ),
                        (
                            ParameterIn::Path,
                            "project" | "environment" | "team" | "user" | "name",
                        ) => pattern(NAME_PATTERN, Some(NAME_MAX_LEN)),
                        _ => continue,
                    };
                    parameter.schema = Some(schema);
                }
            }
        }

        let components = openapi.components.get_or_insert_with(Default::default);
        // Grants and token scopes are `ROLE[@PROJECT[/ENVIRONMENT]]` (`Grant::parse`).
        let grant = ferry_core::Grant::pattern();
        let set_pattern = |schema: Option<&mut RefOr<Schema>>| {
            if let Some(RefOr::T(Schema::Object(text))) = schema {
                text.pattern = Some(grant.clone());
            }
        };
        if let Some(RefOr::T(Schema::Object(token))) = components.schemas.get_mut("TokenCreate") {
            if let Some(RefOr::T(Schema::Array(scopes))) = token.properties.get_mut("scopes") {
                if let ArrayItems::RefOrSchema(item) = &mut scopes.items {
                    set_pattern(Some(item));
                }
            }
        }
        if let Some(RefOr::T(Schema::Object(role_grant))) = components.schemas.get_mut("RoleGrant")
        {
            set_pattern(role_grant.properties.get_mut("grant"));
        }

        // Git refs (`ferry_engine::git::check_ref`; git applies its own rules after).
        for schema in ["RunCreate", "PromoteCreate"] {
            if let Some(RefOr::T(Schema::Object(body))) = components.schemas.get_mut(schema) {
                if let Some(RefOr::T(Schema::Object(git_ref))) = body.properties.get_mut("ref") {
                    git_ref.pattern = Some(REF_PATTERN.to_owned());
                }
            }
        }

        // Terraform resource addresses (`ferry_engine`'s `check_address`).
        if let Some(RefOr::T(Schema::Object(run))) = components.schemas.get_mut("RunCreate") {
            for field in ["targets", "replaces"] {
                if let Some(RefOr::T(Schema::Array(list))) = run.properties.get_mut(field) {
                    list.items = ArrayItems::RefOrSchema(Box::new(string(ADDRESS_PATTERN)));
                }
            }
        }

        // Values: the masker's minimum for a secret, one character for a parameter.
        for (path, min) in [
            (
                "/api/v1/secrets/{name}",
                ferry_engine::model::SecretKind::Secret.min_len(),
            ),
            (
                "/api/v1/params/{name}",
                ferry_engine::model::SecretKind::Param.min_len(),
            ),
        ] {
            let value = ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(min))
                .description(Some(format!(
                    "At least {min} characters; at most {} bytes.",
                    ferry_engine::model::MAX_SECRET_VALUE_LEN
                )))
                .build();
            let body = ObjectBuilder::new()
                .property("value", value)
                .required("value")
                .additional_properties(Some(
                    utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
                ))
                .build();
            set_body(openapi, path, Schema::Object(body));
        }

        // A retry takes no options: nothing, `{}` or `null`.
        let nothing = ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                Type::Object,
                Type::Null,
            ]))
            .additional_properties(Some(
                utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
            ))
            .build();
        set_body(openapi, "/api/v1/runs/{id}/retry", Schema::Object(nothing));

        // What a Terraform state must have to be pushed (`ferry_state::StateMeta`).
        let state = ObjectBuilder::new()
            .description(Some("A Terraform state (JSON object)"))
            .property(
                "serial",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0)),
            )
            .property(
                "lineage",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1)),
            )
            .required("serial")
            .required("lineage")
            .build();
        set_body(
            openapi,
            "/api/v1/states/{project}/{environment}/push",
            Schema::Object(state),
        );

        let components = openapi.components.get_or_insert_with(Default::default);
        // A user update changes something.
        if let Some(RefOr::T(Schema::Object(update))) = components.schemas.get_mut("UserUpdate") {
            let object = std::mem::take(update);
            components.schemas.insert(
                "UserUpdate".to_owned(),
                RefOr::T(Schema::AllOf(
                    AllOfBuilder::new()
                        .item(Schema::Object(object))
                        .item(Schema::AnyOf(
                            AnyOfBuilder::new()
                                .item(present("disabled", Type::Boolean))
                                .item(present("password", Type::String))
                                .build(),
                        ))
                        .build(),
                )),
            );
        }

        // A grant names exactly one of a user and a team.
        if let Some(RefOr::T(Schema::Object(grant))) = components.schemas.get_mut("RoleGrant") {
            let mut one_of = OneOfBuilder::new()
                .item(present("user", Type::String))
                .item(present("team", Type::String))
                .build();
            one_of.description = None;
            let object = std::mem::take(grant);
            components.schemas.insert(
                "RoleGrant".to_owned(),
                RefOr::T(Schema::AllOf(
                    AllOfBuilder::new()
                        .item(Schema::Object(object))
                        .item(Schema::OneOf(one_of))
                        .build(),
                )),
            );
        }
    }
}

/// Git refs as `ferry_engine::git::check_ref` accepts them: not starting with `-`, no
/// whitespace or control characters, at most 255 characters.
const REF_PATTERN: &str = "^[^-\\s\\x00-\\x1f\\x7f-\\x9f][^\\s\\x00-\\x1f\\x7f-\\x9f]{0,254}$";

/// Terraform resource addresses as `ferry_engine` accepts them: a letter first, then no
/// whitespace or control characters, at most 1024 characters.
const ADDRESS_PATTERN: &str = "^[A-Za-z][^\\s\\x00-\\x1f\\x7f-\\x9f]{0,1023}$";

/// `{"required": [field], "properties": {field: {"type": ty}}}`: the field is there and not null.
fn present(field: &str, ty: utoipa::openapi::schema::Type) -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, Schema};
    Schema::Object(
        ObjectBuilder::new()
            .property(field, ObjectBuilder::new().schema_type(ty))
            .required(field)
            .build(),
    )
}

/// Replaces the JSON request body schema of every operation on `path`.
fn set_body(
    openapi: &mut utoipa::openapi::OpenApi,
    path: &str,
    schema: utoipa::openapi::schema::Schema,
) {
    let Some(item) = openapi.paths.paths.get_mut(path) else {
        return;
    };
    for operation in [&mut item.put, &mut item.post].into_iter().flatten() {
        if let Some(body) = operation.request_body.as_mut() {
            if let Some(content) = body.content.get_mut("application/json") {
                content.schema = Some(utoipa::openapi::RefOr::T(schema.clone()));
            }
        }
    }
}
