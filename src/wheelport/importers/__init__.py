"""Locks written by other tools, read without re-resolving.

Each module reads one format into a :class:`SourceLock`: the pins it records
(:class:`ImportedPin`) and how to choose the subset for one target (its marker environment, the
selected extras and groups). Nothing here touches the network: looking the pins up on the index
and writing wheelport's own locks is :func:`wheelport.api.lock_from`'s job.

Parsers: ``packaging.pylock`` for pylock.toml, ``tomllib`` for uv.lock, poetry.lock and pdm.lock
(none of these tools publishes a standalone lock parser), ``json`` for Pipfile.lock and PyYAML for
environment.yml.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from packaging.markers import InvalidMarker, Marker
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from wheelport.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

FORMATS = ("uv.lock", "poetry.lock", "Pipfile.lock", "pdm.lock", "pylock.toml", "environment.yml")


@dataclass(frozen=True, kw_only=True)
class ImportedPin:
    """One package a source lock pins (``version`` None: the lock names it without a pin)."""

    name: NormalizedName
    version: Version | None
    marker: str | None = None
    extras: frozenset[NormalizedName] = frozenset()
    #: names of the packages this one depends on (as the lock records them)
    dependencies: tuple[NormalizedName, ...] = ()
    #: every sha256 the lock records for this pin (any file)
    hashes: frozenset[str] = frozenset()
    #: file name → sha256, where the lock names the file a hash belongs to
    files: Mapping[str, str] = field(default_factory=dict)
    groups: frozenset[str] = frozenset()
    index_url: str | None = None

    def __str__(self) -> str:
        return f"{self.name}=={self.version}" if self.version is not None else self.name


@dataclass(frozen=True)
class Selected:
    """A pin chosen for one target, with the markers of the edges that brought it in (None:
    unconditional) and the extras the target needs of it."""

    pin: ImportedPin
    markers: tuple[str, ...] | None = None
    extras: frozenset[NormalizedName] = frozenset()


class SourceLock(Protocol):
    """A parsed source lock."""

    @property
    def format(self) -> str: ...
    @property
    def pins(self) -> Sequence[ImportedPin]: ...
    @property
    def index_urls(self) -> Sequence[str]: ...

    def select(
        self, env: Mapping[str, str], extras: Collection[str], groups: Collection[str]
    ) -> dict[NormalizedName, Selected]:
        """The pins that one target needs (raises :class:`UsageError` for an unknown extra/group)."""
        ...


@dataclass(frozen=True)
class Requirements:
    """A source that is not a lock (environment.yml): requirement lines for the resolver."""

    format: str
    lines: tuple[str, ...]
    index_urls: tuple[str, ...]


def detect(path: Path, data: bytes) -> str:
    """The format of a source lock, by file name first, then by content."""
    name = path.name
    if name in ("uv.lock", "poetry.lock", "Pipfile.lock", "pdm.lock"):
        return name
    if name == "pylock.toml" or (name.startswith("pylock.") and name.endswith(".toml")):
        return "pylock.toml"
    if name.endswith((".yml", ".yaml")):
        return "environment.yml"
    text = data.decode("utf-8", "replace")
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and "_meta" in doc:
        return "Pipfile.lock"
    try:
        toml = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        toml = None
    if isinstance(toml, dict):
        meta = toml.get("metadata", {})
        if "lock-version" in toml and "packages" in toml:
            return "pylock.toml"
        if isinstance(meta, dict) and "lock_version" in meta:
            return "pdm.lock"
        if isinstance(meta, dict) and "content-hash" in meta:
            return "poetry.lock"
        if "version" in toml and "package" in toml:
            return "uv.lock"
    raise UsageError(
        f"{path}: not a lock format wheelport reads",
        hint=f"pass one of {', '.join(FORMATS)} (detected by file name, then content)",
        path=str(path),
    )


def load(path: Path) -> SourceLock | Requirements:
    """Read and parse a source lock (a :class:`UsageError` naming the file when it is bad)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"lock to import not found: {path}", path=str(path)) from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}", path=str(path)) from None
    fmt = detect(path, data)
    from wheelport.importers import condaenv, pdm, pipenv, poetry, pylock, uv

    parsers: dict[str, Callable[[bytes, str], SourceLock | Requirements]] = {
        "uv.lock": uv.parse,
        "poetry.lock": poetry.parse,
        "Pipfile.lock": pipenv.parse,
        "pdm.lock": pdm.parse,
        "pylock.toml": pylock.parse,
        "environment.yml": condaenv.parse,
    }
    try:
        return parsers[fmt](data, str(path))
    except UsageError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, InvalidVersion, InvalidMarker) as exc:
        # the lock parsed but its shape is not what the format says
        raise UsageError(
            f"{path}: malformed {fmt}: {type(exc).__name__}: {exc}",
            hint=f"regenerate it with its tool ({fmt})",
            path=str(path),
        ) from None


