//! The `scale` subresource of Deployments and ReplicaSets: an
//! `autoscaling/v1` `Scale` view of `spec.replicas` (`kubectl scale` PATCHes
//! it with a merge patch).

use serde_json::{Value, json};

use super::admission;
use super::api::{self, PatchType, WriteOptions};
use super::errors::{ApiError, Cause};
use super::resources::Resource;
use super::selector::LabelSelector;
use super::store::Store;

/// The Scale of a workload.
pub(crate) fn scale_of(object: &Value) -> Value {
    let metadata = object.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let pick = |key: &str| metadata.get(key).cloned().unwrap_or(Value::Null);
    let selector = object
        .pointer("/spec/selector")
        .and_then(LabelSelector::from_structured)
        .map(|s| s.to_query())
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": pick("name"),
            "namespace": pick("namespace"),
            "uid": pick("uid"),
            "resourceVersion": pick("resourceVersion"),
            "creationTimestamp": pick("creationTimestamp"),
        },
        "spec": { "replicas": object.pointer("/spec/replicas").cloned().unwrap_or(json!(0)) },
        "status": {
            "replicas": object.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    })
}

fn current(
    store: &Store,
    resource: &Resource,
    namespace: &str,
    name: &str,
) -> Result<Value, ApiError> {
    store
        .get(resource, namespace, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(resource, name))
}

/// PUT of a Scale: `spec.replicas` (with a resourceVersion precondition if given).
pub(crate) fn replace(
    store: &mut Store,
    resource: &'static Resource,
    namespace: &str,
    name: &str,
    scale: &Value,
    options: &WriteOptions,
) -> Result<Value, ApiError> {
    let old = current(store, resource, namespace, name)?;
    let replicas = scale
        .pointer("/spec/replicas")
        .cloned()
        .unwrap_or(Value::Null);
    let problem = match replicas.as_i64() {
        Some(r) if r < 0 => Some("must be greater than or equal to 0".to_owned()),
        Some(r) if r > admission::MAX_REPLICAS => Some(format!(
            "must be less than or equal to {} in the lab",
            admission::MAX_REPLICAS
        )),
        Some(_) => None,
        None => Some("must be an integer".to_owned()),
    };
    if let Some(problem) = problem {
        let cause = Cause::invalid("spec.replicas", &replicas, &problem);
        let mut error = ApiError::invalid(resource, name, &[cause]);
        error.message = format!(
            "Scale.autoscaling \"{name}\" is invalid: spec.replicas: Invalid value: {replicas}: {problem}"
        );
        if let Some(details) = error.details.as_mut() {
            details["kind"] = json!("Scale");
            details["group"] = json!("autoscaling");
        }
        return Err(error);
    }
    let asked = scale
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut new = old.clone();
    new["spec"]["replicas"] = replicas;
    if !asked.is_empty() {
        new["metadata"]["resourceVersion"] = json!(asked);
    }
    let fields = json!({ "f:spec": { "f:replicas": {} } });
    let stored = api::update(
        store,
        resource,
        &old,
        new,
        Some("scale"),
        options,
        "Update",
        fields,
    )?;
    Ok(scale_of(&stored))
}

/// PATCH of a Scale: patch the Scale view, then write it like a PUT.
#[allow(clippy::too_many_arguments)]
pub(crate) fn patch(
    store: &mut Store,
    resource: &'static Resource,
    namespace: &str,
    name: &str,
    patch_type: PatchType,
    body: &[u8],
    options: &WriteOptions,
) -> Result<Value, ApiError> {
    let old = current(store, resource, namespace, name)?;
    let mut scale = scale_of(&old);
    let patch = api::parse_body(body)?;
    match patch_type {
        PatchType::Apply => api::patch_value(resource, name, &mut scale, PatchType::Merge, &patch)?,
        other => api::patch_value(resource, name, &mut scale, other, &patch)?,
    }
    replace(store, resource, namespace, name, &scale, options)
}
