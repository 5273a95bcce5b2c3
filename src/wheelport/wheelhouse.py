"""The wheelhouse layout: its paths, and the low-level ways every stage writes and reads it.

Paths (:class:`Wheelhouse`), atomic writes through flock'd partial files and their reclaiming
(:func:`atomic_target`, :func:`reclaim_partials`), the one line for a full disk
(:func:`disk_full`), hashing (:func:`sha256_file`), containment of paths read from files
(:func:`contained`), copies that share no inode (:func:`copy_verified`) and the advisory lock
(:func:`locked`). It imports nothing above it — errors, the manifest's types and
bootstrap.py's stdlib helpers only; what a verb writes at its end is :mod:`wheelport.finish`.

The layout is a contract every stage and every export reads::

    wheelhouse/
      wheels/                  every wheel, flat, canonical file names
      wheels/<wheel>.metadata  PEP 658 core metadata beside each wheel
      sdists/                  source archives that were built
      simple/                  static PEP 503 HTML + PEP 691 JSON index
      pylock.<target>.toml     PEP 751 lock per target (artifact paths relative to the wheelhouse)
      wheelport.json           manifest: inputs digest, targets, every artifact's sha256/size/origin
      bootstrap.py             stdlib-only installer
      logs/                    build logs of failed builds
      .wheelport.lock          advisory lock (flock) of the verbs that write or read it

Manifest shape (``wheelport.json``)::

    {
      "version": 1,
      "inputs_digest": "<sha256 of the normalized inputs>",
      "targets": ["cp312-manylinux_2_28_x86_64", ...],
      "artifacts": {
        "wheels/foo-1.0-py3-none-any.whl": {
          "sha256": "...", "size": 123,
          "origin": {"kind": "download", "url": "https://..."}
                 or {"kind": "build", "builder": "native" | "container:<image>",
                     "sdist": "sdists/foo-1.0.tar.gz", "sdist_sha256": "...",
                     "targets": ["cp312-..."]}
        },
        "sdists/foo-1.0.tar.gz": {...}
      }
    }
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from wheelport.errors import DiskFullError, VerifyError
from wheelport.manifest import Manifest, ManifestError

#: the advisory lock file beside the manifest (hidden: never verified, bundled or served)
LOCK_NAME = ".wheelport.lock"

log = logging.getLogger("wheelport.wheelhouse")


@dataclass(frozen=True)
class Wheelhouse:
    """Paths of one wheelhouse directory."""

    root: Path

    @property
    def wheels(self) -> Path:
        return self.root / "wheels"

    @property
    def sdists(self) -> Path:
        return self.root / "sdists"

    @property
    def simple(self) -> Path:
        return self.root / "simple"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def manifest_path(self) -> Path:
        return self.root / "wheelport.json"

    @property
    def bootstrap_path(self) -> Path:
        return self.root / "bootstrap.py"

    def lock_path(self, target_id: str) -> Path:
        return self.root / f"pylock.{target_id}.toml"

    def lock_paths(self) -> list[Path]:
        return sorted(self.root.glob("pylock.*.toml"))

    def relative(self, path: Path) -> str:
        """A path inside the wheelhouse as the POSIX relative string the lock and manifest use."""
        return path.resolve().relative_to(self.root.resolve()).as_posix()

    def load_manifest(self) -> Manifest:
        return load_manifest(self.manifest_path)

    def save_manifest(self, manifest: Manifest) -> None:
        """Write the manifest (not when the file already holds exactly this: a no-op run
        writes nothing)."""
        text = json.dumps(manifest.to_dict(), indent=2, sort_keys=True) + "\n"
        with contextlib.suppress(OSError, UnicodeDecodeError):
            if self.manifest_path.read_text(encoding="utf-8") == text:
                return
        atomic_write_text(self.manifest_path, text)

    @property
    def lock_file(self) -> Path:
        return self.root / LOCK_NAME

    def contained(self, rel: str, source: str) -> Path:
        """``rel`` (read from ``source``) joined to the wheelhouse; see :func:`contained`."""
        return contained(self.root, rel, source)

    def locked(self, verb: str, *, shared: bool = False) -> contextlib.AbstractContextManager[None]:
        """Hold the wheelhouse's advisory lock for ``verb``; see :func:`locked`."""
        return locked([(self.root, shared)], verb)


