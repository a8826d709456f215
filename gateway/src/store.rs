//! Session stores: sequence numbers and sent messages, in memory or on disk.
//!
//! The file store keeps, per session, a `seqnums` file (rewritten in place on every change, or
//! for the sender number ahead in blocks, see [`FileStore::with_sender_block`]) and an
//! append-only `messages` log of `[seq u64][len u32][bytes][crc32c u32]` records. Writes
//! go straight to the kernel, so they survive a kill -9 of the process; `fsync` makes them
//! survive a power loss too, at a cost per message. On open, a torn record at the tail (a crash
//! in the middle of a write) is cut off; the index of the log is rebuilt in memory.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Persistent state of one session.
pub trait MessageStore: Send {
    /// Sequence number of the next message we send.
    fn next_sender(&self) -> u64;
    /// Sequence number we expect next from the counterparty.
    fn next_target(&self) -> u64;
    /// Sets the next sender sequence number.
    fn set_next_sender(&mut self, n: u64) -> io::Result<()>;
    /// Sets the next target sequence number.
    fn set_next_target(&mut self, n: u64) -> io::Result<()>;
    /// Stores a sent message under its sequence number. A store may hold it in memory until
    /// [`MessageStore::flush`]; the session flushes before any message leaves for the socket.
    fn save(&mut self, seq: u64, msg: &[u8]) -> io::Result<()>;
    /// Writes the messages saved since the last flush (one write for all of them).
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Sent messages with sequence numbers in `begin..=end`, in order.
    fn range(&mut self, begin: u64, end: u64) -> io::Result<Vec<(u64, Vec<u8>)>>;
    /// Forgets all messages and sets both sequence numbers to 1.
    fn reset(&mut self) -> io::Result<()>;
}

/// A store that lives only as long as the process.
#[derive(Debug)]
pub struct MemoryStore {
    sender: u64,
    target: u64,
    messages: BTreeMap<u64, Vec<u8>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            sender: 1,
            target: 1,
            messages: BTreeMap::new(),
        }
    }
}

impl MessageStore for MemoryStore {
    fn next_sender(&self) -> u64 {
        self.sender
    }
    fn next_target(&self) -> u64 {
        self.target
    }
    fn set_next_sender(&mut self, n: u64) -> io::Result<()> {
        self.sender = n;
        Ok(())
    }
    fn set_next_target(&mut self, n: u64) -> io::Result<()> {
        self.target = n;
        Ok(())
    }
    fn save(&mut self, seq: u64, msg: &[u8]) -> io::Result<()> {
        self.messages.insert(seq, msg.to_vec());
        Ok(())
    }
    fn range(&mut self, begin: u64, end: u64) -> io::Result<Vec<(u64, Vec<u8>)>> {
        if begin > end {
            return Ok(Vec::new());
        }
        Ok(self
            .messages
            .range(begin..=end)
            .map(|(k, v)| (*k, v.clone()))
            .collect())
    }
    fn reset(&mut self) -> io::Result<()> {
        *self = MemoryStore::default();
        Ok(())
    }
}

/// A store on disk that survives restarts and kill -9.
pub struct FileStore {
    sender: u64,
    target: u64,
    log: File,
    /// Offset and length of each stored message's bytes in the log.
    index: LogIndex,
    /// Log offset after the last saved message, the ones not yet flushed included.
    end: u64,
    /// Saved records not yet written to the log.
    pending: Vec<u8>,
    /// Log offset up to which the kernel was asked to start writing the log to disk.
    written_back: u64,
    fsync: bool,
    seqnums: File,
    /// The `seqnums` file mapped, for updates without a system call (see [`SeqnumsMap`]).
    map: Option<SeqnumsMap>,
    /// The numbers the file holds: (sender, target).
    written: (u64, u64),
    /// Sender numbers are written this far ahead (0: exactly), see [`FileStore::with_sender_block`].
    sender_block: u64,
    /// The sender number the file holds: at least `sender`.
    sender_written: u64,
}

const RECORD_OVERHEAD: u64 = 8 + 4 + 4;

/// Where each stored message's bytes lie in the log, by sequence number, sorted. Numbers only
/// grow while a session runs, so a save appends (a tree insert per outgoing report showed in
/// the report thread's samples); a range is two binary searches.
#[derive(Default)]
struct LogIndex(Vec<(u64, u64, u32)>);

