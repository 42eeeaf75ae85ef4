//! The local lab: real servers and API fakes on loopback that runbooks and
//! tests run against, so `runbook run x.rhai --context lab` exercises real
//! network calls without touching anything off this machine.
//!
//! [`Lab::start`] starts every component and writes a `runbook.toml` that
//! points at them; dropping the [`Lab`] stops them and deletes its folder.
//! Each component lives in its own module (today: [`HttpServer`] and, when
//! asked for with [`Lab::builder`]`().ssh_hosts(n)`, [`SshLab`]).
//! PostgreSQL ([`PgLab`], `.postgres(true)`) and S3 ([`S3Lab`],
//! `.s3(S3Kind::S3sFs)` or `S3Kind::Moto`) are also off unless asked for,
//! as is the Kubernetes API fake ([`KubeApi`], `.kube(true)`, which also
//! writes a kubeconfig and puts `KUBECONFIG` into [`Lab::env`]) and the
//! Hetzner Cloud API fake ([`HcloudApi`], `.hcloud(true)`, whose servers
//! boot as ssh hosts and which puts `HCLOUD_ENDPOINT`/`HCLOUD_TOKEN` into
//! [`Lab::env`]).
//!
//! ```no_run
//! let lab = runbook_lab::Lab::start()?;
//! let status = std::process::Command::new("runbook")
//!     .args(["run", "examples/hello.rhai", "--context", "lab"])
//!     .envs(lab.env())
//!     .status()?;
//! assert!(status.success());
//! // What the run posted to the Slack webhook, read from the lab directly:
//! let messages: Vec<serde_json::Value> = lab.http().hooks("slack");
//! # let _ = messages;
//! # anyhow::Ok(())
//! ```
//!
//! With ssh hosts (a real sshd on 127.0.0.1 .. 127.0.0.4, in the contexts'
//! `hosts`, `groups` and `ssh` tables):
//!
//! ```no_run
//! let lab = runbook_lab::Lab::builder().ssh_hosts(4).start()?;
//! if let Some(ssh) = lab.ssh() {
//!     let status = std::process::Command::new("ssh")
//!         .arg("-F")
//!         .arg(ssh.ssh_config())
//!         .args(["127.0.0.4", "true"])
//!         .status()?;
//!     assert!(status.success());
//! }
//! # anyhow::Ok(())
//! ```

mod config;
mod hcloud;
mod http;
mod k8s;
mod labels;
mod pg;
mod query;
mod s3;
mod s3_proxy;
mod sshd;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

pub use crate::hcloud::{ActionRecord, ActionSettings, Fault, HcloudApi, HcloudRequest, HostSlot};
pub use crate::http::HttpServer;
pub use crate::k8s::KubeApi;
pub use crate::pg::PgLab;
pub use crate::s3::{S3Kind, S3Lab};
pub use crate::s3_proxy::StrippingProxy;
pub use crate::sshd::SshLab;

/// Everything the lab runs, plus the temporary folder holding its config.
///
/// Components are declared before the folder so they stop before it is deleted.
#[derive(Debug)]
pub struct Lab {
    http: HttpServer,
    ssh: Option<SshLab>,
    pg: Option<PgLab>,
    s3: Option<S3Lab>,
    kube: Option<KubeApi>,
    hcloud: Option<HcloudApi>,
    dir: tempfile::TempDir,
}

/// Which optional components a [`Lab`] starts: [`Lab::builder`].
#[derive(Debug, Clone, Default)]
pub struct LabBuilder {
    ssh_hosts: usize,
    postgres: bool,
    s3: Option<S3Kind>,
    kube: bool,
    kube_delay: Option<Duration>,
    kube_progress_deadline: Option<Duration>,
    hcloud: bool,
    hcloud_actions: Option<ActionSettings>,
}

impl LabBuilder {
    /// Serve `count` ssh hosts (127.0.0.1 .. 127.0.0.`count`, 1 to
    /// [`SshLab::MAX_HOSTS`]) from a real sshd; 0, the default, starts none.
    pub fn ssh_hosts(mut self, count: usize) -> LabBuilder {
        self.ssh_hosts = count;
        self
    }

    /// Run a real PostgreSQL server with the seeded `todos` database
    /// ([`PgLab`]); off by default.
    pub fn postgres(mut self, on: bool) -> LabBuilder {
        self.postgres = on;
        self
    }

