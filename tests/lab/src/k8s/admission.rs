//! Admission: what the API server does to an object before storing it —
//! decoding checks (a body whose structure the real API could not decode is
//! a 400), defaults (the subset clients look at: pod template defaults,
//! rollout strategy, Secret `stringData` folded into `data`...) and
//! validation (422 Invalid with the real messages: DNS names, selectors
//! matching template labels, containers, immutable selectors).

use base64::Engine as _;
use serde_json::{Value, json};

use super::errors::{ApiError, Cause};
use super::resources::Resource;
use super::selector::LabelSelector;

fn text<'a>(object: &'a Value, pointer: &str) -> Option<&'a str> {
    object.pointer(pointer).and_then(Value::as_str)
}

/// Defaults, then validation, of a new or changed object (`old` for updates).
pub(crate) fn admit(
    resource: &Resource,
    old: Option<&Value>,
    object: &mut Value,
) -> Result<(), ApiError> {
    check_shape(resource, object)?;
    default(resource, object)?;
    let name = text(object, "/metadata/name")
        .unwrap_or_default()
        .to_owned();
    let causes = validate(resource, old, object);
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(resource, &name, &causes))
    }
}

/// Fields that, when present, must be objects: defaulting, validation and
/// the controller write into them, and the real API would not have decoded
/// anything else into its types.
const OBJECT_FIELDS: &[&str] = &[
    "/metadata",
    "/metadata/labels",
    "/metadata/annotations",
    "/spec",
    "/spec/selector",
    "/spec/selector/matchLabels",
    "/spec/template",
    "/spec/template/metadata",
    "/spec/template/metadata/labels",
    "/spec/template/metadata/annotations",
    "/spec/template/spec",
    "/status",
    "/data",
    "/stringData",
];

/// Fields that, when present, must be lists.
const LIST_FIELDS: &[&str] = &[
    "/metadata/ownerReferences",
    "/metadata/finalizers",
    "/metadata/managedFields",
    "/spec/containers",
    "/spec/template/spec/containers",
    "/spec/ports",
];

/// A body whose structure the real API could not decode is a 400, as it
/// would be there (`cannot be handled as a Deployment`).
fn check_shape(resource: &Resource, object: &Value) -> Result<(), ApiError> {
    let fail = |pointer: &str, expected: &str| {
        let field = pointer.trim_start_matches('/').replace('/', ".");
        Err(ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: {field} must be {expected}",
            kind = resource.kind,
            version = resource.version,
        )))
    };
    for pointer in OBJECT_FIELDS {
        if let Some(value) = object.pointer(pointer)
            && !value.is_object()
            && !value.is_null()
        {
            return fail(pointer, "an object");
        }
    }
    for pointer in LIST_FIELDS {
        if let Some(value) = object.pointer(pointer)
            && !value.is_array()
            && !value.is_null()
        {
            return fail(pointer, "a list");
        }
    }
    Ok(())
}

fn set_default(object: &mut Value, key: &str, value: Value) {
    if let Some(map) = object.as_object_mut()
        && map.get(key).is_none_or(Value::is_null)
    {
        map.insert(key.to_owned(), value);
    }
}

