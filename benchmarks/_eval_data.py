"""Evaluation and tuning images of the default-prior benchmark (issue 6).

Evaluation set (never trained or tuned on): scikit-image's ``astronaut``, ``coffee``,
``chelsea``, ``rocket``, ``motorcycle_left`` (``data.stereo_motorcycle()[0]``), and ``camera``
(grey). Evaluation crop: resize the short side to 256 px (antialiased bicubic, torch's
``interpolate(mode="bicubic", antialias=True)``), centre-crop 256×256, round to the 8-bit grid.

Tuning set (for the classical baselines' parameters; outside the evaluation set): scikit-image's
``brick``, ``grass``, ``gravel``, ``coins``, ``moon`` (grey) and, where the Debian wallpapers are
unpacked under ``/work/data/extracted/usr/share/wallpapers``, the smallest file of ``Autumn``,
``ColorfulCups`` and ``BytheWater`` (KDE plasma-workspace-wallpapers photographs; RGB), cropped
the same way. The wallpapers are in the prior's training data, which does not matter for tuning
the classical methods; Debian's ``mate-backgrounds`` (reserved for independent evaluation) is
not used.
"""

from __future__ import annotations

from collections.abc import Callable
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["EVAL_IMAGES", "RGB_EVAL", "GREY_EVAL", "eval_crop", "load_eval", "load_tuning", "WALLPAPER_ROOT"]

CROP = 256
#: Where the extracted ``plasma-workspace-wallpapers`` package's wallpapers are (``INVKIT_WALLPAPERS``).
WALLPAPER_ROOT = Path(os.environ.get("INVKIT_WALLPAPERS", "/work/data/extracted/usr/share/wallpapers"))
TUNING_SKIMAGE = ("brick", "grass", "gravel", "coins", "moon")
TUNING_WALLPAPERS = ("Autumn", "ColorfulCups", "BytheWater")


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        if name == "motorcycle_left":
            return data.stereo_motorcycle()[0]
        return getattr(data, name)()

    return load


EVAL_IMAGES: dict[str, Callable[[], np.ndarray]] = {
    name: _skimage(name) for name in ("astronaut", "coffee", "chelsea", "rocket", "motorcycle_left", "camera")
}
RGB_EVAL = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle_left")
GREY_EVAL = ("camera",)


def eval_crop(img: np.ndarray, size: int = CROP) -> torch.Tensor:
    """``(C, size, size)`` float32 in [0, 1]: short side resized to ``size``, centre crop, 8-bit grid."""
    a = np.asarray(img)
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / 255.0
    else:
        a = a.astype(np.float32)
        if a.max() > 1.0:
            a = a / 255.0
    if a.ndim == 2:
        a = a[:, :, None]
    a = a[:, :, :3]
    x = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].double()
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False)
    top, left = (nh - size) // 2, (nw - size) // 2
    x = x[..., top : top + size, left : left + size].clamp(0, 1)
    return (torch.round(x * 255) / 255).float()[0]


def load_eval(name: str, size: int = CROP) -> torch.Tensor:
    """The evaluation crop of one evaluation image, ``(C, size, size)``."""
    return eval_crop(EVAL_IMAGES[name](), size)


def load_tuning(size: int = CROP) -> dict[str, torch.Tensor]:
    """The tuning crops by name (grey ones ``(1, H, W)``, RGB ones ``(3, H, W)``)."""
    from skimage import data

    out = {name: eval_crop(getattr(data, name)(), size) for name in TUNING_SKIMAGE}
    for folder in TUNING_WALLPAPERS:
        images = WALLPAPER_ROOT / folder / "contents" / "images"
        files = sorted(images.glob("*.jpg")) + sorted(images.glob("*.png")) if images.is_dir() else []
        if not files:
            print(
                f"WARNING: tuning wallpaper {folder} not found under {WALLPAPER_ROOT}: the tuning set is smaller "
                "and the tuned Gaussian std / Wiener λ may differ from the published ones. Get it with "
                "`apt-get download plasma-workspace-wallpapers && dpkg -x plasma-workspace-wallpapers_*.deb DIR` "
                "and set INVKIT_WALLPAPERS=DIR/usr/share/wallpapers",
                flush=True,
            )
            continue
        path = min(files, key=lambda p: p.stat().st_size)
        from PIL import Image

        with Image.open(path) as im:
            out[f"wallpaper:{folder}"] = eval_crop(np.asarray(im.convert("RGB")), size)
    return out
