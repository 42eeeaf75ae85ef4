//! The pods' side of the fake cluster, what a kubelet would report: a new
//! pod is Pending (`ContainerCreating`) for the lab's delay, then Running and
//! Ready; a pod whose image tag contains `broken` crash-loops instead
//! (`CrashLoopBackOff`, restarts backing off from 1 s), and a Job's pod ends
//! Succeeded (or Failed, when broken).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::controller::Settings;
use super::resources;
use super::store::Store;

/// What the kubelet remembers outside the pods.
#[derive(Debug, Default)]
pub(crate) struct Kubelet {
    /// When each pod (by uid) was first seen.
    pod_started: HashMap<String, Instant>,
    next_ip: u32,
}

impl Kubelet {
    /// Note that the pod with `uid` was created at `now`.
    pub(crate) fn started(&mut self, uid: &str, now: Instant) {
        self.pod_started.insert(uid.to_owned(), now);
    }

    /// Forget the pods that are gone.
    pub(crate) fn forget_all_but(&mut self, live: &HashSet<String>) {
        self.pod_started.retain(|uid, _| live.contains(uid));
    }
}

fn text<'a>(object: &'a Value, pointer: &str) -> Option<&'a str> {
    object.pointer(pointer).and_then(Value::as_str)
}

/// Whether pods of this template never become ready: an image whose tag
/// contains `broken`.
pub(crate) fn is_broken(spec: &Value) -> bool {
    spec.get("containers")
        .and_then(Value::as_array)
        .is_some_and(|containers| {
            containers.iter().any(|container| {
                let image = container
                    .get("image")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let last = image.rsplit('/').next().unwrap_or_default();
                last.split_once(':')
                    .is_some_and(|(_, tag)| tag.contains("broken"))
            })
        })
}

