//! `/firewalls`: create with `rules` and `apply_to`, list, get, update,
//! delete (`resource_in_use` while applied), and the actions
//! `apply_to_resources`, `remove_from_resources` and `set_rules`.
//!
//! A firewall applies to servers named directly and to every server its
//! label selectors match; each application is an `apply_firewall` action
//! on the firewall and the server (the server shows the firewall as
//! `pending` until it succeeded). Applying to or removing from a server
//! whose actions run is `locked`, like any write to that server.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::actions::timestamp;
use super::errors::ApiError;
use super::project::{self, Project};
use super::reply::{self, Origin, Reply};
use super::servers::Server;
use crate::labels::LabelSelector;

/// The most rules one firewall holds.
const MAX_RULES: usize = 50;

/// The most CIDRs one rule's IP list holds.
const MAX_IPS: usize = 100;

#[derive(Debug, Clone)]
pub(crate) struct Firewall {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) labels: Map<String, Value>,
    pub(crate) created: DateTime<Utc>,
    pub(crate) rules: Vec<Value>,
    /// Servers it was applied to by ID.
    pub(crate) servers: Vec<u64>,
    /// Label selectors it was applied to.
    pub(crate) selectors: Vec<String>,
}

impl Firewall {
    /// Whether it applies to `server`, by ID or through a selector.
    pub(crate) fn applies_to(&self, server: &Server) -> bool {
        self.servers.contains(&server.id)
            || self.selectors.iter().any(|text| {
                LabelSelector::parse(text)
                    .is_ok_and(|selector| selector.matches_labels(Some(&server.labels)))
            })
    }

    fn in_use(&self) -> bool {
        !self.servers.is_empty() || !self.selectors.is_empty()
    }

    fn to_json(&self, project: &Project) -> Value {
        let server = |id: u64| json!({"type": "server", "server": {"id": id}});
        let mut applied: Vec<Value> = self.servers.iter().map(|id| server(*id)).collect();
        for selector in &self.selectors {
            let matched: Vec<Value> = project
                .servers
                .values()
                .filter(|candidate| {
                    LabelSelector::parse(selector)
                        .is_ok_and(|parsed| parsed.matches_labels(Some(&candidate.labels)))
                })
                .map(|candidate| server(candidate.id))
                .collect();
            applied.push(json!({
                "type": "label_selector",
                "label_selector": {"selector": selector},
                "applied_to_resources": matched,
            }));
        }
        json!({
            "id": self.id, "name": self.name, "labels": self.labels,
            "created": timestamp(&self.created), "rules": self.rules, "applied_to": applied,
        })
    }
}

pub(crate) fn list(project: &Project, origin: &Origin<'_>) -> Result<Reply, ApiError> {
    let items = project
        .firewalls
        .values()
        .map(|firewall| firewall.to_json(project))
        .collect();
    reply::list("firewalls", items, origin)
}

pub(crate) fn get(project: &Project, id: u64) -> Result<Reply, ApiError> {
    let firewall = find(project, id)?;
    Ok(Reply::ok(reply::one("firewall", firewall.to_json(project))))
}

pub(crate) fn create(project: &mut Project, body: &Value) -> Result<Reply, ApiError> {
    let Some(name) = body.get("name").and_then(Value::as_str) else {
        return Err(ApiError::invalid(
            "name",
            "Missing data for required field.",
        ));
    };
    if name.is_empty() || name.len() > 128 {
        return Err(ApiError::invalid(
            "name",
            "Length must be between 1 and 128.",
        ));
    }
    let labels = project::labels(body)?;
    let rules = rules(body.get("rules"))?;
    let targets = targets(project, body.get("apply_to"), "apply_to")?;
    if project
        .firewalls
        .values()
        .any(|firewall| firewall.name == name)
    {
        return Err(ApiError::uniqueness(
            "name",
            "firewall name is already used",
        ));
    }
    let id = project.next_id();
    project.firewalls.insert(
        id,
        Firewall {
            id,
            name: name.to_owned(),
            labels,
            created: Utc::now(),
            rules,
            servers: Vec::new(),
            selectors: Vec::new(),
        },
    );
    let mut actions = Vec::new();
    if body.get("rules").is_some_and(|rules| !rules.is_null()) {
        actions.push(project.start_action("set_firewall_rules", vec![(id, "firewall")]));
    }
    actions.extend(apply(project, id, &targets)?);
    let firewall = find(project, id)?.to_json(project);
    Ok(Reply::created(
        json!({"firewall": firewall, "actions": actions_json(project, &actions)}),
    ))
}

