//! Errors that name the kind, the object and the namespace, show the API
//! server's reason and message, and say what to do about them.

use std::time::Duration;

use kube::core::Status;

use super::client::Kube;
use crate::host::StdlibError;
use crate::text::error_chain as chain;

/// What a call works on: `deployment `backend` in namespace `staging``.
#[derive(Debug, Clone)]
pub(crate) struct Subject {
    /// Singular, lower-case: `deployment`, `secret`, `lease`.
    pub(crate) kind: String,
    pub(crate) name: Option<String>,
    /// `None` for cluster-scoped kinds (namespaces).
    pub(crate) namespace: Option<String>,
}

impl Subject {
    pub(crate) fn new(kind: &str, name: &str, namespace: Option<&str>) -> Subject {
        Subject {
            kind: kind.to_owned(),
            name: Some(name.to_owned()),
            namespace: namespace.map(str::to_owned),
        }
    }

    /// Every object of a kind (a list).
    pub(crate) fn all(kind: &str, namespace: Option<&str>) -> Subject {
        Subject {
            kind: kind.to_owned(),
            name: None,
            namespace: namespace.map(str::to_owned),
        }
    }

    /// `deployment `backend`` or `deployments`.
    pub(crate) fn object(&self) -> String {
        match &self.name {
            Some(name) => format!("{} `{name}`", self.kind),
            None => plural(&self.kind),
        }
    }

    /// ` in namespace `staging``, or nothing for cluster-scoped kinds.
    pub(crate) fn place(&self) -> String {
        self.namespace
            .as_deref()
            .map(|namespace| format!(" in namespace `{namespace}`"))
            .unwrap_or_default()
    }

    /// `deployment `backend` in namespace `staging``.
    pub(crate) fn describe(&self) -> String {
        format!("{}{}", self.object(), self.place())
    }

    /// A failure about this object, with a hint.
    pub(crate) fn failed(&self, problem: &str, hint: impl Into<String>) -> StdlibError {
        StdlibError::failed(format!("{}: {problem}", self.describe()), hint)
    }
}

fn plural(kind: &str) -> String {
    if kind.ends_with('s') {
        format!("{kind}es")
    } else {
        format!("{kind}s")
    }
}

/// The API server's `Status`, if the error is one.
pub(crate) fn status(error: &kube::Error) -> Option<&Status> {
    match error {
        kube::Error::Api(status) => Some(status),
        _ => None,
    }
}

/// A client error on one line: an API `Status` as `NotFound (404): message`,
/// anything else with its causes.
pub(crate) fn brief(error: &kube::Error) -> String {
    match status(error) {
        Some(status) => {
            let reason = if status.reason.is_empty() {
                "HTTP"
            } else {
                status.reason.as_str()
            };
            if status.message.is_empty() {
                format!("{reason} ({})", status.code)
            } else {
                format!("{reason} ({}): {}", status.code, status.message)
            }
        }
        None => chain(error),
    }
}

/// 409 with reason `Conflict`: the object changed since it was read.
pub(crate) fn is_conflict(error: &kube::Error) -> bool {
    status(error).is_some_and(|status| {
        status.code == 409 && (status.reason == "Conflict" || status.reason.is_empty())
    })
}

/// 409 with reason `AlreadyExists`: someone created it first.
pub(crate) fn is_already_exists(error: &kube::Error) -> bool {
    status(error).is_some_and(|status| status.code == 409 && status.reason == "AlreadyExists")
}

/// 404: no such object (or namespace).
pub(crate) fn is_not_found(error: &kube::Error) -> bool {
    status(error).is_some_and(|status| status.code == 404 || status.reason == "NotFound")
}

/// How many times a read-modify-write is retried after a 409 before giving up.
pub(crate) const CONFLICT_ATTEMPTS: u32 = 10;

/// A short, growing, jittered pause between conflict retries.
pub(crate) async fn conflict_pause(attempt: u32) {
    let base = 20u64.saturating_mul(1 << attempt.min(5));
    let jitter = rand::random::<u64>() % base.max(1);
    tokio::time::sleep(Duration::from_millis(base / 2 + jitter)).await;
}

/// The error after [`CONFLICT_ATTEMPTS`] conflicts in a row.
pub(crate) fn too_many_conflicts(subject: &Subject) -> StdlibError {
    subject.failed(
        &format!("changed by someone else {CONFLICT_ATTEMPTS} times while being updated; gave up"),
        "something keeps writing this object (a controller, another run); run the step again",
    )
}

/// Turn a client error into a message naming the object, with a hint.
/// `doing` is a verb phrase: "read", "update", "delete".
pub(crate) fn api(kube: &Kube, subject: &Subject, doing: &str, error: &kube::Error) -> StdlibError {
    describe(&kube.server, &kube.kube_context, subject, doing, error)
}

