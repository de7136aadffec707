"""How much of a constant offset in its input a prior's ``denoise`` passes to its estimate (the "DC gain").

For a noisy image ``x_t = x0 + σ z`` of N pixels per channel, the spatial mean of each channel
carries noise of standard deviation ``σ / √N``; at high σ that is larger than the spread of the
means of real photographs, so an MMSE denoiser must shrink the observed mean towards the typical
one. This script adds a constant offset ``δ`` to ``x_t`` and measures

    gain = ⟨mean(D(x_t + δ)) − mean(D(x_t)), δ⟩ / ⟨δ, δ⟩        (means over pixels, per channel)

for a chroma offset (δ = (+1, −1, 0) · 0.05, which leaves the grey level alone) and a grey one
(δ = (1, 1, 1) · 0.05), on the evaluation crops of ``astronaut``, ``coffee`` and ``chelsea``
(resized to each size), averaged over the images.

The reference is the gain of the exact MMSE estimate of the mean under a Gaussian model of
photographs' channel means (mean and 3×3 covariance Σ estimated from ``--data``'s photographs,
each resized and centre-cropped like the evaluation crops): ``δᵀ Σ (Σ + σ²/N I)⁻¹ δ / δᵀδ``. It
is printed only with ``--data``. A gain near 1 where the reference is near 0 means the network
keeps the noise's mean as the image's: the colour cast a sampler starts from stays.

A second table splits the network's training loss (the ε MSE, in the network's own VP units) on
the twenty 128² quarters of the five RGB evaluation crops, per band of the timestep t (two draws
of t and noise per quarter), into its total and the part in the channel means of the error,
``mean over channels of (mean over pixels of (ε̂ − ε))²``. A network that leaves the mean of ε
unpredicted (ε̂'s mean 0, which is a gain of 1 above) has that part at ``1/N`` (N = 128²); an
MMSE one at ``g/N`` per direction, with ``g`` the reference gain at that noise level.

Usage::

    python benchmarks/prior_mean_gain.py [--data FOLDER ...] [--weights FILE] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from _eval_data import eval_crop, load_eval

SIGMAS = (48.6, 19.5, 8.7, 3.1, 1.0, 0.3)
SIZES = (128, 256)
IMAGES = ("astronaut", "coffee", "chelsea")
OFFSETS = {"chroma": (1.0, -1.0, 0.0), "grey": (1.0, 1.0, 1.0)}


def photo_mean_covariance(folders: list[Path], size: int = 256) -> tuple[np.ndarray, np.ndarray, int]:
    """Mean and covariance of the channel means of every photograph under ``folders`` (RGB, each
    cropped like an evaluation image), and how many there were."""
    from PIL import Image

    means = []
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() not in (".jpg", ".jpeg", ".png") or "mate-backgrounds" in str(path):
                continue
            try:
                with Image.open(path) as im:
                    im = im.convert("RGB")
                    im.thumbnail((4 * size, 4 * size))
                    arr = np.asarray(im)
            except OSError:
                continue
            means.append(eval_crop(arr, size).mean(dim=(1, 2)).numpy())
    if len(means) < 4:
        print(f"--data: found {len(means)} photographs under {', '.join(map(str, folders))}; need at least 4", file=sys.stderr)
        raise SystemExit(2)
    m = np.asarray(means, dtype=np.float64)
    return m.mean(axis=0), np.cov(m.T), len(m)


def mean_loss_share(prior, generator: torch.Generator, bands=((0, 100), (100, 300), (300, 600), (600, 1000), (900, 1000))) -> list[str]:
    """Rows of the second table (see the module notes): band, loss, its channel-mean part, share."""
    from _eval_data import RGB_EVAL

    net, alphas_bar = prior.rgb.model, prior.rgb.alphas_bar.float()
    x0 = torch.stack([load_eval(name, 256) for name in RGB_EVAL]) * 2 - 1
    quarters = torch.cat([x0[:, :, i:i + 128, j:j + 128] for i in (0, 128) for j in (0, 128)])
    rows = []
    for lo, hi in bands:
        total = part = 0.0
        for _ in range(2):
            t = torch.randint(lo, hi, (quarters.shape[0],), generator=generator)
            eps = torch.randn(quarters.shape, generator=generator)
            a = alphas_bar[t].view(-1, 1, 1, 1)
            with torch.no_grad():
                err = net(a.sqrt() * quarters + (1 - a).sqrt() * eps, t.float())[:, :3] - eps
            total += float((err**2).mean()) / 2
            part += float((err.mean(dim=(2, 3)) ** 2).mean()) / 2
        rows.append(f"| {lo}–{hi} | {total:.6f} | {part:.2e} | {100 * part / total:.1f} % |")
    return rows


def mean_gain(prior, x0: torch.Tensor, sigma: float, delta: torch.Tensor, generator: torch.Generator) -> float:
    """The measured gain (see the module notes) for images ``x0`` ``(B, 3, H, W)``."""
    xt = x0 + sigma * torch.randn(x0.shape, generator=generator)
    with torch.no_grad():
        a = prior.denoise(xt, torch.tensor(sigma)).mean(dim=(2, 3))
        b = prior.denoise(xt + delta.view(1, 3, 1, 1), torch.tensor(sigma)).mean(dim=(2, 3))
    return float(((b - a) @ delta).mean() / (delta @ delta))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, nargs="*", default=[], help="folders of photographs for the Gaussian reference")
    p.add_argument("--weights", type=Path, help="another weights file for the default prior")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from invkit_priors.default.prior import load_default_prior

    prior = load_default_prior(weights=args.weights)
    cov = None
    if args.data:
        mean, cov, count = photo_mean_covariance(args.data)
        unit = {k: np.array(d) / np.linalg.norm(d) for k, d in OFFSETS.items()}
        along = {k: float(np.sqrt(u @ cov @ u)) for k, u in unit.items()}
        print(f"Gaussian reference from {count} image files; channel means {mean.round(3).tolist()}, std {np.sqrt(np.diag(cov)).round(3).tolist()}, "
              + ", ".join(f"along the {k} offset {v:.3f}" for k, v in along.items()))
    g = torch.Generator().manual_seed(0)
    print("| size | σ | σ/√N | " + " | ".join(f"{k} gain | {k} reference" for k in OFFSETS) + " |")
    print("|---|---|---|" + "---|---|" * len(OFFSETS))
    for size in SIZES:
        x0 = torch.stack([load_eval(name, size) for name in IMAGES])
        n = size * size
        for sigma in SIGMAS:
            cells = []
            for direction in OFFSETS.values():
                delta = 0.05 * torch.tensor(direction)
                gain = mean_gain(prior, x0, sigma, delta, g)
                if cov is None:
                    ref = "—"
                else:
                    d = delta.double().numpy()
                    ref = f"{d @ cov @ np.linalg.inv(cov + sigma**2 / n * np.eye(3)) @ d / (d @ d):.2f}"
                cells += [f"{gain:.2f}", ref]
            print(f"| {size}² | {sigma:g} | {sigma / size:.3f} | " + " | ".join(cells) + " |", flush=True)
    print(f"\n| t | ε loss | its channel-mean part (1/N = {1 / 128**2:.2e}) | share |\n|---|---|---|---|")
    print("\n".join(mean_loss_share(prior, torch.Generator().manual_seed(1))), flush=True)


if __name__ == "__main__":
    main()
