//! `k8s::*` against the lab's Kubernetes API fake: every function, errors
//! with hints (NotFound, unknown kinds and contexts, `latest` images), a
//! failing rollout naming its pods, 409 conflicts retried (updates racing
//! other writers, two runs racing for a Lease), a held Lease exiting 4, an
//! online `--dry-run` that leaves the fake byte-for-byte unchanged and plans
//! the image diff, and secrets that never reach output or journal.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use runbook_lab::{KubeApi, Lab};
use serde_json::{Value, json};

use crate::harness::{Output, Run, Scratch, all_text};

pub(crate) fn lab() -> Lab {
    let lab = Lab::builder().kube(true).start().expect("the lab starts");
    settle(kube(&lab));
    lab
}

/// Wait until the fake's controller has nothing left to do: the seeded pods
/// become ready a moment after the lab starts.
pub(crate) fn settle(kube: &KubeApi) {
    let mut last = kube.resource_version();
    let mut quiet = 0;
    for _ in 0..500 {
        std::thread::sleep(Duration::from_millis(20));
        let now = kube.resource_version();
        if now == last {
            quiet += 1;
            if quiet >= 15 {
                return;
            }
        } else {
            quiet = 0;
            last = now;
        }
    }
    panic!("the lab cluster never settled");
}

fn kube(lab: &Lab) -> &KubeApi {
    lab.kube().expect("the lab serves the Kubernetes API")
}

/// `runbook run` of `script` (written to the scratch dir) in the lab's `lab`
/// context (kube context `lab`, namespace `staging`).
fn run_in(lab: &Lab, scratch: &Scratch, script: &str) -> Run {
    let file = scratch.write("t.rhai", script);
    Run::new(file)
        .envs(lab.env())
        .context("lab")
        .current_dir(scratch.path())
}

fn run(lab: &Lab, script: &str) -> Output {
    let scratch = Scratch::new();
    run_in(lab, &scratch, script).output()
}

