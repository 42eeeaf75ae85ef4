//! HTTP: the accept loop, authentication, routing of the Kubernetes URL
//! scheme (`/api/v1/namespaces/{ns}/pods/{name}/log`,
//! `/apis/{group}/{version}/...`), query parameters, and turning results and
//! [`ApiError`]s into responses. Every handler runs under the cluster lock
//! without awaiting, so requests and the controller see a consistent store.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, USER_AGENT};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::Shared;
use super::api::{self, PatchType, WriteOptions};
use super::discovery;
use super::errors::ApiError;
use super::logs::{self, LogOptions};
use super::resources::{self, Resource};
use super::scale;
use super::selector::{FieldSelector, LabelSelector};
use super::table::{self, Include};
use super::watch::{self, WatchRequest};
use crate::query::Query;

/// Request bodies larger than this are refused.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// The longest a watch stays open (the real API picks 30 to 60 minutes).
const MAX_WATCH: Duration = Duration::from_secs(3600);

pub(crate) type Body = BoxBody<Bytes, Infallible>;
type Answer = Response<Body>;

/// What every connection needs.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    pub(crate) shared: Shared,
    /// The bearer token of the kubeconfig's user.
    pub(crate) token: Arc<str>,
    pub(crate) addr: SocketAddr,
}

/// Accept connections until `stop` fires (or its sender is dropped).
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    context: Context,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        let stream = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let context = context.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let context = context.clone();
                async move { Ok::<_, Infallible>(handle(&context, request).await) }
            });
            // Errors here are clients hanging up mid-request; nothing to report.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(context: &Context, request: Request<Incoming>) -> Answer {
    match respond(context, request).await {
        Ok(answer) => answer,
        Err(error) => error_answer(&error),
    }
}

fn error_answer(error: &ApiError) -> Answer {
    let code = StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_answer(code, &error.status())
}

fn json_answer(code: StatusCode, body: &Value) -> Answer {
    answer(code, "application/json", Bytes::from(body.to_string()))
}

fn answer(code: StatusCode, content_type: &'static str, body: Bytes) -> Answer {
    let mut response = Response::new(Full::new(body).boxed());
    *response.status_mut() = code;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn header(headers: &HeaderMap, name: hyper::header::HeaderName) -> &str {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
}

async fn respond(context: &Context, request: Request<Incoming>) -> Result<Answer, ApiError> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = Query::parse(request.uri().query());
    let headers = request.headers().clone();
    // client-go (kubectl) sends no bearer token over plain HTTP, so a
    // request without one is let in; a wrong one is refused, as a real
    // server would.
    let given = header(&headers, AUTHORIZATION);
    if !given.is_empty() && given != format!("Bearer {}", context.token) {
        return Err(ApiError::unauthorized());
    }
    let body = Limited::new(request.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|_| ApiError::bad_request("cannot read the request body"))?
        .to_bytes();
    let trimmed = path.trim_matches('/');
    let segments: Vec<&str> = if trimmed.is_empty() {
        Vec::new()
    } else {
        trimmed.split('/').collect()
    };
    let discovery = |value: Option<Value>| -> Result<Answer, ApiError> {
        if method != Method::GET {
            return Err(ApiError::method_not_allowed(method.as_str()));
        }
        value
            .map(|value| json_answer(StatusCode::OK, &value))
            .ok_or_else(ApiError::no_route)
    };
    match segments.as_slice() {
        ["version"] => discovery(Some(discovery::version())),
        ["healthz" | "livez" | "readyz"] => Ok(answer(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"ok"),
        )),
        ["api"] => discovery(Some(discovery::core_versions(&context.addr.to_string()))),
        ["apis"] => discovery(Some(discovery::groups())),
        ["api", version] => discovery(discovery::resource_list("", version)),
        ["apis", group] => discovery(discovery::api_group(group)),
        ["apis", group, version] => discovery(discovery::resource_list(group, version)),
        ["openapi", "v2"] => {
            if method != Method::GET {
                return Err(ApiError::method_not_allowed(method.as_str()));
            }
            Ok(answer(
                StatusCode::OK,
                "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
                Bytes::from(discovery::openapi_v2_protobuf()),
            ))
        }
        ["openapi", "v3"] => discovery(Some(discovery::openapi_v3_index())),
        ["openapi", "v3", "api", version] => discovery(discovery::openapi_v3_document("", version)),
        ["openapi", "v3", "apis", group, version] => {
            discovery(discovery::openapi_v3_document(group, version))
        }
        ["api", version, rest @ ..] => {
            let target = Target::parse("", version, rest)?;
            resource_request(context, &method, &target, &query, &headers, &body)
        }
        ["apis", group, version, rest @ ..] => {
            let target = Target::parse(group, version, rest)?;
            resource_request(context, &method, &target, &query, &headers, &body)
        }
        _ => Err(ApiError::no_route()),
    }
}

