//! `pg::restore`: the object (or file) streams through zstd decompression
//! into `pg_restore`'s stdin (`psql` for plain dumps), in one transaction by
//! default. The SHA-256 of the bytes read is checked against the manifest
//! before pg_restore sees the end of its input, so a corrupt backup is never
//! committed. A target database that does not exist is created first (and
//! dropped again if the restore fails).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Instant;

use async_compression::tokio::write::ZstdDecoder;
use futures_util::StreamExt;
use object_store::ObjectStoreExt;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::catalog;
use super::conn::{Database, quote_ident};
use super::dump::{Format, Place};
use crate::host::StdlibError;
use crate::s3::client::{Bucket, path};
use crate::s3::transfer::READ_BUFFER;

/// Everything `pg::restore` was asked.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) from: Place,
    pub(crate) bucket: Option<Bucket>,
    pub(crate) database: Database,
    pub(crate) clean: bool,
    pub(crate) create: bool,
    pub(crate) no_owner: bool,
    pub(crate) single_transaction: bool,
}

/// What a restore did.
#[derive(Debug)]
pub(crate) struct Restored {
    pub(crate) database: String,
    pub(crate) server: String,
    pub(crate) created: bool,
    pub(crate) bytes: u64,
    pub(crate) sha256: String,
    /// Whether a manifest's checksum was there to check against (and matched).
    pub(crate) verified: bool,
    pub(crate) tables: BTreeMap<String, i64>,
    pub(crate) duration_ms: u64,
}

/// The manifest beside the backup, if there is one.
pub(crate) async fn manifest(
    from: &Place,
    bucket: Option<&Bucket>,
) -> Result<Option<serde_json::Value>, StdlibError> {
    let text = match (from.manifest(), bucket) {
        (Place::S3(key), Some(bucket)) => {
            if bucket.head(&key).await?.is_none() {
                return Ok(None);
            }
            String::from_utf8_lossy(&bucket.get(&key).await?).into_owned()
        }
        (Place::Local(path), _) => match tokio::fs::read_to_string(&path).await {
            Ok(text) => text,
            Err(_) => return Ok(None),
        },
        (Place::S3(_), None) => return Ok(None),
    };
    serde_json::from_str(&text).map(Some).map_err(|error| {
        StdlibError::failed(
            format!(
                "pg: the manifest of {} is not JSON: {error}",
                from.display()
            ),
            "the manifest is written by `pg::dump`; restore without it by removing it, or fix it",
        )
    })
}

/// Create the target when missing; refuse a target with tables unless `clean`.
async fn prepare(request: &Request) -> Result<bool, StdlibError> {
    let target = &request.database;
    let name = target.name();
    let admin = target.with_name("postgres");
    let client = admin.connect().await?;
    let exists = client
        .query_opt("select 1 from pg_database where datname = $1", &[&name])
        .await
        .map_err(|error| admin.error("look for the database in", &error))?
        .is_some();
    if !exists {
        if !request.create {
            return Err(StdlibError::failed(
                format!(
                    "pg: the target database `{name}` does not exist on {}",
                    admin.display()
                ),
                "pass `create: true` (the default) to create it",
            ));
        }
        client
            .batch_execute(&format!("create database {}", quote_ident(&name)))
            .await
            .map_err(|error| admin.error(&format!("create the database `{name}` on"), &error))?;
        return Ok(true);
    }
    if !request.clean {
        let target_client = target.connect().await?;
        if catalog::has_tables(&target_client, target).await? {
            return Err(StdlibError::failed(
                format!(
                    "pg: the target database `{}` already has tables",
                    target.display()
                ),
                "restore into a new database (a name that does not exist yet is created), or pass `clean: true` to replace its objects in place",
            ));
        }
    }
    Ok(false)
}

async fn drop_database(database: &Database) {
    let admin = database.with_name("postgres");
    if let Ok(client) = admin.connect().await {
        let _ = client
            .batch_execute(&format!(
                "drop database if exists {}",
                quote_ident(&database.name())
            ))
            .await;
    }
}

/// Compressed bytes held back until the whole backup's checksum is known:
/// the restore program cannot finish (and commit) without them.
const HOLD_BACK: usize = 1024 * 1024;

/// Writes the backup into the restore program, hashing it and holding back
/// its last [`HOLD_BACK`] bytes until the checksum is checked.
struct Feeder<W: AsyncWrite + Unpin> {
    writer: Writer<W>,
    hasher: Sha256,
    bytes: u64,
    pending: Vec<u8>,
    from: Place,
}

