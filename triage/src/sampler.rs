//! CPU and memory of the run's processes, sampled every few seconds for the
//! run record: a leak or a spinning worker shows up in the report next to
//! the faults that caused it.

use std::collections::HashMap;
use std::time::Instant;

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use crate::record::ProcSample;

/// Clock ticks per second of `/proc/<pid>/stat` times (Linux's `USER_HZ`,
/// 100 on every architecture crasher runs on).
const USER_HZ: f64 = 100.0;

/// Samples given processes. Cheap enough to call every 2 s: it reads only
/// the `/proc` entries of the pids asked for, never the whole process table.
///
/// Memory comes from sysinfo. CPU does not: sysinfo 0.32 computes a
/// process's CPU use only when the whole process table is refreshed, so
/// the sampler reads the pid's user and system time from
/// `/proc/<pid>/stat` itself and divides the difference by the wall time.
pub struct Sampler {
    sys: System,
    /// CPU ticks and when they were read, by pid.
    ticks: HashMap<u32, (u64, Instant)>,
}

impl Default for Sampler {
    fn default() -> Self {
        Self::new()
    }
}

/// User plus system time of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): state is the
    // 3rd field of the whole line, utime the 14th and stime the 15th.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut f = rest.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

impl Sampler {
    /// A sampler with nothing measured yet (the first sample of a pid
    /// reports 0 % CPU: usage is a difference between two samples).
    pub fn new() -> Sampler {
        Sampler {
            sys: System::new(),
            ticks: HashMap::new(),
        }
    }

    /// CPU and resident memory of each `(role, name, pid)`; processes that
    /// are gone are left out.
    pub fn sample<R, N>(&mut self, procs: &[(R, N, u32)]) -> Vec<ProcSample>
    where
        R: AsRef<str>,
        N: AsRef<str>,
    {
        let pids: Vec<Pid> = procs.iter().map(|p| Pid::from_u32(p.2)).collect();
        self.sys.refresh_processes_specifics(
            ProcessesToUpdate::Some(&pids),
            true,
            ProcessRefreshKind::new().with_memory(),
        );
        let now = Instant::now();
        let mut seen = HashMap::with_capacity(procs.len());
        let out = procs
            .iter()
            .filter_map(|(role, name, pid)| {
                let p = self.sys.process(Pid::from_u32(*pid))?;
                let ticks = cpu_ticks(*pid)?;
                let cpu = match self.ticks.get(pid) {
                    Some((before, at)) if ticks >= *before => {
                        let dt = now.duration_since(*at).as_secs_f64();
                        if dt > 0.0 {
                            ((ticks - before) as f64 / USER_HZ / dt * 100.0) as f32
                        } else {
                            0.0
                        }
                    }
                    _ => 0.0,
                };
                seen.insert(*pid, (ticks, now));
                Some(ProcSample {
                    role: role.as_ref().to_owned(),
                    name: name.as_ref().to_owned(),
                    pid: *pid,
                    cpu_percent: cpu,
                    memory_bytes: p.memory(),
                })
            })
            .collect();
        // Forget pids not asked for any more (restarted processes).
        self.ticks = seen;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process_and_skips_a_dead_pid() {
        let mut s = Sampler::new();
        let me = std::process::id();
        let procs = [("supervisor", "me", me), ("worker", "ghost", u32::MAX - 1)];
        let first = s.sample(&procs);
        // Burn some CPU so the second sample has something to show.
        let mut x = 0u64;
        let t = std::time::Instant::now();
        while t.elapsed() < std::time::Duration::from_millis(300) {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let second = s.sample(&procs);
        assert_eq!(first.len(), 1, "{first:?}");
        assert_eq!(second.len(), 1, "{second:?}");
        assert_eq!(second[0].name, "me");
        assert!(second[0].memory_bytes > 1024 * 1024, "{second:?}");
        assert!(second[0].cpu_percent > 10.0, "{second:?}");
    }
}
