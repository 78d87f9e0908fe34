//! The approval decision, as one pure function: given the environment's rule, the run, the
//! deciding identity, the decisions so far and what the plan binding allows, what happens to
//! a decision. The store gathers the inputs and persists the answer; nothing else decides.

use crate::{may_approve, ApprovalDenied, ApprovalRule};

/// Approve or reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Approve,
    Reject,
}

/// Everything the decision depends on.
#[derive(Debug, Clone)]
pub struct DecisionInput<'a> {
    pub rule: &'a ApprovalRule,
    pub triggered_by: &'a str,
    /// `Name <email>` of the run's commit, when known.
    pub commit_author: Option<&'a str>,
    pub approver: &'a str,
    /// The approver's teams (for `team:NAME` entries of the rule).
    pub teams: &'a [String],
    pub verdict: Verdict,
    /// An admin's emergency approval (who may use it is authorisation's business).
    pub break_glass: bool,
    pub comment: &'a str,
    /// Whether the run has an approval step in the environment, and whether the run and that
    /// step are waiting for a decision now.
    pub has_step: bool,
    pub waiting: bool,
    /// The identities that decided in this environment already, and how many distinct ones
    /// approved.
    pub decided_by: &'a [String],
    pub approvals: u32,
    /// Whether a plan is recorded for the environment (the decision is bound to it).
    pub plan_recorded: bool,
}

/// A decision that cannot be taken, and why, before anything is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The request itself is wrong (no comment; a break-glass rejection).
    Invalid(&'static str),
    /// This identity may not decide; audited as denied.
    Denied(ApprovalDenied),
    /// The run is not in a state to take it.
    Conflict(ConflictReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictReason {
    NoApprovalStep,
    NotWaiting,
    AlreadyDecided,
    NoPlan,
}

/// What a decision does once recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An approval counted; the rule needs `required` distinct ones and has `approvals`.
    Counted { approvals: u32, required: u32 },
    /// The environment is approved: the run continues. `break_glass` when an emergency
    /// approval satisfied the rule on its own.
    Approved { approvals: u32, break_glass: bool },
    /// Rejected: the approval step and the run fail with `MANUAL_APPROVAL_FAILED`.
    Rejected,
}

/// Checks the request alone (comment, break glass): the part that needs no stored state.
/// The answer is the message of a [`Refusal::Invalid`].
pub fn check_request(
    verdict: Verdict,
    break_glass: bool,
    comment: &str,
) -> Result<(), &'static str> {
    if comment.trim().is_empty() {
        return Err(if break_glass {
            "a break-glass approval needs a reason (the comment)"
        } else {
            "a comment is required"
        });
    }
    if break_glass && verdict != Verdict::Approve {
        return Err("break glass is for approving; a rejection needs no emergency");
    }
    Ok(())
}

