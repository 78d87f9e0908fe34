//! A YAML reader that remembers where every node came from.
//!
//! `saphyr-parser` gives a stream of events with spans; this module folds them into a small tree
//! whose nodes carry 1-based positions, so lowering can point at the exact offending node. It
//! also owns the problems that belong to YAML itself rather than to Ferry's format: syntax
//! errors (with a clearer message for tab indentation), duplicate keys, non-string keys, aliases
//! (expanded, within a budget) and files holding more than one document.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span};

use crate::diagnostic::{Pos, Sink};

/// Deeper nesting than this is rejected rather than risking the stack.
const MAX_DEPTH: usize = 64;
/// Upper bound on nodes, counting alias expansions, against "billion laughs" inputs.
const MAX_NODES: usize = 100_000;

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) pos: Pos,
    pub(crate) kind: NodeKind,
}

#[derive(Debug, Clone)]
pub(crate) enum NodeKind {
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// A mapping entry. Keys are always scalars; anything else is reported while reading.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) key: String,
    pub(crate) key_pos: Pos,
    pub(crate) value: Node,
}

#[derive(Debug, Clone)]
pub(crate) struct Scalar {
    pub(crate) text: String,
    /// Plain (unquoted, not a block scalar) scalars are typed by the YAML 1.2 core schema;
    /// every other style is a string.
    pub(crate) plain: bool,
}

/// The YAML 1.2 core-schema type of a scalar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScalarType {
    Null,
    Bool,
    Int,
    Float,
    Str,
}

impl Scalar {
    pub(crate) fn ty(&self) -> ScalarType {
        if !self.plain {
            return ScalarType::Str;
        }
        let t = self.text.as_str();
        match t {
            "" | "~" | "null" | "Null" | "NULL" => ScalarType::Null,
            "true" | "True" | "TRUE" | "false" | "False" | "FALSE" => ScalarType::Bool,
            _ if is_int(t) => ScalarType::Int,
            _ if is_float(t) => ScalarType::Float,
            _ => ScalarType::Str,
        }
    }

    pub(crate) fn as_bool(&self) -> Option<bool> {
        match self.ty() {
            ScalarType::Bool => Some(self.text.eq_ignore_ascii_case("true")),
            _ => None,
        }
    }

    /// The value of an integer scalar; `None` if it is not one or does not fit.
    pub(crate) fn as_int(&self) -> Option<i64> {
        if self.ty() != ScalarType::Int {
            return None;
        }
        let t = self.text.as_str();
        if let Some(oct) = t.strip_prefix("0o") {
            i64::from_str_radix(oct, 8).ok()
        } else if let Some(hex) = t.strip_prefix("0x") {
            i64::from_str_radix(hex, 16).ok()
        } else {
            t.parse().ok()
        }
    }
}

fn is_int(t: &str) -> bool {
    let digits = |s: &str, radix: u32| !s.is_empty() && s.chars().all(|c| c.is_digit(radix));
    if let Some(oct) = t.strip_prefix("0o") {
        return digits(oct, 8);
    }
    if let Some(hex) = t.strip_prefix("0x") {
        return digits(hex, 16);
    }
    digits(t.strip_prefix(['-', '+']).unwrap_or(t), 10)
}

fn is_float(t: &str) -> bool {
    let t = t.strip_prefix(['-', '+']).unwrap_or(t);
    if matches!(t, ".inf" | ".Inf" | ".INF" | ".nan" | ".NaN" | ".NAN") {
        return true;
    }
    let (mantissa, exponent) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], Some(&t[i + 1..])),
        None => (t, None),
    };
    let all_digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => {
            (!int.is_empty() || !frac.is_empty()) && all_digits(int) && all_digits(frac)
        }
        None => !mantissa.is_empty() && all_digits(mantissa),
    };
    let exponent_ok = match exponent {
        Some(e) => {
            let e = e.strip_prefix(['-', '+']).unwrap_or(e);
            !e.is_empty() && all_digits(e)
        }
        None => true,
    };
    mantissa_ok && exponent_ok && (mantissa.contains('.') || exponent.is_some())
}

