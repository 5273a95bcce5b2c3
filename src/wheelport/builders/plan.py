"""Which sdists must be built for which targets — pure decisions over locks and wheels.

A package whose lock entry for a target has an ``sdist`` and no wheel needs a build for
that target. One sdist (by sha256) is built once per *builder*: the native builder once
for every target it can serve (a pure-Python result serves all of them), a container
builder once per Linux target policy.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from packaging.pylock import PackageWheel, Pylock

from wheelport.targets import Target

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: files whose presence in an sdist means it compiles something
COMPILED_MARKERS = (
    ".c",
    ".cc",
    ".cpp",
    ".cxx",
    ".pyx",
    ".f90",
    ".rs",
    "Cargo.toml",
    "CMakeLists.txt",
    "meson.build",
)
DEFAULT_BUILD_REQUIRES = ("setuptools>=40.8.0",)


@dataclass(frozen=True)
class BuildNeed:
    """An sdist and the targets whose locks name it (no wheel yet)."""

    name: str
    version: str
    sdist_path: str  # relative to the wheelhouse
    sdist_sha256: str
    targets: tuple[str, ...]
    #: the sdist's size in bytes as its lock records it (0: not recorded)
    size: int = 0


#: text in an sdist's top-level build files that says it builds for the stable ABI (abi3):
#: setuptools' ``py_limited_api``, scikit-build-core's ``wheel.py-api``, meson-python's
#: ``limited-api``, PyO3's ``abi3`` features
ABI3_MARKERS = re.compile(
    r"py[_-]limited[_-]api\s*[=:]\s*['\"]?(?:cp3|true|True)"
    r"|py-api\s*=\s*['\"]cp3"
    r"|limited-api\s*=\s*true"
    r"|['\"]abi3(?:-py3\d+)?['\"]"
)
ABI3_FILES = ("pyproject.toml", "setup.cfg", "setup.py", "Cargo.toml", "meson.build")


@dataclass(frozen=True)
class SdistInfo:
    build_requires: tuple[str, ...]
    compiled: bool
    #: its build files ask for the stable ABI: one wheel is expected to serve every CPython
    abi3: bool = False


def needs_from_locks(
    locks: Mapping[str, object], present: Callable[[str], bool] = lambda path: True
) -> list[BuildNeed]:
    """Every (sdist → targets) pair where a lock's package has an sdist and no wheel — or a
    wheel wheelport built (no URL) that is no longer ``present``."""
    by_sdist: dict[str, dict[str, object]] = {}
    for target_id, lock in locks.items():
        for pkg in lock.packages:  # type: ignore[attr-defined]
            if pkg.sdist is None or not pkg.sdist.path:
                continue
            if pkg.wheels and (pkg.wheels[0].url or present(str(pkg.wheels[0].path))):
                continue
            sha = pkg.sdist.hashes["sha256"]
            entry = by_sdist.setdefault(
                sha,
                {
                    "name": str(pkg.name),
                    "version": str(pkg.version),
                    "path": pkg.sdist.path,
                    "size": pkg.sdist.size or 0,
                    "targets": [],
                },
            )
            entry["targets"].append(target_id)  # type: ignore[attr-defined]
    return [
        BuildNeed(
            str(e["name"]),
            str(e["version"]),
            str(e["path"]),
            sha,
            tuple(e["targets"]),  # type: ignore[arg-type]
            int(e["size"]),  # type: ignore[call-overload]
        )
        for sha, e in sorted(by_sdist.items(), key=lambda kv: str(kv[1]["name"]))
    ]


def read_sdist_info(sdist: Path) -> SdistInfo:
    """``build-system`` of an sdist's pyproject.toml (PEP 517 defaults when absent) and whether
    it contains sources that compile."""
    from wheelport.index.metadata import sdist_members

    names: list[str] = []
    top = sdist_members(sdist, ABI3_FILES, listing=names)
    pyproject = top.get("pyproject.toml")
    build_files = list(top.values())
    requires: tuple[str, ...] = DEFAULT_BUILD_REQUIRES
    if pyproject is not None:
        try:
            data = tomllib.loads(pyproject.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            data = {}
        bs = data.get("build-system", {})
        if "requires" in bs:
            requires = tuple(str(r) for r in bs["requires"])
    compiled = any(
        n.endswith(COMPILED_MARKERS) or n.rsplit("/", 1)[-1] in COMPILED_MARKERS for n in names
    )
    abi3 = compiled and any(
        ABI3_MARKERS.search(content.decode("utf-8", "replace")) for content in build_files
    )
    return SdistInfo(requires, compiled, abi3)


@dataclass(frozen=True)
class ImageSlot:
    """The image that would build a Linux target's compiled wheels, or why there is none.

    ``label`` names the image by content (a builder image's tag); None when no image can
    build the target, and then ``reason`` says the missing piece and the command that adds
    it. ``glibc`` is the image's policy glibc (None: musllinux or unknown) and ``pythons``
    the interpreters it carries (None: every CPython, as cibuildwheel's images).
    """

    label: str | None
    reason: str = ""
    glibc: tuple[int, int] | None = None
    pythons: tuple[str, ...] | None = None

    def can_build(self, target: Target) -> bool:
        """Whether this image also builds an honest wheel for ``target``: it carries the
        target's interpreter and its glibc is not newer than the target's policy."""
        if self.label is None or (self.pythons is not None and target.abi not in self.pythons):
            return False
        if target.os != "manylinux":
            return False
        return (
            self.glibc is not None
            and target.policy_version is not None
            and self.glibc <= target.policy_version
        )


def group_container_builds(
    targets: Iterable[Target], slots: Mapping[str, ImageSlot], *, abi3: bool
) -> list[tuple[ImageSlot, list[Target]]]:
    """One container build per interpreter (or one for all, abi3), not one per target.

    Targets of one OS family, arch and interpreter — every CPython when the sdist builds for
    the stable ABI — share one build when one of their images can build for all of them
    (:meth:`ImageSlot.can_build`: their interpreters, glibc not newer than their policies),
    so its wheel's tag is accepted by each. Of their own images, the one that builds for the
    most of them is used (then the lowest policy's); each group's first target is one whose
    own image it is. Targets whose slot has no image are left out.
    """
    order = sorted(
        (t for t in targets if slots[t.identifier].label is not None),
        key=lambda t: (t.policy_version or (0, 0), t.python_version, t.identifier),
    )
    by_key: dict[tuple[str, str, str], list[Target]] = {}
    for t in order:
        key = (t.os, t.arch, "abi3" if abi3 and not t.free_threaded else t.abi)
        by_key.setdefault(key, []).append(t)
    groups: list[tuple[ImageSlot, list[Target]]] = []
    for remaining in by_key.values():
        while remaining:

            def takes(slot: ImageSlot, rest: list[Target] = remaining) -> list[Target]:
                return [
                    t for t in rest if slots[t.identifier].label == slot.label or slot.can_build(t)
                ]

            lead = max(remaining, key=lambda t: len(takes(slots[t.identifier])))  # first on ties
            slot = slots[lead.identifier]
            members = takes(slot)
            members.remove(lead)
            groups.append((slot, [lead, *members]))
            remaining = [t for t in remaining if t is not lead and t not in members]
    return groups


@dataclass
class Coverage:
    """package × target → ("downloaded" | "built" | "missing", detail)."""

    cells: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)

    def set(self, package: str, target: str, state: str, detail: str = "") -> None:
        self.cells.setdefault(package, {})[target] = (state, detail)

    def red(self) -> list[tuple[str, str, str]]:
        return [
            (pkg, tgt, detail)
            for pkg, row in sorted(self.cells.items())
            for tgt, (state, detail) in row.items()
            if state == "missing"
        ]

    def to_json(self) -> dict[str, dict[str, dict[str, str]]]:
        return {
            pkg: {tgt: {"state": s, "detail": d} for tgt, (s, d) in row.items()}
            for pkg, row in sorted(self.cells.items())
        }


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
class StageResult:
    """What the build stage did: one outcome per build or reuse, the coverage, and the
    locks (changed in memory) with the targets whose lock now points at a built wheel."""

    outcomes: list[BuildOutcome] = field(default_factory=list)
    coverage: Coverage = field(default_factory=Coverage)
    locks: dict[str, Pylock] = field(default_factory=dict)
    rewritten: set[str] = field(default_factory=set)

    def point_at(self, tid: str, need: BuildNeed, rel: str, size: int, sha: str) -> None:
        """The target's lock installs the package from the built wheel (its real hash)."""
        lock = self.locks[tid]
        name = rel.rsplit("/", 1)[-1]
        wheel = PackageWheel(name=name, path=rel, size=size, hashes={"sha256": sha})
        pkgs = []
        changed = False
        for pkg in lock.packages:
            ours = pkg.sdist is not None and pkg.sdist.hashes.get("sha256") == need.sdist_sha256
            if ours and (not pkg.wheels or pkg.wheels[0].hashes.get("sha256") != sha):
                pkg = dataclasses.replace(pkg, wheels=[wheel])
                changed = True
            pkgs.append(pkg)
        if changed:
            self.locks[tid] = dataclasses.replace(lock, packages=pkgs)
            self.rewritten.add(tid)


def served(root: Path, locks: Mapping[str, Pylock]) -> tuple[StageResult, list[BuildNeed]]:
    """What the locks' wheels serve already (each target's cells ``downloaded``, or ``built``
    for a wheel wheelport built that is present under ``root``), and the builds still needed
    (:func:`needs_from_locks`): none for a wheelhouse of binaries, which then never loads the
    build machinery."""
    result = StageResult(locks=dict(locks))
    for tid, lock in locks.items():
        for pkg in lock.packages:
            if pkg.wheels and (pkg.wheels[0].url or (root / str(pkg.wheels[0].path)).is_file()):
                w = pkg.wheels[0]
                state = "downloaded" if w.url else "built"
                result.coverage.set(str(pkg.name), tid, state, w.name or "")
    return result, needs_from_locks(locks, present=lambda rel: (root / rel).is_file())
