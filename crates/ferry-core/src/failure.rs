//! Why a run failed, when the reason is one a machine should recognise: the closed set of
//! failure codes. On the wire (a run's `reason`, an event's `detail`) a coded reason reads
//! `CODE: what happened`, exactly as it always has; [`FailureCode::of`] reads the code back.

use std::fmt;

use crate::status::UnknownName;

/// The codes a failure reason can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureCode {
    /// The plan to apply is not the approved one, or the state moved since it was made.
    StalePlan,
    /// An approval was rejected, or nobody decided within the environment's timeout.
    ManualApprovalFailed,
    /// The policy stage found blocking findings.
    PolicyViolation,
}

impl FailureCode {
    pub const ALL: &'static [FailureCode] = &[
        FailureCode::StalePlan,
        FailureCode::ManualApprovalFailed,
        FailureCode::PolicyViolation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureCode::StalePlan => "STALE_PLAN",
            FailureCode::ManualApprovalFailed => "MANUAL_APPROVAL_FAILED",
            FailureCode::PolicyViolation => "POLICY_VIOLATION",
        }
    }

    /// The reason as it is stored and shown: `CODE: detail`.
    pub fn reason(self, detail: impl fmt::Display) -> String {
        format!("{}: {detail}", self.as_str())
    }

    /// The code a reason carries, if any: at its start, or after an environment prefix
    /// (`prod: STALE_PLAN: …`).
    pub fn of(reason: &str) -> Option<FailureCode> {
        let coded = |text: &str| {
            FailureCode::ALL.iter().copied().find(|code| {
                text.strip_prefix(code.as_str())
                    .is_some_and(|rest| rest.starts_with(':'))
            })
        };
        coded(reason).or_else(|| reason.split_once(": ").and_then(|(_, rest)| coded(rest)))
    }
}

impl fmt::Display for FailureCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for FailureCode {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<FailureCode, UnknownName> {
        FailureCode::ALL
            .iter()
            .copied()
            .find(|code| code.as_str() == s)
            .ok_or_else(|| UnknownName {
                kind: "FailureCode",
                text: s.to_owned(),
                expected: &["STALE_PLAN", "MANUAL_APPROVAL_FAILED", "POLICY_VIOLATION"],
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_carry_their_code_in_todays_words() {
        for &code in FailureCode::ALL {
            let reason = code.reason("what happened");
            assert_eq!(reason, format!("{}: what happened", code.as_str()));
            assert_eq!(FailureCode::of(&reason), Some(code));
            assert_eq!(FailureCode::of(&format!("prod: {reason}")), Some(code));
            assert_eq!(code.as_str().parse::<FailureCode>(), Ok(code));
        }
        assert_eq!(
            FailureCode::StalePlan.reason("no plan"),
            "STALE_PLAN: no plan"
        );
        for uncoded in [
            "dev test: `smoke` failed: exit code 3",
            "STALE_PLANNER: x",
            "cancelled by bob",
            "",
        ] {
            assert_eq!(FailureCode::of(uncoded), None, "{uncoded}");
        }
        assert!("BOGUS".parse::<FailureCode>().is_err());
    }
}
