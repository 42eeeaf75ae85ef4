//! Which database, and how to reach it: a URL (`postgres://user@host:port/db`)
//! or libpq key-value string, a bare database name on the server of the
//! context's `pg.url`, or nothing (the context's `pg.url` itself). The
//! password comes from the URL or the context's secret `pg_password`.
//!
//! PostgreSQL's own tools (`pg_dump`, `pg_restore`) get the connection
//! through `PG*` environment variables, never argv, so a password never shows
//! in the process list. They are found in the context's `pg.bin_dir`, else
//! on PATH.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{Client, NoTls};

use crate::function::{Call, Text};
use crate::host::StdlibError;

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A database to connect to.
#[derive(Clone)]
pub(crate) struct Database {
    pub(crate) config: tokio_postgres::Config,
    /// The context's name, for hints.
    pub(crate) context: String,
    bin_dir: Option<PathBuf>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display())
    }
}

impl Database {
    /// The database named by `value` (a URL, a key-value string, a bare name,
    /// or `None`/empty for the context's `pg.url`).
    pub(crate) fn resolve(call: &Call<'_>, value: Option<&Text>) -> Result<Database, StdlibError> {
        Self::resolve_with(call, value, false)
    }

    /// The database an argument names: `()`, a url or name (string or
    /// secret), or a map of connection details ([`Database::resolve_map`]).
    pub(crate) fn resolve_value(
        call: &Call<'_>,
        value: &rhai::Dynamic,
        read: bool,
        index: usize,
    ) -> Result<Database, StdlibError> {
        if value.is_unit() {
            return Self::resolve_with(call, None, read);
        }
        if let Some(map) = value.read_lock::<rhai::Map>() {
            return Self::resolve_map(call, &map, read);
        }
        let text = Text::from_dynamic(value).ok_or_else(|| {
            call.bad_arg(
                index,
                format!(
                    "must be a url, a database name, a map of connection details or (), got {}",
                    crate::values::type_name(value)
                ),
            )
        })?;
        Self::resolve_with(call, Some(&text), read)
    }

    /// A database given as a map of connection details: `url` (or
    /// `DATABASE_URL`), `host`, `port`, `user` (or `username`), `password`
    /// (a secret), `database` (or `dbname`); what is missing comes from the
    /// url, else the context's `pg.url`. The values of an app's Secret
    /// (`k8s::secret("app-db")`, with `username`, `password`,
    /// `DATABASE_URL`) work as they are.
    pub(crate) fn resolve_map(
        call: &Call<'_>,
        map: &rhai::Map,
        read: bool,
    ) -> Result<Database, StdlibError> {
        const KNOWN: &[&str] = &[
            "url",
            "DATABASE_URL",
            "host",
            "port",
            "user",
            "username",
            "password",
            "database",
            "dbname",
        ];
        let text = |keys: &[&str]| -> Result<Option<Text>, StdlibError> {
            for key in keys {
                if let Some(value) = map.get(*key) {
                    if value.is_unit() {
                        continue;
                    }
                    return Text::from_dynamic(value).map(Some).ok_or_else(|| {
                        StdlibError::usage(
                            format!(
                                "pg: connection detail `{key}` must be a string or a secret, got {}",
                                crate::values::type_name(value)
                            ),
                            "pass `#{host, port, user, password, database}` or `#{url}`",
                        )
                    });
                }
            }
            Ok(None)
        };
        if !map.keys().any(|key| KNOWN.contains(&key.as_str())) {
            return Err(StdlibError::usage(
                "pg: the map names no connection detail",
                format!("use any of: {}", KNOWN.join(", ")),
            ));
        }
        let url = text(&["url", "DATABASE_URL"])?;
        let mut database = Self::resolve_with(call, url.as_ref(), read)?;
        if let Some(host) = text(&["host"])? {
            database.config.host(host.expose());
        }
        if let Some(port) = map.get("port") {
            let port = port
                .as_int()
                .ok()
                .or_else(|| port.clone().into_string().ok().and_then(|p| p.parse().ok()))
                .and_then(|port| u16::try_from(port).ok())
                .ok_or_else(|| {
                    StdlibError::usage(
                        "pg: connection detail `port` must be a port number",
                        "e.g. `port: 5432`",
                    )
                })?;
            database.config.port(port);
        }
        if let Some(user) = text(&["user", "username"])? {
            database.config.user(user.expose());
        }
        if let Some(password) = text(&["password"])? {
            let password = password.expose();
            call.host.redactor().add(&password);
            database.config.password(password);
        }
        if let Some(name) = text(&["database", "dbname"])? {
            database.config.dbname(name.expose());
        }
        Ok(database)
    }

