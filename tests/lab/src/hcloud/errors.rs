//! The API's error body, `{"error": {"code", "message", "details"}}`, and the
//! one table of HTTP statuses per error code.
//!
//! Hetzner documents the codes but not, for most of them, the status that
//! carries them (ANCHORS-WAVE2.md §1). Both official clients decide on the
//! JSON `code` alone (hcloud-go parses any 4xx/5xx `application/json` body;
//! hcloud-python raises `APIException(code=...)`), and retry only on the
//! codes `conflict`, `rate_limit_exceeded` (plus 502/504), so the statuses
//! below are the observed ones where known (429, 412 for placement, the
//! firewall 404/422) and the usual HTTP meaning otherwise. Change them here.

use serde_json::{Value, json};

/// `(code, HTTP status)`: every error code the fake sends.
pub(crate) const STATUSES: &[(&str, u16)] = &[
    ("invalid_input", 400),
    ("json_error", 400),
    ("unauthorized", 401),
    ("forbidden", 403),
    ("protected", 403),
    ("not_found", 404),
    ("firewall_resource_not_found", 404),
    ("method_not_allowed", 405),
    ("conflict", 409),
    ("uniqueness_error", 409),
    ("resource_unavailable", 412),
    ("placement_error", 412),
    ("resource_in_use", 422),
    ("firewall_already_applied", 422),
    ("firewall_already_removed", 422),
    ("locked", 423),
    ("rate_limit_exceeded", 429),
    ("service_error", 500),
];

/// The status [`STATUSES`] gives `code` (500 for one it does not list).
pub(crate) fn status_of(code: &str) -> u16 {
    STATUSES
        .iter()
        .find(|(known, _)| *known == code)
        .map_or(500, |(_, status)| *status)
}

/// An API error: its code, message and `details` object.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub(crate) code: String,
    pub(crate) message: String,
    pub(crate) details: Value,
}

impl ApiError {
    pub(crate) fn new(code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            code: code.to_owned(),
            message: message.into(),
            details: json!({}),
        }
    }

    /// The HTTP status this error is sent with.
    pub(crate) fn status(&self) -> u16 {
        status_of(&self.code)
    }

    /// The response body.
    pub(crate) fn body(&self) -> Value {
        json!({"error": {"code": self.code, "message": self.message, "details": self.details}})
    }

    pub(crate) fn unauthorized() -> ApiError {
        ApiError::new("unauthorized", "unable to authenticate")
    }

    pub(crate) fn not_found(what: &str) -> ApiError {
        ApiError::new("not_found", format!("{what} not found"))
    }

    pub(crate) fn no_route() -> ApiError {
        ApiError::new("not_found", "not found")
    }

    pub(crate) fn method_not_allowed() -> ApiError {
        ApiError::new("method_not_allowed", "method not allowed")
    }

    pub(crate) fn json_error(why: &str) -> ApiError {
        ApiError::new("json_error", format!("invalid JSON: {why}"))
    }

    /// `invalid_input` naming one field: `details.fields[{name, messages}]`.
    pub(crate) fn invalid(field: &str, message: &str) -> ApiError {
        ApiError::invalid_fields(&[(field, message)])
    }

    /// `invalid_input` naming several fields, each with one message.
    pub(crate) fn invalid_fields(fields: &[(&str, &str)]) -> ApiError {
        let names: Vec<&str> = fields.iter().map(|(name, _)| *name).collect();
        let listed: Vec<Value> = fields
            .iter()
            .map(|(name, message)| json!({"name": name, "messages": [message]}))
            .collect();
        ApiError {
            code: "invalid_input".into(),
            message: format!("invalid input in fields '{}'", names.join("', '")),
            details: json!({"fields": listed}),
        }
    }

    /// `uniqueness_error` naming the field that clashes: `details.fields[{name}]`.
    pub(crate) fn uniqueness(field: &str, message: &str) -> ApiError {
        ApiError {
            code: "uniqueness_error".into(),
            message: message.to_owned(),
            details: json!({"fields": [{"name": field}]}),
        }
    }

    /// A write to a server while one of its actions runs.
    pub(crate) fn locked() -> ApiError {
        ApiError::new(
            "locked",
            "server is locked, there is already an action running",
        )
    }

    pub(crate) fn rate_limited() -> ApiError {
        ApiError::new(
            "rate_limit_exceeded",
            "limit of 3600 requests per hour reached",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_is_an_error_status_and_codes_are_listed_once() {
        for (index, (code, status)) in STATUSES.iter().enumerate() {
            assert!((400..600).contains(status), "{code}");
            assert!(
                STATUSES[index + 1..].iter().all(|(other, _)| other != code),
                "{code} twice"
            );
        }
        assert_eq!(status_of("rate_limit_exceeded"), 429);
        assert_eq!(status_of("no_such_code"), 500);
    }

    #[test]
    fn invalid_input_names_fields_with_messages() {
        let body = ApiError::invalid("name", "is not a valid hostname").body();
        assert_eq!(body["error"]["code"], "invalid_input");
        assert_eq!(
            body["error"]["details"]["fields"],
            json!([{"name": "name", "messages": ["is not a valid hostname"]}])
        );
    }

    #[test]
    fn uniqueness_names_the_field() {
        let body = ApiError::uniqueness(
            "public_key",
            "SSH key with the same fingerprint already exists",
        )
        .body();
        assert_eq!(
            body["error"]["details"]["fields"],
            json!([{"name": "public_key"}])
        );
        assert_eq!(ApiError::uniqueness("name", "x").status(), 409);
    }
}
