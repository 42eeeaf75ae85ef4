//! Actions: what the API returns for every asynchronous write, and how
//! they progress in the lab.
//!
//! An action finishes after it was read a few times (`GET /actions/{id}`,
//! `GET /actions?id=`, `GET /servers/{id}/actions`: [`Settings::polls`],
//! default 2), so a client that waits sees `running` with growing
//! `progress` and then `success` in a few polls whatever its poll interval;
//! one nobody polls finishes after [`Settings::time`] anyway, so a
//! forgotten wait cannot lock a server for ever. An action can wait for
//! another (`start_server` waits for `create_server`): it counts no polls
//! before that one succeeded.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// How actions progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Reads an action needs before it finishes.
    pub polls: u32,
    /// How long after it could start an action finishes even if nobody reads it.
    pub time: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            polls: 2,
            time: Duration::from_secs(3),
        }
    }
}

/// What finishing an action does to the project, besides its own status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    None,
    /// `start_server`: the server runs and accepts its ssh keys.
    Boot(u64),
    /// `delete_server`: the server is gone.
    RemoveServer(u64),
}

/// One action.
#[derive(Debug, Clone)]
pub(crate) struct Action {
    pub(crate) id: u64,
    pub(crate) command: &'static str,
    /// `(id, type)`: the resources it works on (`server`, `firewall`).
    pub(crate) resources: Vec<(u64, &'static str)>,
    pub(crate) started: DateTime<Utc>,
    pub(crate) finished: Option<DateTime<Utc>>,
    /// `Some((code, message))` once it failed.
    pub(crate) error: Option<(String, String)>,
    /// It counts no polls and does not start before this action succeeded.
    pub(crate) after: Option<u64>,
    /// The error it will end with (an injected fault).
    pub(crate) fails_with: Option<(String, String)>,
    pub(crate) effect: Effect,
    pub(crate) polls: u32,
    /// When it was created, and when it could start (its `after` succeeded).
    pub(crate) created_at: Instant,
    pub(crate) ready_at: Option<Instant>,
    pub(crate) finished_at: Option<Instant>,
}

/// An action's `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Running,
    Success,
    Error,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Success => "success",
            Status::Error => "error",
        }
    }
}

