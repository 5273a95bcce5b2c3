"""``wheelport verify --rebuild``: build every built wheel again and compare the bytes.

What a reviewer on the far side of an air gap runs. Each wheel the manifest records as built
is rebuilt offline from the wheelhouse's own sdist and build requirements (``wheels/``, no
index), by the builder the manifest names — natively on this host, or in a container from
the very image named in ``container:<image>`` (never pulled: an absent image is "cannot
rebuild here") — into a temporary directory; the wheelhouse is only read. Each wheel gets
one :class:`RebuildResult`: ``reproduced`` (the same sha256 as recorded), ``differs``
(naming the first member that differs, :func:`~wheelport.reproduce.first_difference`) or
``cannot rebuild here`` (why).

The builders are a :class:`Rebuilders` value (the native builder, a container builder, an
image probe), so tests and other tools can swap them.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name, parse_wheel_filename

from wheelport.builders.kind import NativeBuilder
from wheelport.builders.native import BUILDER as NATIVE
from wheelport.builders.native import build_native
from wheelport.errors import UsageError, VerifyError, WheelportError
from wheelport.manifest import ArtifactRecord, Manifest
from wheelport.reproduce import first_difference
from wheelport.targets import Target, host_target, is_pure, parse_target, wheel_tags
from wheelport.wheelhouse import Wheelhouse, sha256_file

REPRODUCED = "reproduced"
DIFFERS = "differs"
CANNOT = "cannot rebuild here"
CONTAINER_PREFIX = "container:"

#: (sdist, targets, image, build-requirement wheels, out dir, log dir) → target id → wheel
ContainerRebuilder = Callable[[Path, Sequence[Target], str, Path, Path, Path], Mapping[str, Path]]


@dataclass(frozen=True)
class Rebuilders:
    """How wheels are rebuilt here. ``container`` is None when no engine is usable;
    ``image_missing(image)`` says why an image cannot be used (None: it is present)."""

    native: NativeBuilder = build_native
    container: ContainerRebuilder | None = None
    image_missing: Callable[[str], str | None] = lambda image: "no container engine here"


def default_rebuilders(engine: str | None = None) -> Rebuilders:
    """The native builder, plus the container builder when podman or docker is installed.
    Images are looked up, never pulled."""
    from wheelport.builders import container, images

    found = engine or container.detect_engine()
    if found is None:
        return Rebuilders()
    engine_name: str = found

    def build(
        sdist: Path, targets: Sequence[Target], image: str, deps: Path, out: Path, logs: Path
    ) -> Mapping[str, Path]:
        images.emulation_for(targets[0].arch)  # raises naming the missing piece
        return container.build_wheels_in_container(
            sdist, targets, image=image, deps_dir=deps, out_dir=out, log_dir=logs,
            engine=engine_name,
        )  # fmt: skip

    def missing(image: str) -> str | None:
        if images.image_id(engine_name, image) is None:
            return f"image {image} is not on this machine ({engine_name}; not pulled)"
        return None

    return Rebuilders(container=build, image_missing=missing)


@dataclass(frozen=True)
class RebuildResult:
    """One built wheel, rebuilt (or not) here."""

    wheel: str
    package: str
    builder: str
    status: str
    detail: str = ""
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "wheel": self.wheel,
            "package": self.package,
            "builder": self.builder,
            "status": self.status,
            "detail": self.detail,
            "seconds": round(self.seconds, 1),
        }


@dataclass
class RebuildReport:
    wheelhouse: Path
    results: list[RebuildResult] = field(default_factory=list)
    #: where the rebuilds' logs were kept (only when some wheel was not reproduced)
    log_dir: Path | None = None

    @property
    def differs(self) -> list[RebuildResult]:
        return [r for r in self.results if r.status == DIFFERS]

    @property
    def ok(self) -> bool:
        return not self.differs

    def to_json(self) -> dict[str, Any]:
        return {
            "results": [r.to_json() for r in self.results],
            "reproduced": sum(r.status == REPRODUCED for r in self.results),
            "differs": len(self.differs),
            "cannot": sum(r.status == CANNOT for r in self.results),
            "log_dir": str(self.log_dir) if self.log_dir else None,
            "ok": self.ok,
        }

    def error(self) -> VerifyError:
        first = self.differs[0]
        more = len(self.differs) - 1
        return VerifyError(
            f"{first.wheel} does not rebuild to the same bytes: {first.detail}"
            + (f" (and {more} more)" if more else ""),
            hint="the wheel is not what its sdist builds to here; see the table",
            package=first.package,
            path=first.wheel,
        )


def built_wheels(
    manifest: Manifest, packages: Sequence[str] = ()
) -> list[tuple[str, ArtifactRecord]]:
    """(path, record) of every built wheel the manifest records, by path; only those of
    ``packages`` when given (a name no built wheel has is a :class:`UsageError`)."""
    wanted = {canonicalize_name(p) for p in packages}
    out: list[tuple[str, ArtifactRecord]] = []
    seen: set[str] = set()
    for rel, rec in sorted(manifest.artifacts.items()):
        if not (rec.origin.is_build and rel.endswith(".whl")):
            continue
        name = canonicalize_name(parse_wheel_filename(rel.rsplit("/", 1)[-1])[0])
        seen.add(name)
        if not wanted or name in wanted:
            out.append((rel, rec))
    unknown = sorted(wanted - seen)
    if unknown:
        raise UsageError(
            f"no wheel of {unknown[0]} was built in this wheelhouse",
            hint="name a package whose wheel wheelport built (its origin is 'build')",
            package=unknown[0],
        )
    return out


def rebuild(
    root: Path,
    packages: Sequence[str] = (),
    *,
    rebuilders: Rebuilders | None = None,
    log_dir: Path | None = None,
) -> RebuildReport:
    """Rebuild the built wheels of the wheelhouse at ``root`` (those of ``packages`` when
    given) and compare each with its recorded sha256. Builds run one at a time, offline,
    holding the wheelhouse's shared lock; nothing in the wheelhouse is written. Logs go to
    ``log_dir``, else to a temporary directory kept only when some wheel was not reproduced.
    """
    wh = Wheelhouse(root)
    if not wh.manifest_path.is_file():
        raise UsageError(
            f"not a wheelhouse: {root} (no wheelport.json)",
            hint="run 'wheelport sync' first",
            path=str(root),
        )
    rebuilders = rebuilders or default_rebuilders()
    own_logs = log_dir is None
    logs = Path(tempfile.mkdtemp(prefix="wheelport-rebuild-logs-")) if own_logs else log_dir
    assert logs is not None
    report = RebuildReport(wh.root)
    with wh.locked("verify", shared=True):
        manifest = wh.load_manifest()
        for rel, rec in built_wheels(manifest, packages):
            start = time.monotonic()
            status, detail = _rebuild_one(wh, manifest, rel, rec, rebuilders, logs)
            report.results.append(
                RebuildResult(
                    wheel=rel,
                    package=str(canonicalize_name(parse_wheel_filename(rel.rsplit("/", 1)[-1])[0])),
                    builder=rec.origin.builder or "?",
                    status=status,
                    detail=detail,
                    seconds=time.monotonic() - start,
                )
            )
    if all(r.status == REPRODUCED for r in report.results) and own_logs:
        shutil.rmtree(logs, ignore_errors=True)
    else:
        report.log_dir = logs
    return report


def _rebuild_one(
    wh: Wheelhouse,
    manifest: Manifest,
    rel: str,
    rec: ArtifactRecord,
    rebuilders: Rebuilders,
    logs: Path,
) -> tuple[str, str]:
    """(status, detail) of one built wheel."""
    origin = rec.origin
    name = rel.rsplit("/", 1)[-1]
    why = _missing_inputs(wh, manifest, rec)
    if why:
        return CANNOT, why
    sdist = wh.root / str(origin.sdist)
    with tempfile.TemporaryDirectory(prefix="wheelport-rebuild-") as tmp:
        out = Path(tmp)
        try:
            if origin.builder == NATIVE:
                if not is_pure(name) and not _host_builds(name):
                    return CANNOT, (
                        f"built natively for {_interpreters(name)}; this host is "
                        f"{host_target().identifier}"
                    )
                rebuilt = rebuilders.native(sdist, wheels_dir=wh.wheels, out_dir=out, log_dir=logs)
            elif origin.builder and origin.builder.startswith(CONTAINER_PREFIX):
                image = origin.builder[len(CONTAINER_PREFIX) :]
                if rebuilders.container is None:
                    return CANNOT, "no container engine here (install podman or docker)"
                missing = rebuilders.image_missing(image)
                if missing:
                    return CANNOT, missing
                targets = _container_targets(name, origin.targets)
                if not targets:
                    return CANNOT, "the manifest names no target this wheel was built for"
                built = rebuilders.container(sdist, targets, image, wh.wheels, out, logs)
                rebuilt = built[targets[0].identifier]
            else:
                return CANNOT, f"unknown builder {origin.builder!r}"
        except WheelportError as exc:
            return CANNOT, f"the rebuild failed: {exc.message}"
        if rebuilt.name != name:
            return DIFFERS, f"the rebuild made {rebuilt.name}"
        if sha256_file(rebuilt) == rec.sha256:
            return REPRODUCED, ""
        present = wh.root / rel
        if not present.is_file():
            return DIFFERS, "another sha256 (the recorded wheel is missing, so no member named)"
        return DIFFERS, first_difference(present, rebuilt) or "another sha256 than recorded"


def _missing_inputs(wh: Wheelhouse, manifest: Manifest, rec: ArtifactRecord) -> str:
    """Why the inputs of a rebuild are not all here (empty when they are): the sdist with
    its recorded sha256, and the build requirements recorded for it."""
    origin = rec.origin
    if not origin.sdist or not origin.sdist_sha256:
        return "the manifest does not say which sdist it was built from"
    sdist = wh.root / origin.sdist
    if not sdist.is_file():
        return f"its sdist {origin.sdist} is not in the wheelhouse"
    if sha256_file(sdist) != origin.sdist_sha256:
        return f"its sdist {origin.sdist} is not the one it was built from (another sha256)"
    for entries in manifest.build_deps.get(origin.sdist_sha256, {}).values():
        for entry in entries:
            if not (wh.root / entry.file).is_file():
                return (
                    f"its build requirement {entry.name} {entry.version} ({entry.file}) is missing"
                )
    return ""


def _host_builds(wheel: str) -> bool:
    """Can this host's native build make ``wheel`` (its interpreter and platform)?"""
    host = host_target()
    return any(host.supports(tag) for tag in wheel_tags(wheel))


def _interpreters(wheel: str) -> str:
    return ", ".join(sorted({f"{t.interpreter}-{t.platform}" for t in wheel_tags(wheel)}))


def _container_targets(wheel: str, recorded: Sequence[str]) -> list[Target]:
    """The target to rebuild a container-built wheel for: the one whose interpreter built it.

    An abi3 (or ``none``) wheel serves later interpreters too; cibuildwheel built it with the
    lowest of its targets, so that one is used."""
    targets: list[Target] = []
    for text in recorded:
        try:
            targets.append(parse_target(text))
        except WheelportError:
            continue
    if not targets:
        return []
    if all(t.abi in ("abi3", "none") for t in wheel_tags(wheel)):
        return [min(targets, key=lambda t: (t.python_version, t.identifier))]
    return [sorted(targets, key=lambda t: t.identifier)[0]]
