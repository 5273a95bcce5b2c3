"""pdm.lock (read with ``tomllib``).

With the ``inherit_metadata`` strategy (PDM's default since 2.11) each package records the
``groups`` that need it and its inherited ``marker`` (every path from the project), which is
what ``pdm install`` filters by: ``default`` always, ``--group NAME`` and ``--extra NAME`` add
groups (in PDM, optional-dependencies are groups too), ``--all-groups`` adds every locked group
and ``--only-group NAME`` takes that group without ``default``; ``[metadata] groups`` lists what
was locked. Locks without it are refused (re-lock with ``pdm lock --strategy inherit_metadata``).
A package from git, a path or a URL is refused only when a selected group holds it.
"""

from __future__ import annotations

from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from wheelport.errors import UsageError
from wheelport.importers.markers import checked_marker
from wheelport.importers.pins import FlatLock, ImportedPin, load_toml, sha256_of

DIRECT_KEYS = ("path", "url", "git", "hg", "svn", "bzr")


def parse(data: bytes, origin: str) -> FlatLock:
    doc = load_toml(data, origin, "pdm.lock")
    meta = doc["metadata"]
    if "inherit_metadata" not in meta.get("strategy", []):
        raise UsageError(
            f"{origin}: pdm.lock was written without the inherit_metadata strategy, so it does "
            "not record which packages each group and platform needs",
            hint="re-lock with 'pdm lock --strategy inherit_metadata' (PDM ≥ 2.11)",
            path=origin,
        )
    pins: list[ImportedPin] = []
    for pkg in doc.get("package", []):
        name = canonicalize_name(pkg["name"])
        direct = next((f"{k} {pkg[k]}" for k in DIRECT_KEYS if k in pkg), None)
        files = {}
        for f in pkg.get("files", []):
            digest = sha256_of(f.get("hash", ""))
            if digest:
                files[f.get("file") or f.get("url", "").rsplit("/", 1)[-1]] = digest
        pins.append(
            ImportedPin(
                name=name,
                # a git/path/URL entry may name no version; an index entry always does
                version=Version(pkg["version"]) if direct is None or "version" in pkg else None,
                marker=checked_marker(pkg.get("marker")),
                extras=frozenset(canonicalize_name(e) for e in pkg.get("extras", [])),
                dependencies=tuple(
                    sorted(
                        {
                            canonicalize_name(Requirement(d).name)
                            for d in pkg.get("dependencies", [])
                        }
                    )
                ),
                hashes=frozenset(files.values()),
                files=files,
                groups=frozenset(canonicalize_name(g) for g in pkg.get("groups", ["default"])),
                direct=direct,
            )
        )
    locked = frozenset(canonicalize_name(g) for g in meta.get("groups", ["default"])) - {"default"}
    return FlatLock(
        format="pdm.lock",
        origin=origin,
        pins=pins,
        index_urls=_sources(Path(origin).parent / "pyproject.toml"),
        base_groups=frozenset({"default"}),
        known_extras=locked,
        known_groups=locked,
        extras_are_groups=True,
    )


def _sources(pyproject: Path) -> list[str]:
    """The indexes of ``[[tool.pdm.source]]`` in the project beside the lock (pdm.lock does not
    record them)."""
    try:
        doc = load_toml(pyproject.read_bytes(), str(pyproject), "pyproject.toml")
    except (OSError, UsageError):
        return []
    sources = doc.get("tool", {}).get("pdm", {}).get("source", [])
    return [
        s["url"]
        for s in sources
        if isinstance(s, dict) and s.get("type", "index") == "index" and "url" in s
    ]
