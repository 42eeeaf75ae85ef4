//! Which handler answers which `METHOD /v1/...`, and the small read-only
//! collections (actions, the catalogue) that need no module of their own.

use hyper::Method;
use serde_json::Value;

use super::catalog;
use super::errors::ApiError;
use super::project::Project;
use super::reply::{self, Origin, Reply};
use super::{firewalls, servers, ssh_keys};

/// One request, parsed.
#[derive(Debug)]
pub(crate) struct Call<'a> {
    pub(crate) method: Method,
    /// The path after `/v1`, split on `/`.
    pub(crate) segments: Vec<&'a str>,
    pub(crate) origin: Origin<'a>,
    pub(crate) body: Value,
}

pub(crate) fn route(project: &mut Project, call: &Call<'_>) -> Result<Reply, ApiError> {
    let method = &call.method;
    if *method != Method::GET
        && let Some(error) = project.faults.take_write_error()
    {
        return Err(error);
    }
    let origin = &call.origin;
    let body = &call.body;
    match (method.clone(), call.segments.as_slice()) {
        (Method::GET, ["servers"]) => servers::list(project, origin),
        (Method::POST, ["servers"]) => servers::create(project, body),
        (Method::GET, ["servers", id]) => servers::get(project, reply::id(id, "server")?),
        (Method::PUT, ["servers", id]) => servers::update(project, reply::id(id, "server")?, body),
        (Method::DELETE, ["servers", id]) => servers::delete(project, reply::id(id, "server")?),
        (Method::GET, ["servers", id, "actions"]) => {
            servers::actions(project, reply::id(id, "server")?, origin)
        }

        (Method::GET, ["actions"]) => actions(project, origin),
        (Method::GET, ["actions", id]) => action(project, reply::id(id, "action")?),

        (Method::GET, ["ssh_keys"]) => ssh_keys::list(project, origin),
        (Method::POST, ["ssh_keys"]) => ssh_keys::create(project, body),
        (Method::GET, ["ssh_keys", id]) => ssh_keys::get(project, reply::id(id, "ssh key")?),
        (Method::PUT, ["ssh_keys", id]) => {
            ssh_keys::update(project, reply::id(id, "ssh key")?, body)
        }
        (Method::DELETE, ["ssh_keys", id]) => ssh_keys::delete(project, reply::id(id, "ssh key")?),

        (Method::GET, ["firewalls"]) => firewalls::list(project, origin),
        (Method::POST, ["firewalls"]) => firewalls::create(project, body),
        (Method::GET, ["firewalls", id]) => firewalls::get(project, reply::id(id, "firewall")?),
        (Method::PUT, ["firewalls", id]) => {
            firewalls::update(project, reply::id(id, "firewall")?, body)
        }
        (Method::DELETE, ["firewalls", id]) => {
            firewalls::delete(project, reply::id(id, "firewall")?)
        }
        (Method::GET, ["firewalls", id, "actions"]) => {
            firewalls::actions(project, reply::id(id, "firewall")?, origin)
        }
        (Method::POST, ["firewalls", id, "actions", name]) => {
            firewalls::action(project, reply::id(id, "firewall")?, name, body)
        }

        (Method::GET, ["server_types"]) => {
            reply::list("server_types", catalog::server_types(), origin)
        }
        (Method::GET, ["server_types", id]) => one("server_type", catalog::server_types(), id),
        (Method::GET, ["locations"]) => reply::list("locations", catalog::locations(), origin),
        (Method::GET, ["locations", id]) => one("location", catalog::locations(), id),
        (Method::GET, ["datacenters"]) => {
            reply::list("datacenters", catalog::datacenters(), origin)
        }
        (Method::GET, ["datacenters", id]) => one("datacenter", catalog::datacenters(), id),
        (Method::GET, ["images"]) => images(origin),
        (Method::GET, ["images", id]) => one("image", catalog::images(), id),

        _ if known_path(&call.segments) => Err(ApiError::method_not_allowed()),
        _ => Err(ApiError::no_route()),
    }
}

/// Whether some method serves the path (so another gets 405, not 404).
fn known_path(segments: &[&str]) -> bool {
    matches!(
        segments,
        ["servers"
            | "ssh_keys"
            | "firewalls"
            | "actions"
            | "server_types"
            | "locations"
            | "datacenters"
            | "images"]
            | [
                "servers"
                    | "ssh_keys"
                    | "firewalls"
                    | "actions"
                    | "server_types"
                    | "locations"
                    | "datacenters"
                    | "images",
                _
            ]
            | ["servers" | "firewalls", _, "actions"]
    )
}

/// A catalogue entry by ID; `GET /server_types/{id}` and friends.
fn one(key: &str, entries: Vec<Value>, id: &str) -> Result<Reply, ApiError> {
    let wanted: u64 = id.parse().map_err(|_| ApiError::not_found(key))?;
    let entry = entries
        .into_iter()
        .find(|entry| entry["id"] == wanted)
        .ok_or_else(|| ApiError::not_found(key))?;
    Ok(Reply::ok(reply::one(key, entry)))
}

/// `GET /images`: also `type` and `architecture` (repeatable filters).
fn images(origin: &Origin<'_>) -> Result<Reply, ApiError> {
    let types = origin.query.all("type");
    let architectures = origin.query.all("architecture");
    let items = catalog::images()
        .into_iter()
        .filter(|image| types.is_empty() || types.iter().any(|t| image["type"] == *t))
        .filter(|image| {
            architectures.is_empty() || architectures.iter().any(|a| image["architecture"] == *a)
        })
        .collect();
    reply::list("images", items, origin)
}

/// `GET /actions/{id}`: one read (a poll) of it.
fn action(project: &mut Project, id: u64) -> Result<Reply, ApiError> {
    project.poll_action(id);
    let settings = project.settings;
    let action = project
        .actions
        .get(&id)
        .ok_or_else(|| ApiError::not_found("action"))?;
    Ok(Reply::ok(reply::one("action", action.to_json(&settings))))
}

/// `GET /actions?id=1&id=2`: several at once (each read is a poll). Listing
/// every action without IDs was removed from the real API in January 2025.
fn actions(project: &mut Project, origin: &Origin<'_>) -> Result<Reply, ApiError> {
    let mut ids = Vec::new();
    for id in origin.query.all("id") {
        ids.push(
            id.parse::<u64>()
                .map_err(|_| ApiError::invalid("id", &format!("'{id}' is not an ID")))?,
        );
    }
    if ids.is_empty() {
        return Err(ApiError::invalid("id", "Missing data for required field."));
    }
    ids.sort_unstable();
    ids.dedup();
    for id in &ids {
        project.poll_action(*id);
    }
    let statuses = origin.query.all("status");
    let settings = project.settings;
    let items = ids
        .iter()
        .filter_map(|id| project.actions.get(id))
        .filter(|action| statuses.is_empty() || statuses.contains(&action.status().as_str()))
        .map(|action| action.to_json(&settings))
        .collect();
    reply::list("actions", items, origin)
}