/// What a pod's status says, for deciding whether to rewrite it: phase,
/// readiness, restarts and each container's state.
fn pod_signature(status: &Value) -> String {
    let states: Vec<String> = status
        .get("containerStatuses")
        .and_then(Value::as_array)
        .map(|statuses| {
            statuses
                .iter()
                .map(|s| {
                    let state = s
                        .get("state")
                        .and_then(Value::as_object)
                        .and_then(|state| state.iter().next())
                        .map(|(kind, detail)| {
                            format!(
                                "{kind}/{}",
                                detail
                                    .get("reason")
                                    .and_then(Value::as_str)
                                    .unwrap_or_default()
                            )
                        })
                        .unwrap_or_default();
                    format!(
                        "{state}/{}",
                        s.get("restartCount").and_then(Value::as_i64).unwrap_or(0)
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let ready = status
        .get("conditions")
        .and_then(Value::as_array)
        .and_then(|c| {
            c.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
        })
        .and_then(|c| c.get("status"))
        .and_then(Value::as_str)
        .unwrap_or("-")
        .to_owned();
    format!(
        "{}|{ready}|{}",
        status
            .get("phase")
            .and_then(Value::as_str)
            .unwrap_or_default(),
        states.join(",")
    )
}

/// Restarts of a crash-looping container `elapsed` after it first started:
/// one at once, then after back-offs of 1 s, 2 s, 4 s ... (capped at 5 min).
fn restarts(elapsed: Duration) -> i64 {
    let mut count = 1;
    let mut at = Duration::ZERO;
    let mut backoff = Duration::from_secs(1);
    loop {
        at += backoff;
        if at > elapsed || count > 1000 {
            return count;
        }
        count += 1;
        backoff = (backoff * 2).min(Duration::from_secs(300));
    }
}

/// Move one pod along: Pending until the delay has passed, then Running
/// and Ready, crash-looping for a broken image, or (a Job's pod) Succeeded
/// or Failed. Written only when the phase, readiness, restarts or a
/// container state changes.
pub(crate) fn advance_pod(
    store: &mut Store,
    kubelet: &mut Kubelet,
    settings: &Settings,
    pod: &Value,
    now: Instant,
) {
    let Some(uid) = text(pod, "/metadata/uid").map(str::to_owned) else {
        return;
    };
    let phase = text(pod, "/status/phase").unwrap_or_default();
    if phase == "Succeeded" || phase == "Failed" {
        return;
    }
    let started = *kubelet.pod_started.entry(uid.clone()).or_insert(now);
    let elapsed = now.saturating_duration_since(started);
    if elapsed < settings.delay && phase != "Pending" {
        // Started already (the seeds start at once): never back to Pending.
        return;
    }
    let spec = pod.get("spec").cloned().unwrap_or_else(|| json!({}));
    let broken = is_broken(&spec);
    let for_job = pod
        .pointer("/metadata/ownerReferences/0/kind")
        .and_then(Value::as_str)
        == Some("Job");
    let containers: Vec<Value> = spec
        .get("containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let name = text(pod, "/metadata/name").unwrap_or_default().to_owned();
    let namespace = text(pod, "/metadata/namespace")
        .unwrap_or_default()
        .to_owned();
    let time = super::now();
    let container_id = |c: &Value| {
        let digest = Sha256::digest(format!("{uid}/{}", c["name"]).as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("containerd://{hex}")
    };
    let image_id = |c: &Value| {
        let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
        let digest = Sha256::digest(image.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}@sha256:{hex}",
            image.split(':').next().unwrap_or_default()
        )
    };
    let base = |c: &Value| {
        json!({
            "name": c.get("name").cloned().unwrap_or(Value::Null),
            "image": c.get("image").cloned().unwrap_or(Value::Null),
            "imageID": "",
            "ready": false,
            "started": false,
            "restartCount": 0,
            "lastState": {},
        })
    };
    let (phase, ready, statuses): (&str, bool, Vec<Value>) = if elapsed < settings.delay {
        let statuses = containers
            .iter()
            .map(|c| {
                let mut s = base(c);
                s["state"] = json!({ "waiting": { "reason": "ContainerCreating" } });
                s
            })
            .collect();
        ("Pending", false, statuses)
    } else if for_job {
        let (phase, code, reason) = if broken {
            ("Failed", 1, "Error")
        } else {
            ("Succeeded", 0, "Completed")
        };
        let statuses = containers
            .iter()
            .map(|c| {
                let mut s = base(c);
                s["imageID"] = json!(image_id(c));
                s["containerID"] = json!(container_id(c));
                s["state"] = json!({ "terminated": {
                    "exitCode": code, "reason": reason, "startedAt": time, "finishedAt": time,
                    "containerID": container_id(c),
                } });
                s
            })
            .collect();
        (phase, false, statuses)
    } else if broken {
        let count = restarts(elapsed.saturating_sub(settings.delay));
        let statuses = containers
            .iter()
            .map(|c| {
                let mut s = base(c);
                let container = c.get("name").and_then(Value::as_str).unwrap_or_default();
                s["imageID"] = json!(image_id(c));
                s["containerID"] = json!(container_id(c));
                s["restartCount"] = json!(count);
                s["state"] = json!({ "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": format!("back-off 10s restarting failed container={container} pod={name}_{namespace}({uid})"),
                } });
                s["lastState"] = json!({ "terminated": {
                    "exitCode": 1, "reason": "Error", "startedAt": time, "finishedAt": time,
                    "containerID": container_id(c),
                } });
                s
            })
            .collect();
        ("Running", false, statuses)
    } else {
        let statuses = containers
            .iter()
            .map(|c| {
                let mut s = base(c);
                s["imageID"] = json!(image_id(c));
                s["containerID"] = json!(container_id(c));
                s["ready"] = json!(true);
                s["started"] = json!(true);
                s["state"] = json!({ "running": { "startedAt": time } });
                s
            })
            .collect();
        ("Running", true, statuses)
    };
    let mut status = pod.get("status").cloned().unwrap_or_else(|| json!({}));
    let condition = |kind: &str, on: bool, reason: Option<&str>| {
        let mut c = json!({ "type": kind, "status": if on { "True" } else { "False" }, "lastProbeTime": null, "lastTransitionTime": time });
        if let Some(reason) = reason {
            c["reason"] = json!(reason);
        }
        c
    };
    let started_containers = phase != "Pending";
    let not_ready_reason = match phase {
        "Succeeded" | "Failed" => Some("PodCompleted"),
        _ if !ready => Some("ContainersNotReady"),
        _ => None,
    };
    status["phase"] = json!(phase);
    status["conditions"] = json!([
        condition("PodReadyToStartContainers", started_containers, None),
        condition("Initialized", true, None),
        condition("Ready", ready, not_ready_reason),
        condition("ContainersReady", ready, not_ready_reason),
        condition("PodScheduled", true, None),
    ]);
    status["containerStatuses"] = json!(statuses);
    status["hostIP"] = json!("10.0.0.10");
    status["hostIPs"] = json!([{ "ip": "10.0.0.10" }]);
    if started_containers && status.get("podIP").is_none() {
        kubelet.next_ip += 1;
        let ip = format!(
            "10.244.{}.{}",
            (kubelet.next_ip / 250) % 256,
            kubelet.next_ip % 250 + 2
        );
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{ "ip": ip }]);
    }
    if status.get("startTime").is_none() {
        status["startTime"] = json!(time);
    }
    let old_status = pod.get("status").cloned().unwrap_or(Value::Null);
    if pod_signature(&status) == pod_signature(&old_status) {
        return;
    }
    let mut updated = pod.clone();
    updated["status"] = status;
    store.put(resources::kind("Pod"), updated);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_back_off() {
        assert_eq!(restarts(Duration::ZERO), 1);
        assert_eq!(restarts(Duration::from_millis(1500)), 2);
        assert_eq!(restarts(Duration::from_secs(3)), 3);
        assert_eq!(restarts(Duration::from_secs(7)), 4);
    }

    #[test]
    fn broken_means_a_tag_with_broken() {
        assert!(is_broken(
            &json!({ "containers": [{ "image": "registry.lab:5000/web:v2-broken" }] })
        ));
        assert!(!is_broken(
            &json!({ "containers": [{ "image": "registry.lab/broken:v2" }] })
        ));
    }
}
