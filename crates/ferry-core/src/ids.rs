//! Newtype ids, so a run id can never be passed where a stage id is expected.

use std::fmt;
use std::str::FromStr;

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;
            fn from_str(s: &str) -> Result<Self, ParseIdError> {
                match s.parse::<i64>() {
                    Ok(n) if n > 0 => Ok($name(n)),
                    _ => Err(ParseIdError { kind: stringify!($name), text: s.to_owned() }),
                }
            }
        }
    };
}

id!(
    /// A run, unique across the server (`ferry logs 42`).
    RunId
);
id!(
    /// A run's number within its project (`#7`), for humans.
    RunNumber
);
id!(
    /// One stage of one environment of a run.
    StageId
);
id!(
    /// One action (a process) of a stage.
    ActionId
);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseIdError {
    kind: &'static str,
    text: String,
}

impl fmt::Display for ParseIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not a valid {} (expected a positive integer)",
            self.text, self.kind
        )
    }
}

impl std::error::Error for ParseIdError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_ids() {
        assert_eq!("42".parse::<RunId>(), Ok(RunId(42)));
        assert!("0".parse::<RunId>().is_err());
        assert!("-1".parse::<RunId>().is_err());
        assert_eq!(
            "abc".parse::<RunId>().unwrap_err().to_string(),
            "`abc` is not a valid RunId (expected a positive integer)"
        );
    }
}