/// What a resource URL points at.
#[derive(Debug)]
struct Target {
    resource: &'static Resource,
    /// The namespace in the URL (None: all namespaces, or a cluster-scoped type).
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

impl Target {
    fn parse(group: &str, version: &str, rest: &[&str]) -> Result<Target, ApiError> {
        let (resource, namespace, tail) = match rest {
            ["namespaces", namespace, plural, tail @ ..]
                if resources::by_path(group, version, plural).is_some_and(|r| r.namespaced) =>
            {
                let resource =
                    resources::by_path(group, version, plural).ok_or_else(ApiError::no_route)?;
                (resource, Some((*namespace).to_owned()), tail)
            }
            [plural, tail @ ..] => {
                let resource =
                    resources::by_path(group, version, plural).ok_or_else(ApiError::no_route)?;
                (resource, None, tail)
            }
            [] => return Err(ApiError::no_route()),
        };
        let (name, subresource) = match tail {
            [] => (None, None),
            [name] => (Some((*name).to_owned()), None),
            [name, sub] if resource.has_subresource(sub) => {
                (Some((*name).to_owned()), Some((*sub).to_owned()))
            }
            _ => return Err(ApiError::no_route()),
        };
        if name.is_some() && resource.namespaced && namespace.is_none() {
            return Err(ApiError::no_route());
        }
        Ok(Target {
            resource,
            namespace,
            name,
            subresource,
        })
    }

    fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or_default()
    }
}

/// `dryRun` and the field manager of a write.
fn write_options(
    query: &Query,
    headers: &HeaderMap,
    apply: bool,
) -> Result<WriteOptions, ApiError> {
    let dry_run = match query.get("dryRun") {
        None | Some("") => false,
        Some("All") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Unsupported value: \"{other}\": supported values: \"All\""
            )));
        }
    };
    let manager = match query.get("fieldManager") {
        Some(manager) if !manager.is_empty() => manager.to_owned(),
        // Apply needs an explicit manager; other writes default to the
        // client's name, as the real API derives it from the User-Agent.
        _ if apply => String::new(),
        _ => {
            let agent = header(headers, USER_AGENT);
            let name = agent.split('/').next().unwrap_or_default();
            if name.is_empty() {
                "unknown".to_owned()
            } else {
                name.to_owned()
            }
        }
    };
    Ok(WriteOptions { dry_run, manager })
}

/// Bodies of POST and PUT must be JSON or YAML.
fn check_body_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = header(headers, CONTENT_TYPE);
    if content_type.contains("protobuf") || content_type.contains("cbor") {
        return Err(ApiError::unsupported_media_type(content_type));
    }
    Ok(())
}

fn patch_type(headers: &HeaderMap) -> Result<PatchType, ApiError> {
    let content_type = header(headers, CONTENT_TYPE);
    PatchType::from_content_type(content_type).ok_or_else(|| {
        let mut error = ApiError::unsupported_media_type(content_type);
        error.message = format!(
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {content_type:?})"
        );
        error
    })
}

fn selectors(query: &Query) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or_default())
        .map_err(ApiError::bad_request)?;
    let fields = FieldSelector::parse(query.get("fieldSelector").unwrap_or_default())
        .map_err(ApiError::bad_request)?;
    Ok((labels, fields))
}

