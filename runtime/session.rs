//! A host and async runtime outside `runbook run`: for the REPL (live, with
//! a context) and for `check`/`doc` (nothing runs).

use std::path::Path;
use std::sync::Arc;

use crate::approval::ApprovalPolicy;
use crate::context::Context;
use crate::error::{Diagnostic, Exit};
use crate::event::{Kind, Mode};
use crate::gate::{RunHost, Setup};
use crate::printer::{OutputFormat, Printer};

pub struct Session {
    pub runtime: tokio::runtime::Runtime,
    pub host: Arc<RunHost>,
}

fn runtime() -> Result<tokio::runtime::Runtime, Diagnostic> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // Scripts run on its blocking threads: room for the nesting the limits allow.
        .thread_stack_size(crate::engine::limits::STACK_BYTES)
        .enable_all()
        .build()
        .map_err(|error| {
            Diagnostic::new(
                format!("cannot start the async runtime: {error}"),
                Exit::StepFailed,
            )
        })
}

impl Session {
    fn new(
        mode: Mode,
        kind: Kind,
        context: Context,
        approvals: ApprovalPolicy,
    ) -> Result<Session, Diagnostic> {
        let runtime = runtime()?;
        let printer = Arc::new(Printer::new(
            OutputFormat::Human,
            runbook_stdlib::redact::Redactor::new(),
            false,
        ));
        let setup = Setup {
            mode,
            kind,
            context,
            approvals,
            ..Setup::default()
        };
        let host = Arc::new(RunHost::new(setup, printer, runtime.handle().clone()));
        Ok(Session { runtime, host })
    }

    /// A live session in a context, for the REPL.
    pub fn interactive(context: Option<&str>, starts: &[&Path]) -> Result<Session, Diagnostic> {
        let context = crate::context::resolve(context, starts).map_err(|error| {
            let diagnostic = Diagnostic::new(error.to_string(), Exit::Usage);
            match error.hint() {
                Some(hint) => diagnostic.hint(hint),
                None => diagnostic,
            }
        })?;
        Session::new(
            Mode::Live,
            Kind::Repl,
            context,
            ApprovalPolicy::new(false, None, None),
        )
    }

    /// A session that runs nothing: for `check` and `doc`.
    pub fn detached() -> Result<Session, Diagnostic> {
        Session::new(
            Mode::DryRunOffline,
            Kind::Run,
            Context::default(),
            ApprovalPolicy::default(),
        )
    }
}
