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
//! Segments can be preallocated ([`JournalOptions::preallocate`]): a background thread fills
//! the next segment with zeros ahead of time (`next.spare`), and the writer renames it into
//! place when it rolls over. Records then overwrite blocks that already exist, so a sync has no
//! file size or block allocation to commit, only the data (on ext4 about 0.14 ms instead of
//! 0.2 ms for a few KiB). The zeros are as many bytes as the records; they are written
//! [`PACED_WRITE`] bytes at a time so that the writer's syncs never queue behind many of them
//! on the device (see BENCHMARKS.md). Either way, a
//! segment's data ends at the end of the file or where only zeros follow: no record starts with
//! a zero length.
//!
//! Recovery reads every segment. Sequence ids must run without a gap. In the last segment, an
//! invalid record followed by nothing but zeros (or nothing) is a torn write from a crash: it
//! is cut off. Any other invalid record is corruption, reported with its place, and recovery
//! stops there: nothing is skipped silently.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::command::{Command, MAX_COMMAND_LEN};

const MAGIC: &[u8; 8] = b"EXJOURNL";
const VERSION: u32 = 1;
const SEGMENT_HEADER: usize = 16;
/// Bytes before a record's payload.
pub const RECORD_HEADER: usize = 24;
const SUFFIX: &str = ".journal";
/// The next segment, zero-filled and synced, waiting to be renamed into place.
const SPARE: &str = "next.spare";
/// The spare while it is being filled (a crash leaves it half-filled; it is filled anew).
const SPARE_TMP: &str = "next.spare.tmp";
/// The size of the first spare a journal prepares; each next one doubles, up to the segment
/// size, so a short-lived journal (a test, a demo) zero-fills little.
const FIRST_SPARE: u64 = 16 << 20;

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
    /// Whether segments are zero-filled ahead of time by a background thread.
    pub preallocate: bool,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            sync: SyncPolicy::EveryBatch,
            segment_bytes: 256 << 20,
            preallocate: false,
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
    /// Byte offset after the last record of the last segment: where the next append goes.
    pub end_offset: u64,
}

/// The segments of a journal directory, in sequence order.
pub fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, JournalError> {
    numbered_files(dir, SUFFIX).map_err(io_err(dir))
}

/// The sequence id the journal in `dir` starts at: 1, or later once it was [`trim`]med.
pub fn first_seq(dir: &Path) -> Result<u64, JournalError> {
    Ok(segments(dir)?.first().map_or(1, |(first, _)| *first))
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

/// How many bytes of `b` come before its trailing zeros.
fn written_len(b: &[u8]) -> usize {
    // Block by block from the end, with a branch-free OR per block: a preallocated segment's
    // tail can be hundreds of MiB of zeros.
    let mut end = b.len();
    for block in b.rchunks(4096) {
        if block.iter().fold(0u8, |a, &x| a | x) != 0 {
            return end - block.len() + block.iter().rposition(|&x| x != 0).map_or(0, |i| i + 1);
        }
        end -= block.len();
    }
    0
}

/// A segment read a block at a time: a scan holds a few MiB of it, never the whole file (a
/// preallocated segment is mostly zeros until it fills).
struct Window<'p> {
    file: File,
    path: &'p Path,
    size: u64,
    buf: Vec<u8>,
    /// The file offset of `buf[0]`.
    at: u64,
}

impl<'p> Window<'p> {
    const BLOCK: usize = 4 << 20;

