//! `pg::dump`: `pg_dump`'s output, compressed with zstd as it streams, goes
//! straight into an S3 multipart upload (or a local file): no temp file, a
//! few parts in memory. The row counts in the manifest describe exactly what
//! the dump holds: a custom archive's rows are counted as they stream past,
//! and anything else is counted in the snapshot the dump reads
//! (`pg_export_snapshot` + `pg_dump --snapshot`). The manifest is written last:
//! a dump that dies halfway leaves no manifest (and its multipart upload is
//! aborted), so `s3::latest` never picks it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Instant;

use async_compression::Level;
use async_compression::tokio::write::ZstdEncoder;
use async_compression::zstd::CParameter;
use bytes::{Bytes, BytesMut};
use chrono::{SecondsFormat, Utc};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::archive::RowCounter;
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
    /// Lost with a task that panicked; nothing to finish or abort.
    Gone,
}

impl Out {
    async fn open(request: &Request) -> Result<Out, StdlibError> {
        match (&request.to, &request.bucket) {
            (Place::S3(key), Some(bucket)) => {
                Ok(Out::S3(Sink::start(bucket, key, request.part_size).await?))
            }
            (Place::S3(_), None) => Err(StdlibError::message(
                "internal: no bucket for an s3:// dump",
            )),
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
            Out::Gone => Err(StdlibError::message("internal: the output is gone")),
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
                    sha256: crate::text::hex(&hasher.finalize()),
                })
            }
            Out::Gone => Err(StdlibError::message("internal: the output is gone")),
        }
    }

    async fn abort(self) {
        match self {
            Out::S3(sink) => sink.abort().await,
            Out::File { file, temp, .. } => {
                drop(file);
                let _ = tokio::fs::remove_file(&temp).await;
            }
            Out::Gone => {}
        }
    }
}

fn local_error(path: &std::path::Path, error: &std::io::Error) -> StdlibError {
    StdlibError::failed(
        format!("pg: cannot write the dump to `{}`: {error}", path.display()),
        "check that the folder exists and is writable, and the free space",
    )
}

/// Raw chunks read from pg_dump and not yet compressed (each up to
/// [`READ_BUFFER`]): pg_dump keeps writing while a chunk is compressed.
const RAW_CHUNKS: usize = 8;

/// Compressed chunks (about 1 MiB each) waiting to be hashed and uploaded.
const ZIPPED_CHUNKS: usize = 2;

/// zstd's compression threads.
const ZSTD_WORKERS: u32 = 2;

/// Raw bytes per zstd job: memory is a few jobs per worker.
const ZSTD_JOB: u32 = 1024 * 1024;

/// Compressed bytes gathered before they go to the uploader.
const ZIPPED_CHUNK: usize = 1024 * 1024;

