"""uv.lock (read with ``tomllib``): a dependency graph walked from what ``uv export`` exports.

The workspace members (``source = { virtual | editable = ... }``) are followed, never pinned.
Where the walk starts is what ``uv export`` beside the lock starts from: the project at the
workspace root (``"."``), or, for a virtual workspace root (no project of its own), every member.
From there it follows the starts' ``dependencies``, the selected ``optional-dependencies``
(``--extra``) and dependency groups (``--group``, ``--all-groups``): the starts'
``dev-dependencies`` and, for a virtual root, the root's own groups in
``[manifest.dependency-groups]`` (a root group and a member group of one name are one group, as
in uv). ``--only-group`` follows just the groups. Each edge is followed only when its marker
holds for the target, so a package is in a target's lock only when some path to it holds there.
wheelport selects no group unless asked (uv's default ``dev`` group is ``--group dev`` here).
A package from git, a path or a URL is refused only when the walk reaches it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from wheelport.errors import UsageError
from wheelport.importers.markers import checked_marker, marker_holds
from wheelport.importers.pins import (
    Choice,
    ImportedPin,
    Selected,
    basename,
    check_selection,
    load_toml,
    only_deps,
    refuse_direct,
    sha256_of,
)

ROOT_SOURCES = ("virtual", "editable")

Key = tuple[NormalizedName, str]  # (name, version as written)
Dependency = Mapping[str, Any]  # one dependency as uv.lock writes it


@dataclass(frozen=True)
class UvLock:
    format: str
    origin: str
    pins: Sequence[ImportedPin]
    index_urls: Sequence[str]
    packages: Mapping[Key, dict[str, Any]]
    #: the pin of each package that is not a root
    pin_of: Mapping[Key, ImportedPin]
    #: workspace members (and editable path packages): followed, never pinned
    roots: frozenset[Key]
    #: where ``uv export`` starts: the root's project, else every member of the virtual root
    starts: Sequence[Key]
    #: a virtual workspace root's own dependency groups (``[manifest.dependency-groups]``)
    root_groups: Mapping[str, Sequence[Dependency]]

    def known_extras(self) -> set[str]:
        return {e for k in self.starts for e in self.packages[k].get("optional-dependencies", {})}

    def known_groups(self) -> set[str]:
        members = {g for k in self.starts for g in self.packages[k].get("dev-dependencies", {})}
        return members | set(self.root_groups)

    def select(self, env: Mapping[str, str], choice: Choice) -> dict[NormalizedName, Selected]:
        check_selection(self.origin, "extra", choice.extras, self.known_extras())
        check_selection(self.origin, "group", choice.groups, self.known_groups())
        extras = {canonicalize_name(e) for e in choice.extras}
        groups = {
            canonicalize_name(g)
            for g in (self.known_groups() if choice.all_groups else choice.groups)
        }
        edges: dict[Key, list[str | None]] = {}
        pkg_extras: dict[Key, set[NormalizedName]] = {}
        queue: deque[tuple[Key, frozenset[NormalizedName]]] = deque()

        def follow(deps: Iterable[Dependency]) -> None:
            for dep in deps:
                marker = dep.get("marker")
                if not marker_holds(marker, env, origin=self.origin):
                    continue
                child = self._find(dep, env)
                child_extras = frozenset(
                    canonicalize_name(e) for e in dep.get("extra", dep.get("extras", []))
                )
                if child not in self.roots:  # a workspace member is followed, not pinned
                    edges.setdefault(child, []).append(marker)
                    pkg_extras.setdefault(child, set()).update(child_extras)
                queue.append((child, frozenset()))
                if child_extras:
                    queue.append((child, child_extras))

        if not choice.only_groups:
            for key in self.starts:
                queue.append((key, frozenset()))
                own = {
                    canonicalize_name(e)
                    for e in self.packages[key].get("optional-dependencies", {})
                }
                if own & extras:
                    queue.append((key, frozenset(own & extras)))
        for key in self.starts:
            for name, items in self.packages[key].get("dev-dependencies", {}).items():
                if canonicalize_name(name) in groups:
                    follow(items)
        for name, items in self.root_groups.items():
            if canonicalize_name(name) in groups:
                follow(items)
        seen: set[tuple[Key, frozenset[NormalizedName]]] = set()
        while queue:
            key, ex = queue.popleft()
            if (key, ex) in seen:
                continue
            seen.add((key, ex))
            pkg = self.packages[key]
            if not ex:
                follow(pkg.get("dependencies", []))
            for name, items in pkg.get("optional-dependencies", {}).items():
                if canonicalize_name(name) in ex:
                    follow(items)
        out: dict[NormalizedName, Selected] = {}
        for key, marks in edges.items():
            pin = self.pin_of[key]
            markers = (
                None if any(m is None for m in marks) else tuple(sorted({m for m in marks if m}))
            )
            out[pin.name] = Selected(pin, markers, frozenset(pkg_extras.get(key, ())))
        names = set(out)
        return refuse_direct(
            self.origin,
            {n: Selected(only_deps(s.pin, names), s.markers, s.extras) for n, s in out.items()},
        )

    def _find(self, dep: Dependency, env: Mapping[str, str]) -> Key:
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
                    marker_holds(m, env, origin=self.origin)
                    for m in self.packages[k].get("resolution-markers", [""])
                )
            ] or keys
        if not keys:
            raise UsageError(
                f"{self.origin}: dependency {name} is not in the lock", path=self.origin
            )
        return keys[0]


def parse(data: bytes, origin: str) -> UvLock:
    doc = load_toml(data, origin, "uv.lock")
    manifest = doc.get("manifest", {})
    members = {canonicalize_name(m) for m in manifest.get("members", [])}
    packages: dict[Key, dict[str, Any]] = {}
    roots: list[Key] = []
    project: Key | None = None
    pins: dict[Key, ImportedPin] = {}
    indexes: list[str] = []
    for pkg in doc["package"]:
        name = canonicalize_name(pkg["name"])
        version = str(pkg.get("version", "0"))
        key = (name, version)
        packages[key] = pkg
        source = pkg.get("source", {})
        root_path = next((source[s] for s in ROOT_SOURCES if s in source), None)
        if root_path is not None:
            roots.append(key)
            if root_path == ".":
                project = key
            continue
        index = source.get("registry")
        direct = None if index else ", ".join(f"{k} {v}" for k, v in source.items())
        files: dict[str, str] = {}
        for art in [*pkg.get("wheels", []), *([pkg["sdist"]] if "sdist" in pkg else [])]:
            digest = sha256_of(art.get("hash", ""))
            fname = art.get("filename") or basename(art.get("url") or art.get("path", ""))
            if digest and fname:
                files[fname] = digest
        if index and index not in indexes:
            indexes.append(index)
        pins[key] = ImportedPin(
            name=name,
            version=Version(version) if "version" in pkg or direct is None else None,
            dependencies=tuple(
                sorted({canonicalize_name(d["name"]) for d in pkg.get("dependencies", [])})
            ),
            hashes=frozenset(files.values()),
            files=files,
            index_url=index,
            direct=direct,
        )
    if not roots:
        raise UsageError(
            f"{origin}: uv.lock has no project of its own (no virtual or editable source)",
            path=origin,
        )
    if project is not None:
        starts = [project]
        root_groups: dict[str, Sequence[Dependency]] = {}
    else:  # a virtual workspace root: uv exports every member, and the root's groups
        starts = [k for k in roots if k[0] in members] or roots
        root_groups = dict(manifest.get("dependency-groups", {}))
    for items in root_groups.values():
        for dep in items:
            checked_marker(dep.get("marker"))
    return UvLock(
        format="uv.lock",
        origin=origin,
        pins=list(pins.values()),
        index_urls=indexes,
        packages=packages,
        pin_of=pins,
        roots=frozenset(roots),
        starts=starts,
        root_groups=root_groups,
    )
