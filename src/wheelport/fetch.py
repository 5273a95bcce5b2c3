"""Fetch: every artifact the locks name, downloaded concurrently and verified.

A file is downloaded into the content-addressed cache (temporary name → sha256 and size
checked while written → renamed), then put into ``wheels/`` or ``sdists/`` by
:meth:`Cache.verified <wheelport.cache.Cache.verified>`: moved there when this run downloaded
it (written once; the cache notes where it went), else copied — a reflink where
the filesystem has them, else a plain copy, through a temporary name, hashed on the way, then
renamed. Never a hard link: a file edited in one wheelhouse cannot reach the cache or another
wheelhouse. A corrupt cache entry is evicted with a warning and downloaded again.

A rerun checks the files already present and repairs, with a warning naming it, every file
that does not match; :func:`recheck` does the same for the files the manifest records before a
sync starts. A file is hashed only when its stat stamp (device, inode, size, mtime_ns,
ctime_ns) differs from the one recorded when it was last verified — the way git's index works:
the stamps live in ``.wheelport-stamps.json`` beside the manifest (hidden, never part of a
bundle or an index, not the same on two machines), and any write, copy, rename, truncation or
``chmod`` changes ctime, which no user can set back. ``verify`` ignores the stamps and hashes
every file.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from packaging.pylock import Pylock
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from wheelport.bootstrap import escape_reason
from wheelport.cache import Cache
from wheelport.credentials import redact
from wheelport.errors import FetchError, IndexAccessError, VerifyError, WheelportError
from wheelport.index.client import IndexClient, found_corrupt, inflight
from wheelport.lock import lock_tool
from wheelport.manifest import ArtifactRecord, Manifest, Origin
from wheelport.targets import Target
from wheelport.wheelhouse import (
    Wheelhouse,
    atomic_write_bytes,
    atomic_write_text,
    copy_verified,
    reclaim_partials,
    sha256_file,
    stat_stamp,
)

if TYPE_CHECKING:  # metadata, wheel checks and the resolver's types are imported where a
    # download or a resolution needs them: a sync that finds everything in place loads none
    from wheelport.index.models import DistFile
    from wheelport.index.sources import CoreMetadata, ReadHere
    from wheelport.resolve import Candidate, Reporter, Resolution

log = logging.getLogger("wheelport.fetch")


@dataclass(frozen=True)
class Artifact:
    """One file a lock names: where it goes in the wheelhouse and where it comes from."""

    path: str  # relative to the wheelhouse: wheels/<f> or sdists/<f>
    url: str
    sha256: str
    size: int | None
    #: the project whose page listed the file (its wheels are checked against it)
    project: str | None = None

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
        name = str(pkg.name)
        for w in pkg.wheels or []:
            if w.url and w.path:
                out.append(Artifact(w.path, w.url, w.hashes["sha256"], w.size, name))
        sd = pkg.sdist
        if sd is not None and sd.url and sd.path:
            out.append(Artifact(sd.path, sd.url, sd.hashes["sha256"], sd.size, name))
    for tool in lock_tool(lock).get("tools", []):
        if tool.get("url"):
            out.append(
                Artifact(
                    tool["path"], tool["url"], tool["sha256"], tool.get("size") or None,
                    tool.get("name"),
                )
            )  # fmt: skip
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
    """Remove temporary files a killed run left (``.<name>.*.part`` no live writer holds)."""
    for d in (wheelhouse.wheels, wheelhouse.sdists, wheelhouse.root):
        if d.is_dir():
            reclaim_partials(d, ".*.part")


def place(src: Path, dest: Path) -> None:
    """Put an independent copy of the verified file ``src`` at ``dest`` (reflink or copy
    through a temporary name; never a hard link)."""
    copy_verified(src, dest)


# ----------------------------------------------------------------------------- re-hashing

_memo_lock = threading.Lock()
#: (path, dev, inode, size, mtime_ns, ctime_ns) -> sha256: loaded from the wheelhouse's stamps
#: by :func:`recheck`, added to as files are hashed or written
_memo: dict[tuple[str, int, int, int, int, int], str] = {}

#: the stamps of the files last verified, beside the manifest (see the module docstring)
STAMPS_NAME = ".wheelport-stamps.json"


def _stamp(path: Path, st: os.stat_result) -> tuple[str, int, int, int, int, int]:
    return (str(path.absolute()), *stat_stamp(st))


def _load_stamps(wheelhouse: Wheelhouse) -> None:
    """Remember the hashes the stamps file records (a damaged file is ignored: all is hashed)."""
    try:
        data = json.loads((wheelhouse.root / STAMPS_NAME).read_text(encoding="utf-8"))
        entries = data["files"] if data.get("version") == 1 else {}
        with _memo_lock:
            for rel, (dev, ino, size, mtime, ctime, sha) in entries.items():
                if isinstance(sha, str) and escape_reason(str(wheelhouse.root), rel) is None:
                    key = (str((wheelhouse.root / rel).absolute()), dev, ino, size, mtime, ctime)
                    _memo[key] = sha
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return


def save_stamps(wheelhouse: Wheelhouse, manifest: Manifest) -> None:
    """Record the stamp of every file the manifest names whose hash was verified in this
    process and still matches the manifest (written only when it changed)."""
    files: dict[str, list[Any]] = {}
    with _memo_lock:
        memo = dict(_memo)
    for rel, rec in sorted(manifest.artifacts.items()):
        try:
            st = (wheelhouse.root / rel).stat()
        except OSError:
            continue
        key = _stamp(wheelhouse.root / rel, st)
        if memo.get(key) == rec.sha256:
            files[rel] = [*key[1:], rec.sha256]
    text = json.dumps({"version": 1, "files": files}, separators=(",", ":"), sort_keys=True)
    path = wheelhouse.root / STAMPS_NAME
    with contextlib.suppress(OSError):
        if path.read_text(encoding="utf-8") == text:
            return
    atomic_write_text(path, text, durable=False)


def file_sha256(path: Path) -> str:
    """The sha256 of a wheelhouse file, hashed only when its stat stamp changed.

    The hash is remembered with the file's stat stamp — device, inode, size, mtime_ns and
    ctime_ns; any write or rename changes ctime, which a user cannot set — and reused only
    while the stamp is unchanged (across runs through :data:`STAMPS_NAME`).
    """
    st = path.stat()
    key = _stamp(path, st)
    with _memo_lock:
        hit = _memo.get(key)
    if hit is not None:
        return hit
    digest = sha256_file(path)
    if _stamp(path, path.stat()) == key:  # unchanged while it was read
        with _memo_lock:
            _memo[key] = digest
    return digest


def remember_hash(path: Path, digest: str) -> None:
    """Record the hash of a file this process just wrote (its bytes were hashed while copied,
    or it was hashed to be recorded), so no later check hashes it again while unchanged."""
    with _memo_lock:
        _memo[_stamp(path, path.stat())] = digest


def recheck(
    wheelhouse: Wheelhouse, manifest: Manifest | None = None, *, jobs: int = 4
) -> list[str]:
    """Before a sync: refuse paths that escape the wheelhouse, and re-hash every file the
    manifest records; one that does not match its sha256 is removed with a warning naming it,
    so fetch (downloads) or the build stage (built wheels) puts it back. Returns those paths.
    """
    from wheelport.verify import unsafe_paths

    if manifest is None:
        manifest = wheelhouse.load_manifest()
    bad = unsafe_paths(wheelhouse, manifest)
    if bad:
        rel, who, why = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise VerifyError(
            f"{rel!r} in {who} escapes the wheelhouse {wheelhouse.root}: {why}{more}",
            hint="the lock or manifest was edited by hand or is hostile; sync into a new directory",
            path=rel,
        )
    with _memo_lock:
        _memo.clear()
    _load_stamps(wheelhouse)

    def check(item: tuple[str, ArtifactRecord]) -> tuple[str, str, str | None]:
        rel, rec = item
        path = wheelhouse.root / rel
        if not path.is_file():
            return rel, rec.sha256, None
        return rel, rec.sha256, file_sha256(path)

    repaired: list[str] = []
    with ThreadPoolExecutor(max_workers=max(1, min(jobs, os.cpu_count() or 1))) as pool:
        for rel, expected, actual in pool.map(check, sorted(manifest.artifacts.items())):
            if actual is None or actual == expected:
                continue
            log.warning(
                "%s does not match its sha256 in wheelport.json (it is %s, expected %s); "
                "repairing it",
                rel,
                actual,
                expected,
            )
            with contextlib.suppress(FileNotFoundError):
                (wheelhouse.root / rel).unlink()
            repaired.append(rel)
    return repaired


def drop_locks_naming(wheelhouse: Wheelhouse, sha256: str) -> None:
    """Remove the locks that name a file which was refused: they were made from what the index
    claimed of it, so the next run resolves again instead of installing a missing file."""
    for lock_path in wheelhouse.lock_paths():
        with contextlib.suppress(OSError):
            if sha256 in lock_path.read_text(encoding="utf-8"):
                lock_path.unlink()


def check_wheel(wheelhouse: Wheelhouse, a: Artifact, src: Path, cache: Cache) -> None:
    """A wheel enters a wheelhouse only when its file name, the project page it came from, its
    ``.dist-info`` directory and its METADATA ``Name``/``Version`` agree and no member leaves
    the install directory (:func:`~wheelport.index.metadata.read_wheel`): an impostor that
    pip would refuse only at install time is refused here — and when it carries the metadata
    the resolution used (:func:`check_resolved_metadata`). The archive is read once."""
    if not a.filename.endswith(".whl"):
        return
    from wheelport.index.metadata import read_wheel

    # the bytes at src are a.sha256's (just verified): a verdict our read-ahead process reached
    # on them stands
    why, data = read_wheel(src, a.filename, a.project, sha256=a.sha256)
    if why is not None:
        drop_locks_naming(wheelhouse, a.sha256)
        raise FetchError(
            f"{a.project or a.filename}: {a.filename} is not the wheel it is named: {why}",
            hint="the index serves a file that is not what it lists; nothing was placed and "
            "the lock made from it was removed",
            package=a.project,
            path=a.path,
        )
    assert data is not None
    check_resolved_metadata(wheelhouse, a, data, cache)


def check_resolved_metadata(wheelhouse: Wheelhouse, a: Artifact, data: bytes, cache: Cache) -> None:
    """A wheel must carry the metadata the resolution used (pip fails the same way).

    The resolver read the PEP 658 ``.metadata`` the index served (kept in the cache under the
    wheel's sha256); when the verified wheel's own METADATA (``data``) names another project or
    version, or other dependencies or Requires-Python, the lock was made from false metadata:
    the wheel is not placed, the cache learns the wheel's true metadata, and the locks that
    name the wheel are removed so the next run resolves again.
    """
    cached = cache.metadata_path(f"meta:{a.sha256}")
    try:
        used = cached.read_bytes()
    except FileNotFoundError:
        return  # resolved elsewhere (another cache): nothing to compare with
    if used == data:  # read from this wheel, or a PEP 658 file the index cut from it
        return
    from wheelport.index.sources import CoreMetadata

    resolved = CoreMetadata.parse(used, a.filename)
    actual = CoreMetadata.parse(data, a.filename)
    differs = _metadata_differences(resolved, actual)
    if not differs:
        return
    atomic_write_bytes(cached, data, durable=False)
    drop_locks_naming(wheelhouse, a.sha256)
    raise FetchError(
        f"{a.filename}: the wheel's METADATA differs from the metadata the index served "
        f"({'; '.join(differs)})",
        hint="the lock made from it was removed; rerun to resolve again",
        path=a.path,
    )


def _metadata_differences(resolved: CoreMetadata, actual: CoreMetadata) -> list[str]:
    """What differs between two metadata, as short phrases (empty: they agree)."""
    out: list[str] = []
    if canonicalize_name(resolved.name) != canonicalize_name(actual.name):
        out.append(f"Name {resolved.name!r} vs {actual.name!r}")
    try:
        same_version = Version(resolved.version) == Version(actual.version)
    except InvalidVersion:
        same_version = resolved.version == actual.version
    if not same_version:
        out.append(f"Version {resolved.version} vs {actual.version}")
    try:
        same_python = SpecifierSet(resolved.requires_python or "") == SpecifierSet(
            actual.requires_python or ""
        )
    except InvalidSpecifier:
        same_python = resolved.requires_python == actual.requires_python
    if not same_python:
        out.append(f"Requires-Python {resolved.requires_python} vs {actual.requires_python}")
    served = {str(r) for r in resolved.requires_dist}
    carried = {str(r) for r in actual.requires_dist}
    if served != carried:
        extra = ", ".join(sorted(served - carried)) or "nothing"
        missing = ", ".join(sorted(carried - served)) or "nothing"
        out.append(f"Requires-Dist: served {extra} that the wheel lacks, lacks {missing}")
    return out


class Prefetcher:
    """Downloads files into the cache while resolution still runs, so a sync ends close to when
    the last byte arrives instead of resolving first and then downloading: each file as soon as
    the resolver pins it (once a target's search backtracks, only small ones, up to
    :data:`SPECULATIVE_BYTES`: a backtracked pin is a wasted download), and every file of a
    target's resolution when that target is resolved.

    The downloads run in a second process (:mod:`wheelport.index.worker`): in this one they
    would take the GIL from the resolver for every TLS record. While the process downloads a
    file this process holds that file's download lock (:func:`~wheelport.index.client.inflight`),
    so fetch waits for it and then finds it in the cache — a file is never downloaded twice.
    :meth:`hand_over` gives fetch what the process has not started yet. A download that fails
    there is left for fetch, which reports it. Without a process (a handed-in HTTP client, or
    one that cannot start) nothing is read ahead.

    Once the process is up it also reads metadata over the network for the client (its
    :attr:`~wheelport.index.client.IndexClient.offload`, :meth:`metadata`): the HTTP and the
    archive's directory are work for the other core; the bytes come back to be checked and
    kept here."""

    #: files up to this size are fetched when first pinned even by a target that backtracks
    SPECULATIVE_BYTES = 4 << 20

    def __init__(self, client: IndexClient, workers: int = 8) -> None:
        self.client = client
        self.workers = workers
        self._seen: set[str] = set()
        #: sha256 -> the download lock held while the process downloads that file
        self._held: dict[str, threading.Lock] = {}
        #: sha256 -> (URL, file name) of each file handed to the process
        self._urls: dict[str, tuple[str, str]] = {}
        #: sha256 of each file the process said it wrote (only those get its wheel check)
        self._written: set[str] = set()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        #: lines for the process's stdin, written by a thread of their own (None: the end), so
        #: that a resolver thread never waits on a full pipe
        self._outbox: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._closed = False
        #: no process: it could not start, or it ended (nothing more is handed to it)
        self._gone = False
        #: the process's stderr (see :meth:`_errors`)
        self._stderr: IO[bytes] | None = None
        #: the process said it is up (metadata asked before that is read here)
        self._ready = False
        #: metadata asked of the process: id -> its answer
        self._asked: dict[int, Future[bytes | ReadHere | None]] = {}
        self._last_ask = 0
        #: how long an ask waits for its answer, a bound for a process that hangs (its own
        #: requests time out and retry first)
        self._patience = 4 * (client.timeout + 5) * (client.retries + 1)
        client.offload = self.metadata

    def metadata(self, kind: str, file: DistFile) -> bytes | ReadHere | None:
        """The METADATA of ``file`` read by the process (``kind``: how; see
        :data:`~wheelport.index.sources.REMOTE_READERS`); None when it could not read it;
        :data:`~wheelport.index.sources.HERE` when this process is to read it (the process
        is not up yet, or no longer, or did not answer in time). Raises the process's
        :class:`~wheelport.errors.IndexAccessError` when the index could not be reached or
        refused (its retries spent there: not asked again here)."""
        from wheelport.index.sources import HERE

        with self._lock:
            if self._closed or self._gone or not self._ready:
                return HERE
            self._last_ask += 1
            ask = self._last_ask
            answer: Future[bytes | ReadHere | None] = Future()
            self._asked[ask] = answer
            given = {"filename": file.filename, "url": file.url, "project": file.project,
                     "index_url": file.index_url, "sha256": file.sha256, "size": file.size}  # fmt: skip
            self._outbox.put(json.dumps({"metadata": {"id": ask, "kind": kind, "file": given}}))
        try:
            return answer.result(timeout=self._patience)
        except FutureTimeout:
            with self._lock:
                self._asked.pop(ask, None)
            return HERE

    def want(self, file: DistFile) -> None:
        """Download ``file`` into the cache soon (once; not when it has no sha256)."""
        sha = file.sha256
        if not sha or file.url.startswith("file:"):
            return
        with self._lock:
            if self._closed or sha in self._seen or not self._started():
                return
            self._seen.add(sha)
            lock = inflight(sha)
            if not lock.acquire(blocking=False):
                return  # this process downloads it already
            self._held[sha] = lock
            self._urls[sha] = (file.url, file.filename)
            job = {"url": file.url, "sha256": sha, "size": file.size, "label": file.filename}
            self._outbox.put(json.dumps(job))

    def start(self) -> None:
        """Start the download process now (a resolution begins): its interpreter starts while
        the first pages load, not when the first file is pinned."""
        with self._lock:
            if not self._closed:
                self._started()

    def _started(self) -> bool:
        """Whether the download process runs: started by :meth:`start` or on the first file
        wanted (called with the lock held)."""
        if self._proc is not None or self._gone:
            return not self._gone
        settings = self.client.worker_settings()
        if settings is None or not sys.executable:  # an embedded Python cannot start one
            self._gone = True
            return False
        settings["jobs"] = self.workers
        from wheelport.index.spawn import take

        try:
            proc, self._stderr = take()  # started early by the command line, or now
        except OSError as exc:
            log.debug("no read-ahead downloads: the download process did not start: %s", exc)
            self._gone = True
            return False
        self._proc = proc
        self._outbox.put(json.dumps(settings))  # the first line: its settings
        for target, name in ((self._write, "wheelport-ahead-in"), (self._read, "wheelport-ahead")):
            thread = threading.Thread(target=target, args=(proc,), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return True

    def _write(self, proc: subprocess.Popen[str]) -> None:
        """Hand the process its lines; at the end (or when it is gone) close its stdin."""
        assert proc.stdin is not None
        try:
            while (line := self._outbox.get()) is not None:
                proc.stdin.write(line + "\n")
                proc.stdin.flush()
        except (OSError, ValueError):
            pass  # it ended: its answers stop, and every lock it held is released
        finally:
            with contextlib.suppress(OSError, ValueError):
                proc.stdin.close()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        """Release each file's download lock as the process answers for it; all of them when
        the process ends."""
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                answer = json.loads(line)
                if "log" in answer:
                    _relayed(answer["log"])
                    continue
                if "metadata" in answer:
                    self._answered(answer)
                    continue
                if answer.get("ready") is True:
                    self._ready = True
                    continue
                sha = str(answer["sha256"])
                self._learn(sha, answer)
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
            self._release(sha)
        with self._lock:
            self._gone = True
            left = list(self._held)
            closed = self._closed
            asked = list(self._asked.values())
            self._asked.clear()
        from wheelport.index.sources import HERE

        for answer in asked:
            answer.set_result(HERE)  # read there no more: each is read here
        for sha in left:
            self._release(sha)
        self._outbox.put(None)  # the writer ends too
        code = proc.wait()
        if code and not closed:
            why = self._last_error()
            log.debug("read-ahead downloads stopped: their process ended with exit code %s%s;"
                      " fetch downloads the files it had not", code, why)  # fmt: skip

    def _last_error(self) -> str:
        """The last line the process wrote on stderr, as ``: line`` (nothing when none)."""
        errors = self._stderr
        if errors is None:
            return ""
        with contextlib.suppress(OSError, ValueError):
            errors.seek(0)
            lines = errors.read()[-4096:].decode("utf-8", "replace").strip().splitlines()
            if lines:  # a URL in it keeps no password
                return ": " + " ".join(redact(w) if "://" in w else w for w in lines[-1].split())
        return ""

    def _answered(self, answer: dict[str, Any]) -> None:
        """The process's answer to a metadata ask (a malformed one: read here)."""
        from wheelport.index.sources import HERE

        ask = answer.get("metadata")
        with self._lock:
            waiting = self._asked.pop(ask, None) if isinstance(ask, int) else None
        if waiting is None:
            return
        data = answer.get("data")
        failed = answer.get("failed")
        if isinstance(failed, dict) and isinstance(failed.get("message"), str):
            hint, path = failed.get("hint"), failed.get("path")
            waiting.set_exception(IndexAccessError(
                failed["message"], hint=hint if isinstance(hint, str) else None,
                path=path if isinstance(path, str) else None))  # fmt: skip
            return
        if answer.get("here") is True:
            waiting.set_result(HERE)
            return
        try:
            waiting.set_result(None if data is None else base64.b64decode(data, validate=True))
        except (binascii.Error, TypeError, ValueError):
            waiting.set_result(HERE)

    def _learn(self, sha: str, answer: dict[str, Any]) -> None:
        """What an answer tells this process about the file, before fetch may take it."""
        bad = answer.get("corrupt")
        if isinstance(bad, dict) and sha in self._urls:
            url, label = self._urls[sha]
            hint = bad.get("hint")
            error = FetchError(
                str(bad["message"]), hint=hint if isinstance(hint, str) else None, path=label
            )
            found_corrupt(url, sha, error)  # fetch fails it at once, as if it asked twice
        written = answer.get("written")
        if isinstance(written, list) and len(written) == 5:
            # downloaded and verified by our own process: placed by a move, as if here
            cache = self.client.cache
            dev, ino, size, mtime, ctime = (int(n) for n in written)
            cache.remember(cache.artifact_path(sha), sha, (dev, ino, size, mtime, ctime),
                           downloaded=True)  # fmt: skip
            self._written.add(sha)
        checked = answer.get("wheel")  # a later line, once the process had time to check it
        if isinstance(checked, dict) and sha in self._written and sha in self._urls:
            _learn_wheel_check(sha, self._urls[sha][1], checked)

    def _release(self, sha: str) -> None:
        with self._lock:
            lock = self._held.pop(sha, None)
        if lock is not None:
            lock.release()

    def hand_over(self) -> None:
        """Fetch starts: the process drops what it has not started (fetch downloads those
        itself, at full concurrency) and finishes what it has."""
        with self._lock:
            if self._proc is not None and not self._closed:
                self._outbox.put(json.dumps({"drop": True}))

    def stop(self) -> None:
        """Tell the process to stop, without waiting for it (:meth:`close` waits): a download
        still running there is one no lock needs (a speculative pin the resolver left); it
        stops at its next chunk and leaves nothing. Its interpreter ends while the caller
        finishes the wheelhouse."""
        with self._lock:
            self._closed = True
            proc = self._proc
        if self.client.offload == self.metadata:
            self.client.offload = None
        if proc is not None:
            self._outbox.put(None)  # end of its stdin: it stops

    def close(self) -> None:
        """Stop the process (:meth:`stop`) and wait until it has ended."""
        self.stop()
        with self._lock:
            proc = self._proc
        if proc is None:
            return
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for thread in self._threads:
            thread.join(timeout=5)
        with self._lock:
            left = list(self._held)
        for sha in left:
            self._release(sha)
        if self._stderr is not None:
            self._stderr.close()

    def reporter(self, inner: Reporter | None) -> Reporter:
        """A resolution reporter that tells ``inner`` everything and this prefetcher what the
        resolver pinned and settled."""
        from wheelport.resolve import NullReporter

        return _AheadReporter(inner or NullReporter(), self)


def _relayed(record: Any) -> None:
    """Show a warning the read-ahead process told (``{"name", "level", "message"}``) as this
    process's own: only a ``wheelport`` logger's, at warning level or above, one line."""
    if not isinstance(record, dict):
        return
    name, level, message = record.get("name"), record.get("level"), record.get("message")
    if not (isinstance(name, str) and name.startswith("wheelport.") and isinstance(message, str)):
        return
    if not isinstance(level, int) or level < logging.WARNING:
        return
    line = message.strip().split("\n", 1)[0][:2000]  # (an empty message has no first line)
    if line:
        logging.getLogger(name).log(min(level, logging.ERROR), "%s", line)


def _learn_wheel_check(sha256: str, filename: str, checked: dict[str, Any]) -> None:
    """Keep the verdict the read-ahead process reached on a wheel it downloaded and verified
    (:func:`~wheelport.index.metadata.remember_wheel_check`); a malformed answer is dropped
    (fetch then reads the archive itself)."""
    try:
        why = checked["why"]
        meta = checked["metadata"]
        sboms = {
            str(n): base64.b64decode(b, validate=True) for n, b in dict(checked["sboms"]).items()
        }
        data = None if meta is None else base64.b64decode(meta, validate=True)
    except (KeyError, TypeError, ValueError, binascii.Error):
        return
    if why is not None and not isinstance(why, str):
        return
    from wheelport.index.metadata import remember_wheel_check

    remember_wheel_check(sha256, filename, why, data, sboms)


class _AheadReporter:
    def __init__(self, inner: Reporter, ahead: Prefetcher) -> None:
        self.inner, self.ahead = inner, ahead
        #: per target, the identifiers pinned so far; a target that pins one again backtracks
        self._pinned: dict[str, set[str]] = {}
        self._backtracks: set[str] = set()

    def target_started(self, target: Target) -> None:
        self.ahead.start()
        self.inner.target_started(target)

    def first_choice(self, target: Target, file: DistFile) -> None:
        if target.identifier not in self._backtracks:
            self.ahead.want(file)
        self.inner.first_choice(target, file)

    def pinned(self, target: Target, candidate: Candidate) -> None:
        tid = target.identifier
        pinned = self._pinned.setdefault(tid, set())  # each target's own thread writes its set
        if candidate.key in pinned:
            self._backtracks.add(tid)
        pinned.add(candidate.key)
        f = candidate.file
        small = f.size is not None and f.size <= Prefetcher.SPECULATIVE_BYTES
        if small or tid not in self._backtracks:
            self.ahead.want(f)
        self.inner.pinned(target, candidate)

    def metadata_build(self, target: Target, filename: str) -> None:
        self.inner.metadata_build(target, filename)

    def target_done(self, target: Target, resolution: Resolution) -> None:
        for pin in resolution.pins.values():
            self.ahead.want(pin.file)
        self.inner.target_done(target, resolution)

    def target_failed(self, target: Target, error: WheelportError) -> None:
        self.inner.target_failed(target, error)


def fetch(
    wheelhouse: Wheelhouse,
    locks: Sequence[Pylock],
    client: IndexClient,
    *,
    jobs: int = 8,
    reporter: FetchReporter | None = None,
    manifest: Manifest | None = None,
) -> FetchResult:
    """Download every artifact the locks name into the wheelhouse; record them in the manifest."""
    wanted = unique(a for lock in locks for a in artifacts_of(lock))
    return fetch_artifacts(
        wheelhouse, wanted, client, jobs=jobs, reporter=reporter, manifest=manifest
    )


def fetch_artifacts(
    wheelhouse: Wheelhouse,
    wanted: Sequence[Artifact],
    client: IndexClient,
    *,
    jobs: int = 8,
    reporter: FetchReporter | None = None,
    manifest: Manifest | None = None,
) -> FetchResult:
    """Download artifacts into the wheelhouse (verified), skipping those already present, and
    record them in ``manifest`` — the caller's, which it saves; without one, the wheelhouse's
    manifest is loaded and saved here."""
    reporter = reporter or NullFetchReporter()
    clean_partials(wheelhouse)
    own = manifest is None
    if manifest is None:
        manifest = wheelhouse.load_manifest()
    arts = manifest.artifacts
    result = FetchResult()
    todo: list[Artifact] = []
    for a in wanted:
        dest = wheelhouse.contained(a.path, f"the lock entry of {a.filename}")
        if dest.is_file():
            actual = file_sha256(dest)
            if actual == a.sha256:
                rec = arts.get(a.path)
                if not rec or rec.sha256 != a.sha256:
                    manifest.record(a.path, a.sha256, dest.stat().st_size, Origin.download(a.url))
                result.present.append(a.path)
                continue
            log.warning(
                "%s does not match its lock (its sha256 is %s, expected %s); repairing it",
                a.path,
                actual,
                a.sha256,
            )
        todo.append(a)
    reporter.start(len(todo), sum(a.size or 0 for a in todo))
    errors: list[WheelportError] = []

    def one(a: Artifact) -> tuple[Artifact, Path, bool]:
        dest = wheelhouse.root / a.path
        with inflight(a.sha256):  # a read-ahead download of it ends first: once its answer is
            pass  # in, an entry it just wrote is this run's, moved (not copied) and noted
        cached = client.cache.verified(a.sha256, into=dest) is not None
        if not cached:
            from wheelport.index.client import download_verified

            download_verified(
                client,
                a.url,
                a.sha256,
                a.size,
                client.cache,
                progress=reporter.advance,
                label=a.filename,
            )
            if client.cache.verified(a.sha256, into=dest) is None:
                raise FetchError(
                    f"{a.filename}: the cache entry changed while it was copied to {dest}",
                    hint="another process is damaging the cache; re-run 'wheelport sync'",
                    path=a.path,
                )
        try:  # checked here, in the worker: archives are read while other files download
            check_wheel(wheelhouse, a, dest, client.cache)
        except WheelportError:
            dest.unlink(missing_ok=True)  # a refused wheel stays out
            raise
        return a, dest, cached

    def done(a: Artifact, src: Path, was_cached: bool) -> None:
        remember_hash(src, a.sha256)
        manifest.record(a.path, a.sha256, src.stat().st_size, Origin.download(a.url))
        (result.linked_from_cache if was_cached else result.downloaded).append(a.path)
        reporter.file_done(a, was_cached)

    # an entry this process downloaded (the read-ahead process's too) is moved, not copied: a
    # few system calls and the wheel's check, done here one after another — in the pool, each
    # call that gives up the GIL waits to get it back behind the other threads (1.2 s for the
    # 592 files of the 15-target workload, 0.3 s here)
    cache = client.cache
    moved = [a for a in todo if cache.written_here(cache.artifact_path(a.sha256)) is not None]
    pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="wheelport-fetch")
    try:
        # what the cache lacks first (the read-ahead process may have the rest), the largest
        # first: the link starts at once, and the last to finish is a small one
        def order(a: Artifact) -> tuple[bool, int]:
            return cache.artifact_path(a.sha256).exists(), -(a.size or 0)

        inline = set(map(id, moved))
        rest = [a for a in todo if id(a) not in inline]
        futures = [pool.submit(one, a) for a in sorted(rest, key=order)]
        for a in moved:
            try:
                done(*one(a))
            except WheelportError as exc:
                errors.append(exc)
        for fut in as_completed(futures):
            try:
                done(*fut.result())
            except WheelportError as exc:
                errors.append(exc)
    except BaseException:  # Ctrl-C: start nothing more (what runs ends with the process)
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    if own:
        wheelhouse.save_manifest(manifest)
    if errors:
        first = errors[0]
        if len(errors) > 1:
            first.message += f" (and {len(errors) - 1} more download error(s))"
        raise first
    return result
