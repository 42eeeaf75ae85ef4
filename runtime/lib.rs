//! The `runbook` runtime: CLI, engine, the gate between scripts and the
//! world, approvals, output. The standard library lives in `runbook-stdlib`.

pub mod approval;
pub mod builtins;
pub mod check;
pub mod cli;
pub mod commands;
pub mod context;
pub mod doc;
pub mod engine;
pub mod error;
pub mod event;
pub mod fixtures;
pub mod gate;
pub mod header;
pub mod journal;
pub mod list;
pub mod lock;
pub mod printer;
pub mod repl;
pub mod resume;
pub mod run;
pub mod runs;
pub mod session;
