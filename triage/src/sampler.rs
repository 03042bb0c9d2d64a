//! CPU and memory of the run's processes, sampled every few seconds for the
//! run record: a leak or a spinning worker shows up in the report next to
//! the faults that caused it.

use std::collections::HashMap;
use std::time::Instant;

use procs::stat;

use crate::record::ProcSample;

/// Samples given processes. Cheap enough to call every 2 s: it reads only
/// `/proc/<pid>/stat` of the pids asked for, never the whole process table.
/// CPU is the difference of user plus system time between two samples
/// over the wall time between them; memory is the resident set.
pub struct Sampler {
    /// CPU ticks and when they were read, by pid.
    ticks: HashMap<u32, (u64, Instant)>,
    /// Clock ticks per second of the stat times (read from the system).
    hz: f64,
    /// Bytes per page of the resident set.
    page: u64,
}

impl Default for Sampler {
    fn default() -> Self {
        Self::new()
    }
}

impl Sampler {
    /// A sampler with nothing measured yet (the first sample of a pid
    /// reports 0 % CPU: usage is a difference between two samples).
    pub fn new() -> Sampler {
        Sampler {
            ticks: HashMap::new(),
            hz: stat::ticks_per_second() as f64,
            page: stat::page_size(),
        }
    }

    /// CPU and resident memory of each `(role, name, pid)`; processes that
    /// are gone are left out.
    pub fn sample<R, N>(&mut self, procs: &[(R, N, u32)]) -> Vec<ProcSample>
    where
        R: AsRef<str>,
        N: AsRef<str>,
    {
        let now = Instant::now();
        let mut seen = HashMap::with_capacity(procs.len());
        let out = procs
            .iter()
            .filter_map(|(role, name, pid)| {
                let st = stat::stat(*pid).filter(|s| !s.dead())?;
                let ticks = st.utime + st.stime;
                let cpu = match self.ticks.get(pid) {
                    Some((before, at)) if ticks >= *before => {
                        let dt = now.duration_since(*at).as_secs_f64();
                        if dt > 0.0 {
                            ((ticks - before) as f64 / self.hz / dt * 100.0) as f32
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
                    memory_bytes: st.rss_pages * self.page,
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
