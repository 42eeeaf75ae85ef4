//! The lab's `runbook.toml`: contexts `lab` and `lab-protected` that point
//! at the lab's services, so `runbook run x.rhai --context lab` works.
//!
//! Rendered as text rather than through a TOML serializer so the file reads
//! like one a person would write (it is shown to people by `runbook-lab up`).
//! Each lab component contributes its tables here as it is added.

use std::fmt::Write as _;

use crate::hcloud::HcloudApi;
use crate::http::HttpServer;
use crate::k8s::KubeApi;
use crate::pg::PgLab;
use crate::s3::S3Lab;
use crate::sshd::SshLab;

/// The config file's name (what `runbook` searches for).
pub(crate) const FILE_NAME: &str = "runbook.toml";

/// The file, next to the config, that holds the `slack_webhook` secret.
pub(crate) const SLACK_WEBHOOK_FILE: &str = "slack_webhook";

/// The context every lab run uses unless told otherwise.
pub(crate) const CONTEXT: &str = "lab";

/// The same lab, marked `protected` like production.
pub(crate) const PROTECTED_CONTEXT: &str = "lab-protected";

/// The whole `runbook.toml`.
pub(crate) fn render(
    http: &HttpServer,
    ssh: Option<&SshLab>,
    stores: Stores<'_>,
    kube: Option<&KubeApi>,
    api_token_var: &str,
) -> String {
    let mut toml = format!("default_context = {}\n", quote(CONTEXT));
    toml.push_str(&context(
        CONTEXT,
        "the local lab on loopback",
        false,
        http,
        stores,
        &kube_keys(kube, KubeApi::CONTEXT, "staging"),
        api_token_var,
    ));
    if let Some(ssh) = ssh {
        toml.push_str(&ssh_tables(CONTEXT, ssh));
    }
    toml.push_str(&store_tables(CONTEXT, stores));
    toml.push_str(&context(
        PROTECTED_CONTEXT,
        &format!(
            "like lab, but protected (production-like): gates need --approve --confirm {PROTECTED_CONTEXT}"
        ),
        true,
        http,
        stores,
        &kube_keys(kube, KubeApi::PRODUCTION_CONTEXT, "production"),
        api_token_var,
    ));
    if let Some(ssh) = ssh {
        toml.push_str(&ssh_tables(PROTECTED_CONTEXT, ssh));
    }
    toml.push_str(&store_tables(PROTECTED_CONTEXT, stores));
    toml
}

/// The contents of [`SLACK_WEBHOOK_FILE`]: where the lab takes Slack messages.
pub(crate) fn slack_webhook(http: &HttpServer) -> String {
    format!("{}\n", http.url("/hooks/slack"))
}

/// One `[context.NAME]` with its tables; both lab contexts share everything
/// but the name, description and `protected`.
fn context(
    name: &str,
    description: &str,
    protected: bool,
    http: &HttpServer,
    stores: Stores<'_>,
    kube_keys: &str,
    api_token_var: &str,
) -> String {
    let s3_secrets = s3_secrets(stores.s3) + hcloud_secrets(stores.hcloud).as_str();
    let base = quote(&http.base_url());
    let health = quote(&http.url("/health"));
    let notify = quote(&http.url("/hooks/notify"));
    let slack = http.url("/hooks/slack");
    let description = quote(description);
    let api_token = quote(&format!("env:{api_token_var}"));
    let slack_file = quote(&format!("file:{SLACK_WEBHOOK_FILE}"));
    format!(
        r#"
[context.{name}]
description = {description}
protected = {protected}
{kube_keys}[context.{name}.http]
base = {base}
health = {health}
[context.{name}.notify]
webhook = {notify}
[context.{name}.secrets]
api_token = {api_token}
slack_webhook = {slack_file}      # {SLACK_WEBHOOK_FILE} next to this file holds {slack}
{s3_secrets}[context.{name}.vars]
greeting = "hello from the lab"
"#
    )
}

/// `[context.NAME.hosts]`, `.groups` (`all`, `web` = the first half rounded
/// up, `db` = the rest; with one host both are that host) and `.ssh`.
fn ssh_tables(name: &str, ssh: &SshLab) -> String {
    let hosts = ssh.hosts();
    let names: Vec<String> = hosts.iter().map(|(host, _)| quote(host)).collect();
    let mut toml = String::new();
    if !names.is_empty() {
        toml.push_str(&inventory(name, &hosts, &names));
    }
    let _ = write!(
        toml,
        "[context.{name}.ssh]\nconfig = {}\nknown_hosts = {}\nidentity = {}\n",
        quote(&ssh.ssh_config().display().to_string()),
        quote(&ssh.known_hosts().display().to_string()),
        quote(&ssh.client_key().display().to_string()),
    );
    toml
}

