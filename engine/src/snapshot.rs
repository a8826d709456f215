//! Snapshots: the engine's state (and any other projection's) at one sequence id, so that a
//! restart replays only the journal after it.
//!
//! A snapshot file is named after the last sequence id it includes and holds named sections of
//! canonical bytes (the same state always gives the same bytes, whatever history led to it):
//!
//! ```text
//! "EXSNAPSH" | u32 version | u32 section count | u64 sequence id | i64 timestamp (ns)
//! | u64 configuration fingerprint
//! | per section: [u8; 4] name | u64 length | bytes
//! | u32 CRC32C of everything before
//! ```
//!
//! Files are written to a temporary name, synced and renamed, so a crash leaves either the
//! whole snapshot or none. A snapshot is only ever a shortcut: the journal stays the truth, and
//! an unreadable snapshot, or one taken under another configuration, is passed over for an
//! older one or a full replay.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use crate::wire::{self, Field};

const MAGIC: &[u8; 8] = b"EXSNAPSH";
const VERSION: u32 = 1;
const HEADER: usize = 8 + 4 + 4 + 8 + 8 + 8;
const SUFFIX: &str = ".snapshot";

/// Why a snapshot cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// An IO error.
    #[error("snapshot {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The bytes are not a valid snapshot.
    #[error("snapshot corrupt: {0}")]
    Corrupt(String),
    /// Taken under another configuration: its state may not fit this one.
    #[error("snapshot taken under another configuration")]
    Configuration,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(what: impl Into<String>) -> SnapshotError {
    SnapshotError::Corrupt(what.into())
}

/// Appends fields to a growing buffer, each in its binary-record encoding ([`Field`]).
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Writer {
        Writer::default()
    }

    /// The bytes written.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Writes raw bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// Writes a field.
    pub fn put<F: Field>(&mut self, v: &F) {
        let start = self.buf.len();
        self.buf.resize(start + F::SIZE, 0);
        v.put(&mut wire::Writer::new(&mut self.buf[start..]));
    }

    /// Writes a length (a collection's size).
    pub fn count(&mut self, n: usize) {
        self.put(&(n as u64));
    }

    /// Writes an optional i64 as a presence byte and the value.
    pub fn opt_i64(&mut self, v: Option<i64>) {
        self.put(&v.is_some());
        self.put(&v.unwrap_or(0));
    }
}

/// Reads fields written by [`Writer`]; every read checks the bounds and the field's values, so
/// bad bytes give an error.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    /// Reads `n` raw bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| corrupt(format!("cut short at byte {}", self.pos)))?;
        let b = &self.buf[self.pos..end];
        self.pos = end;
        Ok(b)
    }

    /// Reads a field.
    pub fn get<F: Field>(&mut self) -> Result<F, SnapshotError> {
        let at = self.pos;
        let b = self.bytes(F::SIZE)?;
        F::get(&mut wire::Reader::new(b)).map_err(|e| corrupt(format!("byte {at}: {e}")))
    }

    /// Reads a length of items at least `item_bytes` long each; a length the remaining bytes
    /// cannot hold is an error (so bad bytes never make a huge allocation).
    pub fn count(&mut self, item_bytes: usize) -> Result<usize, SnapshotError> {
        let n: u64 = self.get()?;
        let left = (self.buf.len() - self.pos) as u64;
        if n.saturating_mul(item_bytes.max(1) as u64) > left {
            return Err(corrupt(format!("{n} items cannot fit in {left} bytes")));
        }
        Ok(n as usize)
    }

    /// Reads an optional i64 written by [`Writer::opt_i64`].
    pub fn opt_i64(&mut self) -> Result<Option<i64>, SnapshotError> {
        let some: bool = self.get()?;
        let v: i64 = self.get()?;
        Ok(some.then_some(v))
    }

    /// Fails unless every byte was read.
    pub fn finish(&self) -> Result<(), SnapshotError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(corrupt(format!(
                "{} bytes left over",
                self.buf.len() - self.pos
            )))
        }
    }
}

