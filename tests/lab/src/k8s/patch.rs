//! The PATCH flavours the real API takes, applied to plain JSON:
//! JSON merge patch (RFC 7386), strategic merge patch (lists of named things
//! merge by their key, with the `$patch`, `$setElementOrder`, `$retainKeys`
//! and `$deleteFromPrimitiveList` directives kubectl sends), JSON patch
//! (RFC 6902) and the pieces of server-side apply: removing what a manager
//! stopped applying, and the `fieldsV1` sets of `metadata.managedFields`.

use serde_json::{Map, Value, json};

/// RFC 7386: objects merge, `null` deletes, anything else replaces.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// RFC 6902, atomically (a failing operation leaves `target` unchanged).
pub(crate) fn json_patch(target: &mut Value, patch: &Value) -> Result<(), String> {
    let patch: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|error| format!("invalid JSON patch: {error}"))?;
    json_patch::patch(target, &patch).map_err(|error| error.to_string())
}

/// How the items of a list field merge in a strategic merge patch.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ListMerge {
    /// Replace the whole list (the default for fields without a strategy).
    Replace,
    /// Items are objects identified by this key.
    ByKey(&'static str),
    /// A set of scalars (`finalizers`).
    Set,
}

/// The patch strategy of a list field, after the Kubernetes types' struct
/// tags (`patchStrategy:"merge" patchMergeKey:"..."`); `items` tells
/// container ports (`containerPort`) from service ports (`port`).
fn list_merge(field: &str, items: &[&Value]) -> ListMerge {
    let has = |key: &str| items.iter().any(|item| item.get(key).is_some());
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims" => ListMerge::ByKey("name"),
        "ports" if has("containerPort") => ListMerge::ByKey("containerPort"),
        "ports" => ListMerge::ByKey("port"),
        "volumeMounts" => ListMerge::ByKey("mountPath"),
        "volumeDevices" => ListMerge::ByKey("devicePath"),
        "conditions" => ListMerge::ByKey("type"),
        "ownerReferences" => ListMerge::ByKey("uid"),
        "hostAliases" => ListMerge::ByKey("ip"),
        "topologySpreadConstraints" => ListMerge::ByKey("topologyKey"),
        "finalizers" => ListMerge::Set,
        _ => ListMerge::Replace,
    }
}

/// Apply a strategic merge patch.
pub(crate) fn strategic_merge(target: &mut Value, patch: &Value) -> Result<(), String> {
    match patch {
        Value::Object(patch) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(target) = target {
                merge_map(target, patch)?;
            }
            Ok(())
        }
        other => {
            *target = other.clone();
            Ok(())
        }
    }
}

fn merge_map(target: &mut Map<String, Value>, patch: &Map<String, Value>) -> Result<(), String> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            *target = without_directives(patch);
            return Ok(());
        }
        Some("delete") => {
            target.clear();
            return Ok(());
        }
        Some("merge") | None => {}
        Some(other) => return Err(format!("unknown patch type: {other}")),
    }
    if let Some(keep) = patch.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        target.retain(|key, _| keep.contains(&key.as_str()));
    }
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            let remove = value.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(items)) = target.get_mut(field) {
                items.retain(|item| !remove.contains(item));
            }
            continue;
        }
        if key.starts_with('$') {
            continue;
        }
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(inner) => {
                if inner.get("$patch").and_then(Value::as_str) == Some("delete") {
                    target.remove(key);
                    continue;
                }
                let slot = target.entry(key.clone()).or_insert(Value::Null);
                strategic_merge(slot, value)?;
            }
            Value::Array(items) => {
                let current = match target.remove(key) {
                    Some(Value::Array(current)) => current,
                    _ => Vec::new(),
                };
                let merged = merge_list(key, current, items)?;
                target.insert(key.clone(), Value::Array(merged));
            }
            scalar => {
                target.insert(key.clone(), scalar.clone());
            }
        }
    }
    // `$setElementOrder/FIELD` orders the merged list as the client has it.
    for (key, order) in patch {
        if let (Some(field), Value::Array(order)) = (key.strip_prefix("$setElementOrder/"), order)
            && let Some(Value::Array(items)) = target.get_mut(field)
        {
            reorder(field, items, order);
        }
    }
    Ok(())
}

