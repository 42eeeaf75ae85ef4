//! Master connections that outlive a run, so that the next run or REPL
//! session to the same host skips the key exchange (what OpenSSH's
//! `ControlPersist` does for `ssh` itself).
//!
//! They live in one folder per user, `$XDG_RUNTIME_DIR/runbook/ssh`, else
//! `STATE_DIR/ssh`. A control socket lets whoever can open it run commands on
//! the host as the user, so the folder must be a directory owned by the user
//! with no access for group or others (0700); runbook creates it so and
//! refuses to use it otherwise. Each master is named by a hash of its
//! destination and of the options that change what the connection is (user,
//! port, identity, known_hosts, config):
//!
//! | file | what |
//! |---|---|
//! | `KEY` | the control socket (`ssh -S`) |
//! | `KEY.json` | host name, destination, start, idle limit and last use (`runbook ssh status`) |
//! | `KEY.log` | the master's own log (`ssh -E`): why it could not start |
//! | `KEY.lock` | held while a process checks or starts the master (empty; never removed, so that two processes always lock the same file) |
//!
//! A master ends by itself after `persist` without use (ssh's own
//! `ControlPersist` timer), when its connection breaks, or with
//! `runbook ssh close`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::inventory::{SshOptions, Target};
use crate::host::StdlibError;

/// Longest control socket path: `sun_path` holds 108 bytes with its NUL, and
/// ssh first binds a name 17 characters longer (`PATH.XXXXXXXXXXXXXXXX`).
const SOCKET_PATH_MAX: usize = 107 - 17;

/// How long a process waits for another one to finish starting a master.
const LOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// How long `close` waits for a master process to go.
const EXIT_TIMEOUT: Duration = Duration::from_secs(3);

/// The folder of master sockets: `$XDG_RUNTIME_DIR/runbook/ssh`, else
/// `STATE_DIR/ssh` (see [`crate::host::state_dir`]).
pub fn dir_path() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|dir| !dir.is_empty()) {
        Some(runtime) => PathBuf::from(runtime).join("runbook").join("ssh"),
        None => crate::host::state_dir().join("ssh"),
    }
}

/// The folder, created (mode 0700) when missing, and checked.
pub(crate) fn dir() -> Result<PathBuf, StdlibError> {
    let dir = dir_path();
    if fs::symlink_metadata(&dir).is_err() {
        fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(&dir)
            .map_err(|error| {
                StdlibError::failed(
                    format!(
                        "cannot create the ssh master folder `{}`: {error}",
                        dir.display()
                    ),
                    "set XDG_RUNTIME_DIR or RUNBOOK_STATE_DIR to a folder you can write",
                )
            })?;
    }
    check_dir(&dir)?;
    Ok(dir)
}

/// The effective uid of this process: the owner of `/proc/self`.
fn euid() -> Option<u32> {
    fs::metadata("/proc/self").ok().map(|meta| meta.uid())
}

/// Refuse a folder that is not a directory of ours alone.
pub fn check_dir(dir: &Path) -> Result<(), StdlibError> {
    let refuse = |why: String, hint: String| {
        StdlibError::failed(
            format!("refusing the ssh master folder `{}`: {why}", dir.display()),
            format!(
                "{hint}; a master's socket lets whoever opens it run commands on the host as you, so runbook keeps them only in a folder that is yours alone (mode 0700). Or set persist = \"0\" in the context's `ssh` table"
            ),
        )
    };
    let meta = fs::symlink_metadata(dir).map_err(|error| {
        StdlibError::failed(
            format!(
                "cannot read the ssh master folder `{}`: {error}",
                dir.display()
            ),
            "set XDG_RUNTIME_DIR or RUNBOOK_STATE_DIR to a folder you can write",
        )
    })?;
    if meta.file_type().is_symlink() || !meta.is_dir() {
        return Err(refuse(
            "it is not a directory (a symlink or a file)".into(),
            format!("remove `{}`", dir.display()),
        ));
    }
    if let Some(uid) = euid()
        && meta.uid() != uid
    {
        return Err(refuse(
            format!("it is owned by uid {}, not by you (uid {uid})", meta.uid()),
            format!(
                "remove it, or point XDG_RUNTIME_DIR or RUNBOOK_STATE_DIR elsewhere (`ls -ld {}`)",
                dir.display()
            ),
        ));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(refuse(
            format!("its mode is {mode:04o}: group or others can reach it"),
            format!("`chmod 700 {}`", dir.display()),
        ));
    }
    Ok(())
}

