//! Contexts: named environments (`lab`, `staging`, `production`) read from
//! `runbook.toml`. A context says where things are (kube context, hosts, S3,
//! hcloud) and where secrets come from; secret values never live in the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rhai::{Dynamic, Map};
use runbook_stdlib::{Secret, StdlibError};

/// The file name searched for upward from the runbook's folder, then the working directory.
pub const FILE_NAME: &str = "runbook.toml";

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{path}` is not valid TOML: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("`{path}`: context `{context}` has an unknown key `{key}` (known: {known})")]
    UnknownKey {
        path: PathBuf,
        context: String,
        key: String,
        known: String,
    },
    #[error("`{path}`: `{field}` {problem}")]
    Invalid {
        path: PathBuf,
        field: String,
        problem: String,
    },
    #[error("no context `{name}` in `{path}`; it has: {available}")]
    Unknown {
        name: String,
        path: PathBuf,
        available: String,
    },
    #[error("context `{name}` was asked for, but no runbook.toml was found")]
    NoFile { name: String },
}

/// What a value of a known context key must be, as people read it.
fn expected(key: &str) -> Option<&'static str> {
    Some(match key {
        "description" | "namespace" | "kube_context" | "kubeconfig" | "kube_timeout" => "a string",
        "protected" | "four_eyes" | "unattended" => "true or false",
        "journal" => "a string `s3://BUCKET/PREFIX`",
        "hosts" => "a table of `name = \"user@host:port\"`",
        "groups" => "a table of `name = [\"host\", ...]`",
        "secrets" => "a table of `name = \"env:VAR\"` or `\"file:PATH\"`",
        "vars" | "ssh" | "s3" | "pg" | "http" | "notify" | "hcloud" => {
            "a table `[context.NAME.KEY]`"
        }
        _ => return None,
    })
}

fn type_name(value: &toml::Value) -> &'static str {
    match value {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a number",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

/// Whether `value` has the shape `key` needs.
fn fits(key: &str, value: &toml::Value) -> bool {
    match key {
        "description" | "namespace" | "kube_context" | "kubeconfig" | "journal" => value.is_str(),
        "unattended" => value.is_bool(),
        "kube_timeout" => value.is_str() || value.is_integer(),
        "protected" | "four_eyes" => value.is_bool(),
        "hosts" | "secrets" => value
            .as_table()
            .is_some_and(|table| table.values().all(toml::Value::is_str)),
        "groups" => value.as_table().is_some_and(|table| {
            table.values().all(|members| {
                members
                    .as_array()
                    .is_some_and(|members| members.iter().all(toml::Value::is_str))
            })
        }),
        _ => value.is_table(),
    }
}

/// `line:column` of `key` in `[context.NAME]` (or `[context.NAME.key]`), if it can be found.
fn locate(text: &str, context: &str, key: &str) -> Option<(usize, usize)> {
    let header = format!("[context.{context}]");
    let sub_header = format!("[context.{context}.{key}]");
    let mut inside = false;
    for (number, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            if trimmed == sub_header {
                return Some((number + 1, line.find('[').unwrap_or(0) + 1));
            }
            inside = trimmed == header;
            continue;
        }
        if inside
            && let Some(rest) = trimmed.strip_prefix(key)
            && rest.trim_start().starts_with('=')
        {
            return Some((number + 1, line.find(key).unwrap_or(0) + 1));
        }
    }
    None
}

