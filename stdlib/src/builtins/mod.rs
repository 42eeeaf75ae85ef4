//! Built-ins called without a module prefix: time, failing, retrying,
//! waiting and secrets. (`param`, `step`, `approve` and friends need the
//! run's state and live in the runtime.)

use std::time::{Duration, Instant};

use rhai::{Dynamic, EvalAltResult};

use crate::function;
use crate::function::{Call, Failure, Function, Text};
use crate::host::StdlibError;

/// Whether an error must end the run at once rather than be retried.
fn is_final(error: &EvalAltResult) -> bool {
    if matches!(error, EvalAltResult::ErrorTerminated(..)) {
        return true;
    }
    if let EvalAltResult::ErrorInFunctionCall(_, _, inner, _) = error {
        return is_final(inner);
    }
    matches!(
        StdlibError::from_rhai(error),
        Some(StdlibError::Interrupted | StdlibError::Refused { .. } | StdlibError::Locked { .. })
    )
}

fn sleep_for(call: &Call<'_>, duration: Duration) -> Result<(), StdlibError> {
    call.block_on(async {
        tokio::time::sleep(duration).await;
        Ok(())
    })
}

fn retry(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let options = call.options(0, &["attempts", "backoff", "max_delay"])?;
    let closure = call.fn_ptr(1)?;
    let attempts = options.int("attempts")?.unwrap_or(3).max(1);
    let mut delay = options
        .duration("backoff")?
        .unwrap_or(Duration::from_secs(1));
    let max_delay = options
        .duration("max_delay")?
        .unwrap_or(Duration::from_secs(30));
    let mut attempt = 1;
    loop {
        match call.call_fn(&closure, Vec::new()) {
            Ok(value) => return Ok(value),
            Err(error) if attempt >= attempts || is_final(&error) => return Err(error.into()),
            Err(error) => {
                let message = StdlibError::from_rhai(&error)
                    .map_or_else(|| error.to_string(), |inner| inner.to_string());
                call.host.log(
                    crate::host::Level::Warn,
                    &format!(
                        "attempt {attempt}/{attempts} failed: {message}; retrying in {}",
                        crate::duration::human(delay)
                    ),
                );
                sleep_for(call, delay)?;
                delay = (delay * 2).min(max_delay);
                attempt += 1;
            }
        }
    }
}

fn wait_until(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let timeout = call.duration(0)?;
    let interval = call.duration(1)?;
    let closure = call.fn_ptr(2)?;
    let started = Instant::now();
    loop {
        let value = call.call_fn(&closure, Vec::new())?;
        match value.as_bool() {
            Ok(true) => return Ok(Dynamic::TRUE),
            Ok(false) => {}
            Err(_) => {
                return Err(call
                    .bad_arg(2, "must return true or false (it returned something else)")
                    .into());
            }
        }
        if started.elapsed() + interval > timeout {
            return Err(StdlibError::Timeout(crate::duration::human(timeout)).into());
        }
        sleep_for(call, interval)?;
    }
}

