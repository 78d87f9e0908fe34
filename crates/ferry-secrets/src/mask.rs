//! Masking of secret values in text that Ferry stores or shows: action output
//! (streamed, chunk by chunk), plan summaries and plan JSON, failure reasons
//! (PRODUCT.md §4 invariant 2).
//!
//! A [`Masker`] is built once per run from that run's secret values. For each
//! value it searches the value itself and the encodings a program is likely to
//! print it in:
//!
//! - JSON string escaping (as `serde_json` writes it, with non-ASCII as
//!   `\uXXXX`, and with `/` escaped as `\/`);
//! - URL percent-encoding (RFC 3986 unreserved characters kept; upper- and
//!   lowercase hex; `+` for space as in forms);
//! - base64, standard and URL-safe alphabets, in all three alignments: the
//!   value may start at any byte offset of a longer encoded stream, so for
//!   each alignment only the characters that depend on the value's bytes
//!   alone are searched (the first and last one or two characters mix with
//!   the neighbouring bytes and are left out);
//! - standard base64 wrapped at 76 columns (MIME) with `\n` or `\r\n`, the
//!   line break falling anywhere inside the encoded value.
//!
//! Every byte range covered by any occurrence of any of these is replaced;
//! each maximal covered range becomes one `***`. Optionally, anything shaped
//! like a Ferry token (`ferry_` + 43 base64url characters) is masked too,
//! whether or not its value is known.
//!
//! Values shorter than [`MIN_SECRET_LEN`] bytes are refused: they would mask
//! ordinary text everywhere.
//!
//! [`MaskStream`] applies a masker to one output stream split into arbitrary
//! chunks. It emits nothing that a later chunk could still turn into part of a
//! match (it holds back the last `longest pattern - 1` bytes), and its output
//! is the same as masking the whole stream at once, wherever the chunks split.
//!
//! **Limits:** masking finds the encodings above and nothing else. A program
//! that transforms a secret some other way (reverses it, hex-encodes it,
//! prints one character per line, encrypts it) can still leak it.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use zeroize::{Zeroize as _, Zeroizing};

use crate::token::{TOKEN_LEN, TOKEN_PREFIX};

/// What every masked range is replaced with.
pub const MASK: &[u8] = b"***";
/// Secrets shorter than this are refused.
pub const MIN_SECRET_LEN: usize = 4;
/// How many leading bytes of each pattern the prefilter looks for.
const PREFIX_LEN: usize = 8;
/// Line width of MIME base64 (RFC 2045).
const BASE64_WRAP: usize = 76;

/// RFC 3986 unreserved characters stay as they are; everything else is
/// percent-encoded (what `encodeURIComponent` and most libraries do).
const URL_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A value the masker refuses. It names the value by its position in the
/// input, never by content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaskError {
    #[error("secret value #{index} is {len} bytes long; at least {MIN_SECRET_LEN} are required")]
    TooShort { index: usize, len: usize },
}

/// Checks a value against the masker's rules (for callers that store values
/// and want to refuse a bad one early, with the same rule).
pub fn check_value(value: &[u8]) -> Result<(), MaskError> {
    if value.len() < MIN_SECRET_LEN {
        return Err(MaskError::TooShort {
            index: 0,
            len: value.len(),
        });
    }
    Ok(())
}

/// An immutable, shareable set of patterns derived from secret values. Build
/// it once per run and share it (`Arc`) between the streams of every action.
pub struct Masker {
    // Invariant: `patterns[i]` is pattern `i` of `ac`; pattern `token_id`, if
    // any, is `ferry_` and matches only when followed by 43 base64url bytes.
    // Never formatted: the patterns are secret material.
    ac: Option<AhoCorasick>,
    // Invariant: finds (overlapping) every occurrence of the first PREFIX_LEN bytes of every
    // pattern. A DFA over these few short strings scans much faster than `ac` does, and any
    // match of `ac` starts where one of these does, so `ac` only looks there.
    prefixes: Option<AhoCorasick>,
    // Invariant: every non-empty prefix, at most PREFIX_LEN long, of every pattern. A
    // stream holds back a tail only from a position where it could still start a match.
    // Zeroized on drop.
    starts: HashSet<Vec<u8>>,
    patterns: Vec<Zeroizing<Vec<u8>>>,
    token_id: Option<usize>,
    // Invariant: the longest span a match can cover (for tokens, the token).
    max_len: usize,
    secrets: usize,
}

