//! `ferry-state` holds the rules of Terraform's `http` state backend as pure functions, so the
//! server and the store only move bytes and call them.
//!
//! **Architecture Invariant:** no I/O, no async, no clock, no sqlx or axum. Every function takes
//! the request body, the stored facts and (where time matters) `now`, and returns a decision.
//! The protocol these rules implement is `shared/design/terraform-http-backend.md`; the sections
//! cited below (§2, §4, §5) are that document's.
//!
//! - [`parse_state`] reads only `serial` and `lineage` (and whether resources exist), so
//!   OpenTofu's encrypted envelope works exactly like plain state (§4).
//! - [`decide_write`] guards serial and lineage (§4); [`check_write_lock`] enforces `?ID` (§5).
//! - [`parse_lock`], [`decide_lock`] and [`decide_unlock`] implement LOCK/UNLOCK, including both
//!   force-unlock flavours (§2.4–§2.6).
//! - [`with_serial`] rewrites an old version's serial for a rollback.
//! - [`resources`], [`diff`] and [`redacted`] are the human renderings; [`redacted`] hides what
//!   Terraform marks sensitive.
//!
//! Decisions are outcomes, not errors: a refused write is [`WriteDecision::Refuse`]. The one
//! error type, [`StateError`], means the body could not be read.

mod digest;
mod error;
mod lock;
mod render;
mod state;

pub use crate::digest::{content_md5, content_md5_matches, sha256_hex};
pub use crate::error::StateError;
pub use crate::lock::{
    check_write_lock, decide_lock, decide_unlock, parse_lock, parse_lock_info, LockDecision,
    LockInfo, LockRequest, UnlockDecision, WriteLockCheck,
};
pub use crate::render::{diff, redacted, resources, ResourceSummary, StateDiff, REDACTED};
pub use crate::state::{
    decide_write, parse_state, with_serial, Current, Refusal, StateMeta, WriteDecision,
};
