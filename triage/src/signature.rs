//! Signatures: a log line with its variable parts replaced by placeholders,
//! so the same failure seen a thousand times, in several processes, with
//! different offsets, pids and times, is one row of the triage table.
//!
//! Rules, applied left to right in one pass:
//! - a leading timestamp is dropped; one inside the line becomes `<time>`;
//! - `0x` followed by hex digits becomes `<addr>`;
//! - a run of 8 or more hex digits and dashes with both a digit and a
//!   letter a-f in it (hashes, UUIDs, ids) becomes `<hex>`;
//! - any other run of digits (with a decimal part) becomes `<n>`, so
//!   `worker3`, `pid 812`, `offset 1200` and `127.0.0.1:7103` all lose
//!   their numbers;
//! - except a source location `file.rs:LINE:COL`, kept as is: it tells
//!   panics apart;
//! - `thread 'name'` becomes `thread '<name>'`;
//! - runs of white space become one space, and the result is cut at
//!   [`MAX_LEN`] characters.

use crate::time::parse_prefix;

/// Longest signature kept, in characters.
pub const MAX_LEN: usize = 240;

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The signature of a log line (or a fragment of one).
pub fn normalise(line: &str) -> String {
    let s = line.trim().as_bytes();
    let mut i = 0;
    let lead = s.strip_prefix(b"[").unwrap_or(s);
    if let Some((_, n)) = parse_prefix(lead) {
        i = n + (s.len() - lead.len());
        if s.get(i) == Some(&b']') {
            i += 1;
        }
    }
    let mut out: Vec<u8> = Vec::with_capacity(s.len().min(MAX_LEN + 8));
    while i < s.len() && out.len() < MAX_LEN * 2 {
        let c = s[i];
        let boundary = i == 0 || !is_word(s[i - 1]);
        if c.is_ascii_whitespace() {
            while i < s.len() && s[i].is_ascii_whitespace() {
                i += 1;
            }
            if !out.is_empty() && i < s.len() {
                out.push(b' ');
            }
            continue;
        }
        if boundary && c.is_ascii_digit() {
            if let Some((_, n)) = parse_prefix(&s[i..]) {
                out.extend_from_slice(b"<time>");
                i += n;
                continue;
            }
        }
        if boundary && c == b'0' && matches!(s.get(i + 1), Some(b'x' | b'X')) {
            let end = i
                + 2
                + s[i + 2..]
                    .iter()
                    .take_while(|c| c.is_ascii_hexdigit())
                    .count();
            if end > i + 2 {
                out.extend_from_slice(b"<addr>");
                i = end;
                continue;
            }
        }
        if boundary && c.is_ascii_hexdigit() {
            let len = s[i..]
                .iter()
                .take_while(|c| c.is_ascii_hexdigit() || **c == b'-')
                .count();
            let run = &s[i..i + len];
            let ends_word = !matches!(s.get(i + len), Some(&c) if is_word(c));
            if len >= 8
                && ends_word
                && run.iter().any(u8::is_ascii_digit)
                && run.iter().any(|c| matches!(c, b'a'..=b'f' | b'A'..=b'F'))
            {
                out.extend_from_slice(b"<hex>");
                i += len;
                continue;
            }
        }
        if c.is_ascii_digit() {
            let mut end = i + s[i..].iter().take_while(|c| c.is_ascii_digit()).count();
            if out.ends_with(b".rs:") {
                // A source location: keep LINE and :COL.
                if s.get(end) == Some(&b':') && s.get(end + 1).is_some_and(u8::is_ascii_digit) {
                    end += 1 + s[end + 1..]
                        .iter()
                        .take_while(|c| c.is_ascii_digit())
                        .count();
                }
                out.extend_from_slice(&s[i..end]);
                i = end;
                continue;
            }
            if s.get(end) == Some(&b'.') && s.get(end + 1).is_some_and(u8::is_ascii_digit) {
                end += 1 + s[end + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit())
                    .count();
            }
            out.extend_from_slice(b"<n>");
            i = end;
            continue;
        }
        if s[i..].starts_with(b"thread '") {
            if let Some(close) = s[i + 8..].iter().position(|&c| c == b'\'') {
                out.extend_from_slice(b"thread '<name>'");
                i += 8 + close + 1;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    let text = String::from_utf8_lossy(&out);
    match text.char_indices().nth(MAX_LEN) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_pids_addresses_ids_and_times_go() {
        assert_eq!(
            normalise("2026-11-23T07:01:02.123456Z ERROR worker3 pid=812 offset 1200.5 at 0x7ffd1234 id 3f2a9c1e-77b0-4c1d-9e2f-0a1b2c3d4e5f"),
            "ERROR worker<n> pid=<n> offset <n> at <addr> id <hex>"
        );
        assert_eq!(
            normalise(
                "2026-11-23 07:01:02,123 CRIT lost   at 2026-11-23T07:01:03Z from 127.0.0.1:7103"
            ),
            "CRIT lost at <time> from <n>.<n>:<n>"
        );
    }

    #[test]
    fn the_same_failure_with_other_numbers_is_one_signature() {
        let a = normalise("2026-01-01T00:00:00Z FATAL duplicate data: output offset 120 > message_id 100 worker worker1");
        let b = normalise("2026-02-03T04:05:06Z FATAL duplicate data: output offset 9 > message_id 7 worker worker2");
        assert_eq!(a, b);
    }

    #[test]
    fn source_locations_and_words_are_kept() {
        assert_eq!(
            normalise("thread 'tokio-runtime-worker' panicked at src/owner.rs:212:9: deadbeef"),
            "thread '<name>' panicked at src/owner.rs:212:9: deadbeef"
        );
    }

    #[test]
    fn long_lines_are_cut() {
        let long = "x".repeat(1000);
        assert_eq!(normalise(&long).chars().count(), MAX_LEN + 1);
    }
}
