//! `runbook resume RUN`: finish a run that died or failed, without repeating
//! what already happened. The script runs again from the top; steps that
//! completed return their recorded value without running; the first
//! incomplete step runs again (so steps must be safe to re-run, like Ansible
//! tasks); gates after that point are asked again. Steps whose value held a
//! secret cannot be restored from the journal and run again.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use rhai::Dynamic;
use serde_json::Value;

use crate::journal::JournalError;

/// What a resumed run takes from its journal.
#[derive(Debug, Clone, Default)]
pub struct ResumeState {
    /// Completed steps and their recorded values.
    pub completed: BTreeMap<String, Value>,
    /// Gates approved before the resume point: (message, location), each usable once.
    pub approved_gates: Vec<(String, String)>,
}

/// The original run as its journal's first line records it.
#[derive(Debug, Clone)]
pub struct Original {
    pub run_id: String,
    pub runbook: String,
    pub sha256: String,
    pub params: Vec<(String, String)>,
    pub context: Option<String>,
    pub mode: String,
    pub finished_ok: bool,
}

fn text(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Read what resuming needs from a journal's events.
pub fn load(path: &Path) -> Result<(Original, ResumeState), JournalError> {
    let events = crate::journal::read(path)?;
    let corrupt = |problem: &str| JournalError::Corrupt {
        path: path.to_owned(),
        line: 1,
        problem: problem.to_owned(),
    };
    let first = events
        .first()
        .ok_or_else(|| corrupt("the journal is empty"))?;
    if text(first, "event") != "run" {
        return Err(corrupt("the first line is not a run record"));
    }
    let params = first
        .get("params")
        .and_then(Value::as_object)
        .map(|map| {
            map.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let finished_ok = events
        .iter()
        .rev()
        .find(|event| text(event, "event") == "end")
        .is_some_and(|end| end.get("exit_code").and_then(Value::as_i64) == Some(0));
    let original = Original {
        run_id: text(first, "run_id"),
        runbook: Path::new(&text(first, "cwd"))
            .join(text(first, "runbook"))
            .display()
            .to_string(),
        sha256: text(first, "sha256"),
        params,
        context: first
            .get("context")
            .and_then(Value::as_str)
            .map(str::to_owned),
        mode: text(first, "mode"),
        finished_ok,
    };

    let mut state = ResumeState::default();
    let mut started: Vec<(usize, String)> = Vec::new();
    for (index, event) in events.iter().enumerate() {
        match text(event, "event").as_str() {
            "step_start" => started.push((index, text(event, "step"))),
            "step_end" => {
                let status = text(event, "status");
                let redacted = event
                    .get("redacted")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                if (status == "ok" || status == "skipped") && !redacted {
                    let value = event.get("value").cloned().unwrap_or(Value::Null);
                    state.completed.insert(text(event, "step"), value);
                }
            }
            _ => {}
        }
    }
    let resume_point = started
        .iter()
        .find(|(_, step)| !state.completed.contains_key(step))
        .map_or(events.len(), |(index, _)| *index);
    state.approved_gates = events[..resume_point]
        .iter()
        .filter(|event| text(event, "event") == "gate" && text(event, "decision") == "approved")
        .map(|event| (text(event, "message"), text(event, "at")))
        .collect();
    Ok((original, state))
}

impl ResumeState {
    /// The recorded value of a completed step.
    pub fn step_value(&self, step: &str) -> Option<Dynamic> {
        self.completed
            .get(step)
            .cloned()
            .map(runbook_stdlib::values::from_json)
    }

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
}
