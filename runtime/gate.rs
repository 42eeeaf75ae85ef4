//! [`RunHost`] implements the stdlib's `Host` for a run: it asks the effect
//! table (`decision.rs`) about every call and wraps the answer with the plan,
//! the fixtures, the step frames (cancellation, timeouts), compensations and
//! the event stream (printer and journal).

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rhai::{Dynamic, FnPtr, Position};
use runbook_stdlib::redact::Redactor;
use runbook_stdlib::{
    CallInfo, Decision as HostDecision, Effect, Host, Level, Outcome, Progress, Secret, StdlibError,
};
use tokio_util::sync::CancellationToken;

use crate::approval::{ApprovalPolicy, Prompter, StdinPrompter};
use crate::context::Context;
use crate::decision::{Decision, Skip, decide};
use crate::event::{CallOutcome, Event, GateDecision, Kind, Mode};
use crate::fixtures::Fixtures;
use crate::header::Header;
use crate::inspect::Paused;
use crate::journal::Journal;
use crate::plan::PlanItem;
use crate::printer::Printer;
use crate::resume::{RecordedCall, ResumeState};
use crate::seal::RunKey;

/// Built-ins that steer the run: they have their own events and are never replayed.
const CONTROL: &[&str] = &[
    "step",
    "approve",
    "on_rollback",
    "retry",
    "wait_until",
    "param",
    "context",
];

/// A step in progress.
#[derive(Debug, Clone)]
struct StepFrame {
    name: String,
    token: CancellationToken,
    timeout: Option<Duration>,
}

/// A compensation registered with `on_rollback`.
#[derive(Debug, Clone)]
pub struct Compensation {
    pub step: String,
    pub closure: FnPtr,
}

/// What a run is: the parts of a [`RunHost`] known before it starts.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    pub mode: Mode,
    pub kind: Kind,
    pub file: Option<PathBuf>,
    pub header: Header,
    pub params: BTreeMap<String, String>,
    pub context: Context,
    pub approvals: ApprovalPolicy,
    pub fixtures: Fixtures,
}

/// Everything a run needs to decide on calls and report them.
pub struct RunHost {
    /// Live or dry-run; a REPL session switches it with `:dry-run on|off`.
    mode: Mutex<Mode>,
    pub kind: Kind,
    pub file: Option<PathBuf>,
    /// The runbook's header and params (a REPL session's `:run` sets them).
    runbook: Mutex<(Header, BTreeMap<String, String>)>,
    /// `:run --step`: ask before every step.
    stepping: AtomicBool,
    pub context: Context,
    pub approvals: ApprovalPolicy,
    pub printer: Arc<Printer>,
    fixtures: Fixtures,
    runtime: tokio::runtime::Handle,
    journal: Mutex<Option<Journal>>,
    journal_failed: AtomicBool,
    /// Compensations are running (they may write even without a journal).
    rolling_back: AtomicBool,
    resume: Mutex<ResumeState>,
    /// Cancelled by Ctrl-C. Replaced by a fresh token while rollbacks run.
    run_token: Mutex<CancellationToken>,
    interrupted: AtomicBool,
    /// How the run ends when interrupted: Ctrl-C (130), SIGTERM (143), SIGHUP (129).
    interrupted_by: Mutex<crate::error::Exit>,
    /// Set whenever the script must stop at its next operation (Ctrl-C, step timeout).
    stop: Arc<AtomicBool>,
    steps: Mutex<Vec<StepFrame>>,
    /// The fan-out in progress (label), for host events.
    fanout: Mutex<Option<String>>,
    step_names: Mutex<HashSet<String>>,
    plan: Mutex<Vec<PlanItem>>,
    /// The placeholder strings offline reads returned (`<k8s::image("backend")>`):
    /// a planned change whose call shows one is marked "unknown until run".
    unknowns: Mutex<Vec<String>>,
    /// `--expect-plan`: the saved plan's changes not yet run, `(number, call)`.
    expected: Mutex<Option<std::collections::VecDeque<crate::saved_plan::Expected>>>,
    compensations: Mutex<Vec<Compensation>>,
    /// Writes that ran (a REPL session's `:plan` lists them).
    executed: Mutex<Vec<Executed>>,
    /// A protected REPL session's writes run without asking until then (`:unlock`).
    unlocked_until: Mutex<Option<Instant>>,
    /// Where questions are asked: stdin, or the REPL's line editor.
    prompter: Mutex<Arc<dyn Prompter>>,
    /// The run's scope where it paused at a gate or step (for `inspect`).
    paused: Arc<Paused>,
    /// The run id and its key, for sealing values that hold a secret.
    sealing: Mutex<Sealing>,
    /// Set by `decide` for a call answered from the journal, so that
    /// `finished` does not journal it a second time.
    replayed_call: AtomicBool,
    /// Why the run stopped where nothing may be rolled back (a resume that
    /// diverged from its journal, or stopped before a `once` step).
    halted: Mutex<Option<String>>,
}

