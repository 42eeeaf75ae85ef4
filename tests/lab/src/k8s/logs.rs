//! `GET /api/v1/namespaces/{ns}/pods/{name}/log`: a few plausible lines per
//! container naming the pod and its image, so `kubectl logs` and a runbook's
//! `k8s::logs` have something to show; a broken image logs its crash.

use serde_json::Value;

use super::errors::ApiError;
use super::kubelet::is_broken;

/// The query parameters kubectl and kube-rs send.
#[derive(Debug, Default)]
pub(crate) struct LogOptions {
    pub(crate) container: Option<String>,
    pub(crate) tail_lines: Option<usize>,
    pub(crate) timestamps: bool,
    pub(crate) previous: bool,
}

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The log text of one container of `pod`, or the 400 the real API gives
/// (several containers and none named, an unknown container, a container
/// that has not started).
pub(crate) fn pod_log(pod: &Value, options: &LogOptions) -> Result<String, ApiError> {
    let name = text(pod, "/metadata/name");
    let namespace = text(pod, "/metadata/namespace");
    let containers: Vec<&Value> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|c| c.iter().collect())
        .unwrap_or_default();
    let names: Vec<&str> = containers.iter().map(|c| text(c, "/name")).collect();
    let container = match &options.container {
        Some(wanted) => containers
            .iter()
            .find(|c| text(c, "/name") == wanted)
            .ok_or_else(|| {
                ApiError::bad_request(format!("container {wanted} is not valid for pod {name}"))
            })?,
        None => match containers.as_slice() {
            [one] => one,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    names.join(" ")
                )));
            }
        },
    };
    let container_name = text(container, "/name");
    let image = text(container, "/image");
    let state = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .and_then(|s| s.iter().find(|s| text(s, "/name") == container_name));
    let waiting = state
        .map(|s| text(s, "/state/waiting/reason"))
        .unwrap_or("ContainerCreating");
    if waiting == "ContainerCreating" || state.is_none() {
        return Err(ApiError::bad_request(format!(
            "container \"{container_name}\" in pod \"{name}\" is waiting to start: ContainerCreating"
        )));
    }
    let spec = pod.get("spec").cloned().unwrap_or(Value::Null);
    let broken = is_broken(&spec);
    if options.previous && !broken {
        return Err(ApiError::bad_request(format!(
            "previous terminated container \"{container_name}\" in pod \"{name}\" not found"
        )));
    }
    let for_job = text(pod, "/metadata/ownerReferences/0/kind") == "Job";
    let started = state
        .map(|s| text(s, "/state/running/startedAt"))
        .unwrap_or_default();
    let started = if started.is_empty() {
        text(pod, "/status/startTime")
    } else {
        started
    };
    let app = image
        .rsplit('/')
        .next()
        .and_then(|last| last.split([':', '@']).next())
        .unwrap_or(container_name);
    let mut lines = vec![
        format!(
            "lab: container {container_name} of pod {namespace}/{name} started from image {image}"
        ),
        format!("{app}: starting (pod {name}, image {image})"),
    ];
    if broken {
        lines.push(format!(
            "{app}: fatal: cannot start: image {image} is broken in the lab"
        ));
        lines.push(format!("{app}: exit status 1 (CrashLoopBackOff)"));
    } else if for_job {
        lines.push(format!("{app}: working"));
        lines.push(format!("{app}: done"));
    } else {
        lines.push(format!("{app}: listening on :8080"));
        lines.push(format!("{app}: ready"));
    }
    if let Some(tail) = options.tail_lines {
        let skip = lines.len().saturating_sub(tail);
        lines.drain(..skip);
    }
    let mut out = String::new();
    for line in lines {
        if options.timestamps {
            out.push_str(if started.is_empty() {
                "1970-01-01T00:00:00Z"
            } else {
                started
            });
            out.push(' ');
        }
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(image: &str, state: Value) -> Value {
        let mut pod = json!({
            "metadata": { "name": "web-abc", "namespace": "lab" },
            "spec": { "containers": [{ "name": "web", "image": image }] },
            "status": { "containerStatuses": [{ "name": "web" }] },
        });
        pod["status"]["containerStatuses"][0]["state"] = state;
        pod
    }

    #[test]
    fn running_pods_log_their_image() {
        let running = pod(
            "registry.lab/web:v1",
            json!({ "running": { "startedAt": "2025-01-01T00:00:00Z" } }),
        );
        let log = pod_log(&running, &LogOptions::default()).unwrap();
        assert!(
            log.contains("web-abc") && log.contains("registry.lab/web:v1"),
            "{log}"
        );
        assert_eq!(log.lines().count(), 4);
        let tail = pod_log(
            &running,
            &LogOptions {
                tail_lines: Some(1),
                timestamps: true,
                ..LogOptions::default()
            },
        )
        .unwrap();
        assert_eq!(tail, "2025-01-01T00:00:00Z web: ready\n");
        let wrong = pod_log(
            &running,
            &LogOptions {
                container: Some("db".into()),
                ..LogOptions::default()
            },
        )
        .unwrap_err();
        assert_eq!(wrong.message, "container db is not valid for pod web-abc");
    }

    #[test]
    fn broken_pods_log_a_crash_and_pending_ones_nothing() {
        let broken = pod(
            "registry.lab/web:broken",
            json!({ "waiting": { "reason": "CrashLoopBackOff" } }),
        );
        assert!(
            pod_log(&broken, &LogOptions::default())
                .unwrap()
                .contains("fatal")
        );
        let pending = pod(
            "registry.lab/web:v1",
            json!({ "waiting": { "reason": "ContainerCreating" } }),
        );
        assert_eq!(
            pod_log(&pending, &LogOptions::default()).unwrap_err().code,
            400
        );
    }
}
