//! The lab's `runbook.toml`: contexts `lab` and `lab-protected` that point
//! at the lab's services, so `runbook run x.rhai --context lab` works.
//!
//! Rendered as text rather than through a TOML serializer so the file reads
//! like one a person would write (it is shown to people by `runbook-lab up`).
//! Each lab component contributes its tables here as it is added.

use std::fmt::Write as _;

use crate::http::HttpServer;
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
pub(crate) fn render(http: &HttpServer, ssh: Option<&SshLab>, api_token_var: &str) -> String {
    let mut toml = format!("default_context = {}\n", quote(CONTEXT));
    toml.push_str(&context(
        CONTEXT,
        "the local lab on loopback",
        false,
        http,
        api_token_var,
    ));
    if let Some(ssh) = ssh {
        toml.push_str(&ssh_tables(CONTEXT, ssh));
    }
    toml.push_str(&context(
        PROTECTED_CONTEXT,
        &format!(
            "like lab, but protected (production-like): gates need --approve --confirm {PROTECTED_CONTEXT}"
        ),
        true,
        http,
        api_token_var,
    ));
    if let Some(ssh) = ssh {
        toml.push_str(&ssh_tables(PROTECTED_CONTEXT, ssh));
    }
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
    api_token_var: &str,
) -> String {
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
[context.{name}.http]
base = {base}
health = {health}
[context.{name}.notify]
webhook = {notify}
[context.{name}.secrets]
api_token = {api_token}
slack_webhook = {slack_file}      # {SLACK_WEBHOOK_FILE} next to this file holds {slack}
[context.{name}.vars]
greeting = "hello from the lab"
"#
    )
}

/// `[context.NAME.hosts]`, `.groups` (`all`, `web` = the first half rounded
/// up, `db` = the rest; with one host both are that host) and `.ssh`.
fn ssh_tables(name: &str, ssh: &SshLab) -> String {
    let hosts = ssh.hosts();
    let names: Vec<String> = hosts.iter().map(|(host, _)| quote(host)).collect();
    let split = names.len().div_ceil(2);
    let (web, db) = if names.len() == 1 {
        (&names[..], &names[..])
    } else {
        names.split_at(split)
    };
    let mut toml = format!("[context.{name}.hosts]\n");
    for (host, destination) in &hosts {
        let _ = writeln!(toml, "{host} = {}", quote(destination));
    }
    let _ = write!(
        toml,
        "[context.{name}.groups]\nall = [{}]\nweb = [{}]\ndb = [{}]\n",
        names.join(", "),
        web.join(", "),
        db.join(", ")
    );
    let _ = write!(
        toml,
        "[context.{name}.ssh]\nconfig = {}\nknown_hosts = {}\nidentity = {}\n",
        quote(&ssh.ssh_config().display().to_string()),
        quote(&ssh.known_hosts().display().to_string()),
        quote(&ssh.client_key().display().to_string()),
    );
    toml
}

/// A TOML basic string. JSON string escapes are a subset of TOML's, so
/// serde_json does the escaping (paths and URLs may hold `"` or `\`).
fn quote(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}
