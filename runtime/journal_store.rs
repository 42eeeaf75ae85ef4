//! Journals in S3: a run's journal written to any S3-compatible store as it
//! goes, so another machine can list it, take the run over and finish it.
//!
//! Layout under `s3://BUCKET/PREFIX/`:
//!
//! - `RUN/journal/<first line:020>.jsonl`: append-only segments, each a run
//!   of whole journal lines (byte for byte what the local copy holds),
//!   created with `If-None-Match: *` (object_store's `PutMode::Create`). A
//!   segment is named by the number of its first line, so two writers that
//!   both continue the same journal collide on the same name and the second
//!   one fails.
//! - `RUN/lease.json`: who holds the run (`owner`, `epoch`, `lines`),
//!   created with `PutMode::Create` when the run starts and rewritten with
//!   `If-Match` on its ETag (`PutMode::Update`) before every segment. A
//!   machine that takes the run over (`runbook resume s3://...`) rewrites it
//!   with a higher epoch; the old holder's next write then fails its
//!   `If-Match`, and it stops (exit 4) naming the new holder, without doing
//!   anything more.
//!
//! Lines are batched: a segment is written at the latest about a second
//! after its first line (a background thread looks every 200 ms), and at
//! once at step ends, gates, resume and end records. Stores that ignore the
//! conditions would let two machines append to one run, so a probe at start
//! ([`Store::probe`]) refuses them.
//!
//! The HMAC chain needs the same audit key on every machine that writes or
//! verifies the journal, so an S3 journal requires `RUNBOOK_AUDIT_KEY`.

use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion,
};

use crate::context::Context;
use crate::error::{Diagnostic, Exit};

/// How far a segment may lag its first line.
pub const MAX_LAG: Duration = Duration::from_secs(1);

/// How often the background flusher looks.
const TICK: Duration = Duration::from_millis(200);

/// Takeover attempts against a lease that keeps changing.
const TAKEOVER_ATTEMPTS: usize = 10;

/// `s3://BUCKET/PREFIX`: where journals go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub bucket: String,
    /// Without leading or trailing slashes; may be empty.
    pub prefix: String,
}

impl Url {
    /// Whether `text` names an S3 journal location.
    pub fn is_s3(text: &str) -> bool {
        text.starts_with("s3://")
    }

    pub fn parse(text: &str) -> Result<Url, Diagnostic> {
        let rest = text.strip_prefix("s3://").unwrap_or_default();
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Diagnostic::new(
                format!("`{text}` is not an S3 journal location"),
                Exit::Usage,
            )
            .hint("write it as s3://BUCKET/PREFIX (e.g. s3://ops-journals/runbook)"));
        }
        Ok(Url {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
        })
    }

    /// `s3://BUCKET/PREFIX/RUN` split into the location and the run id.
    pub fn parse_run(text: &str) -> Result<(Url, String), Diagnostic> {
        let url = Url::parse(text)?;
        match url.prefix.rsplit_once('/') {
            Some((prefix, run)) if !run.is_empty() => Ok((
                Url {
                    bucket: url.bucket,
                    prefix: prefix.to_owned(),
                },
                run.to_owned(),
            )),
            None if !url.prefix.is_empty() => Ok((
                Url {
                    bucket: url.bucket,
                    prefix: String::new(),
                },
                url.prefix,
            )),
            _ => Err(Diagnostic::new(
                format!("`{text}` names no run"),
                Exit::Usage,
            )
            .hint("write it as s3://BUCKET/PREFIX/RUN (`runbook runs --journal s3://BUCKET/PREFIX` lists them)")),
        }
    }

    fn key(&self, rest: &str) -> Key {
        if self.prefix.is_empty() {
            Key::from(rest)
        } else {
            Key::from(format!("{}/{rest}", self.prefix))
        }
    }

    /// `s3://BUCKET/PREFIX/RUN`.
    pub fn run_url(&self, run: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.key(run))
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "s3://{}/{}", self.bucket, self.prefix)
    }
}

