#!/usr/bin/env python3
"""Compare two JSON documents from the same command, run direct and through clawguard.

usage: compare.py DIRECT.json PROXIED.json [PATH ...] [!PREFIX ...]

The documents must have the same shape (keys, list lengths, value types), and every
PATH (dotted, with list indices: `payload.bins.uname`, `pending.0.nodeId`) must hold
equal values. Timestamps, uptimes and durations differ between runs, so other leaves
are compared by type only. `!PREFIX` leaves a subtree out of the shape comparison: for the
gateway's own load diagnostics (`eventLoop`), whose keys vary from one call to the next.
Exit 0 on a match; otherwise print the first difference.
"""
import json
import sys


def shape(v, path, out):
    if isinstance(v, dict):
        out[path] = ("object", tuple(sorted(v)))
        for k, x in v.items():
            shape(x, f"{path}.{k}" if path else k, out)
    elif isinstance(v, list):
        out[path] = ("array", len(v))
        for i, x in enumerate(v):
            shape(x, f"{path}.{i}" if path else str(i), out)
    elif isinstance(v, bool) or v is None:
        out[path] = (type(v).__name__,)
    elif isinstance(v, (int, float)):
        # 12 and 12.5 are the same JSON type: a measurement may come out whole in one run.
        out[path] = ("number",)
    else:
        out[path] = (type(v).__name__,)
    return out


def get(v, path):
    for part in path.split("."):
        v = v[int(part)] if isinstance(v, list) else v[part]
    return v


def main():
    direct, proxied = (json.load(open(p)) for p in sys.argv[1:3])
    paths = [p for p in sys.argv[3:] if not p.startswith("!")]
    ignored = [p[1:] for p in sys.argv[3:] if p.startswith("!")]
    a, b = shape(direct, "", {}), shape(proxied, "", {})
    for key in sorted(set(a) | set(b)):
        if any(key == i or key.startswith(i + ".") for i in ignored):
            continue
        if a.get(key) != b.get(key):
            print(f"shape differs at {key or '<root>'}: direct {a.get(key)} vs proxied {b.get(key)}")
            return 1
    for path in paths:
        if get(direct, path) != get(proxied, path):
            print(f"value differs at {path}: direct {get(direct, path)!r} vs proxied {get(proxied, path)!r}")
            return 1
    return 0


sys.exit(main())
