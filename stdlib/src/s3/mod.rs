//! `s3::*`: objects in the context's S3-compatible bucket (`[context.X.s3]`:
//! `endpoint`, `bucket`, `region`, `path_style`, `timeout`, `connect_timeout`; credentials from the
//! context's secrets `s3_access_key` / `s3_secret_key`, else the standard
//! `AWS_*` variables or profile). Streaming uploads and downloads, listing
//! with pagination, retention by the timestamps in keys (see `retention.rs`).

pub(crate) mod client;
mod objects;
pub(crate) mod retention;
pub(crate) mod transfer;

use std::path::PathBuf;

use bytes::Bytes;
use chrono::Utc;
use rhai::{Array, Blob, Dynamic, Map};

use self::client::Bucket;
use self::retention::{Entry, MANIFEST_SUFFIX};
use crate::function;
use crate::function::{Call, Failure, Function};
use crate::host::{Level, StdlibError};

/// `#{key, size, sha256}` of an upload.
fn written_map(key: &str, written: &transfer::Written) -> Dynamic {
    let mut map = Map::new();
    map.insert("key".into(), key.to_owned().into());
    map.insert(
        "size".into(),
        Dynamic::from_int(i64::try_from(written.bytes).unwrap_or(i64::MAX)),
    );
    map.insert("sha256".into(), written.sha256.clone().into());
    Dynamic::from_map(map)
}

fn put(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let key = call.string(0)?;
    let value = call.arg(1);
    let data = if let Ok(text) = value.clone().into_string() {
        Bytes::from(text.into_bytes())
    } else if let Some(blob) = value.clone().try_cast::<Blob>() {
        Bytes::from(blob)
    } else {
        return Err(call
            .bad_arg(
                1,
                format!(
                    "must be a string or a blob, got {}",
                    crate::values::type_name(&value)
                ),
            )
            .into());
    };
    let bucket = Bucket::from_call(call)?;
    let written = transfer::Written {
        sha256: crate::text::hex(&<sha2::Sha256 as sha2::Digest>::digest(&data)),
        bytes: call.block_on(bucket.put(&key, data))?,
    };
    Ok(written_map(&key, &written))
}

fn get(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let key = call.string(0)?;
    let options = call.options(1, &["blob"])?;
    let as_blob = options.bool("blob")?.unwrap_or(false);
    let bucket = Bucket::from_call(call)?;
    let data = call.block_on(bucket.get(&key))?;
    if as_blob {
        return Ok(Dynamic::from_blob(data.to_vec()));
    }
    String::from_utf8(data.to_vec())
        .map(Dynamic::from)
        .map_err(|_| {
            StdlibError::failed(
                format!("s3: `{}` is not UTF-8 text", bucket.url(&key)),
                "pass `#{blob: true}` to get its bytes as a blob",
            )
            .into()
        })
}

fn latest(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let prefix = call.string(0)?;
    let options = call.options(1, &["require_manifest"])?;
    let require_manifest = options.bool("require_manifest")?.unwrap_or(true);
    let bucket = Bucket::from_call(call)?;
    let entries = call.block_on(bucket.list(&prefix))?;
    let chosen = retention::backups(&entries).into_iter().find(|backup| {
        !require_manifest
            || entries
                .iter()
                .any(|entry| entry.key == format!("{}{MANIFEST_SUFFIX}", backup.key))
    });
    Ok(chosen.map_or(Dynamic::UNIT, |backup| {
        let manifest = format!("{}{MANIFEST_SUFFIX}", backup.key);
        let has_manifest = entries.iter().any(|entry| entry.key == manifest);
        let mut map = backup.to_map();
        map.insert(
            "manifest".into(),
            if has_manifest {
                manifest.into()
            } else {
                Dynamic::UNIT
            },
        );
        Dynamic::from_map(map)
    }))
}

/// The retention plan for `prune`'s arguments.
fn prune_plan(call: &Call<'_>) -> Result<(Bucket, retention::Plan), StdlibError> {
    let prefix = call.string(0)?;
    let options = call.options(1, &["keep_days", "keep_last"])?;
    let keep_days = options.int("keep_days")?.unwrap_or(30);
    let keep_last = options.int("keep_last")?.unwrap_or(7);
    if keep_days < 0 {
        return Err(call.bad_arg(1, "`keep_days` must not be negative"));
    }
    let keep_last = usize::try_from(keep_last)
        .ok()
        .filter(|keep| *keep >= 1)
        .ok_or_else(|| {
            call.bad_arg(
                1,
                "`keep_last` must be at least 1 (prune never deletes every backup)",
            )
        })?;
    if prefix.is_empty() {
        return Err(call.bad_arg(
            0,
            "must not be empty: prune works on one folder of backups, e.g. \"backups/db/\"",
        ));
    }
    let bucket = Bucket::from_call(call)?;
    let entries = call.block_on(bucket.list(&prefix))?;
    let plan = retention::plan(&entries, keep_days, keep_last, Utc::now());
    Ok((bucket, plan))
}