impl Node {
    pub(crate) fn scalar(&self) -> Option<&Scalar> {
        match &self.kind {
            NodeKind::Scalar(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn is_null(&self) -> bool {
        self.scalar().is_some_and(|s| s.ty() == ScalarType::Null)
    }

    /// "a mapping", "a list", "a string", ... for "expected X, found Y" messages.
    pub(crate) fn describe(&self) -> &'static str {
        match &self.kind {
            NodeKind::Map(_) => "a mapping",
            NodeKind::Seq(_) => "a list",
            NodeKind::Scalar(s) => match s.ty() {
                ScalarType::Null => "an empty value",
                ScalarType::Bool => "a boolean",
                ScalarType::Int => "an integer",
                ScalarType::Float => "a number",
                ScalarType::Str => "a string",
            },
        }
    }

    /// The node as JSON, the way an editor's YAML plugin sees it (for schema tests).
    #[cfg(test)]
    pub(crate) fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.kind {
            NodeKind::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.to_json()))
                    .collect(),
            ),
            NodeKind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeKind::Scalar(s) => match s.ty() {
                ScalarType::Null => Value::Null,
                ScalarType::Bool => Value::Bool(s.as_bool().unwrap_or(false)),
                ScalarType::Int => s.as_int().map_or(Value::Null, Value::from),
                ScalarType::Float => s.text.parse::<f64>().map_or(Value::Null, Value::from),
                ScalarType::Str => Value::String(s.text.clone()),
            },
        }
    }
}

/// Reads `source` into a tree. `None` means there is nothing to lower: the file is empty
/// (reported by the caller) or broken (reported here).
pub(crate) fn parse(sink: &mut Sink, source: &str) -> Option<Node> {
    let mut reader = Reader {
        parser: Parser::new_from_str(source),
        anchors: HashMap::new(),
        nodes: 0,
    };
    match reader.document(sink) {
        Ok(node) => node,
        Err(Stop::Scan(err)) => {
            syntax_error(sink, source, &err);
            None
        }
        Err(Stop::Reported) => None,
    }
}

enum Stop {
    Scan(ScanError),
    /// A diagnostic was already emitted and reading cannot go on.
    Reported,
}

impl From<ScanError> for Stop {
    fn from(err: ScanError) -> Stop {
        Stop::Scan(err)
    }
}

struct Reader<'a> {
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    /// Anchored nodes with their sizes, for alias expansion.
    anchors: HashMap<usize, (Node, usize)>,
    nodes: usize,
}

fn pos(span: &Span) -> Pos {
    Pos {
        line: span.start.line(),
        column: span.start.col() + 1,
    }
}

impl<'a> Reader<'a> {
    fn next(&mut self) -> Result<(Event<'a>, Span), Stop> {
        match self.parser.next_event() {
            Some(Ok(ev)) => Ok(ev),
            Some(Err(err)) => Err(Stop::Scan(err)),
            // The parser always ends with `StreamEnd`; running past it would be our bug.
            None => Ok((Event::StreamEnd, Span::default())),
        }
    }

    fn document(&mut self, sink: &mut Sink) -> Result<Option<Node>, Stop> {
        let mut root = None;
        let mut seen_document = false;
        loop {
            let (event, span) = self.next()?;
            match event {
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
                Event::StreamEnd => return Ok(root),
                // Keep reading after the first document: a second one is an error, not
                // silently ignored.
                Event::DocumentStart(_) if seen_document => {
                    sink.error(
                        pos(&span),
                        "expected a single yaml document, found a second one",
                    )
                    .hint("remove the `---` line or split the file");
                    return Err(Stop::Reported);
                }
                Event::DocumentStart(_) => {
                    seen_document = true;
                    let (event, span) = self.next()?;
                    let node = self.node(sink, event, span, 0)?;
                    // A document holding only `---` or a lone empty value is as empty as an
                    // empty file.
                    root = Some(node).filter(|n| !n.is_null());
                }
                other => {
                    // Not produced by the parser outside a document.
                    sink.error(pos(&span), format!("unexpected yaml event {other:?}"));
                    return Err(Stop::Reported);
                }
            }
        }
    }

    fn count(&mut self, sink: &mut Sink, at: Pos, n: usize) -> Result<(), Stop> {
        self.nodes += n;
        if self.nodes > MAX_NODES {
            sink.error(
                at,
                format!(
                    "document is too large (more than {MAX_NODES} nodes once aliases are expanded)"
                ),
            );
            return Err(Stop::Reported);
        }
        Ok(())
    }

