"""``wheelport bundle`` / ``unbundle``: one archive that carries a wheelhouse across an air gap.

A bundle is a tar stream (zstd-compressed when zstd is available, else gzip) whose first
member is ``BUNDLE-MANIFEST.json``: the sha256 and size of every other member. Members are
the wheelhouse's regular files at their relative paths, in sorted order, with fixed mtimes,
owners and modes, so the same wheelhouse always gives the same tar bytes.

Unbundling streams the archive once: every member is checked against the manifest while it
is written into a temporary directory beside the destination, and the directory is renamed
into place only when every file verified. Path traversal, links, unknown or duplicate
members, truncation and tampering are refused, naming the file; so is a wheelhouse whose
locks or manifest name a path outside it (the unpacked tree must pass ``verify``).

``bundle`` reads under the wheelhouse's shared lock. ``unbundle`` needs none: its output
appears by one rename of a complete, verified directory, and a second ``unbundle`` to the
same place fails on that rename (the directory is no longer empty). The lock file is
hidden, so it is never a member.

The reading side (:class:`BundleError`, :func:`open_bundle_stream`, :func:`extract_bundle`)
lives in ``bootstrap.py`` — stdlib only, Python 3.8+ — so ``bootstrap.py --from-bundle`` and
``wheelport unbundle`` share one implementation. This module is the writing side and runs
under wheelport (Python 3.10+).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from wheelport.errors import ExportError, UsageError
from wheelport.wheelhouse import Wheelhouse, atomic_target

MANIFEST_NAME = "BUNDLE-MANIFEST.json"
BUNDLE_FORMAT = "wheelport-bundle"
BUNDLE_VERSION = 1
#: mtime of every member (1980-01-01, the zip epoch: some tools dislike 0)
FIXED_MTIME = 315532800
COMPRESSIONS = ("auto", "zstd", "gzip", "none")
_CHUNK = 1 << 20


# The reading side of the format lives in bootstrap.py (stdlib only, Python 3.8+), so
# ``bootstrap.py --from-bundle`` and ``wheelport unbundle`` share one implementation.
from wheelport.bootstrap import BundleError, extract_bundle, open_bundle_stream  # noqa: E402

__all__ = ["BundleError", "extract_bundle", "open_bundle_stream"]


@dataclass(frozen=True)
class BundleReport:
    """What ``bundle`` wrote."""

    bundle: Path
    compression: str
    files: int
    bytes_in: int
    size: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {
            "bundle": str(self.bundle),
            "compression": self.compression,
            "files": self.files,
            "bytes": self.bytes_in,
            "size": self.size,
            "sha256": self.sha256,
        }


@dataclass(frozen=True)
class UnbundleReport:
    """What ``unbundle`` extracted and verified."""

    directory: Path
    files: int
    checked: int
    targets: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "files": self.files,
            "checked": self.checked,
            "targets": self.targets,
        }


def bundle_members(root: Path) -> list[str]:
    """The wheelhouse files a bundle carries: every regular file, sorted, as POSIX paths.

    Left out: hidden files (index state, temporary ``.part`` files) and ``logs/``. A symlink
    or other special file is an error: a bundle carries regular files only.
    """
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and not (rel_dir == "." and d == "logs")
        )
        for name in filenames:
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if path.is_symlink() or not path.is_file():
                raise ExportError(
                    f"{root / rel} is not a regular file; a bundle carries regular files only",
                    hint="replace the link with the file it points to",
                    path=str(root / rel),
                )
            out.append(rel)
    return sorted(out)


def choose_compression(requested: str, *, have_zstd: bool) -> str:
    """``auto`` → zstd when available, else gzip. A zstd request without zstd is an error."""
    if requested not in COMPRESSIONS:
        raise UsageError(
            f"unknown compression {requested!r}", hint=f"use one of {', '.join(COMPRESSIONS)}"
        )
    if requested == "auto":
        return "zstd" if have_zstd else "gzip"
    if requested == "zstd" and not have_zstd:
        raise UsageError(
            "zstd compression asked for but neither the zstandard module nor the zstd program is "
            "available",
            hint="install zstd or use --compression gzip",
        )
    return requested


def zstd_available() -> bool:
    """Is zstd compression possible here (module or program)?"""
    try:
        import zstandard  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        return shutil.which("zstd") is not None
    return True


def manifest_bytes(root: Path, members: list[str]) -> bytes:
    """The ``BUNDLE-MANIFEST.json`` bytes for ``members`` of ``root`` (hashes every file)."""
    from wheelport.wheelhouse import sha256_file

    files = {
        rel: {"sha256": sha256_file(root / rel), "size": (root / rel).stat().st_size}
        for rel in members
    }
    data = {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "created_by": "wheelport",
        "files": files,
    }
    return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode("utf-8")


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = FIXED_MTIME
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


@contextlib.contextmanager
def _compressed_writer(raw: IO[bytes], compression: str, label: Path) -> Iterator[IO[bytes]]:
    """A binary file whose bytes land compressed in the open file ``raw`` (``label`` names it
    in errors)."""
    if compression == "none":
        yield raw
        return
    if compression == "gzip":
        import gzip

        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz:
            yield gz  # type: ignore[misc]
        return
    try:
        import zstandard  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        exe = shutil.which("zstd")
        assert exe is not None
        raw.flush()
        proc = subprocess.Popen(
            [exe, "-q", "-c", "-3", "--no-progress"], stdin=subprocess.PIPE, stdout=raw,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdin is not None and proc.stderr is not None
        try:
            yield proc.stdin
        finally:
            proc.stdin.close()
            err = proc.stderr.read().decode("utf-8", "replace").strip()
            proc.stderr.close()
            if proc.wait() != 0:
                raise ExportError(f"zstd failed writing {label}: {err}", path=str(label))
        return
    cctx = zstandard.ZstdCompressor(level=3, write_checksum=True)
    with cctx.stream_writer(raw, closefd=False) as zw:
        yield zw


def create_bundle(wheelhouse: Path, output: Path, *, compression: str = "auto") -> BundleReport:
    """Write the bundle of ``wheelhouse`` to ``output`` (atomically: a temp file, then rename).

    Raises :class:`UsageError` when ``wheelhouse`` is not a wheelhouse and
    :class:`ExportError` when it holds something a bundle cannot carry.
    """
    wh = Wheelhouse(Path(wheelhouse))
    if not wh.manifest_path.is_file():
        raise UsageError(
            f"not a wheelhouse: {wh.root} (no wheelport.json)",
            hint="run 'wheelport sync' first or pass -w",
            path=str(wh.root),
        )
    chosen = choose_compression(compression, have_zstd=zstd_available())
    output = Path(output).absolute()
    if output.is_relative_to(wh.root.absolute()):
        raise UsageError(
            f"the bundle {output} cannot be written inside the wheelhouse", path=str(output)
        )
    # shared: a concurrent sync waits until every member is in the archive (and vice versa)
    with wh.locked("bundle", shared=True):
        members = bundle_members(wh.root)
        head = manifest_bytes(wh.root, members)
        total = 0
        # written beside ``output`` and renamed into place: a failed run leaves no partial file
        with (
            atomic_target(output, "wb", durable=False) as raw,
            _compressed_writer(raw, chosen, output) as sink,
            tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar,
        ):
            tar.addfile(_tarinfo(MANIFEST_NAME, len(head)), io.BytesIO(head))
            for rel in members:
                path = wh.root / rel
                with path.open("rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    tar.addfile(_tarinfo(rel, size), f)
                total += size
    from wheelport.wheelhouse import sha256_file

    return BundleReport(
        bundle=output,
        compression=chosen,
        files=len(members),
        bytes_in=total,
        size=output.stat().st_size,
        sha256=sha256_file(output),
    )


def unbundle(
    bundle: Path,
    dest: Path,
    *,
    verify_wheelhouse: Callable[[Path], Any] | None = None,
) -> UnbundleReport:
    """Verify every member of ``bundle`` and extract it into the new directory ``dest``.

    ``dest`` appears only when all members matched the bundle manifest and the wheelhouse
    verified (``wheelport.verify.verify`` unless another check is passed). Raises
    :class:`ExportError` naming the file for a tampered, truncated or unsafe bundle and
    :class:`UsageError` for a missing bundle or a non-empty ``dest``.
    """
    bundle = Path(bundle)
    if not bundle.is_file():
        raise UsageError(f"bundle not found: {bundle}", path=str(bundle))
    if verify_wheelhouse is None:
        from wheelport.verify import verify

        verify_wheelhouse = verify
    checker = verify_wheelhouse
    checked = 0

    def check(work: str) -> None:
        nonlocal checked
        report = checker(Path(work))
        if not getattr(report, "ok", True):
            first = (report.tampered or report.missing or report.extra)[0]
            raise ExportError(
                f"{bundle}: the unpacked wheelhouse does not verify: {first}",
                hint="the bundle was made from a damaged wheelhouse; run 'wheelport verify' there",
                path=str(bundle),
            )
        checked = int(getattr(report, "checked", 0))

    dest = Path(dest)
    if dest.exists() and not (dest.is_dir() and not any(dest.iterdir())):
        raise UsageError(
            f"{dest} already exists and is not empty", hint="choose a new directory", path=str(dest)
        )
    try:
        manifest = extract_bundle(str(bundle), str(dest), check)
    except BundleError as exc:
        raise ExportError(exc.message, hint="copy the bundle again", path=exc.path) from None
    targets: list[str] = []
    with contextlib.suppress(Exception):
        targets = list(Wheelhouse(dest).load_manifest().targets)
    return UnbundleReport(
        directory=dest, files=len(manifest["files"]), checked=checked, targets=targets
    )
