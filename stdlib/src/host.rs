//! The boundary between the standard library and the runtime that runs it.
//!
//! A stdlib function declares its [`Effect`] and calls the [`Host`]; the host
//! decides whether the call runs (live), is recorded (dry-run) or answered from
//! a fixture (offline). Function bodies never see a dry-run flag, so dry-run
//! cannot be forgotten in one place.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rhai::{Dynamic, Position};
use tokio_util::sync::CancellationToken;

use crate::redact::Redactor;

/// The state folder set by a program that embeds the runtime (the fuzz
/// harness): it wins over the environment, which such a program cannot
/// change safely once threads run.
static STATE_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Use `dir` as the state folder for the rest of the process; the first
/// call wins (returns whether this one did).
pub fn set_state_dir(dir: PathBuf) -> bool {
    STATE_DIR.set(dir).is_ok()
}

/// Where runbook keeps what outlives a process (journals, locks, REPL
/// history, ssh master sockets when there is no `$XDG_RUNTIME_DIR`):
/// `$RUNBOOK_STATE_DIR`, else `$XDG_STATE_HOME/runbook`, else
/// `~/.local/state/runbook`.
pub fn state_dir() -> PathBuf {
    if let Some(dir) = STATE_DIR.get() {
        return dir.clone();
    }
    if let Some(dir) = std::env::var_os("RUNBOOK_STATE_DIR").filter(|dir| !dir.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|dir| !dir.is_empty()) {
        return PathBuf::from(dir).join("runbook");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/state/runbook")
}

/// What a call does to the world. Declared once, where a function is registered.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Computes locally and changes nothing outside the process (json, time, strings).
    Local,
    /// Observes the world (get, list, logs, query). Runs in an online dry-run.
    Read,
    /// Changes the world (apply, delete, put, exec). Never runs in a dry-run.
    Write,
}

impl Effect {
    /// Lower-case name used in docs, the journal and the plan.
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Local => "local",
            Effect::Read => "read",
            Effect::Write => "write",
        }
    }
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Everything the host needs to know about one call before deciding on it.
#[derive(Debug, Clone)]
pub struct CallInfo {
    /// `module::name`, or the bare name for built-ins.
    pub function: String,
    /// The declared effect.
    pub effect: Effect,
    /// Arguments rendered for people: strings quoted, secrets as `***`.
    pub args: Vec<String>,
    /// The same arguments as JSON values, secrets masked, for `--output json`,
    /// saved plans and the journal (see [`crate::values::to_json_masked`]).
    pub values: Vec<serde_json::Value>,
    /// Where in the script the call was made.
    pub position: Position,
    /// Whether the function has a preview body (a server-side dry run).
    pub has_preview: bool,
}

impl CallInfo {
    /// `shell::run("touch /tmp/x")`: the form used in plans, fixtures and the journal.
    pub fn signature(&self) -> String {
        format!("{}({})", self.function, self.args.join(", "))
    }
}

/// The host's answer to [`Host::decide`].
#[derive(Debug)]
pub enum Decision {
    /// Run the function body.
    Run,
    /// Do not run it; the call evaluates to this value (dry-run placeholder or fixture).
    Skip(Dynamic),
    /// Run the function's preview body (online dry-run of a write whose backend
    /// has its own dry run); the call is part of the plan.
    Preview,
    /// Do not run it: the call fails with this error (a write in a protected
    /// REPL session that was not confirmed).
    Deny(StdlibError),
}

