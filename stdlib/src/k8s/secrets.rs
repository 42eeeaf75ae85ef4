//! Secrets: `k8s::secret` (values decoded and wrapped as secret values) and
//! `k8s::set_secret` (create or update; values never shown).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::api::{Api, ObjectMeta, PostParams};
use rhai::{Array, Dynamic, Map};

use super::Mode;
use super::client::connect;
use super::error::{
    CONFLICT_ATTEMPTS, Subject, api, conflict_pause, is_already_exists, is_conflict,
    too_many_conflicts,
};
use super::objects::to_value;
use super::{FIELD_MANAGER, diff, settings};
use crate::function::{Call, Failure, Text};
use crate::host::{Level, StdlibError};

/// `k8s::secret(name, opts?)`.
pub(crate) fn secret(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let name = call.string(0)?;
    let options = call.options(1, &["namespace", "plain"])?;
    let settings = settings(call)?;
    let namespace = options.string("namespace")?;
    let plain: Vec<String> = match options.get("plain") {
        None => Vec::new(),
        Some(value) => match value.clone().try_cast::<Array>() {
            Some(keys) if keys.iter().all(Dynamic::is_string) => keys
                .into_iter()
                .map(|key| key.into_string().unwrap_or_default())
                .collect(),
            _ => {
                return Err(call
                    .bad_arg(1, "has `plain` that is not an array of key names")
                    .into());
            }
        },
    };
    let data = call.block_on(async {
        let kube = connect(&settings, namespace).await?;
        let subject = Subject::new("secret", &name, Some(&kube.namespace));
        let secrets: Api<KubeSecret> = Api::namespaced(kube.client.clone(), &kube.namespace);
        let secret = secrets
            .get(&name)
            .await
            .map_err(|error| api(&kube, &subject, "read", &error))?;
        Ok(secret.data.unwrap_or_default())
    })?;
    let map: Map = data
        .into_iter()
        .map(|(key, ByteString(bytes))| {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let value = if plain.contains(&key) {
                Dynamic::from(text)
            } else {
                Dynamic::from(super::secret_value(call, text))
            };
            (key.into(), value)
        })
        .collect();
    Ok(Dynamic::from_map(map))
}

/// The values of `set_secret`'s map. Secrets are masked (they are already);
/// plain strings only with `mask: true`: a role name or a URL the script
/// spelled out is not a secret, and masking it everywhere garbles output.
fn values(call: &Call<'_>, mask_plain: bool) -> Result<BTreeMap<String, ByteString>, StdlibError> {
    let map = call.map(1)?;
    let mut values = BTreeMap::new();
    for (key, value) in map {
        let text = Text::from_dynamic(&value).ok_or_else(|| {
            call.bad_arg(
                1,
                format!(
                    "key `{key}` must be a string or a secret, got {}",
                    crate::values::type_name(&value)
                ),
            )
        })?;
        let exposed = text.expose();
        if mask_plain || matches!(text, Text::Secret(_)) {
            super::mask(call, &exposed);
        }
        values.insert(key.to_string(), ByteString(exposed.into_bytes()));
    }
    Ok(values)
}

/// `k8s::set_secret(name, values, opts?)`: create the Secret, or set the
/// given keys in it (`replace: true` drops the keys not given).
pub(crate) fn set_secret(call: &mut Call<'_>, mode: Mode) -> Result<Dynamic, Failure> {
    let name = call.string(0)?;
    let options = call.options(2, &["namespace", "replace", "mask"])?;
    let values = values(call, options.bool("mask")?.unwrap_or(false))?;
    let replace = options.bool("replace")?.unwrap_or(false);
    let settings = settings(call)?;
    let namespace = options.string("namespace")?;
    let host = call.host;
    let (namespace, created, conflicts) = call.block_on(async {
        let kube = connect(&settings, namespace).await?;
        let subject = Subject::new("secret", &name, Some(&kube.namespace));
        let secrets: Api<KubeSecret> = Api::namespaced(kube.client.clone(), &kube.namespace);
        let params = PostParams {
            dry_run: mode.is_preview(),
            field_manager: Some(FIELD_MANAGER.to_owned()),
        };
        let mut conflicts = 0;
        loop {
            let live = secrets
                .get_opt(&name)
                .await
                .map_err(|error| api(&kube, &subject, "read", &error))?;
            let (result, live, created) = match live {
                None => {
                    let secret = KubeSecret {
                        metadata: ObjectMeta {
                            name: Some(name.clone()),
                            namespace: Some(kube.namespace.clone()),
                            ..ObjectMeta::default()
                        },
                        type_: Some("Opaque".to_owned()),
                        data: Some(values.clone()),
                        ..KubeSecret::default()
                    };
                    (secrets.create(&params, &secret).await, None, true)
                }
                Some(live) => {
                    let mut after = live.clone();
                    let mut data = if replace {
                        BTreeMap::new()
                    } else {
                        live.data.clone().unwrap_or_default()
                    };
                    data.extend(values.clone());
                    if live.data.as_ref() == Some(&data) && live.string_data.is_none() {
                        if mode.is_preview() {
                            host.plan_detail(&format!("{}: no change", subject.describe()));
                        }
                        return Ok((kube.namespace.clone(), false, conflicts));
                    }
                    after.data = Some(data);
                    after.string_data = None;
                    (
                        secrets.replace(&name, &params, &after).await,
                        Some(live),
                        false,
                    )
                }
            };
            match result {
                Ok(stored) => {
                    if mode.is_preview() {
                        let live = live.as_ref().map(to_value);
                        host.plan_detail(&diff::detail(
                            &subject.describe(),
                            live.as_ref(),
                            Some(&to_value(&stored)),
                            true,
                        ));
                    }
                    return Ok((kube.namespace.clone(), created, conflicts));
                }
                // Created by someone else since the read, or changed: read again.
                Err(error) if is_conflict(&error) || is_already_exists(&error) => {
                    conflicts += 1;
                    if conflicts >= CONFLICT_ATTEMPTS {
                        return Err(too_many_conflicts(&subject));
                    }
                    conflict_pause(conflicts).await;
                }
                Err(error) => {
                    let doing = if created { "create" } else { "update" };
                    return Err(api(&kube, &subject, doing, &error));
                }
            }
        }
    })?;
    if conflicts > 0 {
        host.log(
            Level::Debug,
            &format!("secret `{name}` in namespace `{namespace}`: changed by someone else while being written; read again and retried ({conflicts} conflicts)"),
        );
    }
    let keys: Array = values
        .keys()
        .map(|key| Dynamic::from(key.clone()))
        .collect();
    let mut result = Map::new();
    result.insert("name".into(), Dynamic::from(name));
    result.insert("namespace".into(), Dynamic::from(namespace));
    result.insert("keys".into(), Dynamic::from_array(keys));
    result.insert("created".into(), Dynamic::from_bool(created));
    Ok(Dynamic::from_map(result))
}

