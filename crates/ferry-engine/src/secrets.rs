//! Secrets in runs: the adapter that puts `ferry-secrets`' streaming masker
//! into the executor's output path, and the secret administration calls that need
//! the engine's master key.
//!
//! `ferry-secrets` knows nothing of the executor and the executor knows
//! nothing of secrets (ARCHITECTURE.md); the engine, which depends on both,
//! joins them here.

use std::sync::Arc;

use ferry_executor::OutputFilter;
use ferry_core::Actor;
use ferry_secrets::{MaskStream, Masker, Plaintext};
use ferry_store::{Scope, SecretKind, SecretMeta, SecretName};

use crate::{Engine, Result};

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

/// Secret and parameter administration, which needs the master key the engine holds.
impl Engine {
    /// Sets a new version of a secret or parameter (sealed under the master key).
    pub async fn set_secret(
        &self,
        actor: &Actor,
        kind: SecretKind,
        scope: &Scope,
        name: &SecretName,
        value: &[u8],
    ) -> Result<SecretMeta> {
        Ok(self
            .store()
            .set_secret(actor, self.master_key(), kind, scope, name, value)
            .await?)
    }

    /// A parameter's current value at exactly `scope`.
    pub async fn param_value(
        &self,
        scope: &Scope,
        name: &SecretName,
    ) -> Result<(SecretMeta, Plaintext)> {
        Ok(self
            .store()
            .param_value(self.master_key(), scope, name)
            .await?)
    }
}
