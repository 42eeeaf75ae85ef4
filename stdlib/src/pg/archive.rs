//! Reading pg_dump's custom archive format as it streams: the header and the
//! table of contents (which come first), then the data blocks. Only what
//! `pg::restore` needs to load table data itself: the rest of every entry is
//! skipped, and pg_restore still runs the SQL of the schema.
//!
//! The layout (PostgreSQL's `pg_backup_archiver.c` `ReadHead`/`ReadToc` and
//! `pg_backup_custom.c`): `PGDMP`, version (3 bytes), int size, offset size,
//! format; an int is a sign byte and `int size` little-endian bytes, a string
//! an int length (-1: none) and its bytes. Data blocks are a type byte, the
//! entry's dump id, then chunks (an int length and the bytes) up to a length
//! of 0.

use bytes::{Buf, Bytes, BytesMut};

/// Archive versions read here: 1.12 (PostgreSQL 9.0) to 1.16 (17 and 18).
const OLDEST: (u8, u8) = (1, 12);
const NEWEST: (u8, u8) = (1, 16);

/// The custom format's byte in the header.
const FORMAT_CUSTOM: u8 = 1;

/// A data block of a table (the other kind, 3, holds large objects).
pub(crate) const BLOCK_DATA: u8 = 1;

/// A TOC longer than this is not read (the fallback, pg_restore, still is).
const TOC_LIMIT: usize = 64 * 1024 * 1024;

/// Why an archive cannot be read here.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ArchiveError {
    #[error("not a pg_dump custom archive")]
    NotCustom,
    #[error("archive version {0}.{1} is not one this reader knows")]
    Version(u8, u8),
    #[error("the archive is damaged: {0}")]
    Damaged(String),
}

/// The archive section of an entry (`teSection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    None,
    PreData,
    Data,
    PostData,
}

/// One table-of-contents entry: the fields the loader looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) id: i64,
    pub(crate) has_data: bool,
    pub(crate) desc: String,
    pub(crate) tag: String,
    pub(crate) section: Section,
    pub(crate) defn: String,
    pub(crate) copy: String,
}

/// The header and table of contents.
#[derive(Debug, Clone)]
pub(crate) struct Toc {
    /// Bytes from the archive's start to the first data block.
    pub(crate) len: usize,
    pub(crate) int_size: usize,
    /// Whether pg_dump compressed the data itself (`--compress` > 0).
    pub(crate) compressed: bool,
    pub(crate) entries: Vec<Entry>,
}

impl Toc {
    /// Parse the header and TOC at the start of `bytes`: `Ok(None)` while
    /// they are not all there yet.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Option<Toc>, ArchiveError> {
        if bytes.len() < 11 {
            return if b"PGDMP".starts_with(&bytes[..bytes.len().min(5)]) {
                Ok(None)
            } else {
                Err(ArchiveError::NotCustom)
            };
        }
        if &bytes[..5] != b"PGDMP" || bytes[10] != FORMAT_CUSTOM {
            return Err(ArchiveError::NotCustom);
        }
        let version = (bytes[5], bytes[6], bytes[7]);
        if (version.0, version.1) < OLDEST || (version.0, version.1) > NEWEST {
            return Err(ArchiveError::Version(version.0, version.1));
        }
        let int_size = usize::from(bytes[8]);
        let offset_size = usize::from(bytes[9]);
        if !(1..=8).contains(&int_size) || !(1..=8).contains(&offset_size) {
            return Err(ArchiveError::Damaged(format!(
                "int size {int_size}, offset size {offset_size}"
            )));
        }
        let mut reader = Reader {
            bytes,
            at: 11,
            int_size,
        };
        match reader.toc(version, offset_size) {
            Ok((compressed, entries)) => Ok(Some(Toc {
                len: reader.at,
                int_size,
                compressed,
                entries,
            })),
            Err(Short::More) if bytes.len() < TOC_LIMIT => Ok(None),
            Err(Short::More) => Err(ArchiveError::Damaged(format!(
                "no end of the table of contents in its first {TOC_LIMIT} bytes"
            ))),
            Err(Short::Bad(why)) => Err(ArchiveError::Damaged(why)),
        }
    }

    /// The entry with this dump id.
    #[cfg(test)]
    pub(crate) fn entry(&self, id: i64) -> Option<&Entry> {
        self.entries.iter().find(|entry| entry.id == id)
    }

    /// The client encoding the archive's text is in (`ENCODING` entry).
    pub(crate) fn encoding(&self) -> Option<String> {
        let entry = self.entries.iter().find(|entry| entry.desc == "ENCODING")?;
        let quoted = entry.defn.split('\'').nth(1)?;
        Some(quoted.to_owned())
    }
}

