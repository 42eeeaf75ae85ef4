//! `pg::restore`: the object (or file) streams through zstd decompression,
//! never to disk. Into a database it creates, a custom archive's table data
//! is loaded over several connections ([`super::load`]); otherwise it goes
//! into `pg_restore`'s stdin (`psql` for plain dumps), in one transaction by
//! default. The SHA-256 of the bytes read is checked against the manifest
//! before anything restoring from them sees their end, so a corrupt backup
//! is never committed. A target database that does not exist is created
//! first (and dropped again if the restore fails).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Instant;

use async_compression::tokio::write::ZstdDecoder;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::archive;
use super::catalog;
use super::conn::{Database, quote_ident};
use super::dump::{Format, Place};
use super::load;
use crate::host::StdlibError;
use crate::s3::client::Bucket;
use crate::s3::transfer::{Chunks, READ_BUFFER};

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
    /// Connections that load table data at once (1: one pg_restore).
    pub(crate) parallel: usize,
}

/// What a restore did.
#[derive(Debug)]
pub(crate) struct Restored {
    pub(crate) database: String,
    pub(crate) server: String,
    pub(crate) created: bool,
    /// The target was left by a killed restore, and dropped first.
    pub(crate) restarted: bool,
    pub(crate) bytes: u64,
    pub(crate) sha256: String,
    /// Whether a manifest's checksum was there to check against (and matched).
    pub(crate) verified: bool,
    pub(crate) tables: BTreeMap<String, i64>,
    /// Connections the table data was loaded over (1: one pg_restore).
    pub(crate) connections: usize,
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

/// Create the target when missing (or left by a killed restore); refuse a
/// target with tables unless `clean`. Returns (created, started over).
async fn prepare(request: &Request) -> Result<(bool, bool), StdlibError> {
    let target = &request.database;
    let name = target.name();
    let admin = target.with_name("postgres");
    let client = admin.connect().await?;
    let found = client
        .query_opt(
            "select shobj_description(oid, 'pg_database') from pg_database where datname = $1",
            &[&name],
        )
        .await
        .map_err(|error| admin.error("look for the database in", &error))?;
    let exists = found.is_some();
    let interrupted = found
        .and_then(|row| row.get::<_, Option<String>>(0))
        .is_some_and(|comment| comment == IN_PROGRESS);
    if interrupted && request.create {
        // Left by a restore that was killed: it is ours to start again.
        client
            .batch_execute(&format!("drop database {}", quote_ident(&name)))
            .await
            .map_err(|error| {
                admin.error(
                    &format!("drop `{name}` (left by an interrupted restore) on"),
                    &error,
                )
            })?;
    }
    if !exists || (interrupted && request.create) {
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
        mark(target, true).await?;
        return Ok((true, interrupted && request.create));
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
    Ok((false, false))
}

/// The comment a database carries while `pg::restore` fills it: a restore
/// that is killed leaves it, and the next one into that name starts over.
const IN_PROGRESS: &str = "runbook: pg::restore in progress";

/// Set (or clear) the in-progress comment of a database being restored.
async fn mark(database: &Database, on: bool) -> Result<(), StdlibError> {
    let admin = database.with_name("postgres");
    let client = admin.connect().await?;
    let name = database.name();
    let comment = if on {
        format!("'{IN_PROGRESS}'")
    } else {
        "null".to_owned()
    };
    client
        .batch_execute(&format!(
            "comment on database {} is {comment}",
            quote_ident(&name)
        ))
        .await
        .map_err(|error| admin.error(&format!("mark the database `{name}` on"), &error))
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

/// Compressed bytes let through at a time beyond [`HOLD_BACK`]: what is
/// decompressed at once stays small.
const RELEASE: usize = 256 * 1024;

/// The backup's bytes as they arrive: an S3 object's stream or a file.
pub(crate) enum Source<'a> {
    S3(Chunks<'a>),
    File {
        reader: tokio::fs::File,
        path: &'a std::path::Path,
        buffer: Vec<u8>,
    },
}

impl<'a> Source<'a> {
    pub(crate) async fn open(request: &'a Request) -> Result<Source<'a>, StdlibError> {
        match (&request.from, &request.bucket) {
            (Place::S3(key), Some(bucket)) => {
                Ok(Source::S3(Chunks::open(bucket, key, "download").await?))
            }
            (Place::Local(path), _) => {
                let reader = tokio::fs::File::open(path)
                    .await
                    .map_err(|error| cannot_read(path, &error))?;
                Ok(Source::File {
                    reader,
                    path,
                    buffer: vec![0u8; READ_BUFFER],
                })
            }
            (Place::S3(_), None) => Err(StdlibError::message(
                "internal: no bucket for an s3:// restore",
            )),
        }
    }

    /// The next bytes, `None` at the end.
    pub(crate) async fn next(&mut self) -> Result<Option<bytes::Bytes>, StdlibError> {
        match self {
            Source::S3(chunks) => chunks.next().await,
            Source::File {
                reader,
                path,
                buffer,
            } => {
                let read = reader
                    .read(buffer)
                    .await
                    .map_err(|error| cannot_read(path, &error))?;
                Ok((read > 0).then(|| bytes::Bytes::copy_from_slice(&buffer[..read])))
            }
        }
    }
}

fn cannot_read(path: &std::path::Path, error: &std::io::Error) -> StdlibError {
    StdlibError::failed(
        format!("pg: cannot read `{}`: {error}", path.display()),
        "check the path of the backup",
    )
}

/// Hashes the backup, decompresses it, and holds back its last
/// [`HOLD_BACK`] bytes until the checksum is checked: whatever restores from
/// it cannot see the end (and commit) of a backup that does not match.
pub(crate) struct Feeder {
    decoder: Decoder,
    hasher: Sha256,
    bytes: u64,
    pending: Vec<u8>,
    from: Place,
}

enum Decoder {
    Zstd(ZstdDecoder<Vec<u8>>),
    Plain,
}

impl Feeder {
    pub(crate) fn new(zstd: bool, from: &Place) -> Feeder {
        Feeder {
            decoder: if zstd {
                Decoder::Zstd(ZstdDecoder::new(Vec::new()))
            } else {
                Decoder::Plain
            },
            hasher: Sha256::new(),
            bytes: 0,
            pending: Vec::with_capacity(HOLD_BACK + 2 * RELEASE),
            from: from.clone(),
        }
    }

    /// Take in a chunk of the backup; returns the decompressed bytes released.
    pub(crate) async fn push(&mut self, chunk: &[u8]) -> Result<Vec<u8>, StdlibError> {
        self.hasher.update(chunk);
        self.bytes += chunk.len() as u64;
        self.pending.extend_from_slice(chunk);
        if self.pending.len() < HOLD_BACK + RELEASE {
            return Ok(Vec::new());
        }
        let release = self.pending.len() - HOLD_BACK;
        let out: Vec<u8> = self.pending.drain(..release).collect();
        self.decode(&out).await
    }

    async fn decode(&mut self, data: &[u8]) -> Result<Vec<u8>, StdlibError> {
        match &mut self.decoder {
            Decoder::Zstd(decoder) => {
                decoder
                    .write_all(data)
                    .await
                    .map_err(|error| damaged(&error, &self.from))?;
                Ok(std::mem::take(decoder.get_mut()))
            }
            Decoder::Plain => Ok(data.to_vec()),
        }
    }

    /// Check the checksum; returns the bytes read, their SHA-256 and the rest
    /// of the decompressed backup.
    pub(crate) async fn end(
        mut self,
        expected: Option<&str>,
    ) -> Result<(u64, String, Vec<u8>), StdlibError> {
        let sha256 = crate::text::hex(&std::mem::take(&mut self.hasher).finalize());
        if let Some(expected) = expected
            && expected != sha256
        {
            return Err(StdlibError::failed(
                format!(
                    "pg: {} does not match its manifest (sha256 {sha256}, expected {expected}); nothing was restored",
                    self.from.display()
                ),
                "the backup is damaged or was replaced: restore an earlier one",
            ));
        }
        let held = std::mem::take(&mut self.pending);
        let mut rest = self.decode(&held).await?;
        if let Decoder::Zstd(decoder) = &mut self.decoder {
            // `shutdown` of the decoder checks that the frame is complete.
            let done = async {
                decoder.flush().await?;
                decoder.shutdown().await
            }
            .await;
            done.map_err(|error| damaged(&error, &self.from))?;
            rest.append(decoder.get_mut());
        }
        Ok((self.bytes, sha256, rest))
    }
}

/// Where the decompressed backup goes.
pub(crate) trait Target {
    async fn write(&mut self, data: &[u8]) -> Result<(), FeedError>;
}

impl Target for tokio::process::ChildStdin {
    async fn write(&mut self, data: &[u8]) -> Result<(), FeedError> {
        self.write_all(data).await.map_err(FeedError::Sink)
    }
}

/// The start of the backup, decompressed: enough to read an archive's TOC.
pub(crate) struct Peeked {
    pub(crate) head: Vec<u8>,
    pub(crate) toc: Option<archive::Toc>,
    /// The feeder, or the end (bytes, sha256) when the backup was all read.
    pub(crate) rest: Result<Feeder, (u64, String)>,
}

/// Read until the archive's table of contents is complete (or the backup is
/// not a custom archive, or it ended).
async fn peek(
    source: &mut Source<'_>,
    mut feeder: Feeder,
    expected: Option<&str>,
) -> Result<Peeked, StdlibError> {
    let mut head = Vec::new();
    loop {
        match archive::Toc::parse(&head) {
            Ok(Some(toc)) => {
                return Ok(Peeked {
                    head,
                    toc: Some(toc),
                    rest: Ok(feeder),
                });
            }
            Ok(None) => {}
            Err(_) => {
                return Ok(Peeked {
                    head,
                    toc: None,
                    rest: Ok(feeder),
                });
            }
        }
        match source.next().await? {
            Some(chunk) => head.extend(feeder.push(&chunk).await?),
            None => {
                let (bytes, sha256, rest) = feeder.end(expected).await?;
                head.extend(rest);
                let toc = archive::Toc::parse(&head).ok().flatten();
                return Ok(Peeked {
                    head,
                    toc,
                    rest: Err((bytes, sha256)),
                });
            }
        }
    }
}

/// Write the peeked start (from `skip`) and the rest of the backup into
/// `target`, checking it against `expected`; returns the bytes read and
/// their SHA-256.
pub(crate) async fn pump<T: Target>(
    source: &mut Source<'_>,
    peeked: Peeked,
    skip: usize,
    expected: Option<&str>,
    target: &mut T,
) -> Result<(u64, String), FeedError> {
    target
        .write(&peeked.head[skip.min(peeked.head.len())..])
        .await?;
    let mut feeder = match peeked.rest {
        Ok(feeder) => feeder,
        Err(done) => return Ok(done),
    };
    while let Some(chunk) = source.next().await.map_err(FeedError::Source)? {
        let out = feeder.push(&chunk).await.map_err(FeedError::Source)?;
        if !out.is_empty() {
            target.write(&out).await?;
        }
    }
    let (bytes, sha256, rest) = feeder.end(expected).await.map_err(FeedError::Source)?;
    target.write(&rest).await?;
    Ok((bytes, sha256))
}

/// zstd found the backup damaged.
fn damaged(error: &std::io::Error, from: &Place) -> StdlibError {
    StdlibError::failed(
        format!(
            "pg: {} cannot be decompressed ({error}): the backup is damaged; nothing was restored",
            from.display()
        ),
        "restore an earlier backup",
    )
}

pub(crate) enum FeedError {
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
    let format = text_field("dump_format").and_then(|name| Format::parse(&name));
    let zstd = match text_field("compression") {
        Some(compression) => compression == "zstd",
        None => request.from.display().ends_with(".zst"),
    };
    let (created, restarted) = prepare(&request).await?;
    let outcome = restore(&request, format, zstd, expected_sha.as_deref(), created).await;
    let (bytes, sha256, connections) = match outcome {
        Ok(done) => done,
        Err(error) => {
            if created {
                drop_database(&request.database).await;
            }
            return Err(error);
        }
    };
    if created {
        mark(&request.database, false).await?;
    }
    let client = request.database.connect().await?;
    let tables = catalog::row_counts(&client, &request.database, &BTreeMap::new()).await?;
    Ok(Restored {
        database: request.database.name(),
        server: request.database.display(),
        created,
        restarted,
        bytes,
        sha256,
        verified: expected_sha.is_some(),
        tables,
        connections,
        duration_ms: u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

async fn restore(
    request: &Request,
    format: Option<Format>,
    zstd: bool,
    expected_sha: Option<&str>,
    created: bool,
) -> Result<(u64, String, usize), StdlibError> {
    let mut source = Source::open(request).await?;
    let feeder = Feeder::new(zstd, &request.from);
    let peeked = peek(&mut source, feeder, expected_sha).await?;
    // Without a manifest, the backup's first bytes say what it is.
    let format = format.unwrap_or_else(|| sniff(&peeked.head));
    if let Some(toc) = peeked.toc.as_ref()
        && let Some(plan) = load::plan(request, format, created, toc)
    {
        let connections = plan.connections();
        let (bytes, sha256) = load::run(request, plan, &mut source, peeked, expected_sha).await?;
        return Ok((bytes, sha256, connections));
    }
    let (bytes, sha256) = program(request, format, &mut source, peeked, expected_sha).await?;
    Ok((bytes, sha256, 1))
}

/// `pg_restore` into the target: stops at the first error, never prompts,
/// `--no-owner` when asked.
pub(crate) fn pg_restore_command(
    request: &Request,
    single_transaction: bool,
) -> tokio::process::Command {
    let database = &request.database;
    let mut command = database.command("pg_restore");
    command.args(["--exit-on-error", "--no-password"]);
    if single_transaction {
        command.arg("--single-transaction");
    }
    if request.no_owner {
        command.arg("--no-owner");
    }
    command.arg(format!("--dbname={}", database.name()));
    command
}

/// A restore program, its stdin to feed, and the tails of its output.
pub(crate) struct Started {
    pub(crate) child: tokio::process::Child,
    pub(crate) stdin: tokio::process::ChildStdin,
    pub(crate) stdout: tokio::task::JoinHandle<String>,
    pub(crate) stderr: tokio::task::JoinHandle<String>,
}

/// Start `command` (`program` of `database`) with piped stdin, stdout, stderr.
pub(crate) fn start(
    database: &Database,
    program: &str,
    mut command: tokio::process::Command,
) -> Result<Started, StdlibError> {
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
        return Err(StdlibError::message(format!(
            "internal: {program}'s pipes are missing"
        )));
    };
    Ok(Started {
        child,
        stdin,
        stdout: tokio::spawn(catalog::tail(stdout, 2048)),
        stderr: tokio::spawn(catalog::tail(stderr, 4096)),
    })
}

/// A dump's format from its first bytes: pg_dump's custom archives start
/// with `PGDMP`, tar archives have `ustar` at byte 257, the rest is SQL.
fn sniff(head: &[u8]) -> Format {
    if head.starts_with(b"PGDMP") {
        Format::Custom
    } else if head.get(257..262) == Some(b"ustar".as_slice()) {
        Format::Tar
    } else {
        Format::Plain
    }
}

/// Restore through pg_restore (psql for plain dumps), fed on its stdin.
async fn program(
    request: &Request,
    format: Format,
    source: &mut Source<'_>,
    peeked: Peeked,
    expected_sha: Option<&str>,
) -> Result<(u64, String), StdlibError> {
    let database = &request.database;
    let program = if format == Format::Plain {
        "psql"
    } else {
        "pg_restore"
    };
    let command = if format == Format::Plain {
        let mut command = database.command(program);
        command.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "--no-password"]);
        if request.single_transaction {
            command.arg("--single-transaction");
        }
        command.arg(format!("--dbname={}", database.name()));
        command
    } else {
        let mut command = pg_restore_command(request, request.single_transaction);
        if request.clean {
            command.args(["--clean", "--if-exists"]);
        }
        command
    };
    let Started {
        mut child,
        mut stdin,
        stdout,
        stderr,
    } = start(database, program, command)?;
    let result = pump(source, peeked, 0, expected_sha, &mut stdin).await;
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
