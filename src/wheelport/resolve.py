"""Multi-target resolution with resolvelib.

One resolution per target. The provider evaluates markers and Requires-Python against the
*target* (never the host), selects each version's best file with the target's tag list,
and asks the index client for metadata — prefetching project pages and metadata on the
client's pool so many are fetched concurrently. Targets resolve in parallel threads that
share one client (and so one cache of pages and metadata).

Rules, as pip and uv apply them:
- newest satisfying version first; ``prefer_binary`` puts versions with a wheel for the
  target before newer sdist-only ones; ``only-binary``/``from-source`` per project or ``:all:``;
- prereleases only with ``pre`` or when a specifier names one, or when nothing else satisfies;
- yanked files only for an ``==``/``===`` pin (PEP 592);
- a file whose Requires-Python excludes the target's Python is not a candidate.

How it searches (hard sets, issue 16): a version whose requirements leave nothing the user's own
requirements and constraints allow is never offered; the next project to decide is chosen as uv
chooses (exact pins, then projects in conflict, see :mod:`wheelport.conflicts`); the metadata of
the versions it will try is read ahead; and it gives up after ``Policy.time_limit`` seconds
with one line naming the conflict it met most.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import resolvelib
import resolvelib.resolvers.resolution as _resolution
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from wheelport.config import Config, SourcedRequirement
from wheelport.conflicts import Conflicts
from wheelport.errors import WheelportError
from wheelport.explain import explain_impossible, gave_up
from wheelport.index.client import IndexClient
from wheelport.index.models import DistFile
from wheelport.index.parse import VersionFiles
from wheelport.index.sources import CoreMetadata
from wheelport.selection import Why, select_file
from wheelport.targets import Target

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    name: NormalizedName
    version: Version
    extras: frozenset[NormalizedName]
    file: DistFile

    @property
    def key(self) -> str:
        return _key(self.name, self.extras)

    def __str__(self) -> str:
        ex = f"[{','.join(sorted(self.extras))}]" if self.extras else ""
        return f"{self.name}{ex} {self.version}"


@dataclass(frozen=True)
class Req:
    name: NormalizedName
    extras: frozenset[NormalizedName]
    specifier: SpecifierSet
    #: the marker written on the edge (None: unconditional); "extra" markers are dropped
    marker: str | None
    #: the text the user or a package wrote, for messages
    text: str
    origin: str

    @property
    def key(self) -> str:
        return _key(self.name, self.extras)

    def __str__(self) -> str:
        return self.text


#: how many versions after a ruled-out one have their metadata read ahead
_LOOKAHEAD = 8

#: seconds one target's resolution may take before it gives up (``--resolve-timeout``)
DEFAULT_TIME_LIMIT = 300.0

#: resolvelib counts rounds; the bound is time (its optimistic backjumping gives up after a
#: tenth of the rounds left, so the number stays finite)
_MAX_ROUNDS = 1_000_000

#: identifier of the target's interpreter, which a candidate's metadata Requires-Python constrains
PYTHON = "<python>"


def _spec_bounds(spec: SpecifierSet) -> tuple[bool, bool]:
    """(an exact pin, an upper bound) among a requirement's specifiers."""
    pinned = bounded = False
    for s in spec:
        wild = "*" in s.version
        pinned = pinned or (s.operator in ("==", "===") and not wild)
        bounded = bounded or s.operator in ("<", "<=", "~=") or (s.operator == "==" and wild)
    return pinned, bounded


def _key(name: str, extras: Iterable[str]) -> str:
    ex = sorted(extras)
    return f"{name}[{','.join(ex)}]" if ex else name


_PYTHON_FILE = DistFile(
    filename="python",
    url="",
    project=NormalizedName(PYTHON),
    version=Version("0"),
    is_wheel=False,
    sha256=None,
    requires_python=None,
    yanked=None,
    core_metadata=False,
    size=None,
    upload_time=None,
    index_url="",
)


@dataclass(frozen=True)
class Pin:
    """One resolved package of a target."""

    name: NormalizedName
    version: Version
    file: DistFile
    extras: frozenset[NormalizedName]
    dependencies: tuple[NormalizedName, ...]
    #: None when some path brings it in unconditionally, else the markers of the edges
    markers: tuple[str, ...] | None
    requires_python: str | None


@dataclass(frozen=True)
class Resolution:
    target: Target
    pins: Mapping[NormalizedName, Pin]


class Reporter(Protocol):
    """Observes resolution progress (rich progress in the CLI; nothing in tests)."""

    def target_started(self, target: Target) -> None: ...
    def first_choice(self, target: Target, file: DistFile) -> None: ...
    def pinned(self, target: Target, candidate: Candidate) -> None: ...
    def metadata_build(self, target: Target, filename: str) -> None: ...
    def target_done(self, target: Target, resolution: Resolution) -> None: ...
    def target_failed(self, target: Target, error: WheelportError) -> None: ...


class NullReporter:
    """A :class:`Reporter` that shows nothing."""

    def target_started(self, target: Target) -> None:
        pass

    def first_choice(self, target: Target, file: DistFile) -> None:
        """The file of the version a user's requirement will try first, known as its page is
        in (before anything is pinned): the pin unless the search backtracks or another
        requirement narrows it. Called from the index client's threads."""

    def pinned(self, target: Target, candidate: Candidate) -> None:
        pass

    def metadata_build(self, target: Target, filename: str) -> None:
        pass

    def target_done(self, target: Target, resolution: Resolution) -> None:
        pass

    def target_failed(self, target: Target, error: WheelportError) -> None:
        pass


