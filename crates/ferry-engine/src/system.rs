//! The server's own bookkeeping: readiness and closing the store.

use crate::{Engine, Result};

impl Engine {
    /// Whether the store answers (for `/readyz`).
    pub async fn ping(&self) -> Result<()> {
        Ok(self.inner.store.ping().await?)
    }

    /// Closes the store's connections (at shutdown, after every driver stopped).
    pub async fn close(&self) {
        self.inner.store.close().await
    }
}