fn prune_result(plan: &retention::Plan) -> Dynamic {
    let deleted: Array = plan
        .delete
        .iter()
        .map(|(entry, _)| entry.key.clone().into())
        .collect();
    let kept: Array = plan
        .keep
        .iter()
        .map(|entry| entry.key.clone().into())
        .collect();
    let mut map = Map::new();
    map.insert("deleted".into(), Dynamic::from_array(deleted));
    map.insert("kept".into(), Dynamic::from_array(kept));
    Dynamic::from_map(map)
}

fn describe(entry: &Entry, manifest: Option<&String>) -> String {
    format!(
        "delete {} ({} days old, {} bytes{})",
        entry.key,
        retention::age_days(entry, Utc::now()),
        entry.size,
        if manifest.is_some() {
            ", with its manifest"
        } else {
            ""
        }
    )
}

fn prune(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let (bucket, plan) = prune_plan(call)?;
    for (entry, manifest) in &plan.delete {
        // The manifest goes first: `latest` never picks a backup whose data is gone.
        if let Some(manifest) = manifest {
            call.block_on(bucket.delete(manifest))?;
        }
        call.block_on(bucket.delete(&entry.key))?;
        call.host
            .log(Level::Info, &describe(entry, manifest.as_ref()));
    }
    Ok(prune_result(&plan))
}

fn prune_preview(call: &mut Call<'_>) -> Result<Dynamic, Failure> {
    let (_, plan) = prune_plan(call)?;
    // One detail per plan entry: every deletion on its own line.
    let mut lines: Vec<String> = plan
        .delete
        .iter()
        .map(|(entry, manifest)| describe(entry, manifest.as_ref()))
        .collect();
    lines.push(format!(
        "keep {} backup{}",
        plan.keep.len(),
        if plan.keep.len() == 1 { "" } else { "s" }
    ));
    call.host.plan_detail(&lines.join("\n"));
    Ok(prune_result(&plan))
}

/// A temporary file for a download a dry-run makes in place of `target`:
/// `<tmp>/runbook-dry-run-<pid>/<n>-<file name>`.
pub(crate) fn dry_run_file(target: &std::path::Path) -> Result<PathBuf, StdlibError> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!("runbook-dry-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|error| {
        StdlibError::message(format!("cannot create `{}`: {error}", dir.display()))
    })?;
    let name = target.file_name().map_or_else(
        || "download".into(),
        |name| name.to_string_lossy().into_owned(),
    );
    Ok(dir.join(format!("{}-{name}", COUNT.fetch_add(1, Ordering::SeqCst))))
}

/// What a dry-run's plan says about a download it kept away from `target`.
pub(crate) fn dry_run_note(
    target: &std::path::Path,
    instead: &std::path::Path,
    bytes: u64,
) -> String {
    let exists = if target.exists() {
        " (it exists and would be overwritten)"
    } else {
        ""
    };
    format!(
        "dry-run: `{}` was not written{exists}; the {bytes} bytes went to `{}`",
        target.display(),
        instead.display()
    )
}

/// `s3::download` with a dry-run body: the object goes to a temporary file.
fn with_dry_run_target(function: Function) -> Function {
    Function {
        preview: Some(std::sync::Arc::new(|call: &mut Call<'_>| {
            let key = call.string(0)?;
            let local = PathBuf::from(call.string(1)?);
            let bucket = Bucket::from_call(call)?;
            let instead = dry_run_file(&local)?;
            let bytes = call.block_on(transfer::download(&bucket, &key, &instead))?;
            call.host
                .plan_detail(&dry_run_note(&local, &instead, bytes));
            Ok(Dynamic::from_int(i64::try_from(bytes).unwrap_or(i64::MAX)))
        })),
        ..function
    }
}

