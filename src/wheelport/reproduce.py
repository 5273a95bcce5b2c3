"""Reproducible builds: the same sdist gives the same wheel bytes, wherever it is built.

Three things a build leaves variable are fixed here, for every builder (native, container,
abi3 or not):

- **time** — :func:`source_date_epoch` is the one ``SOURCE_DATE_EPOCH`` of an sdist: the
  newest modification time of its members (the last change to the source), clamped to what a
  zip can hold. Every step that writes an archive (the PEP 517 hooks, ``auditwheel repair``,
  cibuildwheel's container) gets it;
- **paths** — :func:`build_directory` is a build directory whose path depends only on the
  sdist, so paths a compiler writes into its output (debug info, ``__FILE__``) are the same on
  every run;
- **the archive** — :func:`normalize_wheel` rewrites a built wheel: members in a fixed order
  (``.dist-info`` last, ``RECORD`` at the very end), every timestamp the sdist's epoch, file
  modes 0644 or 0755, one compression, no extra fields or comments, and a ``RECORD``
  regenerated from the members' bytes (after checking the backend's own ``RECORD`` vouched
  for each of them, so a broken build is refused, not laundered).

:func:`first_difference` names what differs between two wheels (``verify --rebuild``).
"""

from __future__ import annotations

import base64
import calendar
import contextlib
import csv
import fcntl
import filecmp
import hashlib
import io
import logging
import os
import shutil
import stat
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

from wheelport.errors import BuildError
from wheelport.wheelhouse import atomic_target

log = logging.getLogger(__name__)

#: 1980-01-01T00:00:00Z, the earliest time a zip member can carry
ZIP_EPOCH = 315532800
#: 2107-12-31T23:59:58Z, the latest
ZIP_LAST = 4354819198
#: signatures of RECORD (obsolete); a regenerated RECORD would invalidate them, so they go
_RECORD_SIGNATURES = ("RECORD.jws", "RECORD.p7s")
_CHUNK = 1 << 20
_DateTime = tuple[int, int, int, int, int, int]


# --------------------------------------------------------------------------- time


def clamp_epoch(value: float) -> int:
    """``value`` (seconds since 1970) moved into the range a zip timestamp can hold."""
    return max(ZIP_EPOCH, min(int(value), ZIP_LAST))


def source_date_epoch(sdist: Path) -> int:
    """The ``SOURCE_DATE_EPOCH`` of every build of ``sdist``: its newest member's mtime
    (:func:`clamp_epoch`), or :data:`ZIP_EPOCH` when the archive records none. A function of
    the sdist's bytes alone, so any machine derives the same value. Raises
    :class:`BuildError` for an archive that cannot be read."""
    newest = 0.0
    try:
        if sdist.name.endswith(".zip"):
            with zipfile.ZipFile(sdist) as zf:
                for info in zf.infolist():
                    newest = max(newest, calendar.timegm((*info.date_time, 0, 0, 0)))
        else:
            with tarfile.open(sdist) as tf:
                for member in tf:
                    newest = max(newest, float(member.mtime))
    except (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile, ValueError) as exc:
        raise BuildError(
            f"{sdist.name}: the sdist cannot be read ({exc})", path=str(sdist)
        ) from None
    return clamp_epoch(newest)


# --------------------------------------------------------------------------- paths


@contextlib.contextmanager
def build_directory(key: str) -> Iterator[Path]:
    """An empty directory at ``$TMPDIR/wheelport-build-<key>``, this process's alone while
    the context lasts, removed after.

    ``key`` names what is built (an sdist's sha256), so its builds on any machine (with the
    same ``TMPDIR``) see the same paths. Builds of one key wait for each other (an ``flock``
    on the directory). Where the path is taken by another user or is not a plain private
    directory, a fresh random directory is used instead (that build may then embed its
    path), with a warning.
    """
    path = Path(tempfile.gettempdir()) / f"wheelport-build-{key}"
    fd = _lock_own_directory(path)
    if fd is None:
        log.warning("%s is not a private directory of this user; building elsewhere", path)
        with tempfile.TemporaryDirectory(prefix="wheelport-build-") as tmp:
            yield Path(tmp)
        return
    try:
        for child in list(path.iterdir()):  # what a killed build left
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        yield path
    finally:
        # removed while still locked: a waiter then finds another inode at the path and retries
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


