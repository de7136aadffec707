"""Training the default prior in float32 or under bfloat16 autocast: speed, and what the rounding costs.

Two tables, for the ``small`` ADM preset at the training script's real step
(``scripts/train_default_prior.py``: ``training_step``, that is forward, ε loss, backward, gradient
clip, AdamW, EMA update) on crops of ``--crop`` pixels:

1. **Speed**: the median seconds per step over ``--steps`` timed steps (after two untimed ones),
   per thread count, batch size and precision; crops an hour; and the ratio to float32 at the
   same threads and batch. Precisions: the script's ``float32`` and ``bfloat16`` (torso under
   autocast, output head in float32).
2. **Rounding**: on ``--grad-batches`` training batches of 2 (consecutive pairs of batches share a
   loss band, the bands in turn; the weights of ``--weights``), the gradient ``g`` of the loss in
   bfloat16 (and, for comparison only, bfloat16 with the head under autocast too) against
   float32's ``g₃₂`` on the same batch, ``d = g − g₃₂``:

   - ``‖d‖ / ‖g₃₂‖`` (median over batches) and the cosine of ``g`` and ``g₃₂``;
   - how systematic ``d`` is: ``‖mean d‖ / √(mean ‖d‖²)``, 1 for the same error on every batch,
     about ``1/√n`` (printed beside it) for independent errors over ``n`` batches; and the
     systematic part against the mean gradient, ``‖mean d‖ / ‖mean g₃₂‖`` (the mean over ``n``
     batches still holds SGD noise, of norm about ``1/√n`` of one batch's, so where the true
     gradient is smaller than that this understates the ratio);
   - the noise SGD lives with anyway at this batch size: ``‖g₃₂(A) − g₃₂(B)‖ / ‖g₃₂(A)‖`` for two
     batches ``A``, ``B`` of the same band (median over pairs);
   - per loss band, the mean relative change of the logged loss, ``loss / loss₃₂ − 1`` (the
     rounding error's mean square adds to it).

The crops come from ``--data`` folders (each file's training pyramid) or, without it, from
scikit-image's training photographs (the script's ``TRAIN_SKIMAGE``). Stop training while timing:
the machine's two cores are shared.

Usage::

    python benchmarks/train_precision.py [--threads 1,2] [--batches 2] [--steps 8] [--grad-batches 32]
        [--data FOLDER ...] [--weights FILE]
"""

from __future__ import annotations

import argparse
import copy
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import train_default_prior as train  # noqa: E402  (scripts/ is not a package)
from _timing import median_time  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: name -> (autocast, head in float32)
VARIANTS = {"float32": (False, True), "bfloat16": (True, True), "bfloat16, bf16 head": (True, False)}


def training_levels(folders: list[Path]) -> list[torch.Tensor]:
    """The training pyramid levels of every image file under ``folders`` (the script's
    ``find_images`` and ``to_pyramid``), or of scikit-image's training photographs without any."""
    if not folders:
        return train._skimage_levels()[0]
    import numpy as np
    from PIL import Image

    levels: list[torch.Tensor] = []
    for path in train.find_images(folders):
        with Image.open(path) as im:
            levels += train.to_pyramid(np.asarray(im.convert("RGB")))
    return levels


def _model(weights: Path | None) -> train.ADMUNet:
    """The ``small`` network, with ``weights`` (an exported prior file) when given."""
    model = train.ADMUNet(train.ADMConfig.small())
    if weights is not None:
        model.load_state_dict(train.read_exported(weights)[1])
    return model


def _predict(model: train.ADMUNet, xt: torch.Tensor, t: torch.Tensor, variant: str) -> torch.Tensor:
    """The prediction in ``variant``: the script's :func:`predict`, except for the bf16-head variant."""
    autocast, head32 = VARIANTS[variant]
    if head32:
        return train.predict(model, xt, t, bfloat16=autocast)
    with torch.autocast(xt.device.type, dtype=torch.bfloat16):
        return model(xt, t.float())


def speed_table(levels: list[torch.Tensor], *, threads: list[int], batches: list[int], crop: int, steps: int,
                weights: Path | None) -> None:
    """Print the speed table (module docstring), a row as soon as it is measured."""
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
            for name in ("float32", "bfloat16"):  # the script's two precisions
                model = _model(weights)
                ema = copy.deepcopy(model).requires_grad_(False)
                opt = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.0)
                autocast = VARIANTS[name][0]

                def step() -> None:
                    train.training_step(model, ema, opt, x0, t, eps, ab, lr=2e-5, ema_decay=0.999, bfloat16=autocast)

                step()  # and median_time's warm-up: two untimed steps
                sec = median_time(step, repeats=steps)
                base = sec if base is None else base
                print(f"| {n} | {batch} | {name} | {sec:.3f} | {3600 * batch / sec:,.0f} | {base / sec:.2f}x |", flush=True)


@dataclass
class RoundingStats:
    """Per bfloat16 variant, one value per batch (``loss_change``: per band index into the script's
    ``LOSS_BANDS``); ``systematic`` one value per variant; ``spread`` one per same-band pair."""

    rel: dict[str, list[float]] = field(default_factory=dict)
    cos: dict[str, list[float]] = field(default_factory=dict)
    systematic: dict[str, float] = field(default_factory=dict)
    bias: dict[str, float] = field(default_factory=dict)
    loss_change: dict[str, dict[int, list[float]]] = field(default_factory=dict)
    spread: list[float] = field(default_factory=list)
    batches: int = 0


