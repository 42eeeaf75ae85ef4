//! `?watch=true`: a chunked stream of JSON lines
//! `{"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":...}`.
//!
//! A watch replays the store's event history after the asked
//! `resourceVersion` (or, without one, the current objects as ADDED), then
//! follows live events; selectors are applied to both the old and the new
//! state of a modified object, so objects entering or leaving the selection
//! arrive as ADDED or DELETED, as from the real API. A `resourceVersion`
//! older than the history is answered like the real watch cache does: a 200
//! stream with one ERROR event carrying a 410 `Expired` Status, which makes
//! kube-rs and client-go re-list.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::Shared;
use super::errors::ApiError;
use super::resources::Resource;
use super::selector::{FieldSelector, LabelSelector};
use super::store::{Event, EventType};
use super::table::{self, Include};

/// How often a watch that allows bookmarks gets one.
const BOOKMARK_EVERY: Duration = Duration::from_secs(5);

/// A response body fed from a channel: each message is one chunk.
#[derive(Debug)]
pub(crate) struct ChannelBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.get_mut()
            .0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|chunk| Ok(Frame::data(chunk))))
    }
}

/// What a watch asked for.
#[derive(Debug)]
pub(crate) struct WatchRequest {
    pub(crate) resource: &'static Resource,
    pub(crate) namespace: Option<String>,
    pub(crate) labels: LabelSelector,
    pub(crate) fields: FieldSelector,
    /// None for `""` or `"0"`: start with the current objects.
    pub(crate) resource_version: Option<u64>,
    /// `sendInitialEvents=true`: the current objects, then a BOOKMARK marked
    /// `k8s.io/initial-events-end`.
    pub(crate) send_initial_events: bool,
    pub(crate) bookmarks: bool,
    pub(crate) timeout: Duration,
    /// `kubectl get -w` asks for each object as a one-row Table.
    pub(crate) table: Option<Include>,
}

impl WatchRequest {
    fn selects(&self, object: &Value) -> bool {
        let namespace = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str);
        self.namespace
            .as_deref()
            .is_none_or(|wanted| namespace == Some(wanted))
            && self.labels.matches(object)
            && self.fields.matches(object)
    }

    /// The event this watcher sees for `event`, if any.
    fn translate(&self, event: &Event) -> Option<Value> {
        if !std::ptr::eq(event.resource, self.resource) {
            return None;
        }
        let now = self.selects(&event.object);
        let kind = match event.kind {
            EventType::Added | EventType::Deleted => now.then_some(event.kind.as_str()),
            EventType::Modified => {
                let before = event.old.as_ref().is_none_or(|old| self.selects(old));
                match (before, now) {
                    (true, true) => Some("MODIFIED"),
                    (false, true) => Some("ADDED"),
                    (true, false) => Some("DELETED"),
                    (false, false) => None,
                }
            }
        }?;
        Some(self.event(kind, &event.object))
    }

    /// `{"type", "object"}`, the object as a Table if one was asked for.
    fn event(&self, kind: &str, object: &Value) -> Value {
        let object = match self.table {
            Some(include) => {
                let rv = object
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                table::table(self.resource, &[object], rv, include)
            }
            None => object.clone(),
        };
        json!({ "type": kind, "object": object })
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Value {
        let mut metadata = json!({ "resourceVersion": rv.to_string() });
        if initial_end {
            metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
        }
        json!({
            "type": "BOOKMARK",
            "object": {
                "kind": self.resource.kind,
                "apiVersion": self.resource.api_version(),
                "metadata": metadata,
            },
        })
    }
}

fn line(event: &Value) -> Bytes {
    let mut text = event.to_string();
    text.push('\n');
    Bytes::from(text)
}

fn expired(asked: u64, oldest: u64) -> Value {
    json!({ "type": "ERROR", "object": ApiError::expired(asked, oldest).status() })
}

/// Start a watch: read what it must replay and subscribe, under one lock so
/// nothing is missed or doubled, then stream from a task on the server's
/// runtime. The stream ends at `timeoutSeconds`, when the client goes away,
/// or when the lab stops.
pub(crate) fn start(shared: &Shared, request: WatchRequest) -> ChannelBody {
    let (sender, receiver) = mpsc::channel(256);
    let (first, events, since) = {
        let cluster = shared.lock();
        let store = &cluster.store;
        let current = store.resource_version();
        let mut first = Vec::new();
        let mut expired_at = None;
        match request.resource_version {
            Some(rv) if !request.send_initial_events => match store.events_after(rv) {
                Ok(backlog) => {
                    first.extend(backlog.iter().filter_map(|event| request.translate(event)));
                }
                Err(oldest) => expired_at = Some((rv, oldest)),
            },
            _ => {
                let namespace = request.namespace.as_deref();
                for object in store.list(request.resource, namespace) {
                    if request.selects(object) {
                        first.push(request.event("ADDED", object));
                    }
                }
                if request.send_initial_events {
                    first.push(request.bookmark(current, true));
                }
            }
        }
        match expired_at {
            Some((asked, oldest)) => (vec![expired(asked, oldest)], None, current),
            None => (
                first,
                Some(store.subscribe()),
                current.max(request.resource_version.unwrap_or(0)),
            ),
        }
    };
    tokio::spawn(stream(sender, request, first, events, since));
    ChannelBody(receiver)
}

async fn stream(
    sender: mpsc::Sender<Bytes>,
    request: WatchRequest,
    first: Vec<Value>,
    events: Option<broadcast::Receiver<Arc<Event>>>,
    mut last_rv: u64,
) {
    for event in &first {
        if sender.send(line(event)).await.is_err() {
            return;
        }
    }
    let Some(mut events) = events else {
        return;
    };
    let deadline = tokio::time::sleep(request.timeout);
    tokio::pin!(deadline);
    let mut bookmarks = tokio::time::interval(BOOKMARK_EVERY);
    bookmarks.tick().await;
    loop {
        tokio::select! {
            () = &mut deadline => return,
            () = sender.closed() => return,
            _ = bookmarks.tick(), if request.bookmarks => {
                if sender.send(line(&request.bookmark(last_rv, false))).await.is_err() {
                    return;
                }
            }
            received = events.recv() => match received {
                Ok(event) => {
                    if event.rv <= last_rv {
                        continue;
                    }
                    last_rv = event.rv;
                    if let Some(event) = request.translate(&event)
                        && sender.send(line(&event)).await.is_err()
                    {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Too slow a reader: make it re-list, as the real API would.
                    let _ = sender.send(line(&expired(last_rv, last_rv + 1))).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}
