//! UTC timestamps in FIX formats, and the clock the async shell reads.
//!
//! Time inside the session layer is a plain number (milliseconds since the Unix epoch) passed
//! in by the caller, so the state machine is deterministic and testable.

use std::cell::Cell;

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

/// The current wall-clock time (the shell's only clock read).
pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// The current wall-clock time in nanoseconds since the Unix epoch (sequencer timestamps).
pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Civil date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn put2(out: &mut [u8], v: i64) {
    out[0] = b'0' + (v / 10 % 10) as u8;
    out[1] = b'0' + (v % 10) as u8;
}

/// Formats `YYYYMMDD-HH:MM:SS.sss`.
pub fn format_utc_millis(ms: Millis) -> [u8; 21] {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    // Every message carries a timestamp and most fall in the second before theirs: the
    // calendar part is formatted once per second and thread, only the milliseconds each time.
    let mut out = LAST_SECOND.with(|last| match last.get() {
        (s, text) if s == secs => text,
        _ => {
            let text = format_second(secs);
            last.set((secs, text));
            text
        }
    });
    out[18] = b'0' + (milli / 100) as u8;
    out[19] = b'0' + (milli / 10 % 10) as u8;
    out[20] = b'0' + (milli % 10) as u8;
    out
}

thread_local! {
    /// The last second [`format_utc_millis`] formatted on this thread, and its text.
    static LAST_SECOND: Cell<(i64, [u8; 21])> = const { Cell::new((i64::MIN, [0; 21])) };
}

/// `YYYYMMDD-HH:MM:SS.000` for a second since the epoch.
fn format_second(secs: i64) -> [u8; 21] {
    let mut out = *b"00000000-00:00:00.000";
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    put2(&mut out[0..2], y / 100);
    put2(&mut out[2..4], y % 100);
    put2(&mut out[4..6], m);
    put2(&mut out[6..8], d);
    put2(&mut out[9..11], sod / 3600);
    put2(&mut out[12..14], sod / 60 % 60);
    put2(&mut out[15..17], sod % 60);
    out
}

/// Formats `YYYYMMDD-HH:MM:SS` (whole seconds).
pub fn format_utc_seconds(ms: Millis) -> [u8; 17] {
    let full = format_utc_millis(ms);
    let mut out = [0u8; 17];
    out.copy_from_slice(&full[..17]);
    out
}

fn num(b: &[u8]) -> Option<i64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0i64, |a, &c| a * 10 + i64::from(c - b'0')))
}

