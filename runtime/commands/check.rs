//! `runbook check FILE|DIR...`: every problem of every runbook, without
//! running anything (the checks themselves are in `analysis.rs`).

use std::path::{Path, PathBuf};

use crate::analysis::{Known, check as analyse};
use crate::error::{Diagnostic, Exit};
use crate::header::Header;
use crate::session::Session;

/// The runbook files named by `paths`: files as given, folders' `*.rhai`.
pub fn runbook_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Diagnostic> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let listed = super::list::runbooks(path).map_err(|error| {
                Diagnostic::new(
                    format!("cannot read folder `{}`: {error}", path.display()),
                    Exit::Usage,
                )
            })?;
            files.extend(listed.into_iter().map(|(file, _)| file));
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// `runbook check`: problems fail (exit 2); warnings are shown and fail too
/// with `deny_warnings`.
pub fn check(paths: &[PathBuf], deny_warnings: bool) -> Result<Exit, Diagnostic> {
    let files = runbook_files(paths)?;
    let session = Session::detached()?;
    let engine = crate::engine::build(&session.host);
    let known = Known::new(&engine, &crate::engine::all_functions(&session.host));
    let mut failed = 0;
    for file in &files {
        let problems = match check_file(&engine, &known, file) {
            Ok((problems, warnings, source)) => {
                for problem in &problems {
                    eprintln!("{}\n", problem.render_with(Some(file), Some(&source)));
                }
                for warning in &warnings {
                    let text = warning.render_with(Some(file), Some(&source));
                    eprintln!("{}\n", text.replacen("error: ", "warning: ", 1));
                }
                problems.len() + if deny_warnings { warnings.len() } else { 0 }
            }
            Err(problem) => {
                eprintln!("{}\n", problem.render_with(Some(file), None));
                1
            }
        };
        if problems == 0 {
            println!("ok      {}", file.display());
        } else {
            println!(
                "FAILED  {} ({problems} problem{})",
                file.display(),
                if problems == 1 { "" } else { "s" }
            );
            failed += 1;
        }
    }
    if files.is_empty() {
        let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(Diagnostic::new(
            format!("no .rhai files in {}", names.join(", ")),
            Exit::Usage,
        ));
    }
    Ok(if failed == 0 { Exit::Ok } else { Exit::Usage })
}

fn check_file(
    engine: &rhai::Engine,
    known: &Known,
    file: &Path,
) -> Result<(Vec<Diagnostic>, Vec<Diagnostic>, String), Diagnostic> {
    let source = crate::engine::read_source(file)?;
    let header = Header::parse(&source);
    let ast = match crate::engine::compile(engine, &source, &rhai::Scope::new()) {
        Ok(ast) => ast,
        Err(diagnostic) => return Ok((vec![diagnostic], Vec::new(), source)),
    };
    let warnings = crate::analysis::warnings(&ast, known);
    Ok((analyse(&ast, &header, known), warnings, source))
}