/// `[context.NAME.hosts]` and `.groups` of the lab's ssh hosts (an sshd
/// serving only spare addresses for Hetzner Cloud servers has none).
fn inventory(name: &str, hosts: &[(String, String)], names: &[String]) -> String {
    let split = names.len().div_ceil(2);
    let (web, db) = if names.len() == 1 {
        (names, names)
    } else {
        names.split_at(split)
    };
    let mut toml = format!("[context.{name}.hosts]\n");
    for (host, destination) in hosts {
        let _ = writeln!(toml, "{host} = {}", quote(destination));
    }
    let _ = write!(
        toml,
        "[context.{name}.groups]\nall = [{}]\nweb = [{}]\ndb = [{}]\n",
        names.join(", "),
        web.join(", "),
        db.join(", ")
    );
    toml
}

// PostgreSQL and S3 (pg.rs, s3.rs): their tables and secrets.

/// The lab's data stores and its cloud API, each there when the lab runs it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Stores<'a> {
    pub(crate) pg: Option<&'a PgLab>,
    pub(crate) s3: Option<&'a S3Lab>,
    pub(crate) hcloud: Option<&'a HcloudApi>,
}

/// The environment variable the `hcloud_token` secret is read from: the
/// one the official `hcloud` CLI reads too.
pub(crate) const HCLOUD_TOKEN_VAR: &str = "HCLOUD_TOKEN";

/// The variable behind the `github_token` secret of the lab contexts (the
/// ghcr pull secret setup-staging creates): a lab-only name, so a real
/// `GITHUB_TOKEN` of the developer's shell never ends up in the lab.
pub(crate) const GITHUB_TOKEN_VAR: &str = "RUNBOOK_LAB_GITHUB_TOKEN";

/// The `hcloud_token` and `github_token` lines of `[context.NAME.secrets]`
/// (empty without the Hetzner Cloud fake).
fn hcloud_secrets(hcloud: Option<&HcloudApi>) -> String {
    match hcloud {
        Some(_) => format!(
            "hcloud_token = {}\ngithub_token = {}\n",
            quote(&format!("env:{HCLOUD_TOKEN_VAR}")),
            quote(&format!("env:{GITHUB_TOKEN_VAR}"))
        ),
        None => String::new(),
    }
}

/// The `s3_access_key` / `s3_secret_key` lines of `[context.NAME.secrets]`
/// (empty without S3).
fn s3_secrets(s3: Option<&S3Lab>) -> String {
    match s3 {
        Some(_) => format!(
            "s3_access_key = {}\ns3_secret_key = {}\n",
            quote(&format!("env:{}", S3Lab::ACCESS_KEY_VAR)),
            quote(&format!("env:{}", S3Lab::SECRET_KEY_VAR)),
        ),
        None => String::new(),
    }
}

/// `[context.NAME.s3]`, `[context.NAME.pg]` and `[context.NAME.hcloud]`,
/// for what the lab runs.
fn store_tables(name: &str, stores: Stores<'_>) -> String {
    let mut toml = String::new();
    if let Some(hcloud) = stores.hcloud {
        let _ = write!(
            toml,
            "[context.{name}.hcloud]  # the Hetzner Cloud API fake; its actions finish in a few polls\nendpoint = {}\npoll_interval = \"50ms\"\n",
            quote(&hcloud.endpoint()),
        );
    }
    if let Some(s3) = stores.s3 {
        let _ = write!(
            toml,
            "[context.{name}.s3]  # {kind}\nendpoint = {}\nbucket = {}\nregion = {}\npath_style = true\n",
            quote(&s3.endpoint()),
            quote(s3.bucket()),
            quote(s3.region()),
            kind = s3.kind(),
        );
    }
    if let Some(pg) = stores.pg {
        let _ = write!(
            toml,
            "[context.{name}.pg]\nurl = {}\nbin_dir = {}\n",
            quote(&pg.url(PgLab::DATABASE)),
            quote(&pg.bin_dir().display().to_string()),
        );
    }
    toml
}

/// The `kubeconfig`, `kube_context` and `namespace` keys of a context (empty
/// without the Kubernetes API): `lab` uses kube context `lab` (namespace
/// staging), `lab-protected` kube context `lab-production` (production).
fn kube_keys(kube: Option<&KubeApi>, kube_context: &str, namespace: &str) -> String {
    match kube {
        Some(kube) => format!(
            "kubeconfig = {}\nkube_context = {}\nnamespace = {}\n",
            quote(&kube.kubeconfig().display().to_string()),
            quote(kube_context),
            quote(namespace),
        ),
        None => String::new(),
    }
}

/// A TOML basic string. JSON string escapes are a subset of TOML's, so
/// serde_json does the escaping (paths and URLs may hold `"` or `\`).
fn quote(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}