impl Action {
    pub(crate) fn new(
        id: u64,
        command: &'static str,
        resources: Vec<(u64, &'static str)>,
        now: Instant,
    ) -> Action {
        Action {
            id,
            command,
            resources,
            started: Utc::now(),
            finished: None,
            error: None,
            after: None,
            fails_with: None,
            effect: Effect::None,
            polls: 0,
            created_at: now,
            ready_at: Some(now),
            finished_at: None,
        }
    }

    pub(crate) fn status(&self) -> Status {
        match (&self.finished, &self.error) {
            (None, _) => Status::Running,
            (Some(_), None) => Status::Success,
            (Some(_), Some(_)) => Status::Error,
        }
    }

    pub(crate) fn running(&self) -> bool {
        self.finished.is_none()
    }

    /// Whether it works on the resource `(id, kind)`.
    pub(crate) fn touches(&self, id: u64, kind: &str) -> bool {
        self.resources
            .iter()
            .any(|(resource, resource_kind)| *resource == id && *resource_kind == kind)
    }

    /// `progress`: the share of its polls seen, 100 once finished.
    fn progress(&self, settings: &Settings) -> u32 {
        if self.finished.is_some() {
            return 100;
        }
        let needed = settings.polls.max(1);
        (self.polls.min(needed) * 100 / (needed + 1)).min(99)
    }

    /// Count one read; true when that finished it.
    pub(crate) fn poll(&mut self, settings: &Settings, now: Instant) -> bool {
        if !self.running() || self.ready_at.is_none() {
            return false;
        }
        self.polls += 1;
        if self.polls >= settings.polls {
            self.finish(now);
            return true;
        }
        false
    }

    /// Finish on time even if nobody polls; true when it finished now.
    pub(crate) fn tick(&mut self, settings: &Settings, now: Instant) -> bool {
        match self.ready_at {
            Some(ready) if self.running() && now >= ready + settings.time => {
                self.finish(now);
                true
            }
            _ => false,
        }
    }

    /// End now in `error` (what waited for a failed action).
    pub(crate) fn fail(&mut self, now: Instant, code: &str, message: &str) {
        self.fails_with = Some((code.to_owned(), message.to_owned()));
        self.finish(now);
    }

    fn finish(&mut self, now: Instant) {
        self.finished = Some(Utc::now());
        self.finished_at = Some(now);
        self.error = self.fails_with.take();
    }

    /// How long it ran (None while it runs).
    pub(crate) fn duration(&self) -> Option<Duration> {
        self.finished_at
            .map(|finished| finished.duration_since(self.created_at))
    }

    pub(crate) fn to_json(&self, settings: &Settings) -> Value {
        let resources: Vec<Value> = self
            .resources
            .iter()
            .map(|(id, kind)| json!({"id": id, "type": kind}))
            .collect();
        json!({
            "id": self.id,
            "command": self.command,
            "status": self.status().as_str(),
            "progress": self.progress(settings),
            "started": timestamp(&self.started),
            "finished": self.finished.as_ref().map(timestamp),
            "resources": resources,
            "error": self.error.as_ref().map(|(code, message)| json!({"code": code, "message": message})),
        })
    }
}

/// The API's timestamps: RFC 3339 with `+00:00`.
pub(crate) fn timestamp(time: &DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_action_succeeds_after_its_polls_with_growing_progress() {
        let settings = Settings {
            polls: 3,
            time: Duration::from_secs(60),
        };
        let now = Instant::now();
        let mut action = Action::new(1, "create_server", vec![(7, "server")], now);
        let mut seen = vec![action.to_json(&settings)["progress"].as_u64().unwrap()];
        assert!(!action.poll(&settings, now));
        seen.push(action.to_json(&settings)["progress"].as_u64().unwrap());
        assert!(!action.poll(&settings, now));
        assert_eq!(action.to_json(&settings)["status"], "running");
        assert!(action.poll(&settings, now));
        let done = action.to_json(&settings);
        seen.push(done["progress"].as_u64().unwrap());
        assert_eq!(seen, [0, 25, 100]);
        assert_eq!(done["status"], "success");
        assert!(done["finished"].is_string());
        assert!(done["error"].is_null());
        assert_eq!(done["resources"], json!([{"id": 7, "type": "server"}]));
    }

    #[test]
    fn an_injected_failure_ends_in_error_with_its_code() {
        let settings = Settings {
            polls: 1,
            time: Duration::from_secs(60),
        };
        let now = Instant::now();
        let mut action = Action::new(1, "start_server", Vec::new(), now);
        action.fails_with = Some(("action_failed".into(), "boom".into()));
        assert!(action.poll(&settings, now));
        let json = action.to_json(&settings);
        assert_eq!(json["status"], "error");
        assert_eq!(
            json["error"],
            json!({"code": "action_failed", "message": "boom"})
        );
    }

    #[test]
    fn waiting_actions_count_nothing_and_unpolled_ones_finish_on_time() {
        let settings = Settings {
            polls: 1,
            time: Duration::from_millis(10),
        };
        let now = Instant::now();
        let mut waiting = Action::new(2, "start_server", Vec::new(), now);
        waiting.ready_at = None;
        assert!(!waiting.poll(&settings, now));
        assert!(!waiting.tick(&settings, now + Duration::from_secs(1)));
        let mut action = Action::new(3, "delete_server", Vec::new(), now);
        assert!(!action.tick(&settings, now));
        assert!(action.tick(&settings, now + Duration::from_millis(10)));
        assert_eq!(action.duration(), Some(Duration::from_millis(10)));
    }
}
