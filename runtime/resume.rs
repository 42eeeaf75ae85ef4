//! `runbook resume RUN`: finish a run that died or failed as the original
//! would have, by **replay**. The script runs again from the top; until it
//! reaches the point where the earlier attempt stopped, every stdlib call
//! returns its journaled result in order instead of executing (a call that
//! does not match the journal is an error naming the line: the runbook
//! diverged). So completed steps get their values back, and their
//! `on_rollback` closures are created again with the values they captured
//! the first time: a failure after the resume rolls back the whole run.
//!
//! Where replay ends (the *resume point*): at the start of the first step
//! that did not complete (it runs again from its start), or of the first
//! step whose compensation already ran (the world was put back, so it runs
//! again), or at the first gate that was not approved. Values holding a
//! secret come back from their sealed copies (`seal.rs`).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::Path;

use serde_json::Value;

use crate::event::{CallOutcome, Event, GateDecision, Kind, Mode, StepStatus};
use crate::journal::JournalError;

/// One call as the journal recorded it, to be answered again on replay.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedCall {
    pub function: String,
    pub args: Vec<String>,
    pub at: String,
    /// `Err(message)` for a call that failed.
    pub outcome: Result<(), String>,
    pub result: Option<Value>,
    pub sealed: Option<String>,
}

/// What a resumed run takes from its journal.
#[derive(Debug, Clone, Default)]
pub struct ResumeState {
    /// Steps completed before the resume point, with their recorded values.
    pub completed: BTreeMap<String, Value>,
    /// Gates approved before the resume point: (message, location), each usable once.
    pub approved_gates: Vec<(String, String)>,
    /// The calls before the resume point, in order: replayed, not run.
    pub calls: VecDeque<RecordedCall>,
    /// Steps that started in some attempt and never ended (the process
    /// died inside them): a step marked `once` stops the resume there.
    pub interrupted: HashSet<String>,
    /// How many sealed values the journal holds (resume needs the run key).
    pub sealed: usize,
}

/// The original run as its journal's first line records it.
#[derive(Debug, Clone)]
pub struct Original {
    pub run_id: String,
    pub runbook: String,
    pub sha256: String,
    pub params: Vec<(String, String)>,
    pub context: Option<String>,
    pub mode: Mode,
    pub kind: Kind,
    pub finished_ok: bool,
}

/// The part of a journal that replay follows.
#[derive(Debug, Clone, PartialEq)]
enum Item {
    StepStart(String),
    StepEnd(String, StepStatus, Option<Value>),
    Call(RecordedCall),
    Gate(String, String, GateDecision),
    Rollback(String, StepStatus),
}

/// Where the items stop counting: the resume point of this history.
fn resume_point(items: &[Item]) -> usize {
    let ended_ok: HashSet<&str> = items
        .iter()
        .filter_map(|item| match item {
            Item::StepEnd(step, StepStatus::Ok | StepStatus::Skipped, _) => Some(step.as_str()),
            _ => None,
        })
        .collect();
    let rolled_back: HashSet<&str> = items
        .iter()
        .filter_map(|item| match item {
            Item::Rollback(step, StepStatus::Ok | StepStatus::Failed) => Some(step.as_str()),
            _ => None,
        })
        .collect();
    items
        .iter()
        .position(|item| match item {
            Item::StepStart(step) => {
                !ended_ok.contains(step.as_str()) || rolled_back.contains(step.as_str())
            }
            Item::Gate(_, _, decision) => {
                !matches!(decision, GateDecision::Approved | GateDecision::Waiting)
            }
            // Rollbacks come after the failure; what they undid starts again.
            Item::Rollback(..) => true,
            _ => false,
        })
        .unwrap_or(items.len())
}

/// What each attempt left standing: at every `resume` line the history is
/// cut back to its resume point (the new attempt replayed that much and
/// then went on).
fn history(events: &[Event]) -> Vec<Item> {
    let mut items = Vec::new();
    for event in events {
        match event {
            Event::Resume { .. } => {
                let point = resume_point(&items);
                items.truncate(point);
            }
            Event::StepStart { step, .. } => items.push(Item::StepStart(step.clone())),
            Event::StepEnd {
                step,
                status,
                value,
                ..
            } => items.push(Item::StepEnd(step.clone(), *status, value.clone())),
            Event::Call {
                function,
                args,
                at,
                outcome,
                error,
                result,
                sealed,
                ..
            } => {
                let outcome = match outcome {
                    CallOutcome::Error => Err(error.clone().unwrap_or_default()),
                    _ => Ok(()),
                };
                items.push(Item::Call(RecordedCall {
                    function: function.clone(),
                    args: args.clone(),
                    at: at.clone(),
                    outcome,
                    result: result.clone(),
                    sealed: sealed.clone(),
                }));
            }
            Event::Gate {
                message,
                at,
                decision,
                ..
            } => items.push(Item::Gate(message.clone(), at.clone(), *decision)),
            Event::Rollback { step, status, .. } => {
                items.push(Item::Rollback(step.clone(), *status));
            }
            _ => {}
        }
    }
    let point = resume_point(&items);
    items.truncate(point);
    items
}

