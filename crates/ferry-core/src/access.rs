//! Who may do what: the four roles, the permissions they carry, and grants of a role on a
//! project (or every project) and optionally one environment.
//!
//! This is the vocabulary of PRODUCT.md §4 invariant 6 (least privilege). The server decides
//! every request with [`Grants::allows`]; the rules themselves (which route needs which
//! permission) live in the server, next to the router.

use crate::status::closed_set;
use std::fmt;
use std::str::FromStr;

closed_set!(
    /// A role, granted per project (or on every project) and optionally per environment.
    Role {
        Viewer => "viewer",
        Operator => "operator",
        Approver => "approver",
        Admin => "admin",
    }
);

closed_set!(
    /// What a request needs. Each role carries a fixed set of these.
    Permission {
        Read => "read",
        ReadRaw => "read_raw",
        Operate => "operate",
        Approve => "approve",
        Admin => "admin",
    }
);

impl Role {
    /// `viewer` reads (with sensitive values redacted); `operator` also triggers, cancels,
    /// retries, promotes and pulls raw states and plans; `approver` reads and decides
    /// approvals; `admin` may do everything.
    pub fn permits(self, permission: Permission) -> bool {
        use Permission as P;
        match self {
            Role::Viewer => permission == P::Read,
            Role::Operator => matches!(permission, P::Read | P::ReadRaw | P::Operate),
            Role::Approver => matches!(permission, P::Read | P::Approve),
            Role::Admin => true,
        }
    }

    /// The roles that carry `permission`, for refusals that say what would be needed
    /// (`operator or admin`).
    pub fn granting(permission: Permission) -> String {
        let names: Vec<&str> = Role::ALL
            .iter()
            .filter(|r| r.permits(permission))
            .map(|r| r.as_str())
            .collect();
        names.join(" or ")
    }
}

/// A role on a project (`None`: every project) and an environment (`None`: every
/// environment of those projects).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Grant {
    pub role: Role,
    pub project: Option<String>,
    pub environment: Option<String>,
}

impl Grant {
    pub fn everywhere(role: Role) -> Grant {
        Grant {
            role,
            project: None,
            environment: None,
        }
    }

    fn covers_project(&self, project: &str) -> bool {
        self.project.as_deref().is_none_or(|p| p == project)
    }

    /// Whether this grant lets its holder do `permission` on `target`.
    ///
    /// A grant limited to one environment covers requests about that environment only; a
    /// request about the project as a whole (trigger a run, cancel it) needs a grant on
    /// every environment. Reading is the exception: any grant in a project makes the
    /// project's runs visible, since an approver for staging must see the run they approve.
    pub fn allows(&self, permission: Permission, target: &Target<'_>) -> bool {
        if !self.role.permits(permission) {
            return false;
        }
        match target {
            Target::Global => self.project.is_none() && self.environment.is_none(),
            Target::Project(project) => {
                self.covers_project(project)
                    && (self.environment.is_none() || permission == Permission::Read)
            }
            Target::Environment(project, environment) => {
                self.covers_project(project)
                    && self
                        .environment
                        .as_deref()
                        .is_none_or(|e| e == *environment)
            }
        }
    }

    /// Parses `ROLE[@PROJECT[/ENVIRONMENT]]` (`*` for every project), the form the CLI uses.
    pub fn parse(text: &str) -> Result<Grant, String> {
        let (role, rest) = match text.split_once('@') {
            Some((role, rest)) => (role, Some(rest)),
            None => (text, None),
        };
        let role: Role = role.parse().map_err(|e: UnknownName| e.to_string())?;
        let (project, environment) = match rest {
            None => (None, None),
            Some(rest) => match rest.split_once('/') {
                Some((p, e)) => (Some(p), Some(e)),
                None => (Some(rest), None),
            },
        };
        let project = match project {
            Some("*") | None => None,
            Some("") => return Err(format!("`{text}`: empty project")),
            Some(p) if !crate::is_name(p) => {
                return Err(format!("`{text}`: a project name is {}", crate::NAME_RULE))
            }
            Some(p) => Some(p.to_owned()),
        };
        let environment = match environment {
            None => None,
            Some("") | Some("*") => return Err(format!("`{text}`: empty environment")),
            Some(e) if !crate::is_name(e) => {
                return Err(format!(
                    "`{text}`: an environment name is {}",
                    crate::NAME_RULE
                ))
            }
            Some(e) => Some(e.to_owned()),
        };
        if project.is_none() && environment.is_some() {
            return Err(format!(
                "`{text}`: an environment grant needs a project (ROLE@PROJECT/ENV)"
            ));
        }
        Ok(Grant {
            role,
            project,
            environment,
        })
    }
}

impl Grant {
    /// What [`Grant::parse`] accepts, as a regular expression (for the OpenAPI document).
    pub fn pattern() -> String {
        let roles: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
        let name = "[a-z0-9][a-z0-9_-]{0,62}";
        format!("^({})(@(\\*|{name}(/{name})?))?$", roles.join("|"))
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.role.as_str())?;
        match (&self.project, &self.environment) {
            (None, _) => Ok(()),
            (Some(p), None) => write!(f, "@{p}"),
            (Some(p), Some(e)) => write!(f, "@{p}/{e}"),
        }
    }
}

