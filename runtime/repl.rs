//! The REPL's machinery (the command is `commands/repl.rs`): line editing
//! with completion and multi-line input, `:commands`, and evaluation of each
//! input in one scope that keeps variables and functions across lines.
//!
//! A session is a run of kind `repl`: every input line and every call is
//! journaled, writes go through the same gate as a script's (a protected
//! context asks for its typed name, or `:unlock`), `:dry-run on` turns writes
//! into a plan, and Ctrl-C stops the call in flight but not the session.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rhai::{AST, Dynamic, Engine, Map, Scope};
use runbook_stdlib::Function;
use rustyline::completion::{Completer, Pair};
use rustyline::config::Configurer;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Editor, Helper};

use crate::approval::Prompter;
use crate::error::Diagnostic;
use crate::event::{Event, Mode};
use crate::gate::RunHost;
use crate::header::Header;
use crate::session::Session;

pub(crate) const COMMANDS: &[(&str, &str)] = &[
    (
        ":help",
        "this list; `:help NAME` shows a function, module, command or variable",
    ),
    (":doc", "the overview of every function"),
    (":context", "the active context"),
    (":vars", "the variables defined so far"),
    (
        ":dry-run",
        "`:dry-run on` records writes as a plan instead of running them; `:dry-run off` runs them again",
    ),
    (
        ":plan",
        "the writes planned (dry-run) and the writes run so far in this session",
    ),
    (
        ":unlock",
        "`:unlock 10m`: in a protected context, run writes without typing its name for a while",
    ),
    (
        ":lock",
        "ask for the context's name before every write again",
    ),
    (
        ":save",
        "`:save FILE`: the session's successful statements as a runbook draft (writes in steps)",
    ),
    (
        ":load",
        "`:load FILE`: define a file's functions and variables in this session",
    ),
    (
        ":run",
        "`:run FILE [NAME=VALUE...] [--step]`: run a runbook in this session; --step asks before each step",
    ),
    (":quit", "leave (Ctrl-D works too)"),
];

/// What completion knows besides the fixed words: each variable with the
/// keys of its map, if it is one.
pub(crate) type Variables = Arc<Mutex<Vec<(String, Vec<String>)>>>;

/// Completion of modules, functions, variables, map keys and commands;
/// multi-line input.
pub(crate) struct ReplHelper {
    pub(crate) words: Vec<String>,
    pub(crate) variables: Variables,
}

impl ReplHelper {
    /// Completion candidates for `word` (what stands before the cursor).
    pub(crate) fn candidates(&self, word: &str) -> Vec<String> {
        let variables = self
            .variables
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        // `backup.` + Tab: the keys of the map in `backup`.
        if let Some((name, partial)) = word.rsplit_once('.')
            && !name.contains(':')
        {
            let mut keys: Vec<String> = variables
                .iter()
                .filter(|(variable, _)| variable == name)
                .flat_map(|(_, keys)| keys.iter())
                .filter(|key| key.starts_with(partial))
                .map(|key| format!("{name}.{key}"))
                .collect();
            keys.sort();
            keys.dedup();
            return keys;
        }
        let mut candidates: Vec<String> = self
            .words
            .iter()
            .cloned()
            .chain(variables.into_iter().map(|(name, _)| name))
            .filter(|candidate| candidate.starts_with(word))
            .collect();
        candidates.sort();
        candidates.dedup();
        candidates
    }
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
            .rfind(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | ':' | '.' | '-')))
            .map_or(0, |index| index + 1);
        let word = &before[start..];
        if word.is_empty() {
            return Ok((pos, Vec::new()));
        }
        let pairs = self
            .candidates(word)
            .into_iter()
            .map(|candidate| Pair {
                display: candidate.clone(),
                replacement: candidate,
            })
            .collect();
        Ok((start, pairs))
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

/// The REPL's line editor, shared with the evaluation thread so that
/// questions during a call (a protected write, a gate) are asked through it.
pub(crate) type SharedEditor = Arc<Mutex<Editor<ReplHelper, DefaultHistory>>>;

