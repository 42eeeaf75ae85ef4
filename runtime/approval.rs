//! Approval gates: a person says yes before a run changes something that
//! matters. The verdict is a pure function of what is known at the gate
//! ([`verdict`]): interactive runs ask on the terminal; non-interactive runs
//! fail closed unless started with `--approve` (and, for a protected
//! context, `--confirm CONTEXT`), or wait for `runbook approve` from another
//! shell when started with `--wait-for-approval DURATION` (`remote.rs`). In a
//! `four_eyes` context the person who started the run approves nothing: its
//! gates wait for someone else, or are refused. Whether a gate is asked at all (a dry-run
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
    /// `--wait-for-approval DURATION`: a gate nobody here can approve waits
    /// this long for `runbook approve`/`reject` from another shell.
    pub wait: Option<Duration>,
}

impl ApprovalPolicy {
    pub fn new(approve: bool, confirm: Option<String>, wait: Option<Duration>) -> Self {
        let interactive = std::io::stdin().is_terminal()
            && std::io::stderr().is_terminal()
            && !crate::identity::ci();
        ApprovalPolicy {
            approve,
            confirm,
            interactive,
            wait,
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
    /// The context is `four_eyes = true`: whoever started the run cannot approve it.
    pub four_eyes: bool,
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
    /// Wait (at most `timeout`) for someone to answer with `runbook approve`
    /// (with `--confirm` = `expected`, when there is text to type) or
    /// `runbook reject` from another shell.
    Wait {
        timeout: Duration,
        expected: Option<String>,
    },
}

/// The hint of every refusal that someone else's approval would fix.
fn four_eyes_hint() -> String {
    "start the run with --wait-for-approval 30m and ask someone else to run `runbook approve RUN`"
        .to_owned()
}

/// Decide a gate. Pure: every input is in `facts`.
///
/// In order: an approval before the resume point counts; a terminal asks
/// (unless four eyes are required: the person at it started the run); in a
/// four-eyes context nothing the starter did approves, so the gate waits
/// (`--wait-for-approval`) or is refused; `--approve` passes (with the right
/// `--confirm` on a protected context); whatever is left waits when the run
/// may wait, else fails closed. A `--confirm` naming another context is
/// always a rejection: it shows a mix-up, not a missing approval.
pub fn verdict(gate_message: &str, facts: &Facts<'_>) -> Verdict {
    if facts.approved_before {
        return Verdict::Approve {
            how: "approved before the resume point".into(),
        };
    }
    let policy = facts.policy;
    let name = facts.context.unwrap_or_default();
    let expected = facts
        .confirm
        .map(str::to_owned)
        .or_else(|| facts.protected.then(|| name.to_owned()));
    if policy.interactive && !facts.four_eyes {
        return Verdict::Ask { expected };
    }
    let wait = policy.wait.map(|timeout| Verdict::Wait {
        timeout,
        expected: expected.clone(),
    });
    if facts.four_eyes {
        if let Some(wait) = wait {
            return wait;
        }
        return if policy.approve {
            Verdict::Reject {
                how: "--approve on a four-eyes context".into(),
                message: format!(
                    "context `{name}` requires four eyes: the person who started the run cannot approve its gates, not even with --approve"
                ),
                hint: four_eyes_hint(),
            }
        } else if policy.interactive {
            Verdict::Reject {
                how: "four eyes (terminal of the starter)".into(),
                message: format!(
                    "context `{name}` requires four eyes: the person who started the run cannot approve its gates at its terminal"
                ),
                hint: four_eyes_hint(),
            }
        } else {
            Verdict::FailClosed {
                how: "no terminal".into(),
                message: format!("approval needed: {gate_message}"),
                hint: format!("context `{name}` requires four eyes: {}", four_eyes_hint()),
            }
        };
    }
    if !policy.approve {
        if let Some(wait) = wait {
            return wait;
        }
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
    match policy.confirm.as_deref() {
        Some(typed) if typed == name => Verdict::Approve {
            how: format!("--approve --confirm {name}"),
        },
        None => wait.unwrap_or_else(|| Verdict::Reject {
            how: "--approve without --confirm".into(),
            message: format!(
                "context `{name}` is protected: --approve alone does not pass its gates"
            ),
            hint: format!("pass --confirm {name} to show you mean this context"),
        }),
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

    const WAIT: Duration = Duration::from_secs(1800);

    fn policy(
        interactive: bool,
        approve: bool,
        confirm: Option<&str>,
        wait: Option<Duration>,
    ) -> ApprovalPolicy {
        ApprovalPolicy {
            approve,
            confirm: confirm.map(str::to_owned),
            interactive,
            wait,
        }
    }

    fn approve(how: &str) -> Verdict {
        Verdict::Approve { how: how.into() }
    }

    fn ask(expected: Option<&str>) -> Verdict {
        Verdict::Ask {
            expected: expected.map(str::to_owned),
        }
    }

    fn reject(how: &str, message: &str, hint: &str) -> Verdict {
        Verdict::Reject {
            how: how.into(),
            message: message.into(),
            hint: hint.into(),
        }
    }

    const FOUR_EYES_HINT: &str = "start the run with --wait-for-approval 30m and ask someone else to run `runbook approve RUN`";

    /// Every cell: terminal or not × --approve × --confirm (none, right,
    /// wrong) × protected × the gate's own confirm text × approved before ×
    /// --wait-for-approval × four eyes.
    #[test]
    fn every_cell_of_the_gate_table() {
        let mut cells = 0;
        for interactive in [false, true] {
            for approve_flag in [false, true] {
                for confirm in [None, Some("prod"), Some("staging")] {
                    for protected in [false, true] {
                        for gate_confirm in [None, Some("v2")] {
                            for before in [false, true] {
                                for wait in [None, Some(WAIT)] {
                                    for four_eyes in [false, true] {
                                        let policy =
                                            policy(interactive, approve_flag, confirm, wait);
                                        let got = verdict(
                                            "ship it?",
                                            &Facts {
                                                policy: &policy,
                                                protected,
                                                context: Some("prod"),
                                                confirm: gate_confirm,
                                                approved_before: before,
                                                four_eyes,
                                            },
                                        );
                                        let typed = gate_confirm.or(protected.then_some("prod"));
                                        let waits = Verdict::Wait {
                                            timeout: WAIT,
                                            expected: typed.map(str::to_owned),
                                        };
                                        let fail_closed = |hint: &str| Verdict::FailClosed {
                                            how: "no terminal".into(),
                                            message: "approval needed: ship it?".into(),
                                            hint: hint.into(),
                                        };
                                        let expected = if before {
                                            approve("approved before the resume point")
                                        } else if interactive && !four_eyes {
                                            ask(typed)
                                        } else if four_eyes {
                                            if wait.is_some() {
                                                waits
                                            } else if approve_flag {
                                                reject(
                                                    "--approve on a four-eyes context",
                                                    "context `prod` requires four eyes: the person who started the run cannot approve its gates, not even with --approve",
                                                    FOUR_EYES_HINT,
                                                )
                                            } else if interactive {
                                                reject(
                                                    "four eyes (terminal of the starter)",
                                                    "context `prod` requires four eyes: the person who started the run cannot approve its gates at its terminal",
                                                    FOUR_EYES_HINT,
                                                )
                                            } else {
                                                fail_closed(&format!(
                                                    "context `prod` requires four eyes: {FOUR_EYES_HINT}"
                                                ))
                                            }
                                        } else if !approve_flag {
                                            if wait.is_some() {
                                                waits
                                            } else {
                                                fail_closed(
                                                    "no terminal to ask on (or CI is set): re-run with --approve to approve gates in advance",
                                                )
                                            }
                                        } else if !protected {
                                            approve("--approve")
                                        } else {
                                            match confirm {
                                                Some("prod") => approve("--approve --confirm prod"),
                                                None if wait.is_some() => waits,
                                                None => reject(
                                                    "--approve without --confirm",
                                                    "context `prod` is protected: --approve alone does not pass its gates",
                                                    "pass --confirm prod to show you mean this context",
                                                ),
                                                Some(other) => reject(
                                                    &format!("--confirm {other} (wrong context)"),
                                                    &format!(
                                                        "context `prod` is protected and --confirm names `{other}`, not `prod`"
                                                    ),
                                                    "pass --confirm prod to show you mean this context",
                                                ),
                                            }
                                        };
                                        assert_eq!(
                                            got, expected,
                                            "interactive={interactive} approve={approve_flag} confirm={confirm:?} protected={protected} gate_confirm={gate_confirm:?} before={before} wait={wait:?} four_eyes={four_eyes}"
                                        );
                                        cells += 1;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(cells, 2 * 2 * 3 * 2 * 2 * 2 * 2 * 2);
    }

    /// Four eyes never lets the starter through, whatever else is set; a
    /// run that may wait always waits rather than failing closed.
    #[test]
    fn four_eyes_never_approves_and_waiting_never_fails_closed() {
        for interactive in [false, true] {
            for approve_flag in [false, true] {
                for confirm in [None, Some("prod")] {
                    for wait in [None, Some(WAIT)] {
                        let policy = policy(interactive, approve_flag, confirm, wait);
                        let facts = Facts {
                            policy: &policy,
                            protected: true,
                            context: Some("prod"),
                            confirm: None,
                            approved_before: false,
                            four_eyes: true,
                        };
                        let got = verdict("ship it?", &facts);
                        assert!(
                            !matches!(got, Verdict::Approve { .. } | Verdict::Ask { .. }),
                            "{got:?}"
                        );
                        assert_eq!(matches!(got, Verdict::Wait { .. }), wait.is_some());
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