def _lock_own_directory(path: Path) -> int | None:
    """A descriptor of the directory at ``path`` (created when missing) holding its flock;
    None when the path is not a directory of this user that others cannot write."""
    while True:
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None  # a symlink or not a directory
        try:
            st = os.fstat(fd)
            if st.st_uid != os.getuid() or st.st_mode & 0o022:
                os.close(fd)
                return None
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.lstat(path).st_ino == st.st_ino
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            return fd
        os.close(fd)  # the holder removed it on release: take the new one


# --------------------------------------------------------------------------- the archive


def _record_hash(digest: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _dist_info(names: list[str], wheel: str) -> str:
    """The wheel's one top-level ``.dist-info`` directory holding a RECORD."""
    found = sorted(
        {top for top, _, rest in (n.partition("/") for n in names)
         if rest == "RECORD" and top.endswith(".dist-info")}
    )  # fmt: skip
    if len(found) != 1:
        raise BuildError(
            f"{wheel}: the built wheel has {len(found) or 'no'} .dist-info/RECORD "
            f"{'files' if found else 'file'}; expected one"
        )
    return found[0]


def member_order(name: str, dist_info: str) -> tuple[bool, bool, str]:
    """Sort key of a member: the package first, then ``.dist-info``, ``RECORD`` last."""
    return (name.split("/", 1)[0] == dist_info, name == f"{dist_info}/RECORD", name)


def _read_record(data: bytes, wheel: str) -> dict[str, str]:
    """path → ``algo=digest`` (empty when the row has none) of a RECORD."""
    rows: dict[str, str] = {}
    try:
        for row in csv.reader(io.StringIO(data.decode("utf-8"))):
            if row:
                rows[row[0]] = row[1] if len(row) > 1 else ""
    except (UnicodeDecodeError, csv.Error) as exc:
        raise BuildError(f"{wheel}: the built wheel's RECORD cannot be read ({exc})") from None
    return rows


def _digests(zf: zipfile.ZipFile, info: zipfile.ZipInfo, algo: str) -> tuple[bytes, bytes]:
    """(sha256, ``algo`` digest) of one member, streamed."""
    sha = hashlib.sha256()
    other = hashlib.new(algo) if algo not in ("", "sha256") else None
    with zf.open(info) as f:
        while chunk := f.read(_CHUNK):
            sha.update(chunk)
            if other is not None:
                other.update(chunk)
    return sha.digest(), (other or sha).digest()


def normalize_wheel(path: Path, epoch: int) -> None:
    """Rewrite the wheel at ``path`` (in place, atomically) so that its bytes depend only on
    its members' names and contents and ``epoch``.

    Members in :func:`member_order`; each stamped ``epoch`` (UTC), made by Unix, mode 0755
    when the backend gave it any execute bit else 0644 (directories 0755), deflated (a
    directory stored), without extra fields or comments. ``RECORD`` is written anew, one row
    per file in archive order; signatures of the old RECORD are dropped. Raises
    :class:`BuildError` when the wheel is not a zip, holds a name twice, or its RECORD does not
    vouch for a member (missing, or another hash): the build is broken, not to be fixed here.
    """
    name = path.name
    t = time.gmtime(clamp_epoch(epoch))
    date_time = (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            names = [i.filename for i in infos]
            if len(set(names)) != len(names):
                dup = next(n for n in names if names.count(n) > 1)
                raise BuildError(f"{name}: the built wheel holds {dup} twice")
            dist_info = _dist_info(names, name)
            record_name = f"{dist_info}/RECORD"
            dropped = {f"{dist_info}/{s}" for s in _RECORD_SIGNATURES}
            listed = _read_record(zf.read(record_name), name)
            kept = sorted(
                (i for i in infos if i.filename not in dropped and i.filename != record_name),
                key=lambda i: member_order(i.filename, dist_info),
            )
            rows: list[tuple[str, str, str]] = []
            for info in kept:
                if info.is_dir():
                    continue
                if info.filename not in listed:
                    raise BuildError(
                        f"{name}: the built wheel's RECORD does not list {info.filename}"
                    )
                algo, _, want = listed[info.filename].partition("=")
                if algo and algo not in hashlib.algorithms_guaranteed:
                    raise BuildError(f"{name}: RECORD names an unknown hash {algo!r}")
                sha, digest = _digests(zf, info, algo)
                got = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
                if want and want.rstrip("=") != got:
                    raise BuildError(
                        f"{name}: {info.filename} does not match its hash in the built "
                        "wheel's RECORD"
                    )
                rows.append((info.filename, _record_hash(sha), str(info.file_size)))
            gone = sorted(set(listed) - set(names) - dropped)
            if gone:
                raise BuildError(f"{name}: the built wheel's RECORD lists {gone[0]}, not in it")
            record = io.StringIO()
            writer = csv.writer(record, lineterminator="\n")
            writer.writerows(rows)
            writer.writerow((record_name, "", ""))
            with atomic_target(path, "wb", durable=False) as raw, zipfile.ZipFile(raw, "w") as out:
                for info in kept:
                    new = _member(info.filename, date_time, _mode(info), info.is_dir())
                    if info.is_dir():
                        out.writestr(new, b"")
                        continue
                    big = info.file_size >= zipfile.ZIP64_LIMIT
                    with zf.open(info) as src, out.open(new, "w", force_zip64=big) as dst:
                        shutil.copyfileobj(src, dst, _CHUNK)
                out.writestr(
                    _member(record_name, date_time, 0o644, False), record.getvalue().encode()
                )
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        raise BuildError(f"{name}: the built wheel cannot be read ({exc})") from None


def _mode(info: zipfile.ZipInfo) -> int:
    """0755 or 0644: whether the backend made the member executable (Unix-made zips only)."""
    if info.is_dir():
        return 0o755
    made_on_unix = info.create_system == 3
    return 0o755 if made_on_unix and (info.external_attr >> 16) & 0o111 else 0o644


def _member(name: str, date_time: _DateTime, mode: int, is_dir: bool) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=date_time)
    info.create_system = 3
    kind = stat.S_IFDIR if is_dir else stat.S_IFREG
    info.external_attr = ((kind | mode) << 16) | (0x10 if is_dir else 0)
    info.compress_type = zipfile.ZIP_STORED if is_dir else zipfile.ZIP_DEFLATED
    return info


# --------------------------------------------------------------------------- comparing


def first_difference(expected: Path, actual: Path) -> str:
    """What first differs between two wheels, in ``expected``'s member order: a member's
    content (or presence), else the archive's layout or a member's zip entry (time, mode,
    compression). Empty when the files are byte-identical."""
    if filecmp.cmp(expected, actual, shallow=False):
        return ""
    try:
        with zipfile.ZipFile(expected) as a, zipfile.ZipFile(actual) as b:
            ia = {i.filename: i for i in a.infolist()}
            ib = {i.filename: i for i in b.infolist()}
            for member in [*ia, *(n for n in ib if n not in ia)]:
                if member not in ib:
                    return f"{member}: missing from the rebuilt wheel"
                if member not in ia:
                    return f"{member}: only in the rebuilt wheel"
                if ia[member].CRC != ib[member].CRC or a.read(member) != b.read(member):
                    return f"{member}: content"
            if list(ia) != list(ib):
                return "member order"
            for member, x in ia.items():
                y = ib[member]
                if x.date_time != y.date_time:
                    return f"{member}: timestamp ({_stamp(x)} vs {_stamp(y)})"
                if x.external_attr != y.external_attr:
                    return (
                        f"{member}: mode ({x.external_attr >> 16:o} vs {y.external_attr >> 16:o})"
                    )
                if x.compress_type != y.compress_type or x.compress_size != y.compress_size:
                    return f"{member}: compression"
                if x.extra != y.extra or x.comment != y.comment:
                    return f"{member}: zip extra field or comment"
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        return f"not a readable wheel ({exc})"
    return "zip container bytes"


def _stamp(info: zipfile.ZipInfo) -> str:
    return "{:04d}-{:02d}-{:02d} {:02d}:{:02d}:{:02d}".format(*info.date_time)
