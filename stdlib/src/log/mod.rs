//! `log::*`: messages into the output and the journal. For details shown
//! only with `--verbose`, scripts use Rhai's `debug(...)` (`debug` is a
//! reserved word, so there is no `log::debug`).

use rhai::Dynamic;

use crate::function;
use crate::function::{Call, Failure, Function};
use crate::host::Level;

fn message(call: &Call<'_>) -> String {
    let value = call.arg(0);
    match value.clone().into_string() {
        Ok(text) => text,
        Err(_) => crate::values::render(&value),
    }
}

fn log_at(call: &Call<'_>, level: Level) -> Result<Dynamic, Failure> {
    call.host.log(level, &message(call));
    Ok(Dynamic::UNIT)
}

pub(crate) fn functions() -> Vec<Function> {
    vec![
        function! {
            /// Log a message at level info: shown in the output, kept in the journal.
            ///
            /// ```rhai
            /// log::info("draining " + 3 + " nodes");
            /// ```
            local fn log::info("message: any") -> "()"
            |call| log_at(call, Level::Info)
        },
        function! {
            /// Log a warning: shown highlighted, kept in the journal.
            ///
            /// ```rhai
            /// log::warn("replica lag above 10s");
            /// ```
            local fn log::warn("message: any") -> "()"
            |call| log_at(call, Level::Warn)
        },
        function! {
            /// Log an error message without failing the run (use `fail` to stop it).
            ///
            /// ```rhai
            /// log::error("backup of `users` was empty");
            /// ```
            local fn log::error("message: any") -> "()"
            |call| log_at(call, Level::Error)
        },
    ]
}
