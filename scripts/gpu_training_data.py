#!/usr/bin/env python
"""Pack the prior's training photos small enough to travel to a lent GPU machine (issue 19).

The device tool carries at most 64 MiB with the working tree, and the extracted Debian wallpaper
packages are ~150 MB (Plasma ships each wallpaper at several resolutions). This keeps, per
picture, only its largest file (``find_images``, as the training script does since step 33,962;
a dark variant is its own picture), reduced exactly as the training pyramid's top level
(``to_pyramid``: halved until the short side is at most ``MAX_SIDE``), saved as JPEG quality 90
with 4:4:4 chroma. The training script rebuilds the lower levels from it. The extracted packages
of 2026-12-04 gave 61 images, 17.8 MB (the three dark variants then merged into their pictures;
not re-measured since). Files matching an evaluation image's thumbnail
are skipped here (as the training script does), so the GPU run may use ``--no-eval-check``.

Train from the output with ``--no-eval-check --no-skimage`` (scikit-image's photos need a
download there). ``mate-backgrounds`` (the independent evaluation set) is refused.

Usage:
    python scripts/gpu_training_data.py /work/data/extracted gpu_train/data
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_default_prior import MIN_SIDE, evaluation_thumbnails, find_images, matches_evaluation, to_pyramid  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", type=Path, help="folder of checked training photos (e.g. the extracted wallpaper packages)")
    p.add_argument("out", type=Path, help="output folder (git-ignored when inside the repository)")
    p.add_argument("--quality", type=int, default=90)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for stale in args.out.glob("*.jpg"):  # an earlier run's files would otherwise stay and be trained on
        stale.unlink()

    thumbs = evaluation_thumbnails()
    total, kept = 0, 0
    for best in find_images([args.source]):  # one file per picture, its largest
        with Image.open(best) as im:
            arr = np.asarray(im.convert("RGB"))
        twin = matches_evaluation(arr, thumbs)
        if twin is not None or min(arr.shape[:2]) < MIN_SIDE:
            print(f"skipping {best}: " + (f"it is the evaluation image {twin}" if twin else "too small"))
            continue
        top = to_pyramid(arr)[0]
        dst = args.out / f"{kept:03d}.jpg"
        Image.fromarray(top.permute(1, 2, 0).numpy()).save(dst, quality=args.quality, subsampling=0)
        total += dst.stat().st_size
        kept += 1
    print(f"{kept} images, {total / 1e6:.1f} MB in {args.out}")


if __name__ == "__main__":
    main()
