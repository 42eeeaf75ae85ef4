//! A small controller that makes the fake behave like a cluster: Deployments
//! get ReplicaSets (one per pod template, with the revision annotation kubectl
//! reads for `rollout history` and `rollout undo`), ReplicaSets and Jobs get
//! Pods (which `kubelet.rs` moves to Running and Ready after a short delay,
//! or into a crash loop when their image tag contains `broken`), and every
//! status moves the way kubectl's and kube-rs's rollout checks expect.
//!
//! Simplifications (on purpose): a rollout starts all new pods at once and
//! scales the old ReplicaSets to zero only when every new pod is ready (so a
//! broken rollout keeps the old pods serving); a broken Job fails at once
//! instead of retrying `backoffLimit` times; the progress deadline is the
//! smaller of the Deployment's `progressDeadlineSeconds` and the lab's own,
//! so a broken rollout fails in seconds.
//!
//! `reconcile` runs every few milliseconds and writes only when something
//! changed, so an idle lab keeps its resourceVersion (dry-run tests compare
//! dumps).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use super::api::{owned_by, random_suffix};
use super::kubelet::{self, Kubelet};
use super::resources::{self, Resource};
use super::store::{self, Store};

/// The annotation holding a ReplicaSet's (and its Deployment's) revision.
pub(crate) const REVISION: &str = "deployment.kubernetes.io/revision";
/// The label tying pods to their ReplicaSet's template.
pub(crate) const HASH_LABEL: &str = "pod-template-hash";

/// How fast the fake cluster moves.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// From pod creation to Running and Ready (or to the first crash).
    pub(crate) delay: Duration,
    /// The lab-wide progress deadline of rollouts.
    pub(crate) progress_deadline: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            delay: Duration::from_millis(200),
            progress_deadline: Duration::from_secs(3),
        }
    }
}

/// What the controller remembers outside the objects.
#[derive(Debug, Default)]
pub(crate) struct Memory {
    /// Per deployment uid: since when its rollout has made no progress, and
    /// the progress marker (new ReplicaSet, updated, ready) at that time.
    progress: HashMap<String, (Instant, (String, i64, i64))>,
    /// The pods' side: when each started, IP addresses.
    pub(crate) kubelet: Kubelet,
}

/// One pass over every workload; returns whether anything was written.
pub(crate) fn reconcile(
    store: &mut Store,
    memory: &mut Memory,
    settings: &Settings,
    now: Instant,
) -> bool {
    let before = store.resource_version();
    for deployment in objects(store, "Deployment") {
        sync_deployment(store, memory, &deployment);
    }
    for replicaset in objects(store, "ReplicaSet") {
        sync_pods(store, memory, &replicaset, now);
    }
    for job in objects(store, "Job") {
        sync_job_pod(store, memory, &job, now);
    }
    for pod in objects(store, "Pod") {
        kubelet::advance_pod(store, &mut memory.kubelet, settings, &pod, now);
    }
    for replicaset in objects(store, "ReplicaSet") {
        replicaset_status(store, &replicaset);
    }
    for job in objects(store, "Job") {
        job_status(store, &job);
    }
    for deployment in objects(store, "Deployment") {
        deployment_status(store, memory, settings, &deployment, now);
    }
    let live: std::collections::HashSet<String> = objects(store, "Pod")
        .iter()
        .filter_map(|pod| text(pod, "/metadata/uid").map(str::to_owned))
        .collect();
    memory.kubelet.forget_all_but(&live);
    store.resource_version() != before
}

/// Run passes until nothing changes (bounded), with pods ready at once:
/// the seeds start out rolled out.
pub(crate) fn settle(store: &mut Store, memory: &mut Memory) {
    let instant = Settings {
        delay: Duration::ZERO,
        ..Settings::default()
    };
    for _ in 0..20 {
        if !reconcile(store, memory, &instant, Instant::now()) {
            break;
        }
    }
}

fn objects(store: &Store, kind: &str) -> Vec<Value> {
    store
        .list(resources::kind(kind), None)
        .into_iter()
        .cloned()
        .collect()
}

fn text<'a>(object: &'a Value, pointer: &str) -> Option<&'a str> {
    object.pointer(pointer).and_then(Value::as_str)
}

