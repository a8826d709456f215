//! The day's ClOrdID index: an open-addressing table of 128-bit keys.
//!
//! Every ClOrdID used on a session today is looked up once per order, in a table that holds
//! the whole day's orders and so lives far outside the CPU caches. A general-purpose map costs
//! two cache misses per lookup (control bytes, then the entry); this table's keys are already
//! uniform 128-bit hashes, so the low bits pick the slot and linear probing usually finds the
//! answer in the first cache line: one miss.

use bytemuck::Zeroable;

use crate::types::{ClOrdId, OrderId, SessionId};

/// 128-bit key of a (session, ClOrdID) pair; never all zero (zero marks an empty slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ClKey(u64, u64);

impl ClKey {
    /// A placeholder key for commands without a ClOrdID; never looked up.
    pub const ZERO: ClKey = ClKey(0, 0);

    /// The key of a ClOrdID on a session.
    pub fn new(session: SessionId, cl_ord_id: &ClOrdId) -> ClKey {
        // The session is the seed: hashing the ClOrdID where it lies, rather than a copy with
        // the session in front, avoids a store-forwarding stall on every command.
        let h = xxhash_rust::xxh3::xxh3_128_with_seed(cl_ord_id.raw(), u64::from(session.0));
        let (lo, hi) = (h as u64, (h >> 64) as u64);
        ClKey(if lo == 0 && hi == 0 { 1 } else { lo }, hi)
    }

    /// A key from [`ClKey::to_bytes`]; `None` for the all-zero bytes (no key has them).
    pub fn from_bytes(b: [u8; 16]) -> Option<ClKey> {
        let lo = u64::from_le_bytes(b[..8].try_into().unwrap_or_default());
        let hi = u64::from_le_bytes(b[8..].try_into().unwrap_or_default());
        (lo != 0 || hi != 0).then_some(ClKey(lo, hi))
    }

    /// The key as bytes, for stable hashing.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.0.to_le_bytes());
        b[8..].copy_from_slice(&self.1.to_le_bytes());
        b
    }
}

#[derive(Clone, Copy, Default, Zeroable)]
struct Entry {
    lo: u64,
    hi: u64,
    order: u64,
}

impl Entry {
    fn is_empty(&self) -> bool {
        self.lo == 0 && self.hi == 0
    }
}

/// Result of a lookup: the order a key maps to, or where it would be inserted.
pub(crate) enum Probe {
    /// The key is present.
    Found,
    /// The key is absent; pass this to [`ClOrdIndex::put`].
    Vacant(usize),
}

/// Old slots moved into a grown table by each probe. A growth starts at half load with
/// `n / 2` keys in `n` slots and the grown table is full at `n` keys, so at least two slots
/// per probe finish in time; eight finish after an eighth of the table's size in probes.
const MOVED_PER_PROBE: usize = 8;

/// Set of the day's (session, ClOrdID) keys with the order each names.
///
/// Growing does not stop the engine: the table doubles, and the old one stays beside it
/// while each probe moves a few of its slots across, so lookups look in the new table and
/// then in what remains of the old. (Rehashing it all at once stalled the engine thread for
/// 0.3 s at 2 million keys and 0.6 s at 4 million, every order behind it waiting.)
pub(crate) struct ClOrdIndex {
    entries: Vec<Entry>,
    /// After a growth, the previous table and how many of its slots (from the first) have
    /// been moved into `entries`; the rest still hold their keys there.
    old: Option<(Vec<Entry>, usize)>,
    /// The table the next growth will move into (when tables are populated): allocated and
    /// faulted in by a thread of its own, started at three eighths load.
    next: Option<std::thread::JoinHandle<Vec<Entry>>>,
    len: usize,
    /// Whether tables are faulted in as they are allocated (see [`ClOrdIndex::populate`]).
    populated: bool,
}

impl std::fmt::Debug for ClOrdIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClOrdIndex")
            .field("len", &self.len)
            .field("capacity", &self.entries.len())
            .field(
                "moving",
                &self.old.as_ref().map(|(t, moved)| t.len() - moved),
            )
            .finish()
    }
}

fn table(slots: usize) -> Vec<Entry> {
    let v = bytemuck::zeroed_vec(slots);
    crate::prefetch::huge_pages(&v);
    v
}