/// Reading stopped: the bytes end early, or they make no sense.
enum Short {
    More,
    Bad(String),
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    int_size: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, Short> {
        let byte = *self.bytes.get(self.at).ok_or(Short::More)?;
        self.at += 1;
        Ok(byte)
    }

    fn skip(&mut self, count: usize) -> Result<(), Short> {
        if self.bytes.len() - self.at < count {
            return Err(Short::More);
        }
        self.at += count;
        Ok(())
    }

    fn int(&mut self) -> Result<i64, Short> {
        let sign = self.byte()?;
        let mut value: i64 = 0;
        for shift in 0..self.int_size {
            value |= i64::from(self.byte()?) << (8 * shift);
        }
        Ok(if sign == 0 { value } else { -value })
    }

    fn string(&mut self) -> Result<Option<String>, Short> {
        let len = self.int()?;
        if len < 0 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| Short::Bad("a huge string".into()))?;
        if len > TOC_LIMIT {
            return Err(Short::Bad(format!("a string of {len} bytes")));
        }
        let start = self.at;
        self.skip(len)?;
        Ok(Some(
            String::from_utf8_lossy(&self.bytes[start..self.at]).into_owned(),
        ))
    }

    /// The rest of the header, then the TOC; returns (compressed, entries).
    fn toc(
        &mut self,
        version: (u8, u8, u8),
        offset_size: usize,
    ) -> Result<(bool, Vec<Entry>), Short> {
        let minor = version.1;
        let compressed = if minor >= 15 {
            self.byte()? != 0
        } else {
            self.int()? != 0
        };
        for _ in 0..7 {
            self.int()?; // creation date: sec, min, hour, day, month, year, isdst
        }
        self.string()?; // database name
        self.string()?; // server version
        self.string()?; // pg_dump version
        let count = self.int()?;
        if !(0..=10_000_000).contains(&count) {
            return Err(Short::Bad(format!("{count} TOC entries")));
        }
        let mut entries = Vec::new();
        for _ in 0..count {
            let id = self.int()?;
            if id <= 0 {
                return Err(Short::Bad(format!("entry id {id}")));
            }
            let has_data = self.int()? != 0;
            self.string()?; // tableoid
            self.string()?; // oid
            let tag = self.string()?.unwrap_or_default();
            let desc = self.string()?.unwrap_or_default();
            let section = match self.int()? {
                1 => Section::None,
                2 => Section::PreData,
                3 => Section::Data,
                4 => Section::PostData,
                other => return Err(Short::Bad(format!("section {other}"))),
            };
            let defn = self.string()?.unwrap_or_default();
            self.string()?; // drop statement
            let copy = self.string()?.unwrap_or_default();
            self.string()?; // namespace
            self.string()?; // tablespace
            if minor >= 14 {
                self.string()?; // table access method
            }
            if minor >= 16 {
                self.int()?; // relkind
            }
            self.string()?; // owner
            self.string()?; // "with oids": always "false" now
            while self.string()?.is_some() {} // dependencies, up to a null
            // The custom format's extra: offset state byte, then the offset.
            self.byte()?;
            self.skip(offset_size)?;
            entries.push(Entry {
                id,
                has_data,
                desc,
                tag,
                section,
                defn,
                copy,
            });
        }
        Ok((compressed, entries))
    }
}