/// The name of a master: a hash of everything that makes the connection
/// what it is (two contexts reaching one host with another key get two).
pub(crate) fn key(target: &Target, options: &SshOptions) -> String {
    let path = |path: &Option<PathBuf>| {
        path.as_ref()
            .map(|path| path.display().to_string())
            .unwrap_or_default()
    };
    let port = target.port.map(|port| port.to_string()).unwrap_or_default();
    let parts = [
        target.user.clone().unwrap_or_default(),
        target.address.clone(),
        port,
        path(&options.identity),
        path(&options.known_hosts),
        path(&options.config),
    ];
    let mut hasher = Sha256::new();
    for part in &parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    let digest = hasher.finalize();
    let mut text = String::with_capacity(16);
    for byte in &digest[..8] {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// `user@address:port` as people write it.
pub(crate) fn destination(target: &Target) -> String {
    format!(
        "{}{}{}",
        target
            .user
            .as_deref()
            .map(|user| format!("{user}@"))
            .unwrap_or_default(),
        target.address,
        target
            .port
            .map(|port| format!(":{port}"))
            .unwrap_or_default()
    )
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// What `KEY.json` says about a master.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    /// The inventory name it was started for.
    host: String,
    destination: String,
    /// Unix seconds.
    started: u64,
    /// Unix seconds: the end of the last run that used it.
    last_used: u64,
    /// Its `ControlPersist`, in seconds.
    persist_secs: u64,
}

/// The files of one master.
#[derive(Debug, Clone)]
pub(crate) struct Files {
    pub(crate) socket: PathBuf,
    record: PathBuf,
    log: PathBuf,
    lock: PathBuf,
}

impl Files {
    /// The files of master `key` in `dir`.
    pub(crate) fn new(dir: &Path, key: &str) -> Result<Files, StdlibError> {
        let socket = dir.join(key);
        let length = socket.as_os_str().len();
        if length > SOCKET_PATH_MAX {
            return Err(StdlibError::failed(
                format!(
                    "the ssh control socket path `{}` is {length} bytes; sockets allow {SOCKET_PATH_MAX}",
                    socket.display()
                ),
                "set XDG_RUNTIME_DIR (or RUNBOOK_STATE_DIR) to a shorter folder, or persist = \"0\" in the context's `ssh` table",
            ));
        }
        Ok(Files {
            record: socket.with_extension("json"),
            log: socket.with_extension("log"),
            lock: socket.with_extension("lock"),
            socket,
        })
    }

    /// Hold `KEY.lock` until the file is dropped: one process at a time
    /// checks, replaces or starts this master (two masters on one socket
    /// path would leave one of them running without a socket).
    pub(crate) async fn lock(&self) -> Result<File, StdlibError> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock)
            .map_err(|error| {
                StdlibError::message(format!(
                    "cannot open the ssh master lock `{}`: {error}",
                    self.lock.display()
                ))
            })?;
        let deadline = Instant::now() + LOCK_TIMEOUT;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(file),
                Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(StdlibError::failed(
                        format!(
                            "another process has held `{}` for {}s",
                            self.lock.display(),
                            LOCK_TIMEOUT.as_secs()
                        ),
                        "another runbook is starting this ssh connection; try again, or `runbook ssh close --all`",
                    ));
                }
                Err(fs::TryLockError::Error(error)) => {
                    return Err(StdlibError::message(format!(
                        "cannot lock `{}`: {error}",
                        self.lock.display()
                    )));
                }
            }
        }
    }

    /// Forget a master that no longer answers (its socket, record and log).
    pub(crate) fn remove(&self) {
        for path in [&self.socket, &self.record, &self.log] {
            let _ = fs::remove_file(path);
        }
    }

    fn read_record(&self) -> Option<Record> {
        let text = fs::read_to_string(&self.record).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn write_record(&self, record: &Record) {
        let Ok(text) = serde_json::to_string(record) else {
            return;
        };
        let partial = self.record.with_extension("json.partial");
        if fs::write(&partial, text).is_ok() {
            let _ = fs::rename(&partial, &self.record);
        }
    }

    /// A run used the master until now: its idle time starts again.
    pub(crate) fn touch(&self) {
        if let Some(mut record) = self.read_record() {
            record.last_used = unix_now();
            self.write_record(&record);
        }
    }

    /// Start a master for `target` on this socket that ends by itself after
    /// `persist` without use. Strict host key checking, batch mode: the same
    /// options the openssh crate uses for its own masters.
    pub(crate) async fn launch(
        &self,
        target: &Target,
        options: &SshOptions,
        persist: Duration,
    ) -> Result<(), StdlibError> {
        let _ = fs::remove_file(&self.log);
        let _ = fs::remove_file(&self.socket);
        let persist_secs = persist.as_secs_f64().ceil().max(1.0) as u64;
        let mut command = tokio::process::Command::new("ssh");
        crate::child::scrub_env(&mut command);
        command
            .kill_on_drop(true)
            // It outlives the run: hold no folder the run was started in.
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .arg("-E")
            .arg(&self.log)
            .arg("-S")
            .arg(&self.socket)
            .args(["-M", "-f", "-N", "-o"])
            .arg(format!("ControlPersist={persist_secs}s"))
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "ServerAliveInterval=15",
                "-o",
            ])
            .arg(format!(
                "ConnectTimeout={}",
                options.connect_timeout.as_secs().max(1)
            ));
        super::pool::ssh_options(&mut command, target, options);
        command.arg("--").arg(&target.address);
        let status = command.status().await.map_err(|error| {
            StdlibError::failed(
                format!("cannot run `ssh`: {error}"),
                "install the OpenSSH client (`apt-get install openssh-client`)",
            )
        })?;
        if !status.success() {
            let log = fs::read_to_string(&self.log).unwrap_or_default();
            self.remove();
            let detail = if log.trim().is_empty() {
                format!("ssh exited with {status}")
            } else {
                log
            };
            return Err(super::pool::connect_failed(target, &detail));
        }
        let now = unix_now();
        self.write_record(&Record {
            host: target.name.clone(),
            destination: destination(target),
            started: now,
            last_used: now,
            persist_secs,
        });
        Ok(())
    }
}