fn resource_request(
    context: &Context,
    method: &Method,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Answer, ApiError> {
    let resource = target.resource;
    let namespace = target.namespace();
    let not_allowed = || ApiError::method_not_allowed(method.as_str());
    let name = match &target.name {
        None => {
            return match *method {
                Method::GET if query.flag("watch") => watch(context, target, query, headers),
                Method::GET => list(context, target, query, headers),
                Method::POST => {
                    if resource.namespaced && target.namespace.is_none() {
                        return Err(not_allowed());
                    }
                    check_body_type(headers)?;
                    let options = write_options(query, headers, false)?;
                    let object = api::parse_body(body)?;
                    let created = {
                        let mut cluster = context.shared.lock();
                        api::create(&mut cluster.store, resource, namespace, object, &options)?
                    };
                    context.shared.wake();
                    Ok(json_answer(StatusCode::CREATED, &created))
                }
                Method::DELETE => delete_collection(context, target, query),
                _ => Err(not_allowed()),
            };
        }
        Some(name) => name.as_str(),
    };
    let result = match (target.subresource.as_deref(), method.clone()) {
        (None | Some("status"), Method::GET) => {
            let cluster = context.shared.lock();
            let object = cluster
                .store
                .get(resource, namespace, name)
                .ok_or_else(|| ApiError::not_found(resource, name))?;
            if target.subresource.is_none() && table::wanted(header(headers, ACCEPT)) {
                let rv = cluster.store.resource_version().to_string();
                let include = Include::parse(query.get("includeObject"));
                return Ok(json_answer(
                    StatusCode::OK,
                    &table::table(resource, &[object], &rv, include),
                ));
            }
            return Ok(json_answer(StatusCode::OK, object));
        }
        (None | Some("status"), Method::PUT) => {
            check_body_type(headers)?;
            let options = write_options(query, headers, false)?;
            let object = api::parse_body(body)?;
            let mut cluster = context.shared.lock();
            api::replace(
                &mut cluster.store,
                resource,
                namespace,
                name,
                object,
                target.subresource.as_deref(),
                &options,
            )
            .map(|object| (StatusCode::OK, object))
        }
        (None | Some("status"), Method::PATCH) => {
            let patch_type = patch_type(headers)?;
            let options = write_options(query, headers, patch_type == PatchType::Apply)?;
            let mut cluster = context.shared.lock();
            api::patch(
                &mut cluster.store,
                resource,
                namespace,
                name,
                patch_type,
                body,
                target.subresource.as_deref(),
                &options,
            )
            .map(|(object, created)| {
                let code = if created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                (code, object)
            })
        }
        (None, Method::DELETE) => {
            let options = write_options(query, headers, false)?;
            let mut delete_options = if body.is_empty() {
                json!({})
            } else {
                api::parse_body(body)?
            };
            if !delete_options.is_object() {
                return Err(ApiError::bad_request("DeleteOptions must be an object"));
            }
            if let Some(policy) = query.get("propagationPolicy") {
                delete_options["propagationPolicy"] = json!(policy);
            }
            let dry_run = options.dry_run
                || delete_options
                    .get("dryRun")
                    .and_then(Value::as_array)
                    .is_some_and(|d| d.iter().any(|v| v == "All"));
            let mut cluster = context.shared.lock();
            api::delete(
                &mut cluster.store,
                resource,
                namespace,
                name,
                &delete_options,
                dry_run,
            )
            .map(|status| (StatusCode::OK, status))
        }
        (Some("scale"), Method::GET) => {
            let cluster = context.shared.lock();
            let object = cluster
                .store
                .get(resource, namespace, name)
                .ok_or_else(|| ApiError::not_found(resource, name))?;
            return Ok(json_answer(StatusCode::OK, &scale::scale_of(object)));
        }
        (Some("scale"), Method::PUT) => {
            check_body_type(headers)?;
            let options = write_options(query, headers, false)?;
            let object = api::parse_body(body)?;
            let mut cluster = context.shared.lock();
            scale::replace(
                &mut cluster.store,
                resource,
                namespace,
                name,
                &object,
                &options,
            )
            .map(|scale| (StatusCode::OK, scale))
        }
        (Some("scale"), Method::PATCH) => {
            let patch_type = patch_type(headers)?;
            let options = write_options(query, headers, false)?;
            let mut cluster = context.shared.lock();
            scale::patch(
                &mut cluster.store,
                resource,
                namespace,
                name,
                patch_type,
                body,
                &options,
            )
            .map(|scale| (StatusCode::OK, scale))
        }
        (Some("log"), Method::GET) => return log(context, target, name, query),
        _ => Err(not_allowed()),
    };
    let (code, object) = result?;
    context.shared.wake();
    Ok(json_answer(code, &object))
}

fn list(
    context: &Context,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
) -> Result<Answer, ApiError> {
    let (labels, fields) = selectors(query)?;
    let resource = target.resource;
    let cluster = context.shared.lock();
    let store = &cluster.store;
    let rv = store.resource_version().to_string();
    let key = |object: &Value| {
        format!(
            "{}/{}",
            object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
        )
    };
    let mut items: Vec<&Value> = store
        .list(resource, target.namespace.as_deref())
        .into_iter()
        .filter(|object| labels.matches(object) && fields.matches(object))
        .collect();
    if let Some(after) = query.get("continue").filter(|c| !c.is_empty()) {
        items.retain(|object| key(object).as_str() > after);
    }
    let limit: usize = query.get("limit").and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut metadata = json!({ "resourceVersion": rv });
    if limit > 0 && items.len() > limit {
        let remaining = items.len() - limit;
        items.truncate(limit);
        if let Some(last) = items.last() {
            metadata["continue"] = json!(key(last));
            metadata["remainingItemCount"] = json!(remaining);
        }
    }
    if table::wanted(header(headers, ACCEPT)) {
        let include = Include::parse(query.get("includeObject"));
        let mut table = table::table(resource, &items, &rv, include);
        table["metadata"] = metadata;
        return Ok(json_answer(StatusCode::OK, &table));
    }
    let list = json!({
        "kind": format!("{}List", resource.kind),
        "apiVersion": resource.api_version(),
        "metadata": metadata,
        "items": items,
    });
    Ok(json_answer(StatusCode::OK, &list))
}

fn watch(
    context: &Context,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
) -> Result<Answer, ApiError> {
    let (labels, fields) = selectors(query)?;
    let resource_version = match query.get("resourceVersion") {
        None | Some("" | "0") => None,
        Some(rv) => Some(
            rv.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?,
        ),
    };
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(MAX_WATCH, Duration::from_secs)
        .min(MAX_WATCH);
    let request = WatchRequest {
        resource: target.resource,
        namespace: target.namespace.clone(),
        labels,
        fields,
        resource_version,
        send_initial_events: query.flag("sendInitialEvents"),
        bookmarks: query.flag("allowWatchBookmarks"),
        timeout,
        table: table::wanted(header(headers, ACCEPT))
            .then(|| Include::parse(query.get("includeObject"))),
    };
    let body = watch::start(&context.shared, request);
    let mut response = Response::new(body.boxed());
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

fn delete_collection(
    context: &Context,
    target: &Target,
    query: &Query,
) -> Result<Answer, ApiError> {
    let (labels, fields) = selectors(query)?;
    let resource = target.resource;
    let dry_run = query.get("dryRun") == Some("All");
    let mut cluster = context.shared.lock();
    let names: Vec<(String, String)> = cluster
        .store
        .list(resource, target.namespace.as_deref())
        .into_iter()
        .filter(|object| labels.matches(object) && fields.matches(object))
        .map(|object| {
            let text = |p: &str| {
                object
                    .pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            (text("/metadata/namespace"), text("/metadata/name"))
        })
        .collect();
    let mut deleted = Vec::new();
    for (namespace, name) in names {
        if let Some(object) = cluster.store.get(resource, &namespace, &name).cloned() {
            api::delete(
                &mut cluster.store,
                resource,
                &namespace,
                &name,
                &json!({}),
                dry_run,
            )?;
            deleted.push(object);
        }
    }
    let rv = cluster.store.resource_version().to_string();
    drop(cluster);
    context.shared.wake();
    Ok(json_answer(
        StatusCode::OK,
        &json!({
            "kind": format!("{}List", resource.kind),
            "apiVersion": resource.api_version(),
            "metadata": { "resourceVersion": rv },
            "items": deleted,
        }),
    ))
}

fn log(context: &Context, target: &Target, name: &str, query: &Query) -> Result<Answer, ApiError> {
    let options = LogOptions {
        container: query
            .get("container")
            .filter(|c| !c.is_empty())
            .map(str::to_owned),
        tail_lines: query.get("tailLines").and_then(|t| t.parse().ok()),
        timestamps: query.flag("timestamps"),
        previous: query.flag("previous"),
    };
    let cluster = context.shared.lock();
    let pod = cluster
        .store
        .get(target.resource, target.namespace(), name)
        .ok_or_else(|| ApiError::not_found(target.resource, name))?;
    let text = logs::pod_log(pod, &options)?;
    Ok(answer(StatusCode::OK, "text/plain", Bytes::from(text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_target() {
        let target = Target::parse(
            "apps",
            "v1",
            &["namespaces", "lab", "deployments", "web", "scale"],
        )
        .unwrap();
        assert_eq!(target.resource.kind, "Deployment");
        assert_eq!(target.namespace.as_deref(), Some("lab"));
        assert_eq!(target.name.as_deref(), Some("web"));
        assert_eq!(target.subresource.as_deref(), Some("scale"));
        let namespace = Target::parse("", "v1", &["namespaces", "lab"]).unwrap();
        assert_eq!(namespace.resource.kind, "Namespace");
        assert_eq!(namespace.name.as_deref(), Some("lab"));
        let status = Target::parse("", "v1", &["namespaces", "lab", "status"]).unwrap();
        assert_eq!(status.subresource.as_deref(), Some("status"));
        let all = Target::parse("", "v1", &["pods"]).unwrap();
        assert!(all.namespace.is_none() && all.name.is_none());
        assert!(Target::parse("", "v1", &["pods", "x"]).is_err());
        assert!(Target::parse("", "v1", &["namespaces", "lab", "pods", "p", "exec"]).is_err());
        assert!(Target::parse("apps", "v1", &["nodes"]).is_err());
    }
}
