//! Exit codes, and errors that point at the script: `file:line:col`, the
//! source line, a caret, and a hint where one helps.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rhai::{EvalAltResult, Position};
use runbook_stdlib::StdlibError;

/// The exit codes of `runbook`, documented in `--help`. A run's end record
/// stores it as the run's status (`ok`, `failed`, `error`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exit {
    /// 0: everything ran (or the plan was produced).
    Ok,
    /// 1: a step failed.
    #[serde(rename = "failed")]
    StepFailed,
    /// 2: usage or script error (bad arguments, syntax, unknown function, missing param).
    #[serde(rename = "error")]
    Usage,
    /// 3: an approval gate was rejected or could not be asked.
    Refused,
    /// 4: another run holds the lock.
    Locked,
    /// 130: interrupted by Ctrl-C.
    Interrupted,
    /// 143: stopped by SIGTERM (like Ctrl-C: rollbacks ran).
    Terminated,
    /// 129: stopped by SIGHUP, the terminal went away (like Ctrl-C).
    #[serde(rename = "hangup")]
    HungUp,
}

impl Exit {
    /// Every exit, in the order of their codes in `--help`.
    pub const ALL: [Exit; 8] = [
        Exit::Ok,
        Exit::StepFailed,
        Exit::Usage,
        Exit::Refused,
        Exit::Locked,
        Exit::Interrupted,
        Exit::Terminated,
        Exit::HungUp,
    ];

    /// The exit a child runbook process ended with (unknown codes are failures).
    pub fn from_code(code: i32) -> Exit {
        Exit::ALL
            .into_iter()
            .find(|exit| exit.code() == code)
            .unwrap_or(Exit::StepFailed)
    }

    pub fn code(self) -> i32 {
        match self {
            Exit::Ok => 0,
            Exit::StepFailed => 1,
            Exit::Usage => 2,
            Exit::Refused => 3,
            Exit::Locked => 4,
            Exit::Interrupted => 130,
            Exit::Terminated => 143,
            Exit::HungUp => 129,
        }
    }

    /// The status word of a run that ended with this code (`runbook runs`, the journal).
    pub fn status(self) -> &'static str {
        match self {
            Exit::Ok => "ok",
            Exit::StepFailed => "failed",
            Exit::Usage => "error",
            Exit::Refused => "refused",
            Exit::Locked => "locked",
            Exit::Interrupted => "interrupted",
            Exit::Terminated => "terminated",
            Exit::HungUp => "hangup",
        }
    }
}

impl From<&StdlibError> for Exit {
    /// The exit code a run ends with when a stdlib call fails this way.
    fn from(error: &StdlibError) -> Self {
        match error {
            StdlibError::Refused { .. } => Exit::Refused,
            StdlibError::Locked { .. } => Exit::Locked,
            StdlibError::Interrupted => Exit::Interrupted,
            StdlibError::Usage { .. } | StdlibError::Argument { .. } => Exit::Usage,
            StdlibError::Failed { .. } | StdlibError::Script(_) | StdlibError::Timeout(_) => {
                Exit::StepFailed
            }
        }
    }
}

/// An error ready to show: message, where, and a hint. Commands return it;
/// `cli` renders it once and exits with its code.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub message: String,
    pub position: Position,
    pub hint: Option<String>,
    pub exit: Exit,
    /// The script the position points into (for `--> file:line:col` and the caret).
    pub file: Option<PathBuf>,
    pub source: Option<Arc<str>>,
    /// Further problems found at the same time, shown after this one.
    pub more: Vec<Diagnostic>,
}

impl Diagnostic {
    pub fn new(message: impl Into<String>, exit: Exit) -> Self {
        Diagnostic {
            message: message.into(),
            position: Position::NONE,
            hint: None,
            exit,
            file: None,
            source: None,
            more: Vec::new(),
        }
    }

    /// Several problems found together (e.g. every bad param): shown in
    /// order, the exit code of the first. `None` when there are none.
    pub fn many(problems: Vec<Diagnostic>) -> Option<Diagnostic> {
        let mut problems = problems.into_iter();
        let mut first = problems.next()?;
        first.more.extend(problems);
        Some(first)
    }

    /// Say which script the position points into (this problem and the ones after it).
    pub fn in_script(mut self, file: &Path, source: Option<&str>) -> Self {
        let source: Option<Arc<str>> = source.map(Arc::from);
        self.file = Some(file.to_owned());
        self.source.clone_from(&source);
        for more in &mut self.more {
            more.file = Some(file.to_owned());
            more.source.clone_from(&source);
        }
        self
    }