/// The S3 journal location a run uses: `--journal`, else the context's
/// `journal` key; `None` for a local journal only.
pub fn configured(flag: Option<&str>, context: &Context) -> Result<Option<Url>, Diagnostic> {
    let from_context = context.value("journal").and_then(toml::Value::as_str);
    match flag.or(from_context) {
        Some(text) if Url::is_s3(text) => Url::parse(text).map(Some),
        Some(text) => Err(Diagnostic::new(
            format!("the journal location `{text}` is not s3://BUCKET/PREFIX"),
            Exit::Usage,
        )
        .hint("journals go to the state dir, and also to S3 with --journal s3://BUCKET/PREFIX or `journal = \"s3://BUCKET/PREFIX\"` in the context")),
        None => Ok(None),
    }
}

/// The journals' own runtime: S3 requests run here, whatever thread (and
/// whatever other runtime) asks for them.
fn runtime() -> Result<&'static tokio::runtime::Runtime, String> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("runbook-journal-s3")
                .enable_all()
                .build()
                .map_err(|error| format!("cannot start the S3 journal's runtime: {error}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Run `future` on the journals' runtime and wait for it.
fn block<T: Send + 'static>(
    future: impl Future<Output = Result<T, String>> + Send + 'static,
) -> Result<T, String> {
    let (sender, receiver) = std::sync::mpsc::channel();
    runtime()?.spawn(async move {
        let _ = sender.send(future.await);
    });
    receiver
        .recv()
        .map_err(|_| "the S3 request stopped unexpectedly".to_owned())?
}

/// An error and its sources on one line.
fn error_text(error: &object_store::Error) -> String {
    runbook_stdlib::error_chain(error)
}

/// Who holds a run, as `lease.json` holds it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LeaseBody {
    pub run_id: String,
    pub owner: String,
    pub epoch: u64,
    /// Journal lines in S3 when the lease was written.
    pub lines: u64,
    pub time: String,
}

/// A held lease: its body and the ETag the next write must match.
#[derive(Debug, Clone)]
pub struct Lease {
    pub body: LeaseBody,
    e_tag: String,
}

/// An S3 journal store.
#[derive(Debug, Clone)]
pub struct Store {
    s3: Arc<AmazonS3>,
    pub url: Url,
    endpoint: String,
}

