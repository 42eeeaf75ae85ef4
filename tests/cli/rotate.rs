//! `runbooks/rotate-secrets.rhai` against the lab: PostgreSQL checking
//! passwords (scram-sha-256), the Kubernetes fake holding the app's Secret
//! `app-db` that the backend Deployment references, the lab's HTTP health
//! endpoint and Slack webhook receiver.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runbook_lab::{Lab, PgLab};
use serde_json::Value;

use crate::harness::{Output, Run, Scratch, all_text, binary, repo_root};

fn lab() -> Lab {
    Lab::builder()
        .ssh_hosts(0)
        .postgres(true)
        .kube(true)
        .start()
        .expect("the lab starts")
}

fn decoded(lab: &Lab, name: &str) -> serde_json::Map<String, Value> {
    use base64::Engine as _;
    let secret = lab
        .kube()
        .expect("kube")
        .get("secrets", "staging", name)
        .expect("the Secret exists");
    secret["data"]
        .as_object()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|(key, value)| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(value.as_str().unwrap_or_default())
                .unwrap_or_default();
            (
                key,
                Value::from(String::from_utf8_lossy(&bytes).into_owned()),
            )
        })
        .collect()
}

fn credentials(lab: &Lab) -> (String, String) {
    let values = decoded(lab, "app-db");
    (
        values["username"].as_str().unwrap_or_default().to_owned(),
        values["password"].as_str().unwrap_or_default().to_owned(),
    )
}