    fn node(
        &mut self,
        sink: &mut Sink,
        event: Event<'a>,
        span: Span,
        depth: usize,
    ) -> Result<Node, Stop> {
        let at = pos(&span);
        if depth > MAX_DEPTH {
            sink.error(
                at,
                format!("document is nested too deeply (more than {MAX_DEPTH} levels)"),
            );
            return Err(Stop::Reported);
        }
        let start = self.nodes;
        self.count(sink, at, 1)?;
        let (node, anchor) = match event {
            Event::Scalar(text, style, anchor, _tag) => {
                let plain = style == ScalarStyle::Plain;
                (
                    Node {
                        pos: at,
                        kind: NodeKind::Scalar(Scalar {
                            text: text.into_owned(),
                            plain,
                        }),
                    },
                    anchor,
                )
            }
            Event::Alias(id) => {
                let Some((node, size)) = self.anchors.get(&id).cloned() else {
                    sink.error(at, "alias refers to an unknown anchor");
                    return Err(Stop::Reported);
                };
                self.count(sink, at, size)?;
                return Ok(node);
            }
            Event::SequenceStart(anchor, _tag) => {
                let mut items = Vec::new();
                loop {
                    let (event, span) = self.next()?;
                    if matches!(event, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(sink, event, span, depth + 1)?);
                }
                (
                    Node {
                        pos: at,
                        kind: NodeKind::Seq(items),
                    },
                    anchor,
                )
            }
            Event::MappingStart(anchor, _tag) => {
                let mut entries: Vec<Entry> = Vec::new();
                let mut seen: HashMap<String, Pos> = HashMap::new();
                loop {
                    let (event, span) = self.next()?;
                    if matches!(event, Event::MappingEnd) {
                        break;
                    }
                    let key = self.node(sink, event, span, depth + 1)?;
                    let (event, span) = self.next()?;
                    let mut value = self.node(sink, event, span, depth + 1)?;
                    // `key:` with nothing after it: point at the key, not at the void after it.
                    if value.scalar().is_some_and(|s| s.plain && s.text.is_empty()) {
                        value.pos = key.pos;
                    }
                    let NodeKind::Scalar(scalar) = key.kind else {
                        sink.error(
                            key.pos,
                            format!("mapping keys must be strings, found {}", key.describe()),
                        );
                        continue;
                    };
                    if let Some(first) = seen.get(&scalar.text) {
                        sink.error(key.pos, format!("duplicate key `{}`", scalar.text))
                            .hint(format!("first defined at line {}", first.line));
                        continue;
                    }
                    seen.insert(scalar.text.clone(), key.pos);
                    entries.push(Entry {
                        key: scalar.text,
                        key_pos: key.pos,
                        value,
                    });
                }
                (
                    Node {
                        pos: at,
                        kind: NodeKind::Map(entries),
                    },
                    anchor,
                )
            }
            other => {
                sink.error(at, format!("unexpected yaml event {other:?}"));
                return Err(Stop::Reported);
            }
        };
        if anchor != 0 {
            self.anchors
                .insert(anchor, (node.clone(), self.nodes - start));
        }
        Ok(node)
    }
}

