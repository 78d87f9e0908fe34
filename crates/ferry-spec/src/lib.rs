//! `ferry-spec` reads a pipeline's `ferry.yaml` and lowers it to a checked [`PipelineSpec`].
//!
//! The YAML is a public format, so this crate stands alone: it knows nothing of the engine,
//! the store or HTTP. Broken input is data, not an `Err`: [`lower`] always returns a
//! [`Lowered`] holding every problem it found, each pointing at a file, line and column, and a
//! spec only when none of them is an error. `ferry validate`, the API and the UI all show these
//! same diagnostics.
//!
//! Reading happens in two steps: `yaml` turns the text into a tree of nodes that remember their
//! positions (and reports YAML-level problems), then `lower` walks that tree by hand, applying
//! defaults and checking every value. The user guide is `docs/ferry-yaml.md`; editors get
//! [`json_schema`].

mod diagnostic;
mod lower;
pub mod model;
mod version;
mod yaml;

#[cfg(test)]
mod tests;

pub use crate::diagnostic::{Diagnostic, Lowered, Severity};
pub use crate::model::*;

use crate::diagnostic::{Pos, Sink};

/// The conventional name of a pipeline definition in a repository.
pub const FILE_NAME: &str = "ferry.yaml";

/// Parses and checks `source`. `file` is the name diagnostics show (for example the path of the
/// file in the repository).
///
/// Never panics: every input, however broken, yields diagnostics. `spec` is `Some` if and only
/// if there is no error; warnings alone do not stop lowering.
///
/// ```
/// let lowered = ferry_spec::lower("ferry.yaml", "version: 1\nname: network\nterraform: infra\n");
/// let spec = lowered.spec.unwrap();
/// assert_eq!(spec.environments[0].name, "default");
///
/// let lowered = ferry_spec::lower("ferry.yaml", "version: 1\nname: n\nterraform: .\nenviroments: []\n");
/// assert!(lowered.spec.is_none());
/// assert_eq!(
///     lowered.diagnostics[0].to_string(),
///     "ferry.yaml:4:1: error: unknown key `enviroments` at the top level (did you mean `environments`?)"
/// );
/// ```
pub fn lower(file: &str, source: &str) -> Lowered {
    let mut sink = Sink::new(file);
    let spec = match yaml::parse(&mut sink, source) {
        Some(root) => lower::lower_root(&mut sink, &root),
        None => {
            if !sink.has_errors() {
                sink.error(Pos::START, "file is empty")
                    .hint("a minimal ferry.yaml has `version: 1`, `name` and `terraform`");
            }
            None
        }
    };
    let spec = if sink.has_errors() { None } else { spec };
    let diagnostics = sink.finish();
    // Invariant: `spec` is `None` iff there is an error; lowering must not fail silently.
    debug_assert_eq!(
        spec.is_none(),
        diagnostics.iter().any(Diagnostic::is_error),
        "{diagnostics:?}"
    );
    Lowered { spec, diagnostics }
}

/// A JSON Schema (draft 2020-12) of `ferry.yaml` for editors such as VS Code's YAML extension.
///
/// It describes the shape of the file; some checks (unique environment names, `..` in paths,
/// version constraint syntax) happen only in [`lower`].
pub fn json_schema() -> serde_json::Value {
    serde_json::from_str(SCHEMA).expect("schema/ferry.schema.json is valid JSON (checked by tests)")
}

const SCHEMA: &str = include_str!("../../../schema/ferry.schema.json");
