//! Discovery and OpenAPI: what kubectl reads before it sends a request.
//!
//! kubectl asks `/api` and `/apis` for aggregated discovery first and falls
//! back to the legacy documents served here (`APIVersions`, `APIGroupList`,
//! one `APIResourceList` per group-version), which give it kinds, short
//! names, verbs and subresources. `kubectl apply`/`create`/`replace`
//! validate manifests: they read `/openapi/v3` to learn whether the server
//! validates fields itself (the `fieldValidation` parameter of each PATCH
//! operation, matched by `x-kubernetes-group-version-kind`), and parse
//! `/openapi/v2` (protobuf) for client-side schemas; a v2 document without
//! definitions makes that client-side pass skip every type.

use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use super::resources::{GROUPS, RESOURCES, Resource, VERBS};

/// The Kubernetes version the fake claims (kubectl warns past one minor of skew).
pub(crate) fn version() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": "v1.32.0-lab",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.23.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `GET /api`.
pub(crate) fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": server_address }],
    })
}

fn group(name: &str) -> Value {
    let version = json!({ "groupVersion": format!("{name}/v1"), "version": "v1" });
    json!({ "name": name, "versions": [version], "preferredVersion": version })
}

/// `GET /apis`.
pub(crate) fn groups() -> Value {
    json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": GROUPS.iter().map(|name| group(name)).collect::<Vec<_>>(),
    })
}

/// `GET /apis/{group}`, if served.
pub(crate) fn api_group(name: &str) -> Option<Value> {
    GROUPS.contains(&name).then(|| {
        let mut group = group(name);
        group["kind"] = json!("APIGroup");
        group["apiVersion"] = json!("v1");
        group
    })
}

fn in_group_version<'a>(
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static Resource> + 'a {
    RESOURCES
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

/// `GET /api/v1` or `/apis/{group}/{version}`, if served.
pub(crate) fn resource_list(group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for resource in in_group_version(group, version) {
        let mut entry = json!({
            "name": resource.plural,
            "singularName": resource.singular,
            "namespaced": resource.namespaced,
            "kind": resource.kind,
            "verbs": VERBS,
        });
        if !resource.short_names.is_empty() {
            entry["shortNames"] = json!(resource.short_names);
        }
        if !resource.categories.is_empty() {
            entry["categories"] = json!(resource.categories);
        }
        resources.push(entry);
        for sub in resource.subresources {
            let mut entry = json!({
                "name": format!("{}/{sub}", resource.plural),
                "singularName": "",
                "namespaced": resource.namespaced,
                "kind": resource.kind,
                "verbs": ["get", "patch", "update"],
            });
            match *sub {
                "scale" => {
                    entry["group"] = json!("autoscaling");
                    entry["version"] = json!("v1");
                    entry["kind"] = json!("Scale");
                }
                "log" => entry["verbs"] = json!(["get"]),
                _ => {}
            }
            resources.push(entry);
        }
    }
    if resources.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

/// The group-versions with an OpenAPI v3 document: `api/v1`, `apis/apps/v1`...
fn openapi_paths() -> Vec<(String, &'static str, &'static str)> {
    let mut paths = vec![("api/v1".to_owned(), "", "v1")];
    for group in GROUPS {
        paths.push((format!("apis/{group}/v1"), group, "v1"));
    }
    paths
}

/// `GET /openapi/v3`: where each group-version's document is.
pub(crate) fn openapi_v3_index() -> Value {
    let mut paths = Map::new();
    for (path, group, version) in openapi_paths() {
        let hash = document_hash(&openapi_v3_document(group, version).unwrap_or_default());
        paths.insert(
            path.clone(),
            json!({ "serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}") }),
        );
    }
    json!({ "paths": paths })
}

fn document_hash(document: &Value) -> String {
    let digest = Sha256::digest(document.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02X}")).collect()
}

fn parameter(name: &str, location: &str) -> Value {
    json!({
        "name": name,
        "in": location,
        "required": location == "path",
        "schema": { "type": "string", "uniqueItems": true },
    })
}

