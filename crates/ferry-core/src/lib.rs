//! Ferry's domain vocabulary and the run state machine.
//!
//! **Architecture Invariant:** this crate does no I/O and has no tokio, sqlx, axum or serde:
//! it is the part of Ferry that "can't fail". Every status change of a run, stage or action
//! goes through [`RunStatus::apply`], [`StageStatus::apply`] or [`ActionStatus::apply`], which
//! accept only legal transitions; the store calls them inside the transaction that persists
//! the change, so an illegal transition can never be written.

mod ids;
mod status;

pub use ids::{ActionId, ParseIdError, RunId, RunNumber, StageId};
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
        Actor { name: Actor::SYSTEM.to_owned(), source: source.to_owned() }
    }

    pub fn is_system(&self) -> bool {
        self.name == Actor::SYSTEM
    }
}

/// Whether `approver` may decide on a run that `triggered_by` started. Nobody approves their
/// own change; Ferry itself never approves.
pub fn may_approve(triggered_by: &str, approver: &str) -> Result<(), ApprovalDenied> {
    if approver == Actor::SYSTEM {
        return Err(ApprovalDenied::System);
    }
    if approver == triggered_by {
        return Err(ApprovalDenied::SelfApproval);
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalDenied {
    SelfApproval,
    System,
}

impl std::fmt::Display for ApprovalDenied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApprovalDenied::SelfApproval => f.write_str("the identity that triggered a run cannot approve or reject it"),
            ApprovalDenied::System => f.write_str("the system identity cannot approve runs"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_approval_is_denied() {
        assert_eq!(may_approve("alice", "alice"), Err(ApprovalDenied::SelfApproval));
        assert_eq!(may_approve("alice", "system"), Err(ApprovalDenied::System));
        assert_eq!(may_approve("alice", "bob"), Ok(()));
    }
}
