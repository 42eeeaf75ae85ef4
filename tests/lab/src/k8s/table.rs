//! Server-side printing: `kubectl get` without `-o` asks for a `Table`
//! (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`) and prints its
//! columns; without one it would print only names. Columns follow the real
//! API's printers for the types the lab serves.

use serde_json::{Map, Value, json};

use super::resources::Resource;

/// Whether the request's Accept header asks for a Table.
pub(crate) fn wanted(accept: &str) -> bool {
    accept.split(',').any(|media| media.contains("as=Table"))
}

/// What each row carries along: `includeObject=None|Metadata|Object`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Include {
    None,
    Metadata,
    Object,
}

impl Include {
    pub(crate) fn parse(value: Option<&str>) -> Include {
        match value {
            Some("None") => Include::None,
            Some("Object") => Include::Object,
            _ => Include::Metadata,
        }
    }
}

fn column(name: &str, kind: &str, priority: u8, description: &str) -> Value {
    let mut column = json!({ "name": name, "type": kind, "format": "", "description": description, "priority": priority });
    if name == "Name" {
        column["format"] = json!("name");
    }
    column
}

/// The Table of `objects`.
pub(crate) fn table(
    resource: &Resource,
    objects: &[&Value],
    resource_version: &str,
    include: Include,
) -> Value {
    let now = chrono::Utc::now();
    let columns = columns(resource.kind);
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let mut row = json!({ "cells": cells(resource.kind, object, now) });
            match include {
                Include::None => {}
                Include::Object => row["object"] = (*object).clone(),
                Include::Metadata => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
                    });
                }
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": { "resourceVersion": resource_version },
        "columnDefinitions": columns,
        "rows": rows,
    })
}

fn columns(kind: &str) -> Vec<Value> {
    let name = column(
        "Name",
        "string",
        0,
        "Name must be unique within a namespace.",
    );
    let age = column(
        "Age",
        "string",
        0,
        "CreationTimestamp is a timestamp representing the server time when this object was created.",
    );
    let mut columns = vec![name];
    let more: Vec<(&str, &str, u8)> = match kind {
        "Pod" => vec![
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "string", 0),
            ("Age", "", 0),
            ("IP", "string", 1),
            ("Node", "string", 1),
            ("Nominated Node", "string", 1),
            ("Readiness Gates", "string", 1),
        ],
        "Deployment" => vec![
            ("Ready", "string", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            ("Age", "", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        "ReplicaSet" => vec![
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Age", "", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        "Job" => vec![
            ("Status", "string", 0),
            ("Completions", "string", 0),
            ("Duration", "string", 0),
            ("Age", "", 0),
        ],
        "Service" => vec![
            ("Type", "string", 0),
            ("Cluster-IP", "string", 0),
            ("External-IP", "string", 0),
            ("Port(s)", "string", 0),
            ("Age", "", 0),
            ("Selector", "string", 1),
        ],
        "Namespace" => vec![("Status", "string", 0), ("Age", "", 0)],
        "Secret" => vec![("Type", "string", 0), ("Data", "string", 0), ("Age", "", 0)],
        "ConfigMap" => vec![("Data", "string", 0), ("Age", "", 0)],
        "Lease" => vec![("Holder", "string", 0), ("Age", "", 0)],
        _ => vec![("Age", "", 0)],
    };
    for (name, kind, priority) in more {
        if name == "Age" {
            columns.push(age.clone());
        } else {
            columns.push(column(name, kind, priority, ""));
        }
    }
    columns
}

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn int(object: &Value, pointer: &str) -> i64 {
    object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn age(object: &Value, now: chrono::DateTime<chrono::Utc>) -> String {
    since(text(object, "/metadata/creationTimestamp"), now).unwrap_or_else(|| "<unknown>".into())
}

fn since(timestamp: &str, now: chrono::DateTime<chrono::Utc>) -> Option<String> {
    let then = chrono::DateTime::parse_from_rfc3339(timestamp).ok()?;
    let seconds = (now - then.with_timezone(&chrono::Utc)).num_seconds();
    Some(human_duration(seconds))
}

/// kubectl's ages: `45s`, `3m20s`, `12m`, `5h3m`, `20h`, `3d4h`, `30d`.
pub(crate) fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    let seconds = seconds.max(0);
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{}d", hours / 24),
            h => format!("{}d{h}h", hours / 24),
        };
    }
    format!("{}d", hours / 24)
}

fn containers(object: &Value) -> (String, String) {
    let list = object
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let names: Vec<&str> = list.iter().map(|c| text(c, "/name")).collect();
    let images: Vec<&str> = list.iter().map(|c| text(c, "/image")).collect();
    (names.join(","), images.join(","))
}

fn selector(object: &Value) -> String {
    object
        .pointer("/spec/selector")
        .and_then(super::selector::LabelSelector::from_structured)
        .map(|s| s.to_query())
        .unwrap_or_else(|| "<none>".into())
}