impl fmt::Debug for Masker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Masker")
            .field("secrets", &self.secrets)
            .field("patterns", &self.patterns.len())
            .field("tokens", &self.token_id.is_some())
            .field(
                "memory",
                &(self.ac.as_ref().map_or(0, |a| a.memory_usage())
                    + self.prefixes.as_ref().map_or(0, |a| a.memory_usage())),
            )
            .finish()
    }
}

impl Drop for Masker {
    fn drop(&mut self) {
        for mut start in self.starts.drain() {
            start.zeroize();
        }
    }
}

impl Masker {
    /// A masker for `values`, also masking Ferry tokens when `tokens` is set.
    /// Duplicate values are fine; a value shorter than [`MIN_SECRET_LEN`] is
    /// refused.
    pub fn new<I, V>(values: I, tokens: bool) -> Result<Masker, MaskError>
    where
        I: IntoIterator<Item = V>,
        V: AsRef<[u8]>,
    {
        let mut patterns: Vec<Zeroizing<Vec<u8>>> = Vec::new();
        let mut secrets = 0;
        for (index, value) in values.into_iter().enumerate() {
            let value = value.as_ref();
            if value.len() < MIN_SECRET_LEN {
                return Err(MaskError::TooShort {
                    index,
                    len: value.len(),
                });
            }
            secrets += 1;
            patterns.extend(encodings(value).into_iter().map(Zeroizing::new));
        }
        patterns.sort_unstable_by(|a, b| a[..].cmp(&b[..]));
        patterns.dedup_by(|a, b| a[..] == b[..]);
        let mut max_len = patterns.iter().map(|p| p.len()).max().unwrap_or(0);
        let token_id = if tokens {
            patterns.push(Zeroizing::new(TOKEN_PREFIX.as_bytes().to_vec()));
            max_len = max_len.max(TOKEN_LEN);
            Some(patterns.len() - 1)
        } else {
            None
        };
        let prefixes = if patterns.is_empty() {
            None
        } else {
            let mut starts: Vec<&[u8]> = patterns
                .iter()
                .map(|p| &p[..p.len().min(PREFIX_LEN)])
                .collect();
            starts.sort_unstable();
            starts.dedup();
            Some(
                AhoCorasick::builder()
                    .match_kind(MatchKind::Standard)
                    .kind(Some(AhoCorasickKind::DFA))
                    .build(starts)
                    .expect("prefixes are non-empty and small"),
            )
        };
        let ac = if patterns.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .match_kind(MatchKind::Standard)
                    .kind(Some(if patterns.len() <= 64 {
                        AhoCorasickKind::DFA
                    } else {
                        AhoCorasickKind::ContiguousNFA
                    }))
                    .build(patterns.iter().map(|p| &p[..]))
                    .expect("patterns are non-empty and small"),
            )
        };
        let starts = patterns
            .iter()
            .flat_map(|p| (1..=p.len().min(PREFIX_LEN)).map(|l| p[..l].to_vec()))
            .collect();
        Ok(Masker {
            ac,
            prefixes,
            starts,
            patterns,
            token_id,
            max_len,
            secrets,
        })
    }

    /// A masker that changes nothing (a run without secrets, tokens off).
    pub fn empty() -> Masker {
        Masker::new(std::iter::empty::<&[u8]>(), false).expect("no values")
    }

    /// Whether this masker can ever change its input.
    pub fn is_empty(&self) -> bool {
        self.ac.is_none()
    }

    /// Number of secret values (not patterns) it masks.
    pub fn secret_count(&self) -> usize {
        self.secrets
    }

    /// Masks a complete text at once.
    pub fn mask_bytes(&self, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len());
        let mut buf = input.to_vec();
        let mut state = StreamState::default();
        self.step(&mut buf, &mut state, &mut out, true);
        out
    }

    /// Masks a complete string at once. Matches never split a UTF-8
    /// character of valid text, but a lossy conversion keeps this total.
    pub fn mask_str(&self, input: &str) -> String {
        if self.is_empty() {
            return input.to_owned();
        }
        match String::from_utf8(self.mask_bytes(input.as_bytes())) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }

    /// The byte ranges of `buf` covered by matches that end after `from`,
    /// sorted and merged (overlapping or touching ranges become one).
    fn covered(&self, buf: &[u8], from: usize) -> Vec<(usize, usize)> {
        let (Some(ac), Some(prefixes)) = (&self.ac, &self.prefixes) else {
            return Vec::new();
        };
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        let mut last_start = None;
        for hit in prefixes.find_overlapping_iter(buf) {
            let at = hit.start();
            if last_start == Some(at) {
                continue;
            }
            last_start = Some(at);
            let window = &buf[at..buf.len().min(at + self.max_len)];
            for m in ac.find_overlapping_iter(window) {
                if m.start() != 0 {
                    continue;
                }
                self.push_match(
                    buf,
                    at,
                    at + m.end(),
                    m.pattern().as_usize(),
                    from,
                    &mut ranges,
                );
            }
        }
        ranges.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
        for (s, e) in ranges {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        merged
    }

    /// Whether `tail` (the end of what has arrived) may be the start of a match: its first
    /// bytes start a pattern, or it is the start of a Ferry token. Errs on holding back.
    fn could_start(&self, tail: &[u8]) -> bool {
        if self.starts.contains(&tail[..tail.len().min(PREFIX_LEN)]) {
            return true;
        }
        self.token_id.is_some()
            && tail.len() < TOKEN_LEN
            && if tail.len() <= TOKEN_PREFIX.len() {
                TOKEN_PREFIX.as_bytes().starts_with(tail)
            } else {
                tail.starts_with(TOKEN_PREFIX.as_bytes())
                    && tail[TOKEN_PREFIX.len()..].iter().all(|&b| is_b64url(b))
            }
    }

    /// Adds the range of one match of pattern `id` at `start..end` of `buf` (a token
    /// extends to its full length, and is no match without it).
    fn push_match(
        &self,
        buf: &[u8],
        start: usize,
        mut end: usize,
        id: usize,
        from: usize,
        ranges: &mut Vec<(usize, usize)>,
    ) {
        {
            if Some(id) == self.token_id {
                let token_end = start + TOKEN_LEN;
                if token_end > buf.len() || !buf[end..token_end].iter().all(|&b| is_b64url(b)) {
                    return;
                }
                end = token_end;
            }
            if end > from {
                ranges.push((start, end));
            }
        }
    }

    /// One masking step over `buf`, whose first `state.emitted` bytes were
    /// already emitted (kept only as context for matches that straddle them).
    /// Appends what is now safe to emit to `out` and drops what is no longer
    /// needed as context from `buf`. With `last`, everything is emitted.
    fn step(&self, buf: &mut Vec<u8>, state: &mut StreamState, out: &mut Vec<u8>, last: bool) {
        let keep = self.max_len.saturating_sub(1);
        let len = buf.len();
        // A match not yet complete ends after `len`, so it starts at or after
        // `len - keep`, where the rest of the buffer is the start of a pattern: bytes
        // before `cut` can no longer become part of one.
        let cut = if last {
            len
        } else {
            // (A match may also start inside already-emitted, masked bytes.)
            (len.saturating_sub(keep)..len)
                .find(|&p| self.could_start(&buf[p..]))
                .map_or(len, |p| p.max(state.emitted))
        };
        let mut pos = state.emitted;
        for (s, e) in self.covered(buf, pos) {
            if e <= pos {
                continue;
            }
            if s > cut {
                break;
            }
            if s > pos {
                out.extend_from_slice(&buf[pos..s]);
                state.last_was_mask = false;
            }
            // A range reaching back into emitted bytes can only reach masked
            // ones (plain bytes are emitted only before `cut`), so it
            // continues the previous `***`.
            if !(s <= pos && state.last_was_mask) {
                out.extend_from_slice(MASK);
            }
            state.last_was_mask = true;
            pos = e;
        }
        if pos < cut {
            out.extend_from_slice(&buf[pos..cut]);
            state.last_was_mask = false;
            pos = cut;
        }
        let drop = pos.saturating_sub(keep);
        buf.drain(..drop);
        state.emitted = pos - drop;
    }
}

