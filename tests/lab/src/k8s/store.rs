//! The object store: every object of every type, one global
//! `resourceVersion` counter, and the event log that watches replay from and
//! follow (a bounded history plus a broadcast channel for live fan-out).
//!
//! Objects are plain JSON values with `apiVersion` and `kind` set. The store
//! itself has no API semantics (defaults, validation, generation): those live
//! in `api.rs`; the store only numbers writes and tells watchers.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::resources::Resource;

/// Events kept for watches that resume from a `resourceVersion`; a watch from
/// before the oldest kept event gets `410 Expired`, as from the real API.
pub(crate) const HISTORY: usize = 10_000;

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One write, as watches see it.
#[derive(Debug)]
pub(crate) struct Event {
    pub(crate) rv: u64,
    pub(crate) resource: &'static Resource,
    pub(crate) kind: EventType,
    /// The object after the write (for a deletion: as it was, with the
    /// deletion's resourceVersion).
    pub(crate) object: Value,
    /// The object before a modification, so a watch with a selector can tell
    /// an object leaving its selection (sent as DELETED) from one entering it
    /// (sent as ADDED), as the real API does.
    pub(crate) old: Option<Value>,
}

type Key = (&'static str, &'static str, String, String);

/// All objects and the event log.
#[derive(Debug)]
pub(crate) struct Store {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    history: VecDeque<Arc<Event>>,
    history_limit: usize,
    /// The resourceVersion of the newest event dropped from `history`.
    dropped: u64,
    events: broadcast::Sender<Arc<Event>>,
    /// The last configuration each field manager applied to each object
    /// (by uid), so server-side apply can remove fields a manager stopped
    /// applying.
    pub(crate) applied: BTreeMap<(String, String), Value>,
}

impl Store {
    pub(crate) fn new() -> Store {
        Store::with_history(HISTORY)
    }

    pub(crate) fn with_history(history_limit: usize) -> Store {
        let (events, _) = broadcast::channel(4096);
        Store {
            rv: 1000,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            history_limit,
            dropped: 0,
            events,
            applied: BTreeMap::new(),
        }
    }

    /// The newest resourceVersion handed out.
    pub(crate) fn resource_version(&self) -> u64 {
        self.rv
    }

    pub(crate) fn get(&self, resource: &Resource, namespace: &str, name: &str) -> Option<&Value> {
        self.objects.get(&(
            resource.group,
            resource.plural,
            namespace.to_owned(),
            name.to_owned(),
        ))
    }

    /// The objects of a type, in one namespace or (None) all, ordered by
    /// namespace then name.
    pub(crate) fn list(&self, resource: &Resource, namespace: Option<&str>) -> Vec<&Value> {
        let start = (
            resource.group,
            resource.plural,
            namespace.unwrap_or_default().to_owned(),
            String::new(),
        );
        self.objects
            .range(start..)
            .take_while(|((group, plural, ns, _), _)| {
                *group == resource.group
                    && *plural == resource.plural
                    && namespace.is_none_or(|namespace| namespace == ns)
            })
            .map(|(_, object)| object)
            .collect()
    }

    /// Store `object` (created or replaced, by its namespace and name) with
    /// the next resourceVersion, tell watchers, and return it as stored.
    pub(crate) fn put(&mut self, resource: &'static Resource, mut object: Value) -> Value {
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let key = key(resource, &object);
        let old = self.objects.insert(key, object.clone());
        let kind = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.publish(Event {
            rv: self.rv,
            resource,
            kind,
            object: object.clone(),
            old,
        });
        object
    }

    /// Delete an object, tell watchers, and return it (carrying the
    /// deletion's resourceVersion, as the real API's DELETED events do).
    pub(crate) fn remove(
        &mut self,
        resource: &'static Resource,
        namespace: &str,
        name: &str,
    ) -> Option<Value> {
        let key = (
            resource.group,
            resource.plural,
            namespace.to_owned(),
            name.to_owned(),
        );
        let mut object = self.objects.remove(&key)?;
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        if let Some(uid) = object.pointer("/metadata/uid").and_then(Value::as_str) {
            self.applied.retain(|(owner, _), _| owner != uid);
        }
        self.publish(Event {
            rv: self.rv,
            resource,
            kind: EventType::Deleted,
            object: object.clone(),
            old: None,
        });
        Some(object)
    }

