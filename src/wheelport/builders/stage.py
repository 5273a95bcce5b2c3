"""The build stage: every sdist some target's lock names becomes the wheels that serve it.

Reading order: :func:`build_stage` gathers the facts (the locks' :class:`BuildNeed` s, the
wheels built before, the sdists' facts), hands them to the pure
:func:`~wheelport.builders.planner.plan_builds`, fetches each build's ``build-system.requires``
into the wheelhouse (:func:`prepare_build_requirements`, which may add jobs that build a
requirement first), runs the jobs in build-dependency order (:func:`run_jobs`) and records what
they made. It writes wheels into ``wheels/`` only: the manifest and the locks are changed in
memory and written once, by the caller, at the end (:func:`wheelport.finish.finish`).

Which builder runs a job is the planner's table (:data:`~wheelport.builders.planner.BUILDERS`);
what each runs is a :class:`Builders` value (the native build and the container run, both
injectable); :func:`default_builders` is the one this machine offers.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from packaging.pylock import Pylock
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

from wheelport.builders.kind import NO_ENGINE, ContainerBuilder, NativeBuilder, PlannedJob
from wheelport.builders.native import build_native
from wheelport.builders.plan import (
    BuildNeed,
    BuildOutcome,
    ImageSlot,
    SdistInfo,
    StageResult,
    needs_from_locks,
    read_sdist_info,
    served,
)
from wheelport.builders.planner import (
    PriorBuild,
    assign_shards,
    builder_of,
    decide,
    plan_builds,
)
from wheelport.builders.report import BuildReporter, NullBuildReporter
from wheelport.config import SourcedRequirement
from wheelport.errors import BuildError, UsageError, WheelportError
from wheelport.fetch import Artifact, fetch_artifacts, remember_hash
from wheelport.index.client import IndexClient
from wheelport.index.metadata import same_version, wheel_problem
from wheelport.lock import read_lock
from wheelport.manifest import BuildRequirement, Manifest
from wheelport.resolve import Policy, resolve_target
from wheelport.targets import Target, host_target, is_pure, parse_targets, served_targets
from wheelport.wheelhouse import Wheelhouse, atomic_target, sha256_file

if TYPE_CHECKING:
    from wheelport.builders.images import Interpreter, LocalImage


#: System packages (Debian names, for the local base image) that well-known sdists need in
#: their container build; ``[tool.wheelport] build-system-packages`` overrides per project.
DEFAULT_SYSTEM_PACKAGES: dict[str, tuple[str, ...]] = {
    "lxml": ("libxml2-dev", "libxslt1-dev"),
}


@dataclass(frozen=True)
class Builders:
    """What the builders run (:class:`~wheelport.builders.kind.Ports`): the native build, and
    the container run — None when no engine is usable."""

    native: NativeBuilder = build_native
    container: ContainerBuilder | None = None
    #: (target, project) → the image that would build it (its tag names its content), or
    #: why there is none
    container_slot: Callable[[Target, str], ImageSlot] = lambda t, p: ImageSlot(None, NO_ENGINE)


# -- the stage ---------------------------------------------------------------------------------


def build_stage(
    wh: Wheelhouse,
    manifest: Manifest,
    targets: Sequence[Target],
    locks: Mapping[str, Pylock],
    client: IndexClient,
    builders: Builders,
    *,
    reporter: BuildReporter | None = None,
    shard: tuple[int, int] | None = None,
    only_targets: Collection[str] = (),
) -> StageResult:
    """Build every sdist some target needs and point those targets' locks at the wheels.

    With ``shard`` (I, N) only the I-th of N balanced parts of the whole build plan is built
    (:func:`~wheelport.builders.planner.assign_shards`), with ``only_targets`` only the jobs'
    parts for those targets; the other cells are ``deferred`` (left to another run).
    ``manifest`` is changed in memory; nothing but wheels is written."""
    reporter = reporter or NullBuildReporter()
    by_id = {t.identifier: t for t in targets}
    result, needs = served(wh.root, locks)
    if not needs:
        return result
    host = host_target()
    left: dict[tuple[str, str], str] = {}
    if shard is not None or only_targets:
        left = _left_to_others(wh, locks, by_id, builders, host, shard, only_targets)
    plan = plan_builds(
        needs,
        by_id,
        info=lambda need: read_sdist_info(wh.root / need.sdist_path),
        prior=_prior_builds(wh, manifest),
        host=host,
        container=builders.container is not None,
        slot=builders.container_slot,
        left=left,
    )
    for reuse in plan.reuses:
        need, b, tid = reuse.need, reuse.build, reuse.target.identifier
        path = wh.root / b.path
        sha = manifest.sha256_of(b.path) or sha256_file(path)
        if reuse.new:  # the manifest learns the target this wheel serves too
            _record(manifest, need, b.builder, b.path, sha, path.stat().st_size, [tid])
        result.point_at(tid, need, b.path, path.stat().st_size, sha)
        result.coverage.set(need.name, tid, "built", f"{path.name} ({b.builder})")
        result.outcomes.append(
            BuildOutcome(need.name, need.sdist_path, b.builder, b.path, [tid], skipped=True)
        )
    for u in plan.unserved:
        result.coverage.set(u.need.name, u.target.identifier, u.state, u.why)
    if not plan.jobs:
        return result
    jobs, unbuildable = prepare_build_requirements(
        wh, manifest, plan.jobs, client, host, reporter=reporter
    )
    for job, missing in unbuildable:
        reporter.build_finished(job, missing)
        _record_job(wh, manifest, result, job, None, missing, failure="not built")
    for job, built, err in run_jobs(wh, jobs, builders, reporter):
        _record_job(wh, manifest, result, job, built, err)
    return result


def _prior_builds(wh: Wheelhouse, manifest: Manifest) -> dict[str, list[PriorBuild]]:
    """sdist sha256 → the wheels built from it that are still present (manifest order)."""
    out: dict[str, list[PriorBuild]] = {}
    for rel, rec in manifest.artifacts.items():
        o = rec.origin
        if o.is_build and o.sdist_sha256 and (wh.root / rel).is_file():
            out.setdefault(o.sdist_sha256, []).append(PriorBuild(rel, o.builder or "", o.targets))
    return out


def _record(
    manifest: Manifest,
    need: BuildNeed,
    builder: str,
    rel: str,
    sha: str,
    size: int,
    targets: Sequence[str],
    purpose: str | None = None,
) -> None:
    manifest.record_build(
        rel,
        sha,
        size,
        builder=builder,
        sdist=need.sdist_path,
        sdist_sha256=need.sdist_sha256,
        targets=targets,
        purpose=purpose,
    )


def _record_job(
    wh: Wheelhouse,
    manifest: Manifest,
    result: StageResult,
    job: PlannedJob,
    built: Mapping[str, Path] | None,
    err: BuildError | None,
    failure: str = "build failed",
) -> None:
    """Record one finished job: its wheels in the manifest and the locks, its coverage
    (``failure`` starts a failed job's cell)."""
    need, builder = job.need, job.builder
    if job.for_build:  # a build requirement that had to be built first
        for wheel in sorted(set((built or {}).values())):
            rel, sha = wh.relative(wheel), sha256_file(wheel)
            remember_hash(wheel, sha)
            _record(manifest, need, builder, rel, sha, wheel.stat().st_size, [],
                    purpose="build-requirement")  # fmt: skip
        wheel0 = next(iter(built.values()), None) if built else None
        result.outcomes.append(
            BuildOutcome(need.name, need.sdist_path, builder,
                         wh.relative(wheel0) if wheel0 else None, [],
                         error=str(err) if err else None)
        )  # fmt: skip
        return
    if built is None:
        for t in job.targets:
            result.coverage.set(need.name, t.identifier, "missing", f"{failure}: {err}")
        ids = [t.identifier for t in job.targets]
        result.outcomes.append(
            BuildOutcome(need.name, need.sdist_path, builder, None, ids, error=str(err))
        )
        return
    unserved = [t for t in job.targets if t.identifier not in built]
    for wheel in sorted(set(built.values())):
        candidates = [t for t in job.targets if built.get(t.identifier) == wheel]
        serves = served_targets(wheel.name, candidates) if not is_pure(wheel.name) else candidates
        unserved += [t for t in candidates if t not in serves]
        rel, sha, size = wh.relative(wheel), sha256_file(wheel), wheel.stat().st_size
        remember_hash(wheel, sha)
        ids = [t.identifier for t in serves]
        _record(manifest, need, builder, rel, sha, size, ids)
        for tid in ids:
            result.point_at(tid, need, rel, size, sha)
            result.coverage.set(need.name, tid, "built", f"{wheel.name} ({builder})")
        result.outcomes.append(BuildOutcome(need.name, need.sdist_path, builder, rel, ids))
    made = ", ".join(sorted({w.name for w in built.values()}))
    for t in unserved:
        result.coverage.set(
            need.name,
            t.identifier,
            "missing",
            f"built {made} ({builder}), which does not fit {t}; needs a container or native "
            "build host",
        )


# -- build requirements ---------------------------------------------------------------------------


def prepare_build_requirements(
    wh: Wheelhouse,
    manifest: Manifest,
    jobs: Sequence[PlannedJob],
    client: IndexClient,
    host: Target,
    *,
    reporter: BuildReporter,
) -> tuple[list[PlannedJob], list[tuple[PlannedJob, BuildError]]]:
    """Resolve each build's ``build-system.requires`` for the interpreter that runs the build
    and fetch them into the wheelhouse, so builds install them with no index.

    Wheels are preferred; a requirement that exists only as an sdist becomes a build job of its
    own. Returns every job that can run (the given ones first), each naming in ``after`` the
    jobs it waits for — builds follow build-dependency order — and the jobs whose build
    requirements the index cannot satisfy, each with the error naming the missing requirement
    (their targets' cells say so; the other builds go on). The resolutions are recorded in
    ``manifest.build_deps`` and reused while their files are present.
    """
    todo: list[PlannedJob] = list(jobs)
    out: list[PlannedJob] = []
    failed: list[tuple[PlannedJob, BuildError]] = []
    dep_jobs: dict[tuple[str, str], PlannedJob] = {}  # (sdist sha256, builder) → its build
    for job in todo:
        dep_jobs.setdefault((job.need.sdist_sha256, job.builder), job)
    resolved: dict[tuple[str, str], tuple[BuildRequirement, ...]] = {}
    i = 0
    while i < len(todo):
        job = todo[i]
        i += 1
        need, builder = job.need, job.builder
        # the interpreters that run the build: the host's, or one per Python in the container
        build_targets = builder_of(job).interpreters(job, host)
        after: list[str] = []
        try:
            for build_target in build_targets:
                key = (need.sdist_sha256, build_target.identifier)
                if key not in resolved:
                    resolved[key] = _build_requirements(wh, manifest, need, build_target, client)
                    reporter.build_requirements(need, resolved[key])
        except BuildError as exc:
            failed.append((job, exc))
            continue
        for build_target in build_targets:
            key = (need.sdist_sha256, build_target.identifier)
            for entry in resolved[key]:
                if entry.sdist is None or _built_from(wh, manifest, entry.sha256, builder):
                    continue
                dep = dep_jobs.get((entry.sha256, builder))
                if dep is None:
                    dep_need = BuildNeed(entry.name, entry.version, entry.sdist, entry.sha256, ())
                    dep = PlannedJob(dep_need, builder, (build_target,), job.runner, True)
                    dep_jobs[entry.sha256, builder] = dep
                    todo.append(dep)
                after.append(dep.key)
        out.append(dataclasses.replace(job, after=tuple(dict.fromkeys(after))))
    return out, failed


def _build_requirements(
    wh: Wheelhouse, manifest: Manifest, need: BuildNeed, build_target: Target, client: IndexClient
) -> tuple[BuildRequirement, ...]:
    """The recorded resolution while all its files are present; else resolved now and fetched
    (an sdist among them is read, and maybe built, next)."""
    recorded = manifest.build_deps.get(need.sdist_sha256, {}).get(build_target.identifier)
    if recorded and all(r.path and (wh.root / r.path).exists() for r in recorded):
        return recorded
    entries, wanted = _resolve_build_requires(wh, need, build_target, client)
    fetch_artifacts(wh, wanted, client, manifest=manifest)
    manifest.build_deps.setdefault(need.sdist_sha256, {})[build_target.identifier] = entries
    return entries


def _resolve_build_requires(
    wh: Wheelhouse, need: BuildNeed, build_target: Target, client: IndexClient
) -> tuple[tuple[BuildRequirement, ...], list[Artifact]]:
    info = read_sdist_info(wh.root / need.sdist_path)
    reqs = [
        SourcedRequirement(Requirement(r), f"{need.sdist_path} build-system.requires")
        for r in info.build_requires
    ]
    try:
        res = resolve_target(client, build_target, reqs, policy=Policy(prefer_binary=True))
    except WheelportError as exc:
        named = [
            str(r.requirement)
            for r in reqs
            if exc.package and canonicalize_name(r.requirement.name) == exc.package
        ]
        what = (
            f"its build requirement {named[0]} cannot be satisfied from the index"
            if named
            else "its build requirements cannot be resolved"
        )
        raise BuildError(
            f"{need.name} {need.version}: {what} for {build_target} ({exc.message})",
            hint="pin an older release of the package, or add the missing requirement to the index",
            package=need.name,
            target=build_target.identifier,
        ) from None
    entries: list[BuildRequirement] = []
    wanted: list[Artifact] = []
    for pin in res.pins.values():
        f = pin.file
        if not f.sha256:
            continue
        rel = f"{'wheels' if f.is_wheel else 'sdists'}/{f.filename}"
        wanted.append(Artifact(rel, f.url, f.sha256, f.size, str(pin.name)))
        entries.append(
            BuildRequirement(
                str(pin.name),
                str(pin.version),
                f.sha256,
                path=rel if f.is_wheel else None,
                sdist=None if f.is_wheel else rel,
            )
        )
    return tuple(entries), wanted


def _built_from(wh: Wheelhouse, manifest: Manifest, sdist_sha: str, builder: str) -> bool:
    """Is a wheel built from this sdist by this builder still present?"""
    return any(
        rec.origin.builder == builder and (wh.root / rel).exists()
        for rel, rec in manifest.builds_of(sdist_sha)
    )


# -- running ----------------------------------------------------------------------------------------


def run_jobs(
    wh: Wheelhouse,
    jobs: Sequence[PlannedJob],
    builders: Builders,
    reporter: BuildReporter,
) -> list[tuple[PlannedJob, dict[str, Path] | None, BuildError | None]]:
    """Run independent builds concurrently (up to the core count); a build starts when the
    builds it waits for (``after``) finished, and fails at once when one of them failed.
    Returns (job, target → wheel or None, error) per job, in the given order."""
    by_key = {j.key: j for j in jobs}
    results: dict[str, tuple[dict[str, Path] | None, BuildError | None]] = {}
    pending = [j.key for j in jobs]
    workers = max(1, min(len(jobs), os.cpu_count() or 2))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wheelport-build") as pool:
        running: dict[Future[dict[str, Path]], str] = {}
        while pending or running:
            for key in list(pending):
                job = by_key[key]
                failed = [d for d in job.after if d in results and results[d][0] is None]
                if failed:
                    dep = by_key[failed[0]].need
                    results[key] = (None, BuildError(
                        f"{job.need.name}: its build requirement {dep.name} {dep.version} failed to build",
                        package=job.need.name,
                    ))  # fmt: skip
                    pending.remove(key)
                elif all(d in results for d in job.after):
                    reporter.build_started(job)
                    running[pool.submit(_run_build, wh, job, builders)] = key
                    pending.remove(key)
            if not running:
                for key in pending:
                    job = by_key[key]
                    results[key] = (None, BuildError(
                        f"{job.need.name}: build requirements form a cycle; none of them has a wheel",
                        package=job.need.name,
                    ))  # fmt: skip
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                key = running.pop(fut)
                try:
                    results[key] = (fut.result(), None)
                except BuildError as exc:
                    results[key] = (None, exc)
                reporter.build_finished(by_key[key], results[key][1])
    return [(j, *results[j.key]) for j in jobs]


def _run_build(wh: Wheelhouse, job: PlannedJob, builders: Builders) -> dict[str, Path]:
    """Run one build job; return target identifier → its wheel, placed in ``wheels/``."""
    sdist = wh.root / job.need.sdist_path
    with tempfile.TemporaryDirectory(prefix="wheelport-out-") as tmp:
        built = builder_of(job).build(
            job, sdist, builders, wheels_dir=wh.wheels, out_dir=Path(tmp), log_dir=wh.logs
        )
        need = job.need
        for wheel in sorted(set(built.values())):
            why = wheel_problem(wheel, wheel.name)
            if why is None:
                made_name, made_version, _, _ = parse_wheel_filename(wheel.name)
                if made_name != canonicalize_name(need.name):
                    why = f"it is a wheel of {made_name}"
                elif not same_version(str(made_version), need.version):
                    why = f"it is version {made_version}"
            if why is not None:
                raise BuildError(
                    f"{need.name}: the build of {need.sdist_path} made {wheel.name}, which is not "
                    f"a wheel of {need.name} {need.version}: {why}",
                    hint="the sdist is not what its name says; nothing was placed",
                    package=need.name,
                )
        placed: dict[Path, Path] = {}
        for wheel in sorted(set(built.values())):
            dest = wh.wheels / wheel.name
            with atomic_target(dest, durable=False) as f, wheel.open("rb") as src:
                shutil.copyfileobj(src, f)
            placed[wheel] = dest
        return {tid: placed[w] for tid, w in built.items()}


# -- plans without building -----------------------------------------------------------------------

#: what a plan assumes of an sdist not fetched yet: that it compiles (the cautious answer)
UNFETCHED_SDIST = SdistInfo((), compiled=True)


def plan_jobs(
    wh: Wheelhouse,
    locks: Mapping[str, Pylock],
    targets: Sequence[Target],
    builders: Builders,
    host: Target,
    *,
    remaining: bool = True,
) -> list[PlannedJob]:
    """The build jobs the locks ask for, decided as the build stage decides them
    (:func:`~wheelport.builders.planner.decide`). ``remaining``: only those whose lock does not
    point at a present wheel yet; otherwise every build the locks imply, done or not (what
    shards are cut from, so a shard's part does not move as work gets done)."""
    by_id = {t.identifier: t for t in targets}
    present = (lambda rel: (wh.root / rel).is_file()) if remaining else (lambda rel: False)
    out: list[PlannedJob] = []
    for need in needs_from_locks(locks, present=present):
        sdist = wh.root / need.sdist_path
        info = read_sdist_info(sdist) if sdist.is_file() else UNFETCHED_SDIST
        size = need.size or (sdist.stat().st_size if sdist.is_file() else 0)
        out += decide(need, [by_id[t] for t in need.targets if t in by_id], info, host=host,
                      container=builders.container is not None, slot=builders.container_slot,
                      size=size)  # fmt: skip
    return out


def build_plan(
    root: Path, builders: Builders | None = None, *, shards: int | None = None
) -> list[dict[str, Any]]:
    """``wheelport plan``: the build work the wheelhouse's locks leave (no network), one row
    per sdist × target group with its builder, the runner it needs and whether this machine
    is one. With ``shards``, every build the locks imply (done or not) with its shard."""
    wh = Wheelhouse(root)
    paths = wh.lock_paths()
    if not paths:
        raise UsageError(
            f"no locks in {wh.root}", hint="run 'wheelport lock' first", path=str(root)
        )
    targets = parse_targets([p.name[len("pylock.") : -len(".toml")] for p in paths])
    locks = {t.identifier: read_lock(wh.lock_path(t.identifier)) for t in targets}
    jobs = plan_jobs(wh, locks, targets, builders or Builders(), host_target(),
                     remaining=shards is None)  # fmt: skip
    rows = [j.to_json() for j in jobs]
    if shards is not None:
        for row, k in zip(rows, assign_shards(jobs, shards), strict=True):
            row["shard"] = f"{k}/{shards}"
    return rows


def _left_to_others(
    wh: Wheelhouse,
    locks: Mapping[str, Pylock],
    by_id: Mapping[str, Target],
    builders: Builders,
    host: Target,
    shard: tuple[int, int] | None,
    only_targets: Collection[str],
) -> dict[tuple[str, str], str]:
    """(sdist sha256, target) → who builds it instead of this run: ``shard k/N`` or another
    run's ``--only-target``. Cut from every build the locks imply, so it is stable."""
    left: dict[tuple[str, str], str] = {}
    mine: list[PlannedJob] = []
    for job in plan_jobs(wh, locks, list(by_id.values()), builders, host, remaining=False):
        kept = tuple(t for t in job.targets if not only_targets or t.identifier in only_targets)
        for t in job.targets:
            if t not in kept:
                left[job.need.sdist_sha256, t.identifier] = "another run (--only-target)"
        if kept:
            mine.append(dataclasses.replace(job, targets=kept))
    if shard is not None:
        index, count = shard
        for job, k in zip(mine, assign_shards(mine, count), strict=True):
            if k != index:
                for t in job.targets:
                    left[job.need.sdist_sha256, t.identifier] = f"shard {k}/{count}"
    return left


# -- the builders this machine offers ---------------------------------------------------------------


class BuildSettings(Protocol):
    """What the builders read of a project's settings: a :class:`~wheelport.config.Config`,
    or the config file alone (:class:`~wheelport.config.FileSettings`, for ``wheelport plan``,
    which needs no requirements)."""

    @property
    def images(self) -> Mapping[str, str]: ...

    @property
    def build_system_packages(self) -> Mapping[str, tuple[str, ...]]: ...


def default_builders(
    config: BuildSettings,
    *,
    engine: str | None = None,
    local: Sequence[LocalImage] | None = None,
    pinned: Mapping[str, Mapping[str, str]] | None = None,
) -> Builders:
    """The native builder, plus the container builder when an engine is installed.

    Each Linux target's image: ``[tool.wheelport] images`` > a present local image serving
    it (:func:`images.local_images`, looked up once; ``local`` gives them instead) >
    cibuildwheel's pinned image (``pinned`` replaces that table), pulled by the engine when
    absent. A target none serves, or whose arch this host cannot run, gets an
    :class:`ImageSlot` saying what is missing and the command that adds it.
    """
    try:
        from wheelport.builders import container, images
    except ImportError:  # pragma: no cover
        return Builders()
    engine = engine or container.detect_engine()
    if engine is None:
        return Builders()
    found = engine
    overrides = dict(config.images)
    present: list[Sequence[LocalImage]] = [local] if local is not None else []

    def local_list() -> Sequence[LocalImage]:
        if not present:
            present.append(tuple(images.local_images(found)))
        return present[0]

    def packages_for(project: str) -> tuple[str, ...]:
        name = canonicalize_name(project)
        return config.build_system_packages.get(name, DEFAULT_SYSTEM_PACKAGES.get(name, ()))

    def choose(target: Target) -> images.ImageChoice:
        images.emulation_for(target.arch)  # raises naming the missing piece
        try:
            return images.choose_image(target, overrides, local=local_list(), pinned=pinned)
        except WheelportError:  # again, to name a CPython found here in the command
            return images.choose_image(
                target, overrides, local=local_list(), pinned=pinned,
                interpreter=_host_interpreter(target),
            )  # fmt: skip

    def slot(target: Target, project: str) -> ImageSlot:
        if target.os not in ("manylinux", "musllinux"):
            return ImageSlot(None, f"{target.identifier} has no manylinux/musllinux policy")
        try:
            choice = choose(target)
        except WheelportError as exc:
            return ImageSlot(None, str(exc))
        pkgs = sorted(set(packages_for(project)))
        label = (
            images.builder_tag(choice.image, pkgs, images.builder_template())
            if pkgs
            else choice.image
        )
        return ImageSlot(label, "", images.policy_glibc(choice.policy), choice.pythons)

    def run(
        sdist: Path, targets: Sequence[Target], wheels: Path, out: Path, logs: Path
    ) -> Mapping[str, Path]:
        choice = choose(targets[0])
        image = choice.image
        if choice.source != "local":  # a local image is present: it was listed
            # the engine's pull, the only network access; a failure says what to do instead
            hint = images.image_hint(targets[0], _host_interpreter(targets[0]))
            container.pull_image(found, image, hint=hint)
        pkgs = packages_for(_sdist_project(sdist))
        if pkgs:
            image = images.ensure_builder_image(image, pkgs, found, log_dir=logs)
        return container.build_wheels_in_container(
            sdist, targets, image=image, deps_dir=wheels, out_dir=out, log_dir=logs, engine=found
        )

    return Builders(container=run, container_slot=slot)


def _host_interpreter(target: Target) -> Interpreter | None:
    """A pyenv CPython of the target's version on this host, to suggest for a local image;
    None when there is none."""
    from wheelport.builders import images

    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    major, minor = target.python_version
    found = [p for p in root.glob(f"{major}.{minor}.*") if p.name.split(".")[2].isdigit()]
    for prefix in sorted(found, key=lambda p: int(p.name.split(".")[2]), reverse=True):
        try:
            return images.inspect_interpreter(prefix)
        except WheelportError:
            continue
    return None


def _sdist_project(sdist: Path) -> str:
    from packaging.utils import parse_sdist_filename

    try:
        return str(parse_sdist_filename(sdist.name)[0])
    except Exception:
        return sdist.name.split("-")[0]
