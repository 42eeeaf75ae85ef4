//! Read, change, write back with the `resourceVersion` that was read: a 409
//! Conflict (a controller or a person wrote in between) re-reads and applies
//! the change again, like client-go's `RetryOnConflict`.

use std::fmt::Debug;

use kube::api::{Api, PostParams};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::client::Kube;
use super::error::{
    CONFLICT_ATTEMPTS, Subject, api, conflict_pause, is_conflict, too_many_conflicts,
};
use super::{FIELD_MANAGER, Mode};
use crate::host::StdlibError;

/// The outcome of [`update`].
#[derive(Debug)]
pub(crate) struct Updated<K> {
    /// The object as it was read (the last time).
    pub(crate) live: K,
    /// The object as the server stored it (or would, in a dry run); the live
    /// object when the change changed nothing.
    pub(crate) after: K,
    /// How many 409 Conflicts were retried.
    pub(crate) conflicts: u32,
}

/// Apply `change` to the object named by `subject` and write it back (with
/// `dryRun=All` in `Mode::Preview`). `change` returns whether it changed
/// anything; when it did not, nothing is written.
pub(crate) async fn update<K, F>(
    kube: &Kube,
    objects: &Api<K>,
    subject: &Subject,
    mode: Mode,
    mut change: F,
) -> Result<Updated<K>, StdlibError>
where
    K: Clone + DeserializeOwned + Serialize + Debug,
    F: FnMut(&mut K) -> Result<bool, StdlibError>,
{
    let name = subject.name.clone().unwrap_or_default();
    let params = PostParams {
        dry_run: mode.is_preview(),
        field_manager: Some(FIELD_MANAGER.to_owned()),
    };
    let mut conflicts = 0;
    loop {
        let live = objects
            .get(&name)
            .await
            .map_err(|error| api(kube, subject, "read", &error))?;
        let mut after = live.clone();
        if !change(&mut after)? {
            return Ok(Updated {
                live: live.clone(),
                after: live,
                conflicts,
            });
        }
        match retry_on_conflict(
            objects.replace(&name, &params, &after).await,
            &mut conflicts,
        ) {
            Attempt::Done(stored) => {
                return Ok(Updated {
                    live,
                    after: stored,
                    conflicts,
                });
            }
            Attempt::Again => {
                if conflicts >= CONFLICT_ATTEMPTS {
                    return Err(too_many_conflicts(subject));
                }
                conflict_pause(conflicts).await;
            }
            Attempt::Failed(error) => return Err(api(kube, subject, "update", &error)),
        }
    }
}

/// What to do after one write attempt.
#[derive(Debug)]
pub(crate) enum Attempt<T> {
    Done(T),
    /// A 409 Conflict: re-read and try again (counted).
    Again,
    Failed(kube::Error),
}

/// Classify a write's result, counting conflicts.
pub(crate) fn retry_on_conflict<T>(
    result: Result<T, kube::Error>,
    conflicts: &mut u32,
) -> Attempt<T> {
    match result {
        Ok(value) => Attempt::Done(value),
        Err(error) if is_conflict(&error) => {
            *conflicts += 1;
            Attempt::Again
        }
        Err(error) => Attempt::Failed(error),
    }
}

#[cfg(test)]
mod tests {
    use kube::core::Status;

    use super::*;

    fn conflict() -> kube::Error {
        kube::Error::Api(Box::new(Status {
            status: None,
            code: 409,
            message: "the object has been modified; please apply your changes to the latest version and try again".into(),
            metadata: None,
            reason: "Conflict".into(),
            details: None,
        }))
    }

    /// A fake server whose first `fail` writes are rejected as stale: the
    /// loop's shape (re-read, re-apply the change, write) must end with the
    /// change applied to the newest version.
    #[test]
    fn conflicts_are_retried_on_the_newest_version() {
        let mut stored = (5u32, "v1".to_owned()); // (resourceVersion, image)
        let mut fail = 2;
        let mut conflicts = 0;
        let mut writes = 0;
        loop {
            let live = stored.clone();
            let mut after = live.clone();
            after.1 = "v2".into();
            writes += 1;
            let result = if fail > 0 {
                fail -= 1;
                // Someone else wrote in between: the version moved on.
                stored.0 += 1;
                Err(conflict())
            } else if after.0 == stored.0 {
                stored = (after.0 + 1, after.1.clone());
                Ok(stored.clone())
            } else {
                Err(conflict())
            };
            match retry_on_conflict(result, &mut conflicts) {
                Attempt::Done(value) => {
                    assert_eq!(value, (8, "v2".to_owned()));
                    break;
                }
                Attempt::Again => assert!(conflicts < CONFLICT_ATTEMPTS),
                Attempt::Failed(error) => panic!("{error}"),
            }
        }
        assert_eq!(conflicts, 2);
        assert_eq!(writes, 3);
    }

    #[test]
    fn other_errors_are_not_retried() {
        let mut conflicts = 0;
        let not_found = kube::Error::Api(Box::new(Status {
            status: None,
            code: 404,
            message: String::new(),
            metadata: None,
            reason: "NotFound".into(),
            details: None,
        }));
        assert!(matches!(
            retry_on_conflict::<()>(Err(not_found), &mut conflicts),
            Attempt::Failed(_)
        ));
        assert_eq!(conflicts, 0);
    }
}
