//! What can go wrong talking to the Hetzner Cloud API, typed, and how each
//! case reads to the person running the runbook (message and hint). The
//! token never appears here: messages name the endpoint and the resource.

use std::time::Duration;

use crate::host::StdlibError;

/// One failure of an hcloud call.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum HcloudError {
    /// No token: neither the context's `hcloud_token` secret nor `HCLOUD_TOKEN`.
    #[error("no Hetzner Cloud API token for context `{context}`")]
    NoToken { context: String },
    /// The API answered with its error body.
    #[error("{what}: the API answered {status} `{code}`: {message}")]
    Api {
        what: String,
        status: u16,
        code: String,
        message: String,
        /// `details.fields[].name`, for `invalid_input` and `uniqueness_error`.
        fields: Vec<String>,
    },
    /// An action ended in `error`.
    #[error("{what}: action {id} `{command}` failed with `{code}`: {message}")]
    Action {
        what: String,
        id: u64,
        command: String,
        code: String,
        message: String,
    },
    /// No connection, or the request timed out.
    #[error("{what}: cannot reach {endpoint}: {detail}")]
    Transport {
        what: String,
        endpoint: String,
        detail: String,
        timeout: bool,
    },
    /// The request may have arrived, but its answer was lost (connection
    /// closed mid-response): a POST must look before it sends again.
    #[error("{what}: the answer from {endpoint} was lost: {detail}")]
    Lost {
        what: String,
        endpoint: String,
        detail: String,
    },
    /// `locked`, `conflict` or 429 went on for longer than the retry budget.
    #[error("{what}: still `{code}` after retrying for {}", crate::duration::human(*waited))]
    GaveUp {
        what: String,
        code: String,
        waited: Duration,
    },
    /// Waiting for an action or a status took longer than allowed.
    #[error("{what}: not done after {}", crate::duration::human(*waited))]
    WaitTimeout { what: String, waited: Duration },
    /// The answer did not have the documented shape.
    #[error("{what}: unexpected answer from the API: {detail}")]
    Shape { what: String, detail: String },
    /// A resource with that name exists but was not made by this runbook.
    #[error("{kind} `{name}` already exists (id {id}) with other labels ({found})")]
    Foreign {
        kind: &'static str,
        name: String,
        id: u64,
        found: String,
    },
    /// A name the caller gave does not exist.
    #[error("no {kind} `{name}` in the project")]
    Missing { kind: &'static str, name: String },
}

impl HcloudError {
    /// The API error code, when the API gave one.
    pub(crate) fn code(&self) -> Option<&str> {
        match self {
            HcloudError::Api { code, .. }
            | HcloudError::Action { code, .. }
            | HcloudError::GaveUp { code, .. } => Some(code),
            _ => None,
        }
    }

    /// What the user can do about it.
    pub(crate) fn hint(&self) -> String {
        match self {
            HcloudError::NoToken { context } => format!(
                "export HCLOUD_TOKEN, or add `hcloud_token = \"env:VAR\"` under [context.{context}.secrets] in runbook.toml"
            ),
            HcloudError::Api { code, fields, .. } => match code.as_str() {
                "unauthorized" => "the token was refused: check HCLOUD_TOKEN (or the context's `hcloud_token` secret) and that it belongs to this project".into(),
                "forbidden" | "token_readonly" => "the token may not do this: create a read & write API token in the Hetzner console".into(),
                "resource_unavailable" | "placement_error" => "Hetzner has no capacity for this server type there right now: pick another `location` or `server_type` (param), or retry later".into(),
                "resource_limit_exceeded" => "the project's limit is reached: delete unused resources or ask Hetzner to raise the limit".into(),
                "invalid_input" if !fields.is_empty() => format!("fix the field(s) {}", quoted(fields)),
                "invalid_input" => "the API refused the request's fields; `runbook doc hcloud` shows what each function takes".into(),
                "uniqueness_error" => format!("another resource already uses {}: pick another name, or delete the other one", if fields.is_empty() { "that value".to_owned() } else { quoted(fields) }),
                "resource_in_use" => "it is still in use (a firewall applied to servers, a key...): remove it from its resources first".into(),
                "not_found" => "it does not exist (any more): `hcloud::servers()` and friends list what there is".into(),
                "protected" => "the resource has delete/rebuild protection: lift it in the console or with `hcloud ... disable-protection`".into(),
                _ => "see https://docs.hetzner.cloud/#errors for what the code means".into(),
            },
            HcloudError::Action { code, .. } => match code.as_str() {
                "resource_unavailable" | "placement_error" => "Hetzner could not place the server: pick another `location` or `server_type`, or retry later".into(),
                _ => "the action failed on Hetzner's side; `hcloud action describe ID` (the CLI) or the console shows it".into(),
            },
            HcloudError::Transport { timeout: true, .. } => "check the network and the endpoint; raise `request_timeout` (or `connect_timeout`) under `[context.NAME.hcloud]` if the API is just slow".into(),
            HcloudError::Transport { .. } => "is `[context.NAME.hcloud] endpoint` right (default https://api.hetzner.cloud/v1), and is the network up?".into(),
            HcloudError::Lost { .. } => "the request may have been carried out: list the resources (`hcloud::servers()`) before trying again".into(),
            HcloudError::GaveUp { code, .. } if code == "rate_limit_exceeded" => "the project's API budget (3600 requests/hour) is used up: wait, or run fewer parallel jobs".into(),
            HcloudError::GaveUp { .. } => "something else keeps the resource busy (another action running): try again in a minute".into(),
            HcloudError::WaitTimeout { .. } => "raise the `timeout` option, or look at the action in the console".into(),
            HcloudError::Shape { .. } => "is `[context.NAME.hcloud] endpoint` really the Hetzner Cloud API (…/v1)?".into(),
            HcloudError::Foreign { kind, name, .. } => format!(
                "runbook adopts only a {kind} carrying the same labels (managed-by=runbook and the ones asked for): pick another name, or add those labels to `{name}` if it really is this runbook's"
            ),
            HcloudError::Missing { .. } => "check the name; the list functions (`hcloud::servers()`, `hcloud::ssh_keys()`) show what exists".into(),
        }
    }

