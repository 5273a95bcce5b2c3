"""``wheelport sync``: lock (if stale) → fetch → build → index, idempotent.

Every stage does only what is missing: fresh locks are not re-resolved, present and
recorded files are not downloaded, a wheel already built from the same sdist (sha256) for a
target by the same builder is not rebuilt, and the index only rewrites changed pages.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import tempfile
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.pylock import PackageWheel, Pylock
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from wheelport import api
from wheelport.builders.native import BUILDER as NATIVE
from wheelport.builders.native import build_native
from wheelport.builders.plan import (
    BuildNeed,
    Coverage,
    ImageSlot,
    SdistInfo,
    is_pure,
    needs_from_locks,
    read_sdist_info,
    served_targets,
)
from wheelport.builders.planner import NO_ENGINE, PlannedJob, assign_shards, decide, host_serves
from wheelport.config import Config, SourcedRequirement
from wheelport.errors import BuildError, JobError, UsageError, WheelportError
from wheelport.fetch import (
    Artifact,
    FetchReporter,
    FetchResult,
    fetch,
    fetch_artifacts,
    recheck,
)
from wheelport.index.client import IndexClient
from wheelport.lock import check_locks, dumps, install_list, read_lock
from wheelport.resolve import Policy, Reporter, TargetFailure, resolve_target
from wheelport.targets import Target, host_target, parse_targets
from wheelport.wheelhouse import Wheelhouse, atomic_write_text, sha256_file

if TYPE_CHECKING:
    from wheelport.builders.images import Interpreter, LocalImage


@dataclass
class BuildOutcome:
    package: str
    sdist: str
    builder: str
    wheel: str | None
    targets: list[str]
    skipped: bool = False
    error: str | None = None


@dataclass
class SyncResult:
    wheelhouse: Path
    relocked: bool
    fetched: FetchResult
    builds: list[BuildOutcome]
    coverage: Coverage
    targets: list[str]
    index: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.coverage.red()

    def to_json(self) -> dict[str, Any]:
        return {
            "wheelhouse": str(self.wheelhouse),
            "relocked": self.relocked,
            "targets": self.targets,
            "fetch": self.fetched.to_json(),
            "builds": [dataclasses.asdict(b) for b in self.builds],
            "coverage": self.coverage.to_json(),
            "missing": [
                {"package": p, "target": t, "reason": d} for p, t, d in self.coverage.red()
            ],
            "index": self.index,
            "ok": self.ok,
        }


#: System packages (Debian names, for the local base image) that well-known sdists need in
#: their container build; ``[tool.wheelport] build-system-packages`` overrides per project.
DEFAULT_SYSTEM_PACKAGES: dict[str, tuple[str, ...]] = {
    "lxml": ("libxml2-dev", "libxslt1-dev"),
}

#: (sdist, targets, wheels dir, out dir, log dir) -> target identifier → wheel path. The
#: targets share one image (their first one's); one run builds once per interpreter.
ContainerBuilder = Callable[[Path, Sequence[Target], Path, Path, Path], Mapping[str, Path]]


@dataclass(frozen=True)
class Builders:
    """How sdists become wheels. ``container`` is None when no engine is usable."""

    native: bool = True
    container: ContainerBuilder | None = None
    #: (target, project) → the image that would build it (its tag names its content), or
    #: why there is none
    container_slot: Callable[[Target, str], ImageSlot] = lambda t, p: ImageSlot(None, NO_ENGINE)


def sync(
    config: Config,
    *,
    client: IndexClient | None = None,
    reporter: Reporter | None = None,
    fetch_reporter: FetchReporter | None = None,
    builders: Builders | None = None,
    allow_missing: bool = False,
    log: Callable[[str], None] = lambda s: None,
    shard: tuple[int, int] | None = None,
    only_targets: Sequence[str] = (),
) -> SyncResult:
    """Make the wheelhouse complete for the config's targets. Raises on failure unless
    ``allow_missing`` (then red coverage cells are reported, not raised).

    ``shard`` (I, N) and ``only_targets`` build only part of the build work (every lock is
    still written and every download made): a partial wheelhouse for ``wheelport merge``."""
    targets = parse_targets(list(config.targets))
    only = {t.identifier for t in parse_targets(list(only_targets))} if only_targets else set()
    if only - {t.identifier for t in targets}:
        raise UsageError(
            f"--only-target {sorted(only - {t.identifier for t in targets})[0]} is not a target "
            "of this sync",
            hint="name one of the -t targets",
        )
    wh = Wheelhouse(config.output)
    # exclusive: a second sync (or lock, merge into it) waits; provision/verify/bundle wait too
    with wh.locked("sync"):
        own = client is None
        client = client or api.make_client(config)
        try:
            digest = config.inputs_digest()
            stale = [s for s in check_locks(wh, targets, digest) if s.reason]
            relocked = bool(stale)
            failed: list[TargetFailure] = []
            if stale:
                log(f"locking {len(targets)} target(s) ({stale[0].reason})")
                locker = api.lock
                if config.from_lock is not None:  # lock --from: the pins of another tool's lock
                    locker = functools.partial(api.lock_from, source=config.from_lock)
                failed = locker(
                    config,
                    client=client,
                    reporter=reporter,
                    targets=targets,
                    allow_missing=allow_missing,
                ).failed
            unlocked = {f.target for f in failed}
            locked = [t for t in targets if t not in unlocked]
            locks = {t.identifier: read_lock(wh.lock_path(t.identifier)) for t in locked}
            recheck(wh)  # re-hash what is there; refuse escaping paths; damaged files are redone
            fetched = fetch(
                wh, list(locks.values()), client, jobs=config.jobs, reporter=fetch_reporter
            )
            builders = builders or default_builders(config)
            outcomes, coverage = build_stage(wh, locked, locks, client, config, builders, log=log,
                                             shard=shard, only_targets=only)  # fmt: skip
            for f in failed:
                coverage.set(
                    f.error.package or "(all)",
                    f.target.identifier,
                    "missing",
                    f"not locked: {f.error.message}",
                )
            finish(wh, locked, locks, inputs_digest=digest, dropped=unlocked)
        finally:
            if own:
                client.close()
        from wheelport.index.writer import write_index

        report = write_index(wh.root, manifest=wh.load_manifest())
        result = SyncResult(
            wheelhouse=wh.root,
            relocked=relocked,
            fetched=fetched,
            builds=outcomes,
            coverage=coverage,
            targets=[t.identifier for t in targets],
            index=_report_json(report),
        )
        if result.coverage.red() and not allow_missing:
            pkg, tgt, why = result.coverage.red()[0]
            more = len(result.coverage.red()) - 1
            err = JobError(
                f"{pkg} cannot be served for {tgt}: {why}"
                + (f" (and {more} more missing)" if more else ""),
                hint="see the coverage table; --allow-missing finishes anyway",
                package=pkg,
                target=tgt,
            )
            err.result = result  # type: ignore[attr-defined]
            raise err
        return result


def _report_json(report: object) -> dict[str, Any]:
    if dataclasses.is_dataclass(report) and not isinstance(report, type):
        return {
            k: (
                v
                if isinstance(v, int | str | bool)
                else len(v)
                if hasattr(v, "__len__")
                else str(v)
            )
            for k, v in dataclasses.asdict(report).items()
        }
    return {}


def default_builders(
    config: Config,
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

    return Builders(native=True, container=run, container_slot=slot)


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


# -- build stage --------------------------------------------------------------------------------


def _prior_builds(manifest: Mapping[str, Any], sdist_sha: str) -> dict[str, tuple[str, str]]:
    """target → (wheel path, builder) for wheels already built from this sdist."""
    out: dict[str, tuple[str, str]] = {}
    for path, rec in manifest.get("artifacts", {}).items():
        origin = rec.get("origin", {})
        if origin.get("kind") == "build" and origin.get("sdist_sha256") == sdist_sha:
            for t in origin.get("targets", []):
                out[t] = (path, origin.get("builder", ""))
    return out


def _serving_build(
    manifest: Mapping[str, Any], sdist_sha: str, target: Target, wh: Wheelhouse
) -> tuple[str, str] | None:
    """(wheel path, builder) of a present container-built wheel of this sdist whose tags
    ``target`` accepts (best-ranked), or None."""
    best: tuple[int, str, str] | None = None
    for path, rec in manifest.get("artifacts", {}).items():
        origin = rec.get("origin", {})
        builder = str(origin.get("builder", ""))
        if (
            origin.get("kind") != "build"
            or origin.get("sdist_sha256") != sdist_sha
            or not builder.startswith("container:")
            or not (wh.root / path).is_file()
        ):
            continue
        rank = target.wheel_rank(Path(path).name)
        if rank is not None and (best is None or rank < best[0]):
            best = (rank, str(path), builder)
    return (best[1], best[2]) if best else None


def build_stage(
    wh: Wheelhouse,
    targets: Sequence[Target],
    locks: dict[str, Pylock],
    client: IndexClient,
    config: Config,
    builders: Builders,
    *,
    log: Callable[[str], None] = lambda s: None,
    shard: tuple[int, int] | None = None,
    only_targets: Collection[str] = (),
) -> tuple[list[BuildOutcome], Coverage]:
    """Build every sdist some target needs; rewrite those targets' locks to the built wheels.

    With ``shard`` (I, N) only the I-th of N balanced parts of the whole build plan is built
    (:func:`~wheelport.builders.planner.assign_shards`), with ``only_targets`` only the jobs'
    parts for those targets; the other cells are ``deferred`` (left to another run)."""
    by_id = {t.identifier: t for t in targets}
    coverage = Coverage()
    for tid, lock in locks.items():
        for pkg in lock.packages:
            if pkg.wheels and (pkg.wheels[0].url or (wh.root / str(pkg.wheels[0].path)).is_file()):
                w = pkg.wheels[0]
                coverage.set(str(pkg.name), tid, "downloaded" if w.url else "built", w.name or "")
    needs = needs_from_locks(locks, present=lambda rel: (wh.root / rel).is_file())
    outcomes: list[BuildOutcome] = []
    if not needs:
        return outcomes, coverage
    manifest = wh.load_manifest()
    host = host_target()
    left: dict[tuple[str, str], str] = {}
    if shard is not None or only_targets:
        left = _left_to_others(wh, locks, by_id, builders, host, shard, only_targets)
    jobs: list[tuple[BuildNeed, str, list[Target]]] = []  # (need, builder, targets it is for)
    reused = False
    for need in needs:
        prior = _prior_builds(manifest, need.sdist_sha256)
        pending: list[Target] = []
        for tid in need.targets:
            if tid in prior and (wh.root / prior[tid][0]).exists():
                _point_lock_at(wh, locks, tid, need, wh.root / prior[tid][0])
                coverage.set(
                    need.name, tid, "built", f"{Path(prior[tid][0]).name} ({prior[tid][1]})"
                )
                outcomes.append(
                    BuildOutcome(
                        need.name,
                        need.sdist_path,
                        prior[tid][1],
                        prior[tid][0],
                        [tid],
                        skipped=True,
                    )
                )
            elif reuse := _serving_build(manifest, need.sdist_sha256, by_id[tid], wh):
                # a wheel built before (abi3, or an older policy) whose tags this target takes
                path, builder = reuse
                _record_built(wh, manifest, locks, need, builder, wh.root / path, [by_id[tid]],
                              coverage)  # fmt: skip
                outcomes.append(
                    BuildOutcome(need.name, need.sdist_path, builder, path, [tid], skipped=True)
                )
                reused = True
            elif (need.sdist_sha256, tid) in left:
                coverage.set(need.name, tid, "deferred", f"left to {left[need.sdist_sha256, tid]}")
            else:
                pending.append(by_id[tid])
        if not pending:
            continue
        info = read_sdist_info(wh.root / need.sdist_path)
        for job in decide(need, pending, info, host=host, container=builders.container is not None,
                          slot=builders.container_slot):  # fmt: skip
            if job.here:
                jobs.append((need, job.builder, list(job.targets)))
            else:
                for t in job.targets:
                    coverage.set(need.name, t.identifier, "missing", job.reason)
    if reused:
        wh.save_manifest(manifest)
    if not jobs:
        return outcomes, coverage
    jobs, waits = _prepare_build_deps(wh, jobs, client, host, log=log)
    results = _run_scheduled(wh, jobs, waits, builders, log)
    manifest = wh.load_manifest()
    for need, builder, job_targets, built, err in results:
        if not need.targets:  # a build requirement that had to be built first
            for wheel in sorted(set((built or {}).values())):
                manifest["artifacts"][wh.relative(wheel)] = {
                    "sha256": sha256_file(wheel),
                    "size": wheel.stat().st_size,
                    "origin": {"kind": "build", "builder": builder, "sdist": need.sdist_path,
                               "sdist_sha256": need.sdist_sha256, "targets": [],
                               "for": "build-requirement"},
                }  # fmt: skip
            wheel0 = next(iter(built.values()), None) if built else None
            outcomes.append(
                BuildOutcome(need.name, need.sdist_path, builder, wh.relative(wheel0) if wheel0 else None,
                             [], error=str(err) if err else None)
            )  # fmt: skip
            continue
        if built is None:
            for t in job_targets:
                coverage.set(need.name, t.identifier, "missing", f"build failed: {err}")
            outcomes.append(
                BuildOutcome(
                    need.name,
                    need.sdist_path,
                    builder,
                    None,
                    [t.identifier for t in job_targets],
                    error=str(err),
                )
            )
            continue
        unserved = [t for t in job_targets if t.identifier not in built]
        for wheel in sorted(set(built.values())):
            candidates = [t for t in job_targets if built.get(t.identifier) == wheel]
            serves = (
                served_targets(wheel.name, candidates) if not is_pure(wheel.name) else candidates
            )
            unserved += [t for t in candidates if t not in serves]
            _record_built(wh, manifest, locks, need, builder, wheel, serves, coverage)
            outcomes.append(
                BuildOutcome(need.name, need.sdist_path, builder, wh.relative(wheel),
                             [t.identifier for t in serves])
            )  # fmt: skip
        for t in unserved:
            coverage.set(
                need.name,
                t.identifier,
                "missing",
                f"built {', '.join(sorted({w.name for w in built.values()}))} ({builder}), "
                f"which does not fit {t}; needs a container or native build host",
            )
    wh.save_manifest(manifest)
    return outcomes, coverage


def _record_built(
    wh: Wheelhouse,
    manifest: dict[str, Any],
    locks: dict[str, Pylock],
    need: BuildNeed,
    builder: str,
    wheel: Path,
    serves: Sequence[Target],
    coverage: Coverage,
) -> None:
    """Record one built wheel in the manifest for every target it serves (with the targets
    an earlier run recorded) and point those targets' locks at it."""
    rel = wh.relative(wheel)
    rec = manifest["artifacts"].get(rel, {})
    origin = rec.get("origin", {})
    prev_targets = origin.get("targets", []) if origin.get("kind") == "build" else []
    sha = sha256_file(wheel)
    manifest["artifacts"][rel] = {
        "sha256": sha,
        "size": wheel.stat().st_size,
        "origin": {
            "kind": "build",
            "builder": builder,
            "sdist": need.sdist_path,
            "sdist_sha256": need.sdist_sha256,
            "targets": sorted(set(prev_targets) | {t.identifier for t in serves}),
        },
    }
    for t in serves:
        _point_lock_at(wh, locks, t.identifier, need, wheel, sha=sha)
        coverage.set(need.name, t.identifier, "built", f"{wheel.name} ({builder})")