/// The names of the Secrets a pod template uses: env `secretKeyRef`,
/// `envFrom.secretRef`, `secret` volumes and projected volume sources.
fn secrets_in(template: Option<&k8s_openapi::api::core::v1::PodTemplateSpec>) -> Vec<String> {
    let mut names = Vec::new();
    let Some(spec) = template.and_then(|template| template.spec.as_ref()) else {
        return names;
    };
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for container in containers {
        for env in container.env.iter().flatten() {
            if let Some(reference) = env
                .value_from
                .as_ref()
                .and_then(|from| from.secret_key_ref.as_ref())
            {
                names.push(reference.name.clone());
            }
        }
        for from in container.env_from.iter().flatten() {
            if let Some(reference) = &from.secret_ref {
                names.push(reference.name.clone());
            }
        }
    }
    for volume in spec.volumes.iter().flatten() {
        if let Some(name) = volume
            .secret
            .as_ref()
            .and_then(|secret| secret.secret_name.clone())
        {
            names.push(name);
        }
        for source in volume
            .projected
            .iter()
            .flat_map(|projected| projected.sources.iter().flatten())
        {
            if let Some(reference) = &source.secret {
                names.push(reference.name.clone());
            }
        }
    }
    names
}

/// `k8s::users_of_secret(name, opts?)`: the Deployments and StatefulSets
/// whose pods reference Secret `name`.
pub(crate) fn users_of_secret(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
    let name = call.string(0)?;
    let options = call.options(1, &["namespace"])?;
    let settings = settings(call)?;
    let namespace = options.string("namespace")?;
    let users = call.block_on(async {
        let kube = connect(&settings, namespace).await?;
        let subject = Subject::new("deployments", "", Some(&kube.namespace));
        let params = kube::api::ListParams::default();
        let deployments: Api<Deployment> = Api::namespaced(kube.client.clone(), &kube.namespace);
        let deployments = deployments
            .list(&params)
            .await
            .map_err(|error| api(&kube, &subject, "list", &error))?;
        let subject = Subject::new("statefulsets", "", Some(&kube.namespace));
        let statefulsets: Api<StatefulSet> = Api::namespaced(kube.client.clone(), &kube.namespace);
        let statefulsets = statefulsets
            .list(&params)
            .await
            .map_err(|error| api(&kube, &subject, "list", &error))?;
        let mut users = Vec::new();
        for deployment in deployments.items {
            let template = deployment.spec.as_ref().map(|spec| &spec.template);
            if secrets_in(template).contains(&name) {
                users.push(("Deployment", deployment.metadata.name.unwrap_or_default()));
            }
        }
        for statefulset in statefulsets.items {
            let template = statefulset.spec.as_ref().map(|spec| &spec.template);
            if secrets_in(template).contains(&name) {
                users.push(("StatefulSet", statefulset.metadata.name.unwrap_or_default()));
            }
        }
        Ok((users, kube.namespace.clone()))
    })?;
    let (users, namespace) = users;
    let items: Array = users
        .into_iter()
        .map(|(kind, user)| {
            let mut map = Map::new();
            map.insert("kind".into(), kind.into());
            map.insert("name".into(), user.into());
            map.insert("namespace".into(), namespace.clone().into());
            Dynamic::from_map(map)
        })
        .collect();
    Ok(Dynamic::from_array(items))
}