/// Read what resuming needs from a journal's events.
pub fn load(path: &Path) -> Result<(Original, ResumeState), JournalError> {
    let events = crate::journal::read(path)?.events;
    let corrupt = |problem: &str| JournalError::Corrupt {
        path: path.to_owned(),
        line: 1,
        problem: problem.to_owned(),
    };
    let Some(Event::Run {
        run_id,
        runbook,
        cwd,
        sha256,
        params,
        context,
        mode,
        kind,
        ..
    }) = events.first()
    else {
        return Err(corrupt(if events.is_empty() {
            "the journal is empty"
        } else {
            "the first line is not a run record"
        }));
    };
    let finished_ok = events.iter().rev().find_map(|event| match event {
        Event::End { exit_code, .. } => Some(*exit_code == 0),
        _ => None,
    }) == Some(true);
    let original = Original {
        run_id: run_id.clone(),
        runbook: Path::new(cwd).join(runbook).display().to_string(),
        sha256: sha256.clone(),
        params: params
            .iter()
            .map(|(name, value)| (name.clone(), value.as_str().unwrap_or_default().to_owned()))
            .collect(),
        context: context.clone(),
        mode: *mode,
        kind: *kind,
        finished_ok,
    };
    Ok((original, state_of(&events)))
}

fn state_of(events: &[Event]) -> ResumeState {
    let mut state = ResumeState::default();
    // Whether each step's last start has no end yet (the process died in it).
    let mut open: BTreeMap<&str, bool> = BTreeMap::new();
    for event in events {
        match event {
            Event::StepStart { step, .. } => {
                open.insert(step, true);
            }
            Event::StepEnd { step, sealed, .. } => {
                open.insert(step, false);
                state.sealed += usize::from(sealed.is_some());
            }
            Event::Call { sealed, .. } => state.sealed += usize::from(sealed.is_some()),
            _ => {}
        }
    }
    state.interrupted = open
        .into_iter()
        .filter(|(_, open)| *open)
        .map(|(step, _)| step.to_owned())
        .collect();
    for item in history(events) {
        match item {
            Item::StepEnd(step, StepStatus::Ok | StepStatus::Skipped, value) => {
                state.completed.insert(step, value.unwrap_or(Value::Null));
            }
            Item::Call(call) => state.calls.push_back(call),
            Item::Gate(message, at, GateDecision::Approved) => {
                state.approved_gates.push((message, at));
            }
            _ => {}
        }
    }
    state
}

impl ResumeState {
    /// Use up a gate approved before the resume point, if this one is it.
    pub fn take_gate(&mut self, message: &str, at: &str) -> bool {
        match self
            .approved_gates
            .iter()
            .position(|(m, a)| m == message && a == at)
        {
            Some(index) => {
                self.approved_gates.remove(index);
                true
            }
            None => false,
        }
    }

    pub fn completed_names(&self) -> HashSet<&str> {
        self.completed.keys().map(String::as_str).collect()
    }

    /// Every sealed blob the journal's replay needs.
    pub fn sealed_blobs(&self) -> impl Iterator<Item = &str> {
        self.calls.iter().filter_map(|call| call.sealed.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(step: &str) -> Event {
        Event::StepStart {
            step: step.into(),
            time: String::new(),
        }
    }

    fn end(step: &str) -> Event {
        Event::StepEnd {
            step: step.into(),
            status: StepStatus::Ok,
            duration_ms: 0,
            value: None,
            redacted: false,
            sealed: None,
            error: None,
            time: String::new(),
        }
    }

    fn call(function: &str) -> Event {
        Event::Call {
            function: function.into(),
            effect: runbook_stdlib::Effect::Write,
            args: Vec::new(),
            arguments: Vec::new(),
            diff: None,
            redacted: false,
            at: String::new(),
            step: None,
            outcome: CallOutcome::Ok,
            duration_ms: 0,
            error: None,
            result: None,
            sealed: None,
            time: String::new(),
        }
    }

    fn rollback(step: &str) -> Event {
        Event::Rollback {
            step: step.into(),
            status: StepStatus::Ok,
            error: None,
            time: String::new(),
        }
    }

    fn resume() -> Event {
        Event::Resume {
            user: String::new(),
            host: String::new(),
            version: String::new(),
            force: false,
            cut_bytes: 0,
            time: String::new(),
        }
    }

    fn functions(state: &ResumeState) -> Vec<&str> {
        state
            .calls
            .iter()
            .map(|call| call.function.as_str())
            .collect()
    }

    #[test]
    fn replay_stops_at_the_step_that_did_not_end() {
        let events = [
            start("a"),
            call("one"),
            end("a"),
            call("top"),
            start("b"),
            call("two"),
        ];
        let state = state_of(&events);
        assert_eq!(functions(&state), ["one", "top"]);
        assert_eq!(state.completed_names(), HashSet::from(["a"]));
        assert_eq!(state.interrupted, HashSet::from(["b".to_owned()]));
    }

    #[test]
    fn an_outer_step_that_did_not_end_runs_again_whole() {
        let events = [
            start("outer"),
            start("inner"),
            call("one"),
            end("inner"),
            start("second"),
        ];
        let state = state_of(&events);
        assert!(state.calls.is_empty());
        assert!(state.completed.is_empty());
    }

    #[test]
    fn rolled_back_steps_run_again() {
        let events = [
            start("a"),
            call("one"),
            end("a"),
            start("b"),
            call("two"),
            end("b"),
            start("c"),
            rollback("b"),
        ];
        let state = state_of(&events);
        assert_eq!(functions(&state), ["one"]);
        assert_eq!(state.completed_names(), HashSet::from(["a"]));
    }

    #[test]
    fn each_attempt_keeps_only_what_it_replayed_and_then_did() {
        let events = [
            start("a"),
            call("one"),
            end("a"),
            start("b"),
            call("lost"),
            // killed; the second attempt replays `one`, reruns b, dies in c
            resume(),
            start("b"),
            call("two"),
            end("b"),
            start("c"),
            call("three"),
        ];
        let state = state_of(&events);
        assert_eq!(functions(&state), ["one", "two"]);
        assert_eq!(state.completed_names(), HashSet::from(["a", "b"]));
        assert_eq!(state.interrupted, HashSet::from(["c".to_owned()]));
    }
}