/// A master connection runbook left running.
#[derive(Debug, Clone)]
pub struct Master {
    /// The inventory name it was started for.
    pub host: String,
    /// `user@address:port`.
    pub destination: String,
    /// Since it connected.
    pub age: Duration,
    /// Until it ends by itself unless used again (from the end of the last
    /// run that used it).
    pub idle_left: Duration,
    /// Its idle limit (`persist`).
    pub persist: Duration,
    /// The master's process (0 where there is no /proc to tell).
    pub pid: u32,
    /// Its control socket.
    pub socket: PathBuf,
}

/// `ssh` processes whose command line holds `-S SOCKET` for a socket in
/// `dir`: the masters that are running, by socket path.
fn master_processes(dir: &Path) -> HashMap<PathBuf, u32> {
    let mut found = HashMap::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|byte| *byte == 0)
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect();
        let Some(program) = args.first() else {
            continue;
        };
        let mut sockets: Vec<PathBuf> = Vec::new();
        if let Some(title) = program
            .strip_prefix("ssh: ")
            .and_then(|title| title.strip_suffix(" [mux]"))
        {
            // A master that went to the background renames itself
            // `ssh: SOCKET [mux]`.
            sockets.push(PathBuf::from(title));
        } else if program == "ssh" || program.ends_with("/ssh") {
            sockets.extend(
                args.windows(2)
                    .filter(|pair| pair[0] == "-S")
                    .map(|pair| PathBuf::from(&pair[1])),
            );
        }
        for socket in sockets {
            if socket.parent() == Some(dir) {
                found.insert(socket, pid);
            }
        }
    }
    found
}

/// The folder (if it exists, checked) and the masters running from it,
/// oldest first. Files left by masters that ended are removed.
pub fn live() -> Result<(PathBuf, Vec<Master>), StdlibError> {
    let dir = dir_path();
    if fs::symlink_metadata(&dir).is_err() {
        return Ok((dir, Vec::new()));
    }
    check_dir(&dir)?;
    // Without /proc there is no telling which master runs: list every
    // master with a socket, remove nothing.
    let processes_known = Path::new("/proc/self").exists();
    let mut processes = master_processes(&dir);
    let now = unix_now();
    let mut masters = Vec::new();
    let entries = fs::read_dir(&dir).map_err(|error| {
        StdlibError::message(format!("cannot read `{}`: {error}", dir.display()))
    })?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|ext| ext.to_str()) != Some("json") {
            continue;
        }
        let Some(key) = path.file_stem().and_then(|stem| stem.to_str()) else {
            continue;
        };
        let Ok(files) = Files::new(&dir, key) else {
            continue;
        };
        let pid = match processes.remove(&files.socket) {
            Some(pid) => pid,
            None if !processes_known && files.socket.exists() => 0,
            None => {
                // Ended by itself (idle, broken connection): forget it, unless
                // a run is starting it right now.
                let free = match File::options().write(true).open(&files.lock) {
                    Ok(lock) => lock.try_lock().is_ok(),
                    Err(_) => true,
                };
                if processes_known && free {
                    files.remove();
                }
                continue;
            }
        };
        let record = files.read_record();
        masters.push(from_record(record.as_ref(), key, pid, files.socket, now));
    }
    // Running, but without a record (it was removed by hand).
    for (socket, pid) in processes {
        let key = socket
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        masters.push(from_record(None, &key, pid, socket, now));
    }
    masters.sort_by(|a, b| b.age.cmp(&a.age).then_with(|| a.host.cmp(&b.host)));
    Ok((dir, masters))
}