def _grad(model: train.ADMUNet, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, variant: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample plain losses and the flattened gradient of their mean, in ``variant``."""
    model.zero_grad(set_to_none=True)
    plain = train.epsilon_loss(_predict(model, xt, t, variant), eps, t)[1]
    plain.mean().backward()
    return plain.detach(), torch.cat([p.grad.flatten() for p in model.parameters()])


def rounding_stats(levels: list[torch.Tensor], *, batches: int, crop: int, weights: Path | None, threads: int) -> RoundingStats:
    """The rounding measurements (module docstring, table 2) on ``batches`` training batches of 2."""
    torch.set_num_threads(threads)
    ab = train.alphas_bar_from_betas(train.linear_betas()).float()
    gen = torch.Generator().manual_seed(1)
    models = {name: _model(weights) for name in VARIANTS}
    n_bands = len(train.LOSS_BANDS) - 1
    names = [n for n in VARIANTS if n != "float32"]
    out = RoundingStats(rel={n: [] for n in names}, cos={n: [] for n in names},
                        loss_change={n: {b: [] for b in range(n_bands)} for n in names}, batches=batches)
    diffs: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    g32_sum = None
    previous = None
    for i in range(batches):
        x0 = train.sample_batch(levels, 2, crop, gen, 0.1)
        band = (i // 2) % n_bands
        t = torch.randint(train.LOSS_BANDS[band], train.LOSS_BANDS[band + 1], (2,), generator=gen)
        eps = torch.randn(x0.shape, generator=gen)
        xt = train.noised(x0, t, eps, ab)
        l32, g32 = _grad(models["float32"], xt, t, eps, "float32")
        g32_sum = g32.clone() if g32_sum is None else g32_sum + g32
        if i % 2:
            out.spread.append(float((g32 - previous).norm() / previous.norm()))
        previous = g32
        for name in names:
            loss, g = _grad(models[name], xt, t, eps, name)
            diffs[name].append(g - g32)
            out.rel[name].append(float((g - g32).norm() / g32.norm()))
            out.cos[name].append(float(torch.nn.functional.cosine_similarity(g.double(), g32.double(), dim=0)))
            out.loss_change[name][band].append(float(loss.mean() / l32.mean() - 1))
    for name, d in diffs.items():
        stacked = torch.stack(d)
        out.systematic[name] = float(stacked.mean(0).norm() / stacked.pow(2).sum(1).mean().sqrt())
        out.bias[name] = float(stacked.mean(0).norm() / (g32_sum / batches).norm())
    return out


def rounding_table(stats: RoundingStats) -> str:
    """Table 2 in markdown, from :func:`rounding_stats`."""

    def med(v: list[float]) -> float:
        return float(torch.tensor(v).median()) if v else float("nan")

    bands = list(zip(train.LOSS_BANDS[:-1], train.LOSS_BANDS[1:]))
    head = " | ".join(f"loss change t {lo}-{hi}" for lo, hi in bands)
    lines = [f"| precision | ‖d‖ / ‖g₃₂‖ (median) | cosine (median) | ‖mean d‖ / rms ‖d‖ (1/√n = {stats.batches ** -0.5:.2f}) "
             f"| ‖mean d‖ / ‖mean g₃₂‖ | {head} |", "|---|---|---|---|---|" + "---|" * len(bands)]
    for name in stats.rel:
        cells = " | ".join(f"{100 * sum(v) / len(v):+.2f} %" if v else "—" for v in stats.loss_change[name].values())
        lines.append(f"| {name} | {med(stats.rel[name]):.3f} | {med(stats.cos[name]):.5f} | {stats.systematic[name]:.2f} | {stats.bias[name]:.3f} | {cells} |")
    lines.append(f"| float32, one batch against another of its band | {med(stats.spread):.2f} | — | — | — |" + " — |" * len(bands))
    return "\n".join(lines)


def main() -> None:
    """Parse the command line, print the speed table and the rounding table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts for the speed table")
    p.add_argument("--batches", default="2", help="comma-separated batch sizes for the speed table")
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--steps", type=int, default=8, help="timed steps per row (0: skip the speed table)")
    p.add_argument("--grad-batches", type=int, default=32, help="batches for the rounding table (0: skip it)")
    p.add_argument("--data", type=Path, action="append", default=[], help="training image folders (default: scikit-image's)")
    p.add_argument("--weights", type=Path, default=ROOT / "plugins" / "invkit_priors" / "default" / "weights" / "default.safetensors",
                   help="exported prior file to start from (the committed weights by default)")
    args = p.parse_args()
    threads = [int(v) for v in args.threads.split(",")]
    batches = [int(v) for v in args.batches.split(",")]
    if min(threads) < 1 or min(batches) < 1 or args.steps < 0 or args.grad_batches < 0 or args.grad_batches == 1 or args.crop % 8:
        p.error("need threads and batches >= 1, --steps >= 0, --grad-batches 0 or >= 2, and --crop a multiple of 8")
    if not args.weights.is_file():
        p.error(f"--weights {args.weights}: no such file")
    levels = training_levels(args.data)
    print(f"{len(levels)} pyramid levels; crops of {args.crop}², weights {args.weights.name}; torch {torch.__version__}, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}\n", flush=True)
    if args.steps:
        speed_table(levels, threads=threads, batches=batches, crop=args.crop, steps=args.steps, weights=args.weights)
        print()
    if args.grad_batches:
        stats = rounding_stats(levels, batches=args.grad_batches, crop=args.crop, weights=args.weights, threads=max(threads))
        print(rounding_table(stats))


if __name__ == "__main__":
    main()
