//! Terraform version constraints (`>= 1.6, < 2.0`, `~> 1.6`) translated to `semver`.
//!
//! Terraform (hashicorp/go-version) pads missing parts with zeros, so `= 1.6` means exactly
//! `1.6.0`, and its pessimistic operator `~>` lets only the last written part grow: `~> 1.6`
//! is `>= 1.6.0, < 2.0.0` and `~> 1.6.3` is `>= 1.6.3, < 1.7.0`. `semver` reads partial versions
//! differently, so every comparator is built with all three parts. `semver` has no `!=`; those
//! versions are kept beside the requirement as exclusions. Prereleases follow semver's rules: a
//! prerelease matches only a comparator on the same `major.minor.patch` that names a prerelease.

use semver::{Comparator, Op, Prerelease, Version, VersionReq};

use crate::model::VersionConstraint;

pub(crate) fn parse_constraint(text: &str) -> Result<VersionConstraint, String> {
    if text.trim().is_empty() {
        return Err("empty version constraint".to_owned());
    }
    let mut comparators = Vec::new();
    let mut excluded = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        if part.is_empty() {
            return Err("empty constraint between commas".to_owned());
        }
        let (op, rest) = split_operator(part);
        let rest = rest.trim_start();
        if rest.starts_with(['<', '>', '=', '~', '!']) {
            return Err(format!(
                "unknown operator in `{part}`; expected one of `=`, `!=`, `>`, `>=`, `<`, `<=`, `~>`"
            ));
        }
        if rest.is_empty() {
            return Err(format!("`{part}` is missing a version"));
        }
        let (parts, pre) = parse_version(rest)?;
        let [major, minor, patch] = [
            parts[0],
            parts.get(1).copied().unwrap_or(0),
            parts.get(2).copied().unwrap_or(0),
        ];
        let full = |op: Op, pre: Prerelease| Comparator {
            op,
            major,
            minor: Some(minor),
            patch: Some(patch),
            pre,
        };
        match op {
            "" | "=" => comparators.push(full(Op::Exact, pre)),
            "!=" => excluded.push(Version {
                major,
                minor,
                patch,
                pre,
                build: semver::BuildMetadata::EMPTY,
            }),
            ">" => comparators.push(full(Op::Greater, pre)),
            ">=" => comparators.push(full(Op::GreaterEq, pre)),
            "<" => comparators.push(full(Op::Less, pre)),
            "<=" => comparators.push(full(Op::LessEq, pre)),
            "~>" => {
                comparators.push(full(Op::GreaterEq, pre));
                // Only the last written part may grow; with a single part go-version sets no
                // upper bound at all.
                let too_large = || format!("`{part}` is too large");
                let upper = match parts.len() {
                    1 => None,
                    2 => Some((major.checked_add(1).ok_or_else(too_large)?, 0)),
                    _ => Some((major, minor.checked_add(1).ok_or_else(too_large)?)),
                };
                if let Some((major, minor)) = upper {
                    comparators.push(Comparator {
                        op: Op::Less,
                        major,
                        minor: Some(minor),
                        patch: Some(0),
                        pre: Prerelease::EMPTY,
                    });
                }
            }
            _ => unreachable!("split_operator returns only known operators"),
        }
    }
    Ok(VersionConstraint::from_parts(
        text.to_owned(),
        VersionReq { comparators },
        excluded,
    ))
}

fn split_operator(part: &str) -> (&str, &str) {
    for op in ["!=", ">=", "<=", "~>", "=", ">", "<"] {
        if let Some(rest) = part.strip_prefix(op) {
            return (op, rest);
        }
    }
    ("", part)
}