    /// Run an S3 server of `kind` with the `runbook-lab` bucket ([`S3Lab`]);
    /// off by default.
    pub fn s3(mut self, kind: S3Kind) -> LabBuilder {
        self.s3 = Some(kind);
        self
    }

    /// Serve the Kubernetes API fake ([`KubeApi`]) and write a kubeconfig;
    /// off by default.
    pub fn kube(mut self, on: bool) -> LabBuilder {
        self.kube = on;
        self
    }

    /// How long the fake cluster's new pods take to become ready (or to
    /// crash, for a `broken` image); default 200 ms. Change it later with
    /// [`KubeApi::set_delay`].
    pub fn kube_delay(mut self, delay: Duration) -> LabBuilder {
        self.kube_delay = Some(delay);
        self
    }

    /// After how long without progress a rollout reports
    /// `ProgressDeadlineExceeded` (a Deployment's smaller
    /// `progressDeadlineSeconds` wins); default 3 s.
    pub fn kube_progress_deadline(mut self, deadline: Duration) -> LabBuilder {
        self.kube_progress_deadline = Some(deadline);
        self
    }

    /// Serve the Hetzner Cloud API fake ([`HcloudApi`]); off by default.
    /// Its servers boot as ssh hosts on [`Lab::HCLOUD_SERVERS`] spare
    /// addresses of the lab's sshd (started for them even without
    /// [`LabBuilder::ssh_hosts`]).
    pub fn hcloud(mut self, on: bool) -> LabBuilder {
        self.hcloud = on;
        self
    }

    /// How the fake's actions progress (polls and time until they finish);
    /// default [`ActionSettings::default`]. Change it later with
    /// [`HcloudApi::set_action_settings`].
    pub fn hcloud_actions(mut self, settings: ActionSettings) -> LabBuilder {
        self.hcloud_actions = Some(settings);
        self
    }

    /// Start the lab: see [`Lab::start`].
    pub fn start(self) -> anyhow::Result<Lab> {
        let dir = tempfile::Builder::new()
            .prefix("runbook-lab-")
            .tempdir()
            .context("cannot create the lab's temporary folder")?;
        let http = HttpServer::start().context("cannot start the lab HTTP server")?;
        let spares = if self.hcloud { Lab::HCLOUD_SERVERS } else { 0 };
        let ssh = match (self.ssh_hosts, spares) {
            (0, 0) => None,
            (count, 0) => Some(
                SshLab::start(dir.path(), count)
                    .with_context(|| format!("cannot start the lab's {count} ssh hosts"))?,
            ),
            (count, spares) => Some(
                SshLab::start_with_spares(dir.path(), count, spares).with_context(|| {
                    format!(
                        "cannot start the lab's {count} ssh hosts and {spares} server addresses"
                    )
                })?,
            ),
        };
        let hcloud = if self.hcloud {
            let slots = ssh.as_ref().map(SshLab::spare_slots).unwrap_or_default();
            Some(
                HcloudApi::start(self.hcloud_actions.unwrap_or_default(), slots)
                    .context("cannot start the lab's Hetzner Cloud API")?,
            )
        } else {
            None
        };
        let pg = if self.postgres {
            Some(PgLab::start(dir.path()).context("cannot start the lab's PostgreSQL")?)
        } else {
            None
        };
        let s3 = match self.s3 {
            Some(kind) => Some(
                S3Lab::start(dir.path(), kind)
                    .with_context(|| format!("cannot start the lab's S3 server ({kind})"))?,
            ),
            None => None,
        };
        let kube = if self.kube {
            let delay = self.kube_delay.unwrap_or(Lab::KUBE_DELAY);
            let deadline = self
                .kube_progress_deadline
                .unwrap_or(Lab::KUBE_PROGRESS_DEADLINE);
            Some(
                KubeApi::start(dir.path(), delay, deadline)
                    .context("cannot start the lab's Kubernetes API")?,
            )
        } else {
            None
        };
        if let (Some(pg), Some(kube)) = (&pg, &kube) {
            seed_app_db(pg, kube).context("cannot create the Secret `app-db`")?;
        }
        let lab = Lab {
            http,
            ssh,
            pg,
            s3,
            kube,
            hcloud,
            dir,
        };
        lab.write(
            config::SLACK_WEBHOOK_FILE,
            &config::slack_webhook(&lab.http),
        )?;
        lab.write(
            config::FILE_NAME,
            &config::render(
                &lab.http,
                lab.ssh.as_ref(),
                config::Stores {
                    pg: lab.pg.as_ref(),
                    s3: lab.s3.as_ref(),
                    hcloud: lab.hcloud.as_ref(),
                },
                lab.kube.as_ref(),
                Lab::API_TOKEN_VAR,
            ),
        )?;
        std::fs::create_dir(lab.state_dir()).with_context(|| {
            format!(
                "cannot create the lab's state folder `{}`",
                lab.state_dir().display()
            )
        })?;
        Ok(lab)
    }
}

