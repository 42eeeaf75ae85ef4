//! The one place requests are sent: endpoint and token from the context,
//! timeouts, the `RateLimit-*` budget, and retries. `locked`, `conflict`,
//! 502/503/504 and network failures of reads are retried with jittered
//! backoff for at most [`RETRY_BUDGET`]; 429 waits until `RateLimit-Reset`.
//! A POST whose answer was lost is never sent again from here: the caller
//! gets [`HcloudError::Lost`] and looks the resource up first.
//!
//! Settings (`[context.NAME.hcloud]`): `endpoint` (default
//! `https://api.hetzner.cloud/v1`, else `$HCLOUD_ENDPOINT`), `poll_interval`
//! (the action waiter's first interval, default 1 s), `request_timeout`
//! (no answer within it fails a request, default 30 s; a read is tried once
//! more), `connect_timeout` (default 10 s). The token is the context's secret `hcloud_token`, else
//! `$HCLOUD_TOKEN`; it is added to the redactor and never put in a message.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

use super::backoff::{self, RETRY_BUDGET};
use super::error::HcloudError;
use crate::function::Call;
use crate::host::{Host, Level, StdlibError};

/// Where the API is unless the context or `$HCLOUD_ENDPOINT` says otherwise.
pub(crate) const DEFAULT_ENDPOINT: &str = "https://api.hetzner.cloud/v1";

/// Connecting to the API gives up after this long.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One request (connect to last byte) gives up after this long by default.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The action waiter's first poll interval by default; it grows to [`MAX_POLL`].
pub(crate) const FIRST_POLL: Duration = Duration::from_secs(1);

/// The action waiter's longest poll interval.
pub(crate) const MAX_POLL: Duration = Duration::from_secs(10);

/// Longest time one request waits for rate limits in total.
const RATE_LIMIT_BUDGET: Duration = Duration::from_secs(15 * 60);

/// `RateLimit-Remaining` of the last answer (`u64::MAX`: not known yet).
static REMAINING: AtomicU64 = AtomicU64::new(u64::MAX);

/// The context's hcloud settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) endpoint: String,
    pub(crate) first_poll: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) context: String,
}

impl Settings {
    pub(crate) fn from_call(call: &Call<'_>) -> Result<Settings, StdlibError> {
        let section = call.host.section("hcloud");
        let duration = |field: &str| -> Result<Option<Duration>, StdlibError> {
            section
                .string(field)?
                .map(|text| {
                    crate::duration::parse(&text).map_err(|problem| {
                        StdlibError::usage(
                            format!(
                                "context `{}`: `{}`: {problem}",
                                section.context_name(),
                                section.field(field)
                            ),
                            "write a duration such as \"1s\" or \"250ms\"",
                        )
                    })
                })
                .transpose()
        };
        let endpoint = section
            .string("endpoint")?
            .or_else(|| {
                std::env::var("HCLOUD_ENDPOINT")
                    .ok()
                    .filter(|value| !value.is_empty())
            })
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        Ok(Settings {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            first_poll: duration("poll_interval")?.unwrap_or(FIRST_POLL),
            request_timeout: duration("request_timeout")?.unwrap_or(REQUEST_TIMEOUT),
            connect_timeout: duration("connect_timeout")?.unwrap_or(CONNECT_TIMEOUT),
            context: section.context_name().to_owned(),
        })
    }
}

/// The shared HTTP client for this connect timeout (see `http::client`).
fn http(connect_timeout: Duration) -> Result<reqwest::Client, StdlibError> {
    crate::http::client::client(connect_timeout)
}

/// One request: method, path under the endpoint, query, JSON body, and
/// what it is for (`create server `web``), for messages.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) body: Option<Value>,
    pub(crate) what: String,
}

impl Request {
    pub(crate) fn get(path: impl Into<String>, what: impl Into<String>) -> Request {
        Request {
            method: Method::GET,
            path: path.into(),
            query: Vec::new(),
            body: None,
            what: what.into(),
        }
    }

    pub(crate) fn post(path: impl Into<String>, body: Value, what: impl Into<String>) -> Request {
        Request {
            method: Method::POST,
            path: path.into(),
            query: Vec::new(),
            body: Some(body),
            what: what.into(),
        }
    }

    pub(crate) fn delete(path: impl Into<String>, what: impl Into<String>) -> Request {
        Request {
            method: Method::DELETE,
            path: path.into(),
            query: Vec::new(),
            body: None,
            what: what.into(),
        }
    }

    pub(crate) fn query(mut self, name: &str, value: impl Into<String>) -> Request {
        self.query.push((name.to_owned(), value.into()));
        self
    }
}

/// The API as one call sees it.
pub(crate) struct Client<'a> {
    pub(crate) settings: Settings,
    token: String,
    host: &'a dyn Host,
}

