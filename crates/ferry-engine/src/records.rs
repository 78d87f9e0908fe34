//! The typed values the engine keeps as JSON text in the store — a plan's summary, a policy
//! report — written with a version tag, `{"v": 1, "value": …}`, and read back strictly: a row
//! that does not parse is an error naming it, never a silent default. Rows written before the
//! tag existed (the bare value) are read as version 1.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Error, PlanSummary, Result};

/// The version of the stored shapes.
const VERSION: u64 = 1;

/// The stored form of `value`.
pub(crate) fn encode<T: Serialize>(value: &T) -> String {
    serde_json::json!({ "v": VERSION, "value": value }).to_string()
}

/// Reads a stored value back; `table` and `row` name it in the error.
pub(crate) fn decode<T: DeserializeOwned>(table: &'static str, row: &str, text: &str) -> Result<T> {
    let corrupt = |message: String| {
        Error::Store(ferry_store::Error::Corrupt {
            table,
            message: format!("{row}: {message}"),
        })
    };
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| corrupt(format!("not JSON: {e}")))?;
    let value = match json.get("v") {
        Some(v) if v.as_u64() == Some(VERSION) => json
            .get("value")
            .cloned()
            .ok_or_else(|| corrupt("no `value`".to_owned()))?,
        Some(v) => return Err(corrupt(format!("unknown version {v}"))),
        None => json,
    };
    serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))
}

/// The summary of a recorded plan.
pub fn plan_summary(plan: &ferry_store::Plan) -> Result<PlanSummary> {
    decode(
        "plans",
        &format!("run {} environment {}", plan.run_id, plan.environment),
        &plan.summary,
    )
}

/// The report of a policy stage.
pub fn policy_report(row: &ferry_store::PolicyReportRow) -> Result<ferry_policy::Report> {
    decode(
        "policy_reports",
        &format!("run {} environment {}", row.run_id, row.environment),
        &row.report,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_with_their_tag_and_bad_rows_are_named() {
        let summary = PlanSummary {
            add: 2,
            change: 1,
            destroy: 0,
            ..PlanSummary::default()
        };
        let text = encode(&summary);
        assert!(text.starts_with(r#"{"v":1,"value":{"#), "{text}");
        let back: PlanSummary = decode("plans", "run 1 environment dev", &text).unwrap();
        assert_eq!((back.add, back.change, back.destroy), (2, 1, 0));
        // A row from before the tag.
        let legacy = serde_json::to_string(&summary).unwrap();
        let back: PlanSummary = decode("plans", "run 1 environment dev", &legacy).unwrap();
        assert_eq!(back.add, 2);
        for (bad, says) in [
            ("", "not JSON"),
            (r#"{"v":2,"value":{}}"#, "unknown version 2"),
            (r#"{"v":1}"#, "no `value`"),
            (r#"{"add":"many"}"#, "invalid type"),
        ] {
            let error = decode::<PlanSummary>("plans", "run 7 environment prod", bad)
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("plans")
                    && error.contains("run 7 environment prod")
                    && error.contains(says),
                "{bad}: {error}"
            );
        }
    }
}
