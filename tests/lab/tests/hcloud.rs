//! The lab's Hetzner Cloud API fake, judged by Hetzner's own clients: the
//! official `hcloud` CLI (Debian's hcloud-cli, /usr/bin/hcloud) and the
//! official Python library (`hcloud` from PyPI, in the lab venv). Each test
//! starts a lab with the fake, drives a client, and checks the client's
//! output and exit code and the fake's state through `lab.hcloud()`.
//!
//! A missing client fails the test with a message saying to run
//! scripts/setup.sh; nothing is skipped.

// Helpers outside `#[test]` functions fail the test by panicking, like the tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use runbook_lab::{ActionSettings, Fault, HcloudApi, Lab, S3Lab, SshLab};
use serde_json::Value;

const HCLOUD: &str = "/usr/bin/hcloud";

/// What one client run did.
#[derive(Debug)]
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn success(&self) -> bool {
        self.code == Some(0)
    }
}

fn lab() -> Lab {
    Lab::builder().hcloud(true).start().unwrap()
}

fn api(lab: &Lab) -> &HcloudApi {
    lab.hcloud()
        .expect("the lab was started with .hcloud(true)")
}

fn ssh(lab: &Lab) -> &SshLab {
    lab.ssh()
        .expect("a lab with hcloud runs an sshd for its servers")
}

