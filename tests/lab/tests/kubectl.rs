//! The lab's Kubernetes API fake, judged by the real `kubectl` (Debian's
//! kubernetes-client, /usr/bin/kubectl): each test starts a lab with the
//! fake and checks kubectl's output and exit code against what a real
//! cluster gives, and the fake's state through `lab.kube()`.
//!
//! When a kubectl call that should succeed fails, the assertion message
//! carries the same call rerun with `-v=6` (every request and its status).

// Helpers outside `#[test]` functions fail the test by panicking, like the tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use runbook_lab::{KubeApi, Lab};
use serde_json::{Value, json};

const KUBECTL: &str = "/usr/bin/kubectl";

/// What one kubectl run did.
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
    assert!(
        std::path::Path::new(KUBECTL).is_file(),
        "{KUBECTL} is missing: install Debian's kubernetes-client"
    );
    Lab::builder().kube(true).start().unwrap()
}

fn kube(lab: &Lab) -> &KubeApi {
    lab.kube().expect("the lab was started with .kube(true)")
}

/// Run kubectl against the lab (bounded by coreutils' `timeout`), with its
/// discovery cache in the lab folder.
fn run(lab: &Lab, args: &[&str]) -> Outcome {
    let output = Command::new("timeout")
        .args(["-k", "5", "90", KUBECTL, "--kubeconfig"])
        .arg(kube(lab).kubeconfig())
        .args(args)
        .env_remove("KUBECONFIG")
        .env("KUBECACHEDIR", lab.dir().join("kube-cache"))
        .output()
        .unwrap();
    Outcome {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Run kubectl, expect success, return stdout.
fn ok(lab: &Lab, args: &[&str]) -> String {
    let outcome = run(lab, args);
    if !outcome.success() {
        let mut verbose = args.to_vec();
        verbose.push("-v=6");
        let again = run(lab, &verbose);
        panic!(
            "kubectl {} failed: {outcome:?}\n--- rerun with -v=6:\n{}",
            args.join(" "),
            again.stderr
        );
    }
    outcome.stdout
}

/// Run kubectl, expect failure, return what it said.
fn fails(lab: &Lab, args: &[&str]) -> Outcome {
    let outcome = run(lab, args);
    assert!(
        !outcome.success() && outcome.code.is_some(),
        "kubectl {} should fail: {outcome:?}",
        args.join(" ")
    );
    outcome
}

fn json_out(lab: &Lab, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.extend(["-o", "json"]);
    serde_json::from_str(&ok(lab, &args)).unwrap()
}

/// A file in the lab folder (deleted with the lab).
fn manifest(lab: &Lab, name: &str, text: &str) -> String {
    let path: PathBuf = lab.dir().join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn image(deployment: &Value) -> &str {
    deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
}

/// The pods of `app` in staging, read from the fake.
fn pods(lab: &Lab, app: &str) -> Vec<Value> {
    kube(lab)
        .list("pods", Some("staging"))
        .into_iter()
        .filter(|pod| pod["metadata"]["labels"]["app"] == app)
        .collect()
}

fn ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// Table rows of `kubectl get` output (header skipped), split on whitespace.
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().map(str::to_owned).collect())
        .collect()
}

const WEB_V1: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: registry.lab/web:v1
        env: [{name: MODE, value: blue}]
";

#[test]
fn get_deployments_as_json_and_jsonpath() {
    let lab = lab();
    let list = json_out(&lab, &["get", "deploy"]);
    let items = list["items"].as_array().unwrap();
    let names: Vec<&str> = items
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["backend", "frontend"]);
    assert_eq!(image(&items[0]), "registry.lab/backend:v1");
    assert_eq!(items[0]["metadata"]["namespace"], "staging");
    assert_eq!(items[0]["status"]["readyReplicas"], 2);
    assert_eq!(items[0]["status"]["observedGeneration"], 1);
    assert!(items[0]["metadata"]["resourceVersion"].is_string());
    assert!(items[0]["metadata"]["uid"].is_string());

    let jsonpath = "jsonpath={.spec.template.spec.containers[0].image}";
    let production = ok(
        &lab,
        &[
            "get",
            "deploy",
            "backend",
            "-n",
            "production",
            "-o",
            jsonpath,
        ],
    );
    assert_eq!(production, "registry.lab/backend:v1");
    let by_context = ok(
        &lab,
        &[
            "--context",
            KubeApi::PRODUCTION_CONTEXT,
            "get",
            "deploy",
            "backend",
            "-o",
            "jsonpath={.metadata.namespace}",
        ],
    );
    assert_eq!(by_context, "production");

    let table = ok(&lab, &["get", "deployments.apps"]);
    assert!(table.starts_with("NAME"), "{table}");
    let rows = rows(&table);
    assert_eq!(rows.len(), 2, "{table}");
    assert_eq!(rows[0][..4], ["backend", "2/2", "2", "2"]);
}

