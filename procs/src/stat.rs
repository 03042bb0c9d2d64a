//! `/proc/PID/stat`, read in one place: a process's state, times and
//! resident memory, for the supervisor (stopped? zombie?), the run
//! record's sampler (CPU, memory) and pid identity (start time).

/// The fields of `/proc/PID/stat` crasher uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// `R`, `S`, `D`, `T` (stopped), `t` (traced), `Z` (zombie), `X`...
    pub state: char,
    /// Parent's pid.
    pub ppid: u32,
    /// Process group id.
    pub pgrp: u32,
    /// User time, in clock ticks ([`ticks_per_second`]).
    pub utime: u64,
    /// System time, in clock ticks.
    pub stime: u64,
    /// Start time, in clock ticks since boot: with the pid, it identifies a
    /// process even after the pid is reused.
    pub starttime: u64,
    /// Resident set size, in pages ([`page_size`]).
    pub rss_pages: u64,
}

impl Stat {
    /// Parses the text of a stat file. The command name (field 2) may hold
    /// spaces and parentheses: fields are counted after its last `)`.
    pub fn parse(text: &str) -> Option<Stat> {
        let (_, rest) = text.rsplit_once(')')?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        // `rest` starts at field 3 (state): field N is f[N - 3].
        let num = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
        Some(Stat {
            state: f.first()?.chars().next()?,
            ppid: u32::try_from(num(4)?).ok()?,
            pgrp: u32::try_from(num(5)?).ok()?,
            utime: num(14)?,
            stime: num(15)?,
            starttime: num(22)?,
            rss_pages: num(24)?,
        })
    }

    /// Whether the process is stopped (SIGSTOP or traced).
    pub fn stopped(&self) -> bool {
        matches!(self.state, 'T' | 't')
    }

    /// Whether the process has exited and waits to be reaped (or is gone).
    pub fn dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }
}

/// The stat of process `pid`, if it exists.
pub fn stat(pid: u32) -> Option<Stat> {
    Stat::parse(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Clock ticks per second of the times in [`Stat`] (`sysconf(_SC_CLK_TCK)`,
/// read from the system rather than assumed).
pub fn ticks_per_second() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|v| u64::try_from(v).ok())
        .filter(|&v| v > 0)
        .unwrap_or(100)
}

/// Bytes per page of [`Stat::rss_pages`].
pub fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|v| u64::try_from(v).ok())
        .filter(|&v| v > 0)
        .unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_with_spaces_and_parentheses_is_skipped() {
        let text = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    7 3 0 0 20 0 1 0 123456 1000000 250 18446744073709551615";
        let s = Stat::parse(text).unwrap();
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, 1);
        assert_eq!(s.pgrp, 4242);
        assert_eq!((s.utime, s.stime), (7, 3));
        assert_eq!(s.starttime, 123456);
        assert_eq!(s.rss_pages, 250);
        assert!(!s.stopped() && !s.dead());
        assert_eq!(Stat::parse("garbage"), None);
    }

    #[test]
    fn this_process_is_running_and_has_memory() {
        let s = stat(std::process::id()).unwrap();
        assert!(!s.stopped() && !s.dead());
        assert!(s.rss_pages * page_size() > 1024 * 1024);
        assert!(ticks_per_second() >= 100);
    }
}