impl Store {
    /// The store at `url`, with the endpoint, region and credentials of the
    /// context's `[s3]` table and `s3_access_key` / `s3_secret_key` secrets
    /// (else `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`).
    pub fn open(url: Url, context: &Context) -> Result<Store, Diagnostic> {
        let name = context.name.clone().unwrap_or_else(|| "(none)".into());
        let table = context.value("s3").and_then(toml::Value::as_table);
        let text = |key: &str| {
            table
                .and_then(|table| table.get(key))
                .and_then(toml::Value::as_str)
                .map(str::to_owned)
        };
        let env = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let endpoint = text("endpoint").or_else(|| env("AWS_ENDPOINT_URL"));
        let region = text("region")
            .or_else(|| env("AWS_REGION"))
            .unwrap_or_else(|| "us-east-1".into());
        let path_style = table
            .and_then(|table| table.get("path_style"))
            .and_then(toml::Value::as_bool)
            .unwrap_or(false);
        let secret = |secret: &str| -> Result<Option<String>, Diagnostic> {
            if !context.has_secret(secret) {
                return Ok(None);
            }
            context
                .secret(secret)
                .map(|value| Some(value.expose()))
                .map_err(|error| {
                    Diagnostic::new(error.to_string(), Exit::Usage).hint(format!(
                        "the S3 journal uses the secrets of context `{name}`"
                    ))
                })
        };
        let (key_id, secret_key) = match (secret("s3_access_key")?, secret("s3_secret_key")?) {
            (Some(key_id), Some(secret)) => (key_id, secret),
            _ => match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
                (Some(key_id), Some(secret)) => (key_id, secret),
                _ => {
                    return Err(Diagnostic::new(
                        format!("no S3 credentials for the journal in `{url}`"),
                        Exit::Usage,
                    )
                    .hint(format!("add `s3_access_key` / `s3_secret_key` under [context.{name}.secrets], or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")));
                }
            },
        };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&url.bucket)
            .with_region(&region)
            .with_access_key_id(key_id)
            .with_secret_access_key(secret_key)
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(10))
                    .with_timeout(Duration::from_secs(60))
                    .with_allow_http(
                        endpoint
                            .as_deref()
                            .is_some_and(|e| e.starts_with("http://")),
                    ),
            );
        if let Some(token) = env("AWS_SESSION_TOKEN") {
            builder = builder.with_token(token);
        }
        if let Some(endpoint) = &endpoint {
            if path_style {
                builder = builder.with_endpoint(endpoint);
            } else {
                let (scheme, host) = endpoint.split_once("://").unwrap_or(("https", endpoint));
                builder = builder
                    .with_endpoint(format!("{scheme}://{}.{host}", url.bucket))
                    .with_virtual_hosted_style_request(true);
            }
        } else if !path_style {
            builder = builder.with_virtual_hosted_style_request(true);
        }
        let s3 = builder.build().map_err(|error| {
            Diagnostic::new(
                format!(
                    "cannot set up the S3 client for `{url}`: {}",
                    error_text(&error)
                ),
                Exit::Usage,
            )
            .hint(format!("check `[context.{name}.s3]` in runbook.toml"))
        })?;
        Ok(Store {
            s3: Arc::new(s3),
            endpoint: endpoint.unwrap_or_else(|| format!("AWS S3 ({region})")),
            url,
        })
    }

    fn failed(&self, what: &str, problem: &str) -> Diagnostic {
        Diagnostic::new(
            format!(
                "S3 journal `{}` at {}: cannot {what}: {problem}",
                self.url, self.endpoint
            ),
            Exit::Usage,
        )
        .hint("check the endpoint, bucket and credentials of the context's [s3] table")
    }

    /// Refuse a store that does not honour conditional writes: a second
    /// `If-None-Match: *` create of one key must fail, and so must an
    /// `If-Match` with a wrong ETag. (A store that ignores them would let
    /// two machines append to one run.)
    pub fn probe(&self) -> Result<(), Diagnostic> {
        let s3 = Arc::clone(&self.s3);
        let key = self
            .url
            .key(&format!(".probe/{}", crate::journal::new_run_id()));
        let outcome = block(async move {
            let create = || PutOptions::from(PutMode::Create);
            let put = |options: PutOptions| {
                let s3 = Arc::clone(&s3);
                let key = key.clone();
                async move {
                    s3.put_opts(&key, PutPayload::from_static(b"probe\n"), options)
                        .await
                }
            };
            let first = put(create())
                .await
                .map_err(|error| format!("write a probe object: {}", error_text(&error)))?;
            let second = put(create()).await;
            let wrong = put(PutOptions::from(PutMode::Update(UpdateVersion {
                e_tag: Some("\"00000000000000000000000000000000\"".into()),
                version: None,
            })))
            .await;
            let _ = s3.delete(&key).await;
            let _ = first;
            Ok((second, wrong))
        })
        .map_err(|problem| self.failed("probe the store", &problem))?;
        let refuse = |header: &str, what: String| {
            Err(Diagnostic::new(
                format!(
                    "the S3 store at {} ignores `{header}` ({what}); an S3 journal needs conditional writes, or two machines could both append to one run",
                    self.endpoint
                ),
                Exit::Usage,
            )
            .hint("use a store that honours If-None-Match / If-Match on PUT (AWS S3, MinIO since 2024, Ceph), or run without an S3 journal; nothing was run"))
        };
        match outcome.0 {
            Err(object_store::Error::AlreadyExists { .. }) => {}
            Ok(_) => {
                return refuse(
                    "If-None-Match: *",
                    "a second create of one key succeeded".into(),
                );
            }
            Err(error) => {
                return refuse(
                    "If-None-Match: *",
                    format!(
                        "a second create of one key failed with: {}",
                        error_text(&error)
                    ),
                );
            }
        }
        match outcome.1 {
            Err(object_store::Error::Precondition { .. }) => Ok(()),
            Ok(_) => refuse("If-Match", "a write with a wrong ETag succeeded".into()),
            Err(error) => refuse(
                "If-Match",
                format!(
                    "a write with a wrong ETag failed with: {}",
                    error_text(&error)
                ),
            ),
        }
    }

    fn lease_key(&self, run: &str) -> Key {
        self.url.key(&format!("{run}/lease.json"))
    }

    fn segment_key(&self, run: &str, first: u64) -> Key {
        self.url.key(&format!("{run}/journal/{first:020}.jsonl"))
    }

    /// The lease of a run and its ETag, if there is one.
    fn read_lease(&self, run: &str) -> Result<Option<Lease>, String> {
        let s3 = Arc::clone(&self.s3);
        let key = self.lease_key(run);
        block(async move {
            match s3.get(&key).await {
                Ok(result) => {
                    let e_tag = result.meta.e_tag.clone().unwrap_or_default();
                    let bytes = result.bytes().await.map_err(|error| error_text(&error))?;
                    let body: LeaseBody = serde_json::from_slice(&bytes)
                        .map_err(|error| format!("`{key}` is not a lease: {error}"))?;
                    Ok(Some(Lease { body, e_tag }))
                }
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(error) => Err(error_text(&error)),
            }
        })
    }

    /// Write a lease: created (`None`) or replacing the one with `e_tag`.
    /// `Ok(None)` when the condition failed (someone else wrote it).
    fn write_lease(&self, body: &LeaseBody, e_tag: Option<&str>) -> Result<Option<Lease>, String> {
        let s3 = Arc::clone(&self.s3);
        let key = self.lease_key(&body.run_id);
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let mode = match e_tag {
            None => PutMode::Create,
            Some(e_tag) => PutMode::Update(UpdateVersion {
                e_tag: Some(e_tag.to_owned()),
                version: None,
            }),
        };
        let body = body.clone();
        block(async move {
            match s3
                .put_opts(&key, PutPayload::from(bytes), PutOptions::from(mode))
                .await
            {
                Ok(result) => Ok(Some(Lease {
                    body,
                    e_tag: result.e_tag.unwrap_or_default(),
                })),
                Err(
                    object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. },
                ) => Ok(None),
                Err(error) => Err(error_text(&error)),
            }
        })
    }

    /// Take the lease of a new run.
    pub fn create_lease(&self, run: &str) -> Result<Lease, Diagnostic> {
        let body = LeaseBody {
            run_id: run.to_owned(),
            owner: owner(),
            epoch: 1,
            lines: 0,
            time: crate::event::now(),
        };
        match self.write_lease(&body, None) {
            Ok(Some(lease)) => Ok(lease),
            Ok(None) => Err(Diagnostic::new(
                format!(
                    "`{}` already has a lease: another machine holds run {run}",
                    self.url.run_url(run)
                ),
                Exit::Locked,
            )),
            Err(problem) => Err(self.failed("take the run's lease", &problem)),
        }
    }

    /// Take a run over from whoever holds it: the lease is rewritten with a
    /// higher epoch (conditional on its ETag, retried when it changes
    /// under us), then the journal is read. Returns the lease, the journal
    /// bytes and the previous holder.
    pub fn take_over(&self, run: &str) -> Result<(Lease, Vec<u8>, String), Diagnostic> {
        for _ in 0..TAKEOVER_ATTEMPTS {
            let current = self
                .read_lease(run)
                .map_err(|problem| self.failed("read the run's lease", &problem))?;
            let Some(current) = current else {
                return Err(Diagnostic::new(
                    format!("no run at `{}`", self.url.run_url(run)),
                    Exit::Usage,
                )
                .hint(format!(
                    "`runbook runs --journal {}` lists the runs there",
                    self.url
                )));
            };
            let body = LeaseBody {
                run_id: run.to_owned(),
                owner: owner(),
                epoch: current.body.epoch + 1,
                lines: current.body.lines,
                time: crate::event::now(),
            };
            match self.write_lease(&body, Some(&current.e_tag)) {
                Ok(Some(lease)) => {
                    let journal = self.download(run)?;
                    return Ok((lease, journal, current.body.owner));
                }
                Ok(None) => {}
                Err(problem) => return Err(self.failed("take the run's lease over", &problem)),
            }
        }
        Err(Diagnostic::new(
            format!("the lease of run {run} keeps changing: another machine is writing it"),
            Exit::Locked,
        ))
    }

    /// The whole journal of a run: its segments in order, concatenated.
    pub fn download(&self, run: &str) -> Result<Vec<u8>, Diagnostic> {
        let s3 = Arc::clone(&self.s3);
        let folder = self.url.key(&format!("{run}/journal"));
        block(async move {
            let mut keys = Vec::new();
            let mut listing = s3.list(Some(&folder));
            while let Some(entry) = listing.next().await {
                keys.push(entry.map_err(|error| error_text(&error))?.location);
            }
            keys.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
            let mut journal = Vec::new();
            for key in keys {
                let bytes = s3
                    .get(&key)
                    .await
                    .map_err(|error| error_text(&error))?
                    .bytes()
                    .await
                    .map_err(|error| error_text(&error))?;
                journal.extend_from_slice(&bytes);
            }
            Ok(journal)
        })
        .map_err(|problem| self.failed(&format!("read the journal of run {run}"), &problem))
    }

    /// The run ids under the prefix.
    pub fn runs(&self) -> Result<Vec<String>, Diagnostic> {
        let s3 = Arc::clone(&self.s3);
        let prefix = (!self.url.prefix.is_empty()).then(|| Key::from(self.url.prefix.as_str()));
        block(async move {
            let listing = s3
                .list_with_delimiter(prefix.as_ref())
                .await
                .map_err(|error| error_text(&error))?;
            Ok(listing
                .common_prefixes
                .iter()
                .filter_map(|folder| folder.filename().map(str::to_owned))
                .filter(|name| !name.starts_with('.'))
                .collect())
        })
        .map_err(|problem| self.failed("list the runs", &problem))
    }

    /// Write one segment; `Ok(false)` when it exists already.
    fn put_segment(&self, run: &str, first: u64, bytes: Vec<u8>) -> Result<bool, String> {
        create(&self.s3, self.segment_key(run, first), bytes)
    }
}

