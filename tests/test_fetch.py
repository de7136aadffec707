"""Catalogue and verified downloads, against a real HTTP server on 127.0.0.1 (no other address is
ever contacted): hashes checked, mismatches leave nothing behind, cached files are reused,
interrupted downloads resume, and `invkit prior fetch/list` work in a subprocess."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from invkit_priors.checkpoints.catalogue import find_by_filename, load_catalogue
from invkit_priors.checkpoints.download import FetchError, HashMismatchError, fetch, is_cached, resolve_cache_dir

PAYLOAD = hashlib.sha256(b"seed").digest() * (3 * 2**20 // 32 + 17)  # ~3 MB: several 1 MiB chunks
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
MD5 = hashlib.md5(PAYLOAD).hexdigest()
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
SERVER_LIFETIME_S = 120


class _Server(ThreadingHTTPServer):
    """The test server and what it serves and saw.

    Attributes:
        files: The bodies served, by URL path.
        requests: Every request as ``(path, Range header or None)``, in order.
        cut: Paths whose response stops halfway (the connection drops).
    """

    daemon_threads = True

    def __init__(self, files: dict[str, bytes]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = files
        self.requests: list[tuple[str, str | None]] = []
        self.cut: set[str] = set()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up early (the size-mismatch test does, on purpose) is not an error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.files``; honours ``Range``; ``/html/...`` is a web page; paths in ``server.cut`` stop halfway."""

    server: _Server

    def do_GET(self) -> None:  # noqa: N802
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        body = server.files.get(self.path.split("?")[0])
        if body is None:
            self.send_error(404)
            return
        if self.path.startswith("/html/"):
            page = b"<html><body>Google Drive can't scan this file for viruses</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        chunk = body[start:]
        if self.path in server.cut:
            chunk = chunk[: len(chunk) // 2]  # the connection drops halfway
            self.close_connection = True
        self.wfile.write(chunk)

    def log_message(self, *args) -> None:  # quiet
        pass


class LocalServer:
    def __init__(self, files: dict[str, bytes]) -> None:
        self.httpd = _Server(files)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.watchdog = threading.Timer(SERVER_LIFETIME_S, self.httpd.shutdown)  # stops by itself
        self.watchdog.daemon = True

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def requests(self) -> list[tuple[str, str | None]]:
        return self.httpd.requests

    def __enter__(self) -> LocalServer:
        self.thread.start()
        self.watchdog.start()
        return self

    def __exit__(self, *exc) -> None:
        self.watchdog.cancel()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalServer]:
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv("INVKIT_CATALOGUE", raising=False)
    files = {p: PAYLOAD for p in ("/files/model.pt", "/html/model.pt", "/mirror/model.pt")}
    files["/files/config.json"] = b'{"a": 1}'
    with LocalServer(files) as srv:
        yield srv


def entry(name: str, urls: list[str], **checks) -> dict:
    return {
        "name": name, "title": "test checkpoint", "arch": "ddpm", "flags": None, "path": "model.pt",
        "files": [{"path": "model.pt", "sources": [{"url": u, "role": "test", "direct": True} for u in urls], **checks}],
    }


def good(name: str, base: str, **over) -> dict:
    return entry(name, [f"{base}/files/model.pt"], **{"size_bytes": len(PAYLOAD), "sha256": SHA256, "md5": MD5, "hash_by": "test", **over})


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


def test_fetch_verifies_and_reuses_the_cache(server: LocalServer, tmp_path: Path) -> None:
    cat = [good("tiny", server.base)]
    seen: list[tuple[int, int | None]] = []
    assert not is_cached("tiny", tmp_path, catalogue=cat)
    path = fetch("tiny", cache_dir=tmp_path, catalogue=cat, progress=lambda done, total: seen.append((done, total)))
    assert is_cached("tiny", tmp_path, catalogue=cat) and is_cached(load_catalogue(cat)["tiny"], tmp_path)
    assert path == tmp_path / "model.pt" and path.read_bytes() == PAYLOAD
    assert listing(tmp_path) == ["model.pt", "model.pt.invkit.json"]  # no .part left
    record = json.loads((tmp_path / "model.pt.invkit.json").read_text())
    assert record["sha256"] == SHA256 and record["verified"] == ["size", "sha256", "md5"]
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD)) and len(seen) >= 3
    assert fetch("tiny", cache_dir=tmp_path, catalogue=cat, progress=False) == path
    assert len(server.requests) == 1  # the cached, verified file was not downloaded again


