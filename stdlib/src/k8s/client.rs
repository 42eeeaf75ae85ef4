//! The active context → a `kube::Client`, built once per process for each
//! (kubeconfig, kube context) pair, and the namespace a call works in.
//!
//! The context map may hold `kubeconfig` (a path; else `$KUBECONFIG`, else
//! `~/.kube/config`), `kube_context` (else the kubeconfig's current context)
//! and `namespace` (else the kube context's namespace, else `default`). Every
//! function's `namespace` option wins over all of them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tokio::sync::OnceCell;

use crate::host::StdlibError;
use crate::settings::Section;

/// Where the cluster is, as the active context says.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Settings {
    /// `kubeconfig`: a path; `None` means `$KUBECONFIG`, else `~/.kube/config`.
    pub(crate) kubeconfig: Option<PathBuf>,
    /// `kube_context`: a context of the kubeconfig; `None` means its current context.
    pub(crate) kube_context: Option<String>,
    /// `namespace` of the runbook context, if it names one.
    pub(crate) namespace: Option<String>,
    /// The runbook context's name, for messages.
    pub(crate) context_name: Option<String>,
    /// How long a request may wait for an answer (`kube_timeout`, default 30 s).
    pub(crate) timeout: Duration,
    /// A client for streams that may be silent for long (`k8s::exec`): no read timeout.
    pub(crate) streaming: bool,
}

/// How long the Kubernetes API may take to answer one request unless the
/// context's `kube_timeout` says otherwise.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for Settings {
    fn default() -> Self {
        Settings {
            kubeconfig: None,
            kube_context: None,
            namespace: None,
            context_name: None,
            timeout: DEFAULT_TIMEOUT,
            streaming: false,
        }
    }
}

impl Settings {
    /// Read `kubeconfig`, `kube_context` and `namespace` from the context's top level.
    pub(crate) fn from_section(top: &Section) -> Result<Settings, StdlibError> {
        Ok(Settings {
            kubeconfig: top.path("kubeconfig")?,
            kube_context: top.string("kube_context")?,
            namespace: top.string("namespace")?,
            context_name: Some(top.context_name().to_owned()).filter(|name| name != "(none)"),
            timeout: match top.get("kube_timeout") {
                None => DEFAULT_TIMEOUT,
                Some(value) => crate::values::to_duration(value).map_err(|problem| {
                    StdlibError::usage(
                        format!(
                            "`kube_timeout` of context `{}` {problem}",
                            top.context_name()
                        ),
                        "e.g. `kube_timeout = \"30s\"`",
                    )
                })?,
            },
            streaming: false,
        })
    }

    /// The same cluster, for a stream that may be silent for long.
    pub(crate) fn streaming(&self) -> Settings {
        Settings {
            streaming: true,
            ..self.clone()
        }
    }
}

/// A connected cluster and the namespace one call works in.
#[derive(Clone)]
pub(crate) struct Kube {
    pub(crate) client: Client,
    /// The namespace of this call: the `namespace` option, else the
    /// context's, else the kube context's, else `default`.
    pub(crate) namespace: String,
    /// The API server's URL, for messages.
    pub(crate) server: String,
    /// The kube context used, for messages.
    pub(crate) kube_context: String,
}

/// What is cached per (kubeconfig, kube context).
#[derive(Clone)]
struct Connected {
    client: Client,
    default_namespace: String,
    server: String,
    kube_context: String,
}

type Slot = Arc<OnceCell<Connected>>;

/// (kubeconfig, kube context, streaming): what a client is built from.
type Key = (Option<PathBuf>, Option<String>, bool);

fn cache() -> &'static Mutex<HashMap<Key, Slot>> {
    static CACHE: OnceLock<Mutex<HashMap<Key, Slot>>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

fn where_from(settings: &Settings) -> String {
    match &settings.kubeconfig {
        Some(path) => format!("`{}`", path.display()),
        None => match std::env::var_os("KUBECONFIG") {
            Some(value) if !value.is_empty() => {
                format!("$KUBECONFIG (`{}`)", value.to_string_lossy())
            }
            _ => "`~/.kube/config`".to_owned(),
        },
    }
}

fn config_hint(settings: &Settings) -> String {
    let context = settings.context_name.as_deref().unwrap_or("NAME");
    format!(
        "set `kubeconfig` (a path) and `kube_context` under [context.{context}] in runbook.toml, or export KUBECONFIG; `kubectl config get-contexts` lists the contexts a kubeconfig has"
    )
}

