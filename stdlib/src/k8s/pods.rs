//! Pods: `k8s::logs` (one pod, or every pod a selector matches, each line
//! prefixed `pod | `) and `k8s::exec` (a command in a container, over the
//! API server's WebSocket exec endpoint).

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams, ListParams, LogParams};
use rhai::{Array, Dynamic, Map};
use tokio::io::AsyncReadExt;

use super::client::{Kube, connect};
use super::error::{Subject, api, brief, status};
use super::rollout::selector_of;
use super::settings;
use crate::function::{Call, Failure};
use crate::host::StdlibError;

const LOG_OPTIONS: &[&str] = &["namespace", "tail", "since", "container", "previous"];
const EXEC_OPTIONS: &[&str] = &["namespace", "container", "check"];

/// What `k8s::logs` was pointed at.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LogTarget {
    Pod(String),
    Selector(String),
    /// `deployment/NAME`: the pods its selector matches.
    Deployment(String),
}

/// A pod name, `deployment/NAME`, or a label selector (`app=backend`,
/// `tier in (web,api)`, `!canary`).
pub(crate) fn log_target(text: &str) -> LogTarget {
    let text = text.trim();
    for prefix in ["deployment/", "deployments/", "deploy/"] {
        if let Some(name) = text.strip_prefix(prefix) {
            return LogTarget::Deployment(name.to_owned());
        }
    }
    if let Some(name) = text
        .strip_prefix("pod/")
        .or_else(|| text.strip_prefix("pods/"))
    {
        return LogTarget::Pod(name.to_owned());
    }
    let selector =
        text.contains(['=', '!', ',', '(']) || text.contains(" in ") || text.contains(" notin ");
    if selector {
        LogTarget::Selector(text.to_owned())
    } else {
        LogTarget::Pod(text.to_owned())
    }
}

/// Each line of `text` prefixed with `pod | `.
pub(crate) fn prefixed(pod: &str, text: &str) -> String {
    text.lines()
        .map(|line| format!("{pod} | {line}\n"))
        .collect()
}

/// `k8s::logs(pod_or_selector, opts?)`.
pub(crate) fn logs(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let target = log_target(&call.string(0)?);
    let options = call.options(1, LOG_OPTIONS)?;
    let mut params = LogParams {
        container: options.string("container")?,
        previous: options.bool("previous")?.unwrap_or(false),
        ..LogParams::default()
    };
    if let Some(tail) = options.int("tail")? {
        if tail < 0 {
            return Err(call.bad_arg(1, "option `tail` must be 0 or more").into());
        }
        params.tail_lines = Some(tail);
    }
    if let Some(since) = options.duration("since")? {
        params.since_seconds = Some(i64::try_from(since.as_secs().max(1)).unwrap_or(i64::MAX));
    }
    let settings = settings(call)?;
    let namespace = options.string("namespace")?;
    let text = call.block_on(async {
        let kube = connect(&settings, namespace).await?;
        let pods: Api<Pod> = Api::namespaced(kube.client.clone(), &kube.namespace);
        let selector = match &target {
            LogTarget::Pod(name) => {
                let subject = Subject::new("pod", name, Some(&kube.namespace));
                return pods
                    .logs(name, &params)
                    .await
                    .map_err(|error| api(&kube, &subject, "read the logs of", &error));
            }
            LogTarget::Selector(selector) => selector.clone(),
            LogTarget::Deployment(name) => {
                let subject = Subject::new("deployment", name, Some(&kube.namespace));
                let deployment = Api::<Deployment>::namespaced(kube.client.clone(), &kube.namespace)
                    .get(name)
                    .await
                    .map_err(|error| api(&kube, &subject, "read", &error))?;
                selector_of(&deployment).ok_or_else(|| {
                    subject.failed("has no matchLabels selector", "pass a label selector such as `app=NAME`")
                })?
            }
        };
        let subject = Subject::all("pod", Some(&kube.namespace));
        let list = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|error| api(&kube, &subject, "list", &error))?;
        let mut names: Vec<String> = list
            .items
            .iter()
            .filter_map(|pod| pod.metadata.name.clone())
            .collect();
        names.sort();
        if names.is_empty() {
            return Err(StdlibError::failed(
                format!(
                    "no pods match `{selector}` in namespace `{}`",
                    kube.namespace
                ),
                "`k8s::list(\"pod\")` shows the pods and their labels; check the selector and the context's namespace",
            ));
        }
        let fetches = names.iter().map(|name| {
            let pods = pods.clone();
            let params = params.clone();
            async move {
                match pods.logs(name, &params).await {
                    Ok(text) => prefixed(name, &text),
                    Err(error) => {
                        let reason = status(&error)
                            .map_or_else(|| brief(&error), |status| status.message.clone());
                        format!("{name} | (no logs: {reason})\n")
                    }
                }
            }
        });
        Ok(futures_util::future::join_all(fetches).await.concat())
    })?;
    Ok(Dynamic::from(text))
}