def load_manifest(path: Path) -> Manifest:
    """The manifest at ``path``, or an empty one when it does not exist; :class:`ManifestError`
    naming the field when it is not the shape wheelport writes."""
    if not path.exists():
        return Manifest()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestError(
            f"{path} is not valid JSON: {exc}",
            hint="the manifest is damaged; re-run 'wheelport sync' to rewrite it",
            path=str(path),
        ) from None
    return Manifest.from_dict(data)


#: what identifies a file's bytes without reading them: device, inode, size, mtime_ns and
#: ctime_ns. Any write, truncation, rename or chmod changes ctime, which no user can set back,
#: so an unchanged stamp means unchanged bytes (the rule git's index relies on)
Stamp = tuple[int, int, int, int, int]


def stat_stamp(st: os.stat_result) -> Stamp:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file (bootstrap.py's function: one hashing routine everywhere)."""
    from wheelport.bootstrap import sha256_of

    return sha256_of(str(path))


# --------------------------------------------------------------------------- partial files
#
# Every file wheelport writes goes to a temporary ``*.part`` name first and is renamed into
# place. While it is written its writer holds an flock on it (through a second descriptor,
# kept until the rename or removal), so any process can tell a live writer's file from one a
# killed process left (:func:`reclaim_partials` removes those), and an interrupted process
# removes its own (:func:`remove_own_partials`) before it exits.

_partials_lock = threading.Lock()
#: temporary path -> the descriptor holding its flock (this process's live partial files)
_partials: dict[str, int] = {}
_partials_closed = False


def partial_file(directory: Path, prefix: str = "") -> tuple[int, str]:
    """A new ``<prefix>XXXXXXXX.part`` in ``directory``, flock'd: (write descriptor, path).
    Give it back with :func:`release_partial` once it is renamed or removed."""
    while True:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=".part")
        # the lock lives on the open file (a duplicate descriptor keeps it when the writer
        # closes ``fd``), not on the name another process may remove before it is taken
        lock_fd = os.dup(fd)
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        try:
            same = os.stat(tmp).st_ino == os.fstat(lock_fd).st_ino
        except FileNotFoundError:  # reclaimed in the instant before the lock: make another
            same = False
        if same:
            with _partials_lock:
                if not _partials_closed:
                    _partials[tmp] = lock_fd
                    return fd, tmp
            _unlink_quietly(tmp)  # interrupted: this process writes nothing more
            os.close(lock_fd)
            os.close(fd)
            raise KeyboardInterrupt
        os.close(lock_fd)
        os.close(fd)


def release_partial(tmp: str) -> None:
    """The partial file ``tmp`` was renamed into place or removed: drop its lock."""
    with _partials_lock:
        lock_fd = _partials.pop(tmp, None)
    if lock_fd is not None:
        os.close(lock_fd)


def remove_own_partials() -> None:
    """Remove every partial file this process is writing and refuse new ones (on SIGINT, just
    before the process ends without waiting for its worker threads)."""
    global _partials_closed
    with _partials_lock:
        _partials_closed = True
        owned = list(_partials)
    for tmp in owned:
        _unlink_quietly(tmp)


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def reclaim_partials(directory: Path, pattern: str = "*.part") -> int:
    """Remove the partial files in ``directory`` that no live process is writing (their writer
    was killed: nothing holds their flock). Returns how many were removed."""
    removed = 0
    try:
        candidates = list(directory.glob(pattern))
    except OSError:
        return 0
    for path in candidates:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.stat(path).st_ino == os.fstat(fd).st_ino:  # not renamed meanwhile
                os.unlink(path)
                removed += 1
        except OSError:  # locked by its live writer, or gone
            pass
        finally:
            os.close(fd)
    if removed:
        log.info("removed %d partial file(s) a killed run left in %s", removed, directory)
    return removed