/// Reports a YAML syntax error. Tabs in indentation are the most common cause and the parser's
/// own message for them is obscure, so a tab in the indentation of any line up to the error
/// is reported instead.
fn syntax_error(sink: &mut Sink, source: &str, err: &ScanError) {
    let marker = err.marker();
    let err_line = marker.line().max(1);
    for (i, line) in source.lines().enumerate().take(err_line) {
        let indent: String = line
            .chars()
            .take_while(|c| *c == ' ' || *c == '\t')
            .collect();
        if let Some(col) = indent.chars().position(|c| c == '\t') {
            sink.error(
                Pos {
                    line: i + 1,
                    column: col + 1,
                },
                "tab character in indentation",
            )
            .hint("yaml indentation must use spaces");
            return;
        }
    }
    let info = err.info().trim().trim_end_matches('.');
    let d = sink.error(
        Pos {
            line: err_line,
            column: marker.col() + 1,
        },
        format!("invalid yaml: {info}"),
    );
    if source
        .lines()
        .nth(err_line - 1)
        .is_some_and(|l| l.contains('\t'))
    {
        d.hint("this line contains a tab; use spaces");
    } else if info.contains("flow") {
        d.hint("a `{` or `[` opened earlier may be missing its closing bracket");
    }
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};

    use super::*;

    fn check(source: &str, expect: Expect) {
        let mut sink = Sink::new("t.yaml");
        let node = parse(&mut sink, source);
        let mut out = String::new();
        if let Some(node) = node {
            dump(&node, 0, &mut out);
        }
        for d in sink.finish() {
            out.push_str(&format!("{d}\n"));
        }
        expect.assert_eq(&out);
    }

    fn dump(node: &Node, indent: usize, out: &mut String) {
        let pad = " ".repeat(indent);
        let at = format!("{}:{}", node.pos.line, node.pos.column);
        match &node.kind {
            NodeKind::Scalar(s) => out.push_str(&format!("{pad}{at} {:?} {:?}\n", s.ty(), s.text)),
            NodeKind::Seq(items) => {
                out.push_str(&format!("{pad}{at} seq\n"));
                items.iter().for_each(|n| dump(n, indent + 2, out));
            }
            NodeKind::Map(entries) => {
                out.push_str(&format!("{pad}{at} map\n"));
                for e in entries {
                    out.push_str(&format!(
                        "{pad}  {}:{} key {:?}\n",
                        e.key_pos.line, e.key_pos.column, e.key
                    ));
                    dump(&e.value, indent + 4, out);
                }
            }
        }
    }

    #[test]
    fn positions() {
        check(
            "a: 1\nb:\n  - x\n  - {c: 'd', e: 1.5}\nf:\ng: [true, ~, 0x1F, 1e3, 1.2.3]\n",
            expect![[r#"
                1:1 map
                  1:1 key "a"
                    1:4 Int "1"
                  2:1 key "b"
                    3:3 seq
                      3:5 Str "x"
                      4:5 map
                        4:6 key "c"
                          4:9 Str "d"
                        4:14 key "e"
                          4:17 Float "1.5"
                  5:1 key "f"
                    5:1 Null ""
                  6:1 key "g"
                    6:4 seq
                      6:5 Bool "true"
                      6:11 Null "~"
                      6:14 Int "0x1F"
                      6:20 Float "1e3"
                      6:25 Str "1.2.3"
            "#]],
        );
    }

    #[test]
    fn duplicate_and_complex_keys() {
        check(
            "a: 1\na: 2\n? [x]\n: 3\n",
            expect![[r#"
            1:1 map
              1:1 key "a"
                1:4 Int "1"
            t.yaml:2:1: error: duplicate key `a` (first defined at line 1)
            t.yaml:3:3: error: mapping keys must be strings, found a list
        "#]],
        );
    }

    #[test]
    fn aliases_expand_within_budget() {
        check(
            "a: &x {b: 1}\nc: *x\n",
            expect![[r#"
            1:1 map
              1:1 key "a"
                1:4 map
                  1:8 key "b"
                    1:11 Int "1"
              2:1 key "c"
                1:4 map
                  1:8 key "b"
                    1:11 Int "1"
        "#]],
        );
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let prev = format!("*a{}", i - 1);
            bomb.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
        }
        let mut sink = Sink::new("t.yaml");
        assert!(parse(&mut sink, &bomb).is_none());
        assert_eq!(sink.finish().len(), 1);
    }

    #[test]
    fn syntax_errors() {
        check(
            "a:\n\tb: 1\n",
            expect![[r#"
            t.yaml:2:1: error: tab character in indentation (yaml indentation must use spaces)
        "#]],
        );
        check(
            "a: [1, 2\n",
            expect![[r#"
            t.yaml:2:1: error: invalid yaml: while parsing a flow sequence, expected ',' or ']' (a `{` or `[` opened earlier may be missing its closing bracket)
        "#]],
        );
        check(
            "a: 1\n---\nb: 2\n",
            expect![[r#"
            t.yaml:2:1: error: expected a single yaml document, found a second one (remove the `---` line or split the file)
        "#]],
        );
        check("", expect![[r#""#]]);
        check("# only a comment\n", expect![[r#""#]]);
        check(
            "a:\tb\n",
            expect![[r#"
            t.yaml:1:4: error: invalid yaml: ':' must be followed by a valid YAML whitespace (this line contains a tab; use spaces)
        "#]],
        );
        check(
            &"[".repeat(200),
            expect![[r#"
            t.yaml:1:66: error: document is nested too deeply (more than 64 levels)
        "#]],
        );
    }
}