/// Whether an exec failure means the server has no (WebSocket) exec.
fn exec_unsupported(error: &kube::Error) -> bool {
    match error {
        kube::Error::UpgradeConnection(_) => true,
        kube::Error::Api(status) => matches!(status.code, 400 | 404 | 405 | 426 | 501),
        _ => false,
    }
}

/// The exit code in an exec's final `Status`: 0 on `Success`, the
/// `ExitCode` cause otherwise.
fn exit_code(
    status: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Status>,
) -> (i64, Option<String>) {
    let Some(status) = status else {
        return (0, None);
    };
    if status.status.as_deref() == Some("Success") {
        return (0, None);
    }
    let code = status
        .details
        .as_ref()
        .and_then(|details| details.causes.as_ref())
        .and_then(|causes| {
            causes
                .iter()
                .find(|cause| cause.reason.as_deref() == Some("ExitCode"))
                .and_then(|cause| cause.message.as_deref())
                .and_then(|message| message.trim().parse().ok())
        })
        .unwrap_or(-1);
    (code, status.message.clone())
}

/// `k8s::exec(pod, command, opts?)`.
pub(crate) fn exec(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let pod = call.string(0)?;
    let command: Vec<String> = {
        let value = call.arg(1);
        let Some(items) = value.read_lock::<Array>().map(|items| items.clone()) else {
            return Err(call
                .bad_arg(
                    1,
                    format!(
                        "must be an array of strings like [\"sh\", \"-c\", \"...\"], got {}",
                        crate::values::type_name(&value)
                    ),
                )
                .into());
        };
        let mut words = Vec::new();
        for item in items {
            match crate::function::Text::from_dynamic(&item) {
                Some(text) => words.push(text.expose()),
                None => return Err(call.bad_arg(1, "must hold only strings").into()),
            }
        }
        words
    };
    if command.is_empty() {
        return Err(call.bad_arg(1, "is empty; name a command").into());
    }
    let options = call.options(2, EXEC_OPTIONS)?;
    let container = options.string("container")?;
    let check = options.bool("check")?.unwrap_or(true);
    let settings = settings(call)?;
    let namespace = options.string("namespace")?;
    let shown = command.first().cloned().unwrap_or_default();
    let (stdout, stderr, code, message, subject) = call.block_on(async {
        let kube = connect(&settings.streaming(), namespace).await?;
        let subject = Subject::new("pod", &pod, Some(&kube.namespace));
        let pods: Api<Pod> = Api::namespaced(kube.client.clone(), &kube.namespace);
        pods.get(&pod)
            .await
            .map_err(|error| api(&kube, &subject, "read", &error))?;
        let mut params = AttachParams::default()
            .stdin(false)
            .stdout(true)
            .stderr(true);
        if let Some(container) = &container {
            params = params.container(container.clone());
        }
        let mut process = pods
            .exec(&pod, command.clone(), &params)
            .await
            .map_err(|error| exec_error(&kube, &subject, &error))?;
        let (mut out, mut err) = (process.stdout(), process.stderr());
        let status = process.take_status();
        let read_out = async {
            let mut text = String::new();
            if let Some(reader) = out.as_mut() {
                let _ = reader.read_to_string(&mut text).await;
            }
            text
        };
        let read_err = async {
            let mut text = String::new();
            if let Some(reader) = err.as_mut() {
                let _ = reader.read_to_string(&mut text).await;
            }
            text
        };
        let (stdout, stderr) = tokio::join!(read_out, read_err);
        let status = match status {
            Some(status) => tokio::time::timeout(Duration::from_secs(5), status)
                .await
                .ok()
                .flatten(),
            None => None,
        };
        drop((out, err));
        let _ = process.join().await;
        let (code, message) = exit_code(status.as_ref());
        Ok((stdout, stderr, code, message, subject))
    })?;
    if check && code != 0 {
        let tail: String = stderr
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        return Err(StdlibError::failed(
            format!(
                "`{shown}` in {} exited with code {code}{}{}",
                subject.describe(),
                message.map(|m| format!(" ({m})")).unwrap_or_default(),
                if tail.is_empty() {
                    String::new()
                } else {
                    format!(":\n{tail}")
                }
            ),
            "pass `#{check: false}` to get the result with its `code` instead of failing",
        )
        .into());
    }
    let mut map = Map::new();
    map.insert("pod".into(), Dynamic::from(pod));
    map.insert("stdout".into(), Dynamic::from(stdout));
    map.insert("stderr".into(), Dynamic::from(stderr));
    map.insert("code".into(), Dynamic::from_int(code));
    Ok(Dynamic::from_map(map))
}

