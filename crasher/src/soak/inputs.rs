//! The input files a soak feeds: generated once per size and seed, kept in
//! the runs folder and reused.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};

use super::args::SoakArgs;

pub(super) fn seed_for_inputs(args: &SoakArgs) -> u64 {
    // Input data is part of the run's reproducible state, but regenerating
    // 124 MB per run is wasteful: inputs use the seed only when one is given.
    args.seed.unwrap_or(0)
}

pub(super) async fn ensure_inputs(
    dir: &std::path::Path,
    args: &SoakArgs,
    tcp: bool,
) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let keys: Vec<u8> = args.keys.iter().map(|k| k.as_bytes()[0]).collect();
    let (dir, bytes, seed) = (dir.to_owned(), args.input_bytes, seed_for_inputs(args));
    // Generating big inputs takes a while and comes before the run's own
    // signal handling: a Ctrl-C, SIGTERM, SIGHUP or SIGQUIT meanwhile
    // stops it and removes the partial file.
    let cancel = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let cancel = cancel.clone();
        let handlers = [
            SignalKind::interrupt(),
            SignalKind::terminate(),
            SignalKind::hangup(),
            SignalKind::quit(),
        ]
        .map(signal);
        tokio::spawn(async move {
            let mut streams: Vec<_> = handlers.into_iter().flatten().collect();
            let any = futures::future::select_all(streams.iter_mut().map(|s| Box::pin(s.recv())));
            any.await;
            cancel.store(true, std::sync::atomic::Ordering::Relaxed);
        })
    };
    let result = tokio::task::spawn_blocking(move || {
        ensure_input_files_cancellable(&dir, &keys, bytes, seed, tcp, &cancel)
    })
    .await;
    watcher.abort();
    result?
}

/// The folder input files of this size and seed are cached in, under `runs`.
pub fn input_dir(runs: &std::path::Path, input_bytes: u64, seed: u64, tcp: bool) -> PathBuf {
    runs.join("inputs").join(format!(
        "bytes{input_bytes}-seed{seed}{}",
        if tcp { "-tcp" } else { "" }
    ))
}

/// The input file of each key in `dir`, writing the missing ones (each
/// complete or absent: written to a temporary name, then renamed).
pub fn ensure_input_files(
    dir: &std::path::Path,
    keys: &[u8],
    input_bytes: u64,
    seed: u64,
    tcp: bool,
) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let never = std::sync::atomic::AtomicBool::new(false);
    ensure_input_files_cancellable(dir, keys, input_bytes, seed, tcp, &never)
}

/// Inputs this big get a progress bar (on a terminal) and a line saying so.
pub(super) const BIG_INPUTS: u64 = 256 * 1024 * 1024;

/// [`ensure_input_files`] that checks free space first, shows progress for
/// big inputs, and stops (removing the partial file) once `cancel` is set.
pub fn ensure_input_files_cancellable(
    dir: &std::path::Path,
    keys: &[u8],
    input_bytes: u64,
    seed: u64,
    tcp: bool,
    cancel: &std::sync::atomic::AtomicBool,
) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut out = BTreeMap::new();
    let mut missing = Vec::new();
    for &k in keys {
        let p = dir.join(verify::input::input_file_name(k));
        if !p.is_file() {
            missing.push(k);
        }
        out.insert((k as char).to_string(), p);
    }
    if !missing.is_empty() {
        let spec = verify::input::InputSpec {
            keys: missing,
            source_bytes: input_bytes,
            seed,
            tcp,
        };
        let total = verify::input::spec_file_len(&spec).saturating_mul(spec.keys.len() as u64);
        let bar = (total >= BIG_INPUTS).then(|| {
            eprintln!(
                "crasher: writing {} input file(s), {total} bytes in all, in {}",
                spec.keys.len(),
                dir.display()
            );
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "input files [{bar:40}] {bytes}/{total_bytes} ({eta})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        let mut progress = |n: u64| {
            if let Some(b) = &bar {
                b.inc(n);
            }
        };
        let written =
            verify::input::write_input_files_cancellable(dir, &spec, &mut progress, cancel);
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        written.with_context(|| format!("cannot create input files in {}", dir.display()))?;
    }
    Ok(out)
}
