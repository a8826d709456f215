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

/// Set of the day's (session, ClOrdID) keys with the order each names.
pub(crate) struct ClOrdIndex {
    entries: Vec<Entry>,
    len: usize,
    /// Whether tables are faulted in as they are allocated (see [`ClOrdIndex::populate`]).
    populated: bool,
}

impl std::fmt::Debug for ClOrdIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClOrdIndex")
            .field("len", &self.len)
            .field("capacity", &self.entries.len())
            .finish()
    }
}

fn table(slots: usize) -> Vec<Entry> {
    let v = bytemuck::zeroed_vec(slots);
    crate::prefetch::huge_pages(&v);
    v
}

impl Clone for ClOrdIndex {
    fn clone(&self) -> ClOrdIndex {
        let mut entries = table(self.entries.len());
        entries.copy_from_slice(&self.entries);
        ClOrdIndex {
            entries,
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
            len: 0,
            populated: false,
        }
    }

    /// Number of keys.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    fn mask(&self) -> usize {
        self.entries.len() - 1
    }

    /// Looks a key up. A `Vacant` answer stays valid until the next `put` or `retain`.
    pub fn probe(&mut self, key: ClKey) -> Probe {
        if (self.len + 1) * 2 > self.entries.len() {
            self.grow();
        }
        let mask = self.mask();
        let mut i = key.0 as usize & mask;
        loop {
            let e = &self.entries[i];
            if e.is_empty() {
                return Probe::Vacant(i);
            }
            if e.lo == key.0 && e.hi == key.1 {
                return Probe::Found;
            }
            i = (i + 1) & mask;
        }
    }

    /// Faults the whole table in now, and every table that later replaces it (a new day's,
    /// a grown one) as it is allocated (see [`crate::prefetch::populate`]).
    pub fn populate(&mut self) {
        self.populated = true;
        crate::prefetch::populate(&self.entries);
    }

    /// Hints the CPU to start loading the slot a key probes first.
    pub fn prefetch(&self, key: ClKey) {
        let e = &self.entries[key.0 as usize & self.mask()];
        crate::prefetch::prefetch(e);
    }

    /// The order a key maps to, if present.
    pub fn get(&self, key: ClKey) -> Option<OrderId> {
        let mask = self.mask();
        let mut i = key.0 as usize & mask;
        loop {
            let e = &self.entries[i];
            if e.is_empty() {
                return None;
            }
            if e.lo == key.0 && e.hi == key.1 {
                return Some(OrderId(e.order));
            }
            i = (i + 1) & mask;
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

    fn rebuild(&mut self, slots: usize, keep: impl Fn(OrderId) -> bool) {
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

    fn grow(&mut self) {
        let slots = self.entries.len() * 2;
        self.rebuild(slots, |_| true);
    }

    /// Keeps only the keys whose order satisfies `keep`, at the same capacity.
    pub fn retain(&mut self, keep: impl Fn(OrderId) -> bool) {
        let slots = self.entries.len();
        self.rebuild(slots, keep);
    }

    /// Every (key, order), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (ClKey, OrderId)> + '_ {
        self.entries
            .iter()
            .filter(|e| !e.is_empty())
            .map(|e| (ClKey(e.lo, e.hi), OrderId(e.order)))
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
    fn keys_differ_by_session_and_id() {
        let a = ClOrdId::new("x").unwrap();
        let b = ClOrdId::new("y").unwrap();
        assert_ne!(ClKey::new(SessionId(1), &a), ClKey::new(SessionId(2), &a));
        assert_ne!(ClKey::new(SessionId(1), &a), ClKey::new(SessionId(1), &b));
        assert_eq!(ClKey::new(SessionId(1), &a), ClKey::new(SessionId(1), &a));
    }
}
