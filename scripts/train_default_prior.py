#!/usr/bin/env python
"""Train invkit's built-in natural-image diffusion prior (the ``small`` ADM UNet).

Standard DDPM training (Ho et al.): images in [-1, 1], linear betas 1e-4..0.02 over 1000 steps,
epsilon prediction, uniform timesteps, MSE loss, AdamW, EMA of the weights. The model is fully
convolutional and trained on random crops (default 64 px) from a multi-scale pyramid of every
training photo, so it can be used at any size divisible by 8.

Seeded and resumable: the full training state (model, EMA, optimizer, step, RNG states) lives in
``--state`` (keep it outside the repository) and is written atomically every ``--save-every``
steps; the same command resumes. Progress goes to ``<state>/log.jsonl`` and stdout. The same
script runs unchanged on a GPU (``--device auto`` picks CUDA when present). ``--precision bfloat16``
runs the network's torso under bfloat16 autocast (master weights, Adam state, the output head and
the loss stay float32); its speed and gradient error on this project's CPU:
``benchmarks/train_precision.py``.

Data (see docs/default_prior.md for sources and licences): image files under ``--data`` folders
(e.g. the extracted Debian wallpaper packages) and scikit-image's photos, EXCEPT the evaluation
set (astronaut, coffee, chelsea/cat, rocket, motorcycle left/right, camera), which are never
trained on; Debian's ``mate-backgrounds`` is refused as a data folder. A picture shipped at several
sizes (KDE's wallpapers: up to 12, mostly symlinks to one file) is trained on once, from its largest
file (``--all-sizes``: every file, the behaviour before step 33,962 of the CPU run).

Usage:
    python scripts/train_default_prior.py --data /work/data/extracted --state /work/train_state \\
        --threads 1 --steps 200000
    python scripts/train_default_prior.py --state /work/train_state --export \\
        plugins/invkit_priors/default/weights/default.safetensors
    python scripts/train_default_prior.py --state /work/train_state --crop 128 --eval-loss \\
        plugins/invkit_priors/default/weights/default.safetensors /tmp/newer.safetensors
    python scripts/train_default_prior.py --state /tmp/held_out --eval-on evaluation --crop 128 \\
        --eval-crops 128 --eval-loss plugins/invkit_priors/default/weights/default.safetensors /tmp/newer.safetensors
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import re
import signal
import time
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from invkit.allocator import keep_freed_memory
from invkit.devices import resolve_device
from invkit.io import atomic_write
from invkit.prior import alphas_bar_from_betas, linear_betas
from invkit_priors.checkpoints.invkit_format import read_invkit_metadata, write_invkit_prior
from invkit_priors.checkpoints.safe_load import load_state_dict_file
from invkit_priors.checkpoints.schedule import DEFAULT_SCHEDULE
from invkit_priors.networks.adm import ADMConfig, ADMUNet

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
#: scikit-image images reserved for evaluation (and the stereo twin of one of them): never trained on.
EVALUATION_SKIMAGE = {"astronaut", "coffee", "chelsea", "cat", "rocket", "stereo_motorcycle", "camera"}
#: File-name tokens that mark an evaluation image (``motorcycle*`` too): such files are skipped.
EVALUATION_NAMES = {"astronaut", "coffee", "chelsea", "rocket", "camera", "cameraman"}
#: scikit-image photographs usable for training (grayscale ones are replicated to RGB).
TRAIN_SKIMAGE = ("brick", "grass", "gravel", "coins", "moon", "clock", "hubble_deep_field", "retina", "immunohistochemistry")
FORBIDDEN_DIRS = ("mate-backgrounds", "mate-background")
MAX_SIDE = 1536  # the pyramid's largest level (short side), to bound memory
MIN_SIDE = 96  # smallest level kept


def is_evaluation_name(path: Path) -> bool:
    """Whether a file name names an evaluation image (``astronaut.png``, ``motorcycle_right.png``, ...)."""
    tokens = [t for t in re.split(r"[^a-z0-9]+", path.stem.lower()) if t]
    return any(t in EVALUATION_NAMES or t.startswith("motorcycle") for t in tokens)


def picture_key(path: Path) -> str:
    """Which picture an image file shows: files of one picture share the key.

    KDE's wallpaper packages (``<Name>/contents/images/<W>x<H>.jpg``, also ``images_dark/``) ship
    one picture at up to 12 sizes and aspect ratios, plus a ``contents/screenshot.png`` preview of
    it; those share the key of their ``images`` folder (a dark variant is its own picture). Any other
    file is its own picture.
    """
    if path.parent.name in ("images", "images_dark") and path.parent.parent.name == "contents":
        return str(path.parent)
    if path.name.lower().startswith("screenshot.") and path.parent.name == "contents":
        return str(path.parent / "images")
    return str(path)


def one_file_per_picture(files: list[Path]) -> list[Path]:
    """The largest file of each picture (:func:`picture_key`), in ``files``' order; one file per target of symlinks.

    Training crops are drawn uniformly over pyramid levels, so a picture shipped at 12 sizes would be
    drawn about 12 times as often as a picture shipped once; its smaller sizes are what the pyramid
    of the largest holds anyway. Files of another aspect ratio (KDE's portrait 720×1440, ...) are
    other crops of the same picture and go with the rest. Files that cannot be read as images are
    skipped with a message. (Debian's ``plasma-workspace-wallpapers`` even ships 11 of
    the 12 "sizes" of 13 pictures as symlinks to the largest file.) Ties in size go to a file that is
    not a symlink, then to the first.
    """
    from PIL import Image

    best: dict[str, tuple[int, Path]] = {}
    targets: set[Path] = set()
    for path in sorted(files, key=lambda p: p.is_symlink()):  # real files first: they win targets and ties
        target = path.resolve()
        if target in targets:
            continue
        targets.add(target)
        try:
            with Image.open(path) as im:
                pixels = im.width * im.height
        except OSError as exc:  # PIL's UnidentifiedImageError is one
            print(f"skipping {path}: not a readable image ({type(exc).__name__})")
            continue
        key = picture_key(path)
        if key not in best or pixels > best[key][0]:
            best[key] = (pixels, path)
    kept = {path for _, path in best.values()}
    return [path for path in files if path in kept]


def find_images(folders: list[Path], *, all_sizes: bool = False) -> list[Path]:
    """Image files under ``folders``, without ``mate-backgrounds`` and files named like evaluation images.

    Args:
        folders: Folders searched recursively for image files.
        all_sizes: Keep every size of a picture (the behaviour before step 33,962 of the CPU run);
            by default only the largest file of each picture (:func:`one_file_per_picture`).

    Raises:
        SystemExit: A folder inside ``mate-backgrounds``.
    """
    files: list[Path] = []
    seen: set[Path] = set()  # overlapping folders give a file once
    for folder in folders:
        folder = folder.resolve()  # the dataset cache is keyed by absolute paths
        if any(bad in str(folder) for bad in FORBIDDEN_DIRS):
            raise SystemExit(f"refusing {folder}: mate-backgrounds is reserved for independent evaluation")
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() not in IMAGE_SUFFIXES or path in seen:
                continue
            seen.add(path)
            target = path.resolve()  # a symlink is judged by what it points to as well
            if any(bad in str(p) for p in (path, target) for bad in FORBIDDEN_DIRS):
                continue
            if is_evaluation_name(path) or is_evaluation_name(target):
                print(f"skipping {path}: named like an evaluation image")
                continue
            if not target.is_file():
                print(f"skipping {path}: a symlink to nothing")
                continue
            files.append(path)
    return files if all_sizes else one_file_per_picture(files)


def _thumb(arr: np.ndarray) -> torch.Tensor:
    """32x32 grey thumbnail in [0, 1] (aspect ratio ignored) of an HxW or HxWxC uint8 image."""
    x = torch.from_numpy(np.array(arr, dtype=np.float32)) / 255.0
    x = x.mean(-1) if x.dim() == 3 else x
    return F.interpolate(x[None, None], size=(32, 32), mode="area")[0, 0]


def _evaluation_photos() -> dict[str, np.ndarray]:
    """scikit-image's evaluation photos by name, both motorcycle views included (``camera`` is 2-D).

    Raises:
        ImportError: scikit-image is missing; other errors where a photo needs a download.
    """
    from skimage import data as skdata

    out = {name: getattr(skdata, name)() for name in ("astronaut", "coffee", "chelsea", "rocket", "camera")}
    out["motorcycle_left"], out["motorcycle_right"] = skdata.stereo_motorcycle()[:2]
    return out


def evaluation_thumbnails() -> dict[str, torch.Tensor]:
    """Thumbnails of the evaluation images (empty when scikit-image is missing)."""
    try:
        photos = _evaluation_photos()
    except ImportError:
        return {}
    return {name: _thumb(arr[..., :3] if arr.ndim == 3 else arr) for name, arr in photos.items()}


#: The benchmark's evaluation photos (benchmarks/_eval_data.py), which ``--eval-on evaluation`` reads.
EVALUATION_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle_left", "camera")


def evaluation_levels() -> tuple[list[torch.Tensor], list[str]]:
    """Pyramid levels (:func:`to_pyramid`) of the evaluation photos, held out from training by construction.

    The same multi-scale treatment as the training photos (full resolution, then halvings; grey
    ``camera`` replicated to RGB), so a loss on their crops is the out-of-sample counterpart of
    :func:`eval_loss`'s in-sample one. Not the benchmark's protocol (which resizes each photo's short
    side to 256 and takes the centre 256²): at a crop of 128 there are 14 eligible levels, of which
    astronaut's and camera's 128² ones are whole images, and no level is larger than 512 px.
    Measuring on the evaluation photos is measuring on the test set: use it to report, not to choose.

    Raises:
        SystemExit: scikit-image (or one of its downloadable photos) is missing.
    """
    try:
        arrays = _evaluation_photos()
    except Exception as exc:  # noqa: BLE001 - ImportError, or a photo that needs a download
        raise SystemExit(f"--eval-on evaluation needs scikit-image's evaluation photos ({type(exc).__name__}: {exc}); "
                         "install scikit-image with pooch, or use --eval-on training") from None
    levels: list[torch.Tensor] = []
    sources: list[str] = []
    for name in EVALUATION_PHOTOS:
        arr = arrays[name]
        arr = np.repeat(arr[..., None], 3, axis=2) if arr.ndim == 2 else arr[..., :3]
        for lvl in to_pyramid(arr):
            levels.append(lvl)
            sources.append(f"evaluation:{name}")
    return levels, sources


def matches_evaluation(arr: np.ndarray, thumbs: dict[str, torch.Tensor], tol: float = 4 / 255) -> str | None:
    """The evaluation image whose thumbnail ``arr``'s is within ``tol`` (mean absolute), if any.

    Catches copies under other names, also resized, recompressed or converted to grey (a crop
    is not caught).
    """
    t = _thumb(arr)
    for name, ref in thumbs.items():
        if float((t - ref).abs().mean()) < tol:
            return name
    return None


def to_pyramid(img: np.ndarray) -> list[torch.Tensor]:
    """uint8 HxWx3 -> list of uint8 (3, h, w) tensors, halving until the short side < MIN_SIDE."""
    x = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).float()[None] / 255.0
    levels = []
    while min(x.shape[-2:]) > MAX_SIDE:
        x = F.interpolate(x, scale_factor=0.5, mode="bilinear", antialias=True, align_corners=False)
    while min(x.shape[-2:]) >= MIN_SIDE:
        levels.append((x[0].clamp(0, 1) * 255).round().to(torch.uint8))
        x = F.interpolate(x, scale_factor=0.5, mode="bilinear", antialias=True, align_corners=False)
    return levels


def _skimage_levels() -> tuple[list[torch.Tensor], list[str]]:
    levels: list[torch.Tensor] = []
    sources: list[str] = []
    try:
        from skimage import data as skdata
    except ImportError:
        return levels, sources
    for name in TRAIN_SKIMAGE:
        assert name not in EVALUATION_SKIMAGE
        try:
            arr = getattr(skdata, name)()
        except Exception as exc:  # noqa: BLE001 - some datasets need a download
            print(f"skipping skimage.data.{name}: {type(exc).__name__}")
            continue
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        arr = arr[..., :3]
        if arr.dtype != np.uint8:
            arr = (255 * (arr.astype(np.float64) / max(1e-8, float(arr.max())))).astype(np.uint8)
        for lvl in to_pyramid(arr):
            levels.append(lvl)
            sources.append(f"skimage.data.{name}")
    return levels, sources


def load_dataset(folders: list[Path], cache: Path, use_skimage: bool = True, eval_check: bool = True,
                 all_sizes: bool = False) -> tuple[list[torch.Tensor], list[str]]:
    """Multi-scale pyramid levels of every training image (cached as one tensor file).

    The cache is brought up to date with the ``--data`` folders: files that appeared are added,
    files that are gone are dropped (with no ``--data`` the cache is used as it is). New files that
    match an evaluation image's thumbnail are skipped unless ``eval_check`` is false. The files are
    :func:`find_images`'s (one per picture unless ``all_sizes``).
    """
    from PIL import Image

    levels: list[torch.Tensor] = []
    sources: list[str] = []
    if cache.exists():
        blob = torch.load(cache, weights_only=True)
        levels, sources = blob["levels"], blob["sources"]
        if not folders:
            return levels, sources
    files = find_images(folders, all_sizes=all_sizes)
    wanted = {str(p) for p in files}
    keep = [i for i, src in enumerate(sources) if src.startswith("skimage.data.") or src in wanted]
    have = set(sources)
    new = [p for p in files if str(p) not in have]
    if cache.exists() and not new and len(keep) == len(sources):
        return levels, sources
    dropped = sorted({sources[i] for i in range(len(sources)) if i not in set(keep)})
    levels, sources = [levels[i] for i in keep], [sources[i] for i in keep]
    thumbs = evaluation_thumbnails() if new and eval_check else {}
    for path in new:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
        twin = matches_evaluation(arr, thumbs)
        if twin is not None:
            print(f"skipping {path}: it is the evaluation image {twin}")
            continue
        for lvl in to_pyramid(arr):
            levels.append(lvl)
            sources.append(str(path))
    if use_skimage and not any(src.startswith("skimage.data.") for src in sources):
        sk_levels, sk_sources = _skimage_levels()
        levels += sk_levels
        sources += sk_sources
    print(f"dataset cache updated: {len(new)} image files added, {len(dropped)} dropped")
    cache.parent.mkdir(parents=True, exist_ok=True)
    save_atomic({"levels": levels, "sources": sources}, cache)
    return levels, sources


def sample_batch(levels: list[torch.Tensor], batch: int, crop: int, gen: torch.Generator, p_gray: float) -> torch.Tensor:
    """Random crops (random level, position, flip; some converted to grey) in [-1, 1]."""
    eligible = [i for i, lv in enumerate(levels) if min(lv.shape[-2:]) >= crop]
    if not eligible:
        raise ValueError(f"no pyramid level is at least {crop} px on its short side; use a smaller crop")
    out = torch.empty(batch, 3, crop, crop)
    for b in range(batch):
        lv = levels[eligible[int(torch.randint(len(eligible), (1,), generator=gen))]]
        h, w = lv.shape[-2:]
        top = int(torch.randint(h - crop + 1, (1,), generator=gen))
        left = int(torch.randint(w - crop + 1, (1,), generator=gen))
        x = lv[:, top : top + crop, left : left + crop].float() / 255.0
        if float(torch.rand((), generator=gen)) < 0.5:
            x = x.flip(-1)
        if float(torch.rand((), generator=gen)) < p_gray:
            x = (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]).expand(3, -1, -1)
        out[b] = x
    return out * 2.0 - 1.0


#: Timestep bands the loss is logged in (DDPM t, 0 = least noise): edges of half-open [lo, hi).
LOSS_BANDS = (0, 100, 300, 600, 1000)


def parse_curriculum(text: str) -> list[tuple[int, int, int]]:
    """``"0:64x8,9000:96x4,11000:128x2"`` -> [(from_step, crop, batch), ...] sorted by step.

    Raises:
        SystemExit: A malformed entry (one line naming the expected form).
    """
    out = []
    for item in text.split(","):
        try:
            start, rest = item.split(":")
            crop, batch = rest.lower().split("x")
            out.append((int(start), int(crop), int(batch)))
        except ValueError:
            raise SystemExit(f"--curriculum entry {item!r}: expected STEP:CROPxBATCH, e.g. 0:64x8,9000:128x2") from None
    out.sort()
    if out[0][0] != 0 or any(c < 8 or b < 1 for _, c, b in out):
        raise SystemExit("--curriculum must start at step 0 with crops >= 8 and batches >= 1, e.g. 0:64x8,9000:128x2")
    return out


def crop_and_batch(curriculum: list[tuple[int, int, int]], step: int) -> tuple[int, int]:
    """The (crop, batch) in force at ``step``: the last curriculum entry starting at or before it."""
    crop, batch = curriculum[0][1:]
    for start, c, b in curriculum:
        if step >= start:
            crop, batch = c, b
    return crop, batch


def band_losses(per_sample: torch.Tensor, t: torch.Tensor) -> dict[str, tuple[float, int]]:
    """Sum and count of per-sample losses in each :data:`LOSS_BANDS` timestep band."""
    out = {}
    for lo, hi in zip(LOSS_BANDS[:-1], LOSS_BANDS[1:]):
        m = (t >= lo) & (t < hi)
        out[f"t{lo}-{hi}"] = (float(per_sample[m].sum()), int(m.sum()))
    return out


def epsilon_loss(pred: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, *, mean_weight: float = 0.0,
                 mean_from: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample training loss, the plain DDPM loss, and its part in the error's channel means.

    With ``e = pred - eps`` over C channels of N pixels, the plain DDPM loss splits exactly into
    the channel means ``ē_c`` and the rest::

        mean(e²) = (1/C) Σ_c ē_c² + (1/C) Σ_c var_c(e)

    The mean part is about ``1/N`` of the loss per unit error, so the ε MSE teaches the channel
    means (the colour cast at high noise) slowly. ``mean_weight`` w adds ``w (1/C) Σ_c ē_c²`` for
    samples with ``t >= mean_from``. Any quadratic loss whose weights do not depend on ε is
    minimised by the same ``E[ε | x_t]`` over all functions, so for a network that can represent it
    this changes what SGD learns first, not the optimum; for a network of limited capacity it also
    moves the best fit within reach towards the channel means.

    Args:
        pred: The network's ε estimate ``(B, C, H, W)``.
        eps: The noise drawn ``(B, C, H, W)``.
        t: Timesteps ``(B,)``.
        mean_weight: Extra weight w of the channel-mean part (0: the plain loss).
        mean_from: The smallest t the extra weight applies at.

    Returns:
        ``(loss, plain, mean_part)``, each ``(B,)``: the loss trained on, the plain loss
        ``mean(e²)`` (the same tensor when ``mean_weight`` is 0), and its channel-mean part
        ``(1/C) Σ_c ē_c²`` (both for the log).
    """
    err = pred - eps
    mean_part = err.mean(dim=(2, 3)).square().mean(dim=1)
    plain = err.square().mean(dim=(1, 2, 3))
    loss = plain + mean_weight * (t >= mean_from).to(plain.dtype) * mean_part if mean_weight else plain
    return loss, plain, mean_part


def learning_rate(step: int, *, lr: float, warmup: int, warm_from: int, total: int, decay_steps: int = 0, lr_min: float = 0.0) -> float:
    """The learning rate of optimisation step ``step`` (0-based; ``step + 1`` steps done after it).

    A linear warm-up over ``warmup`` steps from ``warm_from`` (where the optimizer state began),
    then ``lr``; with ``decay_steps`` > 0, a cosine from ``lr`` down to ``lr_min`` over the last
    ``decay_steps`` steps before ``total`` (the last step runs at ``lr_min``):
    ``lr_min + (lr - lr_min) (1 + cos(pi u)) / 2`` with ``u = (step + 1 - (total - decay_steps)) / decay_steps``.

    Args:
        step: The step about to run (0-based, global: a resumed run continues the count).
        lr: The peak learning rate.
        warmup: Warm-up length in steps (at least 1 is used).
        warm_from: The step at which the optimizer state began (the warm-up restarts there).
        total: The step count at which training ends (``--steps``).
        decay_steps: Length of the final cosine decay (0: none).
        lr_min: The rate the decay ends at (``0 <= lr_min <= lr``; the command line checks it).

    Returns:
        The learning rate, the lower of the warm-up's and the decay's where both apply.
    """
    rate = lr * min(1.0, (step + 1 - warm_from) / max(warmup, 1))
    start = total - decay_steps
    if decay_steps > 0 and step + 1 > start:
        u = min(1.0, (step + 1 - start) / decay_steps)
        rate = min(rate, lr_min + (lr - lr_min) * 0.5 * (1.0 + math.cos(math.pi * u)))
    return rate


def _float32_head_forward(self: torch.nn.Module, h: torch.Tensor) -> torch.Tensor:
    """The head's own ``forward`` on ``h`` in float32, with autocast off (bound by :func:`run_head_in_float32`)."""
    with torch.autocast(h.device.type, enabled=False):
        return type(self).forward(self, h.float())


def run_head_in_float32(model: ADMUNet) -> None:
    """Make ``model``'s output head (GroupNorm, SiLU, the last convolution) run in float32 under autocast.

    Under bfloat16 autocast the last convolution would round the predicted ``eps`` to 8 significant
    bits: for ``|eps|`` in [1, 2) a uniform error of spacing ``2^-7``, mean square ``2^-14 / 12 ≈ 5e-6``,
    which the loss at high noise is not large against (docs/measurements.md, "Training the default
    prior in bfloat16"). Only the head's ``forward`` is replaced, on this instance, by a method bound
    to it: parameters and ``state_dict`` keys are unchanged, a ``deepcopy`` of the model runs its own
    head in float32 too, and a second call changes nothing.
    """
    head = model.out
    head.forward = types.MethodType(_float32_head_forward, head)  # type: ignore[method-assign]


def predict(model: ADMUNet, xt: torch.Tensor, t: torch.Tensor, *, bfloat16: bool = False) -> torch.Tensor:
    """The network's ``eps`` prediction, as training computes it.

    Args:
        model: The network (its head is made float32 when ``bfloat16``).
        xt: Noisy inputs ``(B, 3, H, W)``, float32.
        t: Their timesteps, ``(B,)``.
        bfloat16: Run the network under bfloat16 autocast on ``xt``'s device, its head in float32
            (:func:`run_head_in_float32` is applied to ``model``). Otherwise no autocast is
            entered, so a caller's own autocast (if any) applies.

    Returns:
        ``eps_theta(x_t, t)`` of ``xt``'s shape; float32 unless a caller's autocast says otherwise.
    """
    if not bfloat16:
        return model(xt, t.float())
    run_head_in_float32(model)
    with torch.autocast(xt.device.type, dtype=torch.bfloat16):
        return model(xt, t.float())


def save_atomic(obj: dict, path: Path) -> None:
    """``torch.save`` onto ``path`` atomically (:func:`invkit.io.atomic_write`)."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def export(state_path: Path, out: Path) -> None:
    """Write the EMA weights as an invkit prior file (float16, config and provenance as metadata)."""
    state = torch.load(state_path, weights_only=True, map_location="cpu")
    write_invkit_prior(
        out,
        state["ema"],
        architecture="adm",
        flags=state["config"],
        prediction="epsilon",
        schedule=DEFAULT_SCHEDULE,
        extra={
            "train_step": str(state["step"]),
            "train_images_seen": str(state.get("images_seen", state["step"] * state["args"]["batch"])),
            "train_seconds": f"{state['seconds']:.0f}",
            "train_thread_seconds": f"{state.get('thread_seconds', state['seconds']):.0f}",
            "train_crop": str(state.get("crop", state["args"]["crop"])),
            # only for weights trained with --mean-weight, so the default files keep their layout
            **({"train_mean_weight_steps": str(state["mean_weight_steps"])} if state.get("mean_weight_steps") else {}),
            **({"train_bfloat16_steps": str(state["bfloat16_steps"])} if state.get("bfloat16_steps") else {}),
        },
    )
    print(f"exported EMA weights of step {state['step']} to {out} ({out.stat().st_size / 1e6:.1f} MB)")


def read_exported(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """The metadata and float32 weights of an exported prior file (what ``--export`` writes).

    Raises:
        ValueError: Not an invkit prior file (no invkit metadata, or no ``flags`` in it).
    """
    meta = read_invkit_metadata(path)
    if meta is None or "flags" not in meta:
        raise ValueError(f"{path} is not an invkit prior file (what --export writes)")
    return dict(meta), {k: v.to(torch.float32) for k, v in load_state_dict_file(path).items()}


def _load_weights_model(path: Path, device: torch.device) -> ADMUNet:
    """The network of an exported prior file (what ``--export`` writes), float32, in eval mode."""
    meta, weights = read_exported(path)
    model = ADMUNet(ADMConfig.from_flags(json.loads(meta["flags"])))
    model.load_state_dict(weights)
    return model.to(device).eval().requires_grad_(False)


def noised(x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, alphas_bar: torch.Tensor) -> torch.Tensor:
    """DDPM's forward process at timesteps ``t``: ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` (the
    network is trained to predict ``eps`` from ``x_t`` and ``t``)."""
    a = alphas_bar[t].view(-1, *([1] * (x0.dim() - 1)))
    return a.sqrt() * x0 + (1 - a).sqrt() * eps


def training_step(model: ADMUNet, ema: ADMUNet, opt: torch.optim.Optimizer, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor,
                  alphas_bar: torch.Tensor, *, lr: float, ema_decay: float, bfloat16: bool = False, mean_weight: float = 0.0,
                  mean_from: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step on a batch: noise ``x0`` to ``x_t`` (:func:`noised`), predict
    (:func:`predict`), the ε loss (:func:`epsilon_loss`), its gradient clipped to norm 1, AdamW at
    ``lr``, then ``ema ← ema_decay · ema + (1 − ema_decay) · model``. Updates ``model``, ``opt``
    (every parameter group's learning rate set to ``lr``) and ``ema`` in place.

    Args:
        model: The network being trained, in train mode.
        ema: Its exponential moving average (same architecture).
        opt: The optimizer over ``model``'s parameters.
        x0: Clean crops in [-1, 1], ``(B, 3, H, W)``.
        t: Their timesteps, ``(B,)`` integers in [0, 1000).
        eps: The noise, ``x0``'s shape.
        alphas_bar: The schedule's ``abar_t``, indexed by ``t``.
        lr: The learning rate of this step.
        ema_decay: The EMA's decay of this step.
        bfloat16: Predict under bfloat16 autocast (:func:`predict`); weights, optimizer state,
            loss and EMA stay float32.
        mean_weight: Train on the loss with the channel-mean part weighted (:func:`epsilon_loss`).
        mean_from: The smallest timestep ``mean_weight`` applies at.

    Returns:
        Per sample, detached: the plain loss and its channel-mean part (what the log records,
        whatever ``mean_weight`` trains on).
    """
    xt = noised(x0, t, eps, alphas_bar)
    pred = predict(model, xt, t, bfloat16=bfloat16)
    weighted, plain, mean_part = epsilon_loss(pred, eps, t, mean_weight=mean_weight, mean_from=mean_from)
    opt.zero_grad(set_to_none=True)
    weighted.mean().backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    for group in opt.param_groups:
        group["lr"] = lr
    opt.step()
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), model.parameters()):
            pe.lerp_(pm, 1 - ema_decay)
    return plain.detach(), mean_part.detach()


