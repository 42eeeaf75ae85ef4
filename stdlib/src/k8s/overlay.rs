//! What the planned writes of an online dry-run would have made. The API
//! server's own dry run (`dryRun=All`) cannot see an object that was only
//! planned, so a later write into a planned namespace, or an update of a
//! planned object, would fail with NotFound. Each previewed write is kept
//! here with its plan number; a preview that depends on one is shown "after
//! change N" with its would-be object instead of failing.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use serde_json::Value;

/// A would-be object and the plan number of the write that makes it.
#[derive(Debug, Clone)]
pub(crate) struct Planned {
    pub(crate) change: Option<usize>,
    pub(crate) object: Value,
}

static PLANNED: Mutex<BTreeMap<String, Planned>> = Mutex::new(BTreeMap::new());

fn key(kind: &str, namespace: Option<&str>, name: &str) -> String {
    format!("{}/{}/{name}", kind.to_lowercase(), namespace.unwrap_or(""))
}

/// Remember what a previewed write would make.
pub(crate) fn record(kind: &str, namespace: Option<&str>, name: &str, planned: Planned) {
    PLANNED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(key(kind, namespace, name), planned);
}

/// The would-be object of an earlier planned write, if there is one.
pub(crate) fn get(kind: &str, namespace: Option<&str>, name: &str) -> Option<Planned> {
    PLANNED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key(kind, namespace, name))
        .cloned()
}

/// A namespace only an earlier planned write creates.
pub(crate) fn namespace(name: &str) -> Option<Planned> {
    get("namespace", None, name)
}

/// `patch` merged over `base` (JSON merge patch, RFC 7386): what applying
/// a manifest to an object that exists only in the plan would give.
pub(crate) fn merge(base: Option<&Value>, patch: &Value) -> Value {
    match (base, patch) {
        (Some(Value::Object(base)), Value::Object(patch)) => {
            let mut merged = base.clone();
            for (field, value) in patch {
                if value.is_null() {
                    merged.remove(field);
                } else {
                    let next = merge(merged.get(field), value);
                    merged.insert(field.clone(), next);
                }
            }
            Value::Object(merged)
        }
        _ => patch.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_keeps_what_the_patch_does_not_name() {
        let base = json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "data": {"k": "v"}});
        let patch = json!({"metadata": {"labels": {"y": "2"}}, "data": {"k": null}});
        assert_eq!(
            merge(Some(&base), &patch),
            json!({"metadata": {"name": "a", "labels": {"x": "1", "y": "2"}}, "data": {}})
        );
    }

    #[test]
    fn planned_objects_are_found_by_kind_namespace_and_name() {
        record(
            "Namespace",
            None,
            "overlay-test",
            Planned {
                change: Some(1),
                object: json!({}),
            },
        );
        assert_eq!(namespace("overlay-test").and_then(|p| p.change), Some(1));
        assert!(get("secrets", Some("overlay-test"), "db").is_none());
    }
}
