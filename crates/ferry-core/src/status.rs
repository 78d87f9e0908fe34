//! Statuses of runs, stages and actions, and the only transitions allowed between them.
//!
//! Run statuses follow the hosted-pipeline vocabulary of PRODUCT.md §2. Each level has its
//! own closed event set; `apply` is a total function over (status, event) pairs that answers
//! either the next status or an [`InvalidTransition`]. Terminal statuses accept no event:
//! a retry is a new run, never a resurrection.

use std::fmt;
use std::str::FromStr;

macro_rules! closed_set {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, UnknownName> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownName {
                        kind: stringify!($name),
                        text: s.to_owned(),
                        expected: &[$($text),+],
                    }),
                }
            }
        }
    };
}
pub(crate) use closed_set;

closed_set!(
    /// The status of a whole run.
    RunStatus {
        Queued => "Queued",
        InProgress => "InProgress",
        WaitingForApproval => "WaitingForApproval",
        Succeeded => "Succeeded",
        Failed => "Failed",
        Stopping => "Stopping",
        Stopped => "Stopped",
        Cancelled => "Cancelled",
        Superseded => "Superseded",
        Interrupted => "Interrupted",
    }
);

closed_set!(
    /// Something that happens to a run.
    RunEvent {
        Start => "start",
        AwaitApproval => "await_approval",
        Approved => "approved",
        Succeed => "succeed",
        Fail => "fail",
        RequestStop => "request_stop",
        Stopped => "stopped",
        Cancel => "cancel",
        Supersede => "supersede",
        Interrupt => "interrupt",
    }
);

closed_set!(
    /// The status of one stage of one environment.
    StageStatus {
        Pending => "Pending",
        InProgress => "InProgress",
        WaitingForApproval => "WaitingForApproval",
        Succeeded => "Succeeded",
        Failed => "Failed",
        Cancelled => "Cancelled",
        Skipped => "Skipped",
        Interrupted => "Interrupted",
    }
);

closed_set!(
    /// Something that happens to a stage.
    StageEvent {
        Start => "start",
        AwaitApproval => "await_approval",
        Succeed => "succeed",
        Fail => "fail",
        Cancel => "cancel",
        Skip => "skip",
        Interrupt => "interrupt",
    }
);

closed_set!(
    /// The status of one action (one process, or one built-in Terraform step).
    ActionStatus {
        Pending => "Pending",
        InProgress => "InProgress",
        Succeeded => "Succeeded",
        Failed => "Failed",
        Cancelled => "Cancelled",
        Skipped => "Skipped",
        Interrupted => "Interrupted",
    }
);

closed_set!(
    /// Something that happens to an action.
    ActionEvent {
        Start => "start",
        Succeed => "succeed",
        Fail => "fail",
        Cancel => "cancel",
        Skip => "skip",
        Interrupt => "interrupt",
    }
);

closed_set!(
    /// The stages of an environment, in the order they run (PRODUCT.md §2).
    StageKind {
        Validate => "validate",
        Plan => "plan",
        Policy => "policy",
        Test => "test",
        Approval => "approval",
        Apply => "apply",
        Verify => "verify",
    }
);

/// A (status, event) pair the state machine does not allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidTransition {
    pub level: &'static str,
    pub from: &'static str,
    pub event: &'static str,
}

impl fmt::Display for InvalidTransition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} in status {} cannot {}",
            self.level, self.from, self.event
        )
    }
}

impl std::error::Error for InvalidTransition {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    pub(crate) kind: &'static str,
    pub(crate) text: String,
    pub(crate) expected: &'static [&'static str],
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} `{}` (expected one of: {})",
            self.kind,
            self.text,
            self.expected.join(", ")
        )
    }
}

impl std::error::Error for UnknownName {}

