"""Builds this machine cannot run, named for the runner that can.

A compiled sdist for a target whose wheel no build here makes honestly — Windows or macOS from
Linux, another architecture, a Linux policy with no image here — becomes a job with
``here=False``: the container or native build it needs, the kind of runner that runs it
(``windows-x86_64``, ``linux-aarch64``, …; :func:`~wheelport.builders.kind.runner_of`) and
why, which is the target's coverage cell. ``wheelport ci github`` gives each runner kind a job
that runs them there (``wheelport sync --only-target``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from wheelport.builders.kind import NO_ENGINE, Claim, Offer, Offered, PlannedJob, Ports, runner_of
from wheelport.builders.native import BUILDER as NATIVE
from wheelport.builders.native import host_serves
from wheelport.errors import BuildError
from wheelport.targets import Target

#: how the coverage cell names an OS that needs a native build host
_OS_NAMES = {"windows": "Windows", "macos": "macOS"}


class Runners:
    """The CI runner kinds: a compiled sdist's targets this host cannot build natively (the
    container builder, asked first, took the Linux ones it has an image for)."""

    name = "runner"
    shares_wheels = False

    def plan(self, offer: Offer) -> Claim:
        need, size = offer.need, offer.size
        jobs: list[PlannedJob] = []
        left: list[Offered] = []
        for t, why in offer.targets:
            if not offer.info.compiled or host_serves(offer.machine.host, t):
                left.append((t, why))  # the native builder's
            elif t.is_linux:
                what = NO_ENGINE if why is None else why
                if t.os == "linux":
                    what = (
                        "a plain linux target has no manylinux/musllinux image; use a policy target"
                    )
                reason = f"compiled sdist; needs a container build for {t.identifier}: {what}"
                jobs.append(PlannedJob(need, "container", (t,), runner_of(t), False, reason, size))
            else:
                reason = (
                    "compiled sdist; needs a native build host for "
                    f"{_OS_NAMES.get(t.os, t.os)} ({t.platform}): "
                    "'wheelport ci github' writes a workflow that builds it on one"
                )
                jobs.append(PlannedJob(need, NATIVE, (t,), runner_of(t), False, reason, size))
        return Claim(tuple(jobs), tuple(left))

    def interpreters(self, job: PlannedJob, host: Target) -> list[Target]:
        return list(job.targets)  # on its runner, the target's own interpreter

    def build(
        self, job: PlannedJob, sdist: Path, ports: Ports, *, wheels_dir: Path, out_dir: Path,
        log_dir: Path,
    ) -> Mapping[str, Path]:  # fmt: skip
        raise BuildError(
            f"{job.need.name}: {job.reason}",
            package=job.need.name,
            target=job.targets[0].identifier,
        )