async fn connect_uncached(settings: &Settings) -> Result<Connected, StdlibError> {
    // The runtime installs ring in main; a library user may not have.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let source = where_from(settings);
    let kubeconfig = match &settings.kubeconfig {
        Some(path) => Kubeconfig::read_from(path),
        None => Kubeconfig::read(),
    }
    .map_err(|error| {
        StdlibError::failed(
            format!(
                "cannot read the kubeconfig {source}: {}",
                crate::text::error_chain(&error)
            ),
            config_hint(settings),
        )
    })?;
    let kube_context = settings
        .kube_context
        .clone()
        .or_else(|| kubeconfig.current_context.clone())
        .unwrap_or_default();
    if let Some(wanted) = &settings.kube_context
        && !kubeconfig
            .contexts
            .iter()
            .any(|named| &named.name == wanted)
    {
        let known: Vec<&str> = kubeconfig
            .contexts
            .iter()
            .map(|named| named.name.as_str())
            .collect();
        return Err(StdlibError::failed(
            format!(
                "the kubeconfig {source} has no context `{wanted}` (it has: {})",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ),
            config_hint(settings),
        ));
    }
    let options = KubeConfigOptions {
        context: settings.kube_context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|error| {
            StdlibError::failed(
                format!(
                    "cannot use kube context `{kube_context}` of {source}: {}",
                    crate::text::error_chain(&error)
                ),
                config_hint(settings),
            )
        })?;
    let mut config = config;
    // Nothing waits forever: a server that accepts and never answers is an
    // error naming the timeout (see `error::describe`).
    config.connect_timeout = Some(settings.timeout.min(Duration::from_secs(10)));
    config.write_timeout = Some(settings.timeout);
    if !settings.streaming {
        config.read_timeout = Some(settings.timeout);
        config.reset_reader_on_write = true;
    }
    let server = config.cluster_url.to_string();
    let default_namespace = config.default_namespace.clone();
    let client = Client::try_from(config).map_err(|error| {
        StdlibError::failed(
            format!(
                "cannot set up a client for `{server}` (kube context `{kube_context}`): {}",
                crate::text::error_chain(&error)
            ),
            config_hint(settings),
        )
    })?;
    Ok(Connected {
        client,
        default_namespace,
        server,
        kube_context,
    })
}

/// The cluster of `settings`, connecting once per process; `namespace`
/// overrides the context's namespace for this call.
pub(crate) async fn connect(
    settings: &Settings,
    namespace: Option<String>,
) -> Result<Kube, StdlibError> {
    let slot = {
        let mut cache = cache().lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(
            cache
                .entry((
                    settings.kubeconfig.clone(),
                    settings.kube_context.clone(),
                    settings.streaming,
                ))
                .or_default(),
        )
    };
    let connected = slot
        .get_or_try_init(|| connect_uncached(settings))
        .await?
        .clone();
    let namespace = namespace
        .or_else(|| settings.namespace.clone())
        .unwrap_or(connected.default_namespace);
    Ok(Kube {
        client: connected.client,
        namespace,
        server: connected.server,
        kube_context: connected.kube_context,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rhai::{Dynamic, Map};

    #[test]
    fn settings_come_from_the_context_map() {
        let mut map = Map::new();
        map.insert("kubeconfig".into(), Dynamic::from("/tmp/kc".to_owned()));
        map.insert("kube_context".into(), Dynamic::from("lab".to_owned()));
        map.insert("namespace".into(), Dynamic::from("staging".to_owned()));
        map.insert("name".into(), Dynamic::from("lab".to_owned()));
        map.insert("hosts".into(), Dynamic::from_map(Map::new()));
        let settings = Settings::from_section(&Section::of(&Dynamic::from_map(map), "")).unwrap();
        assert_eq!(settings.kubeconfig, Some(PathBuf::from("/tmp/kc")));
        assert_eq!(settings.kube_context.as_deref(), Some("lab"));
        assert_eq!(settings.namespace.as_deref(), Some("staging"));
        assert_eq!(settings.context_name.as_deref(), Some("lab"));

        let empty = Settings::from_section(&Section::of(&Dynamic::UNIT, "")).unwrap();
        assert_eq!(empty, Settings::default());
        let mut blank = Map::new();
        blank.insert("namespace".into(), Dynamic::from(" ".to_owned()));
        blank.insert("kube_context".into(), Dynamic::UNIT);
        assert_eq!(
            Settings::from_section(&Section::of(&Dynamic::from_map(blank), "")).unwrap(),
            Settings::default()
        );
    }

    #[tokio::test]
    async fn a_missing_kube_context_lists_the_known_ones() {
        let dir = std::env::temp_dir().join(format!("runbook-k8s-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:9\ncontexts:\n- name: one\n  context:\n    cluster: c\n    user: u\nusers:\n- name: u\n  user: {}\ncurrent-context: one\n",
        )
        .unwrap();
        let settings = Settings {
            kubeconfig: Some(path.clone()),
            kube_context: Some("two".into()),
            namespace: None,
            context_name: Some("lab".into()),
            ..Settings::default()
        };
        let error = connect(&settings, None).await.err().unwrap();
        assert!(error.to_string().contains("no context `two`"), "{error}");
        assert!(error.to_string().contains("(it has: one)"), "{error}");
        assert!(error.hint().unwrap().contains("[context.lab]"));

        let settings = Settings {
            kube_context: None,
            ..settings
        };
        let kube = connect(&settings, Some("other".into())).await.unwrap();
        assert_eq!(kube.namespace, "other");
        assert_eq!(kube.kube_context, "one");
        let kube = connect(&settings, None).await.unwrap();
        assert_eq!(kube.namespace, "default");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
