//! How old a backup is and which ones retention lets go.
//!
//! Age comes from the timestamp in the object's **key**, not from S3's
//! LastModified: a copy, a re-upload or a restore from another bucket resets
//! LastModified, but the key keeps the time the backup was taken (and tests
//! can plant old backups, which LastModified does not allow). The timestamp is
//! read from the key's last part, before the first `.`: its digits must form
//! `YYYYMMDD`, `YYYYMMDDHHMM` or `YYYYMMDDHHMMSS` (so `20260102T030405Z`,
//! `2026-01-02T03-04-05Z`, `2026-01-02_0304` and `2026-01-02` all work). Keys
//! without such a timestamp fall back to LastModified.
//!
//! A backup `KEY` may have a manifest `KEY.manifest.json` beside it (written
//! last by `pg::dump`); manifests go with their backup and are never counted
//! as backups themselves.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};

/// The suffix of the manifest object written beside a backup.
pub(crate) const MANIFEST_SUFFIX: &str = ".manifest.json";

/// One object as listed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub(crate) key: String,
    pub(crate) size: u64,
    pub(crate) modified: DateTime<Utc>,
}

impl Entry {
    /// When the object was taken: the key's timestamp, else LastModified.
    pub(crate) fn time(&self) -> DateTime<Utc> {
        key_time(&self.key).unwrap_or(self.modified)
    }

    pub(crate) fn is_manifest(&self) -> bool {
        self.key.ends_with(MANIFEST_SUFFIX)
    }
}

/// The timestamp in a key's last part (see the module doc).
pub(crate) fn key_time(key: &str) -> Option<DateTime<Utc>> {
    let name = key.rsplit('/').next().unwrap_or(key);
    let stem = name.split('.').next().unwrap_or(name);
    let digits: String = stem.chars().filter(char::is_ascii_digit).collect();
    let number =
        |range: std::ops::Range<usize>| digits.get(range).and_then(|d| d.parse::<u32>().ok());
    let date = || {
        let year = i32::try_from(number(0..4)?).ok()?;
        NaiveDate::from_ymd_opt(year, number(4..6)?, number(6..8)?)
    };
    let time = match digits.len() {
        8 => NaiveTime::MIN,
        12 => NaiveTime::from_hms_opt(number(8..10)?, number(10..12)?, 0)?,
        14 => NaiveTime::from_hms_opt(number(8..10)?, number(10..12)?, number(12..14)?)?,
        _ => return None,
    };
    Some(NaiveDateTime::new(date()?, time).and_utc())
}

/// Backups (objects that are not manifests), newest first.
pub(crate) fn backups(entries: &[Entry]) -> Vec<Entry> {
    let mut backups: Vec<Entry> = entries
        .iter()
        .filter(|entry| !entry.is_manifest())
        .cloned()
        .collect();
    backups.sort_by(|a, b| b.time().cmp(&a.time()).then_with(|| b.key.cmp(&a.key)));
    backups
}

/// What `prune` does: the backups it keeps and the ones it deletes (each
/// with its manifest, if it has one), newest first.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    pub(crate) keep: Vec<Entry>,
    /// Backups to delete, with their manifest key if one exists.
    pub(crate) delete: Vec<(Entry, Option<String>)>,
}

/// Keep the newest `keep_last` backups whatever their age, and every backup
/// younger than `keep_days`; delete the rest.
pub(crate) fn plan(
    entries: &[Entry],
    keep_days: i64,
    keep_last: usize,
    now: DateTime<Utc>,
) -> Plan {
    let cutoff = now - chrono::Duration::days(keep_days);
    let mut keep = Vec::new();
    let mut delete = Vec::new();
    for (index, backup) in backups(entries).into_iter().enumerate() {
        if index < keep_last || backup.time() >= cutoff {
            keep.push(backup);
        } else {
            let manifest = format!("{}{MANIFEST_SUFFIX}", backup.key);
            let manifest = entries
                .iter()
                .any(|entry| entry.key == manifest)
                .then_some(manifest);
            delete.push((backup, manifest));
        }
    }
    Plan { keep, delete }
}

/// Age in whole days, for messages.
pub(crate) fn age_days(entry: &Entry, now: DateTime<Utc>) -> i64 {
    (now - entry.time()).num_days()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn entry(key: &str) -> Entry {
        Entry {
            key: key.into(),
            size: 1,
            modified: at("2026-11-22T00:00:00Z"),
        }
    }

    #[test]
    fn reads_timestamps_from_keys() {
        assert_eq!(
            key_time("backups/todos/20260102T030405Z.dump.zst"),
            Some(at("2026-01-02T03:04:05Z"))
        );
        assert_eq!(
            key_time("b/2026-01-02T03-04-05Z.dump.zst"),
            Some(at("2026-01-02T03:04:05Z"))
        );
        assert_eq!(
            key_time("b/2026-01-02.tar"),
            Some(at("2026-01-02T00:00:00Z"))
        );
        assert_eq!(
            key_time("b/2026-01-02_0304.sql"),
            Some(at("2026-01-02T03:04:00Z"))
        );
        assert_eq!(key_time("b/latest.dump"), None);
        assert_eq!(key_time("b/20261340.dump"), None);
    }

    #[test]
    fn keeps_the_last_n_and_the_young_ones() {
        let now = at("2026-11-22T12:00:00Z");
        let mut entries = Vec::new();
        // 10 backups, one every 10 days back from today, each with a manifest.
        for days in (0..10).map(|i| i * 10) {
            let time = now - chrono::Duration::days(days);
            let key = format!("backups/db/{}.dump.zst", time.format("%Y%m%dT%H%M%SZ"));
            entries.push(entry(&format!("{key}{MANIFEST_SUFFIX}")));
            entries.push(entry(&key));
        }
        let plan = plan(&entries, 30, 7, now);
        assert_eq!(plan.keep.len(), 7, "{plan:#?}");
        assert_eq!(plan.delete.len(), 3);
        assert!(plan.delete.iter().all(|(_, manifest)| manifest.is_some()));
        // 30 days: with keep_last 2 only the 0, 10, 20 and 30-day-old stay.
        let plan2 = super::plan(&entries, 30, 2, now);
        assert_eq!(plan2.keep.len(), 4);
        // Newest first.
        assert!(plan.keep[0].time() > plan.keep[1].time());
    }
}
