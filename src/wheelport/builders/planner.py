"""Who builds what: one decision shared by ``wheelport plan`` and the build stage of ``sync``.

:func:`decide` turns one sdist and the targets that need it into build jobs, asking each
builder of :data:`BUILDERS` in turn (one shape, :mod:`wheelport.builders.kind`): a container
build per image group, a job this machine cannot run and the runner (OS-arch) that can, a
native build on this host (one for every target a pure-Python wheel serves).
:func:`plan_builds` does it for every sdist the locks leave, after taking the wheels built
before that still serve. :func:`assign_shards` splits a plan's jobs into N balanced,
deterministic shards. All are pure: the sdists' facts, the earlier builds, the host and the
image slots are handed in; nothing here reads a file or runs a build.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from wheelport.builders.container import Container
from wheelport.builders.kind import Builder, Machine, Offer, Offered, PlannedJob, kind_name
from wheelport.builders.native import Native
from wheelport.builders.plan import BuildNeed, ImageSlot, SdistInfo
from wheelport.builders.runners import Runners
from wheelport.targets import Target

#: Every builder, in the order each is offered what the ones before it left: a Linux target's
#: compiled wheel comes from a container whose image fits its policy, whatever the host is;
#: what no build here makes goes to the runner that can; the native builder takes the rest (a
#: pure-Python sdist for every target). Runners and native take disjoint targets: their order
#: is the order of ``wheelport plan``'s rows. A new builder is one module and one line here.
BUILDERS: tuple[Builder, ...] = (Container(), Runners(), Native())

_BY_NAME: dict[str, Builder] = {b.name: b for b in BUILDERS}


def builder_of(job: PlannedJob) -> Builder:
    """The builder that runs ``job``."""
    return _BY_NAME[job.kind]


def decide(
    need: BuildNeed,
    targets: Sequence[Target],
    info: SdistInfo,
    *,
    host: Target,
    container: bool,
    slot: Callable[[Target, str], ImageSlot],
    size: int = 0,
) -> list[PlannedJob]:
    """The jobs that build ``need`` for ``targets``: each builder of :data:`BUILDERS` in turn
    takes the targets it serves of those the ones before it left (container jobs first, then
    the jobs this machine cannot run, naming the runner each needs, then the native one).

    A manylinux/musllinux target gets its compiled wheel from a container whose image fits
    its policy — honest tags, hermetic, whatever the host is; one build per interpreter (one
    for all when abi3) serves every target it fits. A pure-Python sdist is built once here
    for every target. A compiled sdist for a target nothing here can build is a job with
    ``here=False`` naming the runner it needs.
    """
    machine = Machine(host=host, container=container, slot=slot)
    offered: tuple[Offered, ...] = tuple((t, None) for t in targets)
    jobs: list[PlannedJob] = []
    for builder in BUILDERS:
        claim = builder.plan(Offer(need, offered, info, machine, size))
        jobs += claim.jobs
        offered = claim.left
    assert not offered, f"no builder takes {[t.identifier for t, _ in offered]}"
    return jobs


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` (1-based) → (I, N); ValueError when it is not ``1 <= I <= N``."""
    index, sep, count = text.partition("/")
    if not sep or not index.strip().isdigit() or not count.strip().isdigit():
        raise ValueError(f"a shard is I/N, e.g. 2/3, not {text!r}")
    i, n = int(index), int(count)
    if not 1 <= i <= n:
        raise ValueError(f"shard {text!r}: I must be between 1 and N")
    return i, n


def assign_shards(jobs: Sequence[PlannedJob], count: int) -> list[int]:
    """The shard (1-based) of each job: largest first, each to the least-loaded shard (the
    lowest on ties), jobs of one size ordered by :attr:`PlannedJob.key`. The same jobs give
    the same shards on every machine, and no shard carries more than the largest job above
    the mean."""
    if count < 1:
        raise ValueError("the shard count must be at least 1")
    loads = [0] * count
    shard = [0] * len(jobs)
    for i in sorted(range(len(jobs)), key=lambda i: (-jobs[i].size, jobs[i].key)):
        k = min(range(count), key=lambda s: (loads[s], s))
        shard[i] = k + 1
        loads[k] += jobs[i].size
    return shard


