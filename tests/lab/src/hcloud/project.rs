//! One Hetzner Cloud project: every resource, action and pending fault,
//! behind one lock, plus the request log tests read.
//!
//! IDs come from one counter for every kind, so an ID never names two
//! things and a deleted resource's ID is never reused.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::actions::{Action, Effect, Settings};
use super::boot::Hosts;
use super::faults::Faults;
use super::firewalls::Firewall;
use super::rate::Budget;
use super::servers::Server;

/// One request as the fake answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path without `/v1`, e.g. `/servers/42`.
    pub path: String,
    pub query: String,
    pub status: u16,
}

/// What one finished action cost its waiters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionRecord {
    pub id: u64,
    pub command: String,
    pub status: String,
    /// Reads it took (a waiter's polls).
    pub polls: u32,
    /// From creation to finish.
    pub duration: Duration,
}

#[derive(Debug)]
pub(crate) struct Project {
    next_id: u64,
    pub(crate) servers: BTreeMap<u64, Server>,
    pub(crate) ssh_keys: BTreeMap<u64, Value>,
    pub(crate) firewalls: BTreeMap<u64, Firewall>,
    pub(crate) actions: BTreeMap<u64, Action>,
    pub(crate) settings: Settings,
    pub(crate) faults: Faults,
    pub(crate) hosts: Hosts,
    pub(crate) log: Vec<Request>,
    pub(crate) rate: Budget,
}

impl Project {
    pub(crate) fn new(settings: Settings, hosts: Hosts) -> Project {
        Project {
            next_id: 1000,
            servers: BTreeMap::new(),
            ssh_keys: BTreeMap::new(),
            firewalls: BTreeMap::new(),
            actions: BTreeMap::new(),
            settings,
            faults: Faults::default(),
            hosts,
            log: Vec::new(),
            rate: Budget::new(Instant::now()),
        }
    }

    pub(crate) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Start an action on `resources`; an injected fault may make it fail.
    pub(crate) fn start_action(
        &mut self,
        command: &'static str,
        resources: Vec<(u64, &'static str)>,
    ) -> u64 {
        let id = self.next_id();
        let mut action = Action::new(id, command, resources, Instant::now());
        action.fails_with = self.faults.take_action_error(command);
        self.actions.insert(id, action);
        id
    }

    /// Whether an action runs on the server (writes to it are `locked`).
    pub(crate) fn server_locked(&self, id: u64) -> bool {
        self.actions
            .values()
            .any(|action| action.running() && action.touches(id, "server"))
    }

    /// Count a read of action `id` (a waiter's poll), then apply what
    /// finishing it does.
    pub(crate) fn poll_action(&mut self, id: u64) {
        let settings = self.settings;
        let finished = self
            .actions
            .get_mut(&id)
            .is_some_and(|action| action.poll(&settings, Instant::now()));
        if finished {
            self.finished(id);
        }
    }

    /// Finish the actions nobody polled in time.
    pub(crate) fn tick(&mut self) {
        let settings = self.settings;
        let now = Instant::now();
        let finished: Vec<u64> = self
            .actions
            .values_mut()
            .filter_map(|action| action.tick(&settings, now).then_some(action.id))
            .collect();
        for id in finished {
            self.finished(id);
        }
    }

    /// Apply a finished action: let the actions waiting for it start (or
    /// fail with it), and do its effect.
    fn finished(&mut self, id: u64) {
        let Some(action) = self.actions.get(&id) else {
            return;
        };
        let failed = action.error.clone();
        let effect = action.effect;
        let now = Instant::now();
        let waiting: Vec<u64> = self
            .actions
            .values()
            .filter(|other| other.after == Some(id) && other.running())
            .map(|other| other.id)
            .collect();
        for other in waiting {
            if let Some(other) = self.actions.get_mut(&other) {
                other.ready_at = Some(now);
                if failed.is_some() {
                    // What waited for a failed action cannot run either.
                    other.fail(
                        now,
                        "action_failed",
                        &format!("action {id} it depends on failed"),
                    );
                }
            }
        }
        if failed.is_some() {
            return;
        }
        match effect {
            Effect::None => {}
            Effect::Boot(server) => {
                if let Some(server) = self.servers.get(&server) {
                    let keys = server.public_keys.clone();
                    let address = server.address;
                    self.hosts.authorize(address, &keys);
                }
            }
            Effect::RemoveServer(server) => self.remove_server(server),
        }
    }

    /// Drop a server and every trace of it: firewall attachments, its
    /// address (whose authorized keys are emptied).
    pub(crate) fn remove_server(&mut self, id: u64) {
        if let Some(server) = self.servers.remove(&id) {
            self.hosts.release(server.address);
        }
        for firewall in self.firewalls.values_mut() {
            firewall.servers.retain(|server| *server != id);
        }
    }

    /// What finished actions cost, in creation order.
    pub(crate) fn action_records(&self) -> Vec<ActionRecord> {
        self.actions
            .values()
            .filter_map(|action| {
                Some(ActionRecord {
                    id: action.id,
                    command: action.command.to_owned(),
                    status: action.status().as_str().to_owned(),
                    polls: action.polls,
                    duration: action.duration()?,
                })
            })
            .collect()
    }
}

/// Check a `labels` object: keys and values as the API allows them, the
/// `hetzner.cloud/` prefix reserved. Missing is an empty map.
pub(crate) fn labels(body: &Value) -> Result<Map<String, Value>, super::errors::ApiError> {
    use super::errors::ApiError;
    let Some(labels) = body.get("labels") else {
        return Ok(Map::new());
    };
    if labels.is_null() {
        return Ok(Map::new());
    }
    let labels = labels
        .as_object()
        .ok_or_else(|| ApiError::invalid("labels", "must be an object"))?;
    for (key, value) in labels {
        let name = key.rsplit('/').next().unwrap_or_default();
        let valid_name = !name.is_empty()
            && name.len() <= 63
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !valid_name || key.starts_with("hetzner.cloud/") {
            return Err(ApiError::invalid(
                "labels",
                &format!("invalid label key '{key}'"),
            ));
        }
        let text = value.as_str().ok_or_else(|| {
            ApiError::invalid("labels", &format!("label '{key}' must be a string"))
        })?;
        let valid_value = text.len() <= 63
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !valid_value {
            return Err(ApiError::invalid(
                "labels",
                &format!("invalid label value '{text}'"),
            ));
        }
    }
    Ok(labels.clone())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn labels_follow_the_documented_rules() {
        assert!(labels(&json!({})).unwrap().is_empty());
        let ok = labels(
            &json!({"labels": {"managed-by": "runbook", "example.com/env": "", "a.b_c": "x-1"}}),
        );
        assert_eq!(ok.unwrap().len(), 3);
        for bad in [
            json!({"labels": {"hetzner.cloud/x": "y"}}),
            json!({"labels": {"-x": "y"}}),
            json!({"labels": {"x": "a b"}}),
            json!({"labels": {"x": 1}}),
            json!({"labels": []}),
        ] {
            let error = labels(&bad).unwrap_err();
            assert_eq!(error.code, "invalid_input", "{bad}");
        }
    }
}
