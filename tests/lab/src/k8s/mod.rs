//! A fake Kubernetes API server that the real `kubectl` accepts: an
//! in-process HTTP server on 127.0.0.1 with discovery, CRUD with
//! resourceVersions and conflicts, merge/strategic/JSON patches, server-side
//! apply, dry-run, watches, the scale and log subresources, and a small
//! controller that rolls Deployments out through ReplicaSets and Pods.
//!
//! No kube-apiserver can run on the lab's machines, so this stands in for
//! one; `tests/kubectl.rs` checks it against Debian's kubectl. It is
//! started by [`crate::LabBuilder::kube`], which also writes a kubeconfig.
//!
//! | module | what it does |
//! |---|---|
//! | `server` | HTTP, authentication, routing, query parameters |
//! | `api` | API semantics: system metadata, preconditions, writes, dry-run, deletion |
//! | `admission` | decoding checks, defaults and validation (422 Invalid) |
//! | `store` | objects, the resourceVersion counter, the event log |
//! | `watch` | watch streams |
//! | `patch` | merge, strategic merge, JSON patch, server-side apply helpers |
//! | `scale` | the scale subresource |
//! | `discovery` | `/version`, `/api`, `/apis`, OpenAPI v2/v3 |
//! | `table` | server-side printing for `kubectl get` |
//! | `controller` | Deployments → ReplicaSets → Pods, Jobs, their statuses |
//! | `kubelet` | pod lifecycle: ready after the delay, crash loops, finished Job pods |
//! | `logs` | pod logs |
//! | `seed` | what a fresh lab cluster holds |
//! | `resources` | the served types |
//! | `errors` | `Status` bodies |
//! | `selector` | label and field selectors |

mod admission;
mod api;
mod controller;
mod discovery;
mod errors;
mod kubelet;
mod logs;
mod patch;
mod resources;
mod scale;
mod seed;
mod selector;
mod server;
mod store;
mod table;
mod watch;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Map, Value};
use tokio::sync::{Notify, oneshot};

use self::controller::{Memory, Settings};
use self::store::Store;

/// The time as the API writes it: RFC 3339, UTC, whole seconds.
pub(crate) fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Everything behind the cluster lock.
#[derive(Debug)]
pub(crate) struct Cluster {
    pub(crate) store: Store,
    pub(crate) memory: Memory,
    pub(crate) settings: Settings,
}

/// The cluster shared by the HTTP handlers, the controller and the test
/// helpers on [`KubeApi`].
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    cluster: Arc<Mutex<Cluster>>,
    wake: Arc<Notify>,
}

impl Shared {
    /// Lock the cluster. Every handler finishes its update before unlocking,
    /// and a panic in one (a bug) should not take the lab down with it, so
    /// poisoning is ignored.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Cluster> {
        self.cluster.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tell the controller something was written.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }
}

/// How often the controller looks at the cluster even when nothing was
/// written (pods become ready, deadlines pass).
const TICK: Duration = Duration::from_millis(20);

