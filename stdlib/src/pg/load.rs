//! Restoring a custom archive into a database `pg::restore` created, with
//! the table data loaded over several connections at once. pg_restore alone
//! loads it over one, so one server core does all the COPY work; here the
//! archive still streams once (never to disk), and:
//!
//! 1. pg_restore creates the schema (`--section=pre-data`) from the header
//!    and table of contents, which come first in the archive;
//! 2. the data blocks are read as they arrive and their COPY rows go, in
//!    batches cut at row ends, to `parallel` connections, each in a
//!    transaction that commits only once the backup's checksum matched;
//! 3. pg_restore runs the rest (sequence values, indexes, constraints,
//!    triggers: `--section=data --section=post-data` without the table data).
//!
//! A failure drops the database (it was created for this restore); a killed
//! restore leaves it marked in progress, and the next restore into that name
//! starts over. Archives this does not read (pg_dump's own compression,
//! large objects, `--inserts`, an encoding other than UTF8) and restores into
//! an existing database go through one pg_restore in one transaction.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::SinkExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_postgres::CopyInSink;

use super::archive::{BLOCK_DATA, Blocks, Event, Toc};
use super::catalog;
use super::conn::Database;
use super::dump::Format;
use super::restore::{
    FeedError, Peeked, Request, Source, Started, Target, pg_restore_command, pump, start,
};
use crate::host::StdlibError;

/// COPY rows sent to one connection at a time (cut at a row's end).
const BATCH: usize = 256 * 1024;

/// Batches waiting for each connection.
const QUEUE: usize = 2;

/// Session settings of a loading connection, as pg_restore sets them.
const SESSION: &str = "SET statement_timeout = 0; SET lock_timeout = 0; \
    SET idle_in_transaction_session_timeout = 0; SET client_encoding = 'UTF8'; \
    SET standard_conforming_strings = on; \
    SELECT pg_catalog.set_config('search_path', '', false); \
    SET row_security = off; BEGIN";

/// A restore this module runs.
pub(crate) struct Plan {
    toc: Toc,
    connections: usize,
}

impl Plan {
    pub(crate) fn connections(&self) -> usize {
        self.connections
    }
}

/// Whether this restore loads its data here, and over how many connections.
pub(crate) fn plan(request: &Request, format: Format, created: bool, toc: &Toc) -> Option<Plan> {
    let readable = toc.entries.iter().all(|entry| {
        let large_object = entry.desc.starts_with("BLOB") || entry.tag.starts_with("LARGE OBJECT");
        let copy = entry.desc == "TABLE DATA" && entry.copy.starts_with("COPY ");
        !large_object && (!entry.has_data || copy)
    });
    let usable = format == Format::Custom
        && created
        && !request.clean
        && request.parallel >= 2
        && !toc.compressed
        && toc
            .encoding()
            .is_some_and(|name| name.eq_ignore_ascii_case("UTF8"))
        && readable;
    usable.then(|| Plan {
        toc: toc.clone(),
        connections: request.parallel,
    })
}

