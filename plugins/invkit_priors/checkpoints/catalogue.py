"""The catalogue of public diffusion checkpoints (``catalogue.json``, shipped with the package).

For each checkpoint: a short name, the file name(s), the URLs (official first, then mirrors;
``direct: false`` marks a page to open in a browser), the size and hashes where anyone published
them **and whose they are** (``hash_by``: the authors', or a mirror's own), the licence terms, and
the architecture flags that :func:`invkit_priors.checkpoints.load.load_checkpoint_prior` uses when
the file carries none. A hash given on one source applies to that source's copy only (e.g. a
mirror whose identity with the original is unverified).

Each entry is an :class:`Entry` of :class:`CatalogueFile` s, each published at one or more
:class:`Source` s. :func:`load_catalogue` reads the catalogue, :func:`get_entry` looks an entry up by
name and :func:`find_by_filename` by the name of its file. Downloading what it lists into the cache
is :mod:`invkit_priors.checkpoints.download`.

``$INVKIT_CATALOGUE`` may name a JSON file (same layout) whose entries are added to the shipped
ones, replacing those of the same name (e.g. an in-house mirror); every function also takes an
explicit ``catalogue`` (:data:`CatalogueLike`), which is how the tests point an entry at a local
server.

Example:
    >>> from invkit_priors.checkpoints.catalogue import find_by_filename, load_catalogue
    >>> cat = load_catalogue()
    >>> cat["adm-imagenet256-uncond"].files[0].sha256[:8]
    'a37c32ff'
    >>> find_by_filename("/somewhere/ffhq_10m.pt").name
    'adm-ffhq256'
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Union

__all__ = [
    "Source",
    "CatalogueFile",
    "Entry",
    "CatalogueLike",
    "load_catalogue",
    "find_by_filename",
    "get_entry",
    "CATALOGUE_ENV",
    "CATALOGUE_FORMAT",
]

#: The environment variable naming a catalogue JSON file added to the shipped one.
CATALOGUE_ENV = "INVKIT_CATALOGUE"
#: The ``format`` field of a catalogue JSON file.
CATALOGUE_FORMAT = "invkit-catalogue-v1"


@dataclass(frozen=True)
class Source:
    """One place a file is published.

    Attributes:
        url: The address.
        role: ``official``, ``mirror`` ... as the reference says.
        direct: The URL serves the file itself (``False``: a page for a browser).
        size_bytes, sha256, md5: This copy's own size/hashes, when they differ from (or are
            unverified against) the file's; ``None`` to use the file's.
        hash_by: Whose hash these are.
        given_by: Who points at this URL.
    """

    url: str
    role: str = ""
    direct: bool = True
    size_bytes: int | None = None
    sha256: str | None = None
    md5: str | None = None
    hash_by: str | None = None
    given_by: str = ""

    @property
    def has_own_checks(self) -> bool:
        """Whether this source carries its own size or hash."""
        return any(v is not None for v in (self.size_bytes, self.sha256, self.md5))


@dataclass(frozen=True)
class CatalogueFile:
    """One file of an entry (a single checkpoint, or one file of a diffusers folder)."""

    path: str
    sources: tuple[Source, ...]
    size_bytes: int | None = None
    sha256: str | None = None
    md5: str | None = None
    hash_by: str | None = None

    def checks(self, source: Source | None = None) -> tuple[int | None, str | None, str | None, str | None]:
        """``(size, sha256, md5, hash_by)`` that a download from ``source`` must match."""
        if source is not None and source.has_own_checks:
            return source.size_bytes, source.sha256, source.md5, source.hash_by
        return self.size_bytes, self.sha256, self.md5, self.hash_by


@dataclass(frozen=True)
class Entry:
    """One public checkpoint.

    Attributes:
        name: Short name (``invkit prior fetch NAME``).
        title: What it is.
        arch: ``adm``, ``ddpm`` or ``diffusers``.
        flags: Architecture flags for the loader (``None`` for diffusers folders).
        path: Where it lands in the cache: the file, or the folder of a multi-file entry.
        files: The files to download.
        aliases: Other names the same checkpoint goes by (matched by :func:`find_by_filename`).
        class_cond: Needs a class label.
        resolution: Training resolution.
        license: Licence terms as stated for the weights.
        raw: The JSON object, with every other field (notes, sources of facts, ...).
    """

    name: str
    title: str
    arch: str
    flags: str | None
    path: str
    files: tuple[CatalogueFile, ...]
    aliases: tuple[str, ...] = ()
    class_cond: bool = False
    resolution: int | None = None
    license: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_folder(self) -> bool:
        """Several files, fetched into one folder (a diffusers model)."""
        return len(self.files) > 1 or self.arch == "diffusers"

    @property
    def size_bytes(self) -> int | None:
        """Total published size, if every file's is known."""
        sizes = [f.checks(next((s for s in f.sources if s.direct), None))[0] for f in self.files]
        known = [s for s in sizes if s is not None]
        return sum(known) if len(known) == len(sizes) else None

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Entry:
        """Build from one catalogue JSON object (validating the fields fetch needs)."""
        try:
            name = str(obj["name"])
            files = tuple(
                CatalogueFile(
                    path=str(f["path"]),
                    sources=tuple(
                        Source(
                            url=str(s["url"]), role=str(s.get("role", "")), direct=bool(s.get("direct", True)),
                            size_bytes=_opt_int(s.get("size_bytes")), sha256=_opt_hex(s.get("sha256")), md5=_opt_hex(s.get("md5")),
                            hash_by=s.get("hash_by"), given_by=str(s.get("given_by", "")),
                        )
                        for s in f.get("sources", [])
                    ),
                    size_bytes=_opt_int(f.get("size_bytes")), sha256=_opt_hex(f.get("sha256")), md5=_opt_hex(f.get("md5")),
                    hash_by=f.get("hash_by"),
                )
                for f in obj["files"]
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"catalogue entry {obj.get('name', '?')!r} is malformed ({type(err).__name__}: {err})") from None
        if not files:
            raise ValueError(f"catalogue entry {name!r} lists no files")
        return cls(
            name=name, title=str(obj.get("title", name)), arch=str(obj.get("arch", "")), flags=obj.get("flags"),
            path=str(obj.get("path", files[0].path)), files=files, aliases=tuple(obj.get("aliases", ()) or ()),
            class_cond=bool(obj.get("class_cond", False)), resolution=_opt_int(obj.get("resolution")),
            license=obj.get("license"), raw=dict(obj),
        )


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _opt_hex(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip().lower()
    int(text, 16)  # ValueError if not hex
    return text


#: An explicit catalogue, as the functions here accept it: a ``{name: Entry}`` mapping, a list of
#: entries or their JSON objects, a catalogue JSON object, the path of a catalogue JSON file, or
#: ``None`` for the shipped catalogue plus ``$INVKIT_CATALOGUE``.
CatalogueLike = Union[Mapping[str, "Entry"], Mapping[str, Any], Iterable[Any], str, os.PathLike, None]


def _entries_from(obj: Any) -> list[Entry]:
    if isinstance(obj, (str, os.PathLike)):
        path = Path(obj)
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"cannot read catalogue {path}: {err}") from None
    if isinstance(obj, Mapping) and "entries" in obj:
        fmt = obj.get("format", CATALOGUE_FORMAT)
        if fmt != CATALOGUE_FORMAT:
            raise ValueError(f"catalogue format {fmt!r} is not {CATALOGUE_FORMAT!r}")
        obj = obj["entries"]
    if isinstance(obj, Mapping):
        obj = list(obj.values())
    return [e if isinstance(e, Entry) else Entry.from_json(e) for e in obj]


