//! `/servers`: create (201 with a running `create_server` action and
//! `start_server` in `next_actions`), list, get, update, delete (an action,
//! then 404), and `/servers/{id}/actions`.
//!
//! A server's `status` is not stored but read off its actions:
//! `initializing` while `create_server` runs, `starting` while
//! `start_server` runs, then `running` (`off` if either failed or it was
//! created with `start_after_create: false`), `deleting` once deleted.
//! Writes to it are `locked` while any of its actions runs.

use std::net::Ipv4Addr;

use chrono::{DateTime, Utc};
use rand::Rng as _;
use rand::distr::Alphanumeric;
use serde_json::{Map, Value, json};

use super::actions::{Effect, Status, timestamp};
use super::catalog;
use super::errors::ApiError;
use super::project::{self, Project};
use super::reply::{self, Origin, Reply};

/// One server.
#[derive(Debug, Clone)]
pub(crate) struct Server {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) created: DateTime<Utc>,
    pub(crate) labels: Map<String, Value>,
    pub(crate) server_type: Value,
    pub(crate) image: Value,
    pub(crate) location: String,
    /// The public keys of the ssh keys it was created with (what its
    /// address accepts once it runs).
    pub(crate) public_keys: Vec<String>,
    pub(crate) address: Ipv4Addr,
    pub(crate) ipv4_id: u64,
    pub(crate) ipv6_id: u64,
    pub(crate) create_action: u64,
    pub(crate) start_action: Option<u64>,
    pub(crate) delete_action: Option<u64>,
}

impl Server {
    pub(crate) fn status(&self, project: &Project) -> &'static str {
        if self.delete_action.is_some() {
            return "deleting";
        }
        let status = |id: u64| project.actions.get(&id).map(super::actions::Action::status);
        match status(self.create_action) {
            Some(Status::Running) => return "initializing",
            Some(Status::Error) => return "off",
            _ => {}
        }
        match self.start_action.and_then(status) {
            Some(Status::Running) => "starting",
            Some(Status::Success) => "running",
            _ => "off",
        }
    }

    pub(crate) fn to_json(&self, project: &Project) -> Value {
        let firewalls: Vec<Value> = project
            .firewalls
            .values()
            .filter(|firewall| firewall.applies_to(self))
            .map(|firewall| {
                let pending = project.actions.values().any(|action| {
                    action.running()
                        && action.command == "apply_firewall"
                        && action.touches(firewall.id, "firewall")
                        && action.touches(self.id, "server")
                });
                json!({"id": firewall.id, "status": if pending { "pending" } else { "applied" }})
            })
            .collect();
        let ipv6_network = format!("2001:db8:{:x}::/64", self.id % 0xffff);
        json!({
            "id": self.id,
            "name": self.name,
            "status": self.status(project),
            "created": timestamp(&self.created),
            "public_net": {
                "ipv4": {
                    "id": self.ipv4_id, "ip": self.address.to_string(), "blocked": false,
                    "dns_ptr": format!("static.{}.clients.lab.invalid", self.address),
                },
                "ipv6": {
                    "id": self.ipv6_id, "ip": ipv6_network, "blocked": false, "dns_ptr": [],
                },
                "floating_ips": [],
                "firewalls": firewalls,
            },
            "private_net": [],
            "server_type": self.server_type,
            "datacenter": catalog::datacenter_of(&self.location),
            "location": catalog::location_by_name(&self.location),
            "image": self.image,
            "iso": null,
            "rescue_enabled": false,
            "locked": false,
            "backup_window": null,
            "outgoing_traffic": 0,
            "ingoing_traffic": 0,
            "included_traffic": self.server_type["included_traffic"],
            "protection": {"delete": false, "rebuild": false},
            "labels": self.labels,
            "volumes": [],
            "load_balancers": [],
            "primary_disk_size": self.server_type["disk"],
            "placement_group": null,
        })
    }
}

/// `GET /servers`: `name`, `label_selector`, `status` (repeatable), `sort`.
pub(crate) fn list(project: &Project, origin: &Origin<'_>) -> Result<Reply, ApiError> {
    let statuses = origin.query.all("status");
    let items: Vec<Value> = project
        .servers
        .values()
        .filter(|server| statuses.is_empty() || statuses.contains(&server.status(project)))
        .map(|server| server.to_json(project))
        .collect();
    reply::list("servers", items, origin)
}