/// Run the restore: schema, data over the connections, then the rest.
pub(crate) async fn run(
    request: &Request,
    plan: Plan,
    source: &mut Source<'_>,
    peeked: Peeked,
    expected_sha: Option<&str>,
) -> Result<(u64, String), StdlibError> {
    let toc_bytes = peeked.head[..plan.toc.len].to_vec();
    pg_restore(request, &toc_bytes, &["--section=pre-data".into()], None).await?;

    let mut tables = HashMap::new();
    let mut statements = Vec::new();
    for entry in plan.toc.entries.iter().filter(|entry| entry.has_data) {
        tables.insert(entry.id, statements.len());
        statements.push(Table {
            copy: entry.copy.trim_end().trim_end_matches(';').to_owned(),
            name: entry.tag.clone(),
        });
    }
    let statements = Arc::new(statements);
    let mut outboxes = Vec::new();
    let mut workers = Vec::new();
    for _ in 0..plan.connections {
        let (outbox, inbox) = mpsc::channel(QUEUE);
        outboxes.push(outbox);
        workers.push(tokio::spawn(worker(
            request.database.clone(),
            Arc::clone(&statements),
            inbox,
        )));
    }
    let mut loader = Loader {
        blocks: Blocks::new(plan.toc.int_size),
        tables,
        current: None,
        batch: BytesMut::with_capacity(2 * BATCH),
        outboxes,
        next: 0,
        from: request.from.display(),
    };
    let fed = pump(source, peeked, plan.toc.len, expected_sha, &mut loader).await;
    let fed = match fed {
        Ok(done) if loader.blocks.at_end() => Ok(done),
        Ok(_) => Err(FeedError::Source(StdlibError::failed(
            format!(
                "pg: {} ends inside a data block: the backup is cut short; nothing was restored",
                request.from.display()
            ),
            "restore an earlier backup",
        ))),
        Err(error) => Err(error),
    };
    let outboxes = std::mem::take(&mut loader.outboxes);
    if fed.is_ok() {
        for outbox in &outboxes {
            let _ = outbox.send(Message::Commit).await;
        }
    }
    // Without a commit, a connection's transaction is dropped with it.
    drop(outboxes);
    let mut failure = None;
    for worker in workers {
        let result = match worker.await {
            Ok(result) => result,
            Err(error) => Err(StdlibError::message(format!(
                "internal: a loading connection failed: {error}"
            ))),
        };
        if let Err(error) = result {
            failure.get_or_insert(error);
        }
    }
    let done = match (fed, failure) {
        (Err(FeedError::Source(error)), _) | (_, Some(error)) => return Err(error),
        (Err(FeedError::Sink(error)), None) => {
            return Err(StdlibError::message(format!(
                "internal: loading stopped: {error}"
            )));
        }
        (Ok(done), None) => done,
    };

    // Everything but the schema and the table data, in the archive's order.
    let list: String = plan
        .toc
        .entries
        .iter()
        .filter(|entry| !entry.has_data)
        .map(|entry| format!("{};\n", entry.id))
        .collect();
    pg_restore(
        request,
        &toc_bytes,
        &["--section=data".into(), "--section=post-data".into()],
        Some(&list),
    )
    .await?;
    Ok(done)
}

/// A table the archive has data for.
struct Table {
    copy: String,
    name: String,
}

enum Message {
    Rows { table: usize, data: Bytes },
    Commit,
}

/// Reads the data blocks and deals their rows out to the connections.
struct Loader {
    blocks: Blocks,
    tables: HashMap<i64, usize>,
    current: Option<usize>,
    batch: BytesMut,
    outboxes: Vec<mpsc::Sender<Message>>,
    next: usize,
    from: String,
}

impl Loader {
    async fn send(&mut self, table: usize, data: Bytes) -> Result<(), FeedError> {
        let outbox = &self.outboxes[self.next];
        self.next = (self.next + 1) % self.outboxes.len();
        outbox
            .send(Message::Rows { table, data })
            .await
            .map_err(|_| FeedError::Sink(std::io::Error::other("a loading connection stopped")))
    }
}

impl Target for Loader {
    async fn write(&mut self, data: &[u8]) -> Result<(), FeedError> {
        // Cut the rows into batches first, then send them (which waits).
        let mut ready: Vec<(usize, Bytes)> = Vec::new();
        let mut unknown = None;
        let Loader {
            blocks,
            tables,
            current,
            batch,
            ..
        } = self;
        let read = blocks.feed(data, |event| match event {
            Event::Block { kind, id } => {
                *current = tables.get(&id).copied().filter(|_| kind == BLOCK_DATA);
                if current.is_none() {
                    unknown.get_or_insert((kind, id));
                }
            }
            Event::Data(bytes) => {
                batch.extend_from_slice(bytes);
                if batch.len() >= BATCH
                    && let Some(table) = *current
                    && let Some(end) = batch.iter().rposition(|byte| *byte == b'\n')
                {
                    ready.push((table, batch.split_to(end + 1).freeze()));
                }
            }
            Event::End => {
                if let Some(table) = current.take()
                    && !batch.is_empty()
                {
                    ready.push((table, batch.split().freeze()));
                }
                batch.clear();
            }
        });
        let why = match (read, unknown) {
            (Err(error), _) => Some(error.to_string()),
            (Ok(()), Some((kind, id))) => Some(format!(
                "a data block of kind {kind} for entry {id}, which the table of contents does not list"
            )),
            (Ok(()), None) => None,
        };
        if let Some(why) = why {
            return Err(FeedError::Source(StdlibError::failed(
                format!("pg: {} is damaged ({why}); nothing was restored", self.from),
                "restore an earlier backup",
            )));
        }
        for (table, rows) in ready {
            self.send(table, rows).await?;
        }
        Ok(())
    }
}

