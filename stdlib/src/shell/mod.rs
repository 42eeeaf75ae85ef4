//! `shell::*`: local commands. A string runs under `sh -c`; an array runs
//! its argv directly with no shell in between.

mod process;

use rhai::{Array, Dynamic};

use crate::function;
use crate::function::{Call, Failure, Function, Text};

pub(crate) use process::Command;

const OPTIONS: &[&str] = &["check", "timeout", "env", "cwd", "stdin"];

fn command(call: &Call<'_>) -> Result<Command, Failure> {
    let value = call.arg(0);
    let argv = if let Some(text) = Text::from_dynamic(&value) {
        vec![Text::Plain("sh".into()), Text::Plain("-c".into()), text]
    } else if let Some(items) = value.read_lock::<Array>() {
        let argv = items
            .iter()
            .map(|item| {
                Text::from_dynamic(item).ok_or_else(|| {
                    call.bad_arg(
                        0,
                        format!(
                            "must hold strings only, found {}",
                            crate::values::type_name(item)
                        ),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if argv.is_empty() {
            return Err(call
                .bad_arg(0, "is an empty array; give at least the program")
                .into());
        }
        argv
    } else {
        return Err(call
            .bad_arg(
                0,
                format!(
                    "must be a string or an array of strings, got {}",
                    crate::values::type_name(&value)
                ),
            )
            .into());
    };
    let options = call.options(1, OPTIONS)?;
    let mut env = Vec::new();
    if let Some(map) = options.map("env")? {
        for (key, value) in map {
            let text = Text::from_dynamic(&value).ok_or_else(|| {
                call.bad_arg(1, format!("env `{key}` must be a string or a secret"))
            })?;
            env.push((key.to_string(), text));
        }
    }
    Ok(Command {
        argv,
        shell: Text::from_dynamic(&value).is_some(),
        env,
        cwd: options.string("cwd")?,
        stdin: options.text("stdin")?,
        timeout: options.duration("timeout")?,
        check: options.bool("check")?.unwrap_or(true),
    })
}

fn run(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let command = command(call)?;
    let output = call.block_on(command.run())?;
    Ok(output.into_dynamic())
}

pub(crate) fn functions() -> Vec<Function> {
    vec![
        function! {
            /// Run a local command that changes something. A string runs under
            /// `sh -c`; an array runs the program directly. Not run in a dry-run:
            /// it is listed in the plan. A non-zero exit is an error (showing the
            /// exit code and the end of stderr) unless `check: false`.
            /// Options: `check` (default true), `timeout` ("30s"), `env` (map; values
            /// may be secrets), `cwd`, `stdin` (text sent to the command). Hand a
            /// secret to a command through `env` or `stdin`, never inside the command
            /// line (every local user can read that in /proc/*/cmdline). The command
            /// does not inherit the variables the context reads secrets from.
            ///
            /// ```rhai
            /// let r = shell::run(["touch", "/tmp/runbook-example"]);
            /// assert(r.code == 0, "touch failed");
            /// ```
            write fn shell::run("cmd: string | array", "opts?: map") -> "#{stdout: string, stderr: string, code: int, duration_ms: int}"
            run
        },
        function! {
            /// Run a local command that only observes (uname, df, git rev-parse).
            /// Runs in a dry-run too. Same arguments and result as `shell::run`.
            /// runbook cannot check that a command only observes: whatever you pass
            /// runs, in a dry-run as well. Use `shell::run` for anything that could
            /// change something.
            ///
            /// ```rhai
            /// let kernel = shell::read("uname -s").stdout.trim();
            /// ```
            read fn shell::read("cmd: string | array", "opts?: map") -> "#{stdout: string, stderr: string, code: int, duration_ms: int}"
            run
        },
    ]
}
