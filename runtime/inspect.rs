//! Inspecting a paused run: the one place that uses Rhai's debugger API
//! (volatile, so a Rhai upgrade touches this file only).
//!
//! [`attach`] registers a debugger with breakpoints at `approve` and `step`
//! calls. At a breakpoint it snapshots the caller's scope (the run's
//! variables at that point) into the host and lets the script go on; the
//! gate or the `--step` prompt then offers `inspect`, and [`open`] runs a
//! small REPL against that snapshot with the run's own functions, the live
//! stdlib and the same gate rules (its writes are journaled like any other).

use std::sync::{Arc, Mutex, PoisonError};

use rhai::debugger::{BreakPoint, DebuggerCommand, DebuggerEvent};
use rhai::{AST, Dynamic, Engine, Scope};

use crate::error::Diagnostic;
use crate::event::Event;
use crate::gate::RunHost;

/// What the person decided in the inspector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// `:approve [comment]`
    Approve(Option<String>),
    /// `:reject REASON`
    Reject(String),
    /// `:abort`: stop the run here (its rollbacks run).
    Abort,
    /// Ctrl-D or `:back`: back to the question that opened the inspector.
    Back,
}

/// The scope of the run where it paused, and the run's script functions.
#[derive(Default)]
pub struct Paused {
    scope: Mutex<Option<Scope<'static>>>,
    library: Mutex<Option<Arc<AST>>>,
}

impl std::fmt::Debug for Paused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Paused")
    }
}

impl Paused {
    /// The run's script functions, available in the inspector.
    pub fn set_library(&self, library: &AST) {
        *self.library.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(Arc::new(library.clone_functions_only()));
    }

    fn snapshot(&self, scope: &Scope<'_>) {
        let mut copy = Scope::new();
        for (name, _constant, value) in scope.iter() {
            copy.push_dynamic(name.to_owned(), value);
        }
        *self.scope.lock().unwrap_or_else(PoisonError::into_inner) = Some(copy);
    }

    fn scope(&self) -> Scope<'static> {
        self.scope
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_default()
    }

    fn library(&self) -> Arc<AST> {
        self.library
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_else(|| Arc::new(AST::empty()))
    }
}

/// Snapshot the scope at every `approve` and `step` call of scripts run on `engine`.
#[allow(deprecated)] // Rhai marks the debugger API volatile, not deprecated.
pub fn attach(engine: &mut Engine, host: &Arc<RunHost>) {
    let paused = Arc::clone(host.paused());
    engine.register_debugger(
        |_engine, mut debugger| {
            for name in ["approve", "step"] {
                debugger
                    .break_points_mut()
                    .push(BreakPoint::AtFunctionName {
                        name: name.into(),
                        enabled: true,
                    });
            }
            debugger
        },
        move |context, event, _node, _source, _position| {
            if let DebuggerEvent::BreakPoint(_) = event {
                paused.snapshot(context.scope());
            }
            Ok(DebuggerCommand::Continue)
        },
    );
}

const HELP: &str = "Inspecting the paused run: its variables are here (`:vars`), the stdlib is live with the same gate rules.
  :approve [COMMENT]   approve the gate and go on        :reject REASON   reject it (rollbacks run)
  :abort               stop the run here (rollbacks run)  :plan            what the run changed so far
  :vars                the run's variables               :back or Ctrl-D  back to the question";

/// A REPL in the paused run until the person decides.
pub fn open(host: &RunHost, engine: &Engine, heading: &str) -> Decision {
    let paused = host.paused();
    let mut scope = paused.scope();
    let library = paused.library();
    host.printer.line(&format!("{heading}\n{HELP}"));
    loop {
        let Some(line) = host.ask("inspect> ", None) else {
            return Decision::Back;
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        host.record(&Event::Input {
            line: line.to_owned(),
            time: crate::event::now(),
        });
        let (command, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim();
        match command {
            ":approve" => return Decision::Approve((!rest.is_empty()).then(|| rest.to_owned())),
            ":reject" if rest.is_empty() => {
                host.printer
                    .line("a rejection needs a reason: `:reject the backup is missing`");
            }
            ":reject" => return Decision::Reject(rest.to_owned()),
            ":abort" => return Decision::Abort,
            ":back" | ":quit" => return Decision::Back,
            ":help" | "?" => host.printer.line(HELP),
            ":vars" => host.printer.line(&variables(&scope)),
            ":plan" => host.printer.line(&done_so_far(host)),
            other if other.starts_with(':') => host
                .printer
                .line(&format!("unknown command `{other}`; `:help` lists them")),
            _ => evaluate(host, engine, &library, &mut scope, line),
        }
    }
}

fn evaluate(
    host: &RunHost,
    engine: &Engine,
    library: &AST,
    scope: &mut Scope<'static>,
    input: &str,
) {
    let ast = match crate::engine::compile(engine, input, scope) {
        Ok(ast) => ast,
        Err(diagnostic) => {
            host.printer.error(&render(&diagnostic, input));
            return;
        }
    };
    let combined = library.merge(&ast);
    match engine.eval_ast_with_scope::<Dynamic>(scope, &combined) {
        Ok(value) if !value.is_unit() && !input.trim_end().ends_with(';') => {
            host.printer.data(&crate::repl::format_value(&value));
        }
        Ok(_) => {}
        Err(error) => host
            .printer
            .error(&render(&Diagnostic::from_rhai(&error), input)),
    }
}

fn render(diagnostic: &Diagnostic, input: &str) -> String {
    diagnostic.render_with(Some(std::path::Path::new("<inspect>")), Some(input))
}

fn variables(scope: &Scope<'_>) -> String {
    let lines: Vec<String> = scope
        .iter()
        .map(|(name, _, value)| format!("{name} = {}", runbook_stdlib::values::render(&value)))
        .collect();
    if lines.is_empty() {
        "(no variables)".to_owned()
    } else {
        lines.join("\n")
    }
}

/// What the run has changed so far (and, in a dry-run, planned).
pub fn done_so_far(host: &RunHost) -> String {
    let executed = host.executed();
    let mut text = if executed.is_empty() {
        "No write has run yet.".to_owned()
    } else {
        let mut text = format!("{} write(s) ran so far:", executed.len());
        for (index, write) in executed.iter().enumerate() {
            text.push_str(&format!(
                "\n  {:>3}. {}  at {}",
                index + 1,
                write.call,
                write.at
            ));
        }
        text
    };
    let plan = host.plan();
    if !plan.is_empty() {
        text.push_str(&crate::printer::render_plan(&plan));
    }
    text
}
