//! Verifier throughput: the full check of 10 keys of default-size input
//! files (10 × 12.4 MB), and incremental rounds of a fixed number of new
//! committed bytes on top of an ever larger verified history.
//!
//! `mode_full_check`: the full check of the same corpus in the prefix mode
//! and in the work-queue mode, with the lines in input order and shuffled.
//!
//! `cargo bench -p verify --bench verify` (writes ~500 MB under the system
//! temporary directory, removed at the end). Peak memory is measured by
//! `cargo run --release -p verify --example verify_modes`.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use verify::check::{check_keys, check_keys_with, CheckOptions, Mode};
use verify::fixture::{write_full_sink, Order};
use verify::incremental::IncrementalVerifier;
use verify::input::{write_input_files, InputSpec};
use verify::txnlog::{Entry, Record};

const WORKERS: usize = 3;

/// A sink directory holding the whole input of every key, spread over
/// three workers, line by line interleaved, with the data files complete
/// and the commit points listed (not yet logged).
struct Fixture {
    _tmp: tempfile::TempDir,
    sink: PathBuf,
    inputs: Vec<(u8, PathBuf)>,
    /// Per worker: line-aligned offsets at roughly 64 KiB steps.
    cuts: Vec<Vec<u64>>,
    total: u64,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let sink = tmp.path().join("sink-out");
    fs::create_dir(&sink).unwrap();
    let spec = InputSpec::default();
    let paths = write_input_files(tmp.path(), &spec).unwrap();
    let inputs: Vec<(u8, PathBuf)> = spec.keys.iter().copied().zip(paths).collect();
    let mut data: Vec<Vec<u8>> = vec![Vec::new(); WORKERS];
    let mut cuts: Vec<Vec<u64>> = vec![Vec::new(); WORKERS];
    // Keys 0,3,6,9 on worker 0, and so on; lines of a worker's keys alternate.
    let texts: Vec<Vec<u8>> = inputs.iter().map(|(_, p)| fs::read(p).unwrap()).collect();
    for w in 0..WORKERS {
        let mut cursors: Vec<(usize, usize)> =
            (w..texts.len()).step_by(WORKERS).map(|k| (k, 0)).collect();
        let out = &mut data[w];
        while !cursors.is_empty() {
            cursors.retain_mut(|(k, at)| {
                let text = &texts[*k];
                let end = memchr::memchr(b'\n', &text[*at..]).map_or(text.len(), |n| *at + n + 1);
                out.extend_from_slice(&text[*at..end]);
                *at = end;
                if out.len() as u64 >= cuts[w].last().copied().unwrap_or(0) + 65_536 {
                    cuts[w].push(out.len() as u64);
                }
                end < text.len()
            });
        }
        if cuts[w].last() != Some(&(out.len() as u64)) {
            cuts[w].push(out.len() as u64);
        }
        fs::write(sink.join(format!("output.worker{w}")), &*out).unwrap();
        fs::write(sink.join(format!("output.worker{w}.txnlog")), b"").unwrap();
    }
    let total = data.iter().map(|d| d.len() as u64).sum();
    Fixture {
        _tmp: tmp,
        sink,
        inputs,
        cuts,
        total,
    }
}

impl Fixture {
    /// Logs commits of worker `w` up to its `n`th cut.
    fn commit(&self, w: usize, from: usize, to: usize, time: f64) {
        let mut f = OpenOptions::new()
            .append(true)
            .open(self.sink.join(format!("output.worker{w}.txnlog")))
            .unwrap();
        let mut text = String::new();
        for (i, &end) in self.cuts[w][from..to].iter().enumerate() {
            let e = Entry {
                time: time + i as f64 * 1e-3,
                record: Record::Phase2Ok {
                    txn_id: format!("Passthrough-w-worker{w}-id-1:c_id={}", from + i),
                    offset: end,
                },
            };
            text += &e.to_line();
            text.push('\n');
        }
        f.write_all(text.as_bytes()).unwrap();
    }

    fn reset_logs(&self) {
        for w in 0..WORKERS {
            fs::write(self.sink.join(format!("output.worker{w}.txnlog")), b"").unwrap();
        }
    }
}

