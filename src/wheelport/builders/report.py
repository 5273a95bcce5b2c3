"""Progress of the build stage: what :func:`~wheelport.builders.stage.build_stage` tells as it
works (kept apart from the stage, so a command can hand one over without loading the build
machinery a wheelhouse of binaries never needs)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from wheelport.builders.kind import PlannedJob
    from wheelport.builders.plan import BuildNeed
    from wheelport.errors import BuildError
    from wheelport.manifest import BuildRequirement


class BuildReporter(Protocol):
    """Progress of the build stage (the CLI shows it; the library default says nothing)."""

    def build_requirements(self, need: BuildNeed, entries: Sequence[BuildRequirement]) -> None:
        """The build requirements of ``need`` were resolved and fetched."""

    def build_started(self, job: PlannedJob) -> None: ...

    def build_finished(self, job: PlannedJob, error: BuildError | None) -> None: ...


class NullBuildReporter:
    def build_requirements(self, need: BuildNeed, entries: Sequence[BuildRequirement]) -> None:
        pass

    def build_started(self, job: PlannedJob) -> None:
        pass

    def build_finished(self, job: PlannedJob, error: BuildError | None) -> None:
        pass


class LineBuildReporter(NullBuildReporter):
    """One line per event, to ``emit`` (the CLI's info output)."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self.emit = emit

    def build_requirements(self, need: BuildNeed, entries: Sequence[BuildRequirement]) -> None:
        shown = ", ".join(
            f"{e.name} {e.version}" + (" (sdist)" if e.sdist else "") for e in entries
        )
        self.emit(f"build requirements of {need.name}: {shown}")

    def build_started(self, job: PlannedJob) -> None:
        ids = ", ".join(t.identifier for t in job.targets)
        self.emit(f"building {job.need.name} {job.need.version} ({job.builder}) for {ids}")
