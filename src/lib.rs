//! Tavern: run many AI coding agents together, coordinated by Jake, held to verified commitments.
//!
//! # Layout
//!
//! Layers depend only downward:
//!
//! - surfaces: [`console`] (and, later, Discord) turn what people type into intents;
//! - application: [`app`] starts and stops a tavern, [`executor`] is the one path by which intents are
//!   decided, logged, applied and projected, [`verification`] runs commitments' assertions;
//! - agents: [`tree`] supervises one task per agent, [`turn`] runs an agent's turn through its plugin,
//!   [`bus`] sends and subscribes to messages, [`sidecar`] runs model I/O under a global cap,
//!   [`registry`] maps the closed set of agent kinds to their plugin crates;
//! - domain: [`domain`] holds intents, outcomes, the state and its pure fold, and the projection to
//!   documents; [`naming`] names agents;
//! - infrastructure: [`log`] (the command log), [`blackboard`] (the `.tavern/` documents), [`model`]
//!   (model backends), [`verify`] (running one shell assertion), [`config`].
//!
//! The log and the blackboard never call a model; replay is a pure fold over recorded outcomes.
#![warn(missing_docs)]

pub mod app;
pub mod blackboard;
pub mod bus;
pub mod claude;
pub mod config;
pub mod console;
pub mod discord;
pub mod domain;
pub mod executor;
pub mod log;
pub mod model;
pub mod naming;
pub mod permission;
pub mod registry;
pub mod sidecar;
pub mod tree;
pub mod turn;
pub mod verification;
pub mod verify;