fn cells(kind: &str, object: &Value, now: chrono::DateTime<chrono::Utc>) -> Vec<Value> {
    let name = json!(text(object, "/metadata/name"));
    let age = json!(age(object, now));
    match kind {
        "Pod" => {
            let statuses = object
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let total = object
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let ready = statuses.iter().filter(|s| s["ready"] == true).count();
            let restarts: i64 = statuses.iter().map(|s| int(s, "/restartCount")).sum();
            let last = statuses
                .iter()
                .filter_map(|s| since(text(s, "/lastState/terminated/finishedAt"), now))
                .next();
            let restarts = match last {
                Some(ago) if restarts > 0 => format!("{restarts} ({ago} ago)"),
                _ => restarts.to_string(),
            };
            let mut reason = text(object, "/status/phase").to_owned();
            for status in &statuses {
                let waiting = text(status, "/state/waiting/reason");
                let terminated = text(status, "/state/terminated/reason");
                if !waiting.is_empty() {
                    reason = waiting.to_owned();
                } else if !terminated.is_empty() {
                    reason = terminated.to_owned();
                }
            }
            let ip = match text(object, "/status/podIP") {
                "" => "<none>",
                ip => ip,
            };
            let node = match text(object, "/spec/nodeName") {
                "" => "<none>",
                node => node,
            };
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(reason),
                json!(restarts),
                age,
                json!(ip),
                json!(node),
                json!("<none>"),
                json!("<none>"),
            ]
        }
        "Deployment" => {
            let (names, images) = containers(object);
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    int(object, "/status/readyReplicas"),
                    int(object, "/spec/replicas")
                )),
                json!(int(object, "/status/updatedReplicas")),
                json!(int(object, "/status/availableReplicas")),
                age,
                json!(names),
                json!(images),
                json!(selector(object)),
            ]
        }
        "ReplicaSet" => {
            let (names, images) = containers(object);
            vec![
                name,
                json!(int(object, "/spec/replicas")),
                json!(int(object, "/status/replicas")),
                json!(int(object, "/status/readyReplicas")),
                age,
                json!(names),
                json!(images),
                json!(selector(object)),
            ]
        }
        "Job" => {
            let conditions = object
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let has = |kind: &str| {
                conditions
                    .iter()
                    .any(|c| c["type"] == kind && c["status"] == "True")
            };
            let status = if has("Complete") {
                "Complete"
            } else if has("Failed") {
                "Failed"
            } else if object.pointer("/spec/suspend") == Some(&json!(true)) {
                "Suspended"
            } else {
                "Running"
            };
            let duration = match (
                chrono::DateTime::parse_from_rfc3339(text(object, "/status/startTime")),
                chrono::DateTime::parse_from_rfc3339(text(object, "/status/completionTime")),
            ) {
                (Ok(start), Ok(end)) => human_duration((end - start).num_seconds()),
                (Ok(start), Err(_)) => {
                    human_duration((now - start.with_timezone(&chrono::Utc)).num_seconds())
                }
                _ => String::new(),
            };
            vec![
                name,
                json!(status),
                json!(format!(
                    "{}/{}",
                    int(object, "/status/succeeded"),
                    int(object, "/spec/completions").max(1)
                )),
                json!(duration),
                age,
            ]
        }
        "Service" => {
            let ports: Vec<String> = object
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map(|ports| {
                    ports
                        .iter()
                        .map(|p| format!("{}/{}", int(p, "/port"), text(p, "/protocol")))
                        .collect()
                })
                .unwrap_or_default();
            let selector = object
                .pointer("/spec/selector")
                .and_then(Value::as_object)
                .map(|s| {
                    s.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_else(|| "<none>".into());
            vec![
                name,
                json!(text(object, "/spec/type")),
                json!(text(object, "/spec/clusterIP")),
                json!("<none>"),
                json!(if ports.is_empty() {
                    "<none>".to_owned()
                } else {
                    ports.join(",")
                }),
                age,
                json!(selector),
            ]
        }
        "Namespace" => vec![name, json!(text(object, "/status/phase")), age],
        "Secret" => {
            let data = object
                .get("data")
                .and_then(Value::as_object)
                .map_or(0, Map::len);
            vec![name, json!(text(object, "/type")), json!(data), age]
        }
        "ConfigMap" => {
            let data = object
                .get("data")
                .and_then(Value::as_object)
                .map_or(0, Map::len)
                + object
                    .get("binaryData")
                    .and_then(Value::as_object)
                    .map_or(0, Map::len);
            vec![name, json!(data), age]
        }
        "Lease" => {
            let holder = text(object, "/spec/holderIdentity");
            vec![name, json!(holder), age]
        }
        _ => vec![name, age],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::resources::find;

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(200), "3m20s");
        assert_eq!(human_duration(180), "3m");
        assert_eq!(human_duration(60 * 45), "45m");
        assert_eq!(human_duration(3600 * 5 + 60 * 3), "5h3m");
        assert_eq!(human_duration(3600 * 20), "20h");
        assert_eq!(human_duration(3600 * 24 * 3 + 3600 * 4), "3d4h");
        assert_eq!(human_duration(3600 * 24 * 30), "30d");
    }

    #[test]
    fn pod_rows_show_readiness_and_status() {
        let pod = json!({
            "metadata": { "name": "web-1", "creationTimestamp": "2020-01-01T00:00:00Z" },
            "spec": { "containers": [{ "name": "web" }], "nodeName": "lab-node" },
            "status": { "phase": "Running", "podIP": "10.244.0.2", "containerStatuses": [
                { "ready": false, "restartCount": 3, "state": { "waiting": { "reason": "CrashLoopBackOff" } } },
            ] },
        });
        let table = table(find("pods").unwrap(), &[&pod], "7", Include::Metadata);
        let cells = &table["rows"][0]["cells"];
        assert_eq!(cells[0], "web-1");
        assert_eq!(cells[1], "0/1");
        assert_eq!(cells[2], "CrashLoopBackOff");
        assert_eq!(cells[3], "3");
        assert_eq!(table["rows"][0]["object"]["metadata"]["name"], "web-1");
        assert_eq!(
            table["columnDefinitions"].as_array().unwrap().len(),
            cells.as_array().unwrap().len()
        );
        assert!(wanted(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        ));
        assert!(!wanted("application/json"));
    }
}