fn merge_list(field: &str, current: Vec<Value>, patch: &[Value]) -> Result<Vec<Value>, String> {
    let all: Vec<&Value> = current.iter().chain(patch).collect();
    let strategy = list_merge(field, &all);
    if patch
        .iter()
        .any(|item| item.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return Ok(patch
            .iter()
            .filter(|item| item.get("$patch").is_none())
            .cloned()
            .collect());
    }
    match strategy {
        ListMerge::Replace => Ok(patch.to_vec()),
        ListMerge::Set => {
            let mut merged = current;
            for item in patch {
                if !merged.contains(item) {
                    merged.push(item.clone());
                }
            }
            Ok(merged)
        }
        ListMerge::ByKey(merge_key) => {
            let mut merged = current;
            for item in patch {
                let Some(id) = item.get(merge_key) else {
                    return Err(format!(
                        "map: {item} does not contain declared merge key: {merge_key}"
                    ));
                };
                let position = merged.iter().position(|m| m.get(merge_key) == Some(id));
                let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                match (position, delete) {
                    (Some(index), true) => {
                        merged.remove(index);
                    }
                    (None, true) => {}
                    (Some(index), false) => strategic_merge(&mut merged[index], item)?,
                    (None, false) => {
                        let mut added = Value::Object(Map::new());
                        strategic_merge(&mut added, item)?;
                        merged.push(added);
                    }
                }
            }
            Ok(merged)
        }
    }
}

/// Put the items named in `order` first, in that order; the rest follow as they were.
fn reorder(field: &str, items: &mut Vec<Value>, order: &[Value]) {
    let all: Vec<&Value> = order.iter().collect();
    let key_of = |item: &Value| match list_merge(field, &all) {
        ListMerge::ByKey(key) => item.get(key).cloned(),
        _ => Some(item.clone()),
    };
    let mut ordered = Vec::with_capacity(items.len());
    for wanted in order {
        let wanted = key_of(wanted);
        if let Some(index) = items.iter().position(|item| key_of(item) == wanted) {
            ordered.push(items.remove(index));
        }
    }
    ordered.append(items);
    *items = ordered;
}

