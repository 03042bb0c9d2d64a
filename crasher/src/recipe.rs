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

use crate::exit;
use crate::soak::cluster::Start;
use crate::soak::harness::{Harness, Outcome};
use crate::soak::loops;
use crate::soak::profile::Profile;
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
    /// What one iteration does.
    pub steps: Vec<Step>,
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
        tokio::task::block_in_place(|| p.h.cluster().teardown(Duration::from_secs(2)));
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
    let mut rng = h.rng("recipe");
    let inputs = h.cluster().settings().inputs.clone();
    let sink_dir = h.cluster().run_dir().sink_dir();
    let mut held = std::collections::HashMap::new();
    let result = async {
        for i in 1..=iterations {
            for step in &recipe.steps {
                if let Some((o, _)) = h.outcome() {
                    return Err(format!("iteration {i}: {o:?}"));
                }
                step_once(h, step, &mut rng, &inputs, &sink_dir, &mut held)
                    .await
                    .map_err(|e| format!("iteration {i}: {e}"))?;
            }
            h.out.line(&format!("iteration {i}: OK"));
        }
        Ok(())
    }
    .await;
    monitor.abort();
    result
}

/// Processes crashed by a step stay claimed (so the death monitor does not
/// report them) until a later step restarts them.
type Held<'a> = std::collections::HashMap<String, crate::soak::harness::Claim<'a>>;

async fn step_once<'a>(
    h: &'a Arc<Harness>,
    step: &Step,
    rng: &mut rand_chacha::ChaCha8Rng,
    inputs: &std::collections::BTreeMap<String, PathBuf>,
    sink_dir: &Path,
    held: &mut Held<'a>,
) -> Result<(), String> {
    match step {
        Step::Sleep { min, max } => {
            let s = match max {
                Some(m) if m > min => rng.gen_range(*min..*m),
                _ => *min,
            };
            tokio::time::sleep(secs(s)).await;
        }
        Step::Crash { target } => match Target::parse(target)? {
            Target::Sink => {
                if let Some(c) = h.claim("sink") {
                    held.insert("sink".into(), c);
                }
                h.out.event("crash", "cS");
                h.cluster().crash_sink().map_err(|e| e.to_string())?;
            }
            Target::Worker(i) => {
                if let Some(c) = h.claim(&worker_name(i)) {
                    held.insert(worker_name(i), c);
                }
                h.out.event("crash", &format!("c{i}"));
                h.cluster().crash_worker(i).map_err(|e| e.to_string())?;
                if let Some(aside) = h.cluster().rotate_worker_log(i) {
                    tokio::task::spawn_blocking(move || soak::cluster::gzip_file(&aside));
                }
            }
            Target::Feeder(k) => {
                h.out.event("crash", &format!("cf{k}"));
                let _ = h.cluster().crash_feeder(&k);
            }
            Target::Feeders => {
                h.out.event("crash", "cF");
                for k in inputs.keys() {
                    let _ = h.cluster().crash_feeder(k);
                }
            }
        },
        Step::Restart { target } => match Target::parse(target)? {
            Target::Sink => {
                h.cluster().start_sink().map_err(|e| e.to_string())?;
                h.out.event("restart", "rS");
            }
            Target::Worker(i) => {
                h.cluster()
                    .start_worker(i, Start::Restart)
                    .map_err(|e| e.to_string())?;
                h.out.event("restart", &format!("r{i}"));
            }
            Target::Feeder(_) | Target::Feeders => {
                // The monitor restarts feeders that are not running.
                h.out.event("restart", "rF");
            }
        },
        Step::WaitReady { seconds } => {
            loops::poll_all_ready(h, secs(seconds.unwrap_or(20.0))).await?;
        }
        Step::Shrink { worker } => {
            let name = worker_name(*worker);
            h.out.event("shrink", &format!("Shrink {name}"));
            let _c = h.claim(&name);
            loops::shrink_worker(h, *worker).await?;
        }
        Step::Join { worker } => {
            let name = worker_name(*worker);
            h.out.event("join", &format!("Join {name}."));
            h.cluster()
                .start_worker(*worker, Start::Join)
                .map_err(|e| e.to_string())?;
            loops::poll_one(h, *worker, tokio::time::Instant::now() + secs(20.0)).await?;
        }
        Step::Verify => {
            loops::poll_all_ready(h, secs(20.0))
                .await
                .map_err(|e| format!("not ready after the faults: {e}"))?;
            let dir = sink_dir.to_owned();
            let keys: Vec<(u8, PathBuf)> = inputs
                .iter()
                .map(|(k, p)| (k.as_bytes()[0], p.clone()))
                .collect();
            let statuses =
                tokio::task::spawn_blocking(move || verify::check::check_keys(&dir, keys, false))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
            if let Some(v) = statuses.iter().find_map(|s| s.violation.as_ref()) {
                return Err(format!("verification failed:\n{v}"));
            }
            let total: u64 = statuses.iter().map(|s| s.committed_bytes).sum();
            h.out.glyph(&format!("[verified {total} bytes]"));
        }
    }
    Ok(())
}
