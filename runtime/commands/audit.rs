//! `runbook audit verify RUN|FILE`: check a journal's hash chain.

use crate::error::{Diagnostic, Exit};
use crate::journal::{self, Verdict};

pub fn verify(run: &str) -> Result<Exit, Diagnostic> {
    let path = journal::locate(run)?;
    match journal::verify(&path)? {
        Verdict::Intact { lines, complete } => {
            println!("ok: {} — {lines} lines, hash chain intact", path.display());
            if !complete {
                println!(
                    "note: no end record (the run is still going, was killed, or its last lines are missing)"
                );
            }
            Ok(Exit::Ok)
        }
        Verdict::CutOff { lines } => {
            println!(
                "BROKEN: {} line {}: the line is cut off (no newline)",
                path.display(),
                lines + 1
            );
            Ok(Exit::StepFailed)
        }
        Verdict::Broken { line, problem } => {
            println!("BROKEN: {} line {line}: {problem}", path.display());
            Ok(Exit::StepFailed)
        }
    }
}
