//! Recipes: single scenarios run in iterations (`crasher recipe NAME`).
//!
//! A recipe is a TOML file (`recipes/NAME.toml`, or a built-in copy) with a
//! description, a number of workers and a list of steps; each iteration
//! runs the steps in order and stops at the first failure with its
//! diagnosis, as the original's testing recipes did (OK / STOPPED).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rand::Rng;
use serde::Deserialize;

use std::collections::{BTreeSet, HashMap};

use crate::exit;
use crate::run::profile::Profile;
use crate::soak::faults;
use crate::soak::harness::{Claim, Harness, Outcome};
use crate::soak::liveness::{await_live, NotLive};
use crate::soak::loops;
use crate::soak::schedule::Ticket;
use crate::soak::spec::{worker_name, SoakSpec};
use crate::soak::timings::{secs, Timings};
use crate::soak::{self, SoakArgs};

/// The recipes shipped with crasher, by name.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "run-without-errors",
        include_str!("../../recipes/run-without-errors.toml"),
    ),
    ("crash-sink", include_str!("../../recipes/crash-sink.toml")),
    (
        "crash-worker",
        include_str!("../../recipes/crash-worker.toml"),
    ),
    (
        "crash-initializer",
        include_str!("../../recipes/crash-initializer.toml"),
    ),
    (
        "crash-source",
        include_str!("../../recipes/crash-source.toml"),
    ),
    ("custom1", include_str!("../../recipes/custom1.toml")),
    ("custom2", include_str!("../../recipes/custom2.toml")),
    ("custom4", include_str!("../../recipes/custom4.toml")),
    ("custom5", include_str!("../../recipes/custom5.toml")),
    (
        "crashsink-crash0-overlap",
        include_str!("../../recipes/crashsink-crash0-overlap.toml"),
    ),
    ("custom3006", include_str!("../../recipes/custom3006.toml")),
];

/// A parsed recipe.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// One line for `--list`.
    pub description: String,
    /// Workers at start.
    #[serde(default = "two")]
    pub workers: usize,
    /// What one iteration does (none in a replay recipe).
    #[serde(default)]
    pub steps: Vec<Step>,
    /// As a soak's `run_customX` scenario: repeat the steps until the run
    /// ends (the original's run_custom3006 did), instead of once.
    #[serde(default)]
    pub repeat_in_soak: bool,
    /// A replay recipe (what `crasher shrink` writes): a soak with these
    /// arguments and seed whose faults are exactly `decisions`, fired at
    /// their times, instead of steps.
    pub replay: Option<ReplayRecipe>,
}

/// The `[replay]` table of a recipe: a recorded soak's arguments and seed
/// and the faults to fire (run.json `decisions`, each with its `fault`).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRecipe {
    /// The soak's arguments (`["2", "crash1", "--keys", "A", ...]`).
    pub args: Vec<String>,
    /// The seed.
    pub seed: u64,
    /// The violation class it reproduces (the failed check), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// Tries: replay up to this many times, stopping at the first that
    /// shows `class`.
    #[serde(default = "one")]
    pub tries: u32,
    /// The faults, in order.
    #[serde(default)]
    pub decisions: Vec<crate::soak::schedule::Decision>,
}

fn one() -> u32 {
    1
}

fn two() -> usize {
    2
}

/// One step of an iteration.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "do", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Step {
    /// SIGKILL `sink`, `initializer`, `worker:N`, `feeder:K` or `feeders`.
    Crash {
        /// What to crash.
        target: String,
    },
    /// Start it again.
    Restart {
        /// What to restart.
        target: String,
    },
    /// Sleep U[min, max) seconds (seeded), or `min` when no `max`.
    Sleep {
        /// Lower bound.
        min: f64,
        /// Upper bound.
        max: Option<f64>,
    },
    /// Wait until every member is ready.
    WaitReady {
        /// Budget in seconds (default 20).
        seconds: Option<f64>,
    },
    /// Shrink worker N away through the initializer.
    Shrink {
        /// Worker index.
        worker: usize,
    },
    /// Start worker N and join it to the cluster.
    Join {
        /// Worker index.
        worker: usize,
    },
    /// Wait for readiness, then check every key's committed output is a
    /// prefix of its input.
    Verify,
}

