"""What every lock format is read into, and the helpers the format modules share.

:class:`ImportedPin` (one package a lock pins), :class:`Selected` (a pin one target takes),
:class:`Choice` (the user's extras and groups), :class:`SourceLock` (a parsed lock),
:class:`Requirements` (a source that is no lock) and :class:`FlatLock` (the selection rule of the
locks that record groups and markers per package). :mod:`wheelport.importers` picks the format
module; each format module builds these.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from wheelport.errors import UsageError
from wheelport.importers.markers import for_target_lock, marker_holds

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


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
    #: where the pin comes from when that is not an index (``git https://…``, ``path ../x``)
    direct: str | None = None

    def __str__(self) -> str:
        return f"{self.name}=={self.version}" if self.version is not None else self.name


@dataclass(frozen=True)
class Selected:
    """A pin chosen for one target, with the markers of the edges that brought it in (None:
    unconditional) and the extras the target needs of it."""

    pin: ImportedPin
    markers: tuple[str, ...] | None = None
    extras: frozenset[NormalizedName] = frozenset()


@dataclass(frozen=True, kw_only=True)
class Choice:
    """What the user selects of a lock (``--extra``, ``--group``, ``--all-groups``,
    ``--only-group``): ``only_groups`` leaves out the project's own dependencies and keeps just
    the named groups (``groups`` then holds the ``--only-group`` names)."""

    extras: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    all_groups: bool = False
    only_groups: bool = False


class SourceLock(Protocol):
    """A parsed source lock."""

    @property
    def format(self) -> str: ...
    @property
    def pins(self) -> Sequence[ImportedPin]: ...
    @property
    def index_urls(self) -> Sequence[str]: ...

    def select(self, env: Mapping[str, str], choice: Choice) -> dict[NormalizedName, Selected]:
        """The pins that one target needs (raises :class:`UsageError` for an unknown extra or
        group, or for a selected pin that does not come from an index)."""
        ...


@dataclass(frozen=True)
class Requirements:
    """A source that is not a lock (environment.yml): requirement lines for the resolver."""

    format: str
    lines: tuple[str, ...]
    index_urls: tuple[str, ...]


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


def refuse_direct(
    origin: str, selected: Mapping[NormalizedName, Selected]
) -> dict[NormalizedName, Selected]:
    """The selection, unless it takes a pin that does not come from an index (bad input: the
    wheelhouse is served from indexes). Pins only in unselected groups never get here."""
    for name, sel in sorted(selected.items()):
        pin = sel.pin
        if pin.direct is not None:
            groups = f" (group {', '.join(sorted(pin.groups))})" if pin.groups else ""
            raise UsageError(
                f"{origin}: {name}{groups} comes from {pin.direct}, not from an index",
                hint="wheelport serves packages from indexes; publish it to one and re-lock, "
                "or leave its group unselected",
                package=name,
                path=origin,
            )
    return dict(selected)


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
    Pipfile.lock. Selection is then a filter, as those tools install: a package is taken when
    one of its selected groups' markers holds for the target and the selection."""

    format: str
    origin: str
    pins: Sequence[ImportedPin]
    index_urls: Sequence[str]
    #: groups that are always selected ("main", "default"), unless only groups are asked for
    base_groups: frozenset[str]
    #: extras/groups the lock defines, and how an extra maps to a group (pdm: extras are groups)
    known_extras: frozenset[str] = frozenset()
    known_groups: frozenset[str] = frozenset()
    extras_are_groups: bool = False
    #: group → marker, where a package's marker differs per group (poetry)
    group_markers: Mapping[tuple[NormalizedName, str], str | None] = field(default_factory=dict)
    #: other names of a group (Pipfile.lock: ``develop`` is ``dev``)
    group_aliases: Mapping[str, str] = field(default_factory=dict)

    def groups_for(self, choice: Choice) -> frozenset[str]:
        """The groups a choice selects (checked against the lock's; aliases resolved)."""
        check_selection(self.origin, "extra", choice.extras, self.known_extras)
        known = set(self.known_groups) | set(self.group_aliases)
        check_selection(self.origin, "group", choice.groups, known)
        wanted = self.known_groups if choice.all_groups else choice.groups
        chosen: set[str] = {canonicalize_name(g) for g in wanted}
        if not choice.only_groups:
            chosen |= self.base_groups
        if self.extras_are_groups:
            chosen |= {canonicalize_name(e) for e in choice.extras}
        return frozenset(self.group_aliases.get(g, g) for g in chosen)

    def select(self, env: Mapping[str, str], choice: Choice) -> dict[NormalizedName, Selected]:
        chosen = self.groups_for(choice)
        extras = [canonicalize_name(e) for e in choice.extras]
        out: dict[NormalizedName, Selected] = {}
        for pin in self.pins:
            hit = False
            for g in sorted(pin.groups & chosen) if pin.groups else [""]:
                marker = self.group_markers.get((pin.name, g), pin.marker)
                if marker_holds(marker, env, extras=extras, groups=chosen, origin=self.origin):
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
            left = for_target_lock(pin.marker, extras=extras, groups=chosen)
            out[pin.name] = Selected(pin, (left,) if left else None, pin.extras)
        names = set(out)
        return refuse_direct(
            self.origin,
            {n: dataclasses.replace(s, pin=only_deps(s.pin, names)) for n, s in out.items()},
        )


def only_deps(pin: ImportedPin, names: Collection[str]) -> ImportedPin:
    """The pin with the dependencies that the target's selection holds."""
    deps = tuple(d for d in pin.dependencies if d in names)
    return pin if deps == pin.dependencies else dataclasses.replace(pin, dependencies=deps)
