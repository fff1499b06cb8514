#!/usr/bin/env python3
"""CPython's cyclic gc on the W4, W5 and W7 shapes of benches/workloads.rs,
printed beside gencc's figures.

Usage (from the repository root):

    python3 benches/cpython_gc.py              # CPython figures + gencc's from the last
                                               # `cargo bench --bench workloads` run
    python3 benches/cpython_gc.py --run-cargo  # first runs gencc's three shapes:
                                               #   cargo bench --bench workloads -- '^(W4|W5|W7_L[0-9]+)/gencc$'
    python3 benches/cpython_gc.py --n 100000   # smaller N (gencc's figures must use the same N:
                                               #   GENCC_BENCH_N=100000; --run-cargo passes it on)
    python3 benches/cpython_gc.py --json PATH  # read gencc's figures from PATH

gencc's figures come from the JSON that the bench writes at the end of every run,
`<cargo target dir>/gencc-bench/workloads.json` (the target dir is taken from
$CARGO_TARGET_DIR, else from `cargo metadata`). Without that file only CPython's
figures are printed.

Method (as ../shared/reference/cpython_bench.py): every figure is measured in a fresh
child interpreter (this script re-invokes itself with --figure NAME), REPEAT times, and the
median (and the best) is printed. Automatic collection is disabled while a graph is built,
and the timed phase is the same as in the Rust bench:

  W4  N/2 two-node cycles (a.a = b; b.a = a), one handle per pair held in a list;
      timed: `del` the list (dropping every handle), then one gc.collect().
  W5  one ring of N nodes, one handle to it; timed: `del` the handle, then gc.collect().
  W7  L old nodes (L = N, and L = 0) in rings of 4, held in a list; gc.collect() untimed
      (they end in the oldest generation). Then, with automatic collection enabled and the
      default thresholds: 200 rounds, each appending 500 new two-node cycles (1,000 objects)
      to a list and clearing it. Timed: the rounds, per young object (200,000). Then one
      explicit gc.collect(), timed separately ("final").

Nodes are `__slots__ = ("payload", "a", "b")` instances: a payload and two edges, like the
Rust node. Figures are ns per object (W7: per young object).
"""
import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time

ROUNDS = 200
PER_ROUND = 1000
RING = 4


class Node:
    __slots__ = ("payload", "a", "b")

    def __init__(self, payload):
        self.payload = payload
        self.a = None
        self.b = None


def fresh():
    gc.disable()
    gc.collect()
    gc.collect()


