//! The hook where output is rewritten before it is stored (the future secret
//! masker, PRODUCT.md §4.2).
//!
//! A filter sees the raw bytes of one stream (stdout or stderr) of one action,
//! in the chunks they arrived in, *before* they are split into lines. A secret
//! may therefore straddle two chunks, or contain a newline; a masking filter
//! must hold back a suffix of `input` that could still be the start of a
//! secret, emit it on the next call, and emit whatever it still holds in
//! [`OutputFilter::finish`]. Nothing reaches the run log that did not pass
//! through the filter.
//!
//! Ferry's own `Stream::Sys` lines do not pass through it: whoever writes them
//! (the engine) is responsible for not putting secrets there.

/// Rewrites one output stream of one action, chunk by chunk.
///
/// One instance is used for exactly one stream of one action, so it may keep
/// state between calls. Calls come in order: `filter` zero or more times, then
/// `finish` once at end of stream.
pub trait OutputFilter: Send {
    /// Appends the filtered form of `input` to `out` (which may hold bytes
    /// already; do not clear it). May hold bytes back for a later call.
    fn filter(&mut self, input: &[u8], out: &mut Vec<u8>);

    /// End of stream: appends everything still held back to `out`.
    fn finish(&mut self, out: &mut Vec<u8>);
}

/// The default filter: passes every byte through unchanged.
#[derive(Debug, Default, Clone, Copy)]
pub struct Identity;

impl OutputFilter for Identity {
    fn filter(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(input);
    }

    fn finish(&mut self, _out: &mut Vec<u8>) {}
}

impl std::fmt::Debug for dyn OutputFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutputFilter")
    }
}
