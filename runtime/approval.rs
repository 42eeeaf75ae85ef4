//! Approval gates: a person says yes before a run changes something that
//! matters. The verdict is a pure function of what is known at the gate
//! ([`verdict`]): interactive runs ask on the terminal; non-interactive runs
//! fail closed unless started with `--approve` (and, for a protected
//! context, `--confirm CONTEXT`). Whether a gate is asked at all (a dry-run
//! records it instead) is the effect table's decision (`decision::decide`),
//! not this module's. The terminal prompt itself is [`read_answer`].

use std::io::{BufRead, IsTerminal};
use std::time::Duration;

use rhai::Position;

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
        let interactive = std::io::stdin().is_terminal()
            && std::io::stderr().is_terminal()
            && !crate::identity::ci();
        ApprovalPolicy {
            approve,
            confirm,
            interactive,
        }
    }
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

/// Everything the verdict depends on.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub policy: &'a ApprovalPolicy,
    /// The context is `protected = true`.
    pub protected: bool,
    /// The context's name, if any.
    pub context: Option<&'a str>,
    /// The gate's own `confirm` text.
    pub confirm: Option<&'a str>,
    /// This gate was approved before the point a resumed run continues from.
    pub approved_before: bool,
}

/// What happens at a gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Passes without asking; `how` is journaled.
    Approve { how: String },
    /// Ask the person at the terminal; approve only if they type `expected`
    /// (or answer yes when there is nothing to type).
    Ask { expected: Option<String> },
    /// Nobody can be asked and nothing approved it in advance.
    FailClosed {
        how: String,
        message: String,
        hint: String,
    },
    /// Approved in advance, but not in a way this context accepts.
    Reject {
        how: String,
        message: String,
        hint: String,
    },
}

/// Decide a gate. Pure: every input is in `facts`.
pub fn verdict(gate_message: &str, facts: &Facts<'_>) -> Verdict {
    if facts.approved_before {
        return Verdict::Approve {
            how: "approved before the resume point".into(),
        };
    }
    let policy = facts.policy;
    if policy.interactive {
        let expected = facts.confirm.map(str::to_owned).or_else(|| {
            facts
                .protected
                .then(|| facts.context.unwrap_or_default().to_owned())
        });
        return Verdict::Ask { expected };
    }
    if !policy.approve {
        return Verdict::FailClosed {
            how: "no terminal".into(),
            message: format!("approval needed: {gate_message}"),
            hint: "no terminal to ask on (or CI is set): re-run with --approve to approve gates in advance".into(),
        };
    }
    if !facts.protected {
        return Verdict::Approve {
            how: "--approve".into(),
        };
    }
    let name = facts.context.unwrap_or_default();
    match policy.confirm.as_deref() {
        Some(typed) if typed == name => Verdict::Approve {
            how: format!("--approve --confirm {name}"),
        },
        None => Verdict::Reject {
            how: "--approve without --confirm".into(),
            message: format!(
                "context `{name}` is protected: --approve alone does not pass its gates"
            ),
            hint: format!("pass --confirm {name} to show you mean this context"),
        },
        Some(other) => Verdict::Reject {
            how: format!("--confirm {other} (wrong context)"),
            message: format!(
                "context `{name}` is protected and --confirm names `{other}`, not `{name}`"
            ),
            hint: format!("pass --confirm {name} to show you mean this context"),
        },
    }
}

/// Whether a terminal answer approves: the exact text when one is expected,
/// else `y`/`yes`. No answer (end of input, timeout) never approves.
pub fn approves(answer: Option<&str>, expected: Option<&str>) -> bool {
    match (answer, expected) {
        (Some(answer), Some(text)) => answer.trim() == text,
        (Some(answer), None) => matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"),
        (None, _) => false,
    }
}

