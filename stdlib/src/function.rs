//! The one way a function enters the standard library.
//!
//! Every function is a [`Function`]: module, name, parameters, return type,
//! doc comment and [`Effect`], built with the [`function!`](crate::function!)
//! macro, which does not compile without a `///` doc comment and an effect.
//! [`install`] wraps each body so that the [`Host`] decides on every call
//! before the body runs: the gate lives here, not in the bodies.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::{Dynamic, Engine, FnNamespace, FnPtr, FuncRegistration, Map, Module, NativeCallContext};

use crate::host::{CallInfo, Decision, Effect, Host, Outcome, Secret, StdlibError};
use crate::values;

/// A function body: typed access to its arguments through [`Call`].
pub type Body = Arc<dyn Fn(&mut Call<'_>) -> Result<Dynamic, Failure> + Send + Sync>;

/// Why a body failed: a stdlib error (shown at the call's position), or an
/// error raised by a closure the script passed in (shown where it happened).
#[derive(Debug)]
pub enum Failure {
    /// The function itself failed.
    Stdlib(StdlibError),
    /// A script closure called by the function failed.
    Script(Box<rhai::EvalAltResult>),
}

impl From<StdlibError> for Failure {
    fn from(error: StdlibError) -> Self {
        Failure::Stdlib(error)
    }
}

impl From<Box<rhai::EvalAltResult>> for Failure {
    fn from(error: Box<rhai::EvalAltResult>) -> Self {
        // A stdlib error raised inside a closure keeps its own position.
        Failure::Script(error)
    }
}

impl Failure {
    fn message(&self) -> String {
        match self {
            Failure::Stdlib(error) => error.to_string(),
            Failure::Script(error) => match StdlibError::from_rhai(error) {
                Some(inner) => inner.to_string(),
                None => error.to_string(),
            },
        }
    }
}

/// A registered stdlib function and everything known about it.
#[derive(Clone)]
pub struct Function {
    /// Module (`ssh`, `k8s`, ...), or `""` for a built-in called without a prefix.
    pub module: &'static str,
    /// Function name within the module.
    pub name: &'static str,
    /// Parameters as `name: type`; a trailing `name?: type` is optional.
    pub params: &'static [&'static str],
    /// Return type in the notation of [`values::placeholder`], e.g. `#{stdout: string, code: int}`.
    pub returns: &'static str,
    /// What the call does to the world.
    pub effect: Effect,
    /// The doc comment: first line a summary, then details and a ```` ```rhai ```` example.
    pub doc: &'static str,
    /// The body.
    pub body: Body,
    /// For writes whose backend has its own dry run (Kubernetes `dryRun=All`):
    /// the body an online `--dry-run` runs instead of skipping the call. It
    /// changes nothing, returns the would-be result, and may attach a diff to
    /// the plan with `Host::plan_detail`.
    pub preview: Option<Body>,
}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Function")
            .field("name", &self.qualified_name())
            .field("effect", &self.effect)
            .finish_non_exhaustive()
    }
}

impl Function {
    /// `module::name`, or `name` for built-ins.
    pub fn qualified_name(&self) -> String {
        if self.module.is_empty() {
            self.name.to_owned()
        } else {
            format!("{}::{}", self.module, self.name)
        }
    }

    /// `shell::run(cmd: string | array, opts?: map) -> #{...}`
    pub fn signature(&self) -> String {
        format!(
            "{}({}) -> {}",
            self.qualified_name(),
            self.params.join(", "),
            self.returns
        )
    }

    /// The doc comment with the leading space of each `///` line removed.
    pub fn doc_text(&self) -> String {
        let lines: Vec<&str> = self
            .doc
            .lines()
            .map(|line| line.strip_prefix(' ').unwrap_or(line))
            .collect();
        lines.join("\n").trim().to_owned()
    }

    /// The first sentence of the doc comment.
    pub fn summary(&self) -> String {
        let text = self.doc_text();
        let paragraph: Vec<&str> = text
            .lines()
            .map(str::trim)
            .take_while(|line| !line.is_empty())
            .collect();
        let paragraph = paragraph.join(" ");
        match paragraph.find(". ") {
            Some(end) => paragraph[..=end].to_owned(),
            None => paragraph,
        }
    }

    /// Parameters for overviews: names, with `?` on optional ones.
    pub fn param_list(&self) -> String {
        self.params
            .iter()
            .map(|param| param.split(':').next().unwrap_or(param).trim())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The ```` ```rhai ```` examples in the doc comment.
    pub fn examples(&self) -> Vec<String> {
        let mut examples = Vec::new();
        let mut current: Option<Vec<&str>> = None;
        let text = self.doc_text();
        for line in text.lines() {
            match (&mut current, line.trim()) {
                (None, fence) if fence.starts_with("```rhai") => current = Some(Vec::new()),
                (Some(lines), "```") => {
                    examples.push(lines.join("\n"));
                    current = None;
                }
                (Some(lines), _) => lines.push(line),
                (None, _) => {}
            }
        }
        examples
    }

    /// Parameter names, without types or the optional mark.
    pub fn param_names(&self) -> Vec<&'static str> {
        self.params
            .iter()
            .map(|param| {
                param
                    .split(':')
                    .next()
                    .unwrap_or(param)
                    .trim()
                    .trim_end_matches('?')
            })
            .collect()
    }

    /// The arities the function accepts (optional trailing parameters make several).
    pub fn arities(&self) -> std::ops::RangeInclusive<usize> {
        let required = self
            .params
            .iter()
            .filter(|param| {
                !param
                    .split(':')
                    .next()
                    .unwrap_or(param)
                    .trim()
                    .ends_with('?')
            })
            .count();
        required..=self.params.len()
    }
}

