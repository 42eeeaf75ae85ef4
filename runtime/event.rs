//! The event stream of a run. The printer renders it, `--output json` prints
//! it, and the journal stores it, so the three cannot disagree.

use runbook_stdlib::{Effect, Level};
use serde::{Deserialize, Serialize};

use crate::error::Exit;

/// One thing that happened in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The run started.
    Run {
        run_id: String,
        runbook: String,
        /// The working directory the run started in (relative runbook paths start there).
        #[serde(default)]
        cwd: String,
        sha256: String,
        params: serde_json::Map<String, serde_json::Value>,
        context: Option<String>,
        user: String,
        host: String,
        version: String,
        mode: Mode,
        /// A runbook's run, or an interactive session (`runbook repl`).
        #[serde(default)]
        kind: Kind,
        time: String,
    },
    /// A line typed in a REPL session (commands included), as it was typed.
    Input { line: String, time: String },
    /// A step started.
    StepStart { step: String, time: String },
    /// A step ended.
    StepEnd {
        step: String,
        status: StepStatus,
        duration_ms: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        value: Option<serde_json::Value>,
        /// The value held a secret: `value` shows it masked, `sealed` holds it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        redacted: bool,
        /// The value, sealed under the run's key (see `seal.rs`), when it holds a secret.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sealed: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        time: String,
    },
    /// A stdlib call with an effect on the world (reads and writes).
    Call {
        function: String,
        effect: Effect,
        /// The arguments as people read them (Rhai literals, secrets `***`,
        /// long values shortened): what plans show and resumes match.
        args: Vec<String>,
        /// The arguments as JSON values (secrets masked, never shortened up to
        /// 1 MiB each; a bigger one is `{"$cut": {...}}`). `--output json`
        /// prints these as `args`. Absent in journals written before them.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        arguments: Vec<serde_json::Value>,
        at: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        step: Option<String>,
        outcome: CallOutcome,
        duration_ms: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// What the call returned (secrets masked), so that a resume can
        /// replay it. Absent for `()` and in journals written before replay.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<serde_json::Value>,
        /// For a planned write: what the backend's own dry run said would
        /// change (the plan's diff), when it has one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        diff: Option<String>,
        /// The result held a secret: `result` shows it masked and only
        /// `sealed` holds it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        redacted: bool,
        /// The result sealed under the run's key, when it holds a secret.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sealed: Option<String>,
        time: String,
    },
    /// One host's result in a fan-out (`ssh::exec_all`): each host is its own event.
    Host {
        function: String,
        host: String,
        ok: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<i64>,
        duration_ms: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        step: Option<String>,
        /// The last lines of the host's output (for `runbook show`).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        output_tail: String,
        /// How the host's connection was got: `new` (this run connected),
        /// `reused` (a live master from an earlier run), `user` (the user's own
        /// ControlMaster). Absent when no connection was made (and in older journals).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        connection: Option<String>,
        /// For a command the run cancelled (Ctrl-C, SIGTERM, a step timeout,
        /// a fail_fast fan-out stopping): `true` when its end on the host was
        /// seen before the run went on (rollbacks start only after that),
        /// `false` when it was not confirmed in time. Absent otherwise.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        killed: Option<bool>,
        time: String,
    },
    /// An approval gate was asked (or recorded, in a dry-run), or a run
    /// started waiting at it (`--wait-for-approval`; the decision follows).
    Gate {
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        confirm: Option<String>,
        decision: GateDecision,
        /// Who decided (for `waiting`: who started the run).
        approver: String,
        how: String,
        at: String,
        /// Where the decision came from. Absent in journals written before
        /// channels were recorded, and for approvals before a resume point.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<Channel>,
        /// The approver's comment, or a rejection's reason.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
        /// While waiting: when the gate expires (RFC 3339, UTC).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires: Option<String>,
        time: String,
    },
    /// A log line from the script (`log::*`, `print`).
    Log {
        level: LogLevel,
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        step: Option<String>,
        time: String,
    },
    /// A compensation registered with `on_rollback` ran (or was skipped).
    Rollback {
        step: String,
        status: StepStatus,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        time: String,
    },
    /// The run was resumed (`runbook resume`): later lines belong to the new attempt.
    Resume {
        user: String,
        host: String,
        version: String,
        force: bool,
        /// Bytes of a partial last line that were cut off (the process died mid-write).
        cut_bytes: usize,
        time: String,
    },
    /// The run ended.
    End {
        status: Exit,
        exit_code: i32,
        duration_ms: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        planned_changes: usize,
        time: String,
    },
}

impl Event {
    /// When it happened (RFC 3339, UTC): every event carries its time.
    pub fn time(&self) -> &str {
        match self {
            Event::Run { time, .. }
            | Event::Input { time, .. }
            | Event::StepStart { time, .. }
            | Event::StepEnd { time, .. }
            | Event::Call { time, .. }
            | Event::Host { time, .. }
            | Event::Gate { time, .. }
            | Event::Log { time, .. }
            | Event::Rollback { time, .. }
            | Event::Resume { time, .. }
            | Event::End { time, .. } => time,
        }
    }
}

/// What was journaled: a runbook's run or a REPL session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    #[default]
    Run,
    Repl,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Run => "run",
            Kind::Repl => "repl",
        }
    }
}

/// How a run was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Live,
    DryRun,
    DryRunOffline,
}

impl Mode {
    pub fn is_dry(self) -> bool {
        !matches!(self, Mode::Live)
    }

    /// The mode as people write it: `live`, `dry-run`, `dry-run-offline`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Live => "live",
            Mode::DryRun => "dry-run",
            Mode::DryRunOffline => "dry-run-offline",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Ok,
    Failed,
    Skipped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    /// Ran and succeeded.
    Ok,
    /// Ran and failed.
    Error,
    /// A write not run in a dry-run: part of the plan.
    Planned,
    /// An offline read answered from `--fixtures`.
    Fixture,
    /// An offline read without a fixture: a typed placeholder.
    Placeholder,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateDecision {
    Approved,
    Rejected,
    /// Dry-run: recorded, not asked.
    Planned,
    /// `--wait-for-approval`: the run waits for `runbook approve`/`reject`.
    Waiting,
    /// Nobody decided before `--wait-for-approval` ran out: a rejection.
    Expired,
}

/// Where a gate's decision came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Answered at the run's terminal.
    Terminal,
    /// Decided by the run's flags (`--approve`, `--confirm`, or their absence).
    Flag,
    /// Answered from another shell (`runbook approve` / `runbook reject`).
    Remote,
    /// `--wait-for-approval` ran out.
    Expired,
}

impl Channel {
    pub fn name(self) -> &'static str {
        match self {
            Channel::Terminal => "terminal",
            Channel::Flag => "flag",
            Channel::Remote => "remote",
            Channel::Expired => "expired",
        }
    }
}

/// The level of a [`Event::Log`] line: the stdlib's levels, plus `print`
/// for the script's own `print` output in `--output json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    Print,
}

impl From<Level> for LogLevel {
    fn from(level: Level) -> Self {
        match level {
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        }
    }
}

/// Now, as RFC 3339 with milliseconds, UTC.
pub fn now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}