fn int(object: &Value, pointer: &str) -> i64 {
    object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn revision(object: &Value) -> i64 {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(REVISION))
        .and_then(Value::as_str)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// Write `new` if it differs from `old`, bumping `generation` when the spec
/// changed (as the API would for these writes).
fn save(store: &mut Store, resource: &'static Resource, old: &Value, mut new: Value) {
    if new == *old {
        return;
    }
    if resource.generation && new.get("spec") != old.get("spec") {
        new["metadata"]["generation"] = json!(int(old, "/metadata/generation") + 1);
    }
    store.put(resource, new);
}

/// An owner reference to `owner` as its controller.
fn controller_ref(owner: &Value) -> Value {
    json!({
        "apiVersion": owner.get("apiVersion").cloned().unwrap_or(Value::Null),
        "kind": owner.get("kind").cloned().unwrap_or(Value::Null),
        "name": owner.pointer("/metadata/name").cloned().unwrap_or(Value::Null),
        "uid": owner.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// The objects of `kind` in `namespace` controlled by the object with `uid`.
fn owned(store: &Store, kind: &str, namespace: &str, uid: &str) -> Vec<Value> {
    store
        .list(resources::kind(kind), Some(namespace))
        .into_iter()
        .filter(|object| owned_by(object, uid))
        .cloned()
        .collect()
}

/// A pod template as compared between a Deployment and its ReplicaSets:
/// without the hash label, and with empty values dropped (kubectl's
/// `rollout undo` sends back a template that went through Go types, which
/// adds `creationTimestamp: null` and `resources: {}`).
fn comparable(template: &Value) -> Value {
    let mut template = template.clone();
    if let Some(labels) = template
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(HASH_LABEL);
    }
    prune(&mut template);
    template
}

fn prune(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for inner in map.values_mut() {
                prune(inner);
            }
            map.retain(|_, inner| !is_empty(inner));
        }
        Value::Array(items) => items.iter_mut().for_each(prune),
        _ => {}
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

/// Ten hex characters from the template (the real API uses an FNV hash in
/// its own alphabet; any stable hash serves the purpose).
pub(crate) fn template_hash(template: &Value) -> String {
    let digest = Sha256::digest(comparable(template).to_string().as_bytes());
    digest.iter().take(5).map(|b| format!("{b:02x}")).collect()
}

fn new_metadata(name: &str, namespace: &str) -> Map<String, Value> {
    let mut metadata = Map::new();
    metadata.insert("name".into(), json!(name));
    metadata.insert("namespace".into(), json!(namespace));
    metadata.insert("uid".into(), json!(store::uid()));
    metadata.insert("creationTimestamp".into(), json!(super::now()));
    metadata
}

/// Annotations a Deployment passes on to its ReplicaSets.
fn copied_annotations(deployment: &Value) -> Map<String, Value> {
    deployment
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .map(|annotations| {
            annotations
                .iter()
                .filter(|(key, _)| {
                    !key.starts_with("deployment.kubernetes.io/")
                        && key.as_str() != "kubectl.kubernetes.io/last-applied-configuration"
                })
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn sync_deployment(store: &mut Store, memory: &mut Memory, deployment: &Value) {
    if deployment.pointer("/spec/paused").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let namespace = text(deployment, "/metadata/namespace")
        .unwrap_or_default()
        .to_owned();
    let name = text(deployment, "/metadata/name")
        .unwrap_or_default()
        .to_owned();
    let uid = text(deployment, "/metadata/uid")
        .unwrap_or_default()
        .to_owned();
    let Some(template) = deployment.pointer("/spec/template") else {
        return;
    };
    let desired = int(deployment, "/spec/replicas");
    let rs_resource = resources::kind("ReplicaSet");
    let mut replicasets = owned(store, "ReplicaSet", &namespace, &uid);
    let key = comparable(template);
    let hash = template_hash(template);
    // An RS of this template left by an earlier deployment of the same name
    // (deleted with --cascade=orphan) is adopted, as the real controller does.
    let rs_name = format!("{name}-{hash}");
    if !replicasets
        .iter()
        .any(|rs| comparable(&rs["spec"]["template"]) == key)
        && let Some(orphan) = store.get(rs_resource, &namespace, &rs_name).cloned()
        && orphan
            .pointer("/metadata/ownerReferences")
            .is_none_or(|o| o.as_array().is_none_or(Vec::is_empty))
    {
        let mut adopted = orphan.clone();
        adopted["metadata"]["ownerReferences"] = json!([controller_ref(deployment)]);
        replicasets.push(store.put(rs_resource, adopted));
    }
    let newest = replicasets.iter().map(revision).max().unwrap_or(0);
    let current = replicasets
        .iter()
        .find(|rs| comparable(&rs["spec"]["template"]) == key)
        .cloned();
    let new_rs = match current {
        None => {
            let mut labels = template
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            labels.insert(HASH_LABEL.into(), json!(hash));
            let mut rs_template = template.clone();
            rs_template["metadata"]["labels"] = Value::Object(labels.clone());
            let mut selector = deployment
                .pointer("/spec/selector")
                .cloned()
                .unwrap_or_else(|| json!({}));
            selector["matchLabels"][HASH_LABEL] = json!(hash);
            let mut annotations = copied_annotations(deployment);
            annotations.insert(REVISION.into(), json!((newest + 1).to_string()));
            annotations.insert(
                "deployment.kubernetes.io/desired-replicas".into(),
                json!(desired.to_string()),
            );
            annotations.insert(
                "deployment.kubernetes.io/max-replicas".into(),
                json!((desired + (desired + 3) / 4).to_string()),
            );
            let mut metadata = new_metadata(&rs_name, &namespace);
            metadata.insert("generation".into(), json!(1));
            metadata.insert("labels".into(), Value::Object(labels));
            metadata.insert("annotations".into(), Value::Object(annotations));
            metadata.insert(
                "ownerReferences".into(),
                json!([controller_ref(deployment)]),
            );
            let rs = json!({
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": metadata,
                "spec": { "replicas": desired, "minReadySeconds": 0, "selector": selector, "template": rs_template },
                "status": { "replicas": 0, "observedGeneration": 1 },
            });
            memory.progress.remove(&uid);
            store.put(rs_resource, rs)
        }
        Some(rs) => {
            let mut changed = rs.clone();
            if revision(&rs) < newest {
                // Back to an earlier template (`rollout undo`): that
                // ReplicaSet becomes the newest revision again.
                changed["metadata"]["annotations"][REVISION] = json!((newest + 1).to_string());
                memory.progress.remove(&uid);
            }
            changed["spec"]["replicas"] = json!(desired);
            for (key, value) in copied_annotations(deployment) {
                changed["metadata"]["annotations"][key.as_str()] = value;
            }
            save(store, rs_resource, &rs, changed.clone());
            store
                .get(rs_resource, &namespace, &rs_name_of(&changed))
                .cloned()
                .unwrap_or(changed)
        }
    };
    let new_name = rs_name_of(&new_rs);
    // Old ReplicaSets keep their pods until every new pod is ready.
    let new_ready = ready_pods(store, &new_rs);
    if new_ready >= desired {
        for rs in replicasets.iter().filter(|rs| rs_name_of(rs) != new_name) {
            if int(rs, "/spec/replicas") != 0 {
                let mut scaled = rs.clone();
                scaled["spec"]["replicas"] = json!(0);
                save(store, rs_resource, rs, scaled);
            }
        }
    }
    // Keep `revisionHistoryLimit` old, empty ReplicaSets.
    let limit = deployment
        .pointer("/spec/revisionHistoryLimit")
        .and_then(Value::as_i64)
        .unwrap_or(10);
    let mut old: Vec<Value> = owned(store, "ReplicaSet", &namespace, &uid)
        .into_iter()
        .filter(|rs| {
            rs_name_of(rs) != new_name
                && int(rs, "/spec/replicas") == 0
                && int(rs, "/status/replicas") == 0
        })
        .collect();
    old.sort_by_key(revision);
    let excess = old
        .len()
        .saturating_sub(usize::try_from(limit).unwrap_or(0));
    for rs in old.iter().take(excess) {
        super::api::remove_with_dependents(store, rs_resource, &namespace, &rs_name_of(rs), false);
    }
    // The deployment carries its current revision.
    let new_revision = store
        .get(rs_resource, &namespace, &new_name)
        .map(revision)
        .unwrap_or_default();
    if let Some(latest) = store
        .get(resources::kind("Deployment"), &namespace, &name)
        .cloned()
        && revision(&latest) != new_revision
    {
        let mut annotated = latest.clone();
        if !annotated["metadata"]["annotations"].is_object() {
            annotated["metadata"]["annotations"] = json!({});
        }
        annotated["metadata"]["annotations"][REVISION] = json!(new_revision.to_string());
        store.put(resources::kind("Deployment"), annotated);
    }
}

fn rs_name_of(rs: &Value) -> String {
    text(rs, "/metadata/name").unwrap_or_default().to_owned()
}

fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|conditions| {
            conditions.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

fn ready_pods(store: &Store, rs: &Value) -> i64 {
    let namespace = text(rs, "/metadata/namespace").unwrap_or_default();
    let uid = text(rs, "/metadata/uid").unwrap_or_default();
    let ready = owned(store, "Pod", namespace, uid)
        .iter()
        .filter(|p| is_ready(p))
        .count();
    i64::try_from(ready).unwrap_or(i64::MAX)
}

/// A new pod for `owner` (a ReplicaSet or Job) from `template`.
fn new_pod(memory: &mut Memory, owner: &Value, template: &Value, now: Instant) -> Value {
    let namespace = text(owner, "/metadata/namespace").unwrap_or_default();
    let owner_name = text(owner, "/metadata/name").unwrap_or_default();
    let name = format!("{owner_name}-{}", random_suffix());
    let mut metadata = new_metadata(&name, namespace);
    metadata.insert("generateName".into(), json!(format!("{owner_name}-")));
    for key in ["labels", "annotations"] {
        if let Some(value) = template.pointer(&format!("/metadata/{key}")) {
            metadata.insert(key.into(), value.clone());
        }
    }
    metadata.insert("ownerReferences".into(), json!([controller_ref(owner)]));
    let mut spec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
    spec["nodeName"] = json!("lab-node");
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": spec,
        "status": {
            "phase": "Pending",
            "qosClass": "BestEffort",
            "conditions": [{ "type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": super::now() }],
        },
    });
    if let Some(uid) = text(&pod, "/metadata/uid") {
        memory.kubelet.started(uid, now);
    }
    pod
}

fn sync_pods(store: &mut Store, memory: &mut Memory, rs: &Value, now: Instant) {
    let namespace = text(rs, "/metadata/namespace")
        .unwrap_or_default()
        .to_owned();
    let uid = text(rs, "/metadata/uid").unwrap_or_default().to_owned();
    let want = usize::try_from(int(rs, "/spec/replicas")).unwrap_or(0);
    let mut pods = owned(store, "Pod", &namespace, &uid);
    let pod_resource = resources::kind("Pod");
    let template = rs
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    for _ in pods.len()..want {
        let pod = new_pod(memory, rs, &template, now);
        let name = rs_name_of(&pod);
        // A random name already taken: the next pass tries another.
        if store.get(pod_resource, &namespace, &name).is_none() {
            store.put(pod_resource, pod);
        }
    }
    if pods.len() > want {
        // Unready pods go first, then the newest.
        pods.sort_by_key(|pod| {
            (
                is_ready(pod),
                std::cmp::Reverse(
                    text(pod, "/metadata/creationTimestamp")
                        .unwrap_or_default()
                        .to_owned(),
                ),
            )
        });
        for pod in pods.iter().take(pods.len() - want) {
            store.remove(pod_resource, &namespace, &rs_name_of(pod));
        }
    }
}

fn sync_job_pod(store: &mut Store, memory: &mut Memory, job: &Value, now: Instant) {
    let finished = int(job, "/status/succeeded") > 0 || int(job, "/status/failed") > 0;
    let suspended = job.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true);
    let namespace = text(job, "/metadata/namespace").unwrap_or_default();
    let uid = text(job, "/metadata/uid").unwrap_or_default();
    if finished || suspended || !owned(store, "Pod", namespace, uid).is_empty() {
        return;
    }
    let template = job
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let pod = new_pod(memory, job, &template, now);
    store.put(resources::kind("Pod"), pod);
}

fn replicaset_status(store: &mut Store, rs: &Value) {
    let namespace = text(rs, "/metadata/namespace").unwrap_or_default();
    let uid = text(rs, "/metadata/uid").unwrap_or_default();
    let pods = owned(store, "Pod", namespace, uid);
    let count = i64::try_from(pods.len()).unwrap_or(i64::MAX);
    let ready = i64::try_from(pods.iter().filter(|p| is_ready(p)).count()).unwrap_or(i64::MAX);
    let mut updated = rs.clone();
    updated["status"] = json!({
        "replicas": count,
        "fullyLabeledReplicas": count,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "observedGeneration": int(rs, "/metadata/generation"),
    });
    save(store, resources::kind("ReplicaSet"), rs, updated);
}

fn job_status(store: &mut Store, job: &Value) {
    let namespace = text(job, "/metadata/namespace").unwrap_or_default();
    let uid = text(job, "/metadata/uid").unwrap_or_default();
    let pods = owned(store, "Pod", namespace, uid);
    let phase = |p: &Value| text(p, "/status/phase").unwrap_or_default().to_owned();
    let succeeded = pods.iter().filter(|p| phase(p) == "Succeeded").count();
    let failed = pods.iter().filter(|p| phase(p) == "Failed").count();
    let active = pods.len() - succeeded - failed;
    let old = job.get("status").cloned().unwrap_or_else(|| json!({}));
    if int(&old, "/succeeded") > 0 || int(&old, "/failed") > 0 {
        return;
    }
    let time = super::now();
    let mut status = json!({
        "active": active,
        "ready": pods.iter().filter(|p| is_ready(p)).count(),
        "terminating": 0,
        "uncountedTerminatedPods": {},
        "startTime": old.get("startTime").cloned().unwrap_or_else(|| json!(time)),
    });
    if active == 0 && succeeded > 0 {
        status["succeeded"] = json!(succeeded);
        status["completionTime"] = json!(time);
        status["conditions"] = json!([
            { "type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods", "lastProbeTime": time, "lastTransitionTime": time },
            { "type": "Complete", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods", "lastProbeTime": time, "lastTransitionTime": time },
        ]);
    } else if active == 0 && failed > 0 {
        status["failed"] = json!(failed);
        status["conditions"] = json!([
            { "type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit", "lastProbeTime": time, "lastTransitionTime": time },
            { "type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit", "lastProbeTime": time, "lastTransitionTime": time },
        ]);
    }
    let same = ["active", "ready", "succeeded", "failed"]
        .iter()
        .all(|key| old.get(*key) == status.get(*key))
        && old.get("startTime").is_some();
    if same {
        return;
    }
    let mut updated = job.clone();
    updated["status"] = status;
    store.put(resources::kind("Job"), updated);
}

/// `maxUnavailable` of a rolling update for `desired` replicas (25% by default).
fn max_unavailable(deployment: &Value, desired: i64) -> i64 {
    match deployment.pointer("/spec/strategy/rollingUpdate/maxUnavailable") {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) if s.ends_with('%') => {
            let percent: i64 = s.trim_end_matches('%').parse().unwrap_or(25);
            desired * percent / 100
        }
        _ if deployment
            .pointer("/spec/strategy/type")
            .and_then(Value::as_str)
            == Some("Recreate") =>
        {
            desired
        }
        _ => desired / 4,
    }
}

/// A condition, keeping the old timestamps when nothing about it changed.
fn condition(
    old: &Value,
    kind: &str,
    status: &str,
    reason: &str,
    message: &str,
    time: &str,
) -> Value {
    let previous = old
        .get("conditions")
        .and_then(Value::as_array)
        .and_then(|c| {
            c.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
        });
    let same_status = previous
        .and_then(|p| p.get("status"))
        .and_then(Value::as_str)
        == Some(status);
    let same_reason = same_status
        && previous
            .and_then(|p| p.get("reason"))
            .and_then(Value::as_str)
            == Some(reason)
        && previous
            .and_then(|p| p.get("message"))
            .and_then(Value::as_str)
            == Some(message);
    let keep = |key: &str, keep: bool| {
        if keep {
            previous
                .and_then(|p| p.get(key))
                .cloned()
                .unwrap_or_else(|| json!(time))
        } else {
            json!(time)
        }
    };
    json!({
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastUpdateTime": keep("lastUpdateTime", same_reason),
        "lastTransitionTime": keep("lastTransitionTime", same_status),
    })
}

fn deployment_status(
    store: &mut Store,
    memory: &mut Memory,
    settings: &Settings,
    deployment: &Value,
    now: Instant,
) {
    let namespace = text(deployment, "/metadata/namespace")
        .unwrap_or_default()
        .to_owned();
    let name = text(deployment, "/metadata/name")
        .unwrap_or_default()
        .to_owned();
    let uid = text(deployment, "/metadata/uid")
        .unwrap_or_default()
        .to_owned();
    // The deployment may have been annotated by sync_deployment in this pass.
    let Some(deployment) = store
        .get(resources::kind("Deployment"), &namespace, &name)
        .cloned()
    else {
        return;
    };
    let desired = int(&deployment, "/spec/replicas");
    let owned = owned(store, "ReplicaSet", &namespace, &uid);
    let key = deployment.pointer("/spec/template").map(comparable);
    let new_rs = owned
        .iter()
        .find(|rs| Some(comparable(&rs["spec"]["template"])) == key);
    let sum = |pointer: &str| owned.iter().map(|rs| int(rs, pointer)).sum::<i64>();
    let replicas = sum("/status/replicas");
    let ready = sum("/status/readyReplicas");
    let available = sum("/status/availableReplicas");
    let updated = new_rs.map(|rs| int(rs, "/status/replicas")).unwrap_or(0);
    let updated_ready = new_rs
        .map(|rs| int(rs, "/status/readyReplicas"))
        .unwrap_or(0);
    let unavailable = (sum("/spec/replicas").max(desired) - available).max(0);
    let old = deployment
        .get("status")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let time = super::now();
    let available_condition = if available >= desired - max_unavailable(&deployment, desired) {
        condition(
            &old,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            &time,
        )
    } else {
        condition(
            &old,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            &time,
        )
    };
    let rs_name = new_rs.map(rs_name_of).unwrap_or_default();
    let marker = (rs_name.clone(), updated, updated_ready);
    let since = match memory.progress.get(&uid) {
        Some((since, seen)) if *seen == marker => *since,
        _ => {
            memory.progress.insert(uid.clone(), (now, marker));
            now
        }
    };
    let seconds = deployment
        .pointer("/spec/progressDeadlineSeconds")
        .and_then(Value::as_u64)
        .unwrap_or(600);
    let deadline = Duration::from_secs(seconds).min(settings.progress_deadline);
    let complete =
        new_rs.is_some() && updated == desired && replicas == desired && available == desired;
    let paused = deployment.pointer("/spec/paused").and_then(Value::as_bool) == Some(true);
    let progressing = if paused {
        condition(
            &old,
            "Progressing",
            "Unknown",
            "DeploymentPaused",
            "Deployment is paused",
            &time,
        )
    } else if complete {
        condition(
            &old,
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            &format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
            &time,
        )
    } else if now.saturating_duration_since(since) >= deadline {
        condition(
            &old,
            "Progressing",
            "False",
            "ProgressDeadlineExceeded",
            &format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
            &time,
        )
    } else {
        condition(
            &old,
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            &format!("ReplicaSet \"{rs_name}\" is progressing."),
            &time,
        )
    };
    let mut status = json!({
        "observedGeneration": int(&deployment, "/metadata/generation"),
        "replicas": replicas,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "conditions": [available_condition, progressing],
    });
    if unavailable > 0 {
        status["unavailableReplicas"] = json!(unavailable);
    }
    let mut changed = deployment.clone();
    changed["status"] = status;
    save(store, resources::kind("Deployment"), &deployment, changed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::api::{self, PatchType, WriteOptions};
    use crate::k8s::resources::find;

    fn options() -> WriteOptions {
        WriteOptions {
            dry_run: false,
            manager: "test".into(),
        }
    }

    fn cluster() -> (Store, Memory) {
        let mut store = Store::new();
        api::create(
            &mut store,
            find("ns").unwrap(),
            "",
            json!({ "metadata": { "name": "lab" } }),
            &options(),
        )
        .unwrap();
        let deployment = json!({
            "metadata": { "name": "web" },
            "spec": {
                "replicas": 2,
                "selector": { "matchLabels": { "app": "web" } },
                "template": {
                    "metadata": { "labels": { "app": "web" } },
                    "spec": { "containers": [{ "name": "web", "image": "registry.lab/web:v1" }] },
                },
            },
        });
        api::create(
            &mut store,
            find("deploy").unwrap(),
            "lab",
            deployment,
            &options(),
        )
        .unwrap();
        (store, Memory::default())
    }

    fn settings() -> Settings {
        Settings {
            delay: Duration::from_millis(100),
            progress_deadline: Duration::from_secs(2),
        }
    }

    /// Passes at `start + offset` until nothing changes.
    fn run(store: &mut Store, memory: &mut Memory, at: Instant) {
        for _ in 0..20 {
            if !reconcile(store, memory, &settings(), at) {
                return;
            }
        }
        panic!("the controller does not settle");
    }

    fn get(store: &Store, kind: &str, name: &str) -> Value {
        store.get(find(kind).unwrap(), "lab", name).unwrap().clone()
    }

    fn set_image(store: &mut Store, image: &str) {
        let body = json!({ "spec": { "template": { "spec": { "containers": [{ "name": "web", "image": image }] } } } });
        api::patch(
            store,
            find("deploy").unwrap(),
            "lab",
            "web",
            PatchType::Strategic,
            body.to_string().as_bytes(),
            None,
            &options(),
        )
        .unwrap();
    }

    fn replicasets(store: &Store) -> Vec<Value> {
        store
            .list(find("rs").unwrap(), Some("lab"))
            .into_iter()
            .cloned()
            .collect()
    }

    #[test]
    fn a_deployment_rolls_out_after_the_delay() {
        let (mut store, mut memory) = cluster();
        let start = Instant::now();
        run(&mut store, &mut memory, start);
        let rs = replicasets(&store);
        assert_eq!(rs.len(), 1);
        let hash = template_hash(&get(&store, "deploy", "web")["spec"]["template"]);
        assert_eq!(rs[0]["metadata"]["name"], format!("web-{hash}"));
        assert_eq!(rs[0]["metadata"]["annotations"][REVISION], "1");
        assert_eq!(rs[0]["metadata"]["labels"][HASH_LABEL], hash.as_str());
        let pods: Vec<Value> = store
            .list(find("po").unwrap(), Some("lab"))
            .into_iter()
            .cloned()
            .collect();
        assert_eq!(pods.len(), 2);
        assert!(pods.iter().all(|p| p["status"]["phase"] == "Pending"));
        let status = &get(&store, "deploy", "web")["status"];
        assert_eq!(status["updatedReplicas"], 2);
        assert_eq!(status["availableReplicas"], 0);

        run(&mut store, &mut memory, start + Duration::from_millis(150));
        let pods: Vec<Value> = store
            .list(find("po").unwrap(), Some("lab"))
            .into_iter()
            .cloned()
            .collect();
        assert!(
            pods.iter()
                .all(|p| p["status"]["phase"] == "Running" && is_ready(p))
        );
        assert!(
            pods[0]["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with(&format!("web-{hash}-"))
        );
        let deployment = get(&store, "deploy", "web");
        let status = &deployment["status"];
        assert_eq!(status["observedGeneration"], 1);
        assert_eq!(status["readyReplicas"], 2);
        assert_eq!(status["availableReplicas"], 2);
        assert_eq!(status["conditions"][1]["reason"], "NewReplicaSetAvailable");
        assert_eq!(deployment["metadata"]["annotations"][REVISION], "1");

        // Settled: further passes write nothing.
        let rv = store.resource_version();
        assert!(!reconcile(
            &mut store,
            &mut memory,
            &settings(),
            start + Duration::from_secs(1)
        ));
        assert_eq!(store.resource_version(), rv);
    }

    #[test]
    fn a_new_template_gets_a_new_replicaset_and_undo_reuses_the_old_one() {
        let (mut store, mut memory) = cluster();
        let start = Instant::now();
        run(&mut store, &mut memory, start);
        run(&mut store, &mut memory, start + Duration::from_millis(150));
        set_image(&mut store, "registry.lab/web:v2");
        let at = start + Duration::from_millis(200);
        run(&mut store, &mut memory, at);
        assert_eq!(replicasets(&store).len(), 2);
        run(&mut store, &mut memory, at + Duration::from_millis(150));
        let rs = replicasets(&store);
        let by_revision = |revision: &str| {
            rs.iter()
                .find(|r| r["metadata"]["annotations"][REVISION] == revision)
                .unwrap()
                .clone()
        };
        assert_eq!(by_revision("2")["spec"]["replicas"], 2);
        assert_eq!(by_revision("1")["spec"]["replicas"], 0);
        let deployment = get(&store, "deploy", "web");
        assert_eq!(deployment["metadata"]["annotations"][REVISION], "2");
        assert_eq!(deployment["status"]["updatedReplicas"], 2);
        assert_eq!(deployment["status"]["replicas"], 2);

        // Undo: the template of revision 1 again.
        set_image(&mut store, "registry.lab/web:v1");
        run(&mut store, &mut memory, at + Duration::from_millis(300));
        run(&mut store, &mut memory, at + Duration::from_millis(500));
        let rs = replicasets(&store);
        assert_eq!(rs.len(), 2);
        let v1 = rs
            .iter()
            .find(|r| {
                r["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.lab/web:v1"
            })
            .unwrap();
        assert_eq!(v1["metadata"]["annotations"][REVISION], "3");
        assert_eq!(v1["spec"]["replicas"], 2);
        assert_eq!(
            get(&store, "deploy", "web")["metadata"]["annotations"][REVISION],
            "3"
        );
    }

    #[test]
    fn a_broken_image_crash_loops_and_exceeds_the_deadline() {
        let (mut store, mut memory) = cluster();
        let start = Instant::now();
        run(&mut store, &mut memory, start);
        run(&mut store, &mut memory, start + Duration::from_millis(150));
        set_image(&mut store, "registry.lab/web:v2-broken");
        let at = start + Duration::from_millis(200);
        run(&mut store, &mut memory, at);
        run(&mut store, &mut memory, at + Duration::from_millis(1500));
        let pods: Vec<Value> = store
            .list(find("po").unwrap(), Some("lab"))
            .into_iter()
            .cloned()
            .collect();
        assert_eq!(pods.len(), 4, "the old pods stay");
        let broken: Vec<&Value> = pods.iter().filter(|p| !is_ready(p)).collect();
        assert_eq!(broken.len(), 2);
        let state = &broken[0]["status"]["containerStatuses"][0];
        assert_eq!(state["state"]["waiting"]["reason"], "CrashLoopBackOff");
        assert_eq!(state["restartCount"], 2);
        let progressing = &get(&store, "deploy", "web")["status"]["conditions"][1];
        assert_eq!(progressing["reason"], "ReplicaSetUpdated");

        run(&mut store, &mut memory, at + Duration::from_millis(2200));
        let status = get(&store, "deploy", "web")["status"].clone();
        assert_eq!(status["conditions"][1]["status"], "False");
        assert_eq!(
            status["conditions"][1]["reason"],
            "ProgressDeadlineExceeded"
        );
        assert_eq!(status["availableReplicas"], 2);
        assert_eq!(status["conditions"][0]["status"], "True");
    }

    #[test]
    fn jobs_complete_after_the_delay() {
        let (mut store, mut memory) = cluster();
        let job = json!({ "metadata": { "name": "migrate" }, "spec": { "template": { "spec": {
            "restartPolicy": "Never", "containers": [{ "name": "m", "image": "registry.lab/migrate:v1" }] } } } });
        api::create(&mut store, find("job").unwrap(), "lab", job, &options()).unwrap();
        let start = Instant::now();
        run(&mut store, &mut memory, start);
        assert_eq!(get(&store, "job", "migrate")["status"]["active"], 1);
        run(&mut store, &mut memory, start + Duration::from_millis(150));
        let status = get(&store, "job", "migrate")["status"].clone();
        assert_eq!(status["succeeded"], 1);
        assert_eq!(status["conditions"][1]["type"], "Complete");
        assert_eq!(status["conditions"][1]["status"], "True");
    }

    #[test]
    fn templates_compare_without_empty_values_or_the_hash_label() {
        let a = json!({ "metadata": { "labels": { "app": "x" } }, "spec": { "containers": [{ "name": "x", "resources": {} }] } });
        let b = json!({ "metadata": { "creationTimestamp": null, "labels": { "app": "x", "pod-template-hash": "abc" } }, "spec": { "containers": [{ "name": "x" }] } });
        assert_eq!(comparable(&a), comparable(&b));
        assert_eq!(template_hash(&a), template_hash(&b));
        assert_eq!(template_hash(&a).len(), 10);
    }
}
