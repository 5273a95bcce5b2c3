"""What every builder is: one shape, so the planner can ask each the same questions.

A :class:`Builder` says which targets it serves of those it is offered (:meth:`Builder.plan`:
its :class:`PlannedJob` s, and the targets it leaves to the next builder), which interpreters run
a job's build (:meth:`Builder.interpreters`: the build requirements are resolved for them) and
how it builds a job (:meth:`Builder.build`). The builders are listed, in the order they are
asked, in :data:`wheelport.builders.planner.BUILDERS`; a job names its builder by
:attr:`PlannedJob.builder`, ``<name>`` or ``<name>:<detail>`` (``container:<image>``), and the
manifest records that name.

The side effects of building (the native build, the container run) are :class:`Ports`, handed
in: ``wheelport.builders.stage.Builders`` is the value the build stage passes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from wheelport.builders.plan import BuildNeed, ImageSlot, SdistInfo
from wheelport.targets import Target

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
    def kind(self) -> str:
        """The name of the :class:`Builder` that runs it (``container`` of ``container:<image>``)."""
        return kind_name(self.builder)

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


def kind_name(builder: str) -> str:
    """The builder's name in a job's or the manifest's builder label (``native``,
    ``container:<image>``)."""
    return builder.partition(":")[0]


@dataclass(frozen=True, kw_only=True)
class Machine:
    """What this machine offers the builders, handed to :meth:`Builder.plan` (which reads
    nothing itself): the host, whether a container engine is usable, and for a Linux target
    and a project the image that would build it (or why there is none)."""

    host: Target
    container: bool
    slot: Callable[[Target, str], ImageSlot]


#: a target offered to a builder, with why the builders before it did not take it (None: no
#: builder said)
Offered = tuple[Target, str | None]


@dataclass(frozen=True)
class Offer:
    """What the planner asks a builder about: an sdist (its facts and its size in bytes, a job's
    weight), the targets the builders before it left — each with why it was not taken, see
    :data:`Offered` — and what this machine offers."""

    need: BuildNeed
    targets: tuple[Offered, ...]
    info: SdistInfo
    machine: Machine
    size: int = 0


@dataclass(frozen=True)
class Claim:
    """What one builder takes of the targets it is offered: its jobs, and the targets it
    leaves to the next builder (each with why it was not taken, see :data:`Offered`)."""

    jobs: tuple[PlannedJob, ...] = ()
    left: tuple[Offered, ...] = ()


#: (sdist, targets, wheels dir, out dir, log dir) -> target identifier → wheel path. The
#: targets share one image (their first one's); one run builds once per interpreter.
ContainerBuilder = Callable[[Path, Sequence[Target], Path, Path, Path], Mapping[str, Path]]


class NativeBuilder(Protocol):
    """Builds an sdist on this host, with build requirements from ``wheels_dir`` only."""

    def __call__(self, sdist: Path, *, wheels_dir: Path, out_dir: Path, log_dir: Path) -> Path: ...


class Ports(Protocol):
    """The side effects the builders run (``wheelport.builders.stage.Builders``)."""

    @property
    def native(self) -> NativeBuilder: ...

    @property
    def container(self) -> ContainerBuilder | None: ...


class Builder(Protocol):
    """One way sdists become wheels."""

    #: the name its jobs and the manifest record (a job's builder may add ``:<detail>``)
    @property
    def name(self) -> str: ...

    #: whether a wheel it built may serve a target it was not built for when the target takes
    #: the wheel's tags (a container wheel of an older policy or abi3; not a native one)
    @property
    def shares_wheels(self) -> bool: ...

    def plan(self, offer: Offer) -> Claim:
        """The jobs that build the offered sdist for the targets this builder serves, and the
        targets it leaves. Pure: everything it knows is handed in."""
        ...

    def interpreters(self, job: PlannedJob, host: Target) -> list[Target]:
        """The interpreters that run the job's build (its build requirements are resolved and
        fetched for each)."""
        ...

    def build(
        self, job: PlannedJob, sdist: Path, ports: Ports, *, wheels_dir: Path, out_dir: Path,
        log_dir: Path,
    ) -> Mapping[str, Path]:  # fmt: skip
        """Build ``sdist`` for the job's targets with build requirements from ``wheels_dir``
        only: target identifier → its wheel in ``out_dir`` (a failed build's log goes to
        ``log_dir``)."""
        ...
