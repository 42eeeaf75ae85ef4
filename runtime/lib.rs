//! The `runbook` runtime: CLI, engine, the gate between scripts and the
//! world, approvals, output. The standard library lives in `runbook-stdlib`.

pub mod analysis;
pub mod approval;
pub mod audit_key;
pub mod builtins;
pub mod cli;
pub mod commands;
pub mod context;
pub mod decision;
pub mod engine;
pub mod error;
pub mod event;
pub mod fixtures;
pub mod gate;
pub mod header;
pub mod html;
pub mod identity;
pub mod inspect;
pub mod journal;
pub mod journal_store;
pub mod lock;
pub mod plan;
pub mod printer;
pub mod reference;
pub mod remote;
pub mod repl;
pub mod resume;
pub mod runner;
pub mod saved_plan;
pub mod seal;
pub mod session;
