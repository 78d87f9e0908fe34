//! Splits a byte stream into log lines with bounded memory.
//!
//! Actions can print anything, including a 100 MB line with no newline, so a
//! line is never accumulated beyond [`MAX_LINE`] bytes: a longer line is cut
//! into segments of at most `MAX_LINE` bytes, and every segment after the first
//! is marked as a continuation (`LogLine::c`). Cuts are moved back (by at most
//! three bytes) so that they do not split a UTF-8 character.

/// The longest log line, in bytes, before it is split into continuation
/// segments.
pub const MAX_LINE: usize = 64 * 1024;

/// Incremental line splitter for one stream.
#[derive(Debug)]
pub(crate) struct LineSplitter {
    // Invariant: holds the start of the current, not yet terminated line;
    // `pending.len() <= MAX_LINE` and its capacity is allocated once.
    pending: Vec<u8>,
    // Invariant: true iff a segment of the current line was already emitted,
    // so the next segment emitted is a continuation.
    cont: bool,
}

impl LineSplitter {
    pub(crate) fn new() -> LineSplitter {
        LineSplitter {
            pending: Vec::with_capacity(MAX_LINE),
            cont: false,
        }
    }

    /// Feeds bytes; calls `emit(segment, is_continuation)` for every complete
    /// line or full-size segment. The segment excludes the `\n`.
    pub(crate) fn feed(&mut self, mut data: &[u8], emit: &mut impl FnMut(&[u8], bool)) {
        while !data.is_empty() {
            match data.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.push(&data[..i], true, emit);
                    data = &data[i + 1..];
                }
                None => {
                    self.push(data, false, emit);
                    break;
                }
            }
        }
    }

    /// End of stream: emits a trailing line that had no `\n`.
    pub(crate) fn finish(&mut self, emit: &mut impl FnMut(&[u8], bool)) {
        if !self.pending.is_empty() {
            emit(&self.pending, self.cont);
        }
        self.pending.clear();
        self.cont = false;
    }

    /// Adds `data` (which contains no `\n`) to the current line; `terminated`
    /// says whether a `\n` followed it.
    fn push(&mut self, mut data: &[u8], terminated: bool, emit: &mut impl FnMut(&[u8], bool)) {
        // Fast path: a whole short line with nothing pending is emitted
        // straight from the read buffer.
        if terminated && self.pending.is_empty() && data.len() <= MAX_LINE {
            emit(data, self.cont);
            self.cont = false;
            return;
        }
        loop {
            let take = (MAX_LINE - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            // A full buffer is cut only once more bytes of the same line are
            // known to follow, so a line of exactly MAX_LINE bytes is one
            // segment.
            if self.pending.len() < MAX_LINE || data.is_empty() {
                break;
            }
            let cut = char_boundary_cut(&self.pending);
            emit(&self.pending[..cut], self.cont);
            self.cont = true;
            self.pending.drain(..cut);
        }
        if terminated {
            emit(&self.pending, self.cont);
            self.pending.clear();
            self.cont = false;
        }
    }
}

/// Where to cut a full buffer: its length, or earlier if it ends inside a
/// multi-byte UTF-8 character (then the character moves to the next segment).
fn char_boundary_cut(buf: &[u8]) -> usize {
    let len = buf.len();
    // Find the start of the last character: skip at most 3 continuation bytes.
    let mut i = len;
    while i > 0 && len - i < 4 {
        i -= 1;
        let b = buf[i];
        if b & 0xC0 != 0x80 {
            let width = match b {
                0x00..=0x7F => 1,
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                0xF0..=0xF7 => 4,
                _ => 1,
            };
            return if i + width > len && i > 0 { i } else { len };
        }
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<(String, bool)> {
        let mut s = LineSplitter::new();
        let mut out = Vec::new();
        let mut emit =
            |seg: &[u8], c: bool| out.push((String::from_utf8_lossy(seg).into_owned(), c));
        for chunk in chunks {
            s.feed(chunk, &mut emit);
        }
        s.finish(&mut emit);
        out
    }

    #[test]
    fn lines_across_chunks() {
        let got = split(&[b"ab", b"c\nd", b"e\n\nf"]);
        let want = [("abc", false), ("de", false), ("", false), ("f", false)];
        assert_eq!(got, want.map(|(s, c)| (s.to_owned(), c)));
    }

    #[test]
    fn long_line_is_segmented() {
        let line = vec![b'x'; MAX_LINE * 2 + 10];
        let got = split(&[&line[..100], &line[100..], b"\nnext\n"]);
        let lens: Vec<(usize, bool)> = got.iter().map(|(s, c)| (s.len(), *c)).collect();
        assert_eq!(
            lens,
            [(MAX_LINE, false), (MAX_LINE, true), (10, true), (4, false)]
        );
    }

    #[test]
    fn exact_max_line_is_one_segment() {
        let mut line = vec![b'y'; MAX_LINE];
        line.push(b'\n');
        let got = split(&[&line[..10], &line[10..]]);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].0.len(), got[0].1), (MAX_LINE, false));
    }

    #[test]
    fn cut_does_not_split_a_character() {
        // 'é' is two bytes; place one so that it straddles MAX_LINE.
        let mut line = vec![b'a'; MAX_LINE - 1];
        line.extend_from_slice("é tail".as_bytes());
        let got = split(&[&line]);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0.len(), MAX_LINE - 1);
        assert_eq!(got[1], ("é tail".to_owned(), true));
    }
}