impl Recipe {
    /// Loads `name`: a path, `recipes/NAME.toml`, or a built-in.
    pub fn load(name: &str) -> anyhow::Result<(Recipe, String)> {
        let candidates = [
            PathBuf::from(name),
            Path::new("recipes").join(format!("{name}.toml")),
        ];
        if let Some(p) = candidates.iter().find(|p| p.is_file()) {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            let origin = p.display().to_string();
            return Ok((Recipe::parse(&text, &origin)?, origin));
        }
        match BUILTIN.iter().find(|(n, _)| *n == name) {
            Some((n, text)) => Ok((
                Recipe::parse(text, &format!("builtin:{n}"))?,
                format!("builtin:{n}"),
            )),
            None => anyhow::bail!(
                "no recipe {name:?}; known: {}",
                BUILTIN
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// Parses recipe text; errors name the origin, line and field.
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<Recipe> {
        let r: Recipe = toml::from_str(text)
            .map_err(|e| anyhow::anyhow!("{origin}: {}", e.to_string().trim_end()))?;
        if r.workers == 0 || r.workers > soak::spec::MAX_WORKERS {
            anyhow::bail!(
                "{origin}: field workers: must be 1..{}",
                soak::spec::MAX_WORKERS
            );
        }
        if let Some(rp) = &r.replay {
            if !r.steps.is_empty() {
                anyhow::bail!("{origin}: a recipe has either steps or a [replay] table, not both");
            }
            crate::soak::scripted::check(&rp.decisions)
                .map_err(|e| anyhow::anyhow!("{origin}: [replay] {e}"))?;
        } else if r.steps.is_empty() {
            anyhow::bail!("{origin}: missing field `steps` (or a [replay] table)");
        }
        for s in &r.steps {
            if let Step::Crash { target } | Step::Restart { target } = s {
                Target::parse(target)
                    .map_err(|e| anyhow::anyhow!("{origin}: field target: {e}"))?;
            }
        }
        Ok(r)
    }
}

enum Target {
    Sink,
    Worker(usize),
    Feeder(String),
    Feeders,
}

impl Target {
    fn parse(s: &str) -> Result<Target, String> {
        match s {
            "sink" => Ok(Target::Sink),
            "initializer" => Ok(Target::Worker(0)),
            "feeders" => Ok(Target::Feeders),
            _ => {
                if let Some(n) = s.strip_prefix("worker:") {
                    n.parse()
                        .map(Target::Worker)
                        .map_err(|_| format!("{s:?}: bad worker number"))
                } else if let Some(k) = s.strip_prefix("feeder:") {
                    Ok(Target::Feeder(k.to_owned()))
                } else {
                    Err(format!(
                        "{s:?}: expected sink, initializer, worker:N, feeder:K or feeders"
                    ))
                }
            }
        }
    }
}

/// Arguments of `crasher recipe`.
#[derive(Debug, Clone, clap::Args)]
pub struct RecipeArgs {
    /// Recipe name (see --list) or path to a recipe file.
    #[arg(required_unless_present = "list")]
    pub name: Option<String>,
    /// List the recipes with a line each.
    #[arg(long)]
    pub list: bool,
    /// Iterations to run (stops at the first failure).
    #[arg(long, default_value_t = 100)]
    pub iterations: u64,
    /// The cluster and run options shared with the soak.
    #[command(flatten)]
    pub soak: SoakArgs,
}

/// Runs `crasher recipe`.
pub fn run(args: RecipeArgs) -> anyhow::Result<ExitCode> {
    if args.list {
        for (name, text) in BUILTIN {
            let r = Recipe::parse(text, name)?;
            println!("{name:<26} {}", r.description);
        }
        return Ok(ExitCode::from(exit::HOLDS));
    }
    let name = args.name.clone().unwrap_or_default();
    let (recipe, origin) = Recipe::load(&name)?;
    if let Some(rp) = &recipe.replay {
        return crate::replay::run_recipe(&origin, &recipe.description, rp, &args.soak.runs);
    }
    let profile = Profile::load(&args.soak.profile)?;
    let mut timings = Timings::default();
    timings
        .apply(&args.soak.timings)
        .map_err(anyhow::Error::msg)?;
    let spec = SoakSpec {
        workers: recipe.workers,
        ..SoakSpec::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let code = rt.block_on(async {
        let mut p = soak::prepare(&args.soak, &spec, profile, timings).await?;
        p.h.out
            .line(&format!("Recipe {name} ({origin}): {}", recipe.description));
        let outcome = tokio::select! {
            r = iterate(&p.h, &spec, &recipe, args.iterations) => r,
            _ = soak::interrupted(&mut p.interrupts) => Err("interrupted".to_owned()),
        };
        let code = match outcome {
            Ok(()) => {
                p.h.out
                    .line(&format!("OK: {} iterations of {name}", args.iterations));
                exit::HOLDS
            }
            Err(why) if why == "interrupted" => exit::UNKNOWN,
            Err(why) => {
                p.h.out.line(&format!("STOPPED: {why}"));
                match p.h.outcome() {
                    Some((Outcome::Environment(_), _)) => exit::USAGE,
                    Some((Outcome::Unknown(_), _)) => exit::UNKNOWN,
                    _ => exit::VIOLATION,
                }
            }
        };
        p.h.finish(Outcome::Interrupted);
        p.h.cluster(|c| c.teardown(Duration::from_secs(2))).await;
        anyhow::Ok(code)
    })?;
    rt.shutdown_timeout(Duration::from_secs(2));
    Ok(ExitCode::from(code))
}

async fn iterate(
    h: &Arc<Harness>,
    spec: &SoakSpec,
    recipe: &Recipe,
    iterations: u64,
) -> Result<(), String> {
    if let Err(o) = soak::start_up(h, spec).await {
        h.finish(o.clone());
        return Err(format!("start-up: {o:?}"));
    }
    let monitor = tokio::spawn(loops::monitor(h.clone()));
    let mut steps = StepRunner::new(h, "recipe", true);
    let result = async {
        for i in 1..=iterations {
            for step in &recipe.steps {
                if let Some((o, _)) = h.outcome() {
                    return Err(format!("iteration {i}: {o:?}"));
                }
                steps
                    .run(step)
                    .await
                    .map_err(|e| format!("iteration {i}: {}", e.settle(h, "recipe")))?;
            }
            h.out.line(&format!("iteration {i}: OK"));
        }
        Ok(())
    }
    .await;
    monitor.abort();
    result
}

/// Why a step failed.
#[derive(Debug)]
pub enum StepError {
    /// It failed outright (a process not running, a refused request,
    /// data that does not verify).
    Failed(String),
    /// A wait for the cluster did not end in progress (see
    /// [`soak::liveness::await_live`]).
    NotLive {
        /// What was waited for.
        what: String,
        /// How the wait ended.
        why: NotLive,
        /// Its budget of quiet time.
        budget: Duration,
    },
}

impl StepError {
    /// Ends the run as the failure says (a violation of `check`, a
    /// liveness violation, or an unknown verdict) and describes it.
    pub fn settle(&self, h: &Harness, check: &str) -> String {
        match self {
            StepError::Failed(e) => {
                h.violation(check, e.clone());
                e.clone()
            }
            StepError::NotLive { what, why, budget } => {
                why.conclude(h, check, what, *budget);
                format!("{what}: {}", why.describe(*budget))
            }
        }
    }
}

impl From<String> for StepError {
    fn from(e: String) -> Self {
        StepError::Failed(e)
    }
}

/// Runs recipe steps against a harness, one at a time, with the same fault
/// actions as the soak's loops (`soak::faults`). A crashed process stays
/// claimed, and its fault in progress, until a later step restarts it.
pub struct StepRunner<'a> {
    h: &'a Arc<Harness>,
    rng: rand_chacha::ChaCha8Rng,
    held: HashMap<String, (Claim<'a>, Ticket)>,
    joined: BTreeSet<usize>,
    check_data: bool,
}

impl<'a> StepRunner<'a> {
    /// A runner whose `sleep` draws come from the loop source `name`;
    /// `check_data`: whether `verify` checks the sink's files (a soak's
    /// sanity loop already does).
    pub fn new(h: &'a Arc<Harness>, name: &str, check_data: bool) -> StepRunner<'a> {
        StepRunner {
            h,
            rng: h.rng(name),
            held: HashMap::new(),
            joined: BTreeSet::new(),
            check_data,
        }
    }

    async fn hold(&mut self, who: String, kind: &str) {
        let ticket = self.h.schedule.force(kind);
        match self.h.claim(&who).await {
            Some(c) => {
                self.held.insert(who, (c, ticket));
            }
            None => ticket.end(),
        }
    }

    fn release(&mut self, who: &str) {
        if let Some((claim, ticket)) = self.held.remove(who) {
            drop(claim);
            ticket.end();
        }
    }

    /// Runs one step.
    pub async fn run(&mut self, step: &Step) -> Result<(), StepError> {
        let h = self.h;
        let budget = secs(h.timings.grow_ready);
        match step {
            Step::Sleep { min, max } => {
                let s = match max {
                    Some(m) if m > min => self.rng.gen_range(*min..*m),
                    _ => *min,
                };
                tokio::time::sleep(secs(s)).await;
            }
            Step::Crash { target } => match Target::parse(target)? {
                Target::Sink => {
                    self.hold("sink".into(), "crash-sink").await;
                    faults::crash_sink(h).await.map_err(|e| e.to_string())?;
                }
                Target::Worker(i) => {
                    self.hold(worker_name(i), &format!("crash{i}")).await;
                    faults::crash_worker(h, i, &format!("c{i}"))
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Target::Feeder(k) => {
                    self.hold(format!("feeder.{k}"), "crash-source").await;
                    let _ = faults::crash_feeder(h, &k).await;
                }
                Target::Feeders => {
                    let keys: Vec<String> = h.settings().inputs.keys().cloned().collect();
                    for k in keys {
                        self.hold(format!("feeder.{k}"), "crash-source").await;
                        let _ = faults::crash_feeder(h, &k).await;
                    }
                }
            },
            Step::Restart { target } => match Target::parse(target)? {
                Target::Sink => {
                    faults::restart_sink(h).await.map_err(|e| e.to_string())?;
                    self.release("sink");
                }
                Target::Worker(i) => {
                    faults::restart_worker(h, i, &format!("r{i}"))
                        .await
                        .map_err(|e| e.to_string())?;
                    self.release(&worker_name(i));
                }
                Target::Feeder(_) | Target::Feeders => {
                    // The monitor restarts feeders that are not running.
                    h.out.event("restart", "rF");
                    let feeders: Vec<String> = self
                        .held
                        .keys()
                        .filter(|w| w.starts_with("feeder."))
                        .cloned()
                        .collect();
                    for f in feeders {
                        self.release(&f);
                    }
                }
            },
            Step::WaitReady { seconds } => {
                let budget = secs(seconds.unwrap_or(20.0));
                await_live(h, None, budget, |d| loops::all_ready_by(h, d))
                    .await
                    .map_err(|why| StepError::NotLive {
                        what: "waiting for every member to be ready".into(),
                        why,
                        budget,
                    })?;
            }
            Step::Shrink { worker } => {
                let name = worker_name(*worker);
                let ticket = h.schedule.force("shrink");
                let claims = (h.claim(&name).await, h.claim(&worker_name(0)).await);
                let r = faults::shrink_worker(h, *worker, Some(ticket.id())).await;
                drop(claims);
                ticket.end();
                r.map_err(|why| StepError::NotLive {
                    what: format!("shrinking {name}"),
                    why,
                    budget,
                })?;
            }
            Step::Join { worker } => {
                let name = worker_name(*worker);
                let again = !self.joined.insert(*worker);
                let claim = h.claim(&name).await;
                let ticket = h.schedule.force("join");
                let joined = faults::join_worker(h, *worker, again).await;
                ticket.end();
                joined.map_err(|e| e.to_string())?;
                await_live(h, None, budget, |d| loops::poll_one(h, *worker, d))
                    .await
                    .map_err(|why| StepError::NotLive {
                        what: format!("joining {name}"),
                        why,
                        budget,
                    })?;
                drop(claim);
            }
            Step::Verify => {
                let all = secs(20.0);
                await_live(h, None, all, |d| loops::all_ready_by(h, d))
                    .await
                    .map_err(|why| StepError::NotLive {
                        what: "ready after the faults".into(),
                        why,
                        budget: all,
                    })?;
                if self.check_data {
                    self.verify_now().await?;
                }
            }
        }
        Ok(())
    }

    async fn verify_now(&self) -> Result<(), StepError> {
        let keys: Vec<(u8, PathBuf)> = self
            .h
            .settings()
            .inputs
            .iter()
            .map(|(k, p)| (k.as_bytes()[0], p.clone()))
            .collect();
        let dir = self.h.run_dir().sink_dir();
        let statuses =
            tokio::task::spawn_blocking(move || verify::check::check_keys(&dir, keys, false))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
        if let Some(v) = statuses.iter().find_map(|s| s.violation.as_ref()) {
            return Err(StepError::Failed(format!("verification failed:\n{v}")));
        }
        let total: u64 = statuses.iter().map(|s| s.committed_bytes).sum();
        self.h.out.glyph(&format!("[verified {total} bytes]"));
        Ok(())
    }
}

/// Runs the custom scenario `word` (`run_custom1` …) of a soak: the steps
/// of the recipe of the same name (`recipes/custom1.toml` …), once, or
/// over and over when the recipe says `repeat_in_soak`.
pub async fn soak_custom(h: Arc<Harness>, word: String) {
    let name = custom_recipe_name(&word);
    let recipe = match Recipe::load(&name) {
        Ok((r, _)) => r,
        Err(e) => {
            return h.finish(Outcome::Environment(format!("{word}: {e:#}")));
        }
    };
    let mut steps = StepRunner::new(&h, &word, false);
    loop {
        for step in &recipe.steps {
            if h.finished() {
                return;
            }
            if let Err(e) = steps.run(step).await {
                if !h.finished() {
                    let text = e.settle(&h, &word);
                    h.out.line(&format!("{word}: {text}"));
                }
                return;
            }
        }
        if !recipe.repeat_in_soak {
            return;
        }
    }
}

/// The recipe behind a soak's `run_customX` word.
pub fn custom_recipe_name(word: &str) -> String {
    let rest = word.strip_prefix("run_").unwrap_or(word);
    match rest {
        "custom_crashsink_crash0_overlap" => "crashsink-crash0-overlap".to_owned(),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPLAY: &str = r#"
description = "shrunk"
[replay]
args = ["2", "crash1"]
seed = 5
class = "sanity"
[[replay.decisions]]
t = 1.5
source = "crash1"
what = "crash worker1 down=0.500"
[replay.decisions.fault]
kind = "crash-worker"
target = "worker1"
down_s = 0.5
"#;

    #[test]
    fn a_replay_recipe_parses_and_bad_ones_are_named() {
        let r = Recipe::parse(REPLAY, "x.toml").unwrap();
        let rp = r.replay.unwrap();
        assert_eq!((rp.seed, rp.tries, rp.decisions.len()), (5, 1, 1));
        let both = format!("steps = [{{ do = \"verify\" }}]\n{REPLAY}");
        let e = Recipe::parse(&both, "x.toml").unwrap_err().to_string();
        assert!(e.contains("either steps or a [replay] table"), "{e}");
        let e = Recipe::parse("description = \"d\"", "y.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("y.toml") && e.contains("steps"), "{e}");
        let bad = REPLAY.replace("crash-worker", "corrupt");
        let e = Recipe::parse(&bad, "z.toml").unwrap_err().to_string();
        assert!(
            e.contains("z.toml") && e.contains("cannot be replayed"),
            "{e}"
        );
    }
}