_host_serves = host_serves


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


def _run_build(
    wh: Wheelhouse,
    job: tuple[BuildNeed, str, list[Target]],
    builders: Builders,
    log: Callable[[str], None],
) -> dict[str, Path]:
    """Run one build job; return target identifier → its wheel, moved into ``wheels/``."""
    need, builder, targets = job
    sdist = wh.root / need.sdist_path
    log(
        f"building {need.name} {need.version} ({builder}) for {', '.join(t.identifier for t in targets)}"
    )
    with tempfile.TemporaryDirectory(prefix="wheelport-out-") as tmp:
        if builder == NATIVE:
            wheel = build_native(sdist, wheels_dir=wh.wheels, out_dir=Path(tmp), log_dir=wh.logs)
            built: Mapping[str, Path] = {t.identifier: wheel for t in targets}
        else:
            assert builders.container is not None
            built = builders.container(sdist, targets, wh.wheels, Path(tmp), wh.logs)
        wh.wheels.mkdir(parents=True, exist_ok=True)
        placed: dict[Path, Path] = {}
        for wheel in sorted(set(built.values())):
            dest = wh.wheels / wheel.name
            tmp_dest = dest.with_name(f".{dest.name}.{os.getpid()}.part")
            shutil.copyfile(wheel, tmp_dest)
            os.replace(tmp_dest, dest)
            placed[wheel] = dest
        return {tid: placed[w] for tid, w in built.items()}


