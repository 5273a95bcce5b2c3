"""poetry.lock (read with ``tomllib``).

Lock version 2.1 (Poetry ≥ 2.0) records per package the ``groups`` it belongs to and the
``markers`` under which it is needed (for every path from the project, extras as
``extra == "..."``), which is what ``poetry install`` itself filters by: ``main`` always,
``--group NAME`` adds a group, ``--extra NAME`` an extra of ``[extras]``, ``--all-groups`` every
group, ``--only-group NAME`` that group without ``main`` (``poetry install --only``). Older lock
versions do not record that and are refused (re-lock with Poetry 2). A package from a git,
directory, file or URL source is refused only when a selected group holds it.
"""

from __future__ import annotations

from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from wheelport.errors import UsageError
from wheelport.importers.markers import checked_marker
from wheelport.importers.pins import FlatLock, ImportedPin, load_toml, sha256_of


def parse(data: bytes, origin: str) -> FlatLock:
    doc = load_toml(data, origin, "poetry.lock")
    meta = doc["metadata"]
    lock_version = Version(str(meta.get("lock-version", "1.0")))
    if lock_version < Version("2.1"):
        raise UsageError(
            f"{origin}: poetry.lock version {lock_version} does not record which packages each "
            "group and platform needs",
            hint="re-lock with Poetry 2 ('poetry lock'), which writes lock version 2.1",
            path=origin,
        )
    pins: list[ImportedPin] = []
    indexes: list[str] = []
    groups: set[str] = set()
    group_markers: dict[tuple[NormalizedName, str], str | None] = {}
    for pkg in doc.get("package", []):
        name = canonicalize_name(pkg["name"])
        source = pkg.get("source", {})
        kind = source.get("type", "legacy")
        direct = None if kind == "legacy" else f"{kind} {source.get('url')}"
        index = source.get("url") if direct is None else None
        if index and index not in indexes:
            indexes.append(index)
        files = {}
        for f in pkg.get("files", []):
            digest = sha256_of(f.get("hash", ""))
            if digest:
                files[f["file"]] = digest
        pkg_groups = frozenset(canonicalize_name(g) for g in pkg.get("groups", ["main"]))
        groups |= pkg_groups
        markers = pkg.get("markers")
        marker: str | None = None
        if isinstance(markers, dict):
            for g, m in markers.items():
                group_markers[(name, canonicalize_name(g))] = checked_marker(m)
            for g in pkg_groups - {canonicalize_name(g) for g in markers}:
                group_markers[(name, g)] = None
        else:
            marker = checked_marker(markers)
        pins.append(
            ImportedPin(
                name=name,
                version=Version(pkg["version"]),
                marker=marker,
                dependencies=tuple(
                    sorted(canonicalize_name(d) for d in pkg.get("dependencies", {}))
                ),
                hashes=frozenset(files.values()),
                files=files,
                groups=pkg_groups,
                index_url=index,
                direct=direct,
            )
        )
    return FlatLock(
        format="poetry.lock",
        origin=origin,
        pins=pins,
        index_urls=indexes,
        base_groups=frozenset({"main"}),
        known_extras=frozenset(doc.get("extras", {})),
        known_groups=frozenset(groups - {"main"}),
        group_markers=group_markers,
    )
