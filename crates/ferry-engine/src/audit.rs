//! The audit log and the event log: what the server records of every change, and what
//! the API and live streams read back.

use ferry_core::Actor;
use ferry_secrets::AuditRecord;
use ferry_store::{AuditEntry, AuditFilter, Event, EventFilter};

use crate::{Engine, Result};

impl Engine {
    pub async fn audit(&self, actor: &Actor, entry: AuditEntry) -> Result<()> {
        Ok(self.inner.store.audit(actor, entry).await?)
    }

    pub async fn audit_filtered(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>> {
        Ok(self.inner.store.audit_filtered(filter).await?)
    }

    pub async fn audit_state_event(
        &self,
        actor: &Actor,
        entry: AuditEntry,
        kind: ferry_core::EventType,
        (project, environment): (&str, &str),
        reason: &str,
    ) -> Result<()> {
        Ok(self
            .inner
            .store
            .audit_state_event(actor, entry, kind, (project, environment), reason)
            .await?)
    }

    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<Event>> {
        Ok(self.inner.store.events(filter).await?)
    }

    /// A receiver that changes after every commit that wrote events.
    pub fn event_updates(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.store.event_updates()
    }
}
