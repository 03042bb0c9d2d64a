//! Timestamps in log lines, and UTC formatting.
//!
//! The run's programs write `2026-11-23T07:01:02.123456Z` (the sink, and
//! tracing's default format) or `2026-11-23 07:01:02,123` (Python-style
//! feeders) at the start of a line; offsets like `+02:00` are honoured and
//! a time without a zone is taken as UTC.

/// Parses a timestamp at the start of `s`; returns unix seconds and the
/// number of bytes it took.
pub fn parse_prefix(s: &[u8]) -> Option<(f64, usize)> {
    fn num(s: &[u8], at: usize, len: usize) -> Option<i64> {
        let d = s.get(at..at + len)?;
        let mut v = 0i64;
        for &c in d {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + i64::from(c - b'0');
        }
        Some(v)
    }
    let year = num(s, 0, 4)?;
    if s.get(4) != Some(&b'-') || s.get(7) != Some(&b'-') {
        return None;
    }
    let month = num(s, 5, 2)?;
    let day = num(s, 8, 2)?;
    if !matches!(s.get(10), Some(b'T' | b' ')) {
        return None;
    }
    let hour = num(s, 11, 2)?;
    if s.get(13) != Some(&b':') || s.get(16) != Some(&b':') {
        return None;
    }
    let min = num(s, 14, 2)?;
    let sec = num(s, 17, 2)?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut at = 19;
    let mut frac = 0.0;
    if matches!(s.get(at), Some(b'.' | b',')) && s.get(at + 1).is_some_and(u8::is_ascii_digit) {
        at += 1;
        let mut scale = 0.1;
        while let Some(c) = s.get(at).filter(|c| c.is_ascii_digit()) {
            frac += f64::from(c - b'0') * scale;
            scale /= 10.0;
            at += 1;
        }
    }
    let mut offset = 0i64;
    match s.get(at) {
        Some(b'Z') => at += 1,
        Some(&sign @ (b'+' | b'-')) => {
            if let (Some(h), Some(m)) = (num(s, at + 1, 2), num(s, at + 4, 2)) {
                if s.get(at + 3) == Some(&b':') {
                    offset = (h * 3600 + m * 60) * if sign == b'+' { 1 } else { -1 };
                    at += 6;
                }
            }
        }
        _ => {}
    }
    let secs = unix_of_civil(year, month, day, hour, min, sec)? - offset;
    Some((secs as f64 + frac, at))
}

/// Finds a timestamp at the start of a log line, allowing a leading `[`.
pub fn line_time(line: &[u8]) -> Option<f64> {
    let s = line.strip_prefix(b"[").unwrap_or(line);
    parse_prefix(s).map(|(t, _)| t)
}

/// Unix seconds of a UTC date and time, or `None` if there is no such
/// date (February 30th...). The calendar is humantime's.
pub fn unix_of_civil(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64) -> Option<i64> {
    let text = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{:02}Z", s.min(59));
    let t = humantime::parse_rfc3339(&text).ok()?;
    let secs = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64;
    // A leap second (`:60`) counts as the second after `:59`.
    Some(secs + (s - s.min(59)))
}

/// `2026-11-23 07:01:02.123` (UTC) for unix seconds.
pub fn format_utc(t: f64) -> String {
    let at = std::time::UNIX_EPOCH
        + std::time::Duration::from_millis((t.max(0.0) * 1000.0).round() as u64);
    humantime::format_rfc3339_millis(at)
        .to_string()
        .trim_end_matches('Z')
        .replacen('T', " ", 1)
}

/// Unix seconds now.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_the_run_writes_parses() {
        let base = unix_of_civil(2026, 11, 23, 7, 1, 2).unwrap() as f64;
        let cases: [(&[u8], f64); 6] = [
            (b"2026-11-23T07:01:02.123456Z  INFO x", base + 0.123456),
            (b"2026-11-23T07:01:02Z FATAL x", base),
            (b"2026-11-23 07:01:02,123 ERROR x", base + 0.123),
            (b"2026-11-23T08:01:02.5+01:00 x", base + 0.5),
            (b"2026-11-23 07:01:02 x", base),
            (b"[2026-11-23T07:01:02Z] x", base),
        ];
        for (line, want) in cases {
            let got = line_time(line).unwrap();
            assert!(
                (got - want).abs() < 1e-6,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        for bad in [
            &b"thread 'main' panicked"[..],
            b"2026-13-01T00:00:00Z",
            b"2026-11-2",
        ] {
            assert_eq!(line_time(bad), None);
        }
    }

    #[test]
    fn dates_round_trip() {
        assert_eq!(unix_of_civil(1970, 1, 1, 0, 0, 0), Some(0));
        assert_eq!(unix_of_civil(2000, 2, 29, 0, 0, 0), Some(951_782_400));
        assert_eq!(unix_of_civil(2001, 2, 29, 0, 0, 0), None);
        assert_eq!(format_utc(0.0), "1970-01-01 00:00:00.000");
        assert_eq!(format_utc(1_700_000_000.25), "2023-11-14 22:13:20.250");
    }
}
