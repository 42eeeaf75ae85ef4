//! setup-staging and teardown-staging end to end in the lab: the Hetzner
//! Cloud fake (judged by the real `hcloud` CLI), its servers booting as lab
//! ssh hosts, a k0s stand-in that makes the lab's Kubernetes fake the
//! cluster, the real `kubectl`; faults (429 and `locked` bursts, an action
//! error, a lost create answer); dry-runs that change nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use runbook_lab::{Fault, HcloudApi, Lab};

use crate::harness::{Output, Run, Scratch};

/// A lab with the Kubernetes and Hetzner fakes, and a scratch folder for the
/// stand-in's binary, data and the kubeconfig.
struct Staging {
    lab: Lab,
    scratch: Scratch,
    standin: PathBuf,
}

fn staging() -> Staging {
    let lab = Lab::builder()
        .kube(true)
        .hcloud(true)
        .start()
        .expect("the lab starts");
    crate::k8s::settle(lab.kube().unwrap());
    let standin = lab.k0s_standin().expect("the k0s stand-in");
    Staging {
        lab,
        scratch: Scratch::new(),
        standin,
    }
}

impl Staging {
    fn api(&self) -> &HcloudApi {
        self.lab.hcloud().unwrap()
    }

    fn kubeconfig(&self, name: &str) -> PathBuf {
        self.scratch.file(&format!("kube/{name}.yaml"))
    }

    /// `runbook run runbooks/setup-staging.rhai` with the lab's stand-ins.
    fn setup(&self, name: &str) -> Run {
        self.setup_version(name, "v1.4.2")
    }

    fn setup_version(&self, name: &str, version: &str) -> Run {
        let ssh = self.lab.ssh().expect("the lab's sshd serves the servers");
        let key = format!("{}.pub", ssh.client_key().display());
        let data = self.scratch.file(&format!("k0s/{name}/data"));
        Run::new("runbooks/setup-staging.rhai")
            .envs(self.lab.env())
            .context(Lab::CONTEXT)
            .param("name", name)
            .param("version", version)
            .param("ssh_public_key", key)
            .param("ssh_user", ssh.user())
            .param("ssh_port", ssh.port())
            .param("k0s_source", format!("file://{}", self.standin.display()))
            .param(
                "k0s_bin",
                self.scratch.file(&format!("k0s/{name}/bin/k0s")).display(),
            )
            .param("k0s_data_dir", data.display())
            .param(
                "k0s_config",
                self.scratch.file(&format!("k0s/{name}/k0s.yaml")).display(),
            )
            .param("k0s_service", data.join("k0scontroller.service").display())
            .param("api_url", self.lab.kube().unwrap().url())
            .param("kubeconfig", self.kubeconfig(name).display())
            .param("health_url", self.lab.http().url("/health"))
            .param("timeout", "30s")
    }

    fn teardown(&self, name: &str, scope: &str) -> Run {
        Run::new("runbooks/teardown-staging.rhai")
            .envs(self.lab.env())
            .context(Lab::CONTEXT)
            .param("name", name)
            .param("scope", scope)
            .param("kubeconfig", self.kubeconfig(name).display())
    }

    /// The real `hcloud` CLI against the fake.
    fn hcloud_cli(&self, args: &[&str]) -> String {
        let output = Command::new("/usr/bin/hcloud")
            .args(args)
            .env("HCLOUD_ENDPOINT", self.api().endpoint())
            .env("HCLOUD_TOKEN", HcloudApi::TOKEN)
            .env("HCLOUD_CONFIG", self.scratch.file("hcloud-cli.toml"))
            .env_remove("HCLOUD_CONTEXT")
            .output()
            .expect("run /usr/bin/hcloud (scripts/setup.sh installs hcloud-cli)");
        assert!(output.status.success(), "hcloud {args:?}: {output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The real `kubectl` with the kubeconfig setup-staging stored.
    fn kubectl(&self, name: &str, args: &[&str]) -> std::process::Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.kubeconfig(name))
            .args(args)
            .env("KUBECACHEDIR", self.scratch.file("kube-cache"))
            .output()
            .expect("run kubectl")
    }

