#!/usr/bin/env python
"""Pack the prior's training photos small enough to travel to a lent GPU machine (issue 19).

The device tool carries at most 64 MiB with the working tree, and the extracted Debian wallpaper
packages are ~150 MB (Plasma ships each wallpaper at several resolutions). This keeps, per
wallpaper, only its largest file, reduced exactly as the training pyramid's top level
(``to_pyramid``: halved until the short side is at most ``MAX_SIDE``), saved as JPEG quality 90
with 4:4:4 chroma. The training script rebuilds the lower levels from it. 90 wallpapers ->
18.6 MB (2026-12-04).

The folders given must already be checked against the evaluation set (the training script's
``--data`` check); train from the output with ``--no-eval-check --no-skimage``. Never point this
at ``mate-backgrounds`` (the independent evaluation set).

Usage:
    python scripts/gpu_training_data.py /work/data/extracted gpu_train/data
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_default_prior import find_images, to_pyramid  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", type=Path, help="folder of checked training photos (e.g. the extracted wallpaper packages)")
    p.add_argument("out", type=Path, help="output folder (git-ignored when inside the repository)")
    p.add_argument("--quality", type=int, default=90)
    args = p.parse_args()
    groups: dict[str, list[Path]] = defaultdict(list)
    for path in find_images([args.source]):
        key = str(path).split("/contents/")[0]  # Plasma: <name>/contents/images/<W>x<H>.jpg
        groups[key].append(path)
    args.out.mkdir(parents=True, exist_ok=True)
    total = 0
    for i, (_, paths) in enumerate(sorted(groups.items())):
        best = max(paths, key=lambda q: np.prod(Image.open(q).size))
        with Image.open(best) as im:
            top = to_pyramid(np.asarray(im.convert("RGB")))[0]
        dst = args.out / f"{i:03d}.jpg"
        Image.fromarray(top.permute(1, 2, 0).numpy()).save(dst, quality=args.quality, subsampling=0)
        total += dst.stat().st_size
    print(f"{len(groups)} images, {total / 1e6:.1f} MB in {args.out}")


if __name__ == "__main__":
    main()
