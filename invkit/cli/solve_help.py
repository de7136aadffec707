"""The ``invkit solve --help`` text: :data:`SOLVE_DESCRIPTION` and :data:`SOLVE_EPILOG` (the
full contract of the command: modes, output files, noise, metrics, JSON keys, sizes, cost,
reproducibility)."""

from __future__ import annotations

__all__ = ["SOLVE_DESCRIPTION", "SOLVE_EPILOG"]

SOLVE_DESCRIPTION = """\
Restore images y = H x + noise with a solver (DDRM by default) and a diffusion prior (the
built-in 'default' prior unless --prior is given).

Two modes:
  measurement mode (default)  --input is the measurement: a real degraded photo, or a file made
                              by `invkit degrade` (.safetensors measurements carry their operator,
                              parameters and noise model, so --operator/--arg/--noise may be
                              omitted).
  --simulate                  --input is a clean image: invkit degrades it (operator, --arg,
                              --noise, --sigma-y, noise seed --seed: the same draw as `invkit
                              degrade`),
                              restores it and prints PSNR/SSIM of the measurement and of the
                              restoration against it, and writes a side-by-side picture.
A folder as --input processes every image in it (PNG/JPEG/TIFF/BMP/WebP/PNM/GIF, and
.safetensors measurements in measurement mode) into the folder --output (created if needed).
One input with an --output folder (an existing one, or a name without a suffix such as
restored/) is restored to that folder as <input name>.png."""