#[derive(Debug, Default)]
struct StreamState {
    /// How many bytes at the start of the buffer were already emitted.
    emitted: usize,
    /// Whether the last thing emitted was a `***` (reaching `emitted`).
    last_was_mask: bool,
}

/// Masks one output stream delivered in arbitrary chunks. Its calls match
/// `ferry_executor::OutputFilter` (the engine adapts one to the other).
pub struct MaskStream {
    masker: Arc<Masker>,
    // Invariant: the bytes after `state.emitted` are held back; those before
    // are context only. Zeroized because they may hold part of a secret.
    buf: Zeroizing<Vec<u8>>,
    state: StreamState,
}

impl fmt::Debug for MaskStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaskStream")
            .field("masker", &self.masker)
            .field("held", &(self.buf.len() - self.state.emitted))
            .finish()
    }
}

impl MaskStream {
    pub fn new(masker: Arc<Masker>) -> MaskStream {
        MaskStream {
            masker,
            buf: Zeroizing::new(Vec::new()),
            state: StreamState::default(),
        }
    }

    /// Appends the masked form of what is safe to emit of `input` to `out`;
    /// holds back a suffix that could still start a match.
    pub fn filter(&mut self, input: &[u8], out: &mut Vec<u8>) {
        if self.masker.is_empty() {
            out.extend_from_slice(input);
            return;
        }
        self.buf.extend_from_slice(input);
        self.masker.step(&mut self.buf, &mut self.state, out, false);
    }

