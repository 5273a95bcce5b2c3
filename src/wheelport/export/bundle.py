"""``wheelport bundle`` / ``unbundle``: one archive that carries a wheelhouse across an air gap.

A bundle is a tar stream (zstd-compressed when zstd is available, else gzip) whose first
member is ``BUNDLE-MANIFEST.json``: the sha256 and size of every other member. Members are
the wheelhouse's regular files at their relative paths, in sorted order, with fixed mtimes,
owners and modes, so the same wheelhouse always gives the same tar bytes.

Unbundling streams the archive once: every member is checked against the manifest while it
is written into a temporary directory beside the destination, and the directory is renamed
into place only when every file verified. Path traversal, links, unknown or duplicate
members, truncation and tampering are refused, naming the file.

The section marked *stdlib only* (:class:`BundleError`, :func:`open_bundle_stream`,
:func:`extract_bundle`) imports nothing but the standard library and runs on Python 3.8, so
``bootstrap.py --from-bundle`` can carry a copy of it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from wheelport.errors import ExportError, UsageError
from wheelport.wheelhouse import Wheelhouse

MANIFEST_NAME = "BUNDLE-MANIFEST.json"
BUNDLE_FORMAT = "wheelport-bundle"
BUNDLE_VERSION = 1
#: mtime of every member (1980-01-01, the zip epoch: some tools dislike 0)
FIXED_MTIME = 315532800
COMPRESSIONS = ("auto", "zstd", "gzip", "none")
_CHUNK = 1 << 20


# ===================================================================== stdlib only (bootstrap)
# Everything from here to the matching END marker may import only the standard library and
# must run on Python 3.8: bootstrap.py carries a copy of it.


class BundleError(Exception):
    """A bundle that cannot be used: corrupt, truncated, tampered or unsafe. One line."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path


_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_GZIP_MAGIC = b"\x1f\x8b"


