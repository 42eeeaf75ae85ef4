//! HTTP: the accept loop, the bearer token, the `/v1` prefix, rate-limit
//! headers, the request log, and lost responses (a connection closed with
//! no answer). Every request is handled under the project lock without
//! awaiting, so clients and test helpers see one consistent project.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue, LINK};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::sync::oneshot;

use super::Shared;
use super::errors::ApiError;
use super::project;
use super::rate::{Budget, Headers};
use super::reply::{Origin, Reply};
use super::routes::{self, Call};
use crate::query::Query;

/// Request bodies larger than this are refused (user data is at most 32 KiB).
const MAX_BODY: usize = 1024 * 1024;

/// How often unpolled actions are finished on time.
pub(crate) const TICK: Duration = Duration::from_millis(50);

/// What every connection needs.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    pub(crate) shared: Shared,
    pub(crate) token: Arc<str>,
    pub(crate) addr: SocketAddr,
}

/// Returned by the service to make hyper close the connection unanswered.
#[derive(Debug)]
pub(crate) struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("response dropped by an injected fault")
    }
}

impl std::error::Error for Dropped {}

/// Accept connections until `stop` fires (or its sender is dropped), and
/// finish unpolled actions every [`TICK`].
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    context: Context,
    mut stop: oneshot::Receiver<()>,
) {
    let mut tick = tokio::time::interval(TICK);
    loop {
        let stream = tokio::select! {
            _ = &mut stop => return,
            _ = tick.tick() => {
                context.shared.lock().tick();
                continue;
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let context = context.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let context = context.clone();
                async move { handle(&context, request).await }
            });
            // Errors here are clients hanging up, or a dropped response.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    context: &Context,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let raw_query = request.uri().query().unwrap_or_default().to_owned();
    let authorized = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        == Some(format!("Bearer {}", context.token).as_str());
    let body = Limited::new(request.into_body(), MAX_BODY).collect().await;
    let mut project = context.shared.lock();
    let now = Instant::now();
    let (reply, headers) = if project.faults.take_rate_limit() {
        (Err(ApiError::rate_limited()), Budget::exhausted())
    } else {
        match project.rate.spend(now) {
            Some(headers) => {
                let reply = if authorized {
                    answer(
                        &mut project,
                        context,
                        &method,
                        &path,
                        &raw_query,
                        body.ok().map(http_body_util::Collected::to_bytes),
                    )
                } else {
                    Err(ApiError::unauthorized())
                };
                (reply, headers)
            }
            None => (Err(ApiError::rate_limited()), project.rate.headers()),
        }
    };
    let reply = reply.unwrap_or_else(|error| Reply::with_status(error.status(), error.body()));
    project.log.push(project::Request {
        method: method.to_string(),
        path: path.strip_prefix("/v1").unwrap_or(&path).to_owned(),
        query: raw_query,
        status: reply.status,
    });
    drop(project);
    if reply.drop {
        return Err(Dropped);
    }
    Ok(response(reply, headers))
}

fn answer(
    project: &mut project::Project,
    context: &Context,
    method: &hyper::Method,
    path: &str,
    raw_query: &str,
    body: Option<Bytes>,
) -> Result<Reply, ApiError> {
    let Some(rest) = path.strip_prefix("/v1") else {
        return Err(ApiError::no_route());
    };
    let body = body.ok_or_else(|| ApiError::json_error("cannot read the request body"))?;
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).map_err(|error| ApiError::json_error(&error.to_string()))?
    };
    let query = Query::parse(Some(raw_query));
    let trimmed = rest.trim_matches('/');
    let call = Call {
        method: method.clone(),
        segments: if trimmed.is_empty() {
            Vec::new()
        } else {
            trimmed.split('/').collect()
        },
        origin: Origin {
            url: format!("http://{}{}", context.addr, path.trim_end_matches('/')),
            raw_query,
            query: &query,
        },
        body,
    };
    routes::route(project, &call)
}

fn response(reply: Reply, rate: Headers) -> Response<Full<Bytes>> {
    let body = reply
        .body
        .map(|body| Bytes::from(body.to_string()))
        .unwrap_or_default();
    let has_body = !body.is_empty();
    let mut response = Response::new(Full::new(body));
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    if has_body {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    if let Some(link) = reply
        .link
        .and_then(|link| HeaderValue::from_str(&link).ok())
    {
        headers.insert(LINK, link);
    }
    for (name, value) in [
        ("ratelimit-limit", u64::from(rate.limit)),
        ("ratelimit-remaining", u64::from(rate.remaining)),
        ("ratelimit-reset", rate.reset),
    ] {
        headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
    }
    response
}
