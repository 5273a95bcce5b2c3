"""``wheelport export requirements``: one target's lock as a hash-pinned ``requirements.txt``.

The file serves plain pip on the far side of an air gap::

    pip install --isolated --no-index --find-links WH/wheels --require-hashes -r FILE

Each line is ``name==version`` with the lock's marker (when it has one) and a ``--hash`` for
every wheel in ``wheels/`` of that name and version that the target accepts: the lock's chosen
wheel first, then any other compatible build the manifest records (e.g. after ``merge``), with
the hash recorded when it entered the wheelhouse. pip accepts a file whose
hash is any one of those listed. Sdists are not listed: with ``--no-index --find-links
WH/wheels`` pip only sees wheels, and a hash-pinned offline install should never fall back to
a build.

"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from wheelport.errors import ExportError
from wheelport.inventory import one_lock
from wheelport.targets import Target, parse_target
from wheelport.wheelhouse import Wheelhouse, atomic_write_text

PIP_COMMAND = "pip install --isolated --no-index --find-links {wheels} --require-hashes -r {file}"


@dataclass(frozen=True)
class RequirementLine:
    name: str
    version: str
    marker: str | None
    #: sha256 of every wheel that serves the target, the lock's own first
    hashes: tuple[str, ...]

    def render(self) -> str:
        spec = f"{self.name}=={self.version}"
        if self.marker:
            spec += f" ; {self.marker}"
        return " \\\n    ".join([spec, *(f"--hash=sha256:{h}" for h in self.hashes)])


@dataclass(frozen=True)
class RequirementsExport:
    target: str
    lines: tuple[RequirementLine, ...]
    output: Path | None = None

    def text(self) -> str:
        head = [
            f"# {self.target}: written by wheelport from pylock.{self.target}.toml",
            "# " + PIP_COMMAND.format(wheels="WH/wheels", file="THIS_FILE"),
        ]
        return "\n".join([*head, *(line.render() for line in self.lines)]) + "\n"

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "output": str(self.output) if self.output else None,
            "packages": [
                {"name": r.name, "version": r.version, "marker": r.marker, "hashes": list(r.hashes)}
                for r in self.lines
            ],
        }


def serving_wheels(wheels_dir: Path, name: str, version: str, target: Target) -> list[Path]:
    """Wheels in ``wheels_dir`` of ``name`` ``version`` whose tags ``target`` accepts, best first."""
    key = canonicalize_name(name)
    found: list[tuple[int, str, Path]] = []
    if not wheels_dir.is_dir():
        return []
    for path in wheels_dir.glob("*.whl"):
        try:
            wname, wversion, _build, _tags = parse_wheel_filename(path.name)
        except InvalidWheelFilename:
            continue
        if wname != key or str(wversion) != version:
            continue
        rank = target.wheel_rank(path.name)
        if rank is not None:
            found.append((rank, path.name, path))
    return [p for _r, _n, p in sorted(found)]


def build_requirements(wheelhouse: Path, target: str | None) -> RequirementsExport:
    """The requirement lines of one target's lock (a package with no wheel yet is refused)."""
    tl = one_lock(wheelhouse, target)
    wh = Wheelhouse(wheelhouse)
    tgt = parse_target(tl.target)
    unbuilt = [str(p.name) for p in tl.lock.packages if not p.wheels]
    if unbuilt:
        raise ExportError(
            f"{tl.path.name}: {', '.join(unbuilt)} has no wheel for {tl.target}",
            hint="run 'wheelport sync' to build it; pip cannot install it offline",
            package=unbuilt[0],
            target=tl.target,
        )
    manifest = wh.load_manifest()
    lines = []
    for pkg in sorted(tl.lock.packages, key=lambda p: str(p.name)):
        assert pkg.wheels and pkg.version is not None
        chosen = pkg.wheels[0]
        hashes = [chosen.hashes["sha256"]]
        for path in serving_wheels(wh.wheels, str(pkg.name), str(pkg.version), tgt):
            # other builds: the hash the manifest recorded when the file entered, never the
            # bytes on disk now (a file tampered with since must not be vouched for)
            digest = manifest.sha256_of(f"wheels/{path.name}")
            if path.name != chosen.name and digest is not None and digest not in hashes:
                hashes.append(digest)
        lines.append(
            RequirementLine(
                name=str(pkg.name),
                version=str(pkg.version),
                marker=str(pkg.marker) if pkg.marker is not None else None,
                hashes=tuple(hashes),
            )
        )
    return RequirementsExport(tl.target, tuple(lines))


def export_requirements(
    wheelhouse: Path, target: str | None, output: Path | None = None
) -> RequirementsExport:
    """Build the requirements of ``target`` and write them to ``output`` (atomically) if given."""
    result = build_requirements(wheelhouse, target)
    if output is not None:
        atomic_write_text(output, result.text())
        result = RequirementsExport(result.target, result.lines, output)
    return result
