#!/usr/bin/env python3
"""The baseline for bench/heap.rb: what a script does with a heap dump without rbscope.

Every line of an ObjectSpace.dump_all dump goes through json.loads (the standard library's C
decoder); lines it rejects (Ruby writes `file` and a few other fields without escaping) are
counted, not fatal.

    python3 bench/heap_baseline.py count DUMP [DUMP...]
        objects and memsize bytes by type, per file (the counterpart of `rbscope heap summary`)
    python3 bench/heap_baseline.py diff A B C
        a set of (address, type, generation) keys per dump; how many of B's keys are not in A
        and how many of those are still in C (the counterpart of `rbscope heap diff A B C`)
"""

import json
import sys
import time
from collections import Counter


def lines(path):
    # Binary mode: json.loads takes bytes, and a dump may hold bytes that are not UTF-8.
    with open(path, "rb") as f:
        yield from f


def count(path):
    objects, memsize = Counter(), Counter()
    total = invalid = 0
    for line in lines(path):
        total += 1
        try:
            rec = json.loads(line)
        except ValueError:  # JSONDecodeError and UnicodeDecodeError
            invalid += 1
            continue
        kind = rec.get("type", "?")
        objects[kind] += 1
        memsize[kind] += rec.get("memsize", 0)
    return total, invalid, objects, memsize


def keys(path):
    out = set()
    invalid = 0
    for line in lines(path):
        try:
            rec = json.loads(line)
        except ValueError:
            invalid += 1
            continue
        address = rec.get("address")
        if address is not None:
            out.add((address, rec["type"], rec.get("generation")))
    return out, invalid


def main(argv):
    if len(argv) < 3 or argv[1] not in ("count", "diff") or (argv[1] == "diff" and len(argv) != 5):
        print(__doc__, file=sys.stderr)
        return 2
    t0 = time.monotonic()
    if argv[1] == "count":
        for path in argv[2:]:
            total, invalid, objects, memsize = count(path)
            print(f"{path}: {total} lines, {invalid} not valid JSON")
            print(f"{'type':<10} {'objects':>10} {'memsize':>14}")
            for kind, n in objects.most_common():
                print(f"{kind:<10} {n:>10} {memsize[kind]:>14}")
            print(f"{'total':<10} {sum(objects.values()):>10} {sum(memsize.values()):>14}")
    else:
        (a, ia), (b, ib), (c, ic) = (keys(p) for p in argv[2:5])
        new_in_b = b - a
        still_in_c = new_in_b & c
        print(f"objects: A {len(a)}, B {len(b)}, C {len(c)} (lines not valid JSON: {ia}, {ib}, {ic})")
        print(f"in B, not in A: {len(new_in_b)}")
        print(f"of those, still in C: {len(still_in_c)}")
    print(f"elapsed {time.monotonic() - t0:.2f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