pub(crate) fn get(project: &Project, id: u64) -> Result<Reply, ApiError> {
    let server = project
        .servers
        .get(&id)
        .ok_or_else(|| ApiError::not_found("server"))?;
    Ok(Reply::ok(reply::one("server", server.to_json(project))))
}

/// `GET /servers/{id}/actions`; reading them counts as polling them.
pub(crate) fn actions(
    project: &mut Project,
    id: u64,
    origin: &Origin<'_>,
) -> Result<Reply, ApiError> {
    if !project.servers.contains_key(&id) {
        return Err(ApiError::not_found("server"));
    }
    let ids: Vec<u64> = project
        .actions
        .values()
        .filter(|action| action.touches(id, "server"))
        .map(|action| action.id)
        .collect();
    for action in &ids {
        project.poll_action(*action);
    }
    let statuses = origin.query.all("status");
    let settings = project.settings;
    let items: Vec<Value> = ids
        .iter()
        .filter_map(|id| project.actions.get(id))
        .filter(|action| statuses.is_empty() || statuses.contains(&action.status().as_str()))
        .map(|action| action.to_json(&settings))
        .collect();
    reply::list("actions", items, origin)
}

/// `POST /servers`.
pub(crate) fn create(project: &mut Project, body: &Value) -> Result<Reply, ApiError> {
    let request = CreateRequest::parse(project, body)?;
    if project
        .servers
        .values()
        .any(|server| server.name == request.name)
    {
        return Err(ApiError::uniqueness("name", "server name is already used"));
    }
    if let Some(error) = project.faults.take_create_error() {
        return Err(error);
    }
    let id = project.next_id();
    let create_action = project.start_action("create_server", vec![(id, "server")]);
    let start_action = request.start.then(|| {
        let start = project.start_action("start_server", vec![(id, "server")]);
        if let Some(action) = project.actions.get_mut(&start) {
            action.after = Some(create_action);
            action.ready_at = None;
            action.effect = Effect::Boot(id);
        }
        start
    });
    let ipv4_id = project.next_id();
    let ipv6_id = project.next_id();
    let address = project.hosts.assign();
    for firewall in &request.firewalls {
        if let Some(firewall) = project.firewalls.get_mut(firewall) {
            firewall.servers.push(id);
        }
    }
    let server = Server {
        id,
        name: request.name,
        created: Utc::now(),
        labels: request.labels,
        server_type: request.server_type,
        image: request.image,
        location: request.location,
        public_keys: request.public_keys,
        address,
        ipv4_id,
        ipv6_id,
        create_action,
        start_action,
        delete_action: None,
    };
    let root_password = if server.public_keys.is_empty() {
        let password: String = rand::rng()
            .sample_iter(&Alphanumeric)
            .take(20)
            .map(char::from)
            .collect();
        Value::from(password)
    } else {
        Value::Null
    };
    project.servers.insert(id, server);
    let settings = project.settings;
    let action_json = |id: u64| {
        project
            .actions
            .get(&id)
            .map(|action| action.to_json(&settings))
    };
    let next_actions: Vec<Value> = start_action.into_iter().filter_map(action_json).collect();
    let body = json!({
        "server": project.servers.get(&id).map(|server| server.to_json(project)),
        "action": action_json(create_action),
        "next_actions": next_actions,
        "root_password": root_password,
    });
    let mut reply = Reply::created(body);
    reply.drop = project.faults.take_drop_create();
    Ok(reply)
}

/// `PUT /servers/{id}`: `name` and `labels` (not an action, so never `locked`).
pub(crate) fn update(project: &mut Project, id: u64, body: &Value) -> Result<Reply, ApiError> {
    if !project.servers.contains_key(&id) {
        return Err(ApiError::not_found("server"));
    }
    let labels = body
        .get("labels")
        .map(|_| project::labels(body))
        .transpose()?;
    let name = body.get("name").and_then(Value::as_str);
    if let Some(name) = name {
        if !is_hostname(name) {
            return Err(ApiError::invalid("name", "Name must be a valid hostname."));
        }
        if project
            .servers
            .values()
            .any(|other| other.name == name && other.id != id)
        {
            return Err(ApiError::uniqueness("name", "server name is already used"));
        }
    }
    if let Some(server) = project.servers.get_mut(&id) {
        if let Some(name) = name {
            name.clone_into(&mut server.name);
        }
        if let Some(labels) = labels {
            server.labels = labels;
        }
    }
    get(project, id)
}

