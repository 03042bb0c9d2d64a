//! The original's positional words: `NUM [crash-sink] [crashN[.slow]] [grow|shrink|grow-and-shrink] ...`.
//!
//! Parsed strictly: an unknown word is a usage error, never silently
//! ignored (the original ignored `crash-source`, which it documented but
//! never built).

use std::fmt;

/// Workers are named `initializer`, `worker1` … `worker9`, as in the original.
pub const MAX_WORKERS: usize = 10;

/// What the positional words ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SoakSpec {
    /// Number of workers at start (≥ 1).
    pub workers: usize,
    /// `crash-sink`: crash and restart the sink.
    pub crash_sink: bool,
    /// `crashN` / `crashN.slow`: worker index and whether it is the slow variant.
    pub crash_workers: Vec<CrashWorker>,
    /// `grow`: join workers now and then.
    pub grow: bool,
    /// `shrink`: remove workers now and then.
    pub shrink: bool,
    /// `crash-source`: crash and restart feeders.
    pub crash_source: bool,
    /// `pause`: SIGSTOP a random process for a while, then SIGCONT it.
    pub pause: bool,
    /// `no-ack-progress`.
    pub no_ack_progress: bool,
    /// `no-registry-progress`.
    pub no_registry_progress: bool,
    /// `no-sanity`.
    pub no_sanity: bool,
    /// `no-clean-old-gzip-files`.
    pub no_clean_old_gzip_files: bool,
    /// `run_customX` scenarios, by name.
    pub customs: Vec<String>,
}

/// One `crashN[.slow]` word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrashWorker {
    /// 0 = initializer, N = workerN.
    pub index: usize,
    /// `.slow`: about one crash every two minutes instead of every few seconds.
    pub slow: bool,
}

/// A word that is not part of the language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError(pub String);

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SpecError {}

/// The name of worker `index`.
pub fn worker_name(index: usize) -> String {
    if index == 0 {
        "initializer".to_owned()
    } else {
        format!("worker{index}")
    }
}

/// The index of a worker name (`initializer` → 0, `workerN` → N).
pub fn worker_index(name: &str) -> Option<usize> {
    if name == "initializer" {
        return Some(0);
    }
    name.strip_prefix("worker")?
        .parse()
        .ok()
        .filter(|&n| n >= 1)
}

/// The custom scenarios crasher knows.
pub const CUSTOMS: &[&str] = &[
    "run_custom1",
    "run_custom2",
    "run_custom4",
    "run_custom5",
    "run_custom3006",
    "run_custom_crashsink_crash0_overlap",
];

impl SoakSpec {
    /// Parses the positional words.
    pub fn parse(words: &[String]) -> Result<SoakSpec, SpecError> {
        let mut spec = SoakSpec::default();
        let Some(first) = words.first() else {
            return Err(SpecError(
                "missing NUM: the number of workers to start (e.g. `crasher 4 crash1 grow`)".into(),
            ));
        };
        spec.workers = match first.parse::<usize>() {
            Ok(n) if (1..=MAX_WORKERS).contains(&n) => n,
            _ => {
                return Err(SpecError(format!(
                    "NUM must be a number of workers from 1 to {MAX_WORKERS}, got {first:?}"
                )))
            }
        };
        for w in &words[1..] {
            match w.as_str() {
                "crash-sink" => spec.crash_sink = true,
                "crash-source" => spec.crash_source = true,
                "pause" => spec.pause = true,
                "no-ack-progress" => spec.no_ack_progress = true,
                "no-registry-progress" | "no-registry-process" => spec.no_registry_progress = true,
                "no-sanity" => spec.no_sanity = true,
                "no-clean-old-gzip-files" => spec.no_clean_old_gzip_files = true,
                "grow" => spec.grow = true,
                "shrink" => spec.shrink = true,
                "grow-and-shrink" | "shrink-and-grow" => {
                    spec.grow = true;
                    spec.shrink = true;
                }
                w if w.starts_with("crash") => spec.crash_workers.push(parse_crash(w)?),
                w if w.starts_with("run_custom") => {
                    if !CUSTOMS.contains(&w) {
                        return Err(SpecError(format!(
                            "unknown custom scenario {w:?}; known: {}",
                            CUSTOMS.join(", ")
                        )));
                    }
                    spec.customs.push(w.to_owned());
                }
                other => {
                    return Err(SpecError(format!(
                        "unknown option {other:?}; see `crasher --help`"
                    )))
                }
            }
        }
        Ok(spec)
    }
}

fn parse_crash(word: &str) -> Result<CrashWorker, SpecError> {
    let rest = &word["crash".len()..];
    let (num, suffix) = match rest.split_once('.') {
        Some((n, s)) => (n, Some(s)),
        None => (rest, None),
    };
    let index: usize = num
        .parse()
        .ok()
        .filter(|&n| n < MAX_WORKERS)
        .ok_or_else(|| {
            SpecError(format!(
                "{word:?}: crashN needs a worker number 0..{}",
                MAX_WORKERS - 1
            ))
        })?;
    let slow = match suffix {
        None => false,
        Some(s) if s.contains("slow") => true,
        Some(s) => {
            return Err(SpecError(format!(
                "{word:?}: unknown suffix {s:?} (only .slow)"
            )))
        }
    };
    Ok(CrashWorker { index, slow })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<SoakSpec, SpecError> {
        SoakSpec::parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn the_readme_example_parses() {
        let s = parse("4 crash1 grow").unwrap();
        assert_eq!(s.workers, 4);
        assert_eq!(
            s.crash_workers,
            vec![CrashWorker {
                index: 1,
                slow: false
            }]
        );
        assert!(s.grow && !s.shrink && !s.crash_sink);
        let s = parse("3 crash0 crash1.slow crash2.slow crash-sink grow-and-shrink crash-source")
            .unwrap();
        assert_eq!(s.crash_workers.len(), 3);
        assert!(s.crash_workers[1].slow && s.grow && s.shrink && s.crash_sink && s.crash_source);
    }

    #[test]
    fn bad_words_are_usage_errors() {
        assert!(parse("").is_err());
        assert!(parse("0").is_err());
        assert!(parse("x").is_err());
        assert!(parse("2 crashX").is_err());
        assert!(parse("2 crash1.fast").is_err());
        assert!(parse("2 frobnicate").is_err());
        assert!(parse("2 run_custom99").is_err());
        assert!(parse("reset-only").is_err());
    }

    #[test]
    fn names_and_indices_round_trip() {
        for i in 0..MAX_WORKERS {
            assert_eq!(worker_index(&worker_name(i)), Some(i));
        }
        assert_eq!(worker_index("worker0"), None);
        assert_eq!(worker_index("sink"), None);
    }
}
