"""Verified, resumable downloads of catalogue checkpoints into a cache directory.

The catalogue itself (entries, their files, URLs, sizes and hashes, and looking an entry up) is
:mod:`invkit_priors.checkpoints.catalogue`; this module fetches what it lists:

* the cache directory (:func:`resolve_cache_dir`): ``cache_dir``, else ``$INVKIT_CACHE``, else
  ``$XDG_CACHE_HOME/invkit``, else ``~/.cache/invkit``; :func:`cached_path` is where an entry
  lands there, whether or not it has been downloaded;
* verification sidecars: a verified file is recorded in ``<file>.invkit.json`` (size, sha256,
  md5, the URL, what was checked and whose hash it was), so it is never hashed or downloaded
  again; a file placed in the cache by hand is hashed once (:func:`is_cached`);
* :func:`fetch` downloads an entry with :mod:`urllib`. It tries the direct URLs in catalogue
  order and falls back to the next one when a server refuses, is unreachable, or sends an HTML
  page instead of the file (as Google Drive does for large files). The bytes go to
  ``<file>.part`` and are renamed into place (atomically) only once the size and every known
  hash match; a mismatch deletes the partial file and raises :class:`HashMismatchError` naming
  the expected and received values. An interrupted download keeps ``<file>.part`` (and, in
  ``<file>.part.url``, the URL it came from); the next call resumes it with an HTTP ``Range``
  request when the server supports that (else it starts over);
* progress goes to stderr (messages, and a tqdm bar only when stderr is a terminal), to a
  callable, or nowhere (see :data:`Progress`).

Every function takes an explicit ``catalogue`` (see
:func:`~invkit_priors.checkpoints.catalogue.load_catalogue`), which is how the tests point an
entry at a local server.

Example:
    >>> from invkit_priors.checkpoints.download import cached_path, is_cached
    >>> cached_path("adm-ffhq256", "no-such-folder").as_posix()
    'no-such-folder/ffhq_10m.pt'
    >>> is_cached("adm-ffhq256", "no-such-folder")
    False
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Union

from tqdm import tqdm

from invkit.io import atomic_write
from invkit.terminal import is_terminal, terminal_size

from .catalogue import CatalogueFile, CatalogueLike, Entry, Source, get_entry

__all__ = [
    "FetchError",
    "HashMismatchError",
    "Progress",
    "fetch",
    "resolve_cache_dir",
    "cached_path",
    "is_cached",
    "CACHE_ENV",
]

#: The environment variable naming the cache directory.
CACHE_ENV = "INVKIT_CACHE"
_CHUNK = 1 << 20
_TIMEOUT = 60.0
_SIDECAR = ".invkit.json"


class FetchError(RuntimeError):
    """A checkpoint could not be downloaded (every URL failed, or no direct URL exists)."""


class HashMismatchError(FetchError):
    """The downloaded bytes differ from the catalogue's size or hash (the partial file is deleted)."""