/// `DELETE /servers/{id}`: `locked` while an action runs on it.
pub(crate) fn delete(project: &mut Project, id: u64) -> Result<Reply, ApiError> {
    let Some(server) = project.servers.get(&id) else {
        return Err(ApiError::not_found("server"));
    };
    if server.delete_action.is_some() || project.server_locked(id) {
        return Err(ApiError::locked());
    }
    let action = project.start_action("delete_server", vec![(id, "server")]);
    if let Some(action) = project.actions.get_mut(&action) {
        action.effect = Effect::RemoveServer(id);
    }
    if let Some(server) = project.servers.get_mut(&id) {
        server.delete_action = Some(action);
    }
    let settings = project.settings;
    let body = project
        .actions
        .get(&action)
        .map(|action| action.to_json(&settings));
    Ok(Reply::ok(json!({"action": body})))
}

/// A checked `POST /servers` body.
struct CreateRequest {
    name: String,
    server_type: Value,
    image: Value,
    location: String,
    public_keys: Vec<String>,
    labels: Map<String, Value>,
    firewalls: Vec<u64>,
    start: bool,
}

impl CreateRequest {
    fn parse(project: &Project, body: &Value) -> Result<CreateRequest, ApiError> {
        if !body.is_object() {
            return Err(ApiError::json_error("the body must be a JSON object"));
        }
        let mut missing = Vec::new();
        for field in ["name", "server_type", "image"] {
            if body.get(field).is_none_or(Value::is_null) {
                missing.push((field, "Missing data for required field."));
            }
        }
        if !missing.is_empty() {
            return Err(ApiError::invalid_fields(&missing));
        }
        let name = body["name"].as_str().unwrap_or_default().to_owned();
        if !is_hostname(&name) {
            return Err(ApiError::invalid("name", "Name must be a valid hostname."));
        }
        let server_type = catalog::find(catalog::server_types(), &body["server_type"])
            .ok_or_else(|| ApiError::invalid("server_type", "server type not found"))?;
        let architecture = server_type["architecture"].as_str().unwrap_or("x86");
        let image = catalog::image_for(&body["image"], architecture)
            .ok_or_else(|| ApiError::invalid("image", "image not found"))?;
        let location =
            match (body.get("location"), body.get("datacenter")) {
                (Some(location), _) if !location.is_null() => {
                    catalog::find(catalog::locations(), location)
                        .ok_or_else(|| ApiError::invalid("location", "location not found"))?["name"]
                        .clone()
                }
                (_, Some(datacenter)) if !datacenter.is_null() => catalog::find(
                    catalog::datacenters(),
                    datacenter,
                )
                .ok_or_else(|| ApiError::invalid("datacenter", "datacenter not found"))?["location"]
                    ["name"]
                    .clone(),
                _ => Value::from(catalog::DEFAULT_LOCATION),
            };
        let location = location
            .as_str()
            .unwrap_or(catalog::DEFAULT_LOCATION)
            .to_owned();
        let mut public_keys = Vec::new();
        let keys = match body.get("ssh_keys") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(keys)) => keys.clone(),
            Some(_) => return Err(ApiError::invalid("ssh_keys", "must be a list")),
        };
        for wanted in &keys {
            let key = project
                .ssh_keys
                .values()
                .find(|key| match wanted {
                    Value::Number(_) => key["id"] == *wanted,
                    Value::String(text) => {
                        key["name"] == text.as_str()
                            || key["id"].as_u64().is_some_and(|id| text.parse() == Ok(id))
                    }
                    _ => false,
                })
                .ok_or_else(|| {
                    ApiError::invalid("ssh_keys", &format!("ssh key {wanted} not found"))
                })?;
            public_keys.push(key["public_key"].as_str().unwrap_or_default().to_owned());
        }
        let mut firewalls = Vec::new();
        if let Some(list) = body.get("firewalls").and_then(Value::as_array) {
            for entry in list {
                let id = entry["firewall"]
                    .as_u64()
                    .filter(|id| project.firewalls.contains_key(id))
                    .ok_or_else(|| {
                        ApiError::invalid("firewalls", &format!("firewall {entry} not found"))
                    })?;
                firewalls.push(id);
            }
        }
        let start = body
            .get("start_after_create")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        Ok(CreateRequest {
            name,
            server_type,
            image,
            location,
            public_keys,
            labels: project::labels(body)?,
            firewalls,
            start,
        })
    }
}