/// One loading connection: a COPY per table it is sent rows of, all in one
/// transaction, committed when told.
async fn worker(
    database: Database,
    tables: Arc<Vec<Table>>,
    mut inbox: mpsc::Receiver<Message>,
) -> Result<(), StdlibError> {
    let client = database.connect().await?;
    client
        .batch_execute(SESSION)
        .await
        .map_err(|error| database.error("start loading rows into", &error))?;
    let mut open: Option<(usize, Pin<Box<CopyInSink<Bytes>>>)> = None;
    let copy_error = |table: usize, error: &tokio_postgres::Error| {
        database.error(
            &format!("load the rows of `{}` into", tables[table].name),
            error,
        )
    };
    while let Some(message) = inbox.recv().await {
        match message {
            Message::Rows { table, data } => {
                if open.as_ref().map(|(open, _)| *open) != Some(table) {
                    if let Some((done, mut sink)) = open.take() {
                        sink.as_mut()
                            .finish()
                            .await
                            .map_err(|error| copy_error(done, &error))?;
                    }
                    let sink = client
                        .copy_in::<_, Bytes>(tables[table].copy.as_str())
                        .await
                        .map_err(|error| copy_error(table, &error))?;
                    open = Some((table, Box::pin(sink)));
                }
                if let Some((_, sink)) = open.as_mut() {
                    sink.send(data)
                        .await
                        .map_err(|error| copy_error(table, &error))?;
                }
            }
            Message::Commit => {
                if let Some((done, mut sink)) = open.take() {
                    sink.as_mut()
                        .finish()
                        .await
                        .map_err(|error| copy_error(done, &error))?;
                }
                return client
                    .batch_execute("COMMIT")
                    .await
                    .map_err(|error| database.error("commit the loaded rows in", &error));
            }
        }
    }
    // Stopped without a commit: the transaction goes with the connection,
    // and the reason is reported by whoever stopped it.
    Ok(())
}

/// Run pg_restore on the archive's header and TOC alone (what the schema
/// sections need), with `list` as its `--use-list`.
async fn pg_restore(
    request: &Request,
    toc: &[u8],
    sections: &[String],
    list: Option<&str>,
) -> Result<(), StdlibError> {
    let database = &request.database;
    let list_file = match list {
        Some(list) => {
            let path = std::env::temp_dir().join(format!(
                "runbook-restore-{}-{:016x}.list",
                std::process::id(),
                rand::random::<u64>()
            ));
            std::fs::write(&path, list).map_err(|error| {
                StdlibError::failed(
                    format!("pg: cannot write `{}`: {error}", path.display()),
                    "pg::restore writes a short list for pg_restore into the temp folder (TMPDIR)",
                )
            })?;
            Some(TempFile(path))
        }
        None => None,
    };
    let mut command = pg_restore_command(request, true);
    command.args(sections);
    if let Some(file) = &list_file {
        command.arg(format!("--use-list={}", file.0.display()));
    }
    let Started {
        mut child,
        mut stdin,
        stdout,
        stderr,
    } = start(database, "pg_restore", command)?;
    // A pg_restore that exits early breaks the pipe: its status says why.
    let _ = stdin.write_all(toc).await;
    drop(stdin);
    let status = child.wait().await;
    let stderr = stderr.await.unwrap_or_default();
    let _ = stdout.await;
    match status {
        Ok(status) if status.success() => Ok(()),
        status => {
            let reason = status
                .ok()
                .and_then(|status| status.code())
                .map_or_else(|| "killed".to_owned(), |code| format!("exit code {code}"));
            Err(StdlibError::failed(
                format!(
                    "pg: pg_restore {} of {} into `{}` failed ({reason}){}",
                    sections.join(" "),
                    request.from.display(),
                    database.display(),
                    if stderr.is_empty() {
                        String::new()
                    } else {
                        format!(":\n{stderr}")
                    }
                ),
                catalog::tool_hint(&stderr, database, "pg_restore"),
            ))
        }
    }
}

/// A file removed when dropped.
struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
