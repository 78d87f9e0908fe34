//! Ferry's domain vocabulary and the run state machine.
//!
//! **Architecture Invariant:** this crate does no I/O and has no tokio, sqlx, axum or serde:
//! it is the part of Ferry that "can't fail". Every status change of a run, stage or action
//! goes through [`RunStatus::apply`], [`StageStatus::apply`] or [`ActionStatus::apply`], which
//! accept only legal transitions; the store calls them inside the transaction that persists
//! the change, so an illegal transition can never be written.

mod access;
pub mod approval;
mod ids;
mod names;
#[macro_use]
mod status;
mod event;
mod failure;

pub use access::{Grant, Grants, Permission, Role, Target};
pub use event::EventType;
pub use failure::FailureCode;
pub use ids::{ActionId, ParseIdError, RunId, RunNumber, StageId};
pub use names::{is_name, NAME_MAX_LEN, NAME_PATTERN, NAME_RULE};
pub use status::{
    ActionEvent, ActionStatus, InvalidTransition, RunEvent, RunStatus, StageEvent, StageKind,
    StageStatus, UnknownName,
};

/// Who asked for something: a named identity (a token's name today, a user later) or Ferry
/// itself (`system`) for recovery work done at start-up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Actor {
    pub name: String,
    /// Where the request came from (`127.0.0.1:53122`, `cli`, `startup`).
    pub source: String,
}

impl Actor {
    pub const SYSTEM: &'static str = "system";

    pub fn system(source: &str) -> Actor {
        Actor {
            name: Actor::SYSTEM.to_owned(),
            source: source.to_owned(),
        }
    }

    pub fn is_system(&self) -> bool {
        self.name == Actor::SYSTEM
    }
}

/// Whether `approver` may decide on a run that `triggered_by` started on a commit written by
/// `commit_author` (`Name <email>`, when known). Nobody approves their own change, whether
/// they triggered it or wrote it; Ferry itself never approves.
pub fn may_approve(
    triggered_by: &str,
    commit_author: Option<&str>,
    approver: &str,
) -> Result<(), ApprovalDenied> {
    if approver == Actor::SYSTEM {
        return Err(ApprovalDenied::System);
    }
    if approver == triggered_by {
        return Err(ApprovalDenied::SelfApproval);
    }
    if commit_author.is_some_and(|author| authored_by(author, approver)) {
        return Err(ApprovalDenied::CommitAuthor);
    }
    Ok(())
}

/// Whether the identity `name` is the author `Name <email>` of a commit: its name, its
/// email, or the email's local part, compared without case. Deliberately generous: a false
/// match costs a second approver, a missed one lets someone approve their own change.
fn authored_by(author: &str, name: &str) -> bool {
    let name = name.trim();
    if name.is_empty() {
        return false;
    }
    let (author_name, email) = match author.split_once('<') {
        Some((n, rest)) => (n.trim(), rest.trim_end_matches('>').trim()),
        None => (author.trim(), ""),
    };
    let local = email.split('@').next().unwrap_or("");
    [author_name, email, local]
        .iter()
        .any(|candidate| !candidate.is_empty() && candidate.eq_ignore_ascii_case(name))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalDenied {
    SelfApproval,
    CommitAuthor,
    System,
    NotAnApprover,
}

/// Who may approve in an environment and how many distinct approvals it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRule {
    /// Identities allowed to approve; empty means anyone (other than the triggerer).
    /// `team:NAME` entries match every member of that team (see [`ApprovalRule::check_member`]).
    pub approvers: Vec<String>,
    pub required: u32,
}

impl ApprovalRule {
    /// Whether `approver` may decide on a run that `triggered_by` started on a commit by
    /// `commit_author`.
    pub fn check(
        &self,
        triggered_by: &str,
        commit_author: Option<&str>,
        approver: &str,
    ) -> Result<(), ApprovalDenied> {
        self.check_member(triggered_by, commit_author, approver, &[])
    }

