"""Benchmark of invkit's built-in ``default`` prior (issue 6, "Measure"); prints markdown tables.

1. Time per prior evaluation at 1×3×256×256 (printed first), device, threads, and what the
   requested work will cost at that rate.
2. Denoising PSNR on the evaluation crops at σ = 5, 15, 25, 50 (/255), seeded noise: the
   noisy input, the best fixed Gaussian filter (its std chosen per σ on the tuning images, see
   ``_eval_data.py``), BM3D (PyPI ``bm3d``, ``bm3d_rgb``/``bm3d`` with ``sigma_psd`` = σ; skipped
   with a message when it does not import) and the prior's ``denoise(y, σ)``.
3. DDRM (``invkit_solvers.DDRM`` with its defaults, η = 0.85, η_b = 1, ``--steps`` steps) on the
   evaluation crops, for each task: PSNR/SSIM of one sample (averaged over the K seeds) and of
   the posterior mean of K samples (``--samples``, default 8), next to a naive baseline and a
   classical restoration:

   ================ ===================================== ======================= =====================================
   task             operator (registry defaults)          naive baseline          classical
   ================ ===================================== ======================= =====================================
   deblur_noisy     gaussian_blur σ=3 (19 taps, reflect), the blurry image y      Wiener deconvolution, tuned
                    σ_y = 0.05
   deblur           same, σ_y = 0                         the blurry image y      Wiener deconvolution, tuned
   sr4              super_resolution ×4 (block average),  bicubic upsampling of y iterative back-projection (bicubic
                    σ_y = 0                                                       start and back-projector, 20 iters)
   inpaint50        inpainting, random 50 % of the        op.pinv(y): kept pixels skimage ``inpaint_biharmonic``
                    pixels removed (mask seed 0, same     and zeros
                    mask in every channel), σ_y = 0
   colorization     colorization, gray = (R+G+B)/3,       op.pinv(y): the gray    none better than the naive one
                    σ_y = 0 (RGB images only)             image in R, G and B
   ================ ===================================== ======================= =====================================

   The Wiener filter works in the 2-D DCT-II domain, which diagonalises the reflect-boundary
   Gaussian blur exactly: ``X = h Y / (h² + λ Λᵖ)`` with ``h`` the blur's DCT eigenvalues and
   ``Λ`` those of the discrete (Neumann) Laplacian; ``p ∈ {0, 1, 2}`` (0 = plain Tikhonov, 1 = a
   1/|ω|² image spectrum) and ``λ`` are chosen per σ_y for the best mean PSNR on the tuning
   images. Wall time of one 256×256 DDRM solve (median of the timed RGB solves).
4. A summary per task: does DDRM's posterior mean beat the naive baseline (and, for noisy
   deblurring, the classical method), with the margins in dB (mean over images, and the worst
   image).

PSNR and SSIM are invkit's (:mod:`invkit.metrics`, the numbers ``invkit solve --simulate``
prints: SSIM with an 11×11 Gaussian window over the *valid* region, per channel, averaged; the
``issue6-v1`` protocol used kornia's default 'same' padding, which reflects the image at its
borders) on outputs clipped to [0, 1]. Each DDRM case (image, task, sample ``k``) is computed by
one function, :func:`ddrm_case`, from the runner's pieces (:mod:`invkit.runner`): it is exactly
sample ``k`` of ``invkit solve --simulate --seed S`` with ``S`` the CRC32 of the image and task
names (:func:`seed_of`): the measurement noise is drawn from ``S`` on the CPU (the same on every
device), sample ``k`` from its own generator seeded with ``invkit.sample_seed(S, k)`` on the
prior's device, and it is scored by ``invkit.runner.score``, as ``solve`` scores its output. The
posterior mean of K samples (:func:`ddrm_mean_scores`) is the runner's mean of the float32
samples, so it and its scores equal those of ``invkit solve --simulate --seed S --samples K``.
Denoising noise is seeded from CRC32 of the image and σ.

Results are cached per (image, task, method, seed) in a JSON file (``--cache``, default
``~/.cache/invkit/bench_default_prior.json``), and the DDRM samples as float32 ``.npy`` files in
the folder beside it (``<cache>.samples/``) for the posterior means, so an interrupted run
resumes where it stopped. Prior-dependent entries carry the weights' SHA-256 prefix in their
method name: new weights are measured afresh. The loop runs seed by seed over all (image, task)
pairs, so an interrupted run already has a complete one-sample table.

Runs unchanged on a GPU (``--device auto``, the default, takes CUDA when available).

Examples:
    python benchmarks/default_prior.py --threads 1                  # everything (hours on a CPU)
    python benchmarks/default_prior.py --quick --threads 1          # astronaut only, K = 2
    python benchmarks/default_prior.py --parts denoise --threads 1  # denoising table only
    python benchmarks/default_prior.py --images camera,coffee --tasks deblur_noisy,sr4 --samples 4
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import sys
import time
import zlib
from pathlib import Path


def _argv_threads(argv: list[str]) -> str | None:
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return None


# Thread counts of the native libraries (BLAS, OpenMP) are read when they load: set them first.
_THREADS = _argv_threads(sys.argv[1:])
if _THREADS and _THREADS.isdigit():
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ[_var] = _THREADS

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _eval_data import EVAL_IMAGES, GREY_EVAL, load_eval, load_tuning  # noqa: E402

PROTOCOL = "issue12-v1"  # issue6-v1: own seeding, kornia SSIM with "same" padding
SIZE = 256
#: Where results are cached unless ``--cache`` says otherwise (the DDRM samples in ``<cache>.samples/``).
DEFAULT_CACHE = Path.home() / ".cache" / "invkit" / "bench_default_prior.json"
SIGMAS_255 = (5, 15, 25, 50)
ALL_IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle_left", "camera")

TASKS: dict[str, dict] = {
    "deblur_noisy": {"op": "gaussian_blur", "args": {}, "sigma_y": 0.05, "rgb_only": False},
    "deblur": {"op": "gaussian_blur", "args": {}, "sigma_y": 0.0, "rgb_only": False},
    "sr4": {"op": "super_resolution", "args": {"factor": 4}, "sigma_y": 0.0, "rgb_only": False},
    "inpaint50": {"op": "inpainting", "args": {"mask": "random", "fraction": 0.5, "seed": 0}, "sigma_y": 0.0, "rgb_only": False},
    "colorization": {"op": "colorization", "args": {}, "sigma_y": 0.0, "rgb_only": True},
}
NAIVE = {
    "deblur_noisy": "blurry image y",
    "deblur": "blurry image y",
    "sr4": "bicubic upsampling of y",
    "inpaint50": "pinv(y): kept pixels, zeros elsewhere",
    "colorization": "pinv(y): gray image in R, G, B",
}
CLASSICAL = {
    "deblur_noisy": "Wiener (DCT, tuned)",
    "deblur": "Wiener (DCT, tuned)",
    "sr4": "iterative back-projection (20 it.)",
    "inpaint50": "biharmonic inpainting (skimage)",
    "colorization": None,
}

T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:8.1f} s] {msg}", flush=True)


def seed_of(*parts: object) -> int:
    return zlib.crc32("|".join(map(str, parts)).encode())


# ----------------------------------------------------------------------------- cache
class Cache:
    """Results by ``image|task|method|seed`` in a JSON file, written atomically after each item."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.samples = path.with_name(path.name + ".samples")
        self.results: dict[str, dict] = {}
        if path.is_file():
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                print(f"cache {path} unreadable ({exc}); starting a new one", flush=True)
                data = {}
            if data.get("protocol") == PROTOCOL:
                self.results = data.get("results", {})
            elif data:
                print(f"cache {path} is from protocol {data.get('protocol')!r}, not {PROTOCOL!r}; starting a new one", flush=True)

    @staticmethod
    def key(image: str, task: str, method: str, seed: object) -> str:
        return f"{image}|{task}|{method}|{seed}"

    def get(self, image: str, task: str, method: str, seed: object) -> dict | None:
        return self.results.get(self.key(image, task, method, seed))

    def put(self, image: str, task: str, method: str, seed: object, value: dict) -> None:
        self.results[self.key(image, task, method, seed)] = value
        from invkit.io import atomic_write

        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"protocol": PROTOCOL, "results": self.results}, indent=1, sort_keys=True)
        atomic_write(self.path, lambda tmp: tmp.write_text(text))

    def sample_path(self, image: str, task: str, method: str, seed: object) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_.@" else "_" for c in f"{image}__{task}__{method}__{seed}")
        return self.samples / f"{safe}.npy"


