"""The Sphinx documentation builds with zero warnings, and the built site loads nothing from the network.

The build is exactly the documented one (``python -m sphinx -W --keep-going -n -b html docs OUT``):
nitpicky, so every cross-reference must resolve, and any warning fails. Its duration is printed
(and shows in ``pytest --durations``): about 1-2 minutes on a loaded 2-core machine.

The built pages must work offline: no script, stylesheet, image, frame, CSS ``@import`` or
``url(...)`` may be loaded over http(s) (MathJax is served from ``_static/mathjax``). Plain links
(``<a href="https://...">``) are fine.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

_REMOTE = re.compile(r"^\s*(?:https?:)?//", re.IGNORECASE)
# In CSS: url(...) and @import "..." / @import url(...).
_CSS_URL = re.compile(r"""url\(\s*['"]?([^'")\s]+)""", re.IGNORECASE)
_CSS_IMPORT = re.compile(r"""@import\s+['"]([^'"]+)['"]""", re.IGNORECASE)
# Attributes that make the browser fetch something, per tag (``<a href>`` is a link, not a load).
_LOADING = {
    "script": ("src",),
    "img": ("src", "srcset"),
    "iframe": ("src",),
    "frame": ("src",),
    "embed": ("src",),
    "object": ("data",),
    "audio": ("src",),
    "video": ("src", "poster"),
    "source": ("src", "srcset"),
    "track": ("src",),
    "input": ("src",),
}
# <link rel=...> values that fetch their href.
_LOADING_LINK_RELS = {"stylesheet", "preload", "modulepreload", "prefetch", "icon", "shortcut", "apple-touch-icon", "manifest"}


def _css_urls(css: str) -> list[str]:
    return _CSS_URL.findall(css) + _CSS_IMPORT.findall(css)


class _Loads(HTMLParser):
    """Every URL a page makes the browser load: loading attributes, stylesheets, inline CSS."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.urls: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k.lower(): v or "" for k, v in attrs}
        for attr in _LOADING.get(tag, ()):
            if attr in values:
                urls = [part.strip().split(" ")[0] for part in values[attr].split(",")] if attr == "srcset" else [values[attr]]
                self.urls += urls
        if tag == "link" and set(values.get("rel", "").lower().split()) & _LOADING_LINK_RELS:
            self.urls.append(values.get("href", ""))
        if "style" in values:
            self.urls += _css_urls(values["style"])
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.urls += _css_urls(data)


def remote_loads(html: str) -> list[str]:
    """The resources an HTML page loads over the network (http, https or protocol-relative ``//``)."""
    parser = _Loads()
    parser.feed(html)
    parser.close()
    return [url for url in parser.urls if _REMOTE.match(url)]


def test_scanner_catches_remote_loads():
    """The scanner finds what a CDN-using page loads, and leaves links and local files alone."""
    page = """<html><head>
    <script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js"></script>
    <script src="_static/mathjax/tex-chtml.js"></script>
    <link rel="stylesheet" href="//fonts.googleapis.com/css?family=Roboto">
    <link rel="stylesheet" href="_static/styles/furo.css">
    <style>@import "https://example.org/a.css"; body { background: url('https://example.org/bg.png') }</style>
    </head><body>
    <a href="https://github.com/pradyunsg/furo">furo</a>
    <img src="HTTP://example.org/x.png"><img src="_images/local.png">
    <iframe src="https://www.youtube.com/embed/x"></iframe>
    <div style="background-image: url(https://example.org/y.png)"></div>
    </body></html>"""
    assert sorted(remote_loads(page)) == sorted([
        "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js",
        "//fonts.googleapis.com/css?family=Roboto",
        "https://example.org/a.css",
        "https://example.org/bg.png",
        "HTTP://example.org/x.png",
        "https://www.youtube.com/embed/x",
        "https://example.org/y.png",
    ])
    assert remote_loads('<a href="https://example.org">x</a><script src="_static/x.js"></script>') == []


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site built once for this module's tests; the build must succeed with no warning."""
    out = tmp_path_factory.mktemp("docs") / "html"
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-b", "html", str(ROOT / "docs"), str(out)]
    start = time.perf_counter()
    # the gallery's scripts are run by tests/test_examples.py; here their pages are built without executing them
    env = {**os.environ, "INVKIT_DOCS_RUN_GALLERY": "0"}
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    print(f"docs build: {seconds:.1f} s")
    assert result.returncode == 0, f"sphinx-build failed ({result.returncode}) in {seconds:.0f} s:\n{result.stderr[-20000:]}"
    return out


def test_docs_build_without_warnings_and_offline(site):
    out = site
    pages = sorted(out.rglob("*.html"))
    assert (out / "index.html") in pages and (out / "api" / "_generated" / "invkit.html") in pages
    assert (out / "auto_examples" / "index.html") in pages and (out / "guide" / "plugins.html") in pages
    assert (out / "generated" / "solvers" / "ddrm.html") in pages
    remote = {str(page.relative_to(out)): urls for page in pages if (urls := remote_loads(page.read_text(encoding="utf-8")))}
    assert not remote, "pages loading resources over the network:\n" + "\n".join(f"{p}: {u}" for p, u in remote.items())
    for css in out.rglob("*.css"):
        urls = [u for u in _css_urls(css.read_text(encoding="utf-8", errors="replace")) if _REMOTE.match(u)]
        assert not urls, f"{css.relative_to(out)} loads {urls}"

    # Math is rendered by the MathJax copied into the site (the front page has math).
    index = (out / "index.html").read_text(encoding="utf-8")
    assert 'src="_static/mathjax/tex-chtml.js' in index
    assert (out / "_static" / "mathjax" / "tex-chtml.js").is_file()


def _browser():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import docs_browser
    finally:
        sys.path.pop(0)
    return docs_browser


def test_math_typesets_in_a_real_browser_offline(site):
    """Headless Chromium, in an empty network namespace where it can be made, typesets the math of
    the front page and of a solver page (DDRM's eqs. 7-8) from the site's own MathJax.

    Without Chromium it skips, except in CI (``CI`` set, not "false" or "0"), where
    ``scripts/setup.sh`` installs it: there a missing browser fails. Where no network namespace can
    be made (``unshare -n`` refused, as in some containers) it skips, in CI too."""
    browser = _browser()
    if browser.find_chromium() is None:
        message = "no Chromium on PATH (Debian: apt-get install chromium)"
        if os.environ.get("CI", "") not in ("", "false", "0"):
            pytest.fail(f"{message}; in CI scripts/setup.sh installs it with apt-get (as root or with password-less sudo)")
        pytest.skip(message)
    if not browser.offline_prefix():
        pytest.skip("cannot cut the browser off the network here (unshare -n needs a network namespace)")
    for page, least in (("index.html", 2), ("generated/solvers/ddrm.html", 2)):
        dom = browser.open_page(site / page)
        assert dom.count("<mjx-container") >= least, f"{page}: MathJax did not typeset its math"
        assert "<mjx-merror" not in dom, f"{page}: MathJax reported a TeX error"
        assert "\\(" not in dom and "\\[" not in dom, f"{page}: TeX source left untypeset"