/// What sealing needs: the run id (the AEAD's associated data) and the
/// run's key, made on first use.
#[derive(Debug, Default)]
struct Sealing {
    run_id: String,
    key: Option<Arc<RunKey>>,
    problem_shown: bool,
}

/// A write that ran.
#[derive(Debug, Clone)]
pub struct Executed {
    pub call: String,
    pub at: String,
    pub time: String,
}

impl RunHost {
    pub fn new(setup: Setup, printer: Arc<Printer>, runtime: tokio::runtime::Handle) -> Self {
        RunHost {
            mode: Mutex::new(setup.mode),
            kind: setup.kind,
            file: setup.file,
            runbook: Mutex::new((setup.header, setup.params)),
            stepping: AtomicBool::new(false),
            context: setup.context,
            approvals: setup.approvals,
            printer,
            fixtures: setup.fixtures,
            runtime,
            journal: Mutex::new(None),
            journal_failed: AtomicBool::new(false),
            rolling_back: AtomicBool::new(false),
            resume: Mutex::new(ResumeState::default()),
            run_token: Mutex::new(CancellationToken::new()),
            interrupted: AtomicBool::new(false),
            interrupted_by: Mutex::new(crate::error::Exit::Interrupted),
            stop: Arc::new(AtomicBool::new(false)),
            steps: Mutex::new(Vec::new()),
            fanout: Mutex::new(None),
            step_names: Mutex::new(HashSet::new()),
            plan: Mutex::new(Vec::new()),
            unknowns: Mutex::new(Vec::new()),
            expected: Mutex::new(None),
            compensations: Mutex::new(Vec::new()),
            executed: Mutex::new(Vec::new()),
            unlocked_until: Mutex::new(None),
            prompter: Mutex::new(Arc::new(StdinPrompter)),
            paused: Arc::new(Paused::default()),
            sealing: Mutex::new(Sealing::default()),
            replayed_call: AtomicBool::new(false),
            halted: Mutex::new(None),
        }
    }

    /// Seal values of run `run_id` with `key` (resume), or with a key made
    /// on first use (`None`).
    pub fn set_sealing(&self, run_id: &str, key: Option<Arc<RunKey>>) {
        let mut sealing = lock(&self.sealing);
        sealing.run_id = run_id.to_owned();
        sealing.key = key;
    }

    /// The run's key, made now if it has none yet.
    fn run_key(&self) -> Option<(String, Arc<RunKey>)> {
        let mut sealing = lock(&self.sealing);
        if sealing.run_id.is_empty() {
            return None;
        }
        if sealing.key.is_none() {
            match RunKey::load(&sealing.run_id).and_then(|key| match key {
                Some(key) => Ok(key),
                None => RunKey::create(&sealing.run_id),
            }) {
                Ok(key) => sealing.key = Some(Arc::new(key)),
                Err(error) => {
                    if !std::mem::replace(&mut sealing.problem_shown, true) {
                        self.printer.line(&format!(
                            "warning: {error}; values holding a secret are journaled masked only, and a resume will not get them back"
                        ));
                    }
                    return None;
                }
            }
        }
        let key = sealing.key.clone()?;
        Some((sealing.run_id.clone(), key))
    }

    /// A value as the journal keeps it: masked JSON, and sealed when it holds a secret.
    pub fn journal_value(&self, value: &Dynamic) -> (Option<serde_json::Value>, Option<String>) {
        if value.is_unit() {
            return (None, None);
        }
        let shown = runbook_stdlib::values::to_json(value, false);
        if !runbook_stdlib::values::contains_secret(value) {
            return (Some(shown), None);
        }
        let sealed = self.run_key().and_then(|(run_id, key)| {
            key.seal_value(&run_id, value)
                .map_err(|error| self.printer.line(&format!("warning: {error}")))
                .ok()
        });
        (Some(shown), sealed)
    }

    /// The run ended well: its key is not needed any more.
    pub fn discard_key(&self) {
        let sealing = lock(&self.sealing);
        match &sealing.key {
            Some(key) => key.discard(),
            None if !sealing.run_id.is_empty() => {
                let _ = std::fs::remove_file(crate::seal::key_path(&sealing.run_id));
            }
            None => {}
        }
    }

    /// Stop the run where it must not roll back: the error is `message`.
    pub fn halt(&self, message: &str) {
        *lock(&self.halted) = Some(message.to_owned());
    }

    /// Why the run was halted, if it was.
    pub fn halted(&self) -> Option<String> {
        lock(&self.halted).clone()
    }

    /// Whether a resume is still answering calls from the journal.
    pub fn replaying(&self) -> bool {
        !lock(&self.resume).calls.is_empty()
    }

    /// Whether `step` completed before the resume point (its body is replayed).
    pub fn replays_step(&self, step: &str) -> bool {
        lock(&self.resume).completed.contains_key(step)
    }

