//! What the API server does between a request body and the store: system
//! metadata (uid, creationTimestamp, generation), `resourceVersion`
//! preconditions, status versus spec writes, no-op detection, `dryRun`,
//! field managers, server-side apply, and cascading deletion. Defaults and
//! validation are `admission.rs`'s.
//!
//! The HTTP layer (`server.rs`) parses requests and calls these; the
//! controller writes straight to the store because its objects are already
//! complete.

use serde_json::{Map, Value, json};

use super::admission::admit;
use super::errors::{ApiError, Cause};
use super::patch;
use super::resources::{self, RESOURCES, Resource};
use super::store::{self, Store};

/// How a write was asked for.
#[derive(Debug, Clone, Default)]
pub(crate) struct WriteOptions {
    /// `dryRun=All`: validate and answer with the would-be object, store nothing.
    pub(crate) dry_run: bool,
    /// `fieldManager`, else the client's name from its User-Agent.
    pub(crate) manager: String,
}

/// The body formats of PATCH.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum PatchType {
    Merge,
    Strategic,
    Json,
    Apply,
}

impl PatchType {
    /// From the request's Content-Type.
    pub(crate) fn from_content_type(content_type: &str) -> Option<PatchType> {
        let media = content_type.split(';').next().unwrap_or_default().trim();
        match media {
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/json-patch+json" => Some(PatchType::Json),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                Some(PatchType::Apply)
            }
            _ => None,
        }
    }
}

/// A JSON or YAML request body (server-side apply sends either).
pub(crate) fn parse_body(bytes: &[u8]) -> Result<Value, ApiError> {
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ApiError::bad_request("the request body is neither JSON nor YAML"))?;
    serde_saphyr::from_str::<Value>(text).map_err(|error| {
        ApiError::bad_request(format!(
            "error decoding YAML: {}",
            error.to_string().lines().next().unwrap_or_default()
        ))
    })
}

fn text<'a>(object: &'a Value, pointer: &str) -> Option<&'a str> {
    object.pointer(pointer).and_then(Value::as_str)
}

/// POST: create `body` in `namespace` ("" for cluster-scoped types).
pub(crate) fn create(
    store: &mut Store,
    resource: &'static Resource,
    namespace: &str,
    body: Value,
    options: &WriteOptions,
) -> Result<Value, ApiError> {
    let object = prepare_create(store, resource, namespace, body)?;
    finish_create(store, resource, object, options, "Update", None)
}

/// Checks and system fields of a new object, before its manager is recorded.
fn prepare_create(
    store: &Store,
    resource: &'static Resource,
    namespace: &str,
    mut object: Value,
) -> Result<Value, ApiError> {
    check_type(resource, &mut object)?;
    let metadata = metadata_of(&mut object)?;
    if resource.namespaced {
        match metadata.get("namespace").and_then(Value::as_str) {
            Some(given) if !given.is_empty() && given != namespace => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {
                metadata.insert("namespace".into(), json!(namespace));
            }
        }
    } else {
        metadata.remove("namespace");
    }
    if metadata
        .get("resourceVersion")
        .and_then(Value::as_str)
        .is_some_and(|rv| !rv.is_empty())
    {
        return Err(ApiError::internal(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    let has_name = metadata
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|name| !name.is_empty());
    if !has_name && let Some(prefix) = metadata.get("generateName").and_then(Value::as_str) {
        let name = format!("{prefix}{}", random_suffix());
        metadata.insert("name".into(), json!(name));
    }
    for field in [
        "uid",
        "resourceVersion",
        "deletionTimestamp",
        "managedFields",
        "selfLink",
    ] {
        metadata.remove(field);
    }
    metadata.insert("uid".into(), json!(store::uid()));
    metadata.insert("creationTimestamp".into(), json!(super::now()));
    if resource.generation {
        metadata.insert("generation".into(), json!(1));
    }
    if resource.has_subresource("status") {
        object["status"] = json!({});
    }
    let name = text(&object, "/metadata/name")
        .unwrap_or_default()
        .to_owned();
    if name.is_empty() {
        return Err(ApiError::invalid(
            resource,
            "",
            &[Cause {
                reason: "FieldValueRequired",
                field: "metadata.name".into(),
                message: "Required value: name or generateName is required".into(),
            }],
        ));
    }
    if resource.namespaced && store.get(resources::namespaces(), "", namespace).is_none() {
        return Err(ApiError::not_found(resources::namespaces(), namespace));
    }
    admit(resource, None, &mut object)?;
    if store
        .get(resource, namespace_of(resource, namespace), &name)
        .is_some()
    {
        return Err(ApiError::already_exists(resource, &name));
    }
    Ok(object)
}

fn finish_create(
    store: &mut Store,
    resource: &'static Resource,
    mut object: Value,
    options: &WriteOptions,
    operation: &str,
    fields: Option<Value>,
) -> Result<Value, ApiError> {
    let fields = fields.unwrap_or_else(|| patch::fields_v1(&object));
    patch::record_manager(&mut object, &options.manager, operation, None, fields);
    if options.dry_run {
        return Ok(object);
    }
    Ok(store.put(resource, object))
}

fn namespace_of<'a>(resource: &Resource, namespace: &'a str) -> &'a str {
    if resource.namespaced { namespace } else { "" }
}

