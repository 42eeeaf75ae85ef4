//! `pg::dump`: `pg_dump`'s output, compressed with zstd as it streams, goes
//! straight into an S3 multipart upload (or a local file): no temp file, a
//! few parts in memory. The row counts in the manifest come from the same
//! snapshot the dump reads (`pg_export_snapshot` + `pg_dump --snapshot`), so
//! they describe exactly what the dump holds. The manifest is written last:
//! a dump that dies halfway leaves no manifest (and its multipart upload is
//! aborted), so `s3::latest` never picks it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Instant;

use async_compression::Level;
use async_compression::tokio::write::ZstdEncoder;
use bytes::Bytes;
use chrono::{SecondsFormat, Utc};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::catalog;
use super::conn::Database;
use crate::host::StdlibError;
use crate::s3::client::Bucket;
use crate::s3::retention::MANIFEST_SUFFIX;
use crate::s3::transfer::{self, READ_BUFFER, Sink, Written};

/// Where a dump goes, or a restore comes from.
#[derive(Debug, Clone)]
pub(crate) enum Place {
    /// `s3://KEY`: an object in the context's bucket.
    S3(String),
    /// A local file.
    Local(PathBuf),
}

impl Place {
    pub(crate) fn parse(text: &str) -> Place {
        match text.strip_prefix("s3://") {
            Some(key) => Place::S3(key.to_owned()),
            None => Place::Local(PathBuf::from(text)),
        }
    }

    /// Where its manifest lives.
    pub(crate) fn manifest(&self) -> Place {
        match self {
            Place::S3(key) => Place::S3(format!("{key}{MANIFEST_SUFFIX}")),
            Place::Local(path) => {
                let mut name = path.as_os_str().to_owned();
                name.push(MANIFEST_SUFFIX);
                Place::Local(PathBuf::from(name))
            }
        }
    }

    pub(crate) fn display(&self) -> String {
        match self {
            Place::S3(key) => format!("s3://{key}"),
            Place::Local(path) => path.display().to_string(),
        }
    }
}

/// pg_dump's output formats that stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Custom,
    Tar,
    Plain,
}

impl Format {
    pub(crate) fn parse(text: &str) -> Option<Format> {
        match text {
            "custom" | "c" => Some(Format::Custom),
            "tar" | "t" => Some(Format::Tar),
            "plain" | "p" | "sql" => Some(Format::Plain),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Format::Custom => "custom",
            Format::Tar => "tar",
            Format::Plain => "plain",
        }
    }
}

/// Everything `pg::dump` was asked.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) database: Database,
    pub(crate) to: Place,
    pub(crate) bucket: Option<Bucket>,
    pub(crate) format: Format,
    pub(crate) level: i32,
    pub(crate) part_size: usize,
}

/// The output: an S3 multipart upload or a local file written under a temp name.
enum Out {
    S3(Sink),
    File {
        file: tokio::fs::File,
        temp: PathBuf,
        target: PathBuf,
        hasher: Sha256,
        bytes: u64,
    },
}

impl Out {
    async fn open(request: &Request) -> Result<Out, StdlibError> {
        match (&request.to, &request.bucket) {
            (Place::S3(key), Some(bucket)) => {
                Ok(Out::S3(Sink::start(bucket, key, request.part_size).await?))
            }
            (Place::S3(_), None) => Err(StdlibError::message("internal: no bucket for an s3:// dump")),
            (Place::Local(target), _) => {
                let temp = transfer::partial_path(target);
                let file = tokio::fs::File::create(&temp)
                    .await
                    .map_err(|error| local_error(target, &error))?;
                Ok(Out::File {
                    file,
                    temp,
                    target: target.clone(),
                    hasher: Sha256::new(),
                    bytes: 0,
                })
            }
        }
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), StdlibError> {
        match self {
            Out::S3(sink) => sink.write(data).await,
            Out::File {
                file,
                target,
                hasher,
                bytes,
                ..
            } => {
                hasher.update(data);
                *bytes += data.len() as u64;
                file.write_all(data)
                    .await
                    .map_err(|error| local_error(target, &error))
            }
        }
    }

