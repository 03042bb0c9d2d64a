#!/usr/bin/env python3
"""Detection rate of a bug switch under a fault schedule, for
docs/benchmarks.md (*Fault schedules*):

    python3 tests/bench/detection.py --inject lose-on-sink-reconnect \
        --schedule isolated --seeds 20 --duration 150s -- 2 crash1 crash-sink

runs `crasher WORDS... --inject BUG --schedule S --seed N --duration D
--on-failure kill` for seeds 1..N, one at a time, and prints per seed the
exit code and the time to the verdict, then the share caught (exit 1),
the median time to detection, and faults fired per minute (from run.json).
Per seed it also counts the worker (re)connections at which the sink
still held a voted, undecided transaction of that worker (`pending` in
the sink's HELLO log line, other than `[]`): how often the faults landed
between a prepare and its commit, the window of `--inject
commit-pending-after-restart` (docs/faults.md).
Each run's files stay in a temporary folder (printed)."""
import argparse, json, os, statistics, subprocess, tempfile

ap = argparse.ArgumentParser()
ap.add_argument("--inject", required=True)
ap.add_argument("--schedule", default="isolated", help="`none`: pass no --schedule")
ap.add_argument("--seeds", type=int, default=20)
ap.add_argument("--first-seed", type=int, default=1)
ap.add_argument("--duration", default="150s")
ap.add_argument("--crasher", default="target/release/crasher")
ap.add_argument("words", nargs="+")
a = ap.parse_args()

def pending_at_hello(run_dir):
    """HELLOs the sink logged, and those that found a pending transaction."""
    hellos = pending = 0
    try:
        with open(os.path.join(run_dir, "logs", "sink.log"), errors="replace") as f:
            for line in f:
                if "HELLO from program" in line:
                    hellos += 1
                    if "pending []" not in line:
                        pending += 1
    except OSError:
        pass
    return hellos, pending


C = os.path.abspath(a.crasher)
work = tempfile.mkdtemp(prefix="crasher-detection-")
print("work folder:", work, flush=True)
caught, times, rates = 0, [], []
for seed in range(a.first_seed, a.first_seed + a.seeds):
    runs = os.path.join(work, f"seed{seed}")
    # `--schedule none`: pass no --schedule (a binary older than the flag).
    sched = [] if a.schedule == "none" else ["--schedule", a.schedule]
    cmd = [C, *a.words, "--inject", a.inject, *sched, "--seed", str(seed),
           "--duration", a.duration, "--on-failure", "kill", "--runs", runs]
    p = subprocess.run(cmd, capture_output=True, text=True)
    dur = next((int(l.split()[1]) / 1000 for l in p.stdout.splitlines()
                if l.startswith("Duration: ")), float("nan"))
    verdict = next((l for l in p.stdout.splitlines() if l.startswith(("VIOLATION", "Verdict",
                                                                        "Duration reached"))), "")
    faults = 0
    try:
        rec = json.load(open(os.path.join(runs, "current", "run.json")))
        faults = sum(c["fired"] for c in rec.get("coverage", {}).values())
    except (OSError, ValueError):
        pass
    if dur == dur and dur > 0:
        rates.append(faults / (dur / 60))
    if p.returncode == 1:
        caught += 1
        times.append(dur)
    hellos, pending = pending_at_hello(os.path.join(runs, "current"))
    print(f"seed {seed}: exit {p.returncode} after {dur:.1f} s, {faults} faults, "
          f"{pending} of {hellos} sink HELLOs with a pending transaction: {verdict[:110]}",
          flush=True)
n = a.seeds
print(f"caught {caught} of {n} ({100 * caught / n:.0f} %) under --schedule {a.schedule}")
if times:
    print(f"time to detection: median {statistics.median(times):.1f} s, "
          f"min {min(times):.1f} s, max {max(times):.1f} s")
if rates:
    print(f"faults per minute: median {statistics.median(rates):.1f}")
