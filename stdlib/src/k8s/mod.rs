//! `k8s::*`: Kubernetes over kube-rs, in the context's kube context and namespace.
//!
//! | file | job |
//! |---|---|
//! | `client.rs` | context → `kube::Client` (cached per process), the call's namespace |
//! | `resources.rs` | kind names (`deploy`, `deployments`) → API resources |
//! | `error.rs` | errors naming kind, object and namespace, with hints; 409 handling |
//! | `objects.rs` | `get`, `list`, `apply`, `delete`; objects as script values |
//! | `update.rs` | read-change-write with `resourceVersion`, retried on 409 |
//! | `deploy.rs` | `image`, `set_image`, `scale`, `restart` |
//! | `rollout.rs` | `rollout_wait`, `history`, `rollout_undo` |
//! | `pods.rs` | `logs`, `exec` |
//! | `secrets.rs` | `secret`, `set_secret` |
//! | `lock.rs` | `lock` (Lease), released by [`finish_run`] |
//! | `diff.rs` | the plan detail of an online `--dry-run` |
//! | `overlay.rs` | what planned applies would make, for the previews after them |
//!
//! Every write has a preview body: in an online `--dry-run` the runtime runs
//! it instead of skipping the call; it sends the same request with
//! `dryRun=All` and attaches a diff of the live object against the would-be
//! one to the plan. `overlay.rs` keeps what earlier planned applies would
//! make, so a later apply that depends on one (a namespaced object in a
//! planned namespace) is planned "after change N" instead of failing.

mod client;
mod deploy;
mod diff;
mod error;
mod lock;
mod objects;
mod overlay;
mod pods;
mod resources;
mod rollout;
mod secrets;
mod update;

use std::sync::Arc;

use rhai::Dynamic;

use crate::function;
use crate::function::{Call, Failure, Function};

/// The field manager of every write (server-side apply and updates).
pub(crate) const FIELD_MANAGER: &str = "runbook";

/// Where the active context says the cluster is, unless the run switched
/// to another kubeconfig with `k8s::use_kubeconfig`.
pub(crate) fn settings(call: &Call<'_>) -> Result<client::Settings, crate::host::StdlibError> {
    let mut settings = client::Settings::from_section(&call.host.section(""))?;
    if let Some(chosen) = chosen()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
    {
        settings.kubeconfig = Some(chosen.kubeconfig);
        settings.kube_context = chosen.kube_context;
        if chosen.namespace.is_some() {
            settings.namespace = chosen.namespace;
        }
    }
    Ok(settings)
}

/// The cluster `k8s::use_kubeconfig` switched this run to.
#[derive(Debug, Clone)]
struct Chosen {
    kubeconfig: std::path::PathBuf,
    kube_context: Option<String>,
    namespace: Option<String>,
}

fn chosen() -> &'static std::sync::Mutex<Option<Chosen>> {
    static CHOSEN: std::sync::OnceLock<std::sync::Mutex<Option<Chosen>>> =
        std::sync::OnceLock::new();
    CHOSEN.get_or_init(Default::default)
}

fn use_kubeconfig(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let path = crate::settings::expand_home(&call.string(0)?);
    let options = call.options(1, &["kube_context", "namespace"])?;
    if !path.is_file() {
        return Err(crate::host::StdlibError::failed(
            format!("no kubeconfig at `{}`", path.display()),
            "write it first (e.g. `ssh::download(host, remote, local, #{mode: 0o600})`), or fix the path",
        )
        .into());
    }
    let picked = Chosen {
        kubeconfig: path.clone(),
        kube_context: options.string("kube_context")?,
        namespace: options.string("namespace")?,
    };
    *chosen()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(picked.clone());
    let mut map = rhai::Map::new();
    map.insert("kubeconfig".into(), path.display().to_string().into());
    map.insert(
        "kube_context".into(),
        picked.kube_context.map_or(Dynamic::UNIT, Dynamic::from),
    );
    map.insert(
        "namespace".into(),
        picked.namespace.map_or(Dynamic::UNIT, Dynamic::from),
    );
    Ok(Dynamic::from_map(map))
}

/// Remember a secret value's text so that it is masked wherever it shows up
/// (values shorter than `redact::MIN_SECRET_LEN` only as whole values:
/// masking every `app` or `1` would garble output and reveal them).
pub(crate) fn mask(call: &Call<'_>, text: &str) {
    call.host.redactor().add(text);
}