/// Define a stdlib [`Function`]. The `///` doc comment and the effect
/// (`local`, `read` or `write`) are part of the syntax: leaving either out
/// does not compile.
///
/// ```ignore
/// function! {
///     /// Run a local command.
///     write fn shell::run("cmd: string | array", "opts?: map") -> "#{stdout: string}"
///     |call| { ... }
/// }
/// ```
#[macro_export]
macro_rules! function {
    (
        $(#[doc = $doc:literal])+
        $effect:ident fn $module:ident :: $name:ident ( $($param:literal),* $(,)? ) -> $returns:literal
        $body:expr
    ) => {
        $crate::function::Function {
            module: stringify!($module),
            name: stringify!($name),
            params: &[$($param),*],
            returns: $returns,
            effect: $crate::function!(@effect $effect),
            doc: concat!($($doc, "\n"),+),
            body: ::std::sync::Arc::new($body),
            preview: None,
        }
    };
    (
        $(#[doc = $doc:literal])+
        $effect:ident fn $name:ident ( $($param:literal),* $(,)? ) -> $returns:literal
        $body:expr
    ) => {
        $crate::function::Function {
            module: "",
            name: stringify!($name),
            params: &[$($param),*],
            returns: $returns,
            effect: $crate::function!(@effect $effect),
            doc: concat!($($doc, "\n"),+),
            body: ::std::sync::Arc::new($body),
            preview: None,
        }
    };
    (@effect local) => { $crate::host::Effect::Local };
    (@effect read) => { $crate::host::Effect::Read };
    (@effect write) => { $crate::host::Effect::Write };
}

/// One call in progress: the host, the Rhai call context and the arguments,
/// with typed accessors that produce errors naming the function and parameter.
pub struct Call<'a> {
    /// The host the call runs under.
    pub host: &'a dyn Host,
    /// The Rhai context (engine, position) of the call.
    pub context: &'a NativeCallContext<'a>,
    function: &'a Function,
    args: Vec<Dynamic>,
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
            .param_names()
            .get(index)
            .map_or_else(|| format!("#{}", index + 1), |n| (*n).to_owned())
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

/// Register `functions` into `engine`, each wrapped so that `host` decides on
/// every call. Functions of one module become a static module (`shell::run`);
/// built-ins (module `""`) are global.
pub fn install(engine: &mut Engine, host: &Arc<dyn Host>, functions: &[Function]) {
    values::register_types(engine);
    let mut modules: BTreeMap<&'static str, Module> = BTreeMap::new();
    for function in functions {
        let module = modules.entry(function.module).or_default();
        for arity in function.arities() {
            register_one(module, host, function, arity);
        }
    }
    for (name, module) in modules {
        if name.is_empty() {
            engine.register_global_module(module.into());
        } else {
            engine.register_static_module(name, module.into());
        }
    }
}

fn register_one(module: &mut Module, host: &Arc<dyn Host>, function: &Function, arity: usize) {
    let host = Arc::clone(host);
    let spec = function.clone();
    let wrapper = move |context: Option<NativeCallContext>, args: &mut [&mut Dynamic]| {
        let context = context.ok_or_else(|| {
            StdlibError::message("internal: call without a context").into_rhai(rhai::Position::NONE)
        })?;
        let args: Vec<Dynamic> = args.iter().map(|arg| (**arg).clone()).collect();
        gate(host.as_ref(), &context, &spec, args)
    };
    let mut params: Vec<String> = function.params[..arity]
        .iter()
        .map(|p| p.replace('?', ""))
        .collect();
    params.push(function.returns.to_owned());
    let comments: Vec<String> = function
        .doc
        .lines()
        .map(|line| format!("///{line}"))
        .collect();
    FuncRegistration::new(function.name)
        .with_namespace(FnNamespace::Internal)
        .with_params_info(params)
        .with_comments([comments.join("\n")])
        .set_into_module_raw(
            module,
            vec![std::any::TypeId::of::<Dynamic>(); arity],
            rhai::RhaiFunc::Pure {
                func: rhai::Shared::new(wrapper),
                has_context: true,
                is_pure: true,
                is_volatile: true,
            },
        );
}

/// The gate: the host decides, the body runs only when told to, the outcome is reported.
fn gate(
    host: &dyn Host,
    context: &NativeCallContext,
    function: &Function,
    args: Vec<Dynamic>,
) -> Result<Dynamic, Box<rhai::EvalAltResult>> {
    let position = context.call_position();
    let info = CallInfo {
        function: function.qualified_name(),
        effect: function.effect,
        args: args.iter().map(values::render).collect(),
        position,
        has_preview: function.preview.is_some(),
    };
    let decision = host.decide(&info, &|| values::placeholder(function.returns));
    let body = match (&decision, &function.preview) {
        (Decision::Skip(value), _) => {
            host.finished(&info, Outcome::Skipped, Duration::ZERO);
            return Ok(value.clone());
        }
        (Decision::Preview, Some(preview)) => preview,
        _ => &function.body,
    };
    let started = Instant::now();
    let mut call = Call {
        host,
        context,
        function,
        args,
    };
    let result = body(&mut call);
    let elapsed = started.elapsed();
    match &result {
        Ok(_) if matches!(decision, Decision::Preview) => {
            host.finished(&info, Outcome::Skipped, elapsed);
        }
        Ok(value) => host.finished(&info, Outcome::Ok(value), elapsed),
        Err(failure) => host.finished(&info, Outcome::Err(&failure.message()), elapsed),
    }
    result.map_err(|failure| match failure {
        Failure::Stdlib(error) => error.into_rhai(position),
        Failure::Script(error) => error,
    })
}