/// `apiVersion` and `kind` must be absent (filled in) or those of the type.
fn check_type(resource: &Resource, object: &mut Value) -> Result<(), ApiError> {
    let Value::Object(map) = object else {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    };
    let api_version = resource.api_version();
    match map.get("apiVersion").and_then(Value::as_str) {
        Some(given) if !given.is_empty() && given != api_version => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({given}) does not match the expected API version ({api_version})"
            )));
        }
        _ => {
            map.insert("apiVersion".into(), json!(api_version));
        }
    }
    match map.get("kind").and_then(Value::as_str) {
        Some(given) if !given.is_empty() && given != resource.kind => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({given}) does not match the expected kind ({})",
                resource.kind
            )));
        }
        _ => {
            map.insert("kind".into(), json!(resource.kind));
        }
    }
    Ok(())
}

fn metadata_of(object: &mut Value) -> Result<&mut Map<String, Value>, ApiError> {
    let slot = &mut object["metadata"];
    if slot.is_null() {
        *slot = json!({});
    }
    slot.as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata must be an object"))
}

/// PUT (`subresource` None) or PUT of `status`: replace with `body`.
pub(crate) fn replace(
    store: &mut Store,
    resource: &'static Resource,
    namespace: &str,
    name: &str,
    mut body: Value,
    subresource: Option<&str>,
    options: &WriteOptions,
) -> Result<Value, ApiError> {
    let namespace = namespace_of(resource, namespace);
    let old = store
        .get(resource, namespace, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(resource, name))?;
    check_type(resource, &mut body)?;
    let fields = patch::fields_v1(&body);
    update(
        store,
        resource,
        &old,
        body,
        subresource,
        options,
        "Update",
        fields,
    )
}

/// PATCH of the object or its `status`, with any patch type; server-side
/// apply creates the object when it does not exist. Returns the object and
/// whether it was created.
#[allow(clippy::too_many_arguments)]
pub(crate) fn patch(
    store: &mut Store,
    resource: &'static Resource,
    namespace: &str,
    name: &str,
    patch_type: PatchType,
    body: &[u8],
    subresource: Option<&str>,
    options: &WriteOptions,
) -> Result<(Value, bool), ApiError> {
    let namespace = namespace_of(resource, namespace);
    let old = store.get(resource, namespace, name).cloned();
    if patch_type == PatchType::Apply {
        return apply(
            store,
            resource,
            namespace,
            name,
            old,
            body,
            subresource,
            options,
        );
    }
    let old = old.ok_or_else(|| ApiError::not_found(resource, name))?;
    let patch = parse_body(body)?;
    let mut new = old.clone();
    patch_value(resource, name, &mut new, patch_type, &patch)?;
    let fields = if patch_type == PatchType::Json {
        patch::fields_v1(&new)
    } else {
        patch::fields_v1(&patch)
    };
    let stored = update(
        store,
        resource,
        &old,
        new,
        subresource,
        options,
        "Update",
        fields,
    )?;
    Ok((stored, false))
}

