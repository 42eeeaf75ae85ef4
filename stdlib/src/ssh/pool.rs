//! One master connection per host per run, shared by every later call
//! (OpenSSH ControlMaster through the openssh crate's native mux). Strict host
//! key checking always: an unknown or changed key is an error with a hint.
//!
//! Where a run gets a host's master, first match wins:
//! 1. with `persist` on (the default, 60 s): a live master that an earlier
//!    run or REPL session left in the master folder ([`super::masters`]);
//!    a socket that no longer answers is removed;
//! 2. the user's own: `ssh -G` says the user's ssh_config gives the host a
//!    `ControlPath`, and a master answers there (runbook never ends it);
//! 3. a new one: with `persist`, started in the master folder with
//!    `ControlPersist=persist`, left running at the end of the run; with
//!    `persist = "0"`, through the openssh crate in a private temporary
//!    folder, closed at the end of the run.
//!
//! A command whose master stopped answering mid-run (it idled out, its
//! connection broke) is started again once over a new master: the command
//! had not started, so nothing runs twice. A read whose connection broke
//! while it ran is started again too; a write is not (it may have run, and
//! its error says so), but its master is retired ([`retire`]) so that the
//! next call, or the step's retry, connects afresh.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder};
use tokio::sync::OnceCell;

use super::inventory::{SshOptions, Target};
use super::masters::{self, Files};
use crate::host::StdlibError;

/// How this run got a host's connection (journaled per host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum How {
    /// This run connected (and authenticated).
    New,
    /// A live master left by an earlier run or REPL session.
    Reused,
    /// The user's own ControlMaster (their ssh_config's `ControlPath`).
    User,
}

impl How {
    /// The journal's word for it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            How::New => "new",
            How::Reused => "reused",
            How::User => "user",
        }
    }
}

/// A host's master connection in this run.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub(crate) session: Arc<Session>,
    pub(crate) how: How,
    /// The master's files when it is one of runbook's persistent masters.
    files: Option<Files>,
}

type Slot = Arc<OnceCell<Link>>;

fn pool() -> &'static Mutex<HashMap<String, Slot>> {
    static POOL: OnceLock<Mutex<HashMap<String, Slot>>> = OnceLock::new();
    POOL.get_or_init(Mutex::default)
}

/// Turn a connection failure into a message with a hint.
pub(crate) fn connect_error(target: &Target, error: &openssh::Error) -> StdlibError {
    let mut detail = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    connect_failed(target, &detail)
}

/// A connection failure described by `detail` (an error chain or ssh's log).
pub(crate) fn connect_failed(target: &Target, detail: &str) -> StdlibError {
    let detail = detail.trim().replace('\r', "").replace('\n', " ");
    let destination = masters::destination(target);
    let hint = if detail.contains("IDENTIFICATION HAS CHANGED")
        || detail.contains("Host key verification failed")
        || detail.contains("host key")
    {
        "the host's key is unknown or has changed; runbook never accepts host keys silently. Check the host, then add its key to the known_hosts file (`ssh-keyscan -p PORT ADDRESS`)"
    } else if detail.contains("Permission denied")
        || detail.contains("Too many authentication failures")
    {
        "authentication failed: check the user, the key (`identity` in the context's `ssh` table or ~/.ssh/config) or the ssh agent; keys must be unencrypted or in an agent (BatchMode)"
    } else if detail.contains("timed out") {
        "the host did not answer in time: is it up and the address right? (`connect_timeout` under `[context.NAME.ssh]`, default 10s, is how long runbook waits)"
    } else if detail.contains("Connection refused")
        || detail.contains("No route")
        || detail.contains("Could not resolve")
    {
        "is the host up, the address right, and sshd listening on that port?"
    } else {
        "try `ssh -v` to the same destination with the same options"
    };
    StdlibError::failed(
        format!("ssh to `{}` ({destination}) failed: {detail}", target.name),
        hint,
    )
}