/// Questions through the REPL's line editor; answers stay out of its history.
pub(crate) struct EditorPrompter(pub(crate) SharedEditor);

impl Prompter for EditorPrompter {
    fn ask(&self, prompt: &str, _timeout: Option<Duration>) -> Option<String> {
        let mut editor = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // The prompt may span lines: show all but the last, then read after it.
        let (before, last) = prompt.rsplit_once('\n').unwrap_or(("", prompt));
        if !before.is_empty() {
            eprintln!("{before}");
        }
        editor.set_auto_add_history(false);
        let answer = editor.readline(last);
        editor.set_auto_add_history(true);
        // Ctrl-C, end of input, or a terminal error: no answer.
        answer.ok()
    }
}

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

/// One input that evaluated without error, for `:save`.
#[derive(Debug, Clone)]
struct Statement {
    source: String,
    /// The write functions it called (ran or planned).
    writes: Vec<String>,
}

/// What a `:command` asks of the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    Continue,
    Quit,
}

pub(crate) struct Repl {
    pub(crate) session: Session,
    engine: Arc<Engine>,
    functions: Vec<Function>,
    scope: Arc<Mutex<Scope<'static>>>,
    /// Functions defined so far (`fn name() {}`), kept across lines.
    library: AST,
    variables: Variables,
    statements: Vec<Statement>,
    /// The session's run id (for `:save`'s header).
    pub(crate) run_id: String,
}

impl Repl {
    pub(crate) fn new(
        session: Session,
        engine: Engine,
        functions: Vec<Function>,
        variables: Variables,
        run_id: String,
    ) -> Repl {
        Repl {
            session,
            engine: Arc::new(engine),
            functions,
            scope: Arc::new(Mutex::new(Scope::new())),
            library: AST::empty(),
            variables,
            statements: Vec::new(),
            run_id,
        }
    }

    fn host(&self) -> &Arc<RunHost> {
        &self.session.host
    }

    /// The prompt: the context, and the session's state when it matters.
    pub(crate) fn prompt(&self) -> String {
        let host = self.host();
        let name = host
            .context
            .name
            .clone()
            .unwrap_or_else(|| "no context".into());
        let mut flags = Vec::new();
        if host.mode().is_dry() {
            flags.push("dry-run".to_owned());
        }
        if let Some(left) = host.unlocked_for() {
            let seconds = left.as_secs();
            flags.push(format!("unlocked {}:{:02}", seconds / 60, seconds % 60));
        }
        if flags.is_empty() {
            format!("{name}> ")
        } else {
            format!("{name} [{}]> ", flags.join(", "))
        }
    }

    /// Journal what was typed (secrets are masked by the journal).
    pub(crate) fn record_input(&self, line: &str) {
        self.host().record(&Event::Input {
            line: line.to_owned(),
            time: crate::event::now(),
        });
    }

    /// Run a `:command`.
    pub(crate) fn command(&mut self, line: &str) -> Next {
        let mut words = line.split_whitespace();
        let command = words.next().unwrap_or_default();
        let rest: Vec<&str> = words.collect();
        let argument = rest.first().copied();
        let printer = Arc::clone(&self.host().printer);
        match (command, argument) {
            (":quit" | ":q" | ":exit", _) => return Next::Quit,
            (":help" | ":h", None) => printer.data(&self.help()),
            (":help" | ":h" | ":doc", Some(topic)) => printer.data(&self.help_for(topic)),
            (":doc", None) => printer.data(&crate::reference::overview(&self.functions)),
            (":context", _) => printer.data(&format_value(&self.host().context.to_dynamic())),
            (":vars", _) => {
                let scope = self.scope.lock().unwrap_or_else(PoisonError::into_inner);
                let mut text = String::new();
                for (name, _, value) in scope.iter() {
                    text.push_str(&format!(
                        "{name} = {}\n",
                        runbook_stdlib::values::render_masked(
                            &value,
                            self.host().printer.redactor()
                        )
                    ));
                }
                printer.data(if text.is_empty() {
                    "(no variables yet)"
                } else {
                    text.trim_end()
                });
            }
            (":dry-run", Some("on")) => {
                self.host().set_mode(Mode::DryRun);
                printer.data("dry-run on: writes are recorded in the plan (`:plan`), not run");
            }
            (":dry-run", Some("off")) => {
                self.host().set_mode(Mode::Live);
                printer.data("dry-run off: writes run again");
            }
            (":dry-run", _) => printer.data(&format!(
                "dry-run is {}; `:dry-run on` or `:dry-run off`",
                if self.host().mode().is_dry() {
                    "on"
                } else {
                    "off"
                }
            )),
            (":plan", _) => printer.data(&self.plan()),
            (":unlock", duration) => printer.data(&self.unlock(duration)),
            (":lock", _) => {
                self.host().unlock(None);
                printer.data("locked: every write asks for the context's name again");
            }
            (":save", Some(file)) => printer.data(&self.save(Path::new(file))),
            (":load", Some(file)) => self.load(Path::new(file)),
            (":run", Some(_)) => self.run_file(&rest),
            (":save" | ":load" | ":run", None) => printer.data(&format!(
                "`{command}` needs a file: `{command} FILE`; `:help {command}` says more"
            )),
            (other, _) => printer.data(&format!("unknown command `{other}`; `:help` lists them")),
        }
        Next::Continue
    }

