"""How much of DDRM's colorization error is a colour cast: the error in each channel's mean.

Reads the colorization samples that ``benchmarks/default_prior.py --parts ddrm --tasks
colorization`` cached (``<cache>.samples/``, float32, one file per image and seed) and, per RGB
evaluation image, splits each sample's squared error (outputs clipped to [0, 1], as scored) into
the part in the channel means and the rest::

    mean(e²) = (1/C) Σ_c ē_c² + (1/C) Σ_c var_c(e)

It then scores the samples and their posterior mean as they are and with their channel means
replaced by the truth's (an oracle: the sample's structure kept, its cast removed; replaced before
the clip to [0, 1] that scoring applies), next to the grey image (the naive baseline: grey in R, G
and B) as it is and with the same replacement (a flat colour of the right mean). Colorization
measures only the grey level, so a sample's grey mean is already the truth's (up to clipping) and
the replacement moves only the two chroma means, which are the prior's to choose. The oracle
sample against the oracle grey is what the prior adds inside the image once the means are right;
the plain sample against the oracle sample is what the cast costs. PSNR is
:func:`invkit.metrics.psnr`, the benchmark's.

Usage::

    python benchmarks/colorization_cast.py [--weights FILE] [--clip] [--steps 20] [--cache FILE]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _eval_data import RGB_EVAL, load_eval  # noqa: E402
from default_prior import DEFAULT_CACHE, SIZE, Cache, ddrm_method, weights_fingerprint  # noqa: E402


def with_means_of(sample: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """``sample`` ``(C, H, W)`` with each channel's spatial mean replaced by ``truth``'s."""
    return sample - sample.mean(dim=(1, 2), keepdim=True) + truth.mean(dim=(1, 2), keepdim=True)


def mean_share(sample: torch.Tensor, truth: torch.Tensor) -> float:
    """The fraction of ``mean((sample - truth)²)`` that is in the channel means of the error."""
    err = sample - truth
    return float(err.mean(dim=(1, 2)).square().mean() / err.square().mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, help="the weights file the samples were drawn with (default: the packaged one)")
    p.add_argument("--clip", action="store_true", help="the samples of a --clip run")
    p.add_argument("--steps", type=int, default=20, help="DDRM steps of the run")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="the benchmark's results file (its samples are beside it)")
    args = p.parse_args()
    from invkit.metrics import psnr

    if args.weights is None:
        from invkit_priors.default.prior import default_weights_path

        args.weights = default_weights_path()
    method = ddrm_method(args.steps, weights_fingerprint(args.weights), "-clip" if args.clip else "")
    cache = Cache(args.cache.expanduser())

    def score(x: torch.Tensor, ref: torch.Tensor) -> float:
        return psnr(x.clamp(0, 1)[None], ref[None])

    print(f"samples of {method} from {cache.samples}\n")
    print("| image | K | grey | grey with the truth's means | one sample | its error in the channel means | with the truth's means "
          "| mean of K | with the truth's means |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = []
    for name in RGB_EVAL:
        truth = load_eval(name, SIZE)
        samples = []
        for k in range(64):
            path = cache.sample_path(name, "colorization", method, k)
            if not path.exists():
                break
            samples.append(torch.from_numpy(np.load(path)).float().reshape(truth.shape))
        if not samples:
            print(f"| {name} | 0 | (no cached samples: run default_prior.py --parts ddrm --tasks colorization first) ||||||")
            continue
        grey = truth.mean(0, keepdim=True).expand_as(truth)
        mean = torch.stack(samples).mean(0)
        row = (
            score(grey, truth),
            score(with_means_of(grey, truth), truth),
            statistics.fmean(score(s, truth) for s in samples),
            statistics.fmean(mean_share(s.clamp(0, 1), truth) for s in samples),
            statistics.fmean(score(with_means_of(s, truth), truth) for s in samples),
            score(mean, truth),
            score(with_means_of(mean, truth), truth),
        )
        rows.append(row)
        print(f"| {name} | {len(samples)} | " + " | ".join(_cells(row)) + " |", flush=True)
    if rows:
        print("| **mean** | | " + " | ".join(_cells([statistics.fmean(c) for c in zip(*rows)])) + " |")
        n = len(rows)

        def count(i: int, j: int) -> int:
            return sum(r[i] > r[j] for r in rows)

        print(f"\nabove grey: one sample {count(2, 0)}/{n}, mean of K {count(5, 0)}/{n}; with the truth's means, above grey with "
              f"the truth's means: one sample {count(4, 1)}/{n}, mean of K {count(6, 1)}/{n}")


def _cells(row: list[float] | tuple[float, ...]) -> list[str]:
    grey, grey_fixed, one, share, one_fixed, m, m_fixed = row
    return [f"{grey:.2f}", f"{grey_fixed:.2f}", f"{one:.2f}", f"{100 * share:.0f} %", f"{one_fixed:.2f}", f"{m:.2f}", f"{m_fixed:.2f}"]


if __name__ == "__main__":
    main()
