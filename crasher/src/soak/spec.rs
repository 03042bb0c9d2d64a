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
    /// `crash-primary`: crash whichever node is the primary now (the
    /// profile's `[primary]` query says which), and restart it.
    pub crash_primary: bool,
    /// `pause-primary`: SIGSTOP whichever node is the primary now for a
    /// while (long enough, with `--timing pause_min`, for a failover), then
    /// SIGCONT it.
    pub pause_primary: bool,
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
    /// Disk faults: `power-loss`, `power-loss-all`, `corrupt`, `truncate`
    /// (see `diskfaults.rs`).
    pub disk: DiskFaults,
    /// Network faults (`partition`, `isolate`, `one-way`, `bridge`,
    /// `flaky`; need `--network lab`), in the order given, without repeats.
    pub net: Vec<NetFault>,
    /// Faults aimed at the sink's protocol events (`crash-at-prepare`...;
    /// see `soak::targeted`), in the order given, without repeats.
    pub targeted: Vec<Targeted>,
}

/// A fault word that strikes at a protocol event the sink reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Targeted {
    /// SIGKILL the worker whose PHASE1 the sink just voted yes on, before
    /// it hears the vote (so before its PHASE2); restart it.
    CrashAtPrepare,
    /// SIGSTOP that worker at that instant; SIGCONT it later.
    PauseAtPrepare,
    /// SIGKILL the sink once it has recorded a vote, before it sends it;
    /// restart it.
    CrashSinkAtPrepare,
    /// SIGKILL the worker whose PHASE2 commit just reached the sink,
    /// before the sink records it; restart it.
    CrashAtCommit,
}

impl Targeted {
    /// Every targeted fault word.
    pub const ALL: [Targeted; 4] = [
        Targeted::CrashAtPrepare,
        Targeted::PauseAtPrepare,
        Targeted::CrashSinkAtPrepare,
        Targeted::CrashAtCommit,
    ];

    /// The word on the command line (also its fault kind).
    pub fn word(self) -> &'static str {
        match self {
            Targeted::CrashAtPrepare => "crash-at-prepare",
            Targeted::PauseAtPrepare => "pause-at-prepare",
            Targeted::CrashSinkAtPrepare => "crash-sink-at-prepare",
            Targeted::CrashAtCommit => "crash-at-commit",
        }
    }
}

/// The disk fault words.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskFaults {
    /// `power-loss`: SIGKILL a random node, drop its un-synced writes, restart it.
    pub power_loss: bool,
    /// `power-loss-all`: the same for every node at once.
    pub power_loss_all: bool,
    /// `corrupt`: flip a bit in a data file of a random node while it is down.
    pub corrupt: bool,
    /// `truncate`: cut a data file of a random node short while it is down.
    pub truncate: bool,
}

impl DiskFaults {
    /// Whether any disk fault is asked for.
    pub fn any(&self) -> bool {
        self.power_loss || self.power_loss_all || self.corrupt || self.truncate
    }

    /// Whether a power loss is asked for (these need `--disk lossy`).
    pub fn needs_lossy(&self) -> bool {
        self.power_loss || self.power_loss_all
    }
}

/// A network fault word (see `soak::netfaults` and docs/network.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NetFault {
    /// Two random halves, a majority and a minority, cut from each other.
    Partition,
    /// One random node cut from every other node and from the lab.
    Isolate,
    /// Packets from one random node to another dropped, one way only.
    OneWay,
    /// Two halves that cannot talk, and one node that talks to both.
    Bridge,
    /// A random node's link drops a share of its packets.
    Flaky,
}

impl NetFault {
    /// Every network fault word.
    pub const ALL: [NetFault; 5] = [
        NetFault::Partition,
        NetFault::Isolate,
        NetFault::OneWay,
        NetFault::Bridge,
        NetFault::Flaky,
    ];

