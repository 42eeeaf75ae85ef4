//! Built-ins that need the run's state: `param`, `context`, `step`,
//! `approve`, `on_rollback`. Registered through the same `Function` type as
//! the stdlib, so they have docs and effects like everything else.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::{Dynamic, EvalAltResult};
use runbook_stdlib::{Call, Effect, Failure, Function, Host as _, StdlibError, function};

use crate::approval::{self, Gate, Verdict};
use crate::decision::{Decision, decide};
use crate::error::Diagnostic;
use crate::event::{Channel, Event, GateDecision, StepStatus};
use crate::gate::RunHost;
use crate::header::Requirement;

pub fn functions(host: &Arc<RunHost>) -> Vec<Function> {
    let param_host = Arc::clone(host);
    let step_host = Arc::clone(host);
    let approve_host = Arc::clone(host);
    let rollback_host = Arc::clone(host);
    let mode_host = Arc::clone(host);
    vec![
        function! {
            /// A param of the run, as text: from `name=value` on the command line or
            /// `--param name=value`. Without a value and without a default (here or in
            /// the header's `@param NAME default=VALUE`) the run stops with a clear
            /// error. Every param must be declared in the header:
            /// `//! @param version required  image tag to deploy`.
            ///
            /// ```rhai
            /// let version = param("version", "v0.0.0");
            /// ```
            local fn param("name: string", "default?: any") -> "string | any"
            move |call| param(&param_host, call)
        },
        function! {
            /// The active context (from runbook.toml and `--context`) as a map: `name`,
            /// `protected`, `namespace`, `hosts`, `groups`, `s3`, `vars`, ... and
            /// `secrets` (names only, never values).
            ///
            /// ```rhai
            /// let ctx = context();
            /// log::info("running in " + ctx.name);
            /// ```
            local fn context() -> "map"
            |call| Ok(call.host.context())
        },
        function! {
            /// Whether this is a dry-run (`--dry-run`). Writes are never run in a dry-run
            /// anyway; use this only to skip reads that make sense after the run's own
            /// writes (e.g. a health check of a server the run would have started).
            ///
            /// ```rhai
            /// if !dry_run() { log::info("live run"); }
            /// ```
            local fn dry_run() -> "bool"
            move |_call| Ok(Dynamic::from_bool(mode_host.mode().is_dry()))
        },
        function! {
            /// A named unit of progress, journaling and resume: runs `fn` and returns
            /// its value. Options: `retries` (default 0), `backoff` (default "1s",
            /// doubling), `timeout` (stops the step and cancels its calls), `once`
            /// (the step must not run twice: see below). Step names are unique in a run.
            ///
            /// On `runbook resume`, a step that completed is replayed: its body runs
            /// again, but every stdlib call in it returns what the journal recorded
            /// instead of running, so it returns the same value and registers the
            /// same `on_rollback` compensations. The step the run died in runs again
            /// from its start (so make steps safe to repeat), unless it has
            /// `once: true`: then resume asks at a terminal ([r]un again, [s]kip)
            /// or stops with exit 2 naming it, rolling nothing back.
            ///
            /// ```rhai
            /// let n = step("count", || 40 + 2);
            /// let m = step("flaky", #{retries: 2, backoff: "10ms", timeout: "5s"}, || n + 1);
            /// step("charge the card", #{once: true}, || n * 2);
            /// ```
            local fn step("name: string", "fn: closure") | ("name: string", "opts: map", "fn: closure") -> "any"
            move |call| step(&step_host, call)
        },
        function! {
            /// An approval gate: a person approves before the run goes on. On a
            /// terminal it asks (for `confirm`, or a protected context, the person types
            /// the text); without one it fails closed (exit 3) unless the run has
            /// `--approve` (and `--confirm CONTEXT` for a protected context), or waits
            /// for `runbook approve RUN` from another shell when started with
            /// `--wait-for-approval DURATION`. In a `four_eyes` context the person who
            /// started the run cannot approve it. A dry-run records it in the plan.
            /// Options: `confirm` (text to type), `timeout` (reject when nobody answers;
            /// also bounds `--wait-for-approval`).
            ///
            /// ```rhai
            /// approve("Roll out v2 to production?", #{confirm: "v2"});
            /// ```
            local fn approve("message: string", "opts?: map") -> "()"
            move |call| approve(&approve_host, call)
        },
        function! {
            /// Register a compensation for the current step: when the run fails, a gate
            /// is rejected, or Ctrl-C stops it, compensations run newest first.
            ///
            /// ```rhai
            /// on_rollback(|| log::warn("undoing the change"));
            /// ```
            local fn on_rollback("fn: closure") -> "()"
            move |call| {
                let closure = call.fn_ptr(0)?;
                rollback_host.add_compensation(closure);
                Ok(Dynamic::UNIT)
            }
        },
    ]
}

