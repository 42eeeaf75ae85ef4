//! Where hosts are: the context's inventory (`hosts`: name → `user@address:port`,
//! `groups`: name → [names]) and its `ssh` table (`config`, `known_hosts`,
//! `identity`, `persist`). A literal `user@host:port` works too.

use std::path::PathBuf;
use std::time::Duration;

use rhai::{Array, Map};

use crate::host::StdlibError;
use crate::settings::Section;

/// One host to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// The name shown to people: the inventory name, or the literal given.
    pub(crate) name: String,
    pub(crate) user: Option<String>,
    pub(crate) address: String,
    pub(crate) port: Option<u16>,
}

/// How long a master connection stays up after its last use when the
/// context's `ssh` table does not say (`persist`).
pub(crate) const DEFAULT_PERSIST: Duration = Duration::from_secs(60);

/// Connection options from the context's `ssh` table.
#[derive(Debug, Clone)]
pub(crate) struct SshOptions {
    pub(crate) config: Option<PathBuf>,
    pub(crate) known_hosts: Option<PathBuf>,
    pub(crate) identity: Option<PathBuf>,
    /// Idle time a master outlives the run by (`persist`); zero: closed at run end.
    pub(crate) persist: Duration,
    /// Connecting (TCP and the SSH banner) gives up after this long
    /// (`connect_timeout`, default 10 s).
    pub(crate) connect_timeout: Duration,
}

