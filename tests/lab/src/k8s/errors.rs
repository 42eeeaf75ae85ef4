//! API errors as the real API server sends them: a `Status` object with
//! `reason` and `code`, and messages worded like the real ones, because
//! kubectl prints the message verbatim and clients branch on the reason.

use serde_json::{Value, json};

use super::resources::Resource;

/// One field error inside an `Invalid` answer (`details.causes[]`).
#[derive(Debug, Clone)]
pub(crate) struct Cause {
    /// `FieldValueRequired`, `FieldValueInvalid`, `FieldValueNotSupported`, ...
    pub(crate) reason: &'static str,
    /// The field's path, `spec.template.spec.containers`.
    pub(crate) field: String,
    /// What is wrong, `Required value`.
    pub(crate) message: String,
}

impl Cause {
    pub(crate) fn required(field: &str) -> Cause {
        Cause {
            reason: "FieldValueRequired",
            field: field.to_owned(),
            message: "Required value".to_owned(),
        }
    }

    /// `Invalid value: "VALUE": DETAIL`
    pub(crate) fn invalid(field: &str, value: &Value, detail: &str) -> Cause {
        Cause {
            reason: "FieldValueInvalid",
            field: field.to_owned(),
            message: format!("Invalid value: {value}: {detail}"),
        }
    }

    /// `Unsupported value: "VALUE": supported values: "a", "b"`
    pub(crate) fn unsupported(field: &str, value: &Value, supported: &[&str]) -> Cause {
        let supported: Vec<String> = supported.iter().map(|s| format!("\"{s}\"")).collect();
        Cause {
            reason: "FieldValueNotSupported",
            field: field.to_owned(),
            message: format!(
                "Unsupported value: {value}: supported values: {}",
                supported.join(", ")
            ),
        }
    }
}

/// A failed request, rendered by [`ApiError::status`].
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub(crate) code: u16,
    pub(crate) reason: &'static str,
    pub(crate) message: String,
    pub(crate) details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: String) -> ApiError {
        ApiError {
            code,
            reason,
            message,
            details: None,
        }
    }

    fn with_details(mut self, resource: &Resource, name: &str) -> ApiError {
        let mut details = json!({ "name": name, "kind": resource.plural });
        if !resource.group.is_empty() {
            details["group"] = json!(resource.group);
        }
        self.details = Some(details);
        self
    }

    /// 404 `deployments.apps "x" not found`.
    pub(crate) fn not_found(resource: &Resource, name: &str) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", resource.qualified()),
        )
        .with_details(resource, name)
    }

    /// 409 `deployments.apps "x" already exists`.
    pub(crate) fn already_exists(resource: &Resource, name: &str) -> ApiError {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", resource.qualified()),
        )
        .with_details(resource, name)
    }

    /// 409 for a stale `resourceVersion` (or a failed precondition).
    pub(crate) fn conflict(resource: &Resource, name: &str) -> ApiError {
        ApiError::conflict_because(
            resource,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 409 `Operation cannot be fulfilled on KIND "x": WHY`.
    pub(crate) fn conflict_because(resource: &Resource, name: &str, why: &str) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                resource.qualified()
            ),
        )
        .with_details(resource, name)
    }

    /// 422 `Deployment.apps "x" is invalid: FIELD: MESSAGE`.
    pub(crate) fn invalid(resource: &Resource, name: &str, causes: &[Cause]) -> ApiError {
        let each: Vec<String> = causes
            .iter()
            .map(|cause| format!("{}: {}", cause.field, cause.message))
            .collect();
        let summary = match each.as_slice() {
            [one] => one.clone(),
            _ => format!("[{}]", each.join(", ")),
        };
        let mut details = json!({
            "name": name,
            "kind": resource.kind,
            "causes": causes.iter().map(|cause| json!({
                "reason": cause.reason,
                "message": cause.message,
                "field": cause.field,
            })).collect::<Vec<_>>(),
        });
        if !resource.group.is_empty() {
            details["group"] = json!(resource.group);
        }
        ApiError {
            code: 422,
            reason: "Invalid",
            message: format!(
                "{} \"{name}\" is invalid: {summary}",
                resource.qualified_kind()
            ),
            details: Some(details),
        }
    }

    /// 400 with `reason: BadRequest`.
    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message.into())
    }

    /// 404 for a path the server does not serve.
    pub(crate) fn no_route() -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource".to_owned(),
        )
    }

    /// 405 for a verb a path does not take.
    pub(crate) fn method_not_allowed(method: &str) -> ApiError {
        ApiError::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({method})"),
        )
    }

    /// 415 for a body the server cannot read (protobuf, CBOR, unknown patch types).
    pub(crate) fn unsupported_media_type(content_type: &str) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {content_type:?})"
            ),
        )
    }

    /// 410: a watch from a `resourceVersion` the server no longer keeps events for.
    pub(crate) fn expired(asked: u64, oldest: u64) -> ApiError {
        ApiError::new(
            410,
            "Expired",
            format!("too old resource version: {asked} ({oldest})"),
        )
    }

    /// 401 for a request without the kubeconfig's bearer token.
    pub(crate) fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized".to_owned())
    }

    /// 500, for the few requests the real server also refuses that way.
    pub(crate) fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "InternalError", message.into())
    }

    /// The `Status` body.
    pub(crate) fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

/// The `Status` a successful DELETE answers with.
pub(crate) fn deleted(resource: &Resource, name: &str, uid: &Value) -> Value {
    let mut details = json!({ "name": name, "kind": resource.plural, "uid": uid });
    if !resource.group.is_empty() {
        details["group"] = json!(resource.group);
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::resources::find;

    #[test]
    fn statuses_read_like_the_real_api() {
        let deployments = find("deploy").unwrap();
        let status = ApiError::not_found(deployments, "web").status();
        assert_eq!(
            status,
            json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "deployments.apps \"web\" not found", "reason": "NotFound",
                "details": { "name": "web", "group": "apps", "kind": "deployments" },
                "code": 404,
            })
        );
        let conflict = ApiError::conflict(find("secrets").unwrap(), "s").status();
        assert_eq!(conflict["code"], 409);
        assert_eq!(
            conflict["message"],
            "Operation cannot be fulfilled on secrets \"s\": the object has been modified; please apply your changes to the latest version and try again"
        );
        assert!(conflict["details"].get("group").is_none());
    }

    #[test]
    fn invalid_lists_its_causes() {
        let deployments = find("deploy").unwrap();
        let one = ApiError::invalid(
            deployments,
            "web",
            &[Cause::required("spec.template.spec.containers")],
        );
        assert_eq!(
            one.message,
            "Deployment.apps \"web\" is invalid: spec.template.spec.containers: Required value"
        );
        let two = ApiError::invalid(
            deployments,
            "web",
            &[
                Cause::required("a"),
                Cause::invalid("b", &json!("x"), "bad"),
            ],
        );
        assert_eq!(
            two.message,
            "Deployment.apps \"web\" is invalid: [a: Required value, b: Invalid value: \"x\": bad]"
        );
        let status = two.status();
        assert_eq!(status["details"]["kind"], "Deployment");
        assert_eq!(status["details"]["causes"][1]["field"], "b");
        assert_eq!(status["code"], 422);
    }
}
