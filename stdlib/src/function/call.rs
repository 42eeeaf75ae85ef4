//! Argument access: one call in progress ([`Call`]), with typed getters whose
//! errors name the function and the parameter, options maps ([`Options`]) and
//! strings that may carry a secret ([`Text`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rhai::{Dynamic, FnPtr, Map, NativeCallContext};

use super::Function;
use crate::host::{Host, Secret, StdlibError};
use crate::values;

/// One call in progress: the host, the Rhai call context and the arguments,
/// with typed accessors that produce errors naming the function and parameter.
pub struct Call<'a> {
    /// The host the call runs under.
    pub host: &'a dyn Host,
    /// The Rhai context (engine, position) of the call.
    pub context: &'a NativeCallContext<'a>,
    pub(super) function: &'a Function,
    pub(super) args: Vec<Dynamic>,
}

impl<'a> Call<'a> {
    /// The function being called.
    pub fn function(&self) -> &Function {
        self.function
    }

    /// Number of arguments given.
    pub fn len(&self) -> usize {
        self.args.len()
    }

    /// Whether no arguments were given.
    pub fn is_empty(&self) -> bool {
        self.args.is_empty()
    }

    /// Argument `index` as given, `()` if absent.
    pub fn arg(&self, index: usize) -> Dynamic {
        self.args.get(index).cloned().unwrap_or(Dynamic::UNIT)
    }

    fn param_name(&self, index: usize) -> String {
        self.function
            .param(self.args.len(), index)
            .map_or_else(|| format!("#{}", index + 1), |param| param.name.to_owned())
    }

    /// An error about argument `index`.
    pub fn bad_arg(&self, index: usize, problem: impl Into<String>) -> StdlibError {
        StdlibError::Argument {
            function: self.function.qualified_name(),
            name: self.param_name(index),
            problem: problem.into(),
        }
    }

    fn expected(&self, index: usize, what: &str) -> StdlibError {
        let got = values::type_name(&self.arg(index));
        self.bad_arg(index, format!("must be {what}, got {got}"))
    }

    /// A string argument.
    pub fn string(&self, index: usize) -> Result<String, StdlibError> {
        let value = self.arg(index);
        if value.is_string() {
            Ok(value.into_string().unwrap_or_default())
        } else {
            Err(self.expected(index, "a string"))
        }
    }

    /// A string or a secret.
    pub fn text(&self, index: usize) -> Result<Text, StdlibError> {
        Text::from_dynamic(&self.arg(index))
            .ok_or_else(|| self.expected(index, "a string or a secret"))
    }

    /// An integer argument.
    pub fn int(&self, index: usize) -> Result<i64, StdlibError> {
        self.arg(index)
            .as_int()
            .map_err(|_| self.expected(index, "an integer"))
    }

    /// A map argument.
    pub fn map(&self, index: usize) -> Result<Map, StdlibError> {
        self.arg(index)
            .try_cast::<Map>()
            .ok_or_else(|| self.expected(index, "a map `#{...}`"))
    }

    /// A function pointer or closure argument.
    pub fn fn_ptr(&self, index: usize) -> Result<FnPtr, StdlibError> {
        self.arg(index)
            .try_cast::<FnPtr>()
            .ok_or_else(|| self.expected(index, "a closure `|| { ... }`"))
    }

    /// A duration: `"30s"`, `"5m"`, `"1h30m"` or a number of seconds.
    pub fn duration(&self, index: usize) -> Result<Duration, StdlibError> {
        values::to_duration(&self.arg(index)).map_err(|problem| self.bad_arg(index, problem))
    }

    /// The options map at `index`: empty when not given; an unknown key is an error
    /// that lists the known ones.
    pub fn options(&self, index: usize, known: &[&str]) -> Result<Options, StdlibError> {
        let value = self.arg(index);
        if value.is_unit() {
            return Ok(Options {
                function: self.function.qualified_name(),
                map: Map::new(),
            });
        }
        let map = self.map(index)?;
        if let Some(unknown) = map.keys().find(|key| !known.contains(&key.as_str())) {
            return Err(self.bad_arg(
                index,
                format!(
                    "has an unknown option `{unknown}`; known options: {}",
                    known.join(", ")
                ),
            ));
        }
        Ok(Options {
            function: self.function.qualified_name(),
            map,
        })
    }

    /// Wrap a value as a secret and make sure it is masked in all output from now on.
    pub fn secret(&self, text: impl Into<Arc<str>>) -> Secret {
        let secret = Secret::new(text);
        self.host.redactor().add(&secret.expose());
        secret
    }

    /// Run async work to completion from this (blocking) thread. Ctrl-C and
    /// step timeouts cancel it: the future is dropped, which kills child
    /// processes and closes connections.
    pub fn block_on<T>(
        &self,
        work: impl Future<Output = Result<T, StdlibError>>,
    ) -> Result<T, StdlibError> {
        let token = self.host.cancellation();
        if token.is_cancelled() {
            return Err(self.host.cancel_reason());
        }
        let outcome = self.host.runtime().block_on(async {
            tokio::select! {
                biased;
                () = token.cancelled() => None,
                result = work => Some(result),
            }
        });
        outcome.unwrap_or_else(|| Err(self.host.cancel_reason()))
    }

