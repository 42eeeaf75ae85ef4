//! Faults a test can inject ([`super::HcloudApi::inject`]), each one the
//! API really produces (ANCHORS-WAVE2.md §1 "Flaky behaviour"): rate
//! limiting, `locked` and `conflict` answers, an action that fails, a
//! create whose response is lost, no capacity for a server type.

use std::collections::VecDeque;

use super::errors::ApiError;

/// One fault, consumed as requests meet it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The next `count` requests (any) get 429 `rate_limit_exceeded`, with
    /// `RateLimit-Remaining: 0` and a `RateLimit-Reset` one second ahead.
    RateLimit { count: u32 },
    /// The next `count` writes (POST, PUT, DELETE) get `locked`.
    Locked { count: u32 },
    /// The next `count` writes get `conflict` ("resource has changed during
    /// the request, please retry").
    Conflict { count: u32 },
    /// The next action with this `command` (`create_server`, `start_server`,
    /// `delete_server`, `apply_firewall`...) ends in `error` with `code`.
    ActionError {
        command: String,
        code: String,
        message: String,
    },
    /// The next successful `POST /servers` creates the server, then closes
    /// the connection without an answer.
    DropCreateResponse,
    /// The next `count` `POST /servers` get `resource_unavailable`, as when a
    /// server type is out of stock in a location.
    ResourceUnavailable { count: u32 },
}

/// The faults still pending.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    rate_limit: u32,
    locked: u32,
    conflict: u32,
    unavailable: u32,
    drop_create: u32,
    action_errors: VecDeque<(String, String, String)>,
}

impl Faults {
    pub(crate) fn add(&mut self, fault: Fault) {
        match fault {
            Fault::RateLimit { count } => self.rate_limit += count,
            Fault::Locked { count } => self.locked += count,
            Fault::Conflict { count } => self.conflict += count,
            Fault::ResourceUnavailable { count } => self.unavailable += count,
            Fault::DropCreateResponse => self.drop_create += 1,
            Fault::ActionError {
                command,
                code,
                message,
            } => self.action_errors.push_back((command, code, message)),
        }
    }

    /// Whether this request is refused for the rate limit.
    pub(crate) fn take_rate_limit(&mut self) -> bool {
        take(&mut self.rate_limit)
    }

    /// The error a write gets before it is looked at, if any.
    pub(crate) fn take_write_error(&mut self) -> Option<ApiError> {
        if take(&mut self.locked) {
            return Some(ApiError::locked());
        }
        if take(&mut self.conflict) {
            return Some(ApiError::new(
                "conflict",
                "resource has changed during the request, please retry",
            ));
        }
        None
    }

    /// The error a `POST /servers` gets, if any.
    pub(crate) fn take_create_error(&mut self) -> Option<ApiError> {
        take(&mut self.unavailable).then(|| {
            ApiError::new(
                "resource_unavailable",
                "error during placement: server type is not available in this location",
            )
        })
    }

    /// Whether this successful create loses its response.
    pub(crate) fn take_drop_create(&mut self) -> bool {
        take(&mut self.drop_create)
    }

    /// The `(code, message)` the next action with `command` fails with.
    pub(crate) fn take_action_error(&mut self, command: &str) -> Option<(String, String)> {
        let index = self
            .action_errors
            .iter()
            .position(|(wanted, _, _)| wanted == command)?;
        self.action_errors
            .remove(index)
            .map(|(_, code, message)| (code, message))
    }
}

fn take(count: &mut u32) -> bool {
    if *count == 0 {
        return false;
    }
    *count -= 1;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_are_consumed_one_request_at_a_time() {
        let mut faults = Faults::default();
        faults.add(Fault::RateLimit { count: 2 });
        faults.add(Fault::Locked { count: 1 });
        assert!(faults.take_rate_limit());
        assert!(faults.take_rate_limit());
        assert!(!faults.take_rate_limit());
        assert_eq!(
            faults.take_write_error().map(|e| e.code),
            Some("locked".into())
        );
        assert_eq!(faults.take_write_error(), None);
    }

    #[test]
    fn action_errors_wait_for_their_command() {
        let mut faults = Faults::default();
        faults.add(Fault::ActionError {
            command: "start_server".into(),
            code: "action_failed".into(),
            message: "no".into(),
        });
        assert_eq!(faults.take_action_error("create_server"), None);
        assert_eq!(
            faults.take_action_error("start_server"),
            Some(("action_failed".into(), "no".into()))
        );
        assert_eq!(faults.take_action_error("start_server"), None);
    }
}
