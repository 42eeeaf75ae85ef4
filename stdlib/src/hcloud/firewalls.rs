//! Firewalls: create (idempotent; an adopted one gets the asked-for rules
//! when they differ), apply to a server or a label selector, delete (removed
//! from its resources first).

use rhai::{Array, Dynamic, Map};
use serde_json::{Value, json};

use super::actions::{ACTION_TIMEOUT, action_ids};
use super::client::{Client, Request};
use super::error::{AwaitMap, HcloudError};
use super::labels::{self, Labels};
use super::resource::{self, FIREWALL, SERVER, id_of, text};
use crate::function::{Call, Failure};
use crate::host::{Level, StdlibError};

const SPEC: &[&str] = &["name", "rules", "labels", "apply_to"];

/// A firewall as scripts see it: `#{id, name, labels, created, rules, applied_to, adopted}`.
fn firewall_value(firewall: &Value, adopted: bool) -> Dynamic {
    let mut map = resource::base_map(firewall);
    map.insert(
        "rules".into(),
        crate::values::from_json(firewall.get("rules").cloned().unwrap_or(json!([]))),
    );
    let applied: Array = firewall
        .get("applied_to")
        .and_then(Value::as_array)
        .map(|targets| {
            targets
                .iter()
                .map(|target| target_text(target).into())
                .collect()
        })
        .unwrap_or_default();
    map.insert("applied_to".into(), Dynamic::from_array(applied));
    map.insert("adopted".into(), Dynamic::from_bool(adopted));
    Dynamic::from_map(map)
}

/// `server 42` or `label_selector env=staging`, for messages.
fn target_text(target: &Value) -> String {
    match target.get("type").and_then(Value::as_str) {
        Some("server") => format!(
            "server {}",
            target
                .pointer("/server/id")
                .and_then(Value::as_u64)
                .unwrap_or(0)
        ),
        Some("label_selector") => format!(
            "label_selector {}",
            text(target, "/label_selector/selector")
        ),
        other => other.unwrap_or("unknown").to_owned(),
    }
}

