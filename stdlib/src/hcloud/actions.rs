//! Waiting for actions: every write answers with an `action` (and maybe
//! `next_actions`); the waiter polls `GET /actions?id=..` in batches of 25
//! with intervals from the context's `poll_interval` (1 s) growing to 10 s,
//! until each is `success`. One ending in `error` fails with its code.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::backoff::PollInterval;
use super::client::{Client, MAX_POLL, Request};
use super::error::HcloudError;

/// IDs per `GET /actions` request (what hcloud-go sends).
const BATCH: usize = 25;

/// How long a server create may take by default (large images take minutes).
pub(crate) const SERVER_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// How long other actions may take by default.
pub(crate) const ACTION_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// The `id`s of `action` and every entry of `next_actions` (or `actions`) of an answer.
pub(crate) fn action_ids(body: &Value) -> Vec<u64> {
    let mut ids: Vec<u64> = Vec::new();
    if let Some(id) = body.pointer("/action/id").and_then(Value::as_u64) {
        ids.push(id);
    }
    for key in ["next_actions", "actions"] {
        if let Some(list) = body.get(key).and_then(Value::as_array) {
            ids.extend(
                list.iter()
                    .filter_map(|action| action.get("id").and_then(Value::as_u64)),
            );
        }
    }
    ids.dedup();
    ids
}

/// What one poll says about an action.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum State {
    Running,
    Success,
    Error {
        command: String,
        code: String,
        message: String,
    },
}

pub(crate) fn state(action: &Value) -> State {
    let text = |pointer: &str, default: &str| {
        action
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or(default)
            .to_owned()
    };
    match action.get("status").and_then(Value::as_str) {
        Some("success") => State::Success,
        Some("error") => State::Error {
            command: text("/command", "action"),
            code: text("/error/code", "unknown_error"),
            message: text("/error/message", "no message"),
        },
        _ => State::Running,
    }
}

impl Client<'_> {
    /// Wait until every action in `ids` succeeded; `what` names the work.
    /// Returns the time spent waiting.
    pub(crate) async fn wait_actions(
        &self,
        ids: &[u64],
        what: &str,
        timeout: Duration,
    ) -> Result<Duration, HcloudError> {
        let started = Instant::now();
        let mut pending: BTreeSet<u64> = ids.iter().copied().collect();
        let mut intervals = PollInterval::new(self.settings.first_poll, MAX_POLL);
        while !pending.is_empty() {
            let batch: Vec<u64> = pending.iter().copied().collect();
            for chunk in batch.chunks(BATCH) {
                let mut request = Request::get("/actions", format!("{what}: wait for actions"));
                for id in chunk {
                    request = request.query("id", id.to_string());
                }
                let body = self.send(request).await?;
                let actions = body
                    .get("actions")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for action in &actions {
                    let Some(id) = action.get("id").and_then(Value::as_u64) else {
                        continue;
                    };
                    match state(action) {
                        State::Running => {}
                        State::Success => {
                            pending.remove(&id);
                        }
                        State::Error {
                            command,
                            code,
                            message,
                        } => {
                            return Err(HcloudError::Action {
                                what: what.to_owned(),
                                id,
                                command,
                                code,
                                message,
                            });
                        }
                    }
                }
            }
            if pending.is_empty() {
                break;
            }
            if started.elapsed() >= timeout {
                return Err(HcloudError::WaitTimeout {
                    what: format!("{what}: actions {pending:?}"),
                    waited: started.elapsed(),
                });
            }
            let pause = intervals.next().unwrap_or(MAX_POLL);
            tokio::time::sleep(pause.min(timeout.saturating_sub(started.elapsed()))).await;
        }
        Ok(started.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn collects_the_action_and_next_actions() {
        let body = json!({"server": {"id": 1}, "action": {"id": 10}, "next_actions": [{"id": 11}, {"id": 12}]});
        assert_eq!(action_ids(&body), vec![10, 11, 12]);
        let firewall = json!({"firewall": {"id": 3}, "actions": [{"id": 20}, {"id": 21}]});
        assert_eq!(action_ids(&firewall), vec![20, 21]);
        assert!(action_ids(&json!({})).is_empty());
    }

    #[test]
    fn reads_action_states() {
        assert_eq!(state(&json!({"status": "running"})), State::Running);
        assert_eq!(state(&json!({"status": "success"})), State::Success);
        assert_eq!(
            state(
                &json!({"status": "error", "command": "start_server", "error": {"code": "server_error", "message": "boom"}})
            ),
            State::Error {
                command: "start_server".into(),
                code: "server_error".into(),
                message: "boom".into()
            }
        );
    }
}
