//! Any kind: `k8s::get`, `k8s::list`, `k8s::apply` (server-side apply, field
//! manager `runbook`), `k8s::delete`; and how objects become script values.

use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::core::DynamicObject;
use rhai::{Array, Dynamic, Map};
use serde_json::Value;

use super::Mode;
use super::client::{Kube, connect};
use super::error::{Subject, api, is_not_found};
use super::resources::{Kind, of_manifest, resolve};
use super::{FIELD_MANAGER, diff, overlay, settings};
use crate::function::{Call, Failure};
use crate::host::StdlibError;
use crate::values::{from_json, to_json};

/// An API for `kind` in the call's namespace (or cluster-wide for
/// cluster-scoped kinds).
pub(crate) fn dynamic_api(kube: &Kube, kind: &Kind, namespace: &str) -> Api<DynamicObject> {
    if kind.namespaced {
        Api::namespaced_with(kube.client.clone(), namespace, &kind.resource)
    } else {
        Api::all_with(kube.client.clone(), &kind.resource)
    }
}

/// A serializable object as JSON, without `managedFields` (noise for people,
/// as in `kubectl get -o yaml`).
pub(crate) fn to_value<T: serde::Serialize>(object: &T) -> Value {
    let mut value = serde_json::to_value(object).unwrap_or(Value::Null);
    if let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("managedFields");
    }
    value
}

/// A script value for an object. A Secret's values (and the last-applied
/// annotation, which may repeat them) become secret values, masked in all
/// output; `k8s::secret` gives them decoded.
pub(crate) fn to_script(call: &Call<'_>, value: Value) -> Dynamic {
    let is_secret = value.get("kind").and_then(Value::as_str) == Some("Secret")
        && value
            .get("apiVersion")
            .and_then(Value::as_str)
            .is_none_or(|version| version == "v1");
    if !is_secret {
        return from_json(value);
    }
    // Decoded values are masked too, wherever they show up later.
    if let Some(data) = value.get("data").cloned()
        && let Ok(decoded) = serde_json::from_value::<
            std::collections::BTreeMap<String, k8s_openapi::ByteString>,
        >(data)
    {
        for bytes in decoded.values() {
            super::mask(call, &String::from_utf8_lossy(&bytes.0));
        }
    }
    let dynamic = from_json(value);
    let Some(mut map) = dynamic.clone().try_cast::<Map>() else {
        return dynamic;
    };
    for field in ["data", "stringData"] {
        if let Some(values) = map
            .get(field)
            .and_then(|value| value.clone().try_cast::<Map>())
        {
            let masked: Map = values
                .into_iter()
                .map(|(key, value)| {
                    let text = value.into_string().unwrap_or_default();
                    (key, Dynamic::from(super::secret_value(call, text)))
                })
                .collect();
            map.insert(field.into(), Dynamic::from_map(masked));
        }
    }
    if let Some(mut metadata) = map
        .get("metadata")
        .and_then(|value| value.clone().try_cast::<Map>())
        && let Some(mut annotations) = metadata
            .get("annotations")
            .and_then(|value| value.clone().try_cast::<Map>())
    {
        let key = "kubectl.kubernetes.io/last-applied-configuration";
        if let Some(text) = annotations
            .get(key)
            .and_then(|value| value.clone().into_string().ok())
        {
            annotations.insert(key.into(), Dynamic::from(super::secret_value(call, text)));
            metadata.insert("annotations".into(), Dynamic::from_map(annotations));
            map.insert("metadata".into(), Dynamic::from_map(metadata));
        }
    }
    Dynamic::from_map(map)
}

const READ_OPTIONS: &[&str] = &["namespace"];
const GET_OPTIONS: &[&str] = &["namespace", "missing_ok"];
const LIST_OPTIONS: &[&str] = &["namespace", "selector", "fields", "all_namespaces"];
const DELETE_OPTIONS: &[&str] = &["namespace", "missing_ok"];

