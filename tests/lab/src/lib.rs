//! The local lab: real servers and API fakes on loopback that runbooks and
//! tests run against, so `runbook run x.rhai --context lab` exercises real
//! network calls without touching anything off this machine.
//!
//! [`Lab::start`] starts every component and writes a `runbook.toml` that
//! points at them; dropping the [`Lab`] stops them and deletes its folder.
//! Each component lives in its own module (today: [`HttpServer`]).
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

mod config;
mod http;

use std::path::{Path, PathBuf};

use anyhow::Context as _;

pub use crate::http::HttpServer;

/// Everything the lab runs, plus the temporary folder holding its config.
///
/// Components are declared before the folder so they stop before it is deleted.
#[derive(Debug)]
pub struct Lab {
    http: HttpServer,
    dir: tempfile::TempDir,
}

impl Lab {
    /// The environment variable the `api_token` secret of the lab contexts is read from.
    pub const API_TOKEN_VAR: &str = "RUNBOOK_LAB_API_TOKEN";

    /// The value [`Lab::env`] gives [`Lab::API_TOKEN_VAR`]; fixed so tests can
    /// check it is redacted from output and journals.
    pub const API_TOKEN: &str = "lab-token-6f1d2c9a";

    /// The context the lab's config selects by default.
    pub const CONTEXT: &str = config::CONTEXT;

    /// The same lab marked `protected`: gates need `--approve --confirm lab-protected`.
    pub const PROTECTED_CONTEXT: &str = config::PROTECTED_CONTEXT;

    /// Start every component and write `runbook.toml` (and the secret files
    /// it names) into a fresh temporary folder.
    pub fn start() -> anyhow::Result<Lab> {
        let dir = tempfile::Builder::new()
            .prefix("runbook-lab-")
            .tempdir()
            .context("cannot create the lab's temporary folder")?;
        let http = HttpServer::start().context("cannot start the lab HTTP server")?;
        let lab = Lab { http, dir };
        lab.write(
            config::SLACK_WEBHOOK_FILE,
            &config::slack_webhook(&lab.http),
        )?;
        lab.write(
            config::FILE_NAME,
            &config::render(&lab.http, Lab::API_TOKEN_VAR),
        )?;
        std::fs::create_dir(lab.state_dir()).with_context(|| {
            format!(
                "cannot create the lab's state folder `{}`",
                lab.state_dir().display()
            )
        })?;
        Ok(lab)
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

    /// The environment a `runbook` process needs to use the lab: the config
    /// path, the API token secret and a private state folder.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "RUNBOOK_CONFIG".to_owned(),
                self.config_path().display().to_string(),
            ),
            (Lab::API_TOKEN_VAR.to_owned(), Lab::API_TOKEN.to_owned()),
            (
                "RUNBOOK_STATE_DIR".to_owned(),
                self.state_dir().display().to_string(),
            ),
        ]
    }

    fn write(&self, name: &str, contents: &str) -> anyhow::Result<()> {
        let path = self.dir().join(name);
        std::fs::write(&path, contents)
            .with_context(|| format!("cannot write `{}`", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What runbook's context loader accepts (runtime/context.rs); kept here
    /// so a lab config that runbook would reject fails this crate's tests.
    const KNOWN_KEYS: &[&str] = &[
        "description",
        "protected",
        "namespace",
        "kube_context",
        "kubeconfig",
        "hosts",
        "groups",
        "ssh",
        "s3",
        "pg",
        "hcloud",
        "notify",
        "http",
        "secrets",
        "vars",
    ];

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
            for key in context.keys() {
                assert!(KNOWN_KEYS.contains(&key.as_str()), "unknown key {key}");
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
    fn drop_removes_the_folder() {
        let lab = Lab::start().unwrap();
        let dir = lab.dir().to_owned();
        assert!(dir.is_dir());
        drop(lab);
        assert!(!dir.exists());
    }
}
