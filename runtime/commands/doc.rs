//! `runbook doc [TOPIC] [--markdown [--out FILE]]`: the stdlib reference
//! (rendered by `reference.rs` from the functions' registrations).

use std::path::Path;

use crate::error::{Diagnostic, Exit};
use crate::session::Session;

pub fn doc(topic: Option<&str>, markdown: bool, out: Option<&Path>) -> Result<Exit, Diagnostic> {
    let session = Session::detached()?;
    let functions = crate::engine::all_functions(&session.host);
    if markdown {
        let text = crate::reference::markdown(&functions);
        match out {
            Some(path) => {
                std::fs::write(path, text).map_err(|error| {
                    Diagnostic::new(
                        format!("cannot write `{}`: {error}", path.display()),
                        Exit::Usage,
                    )
                })?;
                eprintln!("wrote {}", path.display());
            }
            None => print!("{text}"),
        }
        return Ok(Exit::Ok);
    }
    match topic {
        None => print!("{}", crate::reference::overview(&functions)),
        Some(topic) => {
            let text = crate::reference::topic(&functions, topic).ok_or_else(|| {
                Diagnostic::new(format!("no module or function `{topic}`"), Exit::Usage)
                    .hint("`runbook doc` lists them all")
            })?;
            print!("{text}");
        }
    }
    Ok(Exit::Ok)
}