impl<'a> Client<'a> {
    /// The context's endpoint and token. Fails (usage) without a token.
    pub(crate) fn from_call(call: &Call<'a>) -> Result<Client<'a>, StdlibError> {
        let settings = Settings::from_call(call)?;
        let top = call.host.section("");
        let token = if top.has_secret("hcloud_token") {
            Some(call.host.secret("hcloud_token")?.expose())
        } else {
            std::env::var("HCLOUD_TOKEN").ok()
        }
        .filter(|token| !token.trim().is_empty())
        .ok_or_else(|| HcloudError::NoToken {
            context: settings.context.clone(),
        })?;
        call.host.redactor().add(&token);
        Ok(Client {
            settings,
            token: token.trim().to_owned(),
            host: call.host,
        })
    }

    pub(crate) fn log(&self, level: Level, message: &str) {
        self.host.log(level, message);
    }

    fn endpoint(&self) -> &str {
        &self.settings.endpoint
    }

    /// What a timed-out request says: the wait, named.
    fn no_answer(&self, connecting: bool) -> String {
        if connecting {
            format!(
                "could not connect to the Hetzner Cloud API at {} within {}",
                self.endpoint(),
                crate::duration::human(self.settings.connect_timeout)
            )
        } else {
            format!(
                "no answer from the Hetzner Cloud API at {} within {}",
                self.endpoint(),
                crate::duration::human(self.settings.request_timeout)
            )
        }
    }

    /// Send once, no retries: the answer's status, `RateLimit-Reset` and
    /// JSON body (`null` for an empty one).
    async fn send_once(&self, request: &Request) -> Result<(u16, Option<i64>, Value), HcloudError> {
        let client =
            http(self.settings.connect_timeout).map_err(|error| HcloudError::Transport {
                what: request.what.clone(),
                endpoint: self.endpoint().to_owned(),
                detail: error.to_string(),
                timeout: false,
            })?;
        let url = reqwest::Url::parse_with_params(
            &format!("{}{}", self.endpoint(), request.path),
            &request.query,
        )
        .map_err(|error| HcloudError::Transport {
            what: request.what.clone(),
            endpoint: self.endpoint().to_owned(),
            detail: format!("not a URL: {error}"),
            timeout: false,
        })?;
        let mut builder = client
            .request(request.method.clone(), url)
            .bearer_auth(&self.token)
            .timeout(self.settings.request_timeout);
        if let Some(body) = &request.body {
            builder = builder.json(body);
        }
        let transport = |error: reqwest::Error, lost: bool| {
            let detail = crate::text::error_chain(&error).replace(&self.token, crate::redact::MASK);
            if lost {
                HcloudError::Lost {
                    what: request.what.clone(),
                    endpoint: self.endpoint().to_owned(),
                    detail,
                }
            } else {
                HcloudError::Transport {
                    what: request.what.clone(),
                    endpoint: self.endpoint().to_owned(),
                    detail: if error.is_timeout() {
                        self.no_answer(error.is_connect())
                    } else {
                        detail
                    },
                    timeout: error.is_timeout(),
                }
            }
        };
        let response = builder.send().await.map_err(|error| {
            // Not connected: the request never left. Anything else may
            // have reached the API.
            let lost = request.method != Method::GET && !error.is_connect();
            transport(error, lost)
        })?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.trim().parse::<i64>().ok())
        };
        if let Some(remaining) = header("ratelimit-remaining") {
            REMAINING.store(u64::try_from(remaining).unwrap_or(0), Ordering::Relaxed);
        }
        let reset = header("ratelimit-reset");
        let text = response
            .text()
            .await
            .map_err(|error| transport(error, request.method != Method::GET))?;
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|error| HcloudError::Shape {
                what: request.what.clone(),
                detail: format!("status {status}, body is not JSON: {error}"),
            })?
        };
        Ok((status, reset, body))
    }

    /// Send with the retry rules of this module; the JSON body of a 2xx answer.
    pub(crate) async fn send(&self, request: Request) -> Result<Value, HcloudError> {
        let started = Instant::now();
        let mut retry_time = Duration::ZERO;
        let mut rate_time = Duration::ZERO;
        let mut attempt: u32 = 0;
        let mut timeouts: u32 = 0;
        loop {
            let remaining = REMAINING.load(Ordering::Relaxed);
            if let Some(pause) = backoff::throttle((remaining != u64::MAX).then_some(remaining)) {
                tokio::time::sleep(pause).await;
            }
            let outcome = self.send_once(&request).await;
            let (status, reset, body) = match outcome {
                Ok(answer) => answer,
                // A read that got no connection is retried within the budget
                // (counting the time the tries took); one that got no answer
                // in `request_timeout` once: a silent API would otherwise
                // hold the run for minutes.
                Err(HcloudError::Transport { timeout, .. })
                    if request.method == Method::GET
                        && started.elapsed() < RETRY_BUDGET
                        && (!timeout || timeouts == 0) =>
                {
                    timeouts += u32::from(timeout);
                    let delay = backoff::retry_delay(attempt, rand::random::<f64>());
                    self.log(
                        Level::Debug,
                        &format!(
                            "hcloud: {}: no answer, retrying in {}",
                            request.what,
                            crate::duration::human(delay)
                        ),
                    );
                    tokio::time::sleep(delay).await;
                    retry_time += delay;
                    attempt += 1;
                    continue;
                }
                Err(error) => return Err(error),
            };
            if (200..300).contains(&status) {
                return Ok(body);
            }
            let error = api_error(&request.what, status, &body);
            let code = error.code().unwrap_or_default().to_owned();
            if status == 429 || code == "rate_limit_exceeded" {
                let now = chrono::Utc::now().timestamp();
                let wait = backoff::rate_limit_wait(reset, now, Duration::from_secs(60));
                if rate_time + wait > RATE_LIMIT_BUDGET {
                    return Err(HcloudError::GaveUp {
                        what: request.what,
                        code,
                        waited: started.elapsed(),
                    });
                }
                self.log(
                    Level::Info,
                    &format!(
                        "hcloud: rate limit reached; waiting {} for RateLimit-Reset",
                        crate::duration::human(wait)
                    ),
                );
                tokio::time::sleep(wait).await;
                rate_time += wait;
                continue;
            }
            if error.retryable() {
                let delay = backoff::retry_delay(attempt, rand::random::<f64>());
                if retry_time + delay > RETRY_BUDGET {
                    return Err(HcloudError::GaveUp {
                        what: request.what,
                        code,
                        waited: started.elapsed(),
                    });
                }
                self.log(
                    Level::Info,
                    &format!(
                        "hcloud: {}: `{code}`, retrying in {}",
                        request.what,
                        crate::duration::human(delay)
                    ),
                );
                tokio::time::sleep(delay).await;
                retry_time += delay;
                attempt += 1;
                continue;
            }
            return Err(error);
        }
    }

    /// Every item of a list endpoint (`key` is the array's name, `servers`),
    /// following `meta.pagination.next_page` to the end, 50 per page.
    pub(crate) async fn list(
        &self,
        request: Request,
        key: &str,
    ) -> Result<Vec<Value>, HcloudError> {
        let mut items = Vec::new();
        let mut page: u64 = 1;
        // A bound against an API that never says "last page".
        for _ in 0..10_000 {
            let body = self
                .send(
                    request
                        .clone()
                        .query("page", page.to_string())
                        .query("per_page", "50"),
                )
                .await?;
            let Some(found) = body.get(key).and_then(Value::as_array) else {
                return Err(HcloudError::Shape {
                    what: request.what,
                    detail: format!("no `{key}` array in the answer"),
                });
            };
            items.extend(found.iter().cloned());
            match super::paging::next_page(&body, page) {
                Some(next) => page = next,
                None => return Ok(items),
            }
        }
        Ok(items)
    }
}

