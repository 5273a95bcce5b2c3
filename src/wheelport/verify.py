"""``wheelport verify``: re-hash every file against the manifest and the locks.

Reports files that are missing (named by the manifest or a lock, not on disk), tampered
(on disk with another sha256 or size, or a wheel that is not what its name says: its
``.dist-info`` directory or METADATA names another project or version, or a member leaves
the install directory) and extra (in ``wheels/`` or ``sdists/`` but known to
neither). Hashing runs on a small thread pool (hashlib releases the GIL).

A path in a lock or the manifest that would leave the wheelhouse (absolute, ``..``, or a
symlink out) is reported as tampered, naming the entry, and is never opened. ``verify``
holds the wheelhouse's shared lock, so a concurrent ``sync`` cannot change files under it.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wheelport.bootstrap import escape_reason
from wheelport.errors import UsageError, VerifyError
from wheelport.lock import lock_tool, read_lock
from wheelport.manifest import Manifest
from wheelport.wheelhouse import Wheelhouse, sha256_file


@dataclass
class VerifyReport:
    wheelhouse: Path
    checked: int = 0
    missing: list[str] = field(default_factory=list)
    tampered: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    #: paths that escape the wheelhouse (also listed in ``tampered``)
    unsafe: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.tampered or self.extra)

    def to_json(self) -> dict[str, Any]:
        return {
            "wheelhouse": str(self.wheelhouse),
            "checked": self.checked,
            "missing": self.missing,
            "tampered": self.tampered,
            "extra": self.extra,
            "unsafe": self.unsafe,
            "ok": self.ok,
        }

    def error(self) -> VerifyError:
        parts = []
        if self.tampered:
            parts.append(f"tampered: {', '.join(self.tampered)}")
        if self.missing:
            parts.append(f"missing: {', '.join(self.missing)}")
        if self.extra:
            parts.append(f"extra: {', '.join(self.extra)}")
        first = (self.tampered or self.missing or self.extra)[0].split(" ", 1)[0]
        return VerifyError(
            f"wheelhouse {self.wheelhouse} does not verify — {'; '.join(parts)}",
            hint="re-run 'wheelport sync' to restore it",
            path=first,
        )


def expected_files(
    wh: Wheelhouse, manifest: Manifest | None = None
) -> Iterator[tuple[str, str, int | None, str]]:
    """(relative path, sha256, size, who expects it) for every file the manifest and locks name."""
    manifest = manifest if manifest is not None else wh.load_manifest()
    for rel, rec in manifest.artifacts.items():
        yield rel, rec.sha256, rec.size, "manifest"
    # what bootstrap.py installs must agree with the locks too
    for tid, summary in manifest.locks.items():
        for entry in summary.installs():
            yield entry["path"], entry["sha256"], entry.get("size"), f"wheelport.json locks[{tid}]"
    for path in wh.lock_paths():
        lock = read_lock(path)
        for pkg in lock.packages:
            for w in pkg.wheels or []:
                if w.path:
                    yield w.path, w.hashes["sha256"], w.size, path.name
            if pkg.sdist is not None and pkg.sdist.path and not pkg.wheels:
                yield pkg.sdist.path, pkg.sdist.hashes["sha256"], pkg.sdist.size, path.name
        for tool in lock_tool(lock).get("tools", []):
            yield tool["path"], tool["sha256"], tool.get("size") or None, path.name


def unsafe_paths(wh: Wheelhouse, manifest: Manifest | None = None) -> list[tuple[str, str, str]]:
    """(path, who names it, why) for every path in the locks or the manifest (artifacts, the
    ``locks`` section, ``build_deps``) that would leave the wheelhouse once joined to it."""
    manifest = manifest if manifest is not None else wh.load_manifest()
    out: list[tuple[str, str, str]] = []
    seen: set[tuple[str, str]] = set()
    named = [
        (rel, "wheelport.json artifacts" if who == "manifest" else who)
        for rel, _sha, _size, who in expected_files(wh, manifest)
    ]
    named += manifest.build_dep_paths()
    root = str(wh.root)
    reasons: dict[str, str | None] = {}  # a file most targets share is named by every lock
    for rel, who in named:
        if not isinstance(rel, str):
            why = escape_reason(root, rel)
        elif rel in reasons:
            why = reasons[rel]
        else:
            why = reasons[rel] = escape_reason(root, rel)
        if why is not None and (rel, who) not in seen:
            seen.add((rel, who))
            out.append((rel, who, why))
    return out


def verify(root: Path, *, jobs: int = 4) -> VerifyReport:
    """Check the wheelhouse at ``root``; a report, never an exception for bad files."""
    wh = Wheelhouse(root)
    if not root.is_dir() or not (wh.manifest_path.exists() or wh.lock_paths()):
        raise UsageError(
            f"not a wheelhouse: {root}", hint="run 'wheelport sync' first", path=str(root)
        )
    with wh.locked("verify", shared=True):
        return _verify(wh, jobs)


def _verify(wh: Wheelhouse, jobs: int) -> VerifyReport:
    from wheelport.index.metadata import wheel_problem  # (a sync's recheck needs no archives)

    root = wh.root
    report = VerifyReport(root)
    expected: dict[str, tuple[str, int | None, str]] = {}
    conflicts: list[str] = []
    manifest = wh.load_manifest()
    unsafe = unsafe_paths(wh, manifest)
    for rel, who, why in unsafe:
        report.unsafe.append(rel)
        report.tampered.append(f"{rel} escapes the wheelhouse ({why}; named by {who})")
    skip = {rel for rel, _who, _why in unsafe}
    for rel, sha, size, who in expected_files(wh, manifest):
        if rel in skip:
            continue
        old = expected.get(rel)
        if old and old[0] != sha:
            conflicts.append(f"{rel} ({who} says {sha[:12]}…, {old[2]} says {old[0][:12]}…)")
        expected.setdefault(rel, (sha, size, who))

    def check(item: tuple[str, tuple[str, int | None, str]]) -> tuple[str, str | None]:
        rel, (sha, size, who) = item
        p = root / rel
        if not p.is_file():
            return rel, "missing"
        if size is not None and p.stat().st_size != size:
            return rel, f"tampered (size {p.stat().st_size}, expected {size}; {who})"
        actual = sha256_file(p)
        if actual != sha:
            return rel, f"tampered (sha256 {actual}, expected {sha}; {who})"
        why = wheel_problem(p, p.name) if rel.endswith(".whl") else None
        if why is not None:
            return rel, f"is not the wheel it is named ({why})"
        return rel, None

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for rel, problem in pool.map(check, sorted(expected.items())):
            report.checked += 1
            if problem == "missing":
                report.missing.append(rel)
            elif problem:
                report.tampered.append(f"{rel} {problem}")
    report.tampered.extend(f"{c} (conflicting records)" for c in conflicts)
    for d in (wh.wheels, wh.sdists):
        if not d.is_dir():
            continue
        for p in sorted(d.iterdir()):
            if p.name.endswith(".metadata") or p.name.startswith("."):
                continue
            rel = f"{d.name}/{p.name}"  # not resolved: a symlink out is still named as it is
            if rel not in expected:
                report.extra.append(rel)
    return report