impl<W: AsyncWrite + Unpin> Feeder<W> {
    async fn push(&mut self, chunk: &[u8]) -> Result<(), FeedError> {
        self.hasher.update(chunk);
        self.bytes += chunk.len() as u64;
        self.pending.extend_from_slice(chunk);
        if self.pending.len() >= 2 * HOLD_BACK {
            let release = self.pending.len() - HOLD_BACK;
            let Feeder {
                writer,
                pending,
                from,
                ..
            } = self;
            writer.feed(&pending[..release], from).await?;
            self.pending.drain(..release);
        }
        Ok(())
    }

    /// Check the checksum, then release the held bytes and flush.
    async fn end(
        mut self,
        expected: Option<&str>,
        from: &Place,
    ) -> Result<(u64, String, W), FeedError> {
        let sha256 = crate::text::hex(&std::mem::take(&mut self.hasher).finalize());
        if let Some(expected) = expected
            && expected != sha256
        {
            return Err(FeedError::Source(StdlibError::failed(
                format!(
                    "pg: {} does not match its manifest (sha256 {sha256}, expected {expected}); nothing was restored",
                    from.display()
                ),
                "the backup is damaged or was replaced: restore an earlier one",
            )));
        }
        let held = std::mem::take(&mut self.pending);
        self.writer.feed(&held, from).await?;
        let sink = self
            .writer
            .finish()
            .await
            .map_err(|error| damaged(error, from))?;
        Ok((self.bytes, sha256, sink))
    }
}

/// Feed the backup (compressed or not) into `sink`, checking it against
/// `expected`. Returns the bytes read, their SHA-256 and the sink, still open.
async fn feed<W: AsyncWrite + Unpin>(
    request: &Request,
    zstd: bool,
    expected: Option<&str>,
    sink: W,
) -> Result<(u64, String, W), FeedError> {
    let mut feeder = Feeder {
        writer: if zstd {
            Writer::Zstd(ZstdDecoder::new(sink))
        } else {
            Writer::Plain(sink)
        },
        hasher: Sha256::new(),
        bytes: 0,
        pending: Vec::with_capacity(2 * HOLD_BACK),
        from: request.from.clone(),
    };
    match (&request.from, &request.bucket) {
        (Place::S3(key), Some(bucket)) => {
            let location = path(key).map_err(FeedError::Source)?;
            let result = bucket
                .store
                .get(&location)
                .await
                .map_err(|error| FeedError::Source(bucket.error("download", key, &error)))?;
            let mut stream = result.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk
                    .map_err(|error| FeedError::Source(bucket.error("download", key, &error)))?;
                feeder.push(&chunk).await?;
            }
        }
        (Place::Local(file), _) => {
            let cannot = |error: std::io::Error| {
                FeedError::Source(StdlibError::failed(
                    format!("pg: cannot read `{}`: {error}", file.display()),
                    "check the path of the backup",
                ))
            };
            let mut reader = tokio::fs::File::open(file).await.map_err(cannot)?;
            let mut buffer = vec![0u8; READ_BUFFER];
            loop {
                let read = reader.read(&mut buffer).await.map_err(cannot)?;
                if read == 0 {
                    break;
                }
                feeder.push(&buffer[..read]).await?;
            }
        }
        (Place::S3(_), None) => {
            return Err(FeedError::Source(StdlibError::message(
                "internal: no bucket for an s3:// restore",
            )));
        }
    }
    feeder.end(expected, &request.from).await
}

enum Writer<W: AsyncWrite + Unpin> {
    Zstd(ZstdDecoder<W>),
    Plain(W),
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    async fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Writer::Zstd(decoder) => decoder.write_all(data).await,
            Writer::Plain(sink) => sink.write_all(data).await,
        }
    }

    /// Write decompressed bytes: a broken pipe is the program's end, any other
    /// error is the backup's (zstd found it damaged).
    async fn feed(&mut self, data: &[u8], from: &Place) -> Result<(), FeedError> {
        self.write_all(data)
            .await
            .map_err(|error| damaged(error, from))
    }

    /// Flush everything decoded; hand back the sink still open.
    async fn finish(self) -> std::io::Result<W> {
        match self {
            Writer::Zstd(mut decoder) => {
                decoder.flush().await?;
                // `poll_shutdown` of the decoder checks the frame is complete.
                decoder.shutdown().await?;
                Ok(decoder.into_inner())
            }
            Writer::Plain(mut sink) => {
                sink.flush().await?;
                Ok(sink)
            }
        }
    }
}

