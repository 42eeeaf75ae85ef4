//! `runbook repl [--context NAME]`: the same stdlib and gates as a run, one
//! line at a time. History lives under the state dir; `:help NAME` shows a
//! function's doc; input with open brackets continues on the next line.

use std::sync::{Arc, Mutex};

use runbook_stdlib::Function;
use rustyline::Editor;
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;

use crate::error::{Diagnostic, Exit};
use crate::repl::{COMMANDS, Repl, ReplHelper};
use crate::session::Session;

/// Run the REPL until `:quit` or Ctrl-D.
pub fn repl(context: Option<&str>) -> Result<Exit, Diagnostic> {
    let cwd = std::env::current_dir().unwrap_or_default();
    let session = Session::interactive(context, &[&cwd])?;
    let engine = crate::engine::build(&session.host);
    let functions = crate::engine::all_functions(&session.host);
    let mut words: Vec<String> = functions.iter().map(Function::qualified_name).collect();
    words.extend(COMMANDS.iter().map(|(name, _)| (*name).to_owned()));
    let variables = Arc::new(Mutex::new(Vec::new()));
    let helper = ReplHelper {
        words,
        variables: Arc::clone(&variables),
    };
    let config = rustyline::Config::builder()
        .auto_add_history(true)
        .max_history_size(5000)
        .map_or_else(
            |_| rustyline::Config::default(),
            rustyline::config::Builder::build,
        );
    let mut editor: Editor<ReplHelper, DefaultHistory> =
        Editor::with_config(config).map_err(|error| {
            Diagnostic::new(
                format!("cannot start the line editor: {error}"),
                Exit::Usage,
            )
        })?;
    editor.set_helper(Some(helper));
    let history = crate::journal::state_dir().join("history");
    let _ = editor.load_history(&history);

    // Ctrl-C while a line runs stops it (at the prompt, rustyline handles it).
    let signal_host = Arc::clone(&session.host);
    session.runtime.spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            signal_host.interrupt();
        }
    });

    let context_name = session
        .host
        .context
        .name
        .clone()
        .unwrap_or_else(|| "no context".into());
    session.host.printer.line(&format!(
        "runbook {} REPL ({context_name}). `:help` for help, Ctrl-D to leave.",
        env!("CARGO_PKG_VERSION")
    ));
    let prompt = format!("{context_name}> ");
    let mut repl = Repl::new(session, engine, functions, variables);
    loop {
        match editor.readline(&prompt) {
            Ok(line) => {
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                if line.starts_with(':') {
                    if !repl.command(line) {
                        break;
                    }
                } else {
                    repl.evaluate(line);
                }
            }
            Err(ReadlineError::Interrupted) => {}
            Err(ReadlineError::Eof) => break,
            Err(error) => {
                eprintln!("error: {error}");
                break;
            }
        }
    }
    if let Some(parent) = history.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let _ = editor.save_history(&history);
    repl.session.runtime.block_on(runbook_stdlib::finish_run());
    Ok(Exit::Ok)
}