    /// Whether `step` started in an earlier attempt and never ended.
    pub fn was_interrupted_in(&self, step: &str) -> bool {
        lock(&self.resume).interrupted.contains(step)
    }

    /// A step that is not replayed starts: if the journal still holds calls,
    /// the runbook no longer does what the run did.
    pub fn check_replay_done(&self, step: &str, position: Position) -> Result<(), StdlibError> {
        let next = lock(&self.resume).calls.front().cloned();
        match next {
            None => Ok(()),
            Some(recorded) => {
                Err(self.diverged(&format!("it starts step `{step}`"), &recorded, position))
            }
        }
    }

    fn diverged(&self, what: &str, recorded: &RecordedCall, position: Position) -> StdlibError {
        let message = format!(
            "the runbook diverged from its journal at {}: {what} where the journal has `{}({})` (from {})",
            self.location(position),
            recorded.function,
            recorded.args.join(", "),
            recorded.at
        );
        self.halt(&message);
        StdlibError::Usage {
            message,
            hint: Some(
                "the runbook, its params or what it read changed since the run; nothing was rolled back and the run stays as it was: finish it by hand, or start a new run".into(),
            ),
        }
    }

    /// During a resume: the journal's answer to this call, if it has one.
    fn replay(&self, call: &CallInfo) -> Option<HostDecision> {
        let mut resume = lock(&self.resume);
        let Some(recorded) = resume.calls.front().cloned() else {
            drop(resume);
            // Past the journal: a completed step must not make new calls.
            let steps = lock(&self.steps).clone();
            let completed = steps.iter().find(|frame| self.replays_step(&frame.name))?;
            let message = format!(
                "the runbook diverged from its journal at {}: step `{}` completed in the run without calling `{}`",
                self.location(call.position),
                completed.name,
                self.printer.redactor().mask(&call.signature())
            );
            self.halt(&message);
            self.replayed_call.store(true, Ordering::SeqCst);
            return Some(HostDecision::Deny(StdlibError::Usage {
                message,
                hint: Some("the runbook changed since the run; nothing was rolled back: finish it by hand, or start a new run".into()),
            }));
        };
        let redactor = self.printer.redactor();
        let same = recorded.function == call.function
            && recorded.args.len() == call.args.len()
            && recorded
                .args
                .iter()
                .zip(&call.args)
                .all(|(journaled, given)| redactor.mask(journaled) == redactor.mask(given));
        if !same {
            drop(resume);
            // Not journaled: a later resume must not expect this call.
            self.replayed_call.store(true, Ordering::SeqCst);
            let what = format!("it calls `{}`", redactor.mask(&call.signature()));
            return Some(HostDecision::Deny(self.diverged(
                &what,
                &recorded,
                call.position,
            )));
        }
        resume.calls.pop_front();
        let left = resume.calls.len();
        drop(resume);
        self.replayed_call.store(true, Ordering::SeqCst);
        if left == 0 {
            self.printer
                .line("resume: replayed the journal; from here on calls run");
        }
        if let Err(message) = &recorded.outcome {
            return Some(HostDecision::Deny(StdlibError::message(message.clone())));
        }
        let value = match (&recorded.sealed, &recorded.result) {
            (Some(blob), _) => {
                let opened = self
                    .run_key()
                    .ok_or(crate::seal::SealError::BadKey)
                    .and_then(|(run_id, key)| key.open_value(&run_id, blob, redactor));
                match opened {
                    Ok(value) => value,
                    Err(error) => {
                        let message = format!(
                            "cannot replay `{}` (from {}): {error}",
                            recorded.function, recorded.at
                        );
                        self.halt(&message);
                        return Some(HostDecision::Deny(StdlibError::message(message)));
                    }
                }
            }
            (None, Some(result)) => runbook_stdlib::values::from_json(result.clone()),
            (None, None) => Dynamic::UNIT,
        };
        Some(HostDecision::Skip(value))
    }

    /// A param given to the run, and the header's spec of it.
    pub fn param(&self, name: &str) -> (Option<String>, Option<crate::header::ParamSpec>) {
        let runbook = lock(&self.runbook);
        (runbook.1.get(name).cloned(), runbook.0.param(name).cloned())
    }

    /// A REPL session's `:run FILE k=v [--step]`: the runbook's header and
    /// params from now on, and whether to ask before every step.
    pub fn set_runbook(&self, header: Header, params: BTreeMap<String, String>, stepping: bool) {
        *lock(&self.runbook) = (header, params);
        self.stepping.store(stepping, Ordering::SeqCst);
    }

    /// Whether to ask before every step (`:run --step`).
    pub fn stepping(&self) -> bool {
        self.stepping.load(Ordering::SeqCst)
    }

    /// Where the run paused, for `inspect`.
    pub fn paused(&self) -> &Arc<Paused> {
        &self.paused
    }

    /// Live or dry-run (a REPL session may switch).
    pub fn mode(&self) -> Mode {
        *lock(&self.mode)
    }