    async fn finish(self) -> Result<Written, StdlibError> {
        match self {
            Out::S3(sink) => sink.finish().await,
            Out::File {
                mut file,
                temp,
                target,
                hasher,
                bytes,
            } => {
                let done = async {
                    file.flush().await?;
                    file.sync_all().await?;
                    drop(file);
                    tokio::fs::rename(&temp, &target).await
                }
                .await;
                if let Err(error) = done {
                    let _ = std::fs::remove_file(&temp);
                    return Err(local_error(&target, &error));
                }
                Ok(Written {
                    bytes,
                    sha256: transfer::hex(&hasher.finalize()),
                })
            }
        }
    }

    async fn abort(self) {
        match self {
            Out::S3(sink) => sink.abort().await,
            Out::File { file, temp, .. } => {
                drop(file);
                let _ = tokio::fs::remove_file(&temp).await;
            }
        }
    }
}

fn local_error(path: &std::path::Path, error: &std::io::Error) -> StdlibError {
    StdlibError::failed(
        format!("pg: cannot write the dump to `{}`: {error}", path.display()),
        "check that the folder exists and is writable, and the free space",
    )
}

/// Read pg_dump's stdout, compress, hash and send it on. Returns the raw
/// (uncompressed) byte count.
async fn pump(
    stdout: &mut tokio::process::ChildStdout,
    out: &mut Out,
    level: i32,
) -> Result<u64, PumpError> {
    let mut encoder = ZstdEncoder::with_quality(Vec::with_capacity(READ_BUFFER * 2), Level::Precise(level));
    let mut buffer = vec![0u8; READ_BUFFER];
    let mut raw = 0u64;
    loop {
        let read = stdout.read(&mut buffer).await.map_err(PumpError::Read)?;
        if read == 0 {
            break;
        }
        raw += read as u64;
        encoder
            .write_all(&buffer[..read])
            .await
            .map_err(PumpError::Read)?;
        if encoder.get_ref().len() >= READ_BUFFER {
            let chunk = std::mem::take(encoder.get_mut());
            out.write(&chunk).await.map_err(PumpError::Write)?;
        }
    }
    encoder.shutdown().await.map_err(PumpError::Read)?;
    let rest = encoder.into_inner();
    if !rest.is_empty() {
        out.write(&rest).await.map_err(PumpError::Write)?;
    }
    Ok(raw)
}

enum PumpError {
    /// Reading pg_dump's output or compressing it failed.
    Read(std::io::Error),
    /// The upload (or file) failed.
    Write(StdlibError),
}

/// The consistent snapshot the dump and the row counts share.
struct Snapshot {
    client: tokio_postgres::Client,
    id: Option<String>,
}

async fn snapshot(database: &Database) -> Result<Snapshot, StdlibError> {
    let client = database.connect().await?;
    client
        .batch_execute("begin isolation level repeatable read, read only")
        .await
        .map_err(|error| database.error("start a snapshot of", &error))?;
    let id = match client.query_one("select pg_export_snapshot()", &[]).await {
        Ok(row) => Some(row.get::<_, String>(0)),
        Err(_) => {
            // A standby cannot export snapshots: counts come from a snapshot
            // of their own, taken just before the dump's.
            let _ = client.batch_execute("rollback").await;
            client
                .batch_execute("begin isolation level repeatable read, read only")
                .await
                .map_err(|error| database.error("start a snapshot of", &error))?;
            None
        }
    };
    Ok(Snapshot { client, id })
}

/// `pg_dump --version`'s answer.
async fn dump_version(database: &Database) -> Result<String, StdlibError> {
    let output = database
        .command("pg_dump")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|error| database.spawn_error("pg_dump", &error))?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Run the dump; returns the manifest (as JSON).