#[test]
fn get_pods_by_label_lists_running_pods() {
    let lab = lab();
    let table = ok(&lab, &["get", "pods", "-l", "app=backend"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    let rows = rows(&table);
    assert_eq!(rows.len(), 2, "{table}");
    for row in &rows {
        assert!(row[0].starts_with("backend-"), "{table}");
        assert_eq!(row[1..4], ["1/1", "Running", "0"], "{table}");
    }
    let both = ok(
        &lab,
        &["get", "po", "-l", "app in (backend,frontend)", "-o", "name"],
    );
    assert_eq!(both.lines().count(), 4, "{both}");
    let others = ok(&lab, &["get", "po", "-l", "app!=backend", "-o", "name"]);
    assert!(
        others.lines().all(|l| l.starts_with("pod/frontend-")),
        "{others}"
    );
    let labelled = ok(
        &lab,
        &["get", "po", "-l", "pod-template-hash", "-o", "name"],
    );
    assert_eq!(labelled.lines().count(), 4);
    let none = run(&lab, &["get", "po", "-l", "app=nothing"]);
    assert!(none.success());
    assert!(
        none.stderr
            .contains("No resources found in staging namespace."),
        "{none:?}"
    );
    let running = ok(
        &lab,
        &[
            "get",
            "pods",
            "-A",
            "--field-selector",
            "status.phase=Running",
            "-o",
            "name",
        ],
    );
    assert_eq!(running.lines().count(), 8, "{running}");
    let wide = ok(&lab, &["get", "pods", "-l", "app=frontend", "-o", "wide"]);
    assert!(
        wide.contains("lab-node") && wide.contains("10.244."),
        "{wide}"
    );
}

#[test]
fn discovery_gives_kubectl_short_names_and_subresources() {
    let lab = lab();
    let resources = ok(&lab, &["api-resources"]);
    for (name, short) in [
        ("deployments", "deploy"),
        ("replicasets", "rs"),
        ("pods", "po"),
        ("namespaces", "ns"),
        ("configmaps", "cm"),
        ("services", "svc"),
    ] {
        assert!(
            resources
                .lines()
                .any(|line| line.starts_with(name) && line.split_whitespace().nth(1) == Some(short)),
            "{name} {short}: {resources}"
        );
    }
    assert!(resources.contains("leases") && resources.contains("coordination.k8s.io/v1"));
    assert!(resources.contains("jobs") && resources.contains("batch/v1"));
    let namespaces = ok(&lab, &["get", "ns", "-o", "name"]);
    assert_eq!(
        namespaces,
        "namespace/default\nnamespace/production\nnamespace/staging\n"
    );
    let all = ok(&lab, &["get", "all", "-n", "production"]);
    for kind in [
        "pod/backend-",
        "deployment.apps/frontend",
        "replicaset.apps/backend-",
    ] {
        assert!(all.contains(kind), "{all}");
    }
    let version = ok(&lab, &["version", "-o", "json"]);
    let version: Value = serde_json::from_str(&version).unwrap();
    assert_eq!(version["serverVersion"]["minor"], "32");
}

#[test]
fn server_side_apply_creates_then_updates() {
    let lab = lab();
    let file = manifest(&lab, "web.yaml", WEB_V1);
    let created = ok(&lab, &["apply", "--server-side", "-f", &file]);
    assert_eq!(created, "deployment.apps/web serverside-applied\n");
    let web = kube(&lab).get("deploy", "staging", "web").unwrap();
    assert_eq!(image(&web), "registry.lab/web:v1");
    let managers = web["metadata"]["managedFields"].as_array().unwrap();
    assert!(
        managers
            .iter()
            .any(|m| m["manager"] == "kubectl" && m["operation"] == "Apply"),
        "{managers:?}"
    );
    assert!(kube(&lab).wait_until(Duration::from_secs(10), |k| k.rolled_out("staging", "web")));

    // Again, unchanged: nothing is written.
    let rv = kube(&lab).resource_version();
    ok(&lab, &["apply", "--server-side", "-f", &file]);
    assert_eq!(kube(&lab).resource_version(), rv);

    // A new image, and the env var dropped from the manifest.
    let v2 = WEB_V1
        .replace("web:v1", "web:v2")
        .replace("        env: [{name: MODE, value: blue}]\n", "");
    let file = manifest(&lab, "web.yaml", &v2);
    ok(&lab, &["apply", "--server-side", "-f", &file]);
    let web = kube(&lab).get("deploy", "staging", "web").unwrap();
    assert_eq!(image(&web), "registry.lab/web:v2");
    assert_eq!(web["metadata"]["generation"], 2);
    assert!(
        web["spec"]["template"]["spec"]["containers"][0]
            .get("env")
            .is_none(),
        "{web}"
    );
    ok(
        &lab,
        &["rollout", "status", "deployment/web", "--timeout=30s"],
    );
    assert!(
        pods(&lab, "web")
            .iter()
            .all(|p| p["spec"]["containers"][0]["image"] == "registry.lab/web:v2")
    );

    // Client-side apply works too (kubectl computes a strategic merge patch).
    let v3 = v2.replace("web:v2", "web:v3");
    let file = manifest(&lab, "web.yaml", &v3);
    let applied = ok(&lab, &["apply", "-f", &file]);
    assert_eq!(applied, "deployment.apps/web configured\n");
    assert_eq!(
        image(&kube(&lab).get("deploy", "staging", "web").unwrap()),
        "registry.lab/web:v3"
    );
}

#[test]
fn set_image_then_rollout_status_moves_replicasets_and_pods() {
    let lab = lab();
    let set = ok(
        &lab,
        &[
            "set",
            "image",
            "deployment/backend",
            "backend=registry.lab/backend:v2",
        ],
    );
    assert_eq!(set, "deployment.apps/backend image updated\n");
    let status = ok(
        &lab,
        &["rollout", "status", "deployment/backend", "--timeout=30s"],
    );
    assert!(
        status.ends_with("deployment \"backend\" successfully rolled out\n"),
        "{status}"
    );

    let replicasets = json_out(&lab, &["get", "rs", "-l", "app=backend"]);
    let replicasets = replicasets["items"].as_array().unwrap();
    assert_eq!(replicasets.len(), 2);
    let v2 = replicasets
        .iter()
        .find(|rs| image(rs) == "registry.lab/backend:v2")
        .unwrap();
    let v1 = replicasets
        .iter()
        .find(|rs| image(rs) == "registry.lab/backend:v1")
        .unwrap();
    assert_eq!(
        v2["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );
    assert_eq!(
        v1["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    assert_eq!(
        (
            v2["spec"]["replicas"].as_i64(),
            v2["status"]["readyReplicas"].as_i64()
        ),
        (Some(2), Some(2))
    );
    assert_eq!(v1["spec"]["replicas"], 0);
    let hash = v2["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap();
    assert_eq!(v2["metadata"]["name"], format!("backend-{hash}"));
    assert_eq!(hash.len(), 10);
    assert_eq!(v2["metadata"]["ownerReferences"][0]["kind"], "Deployment");

    let pods = pods(&lab, "backend");
    assert_eq!(pods.len(), 2);
    for pod in &pods {
        assert_eq!(
            pod["spec"]["containers"][0]["image"],
            "registry.lab/backend:v2"
        );
        assert_eq!(pod["metadata"]["labels"]["pod-template-hash"], hash);
        assert!(ready(pod), "{pod}");
    }
    let deployment = kube(&lab).get("deploy", "staging", "backend").unwrap();
    assert_eq!(deployment["metadata"]["generation"], 2);
    assert_eq!(deployment["status"]["observedGeneration"], 2);
    assert_eq!(deployment["status"]["updatedReplicas"], 2);
    assert_eq!(
        deployment["status"]["conditions"][1]["reason"],
        "NewReplicaSetAvailable"
    );

    let history = ok(&lab, &["rollout", "history", "deployment/backend"]);
    let revisions: Vec<&str> = history
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");
}

#[test]
fn broken_image_fails_the_rollout_and_undo_brings_the_old_image_back() {
    let lab = lab();
    ok(
        &lab,
        &[
            "set",
            "image",
            "deploy/backend",
            "backend=registry.lab/backend:v2-broken",
        ],
    );
    let started = Instant::now();
    let failed = fails(
        &lab,
        &["rollout", "status", "deployment/backend", "--timeout=10s"],
    );
    assert!(
        failed
            .stderr
            .contains("deployment \"backend\" exceeded its progress deadline"),
        "{failed:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    let table = ok(&lab, &["get", "pods", "-l", "app=backend"]);
    let rows = rows(&table);
    assert_eq!(rows.len(), 4, "the old pods keep serving: {table}");
    assert_eq!(
        rows.iter()
            .filter(|r| r[2] == "CrashLoopBackOff" && r[1] == "0/1")
            .count(),
        2,
        "{table}"
    );
    assert_eq!(
        rows.iter()
            .filter(|r| r[2] == "Running" && r[1] == "1/1")
            .count(),
        2,
        "{table}"
    );
    let broken = pods(&lab, "backend")
        .into_iter()
        .find(|p| !ready(p))
        .unwrap();
    let state = &broken["status"]["containerStatuses"][0];
    assert_eq!(state["state"]["waiting"]["reason"], "CrashLoopBackOff");
    assert!(state["restartCount"].as_i64().unwrap() >= 1);
    let name = broken["metadata"]["name"].as_str().unwrap();
    let log = ok(&lab, &["logs", name]);
    assert!(log.contains("fatal") && log.contains("v2-broken"), "{log}");
    let deployment = kube(&lab).get("deploy", "staging", "backend").unwrap();
    let progressing = &deployment["status"]["conditions"][1];
    assert_eq!(
        (
            progressing["status"].as_str(),
            progressing["reason"].as_str()
        ),
        (Some("False"), Some("ProgressDeadlineExceeded"))
    );

    let undone = ok(&lab, &["rollout", "undo", "deployment/backend"]);
    assert_eq!(undone, "deployment.apps/backend rolled back\n");
    ok(
        &lab,
        &["rollout", "status", "deployment/backend", "--timeout=30s"],
    );
    let jsonpath = "jsonpath={.spec.template.spec.containers[0].image}";
    assert_eq!(
        ok(&lab, &["get", "deploy", "backend", "-o", jsonpath]),
        "registry.lab/backend:v1"
    );
    let pods = pods(&lab, "backend");
    assert_eq!(pods.len(), 2);
    assert!(
        pods.iter()
            .all(|p| ready(p) && p["spec"]["containers"][0]["image"] == "registry.lab/backend:v1")
    );
    let history = ok(&lab, &["rollout", "history", "deployment/backend"]);
    let revisions: Vec<&str> = history
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revisions, ["2", "3"], "revision 1 became 3: {history}");
}

#[test]
fn rollout_undo_to_a_revision_and_restart() {
    let lab = lab();
    for version in ["v2", "v3"] {
        ok(
            &lab,
            &[
                "set",
                "image",
                "deploy/backend",
                &format!("backend=registry.lab/backend:{version}"),
            ],
        );
        ok(
            &lab,
            &["rollout", "status", "deploy/backend", "--timeout=30s"],
        );
    }
    let revision = ok(
        &lab,
        &["rollout", "history", "deploy/backend", "--revision=2"],
    );
    assert!(revision.contains("registry.lab/backend:v2"), "{revision}");
    ok(
        &lab,
        &["rollout", "undo", "deploy/backend", "--to-revision=1"],
    );
    ok(
        &lab,
        &["rollout", "status", "deploy/backend", "--timeout=30s"],
    );
    assert_eq!(
        image(&kube(&lab).get("deploy", "staging", "backend").unwrap()),
        "registry.lab/backend:v1"
    );
    let skipped = ok(
        &lab,
        &["rollout", "undo", "deploy/backend", "--to-revision=4"],
    );
    assert!(skipped.contains("skipped rollback"), "{skipped}");

    let before: Vec<String> = pods(&lab, "backend")
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        ok(&lab, &["rollout", "restart", "deploy/backend"]),
        "deployment.apps/backend restarted\n"
    );
    ok(
        &lab,
        &["rollout", "status", "deploy/backend", "--timeout=30s"],
    );
    let after = pods(&lab, "backend");
    assert_eq!(after.len(), 2);
    assert!(
        after
            .iter()
            .all(|p| !before.contains(&p["metadata"]["name"].as_str().unwrap().to_owned()))
    );
    let deployment = kube(&lab).get("deploy", "staging", "backend").unwrap();
    assert!(deployment["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"].is_string());
    assert_eq!(
        deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "5"
    );
}

#[test]
fn scale_to_three_gives_three_ready_pods() {
    let lab = lab();
    assert_eq!(
        ok(&lab, &["scale", "deployment/backend", "--replicas=3"]),
        "deployment.apps/backend scaled\n"
    );
    ok(
        &lab,
        &["rollout", "status", "deployment/backend", "--timeout=30s"],
    );
    let table = ok(&lab, &["get", "pods", "-l", "app=backend"]);
    let rows = rows(&table);
    assert_eq!(rows.len(), 3, "{table}");
    assert!(
        rows.iter().all(|r| r[1] == "1/1" && r[2] == "Running"),
        "{table}"
    );
    let deployment = kube(&lab).get("deploy", "staging", "backend").unwrap();
    assert_eq!(deployment["status"]["readyReplicas"], 3);
    assert_eq!(
        kube(&lab)
            .list("rs", Some("staging"))
            .iter()
            .filter(|rs| rs["metadata"]["labels"]["app"] == "backend")
            .count(),
        1,
        "scaling makes no new ReplicaSet"
    );
    ok(&lab, &["scale", "deployment/backend", "--replicas=1"]);
    assert!(
        kube(&lab).wait_until(Duration::from_secs(10), |_| pods(&lab, "backend").len()
            == 1)
    );
    // kubectl checks this precondition itself, as against a real cluster.
    let stale = fails(
        &lab,
        &[
            "scale",
            "deployment/backend",
            "--replicas=2",
            "--resource-version=1",
        ],
    );
    assert!(
        stale
            .stderr
            .contains("Expected resource version to be 1, was "),
        "{stale:?}"
    );
}

#[test]
fn patch_json_merge_and_strategic() {
    let lab = lab();
    let merged = ok(
        &lab,
        &[
            "patch",
            "deployment",
            "backend",
            "--type=merge",
            "-p",
            r#"{"metadata":{"labels":{"tier":"api"}}}"#,
        ],
    );
    assert_eq!(merged, "deployment.apps/backend patched\n");
    ok(
        &lab,
        &[
            "patch",
            "deployment",
            "backend",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/replicas","value":3}]"#,
        ],
    );
    ok(
        &lab,
        &[
            "patch",
            "deployment",
            "backend",
            "--type=strategic",
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"backend","env":[{"name":"MODE","value":"fast"}]}]}}}}"#,
        ],
    );
    let deployment = kube(&lab).get("deploy", "staging", "backend").unwrap();
    assert_eq!(
        deployment["metadata"]["labels"],
        json!({ "app": "backend", "tier": "api" })
    );
    assert_eq!(deployment["spec"]["replicas"], 3);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["image"], "registry.lab/backend:v1",
        "the strategic patch merged by name"
    );
    // Merged by name into the seeded env (the backend's DATABASE_URL stays).
    let env = container["env"].as_array().cloned().unwrap_or_default();
    assert_eq!(env.len(), 2, "{env:?}");
    assert!(
        env.contains(&json!({ "name": "MODE", "value": "fast" })),
        "{env:?}"
    );
    assert!(
        env.iter().any(|item| item["name"] == "DATABASE_URL"
            && item["valueFrom"]["secretKeyRef"]["name"] == "app-db"),
        "{env:?}"
    );
    assert_eq!(deployment["metadata"]["generation"], 3);
    // Once the controller is done with the new replica (kubectl compares the
    // object before and after), the same value again is no change.
    assert!(kube(&lab).wait_until(Duration::from_secs(10), |k| {
        k.rolled_out("staging", "backend")
    }));
    let unchanged = ok(
        &lab,
        &[
            "patch",
            "deployment",
            "backend",
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":3}}"#,
        ],
    );
    assert_eq!(unchanged, "deployment.apps/backend patched (no change)\n");
    let failed = fails(
        &lab,
        &[
            "patch",
            "deployment",
            "backend",
            "--type=json",
            "-p",
            r#"[{"op":"test","path":"/spec/replicas","value":7}]"#,
        ],
    );
    assert!(failed.stderr.contains("is invalid"), "{failed:?}");
    let missing = fails(
        &lab,
        &["patch", "deployment", "nope", "--type=merge", "-p", "{}"],
    );
    assert!(
        missing
            .stderr
            .contains(r#"deployments.apps "nope" not found"#),
        "{missing:?}"
    );
    ok(
        &lab,
        &[
            "patch",
            "secret",
            "app-secrets",
            "-p",
            r#"{"stringData":{"API_KEY":"k3y"}}"#,
        ],
    );
    let secret = kube(&lab).get("secret", "staging", "app-secrets").unwrap();
    assert_eq!(secret["data"]["API_KEY"], "azN5");
    assert!(secret.get("stringData").is_none());
}