impl Lab {
    /// The environment variable the `api_token` secret of the lab contexts is read from.
    pub const API_TOKEN_VAR: &str = "RUNBOOK_LAB_API_TOKEN";

    /// The value [`Lab::env`] gives [`Lab::API_TOKEN_VAR`]; fixed so tests can
    /// check it is redacted from output and journals.
    pub const API_TOKEN: &str = "lab-token-6f1d2c9a";

    /// The value [`Lab::env`] gives the `github_token` secret's variable when
    /// the Hetzner Cloud fake runs (setup-staging's ghcr pull secret).
    pub const GITHUB_TOKEN: &str = "lab-ghcr-token-0c2b7e9f41d8";

    /// How long new pods in the fake cluster take to become ready, unless
    /// [`LabBuilder::kube_delay`] says otherwise.
    pub const KUBE_DELAY: Duration = Duration::from_millis(200);

    /// The fake cluster's rollout progress deadline, unless
    /// [`LabBuilder::kube_progress_deadline`] says otherwise.
    pub const KUBE_PROGRESS_DEADLINE: Duration = Duration::from_secs(3);

    /// How many servers of the Hetzner Cloud fake boot as ssh hosts at once:
    /// the spare addresses after the ssh hosts' that the lab's sshd serves.
    pub const HCLOUD_SERVERS: usize = 4;

    /// The context the lab's config selects by default.
    pub const CONTEXT: &str = config::CONTEXT;

    /// The same lab marked `protected`: gates need `--approve --confirm lab-protected`.
    pub const PROTECTED_CONTEXT: &str = config::PROTECTED_CONTEXT;

    /// Start every default component (no ssh hosts) and write `runbook.toml`
    /// (and the secret files it names) into a fresh temporary folder.
    pub fn start() -> anyhow::Result<Lab> {
        Lab::builder().start()
    }

    /// Choose optional components, then [`LabBuilder::start`]:
    /// `Lab::builder().ssh_hosts(20).start()`.
    pub fn builder() -> LabBuilder {
        LabBuilder::default()
    }

    /// The lab's temporary folder (deleted when the lab is dropped).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The `runbook.toml` the lab wrote.
    pub fn config_path(&self) -> PathBuf {
        self.dir().join(config::FILE_NAME)
    }

    /// Where runs against the lab keep their journals (`RUNBOOK_STATE_DIR`),
    /// so lab runs never write into the user's own state folder.
    pub fn state_dir(&self) -> PathBuf {
        self.dir().join("state")
    }

    /// The lab's HTTP server.
    pub fn http(&self) -> &HttpServer {
        &self.http
    }

    /// The lab's ssh hosts, if it was started with [`LabBuilder::ssh_hosts`].
    pub fn ssh(&self) -> Option<&SshLab> {
        self.ssh.as_ref()
    }

    /// The lab's ssh hosts, to stop or restart them ([`SshLab::restart`]).
    pub fn ssh_mut(&mut self) -> Option<&mut SshLab> {
        self.ssh.as_mut()
    }

    /// The lab's PostgreSQL, if it was started with [`LabBuilder::postgres`].
    pub fn postgres(&self) -> Option<&PgLab> {
        self.pg.as_ref()
    }

    /// The lab's S3 server, if it was started with [`LabBuilder::s3`].
    pub fn s3(&self) -> Option<&S3Lab> {
        self.s3.as_ref()
    }

    /// The lab's Kubernetes API, if it was started with [`LabBuilder::kube`].
    pub fn kube(&self) -> Option<&KubeApi> {
        self.kube.as_ref()
    }

    /// The lab's Hetzner Cloud API, if it was started with [`LabBuilder::hcloud`].
    pub fn hcloud(&self) -> Option<&HcloudApi> {
        self.hcloud.as_ref()
    }

    /// The k0s version the stand-in of [`Lab::k0s_standin`] reports.
    pub const K0S_VERSION: &str = "v1.33.4+k0s.0";