fn copy(t: &[Entry]) -> Vec<Entry> {
    let mut c = table(t.len());
    c.copy_from_slice(t);
    c
}

/// The slot a key probes first: its top bits, so that a table holds its keys in about key
/// order (see [`ClOrdIndex::sorted`]) and a doubling moves each slot's keys to the same place
/// in the bigger table, twice as far along.
fn home(t: &[Entry], key: ClKey) -> usize {
    (key.0 >> (64 - t.len().trailing_zeros())) as usize
}

/// Where a key is in a table (`Ok`), or the empty slot it would take (`Err`). Linear probing
/// from its home slot; a table is never more than half full, so a probe ends.
fn slot_of(t: &[Entry], key: ClKey) -> Result<usize, usize> {
    let mask = t.len() - 1;
    let mut i = home(t, key);
    loop {
        let e = &t[i];
        if e.is_empty() {
            return Err(i);
        }
        if e.lo == key.0 && e.hi == key.1 {
            return Ok(i);
        }
        i = (i + 1) & mask;
    }
}

impl Clone for ClOrdIndex {
    fn clone(&self) -> ClOrdIndex {
        ClOrdIndex {
            entries: copy(&self.entries),
            old: self.old.as_ref().map(|(t, moved)| (copy(t), *moved)),
            next: None,
            len: self.len,
            populated: self.populated,
        }
    }
}

impl ClOrdIndex {
    /// An index sized for `expected` keys without growing.
    pub fn with_capacity(expected: usize) -> ClOrdIndex {
        // Linear probing stays short below half full.
        let slots = (expected.max(512) * 2).next_power_of_two();
        ClOrdIndex {
            entries: table(slots),
            old: None,
            next: None,
            len: 0,
            populated: false,
        }
    }

    /// Number of keys.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Looks a key up. A `Vacant` answer stays valid until the next `probe` or `retain`.
    pub fn probe(&mut self, key: ClKey) -> Probe {
        if self.old.is_some() {
            self.move_old(MOVED_PER_PROBE);
        } else if self.populated && self.next.is_none() && self.len * 8 >= self.entries.len() * 3 {
            self.prepare_next();
        }
        if (self.len + 1) * 2 > self.entries.len() {
            self.grow();
        }
        match slot_of(&self.entries, key) {
            Ok(_) => Probe::Found,
            Err(vacant) => match &self.old {
                Some((old, _)) if slot_of(old, key).is_ok() => Probe::Found,
                _ => Probe::Vacant(vacant),
            },
        }
    }

    /// Faults the whole table in now, every table that later replaces it for a new day as it
    /// is allocated, and a grown table ahead of its growth (see [`crate::prefetch::populate`];
    /// the moves into an unfaulted table zeroed all of its pages within a few hundred probes:
    /// a 170 ms stall at 2 M keys).
    pub fn populate(&mut self) {
        self.populated = true;
        crate::prefetch::populate(&self.entries);
    }

    /// Hints the CPU to start loading the slot a key probes first (in both tables while the
    /// index grows).
    pub fn prefetch(&self, key: ClKey) {
        let first = |t: &[Entry]| crate::prefetch::prefetch(&t[home(t, key)]);
        first(&self.entries);
        if let Some((old, _)) = &self.old {
            first(old);
        }
    }

    /// The order a key maps to, if present.
    pub fn get(&self, key: ClKey) -> Option<OrderId> {
        let find = |t: &[Entry]| slot_of(t, key).ok().map(|i| OrderId(t[i].order));
        match &self.old {
            None => find(&self.entries),
            Some((old, _)) => find(&self.entries).or_else(|| find(old)),
        }
    }

    /// Stores an absent key at the slot a `Vacant` probe returned.
    pub fn put(&mut self, slot: usize, key: ClKey, order: OrderId) {
        let e = &mut self.entries[slot];
        assert!(e.is_empty(), "ClOrdID index slot already taken");
        *e = Entry {
            lo: key.0,
            hi: key.1,
            order: order.0,
        };
        self.len += 1;
    }

    /// Inserts an absent key.
    pub fn insert(&mut self, key: ClKey, order: OrderId) {
        match self.probe(key) {
            Probe::Vacant(slot) => self.put(slot, key, order),
            Probe::Found => panic!("ClOrdID key inserted twice"),
        }
    }

