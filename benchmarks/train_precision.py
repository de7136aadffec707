"""Training the default prior in float32 or under bfloat16 autocast: speed, and what the rounding costs.

Two tables, for the ``small`` ADM preset at the training script's real step
(``scripts/train_default_prior.py``'s :func:`training_step`: forward, ε loss, backward, gradient
clip, AdamW, EMA update) on crops of ``--crop`` pixels:

1. **Speed**: the median seconds per step over ``--steps`` timed steps (after two untimed ones),
   per thread count, batch size and precision; crops an hour; and the ratio to float32 at the
   same threads and batch. Precisions: ``float32``; ``bfloat16`` (the script's
   ``--precision bfloat16``: torso under autocast, output head in float32,
   :func:`run_head_in_float32`); ``bfloat16, bf16 head`` (the head under autocast too, for
   comparison only).
2. **Rounding**: on ``--grad-batches`` training batches (batch 2, one timestep per loss band in
   turn, the weights of ``--weights``), the gradient of the loss in each bfloat16 variant against
   float32 on the same batch: ``‖g − g₃₂‖ / ‖g₃₂‖`` and the cosine; against it the batch-to-batch
   spread of float32 gradients, ``‖g₃₂(A) − g₃₂(B)‖ / ‖g₃₂(A)‖`` for consecutive batches, the
   noise that SGD at this batch size lives with anyway. And per loss band the mean relative change
   of the logged loss, ``loss / loss₃₂ − 1`` (the rounding error's mean square adds to it).

The crops come from ``--data`` folders (each file's training pyramid) or, without it, from
scikit-image's training photographs (the script's ``TRAIN_SKIMAGE``). Stop training while timing:
the machine's two cores are shared.

Usage::

    python benchmarks/train_precision.py [--threads 1,2] [--batches 2] [--steps 8] [--grad-batches 12]
        [--data FOLDER ...] [--weights FILE]
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import median_time  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {"float32": (False, True), "bfloat16": (True, True), "bfloat16, bf16 head": (True, False)}  # (autocast, head in float32)


def _train_module():
    """The training script as a module (it is not in a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_default_prior", ROOT / "scripts" / "train_default_prior.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_default_prior"] = module
    spec.loader.exec_module(module)
    return module


def _levels(train, folders: list[Path]) -> list[torch.Tensor]:
    if not folders:
        return train._skimage_levels()[0]
    import numpy as np
    from PIL import Image

    levels = []
    for path in train.find_images(folders):
        with Image.open(path) as im:
            levels += train.to_pyramid(np.asarray(im.convert("RGB")))
    return levels


def _model(train, weights: Path | None, head_float32: bool, bfloat16: bool):
    model = train.ADMUNet(train.ADMConfig.small())
    if weights is not None:
        model.load_state_dict(train.read_exported(weights)[1])
    if bfloat16 and head_float32:
        train.run_head_in_float32(model)
    return model


def speed_table(train, levels, *, threads: list[int], batches: list[int], crop: int, steps: int, weights: Path | None) -> None:
    """Print the speed table, a row as soon as it is measured."""
    ab = train.alphas_bar_from_betas(train.linear_betas()).float()
    print("| threads | batch | precision | s / step (median) | crops / hour | vs float32 |\n|---|---|---|---|---|---|", flush=True)
    for n in threads:
        torch.set_num_threads(n)
        for batch in batches:
            gen = torch.Generator().manual_seed(0)
            x0 = train.sample_batch(levels, batch, crop, gen, 0.1)
            t = torch.randint(0, 1000, (batch,), generator=gen)
            eps = torch.randn(x0.shape, generator=gen)
            base = None
            for name, (bfloat16, head32) in VARIANTS.items():
                model = _model(train, weights, head32, bfloat16)
                ema = copy.deepcopy(_model(train, weights, False, False)).requires_grad_(False)
                opt = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.0)

                def step() -> None:
                    train.training_step(model, ema, opt, x0, t, eps, ab, lr=2e-5, ema_decay=0.999, bfloat16=bfloat16)

                step()  # and median_time's warm-up: two untimed steps
                sec = median_time(step, repeats=steps)
                base = sec if base is None else base
                print(f"| {n} | {batch} | {name} | {sec:.3f} | {3600 * batch / sec:,.0f} | {base / sec:.2f}x |", flush=True)