/// A rule in a form that compares equal however the API orders its fields.
fn normalized(rules: &Value) -> Vec<String> {
    let mut out: Vec<String> = rules
        .as_array()
        .map(|rules| {
            rules
                .iter()
                .map(|rule| {
                    let ips = |key: &str| {
                        let mut ips: Vec<String> = rule
                            .get(key)
                            .and_then(Value::as_array)
                            .map(|ips| {
                                ips.iter()
                                    .filter_map(Value::as_str)
                                    .map(str::to_owned)
                                    .collect()
                            })
                            .unwrap_or_default();
                        ips.sort();
                        ips.join(",")
                    };
                    format!(
                        "{} {} {} src[{}] dst[{}]",
                        text(rule, "/direction"),
                        text(rule, "/protocol"),
                        text(rule, "/port"),
                        ips("source_ips"),
                        ips("destination_ips")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

struct Spec {
    name: String,
    rules: Value,
    labels: Labels,
    apply_to: Vec<String>,
}

impl Spec {
    fn from_call(call: &Call<'_>) -> Result<Spec, StdlibError> {
        let options = call.options(0, SPEC)?;
        let name = options
            .string("name")?
            .filter(|name| !name.trim().is_empty())
            .ok_or_else(|| call.bad_arg(0, "needs `name`"))?;
        let rules = options
            .get("rules")
            .map_or(json!([]), |rules| crate::values::to_json(rules, false));
        if !rules.is_array() {
            return Err(call.bad_arg(0, "`rules` must be an array of rule maps"));
        }
        let labels = match options.map("labels")? {
            Some(map) => labels::from_map(&map).map_err(|problem| call.bad_arg(0, problem))?,
            None => Labels::new(),
        };
        let apply_to = match options.get("apply_to") {
            None => Vec::new(),
            Some(value) => value
                .read_lock::<Array>()
                .map(|items| items.iter().map(ToString::to_string).collect())
                .or_else(|| value.is_string().then(|| vec![value.to_string()]))
                .ok_or_else(|| {
                    call.bad_arg(
                        0,
                        "`apply_to` must be a server name, a selector or an array of them",
                    )
                })?,
        };
        Ok(Spec {
            name,
            rules,
            labels: labels::managed(&labels),
            apply_to,
        })
    }

    async fn create(&self, client: &Client<'_>) -> Result<Dynamic, HcloudError> {
        let what = format!("create firewall `{}`", self.name);
        let existing = match client.find(FIREWALL, &self.name).await? {
            Some(existing) => Some(existing),
            None => {
                let mut apply_to = Vec::new();
                for target in &self.apply_to {
                    apply_to.push(target_json(client, target).await?);
                }
                let body = json!({"name": self.name, "labels": self.labels, "rules": self.rules, "apply_to": apply_to});
                match client
                    .send(Request::post("/firewalls", body, what.clone()))
                    .await
                {
                    Ok(answer) => {
                        client
                            .wait_actions(&action_ids(&answer), &what, ACTION_TIMEOUT)
                            .await?;
                        let id = answer
                            .pointer("/firewall/id")
                            .and_then(Value::as_u64)
                            .unwrap_or(0);
                        client.log(
                            Level::Info,
                            &format!("hcloud: created firewall `{}` (id {id})", self.name),
                        );
                        let firewall = client
                            .send(Request::get(
                                format!("/firewalls/{id}"),
                                format!("read firewall `{}`", self.name),
                            ))
                            .await?;
                        return Ok(firewall_value(
                            firewall.get("firewall").unwrap_or(&Value::Null),
                            false,
                        ));
                    }
                    Err(error)
                        if matches!(error, HcloudError::Lost { .. })
                            || error.code() == Some("uniqueness_error") =>
                    {
                        Some(client.find(FIREWALL, &self.name).await?.ok_or(error)?)
                    }
                    Err(error) => return Err(error),
                }
            }
        };
        let existing = existing.unwrap_or(Value::Null);
        resource::adopt(FIREWALL, &existing, &self.labels)?;
        let id = id_of(&existing);
        let mut current = existing.clone();
        if normalized(existing.get("rules").unwrap_or(&Value::Null)) != normalized(&self.rules) {
            let answer = client
                .send(Request::post(
                    format!("/firewalls/{id}/actions/set_rules"),
                    json!({"rules": self.rules}),
                    format!("set the rules of firewall `{}`", self.name),
                ))
                .await?;
            client
                .wait_actions(&action_ids(&answer), &what, ACTION_TIMEOUT)
                .await?;
            client.log(
                Level::Info,
                &format!(
                    "hcloud: firewall `{}` (id {id}) adopted; its rules were updated",
                    self.name
                ),
            );
            current = client
                .send(Request::get(
                    format!("/firewalls/{id}"),
                    format!("read firewall `{}`", self.name),
                ))
                .await?
                .get("firewall")
                .cloned()
                .unwrap_or(Value::Null);
        } else {
            client.log(Level::Info, &format!("hcloud: firewall `{}` exists (id {id}) with this runbook's labels and rules: adopted", self.name));
        }
        for target in &self.apply_to {
            apply(client, &current, target).await?;
        }
        Ok(firewall_value(&current, true))
    }
}

/// The `apply_to` entry for a server name or a label selector.
async fn target_json(client: &Client<'_>, target: &str) -> Result<Value, HcloudError> {
    if labels::is_selector(target) {
        return Ok(json!({"type": "label_selector", "label_selector": {"selector": target}}));
    }
    let server = client.need(SERVER, target).await?;
    Ok(json!({"type": "server", "server": {"id": id_of(&server)}}))
}

fn same_target(a: &Value, b: &Value) -> bool {
    target_text(a) == target_text(b)
}

/// Apply `firewall` to `target`; false when it already applied.
async fn apply(client: &Client<'_>, firewall: &Value, target: &str) -> Result<bool, HcloudError> {
    let name = text(firewall, "/name");
    let entry = target_json(client, target).await?;
    let applied = firewall
        .get("applied_to")
        .and_then(Value::as_array)
        .is_some_and(|targets| targets.iter().any(|known| same_target(known, &entry)));
    if applied {
        return Ok(false);
    }
    let what = format!("apply firewall `{name}` to {target}");
    let id = id_of(firewall);
    match client
        .send(Request::post(
            format!("/firewalls/{id}/actions/apply_to_resources"),
            json!({"apply_to": [entry]}),
            what.clone(),
        ))
        .await
    {
        Ok(answer) => {
            client
                .wait_actions(&action_ids(&answer), &what, ACTION_TIMEOUT)
                .await?;
            Ok(true)
        }
        Err(error) if error.code() == Some("firewall_already_applied") => Ok(false),
        Err(error) => Err(error),
    }
}

/// `hcloud::firewalls(opts)`.
pub(crate) fn firewalls(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let options = call.options(0, &["label", "name"])?;
    let mut request = Request::get("/firewalls", "list firewalls");
    if let Some(selector) = labels::selector(options.get("label").unwrap_or(&Dynamic::UNIT))
        .map_err(|problem| call.bad_arg(0, format!("`label` {problem}")))?
    {
        request = request.query("label_selector", selector);
    }
    if let Some(name) = options.string("name")? {
        request = request.query("name", name);
    }
    let client = Client::from_call(call)?;
    let found = call.block_on(client.list(request, "firewalls").await_map())?;
    Ok(Dynamic::from_array(
        found
            .iter()
            .map(|firewall| firewall_value(firewall, false))
            .collect(),
    ))
}

pub(crate) fn create_firewall(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let spec = Spec::from_call(call)?;
    let client = Client::from_call(call)?;
    Ok(call.block_on(spec.create(&client).await_map())?)
}

pub(crate) fn create_firewall_preview(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let spec = Spec::from_call(call)?;
    let client = Client::from_call(call)?;
    let existing = call.block_on(client.find(FIREWALL, &spec.name).await_map())?;
    let rules = normalized(&spec.rules);
    let detail = match &existing {
        Some(existing) => {
            resource::adopt(FIREWALL, existing, &spec.labels).map_err(StdlibError::from)?;
            let same = normalized(existing.get("rules").unwrap_or(&Value::Null)) == rules;
            let mut detail = format!(
                "firewall `{}` exists (id {}) with these labels: adopted",
                spec.name,
                id_of(existing)
            );
            if same {
                detail.push_str(", rules unchanged");
            } else {
                detail.push_str(&format!(
                    "; its rules would be replaced by:\n  {}",
                    rules.join("\n  ")
                ));
            }
            detail
        }
        None => format!(
            "create firewall `{}` with {} rule(s):\n  {}\nlabels: {}",
            spec.name,
            rules.len(),
            rules.join("\n  "),
            labels::render(&spec.labels)
        ),
    };
    call.host.plan_detail(&detail);
    Ok(existing.map_or_else(
        || crate::values::placeholder(call.function().returns),
        |found| firewall_value(&found, true),
    ))
}

fn apply_args(call: &Call<'_>) -> Result<(String, String), StdlibError> {
    let name = call.string(0)?;
    let target = call.arg(1);
    let target = if let Some(map) = target.read_lock::<Map>() {
        // A server map from `hcloud::server` / `create_server`.
        map.get("name")
            .map(ToString::to_string)
            .ok_or_else(|| call.bad_arg(1, "a server map needs its `name`"))?
    } else if target.is_string() {
        target.to_string()
    } else {
        return Err(call.bad_arg(1, "must be a server name, a server map or a label selector"));
    };
    Ok((name, target))
}

/// `hcloud::apply_firewall(name, server_or_selector)`: true when it was applied now.
pub(crate) fn apply_firewall(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let (name, target) = apply_args(call)?;
    let client = Client::from_call(call)?;
    let changed = call.block_on(
        async {
            let firewall = client.need(FIREWALL, &name).await?;
            apply(&client, &firewall, &target).await
        }
        .await_map(),
    )?;
    Ok(Dynamic::from_bool(changed))
}

pub(crate) fn apply_firewall_preview(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let (name, target) = apply_args(call)?;
    let client = Client::from_call(call)?;
    let firewall = call.block_on(client.find(FIREWALL, &name).await_map())?;
    let detail = match &firewall {
        Some(firewall) => format!(
            "apply firewall `{name}` (id {}) to {target}",
            id_of(firewall)
        ),
        None => format!("apply firewall `{name}` (planned) to {target}"),
    };
    call.host.plan_detail(&detail);
    Ok(Dynamic::TRUE)
}

/// `hcloud::delete_firewall(name)`: true when deleted, false when there was none.
pub(crate) fn delete_firewall(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let name = call.string(0)?;
    let client = Client::from_call(call)?;
    let deleted = call.block_on(
        async {
            let Some(firewall) = client.find(FIREWALL, &name).await? else {
                return Ok(false);
            };
            let id = id_of(&firewall);
            let targets: Vec<Value> = firewall
                .get("applied_to")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|target| {
                    let mut target = target;
                    if let Some(object) = target.as_object_mut() {
                        object.remove("applied_to_resources");
                    }
                    target
                })
                .collect();
            if !targets.is_empty() {
                let what = format!("remove firewall `{name}` from its resources");
                let answer = client
                    .send(Request::post(
                        format!("/firewalls/{id}/actions/remove_from_resources"),
                        json!({"remove_from": targets}),
                        what.clone(),
                    ))
                    .await?;
                client
                    .wait_actions(&action_ids(&answer), &what, ACTION_TIMEOUT)
                    .await?;
            }
            client
                .send(Request::delete(
                    format!("/firewalls/{id}"),
                    format!("delete firewall `{name}`"),
                ))
                .await?;
            client.log(
                Level::Info,
                &format!("hcloud: deleted firewall `{name}` (id {id})"),
            );
            Ok::<_, HcloudError>(true)
        }
        .await_map(),
    )?;
    Ok(Dynamic::from_bool(deleted))
}

pub(crate) fn delete_firewall_preview(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let name = call.string(0)?;
    let client = Client::from_call(call)?;
    let found = call.block_on(client.find(FIREWALL, &name).await_map())?;
    let detail = match &found {
        Some(firewall) => {
            let applied: Vec<String> = firewall
                .get("applied_to")
                .and_then(Value::as_array)
                .map(|targets| targets.iter().map(target_text).collect())
                .unwrap_or_default();
            format!(
                "delete firewall `{name}` (id {}){}",
                id_of(firewall),
                if applied.is_empty() {
                    String::new()
                } else {
                    format!(", removing it from {}", applied.join(", "))
                }
            )
        }
        None => format!("firewall `{name}` does not exist: nothing to delete"),
    };
    call.host.plan_detail(&detail);
    Ok(Dynamic::from_bool(found.is_some()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_compare_whatever_the_order() {
        let a = json!([{"direction": "in", "protocol": "tcp", "port": "22", "source_ips": ["0.0.0.0/0", "::/0"]}, {"direction": "in", "protocol": "tcp", "port": "6443", "source_ips": ["1.2.3.4/32"]}]);
        let b = json!([{"port": "6443", "protocol": "tcp", "direction": "in", "source_ips": ["1.2.3.4/32"], "destination_ips": []}, {"source_ips": ["::/0", "0.0.0.0/0"], "direction": "in", "protocol": "tcp", "port": "22", "description": null}]);
        assert_eq!(normalized(&a), normalized(&b));
        let c = json!([{"direction": "in", "protocol": "tcp", "port": "23", "source_ips": ["0.0.0.0/0"]}]);
        assert_ne!(normalized(&a), normalized(&c));
        assert_eq!(
            target_text(&json!({"type": "server", "server": {"id": 4}})),
            "server 4"
        );
    }
}