/// `k8s::get(kind, name, opts?)`.
pub(crate) fn get(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let kind = resolve(&call.string(0)?)?;
    let name = call.string(1)?;
    let options = call.options(2, GET_OPTIONS)?;
    let missing_ok = options.bool("missing_ok")?.unwrap_or(false);
    let settings = settings(call)?;
    let namespace = options.string("namespace")?;
    let value = call.block_on(async {
        let kube = connect(&settings, namespace).await?;
        let ns = kind.namespaced.then_some(kube.namespace.as_str());
        let subject = Subject::new(&kind.name, &name, ns);
        match dynamic_api(&kube, &kind, &kube.namespace).get(&name).await {
            Ok(object) => Ok(Some(to_value(&object))),
            // In a dry-run, an object only an earlier planned apply makes
            // reads as its would-be object.
            Err(error) if is_not_found(&error) => match overlay::get(&kind.name, ns, &name) {
                Some(planned) => Ok(Some(planned.object)),
                None if missing_ok => Ok(None),
                None => Err(api(&kube, &subject, "read", &error)),
            },
            Err(error) => Err(api(&kube, &subject, "read", &error)),
        }
    })?;
    Ok(value.map_or(Dynamic::UNIT, |value| to_script(call, value)))
}

/// `k8s::list(kind, opts?)`.
pub(crate) fn list(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let kind = resolve(&call.string(0)?)?;
    let options = call.options(1, LIST_OPTIONS)?;
    let settings = settings(call)?;
    let namespace = options.string("namespace")?;
    let mut params = ListParams::default();
    if let Some(selector) = options.string("selector")? {
        params = params.labels(&selector);
    }
    if let Some(fields) = options.string("fields")? {
        params = params.fields(&fields);
    }
    let everywhere = options.bool("all_namespaces")?.unwrap_or(false);
    let items = call.block_on(async {
        let kube = connect(&settings, namespace).await?;
        let ns = (kind.namespaced && !everywhere).then_some(kube.namespace.as_str());
        let subject = Subject::all(&kind.name, ns);
        let objects = if ns.is_some() {
            dynamic_api(&kube, &kind, &kube.namespace)
        } else {
            Api::all_with(kube.client.clone(), &kind.resource)
        };
        let list = objects
            .list(&params)
            .await
            .map_err(|error| api(&kube, &subject, "list", &error))?;
        Ok(list
            .items
            .into_iter()
            .map(|object| {
                let mut value = to_value(&object);
                // Items of a list carry no apiVersion/kind; put them back.
                if let Some(fields) = value.as_object_mut() {
                    fields
                        .entry("apiVersion")
                        .or_insert_with(|| Value::String(kind.resource.api_version.clone()));
                    fields
                        .entry("kind")
                        .or_insert_with(|| Value::String(kind.resource.kind.clone()));
                }
                value
            })
            .collect::<Vec<_>>())
    })?;
    let array: Array = items
        .into_iter()
        .map(|item| to_script(call, item))
        .collect();
    Ok(Dynamic::from_array(array))
}

/// The documents of a manifest argument: a map, an array of maps, or YAML
/// text with one or more documents.
fn documents(call: &Call<'_>) -> Result<(Vec<Value>, bool), StdlibError> {
    let value = call.arg(0);
    if value.is_map() {
        return Ok((vec![to_json(&value, true)], false));
    }
    if let Some(array) = value.read_lock::<Array>() {
        let items: Vec<Value> = array.iter().map(|item| to_json(item, true)).collect();
        return Ok((items, true));
    }
    let Some(text) = crate::function::Text::from_dynamic(&value) else {
        return Err(call.bad_arg(
            0,
            format!(
                "must be a map, an array of maps or YAML text, got {}",
                crate::values::type_name(&value)
            ),
        ));
    };
    let documents: Vec<Value> = serde_saphyr::from_multiple(&text.expose()).map_err(|error| {
        StdlibError::failed(
            format!("the manifest is not valid YAML: {error}"),
            "`k8s::apply` takes a map, or YAML text with documents separated by `---`",
        )
    })?;
    let several = documents.len() > 1;
    let documents: Vec<Value> = documents.into_iter().filter(|doc| !doc.is_null()).collect();
    if documents.is_empty() {
        return Err(call.bad_arg(0, "holds no YAML document"));
    }
    Ok((documents, several))
}

