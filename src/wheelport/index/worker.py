"""The read-ahead download process: files a sync will likely need, downloaded while it resolves.

Resolution holds the GIL; a download in the same process needs the GIL for every TLS record
(16 KiB), so the two slow each other down and the link idles while targets resolve (measured: a
15-target lock took 9 s alone and 14 s with read-ahead downloads in its own threads). Here the
downloads run in a second Python process, on the other core, into the same content-addressed
cache (each file verified and renamed into place, as every download is).

The protocol is JSON lines. On stdin: first the settings (index URLs with their logins: never
on the command line, where other users could read them), then one job per line:

- ``{"url", "sha256", "size", "label"}``: download that file into the cache;
- ``{"drop": true}``: forget the downloads not started yet;
- ``{"metadata": {"id", "kind", "file"}}``: read a wheel's METADATA over the network for the
  parent, whose core is busy resolving (``kind``: ``pep658`` or ``ranges``, see
  :data:`~wheelport.index.sources.REMOTE_READERS`; ``file``: the wheel's name, URL, project,
  index, size and sha256). These run on threads of their own: never behind a download.

On stdout: first ``{"ready": true}`` once this process is up (metadata is asked of it only
then), then

- for each download, ``{"sha256", "error"}``, ``error`` null when the file is in the cache;
  with ``"written": [stamp]`` when this process wrote the entry (the parent may then move it
  rather than copy it), and ``"corrupt": {"message", "hint"}`` when the index served other bytes
  than it lists twice (the parent does not ask a third and fourth time);
- for each metadata read, ``{"metadata": id, "data"}``: the bytes as base64, or null when there
  are none to read; with ``"failed": {"message", "hint", "path"}`` when the index could not be
  reached or refused, its retries spent (the parent raises that error as if its own read had
  failed: an unreachable index is not waited for twice), or ``"here": true`` when the read
  failed otherwise (the parent then reads them itself). The parent checks and keeps the bytes
  as if it had read them;
- later, when no download is left to run, ``{"sha256", "wheel": {"why", "metadata", "sboms"}}``
  for a wheel it wrote whose archive it then checked
  (:func:`~wheelport.index.metadata.check_wheel_file`): fetch takes that verdict instead of
  reading the archive again on its own busy core;
- ``{"log": {"name", "level", "message"}}``: a warning of this process (a corrupt cache entry
  it evicted), which the parent shows as its own.

End of stdin (the parent is done, or gone) stops the downloads still running at their next
chunk (their partial files are removed) and the checks, and ends the process.
"""

from __future__ import annotations

import base64
import json
import logging
import sys
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from wheelport.cache import Cache
from wheelport.errors import IndexAccessError, WheelportError
from wheelport.index.client import IndexClient, download_verified, known_corrupt
from wheelport.index.http import leave_out_httpx_cli
from wheelport.index.metadata import check_wheel_file
from wheelport.wheelhouse import Stamp


class _Stopped(Exception):
    """The parent no longer needs the download."""


