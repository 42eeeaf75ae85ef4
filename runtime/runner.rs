//! The machinery of a run, shared by `runbook run` and `runbook resume`:
//! prepare (params, context, compile, check), execute on a blocking thread,
//! roll back on failure, and report: the end event, the summary, and in a
//! dry-run the plan. Problems before the run starts are returned as a
//! [`Diagnostic`]; how the run itself ended is its [`Exit`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use rhai::{Dynamic, Engine, Scope};

use crate::analysis::{Known, check};
use crate::approval::ApprovalPolicy;
use crate::error::{Diagnostic, Exit};
use crate::event::{Event, Kind, Mode, StepStatus};
use crate::fixtures::Fixtures;
use crate::gate::{RunHost, Setup};
use crate::header::{Header, Requirement};
use crate::printer::{OutputFormat, Printer};

/// Everything `runbook run` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub file: PathBuf,
    pub params: Vec<(String, String)>,
    pub context: Option<String>,
    pub dry_run: bool,
    pub offline: bool,
    pub fixtures: Option<PathBuf>,
    pub approve: bool,
    pub confirm: Option<String>,
    /// `--wait-for-approval`: how long a gate nobody here can approve waits.
    pub wait_for_approval: Option<std::time::Duration>,
    pub output: OutputFormat,
    pub no_rollback: bool,
    pub verbose: bool,
    /// `--plan-out`: where a dry-run writes its plan (JSON).
    pub plan_out: Option<PathBuf>,
    /// `--expect-plan`: a saved plan every write of this live run must follow.
    pub expect_plan: Option<PathBuf>,
    /// `--journal s3://BUCKET/PREFIX`: also write the journal there (else
    /// the context's `journal`).
    pub journal: Option<String>,
    /// Stop the run as Ctrl-C would once this much time has passed (not on
    /// the command line: for programs that embed the runner, such as the
    /// fuzz harness, which must never wait on a script's `loop {}`).
    pub deadline: Option<std::time::Duration>,
}

/// A run that continues an earlier one (`runbook resume`).
#[derive(Debug, Clone)]
pub struct Resumed {
    pub run_id: String,
    pub journal: PathBuf,
    pub state: crate::resume::ResumeState,
    pub force: bool,
    /// The run's key (it opens the journal's sealed values), if it has one.
    pub key: Option<Arc<crate::seal::RunKey>>,
    /// Taken over from S3: the store, the lease held, and the lines there.
    pub remote: Option<(
        crate::journal_store::Store,
        crate::journal_store::Lease,
        u64,
    )>,
}

/// Problems found before anything runs: shown as diagnostics, exit 2.
struct Prepared {
    source: String,
    header: Header,
    params: BTreeMap<String, String>,
}

fn prepare(options: &RunOptions) -> Result<Prepared, Diagnostic> {
    let source = crate::engine::read_source(&options.file)
        .map_err(|error| error.in_script(&options.file, None))?;
    let header = Header::parse(&source);
    let mut params = BTreeMap::new();
    let mut problems = Vec::new();
    for (name, value) in &options.params {
        if header.param(name).is_none() {
            let declared: Vec<&str> = header
                .params
                .iter()
                .map(|param| param.name.as_str())
                .collect();
            let hint = if declared.is_empty() {
                "this runbook declares no params (`//! @param NAME ...` in its header)".to_owned()
            } else {
                format!("this runbook takes: {}", declared.join(", "))
            };
            problems
                .push(Diagnostic::new(format!("unknown param `{name}`"), Exit::Usage).hint(hint));
        }
        params.insert(name.clone(), value.clone());
    }
    for spec in &header.params {
        if spec.requirement == Requirement::Required && !params.contains_key(&spec.name) {
            problems.push(
                Diagnostic::new(
                    format!(
                        "missing required param `{}` ({})",
                        spec.name, spec.description
                    ),
                    Exit::Usage,
                )
                .hint(format!(
                    "pass it as `{}=VALUE` after the file name",
                    spec.name
                )),
            );
        }
    }
    match Diagnostic::many(problems) {
        None => Ok(Prepared {
            source,
            header,
            params,
        }),
        Some(problems) => Err(problems.in_script(&options.file, Some(&source))),
    }
}