    fn help(&self) -> String {
        let mut text = String::from(
            "Type Rhai: `1 + 2`, `shell::read(\"uname -a\")`, `let x = ...`; a trailing `;` hides the value.\nCommands:\n",
        );
        for (name, what) in COMMANDS {
            text.push_str(&format!("  {name:<10} {what}\n"));
        }
        text.push_str("Modules: ");
        text.push_str(&runbook_stdlib::module_names().join(", "));
        text
    }

    /// `:help NAME`: a function or module, a `:command`, or a variable.
    fn help_for(&self, topic: &str) -> String {
        if let Some(text) = crate::reference::topic(&self.functions, topic) {
            return text;
        }
        let command = if topic.starts_with(':') {
            topic.to_owned()
        } else {
            format!(":{topic}")
        };
        if let Some((name, what)) = COMMANDS.iter().find(|(name, _)| *name == command) {
            return format!("{name}  {what}");
        }
        let scope = self.scope.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(value) = scope.get_value::<Dynamic>(topic) {
            return format!(
                "{topic}: a variable of this session ({}) = {}",
                runbook_stdlib::values::type_name(&value),
                runbook_stdlib::values::render_masked(&value, self.host().printer.redactor())
            );
        }
        format!("nothing called `{topic}`; `:doc` lists every function")
    }

    fn plan(&self) -> String {
        let host = self.host();
        let plan = host.plan();
        let mut text = if plan.is_empty() {
            "Plan: nothing planned (`:dry-run on` records writes instead of running them)\n"
                .to_owned()
        } else {
            crate::printer::render_plan(&plan).replace(
                " (dry-run: nothing was changed)",
                " (recorded in dry-run, not run)",
            )
        };
        let executed = host.executed();
        if executed.is_empty() {
            text.push_str("Run: no write has run in this session\n");
        } else {
            text.push_str(&format!("Run: {} write(s) so far\n", executed.len()));
            for (index, write) in executed.iter().enumerate() {
                text.push_str(&format!(
                    "  {:>3}. {}\n       at {}  ({})\n",
                    index + 1,
                    write.call,
                    write.at,
                    write.time.get(11..19).unwrap_or(&write.time)
                ));
            }
        }
        text.trim_end().to_owned()
    }