    /// End of stream: emits everything still held back.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.masker.is_empty() {
            return;
        }
        self.masker.step(&mut self.buf, &mut self.state, out, true);
        self.buf.clear();
        self.state = StreamState::default();
    }
}

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Every form of `value` the masker searches for (possibly with duplicates).
fn encodings(value: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![value.to_vec()];
    if let Ok(text) = std::str::from_utf8(value) {
        out.extend(json_forms(text));
        out.extend(url_forms(text));
    }
    for aligned in base64_forms(value) {
        if aligned.len() >= MIN_SECRET_LEN {
            out.extend(wrapped(&aligned.standard, aligned.residue));
            out.push(aligned.standard.into_bytes());
            out.push(aligned.url_safe.into_bytes());
        }
    }
    out.retain(|p| !p.is_empty());
    out
}

fn json_forms(text: &str) -> Vec<Vec<u8>> {
    let quoted = serde_json::to_string(text).expect("a str always serializes");
    let plain = &quoted[1..quoted.len() - 1];
    let mut ascii = String::with_capacity(plain.len());
    for c in plain.chars() {
        if c.is_ascii() {
            ascii.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                ascii.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    let slashed = plain.replace('/', "\\/");
    let ascii_slashed = ascii.replace('/', "\\/");
    [plain.to_owned(), ascii, slashed, ascii_slashed]
        .into_iter()
        .map(String::into_bytes)
        .collect()
}

fn url_forms(text: &str) -> Vec<Vec<u8>> {
    let upper = utf8_percent_encode(text, URL_COMPONENT).to_string();
    let mut lower = String::with_capacity(upper.len());
    let mut hex_left = 0;
    for c in upper.chars() {
        if c == '%' {
            hex_left = 2;
            lower.push(c);
        } else if hex_left > 0 {
            hex_left -= 1;
            lower.push(c.to_ascii_lowercase());
        } else {
            lower.push(c);
        }
    }
    let form = upper.replace("%20", "+");
    let form_lower = lower.replace("%20", "+");
    [upper, lower, form, form_lower]
        .into_iter()
        .map(String::into_bytes)
        .collect()
}

/// The stable part of a value's base64 encoding at one alignment.
struct Aligned {
    standard: String,
    url_safe: String,
    /// Position of the first character within its 4-character group.
    residue: usize,
}

impl Aligned {
    fn len(&self) -> usize {
        self.standard.len()
    }
}

/// For a value starting `k` (0, 1, 2) bytes into a 3-byte group of a longer
/// base64 stream, the characters that depend only on the value's bytes.
fn base64_forms(value: &[u8]) -> Vec<Aligned> {
    (0..3)
        .map(|k| {
            let mut padded = Zeroizing::new(vec![0u8; k]);
            padded.extend_from_slice(value);
            // Character i covers bits [6i, 6i + 6) of the padded input; keep
            // those inside the value's bits [8k, 8(k + n)).
            let start = (8 * k).div_ceil(6);
            let end = 8 * padded.len() / 6;
            let standard = STANDARD_NO_PAD.encode(&padded[..]);
            let url_safe = URL_SAFE_NO_PAD.encode(&padded[..]);
            Aligned {
                standard: standard[start..end].to_owned(),
                url_safe: url_safe[start..end].to_owned(),
                residue: start % 4,
            }
        })
        .collect()
}

/// `encoded` as it appears when the base64 stream around it is wrapped at
/// [`BASE64_WRAP`] columns: a line break before every character at stream
/// position ≡ 0 (mod 76). Lines start on 4-character groups, so relative to
/// `encoded` (whose first character sits at `residue` within its group) a
/// break can fall only before positions p with (p + residue) ≡ 0 (mod 4).
fn wrapped(encoded: &str, residue: usize) -> Vec<Vec<u8>> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::new();
    // The first break inside `encoded` falls at 1..=76 (a break at 0 is before it).
    for phase in (1..=BASE64_WRAP).filter(|&p| p < bytes.len() && (p + residue) & 3 == 0) {
        for newline in [&b"\n"[..], b"\r\n"] {
            let mut p = Vec::with_capacity(bytes.len() + 2 * (bytes.len() / BASE64_WRAP + 1));
            for (i, &b) in bytes.iter().enumerate() {
                if i >= phase && (i - phase) % BASE64_WRAP == 0 {
                    p.extend_from_slice(newline);
                }
                p.push(b);
            }
            out.push(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use proptest::prelude::*;

    fn masker(values: &[&str]) -> Masker {
        Masker::new(values, false).unwrap()
    }

    fn check(values: &[&str], input: &str, expected: &str) {
        let m = masker(values);
        assert_eq!(m.mask_str(input), expected, "input {input:?}");
        // Byte by byte gives the same.
        let mut s = MaskStream::new(Arc::new(masker(values)));
        let mut out = Vec::new();
        for b in input.as_bytes() {
            s.filter(std::slice::from_ref(b), &mut out);
        }
        s.finish(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            expected,
            "streamed {input:?}"
        );
    }

    /// The naive reference: every occurrence of every pattern, by brute force.
    fn reference(m: &Masker, input: &[u8]) -> Vec<u8> {
        let mut covered = vec![false; input.len()];
        for (id, p) in m.patterns.iter().enumerate() {
            let span = if Some(id) == m.token_id {
                TOKEN_LEN
            } else {
                p.len()
            };
            for i in 0..input.len() {
                if input[i..].starts_with(p)
                    && i + span <= input.len()
                    && input[i + p.len()..i + span].iter().all(|&b| is_b64url(b))
                {
                    covered[i..i + span].iter_mut().for_each(|c| *c = true);
                }
            }
        }
        let mut out = Vec::new();
        for i in 0..input.len() {
            if !covered[i] {
                out.push(input[i]);
            } else if i == 0 || !covered[i - 1] {
                out.extend_from_slice(MASK);
            }
        }
        out
    }

    #[test]
    fn plain_and_escaped_forms() {
        check(&["hunter22"], "pw=hunter22.", "pw=***.");
        check(&["hunter22"], "hunter22hunter22 x", "*** x");
        check(&["a\"b\\c/d"], r#"{"pw":"a\"b\\c/d"}"#, r#"{"pw":"***"}"#);
        check(&["a\"b\\c/d"], r#"{"pw":"a\"b\\c\/d"}"#, r#"{"pw":"***"}"#);
        check(&["pässwörd"], r#""p\u00e4ssw\u00f6rd""#, r#""***""#);
        check(&["a b&c=d/é"], "?q=a%20b%26c%3Dd%2F%C3%A9&", "?q=***&");
        check(&["a b&c=d/é"], "?q=a+b%26c%3dd%2f%c3%a9&", "?q=***&");
        // Overlapping secrets become one mask.
        check(&["abcdef", "defghi"], "xabcdefghiy", "x***y");
        check(&["abcd", "cdef"], "abcdef", "***");
        check(&["abcd", "efgh"], "abcdefgh", "***");
        check(&["abcd"], "abc abd", "abc abd");
    }

    #[test]
    fn base64_in_every_alignment_and_alphabet() {
        let secret = "s3cr3t-v@lue?>>~";
        for prefix in ["", "x", "xy", "xyz", "hello, "] {
            for suffix in ["", "!", "!!", "tail text"] {
                let raw = format!("{prefix}{secret}{suffix}");
                for encoded in [STANDARD.encode(&raw), URL_SAFE_NO_PAD.encode(&raw)] {
                    let masked = masker(&[secret]).mask_str(&encoded);
                    assert!(masked.contains("***"), "{raw:?} as {encoded}");
                    // At most two characters on each side of the mask that
                    // mix with neighbours were left, plus the neighbours'.
                    let kept = masked.len() - 3;
                    assert!(
                        kept <= encoded.len() - 4 * secret.len() / 3 + 4,
                        "{raw:?}: {masked}"
                    );
                }
            }
        }
    }

    /// Whether any 6 consecutive characters of the encoded secret survive in `masked`
    /// (line breaks removed), which would let someone decode part of it.
    fn leaks_base64(raw_prefix: usize, secret: &str, encoded: &str, masked: &str) -> bool {
        let start = (raw_prefix * 8).div_ceil(6) + 2;
        let end = ((raw_prefix + secret.len()) * 8 / 6).saturating_sub(2);
        let unwrapped: String = masked.replace(['\r', '\n'], "");
        (start..end.saturating_sub(6)).any(|i| unwrapped.contains(&encoded[i..i + 6]))
    }

    #[test]
    fn base64_wrapped_at_76_columns() {
        for secret in [
            "correct-horse-battery-staple-0123456789",
            "a-long-secret-of-more-than-57-bytes-so-that-it-wraps-0123456789-abcdefghij",
        ] {
            for prefix_len in 0..80 {
                let raw = format!("{}{secret}{}", "p".repeat(prefix_len), "s".repeat(7));
                let encoded = STANDARD.encode(&raw);
                for newline in ["\n", "\r\n"] {
                    let lines: Vec<&str> = encoded
                        .as_bytes()
                        .chunks(76)
                        .map(|c| std::str::from_utf8(c).unwrap())
                        .collect();
                    let wrapped = lines.join(newline);
                    let masked = masker(&[secret]).mask_str(&wrapped);
                    let encoded_unwrapped = encoded.clone();
                    assert!(masked.contains("***"), "prefix {prefix_len}: {masked}");
                    assert!(
                        !leaks_base64(prefix_len, secret, &encoded_unwrapped, &masked),
                        "prefix {prefix_len} {newline:?}: {masked}"
                    );
                }
            }
        }
    }

    #[test]
    fn long_secret_wraps_more_than_once() {
        let secret = "k".repeat(40) + &"q".repeat(100) + "z";
        let encoded = STANDARD.encode(format!("ab{secret}cd"));
        let wrapped = encoded
            .as_bytes()
            .chunks(76)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join("\n");
        let masked = Masker::new([&secret], false).unwrap().mask_str(&wrapped);
        assert_eq!(masked.matches("***").count(), 1, "{masked}");
        // "ab" and "cd" share their edge characters with the secret.
        assert!(masked.len() <= 12, "{masked}");
    }

    #[test]
    fn ferry_tokens_are_masked_when_asked() {
        let token = crate::generate_token().plaintext;
        let text = format!("Authorization: Bearer {token}\n");
        let m = Masker::new(std::iter::empty::<&[u8]>(), true).unwrap();
        assert_eq!(m.mask_str(&text), "Authorization: Bearer ***\n");
        // Too short after the prefix: not a token.
        assert_eq!(m.mask_str("ferry_abc"), "ferry_abc");
        assert_eq!(
            Masker::empty().mask_str(&text),
            text,
            "tokens off, nothing masked"
        );
    }

    #[test]
    fn too_short_values_are_refused_by_position() {
        let err = Masker::new(["long enough", "abc"], false).unwrap_err();
        assert_eq!(err, MaskError::TooShort { index: 1, len: 3 });
        assert_eq!(
            err.to_string(),
            "secret value #1 is 3 bytes long; at least 4 are required"
        );
        assert!(Masker::new([""], false).is_err());
        assert!(check_value(b"abcd").is_ok());
        assert!(check_value(b"").is_err());
    }

    #[test]
    fn debug_shows_no_pattern() {
        let m = masker(&["sekrit-value"]);
        let dbg = format!(
            "{m:?} {:?}",
            MaskStream::new(Arc::new(masker(&["sekrit-value"])))
        );
        assert!(!dbg.contains("sekrit"), "{dbg}");
    }

    #[test]
    fn stream_holds_back_only_what_could_still_match() {
        let m = Arc::new(masker(&["hunter22"]));
        let mut s = MaskStream::new(m);
        let mut out = Vec::new();
        s.filter(b"a long first line of output\nhunt", &mut out);
        // Everything that cannot be the start of a match is out already.
        assert_eq!(out, b"a long first line of output\n");
        s.filter(b"", &mut out);
        assert_eq!(out, b"a long first line of output\n");
        s.filter(b"er22 done\n", &mut out);
        s.finish(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a long first line of output\n*** done\n"
        );

        // A complete line goes out at once (a log tail sees it live), also with the
        // token rule, whose matches are 49 bytes long; a token's start waits.
        let m = Arc::new(Masker::new(["hunter22"], true).unwrap());
        let mut s = MaskStream::new(m);
        let mut out = Vec::new();
        s.filter(b"line-1\n", &mut out);
        assert_eq!(out, b"line-1\n");
        s.filter(b"token ferry_abc", &mut out);
        assert_eq!(out, b"line-1\ntoken ");
    }

    fn secret() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9+/=_ \"\\\\\n-]{4,24}"
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Masking is the same whatever the chunking, and equals the
        /// brute-force reference.
        #[test]
        fn split_anywhere(
            secrets in prop::collection::vec(secret(), 1..4),
            pieces in prop::collection::vec((0usize..8, "[a-z \n=]{0,6}"), 0..12),
            cuts in prop::collection::vec(0usize..400, 0..8),
        ) {
            // Text made of secrets in various encodings and filler.
            let mut text = Vec::new();
            for (kind, filler) in &pieces {
                text.extend_from_slice(filler.as_bytes());
                let s = secrets[kind % secrets.len()].as_bytes();
                match kind {
                    0..=2 => text.extend_from_slice(s),
                    3 => text.extend_from_slice(STANDARD.encode(s).as_bytes()),
                    4 => text.extend_from_slice(
                        serde_json::to_string(std::str::from_utf8(s).unwrap()).unwrap().as_bytes()),
                    5 => text.extend_from_slice(&s[..s.len() / 2]),
                    6 => text.extend_from_slice(STANDARD.encode([b"ab", s].concat()).as_bytes()),
                    _ => text.extend_from_slice(crate::generate_token().plaintext.as_bytes()),
                }
            }
            let m = Arc::new(Masker::new(&secrets, true).unwrap());
            let whole = m.mask_bytes(&text);
            prop_assert_eq!(&whole, &reference(&m, &text));

            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(text.len())).collect();
            cuts.sort_unstable();
            let mut stream = MaskStream::new(m.clone());
            let mut out = Vec::new();
            let mut at = 0;
            for c in cuts.into_iter().chain([text.len()]) {
                stream.filter(&text[at..c], &mut out);
                at = c;
            }
            stream.finish(&mut out);
            prop_assert_eq!(&out, &whole);
        }

        /// No secret survives in plain form, whatever surrounds it.
        #[test]
        fn no_plain_secret_survives(
            s in "[a-zA-Z0-9]{4,30}",
            before in "[a-zA-Z0-9 ]{0,20}",
            after in "[a-zA-Z0-9 ]{0,20}",
            split in 0usize..80,
        ) {
            let text = format!("{before}{s}{after}");
            let m = Arc::new(Masker::new([&s], false).unwrap());
            let mut stream = MaskStream::new(m);
            let mut out = Vec::new();
            let split = split.min(text.len());
            stream.filter(&text.as_bytes()[..split], &mut out);
            stream.filter(&text.as_bytes()[split..], &mut out);
            stream.finish(&mut out);
            let out = String::from_utf8(out).unwrap();
            prop_assert!(!out.contains(&s), "{} in {}", s, out);
        }
    }
}