    fn open(path: &'p Path) -> Result<Window<'p>, JournalError> {
        let file = File::open(path).map_err(io_err(path))?;
        let size = file.metadata().map_err(io_err(path))?.len();
        Ok(Window {
            file,
            path,
            size,
            buf: Vec::new(),
            at: 0,
        })
    }

    /// The bytes from `off` on: at least `want` of them, unless the file ends first.
    fn from(&mut self, off: u64, want: usize) -> Result<&[u8], JournalError> {
        let held = self.at + self.buf.len() as u64;
        let needed = off.saturating_add(want as u64).min(self.size);
        if off < self.at || needed > held {
            let n = (Self::BLOCK.max(want) as u64).min(self.size.saturating_sub(off));
            self.buf.resize(n as usize, 0);
            self.file
                .read_exact_at(&mut self.buf, off)
                .map_err(io_err(self.path))?;
            self.at = off;
        }
        Ok(&self.buf[(off - self.at) as usize..])
    }

    /// The offset after the last non-zero byte from `off` on (`off` itself when only zeros
    /// follow).
    fn written_end(&mut self, off: u64) -> Result<u64, JournalError> {
        let (mut end, mut pos) = (off, off);
        while pos < self.size {
            let b = self.from(pos, Self::BLOCK)?;
            let n = b.len().min(Self::BLOCK);
            let w = written_len(&b[..n]);
            if w > 0 {
                end = pos + w as u64;
            }
            pos += n as u64;
        }
        Ok(end)
    }
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
        let mut data = Window::open(path)?;
        let size = data.size;
        let corrupt = |offset: u64, reason: String| JournalError::Corrupt {
            segment: path.clone(),
            offset,
            reason,
        };
        let header = data.from(0, SEGMENT_HEADER)?;
        if header.len() < SEGMENT_HEADER {
            if last && MAGIC.starts_with(&header[..header.len().min(8)]) {
                // Crashed while creating the segment.
                rec.truncated_bytes += header.len() as u64;
                if repair {
                    fs::remove_file(path).map_err(io_err(path))?;
                }
                expected.get_or_insert(*first);
                break;
            }
            return Err(corrupt(0, "segment header cut short".into()));
        }
        if &header[..8] != MAGIC {
            return Err(corrupt(0, "not a journal segment".into()));
        }
        let version = u32::from_le_bytes(header[8..12].try_into().unwrap_or_default());
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
        let mut off = SEGMENT_HEADER as u64;
        while off < size {
            // Records before `from` are framed and CRC-checked, not decoded: a snapshot
            // holds their effect.
            let b = data.from(off, RECORD_HEADER + MAX_COMMAND_LEN)?;
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
                    off += len as u64;
                }
                Err(reason) => {
                    let end = data.written_end(off)?;
                    if end == off {
                        // Only zeros follow: the preallocated rest of the segment.
                        break;
                    }
                    let mut valid_after = false;
                    for p in off + 1..end {
                        if decode_record(data.from(p, RECORD_HEADER + MAX_COMMAND_LEN)?).is_ok() {
                            valid_after = true;
                            break;
                        }
                    }
                    if !last || valid_after {
                        return Err(corrupt(off, reason));
                    }
                    rec.truncated_bytes = end - off;
                    if repair {
                        // Zeros over the torn record, so the segment keeps its blocks.
                        let file = OpenOptions::new()
                            .write(true)
                            .open(path)
                            .map_err(io_err(path))?;
                        file.write_all_at(&vec![0; (end - off) as usize], off)
                            .and_then(|()| file.sync_data())
                            .map_err(io_err(path))?;
                    }
                    break;
                }
            }
        }
        rec.end_offset = off;
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

/// How much background writers (the spare segment's zeros, snapshots, the session stores' logs)
/// put on the device at a time. The journal's syncs wait behind whatever the device has
/// queued, and on a virtual disk a sync also flushes what was written before it: with 1 MiB
/// pieces, 0.7-1.0% of the engine's syncs at 50,000 orders/s took over 0.5 ms; with 128 KiB,
/// 0.15-0.35% (see BENCHMARKS.md).
pub const PACED_WRITE: usize = 128 << 10;

/// Asks the kernel to write a byte range of a file to disk now (`sync_file_range`) and, with
/// `wait`, waits until it is written. Not a sync (the file's metadata and the device's cache
/// are left to `fsync`): it spreads writing out so that it does not pile up in the page cache
/// and reach the device all at once, ahead of the journal's syncs. A failure (or another
/// system) only leaves the writing to the kernel's own timing.
pub fn write_back(f: &File, from: u64, to: u64, wait: bool) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let flags = if wait {
            libc::SYNC_FILE_RANGE_WAIT_BEFORE
                | libc::SYNC_FILE_RANGE_WRITE
                | libc::SYNC_FILE_RANGE_WAIT_AFTER
        } else {
            libc::SYNC_FILE_RANGE_WRITE
        };
        // SAFETY: a plain system call on an open descriptor; it reads no memory of ours.
        unsafe {
            libc::sync_file_range(
                f.as_raw_fd(),
                from as libc::off64_t,
                to.saturating_sub(from) as libc::off64_t,
                flags,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (f, from, to, wait);
}

/// What [`trim`] took out of a journal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trimmed {
    /// The segments taken out, oldest first (their paths before the move).
    pub segments: Vec<PathBuf>,
    /// Their size in bytes.
    pub bytes: u64,
    /// The first sequence id the journal holds afterwards.
    pub first_seq: u64,
}

/// Takes out of the journal in `dir` the segments whose records all lie at or before sequence
/// id `through`: deleted, or moved into `archive` (created if needed) where an operator can
/// keep or restore them. The last segment always stays (the writer appends to it), and so
/// does every segment holding a record after `through`, so a replay from `through + 1` still
/// finds all it needs. Oldest first, so an interrupted trim leaves a journal without a gap.
/// With `dry_run`, only says what it would take.
pub fn trim(
    dir: &Path,
    through: u64,
    archive: Option<&Path>,
    dry_run: bool,
) -> Result<Trimmed, JournalError> {
    let segs = segments(dir)?;
    let mut out = Trimmed {
        first_seq: segs.first().map_or(1, |(first, _)| *first),
        ..Trimmed::default()
    };
    // A segment ends where the next one starts.
    let removable = segs
        .windows(2)
        .take_while(|w| w[1].0 <= through.saturating_add(1))
        .count();
    if let Some(a) = archive
        && removable > 0
        && !dry_run
    {
        fs::create_dir_all(a).map_err(io_err(a))?;
    }
    for (i, (_, path)) in segs[..removable].iter().enumerate() {
        out.bytes += fs::metadata(path).map_err(io_err(path))?.len();
        if !dry_run {
            match archive {
                Some(a) => move_file(path, &a.join(path.file_name().unwrap_or_default()))?,
                None => fs::remove_file(path).map_err(io_err(path))?,
            }
        }
        out.segments.push(path.clone());
        out.first_seq = segs[i + 1].0;
    }
    if removable > 0 && !dry_run {
        if let Some(a) = archive {
            sync_dir(a)?;
        }
        sync_dir(dir)?;
    }
    Ok(out)
}

