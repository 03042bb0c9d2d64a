//! `crasher replay RUN` and `crasher shrink RUN`: run a recorded fault
//! schedule again, and delta-debug it to a minimal one (docs/replay.md).
//!
//! Both read the run's `run.json` ([`Recorded`]): its arguments, seed and
//! fault decisions. Every try is a child `crasher` soak ([`attempt`]) with
//! the recorded arguments and seed, `--on-failure kill`, and the random
//! fault loops replaced by the scripted executor (`soak::scripted`).

pub mod attempt;
pub mod ddmin;
pub mod shrink;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use triage::record::{Decision, RunRecord};

use crate::exit;
use attempt::{Attempt, Plan};

/// Arguments of `crasher replay`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = REPLAY_HELP)]
pub struct ReplayArgs {
    /// The recorded run: its directory, its run.json, or its id under --runs.
    pub run: String,
    /// Replay up to N times, stopping at the first try that shows the
    /// recorded violation class again.
    #[arg(long, default_value_t = 1)]
    pub times: u32,
    /// Where runs live (the replay's tries go in RUNS/replay-ID/).
    #[arg(long, env = "CRASHER_RUNS", default_value = "crasher-runs")]
    pub runs: PathBuf,
}

const REPLAY_HELP: &str = "\
A replay is a fresh soak with the recorded arguments and seed whose random
fault loops are replaced by the recorded faults, each fired at its recorded
offset from the start (same actions, same glyphs). It promises the same
decisions, not the same timing: the cluster may be elsewhere in its
protocol when a fault fires. It ends with `same class: yes|no`: yes when
the replay found the recorded violation class (the failed check, e.g.
`sanity`, `process-death`, `liveness: join`), or, for a recorded run that
found nothing, when the replay found nothing either.

Exit codes: the verdict of the last try, as for a soak: 0 holds,
1 violation, 2 usage or environment error (also: the run cannot be
replayed, e.g. it predates replayable schedules), 3 verdict unknown.";

/// A recorded run, ready to be replayed.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Its run directory.
    pub dir: PathBuf,
    /// Its run id.
    pub id: String,
    /// Its soak arguments, with the options replay sets itself removed.
    pub base: Vec<String>,
    /// Its seed.
    pub seed: u64,
    /// Its fault decisions, each with a replayable fault.
    pub decisions: Vec<Decision>,
    /// Its verdict (`holds`, `violation`, `unknown`...).
    pub verdict: String,
    /// Its violation class, if it found a violation.
    pub class: Option<String>,
}

/// The violation class of a run record: the failed check's name, or
/// `None` if the run found no violation.
pub fn class_of(rec: &RunRecord) -> Option<String> {
    if rec.verdict != "violation" {
        return None;
    }
    Some(
        rec.checks
            .iter()
            .find(|c| c.status == "failed")
            .map(|c| c.name.clone())
            .unwrap_or_else(|| "violation".to_owned()),
    )
}

/// The run directory named by `run`: a directory, a run.json, or an id
/// under `runs`.
fn run_dir_of(run: &str, runs: &Path) -> PathBuf {
    let p = PathBuf::from(run);
    if p.is_dir() {
        p
    } else if p.file_name().is_some_and(|n| n == triage::record::FILE) && p.is_file() {
        p.parent().map(Path::to_owned).unwrap_or_default()
    } else {
        runs.join(run)
    }
}

impl Recorded {
    /// Reads the run `run` (see [`ReplayArgs::run`]): errors say why it
    /// cannot be replayed (no record, still running, not a soak, recorded
    /// before replayable schedules, a fault kind replay cannot carry out).
    pub fn load(run: &str, runs: &Path) -> anyhow::Result<Recorded> {
        let dir = run_dir_of(run, runs);
        let path = dir.join(triage::record::FILE);
        if !path.is_file() {
            anyhow::bail!(
                "{}: no run record there (give a run directory, its run.json, or a run id under --runs {})",
                path.display(),
                runs.display()
            );
        }
        let rec = RunRecord::read(&path)?;
        if rec.verdict == "running" || rec.verdict.is_empty() {
            anyhow::bail!(
                "{}: the run has no verdict yet (still running, or its supervisor was killed)",
                path.display()
            );
        }
        let mut argv = vec!["crasher".to_owned()];
        argv.extend(rec.args.iter().cloned());
        let is_soak = <crate::cli::Cli as clap::Parser>::try_parse_from(&argv)
            .map(|c| c.command.is_none() && !c.soak.words.is_empty())
            .unwrap_or(false);
        if !is_soak {
            anyhow::bail!(
                "{}: its arguments {:?} are not a soak's (`crasher NUM ...`): only soaks can be replayed",
                path.display(),
                rec.args
            );
        }
        if rec.decisions.iter().any(|d| d.fault.is_none()) {
            anyhow::bail!(
                "{}: this run predates replayable schedules (its decisions have no `fault`): \
                 run it again with --seed {} to get a replayable record",
                path.display(),
                rec.seed
            );
        }
        crate::soak::scripted::check(&rec.decisions)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(Recorded {
            id: rec.run_id.clone(),
            base: attempt::strip_options(&rec.args, attempt::SET_BY_REPLAY),
            seed: rec.seed,
            decisions: rec.decisions.clone(),
            verdict: rec.verdict.clone(),
            class: class_of(&rec),
            dir,
        })
    }