    /// Moves up to `slots` more slots of the old table into the new one; drops the old table
    /// once all are moved.
    #[cold]
    #[inline(never)]
    fn move_old(&mut self, slots: usize) {
        let Some((old, moved)) = &mut self.old else {
            return;
        };
        let end = moved.saturating_add(slots).min(old.len());
        for e in old[*moved..end].iter().filter(|e| !e.is_empty()) {
            // A key lives in one table only: a probe that finds it in the old one never
            // inserts it into the new.
            if let Err(slot) = slot_of(&self.entries, ClKey(e.lo, e.hi)) {
                self.entries[slot] = *e;
            }
        }
        *moved = end;
        if end == old.len() {
            self.old = None;
        }
    }

    /// Starts a thread that allocates the next table and faults it in, at nice 10. The
    /// kernel zeroes each page where it is first touched: done here a huge page at a time as
    /// the load rose, it stalled the engine thread about ten times a second for the ten
    /// seconds before a growth at 2 M keys (the slowest acknowledgement of each second
    /// 5.5-6.5 ms instead of 1.5-4; see BENCHMARKS.md).
    #[cold]
    #[inline(never)]
    fn prepare_next(&mut self) {
        let slots = self.entries.len() * 2;
        self.next = std::thread::Builder::new()
            .name("index-grow".into())
            .spawn(move || {
                crate::priority::lower_priority("index-grow");
                let t = table(slots);
                // A huge page per call: faulting holds the process's memory-map lock, and a
                // thread that maps memory meanwhile (an allocation) waits for it, then every
                // page fault behind that one. Faulted in one call, 192 MB stalled the order
                // flow for up to 0.4 s.
                let bytes = t.capacity() * std::mem::size_of::<Entry>();
                for at in (0..bytes).step_by(crate::prefetch::HUGE) {
                    crate::prefetch::populate_bytes(&t, at..at + crate::prefetch::HUGE);
                }
                t
            })
            .ok();
    }

    #[cold]
    #[inline(never)]
    fn grow(&mut self) {
        // Only reached with the old table gone long since (see `MOVED_PER_PROBE`); moving
        // what might be left keeps a key in one table at a time.
        self.move_old(usize::MAX);
        let slots = self.entries.len() * 2;
        // The thread has had the keys from three eighths to half load to finish (seconds at
        // any rate the exchange takes); if it has not, waiting for it is still the shortest.
        let started = std::time::Instant::now();
        let bigger = match self.next.take().map(std::thread::JoinHandle::join) {
            Some(Ok(t)) if t.len() == slots => t,
            _ => table(slots),
        };
        let waited = started.elapsed();
        if waited >= std::time::Duration::from_millis(10) {
            tracing::warn!(
                ms = waited.as_millis() as u64,
                keys = self.len,
                "the ClOrdID index waited for its grown table"
            );
        }
        let old = std::mem::replace(&mut self.entries, bigger);
        self.old = Some((old, 0));
    }

    /// Keeps only the keys whose order satisfies `keep`, at the same capacity.
    pub fn retain(&mut self, keep: impl Fn(OrderId) -> bool) {
        self.move_old(usize::MAX);
        self.next = None;
        let slots = self.entries.len();
        let old = std::mem::replace(&mut self.entries, table(slots));
        if self.populated {
            crate::prefetch::populate(&self.entries);
        }
        self.len = 0;
        for e in old
            .iter()
            .filter(|e| !e.is_empty() && keep(OrderId(e.order)))
        {
            let key = ClKey(e.lo, e.hi);
            self.insert(key, OrderId(e.order));
        }
    }

    /// Every (key, order) in key order. A table holds its keys in key order but for the few
    /// that linear probing moved a slot or two along (and those that wrapped from the end to
    /// the first slots), so an insertion sort of the table as it lies is about one pass
    /// (sorting the day's keys from scratch was a sixth of the snapshot thread's time at the
    /// peak). While the index grows the two tables are sorted together, from scratch.
    pub fn sorted(&self) -> Vec<(ClKey, OrderId)> {
        let mut v: Vec<_> = Vec::with_capacity(self.len);
        if self.old.is_some() {
            v.extend(self.iter());
            v.sort_unstable();
            return v;
        }
        let t = &self.entries;
        let pair = |e: &Entry| (ClKey(e.lo, e.hi), OrderId(e.order));
        let wrapped = |i: usize, e: &Entry| home(t, ClKey(e.lo, e.hi)) > i;
        let first_gap = t.iter().position(Entry::is_empty).unwrap_or(t.len());
        let head = &t[..first_gap];
        v.extend(
            head.iter()
                .enumerate()
                .filter(|&(i, e)| !wrapped(i, e))
                .map(|(_, e)| pair(e)),
        );
        v.extend(t[first_gap..].iter().filter(|e| !e.is_empty()).map(pair));
        v.extend(
            head.iter()
                .enumerate()
                .filter(|&(i, e)| wrapped(i, e))
                .map(|(_, e)| pair(e)),
        );
        insertion_sort(&mut v);
        v
    }

