//! The journal: the sequenced command stream on disk, the exchange's source of truth.
//!
//! Append-only segment files named after the sequence id of their first record. Each segment
//! starts with a 16-byte header (magic, format version); then records:
//!
//! ```text
//! u32 payload length | u32 CRC32C of the rest | u64 sequence id | i64 timestamp (ns) | payload
//! ```
//!
//! where the payload is a binary [`Command`]. Appends are buffered and written by
//! [`Journal::commit`] (group commit), which also syncs according to the [`SyncPolicy`].
//!
//! Recovery reads every segment. Sequence ids must run without a gap. In the last segment, an
//! invalid record followed by no valid one is a torn write from a crash: it is cut off. Any
//! other invalid record is corruption, reported with its place, and recovery stops there:
//! nothing is skipped silently.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::command::{Command, MAX_COMMAND_LEN};

const MAGIC: &[u8; 8] = b"EXJOURNL";
const VERSION: u32 = 1;
const SEGMENT_HEADER: usize = 16;
/// Bytes before a record's payload.
pub const RECORD_HEADER: usize = 24;
const SUFFIX: &str = ".journal";

/// When appended records are forced to stable storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncPolicy {
    /// fdatasync after every group commit: nothing acknowledged is ever lost.
    EveryBatch,
    /// fdatasync at most this often: a power failure may lose the last interval.
    Interval(Duration),
    /// Never sync (the OS writes back): survives a process crash, not a power failure.
    Never,
}

impl std::str::FromStr for SyncPolicy {
    type Err = String;
    /// `batch`, `none`, or an interval such as `10ms` or `1s`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("journal sync policy {s:?}: expected batch, none, or NNms / NNs");
        match s {
            "batch" => Ok(SyncPolicy::EveryBatch),
            "none" => Ok(SyncPolicy::Never),
            _ => {
                let (n, unit) = if let Some(n) = s.strip_suffix("ms") {
                    (n, 1)
                } else if let Some(n) = s.strip_suffix('s') {
                    (n, 1000)
                } else {
                    return Err(bad());
                };
                let n: u64 = n.parse().map_err(|_| bad())?;
                Ok(SyncPolicy::Interval(Duration::from_millis(n * unit)))
            }
        }
    }
}

/// How a journal is written.
#[derive(Clone, Copy, Debug)]
pub struct JournalOptions {
    /// Sync policy.
    pub sync: SyncPolicy,
    /// A segment is closed and a new one started once it grows past this many bytes.
    pub segment_bytes: u64,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            sync: SyncPolicy::EveryBatch,
            segment_bytes: 256 << 20,
        }
    }
}

/// One journaled command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// Gap-free sequence id, from 1.
    pub seq: u64,
    /// The sequencer's timestamp, nanoseconds since the Unix epoch.
    pub timestamp: i64,
    /// The command.
    pub command: Command,
}

/// Why a journal cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// An IO error.
    #[error("journal {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Invalid data before the tail: the journal needs an operator.
    #[error("journal corrupt in {segment} at byte {offset}: {reason}")]
    Corrupt {
        /// The segment file.
        segment: PathBuf,
        /// Byte offset of the bad record.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a recovery found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Records passed on (those from the starting sequence id).
    pub records: u64,
    /// Segments read.
    pub segments: usize,
    /// Segments wholly before the starting sequence id, not read.
    pub skipped_segments: usize,
    /// The sequence id after the last record.
    pub next_seq: u64,
    /// Bytes of torn tail cut off (0 when the journal ended cleanly).
    pub truncated_bytes: u64,
}

/// The segments of a journal directory, in sequence order.
pub fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, JournalError> {
    numbered_files(dir, SUFFIX).map_err(io_err(dir))
}