/// A snapshot read back: where it stands in the journal and its sections.
#[derive(Debug)]
pub struct Snapshot {
    /// The last sequence id applied to the state it holds.
    pub seq: u64,
    /// That command's timestamp.
    pub timestamp: i64,
    /// The configuration fingerprint it was taken under.
    pub fingerprint: u64,
    /// Named sections.
    pub sections: Vec<([u8; 4], Vec<u8>)>,
}

impl Snapshot {
    /// The section with this name.
    pub fn section(&self, name: &[u8; 4]) -> Option<&[u8]> {
        self.sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.as_slice())
    }
}

/// The snapshot files of a directory, oldest first: (sequence id, path).
pub fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, SnapshotError> {
    crate::journal::numbered_files(dir, SUFFIX).map_err(io_err(dir))
}

/// Writes a snapshot durably: a temporary file, synced, renamed, and the directory synced.
pub fn write(
    dir: &Path,
    seq: u64,
    timestamp: i64,
    fingerprint: u64,
    sections: &[([u8; 4], &[u8])],
) -> Result<PathBuf, SnapshotError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut header = Vec::with_capacity(HEADER);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&VERSION.to_le_bytes());
    header.extend_from_slice(&(sections.len() as u32).to_le_bytes());
    header.extend_from_slice(&seq.to_le_bytes());
    header.extend_from_slice(&timestamp.to_le_bytes());
    header.extend_from_slice(&fingerprint.to_le_bytes());
    let path = dir.join(format!("{seq:020}{SUFFIX}"));
    let tmp = dir.join(format!("{seq:020}{SUFFIX}.tmp"));
    let f = File::create(&tmp).map_err(io_err(&tmp))?;
    // Written piece by piece, the CRC computed along: the sections are not copied into one
    // buffer first (a second copy of tens of MB, faulted in page by page).
    let mut w = Paced::new(&f);
    let written = (|| {
        w.put(&header)?;
        for (name, bytes) in sections {
            w.put(name)?;
            w.put(&(bytes.len() as u64).to_le_bytes())?;
            w.put(bytes)?;
        }
        let crc = w.crc;
        w.put(&crc.to_le_bytes())
    })();
    written.map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    drop(f);
    fs::rename(&tmp, &path).map_err(io_err(&path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    Ok(path)
}

/// A snapshot file being written: in order, with its CRC32C so far, a mebibyte at a time on
/// the device before the next is written.
///
/// The journal's syncs wait behind whatever the device has queued: a snapshot (tens of MB)
/// written at once and then synced made the commits beside it take 60-110 ms at the peak;
/// paced ([`crate::journal::PACED_WRITE`]), they wait behind one chunk at most. The `sync_all`
/// after it still makes the whole file durable.
struct Paced<'a> {
    f: &'a File,
    at: u64,
    synced: u64,
    crc: u32,
}

impl<'a> Paced<'a> {
    const CHUNK: u64 = crate::journal::PACED_WRITE as u64;

