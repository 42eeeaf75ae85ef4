//! Rollouts: `k8s::rollout_wait` (kubectl's completion rule; failures name
//! the pods and why they are not ready), `k8s::history` (the ReplicaSets a
//! Deployment owns, by revision) and `k8s::rollout_undo` (copy an earlier
//! ReplicaSet's template back, like `kubectl rollout undo`).

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use kube::api::{Api, ListParams};
use rhai::{Array, Dynamic, Map};

use super::Mode;
use super::client::{Kube, connect};
use super::deploy::{deployments, finish};
use super::error::{Subject, api};
use super::objects::to_value;
use super::settings;
use super::update::update;
use crate::function::{Call, Failure};
use crate::host::StdlibError;

/// How often `rollout_wait` looks at the Deployment.
const POLL: Duration = Duration::from_millis(250);

const REVISION: &str = "deployment.kubernetes.io/revision";
const TEMPLATE_HASH: &str = "pod-template-hash";

/// Where a rollout stands.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Rollout {
    Complete,
    /// Still going: what it waits for.
    Waiting(String),
    /// The controller gave up (ProgressDeadlineExceeded): why.
    Failed(String),
}

/// kubectl's rule (`kubectl rollout status`): the controller has seen the
/// newest spec, every replica is updated, no old replica is left, and every
/// updated replica is available. (kube-rs's `is_deployment_completed` skips
/// the first check and is true right after a change.)
pub(crate) fn rollout_state(deployment: &Deployment) -> Rollout {
    let generation = deployment.metadata.generation.unwrap_or(0);
    let status = deployment.status.clone().unwrap_or_default();
    if status.observed_generation.unwrap_or(0) < generation {
        return Rollout::Waiting("waiting for the controller to see the new spec".into());
    }
    if let Some(condition) = status
        .conditions
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|condition| condition.type_ == "Progressing")
        && condition.reason.as_deref() == Some("ProgressDeadlineExceeded")
    {
        let message = condition.message.clone().unwrap_or_default();
        return Rollout::Failed(if message.is_empty() {
            "ProgressDeadlineExceeded".to_owned()
        } else {
            format!("ProgressDeadlineExceeded: {message}")
        });
    }
    let wanted = deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.replicas)
        .unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated < wanted {
        return Rollout::Waiting(format!(
            "{updated} of {wanted} new replicas have been updated"
        ));
    }
    if replicas > updated {
        return Rollout::Waiting(format!(
            "{} old replicas are pending termination",
            replicas - updated
        ));
    }
    if available < updated {
        return Rollout::Waiting(format!(
            "{available} of {updated} updated replicas are available"
        ));
    }
    Rollout::Complete
}

/// Why a pod is not ready, or `None` when it is (or is going away).
pub(crate) fn pod_problem(pod: &Pod) -> Option<String> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.clone().unwrap_or_default();
    let ready = status
        .conditions
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|condition| condition.type_ == "Ready" && condition.status == "True");
    if ready {
        return None;
    }
    let statuses = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    for container in statuses {
        let restarts = container.restart_count;
        let state = container.state.clone().unwrap_or_default();
        if let Some(waiting) = state.waiting
            && let Some(reason) = waiting
                .reason
                .filter(|reason| reason != "ContainerCreating" || restarts > 0)
        {
            return Some(format!("{reason} (restarts: {restarts})"));
        }
        if let Some(terminated) = state.terminated
            && terminated.exit_code != 0
        {
            let reason = terminated.reason.unwrap_or_else(|| "Terminated".into());
            return Some(format!(
                "{reason} (exit code {}, restarts: {restarts})",
                terminated.exit_code
            ));
        }
    }
    if let Some(unscheduled) = status
        .conditions
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|condition| condition.type_ == "PodScheduled" && condition.status == "False")
    {
        let reason = unscheduled
            .reason
            .clone()
            .unwrap_or_else(|| "Unschedulable".into());
        return Some(match &unscheduled.message {
            Some(message) => format!("{reason}: {message}"),
            None => reason,
        });
    }
    let phase = status.phase.unwrap_or_else(|| "Pending".into());
    Some(format!("not ready (phase {phase})"))
}