/// The values of a Secret manifest (`stringData`, and `data` decoded) are
/// masked in all output from now on, even when the script gave them as
/// plain strings.
fn remember_secret_values(call: &Call<'_>, manifest: &Value) {
    if manifest.get("kind").and_then(Value::as_str) != Some("Secret") {
        return;
    }
    if let Some(values) = manifest.get("stringData").and_then(Value::as_object) {
        for value in values.values().filter_map(Value::as_str) {
            super::mask(call, value);
        }
    }
    if let Some(values) = manifest.get("data").and_then(Value::as_object) {
        for value in values.values().filter_map(Value::as_str) {
            super::mask(call, value);
            if let Ok(k8s_openapi::ByteString(bytes)) =
                serde_json::from_value(Value::String(value.to_owned()))
            {
                super::mask(call, &String::from_utf8_lossy(&bytes));
            }
        }
    }
}

/// One manifest's identity: (apiVersion, kind, name, namespace from the manifest).
fn identity(
    manifest: &Value,
    index: usize,
) -> Result<(String, String, String, Option<String>), StdlibError> {
    let field = |path: &[&str]| -> Option<String> {
        let mut value = manifest;
        for key in path {
            value = value.get(key)?;
        }
        value
            .as_str()
            .map(str::to_owned)
            .filter(|text| !text.is_empty())
    };
    let which = if index == 0 {
        "the manifest".to_owned()
    } else {
        format!("document {} of the manifest", index + 1)
    };
    if !manifest.is_object() {
        return Err(StdlibError::failed(
            format!("{which} is not a map"),
            "a manifest is a map with apiVersion, kind, metadata.name and the object's fields",
        ));
    }
    let missing = |what: &str| {
        StdlibError::failed(
            format!("{which} has no `{what}`"),
            "a manifest needs `apiVersion`, `kind` and `metadata.name`",
        )
    };
    let api_version = field(&["apiVersion"]).ok_or_else(|| missing("apiVersion"))?;
    let kind = field(&["kind"]).ok_or_else(|| missing("kind"))?;
    let name = field(&["metadata", "name"]).ok_or_else(|| missing("metadata.name"))?;
    Ok((api_version, kind, name, field(&["metadata", "namespace"])))
}