    /// The plan that replays this run as recorded.
    pub fn plan(&self) -> Plan {
        Plan {
            base: self.base.clone(),
            seed: self.seed,
            decisions: self.decisions.clone(),
            overrides: Vec::new(),
        }
    }

    /// The recorded class in words.
    pub fn describe(&self) -> String {
        match &self.class {
            Some(c) => format!("violation ({c})"),
            None => self.verdict.clone(),
        }
    }
}

/// Whether `a` shows what was recorded: the same violation class, or no
/// violation when none was recorded.
pub fn same_class(recorded: Option<&str>, a: &Attempt) -> bool {
    match recorded {
        Some(c) => a.class.as_deref() == Some(c),
        None => a.class.is_none() && a.code != Some(exit::USAGE),
    }
}

/// A directory `RUNS/PREFIX-ID` for the tries of a replay or shrink.
pub fn work_dir(runs: &Path, prefix: &str) -> anyhow::Result<PathBuf> {
    let dir = runs.join(format!("{prefix}-{}", crate::run::rundir::new_run_id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

/// Runs `crasher replay`.
pub fn run_replay(a: ReplayArgs) -> anyhow::Result<ExitCode> {
    let rec = match Recorded::load(&a.run, &a.runs) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("crasher replay: {e:#}");
            return Ok(ExitCode::from(exit::USAGE));
        }
    };
    let dir = work_dir(&a.runs, "replay")?;
    println!(
        "Replay of {} ({}): recorded {}, {} faults, seed {}; tries in {}",
        rec.id,
        rec.dir.display(),
        rec.describe(),
        rec.decisions.len(),
        rec.seed,
        dir.display()
    );
    let plan = rec.plan();
    let times = a.times.max(1);
    let code = attempt::with_runtime(|rt, interrupts| {
        let mut last = None;
        let mut same = 0;
        let mut ran = 0;
        for n in 1..=times {
            let at = dir.join(format!("try-{n}"));
            let r = rt.block_on(attempt::run(&plan, &at, interrupts))?;
            ran += 1;
            let yes = same_class(rec.class.as_deref(), &r);
            println!(
                "try {n}/{times}: {} in {}: same class: {}",
                r.describe(),
                r.run_dir.display(),
                if yes { "yes" } else { "no" }
            );
            if r.interrupted {
                println!("interrupted");
                return Ok(exit::UNKNOWN);
            }
            same += u32::from(yes);
            let stop = yes && rec.class.is_some();
            last = Some(r);
            if stop {
                break;
            }
        }
        let Some(last) = last else {
            return Ok(exit::UNKNOWN);
        };
        // A violation reproduced in any try; a clean run clean in all.
        let yes = if rec.class.is_some() {
            same > 0
        } else {
            same == ran
        };
        println!(
            "Replay: recorded {}, replayed {}: same class: {} ({same} of {ran} tries)",
            rec.describe(),
            last.describe(),
            if yes { "yes" } else { "no" }
        );
        Ok(last.code.map_or(exit::UNKNOWN, |c| c))
    })?;
    Ok(ExitCode::from(code))
}

/// Runs a replay recipe (`crasher recipe FILE` with a `[replay]` table):
/// up to `tries` replays, stopping at the first that shows its class; exit
/// code as `crasher replay`.
pub fn run_recipe(
    origin: &str,
    description: &str,
    rp: &crate::recipe::ReplayRecipe,
    runs: &Path,
) -> anyhow::Result<ExitCode> {
    let dir = work_dir(runs, "recipe")?;
    println!(
        "Replay recipe {origin}: {description}; {} faults, seed {}; tries in {}",
        rp.decisions.len(),
        rp.seed,
        dir.display()
    );
    let plan = Plan {
        base: attempt::strip_options(&rp.args, attempt::SET_BY_REPLAY),
        seed: rp.seed,
        decisions: rp.decisions.clone(),
        overrides: Vec::new(),
    };
    let tries = rp.tries.max(1);
    let code = attempt::with_runtime(|rt, interrupts| {
        let mut code = exit::UNKNOWN;
        for n in 1..=tries {
            let r = rt.block_on(attempt::run(
                &plan,
                &dir.join(format!("try-{n}")),
                interrupts,
            ))?;
            let yes = same_class(rp.class.as_deref(), &r);
            println!(
                "try {n}/{tries}: {} in {}: same class: {}",
                r.describe(),
                r.run_dir.display(),
                if yes { "yes" } else { "no" }
            );
            code = r.code.unwrap_or(exit::UNKNOWN);
            if r.interrupted || (yes && rp.class.is_some()) {
                break;
            }
        }
        Ok(code)
    })?;
    Ok(ExitCode::from(code))
}
