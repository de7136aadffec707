"""``invkit prior list`` and ``invkit prior fetch NAME`` (added through ``invkit_register_commands``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .catalogue import Entry

__all__ = ["setup_prior_command", "run_prior_command"]


def setup_prior_command(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``invkit prior``."""
    parser.description = (
        "The public diffusion checkpoints invkit knows (catalogue shipped with invkit, plus $INVKIT_CATALOGUE): "
        "list them, or download one into the cache ($INVKIT_CACHE or ~/.cache/invkit), verified against the "
        "published size and hash. Use the printed path with `invkit solve --prior PATH`."
    )
    sub = parser.add_subparsers(dest="prior_command", metavar="ACTION")
    p = sub.add_parser("list", help="list the catalogue (name, architecture, size, hash, whether cached)")
    p.add_argument("--cache-dir", type=Path, default=None, help="cache directory to look in")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = sub.add_parser("fetch", help="download a checkpoint into the cache (verified; resumes; skips cached files)")
    p.add_argument("name", help="catalogue name (see `invkit prior list`)")
    p.add_argument("--url", default=None, help="download from this URL instead (still verified against the catalogue)")
    p.add_argument("--cache-dir", type=Path, default=None, help="cache directory (default $INVKIT_CACHE or ~/.cache/invkit)")
    p.add_argument("--quiet", action="store_true", help="print only the path")


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def _hash_summary(entry: Entry) -> str:
    kinds = []
    for f in entry.files:
        for checks in [f.checks(None)] + [f.checks(s) for s in f.sources if s.has_own_checks]:
            _, sha, md5, whose = checks
            if sha or md5:
                text = (whose or "").lower()
                who = "authors'" if text.startswith("the authors") else ("mirror's" if "mirror" in text else "host's")
                kinds.append(f"{'sha256' if sha else 'md5'} ({who})")
    return ", ".join(dict.fromkeys(kinds)) or "none published"


def _list(args: argparse.Namespace) -> int:
    from .catalogue import load_catalogue
    from .download import is_cached, resolve_cache_dir

    root = resolve_cache_dir(args.cache_dir)
    rows: list[dict[str, Any]] = []
    for entry in sorted(load_catalogue().values(), key=lambda e: e.name):
        target = root / entry.path
        cached = is_cached(entry, root)
        rows.append(
            {
                "name": entry.name, "arch": entry.arch, "title": entry.title, "size_bytes": entry.size_bytes,
                "hash": _hash_summary(entry), "cached": cached, "path": str(target), "flags": entry.flags,
                "class_cond": entry.class_cond, "license": entry.license,
            }
        )
    if args.json:
        print(json.dumps({"cache_dir": str(root), "checkpoints": rows}, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    print(f"{'name'.ljust(width)}  arch       size      cached  hash")
    for r in rows:
        print(f"{r['name'].ljust(width)}  {r['arch']:<9}  {_size(r['size_bytes']):>8}  {'yes' if r['cached'] else '-':<6}  {r['hash']}")
    print(f"cache: {root}  (details: invkit prior list --json; docs/checkpoints.md)")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from .catalogue import load_catalogue
    from .download import FetchError, fetch

    try:
        path = fetch(args.name, cache_dir=args.cache_dir, url=args.url, progress=not args.quiet)
    except KeyError as err:
        print(f"invkit: error: {err.args[0]}", file=sys.stderr)
        return 2
    except FetchError as err:
        print(f"invkit: error: {err}", file=sys.stderr)
        return 1
    print(path)
    if not args.quiet:
        entry = load_catalogue()[args.name]
        extra = " --prior-arg class_label=N" if entry.class_cond else ""
        print(f"use it with: invkit solve --prior {path}{extra} ...", file=sys.stderr)
    return 0


def run_prior_command(args: argparse.Namespace) -> int:
    """Dispatch ``invkit prior list|fetch``."""
    action = getattr(args, "prior_command", None)
    if action == "list":
        return _list(args)
    if action == "fetch":
        return _fetch(args)
    print("invkit: error: choose an action: invkit prior list | invkit prior fetch NAME", file=sys.stderr)
    return 2