    /// Write the k0s stand-in (`k0s/k0s-standin` in the lab folder) and
    /// return its path: a shell script with k0s's command line (`version`,
    /// `status -o json`, `install controller --single`, `start`, `stop`,
    /// `reset`, `kubectl get --raw=/readyz`, `kubeconfig admin`) whose
    /// cluster is the lab's Kubernetes API fake. setup-staging installs it
    /// from `file://PATH` as it would the real binary from its release URL.
    /// Needs the Kubernetes API ([`LabBuilder::kube`]).
    pub fn k0s_standin(&self) -> anyhow::Result<PathBuf> {
        let kube = self
            .kube()
            .context("the k0s stand-in needs the lab's Kubernetes API (LabBuilder::kube)")?;
        let folder = self.dir().join("k0s");
        std::fs::create_dir_all(&folder)
            .with_context(|| format!("cannot create `{}`", folder.display()))?;
        let script = include_str!("k0s-standin.sh")
            .replace("@VERSION@", Lab::K0S_VERSION)
            .replace("@KUBECONFIG@", &kube.kubeconfig().display().to_string());
        let path = folder.join("k0s-standin");
        std::fs::write(&path, script)
            .with_context(|| format!("cannot write `{}`", path.display()))?;
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot make `{}` executable", path.display()))?;
        Ok(path)
    }

    /// The environment a `runbook` process needs to use the lab: the config
    /// path, the API token secret and a private state folder; with S3, its
    /// secrets and the standard `AWS_*` variables too.
    ///
    /// With the Kubernetes API: also `KUBECONFIG`, and `KUBECACHEDIR` so
    /// kubectl keeps its discovery cache in the lab folder, not `~/.kube`.
    /// With the Hetzner Cloud API: `HCLOUD_ENDPOINT` and `HCLOUD_TOKEN`
    /// (the `hcloud_token` secret, and what the `hcloud` CLI reads).
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            (
                "RUNBOOK_CONFIG".to_owned(),
                self.config_path().display().to_string(),
            ),
            (Lab::API_TOKEN_VAR.to_owned(), Lab::API_TOKEN.to_owned()),
            (
                "RUNBOOK_STATE_DIR".to_owned(),
                self.state_dir().display().to_string(),
            ),
        ];
        if let Some(pg) = &self.pg {
            env.push(("PGPASSWORD".to_owned(), pg.password().to_owned()));
        }
        if let Some(s3) = &self.s3 {
            env.extend(s3.env());
        }
        if let Some(hcloud) = &self.hcloud {
            env.extend(hcloud.env());
            env.push((
                crate::config::GITHUB_TOKEN_VAR.to_owned(),
                Lab::GITHUB_TOKEN.to_owned(),
            ));
        }
        if let Some(kube) = &self.kube {
            env.push((
                "KUBECONFIG".to_owned(),
                kube.kubeconfig().display().to_string(),
            ));
            env.push((
                "KUBECACHEDIR".to_owned(),
                self.dir().join("kube-cache").display().to_string(),
            ));
        }
        env
    }

    fn write(&self, name: &str, contents: &str) -> anyhow::Result<()> {
        let path = self.dir().join(name);
        std::fs::write(&path, contents)
            .with_context(|| format!("cannot write `{}`", path.display()))
    }
}