/// The decision. Refusals come in this order: the request, the identity (nobody decides on
/// their own change; only listed approvers, unless break glass), the run's state, a second
/// decision by the same identity, a missing plan.
pub fn decide(input: &DecisionInput<'_>) -> Result<Outcome, Refusal> {
    check_request(input.verdict, input.break_glass, input.comment).map_err(Refusal::Invalid)?;
    let identity = if input.break_glass {
        may_approve(input.triggered_by, input.commit_author, input.approver)
    } else {
        input.rule.check_member(
            input.triggered_by,
            input.commit_author,
            input.approver,
            input.teams,
        )
    };
    identity.map_err(Refusal::Denied)?;
    if !input.has_step {
        return Err(Refusal::Conflict(ConflictReason::NoApprovalStep));
    }
    if !input.waiting {
        return Err(Refusal::Conflict(ConflictReason::NotWaiting));
    }
    if input.decided_by.iter().any(|d| d == input.approver) {
        return Err(Refusal::Conflict(ConflictReason::AlreadyDecided));
    }
    if !input.plan_recorded {
        return Err(Refusal::Conflict(ConflictReason::NoPlan));
    }
    Ok(match input.verdict {
        Verdict::Reject => Outcome::Rejected,
        Verdict::Approve => {
            let approvals = input.approvals + 1;
            if input.break_glass || input.rule.satisfied_by(approvals) {
                Outcome::Approved {
                    approvals,
                    break_glass: input.break_glass,
                }
            } else {
                Outcome::Counted {
                    approvals,
                    required: input.rule.required.max(1),
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(approvers: &[&str], required: u32) -> ApprovalRule {
        ApprovalRule {
            approvers: approvers.iter().map(|s| s.to_string()).collect(),
            required,
        }
    }

    fn base<'a>(
        rule: &'a ApprovalRule,
        approver: &'a str,
        decided: &'a [String],
    ) -> DecisionInput<'a> {
        DecisionInput {
            rule,
            triggered_by: "tom",
            commit_author: Some("Cara Author <cara@example.com>"),
            approver,
            teams: &[],
            verdict: Verdict::Approve,
            break_glass: false,
            comment: "looks right",
            has_step: true,
            waiting: true,
            decided_by: decided,
            approvals: decided.len() as u32,
            plan_recorded: true,
        }
    }

    #[test]
    fn the_decision_table() {
        let anyone = rule(&[], 1);
        let two = rule(&[], 2);
        let listed = rule(&["alice", "team:leads"], 1);
        let three_by_alice = rule(&["alice"], 3);
        let none: Vec<String> = Vec::new();
        let alice_decided = vec!["alice".to_owned()];
        let leads = vec!["leads".to_owned()];
        type Case<'a> = (&'a str, DecisionInput<'a>, Result<Outcome, Refusal>);
        let cases: Vec<Case<'_>> = vec![
            (
                "one approval of a one-approval rule approves",
                base(&anyone, "bob", &none),
                Ok(Outcome::Approved {
                    approvals: 1,
                    break_glass: false,
                }),
            ),
            (
                "the first of two is counted",
                base(&two, "bob", &none),
                Ok(Outcome::Counted {
                    approvals: 1,
                    required: 2,
                }),
            ),
            (
                "the second distinct one approves",
                base(&two, "bob", &alice_decided),
                Ok(Outcome::Approved {
                    approvals: 2,
                    break_glass: false,
                }),
            ),
            (
                "a rejection rejects",
                DecisionInput {
                    verdict: Verdict::Reject,
                    ..base(&two, "bob", &none)
                },
                Ok(Outcome::Rejected),
            ),
            (
                "the triggerer may not decide",
                base(&anyone, "tom", &none),
                Err(Refusal::Denied(ApprovalDenied::SelfApproval)),
            ),
            (
                "the commit's author may not decide, even by email local part",
                base(&anyone, "cara", &none),
                Err(Refusal::Denied(ApprovalDenied::CommitAuthor)),
            ),
            (
                "Ferry itself never approves",
                base(&anyone, "system", &none),
                Err(Refusal::Denied(ApprovalDenied::System)),
            ),
            (
                "only listed approvers",
                base(&listed, "bob", &none),
                Err(Refusal::Denied(ApprovalDenied::NotAnApprover)),
            ),
            (
                "a listed team's member",
                DecisionInput {
                    teams: &leads,
                    ..base(&listed, "lee", &none)
                },
                Ok(Outcome::Approved {
                    approvals: 1,
                    break_glass: false,
                }),
            ),
            (
                "break glass skips the list and the count",
                DecisionInput {
                    break_glass: true,
                    ..base(&three_by_alice, "bob", &none)
                },
                Ok(Outcome::Approved {
                    approvals: 1,
                    break_glass: true,
                }),
            ),
            (
                "break glass never lets the author approve",
                DecisionInput {
                    break_glass: true,
                    ..base(&anyone, "tom", &none)
                },
                Err(Refusal::Denied(ApprovalDenied::SelfApproval)),
            ),
            (
                "break glass is not for rejecting",
                DecisionInput {
                    break_glass: true,
                    verdict: Verdict::Reject,
                    ..base(&anyone, "bob", &none)
                },
                Err(Refusal::Invalid(
                    "break glass is for approving; a rejection needs no emergency",
                )),
            ),
            (
                "a comment is required, before anything else",
                DecisionInput {
                    comment: "  ",
                    ..base(&anyone, "tom", &none)
                },
                Err(Refusal::Invalid("a comment is required")),
            ),
            (
                "break glass needs its reason",
                DecisionInput {
                    comment: "",
                    break_glass: true,
                    ..base(&anyone, "bob", &none)
                },
                Err(Refusal::Invalid(
                    "a break-glass approval needs a reason (the comment)",
                )),
            ),
            (
                "no approval step",
                DecisionInput {
                    has_step: false,
                    ..base(&anyone, "bob", &none)
                },
                Err(Refusal::Conflict(ConflictReason::NoApprovalStep)),
            ),
            (
                "not waiting",
                DecisionInput {
                    waiting: false,
                    ..base(&anyone, "bob", &none)
                },
                Err(Refusal::Conflict(ConflictReason::NotWaiting)),
            ),
            (
                "one decision per identity",
                base(&two, "alice", &alice_decided),
                Err(Refusal::Conflict(ConflictReason::AlreadyDecided)),
            ),
            (
                "nothing to bind to",
                DecisionInput {
                    plan_recorded: false,
                    ..base(&anyone, "bob", &none)
                },
                Err(Refusal::Conflict(ConflictReason::NoPlan)),
            ),
            (
                "the identity is judged before the run's state",
                DecisionInput {
                    waiting: false,
                    ..base(&listed, "bob", &none)
                },
                Err(Refusal::Denied(ApprovalDenied::NotAnApprover)),
            ),
        ];
        for (what, input, expected) in cases {
            assert_eq!(decide(&input), expected, "{what}");
        }
    }
}