impl RunStatus {
    /// Terminal statuses accept no further event.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded
                | RunStatus::Failed
                | RunStatus::Stopped
                | RunStatus::Cancelled
                | RunStatus::Superseded
                | RunStatus::Interrupted
        )
    }

    /// The one place run transitions are defined.
    pub fn apply(self, event: RunEvent) -> Result<RunStatus, InvalidTransition> {
        use RunEvent as E;
        use RunStatus as S;
        let next = match (self, event) {
            (S::Queued, E::Start) => S::InProgress,
            // A run can fail before it starts (its pipeline no longer parses, say).
            (S::Queued, E::Fail) => S::Failed,
            (S::Queued, E::Cancel) => S::Cancelled,
            (S::Queued, E::Supersede) => S::Superseded,
            (S::Queued, E::RequestStop) => S::Stopped,

            (S::InProgress, E::AwaitApproval) => S::WaitingForApproval,
            (S::InProgress, E::Succeed) => S::Succeeded,
            (S::InProgress, E::Fail) => S::Failed,
            (S::InProgress, E::Cancel) => S::Cancelled,
            (S::InProgress, E::RequestStop) => S::Stopping,
            (S::InProgress, E::Interrupt) => S::Interrupted,
            // Only while it waits for a later environment to be free; the engine checks that.
            (S::InProgress, E::Supersede) => S::Superseded,

            (S::WaitingForApproval, E::Approved) => S::InProgress,
            (S::WaitingForApproval, E::Fail) => S::Failed,
            (S::WaitingForApproval, E::Cancel) => S::Cancelled,
            (S::WaitingForApproval, E::Supersede) => S::Superseded,
            (S::WaitingForApproval, E::RequestStop) => S::Stopped,

            // A stop lets the running action finish; then the run is Stopped (or Failed if
            // that action failed). Cancel escalates; a crash still interrupts it.
            (S::Stopping, E::Stopped) => S::Stopped,
            (S::Stopping, E::Fail) => S::Failed,
            (S::Stopping, E::Cancel) => S::Cancelled,
            (S::Stopping, E::Interrupt) => S::Interrupted,

            _ => {
                return Err(InvalidTransition {
                    level: "run",
                    from: self.as_str(),
                    event: event.as_str(),
                })
            }
        };
        Ok(next)
    }
}

impl StageStatus {
    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            StageStatus::Pending | StageStatus::InProgress | StageStatus::WaitingForApproval
        )
    }

    pub fn apply(self, event: StageEvent) -> Result<StageStatus, InvalidTransition> {
        use StageEvent as E;
        use StageStatus as S;
        let next = match (self, event) {
            (S::Pending, E::Start) => S::InProgress,
            (S::Pending, E::Skip) => S::Skipped,
            (S::Pending, E::Cancel) => S::Cancelled,

            (S::InProgress, E::AwaitApproval) => S::WaitingForApproval,
            (S::InProgress, E::Succeed) => S::Succeeded,
            (S::InProgress, E::Fail) => S::Failed,
            (S::InProgress, E::Cancel) => S::Cancelled,
            (S::InProgress, E::Interrupt) => S::Interrupted,

            (S::WaitingForApproval, E::Succeed) => S::Succeeded,
            (S::WaitingForApproval, E::Fail) => S::Failed,
            (S::WaitingForApproval, E::Cancel) => S::Cancelled,

            _ => {
                return Err(InvalidTransition {
                    level: "stage",
                    from: self.as_str(),
                    event: event.as_str(),
                })
            }
        };
        Ok(next)
    }
}

impl ActionStatus {
    pub fn is_terminal(self) -> bool {
        !matches!(self, ActionStatus::Pending | ActionStatus::InProgress)
    }

