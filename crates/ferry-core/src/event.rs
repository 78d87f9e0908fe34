//! The event vocabulary (PRODUCT.md §2): which transition of a run, stage or action is
//! reported as which event. Spelled as in the hosted-pipeline vocabulary, hence `CANCELED`
//! here and `Cancelled` as a status. The names are a public contract (notifications and
//! webhooks match on them), so they only ever grow.

use std::fmt;
use std::str::FromStr;

use crate::status::UnknownName;
use crate::{ActionEvent, RunEvent, RunStatus, StageEvent, StageKind, StageStatus};

closed_set!(
    /// What happened.
    EventType {
        PipelineStarted => "PIPELINE_EXECUTION_STARTED",
        PipelineSucceeded => "PIPELINE_EXECUTION_SUCCEEDED",
        PipelineFailed => "PIPELINE_EXECUTION_FAILED",
        PipelineCanceled => "PIPELINE_EXECUTION_CANCELED",
        PipelineSuperseded => "PIPELINE_EXECUTION_SUPERSEDED",
        PipelineResumed => "PIPELINE_EXECUTION_RESUMED",
        StageStarted => "STAGE_EXECUTION_STARTED",
        StageSucceeded => "STAGE_EXECUTION_SUCCEEDED",
        StageFailed => "STAGE_EXECUTION_FAILED",
        StageCanceled => "STAGE_EXECUTION_CANCELED",
        StageResumed => "STAGE_EXECUTION_RESUMED",
        ActionStarted => "ACTION_EXECUTION_STARTED",
        ActionSucceeded => "ACTION_EXECUTION_SUCCEEDED",
        ActionFailed => "ACTION_EXECUTION_FAILED",
        ActionCanceled => "ACTION_EXECUTION_CANCELED",
        ApprovalNeeded => "MANUAL_APPROVAL_NEEDED",
        ApprovalSucceeded => "MANUAL_APPROVAL_SUCCEEDED",
        ApprovalFailed => "MANUAL_APPROVAL_FAILED",
        ApprovalOverridden => "MANUAL_APPROVAL_OVERRIDDEN",
        DriftDetected => "DRIFT_DETECTED",
        PolicyViolation => "POLICY_VIOLATION",
        StateForceUnlocked => "STATE_FORCE_UNLOCKED",
        StateRolledBack => "STATE_ROLLED_BACK",
    }
);

impl EventType {
    /// The event a run transition reports, if any. `Interrupted` (the server died under
    /// the run) is a failure of the pipeline; an approval wait is reported by the approval
    /// stage, not the pipeline.
    pub fn for_run(event: RunEvent, next: RunStatus) -> Option<EventType> {
        Some(match (event, next) {
            (RunEvent::Start, _) => EventType::PipelineStarted,
            (_, RunStatus::Succeeded) => EventType::PipelineSucceeded,
            (_, RunStatus::Failed | RunStatus::Interrupted) => EventType::PipelineFailed,
            (_, RunStatus::Cancelled | RunStatus::Stopped) => EventType::PipelineCanceled,
            (_, RunStatus::Superseded) => EventType::PipelineSuperseded,
            _ => return None,
        })
    }

    /// The event a stage transition reports, if any. Every stage reports its start; an
    /// approval stage's wait, success and failure are the `MANUAL_APPROVAL_*` events;
    /// skipping a stage reports nothing.
    pub fn for_stage(kind: StageKind, event: StageEvent, next: StageStatus) -> Option<EventType> {
        if kind == StageKind::Approval && event != StageEvent::Start {
            return Some(match next {
                StageStatus::WaitingForApproval => EventType::ApprovalNeeded,
                StageStatus::Succeeded => EventType::ApprovalSucceeded,
                StageStatus::Failed => EventType::ApprovalFailed,
                StageStatus::Cancelled | StageStatus::Interrupted => EventType::StageCanceled,
                _ => return None,
            });
        }
        Some(match (event, next) {
            (StageEvent::Start, _) => EventType::StageStarted,
            (_, StageStatus::Succeeded) => EventType::StageSucceeded,
            (_, StageStatus::Failed) => EventType::StageFailed,
            (_, StageStatus::Cancelled | StageStatus::Interrupted) => EventType::StageCanceled,
            _ => return None,
        })
    }

    /// The event an action transition reports, if any.
    pub fn for_action(event: ActionEvent) -> Option<EventType> {
        Some(match event {
            ActionEvent::Start => EventType::ActionStarted,
            ActionEvent::Succeed => EventType::ActionSucceeded,
            ActionEvent::Fail => EventType::ActionFailed,
            ActionEvent::Cancel | ActionEvent::Interrupt => EventType::ActionCanceled,
            ActionEvent::Skip => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for &t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>(), Ok(t));
            assert!(seen.insert(t.as_str()));
        }
    }

    #[test]
    fn every_terminal_run_status_is_reported() {
        for &event in RunEvent::ALL {
            for &from in RunStatus::ALL {
                if let Ok(next) = from.apply(event) {
                    if next.is_terminal() {
                        assert!(
                            EventType::for_run(event, next).is_some(),
                            "{from} --{event}--> {next} reports nothing"
                        );
                    }
                }
            }
        }
        assert_eq!(
            EventType::for_run(RunEvent::AwaitApproval, RunStatus::WaitingForApproval),
            None
        );
    }

    #[test]
    fn approval_stages_speak_the_approval_vocabulary() {
        assert_eq!(
            EventType::for_stage(
                StageKind::Approval,
                StageEvent::AwaitApproval,
                StageStatus::WaitingForApproval
            ),
            Some(EventType::ApprovalNeeded)
        );
        assert_eq!(
            EventType::for_stage(StageKind::Approval, StageEvent::Fail, StageStatus::Failed),
            Some(EventType::ApprovalFailed)
        );
        assert_eq!(
            EventType::for_stage(StageKind::Plan, StageEvent::Skip, StageStatus::Skipped),
            None
        );
        assert_eq!(
            EventType::for_stage(StageKind::Plan, StageEvent::Fail, StageStatus::Failed),
            Some(EventType::StageFailed)
        );
    }
}
