//! Servers: list, get, create (idempotent, waits for `create_server` and
//! `start_server`, then for `status == running`), delete.

use std::time::{Duration, Instant};

use rhai::{Array, Dynamic, Map};
use serde_json::{Value, json};

use super::actions::SERVER_TIMEOUT;
use super::backoff::PollInterval;
use super::client::{Client, MAX_POLL, Request};
use super::error::{AwaitMap, HcloudError};
use super::labels::{self, Labels};
use super::resource::{self, FIREWALL, SERVER, id_of, text};
use crate::function::{Call, Failure};
use crate::host::{Level, StdlibError};

/// The keys of `create_server`'s spec.
const SPEC: &[&str] = &[
    "name",
    "server_type",
    "image",
    "location",
    "ssh_keys",
    "firewalls",
    "labels",
    "user_data",
    "timeout",
];

/// A server as scripts see it.
pub(crate) fn server_map(server: &Value) -> Map {
    let mut map = resource::base_map(server);
    map.insert("status".into(), text(server, "/status").into());
    map.insert("ipv4".into(), text(server, "/public_net/ipv4/ip").into());
    map.insert("ipv6".into(), text(server, "/public_net/ipv6/ip").into());
    map.insert(
        "server_type".into(),
        text(server, "/server_type/name").into(),
    );
    let location = Some(text(server, "/location/name"))
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| text(server, "/datacenter/location/name"));
    map.insert("location".into(), location.into());
    map.insert("image".into(), text(server, "/image/name").into());
    map.insert(
        "locked".into(),
        Dynamic::from_bool(
            server
                .get("locked")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        ),
    );
    map
}

fn server_value(server: &Value, adopted: bool) -> Dynamic {
    let mut map = server_map(server);
    map.insert("adopted".into(), Dynamic::from_bool(adopted));
    Dynamic::from_map(map)
}

/// What `create_server` was asked for.
#[derive(Debug, Clone)]
struct Spec {
    name: String,
    server_type: String,
    image: String,
    location: Option<String>,
    ssh_keys: Vec<Value>,
    firewalls: Vec<String>,
    labels: Labels,
    user_data: Option<String>,
    timeout: Duration,
}

fn strings_or_ints(
    call: &Call<'_>,
    value: Option<&Dynamic>,
    what: &str,
) -> Result<Vec<Value>, StdlibError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let array = value
        .read_lock::<Array>()
        .map(|array| array.clone())
        .ok_or_else(|| call.bad_arg(0, format!("`{what}` must be an array of names")))?;
    array
        .iter()
        .map(|item| {
            if let Ok(id) = item.as_int() {
                Ok(json!(id))
            } else if item.is_string() {
                Ok(json!(item.clone().into_string().unwrap_or_default()))
            } else {
                Err(call.bad_arg(0, format!("`{what}` must hold names or IDs")))
            }
        })
        .collect()
}

