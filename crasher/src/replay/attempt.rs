//! One try of a replay or shrink: a child `crasher` soak with the recorded
//! arguments and seed, `--on-failure kill`, its own run directory, and the
//! fault schedule to replay; its verdict and violation class are read back
//! from its run.json.
//!
//! The child runs in its own process group and dies with this process
//! (`procs::Proc`); at Ctrl-C or SIGTERM it is asked to stop (SIGTERM, so
//! its supervisor tears its cluster down), then killed, and always reaped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tokio::sync::watch;
use triage::record::{Decision, RunRecord};

use crate::exit;

/// Options replay sets itself, removed from the recorded arguments
/// (`name` and whether it takes a value).
pub const SET_BY_REPLAY: &[(&str, bool)] = &[
    ("--run-dir", true),
    ("--seed", true),
    ("--on-failure", true),
    ("--replay-schedule", true),
    ("--force", false),
];

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The soak's arguments (without the options replay sets).
    pub base: Vec<String>,
    /// The seed.
    pub seed: u64,
    /// The faults to fire.
    pub decisions: Vec<Decision>,
    /// Options that replace the recorded ones (`--input-bytes`, `--keys`,
    /// `--duration`), as shrink shortens the run.
    pub overrides: Vec<(String, String)>,
}

impl Plan {
    /// The child's arguments, without the run directory and schedule file.
    pub fn args(&self) -> Vec<String> {
        let names: Vec<(&str, bool)> = self
            .overrides
            .iter()
            .map(|(n, _)| (n.as_str(), true))
            .collect();
        let mut v = strip_options(&self.base, &names);
        for (n, val) in &self.overrides {
            v.push(n.clone());
            v.push(val.clone());
        }
        v.push("--seed".into());
        v.push(self.seed.to_string());
        v.push("--on-failure".into());
        v.push("kill".into());
        v
    }

    /// The value of option `name` in force (an override, else the
    /// recorded one), if given.
    pub fn option(&self, name: &str) -> Option<String> {
        if let Some((_, v)) = self.overrides.iter().rev().find(|(n, _)| n == name) {
            return Some(v.clone());
        }
        let mut it = self.base.iter();
        let mut found = None;
        while let Some(a) = it.next() {
            if a == name {
                found = it.next().cloned();
            } else if let Some(v) = a.strip_prefix(&format!("{name}=")) {
                found = Some(v.to_owned());
            }
        }
        found
    }

    /// Sets option `name` to `value`, replacing any recorded value.
    pub fn set(&mut self, name: &str, value: String) {
        self.overrides.retain(|(n, _)| n != name);
        self.overrides.push((name.to_owned(), value));
    }
}

/// `args` without the options in `names` (`--x v` and `--x=v` forms;
/// flags take no value).
pub fn strip_options(args: &[String], names: &[(&str, bool)]) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let hit = names.iter().find(|(n, _)| {
            a == n || (a.starts_with(n) && a.as_bytes().get(n.len()) == Some(&b'='))
        });
        match hit {
            Some((n, takes_value)) => {
                if *takes_value && a == n {
                    it.next();
                }
            }
            None => out.push(a.clone()),
        }
    }
    out
}

/// How one try ended.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The child's exit code (`None`: killed by a signal).
    pub code: Option<u8>,
    /// The verdict in its run.json (`holds`, `violation`...), or why there
    /// is none.
    pub verdict: String,
    /// Its violation class, if it found a violation.
    pub class: Option<String>,
    /// Its run directory.
    pub run_dir: PathBuf,
    /// Seconds it took.
    pub secs: f64,
    /// Whether it was cut short by Ctrl-C / SIGTERM.
    pub interrupted: bool,
}

impl Attempt {
    /// `violation (sanity)`, `holds`, ...
    pub fn describe(&self) -> String {
        match &self.class {
            Some(c) => format!("violation ({c}), {:.0}s", self.secs),
            None => format!(
                "{} (exit {}), {:.0}s",
                self.verdict,
                self.code.map_or("by signal".to_owned(), |c| c.to_string()),
                self.secs
            ),
        }
    }
}

/// Runs `f` in a runtime with the interrupt watch installed (Ctrl-C and
/// SIGTERM are seen by the tries, not acted on by default).
pub fn with_runtime<T>(
    f: impl FnOnce(&tokio::runtime::Runtime, &mut watch::Receiver<u32>) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let mut interrupts = rt.block_on(async { crate::soak::watch_interrupts() });
    let r = f(&rt, &mut interrupts);
    rt.shutdown_timeout(Duration::from_secs(2));
    r
}

/// Runs one try of `plan` in `dir` (created; the child's run directory is
/// `dir/run`, its output `dir/output.log`, the schedule `dir/schedule.json`).
pub async fn run(
    plan: &Plan,
    dir: &Path,
    interrupts: &mut watch::Receiver<u32>,
) -> anyhow::Result<Attempt> {
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    let schedule = dir.join("schedule.json");
    let json = serde_json::to_vec_pretty(&plan.decisions)?;
    std::fs::write(&schedule, json)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", schedule.display()))?;
    let run_dir = dir.join("run");
    let exe = std::env::current_exe()
        .map_err(|e| anyhow::anyhow!("cannot find crasher's own program: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.args(plan.args())
        .arg("--run-dir")
        .arg(&run_dir)
        .arg("--replay-schedule")
        .arg(&schedule);
    let started = std::time::Instant::now();
    let mut child = procs::Proc::spawn("replay-try", cmd, &dir.join("output.log"))?;
    let mut interrupted = false;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = crate::soak::interrupted(interrupts) => {
                interrupted = true;
                // The child's supervisor tears its cluster down at SIGTERM.
                break child.terminate(Duration::from_secs(20))?;
            }
        }
    };
    let code = status.code().and_then(|c| u8::try_from(c).ok());
    let (verdict, class) = match RunRecord::read(&run_dir.join(triage::record::FILE)) {
        Ok(rec) => (rec.verdict.clone(), super::class_of(&rec)),
        Err(e) => (format!("no record ({e})"), None),
    };
    Ok(Attempt {
        code: if interrupted {
            Some(exit::UNKNOWN)
        } else {
            code
        },
        verdict,
        class,
        run_dir,
        secs: started.elapsed().as_secs_f64(),
        interrupted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn options_are_stripped_in_both_forms_and_overrides_win() {
        let base = s(&[
            "2",
            "crash1",
            "--seed",
            "7",
            "--run-dir=x",
            "--force",
            "--keys",
            "A,B",
            "--on-failure",
            "pause",
        ]);
        assert_eq!(
            strip_options(&base, SET_BY_REPLAY),
            s(&["2", "crash1", "--keys", "A,B"])
        );
        let mut p = Plan {
            base: strip_options(&base, SET_BY_REPLAY),
            seed: 9,
            decisions: Vec::new(),
            overrides: Vec::new(),
        };
        assert_eq!(p.option("--keys").as_deref(), Some("A,B"));
        p.set("--keys", "A".into());
        assert_eq!(p.option("--keys").as_deref(), Some("A"));
        assert_eq!(
            p.args(),
            s(&[
                "2",
                "crash1",
                "--keys",
                "A",
                "--seed",
                "9",
                "--on-failure",
                "kill"
            ])
        );
    }
}
