//! Deployments: `k8s::image`, `k8s::set_image`, `k8s::scale`, `k8s::restart`.
//! Writes read the Deployment, change it and write it back with its
//! `resourceVersion` (retried on 409), so nothing else in it is touched.

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use rhai::Dynamic;

use super::Mode;
use super::client::{Kube, connect};
use super::error::{Subject, api};
use super::objects::{to_script, to_value};
use super::update::{Updated, update};
use super::{diff, settings};
use crate::function::{Call, Failure, Options};
use crate::host::{Level, StdlibError};

pub(crate) const OPTIONS: &[&str] = &["namespace", "container"];
const SCALE_OPTIONS: &[&str] = &["namespace"];

/// The annotation `kubectl rollout restart` sets on the pod template.
pub(crate) const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

pub(crate) fn deployments(kube: &Kube) -> Api<Deployment> {
    Api::namespaced(kube.client.clone(), &kube.namespace)
}

/// The index of the container to look at: the one named, else the first.
pub(crate) fn container_index(
    deployment: &Deployment,
    container: Option<&str>,
) -> Result<usize, String> {
    let containers = deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.template.spec.as_ref())
        .map(|spec| spec.containers.as_slice())
        .unwrap_or_default();
    if containers.is_empty() {
        return Err("has no containers".to_owned());
    }
    match container {
        None => Ok(0),
        Some(wanted) => containers
            .iter()
            .position(|c| c.name == wanted)
            .ok_or_else(|| {
                let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
                format!("has no container `{wanted}` (it has: {})", names.join(", "))
            }),
    }
}

/// The image of the chosen container.
pub(crate) fn image_of(deployment: &Deployment, container: Option<&str>) -> Result<String, String> {
    let index = container_index(deployment, container)?;
    Ok(deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.template.spec.as_ref())
        .and_then(|spec| spec.containers.get(index))
        .and_then(|c| c.image.clone())
        .unwrap_or_default())
}

/// A deploy must name a version: an image with a tag other than `latest`, or
/// a digest.
pub(crate) fn check_image(image: &str) -> Result<(), StdlibError> {
    let image = image.trim();
    if image.is_empty() {
        return Err(StdlibError::failed(
            "refusing to set an empty image",
            "pass an image with a version tag, e.g. `registry.example.com/app:v1.4.2`",
        ));
    }
    // A digest (`app@sha256:...`) pins a version too.
    if image.contains('@') {
        return Ok(());
    }
    // The tag is after the last `:` that follows the last `/` (a registry
    // port such as `registry:5000/app` is not a tag).
    let last_part = image.rsplit('/').next().unwrap_or(image);
    let tag = last_part.split_once(':').map(|(_, tag)| tag);
    match tag {
        None | Some("") => Err(StdlibError::failed(
            format!("refusing to deploy `{image}`: it has no tag, so it names no version"),
            format!(
                "a deploy must name a version: use `{image}:v1.4.2` (a tag) or `{image}@sha256:...` (a digest)"
            ),
        )),
        Some("latest") => Err(StdlibError::failed(
            format!("refusing to deploy `{image}`: `latest` is not a version"),
            "a deploy must name a version, so that it can be repeated and rolled back: use a tag such as `v1.4.2`",
        )),
        Some(_) => Ok(()),
    }
}

/// Where a deployment write ends: the plan detail in a dry run, a note about
/// retried conflicts, the object as a script value.
pub(crate) fn finish(
    call: &Call<'_>,
    subject: &Subject,
    updated: &Updated<Deployment>,
    mode: Mode,
) -> Dynamic {
    let (live, after) = (to_value(&updated.live), to_value(&updated.after));
    if mode.is_preview() {
        call.host.plan_detail(&diff::detail(
            &subject.describe(),
            Some(&live),
            Some(&after),
            false,
        ));
    }
    if updated.conflicts > 0 {
        call.host.log(
            Level::Debug,
            &format!(
                "{}: changed by someone else while being updated; re-read and applied again ({} conflict{})",
                subject.describe(),
                updated.conflicts,
                if updated.conflicts == 1 { "" } else { "s" }
            ),
        );
    }
    to_script(call, after)
}

fn subject(kube: &Kube, name: &str) -> Subject {
    Subject::new("deployment", name, Some(&kube.namespace))
}

/// `k8s::image(deployment, opts?)`.
pub(crate) fn image(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let name = call.string(0)?;
    let options = call.options(1, OPTIONS)?;
    let container = options.string("container")?;
    let settings = settings(call)?;
    let namespace = options.string("namespace")?;
    let image = call.block_on(async {
        let kube = connect(&settings, namespace).await?;
        let subject = subject(&kube, &name);
        let deployment = deployments(&kube)
            .get(&name)
            .await
            .map_err(|error| api(&kube, &subject, "read", &error))?;
        image_of(&deployment, container.as_deref()).map_err(|problem| {
            subject.failed(
                &problem,
                "pass `#{container: \"NAME\"}` to pick a container",
            )
        })
    })?;
    Ok(Dynamic::from(image))
}

fn namespace_of(options: &Options) -> Result<Option<String>, StdlibError> {
    options.string("namespace")
}