/// How a call ended, reported to [`Host::finished`].
#[derive(Debug)]
pub enum Outcome<'a> {
    /// The body ran and returned a value.
    Ok(&'a Dynamic),
    /// The body ran and failed with this message.
    Err(&'a str),
    /// The body did not run; the host answered with a value instead.
    Skipped,
    /// A write was not run; its backend's own dry run (the preview body)
    /// answered with this value.
    Previewed(&'a Dynamic),
}

/// Log levels of `log::*` and of messages functions report while they work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Detail that is useful in the journal and with `-v`.
    Debug,
    /// Normal progress.
    Info,
    /// Something the operator should look at.
    Warn,
    /// Something failed.
    Error,
}

impl Level {
    /// Lower-case name used in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// Progress of one call's work over many targets (ssh fan-out over hosts),
/// for the progress bar and for the journal, where each target's result is
/// its own event.
#[derive(Debug)]
pub enum Progress<'a> {
    /// The work starts over `total` targets.
    Start {
        /// What runs, e.g. `ssh::exec_all("uptime")`.
        label: &'a str,
        /// How many targets.
        total: usize,
    },
    /// One target finished.
    Item {
        /// The target's name (an inventory host name).
        target: &'a str,
        /// Whether it succeeded.
        ok: bool,
        /// Exit code, if a command ran.
        code: Option<i64>,
        /// How long it took.
        duration: Duration,
        /// Why it failed.
        error: Option<&'a str>,
        /// The last lines of its output, for the screen.
        output_tail: &'a str,
        /// How its connection was got (ssh: `new`, `reused` from an earlier
        /// run, `user` for the user's own ControlMaster), when there was one.
        connection: Option<&'a str>,
        /// For a cancelled command: whether its end on the host was seen
        /// (killed, confirmed) or not in time.
        killed: Option<bool>,
    },
    /// All targets are done (or the work stopped early).
    End {
        /// Targets that succeeded.
        ok: usize,
        /// Targets that failed.
        failed: usize,
        /// Targets never started (fail_fast, max_fail_percent).
        skipped: usize,
    },
}

/// What the runtime provides to stdlib functions. Implemented by the runtime
/// (live runs, dry-runs, the REPL) and by test hosts.
pub trait Host: Send + Sync {
    /// Decide whether a call runs. This is the one place where effect, mode,
    /// fixtures and the plan meet.
    fn decide(&self, call: &CallInfo, placeholder: &dyn Fn() -> Dynamic) -> Decision;
    /// Report how a call ended, with its duration.
    fn finished(&self, call: &CallInfo, outcome: Outcome<'_>, elapsed: Duration);
    /// The tokio runtime that async work is bridged onto.
    fn runtime(&self) -> &tokio::runtime::Handle;
    /// Cancelled on Ctrl-C or when the current step's timeout passes.
    fn cancellation(&self) -> CancellationToken;
    /// The error a cancelled call reports: interrupted, or the step's timeout.
    fn cancel_reason(&self) -> StdlibError;
    /// The masker for secret values; every secret the stdlib creates is added to it.
    fn redactor(&self) -> &Redactor;
    /// The active context as a map (name, namespace, hosts, groups, ...).
    fn context(&self) -> Dynamic;
    /// Resolve a secret named in the active context's `secrets` table.
    fn secret(&self, name: &str) -> Result<Secret, StdlibError>;
    /// The active context's table `key` (`"s3"`; `""` for its top level),
    /// for a module's settings.
    fn section(&self, key: &'static str) -> crate::settings::Section {
        crate::settings::Section::of(&self.context(), key)
    }
    /// Who is acting (`alice@ops1`): the identity the journal and the gates
    /// record, and what `k8s::lock` writes as the Lease holder.
    fn actor(&self) -> String;
    /// Report a message (from `log::*`, or progress a function wants shown).
    fn log(&self, level: Level, message: &str);
    /// Attach detail (a diff of the live object against the would-be one) to
    /// the plan entry of the write being previewed. Hosts without a plan ignore it.
    fn plan_detail(&self, detail: &str) {
        let _ = detail;
    }
    /// The plan's number of the write being previewed (1-based, as the plan
    /// prints it). Hosts without a plan have none.
    fn plan_number(&self) -> Option<usize> {
        None
    }
    /// Report progress of work over many targets. Hosts that show nothing may ignore it.
    fn progress(&self, progress: Progress<'_>) {
        let _ = progress;
    }
}

/// A secret value. Prints as `***` everywhere; its text is only handed to the
/// processes and servers that need it. Concatenating a secret with a string
/// gives a secret whose display keeps the plain parts: `"mysql -p" + pw`
/// shows `mysql -p***`.
#[derive(Clone)]
pub struct Secret {
    parts: Arc<[Part]>,
}

#[derive(Clone)]
struct Part {
    text: Arc<str>,
    secret: bool,
}

impl Secret {
    /// Wrap a value. Callers add it to the host's [`Redactor`] (see `Call::secret`).
    pub fn new(text: impl Into<Arc<str>>) -> Self {
        Secret {
            parts: Arc::new([Part {
                text: text.into(),
                secret: true,
            }]),
        }
    }

    /// The secret's text. Only for handing it to a process or server, never for output.
    pub fn expose(&self) -> String {
        self.parts.iter().map(|part| part.text.as_ref()).collect()
    }

    /// Plain text before this secret: `"prefix" + secret`.
    pub fn prepend(&self, plain: &str) -> Secret {
        let mut parts = vec![Part {
            text: plain.into(),
            secret: false,
        }];
        parts.extend(self.parts.iter().cloned());
        Secret {
            parts: parts.into(),
        }
    }

    /// Plain text after this secret: `secret + "suffix"`.
    pub fn append(&self, plain: &str) -> Secret {
        let mut parts: Vec<Part> = self.parts.to_vec();
        parts.push(Part {
            text: plain.into(),
            secret: false,
        });
        Secret {
            parts: parts.into(),
        }
    }

    /// Two secrets (or secret-bearing strings) joined.
    pub fn concat(&self, other: &Secret) -> Secret {
        let parts: Vec<Part> = self
            .parts
            .iter()
            .chain(other.parts.iter())
            .cloned()
            .collect();
        Secret {
            parts: parts.into(),
        }
    }

    /// Every part with whether it is secret, in order (to seal the value
    /// whole and rebuild it; see the runtime's `seal`).
    pub fn parts(&self) -> impl Iterator<Item = (&str, bool)> {
        self.parts
            .iter()
            .map(|part| (part.text.as_ref(), part.secret))
    }

    /// The texts of the secret parts, for the redactor.
    pub fn secret_texts(&self) -> impl Iterator<Item = &str> {
        self.parts
            .iter()
            .filter(|part| part.secret)
            .map(|part| part.text.as_ref())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in self.parts.iter() {
            if part.secret {
                f.write_str(crate::redact::MASK)?;
            } else {
                f.write_str(&part.text)?;
            }
        }
        Ok(())
    }
}

/// Why a stdlib call failed. Shown to the user with the script position of the
/// call and, where there is one, a hint.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StdlibError {
    /// An argument had the wrong type or value.
    #[error("`{function}`: argument `{name}` {problem}")]
    Argument {
        /// `module::name` of the function.
        function: String,
        /// The parameter's name.
        name: String,
        /// What is wrong, e.g. "must be a string, got an integer".
        problem: String,
    },
    /// An external command, server or API reported a failure.
    #[error("{message}")]
    Failed {
        /// What failed, with the values involved in backticks.
        message: String,
        /// What the user can do about it.
        hint: Option<String>,
    },
    /// The script called `fail()` or an `assert` did not hold.
    #[error("{0}")]
    Script(String),
    /// The call was cancelled by Ctrl-C.
    #[error("interrupted")]
    Interrupted,
    /// The call ran past its timeout or the step's.
    #[error("timed out after {0}")]
    Timeout(String),
    /// An approval gate was rejected or could not be asked.
    #[error("{message}")]
    Refused {
        /// Why the gate did not pass.
        message: String,
        /// What the user can do about it.
        hint: Option<String>,
    },
    /// Something holds a lock this run needs.
    #[error("{message}")]
    Locked {
        /// Who holds the lock and since when.
        message: String,
    },
    /// The runbook asked for something the run was not given (param, context, secret).
    #[error("{message}")]
    Usage {
        /// What is missing.
        message: String,
        /// How to provide it.
        hint: Option<String>,
    },
}

impl StdlibError {
    /// A failure with a hint.
    pub fn failed(message: impl Into<String>, hint: impl Into<String>) -> Self {
        StdlibError::Failed {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// A failure without a hint.
    pub fn message(message: impl Into<String>) -> Self {
        StdlibError::Failed {
            message: message.into(),
            hint: None,
        }
    }

    /// A usage problem with a hint.
    pub fn usage(message: impl Into<String>, hint: impl Into<String>) -> Self {
        StdlibError::Usage {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// The hint shown under the error, if any.
    pub fn hint(&self) -> Option<&str> {
        match self {
            StdlibError::Failed { hint, .. }
            | StdlibError::Refused { hint, .. }
            | StdlibError::Usage { hint, .. } => hint.as_deref(),
            StdlibError::Interrupted => None,
            StdlibError::Timeout(_) => Some("raise the `timeout` option if the work needs longer"),
            StdlibError::Argument { .. } => Some("`runbook doc FUNCTION` shows the parameters"),
            StdlibError::Script(_) | StdlibError::Locked { .. } => None,
        }
    }

    /// Wrap into the error Rhai carries; the runtime unwraps it for exit codes and hints.
    pub fn into_rhai(self, position: Position) -> Box<rhai::EvalAltResult> {
        Box::new(rhai::EvalAltResult::ErrorRuntime(
            Dynamic::from(self),
            position,
        ))
    }

    /// Find a stdlib error inside a Rhai error, looking through function-call wrappers.
    pub fn from_rhai(error: &rhai::EvalAltResult) -> Option<StdlibError> {
        match error {
            rhai::EvalAltResult::ErrorRuntime(value, _) => value
                .read_lock::<StdlibError>()
                .map(|guard| (*guard).clone()),
            rhai::EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
            | rhai::EvalAltResult::ErrorInModule(_, inner, _) => StdlibError::from_rhai(inner),
            _ => None,
        }
    }
}