class _OutOfTime(Exception):
    """The target's time limit passed (raised between two rounds of the resolver)."""


class _ResolverListener(resolvelib.BaseReporter[Req, Candidate, str]):
    """resolvelib's progress callbacks for one target: passed on to a :class:`Reporter`, and
    each rejected candidate written into the conflict record the provider ranks projects by.
    It decides nothing; it keeps the clock: :class:`_OutOfTime` once ``deadline`` passed."""

    def __init__(
        self,
        target: Target,
        reporter: Reporter,
        conflicts: Conflicts,
        deadline: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target = target
        self.reporter = reporter
        self.conflicts = conflicts
        self.deadline = deadline
        self.clock = clock

    def starting(self) -> None:
        self.reporter.target_started(self.target)

    def starting_round(self, index: int) -> None:
        if self.deadline is not None and self.clock() > self.deadline:
            raise _OutOfTime(index)

    def pinning(self, candidate: Candidate) -> None:
        if candidate.key != PYTHON:
            self.reporter.pinned(self.target, candidate)

    def rejecting_candidate(self, criterion: Any, candidate: Candidate) -> None:
        infos = list(criterion.information)
        own = [i for i in infos if i.parent is candidate] or infos[-1:]
        if not own:
            return
        wanted = own[-1]
        present = [
            (i.requirement, None if i.parent is None else i.parent.name)
            for i in infos
            if i is not wanted
        ]
        self.conflicts.rejected(candidate.name, wanted.requirement, present)


@dataclass(frozen=True, kw_only=True)
class Policy:
    pre: bool = False
    prefer_binary: bool = False
    only_binary: frozenset[str] = frozenset()
    from_source: frozenset[str] = frozenset()
    #: seconds one target may take before the resolver gives up naming the conflict it kept
    #: meeting (None: no limit)
    time_limit: float | None = DEFAULT_TIME_LIMIT

    @classmethod
    def from_config(cls, config: Config) -> Policy:
        limit = DEFAULT_TIME_LIMIT if config.resolve_timeout is None else config.resolve_timeout
        return cls(
            pre=config.pre,
            prefer_binary=config.prefer_binary,
            only_binary=config.only_binary,
            from_source=config.from_source,
            time_limit=limit if limit else None,
        )

    def rule(self, name: str) -> str:
        if name in self.from_source or (
            ":all:" in self.from_source and name not in self.only_binary
        ):
            return "from-source"
        if name in self.only_binary or ":all:" in self.only_binary:
            return "only-binary"
        return "any"


#: criteria a resolution's memos (its pin checks, the provider's preferences) keep before they
#: start over: each entry keeps its criterion alive, so no id is reused (a 15-target
#: workload's targets make ~310 each; a long backtracking search makes many more)
_CRITERIA_KEPT = 4096
#: what a project's requirements say for the preference (:meth:`Provider._what_is_asked`)
_Asked = tuple["NormalizedName | None", bool, bool, bool]


class Provider(resolvelib.AbstractProvider[Req, Candidate, str]):
    """Answers resolvelib's questions for one target."""

    def __init__(
        self,
        client: IndexClient,
        target: Target,
        policy: Policy,
        constraints: Mapping[NormalizedName, Sequence[Req]],
        on_metadata_build: Callable[[str], None] = lambda filename: None,
        *,
        roots: Sequence[Req] = (),
        on_first_choice: Callable[[DistFile], None] = lambda file: None,
    ) -> None:
        self.client = client
        self.target = target
        self.policy = policy
        self.constraints = constraints
        #: per project, what the user's own requirements and constraints demand of every answer
        self.fixed: dict[NormalizedName, list[Req]] = defaultdict(list)
        for r in roots:
            self.fixed[r.name].append(r)
        for name, reqs in constraints.items():
            self.fixed[name].extend(reqs)
        self._fixed_spec = {
            name: functools.reduce(lambda a, b: a & b, (r.specifier for r in reqs), SpecifierSet())
            for name, reqs in self.fixed.items()
        }
        self._user_exact = {
            name
            for name, reqs in self.fixed.items()
            if any(
                s.operator in ("==", "===") and "*" not in s.version
                for r in reqs
                for s in r.specifier
            )
        }
        #: candidates that can be in no answer, and the requirement that rules each out
        self.doomed: dict[tuple[str, Version], Req] = {}
        self._requirements_cache: dict[tuple[str, Version], list[Req]] = {}
        #: (project, specifier) read ahead -> whether only ahead of the resolver
        self._prefetched: dict[tuple[NormalizedName, str], bool] = {}
        #: (project, version) -> the file of it read ahead for this target (None: none serves)
        self._first_file: dict[tuple[NormalizedName, Version], DistFile | None] = {}
        #: the candidate that required each identifier last (not the user's own identifiers)
        self.via: dict[str, str] = {}
        self._roots = {id(r) for r in roots}
        #: what the search ran into: ranks projects, and names the conflict when it gives up
        self.conflicts = Conflicts(self.has_version, self.via)
        #: told the filename of each sdist whose metadata is built (PEP 517)
        self.on_metadata_build = on_metadata_build
        #: told the file a user's requirement tries first (see :meth:`Reporter.first_choice`)
        self.on_first_choice = on_first_choice
        self.env = dict(target.markers)
        self.why: dict[NormalizedName, Why] = defaultdict(Why)
        self.unknown: set[NormalizedName] = set()
        #: shortest known distance of an identifier from the roots (a preference, not the graph)
        self.depth: dict[str, int] = {}
        self._files: dict[NormalizedName, VersionFiles] = {}
        self._select_cache: dict[tuple[NormalizedName, Version, bool], DistFile | None] = {}
        self._satisfied: dict[tuple[int, int], tuple[SpecifierSet, Version, bool]] = {}
        #: id of a specifier -> (it, kept alive so the id is not reused; pinned; bounded)
        self._bounds: dict[int, tuple[SpecifierSet, bool, bool]] = {}
        #: id of a resolvelib criterion -> (it, kept alive; what its requirements say for the
        #: preference: see :meth:`_what_is_asked`)
        self._asked: dict[int, tuple[object, _Asked]] = {}
        self._python = Candidate(
            NormalizedName(PYTHON), Version(target.full_version), frozenset(), _PYTHON_FILE
        )

    # -- resolvelib API ------------------------------------------------------------------------
    def identify(self, requirement_or_candidate: Req | Candidate) -> str:
        return requirement_or_candidate.key

    def get_preference(
        self,
        identifier: str,
        resolutions: Mapping[str, Candidate],
        candidates: Mapping[str, Iterator[Candidate]],
        information: Mapping[str, Iterator[Any]],
        backtrack_causes: Sequence[Any],
    ) -> Any:
        return self._preference(identifier, information[identifier])

    def narrow_requirement_selection(
        self,
        identifiers: Iterable[str],
        resolutions: Mapping[str, Candidate],
        candidates: Mapping[str, Iterator[Candidate]],
        information: Mapping[str, Iterator[Any]],
        backtrack_causes: Sequence[Any],
    ) -> Iterable[str]:
        """The one project to decide next, by :meth:`_preference`, chosen here in one pass:
        resolvelib then asks for no preference (its own ask builds two mappings per undecided
        project per round, most of the search's time on a tree of hundreds of projects)."""
        names = list(identifiers)
        if len(names) < 2:
            return names
        # resolvelib's criteria by name (the mapping its view of their requirements reads, in
        # 1.1 and 1.2): a criterion is never changed once made, so each is read once
        criteria = getattr(information, "_mapping", None)
        if not isinstance(criteria, dict):
            return [min(names, key=lambda name: self._preference(name, information[name]))]
        remembered = self._asked

        def preference(name: str) -> tuple[Any, ...]:
            criterion = criteria.get(name)
            if criterion is None:
                return self._preference(name, information[name])
            hit = remembered.get(id(criterion))
            if hit is None or hit[0] is not criterion:
                if len(remembered) >= _CRITERIA_KEPT:  # each keeps a criterion alive
                    remembered.clear()
                hit = remembered[id(criterion)] = (
                    criterion,
                    self._what_is_asked(information[name]),
                )
            return self._ranked(name, hit[1])

        return [min(names, key=preference)]

    def _preference(self, identifier: str, infos: Iterable[Any]) -> tuple[Any, ...]:
        """Which undecided project to decide next, as uv orders them: the target's Python;
        exact pins (one version to try); projects the search keeps rejecting, then those that
        keep rejecting them (:mod:`wheelport.conflicts`); the user's own requirements;
        ranges with an upper bound before open ones; nearer the roots first. Unique per
        identifier (it comes last), so the choice does not depend on the order asked in."""
        return self._ranked(identifier, self._what_is_asked(infos))

    def _ranked(self, identifier: str, asked: _Asked) -> tuple[Any, ...]:
        """The preference of a project, from what its requirements ask (:meth:`_what_is_asked`)."""
        name, pinned, bounded, direct = asked
        return (
            identifier != PYTHON,
            not pinned,
            self.conflicts.rank(name or NormalizedName(identifier)),
            not direct,
            not bounded,
            self.depth.get(identifier, 99),
            identifier,
        )

    def _what_is_asked(self, infos: Iterable[Any]) -> _Asked:
        """(the project's name; whether a requirement pins one version; whether one bounds it
        from above; whether one is the user's own) of a project's requirements."""
        pinned = bounded = direct = False
        name: NormalizedName | None = None
        for info in infos:
            req = info.requirement
            if name is None:
                name = req.name
            spec = req.specifier
            flags = self._bounds.get(id(spec))
            if flags is None:
                flags = self._bounds[id(spec)] = (spec, *_spec_bounds(spec))
            pinned = pinned or flags[1]
            bounded = bounded or flags[2]
            direct = direct or info.parent is None
        return name, pinned, bounded, direct

    def find_matches(
        self,
        identifier: str,
        requirements: Mapping[str, Iterator[Req]],
        incompatibilities: Mapping[str, Iterator[Candidate]],
    ) -> Callable[[], Iterator[Candidate]] | list[Candidate]:
        reqs = list(requirements[identifier])
        if not reqs:
            return []
        if identifier == PYTHON:
            py = Version(self.target.full_version)
            if all(r.specifier.contains(py, prereleases=True) for r in reqs):
                return [self._python]
            return []
        if any(id(r) in self._roots for r in reqs):
            self.via.pop(identifier, None)
        else:
            self.via[identifier] = reqs[-1].origin  # the requirement just added comes last
        name = reqs[0].name
        extras = reqs[0].extras
        spec = SpecifierSet()
        for r in reqs:
            spec &= r.specifier
        for c in self.constraints.get(name, ()):
            spec &= c.specifier
        bad = {c.version for c in incompatibilities[identifier]}
        if self._by_version(name) is None:
            return []
        # lazy, as pip's provider: resolvelib mostly takes the first candidate, and choosing a
        # file for each of a project's hundreds of versions up front is most of the CPU time
        return functools.partial(self._candidates, name, extras, spec, frozenset(bad))

    def _candidates(
        self,
        name: NormalizedName,
        extras: frozenset[NormalizedName],
        spec: SpecifierSet,
        bad: frozenset[Version],
    ) -> Iterator[Candidate]:
        """Candidates newest first (wheels before sdists with ``prefer_binary``); prereleases
        only when allowed, or when no final release is usable (as ``SpecifierSet.filter``)."""
        exact = {
            Version(s.version)
            for s in spec
            if s.operator in ("==", "===") and "*" not in s.version and _is_version(s.version)
        }
        allow_pre = True if self.policy.pre else spec.prereleases
        passes = (True, False) if self.policy.prefer_binary else (None,)
        held: list[Candidate] = []
        first = True
        for wheels_only in passes:
            versions = self._matching(name, spec)
            for i, version in enumerate(versions):
                if version in bad:
                    continue
                # PEP 592: a yanked file is fine only for an exact pin
                chosen = self._select(name, version, allow_yanked=version in exact)
                if chosen is None or (wheels_only is not None and chosen.is_wheel != wheels_only):
                    continue
                # the version as the file spells it: a page can group equal versions under
                # another spelling (cffi's "1.0.2-2" sdist reads as version 2, which == 2.0.0)
                cand = Candidate(name, chosen.version, extras, chosen)
                if version.is_prerelease and not allow_pre:
                    if allow_pre is None:
                        held.append(cand)
                    continue
                # a final release that satisfies the specifiers keeps prereleases out, even one
                # that conflicts elsewhere (the rule is the specifiers', as pip's and uv's)
                first = False
                if self._is_doomed(cand):
                    # the next versions likely are too: start reading their metadata at once
                    self._prefetch(name, versions[i + 1 : i + 1 + _LOOKAHEAD], exact)
                    continue
                yield cand
        if first:
            yield from (c for c in held if not self._is_doomed(c))

    def _by_version(self, name: NormalizedName) -> VersionFiles | None:
        cached = self._files.get(name)
        if cached is None:
            cached = self.client.versions_of(name)
            if not cached:
                self.unknown.add(name)
                return None
            self._files[name] = cached
            self.why[name].versions.update(cached)
        return cached

    def files_of(self, name: NormalizedName) -> Mapping[Version, list[DistFile]]:
        """The project's files by version (empty when no index has it)."""
        return self._by_version(name) or {}

    def left_out(self, name: NormalizedName) -> str:
        """What ``--exclude-newer`` left out of the project's files, as a clause ("" if none)."""
        count = self.client.left_out.get(name, 0)
        if not count:
            return ""
        return (
            f"{count} file(s) uploaded at or after --exclude-newer {self.client.exclude_newer} "
            "(or with no upload time on the index) are left out"
        )

    def _select(
        self, name: NormalizedName, version: Version, *, allow_yanked: bool
    ) -> DistFile | None:
        """The file of one version serving this target (memoized)."""
        key = (name, version, allow_yanked)
        if key not in self._select_cache:
            by_version: Mapping[Version, list[DistFile]] = self._by_version(name) or {}
            self._select_cache[key] = select_file(
                by_version.get(version, []), self.target, self.policy.rule(name),
                allow_yanked=allow_yanked, why=self.why[name],
            )  # fmt: skip
        return self._select_cache[key]

    def _matching(self, name: NormalizedName, spec: SpecifierSet) -> list[Version]:
        """Versions of ``name`` (newest first) inside ``spec``, prereleases included (memoized on
        the project's page, shared by every target: resolvelib asks again and again with the
        same specifiers)."""
        by_version = self._by_version(name)
        return by_version.inside(spec) if by_version is not None else []

    def is_satisfied_by(self, requirement: Req, candidate: Candidate) -> bool:
        # resolvelib re-checks every pin against every criterion each round: memoize by the
        # specifier and version objects (both kept alive in the entry, so no id is reused; a
        # version's candidates share its object, so a search that backtracks adds no entries)
        spec, version = requirement.specifier, candidate.version
        key = (id(spec), id(version))
        hit = self._satisfied.get(key)
        if hit is None:
            ok = spec.contains(version, prereleases=True)
            hit = self._satisfied[key] = (spec, version, ok)
        return hit[2]

    def get_dependencies(self, candidate: Candidate) -> list[Req]:
        if candidate.key == PYTHON:
            return []
        out = self._requirements(candidate)
        parent_depth = self.depth.get(candidate.key, 0)
        for req in out:
            if req.name == PYTHON or req.name == candidate.name:
                continue
            self.depth.setdefault(req.key, parent_depth + 1)
            self.prefetch_first(req)
        return out

    def prefetch_first(self, req: Req, *, ahead: bool = False) -> None:
        """Start loading ``req``'s project page and then the metadata of the version it will
        try first (uv's prefetch): judging a candidate reads its metadata, so the metadata of
        many requirements is read at once instead of one after another. Once that metadata is
        in, the same starts for each requirement of that version that applies to the target
        (``ahead``): the pages of a dependency tree load as fast as the index answers, not as
        the resolver reaches each project (which waits for every project before it). Ahead of
        the resolver, the metadata of a version whose first choice is an sdist is not read (it
        may mean a build)."""
        key = (req.name, str(req.specifier))
        seen = self._prefetched.get(key)
        if seen is None or (seen and not ahead):  # the resolver's own ask reads an sdist's too
            self._prefetched[key] = ahead
            self.client.prefetch_project(req.name).add_done_callback(
                functools.partial(self._prefetch_first, req, ahead)
            )

    def _prefetch(
        self, name: NormalizedName, versions: Sequence[Version], exact: Collection[Version]
    ) -> None:
        """Start reading the metadata of ``versions`` of ``name`` that have a wheel (reading an
        sdist's may mean a build: that waits until the resolver asks for that version)."""
        by_version: Mapping[Version, list[DistFile]] = self._by_version(name) or {}
        for v in versions:
            if not any(f.is_wheel for f in by_version.get(v, ())):
                continue
            chosen = self._select(name, v, allow_yanked=v in exact)
            if chosen is not None:
                self.client.prefetch_metadata(chosen, on_build=self.on_metadata_build)

    def _prefetch_first(self, req: Req, ahead: bool, page: Future[VersionFiles]) -> None:
        """Start reading the metadata of the version ``req`` will try first (uv's prefetch),
        as soon as its project page is in, and then its requirements' pages. Runs on the
        client's pool: pure functions only."""
        if page.cancelled() or page.exception() is not None:
            return
        by_version = page.result()
        spec = req.specifier & self._fixed_spec.get(req.name, SpecifierSet())
        rule = self.policy.rule(req.name)
        for version in by_version.newest_first():
            if version.is_prerelease and not self.policy.pre:
                continue
            if not spec.contains(version, prereleases=True):
                continue
            key = (req.name, version)
            if key in self._first_file:  # another specifier of the project came here first
                chosen = self._first_file[key]
            else:
                chosen = select_file(by_version[version], self.target, rule, allow_yanked=False)
                self._first_file[key] = chosen
            if chosen is None:
                continue
            if chosen.is_wheel or not ahead:
                try:
                    meta = self.client.prefetch_metadata(chosen, on_build=self.on_metadata_build)
                except RuntimeError:  # the client was closed (the run ended before this page)
                    return
                meta.add_done_callback(functools.partial(self._prefetch_requirements, req))
                if id(req) in self._roots:
                    self.on_first_choice(chosen)
            return

    def _prefetch_requirements(self, req: Req, meta: Future[CoreMetadata]) -> None:
        """:meth:`prefetch_first` each requirement a first choice's metadata gives that applies
        to the target (for ``req``'s extras too). Runs on the client's pool."""
        if meta.cancelled() or meta.exception() is not None:
            return
        extras = ["", *sorted(req.extras)]
        for r in meta.result().requires_dist:
            try:
                if canonicalize_name(r.name) == req.name:
                    continue
                if r.marker is not None and not any(
                    r.marker.evaluate({**self.env, "extra": e}) for e in extras
                ):
                    continue
                self.prefetch_first(make_req(r, origin=req.text), ahead=True)
            except Exception:  # only a read ahead (the client closed, a marker this target
                continue  # cannot judge): the resolver reads what it needs, and says why

    def _is_doomed(self, cand: Candidate) -> bool:
        """Whether ``cand`` can be in no answer: a requirement of it leaves no version of a
        project inside what the user's own requirements and constraints allow (or excludes
        the target's Python). Sound, never a guess: such a candidate is not offered, so the
        conflict is found at its parent and no backtracking is spent on it. A candidate whose
        metadata cannot be read now is offered (the resolver then reports the failure), and so
        is a version the user pins exactly: it has no alternative to prune, and judging it
        early would only wait for its metadata before anything else can start."""
        key = (cand.key, cand.version)
        if key in self.doomed:
            return True
        if cand.name in self._user_exact:
            return False
        try:
            reqs = self._requirements(cand)
        except WheelportError:
            return False
        python = Version(self.target.full_version)
        for req in reqs:
            if req.name == PYTHON:
                if not req.specifier.contains(python, prereleases=True):
                    self.doomed[key] = req
                    return True
                continue
            fixed = self.fixed.get(req.name)
            if fixed and not self.has_version(req.name, req.specifier & self._fixed_spec[req.name]):
                self.doomed[key] = req
                self.conflicts.rejected(cand.name, req, [(f, None) for f in fixed])
                return True
        return False

    def ruled_out(self, name: NormalizedName, reqs: Sequence[Req]) -> list[str]:
        """Why each version of ``name`` that ``reqs`` allow was never offered, newest first:
        ``"jupyterlab 4.5.11 requires packaging>=23.2, but you ask for packaging==23.0
        (reqs.txt:22)"`` (empty when some allowed version was not ruled out)."""
        spec = functools.reduce(lambda a, b: a & b, (r.specifier for r in reqs), SpecifierSet())
        pre = self.policy.pre or bool(spec.prereleases)
        why = {v: r for (key, v), r in self.doomed.items() if key.split("[")[0] == name}
        found = []
        for version in self._matching(name, spec):
            if (version.is_prerelease and not pre) or not self._select(
                name, version, allow_yanked=False
            ):
                continue
            req = why.get(version)
            if req is None:
                return []
            if req.name == PYTHON:
                but = f"not Python {self.target.full_version}"
            else:
                but = "but you ask for " + " and ".join(
                    f"{f.text} ({f.origin})" for f in self.fixed[req.name]
                )
            found.append(f"{name} {version} requires {req.text}, {but}")
        return found

    def has_version(self, name: NormalizedName, spec: SpecifierSet) -> bool:
        """Whether the index has any version of ``name`` inside ``spec`` (a file for the
        target or not: a necessary condition, so a "no" is certain)."""
        return bool(self._matching(name, spec))

    def _requirements(self, candidate: Candidate) -> list[Req]:
        """The requirements of a candidate that apply to the target (memoized; no side
        effects beyond reading its metadata)."""
        key = (candidate.key, candidate.version)
        cached = self._requirements_cache.get(key)
        if cached is not None:
            return cached
        meta = self.client.metadata(candidate.file, on_build=self.on_metadata_build)
        out: list[Req] = []
        if meta.requires_python and not candidate.file.requires_python:
            # the index did not say; the metadata does (pip checks it too)
            try:
                spec = SpecifierSet(meta.requires_python)
            except InvalidSpecifier:
                spec = None
            if spec is not None:
                text = f"Python{spec}"
                out.append(
                    Req(NormalizedName(PYTHON), frozenset(), spec, None, text, str(candidate))
                )
                self.why[candidate.name].requires_python[candidate.version] = str(spec)
                self.why[candidate.name].metadata_python.add(candidate.version)
        if candidate.extras:
            # an extras candidate depends on its own base at the same version
            out.append(
                Req(
                    candidate.name,
                    frozenset(),
                    SpecifierSet(f"=={candidate.version}"),
                    None,
                    f"{candidate.name}=={candidate.version}",
                    str(candidate),
                )
            )
        extras_env: list[str] = sorted(candidate.extras) if candidate.extras else [""]
        for r in meta.requires_dist:
            if r.marker is not None:
                if candidate.extras:
                    # deps for the extras only (the base candidate brings the rest)
                    hit = any(
                        r.marker.evaluate({**self.env, "extra": e}) for e in extras_env
                    ) and not (r.marker.evaluate({**self.env, "extra": ""}))
                else:
                    hit = r.marker.evaluate({**self.env, "extra": ""})
                if not hit:
                    continue
            elif candidate.extras:
                continue
            out.append(make_req(r, origin=str(candidate)))
        self._requirements_cache[key] = out
        return out


def _is_version(text: str) -> bool:
    try:
        Version(text)
    except ValueError:
        return False
    return True


#: one token of a marker's string form (PEP 508 ``marker`` grammar)
_MARKER_TOKEN = re.compile(
    r"""\s*(?:
        (?P<paren>[()])
      | (?P<string>'[^']*'|"[^"]*")
      | (?P<op>===|==|!=|<=|>=|~=|<|>|not\s+in\b|in\b)
      | (?P<bool>and\b|or\b)
      | (?P<name>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.VERBOSE,
)


class _WithoutExtra:
    """Reads a marker's string form (``or`` binds looser than ``and``; parentheses group) and
    writes it back without the comparisons on ``extra``: a conjunction loses that factor, a
    disjunction the term that has nothing left, a group that has nothing left disappears."""

    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos, text = 0, text.strip()
        while pos < len(text):
            m = _MARKER_TOKEN.match(text, pos)
            if m is None or m.lastgroup is None:
                raise ValueError(f"unexpected {text[pos:]!r} in marker")
            kind, value = m.lastgroup, m.group(m.lastgroup)
            self.tokens.append((kind, " ".join(value.split()) if kind == "op" else value))
            pos = m.end()
        self.pos = 0

    def marker(self) -> str | None:
        """The whole marker without its ``extra`` comparisons (None: nothing is left)."""
        text = self._or()
        if self.pos != len(self.tokens):
            raise ValueError(f"unexpected {self.tokens[self.pos][1]!r} in marker")
        return text

    def _take(self, kind: str, value: str | None = None) -> str | None:
        if self.pos < len(self.tokens):
            k, v = self.tokens[self.pos]
            if k == kind and value in (None, v):
                self.pos += 1
                return v
        return None

    def _or(self) -> str | None:
        terms = [self._and()]
        while self._take("bool", "or"):
            terms.append(self._and())
        return " or ".join(t for t in terms if t) or None

    def _and(self) -> str | None:
        factors = [self._atom()]
        while self._take("bool", "and"):
            factors.append(self._atom())
        return " and ".join(f for f in factors if f) or None

    def _atom(self) -> str | None:
        if self._take("paren", "("):
            inner = self._or()
            if not self._take("paren", ")"):
                raise ValueError("unbalanced parentheses in marker")
            return f"({inner})" if inner else None
        left, is_extra = self._value()
        op = self._take("op")
        if op is None:
            raise ValueError("a marker comparison lacks its operator")
        right, right_extra = self._value()
        return None if is_extra or right_extra else f"{left} {op} {right}"

    def _value(self) -> tuple[str, bool]:
        """A comparison's side, and whether it is the variable ``extra``."""
        string = self._take("string")
        if string is not None:
            return string, False
        name = self._take("name")
        if name is None:
            raise ValueError("a marker comparison lacks a value")
        return name, name == "extra"


def strip_extra(marker: Marker | None) -> str | None:
    """The marker without its ``extra == …`` clauses (None when nothing else is left).

    A lock serves one target and lists the extras' packages already; what remains of the
    marker (``sys_platform == "win32"``) is what brought the package in.
    """
    if marker is None:
        return None
    text = str(marker)
    if "extra" not in text:
        return text
    try:
        rest = _WithoutExtra(text).marker()
        return None if rest is None else str(Marker(rest))
    except ValueError:  # packaging's InvalidMarker is one too
        return None


def make_req(r: Requirement, origin: str) -> Req:
    marker = strip_extra(r.marker)
    return Req(
        canonicalize_name(r.name),
        frozenset(canonicalize_name(e) for e in r.extras),
        r.specifier,
        marker,
        str(r),
        origin,
    )


def _applies(req: Requirement, env: Mapping[str, str]) -> bool:
    return req.marker is None or req.marker.evaluate({**env, "extra": ""})


_Criterion = resolvelib.resolvers.Criterion[Req, Candidate]


class _Resolution(_resolution.Resolution[Req, Candidate, str]):
    """resolvelib's search, with each round's check of every pin against its criterion
    memoized. Each round asks, for every project, whether its pin still satisfies every
    requirement on it (twice: before and after pinning), through a generator and a provider
    call per requirement: a tenth of a 15-target resolution's time. A criterion is never changed
    once made (resolvelib makes a new one when a requirement is added or removed) and a pin is
    a candidate object, so the answer for the same two objects is the same."""

    def __init__(
        self,
        provider: resolvelib.AbstractProvider[Req, Candidate, str],
        reporter: resolvelib.BaseReporter[Req, Candidate, str],
    ) -> None:
        super().__init__(provider, reporter)
        #: id(criterion) -> (criterion, pin, answer): the objects are kept, so no id is reused
        self._pin_checked: dict[int, tuple[_Criterion, Candidate, bool]] = {}

    def _is_current_pin_satisfying(self, name: str, criterion: _Criterion) -> bool:
        pin = self.state.mapping.get(name)
        if pin is None:
            return False
        hit = self._pin_checked.get(id(criterion))
        if hit is not None and hit[0] is criterion and hit[1] is pin:
            return hit[2]
        ok: bool = super()._is_current_pin_satisfying(name, criterion)
        if len(self._pin_checked) >= _CRITERIA_KEPT:  # a long search makes many criteria
            self._pin_checked.clear()
        self._pin_checked[id(criterion)] = (criterion, pin, ok)
        return ok


class _MemoResolver(resolvelib.Resolver[Req, Candidate, str]):
    """resolvelib's resolver running :class:`_Resolution` (its ``resolve``, with that class)."""

    def resolve(  # type: ignore[override]
        self, requirements: Iterable[Req], max_rounds: int = 100
    ) -> resolvelib.resolvers.Result[Req, Candidate, str]:
        state = _Resolution(self.provider, self.reporter).resolve(
            requirements, max_rounds=max_rounds
        )
        return _resolution._build_result(state)


#: the resolver each target runs: the memoized search where resolvelib's internals are the
#: ones it extends (1.1 and 1.2), resolvelib's own search otherwise (the same answers)
_Resolver: type[resolvelib.Resolver[Req, Candidate, str]] = (
    _MemoResolver
    if hasattr(_resolution.Resolution, "_is_current_pin_satisfying")
    and hasattr(_resolution, "_build_result")
    else resolvelib.Resolver
)


def resolve_target(
    client: IndexClient,
    target: Target,
    requirements: Sequence[SourcedRequirement],
    constraints: Sequence[SourcedRequirement] = (),
    *,
    policy: Policy = Policy(),
    reporter: Reporter | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Resolution:
    """Resolve ``requirements`` for one target. Raises :class:`ResolutionError` with a clear line:
    when no answer exists, or when ``policy.time_limit`` seconds (of ``clock``) pass first,
    naming the conflict the search kept meeting."""
    reporter = reporter or NullReporter()
    started = clock()
    deadline = None if policy.time_limit is None else started + policy.time_limit
    env = target.markers
    roots = [
        make_req(s.requirement, s.origin) for s in requirements if _applies(s.requirement, env)
    ]
    cons: dict[NormalizedName, list[Req]] = defaultdict(list)
    for s in constraints:
        if _applies(s.requirement, env):
            cons[canonicalize_name(s.requirement.name)].append(make_req(s.requirement, s.origin))
    provider = Provider(
        client,
        target,
        policy,
        cons,
        functools.partial(reporter.metadata_build, target),
        roots=roots,
        on_first_choice=functools.partial(reporter.first_choice, target),
    )
    for r in roots:
        provider.depth[r.key] = 0
        provider.prefetch_first(r)
    listener = _ResolverListener(target, reporter, provider.conflicts, deadline, clock)
    resolver: resolvelib.Resolver[Req, Candidate, str] = _Resolver(provider, listener)
    try:
        result = resolver.resolve(roots, max_rounds=_MAX_ROUNDS)
    except resolvelib.ResolutionImpossible as exc:
        raise explain_impossible(exc.causes, provider, client.index_urls) from None
    except (_OutOfTime, resolvelib.ResolutionTooDeep):
        raise gave_up(provider, clock() - started) from None
    resolution = _to_resolution(target, result)
    reporter.target_done(target, resolution)
    return resolution


def _edges(
    result: resolvelib.resolvers.Result[Req, Candidate, str],
) -> Iterator[tuple[Candidate | None, Req, Candidate]]:
    """The resolved graph, from resolvelib's criteria: (the pin that asked, None for the user's
    own requirement; the requirement; the pin that serves it). Requirements of a candidate that
    is not the pin (one tried before backtracking) are not edges."""
    mapping = result.mapping
    for key, criterion in result.criteria.items():
        child = mapping.get(key)
        if child is None:
            continue
        for info in criterion.information:
            parent = info.parent
            if parent is None or mapping.get(parent.key) == parent:
                yield parent, info.requirement, child


def _edge_markers(markers: Sequence[str | None]) -> tuple[str, ...] | None:
    """A pin's markers from its incoming edges: None when one edge is unconditional."""
    if any(m is None for m in markers):
        return None
    return tuple(sorted({m for m in markers if m is not None}))


def _to_resolution(
    target: Target, result: resolvelib.resolvers.Result[Req, Candidate, str]
) -> Resolution:
    """One :class:`Pin` per project: its extras, dependencies and edge markers are the union
    over the project's base and extras candidates."""
    base: dict[NormalizedName, Candidate] = {}
    extras: dict[NormalizedName, set[NormalizedName]] = defaultdict(set)
    for cand in result.mapping.values():
        if cand.key == PYTHON:
            continue
        if not cand.extras:
            base[cand.name] = cand
        extras[cand.name] |= set(cand.extras)
    deps: dict[NormalizedName, set[NormalizedName]] = defaultdict(set)
    incoming: dict[NormalizedName, list[str | None]] = defaultdict(list)
    for parent, req, child in _edges(result):
        if parent is not None and parent.name == child.name:
            continue  # extras → base edge
        if child.key == PYTHON:
            continue  # Requires-Python from the metadata: a constraint, not a package
        if parent is not None:
            deps[parent.name].add(child.name)
        incoming[child.name].append(req.marker)
    return Resolution(
        target,
        {
            name: Pin(
                name=name,
                version=cand.version,
                file=cand.file,
                extras=frozenset(extras[name]),
                dependencies=tuple(sorted(deps[name])),
                markers=_edge_markers(incoming.get(name, [None])),
                requires_python=cand.file.requires_python,
            )
            for name, cand in sorted(base.items())
        },
    )


@dataclass(frozen=True)
class TargetFailure:
    """Why one target could not be resolved: its error names the target and the package."""

    target: Target
    error: WheelportError


def resolve_each(
    client: IndexClient,
    targets: Sequence[Target],
    requirements: Sequence[SourcedRequirement],
    constraints: Sequence[SourcedRequirement] = (),
    *,
    policy: Policy = Policy(),
    reporter: Reporter | None = None,
) -> tuple[list[Resolution], list[TargetFailure]]:
    """Resolve every target concurrently (one thread each, one shared client). One target's
    failure is that target's: the others still resolve, and each failure is returned."""
    reporter = reporter or NullReporter()
    with ThreadPoolExecutor(
        max_workers=max(1, len(targets)), thread_name_prefix="wheelport-resolve"
    ) as pool:
        futures = [
            pool.submit(
                resolve_target,
                client,
                t,
                requirements,
                constraints,
                policy=policy,
                reporter=reporter,
            )
            for t in targets
        ]
        results: list[Resolution] = []
        failures: list[TargetFailure] = []
        for target, fut in zip(targets, futures, strict=True):
            try:
                results.append(fut.result())
            except WheelportError as exc:
                failure = TargetFailure(target, for_target(exc, target))
                failures.append(failure)
                reporter.target_failed(target, failure.error)
        return results, failures


def for_target(exc: WheelportError, target: Target) -> WheelportError:
    """``exc`` as a target's failure: its message names the target (and keeps the package)."""
    if exc.target is None:
        exc.target = target.identifier
    if target.identifier not in exc.message:
        exc.message = f"target {target.identifier}: {exc.message}"
    return exc


def first_failure(failures: Sequence[TargetFailure]) -> WheelportError:
    """The error to raise for failed targets: the first, counting the others."""
    err = failures[0].error
    if len(failures) > 1:
        others = ", ".join(f.target.identifier for f in failures[1:])
        err.message += f" (and {len(failures) - 1} more target(s) failed: {others})"
    return err


def none_locked(failures: Sequence[TargetFailure]) -> WheelportError:
    """The error when ``--allow-missing`` has nothing to keep: every target failed, so no lock
    is written (exit 1, the job failed). The line says so first, then the first target's
    reason, counting the others."""
    err = first_failure(failures)
    err.message = (
        "no target could be locked, so nothing was written (--allow-missing keeps the "
        f"targets that lock and reports the others): {err.message}"
    )
    return err


def resolve_all(
    client: IndexClient,
    targets: Sequence[Target],
    requirements: Sequence[SourcedRequirement],
    constraints: Sequence[SourcedRequirement] = (),
    *,
    policy: Policy = Policy(),
    reporter: Reporter | None = None,
) -> list[Resolution]:
    """Resolve every target; raise for the first that fails (naming the others)."""
    results, failures = resolve_each(
        client, targets, requirements, constraints, policy=policy, reporter=reporter
    )
    if failures:
        raise first_failure(failures)
    return results