def _point_lock_at(
    wh: Wheelhouse,
    locks: dict[str, Pylock],
    tid: str,
    need: BuildNeed,
    wheel: Path,
    sha: str | None = None,
) -> None:
    """Rewrite a target's lock so the package installs from the built wheel (real hash)."""
    lock = locks[tid]
    sha = sha or sha256_file(wheel)
    pkgs = []
    changed = False
    for pkg in lock.packages:
        if pkg.sdist is not None and pkg.sdist.hashes.get("sha256") == need.sdist_sha256:
            w = PackageWheel(
                name=wheel.name,
                path=f"wheels/{wheel.name}",
                size=wheel.stat().st_size,
                hashes={"sha256": sha},
            )
            if not pkg.wheels or pkg.wheels[0].hashes.get("sha256") != sha:
                pkg = dataclasses.replace(pkg, wheels=[w])
                changed = True
        pkgs.append(pkg)
    if changed:
        new = dataclasses.replace(lock, packages=pkgs)
        new.validate()
        locks[tid] = new
        atomic_write_text(wh.lock_path(tid), dumps(new))


Job = tuple[BuildNeed, str, list[Target]]


def _prepare_build_deps(
    wh: Wheelhouse,
    jobs: Sequence[Job],
    client: IndexClient,
    host: Target,
    *,
    log: Callable[[str], None],
) -> tuple[list[Job], dict[int, set[int]]]:
    """Resolve each build's ``build-system.requires`` for the interpreter that runs the build
    and fetch them into the wheelhouse, so builds install them with no index.

    Wheels are preferred; a requirement that exists only as an sdist becomes a build job of its
    own. Returns every job (the given ones first) and, per job, the jobs it waits for — builds
    follow build-dependency order.
    """
    manifest = wh.load_manifest()
    build_deps: dict[str, Any] = manifest.setdefault("build_deps", {})
    all_jobs: list[Job] = list(jobs)
    waits: dict[int, set[int]] = {i: set() for i in range(len(all_jobs))}
    dep_jobs: dict[tuple[str, str], int] = {}
    resolved: dict[tuple[str, str], list[dict[str, str]]] = {}
    wanted: dict[str, Artifact] = {}
    i = 0
    while i < len(all_jobs):
        need, builder, targets = all_jobs[i]
        # the interpreters that run the build: the host's, or one per Python in the container
        build_targets = (
            [host] if builder == NATIVE else list({t.abi: t for t in reversed(targets)}.values())
        )
        for build_target in build_targets:
            key = (need.sdist_sha256, build_target.identifier)
            if key not in resolved:
                recorded = build_deps.get(need.sdist_sha256, {}).get(build_target.identifier)
                if recorded and all(
                    "path" in r and (wh.root / r["path"]).exists() for r in recorded
                ):
                    resolved[key] = recorded
                else:
                    resolved[key] = _resolve_build_requires(wh, need, build_target, client, wanted)
                    # fetch now: an sdist among them is read (and maybe built) next
                    fetch_artifacts(wh, list(wanted.values()), client)
                    wanted.clear()
                    build_deps.setdefault(need.sdist_sha256, {})[build_target.identifier] = (
                        resolved[key]
                    )
                    log(
                        f"build requirements of {need.name}: "
                        + ", ".join(e["name"] + " " + e["version"] + (" (sdist)" if "sdist" in e else "")
                                    for e in resolved[key])
                    )  # fmt: skip
            for entry in resolved[key]:
                if "sdist" not in entry:
                    continue
                built = _built_from(manifest, entry["sha256"], builder, wh)
                if built:
                    continue
                dkey = (entry["sha256"], builder)
                same = next(
                    (
                        j
                        for j, (n, b, _t) in enumerate(all_jobs)
                        if n.sdist_sha256 == dkey[0] and b == builder
                    ),
                    None,
                )
                if same is not None:
                    dep_jobs.setdefault(dkey, same)
                if dkey not in dep_jobs:
                    dep_need = BuildNeed(
                        entry["name"], entry["version"], entry["sdist"], entry["sha256"], ()
                    )
                    dep_jobs[dkey] = len(all_jobs)
                    waits[len(all_jobs)] = set()
                    all_jobs.append((dep_need, builder, [build_target]))
                waits[i].add(dep_jobs[dkey])
        i += 1
    # fetch_artifacts recorded what it placed; keep those records and add build_deps
    fresh = wh.load_manifest()
    fresh["build_deps"] = build_deps
    wh.save_manifest(fresh)
    return all_jobs, waits


