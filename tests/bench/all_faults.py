#!/usr/bin/env python3
"""The all-faults soak, a standing test outside the default test run
(docs/benchmarks.md, *All faults at once*): every fault word of the
reference cluster at once, for a long time, on the correct cluster.
A false alarm is any exit code other than 0.

    python3 tests/bench/all_faults.py [--minutes 60] [--seed N] [--schedule isolated]
                                      [--crasher target/release/crasher]

It samples the supervisor's RSS and CPU every 30 s, then prints one
summary: exit code and verdict line, faults fired/observed per kind (from
run.json), bytes verified, peak and final RSS, mean CPU. The run's files
stay in a temporary folder (printed) for triage."""
import argparse, json, os, subprocess, sys, tempfile, time

ap = argparse.ArgumentParser()
ap.add_argument("--minutes", type=float, default=60)
ap.add_argument("--seed", default=None)
ap.add_argument("--schedule", default="isolated")
ap.add_argument("--crasher", default="target/release/crasher")
ap.add_argument("--input-bytes", default="80000000")
a = ap.parse_args()

C = os.path.abspath(a.crasher)
work = tempfile.mkdtemp(prefix="crasher-all-faults-")
runs = os.path.join(work, "runs")
cmd = [C, "4", "crash0", "crash1", "crash2", "crash-sink", "crash-source", "grow-and-shrink",
       "pause", "--keys", "A,B,C,D,E", "--input-bytes", a.input_bytes,
       "--duration", f"{int(a.minutes * 60)}s", "--on-failure", "kill", "--runs", runs,
       "--schedule", a.schedule]
if a.seed:
    cmd += ["--seed", a.seed]
print("command:", " ".join(cmd[1:]), flush=True)
print("work folder:", work, flush=True)
out = open(os.path.join(work, "out.txt"), "w")
p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
tick = os.sysconf("SC_CLK_TCK")
page = os.sysconf("SC_PAGE_SIZE")
samples = []  # (t, rss bytes, cpu seconds)
trace = open(os.path.join(work, "samples.txt"), "w")
t0 = time.monotonic()
while p.poll() is None:
    try:
        stat = open(f"/proc/{p.pid}/stat").read().rsplit(")", 1)[1].split()
        rss = int(stat[21]) * page
        cpu = (int(stat[11]) + int(stat[12])) / tick
        samples.append((time.monotonic() - t0, rss, cpu))
        # Where the RSS is: anonymous memory (heap) vs file pages, and the
        # thread count (each thread may hold a glibc malloc arena).
        roll = dict(l.split(":", 1) for l in open(f"/proc/{p.pid}/smaps_rollup").read().splitlines()[1:])
        anon = int(roll["Anonymous"].split()[0]) * 1024
        threads = len(os.listdir(f"/proc/{p.pid}/task"))
        trace.write(f"{samples[-1][0]:.0f} rss={rss} anon={anon} threads={threads} cpu={cpu:.2f}\n")
        trace.flush()
    except (OSError, IndexError, ValueError, KeyError):
        pass
    for _ in range(300):
        if p.poll() is not None:
            break
        time.sleep(0.1)
code = p.wait()
out.close()
text = open(os.path.join(work, "out.txt")).read()
last = [l for l in text.splitlines() if l.startswith(("Duration reached", "Verdict", "VIOLATION",
                                                       "SANITY LOOP", "Fault coverage",
                                                       "Environment", "  key"))]
rec = {}
try:
    rec = json.load(open(os.path.join(runs, "current", "run.json")))
except (OSError, ValueError):
    pass
verified = sum(v[-1]["bytes"] for v in rec.get("keys", {}).values() if v)
print(f"exit code {code} ({'no false alarm' if code == 0 else 'NOT A PASS: see out.txt'})")
for l in last:
    print(" ", l)
for k, c in sorted(rec.get("coverage", {}).items()):
    print(f"  {k}: fired {c['fired']}, observed {c['observed']}, overlapped {c['overlapped']}")
print(f"  bytes verified: {verified}")
if samples:
    wall = samples[-1][0] - samples[0][0]
    cpu = samples[-1][2] - samples[0][2]
    print(f"  supervisor RSS: first {samples[0][1] / 2**20:.1f} MiB, peak "
          f"{max(s[1] for s in samples) / 2**20:.1f} MiB, final {samples[-1][1] / 2**20:.1f} MiB "
          f"({len(samples)} samples, every 30 s)")
    if wall > 0:
        print(f"  supervisor CPU: {100 * cpu / wall:.2f} % of one core over {wall:.0f} s")
sys.exit(0 if code == 0 else 1)
