"""DDRM's own cost per step (everything but the prior), invkit vs deepinv 0.5.

At 3x256x256 with a free prior (``denoise`` returns its input), the solve time divided by the
number of steps is the solver's overhead per step: invkit's DDRM with

* ``blur`` (circular boundary, real FFT SVD), and
* ``gaussian_blur`` (reflect boundary, separable Kronecker SVD),

next to deepinv 0.5's ``DDRM`` with its ``BlurFFT`` on the same kernel, when deepinv is importable.
One prior evaluation of a real network (the ADM UNet of the default prior, if present) is timed
too, for scale. deepinv needs torchvision, which does not import beside the torch 2.13.0 CPU
build: run this from a separate environment, e.g.

    python3 -m venv /work/venv-deepinv
    /work/venv-deepinv/bin/pip install torch==2.14.1 torchvision==0.29.1 'deepinv==0.5.*'
    /work/venv-deepinv/bin/pip install -e .
    /work/venv-deepinv/bin/python benchmarks/ddrm_overhead.py

(deepinv stays out of CI). Without deepinv, its rows are skipped.
"""

from __future__ import annotations

import argparse

import torch

import invkit
from invkit_solvers.ddrm import DDRM, ddrm_schedule

from _timing import median_time  # benchmarks/ is on sys.path when run as a script


class FreePrior(invkit.Prior):
    """A prior that costs nothing: denoise returns its input."""

    sigma_grid = invkit.ddpm_sigma_grid()

    def denoise(self, x, sigma):
        return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--sigma-y", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shape = (3, args.size, args.size)
    reg = invkit.get_registry()
    prior = FreePrior()
    x = torch.rand(1, *shape, generator=torch.Generator().manual_seed(0))
    rows: list[tuple[str, float, str]] = []

    for name, op_args in (("blur", {"kernel": "gaussian", "sigma": 3.0}), ("gaussian_blur", {"sigma": 3.0})):
        op = reg.build_operator(name, shape, op_args)
        y = op.forward(x)
        problem = invkit.Problem(op, y, invkit.GaussianNoise(args.sigma_y))
        solver = DDRM()
        t = median_time(lambda: solver.solve(problem, prior, steps=args.steps, generator=torch.Generator().manual_seed(1)), args.repeats)
        rows.append((f"invkit ddrm + {name}", t / args.steps, f"boundary {op.config.get('boundary', 'circular')}"))

    try:
        import deepinv as dinv
    except Exception as exc:  # noqa: BLE001
        rows.append((f"deepinv: not importable ({type(exc).__name__})", float("nan"), ""))
    else:
        op = reg.build_operator("blur", shape, {"kernel": "gaussian", "sigma": 3.0})
        kernel = op.kernel.to(torch.float32)[None, None]
        physics = dinv.physics.BlurFFT(img_size=shape, filter=kernel, noise_model=dinv.physics.GaussianNoise(sigma=args.sigma_y))
        y = physics.A(x)
        sigmas = ddrm_schedule(prior, args.steps)[:-1]

        class Identity(torch.nn.Module):
            def forward(self, x, sigma):
                return x

        sampler = dinv.sampling.DDRM(Identity(), sigmas=sigmas, eta=0.85, etab=1.0)
        t = median_time(lambda: sampler(y, physics, seed=1), args.repeats)
        rows.append((f"deepinv {dinv.__version__} DDRM + BlurFFT", t / args.steps, "boundary circular"))

    reference = None
    try:
        from invkit_priors.networks.adm import ADMConfig, ADMUNet  # the default prior's architecture

        model = ADMUNet(ADMConfig.small()).eval()
        xt = torch.randn(1, *shape)
        ts = torch.tensor([500])
        with torch.no_grad():
            reference = median_time(lambda: model(xt, ts), 1)
        rows.append(("one prior evaluation (small ADM UNet)", reference, f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M params"))
    except Exception as exc:  # noqa: BLE001
        rows.append((f"small ADM UNet unavailable ({type(exc).__name__})", float("nan"), ""))

    print(f"torch {torch.__version__}, {args.threads} thread(s), {'x'.join(map(str, shape))}, {args.steps} steps, sigma_y={args.sigma_y}")
    width = max(len(r[0]) for r in rows)
    print(f"{'what'.ljust(width)}  time per step / eval")
    print(f"{'-' * width}  --------------------")
    for what, t, note in rows:
        print(f"{what.ljust(width)}  {t * 1e3:10.1f} ms  {note}")


if __name__ == "__main__":
    main()
