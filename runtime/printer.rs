//! All terminal output goes through the [`Printer`]. It renders the event
//! stream: for people on stderr (spinners on a terminal, timestamped lines
//! otherwise), or as JSON lines on stdout with `--output json`. Every string
//! passes the redactor on its way out: an event's values are masked before
//! they are encoded or laid out (JSON escaping, indentation), and the text is
//! masked again as it is written. Control characters in what an event
//! carries (approver names, step names, command output) are escaped in
//! human output, so no external text can move the cursor, colour the
//! screen or start a line that looks like runbook's own.

use std::borrow::Cow;
use std::io::{IsTerminal, Write};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use console::Style;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use runbook_stdlib::redact::Redactor;

use runbook_stdlib::Effect;

use crate::error::Exit;
use crate::event::{CallOutcome, Channel, Event, GateDecision, Kind, LogLevel, Mode, StepStatus};
use crate::plan::PlanItem;

/// `--output`: who reads the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum OutputFormat {
    /// Progress and results for people, on stderr; script `print` output on stdout.
    #[default]
    Human,
    /// One JSON event per line on stdout, nothing else there.
    Json,
}

/// One line of the end-of-run summary.
#[derive(Debug, Clone)]
struct SummaryLine {
    step: String,
    status: StepStatus,
    duration_ms: u64,
}

pub struct Printer {
    format: OutputFormat,
    redactor: Redactor,
    interactive: bool,
    verbose: bool,
    styles: Styles,
    progress: MultiProgress,
    spinners: Mutex<Vec<(String, ProgressBar)>>,
    summary: Mutex<Vec<SummaryLine>>,
    /// `runbook show`: lines go to stdout, stamped with the event's own time.
    replay: Option<Mutex<String>>,
    /// The fan-out in progress: its bar and the failures to list at its end.
    fanout: Mutex<Option<Fanout>>,
}