@pytest.mark.parametrize("wrong", ["sha256", "md5", "size_bytes"])
def test_wrong_hash_or_size_fails_and_leaves_no_file(wrong: str, server: LocalServer, tmp_path: Path) -> None:
    bad = {"sha256": "0" * 64, "md5": "f" * 32, "size_bytes": len(PAYLOAD) + 1}[wrong]
    cat = [good("tiny", server.base, **{wrong: bad})]
    with pytest.raises(HashMismatchError) as info:
        fetch("tiny", cache_dir=tmp_path, catalogue=cat, progress=False)
    message = str(info.value)
    assert "\n" not in message and "expected" in message
    if wrong == "sha256":
        assert f"expected {'0' * 64}, got {SHA256}" in message and "(test)" in message
    assert listing(tmp_path) == []  # neither the file nor a partial one


def test_falls_back_past_dead_and_html_urls(server: LocalServer, tmp_path: Path) -> None:
    base = server.base
    cat = [entry("tiny", [f"{base}/missing/model.pt", f"{base}/html/model.pt", f"{base}/mirror/model.pt"], sha256=SHA256)]
    assert fetch("tiny", cache_dir=tmp_path, catalogue=cat, progress=False).read_bytes() == PAYLOAD
    assert [p for p, _ in server.requests] == ["/missing/model.pt", "/html/model.pt", "/mirror/model.pt"]
    cat = [entry("dead", [f"{base}/missing/a.pt", f"{base}/html/model.pt"], sha256=SHA256)]
    with pytest.raises(FetchError, match=r"every URL failed .*HTTP 404.*HTML page"):
        fetch("dead", cache_dir=tmp_path / "other", catalogue=cat, progress=False)
    pages = [{**entry("page", ["https://example.invalid/folder"]), "files": [{"path": "model.pt", "sources": [{"url": "https://example.invalid/folder", "direct": False}]}]}]
    with pytest.raises(FetchError, match="no direct download URL; get it from https://example.invalid/folder"):
        fetch("page", cache_dir=tmp_path / "pages", catalogue=pages, progress=False)


def test_interrupted_download_resumes(server: LocalServer, tmp_path: Path) -> None:
    cat = [good("tiny", server.base)]
    server.httpd.cut.add("/files/model.pt")
    with pytest.raises(FetchError, match="run the same command again to resume"):
        fetch("tiny", cache_dir=tmp_path, catalogue=cat, progress=False)
    part = tmp_path / "model.pt.part"
    assert part.stat().st_size == len(PAYLOAD) // 2 and not (tmp_path / "model.pt").exists()
    # The connection is fine again: the next call asks only for the rest, and verifies the whole.
    server.httpd.cut.clear()
    server.requests.clear()
    path = fetch("tiny", cache_dir=tmp_path, catalogue=cat, progress=False)
    assert path.read_bytes() == PAYLOAD and not part.exists()
    assert server.requests == [("/files/model.pt", f"bytes={len(PAYLOAD) // 2}-")]


def test_a_partial_file_from_another_url_is_not_resumed(server: LocalServer, tmp_path: Path) -> None:
    (tmp_path / "model.pt.part").write_bytes(b"junk" * 100)
    (tmp_path / "model.pt.part.url").write_text("http://127.0.0.1:9/elsewhere")
    fetch("tiny", cache_dir=tmp_path, catalogue=[good("tiny", server.base)], progress=False)
    assert server.requests == [("/files/model.pt", None)]


def test_hand_placed_files_are_hashed_once_or_replaced(server: LocalServer, tmp_path: Path) -> None:
    cat = [good("tiny", server.base)]
    (tmp_path / "model.pt").write_bytes(PAYLOAD)
    fetch("tiny", cache_dir=tmp_path, catalogue=cat, progress=False)
    assert server.requests == [] and (tmp_path / "model.pt.invkit.json").exists()
    (tmp_path / "model.pt.invkit.json").unlink()
    assert is_cached("tiny", tmp_path, catalogue=cat) and (tmp_path / "model.pt.invkit.json").exists()  # hashed once, recorded
    (tmp_path / "model.pt.invkit.json").unlink()
    (tmp_path / "model.pt").write_bytes(b"not the model")
    assert not is_cached("tiny", tmp_path, catalogue=cat) and not (tmp_path / "model.pt.invkit.json").exists()
    assert fetch("tiny", cache_dir=tmp_path, catalogue=cat, progress=False).read_bytes() == PAYLOAD
    assert len(server.requests) == 1