    /// `:unlock DURATION`: after the context's typed name, writes run without asking.
    fn unlock(&self, duration: Option<&str>) -> String {
        let host = self.host();
        if !host.context.protected {
            return "this context is not protected: writes run without asking anyway".into();
        }
        let Some(text) = duration else {
            return "`:unlock 10m` runs writes without asking for 10 minutes".into();
        };
        let duration = match runbook_stdlib::duration::parse(text) {
            Ok(duration) if !duration.is_zero() => duration,
            Ok(_) => return "give a duration longer than 0, like `10m`".into(),
            Err(problem) => return format!("`{text}`: {problem}"),
        };
        let name = host.context.name.clone().unwrap_or_default();
        let answer = host.ask(
            &format!(
                "unlock writes in protected context `{name}` for {}\n  type `{name}` to unlock: ",
                runbook_stdlib::duration::human(duration)
            ),
            None,
        );
        let approved = crate::approval::approves(answer.as_deref(), Some(&name));
        host.emit(&Event::Gate {
            message: format!(
                "unlock writes for {}",
                runbook_stdlib::duration::human(duration)
            ),
            confirm: Some(name.clone()),
            decision: if approved {
                crate::event::GateDecision::Approved
            } else {
                crate::event::GateDecision::Rejected
            },
            approver: crate::identity::approver(),
            how: "terminal".into(),
            at: "<repl>".into(),
            channel: Some(crate::event::Channel::Terminal),
            comment: None,
            expires: None,
            time: crate::event::now(),
        });
        if approved {
            host.unlock(Some(duration));
            format!(
                "unlocked for {}: writes run without asking (`:lock` ends it)",
                runbook_stdlib::duration::human(duration)
            )
        } else {
            "still locked: the name did not match".into()
        }
    }

    /// Evaluate one input; errors are shown and the session goes on.
    /// Returns whether it succeeded.
    pub(crate) fn evaluate(&mut self, input: &str) -> bool {
        let host = Arc::clone(self.host());
        host.reset_for_next_input();
        let before = (host.executed().len(), host.plan().len());
        let ast = {
            let scope = self.scope.lock().unwrap_or_else(PoisonError::into_inner);
            crate::engine::compile(&self.engine, input, &scope)
        };
        let ast = match ast {
            Ok(ast) => ast,
            Err(diagnostic) => {
                host.printer.error(&render_repl(&diagnostic, input));
                return false;
            }
        };
        let combined = self.library.merge(&ast);
        host.paused().set_library(&combined);
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
        let ok = match outcome {
            Ok(Ok(value)) => {
                let quiet = input.trim_end().ends_with(';');
                if !value.is_unit() && !quiet {
                    host.printer.data(&format_value(&value));
                }
                self.library = self.library.merge(&ast.clone_functions_only());
                let mut writes: Vec<String> = host.executed()[before.0..]
                    .iter()
                    .map(|write| write.call.clone())
                    .collect();
                writes.extend(
                    host.plan()[before.1..]
                        .iter()
                        .filter_map(|item| match item {
                            crate::plan::PlanItem::Change { call, .. } => Some(call.clone()),
                            crate::plan::PlanItem::Gate { .. } => None,
                        }),
                );
                self.statements.push(Statement {
                    source: input.to_owned(),
                    writes,
                });
                true
            }
            Ok(Err(error)) => {
                let diagnostic = Diagnostic::from_rhai(&error);
                host.printer.error(&render_repl(&diagnostic, input));
                false
            }
            Err(join_error) => {
                host.printer
                    .error(&format!("error: internal: {join_error}"));
                false
            }
        };
        self.refresh_variables();
        ok
    }

    fn refresh_variables(&self) {
        let scope = self.scope.lock().unwrap_or_else(PoisonError::into_inner);
        let names: Vec<(String, Vec<String>)> = scope
            .iter()
            .map(|(name, _, value)| {
                let keys = value
                    .read_lock::<Map>()
                    .map(|map| map.keys().map(ToString::to_string).collect())
                    .unwrap_or_default();
                (name.to_owned(), keys)
            })
            .collect();
        *self
            .variables
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = names;
    }

    /// `:save FILE`: the session's successful statements as a runbook draft.
    fn save(&self, file: &Path) -> String {
        let context = self.host().context.name.clone();
        let draft = draft(&self.statements, context.as_deref(), &self.run_id);
        if file.exists() {
            return format!(
                "`{}` exists; not overwritten (pick another name)",
                file.display()
            );
        }
        match std::fs::write(file, draft) {
            Ok(()) => format!(
                "wrote {} ({} statement(s)); check it with `runbook check {}`",
                file.display(),
                self.statements.len(),
                file.display()
            ),
            Err(error) => format!("cannot write `{}`: {error}", file.display()),
        }
    }

