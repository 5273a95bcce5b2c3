"""Who builds what: one decision shared by ``wheelport plan`` and the build stage of ``sync``.

:func:`decide` turns one sdist and the targets that need it into build jobs — a native build
on this host (one for every target a pure-Python wheel serves), a container build per
image group, or a job this machine cannot run and the runner (OS-arch) that can.
:func:`plan_builds` does it for every sdist the locks leave, after taking the wheels built
before that still serve. :func:`assign_shards` splits a plan's jobs into N balanced,
deterministic shards. All are pure: the sdists' facts, the earlier builds, the host and the
image slots are handed in; nothing here reads a file or runs a build.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wheelport.builders.plan import BuildNeed, ImageSlot, SdistInfo, group_container_builds
from wheelport.targets import Target

NATIVE = "native"
NO_ENGINE = "no container engine — install podman (apt-get install podman runc) or docker"
_ARCH = {"AMD64": "x86_64", "x86": "x86", "ARM64": "arm64", "universal2": "arm64"}


def runner_of(target: Target) -> str:
    """The kind of machine whose native build serves ``target``: ``linux-x86_64``,
    ``windows-x86_64``, ``macos-arm64``, …"""
    family = "linux" if target.is_linux else target.os
    return f"{family}-{_ARCH.get(target.arch, target.arch)}"


@dataclass(frozen=True)
class PlannedJob:
    """One build: an sdist for a group of targets, by ``builder`` on a ``runner``.

    ``here`` says whether this machine can run it; when not, ``reason`` says why (the
    coverage cell's text). ``size`` (the sdist's bytes) is the job's weight for sharding.
    """

    need: BuildNeed
    builder: str
    targets: tuple[Target, ...]
    runner: str
    here: bool
    reason: str = ""
    size: int = 0
    #: the :attr:`key` of every job that builds one of this build's requirements first
    after: tuple[str, ...] = ()

    @property
    def for_build(self) -> bool:
        """A build of a build requirement (an sdist no lock names, needed to build another)."""
        return not self.need.targets

    @property
    def key(self) -> str:
        """A stable name for the job, the same on every machine: sdist sha256 + builder +
        targets."""
        ids = ",".join(sorted(t.identifier for t in self.targets))
        text = f"{self.need.sdist_sha256}:{ids}"
        if self.for_build:
            text += f":{self.builder}"
        return hashlib.sha256(text.encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {
            "package": self.need.name,
            "version": self.need.version,
            "sdist": self.need.sdist_path,
            "targets": [t.identifier for t in self.targets],
            "builder": self.builder,
            "runner": self.runner,
            "here": self.here,
            "reason": self.reason,
            "size": self.size,
        }


def host_serves(host: Target, target: Target) -> bool:
    """Can a wheel built on this host be honest for ``target``? Same interpreter and OS family."""
    if host.python_version != target.python_version or host.free_threaded != target.free_threaded:
        return False
    if not target.is_linux or not host.is_linux:
        return host.os == target.os and host.arch == target.arch
    if host.arch != target.arch or (host.os == "musllinux" and target.os != "musllinux"):
        return False
    if target.os == "linux":
        return True
    if host.os != target.os:
        return False
    return (
        host.policy_version is not None
        and target.policy_version is not None
        and host.policy_version <= target.policy_version
    ) or target == host


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
    """The jobs that build ``need`` for ``targets``: container jobs first, then the native one.

    A manylinux/musllinux target gets its compiled wheel from a container whose image fits
    its policy — honest tags, hermetic, whatever the host is; one build per interpreter (one
    for all when abi3) serves every target it fits. A pure-Python sdist is built once here
    for every target. A compiled sdist for a target nothing here can build is a job with
    ``here=False`` naming the runner it needs.
    """
    slots: dict[str, ImageSlot] = {}
    for t in targets:
        if info.compiled and container and t.os in ("manylinux", "musllinux"):
            slots[t.identifier] = slot(t, need.name)
    jobs: list[PlannedJob] = []
    for s, members in group_container_builds(
        [t for t in targets if t.identifier in slots], slots, abi3=info.abi3
    ):
        jobs.append(
            PlannedJob(need, f"container:{s.label}", tuple(members), runner_of(members[0]),
                       True, size=size)
        )  # fmt: skip
    native_for: list[Target] = []
    for t in targets:
        if t.identifier in slots and slots[t.identifier].label is not None:
            continue
        if not info.compiled or host_serves(host, t):
            native_for.append(t)
        elif t.is_linux:
            why = slots[t.identifier].reason if t.identifier in slots else NO_ENGINE
            if t.os == "linux":
                why = "a plain linux target has no manylinux/musllinux image; use a policy target"
            reason = f"compiled sdist; needs a container build for {t.identifier}: {why}"
            jobs.append(PlannedJob(need, "container", (t,), runner_of(t), False, reason, size))
        else:
            kind = {"windows": "Windows", "macos": "macOS"}.get(t.os, t.os)
            reason = (
                f"compiled sdist; needs a native build host for {kind} ({t.platform}): "
                "'wheelport ci github' writes a workflow that builds it on one"
            )
            jobs.append(PlannedJob(need, NATIVE, (t,), runner_of(t), False, reason, size))
    if native_for:
        jobs.append(PlannedJob(need, NATIVE, tuple(native_for), runner_of(host), True, size=size))
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
    """The best-ranked container-built wheel whose tags ``target`` accepts (first on ties)."""
    best: tuple[int, PriorBuild] | None = None
    for b in builds:
        if not b.builder.startswith("container:"):
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