# ====================================================================== cache
def resolve_cache_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The cache directory: ``path``, ``$INVKIT_CACHE``, ``$XDG_CACHE_HOME/invkit`` or ``~/.cache/invkit``."""
    if path is not None:
        return Path(path).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "invkit"
    return Path.home() / ".cache" / "invkit"


def cached_path(name: str, cache: str | os.PathLike[str] | None = None, catalogue: CatalogueLike = None) -> Path:
    """Where :func:`fetch` puts entry ``name`` (whether or not it is there yet).

    Args:
        name: Catalogue name.
        cache: Cache directory (see :func:`resolve_cache_dir`).
        catalogue: Use this catalogue instead of the shipped one.

    Returns:
        The checkpoint file, or the folder of a multi-file (diffusers) entry.

    Raises:
        KeyError: Unknown name (the message lists the known ones).
    """
    return resolve_cache_dir(cache) / get_entry(name, catalogue).path


def is_cached(
    entry: Entry | str,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    catalogue: CatalogueLike = None,
) -> bool:
    """Whether the cache holds a verified copy of every file of ``entry`` (so :func:`fetch` downloads nothing).

    A file counts as verified when its sidecar ``<file>.invkit.json`` records its current size
    and hashes that match the catalogue's (the file's own, or one source's). A file without a
    sidecar (placed there by hand) is hashed once, and the sidecar is written if it matches; when
    the catalogue publishes no hash for it, its size alone decides (any size, if none is known).

    Args:
        entry: A catalogue entry, or its name.
        cache_dir: Cache directory (see :func:`resolve_cache_dir`).
        catalogue: Where to look ``entry`` up when it is a name (default: the shipped one plus
            ``$INVKIT_CATALOGUE``).

    Raises:
        KeyError: Unknown name (the message lists the known ones).
    """
    if isinstance(entry, str):
        entry = get_entry(entry, catalogue)
    target = resolve_cache_dir(cache_dir) / entry.path
    if entry.is_folder:
        return all(_verified(target / cfile.path, cfile) for cfile in entry.files)
    return _verified(target, entry.files[0])


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + _SIDECAR)


def _hash_file(path: Path) -> tuple[str, str]:
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            sha.update(chunk)
            md5.update(chunk)
    return sha.hexdigest(), md5.hexdigest()


def _matches(record: Mapping[str, Any], size: int | None, sha256: str | None, md5: str | None) -> bool:
    return (
        (size is None or record.get("size") == size)
        and (sha256 is None or record.get("sha256") == sha256)
        and (md5 is None or record.get("md5") == md5)
    )


def _verified(dest: Path, cfile: CatalogueFile) -> bool:
    """True when ``dest`` holds a verified copy of ``cfile`` (hashing a hand-placed file once)."""
    if not dest.is_file():
        return False
    size_now = dest.stat().st_size
    candidates = [cfile.checks(None)] + [cfile.checks(s) for s in cfile.sources if s.has_own_checks]
    try:
        record = json.loads(_sidecar(dest).read_text())
    except (OSError, json.JSONDecodeError):
        record = None
    if record is not None and record.get("size") == size_now:
        return any(_matches(record, *c[:3]) for c in candidates)
    if not any(c[1] or c[2] for c in candidates):  # nothing to verify against but the size
        return all(c[0] is None for c in candidates) or any(c[0] == size_now for c in candidates)
    sha, md5 = _hash_file(dest)
    record = {"size": size_now, "sha256": sha, "md5": md5, "url": None}
    if any(_matches(record, *c[:3]) for c in candidates):
        _write_json(_sidecar(dest), record)
        return True
    return False


def _write_json(path: Path, obj: Any) -> None:
    text = json.dumps(obj, indent=1)

    def write(tmp: Path) -> None:
        tmp.write_text(text)

    atomic_write(path, write)


# ====================================================================== download
#: The ``progress`` option of :func:`fetch`: ``True`` for messages on stderr and a tqdm bar there
#: when stderr is a terminal, ``False`` for silence, or ``callback(bytes_done, total_or_None)``,
#: called after every chunk (and nothing printed).
Progress = Union[bool, Callable[[int, "int | None"], None]]


class _Bar:
    """A download's progress: the callback (every chunk) and a tqdm bar on stderr (only on a terminal).

    The bar shows MB done of the total, the rate and the time left; a resumed download starts at
    the bytes already on disk. The terminal test and size are :mod:`invkit.terminal`'s, as
    for the ``solve`` bar.
    """

    def __init__(self, label: str, total: int | None, enabled: Progress, start: int = 0) -> None:
        self.total, self.done = total, start
        self.callback = enabled if callable(enabled) else None
        columns, rows = terminal_size(sys.stderr)  # the stream the bar is drawn on
        self.bar = tqdm(
            desc=label, total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1000,
            file=sys.stderr, disable=not (enabled is True and is_terminal(sys.stderr)), mininterval=0.2,
            ncols=columns, nrows=rows,
        )

    def update(self, n: int) -> None:
        self.done += n
        if self.callback is not None:
            self.callback(self.done, self.total)
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


class _SourceFailed(Exception):
    """This URL did not deliver the file (try the next one)."""


def _say(progress: Progress, text: str) -> None:
    if progress is True:
        print(text, file=sys.stderr, flush=True)


def _download(url: str, dest: Path, checks: tuple[int | None, str | None, str | None, str | None], label: str, progress: Progress) -> dict[str, Any]:
    """Download ``url`` to ``dest`` via ``dest.part`` (resuming it if it came from the same URL)."""
    size, sha256, md5, hash_by = checks
    part = dest.with_name(dest.name + ".part")
    part_src = dest.with_name(dest.name + ".part.url")
    start = 0
    if part.is_file():
        try:
            same = part_src.read_text().strip() == url
        except OSError:
            same = False
        start = part.stat().st_size if same else 0
        if size is not None and start > size:
            start = 0
    headers = {"User-Agent": "invkit-fetch/1 (python urllib)"}
    if start:
        headers["Range"] = f"bytes={start}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=_TIMEOUT)  # noqa: S310 - http(s) URLs from the catalogue
    except urllib.error.HTTPError as err:
        if err.code == 416 and start:  # the range is past the end: start over next time
            part.unlink(missing_ok=True)
            raise _SourceFailed("HTTP 416 on resume; the partial file was discarded, run again") from None
        raise _SourceFailed(f"HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise _SourceFailed(f"{type(err).__name__}: {reason}") from None
    with response:
        ctype = response.headers.get("Content-Type", "") or ""
        if "text/html" in ctype.lower():
            raise _SourceFailed("the server sent an HTML page, not the file (a confirmation or login page?)")
        resumed = start > 0 and response.status == 206 and (response.headers.get("Content-Range", "") or "").startswith(f"bytes {start}-")
        if not resumed:
            start = 0
        length = response.headers.get("Content-Length")
        total = (start + int(length)) if length and length.isdigit() else size
        if size is not None and total is not None and total != size:
            part.unlink(missing_ok=True)
            raise HashMismatchError(f"{label}: size mismatch for {url}: expected {size} bytes, the server announces {total}; nothing kept")
        sha, md = hashlib.sha256(), hashlib.md5()
        if start:
            with open(part, "rb") as fh:
                while chunk := fh.read(_CHUNK):
                    sha.update(chunk)
                    md.update(chunk)
            _say(progress, f"resuming {label} at {start / 1e6:,.1f} MB from {url}")
        else:
            _say(progress, f"downloading {label} from {url}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        part_src.write_text(url)
        bar = _Bar(label, total, progress, start)
        got = start
        try:
            with open(part, "ab" if start else "wb") as out:
                while True:
                    chunk = response.read(_CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    sha.update(chunk)
                    md.update(chunk)
                    got += len(chunk)
                    bar.update(len(chunk))
                    if size is not None and got > size:
                        break
        except (OSError, urllib.error.URLError, http.client.HTTPException) as err:
            bar.close()
            raise FetchError(
                f"{label}: download from {url} interrupted at {got} of {total or '?'} bytes ({type(err).__name__}: {err}); "
                f"run the same command again to resume"
            ) from None
        bar.close()
    if total is not None and got < total and not (size is not None and got > size):
        raise FetchError(f"{label}: download from {url} ended at {got} of {total} bytes; run the same command again to resume")
    record = {"size": got, "sha256": sha.hexdigest(), "md5": md.hexdigest(), "url": url}
    problems = []
    if size is not None and got != size:
        problems.append(f"size: expected {size} bytes, got {got}")
    if sha256 is not None and record["sha256"] != sha256:
        problems.append(f"sha256: expected {sha256}, got {record['sha256']}")
    if md5 is not None and record["md5"] != md5:
        problems.append(f"md5: expected {md5}, got {record['md5']}")
    if problems:
        part.unlink(missing_ok=True)
        part_src.unlink(missing_ok=True)
        whose = f" ({hash_by})" if hash_by else ""
        raise HashMismatchError(f"{label}: {'; '.join(problems)}{whose} for {url}; the partial file was deleted")
    os.replace(part, dest)
    part_src.unlink(missing_ok=True)
    record["verified"] = [k for k, v in (("size", size), ("sha256", sha256), ("md5", md5)) if v is not None]
    record["hash_by"] = hash_by
    _write_json(_sidecar(dest), record)
    return record


def _fetch_file(cfile: CatalogueFile, dest: Path, label: str, url: str | None, progress: Progress) -> Path:
    if _verified(dest, cfile):
        _say(progress, f"{label}: already in the cache ({dest})")
        return dest
    if url is not None:
        sources = [Source(url=url, role="given with --url")]
    else:
        sources = [s for s in cfile.sources if s.direct]
        if not sources:
            pages = ", ".join(s.url for s in cfile.sources) or "none listed"
            raise FetchError(f"{label}: no direct download URL; get it from {pages} and pass the file's path to --prior")
    failures = []
    for src in sources:
        try:
            record = _download(src.url, dest, cfile.checks(src if url is None else None), label, progress)
        except _SourceFailed as why:
            failures.append(f"{src.url}: {why}")
            _say(progress, f"{label}: {src.url} failed ({why}); trying the next URL" if src is not sources[-1] else f"{label}: {src.url} failed ({why})")
            continue
        checked = ", ".join(record["verified"]) or "nothing (no size or hash published)"
        _say(progress, f"{label}: saved {dest} ({record['size']:,} bytes; verified {checked})")
        return dest
    raise FetchError(f"{label}: every URL failed — " + "; ".join(failures))


def fetch(
    name: str,
    cache_dir: str | os.PathLike[str] | None = None,
    url: str | None = None,
    progress: Progress = True,
    *,
    catalogue: CatalogueLike = None,
) -> Path:
    """Download the catalogue entry ``name`` (if not cached yet) and return its local path.

    Args:
        name: Catalogue name (see ``invkit prior list``).
        cache_dir: Cache directory (default ``$INVKIT_CACHE`` or ``~/.cache/invkit``).
        url: Download from this URL instead of the catalogue's (single-file entries; still
            verified against the catalogue's size and hash).
        progress: ``True`` for messages on stderr and a progress bar there when it is a
            terminal, ``False`` for silence, or ``callback(bytes_done, total_or_None)`` (see
            :data:`Progress`).
        catalogue: Use this catalogue instead of the shipped one (see
            :func:`~invkit_priors.checkpoints.catalogue.load_catalogue`).

    Returns:
        The checkpoint file, or the folder of a multi-file (diffusers) entry.

    Raises:
        KeyError: Unknown name (the message lists the known ones).
        HashMismatchError: Size or hash differ (expected and received values named).
        FetchError: No URL delivered the file.
    """
    entry = get_entry(name, catalogue)
    root = resolve_cache_dir(cache_dir)
    target = root / entry.path
    if url is not None and len(entry.files) != 1:
        raise FetchError(f"{name}: --url works for single-file entries only; this one has {len(entry.files)} files")
    if entry.is_folder:
        for cfile in entry.files:
            _fetch_file(cfile, target / cfile.path, f"{name}/{cfile.path}", url, progress)
        return target
    return _fetch_file(entry.files[0], target, name, url, progress)