# -- helpers shared by the format modules ---------------------------------------------------------


def load_toml(data: bytes, origin: str, fmt: str) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = tomllib.loads(data.decode("utf-8"))
        return doc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{origin}: malformed {fmt}: {exc}", path=origin) from None


def sha256_of(text: str) -> str | None:
    """``sha256:HEX`` → HEX (other algorithms: None)."""
    algo, _, value = text.partition(":")
    return value.lower() if algo == "sha256" and value else None


def basename(url: str) -> str:
    return url.split("#", 1)[0].split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]


def marker_holds(marker: str | None, env: Mapping[str, str], extras: Collection[str] = ()) -> bool:
    """Does a PEP 508 marker (which may test ``extra``) hold for the target and extras?"""
    if not marker:
        return True
    m = Marker(marker)
    return any(m.evaluate({**env, "extra": e}) for e in ["", *extras])


def check_selection(
    origin: str, kind: str, wanted: Collection[str], known: Collection[str]
) -> None:
    """An extra or group the lock does not have is bad input, listing the ones it has."""
    known_norm = {canonicalize_name(k) for k in known}
    for w in wanted:
        if canonicalize_name(w) not in known_norm:
            raise UsageError(
                f"{origin}: no {kind} {w!r} in this lock",
                hint=f"{kind}s it has: {', '.join(sorted(known)) or 'none'}",
                path=origin,
            )


@dataclass(frozen=True)
class FlatLock:
    """A lock that records, per package, the groups it belongs to and the (inherited) marker
    under which it is needed: poetry.lock ≥ 2.1, pdm.lock with ``inherit_metadata``,
    Pipfile.lock, pylock.toml. Selection is then a filter, as those tools install."""

    format: str
    origin: str
    pins: Sequence[ImportedPin]
    index_urls: Sequence[str]
    #: groups that are always selected ("main", "default")
    base_groups: frozenset[str]
    #: extras/groups the lock defines, and how an extra maps to a group (pdm: extras are groups)
    known_extras: frozenset[str] = frozenset()
    known_groups: frozenset[str] = frozenset()
    extras_are_groups: bool = False
    #: group → marker, where a package's marker differs per group (poetry)
    group_markers: Mapping[tuple[NormalizedName, str], str | None] = field(default_factory=dict)

    def select(
        self, env: Mapping[str, str], extras: Collection[str], groups: Collection[str]
    ) -> dict[NormalizedName, Selected]:
        check_selection(self.origin, "extra", extras, self.known_extras)
        check_selection(self.origin, "group", groups, self.known_groups)
        chosen = set(self.base_groups) | {canonicalize_name(g) for g in groups}
        norm_extras = [canonicalize_name(e) for e in extras]
        if self.extras_are_groups:
            chosen |= set(norm_extras)
        out: dict[NormalizedName, Selected] = {}
        for pin in self.pins:
            hit = False
            for g in sorted(pin.groups & chosen) if pin.groups else [""]:
                marker = self.group_markers.get((pin.name, g), pin.marker)
                if marker_holds(marker, env, norm_extras):
                    hit = True
                    break
            if not hit:
                continue
            prev = out.get(pin.name)
            if prev is not None and prev.pin.version == pin.version:
                # pdm writes a package with extras as a second entry of the same version
                merged = dataclasses.replace(
                    prev.pin,
                    dependencies=tuple(sorted({*prev.pin.dependencies, *pin.dependencies})),
                    hashes=prev.pin.hashes | pin.hashes,
                    files={**prev.pin.files, **pin.files},
                )
                out[pin.name] = Selected(merged, None, prev.extras | pin.extras)
                continue
            if prev is not None:
                raise UsageError(
                    f"{self.origin}: two entries for {pin.name} hold for one target "
                    f"({out[pin.name].pin.version} and {pin.version})",
                    path=self.origin,
                )
            out[pin.name] = Selected(pin, (pin.marker,) if pin.marker else None, pin.extras)
        names = set(out)
        return {n: dataclasses.replace(s, pin=only_deps(s.pin, names)) for n, s in out.items()}


def only_deps(pin: ImportedPin, names: Collection[str]) -> ImportedPin:
    """The pin with the dependencies that the target's selection holds."""
    deps = tuple(d for d in pin.dependencies if d in names)
    return pin if deps == pin.dependencies else dataclasses.replace(pin, dependencies=deps)