fn without_directives(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter()
        .filter(|(key, _)| !key.starts_with('$'))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

/// Server-side apply: remove from `live` what `previous` (the manager's last
/// applied configuration) set and `applied` (its new one) no longer does.
/// Keyed list items are matched by key; other lists are atomic.
pub(crate) fn remove_unapplied(live: &mut Value, previous: &Value, applied: &Value) {
    remove_in(live, previous, applied, "");
}

fn remove_in(live: &mut Value, previous: &Value, applied: &Value, field: &str) {
    match (live, previous, applied) {
        (Value::Object(live), Value::Object(previous), Value::Object(applied)) => {
            for (key, before) in previous {
                match applied.get(key) {
                    None => {
                        live.remove(key);
                    }
                    Some(now) => {
                        if let Some(slot) = live.get_mut(key) {
                            remove_in(slot, before, now, key);
                        }
                    }
                }
            }
        }
        (Value::Array(live), Value::Array(previous), Value::Array(applied)) => {
            let all: Vec<&Value> = previous.iter().chain(applied.iter()).collect();
            if let ListMerge::ByKey(key) = list_merge(field, &all) {
                for before in previous {
                    let id = before.get(key);
                    match applied.iter().find(|item| item.get(key) == id) {
                        None => live.retain(|item| item.get(key) != id),
                        Some(now) => {
                            if let Some(slot) = live.iter_mut().find(|item| item.get(key) == id) {
                                remove_in(slot, before, now, "");
                            }
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

/// Metadata fields the server owns; never part of a manager's field set.
const SYSTEM_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
];

/// The `fieldsV1` set of the fields in `config` (`f:spec`, `k:{"name":"web"}`).
pub(crate) fn fields_v1(config: &Value) -> Value {
    let mut fields = Map::new();
    if let Value::Object(map) = config {
        for (key, value) in map {
            if key == "apiVersion" || key == "kind" || key == "status" || key.starts_with('$') {
                continue;
            }
            let value = if key == "metadata" {
                let mut metadata = value.clone();
                if let Value::Object(metadata) = &mut metadata {
                    metadata.retain(|key, _| !SYSTEM_METADATA.contains(&key.as_str()));
                    if metadata.is_empty() {
                        continue;
                    }
                }
                metadata
            } else {
                value.clone()
            };
            fields.insert(format!("f:{key}"), field_set(key, &value));
        }
    }
    Value::Object(fields)
}

fn field_set(field: &str, value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(key, _)| !key.starts_with('$'))
                .map(|(key, value)| (format!("f:{key}"), field_set(key, value)))
                .collect(),
        ),
        Value::Array(items) => {
            let all: Vec<&Value> = items.iter().collect();
            match list_merge(field, &all) {
                ListMerge::ByKey(key) => {
                    let mut set = Map::new();
                    for item in items {
                        let id = json!({ key: item.get(key).cloned().unwrap_or(Value::Null) });
                        let mut inner = match field_set("", item) {
                            Value::Object(inner) => inner,
                            _ => Map::new(),
                        };
                        inner.insert(".".to_owned(), json!({}));
                        set.insert(format!("k:{id}"), Value::Object(inner));
                    }
                    Value::Object(set)
                }
                ListMerge::Set => Value::Object(
                    items
                        .iter()
                        .map(|item| (format!("v:{item}"), json!({})))
                        .collect(),
                ),
                ListMerge::Replace => json!({}),
            }
        }
        _ => json!({}),
    }
}

/// Record in `metadata.managedFields` that `manager` wrote `fields` with
/// `operation` (`Apply` or `Update`), replacing its previous entry for the
/// same operation and subresource.
pub(crate) fn record_manager(
    object: &mut Value,
    manager: &str,
    operation: &str,
    subresource: Option<&str>,
    fields: Value,
) {
    let api_version = object.get("apiVersion").cloned().unwrap_or(Value::Null);
    let mut entry = json!({
        "manager": manager,
        "operation": operation,
        "apiVersion": api_version,
        "time": super::now(),
        "fieldsType": "FieldsV1",
    });
    entry["fieldsV1"] = fields;
    if let Some(subresource) = subresource {
        entry["subresource"] = json!(subresource);
    }
    let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let entries = metadata.entry("managedFields").or_insert_with(|| json!([]));
    if !entries.is_array() {
        *entries = json!([]);
    }
    if let Value::Array(entries) = entries {
        entries.retain(|existing| {
            !(existing.get("manager").and_then(Value::as_str) == Some(manager)
                && existing.get("operation").and_then(Value::as_str) == Some(operation)
                && existing.get("subresource").and_then(Value::as_str) == subresource)
        });
        entries.push(entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(image: &str) -> Value {
        json!({
            "metadata": { "name": "web", "labels": { "app": "web" }, "finalizers": ["a"] },
            "spec": {
                "replicas": 2,
                "template": { "spec": { "containers": [
                    { "name": "web", "image": image, "ports": [{ "containerPort": 80 }] },
                    { "name": "sidecar", "image": "envoy:1" },
                ] } },
            },
        })
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut target = json!({ "a": { "b": 1, "c": 2 }, "d": [1, 2] });
        merge_patch(
            &mut target,
            &json!({ "a": { "b": null, "e": 3 }, "d": [3] }),
        );
        assert_eq!(target, json!({ "a": { "c": 2, "e": 3 }, "d": [3] }));
    }

    #[test]
    fn strategic_merge_sets_one_containers_image() {
        // What `kubectl set image deployment/web web=web:v2` sends.
        let mut target = deployment("web:v1");
        let patch = json!({ "spec": { "template": { "spec": {
            "$setElementOrder/containers": [{ "name": "web" }, { "name": "sidecar" }],
            "containers": [{ "image": "web:v2", "name": "web" }],
        } } } });
        strategic_merge(&mut target, &patch).unwrap();
        assert_eq!(target, deployment("web:v2"));
    }

    #[test]
    fn strategic_merge_directives() {
        let mut target = deployment("web:v1");
        let patch = json!({
            "metadata": { "finalizers": ["b"], "labels": { "$patch": "replace", "tier": "x" } },
            "spec": { "template": { "spec": {
                "containers": [
                    { "name": "sidecar", "$patch": "delete" },
                    { "name": "new", "image": "n:1" },
                ],
            } } },
        });
        strategic_merge(&mut target, &patch).unwrap();
        assert_eq!(target["metadata"]["finalizers"], json!(["a", "b"]));
        assert_eq!(target["metadata"]["labels"], json!({ "tier": "x" }));
        let names: Vec<&str> = target["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["web", "new"]);

        let mut target = json!({ "metadata": { "finalizers": ["a", "b"] } });
        strategic_merge(
            &mut target,
            &json!({ "metadata": { "$deleteFromPrimitiveList/finalizers": ["a"] } }),
        )
        .unwrap();
        assert_eq!(target, json!({ "metadata": { "finalizers": ["b"] } }));

        let mut target = json!({ "spec": { "strategy": { "type": "RollingUpdate", "rollingUpdate": { "maxSurge": 1 } } } });
        strategic_merge(
            &mut target,
            &json!({ "spec": { "strategy": { "$retainKeys": ["type"], "type": "Recreate" } } }),
        )
        .unwrap();
        assert_eq!(
            target,
            json!({ "spec": { "strategy": { "type": "Recreate" } } })
        );
        assert!(
            strategic_merge(
                &mut target,
                &json!({ "spec": { "containers": [{ "image": "x" }] } })
            )
            .is_err()
        );
    }

    #[test]
    fn json_patch_is_atomic() {
        let mut target = json!({ "a": 1 });
        json_patch(
            &mut target,
            &json!([{ "op": "replace", "path": "/a", "value": 2 }]),
        )
        .unwrap();
        assert_eq!(target, json!({ "a": 2 }));
        let failing = json!([
            { "op": "replace", "path": "/a", "value": 3 },
            { "op": "test", "path": "/a", "value": 4 },
        ]);
        assert!(json_patch(&mut target, &failing).is_err());
        assert_eq!(target, json!({ "a": 2 }));
        assert!(json_patch(&mut target, &json!({ "op": "add" })).is_err());
    }

    #[test]
    fn apply_removes_what_a_manager_stopped_applying() {
        let previous = json!({ "metadata": { "labels": { "a": "1", "b": "2" } },
            "spec": { "containers": [{ "name": "x", "env": [{ "name": "E" }] }, { "name": "y" }] } });
        let applied = json!({ "metadata": { "labels": { "a": "1" } },
            "spec": { "containers": [{ "name": "x" }] } });
        let mut live = json!({ "metadata": { "labels": { "a": "1", "b": "2", "c": "3" } },
            "spec": { "containers": [{ "name": "x", "image": "i", "env": [{ "name": "E" }] }, { "name": "y" }] } });
        remove_unapplied(&mut live, &previous, &applied);
        assert_eq!(
            live,
            json!({ "metadata": { "labels": { "a": "1", "c": "3" } },
            "spec": { "containers": [{ "name": "x", "image": "i" }] } })
        );
    }

    #[test]
    fn field_sets_name_keyed_items() {
        let fields = fields_v1(&json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "web", "labels": { "app": "web" } },
            "spec": { "template": { "spec": { "containers": [{ "name": "web", "image": "i" }] } } },
        }));
        assert_eq!(
            fields,
            json!({
                "f:metadata": { "f:labels": { "f:app": {} } },
                "f:spec": { "f:template": { "f:spec": { "f:containers": {
                    "k:{\"name\":\"web\"}": { ".": {}, "f:name": {}, "f:image": {} },
                } } } },
            })
        );
        let mut object = json!({ "apiVersion": "v1", "metadata": {} });
        record_manager(&mut object, "kubectl", "Apply", None, json!({}));
        record_manager(
            &mut object,
            "kubectl",
            "Apply",
            None,
            json!({ "f:data": {} }),
        );
        record_manager(&mut object, "kubectl", "Update", Some("scale"), json!({}));
        let entries = object["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0]["fieldsV1"], json!({ "f:data": {} }));
        assert_eq!(entries[1]["subresource"], "scale");
    }
}