/// The files of `dir` named `<number><suffix>`, by number; none when `dir` does not exist.
pub(crate) fn numbered_files(dir: &Path, suffix: &str) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_suffix(suffix))
            .and_then(|n| n.parse::<u64>().ok())
        {
            out.push((n, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn record_crc(body: &[u8]) -> u32 {
    crc32c::crc32c(body)
}

/// Checks the framing and CRC of the record at the start of `b`: `Ok((sequence id, length))`,
/// or why it is invalid.
fn check_record(b: &[u8]) -> Result<(u64, usize), String> {
    if b.len() < RECORD_HEADER {
        return Err(format!("record header cut short ({} bytes)", b.len()));
    }
    let len = u32::from_le_bytes(b[0..4].try_into().unwrap_or_default()) as usize;
    if len == 0 || len > MAX_COMMAND_LEN {
        return Err(format!("record length {len} out of range"));
    }
    let total = RECORD_HEADER + len;
    if b.len() < total {
        return Err(format!("record cut short ({} of {total} bytes)", b.len()));
    }
    let crc = u32::from_le_bytes(b[4..8].try_into().unwrap_or_default());
    if record_crc(&b[8..total]) != crc {
        return Err("CRC32C mismatch".into());
    }
    let seq = u64::from_le_bytes(b[8..16].try_into().unwrap_or_default());
    Ok((seq, total))
}

/// Decodes the command of a record [`check_record`] accepted.
fn decode_checked(b: &[u8], seq: u64, total: usize) -> Result<Record, String> {
    let timestamp = i64::from_le_bytes(b[16..24].try_into().unwrap_or_default());
    let (command, used) =
        Command::decode(&b[RECORD_HEADER..total]).map_err(|e| format!("bad command: {e}"))?;
    if used != total - RECORD_HEADER {
        return Err(format!(
            "command is {used} bytes in a {}-byte record",
            total - RECORD_HEADER
        ));
    }
    Ok(Record {
        seq,
        timestamp,
        command,
    })
}

/// Decodes the record at the start of `b`: `Ok((record, length))`, or why it is invalid.
fn decode_record(b: &[u8]) -> Result<(Record, usize), String> {
    let (seq, total) = check_record(b)?;
    Ok((decode_checked(b, seq, total)?, total))
}

/// Reads every record in order, calling `f` for each. With `repair`, a torn tail in the last
/// segment is cut off; without, it is only counted.
pub fn scan(dir: &Path, repair: bool, f: impl FnMut(&Record)) -> Result<Recovery, JournalError> {
    scan_from(dir, repair, 1, f)
}

/// [`scan`] from sequence id `from` on (a snapshot holds what came before): segments wholly
/// before it are not read; the records before it in the segment holding it are checked but
/// not passed to `f`.
pub fn scan_from(
    dir: &Path,
    repair: bool,
    from: u64,
    mut f: impl FnMut(&Record),
) -> Result<Recovery, JournalError> {
    let all = segments(dir)?;
    // The segment holding `from` is the last one starting at or before it.
    let skip = all
        .iter()
        .rposition(|(first, _)| *first <= from)
        .unwrap_or(0);
    let segs = &all[skip..];
    let mut rec = Recovery {
        segments: segs.len(),
        skipped_segments: skip,
        ..Recovery::default()
    };
    if let Some((first, path)) = segs.first()
        && *first > from
    {
        return Err(JournalError::Corrupt {
            segment: path.clone(),
            offset: 0,
            reason: format!("the journal starts at sequence {first}; replay needs {from}"),
        });
    }
    let mut expected: Option<u64> = None;
    for (i, (first, path)) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        let data = fs::read(path).map_err(io_err(path))?;
        let corrupt = |offset: usize, reason: String| JournalError::Corrupt {
            segment: path.clone(),
            offset: offset as u64,
            reason,
        };
        if data.len() < SEGMENT_HEADER {
            if last && MAGIC.starts_with(&data[..data.len().min(8)]) {
                // Crashed while creating the segment.
                rec.truncated_bytes += data.len() as u64;
                if repair {
                    fs::remove_file(path).map_err(io_err(path))?;
                }
                expected.get_or_insert(*first);
                break;
            }
            return Err(corrupt(0, "segment header cut short".into()));
        }
        if &data[..8] != MAGIC {
            return Err(corrupt(0, "not a journal segment".into()));
        }
        let version = u32::from_le_bytes(data[8..12].try_into().unwrap_or_default());
        if version != VERSION {
            return Err(corrupt(
                8,
                format!("format version {version}, expected {VERSION}"),
            ));
        }
        if let Some(e) = expected
            && *first != e
        {
            return Err(corrupt(
                0,
                format!("segment starts at sequence {first}, expected {e}"),
            ));
        }
        let mut off = SEGMENT_HEADER;
        while off < data.len() {
            // Records before `from` are framed and CRC-checked, not decoded: a snapshot
            // holds their effect.
            let b = &data[off..];
            let checked = check_record(b).and_then(|(seq, len)| {
                let r = (seq >= from)
                    .then(|| decode_checked(b, seq, len))
                    .transpose()?;
                Ok((seq, len, r))
            });
            match checked {
                Ok((seq, len, r)) => {
                    let want = expected.unwrap_or(*first);
                    if seq != want {
                        return Err(corrupt(
                            off,
                            format!("sequence {seq} where {want} was expected"),
                        ));
                    }
                    if let Some(r) = r {
                        f(&r);
                        rec.records += 1;
                    }
                    rec.next_seq = seq + 1;
                    expected = Some(seq + 1);
                    off += len;
                }
                Err(reason) => {
                    let valid_after =
                        (off + 1..data.len()).any(|p| decode_record(&data[p..]).is_ok());
                    if !last || valid_after {
                        return Err(corrupt(off, reason));
                    }
                    rec.truncated_bytes = (data.len() - off) as u64;
                    if repair {
                        let file = OpenOptions::new()
                            .write(true)
                            .open(path)
                            .map_err(io_err(path))?;
                        file.set_len(off as u64).map_err(io_err(path))?;
                        file.sync_all().map_err(io_err(path))?;
                    }
                    break;
                }
            }
        }
        if expected.is_none() {
            expected = Some(*first);
        }
    }
    let end = expected.unwrap_or(1);
    if from > end {
        return Err(JournalError::Corrupt {
            segment: dir.to_path_buf(),
            offset: 0,
            reason: format!("the journal ends before sequence {from} (next is {end})"),
        });
    }
    rec.next_seq = end;
    Ok(rec)
}

/// Forces the segment holding sequence id `seq` to stable storage (earlier segments were
/// synced when the writer rolled past them). A snapshot at `seq` is written after this, so
/// under any sync policy a snapshot never holds commands a power loss could take from the
/// journal.
pub fn sync_through(dir: &Path, seq: u64) -> Result<(), JournalError> {
    let segs = segments(dir)?;
    if let Some((_, path)) = segs.iter().rev().find(|(first, _)| *first <= seq) {
        File::open(path)
            .and_then(|f| f.sync_data())
            .map_err(io_err(path))?;
    }
    Ok(())
}

/// The writing end of a journal.
pub struct Journal {
    dir: PathBuf,
    options: JournalOptions,
    file: File,
    path: PathBuf,
    len: u64,
    next_seq: u64,
    buf: Vec<u8>,
    last_sync: Instant,
    dirty: bool,
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir`, replaying every record into `f` first
    /// and cutting off a torn tail.
    pub fn open(
        dir: &Path,
        options: JournalOptions,
        f: impl FnMut(&Record),
    ) -> Result<(Journal, Recovery), JournalError> {
        Self::open_from(dir, options, 1, f)
    }

    /// [`Journal::open`], replaying from sequence id `from` on (see [`scan_from`]).
    pub fn open_from(
        dir: &Path,
        options: JournalOptions,
        from: u64,
        f: impl FnMut(&Record),
    ) -> Result<(Journal, Recovery), JournalError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let recovery = scan_from(dir, true, from, f)?;
        let next = recovery.next_seq;
        let segs = segments(dir)?;
        let (file, path, len) = match segs.last() {
            Some((_, path)) => {
                let file = OpenOptions::new()
                    .append(true)
                    .open(path)
                    .map_err(io_err(path))?;
                let len = file.metadata().map_err(io_err(path))?.len();
                (file, path.clone(), len)
            }
            None => {
                let (file, path) = new_segment(dir, next)?;
                (file, path, SEGMENT_HEADER as u64)
            }
        };
        Ok((
            Journal {
                dir: dir.to_path_buf(),
                options,
                file,
                path,
                len,
                next_seq: next,
                buf: Vec::with_capacity(1 << 20),
                last_sync: Instant::now(),
                dirty: false,
            },
            recovery,
        ))
    }

    /// The sequence id the next append gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Buffers a command under the next sequence id and returns that id; [`Journal::commit`]
    /// writes it.
    pub fn append(&mut self, timestamp: i64, command: &Command) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let start = self.buf.len();
        self.buf.resize(start + RECORD_HEADER + MAX_COMMAND_LEN, 0);
        let len = command.encode(&mut self.buf[start + RECORD_HEADER..]);
        self.buf.truncate(start + RECORD_HEADER + len);
        let rec = &mut self.buf[start..];
        rec[0..4].copy_from_slice(&(len as u32).to_le_bytes());
        rec[8..16].copy_from_slice(&seq.to_le_bytes());
        rec[16..24].copy_from_slice(&timestamp.to_le_bytes());
        let crc = record_crc(&rec[8..]);
        rec[4..8].copy_from_slice(&crc.to_le_bytes());
        seq
    }

    /// Writes the buffered records and syncs them as the policy says. Returns whether the
    /// records are now on stable storage.
    pub fn commit(&mut self) -> Result<bool, JournalError> {
        if !self.buf.is_empty() {
            self.file.write_all(&self.buf).map_err(io_err(&self.path))?;
            self.len += self.buf.len() as u64;
            self.buf.clear();
            self.dirty = true;
        }
        let synced = match self.options.sync {
            SyncPolicy::EveryBatch => self.sync()?,
            SyncPolicy::Interval(d) if self.last_sync.elapsed() >= d => self.sync()?,
            SyncPolicy::Interval(_) | SyncPolicy::Never => !self.dirty,
        };
        if self.len >= self.options.segment_bytes {
            self.roll()?;
        }
        Ok(synced)
    }

    /// Forces written records to stable storage.
    pub fn sync(&mut self) -> Result<bool, JournalError> {
        if self.dirty {
            self.file.sync_data().map_err(io_err(&self.path))?;
            self.dirty = false;
        }
        self.last_sync = Instant::now();
        Ok(true)
    }

    fn roll(&mut self) -> Result<(), JournalError> {
        self.sync()?;
        let (file, path) = new_segment(&self.dir, self.next_seq)?;
        self.file = file;
        self.path = path;
        self.len = SEGMENT_HEADER as u64;
        Ok(())
    }
}

/// A reader that follows a journal while it is written: each [`Follower::poll`] returns the
/// records appended since the last, up to a sequence id the caller knows to be complete (the
/// writer's committed id), so a record being written is never read half-way.
pub struct Follower {
    dir: PathBuf,
    next_seq: u64,
    /// The open segment: its first sequence id, the file and the unread bytes.
    segment: Option<(u64, File, PathBuf)>,
    buf: Vec<u8>,
    start: usize,
    scratch: Box<[u8]>,
}

impl Follower {
    /// A follower of the journal in `dir`, starting at sequence id 1.
    pub fn new(dir: &Path) -> Follower {
        Self::at(dir, 1)
    }

    /// A follower of the journal in `dir`, starting at sequence id `next_seq`.
    pub fn at(dir: &Path, next_seq: u64) -> Follower {
        Follower {
            dir: dir.to_path_buf(),
            next_seq,
            segment: None,
            buf: Vec::with_capacity(1 << 20),
            start: 0,
            scratch: vec![0u8; 1 << 20].into_boxed_slice(),
        }
    }

    /// The sequence id of the next record to read.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Reads records in order while their sequence ids are at most `up_to`, at most `max` of
    /// them, calling `f` for each; returns how many were read.
    pub fn poll(
        &mut self,
        up_to: u64,
        max: usize,
        mut f: impl FnMut(&Record),
    ) -> Result<usize, JournalError> {
        let mut n = 0;
        while n < max && self.next_seq <= up_to {
            match self.next_record()? {
                Some(r) => {
                    f(&r);
                    n += 1;
                }
                None => break,
            }
        }
        Ok(n)
    }

    fn next_record(&mut self) -> Result<Option<Record>, JournalError> {
        loop {
            if self.segment.is_none() && !self.open_segment()? {
                return Ok(None);
            }
            let avail = &self.buf[self.start..];
            let complete = avail.len() >= RECORD_HEADER && {
                let len = u32::from_le_bytes(avail[0..4].try_into().unwrap_or_default()) as usize;
                avail.len() >= RECORD_HEADER + len.min(MAX_COMMAND_LEN + 1)
            };
            if complete {
                let (first, _, path) = self.segment.as_ref().expect("open segment");
                let corrupt = |reason: String| JournalError::Corrupt {
                    segment: path.clone(),
                    offset: 0,
                    reason: format!("following from sequence {first}: {reason}"),
                };
                let (r, len) = decode_record(avail).map_err(corrupt)?;
                if r.seq != self.next_seq {
                    return Err(corrupt(format!(
                        "sequence {} where {} was expected",
                        r.seq, self.next_seq
                    )));
                }
                self.start += len;
                self.next_seq += 1;
                return Ok(Some(r));
            }
            if !self.read_more()? {
                // The segment is exhausted: the writer rolled over if the next one exists.
                if self.buf.len() == self.start && self.next_segment_exists()? {
                    self.segment = None;
                    continue;
                }
                return Ok(None);
            }
        }
    }

    /// Reads what the writer appended to the open segment; false when nothing was new.
    fn read_more(&mut self) -> Result<bool, JournalError> {
        use std::io::Read;
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let (_, file, path) = self.segment.as_mut().expect("open segment");
        // Read into a scratch block: growing `buf` by a zeroed MiB per poll cost more than
        // the read itself when the follower is caught up and polls often.
        let got = file.read(&mut self.scratch[..]).map_err(io_err(path))?;
        self.buf.extend_from_slice(&self.scratch[..got]);
        Ok(got > 0)
    }

    fn next_segment_exists(&self) -> Result<bool, JournalError> {
        let open = self.segment.as_ref().map_or(0, |(first, _, _)| *first);
        Ok(open < self.next_seq
            && segments(&self.dir)?
                .iter()
                .any(|(first, _)| *first == self.next_seq))
    }

    /// Opens the segment holding `next_seq` and skips to it; false when there is none yet.
    fn open_segment(&mut self) -> Result<bool, JournalError> {
        let segs = segments(&self.dir)?;
        let Some((first, path)) = segs.iter().rev().find(|(f, _)| *f <= self.next_seq) else {
            return Ok(false);
        };
        let mut file = File::open(path).map_err(io_err(path))?;
        let mut header = [0u8; SEGMENT_HEADER];
        {
            use std::io::Read;
            if file.read_exact(&mut header).is_err() {
                return Ok(false);
            }
        }
        if &header[..8] != MAGIC {
            return Err(JournalError::Corrupt {
                segment: path.clone(),
                offset: 0,
                reason: "not a journal segment".into(),
            });
        }
        self.buf.clear();
        self.start = 0;
        self.segment = Some((*first, file, path.clone()));
        // Records before `next_seq` in this segment were read before (or are being skipped).
        while let Some(r) = self.peek_skip()? {
            if r >= self.next_seq {
                break;
            }
        }
        Ok(true)
    }

    /// Skips one record below `next_seq`; returns the sequence id of the record now first.
    fn peek_skip(&mut self) -> Result<Option<u64>, JournalError> {
        loop {
            let avail = &self.buf[self.start..];
            if avail.len() >= RECORD_HEADER {
                let len = u32::from_le_bytes(avail[0..4].try_into().unwrap_or_default()) as usize;
                let seq = u64::from_le_bytes(avail[8..16].try_into().unwrap_or_default());
                if seq >= self.next_seq {
                    return Ok(Some(seq));
                }
                if avail.len() >= RECORD_HEADER + len {
                    self.start += RECORD_HEADER + len;
                    continue;
                }
            }
            if !self.read_more()? {
                return Ok(None);
            }
        }
    }
}

fn new_segment(dir: &Path, first: u64) -> Result<(File, PathBuf), JournalError> {
    let path = dir.join(format!("{first:020}{SUFFIX}"));
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(io_err(&path))?;
    let mut header = [0u8; SEGMENT_HEADER];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_le_bytes());
    file.write_all(&header).map_err(io_err(&path))?;
    file.sync_all().map_err(io_err(&path))?;
    // The new file's name must be durable too.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    let file = OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(io_err(&path))?;
    Ok((file, path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Asset, OpenTrading, Transfer};
    use crate::types::AccountId;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("journal-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn cmd(i: u64) -> Command {
        if i % 7 == 0 {
            Command::OpenTrading(OpenTrading {
                trading_day: 20260101 + i as u32,
            })
        } else {
            Command::Deposit(Transfer {
                account: AccountId(i as u32),
                asset: Asset::Cash,
                amount: i as i64 * 100,
            })
        }
    }

    fn write(dir: &Path, n: u64, options: JournalOptions) {
        let (mut j, _) = Journal::open(dir, options, |_| {}).unwrap();
        for i in 0..n {
            let seq = j.append(1_000 + i as i64, &cmd(i));
            if seq % 10 == 0 {
                j.commit().unwrap();
            }
        }
        j.commit().unwrap();
    }

    fn read(dir: &Path) -> Vec<Record> {
        let mut v = Vec::new();
        scan(dir, false, |r| v.push(*r)).unwrap();
        v
    }

    #[test]
    fn records_come_back_in_order_across_segments_and_reopens() {
        let dir = tmp("order");
        let small = JournalOptions {
            sync: SyncPolicy::Never,
            segment_bytes: 1_000,
        };
        write(&dir, 100, small);
        write(&dir, 50, small);
        assert!(segments(&dir).unwrap().len() > 5);
        let all = read(&dir);
        assert_eq!(all.len(), 150);
        for (i, r) in all.iter().enumerate() {
            assert_eq!(r.seq, i as u64 + 1);
            let k = if i < 100 { i as u64 } else { i as u64 - 100 };
            assert_eq!(r.command, cmd(k));
            assert_eq!(r.timestamp, 1_000 + k as i64);
        }
    }

    #[test]
    fn replay_from_a_sequence_id_skips_the_segments_before_it() {
        let dir = tmp("from");
        let small = JournalOptions {
            sync: SyncPolicy::Never,
            segment_bytes: 1_000,
        };
        write(&dir, 150, small);
        let segs = segments(&dir).unwrap();
        for from in [1, 2, 37, 100, 150, 151] {
            let mut seen = Vec::new();
            let (mut j, rec) = Journal::open_from(&dir, small, from, |r| seen.push(r.seq)).unwrap();
            assert_eq!(seen, (from..=150).collect::<Vec<_>>());
            assert_eq!(rec.next_seq, 151);
            let holding = segs.iter().rposition(|(f, _)| *f <= from).unwrap();
            assert_eq!(rec.skipped_segments, holding);
            assert_eq!(rec.segments, segs.len() - holding);
            assert_eq!(j.next_seq(), 151);
            drop(j.commit());
        }
        // Beyond the end, or before the first segment left: an error, not a silent gap.
        assert!(Journal::open_from(&dir, small, 152, |_| {}).is_err());
        fs::remove_file(&segs[0].1).unwrap();
        assert!(scan_from(&dir, false, 1, |_| {}).is_err());
        assert_eq!(
            scan_from(&dir, false, segs[1].0, |_| {}).unwrap().next_seq,
            151
        );
        // Syncing through any sequence id finds its segment; an empty journal has none.
        sync_through(&dir, 120).unwrap();
        sync_through(&tmp("empty"), 1).unwrap();
        // A follower can start anywhere too.
        let mut f = Follower::at(&dir, 120);
        let mut got = Vec::new();
        f.poll(u64::MAX, 1000, |r| got.push(r.seq)).unwrap();
        assert_eq!(got, (120..=150).collect::<Vec<_>>());
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_appends_continue_after_it() {
        let dir = tmp("torn");
        write(&dir, 20, JournalOptions::default());
        let (_, path) = segments(&dir).unwrap().pop().unwrap();
        let full = fs::metadata(&path).unwrap().len();
        // Every possible cut inside the last record is a torn write.
        let last_len = {
            let data = fs::read(&path).unwrap();
            let mut off = SEGMENT_HEADER;
            let mut last = 0;
            while off < data.len() {
                let (_, l) = decode_record(&data[off..]).unwrap();
                last = l;
                off += l;
            }
            last as u64
        };
        for cut in 1..last_len {
            let data = fs::read(&path).unwrap();
            let torn = tmp("torn-copy");
            fs::create_dir_all(&torn).unwrap();
            let p = torn.join(path.file_name().unwrap());
            fs::write(&p, &data[..(full - cut) as usize]).unwrap();
            let mut n = 0;
            let (mut j, rec) = Journal::open(&torn, JournalOptions::default(), |_| n += 1).unwrap();
            assert_eq!((n, rec.truncated_bytes), (19, last_len - cut));
            assert_eq!(j.append(5, &cmd(1)), 20);
            j.commit().unwrap();
            assert_eq!(read(&torn).len(), 20);
        }
    }

    #[test]
    fn corruption_before_the_tail_stops_recovery() {
        let dir = tmp("corrupt");
        write(&dir, 20, JournalOptions::default());
        let (_, path) = segments(&dir).unwrap().pop().unwrap();
        let mut data = fs::read(&path).unwrap();
        data[SEGMENT_HEADER + RECORD_HEADER + 3] ^= 0x40;
        fs::write(&path, &data).unwrap();
        match Journal::open(&dir, JournalOptions::default(), |_| {}) {
            Err(JournalError::Corrupt { offset, reason, .. }) => {
                assert_eq!(offset, SEGMENT_HEADER as u64);
                assert!(reason.contains("CRC"), "{reason}");
            }
            other => panic!("expected corruption, got {:?}", other.map(|(_, r)| r)),
        }
        // The file was left as it was for the operator.
        assert_eq!(fs::read(&path).unwrap(), data);
    }

    #[test]
    fn a_missing_segment_is_a_gap() {
        let dir = tmp("gap");
        write(
            &dir,
            100,
            JournalOptions {
                sync: SyncPolicy::Never,
                segment_bytes: 1_000,
            },
        );
        let segs = segments(&dir).unwrap();
        fs::remove_file(&segs[1].1).unwrap();
        let err = scan(&dir, false, |_| {}).unwrap_err();
        assert!(err.to_string().contains("expected"), "{err}");
    }

    #[test]
    fn a_follower_reads_records_as_they_are_committed_across_segments() {
        let dir = tmp("follow");
        let options = JournalOptions {
            sync: SyncPolicy::Never,
            segment_bytes: 300,
        };
        let (mut j, _) = Journal::open(&dir, options, |_| {}).unwrap();
        let mut follower = Follower::new(&dir);
        let mut got = Vec::new();
        assert_eq!(follower.poll(u64::MAX, 100, |r| got.push(*r)).unwrap(), 0);
        for round in 0..5u64 {
            for i in 0..7 {
                j.append(i as i64, &cmd(round * 7 + i));
            }
            // Appended but not committed: nothing to read yet.
            follower.poll(u64::MAX, 100, |r| got.push(*r)).unwrap();
            assert_eq!(got.len() as u64, round * 7);
            j.commit().unwrap();
            let committed = j.next_seq() - 1;
            // Reads stop at the limit the writer gives, then go on from there.
            follower.poll(committed - 3, 100, |r| got.push(*r)).unwrap();
            assert_eq!(got.len() as u64, committed - 3);
            follower.poll(committed, 2, |r| got.push(*r)).unwrap();
            follower.poll(committed, 100, |r| got.push(*r)).unwrap();
            assert_eq!(got.len() as u64, committed);
        }
        assert!(
            segments(&dir).unwrap().len() > 2,
            "the test crosses segments"
        );
        assert_eq!(got, read(&dir));
        // A new follower reads the same from the start.
        let mut again = Vec::new();
        Follower::new(&dir)
            .poll(u64::MAX, usize::MAX, |r| again.push(*r))
            .unwrap();
        assert_eq!(again, got);
    }

    #[test]
    fn sync_policies_parse() {
        assert_eq!("batch".parse(), Ok(SyncPolicy::EveryBatch));
        assert_eq!("none".parse(), Ok(SyncPolicy::Never));
        assert_eq!(
            "10ms".parse(),
            Ok(SyncPolicy::Interval(Duration::from_millis(10)))
        );
        assert_eq!(
            "2s".parse(),
            Ok(SyncPolicy::Interval(Duration::from_secs(2)))
        );
        assert!("often".parse::<SyncPolicy>().is_err());
    }
}
