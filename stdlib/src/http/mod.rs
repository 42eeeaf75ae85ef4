//! `http::*`: HTTP requests and health checks over reqwest (rustls with ring).

pub(crate) mod client;

use std::time::{Duration, Instant};

use rhai::{Array, Dynamic, Map};

use crate::function;
use crate::function::{Call, Failure, Function, Options};
use crate::host::StdlibError;

pub(crate) use client::{CONNECT_TIMEOUT, Request, send};

const OPTIONS: &[&str] = &["expect", "timeout", "headers"];

/// Status codes the caller accepts: `expect: 200` or `expect: [200, 404]`;
/// any 2xx when not given.
fn expected(call: &Call<'_>, options: &Options, index: usize) -> Result<Vec<u16>, StdlibError> {
    let Some(value) = options.get("expect") else {
        return Ok(Vec::new());
    };
    let items: Array = if let Some(array) = value.read_lock::<Array>() {
        array.clone()
    } else {
        vec![value.clone()]
    };
    items
        .iter()
        .map(|item| {
            item.as_int()
                .ok()
                .and_then(|code| u16::try_from(code).ok())
                .ok_or_else(|| {
                    call.bad_arg(
                        index,
                        "option `expect` must be a status code or an array of them",
                    )
                })
        })
        .collect()
}

fn request(
    call: &Call<'_>,
    method: reqwest::Method,
    body: Option<Dynamic>,
    opts_index: usize,
) -> Result<Request, StdlibError> {
    let url = call.string(0)?;
    let options = call.options(opts_index, OPTIONS)?;
    let section = call.host.section("http");
    let mut headers = Vec::new();
    if let Some(map) = options.map("headers")? {
        for (name, value) in map {
            let text = crate::function::Text::from_dynamic(&value).ok_or_else(|| {
                call.bad_arg(
                    opts_index,
                    format!("header `{name}` must be a string or a secret"),
                )
            })?;
            headers.push((name.to_string(), text));
        }
    }
    Ok(Request {
        method,
        url,
        headers,
        body,
        timeout: match options.duration("timeout")? {
            Some(timeout) => timeout,
            None => section.duration("timeout")?.unwrap_or(client::TIMEOUT),
        },
        connect_timeout: section
            .duration("connect_timeout")?
            .unwrap_or(client::CONNECT_TIMEOUT),
        expect: expected(call, &options, opts_index)?,
    })
}

fn wait_healthy(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let url = call.string(0)?;
    let timeout = call.duration(1)?;
    let started = Instant::now();
    let mut last_problem;
    loop {
        let attempt = Request {
            method: reqwest::Method::GET,
            url: url.clone(),
            headers: Vec::new(),
            body: None,
            timeout: Duration::from_secs(5).min(timeout.max(Duration::from_millis(100))),
            connect_timeout: client::CONNECT_TIMEOUT,
            expect: Vec::new(),
        };
        match call.block_on(send(attempt)) {
            Ok(response) => return Ok(response),
            Err(StdlibError::Interrupted) => return Err(StdlibError::Interrupted.into()),
            Err(error) => last_problem = error.to_string(),
        }
        if started.elapsed() + Duration::from_millis(500) > timeout {
            return Err(StdlibError::failed(
                format!(
                    "`{url}` did not become healthy within {}: {last_problem}",
                    crate::duration::human(timeout)
                ),
                "check that the service is up and that the URL is its health endpoint",
            )
            .into());
        }
        call.block_on(async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            Ok(())
        })?;
    }
}

