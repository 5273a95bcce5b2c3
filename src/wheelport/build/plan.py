"""Which sdists must be built for which targets — pure decisions over locks and wheels.

A package whose lock entry for a target has an ``sdist`` and no wheel needs a build for
that target. One sdist (by sha256) is built once per *builder*: the native builder once
for every target it can serve (a pure-Python result serves all of them), a container
builder once per Linux target policy.
"""

from __future__ import annotations

import sys
import tarfile
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from packaging.tags import Tag
from packaging.utils import parse_wheel_filename

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


@dataclass(frozen=True)
class SdistInfo:
    build_requires: tuple[str, ...]
    backend: str
    compiled: bool


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
                    "targets": [],
                },
            )
            entry["targets"].append(target_id)  # type: ignore[attr-defined]
    return [
        BuildNeed(str(e["name"]), str(e["version"]), str(e["path"]), sha, tuple(e["targets"]))  # type: ignore[arg-type]
        for sha, e in sorted(by_sdist.items(), key=lambda kv: str(kv[1]["name"]))
    ]


def read_sdist_info(sdist: Path) -> SdistInfo:
    """``build-system`` of an sdist's pyproject.toml (PEP 517 defaults when absent) and whether
    it contains sources that compile."""
    pyproject: bytes | None = None
    names: list[str] = []
    if sdist.name.endswith(".zip"):
        with zipfile.ZipFile(sdist) as zf:
            names = zf.namelist()
            for n in names:
                if n.count("/") == 1 and n.endswith("/pyproject.toml"):
                    pyproject = zf.read(n)
    else:
        with tarfile.open(sdist) as tf:
            for m in tf:
                names.append(m.name)
                if m.isfile() and m.name.count("/") == 1 and m.name.endswith("/pyproject.toml"):
                    fh = tf.extractfile(m)
                    pyproject = fh.read() if fh else None
    requires: tuple[str, ...] = DEFAULT_BUILD_REQUIRES
    backend = "setuptools.build_meta:__legacy__"
    if pyproject is not None:
        try:
            data = tomllib.loads(pyproject.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            data = {}
        bs = data.get("build-system", {})
        if "requires" in bs:
            requires = tuple(str(r) for r in bs["requires"])
            backend = str(bs.get("build-backend", "setuptools.build_meta:__legacy__"))
    compiled = any(
        n.endswith(COMPILED_MARKERS) or n.rsplit("/", 1)[-1] in COMPILED_MARKERS for n in names
    )
    return SdistInfo(requires, backend, compiled)


def wheel_tags(filename: str) -> frozenset[Tag]:
    return parse_wheel_filename(filename)[3]


def is_pure(filename: str) -> bool:
    """A wheel any Python 3 on any platform installs (py3-none-any, py2.py3-none-any)."""
    return all(
        t.abi == "none" and t.platform == "any" and t.interpreter.startswith("py")
        for t in wheel_tags(filename)
    )


def served_targets(filename: str, targets: Iterable[Target]) -> list[Target]:
    """The targets whose tag lists accept a wheel."""
    tags = wheel_tags(filename)
    return [t for t in targets if any(tag in t.tag_priority for tag in tags)]


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
