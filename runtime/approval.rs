//! Approval gates: a person says yes before a run changes something that
//! matters. Interactive runs ask on the terminal; non-interactive runs fail
//! closed unless started with `--approve` (and, for a protected context,
//! `--confirm CONTEXT`); dry-runs record the gate and go on.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use rhai::Position;
use runbook_stdlib::StdlibError;

use crate::event::{Event, GateDecision};
use crate::gate::RunHost;

/// How gates are answered in this run.
#[derive(Debug, Clone, Default)]
pub struct ApprovalPolicy {
    /// `--approve`: approve gates without asking (non-interactive runs).
    pub approve: bool,
    /// `--confirm NAME`: the typed context name that protected contexts require.
    pub confirm: Option<String>,
    /// Whether a person is at the terminal to ask.
    pub interactive: bool,
}

impl ApprovalPolicy {
    pub fn new(approve: bool, confirm: Option<String>) -> Self {
        let interactive =
            std::io::stdin().is_terminal() && std::io::stderr().is_terminal() && !ci();
        ApprovalPolicy {
            approve,
            confirm,
            interactive,
        }
    }
}

/// Whether we run under CI (`CI` set to anything but empty, `0` or `false`).
pub fn ci() -> bool {
    std::env::var("CI")
        .is_ok_and(|value| !matches!(value.trim(), "" | "0" | "false" | "FALSE" | "False"))
}

/// Who approves: `$RUNBOOK_APPROVER`, else `$USER@host`.
pub fn approver() -> String {
    if let Ok(name) = std::env::var("RUNBOOK_APPROVER")
        && !name.trim().is_empty()
    {
        return name;
    }
    format!("{}@{}", user(), hostname())
}

pub fn user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(user_from_passwd)
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The name of our uid in /etc/passwd (when USER is not set, as under cron or CI).
fn user_from_passwd() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .to_owned();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() > 2 && fields[2] == uid).then(|| fields[0].to_owned())
    })
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// One gate as the script asked it.
#[derive(Debug, Clone)]
pub struct Gate {
    pub message: String,
    /// Text the person must type (option `confirm`).
    pub confirm: Option<String>,
    pub timeout: Option<Duration>,
    pub position: Position,
}

/// Ask a gate. `Ok` means approved; a rejection or a gate that cannot be
/// asked is `StdlibError::Refused`.
pub fn ask(host: &RunHost, gate: &Gate) -> Result<(), StdlibError> {
    let at = host.location(gate.position);
    let event = |decision: GateDecision, approver: String, how: &str| Event::Gate {
        message: gate.message.clone(),
        confirm: gate.confirm.clone(),
        decision,
        approver,
        how: how.to_owned(),
        at: at.clone(),
        time: crate::event::now(),
    };
    if host.mode.is_dry() {
        host.record_gate(&gate.message, gate.position, gate.confirm.clone());
        host.emit(&event(GateDecision::Planned, String::new(), "dry-run"));
        return Ok(());
    }
    if host.take_earlier_approval(&gate.message, &at) {
        host.emit(&event(
            GateDecision::Approved,
            approver(),
            "approved before the resume point",
        ));
        return Ok(());
    }
    let context_name = host.context.name.clone();
    let policy = &host.approvals;
    if !policy.interactive {
        if !policy.approve {
            host.emit(&event(GateDecision::Rejected, approver(), "no terminal"));
            return Err(StdlibError::Refused {
                message: format!("approval needed: {}", gate.message),
                hint: Some(
                    "no terminal to ask on (or CI is set): re-run with --approve to approve gates in advance"
                        .into(),
                ),
            });
        }
        if host.context.protected {
            let name = context_name.unwrap_or_default();
            if policy.confirm.as_deref() != Some(name.as_str()) {
                let (how, message) = match policy.confirm.as_deref() {
                    None => (
                        "--approve without --confirm".to_owned(),
                        format!(
                            "context `{name}` is protected: --approve alone does not pass its gates"
                        ),
                    ),
                    Some(other) => (
                        format!("--confirm {other} (wrong context)"),
                        format!(
                            "context `{name}` is protected and --confirm names `{other}`, not `{name}`"
                        ),
                    ),
                };
                host.emit(&event(GateDecision::Rejected, approver(), &how));
                return Err(StdlibError::Refused {
                    message,
                    hint: Some(format!(
                        "pass --confirm {name} to show you mean this context"
                    )),
                });
            }
            host.emit(&event(
                GateDecision::Approved,
                approver(),
                &format!("--approve --confirm {name}"),
            ));
            return Ok(());
        }
        host.emit(&event(GateDecision::Approved, approver(), "--approve"));
        return Ok(());
    }
    // Interactive: a typed text for `confirm` or a protected context, else yes/no.
    let expected = gate.confirm.clone().or_else(|| {
        if host.context.protected {
            context_name.clone()
        } else {
            None
        }
    });
    let context_line = match &context_name {
        Some(name) if host.context.protected => format!("context: {name} (protected)"),
        Some(name) => format!("context: {name}"),
        None => "context: (none)".to_owned(),
    };
    let question = match &expected {
        Some(text) => format!("type `{text}` to approve, anything else rejects"),
        None => "approve? [y/N]".to_owned(),
    };
    let prompt = format!(
        "\n{} {}\n  {context_line}\n  at: {at}\n  {question}: ",
        host.printer.styles_bold("approval needed:"),
        host.printer.redactor().mask(&gate.message)
    );
    let answer = host.printer.suspend(|| {
        let mut stderr = std::io::stderr();
        let _ = stderr.write_all(prompt.as_bytes());
        let _ = stderr.flush();
        read_answer(gate.timeout)
    });
    let approved = match (&answer, &expected) {
        (Some(answer), Some(text)) => answer.trim() == text,
        (Some(answer), None) => matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"),
        (None, _) => false,
    };
    if approved {
        host.emit(&event(GateDecision::Approved, approver(), "terminal"));
        Ok(())
    } else {
        let how = if answer.is_none() {
            "no answer"
        } else {
            "terminal"
        };
        host.emit(&event(GateDecision::Rejected, approver(), how));
        Err(StdlibError::Refused {
            message: match answer {
                None => format!("no answer at the gate: {}", gate.message),
                Some(_) => format!("rejected at the gate: {}", gate.message),
            },
            hint: None,
        })
    }
}

/// A line from stdin, or `None` at end of input or when the timeout passes.
fn read_answer(timeout: Option<Duration>) -> Option<String> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = std::io::stdin().lock().read_line(&mut line);
        let _ = sender.send(match read {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line),
        });
    });
    match timeout {
        Some(limit) => receiver.recv_timeout(limit).ok().flatten(),
        None => receiver.recv().ok().flatten(),
    }
}
