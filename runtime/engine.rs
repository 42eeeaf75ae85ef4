//! The Rhai engine a run uses: explicit limits, the stop hook that makes
//! Ctrl-C and step timeouts end the script, `print` routed to the printer,
//! and every function (stdlib and runtime built-ins) installed behind the gate.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rhai::{AST, Dynamic, Engine, ParseErrorType, Scope};
use runbook_stdlib::{Function, Host, Level};

use crate::error::{Diagnostic, Exit};
use crate::gate::RunHost;

/// Every function a script can call: the runtime's built-ins, then the stdlib.
pub fn all_functions(host: &Arc<RunHost>) -> Vec<Function> {
    [
        crate::builtins::functions(host),
        runbook_stdlib::functions(),
    ]
    .concat()
}

/// The limits every script runs under (product defaults, documented in the
/// README's `## Limits` and `runbook doc`). Operations are unlimited: a long
/// script is fine, and Ctrl-C, SIGTERM or a step timeout stop it through the
/// progress hook.
pub mod limits {
    /// Nested function calls (recursion depth).
    pub const CALL_LEVELS: usize = 64;
    /// Expression nesting at the top level of a script.
    pub const EXPR_DEPTH: usize = 128;
    /// Expression nesting inside a function body.
    pub const FN_EXPR_DEPTH: usize = 64;
    /// Bytes of string data in one value (a string, or all strings in an array/map).
    pub const STRING_BYTES: usize = 64 * 1024 * 1024;
    /// Elements in one array, nested arrays included.
    pub const ARRAY_ITEMS: usize = 1_000_000;
    /// Entries in one object map, nested maps included.
    pub const MAP_ENTRIES: usize = 1_000_000;
    /// Variables alive at once.
    pub const VARIABLES: usize = 10_000;
    /// Functions a script defines.
    pub const FUNCTIONS: usize = 10_000;
    /// Modules a script imports.
    pub const MODULES: usize = 64;
    /// Stack of the threads that run scripts. Sized for the worst nesting
    /// the limits above allow (Rhai's rule: call levels × (5 + function
    /// depth) plus top-level depth frames), with room for debug builds; it is reserved
    /// address space, only the pages used are memory.
    pub const STACK_BYTES: usize = 256 * 1024 * 1024;

    fn mib(bytes: usize) -> String {
        format!("{} MiB", bytes / (1024 * 1024))
    }

    /// A limit a run hit: the message naming it and a hint. `None` for
    /// other errors.
    pub fn hit(error: &rhai::EvalAltResult) -> Option<(String, String)> {
        use rhai::EvalAltResult as E;
        let (message, hint) = match error {
            E::ErrorStackOverflow(_) => (
                format!(
                    "calls nested too deeply: the limit is {CALL_LEVELS} call levels (endless recursion?)"
                ),
                "make the recursion end, or use a loop; the README's `Limits` section lists every limit",
            ),
            E::ErrorDataTooLarge(what, _) => {
                let (limit, name) = match what.as_str() {
                    "Length of string" => (mib(STRING_BYTES), "string size"),
                    "Size of array/BLOB" => (ARRAY_ITEMS.to_string(), "array size"),
                    "Size of object map" => (MAP_ENTRIES.to_string(), "map size"),
                    _ => (what.clone(), "data size"),
                };
                (
                    format!(
                        "value too large: over the {name} limit ({limit}, nested values included)"
                    ),
                    "keep big data out of the script (write it to a file, stream it with s3/pg functions, or process it in parts)",
                )
            }
            E::ErrorTooManyVariables(_) => (
                format!("too many variables: the limit is {VARIABLES} alive at once"),
                "keep values in an array or map instead of one variable each",
            ),
            E::ErrorTooManyModules(_) => (
                format!("too many modules imported: the limit is {MODULES}"),
                "import each module once, at the top of the script",
            ),
            E::ErrorParsing(kind, _) => return parse_hit(kind),
            _ => return None,
        };
        Some((message, hint.to_owned()))
    }

    /// A limit the parser hit: the message naming it and a hint.
    pub fn parse_hit(kind: &rhai::ParseErrorType) -> Option<(String, String)> {
        use rhai::ParseErrorType as P;
        let (message, hint) = match kind {
            P::ExprTooDeep => (
                format!(
                    "expression nested too deeply: the limits are {EXPR_DEPTH} levels at the top level and {FN_EXPR_DEPTH} in a function"
                ),
                "split it with `let` into smaller expressions",
            ),
            P::TooManyFunctions => (
                format!("too many functions defined: the limit is {FUNCTIONS}"),
                "split the script; share code with `import`",
            ),
            P::LiteralTooLarge(what, max) => (
                format!("literal too large: {what} over the limit of {max}"),
                "read big data from a file instead of writing it into the script",
            ),
            _ => return None,
        };
        Some((message, hint.to_owned()))
    }