/// Read pg_dump's stdout, compress, hash and send it on, in three stages
/// that run at once: a reader task drains the pipe, this task compresses,
/// a writer task hashes and uploads. Memory stays bounded by the channels
/// and the upload's parts in flight. Returns the output (to finish or
/// abort) and the raw (uncompressed) byte count.
async fn pump(
    stdout: tokio::process::ChildStdout,
    out: Out,
    level: i32,
    counter: Option<RowCounter>,
) -> (Out, Option<RowCounter>, Result<u64, PumpError>) {
    let (raw_tx, mut raw_rx) = mpsc::channel::<std::io::Result<Bytes>>(RAW_CHUNKS);
    let reader = tokio::spawn(async move {
        let mut stdout = stdout;
        let mut counter = counter;
        loop {
            let mut buffer = BytesMut::with_capacity(READ_BUFFER);
            let sent = match stdout.read_buf(&mut buffer).await {
                Ok(0) => break,
                Ok(_) => {
                    if let Some(counter) = counter.as_mut() {
                        counter.feed(&buffer);
                    }
                    raw_tx.send(Ok(buffer.freeze())).await
                }
                Err(error) => raw_tx.send(Err(error)).await,
            };
            if sent.is_err() {
                break;
            }
        }
        // Dropping the pipe here stops a pg_dump nobody reads any more.
        counter
    });
    let (zip_tx, mut zip_rx) = mpsc::channel::<Vec<u8>>(ZIPPED_CHUNKS);
    let writer = tokio::spawn(async move {
        let mut out = out;
        while let Some(chunk) = zip_rx.recv().await {
            if let Err(error) = out.write(&chunk).await {
                return (out, Err(error));
            }
        }
        (out, Ok(()))
    });

    // zstd compresses on its own worker threads (like `zstd -T2`), in jobs of
    // ZSTD_JOB bytes, so compression is not one core's work.
    let mut encoder = ZstdEncoder::with_quality_and_params(
        Vec::with_capacity(ZIPPED_CHUNK + READ_BUFFER),
        Level::Precise(level),
        &[
            CParameter::nb_workers(ZSTD_WORKERS),
            CParameter::job_size(ZSTD_JOB),
        ],
    );
    let mut raw = 0u64;
    let compressed: Result<(), Option<std::io::Error>> = async {
        while let Some(chunk) = raw_rx.recv().await {
            let chunk = chunk.map_err(Some)?;
            raw += chunk.len() as u64;
            encoder.write_all(&chunk).await.map_err(Some)?;
            if encoder.get_ref().len() >= ZIPPED_CHUNK {
                let zipped = std::mem::replace(
                    encoder.get_mut(),
                    Vec::with_capacity(ZIPPED_CHUNK + READ_BUFFER),
                );
                // A closed channel: the writer failed; its error says why.
                zip_tx.send(zipped).await.map_err(|_| None)?;
            }
        }
        encoder.shutdown().await.map_err(Some)?;
        let rest = std::mem::take(encoder.get_mut());
        if !rest.is_empty() {
            zip_tx.send(rest).await.map_err(|_| None)?;
        }
        Ok(())
    }
    .await;
    drop(raw_rx);
    drop(zip_tx);
    let counter = reader.await.ok().flatten();
    let (out, written) = match writer.await {
        Ok(done) => done,
        Err(error) => {
            return (
                Out::Gone,
                None,
                Err(PumpError::Write(StdlibError::message(format!(
                    "internal: the upload task failed: {error}"
                )))),
            );
        }
    };
    let result = match (compressed, written) {
        (_, Err(error)) => Err(PumpError::Write(error)),
        (Err(Some(error)), Ok(())) => Err(PumpError::Read(error)),
        (Err(None), Ok(())) => Err(PumpError::Write(StdlibError::message(
            "internal: the upload stopped without an error",
        ))),
        (Ok(()), Ok(())) => Ok(raw),
    };
    (out, counter, result)
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

/// Where the row counts of the manifest come from.
enum Counting {
    /// Counted after the dump (what the stream did not count).
    Later(Snapshot),
    /// Counted by the server while the dump runs.
    Running(tokio::task::JoinHandle<(Snapshot, Result<Counts, StdlibError>)>),
}

/// Row counts, keyed `schema.table`.
type Counts = BTreeMap<String, i64>;

impl Counting {
    fn abort(&self) {
        if let Counting::Running(task) = self {
            task.abort();
        }
    }
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
    let snapshot_id = snapshot.id.clone();

    let mut command = database.command("pg_dump");
    command
        .arg(format!("--format={}", request.format.name()))
        .arg("--no-password");
    if request.format == Format::Custom {
        // zstd compresses the stream; pg_dump's own gzip would only cost CPU.
        command.arg("--compress=0");
    }
    if let Some(id) = &snapshot_id {
        command.arg(format!("--snapshot={id}"));
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|error| database.spawn_error("pg_dump", &error))?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(StdlibError::message(
            "internal: pg_dump's pipes are missing",
        ));
    };
    let stderr = tokio::spawn(catalog::tail(stderr, 4096));

    // The row counts describe the same snapshot: a custom archive's are
    // counted in the stream itself (tables it has no rows of, such as
    // partitioned parents, by the server afterwards, in the snapshot); the
    // other formats are counted by the server while the dump runs.
    let counting = if request.format == Format::Custom {
        Counting::Later(snapshot)
    } else {
        let database = database.clone();
        Counting::Running(tokio::spawn(async move {
            let counts = catalog::row_counts(&snapshot.client, &database, &BTreeMap::new()).await;
            (snapshot, counts)
        }))
    };
    let counter = (request.format == Format::Custom).then(RowCounter::new);
    let out = match Out::open(&request).await {
        Ok(out) => out,
        Err(error) => {
            let _ = child.kill().await;
            counting.abort();
            return Err(error);
        }
    };
    let (out, counter, pumped) = pump(stdout, out, request.level, counter).await;
    let pumped = match pumped {
        Err(PumpError::Write(error)) => {
            // The upload failed: stop pg_dump and the counting, drop the parts.
            let _ = child.kill().await;
            counting.abort();
            out.abort().await;
            return Err(error);
        }
        Err(PumpError::Read(error)) => Err(format!("reading its output failed: {error}")),
        Ok(raw) => Ok(raw),
    };
    let status = child.wait().await;
    let stderr = stderr.await.unwrap_or_default();
    let raw_bytes = match (pumped, status) {
        (Ok(raw), Ok(status)) if status.success() => raw,
        (pumped, status) => {
            counting.abort();
            out.abort().await;
            let reason = match pumped {
                Err(reason) => reason,
                Ok(_) => status
                    .ok()
                    .and_then(|status| status.code())
                    .map_or_else(|| "killed".to_owned(), |code| format!("exit code {code}")),
            };
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
    let (snapshot, counts) = match counting {
        Counting::Running(task) => match task.await {
            Ok(done) => done,
            Err(error) => {
                out.abort().await;
                return Err(StdlibError::message(format!(
                    "internal: counting rows failed: {error}"
                )));
            }
        },
        Counting::Later(snapshot) => {
            let known = counter.and_then(RowCounter::finish).unwrap_or_default();
            let counts = catalog::row_counts(&snapshot.client, database, &known).await;
            (snapshot, counts)
        }
    };
    let tables: BTreeMap<String, i64> = match counts {
        Ok(tables) => tables,
        Err(error) => {
            out.abort().await;
            return Err(error);
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