fn from_record(record: Option<&Record>, key: &str, pid: u32, socket: PathBuf, now: u64) -> Master {
    let Some(record) = record else {
        return Master {
            host: format!("({key})"),
            destination: "(unknown)".into(),
            age: Duration::ZERO,
            idle_left: Duration::ZERO,
            persist: Duration::ZERO,
            pid,
            socket,
        };
    };
    let idle = now.saturating_sub(record.last_used);
    Master {
        host: record.host.clone(),
        destination: record.destination.clone(),
        age: Duration::from_secs(now.saturating_sub(record.started)),
        idle_left: Duration::from_secs(record.persist_secs.saturating_sub(idle)),
        persist: Duration::from_secs(record.persist_secs),
        pid,
        socket,
    }
}

fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // `PID (COMM) STATE ...`: a zombie has ended.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// End one master: ask it to exit over its socket (`ssh -O exit`), then make
/// sure its process is gone (SIGTERM if it did not listen), and forget it.
pub fn close(master: &Master) -> Result<(), StdlibError> {
    let _ = Command::new("ssh")
        .args(["-F", "/dev/null", "-S"])
        .arg(&master.socket)
        .args(["-O", "exit", "runbook-master"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !wait_gone(master.pid, EXIT_TIMEOUT) {
        let _ = Command::new("kill")
            .args(["-TERM", &master.pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !wait_gone(master.pid, EXIT_TIMEOUT) {
            return Err(StdlibError::failed(
                format!(
                    "the ssh master for `{}` (pid {}) is still running",
                    master.host, master.pid
                ),
                format!("`kill -9 {}`", master.pid),
            ));
        }
    }
    if let (Some(dir), Some(key)) = (
        master.socket.parent(),
        master.socket.file_name().and_then(|name| name.to_str()),
    ) && let Ok(files) = Files::new(dir, key)
    {
        // The lock file stays: a run may be waiting on it right now, and a
        // new file under the same name would let a second run in.
        files.remove();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn target(user: &str, port: u16) -> Target {
        Target {
            name: "web1".into(),
            user: Some(user.into()),
            address: "10.0.0.1".into(),
            port: Some(port),
        }
    }

    #[test]
    fn keys_differ_by_every_option_that_matters() {
        let options = SshOptions::default();
        let base = key(&target("deploy", 22), &options);
        assert_eq!(base.len(), 16);
        assert_eq!(base, key(&target("deploy", 22), &options));
        assert_ne!(base, key(&target("root", 22), &options));
        assert_ne!(base, key(&target("deploy", 2222), &options));
        for change in [
            |o: &mut SshOptions| o.identity = Some("/k".into()),
            |o: &mut SshOptions| o.known_hosts = Some("/kh".into()),
            |o: &mut SshOptions| o.config = Some("/c".into()),
        ] {
            let mut other = SshOptions::default();
            change(&mut other);
            assert_ne!(base, key(&target("deploy", 22), &other));
        }
        // The idle time is not part of what the connection is.
        let longer = SshOptions {
            persist: Duration::from_secs(600),
            ..SshOptions::default()
        };
        assert_eq!(base, key(&target("deploy", 22), &longer));
    }

    #[test]
    fn a_folder_others_can_reach_is_refused() {
        let parent = std::env::temp_dir().join(format!("runbook-masters-{}", std::process::id()));
        let dir = parent.join("ssh");
        fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(&dir)
            .unwrap();
        assert!(check_dir(&dir).is_ok());
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let error = check_dir(&dir).unwrap_err();
        assert!(error.to_string().contains("mode is 0755"), "{error}");
        assert!(error.hint().unwrap_or_default().contains("chmod 700"));
        fs::remove_dir(&dir).unwrap();
        std::os::unix::fs::symlink(&parent, &dir).unwrap();
        let error = check_dir(&dir).unwrap_err();
        assert!(error.to_string().contains("not a directory"), "{error}");
        fs::remove_dir_all(&parent).unwrap();
    }

    #[test]
    fn long_socket_paths_are_refused_with_a_hint() {
        let dir = PathBuf::from(format!("/{}", "d".repeat(100)));
        let error = Files::new(&dir, "0123456789abcdef").unwrap_err();
        assert!(error.hint().unwrap_or_default().contains("XDG_RUNTIME_DIR"));
        assert!(Files::new(Path::new("/run/user/1000/runbook/ssh"), "0123456789abcdef").is_ok());
    }
}
