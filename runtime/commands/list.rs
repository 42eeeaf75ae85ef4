//! `runbook list [DIR]`: the runbooks in a folder with their one-line
//! description and params, read from each file's header.

use std::path::{Path, PathBuf};

use crate::error::{Diagnostic, Exit};
use crate::header::{Header, Requirement};

pub fn list(dir: Option<PathBuf>) -> Result<Exit, Diagnostic> {
    let dir = dir.unwrap_or_else(|| {
        let runbooks = PathBuf::from("runbooks");
        if runbooks.is_dir() {
            runbooks
        } else {
            PathBuf::from(".")
        }
    });
    let found = runbooks(&dir).map_err(|error| {
        Diagnostic::new(
            format!("cannot read `{}`: {error}", dir.display()),
            Exit::Usage,
        )
    })?;
    if found.is_empty() {
        eprintln!("no .rhai files in {}", dir.display());
    } else {
        print!("{}", render(&found));
    }
    Ok(Exit::Ok)
}

pub fn runbooks(folder: &Path) -> std::io::Result<Vec<(PathBuf, Header)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(folder)? {
        let path = entry?.path();
        if path
            .extension()
            .is_some_and(|extension| extension == "rhai")
        {
            let source = std::fs::read_to_string(&path).unwrap_or_default();
            found.push((path, Header::parse(&source)));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

pub fn render(runbooks: &[(PathBuf, Header)]) -> String {
    let mut out = String::new();
    for (path, header) in runbooks {
        let summary = if header.summary.is_empty() {
            "(no description: add a `//!` line at the top)"
        } else {
            &header.summary
        };
        out.push_str(&format!("{}\n    {summary}\n", path.display()));
        for param in &header.params {
            let requirement = match &param.requirement {
                Requirement::Required => "required".to_owned(),
                Requirement::Optional => "optional".to_owned(),
                Requirement::Default(value) => format!("default {value}"),
            };
            out.push_str(&format!(
                "    {:<12} {:<18} {}\n",
                param.name, requirement, param.description
            ));
        }
    }
    out
}
