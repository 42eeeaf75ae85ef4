//! Kind names as people write them (`deployment`, `deploy`, `deployments`,
//! `Deployment`) → the API resource to call.

use k8s_openapi::api::{apps, batch, coordination, core, networking};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::Scope;

use super::client::Kube;
use crate::host::StdlibError;

/// A resolved kind.
#[derive(Debug, Clone)]
pub(crate) struct Kind {
    /// Singular, lower-case: what messages say (`deployment`).
    pub(crate) name: String,
    pub(crate) resource: ApiResource,
    pub(crate) namespaced: bool,
}

impl Kind {
    fn of<K: kube::Resource<DynamicType = ()>>(namespaced: bool) -> Kind {
        let resource = ApiResource::erase::<K>(&());
        Kind {
            name: resource.kind.to_ascii_lowercase(),
            resource,
            namespaced,
        }
    }

    pub(crate) fn is_secret(&self) -> bool {
        self.resource.group.is_empty() && self.resource.kind == "Secret"
    }
}

/// The kinds known without asking the server, with their short names.
fn table() -> Vec<(&'static [&'static str], Kind)> {
    vec![
        (
            &["deployment", "deployments", "deploy"],
            Kind::of::<apps::v1::Deployment>(true),
        ),
        (
            &["replicaset", "replicasets", "rs"],
            Kind::of::<apps::v1::ReplicaSet>(true),
        ),
        (
            &["statefulset", "statefulsets", "sts"],
            Kind::of::<apps::v1::StatefulSet>(true),
        ),
        (
            &["daemonset", "daemonsets", "ds"],
            Kind::of::<apps::v1::DaemonSet>(true),
        ),
        (&["pod", "pods", "po"], Kind::of::<core::v1::Pod>(true)),
        (&["secret", "secrets"], Kind::of::<core::v1::Secret>(true)),
        (
            &["configmap", "configmaps", "cm"],
            Kind::of::<core::v1::ConfigMap>(true),
        ),
        (
            &["service", "services", "svc"],
            Kind::of::<core::v1::Service>(true),
        ),
        (
            &["serviceaccount", "serviceaccounts", "sa"],
            Kind::of::<core::v1::ServiceAccount>(true),
        ),
        (
            &["persistentvolumeclaim", "persistentvolumeclaims", "pvc"],
            Kind::of::<core::v1::PersistentVolumeClaim>(true),
        ),
        (
            &["event", "events", "ev"],
            Kind::of::<core::v1::Event>(true),
        ),
        (&["job", "jobs"], Kind::of::<batch::v1::Job>(true)),
        (
            &["cronjob", "cronjobs", "cj"],
            Kind::of::<batch::v1::CronJob>(true),
        ),
        (
            &["lease", "leases"],
            Kind::of::<coordination::v1::Lease>(true),
        ),
        (
            &["ingress", "ingresses", "ing"],
            Kind::of::<networking::v1::Ingress>(true),
        ),
        (
            &["namespace", "namespaces", "ns"],
            Kind::of::<core::v1::Namespace>(false),
        ),
        (&["node", "nodes", "no"], Kind::of::<core::v1::Node>(false)),
    ]
}

/// The kind names `resolve` accepts, for error messages.
pub(crate) fn known_names() -> Vec<&'static str> {
    table().iter().map(|(names, _)| names[0]).collect()
}

/// A kind name: singular, plural or short name, any case (`Deployment`,
/// `deploy`), optionally with its group (`deployment.apps`).
pub(crate) fn resolve(name: &str) -> Result<Kind, StdlibError> {
    let wanted = name.trim().to_ascii_lowercase();
    let (bare, group) = match wanted.split_once('.') {
        Some((bare, group)) => (bare.to_owned(), Some(group.to_owned())),
        None => (wanted.clone(), None),
    };
    table()
        .into_iter()
        .find(|(names, kind)| {
            names.contains(&bare.as_str())
                && group
                    .as_deref()
                    .is_none_or(|group| group == kind.resource.group)
        })
        .map(|(_, kind)| kind)
        .ok_or_else(|| {
            StdlibError::failed(
                format!("unknown kind `{name}`"),
                format!("known kinds: {}", known_names().join(", ")),
            )
        })
}

/// The kind of a manifest (`apiVersion` + `kind`): from the table when it is
/// known there, else asked of the server (custom resources).
pub(crate) async fn of_manifest(
    kube: &Kube,
    api_version: &str,
    kind: &str,
) -> Result<Kind, StdlibError> {
    let (group, version) = match api_version.split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", api_version),
    };
    if let Some((_, known)) = table().into_iter().find(|(_, known)| {
        known.resource.kind == kind
            && known.resource.group == group
            && known.resource.version == version
    }) {
        return Ok(known);
    }
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (resource, capabilities) = kube::discovery::pinned_kind(&kube.client, &gvk)
        .await
        .map_err(|error| {
            StdlibError::failed(
                format!(
                    "the cluster does not know kind `{kind}` of `{api_version}`: {}",
                    super::error::brief(&error)
                ),
                "check `apiVersion` and `kind` of the manifest (`kubectl api-resources` lists what the cluster serves)",
            )
        })?;
    Ok(Kind {
        name: resource.kind.to_ascii_lowercase(),
        resource,
        namespaced: capabilities.scope == Scope::Namespaced,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_short_names_and_plurals_resolve() {
        for name in [
            "deployment",
            "deployments",
            "deploy",
            "Deployment",
            "deployment.apps",
        ] {
            let kind = resolve(name).unwrap();
            assert_eq!(kind.name, "deployment", "{name}");
            assert_eq!(kind.resource.plural, "deployments");
            assert_eq!(kind.resource.api_version, "apps/v1");
            assert!(kind.namespaced);
        }
        assert_eq!(resolve("po").unwrap().resource.kind, "Pod");
        assert_eq!(resolve("cm").unwrap().resource.plural, "configmaps");
        assert_eq!(resolve("svc").unwrap().resource.api_version, "v1");
        assert_eq!(resolve("rs").unwrap().resource.kind, "ReplicaSet");
        assert_eq!(resolve("job").unwrap().resource.api_version, "batch/v1");
        let lease = resolve("lease").unwrap();
        assert_eq!(lease.resource.api_version, "coordination.k8s.io/v1");
        assert_eq!(lease.resource.plural, "leases");
        let namespace = resolve("ns").unwrap();
        assert_eq!(namespace.name, "namespace");
        assert!(!namespace.namespaced);
        assert!(resolve("secret").unwrap().is_secret());
        assert!(!resolve("configmap").unwrap().is_secret());
    }

    #[test]
    fn unknown_kinds_list_the_known_ones() {
        let error = resolve("deplyoment").unwrap_err();
        assert_eq!(error.to_string(), "unknown kind `deplyoment`");
        assert!(error.hint().unwrap().contains("deployment, replicaset"));
        assert!(resolve("deployment.batch").is_err());
    }
}