    /// Like [`ApprovalRule::check`], for an approver who belongs to `teams`: a `team:NAME`
    /// entry matches the members of team `NAME`.
    pub fn check_member(
        &self,
        triggered_by: &str,
        commit_author: Option<&str>,
        approver: &str,
        teams: &[String],
    ) -> Result<(), ApprovalDenied> {
        may_approve(triggered_by, commit_author, approver)?;
        let listed = |entry: &String| match entry.strip_prefix(Self::TEAM_PREFIX) {
            Some(team) => teams.iter().any(|t| t == team),
            None => entry == approver,
        };
        if !self.approvers.is_empty() && !self.approvers.iter().any(listed) {
            return Err(ApprovalDenied::NotAnApprover);
        }
        Ok(())
    }

    /// The prefix of approver entries that name a team.
    pub const TEAM_PREFIX: &'static str = "team:";

    /// Whether `approvals` distinct approvals satisfy the rule.
    pub fn satisfied_by(&self, approvals: u32) -> bool {
        approvals >= self.required.max(1)
    }
}

impl std::fmt::Display for ApprovalDenied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApprovalDenied::SelfApproval => {
                f.write_str("the identity that triggered a run cannot approve or reject it")
            }
            ApprovalDenied::CommitAuthor => {
                f.write_str("the author of a run's commit cannot approve or reject it")
            }
            ApprovalDenied::System => f.write_str("the system identity cannot approve runs"),
            ApprovalDenied::NotAnApprover => {
                f.write_str("this identity is not among the environment's approvers")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_approval_is_denied() {
        assert_eq!(
            may_approve("alice", None, "alice"),
            Err(ApprovalDenied::SelfApproval)
        );
        assert_eq!(
            may_approve("alice", None, "system"),
            Err(ApprovalDenied::System)
        );
        assert_eq!(may_approve("alice", None, "bob"), Ok(()));
    }

    #[test]
    fn the_commit_author_cannot_approve() {
        let author = Some("Bob Builder <bob@example.com>");
        for name in ["bob", "BOB@example.com", "Bob Builder"] {
            assert_eq!(
                may_approve("alice", author, name),
                Err(ApprovalDenied::CommitAuthor),
                "{name}"
            );
        }
        assert_eq!(may_approve("alice", author, "carol"), Ok(()));
        assert_eq!(may_approve("alice", Some("<>"), "carol"), Ok(()));
    }

    #[test]
    fn approver_lists_and_counts() {
        let anyone = ApprovalRule {
            approvers: vec![],
            required: 1,
        };
        assert_eq!(anyone.check("alice", None, "bob"), Ok(()));
        assert_eq!(
            anyone.check("alice", None, "alice"),
            Err(ApprovalDenied::SelfApproval)
        );
        let listed = ApprovalRule {
            approvers: vec!["carol".into(), "team:leads".into()],
            required: 2,
        };
        assert_eq!(
            listed.check("alice", None, "bob"),
            Err(ApprovalDenied::NotAnApprover)
        );
        assert_eq!(listed.check("alice", None, "carol"), Ok(()));
        assert_eq!(
            listed.check("carol", None, "carol"),
            Err(ApprovalDenied::SelfApproval)
        );
        // Team entries match members only.
        let leads = ["leads".to_owned()];
        assert_eq!(listed.check_member("alice", None, "dave", &leads), Ok(()));
        assert_eq!(
            listed.check_member("alice", None, "dave", &["platform".to_owned()]),
            Err(ApprovalDenied::NotAnApprover)
        );
        assert_eq!(
            listed.check("alice", None, "team:leads"),
            Err(ApprovalDenied::NotAnApprover),
            "a user literally named like a team entry is not a member"
        );
        assert_eq!(
            listed.check_member("dave", None, "dave", &leads),
            Err(ApprovalDenied::SelfApproval)
        );
        assert!(!listed.satisfied_by(1));
        assert!(listed.satisfied_by(2));
    }
}
