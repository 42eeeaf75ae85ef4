//! One shared reqwest client and the request/response plumbing.

use std::sync::OnceLock;
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
    pub(crate) timeout: Duration,
    /// Accepted status codes; empty means any 2xx.
    pub(crate) expect: Vec<u16>,
}

fn client() -> Result<&'static reqwest::Client, StdlibError> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            // The runtime installs ring in main; a library user may not have.
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::Client::builder()
                .user_agent(concat!("runbook/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_secs(10))
                .build()
                .map_err(|error| error.to_string())
        })
        .as_ref()
        .map_err(|error| StdlibError::message(format!("cannot set up the HTTP client: {error}")))
}

fn describe(error: &reqwest::Error, url: &str) -> StdlibError {
    if error.is_timeout() {
        StdlibError::failed(
            format!("`{url}`: request timed out"),
            "raise the `timeout` option or check the service",
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

/// Send a request and turn the response into the script's result map.
pub(crate) async fn send(request: Request) -> Result<Dynamic, StdlibError> {
    let client = client()?;
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
        .map_err(|error| describe(&error, &url))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .text()
        .await
        .map_err(|error| describe(&error, &url))?;
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