# --------------------------------------------------------------------------- a full disk


def disk_full(path: str | Path, needed: int | None = None) -> DiskFullError:
    """The one line for a write that found no space: the path, the space it needs and the free
    space where it was written."""
    where = Path(path)
    free: int | None = None
    probe = where
    while free is None:
        try:
            st = os.statvfs(probe)
            free = st.f_bavail * st.f_frsize
        except OSError:
            if probe == probe.parent:
                break
            probe = probe.parent
    need = f"needs {human_size(needed)}" if needed else "needs more space"
    have = f", {human_size(free)} free there" if free is not None else ""
    return DiskFullError(
        f"no space left on the device writing {where} ({need}{have})",
        hint="free some space, or point WHEELPORT_CACHE_DIR / -o at a larger disk, and run it "
        "again (what was written before is intact)",
        path=str(where),
    )


def human_size(n: int) -> str:
    """A byte count as people read it (``835.5 KiB``)."""
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{n} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} bytes"  # pragma: no cover


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def atomic_target(
    path: Path, mode: str = "wb", *, durable: bool = True, needed: int | None = None
) -> Iterator[Any]:
    """Open a temporary file beside ``path``; on success rename it into place.

    A crash or an exception leaves no partial ``path`` behind (the temporary is removed; one
    a killed process left is reclaimed later, :func:`reclaim_partials`). ``durable`` fsyncs
    before the rename (for records such as locks and the manifest); derived files that are
    rebuilt on demand (caches, index pages) skip it. The file gets the mode ``open()`` would
    give it (0666 less the umask): a wheelhouse is served and read by other users (nginx, pip
    in a container). A full disk is :class:`DiskFullError` naming ``path`` (and ``needed``
    bytes when the caller knows them).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = partial_file(path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # as open() would make it, not mkstemp's 0600
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        _unlink_quietly(tmp)
        if is_disk_full(exc):
            raise disk_full(path, needed) from None
        raise
    finally:
        release_partial(tmp)


def atomic_write_text(path: Path, text: str, *, durable: bool = True) -> None:
    with atomic_target(path, "w", durable=durable, needed=len(text.encode())) as f:
        f.write(text)


def atomic_write_bytes(path: Path, data: bytes, *, durable: bool = True) -> None:
    with atomic_target(path, "wb", durable=durable, needed=len(data)) as f:
        f.write(data)


# --------------------------------------------------------------------------- contained paths


def contained(root: Path, rel: str, source: str) -> Path:
    """``root / rel`` when ``rel`` stays inside ``root``; else :class:`VerifyError`.

    ``rel`` is a path read from a file (``source``: a lock, the manifest, a bundle); it is
    refused when it is absolute, has a ``..`` component, or resolves (symlinks included)
    outside ``root``. The check is bootstrap.py's (one routine, stdlib only).
    """
    from wheelport.bootstrap import escape_reason

    why = escape_reason(str(root), rel)
    if why is not None:
        raise VerifyError(
            f"{rel!r} in {source} escapes the wheelhouse {root}: {why}",
            hint="the lock or manifest was edited by hand or is hostile; re-run 'wheelport sync' "
            "in a clean directory",
            path=str(rel),
        )
    return root / rel


# --------------------------------------------------------------------------- copies


#: Linux ``FICLONE`` ioctl: share the source's extents (btrfs, xfs, bcachefs); copy-on-write
FICLONE = 0x40049409


def _current_umask() -> int:
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _reflink(src_fd: int, dst_fd: int) -> bool:
    try:
        fcntl.ioctl(dst_fd, FICLONE, src_fd)
    except OSError:
        return False
    return True


def _copy_descriptor(fsrc: BinaryIO, fdst: BinaryIO) -> None:
    """Copy all of ``fsrc`` into ``fdst``: in the kernel (sendfile) where it can, else
    through a buffer."""
    offset = 0
    try:
        while True:
            sent = os.sendfile(fdst.fileno(), fsrc.fileno(), offset, 1 << 30)
            if sent == 0:
                return
            offset += sent
    except OSError as exc:
        if offset or exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSOCK):
            raise
    fsrc.seek(0)
    shutil.copyfileobj(fsrc, fdst, 1 << 20)


def copy_verified(
    src: Path, dest: Path, sha256: str | None = None, *, known: Stamp | None = None
) -> tuple[str | None, str]:
    """Put an independent copy of ``src`` at ``dest``: a reflink when the filesystem can, else
    a plain copy; through a temporary name beside ``dest`` and a rename, never a hard link,
    so a later write to either file cannot change the other.

    The sha256 is taken of the bytes written (read back from the temporary file) — except
    when ``known`` is the :func:`stat_stamp` ``src`` had when it was found to hash to
    ``sha256``: then the kernel's copy of it is not read again, provided the file copied
    (the descriptor read, whatever was renamed over its path meanwhile) still has that stamp
    after the copy.
    Returns ``(how, sha256)``: ``how`` is ``"reflink"`` or ``"copy"`` when ``dest`` was put in
    place, ``None`` when ``sha256`` was given and the copy did not match it (then nothing is
    left at ``dest`` and an old ``dest`` is untouched).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = partial_file(dest.parent, prefix=f".{dest.name}.")
    try:
        with open(src, "rb") as fsrc, os.fdopen(fd, "wb") as fdst:
            os.fchmod(fdst.fileno(), 0o666 & ~_UMASK)
            how = "reflink" if _reflink(fsrc.fileno(), fdst.fileno()) else "copy"
            if how == "copy":
                _copy_descriptor(fsrc, fdst)
            unchanged = known is not None and stat_stamp(os.fstat(fsrc.fileno())) == known
        # unless the source is known unchanged, hash what landed in the temporary file: the
        # bytes that will be renamed into place
        digest = sha256 if unchanged and sha256 is not None else sha256_file(Path(tmp))
        if sha256 is not None and digest != sha256:
            os.unlink(tmp)
            return None, digest
        os.replace(tmp, dest)
        return how, digest
    except BaseException as exc:
        _unlink_quietly(tmp)
        if is_disk_full(exc):
            raise disk_full(dest, src.stat().st_size) from None
        raise
    finally:
        release_partial(tmp)


