//! `ssh::*`: commands and files on remote hosts, over one multiplexed master
//! connection per host; fan-out over groups with concurrency limits and
//! rolling batches. Masters outlive a run by the context's `ssh.persist`
//! (default 60 s) so that the next run reuses them (`masters.rs`); the
//! user's own ControlMaster is used where their ssh_config has one
//! (`pool.rs`).

mod exec;
mod inventory;
pub mod masters;
mod pool;
mod transfer;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use futures_util::StreamExt;
use rhai::{Array, Dynamic, Map};
use tokio_util::sync::CancellationToken;

use self::exec::{Exec, HostOutput, Kill, RunError};
use self::inventory::{Inventory, SshOptions, Target};
use self::pool::How;
use crate::function;
use crate::function::{Call, Failure, Function, Text};
use crate::host::{Level, Progress, StdlibError};

pub(crate) use pool::close_connections;

const EXEC_OPTIONS: &[&str] = &["check", "sudo", "timeout", "env"];
const FANOUT_OPTIONS: &[&str] = &[
    "check",
    "sudo",
    "timeout",
    "env",
    "parallel",
    "batch",
    "fail_fast",
    "max_fail_percent",
];

/// Lines of output shown per host on screen; the value holds everything.
const TAIL_LINES: usize = 5;

fn inventory(call: &Call<'_>) -> Result<Inventory, StdlibError> {
    Inventory::from_sections(&call.host.section(""), &call.host.section("ssh"))
}

/// How a host's connection was got, if this call is the run's first on it.
type Connected = Option<(How, bool)>;

/// Run `exec` on `target` over its master. A master that stopped answering
/// is replaced once per call: the command had not started, so it is started
/// again over the new one; a read whose connection broke mid-command is
/// started again too (a write is not: it may have run, and its error says
/// so). Also says how the connection was got, when there was one.
async fn run_on(
    exec: &Exec,
    target: &Target,
    options: &SshOptions,
    cancel: &CancellationToken,
) -> (Result<HostOutput, RunError>, Connected) {
    let (link, first) = match pool::session(target, options).await {
        Ok(found) => found,
        Err(error) => return (Err(RunError::Failed(error)), None),
    };
    let again = match exec.run(&link.session, target, cancel).await {
        Err(RunError::NoMaster(error)) => error,
        // A read is safe to run again: over a fresh master.
        Err(RunError::Broken(_)) if exec.read => {
            pool::retire(target, options, &link).await;
            return match pool::session(target, options).await {
                Ok((link, _)) => (
                    exec.run(&link.session, target, cancel).await,
                    Some((link.how, true)),
                ),
                Err(error) => (Err(RunError::Failed(error)), None),
            };
        }
        Err(RunError::Broken(error)) => {
            pool::retire(target, options, &link).await;
            return (Err(RunError::Broken(error)), Some((link.how, first)));
        }
        outcome => return (outcome, Some((link.how, first))),
    };
    match pool::redial(target, options, &link).await {
        Ok(None) => (Err(RunError::Failed(again)), Some((link.how, first))),
        Ok(Some(link)) => {
            let result = exec.run(&link.session, target, cancel).await;
            (result, Some((link.how, true)))
        }
        Err(error) => (Err(RunError::Failed(error)), None),
    }
}

/// The debug line a single-host call journals when it is the run's first
/// on the host.
fn connection_note(target: &Target, how: How) -> String {
    let what = match how {
        How::New => "connected",
        How::Reused => "reused a live master connection from an earlier run",
        How::User => "uses the master of the user's own ssh_config (ControlPath)",
    };
    format!(
        "ssh `{}`: {what} (connection: {})",
        target.name,
        how.as_str()
    )
}