/// The context that reaches a store when no runbook names one:
/// `--context`, else `RUNBOOK_CONTEXT`, else runbook.toml's default.
pub fn context_for(requested: Option<&str>) -> Result<Context, Diagnostic> {
    let cwd = std::env::current_dir().unwrap_or_default();
    let from_env = std::env::var("RUNBOOK_CONTEXT")
        .ok()
        .filter(|name| !name.is_empty());
    Ok(crate::context::resolve(
        requested.or(from_env.as_deref()),
        &[&cwd],
    )?)
}

/// `runbook runs --journal s3://...`: every run's journal there, copied
/// into a temporary folder laid out like the state dir's `runs/`.
pub fn download_runs(text: &str) -> Result<(tempfile::TempDir, String), Diagnostic> {
    let url = Url::parse(text)?;
    let store = Store::open(url, &context_for(None)?)?;
    let folder = tempfile::tempdir().map_err(|error| {
        Diagnostic::new(
            format!("cannot make a temporary folder: {error}"),
            Exit::Usage,
        )
    })?;
    for run in store.runs()? {
        let journal = store.download(&run)?;
        let dir = folder.path().join(&run);
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(dir.join("journal.jsonl"), journal))
            .map_err(|error| {
                Diagnostic::new(
                    format!("cannot copy the journal of run {run}: {error}"),
                    Exit::Usage,
                )
            })?;
    }
    Ok((folder, store.url.to_string()))
}