/// The options every ssh invocation for `target` shares (`-p`, `-l`, `-i`,
/// `-F`, `UserKnownHostsFile`), as the openssh crate passes them.
pub(crate) fn ssh_options(
    command: &mut tokio::process::Command,
    target: &Target,
    options: &SshOptions,
) {
    if let Some(port) = target.port {
        command.arg("-p").arg(port.to_string());
    }
    if let Some(user) = &target.user {
        command.arg("-l").arg(user);
    }
    if let Some(identity) = &options.identity {
        command
            .args(["-o", "IdentitiesOnly=yes", "-i"])
            .arg(identity);
    }
    if let Some(config) = &options.config {
        command.arg("-F").arg(config);
    }
    if let Some(known_hosts) = &options.known_hosts {
        let mut option = std::ffi::OsString::from("UserKnownHostsFile=");
        option.push(known_hosts);
        command.arg("-o").arg(option);
    }
}

/// A session on an existing master socket, if the master answers.
async fn attach(socket: PathBuf) -> Option<Session> {
    let session = Session::resume_mux(socket.into_boxed_path(), None);
    session.check().await.ok().map(|()| session)
}

/// Whether the ssh_config files ssh reads for these options (with `-F`,
/// that file; else `~/.ssh/config` and `/etc/ssh/ssh_config`, with their
/// `Include`s) could set a `ControlPath` at all. When none can, asking
/// `ssh -G` per host is skipped. Decided once per process and config.
fn may_have_control_path(config: Option<&Path>) -> bool {
    static SEEN: OnceLock<Mutex<HashMap<Option<PathBuf>, bool>>> = OnceLock::new();
    let key = config.map(Path::to_path_buf);
    let seen = SEEN.get_or_init(Mutex::default);
    if let Some(known) = seen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
    {
        return *known;
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let user_dir = home.as_ref().map(|home| home.join(".ssh"));
    let files: Vec<(PathBuf, Option<PathBuf>)> = match config {
        Some(config) => vec![(config.to_path_buf(), user_dir.clone())],
        None => {
            let mut files = vec![(
                PathBuf::from("/etc/ssh/ssh_config"),
                Some(PathBuf::from("/etc/ssh")),
            )];
            if let Some(dir) = &user_dir {
                files.push((dir.join("config"), user_dir.clone()));
            }
            files
        }
    };
    let answer = files
        .iter()
        .any(|(file, base)| config_sets_control_path(file, base.as_deref(), home.as_deref(), 0));
    seen.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(key, answer);
    answer
}

/// Whether `file` (or what it includes) mentions `ControlPath`; true when
/// that cannot be told (an include pattern this does not follow).
fn config_sets_control_path(
    file: &Path,
    base: Option<&Path>,
    home: Option<&Path>,
    depth: usize,
) -> bool {
    if depth > 16 {
        return true;
    }
    let Ok(text) = std::fs::read_to_string(file) else {
        // Missing: sets nothing; unreadable: ssh would fail on it anyway.
        return false;
    };
    for line in text.lines() {
        let line = line.trim();
        let lower = line.to_ascii_lowercase();
        if lower.starts_with('#') {
            continue;
        }
        if lower.contains("controlpath") {
            return true;
        }
        let Some(rest) = lower
            .strip_prefix("include")
            .filter(|rest| rest.starts_with([' ', '\t', '=']))
        else {
            continue;
        };
        let start = line.len() - rest.len();
        for pattern in line[start..]
            .trim_start_matches([' ', '\t', '='])
            .split_whitespace()
        {
            let pattern = pattern.trim_matches('"');
            let path = match (pattern.strip_prefix("~/"), home, base) {
                (Some(tail), Some(home), _) => home.join(tail),
                (None, _, _) if pattern.starts_with('/') => PathBuf::from(pattern),
                (None, _, Some(base)) if !pattern.starts_with('~') => base.join(pattern),
                _ => return true,
            };
            let (Some(dir), Some(name)) =
                (path.parent(), path.file_name().and_then(|n| n.to_str()))
            else {
                return true;
            };
            if dir.to_string_lossy().contains(['*', '?', '[']) {
                return true;
            }
            let included: Vec<PathBuf> = if name.contains(['*', '?', '[']) {
                let Ok(entries) = std::fs::read_dir(dir) else {
                    continue;
                };
                entries
                    .flatten()
                    .filter(|entry| {
                        entry
                            .file_name()
                            .to_str()
                            .is_some_and(|candidate| glob_match(name, candidate))
                    })
                    .map(|entry| entry.path())
                    .collect()
            } else {
                vec![path.clone()]
            };
            if included
                .iter()
                .any(|file| config_sets_control_path(file, base, home, depth + 1))
            {
                return true;
            }
        }
    }
    false
}

/// `*` and `?` (and `[` taken literally, which only makes this say "maybe"
/// less often) within one file name.
fn glob_match(pattern: &str, name: &str) -> bool {
    fn matches(pattern: &[char], name: &[char]) -> bool {
        match pattern.split_first() {
            None => name.is_empty(),
            Some(('*', rest)) => (0..=name.len()).any(|skip| matches(rest, &name[skip..])),
            Some(('?', rest)) => !name.is_empty() && matches(rest, &name[1..]),
            Some((c, rest)) => name.first() == Some(c) && matches(rest, &name[1..]),
        }
    }
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    matches(&pattern, &name)
}

/// The user's own master for `target`: `ssh -G` gives the host a
/// `ControlPath` and a master answers on it.
async fn user_master(target: &Target, options: &SshOptions) -> Option<Session> {
    if !may_have_control_path(options.config.as_deref()) {
        return None;
    }
    let mut command = tokio::process::Command::new("ssh");
    command
        .kill_on_drop(true)
        .arg("-G")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    ssh_options(&mut command, target, options);
    command.arg("--").arg(&target.address);
    let output = command.output().await.ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let path = text
        .lines()
        .find_map(|line| line.strip_prefix("controlpath "))?
        .trim();
    if path.is_empty() || path == "none" {
        return None;
    }
    let socket = PathBuf::from(path);
    if !socket.exists() {
        return None;
    }
    attach(socket).await
}

/// A master through the openssh crate, closed at the end of the run
/// (`persist = "0"`).
async fn connect_for_run(target: &Target, options: &SshOptions) -> Result<Session, StdlibError> {
    let mut builder = SessionBuilder::default();
    builder
        .known_hosts_check(KnownHosts::Strict)
        .connect_timeout(options.connect_timeout)
        .server_alive_interval(Duration::from_secs(15))
        .control_directory(masters::dir()?)
        // Masters outlive a killed runbook only briefly.
        .control_persist(ControlPersist::IdleFor(
            NonZeroUsize::new(60).unwrap_or(NonZeroUsize::MIN),
        ));
    if let Some(user) = &target.user {
        builder.user(user.clone());
    }
    if let Some(port) = target.port {
        builder.port(port);
    }
    if let Some(config) = &options.config {
        builder.config_file(config);
    }
    if let Some(known_hosts) = &options.known_hosts {
        builder.user_known_hosts_file(known_hosts);
    }
    if let Some(identity) = &options.identity {
        builder.keyfile(identity);
    }
    builder
        .connect_mux(&target.address)
        .await
        .map_err(|error| connect_error(target, &error))
}

/// Find or make the master for `target` (see the module doc for the order).
async fn dial(target: &Target, options: &SshOptions) -> Result<Link, StdlibError> {
    let link = |session: Session, how: How, files: Option<Files>| Link {
        session: Arc::new(session),
        how,
        files,
    };
    if options.persist.is_zero() {
        if let Some(session) = user_master(target, options).await {
            return Ok(link(session, How::User, None));
        }
        let session = connect_for_run(target, options).await?;
        return Ok(link(session, How::New, None));
    }
    let files = Files::new(&masters::dir()?, &masters::key(target, options))?;
    let _lock = files.lock().await?;
    if files.socket.exists() {
        if let Some(session) = attach(files.socket.clone()).await {
            return Ok(link(session, How::Reused, Some(files)));
        }
        // Stale: the master ended without removing its socket.
        files.remove();
    }
    if let Some(session) = user_master(target, options).await {
        return Ok(link(session, How::User, None));
    }
    files.launch(target, options, options.persist).await?;
    let session = Session::resume_mux(files.socket.clone().into_boxed_path(), None);
    Ok(link(session, How::New, Some(files)))
}

fn slot(key: String) -> Slot {
    let mut pool = pool().lock().unwrap_or_else(PoisonError::into_inner);
    Arc::clone(pool.entry(key).or_default())
}

/// The pool key: one master per destination and options.
fn pool_key(target: &Target, options: &SshOptions) -> String {
    masters::key(target, options)
}

/// The master for a target, found or made once per run. The flag is true for
/// the call that found or made it.
pub(crate) async fn session(
    target: &Target,
    options: &SshOptions,
) -> Result<(Link, bool), StdlibError> {
    let slot = slot(pool_key(target, options));
    let mut first = false;
    let link = slot
        .get_or_try_init(|| {
            first = true;
            dial(target, options)
        })
        .await?
        .clone();
    Ok((link, first))
}

/// A command could not start over `dead`'s master. If that master no longer
/// answers, a new one (made once per run and master, however many calls
/// noticed); `None` if it still answers (the failure was something else).
pub(crate) async fn redial(
    target: &Target,
    options: &SshOptions,
    dead: &Link,
) -> Result<Option<Link>, StdlibError> {
    if dead.session.check().await.is_ok() {
        return Ok(None);
    }
    let slot = {
        let mut pool = pool().lock().unwrap_or_else(PoisonError::into_inner);
        let entry = pool.entry(pool_key(target, options)).or_default();
        if entry
            .get()
            .is_some_and(|link| Arc::ptr_eq(&link.session, &dead.session))
        {
            *entry = Slot::default();
        }
        Arc::clone(entry)
    };
    slot.get_or_try_init(|| dial(target, options))
        .await
        .cloned()
        .map(Some)
}

/// A command's connection broke while it ran (the command may have run, so
/// it is not started again): the next call to the host, a step's retry
/// included, gets a fresh master. This one is forgotten by the run and, when
/// it is one of runbook's persistent masters that still answers its socket,
/// asked to exit, so that no later run reuses it either.
pub(crate) async fn retire(target: &Target, options: &SshOptions, dead: &Link) {
    {
        let mut pool = pool().lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = pool.get_mut(&pool_key(target, options))
            && entry
                .get()
                .is_some_and(|link| Arc::ptr_eq(&link.session, &dead.session))
        {
            *entry = Slot::default();
        }
    }
    let Some(files) = &dead.files else {
        return;
    };
    let Ok(_lock) = files.lock().await else {
        return;
    };
    if dead.session.check().await.is_ok() {
        let mut command = tokio::process::Command::new("ssh");
        command
            .kill_on_drop(true)
            .args(["-F", "/dev/null", "-S"])
            .arg(&files.socket)
            .args(["-O", "exit", "runbook-master"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let _ = tokio::time::timeout(Duration::from_secs(3), command.status()).await;
    }
    files.remove();
}

/// End of a run: close the masters made for this run only; leave persistent
/// ones (and the user's own) running, their idle time starting now.
pub(crate) async fn close_connections() {
    let slots: Vec<Slot> = {
        let mut pool = pool().lock().unwrap_or_else(PoisonError::into_inner);
        pool.drain().map(|(_, slot)| slot).collect()
    };
    for slot in slots {
        let Some(link) = Arc::try_unwrap(slot).ok().and_then(OnceCell::into_inner) else {
            continue;
        };
        match (&link.files, link.how) {
            (Some(files), _) => files.touch(),
            (None, How::New) => {
                if let Ok(session) = Arc::try_unwrap(link.session) {
                    let _ = session.close().await;
                }
            }
            (None, How::Reused | How::User) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_file_names() {
        assert!(glob_match("*.conf", "20-proxy.conf"));
        assert!(!glob_match("*.conf", "20-proxy.conf.bak"));
        assert!(glob_match("host?", "host1"));
        assert!(glob_match("*", "anything"));
    }

    #[test]
    fn control_paths_are_found_through_includes() {
        let dir = std::env::temp_dir().join(format!("runbook-pool-{}", std::process::id()));
        let included = dir.join("conf.d");
        std::fs::create_dir_all(&included).unwrap();
        let main = dir.join("config");
        std::fs::write(
            &main,
            format!("Host *\n  Port 22\nInclude {}/*.conf\n", included.display()),
        )
        .unwrap();
        std::fs::write(included.join("a.conf"), "Host a\n  User me\n").unwrap();
        assert!(!config_sets_control_path(&main, Some(&dir), None, 0));
        std::fs::write(
            included.join("b.conf"),
            "Host b\n  ControlPath ~/.ssh/cm-%C\n",
        )
        .unwrap();
        assert!(config_sets_control_path(&main, Some(&dir), None, 0));
        // `controlpath` in a comment sets nothing.
        std::fs::write(&main, "# ControlPath is not used here\nHost *\n").unwrap();
        assert!(!config_sets_control_path(&main, Some(&dir), None, 0));
        // A relative include is found under the base folder.
        std::fs::write(&main, "Include conf.d/b.conf\n").unwrap();
        assert!(config_sets_control_path(&main, Some(&dir), None, 0));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