/// `app=backend,tier=api` from the Deployment's `matchLabels`.
pub(crate) fn selector_of(deployment: &Deployment) -> Option<String> {
    let labels = deployment.spec.as_ref()?.selector.match_labels.as_ref()?;
    if labels.is_empty() {
        return None;
    }
    Some(
        labels
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// `name: reason` for every pod of the Deployment that is not ready.
async fn failing_pods(kube: &Kube, deployment: &Deployment) -> Vec<String> {
    let Some(selector) = selector_of(deployment) else {
        return Vec::new();
    };
    let pods: Api<Pod> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let Ok(list) = pods.list(&ListParams::default().labels(&selector)).await else {
        return vec!["(the pods could not be listed)".into()];
    };
    let mut problems: Vec<String> = list
        .items
        .iter()
        .filter_map(|pod| {
            let name = pod.metadata.name.clone().unwrap_or_default();
            pod_problem(pod).map(|problem| format!("{name}: {problem}"))
        })
        .collect();
    problems.sort();
    problems
}

fn pods_text(problems: &[String]) -> String {
    if problems.is_empty() {
        "\n  no pod reports a problem".to_owned()
    } else {
        let lines: Vec<String> = problems
            .iter()
            .map(|line| format!("\n    {line}"))
            .collect();
        format!("\n  pods not ready:{}", lines.concat())
    }
}

fn wait_hint(name: &str, deployment: &Deployment) -> String {
    let logs = selector_of(deployment).map_or_else(
        || "`k8s::logs(POD)` shows what a pod prints".to_owned(),
        |selector| format!("`k8s::logs(\"{selector}\", #{{tail: 50}})` shows what the pods print"),
    );
    format!("{logs}; `k8s::rollout_undo(\"{name}\")` goes back to the previous revision")
}

/// `k8s::rollout_wait(deployment, timeout, opts?)`.
pub(crate) fn rollout_wait(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let name = call.string(0)?;
    let timeout = call.duration(1)?;
    let options = call.options(2, &["namespace"])?;
    let settings = settings(call)?;
    let namespace = options.string("namespace")?;
    let deployment = call.block_on(async {
        let kube = connect(&settings, namespace).await?;
        let subject = Subject::new("deployment", &name, Some(&kube.namespace));
        let objects = deployments(&kube);
        let started = Instant::now();
        loop {
            let deployment = objects
                .get(&name)
                .await
                .map_err(|error| api(&kube, &subject, "read", &error))?;
            let waiting = match rollout_state(&deployment) {
                Rollout::Complete => return Ok(deployment),
                Rollout::Failed(reason) => {
                    let pods = failing_pods(&kube, &deployment).await;
                    return Err(StdlibError::failed(
                        format!(
                            "rollout of {} failed: {reason}{}",
                            subject.describe(),
                            pods_text(&pods)
                        ),
                        wait_hint(&name, &deployment),
                    ));
                }
                Rollout::Waiting(waiting) => waiting,
            };
            if started.elapsed() + POLL > timeout {
                let pods = failing_pods(&kube, &deployment).await;
                return Err(StdlibError::failed(
                    format!(
                        "{} did not finish rolling out within {}: {waiting}{}",
                        subject.describe(),
                        crate::duration::human(timeout),
                        pods_text(&pods)
                    ),
                    wait_hint(&name, &deployment),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    })?;
    Ok(super::objects::to_script(call, to_value(&deployment)))
}

/// One entry of a Deployment's history.
#[derive(Debug, Clone)]
pub(crate) struct Revision {
    pub(crate) number: i64,
    pub(crate) replicaset: String,
    pub(crate) image: String,
    pub(crate) created: String,
    pub(crate) template: Option<PodTemplateSpec>,
}

fn revision_of(annotations: Option<&std::collections::BTreeMap<String, String>>) -> i64 {
    annotations
        .and_then(|annotations| annotations.get(REVISION))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

/// Whether `replicaset` is owned by `deployment`.
fn owned_by(replicaset: &ReplicaSet, deployment: &Deployment) -> bool {
    let uid = deployment.metadata.uid.as_deref();
    let name = deployment.metadata.name.as_deref();
    replicaset
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|owner| {
            owner.kind == "Deployment"
                && match uid {
                    Some(uid) if !owner.uid.is_empty() => owner.uid == uid,
                    _ => Some(owner.name.as_str()) == name,
                }
        })
}

/// The history entries of `replicasets` owned by `deployment`, oldest first.
pub(crate) fn history_of(
    deployment: &Deployment,
    replicasets: &[ReplicaSet],
    container: Option<&str>,
) -> Vec<Revision> {
    let mut revisions: Vec<Revision> = replicasets
        .iter()
        .filter(|replicaset| owned_by(replicaset, deployment))
        .map(|replicaset| {
            let template = replicaset
                .spec
                .as_ref()
                .map(|spec| spec.template.clone())
                .unwrap_or_default();
            let containers = template
                .as_ref()
                .and_then(|template| template.spec.as_ref())
                .map(|spec| spec.containers.clone())
                .unwrap_or_default();
            let chosen = container
                .and_then(|wanted| containers.iter().find(|c| c.name == wanted))
                .or_else(|| containers.first());
            Revision {
                number: revision_of(replicaset.metadata.annotations.as_ref()),
                replicaset: replicaset.metadata.name.clone().unwrap_or_default(),
                image: chosen.and_then(|c| c.image.clone()).unwrap_or_default(),
                created: replicaset
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|time| rfc3339(time.0.as_second()))
                    .unwrap_or_default(),
                template,
            }
        })
        .collect();
    revisions.sort_by(|a, b| {
        a.number
            .cmp(&b.number)
            .then_with(|| a.created.cmp(&b.created))
    });
    revisions
}

/// Seconds since the epoch as `2026-11-22T01:00:00Z`.
pub(crate) fn rfc3339(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0)
        .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// The Deployment and its history.
async fn revisions(
    kube: &Kube,
    name: &str,
    container: Option<&str>,
) -> Result<(Deployment, Vec<Revision>), StdlibError> {
    let subject = Subject::new("deployment", name, Some(&kube.namespace));
    let deployment = deployments(kube)
        .get(name)
        .await
        .map_err(|error| api(kube, &subject, "read", &error))?;
    let replicasets: Api<ReplicaSet> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let mut params = ListParams::default();
    if let Some(selector) = selector_of(&deployment) {
        params = params.labels(&selector);
    }
    let list = replicasets.list(&params).await.map_err(|error| {
        api(
            kube,
            &Subject::all("replicaset", Some(&kube.namespace)),
            "list",
            &error,
        )
    })?;
    let history = history_of(&deployment, &list.items, container);
    Ok((deployment, history))
}

/// `k8s::history(deployment, opts?)`.
pub(crate) fn history(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let name = call.string(0)?;
    let options = call.options(1, &["namespace", "container"])?;
    let container = options.string("container")?;
    let settings = settings(call)?;
    let namespace = options.string("namespace")?;
    let (_, history) = call.block_on(async {
        let kube = connect(&settings, namespace).await?;
        revisions(&kube, &name, container.as_deref()).await
    })?;
    let entries: Array = history
        .into_iter()
        .map(|revision| {
            let mut map = Map::new();
            map.insert("revision".into(), Dynamic::from_int(revision.number));
            map.insert("image".into(), Dynamic::from(revision.image));
            map.insert("replicaset".into(), Dynamic::from(revision.replicaset));
            map.insert("created".into(), Dynamic::from(revision.created));
            Dynamic::from_map(map)
        })
        .collect();
    Ok(Dynamic::from_array(entries))
}

/// The revision to roll back to: `wanted`, or the newest one before
/// `current`. `Ok(None)` when `wanted` is the current revision.
pub(crate) fn choose(
    history: &[Revision],
    current: i64,
    wanted: Option<i64>,
) -> Result<Option<&Revision>, String> {
    let known = || {
        let numbers: Vec<String> = history.iter().map(|r| r.number.to_string()).collect();
        if numbers.is_empty() {
            "none".to_owned()
        } else {
            numbers.join(", ")
        }
    };
    match wanted {
        Some(number) if number == current => Ok(None),
        Some(number) => history
            .iter()
            .find(|revision| revision.number == number)
            .map(Some)
            .ok_or_else(|| format!("has no revision {number} (revisions: {})", known())),
        None => history
            .iter()
            .filter(|revision| revision.number > 0 && revision.number < current)
            .max_by_key(|revision| revision.number)
            .map(Some)
            .ok_or_else(|| {
                format!(
                    "has no earlier revision to roll back to (current: {current}; revisions: {})",
                    known()
                )
            }),
    }
}

/// A ReplicaSet's template as a Deployment template: without the
/// `pod-template-hash` label the controller adds.
pub(crate) fn template_for_deployment(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut template = template.clone();
    if let Some(labels) = template
        .metadata
        .as_mut()
        .and_then(|metadata| metadata.labels.as_mut())
    {
        labels.remove(TEMPLATE_HASH);
    }
    template
}

/// `k8s::rollout_undo(deployment)` / `(deployment, revision)` / either with
/// trailing options.
pub(crate) fn rollout_undo(call: &mut Call<'_>, mode: Mode) -> Result<Dynamic, Failure> {
    let name = call.string(0)?;
    let second = call.arg(1);
    let (wanted, options_index) = if second.is_map() || second.is_unit() {
        (None, 1)
    } else {
        let revision = call.int(1)?;
        if revision <= 0 {
            return Err(call
                .bad_arg(
                    1,
                    format!("must be a revision number (1 or more), got {revision}"),
                )
                .into());
        }
        if !call.arg(2).is_unit() && !call.arg(2).is_map() {
            return Err(call.bad_arg(2, "must be an options map").into());
        }
        (Some(revision), 2)
    };
    let options = call.options(options_index, &["namespace"])?;
    let settings = settings(call)?;
    let namespace = options.string("namespace")?;
    let host = call.host;
    let (subject, updated) = call.block_on(async {
        let kube = connect(&settings, namespace).await?;
        let subject = Subject::new("deployment", &name, Some(&kube.namespace));
        let (deployment, history) = revisions(&kube, &name, None).await?;
        let current = match revision_of(deployment.metadata.annotations.as_ref()) {
            0 => history.iter().map(|r| r.number).max().unwrap_or(0),
            number => number,
        };
        let target = choose(&history, current, wanted).map_err(|problem| {
            subject.failed(
                &problem,
                format!("`k8s::history(\"{name}\")` lists the revisions"),
            )
        })?;
        let Some(target) = target else {
            host.log(
                crate::host::Level::Info,
                &format!(
                    "{} is at revision {current} already; nothing to undo",
                    subject.describe()
                ),
            );
            let updated = update(&kube, &deployments(&kube), &subject, mode, |_| Ok(false)).await?;
            return Ok((subject, updated));
        };
        let Some(template) = target.template.as_ref().map(template_for_deployment) else {
            return Err(subject.failed(
                &format!(
                    "revision {} (ReplicaSet `{}`) has no pod template",
                    target.number, target.replicaset
                ),
                "roll back with `k8s::set_image` instead",
            ));
        };
        let updated = update(&kube, &deployments(&kube), &subject, mode, |deployment| {
            let Some(spec) = deployment.spec.as_mut() else {
                return Err(subject.failed("has no spec", "check the object with `k8s::get`"));
            };
            if spec.template == template {
                return Ok(false);
            }
            spec.template = template.clone();
            Ok(true)
        })
        .await?;
        Ok((subject, updated))
    })?;
    Ok(finish(call, &subject, &updated, mode))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn deployment(status: &serde_json::Value, generation: i64) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "backend", "uid": "d-1", "generation": generation},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "backend"}},
                "template": {"spec": {"containers": [{"name": "backend", "image": "b:v1"}]}}
            },
            "status": status
        }))
        .unwrap()
    }

    #[test]
    fn complete_only_by_kubectls_rule() {
        let done = json!({"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2,
            "conditions": [{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]});
        assert_eq!(
            rollout_state(&deployment(&done.clone(), 3)),
            Rollout::Complete
        );
        // Right after a change: the old status still says NewReplicaSetAvailable.
        assert!(matches!(
            rollout_state(&deployment(&done, 4)),
            Rollout::Waiting(_)
        ));
        let surge = json!({"observedGeneration": 4, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 2});
        assert_eq!(
            rollout_state(&deployment(&surge, 4)),
            Rollout::Waiting("1 old replicas are pending termination".into())
        );
        let starting = json!({"observedGeneration": 4, "replicas": 2, "updatedReplicas": 1, "availableReplicas": 1});
        assert_eq!(
            rollout_state(&deployment(&starting, 4)),
            Rollout::Waiting("1 of 2 new replicas have been updated".into())
        );
        let unavailable = json!({"observedGeneration": 4, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1});
        assert!(matches!(
            rollout_state(&deployment(&unavailable, 4)),
            Rollout::Waiting(_)
        ));
        let failed = json!({"observedGeneration": 4, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 2,
            "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                "message": "ReplicaSet \"backend-x\" has timed out progressing."}]});
        assert_eq!(
            rollout_state(&deployment(&failed, 4)),
            Rollout::Failed(
                "ProgressDeadlineExceeded: ReplicaSet \"backend-x\" has timed out progressing."
                    .into()
            )
        );
    }

    fn pod(status: &serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "backend-7d9f-abcde"}, "status": status}),
        )
        .unwrap()
    }

    #[test]
    fn pod_problems_name_the_reason_and_restarts() {
        let crashing = pod(&json!({"phase": "Running",
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": "backend", "image": "b:broken", "imageID": "", "ready": false,
                "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}));
        assert_eq!(
            pod_problem(&crashing).unwrap(),
            "CrashLoopBackOff (restarts: 3)"
        );
        let ready =
            pod(&json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}));
        assert_eq!(pod_problem(&ready), None);
        let pending = pod(
            &json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "message": "0/3 nodes are available"}]}),
        );
        assert_eq!(
            pod_problem(&pending).unwrap(),
            "Unschedulable: 0/3 nodes are available"
        );
        let oom = pod(
            &json!({"phase": "Running", "containerStatuses": [{"name": "b", "image": "", "imageID": "",
            "ready": false, "restartCount": 1, "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}),
        );
        assert_eq!(
            pod_problem(&oom).unwrap(),
            "OOMKilled (exit code 137, restarts: 1)"
        );
        assert_eq!(
            pod_problem(&pod(&json!({}))).unwrap(),
            "not ready (phase Pending)"
        );
    }

    fn replicaset(name: &str, revision: &str, image: &str, owner: &str) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": {REVISION: revision},
                "creationTimestamp": "2026-11-22T01:00:00Z",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "backend", "uid": owner}]},
            "spec": {"selector": {"matchLabels": {"app": "backend"}},
                "template": {"metadata": {"labels": {"app": "backend", TEMPLATE_HASH: name}},
                    "spec": {"containers": [{"name": "backend", "image": image}]}}}
        }))
        .unwrap()
    }

    #[test]
    fn history_is_ordered_by_revision_number_and_owned_only() {
        let d = deployment(&json!({}), 1);
        let sets = vec![
            replicaset("backend-c", "10", "b:v10", "d-1"),
            replicaset("backend-a", "2", "b:v2", "d-1"),
            replicaset("backend-b", "9", "b:v9", "d-1"),
            replicaset("other-x", "1", "o:v1", "d-2"),
        ];
        let history = history_of(&d, &sets, None);
        let numbers: Vec<i64> = history.iter().map(|r| r.number).collect();
        assert_eq!(numbers, [2, 9, 10]);
        assert_eq!(history[0].image, "b:v2");
        assert_eq!(history[2].replicaset, "backend-c");
        assert_eq!(history[0].created, "2026-11-22T01:00:00Z");
    }

    #[test]
    fn undo_picks_the_previous_or_the_given_revision() {
        let d = deployment(&json!({}), 1);
        let sets = vec![
            replicaset("backend-a", "1", "b:v1", "d-1"),
            replicaset("backend-b", "2", "b:v2", "d-1"),
            replicaset("backend-c", "3", "b:v3", "d-1"),
        ];
        let history = history_of(&d, &sets, None);
        assert_eq!(choose(&history, 3, None).unwrap().unwrap().number, 2);
        assert_eq!(choose(&history, 3, Some(1)).unwrap().unwrap().image, "b:v1");
        assert!(choose(&history, 3, Some(3)).unwrap().is_none());
        let missing = choose(&history, 3, Some(7)).unwrap_err();
        assert_eq!(missing, "has no revision 7 (revisions: 1, 2, 3)");
        let only = history_of(&d, &sets[..1], None);
        let error = choose(&only, 1, None).unwrap_err();
        assert!(error.contains("no earlier revision"), "{error}");
        let template = template_for_deployment(history[0].template.as_ref().unwrap());
        let labels = template.metadata.unwrap().labels.unwrap();
        assert!(!labels.contains_key(TEMPLATE_HASH));
        assert_eq!(labels["app"], "backend");
    }
}
