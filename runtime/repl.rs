//! The REPL's machinery (the command is `commands/repl.rs`): line editing
//! with completion and multi-line input, `:commands`, and evaluation of each
//! input in one scope that keeps variables and functions across lines.

use std::sync::{Arc, Mutex, PoisonError};

use rhai::{AST, Dynamic, Engine, Scope};
use runbook_stdlib::Function;
use rustyline::Helper;
use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};

use crate::error::Diagnostic;
use crate::gate::RunHost;
use crate::session::Session;

pub(crate) const COMMANDS: &[(&str, &str)] = &[
    (
        ":help",
        "this list; `:help NAME` shows a function or module (`:help k8s`, `:help step`)",
    ),
    (":doc", "the overview of every function"),
    (":context", "the active context"),
    (":vars", "the variables defined so far"),
    (":quit", "leave (Ctrl-D works too)"),
];

/// Completion of function names, variables and commands; multi-line input.
pub(crate) struct ReplHelper {
    pub(crate) words: Vec<String>,
    pub(crate) variables: Arc<Mutex<Vec<String>>>,
}

impl Completer for ReplHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let start = before
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .map_or(0, |index| index + 1);
        let word = &before[start..];
        if word.is_empty() {
            return Ok((pos, Vec::new()));
        }
        let variables = self
            .variables
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut candidates: Vec<Pair> = self
            .words
            .iter()
            .chain(variables.iter())
            .filter(|candidate| candidate.starts_with(word))
            .map(|candidate| Pair {
                display: candidate.clone(),
                replacement: candidate.clone(),
            })
            .collect();
        candidates.sort_by(|a, b| a.display.cmp(&b.display));
        candidates.dedup_by(|a, b| a.display == b.display);
        Ok((start, candidates))
    }
}

impl Hinter for ReplHelper {
    type Hint = String;
}

impl Highlighter for ReplHelper {}

impl Validator for ReplHelper {
    fn validate(&self, ctx: &mut ValidationContext<'_>) -> rustyline::Result<ValidationResult> {
        Ok(if is_incomplete(ctx.input()) {
            ValidationResult::Incomplete
        } else {
            ValidationResult::Valid(None)
        })
    }
}

impl Helper for ReplHelper {}

/// Whether brackets or a string are still open (outside strings and comments).
pub fn is_incomplete(input: &str) -> bool {
    let mut depth: i64 = 0;
    let mut chars = input.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                if c == '\\' {
                    chars.next();
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '`' | '\'' => quote = Some(c),
                '/' if chars.peek() == Some(&'/') => {
                    for next in chars.by_ref() {
                        if next == '\n' {
                            break;
                        }
                    }
                }
                '{' | '(' | '[' => depth += 1,
                '}' | ')' | ']' => depth -= 1,
                _ => {}
            },
        }
    }
    depth > 0 || matches!(quote, Some('`'))
}

pub(crate) struct Repl {
    pub(crate) session: Session,
    engine: Arc<Engine>,
    functions: Vec<Function>,
    scope: Arc<Mutex<Scope<'static>>>,
    /// Functions defined so far (`fn name() {}`), kept across lines.
    library: AST,
    variables: Arc<Mutex<Vec<String>>>,
}

impl Repl {
    pub(crate) fn new(
        session: Session,
        engine: Engine,
        functions: Vec<Function>,
        variables: Arc<Mutex<Vec<String>>>,
    ) -> Repl {
        Repl {
            session,
            engine: Arc::new(engine),
            functions,
            scope: Arc::new(Mutex::new(Scope::new())),
            library: AST::empty(),
            variables,
        }
    }

    fn host(&self) -> &Arc<RunHost> {
        &self.session.host
    }