impl LogIndex {
    /// Records (or replaces) where message `seq` lies.
    fn insert(&mut self, seq: u64, offset: u64, len: u32) {
        match self.0.last() {
            Some(&(last, ..)) if last >= seq => match self.0.binary_search_by_key(&seq, |e| e.0) {
                Ok(i) => self.0[i] = (seq, offset, len),
                Err(i) => self.0.insert(i, (seq, offset, len)),
            },
            _ => self.0.push((seq, offset, len)),
        }
    }

    /// The highest stored sequence number.
    fn last(&self) -> Option<u64> {
        self.0.last().map(|e| e.0)
    }

    /// The stored messages from `begin` to `end` inclusive.
    fn range(&self, begin: u64, end: u64) -> &[(u64, u64, u32)] {
        let lo = self.0.partition_point(|e| e.0 < begin);
        let hi = self.0.partition_point(|e| e.0 <= end).max(lo);
        &self.0[lo..hi]
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

impl FileStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path, fsync: bool) -> io::Result<FileStore> {
        std::fs::create_dir_all(dir)?;
        let (sender, target) = match std::fs::read_to_string(dir.join("seqnums")) {
            Ok(s) => {
                let mut it = s.split_whitespace().map(str::parse::<u64>);
                match (it.next(), it.next()) {
                    (Some(Ok(a)), Some(Ok(b))) if a > 0 && b > 0 => (a, b),
                    _ => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!(
                                "{}: corrupt sequence numbers {s:?}",
                                dir.join("seqnums").display()
                            ),
                        ));
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => (1, 1),
            Err(e) => return Err(e),
        };
        let mut log = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(dir.join("messages"))?;
        let mut bytes = Vec::new();
        log.seek(SeekFrom::Start(0))?;
        log.read_to_end(&mut bytes)?;
        let mut index = LogIndex::default();
        let mut pos = 0usize;
        while pos + RECORD_OVERHEAD as usize <= bytes.len() {
            let seq = u64::from_le_bytes(bytes[pos..pos + 8].try_into().expect("8 bytes"));
            let len =
                u32::from_le_bytes(bytes[pos + 8..pos + 12].try_into().expect("4 bytes")) as usize;
            let end = pos + 12 + len + 4;
            if end > bytes.len() {
                break;
            }
            let crc = u32::from_le_bytes(bytes[pos + 12 + len..end].try_into().expect("4 bytes"));
            let body = &bytes[pos + 12..pos + 12 + len];
            // Logs written before the switch to CRC32C carry a CRC-32: still read.
            if crc32c::crc32c(body) != crc && legacy_crc32(body) != crc {
                break;
            }
            index.insert(seq, (pos + 12) as u64, len as u32);
            pos = end;
        }
        if pos < bytes.len() {
            // A torn write at the tail: drop it so new records follow the last good one.
            log.set_len(pos as u64)?;
        }
        // A message stored under a sequence number proves it was used, whatever the
        // sequence file says.
        let sender = index.last().map_or(sender, |s| sender.max(s + 1));
        let seqnums = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("seqnums"))?;
        let mut store = FileStore {
            sender,
            target,
            log,
            index,
            end: pos as u64,
            written_back: pos as u64,
            pending: Vec::new(),
            fsync,
            seqnums,
            map: None,
            written: (0, 0),
            sender_block: 0,
            sender_written: sender,
        };
        store.write_seqnums()?;
        // With fsync every change goes through write + fdatasync anyway; without it, a
        // store into the file's page cache survives a kill -9 just as a write does.
        if !fsync {
            store.map = SeqnumsMap::new(&store.seqnums);
        }
        Ok(store)
    }

    /// Writes the sender sequence number ahead in blocks of `block` instead of at every
    /// message, for sessions that keep no messages (market data), where a write per message
    /// would be most of the cost of sending it. A kill -9 then resumes at the end of the
    /// block: a gap the counterparty's ResendRequest turns into a gap fill, never a number
    /// used twice. Dropping the store writes the exact number.
    pub fn with_sender_block(mut self, block: u64) -> FileStore {
        self.sender_block = block;
        self
    }

    /// Brings the `seqnums` file up to date: through the mapping when only one number changed
    /// (no system call: this runs for every inbound message), else one fixed-width write of
    /// less than a disk sector, so it lands whole (a file replaced per message would cost a
    /// directory update per message).
    fn write_seqnums(&mut self) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let now = (self.sender_written, self.target);
        if let Some(map) = &self.map {
            let stored = match (now.0 != self.written.0, now.1 != self.written.1) {
                (false, false) => true,
                (true, false) => map.store(0, self.written.0, now.0),
                (false, true) => map.store(21, self.written.1, now.1),
                (true, true) => false,
            };
            if stored {
                self.written = now;
                return Ok(());
            }
        }
        let mut text = [b'0'; SEQNUMS_LEN];
        for (field, v) in [(0..20, now.0), (21..41, now.1)] {
            digits(&mut text[field], v);
        }
        text[20] = b' ';
        text[41] = b'\n';
        self.seqnums.write_all_at(&text, 0)?;
        if self.fsync {
            self.seqnums.sync_data()?;
        }
        self.written = now;
        Ok(())
    }
}