/// The error an answer's body describes (`{"error": {code, message, details}}`).
pub(crate) fn api_error(what: &str, status: u16, body: &Value) -> HcloudError {
    let error = body.get("error");
    let text = |field: &str| {
        error
            .and_then(|error| error.get(field))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let fields = error
        .and_then(|error| error.pointer("/details/fields"))
        .and_then(Value::as_array)
        .map(|fields| {
            fields
                .iter()
                .filter_map(|field| field.get("name").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    HcloudError::Api {
        what: what.to_owned(),
        status,
        code: text("code").unwrap_or_else(|| match status {
            429 => "rate_limit_exceeded".into(),
            502 => "bad_gateway".into(),
            504 => "timeout".into(),
            _ => format!("http_{status}"),
        }),
        message: text("message").unwrap_or_else(|| "no error message".into()),
        fields,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_bodies_become_typed_errors() {
        let body = json!({"error": {"code": "uniqueness_error", "message": "name is already used", "details": {"fields": [{"name": "name"}]}}});
        let HcloudError::Api {
            code,
            fields,
            status,
            ..
        } = api_error("create server `a`", 409, &body)
        else {
            panic!("not an API error");
        };
        assert_eq!((code.as_str(), status), ("uniqueness_error", 409));
        assert_eq!(fields, vec!["name".to_owned()]);
        let bare = api_error("x", 429, &Value::Null);
        assert_eq!(bare.code(), Some("rate_limit_exceeded"));
        assert!(bare.retryable());
        assert_eq!(
            api_error("x", 502, &json!("oops")).code(),
            Some("bad_gateway")
        );
    }
}