/// Moves a file, copying (and syncing the copy) when `to` is on another file system.
fn move_file(from: &Path, to: &Path) -> Result<(), JournalError> {
    if to.exists() {
        return Err(JournalError::Io {
            path: to.to_path_buf(),
            source: io::Error::new(io::ErrorKind::AlreadyExists, "already in the archive"),
        });
    }
    match fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
            fs::copy(from, to).map_err(io_err(to))?;
            File::open(to)
                .and_then(|f| f.sync_all())
                .map_err(io_err(to))?;
            fs::remove_file(from).map_err(io_err(from))
        }
        Err(e) => Err(io_err(from)(e)),
    }
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
    /// Where the next commit writes: the segment's length in records.
    len: u64,
    /// The segment file's size: beyond `len` it holds preallocated zeros.
    allocated: u64,
    next_seq: u64,
    buf: Vec<u8>,
    last_sync: Instant,
    dirty: bool,
    spares: Option<Spares>,
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
                    .write(true)
                    .open(path)
                    .map_err(io_err(path))?;
                (file, path.clone(), recovery.end_offset)
            }
            None => {
                let (file, path) = new_segment(dir, next)?;
                (file, path, SEGMENT_HEADER as u64)
            }
        };
        let allocated = file.metadata().map_err(io_err(&path))?.len();
        let spares = options.preallocate.then(|| Spares::start(dir));
        let mut journal = Journal {
            dir: dir.to_path_buf(),
            options,
            file,
            path,
            len,
            allocated,
            next_seq: next,
            buf: Vec::with_capacity(1 << 20),
            last_sync: Instant::now(),
            dirty: false,
            spares,
        };
        journal.plan_spare();
        Ok((journal, recovery))
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
        let wrote = !self.buf.is_empty();
        if wrote {
            self.file
                .write_all_at(&self.buf, self.len)
                .map_err(io_err(&self.path))?;
            self.len += self.buf.len() as u64;
            self.allocated = self.allocated.max(self.len);
            self.buf.clear();
            self.dirty = true;
        }
        let synced = match self.options.sync {
            SyncPolicy::EveryBatch => self.sync()?,
            SyncPolicy::Interval(d) if self.last_sync.elapsed() >= d => self.sync()?,
            SyncPolicy::Interval(_) | SyncPolicy::Never => !self.dirty,
        };
        self.plan_spare();
        // A spare is taken once the preallocated room is nearly used (a commit may write past
        // it, onto new blocks), or at once when this segment was not preallocated.
        let nearly_full = self.len >= self.allocated - self.allocated / 16;
        if wrote && nearly_full && self.spare_ready() {
            self.roll_to_spare()?;
        } else if self.len >= self.options.segment_bytes {
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

    /// Asks for the next spare once this segment is half used: twice this one's size (at
    /// least the first spare's), at most a segment.
    fn plan_spare(&mut self) {
        let size = (self.allocated * 2)
            .max(FIRST_SPARE)
            .min(self.options.segment_bytes)
            .max(SEGMENT_HEADER as u64 + 1);
        let half_used = self.len >= self.allocated / 2;
        if let Some(spares) = &mut self.spares
            && half_used
        {
            spares.request(size);
        }
    }

    /// Blocks until the spare asked for is ready (tests: makes rolling into it certain).
    #[cfg(test)]
    fn wait_spare(&mut self) {
        if let Some(s) = &mut self.spares {
            s.settle(true);
        }
    }

    fn spare_ready(&mut self) -> bool {
        self.spares.as_mut().is_some_and(|s| s.ready().is_some())
    }

    fn roll(&mut self) -> Result<(), JournalError> {
        self.sync()?;
        let (file, path) = new_segment(&self.dir, self.next_seq)?;
        self.switch(file, path)
    }

    /// Starts the next segment in the spare: a rename, no write.
    fn roll_to_spare(&mut self) -> Result<(), JournalError> {
        self.sync()?;
        let spare = self.dir.join(SPARE);
        let path = segment_path(&self.dir, self.next_seq);
        if let Some(s) = &mut self.spares {
            s.taken();
        }
        fs::rename(&spare, &path).map_err(io_err(&spare))?;
        sync_dir(&self.dir)?;
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        self.switch(file, path)
    }

    fn switch(&mut self, file: File, path: PathBuf) -> Result<(), JournalError> {
        if let Some(s) = &mut self.spares {
            s.rolled();
        }
        self.allocated = file.metadata().map_err(io_err(&path))?.len();
        self.file = file;
        self.path = path;
        self.len = SEGMENT_HEADER as u64;
        Ok(())
    }
}