pub(crate) fn functions() -> Vec<Function> {
    vec![
        function! {
            /// Store a string or a blob as the object `key` in the context's bucket
            /// (one PUT; for files use `s3::upload`). Returns `#{key, size, sha256}`.
            ///
            /// ```rhai
            /// s3::put("notes/last-deploy.txt", "v1.4.2 deployed by " + context().name);
            /// ```
            write fn s3::put("key: string", "data: string | blob") -> "#{key: string, size: int, sha256: string}"
            put
        },
        function! {
            /// Read the object `key` as text (UTF-8), or as a blob with
            /// `#{blob: true}`. Reads at most 256 MiB; use `s3::download` for more.
            ///
            /// ```rhai
            /// let note = s3::get("notes/last-deploy.txt");
            /// log::info("last deploy: " + note);
            /// ```
            read fn s3::get("key: string", "opts?: map") -> "string | blob"
            get
        },
        function! {
            /// Upload a local file as `key`, streamed: one PUT up to 8 MiB, a multipart
            /// upload above (8 MiB parts, two in flight, so memory stays bounded; a
            /// failed upload is aborted and leaves no object). Returns
            /// `#{key, size, sha256}`.
            ///
            /// ```rhai
            /// s3::upload("/var/backups/app.tar.gz", "archives/app.tar.gz");
            /// ```
            write fn s3::upload("local_path: string", "key: string") -> "#{key: string, size: int, sha256: string}"
            |call| {
                let local = PathBuf::from(call.string(0)?);
                let key = call.string(1)?;
                let bucket = Bucket::from_call(call)?;
                let written = call.block_on(transfer::upload(&bucket, &local, &key))?;
                Ok(written_map(&key, &written))
            }
        },
        with_dry_run_target(function! {
            /// Download the object `key` to a local file, streamed. The file appears
            /// only once the whole object arrived (it is written beside it under a
            /// temporary name, then renamed). Returns the number of bytes. In a
            /// dry-run the object is downloaded to a temporary file instead, so
            /// `local_path` is never overwritten; the plan notes the target.
            ///
            /// ```rhai
            /// s3::download("archives/app.tar.gz", "/tmp/app.tar.gz");
            /// ```
            read fn s3::download("key: string", "local_path: string") -> "int"
            |call| {
                let key = call.string(0)?;
                let local = PathBuf::from(call.string(1)?);
                let bucket = Bucket::from_call(call)?;
                let bytes = call.block_on(transfer::download(&bucket, &key, &local))?;
                Ok(Dynamic::from_int(i64::try_from(bytes).unwrap_or(i64::MAX)))
            }
        }),
        function! {
            /// Read the object `key` through (streamed, nothing kept) and return
            /// `#{key, size, sha256}`: to check a stored backup against its manifest.
            ///
            /// ```rhai
            /// let sum = s3::checksum("backups/todos/20260101T000000Z.dump.zst");
            /// log::info(sum.key + ": " + sum.size + " bytes, sha256 " + sum.sha256);
            /// ```
            read fn s3::checksum("key: string") -> "#{key: string, size: int, sha256: string}"
            |call| {
                let key = call.string(0)?;
                let bucket = Bucket::from_call(call)?;
                let written = call.block_on(transfer::checksum(&bucket, &key))?;
                Ok(written_map(&key, &written))
            }
        },
        function! {
            /// Every object whose key starts with `prefix` (all pages), sorted by key:
            /// an array of `#{key, size, modified}` (`modified` is RFC 3339, UTC).
            ///
            /// ```rhai
            /// for object in s3::list("backups/todos/") { print(object.key + " " + object.size); }
            /// ```
            read fn s3::list("prefix: string") -> "array<map>"
            |call| {
                let prefix = call.string(0)?;
                let bucket = Bucket::from_call(call)?;
                let entries = call.block_on(bucket.list(&prefix))?;
                Ok(Dynamic::from_array(
                    entries.iter().map(|entry| Dynamic::from_map(entry.to_map())).collect(),
                ))
            }
        },
        function! {
            /// Whether the object `key` exists.
            ///
            /// ```rhai
            /// if !s3::exists("backups/todos/20260101T000000Z.dump.zst") { log::warn("backup missing"); }
            /// ```
            read fn s3::exists("key: string") -> "bool"
            |call| {
                let key = call.string(0)?;
                let bucket = Bucket::from_call(call)?;
                Ok(Dynamic::from_bool(call.block_on(bucket.head(&key))?.is_some()))
            }
        },
        function! {
            /// The newest complete backup under `prefix`: `#{key, size, modified,
            /// manifest}`, or `()` when there is none. Complete means its manifest
            /// `KEY.manifest.json` exists (`pg::dump` writes it last, so a dump that
            /// died halfway is never picked); `#{require_manifest: false}` accepts
            /// any object. Newest by the timestamp in the key (e.g.
            /// `20260102T030405Z`), else by LastModified.
            ///
            /// ```rhai
            /// let backup = s3::latest("backups/todos/");
            /// if backup == () { fail("no backup yet"); }
            /// ```
            read fn s3::latest("prefix: string", "opts?: map") -> "map | ()"
            latest
        },
        function! {
            /// Delete the object `key` (deleting a missing key is not an error).
            ///
            /// ```rhai
            /// s3::delete("tmp/upload-test.txt");
            /// ```
            write fn s3::delete("key: string") -> "()"
            |call| {
                let key = call.string(0)?;
                let bucket = Bucket::from_call(call)?;
                call.block_on(bucket.delete(&key))?;
                Ok(Dynamic::UNIT)
            }
        },
        Function {
            preview: Some(std::sync::Arc::new(prune_preview)),
            ..function! {
                /// Apply retention to the backups under `prefix`: keep the newest
                /// `keep_last` (default 7, at least 1) whatever their age, and every
                /// backup younger than `keep_days` (default 30); delete the rest, each
                /// with its `.manifest.json`. Age comes from the timestamp in the key
                /// (`20260102T030405Z`, `2026-01-02`, ...; LastModified only for keys
                /// without one), so copies keep their age. Returns
                /// `#{deleted: [keys], kept: [keys]}`. In an online dry-run it lists
                /// what it would delete in the plan and deletes nothing.
                ///
                /// ```rhai
                /// let result = s3::prune("backups/todos/", #{keep_days: 30, keep_last: 7});
                /// log::info("pruned " + result.deleted.len() + " backups");
                /// ```
                write fn s3::prune("prefix: string", "opts?: map") -> "#{deleted: array<string>, kept: array<string>}"
                prune
            }
        },
    ]
}