/// `PUT /firewalls/{id}`: `name` and `labels`.
pub(crate) fn update(project: &mut Project, id: u64, body: &Value) -> Result<Reply, ApiError> {
    find(project, id)?;
    let labels = body
        .get("labels")
        .map(|_| project::labels(body))
        .transpose()?;
    let name = body.get("name").and_then(Value::as_str);
    if let Some(name) = name
        && project
            .firewalls
            .values()
            .any(|other| other.name == name && other.id != id)
    {
        return Err(ApiError::uniqueness(
            "name",
            "firewall name is already used",
        ));
    }
    if let Some(firewall) = project.firewalls.get_mut(&id) {
        if let Some(name) = name {
            name.clone_into(&mut firewall.name);
        }
        if let Some(labels) = labels {
            firewall.labels = labels;
        }
    }
    get(project, id)
}

pub(crate) fn delete(project: &mut Project, id: u64) -> Result<Reply, ApiError> {
    if find(project, id)?.in_use() {
        return Err(ApiError::new("resource_in_use", "firewall is still in use"));
    }
    project.firewalls.remove(&id);
    Ok(Reply::no_content())
}

/// `POST /firewalls/{id}/actions/{name}`.
pub(crate) fn action(
    project: &mut Project,
    id: u64,
    name: &str,
    body: &Value,
) -> Result<Reply, ApiError> {
    find(project, id)?;
    let actions = match name {
        "apply_to_resources" => {
            let targets = targets(project, body.get("apply_to"), "apply_to")?;
            if targets.is_empty() {
                return Err(ApiError::invalid(
                    "apply_to",
                    "Missing data for required field.",
                ));
            }
            apply(project, id, &targets)?
        }
        "remove_from_resources" => {
            let targets = targets(project, body.get("remove_from"), "remove_from")?;
            if targets.is_empty() {
                return Err(ApiError::invalid(
                    "remove_from",
                    "Missing data for required field.",
                ));
            }
            remove(project, id, &targets)?
        }
        "set_rules" => {
            let rules = rules(body.get("rules"))?;
            let servers = applied_servers(project, id);
            if let Some(firewall) = project.firewalls.get_mut(&id) {
                firewall.rules = rules;
            }
            let mut actions =
                vec![project.start_action("set_firewall_rules", vec![(id, "firewall")])];
            for server in servers {
                actions.push(
                    project
                        .start_action("apply_firewall", vec![(id, "firewall"), (server, "server")]),
                );
            }
            actions
        }
        _ => return Err(ApiError::no_route()),
    };
    Ok(Reply::created(
        json!({"actions": actions_json(project, &actions)}),
    ))
}

/// `GET /firewalls/{id}/actions`; reading them counts as polling them.
pub(crate) fn actions(
    project: &mut Project,
    id: u64,
    origin: &Origin<'_>,
) -> Result<Reply, ApiError> {
    find(project, id)?;
    let ids: Vec<u64> = project
        .actions
        .values()
        .filter(|action| action.touches(id, "firewall"))
        .map(|action| action.id)
        .collect();
    for action in &ids {
        project.poll_action(*action);
    }
    let items = actions_json(project, &ids);
    reply::list("actions", items, origin)
}

fn find(project: &Project, id: u64) -> Result<&Firewall, ApiError> {
    project
        .firewalls
        .get(&id)
        .ok_or_else(|| ApiError::not_found("firewall"))
}

fn actions_json(project: &Project, ids: &[u64]) -> Vec<Value> {
    let settings = project.settings;
    ids.iter()
        .filter_map(|id| project.actions.get(id))
        .map(|action| action.to_json(&settings))
        .collect()
}

/// The servers a firewall applies to now.
fn applied_servers(project: &Project, id: u64) -> Vec<u64> {
    let Some(firewall) = project.firewalls.get(&id) else {
        return Vec::new();
    };
    project
        .servers
        .values()
        .filter(|server| firewall.applies_to(server))
        .map(|server| server.id)
        .collect()
}

/// A resource of `apply_to` / `remove_from`.
#[derive(Debug, Clone, PartialEq)]
enum Target {
    Server(u64),
    Selector(String),
}