fn describe(
    server: &str,
    kube_context: &str,
    subject: &Subject,
    doing: &str,
    error: &kube::Error,
) -> StdlibError {
    let Some(status) = status(error) else {
        let chained = chain(error);
        let lower = chained.to_lowercase();
        if lower.contains("timed out") || lower.contains("timeout") || lower.contains("elapsed") {
            return StdlibError::failed(
                format!(
                    "no answer from the Kubernetes API at `{server}` (kube context `{kube_context}`) in time to {doing} {}: {chained}",
                    subject.describe()
                ),
                "is the API server up and answering? `kubectl get --raw=/readyz` tries the same; raise `kube_timeout` in the context (default 30s) if it is only slow",
            );
        }
        return StdlibError::failed(
            format!(
                "cannot {doing} {} at `{}` (kube context `{}`): {}",
                subject.describe(),
                server,
                kube_context,
                chain(error)
            ),
            format!(
                "is the cluster reachable? `kubectl --context {kube_context} get namespaces` tries the same connection"
            ),
        );
    };
    let reason = if status.reason.is_empty() {
        format!("HTTP {}", status.code)
    } else {
        status.reason.clone()
    };
    let message = if status.message.is_empty() {
        String::new()
    } else {
        format!(": {}", status.message)
    };
    if is_not_found(error)
        && status.details.is_none()
        && status
            .message
            .contains("could not find the requested resource")
    {
        return StdlibError::failed(
            format!(
                "cannot {doing} {}: the cluster at `{server}` does not serve {} (NotFound{message})",
                subject.describe(),
                plural(&subject.kind)
            ),
            format!(
                "`kubectl --context {kube_context} api-resources` lists the kinds this cluster serves"
            ),
        );
    }
    if is_not_found(error) {
        let list = match &subject.namespace {
            Some(namespace) => format!(
                "`k8s::list(\"{}\", #{{namespace: \"{namespace}\"}})` lists what is there",
                subject.kind
            ),
            None => format!("`k8s::list(\"{}\")` lists what is there", subject.kind),
        };
        let hint = if subject.namespace.is_some() {
            format!(
                "{list}; check the name and the context's `namespace` (runbook.toml), or pass `#{{namespace: \"...\"}}`"
            )
        } else {
            format!("{list}; check the name")
        };
        return StdlibError::failed(
            format!(
                "{} not found{} (NotFound{message})",
                subject.object(),
                subject.place()
            ),
            hint,
        );
    }
    let hint = match reason.as_str() {
        "Conflict" => "someone else changed it at the same moment; run the step again".to_owned(),
        "AlreadyExists" => "it exists already; `k8s::apply` creates or updates".to_owned(),
        "Invalid" | "BadRequest" => {
            "the server rejected the object; the message says which field".to_owned()
        }
        "Forbidden" => format!(
            "the user of kube context `{kube_context}` may not do this: check its RBAC roles (`kubectl auth can-i`)"
        ),
        "Unauthorized" => format!(
            "the credentials of kube context `{kube_context}` were refused: log in again or check the kubeconfig's user"
        ),
        "MethodNotAllowed" | "NotAcceptable" | "UnsupportedMediaType" => {
            "this cluster does not support that request".to_owned()
        }
        _ => format!(
            "the API server at `{server}` answered {}; `kubectl` with the same kube context shows more",
            status.code
        ),
    };
    StdlibError::failed(
        format!("cannot {doing} {}: {reason}{message}", subject.describe()),
        hint,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_error(code: u16, reason: &str, message: &str) -> kube::Error {
        kube::Error::Api(Box::new(Status {
            status: None,
            code,
            message: message.to_owned(),
            metadata: None,
            reason: reason.to_owned(),
            details: None,
        }))
    }

    #[test]
    fn subjects_read_naturally() {
        let subject = Subject::new("deployment", "backend", Some("staging"));
        assert_eq!(
            subject.describe(),
            "deployment `backend` in namespace `staging`"
        );
        assert_eq!(
            Subject::all("pod", Some("x")).describe(),
            "pods in namespace `x`"
        );
        assert_eq!(Subject::all("ingress", None).describe(), "ingresses");
        assert_eq!(
            Subject::new("namespace", "staging", None).describe(),
            "namespace `staging`"
        );
    }

    #[test]
    fn statuses_are_classified() {
        assert!(is_conflict(&status_error(409, "Conflict", "stale")));
        assert!(!is_conflict(&status_error(409, "AlreadyExists", "x")));
        assert!(is_already_exists(&status_error(409, "AlreadyExists", "x")));
        assert!(is_not_found(&status_error(404, "NotFound", "x")));
        assert!(!is_not_found(&status_error(409, "Conflict", "x")));
    }

    #[test]
    fn not_found_names_kind_name_namespace_and_hints_at_list() {
        let subject = Subject::new("deployment", "x", Some("staging"));
        let error = describe(
            "http://127.0.0.1:1/",
            "lab",
            &subject,
            "read",
            &status_error(404, "NotFound", "deployments.apps \"x\" not found"),
        );
        let text = error.to_string();
        assert!(
            text.starts_with("deployment `x` not found in namespace `staging`"),
            "{text}"
        );
        let hint = error.hint().unwrap();
        assert!(hint.contains("k8s::list(\"deployment\""), "{hint}");
        assert!(hint.contains("namespace"), "{hint}");
    }

    #[test]
    fn a_kind_the_cluster_does_not_serve_is_not_a_missing_object() {
        let subject = Subject::new("statefulset", "db", Some("staging"));
        let error = describe(
            "http://127.0.0.1:1/",
            "lab",
            &subject,
            "read",
            &status_error(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        );
        assert!(
            error
                .to_string()
                .contains("the cluster at `http://127.0.0.1:1/` does not serve statefulsets"),
            "{error}"
        );
        assert!(error.hint().unwrap().contains("api-resources"));
    }

    #[test]
    fn other_statuses_show_reason_and_message() {
        let subject = Subject::new("secret", "s", Some("prod"));
        let error = describe(
            "https://k:6443/",
            "prod",
            &subject,
            "update",
            &status_error(403, "Forbidden", "secrets \"s\" is forbidden"),
        );
        assert_eq!(
            error.to_string(),
            "cannot update secret `s` in namespace `prod`: Forbidden: secrets \"s\" is forbidden"
        );
        assert!(error.hint().unwrap().contains("RBAC"));
    }
}