def move_known(src: Path, dest: Path, known: Stamp) -> bool:
    """Rename ``src`` (a cache entry this run downloaded) to ``dest``, when it
    still has the stamp ``known`` it had when it was found good: the file is written once, not
    copied.
    It gets the mode ``open()`` would give it. False (nothing moved) when the stamp moved or
    ``dest`` is on another filesystem: the caller copies and hashes instead."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if stat_stamp(os.fstat(fd)) != known:
            return False
        os.fchmod(fd, 0o666 & ~_UMASK)  # the cache's partial files are mkstemp's 0600
        try:
            os.rename(src, dest)
        except OSError as exc:
            if exc.errno == errno.EXDEV:
                return False
            raise
        if os.stat(dest).st_ino != os.fstat(fd).st_ino:  # swapped in the instant before
            os.unlink(dest)
            return False
        return True
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- locking

#: locks this thread holds: lock file path -> [fd, shared, depth]
_held = threading.local()


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 128, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    pid, _, verb = text.partition(" ")
    if not pid.isdigit():  # readers share the lock and write nothing
        return "another wheelport process (reading)"
    return f"pid {pid} (wheelport {verb.strip() or '?'})"


def _open_locked(path: Path, shared: bool) -> int:
    """A descriptor of ``path`` holding its flock; the file at ``path`` is the one locked (a
    holder that removed it on release — see :func:`_lock_one` — makes the waiter retry)."""
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    told = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                if not told:
                    log.warning("waiting for %s holding %s…", _holder(fd), path)
                    told = True
                fcntl.flock(fd, mode)
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            return fd
        os.close(fd)


@contextlib.contextmanager
def _lock_one(root: Path, shared: bool, verb: str) -> Iterator[None]:
    held: dict[str, list[Any]] = _held.__dict__.setdefault("locks", {})
    path = root / LOCK_NAME
    key = os.path.realpath(path)
    mine = held.get(key)
    if mine is not None:  # re-entered (sync -> lock, merge into one of its inputs)
        if mine[1] and not shared:
            raise RuntimeError(f"{path}: cannot upgrade a shared lock to exclusive")
        mine[2] += 1
        try:
            yield
        finally:
            mine[2] -= 1
        return
    created: Path | None = None  # the topmost directory this call created, if any
    if not shared and not root.is_dir():
        created = root.absolute()
        while not created.parent.exists():
            created = created.parent
        root.mkdir(parents=True, exist_ok=True)
    try:
        fd = _open_locked(path, shared)
    except OSError as exc:
        if shared and exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM, errno.ENOENT):
            yield  # a read-only wheelhouse: nobody here can write it, read it unlocked
            return
        raise
    try:
        before = os.fstat(fd)
        if not shared:  # the one writer says who it is; the file is emptied on release
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()} {verb}\n".encode(), 0)
        held[key] = [fd, shared, 1]
        try:
            yield
        finally:
            del held[key]
            if not shared:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
                    # and keeps its mtime: a run that changed nothing leaves no trace
                    os.utime(fd, ns=(before.st_atime_ns, before.st_mtime_ns))
            if created is not None:
                _remove_if_unused(root, created)
    finally:
        os.close(fd)  # closing the last descriptor releases the flock


def _remove_if_unused(root: Path, created: Path) -> None:
    """A verb that failed before writing anything leaves no directory behind: remove the lock
    file (still holding it) and the directories this process created, if that is all there is."""
    with contextlib.suppress(OSError):
        if os.listdir(root) != [LOCK_NAME]:
            return
        os.unlink(root / LOCK_NAME)
        d = root.absolute()
        while True:
            os.rmdir(d)
            if d == created:
                break
            d = d.parent


@contextlib.contextmanager
def locked(roots: list[tuple[Path, bool]], verb: str) -> Iterator[None]:
    """Hold the advisory locks (``fcntl.flock`` on ``<root>/.wheelport.lock``) of ``roots``,
    each ``(root, shared)``: exclusive for the verbs that write a wheelhouse, shared for those
    that need a stable view of it. Taken in path order (no deadlock between two verbs that
    lock several wheelhouses); re-entrant within a thread. When another process holds a lock,
    one line ``waiting for pid N (wheelport VERB) holding PATH…`` is logged (an exclusive
    holder writes its pid and verb into the file, and empties it on release; readers write
    nothing) and the call blocks until it is released.
    """
    wanted: dict[str, tuple[Path, bool]] = {}
    for root, shared in roots:
        key = os.path.realpath(root)
        old = wanted.get(key)
        wanted[key] = (Path(root), shared and (old is None or old[1]))  # exclusive wins
    with contextlib.ExitStack() as stack:
        for _key, (root, shared) in sorted(wanted.items()):
            stack.enter_context(_lock_one(root, shared, verb))
        yield


_F = TypeVar("_F", bound=Callable[..., Any])


def holding_lock(verb: str, *, shared: bool) -> Callable[[_F], _F]:
    """Decorator: run the verb holding the lock of the wheelhouse given as its first argument
    (or ``wheelhouse=``) — for library functions whose whole body reads a wheelhouse."""
    import functools

    def wrap(func: _F) -> _F:
        @functools.wraps(func)
        def inner(*args: Any, **kwargs: Any) -> Any:
            root = kwargs["wheelhouse"] if "wheelhouse" in kwargs else args[0]
            with locked([(Path(root), shared)], verb):
                return func(*args, **kwargs)

        return inner  # type: ignore[return-value]

    return wrap
