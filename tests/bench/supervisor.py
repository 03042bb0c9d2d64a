#!/usr/bin/env python3
"""Supervisor figures for docs/benchmarks.md: readiness time, violation ->
every process stopped, crasher's own CPU. Run from any folder after
`cargo build --release --workspace`:

    python3 tests/bench/supervisor.py [path/to/crasher]

It works in a temporary folder and resets every run it starts."""
import os, re, subprocess, sys, tempfile, time

C = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/release/crasher")
work = tempfile.mkdtemp(prefix="crasher-sup-bench-")
runs = os.path.join(work, "runs")
os.chdir(work)


def run_processes(run_id, exclude):
    """States (R, S, T, ...) of live processes carrying the run's id."""
    states = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
            if f"CRASHER_RUN_ID={run_id}".encode() in env and int(pid) != exclude:
                states.append(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0])
        except OSError:
            pass
    return states


# 1. `crasher 4` until every worker reports processing_messages: true.
for _ in range(5):
    t0 = time.monotonic()
    p = subprocess.Popen([C, "4", "--keys", "A,B", "--input-bytes", "16000", "--duration", "2s",
                          "--on-failure", "kill", "--runs", runs], stdout=subprocess.PIPE, text=True)
    for line in p.stdout:
        if line.startswith("Cluster ready"):
            print("ready in %.3f s" % (time.monotonic() - t0))
            break
    p.stdout.read()
    p.wait()

# 2. An injected duplicate: detection -> every process stopped (pause mode).
for _ in range(3):
    p = subprocess.Popen([C, "2", "crash1", "--keys", "A,B", "--input-bytes", "2000000", "--rate",
                          "200000", "--inject", "duplicate-on-replay", "--timing",
                          "crash_worker_start=1", "--runs", runs], stdout=subprocess.PIPE, text=True)
    for line in p.stdout:
        if "after detection" in line:
            print(re.search(r"\(SIGSTOP.*?\)", line).group(0))
            break
    run_id = [l for l in open(os.path.join(runs, "current", "run.log")) if l.startswith("Run ")][0].split()[1]
    print("  states of the run's processes:", run_processes(run_id, p.pid))
    subprocess.run([C, "reset", "--runs", runs], capture_output=True)
    p.wait()
    p.stdout.close()

# 3. crasher's own CPU (children excluded) during `crasher 4` at the default rate.
p = subprocess.Popen([C, "4", "--on-failure", "kill", "--runs", runs, "--duration", "50s"],
                     stdout=subprocess.DEVNULL)
time.sleep(5)  # warm-up: start-up is not the steady state being measured


def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])


a, t = cpu(p.pid), time.monotonic()
time.sleep(40)
b, dt = cpu(p.pid), time.monotonic() - t
print("crasher CPU: %.2f %% of a core over %.0f s" % ((b - a) / os.sysconf("SC_CLK_TCK") / dt * 100, dt))
p.wait()