class _ProcReader(io.RawIOBase):
    """The stdout of a decompressor process as a file; raises if the process fails at EOF."""

    def __init__(self, proc: Any, what: str) -> None:
        self._proc = proc
        self._what = what

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        data = self._proc.stdout.read(len(buf))
        if not data:
            rc = self._proc.wait()
            if rc != 0:
                err = self._proc.stderr.read().decode("utf-8", "replace").strip().splitlines()
                raise BundleError(
                    "%s: zstd failed: %s" % (self._what, err[-1] if err else "exit %d" % rc)
                )
            return 0
        buf[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        for stream in (self._proc.stdout, self._proc.stderr):
            if stream is not None:
                stream.close()
        super().close()


def open_bundle_stream(path: str) -> Any:
    """Open ``path`` and return a binary file of its decompressed tar stream.

    The compression is detected from the first bytes (zstd, gzip, or a plain tar). zstd uses
    the ``zstandard`` module, ``compression.zstd`` (Python 3.14) or the ``zstd`` program,
    whichever is present. Integrity errors of the compressed stream surface as
    :class:`BundleError` at the latest when the stream is read to its end.
    """
    import gzip

    with open(path, "rb") as probe:
        head = probe.read(4)
    if head.startswith(_GZIP_MAGIC):
        return gzip.open(path, "rb")
    raw = open(path, "rb")
    if head != _ZSTD_MAGIC:
        return raw
    try:
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(raw, closefd=True)
    except ImportError:
        pass
    try:
        from compression import zstd  # type: ignore[import-not-found,unused-ignore]

        return zstd.ZstdFile(raw, mode="rb")
    except ImportError:
        pass
    import shutil as _shutil
    import subprocess as _subprocess

    exe = _shutil.which("zstd")
    if exe is None:
        raw.close()
        raise BundleError(
            "%s is zstd-compressed but neither the zstandard module nor the zstd program is "
            "available; install zstd, or make the bundle with --compression gzip" % path
        )
    proc = _subprocess.Popen(
        [exe, "-dc", "-q"], stdin=raw, stdout=_subprocess.PIPE, stderr=_subprocess.PIPE
    )
    raw.close()
    return io.BufferedReader(_ProcReader(proc, path), buffer_size=1 << 20)


def _safe_member_path(name: str) -> bool:
    if not name or name.startswith(("/", "\\")) or "\\" in name or "\x00" in name:
        return False
    parts = name.split("/")
    return all(p not in ("", ".", "..") for p in parts) and ":" not in parts[0]


def _read_bundle_manifest(tar: Any, member: Any, where: str) -> dict:  # type: ignore[type-arg]
    name = "BUNDLE-MANIFEST.json"
    if member is None or member.name != name or not member.isreg():
        raise BundleError("%s is not a wheelport bundle (its first member is not %s)" % (where, name))
    if member.size > 256 * 1024 * 1024:
        raise BundleError("%s: %s is implausibly large" % (where, name))
    f = tar.extractfile(member)
    data = f.read() if f is not None else b""
    if len(data) != member.size:
        raise BundleError("%s is truncated (in %s)" % (where, name), name)
    try:
        manifest = json.loads(data.decode("utf-8"))
    except ValueError:
        raise BundleError("%s: %s is not valid JSON" % (where, name), name) from None
    if not isinstance(manifest, dict) or manifest.get("format") != "wheelport-bundle":
        raise BundleError("%s: %s is not a wheelport bundle manifest" % (where, name), name)
    if manifest.get("version") != 1:
        raise BundleError(
            "%s: bundle format version %r is not supported by this program"
            % (where, manifest.get("version")),
            name,
        )
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise BundleError("%s: %s has no file list" % (where, name), name)
    for rel, rec in files.items():
        if not _safe_member_path(rel):
            raise BundleError("%s: unsafe path %r in %s" % (where, rel, name), rel)
        if not (isinstance(rec, dict) and isinstance(rec.get("sha256"), str)
                and isinstance(rec.get("size"), int)):  # fmt: skip
            raise BundleError("%s: bad record for %s in %s" % (where, rel, name), rel)
    return manifest


def _extract_into(bundle: str, workdir: str) -> dict:  # type: ignore[type-arg]
    """Stream ``bundle`` into the existing empty directory ``workdir``, verifying everything."""
    import hashlib as _hashlib
    import tarfile as _tarfile
    import zlib as _zlib

    where = bundle
    current = "BUNDLE-MANIFEST.json"
    stream = open_bundle_stream(bundle)
    try:
        try:
            tar = _tarfile.open(fileobj=stream, mode="r|")
            manifest = _read_bundle_manifest(tar, tar.next(), where)
            files = manifest["files"]
            seen = set()
            while True:
                member = tar.next()
                if member is None:
                    break
                current = member.name
                if not _safe_member_path(member.name):
                    raise BundleError(
                        "%s: refusing unsafe member path %r" % (where, member.name), member.name
                    )
                if not member.isreg():
                    raise BundleError(
                        "%s: refusing %s: not a regular file (links and devices are not allowed)"
                        % (where, member.name),
                        member.name,
                    )
                rec = files.get(member.name)
                if rec is None:
                    raise BundleError(
                        "%s: %s is not listed in the bundle manifest" % (where, member.name),
                        member.name,
                    )
                if member.name in seen:
                    raise BundleError(
                        "%s: %s appears twice in the bundle" % (where, member.name), member.name
                    )
                seen.add(member.name)
                if member.size != rec["size"]:
                    raise BundleError(
                        "%s: %s has size %d, the manifest says %d (tampered bundle)"
                        % (where, member.name, member.size, rec["size"]),
                        member.name,
                    )
                dest = os.path.join(workdir, *member.name.split("/"))
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                h = _hashlib.sha256()
                got = 0
                src = tar.extractfile(member)
                with open(dest, "xb") as out:
                    while True:
                        chunk = src.read(1 << 20) if src is not None else b""
                        if not chunk:
                            break
                        got += len(chunk)
                        h.update(chunk)
                        out.write(chunk)
                if got != rec["size"]:
                    raise BundleError("%s is truncated (in %s)" % (where, member.name), member.name)
                if h.hexdigest() != rec["sha256"]:
                    raise BundleError(
                        "%s: %s does not match its sha256 (got %s, manifest says %s): the bundle "
                        "was tampered with or damaged" % (where, member.name, h.hexdigest(), rec["sha256"]),
                        member.name,
                    )
            current = "the end of the archive"
            # read to the very end so the decompressor checks its own checksum
            while stream.read(1 << 20):
                pass
        except BundleError as exc:
            if exc.path is None:  # the decompressor failed: say where in the archive
                raise BundleError("%s (at %s)" % (exc.message, current), current) from None
            raise
        except (_tarfile.TarError, EOFError, OSError, _zlib.error, ValueError) as exc:
            raise BundleError(
                "%s is truncated or corrupt (at %s): %s" % (where, current, exc or type(exc).__name__),
                current,
            ) from None
        except Exception as exc:  # zstandard.ZstdError and friends
            raise BundleError(
                "%s is corrupt (at %s): %s" % (where, current, exc), current
            ) from None
    finally:
        stream.close()
    missing = sorted(set(files) - seen)
    if missing:
        raise BundleError(
            "%s is truncated: %s (and %d more) missing" % (where, missing[0], len(missing) - 1)
            if len(missing) > 1
            else "%s is truncated: %s missing" % (where, missing[0]),
            missing[0],
        )
    return manifest


def extract_bundle(bundle: str, dest: str, check: Any = None) -> dict:  # type: ignore[type-arg]
    """Verify and extract the bundle file ``bundle`` into the new directory ``dest``.

    ``dest`` must not exist or be an empty directory. Files are written into a temporary
    directory beside ``dest``; ``check(tempdir)`` (if given) runs after every member
    verified; only then is the directory renamed to ``dest``. On any failure nothing is left
    behind and :class:`BundleError` names the file. Returns the bundle manifest.
    """
    import shutil as _shutil
    import tempfile as _tempfile

    dest = os.path.abspath(dest)
    if os.path.lexists(dest) and not (os.path.isdir(dest) and not os.listdir(dest)):
        raise BundleError("%s already exists and is not empty; choose a new directory" % dest, dest)
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    work = _tempfile.mkdtemp(prefix=".%s.unbundle-" % os.path.basename(dest), dir=parent)
    try:
        manifest = _extract_into(bundle, work)
        if check is not None:
            check(work)
        if os.path.isdir(dest):
            os.rmdir(dest)
        os.rename(work, dest)
    except BaseException:
        _shutil.rmtree(work, ignore_errors=True)
        raise
    return manifest


# ===================================================================== END stdlib only


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
        raise UsageError(f"unknown compression {requested!r}", hint=f"use one of {', '.join(COMPRESSIONS)}")
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
        import zstandard  # noqa: F401
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
    data = {"format": BUNDLE_FORMAT, "version": BUNDLE_VERSION, "created_by": "wheelport", "files": files}
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
def _compressed_writer(path: Path, compression: str) -> Iterator[IO[bytes]]:
    """A binary file whose bytes land compressed in ``path`` (which must be a temp path)."""
    if compression == "none":
        with path.open("wb") as f:
            yield f
        return
    if compression == "gzip":
        import gzip

        with path.open("wb") as raw, gzip.GzipFile(
            filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6
        ) as gz:
            yield gz  # type: ignore[misc]
        return
    try:
        import zstandard
    except ImportError:
        exe = shutil.which("zstd")
        assert exe is not None
        with path.open("wb") as raw:
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
                    raise ExportError(f"zstd failed writing {path}: {err}", path=str(path))
        return
    with path.open("wb") as raw:
        cctx = zstandard.ZstdCompressor(level=3, write_checksum=True)
        with cctx.stream_writer(raw, closefd=False) as zw:
            yield zw  # type: ignore[misc]


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
        raise UsageError(f"the bundle {output} cannot be written inside the wheelhouse", path=str(output))
    members = bundle_members(wh.root)
    head = manifest_bytes(wh.root, members)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".part")
    os.close(fd)
    tmp = Path(tmp_name)
    total = 0
    try:
        with _compressed_writer(tmp, chosen) as sink:
            with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                tar.addfile(_tarinfo(MANIFEST_NAME, len(head)), io.BytesIO(head))
                for rel in members:
                    path = wh.root / rel
                    with path.open("rb") as f:
                        size = os.fstat(f.fileno()).st_size
                        tar.addfile(_tarinfo(rel, size), f)
                    total += size
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, output)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
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
        from wheelport.verify import verify as verify_wheelhouse
    checked = 0

    def check(work: str) -> None:
        nonlocal checked
        report = verify_wheelhouse(Path(work))
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
        raise UsageError(f"{dest} already exists and is not empty", hint="choose a new directory", path=str(dest))
    try:
        manifest = extract_bundle(str(bundle), str(dest), check)
    except BundleError as exc:
        raise ExportError(exc.message, hint="copy the bundle again", path=exc.path) from None
    targets: list[str] = []
    with contextlib.suppress(Exception):
        targets = list(Wheelhouse(dest).load_manifest().get("targets", []))
    return UnbundleReport(directory=dest, files=len(manifest["files"]), checked=checked, targets=targets)