fn exec_from(
    call: &Call<'_>,
    opts_index: usize,
    known: &[&str],
) -> Result<(Exec, function::Options), StdlibError> {
    let command = call.text(1)?;
    let options = call.options(opts_index, known)?;
    let mut env = Vec::new();
    if let Some(map) = options.map("env")? {
        for (name, value) in map {
            let text = Text::from_dynamic(&value).ok_or_else(|| {
                call.bad_arg(
                    opts_index,
                    format!("env `{name}` must be a string or a secret"),
                )
            })?;
            env.push((name.to_string(), text));
        }
    }
    let exec = Exec {
        command,
        env,
        read: call.function().effect == crate::host::Effect::Read,
        sudo: options.bool("sudo")?.unwrap_or(false),
        timeout: options.duration("timeout")?,
        check: options.bool("check")?.unwrap_or(true),
    };
    Ok((exec, options))
}

/// The last `lines` lines, each cut at 200 characters: what the screen shows
/// of a host's output (the value keeps all of it).
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.trim_end().lines().collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|line| {
            if line.chars().count() > 200 {
                format!(
                    "{}… ({} more characters)",
                    line.chars().take(200).collect::<String>(),
                    line.chars().count() - 200
                )
            } else {
                (*line).to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn exec_one(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let host = call.string(0)?;
    let (exec, _) = exec_from(call, 2, EXEC_OPTIONS)?;
    let inventory = inventory(call)?;
    let target = inventory.resolve_host(&host)?;
    let (exec_ref, target_ref) = (&exec, &target);
    let (result, connected) = call.block_on_cancellable(|cancel| async move {
        Ok(run_on(exec_ref, target_ref, &inventory.options, &cancel).await)
    })?;
    if let Some((how, true)) = connected {
        call.host.log(Level::Debug, &connection_note(&target, how));
    }
    match result {
        Ok(output) => Ok(Dynamic::from_map(output.into_map())),
        // Cancelled: journal the host's command as killed (or not
        // confirmed), then fail as the cancellation says.
        Err(RunError::Cancelled(kill)) => {
            let label = format!("{}({})", call.function().qualified_name(), exec.display());
            report_kill(call.host, &label, &kill, &exec.display(), connected);
            Err(call.host.cancel_reason().into())
        }
        Err(RunError::NotStarted(_)) => Err(call.host.cancel_reason().into()),
        Err(error) => Err(error.into_error(&exec.display()).into()),
    }
}

/// A single-host command the run cancelled, as a one-host fan-out (its
/// `host` event carries `killed`).
fn report_kill(
    host: &dyn crate::host::Host,
    label: &str,
    kill: &Kill,
    command: &str,
    connected: Connected,
) {
    host.progress(Progress::Start { label, total: 1 });
    host.progress(Progress::Item {
        target: &kill.host,
        ok: false,
        code: kill.code,
        duration: kill.duration,
        error: Some(&kill.describe(command)),
        output_tail: "",
        connection: connected.map(|(how, _)| how.as_str()),
        killed: Some(kill.confirmed),
    });
    host.progress(Progress::End {
        ok: 0,
        failed: 1,
        skipped: 0,
    });
}

/// Targets from a host name, a group name, or an array of names.
fn targets(call: &Call<'_>, inventory: &Inventory) -> Result<Vec<Target>, StdlibError> {
    let value = call.arg(0);
    if let Ok(name) = value.clone().into_string() {
        return inventory.resolve(&name);
    }
    if let Some(names) = value.read_lock::<Array>() {
        let mut targets = Vec::new();
        for name in names.iter() {
            let name = name
                .clone()
                .into_string()
                .map_err(|_| call.bad_arg(0, "must hold host names (strings)"))?;
            targets.extend(inventory.resolve(&name)?);
        }
        return Ok(targets);
    }
    Err(call.bad_arg(
        0,
        format!(
            "must be a group, a host, or an array of hosts, got {}",
            crate::values::type_name(&value)
        ),
    ))
}

/// `batch: 5` or `batch: "25%"` → wave size.
fn batch_size(
    call: &Call<'_>,
    options: &function::Options,
    total: usize,
) -> Result<usize, StdlibError> {
    let Some(value) = options.get("batch") else {
        return Ok(total.max(1));
    };
    let size = if let Ok(count) = value.as_int() {
        usize::try_from(count).unwrap_or(0)
    } else if let Some(percent) = value
        .clone()
        .into_string()
        .ok()
        .and_then(|text| text.trim().strip_suffix('%').map(str::to_owned))
    {
        let percent: f64 = percent
            .trim()
            .parse()
            .map_err(|_| call.bad_arg(2, "`batch` must be a count or a percentage like \"25%\""))?;
        ((total as f64) * percent / 100.0).ceil() as usize
    } else {
        return Err(call.bad_arg(2, "`batch` must be a count or a percentage like \"25%\""));
    };
    if size == 0 {
        return Err(call.bad_arg(2, "`batch` must be at least 1 host"));
    }
    Ok(size)
}

/// One host's outcome in a fan-out.
enum HostResult {
    Done(HostOutput),
    Failed {
        host: String,
        error: StdlibError,
        output: Option<HostOutput>,
    },
    Skipped(String),
}

impl HostResult {
    fn into_map(self) -> Map {
        match self {
            HostResult::Done(output) => {
                let mut map = output.into_map();
                map.insert("ok".into(), Dynamic::TRUE);
                map.insert("error".into(), Dynamic::UNIT);
                map
            }
            HostResult::Failed {
                host,
                error,
                output,
            } => {
                let mut map = output.map(HostOutput::into_map).unwrap_or_else(|| {
                    let mut map = Map::new();
                    map.insert("host".into(), host.into());
                    map.insert("code".into(), Dynamic::from_int(-1));
                    map.insert("stdout".into(), "".into());
                    map.insert("stderr".into(), "".into());
                    map
                });
                map.insert("ok".into(), Dynamic::FALSE);
                map.insert("error".into(), error.to_string().into());
                map
            }
            HostResult::Skipped(host) => {
                let mut map = Map::new();
                map.insert("host".into(), host.into());
                map.insert("ok".into(), Dynamic::FALSE);
                map.insert("skipped".into(), Dynamic::TRUE);
                map.insert("error".into(), "not run: the fan-out stopped early".into());
                map
            }
        }
    }
}

fn exec_all(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let inventory = inventory(call)?;
    let targets = targets(call, &inventory)?;
    let (mut exec, options) = exec_from(call, 2, FANOUT_OPTIONS)?;
    let check = exec.check;
    // Per host, a non-zero exit is a failure either way; `check` decides whether the call fails.
    exec.check = true;
    let total = targets.len();
    let parallel = usize::try_from(options.int("parallel")?.unwrap_or(50))
        .unwrap_or(1)
        .max(1);
    let batch = batch_size(call, &options, total)?;
    let fail_fast = options.bool("fail_fast")?.unwrap_or(false);
    let max_fail_percent = options.int("max_fail_percent")?;
    let label = format!("{}({})", call.function().qualified_name(), exec.display());
    call.host.progress(Progress::Start {
        label: &label,
        total,
    });

    let stop = Arc::new(AtomicBool::new(false));
    let mut results: BTreeMap<usize, HostResult> = BTreeMap::new();
    let mut failed = 0usize;
    let indexed: Vec<(usize, Target)> = targets.into_iter().enumerate().collect();
    for wave in indexed.chunks(batch) {
        if stop.load(Ordering::SeqCst) {
            for (index, target) in wave {
                results.insert(*index, HostResult::Skipped(target.name.clone()));
            }
            continue;
        }
        let host = call.host;
        let exec_ref = &exec;
        let inventory_ref = &inventory;
        let stop_ref = &stop;
        let wave_results = call.block_on_cancellable(|cancel| async move {
            // Cancelled with the call (Ctrl-C, a step timeout) or by the
            // first failure of a fail_fast fan-out: every command in flight
            // is killed on its host, and its end awaited, before this returns.
            let stopping = cancel.child_token();
            let stopping_ref = &stopping;
            let outcomes = futures_util::stream::iter(wave.iter().cloned())
                .map(|(index, target)| async move {
                    if (fail_fast && stop_ref.load(Ordering::SeqCst)) || stopping_ref.is_cancelled()
                    {
                        return (index, HostResult::Skipped(target.name.clone()));
                    }
                    let started = Instant::now();
                    let (outcome, connected) =
                        run_on(exec_ref, &target, &inventory_ref.options, stopping_ref).await;
                    let connection = connected.map(|(how, _)| how.as_str());
                    let result = match outcome {
                        Ok(output) => {
                            host.progress(Progress::Item {
                                target: &target.name,
                                ok: true,
                                code: Some(output.code),
                                duration: output.duration,
                                error: None,
                                output_tail: &tail(&output.stdout, TAIL_LINES),
                                connection,
                                killed: None,
                            });
                            HostResult::Done(output)
                        }
                        Err(RunError::NotStarted(name)) => HostResult::Skipped(name),
                        Err(error) => {
                            let killed = match &error {
                                RunError::Cancelled(kill) => Some(kill.confirmed),
                                _ => None,
                            };
                            if fail_fast && killed.is_none() {
                                stop_ref.store(true, Ordering::SeqCst);
                                stopping_ref.cancel();
                            }
                            let (code, duration) = match &error {
                                RunError::Cancelled(kill) => (kill.code, kill.duration),
                                _ => (None, started.elapsed()),
                            };
                            let error = error.into_error(&exec_ref.display());
                            let message = error.to_string();
                            host.progress(Progress::Item {
                                target: &target.name,
                                ok: false,
                                code,
                                duration,
                                error: Some(&message),
                                output_tail: "",
                                connection,
                                killed,
                            });
                            HostResult::Failed {
                                host: target.name.clone(),
                                error,
                                output: None,
                            }
                        }
                    };
                    (index, result)
                })
                .buffer_unordered(parallel)
                .collect::<Vec<_>>()
                .await;
            Ok((outcomes, cancel.is_cancelled()))
        })?;
        let (wave_results, cancelled) = wave_results;
        for (index, result) in wave_results {
            if matches!(result, HostResult::Failed { .. }) {
                failed += 1;
            }
            results.insert(index, result);
        }
        if cancelled {
            let count = |done: bool| {
                results
                    .values()
                    .filter(|result| match result {
                        HostResult::Done(_) => done,
                        HostResult::Failed { .. } => !done,
                        HostResult::Skipped(_) => false,
                    })
                    .count()
            };
            let (ok, failed) = (count(true), count(false));
            call.host.progress(Progress::End {
                ok,
                failed,
                skipped: total - ok - failed,
            });
            return Err(call.host.cancel_reason().into());
        }
        if let Some(limit) = max_fail_percent
            && (failed * 100) as f64 / total.max(1) as f64 > limit as f64
        {
            stop.store(true, Ordering::SeqCst);
        }
    }
    let skipped = results
        .values()
        .filter(|result| matches!(result, HostResult::Skipped(_)))
        .count();
    call.host.progress(Progress::End {
        ok: total - failed - skipped,
        failed,
        skipped,
    });

    let failures: Vec<String> = results
        .values()
        .filter_map(|result| match result {
            HostResult::Failed { error, .. } => Some(match error.hint() {
                Some(hint) => format!("\n  {error}\n    hint: {hint}"),
                None => format!("\n  {error}"),
            }),
            HostResult::Skipped(host) => {
                Some(format!("\n  `{host}`: not run (the fan-out stopped early)"))
            }
            HostResult::Done(_) => None,
        })
        .collect();
    let array: Array = results
        .into_values()
        .map(|result| Dynamic::from_map(result.into_map()))
        .collect();
    if check && !failures.is_empty() {
        return Err(StdlibError::failed(
            format!("{} of {total} hosts failed:{}", failures.len(), failures.concat()),
            "pass `#{check: false}` to get every host's result (with `ok` and `error`) instead of failing",
        )
        .into());
    }
    Ok(Dynamic::from_array(array))
}

fn transfer(call: &mut Call<'_>, upload: bool) -> Result<Dynamic, Failure> {
    transfer_to(call, upload, None)
}

/// `ssh::download` in a dry-run: into a temporary file, the plan notes the target.
fn download_elsewhere(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let target = PathBuf::from(call.string(2)?);
    let instead = crate::s3::dry_run_file(&target)?;
    let bytes = transfer_to(call, false, Some(instead.display().to_string()))?;
    let count = u64::try_from(bytes.as_int().unwrap_or(0)).unwrap_or(0);
    call.host
        .plan_detail(&crate::s3::dry_run_note(&target, &instead, count));
    Ok(bytes)
}

fn transfer_to(
    call: &mut Call<'_>,
    upload: bool,
    local: Option<String>,
) -> Result<Dynamic, Failure> {
    let host = call.string(0)?;
    let (from, to) = (call.string(1)?, call.string(2)?);
    let to = local.unwrap_or(to);
    let mode = if upload {
        None
    } else {
        let options = call.options(3, &["mode"])?;
        options
            .int("mode")?
            .map(|mode| {
                u32::try_from(mode)
                    .ok()
                    .filter(|mode| *mode <= 0o777)
                    .ok_or_else(|| call.bad_arg(3, "`mode` must be a file mode such as 0o600"))
            })
            .transpose()?
    };
    let inventory = inventory(call)?;
    let target = inventory.resolve_host(&host)?;
    let (bytes, connected) = call.block_on(async {
        let (mut link, mut first) = pool::session(&target, &inventory.options).await?;
        // SFTP cannot be started again halfway: make sure the master answers first.
        if let Some(fresh) = pool::redial(&target, &inventory.options, &link).await? {
            (link, first) = (fresh, true);
        }
        let session = link.session;
        let bytes = if upload {
            transfer::upload(session, &target, &PathBuf::from(&from), &to).await
        } else {
            transfer::download(session, &target, &from, &PathBuf::from(&to), mode).await
        }?;
        Ok((bytes, first.then_some(link.how)))
    })?;
    if let Some(how) = connected {
        call.host.log(Level::Debug, &connection_note(&target, how));
    }
    Ok(Dynamic::from_int(i64::try_from(bytes).unwrap_or(i64::MAX)))
}

pub(crate) fn functions() -> Vec<Function> {
    vec![
        function! {
            /// Run a command on one host that changes something. The host is a name
            /// from the context's inventory or a literal `user@address:port`. Returns
            /// `#{host, stdout, stderr, code, duration_ms}`; a non-zero exit is an
            /// error (host, command, exit code, end of stderr) unless `check: false`.
            /// Options: `check`, `sudo` (runs under `sudo -n`), `timeout` (kills the
            /// command on the host), `env` (map; values may be secrets and travel on
            /// stdin, never in argv). Not run in a dry-run.
            ///
            /// ```rhai
            /// ssh::exec("web1", "systemctl restart app", #{sudo: true, timeout: "2m"});
            /// ```
            write fn ssh::exec("host: string", "cmd: string | secret", "opts?: map") -> "#{host: string, stdout: string, stderr: string, code: int, duration_ms: int}"
            exec_one
        },
        function! {
            /// Run a command that only observes (uptime, df, cat) on one host. Runs
            /// in a dry-run too. Same arguments and result as `ssh::exec`.
            /// runbook cannot check that a command only observes: whatever you pass
            /// runs, in a dry-run as well. Use `ssh::exec` for anything that could
            /// change the host.
            ///
            /// ```rhai
            /// let load = ssh::read("web1", "cat /proc/loadavg").stdout;
            /// ```
            read fn ssh::read("host: string", "cmd: string | secret", "opts?: map") -> "#{host: string, stdout: string, stderr: string, code: int, duration_ms: int}"
            exec_one
        },
        function! {
            /// Run a command on many hosts at once: a group name, a host, or an array
            /// of hosts. Returns one result per host (in inventory order) with `ok` and
            /// `error`. Fails when any host failed, unless `check: false`.
            /// Options: `parallel` (hosts at a time, default 50), `batch` (rolling
            /// waves: a count or "25%"; each wave finishes before the next starts),
            /// `fail_fast` (after a failure, start no more hosts and kill the commands
            /// still running on the others), `max_fail_percent`
            /// (start no more waves past it), `sudo`, `timeout`, `env`, `check`.
            ///
            /// Each host has one master connection that every ssh call shares. It
            /// outlives the run by the context's `ssh.persist` (default `"60s"`,
            /// `"0"` closes it at the end of the run), so running this again soon
            /// skips the key exchange; each host's journal event says whether its
            /// connection was `new`, `reused` or the user's own ControlMaster
            /// (`user`). `runbook ssh status` lists live masters.
            ///
            /// Ctrl-C, SIGTERM, a step `timeout` or `fail_fast` kill the commands in
            /// flight on their hosts, and the call returns (so rollbacks start) only
            /// once each host reported its command's end (10 s at most); each host's
            /// event then says `killed: true` (`false`: not confirmed in time).
            ///
            /// ```rhai
            /// let results = ssh::exec_all("web", "systemctl reload nginx", #{batch: "25%", fail_fast: true});
            /// ```
            write fn ssh::exec_all("hosts: string | array", "cmd: string | secret", "opts?: map") -> "array<map>"
            exec_all
        },
        function! {
            /// Run a command that only observes on many hosts at once (health checks,
            /// inventories). Runs in a dry-run too. Same arguments, options and result
            /// as `ssh::exec_all`.
            ///
            /// ```rhai
            /// let loads = ssh::read_all("all", "cat /proc/loadavg", #{check: false});
            /// ```
            read fn ssh::read_all("hosts: string | array", "cmd: string | secret", "opts?: map") -> "array<map>"
            exec_all
        },
        function! {
            /// Copy a local file to a host (SFTP over the host's connection, streamed).
            /// Returns the number of bytes moved.
            ///
            /// ```rhai
            /// ssh::upload("web1", "build/app.tar.gz", "/tmp/app.tar.gz");
            /// ```
            write fn ssh::upload("host: string", "local: string", "remote: string") -> "int"
            |call| transfer(call, true)
        },
        Function {
            preview: Some(std::sync::Arc::new(download_elsewhere)),
            ..function! {
                /// Copy a file from a host to a local path (SFTP, streamed; the local file
                /// appears only when complete). Returns the number of bytes moved.
                /// Options: `mode` (the local file's permissions from its creation on,
                /// e.g. `0o600` for credentials; default: the umask's). In a dry-run the
                /// file goes to a temporary path instead and the plan notes the target,
                /// so nothing local is overwritten.
                ///
                /// ```rhai
                /// ssh::download("db1", "/var/log/postgresql/postgresql.log", "/tmp/pg.log");
                /// ```
                read fn ssh::download("host: string", "remote: string", "local: string", "opts?: map") -> "int"
                |call| transfer(call, false)
            }
        },
        function! {
            /// The host names of a group in the context's inventory.
            ///
            /// ```rhai
            /// for host in ssh::hosts("web") { log::info(host); }
            /// ```
            local fn ssh::hosts("group: string") -> "array<string>"
            |call| {
                let group = call.string(0)?;
                let names = inventory(call)?.group(&group)?;
                Ok(Dynamic::from_array(names.into_iter().map(Dynamic::from).collect()))
            }
        },
    ]
}
