//! The lab's HTTP service: a small HTTP/1.1 server on 127.0.0.1 that runbooks
//! health-check, post webhooks to and probe for errors and timeouts.
//!
//! It runs on its own tokio runtime in a background thread, so plain
//! synchronous `#[test]` functions (and the `runbook-lab` binary) can use it
//! without an async runtime of their own. Tests read what it received straight
//! from shared state ([`HttpServer::hooks`]), not over HTTP, so a check never
//! depends on the server it is checking.
//!
//! Routes:
//!
//! | route | answer |
//! |---|---|
//! | `GET /health` | `200 ok` (or the status planted with `PUT /admin/health/{code}` / [`HttpServer::set_health`], body `unhealthy`) |
//! | `PUT /admin/health/{code}` | sets the status `/health` answers with |
//! | `GET /status/{code}` | that status, with a short body |
//! | `GET /slow/{millis}` | sleeps that long, then `200` |
//! | `POST /hooks/{name}` | records body and headers, answers `{"ok":true}` |
//! | `GET /hooks/{name}` | JSON array of the bodies recorded so far |
//! | `POST /echo` | `{"method", "headers", "body"}` of the request (also PUT, PATCH, DELETE) |
//! | anything else | `404` |

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// Request bodies larger than this are refused; the lab only ever sees small JSON.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// What one `POST /hooks/{name}` delivered.
#[derive(Debug, Clone)]
struct Hook {
    body: Value,
    headers: BTreeMap<String, String>,
}

/// State shared between the server thread and the test that owns the server.
#[derive(Debug)]
struct State {
    /// The status `GET /health` answers with (a raw code, so any u16 can be planted).
    health: u16,
    hooks: BTreeMap<String, Vec<Hook>>,
}

#[derive(Debug, Clone)]
struct Shared(Arc<Mutex<State>>);

impl Shared {
    /// Lock the state. A panic while holding the lock cannot leave it half
    /// updated (every update is one assignment or push), so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The running HTTP server. Stopped (thread joined, open connections closed)
/// when dropped.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    state: Shared,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Bind a free port on 127.0.0.1 and start serving in a background thread.
    ///
    /// Binding happens before this returns, so the server accepts connections
    /// as soon as the caller has the address.
    pub fn start() -> anyhow::Result<HttpServer> {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context("cannot bind the lab HTTP server to 127.0.0.1")?;
        listener
            .set_nonblocking(true)
            .context("cannot make the lab HTTP listener non-blocking")?;
        let addr = listener
            .local_addr()
            .context("cannot read the lab HTTP server's address")?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot build the lab HTTP server's tokio runtime")?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener)
                .context("cannot register the lab HTTP listener with tokio")?
        };
        let state = Shared(Arc::new(Mutex::new(State {
            health: 200,
            hooks: BTreeMap::new(),
        })));
        let (shutdown, stop) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("runbook-lab-http".into())
            .spawn({
                let state = state.clone();
                // Dropping the runtime at the end of the thread cancels open
                // connections and sleeping `/slow` requests, so drop never hangs.
                move || runtime.block_on(serve(listener, state, stop))
            })
            .context("cannot start the lab HTTP server thread")?;
        Ok(HttpServer {
            addr,
            state,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The address the server listens on (always 127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The URL of `path` on this server: `url("/health")` is
    /// `http://127.0.0.1:PORT/health` (a missing leading `/` is added).
    pub fn url(&self, path: &str) -> String {
        match path {
            "" => self.base_url(),
            _ if path.starts_with('/') => format!("{}{path}", self.base_url()),
            _ => format!("{}/{path}", self.base_url()),
        }
    }

    /// The bodies posted to `/hooks/{name}` so far, oldest first. JSON bodies
    /// are parsed; anything else is a JSON string.
    pub fn hooks(&self, name: &str) -> Vec<Value> {
        self.recorded(name, |hook| hook.body.clone())
    }

    /// The request headers of each post to `/hooks/{name}`, oldest first.
    /// Names are lower case; repeated headers are joined with `, `.
    pub fn hook_headers(&self, name: &str) -> Vec<BTreeMap<String, String>> {
        self.recorded(name, |hook| hook.headers.clone())
    }

    /// Make `GET /health` answer with `code` (200 is healthy). Codes outside
    /// 100..=999 cannot be sent over HTTP and are answered as 500.
    pub fn set_health(&self, code: u16) {
        self.state.lock().health = code;
    }

    fn recorded<T>(&self, name: &str, field: impl Fn(&Hook) -> T) -> Vec<T> {
        self.state
            .lock()
            .hooks
            .get(name)
            .map(|hooks| hooks.iter().map(field).collect())
            .unwrap_or_default()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // An error means the server loop already ended; nothing to stop.
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            // A panicked server thread has nothing left to clean up.
            let _ = thread.join();
        }
    }
}

/// Accept connections until `stop` fires (or its sender is dropped).
async fn serve(listener: tokio::net::TcpListener, state: Shared, mut stop: oneshot::Receiver<()>) {
    loop {
        let stream = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, request).await) }
            });
            // Errors here are clients hanging up mid-request; nothing to report.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

