//! `crasher shrink RUN`: delta-debugs a failing run's fault schedule to a
//! minimal one that still shows the same violation class in at least one
//! of K tries, then shortens the run itself (fewer keys, smaller input, a
//! shorter duration), within a time budget. Writes the result as a replay
//! recipe (`minimal.toml`, runnable with `crasher recipe FILE`) and a
//! report (`report.md`) in the shrink's directory (RUNS/shrink-ID/).

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde::Serialize;
use triage::record::Decision;

use super::attempt::{self, Plan};
use super::ddmin::{ddmin, Verdict};
use super::Recorded;
use crate::exit;
use crate::recipe::ReplayRecipe;

/// Arguments of `crasher shrink`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = SHRINK_HELP)]
pub struct ShrinkArgs {
    /// The failing run: its directory, its run.json, or its id under --runs.
    pub run: String,
    /// Tries per candidate: it reproduces if one of K tries shows the
    /// recorded violation class.
    #[arg(long, default_value_t = 3)]
    pub tries: u32,
    /// Time for the search (the final K tries of the result come after it).
    #[arg(long, default_value = "30m", value_parser = crate::soak::parse_duration)]
    pub budget: Duration,
    /// Where runs live (the shrink's tries, recipe and report go in
    /// RUNS/shrink-ID/).
    #[arg(long, env = "CRASHER_RUNS", default_value = "crasher-runs")]
    pub runs: PathBuf,
}

const SHRINK_HELP: &str = "\
Steps: (1) replay the whole schedule to see the class reproduce; (2) ddmin
over the recorded faults; (3) fewer keys, half the input bytes while it
still reproduces, and a duration cut to the last fault plus a margin;
(4) K final tries of the result give its reproduction rate. Each candidate
is a replay (a child crasher soak, --on-failure kill).

Exit codes: 0 a minimal schedule was written and reproduced in the final
tries; 1 it was written but did not reproduce in the final tries (flaky);
2 usage or environment error (no such run, not replayable, the run found
no violation); 3 the recorded violation did not reproduce at all, or
interrupted.";

/// The recipe file shrink writes.
#[derive(Debug, Serialize)]
struct RecipeOut<'a> {
    description: String,
    replay: &'a ReplayRecipe,
}

/// Progress on stderr: a bar in a terminal, plain lines otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new(budget: Duration) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(budget.as_secs().max(1));
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:30}] budget {percent}% {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.enable_steady_tick(Duration::from_millis(500));
            b
        });
        Progress { bar }
    }

    fn at(&self, spent: Duration, msg: &str) {
        match &self.bar {
            Some(b) => {
                b.set_position(spent.as_secs());
                b.set_message(msg.to_owned());
            }
            None => eprintln!("shrink: {:.0}s: {msg}", spent.as_secs_f64()),
        }
    }

    fn line(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.println(msg),
            None => eprintln!("{msg}"),
        }
    }

    fn done(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// The search's state: tries spent, budget, where tries go.
struct Search<'a> {
    dir: PathBuf,
    class: String,
    tries: u32,
    budget: Duration,
    started: Instant,
    spent: u32,
    interrupted: bool,
    progress: &'a Progress,
    faults: usize,
}

impl Search<'_> {
    /// Up to K tries of `plan`: Fails at the first that shows the class.
    fn test(
        &mut self,
        rt: &tokio::runtime::Runtime,
        interrupts: &mut tokio::sync::watch::Receiver<u32>,
        plan: &Plan,
        what: &str,
    ) -> anyhow::Result<Verdict> {
        for k in 1..=self.tries {
            if self.interrupted || self.started.elapsed() >= self.budget {
                return Ok(Verdict::Stop);
            }
            self.spent += 1;
            self.progress.at(
                self.started.elapsed(),
                &format!(
                    "faults {} -> {}, try {} ({what}, {k}/{})",
                    self.faults,
                    plan.decisions.len(),
                    self.spent,
                    self.tries
                ),
            );
            let at = self.dir.join(format!("try-{:03}", self.spent));
            let r = rt.block_on(attempt::run(plan, &at, interrupts))?;
            if r.interrupted {
                self.interrupted = true;
                return Ok(Verdict::Stop);
            }
            let yes = r.class.as_deref() == Some(self.class.as_str());
            self.progress.line(&format!(
                "try {} ({what}, {} faults): {}{}",
                self.spent,
                plan.decisions.len(),
                r.describe(),
                if yes { ": reproduced" } else { "" }
            ));
            if yes {
                return Ok(Verdict::Fails);
            }
        }
        Ok(Verdict::Passes)
    }
}

