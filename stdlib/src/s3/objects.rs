//! Whole-object operations: put, get, head, delete, list (all pages).

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use rhai::{Dynamic, Map};

use super::client::{Bucket, path};
use super::retention::Entry;
use crate::host::StdlibError;

/// The most `s3::get` reads into memory; bigger objects go through `s3::download`.
pub(crate) const GET_LIMIT: u64 = 256 * 1024 * 1024;

impl Entry {
    /// `#{key, size, modified}` for scripts.
    pub(crate) fn to_map(&self) -> Map {
        let mut map = Map::new();
        map.insert("key".into(), self.key.clone().into());
        map.insert(
            "size".into(),
            Dynamic::from_int(i64::try_from(self.size).unwrap_or(i64::MAX)),
        );
        map.insert(
            "modified".into(),
            self.modified
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                .into(),
        );
        map
    }
}

impl Bucket {
    /// Store `bytes` as `key` (one PUT).
    pub(crate) async fn put(&self, key: &str, bytes: Bytes) -> Result<u64, StdlibError> {
        let location = path(key)?;
        let size = bytes.len() as u64;
        self.store
            .put(&location, PutPayload::from_bytes(bytes))
            .await
            .map_err(|error| self.error("put", key, &error))?;
        Ok(size)
    }

    /// The whole object, up to [`GET_LIMIT`] bytes.
    pub(crate) async fn get(&self, key: &str) -> Result<Bytes, StdlibError> {
        let location = path(key)?;
        let result = self
            .store
            .get(&location)
            .await
            .map_err(|error| self.error("get", key, &error))?;
        if result.meta.size > GET_LIMIT {
            return Err(StdlibError::failed(
                format!(
                    "s3: `{key}` is {} bytes, more than `s3::get` reads into memory ({GET_LIMIT})",
                    result.meta.size
                ),
                "use `s3::download(key, path)`, which streams to a file",
            ));
        }
        result
            .bytes()
            .await
            .map_err(|error| self.error("get", key, &error))
    }

    /// The object's size and time, or `None` when there is no such object.
    pub(crate) async fn head(&self, key: &str) -> Result<Option<Entry>, StdlibError> {
        let location = path(key)?;
        match self.store.head(&location).await {
            Ok(meta) => Ok(Some(Entry {
                key: key.to_owned(),
                size: meta.size,
                modified: meta.last_modified,
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(self.error("look up", key, &error)),
        }
    }

    /// Delete one object (deleting a missing key is not an error in S3).
    pub(crate) async fn delete(&self, key: &str) -> Result<(), StdlibError> {
        let location = path(key)?;
        match self.store.delete(&location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(self.error("delete", key, &error)),
        }
    }

    /// Every object whose key starts with `prefix` (plain string prefix, all
    /// pages), sorted by key.
    pub(crate) async fn list(&self, prefix: &str) -> Result<Vec<Entry>, StdlibError> {
        let prefix = prefix.strip_prefix("s3://").unwrap_or(prefix);
        // object_store lists whole folders; list the folder that holds the
        // prefix and keep the keys that start with it.
        let folder = match prefix.rfind('/') {
            Some(end) => &prefix[..end],
            None => "",
        };
        let folder_path = if folder.is_empty() {
            None
        } else {
            Some(Path::from(folder))
        };
        let what = if prefix.is_empty() {
            "(all keys)"
        } else {
            prefix
        };
        let metas: Vec<object_store::ObjectMeta> = self
            .store
            .list(folder_path.as_ref())
            .try_collect()
            .await
            .map_err(|error| self.error("list", what, &error))?;
        let mut entries: Vec<Entry> = metas
            .into_iter()
            .map(|meta| Entry {
                key: meta.location.to_string(),
                size: meta.size,
                modified: meta.last_modified,
            })
            .filter(|entry| entry.key.starts_with(prefix))
            .collect();
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(entries)
    }
}