def eval_loss(weights: list[Path], levels: list[torch.Tensor], *, crops: int, crop: int, per_band: int, generator: torch.Generator,
              p_gray: float, device: torch.device, batch: int = 16) -> dict[str, torch.Tensor]:
    """The training loss ``|eps_theta(x_t, t) - eps|^2`` of each weights file on one fixed draw.

    Common random numbers: the same ``crops`` training crops, per crop ``per_band`` timesteps drawn
    uniformly in each :data:`LOSS_BANDS` band, and the same noise, for every file, so differences
    between files are free of the draw's variance (which dominates the training log's 20-step
    means). On the training levels it is in-sample: how well the data are fitted, the quantity the
    training log shows; on :func:`evaluation_levels` it is the held-out loss, which says whether the
    fit still generalises.

    Args:
        weights: Exported prior files (what ``--export`` writes); each may have its own flags.
        levels: Pyramid levels to crop: the training ones (:func:`load_dataset`) or the held-out
            evaluation photos' (:func:`evaluation_levels`).
        crops: Crops drawn (:func:`sample_batch`), each ``crop`` pixels square.
        per_band: Timesteps per crop in each band.
        generator: The draw's source (crops, timesteps, noise), on the CPU.
        p_gray: Fraction of crops converted to grey, as in training.
        device: Where the networks run.
        batch: Images per network call (the result does not depend on it beyond rounding).

    Returns:
        Per file (by its path as given), the per-sample losses ``(crops, bands, per_band)``.
    """
    x0 = sample_batch(levels, crops, crop, generator, p_gray)
    n_bands = len(LOSS_BANDS) - 1
    t = torch.stack([torch.randint(lo, hi, (crops, per_band), generator=generator) for lo, hi in zip(LOSS_BANDS[:-1], LOSS_BANDS[1:])], 1)
    eps = torch.randn((crops, n_bands, per_band, *x0.shape[1:]), generator=generator)
    ab = alphas_bar_from_betas(linear_betas()).to(torch.float32)
    flat_t = t.reshape(-1)
    flat_x0 = x0[:, None, None].expand(-1, n_bands, per_band, -1, -1, -1).reshape(-1, *x0.shape[1:])
    flat_eps = eps.reshape(-1, *x0.shape[1:])
    out = {}
    for path in weights:
        model = _load_weights_model(path, device)
        losses = torch.empty(flat_t.numel())
        with torch.no_grad():
            for i in range(0, flat_t.numel(), batch):
                tt, e = flat_t[i : i + batch], flat_eps[i : i + batch]
                xt = noised(flat_x0[i : i + batch], tt, e, ab)
                pred = model(xt.to(device), tt.float().to(device)).cpu()
                losses[i : i + batch] = epsilon_loss(pred, e, tt)[1]  # the plain loss
        out[str(path)] = losses.view(crops, n_bands, per_band)
        print(f"{path.name}: {float(losses.mean()):.5f} (mean over the draw)", flush=True)
    return out


