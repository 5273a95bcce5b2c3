"""Which file of a version serves a target, and what selection ran into.

:func:`select_file` is the rule (pure): the wheel with the best-ranked tag for the target, else
the sdist (unless only-binary; ``from-source`` takes the sdist only), never a yanked file unless
allowed, never one whose Requires-Python excludes the target's Python. :class:`Why` records per
project what it ran into, and :func:`verdict` says why no file of a version serves a target, for
the resolver's messages (:mod:`wheelport.explain`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag
from packaging.utils import InvalidWheelFilename
from packaging.version import Version

from wheelport.index.models import DistFile
from wheelport.targets import Target, wheel_tags


@dataclass
class Why:
    """Why files of a project were not candidates for a target (for error messages)."""

    versions: set[Version] = field(default_factory=set)
    requires_python: dict[Version, str] = field(default_factory=dict)
    yanked: set[Version] = field(default_factory=set)
    #: versions whose core metadata's Requires-Python excludes the target's (the index did not)
    metadata_python: set[Version] = field(default_factory=set)


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
            if rank is not None and (best is None or rank < best[0]):
                best = (rank, f)
        elif rule != "only-binary" and (sdist is None or f.filename.endswith(".tar.gz")):
            sdist = f
    if best is not None:
        return best[1]
    return sdist


#: why no file of a version serves a target (:func:`verdict`); ``fits``: one does
VERDICTS = ("fits", "elsewhere", "sdist", "both", "no-sdist", "python", "yanked", "empty")


def verdict(files: Sequence[DistFile], target: Target, rule: str, *, allow_yanked: bool) -> str:
    """Why no file of one version serves ``target`` under ``rule`` (one of :data:`VERDICTS`):
    ``fits`` when one does (:func:`select_file` takes it); else, of the files it has, ``yanked``
    (every one is yanked), ``python`` (the others exclude the target's Python), ``elsewhere``
    (only wheels, each for other targets), ``sdist`` (only an sdist, which only-binary
    excludes), ``both`` (wheels for other targets and an sdist only-binary excludes),
    ``no-sdist`` (from-source, and no sdist), ``empty`` (no file at all)."""
    if select_file(files, target, rule, allow_yanked=allow_yanked) is not None:
        return "fits"
    if not files:
        return "empty"
    live = [f for f in files if allow_yanked or not f.is_yanked]
    if not live:
        return "yanked"
    python = target.full_version
    usable = [f for f in live if not f.requires_python or _python_ok(f.requires_python, python)]
    if not usable:
        return "python"
    if rule == "from-source":
        return "no-sdist"  # an sdist would have been taken
    has_wheel = any(f.is_wheel for f in usable)
    has_sdist = any(not f.is_wheel for f in usable)  # only when only-binary leaves it out
    if has_sdist:
        return "both" if has_wheel else "sdist"
    return "elsewhere"


def wheel_tag_set(files: Sequence[DistFile]) -> set[Tag]:
    """The tags the wheels among ``files`` claim (a name that does not parse claims none)."""
    tags: set[Tag] = set()
    for f in files:
        if f.is_wheel:
            try:
                tags |= wheel_tags(f.filename)
            except InvalidWheelFilename:
                continue
    return tags


@functools.lru_cache(maxsize=4096)
def _python_ok(requires_python: str, python_version: str) -> bool:
    """Does ``python_version`` satisfy ``requires_python``? Memoized: thousands of files share a
    handful of distinct strings."""
    try:
        return SpecifierSet(requires_python).contains(Version(python_version), prereleases=True)
    except (InvalidSpecifier, ValueError):
        return True