/// The running fake API server. Stopped (thread joined, connections and
/// watches closed) when dropped.
#[derive(Debug)]
pub struct KubeApi {
    addr: SocketAddr,
    shared: Shared,
    kubeconfig: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl KubeApi {
    /// The bearer token of the kubeconfig's user `lab`. A request carrying
    /// another token gets 401; one without any is served, because client-go
    /// (kubectl) sends no token over plain HTTP.
    pub const TOKEN: &str = "lab-kube-token-3b7e91f0";

    /// The kubeconfig context for namespace `staging` (the current context).
    pub const CONTEXT: &str = "lab";

    /// The kubeconfig context for namespace `production`.
    pub const PRODUCTION_CONTEXT: &str = "lab-production";

    /// The kubeconfig's file name in the lab folder.
    pub const KUBECONFIG_FILE: &str = "kubeconfig";

    /// The password in the seeded Secret `app-secrets` (key `DB_PASSWORD`).
    pub const DB_PASSWORD: &str = seed::DB_PASSWORD;

    /// Start serving on 127.0.0.1 with the seeds rolled out, and write
    /// `dir/kubeconfig`. `delay` is how long new pods take to become ready,
    /// `progress_deadline` the lab-wide rollout deadline.
    pub fn start(
        dir: &Path,
        delay: Duration,
        progress_deadline: Duration,
    ) -> anyhow::Result<KubeApi> {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context("cannot bind the lab Kubernetes API to 127.0.0.1")?;
        listener
            .set_nonblocking(true)
            .context("cannot make the lab Kubernetes API listener non-blocking")?;
        let addr = listener
            .local_addr()
            .context("cannot read the lab Kubernetes API's address")?;
        let mut cluster = Cluster {
            store: Store::new(),
            memory: Memory::default(),
            settings: Settings {
                delay,
                progress_deadline,
            },
        };
        seed::seed(&mut cluster.store, &mut cluster.memory)
            .map_err(|error| anyhow::anyhow!("cannot seed the lab cluster: {}", error.message))?;
        let shared = Shared {
            cluster: Arc::new(Mutex::new(cluster)),
            wake: Arc::new(Notify::new()),
        };
        let kubeconfig = dir.join(KubeApi::KUBECONFIG_FILE);
        std::fs::write(&kubeconfig, render_kubeconfig(&format!("http://{addr}")))
            .with_context(|| format!("cannot write `{}`", kubeconfig.display()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot build the lab Kubernetes API's tokio runtime")?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener)
                .context("cannot register the lab Kubernetes API listener with tokio")?
        };
        let (shutdown, stop) = oneshot::channel();
        let context = server::Context {
            shared: shared.clone(),
            token: Arc::from(KubeApi::TOKEN),
            addr,
        };
        let thread = std::thread::Builder::new()
            .name("runbook-lab-kube".into())
            .spawn({
                let shared = shared.clone();
                // Dropping the runtime at the end of the thread ends open
                // watches and the controller, so drop never hangs.
                move || {
                    runtime.block_on(async move {
                        tokio::spawn(control(shared));
                        server::serve(listener, context, stop).await;
                    });
                }
            })
            .context("cannot start the lab Kubernetes API thread")?;
        Ok(KubeApi {
            addr,
            shared,
            kubeconfig,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The address the server listens on (always 127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, the kubeconfig's server.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The kubeconfig the lab wrote: cluster `lab`, user `lab` (a bearer
    /// token), contexts `lab` (namespace staging, current) and
    /// `lab-production` (namespace production).
    pub fn kubeconfig(&self) -> PathBuf {
        self.kubeconfig.clone()
    }

    /// One object, read straight from the store. `resource` is a plural,
    /// singular, kind or short name, optionally with `.group`
    /// (`deploy`, `Deployment`, `replicasets.apps`, `lease`); `namespace` is
    /// ignored for cluster-scoped types (namespaces).
    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        let resource = resources::find(resource)?;
        let namespace = if resource.namespaced { namespace } else { "" };
        self.shared
            .lock()
            .store
            .get(resource, namespace, name)
            .cloned()
    }

    /// The objects of a type in `namespace` (None: every namespace), ordered
    /// by namespace and name; empty for an unknown type.
    pub fn list(&self, resource: &str, namespace: Option<&str>) -> Vec<Value> {
        let Some(resource) = resources::find(resource) else {
            return Vec::new();
        };
        self.shared
            .lock()
            .store
            .list(resource, namespace)
            .into_iter()
            .cloned()
            .collect()
    }

    /// Every stored object, keyed `TYPE/NAMESPACE/NAME` (`TYPE/NAME` for
    /// namespaces; TYPE is `deployments.apps`, `pods`...), for before/after
    /// comparisons: any write changes at least one resourceVersion in it.
    /// (Crash-looping pods keep counting restarts, so compare while none run.)
    pub fn dump(&self) -> Value {
        let cluster = self.shared.lock();
        let mut all = Map::new();
        for resource in resources::RESOURCES {
            for object in cluster.store.list(resource, None) {
                let text = |p: &str| {
                    object
                        .pointer(p)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                };
                let key = if resource.namespaced {
                    format!(
                        "{}/{}/{}",
                        resource.qualified(),
                        text("/metadata/namespace"),
                        text("/metadata/name")
                    )
                } else {
                    format!("{}/{}", resource.qualified(), text("/metadata/name"))
                };
                all.insert(key, object.clone());
            }
        }
        Value::Object(all)
    }

    /// The newest resourceVersion: unchanged means nothing was written.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().store.resource_version()
    }

    /// How long new pods take to become ready (or to crash) from now on.
    pub fn set_delay(&self, delay: Duration) {
        self.shared.lock().settings.delay = delay;
    }

    /// The lab-wide rollout progress deadline from now on (a Deployment's
    /// smaller `progressDeadlineSeconds` still wins).
    pub fn set_progress_deadline(&self, deadline: Duration) {
        self.shared.lock().settings.progress_deadline = deadline;
    }

    /// Create an object as a client would (defaults, validation, conflicts),
    /// e.g. a Lease held by someone else. Its namespace comes from
    /// `metadata.namespace`; errors are the API's messages.
    pub fn create(&self, object: Value) -> anyhow::Result<Value> {
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let resource = resources::by_kind(api_version, kind)
            .with_context(|| format!("the lab does not serve {api_version} {kind}"))?;
        let namespace = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let options = api::WriteOptions {
            dry_run: false,
            manager: "runbook-lab".into(),
        };
        let created = {
            let mut cluster = self.shared.lock();
            api::create(&mut cluster.store, resource, &namespace, object, &options)
                .map_err(|error| anyhow::anyhow!("{}", error.message))?
        };
        self.shared.wake();
        Ok(created)
    }

    /// Wait (at most `timeout`) until `condition` holds for this API; false
    /// if it never did.
    pub fn wait_until(&self, timeout: Duration, condition: impl Fn(&KubeApi) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if condition(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the Deployment finished rolling out, by kubectl's rule:
    /// its generation observed, every replica updated and available, no
    /// old ones left.
    pub fn rolled_out(&self, namespace: &str, name: &str) -> bool {
        let Some(deployment) = self.get("deployments", namespace, name) else {
            return false;
        };
        let int = |p: &str| deployment.pointer(p).and_then(Value::as_i64).unwrap_or(0);
        int("/status/observedGeneration") >= int("/metadata/generation")
            && int("/status/updatedReplicas") == int("/spec/replicas")
            && int("/status/replicas") == int("/status/updatedReplicas")
            && int("/status/availableReplicas") == int("/status/updatedReplicas")
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // An error means the server loop already ended; nothing to stop.
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            // A panicked server thread has nothing left to clean up.
            let _ = thread.join();
        }
    }
}

/// The controller loop: a pass after every write and every [`TICK`].
async fn control(shared: Shared) {
    loop {
        tokio::select! {
            () = shared.wake.notified() => {}
            () = tokio::time::sleep(TICK) => {}
        }
        let mut cluster = shared.lock();
        let Cluster {
            store,
            memory,
            settings,
        } = &mut *cluster;
        controller::reconcile(store, memory, settings, Instant::now());
    }
}

/// The kubeconfig: one cluster, one user with a bearer token, two contexts.
fn render_kubeconfig(server: &str) -> String {
    let token = KubeApi::TOKEN;
    let lab = KubeApi::CONTEXT;
    let production = KubeApi::PRODUCTION_CONTEXT;
    format!(
        r#"apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster:
    server: {server}
users:
- name: lab
  user:
    token: {token}
contexts:
- name: {lab}
  context:
    cluster: lab
    user: lab
    namespace: staging
- name: {production}
  context:
    cluster: lab
    user: lab
    namespace: production
current-context: {lab}
preferences: {{}}
"#
    )
}
