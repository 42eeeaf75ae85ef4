//! One master connection per host per run, shared by every later call
//! (OpenSSH ControlMaster through the openssh crate's native mux). Strict host
//! key checking always: an unknown or changed key is an error with a hint.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder};
use tokio::sync::OnceCell;

use super::inventory::{SshOptions, Target};
use crate::host::StdlibError;

type Slot = Arc<OnceCell<Arc<Session>>>;

fn pool() -> &'static Mutex<HashMap<String, Slot>> {
    static POOL: OnceLock<Mutex<HashMap<String, Slot>>> = OnceLock::new();
    POOL.get_or_init(Mutex::default)
}

/// A short folder for control sockets (a socket path must stay under 108 bytes).
fn control_dir() -> Result<PathBuf, StdlibError> {
    use std::os::unix::fs::DirBuilderExt;
    let user = std::env::var("USER").unwrap_or_else(|_| "user".into());
    let dir = std::env::temp_dir().join(format!("runbook-ssh-{user}"));
    if !dir.is_dir() {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(&dir)
            .map_err(|error| {
                StdlibError::message(format!(
                    "cannot create the ssh control folder `{}`: {error}",
                    dir.display()
                ))
            })?;
    }
    Ok(dir)
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
    let detail = detail.trim().replace('\n', " ");
    let destination = format!(
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
    );
    let hint = if detail.contains("IDENTIFICATION HAS CHANGED")
        || detail.contains("Host key verification failed")
        || detail.contains("host key")
    {
        "the host's key is unknown or has changed; runbook never accepts host keys silently. Check the host, then add its key to the known_hosts file (`ssh-keyscan -p PORT ADDRESS`)"
    } else if detail.contains("Permission denied")
        || detail.contains("Too many authentication failures")
    {
        "authentication failed: check the user, the key (`identity` in the context's `ssh` table or ~/.ssh/config) or the ssh agent; keys must be unencrypted or in an agent (BatchMode)"
    } else if detail.contains("Connection refused")
        || detail.contains("timed out")
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

async fn connect(target: &Target, options: &SshOptions) -> Result<Arc<Session>, StdlibError> {
    let mut builder = SessionBuilder::default();
    builder
        .known_hosts_check(KnownHosts::Strict)
        .connect_timeout(Duration::from_secs(10))
        .server_alive_interval(Duration::from_secs(15))
        .control_directory(control_dir()?)
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
        .map(Arc::new)
        .map_err(|error| connect_error(target, &error))
}

/// The session for a target, connecting once per run.
pub(crate) async fn session(
    target: &Target,
    options: &SshOptions,
) -> Result<Arc<Session>, StdlibError> {
    let slot = {
        let mut pool = pool().lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(pool.entry(target.key()).or_default())
    };
    slot.get_or_try_init(|| connect(target, options))
        .await
        .cloned()
}

/// Close every master connection (at the end of a run).
pub(crate) async fn close_connections() {
    let slots: Vec<Slot> = {
        let mut pool = pool().lock().unwrap_or_else(PoisonError::into_inner);
        pool.drain().map(|(_, slot)| slot).collect()
    };
    for slot in slots {
        if let Some(session) = Arc::try_unwrap(slot).ok().and_then(OnceCell::into_inner)
            && let Ok(session) = Arc::try_unwrap(session)
        {
            let _ = session.close().await;
        }
    }
}
