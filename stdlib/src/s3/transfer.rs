//! Streaming transfers with bounded memory: multipart uploads (a [`Sink`]
//! that `pg::dump` also writes its compressed stream into) and downloads to a
//! file that appears only when complete.

use std::path::{Path as FsPath, PathBuf};

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::{ObjectStoreExt, WriteMultipart};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::client::{Bucket, path};
use crate::host::StdlibError;

/// Files up to this size go up in one PUT; bigger ones in parts.
pub(crate) const MULTIPART_THRESHOLD: u64 = 8 * 1024 * 1024;

/// Default part size. S3 allows 10 000 parts, so a stream of unknown length
/// can reach 80 GB with it; `pg::dump`'s `part_size` raises it.
pub(crate) const PART_SIZE: usize = 8 * 1024 * 1024;

/// Parts in flight at once. Memory is about `PART_SIZE * (PARTS_IN_FLIGHT + 1)`.
const PARTS_IN_FLIGHT: usize = 2;

/// Read buffer for files and pipes.
pub(crate) const READ_BUFFER: usize = 256 * 1024;

/// What a finished upload wrote.
#[derive(Debug, Clone)]
pub(crate) struct Written {
    pub(crate) bytes: u64,
    /// Lower-case hex SHA-256 of the bytes uploaded.
    pub(crate) sha256: String,
}

/// A multipart upload being written: bytes go in, parts go up
/// [`PARTS_IN_FLIGHT`] at a time. Dropped without [`Sink::finish`], the
/// upload is aborted, so no object appears.
pub(crate) struct Sink {
    writer: Option<WriteMultipart>,
    hasher: Sha256,
    bytes: u64,
    key: String,
    bucket: Bucket,
}

impl Sink {
    /// Start a multipart upload of `key`.
    pub(crate) async fn start(
        bucket: &Bucket,
        key: &str,
        part_size: usize,
    ) -> Result<Sink, StdlibError> {
        let location = path(key)?;
        let upload = bucket
            .store
            .put_multipart(&location)
            .await
            .map_err(|error| bucket.error("start uploading", key, &error))?;
        Ok(Sink {
            writer: Some(WriteMultipart::new_with_chunk_size(
                upload,
                part_size.max(5 * 1024 * 1024),
            )),
            hasher: Sha256::new(),
            bytes: 0,
            key: key.to_owned(),
            bucket: bucket.clone(),
        })
    }

    /// Append bytes; waits while too many parts are in flight.
    pub(crate) async fn write(&mut self, data: &[u8]) -> Result<(), StdlibError> {
        let Some(writer) = self.writer.as_mut() else {
            return Err(StdlibError::message(
                "internal: write after the upload ended",
            ));
        };
        self.hasher.update(data);
        self.bytes += data.len() as u64;
        writer.write(data);
        writer
            .wait_for_capacity(PARTS_IN_FLIGHT)
            .await
            .map_err(|error| self.bucket.error("upload", &self.key, &error))
    }

    /// Upload the last part and complete the upload: the object appears now.
    pub(crate) async fn finish(mut self) -> Result<Written, StdlibError> {
        let Some(writer) = self.writer.take() else {
            return Err(StdlibError::message("internal: the upload already ended"));
        };
        if let Err(error) = writer.finish().await {
            // `finish` aborts on a failed part; completing may fail after all parts went up.
            return Err(self
                .bucket
                .error("complete the upload of", &self.key, &error));
        }
        Ok(Written {
            bytes: self.bytes,
            sha256: crate::text::hex(&std::mem::take(&mut self.hasher).finalize()),
        })
    }

    /// Abort the upload: its parts are discarded and no object appears.
    pub(crate) async fn abort(mut self) {
        if let Some(writer) = self.writer.take() {
            let _ = writer.abort().await;
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        // Cancelled (Ctrl-C, timeout) or failed without an explicit abort:
        // abort in the background so the server drops the parts.
        if let Some(writer) = self.writer.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            handle.spawn(async move {
                let _ = writer.abort().await;
            });
        }
    }
}