def _builtin() -> list[Entry]:
    text = resources.files("invkit_priors.checkpoints").joinpath("catalogue.json").read_text(encoding="utf-8")
    return _entries_from(json.loads(text))


def load_catalogue(catalogue: CatalogueLike = None) -> dict[str, Entry]:
    """The catalogue as ``{name: Entry}``.

    Args:
        catalogue: ``None`` for the shipped catalogue plus ``$INVKIT_CATALOGUE`` (if set); or an
            explicit catalogue: a ``{name: Entry}`` mapping, a list of entries/JSON objects, a
            catalogue JSON object, or the path of a catalogue JSON file (used as it is).

    Raises:
        ValueError: A malformed catalogue.
    """
    if catalogue is not None:
        if isinstance(catalogue, Mapping) and catalogue and all(isinstance(v, Entry) for v in catalogue.values()):
            return dict(catalogue)  # type: ignore[arg-type]
        return {e.name: e for e in _entries_from(catalogue)}
    entries = {e.name: e for e in _builtin()}
    extra = os.environ.get(CATALOGUE_ENV)
    if extra:
        entries.update({e.name: e for e in _entries_from(extra)})
    return entries


def find_by_filename(filename: str, catalogue: CatalogueLike = None) -> Entry | None:
    """The catalogue entry whose file name (or an alias) is ``filename``, if exactly one is."""
    base = Path(filename).name
    hits = [
        e for e in load_catalogue(catalogue).values()
        if not e.is_folder and (base == Path(e.files[0].path).name or base in e.aliases)
    ]
    return hits[0] if len(hits) == 1 else None


def get_entry(name: str, catalogue: CatalogueLike = None) -> Entry:
    """Catalogue entry ``name``.

    Raises:
        KeyError: Unknown name (the message lists the known ones and a close match).
    """
    entries = load_catalogue(catalogue)
    if name not in entries:
        import difflib

        close = difflib.get_close_matches(name, list(entries), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise KeyError(f"unknown checkpoint '{name}'; known: {', '.join(sorted(entries))} (see `invkit prior list`).{hint}")
    return entries[name]