pub(crate) fn functions() -> Vec<Function> {
    vec![
        function! {
            /// HTTP GET. Returns `#{status, headers, body, json}` (`json` is the parsed
            /// body when the response is JSON, else `()`). Any status other than 2xx
            /// is an error unless listed in `expect`.
            /// Options: `expect` (code or array of codes), `timeout` (default the context's `http.timeout`, else "30s"),
            /// `headers` (map; values may be secrets).
            ///
            /// ```rhai
            /// let r = http::get("http://127.0.0.1:9/health", #{expect: [200, 503], timeout: "1s"});
            /// ```
            read fn http::get("url: string", "opts?: map") -> "#{status: int, headers: map, body: string, json: map | ()}"
            |call| Ok(call.block_on(send(request(call, reqwest::Method::GET, None, 1)?))?)
        },
        function! {
            /// HTTP POST. A map or array body is sent as JSON, a string as text.
            /// Same options and result as `http::get`. Not run in a dry-run.
            ///
            /// ```rhai
            /// http::post("http://127.0.0.1:9/deploys", #{version: "v1.4.2"}, #{timeout: "1s"});
            /// ```
            write fn http::post("url: string", "body: string | map | array", "opts?: map") -> "#{status: int, headers: map, body: string, json: map | ()}"
            |call| {
                let body = call.arg(1);
                Ok(call.block_on(send(request(call, reqwest::Method::POST, Some(body), 2)?))?)
            }
        },
        function! {
            /// HTTP PUT: like `http::post` (a map or array body is sent as JSON, a
            /// string as text; same options and result). Not run in a dry-run.
            ///
            /// ```rhai
            /// http::put("http://127.0.0.1:9/flags/beta", #{on: true}, #{timeout: "1s"});
            /// ```
            write fn http::put("url: string", "body: string | map | array", "opts?: map") -> "#{status: int, headers: map, body: string, json: map | ()}"
            |call| {
                let body = call.arg(1);
                Ok(call.block_on(send(request(call, reqwest::Method::PUT, Some(body), 2)?))?)
            }
        },
        function! {
            /// HTTP PATCH: like `http::post` (a map or array body is sent as JSON, a
            /// string as text; same options and result). Not run in a dry-run.
            ///
            /// ```rhai
            /// http::patch("http://127.0.0.1:9/flags/beta", #{on: false}, #{timeout: "1s"});
            /// ```
            write fn http::patch("url: string", "body: string | map | array", "opts?: map") -> "#{status: int, headers: map, body: string, json: map | ()}"
            |call| {
                let body = call.arg(1);
                Ok(call.block_on(send(request(call, reqwest::Method::PATCH, Some(body), 2)?))?)
            }
        },
        function! {
            /// HTTP DELETE, without a body. Same options and result as `http::post`.
            /// Not run in a dry-run.
            ///
            /// ```rhai
            /// http::delete("http://127.0.0.1:9/flags/beta", #{timeout: "1s"});
            /// ```
            write fn http::delete("url: string", "opts?: map") -> "#{status: int, headers: map, body: string, json: map | ()}"
            |call| Ok(call.block_on(send(request(call, reqwest::Method::DELETE, None, 1)?))?)
        },
        function! {
            /// Poll `url` every half second until it answers 2xx; fail after `timeout`
            /// with the last status or connection error.
            ///
            /// ```rhai
            /// http::wait_healthy("http://127.0.0.1:9/health", "2s");
            /// ```
            read fn http::wait_healthy("url: string", "timeout: string") -> "#{status: int, headers: map, body: string, json: map | ()}"
            wait_healthy
        },
    ]
}

/// Build the result map of a response.
pub(crate) fn response_map(
    status: u16,
    headers: &reqwest::header::HeaderMap,
    body: String,
) -> Dynamic {
    let mut map = Map::new();
    map.insert("status".into(), Dynamic::from_int(i64::from(status)));
    let mut header_map = Map::new();
    for (name, value) in headers {
        header_map.insert(
            name.as_str().into(),
            String::from_utf8_lossy(value.as_bytes())
                .into_owned()
                .into(),
        );
    }
    let is_json = headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.contains("json"));
    let json = if is_json {
        serde_json::from_str::<serde_json::Value>(&body)
            .map_or(Dynamic::UNIT, crate::values::from_json)
    } else {
        Dynamic::UNIT
    };
    map.insert("headers".into(), Dynamic::from_map(header_map));
    map.insert("body".into(), body.into());
    map.insert("json".into(), json);
    Dynamic::from_map(map)
}