    fn publish(&mut self, event: Event) {
        let event = Arc::new(event);
        self.history.push_back(event.clone());
        while self.history.len() > self.history_limit {
            if let Some(dropped) = self.history.pop_front() {
                self.dropped = dropped.rv;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.events.send(event);
    }

    /// Events newer than `rv`, oldest first; `Err(oldest kept)` when events
    /// after `rv` were already dropped.
    pub(crate) fn events_after(&self, rv: u64) -> Result<Vec<Arc<Event>>, u64> {
        if rv < self.dropped {
            return Err(self.dropped + 1);
        }
        Ok(self
            .history
            .iter()
            .filter(|event| event.rv > rv)
            .cloned()
            .collect())
    }

    /// A receiver for every event published from now on. Subscribe while
    /// holding the store's lock, after reading the backlog, so no event is
    /// missed or sent twice.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }
}

fn key(resource: &'static Resource, object: &Value) -> Key {
    let text = |pointer: &str| {
        object
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    (
        resource.group,
        resource.plural,
        text("/metadata/namespace"),
        text("/metadata/name"),
    )
}

/// A random UUID (version 4 layout), as the real API gives `metadata.uid`.
pub(crate) fn uid() -> String {
    let bytes: [u8; 16] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-4{}-8{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::resources::find;

    fn object(namespace: &str, name: &str) -> Value {
        json!({ "metadata": { "namespace": namespace, "name": name } })
    }

    #[test]
    fn every_write_gets_the_next_resource_version() {
        let mut store = Store::new();
        let cm = find("cm").unwrap();
        let first = store.put(cm, object("a", "x"));
        let second = store.put(cm, object("a", "y"));
        let rv = |v: &Value| {
            v["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        };
        assert_eq!(rv(&second), rv(&first) + 1);
        assert_eq!(store.resource_version(), rv(&second));
        let deleted = store.remove(cm, "a", "x").unwrap();
        assert_eq!(rv(&deleted), rv(&second) + 1);
        assert!(store.get(cm, "a", "x").is_none());
        assert!(store.remove(cm, "a", "x").is_none());
    }

    #[test]
    fn lists_are_per_type_and_namespace() {
        let mut store = Store::new();
        let cm = find("cm").unwrap();
        let secrets = find("secrets").unwrap();
        store.put(cm, object("b", "two"));
        store.put(cm, object("a", "one"));
        store.put(cm, object("ab", "three"));
        store.put(secrets, object("a", "s"));
        let names = |items: Vec<&Value>| -> Vec<String> {
            items
                .iter()
                .map(|v| v["metadata"]["name"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(names(store.list(cm, None)), ["one", "three", "two"]);
        assert_eq!(names(store.list(cm, Some("a"))), ["one"]);
        assert_eq!(names(store.list(secrets, None)), ["s"]);
    }

    #[test]
    fn old_resource_versions_expire() {
        let mut store = Store::with_history(2);
        let cm = find("cm").unwrap();
        let start = store.resource_version();
        for name in ["a", "b", "c", "d"] {
            store.put(cm, object("n", name));
        }
        assert_eq!(store.events_after(start).err(), Some(start + 3));
        let recent = store.events_after(start + 2).unwrap();
        let kinds: Vec<u64> = recent.iter().map(|e| e.rv).collect();
        assert_eq!(kinds, [start + 3, start + 4]);
        assert!(store.events_after(start + 4).unwrap().is_empty());
    }

    #[test]
    fn uids_look_like_uuids() {
        let one = uid();
        assert_eq!(one.len(), 36);
        assert_eq!(one.matches('-').count(), 4);
        assert_ne!(one, uid());
    }
}