fn param(host: &RunHost, call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let name = call.string(0)?;
    let (given, spec) = host.param(&name);
    if let Some(value) = given {
        return Ok(Dynamic::from(value));
    }
    if call.len() > 1 {
        return Ok(call.arg(1));
    }
    match spec.as_ref().map(|spec| &spec.requirement) {
        Some(Requirement::Default(value)) => Ok(Dynamic::from(value.clone())),
        Some(Requirement::Optional) => Ok(Dynamic::UNIT),
        _ => Err(StdlibError::usage(
            format!("param `{name}` was not given"),
            format!("pass it on the command line: `runbook run FILE {name}=VALUE`"),
        )
        .into()),
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Errors that end a step at once, without retries.
fn is_final(host: &RunHost, error: &EvalAltResult) -> bool {
    host.was_interrupted()
        || matches!(
            StdlibError::from_rhai(error),
            Some(
                StdlibError::Refused { .. }
                    | StdlibError::Locked { .. }
                    | StdlibError::Usage { .. }
            )
        )
}

fn step(host: &RunHost, call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let name = call.string(0)?;
    let (options, closure) = if call.len() == 3 {
        (
            call.options(1, &["retries", "backoff", "timeout", "once"])?,
            call.fn_ptr(2)?,
        )
    } else {
        (call.options(99, &[])?, call.fn_ptr(1)?)
    };
    let retries = options.int("retries")?.unwrap_or(0).max(0);
    let mut backoff = options
        .duration("backoff")?
        .unwrap_or(Duration::from_secs(1));
    let timeout = options.duration("timeout")?;
    let once = options.bool("once")?.unwrap_or(false);

    // Resume: a step that completed before the resume point runs again with
    // every call answered from the journal (its compensations come back).
    if host.replays_step(&name) {
        host.enter_step(&name, None)?;
        // Attempts that failed before the one that succeeded are in the
        // journal too: replay them as they went (without the waits).
        let mut attempt = 0;
        let outcome = loop {
            match call.call_fn(&closure, Vec::new()) {
                Err(_) if attempt < retries && host.halted().is_none() => {
                    attempt += 1;
                    host.retry_step(&name);
                }
                outcome => break outcome,
            }
        };
        host.leave_step(&name);
        let value = outcome.map_err(Failure::Script)?;
        let (shown, sealed) = host.journal_value(&value);
        host.emit(&Event::StepEnd {
            step: name,
            status: StepStatus::Skipped,
            duration_ms: 0,
            redacted: sealed.is_some(),
            value: shown,
            sealed,
            error: None,
            time: crate::event::now(),
        });
        return Ok(value);
    }
    host.check_replay_done(&name, call.context.call_position())?;
    if once
        && host.was_interrupted_in(&name)
        && !rerun_once_step(host, call.context.engine(), &name)?
    {
        host.log_warn(&format!(
            "step `{name}` (once) skipped at the prompt: treated as done by hand"
        ));
        host.emit(&Event::StepEnd {
            step: name,
            status: StepStatus::Skipped,
            duration_ms: 0,
            value: None,
            redacted: false,
            sealed: None,
            error: None,
            time: crate::event::now(),
        });
        return Ok(Dynamic::UNIT);
    }
    // `:run FILE --step` in a REPL session: ask before every step.
    if host.stepping() && !before_step(host, call.context.engine(), &name)? {
        host.log_warn(&format!("step `{name}` skipped at the --step prompt"));
        return Ok(Dynamic::UNIT);
    }
    let mut token = host.enter_step(&name, timeout)?;
    host.emit(&Event::StepStart {
        step: name.clone(),
        time: crate::event::now(),
    });
    let started = Instant::now();
    let mut attempt = 0;
    let result = loop {
        let timer = timeout.map(|limit| {
            let token = token.clone();
            let stop = host.stop_flag();
            host.runtime_handle().spawn(async move {
                tokio::select! {
                    () = tokio::time::sleep(limit) => {
                        token.cancel();
                        stop.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                    () = token.cancelled() => {}
                }
            })
        });
        let outcome = call.call_fn(&closure, Vec::new());
        let timed_out = token.is_cancelled() && !host.was_interrupted();
        if let Some(timer) = timer {
            timer.abort();
        }
        let outcome = match outcome {
            Err(_) if timed_out => Err(Failure::Stdlib(StdlibError::Timeout(
                runbook_stdlib::duration::human(timeout.unwrap_or_default()),
            ))),
            Err(error) => Err(Failure::Script(error)),
            Ok(value) => Ok(value),
        };
        match outcome {
            Ok(value) => break Ok(value),
            Err(failure) => {
                let final_error = match &failure {
                    Failure::Script(error) => is_final(host, error),
                    Failure::Stdlib(_) => host.was_interrupted(),
                };
                if final_error || attempt >= retries {
                    break Err(failure);
                }
                attempt += 1;
                host.log_warn(&format!(
                    "step `{name}` failed (attempt {attempt} of {}): {}; retrying in {}",
                    retries + 1,
                    one_line(&failure_message(&failure)),
                    runbook_stdlib::duration::human(backoff)
                ));
                token = host.retry_step(&name);
                let pause = backoff;
                call.block_on(async move {
                    tokio::time::sleep(pause).await;
                    Ok(())
                })?;
                backoff = backoff.saturating_mul(2);
            }
        }
    };
    host.leave_step(&name);
    let duration_ms = millis(started.elapsed());
    match &result {
        Ok(value) => {
            let (shown, sealed) = host.journal_value(value);
            host.emit(&Event::StepEnd {
                step: name,
                status: StepStatus::Ok,
                duration_ms,
                value: shown,
                redacted: runbook_stdlib::values::contains_secret(value),
                sealed,
                error: None,
                time: crate::event::now(),
            });
        }
        Err(failure) => host.emit(&Event::StepEnd {
            step: name,
            status: StepStatus::Failed,
            duration_ms,
            value: None,
            redacted: false,
            sealed: None,
            error: Some(failure_message(failure)),
            time: crate::event::now(),
        }),
    }
    result
}

/// A `once` step that an earlier attempt started and never finished: it
/// may have done part of its work, so it is not run again without a person
/// saying so. At a terminal: ask; elsewhere: stop the run (exit 2), with
/// nothing rolled back, so that it can be resumed once someone has looked.
/// `Ok(true)` runs it again, `Ok(false)` skips it.
fn rerun_once_step(host: &RunHost, engine: &rhai::Engine, name: &str) -> Result<bool, StdlibError> {
    let stopped = |how: &str| {
        let message = format!(
            "step `{name}` is marked `once` and an earlier attempt of this run started it but did not finish it; {how}"
        );
        host.halt(&message);
        StdlibError::Usage {
            message,
            hint: Some(
                "check by hand what the step did, then resume at a terminal and answer [r]un again or [s]kip, or finish it by hand".into(),
            ),
        }
    };
    if !host.approvals.interactive {
        return Err(stopped(
            "not running it again without a person at a terminal",
        ));
    }
    loop {
        let answer = host.ask(
            &format!(
                "step `{name}` (once) was started by an earlier attempt and did not finish; it may have done part of its work.\n  [r]un it again  [s]kip it (done by hand)  [i]nspect  [a]bort: "
            ),
            None,
        );
        match answer.as_deref().map(|text| text.trim().to_ascii_lowercase()) {
            Some(answer) if answer == "r" || answer == "run" => return Ok(true),
            Some(answer) if answer == "s" || answer == "skip" => return Ok(false),
            Some(answer) if answer == "i" || answer == "inspect" => {
                let heading = format!("inspecting the run before step `{name}`");
                if let crate::inspect::Decision::Reject(_) | crate::inspect::Decision::Abort =
                    crate::inspect::open(host, engine, &heading)
                {
                    return Err(stopped("aborted at the prompt"));
                }
            }
            None => return Err(stopped("no answer")),
            Some(answer) if answer == "a" || answer == "abort" => {
                return Err(stopped("aborted at the prompt"));
            }
            Some(other) => host.printer.line(&format!(
                "  `{other}` is not an answer here: r runs the step again, s skips it, i inspects, a aborts"
            )),
        }
    }
}

/// The `--step` question before a step: `Ok(true)` runs it, `Ok(false)` skips it.
fn before_step(host: &RunHost, engine: &rhai::Engine, name: &str) -> Result<bool, StdlibError> {
    let aborted = || StdlibError::Refused {
        message: format!("aborted before step `{name}`"),
        hint: None,
    };
    loop {
        let answer = host.ask(
            &format!("next step `{name}`: [c]ontinue  [s]kip  [i]nspect  [a]bort: "),
            None,
        );
        match answer.as_deref().map(|text| text.trim().to_ascii_lowercase()) {
            None => return Err(aborted()),
            Some(answer) => match answer.as_str() {
                "c" | "continue" | "" => return Ok(true),
                "s" | "skip" => return Ok(false),
                "a" | "abort" => return Err(aborted()),
                "i" | "inspect" => {
                    let heading = format!("inspecting the run before step `{name}`");
                    match crate::inspect::open(host, engine, &heading) {
                        crate::inspect::Decision::Approve(_) => return Ok(true),
                        crate::inspect::Decision::Reject(_) | crate::inspect::Decision::Abort => {
                            return Err(aborted());
                        }
                        crate::inspect::Decision::Back => {}
                    }
                }
                other => host.printer.line(&format!(
                    "  `{other}` is not an answer here: c runs the step, s skips it, i inspects, a aborts"
                )),
            },
        }
    }
}

fn failure_message(failure: &Failure) -> String {
    match failure {
        Failure::Stdlib(error) => error.to_string(),
        Failure::Script(error) => Diagnostic::from_rhai(error).message,
    }
}

fn approve(host: &RunHost, call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let message = call.string(0)?;
    let options = call.options(1, &["confirm", "timeout"])?;
    let gate = Gate {
        message,
        confirm: options.string("confirm")?,
        timeout: options.duration("timeout")?,
        position: call.context.call_position(),
    };
    pass_gate(host, call.context.engine(), &gate)?;
    Ok(Dynamic::UNIT)
}

/// A gate: planned where a write would be (the effect table decides), else
/// the approval verdict, asking on the terminal when it says so. Every
/// decision is an event. `Err` is a rejection.
fn pass_gate(host: &RunHost, call_engine: &rhai::Engine, gate: &Gate) -> Result<(), StdlibError> {
    let at = host.location(gate.position);
    let decided =
        |decision: GateDecision, approver: String, how: &str, channel: Option<Channel>| {
            Event::Gate {
                message: gate.message.clone(),
                confirm: gate.confirm.clone(),
                decision,
                approver,
                how: how.to_owned(),
                at: at.clone(),
                channel,
                comment: None,
                expires: None,
                time: crate::event::now(),
            }
        };
    // Answers at the terminal (below).
    let event = |decision: GateDecision, approver: String, how: &str| {
        decided(decision, approver, how, Some(Channel::Terminal))
    };
    if let Decision::Skip(_) = decide(Effect::Write, host.mode(), false, false) {
        host.record_gate(&gate.message, gate.position, gate.confirm.clone());
        host.emit(&decided(
            GateDecision::Planned,
            String::new(),
            "dry-run",
            None,
        ));
        return Ok(());
    }
    let approved_before = host.take_earlier_approval(&gate.message, &at);
    let facts = approval::Facts {
        policy: &host.approvals,
        protected: host.context.protected,
        context: host.context.name.as_deref(),
        confirm: gate.confirm.as_deref(),
        approved_before,
        four_eyes: host.context.four_eyes,
    };
    let expected = match approval::verdict(&gate.message, &facts) {
        Verdict::Approve { how } => {
            let channel = (!approved_before).then_some(Channel::Flag);
            host.emit(&decided(
                GateDecision::Approved,
                host.actor(),
                &how,
                channel,
            ));
            return Ok(());
        }
        Verdict::FailClosed { how, message, hint } | Verdict::Reject { how, message, hint } => {
            // Refused at the starter's own terminal (four eyes), else by the flags.
            let channel = if host.approvals.interactive && !host.approvals.approve {
                Channel::Terminal
            } else {
                Channel::Flag
            };
            host.emit(&decided(
                GateDecision::Rejected,
                host.actor(),
                &how,
                Some(channel),
            ));
            return Err(StdlibError::Refused {
                message,
                hint: Some(hint),
            });
        }
        Verdict::Wait { timeout, expected } => {
            let timeout = gate.timeout.map_or(timeout, |own| own.min(timeout));
            return wait_for_approval(host, gate, &at, timeout, expected.as_deref());
        }
        Verdict::Ask { expected } => expected,
    };
    let context_line = match &host.context.name {
        Some(name) if host.context.protected => format!("context: {name} (protected)"),
        Some(name) => format!("context: {name}"),
        None => "context: (none)".to_owned(),
    };
    host.printer.line(&format!(
        "\n{} {}\n  {context_line}\n  at: {at}",
        host.printer.styles_bold("approval needed:"),
        host.printer.redactor().mask(&gate.message)
    ));
    // A terminal answer with its comment (an approval's, or a rejection's reason).
    let answered = |decision: GateDecision, how: &str, comment: Option<String>| {
        let mut answer = event(decision, host.actor(), how);
        if let Event::Gate { comment: slot, .. } = &mut answer {
            *slot = comment;
        }
        answer
    };
    let reject = |how: &str, reason: &str| {
        host.emit(&answered(
            GateDecision::Rejected,
            how,
            Some(reason.to_owned()),
        ));
        Err(StdlibError::Refused {
            message: format!("rejected at the gate ({reason}): {}", gate.message),
            hint: None,
        })
    };
    // Approve, after the typed text when one is expected; `None`: it did not match.
    let approve_with = |comment: Option<String>| -> Option<Result<(), StdlibError>> {
        if let Some(text) = &expected {
            let typed = host.ask(&format!("  type `{text}` to approve: "), gate.timeout);
            if !approval::approves(typed.as_deref(), Some(text)) {
                host.printer
                    .line(&format!("  not approved: that was not `{text}`"));
                return None;
            }
        }
        host.emit(&answered(GateDecision::Approved, "terminal", comment));
        Some(Ok(()))
    };
    loop {
        let Some(answer) = host.ask(
            "  [a]pprove  [r]eject  [i]nspect  [p]lan  [?]help: ",
            gate.timeout,
        ) else {
            host.emit(&event(GateDecision::Rejected, host.actor(), "no answer"));
            return Err(StdlibError::Refused {
                message: format!("no answer at the gate: {}", gate.message),
                hint: None,
            });
        };
        match answer.trim().to_ascii_lowercase().as_str() {
            "a" | "approve" | "y" | "yes" => {
                if let Some(result) = approve_with(None) {
                    return result;
                }
            }
            "r" | "reject" | "n" | "no" => loop {
                match host.ask("  reason (required): ", gate.timeout) {
                    Some(reason) if !reason.trim().is_empty() => {
                        return reject("terminal", reason.trim());
                    }
                    Some(_) => host.printer.line("  a rejection needs a reason"),
                    None => return reject("terminal", "no reason given"),
                }
            },
            "i" | "inspect" => {
                let heading = format!("inspecting the run paused at {at}");
                match crate::inspect::open(host, call_engine, &heading) {
                    crate::inspect::Decision::Approve(comment) => {
                        if let Some(result) = approve_with(comment) {
                            return result;
                        }
                    }
                    crate::inspect::Decision::Reject(reason) => {
                        return reject("terminal (inspect)", &reason);
                    }
                    crate::inspect::Decision::Abort => {
                        return reject("terminal (inspect)", "aborted");
                    }
                    crate::inspect::Decision::Back => {}
                }
            }
            "p" | "plan" => host.printer.line(&crate::inspect::done_so_far(host)),
            "?" | "h" | "help" => host.printer.line(GATE_HELP),
            other => host.printer.line(&format!(
                "  `{other}` is not an answer here; `?` explains the choices"
            )),
        }
    }
}

const GATE_HELP: &str = "  a  approve: the run goes on (a protected context asks for its name)
  r  reject: the run stops and its compensations run; a reason is asked for
  i  inspect: a REPL in the paused run, with its variables; :approve, :reject REASON, :abort
  p  what the run changed so far
  ?  this help";

/// `--wait-for-approval`: journal that the run waits, publish the gate for
/// `runbook gates`, and wait (polling, Ctrl-C stops it) for `runbook approve`
/// or `runbook reject` from another shell, or the expiry. See `remote.rs`.
fn wait_for_approval(
    host: &RunHost,
    gate: &Gate,
    at: &str,
    timeout: Duration,
    expected: Option<&str>,
) -> Result<(), StdlibError> {
    use crate::remote::{self, Answered, Outcome, Request};
    let message = host.printer.redactor().mask(&gate.message).into_owned();
    let record = |decision: GateDecision,
                  approver: String,
                  how: &str,
                  channel: Channel,
                  comment: Option<String>,
                  expires: Option<String>| {
        host.emit(&Event::Gate {
            message: gate.message.clone(),
            confirm: gate.confirm.clone(),
            decision,
            approver,
            how: how.to_owned(),
            at: at.to_owned(),
            channel: Some(channel),
            comment,
            expires,
            time: crate::event::now(),
        });
    };
    let Some(run_dir) = host.run_dir() else {
        record(
            GateDecision::Rejected,
            host.actor(),
            "cannot wait without a journal",
            Channel::Flag,
            None,
            None,
        );
        return Err(StdlibError::Refused {
            message: format!("approval needed: {message}"),
            hint: Some(
                "only a run (`runbook run`, `runbook resume`) can wait for `runbook approve`"
                    .into(),
            ),
        });
    };
    let run_id = run_dir
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let started_by = host.actor();
    let since = chrono::Utc::now();
    let expires_at = chrono::Duration::from_std(timeout)
        .ok()
        .and_then(|span| since.checked_add_signed(span))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
    let stamp =
        |time: chrono::DateTime<chrono::Utc>| time.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let pid = std::process::id();
    let request = Request {
        run_id: run_id.clone(),
        gate_id: remote::new_gate_id(),
        message: message.clone(),
        at: at.to_owned(),
        runbook: host
            .file
            .as_ref()
            .map(|file| file.display().to_string())
            .unwrap_or_default(),
        since: stamp(since),
        expires: stamp(expires_at),
        started_by: started_by.clone(),
        context: host.context.name.clone(),
        protected: host.context.protected,
        four_eyes: host.context.four_eyes,
        confirm: expected.map(str::to_owned),
        pid,
        start_ticks: crate::lock::start_ticks(pid),
        journal: None,
    };
    // With the journal in S3 the gate is published and answered there too
    // (from any machine); the S3 decision is then the only one.
    let board = host.remote_store();
    let mut request = request;
    request.journal = board.as_ref().map(|(store, run)| store.url.run_url(run));
    // The journal says the run waits before anyone can answer.
    record(
        GateDecision::Waiting,
        started_by.clone(),
        "--wait-for-approval",
        Channel::Remote,
        None,
        Some(request.expires.clone()),
    );
    let published = remote::open(&run_dir, &request).and_then(|()| match &board {
        Some((store, _)) => store.put_request(&request),
        None => Ok(()),
    });
    if let Err(problem) = published {
        record(
            GateDecision::Rejected,
            started_by,
            "cannot publish the gate",
            Channel::Remote,
            None,
            None,
        );
        return Err(StdlibError::Refused {
            message: format!("cannot wait for approval: {problem}"),
            hint: Some("set RUNBOOK_STATE_DIR to a writable folder".into()),
        });
    }
    let confirm = expected
        .map(|text| format!(" --confirm {text}"))
        .unwrap_or_default();
    host.printer.line(&format!(
        "  from another shell, within {}:\n  approve: runbook approve {run_id}{confirm} [--comment TEXT]\n  reject:  runbook reject {run_id} --reason TEXT{}{}",
        runbook_stdlib::duration::human(timeout),
        match &board {
            Some((store, _)) => format!(
                "\n  from another machine: runbook gates --journal {url}; runbook approve --journal {url} {run_id}{confirm}",
                url = store.url
            ),
            None => String::new(),
        },
        if host.context.four_eyes {
            format!("\n  four eyes: someone other than {started_by} must approve")
        } else {
            String::new()
        }
    ));
    let deadline = Instant::now() + timeout;
    let outcome = match &board {
        Some((store, run)) => remote::wait_on(
            &|| store.read_answer(run, &request.gate_id),
            &|answer| store.claim(run, answer),
            &request,
            deadline,
            &|| host.was_interrupted(),
        ),
        None => remote::wait(&run_dir, &request, deadline, &|| host.was_interrupted()),
    };
    remote::close(&run_dir, &request.gate_id);
    if let Some((store, run)) = &board {
        store.close(run, &request.gate_id);
    }
    let waited = format!(
        "no decision within {}",
        runbook_stdlib::duration::human(timeout)
    );
    let answer = match outcome {
        Outcome::Answered(answer) => answer,
        Outcome::Expired(answer) => answer,
        Outcome::Interrupted => remote::Answer {
            gate_id: request.gate_id.clone(),
            decision: Answered::Interrupted,
            by: started_by.clone(),
            comment: None,
            confirm: None,
            time: crate::event::now(),
        },
        Outcome::Broken(problem) => {
            record(
                GateDecision::Rejected,
                started_by,
                "the decision could not be read",
                Channel::Remote,
                None,
                None,
            );
            return Err(StdlibError::Refused {
                message: format!("cannot read the decision: {problem}"),
                hint: None,
            });
        }
    };
    match answer.decision {
        Answered::Approved => {
            // `runbook approve` checks these before it writes; a decision
            // file that breaks them (written by hand) does not pass.
            let problem = if host.context.four_eyes && answer.by == started_by {
                Some(format!(
                    "four eyes: {} started the run and cannot approve it",
                    answer.by
                ))
            } else if expected.is_some() && answer.confirm.as_deref() != expected {
                Some("the approval does not give the text this gate asks for".to_owned())
            } else {
                None
            };
            let Some(problem) = problem else {
                record(
                    GateDecision::Approved,
                    answer.by,
                    "runbook approve",
                    Channel::Remote,
                    answer.comment,
                    None,
                );
                return Ok(());
            };
            record(
                GateDecision::Rejected,
                answer.by,
                &format!("runbook approve, not accepted: {problem}"),
                Channel::Remote,
                answer.comment,
                None,
            );
            Err(StdlibError::Refused {
                message: format!("approval not accepted ({problem}): {message}"),
                hint: None,
            })
        }
        Answered::Rejected => {
            let reason = answer.comment.clone().unwrap_or_default();
            record(
                GateDecision::Rejected,
                answer.by.clone(),
                "runbook reject",
                Channel::Remote,
                answer.comment,
                None,
            );
            Err(StdlibError::Refused {
                message: format!("rejected by {}: {reason}", answer.by),
                hint: None,
            })
        }
        Answered::Expired => {
            record(
                GateDecision::Expired,
                String::new(),
                &waited,
                Channel::Expired,
                None,
                None,
            );
            Err(StdlibError::Refused {
                message: format!("the gate expired ({waited}): {message}"),
                hint: Some(
                    "`runbook resume RUN --wait-for-approval DURATION` waits at it again"
                        .to_owned(),
                ),
            })
        }
        Answered::Interrupted => {
            record(
                GateDecision::Rejected,
                started_by,
                "interrupted while waiting",
                Channel::Terminal,
                None,
                None,
            );
            Err(StdlibError::Interrupted)
        }
    }
}

/// A message on one line: its first non-empty line, whitespace collapsed (a
/// retry notice is one clean line however the error was written).
fn one_line(message: &str) -> String {
    let first = message
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or_default();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    first.split_whitespace().collect::<Vec<_>>().join(" ")
}