SOLVE_EPILOG = """\
output files (OUT = --output without its suffix, EXT = its suffix; folder mode: OUT is
OUTDIR/<input name>, EXT is .png):
  OUT.EXT              the restoration; with --samples N > 1 the posterior mean, or with
                       --select residual the sample of smallest residual ||y - A(x)|| (no ground
                       truth needed; the default for an operator whose posterior mean is
                       meaningless, e.g. phase retrieval, up to its ambiguities)
  OUT_std.EXT          --samples N > 1: per-pixel posterior std (root mean square over channels),
                       grayscale, scaled so that white = its maximum (printed as std_max)
  OUT_sample<i>.EXT    --samples N > 1: the samples, i = 1..N (zero-padded to the width of N)
  OUT_figure.png       side by side: clean | measurement | restoration | std map (the panels
                       that exist); always in --simulate mode, else with --figure; --figure PATH
                       names it (a folder in folder mode)
  Outputs are written atomically; an output equal to an input is refused, and an existing one
  is kept unless --force. All outputs are checked before any work starts. 16-bit inputs give
  16-bit PNG/TIFF outputs (--bits to choose).

noise (--noise gaussian|poisson, --noise-arg K=V, --sigma-y; [0, 1] pixel units):
  --noise: the model; default the one a .safetensors measurement recorded, else gaussian. A
  recorded model may not be contradicted (another model or --noise-arg value is refused).
  gaussian: y = H x + sigma_y n. --sigma-y, measurement mode: the value recorded in a
  .safetensors measurement; for an image file, the noise estimated from the image (median
  absolute diagonal Haar detail), never below the file's quantisation noise
  (1/(255*sqrt(12)) = 0.00113 for 8 bits); `auto` forces the estimate. A sigma_y below the
  photo's real noise makes DDRM amplify that noise (the result can be ruined); one above it only
  smooths more, so when in doubt give a larger value. --simulate: the noise added (default 0:
  noiseless, not quantised).
  poisson: y = clip(Poisson(rate * H x) / rate, 0, 1), --noise-arg rate=N photons per unit
  intensity (default 255, the DPS paper's setting: 255 photons at white). It has no sigma_y
  (--sigma-y is refused with it); it needs H x >= 0, so an operator that can make negative
  measurements (compressed sensing) is refused, and so is --resize of a measurement (it would
  change the photon counts). Solvers that assume Gaussian noise (ddrm, exact) refuse it and name
  the ones that take it (dps).

metrics (--simulate; restoration = OUT.EXT: the posterior mean or, with --select residual, the
sample of smallest residual; all images clipped to [0, 1], before rounding to the output's bits):
  PSNR  10 log10(1 / MSE) over all pixels and channels, in dB (kornia.metrics.psnr)
  SSIM  Gaussian window 11, sigma 1.5, valid region, mean over channels (kornia.metrics.ssim;
        equals scikit-image's structural_similarity with gaussian_weights=True,
        use_sample_covariance=False, data_range=1)
  LPIPS AlexNet LPIPS, only if the `lpips` package and its AlexNet weights are already on this
        machine (never downloaded); otherwise null / not shown
  The measurement is compared as is when it is an image of the clean image's shape (blur,
  denoising); otherwise through its pseudo-inverse H+ y (super-resolution: block replication;
  inpainting: holes at 0; colorization: grey; compressed sensing: back-projection), marked *
  in the table and "pseudo_inverse" in JSON; null when the operator has no pseudo-inverse.
  oracle best of N (--samples N > 1): PSNR/SSIM of the sample closest to the clean image by
  PSNR, the papers' best-of-K protocol. It needs the ground truth, so it is reported (columns
  "PSNR oracle", "SSIM oracle") but never what is written.
  ambiguities: for an operator whose measurement cannot tell some images apart (phase retrieval:
  the 180-degree rotation, and shifts that keep the content inside the image), restorations and
  samples are scored after moving each to the member of its ambiguity set closest to the clean
  image (the operator's align); the files keep what was restored.

--json: one JSON object per image on stdout (JSON Lines; messages go to stderr), keys:
  image, output, mode ("measurement" | "simulate"), operator, operator_params, solver, prior,
  shape [C, H, W] of the restoration, sigma_y, steps (prior evaluations per sample), samples,
  seed, device, seconds, psnr_measurement, psnr_restored, ssim_measurement, ssim_restored,
  lpips_measurement, lpips_restored (numbers, or null: measurement mode, not available, or
  infinite), measurement_metrics_from ("measurement" | "pseudo_inverse" | null),
  std_mean, std_max (--samples > 1, else null), files {"restored", "std", "samples", "figure"},
  noise {"name": "gaussian", "sigma": ...} | {"name": "poisson", "rate": ...} (sigma_y is null for
  poisson), select ("mean" | "residual"), selected_sample (1-based with residual, else null),
  residuals (||y - A(x_i)|| per sample), psnr_oracle, ssim_oracle, oracle_sample (the oracle
  best of N: --simulate with --samples > 1, else null), scored_up_to_ambiguities (true when
  the scores were taken after the operator's ambiguity alignment, else null), model_check
  {"sigma_eff", "tail_rms_over_sigma", "tail_coefficients", "residual_rms_over_sigma",
  "residual_calibrated", "thresholds", "warnings"} (the measurement against the model, below), operator_defaults (the
  operator parameters left at their defaults), prior_tiles ([tile size, overlap] when the prior
  ran on tiles, --tile; else null), estimated_seconds ([low, high] of the solve's prior
  evaluations as estimated before the run, images over 0.26 MP; else null), solver_params,
  prior_params (every parameter the solver and the prior were built with: the --solver-arg and
  --prior-arg values and the declared defaults, null where the plugin picks its own, e.g.
  DiffPIR's per-operator presets; --prior PATH is prior "checkpoint" with its path; "inf" as text).

model check: every run prints the operator parameters used (defaults marked) and, for Gaussian
noise, checks the measurement against the model. Before the solve (an operator with tiny
singular values: blurs, bicubic SR): the coefficients of U^T y that the operator all but erases
should be noise, RMS ~ 1x the noise level (sigma_y with the file's rounding noise); a sharp
photo deblurred as a blur gives several times that. After it: the samples' residual
||y - A(x)|| / sqrt(m) should be ~1x the noise level (it warns only for operators whose singular
values spread, such as blurs and SR, after 10 steps or more: where it was calibrated). Either one
far off prints a warning (the run still completes): check the operator's parameters and --sigma-y.

sizes: an image the operator or the prior cannot take (e.g. the default prior needs H and W
divisible by 8, compressed sensing powers of two) is refused with the sizes that would work;
--pad (symmetric reflection, edge repeated as scipy's 'reflect'; the result is cropped back),
--crop (centred, or an explicit Y,X,H,W region) and --resize (N = longest side, adjusted to the
nearest size that works; or exact H,W) fix it. They act on the input file (the measurement in
measurement mode: operator parameters such as a blur's sigma stay in its pixels, and resizing a
measurement changes its noise level: prefer --pad or --crop there).

cost: images over 0.26 MP get an up-front estimate, a range, from the prior timed at two sizes
(or, on tiles, one tile and a batch of tiles) and scaled by steps, samples and the solver's
evaluations per step; it counts prior evaluations only (not an operator's set-up or products).
A progress bar (stderr, terminals only, not with --quiet) shows steps, time per step and time
left; without a terminal the projections after the first step and the second (the first also
holds one-off set-up), beside the estimate, are printed when they exceed 30 s. Images over
--max-megapixels (a memory bound), or whose estimate's low end is over --max-minutes, are
refused before their pixels are read, with the estimate and the --steps, --samples or
--resize that fits (images up to 0.26 MP are not timed).

reproducibility: sample i draws only from its own generator, seeded from (--seed, i)
(invkit.sample_seed), so the same --seed, device and inputs give the same samples whatever
--batch is (float rounding in CPU BLAS may still differ in the last bits between runs). A
plugin solver without per-row generators (Solver.row_generators) draws a batch from one
generator, and its samples then depend on --batch too."""