    fn new(f: &'a File) -> Paced<'a> {
        Paced {
            f,
            at: 0,
            synced: 0,
            crc: 0,
        }
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.crc = crc32c::crc32c_append(self.crc, b);
        for chunk in b.chunks(Self::CHUNK as usize) {
            self.f.write_all_at(chunk, self.at)?;
            self.at += chunk.len() as u64;
            if self.at - self.synced >= Self::CHUNK {
                self.write_out();
            }
        }
        Ok(())
    }

    /// Puts what was written since the last call on the device and waits for it (a failure
    /// only loses the pacing: the `sync_all` that follows syncs it all).
    fn write_out(&mut self) {
        crate::journal::write_back(self.f, self.synced, self.at, true);
        self.synced = self.at;
    }
}

/// Reads and checks one snapshot file.
pub fn read(path: &Path) -> Result<Snapshot, SnapshotError> {
    let b = fs::read(path).map_err(io_err(path))?;
    decode(&b)
}

fn decode(b: &[u8]) -> Result<Snapshot, SnapshotError> {
    if b.len() < HEADER + 4 {
        return Err(corrupt(format!("{} bytes is too short", b.len())));
    }
    let (body, crc) = b.split_at(b.len() - 4);
    if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().unwrap_or_default()) {
        return Err(corrupt("CRC32C mismatch"));
    }
    let mut r = Reader::new(body);
    if r.bytes(8)? != MAGIC {
        return Err(corrupt("not a snapshot file"));
    }
    let version: u32 = r.get()?;
    if version != VERSION {
        return Err(corrupt(format!(
            "format version {version}, expected {VERSION}"
        )));
    }
    let count: u32 = r.get()?;
    let seq: u64 = r.get()?;
    let timestamp: i64 = r.get()?;
    let fingerprint: u64 = r.get()?;
    let mut sections = Vec::new();
    for _ in 0..count {
        let name: [u8; 4] = r.bytes(4)?.try_into().unwrap_or_default();
        let len = r.count(1)?;
        sections.push((name, r.bytes(len)?.to_vec()));
    }
    r.finish()?;
    Ok(Snapshot {
        seq,
        timestamp,
        fingerprint,
        sections,
    })
}

/// What [`newest_usable`] found: the snapshot with what its loader made of it, if any, and the
/// snapshots passed over with the reason.
pub type Found<T> = (Option<(Snapshot, T)>, Vec<(PathBuf, SnapshotError)>);

/// The newest snapshot at or below `max_seq`, taken under `fingerprint`, that `load` accepts,
/// with what `load` made of it; and the snapshots passed over with the reason (for the log:
/// they cost replay time, never state).
pub fn newest_usable<T>(
    dir: &Path,
    max_seq: u64,
    fingerprint: u64,
    mut load: impl FnMut(&Snapshot) -> Result<T, SnapshotError>,
) -> Result<Found<T>, SnapshotError> {
    let mut skipped = Vec::new();
    for (seq, path) in list(dir)?.into_iter().rev() {
        if seq > max_seq {
            continue;
        }
        let loaded = read(&path).and_then(|s| {
            if s.fingerprint != fingerprint {
                return Err(SnapshotError::Configuration);
            }
            if s.seq != seq {
                return Err(corrupt(format!("the file holds sequence {}", s.seq)));
            }
            let t = load(&s)?;
            Ok((s, t))
        });
        match loaded {
            Ok(found) => return Ok((Some(found), skipped)),
            Err(e) => skipped.push((path, e)),
        }
    }
    Ok((None, skipped))
}

