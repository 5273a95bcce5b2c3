"""Which file of a version serves a target, and what selection ran into.

:func:`select_file` is the rule (pure): the wheel with the best-ranked tag for the target, else
the sdist (unless only-binary; ``from-source`` takes the sdist only), never a yanked file unless
allowed, never one whose Requires-Python excludes the target's Python. :class:`Why` records per
project what it ran into, for the resolver's messages (:mod:`wheelport.explain`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from wheelport.index.models import DistFile
from wheelport.targets import Target


@dataclass
class Why:
    """Why files of a project were not candidates for a target (for error messages)."""

    versions: set[Version] = field(default_factory=set)
    requires_python: dict[Version, str] = field(default_factory=dict)
    no_tag: set[Version] = field(default_factory=set)
    yanked: set[Version] = field(default_factory=set)
    sdist_only: set[Version] = field(default_factory=set)


def select_file(
    files: Sequence[DistFile],
    target: Target,
    rule: str,
    *,
    allow_yanked: bool,
    why: Why | None = None,
) -> DistFile | None:
    """The file of one version that serves a target best: the wheel with the best-ranked tag,
    else the sdist (unless only-binary). ``from-source`` picks the sdist only. A pure function."""
    best: tuple[int, DistFile] | None = None
    sdist: DistFile | None = None
    python = target.full_version
    untagged = False
    for f in files:
        if f.is_yanked and not allow_yanked:
            if why is not None:
                why.yanked.add(f.version)
            continue
        if f.requires_python and not _python_ok(f.requires_python, python):
            if why is not None:
                why.requires_python[f.version] = f.requires_python
            continue
        if f.is_wheel:
            if rule == "from-source":
                continue
            rank = target.wheel_rank(f.filename)
            if rank is None:
                untagged = True
            elif best is None or rank < best[0]:
                best = (rank, f)
        elif rule != "only-binary" and (sdist is None or f.filename.endswith(".tar.gz")):
            sdist = f
    if best is not None:
        return best[1]
    if untagged and sdist is None and why is not None:
        why.no_tag.add(files[0].version)
    if (
        sdist is None
        and rule == "only-binary"
        and why is not None
        and any(not f.is_wheel for f in files)
    ):
        why.sdist_only.add(files[0].version)
    return sdist


@functools.lru_cache(maxsize=4096)
def _python_ok(requires_python: str, python_version: str) -> bool:
    """Does ``python_version`` satisfy ``requires_python``? Memoized: thousands of files share a
    handful of distinct strings."""
    try:
        return SpecifierSet(requires_python).contains(Version(python_version), prereleases=True)
    except (InvalidSpecifier, ValueError):
        return True