/// Every known key of a context has the right type, or an error at its line.
fn check_types(
    path: &Path,
    text: &str,
    context: &str,
    table: &toml::Table,
) -> Result<(), ContextError> {
    for (key, value) in table {
        let Some(wanted) = expected(key) else {
            continue;
        };
        if fits(key, value) {
            continue;
        }
        // A table with one bad entry: name the entry, at its own line.
        if let Some(entries) = value.as_table()
            && let Some((entry, bad)) = entries.iter().find(|(_, item)| {
                if key == "groups" {
                    !item
                        .as_array()
                        .is_some_and(|items| items.iter().all(toml::Value::is_str))
                } else {
                    !item.is_str()
                }
            })
        {
            let at = locate(text, &format!("{context}.{key}"), entry).map_or_else(
                || path.to_owned(),
                |(line, column)| PathBuf::from(format!("{}:{line}:{column}", path.display())),
            );
            let wanted = if key == "groups" {
                "an array of host names"
            } else {
                "a string"
            };
            return Err(ContextError::Invalid {
                path: at,
                field: format!("context.{context}.{key}.{entry}"),
                problem: format!("must be {wanted}, got {}", type_name(bad)),
            });
        }
        let at = locate(text, context, key).map_or_else(
            || path.to_owned(),
            |(line, column)| PathBuf::from(format!("{}:{line}:{column}", path.display())),
        );
        return Err(ContextError::Invalid {
            path: at,
            field: format!("context.{context}.{key}"),
            problem: format!("must be {wanted}, got {}", type_name(value)),
        });
    }
    Ok(())
}

impl ContextError {
    pub fn hint(&self) -> Option<String> {
        match self {
            ContextError::Unknown { .. } => Some("pass one of those names to --context".into()),
            ContextError::NoFile { .. } => Some(format!(
                "create {FILE_NAME} next to the runbook or in a parent folder, or set RUNBOOK_CONFIG to its path"
            )),
            ContextError::UnknownKey { .. } => {
                Some("fix the spelling, or move free-form values under `vars`".into())
            }
            _ => None,
        }
    }
}

impl From<ContextError> for crate::error::Diagnostic {
    fn from(error: ContextError) -> Self {
        let diagnostic =
            crate::error::Diagnostic::new(error.to_string(), crate::error::Exit::Usage);
        match error.hint() {
            Some(hint) => diagnostic.hint(hint),
            None => diagnostic,
        }
    }
}

/// A loaded `runbook.toml`.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub default_context: Option<String>,
    pub contexts: BTreeMap<String, toml::Table>,
}

/// The active context of a run.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub name: Option<String>,
    pub protected: bool,
    /// `four_eyes = true`: the person who started a run cannot approve its gates.
    pub four_eyes: bool,
    /// The file the context came from (secret `file:` paths are relative to it).
    pub source: Option<PathBuf>,
    table: toml::Table,
    secrets: BTreeMap<String, String>,
}

impl Config {
    /// Find `runbook.toml`: `$RUNBOOK_CONFIG`, else upward from each start folder in turn.
    pub fn find(starts: &[&Path]) -> Result<Option<Config>, ContextError> {
        if let Some(path) = std::env::var_os("RUNBOOK_CONFIG").filter(|value| !value.is_empty()) {
            return Config::load(Path::new(&path)).map(Some);
        }
        for start in starts {
            let start = std::path::absolute(start).unwrap_or_else(|_| start.to_path_buf());
            for folder in start.ancestors() {
                let candidate = folder.join(FILE_NAME);
                if candidate.is_file() {
                    return Config::load(&candidate).map(Some);
                }
            }
        }
        Ok(None)
    }

    pub fn load(path: &Path) -> Result<Config, ContextError> {
        let text = std::fs::read_to_string(path).map_err(|source| ContextError::Read {
            path: path.to_owned(),
            source,
        })?;
        let table: toml::Table =
            text.parse()
                .map_err(|error: toml::de::Error| ContextError::Parse {
                    path: path.to_owned(),
                    message: error.to_string(),
                })?;
        let mut contexts = BTreeMap::new();
        let mut default_context = None;
        for (key, value) in table {
            match (key.as_str(), value) {
                ("default_context", toml::Value::String(name)) => default_context = Some(name),
                ("context", toml::Value::Table(entries)) => {
                    for (name, value) in entries {
                        let toml::Value::Table(context) = value else {
                            return Err(ContextError::Invalid {
                                path: path.to_owned(),
                                field: format!("context.{name}"),
                                problem: "must be a table `[context.NAME]`".into(),
                            });
                        };
                        // Keys come from the module registry; anything else is a typo worth reporting.
                        let known = runbook_stdlib::context_keys();
                        if let Some(key) = context.keys().find(|key| !known.contains(&key.as_str()))
                        {
                            return Err(ContextError::UnknownKey {
                                path: path.to_owned(),
                                context: name,
                                key: key.clone(),
                                known: known.join(", "),
                            });
                        }
                        check_types(path, &text, &name, &context)?;
                        contexts.insert(name, context);
                    }
                }
                (other, _) => {
                    return Err(ContextError::Invalid {
                        path: path.to_owned(),
                        field: other.to_owned(),
                        problem: "is not a known top-level key (expected `default_context` or `[context.NAME]`)".into(),
                    });
                }
            }
        }
        Ok(Config {
            path: path.to_owned(),
            default_context,
            contexts,
        })
    }