pub(crate) fn functions() -> Vec<Function> {
    vec![
        function! {
            /// Pause the run. Ctrl-C and step timeouts interrupt the pause.
            ///
            /// ```rhai
            /// sleep("2s");
            /// ```
            local fn sleep("duration: string | int") -> "()"
            |call| {
                let duration = call.duration(0)?;
                sleep_for(call, duration)?;
                Ok(Dynamic::UNIT)
            }
        },
        function! {
            /// The current time in UTC, RFC 3339 (`2026-11-22T01:02:03Z`).
            ///
            /// ```rhai
            /// let started = now();
            /// ```
            local fn now() -> "string"
            |_call| Ok(Dynamic::from(chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()))
        },
        function! {
            /// The current UTC time formatted with a chrono/strftime format.
            ///
            /// ```rhai
            /// let key = "backups/db/" + timestamp("%Y%m%dT%H%M%SZ") + ".dump";
            /// ```
            local fn timestamp("format: string") -> "string"
            |call| {
                use std::fmt::Write as _;
                let format = call.string(0)?;
                let items = chrono::format::StrftimeItems::new(&format).parse().map_err(|_| {
                    call.bad_arg(0, format!("`{format}` is not a valid strftime format"))
                })?;
                let mut out = String::new();
                write!(out, "{}", chrono::Utc::now().format_with_items(items.iter()))
                    .map_err(|_| call.bad_arg(0, format!("`{format}` cannot be formatted")))?;
                Ok(Dynamic::from(out))
            }
        },
        function! {
            /// Stop the run with an error: the current step fails and rollbacks run.
            ///
            /// ```rhai
            /// if 1 > 2 { fail("replication is broken"); }
            /// ```
            local fn fail("message: string") -> "()"
            |call| {
                let value = call.arg(0);
                let message = value.clone().into_string().unwrap_or_else(|_| crate::values::render(&value));
                Err(StdlibError::Script(message).into())
            }
        },
        function! {
            /// Fail with `message` unless `condition` is true.
            ///
            /// ```rhai
            /// assert(1 + 1 == 2, "arithmetic is broken");
            /// ```
            local fn assert("condition: bool", "message: string") -> "()"
            |call| {
                let condition = call.arg(0).as_bool().map_err(|_| call.bad_arg(0, format!("must be true or false, got {}", crate::values::type_name(&call.arg(0)))))?;
                if condition {
                    Ok(Dynamic::UNIT)
                } else {
                    Err(StdlibError::Script(format!("assertion failed: {}", call.string(1)?)).into())
                }
            }
        },
        function! {
            /// Call `fn` until it succeeds, up to `attempts` times (default 3), sleeping
            /// `backoff` (default "1s", doubling, at most `max_delay`, default "30s")
            /// between attempts. Ctrl-C and rejected gates are never retried.
            ///
            /// ```rhai
            /// let answer = retry(#{attempts: 2, backoff: "10ms"}, || 42);
            /// ```
            local fn retry("opts: map", "fn: closure") -> "any"
            retry
        },
        function! {
            /// Call `fn` every `interval` until it returns true; fail after `timeout`.
            ///
            /// ```rhai
            /// let deadline_ok = wait_until("5s", "100ms", || true);
            /// ```
            local fn wait_until("timeout: string", "interval: string", "fn: closure") -> "bool"
            wait_until
        },
        function! {
            /// A secret from the active context's `secrets` table (`env:VAR` or
            /// `file:PATH`). The value prints as `***` everywhere and is masked in
            /// all output, even when it is part of a longer string.
            ///
            /// Secrets shorter than 6 characters are refused: masking them inside
            /// other text would garble output and reveal them. Options:
            /// `allow_short: true` takes a short one anyway and masks it only
            /// where a whole value equals it, never as part of a longer text.
            ///
            /// ```rhai
            /// let token = secret("api_token");
            /// ```
            read fn secret("name: string", "opts?: map") -> "secret"
            |call| {
                let name = call.string(0)?;
                let allow_short = call.options(1, &["allow_short"])?.bool("allow_short")?.unwrap_or(false);
                let secret = call.host.secret(&name)?;
                let length = secret.expose().chars().count();
                if length < crate::redact::MIN_SECRET_LEN && !allow_short {
                    return Err(crate::host::StdlibError::usage(
                        format!("secret `{name}` is {length} character{} long: secrets shorter than {} characters cannot be masked safely in output", if length == 1 { "" } else { "s" }, crate::redact::MIN_SECRET_LEN),
                        format!("use a longer secret, or `secret(\"{name}\", #{{allow_short: true}})` to mask it only where a whole value equals it"),
                    ).into());
                }
                Ok(Dynamic::from(secret))
            }
        },
        function! {
            /// Mark a value the runbook made as a secret: from here on it prints as
            /// `***` and is masked in all output and in the journal, like a value from
            /// `secret()`. Use it for a value that is only sensitive because of where
            /// it goes (a generated connection string stored with `k8s::set_secret`).
            ///
            /// Values shorter than 6 characters are refused, as for `secret()`;
            /// `allow_short: true` masks them only where a whole value equals them.
            ///
            /// ```rhai
            /// let url = secret_value("postgres://app@db.internal/app");
            /// ```
            local fn secret_value("value: string | secret", "opts?: map") -> "secret"
            |call| {
                let text = call.text(0)?;
                if let Text::Secret(secret) = text {
                    return Ok(Dynamic::from(secret));
                }
                let allow_short = call.options(1, &["allow_short"])?.bool("allow_short")?.unwrap_or(false);
                let value = text.expose();
                let length = value.chars().count();
                if length < crate::redact::MIN_SECRET_LEN && !allow_short {
                    return Err(crate::host::StdlibError::usage(
                        format!("secret_value: the value is {length} character{} long: secrets shorter than {} characters cannot be masked safely in output", if length == 1 { "" } else { "s" }, crate::redact::MIN_SECRET_LEN),
                        "use `secret_value(x, #{allow_short: true})` to mask it only where a whole value equals it",
                    ).into());
                }
                Ok(Dynamic::from(call.secret(value)))
            }
        },
        function! {
            /// Whether `value` is unknown until the run: in a dry-run, what a write
            /// that was only planned returned, or (offline) a read no fixture
            /// answers, or anything computed from one; strings of it read
            /// `<module::fn(...)...>`. Lets a runbook skip checking what only a real
            /// run can know.
            ///
            /// ```rhai
            /// let d = k8s::get("deployment", "backend");
            /// if !is_unknown(d) { assert(d.spec.replicas > 0, "backend is scaled to zero"); }
            /// ```
            local fn is_unknown("value: any") -> "bool"
            |call| Ok(Dynamic::from_bool(crate::unknown::holds_unknown(&call.arg(0))))
        },
    ]
}