fn targets(project: &Project, list: Option<&Value>, field: &str) -> Result<Vec<Target>, ApiError> {
    let Some(list) = list.filter(|list| !list.is_null()) else {
        return Ok(Vec::new());
    };
    let list = list
        .as_array()
        .ok_or_else(|| ApiError::invalid(field, "must be a list"))?;
    let mut targets = Vec::new();
    for entry in list {
        match entry["type"].as_str() {
            Some("server") => {
                let id = entry["server"]["id"]
                    .as_u64()
                    .ok_or_else(|| ApiError::invalid(field, "server.id is required"))?;
                if !project.servers.contains_key(&id) {
                    return Err(ApiError::new(
                        "firewall_resource_not_found",
                        format!("server {id} not found"),
                    ));
                }
                targets.push(Target::Server(id));
            }
            Some("label_selector") => {
                let selector = entry["label_selector"]["selector"]
                    .as_str()
                    .ok_or_else(|| {
                        ApiError::invalid(field, "label_selector.selector is required")
                    })?;
                LabelSelector::parse(selector).map_err(|why| ApiError::invalid(field, &why))?;
                targets.push(Target::Selector(selector.to_owned()));
            }
            _ => {
                return Err(ApiError::invalid(
                    field,
                    "type must be server or label_selector",
                ));
            }
        }
    }
    Ok(targets)
}

fn apply(project: &mut Project, id: u64, targets: &[Target]) -> Result<Vec<u64>, ApiError> {
    let before = applied_servers(project, id);
    for target in targets {
        let already = project
            .firewalls
            .get(&id)
            .is_some_and(|firewall| match target {
                Target::Server(server) => firewall.servers.contains(server),
                Target::Selector(selector) => firewall.selectors.contains(selector),
            });
        if already {
            return Err(ApiError::new(
                "firewall_already_applied",
                "firewall is already applied",
            ));
        }
        if let Target::Server(server) = target
            && project.server_locked(*server)
        {
            return Err(ApiError::locked());
        }
    }
    if let Some(firewall) = project.firewalls.get_mut(&id) {
        for target in targets {
            match target {
                Target::Server(server) => firewall.servers.push(*server),
                Target::Selector(selector) => firewall.selectors.push(selector.clone()),
            }
        }
    }
    let after = applied_servers(project, id);
    let mut actions = Vec::new();
    for server in after.into_iter().filter(|server| !before.contains(server)) {
        actions.push(
            project.start_action("apply_firewall", vec![(id, "firewall"), (server, "server")]),
        );
    }
    Ok(actions)
}

fn remove(project: &mut Project, id: u64, targets: &[Target]) -> Result<Vec<u64>, ApiError> {
    let before = applied_servers(project, id);
    for target in targets {
        let applied = project
            .firewalls
            .get(&id)
            .is_some_and(|firewall| match target {
                Target::Server(server) => firewall.servers.contains(server),
                Target::Selector(selector) => firewall.selectors.contains(selector),
            });
        if !applied {
            return Err(ApiError::new(
                "firewall_already_removed",
                "firewall is not applied there",
            ));
        }
        if let Target::Server(server) = target
            && project.server_locked(*server)
        {
            return Err(ApiError::locked());
        }
    }
    if let Some(firewall) = project.firewalls.get_mut(&id) {
        for target in targets {
            match target {
                Target::Server(server) => firewall.servers.retain(|other| other != server),
                Target::Selector(selector) => firewall.selectors.retain(|other| other != selector),
            }
        }
    }
    let after = applied_servers(project, id);
    let mut actions = Vec::new();
    for server in before.into_iter().filter(|server| !after.contains(server)) {
        actions.push(project.start_action(
            "remove_firewall",
            vec![(id, "firewall"), (server, "server")],
        ));
    }
    Ok(actions)
}

/// Check `rules` and answer them as the API stores them (every key present).
fn rules(rules: Option<&Value>) -> Result<Vec<Value>, ApiError> {
    let Some(rules) = rules.filter(|rules| !rules.is_null()) else {
        return Ok(Vec::new());
    };
    let rules = rules
        .as_array()
        .ok_or_else(|| ApiError::invalid("rules", "must be a list"))?;
    if rules.len() > MAX_RULES {
        return Err(ApiError::invalid(
            "rules",
            &format!("at most {MAX_RULES} rules"),
        ));
    }
    rules
        .iter()
        .enumerate()
        .map(|(index, rule)| checked_rule(index, rule))
        .collect()
}

