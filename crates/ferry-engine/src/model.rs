//! The records the engine's use cases take and answer, for its callers (the HTTP server,
//! the CLI): the store's rows and filters, the run log's lines, the audit log's entries. The
//! store itself is not among them — only the engine reaches it.

pub use ferry_executor::{LogChunk, LogLine, Stream};
pub use ferry_secrets::AuditRecord;
pub use ferry_store::secrets::{
    MAX_NAME_LEN as MAX_SECRET_NAME_LEN, MAX_VALUE_LEN as MAX_SECRET_VALUE_LEN,
};
/// The store's errors, as [`crate::Error::Store`] carries them.
pub use ferry_store::Error as StoreError;
pub use ferry_store::{
    Action, Approval, ApprovalMode, AuditEntry, AuditFilter, Decision, Deployment, Event,
    EventFilter, GitCredentials, LockOwner, Plan, Project, Run, RunDetail, RunFilter, Scope,
    SecretKind, SecretMeta, SecretName, Stage, StateAddr, StateBinding, StateRow, StateVersion,
    Subject, Team, Token, TokenScope, UnlockOutcome, User, VersionInfo, WaiverRow, WriteOutcome,
};
