#!/usr/bin/env bash
# Set up (or refresh) the project's virtual environment in .venv: invkit in editable mode with its
# `dev` extra (the test tools), its `diffusers` extra (so the diffusers-folder tests run rather
# than skip; it pulls no torch of its own: ~10 s and ~95 MB on top of the rest) and its `docs`
# extra (Sphinx and the theme and extensions the documentation build uses; tests/test_docs.py
# builds it).
#
# torch is installed as torch==2.13.0, the CPU build that lies on this workplace's disk (fast,
# small); a bare `torch` requirement would pull a ~5 GB CUDA build. Elsewhere, choose your own
# build with INVKIT_TORCH, e.g. INVKIT_TORCH='torch' or INVKIT_TORCH='torch==2.5.1'.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${INVKIT_TORCH:-torch==2.13.0}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check "$TORCH_SPEC" -e '.[dev,diffusers,docs]' 2>&1 \
  | { grep -v "^WARNING: Location 'file:" || true; }
# In CI (CI set) on Debian as root: Debian's chromium (~15 s), so the documentation's math is
# checked in a real browser (tests/test_docs.py; there a missing browser fails rather than skips).
# Elsewhere nothing is installed system-wide: `apt-get install chromium` to run that test.
if [ -n "${CI:-}" ] && ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  { apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 \
    || { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends chromium >/dev/null 2>&1; }; } \
    || echo "setup.sh: could not install chromium with apt-get; the documentation's browser test will fail in CI" >&2
fi
.venv/bin/python -c "import invkit, torch; print(f'invkit {invkit.__version__} with torch {torch.__version__} ready in .venv')"
