"""Speed and memory of one prior evaluation on the CPU: memory layout and attention kernel.

Prints three markdown tables (ratios are meaningful within one run; the machines are shared):

1. The ``default`` prior at 1×3×S×S: seconds per ``denoise`` in the NCHW and NHWC
   (``channels_last``) layouts, and the largest difference between the two outputs over
   σ ∈ {0.02, 0.3, 2, 50} on a real photo (scikit-image's ``astronaut``).
2. torch's CPU GroupNorm, NCHW vs NHWC input, max error against float64, for groups whose mean
   is 0, 100 and 1000 times their spread (the reason NHWC is opt-in for other checkpoints).
3. ``scaled_dot_product_attention`` with 4 heads of 32 channels over T tokens, with q/k/v as
   strided views (how the UNets used to pass them) and contiguous: seconds and peak resident
   memory, each in a fresh subprocess. T = 16384 is a 1024² image at the 1/8 level.

Examples:
    python benchmarks/prior_speed.py --threads 1
    python benchmarks/prior_speed.py --threads 2 --size 512 --tokens 4096,16384
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import torch
import torch.nn.functional as F
from _timing import median_time  # benchmarks/ is on sys.path when run as a script


def layout_table(size: int, repeats: int) -> None:
    import numpy as np
    from skimage import data

    import invkit

    prior = invkit.get_registry().build("prior", "default")
    rgb = prior.rgb
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    arr = torch.from_numpy(np.asarray(data.astronaut(), dtype=np.float32) / 255).permute(2, 0, 1)[None, :, :256, 128:384].contiguous()
    g = torch.Generator().manual_seed(1)
    sigmas = torch.tensor([0.02, 0.3, 2.0, 50.0])
    noisy = arr + sigmas.view(-1, 1, 1, 1) * torch.randn((4, *arr.shape[1:]), generator=g)
    rows, outs = [], {}
    with torch.inference_mode():
        for on in (False, True):
            rgb.set_channels_last(on)
            sec = median_time(lambda: prior.denoise(x, 0.3), repeats)
            outs[on] = prior.denoise(noisy, sigmas)
            rows.append((("NHWC" if on else "NCHW"), sec))
    diff = (outs[True] - outs[False]).abs().flatten(1).amax(1)
    print(f"\n### default prior, 1x3x{size}x{size}, {torch.get_num_threads()} thread(s), median of {repeats}\n")
    print("| layout | s / evaluation | vs NCHW |\n| --- | --- | --- |")
    for name, sec in rows:
        print(f"| {name} | {sec:.3f} | {sec / rows[0][1]:.2f} |")
    print("\nlargest |NHWC - NCHW| of denoise on astronaut 256²: " + ", ".join(f"σ={float(s):g}: {float(d):.1e}" for s, d in zip(sigmas, diff)))


def groupnorm_table() -> None:
    print("\n### torch CPU GroupNorm (2x64x32x32, 32 groups), max error against float64\n")
    print("| group mean / spread | NCHW | NHWC |\n| --- | --- | --- |")
    g = torch.Generator().manual_seed(0)
    for ratio in (0, 100, 1000):
        x = ratio * 1e-3 + 1e-3 * torch.randn(2, 64, 32, 32, generator=g)
        w, b = torch.randn(64, generator=g), torch.randn(64, generator=g)
        ref = F.group_norm(x.double(), 32, w.double(), b.double())
        nchw = F.group_norm(x, 32, w, b)
        nhwc = F.group_norm(x.contiguous(memory_format=torch.channels_last), 32, w, b)
        print(f"| {ratio} | {float((nchw.double() - ref).abs().max()):.1e} | {float((nhwc.double() - ref).abs().max()):.1e} |")


_CHILD = r"""
import json, resource, sys, time, torch
import torch.nn.functional as F
torch.set_num_threads(int(sys.argv[1])); T = int(sys.argv[2]); strided = sys.argv[3] == "strided"
qkv = torch.randn(1, 3 * 4 * 32, T, generator=torch.Generator().manual_seed(0))
q, k, v = (t.transpose(-1, -2) for t in qkv.reshape(1, 4, 3, 32, T).unbind(2))
if not strided:
    q, k, v = (t.contiguous() for t in (q, k, v))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with torch.inference_mode():
    t0 = time.perf_counter(); F.scaled_dot_product_attention(q, k, v); sec = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": sec, "extra_gb": (peak - base) / 1e6}))
"""


def attention_table(tokens: list[int], threads: int) -> None:
    print(f"\n### scaled_dot_product_attention, 4 heads x 32 channels, {threads} thread(s), fresh process each\n")
    print("| T | strided q/k/v: s | extra peak memory | contiguous: s | extra peak memory |\n| --- | --- | --- | --- | --- |")
    for t in tokens:
        got = {}
        for kind in ("strided", "contiguous"):
            out = subprocess.run([sys.executable, "-c", _CHILD, str(threads), str(t), kind], capture_output=True, text=True, check=True)
            got[kind] = json.loads(out.stdout)
        s, c = got["strided"], got["contiguous"]
        print(f"| {t} | {s['seconds']:.2f} | {s['extra_gb']:.2f} GB | {c['seconds']:.2f} | {c['extra_gb']:.2f} GB |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--size", type=int, default=256, help="image side for the layout timing")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tokens", default="4096,16384", help="attention lengths T")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    layout_table(args.size, args.repeats)
    groupnorm_table()
    attention_table([int(t) for t in args.tokens.split(",")], args.threads)


if __name__ == "__main__":
    main()