/// What the data part of an archive holds, as it is read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// A data block starts: its kind and the entry's dump id.
    Block { kind: u8, id: i64 },
    /// Some of the block's bytes (COPY text for a table).
    Data(Bytes),
    /// The block is complete.
    End,
}

/// A push reader of data blocks: `feed` it bytes (after the TOC), take
/// events with `next`.
pub(crate) struct Blocks {
    buffer: BytesMut,
    int_size: usize,
    state: State,
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Between blocks.
    Block,
    /// Inside a block, a chunk length next.
    Length,
    /// Inside a chunk, this many bytes left.
    Chunk(usize),
}

impl Blocks {
    pub(crate) fn new(int_size: usize) -> Blocks {
        Blocks {
            buffer: BytesMut::with_capacity(1024 * 1024),
            int_size,
            state: State::Block,
        }
    }

    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// Whether the reader stopped between blocks with nothing left over: the
    /// archive ended where it should.
    pub(crate) fn at_end(&self) -> bool {
        matches!(self.state, State::Block) && self.buffer.is_empty()
    }

    fn int(&self, at: usize) -> Option<i64> {
        let bytes = self.buffer.get(at..at + 1 + self.int_size)?;
        let mut value: i64 = 0;
        for (shift, byte) in bytes[1..].iter().enumerate() {
            value |= i64::from(*byte) << (8 * shift);
        }
        Some(if bytes[0] == 0 { value } else { -value })
    }