/// The background thread that zero-fills the next segment (see the module's documentation).
struct Spares {
    requests: Option<mpsc::Sender<u64>>,
    done: mpsc::Receiver<u64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// The size asked for and not yet reported, if any.
    pending: bool,
    /// The size of the spare on disk, if one is ready.
    ready: Option<u64>,
    /// The last fill failed (a full disk, say): no new one until the writer rolls over.
    failed: bool,
}

impl Spares {
    fn start(dir: &Path) -> Spares {
        let (requests, rx) = mpsc::channel::<u64>();
        let (tx, done) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        // A spare left by the previous run is whole (it is renamed into place only once
        // filled and synced); a half-filled one is not.
        let _ = fs::remove_file(dir.join(SPARE_TMP));
        let ready = fs::metadata(dir.join(SPARE))
            .ok()
            .map(|m| m.len())
            .filter(|&n| n > SEGMENT_HEADER as u64);
        let (d, flag) = (dir.to_path_buf(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("journal-spare".into())
            .spawn(move || {
                for size in rx {
                    match fill_spare(&d, size, &flag) {
                        Ok(true) => {
                            if tx.send(size).is_err() {
                                return;
                            }
                        }
                        Ok(false) => return,
                        // Without a spare the writer makes plain segments, as without
                        // preallocation; it asks again after its next roll.
                        Err(e) => {
                            tracing::warn!(error = %e, "journal: the next segment could not be preallocated");
                            let _ = fs::remove_file(d.join(SPARE_TMP));
                            let _ = tx.send(0);
                        }
                    }
                }
            })
            .ok();
        Spares {
            requests: Some(requests),
            done,
            stop,
            thread,
            pending: false,
            ready,
            failed: false,
        }
    }

    fn request(&mut self, size: u64) {
        if self.pending || self.ready.is_some() || self.failed {
            return;
        }
        if let Some(r) = &self.requests
            && r.send(size).is_ok()
        {
            self.pending = true;
        }
    }

    fn ready(&mut self) -> Option<u64> {
        self.settle(false)
    }

    /// Takes the thread's answer, if it has given one (with `wait`, waits for it).
    fn settle(&mut self, wait: bool) -> Option<u64> {
        if self.pending {
            let answer = if wait {
                self.done.recv().ok()
            } else {
                self.done.try_recv().ok()
            };
            if let Some(size) = answer {
                self.pending = false;
                self.ready = (size > 0).then_some(size);
                self.failed = size == 0;
            }
        }
        self.ready
    }

    fn taken(&mut self) {
        self.ready = None;
    }

    fn rolled(&mut self) {
        self.failed = false;
    }
}

impl Drop for Spares {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.requests = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Writes a segment header and zeros up to `size` bytes into the spare's temporary file,
/// syncs it and renames it into place; false when stopped first.
fn fill_spare(dir: &Path, size: u64, stop: &AtomicBool) -> io::Result<bool> {
    let tmp = dir.join(SPARE_TMP);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&tmp)?;
    file.write_all(&segment_header())?;
    let zeros = vec![0u8; PACED_WRITE];
    let mut at = SEGMENT_HEADER as u64;
    while at < size {
        if stop.load(Ordering::Acquire) {
            return Ok(false);
        }
        let n = (size - at).min(PACED_WRITE as u64) as usize;
        file.write_all(&zeros[..n])?;
        // A piece at a time, on the device before the next: the writer's syncs queue behind
        // at most one piece, never behind the whole fill. Not synced one by one (a device
        // flush each); the `sync_all` below makes the whole file durable.
        write_back(&file, at, at + n as u64, true);
        at += n as u64;
        std::thread::sleep(Duration::from_millis(1));
    }
    file.sync_all()?;
    fs::rename(&tmp, dir.join(SPARE))?;
    Ok(true)
}

/// A reader that follows a journal while it is written: each [`Follower::poll`] returns the
/// records appended since the last, up to a sequence id the caller knows to be complete (the
/// writer's committed id), so a record being written is never read half-way.
pub struct Follower {
    dir: PathBuf,
    next_seq: u64,
    /// The open segment: its first sequence id, the file and its path.
    segment: Option<(u64, File, PathBuf)>,
    /// Bytes read from the segment, `start` of them consumed.
    buf: Vec<u8>,
    start: usize,
    /// The segment offset of `buf[0]`.
    buf_at: u64,
    scratch: Box<[u8]>,
    /// Bytes of the records returned so far.
    consumed: u64,
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
            buf: Vec::with_capacity(1 << 16),
            start: 0,
            buf_at: 0,
            scratch: vec![0u8; 1 << 16].into_boxed_slice(),
            consumed: 0,
        }
    }

    /// Bytes of the records this follower has returned (headers included).
    pub fn bytes_read(&self) -> u64 {
        self.consumed
    }

