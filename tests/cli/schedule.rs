//! `runbook schedule` / `runbook job`: the CronJob and Job manifests
//! validate with `kubectl apply --dry-run=server` against the lab's
//! Kubernetes API fake and `kubectl create --dry-run=client`, and round-trip
//! through kubectl (applied, read back, same spec); a gated runbook in a
//! context that does not allow unattended runs is refused.

use std::path::Path;
use std::process::Command;

use runbook_lab::Lab;
use serde_json::Value;

use crate::harness::{Run, Scratch};

const BACKUP: &str = "//! A nightly job\n//! @param db required  database\nstep(\"dump\", || shell::run([\"true\"]));\n";

fn kubectl(lab: &Lab, args: &[&str]) -> std::process::Output {
    Command::new("timeout")
        .args(["-k", "5", "90", "kubectl"])
        .args(args)
        .envs(lab.env())
        .env("KUBECACHEDIR", lab.dir().join("kube-cache"))
        .output()
        .unwrap()
}

fn kubectl_json(lab: &Lab, args: &[&str]) -> Value {
    let output = kubectl(lab, args);
    assert!(
        output.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Several objects print as concatenated JSON documents.
    let documents: Vec<Value> = serde_json::Deserializer::from_slice(&output.stdout)
        .into_iter::<Value>()
        .map(Result::unwrap)
        .collect();
    match documents.len() {
        1 => documents.into_iter().next().unwrap(),
        _ => serde_json::json!({ "items": documents }),
    }
}

fn manifests(lab: &Lab, scratch: &Scratch, args: &[&str]) -> std::path::PathBuf {
    let out = Run::command(args)
        .envs(lab.env())
        .current_dir(scratch.path())
        .output();
    out.assert_success();
    scratch.write("manifests.yaml", &out.stdout)
}

/// The items of `kubectl ... -o json` (a List, or one object).
fn items(value: &Value) -> Vec<Value> {
    match value["items"].as_array() {
        Some(items) => items.clone(),
        None => vec![value.clone()],
    }
}

fn of_kind(items: &[Value], kind: &str) -> Value {
    items
        .iter()
        .find(|item| item["kind"] == kind)
        .cloned()
        .unwrap_or_else(|| panic!("no {kind} in {items:?}"))
}

fn check_job_spec(spec: &Value) {
    assert_eq!(spec["backoffLimit"], 0, "{spec}");
    assert_eq!(spec["activeDeadlineSeconds"], 3600, "{spec}");
    assert_eq!(spec["ttlSecondsAfterFinished"], 86400, "{spec}");
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never", "{pod}");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{pod}");
    let container = &pod["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|arg| arg.as_str().unwrap())
        .collect();
    assert_eq!(
        args,
        [
            "run",
            "/etc/runbook/backup-db.rhai",
            "db=app",
            "--context",
            "lab",
            "--journal",
            "s3://journals/runbook",
        ]
    );
    let env = container["env"].to_string();
    assert!(
        env.contains("RUNBOOK_AUDIT_KEY") && env.contains("secretKeyRef"),
        "{env}"
    );
}

#[test]
fn cronjob_and_job_manifests_validate_and_round_trip_through_kubectl() {
    let lab = Lab::builder().kube(true).start().unwrap();
    let scratch = Scratch::new();
    scratch.write("backup-db.rhai", BACKUP);
    let file = manifests(
        &lab,
        &scratch,
        &[
            "schedule",
            "backup-db.rhai",
            "db=app",
            "--cron",
            "0 2 * * *",
            "--context",
            "lab",
            "--journal",
            "s3://journals/runbook",
            "--namespace",
            "default",
        ],
    );
    let file = file.to_str().unwrap();
    // The fake validates (and stores nothing).
    let dry = kubectl_json(
        &lab,
        &["apply", "--dry-run=server", "-f", file, "-o", "json"],
    );
    let dry = items(&dry);
    let cron = of_kind(&dry, "CronJob");
    assert_eq!(cron["spec"]["concurrencyPolicy"], "Forbid");
    assert_eq!(cron["spec"]["startingDeadlineSeconds"], 300);
    assert_eq!(cron["spec"]["schedule"], "0 2 * * *");
    check_job_spec(&cron["spec"]["jobTemplate"]["spec"]);
    let config_map = of_kind(&dry, "ConfigMap");
    assert_eq!(config_map["data"]["backup-db.rhai"], BACKUP);
    assert!(
        config_map["data"]["runbook.toml"]
            .as_str()
            .unwrap()
            .contains("[context.lab]")
    );
    let none = kubectl(
        &lab,
        &["get", "cronjob", "backup-db", "-n", "default", "-o", "name"],
    );
    assert!(
        !none.status.success(),
        "a server dry-run stored the CronJob"
    );
    // kubectl's own client-side checks.
    let client = kubectl_json(
        &lab,
        &["create", "--dry-run=client", "-f", file, "-o", "json"],
    );
    assert_eq!(
        of_kind(&items(&client), "CronJob")["spec"]["concurrencyPolicy"],
        "Forbid"
    );
    // Applied for real and read back: the same spec.
    let applied = kubectl(&lab, &["apply", "-f", file]);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let stored = kubectl_json(
        &lab,
        &["get", "cronjob", "backup-db", "-n", "default", "-o", "json"],
    );
    assert_eq!(
        stored["spec"]["jobTemplate"]["spec"]["template"],
        cron["spec"]["jobTemplate"]["spec"]["template"]
    );
    check_job_spec(&stored["spec"]["jobTemplate"]["spec"]);

    // The one-off Job.
    let file = manifests(
        &lab,
        &scratch,
        &[
            "job",
            "backup-db.rhai",
            "db=app",
            "--context",
            "lab",
            "--journal",
            "s3://journals/runbook",
            "--namespace",
            "default",
        ],
    );
    let file = file.to_str().unwrap();
    let dry = kubectl_json(
        &lab,
        &["apply", "--dry-run=server", "-f", file, "-o", "json"],
    );
    check_job_spec(&of_kind(&items(&dry), "Job")["spec"]);
    let client = kubectl_json(
        &lab,
        &["create", "--dry-run=client", "-f", file, "-o", "json"],
    );
    check_job_spec(&of_kind(&items(&client), "Job")["spec"]);
}

#[test]
fn a_gated_runbook_is_not_scheduled_without_unattended() {
    let lab = Lab::builder().start().unwrap();
    let scratch = Scratch::new();
    scratch.write("gated.rhai", "step(\"a\", || 1);\napprove(\"go on?\");\n");
    let schedule = |config: &Path| {
        Run::command([
            "schedule",
            "gated.rhai",
            "--cron",
            "0 2 * * *",
            "--context",
            "lab",
            "--journal",
            "s3://journals/runbook",
        ])
        .envs(lab.env())
        .env("RUNBOOK_CONFIG", config)
        .current_dir(scratch.path())
        .output()
    };
    let refused = schedule(&lab.config_path());
    refused.assert_exit(3);
    refused
        .assert_contains("has an approval gate, and context `lab` does not allow unattended runs");
    // Without a journal in S3 it is refused too.
    let no_journal = Run::command(["job", "gated.rhai", "--context", "lab"])
        .envs(lab.env())
        .current_dir(scratch.path())
        .output();
    no_journal.assert_exit(2);
    no_journal.assert_contains("needs its journal in S3");
    // `unattended = true`: the gate is passed with --approve.
    let config = std::fs::read_to_string(lab.config_path())
        .unwrap()
        .replacen("[context.lab]\n", "[context.lab]\nunattended = true\n", 1);
    let config = scratch.write("runbook.toml", &config);
    let allowed = schedule(&config);
    allowed.assert_success();
    allowed.assert_contains("- --approve");
}
