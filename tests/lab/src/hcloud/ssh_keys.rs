//! `/ssh_keys`: create (unique by name and by fingerprint), list (`name`,
//! `fingerprint`, `label_selector`), get, update, delete.
//!
//! The fingerprint is the MD5 of the key blob as colon-separated hex, as
//! the real API shows it (`b7:2f:30:...`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;
use md5::{Digest as _, Md5};
use serde_json::{Value, json};

use super::actions::timestamp;
use super::errors::ApiError;
use super::project::{self, Project};
use super::reply::{self, Origin, Reply};

/// Key types the API accepts.
const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

pub(crate) fn list(project: &Project, origin: &Origin<'_>) -> Result<Reply, ApiError> {
    let mut items: Vec<Value> = project.ssh_keys.values().cloned().collect();
    if let Some(fingerprint) = origin.query.get("fingerprint") {
        items.retain(|key| key["fingerprint"] == fingerprint);
    }
    reply::list("ssh_keys", items, origin)
}

pub(crate) fn get(project: &Project, id: u64) -> Result<Reply, ApiError> {
    let key = project
        .ssh_keys
        .get(&id)
        .ok_or_else(|| ApiError::not_found("ssh key"))?;
    Ok(Reply::ok(reply::one("ssh_key", key.clone())))
}

pub(crate) fn create(project: &mut Project, body: &Value) -> Result<Reply, ApiError> {
    let mut missing = Vec::new();
    for field in ["name", "public_key"] {
        if !body.get(field).is_some_and(Value::is_string) {
            missing.push((field, "Missing data for required field."));
        }
    }
    if !missing.is_empty() {
        return Err(ApiError::invalid_fields(&missing));
    }
    let name = body["name"].as_str().unwrap_or_default().trim().to_owned();
    let public_key = body["public_key"]
        .as_str()
        .unwrap_or_default()
        .trim()
        .to_owned();
    if name.is_empty() {
        return Err(ApiError::invalid("name", "Name must not be empty."));
    }
    let fingerprint = fingerprint(&public_key)
        .ok_or_else(|| ApiError::invalid("public_key", "invalid public key"))?;
    let labels = project::labels(body)?;
    if project
        .ssh_keys
        .values()
        .any(|key| key["name"] == name.as_str())
    {
        return Err(ApiError::uniqueness(
            "name",
            "SSH key with the same name already exists",
        ));
    }
    if project
        .ssh_keys
        .values()
        .any(|key| key["fingerprint"] == fingerprint.as_str())
    {
        return Err(ApiError::uniqueness(
            "public_key",
            "SSH key with the same fingerprint already exists",
        ));
    }
    let id = project.next_id();
    let key = json!({
        "id": id, "name": name, "fingerprint": fingerprint, "public_key": public_key,
        "labels": labels, "created": timestamp(&Utc::now()),
    });
    project.ssh_keys.insert(id, key.clone());
    Ok(Reply::created(reply::one("ssh_key", key)))
}

/// `PUT /ssh_keys/{id}`: `name` and `labels`.
pub(crate) fn update(project: &mut Project, id: u64, body: &Value) -> Result<Reply, ApiError> {
    if !project.ssh_keys.contains_key(&id) {
        return Err(ApiError::not_found("ssh key"));
    }
    let labels = body
        .get("labels")
        .map(|_| project::labels(body))
        .transpose()?;
    let name = body.get("name").and_then(Value::as_str);
    if let Some(name) = name
        && project
            .ssh_keys
            .values()
            .any(|key| key["name"] == name && key["id"] != id)
    {
        return Err(ApiError::uniqueness(
            "name",
            "SSH key with the same name already exists",
        ));
    }
    let key = project
        .ssh_keys
        .get_mut(&id)
        .ok_or_else(|| ApiError::not_found("ssh key"))?;
    if let Some(name) = name {
        key["name"] = Value::from(name);
    }
    if let Some(labels) = labels {
        key["labels"] = Value::Object(labels);
    }
    Ok(Reply::ok(reply::one("ssh_key", key.clone())))
}

pub(crate) fn delete(project: &mut Project, id: u64) -> Result<Reply, ApiError> {
    project
        .ssh_keys
        .remove(&id)
        .ok_or_else(|| ApiError::not_found("ssh key"))?;
    Ok(Reply::no_content())
}

/// `aa:bb:...`, the MD5 of the key's blob; None if it is no public key.
fn fingerprint(public_key: &str) -> Option<String> {
    let mut words = public_key.split_whitespace();
    let kind = words.next()?;
    let blob = STANDARD.decode(words.next()?).ok()?;
    if !KEY_TYPES.contains(&kind) {
        return None;
    }
    // The blob starts with its own type as a length-prefixed string.
    let length = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    if blob.get(4..4 + length)? != kind.as_bytes() {
        return None;
    }
    let digest = Md5::digest(&blob);
    let hex: Vec<String> = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    Some(hex.join(":"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ed25519 key made with ssh-keygen; its MD5 fingerprint as
    /// `ssh-keygen -l -E md5` prints it.
    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJWfVlqk2Q+MHuZGyVPZRCHSQaUfYU1MUb+/RQjdoJ98 lab@example";

    #[test]
    fn fingerprints_are_md5_of_the_blob() {
        assert_eq!(
            fingerprint(KEY).as_deref(),
            Some("f9:70:37:05:e9:53:24:45:01:da:86:15:8d:aa:37:7c")
        );
        assert!(super::fingerprint("ssh-ed25519 not-base64").is_none());
        assert!(
            super::fingerprint(
                "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIGR1YyFZ7U0BmWAv8xZlH2cc1ZHhRJFG8JzVdmSbNbUX"
            )
            .is_none()
        );
        assert!(super::fingerprint("").is_none());
    }
}
