#!/usr/bin/env python3
"""Write a linker symbol order from callgrind profiles (used by deploy/link/train).

    order.py OUT CALLGRIND.OUT...

Every function that ran in any of the profiles; names as the linker knows them (callgrind
must run with --demangle=no). Grouped by the set of profiles (configurations) it ran in:
first what every configuration runs, then what fewer share, so that the code of one
configuration stays together and one that lacks a feature does not map that feature's code
in passing. Within a group, the most run first.
"""

import collections
import re
import sys


def self_costs(path, cost):
    """Add the self cost of each function in one callgrind output file to `cost`.

    "fn=(id) name" opens a function (later just "fn=(id)"); its cost lines follow. A
    "calls=" line is followed by the inclusive cost of that call, which is the callee's and
    is skipped. Callgrind marks recursion levels as name'2, name'3...: one function.
    """
    names = {}
    cur = None
    skip = False
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            m = re.match(r"c?fn=\((\d+)\)(?: (.*))?$", line)
            if m:
                if m.group(2):
                    names[m.group(1)] = re.sub(r"'\d+$", "", m.group(2))
                name = names.get(m.group(1))
                if name:
                    cost[name] += 0
                if line.startswith("fn="):
                    cur = name
                continue
            if line.startswith("calls="):
                skip = True
                continue
            if line[:1].isdigit() or line[:1] in "+-*":
                if skip:
                    skip = False
                    continue
                parts = line.split()
                if cur and len(parts) >= 2 and parts[1].isdigit():
                    cost[cur] += int(parts[1])


def main():
    out, profiles = sys.argv[1], sys.argv[2:]
    cost = collections.Counter()
    ran_in = collections.defaultdict(set)
    for i, path in enumerate(profiles):
        one = collections.Counter()
        self_costs(path, one)
        for name, c in one.items():
            cost[name] += c
            ran_in[name].add(i)

    def key(name):
        runs = ran_in[name]
        return (-len(runs), sorted(runs), -cost[name], name)

    # Only real symbol names (not "0x..." addresses or "(below main)").
    order = [
        name
        for name in sorted(cost, key=key)
        if re.fullmatch(r"[A-Za-z_.$][\w.$]*", name)
    ]
    with open(out, "w") as f:
        f.write("\n".join(order) + "\n")
    print(f"{out}: {len(order)} functions, the most run first", file=sys.stderr)


if __name__ == "__main__":
    main()
