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

use crate::event::{Event, GateDecision, Kind, Mode, StepStatus};
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
    pub mode: Mode,
    pub kind: Kind,
    pub finished_ok: bool,
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

    let mut state = ResumeState::default();
    let mut started: Vec<(usize, &str)> = Vec::new();
    for (index, event) in events.iter().enumerate() {
        match event {
            Event::StepStart { step, .. } => started.push((index, step)),
            Event::StepEnd {
                step,
                status: StepStatus::Ok | StepStatus::Skipped,
                value,
                redacted: false,
                ..
            } => {
                state
                    .completed
                    .insert(step.clone(), value.clone().unwrap_or(Value::Null));
            }
            _ => {}
        }
    }
    let resume_point = started
        .iter()
        .find(|(_, step)| !state.completed.contains_key(*step))
        .map_or(events.len(), |(index, _)| *index);
    state.approved_gates = events[..resume_point]
        .iter()
        .filter_map(|event| match event {
            Event::Gate {
                message,
                at,
                decision: GateDecision::Approved,
                ..
            } => Some((message.clone(), at.clone())),
            _ => None,
        })
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