/// Read the Deployment, let `change` edit it, write it back with its
/// `resourceVersion` (re-read and re-applied on a 409), then [`finish`].
fn modify(
    call: &mut Call<'_>,
    name: &str,
    namespace: Option<String>,
    mode: Mode,
    mut change: impl FnMut(&mut Deployment, &Subject) -> Result<bool, StdlibError>,
) -> Result<Dynamic, Failure> {
    let settings = settings(call)?;
    let (subject, updated) = call.block_on(async {
        let kube = connect(&settings, namespace).await?;
        let subject = subject(&kube, name);
        let updated = update(&kube, &deployments(&kube), &subject, mode, |deployment| {
            change(deployment, &subject)
        })
        .await?;
        Ok((subject, updated))
    })?;
    Ok(finish(call, &subject, &updated, mode))
}

fn no_spec(subject: &Subject) -> StdlibError {
    subject.failed("has no spec", "check the object with `k8s::get`")
}

/// `k8s::set_image(deployment, image, opts?)`.
pub(crate) fn set_image(call: &mut Call<'_>, mode: Mode) -> Result<Dynamic, Failure> {
    let name = call.string(0)?;
    let image = call.string(1)?;
    let options = call.options(2, OPTIONS)?;
    let container = options.string("container")?;
    check_image(&image)?;
    let namespace = namespace_of(&options)?;
    modify(call, &name, namespace, mode, |deployment, subject| {
        let index = container_index(deployment, container.as_deref()).map_err(|problem| {
            subject.failed(
                &problem,
                "pass `#{container: \"NAME\"}` to pick a container",
            )
        })?;
        let Some(slot) = deployment
            .spec
            .as_mut()
            .and_then(|spec| spec.template.spec.as_mut())
            .and_then(|spec| spec.containers.get_mut(index))
        else {
            return Ok(false);
        };
        if slot.image.as_deref() == Some(image.as_str()) {
            return Ok(false);
        }
        slot.image = Some(image.clone());
        Ok(true)
    })
}

/// `k8s::scale(deployment, replicas, opts?)`.
pub(crate) fn scale(call: &mut Call<'_>, mode: Mode) -> Result<Dynamic, Failure> {
    let name = call.string(0)?;
    let replicas = call.int(1)?;
    let replicas = i32::try_from(replicas)
        .ok()
        .filter(|count| *count >= 0)
        .ok_or_else(|| call.bad_arg(1, format!("must be 0 or more, got {replicas}")))?;
    let options = call.options(2, SCALE_OPTIONS)?;
    let namespace = namespace_of(&options)?;
    modify(call, &name, namespace, mode, |deployment, subject| {
        let spec = deployment.spec.as_mut().ok_or_else(|| no_spec(subject))?;
        if spec.replicas == Some(replicas) {
            return Ok(false);
        }
        spec.replicas = Some(replicas);
        Ok(true)
    })
}

/// `k8s::restart(deployment, opts?)`: like `kubectl rollout restart`.
pub(crate) fn restart(call: &mut Call<'_>, mode: Mode) -> Result<Dynamic, Failure> {
    let name = call.string(0)?;
    let options = call.options(1, SCALE_OPTIONS)?;
    let namespace = namespace_of(&options)?;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    modify(call, &name, namespace, mode, |deployment, subject| {
        let spec = deployment.spec.as_mut().ok_or_else(|| no_spec(subject))?;
        spec.template
            .metadata
            .get_or_insert_with(Default::default)
            .annotations
            .get_or_insert_with(Default::default)
            .insert(RESTARTED_AT.to_owned(), now.clone());
        Ok(true)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_required() {
        assert!(check_image("registry.lab/backend:v2").is_ok());
        assert!(check_image("backend:1.4.2").is_ok());
        assert!(check_image("registry:5000/team/backend:v1").is_ok());
        assert!(check_image("backend@sha256:abcd").is_ok());
        let latest = check_image("registry.lab/backend:latest").unwrap_err();
        assert!(
            latest.to_string().contains("`latest` is not a version"),
            "{latest}"
        );
        assert!(latest.hint().unwrap().contains("must name a version"));
        for untagged in ["registry.lab/backend", "registry:5000/backend", "backend:"] {
            let error = check_image(untagged).unwrap_err();
            assert!(
                error.to_string().contains("has no tag"),
                "{untagged}: {error}"
            );
            assert!(error.hint().unwrap().contains("must name a version"));
        }
        assert!(check_image(" ").is_err());
    }

    fn deployment(containers: &[(&str, &str)]) -> Deployment {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "backend"},
            "spec": {
                "selector": {"matchLabels": {"app": "backend"}},
                "template": {"spec": {"containers": containers
                    .iter()
                    .map(|(name, image)| serde_json::json!({"name": name, "image": image}))
                    .collect::<Vec<_>>()}}
            }
        }))
        .unwrap()
    }

    #[test]
    fn containers_are_picked_by_name_or_first() {
        let d = deployment(&[("app", "a:v1"), ("sidecar", "s:v3")]);
        assert_eq!(image_of(&d, None).unwrap(), "a:v1");
        assert_eq!(image_of(&d, Some("sidecar")).unwrap(), "s:v3");
        let error = image_of(&d, Some("nope")).unwrap_err();
        assert_eq!(error, "has no container `nope` (it has: app, sidecar)");
        assert!(image_of(&deployment(&[]), None).is_err());
    }
}