fn millis(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Run a runbook; returns how it ended.
pub fn run(options: &RunOptions) -> Result<Exit, Diagnostic> {
    run_with(options, None)
}

/// Run a runbook, possibly continuing an earlier run; returns how it ended.
pub fn run_with(options: &RunOptions, mut resumed: Option<Resumed>) -> Result<Exit, Diagnostic> {
    let redactor = runbook_stdlib::redact::Redactor::new();
    let printer = Arc::new(Printer::new(options.output, redactor, options.verbose));
    let prepared = prepare(options)?;
    let in_script =
        |diagnostic: Diagnostic| diagnostic.in_script(&options.file, Some(&prepared.source));
    let folder = options.file.parent().map(PathBuf::from).unwrap_or_default();
    let cwd = std::env::current_dir().unwrap_or_default();
    let context = crate::context::resolve(options.context.as_deref(), &[&folder, &cwd])?;
    let fixtures = match &options.fixtures {
        Some(path) => {
            Fixtures::load(path).map_err(|problem| Diagnostic::new(problem, Exit::Usage))?
        }
        None => Fixtures::default(),
    };
    let mode = match (options.dry_run, options.offline) {
        (false, _) => Mode::Live,
        (true, false) => Mode::DryRun,
        (true, true) => Mode::DryRunOffline,
    };
    // An S3 journal (live runs only: a dry-run changes nothing to take over):
    // the shared audit key, and a store that honours conditional writes.
    let store = match crate::journal_store::configured(options.journal.as_deref(), &context)? {
        Some(url) if mode == Mode::Live && resumed.is_none() => {
            crate::journal_store::require_shared_audit_key()?;
            let store = crate::journal_store::Store::open(url, &context)?;
            store.probe()?;
            Some(store)
        }
        _ => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
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
        })?;
    let setup = Setup {
        mode,
        kind: Kind::Run,
        file: Some(options.file.clone()),
        header: prepared.header.clone(),
        params: prepared.params.clone(),
        context,
        approvals: ApprovalPolicy::new(
            options.approve,
            options.confirm.clone(),
            options.wait_for_approval,
        ),
        fixtures,
    };
    let host = Arc::new(RunHost::new(
        setup,
        Arc::clone(&printer),
        runtime.handle().clone(),
    ));
    if let Some(path) = &options.expect_plan {
        let saved = crate::saved_plan::SavedPlan::load(path)?;
        if let Some(problem) = saved.mismatch(
            &prepared.source,
            host.context.name.as_deref(),
            &prepared.params,
        ) {
            return Err(Diagnostic::new(
                format!("`{}` is not this run's plan: {problem}", path.display()),
                Exit::Usage,
            )
            .hint("make a new plan with `runbook run --dry-run --plan-out FILE` and review it"));
        }
        host.expect_changes(saved.changes());
    }
    let engine = crate::engine::build(&host);
    let ast =
        crate::engine::compile(&engine, &prepared.source, &Scope::new()).map_err(in_script)?;
    host.paused().set_library(&ast);
    let known = Known::new(&engine, &crate::engine::all_functions(&host));
    if let Some(problems) = Diagnostic::many(check(&ast, &prepared.header, &known)) {
        return Err(in_script(problems));
    }

    let run_id = resumed
        .as_ref()
        .map_or_else(crate::journal::new_run_id, |resumed| resumed.run_id.clone());
    // One live run of a runbook per context on this machine; dry-runs change nothing.
    let _lock = if mode == Mode::Live {
        Some(crate::lock::acquire(
            &options.file,
            host.context.name.as_deref(),
            &run_id,
        )?)
    } else {
        None
    };

    let started = Instant::now();
    let journal = match &resumed {
        Some(resumed) => {
            crate::journal::Journal::reopen(&resumed.journal, printer.redactor().clone())
        }
        None => crate::journal::Journal::create(&run_id, printer.redactor().clone())
            .map(|journal| (journal, 0)),
    };
    let (mut journal, cut_bytes) = journal?;
    if let Some(store) = store {
        let lease = store.create_lease(&run_id)?;
        journal.attach_remote(crate::journal_store::Sink::new(store, &run_id, lease, 0));
    }
    if let Some((store, lease, lines)) = resumed.as_mut().and_then(|resumed| resumed.remote.take())
    {
        journal.attach_remote(crate::journal_store::Sink::new(
            store, &run_id, lease, lines,
        ));
    }
    let remote_url = journal.remote_url();
    let journal_path = journal.path().to_owned();
    if let (Some(url), Some(dir)) = (&remote_url, journal_path.parent()) {
        let _ = std::fs::write(dir.join(crate::journal_store::MARKER), format!("{url}\n"));
    }
    host.attach_journal(journal);
    if mode == Mode::Live {
        host.set_sealing(
            &run_id,
            resumed.as_ref().and_then(|resumed| resumed.key.clone()),
        );
    }
    match resumed {
        Some(resumed) => {
            let replayed = resumed.state.calls.len();
            let steps = resumed.state.completed.len();
            host.set_resume(resumed.state);
            host.emit(&Event::Resume {
                user: crate::identity::user(),
                host: crate::identity::hostname(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                force: resumed.force,
                cut_bytes,
                time: crate::event::now(),
            });
            if replayed > 0 || steps > 0 {
                printer.line(&format!(
                    "resume: replaying {steps} completed step(s) and {replayed} call(s) from the journal (nothing of that runs again)"
                ));
            }
        }
        None => host.emit(&Event::Run {
            run_id: run_id.clone(),
            runbook: options.file.display().to_string(),
            cwd: std::env::current_dir()
                .unwrap_or_default()
                .display()
                .to_string(),
            sha256: crate::journal::sha256_hex(prepared.source.as_bytes()),
            params: prepared
                .params
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect(),
            context: host.context.name.clone(),
            user: crate::identity::user(),
            host: crate::identity::hostname(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            mode,
            kind: Kind::Run,
            time: crate::event::now(),
        }),
    }

    // Ctrl-C, SIGTERM and SIGHUP: the first cancels the call in flight and
    // stops the script (rollbacks then run, the journal is flushed); a
    // second exits at once.
    spawn_signal_watch(&runtime, &host);
    if let Some(deadline) = options.deadline {
        let deadline_host = Arc::clone(&host);
        runtime.spawn(async move {
            tokio::time::sleep(deadline).await;
            deadline_host.interrupt_by(Exit::Interrupted);
        });
    }

    let engine = Arc::new(engine);
    let ast = Arc::new(ast);
    let task_host = Arc::clone(&host);
    let no_rollback = options.no_rollback;
    let outcome = runtime.block_on(async move {
        tokio::task::spawn_blocking(move || execute(&task_host, &engine, &ast, no_rollback)).await
    });
    let failure = match outcome {
        Ok(failure) => failure,
        Err(join_error) => Some(Diagnostic::new(
            format!("internal error: {join_error}"),
            Exit::StepFailed,
        )),
    };

    let exit = failure
        .as_ref()
        .map_or(Exit::Ok, |diagnostic| diagnostic.exit);
    let exit = if host.was_interrupted() {
        host.interrupted_exit()
    } else {
        exit
    };
    printer.summary();
    if let Some(diagnostic) = &failure {
        printer.error(&in_script(diagnostic.clone()).render());
    }
    // For machines the plan comes before `end`, which is always the last event.
    if mode.is_dry() {
        printer.plan_event(&host.plan());
    }
    host.emit(&Event::End {
        status: exit,
        exit_code: exit.code(),
        duration_ms: millis(started),
        error: failure.map(|diagnostic| diagnostic.message),
        planned_changes: host.planned_changes(),
        time: crate::event::now(),
    });
    runtime.block_on(runbook_stdlib::finish_run());
    // Dropping the journal writes what S3 does not have yet.
    drop(host.detach_journal());
    if exit == Exit::Ok {
        host.discard_key();
    }
    printer.line(&format!(
        "journal: {} (run {run_id})",
        journal_path.display()
    ));
    if let Some(url) = &remote_url {
        printer.line(&format!("journal in S3: {url}"));
    }
    if mode.is_dry() && printer.format() == OutputFormat::Human {
        printer.data(&crate::printer::render_plan(&host.plan()));
    }
    if let Some(path) = &options.plan_out {
        crate::saved_plan::SavedPlan::new(
            &options.file,
            &prepared.source,
            host.context.name.clone(),
            prepared.params.clone(),
            &host.plan(),
        )
        .write(path)?;
    }
    runtime.shutdown_background();
    Ok(exit)
}

/// Run the script; on failure run the compensations. Returns the failure, if any.
fn execute(
    host: &RunHost,
    engine: &Engine,
    ast: &rhai::AST,
    no_rollback: bool,
) -> Option<Diagnostic> {
    let mut scope = Scope::new();
    let error = engine.run_ast_with_scope(&mut scope, ast).err()?;
    let diagnostic = Diagnostic::from_rhai(&error);
    if let Some(message) = host.halted() {
        host.printer.line(
            "not rolled back: the run stopped before doing anything its journal does not have; it can be resumed again",
        );
        return Some(Diagnostic {
            exit: Exit::Usage,
            message,
            ..diagnostic
        });
    }
    let diagnostic = if host.was_interrupted() {
        Diagnostic {
            exit: host.interrupted_exit(),
            message: match host.interrupted_exit() {
                Exit::Terminated => "stopped by SIGTERM".into(),
                Exit::HungUp => "stopped by SIGHUP".into(),
                _ => "interrupted".into(),
            },
            ..diagnostic
        }
    } else {
        diagnostic
    };
    roll_back(host, engine, ast, no_rollback);
    Some(diagnostic)
}

/// Watch for Ctrl-C, SIGTERM and SIGHUP: the first stops the run as an
/// interruption (rollbacks run), a second of any of them exits at once.
fn spawn_signal_watch(runtime: &tokio::runtime::Runtime, host: &Arc<RunHost>) {
    use tokio::signal::unix::{SignalKind, signal};
    // Installed now, not when the task is first polled: a signal in between
    // would take the default action and kill the run without its rollbacks.
    let streams = {
        let _entered = runtime.enter();
        (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        )
    };
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = streams else {
        return;
    };
    let signal_host = Arc::clone(host);
    runtime.spawn(async move {
        let mut first = true;
        loop {
            let (exit, name) = tokio::select! {
                _ = int.recv() => (Exit::Interrupted, "Ctrl-C"),
                _ = term.recv() => (Exit::Terminated, "SIGTERM"),
                _ = hup.recv() => (Exit::HungUp, "SIGHUP"),
            };
            if !first {
                std::process::exit(exit.code());
            }
            first = false;
            signal_host.printer.line(&format!(
                "interrupted by {name}: stopping; compensations run (a second signal exits at once)"
            ));
            signal_host.interrupt_by(exit);
        }
    });
}

/// Run registered compensations newest first; a failing one is reported and
/// the rest still run.
pub fn roll_back(host: &RunHost, engine: &Engine, ast: &rhai::AST, skip: bool) {
    let compensations = host.take_compensations();
    if compensations.is_empty() {
        return;
    }
    host.begin_rollback();
    host.printer.line(&format!(
        "rolling back: {} compensation(s), newest first",
        compensations.len()
    ));
    for compensation in compensations {
        if skip {
            host.emit(&Event::Rollback {
                step: compensation.step,
                status: StepStatus::Skipped,
                error: None,
                time: crate::event::now(),
            });
            continue;
        }
        let result = compensation.closure.call::<Dynamic>(engine, ast, ());
        host.emit(&Event::Rollback {
            step: compensation.step,
            status: if result.is_ok() {
                StepStatus::Ok
            } else {
                StepStatus::Failed
            },
            error: result.err().map(|error| {
                let diagnostic = Diagnostic::from_rhai(&error);
                format!(
                    "{} (at {})",
                    diagnostic.message,
                    host.location(diagnostic.position)
                )
            }),
            time: crate::event::now(),
        });
    }
}
