#!/usr/bin/env python3
"""Group a DHAT heap profile by the innermost digicert_sidecar:: frame (function and line) of
each allocation stack: blocks and bytes per request, with the frame just inside it. Usage: dhat-sites.py dhat.json REQUESTS"""
import json
import re
import sys
from collections import defaultdict

data = json.load(open(sys.argv[1]))
reqs = max(int(sys.argv[2]), 1)
ftbl = data["ftbl"]


def name(i):
    # "0x4A2B3C: digicert_sidecar::proxy::Proxy::forward::{{closure}} (proxy.rs:123)"
    s = ftbl[i]
    s = re.sub(r"^0x[0-9A-Fa-f]+: ", "", s)
    return s


ours = defaultdict(lambda: [0, 0])
callee = defaultdict(lambda: defaultdict(int))
for pp in data["pps"]:
    frames = [name(i) for i in pp["fs"]]
    site = next((f for f in frames if re.match(r"<?digicert_sidecar::", f)), None)
    if site is None:
        site = "(no digicert_sidecar frame: hyper/tokio/rustls internals)"
        # Say which library: the first frame outside the allocator.
        lib = next((f for f in frames if not re.search(r"alloc|malloc|realloc|calloc|RawVec|Vec<|Box<|Arc<", f)), "?")
        key = lib.split(" (")[0][:110]
    else:
        idx = frames.index(site)
        key = frames[idx - 1][:150] if idx > 0 else "-"
    site = re.sub(r"::\{\{closure\}\}", "", site)[:140]
    ours[site][0] += pp["tbk"]
    ours[site][1] += pp["tb"]
    callee[site][key] += pp["tbk"]

total_k = sum(v[0] for v in ours.values())
print(f"{'blocks/req':>10} {'bytes/req':>10}  site (innermost digicert_sidecar frame) <- biggest callee")
for site, (k, b) in sorted(ours.items(), key=lambda kv: -kv[1][0])[:25]:
    if k / reqs < 0.05:
        continue
    top = max(callee[site].items(), key=lambda kv: kv[1])[0]
    print(f"{k / reqs:10.2f} {b / reqs:10.0f}  {site}")
    print(f"{'':22}<- {top}")
print(f"{total_k / reqs:10.2f} total blocks/req (includes start-up, divided by requests)")