def test_url_override_and_folder_entries(server: LocalServer, tmp_path: Path) -> None:
    base = server.base
    cat = [good("tiny", "http://127.0.0.1:9/never-used")]
    path = fetch("tiny", cache_dir=tmp_path, url=f"{base}/mirror/model.pt", catalogue=cat, progress=False)
    assert path.read_bytes() == PAYLOAD and server.requests == [("/mirror/model.pt", None)]
    folder = {
        "name": "repo", "arch": "diffusers", "path": "org--repo",
        "files": [
            {"path": "config.json", "sources": [{"url": f"{base}/files/config.json"}]},
            {"path": "diffusion_pytorch_model.bin", "sources": [{"url": f"{base}/files/model.pt"}], "sha256": SHA256},
        ],
    }
    assert not is_cached("repo", tmp_path, catalogue=[folder])
    out = fetch("repo", cache_dir=tmp_path, catalogue=[folder], progress=False)
    assert is_cached("repo", tmp_path, catalogue=[folder])
    assert out == tmp_path / "org--repo" and (out / "config.json").read_bytes() == b'{"a": 1}'
    assert (out / "diffusion_pytorch_model.bin").read_bytes() == PAYLOAD
    with pytest.raises(FetchError, match="single-file entries only"):
        fetch("repo", cache_dir=tmp_path, url=f"{base}/files/model.pt", catalogue=[folder], progress=False)
    with pytest.raises(KeyError, match="unknown checkpoint 'tinny'.*Did you mean 'tiny'"):
        fetch("tinny", cache_dir=tmp_path, catalogue=cat, progress=False)