    /// `:dry-run on|off` in a REPL session.
    pub fn set_mode(&self, mode: Mode) {
        *lock(&self.mode) = mode;
    }

    /// Ask questions through `prompter` from now on (the REPL's line editor).
    pub fn set_prompter(&self, prompter: Arc<dyn Prompter>) {
        *lock(&self.prompter) = prompter;
    }

    /// Ask the person at the terminal; `None` when nobody answered.
    pub fn ask(&self, prompt: &str, timeout: Option<Duration>) -> Option<String> {
        let prompter = Arc::clone(&*lock(&self.prompter));
        self.printer.suspend(|| prompter.ask(prompt, timeout))
    }

    /// The writes that ran so far.
    pub fn executed(&self) -> Vec<Executed> {
        lock(&self.executed).clone()
    }

    /// How long a protected REPL session's writes still run without asking.
    pub fn unlocked_for(&self) -> Option<Duration> {
        let until = (*lock(&self.unlocked_until))?;
        until.checked_duration_since(Instant::now())
    }

    /// Let writes run without asking for `duration` (`:unlock`), or lock again (`None`).
    pub fn unlock(&self, duration: Option<Duration>) {
        *lock(&self.unlocked_until) = duration.map(|duration| Instant::now() + duration);
    }

    /// A write in a protected REPL session: the typed context name first,
    /// unless the session is unlocked. Every answer is a gate event.
    fn confirm_write(&self, call: &CallInfo) -> Result<(), StdlibError> {
        let name = self.context.name.clone().unwrap_or_default();
        let signature = self.printer.redactor().mask(&call.signature()).into_owned();
        let at = self.location(call.position);
        let gate = |decision: GateDecision, how: &str| Event::Gate {
            message: format!("write: {signature}"),
            confirm: Some(name.clone()),
            decision,
            approver: crate::identity::approver(),
            how: how.to_owned(),
            at: at.clone(),
            // Answered at the terminal, or (refused without one) by how the session runs.
            channel: Some(if self.approvals.interactive {
                crate::event::Channel::Terminal
            } else {
                crate::event::Channel::Flag
            }),
            comment: None,
            expires: None,
            time: crate::event::now(),
        };
        if let Some(left) = self.unlocked_for() {
            self.record(&gate(
                GateDecision::Approved,
                &format!("unlocked ({} left)", runbook_stdlib::duration::human(left)),
            ));
            return Ok(());
        }
        if !self.approvals.interactive {
            self.emit(&gate(GateDecision::Rejected, "no terminal"));
            return Err(StdlibError::Refused {
                message: format!(
                    "`{signature}` changes protected context `{name}`, and there is no terminal to confirm it on"
                ),
                hint: Some("run the REPL on a terminal, or use a runbook with `runbook run --approve --confirm`".into()),
            });
        }
        let prompt = format!(
            "{} {signature} changes protected context `{name}`\n  type `{name}` to run it (`:unlock 10m` skips this for a while): ",
            self.printer.styles_bold("write:")
        );
        let answer = self.ask(&prompt, None);
        if crate::approval::approves(answer.as_deref(), Some(&name)) {
            self.emit(&gate(GateDecision::Approved, "terminal"));
            Ok(())
        } else {
            self.emit(&gate(GateDecision::Rejected, "terminal"));
            Err(StdlibError::Refused {
                message: format!("not run: `{signature}` was not confirmed"),
                hint: Some(format!(
                    "type `{name}` exactly to run a write in this context"
                )),
            })
        }
    }

    /// From now on every event is also written to `journal`.
    pub fn attach_journal(&self, journal: Journal) {
        *lock(&self.journal) = Some(journal);
    }

    /// The run's folder in the state dir (`runs/RUN`), where its journal is
    /// and where `--wait-for-approval` puts its gate requests; `None` before
    /// a journal is attached.
    pub fn run_dir(&self) -> Option<PathBuf> {
        lock(&self.journal)
            .as_ref()
            .and_then(|journal| journal.path().parent().map(std::path::Path::to_path_buf))
    }

    /// The S3 store and run id when the journal also goes to S3 (gates are
    /// then answered through it).
    pub fn remote_store(&self) -> Option<(crate::journal_store::Store, String)> {
        lock(&self.journal).as_ref().and_then(Journal::remote_store)
    }

    /// Close the journal (at the end of the run).
    pub fn detach_journal(&self) -> Option<Journal> {
        lock(&self.journal).take()
    }

    /// Resume: completed steps and earlier approvals from the journal.
    pub fn set_resume(&self, state: ResumeState) {
        *lock(&self.resume) = state;
    }

    /// Whether this gate was approved before the resume point (each approval counts once).
    pub fn take_earlier_approval(&self, message: &str, at: &str) -> bool {
        lock(&self.resume).take_gate(message, at)
    }

    /// The flag the engine's progress hook watches.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    /// SIGTERM or SIGHUP: as Ctrl-C, ending with `exit` (143, 129).
    pub fn interrupt_by(&self, exit: crate::error::Exit) {
        *lock(&self.interrupted_by) = exit;
        self.interrupt();
    }