/// `1`, `1.6`, `1.6.3`, optionally with a `v` prefix and a `-prerelease`.
fn parse_version(text: &str) -> Result<(Vec<u64>, Prerelease), String> {
    let text = text.strip_prefix('v').unwrap_or(text);
    let (core, pre) = match text.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (text, None),
    };
    if core.contains('+') || pre.is_some_and(|p| p.contains('+')) {
        return Err("build metadata (`+...`) is not allowed in a constraint".to_owned());
    }
    let parts = core
        .split('.')
        .map(|p| {
            if p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()) {
                Err(format!("`{text}` is not a version like `1.6` or `1.6.3`"))
            } else {
                p.parse::<u64>()
                    .map_err(|_| format!("version part `{p}` is too large"))
            }
        })
        .collect::<Result<Vec<u64>, String>>()?;
    if parts.len() > 3 {
        return Err(format!("`{text}` has more than three parts"));
    }
    let pre = match pre {
        Some(p) => Prerelease::new(p).map_err(|_| format!("invalid prerelease `{p}`"))?,
        None => Prerelease::EMPTY,
    };
    Ok((parts, pre))
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};

    use super::*;

    fn check(text: &str, versions: &[&str], expect: Expect) {
        let out = match parse_constraint(text) {
            Ok(c) => {
                let mut out = format!("{c:?}\n");
                for v in versions {
                    let matches = c.matches(&Version::parse(v).unwrap());
                    out.push_str(&format!("{v}: {matches}\n"));
                }
                out
            }
            Err(e) => format!("error: {e}\n"),
        };
        expect.assert_eq(&out);
    }

    #[test]
    fn operators() {
        check(
            ">= 1.6",
            &["1.5.7", "1.6.0", "2.0.0"],
            expect![[r#"
            ">= 1.6" => ">=1.6.0"
            1.5.7: false
            1.6.0: true
            2.0.0: true
        "#]],
        );
        check(
            "~> 1.6",
            &["1.5.9", "1.6.0", "1.9.9", "2.0.0"],
            expect![[r#"
            "~> 1.6" => ">=1.6.0, <2.0.0"
            1.5.9: false
            1.6.0: true
            1.9.9: true
            2.0.0: false
        "#]],
        );
        check(
            "~> 1.6.3",
            &["1.6.2", "1.6.3", "1.6.9", "1.7.0"],
            expect![[r#"
            "~> 1.6.3" => ">=1.6.3, <1.7.0"
            1.6.2: false
            1.6.3: true
            1.6.9: true
            1.7.0: false
        "#]],
        );
        check(
            "~> 1",
            &["0.9.0", "1.0.0", "7.0.0"],
            expect![[r#"
            "~> 1" => ">=1.0.0"
            0.9.0: false
            1.0.0: true
            7.0.0: true
        "#]],
        );
        check(
            "1.6.0",
            &["1.6.0", "1.6.1"],
            expect![[r#"
            "1.6.0" => "=1.6.0"
            1.6.0: true
            1.6.1: false
        "#]],
        );
        check(
            "= 1.6",
            &["1.6.0", "1.6.1"],
            expect![[r#"
            "= 1.6" => "=1.6.0"
            1.6.0: true
            1.6.1: false
        "#]],
        );
        check(
            ">= 1.6, < 2.0, != 1.7.2",
            &["1.7.1", "1.7.2", "1.9.0", "2.0.0"],
            expect![[r#"
            ">= 1.6, < 2.0, != 1.7.2" => ">=1.6.0, <2.0.0, !=1.7.2"
            1.7.1: true
            1.7.2: false
            1.9.0: true
            2.0.0: false
        "#]],
        );
        check(
            ">1.6,<=1.8",
            &["1.6.0", "1.6.1", "1.8.0", "1.8.1"],
            expect![[r#"
            ">1.6,<=1.8" => ">1.6.0, <=1.8.0"
            1.6.0: false
            1.6.1: true
            1.8.0: true
            1.8.1: false
        "#]],
        );
        check(
            "v1.2.3",
            &["1.2.3"],
            expect![[r#"
            "v1.2.3" => "=1.2.3"
            1.2.3: true
        "#]],
        );
    }

    #[test]
    fn prereleases() {
        check(
            ">= 1.15.0-beta1",
            &["1.15.0-beta1", "1.15.0-beta2", "1.15.0", "1.16.0-alpha"],
            expect![[r#"
            ">= 1.15.0-beta1" => ">=1.15.0-beta1"
            1.15.0-beta1: true
            1.15.0-beta2: true
            1.15.0: true
            1.16.0-alpha: false
        "#]],
        );
        check(
            ">= 1.6",
            &["1.15.0-beta1"],
            expect![[r#"
            ">= 1.6" => ">=1.6.0"
            1.15.0-beta1: false
        "#]],
        );
    }

    #[test]
    fn errors() {
        check(
            "",
            &[],
            expect![[r#"
            error: empty version constraint
        "#]],
        );
        check(
            ">= 1.6,",
            &[],
            expect![[r#"
            error: empty constraint between commas
        "#]],
        );
        check(
            ">=",
            &[],
            expect![[r#"
            error: `>=` is missing a version
        "#]],
        );
        check(
            "1.2.3.4",
            &[],
            expect![[r#"
            error: `1.2.3.4` has more than three parts
        "#]],
        );
        check(
            "latest",
            &[],
            expect![[r#"
            error: `latest` is not a version like `1.6` or `1.6.3`
        "#]],
        );
        check(
            "=> 1.6",
            &[],
            expect![[r#"
            error: unknown operator in `=> 1.6`; expected one of `=`, `!=`, `>`, `>=`, `<`, `<=`, `~>`
        "#]],
        );
        check(
            "1.2.3+build",
            &[],
            expect![[r#"
            error: build metadata (`+...`) is not allowed in a constraint
        "#]],
        );
        check(
            "99999999999999999999999",
            &[],
            expect![[r#"
            error: version part `99999999999999999999999` is too large
        "#]],
        );
        check(
            "~> 18446744073709551615.1",
            &["1.0.0"],
            expect![[r#"
            error: `~> 18446744073709551615.1` is too large
        "#]],
        );
    }
}
