//! `runbook schedule RUNBOOK --cron "0 2 * * *" --context C` and
//! `runbook job RUNBOOK --context C`: Kubernetes as the scheduler. Prints
//! (or with `--apply`, applies with `kubectl apply`) a ConfigMap holding the
//! runbook and its runbook.toml, and a CronJob (or a one-off Job) that runs
//! it in the runbook image:
//!
//! - `concurrencyPolicy: Forbid`, `startingDeadlineSeconds` (CronJob);
//!   `backoffLimit: 0` (a failed run is resumed, not re-run from the top),
//!   `activeDeadlineSeconds`, `ttlSecondsAfterFinished`, pod
//!   `restartPolicy: Never`, a non-root user;
//! - the journal in S3 (required: a CronJob can still start two Jobs, and
//!   the S3 lease, not Forbid, keeps them from both writing; and a run that
//!   stopped is resumed or approved from elsewhere);
//! - the context's `env:` secrets (and its `file:` secrets, rewritten in
//!   the ConfigMap's runbook.toml to `env:RUNBOOK_SECRET_NAME`), `RUNBOOK_AUDIT_KEY` and
//!   `RUNBOOK_JOURNAL_KEY` as env from one Secret (`--secret`, default
//!   `runbook-CONTEXT`), never in the manifest;
//! - `--approve` only when the runbook has no gate, or the context says
//!   `unattended = true`; otherwise it refuses.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::error::{Diagnostic, Exit};

/// What `schedule` / `job` were asked for.
#[derive(Debug, Clone, Default)]
pub struct ScheduleOptions {
    pub file: PathBuf,
    pub params: Vec<(String, String)>,
    pub context: Option<String>,
    /// `None` for a one-off Job.
    pub cron: Option<String>,
    pub journal: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub image: String,
    pub secret: Option<String>,
    pub starting_deadline: u64,
    pub deadline: u64,
    pub ttl: u64,
    pub backoff_limit: u32,
    pub apply: bool,
}

/// The default image (see the Containerfile).
pub const IMAGE: &str = concat!("runbook:", env!("CARGO_PKG_VERSION"));

/// Where the pod mounts the ConfigMap.
const CONFIG_DIR: &str = "/etc/runbook";

fn usage(message: impl Into<String>, hint: impl Into<String>) -> Diagnostic {
    Diagnostic::new(message, Exit::Usage).hint(hint)
}

/// A Kubernetes name from the runbook's file name: lower case, `-` for
/// anything else.
fn kube_name(file: &Path) -> String {
    let stem = file
        .file_stem()
        .map(|stem| stem.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let mut name: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    while name.contains("--") {
        name = name.replace("--", "-");
    }
    name.trim_matches('-').to_owned()
}

fn check_name(name: &str, cron: bool) -> Result<(), Diagnostic> {
    let limit = if cron { 52 } else { 63 };
    let valid = !name.is_empty()
        && name.len() <= limit
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(usage(
            format!(
                "`{name}` is not a usable {} name",
                if cron { "CronJob" } else { "Job" }
            ),
            format!(
                "pass --name: lower-case letters, digits and `-`, at most {limit} characters (a CronJob's Jobs add a suffix)"
            ),
        ))
    }
}

/// Five cron fields, each of `0-9 * , - /` (or a name like `mon`, `jan`).
fn check_cron(cron: &str) -> Result<(), Diagnostic> {
    let fields: Vec<&str> = cron.split_whitespace().collect();
    let shaped = fields.len() == 5
        && fields.iter().all(|field| {
            field
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '*' | ',' | '-' | '/' | '?'))
        });
    if shaped || (fields.len() == 1 && fields[0].starts_with('@')) {
        Ok(())
    } else {
        Err(usage(
            format!("`{cron}` is not a cron schedule"),
            "give five fields, minute hour day-of-month month day-of-week: --cron \"0 2 * * *\"",
        ))
    }
}

/// Whether the runbook has a gate (`approve(...)` anywhere in it).
fn has_gate(source: &str) -> bool {
    use rhai::{ASTNode, Expr, Stmt};
    let engine = rhai::Engine::new_raw();
    let Ok(ast) = engine.compile(source) else {
        // What does not parse here is judged by its text.
        return source.contains("approve(");
    };
    let mut found = false;
    ast.walk(&mut |nodes: &[ASTNode]| {
        let call = match nodes.last() {
            Some(ASTNode::Expr(Expr::FnCall(call, _))) => Some(&**call),
            Some(ASTNode::Stmt(Stmt::FnCall(call, _))) => Some(&**call),
            _ => None,
        };
        if call.is_some_and(|call| call.name == "approve") {
            found = true;
        }
        true
    });
    found
}

