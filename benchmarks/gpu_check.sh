#!/usr/bin/env bash
# The GPU check of issue 18, for a session that is lent a CUDA machine (the `device` tool).
#
# Here, once (needs PyPI): fetch the wheels the device lacks (kornia, kornia_rs for its Python 3.12)
#     bash benchmarks/gpu_check.sh --prepare          # -> gpu_wheels/ (git-ignored, ~7 MB)
# There (the device tool's run; everything else it needs is already installed on that image):
#     run(command="bash benchmarks/gpu_check.sh", carry=["gpu_wheels"], timeout_s=420)
# `--install-only` stops after the offline install and the CUDA probe (scripts/gpu_session.sh uses it).
#
# It installs invkit offline (`pip install --no-deps --no-build-isolation -e .`, so the entry
# points exist), runs the CUDA tests (`-k cuda`), then times on the GPU: a 256x256 DDRM
# deblurring solve with the default prior (float16 network, one image and a batch of 8) and a
# 12-megapixel (4000x3000) one with the prior on tiles, printing per-image latency, images/s and
# peak GPU memory. Everything is bounded to finish in about 5 minutes, so it can be rerun.
# Results also go to $OUT/gpu_check.txt when $OUT is set (the device tool's output folder).
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--prepare" ]]; then
    py=${PYTHON:-.venv/bin/python}
    ver() { "$py" -m pip show "$1" 2>/dev/null | awk '/^Version/{print $2}'; }
    mkdir -p gpu_wheels
    "$py" -m pip download "kornia==$(ver kornia)" "kornia-rs==$(ver kornia_rs)" --no-deps --python-version 3.12 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --only-binary=:all: -d gpu_wheels
    exit $?
fi

PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
LOG=${OUT:-/tmp}/gpu_check.txt
exec > >(tee "$LOG") 2>&1
status=0
echo "== gpu_check $(date -u +%FT%TZ), $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

echo "== install (offline)"
if ! "$PY" -c "import kornia" 2>/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --find-links gpu_wheels kornia kornia_rs || { echo "kornia wheels missing: carry gpu_wheels (bash benchmarks/gpu_check.sh --prepare)"; exit 2; }
fi
"$PY" -m pip install -q --no-deps --no-build-isolation -e . || exit 2
"$PY" -c "import torch, invkit; assert torch.cuda.is_available(), 'no CUDA'; print('torch', torch.__version__, torch.cuda.get_device_name(0)); print('solvers', invkit.get_registry().names('solver'))" || exit 2
[[ "${1:-}" == "--install-only" ]] && exit 0  # what scripts/gpu_session.sh's SKIP_CHECK=1 needs

echo "== CUDA tests"
timeout 150 "$PY" -m pytest -q -x -p no:cacheprovider -k cuda tests/test_solver_conformance.py tests/test_op_separable_blur.py \
    tests/test_op_super_resolution.py tests/test_devices.py tests/test_generators.py tests/test_tiled_prior.py || status=1

echo "== timings"
timeout 200 "$PY" - <<'EOF' || status=1
import os, time, torch, invkit
from invkit.runner.inputs import simulate_measurement

dry = os.environ.get("GPU_CHECK_DRY") == "1"  # a CPU smoke run of this block at tiny sizes (GPU_CHECK_DRY=1 PYTHON=.venv/bin/python)
dev = torch.device("cpu" if dry else "cuda")
sync = (lambda: None) if dry else torch.cuda.synchronize
reg = invkit.get_registry()
prior = reg.build("prior", "default", {"device": dev.type, "half": not dry})
solver = reg.build("solver", "ddrm", [])
g = torch.Generator().manual_seed(0)
ops = {}


def solve_time(shape, batch, prior_used, steps=20, repeat=2):
    clean = (0.5 + 0.2 * torch.randn(1, *shape, generator=g)).clamp(0, 1).double()
    if shape not in ops:  # the separable SVD's set-up (two dense 1-D eigendecompositions) once per shape
        t0 = time.perf_counter()
        ops[shape] = reg.build_operator("gaussian_blur", shape, {"sigma": 2.0})
        getattr(ops[shape], "svd", None)  # the lazy SVD built here, so no timed solve pays for it
        print(f"gaussian_blur set-up at {shape}: {time.perf_counter() - t0:.1f} s", flush=True)
    op = ops[shape]
    noise = invkit.GaussianNoise(0.02)
    y = simulate_measurement(op, clean, noise, seed=0)
    problem = invkit.Problem(op, y.to(dev), noise).repeat(batch)
    gens = [torch.Generator(device=dev).manual_seed(i) for i in range(batch)]
    times = []
    for _ in range(repeat):
        sync()
        if not dry:
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        out = solver.solve(problem, prior_used, steps=steps, generator=gens)
        sync()
        times.append(time.perf_counter() - t0)
    return min(times), 0.0 if dry else torch.cuda.max_memory_allocated() / 2**30, out


# precision and memory layout of a batch of tiles (what the tiled prior feeds the network): float32,
# float16 (the `half` prior argument) and bfloat16 (the whole network cast; not an option yet), each
# NCHW and NHWC (channels-last), against float32 NCHW
side, nt = (64, 2) if dry else (256, 8)
xt = (0.5 + 0.2 * torch.randn(nt, 3, side, side, generator=g)).clamp(0, 1).to(dev)
ref = None
for label in ("float32", "float16", "bfloat16"):
    p = reg.build("prior", "default", {"device": dev.type, "half": label == "float16" and not dry})
    if label == "bfloat16":
        p.rgb.model.to(torch.bfloat16)
    for nhwc in (False, True):
        p.rgb.set_channels_last(nhwc)
        p.denoise(xt, 0.2)
        sync()
        t0 = time.perf_counter()
        for _ in range(5):
            out = p.denoise(xt, 0.2)
        sync()
        ms = (time.perf_counter() - t0) / 5 / nt * 1e3
        ref = out.float() if ref is None else ref
        print(f"tiles {nt}x{side}x{side} {label} {'NHWC' if nhwc else 'NCHW'}: {ms:.2f} ms/tile, max |diff| vs float32 NCHW {float((out.float() - ref).abs().max()):.2e}", flush=True)
    del p

small, big, steps = ((3, 64, 64), (3, 96, 128), 2) if dry else ((3, 256, 256), (3, 3000, 4000), 20)
for batch in (1, 8):
    t, mem, _ = solve_time(small, batch, prior, steps=steps)
    print(f"{small[1]}x{small[2]} DDRM {steps} steps, batch {batch}: {t / batch * 1e3:.0f} ms/image, {batch / t:.1f} images/s, peak GPU memory {mem:.2f} GiB", flush=True)

for tile in ((64,) if dry else (256, 512)):
    tiled = invkit.TiledPrior(prior, tile=tile, overlap=32 if not dry else 16)
    t, mem, out = solve_time(big, 1, tiled, steps=steps, repeat=1)
    ok = bool(torch.isfinite(out.x).all())
    print(f"{big[1] * big[2] / 1e6:.3g} MP ({big[2]}x{big[1]}) DDRM {steps} steps, prior on {tile}x{tile} tiles: {t:.1f} s/image ({t / steps:.2f} s/step), "
          f"{1 / t:.3f} images/s, peak GPU memory {mem:.1f} GiB, finite {ok}", flush=True)
EOF
echo "== done (status $status); log: $LOG"
exit $status