/// Upload a local file as `key`: one PUT up to [`MULTIPART_THRESHOLD`],
/// multipart above it, never more than a few parts in memory.
pub(crate) async fn upload(
    bucket: &Bucket,
    local: &FsPath,
    key: &str,
) -> Result<Written, StdlibError> {
    let cannot = |error: std::io::Error| {
        StdlibError::failed(
            format!(
                "s3: cannot read `{}` to upload it as `{}`: {error}",
                local.display(),
                bucket.url(key)
            ),
            "check the local path",
        )
    };
    let mut file = tokio::fs::File::open(local).await.map_err(cannot)?;
    let size = file.metadata().await.map_err(cannot)?.len();
    if size <= MULTIPART_THRESHOLD {
        let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        file.read_to_end(&mut data).await.map_err(cannot)?;
        let sha256 = crate::text::hex(&Sha256::digest(&data));
        let bytes = bucket.put(key, Bytes::from(data)).await?;
        return Ok(Written { bytes, sha256 });
    }
    // Keep under S3's 10 000 parts.
    let part_size = PART_SIZE.max(usize::try_from(size.div_ceil(9_000)).unwrap_or(PART_SIZE));
    let mut sink = Sink::start(bucket, key, part_size).await?;
    let mut buffer = vec![0u8; READ_BUFFER];
    loop {
        let read = match file.read(&mut buffer).await {
            Ok(read) => read,
            Err(error) => {
                sink.abort().await;
                return Err(cannot(error));
            }
        };
        if read == 0 {
            break;
        }
        if let Err(error) = sink.write(&buffer[..read]).await {
            sink.abort().await;
            return Err(error);
        }
    }
    sink.finish().await
}

/// Removes a partial file unless disarmed.
struct Partial {
    path: Option<PathBuf>,
}

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A temp path beside `target`, for a file that appears only when complete.
pub(crate) fn partial_path(target: &FsPath) -> PathBuf {
    let name = target
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "download".into());
    target.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

/// An object's bytes as they arrive; errors name the object and `action`.
pub(crate) struct Chunks<'a> {
    stream: futures_util::stream::BoxStream<'static, object_store::Result<Bytes>>,
    bucket: &'a Bucket,
    key: &'a str,
    action: &'static str,
}

impl<'a> Chunks<'a> {
    /// Start reading `key` (`action` is what the errors say was done).
    pub(crate) async fn open(
        bucket: &'a Bucket,
        key: &'a str,
        action: &'static str,
    ) -> Result<Chunks<'a>, StdlibError> {
        let location = path(key)?;
        let result = bucket
            .store
            .get(&location)
            .await
            .map_err(|error| bucket.error(action, key, &error))?;
        Ok(Chunks {
            stream: result.into_stream(),
            bucket,
            key,
            action,
        })
    }

    /// The next bytes, `None` at the end.
    pub(crate) async fn next(&mut self) -> Result<Option<Bytes>, StdlibError> {
        match self.stream.next().await {
            None => Ok(None),
            Some(Ok(chunk)) => Ok(Some(chunk)),
            Some(Err(error)) => Err(self.bucket.error(self.action, self.key, &error)),
        }
    }
}

/// Download `key` into `local`, streamed; `local` appears only when the
/// whole object arrived. Returns the bytes written.
pub(crate) async fn download(
    bucket: &Bucket,
    key: &str,
    local: &FsPath,
) -> Result<u64, StdlibError> {
    let mut chunks = Chunks::open(bucket, key, "download").await?;
    let temp = partial_path(local);
    let cannot = |error: std::io::Error| {
        StdlibError::failed(
            format!(
                "s3: cannot write `{}` while downloading `{}`: {error}",
                local.display(),
                bucket.url(key)
            ),
            "check that the folder exists and is writable, and the free space",
        )
    };
    let mut file = tokio::fs::File::create(&temp).await.map_err(cannot)?;
    let mut guard = Partial {
        path: Some(temp.clone()),
    };
    let mut bytes = 0u64;
    while let Some(chunk) = chunks.next().await? {
        file.write_all(&chunk).await.map_err(cannot)?;
        bytes += chunk.len() as u64;
    }
    file.flush().await.map_err(cannot)?;
    file.sync_all().await.map_err(cannot)?;
    drop(file);
    tokio::fs::rename(&temp, local).await.map_err(cannot)?;
    guard.path = None;
    Ok(bytes)
}

/// Stream the object `key` and hash it: `(size, sha256)`.
pub(crate) async fn checksum(bucket: &Bucket, key: &str) -> Result<Written, StdlibError> {
    let mut chunks = Chunks::open(bucket, key, "read").await?;
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    while let Some(chunk) = chunks.next().await? {
        hasher.update(&chunk);
        bytes += chunk.len() as u64;
    }
    Ok(Written {
        bytes,
        sha256: crate::text::hex(&hasher.finalize()),
    })
}