    /// The exit of an interrupted run (130 unless a signal said otherwise).
    pub fn interrupted_exit(&self) -> crate::error::Exit {
        *lock(&self.interrupted_by)
    }

    /// Ctrl-C: cancel the call in flight and stop the script.
    pub fn interrupt(&self) {
        self.interrupted.store(true, Ordering::SeqCst);
        self.stop.store(true, Ordering::SeqCst);
        lock(&self.run_token).cancel();
    }

    pub fn was_interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }

    /// Before compensations run: a fresh token and a cleared stop flag, so that
    /// rollback calls can do their work after a Ctrl-C.
    pub fn begin_rollback(&self) {
        self.rolling_back.store(true, Ordering::SeqCst);
        // Compensations run for real, even when the run stopped mid-replay.
        let mut resume = lock(&self.resume);
        resume.calls.clear();
        resume.completed.clear();
        drop(resume);
        *lock(&self.run_token) = CancellationToken::new();
        lock(&self.steps).clear();
        self.stop.store(false, Ordering::SeqCst);
    }

    /// REPL: each input starts fresh (no interrupt pending, step names reusable).
    pub fn reset_for_next_input(&self) {
        self.interrupted.store(false, Ordering::SeqCst);
        *lock(&self.run_token) = CancellationToken::new();
        lock(&self.steps).clear();
        lock(&self.step_names).clear();
        self.stop.store(false, Ordering::SeqCst);
    }

    /// Show an event and write it to the journal.
    pub fn emit(&self, event: &Event) {
        self.printer.emit(event);
        self.record(event);
    }

    /// Write an event to the journal only (calls of local functions).
    pub fn record(&self, event: &Event) {
        let sync = matches!(
            event,
            Event::StepStart { .. }
                | Event::StepEnd { .. }
                | Event::Gate { .. }
                | Event::Rollback { .. }
                | Event::End { .. }
                | Event::Resume { .. }
        );
        let mut journal = lock(&self.journal);
        if let Some(journal) = journal.as_mut()
            && let Err(error) = journal.append(event, sync)
            && !self.journal_failed.swap(true, Ordering::SeqCst)
        {
            self.printer.line(&format!(
                "warning: {error}; the journal of this run is incomplete"
            ));
        }
    }

    /// `file:line:col` of a script position.
    pub fn location(&self, position: Position) -> String {
        let file = self
            .file
            .as_ref()
            .map_or_else(|| "<repl>".to_owned(), |file| file.display().to_string());
        match (position.line(), position.position()) {
            (Some(line), Some(column)) => format!("{file}:{line}:{column}"),
            (Some(line), None) => format!("{file}:{line}"),
            _ => file,
        }
    }

    pub fn current_step(&self) -> Option<String> {
        lock(&self.steps).last().map(|frame| frame.name.clone())
    }

    /// Enter a step: its name must be new in this run. Returns the step's token.
    pub fn enter_step(
        &self,
        name: &str,
        timeout: Option<Duration>,
    ) -> Result<CancellationToken, StdlibError> {
        if !lock(&self.step_names).insert(name.to_owned()) {
            return Err(StdlibError::usage(
                format!("step `{name}` ran twice; step names are unique in a run"),
                "give each step its own name (e.g. add the host or index: `\"restart \" + host`)",
            ));
        }
        let parent = self.cancellation();
        let token = parent.child_token();
        lock(&self.steps).push(StepFrame {
            name: name.to_owned(),
            token: token.clone(),
            timeout,
        });
        Ok(token)
    }

    /// A retry of a step: a fresh token for the same frame.
    pub fn retry_step(&self, name: &str) -> CancellationToken {
        let parent = {
            let steps = lock(&self.steps);
            let index = steps.iter().rposition(|frame| frame.name == name);
            index
                .and_then(|index| index.checked_sub(1))
                .map(|index| steps[index].token.clone())
        }
        .unwrap_or_else(|| lock(&self.run_token).clone());
        let token = parent.child_token();
        if let Some(frame) = lock(&self.steps)
            .iter_mut()
            .rev()
            .find(|frame| frame.name == name)
        {
            frame.token = token.clone();
        }
        self.refresh_stop();
        token
    }

    /// Leave a step (whatever its outcome).
    pub fn leave_step(&self, name: &str) {
        let mut steps = lock(&self.steps);
        if let Some(index) = steps.iter().rposition(|frame| frame.name == name) {
            steps.truncate(index);
        }
        drop(steps);
        self.refresh_stop();
    }

    /// A step's timeout passed: stop the script and cancel its calls.
    pub fn time_out(&self, token: &CancellationToken) {
        token.cancel();
        self.stop.store(true, Ordering::SeqCst);
    }

    fn refresh_stop(&self) {
        let stop = self.was_interrupted()
            || lock(&self.steps)
                .iter()
                .any(|frame| frame.token.is_cancelled());
        self.stop.store(stop, Ordering::SeqCst);
    }

    pub fn add_compensation(&self, closure: FnPtr) {
        let step = self.current_step().unwrap_or_else(|| "(run)".to_owned());
        lock(&self.compensations).push(Compensation { step, closure });
    }

    /// Compensations, newest first, leaving none registered.
    pub fn take_compensations(&self) -> Vec<Compensation> {
        // Rollbacks are not in a reviewed plan, and they must run.
        *lock(&self.expected) = None;
        let mut compensations = std::mem::take(&mut *lock(&self.compensations));
        compensations.reverse();
        compensations
    }

    pub fn record_gate(&self, message: &str, position: Position, confirm: Option<String>) {
        lock(&self.plan).push(PlanItem::Gate {
            message: message.to_owned(),
            at: self.location(position),
            confirm,
        });
    }

    /// `--expect-plan`: every write of this run must be the next change of
    /// the saved plan, or the run stops before it.
    pub fn expect_changes(&self, changes: Vec<crate::saved_plan::Expected>) {
        *lock(&self.expected) = Some(changes.into());
    }

    /// With `--expect-plan`: refuse a write that is not the saved plan's next change.
    fn check_expected(&self, call: &CallInfo) -> Result<(), StdlibError> {
        let mut expected = lock(&self.expected);
        let Some(queue) = expected.as_mut() else {
            return Ok(());
        };
        let signature = self.printer.redactor().mask(&call.signature()).into_owned();
        match queue.pop_front() {
            Some(planned) if planned.matches(&call.function, &signature, &call.values) => Ok(()),
            Some(planned) => Err(StdlibError::usage(
                format!(
                    "not the reviewed plan: change {} was `{}`, this run would make `{signature}`{}",
                    planned.number,
                    planned.call,
                    planned.difference(&call.function, &call.values)
                ),
                "stopped before the write; make a new plan with `runbook run --dry-run --plan-out FILE` and review it",
            )),
            None => Err(StdlibError::usage(
                format!(
                    "not the reviewed plan: it has no change left, this run would make `{signature}`"
                ),
                "stopped before the write; make a new plan with `runbook run --dry-run --plan-out FILE` and review it",
            )),
        }
    }

    pub fn plan(&self) -> Vec<PlanItem> {
        lock(&self.plan).clone()
    }

    pub fn planned_changes(&self) -> usize {
        lock(&self.plan)
            .iter()
            .filter(|item| matches!(item, PlanItem::Change { .. }))
            .count()
    }

    pub fn runtime_handle(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    pub fn log_warn(&self, message: &str) {
        Host::log(self, Level::Warn, message);
    }

    pub fn run_token(&self) -> CancellationToken {
        lock(&self.run_token).clone()
    }
}