/// A run's waiting gate and its one decision, through the store:
/// `RUN/gate.json` (written by the run holding the lease) and
/// `RUN/decision-GATE.json`, created with `If-None-Match: *`, so of two
/// approvers racing exactly one wins.
impl Store {
    fn request_key(&self, run: &str) -> Key {
        self.url
            .key(&format!("{run}/{}", crate::remote::REQUEST_FILE))
    }

    fn answer_key(&self, run: &str, gate_id: &str) -> Key {
        self.url.key(&format!("{run}/decision-{gate_id}.json"))
    }

    fn get_json<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        key: Key,
    ) -> Result<Option<T>, String> {
        let s3 = Arc::clone(&self.s3);
        block(async move {
            match s3.get(&key).await {
                Ok(result) => {
                    let bytes = result.bytes().await.map_err(|error| error_text(&error))?;
                    serde_json::from_slice(&bytes)
                        .map(Some)
                        .map_err(|error| format!("`{key}` is not what runbook wrote: {error}"))
                }
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(error) => Err(error_text(&error)),
            }
        })
    }

    /// Publish the request of a waiting run (replacing an older one).
    pub fn put_request(&self, request: &crate::remote::Request) -> Result<(), String> {
        let s3 = Arc::clone(&self.s3);
        let key = self.request_key(&request.run_id);
        let bytes = serde_json::to_vec_pretty(request).unwrap_or_default();
        block(async move {
            s3.put(&key, PutPayload::from(bytes))
                .await
                .map(|_| ())
                .map_err(|error| error_text(&error))
        })
    }

    pub fn read_request(&self, run: &str) -> Result<Option<crate::remote::Request>, String> {
        self.get_json(self.request_key(run))
    }

    pub fn read_answer(
        &self,
        run: &str,
        gate_id: &str,
    ) -> Result<Option<crate::remote::Answer>, String> {
        self.get_json(self.answer_key(run, gate_id))
    }

    /// Make `answer` the decision of its gate unless one exists (a
    /// conditional create, read back after [`CLAIM_SETTLE`]).
    pub fn claim(
        &self,
        run: &str,
        answer: &crate::remote::Answer,
    ) -> Result<crate::remote::Claim, String> {
        let key = self.answer_key(run, &answer.gate_id);
        let bytes = serde_json::to_vec_pretty(answer).unwrap_or_default();
        let ours = serde_json::to_value(answer).unwrap_or_default();
        let created = create(&self.s3, key, bytes)?;
        if created {
            // Some stores (s3s-fs) check `If-None-Match` and write in two
            // moves, so two racing creates can both succeed and the later
            // write wins. Read the decision back once the race is over: only
            // the approver whose answer is what the store holds has won.
            std::thread::sleep(CLAIM_SETTLE);
            return match self
                .get_json::<serde_json::Value>(self.answer_key(run, &answer.gate_id))?
            {
                Some(stored) if stored == ours => Ok(crate::remote::Claim::Won),
                Some(_) => match self.read_answer(run, &answer.gate_id)? {
                    Some(existing) => Ok(crate::remote::Claim::Lost(existing)),
                    None => Err(format!("the decision of gate {} vanished", answer.gate_id)),
                },
                None => Err(format!(
                    "the decision of gate {} was written and then vanished",
                    answer.gate_id
                )),
            };
        }
        match self.read_answer(run, &answer.gate_id)? {
            Some(existing) => Ok(crate::remote::Claim::Lost(existing)),
            None => Err(format!(
                "the decision of gate {} existed and then vanished",
                answer.gate_id
            )),
        }
    }

    /// The run is done with its gate: remove its request if it is this gate's.
    pub fn close(&self, run: &str, gate_id: &str) {
        if let Ok(Some(request)) = self.read_request(run)
            && request.gate_id == gate_id
        {
            let s3 = Arc::clone(&self.s3);
            let key = self.request_key(run);
            let _ = block(async move { s3.delete(&key).await.map_err(|error| error_text(&error)) });
        }
    }

    /// Every waiting request under the prefix, oldest first.
    pub fn requests(&self) -> Result<Vec<crate::remote::Request>, Diagnostic> {
        let mut found = Vec::new();
        for run in self.runs()? {
            if let Ok(Some(request)) = self.read_request(&run) {
                found.push(request);
            }
        }
        found.sort_by(|a, b| a.since.cmp(&b.since));
        Ok(found)
    }
}