use crate::UnknownName;

/// What a request is about, resolved from its path (and, for approvals, its body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// Ferry as a whole: users, teams, tokens, settings.
    Global,
    Project(&'a str),
    Environment(&'a str, &'a str),
}

impl Target<'_> {
    pub fn project(&self) -> Option<&str> {
        match self {
            Target::Global => None,
            Target::Project(p) | Target::Environment(p, _) => Some(p),
        }
    }
}

/// Everything an identity holds. A personal token may narrow its user's grants with its
/// own scopes: then a request needs both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    pub grants: Vec<Grant>,
    /// `Some`: the credential is limited to these (a scoped personal token).
    pub limit: Option<Vec<Grant>>,
}

impl Grants {
    pub fn new(grants: Vec<Grant>) -> Grants {
        Grants {
            grants,
            limit: None,
        }
    }

    fn any(list: &[Grant], permission: Permission, target: &Target<'_>) -> bool {
        list.iter().any(|g| g.allows(permission, target))
    }

    pub fn allows(&self, permission: Permission, target: &Target<'_>) -> bool {
        Grants::any(&self.grants, permission, target)
            && self
                .limit
                .as_deref()
                .is_none_or(|l| Grants::any(l, permission, target))
    }

    /// Whether the identity may know the project exists (any grant in it). Objects of
    /// projects it cannot see answer 404, never 403.
    pub fn sees(&self, project: &str) -> bool {
        self.allows(Permission::Read, &Target::Project(project))
    }

    /// Whether the identity sees every project (a grant on all projects).
    pub fn sees_all(&self) -> bool {
        let all = |list: &[Grant]| list.iter().any(|g| g.project.is_none());
        all(&self.grants) && self.limit.as_deref().is_none_or(all)
    }

    /// Whether the identity is an admin of Ferry as a whole.
    pub fn is_admin(&self) -> bool {
        self.allows(Permission::Admin, &Target::Global)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(text: &str) -> Grant {
        Grant::parse(text).unwrap()
    }

    #[test]
    fn roles_carry_their_permissions() {
        let table: Vec<String> = Role::ALL
            .iter()
            .map(|r| {
                let perms: Vec<&str> = Permission::ALL
                    .iter()
                    .filter(|p| r.permits(**p))
                    .map(|p| p.as_str())
                    .collect();
                format!("{r}: {}", perms.join(" "))
            })
            .collect();
        assert_eq!(
            table,
            [
                "viewer: read",
                "operator: read read_raw operate",
                "approver: read approve",
                "admin: read read_raw operate approve admin",
            ]
        );
    }

    #[test]
    fn environment_grants_cover_only_their_environment() {
        let staging = Grants::new(vec![g("approver@net/staging")]);
        let approve = Permission::Approve;
        assert!(staging.allows(approve, &Target::Environment("net", "staging")));
        assert!(!staging.allows(approve, &Target::Environment("net", "prod")));
        assert!(!staging.allows(approve, &Target::Environment("dns", "staging")));
        assert!(!staging.allows(approve, &Target::Project("net")));
        assert!(staging.sees("net"));
        assert!(!staging.sees("dns"));
        assert!(!staging.sees_all());
        assert!(!staging.allows(Permission::Read, &Target::Environment("net", "prod")));
        assert!(!staging.is_admin());
    }

    #[test]
    fn a_project_admin_is_not_a_global_admin() {
        let admin = Grants::new(vec![g("admin@net")]);
        assert!(admin.allows(Permission::Admin, &Target::Environment("net", "prod")));
        assert!(!admin.is_admin());
        assert!(Grants::new(vec![g("admin")]).is_admin());
    }

    #[test]
    fn a_limit_narrows_the_grants() {
        let mut operator = Grants::new(vec![g("operator")]);
        operator.limit = Some(vec![g("viewer@net")]);
        assert!(operator.sees("net"));
        assert!(!operator.sees("dns"));
        assert!(!operator.allows(Permission::Operate, &Target::Project("net")));
        assert!(!operator.sees_all());
    }

    #[test]
    fn grants_parse_and_print() {
        for text in ["viewer", "operator@net", "approver@net/staging"] {
            assert_eq!(g(text).to_string(), text);
        }
        assert_eq!(g("admin@*").to_string(), "admin");
        assert_eq!(
            Grant::pattern(),
            "^(viewer|operator|approver|admin)(@(\\*|[a-z0-9][a-z0-9_-]{0,62}(/[a-z0-9][a-z0-9_-]{0,62})?))?$"
        );
        for bad in [
            "boss",
            "viewer@",
            "viewer@net/",
            "viewer@*/prod",
            "viewer@Net",
            "viewer@net/a/b",
            "viewer@net/../x",
        ] {
            assert!(Grant::parse(bad).is_err(), "{bad}");
        }
    }
}
