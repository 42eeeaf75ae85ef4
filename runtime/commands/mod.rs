//! One file per subcommand. Each command returns `Result<Exit, Diagnostic>`:
//! how it ended, or the error that kept it from doing its job, which `cli`
//! renders once and maps to the exit code.

pub mod approve;
pub mod audit;
pub mod check;
pub mod completions;
pub mod doc;
pub mod fixtures;
pub mod gates;
pub mod init;
pub mod list;
pub mod repl;
pub mod resume;
pub mod run;
pub mod runs;
pub mod schedule;
pub mod show;
pub mod ssh;