    /// The next event, `Ok(None)` when more bytes are needed.
    pub(crate) fn next(&mut self) -> Result<Option<Event>, ArchiveError> {
        match self.state {
            State::Block => {
                let Some(&kind) = self.buffer.first() else {
                    return Ok(None);
                };
                let Some(id) = self.int(1) else {
                    return Ok(None);
                };
                self.buffer.advance(2 + self.int_size);
                self.state = State::Length;
                Ok(Some(Event::Block { kind, id }))
            }
            State::Length => {
                let Some(len) = self.int(0) else {
                    return Ok(None);
                };
                self.buffer.advance(1 + self.int_size);
                if len == 0 {
                    self.state = State::Block;
                    return Ok(Some(Event::End));
                }
                let len = usize::try_from(len)
                    .map_err(|_| ArchiveError::Damaged(format!("a chunk of {len} bytes")))?;
                self.state = State::Chunk(len);
                self.next()
            }
            State::Chunk(left) => {
                if self.buffer.is_empty() {
                    return Ok(None);
                }
                let take = left.min(self.buffer.len());
                let data = self.buffer.split_to(take).freeze();
                self.state = if take == left {
                    State::Length
                } else {
                    State::Chunk(left - take)
                };
                Ok(Some(Event::Data(data)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(value: i64) -> Vec<u8> {
        let mut out = vec![u8::from(value < 0)];
        out.extend_from_slice(&(value.unsigned_abs() as u32).to_le_bytes());
        out
    }

    fn string(value: Option<&str>) -> Vec<u8> {
        match value {
            None => int(-1),
            Some(text) => {
                let mut out = int(text.len() as i64);
                out.extend_from_slice(text.as_bytes());
                out
            }
        }
    }

    /// An archive as pg_dump 15 writes it: two entries, one with data.
    fn archive(minor: u8) -> (Vec<u8>, usize) {
        let mut out = b"PGDMP".to_vec();
        out.extend_from_slice(&[1, minor, 0, 4, 8, 1]);
        if minor >= 15 {
            out.push(0);
        } else {
            out.extend(int(0));
        }
        for value in [1, 2, 3, 4, 5, 2026, 0] {
            out.extend(int(value));
        }
        for text in ["todos", "15.18", "15.18"] {
            out.extend(string(Some(text)));
        }
        out.extend(int(2));
        for (id, data, desc, section, defn, copy) in [
            (7, 0, "ENCODING", 2, "SET client_encoding = 'UTF8';\n", ""),
            (9, 1, "TABLE DATA", 3, "", "COPY public.t (a) FROM stdin;\n"),
        ] {
            out.extend(int(id));
            out.extend(int(data));
            out.extend(string(Some("0")));
            out.extend(string(Some("0")));
            out.extend(string(Some("t")));
            out.extend(string(Some(desc)));
            out.extend(int(section));
            out.extend(string(Some(defn)));
            out.extend(string(Some("")));
            out.extend(string(Some(copy)));
            out.extend(string(Some("public")));
            out.extend(string(Some("")));
            if minor >= 14 {
                out.extend(string(Some("heap")));
            }
            if minor >= 16 {
                out.extend(int(114));
            }
            out.extend(string(Some("postgres")));
            out.extend(string(Some("false")));
            out.extend(string(Some("3")));
            out.extend(string(None));
            out.push(1);
            out.extend_from_slice(&[0; 8]);
        }
        let len = out.len();
        out.push(BLOCK_DATA);
        out.extend(int(9));
        out.extend(int(4));
        out.extend_from_slice(b"1\n2\n");
        out.extend(int(2));
        out.extend_from_slice(b"3\n");
        out.extend(int(0));
        (out, len)
    }

    #[test]
    fn the_toc_of_every_known_version_parses_and_waits_for_more_bytes() {
        for minor in [12, 13, 14, 15, 16] {
            let (bytes, len) = archive(minor);
            for cut in 0..len {
                assert!(
                    matches!(Toc::parse(&bytes[..cut]), Ok(None)),
                    "1.{minor}: cut at {cut}"
                );
            }
            let toc = Toc::parse(&bytes).expect("parses").expect("complete");
            assert_eq!(toc.len, len, "1.{minor}");
            assert!(!toc.compressed);
            assert_eq!(toc.encoding().as_deref(), Some("UTF8"));
            let data = toc.entry(9).expect("entry 9");
            assert!(data.has_data);
            assert_eq!(data.desc, "TABLE DATA");
            assert_eq!(data.section, Section::Data);
            assert_eq!(data.copy, "COPY public.t (a) FROM stdin;\n");
        }
    }

    #[test]
    fn other_files_and_versions_are_refused() {
        assert_eq!(
            Toc::parse(b"-- PostgreSQL dump").err(),
            Some(ArchiveError::NotCustom)
        );
        let (mut bytes, _) = archive(14);
        bytes[10] = 3; // tar
        assert_eq!(Toc::parse(&bytes).err(), Some(ArchiveError::NotCustom));
        let (mut bytes, _) = archive(14);
        bytes[6] = 17;
        assert_eq!(Toc::parse(&bytes).err(), Some(ArchiveError::Version(1, 17)));
    }

    #[test]
    fn blocks_come_out_the_same_however_the_bytes_are_cut() {
        let (bytes, len) = archive(14);
        let data = &bytes[len..];
        for step in 1..=data.len() {
            let mut blocks = Blocks::new(4);
            let mut events = Vec::new();
            let mut text = Vec::new();
            for piece in data.chunks(step) {
                blocks.feed(piece);
                while let Some(event) = blocks.next().expect("reads") {
                    match event {
                        Event::Data(bytes) => text.extend_from_slice(&bytes),
                        other => events.push(other),
                    }
                }
            }
            assert_eq!(
                events,
                vec![Event::Block { kind: 1, id: 9 }, Event::End],
                "step {step}"
            );
            assert_eq!(text, b"1\n2\n3\n", "step {step}");
            assert!(blocks.at_end());
        }
    }
}