/// `k8s::apply(manifest, opts?)`: server-side apply of each document.
pub(crate) fn apply(call: &mut Call<'_>, mode: Mode) -> Result<Dynamic, Failure> {
    let (manifests, several) = documents(call)?;
    for manifest in &manifests {
        remember_secret_values(call, manifest);
    }
    let options = call.options(1, READ_OPTIONS)?;
    let settings = settings(call)?;
    let namespace = options.string("namespace")?;
    let host = call.host;
    let results = call.block_on(async {
        let kube = connect(&settings, namespace).await?;
        let mut results = Vec::new();
        let mut details = Vec::new();
        for (index, manifest) in manifests.iter().enumerate() {
            let (api_version, kind_name, name, manifest_namespace) = identity(manifest, index)?;
            let kind = of_manifest(&kube, &api_version, &kind_name).await?;
            let namespace = manifest_namespace.unwrap_or_else(|| kube.namespace.clone());
            let ns = kind.namespaced.then_some(namespace.as_str());
            let subject = Subject::new(&kind.name, &name, ns);
            let objects = dynamic_api(&kube, &kind, &namespace);
            let mut body = manifest.clone();
            if kind.namespaced
                && let Some(metadata) = body.get_mut("metadata").and_then(Value::as_object_mut)
            {
                metadata.insert("namespace".into(), Value::String(namespace.clone()));
            }
            let mut params = PatchParams::apply(FIELD_MANAGER).force();
            params.dry_run = mode.is_preview();
            // In a preview, what exists: the live object, or the would-be
            // object of an earlier planned write (then this one comes after it).
            let mut after = None;
            let live = if mode.is_preview() {
                match objects.get(&name).await {
                    Ok(object) => Some(to_value(&object)),
                    Err(error) if is_not_found(&error) => {
                        overlay::get(&kind.name, ns, &name).map(|planned| {
                            after = planned.change;
                            planned.object
                        })
                    }
                    Err(error) => return Err(api(&kube, &subject, "read", &error)),
                }
            } else {
                None
            };
            let applied = match objects.patch(&name, &params, &Patch::Apply(&body)).await {
                Ok(applied) => to_value(&applied),
                Err(error) => {
                    // The server's dry run cannot see what was only planned: a
                    // namespace an earlier write creates, or this very object.
                    let depends = ns
                        .and_then(overlay::namespace)
                        .map(|planned| planned.change)
                        .or(live.is_some().then_some(after));
                    match depends {
                        Some(depends) if mode.is_preview() && is_not_found(&error) => {
                            after = after.or(depends);
                            overlay::merge(live.as_ref(), &body)
                        }
                        _ => return Err(api(&kube, &subject, "apply", &error)),
                    }
                }
            };
            if mode.is_preview() {
                let detail = diff::detail(
                    &subject.describe(),
                    live.as_ref(),
                    Some(&applied),
                    kind.is_secret(),
                );
                details.push(match after {
                    Some(change) => format!("after change {change}: {detail}"),
                    None => detail,
                });
                let planned = overlay::Planned {
                    change: host.plan_number(),
                    object: applied.clone(),
                };
                overlay::record(&kind.name, ns, &name, planned);
            }
            results.push(applied);
        }
        if mode.is_preview() {
            host.plan_detail(&details.join("\n"));
        }
        Ok(results)
    })?;
    let mut values: Vec<Dynamic> = results
        .into_iter()
        .map(|value| to_script(call, value))
        .collect();
    if several || values.len() != 1 {
        Ok(Dynamic::from_array(values))
    } else {
        Ok(values.pop().unwrap_or(Dynamic::UNIT))
    }
}

/// `k8s::delete(kind, name, opts?)`.
pub(crate) fn delete(call: &mut Call<'_>, mode: Mode) -> Result<Dynamic, Failure> {
    let kind = resolve(&call.string(0)?)?;
    let name = call.string(1)?;
    let options = call.options(2, DELETE_OPTIONS)?;
    let missing_ok = options.bool("missing_ok")?.unwrap_or(false);
    let settings = settings(call)?;
    let namespace = options.string("namespace")?;
    let host = call.host;
    let deleted = call.block_on(async {
        let kube = connect(&settings, namespace).await?;
        let ns = kind.namespaced.then_some(kube.namespace.as_str());
        let subject = Subject::new(&kind.name, &name, ns);
        let objects = dynamic_api(&kube, &kind, &kube.namespace);
        let live = if mode.is_preview() {
            match objects.get(&name).await {
                Ok(object) => Some(to_value(&object)),
                Err(error) if is_not_found(&error) && missing_ok => None,
                Err(error) => return Err(api(&kube, &subject, "read", &error)),
            }
        } else {
            None
        };
        let params = DeleteParams {
            dry_run: mode.is_preview(),
            ..DeleteParams::background()
        };
        match objects.delete(&name, &params).await {
            Ok(_) => {
                if mode.is_preview() {
                    host.plan_detail(&diff::detail(
                        &subject.describe(),
                        live.as_ref(),
                        None,
                        kind.is_secret(),
                    ));
                }
                Ok(true)
            }
            Err(error) if is_not_found(&error) && missing_ok => {
                if mode.is_preview() {
                    host.plan_detail(&format!(
                        "{}: does not exist; nothing to delete",
                        subject.describe()
                    ));
                }
                Ok(false)
            }
            Err(error) => Err(api(&kube, &subject, "delete", &error)),
        }
    })?;
    Ok(Dynamic::from_bool(deleted))
}
