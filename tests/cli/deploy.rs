//! The shipped Kubernetes runbooks against the lab's API fake:
//! deploy-production (staging check, lock, gate, rollout, automatic rollback
//! of a broken version), rollback.rhai, two deploys at once, and a dry-run
//! that changes nothing and plans the image diff.

use std::process::{Command, Stdio};
use std::time::Duration;

use runbook_lab::Lab;
use serde_json::Value;

use crate::harness::{Output, Run, binary};
use crate::k8s::lab;

fn image(lab: &Lab, namespace: &str) -> String {
    let deployment = lab
        .kube()
        .unwrap()
        .get("deployments", namespace, "backend")
        .expect("backend exists");
    deployment
        .pointer("/spec/template/spec/containers/0/image")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn deploy(lab: &Lab, context: &str, version: &str) -> Run {
    Run::new("runbooks/deploy-production.rhai")
        .envs(lab.env())
        .context(context)
        .param("version", version)
        .approve()
}

fn rollback(lab: &Lab, context: &str) -> Output {
    Run::new("runbooks/rollback.rhai")
        .envs(lab.env())
        .context(context)
        .approve()
        .output()
}

#[test]
fn deploy_to_staging_then_production_needs_the_typed_context_for_production() {
    let lab = lab();
    deploy(&lab, "lab", "v2")
        .output()
        .assert_success()
        .assert_contains("deployed registry.lab/backend:v2 to staging");
    assert_eq!(image(&lab, "staging"), "registry.lab/backend:v2");
    // Production is protected: --approve alone stops at the gate.
    deploy(&lab, "lab-protected", "v2")
        .output()
        .assert_exit(3)
        .assert_contains("--confirm lab-protected");
    assert_eq!(image(&lab, "production"), "registry.lab/backend:v1");
    deploy(&lab, "lab-protected", "v2")
        .confirm("lab-protected")
        .output()
        .assert_success();
    assert_eq!(image(&lab, "production"), "registry.lab/backend:v2");
    // The webhook heard about both deploys.
    let hooks = lab.http().hooks("notify");
    assert_eq!(hooks.len(), 2, "{hooks:?}");
}

#[test]
fn production_refuses_a_version_staging_does_not_run() {
    let lab = lab();
    deploy(&lab, "lab-protected", "v9")
        .confirm("lab-protected")
        .output()
        .assert_exit(1)
        .assert_contains("staging runs `registry.lab/backend:v1`, not `v9`");
    deploy(&lab, "lab", "latest")
        .output()
        .assert_exit(1)
        .assert_contains("refusing to deploy `latest`");
    assert_eq!(image(&lab, "production"), "registry.lab/backend:v1");
}

#[test]
fn a_broken_version_rolls_back_by_itself_then_rollback_goes_back_one_more() {
    let lab = lab();
    deploy(&lab, "lab", "v2").output().assert_success();
    let broken = deploy(&lab, "lab", "v3-broken").output();
    broken
        .assert_exit(1)
        .assert_contains("CrashLoopBackOff")
        .assert_contains("rolling backend back to registry.lab/backend:v2")
        .assert_contains("rolled back: backend runs registry.lab/backend:v2 again");
    assert_eq!(image(&lab, "staging"), "registry.lab/backend:v2");
    let hooks = lab.http().hooks("notify");
    assert!(
        hooks
            .iter()
            .any(|hook| hook.to_string().contains("failed; rolled back")),
        "{hooks:?}"
    );
    // rollback.rhai: back past the failed deploy to what v2 replaced.
    rollback(&lab, "lab")
        .assert_success()
        .assert_contains("rolled back backend to registry.lab/backend:v1");
    assert_eq!(image(&lab, "staging"), "registry.lab/backend:v1");
}

#[test]
fn a_second_deploy_while_one_runs_exits_4_naming_the_lease_holder() {
    let lab = lab();
    let kube = lab.kube().unwrap();
    // Slow rollouts keep the first deploy inside its lease for a while.
    kube.set_delay(Duration::from_secs(3));
    let mut first = Command::new(binary());
    first
        .args([
            "run",
            "runbooks/deploy-production.rhai",
            "version=v2",
            "--context",
            "lab",
            "--approve",
        ])
        .current_dir(crate::harness::repo_root())
        .env("CI", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (name, value) in lab.env() {
        first.env(name, value);
    }
    let mut first = first.spawn().unwrap();
    for _ in 0..400 {
        if kube.get("leases", "staging", "deploy-backend").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    // Another machine: its own state dir, so only the cluster's Lease can stop it.
    let elsewhere = tempfile::tempdir().unwrap();
    let second = deploy(&lab, "lab", "v2")
        .env("RUNBOOK_STATE_DIR", elsewhere.path())
        .output();
    let status = first.wait().unwrap();
    second
        .assert_exit(4)
        .assert_contains("lease `deploy-backend` in `staging` is held by")
        .assert_contains(&format!("pid {}", first.id()));
    assert!(status.success(), "the first deploy failed");
    // The lease was released at the end of the first run.
    assert!(
        kube.get("leases", "staging", "deploy-backend").is_none(),
        "the lease is still there"
    );
}

#[test]
fn a_dry_run_changes_nothing_and_plans_the_image_diff() {
    let lab = lab();
    let kube = lab.kube().unwrap();
    let before = kube.dump();
    let out = deploy(&lab, "lab", "v2").dry_run().output();
    out.assert_success().assert_contains("Plan:");
    assert!(
        before == kube.dump(),
        "the dry-run changed the cluster\n{}",
        out.report()
    );
    let plan = &out.stdout[out.stdout.find("Plan:").unwrap()..];
    let diff_line = |sign: char, text: &str| {
        plan.lines()
            .any(|line| line.trim_start().starts_with(sign) && line.contains(text))
    };
    assert!(diff_line('-', "image: registry.lab/backend:v1"), "{plan}");
    assert!(diff_line('+', "image: registry.lab/backend:v2"), "{plan}");
    assert!(plan.contains("gate: Deploy backend in staging"), "{plan}");
}

#[test]
fn health_check_reports_deployments_that_are_not_ready() {
    let lab = lab();
    Run::new("runbooks/health-check.rhai")
        .envs(lab.env())
        .context("lab")
        .output()
        .assert_success()
        .assert_contains("deploy/backend")
        .assert_contains("2/2");
    // A broken rollout leaves the new pods unready.
    Run::new("runbooks/deploy-production.rhai")
        .envs(lab.env())
        .context("lab")
        .param("version", "v3-broken")
        .approve()
        .arg("--no-rollback")
        .output()
        .assert_exit(1);
    Run::new("runbooks/health-check.rhai")
        .envs(lab.env())
        .context("lab")
        .output()
        .assert_exit(1)
        .assert_contains("deployment backend:");
}
