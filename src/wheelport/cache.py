"""The per-user cache: HTTP responses, core metadata and artifacts by sha256.

Shared by every wheelhouse on the machine. Artifacts are content-addressed, so a file
downloaded once (for metadata during resolution, or by fetch) is never downloaded again.

An artifact is trusted only after its bytes hash to its name (:meth:`Cache.verified`, the one
place that check lives); a corrupt entry is evicted with a warning and fetched again. Within
one process an entry it downloaded (hashed while written) or hashed is not read again while
its stat stamp is unchanged: a write to it, in place or by rename, changes the stamp.

Each file is written once. An entry this process downloaded is *moved* into the
first wheelhouse that needs it, and the cache keeps a note of where it went
(``placed-v1/<sha256>``: the path). A later request for those bytes — another wheelhouse, a
build, a repair — copies them from there (reflink or copy, :func:`~wheelport.wheelhouse.copy_verified`)
and hashes the copy; a note whose file is gone or changed is dropped and the file is
downloaded again. Wheelhouses never share an inode with the cache or with each other (no hard
links), so nothing done to one wheelhouse reaches the cache or another. Entries an earlier
run left are copied, not moved: syncing does not empty the cache.

``--no-cache`` runs with :meth:`Cache.temporary`: a cache of that run only, in a new private
temporary directory removed when the process exits. It is neither read from a previous run
nor left for the next.

The cache takes no lock: every write into it is a temporary file, checked, then renamed
(``download_verified`` for artifacts; ``atomic_write_bytes`` for HTTP pages, core metadata
and placement notes), so a reader sees either no entry or a whole one, and two processes
writing the same entry write the same bytes.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import threading
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


def _parts(sha256: str) -> Path:
    """``ab/cdef…`` for a sha256 — only a real one: a lock or page's hash names files here, so
    one like ``../..`` must never become a path the cache reads, replaces or removes."""
    from wheelport.errors import FetchError
    from wheelport.index.models import is_sha256

    if not is_sha256(sha256):
        raise FetchError(
            f"not a sha256: {sha256[:80]!r} (64 lowercase hex digits expected)",
            hint="the lock or index that named this file is damaged; lock again",
        )
    return Path(sha256[:2], sha256[2:])


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
        return self.root / "http-v1"

    @property
    def metadata(self) -> Path:
        return self.root / "metadata-v1"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts-v1"

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
                reclaim_partials(d, "*/.*.part")
            _reclaimed.add(self.root)

    def artifact_path(self, sha256: str) -> Path:
        return self.artifacts / _parts(sha256)

    @property
    def placed(self) -> Path:
        return self.root / "placed-v1"

    def placed_path(self, sha256: str) -> Path:
        """The note of where the file ``sha256`` was last placed (see the module docstring)."""
        return self.placed / _parts(sha256)

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
        from wheelport.wheelhouse import atomic_write_text

        with contextlib.suppress(OSError):  # only a hint: without it, a later run downloads
            atomic_write_text(self.placed_path(sha256), str(where.absolute()), durable=False)

    def _from_placed(self, sha256: str, into: Path | None) -> Path | None:
        """The file ``sha256`` copied from where the cache noted it was placed: to ``into``, or
        back into the cache (never handed out in place: a wheelhouse is not the cache's to
        trust between the check and the read). The copy is hashed; None, and the note
        dropped, when that file is gone or is no longer those bytes."""
        from wheelport.wheelhouse import copy_verified

        note = self.placed_path(sha256)
        try:
            where = Path(note.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
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
        note.unlink(missing_ok=True)
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
        return self.http / digest[:2] / f"{digest[2:]}.json"

    def metadata_path(self, key: str) -> Path:
        digest = hashlib.sha256(key.encode()).hexdigest()
        return self.metadata / digest[:2] / digest[2:]