def _resolve_build_requires(
    wh: Wheelhouse,
    need: BuildNeed,
    build_target: Target,
    client: IndexClient,
    wanted: dict[str, Artifact],
) -> list[dict[str, str]]:
    info = read_sdist_info(wh.root / need.sdist_path)
    reqs = [
        SourcedRequirement(Requirement(r), f"{need.sdist_path} build-system.requires")
        for r in info.build_requires
    ]
    try:
        res = resolve_target(client, build_target, reqs, policy=Policy(prefer_binary=True))
    except WheelportError as exc:
        raise BuildError(
            f"{need.name}: cannot resolve its build requirements for {build_target}: {exc.message}",
            package=need.name,
            target=build_target.identifier,
        ) from None
    entries: list[dict[str, str]] = []
    for pin in res.pins.values():
        f = pin.file
        if not f.sha256:
            continue
        folder = "wheels" if f.is_wheel else "sdists"
        wanted[f"{folder}/{f.filename}"] = Artifact(
            f"{folder}/{f.filename}", f.url, f.sha256, f.size
        )
        entry = {"name": str(pin.name), "version": str(pin.version), "sha256": f.sha256}
        entry["path" if f.is_wheel else "sdist"] = f"{folder}/{f.filename}"
        entries.append(entry)
    return entries