fn restarted_at(lab: &Lab) -> Option<String> {
    lab.kube()?
        .get("deployments", "staging", "backend")?
        .pointer("/spec/template/metadata/annotations/kubectl.kubernetes.io~1restartedAt")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn rotate(lab: &Lab, state: &Path) -> Run {
    Run::new(repo_root().join("runbooks/rotate-secrets.rhai"))
        .envs(lab.env())
        .env("RUNBOOK_STATE_DIR", state)
        .context("lab")
        .approve()
}

/// Run `runbook` while sampling every process's command line on the machine.
fn run_sampling(lab: &Lab, state: &Path, extra: &[&str]) -> (i32, Vec<String>) {
    let mut child = Command::new(binary())
        .arg("run")
        .arg(repo_root().join("runbooks/rotate-secrets.rhai"))
        .args(["--context", "lab", "--approve"])
        .args(extra)
        .envs(lab.env())
        .env("RUNBOOK_STATE_DIR", state)
        .env("CI", "true")
        .env("NO_COLOR", "1")
        .env_remove("RUNBOOK_CONTEXT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start runbook");
    let mut seen = Vec::new();
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return (status.code().unwrap_or(-1), seen);
        }
        assert!(started.elapsed() < Duration::from_secs(120), "hung");
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for entry in entries.flatten() {
                if let Ok(bytes) = std::fs::read(entry.path().join("cmdline"))
                    && !bytes.is_empty()
                {
                    seen.push(String::from_utf8_lossy(&bytes).replace('\0', " "));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_rotation_switches_roles_retires_the_old_password_and_leaks_nothing() {
    let lab = lab();
    let pg = lab.postgres().expect("pg");
    let scratch = Scratch::new();
    let state = scratch.file("state");
    let before = restarted_at(&lab);
    assert!(pg.login_works("app", PgLab::APP_PASSWORD, PgLab::DATABASE));

    let (code, cmdlines) = run_sampling(&lab, &state, &[]);
    assert_eq!(code, 0, "{}", all_text(&state));
    let (user, password) = credentials(&lab);
    assert_eq!(user, "app_alt");
    assert_ne!(password, PgLab::APP_PASSWORD);
    assert!(
        pg.login_works("app_alt", &password, PgLab::DATABASE),
        "the Secret's credentials log in"
    );
    assert!(
        !pg.login_works("app", PgLab::APP_PASSWORD, PgLab::DATABASE),
        "the retired password still logs in"
    );
    let url = decoded(&lab, "app-db")["DATABASE_URL"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(url, pg.url_as("app_alt", &password, PgLab::DATABASE));
    assert_ne!(restarted_at(&lab), before, "the backend was not restarted");
    // The new password is nowhere: command lines, journal and state, the server's log, Slack.
    assert!(cmdlines.len() > 100, "too few samples: {}", cmdlines.len());
    assert!(
        !cmdlines.iter().any(|line| line.contains(&password)),
        "in a command line"
    );
    assert!(!all_text(&state).contains(&password), "in the state dir");
    assert!(!pg.logs().contains(&password), "in the server's log");
    let slack = lab.http().hooks("slack");
    assert_eq!(slack.len(), 1, "{slack:?}");
    let text = slack[0]["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("Rotated the database credentials in Secret `app-db`"),
        "{text}"
    );
    assert!(
        !text.contains(&password) && !text.contains(PgLab::APP_PASSWORD),
        "{text}"
    );

    // Again: the roles take turns.
    let second = rotate(&lab, &state).output();
    second.assert_success();
    let (user, new_password) = credentials(&lab);
    assert_eq!(user, "app");
    assert!(pg.login_works("app", &new_password, PgLab::DATABASE));
    assert!(
        !pg.login_works("app_alt", &password, PgLab::DATABASE),
        "app_alt was not retired"
    );
    assert!(!second.all().contains(&new_password) && !second.all().contains(&password));
}

#[test]
fn a_failed_health_check_after_the_switch_puts_the_secret_back_and_the_old_login_works() {
    let lab = lab();
    let pg = lab.postgres().expect("pg");
    let scratch = Scratch::new();
    let before = decoded(&lab, "app-db");
    lab.http().set_health(503);
    let output = rotate(&lab, &scratch.file("state")).output();
    output
        .assert_exit(1)
        .assert_contains("rolling back")
        .assert_contains("health check");
    assert_eq!(
        decoded(&lab, "app-db"),
        before,
        "the Secret was not restored"
    );
    assert!(pg.login_works("app", PgLab::APP_PASSWORD, PgLab::DATABASE));
    let journal = all_text(&scratch.file("state"));
    assert!(journal.contains("\"event\":\"rollback\""));
    assert!(
        lab.http().hooks("slack").is_empty(),
        "a failed rotation was announced as done"
    );
}

#[test]
fn other_app_secrets_get_new_values_and_keep_the_previous_ones() {
    let lab = lab();
    let scratch = Scratch::new();
    let old = decoded(&lab, "app-secrets")["DB_PASSWORD"].clone();
    let output = rotate(&lab, &scratch.file("state"))
        .param("keys", "DB_PASSWORD,JWT_SECRET")
        .param("notify", "none")
        .output();
    output.assert_success();
    let values = decoded(&lab, "app-secrets");
    assert_eq!(values["DB_PASSWORD_PREVIOUS"], old);
    assert_ne!(values["DB_PASSWORD"], old);
    assert_eq!(values["JWT_SECRET"].as_str().map(str::len), Some(32));
    assert!(
        !values.contains_key("JWT_SECRET_PREVIOUS"),
        "there was no JWT_SECRET before"
    );
    for value in values.values() {
        assert!(!output.all().contains(value.as_str().unwrap_or("x")));
    }
}

#[test]
fn a_dry_run_plans_the_rotation_and_changes_nothing() {
    let lab = lab();
    let pg = lab.postgres().expect("pg");
    let scratch = Scratch::new();
    let before = decoded(&lab, "app-db");
    let output: Output = Run::new(repo_root().join("runbooks/rotate-secrets.rhai"))
        .envs(lab.env())
        .env("RUNBOOK_STATE_DIR", scratch.file("state"))
        .context("lab")
        .dry_run()
        .output();
    output.assert_success();
    for planned in [
        "pg::ensure_role",
        "pg::set_password(\"todos\", \"app_alt\", ***)",
        "k8s::set_secret(\"app-db\"",
        "k8s::restart(\"backend\")",
        "pg::set_password(\"todos\", \"app\", ***)",
        "notify::slack",
    ] {
        output.assert_contains(planned);
    }
    assert_eq!(decoded(&lab, "app-db"), before);
    assert_eq!(
        pg.psql(
            PgLab::DATABASE,
            "select count(*) from pg_roles where rolname = 'app_alt'"
        )
        .expect("psql"),
        "0"
    );
    assert!(pg.login_works("app", PgLab::APP_PASSWORD, PgLab::DATABASE));
    assert!(lab.http().hooks("slack").is_empty());
}

#[test]
fn credentials_that_do_not_log_in_stop_the_rotation_before_any_change() {
    let lab = lab();
    let pg = lab.postgres().expect("pg");
    pg.psql(
        PgLab::DATABASE,
        "alter role app password 'changed-behind-our-back'",
    )
    .expect("psql");
    let scratch = Scratch::new();
    let output = rotate(&lab, &scratch.file("state")).output();
    output
        .assert_exit(1)
        .assert_contains("do not log in")
        .assert_not_contains("pg::set_password");
    assert_eq!(
        pg.psql(
            PgLab::DATABASE,
            "select count(*) from pg_roles where rolname = 'app_alt'"
        )
        .expect("psql"),
        "0"
    );
}
