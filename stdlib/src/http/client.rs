//! One shared reqwest client and the request/response plumbing.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use rhai::Dynamic;

use crate::function::Text;
use crate::host::StdlibError;

/// A request as the script described it.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) method: reqwest::Method,
    pub(crate) url: String,
    pub(crate) headers: Vec<(String, Text)>,
    pub(crate) body: Option<Dynamic>,
    /// The whole request, answer included (`#{timeout}`, else the context's
    /// `http.timeout`, else [`TIMEOUT`]).
    pub(crate) timeout: Duration,
    /// Connecting (the context's `http.connect_timeout`, else [`CONNECT_TIMEOUT`]).
    pub(crate) connect_timeout: Duration,
    /// Accepted status codes; empty means any 2xx.
    pub(crate) expect: Vec<u16>,
}

/// A request gives up after this long without its answer, unless the call's
/// `timeout` or the context's `http.timeout` says otherwise.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(30);

/// Connecting gives up after this long, unless the context's
/// `http.connect_timeout` says otherwise.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One client per connect timeout (reqwest sets it per client), shared by
/// every HTTP backend (`http::*`, `notify::*`, `hcloud::*`).
pub(crate) fn client(connect_timeout: Duration) -> Result<reqwest::Client, StdlibError> {
    static CLIENTS: OnceLock<Mutex<HashMap<Duration, reqwest::Client>>> = OnceLock::new();
    let mut clients = CLIENTS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(client) = clients.get(&connect_timeout) {
        return Ok(client.clone());
    }
    // The runtime installs ring in main; a library user may not have.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .user_agent(concat!("runbook/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(connect_timeout)
        .build()
        .map_err(|error| StdlibError::message(format!("cannot set up the HTTP client: {error}")))?;
    clients.insert(connect_timeout, client.clone());
    Ok(client)
}

fn describe(error: &reqwest::Error, request: &Request) -> StdlibError {
    let url = &request.url;
    if error.is_timeout() && error.is_connect() {
        StdlibError::failed(
            format!(
                "`{url}`: cannot connect within {}",
                crate::duration::human(request.connect_timeout)
            ),
            "is the service up and the address right? Raise `connect_timeout` under `[context.NAME.http]` if it is just slow",
        )
    } else if error.is_timeout() {
        StdlibError::failed(
            format!(
                "`{url}`: no answer from the HTTP server at {} within {}",
                origin(url),
                crate::duration::human(request.timeout)
            ),
            "check the service; raise the call's `timeout` option (or `timeout` under `[context.NAME.http]`) if it is just slow",
        )
    } else if error.is_connect() {
        let cause = std::error::Error::source(error)
            .map(ToString::to_string)
            .unwrap_or_default();
        StdlibError::failed(
            format!("`{url}`: cannot connect: {cause}"),
            "is the service up, and is the address and port right?",
        )
    } else if error.is_builder() {
        StdlibError::failed(
            format!("`{url}` is not a usable URL: {error}"),
            "write a full URL such as http://host:port/path",
        )
    } else {
        StdlibError::message(format!("`{url}`: {error}"))
    }
}

/// `scheme://host:port` of a URL, for messages.
fn origin(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) => parsed.origin().ascii_serialization(),
        Err(_) => url.to_owned(),
    }
}

/// Send a request and turn the response into the script's result map.
pub(crate) async fn send(request: Request) -> Result<Dynamic, StdlibError> {
    let client = client(request.connect_timeout)?;
    let url = request.url.clone();
    let mut builder = client
        .request(request.method.clone(), &request.url)
        .timeout(request.timeout);
    for (name, value) in &request.headers {
        builder = builder.header(name.as_str(), value.expose());
    }
    if let Some(body) = &request.body {
        builder = match Text::from_dynamic(body) {
            Some(text) => builder.body(text.expose()),
            None => builder.json(&crate::values::to_json(body, true)),
        };
    }
    let response = builder
        .send()
        .await
        .map_err(|error| describe(&error, &request))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .text()
        .await
        .map_err(|error| describe(&error, &request))?;
    let accepted = if request.expect.is_empty() {
        (200..300).contains(&status)
    } else {
        request.expect.contains(&status)
    };
    if !accepted {
        let snippet: String = body.chars().take(300).collect();
        let wanted = if request.expect.is_empty() {
            "2xx".to_owned()
        } else {
            request
                .expect
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" or ")
        };
        return Err(StdlibError::failed(
            format!(
                "{} `{url}` answered {status}, expected {wanted}: {snippet}",
                request.method
            ),
            "pass `expect` with the status codes this call may accept",
        ));
    }
    Ok(super::response_map(status, &headers, body))
}