/// Run the hcloud CLI against the lab (bounded by coreutils' `timeout`),
/// with a config file of its own in the lab folder and a short poll interval.
fn cli_with_token(lab: &Lab, token: &str, args: &[&str]) -> Outcome {
    assert!(
        Path::new(HCLOUD).is_file(),
        "{HCLOUD} is missing: run scripts/setup.sh (it installs Debian's hcloud-cli)"
    );
    let output = Command::new("timeout")
        .args(["-k", "5", "90", HCLOUD, "--poll-interval", "100ms"])
        .args(args)
        .env("HCLOUD_ENDPOINT", api(lab).endpoint())
        .env("HCLOUD_TOKEN", token)
        .env("HCLOUD_CONFIG", lab.dir().join("hcloud-cli.toml"))
        .env_remove("HCLOUD_CONTEXT")
        .output()
        .unwrap();
    Outcome {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Run the CLI, expect success, return stdout.
fn cli(lab: &Lab, args: &[&str]) -> String {
    let outcome = cli_with_token(lab, HcloudApi::TOKEN, args);
    assert!(
        outcome.success(),
        "hcloud {} failed: {outcome:?}\nrequests: {:#?}",
        args.join(" "),
        api(lab).requests()
    );
    outcome.stdout
}

/// Run the CLI, expect failure, return what it said.
fn cli_fails(lab: &Lab, args: &[&str]) -> Outcome {
    let outcome = cli_with_token(lab, HcloudApi::TOKEN, args);
    assert!(
        !outcome.success() && outcome.code.is_some(),
        "hcloud {} should fail: {outcome:?}",
        args.join(" ")
    );
    outcome
}

/// A fresh ed25519 key pair in the lab folder: (private key path, public key line).
fn key_pair(lab: &Lab, name: &str) -> (PathBuf, String) {
    let path = lab.dir().join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    (path, public.trim().to_owned())
}

/// `ssh-keygen -l -E md5` of a public key file: the fingerprint Hetzner shows.
fn md5_fingerprint(public_key_file: &Path) -> String {
    let output = Command::new("ssh-keygen")
        .args(["-l", "-E", "md5", "-f"])
        .arg(public_key_file)
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    text.split_whitespace()
        .nth(1)
        .and_then(|word| word.strip_prefix("MD5:"))
        .unwrap()
        .to_owned()
}

/// Run `command` over ssh to `address` with `identity` only (the lab's
/// ssh_config supplies port, user and known_hosts); true when it succeeded.
fn ssh_with(lab: &Lab, identity: &Path, address: &str, command: &str) -> Outcome {
    let output = Command::new("timeout")
        .args(["-k", "5", "30", "ssh", "-F"])
        .arg(ssh(lab).ssh_config())
        .arg("-o")
        .arg(format!("IdentityFile={}", identity.display()))
        .args(["-o", "IdentitiesOnly=yes", address, command])
        .output()
        .unwrap();
    Outcome {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn names(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        .map(str::to_owned)
        .collect()
}

fn status_counts(lab: &Lab, path_prefix: &str) -> Vec<u16> {
    api(lab)
        .requests()
        .into_iter()
        .filter(|request| request.path.starts_with(path_prefix))
        .map(|request| request.status)
        .collect()
}

#[test]
fn cli_creates_lists_describes_and_deletes_a_server_that_boots_as_an_ssh_host() {
    // Actions finish by polls alone here (a slow machine must not finish
    // them on time first), so the CLI's polls can be counted exactly.
    let patient = ActionSettings {
        polls: 2,
        time: Duration::from_secs(60),
    };
    let lab = Lab::builder()
        .hcloud(true)
        .hcloud_actions(patient)
        .start()
        .unwrap();
    let (key, _) = key_pair(&lab, "deploy");
    let public_file = key.with_extension("pub");
    let created = cli(
        &lab,
        &[
            "ssh-key",
            "create",
            "--name",
            "deploy",
            "--public-key-from-file",
            public_file.to_str().unwrap(),
        ],
    );
    assert!(created.starts_with("SSH key "), "{created}");
    let keys = cli(&lab, &["ssh-key", "list", "-o", "noheader"]);
    let fingerprint = md5_fingerprint(&public_file);
    let row: Vec<&str> = keys.split_whitespace().collect();
    assert_eq!(row[1..], ["deploy", fingerprint.as_str()], "{keys}");

    let before = api(&lab).request_count();
    let started = Instant::now();
    let out = cli(
        &lab,
        &[
            "server",
            "create",
            "--name",
            "web-1",
            "--type",
            "cx22",
            "--image",
            "debian-12",
            "--location",
            "nbg1",
            "--ssh-key",
            "deploy",
            "--label",
            "env=staging",
        ],
    );
    let waited = started.elapsed();
    // The CLI waited for create_server and start_server: the server runs.
    let server = api(&lab).server("web-1").unwrap();
    assert_eq!(server["status"], "running", "{out}");
    let ip = server["public_net"]["ipv4"]["ip"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(out.contains(&format!("IPv4: {ip}")), "{out}");
    let commands: Vec<(String, String)> = api(&lab)
        .actions()
        .into_iter()
        .map(|action| (action.command, action.status))
        .collect();
    assert_eq!(
        commands,
        [
            ("create_server".to_owned(), "success".to_owned()),
            ("start_server".to_owned(), "success".to_owned())
        ]
    );
    // It polled create_server through `GET /actions?id=`, then start_server
    // through `GET /actions/{id}`.
    let polls: Vec<String> = api(&lab)
        .requests()
        .into_iter()
        .filter(|request| request.path.starts_with("/actions"))
        .map(|request| format!("{}?{}", request.path, request.query))
        .collect();
    let (create_id, start_id) = (api(&lab).actions()[0].id, api(&lab).actions()[1].id);
    let batch = format!("/actions?id={create_id}&page=1");
    let single = format!("/actions/{start_id}?");
    assert_eq!(polls, [batch.as_str(), &batch, &single, &single]);
    eprintln!(
        "hcloud server create: {waited:?} to running, {} requests, actions {:?}",
        api(&lab).request_count() - before,
        api(&lab).actions()
    );

    let listing = cli(&lab, &["server", "list", "-o", "noheader"]);
    assert_eq!(names(&listing), ["web-1"]);
    assert!(
        listing.contains("running") && listing.contains("nbg1-dc3"),
        "{listing}"
    );
    let selected = cli(
        &lab,
        &["server", "list", "-l", "env!=staging", "-o", "noheader"],
    );
    assert_eq!(selected.trim(), "");
    let described: Value =
        serde_json::from_str(&cli(&lab, &["server", "describe", "web-1", "-o", "json"])).unwrap();
    assert_eq!(described["id"], server["id"]);
    assert_eq!(described["server_type"]["name"], "cx22");
    assert_eq!(described["image"]["name"], "debian-12");
    assert_eq!(described["datacenter"]["location"]["name"], "nbg1");
    assert_eq!(described["labels"]["env"], "staging");

    // The server boots as a lab host that lets in the uploaded key only.
    let booted = ssh_with(&lab, &key, &ip, "echo booted");
    assert!(booted.success(), "{booted:?}");
    assert_eq!(booted.stdout.trim(), "booted");
    let lab_key = ssh_with(&lab, &ssh(&lab).client_key(), &ip, "true");
    assert!(!lab_key.success(), "the lab's own key got in: {lab_key:?}");

    // `hcloud server delete` does not wait for its action: let it finish on time.
    api(&lab).set_action_settings(ActionSettings::default());
    let deleted = cli(&lab, &["server", "delete", "web-1"]);
    assert!(deleted.contains("deleted"), "{deleted}");
    assert!(api(&lab).wait_until(Duration::from_secs(10), |api| api.servers().is_empty()));
    assert_eq!(cli(&lab, &["server", "list", "-o", "noheader"]).trim(), "");
    let gone = cli_fails(&lab, &["server", "describe", "web-1"]);
    assert!(gone.stderr.contains("server not found: web-1"), "{gone:?}");
    // Its address lets nobody in any more.
    assert!(!ssh_with(&lab, &key, &ip, "true").success());
}

#[test]
fn cli_creates_applies_and_deletes_a_firewall() {
    let lab = lab();
    cli(
        &lab,
        &[
            "server",
            "create",
            "--name",
            "app",
            "--type",
            "cx22",
            "--image",
            "debian-12",
        ],
    );
    let rules = lab.dir().join("rules.json");
    std::fs::write(
        &rules,
        r#"[{"direction":"in","protocol":"tcp","port":"22","source_ips":["0.0.0.0/0","::/0"]},
            {"direction":"in","protocol":"tcp","port":"30000-30080","source_ips":["127.0.0.1/32"]},
            {"direction":"in","protocol":"icmp","source_ips":["0.0.0.0/0"]}]"#,
    )
    .unwrap();
    let created = cli(
        &lab,
        &[
            "firewall",
            "create",
            "--name",
            "staging",
            "--rules-file",
            rules.to_str().unwrap(),
        ],
    );
    assert!(created.contains("created"), "{created}");
    cli(
        &lab,
        &[
            "firewall",
            "apply-to-resource",
            "staging",
            "--type",
            "server",
            "--server",
            "app",
        ],
    );
    let server_id = api(&lab).server("app").unwrap()["id"].as_u64().unwrap();
    assert_eq!(
        api(&lab).firewalls(),
        [("staging".to_owned(), vec![server_id])]
    );
    let described: Value = serde_json::from_str(&cli(
        &lab,
        &["firewall", "describe", "staging", "-o", "json"],
    ))
    .unwrap();
    assert_eq!(described["rules"].as_array().unwrap().len(), 3);
    assert_eq!(described["rules"][1]["port"], "30000-30080");
    assert_eq!(described["applied_to"][0]["server"]["id"], server_id);
    let listing = cli(&lab, &["firewall", "list", "-o", "noheader"]);
    assert!(
        listing.contains("3 Rules") && listing.contains("1 Server"),
        "{listing}"
    );
    let server: Value =
        serde_json::from_str(&cli(&lab, &["server", "describe", "app", "-o", "json"])).unwrap();
    assert_eq!(server["public_net"]["firewalls"][0]["status"], "applied");

    let in_use = cli_fails(&lab, &["firewall", "delete", "staging"]);
    assert!(in_use.stderr.contains("(resource_in_use)"), "{in_use:?}");
    cli(
        &lab,
        &[
            "firewall",
            "remove-from-resource",
            "staging",
            "--type",
            "server",
            "--server",
            "app",
        ],
    );
    assert_eq!(api(&lab).firewalls(), [("staging".to_owned(), vec![])]);
    // Applied through a label selector, it covers the servers that match.
    cli(&lab, &["server", "add-label", "app", "role=web"]);
    cli(
        &lab,
        &[
            "firewall",
            "apply-to-resource",
            "staging",
            "--type",
            "label_selector",
            "--label-selector",
            "role in (web,api)",
        ],
    );
    assert_eq!(
        api(&lab).firewalls(),
        [("staging".to_owned(), vec![server_id])]
    );
    cli(
        &lab,
        &[
            "firewall",
            "remove-from-resource",
            "staging",
            "--type",
            "label_selector",
            "--label-selector",
            "role in (web,api)",
        ],
    );
    let deleted = cli(&lab, &["firewall", "delete", "staging"]);
    assert!(deleted.contains("deleted"), "{deleted}");
    assert!(api(&lab).firewalls().is_empty());
    assert_eq!(
        cli(&lab, &["firewall", "list", "-o", "noheader"]).trim(),
        ""
    );
}

#[test]
fn cli_reports_api_errors_with_their_codes() {
    let lab = lab();
    let (key, public) = key_pair(&lab, "k");
    let file = key.with_extension("pub");
    let file = file.to_str().unwrap();
    cli(
        &lab,
        &[
            "ssh-key",
            "create",
            "--name",
            "k",
            "--public-key-from-file",
            file,
        ],
    );
    let same_key = cli_fails(
        &lab,
        &[
            "ssh-key",
            "create",
            "--name",
            "k2",
            "--public-key-from-file",
            file,
        ],
    );
    assert!(
        same_key
            .stderr
            .contains("SSH key with the same fingerprint already exists (uniqueness_error)"),
        "{same_key:?}"
    );
    assert_eq!(api(&lab).ssh_keys().len(), 1);
    assert_eq!(api(&lab).ssh_keys()[0]["public_key"], public.as_str());

    let bad_name = cli_fails(
        &lab,
        &[
            "server",
            "create",
            "--name",
            "not_a_hostname",
            "--type",
            "cx22",
            "--image",
            "debian-12",
        ],
    );
    assert!(bad_name.stderr.contains("(invalid_input)"), "{bad_name:?}");
    cli(
        &lab,
        &[
            "server",
            "create",
            "--name",
            "one",
            "--type",
            "cx22",
            "--image",
            "debian-12",
        ],
    );
    let twice = cli_fails(
        &lab,
        &[
            "server",
            "create",
            "--name",
            "one",
            "--type",
            "cx22",
            "--image",
            "debian-12",
        ],
    );
    assert!(twice.stderr.contains("(uniqueness_error)"), "{twice:?}");

    api(&lab).inject(Fault::ActionError {
        command: "start_server".into(),
        code: "server_start_failed".into(),
        message: "the host could not start the server".into(),
    });
    let failed = cli_fails(
        &lab,
        &[
            "server",
            "create",
            "--name",
            "two",
            "--type",
            "cx22",
            "--image",
            "debian-12",
        ],
    );
    assert!(
        failed
            .stderr
            .contains("the host could not start the server (server_start_failed)"),
        "{failed:?}"
    );
    assert_eq!(api(&lab).server("two").unwrap()["status"], "off");

    api(&lab).inject(Fault::ResourceUnavailable { count: 1 });
    let full = cli_fails(
        &lab,
        &[
            "server",
            "create",
            "--name",
            "three",
            "--type",
            "cx22",
            "--image",
            "debian-12",
        ],
    );
    assert!(full.stderr.contains("(resource_unavailable)"), "{full:?}");
    assert!(api(&lab).server("three").is_none());

    let wrong = cli_with_token(&lab, "not-the-token", &["server", "list"]);
    assert!(!wrong.success());
    assert!(
        wrong
            .stderr
            .contains("unable to authenticate (unauthorized)"),
        "{wrong:?}"
    );
}

#[test]
fn cli_reports_a_rate_limit_and_rides_out_conflicts() {
    let lab = lab();
    // hcloud-go as the CLI ships it stopped retrying 429s (hcloud-go#210):
    // it reports the code.
    api(&lab).inject(Fault::RateLimit { count: 1 });
    let limited = cli_fails(&lab, &["location", "list"]);
    assert!(
        limited
            .stderr
            .contains("requests per hour reached (rate_limit_exceeded)"),
        "{limited:?}"
    );
    let listing = cli(&lab, &["location", "list", "-o", "noheader"]);
    assert_eq!(names(&listing), ["fsn1", "nbg1", "hel1"]);
    assert_eq!(status_counts(&lab, "/locations"), [429, 200]);
    // `conflict` it retries with backoff until the write goes through.
    let (key, _) = key_pair(&lab, "retry");
    api(&lab).inject(Fault::Conflict { count: 2 });
    let file = key.with_extension("pub");
    cli(
        &lab,
        &[
            "ssh-key",
            "create",
            "--name",
            "retry",
            "--public-key-from-file",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(status_counts(&lab, "/ssh_keys"), [409, 409, 201]);
    assert_eq!(api(&lab).ssh_keys().len(), 1);
}

// The Python library.

/// The lab venv's python, which must have `hcloud`.
fn python() -> PathBuf {
    let python = S3Lab::venv().join("bin").join("python3");
    let found = Command::new(&python)
        .args(["-c", "import hcloud"])
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        found,
        "`{}` cannot import hcloud: run scripts/setup.sh (it installs hcloud from PyPI into the lab venv)",
        python.display()
    );
    python
}

/// Set up before every script: `client` (polling every 50 ms), `out(**x)`
/// printing one JSON line per call, and the classes the scripts use.
const PRELUDE: &str = r#"
import json, os, sys, time
import requests
from hcloud import Client, APIException
from hcloud.actions import ActionFailedException
from hcloud.firewalls import FirewallRule, FirewallResource, FirewallResourceLabelSelector
from hcloud.images import Image
from hcloud.locations import Location
from hcloud.server_types import ServerType
client = Client(token=os.environ["HCLOUD_TOKEN"], api_endpoint=os.environ["HCLOUD_ENDPOINT"],
                poll_interval=0.05)
def out(**values):
    print(json.dumps(values, default=str), flush=True)
cx22, debian = ServerType(name="cx22"), Image(name="debian-12")
"#;

/// Run a Python script against the lab; its `out(...)` lines, parsed.
fn python_script(lab: &Lab, script: &str) -> Vec<Value> {
    let output = Command::new("timeout")
        .args(["-k", "5", "120"])
        .arg(python())
        .arg("-c")
        .arg(format!("{PRELUDE}\n{script}"))
        .envs(api(lab).env())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the script failed: {}\n--- stdout:\n{stdout}\nrequests: {:#?}",
        String::from_utf8_lossy(&output.stderr),
        api(lab).requests()
    );
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn python_creates_waits_for_and_deletes_a_server() {
    let lab = lab();
    let (_, public) = key_pair(&lab, "py");
    let (_, other) = key_pair(&lab, "other");
    let script = format!(
        r#"
key = client.ssh_keys.create(name="py", public_key={public:?})
out(keys=[k.name for k in client.ssh_keys.get_all()], fingerprint=key.fingerprint)
try:
    client.ssh_keys.create(name="py", public_key={other:?})
except APIException as error:
    out(same_name=error.code, fields=error.details["fields"])
started = time.monotonic()
created = client.servers.create(name="py-web", server_type=cx22, image=debian, ssh_keys=[key],
                                location=Location(name="hel1"), labels={{"env": "staging", "managed-by": "runbook"}})
out(status=created.server.status, action=created.action.command, action_status=created.action.status,
    next=[a.command for a in created.next_actions], root_password=created.root_password)
try:
    client.servers.delete(created.server)
    out(delete_while_starting="accepted")
except APIException as error:
    out(delete_while_starting=error.code)
created.action.wait_until_finished()
for action in created.next_actions:
    action.wait_until_finished()
server = client.servers.get_by_name("py-web")
out(status=server.status, ip=server.public_net.ipv4.ip, seconds=time.monotonic() - started,
    location=server.location.name)
out(selected=[s.name for s in client.servers.get_all(label_selector="env=staging,managed-by")],
    not_selected=[s.name for s in client.servers.get_all(label_selector="env notin (staging)")],
    running=[s.name for s in client.servers.get_all(status=["running"])])
out(server_actions=sorted(a.command for a in server.get_actions_list().actions))
no_key = client.servers.create(name="py-db", server_type=cx22, image=debian, start_after_create=False)
no_key.action.wait_until_finished()
out(root_password_given=isinstance(no_key.root_password, str) and len(no_key.root_password) > 0,
    next_without_start=len(no_key.next_actions))
deleting = client.servers.delete(server)
deleting.wait_until_finished()
try:
    client.servers.get_by_id(server.id)
    out(after_delete="found")
except APIException as error:
    out(after_delete=error.code)
out(by_name=client.servers.get_by_name("py-web"))
"#
    );
    let lines = python_script(&lab, &script);
    assert_eq!(lines[0]["keys"], serde_json::json!(["py"]));
    assert_eq!(
        lines[0]["fingerprint"],
        api(&lab).ssh_keys()[0]["fingerprint"]
    );
    assert_eq!(lines[2]["status"], "initializing");
    assert_eq!(lines[2]["action"], "create_server");
    assert_eq!(lines[2]["action_status"], "running");
    assert_eq!(lines[2]["next"], serde_json::json!(["start_server"]));
    assert_eq!(lines[2]["root_password"], Value::Null);
    assert_eq!(lines[3]["delete_while_starting"], "locked");
    assert_eq!(lines[4]["status"], "running");
    assert_eq!(lines[4]["location"], "hel1");
    let ip = lines[4]["ip"].as_str().unwrap();
    assert!(ip.starts_with("127."), "{ip}");
    eprintln!(
        "python: create to running in {:.3} s at poll_interval 0.05 s; actions {:?}",
        lines[4]["seconds"].as_f64().unwrap(),
        api(&lab).actions()
    );
    assert_eq!(lines[5]["selected"], serde_json::json!(["py-web"]));
    assert_eq!(lines[5]["not_selected"], serde_json::json!([]));
    assert_eq!(lines[5]["running"], serde_json::json!(["py-web"]));
    assert_eq!(
        lines[6]["server_actions"],
        serde_json::json!(["create_server", "start_server"])
    );
    assert_eq!(lines[7]["root_password_given"], true);
    assert_eq!(lines[7]["next_without_start"], 0);
    assert_eq!(lines[8]["after_delete"], "not_found");
    assert_eq!(lines[9]["by_name"], Value::Null);
    assert_eq!(api(&lab).server("py-db").unwrap()["status"], "off");
    assert!(api(&lab).server("py-web").is_none());
}

#[test]
fn python_creates_applies_and_deletes_a_firewall() {
    let lab = lab();
    let lines = python_script(
        &lab,
        r#"
created = client.servers.create(name="fw-target", server_type=cx22, image=debian, labels={"role": "web"})
for action in [created.action, *created.next_actions]:
    action.wait_until_finished()
server = created.server
rules = [FirewallRule(direction="in", protocol="tcp", port="22", source_ips=["0.0.0.0/0", "::/0"]),
         FirewallRule(direction="in", protocol="tcp", port="6443", source_ips=["127.0.0.1/32"])]
made = client.firewalls.create(name="staging", rules=rules,
                               resources=[FirewallResource(type="label_selector", label_selector=FirewallResourceLabelSelector("role=web"))])
out(actions=sorted(a.command for a in made.actions))
for action in made.actions:
    action.wait_until_finished()
firewall = client.firewalls.get_by_name("staging")
out(applied=[(r.type, [x.server.id for x in (r.applied_to_resources or [])]) for r in firewall.applied_to],
    rules=[(r.port, r.source_ips) for r in firewall.rules])
try:
    client.firewalls.delete(firewall)
except APIException as error:
    out(delete=error.code)
try:
    client.firewalls.create(name="staging")
except APIException as error:
    out(again=error.code, fields=error.details["fields"])
try:
    client.firewalls.create(name="bad", rules=[FirewallRule(direction="in", protocol="tcp", source_ips=["0.0.0.0/0"])])
except APIException as error:
    out(invalid=error.code, fields=error.details["fields"])
for action in client.firewalls.set_rules(firewall, rules[:1]):
    action.wait_until_finished()
for action in client.firewalls.remove_from_resources(firewall, [FirewallResource(type="label_selector", label_selector=FirewallResourceLabelSelector("role=web"))]):
    action.wait_until_finished()
for action in client.firewalls.apply_to_resources(firewall, [FirewallResource(type="server", server=server)]):
    action.wait_until_finished()
out(server_firewalls=[(f.firewall.id, f.status) for f in client.servers.get_by_id(server.id).public_net.firewalls],
    firewall=firewall.id, rules=len(client.firewalls.get_by_id(firewall.id).rules))
for action in client.firewalls.remove_from_resources(firewall, [FirewallResource(type="server", server=server)]):
    action.wait_until_finished()
second = client.servers.create(name="fw-second", server_type=cx22, image=debian, firewalls=[firewall])
out(created_with=[f.firewall.id for f in second.server.public_net.firewalls])
try:
    client.firewalls.remove_from_resources(firewall, [FirewallResource(type="server", server=second.server)])
except APIException as error:
    out(while_creating=error.code)
for action in [second.action, *second.next_actions]:
    action.wait_until_finished()
for action in client.firewalls.remove_from_resources(firewall, [FirewallResource(type="server", server=second.server)]):
    action.wait_until_finished()
out(deleted=client.firewalls.delete(firewall), left=len(client.firewalls.get_all()))
"#,
    );
    assert_eq!(
        lines[0]["actions"],
        serde_json::json!(["apply_firewall", "set_firewall_rules"])
    );
    let server_id = api(&lab).server("fw-target").unwrap()["id"].clone();
    assert_eq!(
        lines[1]["applied"],
        serde_json::json!([["label_selector", [server_id]]])
    );
    assert_eq!(
        lines[1]["rules"],
        serde_json::json!([["22", ["0.0.0.0/0", "::/0"]], ["6443", ["127.0.0.1/32"]]])
    );
    assert_eq!(lines[2]["delete"], "resource_in_use");
    assert_eq!(lines[3]["again"], "uniqueness_error");
    assert_eq!(lines[3]["fields"], serde_json::json!([{"name": "name"}]));
    assert_eq!(lines[4]["invalid"], "invalid_input");
    assert_eq!(lines[4]["fields"][0]["name"], "rules[0].port");
    assert!(lines[4]["fields"][0]["messages"][0].is_string());
    assert_eq!(
        lines[5]["server_firewalls"],
        serde_json::json!([[lines[5]["firewall"].clone(), "applied"]])
    );
    assert_eq!(lines[5]["rules"], 1);
    assert_eq!(
        lines[6]["created_with"],
        serde_json::json!([lines[5]["firewall"].clone()])
    );
    assert_eq!(lines[7]["while_creating"], "locked");
    assert_eq!(lines[8]["deleted"], true);
    assert_eq!(lines[8]["left"], 0);
}

#[test]
fn python_pages_through_lists_and_reads_rate_limit_headers() {
    let lab = lab();
    let lines = python_script(
        &lab,
        r#"
for index in range(60):
    client.servers.create(name=f"node-{index:02}", server_type=cx22, image=debian, labels={"batch": "a" if index < 40 else "b"})
everything = client.servers.get_all()
out(count=len(everything), first=everything[0].name, last=everything[-1].name)
page = client.servers.get_list(page=2, per_page=25)
pagination = page.meta.pagination
out(names=[s.name for s in page.servers][:2],
    pagination={key: getattr(pagination, key) for key in ["page", "per_page", "previous_page", "next_page", "last_page", "total_entries"]})
out(batch_b=len(client.servers.get_all(label_selector="batch=b")), not_a=len(client.servers.get_all(label_selector="batch!=a")),
    none=len(client.servers.get_all(label_selector="!batch")))
raw = requests.get(os.environ["HCLOUD_ENDPOINT"] + "/servers?per_page=80&label_selector=batch%3Da",
                   headers={"Authorization": "Bearer " + os.environ["HCLOUD_TOKEN"]})
out(per_page=raw.json()["meta"]["pagination"]["per_page"], link=raw.headers["Link"],
    limit=raw.headers["RateLimit-Limit"], remaining=raw.headers["RateLimit-Remaining"],
    reset=int(raw.headers["RateLimit-Reset"]) - int(time.time()))
unauthorized = requests.get(os.environ["HCLOUD_ENDPOINT"] + "/servers")
out(status=unauthorized.status_code, error=unauthorized.json()["error"]["code"])
"#,
    );
    assert_eq!(lines[0]["count"], 60);
    assert_eq!(lines[0]["first"], "node-00");
    assert_eq!(lines[0]["last"], "node-59");
    // get_all asks for 50 a page and followed meta.pagination to page 2.
    let pages: Vec<String> = api(&lab)
        .requests()
        .into_iter()
        .filter(|request| request.method == "GET" && request.path == "/servers")
        .map(|request| request.query)
        .take(2)
        .collect();
    assert_eq!(pages, ["page=1&per_page=50", "page=2&per_page=50"]);
    assert_eq!(lines[1]["names"], serde_json::json!(["node-25", "node-26"]));
    assert_eq!(
        lines[1]["pagination"],
        serde_json::json!({"page": 2, "per_page": 25, "previous_page": 1, "next_page": 3, "last_page": 3, "total_entries": 60})
    );
    assert_eq!(lines[2]["batch_b"], 20);
    assert_eq!(lines[2]["not_a"], 20);
    assert_eq!(lines[2]["none"], 0);
    assert_eq!(lines[3]["per_page"], 50);
    let endpoint = api(&lab).endpoint();
    assert_eq!(
        lines[3]["link"].as_str().unwrap(),
        format!("<{endpoint}/servers?label_selector=batch%3Da&page=1&per_page=50>; rel=\"last\"")
    );
    assert_eq!(lines[3]["limit"], "3600");
    let remaining: u32 = lines[3]["remaining"].as_str().unwrap().parse().unwrap();
    let used = u32::try_from(api(&lab).request_count()).unwrap();
    assert!(
        remaining < 3600 && remaining + used >= 3600,
        "{remaining} left after {used}"
    );
    assert!(lines[3]["reset"].as_i64().unwrap() >= 1);
    assert_eq!(lines[4]["status"], 401);
    assert_eq!(lines[4]["error"], "unauthorized");
}

#[test]
fn python_meets_injected_faults() {
    let lab = lab();
    api(&lab).inject(Fault::RateLimit { count: 2 });
    let lines = python_script(
        &lab,
        r#"
out(types=[t.name for t in client.server_types.get_all()][:2])
"#,
    );
    // hcloud-python retried both 429s with its backoff.
    assert_eq!(lines[0]["types"], serde_json::json!(["cx22", "cx32"]));
    assert_eq!(status_counts(&lab, "/server_types"), [429, 429, 200]);

    api(&lab).inject(Fault::Locked { count: 1 });
    api(&lab).inject(Fault::ActionError {
        command: "create_server".into(),
        code: "server_create_failed".into(),
        message: "the image could not be written".into(),
    });
    api(&lab).inject(Fault::ResourceUnavailable { count: 1 });
    let lines = python_script(
        &lab,
        r#"
for name in ["locked", "unavailable"]:
    try:
        client.servers.create(name=name, server_type=cx22, image=debian)
        out(outcome="created")
    except APIException as error:
        out(outcome=error.code, message=error.message)
created = client.servers.create(name="failing", server_type=cx22, image=debian)
try:
    created.action.wait_until_finished()
    out(outcome="finished")
except ActionFailedException as error:
    out(outcome=error.action.error["code"], message=error.action.error["message"])
out(status=client.servers.get_by_name("failing").status)
"#,
    );
    assert_eq!(lines[0]["outcome"], "locked");
    assert_eq!(lines[1]["outcome"], "resource_unavailable");
    assert!(lines[1]["message"].as_str().unwrap().contains("placement"));
    assert_eq!(lines[2]["outcome"], "server_create_failed");
    assert_eq!(lines[2]["message"], "the image could not be written");
    assert_eq!(lines[3]["status"], "off");

    // A create whose response is lost: the client sees a closed connection,
    // yet the server exists, once; looking it up by name finds it.
    api(&lab).inject(Fault::DropCreateResponse);
    let lines = python_script(
        &lab,
        r#"
try:
    client.servers.create(name="lost", server_type=cx22, image=debian)
    out(outcome="answered")
except requests.exceptions.ConnectionError as error:
    out(outcome="connection closed")
out(found=[s.name for s in client.servers.get_all(name="lost")])
"#,
    );
    assert_eq!(lines[0]["outcome"], "connection closed");
    assert_eq!(lines[1]["found"], serde_json::json!(["lost"]));
    let creates = api(&lab)
        .requests()
        .into_iter()
        .filter(|request| request.method == "POST" && request.path == "/servers")
        .count();
    // locked, unavailable, failing, lost: one request each, none retried.
    assert_eq!(creates, 4);
}