    /// The variables named by an `env:` secret source in any context.
    pub fn secret_env_vars(&self) -> Vec<String> {
        self.contexts
            .values()
            .filter_map(|table| table.get("secrets").and_then(toml::Value::as_table))
            .flat_map(|secrets| secrets.values())
            .filter_map(toml::Value::as_str)
            .filter_map(|source| source.strip_prefix("env:"))
            .map(str::to_owned)
            .collect()
    }

    pub fn context(&self, name: &str) -> Result<Context, ContextError> {
        let table = self
            .contexts
            .get(name)
            .cloned()
            .ok_or_else(|| ContextError::Unknown {
                name: name.to_owned(),
                path: self.path.clone(),
                available: if self.contexts.is_empty() {
                    "no contexts".into()
                } else {
                    self.contexts.keys().cloned().collect::<Vec<_>>().join(", ")
                },
            })?;
        let invalid = |field: &str, problem: &str| ContextError::Invalid {
            path: self.path.clone(),
            field: format!("context.{name}.{field}"),
            problem: problem.to_owned(),
        };
        let protected = match table.get("protected") {
            None => false,
            Some(toml::Value::Boolean(value)) => *value,
            Some(_) => return Err(invalid("protected", "must be true or false")),
        };
        let four_eyes = match table.get("four_eyes") {
            None => false,
            Some(toml::Value::Boolean(value)) => *value,
            Some(_) => return Err(invalid("four_eyes", "must be true or false")),
        };
        let mut secrets = BTreeMap::new();
        if let Some(value) = table.get("secrets") {
            let toml::Value::Table(entries) = value else {
                return Err(invalid(
                    "secrets",
                    "must be a table of NAME = \"env:VAR\" | \"file:PATH\"",
                ));
            };
            for (secret, source) in entries {
                let toml::Value::String(source) = source else {
                    return Err(invalid(
                        &format!("secrets.{secret}"),
                        "must be a string like \"env:VAR\"",
                    ));
                };
                if !(source.starts_with("env:") || source.starts_with("file:")) {
                    return Err(invalid(
                        &format!("secrets.{secret}"),
                        "must start with `env:` or `file:` (secret values never live in runbook.toml)",
                    ));
                }
                secrets.insert(secret.clone(), source.clone());
            }
        }
        Ok(Context {
            name: Some(name.to_owned()),
            protected,
            four_eyes,
            source: Some(self.path.clone()),
            table,
            secrets,
        })
    }
}

/// Pick the context for a run: `--context`, else `$RUNBOOK_CONTEXT`, else the
/// file's `default_context`, else none.
pub fn resolve(requested: Option<&str>, starts: &[&Path]) -> Result<Context, ContextError> {
    let config = Config::find(starts)?;
    let name = requested.map(str::to_owned).or_else(|| {
        config
            .as_ref()
            .and_then(|config| config.default_context.clone())
    });
    if let Some(config) = &config {
        // Children never inherit the variables any context of the file reads
        // secrets from: a run in `lab` must not hand `production`'s on.
        runbook_stdlib::child::hide_env(config.secret_env_vars());
    }
    match (name, config) {
        (None, _) => Ok(Context::default()),
        (Some(name), None) => Err(ContextError::NoFile { name }),
        (Some(name), Some(config)) => {
            let context = config.context(&name)?;
            // Children never inherit the variables the context reads secrets from.
            runbook_stdlib::child::hide_env(context.secret_env_vars());
            Ok(context)
        }
    }
}