/// The marker in a run's folder of the state dir naming its S3 journal, so
/// that `runbook resume RUN` there continues in S3 too.
pub const MARKER: &str = "journal-s3.url";

/// Who writes: `user@host pid N`.
fn owner() -> String {
    format!(
        "{}@{} pid {}",
        crate::identity::user(),
        crate::identity::hostname(),
        std::process::id()
    )
}

/// An S3 journal needs one audit key on every machine: refuse without
/// `RUNBOOK_AUDIT_KEY`.
pub fn require_shared_audit_key() -> Result<(), Diagnostic> {
    if std::env::var(crate::audit_key::KEY_VAR).is_ok_and(|key| !key.is_empty()) {
        return Ok(());
    }
    Err(Diagnostic::new(
        format!("an S3 journal needs {} set", crate::audit_key::KEY_VAR),
        Exit::Usage,
    )
    .hint(format!(
        "every machine that writes, resumes or verifies the journal must have the same key: set {} from your secret store (never keep it next to the journal); nothing was run",
        crate::audit_key::KEY_VAR
    )))
}

struct Pending {
    bytes: Vec<u8>,
    /// Number of the first line not yet in S3.
    first: u64,
    lines: u64,
    since: Option<Instant>,
    lease: Lease,
}

struct Shared {
    store: Store,
    run: String,
    pending: Mutex<Pending>,
}