    /// Whether a retry may help after waiting (the retry layer decides how long).
    pub(crate) fn retryable(&self) -> bool {
        matches!(
            self.code(),
            Some("locked" | "conflict" | "rate_limit_exceeded" | "timeout" | "bad_gateway")
        ) || matches!(
            self,
            HcloudError::Api {
                status: 502..=504,
                ..
            }
        )
    }
}

fn quoted(fields: &[String]) -> String {
    fields
        .iter()
        .map(|field| format!("`{field}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl From<HcloudError> for StdlibError {
    fn from(error: HcloudError) -> StdlibError {
        let hint = error.hint();
        match error {
            HcloudError::NoToken { .. } => StdlibError::usage(format!("hcloud: {error}"), hint),
            other => StdlibError::failed(format!("hcloud: {other}"), hint),
        }
    }
}

/// `future.await_map()`: an hcloud future whose error becomes the stdlib's.
pub(crate) trait AwaitMap<T>: Sized {
    async fn await_map(self) -> Result<T, StdlibError>;
}

impl<T, F: std::future::Future<Output = Result<T, HcloudError>>> AwaitMap<T> for F {
    async fn await_map(self) -> Result<T, StdlibError> {
        self.await.map_err(StdlibError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: &str, status: u16) -> HcloudError {
        HcloudError::Api {
            what: "create server `web`".into(),
            status,
            code: code.into(),
            message: "nope".into(),
            fields: vec!["name".into()],
        }
    }

    #[test]
    fn errors_map_to_messages_with_hints() {
        let error: StdlibError = api("resource_unavailable", 412).into();
        assert_eq!(
            error.to_string(),
            "hcloud: create server `web`: the API answered 412 `resource_unavailable`: nope"
        );
        assert!(error.hint().unwrap().contains("another `location`"));
        let error: StdlibError = api("uniqueness_error", 409).into();
        assert!(
            error.hint().unwrap().contains("`name`"),
            "{:?}",
            error.hint()
        );
        let action: StdlibError = HcloudError::Action {
            what: "create server `web`".into(),
            id: 7,
            command: "create_server".into(),
            code: "placement_error".into(),
            message: "error during placement".into(),
        }
        .into();
        assert!(
            action
                .to_string()
                .contains("failed with `placement_error`: error during placement")
        );
        assert!(action.hint().unwrap().contains("location"));
        let token: StdlibError = HcloudError::NoToken {
            context: "lab".into(),
        }
        .into();
        assert!(matches!(token, StdlibError::Usage { .. }));
        assert!(token.hint().unwrap().contains("HCLOUD_TOKEN"));
    }

    #[test]
    fn only_transient_codes_are_retried() {
        assert!(api("locked", 423).retryable());
        assert!(api("conflict", 409).retryable());
        assert!(api("rate_limit_exceeded", 429).retryable());
        assert!(api("service_error", 503).retryable());
        assert!(!api("uniqueness_error", 409).retryable());
        assert!(!api("resource_unavailable", 412).retryable());
        assert!(!api("invalid_input", 400).retryable());
    }
}
