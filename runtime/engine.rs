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

/// A fresh engine for `host`'s run.
pub fn build(host: &Arc<RunHost>) -> Engine {
    let mut engine = Engine::new();
    engine
        .set_max_call_levels(64)
        .set_max_expr_depths(128, 64)
        .set_max_operations(0)
        .set_max_string_size(256 * 1024 * 1024)
        .set_max_array_size(10_000_000)
        .set_max_map_size(1_000_000)
        .set_max_modules(64)
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
