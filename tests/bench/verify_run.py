#!/usr/bin/env python3
"""`crasher verify --run` against ten per-key `crasher verify` calls on the
default corpus (10 keys x 12.4 MB), as issue 18 asks (docs/benchmarks.md).

    python3 tests/bench/verify_run.py [--crasher target/release/crasher] [--repeats 5]

Makes a real run first: `crasher 4 --rate 0` on the default keys and input
size, to the end of every key's input (its sink then holds the whole
corpus, committed by four workers, interleaved in their files). Then times,
alternately, one `crasher verify --run RUN --complete` and ten
`crasher verify K INPUT --sink-dir RUN/sink --complete`, and prints the
median wall time of each and their ratio. Both must say every key holds."""
import argparse, json, os, statistics, subprocess, sys, tempfile, time

ap = argparse.ArgumentParser()
ap.add_argument("--crasher", default="target/release/crasher")
ap.add_argument("--repeats", type=int, default=5)
a = ap.parse_args()
C = os.path.abspath(a.crasher)
work = tempfile.mkdtemp(prefix="crasher-verify-run-")
runs = os.path.join(work, "runs")
t0 = time.monotonic()
out = subprocess.run([C, "4", "--rate", "0", "--on-failure", "kill", "--runs", runs],
                     capture_output=True, text=True)
print(f"run: exit {out.returncode} in {time.monotonic() - t0:.1f} s", flush=True)
if out.returncode != 0:
    sys.exit(out.stdout[-2000:])
run = os.path.realpath(os.path.join(runs, "current"))
state = json.load(open(os.path.join(run, "state.json")))
inputs = state["inputs"]
sink = os.path.join(run, "sink")
size = sum(os.path.getsize(os.path.join(sink, f)) for f in os.listdir(sink))
print(f"sink: {size:,} bytes in {len(os.listdir(sink))} files; {len(inputs)} keys", flush=True)

def whole():
    r = subprocess.run([C, "verify", "--complete", "--run", run], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"all {len(inputs)} keys hold" in r.stdout, r.stdout

def per_key():
    for k, p in inputs.items():
        r = subprocess.run([C, "verify", k, p, "--complete", "--sink-dir", sink],
                           capture_output=True, text=True)
        assert r.returncode == 0 and r.stdout.startswith("OK"), r.stdout + r.stderr

times = {"whole": [], "per_key": []}
for _ in range(a.repeats):
    for name, f in (("whole", whole), ("per_key", per_key)):
        t = time.monotonic()
        f()
        times[name].append(time.monotonic() - t)
w, p = statistics.median(times["whole"]), statistics.median(times["per_key"])
print(f"verify --run:        median {w:.3f} s  (runs: {', '.join(f'{x:.3f}' for x in times['whole'])})")
print(f"ten per-key calls:   median {p:.3f} s  (runs: {', '.join(f'{x:.3f}' for x in times['per_key'])})")
print(f"ratio: {p / w:.1f}x")
print("work folder (delete when done):", work)
