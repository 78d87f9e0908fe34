//! End-to-end tests of Ferry as a user meets it: the real `ferry` binary as server and CLI,
//! real git repositories, real Terraform, real HTTP on 127.0.0.1 — including the faults the
//! foundation issue names (crashes, timeouts, cancellation, tampering, bad input).
//!
//! One test target (one binary to link) with a module per topic; every test has its own
//! server on port 0 with its own temp data dir, so they run in parallel.

mod util;

mod audit;
mod backup;
mod bad_input;
mod crash;
mod identity;
mod policy;
mod promotion;
mod quickstart;
mod sandbox;
mod secrets;
mod shutdown;
mod state;
mod state_crash;
mod stop_actions;
