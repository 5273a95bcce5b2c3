"""What the resolver runs into while it searches, kept for two uses.

- **Which project to decide next** (uv's rule, after its resolver PR 9843): when a candidate is
  rejected because its requirement on P leaves no version of P together with the requirements
  already on P, its project is *affected* and the projects that put those requirements there are
  *culprits*. A project counted often enough (:data:`THRESHOLD`) is decided before the others:
  the affected first, then the culprits. Deciding them early makes the search meet the
  conflict right after the choices that cause it, so backtracking undoes those choices instead of
  trying every version of projects that have nothing to do with it.
- **The one line when resolution gives up**: the clash met most often, each side with where it
  comes from (a requirements file line, or the chain of packages from one).

A pure record: the provider asks it, resolvelib's reporter and the provider tell it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from packaging.specifiers import SpecifierSet
from packaging.utils import NormalizedName

#: rejections before a project is decided early (uv uses 5 as well)
THRESHOLD = 5


class Requirement(Protocol):
    """What a clash needs of a requirement (``wheelport.resolve.Req`` is one)."""

    @property
    def name(self) -> NormalizedName: ...
    @property
    def specifier(self) -> SpecifierSet: ...
    @property
    def text(self) -> str: ...
    @property
    def origin(self) -> str: ...


@dataclass(frozen=True)
class Clash:
    """Requirements on one project that no version of it satisfies together."""

    project: NormalizedName
    #: the requirement that could not be added (its origin: the candidate that was rejected)
    wanted: Requirement
    #: the requirements already there that leave no version together with ``wanted``
    against: tuple[Requirement, ...]
    #: the projects that put ``against`` there (None: the user's own requirement or constraint)
    culprits: tuple[NormalizedName | None, ...]


def clashing(
    wanted: Requirement,
    present: Sequence[tuple[Requirement, NormalizedName | None]],
    has_version: Callable[[NormalizedName, SpecifierSet], bool],
) -> list[tuple[Requirement, NormalizedName | None]]:
    """The requirements of ``present`` that conflict with ``wanted``: each one that alone leaves
    no version together with it; when none does alone (only their combination does), every
    present requirement that constrains the version at all."""
    alone = [
        (req, parent)
        for req, parent in present
        if not has_version(wanted.name, wanted.specifier & req.specifier)
    ]
    if alone:
        return alone
    return [(req, parent) for req, parent in present if str(req.specifier)]


Parent = TypeVar("Parent")
Req = TypeVar("Req", bound=Requirement)


def narrowed(
    reqs: Sequence[tuple[Req, Parent]],
    has_version: Callable[[NormalizedName, SpecifierSet], bool],
) -> list[tuple[Req, Parent]]:
    """Of requirements on one project, the ones that conflict: each that leaves no version
    together with another one; when no two do (only all of them together), every one that
    constrains the version. resolvelib's causes name every requirement on the project, most of
    them (``requires packaging``) innocent."""
    keep = [
        (a, pa)
        for i, (a, pa) in enumerate(reqs)
        if any(
            i != j and not has_version(a.name, a.specifier & b.specifier)
            for j, (b, _) in enumerate(reqs)
        )
    ]
    return keep or [(r, p) for r, p in reqs if str(r.specifier)] or list(reqs)


class Conflicts:
    """Counts of rejections per project and the clashes seen (see the module docstring)."""

    def __init__(
        self,
        has_version: Callable[[NormalizedName, SpecifierSet], bool],
        via: Mapping[str, str],
    ) -> None:
        """``has_version(name, specifier)``: whether any version of the project is inside;
        ``via``: what required each package last (read when a clash is met, see :func:`where`)."""
        self.has_version = has_version
        self.via = via
        self.affected: Counter[NormalizedName] = Counter()
        self.culprit: Counter[NormalizedName] = Counter()
        self._seen: Counter[tuple[str, ...]] = Counter()
        self._last: dict[tuple[str, ...], tuple[Clash, str]] = {}

    def rejected(
        self,
        project: NormalizedName,
        wanted: Requirement,
        present: Sequence[tuple[Requirement, NormalizedName | None]],
    ) -> Clash:
        """A candidate of ``project`` was rejected: its requirement ``wanted`` leaves no version
        together with ``present`` (each with the project that required it, None for the user)."""
        against = clashing(wanted, present, self.has_version)
        culprits = tuple(dict.fromkeys(parent for _, parent in against))
        clash = Clash(wanted.name, wanted, tuple(r for r, _ in against), culprits)
        self.affected[project] += 1
        for name in culprits:
            if name is not None and name != project:
                self.culprit[name] += 1
        # versions of the same projects clashing over the same project count as one conflict
        key = (wanted.name, project, *sorted(str(c) for c in culprits))
        self._seen[key] += 1
        self._last[key] = (clash, describe(clash, self.via))
        return clash

    def rank(self, project: NormalizedName) -> int:
        """0: decide first (rejected often), 1: next (rejects others often), 2: no rank."""
        if self.affected.get(project, 0) >= THRESHOLD:  # .get: no __missing__ call per ask
            return 0
        if self.culprit.get(project, 0) >= THRESHOLD:
            return 1
        return 2

    def worst(self) -> tuple[Clash, str, int] | None:
        """The clash met most often (its last occurrence), described as when it was met, and
        how often (None: none met)."""
        if not self._seen:
            return None
        key, count = self._seen.most_common(1)[0]
        clash, text = self._last[key]
        return clash, text, count


def describe(clash: Clash, via: Mapping[str, str]) -> str:
    """One clause naming both sides and where each comes from, e.g. ``jupyterlab 4.5.11 (via
    notebook 7.5.8) requires packaging>=23.2, but you ask for packaging==23.0 (reqs.txt:22)``.
    ``via`` maps a package to the candidate that required it (see :func:`where`)."""
    wanted = f"{where(clash.wanted.origin, via)} requires {clash.wanted.text}"
    sides = []
    for req, culprit in zip(clash.against, clash.culprits, strict=True):
        if culprit is None:
            sides.append(f"you ask for {req.text} ({req.origin})")
        else:
            sides.append(f"{where(req.origin, via)} requires {req.text}")
    if not sides:
        return f"{wanted}, which no available version satisfies"
    return f"{wanted}, but {' and '.join(sides)}"


def where(candidate: str, via: Mapping[str, str], limit: int = 4) -> str:
    """A candidate (``jupyterlab 4.5.11``) with the path that brought it in, from the user's
    own requirement down (``jupyterlab 4.5.11 (via notebook 7.5.8)``); a package the user asks
    for has none. ``via`` maps a package (a candidate's key) to the candidate that required it
    last; the user's own requirements are not in it."""
    path: list[str] = []
    name = candidate.split(" ", 1)[0]
    while name in via and len(path) < limit:
        parent = via[name]
        if parent in path:
            break
        path.append(parent)
        name = parent.split(" ", 1)[0]
    return f"{candidate} (via {' > '.join(reversed(path))})" if path else candidate