def serve(settings: dict[str, Any], jobs_in: Any, answers: Any) -> None:
    """Download the jobs read from ``jobs_in`` and answer each on ``answers``."""
    cache = Cache(Path(settings["cache"]))
    client = IndexClient(
        settings["index_urls"],
        cache=cache,
        timeout=float(settings.get("timeout", 30.0)),
        retries=int(settings.get("retries", 3)),
        backoff=float(settings.get("backoff", 0.5)),
    )
    stop = threading.Event()
    out = threading.Lock()
    queued: dict[str, Future[None]] = {}
    #: wheels this process wrote, to check when no download is left (sha256, name, stamp), and
    #: the downloads not yet ended (guarded by ``idle``)
    to_check: deque[tuple[str, str, Stamp]] = deque()
    pending = 0
    idle = threading.Condition()

    def tell(message: dict[str, Any]) -> None:
        with out:
            answers.write(json.dumps(message) + "\n")
            answers.flush()

    def answer(sha256: str, error: str | None, **more: Any) -> None:
        tell({"sha256": sha256, "error": error, **more})

    def go_on(_count: int) -> None:
        if stop.is_set():
            raise _Stopped

    def ended() -> None:
        nonlocal pending
        with idle:
            pending -= 1
            idle.notify_all()

    def one(job: dict[str, Any]) -> None:
        try:
            download_one(job)
        finally:
            ended()

    def download_one(job: dict[str, Any]) -> None:
        sha256 = str(job["sha256"])
        try:
            go_on(0)
            download_verified(client, str(job["url"]), sha256, job.get("size"), cache,
                              progress=go_on, label=str(job.get("label", "")))  # fmt: skip
        except _Stopped:
            answer(sha256, "stopped")
        except (WheelportError, OSError) as exc:
            bad = known_corrupt(str(job["url"]), sha256)
            if bad is not None:
                answer(sha256, str(exc), corrupt={"message": bad.message, "hint": bad.hint})
            else:
                answer(sha256, str(exc))
        except Exception as exc:  # any failure is for the parent's fetch to report
            answer(sha256, f"{type(exc).__name__}: {exc}")
        else:
            # written by this process: the parent may move it into place (bytes written once)
            stamp = cache.written_here(cache.artifact_path(sha256))
            answer(sha256, None, **({"written": list(stamp)} if stamp else {}))
            label = str(job.get("label", ""))
            if stamp is not None and label.endswith(".whl"):
                with idle:
                    to_check.append((sha256, label, stamp))
                    idle.notify_all()

    def check_when_idle() -> None:
        """Check the wheels written here while no download runs: checked as each download
        ended, they took this process's GIL from the downloads (the 15-target sync got no
        faster)."""
        while True:
            with idle:
                while not stop.is_set() and (pending or not to_check):
                    idle.wait()
                if stop.is_set():
                    return
                sha256, label, stamp = to_check.popleft()
            path = cache.artifact_path(sha256)
            if cache.written_here(path) != stamp:
                continue  # moved into place (or changed) since: the parent reads it itself
            try:
                checked = _checked_wheel(path, label)
            except Exception:  # e.g. a compression zipfile cannot read: the parent reads it
                continue
            if checked is not None and cache.written_here(path) == stamp:
                tell({"sha256": sha256, "wheel": checked})

    relay = _Relay(tell)
    logging.getLogger("wheelport").addHandler(relay)
    tell({"ready": True})  # up: the parent may hand it metadata to read
    checker = threading.Thread(target=check_when_idle, name="wheelport-check", daemon=True)
    checker.start()
    pool = ThreadPoolExecutor(max_workers=int(settings.get("jobs", 8)))
    readers = ThreadPoolExecutor(max_workers=_READERS, thread_name_prefix="wheelport-metadata")

    def read_metadata(ask: dict[str, Any]) -> None:
        try:
            data = _read_metadata(client, ask)
        except IndexAccessError as exc:  # unreachable or refused, retries spent: said, not redone
            failed = {"message": exc.message, "hint": exc.hint, "path": exc.path}
            tell({"metadata": ask.get("id"), "data": None, "failed": failed})
            return
        except Exception:  # a file it will not take, say: the parent reads it itself
            tell({"metadata": ask.get("id"), "data": None, "here": True})
            return
        encoded = None if data is None else base64.b64encode(data).decode("ascii")
        tell({"metadata": ask.get("id"), "data": encoded})

    try:
        for line in jobs_in:
            job = json.loads(line)
            if isinstance(job.get("metadata"), dict):
                readers.submit(read_metadata, job["metadata"])
                continue
            if job.get("drop"):
                for sha256, fut in list(queued.items()):
                    if fut.cancel():
                        ended()
                        answer(sha256, "dropped")
                queued.clear()
                continue
            with idle:
                pending += 1
            queued[str(job["sha256"])] = pool.submit(one, job)
    finally:
        stop.set()  # the parent is done: what runs stops at its next chunk
        with idle:
            idle.notify_all()
        pool.shutdown(wait=True, cancel_futures=True)
        readers.shutdown(wait=True, cancel_futures=True)
        checker.join()
        client.close()
        logging.getLogger("wheelport").removeHandler(relay)


#: metadata reads at once (small answers: a few threads keep up with the resolver's asks)
_READERS = 8


def _read_metadata(client: IndexClient, ask: dict[str, Any]) -> bytes | None:
    """The METADATA the parent asked for (``ask``: ``{"kind", "file"}``), read by this
    process's client exactly as the parent's would."""
    from wheelport.index.models import make_file
    from wheelport.index.sources import REMOTE_READERS

    given = ask["file"]
    file = make_file(
        filename=str(given["filename"]),
        url=str(given["url"]),
        project=str(given["project"]),
        index_url=str(given["index_url"]),
        sha256=given.get("sha256"),
        size=given.get("size"),
    )
    if file is None:  # the parent took it: say so, and let it read the file itself
        raise ValueError(f"{given['filename']!r} is not a file this process reads")
    return REMOTE_READERS[str(ask["kind"])](client, file)


class _Relay(logging.Handler):
    """This process's warnings, told to the parent (``{"log": {"name", "level", "message"}}``),
    which shows them as its own: a corrupt cache entry found here is said as if found there."""

    def __init__(self, tell: Any) -> None:
        super().__init__(logging.WARNING)
        self._tell = tell

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            self._tell({"log": {"name": record.name, "level": record.levelno, "message": message}})
        except Exception:  # a warning that cannot be told is not worth ending the downloads
            self.handleError(record)


def _checked_wheel(path: Path, filename: str) -> dict[str, Any] | None:
    """A wheel's archive checked here, on this process's core (:func:`check_wheel_file`), for
    the parent's fetch to take instead of reading it again: ``{"why", "metadata", "sboms"}``
    (bytes as base64). None when ``filename`` is no valid wheel name."""
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    try:
        parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return None
    why, data, sboms, _stamp = check_wheel_file(path, filename)
    return {
        "why": why,
        "metadata": None if data is None else base64.b64encode(data).decode("ascii"),
        "sboms": {n: base64.b64encode(b).decode("ascii") for n, b in sboms.items()},
    }


def main() -> None:
    leave_out_httpx_cli()
    first = sys.stdin.readline()
    if not first:  # started early, and no run took it (or the parent is gone): nothing to do
        return
    serve(json.loads(first), sys.stdin, sys.stdout)


if __name__ == "__main__":
    main()