/// Sort a write error: the restore program went away, or the data is damaged.
fn damaged(error: std::io::Error, from: &Place) -> FeedError {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        FeedError::Sink(error)
    } else {
        FeedError::Source(StdlibError::failed(
            format!(
                "pg: {} cannot be decompressed ({error}): the backup is damaged; nothing was restored",
                from.display()
            ),
            "restore an earlier backup",
        ))
    }
}

enum FeedError {
    /// Reading the backup failed.
    Source(StdlibError),
    /// Writing into the restore program failed (it probably exited).
    Sink(std::io::Error),
}

/// Run the restore.
pub(crate) async fn run(request: Request) -> Result<Restored, StdlibError> {
    let clock = Instant::now();
    let manifest = manifest(&request.from, request.bucket.as_ref()).await?;
    let text_field = |name: &str| {
        manifest
            .as_ref()
            .and_then(|manifest| manifest.get(name))
            .and_then(|value| value.as_str())
            .map(str::to_owned)
    };
    let expected_sha = text_field("sha256");
    let format = text_field("dump_format")
        .and_then(|name| Format::parse(&name))
        .unwrap_or(Format::Custom);
    let zstd = match text_field("compression") {
        Some(compression) => compression == "zstd",
        None => request.from.display().ends_with(".zst"),
    };
    let created = prepare(&request).await?;
    let outcome = restore(&request, format, zstd, expected_sha.as_deref()).await;
    let (bytes, sha256) = match outcome {
        Ok(done) => done,
        Err(error) => {
            if created {
                drop_database(&request.database).await;
            }
            return Err(error);
        }
    };
    let client = request.database.connect().await?;
    let tables = catalog::row_counts(&client, &request.database).await?;
    Ok(Restored {
        database: request.database.name(),
        server: request.database.display(),
        created,
        bytes,
        sha256,
        verified: expected_sha.is_some(),
        tables,
        duration_ms: u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

async fn restore(
    request: &Request,
    format: Format,
    zstd: bool,
    expected_sha: Option<&str>,
) -> Result<(u64, String), StdlibError> {
    let database = &request.database;
    let program = if format == Format::Plain {
        "psql"
    } else {
        "pg_restore"
    };
    let mut command = database.command(program);
    if format == Format::Plain {
        command.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "--no-password"]);
        if request.single_transaction {
            command.arg("--single-transaction");
        }
        command.arg(format!("--dbname={}", database.name()));
    } else {
        command.args(["--exit-on-error", "--no-password"]);
        if request.single_transaction {
            command.arg("--single-transaction");
        }
        if request.clean {
            command.args(["--clean", "--if-exists"]);
        }
        if request.no_owner {
            command.arg("--no-owner");
        }
        command.arg(format!("--dbname={}", database.name()));
    }
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|error| database.spawn_error(program, &error))?;
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(StdlibError::message(
            "internal: the restore program's pipes are missing",
        ));
    };
    let stdout = tokio::spawn(catalog::tail(stdout, 2048));
    let stderr = tokio::spawn(catalog::tail(stderr, 4096));
    let mut stdin = stdin;
    let result = feed(request, zstd, expected_sha, &mut stdin)
        .await
        .map(|(bytes, sha256, _)| (bytes, sha256));
    let fed = match result {
        Ok((bytes, sha256)) => {
            // End of input: the program finishes (and commits) now.
            drop(stdin);
            Ok((bytes, sha256))
        }
        Err(FeedError::Source(error)) => {
            // Never let the program see the end of its input: kill it first,
            // so nothing half-read is committed.
            let _ = child.kill().await;
            drop(stdin);
            return Err(error);
        }
        Err(FeedError::Sink(error)) => {
            drop(stdin);
            Err(error)
        }
    };
    let status = child.wait().await;
    let stderr = stderr.await.unwrap_or_default();
    let _ = stdout.await;
    match (fed, status) {
        (Ok(done), Ok(status)) if status.success() => Ok(done),
        (fed, status) => {
            let reason = match (status.ok().and_then(|s| s.code()), fed) {
                (Some(code), _) if code != 0 => format!("exit code {code}"),
                (_, Err(error)) => format!("its input broke off: {error}"),
                (None, _) => "killed".to_owned(),
                (Some(code), Ok(_)) => format!("exit code {code}"),
            };
            Err(StdlibError::failed(
                format!(
                    "pg: {program} of {} into `{}` failed ({reason}){}{}",
                    request.from.display(),
                    database.display(),
                    if request.single_transaction {
                        "; its transaction was rolled back"
                    } else {
                        ""
                    },
                    if stderr.is_empty() {
                        String::new()
                    } else {
                        format!(":\n{stderr}")
                    }
                ),
                catalog::tool_hint(&stderr, database, program),
            ))
        }
    }
}