/// The manifests, as one multi-document YAML text.
pub fn manifests(options: &ScheduleOptions) -> Result<String, Diagnostic> {
    let source = crate::engine::read_source(&options.file)?;
    let header = crate::header::Header::parse(&source);
    for (name, _) in &options.params {
        if header.param(name).is_none() {
            return Err(usage(
                format!("unknown param `{name}`"),
                "`runbook show`-ing the runbook's header lists its params (`//! @param NAME ...`)",
            )
            .in_script(&options.file, Some(&source)));
        }
    }
    let folder = options.file.parent().map(PathBuf::from).unwrap_or_default();
    let cwd = std::env::current_dir().unwrap_or_default();
    let context = crate::context::resolve(options.context.as_deref(), &[&folder, &cwd])?;
    let Some(context_name) = context.name.clone() else {
        return Err(usage(
            "a scheduled run needs a context",
            "pass --context NAME (a context of runbook.toml)",
        ));
    };
    let Some(config_path) = context.source.clone() else {
        return Err(usage(
            "a scheduled run needs the runbook.toml its context comes from",
            "run from the folder of runbook.toml or set RUNBOOK_CONFIG",
        ));
    };
    let config = std::fs::read_to_string(&config_path).map_err(|error| {
        usage(
            format!("cannot read `{}`: {error}", config_path.display()),
            "set RUNBOOK_CONFIG to the runbook.toml of the context",
        )
    })?;
    let Some(journal) = crate::journal_store::configured(options.journal.as_deref(), &context)?
    else {
        return Err(usage(
            format!(
                "a scheduled run needs its journal in S3, and context `{context_name}` has none"
            ),
            format!(
                "pass --journal s3://BUCKET/PREFIX or add `journal = \"s3://BUCKET/PREFIX\"` under [context.{context_name}]: a run the cluster started is resumed and approved from elsewhere, and the S3 lease keeps two Jobs from both running it"
            ),
        ));
    };
    let unattended = context
        .value("unattended")
        .and_then(toml::Value::as_bool)
        .unwrap_or(false);
    let gated = has_gate(&source);
    if gated && !unattended {
        return Err(Diagnostic::new(
            format!(
                "`{}` has an approval gate, and context `{context_name}` does not allow unattended runs",
                options.file.display()
            ),
            Exit::Refused,
        )
        .hint(format!("a scheduled run has nobody at a terminal: remove the gate, or set `unattended = true` under [context.{context_name}] if its gates may be passed with --approve")));
    }
    let cron = options.cron.as_deref();
    if let Some(cron) = cron {
        check_cron(cron)?;
    }
    let name = options
        .name
        .clone()
        .unwrap_or_else(|| kube_name(&options.file));
    check_name(&name, cron.is_some())?;
    let namespace = options
        .namespace
        .clone()
        .or_else(|| {
            context
                .value("namespace")
                .and_then(toml::Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "default".into());
    let secret = options
        .secret
        .clone()
        .unwrap_or_else(|| format!("runbook-{}", kube_name(Path::new(&context_name))));
    let file_key = options
        .file
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "runbook.rhai".into());
    // `file:` secrets cannot be read in the pod: in the ConfigMap's copy
    // of runbook.toml they become `env:RUNBOOK_SECRET_NAME`, from the Secret.
    let mut variables: Vec<String> = context.secret_env_vars();
    let mut rewritten = Vec::new();
    for (secret_name, source) in context.secret_sources() {
        if source.starts_with("file:") {
            let variable = format!(
                "RUNBOOK_SECRET_{}",
                secret_name
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() {
                        c.to_ascii_uppercase()
                    } else {
                        '_'
                    })
                    .collect::<String>()
            );
            variables.push(variable.clone());
            rewritten.push((secret_name, variable));
        }
    }
    let config = if rewritten.is_empty() {
        config
    } else {
        let mut document: toml::Table = toml::from_str(&config).map_err(|error| {
            usage(
                format!("`{}` is not valid TOML: {error}", config_path.display()),
                "fix runbook.toml",
            )
        })?;
        if let Some(secrets) = document
            .get_mut("context")
            .and_then(|contexts| contexts.get_mut(&context_name))
            .and_then(|table| table.get_mut("secrets"))
            .and_then(toml::Value::as_table_mut)
        {
            for (secret_name, variable) in &rewritten {
                secrets.insert(
                    secret_name.clone(),
                    toml::Value::from(format!("env:{variable}")),
                );
            }
        }
        format!(
            "# generated by `runbook schedule` from {}: file: secrets of context {context_name} read from env\n{}",
            config_path.display(),
            toml::to_string(&document).unwrap_or_default()
        )
    };

    let labels = json!({
        "app.kubernetes.io/name": "runbook",
        "app.kubernetes.io/instance": name,
        "runbook/context": kube_name(Path::new(&context_name)),
    });
    let mut data = serde_json::Map::new();
    data.insert(file_key.clone(), Value::from(source.clone()));
    data.insert("runbook.toml".into(), Value::from(config));
    let config_map = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": format!("{name}-runbook"), "namespace": namespace, "labels": labels },
        "data": data,
    });

    let mut args: Vec<Value> = vec!["run".into(), format!("{CONFIG_DIR}/{file_key}").into()];
    for (param, value) in &options.params {
        args.push(format!("{param}={value}").into());
    }
    args.extend([
        "--context".into(),
        context_name.clone().into(),
        "--journal".into(),
        journal.to_string().into(),
    ]);
    if gated || unattended {
        args.push("--approve".into());
        if context.protected {
            args.push("--confirm".into());
            args.push(context_name.clone().into());
        }
    }
    variables.sort();
    variables.dedup();
    let mut env = vec![
        json!({ "name": "RUNBOOK_CONFIG", "value": format!("{CONFIG_DIR}/runbook.toml") }),
        json!({ "name": "RUNBOOK_STATE_DIR", "value": "/var/lib/runbook" }),
        json!({ "name": "HOME", "value": "/home/runbook" }),
        json!({ "name": "CI", "value": "true" }),
        json!({ "name": crate::audit_key::KEY_VAR, "valueFrom": { "secretKeyRef": { "name": secret, "key": crate::audit_key::KEY_VAR } } }),
        json!({ "name": crate::seal::KEY_VAR, "valueFrom": { "secretKeyRef": { "name": secret, "key": crate::seal::KEY_VAR, "optional": true } } }),
    ];
    for variable in &variables {
        env.push(json!({ "name": variable, "valueFrom": { "secretKeyRef": { "name": secret, "key": variable } } }));
    }
    let pod = json!({
        "metadata": { "labels": labels },
        "spec": {
            "restartPolicy": "Never",
            "securityContext": { "runAsNonRoot": true, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001 },
            "containers": [{
                "name": "runbook",
                "image": options.image,
                "args": args,
                "env": env,
                "volumeMounts": [
                    { "name": "runbook", "mountPath": CONFIG_DIR, "readOnly": true },
                    { "name": "state", "mountPath": "/var/lib/runbook" },
                    { "name": "home", "mountPath": "/home/runbook" },
                ],
            }],
            "volumes": [
                { "name": "runbook", "configMap": { "name": format!("{name}-runbook") } },
                { "name": "state", "emptyDir": {} },
                { "name": "home", "emptyDir": {} },
            ],
        },
    });
    let job_spec = json!({
        "backoffLimit": options.backoff_limit,
        "activeDeadlineSeconds": options.deadline,
        "ttlSecondsAfterFinished": options.ttl,
        "template": pod,
    });
    let workload = match cron {
        Some(cron) => json!({
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": { "name": name, "namespace": namespace, "labels": labels },
            "spec": {
                "schedule": cron,
                "concurrencyPolicy": "Forbid",
                "startingDeadlineSeconds": options.starting_deadline,
                "successfulJobsHistoryLimit": 3,
                "failedJobsHistoryLimit": 3,
                "jobTemplate": { "metadata": { "labels": labels }, "spec": job_spec },
            },
        }),
        None => json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": { "name": name, "namespace": namespace, "labels": labels },
            "spec": job_spec,
        }),
    };
    let mut text = format!(
        "# runbook {} {}: generated by runbook {}\n# Secret `{secret}` (namespace {namespace}) must hold: {}\n",
        if cron.is_some() { "schedule" } else { "job" },
        options.file.display(),
        env!("CARGO_PKG_VERSION"),
        [
            crate::audit_key::KEY_VAR.to_owned(),
            format!("{} (optional)", crate::seal::KEY_VAR)
        ]
        .into_iter()
        .chain(variables.iter().cloned())
        .collect::<Vec<_>>()
        .join(", ")
    );
    for document in [config_map, workload] {
        let yaml = serde_saphyr::to_string(&document).map_err(|error| {
            Diagnostic::new(format!("cannot write the manifest: {error}"), Exit::Usage)
        })?;
        let _ = write!(text, "---\n{yaml}");
        if !text.ends_with('\n') {
            text.push('\n');
        }
    }
    Ok(text)
}