    /// The limits as `(name, value, what)`, for `runbook doc` and errors.
    pub fn table() -> Vec<(&'static str, String, &'static str)> {
        vec![
            (
                "call levels",
                CALL_LEVELS.to_string(),
                "nested function calls",
            ),
            (
                "expression depth",
                EXPR_DEPTH.to_string(),
                "nesting at the top level",
            ),
            (
                "expression depth in functions",
                FN_EXPR_DEPTH.to_string(),
                "nesting in a function body",
            ),
            (
                "string size",
                mib(STRING_BYTES),
                "bytes of text in one value",
            ),
            (
                "array size",
                ARRAY_ITEMS.to_string(),
                "elements in one array, nested ones included",
            ),
            (
                "map size",
                MAP_ENTRIES.to_string(),
                "entries in one map, nested ones included",
            ),
            (
                "variables",
                VARIABLES.to_string(),
                "variables alive at once",
            ),
            (
                "functions",
                FUNCTIONS.to_string(),
                "functions a script defines",
            ),
            ("modules", MODULES.to_string(), "modules a script imports"),
            (
                "operations",
                "unlimited".into(),
                "Ctrl-C, SIGTERM and step timeouts stop a script",
            ),
        ]
    }
}

/// A fresh engine for `host`'s run.
pub fn build(host: &Arc<RunHost>) -> Engine {
    let mut engine = Engine::new();
    engine
        .set_max_call_levels(limits::CALL_LEVELS)
        .set_max_expr_depths(limits::EXPR_DEPTH, limits::FN_EXPR_DEPTH)
        .set_max_operations(0)
        .set_max_string_size(limits::STRING_BYTES)
        .set_max_array_size(limits::ARRAY_ITEMS)
        .set_max_map_size(limits::MAP_ENTRIES)
        .set_max_variables(limits::VARIABLES)
        .set_max_functions(limits::FUNCTIONS)
        .set_max_modules(limits::MODULES)
        .set_strict_variables(true);
    let stop = host.stop_flag();
    engine.on_progress(move |_| {
        stop.load(Ordering::Relaxed)
            .then(|| Dynamic::from("interrupted"))
    });
    // A resume replaying the journal prints nothing the run printed already.
    let print_host = Arc::clone(host);
    engine.on_print(move |text| {
        if !print_host.replaying() {
            print_host.printer.data(text);
        }
    });
    let debug_host = Arc::clone(host);
    engine.on_debug(move |text, _source, position| {
        let at = debug_host.location(position);
        debug_host.log(Level::Debug, &format!("{at}: {text}"));
    });
    crate::inspect::attach(&mut engine, host);
    let functions = all_functions(host);
    let dyn_host: Arc<dyn Host> = Arc::clone(host) as Arc<dyn Host>;
    runbook_stdlib::install(&mut engine, &dyn_host, &functions);
    engine
}

/// Compile a script; a syntax error becomes a diagnostic at its position.
pub fn compile(engine: &Engine, source: &str, scope: &Scope<'_>) -> Result<AST, Diagnostic> {
    engine.compile_with_scope(scope, source).map_err(|error| {
        let position = error.position();
        let kind = error.err_type();
        if let ParseErrorType::ModuleUndefined(module) = kind {
            return Diagnostic::new(format!("unknown module `{module}`"), Exit::Usage)
                .at(position)
                .hint(format!(
                    "the modules are: {}; `runbook doc` lists their functions",
                    runbook_stdlib::module_names().join(", ")
                ));
        }
        if let Some((message, hint)) = limits::parse_hit(kind) {
            return Diagnostic::new(message, Exit::Usage)
                .at(position)
                .hint(hint);
        }
        let mut diagnostic =
            Diagnostic::new(format!("syntax error: {kind}"), Exit::Usage).at(position);
        if let Some(hint) = syntax_hint(kind) {
            diagnostic = diagnostic.hint(hint);
        }
        diagnostic
    })
}

fn syntax_hint(kind: &ParseErrorType) -> Option<&'static str> {
    match kind {
        ParseErrorType::VariableUndefined(_) => {
            Some("declare it with `let` first; command-line values come from `param(\"name\")`")
        }
        ParseErrorType::MissingToken(token, _) if token == ";" => Some("statements end with `;`"),
        ParseErrorType::MissingToken(token, _) if token == "}" || token == ")" => {
            Some("a bracket is not closed; look above this line")
        }
        _ => None,
    }
}

/// Read a runbook file; errors name the file.
pub fn read_source(path: &Path) -> Result<String, Diagnostic> {
    let bytes = std::fs::read(path).map_err(|error| {
        Diagnostic::new(
            format!("cannot read `{}`: {error}", path.display()),
            Exit::Usage,
        )
        .hint("check the path; `runbook list DIR` shows the runbooks in a folder")
    })?;
    String::from_utf8(bytes).map_err(|error| {
        let offset = error.utf8_error().valid_up_to();
        let before = &error.as_bytes()[..offset];
        let line = before.iter().filter(|byte| **byte == b'\n').count() + 1;
        let column = before.iter().rev().take_while(|byte| **byte != b'\n').count() + 1;
        Diagnostic::new(
            format!(
                "`{}` is not UTF-8: byte {offset} (line {line}, column {column}) is not valid UTF-8",
                path.display()
            ),
            Exit::Usage,
        )
        .hint("runbooks are UTF-8 text; convert it, e.g. `iconv -f latin1 -t utf-8`")
    })
}