fn image_of(kube: &KubeApi, namespace: &str, name: &str) -> String {
    let deployment = kube
        .get("deployments", namespace, name)
        .expect("the deployment exists");
    deployment
        .pointer("/spec/template/spec/containers/0/image")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn get_list_and_image_read_the_cluster() {
    let lab = lab();
    run(
        &lab,
        r#"
let d = k8s::get("deployment", "backend");
assert(d.kind == "Deployment", "kind " + d.kind);
assert(d.metadata.name == "backend", "name");
assert(d.metadata.namespace == "staging", "namespace " + d.metadata.namespace);
assert(d.spec.replicas == 2, "replicas");
assert(d.metadata.managedFields == (), "managedFields are left out");
let names = [];
for x in k8s::list("deploy") { names.push(x.metadata.name); assert(x.kind == "Deployment", "list item kind"); }
names.sort();
assert(names == ["backend", "frontend"], "names " + names);
assert(k8s::list("pods", #{selector: "app=backend"}).len() == 2, "two backend pods");
assert(k8s::list("pods", #{selector: "app=nothing"}).len() == 0, "no pods");
assert(k8s::list("deployments", #{all_namespaces: true}).len() == 4, "four in all namespaces");
assert(k8s::image("backend") == "registry.lab/backend:v1", "image");
assert(k8s::image("frontend", #{namespace: "production", container: "frontend"}) == "registry.lab/frontend:v1", "prod image");
assert(k8s::get("Deployment", "backend", #{namespace: "production"}).metadata.namespace == "production", "option namespace");
assert(k8s::get("ns", "production").metadata.name == "production", "cluster-scoped");
print("read ok");
"#,
    )
    .assert_success()
    .assert_contains("read ok");
}

#[test]
fn a_missing_object_names_kind_name_and_namespace_with_a_hint() {
    let lab = lab();
    let out = run(&lab, "let d = k8s::get(\"deployment\", \"nope\");\n");
    out.assert_exit(1)
        .assert_contains("deployment `nope` not found in namespace `staging`")
        .assert_contains("k8s::list(\"deployment\"")
        .assert_contains("namespace")
        .assert_contains("t.rhai:1:");
    run(
        &lab,
        "k8s::image(\"backend\", #{namespace: \"default\"});\n",
    )
    .assert_exit(1)
    .assert_contains("deployment `backend` not found in namespace `default`");
    run(&lab, "k8s::get(\"deplyoment\", \"backend\");\n")
        .assert_exit(1)
        .assert_contains("unknown kind `deplyoment`")
        .assert_contains("known kinds: deployment");
    run(&lab, "k8s::get(\"daemonset\", \"db\");\n")
        .assert_exit(1)
        .assert_contains("does not serve daemonsets")
        .assert_contains("api-resources");
    run(&lab, "k8s::logs(\"app=nothing\");\n")
        .assert_exit(1)
        .assert_contains("no pods match `app=nothing` in namespace `staging`");
    run(&lab, "k8s::secret(\"nope\");\n")
        .assert_exit(1)
        .assert_contains("secret `nope` not found in namespace `staging`");
}

#[test]
fn kube_context_and_namespace_come_from_the_context_or_the_kubeconfig() {
    let lab = lab();
    let scratch = Scratch::new();
    let kubeconfig = kube(&lab).kubeconfig();
    let config = format!(
        r#"[context.prod]
kubeconfig = "{path}"
kube_context = "lab-production"
[context.wrong]
kubeconfig = "{path}"
kube_context = "nope"
[context.current]
kubeconfig = "{path}"
"#,
        path = kubeconfig.display()
    );
    let config = scratch.write("runbook.toml", &config);
    let script = scratch.write(
        "ns.rhai",
        "print(\"ns=\" + k8s::get(\"deployment\", \"backend\").metadata.namespace);\n",
    );
    // The kube context's namespace when the context names none.
    Run::new(&script)
        .config(&config)
        .context("prod")
        .current_dir(scratch.path())
        .output()
        .assert_success()
        .assert_contains("ns=production");
    // The kubeconfig's current context (`lab`, namespace staging).
    Run::new(&script)
        .config(&config)
        .context("current")
        .current_dir(scratch.path())
        .output()
        .assert_success()
        .assert_contains("ns=staging");
    Run::new(&script)
        .config(&config)
        .context("wrong")
        .current_dir(scratch.path())
        .output()
        .assert_exit(1)
        .assert_contains("has no context `nope` (it has: lab, lab-production)")
        .assert_contains("kube_context");
}

#[test]
fn apply_creates_and_updates_from_maps_and_yaml() {
    let lab = lab();
    run(
        &lab,
        r#"
let cm = k8s::apply(#{apiVersion: "v1", kind: "ConfigMap", metadata: #{name: "app-config"}, data: #{LOG_LEVEL: "info"}});
assert(cm.metadata.namespace == "staging", "namespace " + cm.metadata.namespace);
assert(cm.data.LOG_LEVEL == "info", "data");
let docs = k8s::apply(`
apiVersion: v1
kind: ConfigMap
metadata:
  name: app-config
data:
  LOG_LEVEL: debug
---
apiVersion: v1
kind: Service
metadata:
  name: backend
spec:
  selector:
    app: backend
  ports:
  - port: 80
    targetPort: 8080
`);
assert(type_of(docs) == "array" && docs.len() == 2, "two documents");
assert(k8s::get("configmap", "app-config").data.LOG_LEVEL == "debug", "updated");
assert(k8s::get("svc", "backend").spec.ports[0].port == 80, "service");
let one = k8s::apply("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: other\n  namespace: production\ndata:\n  a: \"1\"\n");
assert(type_of(one) == "map", "one document gives a map");
assert(one.metadata.namespace == "production", "the manifest's namespace wins");
print("apply ok");
"#,
    )
    .assert_success()
    .assert_contains("apply ok");
    let kube = kube(&lab);
    let config = kube
        .get("configmaps", "staging", "app-config")
        .expect("applied");
    assert_eq!(config["data"]["LOG_LEVEL"], "debug");
    let managers: Vec<&str> = config["metadata"]["managedFields"]
        .as_array()
        .map(|fields| {
            fields
                .iter()
                .filter_map(|field| field["manager"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert!(managers.contains(&"runbook"), "managers: {managers:?}");
    assert!(kube.get("services", "staging", "backend").is_some());
    assert!(kube.get("configmaps", "production", "other").is_some());

    run(
        &lab,
        "k8s::apply(#{apiVersion: \"v1\", kind: \"ConfigMap\"});\n",
    )
    .assert_exit(1)
    .assert_contains("the manifest has no `metadata.name`");
}

#[test]
fn delete_removes_and_missing_ok_tolerates_absence() {
    let lab = lab();
    let out = run(
        &lab,
        r#"
k8s::apply(#{apiVersion: "v1", kind: "ConfigMap", metadata: #{name: "tmp"}, data: #{a: "1"}});
assert(k8s::delete("configmap", "tmp") == true, "deleted");
assert(k8s::delete("configmap", "tmp", #{missing_ok: true}) == false, "missing is fine");
print("deleted ok");
k8s::delete("cm", "tmp");
"#,
    );
    out.assert_exit(1)
        .assert_contains("deleted ok")
        .assert_contains("configmap `tmp` not found in namespace `staging`");
    assert!(kube(&lab).get("configmaps", "staging", "tmp").is_none());
}

#[test]
fn set_image_rolls_out_and_history_and_undo_go_back() {
    let lab = lab();
    let out = run(
        &lab,
        r#"
let d = k8s::set_image("backend", "registry.lab/backend:v2");
assert(d.spec.template.spec.containers[0].image == "registry.lab/backend:v2", "returned object");
let done = k8s::rollout_wait("backend", "60s");
assert(done.status.updatedReplicas == 2, "rolled out");
assert(k8s::image("backend") == "registry.lab/backend:v2", "v2");
let h = k8s::history("backend");
for e in h { print("history " + e.revision + " " + e.image + " " + e.replicaset + " " + e.created); }
assert(h.len() == 2, "two revisions");
assert(h[0].image == "registry.lab/backend:v1" && h[1].image == "registry.lab/backend:v2", "images");
assert(h[1].revision > h[0].revision, "ordered");
k8s::rollout_undo("backend");
k8s::rollout_wait("backend", "60s");
assert(k8s::image("backend") == "registry.lab/backend:v1", "undone");
let h2 = k8s::history("backend");
assert(h2[h2.len() - 1].image == "registry.lab/backend:v1", "v1 is the newest revision");
k8s::rollout_undo("backend", h[1].revision);
k8s::rollout_wait("backend", "60s");
assert(k8s::image("backend") == "registry.lab/backend:v2", "to a given revision");
print("undo ok");
"#,
    );
    out.assert_success().assert_contains("undo ok");
    let kube = kube(&lab);
    assert_eq!(
        image_of(kube, "staging", "backend"),
        "registry.lab/backend:v2"
    );
    assert!(kube.rolled_out("staging", "backend"));
    let deployment = kube.get("deployments", "staging", "backend").unwrap();
    assert!(
        deployment
            .pointer("/spec/template/metadata/labels/pod-template-hash")
            .is_none(),
        "the ReplicaSet's pod-template-hash label was copied back: {deployment}"
    );
    // Production was not touched.
    assert_eq!(
        image_of(kube, "production", "backend"),
        "registry.lab/backend:v1"
    );
}

#[test]
fn undo_without_an_earlier_revision_is_an_error() {
    let lab = lab();
    run(&lab, "k8s::rollout_undo(\"backend\");\n")
        .assert_exit(1)
        .assert_contains("deployment `backend` in namespace `staging`: has no earlier revision")
        .assert_contains("k8s::history(\"backend\")");
    run(&lab, "k8s::rollout_undo(\"backend\", 7);\n")
        .assert_exit(1)
        .assert_contains("has no revision 7");
}

#[test]
fn an_image_without_a_version_is_refused() {
    let lab = lab();
    let before = kube(&lab).resource_version();
    run(
        &lab,
        "k8s::set_image(\"backend\", \"registry.lab/backend:latest\");\n",
    )
    .assert_exit(1)
    .assert_contains("`latest` is not a version")
    .assert_contains("must name a version");
    run(
        &lab,
        "k8s::set_image(\"backend\", \"registry.lab/backend\");\n",
    )
    .assert_exit(1)
    .assert_contains("it has no tag")
    .assert_contains("must name a version");
    assert_eq!(kube(&lab).resource_version(), before, "nothing was written");
    assert_eq!(
        image_of(kube(&lab), "staging", "backend"),
        "registry.lab/backend:v1"
    );
}

#[test]
fn a_broken_rollout_fails_naming_the_pods_and_their_reasons() {
    let lab = lab();
    let out = run(
        &lab,
        r#"
k8s::set_image("backend", "registry.lab/backend:v2-broken");
k8s::rollout_wait("backend", "60s");
"#,
    );
    out.assert_exit(1)
        .assert_contains("rollout of deployment `backend` in namespace `staging` failed: ProgressDeadlineExceeded")
        .assert_contains("pods not ready:")
        .assert_contains("backend-")
        .assert_contains("CrashLoopBackOff (restarts: ")
        .assert_contains("k8s::rollout_undo(\"backend\")");
    // A timeout shorter than the deadline: the same pods, "did not finish".
    let out = run(
        &lab,
        r#"
k8s::set_image("frontend", "registry.lab/frontend:v3-broken");
k8s::rollout_wait("frontend", "1s");
"#,
    );
    out.assert_exit(1)
        .assert_contains(
            "deployment `frontend` in namespace `staging` did not finish rolling out within",
        )
        .assert_contains("frontend-");
}

#[test]
fn scale_and_restart_roll_out() {
    let lab = lab();
    run(
        &lab,
        r#"
let d = k8s::scale("backend", 3);
assert(d.spec.replicas == 3, "scaled");
k8s::rollout_wait("backend", "60s");
let r = k8s::restart("backend");
let stamp = r.spec.template.metadata.annotations["kubectl.kubernetes.io/restartedAt"];
assert(type_of(stamp) == "string" && stamp.len() == 20, "restartedAt " + stamp);
k8s::rollout_wait("backend", "60s");
print("scale ok");
"#,
    )
    .assert_success()
    .assert_contains("scale ok");
    let kube = kube(&lab);
    let deployment = kube.get("deployments", "staging", "backend").unwrap();
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(deployment["status"]["readyReplicas"], 3);
    assert!(kube.rolled_out("staging", "backend"));
    run(&lab, "k8s::scale(\"backend\", -1);\n")
        .assert_exit(2)
        .assert_contains("must be 0 or more");
}

#[test]
fn logs_of_a_pod_a_selector_and_a_deployment() {
    let lab = lab();
    let out = run(
        &lab,
        r#"
let all = k8s::logs("app=backend", #{tail: 3, since: "1h"});
let lines = all.split("\n");
let pods = #{};
for line in lines {
    if line == "" { continue; }
    assert(line.contains(" | "), "unprefixed line: " + line);
    pods[line.split(" | ")[0]] = true;
}
assert(pods.len() == 2, "lines from both pods: " + pods.keys());
let name = k8s::list("pod", #{selector: "app=backend"})[0].metadata.name;
let one = k8s::logs(name);
assert(one.len() > 0 && !one.contains(" | "), "one pod, unprefixed: " + one);
let via = k8s::logs("deployment/frontend");
assert(via.starts_with("frontend-"), "deployment logs: " + via);
print("logs ok");
"#,
    );
    out.assert_success().assert_contains("logs ok");
}

#[test]
fn exec_runs_or_says_the_cluster_cannot() {
    let lab = lab();
    let out = run(
        &lab,
        r#"
let pod = k8s::list("pod", #{selector: "app=backend"})[0].metadata.name;
try {
    let r = k8s::exec(pod, ["echo", "hi"]);
    print("EXEC-OK " + r.code + " " + r.stdout);
} catch (e) {
    print("EXEC-ERR " + e.message);
}
k8s::exec("no-such-pod", ["true"]);
"#,
    );
    out.assert_exit(1)
        .assert_contains("pod `no-such-pod` not found in namespace `staging`");
    assert!(
        out.stdout.contains("EXEC-OK 0 hi")
            || out.stdout.contains("is not supported by this cluster"),
        "exec neither ran nor said why\n{}",
        out.report()
    );
    run(&lab, "k8s::exec(\"x\", \"echo hi\");\n")
        .assert_exit(2)
        .assert_contains("must be an array of strings");
}

#[test]
fn secrets_are_read_and_written_but_never_printed() {
    let lab = lab();
    let out = run(
        &lab,
        r#"
let values = k8s::secret("app-secrets");
print("db=" + values.DB_PASSWORD);
log::info("db password is " + values.DB_PASSWORD);
assert(values.DB_PASSWORD.len() == 15, "decoded");
let token = secrets::generate(#{length: 24});
let r = k8s::set_secret("api-keys", #{token: token, plain: "plain-text-value-123"}, #{mask: true});
assert(r.created, "created");
assert(r.keys == ["plain", "token"], "keys " + r.keys);
assert(k8s::secret("api-keys").token == token, "round trip");
let again = k8s::set_secret("api-keys", #{plain: "other-plain-456"}, #{mask: true});
assert(!again.created, "updated");
let object = k8s::get("secret", "api-keys");
print(object);
print(k8s::list("secret"));
print("plain=" + k8s::secret("api-keys").plain);
let applied = k8s::apply(#{apiVersion: "v1", kind: "Secret", metadata: #{name: "applied"}, stringData: #{key: "applied-secret-555"}});
print(applied);
print("applied=" + k8s::secret("applied").key);
print("secrets ok");
"#,
    );
    out.assert_success()
        .assert_contains("secrets ok")
        .assert_contains("db=***")
        .assert_contains("plain=***");
    let journal = all_text(&lab.state_dir());
    assert!(!journal.is_empty(), "no journal was written");
    for leaked in [
        KubeApi::DB_PASSWORD,
        "bGFiLWRiLXBhc3N3b3Jk",
        "plain-text-value-123",
        "cGxhaW4tdGV4dC12YWx1ZS0xMjM=",
        "other-plain-456",
        "b3RoZXItcGxhaW4tNDU2",
        "applied-secret-555",
        "YXBwbGllZC1zZWNyZXQtNTU1",
    ] {
        out.assert_not_contains(leaked);
        assert!(!journal.contains(leaked), "the journal holds {leaked}");
    }
    let stored = kube(&lab).get("secrets", "staging", "api-keys").unwrap();
    assert_eq!(stored["data"]["plain"], "b3RoZXItcGxhaW4tNDU2");
    assert!(
        stored["data"]["token"].is_string(),
        "other keys stay: {stored}"
    );
}

/// A Lease held by alice, renewed just now, for an hour.
fn alices_lease(name: &str) -> Value {
    let now = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": "staging"},
        "spec": {
            "holderIdentity": "alice@ops1 pid 4242 started 2026-11-22T00:59:58Z",
            "acquireTime": "2026-11-22T01:00:00.000000Z",
            "renewTime": now,
            "leaseDurationSeconds": 3600
        }
    })
}

#[test]
fn a_held_lease_exits_4_naming_the_holder_and_since_when() {
    let lab = lab();
    kube(&lab)
        .create(alices_lease("deploy-backend"))
        .expect("the lease is created");
    let out = run(
        &lab,
        "k8s::lock(\"deploy-backend\", \"15m\");\nprint(\"got the lock\");\n",
    );
    out.assert_exit(4)
        .assert_contains("lease `deploy-backend` in `staging` is held by alice@ops1 (pid 4242) since 2026-11-22T01:00:00Z")
        .assert_not_contains("got the lock");
    // A dry run says so in the plan and goes on.
    let scratch = Scratch::new();
    run_in(
        &lab,
        &scratch,
        "k8s::lock(\"deploy-backend\", \"15m\");\nprint(\"planned\");\n",
    )
    .dry_run()
    .output()
    .assert_success()
    .assert_contains("planned")
    .assert_contains("held by alice@ops1 (pid 4242)")
    .assert_contains("a live run would stop here (exit code 4)");
    let lease = kube(&lab)
        .get("leases", "staging", "deploy-backend")
        .unwrap();
    assert_eq!(
        lease["spec"]["holderIdentity"],
        "alice@ops1 pid 4242 started 2026-11-22T00:59:58Z"
    );
}

#[test]
fn a_lease_is_taken_renewed_while_the_run_lives_and_released_at_its_end() {
    let lab = Arc::new(lab());
    // An expired lease of someone else is taken over.
    let mut expired = alices_lease("deploy-backend");
    expired["spec"]["renewTime"] = json!("2026-11-22T01:00:00.000000Z");
    expired["spec"]["leaseDurationSeconds"] = json!(10);
    kube(&lab).create(expired).expect("the lease is created");
    let runner = {
        let lab = Arc::clone(&lab);
        std::thread::spawn(move || {
            run(
                &lab,
                r#"
let l = k8s::lock("deploy-backend", "3s");
print("holder=" + l.holder);
sleep("4500ms");
let again = k8s::lock("deploy-backend", "3s");
print("still mine");
"#,
            )
        })
    };
    let taken = kube(&lab).wait_until(Duration::from_secs(30), |kube| {
        kube.get("leases", "staging", "deploy-backend")
            .and_then(|lease| lease["spec"]["holderIdentity"].as_str().map(str::to_owned))
            .is_some_and(|holder| !holder.starts_with("alice@"))
    });
    assert!(taken, "the run did not take the expired lease");
    let first = kube(&lab)
        .get("leases", "staging", "deploy-backend")
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let later = kube(&lab)
        .get("leases", "staging", "deploy-backend")
        .expect("held while the run lives");
    assert_eq!(
        later["spec"]["holderIdentity"],
        first["spec"]["holderIdentity"]
    );
    assert_ne!(
        later["spec"]["renewTime"], first["spec"]["renewTime"],
        "not renewed"
    );
    assert_eq!(later["spec"]["leaseTransitions"], 1);
    assert_eq!(later["spec"]["leaseDurationSeconds"], 3);
    let out = runner.join().expect("the run thread");
    out.assert_success()
        .assert_contains("still mine")
        .assert_contains(" pid ");
    assert!(
        kube(&lab)
            .get("leases", "staging", "deploy-backend")
            .is_none(),
        "the lease was not released at the end of the run"
    );
    // A failed run releases it too.
    run(
        &lab,
        "k8s::lock(\"deploy-backend\", \"30s\");\nfail(\"boom\");\n",
    )
    .assert_exit(1)
    .assert_contains("boom");
    assert!(
        kube(&lab)
            .get("leases", "staging", "deploy-backend")
            .is_none(),
        "the lease was not released at the end of a failed run"
    );
}

#[test]
fn two_runs_racing_for_a_lease_one_wins_and_the_other_exits_4() {
    let lab = Arc::new(lab());
    for round in 0..3 {
        let name = format!("race-{round}");
        let barrier = Arc::new(Barrier::new(2));
        let runners: Vec<_> = (0..2)
            .map(|_| {
                let lab = Arc::clone(&lab);
                let barrier = Arc::clone(&barrier);
                let script =
                    format!("k8s::lock(\"{name}\", \"30s\");\nprint(\"won\");\nsleep(\"2s\");\n");
                std::thread::spawn(move || {
                    let scratch = Scratch::new();
                    let run = run_in(&lab, &scratch, &script).arg("--verbose");
                    barrier.wait();
                    run.output()
                })
            })
            .collect();
        let outputs: Vec<Output> = runners
            .into_iter()
            .map(|runner| runner.join().expect("a run thread"))
            .collect();
        let mut codes: Vec<i32> = outputs.iter().map(|out| out.code).collect();
        codes.sort_unstable();
        assert_eq!(
            codes,
            [0, 4],
            "round {round}: one run must win\n{}\n{}",
            outputs[0].report(),
            outputs[1].report()
        );
        let raced = outputs
            .iter()
            .filter(|out| out.all().contains("reading it again"))
            .count();
        eprintln!("round {round}: {raced} run(s) hit a 409 and read the lease again");
        let loser = outputs.iter().find(|out| out.code == 4).unwrap();
        loser
            .assert_contains(&format!("lease `{name}` in `staging` is held by "))
            .assert_contains(" (pid ")
            .assert_not_contains("won");
        assert!(kube(&lab).get("leases", "staging", &name).is_none());
    }
}

/// A merge patch of the Deployment's annotations, straight over HTTP (the
/// way a controller or another person writes in between).
fn poke(kube: &KubeApi, count: usize) -> bool {
    let body = format!(r#"{{"metadata":{{"annotations":{{"lab/poke":"{count}"}}}}}}"#);
    let request = format!(
        "PATCH /apis/apps/v1/namespaces/staging/deployments/backend HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/merge-patch+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        kube.addr(),
        KubeApi::TOKEN,
        body.len()
    );
    let Ok(mut stream) = std::net::TcpStream::connect(kube.addr()) else {
        return false;
    };
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200")
}

#[test]
fn updates_racing_other_writers_are_retried_on_conflict() {
    let lab = Arc::new(lab());
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let lab = Arc::clone(&lab);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut count = 0;
            while !stop.load(Ordering::SeqCst) {
                if poke(kube(&lab), count) {
                    count += 1;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            count
        })
    };
    let scratch = Scratch::new();
    let out = run_in(
        &lab,
        &scratch,
        r#"
for i in 0..40 {
    k8s::scale("backend", if i % 2 == 0 { 3 } else { 2 });
}
k8s::set_image("backend", "registry.lab/backend:v2");
print("writes ok");
"#,
    )
    .arg("--verbose")
    .output();
    stop.store(true, Ordering::SeqCst);
    let pokes = writer.join().expect("the writer thread");
    eprintln!(
        "{pokes} patches by the other writer; {} of our updates were retried",
        out.all().matches("re-read and applied again").count()
    );
    assert!(pokes > 10, "the writer barely wrote ({pokes} patches)");
    out.assert_success()
        .assert_contains("writes ok")
        .assert_contains("re-read and applied again");
    let deployment = kube(&lab).get("deployments", "staging", "backend").unwrap();
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.lab/backend:v2"
    );
    // The other writer's change survived ours.
    assert!(deployment["metadata"]["annotations"]["lab/poke"].is_string());
}

#[test]
fn dry_run_changes_nothing_and_plans_the_image_diff() {
    let lab = lab();
    let kube = kube(&lab);
    let before = kube.dump();
    let scratch = Scratch::new();
    let out = run_in(
        &lab,
        &scratch,
        r#"
k8s::lock("deploy-backend", "15m");
let would = k8s::set_image("backend", "registry.lab/backend:v2");
print("would-be image: " + would.spec.template.spec.containers[0].image);
k8s::rollout_wait("backend", "30s");
k8s::scale("frontend", 5);
k8s::restart("frontend");
k8s::apply(#{apiVersion: "v1", kind: "ConfigMap", metadata: #{name: "dry"}, data: #{a: "1"}});
k8s::delete("deployment", "frontend");
k8s::set_secret("app-secrets", #{DB_PASSWORD: "new-password-789"}, #{mask: true});
k8s::set_secret("fresh", #{key: "fresh-value-321"}, #{mask: true});
try { k8s::rollout_undo("backend"); } catch (e) { print("undo: " + e.message); }
print("image now: " + k8s::image("backend"));
"#,
    )
    .dry_run()
    .output();
    out.assert_success()
        .assert_contains("would-be image: registry.lab/backend:v2")
        .assert_contains("image now: registry.lab/backend:v1")
        .assert_contains(
            "undo: deployment `backend` in namespace `staging`: has no earlier revision",
        )
        .assert_contains("Plan: 9 changes");
    let after = kube.dump();
    assert!(
        before == after,
        "the dry run changed the cluster\n{}",
        out.report()
    );
    let plan = &out.stdout[out.stdout.find("Plan:").expect("a plan")..];
    let removed = plan.lines().any(|line| {
        line.trim_start().starts_with('-') && line.contains("image: registry.lab/backend:v1")
    });
    let added = plan.lines().any(|line| {
        line.trim_start().starts_with('+') && line.contains("image: registry.lab/backend:v2")
    });
    assert!(removed && added, "the plan shows no image diff\n{plan}");
    for expected in [
        "deployment `backend` in namespace `staging`:",
        "--- live",
        "+++ would-be",
        "replicas: 5",
        "kubectl.kubernetes.io/restartedAt",
        "--- live (does not exist)",
        "+++ would-be (deleted)",
        "*** (changed)",
        "holderIdentity",
    ] {
        assert!(
            plan.contains(expected),
            "the plan lacks {expected:?}\n{plan}"
        );
    }
    for leaked in [
        "new-password-789",
        "bmV3LXBhc3N3b3JkLTc4OQ==",
        "fresh-value-321",
        KubeApi::DB_PASSWORD,
    ] {
        out.assert_not_contains(leaked);
    }
}

#[test]
fn a_dry_run_plans_writes_that_depend_on_earlier_planned_writes() {
    let lab = lab();
    let kube = kube(&lab);
    let before = kube.dump();
    let scratch = Scratch::new();
    let output = run_in(
        &lab,
        &scratch,
        r#"
step("namespace", || k8s::apply(#{apiVersion: "v1", kind: "Namespace", metadata: #{name: "team-x"}}));
step("secret", || k8s::apply(#{apiVersion: "v1", kind: "Secret", metadata: #{name: "db", namespace: "team-x"}, stringData: #{user: "app"}}));
step("deployment", || {
    let d = k8s::apply(#{apiVersion: "apps/v1", kind: "Deployment", metadata: #{name: "web", namespace: "team-x"},
        spec: #{replicas: 1, selector: #{matchLabels: #{app: "web"}},
                template: #{metadata: #{labels: #{app: "web"}}, spec: #{containers: [#{name: "web", image: "registry.lab/web:v1"}]}}}});
    d.metadata.name
});
"#,
    )
    .dry_run()
    .output();
    output
        .assert_success()
        .assert_contains("Plan: 3 changes")
        .assert_contains("after change 1");
    let plan = &output.stdout[output.stdout.find("Plan:").unwrap_or_default()..];
    assert!(plan.contains("image: registry.lab/web:v1"), "{plan}");
    assert!(
        before == kube.dump(),
        "the dry-run changed the cluster\n{}",
        output.report()
    );
}

#[test]
fn get_with_missing_ok_is_unit_without_an_error_line() {
    let lab = lab();
    run(
        &lab,
        r#"
let missing = k8s::get("configmap", "nope", #{missing_ok: true});
assert(missing == (), "missing_ok gives ()");
print("missing=" + type_of(missing));
assert(k8s::get("deployment", "backend", #{missing_ok: true}).metadata.name == "backend", "present");
"#,
    )
    .assert_success()
    .assert_contains("missing=()")
    .assert_not_contains("not found");
}

#[test]
fn a_dry_run_read_sees_what_an_earlier_planned_apply_makes() {
    let lab = lab();
    let scratch = Scratch::new();
    run_in(
        &lab,
        &scratch,
        r#"
step("create", || k8s::apply(#{apiVersion: "v1", kind: "ConfigMap", metadata: #{name: "planned"}, data: #{a: "1"}}));
let cm = k8s::get("configmap", "planned");
print("planned a=" + cm.data.a);
"#,
    )
    .dry_run()
    .output()
    .assert_success()
    .assert_contains("planned a=1");
}

#[test]
fn a_plain_value_stored_into_a_secret_is_masked_only_when_marked() {
    let lab = lab();
    let out = run(
        &lab,
        r#"
k8s::set_secret("app-db", #{username: "app_standby"});
log::info("the app now logs in as app_standby");
k8s::set_secret("api-keys", #{token: "marked-plain-value"}, #{mask: true});
log::info("token is marked-plain-value");
"#,
    );
    out.assert_success()
        .assert_contains("the app now logs in as app_standby")
        .assert_contains("token is ***")
        .assert_not_contains("marked-plain-value");
}