    pub fn at(mut self, position: Position) -> Self {
        self.position = position;
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Classify and describe a Rhai error, looking through the wrappers that
    /// closures and function calls add, down to where it happened.
    pub fn from_rhai(error: &EvalAltResult) -> Diagnostic {
        let mut inner = error;
        // Keep the innermost position that is known.
        let mut position = error.position();
        while let EvalAltResult::ErrorInFunctionCall(_, _, next, pos)
        | EvalAltResult::ErrorInModule(_, next, pos) = inner
        {
            if !pos.is_none() {
                position = *pos;
            }
            inner = next;
            if !inner.position().is_none() {
                position = inner.position();
            }
        }
        if let Some(stdlib) = StdlibError::from_rhai(inner) {
            let mut diagnostic =
                Diagnostic::new(stdlib.to_string(), Exit::from(&stdlib)).at(position);
            diagnostic.hint = stdlib.hint().map(str::to_owned);
            return diagnostic;
        }
        if let Some((message, hint)) = crate::engine::limits::hit(inner) {
            let exit = match inner {
                EvalAltResult::ErrorParsing(..) => Exit::Usage,
                _ => Exit::StepFailed,
            };
            return Diagnostic::new(message, exit).at(position).hint(hint);
        }
        let (message, hint, exit) = match inner {
            EvalAltResult::ErrorTerminated(..) => ("interrupted".to_owned(), None, Exit::Interrupted),
            EvalAltResult::ErrorParsing(kind, _) => (format!("syntax error: {kind}"), None, Exit::Usage),
            EvalAltResult::ErrorFunctionNotFound(signature, _) => (
                format!("no function `{signature}`"),
                Some("`runbook doc` lists the functions; check the spelling and the number and types of arguments".to_owned()),
                Exit::Usage,
            ),
            EvalAltResult::ErrorVariableNotFound(name, _) => (
                format!("unknown variable `{name}`"),
                Some("declare it with `let` before use; values from the command line come from `param(\"name\")`".to_owned()),
                Exit::Usage,
            ),
            EvalAltResult::ErrorRuntime(value, _) => {
                let text = match value.read_lock::<runbook_stdlib::Secret>() {
                    Some(secret) => secret.to_string(),
                    None if value.is_string() => value.to_string(),
                    None => runbook_stdlib::values::render(value),
                };
                (text, None, Exit::StepFailed)
            }
            EvalAltResult::ErrorTooManyOperations(_) => (
                "the script ran too many operations (an endless loop?)".to_owned(),
                None,
                Exit::StepFailed,
            ),
            other => {
                let mut text = other.to_string();
                // Rhai appends " (line N, position M)"; we show the position ourselves.
                if let Some(cut) = text.rfind(" (line ") {
                    text.truncate(cut);
                }
                (text, None, Exit::Usage)
            }
        };
        let mut diagnostic = Diagnostic::new(message, exit).at(position);
        diagnostic.hint = hint;
        diagnostic
    }

    /// Render for a terminal: this problem and the ones after it, each with
    /// its script's line and a caret when known.
    pub fn render(&self) -> String {
        let mut out = self.render_with(self.file.as_deref(), self.source.as_deref());
        for more in &self.more {
            out.push('\n');
            out.push_str(&more.render());
        }
        out
    }

    /// Render this problem alone against `file` and its `source`.
    pub fn render_with(&self, file: Option<&Path>, source: Option<&str>) -> String {
        let mut out = format!("error: {}", self.message);
        if let (Some(line), Some(file)) = (self.position.line(), file) {
            let column = self.position.position().unwrap_or(1);
            let _ = write!(out, "\n  --> {}:{line}:{column}", file.display());
            if let Some(text) = source.and_then(|source| source.lines().nth(line - 1)) {
                let gutter = line.to_string().len();
                let pad = " ".repeat(gutter);
                let caret_pad: String = text
                    .chars()
                    .take(column.saturating_sub(1))
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                let _ = write!(out, "\n{pad} |\n{line} | {text}\n{pad} | {caret_pad}^");
            }
        } else if let Some(file) = file {
            let _ = write!(out, "\n  --> {}", file.display());
        }
        if let Some(hint) = &self.hint {
            let _ = write!(out, "\n  = hint: {hint}");
        }
        out
    }
}