impl RunHost {
    /// The effect table's answer for this call in this run.
    fn decision(&self, call: &CallInfo) -> Decision {
        decide(
            call.effect,
            self.mode(),
            self.fixtures.has(call),
            call.has_preview,
        )
    }

    /// A write that is not run: a numbered change in the plan.
    fn plan_change(&self, call: &CallInfo) {
        let signature = self.printer.redactor().mask(&call.signature()).into_owned();
        let unknown: Vec<String> = lock(&self.unknowns)
            .iter()
            .filter(|text| {
                // Without its closing `>`, so that a property of an unknown
                // (`<k8s::get(..).data.previous>`) counts as that read.
                let open = text.strip_suffix('>').unwrap_or(text);
                // As part of a string argument the name is quoted: `"<f(\"x\")>"`.
                let quoted = serde_json::Value::String(open.to_owned()).to_string();
                let escaped = quoted.trim_matches('"');
                signature.contains(open) || signature.contains(escaped)
            })
            .cloned()
            .collect();
        lock(&self.plan).push(PlanItem::Change {
            function: call.function.clone(),
            call: signature,
            args: call.values.clone(),
            at: self.location(call.position),
            step: self.current_step(),
            detail: None,
            unknown,
        });
    }

    /// The diff of the newest planned change, if its backend gave one.
    fn last_plan_detail(&self) -> Option<String> {
        lock(&self.plan).iter().rev().find_map(|item| match item {
            PlanItem::Change { detail, .. } => Some(detail.clone()),
            PlanItem::Gate { .. } => None,
        })?
    }

    /// The placeholder of an offline read no fixture answers, with every
    /// string in it naming where it came from: `<k8s::image("backend")>`,
    /// `<shell::run("uname").stdout>`, so a plan never shows `""` for a value
    /// that is only known when the run reads it.
    fn named_placeholder(&self, call: &CallInfo, value: Dynamic) -> Dynamic {
        let signature = self.printer.redactor().mask(&call.signature()).into_owned();
        let mut names = Vec::new();
        let value = name_strings(value, &signature, &mut names);
        let mut unknowns = lock(&self.unknowns);
        for name in names {
            if !unknowns.contains(&name) {
                unknowns.push(name);
            }
        }
        value
    }
}