/// Parses `YYYYMMDD` into days since the epoch.
pub fn parse_date(b: &[u8]) -> Option<i64> {
    if b.len() != 8 {
        return None;
    }
    let (y, m, d) = (num(&b[0..4])?, num(&b[4..6])?, num(&b[6..8])?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// Parses `HH:MM:SS[.f...]` into milliseconds since midnight.
pub fn parse_time_only(b: &[u8]) -> Option<Millis> {
    Some(parse_whole_seconds(b.get(..8)?)? + parse_fraction(&b[8..])?)
}

/// `HH:MM:SS` in milliseconds since midnight.
fn parse_whole_seconds(b: &[u8]) -> Option<Millis> {
    if b.len() != 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let (h, mi, s) = (num(&b[0..2])?, num(&b[3..5])?, num(&b[6..8])?);
    if h > 23 || mi > 59 || s > 60 {
        return None;
    }
    Some(((h * 60 + mi) * 60 + s) * 1000)
}

/// What follows whole seconds: nothing, or `.` and one to nine digits; in milliseconds.
fn parse_fraction(b: &[u8]) -> Option<Millis> {
    match b {
        [] => Some(0),
        [b'.', digits @ ..] if !digits.is_empty() && digits.len() <= 9 => {
            let n = num(digits)?;
            let scale = 10i64.pow(digits.len() as u32);
            Some(n * 1000 / scale)
        }
        _ => None,
    }
}

/// Parses `YYYYMMDD-HH:MM:SS[.f...]` into milliseconds since the epoch.
pub fn parse_utc_timestamp(b: &[u8]) -> Option<Millis> {
    let head: [u8; 17] = b.get(..17)?.try_into().ok()?;
    let fraction = parse_fraction(&b[17..])?;
    // A session's messages carry a few timestamps each, nearly all in the same second as the
    // one before: the calendar part is parsed once per second and thread.
    let second = LAST_PARSED.with(|last| match last.get() {
        Some((h, v)) if h == head => Some(v),
        _ => {
            if head[8] != b'-' {
                return None;
            }
            let v = parse_date(&head[..8])? * 86_400_000 + parse_whole_seconds(&head[9..])?;
            last.set(Some((head, v)));
            Some(v)
        }
    })?;
    Some(second + fraction)
}

thread_local! {
    /// The last `YYYYMMDD-HH:MM:SS` [`parse_utc_timestamp`] accepted on this thread, and its
    /// value.
    static LAST_PARSED: Cell<Option<([u8; 17], Millis)>> = const { Cell::new(None) };
}

/// Today's date in UTC as YYYYMMDD.
pub fn yyyymmdd(ms: Millis) -> u32 {
    let (y, m, d) = civil_from_days(ms.div_euclid(86_400_000));
    (y * 10_000 + m * 100 + d) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(inputs: &[&[u8]]) {
        for bad in inputs {
            let text = String::from_utf8_lossy(bad);
            assert_eq!(parse_utc_timestamp(bad), None, "{text}");
        }
    }

    #[test]
    fn round_trips_and_known_values() {
        let t = parse_utc_timestamp(b"20240229-23:59:58.123").unwrap();
        assert_eq!(&format_utc_millis(t), b"20240229-23:59:58.123");
        assert_eq!(parse_utc_timestamp(b"19700101-00:00:00"), Some(0));
        assert_eq!(
            parse_utc_timestamp(b"20010101-00:00:00"),
            Some(978_307_200_000)
        );
        assert_eq!(
            parse_utc_timestamp(b"20240101-00:00:00.5"),
            Some(1_704_067_200_500)
        );
        assert_eq!(
            parse_utc_timestamp(b"20240101-00:00:00.123456789"),
            Some(1_704_067_200_123)
        );
        refused(&[
            b"20240101",
            b"20241301-00:00:00",
            b"20240101-24:00:00",
            b"20240101 00:00:00",
            b"20240101-00:00:00.",
        ]);
        assert_eq!(yyyymmdd(t), 20240229);
        for ms in [0, 1, 86_399_999, 951_782_400_000, 4_102_444_800_000] {
            assert_eq!(parse_utc_timestamp(&format_utc_millis(ms)), Some(ms));
        }
    }

    #[test]
    fn the_remembered_second_never_leaks_into_another() {
        // Within a second, across seconds, days and years, backwards, and before the epoch.
        let base = parse_utc_timestamp(b"20241231-23:59:59.000").unwrap();
        for ms in [
            base,
            base + 1,
            base + 999,
            base + 1_000,
            base + 999,
            base - 1,
            base + 86_400_000,
            -1,
            -1_000,
            0,
            base + 998,
        ] {
            let text = format_utc_millis(ms);
            assert_eq!(parse_utc_timestamp(&text), Some(ms), "{ms}");
        }
        assert_eq!(&format_utc_millis(base + 1_000), b"20250101-00:00:00.000");
        // The parser's remembered second: a good one, then bad ones sharing its first bytes.
        let good = b"20241231-23:59:59.250";
        assert_eq!(parse_utc_timestamp(good), Some(base + 250));
        refused(&[
            b"20241231-23:59:59.",
            b"20241231-23:59:59.x",
            b"20241231-23:59:59.1234567890",
            b"20241231-23:59:59 ",
            b"20241231-23:59:5",
        ]);
        // A leap second shares the first 15 bytes and is a timestamp of its own.
        assert_eq!(
            parse_utc_timestamp(b"20241231-23:59:60"),
            Some(base + 1_000)
        );
        assert_eq!(parse_utc_timestamp(good), Some(base + 250));
        assert_eq!(parse_utc_timestamp(&[0; 17]), None);
        assert_eq!(&format_utc_millis(-1), b"19691231-23:59:59.999");
    }
}