def test_cache_dir_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("INVKIT_CACHE", str(tmp_path / "c"))
    assert resolve_cache_dir() == tmp_path / "c"
    assert resolve_cache_dir(tmp_path / "d") == tmp_path / "d"
    monkeypatch.delenv("INVKIT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert resolve_cache_dir() == tmp_path / "x" / "invkit"


def test_shipped_catalogue_is_complete() -> None:
    cat = load_catalogue()
    for name in ("adm-imagenet256-uncond", "adm-imagenet256-cond", "adm-ffhq256", "ddpm-celebahq256", "ddpm-lsun-bedroom", "ddpm-lsun-cat", "ddpm-lsun-church"):
        assert name in cat
    for e in cat.values():
        assert e.license and e.arch in ("adm", "ddpm", "diffusers") and e.files
        assert (e.flags is None) == (e.arch == "diffusers")
        for f in e.files:
            assert f.sources and any(s.direct for s in f.sources), e.name
            for checks in [f.checks(None)] + [f.checks(s) for s in f.sources]:
                size, sha, md5, whose = checks
                assert sha is None or len(sha) == 64
                assert md5 is None or len(md5) == 32
                if sha or md5:
                    assert whose, f"{e.name}: a hash without saying whose it is"
    # Official URL first; whose hashes are whose, as the reference says.
    uncond = cat["adm-imagenet256-uncond"].files[0]
    assert uncond.sources[0].url.startswith("https://openaipublic.blob.core.windows.net/") and uncond.sources[0].role == "official"
    assert uncond.size_bytes == 2211383297 and (uncond.hash_by or "").startswith("mirrors, not the authors")
    assert cat["ddpm-lsun-church"].files[0].md5 == "fdc68a23938c2397caba4a260bc2445f"
    assert (cat["ddpm-lsun-church"].files[0].hash_by or "").startswith("the authors'")
    ffhq = cat["adm-ffhq256"].files[0]
    assert ffhq.sha256 is None and [s.sha256 for s in ffhq.sources if s.sha256] == ["81d535743156ec6be34d8668e6920da94f0614074d7793a16c8fa9e306237faa"]
    ffhq_entry, cond_entry = find_by_filename("/somewhere/diffusion_ffhq_10m.pt"), find_by_filename("256x256_diffusion.pt")
    assert ffhq_entry is not None and ffhq_entry.name == "adm-ffhq256"
    assert cond_entry is not None and cond_entry.class_cond
    assert find_by_filename("unknown.pt") is None


# ------------------------------------------------------------------ the CLI, in a subprocess
def run_cli(*args: str, env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS and k != "INVKIT_BLOCK_PLUGINS"}
    env.update(NO_PROXY="127.0.0.1,localhost", OMP_NUM_THREADS="1", **env_extra)
    return subprocess.run([sys.executable, "-m", "invkit", *args], capture_output=True, text=True, timeout=120, env=env)


def test_cli_prior_fetch_and_list(server: LocalServer, tmp_path: Path) -> None:
    site = tmp_path / "site-catalogue.json"
    bad = good("tiny-bad", server.base, sha256="1" * 64)
    bad["path"] = bad["files"][0]["path"] = "bad.pt"
    site.write_text(json.dumps({"format": "invkit-catalogue-v1", "entries": [good("tiny", server.base), bad]}))
    cache = tmp_path / "cache"
    env = {"INVKIT_CATALOGUE": str(site), "INVKIT_CACHE": str(cache)}
    proc = run_cli("prior", "fetch", "tiny", env_extra=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(cache / "model.pt") and (cache / "model.pt").read_bytes() == PAYLOAD
    assert "verified size, sha256, md5" in proc.stderr and "invkit solve --prior" in proc.stderr
    proc = run_cli("prior", "fetch", "tiny", "--cache-dir", str(cache), "--quiet", env_extra=env)
    assert proc.returncode == 0 and proc.stdout.strip() == str(cache / "model.pt")
    assert len(server.requests) == 1
    proc = run_cli("prior", "list", "--json", env_extra=env)
    rows = {r["name"]: r for r in json.loads(proc.stdout)["checkpoints"]}
    assert rows["tiny"]["cached"] and not rows["tiny-bad"]["cached"] and "adm-imagenet256-uncond" in rows
    proc = run_cli("prior", "fetch", "tiny-bad", env_extra=env)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 2  # "downloading ..." + the error
    assert proc.stderr.strip().splitlines()[-1].startswith("invkit: error: tiny-bad: sha256: expected 1111")
    assert not (cache / "bad.pt").exists() and not (cache / "bad.pt.part").exists()


# ------------------------------------------------------------------ the download progress bar
@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_download_bar_only_on_a_terminal_and_not_with_quiet(server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """`invkit prior fetch` (in-process) with stderr on a pseudo-terminal draws the tqdm bar; with
    --quiet it draws nothing there; with stderr not a terminal it prints its lines but no bar."""
    import pty

    from invkit.cli import main

    site = tmp_path / "site-catalogue.json"
    site.write_text(json.dumps({"format": "invkit-catalogue-v1", "entries": [good("tiny", server.base)]}))
    monkeypatch.setenv("INVKIT_CATALOGUE", str(site))

    def read_now(fd: int) -> bytes:
        try:
            return os.read(fd, 1 << 16)
        except OSError:  # nothing more (BlockingIOError), or the terminal is closed
            return b""

    def on_terminal(*extra: str) -> str:
        master, slave = pty.openpty()  # what is drawn (well under a kilobyte) waits in its buffer
        with os.fdopen(slave, "w", buffering=1) as terminal, monkeypatch.context() as patch:
            patch.setattr(sys, "stderr", terminal)
            code = main(["prior", "fetch", "tiny", "--cache-dir", str(tmp_path / f"cache{len(extra)}"), *extra])
            os.set_blocking(master, False)
            drawn = b"".join(iter(lambda: read_now(master), b""))
        os.close(master)
        assert code == 0
        return drawn.decode(errors="replace")

    drawn = on_terminal()
    assert "downloading tiny" in drawn and "\rtiny: 100%|" in drawn and "3.15M/3.15M" in drawn and "B/s]" in drawn
    assert on_terminal("--quiet") == ""
    capsys.readouterr()
    assert main(["prior", "fetch", "tiny", "--cache-dir", str(tmp_path / "cache-pipe")]) == 0  # stderr captured: not a terminal
    err = capsys.readouterr().err
    assert "downloading tiny" in err and "verified size, sha256, md5" in err and "%" not in err and "\r" not in err