impl Spec {
    fn from_call(call: &Call<'_>) -> Result<Spec, StdlibError> {
        let options = call.options(0, SPEC)?;
        let required = |key: &str| -> Result<String, StdlibError> {
            options
                .string(key)?
                .filter(|value| !value.trim().is_empty())
                .ok_or_else(|| call.bad_arg(0, format!("needs `{key}`")))
        };
        let labels = match options.map("labels")? {
            Some(map) => labels::from_map(&map).map_err(|problem| call.bad_arg(0, problem))?,
            None => Labels::new(),
        };
        let firewalls = strings_or_ints(call, options.get("firewalls"), "firewalls")?
            .into_iter()
            .map(|value| {
                value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_owned)
            })
            .collect();
        Ok(Spec {
            name: required("name")?,
            server_type: required("server_type")?,
            image: required("image")?,
            location: options.string("location")?,
            ssh_keys: strings_or_ints(call, options.get("ssh_keys"), "ssh_keys")?,
            firewalls,
            labels: labels::managed(&labels),
            user_data: options.string("user_data")?,
            timeout: options.duration("timeout")?.unwrap_or(SERVER_TIMEOUT),
        })
    }

    fn what(&self) -> String {
        format!("create server `{}`", self.name)
    }

    /// The firewalls' IDs (names are looked up).
    async fn firewall_ids(&self, client: &Client<'_>) -> Result<Vec<u64>, HcloudError> {
        let mut ids = Vec::new();
        for name in &self.firewalls {
            match name.parse::<u64>() {
                Ok(id) => ids.push(id),
                Err(_) => ids.push(id_of(&client.need(FIREWALL, name).await?)),
            }
        }
        Ok(ids)
    }

    async fn body(&self, client: &Client<'_>) -> Result<Value, HcloudError> {
        let firewalls: Vec<Value> = self
            .firewall_ids(client)
            .await?
            .into_iter()
            .map(|id| json!({"firewall": id}))
            .collect();
        let mut body = json!({
            "name": self.name,
            "server_type": self.server_type,
            "image": self.image,
            "ssh_keys": self.ssh_keys,
            "labels": self.labels,
            "start_after_create": true,
        });
        if !firewalls.is_empty() {
            body["firewalls"] = Value::Array(firewalls);
        }
        if let Some(location) = &self.location {
            body["location"] = json!(location);
        }
        if let Some(user_data) = &self.user_data {
            body["user_data"] = json!(user_data);
        }
        Ok(body)
    }

    async fn create(&self, client: &Client<'_>) -> Result<Dynamic, HcloudError> {
        if let Some(existing) = client.find(SERVER, &self.name).await? {
            return self.adopt(client, &existing).await;
        }
        let body = self.body(client).await?;
        let mut sent_again = false;
        loop {
            match client
                .send(Request::post("/servers", body.clone(), self.what()))
                .await
            {
                Ok(answer) => {
                    let id = answer
                        .pointer("/server/id")
                        .and_then(Value::as_u64)
                        .ok_or_else(|| HcloudError::Shape {
                            what: self.what(),
                            detail: "no `server.id` in the answer".into(),
                        })?;
                    client.log(
                        Level::Info,
                        &format!(
                            "hcloud: created server `{}` (id {id}); waiting for it to start",
                            self.name
                        ),
                    );
                    let ids = super::actions::action_ids(&answer);
                    client
                        .wait_actions(&ids, &self.what(), self.timeout)
                        .await?;
                    let server = wait_running(client, id, &self.name, self.timeout).await?;
                    return Ok(server_value(&server, false));
                }
                Err(HcloudError::Lost { detail, .. }) if !sent_again => {
                    client.log(Level::Warn, &format!("hcloud: the answer to the create of server `{}` was lost ({detail}); looking it up by name before sending again", self.name));
                    if let Some(existing) = client.find(SERVER, &self.name).await? {
                        return self.adopt(client, &existing).await;
                    }
                    sent_again = true;
                }
                Err(error) if error.code() == Some("uniqueness_error") => {
                    // Someone (or a lost earlier answer) made it meanwhile.
                    let Some(existing) = client.find(SERVER, &self.name).await? else {
                        return Err(error);
                    };
                    return self.adopt(client, &existing).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Take over an existing server of this name if it carries our labels:
    /// wait for what it is still doing, then for `running`.
    async fn adopt(&self, client: &Client<'_>, existing: &Value) -> Result<Dynamic, HcloudError> {
        resource::adopt(SERVER, existing, &self.labels)?;
        let id = id_of(existing);
        client.log(
            Level::Info,
            &format!(
                "hcloud: server `{}` exists (id {id}) with this runbook's labels: adopted",
                self.name
            ),
        );
        let running = client
            .list(
                Request::get(
                    format!("/servers/{id}/actions"),
                    format!("actions of server `{}`", self.name),
                )
                .query("status", "running"),
                "actions",
            )
            .await?;
        let ids: Vec<u64> = running.iter().map(id_of).collect();
        if !ids.is_empty() {
            client
                .wait_actions(&ids, &self.what(), self.timeout)
                .await?;
        }
        let server = wait_running(client, id, &self.name, self.timeout).await?;
        Ok(server_value(&server, true))
    }
}

/// Poll the server until its status is `running`.
async fn wait_running(
    client: &Client<'_>,
    id: u64,
    name: &str,
    timeout: Duration,
) -> Result<Value, HcloudError> {
    let started = Instant::now();
    let mut intervals = PollInterval::new(client.settings.first_poll, MAX_POLL);
    loop {
        let body = client
            .send(Request::get(
                format!("/servers/{id}"),
                format!("read server `{name}`"),
            ))
            .await?;
        let server = body.get("server").cloned().unwrap_or(Value::Null);
        match server.get("status").and_then(Value::as_str) {
            Some("running") => return Ok(server),
            Some("off") if started.elapsed() > Duration::from_secs(5) => {
                return Err(HcloudError::Shape {
                    what: format!("start server `{name}`"),
                    detail: "the server is `off` after its actions succeeded".into(),
                });
            }
            _ => {}
        }
        if started.elapsed() >= timeout {
            return Err(HcloudError::WaitTimeout {
                what: format!("server `{name}` to be running"),
                waited: started.elapsed(),
            });
        }
        tokio::time::sleep(intervals.next().unwrap_or(MAX_POLL)).await;
    }
}

/// `hcloud::servers(opts)`.
pub(crate) fn servers(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let options = call.options(0, &["label", "name", "status"])?;
    let selector = labels::selector(options.get("label").unwrap_or(&Dynamic::UNIT))
        .map_err(|problem| call.bad_arg(0, format!("`label` {problem}")))?;
    let mut request = Request::get("/servers", "list servers");
    if let Some(selector) = selector {
        request = request.query("label_selector", selector);
    }
    if let Some(name) = options.string("name")? {
        request = request.query("name", name);
    }
    if let Some(status) = options.string("status")? {
        request = request.query("status", status);
    }
    let client = Client::from_call(call)?;
    let servers = call.block_on(async {
        client
            .list(request, "servers")
            .await
            .map_err(StdlibError::from)
    })?;
    Ok(Dynamic::from_array(
        servers
            .iter()
            .map(|server| Dynamic::from_map(server_map(server)))
            .collect(),
    ))
}

/// `hcloud::server(name)`: the server, or `()`.
pub(crate) fn server(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let name = call.string(0)?;
    let client = Client::from_call(call)?;
    let found =
        call.block_on(async { client.find(SERVER, &name).await.map_err(StdlibError::from) })?;
    Ok(found.map_or(Dynamic::UNIT, |server| {
        Dynamic::from_map(server_map(&server))
    }))
}

pub(crate) fn create_server(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let spec = Spec::from_call(call)?;
    let client = Client::from_call(call)?;
    Ok(call.block_on(async { spec.create(&client).await.map_err(StdlibError::from) })?)
}

pub(crate) fn create_server_preview(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let spec = Spec::from_call(call)?;
    let client = Client::from_call(call)?;
    let (existing, firewalls) = call.block_on(
        async {
            let existing = client.find(SERVER, &spec.name).await?;
            let mut firewalls = Vec::new();
            for name in &spec.firewalls {
                let found = client.find(FIREWALL, name).await?;
                firewalls.push(match found {
                    Some(firewall) => format!("{name} (id {})", id_of(&firewall)),
                    None => format!("{name} (planned)"),
                });
            }
            Ok::<_, HcloudError>((existing, firewalls))
        }
        .await_map(),
    )?;
    if let Some(existing) = existing {
        resource::adopt(SERVER, &existing, &spec.labels).map_err(StdlibError::from)?;
        call.host.plan_detail(&format!(
            "server `{}` exists (id {}, {}, {}) with these labels: adopted, nothing created",
            spec.name,
            id_of(&existing),
            text(&existing, "/status"),
            text(&existing, "/public_net/ipv4/ip")
        ));
        return Ok(server_value(&existing, true));
    }
    let mut lines = vec![format!(
        "create server `{}`: {} from {}{}",
        spec.name,
        spec.server_type,
        spec.image,
        spec.location
            .as_ref()
            .map(|location| format!(" in {location}"))
            .unwrap_or_default()
    )];
    if !spec.ssh_keys.is_empty() {
        let keys: Vec<String> = spec
            .ssh_keys
            .iter()
            .map(|key| key.as_str().map_or_else(|| key.to_string(), str::to_owned))
            .collect();
        lines.push(format!("ssh keys: {}", keys.join(", ")));
    }
    if !firewalls.is_empty() {
        lines.push(format!("firewalls: {}", firewalls.join(", ")));
    }
    lines.push(format!("labels: {}", labels::render(&spec.labels)));
    call.host.plan_detail(&lines.join("\n"));
    Ok(crate::values::placeholder(call.function().returns))
}

/// `hcloud::delete_server(name)`: true when it was deleted, false when there was none.
pub(crate) fn delete_server(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let name = call.string(0)?;
    let client = Client::from_call(call)?;
    let deleted = call.block_on(
        async {
            let Some(server) = client.find(SERVER, &name).await? else {
                return Ok(false);
            };
            let id = id_of(&server);
            let what = format!("delete server `{name}`");
            let answer = client
                .send(Request::delete(format!("/servers/{id}"), what.clone()))
                .await?;
            client
                .wait_actions(
                    &super::actions::action_ids(&answer),
                    &what,
                    super::actions::ACTION_TIMEOUT,
                )
                .await?;
            client.log(
                Level::Info,
                &format!("hcloud: deleted server `{name}` (id {id})"),
            );
            Ok::<_, HcloudError>(true)
        }
        .await_map(),
    )?;
    Ok(Dynamic::from_bool(deleted))
}

pub(crate) fn delete_server_preview(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let name = call.string(0)?;
    let client = Client::from_call(call)?;
    let found =
        call.block_on(async { client.find(SERVER, &name).await.map_err(StdlibError::from) })?;
    let detail = match &found {
        Some(server) => format!(
            "delete server `{name}` (id {}, {}, {})",
            id_of(server),
            text(server, "/status"),
            text(server, "/public_net/ipv4/ip")
        ),
        None => format!("server `{name}` does not exist: nothing to delete"),
    };
    call.host.plan_detail(&detail);
    Ok(Dynamic::from_bool(found.is_some()))
}
