//! Candles pushed out of the in-memory rings, on disk: one file of fixed 56-byte records per
//! instrument and resolution, in time order.
//!
//! The archive is derived data: market data is rebuilt from the journal at start-up, so the
//! archive is cleared then and refilled by the replay.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::candles::{Candle, Resolution};

/// The candle archive under one directory.
#[derive(Debug)]
pub struct Archive {
    dir: PathBuf,
}

impl Archive {
    /// Opens `dir`, emptying it (its content is rebuilt by the replay).
    pub fn create(dir: &Path) -> io::Result<Archive> {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir_all(dir)?;
        Ok(Archive {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, symbol: &str, r: Resolution) -> PathBuf {
        self.dir.join(format!("{symbol}.{}.candles", r.name()))
    }

    /// Appends a candle.
    pub fn append(&self, symbol: &str, r: Resolution, c: &Candle) -> io::Result<()> {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(symbol, r))?;
        f.write_all(&c.to_bytes())
    }

    /// Archived candles whose start lies in `[from, to)`, oldest first.
    pub fn range(
        &self,
        symbol: &str,
        r: Resolution,
        from: i64,
        to: i64,
    ) -> io::Result<Vec<Candle>> {
        let mut bytes = Vec::new();
        match File::open(self.path(symbol, r)) {
            Ok(mut f) => f.read_to_end(&mut bytes)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(bytes
            .chunks_exact(Candle::BYTES)
            .filter_map(|c| c.try_into().ok().map(Candle::from_bytes))
            .filter(|c| c.start >= from && c.start < to)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_candles_are_served_by_range() {
        let dir = std::env::temp_dir().join(format!("md-archive-{}", std::process::id()));
        let a = Archive::create(&dir).unwrap();
        for i in 0..5 {
            let c = Candle {
                start: i * 60_000,
                open: i,
                high: i,
                low: i,
                close: i,
                volume: 1,
                trades: 1,
            };
            a.append("AAPL", Resolution::M1, &c).unwrap();
        }
        let got = a.range("AAPL", Resolution::M1, 60_000, 180_000).unwrap();
        assert_eq!(got.iter().map(|c| c.open).collect::<Vec<_>>(), [1, 2]);
        assert!(
            a.range("MSFT", Resolution::M1, 0, i64::MAX)
                .unwrap()
                .is_empty()
        );
        let _ = Archive::create(&dir).unwrap();
        assert!(
            a.range("AAPL", Resolution::M1, 0, i64::MAX)
                .unwrap()
                .is_empty()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