def weights_fingerprint(path: Path) -> str:
    """The SHA-256 prefix of a weights file that keys its prior-dependent cache entries."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def ddrm_tag(variant: str) -> str:
    """The suffix of DDRM's cache methods: the prior's ``variant`` (``-half``, ``-clip``) and, when
    DDRM's defaults differ from this protocol's (η = 0.85, η_b = 1, svd_rtol = 1e-3), their hash.
    Both are empty for float32 and the protocol's settings, so older caches stay valid."""
    from invkit_solvers.ddrm import DDRM

    ref = DDRM()
    settings = (ref.eta, ref.eta_b, ref.svd_rtol)
    return variant + ("" if settings == (0.85, 1.0, 1e-3) else "-" + hashlib.sha256(repr(settings).encode()).hexdigest()[:8])


def ddrm_method(steps: int, fingerprint: str, variant: str = "") -> str:
    """The cache method of single DDRM samples (:meth:`Cache.sample_path` finds their files)."""
    return f"ddrm{steps}@{fingerprint}{ddrm_tag(variant)}"


# ----------------------------------------------------------------------------- metrics
def metrics(x: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
    """PSNR (dB) and SSIM of ``x`` against ``ref``, both ``(C, H, W)``, by :mod:`invkit.metrics` (clipped to [0, 1])."""
    from invkit.metrics import psnr, ssim

    a, b = x.detach().float().cpu()[None], ref.float().cpu()[None]
    return {"psnr": psnr(a, b), "ssim": ssim(a, b)}


def measure(op, x: torch.Tensor, image: str, task: str) -> tuple[int, torch.Tensor]:
    """The seed of (image, task) and its measurement ``(*op.out_shape)``: ``invkit solve --simulate --seed`` with that seed."""
    from invkit.runner import simulate_measurement

    seed = seed_of("measure", image, task)
    return seed, simulate_measurement(op, x[None], TASKS[task]["sigma_y"], seed)[0]


def task_operator(task: str, shape: tuple[int, ...]):
    """The operator of ``task`` for images of ``shape`` (``invkit solve --operator OP --arg ...``)."""
    import invkit

    spec = TASKS[task]
    return invkit.get_registry().build_operator(spec["op"], tuple(shape), spec["args"])


def ddrm_case(image: str, task: str, x: torch.Tensor, k: int, solver, prior, steps: int, device: torch.device | str, op=None) -> tuple[torch.Tensor, dict[str, float]]:
    """One DDRM case: sample ``k`` of (``image``, ``task``) and its PSNR/SSIM against ``x``.

    Exactly sample ``k`` (from 0) of ``invkit solve --simulate --seed S --steps steps`` on the
    clean image ``x`` with ``S = seed_of("measure", image, task)``: the same measurement
    (:func:`measure`), the same per-sample generator (``invkit.runner.posterior_samples``) and the
    same scores (``invkit.runner.score``).

    Args:
        image, task: Names (they seed the measurement).
        x: The clean image ``(C, H, W)``.
        k: The sample's index.
        solver, prior: DDRM and the prior.
        steps: DDRM steps.
        device: The prior's device.
        op: The task's operator for ``x`` (built by :func:`task_operator` when None).

    Returns:
        The sample ``(C, H, W)`` (float32, CPU) and ``{"psnr", "ssim"}``.
    """
    from invkit.runner import posterior_samples

    op = op if op is not None else task_operator(task, tuple(x.shape))
    seed, y = measure(op, x, image, task)
    sample = posterior_samples(op, y[None], TASKS[task]["sigma_y"], solver, prior, samples=1, first=k, seed=seed, steps=steps, device=device).x
    return sample[0], _scores(sample, x)


def ddrm_mean_scores(samples: list[torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """The posterior mean of the float32 ``samples`` (each ``(C, H, W)``, in order) as the runner
    takes it (``invkit solve --samples K``), and its PSNR/SSIM against ``x``."""
    mean = torch.stack(samples).mean(dim=0, keepdim=True)
    return mean[0], _scores(mean, x)


def _scores(restored: torch.Tensor, x: torch.Tensor) -> dict[str, float]:
    """``invkit.runner.score`` of ``restored`` ``(1, C, H, W)`` against ``x`` ``(C, H, W)``: what ``solve --simulate`` reports."""
    from invkit.runner import score

    got = score(restored, x[None])
    return {"psnr": got["psnr_restored"], "ssim": got["ssim_restored"]}


def mean_psnr(x: np.ndarray, ref: np.ndarray) -> float:
    mse = float(np.mean((np.clip(x, 0, 1) - ref) ** 2))
    return 10 * math.log10(1.0 / max(mse, 1e-20))


# ----------------------------------------------------------------------------- classical methods
GAUSS_STDS = tuple(round(0.2 + 0.05 * i, 2) for i in range(97))  # 0.2 .. 5.0


def gaussian_filter(x: np.ndarray, std: float) -> np.ndarray:
    """Per-channel Gaussian filter of a ``(C, H, W)`` array (scipy, reflect boundary)."""
    from scipy.ndimage import gaussian_filter as gf

    return gf(x, sigma=(0, std, std), mode="reflect")


def tune_gaussian(tuning: dict[str, torch.Tensor], sigmas: tuple[float, ...]) -> dict[float, tuple[float, float]]:
    """Per σ: the filter std with the best mean PSNR on the tuning crops, and that PSNR."""
    best: dict[float, tuple[float, float]] = {}
    for s in sigmas:
        noisy = []
        for name, x in tuning.items():
            g = torch.Generator().manual_seed(seed_of("tune-denoise", name, s))
            n = torch.randn(x.shape, generator=g, dtype=torch.float64).numpy()
            noisy.append((x.double().numpy(), x.double().numpy() + s * n))
        scores = [(float(np.mean([mean_psnr(gaussian_filter(y, std), c) for c, y in noisy])), std) for std in GAUSS_STDS]
        p, std = max(scores)
        best[s] = (std, p)
    return best


class DCTWiener:
    """Wiener/Tikhonov deconvolution of a reflect-boundary separable blur in the DCT-II domain."""

    POWERS = (0, 1, 2)
    LAMBDAS = tuple(float(v) for v in np.logspace(-12, 0, 61))

    def __init__(self, op) -> None:
        import scipy.fft

        self.fft = scipy.fft
        a_h, a_w = op.factors
        hs = []
        for a in (a_h, a_w):
            n = a.shape[0]
            c = scipy.fft.dct(np.eye(n), type=2, norm="ortho", axis=0)
            d = c @ a @ c.T
            off = float(np.abs(d - np.diag(np.diag(d))).max())
            if off > 1e-8:
                raise ValueError(f"the DCT does not diagonalise this blur (off-diagonal {off:.2e})")
            hs.append(np.diag(d))
        self.h = hs[0][:, None] * hs[1][None, :]
        lap = [2 - 2 * np.cos(np.pi * np.arange(a.shape[0]) / a.shape[0]) for a in (a_h, a_w)]
        self.lap = lap[0][:, None] + lap[1][None, :]

    def __call__(self, y: np.ndarray, p: int, lam: float) -> np.ndarray:
        yd = self.fft.dctn(y, type=2, norm="ortho", axes=(-2, -1))
        g = self.h / (self.h**2 + lam * self.lap**p)
        return self.fft.idctn(g * yd, type=2, norm="ortho", axes=(-2, -1))


def tune_wiener(tuning: dict[str, torch.Tensor], sigma_y: float, op_name: str, op_args: dict) -> tuple[int, float, float]:
    """(p, λ, mean PSNR) of the best Wiener filter on the tuning crops for noise ``sigma_y``."""
    import invkit

    reg = invkit.get_registry()
    pairs = []
    wiener = None
    for name, x in tuning.items():
        op = reg.build_operator(op_name, tuple(x.shape), op_args)
        wiener = DCTWiener(op)
        g = torch.Generator().manual_seed(seed_of("tune-wiener", name, sigma_y))
        y = op.forward(x[None])[0] + sigma_y * torch.randn(x.shape, generator=g)
        pairs.append((wiener, x.double().numpy(), y.double().numpy()))
    best = (-math.inf, 0, 0.0)
    for p in DCTWiener.POWERS:
        for lam in DCTWiener.LAMBDAS:
            score = float(np.mean([mean_psnr(w(y, p, lam), c) for w, c, y in pairs]))
            if score > best[0]:
                best = (score, p, lam)
    return best[1], best[2], best[0]


def bicubic_up(y: torch.Tensor, factor: int) -> torch.Tensor:
    return F.interpolate(y[None].double(), scale_factor=factor, mode="bicubic", align_corners=False)[0].float()


def back_projection(op, y: torch.Tensor, factor: int, iters: int = 20) -> torch.Tensor:
    """Iterative back-projection (Irani & Peleg): x ← x + bicubic_up(y − H x), from bicubic."""
    x = bicubic_up(y, factor)
    for _ in range(iters):
        x = x + bicubic_up(y - op.forward(x[None])[0], factor)
    return x


def biharmonic(op, y: torch.Tensor) -> torch.Tensor:
    from skimage.restoration import inpaint_biharmonic

    mask = ~op.mask  # True where missing
    img = op.pinv(y[None])[0].double().numpy()
    missing = mask.any(dim=0).numpy()
    if img.shape[0] == 1:
        out = inpaint_biharmonic(img[0], missing)[None]
    else:
        out = inpaint_biharmonic(np.moveaxis(img, 0, -1), missing, channel_axis=-1)
        out = np.moveaxis(out, -1, 0)
    return torch.from_numpy(np.ascontiguousarray(out)).float()


# ----------------------------------------------------------------------------- tables
def fmt(v: float | None, digits: int = 2) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def fmt_ps(r: dict | None) -> str:
    return "—" if r is None else f"{r['psnr']:.2f} / {r['ssim']:.3f}"


def avg(rows: list[dict | None], field: str) -> float | None:
    vals = [r[field] for r in rows if r is not None]
    return statistics.fmean(vals) if vals and len(vals) == len(rows) else None


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", help=f"comma-separated evaluation images (default: {','.join(ALL_IMAGES)})")
    p.add_argument("--tasks", help=f"comma-separated DDRM tasks (default: {','.join(TASKS)})")
    p.add_argument("--sigmas", default=",".join(map(str, SIGMAS_255)), help="denoising noise levels, in /255 units")
    p.add_argument("--samples", type=int, help="DDRM samples K per (image, task) for the posterior mean (default 8)")
    p.add_argument("--steps", type=int, help="DDRM steps (default 20)")
    p.add_argument("--parts", default="denoise,ddrm", help="which parts to run: denoise, ddrm (default both)")
    p.add_argument("--quick", action="store_true", help="one image (astronaut), K = 2, 20 steps, unless given explicitly")
    p.add_argument(
        "--cache",
        default=str(DEFAULT_CACHE),
        help="results JSON (DDRM samples go to <cache>.samples/); default ~/.cache/invkit/bench_default_prior.json",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (CUDA when available)")
    p.add_argument("--half", action="store_true", help="run the prior in float16 (GPU)")
    p.add_argument("--clip", action="store_true", help="the prior's estimates clipped to [0, 1] (--prior-arg clip=true)")
    p.add_argument("--threads", type=int, help="torch (and BLAS/OpenMP) threads; default: torch's")
    p.add_argument("--timing-repeats", type=int, default=3, help="timed prior evaluations (after one warm-up)")
    p.add_argument("--no-bm3d", action="store_true", help="skip BM3D even if it imports")
    p.add_argument("--weights", default=None, help="measure this weights file (e.g. a training export) instead of the packaged one")
    a = p.parse_args(argv)
    a.images = a.images.split(",") if a.images else (["astronaut"] if a.quick else list(ALL_IMAGES))
    a.tasks = a.tasks.split(",") if a.tasks else list(TASKS)
    a.samples = a.samples if a.samples is not None else (2 if a.quick else 8)
    a.steps = a.steps if a.steps is not None else 20
    a.sigmas = [float(s) for s in a.sigmas.split(",")]
    a.parts = set(a.parts.split(","))
    bad = [i for i in a.images if i not in EVAL_IMAGES] + [t for t in a.tasks if t not in TASKS] + [x for x in a.parts if x not in ("denoise", "ddrm")]
    if bad:
        p.error(f"unknown image, task or part: {', '.join(bad)}")
    if a.samples < 1 or a.steps < 1:
        p.error("--samples and --steps must be >= 1")
    return a


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from invkit.devices import resolve_device
    from invkit_solvers.ddrm import DDRM
    from invkit_priors.default.prior import default_weights_path, load_default_prior

    dev = resolve_device(args.device)

    prior = load_default_prior(device=str(dev), half=args.half, weights=args.weights)
    prior.rgb.clip = args.clip  # --prior-arg clip=true
    wpath = default_weights_path() if args.weights is None else Path(args.weights)
    fp = weights_fingerprint(wpath)
    from invkit_priors.checkpoints.invkit_format import read_invkit_metadata

    meta = read_invkit_metadata(wpath) or {}

    # 1. time per prior evaluation -------------------------------------------------------------
    x = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0)).to(dev)
    prior.denoise(x, 0.1)
    sync(dev)
    times = []
    for _ in range(max(1, args.timing_repeats)):
        t = time.perf_counter()
        prior.denoise(x, 0.1)
        sync(dev)
        times.append(time.perf_counter() - t)
    t_eval = statistics.median(times)
    dev_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(
        f"prior evaluation, 1x3x{SIZE}x{SIZE}: {t_eval:.3f} s median of {len(times)} "
        f"(min {min(times):.3f}, max {max(times):.3f}); device {dev} ({dev_name}); "
        f"torch threads {torch.get_num_threads()}; {'float16' if args.half else 'float32'}",
        flush=True,
    )
    print(
        f"prior: default{' (clip=true)' if args.clip else ''}, weights {wpath.name} sha256 {fp}…, train_step {meta.get('train_step', '?')}, "
        f"train_seconds {meta.get('train_seconds', '?')}; torch {torch.__version__}; cache {args.cache}",
        flush=True,
    )
    full_evals = (len([i for i in ALL_IMAGES if i not in GREY_EVAL]) * len(TASKS) + len(GREY_EVAL) * (len(TASKS) - 1)) * 8 * 20
    print(
        f"the full protocol (6 images, 5 tasks, K = 8, 20 steps) is {full_evals} prior evaluations in DDRM "
        f"= {full_evals * t_eval / 3600:.2f} h at this rate (plus {len(ALL_IMAGES) * len(SIGMAS_255)} for denoising)",
        flush=True,
    )

    cache = Cache(Path(args.cache).expanduser())
    variant = ("-half" if args.half else "") + ("-clip" if args.clip else "")  # the prior's precision and clipping
    tag = ddrm_tag(variant)
    prior_m = f"prior@{fp}{variant}"
    ddrm_m = ddrm_method(args.steps, fp, variant)
    mean_m = f"ddrm{args.steps}-mean{args.samples}@{fp}{tag}"
    images: dict[str, torch.Tensor] = {}
    for name in args.images:
        try:
            images[name] = load_eval(name, SIZE)
        except Exception as exc:  # noqa: BLE001
            print(f"image {name}: not available ({type(exc).__name__}: {exc}); skipped", flush=True)

    def ddrm_pairs() -> list[tuple[str, str]]:
        return [(im, t) for im in images for t in args.tasks if not (TASKS[t]["rgb_only"] and images[im].shape[0] != 3)]

    todo = 0
    if "denoise" in args.parts:
        todo += sum(cache.get(im, f"denoise{s:g}", prior_m, 0) is None for im in images for s in args.sigmas)
    if "ddrm" in args.parts:
        todo += args.steps * sum(
            cache.get(im, t, ddrm_m, k) is None or not cache.sample_path(im, t, ddrm_m, k).is_file()
            for im, t in ddrm_pairs()
            for k in range(args.samples)
        )
    print(f"this run: {todo} prior evaluations not cached ≈ {todo * t_eval / 60:.1f} min at this rate", flush=True)
    tuning: dict[str, torch.Tensor] | None = None

    def get_tuning() -> dict[str, torch.Tensor]:
        nonlocal tuning
        if tuning is None:
            tuning = load_tuning(SIZE)
        return tuning

    # 2. denoising ---------------------------------------------------------------------------
    if "denoise" in args.parts and images:
        print("\n## Denoising\n", flush=True)
        sig = [s / 255 for s in args.sigmas]
        gauss = tune_gaussian(get_tuning(), tuple(sig))
        print(
            f"Gaussian filter std (px) per σ, chosen for the best mean PSNR on the tuning crops "
            f"({', '.join(get_tuning())}): "
            + ", ".join(f"σ={s:g}: {gauss[v][0]:.2f}" for s, v in zip(args.sigmas, sig)),
            flush=True,
        )
        bm3d = None
        if args.no_bm3d:
            print("BM3D: not run (--no-bm3d)", flush=True)
        else:
            try:
                import bm3d as bm3d  # noqa: PLC0414

                from importlib.metadata import version

                print(f"BM3D: PyPI bm3d {version('bm3d')} (bm3d_rgb, opponent colour space, for RGB; bm3d for grey; sigma_psd = σ)", flush=True)
            except Exception as exc:  # noqa: BLE001
                bm3d = None
                print(f"BM3D: not available ({type(exc).__name__}: {exc})", flush=True)
        for s255, s in zip(args.sigmas, sig):
            task = f"denoise{s255:g}"
            for name, x in images.items():
                g = torch.Generator().manual_seed(seed_of("denoise", name, s255))
                y = x + s * torch.randn(x.shape, generator=g)
                methods: list[tuple[str, object]] = [
                    ("noisy", lambda: y),
                    (f"gauss{gauss[s][0]:.2f}", lambda: torch.from_numpy(gaussian_filter(y.double().numpy(), gauss[s][0])).float()),
                    (prior_m, lambda: prior.denoise(y[None].to(dev), s)[0].float().cpu()),
                ]
                if bm3d is not None:
                    def run_bm3d() -> torch.Tensor:
                        a = y.double().numpy()
                        if a.shape[0] == 3:
                            out = np.moveaxis(bm3d.bm3d_rgb(np.moveaxis(a, 0, -1), sigma_psd=s), -1, 0)
                        else:
                            out = bm3d.bm3d(a[0], sigma_psd=s)[None]
                        return torch.from_numpy(np.ascontiguousarray(out)).float()

                    methods.append(("bm3d", run_bm3d))
                for method, fn in methods:
                    if cache.get(name, task, method, 0) is not None:
                        continue
                    t = time.perf_counter()
                    try:
                        out = fn()
                        sync(dev)
                        r = metrics(out, x) | {"seconds": time.perf_counter() - t, "device": str(dev)}
                    except Exception as exc:  # noqa: BLE001
                        log(f"{task} {name} {method}: failed ({type(exc).__name__}: {exc})")
                        continue
                    cache.put(name, task, method, 0, r)
                    log(f"{task} {name} {method}: {r['psnr']:.2f} dB ({r['seconds']:.1f} s)")
        header = ["σ (/255)", "image", "noisy", "Gaussian filter", "BM3D", "default prior `denoise`"]
        rows = []
        for s255, s in zip(args.sigmas, sig):
            task = f"denoise{s255:g}"
            cols: dict[str, list] = {"noisy": [], "g": [], "bm3d": [], "prior": []}
            for name in images:
                got = {
                    "noisy": cache.get(name, task, "noisy", 0),
                    "g": cache.get(name, task, f"gauss{gauss[s][0]:.2f}", 0),
                    "bm3d": cache.get(name, task, "bm3d", 0),
                    "prior": cache.get(name, task, prior_m, 0),
                }
                for k, v in got.items():
                    cols[k].append(v)
                label = name + (" (grey)" if images[name].shape[0] == 1 else "")
                rows.append([f"{s255:g}", label] + [fmt(None if v is None else v["psnr"]) for v in got.values()])
            rows.append([f"**{s255:g}**", f"**mean** (Gaussian std {gauss[s][0]:.2f})"] + [f"**{fmt(avg(c, 'psnr'))}**" for c in cols.values()])
        print("\nDenoising PSNR (dB) on the 256×256 evaluation crops, seeded noise, outputs clipped to [0, 1]:\n", flush=True)
        print(table(header, rows), flush=True)

    # 3. DDRM ----------------------------------------------------------------------------------
    if "ddrm" in args.parts and images:
        print(f"\n## DDRM, {args.steps} steps, K = {args.samples} samples\n", flush=True)
        solver = DDRM()
        print(f"DDRM: {solver.eta=}, {solver.eta_b=}, {solver.svd_rtol=}".replace("solver.", ""), flush=True)
        wiener_cfg: dict[float, tuple[int, float, float]] = {}
        for t in args.tasks:
            spec = TASKS[t]
            op = task_operator(t, (3, SIZE, SIZE))
            print(f"{t}: {op!r}, sigma_y = {spec['sigma_y']}; naive = {NAIVE[t]}; classical = {CLASSICAL[t] or 'none (same as naive)'}", flush=True)
            if spec["op"] == "gaussian_blur" and spec["sigma_y"] not in wiener_cfg:
                wiener_cfg[spec["sigma_y"]] = tune_wiener(get_tuning(), spec["sigma_y"], spec["op"], spec["args"])
                p, lam, score = wiener_cfg[spec["sigma_y"]]
                print(
                    f"  Wiener for sigma_y = {spec['sigma_y']}: p = {p}, λ = {lam:.3g} "
                    f"(best mean PSNR {score:.2f} dB on the tuning crops {', '.join(get_tuning())})",
                    flush=True,
                )

        problems: dict[tuple[str, str], tuple] = {}

        def problem(name: str, t: str):
            if (name, t) not in problems:
                x = images[name]
                op = task_operator(t, tuple(x.shape))
                problems[(name, t)] = (op, *measure(op, x, name, t))
            return problems[(name, t)]

        # baselines
        for name, t in ddrm_pairs():
            x = images[name]
            op, _, y = problem(name, t)
            spec = TASKS[t]
            todo_b: list[tuple[str, object]] = []
            if t in ("deblur", "deblur_noisy"):
                p, lam, _ = wiener_cfg[spec["sigma_y"]]
                todo_b += [("naive", lambda: y), (f"wiener-p{p}-l{lam:.3g}", lambda: torch.from_numpy(DCTWiener(op)(y.double().numpy(), p, lam)).float())]
            elif t == "sr4":
                f = spec["args"]["factor"]
                todo_b += [("naive", lambda: bicubic_up(y, f)), ("ibp20", lambda: back_projection(op, y, f))]
            elif t == "inpaint50":
                todo_b += [("naive", lambda: op.pinv(y[None])[0]), ("biharmonic", lambda: biharmonic(op, y))]
            else:
                todo_b += [("naive", lambda: op.pinv(y[None])[0])]
            for method, fn in todo_b:
                if cache.get(name, t, method, 0) is not None:
                    continue
                tt = time.perf_counter()
                r = metrics(fn(), x) | {"seconds": time.perf_counter() - tt}
                cache.put(name, t, method, 0, r)
                log(f"{t} {name} {method}: {r['psnr']:.2f} dB / {r['ssim']:.3f} ({r['seconds']:.2f} s)")

        # DDRM samples, seed by seed over all pairs
        for k in range(args.samples):
            for name, t in ddrm_pairs():
                path = cache.sample_path(name, t, ddrm_m, k)
                if cache.get(name, t, ddrm_m, k) is not None and path.is_file():
                    continue
                x = images[name]
                tt = time.perf_counter()
                out, scores = ddrm_case(name, t, x, k, solver, prior, args.steps, dev, op=problem(name, t)[0])
                secs = time.perf_counter() - tt
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, out.numpy())  # float32: the mean is then the runner's
                r = scores | {
                    "seconds": secs,
                    "device": str(dev),
                    "threads": torch.get_num_threads(),
                    "channels": int(x.shape[0]),
                    "steps": args.steps,
                }
                cache.put(name, t, ddrm_m, k, r)
                log(f"{t} {name} ddrm seed {k}: {r['psnr']:.2f} dB / {r['ssim']:.3f} ({secs:.1f} s)")

        # posterior means
        for name, t in ddrm_pairs():
            seedkey = f"0-{args.samples - 1}"
            if cache.get(name, t, mean_m, seedkey) is not None:
                continue
            samples = [torch.from_numpy(np.load(cache.sample_path(name, t, ddrm_m, k))) for k in range(args.samples)]
            if any(s.dtype != torch.float32 for s in samples):
                log(f"{t} {name}: cached samples are not float32 (an older run); delete {cache.samples} and run again")
                continue
            r = ddrm_mean_scores(samples, images[name])[1]
            cache.put(name, t, mean_m, seedkey, r)
            log(f"{t} {name} ddrm mean of {args.samples}: {r['psnr']:.2f} dB / {r['ssim']:.3f}")

        # tables
        summary = []
        for t in args.tasks:
            spec = TASKS[t]
            pairs = [(im, tt) for im, tt in ddrm_pairs() if tt == t]
            if not pairs:
                continue
            classical_m = None
            if t in ("deblur", "deblur_noisy"):
                p, lam, _ = wiener_cfg[spec["sigma_y"]]
                classical_m = f"wiener-p{p}-l{lam:.3g}"
            elif t == "sr4":
                classical_m = "ibp20"
            elif t == "inpaint50":
                classical_m = "biharmonic"
            rows = []
            cols: dict[str, list] = {"naive": [], "classical": [], "one": [], "mean": []}
            for name, _ in pairs:
                singles = [cache.get(name, t, ddrm_m, k) for k in range(args.samples)]
                one = {"psnr": statistics.fmean(s["psnr"] for s in singles), "ssim": statistics.fmean(s["ssim"] for s in singles)}
                got = {
                    "naive": cache.get(name, t, "naive", 0),
                    "classical": cache.get(name, t, classical_m, 0) if classical_m else None,
                    "one": one,
                    "mean": cache.get(name, t, mean_m, f"0-{args.samples - 1}"),
                }
                for kk, v in got.items():
                    cols[kk].append(v)
                label = name + (" (grey)" if images[name].shape[0] == 1 else "")
                rows.append([label] + [fmt_ps(v) for v in got.values()])
            mean_row = ["**mean**"]
            for kk, c in cols.items():
                if kk == "classical" and not classical_m:
                    mean_row.append("—")
                else:
                    mean_row.append(f"**{fmt(avg(c, 'psnr'))} / {fmt(avg(c, 'ssim'), 3)}**")
            rows.append(mean_row)
            op = problem(*pairs[0])[0]
            print(
                f"\n### {t}: {spec['op']} {op.config}, σ_y = {spec['sigma_y']} — PSNR (dB) / SSIM\n"
                f"naive: {NAIVE[t]}; classical: {CLASSICAL[t] or 'none better than the naive one'}"
                + (f" (method {classical_m})" if classical_m else "")
                + "\n",
                flush=True,
            )
            print(
                table(["image", "naive", "classical", f"DDRM 1 sample (avg of {args.samples} seeds)", f"DDRM mean of {args.samples}"], rows),
                flush=True,
            )
            if any(v is None for kk in ("mean", "naive") for v in cols[kk]) or (classical_m and None in cols["classical"]):
                summary.append((t, f"{t}: incomplete (results missing from the cache); run again to finish", False, None))
                continue
            d_naive = [m["psnr"] - n["psnr"] for m, n in zip(cols["mean"], cols["naive"])]
            beats_naive = statistics.fmean(d_naive) > 0
            line = (
                f"{t}: DDRM mean {avg(cols['mean'], 'psnr'):.2f} dB vs naive {avg(cols['naive'], 'psnr'):.2f} dB: "
                f"{'BEATS' if beats_naive else 'does NOT beat'} naive by {statistics.fmean(d_naive):+.2f} dB "
                f"(worst image {min(d_naive):+.2f}, {sum(d > 0 for d in d_naive)}/{len(d_naive)} images)"
            )
            d_one = [o["psnr"] - n["psnr"] for o, n in zip(cols["one"], cols["naive"])]
            line += f"; one sample vs naive {statistics.fmean(d_one):+.2f} dB (worst image {min(d_one):+.2f})"
            beats_cl = None
            if classical_m:
                d_cl = [m["psnr"] - c["psnr"] for m, c in zip(cols["mean"], cols["classical"])]
                beats_cl = statistics.fmean(d_cl) > 0
                line += (
                    f"; vs classical {avg(cols['classical'], 'psnr'):.2f} dB: {'BEATS' if beats_cl else 'does NOT beat'} it "
                    f"by {statistics.fmean(d_cl):+.2f} dB (worst image {min(d_cl):+.2f}, {sum(d > 0 for d in d_cl)}/{len(d_cl)} images)"
                )
            summary.append((t, line, beats_naive, beats_cl))

        # wall time of one solve
        solves = [
            v["seconds"]
            for kk, v in cache.results.items()
            if kk.split("|")[2] == ddrm_m
            and v.get("channels") == 3
            and v.get("device") == str(dev)
            and v.get("threads") == torch.get_num_threads()
            and kk.split("|")[0] in images
        ]
        print("\n## DDRM wall time\n", flush=True)
        if solves:
            print(
                f"one 3x{SIZE}x{SIZE} DDRM solve, {args.steps} steps: median {statistics.median(solves):.1f} s over {len(solves)} "
                f"solves (min {min(solves):.1f}, max {max(solves):.1f}); device {dev} ({dev_name}), "
                f"torch threads {torch.get_num_threads()}",
                flush=True,
            )
        else:
            print("no timed RGB solve on this device in the cache", flush=True)

        print("\n## Summary\n", flush=True)
        if args.quick or set(images) != set(ALL_IMAGES) or args.samples != 8 or args.steps != 20:
            print(
                f"(partial protocol: images {', '.join(images)}, K = {args.samples}, {args.steps} steps — "
                "not the acceptance numbers of issue 6)",
                flush=True,
            )
        for _, line, _, _ in summary:
            print("- " + line, flush=True)
        ok_naive = all(b for _, _, b, _ in summary)
        noisy = [c for t, _, _, c in summary if t == "deblur_noisy"]
        ok_cl = "not run" if not noisy else ("yes" if noisy[0] else "no")
        print(
            f"- acceptance: DDRM mean beats naive on every task run: {'yes' if ok_naive else 'no'}; "
            f"beats the tuned classical method on noisy deblurring: {ok_cl}",
            flush=True,
        )
    print(f"\ntotal time {time.perf_counter() - T0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