    /// `:load FILE`: the file's functions and variables, defined in this session.
    fn load(&mut self, file: &Path) {
        match std::fs::read_to_string(file) {
            Ok(source) => {
                if self.evaluate(&source) {
                    self.host()
                        .printer
                        .data(&format!("loaded {}", file.display()));
                }
            }
            Err(error) => self
                .host()
                .printer
                .data(&format!("cannot read `{}`: {error}", file.display())),
        }
    }

    /// `:run FILE [NAME=VALUE...] [--step]`: a runbook inside this session,
    /// with its own variables, the session's gates and journal.
    fn run_file(&mut self, words: &[&str]) {
        let printer = Arc::clone(&self.host().printer);
        let Some((file, rest)) = words.split_first() else {
            return;
        };
        let file = Path::new(file);
        let source = match std::fs::read_to_string(file) {
            Ok(source) => source,
            Err(error) => {
                printer.data(&format!("cannot read `{}`: {error}", file.display()));
                return;
            }
        };
        let header = Header::parse(&source);
        let mut params = BTreeMap::new();
        let mut stepping = false;
        for word in rest {
            if *word == "--step" {
                stepping = true;
            } else if let Some((name, value)) = word.split_once('=') {
                params.insert(name.to_owned(), value.to_owned());
            } else {
                printer.data(&format!(
                    "`{word}` is not NAME=VALUE or --step; `:help :run` says more"
                ));
                return;
            }
        }
        let missing: Vec<&str> = header
            .params
            .iter()
            .filter(|spec| {
                spec.requirement == crate::header::Requirement::Required
                    && !params.contains_key(&spec.name)
            })
            .map(|spec| spec.name.as_str())
            .collect();
        if !missing.is_empty() {
            printer.data(&format!(
                "`{}` needs {}: `:run {} {}=...`",
                file.display(),
                missing.join(", "),
                file.display(),
                missing[0]
            ));
            return;
        }
        let host = Arc::clone(self.host());
        let ast = match crate::engine::compile(&self.engine, &source, &Scope::new()) {
            Ok(ast) => ast,
            Err(diagnostic) => {
                printer.error(&diagnostic.render_with(Some(file), Some(&source)));
                return;
            }
        };
        host.set_runbook(header, params, stepping);
        host.paused().set_library(&ast);
        host.reset_for_next_input();
        printer.line(&format!("▶ {} (in this session)", file.display()));
        let engine = Arc::clone(&self.engine);
        let task_host = Arc::clone(&host);
        let outcome = self.session.runtime.block_on(async move {
            tokio::task::spawn_blocking(move || {
                let mut scope = Scope::new();
                let result = engine.run_ast_with_scope(&mut scope, &ast);
                if result.is_err() {
                    crate::runner::roll_back(&task_host, &engine, &ast, false);
                }
                result
            })
            .await
        });
        host.set_runbook(Header::default(), BTreeMap::new(), false);
        match outcome {
            Ok(Ok(())) => printer.line(&format!("✓ {} finished", file.display())),
            Ok(Err(error)) => {
                let diagnostic = Diagnostic::from_rhai(&error);
                printer.error(&diagnostic.render_with(Some(file), Some(&source)));
            }
            Err(join_error) => printer.error(&format!("error: internal: {join_error}")),
        }
    }
}

