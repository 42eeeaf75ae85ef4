//! The event stream of a run. The printer renders it, `--output json` prints
//! it, and the journal stores it, so the three cannot disagree.

use serde::{Deserialize, Serialize};

/// One thing that happened in a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
        time: String,
    },
    /// A step started.
    StepStart { step: String, time: String },
    /// A step ended.
    StepEnd {
        step: String,
        status: StepStatus,
        duration_ms: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        value: Option<serde_json::Value>,
        /// The value held a secret: stored masked, so a resume runs the step again.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        redacted: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        time: String,
    },
    /// A stdlib call with an effect on the world (reads and writes).
    Call {
        function: String,
        effect: String,
        args: Vec<String>,
        at: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        step: Option<String>,
        outcome: CallOutcome,
        duration_ms: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
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
        time: String,
    },
    /// An approval gate was asked (or recorded, in a dry-run).
    Gate {
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        confirm: Option<String>,
        decision: GateDecision,
        approver: String,
        how: String,
        at: String,
        time: String,
    },
    /// A log line from the script (`log::*`, `print`).
    Log {
        level: String,
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
        status: RunStatus,
        exit_code: i32,
        duration_ms: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        planned_changes: usize,
        time: String,
    },
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Ok,
    Failed,
    Refused,
    Interrupted,
    Locked,
    Error,
}

/// Now, as RFC 3339 with milliseconds, UTC.
pub fn now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}
