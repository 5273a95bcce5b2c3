"""The per-user cache: HTTP responses, core metadata and artifacts by sha256.

Shared by every wheelhouse on the machine. Artifacts are content-addressed, so a file
downloaded once (for metadata during resolution, or by fetch) is never downloaded again.

An artifact is trusted only after its bytes hash to its name (:meth:`Cache.verified`, the one
place that check lives); a corrupt entry is evicted with a warning and fetched again. Within
one process an entry it downloaded (hashed while written) or hashed is not read again while
its stat stamp is unchanged: a write to it, in place or by rename, changes the stamp.

Each file is written once. An entry this process downloaded is *moved* into the
first wheelhouse that needs it, and the cache keeps a note of where it went: a line
``<sha256> <path as JSON>`` appended to ``placed-v2/notes`` (:class:`_Notes`). A later request
for those bytes — another wheelhouse, a build, a repair — copies them from there (reflink or
copy, :func:`~wheelport.wheelhouse.copy_verified`) and hashes the copy; a note whose file is
gone or changed is dropped (a line ``<sha256> null``) and the file is downloaded again.

Wheelhouses never share an inode with the cache or with each other (no hard links), so
nothing done to one wheelhouse reaches the cache or another. Entries an earlier run left are
copied, not moved: syncing does not empty the cache.

Entries are files directly under their directory, named by their sha256 (artifacts) or the
sha256 of their key (pages, core metadata), with no fan-out directories: creating a directory
costs as much as creating a file, and a cold sync would make a few hundred of them.

``--no-cache`` runs with :meth:`Cache.temporary`: a cache of that run only, in a new private
temporary directory removed when the process exits. It is neither read from a previous run
nor left for the next.

The cache takes no lock: every write into it is a temporary file, checked, then renamed
(``download_verified`` for artifacts; ``atomic_write_bytes`` for HTTP pages and core
metadata), so a reader sees either no entry or a whole one, and two processes writing the same
entry write the same bytes. Placement notes are appended, each line in one ``write`` (the
kernel keeps appends to one file whole); a line a killed run cut short is skipped.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs

if TYPE_CHECKING:
    from wheelport.wheelhouse import Stamp

log = logging.getLogger("wheelport.cache")

#: stamp (:func:`~wheelport.wheelhouse.stat_stamp`) of an artifact entry this process
#: downloaded or hashed -> its sha256: while the stamp holds, the bytes are not read again
_known: dict[Stamp, str] = {}
#: the stamps of those entries this process downloaded: moved, not copied, into the first
#: wheelhouse that needs them (an entry an earlier run left stays in the cache)
_fresh: set[Stamp] = set()
_known_lock = threading.Lock()

#: caches whose killed runs' partial files this process has reclaimed
_reclaimed: set[Path] = set()
_reclaimed_lock = threading.Lock()


def _name(sha256: str) -> str:
    """``sha256`` as the name of a cache entry — only a real one: a lock or page's hash names
    files here, so one like ``../..`` must never become a path the cache reads, replaces or
    removes."""
    from wheelport.errors import FetchError
    from wheelport.index.models import is_sha256

    if not is_sha256(sha256):
        raise FetchError(
            f"not a sha256: {sha256[:80]!r} (64 lowercase hex digits expected)",
            hint="the lock or index that named this file is damaged; lock again",
        )
    return sha256


def default_cache_dir() -> Path:
    env = os.environ.get("WHEELPORT_CACHE_DIR")
    if env:
        return Path(env)
    return Path(platformdirs.user_cache_dir("wheelport", appauthor=False))


@dataclass(frozen=True)
class Cache:
    root: Path
    #: a cache of this run only (:meth:`temporary`)
    temporary_run: bool = False

    @classmethod
    def default(cls) -> Cache:
        return cls(default_cache_dir())

    @classmethod
    def temporary(cls) -> Cache:
        """A cache of this run only (``--no-cache``, as uv's): a new private directory under
        the system's temporary directory, removed when the process exits."""
        root = Path(tempfile.mkdtemp(prefix="wheelport-cache-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        return cls(root, temporary_run=True)

    @property
    def logs(self) -> Path:
        """Where logs of failed sdist builds are kept: under the user cache even for a
        :meth:`temporary` one, so the path an error names outlives the run."""
        return (default_cache_dir() if self.temporary_run else self.root) / "logs"

    @property
    def http(self) -> Path:
        return self.root / "http-v2"

    @property
    def metadata(self) -> Path:
        return self.root / "metadata-v2"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts-v2"

    def partial_dir(self) -> Path:
        """Where downloads are written before they are verified and renamed into place."""
        tmp = self.artifacts / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        self.reclaim()
        return tmp

    def reclaim(self) -> None:
        """Remove the partial files killed runs left in this cache: downloads, copies back
        from a wheelhouse, pages, core metadata and placement notes (never one a live process is still writing). Runs once
        per process and cache, before this process writes into it (the index client opens
        the cache with it, so a rerun that downloads nothing still cleans up)."""
        with _reclaimed_lock:  # the other threads wait: none writes here while it runs
            if self.root in _reclaimed:
                return
            from wheelport.wheelhouse import reclaim_partials

            reclaim_partials(self.artifacts / "tmp")
            for d in (self.artifacts, self.http, self.metadata, self.placed):
                reclaim_partials(d, ".*.part")
            _reclaimed.add(self.root)

    def artifact_path(self, sha256: str) -> Path:
        return self.artifacts / _name(sha256)

    @property
    def placed(self) -> Path:
        return self.root / "placed-v2"

    def placed_note(self, sha256: str) -> Path | None:
        """Where the file ``sha256`` was last placed, as the cache noted it (see the module
        docstring); None when it has no note."""
        return _notes(self.placed).get(_name(sha256))

    def forget_placed(self, sha256: str) -> None:
        """Drop the note of where the file ``sha256`` was placed (only a hint: a failure to
        write it is ignored)."""
        _notes(self.placed).add(_name(sha256), None)

    def verified(self, sha256: str, *, into: Path | None = None) -> Path | None:
        """The cache entry of ``sha256`` if its bytes hash to ``sha256``, else None.

        A corrupt entry is evicted with a one-line warning (the caller fetches it again).
        With ``into``, the file is put there and ``into`` is returned: an entry this process
        downloaded (its stamp unchanged) is moved — the bytes are written once — and
        its new place noted; any other entry is copied (reflink or copy through a temporary
        name, never a hard link), and it is the copy's bytes that are hashed, so what lands at
        ``into`` is exactly what was checked. With no entry, the copy the cache noted is used
        (:meth:`_from_placed`).
        """
        from wheelport.wheelhouse import copy_verified, move_known, sha256_file, stat_stamp

        path = self.artifact_path(sha256)
        try:
            st = path.stat()
            stamp = stat_stamp(st)
            with _known_lock:
                known = _known.get(stamp) == sha256
                fresh = known and stamp in _fresh
            if into is not None:
                if fresh and move_known(path, into, stamp):
                    self._note_placed(sha256, into)
                    return into
                how, actual = copy_verified(path, into, sha256, known=stamp if known else None)
                if how is not None:
                    return into
            else:
                actual = sha256 if known else sha256_file(path)
                if actual == sha256:
                    self.remember(path, sha256, stamp)
                    return path
        except FileNotFoundError:
            return self._from_placed(sha256, into)
        log.warning(
            "cache entry %s is corrupt (its sha256 is %s); evicted, fetching it again", path, actual
        )
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_ino == st.st_ino:  # not a good copy another process just renamed in
                path.unlink()
        return None

    def _note_placed(self, sha256: str, where: Path) -> None:
        _notes(self.placed).add(sha256, where.absolute())

    def _from_placed(self, sha256: str, into: Path | None) -> Path | None:
        """The file ``sha256`` copied from where the cache noted it was placed: to ``into``, or
        back into the cache (never handed out in place: a wheelhouse is not the cache's to
        trust between the check and the read). The copy is hashed; None, and the note
        dropped, when that file is gone or is no longer those bytes."""
        from wheelport.wheelhouse import copy_verified

        where = self.placed_note(sha256)
        if where is None:
            return None
        dest = into if into is not None else self.artifact_path(sha256)
        if where.is_absolute() and where != dest:
            try:
                how, _ = copy_verified(where, dest, sha256)
            except OSError:  # gone, unreadable, a directory now
                how = None
            if how is not None:
                if into is None:
                    self.remember(dest, sha256)
                return dest
        log.info("%s no longer holds %s; downloading it again", where, sha256)
        self.forget_placed(sha256)
        return None

    @staticmethod
    def remember(
        path: Path, sha256: str, stamp: Stamp | None = None, *, downloaded: bool = False
    ) -> None:
        """Note that the entry at ``path`` (with this stamp, else its current one) hashes to
        ``sha256`` — it was hashed as it was written, or just now: :meth:`verified` does not
        read it again while its stamp is unchanged (in this process). ``downloaded``: this
        process wrote it, so :meth:`verified` moves it rather than copies it."""
        from wheelport.wheelhouse import stat_stamp

        stamp = stamp or stat_stamp(path.stat())
        with _known_lock:
            _known[stamp] = sha256
            if downloaded:
                _fresh.add(stamp)

    @staticmethod
    def written_here(path: Path) -> Stamp | None:
        """The stamp of the entry at ``path`` if this process downloaded it and it is unchanged
        since (what a read-ahead process tells the one it works for), else None."""
        from wheelport.wheelhouse import stat_stamp

        try:
            stamp = stat_stamp(path.stat())
        except OSError:
            return None
        with _known_lock:
            return stamp if stamp in _fresh else None

    def http_path(self, key: str) -> Path:
        digest = hashlib.sha256(key.encode()).hexdigest()
        return self.http / f"{digest}.json"

    def metadata_path(self, key: str) -> Path:
        digest = hashlib.sha256(key.encode()).hexdigest()
        return self.metadata / digest


class _Notes:
    """The placement notes of one cache: an append-only file of lines ``<sha256> <path>``
    (the path as a JSON string; ``null`` drops the note), the last line of a sha256 winning.

    One file, not one per note: a cold sync places hundreds of files, and creating a file (an
    inode) costs as much here as a megabyte of download. This process reads the file once
    and then only what was appended since (other processes append too). When it outgrows
    :attr:`LIMIT`, the appender rewrites it with the last note of each file (newest first
    when even those are too many); a note another process appended in that instant may be
    lost, which only costs a later run a download. Any failure to read or write is ignored:
    a note is only a hint.
    """

    #: the size past which the notes are rewritten (about 20,000 notes)
    LIMIT = 4 << 20

    def __init__(self, directory: Path) -> None:
        self.path = directory / "notes"
        self._lock = threading.Lock()
        self._seen: dict[str, Path] = {}
        self._where = (-1, 0)  # (inode, offset) of what was read

    def get(self, sha256: str) -> Path | None:
        with self._lock:
            self._catch_up()
            return self._seen.get(sha256)

    def add(self, sha256: str, where: Path | None) -> None:
        line = f"{sha256} {json.dumps(None if where is None else str(where))}\n".encode()
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        with contextlib.suppress(OSError):
            try:
                fd = os.open(self.path, flags, 0o644)
            except FileNotFoundError:  # the cache's first note
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, flags, 0o644)
            try:
                os.write(fd, line)
                size = os.fstat(fd).st_size
            finally:
                os.close(fd)
            if size > self.LIMIT:
                self._rewrite()

    def _catch_up(self) -> None:
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                ino = st.st_ino
                if ino != self._where[0] or st.st_size < self._where[1]:  # replaced, truncated
                    self._seen.clear()
                    self._where = (ino, 0)
                f.seek(self._where[1])
                data = f.read()
        except OSError:
            return
        end = data.rfind(b"\n") + 1  # a line still being written (or cut short) waits
        self._where = (ino, self._where[1] + end)
        for sha256, where in _note_lines(data[:end]):
            self._seen.pop(sha256, None)  # a note made again moves to the end: the newest
            if where is not None:
                self._seen[sha256] = where

    def _rewrite(self) -> None:
        from wheelport.wheelhouse import atomic_write_bytes

        with self._lock:
            self._where = (-1, 0)
            self._catch_up()
            kept = list(self._seen.items())
        text = b"".join(f"{s} {json.dumps(str(p))}\n".encode() for s, p in kept)
        if len(text) > self.LIMIT // 2:
            text = text[len(text) - self.LIMIT // 2 :]
            text = text[text.find(b"\n") + 1 :]
        with contextlib.suppress(OSError):
            atomic_write_bytes(self.path, text, durable=False)


def _note_lines(data: bytes) -> Iterator[tuple[str, Path | None]]:
    """The well-formed lines of placement notes (others are skipped: a killed writer's)."""
    from wheelport.index.models import is_sha256

    for raw in data.splitlines():
        sha256, _, value = raw.decode("utf-8", "replace").partition(" ")
        if not is_sha256(sha256):
            continue
        try:
            where = json.loads(value)
        except ValueError:
            continue
        if where is None:
            yield sha256, None
        elif isinstance(where, str) and os.path.isabs(where):
            yield sha256, Path(where)


_notes_of: dict[Path, _Notes] = {}
_notes_lock = threading.Lock()


def _notes(directory: Path) -> _Notes:
    """The placement notes kept in ``directory`` (one reader per cache and process)."""
    with _notes_lock:
        notes = _notes_of.get(directory)
        if notes is None:
            notes = _notes_of[directory] = _Notes(directory)
        return notes
