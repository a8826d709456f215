//! How much of the journal no restart needs any more (`exchange journal trim`).
//!
//! A restart of the exchange restores the newest usable snapshot the delivered reports cover
//! and replays the journal after it; the reporting flow restarts from the newest snapshot its
//! database holds the rows of. Both fall back to older snapshots when a newer one is unusable.
//! So the records at or before the oldest readable snapshot are needed by no restart, as long
//! as the delivered reports and the reporting database have reached that snapshot too.

use std::path::Path;

use anyhow::Context;

/// Where the journal may be trimmed, and why there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrimPoint {
    /// Every record at or before this sequence id (the oldest readable snapshot's) is covered
    /// by a snapshot every restart can use.
    Through(u64),
    /// Nothing may go; the reason.
    Nothing(String),
}

/// Where the journal of the exchange whose data directory is `data_dir` may be trimmed;
/// `stored` is the last sequence id its reporting database holds (`None` when it has none:
/// see [`reporting_position`]).
pub fn trim_point(data_dir: &Path, stored: Option<u64>) -> anyhow::Result<TrimPoint> {
    trim_point_after(data_dir, stored, None)
}

/// The last sequence id the reporting database at `url` holds, for [`trim_point`]; `None` for
/// `none`.
pub fn reporting_position(url: &str) -> anyhow::Result<Option<u64>> {
    if url == "none" {
        return Ok(None);
    }
    let mut store = reporting::open(url)
        .with_context(|| format!("reading the reporting database's position ({url})"))?;
    Ok(Some(store.last_seq()?))
}

/// [`trim_point`] for the snapshot thread, which has just written the snapshot at `newest`
/// and synced it: as long as that one is there, older ones need not be read to be trusted
/// (a restart falls back to an older snapshot only when the newer ones are unusable).
pub(crate) fn trim_point_after(
    data_dir: &Path,
    stored: Option<u64>,
    newest: Option<u64>,
) -> anyhow::Result<TrimPoint> {
    let listed = engine::snapshot::list(&super::snapshots::snapshot_dir(data_dir))?;
    let trusted = newest.is_some_and(|n| listed.iter().any(|(seq, _)| *seq == n));
    let readable = |seq: u64, path: &Path| match engine::snapshot::read(path) {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(seq, error = %e, "snapshot unreadable; not counted");
            false
        }
    };
    let Some(oldest) = listed
        .iter()
        .find(|(seq, path)| trusted || readable(*seq, path))
        .map(|(seq, _)| *seq)
    else {
        return Ok(TrimPoint::Nothing(
            "no readable snapshot: a restart replays the whole journal".into(),
        ));
    };
    let Some(delivered) = super::delivered_through(data_dir)? else {
        return Ok(TrimPoint::Nothing(
            "no delivered-reports record: the exchange has not run over this directory".into(),
        ));
    };
    if delivered < oldest {
        return Ok(TrimPoint::Nothing(format!(
            "reports are recorded delivered through {delivered}, before the oldest snapshot \
             ({oldest}): a restart re-delivers them from the journal"
        )));
    }
    if let Some(stored) = stored
        && stored < oldest
    {
        return Ok(TrimPoint::Nothing(format!(
            "the reporting database holds the rows through {stored}, before the oldest \
             snapshot ({oldest}): its flow still needs the journal from there"
        )));
    }
    Ok(TrimPoint::Through(oldest))
}

#[cfg(test)]
mod tests {
    use super::{TrimPoint, reporting_position, trim_point};

    fn nothing(p: TrimPoint, why: &str) {
        match p {
            TrimPoint::Nothing(reason) => assert!(reason.contains(why), "{reason}"),
            other => panic!("expected nothing ({why}), got {other:?}"),
        }
    }

    #[test]
    fn the_trim_point_is_the_oldest_readable_snapshot_once_reports_and_reporting_reach_it() {
        let data = std::env::temp_dir().join(format!("trim-point-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir_all(&data).unwrap();
        let snaps = crate::exchange::snapshots::snapshot_dir(&data);
        nothing(trim_point(&data, None).unwrap(), "no readable snapshot");
        for seq in [100, 200] {
            engine::snapshot::write(&snaps, seq, 0, 7, &[(*b"TEST", b"state")]).unwrap();
        }
        nothing(trim_point(&data, None).unwrap(), "has not run");
        let (watermark, _) =
            super::super::Watermark::open(&data.join(super::super::Watermark::FILE)).unwrap();
        watermark.set(50);
        nothing(trim_point(&data, None).unwrap(), "delivered through 50");
        watermark.set(250);
        assert_eq!(trim_point(&data, None).unwrap(), TrimPoint::Through(100));
        // A reporting database behind the oldest snapshot holds the journal back.
        let db = format!("sqlite:{}", data.join("r.db").display());
        nothing(
            trim_point(&data, reporting_position(&db).unwrap()).unwrap(),
            "holds the rows through 0",
        );
        let rows = reporting::Rows {
            last_seq: 150,
            ..reporting::Rows::default()
        };
        reporting::open(&db).unwrap().apply(&rows).unwrap();
        assert_eq!(
            trim_point(&data, reporting_position(&db).unwrap()).unwrap(),
            TrimPoint::Through(100)
        );
        // An unreadable snapshot does not count: restarts would skip it.
        let (_, oldest) = &engine::snapshot::list(&snaps).unwrap()[0];
        std::fs::write(oldest, b"not a snapshot").unwrap();
        assert_eq!(trim_point(&data, None).unwrap(), TrimPoint::Through(200));
        // Unless the snapshot thread has just written a newer one: then restarts use that.
        assert_eq!(
            super::trim_point_after(&data, None, Some(200)).unwrap(),
            TrimPoint::Through(100)
        );
        assert_eq!(
            super::trim_point_after(&data, None, Some(300)).unwrap(),
            TrimPoint::Through(200),
            "a snapshot not on disk is no reason to trust the others"
        );
        nothing(
            trim_point(&data, reporting_position(&db).unwrap()).unwrap(),
            "before the oldest snapshot (200)",
        );
        // A torn delivered record is an error, not a guess.
        std::fs::write(data.join(super::super::Watermark::FILE), [1u8; 12]).unwrap();
        assert!(trim_point(&data, None).is_err());
        let _ = std::fs::remove_dir_all(&data);
    }
}
