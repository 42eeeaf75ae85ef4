//! File transfer over SFTP on the host's master connection, streamed in
//! chunks (no whole-file buffers).

use std::path::Path;
use std::sync::Arc;

use openssh::Session;
use openssh_sftp_client::file::TokioCompatFile;
use openssh_sftp_client::{Sftp, SftpOptions};
use tokio::io::AsyncWriteExt;

use super::inventory::Target;
use crate::host::StdlibError;

async fn open(session: Arc<Session>, target: &Target) -> Result<Sftp, StdlibError> {
    Sftp::from_clonable_session(session, SftpOptions::default())
        .await
        .map_err(|error| {
            StdlibError::failed(
                format!("`{}`: cannot start SFTP: {error}", target.name),
                "the host's sshd needs the sftp subsystem (`Subsystem sftp ...` in sshd_config)",
            )
        })
}

fn remote_error(
    target: &Target,
    path: &str,
    action: &str,
    error: &impl std::fmt::Display,
) -> StdlibError {
    StdlibError::failed(
        format!("`{}`: cannot {action} `{path}`: {error}", target.name),
        "check that the remote folder exists and the ssh user may write there",
    )
}

/// Ends the SFTP session by dropping it, never by `Sftp::close`.
///
/// openssh-sftp-client 0.15's `close` unwraps an `Arc` that a dropped
/// `TokioCompatFile` may still hold in the task it spawns to finish the
/// file, so under load `close` panicked ("called `Result::unwrap()` on an
/// `Err` value: OpensshSession(JoinHandle ..)"). Dropping lets the crate's
/// own tasks end the session once the last file handle is gone; every write
/// was already acknowledged by `flush`/`shutdown`, and `close`'s error was
/// never used.
fn finish(sftp: Sftp) {
    drop(sftp);
}

/// Copy a local file to the host; returns the bytes moved.
pub(crate) async fn upload(
    session: Arc<Session>,
    target: &Target,
    local: &Path,
    remote: &str,
) -> Result<u64, StdlibError> {
    let mut source = tokio::fs::File::open(local).await.map_err(|error| {
        StdlibError::failed(
            format!("cannot read `{}`: {error}", local.display()),
            "check the local path",
        )
    })?;
    let sftp = open(session, target).await?;
    let file = sftp
        .create(remote)
        .await
        .map_err(|error| remote_error(target, remote, "create", &error))?;
    let mut sink = Box::pin(TokioCompatFile::new(file));
    let bytes = tokio::io::copy(&mut source, &mut sink)
        .await
        .map_err(|error| remote_error(target, remote, "write", &error))?;
    sink.flush()
        .await
        .map_err(|error| remote_error(target, remote, "write", &error))?;
    sink.shutdown()
        .await
        .map_err(|error| remote_error(target, remote, "close", &error))?;
    drop(sink);
    finish(sftp);
    Ok(bytes)
}

/// Copy a file from the host to a local path; returns the bytes moved.
pub(crate) async fn download(
    session: Arc<Session>,
    target: &Target,
    remote: &str,
    local: &Path,
    mode: Option<u32>,
) -> Result<u64, StdlibError> {
    let sftp = open(session, target).await?;
    let file = sftp
        .open(remote)
        .await
        .map_err(|error| remote_error(target, remote, "open", &error))?;
    let mut source = Box::pin(TokioCompatFile::new(file));
    let partial = std::path::PathBuf::from(format!("{}.partial", local.display()));
    // A mode applies from the file's creation on (a credential is never
    // readable by others, not even while it arrives).
    let _ = tokio::fs::remove_file(&partial).await;
    let mut open = tokio::fs::OpenOptions::new();
    open.write(true).create_new(true);
    if let Some(mode) = mode {
        open.mode(mode);
    }
    let mut sink = open.open(&partial).await.map_err(|error| {
        StdlibError::failed(
            format!("cannot write `{}`: {error}", partial.display()),
            "check the local folder",
        )
    })?;
    let copied = tokio::io::copy(&mut source, &mut sink).await;
    drop(source);
    finish(sftp);
    let bytes = match copied {
        Ok(bytes) => bytes,
        Err(error) => {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(remote_error(target, remote, "read", &error));
        }
    };
    sink.sync_all().await.map_err(|error| {
        StdlibError::message(format!("cannot write `{}`: {error}", local.display()))
    })?;
    // Only a whole file takes the final name.
    tokio::fs::rename(&partial, local).await.map_err(|error| {
        StdlibError::message(format!("cannot write `{}`: {error}", local.display()))
    })?;
    Ok(bytes)
}
