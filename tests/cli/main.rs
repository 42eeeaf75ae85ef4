//! Integration tests of the real `runbook` binary: one test binary, one
//! harness (`harness.rs`), insta snapshots under `snapshots/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod harness;

mod approvals;
mod audit_tamper;
mod check;
mod completions;
mod deploy;
mod doc;
mod dry_run;
mod examples;
mod faults;
mod gates;
mod html;
mod http;
mod incident;
mod init;
mod journal;
mod json_schema;
mod k8s;
mod limits;
mod plans;
mod read_cannot_write;
mod readme;
mod recovery;
mod remote_journal;
mod repl;
mod replay;
mod rotate;
mod run;
mod s3_pg;
mod schedule;
mod secrets;
mod secrets_corpus;
mod ssh;
mod ssh_masters;
mod staging;