def w4(n):
    fresh()
    roots = []
    for i in range(n // 2):
        a = Node(2 * i)
        b = Node(2 * i + 1)
        a.a = b
        b.a = a
        roots.append(b)
    del a, b
    t0 = time.perf_counter()
    del roots
    freed = gc.collect()
    t1 = time.perf_counter()
    assert freed >= 2 * (n // 2), freed
    return (t1 - t0) / (2 * (n // 2)), None


def ring(n, first=0):
    head = Node(first)
    prev = head
    for i in range(1, n):
        node = Node(first + i)
        prev.a = node
        prev = node
    prev.a = head
    return head


def w5(n):
    fresh()
    head = ring(n)
    t0 = time.perf_counter()
    del head
    freed = gc.collect()
    t1 = time.perf_counter()
    assert freed >= n, freed
    return (t1 - t0) / n, None


def w7(old):
    fresh()
    rings = [ring(RING, r * RING) for r in range(old // RING)]
    gc.collect()
    young = []
    gc.enable()
    t0 = time.perf_counter()
    for _ in range(ROUNDS):
        for i in range(PER_ROUND // 2):
            a = Node(2 * i)
            b = Node(2 * i + 1)
            a.a = b
            b.a = a
            young.append(b)
        young.clear()
    t1 = time.perf_counter()
    gc.disable()
    del a, b
    t2 = time.perf_counter()
    gc.collect()
    t3 = time.perf_counter()
    objects = ROUNDS * PER_ROUND
    del rings
    return (t1 - t0) / objects, (t3 - t2) / objects


def figures(n):
    return {
        "W4": lambda: w4(n),
        "W5": lambda: w5(n),
        f"W7_L{n}": lambda: w7(n),
        "W7_L0": lambda: w7(0),
    }


def child(name, n):
    timed, extra = figures(n)[name]()
    print(json.dumps({"timed": timed, "extra": extra}))


def in_child(name, n):
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--figure", name, "--n", str(n)],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def target_dir(root):
    if os.environ.get("CARGO_TARGET_DIR"):
        return os.environ["CARGO_TARGET_DIR"]
    try:
        meta = subprocess.run(
            ["cargo", "metadata", "--no-deps", "--format-version", "1"],
            cwd=root, check=True, capture_output=True, text=True,
        ).stdout
        return json.loads(meta)["target_directory"]
    except (OSError, subprocess.CalledProcessError, ValueError, KeyError):
        return os.path.join(root, "target")


def gencc_figures(path, n):
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None, f"no gencc figures ({path} not found; run with --run-cargo)"
    note = f"gencc: {path}, {data.get('date', '?')}, {data.get('machine', '?')}"
    if data.get("n") != n:
        note += f"  WARNING: that run used N = {data.get('n')}, not {n}"
    out = {}
    for row in data.get("results", []):
        if row.get("crate") == "gencc" and row.get("status") == "ok":
            out[row["workload"]] = (row["ns_per_object"], row.get("final_collect_ns_per_object"),
                                    row.get("min_ns_per_object"))
    return out, note


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=int(os.environ.get("GENCC_BENCH_N", "1000000").replace("_", "")))
    ap.add_argument("--repeat", type=int, default=5, help="fresh processes per figure (median)")
    ap.add_argument("--json", help="gencc's workloads.json (default: <target>/gencc-bench/workloads.json)")
    ap.add_argument("--run-cargo", action="store_true", help="run gencc's W4, W5, W7 with cargo bench first")
    ap.add_argument("--figure", help=argparse.SUPPRESS)
    args = ap.parse_args()
    n = args.n
    if args.figure:
        child(args.figure, n)
        return

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if args.run_cargo:
        env = dict(os.environ, GENCC_BENCH_N=str(n))
        subprocess.run(
            ["cargo", "bench", "--bench", "workloads", "--", r"^(W4|W5|W7_L[0-9]+)/gencc$"],
            cwd=root, env=env, check=True,
        )
    path = args.json or os.path.join(target_dir(root), "gencc-bench", "workloads.json")
    ours, note = gencc_figures(path, n)

    print(f"# CPython {platform.python_version()} ({platform.python_implementation()}), "
          f"N = {n:,}, thresholds {gc.get_threshold()}; each figure: median (best) of "
          f"{args.repeat} fresh processes; ns per object (W7: per young object)")
    print(f"# {note}")
    rows = [
        ("W4", "W4 pairs: del + gc.collect()"),
        ("W5", "W5 ring: del + gc.collect()"),
        (f"W7_L{n}", f"W7 rounds, L = {n:,}"),
        ("W7_L0", "W7 rounds, L = 0"),
    ]
    print(f"{'shape':<34} {'CPython ns/obj':>16} {'(best)':>9} {'gencc ns/obj':>13} {'(best)':>9} "
          f"{'CPython/gencc':>14}")
    for key, label in rows:
        runs = [in_child(key, n) for _ in range(args.repeat)]
        timed = [r["timed"] * 1e9 for r in runs]
        med, best = statistics.median(timed), min(timed)
        g = (ours or {}).get(key)
        gtxt = f"{g[0]:.1f}" if g else "-"
        gbest = f"{g[2]:.1f}" if g and g[2] is not None else "-"
        ratio = f"{med / g[0]:.1f}x" if g and g[0] > 0 else "-"
        print(f"{label:<34} {med:>16.1f} {best:>9.1f} {gtxt:>13} {gbest:>9} {ratio:>14}")
        if key.startswith("W7"):
            extra = [r["extra"] * 1e9 for r in runs]
            gfin = f"{g[1]:.1f}" if g and g[1] is not None else "-"
            fratio = f"{statistics.median(extra) / g[1]:.1f}x" if g and g[1] else "-"
            print(f"{'  final gc.collect(), per young obj':<34} {statistics.median(extra):>16.1f} "
                  f"{min(extra):>9.1f} {gfin:>13} {'':>9} {fratio:>14}")
    print("# CPython/gencc compares medians. Budget (issue 3): W4 and W5 at least 5x faster per object "
          "than CPython's gc.collect()")


if __name__ == "__main__":
    main()