pub(crate) async fn run(request: Request) -> Result<serde_json::Value, StdlibError> {
    let started = Utc::now();
    let clock = Instant::now();
    let database = &request.database;
    let pg_dump_version = dump_version(database).await?;
    let snapshot = snapshot(database).await?;
    let pg_version = catalog::server_version(&snapshot.client, database).await?;
    let tables: BTreeMap<String, i64> = catalog::row_counts(&snapshot.client, database).await?;

    let mut command = database.command("pg_dump");
    command
        .arg(format!("--format={}", request.format.name()))
        .arg("--no-password");
    if request.format == Format::Custom {
        // zstd compresses the stream; pg_dump's own gzip would only cost CPU.
        command.arg("--compress=0");
    }
    if let Some(id) = &snapshot.id {
        command.arg(format!("--snapshot={id}"));
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|error| database.spawn_error("pg_dump", &error))?;
    let (Some(mut stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(StdlibError::message("internal: pg_dump's pipes are missing"));
    };
    let stderr = tokio::spawn(catalog::tail(stderr, 4096));

    let mut out = Out::open(&request).await?;
    let pumped = pump(&mut stdout, &mut out, request.level).await;
    drop(stdout);
    let failure = match pumped {
        Err(PumpError::Write(error)) => {
            // The upload failed: stop pg_dump, drop the parts.
            let _ = child.kill().await;
            out.abort().await;
            return Err(error);
        }
        Err(PumpError::Read(error)) => Some(format!("reading its output failed: {error}")),
        Ok(_) => None,
    };
    let status = child.wait().await;
    let stderr = stderr.await.unwrap_or_default();
    let raw_bytes = match (pumped, status) {
        (Ok(raw), Ok(status)) if status.success() && failure.is_none() => raw,
        (_, status) => {
            out.abort().await;
            let code = status
                .ok()
                .and_then(|status| status.code())
                .map_or_else(|| "killed".to_owned(), |code| format!("exit code {code}"));
            let reason = failure.unwrap_or(code);
            return Err(StdlibError::failed(
                format!(
                    "pg: pg_dump of `{}` failed ({reason}); nothing was written to {}{}",
                    database.display(),
                    request.to.display(),
                    if stderr.is_empty() {
                        String::new()
                    } else {
                        format!(":\n{stderr}")
                    }
                ),
                catalog::tool_hint(&stderr, database, "pg_dump"),
            ));
        }
    };
    let written = out.finish().await?;
    let _ = snapshot.client.batch_execute("commit").await;
    let finished = Utc::now();

    let manifest = serde_json::json!({
        "format": "runbook-pg-dump/1",
        "location": request.to.display(),
        "database": database.name(),
        "server": database.display(),
        "dump_format": request.format.name(),
        "compression": "zstd",
        "bytes": written.bytes,
        "raw_bytes": raw_bytes,
        "sha256": written.sha256,
        "pg_version": pg_version,
        "pg_dump_version": pg_dump_version,
        "consistent": snapshot.id.is_some(),
        "started": started.to_rfc3339_opts(SecondsFormat::Secs, true),
        "finished": finished.to_rfc3339_opts(SecondsFormat::Secs, true),
        "duration_ms": u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX),
        "rows": tables.values().sum::<i64>(),
        "tables": tables,
    });
    let text = serde_json::to_string_pretty(&manifest).unwrap_or_default();
    match (request.to.manifest(), &request.bucket) {
        (Place::S3(key), Some(bucket)) => {
            bucket.put(&key, Bytes::from(text.into_bytes())).await?;
        }
        (Place::Local(path), _) => {
            tokio::fs::write(&path, text)
                .await
                .map_err(|error| local_error(&path, &error))?;
        }
        (Place::S3(_), None) => {}
    }
    Ok(manifest)
}