/// RFC 1123: dot-separated labels of letters, digits and inner hyphens.
fn is_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::actions::Settings;
    use super::super::boot::Hosts;
    use super::super::faults::Fault;
    use super::*;

    fn project(polls: u32) -> Project {
        let settings = Settings {
            polls,
            time: Duration::from_secs(600),
        };
        Project::new(settings, Hosts::default())
    }

    fn status(project: &Project, id: u64) -> &'static str {
        project.servers[&id].status(project)
    }

    #[test]
    fn a_server_initializes_starts_and_runs_as_its_actions_are_polled() {
        let mut project = project(2);
        let reply = create(
            &mut project,
            &json!({"name": "web", "server_type": "cx22", "image": "debian-12"}),
        )
        .unwrap();
        assert_eq!(reply.status, 201);
        let body = reply.body.unwrap();
        let id = body["server"]["id"].as_u64().unwrap();
        let create_action = body["action"]["id"].as_u64().unwrap();
        let start_action = body["next_actions"][0]["id"].as_u64().unwrap();
        assert_eq!(body["server"]["status"], "initializing");
        assert!(body["root_password"].is_string());
        // start_server counts no polls before create_server succeeded.
        project.poll_action(start_action);
        project.poll_action(start_action);
        assert_eq!(status(&project, id), "initializing");
        assert_eq!(delete(&mut project, id).unwrap_err().code, "locked");
        project.poll_action(create_action);
        assert_eq!(status(&project, id), "initializing");
        project.poll_action(create_action);
        assert_eq!(status(&project, id), "starting");
        project.poll_action(start_action);
        project.poll_action(start_action);
        assert_eq!(status(&project, id), "running");
        let deleting = delete(&mut project, id).unwrap().body.unwrap();
        assert_eq!(deleting["action"]["command"], "delete_server");
        assert_eq!(status(&project, id), "deleting");
        let delete_action = deleting["action"]["id"].as_u64().unwrap();
        project.poll_action(delete_action);
        project.poll_action(delete_action);
        assert_eq!(get(&project, id).unwrap_err().code, "not_found");
    }

    #[test]
    fn a_failed_create_fails_the_start_and_leaves_the_server_off() {
        let mut project = project(1);
        project.faults.add(Fault::ActionError {
            command: "create_server".into(),
            code: "server_create_failed".into(),
            message: "no".into(),
        });
        let body = create(
            &mut project,
            &json!({"name": "web", "server_type": 104, "image": 114_690_387}),
        )
        .unwrap()
        .body
        .unwrap();
        let id = body["server"]["id"].as_u64().unwrap();
        project.poll_action(body["action"]["id"].as_u64().unwrap());
        assert_eq!(status(&project, id), "off");
        let start = &project.actions[&body["next_actions"][0]["id"].as_u64().unwrap()];
        assert_eq!(
            start.to_json(&project.settings)["error"]["code"],
            "action_failed"
        );
    }

    #[test]
    fn bad_creates_name_their_fields() {
        let mut project = project(1);
        let field = |project: &mut Project, body: Value| {
            let error = create(project, &body).unwrap_err();
            (
                error.code.clone(),
                error.details["fields"][0]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        };
        let missing = create(&mut project, &json!({})).unwrap_err();
        assert_eq!(missing.details["fields"].as_array().unwrap().len(), 3);
        assert_eq!(
            field(
                &mut project,
                json!({"name": "a_b", "server_type": "cx22", "image": "debian-12"})
            ),
            ("invalid_input".into(), "name".into())
        );
        assert_eq!(
            field(
                &mut project,
                json!({"name": "a", "server_type": "cx99", "image": "debian-12"})
            ),
            ("invalid_input".into(), "server_type".into())
        );
        assert_eq!(
            field(
                &mut project,
                json!({"name": "a", "server_type": "cx22", "image": "debian-12", "ssh_keys": ["nope"]})
            ),
            ("invalid_input".into(), "ssh_keys".into())
        );
        create(
            &mut project,
            &json!({"name": "a", "server_type": "cx22", "image": "debian-12"}),
        )
        .unwrap();
        assert_eq!(
            field(
                &mut project,
                json!({"name": "a", "server_type": "cx22", "image": "debian-12"})
            ),
            ("uniqueness_error".into(), "name".into())
        );
    }

    #[test]
    fn hostnames_follow_rfc_1123() {
        for good in ["web", "staging-1", "a.b.c", "A1"] {
            assert!(is_hostname(good), "{good}");
        }
        for bad in ["", "-web", "web-", "a..b", "under_score", &"x".repeat(64)] {
            assert!(!is_hostname(bad), "{bad}");
        }
    }
}
