//! Secrets in runs: the adapter that puts `ferry-secrets`' streaming masker
//! into the executor's output path.
//!
//! `ferry-secrets` knows nothing of the executor and the executor knows
//! nothing of secrets (ARCHITECTURE.md); the engine, which depends on both,
//! joins them here.

use std::sync::Arc;

use ferry_executor::OutputFilter;
use ferry_secrets::{MaskStream, Masker};

/// An [`OutputFilter`] that masks one output stream with a run's [`Masker`].
#[derive(Debug)]
pub struct MaskFilter(MaskStream);

impl MaskFilter {
    pub fn new(masker: Arc<Masker>) -> MaskFilter {
        MaskFilter(MaskStream::new(masker))
    }

    /// The stdout and stderr filters of one action.
    pub fn pair(masker: &Arc<Masker>) -> (Box<dyn OutputFilter>, Box<dyn OutputFilter>) {
        (
            Box::new(MaskFilter::new(masker.clone())),
            Box::new(MaskFilter::new(masker.clone())),
        )
    }
}

impl OutputFilter for MaskFilter {
    fn filter(&mut self, input: &[u8], out: &mut Vec<u8>) {
        self.0.filter(input, out);
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        self.0.finish(out);
    }
}