/// The defaults the real API fills in (the subset clients look at).
fn default(resource: &Resource, object: &mut Value) -> Result<(), ApiError> {
    match resource.kind {
        "Namespace" => {
            let name = object["metadata"]["name"].clone();
            if !object["metadata"]["labels"].is_object() {
                object["metadata"]["labels"] = json!({});
            }
            object["metadata"]["labels"]["kubernetes.io/metadata.name"] = name;
            set_default(object, "spec", json!({ "finalizers": ["kubernetes"] }));
            set_default(object, "status", json!({}));
            set_default(&mut object["status"], "phase", json!("Active"));
        }
        "Secret" => {
            set_default(object, "type", json!("Opaque"));
            fold_string_data(object)?;
        }
        "Deployment" | "ReplicaSet" => {
            set_default(object, "spec", json!({}));
            let spec = &mut object["spec"];
            set_default(spec, "replicas", json!(1));
            if resource.kind == "Deployment" {
                set_default(spec, "revisionHistoryLimit", json!(10));
                set_default(spec, "progressDeadlineSeconds", json!(600));
                set_default(
                    spec,
                    "strategy",
                    json!({ "type": "RollingUpdate", "rollingUpdate": { "maxSurge": "25%", "maxUnavailable": "25%" } }),
                );
            }
            default_pod_spec(&mut spec["template"]["spec"], "Always");
        }
        "Job" => {
            set_default(object, "spec", json!({}));
            let uid = object["metadata"]["uid"].clone();
            let name = object["metadata"]["name"].clone();
            let spec = &mut object["spec"];
            for (key, value) in [
                ("parallelism", json!(1)),
                ("completions", json!(1)),
                ("backoffLimit", json!(6)),
                ("completionMode", json!("NonIndexed")),
                ("suspend", json!(false)),
            ] {
                set_default(spec, key, value);
            }
            if spec.get("selector").is_none() && uid.is_string() {
                spec["selector"] =
                    json!({ "matchLabels": { "batch.kubernetes.io/controller-uid": uid } });
                let labels = &mut spec["template"]["metadata"]["labels"];
                if !labels.is_object() {
                    *labels = json!({});
                }
                labels["batch.kubernetes.io/controller-uid"] = uid.clone();
                labels["controller-uid"] = uid;
                labels["batch.kubernetes.io/job-name"] = name.clone();
                labels["job-name"] = name;
            }
            default_pod_spec(&mut spec["template"]["spec"], "Never");
        }
        "CronJob" => {
            set_default(object, "spec", json!({}));
            let spec = &mut object["spec"];
            for (key, value) in [
                ("concurrencyPolicy", json!("Allow")),
                ("suspend", json!(false)),
                ("successfulJobsHistoryLimit", json!(3)),
                ("failedJobsHistoryLimit", json!(1)),
            ] {
                set_default(spec, key, value);
            }
            set_default(spec, "jobTemplate", json!({}));
            set_default(&mut spec["jobTemplate"], "spec", json!({}));
            let job = &mut spec["jobTemplate"]["spec"];
            for (key, value) in [
                ("parallelism", json!(1)),
                ("completions", json!(1)),
                ("backoffLimit", json!(6)),
                ("completionMode", json!("NonIndexed")),
                ("suspend", json!(false)),
            ] {
                set_default(job, key, value);
            }
            if job["template"]["spec"].is_object() {
                default_pod_spec(&mut job["template"]["spec"], "Always");
            }
        }
        "Pod" => {
            set_default(object, "spec", json!({}));
            default_pod_spec(&mut object["spec"], "Always");
            set_default(object, "status", json!({}));
            set_default(&mut object["status"], "phase", json!("Pending"));
            set_default(&mut object["status"], "qosClass", json!("BestEffort"));
        }
        "Service" => {
            set_default(object, "spec", json!({}));
            let spec = &mut object["spec"];
            set_default(spec, "type", json!("ClusterIP"));
            set_default(spec, "sessionAffinity", json!("None"));
            if spec.get("clusterIP").is_none() {
                let ip = format!(
                    "10.96.{}.{}",
                    rand::random_range(0..=255_u8),
                    rand::random_range(1..=254_u8)
                );
                spec["clusterIP"] = json!(ip);
                spec["clusterIPs"] = json!([ip]);
            }
            if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                for port in ports {
                    set_default(port, "protocol", json!("TCP"));
                    let number = port.get("port").cloned().unwrap_or(Value::Null);
                    set_default(port, "targetPort", number);
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// A pod spec's defaults (also inside templates). `restart` is the default
/// restartPolicy (`Always`; a Job's pods must say `Never` or `OnFailure`).
fn default_pod_spec(spec: &mut Value, restart: &str) {
    if !spec.is_object() {
        return;
    }
    for (key, value) in [
        ("restartPolicy", json!(restart)),
        ("dnsPolicy", json!("ClusterFirst")),
        ("schedulerName", json!("default-scheduler")),
        ("securityContext", json!({})),
        ("terminationGracePeriodSeconds", json!(30)),
    ] {
        set_default(spec, key, value);
    }
    for list in ["initContainers", "containers"] {
        if let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for container in containers {
                let image = container
                    .get("image")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let latest = image
                    .rsplit('/')
                    .next()
                    .is_none_or(|last| !last.contains(':') || last.ends_with(":latest"))
                    && !image.contains('@');
                let policy = if latest { "Always" } else { "IfNotPresent" };
                for (key, value) in [
                    ("imagePullPolicy", json!(policy)),
                    ("terminationMessagePath", json!("/dev/termination-log")),
                    ("terminationMessagePolicy", json!("File")),
                    ("resources", json!({})),
                ] {
                    set_default(container, key, value);
                }
                if let Some(ports) = container.get_mut("ports").and_then(Value::as_array_mut) {
                    for port in ports {
                        set_default(port, "protocol", json!("TCP"));
                    }
                }
            }
        }
    }
}

/// A Secret's `stringData` is written into `data` (base64) and dropped, as
/// the real API does; `data` values must be base64.
fn fold_string_data(secret: &mut Value) -> Result<(), ApiError> {
    let name = text(secret, "/metadata/name")
        .unwrap_or_default()
        .to_owned();
    let Some(map) = secret.as_object_mut() else {
        return Ok(());
    };
    let string_data = map.remove("stringData");
    if let Some(data) = map.get("data").and_then(Value::as_object) {
        for (key, value) in data {
            let valid = value.as_str().is_some_and(|value| {
                base64::engine::general_purpose::STANDARD
                    .decode(value)
                    .is_ok()
            });
            if !valid {
                return Err(ApiError::bad_request(format!(
                    "error decoding Secret \"{name}\": data[{key}] is not valid base64"
                )));
            }
        }
    }
    if let Some(Value::Object(string_data)) = string_data {
        let data = map.entry("data").or_insert_with(|| json!({}));
        if !data.is_object() {
            *data = json!({});
        }
        for (key, value) in string_data {
            let plain = value.as_str().unwrap_or_default();
            data[key.as_str()] = json!(base64::engine::general_purpose::STANDARD.encode(plain));
        }
    }
    Ok(())
}

const DNS_LABEL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS_SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

/// RFC 1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub(crate) fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns_label)
}

fn validate(resource: &Resource, old: Option<&Value>, object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let name = text(object, "/metadata/name").unwrap_or_default();
    // Namespaces, services and (in the lab) deployments need a DNS label;
    // everything else a DNS subdomain.
    let label_only = matches!(resource.kind, "Namespace" | "Service" | "Deployment");
    if label_only && !is_dns_label(name) {
        causes.push(Cause::invalid("metadata.name", &json!(name), DNS_LABEL));
    } else if !label_only && !is_dns_subdomain(name) {
        causes.push(Cause::invalid("metadata.name", &json!(name), DNS_SUBDOMAIN));
    }
    match resource.kind {
        "Deployment" | "ReplicaSet" | "Job" => {
            validate_workload(object, &mut causes);
            if let Some(old) = old
                && old.pointer("/spec/selector") != object.pointer("/spec/selector")
            {
                causes.push(Cause::invalid(
                    "spec.selector",
                    object.pointer("/spec/selector").unwrap_or(&Value::Null),
                    "field is immutable",
                ));
            }
            if resource.kind == "Job" {
                let policy = object
                    .pointer("/spec/template/spec/restartPolicy")
                    .cloned()
                    .unwrap_or(Value::Null);
                if policy != "Never" && policy != "OnFailure" {
                    causes.push(Cause::unsupported(
                        "spec.template.spec.restartPolicy",
                        &policy,
                        &["OnFailure", "Never"],
                    ));
                }
            }
        }
        "CronJob" => validate_cron_job(name, object, &mut causes),
        "Pod" => validate_pod_spec(object.get("spec"), "spec", &mut causes),
        "Lease" => {
            if let Some(seconds) = object.pointer("/spec/leaseDurationSeconds")
                && seconds.as_i64().is_none_or(|s| s <= 0)
            {
                causes.push(Cause::invalid(
                    "spec.leaseDurationSeconds",
                    seconds,
                    "must be greater than 0",
                ));
            }
        }
        _ => {}
    }
    causes
}

/// The most replicas a workload may ask for in the lab (the real limit is
/// 2^31 - 1; the fake's pods live in memory and one pass creates them all).
pub(crate) const MAX_REPLICAS: i64 = 100;

/// A CronJob: a name of at most 52 characters (its Jobs add 11), a
/// schedule, a known concurrencyPolicy, and a Job template whose pods say
/// `restartPolicy: Never` or `OnFailure` (the real API's rules).
fn validate_cron_job(name: &str, object: &Value, causes: &mut Vec<Cause>) {
    if name.len() > 52 {
        causes.push(Cause::invalid(
            "metadata.name",
            &json!(name),
            "must be no more than 52 characters",
        ));
    }
    match object.pointer("/spec/schedule").and_then(Value::as_str) {
        Some(schedule) if !schedule.trim().is_empty() => {}
        _ => causes.push(Cause::required("spec.schedule")),
    }
    if let Some(policy) = object.pointer("/spec/concurrencyPolicy")
        && !["Allow", "Forbid", "Replace"].contains(&policy.as_str().unwrap_or_default())
    {
        causes.push(Cause::unsupported(
            "spec.concurrencyPolicy",
            policy,
            &["Allow", "Forbid", "Replace"],
        ));
    }
    let template = object.pointer("/spec/jobTemplate/spec/template/spec");
    match template {
        None => causes.push(Cause::required(
            "spec.jobTemplate.spec.template.spec.containers",
        )),
        Some(spec) => {
            validate_pod_spec(Some(spec), "spec.jobTemplate.spec.template.spec", causes);
            let policy = spec.get("restartPolicy").cloned().unwrap_or(Value::Null);
            if policy != "Never" && policy != "OnFailure" {
                causes.push(Cause::unsupported(
                    "spec.jobTemplate.spec.template.spec.restartPolicy",
                    &policy,
                    &["OnFailure", "Never"],
                ));
            }
        }
    }
}

fn validate_workload(object: &Value, causes: &mut Vec<Cause>) {
    if let Some(replicas) = object.pointer("/spec/replicas") {
        match replicas.as_i64() {
            Some(r) if r < 0 => causes.push(Cause::invalid(
                "spec.replicas",
                replicas,
                "must be greater than or equal to 0",
            )),
            Some(r) if r <= MAX_REPLICAS => {}
            Some(_) => causes.push(Cause::invalid(
                "spec.replicas",
                replicas,
                &format!("must be less than or equal to {MAX_REPLICAS} in the lab"),
            )),
            None => causes.push(Cause::invalid(
                "spec.replicas",
                replicas,
                "must be an integer",
            )),
        }
    }
    let selector = object.pointer("/spec/selector");
    match selector.and_then(LabelSelector::from_structured) {
        None => causes.push(Cause::required("spec.selector")),
        Some(selector) => {
            let template = object.pointer("/spec/template").unwrap_or(&Value::Null);
            if !selector.matches(template) {
                let labels = template
                    .pointer("/metadata/labels")
                    .cloned()
                    .unwrap_or(json!({}));
                causes.push(Cause::invalid(
                    "spec.template.metadata.labels",
                    &labels,
                    "`selector` does not match template `labels`",
                ));
            }
        }
    }
    validate_pod_spec(
        object.pointer("/spec/template/spec"),
        "spec.template.spec",
        causes,
    );
}

fn validate_pod_spec(spec: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
    let containers = spec
        .and_then(|spec| spec.get("containers"))
        .and_then(Value::as_array);
    let Some(containers) = containers.filter(|c| !c.is_empty()) else {
        causes.push(Cause::required(&format!("{path}.containers")));
        return;
    };
    let mut seen = Vec::new();
    for (index, container) in containers.iter().enumerate() {
        let at = format!("{path}.containers[{index}]");
        match container.get("name").and_then(Value::as_str) {
            None | Some("") => causes.push(Cause::required(&format!("{at}.name"))),
            Some(name) if !is_dns_label(name) => {
                causes.push(Cause::invalid(
                    &format!("{at}.name"),
                    &json!(name),
                    DNS_LABEL,
                ));
            }
            Some(name) if seen.contains(&name) => causes.push(Cause {
                reason: "FieldValueDuplicate",
                field: format!("{at}.name"),
                message: format!("Duplicate value: \"{name}\""),
            }),
            Some(name) => seen.push(name),
        }
        if container
            .get("image")
            .and_then(Value::as_str)
            .is_none_or(|image| image.trim().is_empty())
        {
            causes.push(Cause::required(&format!("{at}.image")));
        }
    }
}