def eval_loss_table(results: dict[str, torch.Tensor]) -> str:
    """Markdown table: per band and over uniform t (bands weighted by their width), each file's mean
    loss, and for the later files the paired difference from the first with its standard error
    (over crops)."""
    widths = torch.tensor([hi - lo for lo, hi in zip(LOSS_BANDS[:-1], LOSS_BANDS[1:])], dtype=torch.float64) / LOSS_BANDS[-1]
    names = [f"t {lo}-{hi}" for lo, hi in zip(LOSS_BANDS[:-1], LOSS_BANDS[1:])] + ["all (uniform t)"]

    def per_crop(v: torch.Tensor) -> torch.Tensor:  # (crops, bands + 1)
        band = v.double().mean(2)
        return torch.cat([band, (band * widths).sum(1, keepdim=True)], 1)

    files = list(results)
    first = per_crop(results[files[0]])
    lines = ["| weights | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for f in files:
        pc = per_crop(results[f])
        cells = [f"{float(m):.5f}" for m in pc.mean(0)]
        if f != files[0]:
            d = pc - first
            se = d.std(0) / d.shape[0] ** 0.5
            cells = [f"{c} ({100 * float(m) / float(b):+.1f}% ± {100 * float(s) / float(b):.1f})"
                     for c, m, s, b in zip(cells, d.mean(0), se, first.mean(0))]
        lines.append(f"| {Path(f).name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, action="append", default=[], help="folder of training images (repeatable)")
    p.add_argument("--state", type=Path, required=True, help="folder for the resumable training state (outside the repo)")
    p.add_argument("--steps", type=int, default=None, help="total optimisation steps (default 200000)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--curriculum", default=None,
                   help="crop and batch by training step, STEP:CROPxBATCH,... e.g. 0:64x8,9000:96x4,11000:128x2 "
                   "(overrides --crop/--batch; the step is the global one, so a resumed run stays on schedule)")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--decay-steps", type=int, default=0,
                   help="cosine-decay the learning rate to --lr-min over the last this many steps before --steps (0: constant)")
    p.add_argument("--lr-min", type=float, default=2e-5, help="the learning rate at the end of --decay-steps")
    p.add_argument("--more-steps", type=int, default=None,
                   help="instead of --steps: train this many steps beyond where the run starts (--init-from or a fresh "
                   "state); the target is kept in the state, so resuming with the same command ends at the same step")
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--mean-weight", type=float, default=0.0,
                   help="extra weight of the error's channel means in the loss (see epsilon_loss; 0: the plain DDPM loss)")
    p.add_argument("--mean-weight-from", type=int, default=500, help="the smallest timestep --mean-weight applies at")
    p.add_argument("--p-gray", type=float, default=0.1, help="fraction of crops converted to grey (R=G=B)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-skimage", action="store_true", help="leave scikit-image's training photos out (tests)")
    p.add_argument("--all-sizes", action="store_true",
                   help="train on every size of a picture a package ships (KDE's wallpapers: up to 12), as before step "
                   "33,962 of the CPU run; by default only the largest file of each picture (its pyramid has the smaller scales)")
    p.add_argument("--no-eval-check", action="store_true",
                   help="skip the check of new files against the evaluation images (it needs scikit-image's downloadable "
                   "photos); only for folders made from an already checked training set (scripts/gpu_training_data.py)")
    p.add_argument("--flags", default=None, help="ADM flags as JSON instead of the small preset (experiments, tests); "
                   "a resumed state keeps its own")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=("float32", "bfloat16"), default="float32",
                   help="bfloat16: the network's torso under bfloat16 autocast (weights, optimizer, head and loss stay float32)")
    p.add_argument("--save-every", type=int, default=100)
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--max-minutes", type=float, default=None, help="stop (after saving) after this long")
    p.add_argument("--export", type=Path, default=None, help="only export the EMA weights to this .safetensors and exit")
    p.add_argument("--init-from", type=Path, default=None,
                   help="when --state holds no state yet: start model and EMA from these exported weights (e.g. the "
                   "committed plugins/invkit_priors/default/weights/default.safetensors), with a fresh optimizer and step count "
                   "taken from the file's metadata")
    p.add_argument("--eval-loss", type=Path, nargs="+", default=None, metavar="WEIGHTS",
                   help="only measure the loss of these exported weights files on one fixed draw of training crops, timesteps "
                   "and noise (the first is the reference for paired differences), print a table and exit; the crops come "
                   "from --state's dataset cache, which --data brings up to date (use a separate --state for other data)")
    p.add_argument("--eval-on", choices=("training", "evaluation"), default="training",
                   help="--eval-loss: crops of the training photos (in-sample, the default) or of the benchmark's "
                   "evaluation photos (held out from training; no --data needed)")
    p.add_argument("--eval-crops", type=int, default=64, help="--eval-loss: crops drawn")
    p.add_argument("--eval-per-band", type=int, default=2, help="--eval-loss: timesteps per crop in each loss band")
    args = p.parse_args()
    if args.more_steps is not None and args.steps is not None:
        p.error("give --steps (the total) or --more-steps (beyond the start), not both")
    if args.more_steps is not None and args.more_steps < 1:
        p.error(f"--more-steps must be at least 1, got {args.more_steps}")
    if args.decay_steps < 0 or not 0 <= args.lr_min <= args.lr:
        p.error(f"need --decay-steps >= 0 and 0 <= --lr-min <= --lr, got {args.decay_steps}, {args.lr_min:g}, {args.lr:g}")
    if args.more_steps is not None and args.decay_steps > args.more_steps:
        p.error(f"--decay-steps {args.decay_steps} is longer than --more-steps {args.more_steps}")
    if args.mean_weight < 0:
        p.error(f"--mean-weight {args.mean_weight}: must be >= 0 (0 trains on the plain DDPM loss)")
    if args.eval_on == "evaluation" and (args.eval_loss is None or args.data or args.all_sizes):
        p.error("--eval-on evaluation: only with --eval-loss, and without --data or --all-sizes (it reads the evaluation photos)")
    if args.all_sizes and not args.data:
        p.error("--all-sizes takes effect when --data brings the dataset cache up to date; give the --data folders too")
    if args.eval_loss is not None:
        for path in args.eval_loss:
            if not path.is_file() or (read_invkit_metadata(path) or {}).get("flags") is None:
                p.error(f"--eval-loss {path}: not an invkit prior file (what --export writes)")

    args.state.mkdir(parents=True, exist_ok=True)
    state_path = args.state / "state.pt"
    if args.export is not None:
        export(state_path, args.export)
        return
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # activations reused, not page-faulted in at every step (invkit.allocator)
    device = resolve_device(args.device)
    if args.precision == "bfloat16" and not (device.type == "cpu" or (device.type == "cuda" and torch.cuda.is_bf16_supported())):
        p.error(f"--precision bfloat16: {device} has no bfloat16 autocast here; leave it out (float32)")
    torch.backends.cuda.matmul.allow_tf32 = True  # CUDA only: TF32 matmuls (the attention's), as convolutions already do; effect not measured

    if args.eval_loss is not None and args.eval_on == "evaluation":
        levels, sources = evaluation_levels()
    else:
        levels, sources = load_dataset(args.data, args.state / "dataset.pt", use_skimage=not args.no_skimage,
                                       eval_check=not args.no_eval_check, all_sizes=args.all_sizes)
    print(f"dataset: {len(set(sources))} images, {len(levels)} pyramid levels, {sum(lv.numel() for lv in levels) / 1e6:.0f} M bytes")
    if args.eval_loss is not None:
        crop = parse_curriculum(args.curriculum)[-1][1] if args.curriculum else args.crop
        if not any(min(lv.shape[-2:]) >= crop for lv in levels):
            p.error(f"--crop {crop}: no image has a pyramid level that large (the largest short side is "
                    f"{max(min(lv.shape[-2:]) for lv in levels)} px); use a smaller --crop")
        results = eval_loss(args.eval_loss, levels, crops=args.eval_crops, crop=crop, per_band=args.eval_per_band,
                            generator=torch.Generator().manual_seed(args.seed), p_gray=args.p_gray, device=device)
        photos = "the evaluation photos (held out)" if args.eval_on == "evaluation" else "the training photos (in-sample)"
        print(f"loss on {args.eval_crops} crops of {crop}x{crop} of {photos} (seed {args.seed}), "
              f"{args.eval_per_band} timesteps per band each")
        print(eval_loss_table(results))
        return

    config = ADMConfig.small() if args.flags is None else ADMConfig.from_flags(json.loads(args.flags))
    state = torch.load(state_path, weights_only=True, map_location="cpu") if state_path.exists() else None
    if state is not None:
        if args.flags is not None and state["config"] != config.to_flags():
            raise SystemExit(f"{state_path} was trained with other --flags; leave --flags out to resume it")
        config = ADMConfig.from_flags(state["config"])
    torch.manual_seed(args.seed)  # the initial weights (module initialisers draw from the global generator)
    model = ADMUNet(config).to(device)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(args.seed)
    curriculum = parse_curriculum(args.curriculum) if args.curriculum else [(0, args.crop, args.batch)]
    step, seconds, thread_seconds, images_seen = 0, 0.0, 0.0, 0
    mean_weight_steps = 0  # steps trained with a nonzero --mean-weight (exported, so such weights can be told apart)
    bfloat16_steps = 0  # steps trained with --precision bfloat16 (exported likewise)
    warm_from = 0  # the learning-rate warm-up restarts whenever the optimizer state is new
    if state is not None:
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["gen"])
        torch.set_rng_state(state["torch_rng"])
        step, seconds = state["step"], state["seconds"]
        thread_seconds = state.get("thread_seconds", seconds)
        images_seen = state.get("images_seen", step * state["args"]["batch"])
        mean_weight_steps = state.get("mean_weight_steps", 0)
        bfloat16_steps = state.get("bfloat16_steps", 0)
        warm_from = state.get("warm_from", 0)
        print(f"resumed at step {step} ({seconds / 3600:.2f} h trained)")
    elif args.init_from is not None:
        try:
            meta, weights = read_exported(args.init_from)
        except ValueError as exc:
            raise SystemExit(f"{exc}; cannot continue from it") from None
        if json.loads(meta["flags"]) != config.to_flags():
            raise SystemExit(f"{args.init_from} was trained with other flags than the model being trained (--flags); cannot continue from it")
        model.load_state_dict(weights)
        ema.load_state_dict(weights)
        step, seconds = int(meta.get("train_step", 0)), float(meta.get("train_seconds", 0))
        thread_seconds = float(meta.get("train_thread_seconds", seconds))
        images_seen = int(meta.get("train_images_seen", 0))
        mean_weight_steps = int(meta.get("train_mean_weight_steps", 0))
        bfloat16_steps = int(meta.get("train_bfloat16_steps", 0))
        warm_from = step
        print(f"initialised from {args.init_from} (EMA weights of step {step}); optimizer state starts fresh")
    if args.more_steps is not None:  # the target of the run that began the state, when it set one
        args.steps = state["target"] if state is not None and state.get("target") is not None else step + args.more_steps
        print(f"training to step {args.steps}" + (f", the learning rate decaying from step {args.steps - args.decay_steps}" if args.decay_steps else ""))
    if args.steps is None:
        args.steps = 200_000
    if args.decay_steps > args.steps - step:
        print(f"note: --decay-steps {args.decay_steps} reaches back before this run's start (step {step}): it starts inside the decay")
    target = args.steps if args.more_steps is not None else None
    ab = alphas_bar_from_betas(linear_betas()).to(torch.float32).to(device)

    def save() -> None:
        save_atomic(
            {
                "model": model.state_dict(),
                "ema": ema.state_dict(),
                "opt": opt.state_dict(),
                "gen": gen.get_state(),
                "torch_rng": torch.get_rng_state(),
                "step": step,
                "seconds": seconds,
                "thread_seconds": thread_seconds,
                "warm_from": warm_from,
                "target": target,
                "images_seen": images_seen,
                "mean_weight_steps": mean_weight_steps,
                "bfloat16_steps": bfloat16_steps,
                "crop": crop_and_batch(curriculum, max(step - 1, 0))[0],
                "config": config.to_flags(),
                "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("data", "state", "export")},
            },
            state_path,
        )

    stop: dict[str, int | None] = {"signal": None}

    def request_stop(signum: int, _frame: object) -> None:
        """First signal: save at the end of the current step. A second one stops at once."""
        stop["signal"] = signum
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    log = open(args.state / "log.jsonl", "a")
    started = time.time()
    window: list[float] = []
    bands: dict[str, list[float]] = {}  # per loss band: [sum, count] of the plain loss since the last log line
    mean_bands: dict[str, list[float]] = {}  # the same for its channel-mean part
    last = time.time()
    model.train()
    bfloat16 = args.precision == "bfloat16"
    trained_in = (state or {}).get("args", {}).get("precision", "float32")
    if state is not None and trained_in != args.precision:
        print(f"note: the state's last run trained in {trained_in}; this one trains in {args.precision} "
              f"({bfloat16_steps} of its {step} steps were bfloat16 so far)")
    while step < args.steps:
        crop, batch = crop_and_batch(curriculum, step)
        x0 = sample_batch(levels, batch, crop, gen, args.p_gray).to(device)
        t = torch.randint(0, 1000, (batch,), generator=gen).to(device)
        eps = torch.randn(x0.shape, generator=gen).to(device)
        lr = learning_rate(step, lr=args.lr, warmup=args.warmup, warm_from=warm_from, total=args.steps,
                           decay_steps=args.decay_steps, lr_min=args.lr_min)
        per_sample, mean_part = training_step(model, ema, opt, x0, t, eps, ab, lr=lr, ema_decay=min(args.ema, (1 + step) / (10 + step)),
                                              bfloat16=bfloat16, mean_weight=args.mean_weight, mean_from=args.mean_weight_from)
        for acc_bands, values in ((bands, per_sample), (mean_bands, mean_part)):
            for name, (total, count) in band_losses(values, t).items():
                acc = acc_bands.setdefault(name, [0.0, 0])
                acc[0] += total
                acc[1] += count
        step += 1
        images_seen += batch
        mean_weight_steps += bool(args.mean_weight)
        bfloat16_steps += bool(bfloat16)
        now = time.time()
        seconds += now - last
        thread_seconds += (now - last) * torch.get_num_threads()
        last = now
        window.append(per_sample.mean().item())
        if step % args.log_every == 0:
            rec = {"step": step, "loss": float(np.mean(window)), "lr": lr, "hours": seconds / 3600, "crop": crop, "batch": batch,
                   "precision": args.precision,
                   "band_loss": {k: (v[0] / v[1] if v[1] else None) for k, v in bands.items()},
                   "band_mean_part": {k: (v[0] / v[1] if v[1] else None) for k, v in mean_bands.items()},
                   "time": time.strftime("%Y-%m-%d %H:%M:%S")}
            window, bands, mean_bands = [], {}, {}
            print(json.dumps(rec), flush=True)
            log.write(json.dumps(rec) + "\n")
            log.flush()
        if step % args.save_every == 0:
            save()
        if args.max_minutes is not None and (now - started) > 60 * args.max_minutes:
            break
        if stop["signal"] is not None:
            print(f"signal {stop['signal']}: saving and stopping")
            break
    save()
    print(f"saved step {step}")


if __name__ == "__main__":
    main()
