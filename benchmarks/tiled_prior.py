#!/usr/bin/env python
"""Tiled vs untiled default prior (:class:`invkit.TiledPrior`): speed per megapixel, the seam,
and what tiling does to a restoration.

1. **Speed**: seconds of one ``denoise`` per megapixel, untiled at growing sizes and tiled with
   several tile sizes (the prior's self-attention at 1/8 resolution makes the untiled cost grow
   faster than the pixels; tiles keep it linear).
2. **Seam**: one ``denoise`` of a tuning photo at 512² (σ = 0.1 and 0.5): the largest and mean
   difference tiled − untiled, that difference's mean in the blend zones (pixels where some
   tile's normalised window is strictly between 0 and 1) over its mean elsewhere (1.0: the tiles
   disagree with the whole image no more where they meet), and the mean jump between neighbouring
   pixels in the blend zones over the same jump elsewhere, tiled and untiled (a seam shows as a
   tiled ratio above the untiled one).
3. **Restoration**: DDRM deblurring (gaussian_blur σ = 2, σ_y = 0.02, one sample, seed 0) of
   the tuning photos at 512² (``--steps``, default 20; and with ``--large`` the first
   ``--large-photos`` at 1024², ``--large-steps``, default 10), tiled (``--restore-tiles``) and
   untiled: PSNR of each, their difference (goal ≤ 0.1 dB) and the time ratio.

Tuning photos only (the tuning wallpapers, cropped; never the evaluation photos). Stop the
background training run first; the table states the threads.

Usage:
    INVKIT_WALLPAPERS=/path/to/usr/share/wallpapers python benchmarks/tiled_prior.py --threads 2 [--large]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import invkit  # noqa: E402
from _eval_data import TUNING_WALLPAPERS, WALLPAPER_ROOT  # noqa: E402
from invkit.metrics import psnr  # noqa: E402
from invkit.runner.inputs import simulate_measurement  # noqa: E402
from invkit.tiled import tile_grid, tile_windows  # noqa: E402


def _photos(size: int) -> dict[str, torch.Tensor]:
    """Centre crops ``(1, 3, size, size)`` of the tuning wallpapers (their largest image file)."""
    import numpy as np
    from PIL import Image

    out = {}
    for folder in TUNING_WALLPAPERS:
        images = WALLPAPER_ROOT / folder / "contents" / "images"
        files = sorted(images.glob("*.jpg")) + sorted(images.glob("*.png")) if images.is_dir() else []
        if not files:
            continue
        with Image.open(max(files, key=lambda p: p.stat().st_size)) as img:
            img = img.convert("RGB")
            scale = size / min(img.size)
            if scale < 1 / 1.5:  # shrink big photos part way, so a crop holds a scene, not a texture
                img = img.resize((round(img.size[0] * scale * 1.5), round(img.size[1] * scale * 1.5)), Image.LANCZOS)
            w, h = img.size
            left, top = (w - size) // 2, (h - size) // 2
            arr = np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.float64) / 255.0
        out[folder] = torch.from_numpy(arr).permute(2, 0, 1)[None].contiguous()
    if not out:
        raise SystemExit(f"no tuning wallpapers under {WALLPAPER_ROOT}: set INVKIT_WALLPAPERS")
    return out


def _time(prior, x: torch.Tensor, sigma: float, repeat: int = 2) -> float:
    prior.denoise(x, sigma)  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeat):
        prior.denoise(x, sigma)
    return (time.perf_counter() - t0) / repeat


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--large", action="store_true", help="also 1024² (untiled speed and the restoration): slow on a CPU")
    p.add_argument("--tiles", default="128:16,192:32,256:32", help="tile:overlap pairs to measure")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--skip", default="", help="comma-separated parts to skip: speed, seam, restore")
    p.add_argument("--restore-tiles", default="256:32", help="tile:overlap pairs for the restoration part")
    p.add_argument("--large-photos", type=int, default=1, help="photos restored at 1024² (--large)")
    p.add_argument("--large-steps", type=int, default=10, help="DDRM steps at 1024² (--large)")
    p.add_argument("--sizes", default=None, help="comma-separated square sides for the speed part (default 128,256,512 and 1024 with --large)")
    p.add_argument("--returned", action="store_true", help="leave glibc's default (freed memory returned): the invkit command keeps it")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if not args.returned:
        invkit.keep_freed_memory()  # as the invkit command does
    skip = set(filter(None, args.skip.split(",")))
    reg = invkit.get_registry()
    prior = reg.build("prior", "default", [])
    tiles = [tuple(int(v) for v in pair.split(":")) for pair in args.tiles.split(",")]
    sizes = [256, 512] + ([1024] if args.large else [])
    print(f"threads {args.threads}, torch {torch.__version__}, freed memory {'returned' if args.returned else 'kept'}\n")

    if "speed" not in skip:
        print("| size | untiled s/MP | " + " | ".join(f"tile {t}/{o} s/MP" for t, o in tiles) + " |")
        print("|---|---|" + "---|" * len(tiles))
        g = torch.Generator().manual_seed(0)
        for n in ([int(v) for v in args.sizes.split(",")] if args.sizes else [128, *sizes]):
            x = (0.5 + 0.2 * torch.randn(1, 3, n, n, generator=g)).float()
            mp = n * n / 1e6
            cells = [f"{_time(prior, x, 0.2) / mp:.2f}"]
            for t, o in tiles:
                cells.append(f"{_time(invkit.TiledPrior(prior, tile=t, overlap=o), x, 0.2) / mp:.2f}" if n > t else "–")
            print(f"| {n}² | " + " | ".join(cells) + " |", flush=True)
        print()

    photos512 = _photos(512)
    if "seam" not in skip:
        print("| tile/overlap | σ | max abs(tiled − untiled) | mean | mean, blend zones / elsewhere | seam jump / elsewhere (tiled) | (untiled) |")
        print("|---|---|---|---|---|---|---|")
        x0 = next(iter(photos512.values())).float()
        for t, o in tiles:
            tiler = invkit.TiledPrior(prior, tile=t, overlap=o)
            # the blend zones: pixels where some tile's normalised window is strictly between 0
            # and 1, i.e. where the result passes from one tile to the next (the ramps)
            grid = tile_grid(512, 512, t, o, 8)
            windows = tile_windows(512, 512, t, o, tiler.margin)
            total = torch.zeros(512, 512, dtype=torch.float64)
            for (top, left, th, tw), win in zip(grid, windows):
                total[top : top + th, left : left + tw] += win
            in_zone = torch.zeros(512, 512, dtype=torch.bool)
            for (top, left, th, tw), win in zip(grid, windows):
                frac = win / total[top : top + th, left : left + tw]
                in_zone[top : top + th, left : left + tw] |= (frac > 1e-9) & (frac < 1 - 1e-9)
            if not bool(in_zone.any()):  # one tile covers the image: nothing to blend
                continue
            # a jump between two neighbouring pixels counts as in a zone when either pixel is
            cross_y, cross_x = in_zone[1:, :] | in_zone[:-1, :], in_zone[:, 1:] | in_zone[:, :-1]
            for sigma in (0.1, 0.5):
                noisy = x0 + sigma * torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
                full = prior.denoise(noisy, sigma)
                tiled = tiler.denoise(noisy, sigma)
                diff = (tiled - full).abs()
                zone_ratio = float(diff[..., in_zone].mean() / diff[..., ~in_zone].mean())

                def jump(img: torch.Tensor) -> float:
                    dy = (img[..., 1:, :] - img[..., :-1, :]).abs().mean(dim=(0, 1))  # (H - 1, W)
                    dx = (img[..., :, 1:] - img[..., :, :-1]).abs().mean(dim=(0, 1))  # (H, W - 1)
                    at = torch.cat([dy[cross_y], dx[cross_x]]).mean()
                    return float(at / torch.cat([dy[~cross_y], dx[~cross_x]]).mean())

                print(
                    f"| {t}/{o} | {sigma} | {float(diff.max()):.4f} | {float(diff.mean()):.5f} | {zone_ratio:.2f} | "
                    f"{jump(tiled):.3f} | {jump(full):.3f} |",
                    flush=True,
                )
        print()

    if "restore" not in skip:
        print(f"| size | photo | tile/overlap | PSNR untiled | PSNR tiled | tiled − untiled (dB) | time tiled / untiled |")
        print("|---|---|---|---|---|---|---|")
        solver = reg.build("solver", "ddrm", [])
        restore_tiles = [tuple(int(v) for v in pair.split(":")) for pair in args.restore_tiles.split(",")]
        for n in sizes[1:]:
            photos = photos512 if n == 512 else dict(list(_photos(n).items())[: args.large_photos])
            steps = args.steps if n == 512 else args.large_steps
            for name, clean in photos.items():
                op = reg.build_operator("gaussian_blur", tuple(clean.shape[1:]), {"sigma": 2.0})
                noise = invkit.GaussianNoise(0.02)
                problem = invkit.Problem(op, simulate_measurement(op, clean, noise, seed=0), noise)

                def run(pr) -> tuple[float, float]:
                    t0 = time.perf_counter()
                    out = solver.solve(problem, pr, steps=steps, generator=[torch.Generator().manual_seed(0)])
                    return psnr(out.x.double().clamp(0, 1), clean), time.perf_counter() - t0

                base, t_base = run(prior)
                for t, o in restore_tiles:
                    value, t_tiled = run(invkit.TiledPrior(prior, tile=t, overlap=o))
                    print(f"| {n}² ({steps} steps) | {name} | {t}/{o} | {base:.2f} | {value:.2f} | {value - base:+.2f} | {t_tiled / t_base:.2f} |", flush=True)


if __name__ == "__main__":
    main()