/// Deletes all but the newest `keep` snapshots, and temporary files a crash left behind.
pub fn prune(dir: &Path, keep: usize) -> Result<(), SnapshotError> {
    let all = list(dir)?;
    let old = all.len().saturating_sub(keep);
    for (_, path) in &all[..old] {
        fs::remove_file(path).map_err(io_err(path))?;
    }
    for entry in fs::read_dir(dir).map_err(io_err(dir))?.flatten() {
        if entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.ends_with(".tmp"))
        {
            let _ = fs::remove_file(entry.path());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("snapshot-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn written_snapshots_read_back_and_the_newest_usable_one_wins() {
        let dir = temp_dir("latest");
        write(&dir, 10, 1, 7, &[(*b"ENGN", b"ten")]).unwrap();
        write(&dir, 20, 2, 7, &[(*b"ENGN", b"twenty"), (*b"FEED", b"")]).unwrap();
        write(&dir, 30, 3, 8, &[(*b"ENGN", b"other config")]).unwrap();
        let engn = |s: &Snapshot| Ok(s.section(b"ENGN").unwrap_or_default().to_vec());
        let (s, skipped) = newest_usable(&dir, u64::MAX, 7, engn).unwrap();
        let (s, bytes) = s.unwrap();
        assert_eq!((s.seq, s.timestamp), (20, 2));
        assert_eq!(bytes, b"twenty");
        assert_eq!(s.section(b"FEED"), Some(&b""[..]));
        assert_eq!(s.section(b"NONE"), None);
        assert!(matches!(skipped[..], [(_, SnapshotError::Configuration)]));
        // Bounded by a sequence id: the older one.
        let seq = |max| {
            newest_usable(&dir, max, 7, engn)
                .unwrap()
                .0
                .map(|s| s.0.seq)
        };
        assert_eq!(seq(19), Some(10));
        assert_eq!(seq(9), None);
        // One its loader refuses is passed over too.
        let (s, skipped) = newest_usable(&dir, u64::MAX, 7, |s| {
            if s.seq == 20 {
                Err(corrupt("refused"))
            } else {
                Ok(())
            }
        })
        .unwrap();
        assert_eq!(s.unwrap().0.seq, 10);
        assert_eq!(skipped.len(), 2);

        // A damaged newest snapshot is passed over, with the reason.
        let (_, p20) = list(&dir).unwrap().into_iter().find(|s| s.0 == 20).unwrap();
        let mut b = fs::read(&p20).unwrap();
        b[HEADER + 2] ^= 1;
        fs::write(&p20, &b).unwrap();
        let (s, skipped) = newest_usable(&dir, u64::MAX, 7, engn).unwrap();
        assert_eq!(s.unwrap().0.seq, 10);
        assert!(skipped.iter().any(|e| e.1.to_string().contains("CRC32C")));

        prune(&dir, 1).unwrap();
        assert_eq!(
            list(&dir).unwrap().iter().map(|s| s.0).collect::<Vec<_>>(),
            [30]
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sections_larger_than_a_write_chunk_read_back_whole() {
        let dir = temp_dir("chunks");
        // Sections across, below and exactly at the chunk size, in one file.
        let chunk = Paced::CHUNK as usize;
        let big: Vec<u8> = (0..chunk * 2 + 12_345)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let exact: Vec<u8> = (0..chunk).map(|i| (i % 13) as u8).collect();
        let p = write(
            &dir,
            42,
            9,
            3,
            &[(*b"ENGN", &big), (*b"TINY", b"x"), (*b"FEED", &exact)],
        )
        .unwrap();
        let s = read(&p).unwrap();
        assert_eq!((s.seq, s.timestamp), (42, 9));
        assert_eq!(s.section(b"ENGN"), Some(&big[..]));
        assert_eq!(s.section(b"TINY"), Some(&b"x"[..]));
        assert_eq!(s.section(b"FEED"), Some(&exact[..]));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn truncated_or_garbage_bytes_are_errors() {
        let dir = temp_dir("garbage");
        let p = write(&dir, 5, 0, 1, &[(*b"ENGN", &[1, 2, 3])]).unwrap();
        let b = fs::read(&p).unwrap();
        for cut in 0..b.len() {
            assert!(decode(&b[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode(&b).is_ok());
        // A section length larger than the file, with a valid CRC, is refused.
        let mut bad = b[..b.len() - 4].to_vec();
        bad[HEADER + 4..HEADER + 12].copy_from_slice(&u64::MAX.to_le_bytes());
        let crc = crc32c::crc32c(&bad);
        bad.extend_from_slice(&crc.to_le_bytes());
        assert!(decode(&bad).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reader_lengths_are_bounded_by_the_bytes_left() {
        let mut w = Writer::new();
        w.count(1 << 40);
        let b = w.into_bytes();
        assert!(Reader::new(&b).count(8).is_err());
        let mut r = Reader::new(&[2]);
        assert!(r.get::<bool>().is_err(), "2 is not a bool");
    }
}