struct Fanout {
    bar: ProgressBar,
    ok: u64,
    failed: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
struct Styles {
    ok: Style,
    bad: Style,
    warn: Style,
    dim: Style,
    bold: Style,
}

impl Styles {
    fn new(color: bool) -> Self {
        let style = |s: Style| if color { s } else { Style::new() };
        Styles {
            ok: style(Style::new().green()),
            bad: style(Style::new().red().bold()),
            warn: style(Style::new().yellow()),
            dim: style(Style::new().dim()),
            bold: style(Style::new().bold()),
        }
    }
}

impl Printer {
    pub fn new(format: OutputFormat, redactor: Redactor, verbose: bool) -> Self {
        // A dumb terminal cannot redraw spinners: treat it like a pipe.
        let dumb = std::env::var("TERM").is_ok_and(|term| term == "dumb");
        let stderr_tty = std::io::stderr().is_terminal() && !dumb;
        let color = stderr_tty && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
        let interactive = stderr_tty && format == OutputFormat::Human && !crate::identity::ci();
        let progress = MultiProgress::with_draw_target(if interactive {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        Printer {
            format,
            redactor,
            interactive,
            verbose,
            styles: Styles::new(color),
            progress,
            spinners: Mutex::new(Vec::new()),
            summary: Mutex::new(Vec::new()),
            replay: None,
            fanout: Mutex::new(None),
        }
    }

    /// A printer that renders a recorded journal on stdout (`runbook show`).
    pub fn replay(redactor: Redactor) -> Self {
        let color = std::io::stdout().is_terminal()
            && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
        Printer {
            format: OutputFormat::Human,
            redactor,
            interactive: false,
            verbose: true,
            styles: Styles::new(color),
            progress: MultiProgress::with_draw_target(ProgressDrawTarget::hidden()),
            spinners: Mutex::new(Vec::new()),
            summary: Mutex::new(Vec::new()),
            replay: Some(Mutex::new(String::new())),
            fanout: Mutex::new(None),
        }
    }

    /// Render a recorded event, stamped with `time` (RFC 3339).
    pub fn replay_event(&self, event: &Event, time: &str) {
        if let Some(stamp) = &self.replay {
            let short = time.get(11..19).unwrap_or(time);
            *stamp.lock().unwrap_or_else(PoisonError::into_inner) = short.to_owned();
        }
        self.render(event);
    }

    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    pub fn format(&self) -> OutputFormat {
        self.format
    }

    /// A line for people on stderr (masked), above any spinners.
    pub fn line(&self, text: &str) {
        if self.format == OutputFormat::Json {
            return;
        }
        let text = self.redactor.mask(text);
        if let Some(stamp) = &self.replay {
            let stamp = stamp.lock().unwrap_or_else(PoisonError::into_inner).clone();
            let mut stdout = std::io::stdout().lock();
            for line in text.lines() {
                let _ = writeln!(stdout, "{} {line}", self.styles.dim.apply_to(&stamp));
            }
            return;
        }
        if self.interactive {
            let _ = self.progress.println(text.as_ref());
        } else {
            let stamp = chrono::Local::now().format("%H:%M:%S").to_string();
            let mut stderr = std::io::stderr().lock();
            for line in text.lines() {
                let _ = writeln!(stderr, "{} {line}", self.styles.dim.apply_to(&stamp));
            }
        }
    }

    /// Data for stdout (script `print`, the plan, tables), masked. In JSON
    /// mode stdout holds events only, so data becomes a log event instead.
    pub fn data(&self, text: &str) {
        let masked = self.redactor.mask(text);
        let text = match self.format {
            OutputFormat::Json => masked,
            OutputFormat::Human => Cow::Owned(clean_lines(&masked).into_owned()),
        };
        match self.format {
            OutputFormat::Json => self.emit(&Event::Log {
                level: LogLevel::Print,
                message: text.into_owned(),
                step: None,
                time: crate::event::now(),
            }),
            OutputFormat::Human => {
                self.progress.suspend(|| {
                    let mut stdout = std::io::stdout().lock();
                    let _ = writeln!(stdout, "{text}");
                    let _ = stdout.flush();
                });
            }
        }
    }

    /// A fan-out over `total` hosts starts: a progress bar with ok/failed counts.
    pub fn fanout_start(&self, label: &str, total: usize) {
        if self.format == OutputFormat::Json {
            return;
        }
        let bar = self.progress.add(ProgressBar::new(total as u64));
        if let Ok(style) =
            ProgressStyle::with_template("{bar:30} {pos}/{len} hosts {msg} {elapsed:.dim}")
        {
            bar.set_style(style);
        }
        bar.set_message("0 ok, 0 failed");
        // A probe script is shown by its first line (the journal has it whole).
        let label = match label.split_once('\n') {
            Some((first, _)) => format!("{}…", first.trim_end()),
            None => label.to_owned(),
        };
        self.line(&format!(
            "  {} {label} on {total} host{}",
            self.styles.dim.apply_to("→"),
            if total == 1 { "" } else { "s" }
        ));
        *self.fanout.lock().unwrap_or_else(PoisonError::into_inner) = Some(Fanout {
            bar,
            ok: 0,
            failed: Vec::new(),
        });
    }

    fn fanout_item(&self, host: &str, ok: bool, error: Option<&str>, output_tail: &str) {
        for line in output_tail.lines() {
            self.line(&format!(
                "    {} {line}",
                self.styles.dim.apply_to(format!("{host} |"))
            ));
        }
        if !ok {
            let first = error.unwrap_or("failed").lines().next().unwrap_or_default();
            self.line(&format!(
                "    {} {}",
                self.styles.bad.apply_to(format!("{host} ✗")),
                first
            ));
        }
        let mut fanout = self.fanout.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(fanout) = fanout.as_mut() {
            if ok {
                fanout.ok += 1;
            } else {
                fanout
                    .failed
                    .push((host.to_owned(), error.unwrap_or("failed").to_owned()));
            }
            fanout.bar.inc(1);
            fanout
                .bar
                .set_message(format!("{} ok, {} failed", fanout.ok, fanout.failed.len()));
        }
    }

    /// The fan-out ended: counts, and the failures per host.
    pub fn fanout_end(&self, ok: usize, failed: usize, skipped: usize) {
        let fanout = self
            .fanout
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(fanout) = &fanout {
            fanout.bar.finish_and_clear();
            self.progress.remove(&fanout.bar);
        }
        if self.format == OutputFormat::Json {
            return;
        }
        let skipped_text = if skipped > 0 {
            format!(", {skipped} not run")
        } else {
            String::new()
        };
        let mut text = format!(
            "  {} hosts: {ok} ok, {failed} failed{skipped_text}",
            self.styles.dim.apply_to("=")
        );
        for (host, error) in fanout.map(|fanout| fanout.failed).unwrap_or_default() {
            let first = error.lines().next().unwrap_or_default().to_owned();
            text.push_str(&format!(
                "\n    {} {first}",
                self.styles.bad.apply_to(format!("{host}:"))
            ));
        }
        self.line(&text);
    }

    /// Run `f` with the spinners hidden (for prompts).
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.progress.suspend(f)
    }

    /// Render one event, its values masked first.
    pub fn emit(&self, event: &Event) {
        if self.format == OutputFormat::Json {
            if let Ok(mut json) = serde_json::to_value(event) {
                for_machines(&mut json);
                self.redactor
                    .mask_json_except(&mut json, crate::journal::VOCABULARY);
                let mut stdout = std::io::stdout().lock();
                let _ = writeln!(stdout, "{json}");
                let _ = stdout.flush();
            }
            return;
        }
        self.render(event);
    }

    fn render(&self, event: &Event) {
        // Masked on its values, then with external text made inert.
        let masked = self.redactor.mask_serde(event, crate::journal::VOCABULARY);
        let event = clean_event(masked.as_ref().unwrap_or(event));
        let event = &event;
        let s = &self.styles;
        match event {
            Event::Run {
                runbook,
                context,
                mode,
                run_id,
                kind: Kind::Repl,
                ..
            } if self.replay.is_some() => {
                let _ = (runbook, mode);
                self.line(&format!(
                    "{} REPL session {}",
                    s.bold.apply_to("▶"),
                    s.dim.apply_to(format!(
                        "({}, run {run_id})",
                        context.as_deref().unwrap_or("no context")
                    ))
                ));
            }
            // A live REPL session announces itself with its banner.
            Event::Run {
                kind: Kind::Repl, ..
            } => {}
            Event::Run {
                runbook,
                context,
                mode,
                run_id,
                ..
            } => {
                let mode = match mode {
                    Mode::Live => "live",
                    Mode::DryRun => "dry-run",
                    Mode::DryRunOffline => "dry-run, offline",
                };
                let context = context.as_deref().unwrap_or("no context");
                self.line(&format!(
                    "{} {runbook} {}",
                    s.bold.apply_to("▶"),
                    s.dim.apply_to(format!("({context}, {mode}, run {run_id})"))
                ));
            }
            // What a person typed in a REPL: shown when a session is replayed.
            Event::Input { line, .. } => {
                if self.replay.is_some() {
                    self.line(&format!("{} {line}", s.bold.apply_to("›")));
                }
            }
            Event::StepStart { step, .. } => self.step_started(step),
            Event::StepEnd {
                step,
                status,
                duration_ms,
                error,
                ..
            } => {
                self.step_finished(step);
                let took = human_ms(*duration_ms);
                match status {
                    StepStatus::Ok => self.line(&format!(
                        "{} {step} {}",
                        s.ok.apply_to("✓"),
                        s.dim.apply_to(took)
                    )),
                    StepStatus::Skipped => self.line(&format!(
                        "{} {step} {}",
                        s.dim.apply_to("↷"),
                        s.dim.apply_to("(done in an earlier attempt: replayed)")
                    )),
                    StepStatus::Failed => self.line(&format!(
                        "{} {step} {}{}",
                        s.bad.apply_to("✗"),
                        s.dim.apply_to(took),
                        error
                            .as_deref()
                            .map(|e| format!(": {e}"))
                            .unwrap_or_default()
                    )),
                }
                let mut summary = self.summary.lock().unwrap_or_else(PoisonError::into_inner);
                summary.push(SummaryLine {
                    step: step.clone(),
                    status: *status,
                    duration_ms: *duration_ms,
                });
            }
            Event::Call {
                function,
                args,
                outcome,
                duration_ms,
                error,
                effect,
                ..
            } => {
                // For people, each argument up to its first line: a probe
                // script passed to `ssh::exec_all` is not echoed whole
                // (`--output json` and the journal keep it all).
                let shown: Vec<String> = args
                    .iter()
                    .map(|arg| first_line(arg).into_owned())
                    .collect();
                let call = format!("{function}({})", shown.join(", "));
                match outcome {
                    CallOutcome::Planned => self.line(&format!(
                        "  {} {call} {}",
                        s.warn.apply_to("~"),
                        s.dim.apply_to("(planned, not run)")
                    )),
                    CallOutcome::Fixture => self.line(&format!(
                        "  {} {call} {}",
                        s.dim.apply_to("·"),
                        s.dim.apply_to("(fixture)")
                    )),
                    CallOutcome::Placeholder => self.line(&format!(
                        "  {} {call} {}",
                        s.dim.apply_to("·"),
                        s.dim.apply_to("(offline placeholder)")
                    )),
                    CallOutcome::Ok => {
                        // Local calls are in the journal only; reads show with -v.
                        if *effect == Effect::Write || (self.verbose && *effect != Effect::Local) {
                            self.line(&format!(
                                "  {} {call} {}",
                                s.dim.apply_to("→"),
                                s.dim.apply_to(human_ms(*duration_ms))
                            ));
                        }
                    }
                    CallOutcome::Error => self.line(&format!(
                        "  {} {call} {}",
                        s.bad.apply_to("→"),
                        s.bad.apply_to(
                            error
                                .as_deref()
                                .unwrap_or("failed")
                                .lines()
                                .next()
                                .unwrap_or_default()
                        )
                    )),
                }
            }
            Event::Host {
                host,
                ok,
                error,
                output_tail,
                ..
            } => {
                self.fanout_item(host, *ok, error.as_deref(), output_tail);
            }
            Event::Gate {
                message,
                decision,
                approver,
                how,
                channel,
                comment,
                expires,
                ..
            } => {
                let remote = *channel == Some(Channel::Remote);
                let text = match decision {
                    GateDecision::Approved => format!(
                        "{} approved by {approver} ({how}): {message}",
                        s.ok.apply_to("✔")
                    ),
                    GateDecision::Rejected if remote => format!(
                        "{} rejected by {approver} ({how}): {message}",
                        s.bad.apply_to("✘")
                    ),
                    GateDecision::Rejected => {
                        format!("{} rejected ({how}): {message}", s.bad.apply_to("✘"))
                    }
                    GateDecision::Planned => {
                        format!("{} gate (would ask): {message}", s.warn.apply_to("?"))
                    }
                    GateDecision::Waiting => format!(
                        "{} waiting for approval until {}: {message}",
                        s.warn.apply_to("?"),
                        expires.as_deref().unwrap_or("(no limit)")
                    ),
                    GateDecision::Expired => {
                        format!("{} expired ({how}): {message}", s.bad.apply_to("✘"))
                    }
                };
                let text = match (comment, decision) {
                    (Some(reason), GateDecision::Rejected) => format!("{text}\n  reason: {reason}"),
                    (Some(comment), _) => format!("{text}\n  comment: {comment}"),
                    (None, _) => text,
                };
                self.line(&text);
            }
            Event::Log { level, message, .. } => match level {
                LogLevel::Debug if !self.verbose => {}
                LogLevel::Warn => self.line(&format!("{} {message}", s.warn.apply_to("warning:"))),
                LogLevel::Error => self.line(&format!("{} {message}", s.bad.apply_to("error:"))),
                LogLevel::Debug | LogLevel::Info | LogLevel::Print => self.line(message),
            },
            Event::Rollback {
                step,
                status,
                error,
                ..
            } => match status {
                StepStatus::Ok => {
                    self.line(&format!("{} rollback for {step} ran", s.warn.apply_to("↺")));
                }
                StepStatus::Skipped => self.line(&format!(
                    "{} rollback for {step} skipped (--no-rollback)",
                    s.dim.apply_to("↺")
                )),
                StepStatus::Failed => self.line(&format!(
                    "{} rollback for {step} failed: {}",
                    s.bad.apply_to("↺"),
                    error.as_deref().unwrap_or("unknown error")
                )),
            },
            Event::Resume {
                user,
                host,
                force,
                cut_bytes,
                ..
            } => {
                let forced = if *force {
                    " (--force: the runbook changed)"
                } else {
                    ""
                };
                let cut = if *cut_bytes > 0 {
                    format!(
                        " (the journal's cut last line, {cut_bytes} bytes, was dropped: the run was stopped while writing it)"
                    )
                } else {
                    String::new()
                };
                self.line(&format!(
                    "{} resumed by {user}@{host}{forced}{cut}",
                    s.bold.apply_to("↻")
                ));
            }
            Event::End {
                status,
                duration_ms,
                exit_code,
                ..
            } => {
                self.clear_spinners();
                let took = human_ms(*duration_ms);
                let text = match status {
                    Exit::Ok => format!("{} finished in {took}", s.ok.apply_to("✓")),
                    Exit::StepFailed => format!(
                        "{} failed after {took} (exit {exit_code})",
                        s.bad.apply_to("✗")
                    ),
                    Exit::Refused => format!(
                        "{} stopped at an approval gate after {took} (exit {exit_code})",
                        s.bad.apply_to("✗")
                    ),
                    Exit::Interrupted => format!(
                        "{} interrupted after {took} (exit {exit_code})",
                        s.bad.apply_to("✗")
                    ),
                    Exit::Terminated => format!(
                        "{} stopped by SIGTERM after {took} (exit {exit_code})",
                        s.bad.apply_to("✗")
                    ),
                    Exit::HungUp => format!(
                        "{} stopped by SIGHUP after {took} (exit {exit_code})",
                        s.bad.apply_to("✗")
                    ),
                    Exit::Locked => {
                        format!("{} locked (exit {exit_code})", s.bad.apply_to("✗"))
                    }
                    Exit::Usage => {
                        format!("{} script error (exit {exit_code})", s.bad.apply_to("✗"))
                    }
                };
                self.line(&text);
            }
        }
    }

    /// The steps of the run with their outcome and duration (human output only).
    pub fn summary(&self) {
        if self.format == OutputFormat::Json {
            return;
        }
        self.clear_spinners();
        self.render_summary();
    }

    fn render_summary(&self) {
        /// Step names longer than this are cut in the summary's column.
        const NAME_WIDTH: usize = 60;
        let summary = self
            .summary
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if summary.is_empty() {
            return;
        }
        let width = summary
            .iter()
            .map(|line| line.step.chars().count().min(NAME_WIDTH))
            .max()
            .unwrap_or(0);
        let mut text = String::from("summary:");
        for line in &summary {
            let mark = match line.status {
                StepStatus::Ok => self.styles.ok.apply_to("✓"),
                StepStatus::Failed => self.styles.bad.apply_to("✗"),
                StepStatus::Skipped => self.styles.dim.apply_to("↷"),
            };
            text.push_str(&format!(
                "\n  {mark} {:<width$}  {}",
                shorten(&line.step, NAME_WIDTH),
                human_ms(line.duration_ms)
            ));
        }
        self.line(&text);
    }

    fn step_started(&self, step: &str) {
        if !self.interactive {
            self.line(&format!("{} {step}", self.styles.bold.apply_to("▸")));
            return;
        }
        let spinner = self.progress.add(ProgressBar::new_spinner());
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {elapsed:.dim}") {
            spinner.set_style(style);
        }
        spinner.set_message(self.redactor.mask(step).into_owned());
        spinner.enable_steady_tick(Duration::from_millis(120));
        self.spinners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((step.to_owned(), spinner));
    }

