#!/usr/bin/env python3
"""The functions of a callgrind dump by their own (exclusive) instructions, per request.

usage: callgrind-top.py DUMP REQUESTS [N]

callgrind_annotate folds this binary's recursion into one "(below main)" entry; this reads
the dump's fn=/cfn=/calls= records directly instead.
"""
import collections
import re
import sys

names = {}
own = collections.Counter()
current = None
after_call = False
with open(sys.argv[1]) as dump:
    for line in dump:
        if line.startswith(("fn=", "cfn=")):
            m = re.match(r"c?fn=\((\d+)\)(?: (.*))?", line.strip())
            if m.group(2):
                names[m.group(1)] = m.group(2)
            if line.startswith("fn="):
                current = m.group(1)
                after_call = False
        elif line.startswith("calls="):
            after_call = True  # the next cost line is the call's, not the function's own
        elif line[:1].isdigit() or line[:1] in "+-*":
            parts = line.split()
            if len(parts) >= 2:
                if after_call:
                    after_call = False
                else:
                    own[current] += int(parts[1])

requests = int(sys.argv[2])
total = sum(own.values())
print(f"{total // requests} instructions per request in all")
for key, cost in own.most_common(int(sys.argv[3]) if len(sys.argv) > 3 else 40):
    print(f"{100 * cost / total:5.2f}% {cost // requests:6d}  {names.get(key, key)[:150]}")