fn bench(c: &mut Criterion) {
    let fx = fixture();
    // Everything committed, for the full check.
    for w in 0..WORKERS {
        fx.commit(w, 0, fx.cuts[w].len(), 1000.0);
    }
    let mut g = c.benchmark_group("full_check");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(fx.total));
    g.bench_function("10_keys_x_12.4MB", |b| {
        b.iter(|| {
            let st = check_keys(&fx.sink, fx.inputs.clone(), true).unwrap();
            assert!(st.iter().all(|s| s.holds()), "{st:?}");
            st
        })
    });
    g.finish();

    // Incremental rounds: each round logs `per_round` more cuts per worker
    // (about 3 × per_round × 64 KiB new bytes) and checks.
    let mut g = c.benchmark_group("incremental_round");
    g.sample_size(20);
    for per_round in [1usize, 16] {
        let new_bytes = fx.total / fx.cuts.iter().map(Vec::len).sum::<usize>() as u64
            * (WORKERS * per_round) as u64;
        g.throughput(Throughput::Bytes(new_bytes));
        g.bench_function(format!("{}KiB_new", new_bytes / 1024), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                let mut state: Option<(IncrementalVerifier, usize)> = None;
                let rounds = fx.cuts.iter().map(Vec::len).min().unwrap() / per_round;
                for _ in 0..iters {
                    let (v, done) = state.get_or_insert_with(|| {
                        fx.reset_logs();
                        let v = IncrementalVerifier::new(&fx.sink, fx.inputs.clone()).unwrap();
                        (v, 0)
                    });
                    let r = *done;
                    for w in 0..WORKERS {
                        fx.commit(w, r * per_round, (r + 1) * per_round, 2000.0 + r as f64);
                    }
                    let t = Instant::now();
                    let st = v.check().unwrap();
                    spent += t.elapsed();
                    assert!(st.iter().all(|s| s.holds()));
                    *done += 1;
                    if *done == rounds {
                        state = None;
                    }
                }
                spent
            })
        });
    }
    // A round with nothing new: the fixed cost of a call.
    g.throughput(Throughput::Elements(1));
    g.bench_function("idle", |b| {
        fx.reset_logs();
        for w in 0..WORKERS {
            fx.commit(w, 0, fx.cuts[w].len(), 1000.0);
        }
        let mut v = IncrementalVerifier::new(&fx.sink, fx.inputs.clone()).unwrap();
        v.check().unwrap();
        b.iter(|| v.check().unwrap())
    });
    g.finish();
}

/// The full check in each mode, on the whole corpus in input order and
/// shuffled (every line of every key in one random permutation over three
/// workers).
fn modes(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let spec = InputSpec::default();
    let paths = write_input_files(tmp.path(), &spec).unwrap();
    let inputs: Vec<(u8, PathBuf)> = spec.keys.iter().copied().zip(paths).collect();
    let in_order = tmp.path().join("sink-in-order");
    let shuffled = tmp.path().join("sink-shuffled");
    let total = write_full_sink(&in_order, &inputs, WORKERS, Order::InOrder, 1.7e9).unwrap();
    write_full_sink(
        &shuffled,
        &inputs,
        WORKERS,
        Order::Shuffled { seed: 1 },
        1.7e9,
    )
    .unwrap();
    let mut g = c.benchmark_group("mode_full_check");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(total));
    for (name, mode, sink) in [
        ("exactly-once/in-order", Mode::ExactlyOnce, &in_order),
        ("work-queue/in-order", Mode::WorkQueue, &in_order),
        ("work-queue/shuffled", Mode::WorkQueue, &shuffled),
    ] {
        let opts = CheckOptions {
            complete: true,
            mode,
            ..CheckOptions::default()
        };
        g.bench_function(name, |b| {
            b.iter(|| {
                let st = check_keys_with(sink, inputs.clone(), &opts).unwrap();
                assert!(st.iter().all(|s| s.holds()), "{st:?}");
                st
            })
        });
    }
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    modes(&mut c);
    c.final_summary();
}