    fn step_finished(&self, step: &str) {
        let mut spinners = self.spinners.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(index) = spinners.iter().rposition(|(name, _)| name == step) {
            let (_, spinner) = spinners.remove(index);
            spinner.finish_and_clear();
            self.progress.remove(&spinner);
        }
    }

    fn clear_spinners(&self) {
        let mut spinners = self.spinners.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, spinner) in spinners.drain(..) {
            spinner.finish_and_clear();
        }
    }

    /// An error report (already rendered with position and hint) on stderr.
    pub fn error(&self, report: &str) {
        let masked = self.redactor.mask(report);
        let report = clean_lines(&masked);
        match self.format {
            OutputFormat::Json => {
                let _ = writeln!(std::io::stderr(), "{report}");
            }
            OutputFormat::Human => {
                self.clear_spinners();
                self.progress.suspend(|| {
                    let _ = writeln!(std::io::stderr(), "{report}");
                });
            }
        }
    }

    pub fn styles_bold(&self, text: &str) -> String {
        self.styles.bold.apply_to(text).to_string()
    }
}

/// An event as `--output json` prints it: a call's `args` are its arguments
/// as JSON values (the journal's `arguments`), and `call` is the call as
/// people read it (the journal's Rhai-literal `args`, joined).
fn for_machines(json: &mut serde_json::Value) {
    let Some(object) = json.as_object_mut() else {
        return;
    };
    if object.get("event").and_then(serde_json::Value::as_str) != Some("call") {
        return;
    }
    let literals: Vec<String> = object
        .get("args")
        .and_then(serde_json::Value::as_array)
        .map(|args| {
            args.iter()
                .map(|arg| arg.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default();
    let function = object
        .get("function")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let arguments = object
        .remove("arguments")
        .unwrap_or_else(|| serde_json::Value::Array(Vec::new()));
    object.insert("args".to_owned(), arguments);
    object.insert(
        "call".to_owned(),
        serde_json::Value::String(format!("{function}({})", literals.join(", "))),
    );
}

impl Printer {
    /// `--output json`: the plan of a dry-run as one `plan` event on stdout,
    /// each change with its function, JSON arguments, diff and unknowns.
    pub fn plan_event(&self, plan: &[PlanItem]) {
        if self.format != OutputFormat::Json {
            return;
        }
        let items = crate::saved_plan::items(plan);
        let changes = plan
            .iter()
            .filter(|item| matches!(item, PlanItem::Change { .. }))
            .count();
        let mut json = serde_json::json!({
            "event": "plan",
            "changes": changes,
            "gates": plan.len() - changes,
            "items": items,
            "time": crate::event::now(),
        });
        self.redactor
            .mask_json_except(&mut json, crate::journal::VOCABULARY);
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{json}");
        let _ = stdout.flush();
    }
}

/// The plan of a dry-run: every write that was not run, and every gate.
pub fn render_plan(plan: &[PlanItem]) -> String {
    let changes = plan
        .iter()
        .filter(|item| matches!(item, PlanItem::Change { .. }))
        .count();
    let gates = plan.len() - changes;
    let mut out = format!(
        "\nPlan: {changes} change{}, {gates} approval gate{} (dry-run: nothing was changed)\n",
        if changes == 1 { "" } else { "s" },
        if gates == 1 { "" } else { "s" }
    );
    for (index, item) in plan.iter().enumerate() {
        let number = index + 1;
        match item {
            PlanItem::Change {
                call,
                at,
                step,
                detail,
                unknown,
                ..
            } => {
                let step = step
                    .as_deref()
                    .map(|step| format!("  [step: {step}]"))
                    .unwrap_or_default();
                out.push_str(&format!("  {number:>3}. {call}\n       at {at}{step}\n"));
                if let Some(detail) = detail {
                    for line in detail.lines() {
                        out.push_str(&format!("         {line}\n"));
                    }
                }
                if !unknown.is_empty() {
                    out.push_str(&format!(
                        "         unknown until run: {}\n",
                        unknown.join(", ")
                    ));
                }
            }
            PlanItem::Gate {
                message,
                at,
                confirm,
            } => {
                let confirm = confirm
                    .as_deref()
                    .map(|text| format!(" (type `{text}`)"))
                    .unwrap_or_default();
                out.push_str(&format!(
                    "  {number:>3}. gate: {message}{confirm}\n       at {at}\n"
                ));
            }
        }
    }
    out
}

/// `text` with every control character escaped (`\n`, `\x1b`, ...): for
/// one-line fields such as names, where a newline could forge a line.
pub fn clean(text: &str) -> Cow<'_, str> {
    escape_controls(text, false)
}

/// `text` with control characters escaped except newlines and tabs: for
/// text that has lines of its own (output, errors, messages).
pub fn clean_lines(text: &str) -> Cow<'_, str> {
    escape_controls(text, true)
}

fn escape_controls(text: &str, keep_lines: bool) -> Cow<'_, str> {
    let keep = |c: char| keep_lines && (c == '\n' || c == '\t');
    if !text.chars().any(|c| c.is_control() && !keep(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            c if !c.is_control() || keep(c) => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    Cow::Owned(out)
}

fn cleaned(text: &str) -> String {
    clean(text).into_owned()
}

fn cleaned_lines(text: &str) -> String {
    clean_lines(text).into_owned()
}

/// An event with the external text it carries made safe for a terminal.
fn clean_event(event: &Event) -> Event {
    let mut event = event.clone();
    let one = |text: &mut String| *text = cleaned(text);
    let many = |text: &mut String| *text = cleaned_lines(text);
    match &mut event {
        Event::Run {
            runbook,
            context,
            run_id,
            ..
        } => {
            one(runbook);
            one(run_id);
            if let Some(context) = context {
                one(context);
            }
        }
        Event::Input { line, .. } => one(line),
        Event::StepStart { step, .. } => one(step),
        Event::StepEnd { step, error, .. } => {
            one(step);
            if let Some(error) = error {
                many(error);
            }
        }
        Event::Call {
            function,
            args,
            error,
            ..
        } => {
            one(function);
            args.iter_mut().for_each(one);
            if let Some(error) = error {
                many(error);
            }
        }
        Event::Host {
            host,
            error,
            output_tail,
            ..
        } => {
            one(host);
            many(output_tail);
            if let Some(error) = error {
                many(error);
            }
        }
        Event::Gate {
            message,
            approver,
            how,
            comment,
            expires,
            confirm,
            ..
        } => {
            many(message);
            one(approver);
            one(how);
            for text in [comment, expires, confirm].into_iter().flatten() {
                one(text);
            }
        }
        Event::Log { message, .. } => many(message),
        Event::Rollback { step, error, .. } => {
            one(step);
            if let Some(error) = error {
                many(error);
            }
        }
        Event::Resume { user, host, .. } => {
            one(user);
            one(host);
        }
        Event::End { error, .. } => {
            if let Some(error) = error {
                many(error);
            }
        }
    }
    event
}

fn human_ms(millis: u64) -> String {
    runbook_stdlib::duration::human(Duration::from_millis(millis))
}

/// An argument as people read it, cut at the end of its first line: a
/// quoted string literal with `\n` in it keeps what comes before, then `…"`.
fn first_line(arg: &str) -> std::borrow::Cow<'_, str> {
    if !arg.starts_with('"') {
        return std::borrow::Cow::Borrowed(arg);
    }
    // The first `\n` escape that is not itself an escaped backslash.
    let bytes = arg.as_bytes();
    let mut index = 1;
    while index + 1 < bytes.len() {
        if bytes[index] == b'\\' {
            if bytes[index + 1] == b'n' && index + 2 < bytes.len() - 1 {
                return std::borrow::Cow::Owned(format!("{}…\"", &arg[..index]));
            }
            index += 2;
            continue;
        }
        index += 1;
    }
    std::borrow::Cow::Borrowed(arg)
}

/// `text` cut to `max` characters, with `…` where it was cut (for columns
/// and one-line displays of names people or scripts chose).
pub fn shorten(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.chars().count() <= max {
        return std::borrow::Cow::Borrowed(text);
    }
    let kept: String = text.chars().take(max.saturating_sub(1)).collect();
    std::borrow::Cow::Owned(format!("{kept}…"))
}
