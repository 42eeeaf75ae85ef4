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
    /// The forms it can be called in, each a parameter list (most functions
    /// have one; `step(name, fn)` and `step(name, opts, fn)` are two).
    /// Optional parameters (`name?: type`) come last in a form.
    pub forms: Arc<[Arc<[Param]>]>,
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

    /// `shell::run(cmd: string | array, opts?: map) -> #{...}`, one line per form.
    pub fn signature(&self) -> String {
        self.forms
            .iter()
            .map(|form| {
                let params: Vec<String> = form.iter().map(ToString::to_string).collect();
                format!(
                    "{}({}) -> {}",
                    self.qualified_name(),
                    params.join(", "),
                    self.returns
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
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
        match sentence_end(&paragraph) {
            Some(end) => paragraph[..=end].to_owned(),
            None => paragraph,
        }
    }

    /// Parameters for overviews: the longest form's names, with `?` on
    /// those that may be left out (optional, or missing from another form).
    pub fn param_list(&self) -> String {
        let Some(longest) = self.forms.iter().max_by_key(|form| form.len()) else {
            return String::new();
        };
        longest
            .iter()
            .map(|param| {
                let everywhere = self
                    .forms
                    .iter()
                    .all(|form| form.iter().any(|other| other.name == param.name));
                if param.optional || !everywhere {
                    format!("{}?", param.name)
                } else {
                    param.name.to_owned()
                }
            })
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

    /// The form a call with `arity` arguments uses.
    pub fn form(&self, arity: usize) -> Option<&[Param]> {
        self.forms
            .iter()
            .find(|form| {
                let required = form.iter().filter(|param| !param.optional).count();
                (required..=form.len()).contains(&arity)
            })
            .map(|form| &form[..])
    }

    /// The parameter argument `index` binds to in a call with `arity` arguments.
    pub fn param(&self, arity: usize, index: usize) -> Option<&Param> {
        self.form(arity).and_then(|form| form.get(index))
    }

    /// The arities the function accepts, ascending (optional trailing
    /// parameters and several forms make several).
    pub fn arities(&self) -> Vec<usize> {
        let mut arities: Vec<usize> = self
            .forms
            .iter()
            .flat_map(|form| {
                let required = form.iter().filter(|param| !param.optional).count();
                required..=form.len()
            })
            .collect();
        arities.sort_unstable();
        arities.dedup();
        arities
    }

    /// Problems with the declaration itself: an optional parameter before a
    /// required one, two forms taking the same number of arguments, a return
    /// type that does not parse. A test runs this over every function.
    pub fn spec_problems(&self) -> Vec<String> {
        let name = self.qualified_name();
        let mut problems = Vec::new();
        for form in self.forms.iter() {
            if let Some(first) = form.iter().position(|param| param.optional)
                && form[first..].iter().any(|param| !param.optional)
            {
                problems.push(format!(
                    "{name}: optional parameter `{}` is followed by a required one",
                    form[first].name
                ));
            }
        }
        let mut seen = Vec::new();
        for form in self.forms.iter() {
            let required = form.iter().filter(|param| !param.optional).count();
            for arity in required..=form.len() {
                if seen.contains(&arity) {
                    problems.push(format!("{name}: two forms take {arity} arguments"));
                }
                seen.push(arity);
            }
        }
        if let Err(problem) = crate::values::check_shape(self.returns) {
            problems.push(format!("{name}: return type `{}`: {problem}", self.returns));
        }
        problems
    }
}

/// One parameter of a form, parsed once from its declaration `"name?: type"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param {
    pub name: &'static str,
    /// In the notation of [`crate::values::placeholder`]; `any` when not given.
    pub ty: &'static str,
    /// May be left out (a trailing `?` on the name).
    pub optional: bool,
}

impl Param {
    /// `"opts?: map"` → `opts`, `map`, optional.
    pub fn parse(spec: &'static str) -> Param {
        let (name, ty) = match spec.split_once(':') {
            Some((name, ty)) => (name.trim(), ty.trim()),
            None => (spec.trim(), "any"),
        };
        let (name, optional) = match name.strip_suffix('?') {
            Some(name) => (name.trim_end(), true),
            None => (name, false),
        };
        Param { name, ty, optional }
    }

    /// Every parameter of one form.
    pub fn form(specs: &[&'static str]) -> Arc<[Param]> {
        specs.iter().map(|spec| Param::parse(spec)).collect()
    }
}

impl std::fmt::Display for Param {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let optional = if self.optional { "?" } else { "" };
        write!(f, "{}{optional}: {}", self.name, self.ty)
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
///
/// A function called in several forms lists them with `|`:
/// `local fn step("name: string", "fn: closure") | ("name: string", "opts: map", "fn: closure") -> "any"`.
#[macro_export]
macro_rules! function {
    (
        $(#[doc = $doc:literal])+
        $effect:ident fn $module:ident :: $name:ident ( $($param:literal),* $(,)? ) $( | ( $($alt:literal),* $(,)? ) )* -> $returns:literal
        $body:expr
    ) => {
        $crate::function::Function {
            module: stringify!($module),
            name: stringify!($name),
            forms: ::std::sync::Arc::from([
                $crate::function::Param::form(&[$($param),*])
                $(, $crate::function::Param::form(&[$($alt),*]))*
            ]),
            returns: $returns,
            effect: $crate::function!(@effect $effect),
            doc: concat!($($doc, "\n"),+),
            body: ::std::sync::Arc::new($body),
            preview: None,
        }
    };
    (
        $(#[doc = $doc:literal])+
        $effect:ident fn $name:ident ( $($param:literal),* $(,)? ) $( | ( $($alt:literal),* $(,)? ) )* -> $returns:literal
        $body:expr
    ) => {
        $crate::function::Function {
            module: "",
            name: stringify!($name),
            forms: ::std::sync::Arc::from([
                $crate::function::Param::form(&[$($param),*])
                $(, $crate::function::Param::form(&[$($alt),*]))*
            ]),
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

/// Where the first sentence of `text` ends (the index of its `.`): a period
/// followed by a space, not one inside an abbreviation (`e.g.`, `i.e.`,
/// `etc.`, `vs.`) or inside backticks (`a.b`).
fn sentence_end(text: &str) -> Option<usize> {
    const ABBREVIATIONS: &[&str] = &["e.g.", "i.e.", "etc.", "vs.", "cf.", "approx."];
    let mut in_code = false;
    for (index, c) in text.char_indices() {
        match c {
            '`' => in_code = !in_code,
            '.' if !in_code && text[index + 1..].starts_with(' ') => {
                let before = &text[..=index];
                let abbreviation = ABBREVIATIONS.iter().any(|abbreviation| {
                    before.ends_with(abbreviation)
                        && before[..before.len() - abbreviation.len()]
                            .chars()
                            .next_back()
                            .is_none_or(|c| !c.is_alphanumeric())
                });
                if !abbreviation {
                    return Some(index);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod summary_tests {
    use super::sentence_end;

    #[test]
    fn a_summary_is_a_whole_sentence() {
        let text = "Parse one YAML document (e.g. a manifest) into a map. More.";
        assert_eq!(
            &text[..=sentence_end(text).unwrap()],
            "Parse one YAML document (e.g. a manifest) into a map."
        );
        let text = "Call `a. b` then stop. Next.";
        assert_eq!(
            &text[..=sentence_end(text).unwrap()],
            "Call `a. b` then stop."
        );
        assert_eq!(sentence_end("No end"), None);
    }
}