    /// The sequence id of the next record to read.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Reads records in order while their sequence ids are at most `up_to`, at most `max` of
    /// them, calling `f` for each; returns how many were read. Every record up to `up_to`
    /// must be wholly written: one that is not is reported as corruption.
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
        // Whether the bytes at `start` were read since this call began: bytes read before
        // may be the zeros (or part of a record) that were there before the writer wrote it.
        let mut fresh = false;
        loop {
            if self.segment.is_none() && !self.open_segment()? {
                return Ok(None);
            }
            let avail = &self.buf[self.start..];
            let len = match avail.get(0..4) {
                Some(b) => u32::from_le_bytes(b.try_into().unwrap_or_default()) as usize,
                None => 0,
            };
            let complete = len > 0 && avail.len() >= RECORD_HEADER + len.min(MAX_COMMAND_LEN + 1);
            if complete {
                let decoded = decode_record(avail).and_then(|(r, len)| {
                    if r.seq == self.next_seq {
                        Ok((r, len))
                    } else {
                        Err(format!(
                            "sequence {} where {} was expected",
                            r.seq, self.next_seq
                        ))
                    }
                });
                match decoded {
                    Ok((r, len)) => {
                        self.start += len;
                        self.consumed += len as u64;
                        self.next_seq += 1;
                        return Ok(Some(r));
                    }
                    Err(reason) if fresh => {
                        let (first, _, path) = self.segment.as_ref().expect("open segment");
                        return Err(JournalError::Corrupt {
                            segment: path.clone(),
                            offset: self.buf_at + self.start as u64,
                            reason: format!("following from sequence {first}: {reason}"),
                        });
                    }
                    Err(_) => {}
                }
            } else if fresh {
                // Nothing more is written here: the writer rolled over if the next segment
                // exists.
                if self.next_segment_exists()? {
                    self.segment = None;
                    continue;
                }
                return Ok(None);
            }
            self.refill()?;
            fresh = true;
        }
    }

    /// Drops what is buffered from `start` on and reads the segment again from there.
    fn refill(&mut self) -> Result<(), JournalError> {
        self.buf_at += self.start as u64;
        self.buf.clear();
        self.start = 0;
        let (_, file, path) = self.segment.as_ref().expect("open segment");
        let got = file
            .read_at(&mut self.scratch[..], self.buf_at)
            .map_err(io_err(path))?;
        self.buf.extend_from_slice(&self.scratch[..got]);
        Ok(())
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
        let file = File::open(path).map_err(io_err(path))?;
        let mut header = [0u8; SEGMENT_HEADER];
        if file.read_exact_at(&mut header, 0).is_err() {
            return Ok(false);
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
        self.buf_at = SEGMENT_HEADER as u64;
        self.segment = Some((*first, file, path.clone()));
        self.skip_before()?;
        Ok(true)
    }

    /// Skips the records before `next_seq` (read before, or held by a snapshot); stops at the
    /// first record from `next_seq` on or where nothing more is written.
    fn skip_before(&mut self) -> Result<(), JournalError> {
        loop {
            let avail = &self.buf[self.start..];
            if avail.len() >= RECORD_HEADER {
                let len = u32::from_le_bytes(avail[0..4].try_into().unwrap_or_default()) as usize;
                let seq = u64::from_le_bytes(avail[8..16].try_into().unwrap_or_default());
                if len == 0 || seq >= self.next_seq {
                    return Ok(());
                }
                if avail.len() >= RECORD_HEADER + len {
                    self.start += RECORD_HEADER + len;
                    continue;
                }
            }
            let had = avail.len();
            self.refill()?;
            if self.buf.len() <= had {
                return Ok(());
            }
        }
    }
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}{SUFFIX}"))
}

fn segment_header() -> [u8; SEGMENT_HEADER] {
    let mut header = [0u8; SEGMENT_HEADER];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_le_bytes());
    header
}