    pub fn apply(self, event: ActionEvent) -> Result<ActionStatus, InvalidTransition> {
        use ActionEvent as E;
        use ActionStatus as S;
        let next = match (self, event) {
            (S::Pending, E::Start) => S::InProgress,
            (S::Pending, E::Skip) => S::Skipped,
            (S::Pending, E::Cancel) => S::Cancelled,

            (S::InProgress, E::Succeed) => S::Succeeded,
            (S::InProgress, E::Fail) => S::Failed,
            (S::InProgress, E::Cancel) => S::Cancelled,
            (S::InProgress, E::Interrupt) => S::Interrupted,

            _ => {
                return Err(InvalidTransition {
                    level: "action",
                    from: self.as_str(),
                    event: event.as_str(),
                })
            }
        };
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The whole run transition table, written out: every pair not listed must be refused.
    /// Changing `RunStatus::apply` without changing this table fails the test.
    const RUN_TABLE: &[(RunStatus, RunEvent, RunStatus)] = {
        use RunEvent as E;
        use RunStatus as S;
        &[
            (S::Queued, E::Start, S::InProgress),
            (S::Queued, E::Fail, S::Failed),
            (S::Queued, E::Cancel, S::Cancelled),
            (S::Queued, E::Supersede, S::Superseded),
            (S::Queued, E::RequestStop, S::Stopped),
            (S::InProgress, E::AwaitApproval, S::WaitingForApproval),
            (S::InProgress, E::Succeed, S::Succeeded),
            (S::InProgress, E::Fail, S::Failed),
            (S::InProgress, E::Cancel, S::Cancelled),
            (S::InProgress, E::RequestStop, S::Stopping),
            (S::InProgress, E::Interrupt, S::Interrupted),
            (S::InProgress, E::Supersede, S::Superseded),
            (S::WaitingForApproval, E::Approved, S::InProgress),
            (S::WaitingForApproval, E::Fail, S::Failed),
            (S::WaitingForApproval, E::Cancel, S::Cancelled),
            (S::WaitingForApproval, E::Supersede, S::Superseded),
            (S::WaitingForApproval, E::RequestStop, S::Stopped),
            (S::Stopping, E::Stopped, S::Stopped),
            (S::Stopping, E::Fail, S::Failed),
            (S::Stopping, E::Cancel, S::Cancelled),
            (S::Stopping, E::Interrupt, S::Interrupted),
        ]
    };

    #[test]
    fn run_transitions_are_exactly_the_table() {
        for &from in RunStatus::ALL {
            for &event in RunEvent::ALL {
                let expected = RUN_TABLE
                    .iter()
                    .find(|(f, e, _)| *f == from && *e == event)
                    .map(|t| t.2);
                match (from.apply(event), expected) {
                    (Ok(got), Some(want)) => assert_eq!(got, want, "{from} --{event}-->"),
                    (Err(_), None) => {}
                    (got, want) => panic!("{from} --{event}--> gave {got:?}, table says {want:?}"),
                }
            }
        }
    }

    #[test]
    fn terminal_run_statuses_accept_nothing() {
        for &from in RunStatus::ALL.iter().filter(|s| s.is_terminal()) {
            for &event in RunEvent::ALL {
                assert!(from.apply(event).is_err(), "{from} accepted {event}");
            }
        }
        // And every non-terminal status has a way out that does not need the server to die.
        for &from in RunStatus::ALL.iter().filter(|s| !s.is_terminal()) {
            assert!(
                from.apply(RunEvent::Cancel).is_ok(),
                "{from} cannot be cancelled"
            );
        }
    }

    #[test]
    fn terminal_stage_and_action_statuses_accept_nothing() {
        for &from in StageStatus::ALL.iter().filter(|s| s.is_terminal()) {
            for &event in StageEvent::ALL {
                assert!(from.apply(event).is_err(), "stage {from} accepted {event}");
            }
        }
        for &from in ActionStatus::ALL.iter().filter(|s| s.is_terminal()) {
            for &event in ActionEvent::ALL {
                assert!(from.apply(event).is_err(), "action {from} accepted {event}");
            }
        }
    }

    #[test]
    fn only_approval_waits() {
        for &from in StageStatus::ALL {
            let ok = from.apply(StageEvent::AwaitApproval).is_ok();
            assert_eq!(ok, from == StageStatus::InProgress, "{from}");
        }
    }

    #[test]
    fn names_round_trip() {
        for &s in RunStatus::ALL {
            assert_eq!(s.as_str().parse::<RunStatus>(), Ok(s));
        }
        for &s in StageStatus::ALL {
            assert_eq!(s.as_str().parse::<StageStatus>(), Ok(s));
        }
        for &s in ActionStatus::ALL {
            assert_eq!(s.as_str().parse::<ActionStatus>(), Ok(s));
        }
        for &s in StageKind::ALL {
            assert_eq!(s.as_str().parse::<StageKind>(), Ok(s));
        }
        assert_eq!(
            "Done".parse::<RunStatus>().unwrap_err().to_string(),
            "unknown RunStatus `Done` (expected one of: Queued, InProgress, WaitingForApproval, \
             Succeeded, Failed, Stopping, Stopped, Cancelled, Superseded, Interrupted)"
        );
    }

    fn run_event() -> impl Strategy<Value = RunEvent> {
        proptest::sample::select(RunEvent::ALL)
    }

    proptest! {
        /// Any sequence of events, with refused ones dropped, keeps the run in a reachable
        /// status: once terminal it never changes, and Succeeded is only reached through
        /// InProgress (never straight from Queued or an approval wait).
        #[test]
        fn random_event_sequences_respect_the_machine(events in proptest::collection::vec(run_event(), 0..40)) {
            let mut status = RunStatus::Queued;
            for event in events {
                let before = status;
                match status.apply(event) {
                    Ok(next) => {
                        prop_assert!(!before.is_terminal());
                        if next == RunStatus::Succeeded {
                            prop_assert_eq!(before, RunStatus::InProgress);
                        }
                        if next == RunStatus::Interrupted {
                            prop_assert!(matches!(before, RunStatus::InProgress | RunStatus::Stopping));
                        }
                        status = next;
                    }
                    Err(e) => {
                        prop_assert_eq!(e.from, before.as_str());
                    }
                }
            }
        }
    }
}
