//! `runbook run FILE [NAME=VALUE...]`: run a runbook, or plan it with `--dry-run`.

use crate::error::{Diagnostic, Exit};
use crate::runner::RunOptions;

pub fn run(options: &RunOptions) -> Result<Exit, Diagnostic> {
    crate::runner::run(options)
}