    fn resolve_with(
        call: &Call<'_>,
        value: Option<&Text>,
        read: bool,
    ) -> Result<Database, StdlibError> {
        let top = call.host.section("");
        let table = call.host.section("pg");
        let name = table.context_name().to_owned();
        let context_url = || {
            let read_url = if read {
                table.string("read_url")?
            } else {
                None
            };
            read_url.map_or_else(|| table.string("url"), |url| Ok(Some(url)))?.ok_or_else(|| {
                StdlibError::usage(
                    format!("context `{name}` has no PostgreSQL url"),
                    format!(
                        "add `[context.{name}.pg]` with `url = \"postgres://user@host:5432/db\"` to runbook.toml, or pass a full url"
                    ),
                )
            })
        };
        let given = value
            .map(Text::expose)
            .filter(|text| !text.trim().is_empty());
        let (conninfo, rename) = match given {
            None => (context_url()?, None),
            Some(text) if text.contains("://") || text.contains('=') => (text, None),
            Some(database) => (context_url()?, Some(database)),
        };
        let mut config = tokio_postgres::Config::from_str(&conninfo).map_err(|error| {
            StdlibError::usage(
                format!(
                    "`{}` is not a PostgreSQL connection string: {error}",
                    mask_url(&conninfo)
                ),
                "use `postgres://user@host:port/database` or `host=... dbname=...`",
            )
        })?;
        if let Some(database) = rename {
            config.dbname(&database);
        }
        if config.get_password().is_none() && top.has_secret("pg_password") {
            let password = call.host.secret("pg_password")?.expose();
            call.host.redactor().add(&password);
            config.password(password);
        }
        if let Some(password) = config.get_password() {
            call.host.redactor().add(&String::from_utf8_lossy(password));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.application_name("runbook");
        Ok(Database {
            config,
            context: name,
            bin_dir: table.path("bin_dir")?,
        })
    }

    /// The database's name (libpq's default: the user's name).
    pub(crate) fn name(&self) -> String {
        self.config
            .get_dbname()
            .or(self.config.get_user())
            .unwrap_or("postgres")
            .to_owned()
    }

    /// The same server, another database.
    pub(crate) fn with_name(&self, database: &str) -> Database {
        let mut other = self.clone();
        other.config.dbname(database);
        other
    }

    fn hosts(&self) -> String {
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .map(|host| match host {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        if hosts.is_empty() {
            "localhost".into()
        } else {
            hosts.join(",")
        }
    }

    fn ports(&self) -> String {
        let ports: Vec<String> = self.config.get_ports().iter().map(u16::to_string).collect();
        if ports.is_empty() {
            "5432".into()
        } else {
            ports.join(",")
        }
    }

    /// `postgres://user@host:port/db`, without the password: for messages and manifests.
    pub(crate) fn display(&self) -> String {
        format!(
            "postgres://{}{}:{}/{}",
            self.config
                .get_user()
                .map(|user| format!("{user}@"))
                .unwrap_or_default(),
            self.hosts(),
            self.ports(),
            self.name()
        )
    }

    /// Refuse TLS modes the driver here cannot do yet.
    fn check_tls(&self) -> Result<(), StdlibError> {
        match self.config.get_ssl_mode() {
            SslMode::Disable | SslMode::Prefer => Ok(()),
            _ => Err(StdlibError::usage(
                format!(
                    "`{}` asks for TLS (sslmode=require), which runbook's PostgreSQL driver does not do yet",
                    self.display()
                ),
                "connect over a trusted network or an ssh tunnel with sslmode=prefer or disable",
            )),
        }
    }

    /// Connect with the driver; the connection lives until the client is dropped.
    pub(crate) async fn connect(&self) -> Result<Client, StdlibError> {
        self.check_tls()?;
        // libpq's connect_timeout covers the TCP connect only; a server that
        // accepts and never answers would hang the startup forever.
        let limit = self
            .config
            .get_connect_timeout()
            .copied()
            .unwrap_or(CONNECT_TIMEOUT);
        let (client, connection) = tokio::time::timeout(limit, self.config.connect(NoTls))
            .await
            .map_err(|_| {
                StdlibError::failed(
                    format!(
                        "pg: no answer from PostgreSQL at `{}` within {}",
                        self.display(),
                        crate::duration::human(limit)
                    ),
                    format!(
                        "is it PostgreSQL listening on {}:{}, and is it up? `connect_timeout` in the url (seconds) raises the wait",
                        self.hosts(),
                        self.ports()
                    ),
                )
            })?
            .map_err(|error| self.error("connect to", &error))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// A driver error as a message naming the database, with a hint.
    pub(crate) fn error(&self, action: &str, error: &tokio_postgres::Error) -> StdlibError {
        let detail = match error.as_db_error() {
            Some(db) => {
                let mut text = format!("{}: {}", db.severity(), db.message());
                if let Some(detail) = db.detail() {
                    text.push_str(&format!(" ({detail})"));
                }
                text
            }
            None => crate::text::error_chain(error),
        };
        let lower = detail.to_lowercase();
        let hint = if lower.contains("password authentication failed")
            || lower.contains("no password")
            || lower.contains("authentication")
        {
            format!(
                "check the user and password: in the url, or the secret `pg_password` of context `{}`",
                self.context
            )
        } else if lower.contains("does not exist") && lower.contains("database") {
            "check the database name; `pg::query(\"postgres\", \"select datname from pg_database\")` lists them".to_owned()
        } else if lower.contains("refused")
            || lower.contains("timed out")
            || lower.contains("timeout")
            || lower.contains("error connecting")
            || lower.contains("resolve")
        {
            format!(
                "is PostgreSQL up and listening on {}:{}? check `pg.url` of context `{}`",
                self.hosts(),
                self.ports(),
                self.context
            )
        } else if lower.contains("connection closed") || lower.contains("terminating connection") {
            "the server ended the connection (a restart, a failover, or pg_terminate_backend): the open transaction was rolled back; check the server's log, then run it again".to_owned()
        } else {
            "the server refused the statement; its message says why".to_owned()
        };
        StdlibError::failed(
            format!("pg: cannot {action} `{}`: {detail}", self.display()),
            hint,
        )
    }

    /// The `PG*` variables that connect PostgreSQL's tools to this database.
    pub(crate) fn tool_env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("PGHOST", self.hosts()),
            ("PGPORT", self.ports()),
            ("PGDATABASE", self.name()),
            ("PGAPPNAME", "runbook".to_owned()),
            (
                "PGCONNECT_TIMEOUT",
                self.config
                    .get_connect_timeout()
                    .map_or(10, Duration::as_secs)
                    .max(2)
                    .to_string(),
            ),
            (
                "PGSSLMODE",
                match self.config.get_ssl_mode() {
                    SslMode::Disable => "disable",
                    SslMode::Require => "require",
                    _ => "prefer",
                }
                .to_owned(),
            ),
        ];
        if let Some(user) = self.config.get_user() {
            env.push(("PGUSER", user.to_owned()));
        }
        if let Some(password) = self.config.get_password() {
            env.push(("PGPASSWORD", String::from_utf8_lossy(password).into_owned()));
        }
        env
    }

    /// The path of one of PostgreSQL's programs: `pg.bin_dir/NAME`, else NAME on PATH.
    pub(crate) fn tool(&self, name: &str) -> PathBuf {
        match &self.bin_dir {
            Some(dir) => dir.join(name),
            None => PathBuf::from(name),
        }
    }

    /// A command for one of PostgreSQL's programs, connected to this database
    /// through the environment (nothing secret in argv).
    pub(crate) fn command(&self, name: &str) -> tokio::process::Command {
        let mut command = crate::child::command(self.tool(name));
        for variable in ["PGSERVICE", "PGSERVICEFILE", "PGOPTIONS", "PGPASSFILE"] {
            command.env_remove(variable);
        }
        command.envs(self.tool_env());
        command.kill_on_drop(true);
        command
    }

    /// The error for a program that would not start.
    pub(crate) fn spawn_error(&self, name: &str, error: &std::io::Error) -> StdlibError {
        let program = self.tool(name);
        if error.kind() == std::io::ErrorKind::NotFound {
            StdlibError::failed(
                format!("pg: cannot find `{}`", program.display()),
                format!(
                    "install PostgreSQL's client programs, or set `bin_dir` in `[context.{}.pg]` to the folder holding {name} (e.g. /usr/lib/postgresql/15/bin); its major version must be at least the server's",
                    self.context
                ),
            )
        } else {
            StdlibError::failed(
                format!("pg: cannot run `{}`: {error}", program.display()),
                format!("check `bin_dir` in `[context.{}.pg]`", self.context),
            )
        }
    }
}

/// A URL with its password replaced by `***`, for messages.
fn mask_url(text: &str) -> String {
    if let Some((scheme, rest)) = text.split_once("://")
        && let Some((userinfo, host)) = rest.split_once('@')
        && let Some((user, _)) = userinfo.split_once(':')
    {
        return format!("{scheme}://{user}:***@{host}");
    }
    if text.contains("password") {
        return "(connection string with a password)".into();
    }
    text.to_owned()
}

/// Quote an identifier for SQL: `"name"` with embedded quotes doubled.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_passwords_in_urls() {
        assert_eq!(
            mask_url("postgres://app:hunter2@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(mask_url("postgres://app@db/x"), "postgres://app@db/x");
    }

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }
}
