"""uv.lock (read with ``tomllib``): a dependency graph walked from the project's own packages.

The workspace members (``source = { virtual | editable = ... }``) are the roots; their
``dependencies``, the selected ``optional-dependencies`` (``--extra``) and ``dev-dependencies``
(``--group``) are followed, each edge only when its marker holds for the target, so a package
is in a target's lock only when some path to it holds there.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from wheelport.errors import UsageError
from wheelport.importers import (
    ImportedPin,
    Selected,
    basename,
    check_selection,
    load_toml,
    marker_holds,
    only_deps,
    sha256_of,
)

ROOT_SOURCES = ("virtual", "editable")

Key = tuple[NormalizedName, str]  # (name, version as written)


@dataclass(frozen=True)
class UvLock:
    format: str
    origin: str
    pins: Sequence[ImportedPin]
    index_urls: Sequence[str]
    packages: Mapping[Key, dict[str, Any]]
    roots: Sequence[Key]

    def select(
        self, env: Mapping[str, str], extras: Collection[str], groups: Collection[str]
    ) -> dict[NormalizedName, Selected]:
        root_extras = {
            e for k in self.roots for e in self.packages[k].get("optional-dependencies", {})
        }
        root_groups = {g for k in self.roots for g in self.packages[k].get("dev-dependencies", {})}
        check_selection(self.origin, "extra", extras, root_extras)
        check_selection(self.origin, "group", groups, root_groups)
        by_key = {(p.name, str(p.version)): p for p in self.pins}
        wanted_extras = {canonicalize_name(e) for e in extras}
        wanted_groups = {canonicalize_name(g) for g in groups}
        edges: dict[Key, list[str | None]] = {}
        pkg_extras: dict[Key, set[NormalizedName]] = {}
        queue: deque[tuple[Key, frozenset[NormalizedName]]] = deque()
        seen: set[tuple[Key, frozenset[NormalizedName]]] = set()
        for root in self.roots:
            queue.append((root, frozenset()))
        while queue:
            key, ex = queue.popleft()
            if (key, ex) in seen:
                continue
            seen.add((key, ex))
            pkg = self.packages[key]
            deps: list[dict[str, Any]] = []
            if not ex:
                deps += pkg.get("dependencies", [])
            for name, items in pkg.get("optional-dependencies", {}).items():
                if canonicalize_name(name) in ex or (
                    key in self.roots and canonicalize_name(name) in wanted_extras
                ):
                    deps += items
            if key in self.roots and not ex:
                for name, items in pkg.get("dev-dependencies", {}).items():
                    if canonicalize_name(name) in wanted_groups:
                        deps += items
            for dep in deps:
                marker = dep.get("marker")
                if not marker_holds(marker, env):
                    continue
                child = self._find(dep, env)
                if child in self.roots:  # another workspace member: follow, do not pin
                    queue.append((child, frozenset()))
                    continue
                child_extras = frozenset(canonicalize_name(e) for e in dep.get("extra", []))
                edges.setdefault(child, []).append(marker)
                pkg_extras.setdefault(child, set()).update(child_extras)
                queue.append((child, frozenset()))
                if child_extras:
                    queue.append((child, child_extras))
        out: dict[NormalizedName, Selected] = {}
        for key, marks in edges.items():
            pin = by_key[key]
            markers = (
                None if any(m is None for m in marks) else tuple(sorted({m for m in marks if m}))
            )
            out[pin.name] = Selected(pin, markers, frozenset(pkg_extras.get(key, ())))
        names = set(out)
        return {n: Selected(only_deps(s.pin, names), s.markers, s.extras) for n, s in out.items()}

    def _find(self, dep: Mapping[str, Any], env: Mapping[str, str]) -> Key:
        name = canonicalize_name(dep["name"])
        keys = [k for k in self.packages if k[0] == name]
        if "version" in dep:
            keys = [k for k in keys if Version(k[1]) == Version(dep["version"])]
        if len(keys) > 1:
            # forked resolution: the package's own resolution-markers say which fork applies
            keys = [
                k
                for k in keys
                if any(
                    marker_holds(m, env) for m in self.packages[k].get("resolution-markers", [""])
                )
            ] or keys
        if not keys:
            raise UsageError(
                f"{self.origin}: dependency {name} is not in the lock", path=self.origin
            )
        return keys[0]


def parse(data: bytes, origin: str) -> UvLock:
    doc = load_toml(data, origin, "uv.lock")
    packages: dict[Key, dict[str, Any]] = {}
    roots: list[Key] = []
    pins: list[ImportedPin] = []
    indexes: list[str] = []
    for pkg in doc["package"]:
        name = canonicalize_name(pkg["name"])
        version = str(pkg.get("version", "0"))
        key = (name, version)
        packages[key] = pkg
        source = pkg.get("source", {})
        if any(s in source for s in ROOT_SOURCES):
            roots.append(key)
            continue
        if "registry" not in source:
            raise UsageError(
                f"{origin}: {name} comes from {', '.join(f'{k} {v}' for k, v in source.items())}, not from an index",
                hint="wheelport serves packages from indexes; publish it to one and re-lock",
                package=name,
                path=origin,
            )
        files: dict[str, str] = {}
        for art in [*pkg.get("wheels", []), *([pkg["sdist"]] if "sdist" in pkg else [])]:
            digest = sha256_of(art.get("hash", ""))
            fname = art.get("filename") or basename(art.get("url") or art.get("path", ""))
            if digest and fname:
                files[fname] = digest
        index = source["registry"]
        if index not in indexes:
            indexes.append(index)
        pins.append(
            ImportedPin(
                name=name,
                version=Version(version),
                dependencies=tuple(
                    sorted({canonicalize_name(d["name"]) for d in pkg.get("dependencies", [])})
                ),
                hashes=frozenset(files.values()),
                files=files,
                index_url=index,
            )
        )
    if not roots:
        raise UsageError(
            f"{origin}: uv.lock has no project of its own (no virtual or editable source)",
            path=origin,
        )
    return UvLock("uv.lock", origin, pins, indexes, packages, roots)