    /// The word on the command line.
    pub fn word(self) -> &'static str {
        match self {
            NetFault::Partition => "partition",
            NetFault::Isolate => "isolate",
            NetFault::OneWay => "one-way",
            NetFault::Bridge => "bridge",
            NetFault::Flaky => "flaky",
        }
    }
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
                "crash-primary" => spec.crash_primary = true,
                "pause-primary" => spec.pause_primary = true,
                "pause" => spec.pause = true,
                "no-ack-progress" => spec.no_ack_progress = true,
                "no-registry-progress" | "no-registry-process" => spec.no_registry_progress = true,
                "no-sanity" => spec.no_sanity = true,
                "no-clean-old-gzip-files" => spec.no_clean_old_gzip_files = true,
                "grow" => spec.grow = true,
                "power-loss" => spec.disk.power_loss = true,
                "power-loss-all" => spec.disk.power_loss_all = true,
                "corrupt" => spec.disk.corrupt = true,
                "truncate" => spec.disk.truncate = true,
                w if Targeted::ALL.iter().any(|f| f.word() == w) => {
                    if let Some(f) = Targeted::ALL.into_iter().find(|f| f.word() == w) {
                        if !spec.targeted.contains(&f) {
                            spec.targeted.push(f);
                        }
                    }
                }
                w if NetFault::ALL.iter().any(|f| f.word() == w) => {
                    let f = NetFault::ALL
                        .into_iter()
                        .find(|f| f.word() == w)
                        .unwrap_or(NetFault::Partition);
                    if !spec.net.contains(&f) {
                        spec.net.push(f);
                    }
                }
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

impl SoakSpec {
    /// Refuses fault words that can never fire in this cluster (a usage
    /// error, not a run that passes without them): crashing a worker that
    /// is never started, shrinking a cluster of the initializer alone.
    pub fn check_possible(&self) -> Result<(), SpecError> {
        for c in &self.crash_workers {
            if c.index >= self.workers && !self.grow {
                return Err(SpecError(format!(
                    "crash{}: the cluster has workers 0..{} and does not grow (add `grow`), so \
                     worker {} never exists",
                    c.index,
                    self.workers - 1,
                    c.index
                )));
            }
        }
        if self.shrink && self.workers == 1 && !self.grow {
            return Err(SpecError(
                "shrink: a cluster of 1 worker has only the initializer, which is never shrunk \
                 (start 2 or more workers, or add `grow`)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The fault kinds this run asks for, as the schedule counts them
    /// (`crash-sink`, `crashN`, `crash-source`, `pause`, `join`, `shrink`).
    pub fn fault_kinds(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.crash_sink {
            v.push("crash-sink".to_owned());
        }
        for c in &self.crash_workers {
            v.push(format!("crash{}", c.index));
        }
        if self.crash_source {
            v.push("crash-source".to_owned());
        }
        if self.crash_primary {
            v.push("crash-primary".to_owned());
        }
        if self.pause_primary {
            v.push("pause-primary".to_owned());
        }
        if self.pause {
            v.push("pause".to_owned());
        }
        if self.grow {
            v.push("join".to_owned());
        }
        if self.shrink {
            v.push("shrink".to_owned());
        }
        let d = &self.disk;
        for (on, word) in [
            (d.power_loss, "power-loss"),
            (d.power_loss_all, "power-loss-all"),
            (d.corrupt, "corrupt"),
            (d.truncate, "truncate"),
        ] {
            if on {
                v.push(word.to_owned());
            }
        }
        v.extend(self.net.iter().map(|f| f.word().to_owned()));
        v.extend(self.targeted.iter().map(|f| f.word().to_owned()));
        v
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
        let s = parse("3 power-loss power-loss-all corrupt truncate").unwrap();
        assert!(s.disk.power_loss && s.disk.power_loss_all && s.disk.corrupt && s.disk.truncate);
        assert!(s.disk.needs_lossy());
        assert!(!parse("3 corrupt").unwrap().disk.needs_lossy());
        assert!(parse("3 power-loss-some").is_err());
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
    fn faults_that_can_never_fire_are_refused() {
        assert!(parse("2 crash5").unwrap().check_possible().is_err());
        assert!(parse("2 crash5 grow").unwrap().check_possible().is_ok());
        assert!(parse("1 shrink").unwrap().check_possible().is_err());
        assert!(parse("1 grow-and-shrink").unwrap().check_possible().is_ok());
        assert!(parse("2 crash1 shrink").unwrap().check_possible().is_ok());
    }

    #[test]
    fn network_fault_words_parse() {
        let s = parse("3 crash1 partition isolate one-way bridge flaky partition").unwrap();
        assert_eq!(s.net, NetFault::ALL.to_vec());
        assert!(parse("3").unwrap().net.is_empty());
        assert!(parse("3 oneway").is_err());
    }

    #[test]
    fn targeted_fault_words_parse() {
        let s = parse("3 crash-at-prepare crash1 pause-at-prepare crash-sink-at-prepare crash-at-commit crash-at-prepare")
            .unwrap();
        assert_eq!(s.targeted, Targeted::ALL.to_vec());
        assert_eq!(s.crash_workers.len(), 1);
        assert!(s
            .fault_kinds()
            .contains(&"crash-sink-at-prepare".to_owned()));
        assert!(parse("3 crash-at-prepare2").is_err());
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
