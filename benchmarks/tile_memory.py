#!/usr/bin/env python
"""Peak resident memory of one tiled prior evaluation: does it grow with the tile batch or with the image?

Each case runs in a fresh process (peak RSS is per process): load the default prior, evaluate it
once on a small image (the baseline: weights, allocator, libraries), then once on a
``(1, 3, H, W)`` image on tiles of 256 (overlap 32) with ``batch`` tiles per network call, and
print the growth of the peak over the baseline next to the image's own size in float32.

Stop the background training first (it competes for memory bandwidth, not for the figures here).

Usage:
    python benchmarks/tile_memory.py --threads 2 [--cases 1024x1024:1,1024x1024:8,2048x2048:8]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time, torch, invkit
h, w, batch, threads = (int(v) for v in sys.argv[1:5])
torch.set_num_threads(threads)
invkit.keep_freed_memory()  # as the invkit command does
prior = invkit.get_registry().build("prior", "default", [])
prior.denoise(torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0)), 0.2)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
t0 = time.perf_counter()
invkit.TiledPrior(prior, tile=256, overlap=32, batch=batch).denoise(x, 0.2)
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"base_kib": base, "peak_kib": peak, "seconds": seconds}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cases", default="1024x1024:1,1024x1024:8,2048x2048:8", help="HxW:batch, comma-separated")
    args = p.parse_args()
    print(f"threads {args.threads}; tiles 256, overlap 32; one evaluation per fresh process\n")
    print("| image | MP | tile batch | image, float32 (GB) | peak over baseline (GB) | baseline (GB) | s |")
    print("|---|---|---|---|---|---|---|")
    for case in args.cases.split(","):
        size, batch = case.split(":")
        h, w = (int(v) for v in size.split("x"))
        out = subprocess.run([sys.executable, "-c", CHILD, str(h), str(w), batch, str(args.threads)], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        gb = 1e9 / 1024  # KiB per GB (10^9 bytes)
        print(f"| {w}x{h} | {h * w / 1e6:.2f} | {batch} | {3 * h * w * 4 / 1e9:.3f} | {(r['peak_kib'] - r['base_kib']) / gb:.2f} | "
              f"{r['base_kib'] / gb:.2f} | {r['seconds']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
