//! The workspace's layering as ARCHITECTURE.md states it: every ferry crate a crate depends
//! on (normal dependencies; tests and benches may reach lower) is in that crate's "may
//! import" column of the code map, and every crate of the workspace has a row there.

use std::collections::BTreeMap;
use std::path::Path;

/// `crate -> the words of its "may import" cell`, from the code map table.
fn may_import(architecture: &str) -> BTreeMap<String, Vec<String>> {
    let mut rows = BTreeMap::new();
    let table = architecture
        .split("| crate | owns | may import |")
        .nth(1)
        .expect("ARCHITECTURE.md has the code map table");
    for line in table.lines().skip(2) {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let name = cells[1].trim_matches('`').to_owned();
        // The list is what comes before a ` — ` remark; each comma-separated item is
        // named by its first word (`policy (offline validate)` is `policy`).
        let cell = cells[cells.len() - 2];
        let list = cell.split(" — ").next().unwrap_or(cell);
        let words = list
            .split(',')
            .filter_map(|item| {
                item.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                    .find(|w| !w.is_empty())
            })
            .map(|w| w.trim_start_matches("ferry-").to_owned())
            .collect();
        rows.insert(name, words);
    }
    rows
}

#[test]
fn every_ferry_dependency_is_one_architecture_md_allows() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let architecture = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let allowed = may_import(&architecture);
    let mut problems = Vec::new();
    let mut crates = 0;
    for entry in std::fs::read_dir(root.join("crates")).unwrap() {
        let manifest = entry.unwrap().path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let manifest: toml::Table = toml::from_str(&text).unwrap();
        let name = manifest["package"]["name"].as_str().unwrap().to_owned();
        crates += 1;
        let Some(words) = allowed.get(&name) else {
            problems.push(format!("{name} has no row in ARCHITECTURE.md's code map"));
            continue;
        };
        let dependencies = manifest
            .get("dependencies")
            .and_then(|d| d.as_table())
            .cloned()
            .unwrap_or_default();
        for dependency in dependencies.keys().filter(|d| d.starts_with("ferry-")) {
            let short = dependency.trim_start_matches("ferry-");
            if !words.iter().any(|w| w == short) {
                problems.push(format!(
                    "{name} depends on {dependency}, which its \"may import\" column ({}) does not list",
                    words.join(" ")
                ));
            }
        }
    }
    assert!(crates >= 12, "found only {crates} crates");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_table_parser_reads_the_cells_it_checks() {
    let rows = may_import(
        "x\n| crate | owns | may import |\n|---|---|---|\n| `ferry-a` | things, with | core, `ferry-b` (pure), **c** — never d, e |\n\nafter",
    );
    assert_eq!(rows["ferry-a"], ["core", "b", "c"]);
    assert_eq!(rows.len(), 1);
}