/// Apply a merge, strategic or JSON patch to `target`.
pub(crate) fn patch_value(
    resource: &Resource,
    name: &str,
    target: &mut Value,
    patch_type: PatchType,
    patch: &Value,
) -> Result<(), ApiError> {
    match patch_type {
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "the merge patch must be a JSON object",
                ));
            }
            patch::merge_patch(target, patch);
            Ok(())
        }
        PatchType::Strategic => {
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "the strategic merge patch must be a JSON object",
                ));
            }
            patch::strategic_merge(target, patch).map_err(ApiError::bad_request)
        }
        PatchType::Json => patch::json_patch(target, patch).map_err(|message| ApiError {
            code: 422,
            reason: "Invalid",
            message: format!(
                "{} \"{name}\" is invalid: {message}",
                resource.qualified_kind()
            ),
            details: None,
        }),
        PatchType::Apply => Err(ApiError::bad_request("apply is not a patch of a value")),
    }
}

#[allow(clippy::too_many_arguments)]
fn apply(
    store: &mut Store,
    resource: &'static Resource,
    namespace: &str,
    name: &str,
    old: Option<Value>,
    body: &[u8],
    subresource: Option<&str>,
    options: &WriteOptions,
) -> Result<(Value, bool), ApiError> {
    if options.manager.is_empty() {
        return Err(ApiError::bad_request(
            "PATCH, application/apply-patch+yaml: fieldManager is required for apply requests",
        ));
    }
    let mut config = parse_body(body)?;
    if !config.is_object() {
        return Err(ApiError::bad_request(
            "the applied configuration must be an object",
        ));
    }
    for (field, expected) in [
        ("apiVersion", resource.api_version()),
        ("kind", resource.kind.to_owned()),
    ] {
        match config.get(field).and_then(Value::as_str) {
            None | Some("") => {
                return Err(ApiError::bad_request(format!(
                    "{field} must be set in an applied configuration"
                )));
            }
            Some(given) if given != expected => {
                return Err(ApiError::bad_request(format!(
                    "the {field} in the applied configuration ({given}) does not match the expected {expected}"
                )));
            }
            Some(_) => {}
        }
    }
    let metadata = metadata_of(&mut config)?;
    match metadata.get("name").and_then(Value::as_str) {
        Some(given) if given != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({given}) does not match the name on the URL ({name})"
            )));
        }
        _ => {
            metadata.insert("name".into(), json!(name));
        }
    }
    if resource.namespaced {
        match metadata.get("namespace").and_then(Value::as_str) {
            Some(given) if !given.is_empty() && given != namespace => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {
                metadata.insert("namespace".into(), json!(namespace));
            }
        }
    }
    let fields = patch::fields_v1(&config);
    let Some(old) = old else {
        let object = prepare_create(store, resource, namespace, config.clone())?;
        let created = finish_create(store, resource, object, options, "Apply", Some(fields))?;
        if !options.dry_run
            && let Some(uid) = text(&created, "/metadata/uid")
        {
            store
                .applied
                .insert((uid.to_owned(), options.manager.clone()), config);
        }
        return Ok((created, true));
    };
    let uid = text(&old, "/metadata/uid").unwrap_or_default().to_owned();
    let mut new = old.clone();
    if let Some(previous) = store.applied.get(&(uid.clone(), options.manager.clone())) {
        patch::remove_unapplied(&mut new, previous, &config);
    }
    let mut merged_config = config.clone();
    if subresource.is_none()
        && resource.has_subresource("status")
        && let Some(map) = merged_config.as_object_mut()
    {
        map.remove("status");
    }
    patch::strategic_merge(&mut new, &merged_config).map_err(ApiError::bad_request)?;
    let stored = update(
        store,
        resource,
        &old,
        new,
        subresource,
        options,
        "Apply",
        fields,
    )?;
    if !options.dry_run {
        store.applied.insert((uid, options.manager.clone()), config);
    }
    Ok((stored, false))
}