/// The Secret `app-db` in staging and production: the credentials of the
/// lab PostgreSQL's `app` role (`username`, `password`, `DATABASE_URL`),
/// which the seeded backend Deployments reference.
fn seed_app_db(pg: &PgLab, kube: &KubeApi) -> anyhow::Result<()> {
    use base64::Engine as _;
    let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let url = pg.url_as(PgLab::APP_USER, PgLab::APP_PASSWORD, PgLab::DATABASE);
    for namespace in ["staging", "production"] {
        kube.create(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": { "name": "app-db", "namespace": namespace },
            "type": "Opaque",
            "data": {
                "username": encode(PgLab::APP_USER),
                "password": encode(PgLab::APP_PASSWORD),
                "DATABASE_URL": encode(&url),
            },
        }))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(lab: &Lab) -> toml::Table {
        std::fs::read_to_string(lab.config_path())
            .unwrap()
            .parse()
            .unwrap()
    }

    #[test]
    fn config_has_both_contexts_pointing_at_the_lab() {
        let lab = Lab::start().unwrap();
        let config = config(&lab);
        let keys: Vec<&str> = config.keys().map(String::as_str).collect();
        assert_eq!(keys, ["context", "default_context"]);
        assert_eq!(config["default_context"].as_str(), Some("lab"));

        let contexts = config["context"].as_table().unwrap();
        let names: Vec<&str> = contexts.keys().map(String::as_str).collect();
        assert_eq!(names, ["lab", "lab-protected"]);
        for (name, protected) in [("lab", false), ("lab-protected", true)] {
            let context = contexts[name].as_table().unwrap();
            // What runbook's context loader accepts: the stdlib's module registry.
            let known = runbook_stdlib::context_keys();
            for key in context.keys() {
                assert!(known.contains(&key.as_str()), "unknown key {key}");
            }
            assert_eq!(context["protected"].as_bool(), Some(protected));
            assert_eq!(
                context["http"]["base"].as_str(),
                Some(lab.http().base_url().as_str())
            );
            assert_eq!(
                context["http"]["health"].as_str(),
                Some(lab.http().url("/health").as_str())
            );
            assert_eq!(
                context["notify"]["webhook"].as_str(),
                Some(lab.http().url("/hooks/notify").as_str())
            );
            assert_eq!(
                context["secrets"]["api_token"].as_str(),
                Some("env:RUNBOOK_LAB_API_TOKEN")
            );
            assert_eq!(
                context["secrets"]["slack_webhook"].as_str(),
                Some("file:slack_webhook")
            );
            assert_eq!(
                context["vars"]["greeting"].as_str(),
                Some("hello from the lab")
            );
        }
        assert!(
            contexts["lab-protected"]["description"]
                .as_str()
                .unwrap()
                .contains("--approve --confirm lab-protected")
        );
    }

    #[test]
    fn secret_files_sit_next_to_the_config() {
        let lab = Lab::start().unwrap();
        assert_eq!(lab.config_path().parent(), Some(lab.dir()));
        let slack = std::fs::read_to_string(lab.dir().join("slack_webhook")).unwrap();
        assert_eq!(slack.trim_end(), lab.http().url("/hooks/slack"));
    }

    #[test]
    fn env_points_runbook_at_the_lab() {
        let lab = Lab::start().unwrap();
        let env = lab.env();
        let get = |name: &str| {
            env.iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        assert_eq!(
            get("RUNBOOK_CONFIG"),
            Some(lab.config_path().display().to_string())
        );
        assert_eq!(get(Lab::API_TOKEN_VAR).as_deref(), Some(Lab::API_TOKEN));
        let state = get("RUNBOOK_STATE_DIR").unwrap();
        assert!(Path::new(&state).is_dir());
        assert!(Path::new(&state).starts_with(lab.dir()));
    }

    #[test]
    fn without_ssh_hosts_there_is_no_inventory() {
        let lab = Lab::start().unwrap();
        assert!(lab.ssh().is_none());
        assert!(!lab.dir().join("ssh").exists());
        let config = config(&lab);
        for name in ["lab", "lab-protected"] {
            let context = config["context"][name].as_table().unwrap();
            for key in ["hosts", "groups", "ssh"] {
                assert!(!context.contains_key(key), "{name} has {key}");
            }
        }
    }

    #[test]
    fn ssh_hosts_fill_hosts_groups_and_ssh_of_both_contexts() {
        let lab = Lab::builder().ssh_hosts(5).start().unwrap();
        let ssh = lab.ssh().unwrap();
        let config = config(&lab);
        let strings = |value: &toml::Value| -> Vec<String> {
            value
                .as_array()
                .unwrap()
                .iter()
                .map(|item| item.as_str().unwrap().to_owned())
                .collect()
        };
        for name in ["lab", "lab-protected"] {
            let context = config["context"][name].as_table().unwrap();
            // What runbook's context loader accepts: the stdlib's module registry.
            let known = runbook_stdlib::context_keys();
            for key in context.keys() {
                assert!(known.contains(&key.as_str()), "unknown key {key}");
            }
            let hosts = context["hosts"].as_table().unwrap();
            let listed: Vec<(String, String)> = hosts
                .iter()
                .map(|(name, value)| (name.clone(), value.as_str().unwrap().to_owned()))
                .collect();
            assert_eq!(listed, ssh.hosts());
            assert_eq!(
                hosts["host05"].as_str().unwrap(),
                format!("{}@127.0.0.5:{}", ssh.user(), ssh.port())
            );
            let groups = &context["groups"];
            assert_eq!(
                strings(&groups["all"]),
                ["host01", "host02", "host03", "host04", "host05"]
            );
            assert_eq!(strings(&groups["web"]), ["host01", "host02", "host03"]);
            assert_eq!(strings(&groups["db"]), ["host04", "host05"]);
            let table = &context["ssh"];
            assert_eq!(
                table["config"].as_str(),
                Some(ssh.ssh_config().display().to_string().as_str())
            );
            assert_eq!(
                table["known_hosts"].as_str(),
                Some(ssh.known_hosts().display().to_string().as_str())
            );
            assert_eq!(
                table["identity"].as_str(),
                Some(ssh.client_key().display().to_string().as_str())
            );
            assert!(ssh.client_key().starts_with(lab.dir()));
            assert_eq!(
                context["http"]["base"].as_str(),
                Some(lab.http().base_url().as_str())
            );
        }
        assert_eq!(
            config["context"]["lab-protected"]["protected"].as_bool(),
            Some(true)
        );
    }

    #[test]
    fn one_ssh_host_is_both_web_and_db() {
        let lab = Lab::builder().ssh_hosts(1).start().unwrap();
        let config = config(&lab);
        let groups = &config["context"]["lab"]["groups"];
        for group in ["all", "web", "db"] {
            let members = groups[group].as_array().unwrap();
            assert_eq!(members.len(), 1, "{group}");
            assert_eq!(members[0].as_str(), Some("host01"));
        }
    }

    #[test]
    fn too_many_ssh_hosts_is_a_clear_error() {
        let error = Lab::builder()
            .ssh_hosts(SshLab::MAX_HOSTS + 1)
            .start()
            .unwrap_err();
        let message = format!("{error:#}");
        assert!(
            message.contains("cannot start the lab's 201 ssh hosts"),
            "{message}"
        );
    }

    #[test]
    fn hcloud_fills_both_contexts_and_the_env() {
        let lab = Lab::builder().hcloud(true).start().unwrap();
        let hcloud = lab.hcloud().unwrap();
        assert!(hcloud.addr().ip().is_loopback());
        let config = config(&lab);
        for name in ["lab", "lab-protected"] {
            let context = config["context"][name].as_table().unwrap();
            // What runbook's context loader accepts: the stdlib's module registry.
            let known = runbook_stdlib::context_keys();
            for key in context.keys() {
                assert!(known.contains(&key.as_str()), "unknown key {key}");
            }
            assert_eq!(
                context["hcloud"]["endpoint"].as_str(),
                Some(hcloud.endpoint().as_str())
            );
            assert_eq!(
                context["secrets"]["hcloud_token"].as_str(),
                Some("env:HCLOUD_TOKEN")
            );
            // An sshd runs for the servers only: no hosts, but the ssh table.
            assert!(!context.contains_key("hosts") && !context.contains_key("groups"));
            assert!(context["ssh"]["config"].is_str());
        }
        let env = lab.env();
        let get = |name: &str| {
            env.iter()
                .find(|(key, _)| key == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("HCLOUD_ENDPOINT"), Some(hcloud.endpoint().as_str()));
        assert_eq!(get("HCLOUD_TOKEN"), Some(HcloudApi::TOKEN));
        assert_eq!(HcloudApi::TOKEN.len(), 64);
        assert!(
            Lab::start()
                .unwrap()
                .env()
                .iter()
                .all(|(key, _)| !key.starts_with("HCLOUD_"))
        );
    }

    #[test]
    fn hcloud_servers_boot_on_addresses_after_the_ssh_hosts() {
        let lab = Lab::builder().ssh_hosts(3).hcloud(true).start().unwrap();
        let ssh = lab.ssh().unwrap();
        assert_eq!(ssh.hosts().len(), 3);
        let spares: Vec<String> = ssh
            .spare_slots()
            .iter()
            .map(|slot| slot.address.to_string())
            .collect();
        assert_eq!(spares, ["127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7"]);
        for slot in ssh.spare_slots() {
            assert_eq!(std::fs::read_to_string(&slot.authorized_keys).unwrap(), "");
        }
        let known_hosts = std::fs::read_to_string(ssh.known_hosts()).unwrap();
        assert!(known_hosts.contains(&format!("[127.0.0.7]:{}", ssh.port())));
        let config = config(&lab);
        assert_eq!(
            config["context"]["lab"]["hosts"].as_table().unwrap().len(),
            3
        );
    }

    #[test]
    fn drop_removes_the_folder() {
        let lab = Lab::start().unwrap();
        let dir = lab.dir().to_owned();
        assert!(dir.is_dir());
        drop(lab);
        assert!(!dir.exists());
    }
}