/// Where a question is asked: a run asks on stdin, a REPL session through
/// its line editor (so the answer does not fight the editor for the terminal).
pub trait Prompter: Send + Sync {
    /// Show `prompt` and read one answer; `None` at end of input, on Ctrl-C
    /// or when the timeout passes.
    fn ask(&self, prompt: &str, timeout: Option<Duration>) -> Option<String>;
}

/// Questions on stderr, answers from stdin.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdinPrompter;

impl Prompter for StdinPrompter {
    fn ask(&self, prompt: &str, timeout: Option<Duration>) -> Option<String> {
        use std::io::Write as _;
        let mut stderr = std::io::stderr();
        let _ = stderr.write_all(prompt.as_bytes());
        let _ = stderr.flush();
        read_answer(timeout)
    }
}

/// A line from stdin, or `None` at end of input or when the timeout passes.
pub fn read_answer(timeout: Option<Duration>) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(interactive: bool, approve: bool, confirm: Option<&str>) -> ApprovalPolicy {
        ApprovalPolicy {
            approve,
            confirm: confirm.map(str::to_owned),
            interactive,
        }
    }

    fn decide(
        policy: &ApprovalPolicy,
        protected: bool,
        gate_confirm: Option<&str>,
        before: bool,
    ) -> Verdict {
        verdict(
            "ship it?",
            &Facts {
                policy,
                protected,
                context: Some("prod"),
                confirm: gate_confirm,
                approved_before: before,
            },
        )
    }

    fn approve(how: &str) -> Verdict {
        Verdict::Approve { how: how.into() }
    }

    fn ask(expected: Option<&str>) -> Verdict {
        Verdict::Ask {
            expected: expected.map(str::to_owned),
        }
    }

    /// Every cell: terminal or not × --approve × --confirm (none, right,
    /// wrong) × protected × the gate's own confirm text × approved before.
    #[test]
    fn every_cell_of_the_gate_table() {
        for interactive in [false, true] {
            for approve_flag in [false, true] {
                for confirm in [None, Some("prod"), Some("staging")] {
                    for protected in [false, true] {
                        for gate_confirm in [None, Some("v2")] {
                            for before in [false, true] {
                                let policy = policy(interactive, approve_flag, confirm);
                                let got = decide(&policy, protected, gate_confirm, before);
                                let expected = if before {
                                    approve("approved before the resume point")
                                } else if interactive {
                                    ask(gate_confirm.or(protected.then_some("prod")))
                                } else if !approve_flag {
                                    Verdict::FailClosed {
                                        how: "no terminal".into(),
                                        message: "approval needed: ship it?".into(),
                                        hint: "no terminal to ask on (or CI is set): re-run with --approve to approve gates in advance".into(),
                                    }
                                } else if !protected {
                                    approve("--approve")
                                } else {
                                    match confirm {
                                        Some("prod") => approve("--approve --confirm prod"),
                                        None => Verdict::Reject {
                                            how: "--approve without --confirm".into(),
                                            message: "context `prod` is protected: --approve alone does not pass its gates".into(),
                                            hint: "pass --confirm prod to show you mean this context".into(),
                                        },
                                        Some(other) => Verdict::Reject {
                                            how: format!("--confirm {other} (wrong context)"),
                                            message: format!("context `prod` is protected and --confirm names `{other}`, not `prod`"),
                                            hint: "pass --confirm prod to show you mean this context".into(),
                                        },
                                    }
                                };
                                assert_eq!(
                                    got, expected,
                                    "interactive={interactive} approve={approve_flag} confirm={confirm:?} protected={protected} gate_confirm={gate_confirm:?} before={before}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn terminal_answers() {
        assert!(approves(Some("y\n"), None));
        assert!(approves(Some(" YES "), None));
        assert!(!approves(Some("n"), None));
        assert!(!approves(Some(""), None));
        assert!(!approves(None, None));
        assert!(approves(Some("prod\n"), Some("prod")));
        assert!(!approves(Some("y"), Some("prod")));
        assert!(!approves(None, Some("prod")));
    }
}