/// `value` with each empty string in it replaced by `<path>` (the call's
/// signature, then `.field` for map fields), and each map of no declared
/// shape by an unknown of that path. Each name is pushed to `names`.
fn name_strings(value: Dynamic, path: &str, names: &mut Vec<String>) -> Dynamic {
    if value.is_string() {
        if value.clone().into_string().unwrap_or_default().is_empty() {
            let name = format!("<{path}>");
            names.push(name.clone());
            return Dynamic::from(name);
        }
        return value;
    }
    if value.is_map() {
        let Some(map) = value.clone().try_cast::<rhai::Map>() else {
            return value;
        };
        // A map of no declared shape (a Kubernetes object, a JSON body):
        // any property the script reads is unknown too.
        if map.is_empty() {
            let unknown = runbook_stdlib::unknown::Unknown::new(path);
            names.push(unknown.to_string());
            return Dynamic::from(unknown);
        }
        let named: rhai::Map = map
            .into_iter()
            .map(|(key, item)| {
                let item = name_strings(item, &format!("{path}.{key}"), names);
                (key, item)
            })
            .collect();
        return Dynamic::from_map(named);
    }
    value
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Host for RunHost {
    fn decide(&self, call: &CallInfo, placeholder: &dyn Fn() -> Dynamic) -> HostDecision {
        if !CONTROL.contains(&call.function.as_str())
            && let Some(answer) = self.replay(call)
        {
            return answer;
        }
        // No journal, no writes: what is not recorded cannot be resumed or audited.
        if call.effect == Effect::Write
            && self.journal_failed.load(Ordering::SeqCst)
            && !self.rolling_back.load(Ordering::SeqCst)
            && self.mode() == Mode::Live
        {
            return HostDecision::Deny(StdlibError::failed(
                format!(
                    "not run: `{}` is a write, and the journal of this run cannot be written",
                    self.printer.redactor().mask(&call.signature())
                ),
                "free space in the state dir (or point RUNBOOK_STATE_DIR at a writable folder), then `runbook resume RUN`: a write is never made without a journal line",
            ));
        }
        // An S3 journal: before a write, make sure this machine still holds
        // the run (a machine that took it over fences this one here).
        if call.effect == Effect::Write
            && self.mode() == Mode::Live
            && let Some(journal) = lock(&self.journal).as_ref()
            && let Err(error) = journal.fence()
        {
            return HostDecision::Deny(StdlibError::failed(
                format!(
                    "not run: `{}` is a write, and {error}",
                    self.printer.redactor().mask(&call.signature())
                ),
                "a write is never made without a journal line; check the S3 endpoint, then `runbook resume s3://...`",
            ));
        }
        match self.decision(call) {
            Decision::Run
                if call.effect == Effect::Write
                    && self.kind == Kind::Repl
                    && self.context.protected =>
            {
                match self.confirm_write(call) {
                    Ok(()) => HostDecision::Run,
                    Err(error) => HostDecision::Deny(error),
                }
            }
            Decision::Run if call.effect == Effect::Write => match self.check_expected(call) {
                Ok(()) => HostDecision::Run,
                Err(error) => HostDecision::Deny(error),
            },
            Decision::Run => HostDecision::Run,
            Decision::Preview => {
                self.plan_change(call);
                HostDecision::Preview
            }
            Decision::Skip(Skip::Planned) => {
                self.plan_change(call);
                // Offline, a recorded fixture stands for what the backend's own
                // dry run answered online (`runbook fixtures record`).
                let value = placeholder();
                match self.fixtures.lookup(call, value.clone()) {
                    Some(answer) if self.mode() == Mode::DryRunOffline => {
                        HostDecision::Skip(answer)
                    }
                    // Otherwise what a write not run returns is unknown until
                    // the run, and named so: `<shell::run("mktemp -d").stdout>`.
                    _ => HostDecision::Skip(self.named_placeholder(call, value)),
                }
            }
            Decision::Skip(Skip::Fixture) => {
                let value = placeholder();
                match self.fixtures.lookup(call, value.clone()) {
                    Some(answer) => HostDecision::Skip(answer),
                    None => HostDecision::Skip(self.named_placeholder(call, value)),
                }
            }
            Decision::Skip(Skip::Placeholder) => {
                HostDecision::Skip(self.named_placeholder(call, placeholder()))
            }
        }
    }

    fn finished(&self, call: &CallInfo, outcome: Outcome<'_>, elapsed: Duration) {
        // Control built-ins have their own events (step, gate, rollback);
        // a replayed call is in the journal already.
        if CONTROL.contains(&call.function.as_str())
            || self.replayed_call.swap(false, Ordering::SeqCst)
        {
            return;
        }
        if call.effect == Effect::Write && matches!(outcome, Outcome::Ok(_)) {
            lock(&self.executed).push(Executed {
                call: self.printer.redactor().mask(&call.signature()).into_owned(),
                at: self.location(call.position),
                time: crate::event::now(),
            });
        }
        let (result, sealed, redacted) = match outcome {
            Outcome::Ok(value) if self.mode() == Mode::Live => {
                let (result, sealed) = self.journal_value(value);
                let redacted = runbook_stdlib::values::contains_secret(value);
                (result, sealed, redacted)
            }
            // A dry-run's reads keep their results too (for `runbook fixtures
            // record`), secrets masked as `***` and not sealed.
            Outcome::Ok(value) | Outcome::Previewed(value)
                if call.effect == Effect::Read || matches!(outcome, Outcome::Previewed(_)) =>
            {
                let shown =
                    (!value.is_unit()).then(|| runbook_stdlib::values::to_json(value, false));
                (shown, None, runbook_stdlib::values::contains_secret(value))
            }
            _ => (None, None, false),
        };
        let (outcome, error) = match outcome {
            Outcome::Ok(_) => (CallOutcome::Ok, None),
            Outcome::Err(message) => (CallOutcome::Error, Some(message.to_owned())),
            Outcome::Previewed(_) => (CallOutcome::Planned, None),
            Outcome::Skipped => match self.decision(call) {
                Decision::Skip(Skip::Fixture) => (CallOutcome::Fixture, None),
                Decision::Skip(Skip::Placeholder) => (CallOutcome::Placeholder, None),
                Decision::Skip(Skip::Planned) | Decision::Preview | Decision::Run => {
                    (CallOutcome::Planned, None)
                }
            },
        };
        let event = Event::Call {
            function: call.function.clone(),
            effect: call.effect,
            args: call.args.clone(),
            arguments: call.values.clone(),
            at: self.location(call.position),
            step: self.current_step(),
            outcome,
            duration_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            error,
            result,
            diff: (outcome == CallOutcome::Planned)
                .then(|| self.last_plan_detail())
                .flatten(),
            redacted,
            sealed,
            time: crate::event::now(),
        };
        if call.effect == Effect::Local {
            self.record(&event);
        } else {
            self.emit(&event);
        }
    }

    fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    fn cancellation(&self) -> CancellationToken {
        lock(&self.steps).last().map_or_else(
            || lock(&self.run_token).clone(),
            |frame| frame.token.clone(),
        )
    }

    fn cancel_reason(&self) -> StdlibError {
        if self.was_interrupted() {
            return StdlibError::Interrupted;
        }
        let steps = lock(&self.steps);
        match steps.iter().find(|frame| frame.token.is_cancelled()) {
            Some(frame) => StdlibError::Timeout(
                frame
                    .timeout
                    .map_or_else(|| "its timeout".to_owned(), runbook_stdlib::duration::human),
            ),
            None => StdlibError::Interrupted,
        }
    }

    fn redactor(&self) -> &Redactor {
        self.printer.redactor()
    }

    fn context(&self) -> Dynamic {
        self.context.to_dynamic()
    }

    fn secret(&self, name: &str) -> Result<Secret, StdlibError> {
        let secret = self.context.secret(name)?;
        for text in secret.secret_texts() {
            self.redactor().add(text);
        }
        Ok(secret)
    }

    fn plan_number(&self) -> Option<usize> {
        let plan = lock(&self.plan);
        (!plan.is_empty()).then_some(plan.len())
    }

    fn plan_detail(&self, detail: &str) {
        let detail = self.redactor().mask(detail).into_owned();
        if let Some(PlanItem::Change { detail: slot, .. }) = lock(&self.plan)
            .iter_mut()
            .rev()
            .find(|item| matches!(item, PlanItem::Change { .. }))
        {
            *slot = Some(detail);
        }
    }

    fn progress(&self, progress: Progress<'_>) {
        match progress {
            Progress::Start { label, total } => {
                *lock(&self.fanout) = Some(label.to_owned());
                self.printer.fanout_start(label, total);
            }
            Progress::Item {
                target,
                ok,
                code,
                duration,
                error,
                output_tail,
                connection,
                killed,
            } => {
                let function = lock(&self.fanout).clone().unwrap_or_default();
                let function = function.split('(').next().unwrap_or_default().to_owned();
                self.emit(&Event::Host {
                    function,
                    host: target.to_owned(),
                    ok,
                    code,
                    duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
                    error: error.map(str::to_owned),
                    step: self.current_step(),
                    output_tail: output_tail.to_owned(),
                    connection: connection.map(str::to_owned),
                    killed,
                    time: crate::event::now(),
                });
            }
            Progress::End {
                ok,
                failed,
                skipped,
            } => {
                *lock(&self.fanout) = None;
                self.printer.fanout_end(ok, failed, skipped);
            }
        }
    }

    fn actor(&self) -> String {
        crate::identity::approver()
    }

    fn log(&self, level: Level, message: &str) {
        self.emit(&Event::Log {
            level: level.into(),
            message: self.redactor().mask(message).into_owned(),
            step: self.current_step(),
            time: crate::event::now(),
        });
    }
}
