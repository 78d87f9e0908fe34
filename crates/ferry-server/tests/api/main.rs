//! Integration tests of Ferry's HTTP API, one module per topic.
//!
//! They exist because the API is Ferry's contract with the CLI and every other client: each
//! test starts the real server in-process (`ferry_server::start` + `Server::serve`) on
//! 127.0.0.1 port 0 with its own temp data dir, and talks real HTTP to it, over real git
//! repositories and real Terraform (`terraform_data` resources only). Nothing is mocked.
//! The CLI and process-level faults (kill -9, audit tampering, SIGTERM) are covered by the
//! binary's end-to-end tests in `crates/ferry/tests`; these stay at the API level.

mod common;

mod bad_input;
mod cancel;
mod git_credentials;
mod identity;
mod lifecycle;
mod logs;
mod modes;
mod policy;
mod promotion;
mod run_list;
mod secret_runs;
mod secrets;
mod state_backend;
mod state_ops;
mod system;
