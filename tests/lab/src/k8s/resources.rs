//! The resource types the fake serves, in one table: discovery, routing,
//! error messages and the store all read it, so a resource is added in one
//! place.

/// One served resource type (a `plural` in a group-version).
#[derive(Debug)]
pub(crate) struct Resource {
    /// API group; `""` is the core group (served under `/api/v1`).
    pub(crate) group: &'static str,
    pub(crate) version: &'static str,
    pub(crate) plural: &'static str,
    pub(crate) singular: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) namespaced: bool,
    pub(crate) short_names: &'static [&'static str],
    /// Subresources: `status`, `scale` or `log`.
    pub(crate) subresources: &'static [&'static str],
    /// `all` makes `kubectl get all` include the type.
    pub(crate) categories: &'static [&'static str],
    /// Whether writes to `spec` bump `metadata.generation` (workloads only,
    /// as the real API does for the types with a status subresource).
    pub(crate) generation: bool,
}

/// The verbs every served type accepts (kubectl reads them from discovery).
pub(crate) const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

const fn resource(
    group: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
) -> Resource {
    Resource {
        group,
        version: "v1",
        plural,
        singular,
        kind,
        namespaced: true,
        short_names: &[],
        subresources: &[],
        categories: &[],
        generation: false,
    }
}

/// Every type the fake serves.
pub(crate) static RESOURCES: &[Resource] = &[
    Resource {
        namespaced: false,
        short_names: &["ns"],
        subresources: &["status"],
        ..resource("", "namespaces", "namespace", "Namespace")
    },
    Resource {
        short_names: &["po"],
        subresources: &["status", "log"],
        categories: &["all"],
        ..resource("", "pods", "pod", "Pod")
    },
    resource("", "secrets", "secret", "Secret"),
    Resource {
        short_names: &["cm"],
        ..resource("", "configmaps", "configmap", "ConfigMap")
    },
    Resource {
        short_names: &["svc"],
        subresources: &["status"],
        categories: &["all"],
        ..resource("", "services", "service", "Service")
    },
    Resource {
        short_names: &["ev"],
        ..resource("", "events", "event", "Event")
    },
    Resource {
        short_names: &["deploy"],
        subresources: &["status", "scale"],
        categories: &["all"],
        generation: true,
        ..resource("apps", "deployments", "deployment", "Deployment")
    },
    Resource {
        short_names: &["rs"],
        subresources: &["status", "scale"],
        categories: &["all"],
        generation: true,
        ..resource("apps", "replicasets", "replicaset", "ReplicaSet")
    },
    Resource {
        short_names: &["sts"],
        subresources: &["status", "scale"],
        generation: true,
        ..resource("apps", "statefulsets", "statefulset", "StatefulSet")
    },
    Resource {
        subresources: &["status"],
        categories: &["all"],
        generation: true,
        ..resource("batch", "jobs", "job", "Job")
    },
    // Stored and validated only: no controller starts its Jobs.
    Resource {
        short_names: &["cj"],
        subresources: &["status"],
        generation: true,
        ..resource("batch", "cronjobs", "cronjob", "CronJob")
    },
    resource("coordination.k8s.io", "leases", "lease", "Lease"),
];

/// The groups besides core, in the order `/apis` lists them.
pub(crate) const GROUPS: &[&str] = &["apps", "batch", "coordination.k8s.io"];

impl Resource {
    /// `apps/v1`, or `v1` for the core group.
    pub(crate) fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps` (or `pods`): how the real API names a type in
    /// error messages, and the store's key for it.
    pub(crate) fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `Deployment.apps` (or `Pod`): how `Invalid` errors name a type.
    pub(crate) fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_owned()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// The path prefix of the group-version: `/apis/apps/v1` or `/api/v1`.
    pub(crate) fn group_version_path(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    /// Whether the type has the subresource `name`.
    pub(crate) fn has_subresource(&self, name: &str) -> bool {
        self.subresources.contains(&name)
    }
}

/// The type served at `group`/`version`/`plural`.
pub(crate) fn by_path(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The type of an object with this `apiVersion` and `kind`.
pub(crate) fn by_kind(api_version: &str, kind: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.api_version() == api_version && r.kind == kind)
}

/// The type a person means by `name`: a plural, singular, kind or short name
/// (any case), optionally followed by `.group` (`deployments.apps`, `deploy`,
/// `Deployment`, `rs`).
pub(crate) fn find(name: &str) -> Option<&'static Resource> {
    let name = name.to_ascii_lowercase();
    let (word, group) = match name.split_once('.') {
        Some((word, group)) => (word.to_owned(), Some(group.to_owned())),
        None => (name, None),
    };
    RESOURCES.iter().find(|r| {
        let named = r.plural == word
            || r.singular == word
            || r.kind.to_ascii_lowercase() == word
            || r.short_names.contains(&word.as_str());
        named && group.as_deref().is_none_or(|group| group == r.group)
    })
}

/// The namespaces type (deleting one deletes what is in it).
pub(crate) fn namespaces() -> &'static Resource {
    &RESOURCES[0]
}

/// A type by its kind in the fake's own code, where the kind is known to be served.
pub(crate) fn kind(kind: &str) -> &'static Resource {
    RESOURCES
        .iter()
        .find(|r| r.kind == kind)
        .unwrap_or(&RESOURCES[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_people_use_find_the_type() {
        for name in [
            "deploy",
            "deployments",
            "Deployment",
            "deployment",
            "deployments.apps",
        ] {
            assert_eq!(find(name).map(|r| r.kind), Some("Deployment"), "{name}");
        }
        assert_eq!(find("po").map(|r| r.kind), Some("Pod"));
        assert_eq!(find("rs").map(|r| r.kind), Some("ReplicaSet"));
        assert_eq!(find("leases").map(|r| r.group), Some("coordination.k8s.io"));
        assert!(find("deployments.batch").is_none());
        assert!(find("nodes").is_none());
    }

    #[test]
    fn names_are_qualified_like_the_real_api() {
        let deployments = find("deploy").unwrap();
        assert_eq!(deployments.qualified(), "deployments.apps");
        assert_eq!(deployments.qualified_kind(), "Deployment.apps");
        assert_eq!(deployments.api_version(), "apps/v1");
        assert_eq!(deployments.group_version_path(), "/apis/apps/v1");
        let pods = find("pods").unwrap();
        assert_eq!(pods.qualified(), "pods");
        assert_eq!(pods.api_version(), "v1");
        assert_eq!(kind("Job").plural, "jobs");
    }
}