    /// Run a `:command`; `false` means leave.
    pub(crate) fn command(&self, line: &str) -> bool {
        let mut words = line.split_whitespace();
        let command = words.next().unwrap_or_default();
        let argument = words.next();
        let printer = &self.host().printer;
        match (command, argument) {
            (":quit" | ":q" | ":exit", _) => return false,
            (":help" | ":h", None) => {
                let mut text = String::from(
                    "Type Rhai: `1 + 2`, `shell::read(\"uname -a\")`, `let x = ...`.\nCommands:\n",
                );
                for (name, what) in COMMANDS {
                    text.push_str(&format!("  {name:<10} {what}\n"));
                }
                text.push_str("Modules: ");
                text.push_str(&runbook_stdlib::module_names().join(", "));
                printer.data(&text);
            }
            (":help" | ":h" | ":doc", Some(topic)) => {
                match crate::reference::topic(&self.functions, topic) {
                    Some(text) => printer.data(&text),
                    None => printer.data(&format!(
                        "nothing called `{topic}`; `:doc` lists every function"
                    )),
                }
            }
            (":doc", None) => printer.data(&crate::reference::overview(&self.functions)),
            (":context", _) => printer.data(&format_value(&self.host().context.to_dynamic())),
            (":vars", _) => {
                let scope = self.scope.lock().unwrap_or_else(PoisonError::into_inner);
                let mut text = String::new();
                for (name, _, value) in scope.iter() {
                    text.push_str(&format!(
                        "{name} = {}\n",
                        runbook_stdlib::values::render(&value)
                    ));
                }
                printer.data(if text.is_empty() {
                    "(no variables yet)"
                } else {
                    text.trim_end()
                });
            }
            (other, _) => printer.data(&format!("unknown command `{other}`; `:help` lists them")),
        }
        true
    }

    /// Evaluate one input; errors are shown and the session goes on.
    pub(crate) fn evaluate(&mut self, input: &str) {
        let host = Arc::clone(self.host());
        host.reset_for_next_input();
        let ast = {
            let scope = self.scope.lock().unwrap_or_else(PoisonError::into_inner);
            crate::engine::compile(&self.engine, input, &scope)
        };
        let ast = match ast {
            Ok(ast) => ast,
            Err(diagnostic) => {
                host.printer.error(&render_repl(&diagnostic, input));
                return;
            }
        };
        let combined = self.library.merge(&ast);
        let engine = Arc::clone(&self.engine);
        let scope = Arc::clone(&self.scope);
        let task_host = Arc::clone(&host);
        let outcome = self.session.runtime.block_on(async move {
            tokio::task::spawn_blocking(move || {
                let mut scope = scope.lock().unwrap_or_else(PoisonError::into_inner);
                let result = engine.eval_ast_with_scope::<Dynamic>(&mut scope, &combined);
                if result.is_err() {
                    crate::runner::roll_back(&task_host, &engine, &combined, false);
                }
                result
            })
            .await
        });
        match outcome {
            Ok(Ok(value)) => {
                if !value.is_unit() {
                    host.printer.data(&format_value(&value));
                }
                self.library = self.library.merge(&ast.clone_functions_only());
            }
            Ok(Err(error)) => {
                let diagnostic = Diagnostic::from_rhai(&error);
                host.printer.error(&render_repl(&diagnostic, input));
            }
            Err(join_error) => host
                .printer
                .error(&format!("error: internal: {join_error}")),
        }
        let scope = self.scope.lock().unwrap_or_else(PoisonError::into_inner);
        let names: Vec<String> = scope.iter().map(|(name, ..)| name.to_owned()).collect();
        *self
            .variables
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = names;
    }
}

fn render_repl(diagnostic: &Diagnostic, input: &str) -> String {
    diagnostic.render_with(Some(std::path::Path::new("<repl>")), Some(input))
}

/// Show a value: strings as they are, everything else in script notation.
fn format_value(value: &Dynamic) -> String {
    if value.is_string() {
        return value.clone().into_string().unwrap_or_default();
    }
    let json = runbook_stdlib::values::to_json(value, false);
    if value.is_map() || value.is_array() {
        serde_json::to_string_pretty(&json)
            .unwrap_or_else(|_| runbook_stdlib::values::render(value))
    } else {
        runbook_stdlib::values::render(value)
    }
}

#[cfg(test)]
mod tests {
    use super::is_incomplete;

    #[test]
    fn open_brackets_continue_the_input() {
        assert!(is_incomplete("let f = |x| {"));
        assert!(is_incomplete("foo(1,"));
        assert!(!is_incomplete("let f = |x| { x + 1 };"));
        assert!(!is_incomplete("\"{\""));
        assert!(!is_incomplete("1 + 2 // {"));
        assert!(is_incomplete("`multi"));
    }
}