/// Length of the `seqnums` text: `"{:020} {:020}\n"`, sender then target.
const SEQNUMS_LEN: usize = 42;

/// Writes `v` as decimal digits filling `out`, zero-padded (by hand: `format!` padding goes a
/// character at a time).
fn digits(out: &mut [u8], mut v: u64) {
    for b in out.iter_mut().rev() {
        *b = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// The `seqnums` file mapped shared: a number is updated by storing its last 16 digits with
/// one 16-byte store instruction. A process stops between instructions, so a kill -9 leaves
/// the old number or the new one, never a mix; and a shared file mapping's page is the page
/// cache's, which outlives the process exactly as a `write` does.
struct SeqnumsMap {
    ptr: std::ptr::NonNull<u8>,
}

// SAFETY: the mapping is owned by one store and only written through `&self` methods of it;
// the store is moved between threads, never shared.
unsafe impl Send for SeqnumsMap {}

impl SeqnumsMap {
    /// Maps the file (written whole just before); `None` where the single-store update is not
    /// available, so every change is written.
    fn new(file: &File) -> Option<SeqnumsMap> {
        if !cfg!(target_arch = "x86_64") {
            return None;
        }
        use std::os::fd::AsRawFd;
        // SAFETY: a fresh shared mapping of the first SEQNUMS_LEN bytes of an open file of at
        // least that length; it is unmapped on drop.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                SEQNUMS_LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        std::ptr::NonNull::new(p.cast()).map(|ptr| SeqnumsMap { ptr })
    }

    /// Replaces `old` by `new` in the 20-digit field at `at`; false when its first 4 digits
    /// would change (numbers from 10^16 up: the caller writes the file instead).
    fn store(&self, at: usize, old: u64, new: u64) -> bool {
        const LIMIT: u64 = 10_000_000_000_000_000;
        if old >= LIMIT || new >= LIMIT {
            return false;
        }
        let mut d = [0u8; 16];
        digits(&mut d, new);
        #[cfg(not(target_arch = "x86_64"))]
        return false;
        // SAFETY: at + 4 + 16 <= SEQNUMS_LEN, inside the mapping; both numbers are below
        // LIMIT, so the field's first 4 digits are "0000" before and after.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            let dst = self.ptr.as_ptr().add(at + 4);
            std::arch::asm!(
                "movdqu xmm0, [{src}]",
                "movdqu [{dst}], xmm0",
                src = in(reg) d.as_ptr(),
                dst = in(reg) dst,
                out("xmm0") _,
                options(nostack, preserves_flags),
            );
        }
        true
    }
}

impl Drop for SeqnumsMap {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), SEQNUMS_LEN);
        }
    }
}