impl Context {
    /// A key of the context's table (`journal`, `s3`, ...), as written.
    pub fn value(&self, key: &str) -> Option<&toml::Value> {
        self.table.get(key)
    }

    /// The context's secrets and their sources (`env:VAR`, `file:PATH`).
    pub fn secret_sources(&self) -> Vec<(String, String)> {
        self.secrets
            .iter()
            .map(|(name, source)| (name.clone(), source.clone()))
            .collect()
    }

    /// Whether the context's `secrets` table names `name`.
    pub fn has_secret(&self, name: &str) -> bool {
        self.secrets.contains_key(name)
    }

    /// The variables named by the context's `env:` secret sources.
    pub fn secret_env_vars(&self) -> Vec<String> {
        self.secrets
            .values()
            .filter_map(|source| source.strip_prefix("env:"))
            .map(str::to_owned)
            .collect()
    }

    /// The context as the script sees it through `context()`: every key of the
    /// table plus `name`; secret sources are listed by name only.
    pub fn to_dynamic(&self) -> Dynamic {
        let mut map = Map::new();
        for (key, value) in &self.table {
            if key == "secrets" {
                let names: rhai::Array = self
                    .secrets
                    .keys()
                    .map(|name| Dynamic::from(name.clone()))
                    .collect();
                map.insert("secrets".into(), Dynamic::from_array(names));
            } else {
                map.insert(key.as_str().into(), toml_to_dynamic(value));
            }
        }
        map.insert(
            "name".into(),
            self.name.clone().map_or(Dynamic::UNIT, Dynamic::from),
        );
        map.insert("protected".into(), Dynamic::from_bool(self.protected));
        Dynamic::from_map(map)
    }

    /// Resolve a secret named in the context's `secrets` table.
    pub fn secret(&self, name: &str) -> Result<Secret, StdlibError> {
        let Some(source) = self.secrets.get(name) else {
            let context = self.name.as_deref().unwrap_or("(none)");
            return Err(StdlibError::usage(
                format!("context `{context}` has no secret `{name}`"),
                format!(
                    "add `{name} = \"env:VAR\"` under [context.{context}.secrets] in runbook.toml"
                ),
            ));
        };
        if let Some(variable) = source.strip_prefix("env:") {
            return match std::env::var(variable) {
                Ok(value) if !value.is_empty() => Ok(Secret::new(value)),
                _ => Err(StdlibError::usage(
                    format!(
                        "secret `{name}` comes from the environment variable `{variable}`, which is not set"
                    ),
                    format!("export {variable}=... before the run"),
                )),
            };
        }
        if let Some(path) = source.strip_prefix("file:") {
            let base = self
                .source
                .as_deref()
                .and_then(Path::parent)
                .unwrap_or(Path::new("."));
            let path = base.join(path);
            return std::fs::read_to_string(&path)
                .map(|text| Secret::new(text.trim_end_matches(['\n', '\r'])))
                .map_err(|error| {
                    StdlibError::usage(
                        format!("secret `{name}`: cannot read `{}`: {error}", path.display()),
                        "check the `file:` path in runbook.toml (relative paths start at that file's folder)",
                    )
                });
        }
        Err(StdlibError::message(format!(
            "secret `{name}` has an unknown source `{source}`"
        )))
    }
}

fn toml_to_dynamic(value: &toml::Value) -> Dynamic {
    match value {
        toml::Value::String(text) => Dynamic::from(text.clone()),
        toml::Value::Integer(number) => Dynamic::from_int(*number),
        toml::Value::Float(number) => Dynamic::from_float(*number),
        toml::Value::Boolean(flag) => Dynamic::from_bool(*flag),
        toml::Value::Datetime(datetime) => Dynamic::from(datetime.to_string()),
        toml::Value::Array(items) => {
            Dynamic::from_array(items.iter().map(toml_to_dynamic).collect())
        }
        toml::Value::Table(table) => Dynamic::from_map(
            table
                .iter()
                .map(|(key, value)| (key.as_str().into(), toml_to_dynamic(value)))
                .collect(),
        ),
    }
}