/// `GET /openapi/v3/api/v1` or `/openapi/v3/apis/{group}/{version}`: the
/// paths of the group-version with their operations, each tagged with the
/// kind it acts on, and a schema per kind that accepts any fields.
pub(crate) fn openapi_v3_document(group: &str, version: &str) -> Option<Value> {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for resource in in_group_version(group, version) {
        let gvk =
            json!({ "group": resource.group, "version": resource.version, "kind": resource.kind });
        let schema_name = schema_name(resource);
        let reference = json!({ "$ref": format!("#/components/schemas/{schema_name}") });
        let response = json!({ "200": { "description": "OK", "content": { "application/json": { "schema": reference } } } });
        let operation = |verb: &str, action: &str| {
            json!({
                "operationId": format!("{verb}{}", resource.kind),
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
                "responses": response,
            })
        };
        let write_parameters = ["dryRun", "fieldManager", "fieldValidation", "force"]
            .map(|name| parameter(name, "query"));
        let mut item_parameters = vec![parameter("name", "path")];
        let mut collection_parameters = Vec::new();
        if resource.namespaced {
            item_parameters.push(parameter("namespace", "path"));
            collection_parameters.push(parameter("namespace", "path"));
        }
        item_parameters.extend(write_parameters.iter().cloned());
        collection_parameters.extend(write_parameters.iter().cloned());
        let base = if resource.namespaced {
            format!(
                "{}/namespaces/{{namespace}}/{}",
                resource.group_version_path(),
                resource.plural
            )
        } else {
            format!("{}/{}", resource.group_version_path(), resource.plural)
        };
        let mut patch = operation("patch", "patch");
        patch["parameters"] = json!(write_parameters);
        let mut put = operation("replace", "put");
        put["parameters"] = json!(write_parameters);
        let mut post = operation("create", "post");
        post["parameters"] = json!(write_parameters);
        paths.insert(
            base.clone(),
            json!({
                "parameters": collection_parameters,
                "get": operation("list", "list"),
                "post": post,
            }),
        );
        paths.insert(
            format!("{base}/{{name}}"),
            json!({
                "parameters": item_parameters,
                "get": operation("read", "get"),
                "put": put,
                "patch": patch,
                "delete": operation("delete", "delete"),
            }),
        );
        schemas.insert(
            schema_name,
            json!({
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": true,
                "x-kubernetes-group-version-kind": [gvk],
            }),
        );
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": "v1.32.0-lab" },
        "paths": paths,
        "components": { "schemas": schemas },
    }))
}

/// `io.k8s.api.apps.v1.Deployment`, as the real documents name schemas.
fn schema_name(resource: &Resource) -> String {
    let group = match resource.group {
        "" => "core",
        "coordination.k8s.io" => "coordination",
        other => other,
    };
    format!("io.k8s.api.{group}.{}.{}", resource.version, resource.kind)
}

/// `GET /openapi/v2` as protobuf (`openapi_v2.Document`): only
/// `swagger: "2.0"` (field 1, a string), no definitions.
pub(crate) fn openapi_v2_protobuf() -> Vec<u8> {
    vec![0x0a, 0x03, b'2', b'.', b'0']
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_group_version_lists_its_resources_and_subresources() {
        let core = resource_list("", "v1").unwrap();
        let names: Vec<&str> = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        for name in [
            "pods",
            "pods/log",
            "pods/status",
            "namespaces",
            "secrets",
            "configmaps",
            "services",
        ] {
            assert!(names.contains(&name), "{name}");
        }
        let apps = resource_list("apps", "v1").unwrap();
        let scale = apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .unwrap();
        assert_eq!(scale["kind"], "Scale");
        assert_eq!(scale["group"], "autoscaling");
        assert!(resource_list("apps", "v2").is_none());
        assert!(resource_list("coordination.k8s.io", "v1").is_some());
        assert_eq!(groups()["groups"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn openapi_v3_says_patch_takes_field_validation() {
        let index = openapi_v3_index();
        let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="));
        let document = openapi_v3_document("apps", "v1").unwrap();
        let path = &document["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
        assert_eq!(
            path["patch"]["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        assert!(
            path["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
        assert!(openapi_v3_document("nope", "v1").is_none());
    }
}
