"""How far DDRM's samples are from the exact posterior, for analytic priors on small problems.

For every (problem, prior, sigma_y) one clean image ``x`` is drawn from the prior (seeded),
measured (``y = H x + sigma_y n``), and three sets of ``S`` posterior samples are compared with
the exact posterior moments (:func:`invkit_solvers.exact.posterior_moments`):

* ``exact``: the ``exact`` solver's own samples -- the **Monte-Carlo floor**, what each metric
  reads from ``S`` samples with no approximation error at all;
* ``ddrm-20``, ``ddrm-100``: DDRM at 20 and 100 steps (default ``eta = 0.85``, ``eta_b = 1``,
  default schedule on the DDPM grid, as with a checkpoint);
* ``dps-250`` (``--dps``, comma-separated step counts; empty to skip): DPS (Chung et al. 2023) at
  its operator family's ζ′ preset (:data:`invkit_solvers.dps.ZETA_PRESETS`), tuned for photos and
  the default prior, not for these priors: DPS approximates ``p(y | x_t)`` by ``p(y | x̂_0(x_t))``
  and is not a posterior sampler in general, which this row measures.
* ``ddnm_plus-100``, ``pigdm-100``, ``diffpir-100`` (``--others``, ``name:steps`` pairs; empty
  to skip): the other SVD-based samplers at their defaults (DDNM⁺ is DDNM when ``σ_y = 0``;
  ΠGDM's default η = 0 makes it deterministic after its start; DiffPIR at its operator family's
  λ, ζ preset).

Metrics (``C`` the exact posterior covariance, ``m`` its mean, ``m̂``/``v̂`` the sample
mean / per-pixel variance):

* ``mean err`` = ``‖m̂ − m‖ / sqrt(tr C)``: the mean error in units of the whole posterior
  spread (floor ≈ ``1 / sqrt(S)``);
* ``z max`` = ``max_i |m̂_i − m_i| / sqrt(C_ii)``: the worst pixel's mean error in its own
  posterior stds (floor ≈ 3.5 / sqrt(S) for 256 pixels);
* ``var ratio`` = ``Σ v̂_i / tr C``, and ``pix min``/``pix max`` the extreme per-pixel ratios
  ``v̂_i / C_ii`` (over pixels with ``C_ii > 1e-8 max C``; noiseless inpainting pins the others);
* ``SW2``: sliced Wasserstein-2 distance between the sample set and a separate set of ``S``
  exact samples (its own seed, shared by all rows of a case) over ``--directions`` seeded random
  unit directions ``θ``, divided by ``sqrt(mean_θ θᵀ C θ)`` (the posterior std along a typical
  direction). The floor row compares two independent exact sets.

Problems (``--shape``, default 1x16x16): ``inpaint50`` (random 50 % of pixels removed, mask
seed 0), ``blur1-zero`` (``gaussian_blur`` sigma 1, zero boundary, 1-D singular values below
the paper's 3e-2 zeroed: at 1x16x16, 196 of 256 coefficients observed, all above DDRM's ``svd_rtol``;
without the threshold the zero-boundary blur is invertible, the noiseless exact posterior is a
point mass (tr C ~ 1e-29) and spread-normalised metrics mean nothing), ``sr2-avg``
(``super_resolution`` x2, block averaging), ``sr2-bicubic`` (``bicubic_super_resolution`` x2).
Priors: ``gauss-dct`` (the registered ``gaussian``, kind=dct: mean 0.5, variance 0.04, 1/f²
spectrum) and ``mix-dct``, an equal mixture of two DCT power-law Gaussians that differ in mean
(0.45 / 0.55) and in spectrum (alpha 1.5, corner 1/16 vs alpha 1, corner 1/32): the mixture's
posterior is a non-Gaussian (scale) mixture, and the ``π1`` column shows its exact posterior
weight of component 1 (the image seed was picked so that several noisy cases are ambiguous).

    .venv/bin/python benchmarks/posterior_gap.py                   # full: 4 x 2 x 2 cases, S = 2000
    .venv/bin/python benchmarks/posterior_gap.py --quick           # inpaint50 and sr2-avg, S = 500
    .venv/bin/python benchmarks/posterior_gap.py --samples 4000 --threads 2 --steps 20,100,1000
    .venv/bin/python benchmarks/posterior_gap.py --only inpaint50 --priors gauss-dct --sigmas 0.05

Everything is seeded (prior draw, noise, mask, DDRM and exact generators, directions): the same
arguments give the same table except the wall times (``time``: the whole solver call for S
samples, exact posterior set-up included; on a shared machine compare rows of one run only).
DDRM runs in ``--dtype`` (default float32, as a user would); the exact posterior is always
float64. On 2 shared CPU cores the full run takes about 8 minutes (the mixture's denoiser
dominates), ``--quick`` about 1.5.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
import zlib
from dataclasses import dataclass

import torch
from torch import Tensor

import invkit
from invkit.forward import as_shape
from invkit.problem import Problem
from invkit_solvers.ddrm import DDRM
from invkit_solvers.dps import DPS
from invkit_priors.analytic import GaussianMixturePrior, GaussianPrior
from invkit_solvers.exact import ExactSolver, exact_posterior, repeat_measurements, simulate_problem

F64 = torch.float64

#: label -> (registered operator, parameters)
PROBLEMS: dict[str, tuple[str, dict[str, object]]] = {
    "inpaint50": ("inpainting", {"mask": "random", "fraction": 0.5, "seed": 0}),
    "blur1-zero": ("gaussian_blur", {"sigma": 1.0, "boundary": "zero", "threshold": 0.03}),
    "sr2-avg": ("super_resolution", {"factor": 2}),
    "sr2-bicubic": ("bicubic_super_resolution", {"factor": 2}),
}
QUICK_PROBLEMS = ("inpaint50", "sr2-avg")
PRIORS = ("gauss-dct", "mix-dct")

IMAGE_SEED = 3  # prior draw of the clean image (seed 3: mixture posterior ambiguous in several noisy cases)
NOISE_SEED = 100
REF_SEED = 1_000_000  # exact reference set for SW2
FLOOR_SEED = 2_000_000  # exact set whose statistics are the Monte-Carlo floor
DDRM_SEED = 3_000_000
DPS_SEED = 4_000_000
OTHER_SEED = 5_000_000
DIR_SEED = 11


def make_prior(name: str) -> invkit.Prior:
    if name == "gauss-dct":
        return invkit.get_registry().build("prior", "gaussian", {"kind": "dct"})
    if name == "mix-dct":
        return GaussianMixturePrior(
            [0.5, 0.5],
            [
                GaussianPrior.power_law(0.45, 0.02, alpha=1.5, cutoff=1 / 16),
                GaussianPrior.power_law(0.55, 0.02, alpha=1.0, cutoff=1 / 32),
            ],
        )
    raise ValueError(f"unknown prior {name!r}; expected one of {', '.join(PRIORS)}")


@dataclass
class Case:
    problem: str
    prior: str
    sigma_y: float
    pi1: float | None  # exact posterior weight of mixture component 1


def metrics(samples: Tensor, mean: Tensor, cov: Tensor, ref: Tensor, dirs: Tensor) -> dict[str, float]:
    """Statistics of ``samples`` (S, n) against the exact moments and an exact reference set (float64)."""
    samples = samples.to(F64)
    tr = float(torch.trace(cov))
    d = torch.diagonal(cov)
    m_hat = samples.mean(0)
    v_hat = samples.var(0, unbiased=True)
    live = d > 1e-8 * float(d.max())
    ratio = v_hat[live] / d[live]
    pa = torch.sort(samples @ dirs.T, dim=0).values
    pb = torch.sort(ref.to(F64) @ dirs.T, dim=0).values
    sw2 = math.sqrt(float(((pa - pb) ** 2).mean()))
    along = math.sqrt(float(((dirs @ cov) * dirs).sum(1).mean()))
    return {
        "mean_err": float(torch.linalg.vector_norm(m_hat - mean)) / math.sqrt(tr),
        "z_max": float(((m_hat - mean).abs()[live] / d[live].sqrt()).max()),
        "var_ratio": float(v_hat.sum()) / tr,
        "pix_min": float(ratio.min()),
        "pix_max": float(ratio.max()),
        "sw2": sw2 / along,
    }


def exact_samples(problem: Problem, prior: invkit.Prior, count: int, seed: int) -> tuple[Tensor, float]:
    t0 = time.perf_counter()
    out = ExactSolver().solve(repeat_measurements(problem, count), prior, generator=torch.Generator().manual_seed(seed)).x
    return out.reshape(count, -1).to(F64), time.perf_counter() - t0


def solver_samples(solver: invkit.Solver, problem: Problem, prior: invkit.Prior, count: int, steps: int, seed: int, batch: int, dtype: torch.dtype) -> tuple[Tensor, float]:
    """``count`` samples of ``solver`` in batches of ``batch``, one seeded generator, and the wall time."""
    gen = torch.Generator().manual_seed(seed)
    y = problem.y.to(dtype)
    chunks = []
    t0 = time.perf_counter()
    for start in range(0, count, batch):
        b = min(batch, count - start)
        sub = Problem(problem.operator, y.expand(b, *y.shape[1:]).contiguous(), problem.noise)
        chunks.append(solver.solve(sub, prior, steps=steps, generator=gen).x.detach().reshape(b, -1))
    elapsed = time.perf_counter() - t0
    return torch.cat(chunks).to(F64), elapsed


def run_case(problem_name: str, prior_name: str, sigma_y: float, shape: tuple[int, int, int], args: argparse.Namespace, dirs: Tensor) -> tuple[Case, list[dict[str, object]]]:
    op_name, op_params = PROBLEMS[problem_name]
    op = invkit.get_registry().build_operator(op_name, shape, op_params)
    prior = make_prior(prior_name)
    x = prior.sample(1, shape, generator=torch.Generator().manual_seed(IMAGE_SEED), dtype=F64)
    problem = simulate_problem(op, x, sigma_y, torch.Generator().manual_seed(NOISE_SEED))
    post = exact_posterior(problem, prior)
    mean, cov = post.mean[0], post.covariance()[0]
    pi1 = float(post.weights[0, 0]) if isinstance(prior, GaussianMixturePrior) else None
    case = Case(problem_name, prior_name, sigma_y, pi1)
    case_index = zlib.crc32(f"{problem_name}/{prior_name}/{sigma_y:g}".encode()) % 100_000  # seeds independent of --only etc.

    s = args.samples
    ref, _ = exact_samples(problem, prior, s, REF_SEED + case_index)
    rows: list[dict[str, object]] = []
    floor, t_exact = exact_samples(problem, prior, s, FLOOR_SEED + case_index)
    rows.append({"method": "exact", "time": t_exact, **metrics(floor, mean, cov, ref, dirs)})
    for steps in args.steps:
        smp, t = solver_samples(DDRM(), problem, prior, s, steps, DDRM_SEED + 100_000 * steps + case_index, args.batch or s, args.dtype)
        rows.append({"method": f"ddrm-{steps}", "time": t, **metrics(smp, mean, cov, ref, dirs)})
    for steps in args.dps:
        smp, t = solver_samples(DPS(), problem, prior, s, steps, DPS_SEED + 100_000 * steps + case_index, args.batch or s, args.dtype)
        rows.append({"method": f"dps-{steps}", "time": t, **metrics(smp, mean, cov, ref, dirs)})
    for name, steps in args.others:
        seed = OTHER_SEED + zlib.crc32(name.encode()) % 1000 * 1000 + 100_000 * steps + case_index
        solver = invkit.get_registry().build("solver", name)
        smp, t = solver_samples(solver, problem, prior, s, steps, seed, args.batch or s, args.dtype)
        rows.append({"method": f"{name}-{steps}", "time": t, **metrics(smp, mean, cov, ref, dirs)})
    return case, rows


COLUMNS = (
    ("problem", 11, "{}"),
    ("prior", 9, "{}"),
    ("σ_y", 4, "{:g}"),
    ("π1", 5, "{}"),
    ("method", 14, "{}"),
    ("mean err", 8, "{:.3f}"),
    ("z max", 6, "{:.2f}"),
    ("var ratio", 9, "{:.3f}"),
    ("pix min", 7, "{:.3f}"),
    ("pix max", 7, "{:.3f}"),
    ("SW2", 6, "{:.3f}"),
    ("time", 7, "{:.2f}s"),
)


def print_table(results: list[tuple[Case, list[dict[str, object]]]]) -> None:
    print("  ".join(name.rjust(w) if i >= 5 else name.ljust(w) for i, (name, w, _) in enumerate(COLUMNS)))
    print("  ".join("-" * w for _, w, _ in COLUMNS))
    for case, rows in results:
        for j, r in enumerate(rows):
            pi = "-" if case.pi1 is None else f"{case.pi1:.3f}"
            vals = [case.problem, case.prior, case.sigma_y, pi] if j == 0 else ["", "", "", ""]
            vals += [r["method"], r["mean_err"], r["z_max"], r["var_ratio"], r["pix_min"], r["pix_max"], r["sw2"], r["time"]]
            cells = []
            for i, ((_, w, fmt), v) in enumerate(zip(COLUMNS, vals)):
                text = v if isinstance(v, str) else fmt.format(v)
                cells.append(text.rjust(w) if i >= 5 else text.ljust(w))
            print("  ".join(cells))


def _med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def reading(results: list[tuple[Case, list[dict[str, object]]]], steps: list[int]) -> str:
    """One paragraph computed from the numbers."""
    by: dict[str, list[tuple[Case, dict[str, float]]]] = {}
    for case, rows in results:
        for r in rows:
            by.setdefault(str(r["method"]), []).append((case, r))  # type: ignore[arg-type]

    def col(method: str, key: str, keep=lambda c: True) -> list[float]:
        return [float(r[key]) for c, r in by[method] if keep(c)]

    fl_mean, fl_sw, fl_var = col("exact", "mean_err"), col("exact", "sw2"), col("exact", "var_ratio")
    floor = {(c.problem, c.prior, c.sigma_y): r for c, r in by["exact"]}
    parts = [
        f"Monte-Carlo floor (exact sampler vs exact moments, same S): mean error median {_med(fl_mean):.3f} posterior spreads "
        f"(max {max(fl_mean):.3f}), variance ratio in [{min(fl_var):.3f}, {max(fl_var):.3f}], SW2 median {_med(fl_sw):.3f} "
        f"(max {max(fl_sw):.3f})."
    ]
    sigmas = sorted({c.sigma_y for c, _ in results})
    priors = [p for p in PRIORS if any(c.prior == p for c, _ in results)]
    for st in steps:
        m = f"ddrm-{st}"
        me, vr, sw = col(m, "mean_err"), col(m, "var_ratio"), col(m, "sw2")
        worst_c, worst_r = max(by[m], key=lambda cr: float(cr[1]["mean_err"]))
        by_noise = ", ".join(f"{_med(col(m, 'mean_err', lambda c, sy=sy: c.sigma_y == sy)):.3f} at σ_y = {sy:g}" for sy in sigmas)
        by_prior = ", ".join(
            f"{_med(col(m, 'mean_err', lambda c, p=p: c.prior == p)):.3f} / {_med(col(m, 'var_ratio', lambda c, p=p: c.prior == p)):.2f}"
            f" / {_med(col(m, 'sw2', lambda c, p=p: c.prior == p)):.3f} on {p}"
            for p in priors
        )
        over = sum(
            1
            for c, r in by[m]
            if float(r["mean_err"]) > 2 * float(floor[(c.problem, c.prior, c.sigma_y)]["mean_err"])
            or float(r["sw2"]) > 2 * float(floor[(c.problem, c.prior, c.sigma_y)]["sw2"])
        )
        parts.append(
            f"DDRM-{st}: mean error median {_med(me):.3f} posterior spreads, {_med(me) / max(_med(fl_mean), 1e-12):.1f}x the floor's "
            f"({by_noise}); worst {float(worst_r['mean_err']):.3f} (a pixel off by {float(worst_r['z_max']):.2f} of its posterior stds) "
            f"on {worst_c.problem}/{worst_c.prior}/σ_y={worst_c.sigma_y:g}; variance ratio median {_med(vr):.2f} "
            f"(range [{min(vr):.2f}, {max(vr):.2f}]: {'under' if _med(vr) < 1 else 'over'}-dispersed); SW2 median {_med(sw):.3f}; "
            f"mean error / variance ratio / SW2 medians {by_prior}; {over} of {len(me)} cases exceed twice the floor in mean error or SW2."
        )
    for m in sorted(k for k in by if k != "exact" and not k.startswith("ddrm-")):
        me, vr, sw = col(m, "mean_err"), col(m, "var_ratio"), col(m, "sw2")
        parts.append(
            f"{m.upper()}: mean error median {_med(me):.3f} posterior spreads (range [{min(me):.3f}, {max(me):.3f}]), "
            f"variance ratio median {_med(vr):.2f} (range [{min(vr):.2f}, {max(vr):.2f}]), SW2 median {_med(sw):.3f}."
        )
    if len(steps) >= 2:
        lo, hi = f"ddrm-{steps[0]}", f"ddrm-{steps[-1]}"
        base = {(c.problem, c.prior, c.sigma_y): r for c, r in by[lo]}
        shrink = []
        for sy in sigmas:
            pairs = [(float(base[(c.problem, c.prior, c.sigma_y)]["mean_err"]), float(r["mean_err"])) for c, r in by[hi] if c.sigma_y == sy]
            shrink.append(f"x{_med([b / max(a, 1e-12) for a, b in pairs]):.2f} at σ_y = {sy:g}")
        dv = [abs(float(r["var_ratio"]) - 1) - abs(float(base[(c.problem, c.prior, c.sigma_y)]["var_ratio"]) - 1) for c, r in by[hi]]
        closer = sum(1 for v in dv if v < 0)
        parts.append(
            f"From {steps[0]} to {steps[-1]} steps the mean error is multiplied by (median) {', '.join(shrink)}, "
            f"and the variance ratio moves closer to 1 in {closer} of {len(dv)} cases."
        )
    return " ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK_PROBLEMS)}, S = 500 unless --samples")
    parser.add_argument("--samples", type=int, default=None, help="samples per method and case (default 2000; 500 with --quick)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--steps", default="20,100", help="comma-separated DDRM step counts")
    parser.add_argument("--dps", default="250", help="comma-separated DPS step counts (empty: no DPS rows)")
    parser.add_argument("--others", default="ddnm_plus:100,pigdm:100,diffpir:100", help="comma-separated solver:steps rows (empty: none)")
    parser.add_argument("--shape", default="1,16,16", help="image shape C,H,W (n <= 4096; H, W even for x2 SR)")
    parser.add_argument("--only", default=None, help=f"comma-separated problems among {', '.join(PROBLEMS)}")
    parser.add_argument("--priors", default=None, help=f"comma-separated priors among {', '.join(PRIORS)}")
    parser.add_argument("--sigmas", default="0,0.05", help="comma-separated sigma_y values, [0, 1] units")
    parser.add_argument("--directions", type=int, default=200, help="random directions of the sliced Wasserstein distance")
    parser.add_argument("--batch", type=int, default=None, help="DDRM samples per solver call (default: all at once)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="DDRM's dtype")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.samples = args.samples or (500 if args.quick else 2000)
    args.steps = [int(v) for v in args.steps.split(",")]
    args.dps = [int(v) for v in args.dps.split(",") if v.strip()]
    try:
        args.others = [(v.split(":")[0].strip(), int(v.split(":")[1])) for v in args.others.split(",") if v.strip()]
    except (IndexError, ValueError):
        parser.error("--others: give solver:steps pairs, e.g. ddnm_plus:100,pigdm:100")
    args.dtype = getattr(torch, args.dtype)
    try:
        shape = as_shape(args.shape)
    except ValueError as exc:
        parser.error(f"--shape: {exc}")
    problems = args.only.split(",") if args.only else (list(QUICK_PROBLEMS) if args.quick else list(PROBLEMS))
    priors = args.priors.split(",") if args.priors else list(PRIORS)
    sigmas = [float(v) for v in args.sigmas.split(",")]
    for p in problems:
        if p not in PROBLEMS:
            parser.error(f"unknown problem {p!r}; expected some of {', '.join(PROBLEMS)}")
    for p in priors:
        if p not in PRIORS:
            parser.error(f"unknown prior {p!r}; expected some of {', '.join(PRIORS)}")

    n = math.prod(shape)
    dirs = torch.randn(args.directions, n, generator=torch.Generator().manual_seed(DIR_SEED), dtype=F64)
    dirs = dirs / torch.linalg.vector_norm(dirs, dim=1, keepdim=True)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); image {'x'.join(map(str, shape))} (n = {n}); "
        f"S = {args.samples} samples per method; DDRM eta = {DDRM().eta}, eta_b = {DDRM().eta_b}, {str(args.dtype).removeprefix('torch.')}, "
        f"steps {args.steps}; DPS steps {args.dps or 'none'}; others {args.others or 'none'}; SW2 over {args.directions} directions"
    )
    if args.dps:
        from invkit_solvers.dps import zeta_preset

        print("DPS ζ′ (presets at these steps): " + "; ".join(
            f"{p}: " + ", ".join(f"{zeta_preset(PROBLEMS[p][0], None, st):g} at {st}" for st in args.dps) for p in problems))
    results = []
    t_all = time.perf_counter()
    for pname in problems:
        for prname in priors:
            for sy in sigmas:
                results.append(run_case(pname, prname, sy, shape, args, dirs))
    print(f"(total {time.perf_counter() - t_all:.1f} s; mean err in posterior spreads sqrt(tr C), z max in pixel stds, SW2 in stds along a direction)")
    print()
    print_table(results)
    print()
    print(reading(results, args.steps))


if __name__ == "__main__":
    main()