@dataclass(frozen=True)
class PriorBuild:
    """A wheel built from an sdist by an earlier run, still present in the wheelhouse."""

    path: str
    builder: str
    #: the targets the manifest records it serves
    targets: tuple[str, ...]


@dataclass(frozen=True)
class Reuse:
    """A target served by a wheel built before. ``new``: the manifest does not record the
    target for it yet (an abi3 or older-policy container wheel whose tags the target takes)."""

    need: BuildNeed
    target: Target
    build: PriorBuild
    new: bool


@dataclass(frozen=True)
class Unserved:
    """A target this run does not build for: ``missing`` (nothing here can) or ``deferred``
    (another shard or ``--only-target`` run builds it); ``why`` is the coverage cell's text."""

    need: BuildNeed
    target: Target
    state: str
    why: str


@dataclass(frozen=True)
class BuildPlan:
    """What the build stage does: the jobs to run here, the earlier builds it reuses and the
    cells it leaves."""

    jobs: tuple[PlannedJob, ...] = ()
    reuses: tuple[Reuse, ...] = ()
    unserved: tuple[Unserved, ...] = ()


def _serving(builds: Sequence[PriorBuild], target: Target) -> PriorBuild | None:
    """The best-ranked wheel whose tags ``target`` accepts, of those built by a builder whose
    wheels may serve other targets (a container's; first on ties)."""
    best: tuple[int, PriorBuild] | None = None
    for b in builds:
        builder = _BY_NAME.get(kind_name(b.builder))
        if builder is None or not builder.shares_wheels:
            continue
        rank = target.wheel_rank(b.path.rsplit("/", 1)[-1])
        if rank is not None and (best is None or rank < best[0]):
            best = (rank, b)
    return best[1] if best else None


def plan_builds(
    needs: Sequence[BuildNeed],
    targets: Mapping[str, Target],
    *,
    info: Callable[[BuildNeed], SdistInfo],
    prior: Mapping[str, Sequence[PriorBuild]],
    host: Target,
    container: bool,
    slot: Callable[[Target, str], ImageSlot],
    left: Mapping[tuple[str, str], str] | None = None,
) -> BuildPlan:
    """The build stage's decisions for ``needs`` (from the locks).

    Per sdist and target, in order: a present wheel the manifest records as built for the
    target (``prior``: sdist sha256 → earlier builds, the latest last) is reused; else a
    present container-built wheel whose tags the target takes; else, when ``left`` (sdist
    sha256, target) → who builds it names another run, the cell is deferred; else the target
    is built — :func:`decide` groups what is left per sdist (``info`` is asked only then).
    """
    left = left or {}
    jobs: list[PlannedJob] = []
    reuses: list[Reuse] = []
    unserved: list[Unserved] = []
    for need in needs:
        builds = prior.get(need.sdist_sha256, ())
        pending: list[Target] = []
        for tid in need.targets:
            target = targets[tid]
            recorded = next((b for b in reversed(builds) if tid in b.targets), None)
            if recorded is not None:
                reuses.append(Reuse(need, target, recorded, new=False))
            elif (serving := _serving(builds, target)) is not None:
                reuses.append(Reuse(need, target, serving, new=True))
            elif (need.sdist_sha256, tid) in left:
                why = f"left to {left[need.sdist_sha256, tid]}"
                unserved.append(Unserved(need, target, "deferred", why))
            else:
                pending.append(target)
        if not pending:
            continue
        for job in decide(need, pending, info(need), host=host, container=container, slot=slot):
            if job.here:
                jobs.append(job)
            else:
                unserved += [Unserved(need, t, "missing", job.reason) for t in job.targets]
    return BuildPlan(tuple(jobs), tuple(reuses), tuple(unserved))