def _built_from(
    manifest: Mapping[str, Any], sdist_sha: str, builder: str, wh: Wheelhouse
) -> str | None:
    """A wheel already built from this sdist by this builder and still present."""
    for path, rec in manifest.get("artifacts", {}).items():
        origin = rec.get("origin", {})
        if (
            origin.get("kind") == "build"
            and origin.get("sdist_sha256") == sdist_sha
            and origin.get("builder") == builder
            and (wh.root / path).exists()
        ):
            return str(path)
    return None


def _run_scheduled(
    wh: Wheelhouse,
    jobs: Sequence[Job],
    waits: Mapping[int, set[int]],
    builders: Builders,
    log: Callable[[str], None],
) -> list[tuple[BuildNeed, str, list[Target], dict[str, Path] | None, BuildError | None]]:
    """Run independent builds concurrently (up to the core count); a build starts when the
    builds of its build requirements finished, and fails at once when one of them failed."""
    results: dict[int, tuple[dict[str, Path] | None, BuildError | None]] = {}
    pending = set(range(len(jobs)))
    workers = max(1, min(len(jobs), os.cpu_count() or 2))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wheelport-build") as pool:
        running: dict[Future[dict[str, Path]], int] = {}
        while pending or running:
            for i in sorted(pending):
                deps = waits.get(i, set())
                failed = [d for d in deps if d in results and results[d][0] is None]
                if failed:
                    dep = jobs[failed[0]][0]
                    results[i] = (None, BuildError(
                        f"{jobs[i][0].name}: its build requirement {dep.name} {dep.version} failed to build",
                        package=jobs[i][0].name,
                    ))  # fmt: skip
                    pending.discard(i)
                elif all(d in results for d in deps):
                    running[pool.submit(_run_build, wh, jobs[i], builders, log)] = i
                    pending.discard(i)
            if not running:
                for i in pending:
                    results[i] = (None, BuildError(
                        f"{jobs[i][0].name}: build requirements form a cycle; none of them has a wheel",
                        package=jobs[i][0].name,
                    ))  # fmt: skip
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                i = running.pop(fut)
                try:
                    results[i] = (fut.result(), None)
                except BuildError as exc:
                    results[i] = (None, exc)
    return [(jobs[i][0], jobs[i][1], jobs[i][2], *results[i]) for i in range(len(jobs))]


