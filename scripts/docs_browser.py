#!/usr/bin/env python
"""Open a built copy of the documentation in a real browser with the network cut off.

Headless Chromium (Debian's ``chromium`` package) loads each page from ``file://`` inside a new,
empty network namespace (``unshare -n``: no interface but a down loopback, so nothing can be
fetched even if a page tried), lets its scripts run (``--virtual-time-budget``: MathJax typesets
the math), then

* writes a screenshot of each page (``--shots``), and
* returns the page's DOM after its scripts ran, so a test can check what the browser did:
  MathJax turns every ``\\(...\\)`` / ``\\[...\\]`` into ``<mjx-container>`` elements, and leaves
  the TeX source in place (or shows an error box, ``merror``) when it cannot load.

Usage (after building the site)::

    python -m sphinx -b html docs docs/_build/html
    python scripts/docs_browser.py docs/_build/html --shots /tmp/shots

The default pages are the front page, one API page, one solver page (tall enough to reach its
equations) and one gallery page (tall enough to reach its figure).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

#: (name, page relative to the site root, screenshot height in CSS pixels) shown by default
PAGES: tuple[tuple[str, str, int], ...] = (
    ("front", "index.html", 900),
    ("api", "api/_generated/invkit.problem.html", 900),
    ("solver", "generated/solvers/ddrm.html", 2400),  # down to its equations (eqs. 7-8)
    ("gallery", "auto_examples/plot_deblur_uncertainty.html", 3600),  # down to its figure
)


def find_chromium() -> str | None:
    """The Chromium executable on PATH (``chromium`` on Debian, ``chromium-browser`` elsewhere), or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


def offline_prefix() -> list[str]:
    """``unshare -n`` (a private, empty network namespace) when this process may create one, else ``[]``."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        return [unshare, "-n"]
    return []


def open_page(page: Path, *, shot: Path | None = None, width: int = 1280, height: int = 900,
              budget_ms: int = 15000, timeout: float = 120.0) -> str:
    """Load ``page`` in headless Chromium offline; return its DOM after the scripts ran.

    Args:
        page: an HTML file of the built site.
        shot: where to write a PNG screenshot of the first ``width`` × ``height`` pixels (None: none).
        width, height: the window size in CSS pixels.
        budget_ms: virtual time the page's scripts get before the DOM is read (MathJax needs ~1 s).
        timeout: wall-clock seconds before the browser is given up on.

    Raises:
        RuntimeError: no Chromium on PATH, or it failed.
    """
    chromium = find_chromium()
    if chromium is None:
        raise RuntimeError("no chromium on PATH (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="invkit-chromium-") as profile:
        base = [*offline_prefix(), chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--hide-scrollbars",
                f"--window-size={width},{height}", f"--virtual-time-budget={budget_ms}"]
        url = page.resolve().as_uri()
        env = {**os.environ, "HOME": profile}
        dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=timeout, env=env)
        if dom.returncode != 0 or not dom.stdout:
            raise RuntimeError(f"chromium failed on {page} ({dom.returncode}): {dom.stderr[-2000:]}")
        if shot is not None:
            shot.parent.mkdir(parents=True, exist_ok=True)
            res = subprocess.run([*base, f"--screenshot={shot}", url], capture_output=True, text=True, timeout=timeout, env=env)
            if res.returncode != 0 or not shot.is_file():
                raise RuntimeError(f"chromium screenshot of {page} failed ({res.returncode}): {res.stderr[-2000:]}")
    return dom.stdout


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("site", type=Path, help="the built HTML folder (sphinx -b html's output)")
    p.add_argument("--shots", type=Path, required=True, help="folder for the PNG screenshots")
    p.add_argument("--page", action="append", default=None, metavar="NAME=PATH",
                   help="a page to open instead of the defaults (repeatable), e.g. cli=generated/cli.html")
    p.add_argument("--height", type=int, default=900, help="screenshot height of --page pages")
    args = p.parse_args()
    pages = [(*s.split("=", 1), args.height) for s in args.page] if args.page else list(PAGES)
    print("network:", "cut off (unshare -n)" if offline_prefix() else "NOT cut off (unshare -n unavailable)")
    for name, rel, height in pages:
        page = args.site / rel
        if not page.is_file():
            print(f"{rel}: not in {args.site}", file=sys.stderr)
            return 2
        dom = open_page(page, shot=args.shots / f"{name}.png", height=height)
        print(f"{name}: {rel} -> {args.shots / (name + '.png')}; math typeset: {dom.count('<mjx-container')}, "
              f"math errors: {dom.count('<mjx-merror')}, images: {dom.count('<img ')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
