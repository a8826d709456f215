//! A small stable hash (FNV-1a, 64-bit) for state and event-stream comparisons.
//!
//! Stable across builds and platforms, unlike `std`'s hasher, so hashes can be recorded and
//! compared between processes (for example a live engine and a replay of its journal).

/// FNV-1a 64-bit hasher.
#[derive(Clone, Copy, Debug)]
pub struct StableHasher(u64);

impl Default for StableHasher {
    fn default() -> Self {
        StableHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl StableHasher {
    /// A fresh hasher.
    pub fn new() -> StableHasher {
        StableHasher::default()
    }

    /// Feeds bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        for &x in b {
            self.0 ^= u64::from(x);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// Feeds a u64.
    pub fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }

    /// Feeds an i64.
    pub fn i64(&mut self, v: i64) {
        self.bytes(&v.to_le_bytes());
    }

    /// The hash so far.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// Hashes an event stream through its binary encoding.
pub fn hash_events<'a>(events: impl IntoIterator<Item = &'a crate::Event>) -> u64 {
    let mut h = StableHasher::new();
    let mut buf = [0u8; crate::event::MAX_EVENT_LEN];
    for e in events {
        let n = e.encode(&mut buf);
        h.bytes(&buf[..n]);
    }
    h.finish()
}
