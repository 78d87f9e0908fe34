//! Writing and reading Terraform state versions: sealing each version under its own data key
//! (AES-256-GCM, wrapped by the master key) and handing it to the store, which keeps the
//! rules and the durability. Shared by the HTTP backend and by crash recovery, which imports
//! the `errored.tfstate` a killed `terraform` left behind.

use ferry_core::Actor;
use ferry_secrets::MasterKey;
use ferry_store::{NewStateVersion, StateAddr, StateVersion, WriteOutcome};

use crate::{Engine, Error, Result};

/// Binds a version's ciphertext to its state address and content digest, so a blob copied
/// to another state or version does not open.
pub fn context(addr: StateAddr<'_>, sha256: &str) -> Vec<u8> {
    format!("ferry/state/{}/{sha256}", addr.display()).into_bytes()
}

/// Why a body could not become a version at all (as opposed to a refused write).
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Engine(#[from] Error),
}

impl Engine {
    /// Seals `body` and writes it as a new version of `addr`, under the store's lock, serial
    /// and lineage rules.
    pub async fn write_state(
        &self,
        actor: &Actor,
        addr: StateAddr<'_>,
        body: &[u8],
        lock_id: Option<&str>,
        force: bool,
    ) -> Result<WriteOutcome, WriteError> {
        if body.is_empty() {
            return Err(WriteError::Invalid("the state body is empty".into()));
        }
        let meta =
            ferry_state::parse_state(body).map_err(|e| WriteError::Invalid(e.to_string()))?;
        let sha256 = ferry_state::sha256_hex(body);
        let master = self.master_key();
        let sealed =
            ferry_secrets::envelope::seal(master, body, &context(addr, &sha256)).to_bytes();
        let new = NewStateVersion {
            meta: &meta,
            sha256: &sha256,
            size: body.len(),
            key_id: master.id(),
            sealed: &sealed,
        };
        let outcome = self
            .store()
            .state_write(actor, addr, new, lock_id, force, self.data_dir())
            .await
            .map_err(Error::from)?;
        Ok(outcome)
    }

    /// The plaintext of a stored version.
    pub fn read_state_version(
        &self,
        addr: StateAddr<'_>,
        version: &StateVersion,
    ) -> Result<Vec<u8>> {
        let sealed = ferry_store::blob::read(self.data_dir(), &version.blob)?;
        let sealed = ferry_secrets::envelope::Sealed::from_bytes(&sealed)
            .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
        let plain = ferry_secrets::envelope::open(
            self.master_key(),
            &sealed,
            &context(addr, &version.sha256),
        )
        .map_err(|e| {
            Error::Io(std::io::Error::other(format!(
                "state version {} does not decrypt: {e}",
                version.number
            )))
        })?;
        Ok(plain.expose().to_vec())
    }

    pub(crate) fn master_key(&self) -> &MasterKey {
        &self.inner.master_key
    }
}