/// A runbook draft from a session's statements: a header with the context
/// and the date, params for string values typed literally, writes in steps.
fn draft(statements: &[Statement], context: Option<&str>, run_id: &str) -> String {
    let mut header = format!(
        "//! Draft from REPL session {run_id}{}, saved {}\n//!\n//! Review before use: every write runs in a step of its own.\n",
        context
            .map(|name| format!(" in context `{name}`"))
            .unwrap_or_default(),
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    );
    let mut body = String::new();
    let mut steps = 0;
    for statement in statements {
        let source = statement.source.trim();
        let source = if source.ends_with(';') || source.ends_with('}') {
            source.to_owned()
        } else {
            format!("{source};")
        };
        if let Some((name, literal)) = literal_let(&source) {
            header.push_str(&format!(
                "//! @param {name} default={literal}  (typed in the session)\n"
            ));
            body.push_str(&format!("let {name} = param(\"{name}\");\n"));
            continue;
        }
        if statement.writes.is_empty() {
            body.push_str(&source);
            body.push('\n');
            continue;
        }
        steps += 1;
        let function = statement.writes[0]
            .split('(')
            .next()
            .unwrap_or("write")
            .to_owned();
        let step_name = format!("{function} #{steps}");
        match single_let(&source) {
            Some((name, expression)) => body.push_str(&format!(
                "let {name} = step(\"{step_name}\", || {{ {expression} }});\n"
            )),
            None if !source.contains("let ") => {
                let inner = source.trim_end_matches(';');
                body.push_str(&format!("step(\"{step_name}\", || {{ {inner}; }});\n"));
            }
            None => {
                body.push_str(&format!(
                    "// review: this statement writes but declares variables, so it is not in a step\n{source}\n"
                ));
            }
        }
    }
    format!("{header}\n{body}")
}

/// `let name = "text";` with a plain word as the text: a param candidate.
fn literal_let(source: &str) -> Option<(String, String)> {
    let (name, expression) = single_let(source)?;
    let literal = expression.strip_prefix('"')?.strip_suffix('"')?;
    let plain = !literal.is_empty()
        && literal
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/' | ':' | '@'));
    plain.then(|| (name, literal.to_owned()))
}

/// `let name = expression;` (one statement, one `let`): its parts.
fn single_let(source: &str) -> Option<(String, String)> {
    let rest = source.strip_prefix("let ")?;
    let (name, expression) = rest.split_once('=')?;
    let name = name.trim();
    let expression = expression.trim().strip_suffix(';')?.trim();
    let one_statement = !expression.contains(';') && !expression.contains("let ");
    (rhai::is_valid_identifier(name) && one_statement && !expression.starts_with('='))
        .then(|| (name.to_owned(), expression.to_owned()))
}

fn render_repl(diagnostic: &Diagnostic, input: &str) -> String {
    diagnostic.render_with(Some(Path::new("<repl>")), Some(input))
}

/// Show a value: strings as they are, everything else in script notation.
pub(crate) fn format_value(value: &Dynamic) -> String {
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
    use super::*;

    #[test]
    fn open_brackets_continue_the_input() {
        assert!(is_incomplete("let f = |x| {"));
        assert!(is_incomplete("foo(1,"));
        assert!(!is_incomplete("let f = |x| { x + 1 };"));
        assert!(!is_incomplete("\"{\""));
        assert!(!is_incomplete("1 + 2 // {"));
        assert!(is_incomplete("`multi"));
    }

    #[test]
    fn a_draft_turns_literals_into_params_and_writes_into_steps() {
        let statements = vec![
            Statement {
                source: "let version = \"v2\";".into(),
                writes: vec![],
            },
            Statement {
                source: "let n = 1 + 2;".into(),
                writes: vec![],
            },
            Statement {
                source: "k8s::set_image(\"backend\", \"registry/backend:\" + version)".into(),
                writes: vec!["k8s::set_image(\"backend\", \"registry/backend:v2\")".into()],
            },
            Statement {
                source: "let out = shell::run(\"true\");".into(),
                writes: vec!["shell::run(\"true\")".into()],
            },
        ];
        let text = draft(&statements, Some("lab"), "RUN");
        assert!(
            text.starts_with("//! Draft from REPL session RUN in context `lab`"),
            "{text}"
        );
        assert!(text.contains("//! @param version default=v2"), "{text}");
        assert!(text.contains("let version = param(\"version\");"), "{text}");
        assert!(text.contains("let n = 1 + 2;"), "{text}");
        assert!(
            text.contains("step(\"k8s::set_image #1\", || { k8s::set_image(\"backend\", \"registry/backend:\" + version); });"),
            "{text}"
        );
        assert!(
            text.contains("let out = step(\"shell::run #2\", || { shell::run(\"true\") });"),
            "{text}"
        );
    }
}