fn checked_rule(index: usize, rule: &Value) -> Result<Value, ApiError> {
    let field = |name: &str| format!("rules[{index}].{name}");
    let direction = rule["direction"].as_str().unwrap_or_default();
    if !["in", "out"].contains(&direction) {
        return Err(ApiError::invalid(&field("direction"), "must be in or out"));
    }
    let protocol = rule["protocol"].as_str().unwrap_or_default();
    if !["tcp", "udp", "icmp", "esp", "gre"].contains(&protocol) {
        return Err(ApiError::invalid(
            &field("protocol"),
            "must be tcp, udp, icmp, esp or gre",
        ));
    }
    let port = rule.get("port").and_then(Value::as_str);
    match (protocol, port) {
        ("tcp" | "udp", Some(port)) if valid_port(port) => {}
        ("tcp" | "udp", _) => {
            return Err(ApiError::invalid(
                &field("port"),
                "a port or range like 1024-5000 is required",
            ));
        }
        (_, Some(_)) => {
            return Err(ApiError::invalid(
                &field("port"),
                "only tcp and udp have ports",
            ));
        }
        (_, None) => {}
    }
    let (wanted, other) = if direction == "in" {
        ("source_ips", "destination_ips")
    } else {
        ("destination_ips", "source_ips")
    };
    let ips = ip_list(rule.get(wanted), &field(wanted))?;
    if ips.is_empty() {
        return Err(ApiError::invalid(
            &field(wanted),
            "at least one CIDR is required",
        ));
    }
    if !ip_list(rule.get(other), &field(other))?.is_empty() {
        return Err(ApiError::invalid(
            &field(other),
            &format!("not allowed for direction {direction}"),
        ));
    }
    let mut stored = json!({
        "direction": direction, "protocol": protocol, "port": port,
        "source_ips": [], "destination_ips": [],
        "description": rule.get("description").cloned().unwrap_or(Value::Null),
    });
    stored[wanted] = Value::from(ips);
    Ok(stored)
}

fn valid_port(port: &str) -> bool {
    let number = |text: &str| text.parse::<u16>().is_ok_and(|n| n >= 1);
    port == "any"
        || number(port)
        || port.split_once('-').is_some_and(|(low, high)| {
            number(low) && number(high) && low.parse::<u16>().ok() <= high.parse::<u16>().ok()
        })
}

fn ip_list(list: Option<&Value>, field: &str) -> Result<Vec<String>, ApiError> {
    let Some(list) = list.filter(|list| !list.is_null()) else {
        return Ok(Vec::new());
    };
    let list = list
        .as_array()
        .ok_or_else(|| ApiError::invalid(field, "must be a list"))?;
    if list.len() > MAX_IPS {
        return Err(ApiError::invalid(
            field,
            &format!("at most {MAX_IPS} CIDRs"),
        ));
    }
    list.iter()
        .map(|ip| {
            let text = ip.as_str().unwrap_or_default();
            let (address, prefix) = text.split_once('/').unwrap_or((text, ""));
            let bits = match address.parse::<IpAddr>() {
                Ok(IpAddr::V4(_)) => 32,
                Ok(IpAddr::V6(_)) => 128,
                Err(_) => return Err(ApiError::invalid(field, &format!("'{text}' is not a CIDR"))),
            };
            match prefix.parse::<u8>() {
                Ok(length) if length <= bits => Ok(text.to_owned()),
                _ => Err(ApiError::invalid(field, &format!("'{text}' is not a CIDR"))),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_checked_and_stored_complete() {
        let stored = rules(Some(&json!([
            {"direction": "in", "protocol": "tcp", "port": "22", "source_ips": ["0.0.0.0/0", "::/0"]},
            {"direction": "in", "protocol": "icmp", "source_ips": ["10.0.0.0/8"], "description": "ping"},
        ])))
        .unwrap();
        assert_eq!(
            stored[0],
            json!({"direction": "in", "protocol": "tcp", "port": "22", "source_ips": ["0.0.0.0/0", "::/0"],
                   "destination_ips": [], "description": null})
        );
        assert_eq!(stored[1]["port"], Value::Null);
        let field_of = |rule: Value| -> String {
            let error = rules(Some(&json!([rule]))).unwrap_err();
            assert_eq!(error.code, "invalid_input");
            error.details["fields"][0]["name"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(
            field_of(json!({"direction": "up", "protocol": "tcp"})),
            "rules[0].direction"
        );
        assert_eq!(
            field_of(json!({"direction": "in", "protocol": "tcp", "source_ips": ["0.0.0.0/0"]})),
            "rules[0].port"
        );
        assert_eq!(
            field_of(
                json!({"direction": "in", "protocol": "icmp", "port": "1", "source_ips": ["0.0.0.0/0"]})
            ),
            "rules[0].port"
        );
        assert_eq!(
            field_of(json!({"direction": "in", "protocol": "tcp", "port": "1-2"})),
            "rules[0].source_ips"
        );
        assert_eq!(
            field_of(
                json!({"direction": "in", "protocol": "tcp", "port": "22", "source_ips": ["1.2.3.4/40"]})
            ),
            "rules[0].source_ips"
        );
        assert_eq!(
            field_of(
                json!({"direction": "out", "protocol": "tcp", "port": "9-1", "destination_ips": ["::/0"]})
            ),
            "rules[0].port"
        );
    }
}