/// `runbook schedule` / `runbook job`.
pub fn schedule(options: &ScheduleOptions) -> Result<Exit, Diagnostic> {
    let text = manifests(options)?;
    if !options.apply {
        print!("{text}");
        return Ok(Exit::Ok);
    }
    let folder = options.file.parent().map(PathBuf::from).unwrap_or_default();
    let cwd = std::env::current_dir().unwrap_or_default();
    let context = crate::context::resolve(options.context.as_deref(), &[&folder, &cwd])?;
    let mut command = std::process::Command::new("kubectl");
    if let Some(kubeconfig) = context.value("kubeconfig").and_then(toml::Value::as_str) {
        command.arg("--kubeconfig").arg(kubeconfig);
    }
    if let Some(kube_context) = context.value("kube_context").and_then(toml::Value::as_str) {
        command.arg("--context").arg(kube_context);
    }
    command
        .args(["apply", "-f", "-"])
        .stdin(std::process::Stdio::piped());
    let mut child = command.spawn().map_err(|error| {
        usage(
            format!("cannot run kubectl: {error}"),
            "install kubectl, or print the manifests (without --apply) and apply them your way",
        )
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write as _;
        let _ = stdin.write_all(text.as_bytes());
    }
    let status = child
        .wait()
        .map_err(|error| usage(format!("kubectl did not finish: {error}"), "try again"))?;
    if status.success() {
        Ok(Exit::Ok)
    } else {
        Err(
            Diagnostic::new(format!("kubectl apply failed ({status})"), Exit::StepFailed)
                .hint("kubectl's message is above; the manifests print without --apply"),
        )
    }
}
