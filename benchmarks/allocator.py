#!/usr/bin/env python
"""The default prior with and without freed memory kept (:func:`invkit.keep_freed_memory`).

Each case runs in a fresh process: load the default prior, one warm-up pass over ``--tiles``
tiles of 256² fed ``per call`` at a time (what :class:`invkit.TiledPrior` feeds the network:
one on a CPU, 8 on a GPU), then ``--repeats`` timed passes; prints wall, user and system CPU
seconds and minor page faults per pass.

Stop the background training first; the table states the threads.

Usage:
    python benchmarks/allocator.py --threads 2 [--tiles 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time, torch, invkit
mode, threads, tiles, repeats, per_call = sys.argv[1], *(int(v) for v in sys.argv[2:6])
torch.set_num_threads(threads)
kept = invkit.keep_freed_memory() if mode == "kept" else False
prior = invkit.get_registry().build("prior", "default", [])
x = torch.rand(tiles, 3, 256, 256, generator=torch.Generator().manual_seed(0))
def once():
    for i in range(0, tiles, per_call):
        prior.denoise(x[i : i + per_call], 0.2)
once()
a, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
for _ in range(repeats):
    once()
wall, b = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"kept": kept, "wall": wall / repeats, "user": (b.ru_utime - a.ru_utime) / repeats,
                  "sys": (b.ru_stime - a.ru_stime) / repeats, "faults": (b.ru_minflt - a.ru_minflt) / repeats,
                  "peak_gb": b.ru_maxrss / 2**20}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tiles", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    print(f"threads {args.threads}; default prior, {args.tiles} tiles of 256x256, mean of {args.repeats} passes after a warm-up\n")
    print("| freed memory | tiles per call | wall (s) | user CPU (s) | system CPU (s) | minor page faults | peak RSS (GB) |")
    print("|---|---|---|---|---|---|---|")
    for per_call in (1, args.tiles):
        for mode in ("returned", "kept"):
            out = subprocess.run([sys.executable, "-c", CHILD, mode, str(args.threads), str(args.tiles), str(args.repeats), str(per_call)],
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            label = "returned (glibc default)" if mode == "returned" else f"kept (keep_freed_memory: {r['kept']})"
            print(f"| {label} | {per_call} | {r['wall']:.2f} | {r['user']:.2f} | {r['sys']:.2f} | {r['faults']:.0f} | {r['peak_gb']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