    fn servers(&self) -> Vec<String> {
        self.api()
            .servers()
            .iter()
            .map(|server| server["name"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// A runbook.toml with the lab's contexts plus `NAME` for the new
    /// environment, as setup-staging's last line describes it.
    fn context_for(&self, name: &str) -> PathBuf {
        let ssh = self.lab.ssh().unwrap();
        let server = self.api().server(name).expect("the server exists");
        let ip = server["public_net"]["ipv4"]["ip"]
            .as_str()
            .unwrap()
            .to_owned();
        let lab_config = std::fs::read_to_string(self.lab.config_path()).unwrap();
        let text = format!(
            "{lab_config}\n[context.{name}]\nkubeconfig = {kubeconfig:?}\nnamespace = {name:?}\n\
             [context.{name}.hosts]\n{name} = \"{user}@{ip}:{port}\"\n[context.{name}.groups]\nall = [{name:?}]\n\
             [context.{name}.ssh]\nconfig = {config:?}\nknown_hosts = {known:?}\nidentity = {identity:?}\n\
             [context.{name}.http]\nhealth = {health:?}\n",
            kubeconfig = self.kubeconfig(name).display().to_string(),
            user = ssh.user(),
            port = ssh.port(),
            config = ssh.ssh_config().display().to_string(),
            known = ssh.known_hosts().display().to_string(),
            identity = ssh.client_key().display().to_string(),
            health = self.lab.http().url("/health"),
        );
        self.scratch.write("runbook.toml", &text)
    }
}

fn requests_since(api: &HcloudApi, from: usize) -> Vec<runbook_lab::HcloudRequest> {
    api.requests().into_iter().skip(from).collect()
}

fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[track_caller]
fn assert_setup_ok(output: &Output) {
    output
        .assert_success()
        .assert_contains("frontend   http://")
        .assert_contains(":30000")
        .assert_contains(":30080")
        .assert_not_contains(HcloudApi::TOKEN)
        .assert_not_contains(Lab::GITHUB_TOKEN);
}

#[test]
fn setup_then_kubectl_health_check_teardown_apps_then_all() {
    let env = staging();
    let api = env.api();
    let started = Instant::now();
    let output = env.setup("demo").output();
    let elapsed = started.elapsed();
    assert_setup_ok(&output);
    let requests = api.requests();
    let actions = api.actions();
    eprintln!(
        "FIGURES setup-staging: {} API requests ({} GET /actions polls), {} actions waited {:?} in total, setup took {:?}",
        requests.len(),
        requests.iter().filter(|r| r.path == "/actions").count(),
        actions.len(),
        api.action_time(),
        elapsed
    );
    assert_eq!(env.servers(), ["demo"]);
    assert_eq!(api.ssh_keys().len(), 1);
    assert_eq!(api.firewalls().len(), 1);
    let server = api.server("demo").unwrap();
    assert_eq!(server["status"], "running");
    assert_eq!(server["labels"]["managed-by"], "runbook");
    assert_eq!(server["labels"]["staging"], "demo");
    // The firewall lets in 22, 6443, 30000 and 30080 and applies to the server.
    let (_, applied) = &api.firewalls()[0];
    assert_eq!(applied, &vec![server["id"].as_u64().unwrap()]);

    // The kubeconfig is private and its server was rewritten.
    let kubeconfig = env.kubeconfig("demo");
    assert_eq!(mode_of(&kubeconfig), 0o600);
    let text = std::fs::read_to_string(&kubeconfig).unwrap();
    assert!(text.contains(&env.lab.kube().unwrap().url()), "{text}");
    assert!(!text.contains("localhost:6443"), "{text}");

    // The real kubectl sees the apps in the new namespace.
    let listed = env.kubectl("demo", &["get", "deployments", "-n", "demo", "-o", "name"]);
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    for app in ["backend", "frontend", "postgres", "redis"] {
        assert!(
            listed.contains(&format!("deployment.apps/{app}")),
            "{listed}"
        );
    }
    let kube = env.lab.kube().unwrap();
    let backend = kube.get("deployments", "demo", "backend").unwrap();
    assert_eq!(
        backend
            .pointer("/spec/template/spec/containers/0/image")
            .and_then(|v| v.as_str()),
        Some("ghcr.io/example/backend:v1.4.2")
    );
    assert_eq!(
        backend
            .pointer("/spec/template/spec/imagePullSecrets/0/name")
            .and_then(|v| v.as_str()),
        Some("ghcr")
    );
    let pull = kube.get("secrets", "demo", "ghcr").unwrap();
    assert_eq!(pull["type"], "kubernetes.io/dockerconfigjson");

    // health-check in a context for the new environment: all healthy.
    let config = env.context_for("demo");
    Run::new("runbooks/health-check.rhai")
        .envs(env.lab.env())
        .config(&config)
        .context("demo")
        .param("disk_max", 100)
        .param("mem_min", 0)
        .param("load_max", 1000)
        .output()
        .assert_success()
        .assert_contains("deploy/backend")
        .assert_contains("all healthy");

    // A second setup converges: nothing new on Hetzner, the apps stay.
    let before = api.request_count();
    let again = env.setup("demo").output();
    assert_setup_ok(&again);
    again.assert_contains("adopted");
    assert_eq!(env.servers(), ["demo"]);
    assert_eq!(api.ssh_keys().len(), 1);
    assert_eq!(api.firewalls().len(), 1);
    let posts: Vec<_> = requests_since(api, before)
        .into_iter()
        .filter(|request| request.method == "POST")
        .collect();
    assert!(posts.is_empty(), "a rerun created something: {posts:?}");

    // teardown apps: the namespace goes, the server stays.
    env.teardown("demo", "apps")
        .approve()
        .output()
        .assert_success()
        .assert_contains("namespace demo");
    assert!(kube.get("namespaces", "", "demo").is_none());
    assert_eq!(env.servers(), ["demo"]);
    env.teardown("demo", "apps")
        .approve()
        .output()
        .assert_success()
        .assert_contains("nothing to delete");

    // teardown all: without --approve the gate stops it; then everything goes.
    env.teardown("demo", "all").output().assert_exit(3);
    assert_eq!(env.servers(), ["demo"]);
    env.teardown("demo", "all")
        .approve()
        .output()
        .assert_success()
        .assert_contains("server demo")
        .assert_contains("firewall demo")
        .assert_contains("ssh key demo");
    assert!(env.servers().is_empty());
    assert!(api.ssh_keys().is_empty());
    assert!(api.firewalls().is_empty());
    assert!(!kubeconfig.exists());
    let listed = env.hcloud_cli(&["server", "list", "-o", "noheader"]);
    assert!(listed.trim().is_empty(), "hcloud server list: {listed}");
    env.teardown("demo", "all")
        .approve()
        .output()
        .assert_success()
        .assert_contains("nothing to delete");
}

#[test]
fn a_429_burst_and_a_locked_burst_are_ridden_out() {
    let env = staging();
    let api = env.api();
    api.inject(Fault::RateLimit { count: 3 });
    api.inject(Fault::Locked { count: 3 });
    let output = env.setup("bursty").output();
    assert_setup_ok(&output);
    let statuses: Vec<u16> = api
        .requests()
        .iter()
        .map(|request| request.status)
        .collect();
    assert_eq!(
        statuses.iter().filter(|status| **status == 429).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|status| **status == 423).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(env.servers(), ["bursty"]);
    output.assert_contains("rate limit reached");
}

#[test]
fn an_action_error_fails_with_its_code_and_rolls_back() {
    let env = staging();
    let api = env.api();
    api.inject(Fault::ActionError {
        command: "start_server".into(),
        code: "server_start_failed".into(),
        message: "the host did not boot".into(),
    });
    let output = env.setup("broken").output();
    output
        .assert_exit(1)
        .assert_contains("server_start_failed")
        .assert_contains("the host did not boot");
    // What the run created is gone again.
    assert!(env.servers().is_empty(), "{:?}", api.servers());
    assert!(api.firewalls().is_empty());
    assert!(api.ssh_keys().is_empty());
}

#[test]
fn a_failed_rollout_rolls_back_everything_this_run_created() {
    let env = staging();
    let api = env.api();
    // A `broken` tag crash-loops in the lab's Kubernetes fake: the backend's
    // rollout fails after its progress deadline.
    let output = env.setup_version("crashy", "v2-broken").output();
    output
        .assert_exit(1)
        .assert_contains("rollback for install k0s ran")
        .assert_contains("rollback for server ran");
    assert!(env.servers().is_empty(), "{:?}", api.servers());
    assert!(api.firewalls().is_empty());
    assert!(api.ssh_keys().is_empty());
    assert!(
        env.lab
            .kube()
            .unwrap()
            .get("namespaces", "", "crashy")
            .is_none()
    );
}

#[test]
fn a_half_installed_k0s_is_refused() {
    let env = staging();
    env.setup("half").output().assert_success();
    // Installed as a service, but stopped: k0sctl refuses to go on, so do we.
    let k0s = env.scratch.file("k0s/half/bin/k0s");
    let stopped = Command::new(&k0s).arg("stop").status().unwrap();
    assert!(stopped.success());
    env.setup("half")
        .output()
        .assert_exit(1)
        .assert_contains("installed as a service but not running");
    // Nothing this (failed) run found was removed: it created nothing.
    assert_eq!(env.servers(), ["half"]);
}

#[test]
fn a_lost_create_answer_does_not_create_a_second_server() {
    let env = staging();
    let api = env.api();
    api.inject(Fault::DropCreateResponse);
    let output = env.setup("lossy").output();
    assert_setup_ok(&output);
    output.assert_contains("was lost");
    assert_eq!(env.servers(), ["lossy"]);
    let creates = api
        .requests()
        .iter()
        .filter(|request| request.method == "POST" && request.path == "/servers")
        .count();
    assert_eq!(creates, 1, "the create was sent again");
}

#[test]
fn unavailable_capacity_fails_with_a_hint_and_leaves_nothing() {
    let env = staging();
    let api = env.api();
    api.inject(Fault::ResourceUnavailable { count: 1 });
    env.setup("full")
        .output()
        .assert_exit(1)
        .assert_contains("resource_unavailable")
        .assert_contains("another `location`");
    assert!(env.servers().is_empty());
    assert!(api.ssh_keys().is_empty());
}

#[test]
fn both_runbooks_plan_cleanly_online_and_offline_and_change_nothing() {
    let env = staging();
    let api = env.api();
    for offline in [false, true] {
        let mut run = env.setup("plan").dry_run();
        if offline {
            run = run.offline();
        }
        let output = run.output();
        output
            .assert_success()
            .assert_contains("Plan:")
            .assert_contains("hcloud::create_server");
        if !offline {
            output.assert_contains("create server `plan`: cx22 from debian-12 in fsn1");
        }
        for scope in ["apps", "all"] {
            let mut run = env.teardown("plan", scope).dry_run();
            if offline {
                run = run.offline();
            }
            run.output().assert_success();
        }
    }
    let writes: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|request| request.method != "GET")
        .collect();
    assert!(writes.is_empty(), "a dry-run wrote: {writes:?}");
    assert!(env.servers().is_empty());

    // A dry-run of an environment that exists adopts it with its ID and
    // plans the teardown of each resource.
    env.setup("real").output().assert_success();
    let id = api.server("real").unwrap()["id"].as_u64().unwrap();
    let before = api.request_count();
    env.setup("real")
        .dry_run()
        .output()
        .assert_success()
        .assert_contains(&format!("server `real` exists (id {id}"));
    env.teardown("real", "all")
        .dry_run()
        .output()
        .assert_success()
        .assert_contains(&format!("delete server `real` (id {id}"));
    let writes: Vec<_> = requests_since(api, before)
        .into_iter()
        .filter(|request| request.method != "GET")
        .collect();
    assert!(writes.is_empty(), "a dry-run wrote: {writes:?}");
}

#[test]
fn both_runbooks_are_listed_with_their_params() {
    let output = Run::command(["list", "runbooks"]).output();
    output
        .assert_success()
        .assert_contains("setup-staging.rhai")
        .assert_contains("teardown-staging.rhai");
    for param in ["name", "version", "server_type", "k0s_source", "allow_from"] {
        output.assert_contains(param);
    }
    output.assert_contains("scope");
}