    /// Every (key, order), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (ClKey, OrderId)> + '_ {
        let unmoved = self.old.iter().flat_map(|(t, moved)| t[*moved..].iter());
        self.entries
            .iter()
            .chain(unmoved)
            .filter(|e| !e.is_empty())
            .map(|e| (ClKey(e.lo, e.hi), OrderId(e.order)))
    }
}

/// Sorts a nearly sorted slice in about one pass; one that turns out far from sorted (more
/// than eight moves per element) is sorted from scratch instead.
fn insertion_sort<T: Ord>(v: &mut [T]) {
    let mut moves = 0;
    for i in 1..v.len() {
        let mut j = i;
        while j > 0 && v[j - 1] > v[j] {
            v.swap(j - 1, j);
            j -= 1;
        }
        moves += i - j;
        if moves > 8 * v.len() {
            v.sort_unstable();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_probe_grow_and_retain() {
        let mut ix = ClOrdIndex::with_capacity(4);
        let keys: Vec<ClKey> = (0..5000u32)
            .map(|i| ClKey::new(SessionId(i % 7), &ClOrdId::new(&format!("c{i}")).unwrap()))
            .collect();
        for (i, k) in keys.iter().enumerate() {
            assert!(matches!(ix.probe(*k), Probe::Vacant(_)));
            ix.insert(*k, OrderId(i as u64));
        }
        assert_eq!(ix.len(), 5000);
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(ix.get(*k), Some(OrderId(i as u64)));
            assert!(matches!(ix.probe(*k), Probe::Found));
        }
        assert_eq!(
            ix.get(ClKey::new(SessionId(99), &ClOrdId::new("c1").unwrap())),
            None
        );
        ix.retain(|o| o.0 % 2 == 0);
        assert_eq!(ix.len(), 2500);
        assert_eq!(ix.get(keys[2]), Some(OrderId(2)));
        assert_eq!(ix.get(keys[3]), None);
        assert_eq!(ix.iter().count(), 2500);
    }

    #[test]
    fn a_populated_index_grows_into_the_table_its_thread_prepared() {
        let mut ix = ClOrdIndex::with_capacity(4096);
        ix.populate();
        let slots = ix.entries.len();
        let mut i = 0u64;
        while (i as usize) * 8 < slots * 3 {
            ix.insert(key(i), OrderId(i));
            i += 1;
        }
        assert!(ix.next.is_none(), "started before three eighths load");
        ix.insert(key(i), OrderId(i));
        i += 1;
        assert!(ix.next.is_some(), "started at three eighths load");
        while (i as usize + 1) * 2 <= slots {
            ix.insert(key(i), OrderId(i));
            i += 1;
        }
        assert_eq!(ix.entries.len(), slots, "grown before half load");
        ix.insert(key(i), OrderId(i));
        i += 1;
        assert_eq!(ix.entries.len(), slots * 2);
        assert!(ix.next.is_none() && ix.old.is_some());
        for j in 0..i {
            assert_eq!(ix.get(key(j)), Some(OrderId(j)));
        }
        assert_eq!(ix.get(key(i)), None);
        // The next growth prepares its table again.
        while (i as usize) * 8 < slots * 2 * 3 + 8 {
            ix.insert(key(i), OrderId(i));
            i += 1;
        }
        assert!(ix.next.is_some());
        assert_eq!(sorted(&ix).len(), i as usize);
    }

    fn key(i: u64) -> ClKey {
        ClKey::new(
            SessionId((i % 3) as u32),
            &ClOrdId::new(&format!("k{i}")).unwrap(),
        )
    }

    fn sorted(ix: &ClOrdIndex) -> Vec<(ClKey, OrderId)> {
        let mut v: Vec<_> = ix.iter().collect();
        v.sort_unstable();
        assert_eq!(ix.sorted(), v);
        v
    }

    #[test]
    fn sorted_puts_keys_that_wrapped_past_the_end_last() {
        // 1,024 slots; keys whose top bits all pick the last slot fill it and wrap to the
        // first ones, beside keys at home there.
        let mut ix = ClOrdIndex::with_capacity(4);
        for i in 0..40u64 {
            ix.insert(ClKey(u64::MAX - i, 7), OrderId(i));
            ix.insert(ClKey(i + 1, 9), OrderId(100 + i));
        }
        assert!(ix.entries[..40].iter().any(|e| e.lo > u64::MAX / 2));
        let mut want: Vec<_> = ix.iter().collect();
        want.sort_unstable();
        assert_eq!(ix.sorted(), want);
    }

    #[test]
    fn insertion_sort_sorts_anything() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for len in [0, 1, 2, 10, 1000] {
            let mut v: Vec<u64> = (0..len)
                .map(|_| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng % 100
                })
                .collect();
            let mut want = v.clone();
            want.sort_unstable();
            insertion_sort(&mut v);
            assert_eq!(v, want);
        }
    }

    #[test]
    fn a_growing_index_answers_as_a_map_while_its_old_table_moves() {
        let mut ix = ClOrdIndex::with_capacity(4);
        ix.populate();
        let mut model = std::collections::BTreeMap::new();
        let (mut growths, mut probes_while_moving) = (0, 0);
        for i in 1..=9000u64 {
            let moving = ix.old.is_some();
            // The table a growth moves into was being prepared ahead of it.
            let prepared = ix.next.is_some();
            match ix.probe(key(i)) {
                Probe::Vacant(slot) => ix.put(slot, key(i), OrderId(i)),
                Probe::Found => panic!("key {i} found before it was inserted"),
            }
            model.insert(key(i), OrderId(i));
            if !moving && ix.old.is_some() {
                growths += 1;
                assert!(prepared, "growth at {i} keys");
            }
            if ix.old.is_some() {
                probes_while_moving += 1;
                // An early key, likely still in the old table, and a recent one.
                assert!(matches!(ix.probe(key(i / 3 + 1)), Probe::Found));
                assert_eq!(ix.get(key(i / 3 + 1)), Some(OrderId(i / 3 + 1)));
            }
            if i % 97 == 0 || ix.old.as_ref().is_some_and(|(_, moved)| *moved == 8) {
                assert_eq!(ix.len(), model.len());
                for (k, o) in &model {
                    assert_eq!(ix.get(*k), Some(*o));
                }
                assert_eq!(ix.get(key(i + 1)), None);
                let want: Vec<_> = model.iter().map(|(k, o)| (*k, *o)).collect();
                assert_eq!(sorted(&ix), want);
                assert_eq!(sorted(&ix.clone()), want);
            }
        }
        // 1,024 slots for 4 expected keys, doubled at 512, 1,024, 2,048, 4,096 and 8,192
        // keys; each move spans many probes instead of one stop.
        assert_eq!(growths, 5);
        assert!(probes_while_moving > 1000, "{probes_while_moving}");
    }

    #[test]
    fn retain_while_the_old_table_moves_keeps_what_it_should() {
        let mut ix = ClOrdIndex::with_capacity(4);
        let mut i = 0;
        while ix.old.as_ref().is_none_or(|(_, moved)| *moved < 64) {
            i += 1;
            ix.insert(key(i), OrderId(i));
        }
        ix.retain(|o| o.0 % 2 == 0);
        assert!(ix.old.is_none());
        assert_eq!(ix.len(), (i / 2) as usize);
        for j in 1..=i {
            let want = (j % 2 == 0).then_some(OrderId(j));
            assert_eq!(ix.get(key(j)), want, "key {j}");
        }
    }

    #[test]
    fn keys_differ_by_session_and_id() {
        let a = ClOrdId::new("x").unwrap();
        let b = ClOrdId::new("y").unwrap();
        assert_ne!(ClKey::new(SessionId(1), &a), ClKey::new(SessionId(2), &a));
        assert_ne!(ClKey::new(SessionId(1), &a), ClKey::new(SessionId(1), &b));
        assert_eq!(ClKey::new(SessionId(1), &a), ClKey::new(SessionId(1), &a));
    }
}