def _grad(train, model, xt, t, eps, bfloat16: bool) -> tuple[torch.Tensor, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
        pred = model(xt, t.float())
    plain = train.epsilon_loss(pred, eps, t)[1]
    plain.mean().backward()
    return plain.detach(), torch.cat([p.grad.flatten() for p in model.parameters()])


def rounding_stats(train, levels, *, batches: int, crop: int, weights: Path | None, threads: int) -> dict:
    """The rounding measurements (module docstring, table 2) on ``batches`` training batches.

    Returns:
        ``{"rel": {variant: [...]}, "cos": {variant: [...]}, "loss_change": {variant: {band: [...]}},
        "spread": [...]}``, one value per batch (``spread``: per consecutive pair), for the two
        bfloat16 variants; bands are indices into the script's ``LOSS_BANDS``.
    """
    torch.set_num_threads(threads)
    ab = train.alphas_bar_from_betas(train.linear_betas()).float()
    gen = torch.Generator().manual_seed(1)
    models = {name: _model(train, weights, head32, bf16) for name, (bf16, head32) in VARIANTS.items()}
    n_bands = len(train.LOSS_BANDS) - 1
    names = [n for n in VARIANTS if n != "float32"]
    out: dict = {"rel": {n: [] for n in names}, "cos": {n: [] for n in names},
                 "loss_change": {n: {b: [] for b in range(n_bands)} for n in names}, "spread": []}
    previous = None
    for i in range(batches):
        x0 = train.sample_batch(levels, 2, crop, gen, 0.1)
        band = i % n_bands
        t = torch.randint(train.LOSS_BANDS[band], train.LOSS_BANDS[band + 1], (2,), generator=gen)
        eps = torch.randn(x0.shape, generator=gen)
        xt = train.noised(x0, t, eps, ab)
        l32, g32 = _grad(train, models["float32"], xt, t, eps, False)
        if previous is not None:
            out["spread"].append(float((g32 - previous).norm() / g32.norm()))
        previous = g32
        for name in names:
            loss, g = _grad(train, models[name], xt, t, eps, True)
            out["rel"][name].append(float((g - g32).norm() / g32.norm()))
            out["cos"][name].append(float(torch.nn.functional.cosine_similarity(g, g32, dim=0)))
            out["loss_change"][name][band].append(float(loss.mean() / l32.mean() - 1))
    return out


def rounding_table(train, stats: dict) -> str:
    """Table 2 in markdown, from :func:`rounding_stats`."""

    def med(v: list[float]) -> float:
        return float(torch.tensor(v).median()) if v else float("nan")

    bands = list(zip(train.LOSS_BANDS[:-1], train.LOSS_BANDS[1:]))
    head = " | ".join(f"loss change t {lo}-{hi}" for lo, hi in bands)
    lines = [f"| precision | ‖g − g₃₂‖ / ‖g₃₂‖ (median) | cosine (median) | {head} |", "|---|---|---|" + "---|" * len(bands)]
    for name in stats["rel"]:
        cells = " | ".join(f"{100 * sum(v) / len(v):+.2f} %" if v else "—" for v in stats["loss_change"][name].values())
        lines.append(f"| {name} | {med(stats['rel'][name]):.3f} | {med(stats['cos'][name]):.5f} | {cells} |")
    lines.append(f"| float32, batch to batch | {med(stats['spread']):.2f} | — |" + " — |" * len(bands))
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts for the speed table")
    p.add_argument("--batches", default="2", help="comma-separated batch sizes for the speed table")
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--steps", type=int, default=8, help="timed steps per row")
    p.add_argument("--grad-batches", type=int, default=12, help="batches for the rounding table (0: skip it)")
    p.add_argument("--data", type=Path, action="append", default=[], help="training image folders (default: scikit-image's)")
    p.add_argument("--weights", type=Path, default=ROOT / "plugins" / "invkit_priors" / "default" / "weights" / "default.safetensors",
                   help="exported prior file to start from (the committed weights by default)")
    args = p.parse_args()
    threads = [int(v) for v in args.threads.split(",")]
    batches = [int(v) for v in args.batches.split(",")]
    if min(threads) < 1 or min(batches) < 1 or args.steps < 1 or args.grad_batches < 0 or args.crop % 8:
        p.error("need threads, batches and --steps >= 1, --grad-batches >= 0 and --crop a multiple of 8")
    if not args.weights.is_file():
        p.error(f"--weights {args.weights}: no such file")
    train = _train_module()
    levels = _levels(train, args.data)
    print(f"{len(levels)} pyramid levels; crops of {args.crop}², weights {args.weights.name}; torch {torch.__version__}, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}\n", flush=True)
    speed_table(train, levels, threads=threads, batches=batches, crop=args.crop, steps=args.steps, weights=args.weights)
    if args.grad_batches:
        print()
        stats = rounding_stats(train, levels, batches=args.grad_batches, crop=args.crop, weights=args.weights, threads=max(threads))
        print(rounding_table(train, stats))


if __name__ == "__main__":
    main()
