"""Fetch: every artifact the locks name, downloaded concurrently and verified.

A file is downloaded into the content-addressed cache (temporary name → sha256 and size
checked → renamed), then hard-linked (or copied through a temporary name) into
``wheels/`` or ``sdists/``. A mismatch names the file, the URL and both hashes and keeps
nothing. A rerun skips files already present with the size and sha256 the manifest
recorded, so a no-op sync does not re-hash the wheelhouse (``verify`` does).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from packaging.pylock import Pylock

from wheelport.errors import FetchError, WheelportError
from wheelport.index.client import IndexClient
from wheelport.lock import lock_tool
from wheelport.wheelhouse import Wheelhouse


@dataclass(frozen=True)
class Artifact:
    """One file a lock names: where it goes in the wheelhouse and where it comes from."""

    path: str  # relative to the wheelhouse: wheels/<f> or sdists/<f>
    url: str
    sha256: str
    size: int | None

    @property
    def filename(self) -> str:
        return self.path.rsplit("/", 1)[-1]


class FetchReporter(Protocol):
    def start(self, files: int, total_bytes: int) -> None: ...
    def advance(self, nbytes: int) -> None: ...
    def file_done(self, artifact: Artifact, cached: bool) -> None: ...


class NullFetchReporter:
    def start(self, files: int, total_bytes: int) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        pass

    def file_done(self, artifact: Artifact, cached: bool) -> None:
        pass


@dataclass
class FetchResult:
    downloaded: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    linked_from_cache: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "downloaded": self.downloaded,
            "present": self.present,
            "from_cache": self.linked_from_cache,
        }


def artifacts_of(lock: Pylock) -> list[Artifact]:
    """Downloadable artifacts of one lock: the chosen wheel or sdist of each package, and tools.

    Wheels wheelport built have no URL and are not fetched.
    """
    out: list[Artifact] = []
    for pkg in lock.packages:
        for w in pkg.wheels or []:
            if w.url and w.path:
                out.append(Artifact(w.path, w.url, w.hashes["sha256"], w.size))
        if pkg.sdist is not None and pkg.sdist.url and pkg.sdist.path:
            out.append(
                Artifact(pkg.sdist.path, pkg.sdist.url, pkg.sdist.hashes["sha256"], pkg.sdist.size)
            )
    for tool in lock_tool(lock).get("tools", []):
        if tool.get("url"):
            out.append(
                Artifact(tool["path"], tool["url"], tool["sha256"], tool.get("size") or None)
            )
    return out


def unique(artifacts: Iterable[Artifact]) -> list[Artifact]:
    """One artifact per wheelhouse path; the same path with two hashes is an error."""
    seen: dict[str, Artifact] = {}
    for a in artifacts:
        old = seen.get(a.path)
        if old is not None and old.sha256 != a.sha256:
            raise FetchError(
                f"{a.filename}: two locks name different files for {a.path} ({old.sha256} vs {a.sha256})",
                path=a.path,
            )
        seen.setdefault(a.path, a)
    return sorted(seen.values(), key=lambda a: a.path)


def clean_partials(wheelhouse: Wheelhouse) -> None:
    """Remove temporary files a killed run may have left (``.<name>.*.part``)."""
    for d in (wheelhouse.wheels, wheelhouse.sdists, wheelhouse.root):
        if d.is_dir():
            for p in d.glob(".*.part"):
                with contextlib.suppress(OSError):
                    p.unlink()


def place(src: Path, dest: Path) -> None:
    """Put a verified cache file at ``dest``: a hard link, else a copy via a temporary name."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        dest.unlink()
    try:
        os.link(src, dest)
        return
    except OSError:
        pass
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def fetch(
    wheelhouse: Wheelhouse,
    locks: Sequence[Pylock],
    client: IndexClient,
    *,
    jobs: int = 8,
    reporter: FetchReporter | None = None,
) -> FetchResult:
    """Download every artifact the locks name into the wheelhouse; record them in the manifest."""
    wanted = unique(a for lock in locks for a in artifacts_of(lock))
    return fetch_artifacts(wheelhouse, wanted, client, jobs=jobs, reporter=reporter)


def fetch_artifacts(
    wheelhouse: Wheelhouse,
    wanted: Sequence[Artifact],
    client: IndexClient,
    *,
    jobs: int = 8,
    reporter: FetchReporter | None = None,
) -> FetchResult:
    """Download artifacts into the wheelhouse (verified), skipping those already present."""
    reporter = reporter or NullFetchReporter()
    clean_partials(wheelhouse)
    manifest = wheelhouse.load_manifest()
    arts = manifest["artifacts"]
    result = FetchResult()
    todo: list[Artifact] = []
    for a in wanted:
        dest = wheelhouse.root / a.path
        rec = arts.get(a.path)
        if (
            dest.exists()
            and rec
            and rec.get("sha256") == a.sha256
            and dest.stat().st_size == rec.get("size")
        ):
            result.present.append(a.path)
            continue
        todo.append(a)
    reporter.start(len(todo), sum(a.size or 0 for a in todo))
    errors: list[WheelportError] = []

    def one(a: Artifact) -> tuple[Artifact, Path, bool]:
        cached = client.cache.artifact_path(a.sha256)
        if cached.exists():
            return a, cached, True
        from wheelport.index.client import download_verified

        return (
            a,
            download_verified(
                client,
                a.url,
                a.sha256,
                a.size,
                client.cache,
                progress=reporter.advance,
                label=a.filename,
            ),
            False,
        )

    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="wheelport-fetch") as pool:
        futures = [pool.submit(one, a) for a in todo]
        for fut in as_completed(futures):
            try:
                a, src, was_cached = fut.result()
            except WheelportError as exc:
                errors.append(exc)
                continue
            place(src, wheelhouse.root / a.path)
            arts[a.path] = {
                "sha256": a.sha256,
                "size": src.stat().st_size,
                "origin": {"kind": "download", "url": a.url},
            }
            (result.linked_from_cache if was_cached else result.downloaded).append(a.path)
            reporter.file_done(a, was_cached)
    wheelhouse.save_manifest(manifest)
    if errors:
        first = errors[0]
        if len(errors) > 1:
            first.message += f" (and {len(errors) - 1} more download error(s))"
        raise first
    return result