#[test]
fn replace_of_a_stale_object_is_a_conflict() {
    let lab = lab();
    let stale = ok(&lab, &["get", "deploy", "backend", "-o", "yaml"]);
    let file = manifest(&lab, "stale.yaml", &stale);
    ok(&lab, &["label", "deploy", "backend", "touched=yes"]);
    let conflict = fails(&lab, &["replace", "-f", &file]);
    assert!(
        conflict.stderr.contains("Error from server (Conflict)"),
        "{conflict:?}"
    );
    assert!(
        conflict.stderr.contains(r#"Operation cannot be fulfilled on deployments.apps "backend": the object has been modified; please apply your changes to the latest version and try again"#),
        "{conflict:?}"
    );
    // The current object replaces fine.
    let fresh = ok(&lab, &["get", "deploy", "backend", "-o", "yaml"]).replace(
        "replicas: 2\n  revisionHistoryLimit",
        "replicas: 1\n  revisionHistoryLimit",
    );
    let file = manifest(&lab, "fresh.yaml", &fresh);
    assert_eq!(
        ok(&lab, &["replace", "-f", &file]),
        "deployment.apps/backend replaced\n"
    );
    assert_eq!(
        kube(&lab).get("deploy", "staging", "backend").unwrap()["spec"]["replicas"],
        1
    );
}

#[test]
fn secrets_read_back_as_base64() {
    let lab = lab();
    let secret = json_out(&lab, &["get", "secret", "app-secrets"]);
    assert_eq!(secret["kind"], "Secret");
    assert_eq!(secret["type"], "Opaque");
    assert_eq!(secret["data"]["DB_PASSWORD"], "bGFiLWRiLXBhc3N3b3Jk");
    let value = ok(
        &lab,
        &[
            "get",
            "secret",
            "app-secrets",
            "-n",
            "production",
            "-o",
            "jsonpath={.data.DB_PASSWORD}",
        ],
    );
    assert_eq!(value, "bGFiLWRiLXBhc3N3b3Jk");
    assert_eq!(KubeApi::DB_PASSWORD, "lab-db-password");
}

#[test]
fn delete_then_get_is_not_found() {
    let lab = lab();
    assert_eq!(
        ok(&lab, &["delete", "deploy", "frontend"]),
        "deployment.apps \"frontend\" deleted\n"
    );
    let missing = fails(&lab, &["get", "deploy", "frontend"]);
    assert_eq!(missing.code, Some(1));
    assert_eq!(
        missing.stderr,
        "Error from server (NotFound): deployments.apps \"frontend\" not found\n"
    );
    assert!(
        pods(&lab, "frontend").is_empty(),
        "its ReplicaSet and pods went with it"
    );
    assert!(
        kube(&lab)
            .list("rs", Some("staging"))
            .iter()
            .all(|rs| rs["metadata"]["labels"]["app"] != "frontend")
    );
    let again = fails(&lab, &["delete", "deploy", "frontend"]);
    assert!(again.stderr.contains("NotFound"), "{again:?}");
    assert!(kube(&lab).get("deploy", "production", "frontend").is_some());
}

#[test]
fn logs_of_a_deployment_pick_one_of_its_pods() {
    let lab = lab();
    let logs = run(&lab, &["logs", "deploy/backend"]);
    assert!(logs.success(), "{logs:?}");
    assert!(
        logs.stderr.contains("Found 2 pods, using pod/backend-"),
        "{logs:?}"
    );
    assert!(
        logs.stdout.contains("registry.lab/backend:v1") && logs.stdout.contains("pod backend-"),
        "{logs:?}"
    );
    assert_eq!(
        ok(&lab, &["logs", "deploy/frontend", "--tail=1"]),
        "frontend: ready\n"
    );
    let pod = pods(&lab, "backend")[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let wrong = fails(&lab, &["logs", &pod, "-c", "nope"]);
    assert!(
        wrong.stderr.contains("container nope is not valid for pod"),
        "{wrong:?}"
    );
}

#[test]
fn create_of_an_existing_object_already_exists_and_bad_objects_are_invalid() {
    let lab = lab();
    let existing = WEB_V1.replace("name: web\n", "name: backend\n");
    let file = manifest(&lab, "backend.yaml", &existing);
    let exists = fails(&lab, &["create", "-f", &file]);
    assert!(
        exists
            .stderr
            .contains(r#"Error from server (AlreadyExists): error when creating"#)
            && exists
                .stderr
                .contains(r#"deployments.apps "backend" already exists"#),
        "{exists:?}"
    );
    let file = manifest(&lab, "web.yaml", WEB_V1);
    assert_eq!(
        ok(&lab, &["create", "-f", &file]),
        "deployment.apps/web created\n"
    );

    let empty = "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: empty}
spec:
  selector: {matchLabels: {app: empty}}
  template:
    metadata: {labels: {app: empty}}
    spec: {containers: []}
";
    let file = manifest(&lab, "empty.yaml", empty);
    let invalid = fails(&lab, &["create", "-f", &file]);
    assert!(
        invalid.stderr.contains(
            r#"The Deployment "empty" is invalid: spec.template.spec.containers: Required value"#
        ),
        "{invalid:?}"
    );
    let bad_name = WEB_V1.replace("name: web\n  labels", "name: Web_1\n  labels");
    let file = manifest(&lab, "bad.yaml", &bad_name);
    let invalid = fails(&lab, &["create", "-f", &file]);
    assert!(
        invalid.stderr.contains(r#"The Deployment "Web_1" is invalid: metadata.name: Invalid value: "Web_1": a lowercase RFC 1123 label"#),
        "{invalid:?}"
    );
}

#[test]
fn server_dry_run_changes_nothing() {
    let lab = lab();
    let before = kube(&lab).dump();
    let rv = kube(&lab).resource_version();
    let file = manifest(&lab, "web.yaml", WEB_V1);
    let applied = ok(
        &lab,
        &[
            "apply",
            "--server-side",
            "--dry-run=server",
            "-f",
            &file,
            "-o",
            "jsonpath={.metadata.name}",
        ],
    );
    assert_eq!(applied, "web");
    ok(
        &lab,
        &[
            "set",
            "image",
            "deploy/backend",
            "backend=registry.lab/backend:v9",
            "--dry-run=server",
        ],
    );
    ok(
        &lab,
        &[
            "scale",
            "deploy/backend",
            "--replicas=5",
            "--dry-run=server",
        ],
    );
    ok(
        &lab,
        &[
            "patch",
            "deploy",
            "backend",
            "-p",
            r#"{"spec":{"replicas":4}}"#,
            "--dry-run=server",
        ],
    );
    let deleted = ok(&lab, &["delete", "deploy", "frontend", "--dry-run=server"]);
    assert_eq!(
        deleted,
        "deployment.apps \"frontend\" deleted (server dry run)\n"
    );
    let would = json_out(&lab, &["create", "-f", &file, "--dry-run=server"]);
    assert_eq!(image(&would), "registry.lab/web:v1");
    // kubectl diff asks for the would-be object with dryRun=All; exit 1 means "differs".
    let diff = run(&lab, &["diff", "-f", &file]);
    assert_eq!(diff.code, Some(1), "{diff:?}");
    assert!(diff.stdout.contains("+  name: web"), "{diff:?}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(kube(&lab).resource_version(), rv);
    assert_eq!(kube(&lab).dump(), before);
}

#[test]
fn jobs_complete_and_leases_conflict() {
    let lab = lab();
    let job = "\
apiVersion: batch/v1
kind: Job
metadata: {name: migrate}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: migrate, image: registry.lab/migrate:v1}]
";
    let file = manifest(&lab, "job.yaml", job);
    assert_eq!(
        ok(&lab, &["create", "-f", &file]),
        "job.batch/migrate created\n"
    );
    let waited = ok(
        &lab,
        &[
            "wait",
            "--for=condition=complete",
            "job/migrate",
            "--timeout=30s",
        ],
    );
    assert_eq!(waited, "job.batch/migrate condition met\n");
    let job = kube(&lab).get("job", "staging", "migrate").unwrap();
    assert_eq!(job["status"]["succeeded"], 1);
    assert!(ok(&lab, &["logs", "job/migrate"]).contains("migrate: done"));
    let table = ok(&lab, &["get", "jobs"]);
    assert!(
        table.contains("Complete") && table.contains("1/1"),
        "{table}"
    );

    let lease = "\
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: deploy-lock}
spec: {holderIdentity: alice, leaseDurationSeconds: 60}
";
    let file = manifest(&lab, "lease.yaml", lease);
    ok(&lab, &["create", "-f", &file]);
    let held = ok(&lab, &["get", "lease", "deploy-lock", "-o", "yaml"]);
    let taken = held.replace("holderIdentity: alice", "holderIdentity: bob");
    let stale = held.replace("holderIdentity: alice", "holderIdentity: carol");
    let taken_file = manifest(&lab, "taken.yaml", &taken);
    let stale_file = manifest(&lab, "stale.yaml", &stale);
    ok(&lab, &["replace", "-f", &taken_file]);
    let conflict = fails(&lab, &["replace", "-f", &stale_file]);
    assert!(
        conflict
            .stderr
            .contains(r#"leases.coordination.k8s.io "deploy-lock": the object has been modified"#),
        "{conflict:?}"
    );
    let holder = ok(
        &lab,
        &[
            "get",
            "leases",
            "deploy-lock",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
    );
    assert_eq!(holder, "bob");
    assert_eq!(
        ok(&lab, &["delete", "lease", "deploy-lock"]),
        "lease.coordination.k8s.io \"deploy-lock\" deleted\n"
    );
}

/// One raw HTTP/1.1 exchange with the fake (a client sharing none of its code).
fn http(kube: &KubeApi, method: &str, path: &str, body: &str, content_type: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(kube.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: lab\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    (code, body.to_owned())
}

/// Watches as kube-rs runs them: from a resourceVersion, with bookmarks and
/// a timeout; events after that version only, filtered by selector.
#[test]
fn watches_stream_events_after_a_resource_version() {
    let lab = lab();
    let kube = kube(&lab);
    let rv = kube.resource_version();
    let mut stream = TcpStream::connect(kube.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /apis/apps/v1/namespaces/staging/deployments?watch=true&resourceVersion={rv}&timeoutSeconds=5&allowWatchBookmarks=true&labelSelector=app%3Dbackend HTTP/1.1\r\nHost: lab\r\n\r\n"
    )
    .unwrap();
    ok(&lab, &["scale", "deploy/frontend", "--replicas=1"]);
    ok(&lab, &["scale", "deploy/backend", "--replicas=1"]);
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    // Skip the head; the body is chunked: size lines, then JSON lines.
    let mut event = None;
    while reader.read_line(&mut line).unwrap() > 0 {
        if let Ok(value) = serde_json::from_str::<Value>(line.trim())
            && value.is_object()
        {
            event = Some(value);
            break;
        }
        line.clear();
    }
    let event = event.expect("a watch event");
    assert_eq!(event["type"], "MODIFIED");
    assert_eq!(event["object"]["metadata"]["name"], "backend");
    assert_eq!(event["object"]["spec"]["replicas"], 1);
    assert!(
        event["object"]["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > rv
    );

    let (code, body) = http(
        kube,
        "GET",
        "/apis/apps/v1/namespaces/staging/deployments?watch=1&resourceVersion=0&timeoutSeconds=1&fieldSelector=metadata.name%3Dfrontend",
        "",
        "application/json",
    );
    assert_eq!(code, 200);
    let added: Vec<Value> = body
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(Value::is_object)
        .collect();
    assert_eq!(added.len(), 1, "{body}");
    assert_eq!(added[0]["type"], "ADDED");
    assert_eq!(added[0]["object"]["metadata"]["name"], "frontend");

    // Errors are Status objects.
    let (code, body) = http(
        kube,
        "GET",
        "/api/v1/namespaces/staging/pods/nope",
        "",
        "application/json",
    );
    assert_eq!(code, 404);
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "NotFound");
    assert_eq!(status["details"], json!({ "name": "nope", "kind": "pods" }));
    let (code, _) = http(
        kube,
        "POST",
        "/api/v1/namespaces/staging/configmaps",
        "{not json",
        "application/json",
    );
    assert_eq!(code, 400);
    let (code, _) = http(
        kube,
        "POST",
        "/api/v1/namespaces/staging/configmaps",
        "x",
        "application/vnd.kubernetes.protobuf",
    );
    assert_eq!(code, 415);
}

#[test]
fn the_lab_config_and_env_point_runbook_at_the_fake() {
    let lab = lab();
    let config: toml::Table = std::fs::read_to_string(lab.config_path())
        .unwrap()
        .parse()
        .unwrap();
    let kubeconfig = kube(&lab).kubeconfig().display().to_string();
    for (context, kube_context, namespace) in [
        ("lab", KubeApi::CONTEXT, "staging"),
        ("lab-protected", KubeApi::PRODUCTION_CONTEXT, "production"),
    ] {
        let table = &config["context"][context];
        assert_eq!(table["kubeconfig"].as_str(), Some(kubeconfig.as_str()));
        assert_eq!(table["kube_context"].as_str(), Some(kube_context));
        assert_eq!(table["namespace"].as_str(), Some(namespace));
        // kubectl agrees on each context's namespace.
        let seen = ok(
            &lab,
            &[
                "--context",
                kube_context,
                "config",
                "view",
                "--minify",
                "-o",
                "jsonpath={.contexts[0].context.namespace}",
            ],
        );
        assert_eq!(seen, namespace);
    }
    assert!(kube(&lab).kubeconfig().starts_with(lab.dir()));
    let env = lab.env();
    let get = |name: &str| {
        env.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    assert_eq!(get("KUBECONFIG"), Some(kubeconfig));
    assert!(
        get("KUBECACHEDIR")
            .unwrap()
            .starts_with(&lab.dir().display().to_string())
    );
    assert_eq!(kube(&lab).url(), format!("http://{}", kube(&lab).addr()));

    let plain = Lab::start().unwrap();
    assert!(plain.kube().is_none());
    assert!(!plain.dir().join("kubeconfig").exists());
    assert!(plain.env().iter().all(|(key, _)| key != "KUBECONFIG"));
    let text = std::fs::read_to_string(plain.config_path()).unwrap();
    assert!(!text.contains("kube_context"), "{text}");
}

#[test]
fn runbook_lab_run_serves_the_fake_unless_told_not_to() {
    // `run` hands runbook (here `sh`) KUBECONFIG and KUBECACHEDIR in the lab folder.
    let script = r#"test -f "$KUBECONFIG" || exit 10; kubectl --kubeconfig "$KUBECONFIG" get deploy backend -o name"#;
    let output = Command::new(env!("CARGO_BIN_EXE_runbook-lab"))
        .args(["run", "--ssh-hosts", "0", "--", "-c", script])
        .env("RUNBOOK_BIN", "/bin/sh")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "deployment.apps/backend\n"
    );
    assert!(stderr.contains("kube     http://127.0.0.1:"), "{stderr}");

    let output = Command::new(env!("CARGO_BIN_EXE_runbook-lab"))
        .args([
            "run",
            "--ssh-hosts=0",
            "--no-kube",
            "--",
            "-c",
            r#"test -z "$KUBECONFIG""#,
        ])
        .env("RUNBOOK_BIN", "/bin/sh")
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every object the fake serves parses as the k8s-openapi type kube-rs
/// reads it into (a wrong field type would break the k8s module, not kubectl).
#[test]
fn objects_parse_as_the_types_kube_rs_uses() {
    use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
    use k8s_openapi::api::autoscaling::v1::Scale;
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;

    macro_rules! parse {
        ($type:ty, $value:expr) => {
            if let Err(error) = serde_json::from_value::<$type>($value.clone()) {
                panic!("{} does not parse: {error}\n{}", stringify!($type), $value);
            }
        };
    }

    let lab = lab();
    let objects = "\
apiVersion: batch/v1
kind: Job
metadata: {name: migrate}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: migrate, image: registry.lab/migrate:v1}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: broken}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: broken, image: registry.lab/migrate:broken}]
---
apiVersion: v1
kind: Service
metadata: {name: backend}
spec:
  selector: {app: backend}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {mode: fast}
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: deploy-lock}
spec: {holderIdentity: alice, leaseDurationSeconds: 60, renewTime: \"2026-01-01T00:00:00.000000Z\"}
";
    let file = manifest(&lab, "objects.yaml", objects);
    ok(&lab, &["create", "-f", &file]);
    ok(
        &lab,
        &[
            "set",
            "image",
            "deploy/frontend",
            "frontend=registry.lab/frontend:broken",
        ],
    );
    ok(
        &lab,
        &[
            "wait",
            "--for=condition=complete",
            "job/migrate",
            "--timeout=30s",
        ],
    );
    ok(
        &lab,
        &[
            "wait",
            "--for=condition=failed",
            "job/broken",
            "--timeout=30s",
        ],
    );
    assert!(kube(&lab).wait_until(Duration::from_secs(10), |kube| {
        kube.list("pods", Some("staging")).iter().any(|pod| {
            pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
                == "CrashLoopBackOff"
        })
    }));

    let dump = kube(&lab).dump();
    let mut kinds = std::collections::BTreeSet::new();
    for object in dump.as_object().unwrap().values() {
        let kind = object["kind"].as_str().unwrap();
        kinds.insert(kind.to_owned());
        match kind {
            "Deployment" => parse!(Deployment, object),
            "ReplicaSet" => parse!(ReplicaSet, object),
            "Pod" => parse!(Pod, object),
            "Secret" => parse!(Secret, object),
            "Namespace" => parse!(Namespace, object),
            "Service" => parse!(Service, object),
            "ConfigMap" => parse!(ConfigMap, object),
            "Job" => parse!(Job, object),
            "Lease" => parse!(Lease, object),
            other => panic!("unexpected kind {other}"),
        }
    }
    assert_eq!(kinds.len(), 9, "{kinds:?}");

    let (code, scale) = http(
        kube(&lab),
        "GET",
        "/apis/apps/v1/namespaces/staging/deployments/backend/scale",
        "",
        "application/json",
    );
    assert_eq!(code, 200);
    let scale: Value = serde_json::from_str(&scale).unwrap();
    parse!(Scale, scale);
    assert_eq!(scale["status"]["selector"], "app=backend");
    let (code, status) = http(
        kube(&lab),
        "GET",
        "/apis/apps/v1/namespaces/staging/deployments/nope",
        "",
        "application/json",
    );
    assert_eq!(code, 404);
    let status: Value = serde_json::from_str(&status).unwrap();
    parse!(Status, status);
}
