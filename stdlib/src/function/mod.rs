//! The one way a function enters the standard library.
//!
//! Every function is a [`Function`]: module, name, parameters, return type,
//! doc comment and [`Effect`], built with the [`function!`](crate::function!)
//! macro, which does not compile without a `///` doc comment and an effect.
//! This file holds the metadata (parameters parsed once into [`Param`]s);
//! [`call`] the typed access to arguments; [`install`](mod@install) the gate that
//! lets the [`Host`](crate::host::Host) decide on every call before the body runs.

mod call;
mod install;

use std::sync::Arc;

use rhai::Dynamic;

pub use call::{Call, Options, Text};
pub use install::install;

use crate::host::{Effect, StdlibError};

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