impl MessageStore for FileStore {
    fn next_sender(&self) -> u64 {
        self.sender
    }
    fn next_target(&self) -> u64 {
        self.target
    }
    fn set_next_sender(&mut self, n: u64) -> io::Result<()> {
        self.sender = n;
        // The message just stored under n - 1 tells as much on open: one write per message.
        let logged = self.index.last().is_some_and(|s| s + 1 == n);
        if !logged && (self.sender_block == 0 || n > self.sender_written) {
            self.sender_written = n + self.sender_block;
            self.write_seqnums()?;
        }
        Ok(())
    }
    fn set_next_target(&mut self, n: u64) -> io::Result<()> {
        self.target = n;
        self.write_seqnums()
    }
    fn save(&mut self, seq: u64, msg: &[u8]) -> io::Result<()> {
        let rec = &mut self.pending;
        rec.extend_from_slice(&seq.to_le_bytes());
        rec.extend_from_slice(&(msg.len() as u32).to_le_bytes());
        rec.extend_from_slice(msg);
        rec.extend_from_slice(&crc32c::crc32c(msg).to_le_bytes());
        self.index.insert(seq, self.end + 12, msg.len() as u32);
        self.end += msg.len() as u64 + RECORD_OVERHEAD;
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.log.write_all(&self.pending)?;
        self.pending.clear();
        if self.fsync {
            self.log.sync_data()?;
        } else if self.end.saturating_sub(self.written_back) >= WRITEBACK_BYTES {
            engine::journal::write_back(&self.log, self.written_back, self.end, false);
            self.written_back = self.end;
        }
        Ok(())
    }
    fn range(&mut self, begin: u64, end: u64) -> io::Result<Vec<(u64, Vec<u8>)>> {
        self.flush()?;
        if begin > end {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let wanted = self.index.range(begin, end).to_vec();
        for (seq, off, len) in wanted {
            let mut buf = vec![0u8; len as usize];
            read_at(&mut self.log, off, &mut buf)?;
            out.push((seq, buf));
        }
        Ok(out)
    }
    fn reset(&mut self) -> io::Result<()> {
        self.pending.clear();
        self.log.set_len(0)?;
        self.index.clear();
        self.end = 0;
        self.written_back = 0;
        self.sender = 1;
        self.sender_written = 1;
        self.target = 1;
        self.write_seqnums()
    }
}

impl Drop for FileStore {
    fn drop(&mut self) {
        let _ = self.flush();
        if self.sender_written != self.sender {
            self.sender_written = self.sender;
            let _ = self.write_seqnums();
        }
    }
}

/// Log bytes after which their writing to disk is started, without waiting for it.
///
/// Otherwise the logs' pages stay dirty until they are 30 s old (the kernel's default expiry)
/// and then go out all at once: at 215,000 orders/s the stores write 60 MB/s, and the
/// gigabytes flushed together held the journal's syncs behind them for 0.1-0.6 s each, for
/// six seconds. Written a piece at a time, they join the device steadily instead.
const WRITEBACK_BYTES: u64 = engine::journal::PACED_WRITE as u64;

fn read_at(f: &mut File, off: u64, buf: &mut [u8]) -> io::Result<()> {
    f.seek(SeekFrom::Start(off))?;
    f.read_exact(buf)
}

/// CRC-32 (IEEE), bitwise, as older logs carry it: only computed for a record whose CRC32C
/// does not match (a bitwise CRC of every message made opening a day's log take seconds).
fn legacy_crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("fixstore-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn file_store_survives_reopen_and_cuts_a_torn_tail() {
        let dir = tmp("reopen");
        {
            let mut s = FileStore::open(&dir, false).unwrap();
            s.save(1, b"one").unwrap();
            s.save(2, b"two").unwrap();
            s.set_next_sender(3).unwrap();
            s.set_next_target(7).unwrap();
        }
        // A crash in the middle of writing message 3.
        {
            let mut f = OpenOptions::new()
                .append(true)
                .open(dir.join("messages"))
                .unwrap();
            f.write_all(&3u64.to_le_bytes()).unwrap();
            f.write_all(&[5, 0]).unwrap();
        }
        let mut s = FileStore::open(&dir, false).unwrap();
        assert_eq!((s.next_sender(), s.next_target()), (3, 7));
        assert_eq!(
            s.range(1, 5).unwrap(),
            vec![(1, b"one".to_vec()), (2, b"two".to_vec())]
        );
        // Saved but not flushed (so never sent: the session flushes before sending), then a
        // crash: the number is free again.
        s.save(3, b"three").unwrap();
        s.set_next_sender(4).unwrap();
        std::mem::forget(s);
        let mut s = FileStore::open(&dir, false).unwrap();
        assert_eq!(s.next_sender(), 3);
        assert_eq!(s.range(3, 3).unwrap(), vec![]);
        s.save(3, b"three").unwrap();
        s.set_next_sender(4).unwrap();
        s.flush().unwrap();
        std::mem::forget(s);
        let mut s = FileStore::open(&dir, false).unwrap();
        assert_eq!(s.next_sender(), 4);
        assert_eq!(
            s.range(2, 3).unwrap(),
            vec![(2, b"two".to_vec()), (3, b"three".to_vec())]
        );
        // A jump no stored message accounts for (a SequenceReset) is written at once.
        s.set_next_sender(10).unwrap();
        std::mem::forget(s);
        let mut s = FileStore::open(&dir, false).unwrap();
        assert_eq!(s.next_sender(), 10);
        s.reset().unwrap();
        assert_eq!((s.next_sender(), s.next_target()), (1, 1));
        assert!(s.range(1, 10).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A store writing its sender number ahead never resumes below a number it handed out:
    /// after a crash (the store is never dropped) it resumes within a block above it, after a
    /// clean close exactly at it; resets and target numbers are written at once.
    #[test]
    fn a_sender_block_never_reuses_a_number() {
        let dir = tmp("block");
        let open = || FileStore::open(&dir, false).unwrap().with_sender_block(16);
        let mut s = open();
        for n in 2..=40 {
            s.set_next_sender(n).unwrap();
        }
        s.set_next_target(7).unwrap();
        std::mem::forget(s);
        let mut s = open();
        assert!(
            (40..=40 + 16).contains(&s.next_sender()),
            "{}",
            s.next_sender()
        );
        assert_eq!(s.next_target(), 7);
        s.set_next_sender(100).unwrap();
        drop(s);
        let mut s = open();
        assert_eq!(s.next_sender(), 100);
        s.reset().unwrap();
        std::mem::forget(s);
        let s = open();
        assert_eq!((s.next_sender(), s.next_target()), (1, 1));
    }

    /// Numbers updated through the mapping are in the file at once, for a reader and for a
    /// store reopened after a crash (the store is never dropped), on both sides of the
    /// 16-digit limit of the single-store update.
    #[test]
    fn sequence_numbers_are_in_the_file_after_every_change() {
        let dir = tmp("mapped");
        let file = || std::fs::read_to_string(dir.join("seqnums")).unwrap();
        let mut s = FileStore::open(&dir, false).unwrap();
        assert!(cfg!(not(target_arch = "x86_64")) || s.map.is_some());
        for n in [2, 9, 10, 12_345, 99_999_999] {
            s.set_next_target(n).unwrap();
            assert_eq!(file(), format!("{:020} {n:020}\n", 1));
        }
        s.set_next_sender(40).unwrap();
        assert_eq!(file(), format!("{:020} {:020}\n", 40, 99_999_999));
        let big = 10_000_000_000_000_000 + 7;
        s.set_next_target(big).unwrap();
        assert_eq!(file(), format!("{:020} {big:020}\n", 40));
        s.set_next_target(5).unwrap();
        assert_eq!(file(), format!("{:020} {:020}\n", 40, 5));
        s.set_next_target(6).unwrap();
        std::mem::forget(s);
        let s = FileStore::open(&dir, false).unwrap();
        assert_eq!((s.next_sender(), s.next_target()), (40, 6));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn logs_with_the_older_crc_still_open_and_a_bad_crc_is_a_torn_tail() {
        let dir = tmp("legacy");
        std::fs::create_dir_all(&dir).unwrap();
        let mut log = Vec::new();
        for (seq, msg, crc) in [
            (1u64, &b"old"[..], legacy_crc32(b"old")),
            (2, b"new", crc32c::crc32c(b"new")),
            (3, b"bad", 0xDEAD_BEEF),
        ] {
            log.extend_from_slice(&seq.to_le_bytes());
            log.extend_from_slice(&(msg.len() as u32).to_le_bytes());
            log.extend_from_slice(msg);
            log.extend_from_slice(&crc.to_le_bytes());
        }
        std::fs::write(dir.join("messages"), &log).unwrap();
        let mut s = FileStore::open(&dir, false).unwrap();
        assert_eq!(
            s.range(1, 3).unwrap(),
            vec![(1, b"old".to_vec()), (2, b"new".to_vec())]
        );
        assert_eq!(s.next_sender(), 3);
    }

    /// The log index keeps sequence order whatever the order of saves, a later save of a number
    /// replaces the earlier, and a range holds exactly the numbers inside it.
    #[test]
    fn the_log_index_is_a_sorted_map() {
        let mut ix = LogIndex::default();
        for (seq, off) in [(5, 50), (7, 70), (6, 60), (2, 20), (7, 71), (9, 90)] {
            ix.insert(seq, off, 1);
        }
        let seqs = |r: &[(u64, u64, u32)]| r.iter().map(|e| (e.0, e.1)).collect::<Vec<_>>();
        assert_eq!(
            seqs(ix.range(0, 100)),
            [(2, 20), (5, 50), (6, 60), (7, 71), (9, 90)]
        );
        assert_eq!(seqs(ix.range(3, 7)), [(5, 50), (6, 60), (7, 71)]);
        assert_eq!(seqs(ix.range(8, 8)), []);
        assert_eq!(seqs(ix.range(9, 2)), []);
        assert_eq!(ix.last(), Some(9));
        ix.clear();
        assert_eq!(ix.last(), None);
    }

    #[test]
    fn crc_matches_the_standard_check_value() {
        assert_eq!(legacy_crc32(b"123456789"), 0xCBF4_3926);
    }
}