/// The common end of PUT, PATCH and apply: preconditions, system fields,
/// status/spec split, defaults and validation, generation, no-op detection,
/// managedFields, then the store (unless dry-run).
#[allow(clippy::too_many_arguments)]
pub(crate) fn update(
    store: &mut Store,
    resource: &'static Resource,
    old: &Value,
    mut new: Value,
    subresource: Option<&str>,
    options: &WriteOptions,
    operation: &str,
    fields: Value,
) -> Result<Value, ApiError> {
    let name = text(old, "/metadata/name").unwrap_or_default().to_owned();
    check_type(resource, &mut new)?;
    let old_metadata = old.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let metadata = metadata_of(&mut new)?;
    match metadata.get("name").and_then(Value::as_str) {
        Some(given) if given != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({given}) does not match the name on the URL ({name})"
            )));
        }
        _ => {}
    }
    if resource.namespaced {
        let namespace = old_metadata
            .get("namespace")
            .cloned()
            .unwrap_or(Value::Null);
        match metadata.get("namespace") {
            Some(given) if !given.is_null() && given != "" && *given != namespace => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {}
        }
    }
    // A resourceVersion in the body is a precondition (optimistic locking).
    let asked = metadata
        .get("resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !asked.is_empty()
        && Some(asked) != old_metadata.get("resourceVersion").and_then(Value::as_str)
    {
        return Err(ApiError::conflict(resource, &name));
    }
    for field in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "generation",
        "resourceVersion",
        "managedFields",
        "deletionTimestamp",
    ] {
        match old_metadata.get(field) {
            Some(value) => {
                metadata.insert(field.into(), value.clone());
            }
            None => {
                metadata.remove(field);
            }
        }
    }
    match subresource {
        Some("status") => {
            // A status write changes the status only.
            let status = new.get("status").cloned().unwrap_or_else(|| json!({}));
            new = old.clone();
            new["status"] = status;
        }
        _ if resource.has_subresource("status") => {
            // A write of the object leaves its status alone.
            match old.get("status") {
                Some(status) => new["status"] = status.clone(),
                None => {
                    if let Some(map) = new.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
        }
        _ => {}
    }
    admit(resource, Some(old), &mut new)?;
    if resource.generation && new.get("spec") != old.get("spec") {
        let generation = old_metadata
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        new["metadata"]["generation"] = json!(generation + 1);
    }
    if new == *old {
        // Nothing changed: the real API does not write (no new resourceVersion).
        return Ok(new);
    }
    patch::record_manager(&mut new, &options.manager, operation, subresource, fields);
    if options.dry_run {
        return Ok(new);
    }
    Ok(store.put(resource, new))
}

/// DELETE. Dependents (by ownerReferences) are deleted too, unless
/// `propagationPolicy` is `Orphan`; deleting a namespace deletes what is in it.
pub(crate) fn delete(
    store: &mut Store,
    resource: &'static Resource,
    namespace: &str,
    name: &str,
    options: &Value,
    dry_run: bool,
) -> Result<Value, ApiError> {
    let namespace = namespace_of(resource, namespace);
    let object = store
        .get(resource, namespace, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(resource, name))?;
    let uid = object
        .pointer("/metadata/uid")
        .cloned()
        .unwrap_or(Value::Null);
    if let Some(wanted) = options
        .pointer("/preconditions/uid")
        .and_then(Value::as_str)
        && Some(wanted) != uid.as_str()
    {
        return Err(ApiError::conflict_because(
            resource,
            name,
            &format!(
                "Precondition failed: UID in precondition: {wanted}, UID in object meta: {}",
                uid.as_str().unwrap_or_default()
            ),
        ));
    }
    if let Some(wanted) = options
        .pointer("/preconditions/resourceVersion")
        .and_then(Value::as_str)
        && Some(wanted) != text(&object, "/metadata/resourceVersion")
    {
        return Err(ApiError::conflict_because(
            resource,
            name,
            &format!(
                "Precondition failed: ResourceVersion in precondition: {wanted}, ResourceVersion in object meta: {}",
                text(&object, "/metadata/resourceVersion").unwrap_or_default()
            ),
        ));
    }
    if dry_run {
        return Ok(super::errors::deleted(resource, name, &uid));
    }
    let orphan = options.get("propagationPolicy").and_then(Value::as_str) == Some("Orphan")
        || options.get("orphanDependents").and_then(Value::as_bool) == Some(true);
    remove_with_dependents(store, resource, namespace, name, orphan);
    Ok(super::errors::deleted(resource, name, &uid))
}

/// Remove an object, then (garbage collection, done at once) its dependents
/// or, for `orphan`, the references to it; a namespace takes its contents.
pub(crate) fn remove_with_dependents(
    store: &mut Store,
    resource: &'static Resource,
    namespace: &str,
    name: &str,
    orphan: bool,
) {
    let Some(removed) = store.remove(resource, namespace, name) else {
        return;
    };
    if std::ptr::eq(resource, resources::namespaces()) {
        for inner in RESOURCES.iter().filter(|r| r.namespaced) {
            let names: Vec<String> = store
                .list(inner, Some(name))
                .iter()
                .filter_map(|o| text(o, "/metadata/name").map(str::to_owned))
                .collect();
            for inner_name in names {
                store.remove(inner, name, &inner_name);
            }
        }
        return;
    }
    let Some(uid) = text(&removed, "/metadata/uid").map(str::to_owned) else {
        return;
    };
    let dependents: Vec<(&'static Resource, Value)> = RESOURCES
        .iter()
        .flat_map(|r| {
            store
                .list(r, Some(namespace))
                .into_iter()
                .filter(|o| owned_by(o, &uid))
                .map(move |o| (r, o.clone()))
        })
        .collect();
    for (dependent_resource, mut dependent) in dependents {
        let dependent_name = text(&dependent, "/metadata/name")
            .unwrap_or_default()
            .to_owned();
        if orphan {
            if let Some(Value::Array(owners)) = dependent.pointer_mut("/metadata/ownerReferences") {
                owners.retain(|owner| owner.get("uid").and_then(Value::as_str) != Some(&uid));
            }
            store.put(dependent_resource, dependent);
        } else {
            remove_with_dependents(store, dependent_resource, namespace, &dependent_name, false);
        }
    }
}

/// Whether `object` lists `uid` among its ownerReferences.
pub(crate) fn owned_by(object: &Value, uid: &str) -> bool {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|owners| {
            owners
                .iter()
                .any(|owner| owner.get("uid").and_then(Value::as_str) == Some(uid))
        })
}

/// Five characters like the real API's generated name suffixes.
pub(crate) fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::resources::find;

    fn options() -> WriteOptions {
        WriteOptions {
            dry_run: false,
            manager: "test".into(),
        }
    }

    fn store_with_namespace() -> Store {
        let mut store = Store::new();
        create(
            &mut store,
            find("ns").unwrap(),
            "",
            json!({ "metadata": { "name": "lab" } }),
            &options(),
        )
        .unwrap();
        store
    }

    fn deployment(name: &str, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": name },
            "spec": {
                "selector": { "matchLabels": { "app": name } },
                "template": {
                    "metadata": { "labels": { "app": name } },
                    "spec": { "containers": [{ "name": name, "image": image }] },
                },
            },
        })
    }

    #[test]
    fn create_fills_system_fields_and_defaults() {
        let mut store = store_with_namespace();
        let deploy = find("deploy").unwrap();
        let created = create(
            &mut store,
            deploy,
            "lab",
            deployment("web", "web:v1"),
            &options(),
        )
        .unwrap();
        assert_eq!(created["metadata"]["namespace"], "lab");
        assert_eq!(created["metadata"]["generation"], 1);
        assert!(created["metadata"]["uid"].is_string());
        assert!(created["metadata"]["resourceVersion"].is_string());
        assert!(created["metadata"]["creationTimestamp"].is_string());
        assert_eq!(created["spec"]["replicas"], 1);
        assert_eq!(
            created["spec"]["template"]["spec"]["restartPolicy"],
            "Always"
        );
        assert_eq!(
            created["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert_eq!(created["metadata"]["managedFields"][0]["manager"], "test");
        assert_eq!(store.get(deploy, "lab", "web"), Some(&created));
    }

    #[test]
    fn create_refuses_duplicates_bad_names_and_missing_namespaces() {
        let mut store = store_with_namespace();
        let deploy = find("deploy").unwrap();
        create(
            &mut store,
            deploy,
            "lab",
            deployment("web", "web:v1"),
            &options(),
        )
        .unwrap();
        let again = create(
            &mut store,
            deploy,
            "lab",
            deployment("web", "web:v1"),
            &options(),
        )
        .unwrap_err();
        assert_eq!((again.code, again.reason), (409, "AlreadyExists"));
        let bad = create(
            &mut store,
            deploy,
            "lab",
            deployment("Web_1", "x"),
            &options(),
        )
        .unwrap_err();
        assert_eq!((bad.code, bad.reason), (422, "Invalid"));
        assert!(
            bad.message
                .contains("metadata.name: Invalid value: \"Web_1\""),
            "{}",
            bad.message
        );
        let mut empty = deployment("empty", "x");
        empty["spec"]["template"]["spec"]["containers"] = json!([]);
        let invalid = create(&mut store, deploy, "lab", empty, &options()).unwrap_err();
        assert_eq!(
            invalid.message,
            "Deployment.apps \"empty\" is invalid: spec.template.spec.containers: Required value"
        );
        let missing = create(
            &mut store,
            deploy,
            "nowhere",
            deployment("web", "x"),
            &options(),
        )
        .unwrap_err();
        assert_eq!(missing.message, "namespaces \"nowhere\" not found");
    }

    #[test]
    fn dry_run_stores_nothing() {
        let mut store = store_with_namespace();
        let deploy = find("deploy").unwrap();
        let rv = store.resource_version();
        let dry = WriteOptions {
            dry_run: true,
            ..options()
        };
        let would = create(&mut store, deploy, "lab", deployment("web", "web:v1"), &dry).unwrap();
        assert_eq!(would["metadata"]["name"], "web");
        assert_eq!(store.resource_version(), rv);
        assert!(store.get(deploy, "lab", "web").is_none());
    }

    #[test]
    fn updates_check_resource_version_and_bump_generation_on_spec_changes() {
        let mut store = store_with_namespace();
        let deploy = find("deploy").unwrap();
        let created = create(
            &mut store,
            deploy,
            "lab",
            deployment("web", "web:v1"),
            &options(),
        )
        .unwrap();
        let mut stale = created.clone();
        stale["metadata"]["resourceVersion"] = json!("1");
        let conflict =
            replace(&mut store, deploy, "lab", "web", stale, None, &options()).unwrap_err();
        assert_eq!((conflict.code, conflict.reason), (409, "Conflict"));

        let mut labelled = created.clone();
        labelled["metadata"]["labels"] = json!({ "team": "a" });
        let stored = replace(&mut store, deploy, "lab", "web", labelled, None, &options()).unwrap();
        assert_eq!(stored["metadata"]["generation"], 1);

        let body =
            br#"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"web:v2"}]}}}}"#;
        let (patched, created_now) = patch(
            &mut store,
            deploy,
            "lab",
            "web",
            PatchType::Strategic,
            body,
            None,
            &options(),
        )
        .unwrap();
        assert!(!created_now);
        assert_eq!(patched["metadata"]["generation"], 2);
        assert_eq!(patched["metadata"]["labels"]["team"], "a");
        assert_eq!(
            patched["spec"]["template"]["spec"]["containers"][0]["image"],
            "web:v2"
        );

        // The same patch again changes nothing: no new resourceVersion.
        let rv = store.resource_version();
        patch(
            &mut store,
            deploy,
            "lab",
            "web",
            PatchType::Strategic,
            body,
            None,
            &options(),
        )
        .unwrap();
        assert_eq!(store.resource_version(), rv);
    }

    #[test]
    fn status_and_spec_are_written_separately() {
        let mut store = store_with_namespace();
        let deploy = find("deploy").unwrap();
        create(
            &mut store,
            deploy,
            "lab",
            deployment("web", "web:v1"),
            &options(),
        )
        .unwrap();
        let body = br#"{"status":{"replicas":5},"spec":{"replicas":3}}"#;
        let (main, _) = patch(
            &mut store,
            deploy,
            "lab",
            "web",
            PatchType::Merge,
            body,
            None,
            &options(),
        )
        .unwrap();
        assert_eq!(main["spec"]["replicas"], 3);
        assert_eq!(main["status"], json!({}));
        let (status, _) = patch(
            &mut store,
            deploy,
            "lab",
            "web",
            PatchType::Merge,
            body,
            Some("status"),
            &options(),
        )
        .unwrap();
        assert_eq!(status["spec"]["replicas"], 3);
        assert_eq!(status["status"]["replicas"], 5);
    }

    #[test]
    fn server_side_apply_creates_updates_and_forgets_dropped_fields() {
        let mut store = store_with_namespace();
        let cm = find("cm").unwrap();
        let first = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"a":"1","b":"2"}}"#;
        let (created, was_created) = patch(
            &mut store,
            cm,
            "lab",
            "c",
            PatchType::Apply,
            first,
            None,
            &options(),
        )
        .unwrap();
        assert!(was_created);
        assert_eq!(created["data"], json!({ "a": "1", "b": "2" }));
        assert_eq!(
            created["metadata"]["managedFields"][0]["operation"],
            "Apply"
        );
        let second = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: '3'\n";
        let (updated, was_created) = patch(
            &mut store,
            cm,
            "lab",
            "c",
            PatchType::Apply,
            second,
            None,
            &options(),
        )
        .unwrap();
        assert!(!was_created);
        assert_eq!(updated["data"], json!({ "a": "3" }));
        let nameless = WriteOptions {
            manager: String::new(),
            ..options()
        };
        assert_eq!(
            patch(
                &mut store,
                cm,
                "lab",
                "c",
                PatchType::Apply,
                second,
                None,
                &nameless
            )
            .unwrap_err()
            .code,
            400
        );
    }

    #[test]
    fn malformed_bodies_are_bad_requests_not_panics() {
        let mut store = store_with_namespace();
        let deploy = find("deploy").unwrap();
        for spec in [
            json!("x"),
            json!([1]),
            json!({ "template": "x" }),
            json!({ "template": { "spec": 5 } }),
        ] {
            let mut body = deployment("web", "web:v1");
            body["spec"] = spec;
            let error = create(&mut store, deploy, "lab", body, &options()).unwrap_err();
            assert_eq!(error.code, 400, "{}", error.message);
            assert!(
                error.message.contains("cannot be handled as a Deployment"),
                "{}",
                error.message
            );
        }
        create(
            &mut store,
            deploy,
            "lab",
            deployment("web", "web:v1"),
            &options(),
        )
        .unwrap();
        let patches: [(PatchType, &[u8], Option<&str>); 4] = [
            (
                PatchType::Json,
                br#"[{"op":"replace","path":"/spec","value":"x"}]"#,
                None,
            ),
            (
                PatchType::Merge,
                br#"{"metadata":{"annotations":["a"]}}"#,
                None,
            ),
            (PatchType::Merge, br#"{"status":7}"#, Some("status")),
            (PatchType::Merge, br#"[1,2]"#, None),
        ];
        for (patch_type, body, subresource) in patches {
            let error = patch(
                &mut store,
                deploy,
                "lab",
                "web",
                patch_type,
                body,
                subresource,
                &options(),
            )
            .unwrap_err();
            assert_eq!(error.code, 400, "{}", error.message);
        }
        for body in [json!("x"), json!(7), json!({ "metadata": "x" })] {
            assert_eq!(
                create(&mut store, find("cm").unwrap(), "lab", body, &options())
                    .unwrap_err()
                    .code,
                400
            );
        }
    }

    #[test]
    fn secrets_fold_string_data() {
        let mut store = store_with_namespace();
        let secrets = find("secret").unwrap();
        let created = create(
            &mut store,
            secrets,
            "lab",
            json!({ "metadata": { "name": "s" }, "stringData": { "password": "hunter2" } }),
            &options(),
        )
        .unwrap();
        assert_eq!(created["data"]["password"], "aHVudGVyMg==");
        assert!(created.get("stringData").is_none());
        assert_eq!(created["type"], "Opaque");
    }

    #[test]
    fn delete_cascades_to_dependents_and_namespaces_empty() {
        let mut store = store_with_namespace();
        let deploy = find("deploy").unwrap();
        let cm = find("cm").unwrap();
        let owner = create(
            &mut store,
            deploy,
            "lab",
            deployment("web", "web:v1"),
            &options(),
        )
        .unwrap();
        let child = json!({ "metadata": { "name": "child", "ownerReferences": [
            { "apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": owner["metadata"]["uid"] },
        ] } });
        create(&mut store, cm, "lab", child, &options()).unwrap();
        let status = delete(&mut store, deploy, "lab", "web", &json!({}), false).unwrap();
        assert_eq!(status["status"], "Success");
        assert!(store.get(cm, "lab", "child").is_none());
        assert_eq!(
            delete(&mut store, deploy, "lab", "web", &json!({}), false)
                .unwrap_err()
                .code,
            404
        );

        create(
            &mut store,
            cm,
            "lab",
            json!({ "metadata": { "name": "x" } }),
            &options(),
        )
        .unwrap();
        delete(
            &mut store,
            find("ns").unwrap(),
            "",
            "lab",
            &json!({}),
            false,
        )
        .unwrap();
        assert!(store.get(cm, "lab", "x").is_none());
    }
}