/// Makes a directory's entries (a new or renamed file) durable.
fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// A new segment without preallocation, for when no spare is ready.
fn new_segment(dir: &Path, first: u64) -> Result<(File, PathBuf), JournalError> {
    let path = segment_path(dir, first);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(io_err(&path))?;
    file.write_all(&segment_header()).map_err(io_err(&path))?;
    file.sync_all().map_err(io_err(&path))?;
    // The new file's name must be durable too.
    sync_dir(dir)?;
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

    /// Options without syncs (tests need no durability), segments of `segment_bytes`.
    fn unsynced(segment_bytes: u64, preallocate: bool) -> JournalOptions {
        JournalOptions {
            sync: SyncPolicy::Never,
            segment_bytes,
            preallocate,
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
        let small = unsynced(1_000, true);
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
        let small = unsynced(1_000, true);
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
            // What is cut is the torn record's bytes up to its last non-zero one.
            let kept = &data[(full - last_len) as usize..(full - cut) as usize];
            let written = kept.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            assert_eq!((n, rec.truncated_bytes), (19, written as u64));
            assert_eq!(j.append(5, &cmd(1)), 20);
            j.commit().unwrap();
            assert_eq!(read(&torn).len(), 20);
        }
    }

    /// Segments are read a block at a time: records across block boundaries, a torn tail and
    /// a corrupt record past the first block are found as in a small one.
    #[test]
    fn a_segment_larger_than_a_read_block_is_read_whole() {
        let dir = tmp("big");
        let n = 200_000;
        write(&dir, n, unsynced(1 << 30, false));
        let (_, path) = segments(&dir).unwrap().pop().unwrap();
        let data = fs::read(&path).unwrap();
        assert!(
            data.len() > Window::BLOCK + (1 << 20),
            "{} bytes",
            data.len()
        );
        let all = read(&dir);
        assert_eq!(all.len() as u64, n);
        assert!(all.iter().enumerate().all(|(i, r)| r.seq == i as u64 + 1));
        // The offset of the first record starting past the first block.
        let mut off = SEGMENT_HEADER;
        while off <= Window::BLOCK {
            off += decode_record(&data[off..]).unwrap().1;
        }
        // Half a record at the end: a torn tail, cut off.
        let torn = tmp("big-torn");
        fs::create_dir_all(&torn).unwrap();
        let mut cut = data.clone();
        cut.extend_from_slice(&data[off..off + 20]);
        fs::write(torn.join(path.file_name().unwrap()), &cut).unwrap();
        let rec = scan(&torn, true, |_| {}).unwrap();
        let written = data[off..off + 20].iter().rposition(|&b| b != 0).unwrap() + 1;
        assert_eq!((rec.next_seq, rec.truncated_bytes), (n + 1, written as u64));
        assert_eq!(rec.end_offset, data.len() as u64);
        // A bad byte in a record past the first block: corruption, at that record.
        let mut bad = data.clone();
        bad[off + RECORD_HEADER] ^= 0x01;
        fs::write(&path, &bad).unwrap();
        match scan(&dir, false, |_| {}) {
            Err(JournalError::Corrupt { offset, .. }) => assert_eq!(offset, off as u64),
            other => panic!("expected corruption, got {other:?}"),
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
    fn trim_takes_whole_segments_through_a_sequence_id_and_a_replay_after_it_still_works() {
        let dir = tmp("trim");
        write(&dir, 300, unsynced(1_000, false));
        let segs = segments(&dir).unwrap();
        assert!(segs.len() >= 5, "the test needs several segments");
        // Through a record inside the third segment: the first two go, the third stays.
        let through = segs[2].0 + 1;
        let dry = trim(&dir, through, None, true).unwrap();
        assert_eq!(segments(&dir).unwrap(), segs, "a dry run changes nothing");
        let archive = dir.with_extension("archive");
        let _ = fs::remove_dir_all(&archive);
        let t = trim(&dir, through, Some(&archive), false).unwrap();
        assert_eq!(t, dry);
        assert_eq!(t.first_seq, segs[2].0);
        assert_eq!(t.segments, vec![segs[0].1.clone(), segs[1].1.clone()]);
        assert_eq!(segments(&dir).unwrap(), segs[2..].to_vec());
        let archived = segments(&archive).unwrap();
        assert_eq!(
            archived.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            vec![segs[0].0, segs[1].0]
        );
        assert_eq!(
            t.bytes,
            archived
                .iter()
                .map(|(_, p)| fs::metadata(p).unwrap().len())
                .sum::<u64>()
        );
        // A replay from after `through` reads everything it needs; one from the start is told
        // where the journal now begins.
        let mut seqs = Vec::new();
        scan_from(&dir, false, through + 1, |r| seqs.push(r.seq)).unwrap();
        assert_eq!(seqs, (through + 1..=300).collect::<Vec<_>>());
        let err = scan(&dir, false, |_| {}).unwrap_err();
        assert!(err.to_string().contains("starts at sequence"), "{err}");
        // The journal opens and appends after a trim.
        let (mut j, _) =
            Journal::open_from(&dir, unsynced(1_000, false), through + 1, |_| {}).unwrap();
        assert_eq!(j.append(5, &cmd(1)), 301);
        j.commit().unwrap();
        // Trimming past the end never takes the segment being written.
        let t = trim(&dir, u64::MAX, None, false).unwrap();
        assert_eq!(segments(&dir).unwrap().len(), 1);
        assert_eq!(t.first_seq, segments(&dir).unwrap()[0].0);
        // Nothing before the first segment's end: nothing to take.
        assert_eq!(trim(&dir, 0, None, false).unwrap().segments.len(), 0);
        let _ = fs::remove_dir_all(&archive);
    }

    #[test]
    fn a_missing_segment_is_a_gap() {
        let dir = tmp("gap");
        write(&dir, 100, unsynced(1_000, true));
        let segs = segments(&dir).unwrap();
        fs::remove_file(&segs[1].1).unwrap();
        let err = scan(&dir, false, |_| {}).unwrap_err();
        assert!(err.to_string().contains("expected"), "{err}");
    }

    /// Follows `j` while 40 rounds of 7 records are written, polling before and after each
    /// commit; `take_spares` waits for each spare so that every roll takes one.
    fn follow_while_writing(dir: &Path, mut j: Journal, take_spares: bool) -> Journal {
        let mut follower = Follower::new(dir);
        let mut got = Vec::new();
        follower.poll(u64::MAX, 100, |r| got.push(*r)).unwrap();
        assert_eq!(got.len() as u64, j.next_seq() - 1);
        for round in 0..40u64 {
            let before = got.len();
            for i in 0..7 {
                j.append(i as i64, &cmd(round * 7 + i));
            }
            // Appended but not committed: nothing to read yet (in a preallocated segment,
            // zeros: the next poll must read that place again).
            follower.poll(u64::MAX, 100, |r| got.push(*r)).unwrap();
            assert_eq!(got.len(), before);
            if take_spares {
                j.wait_spare();
            }
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
            segments(dir).unwrap().len() > 5,
            "the test crosses segments"
        );
        assert_eq!(got, read(dir));
        // A new follower reads the same from the start.
        let mut again = Vec::new();
        Follower::new(dir)
            .poll(u64::MAX, usize::MAX, |r| again.push(*r))
            .unwrap();
        assert_eq!(again, got);
        j
    }

    #[test]
    fn a_follower_reads_records_as_they_are_committed_across_segments() {
        let dir = tmp("follow");
        let options = unsynced(300, false);
        let (j, _) = Journal::open(&dir, options, |_| {}).unwrap();
        follow_while_writing(&dir, j, false);
    }

    /// A journal whose records from the 11th on go to preallocated segments of `segment`
    /// bytes: the first segment is a plain one, rolled over as soon as the spare is ready.
    fn preallocated(dir: &Path, segment: u64) -> Journal {
        let options = unsynced(segment, true);
        let (mut j, _) = Journal::open(dir, options, |_| {}).unwrap();
        for i in 0..10 {
            j.append(i as i64, &cmd(i));
        }
        j.wait_spare();
        j.commit().unwrap();
        assert_eq!(segments(dir).unwrap().len(), 2, "rolled into the spare");
        j
    }

    fn file_len(p: &Path) -> u64 {
        fs::metadata(p).unwrap().len()
    }

    #[test]
    fn preallocated_segments_are_written_in_place_and_read_back_across_reopens() {
        let dir = tmp("prealloc");
        let segment = 4 << 10;
        let mut j = preallocated(&dir, segment);
        for i in 10..60u64 {
            j.append(i as i64, &cmd(i));
            if i % 5 == 0 {
                j.commit().unwrap();
            }
        }
        j.commit().unwrap();
        drop(j);
        let (_, last) = segments(&dir).unwrap().pop().unwrap();
        // Written into the zeros, not appended: the file kept its size.
        assert_eq!(file_len(&last), segment);
        let options = unsynced(segment, true);
        let mut seen = 0;
        let (mut j, rec) = Journal::open(&dir, options, |_| seen += 1).unwrap();
        assert_eq!((seen, rec.next_seq, rec.truncated_bytes), (60, 61, 0));
        assert!(rec.end_offset < segment);
        // Enough to fill several segments, each taken from a spare.
        for i in 60..600u64 {
            j.append(i as i64, &cmd(i));
            if i % 10 == 0 {
                j.wait_spare();
                j.commit().unwrap();
            }
        }
        j.commit().unwrap();
        drop(j);
        let segs = segments(&dir).unwrap();
        assert!(segs.len() > 4, "{} segments", segs.len());
        for (_, p) in &segs[1..] {
            assert_eq!(file_len(p), segment, "{}", p.display());
        }
        let all = read(&dir);
        assert_eq!(all.len(), 600);
        for (i, r) in all.iter().enumerate() {
            assert_eq!((r.seq, r.command), (i as u64 + 1, cmd(i as u64)));
        }
        // A plain journal reopened with preallocation (and back) goes on where it ended.
        let plain = tmp("prealloc-plain");
        for preallocate in [false, true, false] {
            write(&plain, 30, unsynced(segment, preallocate));
        }
        assert_eq!(read(&plain).len(), 90);
    }

    /// The states a kill -9 can leave around a roll into a spare, each recovered from.
    #[test]
    fn a_crash_before_during_or_after_a_roll_into_a_spare_loses_nothing() {
        let dir = tmp("prealloc-crash");
        let segment = 4 << 10;
        let reopen = |dir: &Path| {
            let mut n = 0;
            let (j, rec) = Journal::open(dir, unsynced(segment, true), |_| n += 1).unwrap();
            assert_eq!((n, rec.truncated_bytes), (rec.next_seq - 1, 0));
            j
        };
        let mut j = preallocated(&dir, segment);
        // Killed with a spare filled and not yet taken (asked for at half the segment): the
        // next run takes it.
        let mut i = 10;
        while j.len < j.allocated / 2 {
            j.append(1, &cmd(i));
            j.commit().unwrap();
            i += 1;
        }
        j.wait_spare();
        assert!(dir.join(SPARE).exists());
        drop(j);
        let mut j = reopen(&dir);
        assert!(j.spare_ready(), "the spare left behind is used");
        // Killed right after the rename: the new segment holds nothing but zeros.
        let segs = segments(&dir).unwrap().len();
        fs::rename(dir.join(SPARE), segment_path(&dir, j.next_seq())).unwrap();
        drop(j);
        let mut j = reopen(&dir);
        assert_eq!(segments(&dir).unwrap().len(), segs + 1);
        assert_eq!(j.append(2, &cmd(i)), i + 1);
        j.commit().unwrap();
        i += 1;
        drop(j);
        // Killed while filling: the half-filled spare is thrown away, never renamed in.
        fs::write(dir.join(SPARE_TMP), b"EXJOURNL partial").unwrap();
        let mut j = reopen(&dir);
        assert!(!dir.join(SPARE_TMP).exists() || j.spares.as_ref().is_some_and(|s| s.pending));
        for i in i..200u64 {
            j.append(i as i64, &cmd(i));
            j.wait_spare();
            j.commit().unwrap();
        }
        drop(j);
        let all = read(&dir);
        assert_eq!(all.len(), 200);
        for (i, r) in all.iter().enumerate() {
            assert_eq!((r.seq, r.command), (i as u64 + 1, cmd(i as u64)));
        }
    }

    #[test]
    fn without_spares_the_journal_writes_plain_segments() {
        let dir = tmp("prealloc-fails");
        fs::create_dir_all(dir.join(SPARE_TMP)).unwrap();
        let (mut j, _) = Journal::open(&dir, unsynced(500, true), |_| {}).unwrap();
        for i in 0..100 {
            j.append(i as i64, &cmd(i));
            j.wait_spare();
            j.commit().unwrap();
        }
        drop(j);
        let segs = segments(&dir).unwrap();
        assert!(segs.len() > 5);
        assert!(
            segs.iter().all(|(_, p)| file_len(p) < 600),
            "plain segments"
        );
        assert!(!dir.join(SPARE).exists());
        assert_eq!(read(&dir).len(), 100);
    }

    #[test]
    fn a_torn_record_in_a_preallocated_segment_is_zeroed_and_overwritten() {
        let dir = tmp("prealloc-torn");
        let mut j = preallocated(&dir, 8 << 10);
        for i in 10..20u64 {
            j.append(i as i64, &cmd(i));
        }
        j.commit().unwrap();
        drop(j);
        let (_, path) = segments(&dir).unwrap().pop().unwrap();
        let size = file_len(&path);
        let end = scan(&dir, false, |_| {}).unwrap().end_offset;
        // Half of a record written where the next one would go, zeros after it.
        let mut torn = Vec::new();
        let mut tail = Journal {
            buf: Vec::new(),
            ..preallocated(&tmp("prealloc-torn-src"), 8 << 10)
        };
        tail.append(7, &cmd(3));
        torn.extend_from_slice(&tail.buf[..tail.buf.len() / 2]);
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&torn, end).unwrap();
        drop(f);
        let mut n = 0;
        let (mut j, rec) = Journal::open(&dir, JournalOptions::default(), |_| n += 1).unwrap();
        let written = torn.iter().rposition(|&b| b != 0).unwrap() + 1;
        assert_eq!(
            (n, rec.truncated_bytes, rec.end_offset),
            (20, written as u64, end)
        );
        let data = fs::read(&path).unwrap();
        assert_eq!(data.len() as u64, size);
        assert!(data[end as usize..].iter().all(|&b| b == 0), "zeroed");
        assert_eq!(j.append(9, &cmd(20)), 21);
        j.commit().unwrap();
        drop(j);
        assert_eq!(read(&dir).len(), 21);

        // A bad record with zeros after it is torn only in the last segment; before a valid
        // record it is corruption.
        let mut data = fs::read(&path).unwrap();
        data[SEGMENT_HEADER + 2] ^= 0x10;
        fs::write(&path, &data).unwrap();
        let err = scan(&dir, false, |_| {}).unwrap_err();
        assert!(
            matches!(err, JournalError::Corrupt { offset, .. } if offset == SEGMENT_HEADER as u64)
        );
    }

    #[test]
    fn a_follower_reads_preallocated_segments_where_it_saw_zeros_before() {
        let dir = tmp("prealloc-follow");
        let mut j = follow_while_writing(&dir, preallocated(&dir, 2 << 10), true);
        // A record that is not (wholly) there where the caller says it is: an error.
        let mut early = Follower::at(&dir, j.next_seq());
        assert_eq!(early.poll(u64::MAX, 10, |_| {}).unwrap(), 0);
        let (_, path) = segments(&dir).unwrap().pop().unwrap();
        let end = scan(&dir, false, |_| {}).unwrap().end_offset;
        assert!(end < file_len(&path), "zeros after the last record");
        j.append(1, &cmd(1));
        let half = j.buf.len() / 2;
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&j.buf[..half], end).unwrap();
        assert_eq!(early.poll(j.next_seq() - 2, 10, |_| {}).unwrap(), 0);
        assert!(early.poll(u64::MAX, 10, |_| {}).is_err());
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
