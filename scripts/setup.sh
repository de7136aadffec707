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
# In CI (CI set, not "false"/"0") on Debian or Ubuntu: the distribution's chromium (~15 s here), as
# root or through password-less sudo, so the documentation's math is checked in a real browser
# (tests/test_docs.py; in CI a missing browser fails there rather than skips). Elsewhere nothing
# is installed system-wide: `apt-get install chromium` to run that test.
if [ -n "${CI:-}" ] && [ "${CI}" != false ] && [ "${CI}" != 0 ] && ! command -v chromium >/dev/null 2>&1; then
  CAN=yes SUDO=()
  if [ "$(id -u)" != 0 ]; then if sudo -n true 2>/dev/null; then SUDO=(sudo -n); else CAN=no; fi; fi
  if ! command -v apt-get >/dev/null 2>&1 || [ "$CAN" = no ]; then
    echo "setup.sh: CI without apt-get or root/sudo: chromium not installed, tests/test_docs.py's browser test will fail" >&2
  else
    apt_install() { "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >/tmp/invkit-apt.log 2>&1; }
    apt_install || { "${SUDO[@]}" apt-get update >/dev/null 2>&1 && apt_install; } \
      || { echo "setup.sh: apt-get could not install chromium (last lines of /tmp/invkit-apt.log below)" >&2; tail -n 3 /tmp/invkit-apt.log >&2; }
  fi
fi
.venv/bin/python -c "import invkit, torch; print(f'invkit {invkit.__version__} with torch {torch.__version__} ready in .venv')"