fn keys_of(plan: &Plan) -> Vec<String> {
    plan.option("--keys")
        .unwrap_or_else(|| "A,B,C,D,E,F,G,H,I,J".to_owned())
        .split(',')
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `plan` with only `keys`: their feeders' faults kept, the others dropped.
fn with_keys(plan: &Plan, keys: &[String]) -> Plan {
    let mut p = plan.clone();
    p.set("--keys", keys.join(","));
    p.decisions.retain(|d| {
        d.fault.as_ref().map_or(true, |f| {
            f.kind != "crash-feeder"
                || keys
                    .iter()
                    .any(|k| f.target.strip_prefix("feeder.") == Some(k.as_str()))
        })
    });
    // A `--workload KEY=SHAPE` of a dropped key would be refused.
    let mut base = Vec::new();
    let mut it = p.base.iter();
    while let Some(a) = it.next() {
        if a == "--workload" {
            if let Some(v) = it.next() {
                let kept = v
                    .split_once('=')
                    .map_or(true, |(k, _)| keys.iter().any(|x| x == k));
                if kept {
                    base.push(a.clone());
                    base.push(v.clone());
                }
            }
        } else {
            base.push(a.clone());
        }
    }
    p.base = base;
    p
}

/// Seconds after the start by which every fault of `plan` is over.
fn last_fault_end(plan: &Plan) -> f64 {
    plan.decisions
        .iter()
        .map(|d| {
            let f = d.fault.as_ref();
            d.t + f.and_then(|f| f.down_s).unwrap_or(0.0) + f.and_then(|f| f.hold_s).unwrap_or(0.0)
        })
        .fold(0.0, f64::max)
}

/// Runs `crasher shrink`.
pub fn run_shrink(a: ShrinkArgs) -> anyhow::Result<ExitCode> {
    let rec = match Recorded::load(&a.run, &a.runs) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("crasher shrink: {e:#}");
            return Ok(ExitCode::from(exit::USAGE));
        }
    };
    let Some(class) = rec.class.clone() else {
        eprintln!(
            "crasher shrink: run {} found no violation (verdict {}): nothing to shrink",
            rec.id, rec.verdict
        );
        return Ok(ExitCode::from(exit::USAGE));
    };
    let tries = a.tries.max(1);
    let dir = super::work_dir(&a.runs, "shrink")?;
    println!(
        "Shrink of {} ({}): violation ({class}), {} faults, seed {}; {tries} tries per candidate, \
         budget {}; work in {}",
        rec.id,
        rec.dir.display(),
        rec.decisions.len(),
        rec.seed,
        humantime::format_duration(a.budget),
        dir.display()
    );
    let t0 = Instant::now();
    let progress = Progress::new(a.budget);
    let result = attempt::with_runtime(|rt, interrupts| {
        let mut s = Search {
            dir: dir.clone(),
            class: class.clone(),
            tries,
            budget: a.budget,
            started: Instant::now(),
            spent: 0,
            interrupted: false,
            progress: &progress,
            faults: rec.decisions.len(),
        };
        let mut best = rec.plan();
        let mut steps = Vec::new();
        // 1. The whole schedule.
        if s.test(rt, interrupts, &best, "as recorded")? != Verdict::Fails {
            return Ok((s.spent, s.interrupted, None, steps));
        }
        steps.push(format!(
            "as recorded: {} faults reproduce",
            best.decisions.len()
        ));
        // 2. ddmin over the faults.
        let mut err = None;
        let (kept, whole) = ddmin(&best.decisions, |sub: &[Decision]| {
            let mut p = best.clone();
            p.decisions = sub.to_vec();
            match s.test(rt, interrupts, &p, "ddmin") {
                Ok(v) => v,
                Err(e) => {
                    err = Some(e);
                    Verdict::Stop
                }
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
        steps.push(format!(
            "ddmin: {} -> {} faults{}",
            best.decisions.len(),
            kept.len(),
            if whole {
                ""
            } else {
                " (stopped early: budget or interrupt)"
            }
        ));
        best.decisions = kept;
        // 3a. Fewer keys: halves while it reproduces.
        let mut keys = keys_of(&best);
        while keys.len() > 1 {
            let fewer: Vec<String> = keys[..keys.len() / 2].to_vec();
            let p = with_keys(&best, &fewer);
            match s.test(rt, interrupts, &p, "fewer keys")? {
                Verdict::Fails => {
                    steps.push(format!("keys: {} -> {}", keys.join(","), fewer.join(",")));
                    best = p;
                    keys = fewer;
                }
                _ => break,
            }
        }
        // 3b. Smaller input: halves while it reproduces.
        let mut bytes: u64 = best
            .option("--input-bytes")
            .and_then(|v| v.parse().ok())
            .unwrap_or(4_000_000);
        while bytes / 2 >= 20_000 {
            let mut p = best.clone();
            p.set("--input-bytes", (bytes / 2).to_string());
            match s.test(rt, interrupts, &p, "smaller input")? {
                Verdict::Fails => {
                    steps.push(format!("input bytes: {bytes} -> {}", bytes / 2));
                    best = p;
                    bytes /= 2;
                }
                _ => break,
            }
        }
        // 3c. A duration cut to the last fault's end plus a margin.
        let cut = (last_fault_end(&best) + 20.0).ceil() as u64;
        let now = best
            .option("--duration")
            .and_then(|d| crate::soak::parse_duration(&d).ok())
            .map(|d| d.as_secs());
        if now.map_or(true, |d| cut < d) {
            let mut p = best.clone();
            p.set("--duration", format!("{cut}s"));
            if s.test(rt, interrupts, &p, "shorter duration")? == Verdict::Fails {
                steps.push(format!(
                    "duration: {} -> {cut}s",
                    now.map_or("none".to_owned(), |d| format!("{d}s"))
                ));
                best = p;
            }
        }
        let search_secs = s.started.elapsed().as_secs_f64();
        // 4. The final reproduction rate over K tries.
        let mut hits = 0;
        let mut ran = 0;
        if !s.interrupted {
            for k in 1..=tries {
                s.spent += 1;
                progress.at(s.started.elapsed(), &format!("final rate: try {k}/{tries}"));
                let at = dir.join(format!("final-{k}"));
                let r = rt.block_on(attempt::run(&best, &at, interrupts))?;
                if r.interrupted {
                    s.interrupted = true;
                    break;
                }
                ran += 1;
                let yes = r.class.as_deref() == Some(class.as_str());
                hits += u32::from(yes);
                progress.line(&format!("final try {k}/{tries}: {}", r.describe()));
            }
        }
        steps.push(format!("search: {search_secs:.0}s"));
        Ok((s.spent, s.interrupted, Some((best, hits, ran)), steps))
    });
    progress.done();
    let (spent, interrupted, found, steps) = result?;
    let wall_s = t0.elapsed().as_secs_f64();
    let mut report = String::new();
    let _ = writeln!(report, "# Shrink of run {}\n", rec.id);
    let _ = writeln!(report, "- run: {}", rec.dir.display());
    let _ = writeln!(report, "- violation class: {class}");
    let _ = writeln!(report, "- seed: {}", rec.seed);
    let _ = writeln!(
        report,
        "- tries per candidate: {tries}; budget {}",
        humantime::format_duration(a.budget)
    );
    let _ = writeln!(report, "- tries spent: {spent}; wall time {wall_s:.0}s");
    let Some((best, hits, ran)) = found else {
        let _ = writeln!(
            report,
            "\nThe recorded violation did not reproduce in {tries} replays of the whole schedule{}: nothing shrunk.",
            if interrupted { " (interrupted)" } else { "" }
        );
        let path = dir.join("report.md");
        std::fs::write(&path, &report)?;
        println!(
            "Shrink: the violation ({class}) did not reproduce; report: {}",
            path.display()
        );
        return Ok(ExitCode::from(exit::UNKNOWN));
    };
    let _ = writeln!(
        report,
        "- faults: {} -> {}",
        rec.decisions.len(),
        best.decisions.len()
    );
    let _ = writeln!(
        report,
        "- final reproduction rate: {hits} of {ran} tries{}",
        if interrupted { " (interrupted)" } else { "" }
    );
    let _ = writeln!(report, "\n## Steps\n");
    for st in &steps {
        let _ = writeln!(report, "- {st}");
    }
    let _ = writeln!(report, "\n## Minimal schedule\n");
    for d in &best.decisions {
        let _ = writeln!(report, "- t={:.3}s {} ({})", d.t, d.what, d.source);
    }
    let replay = ReplayRecipe {
        args: strip_seedless(&best),
        seed: best.seed,
        class: Some(class.clone()),
        tries,
        decisions: best
            .decisions
            .iter()
            .map(|d| Decision {
                t: (d.t * 1000.0).round() / 1000.0,
                ..d.clone()
            })
            .collect(),
    };
    let text = toml::to_string(&RecipeOut {
        description: format!(
            "shrunk from run {}: violation ({class}) with {} of {} faults, reproduced {hits} of {ran} tries",
            rec.id,
            best.decisions.len(),
            rec.decisions.len()
        ),
        replay: &replay,
    })?;
    let recipe = dir.join("minimal.toml");
    std::fs::write(
        &recipe,
        format!("# Run it: crasher recipe {}\n{text}", recipe.display()),
    )?;
    let _ = writeln!(report, "\nRecipe: `crasher recipe {}`", recipe.display());
    let path = dir.join("report.md");
    std::fs::write(&path, &report)?;
    println!(
        "Shrink{}: faults {} -> {}, {spent} tries, final reproduction {hits} of {ran}; recipe {}; report {}",
        if interrupted { " (interrupted)" } else { "" },
        rec.decisions.len(),
        best.decisions.len(),
        recipe.display(),
        path.display()
    );
    Ok(ExitCode::from(if interrupted {
        exit::UNKNOWN
    } else if hits > 0 {
        exit::HOLDS
    } else {
        exit::VIOLATION
    }))
}

/// The soak arguments of `plan` with its overrides, without the options
/// every try sets itself (seed, on-failure).
fn strip_seedless(plan: &Plan) -> Vec<String> {
    attempt::strip_options(&plan.args(), attempt::SET_BY_REPLAY)
}
