//! Snapshots (images of type `snapshot`) and waiting on any action by ID.

use std::time::Duration;

use rhai::Dynamic;
use serde_json::{Value, json};

use super::actions::{ACTION_TIMEOUT, action_ids};
use super::client::{Client, Request};
use super::error::AwaitMap;
use super::labels::{self, Labels};
use super::resource::{self, SERVER, id_of, text};
use crate::function::{Call, Failure};
use crate::host::{Level, StdlibError};

fn image_value(image: &Value) -> Dynamic {
    let mut map = resource::base_map(image);
    map.insert("description".into(), text(image, "/description").into());
    map.insert("status".into(), text(image, "/status").into());
    map.insert(
        "from_server".into(),
        text(image, "/created_from/name").into(),
    );
    Dynamic::from_map(map)
}

pub(crate) fn snapshots(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let options = call.options(0, &["label"])?;
    let mut request = Request::get("/images", "list snapshots").query("type", "snapshot");
    if let Some(selector) = labels::selector(options.get("label").unwrap_or(&Dynamic::UNIT))
        .map_err(|problem| call.bad_arg(0, format!("`label` {problem}")))?
    {
        request = request.query("label_selector", selector);
    }
    let client = Client::from_call(call)?;
    let images = call.block_on(client.list(request, "images").await_map())?;
    Ok(Dynamic::from_array(
        images.iter().map(image_value).collect(),
    ))
}

fn snapshot_args(call: &Call<'_>) -> Result<(String, String, Labels, Duration), StdlibError> {
    let server = call.string(0)?;
    let description = call.string(1)?;
    let options = call.options(2, &["labels", "timeout"])?;
    let labels = match options.map("labels")? {
        Some(map) => labels::from_map(&map).map_err(|problem| call.bad_arg(2, problem))?,
        None => Labels::new(),
    };
    let timeout = options.duration("timeout")?.unwrap_or(ACTION_TIMEOUT);
    Ok((server, description, labels::managed(&labels), timeout))
}

/// `hcloud::create_snapshot(server, description)`: the image once it is available.
pub(crate) fn create_snapshot(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let (server, description, labels, timeout) = snapshot_args(call)?;
    let client = Client::from_call(call)?;
    let image = call.block_on(
        async {
            let found = client.need(SERVER, &server).await?;
            let id = id_of(&found);
            let what = format!("snapshot server `{server}`");
            let answer = client
                .send(Request::post(
                    format!("/servers/{id}/actions/create_image"),
                    json!({"type": "snapshot", "description": description, "labels": labels}),
                    what.clone(),
                ))
                .await?;
            client
                .wait_actions(&action_ids(&answer), &what, timeout)
                .await?;
            let image_id = answer
                .pointer("/image/id")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            client.log(
                Level::Info,
                &format!("hcloud: snapshot {image_id} of server `{server}` is done"),
            );
            let image = client
                .send(Request::get(
                    format!("/images/{image_id}"),
                    format!("read snapshot {image_id}"),
                ))
                .await?;
            Ok(image.get("image").cloned().unwrap_or(Value::Null))
        }
        .await_map(),
    )?;
    Ok(image_value(&image))
}

pub(crate) fn create_snapshot_preview(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let (server, description, labels, _) = snapshot_args(call)?;
    let client = Client::from_call(call)?;
    let found = call.block_on(client.find(SERVER, &server).await_map())?;
    call.host.plan_detail(&match &found {
        Some(found) => format!(
            "snapshot server `{server}` (id {}) as \"{description}\", labels: {}",
            id_of(found),
            labels::render(&labels)
        ),
        None => format!("snapshot server `{server}` (planned) as \"{description}\""),
    });
    Ok(crate::values::placeholder(call.function().returns))
}

/// `hcloud::wait_action(id, timeout)`.
pub(crate) fn wait_action(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let id = call.int(0)?;
    let id = u64::try_from(id)
        .map_err(|_| call.bad_arg(0, "must be an action ID (a positive integer)"))?;
    let timeout = call.duration(1)?;
    let client = Client::from_call(call)?;
    let waited = call.block_on(
        client
            .wait_actions(&[id], &format!("action {id}"), timeout)
            .await_map(),
    )?;
    let mut map = rhai::Map::new();
    map.insert(
        "id".into(),
        Dynamic::from_int(i64::try_from(id).unwrap_or(i64::MAX)),
    );
    map.insert("status".into(), "success".into());
    map.insert(
        "waited_ms".into(),
        Dynamic::from_int(i64::try_from(waited.as_millis()).unwrap_or(i64::MAX)),
    );
    Ok(Dynamic::from_map(map))
}