    /// Run async work to completion from this (blocking) thread, handing it
    /// the cancellation token instead of dropping it when Ctrl-C or a step
    /// timeout cancels: for work that must see its remote side end before
    /// the run goes on (ssh closes the channel's stdin so the host kills the
    /// command, then waits for the command's end). The work must end soon by
    /// itself once the token is cancelled.
    pub fn block_on_cancellable<T, F>(
        &self,
        work: impl FnOnce(tokio_util::sync::CancellationToken) -> F,
    ) -> Result<T, StdlibError>
    where
        F: Future<Output = Result<T, StdlibError>>,
    {
        let token = self.host.cancellation();
        if token.is_cancelled() {
            return Err(self.host.cancel_reason());
        }
        self.host.runtime().block_on(work(token))
    }

    /// Call a closure the script passed in, with the given arguments.
    pub fn call_fn(
        &self,
        closure: &FnPtr,
        args: Vec<Dynamic>,
    ) -> Result<Dynamic, Box<rhai::EvalAltResult>> {
        closure.call_raw(self.context, None, args)
    }
}

/// A string that may carry a secret: its text goes to processes and servers,
/// its display is masked.
#[derive(Clone, Debug)]
pub enum Text {
    /// A plain string.
    Plain(String),
    /// A secret (or a string built from one).
    Secret(Secret),
}

impl Text {
    /// A string or a secret; `None` for other types.
    pub fn from_dynamic(value: &Dynamic) -> Option<Self> {
        if value.is_string() {
            return value.clone().into_string().ok().map(Text::Plain);
        }
        if let Some(unknown) = value.read_lock::<crate::unknown::Unknown>() {
            return Some(Text::Plain(unknown.to_string()));
        }
        value
            .read_lock::<Secret>()
            .map(|secret| Text::Secret((*secret).clone()))
    }

    /// The real text, for handing to a process or server.
    pub fn expose(&self) -> String {
        match self {
            Text::Plain(text) => text.clone(),
            Text::Secret(secret) => secret.expose(),
        }
    }

    /// Whether the text carries a secret.
    pub fn is_secret(&self) -> bool {
        matches!(self, Text::Secret(_))
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Text::Plain(text) => f.write_str(text),
            Text::Secret(secret) => write!(f, "{secret}"),
        }
    }
}

/// An options map with typed getters whose errors name the function and option.
#[derive(Debug, Clone)]
pub struct Options {
    function: String,
    map: Map,
}

impl Options {
    fn problem(&self, key: &str, problem: &str) -> StdlibError {
        StdlibError::Argument {
            function: self.function.clone(),
            name: format!("opts.{key}"),
            problem: problem.to_owned(),
        }
    }

    fn wrong(&self, key: &str, expected: &str, value: &Dynamic) -> StdlibError {
        self.problem(
            key,
            &format!("must be {expected}, got {}", values::type_name(value)),
        )
    }

    /// The raw value, if given.
    pub fn get(&self, key: &str) -> Option<&Dynamic> {
        self.map.get(key).filter(|value| !value.is_unit())
    }

    /// A boolean option.
    pub fn bool(&self, key: &str) -> Result<Option<bool>, StdlibError> {
        self.get(key)
            .map(|value| {
                value
                    .as_bool()
                    .map_err(|_| self.wrong(key, "true or false", value))
            })
            .transpose()
    }

    /// An integer option.
    pub fn int(&self, key: &str) -> Result<Option<i64>, StdlibError> {
        self.get(key)
            .map(|value| {
                value
                    .as_int()
                    .map_err(|_| self.wrong(key, "an integer", value))
            })
            .transpose()
    }

    /// A string option.
    pub fn string(&self, key: &str) -> Result<Option<String>, StdlibError> {
        self.get(key)
            .map(|value| {
                value
                    .clone()
                    .into_string()
                    .map_err(|_| self.wrong(key, "a string", value))
            })
            .transpose()
    }

    /// A string-or-secret option.
    pub fn text(&self, key: &str) -> Result<Option<Text>, StdlibError> {
        self.get(key)
            .map(|value| {
                Text::from_dynamic(value)
                    .ok_or_else(|| self.wrong(key, "a string or a secret", value))
            })
            .transpose()
    }

    /// A duration option (`"30s"` or seconds).
    pub fn duration(&self, key: &str) -> Result<Option<Duration>, StdlibError> {
        self.get(key)
            .map(|value| values::to_duration(value).map_err(|problem| self.problem(key, &problem)))
            .transpose()
    }

    /// A map option.
    pub fn map(&self, key: &str) -> Result<Option<Map>, StdlibError> {
        self.get(key)
            .map(|value| {
                value
                    .clone()
                    .try_cast::<Map>()
                    .ok_or_else(|| self.wrong(key, "a map", value))
            })
            .transpose()
    }
}