/// A secret value from the cluster: prints as `***`, masked in all output.
pub(crate) fn secret_value(call: &Call<'_>, text: String) -> crate::host::Secret {
    mask(call, &text);
    crate::host::Secret::new(text)
}

/// How a write runs: for real, or as the server's own dry run (`dryRun=All`),
/// which is what an online `--dry-run` shows in its plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Live,
    Preview,
}

impl Mode {
    pub(crate) fn is_preview(self) -> bool {
        self == Mode::Preview
    }
}

type Write = fn(&mut Call<'_>, Mode) -> Result<Dynamic, Failure>;

/// A write whose online dry run asks the server (`dryRun=All`): `body(call,
/// Mode::Live)` runs live, `body(call, Mode::Preview)` is the preview.
fn with_preview(function: Function, body: Write) -> Function {
    Function {
        preview: Some(Arc::new(move |call: &mut Call<'_>| {
            body(call, Mode::Preview)
        })),
        ..function
    }
}

/// Release the leases this run holds (`k8s::lock`).
pub(crate) async fn finish_run() {
    lock::release_all().await;
    *chosen()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
}

pub(crate) fn functions() -> Vec<Function> {
    vec![
        function! {
            /// From now on in this run, talk to the cluster of the kubeconfig at
            /// `path` (its current context, or `kube_context`) instead of the
            /// context's; `namespace` becomes the default namespace. For a cluster
            /// the run itself set up (setup-staging fetches the new cluster's
            /// kubeconfig, then switches to it). Fails when there is no file at
            /// `path`. Returns `#{kubeconfig, kube_context, namespace}`.
            ///
            /// ```rhai
            /// let kubeconfig = "/tmp/doc-example.kubeconfig";
            /// if dry_run() { log::info("would use " + kubeconfig); } else { k8s::use_kubeconfig(kubeconfig, #{namespace: "demo"}); }
            /// ```
            local fn k8s::use_kubeconfig("path: string", "opts?: map") -> "#{kubeconfig: string, kube_context: string | (), namespace: string | ()}"
            use_kubeconfig
        },
        function! {
            /// One object as a map (`metadata`, `spec`, `status`, ...). The kind is a
            /// name like `deployment`, `deploy`, `pod`, `secret`, `configmap`, `service`,
            /// `job`, `lease`, `namespace`. A missing object is an error naming kind,
            /// name and namespace, unless `missing_ok: true`: then it is `()`. A
            /// Secret's values come back masked; use `k8s::secret` for them. In a
            /// dry-run, an object only an earlier planned `k8s::apply` makes reads
            /// as its would-be object. Options: `namespace`, `missing_ok`.
            ///
            /// ```rhai
            /// let d = k8s::get("deployment", "backend");
            /// log::info("ready: " + d.status?.readyReplicas);
            /// let record = k8s::get("configmap", "runbook-deploy-backend", #{missing_ok: true});
            /// ```
            read fn k8s::get("kind: string", "name: string", "opts?: map") -> "map | ()"
            objects::get
        },
        function! {
            /// Objects of a kind in the namespace, as an array of maps. Options:
            /// `namespace`, `selector` (labels, e.g. "app=backend"), `fields` (field
            /// selector), `all_namespaces`.
            ///
            /// ```rhai
            /// for pod in k8s::list("pod", #{selector: "app=backend"}) {
            ///     log::info(pod.metadata.name);
            /// }
            /// ```
            read fn k8s::list("kind: string", "opts?: map") -> "array<map>"
            objects::list
        },
        with_preview(
            function! {
                /// Create or update objects by server-side apply (field manager `runbook`,
                /// conflicts forced). The manifest is a map, or YAML text; several
                /// documents separated by `---` are applied in order and give an array.
                /// Returns the applied object. Objects without a namespace go to the
                /// context's (or the `namespace` option's). In a dry run the server
                /// validates the change and the plan shows its diff; an object in a
                /// namespace, or an update of an object, that only an earlier planned
                /// apply creates is shown "after change N" with its would-be object.
                ///
                /// ```rhai
                /// k8s::apply(#{
                ///     apiVersion: "v1", kind: "ConfigMap",
                ///     metadata: #{name: "app-config"},
                ///     data: #{LOG_LEVEL: "info"}
                /// });
                /// ```
                write fn k8s::apply("manifest: map | string", "opts?: map") -> "map | array<map>"
                |call| objects::apply(call, Mode::Live)
            },
            objects::apply,
        ),
        with_preview(
            function! {
                /// Delete an object. Returns true; a missing object is an error unless
                /// `missing_ok: true` (then false). Options: `namespace`, `missing_ok`.
                ///
                /// ```rhai
                /// k8s::delete("job", "db-migrate", #{missing_ok: true});
                /// ```
                write fn k8s::delete("kind: string", "name: string", "opts?: map") -> "bool"
                |call| objects::delete(call, Mode::Live)
            },
            objects::delete,
        ),
        function! {
            /// The image a Deployment runs: its first container's, or the one named
            /// by the `container` option. Options: `namespace`, `container`.
            ///
            /// ```rhai
            /// let image = k8s::image("backend");
            /// log::info("backend runs " + image);
            /// ```
            read fn k8s::image("deployment: string", "opts?: map") -> "string"
            deploy::image
        },
        with_preview(
            function! {
                /// Set a Deployment's image (its first container's, or `container`'s),
                /// which starts a rollout; `k8s::rollout_wait` waits for it. Refuses an
                /// image without a tag or tagged `latest`: a deploy must name a version.
                /// Returns the updated Deployment. Options: `namespace`, `container`.
                ///
                /// ```rhai
                /// k8s::set_image("backend", "registry.example.com/backend:v1.4.2");
                /// ```
                write fn k8s::set_image("deployment: string", "image: string", "opts?: map") -> "map"
                |call| deploy::set_image(call, Mode::Live)
            },
            deploy::set_image,
        ),
        with_preview(
            function! {
                /// Set a Deployment's number of replicas. Returns the updated Deployment.
                /// Options: `namespace`.
                ///
                /// ```rhai
                /// k8s::scale("backend", 3);
                /// ```
                write fn k8s::scale("deployment: string", "replicas: int", "opts?: map") -> "map"
                |call| deploy::scale(call, Mode::Live)
            },
            deploy::scale,
        ),
        with_preview(
            function! {
                /// Restart a Deployment's pods with a rollout, like `kubectl rollout
                /// restart` (sets the `kubectl.kubernetes.io/restartedAt` annotation of
                /// its pod template). Returns the updated Deployment. Options: `namespace`.
                ///
                /// ```rhai
                /// k8s::restart("backend");
                /// ```
                write fn k8s::restart("deployment: string", "opts?: map") -> "map"
                |call| deploy::restart(call, Mode::Live)
            },
            deploy::restart,
        ),
        function! {
            /// Wait until the rollout of Deployment `name` is complete (the controller saw the
            /// newest spec, all replicas are updated and available, no old ones
            /// remain). Fails when the rollout exceeds its progress deadline or
            /// `timeout` passes, listing each pod that is not ready and why (e.g.
            /// `backend-7d9f-abcde: CrashLoopBackOff (restarts: 3)`). Returns the
            /// Deployment. Options: `namespace`.
            ///
            /// ```rhai
            /// k8s::rollout_wait("backend", "5m");
            /// ```
            read fn k8s::rollout_wait("name: string", "timeout: string", "opts?: map") -> "map"
            rollout::rollout_wait
        },
        function! {
            /// A Deployment's revisions, oldest first, from the ReplicaSets it owns:
            /// `#{revision, image, replicaset, created}`. Options: `namespace`,
            /// `container` (whose image to show).
            ///
            /// ```rhai
            /// for entry in k8s::history("backend") {
            ///     log::info("revision " + entry.revision + ": " + entry.image);
            /// }
            /// ```
            read fn k8s::history("deployment: string", "opts?: map") -> "array<#{revision: int, image: string, replicaset: string, created: string}>"
            rollout::history
        },
        with_preview(
            function! {
                /// Roll Deployment `name` back, like `kubectl rollout undo`: to the revision
                /// before the current one, or to `revision`. Copies that ReplicaSet's pod
                /// template back into the Deployment, which starts a rollout; an error
                /// when there is no earlier revision. Returns the updated Deployment.
                /// Options: `namespace`.
                ///
                /// ```rhai
                /// k8s::rollout_undo("backend");
                /// k8s::rollout_undo("backend", 3);
                /// ```
                write fn k8s::rollout_undo("name: string", "revision?: int", "opts?: map") -> "map"
                |call| rollout::rollout_undo(call, Mode::Live)
            },
            rollout::rollout_undo,
        ),
        function! {
            /// Logs of a pod, or of every pod a label selector (`app=backend`) or a
            /// Deployment (`deployment/backend`) selects, each line prefixed
            /// `pod | `. Returns text. Options: `tail` (lines), `since` (duration),
            /// `container`, `previous` (the last terminated container), `namespace`.
            ///
            /// ```rhai
            /// let text = k8s::logs("app=backend", #{tail: 20, since: "10m"});
            /// log::info(text);
            /// ```
            read fn k8s::logs("pod_or_selector: string", "opts?: map") -> "string"
            pods::logs
        },
        function! {
            /// Run a command in a pod's container (the first, or `container`) and
            /// return `#{pod, stdout, stderr, code}`; a non-zero exit is an error
            /// unless `check: false`. Needs the API server's WebSocket exec; a cluster
            /// without it gives a clear error. Options: `container`, `check`,
            /// `namespace`. Not run in a dry-run.
            ///
            /// ```rhai
            /// let r = k8s::exec("backend-7d9f-abcde", ["cat", "/etc/hostname"], #{check: false});
            /// ```
            write fn k8s::exec("pod: string", "command: array", "opts?: map") -> "#{pod: string, stdout: string, stderr: string, code: int}"
            pods::exec
        },
        function! {
            /// A Secret's values, decoded, as a map of key → secret value (masked in
            /// all output). Options: `namespace`, `plain` (keys whose values are not
            /// secret, returned as plain strings: e.g. `["username"]`, so that a
            /// role name is not masked wherever it appears).
            ///
            /// ```rhai
            /// let values = k8s::secret("app-secrets");
            /// let password = values.db_password;
            /// let db = k8s::secret("app-db", #{plain: ["username"]});
            /// ```
            read fn k8s::secret("name: string", "opts?: map") -> "map"
            secrets::secret
        },
        function! {
            /// The Deployments and StatefulSets whose pods use Secret `name` (through
            /// env `secretKeyRef`, `envFrom`, or a secret or projected volume): what
            /// must restart after the Secret changes, found rather than hard-coded.
            /// Returns an array of `#{kind, name, namespace}`. Options: `namespace`.
            ///
            /// ```rhai
            /// for user in k8s::users_of_secret("app-db") { k8s::restart(user.name); }
            /// ```
            read fn k8s::users_of_secret("name: string", "opts?: map") -> "array<#{kind: string, name: string, namespace: string}>"
            secrets::users_of_secret
        },
        with_preview(
            function! {
                /// Create a Secret, or set the given keys in it (other keys stay unless
                /// `replace: true`). Values are strings or secrets; the plan's diff never
                /// shows them (a changed key reads `*** (changed)`). Secret values stay
                /// masked everywhere; a plain string (a user name) is masked too only
                /// with `mask: true`. Returns `#{name, namespace, keys, created}`.
                /// Options: `namespace`, `replace`, `mask`.
                ///
                /// ```rhai
                /// let token = secrets::generate(#{length: 32});
                /// k8s::set_secret("app-secrets", #{jwt_secret: token});
                /// ```
                write fn k8s::set_secret("name: string", "values: map", "opts?: map") -> "#{name: string, namespace: string, keys: array<string>, created: bool}"
                |call| secrets::set_secret(call, Mode::Live)
            },
            secrets::set_secret,
        ),
        with_preview(
            function! {
                /// Take a lock shared by everyone using the cluster: a
                /// `coordination.k8s.io/v1` Lease in the namespace, held for `ttl` and
                /// renewed every ttl/3 while the run lives, released when it ends. If
                /// someone else holds it, the run stops with exit code 4, naming the
                /// holder and since when. Returns `#{lease, namespace, holder, ttl}`.
                /// Options: `namespace`.
                ///
                /// ```rhai
                /// k8s::lock("deploy-backend", "15m");
                /// ```
                write fn k8s::lock("name: string", "ttl: string", "opts?: map") -> "#{lease: string, namespace: string, holder: string, ttl: int}"
                |call| lock::lock(call, Mode::Live)
            },
            lock::lock,
        ),
    ]
}
