//! Tavern's integration tests: one binary, shared support, one module per area.
//!
//! Console tests drive the real `tavern` binary over stdin/stdout with a scripted model; library tests
//! use the public API against a temporary `.tavern/`. Every wait has a timeout; nothing sleeps to sync.

mod support;

mod agents;
mod backends;
mod bus;
mod claude_session;
mod compat;
mod console;
mod crash;
mod discord;
mod discord_burst;
mod discord_fake;
mod discord_fake_selftest;
mod discord_resume;
mod documents;
mod errors;
mod fakes;
mod fakes_selftest;
mod hardening;
mod replay;
mod tree;
