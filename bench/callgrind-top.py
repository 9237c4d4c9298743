#!/usr/bin/env python3
"""The functions of a callgrind dump by their own (exclusive) instructions, per request.

usage: callgrind-top.py DUMP REQUESTS [N]

callgrind_annotate folds this binary's recursion into one "(below main)" entry; this reads
the dump's fn=/cfn=/calls= records directly instead, with the reader deploy/link/order.py
uses for the link order.
"""
import collections
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ beside deploy/link/order.py
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "deploy", "link"))
from order import self_costs  # noqa: E402

own = collections.Counter()
self_costs(sys.argv[1], own)
requests = int(sys.argv[2])
total = sum(own.values())
print(f"{total // requests} instructions per request in all")
for name, cost in own.most_common(int(sys.argv[3]) if len(sys.argv) > 3 else 40):
    print(f"{100 * cost / total:5.2f}% {cost // requests:6d}  {name[:150]}")
