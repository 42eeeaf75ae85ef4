//! SSH keys: list, create (idempotent by name and key), delete.

use rhai::Dynamic;
use serde_json::{Value, json};

use super::client::{Client, Request};
use super::error::{AwaitMap, HcloudError};
use super::labels::{self, Labels};
use super::resource::{self, SSH_KEY, id_of, text};
use crate::function::{Call, Failure};
use crate::host::{Level, StdlibError};

fn key_value(key: &Value, adopted: bool) -> Dynamic {
    let mut map = resource::base_map(key);
    map.insert("fingerprint".into(), text(key, "/fingerprint").into());
    map.insert("public_key".into(), text(key, "/public_key").into());
    map.insert("adopted".into(), Dynamic::from_bool(adopted));
    Dynamic::from_map(map)
}

/// `ssh-ed25519 AAAA...` without the comment: what makes two keys the same.
pub(crate) fn key_material(public_key: &str) -> String {
    public_key
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn ssh_keys(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let options = call.options(0, &["label"])?;
    let mut request = Request::get("/ssh_keys", "list ssh keys");
    if let Some(selector) = labels::selector(options.get("label").unwrap_or(&Dynamic::UNIT))
        .map_err(|problem| call.bad_arg(0, format!("`label` {problem}")))?
    {
        request = request.query("label_selector", selector);
    }
    let client = Client::from_call(call)?;
    let keys = call.block_on(client.list(request, "ssh_keys").await_map())?;
    Ok(Dynamic::from_array(
        keys.iter().map(|key| key_value(key, false)).collect(),
    ))
}

struct Spec {
    name: String,
    public_key: String,
    labels: Labels,
}

impl Spec {
    fn from_call(call: &Call<'_>) -> Result<Spec, StdlibError> {
        let name = call.string(0)?;
        let public_key = call.string(1)?.trim().to_owned();
        if key_material(&public_key).split(' ').count() != 2 {
            return Err(call.bad_arg(
                1,
                "must be an OpenSSH public key (`ssh-ed25519 AAAA... comment`)",
            ));
        }
        let options = call.options(2, &["labels"])?;
        let labels = match options.map("labels")? {
            Some(map) => labels::from_map(&map).map_err(|problem| call.bad_arg(2, problem))?,
            None => Labels::new(),
        };
        Ok(Spec {
            name,
            public_key,
            labels: labels::managed(&labels),
        })
    }

    fn check(&self, existing: &Value) -> Result<(), HcloudError> {
        resource::adopt(SSH_KEY, existing, &self.labels)?;
        if key_material(&text(existing, "/public_key")) != key_material(&self.public_key) {
            return Err(HcloudError::Foreign {
                kind: SSH_KEY.noun,
                name: self.name.clone(),
                id: id_of(existing),
                found: "the same labels but another public key".into(),
            });
        }
        Ok(())
    }

    async fn create(&self, client: &Client<'_>) -> Result<Dynamic, HcloudError> {
        if let Some(existing) = client.find(SSH_KEY, &self.name).await? {
            self.check(&existing)?;
            client.log(
                Level::Info,
                &format!(
                    "hcloud: ssh key `{}` exists (id {}): adopted",
                    self.name,
                    id_of(&existing)
                ),
            );
            return Ok(key_value(&existing, true));
        }
        let body = json!({"name": self.name, "public_key": self.public_key, "labels": self.labels});
        let what = format!("create ssh key `{}`", self.name);
        match client.send(Request::post("/ssh_keys", body, what)).await {
            Ok(answer) => {
                let key = answer.get("ssh_key").cloned().unwrap_or(Value::Null);
                client.log(
                    Level::Info,
                    &format!(
                        "hcloud: created ssh key `{}` (id {})",
                        self.name,
                        id_of(&key)
                    ),
                );
                Ok(key_value(&key, false))
            }
            Err(error)
                if matches!(error, HcloudError::Lost { .. })
                    || error.code() == Some("uniqueness_error") =>
            {
                // Same name made meanwhile, or the same key under another name.
                if let Some(existing) = client.find(SSH_KEY, &self.name).await? {
                    self.check(&existing)?;
                    return Ok(key_value(&existing, true));
                }
                Err(error)
            }
            Err(error) => Err(error),
        }
    }
}

pub(crate) fn create_ssh_key(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let spec = Spec::from_call(call)?;
    let client = Client::from_call(call)?;
    Ok(call.block_on(spec.create(&client).await_map())?)
}

pub(crate) fn create_ssh_key_preview(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let spec = Spec::from_call(call)?;
    let client = Client::from_call(call)?;
    let existing = call.block_on(client.find(SSH_KEY, &spec.name).await_map())?;
    match existing {
        Some(existing) => {
            spec.check(&existing).map_err(StdlibError::from)?;
            call.host.plan_detail(&format!(
                "ssh key `{}` exists (id {}, {}): adopted, nothing created",
                spec.name,
                id_of(&existing),
                text(&existing, "/fingerprint")
            ));
            Ok(key_value(&existing, true))
        }
        None => {
            call.host.plan_detail(&format!(
                "create ssh key `{}` ({}…), labels: {}",
                spec.name,
                key_material(&spec.public_key)
                    .chars()
                    .take(32)
                    .collect::<String>(),
                labels::render(&spec.labels)
            ));
            Ok(crate::values::placeholder(call.function().returns))
        }
    }
}

pub(crate) fn delete_ssh_key(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let name = call.string(0)?;
    let client = Client::from_call(call)?;
    let deleted = call.block_on(
        async {
            let Some(key) = client.find(SSH_KEY, &name).await? else {
                return Ok(false);
            };
            let id = id_of(&key);
            client
                .send(Request::delete(
                    format!("/ssh_keys/{id}"),
                    format!("delete ssh key `{name}`"),
                ))
                .await?;
            client.log(
                Level::Info,
                &format!("hcloud: deleted ssh key `{name}` (id {id})"),
            );
            Ok::<_, HcloudError>(true)
        }
        .await_map(),
    )?;
    Ok(Dynamic::from_bool(deleted))
}

pub(crate) fn delete_ssh_key_preview(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let name = call.string(0)?;
    let client = Client::from_call(call)?;
    let found = call.block_on(client.find(SSH_KEY, &name).await_map())?;
    call.host.plan_detail(&match &found {
        Some(key) => format!(
            "delete ssh key `{name}` (id {}, {})",
            id_of(key),
            text(key, "/fingerprint")
        ),
        None => format!("ssh key `{name}` does not exist: nothing to delete"),
    });
    Ok(Dynamic::from_bool(found.is_some()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_without_their_comment() {
        assert_eq!(
            key_material("ssh-ed25519 AAAAC3 alice@laptop\n"),
            "ssh-ed25519 AAAAC3"
        );
        assert_eq!(key_material("ssh-ed25519   AAAAC3"), "ssh-ed25519 AAAAC3");
        assert_eq!(key_material("garbage"), "garbage");
    }
}
