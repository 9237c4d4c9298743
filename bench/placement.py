#!/usr/bin/env python3
"""Where the kernel put the threads during a load: read `perf script` output of scheduler
events recorded on every CPU and say how often a CPU sat idle while another had a task
waiting, how long the proxy's threads waited for a CPU, and where wake-ups were placed.

Record under load (any proxy; `bench/run` with KEEP=1 leaves the configurations):

    perf record -e sched:sched_switch,sched:sched_wakeup,sched:sched_wakeup_new,sched:sched_migrate_task \\
        -a -o sched.data -- sleep 2
    perf script -i sched.data -F cpu,time,event,trace > sched.txt
    bench/placement.py sched.txt digicert-sidec     # or haproxy: a prefix of the threads' comm

A thread is waiting from its wake-up (or from being preempted) until it is switched in.
"""
import re
import sys
from collections import defaultdict

EVENT = re.compile(r"\[(\d+)\]\s+([\d.]+):\s+(\S+):\s+(.*)")
FIELD = re.compile(r"(\w+)=(\S+)")


def main(path, prefix):
    running = {}  # cpu -> pid running there (0: idle)
    waiting = defaultdict(set)  # cpu -> runnable pids not running
    ours = set()
    idle = defaultdict(float)
    idle_while_waiting = ours_running = ours_waiting = ours_waiting_other_idle = 0.0
    wakeups = onto_busy = onto_busy_other_idle = 0
    last = None
    span = 0.0  # the time accounted: from when every CPU's running task is known

    def advance(t):
        nonlocal last, span, idle_while_waiting, ours_running, ours_waiting, ours_waiting_other_idle
        if last is not None and len(running) >= 2:
            dt = t - last
            span += dt
            for cpu, pid in running.items():
                others = [c for c in running if c != cpu]
                other_idle = any(running[c] == 0 for c in others)
                if pid == 0:
                    idle[cpu] += dt
                    if any(waiting[c] for c in others):
                        idle_while_waiting += dt
                if pid in ours:
                    ours_running += dt
                for p in waiting[cpu]:
                    if p in ours:
                        ours_waiting += dt
                        if other_idle:
                            ours_waiting_other_idle += dt
        last = t

    for line in open(path):
        m = EVENT.match(line)
        if not m:
            continue
        cpu, t, name, rest = int(m.group(1)), float(m.group(2)), m.group(3), m.group(4)
        advance(t)
        if name == "sched:sched_switch":
            f = dict(FIELD.findall(rest.replace(" ==> ", " ")))
            prev, nxt = int(f["prev_pid"]), int(f["next_pid"])
            for comm, pid in ((f["prev_comm"], prev), (f["next_comm"], nxt)):
                if comm.startswith(prefix):
                    ours.add(pid)
            if prev != 0 and f["prev_state"].startswith("R"):
                waiting[cpu].add(prev)
            waiting[cpu].discard(nxt)
            running[cpu] = nxt
        elif name in ("sched:sched_wakeup", "sched:sched_wakeup_new"):
            f = dict(FIELD.findall(rest))
            pid, to = int(f["pid"]), int(f["target_cpu"])
            if f["comm"].startswith(prefix):
                ours.add(pid)
            for c in waiting:
                waiting[c].discard(pid)
            if running.get(to) != pid:
                waiting[to].add(pid)
            if len(running) >= 2 and to in running:
                wakeups += 1
                if running[to] != 0:
                    onto_busy += 1
                    if any(running[c] == 0 for c in running if c != to):
                        onto_busy_other_idle += 1
        elif name == "sched:sched_migrate_task":
            f = dict(FIELD.findall(rest))
            pid, src, dst = int(f["pid"]), int(f["orig_cpu"]), int(f["dest_cpu"])
            if pid in waiting[src]:
                waiting[src].discard(pid)
                waiting[dst].add(pid)

    if span <= 0 or not wakeups:
        sys.exit(f"placement: no scheduler events in {path}")

    def pct(seconds):
        return seconds / span * 100

    cpus = " ".join(f"cpu{c} {pct(idle[c]):.1f} %" for c in sorted(running))
    print(f"{span:.2f} s traced; idle: {cpus}")
    print(f"a CPU idle while another had a task waiting: {pct(idle_while_waiting):.1f} % of the time")
    print(
        f"threads named {prefix}*: running {pct(ours_running):.1f} % of one CPU, waiting "
        f"{pct(ours_waiting):.1f} %, of it while another CPU was idle {pct(ours_waiting_other_idle):.1f} %"
    )
    print(
        f"wake-ups: {wakeups}; placed on a busy CPU {onto_busy / wakeups * 100:.1f} %, "
        f"on a busy CPU while another was idle {onto_busy_other_idle / wakeups * 100:.1f} %"
    )


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
