//! `runbook repl [--context NAME]`: the same stdlib and gates as a run, one
//! line at a time, journaled as a run of kind `repl`. History lives under the
//! state dir; `:help NAME` shows a function's doc; input with open brackets
//! continues on the next line; Ctrl-C stops the call in flight (and clears
//! the line at the prompt), Ctrl-D leaves.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use runbook_stdlib::Function;
use rustyline::Editor;
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;

use crate::error::{Diagnostic, Exit};
use crate::event::{Event, Kind, Mode};
use crate::repl::{COMMANDS, EditorPrompter, Next, Repl, ReplHelper, SharedEditor};
use crate::session::Session;

/// Run the REPL until `:quit` or Ctrl-D.
pub fn repl(context: Option<&str>) -> Result<Exit, Diagnostic> {
    let cwd = std::env::current_dir().unwrap_or_default();
    let session = Session::interactive(context, &[&cwd])?;
    let engine = crate::engine::build(&session.host);
    let functions = crate::engine::all_functions(&session.host);
    let mut words: Vec<String> = functions.iter().map(Function::qualified_name).collect();
    words.extend(
        runbook_stdlib::module_names()
            .into_iter()
            .map(|module| format!("{module}::")),
    );
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
    let editor: SharedEditor = Arc::new(Mutex::new(editor));
    session
        .host
        .set_prompter(Arc::new(EditorPrompter(Arc::clone(&editor))));

    // The session is a run of kind `repl`: journaled from the first line.
    let run_id = crate::journal::new_run_id();
    let journal =
        crate::journal::Journal::create(&run_id, session.host.printer.redactor().clone())?;
    let journal_path = journal.path().to_owned();
    session.host.attach_journal(journal);
    session.host.emit(&Event::Run {
        run_id: run_id.clone(),
        runbook: "<repl>".into(),
        cwd: cwd.display().to_string(),
        sha256: String::new(),
        params: serde_json::Map::new(),
        context: session.host.context.name.clone(),
        user: crate::identity::user(),
        host: crate::identity::hostname(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        mode: Mode::Live,
        kind: Kind::Repl,
        time: crate::event::now(),
    });
    let started = Instant::now();

    // Ctrl-C while a line runs stops it (at the prompt, rustyline handles it).
    // The handler is installed here, before the first prompt, not when a
    // task first gets polled: a Ctrl-C in between would kill the session.
    let signal_host = Arc::clone(&session.host);
    let interrupts = {
        let _entered = session.runtime.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
    };
    if let Ok(mut interrupts) = interrupts {
        session.runtime.spawn(async move {
            while interrupts.recv().await.is_some() {
                signal_host.interrupt();
            }
        });
    }

    let context_name = session
        .host
        .context
        .name
        .clone()
        .unwrap_or_else(|| "no context".into());
    let protected = if session.host.context.protected {
        " — protected: every write asks for the context's name (`:unlock 10m`)"
    } else {
        ""
    };
    session.host.printer.line(&format!(
        "runbook {} REPL ({context_name}){protected}. `:help` for help, Ctrl-D to leave.",
        env!("CARGO_PKG_VERSION")
    ));
    let mut repl = Repl::new(session, engine, functions, variables, run_id.clone());
    loop {
        let prompt = repl.prompt();
        let read = editor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .readline(&prompt);
        match read {
            Ok(line) => {
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                repl.record_input(line);
                if line.starts_with(':') {
                    if repl.command(line) == Next::Quit {
                        break;
                    }
                } else {
                    repl.evaluate(line);
                }
            }
            // Ctrl-C at the prompt clears the line; the session goes on.
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
    {
        // What was typed is kept masked: a secret pasted at the prompt, or
        // one the session learned later, never reaches the history file.
        let redactor = repl.session.host.printer.redactor().clone();
        let mut editor = editor.lock().unwrap_or_else(PoisonError::into_inner);
        let entries: Vec<String> = editor
            .history()
            .iter()
            .map(|entry| redactor.mask(entry).into_owned())
            .collect();
        let _ = editor.clear_history();
        for entry in entries {
            let _ = editor.add_history_entry(entry);
        }
        let _ = editor.save_history(&history);
    }
    let host = Arc::clone(&repl.session.host);
    host.emit(&Event::End {
        status: Exit::Ok,
        exit_code: 0,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        error: None,
        planned_changes: host.planned_changes(),
        time: crate::event::now(),
    });
    repl.session.runtime.block_on(runbook_stdlib::finish_run());
    host.detach_journal();
    host.printer.line(&format!(
        "journal: {} (session {run_id})",
        journal_path.display()
    ));
    Ok(Exit::Ok)
}