/// How long connecting to a host may take when the context's `ssh` table
/// does not say (`connect_timeout`).
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for SshOptions {
    fn default() -> Self {
        SshOptions {
            config: None,
            known_hosts: None,
            identity: None,
            persist: DEFAULT_PERSIST,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

/// The context's inventory.
#[derive(Debug, Clone, Default)]
pub(crate) struct Inventory {
    hosts: Map,
    groups: Map,
    pub(crate) options: SshOptions,
    context: String,
}

/// Parse `user@host:port`, `host:port`, `user@host` or `host`.
pub(crate) fn parse_destination(name: &str, text: &str) -> Result<Target, StdlibError> {
    let (user, rest) = match text.rsplit_once('@') {
        Some((user, rest)) => (Some(user.to_owned()), rest),
        None => (None, text),
    };
    let (address, port) = match rest.rsplit_once(':') {
        Some((address, port)) if !address.contains(':') => {
            let port = port.parse::<u16>().map_err(|_| {
                StdlibError::usage(
                    format!("host `{name}`: `{port}` in `{text}` is not a port number"),
                    "write hosts as `user@address:port`",
                )
            })?;
            (address.to_owned(), Some(port))
        }
        _ => (rest.to_owned(), None),
    };
    if address.is_empty() {
        return Err(StdlibError::usage(
            format!("host `{name}` has no address: `{text}`"),
            "write hosts as `user@address:port`",
        ));
    }
    Ok(Target {
        name: name.to_owned(),
        user,
        address,
        port,
    })
}

/// `persist = "60s"` in the `ssh` table: a duration string or whole seconds;
/// `"0"` turns persistence off.
fn persist(value: Option<&rhai::Dynamic>, context: &str) -> Result<Duration, StdlibError> {
    let Some(value) = value else {
        return Ok(DEFAULT_PERSIST);
    };
    let bad = |why: String| {
        StdlibError::usage(
            format!("context `{context}`: `ssh.persist` {why}"),
            format!(
                "write e.g. `persist = \"60s\"` (or `\"0\"` to close connections at the end of each run) under `[context.{context}.ssh]`"
            ),
        )
    };
    if let Ok(seconds) = value.as_int() {
        return u64::try_from(seconds)
            .map(Duration::from_secs)
            .map_err(|_| bad(format!("is {seconds}, a negative number of seconds")));
    }
    let text = value
        .clone()
        .into_string()
        .map_err(|_| bad("must be a duration string like \"60s\"".into()))?;
    crate::duration::parse(&text).map_err(|why| bad(format!("is not a duration: {why}")))
}

impl Inventory {
    /// The inventory of a context: its top level (`hosts`, `groups`) and
    /// its `ssh` table; a bad `ssh` table (`persist`) is an error.
    pub(crate) fn from_sections(top: &Section, ssh: &Section) -> Result<Inventory, StdlibError> {
        Ok(Inventory {
            hosts: top.table("hosts")?,
            groups: top.table("groups")?,
            options: SshOptions {
                config: ssh.path("config")?,
                known_hosts: ssh.path("known_hosts")?,
                identity: ssh.path("identity")?,
                persist: persist(ssh.get("persist"), top.context_name())?,
                connect_timeout: ssh
                    .duration("connect_timeout")?
                    .unwrap_or(DEFAULT_CONNECT_TIMEOUT)
                    .max(Duration::from_secs(1)),
            },
            context: top.context_name().to_owned(),
        })
    }

    /// The host names of a group, in inventory order.
    pub(crate) fn group(&self, group: &str) -> Result<Vec<String>, StdlibError> {
        let members = self.groups.get(group).ok_or_else(|| {
            let known: Vec<&str> = self.groups.keys().map(|key| &**key).collect();
            StdlibError::usage(
                format!("context `{}` has no host group `{group}`", self.context),
                if known.is_empty() {
                    format!("add `[context.{}.groups]` with `{group} = [\"host1\", ...]` to runbook.toml", self.context)
                } else {
                    format!("its groups are: {}", known.join(", "))
                },
            )
        })?;
        let members = members
            .read_lock::<Array>()
            .map(|array| array.clone())
            .unwrap_or_default();
        Ok(members
            .into_iter()
            .filter_map(|member| member.into_string().ok())
            .collect())
    }

    /// A host name, a group name or a literal `user@host:port` → targets.
    pub(crate) fn resolve(&self, name: &str) -> Result<Vec<Target>, StdlibError> {
        if let Some(destination) = self.hosts.get(name) {
            let text = destination.clone().into_string().map_err(|_| {
                StdlibError::usage(
                    format!("host `{name}` in the inventory is not a string"),
                    "write hosts as `name = \"user@address:port\"`",
                )
            })?;
            return Ok(vec![parse_destination(name, &text)?]);
        }
        if self.groups.contains_key(name) {
            return self
                .group(name)?
                .iter()
                .map(|member| self.resolve_host(member))
                .collect();
        }
        if name.contains('@') || name.contains(':') || name.contains('.') {
            return Ok(vec![parse_destination(name, name)?]);
        }
        Err(StdlibError::usage(
            format!(
                "`{name}` is not a host or group of context `{}`",
                self.context
            ),
            "use a name from the context's `hosts` or `groups`, or a literal `user@address:port`",
        ))
    }

    /// A single host (a group here is an error).
    pub(crate) fn resolve_host(&self, name: &str) -> Result<Target, StdlibError> {
        let mut targets = self.resolve(name)?;
        if targets.len() == 1 {
            Ok(targets.remove(0))
        } else {
            Err(StdlibError::usage(
                format!(
                    "`{name}` is a group of {} hosts; this call takes one host",
                    targets.len()
                ),
                "use `ssh::exec_all` for a group",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rhai::Dynamic;

    #[test]
    fn parses_destinations() {
        let target = parse_destination("web1", "deploy@10.0.0.1:2222").unwrap();
        assert_eq!(target.user.as_deref(), Some("deploy"));
        assert_eq!(target.address, "10.0.0.1");
        assert_eq!(target.port, Some(2222));
        let bare = parse_destination("db", "db.example.com").unwrap();
        assert_eq!(bare.user, None);
        assert_eq!(bare.port, None);
        assert!(parse_destination("x", "root@host:notaport").is_err());
    }

    #[test]
    fn resolves_names_groups_and_literals() {
        let mut hosts = Map::new();
        hosts.insert("a".into(), "root@127.0.0.1:22".into());
        hosts.insert("b".into(), "root@127.0.0.2:22".into());
        let mut groups = Map::new();
        groups.insert(
            "web".into(),
            Dynamic::from_array(vec!["a".into(), "b".into()]),
        );
        let mut context = Map::new();
        context.insert("hosts".into(), Dynamic::from_map(hosts));
        context.insert("groups".into(), Dynamic::from_map(groups));
        let context = Dynamic::from_map(context);
        let inventory =
            Inventory::from_sections(&Section::of(&context, ""), &Section::of(&context, "ssh"))
                .unwrap();
        assert_eq!(inventory.resolve("web").unwrap().len(), 2);
        assert_eq!(inventory.resolve_host("a").unwrap().address, "127.0.0.1");
        assert_eq!(
            inventory.resolve("me@10.1.1.1:2200").unwrap()[0].port,
            Some(2200)
        );
        assert!(inventory.resolve("nope").is_err());
        assert!(inventory.resolve_host("web").is_err());
        assert_eq!(inventory.options.persist, DEFAULT_PERSIST);
    }

    fn with_persist(value: Dynamic) -> Result<Inventory, StdlibError> {
        let mut ssh = Map::new();
        ssh.insert("persist".into(), value);
        let mut context = Map::new();
        context.insert("name".into(), "prod".into());
        context.insert("ssh".into(), Dynamic::from_map(ssh));
        let context = Dynamic::from_map(context);
        Inventory::from_sections(&Section::of(&context, ""), &Section::of(&context, "ssh"))
    }

    #[test]
    fn persist_is_a_duration_and_zero_turns_it_off() {
        let persist = |value: Dynamic| with_persist(value).unwrap().options.persist;
        assert_eq!(persist("5m".into()), Duration::from_secs(300));
        assert_eq!(persist("0".into()), Duration::ZERO);
        assert_eq!(persist(Dynamic::from_int(30)), Duration::from_secs(30));
        let error = with_persist("soon".into()).unwrap_err();
        assert!(error.to_string().contains("`ssh.persist`"), "{error}");
        assert!(error.to_string().contains("context `prod`"), "{error}");
        assert!(with_persist(Dynamic::from_int(-1)).is_err());
    }
}