# -- finishing ----------------------------------------------------------------------------------


def finish(
    wh: Wheelhouse,
    targets: Sequence[Target],
    locks: Mapping[str, Pylock],
    inputs_digest: str | None = None,
    dropped: Collection[Target] = (),
) -> None:
    """Write bootstrap.py and the manifest's ``locks`` section (what bootstrap.py reads);
    ``dropped`` targets (no lock any more) leave the manifest."""
    manifest = wh.load_manifest()
    if inputs_digest is not None:
        manifest["inputs_digest"] = inputs_digest
    gone = {t.identifier for t in dropped}
    manifest["targets"] = sorted(
        (set(manifest.get("targets", [])) | {t.identifier for t in targets}) - gone
    )
    locks_section: dict[str, Any] = manifest.setdefault("locks", {})
    for tid in gone:
        locks_section.pop(tid, None)
    for t in targets:
        path = wh.lock_path(t.identifier)
        locks_section[t.identifier] = lock_summary(t, locks[t.identifier], path)
    wh.save_manifest(manifest)
    install_bootstrap(wh)


def lock_summary(target: Target, lock: Pylock, path: Path) -> dict[str, Any]:
    """The part of a lock an installer needs, in JSON (docs/lock-format.md)."""
    from wheelport.builders.plan import wheel_tags

    m = target.markers
    items = install_list(lock)
    tags = {str(t) for p in items.packages for t in wheel_tags(Path(p["path"]).name)}
    libc = {"manylinux": "glibc", "musllinux": "musl"}.get(target.os)
    return {
        "file": path.name,
        "python_version": m["python_version"],
        "sys_platform": m["sys_platform"],
        "platform_machine": m["platform_machine"],
        "libc": libc,
        "policy": list(target.policy_version) if target.policy_version else None,
        "tags": sorted(tags),
        "packages": list(items.packages),
        "unbuilt": list(items.unbuilt),
        "tools": list(items.tools),
    }


def install_bootstrap(wh: Wheelhouse) -> None:
    from wheelport import bootstrap

    src = Path(bootstrap.__file__).read_text(encoding="utf-8")
    if not wh.bootstrap_path.exists() or wh.bootstrap_path.read_text(encoding="utf-8") != src:
        atomic_write_text(wh.bootstrap_path, src)
