//! `runbook audit verify RUN|FILE`: check a journal's keyed hash chain and
//! its end witnesses.

use crate::error::{Diagnostic, Exit};
use crate::journal::{self, Verdict};

pub fn verify(run: &str, allow_incomplete: bool) -> Result<Exit, Diagnostic> {
    let path = journal::locate(run)?;
    match journal::verify(&path)? {
        Verdict::Intact { lines, complete } => {
            if complete {
                println!(
                    "ok: {} — {lines} lines, keyed hash chain intact, end witnessed",
                    path.display()
                );
                return Ok(Exit::Ok);
            }
            if allow_incomplete {
                println!("ok: {} — {lines} lines, hash chain intact", path.display());
                println!(
                    "note: no end record (the run is still going, was killed, or its last lines are missing)"
                );
                return Ok(Exit::Ok);
            }
            println!(
                "INCOMPLETE: {} — {lines} lines chain, but there is no end record (the run is still going, was killed, or its last lines were removed); --allow-incomplete accepts that",
                path.display()
            );
            Ok(Exit::StepFailed)
        }
        Verdict::CutOff { lines } if allow_incomplete => {
            println!("ok: {} — {lines} lines, hash chain intact", path.display());
            println!(
                "note: line {} is cut off (no newline) and there is no end record: what a killed run leaves",
                lines + 1
            );
            Ok(Exit::Ok)
        }
        Verdict::CutOff { lines } => {
            println!(
                "BROKEN: {} line {}: the line is cut off (no newline); --allow-incomplete accepts what a killed run leaves",
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