type Answer = Response<Full<Bytes>>;

async fn route(state: &Shared, request: Request<Incoming>) -> Answer {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (&method, segments.as_slice()) {
        (&Method::GET, ["health"]) => health(state),
        (&Method::PUT, ["admin", "health", code]) => match status(code) {
            Some(code) => {
                state.lock().health = code.as_u16();
                json_answer(StatusCode::OK, &json!({ "health": code.as_u16() }))
            }
            None => bad_request("the health code must be an HTTP status, 100..=999"),
        },
        (&Method::GET, ["status", code]) => match status(code) {
            Some(code) => text(code, &format!("status {}\n", code.as_u16())),
            None => bad_request("the status must be an HTTP status, 100..=999"),
        },
        (&Method::GET, ["slow", millis]) => match millis.parse::<u64>() {
            Ok(millis) => {
                tokio::time::sleep(Duration::from_millis(millis)).await;
                text(StatusCode::OK, &format!("slept {millis}ms\n"))
            }
            Err(_) => bad_request("the delay must be a whole number of milliseconds"),
        },
        (&Method::POST, ["hooks", name]) if !name.is_empty() => {
            let headers = header_map(request.headers());
            let body = match read_body(request).await {
                Ok(body) => body,
                Err(answer) => return answer,
            };
            let hook = Hook { body, headers };
            state
                .lock()
                .hooks
                .entry((*name).to_owned())
                .or_default()
                .push(hook);
            json_answer(StatusCode::OK, &json!({ "ok": true }))
        }
        (&Method::GET, ["hooks", name]) if !name.is_empty() => {
            let bodies: Vec<Value> = state
                .lock()
                .hooks
                .get(*name)
                .map(|hooks| hooks.iter().map(|hook| hook.body.clone()).collect())
                .unwrap_or_default();
            json_answer(StatusCode::OK, &Value::Array(bodies))
        }
        (&Method::POST | &Method::PUT | &Method::PATCH | &Method::DELETE, ["echo"]) => {
            let headers = header_map(request.headers());
            match read_body(request).await {
                Ok(body) => json_answer(
                    StatusCode::OK,
                    &json!({ "method": method.as_str(), "headers": headers, "body": body }),
                ),
                Err(answer) => answer,
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn health(state: &Shared) -> Answer {
    let code = state.lock().health;
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if code == StatusCode::OK {
        text(code, "ok\n")
    } else {
        text(code, "unhealthy\n")
    }
}

/// An HTTP status from a path segment, if it is one.
fn status(segment: &str) -> Option<StatusCode> {
    segment
        .parse::<u16>()
        .ok()
        .and_then(|code| StatusCode::from_u16(code).ok())
}

/// The request body as JSON if it parses, else as a JSON string, so a test can
/// compare what a runbook sent without caring which of the two it was.
async fn read_body(request: Request<Incoming>) -> Result<Value, Answer> {
    let bytes = Limited::new(request.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|_| bad_request("cannot read the request body"))?
        .to_bytes();
    Ok(serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())))
}

/// Headers as a sorted map: lower-case names, repeated headers joined with `, `.
fn header_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut map = BTreeMap::<String, String>::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        map.entry(name.as_str().to_owned())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    map
}

fn text(code: StatusCode, body: &str) -> Answer {
    answer(code, "text/plain; charset=utf-8", body.to_owned())
}

fn json_answer(code: StatusCode, body: &Value) -> Answer {
    answer(code, "application/json", body.to_string())
}

fn bad_request(message: &str) -> Answer {
    text(StatusCode::BAD_REQUEST, &format!("{message}\n"))
}

fn answer(code: StatusCode, content_type: &'static str, body: String) -> Answer {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = code;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::net::TcpStream;
    use std::time::Instant;

    use super::*;

    /// A response as the tests see it.
    struct Reply {
        status: u16,
        headers: BTreeMap<String, String>,
        body: String,
    }

    impl Reply {
        fn json(&self) -> Value {
            serde_json::from_str(&self.body).unwrap()
        }
    }

    /// One HTTP/1.1 request over a fresh loopback connection (`Connection:
    /// close`, so the reply ends at EOF). Deliberately not hyper: the server is
    /// checked with a client that shares none of its code.
    fn request(
        server: &HttpServer,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        let mut stream = TcpStream::connect(server.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            server.addr(),
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body.as_bytes()).unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .map(|line| {
                let (name, value) = line.split_once(':').unwrap();
                (name.to_ascii_lowercase(), value.trim().to_owned())
            })
            .collect();
        Reply {
            status,
            headers,
            body: body.to_owned(),
        }
    }

    fn get(server: &HttpServer, path: &str) -> Reply {
        request(server, "GET", path, &[], "")
    }

    #[test]
    fn urls_point_at_loopback() {
        let server = HttpServer::start().unwrap();
        let port = server.addr().port();
        assert!(server.addr().ip().is_loopback());
        assert_eq!(server.base_url(), format!("http://127.0.0.1:{port}"));
        assert_eq!(
            server.url("/health"),
            format!("http://127.0.0.1:{port}/health")
        );
        assert_eq!(
            server.url("health"),
            format!("http://127.0.0.1:{port}/health")
        );
        assert_eq!(server.url(""), format!("http://127.0.0.1:{port}"));
    }

    #[test]
    fn health_is_ok_until_planted_otherwise() {
        let server = HttpServer::start().unwrap();
        let reply = get(&server, "/health");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, "ok\n");
        assert!(reply.headers["content-type"].starts_with("text/plain"));

        let planted = request(&server, "PUT", "/admin/health/503", &[], "");
        assert_eq!(planted.status, 200);
        let reply = get(&server, "/health");
        assert_eq!(reply.status, 503);
        assert_eq!(reply.body, "unhealthy\n");

        server.set_health(500);
        assert_eq!(get(&server, "/health").status, 500);
        server.set_health(200);
        assert_eq!(get(&server, "/health").body, "ok\n");

        assert_eq!(
            request(&server, "PUT", "/admin/health/nope", &[], "").status,
            400
        );
        assert_eq!(
            request(&server, "PUT", "/admin/health/42", &[], "").status,
            400
        );
        assert_eq!(get(&server, "/health").status, 200);
    }

    #[test]
    fn status_answers_with_the_code_asked_for() {
        let server = HttpServer::start().unwrap();
        for code in [200, 201, 404, 418, 500, 503] {
            let reply = get(&server, &format!("/status/{code}"));
            assert_eq!(reply.status, code);
            assert_eq!(reply.body, format!("status {code}\n"));
        }
        assert_eq!(get(&server, "/status/abc").status, 400);
    }

    #[test]
    fn slow_waits_before_answering() {
        let server = HttpServer::start().unwrap();
        let started = Instant::now();
        let reply = get(&server, "/slow/300");
        assert_eq!(reply.status, 200);
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(get(&server, "/slow/soon").status, 400);
    }

    #[test]
    fn slow_requests_do_not_block_others() {
        let server = Arc::new(HttpServer::start().unwrap());
        let slow = std::thread::spawn({
            let server = server.clone();
            move || get(&server, "/slow/1500").status
        });
        std::thread::sleep(Duration::from_millis(100));
        let started = Instant::now();
        assert_eq!(get(&server, "/health").status, 200);
        assert!(started.elapsed() < Duration::from_millis(1000));
        assert_eq!(slow.join().unwrap(), 200);
    }

    #[test]
    fn hooks_record_bodies_and_headers() {
        let server = HttpServer::start().unwrap();
        assert!(server.hooks("notify").is_empty());

        let reply = request(
            &server,
            "POST",
            "/hooks/notify",
            &[("Content-Type", "application/json"), ("X-Run", "r1")],
            r#"{"text":"deployed"}"#,
        );
        assert_eq!(reply.status, 200);
        assert_eq!(reply.headers["content-type"], "application/json");
        assert_eq!(reply.json(), json!({ "ok": true }));
        request(&server, "POST", "/hooks/notify", &[], "plain words");
        request(&server, "POST", "/hooks/slack", &[], "[1,2]");

        assert_eq!(
            server.hooks("notify"),
            vec![json!({ "text": "deployed" }), json!("plain words")]
        );
        assert_eq!(server.hooks("slack"), vec![json!([1, 2])]);
        let headers = server.hook_headers("notify");
        assert_eq!(headers.len(), 2);
        assert_eq!(headers[0]["x-run"], "r1");
        assert_eq!(headers[0]["content-type"], "application/json");
        assert!(!headers[1].contains_key("x-run"));

        let listed = get(&server, "/hooks/notify");
        assert_eq!(listed.status, 200);
        assert_eq!(
            listed.json(),
            json!([{ "text": "deployed" }, "plain words"])
        );
        assert_eq!(get(&server, "/hooks/nobody").json(), json!([]));
    }

    #[test]
    fn echo_returns_the_request() {
        let server = HttpServer::start().unwrap();
        let reply = request(
            &server,
            "POST",
            "/echo",
            &[
                ("Authorization", "Bearer t0ken"),
                ("Accept", "a"),
                ("Accept", "b"),
            ],
            r#"{"n":1}"#,
        );
        assert_eq!(reply.status, 200);
        assert_eq!(reply.headers["content-type"], "application/json");
        let echoed = reply.json();
        assert_eq!(echoed["method"], "POST");
        assert_eq!(echoed["body"], json!({ "n": 1 }));
        assert_eq!(echoed["headers"]["authorization"], "Bearer t0ken");
        assert_eq!(echoed["headers"]["accept"], "a, b");

        let reply = request(&server, "POST", "/echo", &[], "not json");
        assert_eq!(reply.json()["body"], json!("not json"));
    }

    #[test]
    fn everything_else_is_not_found() {
        let server = HttpServer::start().unwrap();
        assert_eq!(get(&server, "/").status, 404);
        assert_eq!(get(&server, "/nope").status, 404);
        assert_eq!(get(&server, "/echo").status, 404);
        assert_eq!(get(&server, "/hooks/").status, 404);
        assert_eq!(request(&server, "DELETE", "/health", &[], "").status, 404);
        assert_eq!(get(&server, "/health/extra").status, 404);
    }

    #[test]
    fn query_strings_are_ignored_for_routing() {
        let server = HttpServer::start().unwrap();
        assert_eq!(get(&server, "/health?probe=1").status, 200);
    }

    #[test]
    fn drop_stops_the_server() {
        let server = HttpServer::start().unwrap();
        let addr = server.addr();
        // An idle keep-alive connection and a sleeping request must not hold up drop.
        let _idle = TcpStream::connect(addr).unwrap();
        let sleeper = std::thread::spawn({
            let url = addr;
            move || {
                let mut stream = TcpStream::connect(url).unwrap();
                stream
                    .write_all(b"GET /slow/60000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .unwrap();
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest);
            }
        });
        std::thread::sleep(Duration::from_millis(100));
        let started = Instant::now();
        drop(server);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(TcpStream::connect(addr).is_err());
        sleeper.join().unwrap();
    }
}