/// The S3 side of an open journal: lines are queued and written in
/// segments (see the module doc).
pub struct Sink {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "Sink({})",
            self.shared.store.url.run_url(&self.shared.run)
        )
    }
}

impl Sink {
    /// Append to run `run` whose journal has `lines` lines in S3, holding `lease`.
    pub fn new(store: Store, run: &str, lease: Lease, lines: u64) -> Sink {
        let shared = Arc::new(Shared {
            store,
            run: run.to_owned(),
            pending: Mutex::new(Pending {
                bytes: Vec::new(),
                first: lines,
                lines: 0,
                since: None,
                lease,
            }),
        });
        let weak: Weak<Shared> = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("runbook-journal-flush".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(TICK);
                    let Some(shared) = weak.upgrade() else {
                        return;
                    };
                    let mut pending = lock(&shared.pending);
                    if pending
                        .since
                        .is_some_and(|since| since.elapsed() >= MAX_LAG)
                    {
                        // A failure here is retried with the next line; a
                        // fence stops the process.
                        let _ = flush(&shared, &mut pending);
                    }
                }
            })
            .ok();
        Sink { shared }
    }

    /// `s3://BUCKET/PREFIX/RUN`.
    pub fn url(&self) -> String {
        self.shared.store.url.run_url(&self.shared.run)
    }

    /// The store and the run id.
    pub fn store(&self) -> (Store, String) {
        (self.shared.store.clone(), self.shared.run.clone())
    }

    /// Queue a whole line; write the queue now when `urgent`.
    pub fn push(&self, line: &[u8], urgent: bool) -> Result<(), String> {
        let mut pending = lock(&self.shared.pending);
        pending.bytes.extend_from_slice(line);
        pending.lines += 1;
        pending.since.get_or_insert_with(Instant::now);
        if urgent
            || pending
                .since
                .is_some_and(|since| since.elapsed() >= MAX_LAG)
        {
            flush(&self.shared, &mut pending)?;
        }
        Ok(())
    }

    /// Write whatever is queued, or with nothing queued renew the lease:
    /// either way, a process that no longer holds the run stops here.
    pub fn fence(&self) -> Result<(), String> {
        let mut pending = lock(&self.shared.pending);
        if !pending.bytes.is_empty() {
            return flush(&self.shared, &mut pending);
        }
        let mut body = pending.lease.body.clone();
        body.time = crate::event::now();
        match self
            .shared
            .store
            .write_lease(&body, Some(&pending.lease.e_tag))?
        {
            Some(lease) => {
                pending.lease = lease;
                Ok(())
            }
            None => fenced(&self.shared, &pending),
        }
    }

    /// Write whatever is queued.
    pub fn flush(&self) -> Result<(), String> {
        let mut pending = lock(&self.shared.pending);
        flush(&self.shared, &mut pending)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Err(problem) = self.flush() {
            eprintln!(
                "warning: the S3 journal {} is behind the local copy: {problem}",
                self.url()
            );
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Renew the lease (If-Match), then write the queued lines as one segment
/// (If-None-Match). Either condition failing means another machine took
/// the run over: this process stops.
fn flush(shared: &Shared, pending: &mut Pending) -> Result<(), String> {
    if pending.bytes.is_empty() {
        return Ok(());
    }
    let body = LeaseBody {
        run_id: shared.run.clone(),
        owner: pending.lease.body.owner.clone(),
        epoch: pending.lease.body.epoch,
        lines: pending.first + pending.lines,
        time: crate::event::now(),
    };
    match shared
        .store
        .write_lease(&body, Some(&pending.lease.e_tag))?
    {
        Some(lease) => pending.lease = lease,
        None => fenced(shared, pending),
    }
    if !shared
        .store
        .put_segment(&shared.run, pending.first, pending.bytes.clone())?
    {
        fenced(shared, pending);
    }
    pending.first += pending.lines;
    pending.lines = 0;
    pending.bytes.clear();
    pending.since = None;
    Ok(())
}

/// Another machine holds the run now: say who, and stop at once (exit 4),
/// doing nothing more (no rollback: the run is theirs).
fn fenced(shared: &Shared, pending: &Pending) -> ! {
    let lease = shared.store.read_lease(&shared.run).ok().flatten();
    let holder = match lease {
        Some(lease) if lease.body.epoch > pending.lease.body.epoch => {
            format!("{} (epoch {})", lease.body.owner, lease.body.epoch)
        }
        // Same epoch: the lease is ours, but a segment we meant to write
        // exists (the old holder appended after we read the journal).
        Some(_) => "a machine that appended to the journal after this one read it".to_owned(),
        None => "another machine".to_owned(),
    };
    eprintln!(
        "error: run {} was taken over by {holder}; this process (epoch {}) stops here and does nothing more\n  hint: the run continues there; `runbook runs --journal {}` shows it",
        shared.run, pending.lease.body.epoch, shared.store.url
    );
    std::process::exit(Exit::Locked.code());
}

/// Create `key` unless it exists (`If-None-Match: *`): `Ok(false)` when it does.
fn create(s3: &Arc<AmazonS3>, key: Key, bytes: Vec<u8>) -> Result<bool, String> {
    let s3 = Arc::clone(s3);
    block(async move {
        match s3
            .put_opts(
                &key,
                PutPayload::from(bytes),
                PutOptions::from(PutMode::Create),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(error) => Err(error_text(&error)),
        }
    })
}

/// How long a won decision settles before it is read back (see `claim`):
/// longer than two racing writes of a small object take on a loopback store.
const CLAIM_SETTLE: std::time::Duration = std::time::Duration::from_millis(300);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_and_run_urls_parse() {
        let url = Url::parse("s3://ops/journals/runbook/").unwrap();
        assert_eq!(url.bucket, "ops");
        assert_eq!(url.prefix, "journals/runbook");
        assert_eq!(url.run_url("R1"), "s3://ops/journals/runbook/R1");
        let (url, run) = Url::parse_run("s3://ops/journals/R1").unwrap();
        assert_eq!((url.prefix.as_str(), run.as_str()), ("journals", "R1"));
        let (url, run) = Url::parse_run("s3://ops/R1").unwrap();
        assert_eq!((url.prefix.as_str(), run.as_str()), ("", "R1"));
        assert_eq!(url.run_url("R1"), "s3://ops/R1");
        assert!(Url::parse("s3://").is_err());
        assert!(Url::parse_run("s3://ops").is_err());
        assert!(!Url::is_s3("/tmp/journal.jsonl"));
    }
}