fn exec_error(kube: &Kube, subject: &Subject, error: &kube::Error) -> StdlibError {
    if exec_unsupported(error) {
        return StdlibError::failed(
            format!(
                "exec in {} is not supported by this cluster (kube context `{}`): {}",
                subject.describe(),
                kube.kube_context,
                brief(error)
            ),
            "the API server did not accept a WebSocket exec; run the command as a Job instead (`k8s::apply` a Job manifest, then `k8s::logs(\"job-name=NAME\")`)",
        );
    }
    api(kube, subject, "exec in", error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_names_and_selectors_are_told_apart() {
        assert_eq!(
            log_target("backend-7d9f-abcde"),
            LogTarget::Pod("backend-7d9f-abcde".into())
        );
        assert_eq!(log_target("pod/web-1"), LogTarget::Pod("web-1".into()));
        assert_eq!(
            log_target("app=backend"),
            LogTarget::Selector("app=backend".into())
        );
        assert_eq!(log_target("app!=x"), LogTarget::Selector("app!=x".into()));
        assert_eq!(
            log_target("tier in (web,api)"),
            LogTarget::Selector("tier in (web,api)".into())
        );
        assert_eq!(
            log_target("deploy/backend"),
            LogTarget::Deployment("backend".into())
        );
        assert_eq!(
            log_target("deployment/backend"),
            LogTarget::Deployment("backend".into())
        );
    }

    #[test]
    fn lines_are_prefixed_with_the_pod() {
        assert_eq!(prefixed("p-1", "a\nb\n"), "p-1 | a\np-1 | b\n");
        assert_eq!(prefixed("p-1", ""), "");
    }

    #[test]
    fn exit_codes_come_from_the_status() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
        let failure: Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "message": "command terminated with non-zero exit code",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}
        }))
        .unwrap();
        assert_eq!(exit_code(Some(&failure)).0, 3);
        let success: Status =
            serde_json::from_value(serde_json::json!({"status": "Success"})).unwrap();
        assert_eq!(exit_code(Some(&success)), (0, None));
        assert_eq!(exit_code(None), (0, None));
    }
}
