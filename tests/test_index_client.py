"""Index client against a real local index: PEP 691/503/658/700, retries, auth, cache, several indexes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from packaging.version import Version

from support.dists import make_sdist, make_wheel
from support.server import HTML_TYPE, JSON_TYPE, IndexServer
from wheelport import api
from wheelport.cache import Cache
from wheelport.config import build_config
from wheelport.credentials import redact
from wheelport.errors import IndexAccessError
from wheelport.index.client import IndexClient

UPLOAD = "2024-03-01T12:00:00.000000Z"


def _populate(srv: IndexServer, dists: Path) -> None:
    srv.add(
        make_wheel(dists, "pkg", "1.0", deps=["dep>=1"], requires_python=">=3.8"),
        upload_time=UPLOAD,
    )
    srv.add(make_wheel(dists, "pkg", "1.1", requires_python=">=3.9"), yanked="bad build")
    srv.add(make_sdist(dists, "pkg", "1.0", deps=["dep>=1"]))


@pytest.mark.parametrize("mode", ["json", "html"])
def test_project_page_parsed(tmp_path: Path, dists_dir: Path, mode: str) -> None:
    with IndexServer(html_only=mode == "html", json_only=mode == "json") as srv:
        _populate(srv, dists_dir)
        with IndexClient([srv.url], cache=Cache(tmp_path / "cache")) as client:
            files = {f.filename: f for f in client.project_files("PKG")}
        page = next(h for m, p, h in srv.requests if p == "/simple/pkg/")
        assert JSON_TYPE in page["Accept"] and HTML_TYPE in page["Accept"]
        assert set(files) == {
            "pkg-1.0-py3-none-any.whl",
            "pkg-1.1-py3-none-any.whl",
            "pkg-1.0.tar.gz",
        }
        w10 = files["pkg-1.0-py3-none-any.whl"]
        assert w10.version == Version("1.0")
        assert w10.is_wheel and not w10.is_yanked
        assert w10.requires_python == ">=3.8"
        assert w10.sha256 == srv.file(w10.filename).sha256  # type: ignore[union-attr]
        assert w10.core_metadata == srv.file(w10.filename).metadata_sha256  # type: ignore[union-attr]
        assert w10.url == srv.file_url(w10.filename)
        w11 = files["pkg-1.1-py3-none-any.whl"]
        assert w11.is_yanked and w11.yanked == "bad build"
        assert w11.requires_python == ">=3.9"
        sd = files["pkg-1.0.tar.gz"]
        assert not sd.is_wheel and sd.core_metadata is False
        if mode == "json":  # PEP 700 fields exist only in JSON
            assert w10.upload_time == UPLOAD
            assert w10.size == srv.file(w10.filename).size  # type: ignore[union-attr]


def test_unknown_project_is_empty(tmp_path: Path, index_server: IndexServer) -> None:
    with IndexClient([index_server.url], cache=Cache(tmp_path / "cache")) as client:
        assert client.project_files("nope") == []


def test_pep658_metadata_without_downloading_the_wheel(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path
) -> None:
    _populate(index_server, dists_dir)
    with IndexClient([index_server.url], cache=Cache(tmp_path / "cache")) as client:
        (wheel,) = [
            f for f in client.project_files("pkg") if f.filename == "pkg-1.0-py3-none-any.whl"
        ]
        meta = client.metadata(wheel)
    assert meta.name == "pkg" and meta.version == "1.0"
    assert [str(r) for r in meta.requires_dist] == ["dep>=1"]
    assert meta.requires_python == ">=3.8"
    assert index_server.count("/files/pkg-1.0-py3-none-any.whl.metadata") == 1
    assert index_server.count("/files/pkg-1.0-py3-none-any.whl") == 0


def test_metadata_from_the_wheel_when_index_has_no_pep658(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path
) -> None:
    index_server.add(make_wheel(dists_dir, "pkg", "1.0", deps=["dep<3"]), metadata=False)
    with IndexClient([index_server.url], cache=Cache(tmp_path / "cache")) as client:
        (wheel,) = client.project_files("pkg")
        assert wheel.core_metadata is False
        meta = client.metadata(wheel)
    assert [str(r) for r in meta.requires_dist] == ["dep<3"]
    assert index_server.count("/files/pkg-1.0-py3-none-any.whl.metadata") == 0
    assert index_server.count("/files/pkg-1.0-py3-none-any.whl") == 1


def test_retries_on_500(tmp_path: Path, index_server: IndexServer, dists_dir: Path) -> None:
    _populate(index_server, dists_dir)
    index_server.fail_next("/simple/pkg/", 2, status=500)
    index_server.fail_next("/files/pkg-1.0-py3-none-any.whl.metadata", 1, status=503)
    with IndexClient([index_server.url], cache=Cache(tmp_path / "cache"), backoff=0.01) as client:
        files = client.project_files("pkg")
        wheel = next(f for f in files if f.filename == "pkg-1.0-py3-none-any.whl")
        assert client.metadata(wheel).version == "1.0"
    assert len(files) == 3
    assert index_server.count("/simple/pkg/") == 3
    assert index_server.count("/files/pkg-1.0-py3-none-any.whl.metadata") == 2


def test_persistent_500_is_index_error(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path
) -> None:
    _populate(index_server, dists_dir)
    index_server.fail_next("/simple/pkg/", 100, status=500)
    client = IndexClient(
        [index_server.url], cache=Cache(tmp_path / "cache"), backoff=0.01, retries=2
    )
    with client, pytest.raises(IndexAccessError) as info:
        client.project_files("pkg")
    assert "\n" not in str(info.value)
    assert index_server.count("/simple/pkg/") == 3


def test_first_index_with_the_project_wins(tmp_path: Path, dists_dir: Path) -> None:
    with IndexServer() as first, IndexServer() as second:
        first.add(make_wheel(dists_dir / "a", "shared", "1.0"))
        second.add(make_wheel(dists_dir / "b", "shared", "9.0"))
        second.add(make_wheel(dists_dir / "b", "onlysecond", "2.0"))
        with IndexClient([first.url, second.url], cache=Cache(tmp_path / "cache")) as client:
            shared = client.project_files("shared")
            only = client.project_files("onlysecond")
        assert [str(f.version) for f in shared] == ["1.0"]
        assert shared[0].index_url.startswith(first.url.rstrip("/"))
        assert [str(f.version) for f in only] == ["2.0"]
        assert only[0].index_url.startswith(second.url.rstrip("/"))
        assert second.count("/simple/shared/") == 0  # never asked once the first index answered


def test_redact() -> None:
    assert redact("https://u:s3cret@host:8080/simple/") == "https://u:***@host:8080/simple/"
    assert redact("https://host/simple/") == "https://host/simple/"


def test_redact_token_only_url() -> None:
    assert "tok3n" not in redact("https://tok3n@host/simple/")


PASSWORD = "pw-Zx9-very-secret"


def _grep(root: Path, needle: bytes) -> list[Path]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and needle in path.read_bytes():
            hits.append(path)
    return hits


def test_credentials_from_url_work_and_never_leak(
    tmp_path: Path, dists_dir: Path, clean_env: dict[str, str]
) -> None:
    cache = tmp_path / "cache"
    out = tmp_path / "wh"
    with IndexServer(auth=("alice", PASSWORD)) as srv:
        srv.add(make_wheel(dists_dir, "pkg", "1.0", deps=["dep"]), upload_time=UPLOAD)
        srv.add(make_wheel(dists_dir, "dep", "1.0"), metadata=False)
        env = {**clean_env, "WHEELPORT_CACHE_DIR": str(cache), "HOME": str(tmp_path)}  # no ~/.netrc
        cmd = [sys.executable, "-m", "wheelport", "lock", "pkg", "-t", "cp312-win_amd64",
               "--index-url", srv.url_with_auth(), "-o", str(out), "--tool", "none"]  # fmt: skip
        ok = subprocess.run(
            [*cmd, "--json"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
        )
        assert ok.returncode == 0, ok.stderr
        assert PASSWORD not in ok.stdout + ok.stderr
        data = json.loads(ok.stdout)
        assert data["targets"]["cp312-win_amd64"]["pkg"]["version"] == "1.0"
        # an error that names the index must not show the password either
        bad = subprocess.run([*cmd[:4], "nosuchproject", *cmd[5:]], capture_output=True, text=True, env=env,
                             cwd=tmp_path, timeout=120)  # fmt: skip
        assert bad.returncode == 1
        assert "nosuchproject" in bad.stderr
        assert PASSWORD not in bad.stdout + bad.stderr
        # verbose (traceback) mode too
        verbose = subprocess.run([*cmd[:4], "nosuchproject", *cmd[5:], "-v"], capture_output=True, text=True,
                                 env=env, cwd=tmp_path, timeout=120)  # fmt: skip
        assert PASSWORD not in verbose.stdout + verbose.stderr
        # the requests were authenticated
        assert all("Authorization" in h for _, _, h in srv.requests)
    assert (out / "pylock.cp312-win_amd64.toml").exists()
    assert _grep(out, PASSWORD.encode()) == []
    assert _grep(cache, PASSWORD.encode()) == []
    assert _grep(out, b"alice:") == []


def test_without_credentials_is_a_clear_error(tmp_path: Path, dists_dir: Path) -> None:
    with IndexServer(auth=("alice", PASSWORD)) as srv:
        srv.add(make_wheel(dists_dir, "pkg", "1.0"))
        client = IndexClient([srv.url], cache=Cache(tmp_path / "cache"))
        with client, pytest.raises(IndexAccessError) as info:
            client.project_files("pkg")
    assert "401" in str(info.value)
    assert "credentials" in str(info.value)


def test_warm_cache_makes_fewer_requests(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WHEELPORT_CACHE_DIR", str(tmp_path / "cache"))
    for i in range(4):
        index_server.add(
            make_wheel(dists_dir, f"pkg{i}", "1.0", deps=[f"pkg{i + 1}"] if i < 3 else [])
        )
    config = build_config(directory=tmp_path, requirements=["pkg0"], index_urls=[index_server.url],
                          targets=["cp312-win_amd64"], output=tmp_path / "wh", tools=["none"])  # fmt: skip
    first = api.lock(config)
    cold = len(index_server.requests)
    second = api.lock(config)
    warm = len(index_server.requests) - cold
    assert cold >= 8  # 4 pages + 4 metadata files
    assert warm < cold
    # metadata is immutable (by sha256): never fetched twice
    metadata_gets = [p for _, p, _ in index_server.requests if p.endswith(".metadata")]
    assert len(metadata_gets) == len(set(metadata_gets)) == 4
    assert {n: str(p.version) for n, p in first.resolutions[0].pins.items()} == {
        n: str(p.version) for n, p in second.resolutions[0].pins.items()
    }


def test_unreachable_index(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # the socket is closed now: nothing listens on the port
    url = f"http://127.0.0.1:{port}/simple/"
    client = IndexClient([url], cache=Cache(tmp_path / "cache"), backoff=0.01)
    with client, pytest.raises(IndexAccessError) as info:
        client.project_files("pkg")
    msg = str(info.value)
    assert f"127.0.0.1:{port}" in msg and "\n" not in msg
    assert not os.path.exists(tmp_path / "wh")


def test_concurrent_downloads_keep_files_apart(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path
) -> None:
    """Regression: download_verified closed its temp fd twice; under concurrency that closed (or
    wrote into) another thread's temp file — 'Bad file descriptor', or a wheel cached under a sha256
    that is not its own. Many wheels fetched at once force many parallel downloads."""
    import hashlib
    import random

    from wheelport.fetch import fetch
    from wheelport.lock import read_lock
    from wheelport.wheelhouse import Wheelhouse

    n = 30
    rng = random.Random(7)
    for i in range(n):
        blob = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=200_000))
        index_server.add(
            make_wheel(dists_dir, f"pkg{i}", "1.0", files={f"pkg{i}/blob.txt": blob}),
            metadata=False,
        )
    for run in range(3):
        cache = tmp_path / f"cache{run}"
        config = build_config(directory=tmp_path, requirements=[f"pkg{i}" for i in range(n)],
                              index_urls=[index_server.url], targets=["cp312-win_amd64"],
                              output=tmp_path / f"wh{run}", tools=["none"])  # fmt: skip
        with IndexClient(config.index_urls, cache=Cache(cache)) as client:
            result = api.lock(config, client=client)
            locks = [read_lock(p) for p in result.paths]
            fetch(Wheelhouse(tmp_path / f"wh{run}"), locks, client, jobs=16)
        assert len(result.resolutions[0].pins) == n
        # each download went into the wheelhouse (written once) and the cache noted where: every
        # note names a file with exactly that sha256, and what the cache still holds is named
        # by its own sha256
        lines = (cache / "placed-v2" / "notes").read_text(encoding="utf-8").splitlines()
        notes = dict(line.split(" ", 1) for line in lines)
        assert len(lines) == len(notes) == n
        for sha, where in notes.items():
            placed = Path(json.loads(where))
            assert Cache(cache).placed_note(sha) == placed
            assert placed.parent == tmp_path / f"wh{run}" / "wheels"
            assert hashlib.sha256(placed.read_bytes()).hexdigest() == sha
        for path in (cache / "artifacts-v2").iterdir():
            if path.is_file():
                assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name


class _PageServer:
    """One page on 127.0.0.1 with an ETag and a chosen Cache-Control, answering a matching
    If-None-Match with 304; records each request's If-None-Match."""

    def __init__(self, body: bytes, cache_control: str) -> None:
        import http.server
        import threading

        self.body, self.cache_control = body, cache_control
        self.seen: list[str | None] = []
        page = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                page.seen.append(self.headers.get("If-None-Match"))
                etag = '"v1"'
                if self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.send_header("Cache-Control", page.cache_control)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/vnd.pypi.simple.v1+json")
                self.send_header("Content-Length", str(len(page.body)))
                self.send_header("ETag", etag)
                self.send_header("Cache-Control", page.cache_control)
                self.end_headers()
                self.wfile.write(page.body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/simple/pkg/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("cache_control", ["max-age=600", "max-age=0"])
def test_page_cache_keeps_the_body_byte_for_byte_and_revalidates(
    tmp_path: Path, cache_control: str
) -> None:
    """A cached page comes back exactly as served (newlines, quotes, backslashes, UTF-8 and a
    byte that is not UTF-8 included); a fresh one costs no request, a stale one is
    revalidated with its ETag (304: the kept body); an entry in an older format is fetched
    again, never misread."""
    from wheelport.credentials import Logins
    from wheelport.index.http import Http

    body = b'{"name": "pkg",\n "files": [], "meta": {"x": "a\\"b\\\\c \xc3\xa9"}}\n\xff tail\n'
    srv = _PageServer(body, cache_control)
    try:
        cache = Cache(tmp_path / "cache")

        def get() -> tuple[bytes, str, str]:
            web = Http(Logins(), cache, stats)
            try:
                return web.get_page(srv.url)
            finally:
                web.close()  # the page's cache entry is on disk (written on a thread of its own)

        stats: dict[str, int] = {"requests": 0, "cached": 0, "revalidated": 0}
        assert get() == (body, "application/vnd.pypi.simple.v1+json", srv.url)
        assert get()[0] == body
        if cache_control == "max-age=600":
            assert srv.seen == [None] and stats["cached"] == 1
        else:
            assert srv.seen == [None, '"v1"'] and stats["revalidated"] == 1
        # an entry in the former format (the body inside one JSON object) is not trusted
        entry = cache.http_path(f"page:{srv.url}")
        entry.write_text(json.dumps({"url": srv.url, "content_type": "text/html",
                                     "fetched": 4e9, "max_age": 10**9, "body": "forged"}))  # fmt: skip
        assert get()[0] == body
        assert srv.seen[-1] is None  # fetched whole again: no validator came from that file
    finally:
        srv.close()


def test_a_read_ahead_download_no_run_needs_stops_when_the_run_ends(
    tmp_path: Path, dists_dir: Path
) -> None:
    """A speculative download still running when fetch is over (a pin the resolver left) is
    stopped, not awaited: the process would otherwise wait for it before exiting. Nothing of it
    is kept: no cache entry, no partial file."""
    import secrets
    import time

    from support.server import Fault
    from wheelport.fetch import Prefetcher
    from wheelport.index.client import inflight

    big = make_wheel(dists_dir, "big", "1.0", files={"big/blob.txt": secrets.token_hex(1 << 20)})
    with IndexServer() as srv:
        srv.add(big)
        # the body in 16 KiB pieces 0.1 s apart: about 8 s for the whole file
        srv.inject(Fault(f"/files/{big.name}", "slow", 1, delay=0.1, trickle=True, exact=True))
        cache = Cache(tmp_path / "cache")
        with IndexClient([srv.url], cache=cache) as client:
            (file,) = client.project_files("big")
            assert file.size is not None and file.size > 1 << 20
            ahead = Prefetcher(client)
            ahead.want(file)
            deadline = time.monotonic() + 10
            while not any(p == f"/files/{big.name}" for _, p, _ in srv.requests):
                assert time.monotonic() < deadline, "the read-ahead download never started"
                time.sleep(0.02)
            closed = time.monotonic()
            ahead.close()  # ends the download process: it stops at its next read
            assert time.monotonic() - closed < 4  # stopped at its next read, not run to the end
            assert cache.verified(file.sha256 or "") is None
            assert not list((tmp_path / "cache").rglob("*.part"))
            # this process no longer waits for it: a fetch of the file would start at once
            assert inflight(file.sha256 or "").acquire(blocking=False)


def _children(pattern: str) -> list[tuple[int, bytes]]:
    """(pid, command line) of this process's live children whose command line has ``pattern``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z" and pattern.encode() in cmdline:
            found.append((int(stat.parent.name), cmdline))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_read_ahead_downloads_run_in_a_process_of_their_own_with_the_index_login(
    tmp_path: Path, dists_dir: Path
) -> None:
    """Read-ahead downloads run in a second process (in this one they would take the GIL from
    the resolver for every TLS record): it gets the index login on its stdin, never on its
    command line; the file it downloads is in the cache, and placed by a move (the bytes are
    written once); the process ends with the run."""
    import time

    from wheelport.fetch import Prefetcher
    from wheelport.index.client import inflight

    wheel = make_wheel(dists_dir, "pkg", "1.0", files={"pkg/data.txt": "x" * 200_000})
    with IndexServer(auth=("reader", "s3cret-token")) as srv:
        srv.add(wheel)
        cache = Cache(tmp_path / "cache")
        with IndexClient([srv.url_with_auth()], cache=cache) as client:
            (file,) = client.project_files("pkg")
            ahead = Prefetcher(client)
            ahead.want(file)
            (child,) = _children("wheelport.index.worker")
            assert b"s3cret-token" not in child[1] and b"reader" not in child[1]
            with inflight(file.sha256 or ""):  # held while the process downloads it
                entry = cache.verified(file.sha256 or "")
            assert entry is not None
            gets = [h for m, p, h in srv.requests if p == f"/files/{wheel.name}"]
            assert len(gets) == 1 and gets[0].get("Authorization", "").startswith("Basic ")
            # it downloaded the file: placed here by a move, not a copy
            dest = tmp_path / "wh" / wheel.name
            assert cache.verified(file.sha256 or "", into=dest) == dest
            assert not cache.artifact_path(file.sha256 or "").exists()
            assert dest.stat().st_nlink == 1
            ahead.close()
            deadline = time.monotonic() + 5
            while _children("wheelport.index.worker"):
                assert time.monotonic() < deadline, "the download process outlived the run"
                time.sleep(0.05)


def test_a_download_process_that_fails_says_why_with_v_and_fetch_downloads_its_files(
    tmp_path: Path,
    dists_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The read-ahead process is a speed-up: when it dies (here an interpreter that cannot run
    it) the locks it held are released, the download happens here, and ``-v`` shows its exit
    code and last line of stderr, with no password from a URL in it."""
    import logging

    from wheelport.fetch import Prefetcher
    from wheelport.index.client import inflight

    broken = tmp_path / "python"
    broken.write_text(
        "#!/bin/sh\necho 'Fatal: cannot read https://u:pw@idx.example/x' >&2\nexit 3\n"
    )
    broken.chmod(0o755)
    wheel = make_wheel(dists_dir, "pkg", "1.0")
    with IndexServer() as srv:
        srv.add(wheel)
        cache = Cache(tmp_path / "cache")
        with IndexClient([srv.url], cache=cache) as client:
            (file,) = client.project_files("pkg")
            monkeypatch.setattr(sys, "executable", str(broken))
            ahead = Prefetcher(client)
            with caplog.at_level(logging.DEBUG, logger="wheelport"):
                ahead.want(file)
                with inflight(file.sha256 or ""):  # released when the process ended
                    pass
                ahead._threads[1].join(timeout=10)  # its reader logged the end
            ahead.close()
            assert cache.verified(file.sha256 or "") is None  # it downloaded nothing
            assert client.download(file).read_bytes() == wheel.read_bytes()
    [line] = [r.getMessage() for r in caplog.records if "read-ahead" in r.getMessage()]
    assert "exit code 3" in line and "Fatal: cannot read" in line, line
    assert "pw" not in line and "u:***@idx.example" in line, line


def test_the_read_ahead_process_checks_each_wheel_it_downloads_and_fetch_takes_its_verdict(
    tmp_path: Path, dists_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The archive checks a wheel passes before it enters a wheelhouse (names, members, one
    ``.dist-info``, METADATA) run in the read-ahead process, on its own core, once it has no
    download left to run:
    fetch here takes that verdict — an honest wheel passes and an impostor is refused with the
    same line — without reading either archive again. A file the process did not check (another
    sha256) is read here."""
    import time

    from wheelport import fetch as fetch_mod
    from wheelport.errors import FetchError
    from wheelport.fetch import Artifact, Prefetcher, check_wheel
    from wheelport.index import metadata
    from wheelport.index.client import inflight
    from wheelport.wheelhouse import Wheelhouse

    honest = make_wheel(dists_dir, "pkg", "1.0")
    other = make_wheel(tmp_path / "other", "othername", "1.0")
    impostor = dists_dir / "fake-1.0-py3-none-any.whl"  # its .dist-info names othername
    impostor.write_bytes(other.read_bytes())
    with IndexServer() as srv:
        srv.add(honest)
        srv.add(impostor)
        cache = Cache(tmp_path / "cache")
        wh = Wheelhouse(tmp_path / "wh")
        with IndexClient([srv.url], cache=cache) as client:
            files = [*client.project_files("pkg"), *client.project_files("fake")]
            ahead = Prefetcher(client)
            for f in files:
                ahead.want(f)
            for f in files:
                with inflight(f.sha256 or ""):  # released once the process answered
                    pass
            # no download left: it checks the wheels it wrote, and says so on a later line
            deadline = time.monotonic() + 10
            while not all((f.sha256, f.filename) in metadata._checked for f in files):
                assert time.monotonic() < deadline, "the read-ahead process checked no wheel"
                time.sleep(0.02)
            ahead.close()

            def not_here(*args: object) -> None:
                raise AssertionError("the archive was read again in this process")

            monkeypatch.setattr(metadata, "check_wheel_file", not_here)
            placed = {}
            for f in files:
                dest = wh.root / "wheels" / f.filename
                assert cache.verified(f.sha256 or "", into=dest) == dest
                placed[f.project] = Artifact(f"wheels/{f.filename}", f.url, f.sha256 or "",
                                             f.size, project=f.project)  # fmt: skip
            check_wheel(wh, placed["pkg"], wh.root / placed["pkg"].path, cache)
            with pytest.raises(FetchError) as refused:
                check_wheel(wh, placed["fake"], wh.root / placed["fake"].path, cache)
            assert impostor.name in refused.value.message
            assert "othername-1.0.dist-info" in refused.value.message
            # a verdict is the bytes' own: the same file under another sha256 is read here
            again = Artifact(placed["pkg"].path, placed["pkg"].url, "0" * 64, None, "pkg")
            with pytest.raises(AssertionError, match="read again"):
                fetch_mod.check_wheel(wh, again, wh.root / again.path, cache)


def _wait_until(done: Callable[[], bool], what: str, seconds: float = 15) -> None:
    import time

    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_the_read_ahead_process_reads_metadata_and_this_one_checks_and_keeps_it(
    tmp_path: Path, dists_dir: Path
) -> None:
    """Once the read-ahead process is up, it reads metadata over the network for the resolving
    process (a PEP 658 file; a wheel without one by range requests): none of those requests is
    made here, and the bytes are checked and kept here as before — an impostor ``.metadata``
    naming another project is refused with the usual line. When the process is gone, the
    reads are made here again."""
    from wheelport.fetch import Prefetcher
    from wheelport.index.sources import cached_metadata

    win = make_wheel(dists_dir, "pep", "1.0", tag="cp312-cp312-win_amd64", deps=["dep>=1"])
    mac = make_wheel(dists_dir, "rng", "2.0", tag="cp311-cp311-macosx_11_0_arm64",
                     requires_python=">=3.11")  # fmt: skip
    late = make_wheel(dists_dir, "rng", "3.0", tag="cp311-cp311-macosx_11_0_arm64")
    imp = make_wheel(dists_dir, "imp", "1.0", tag="cp310-cp310-musllinux_1_2_aarch64")
    with IndexServer() as srv:
        srv.add(win)
        srv.add(mac, metadata=False)
        srv.add(late, metadata=False)
        srv.add(imp)
        srv.serve_metadata(imp.name, b"Metadata-Version: 2.1\nName: other\nVersion: 1.0\n\n")
        with IndexClient([srv.url], cache=Cache(tmp_path / "cache")) as client:
            files = {f.filename: f for p in ("pep", "rng", "imp") for f in client.project_files(p)}
            ahead = Prefetcher(client)
            ahead.start()
            _wait_until(lambda: ahead._ready, "the read-ahead process never said it is up")
            requests = client.stats["requests"]

            pep = client.metadata(files[win.name])
            assert (pep.name, pep.version, [str(r) for r in pep.requires_dist]) == (
                "pep", "1.0", ["dep>=1"])  # fmt: skip
            rng = client.metadata(files[mac.name])
            assert (rng.name, rng.version, rng.requires_python) == ("rng", "2.0", ">=3.11")
            with pytest.raises(IndexAccessError, match="says Name: other"):
                client.metadata(files[imp.name])

            assert srv.count(f"/files/{win.name}.metadata") == 1
            assert any("Range" in h for _, p, h in srv.requests if p == f"/files/{mac.name}")
            assert client.stats["requests"] == requests  # not one of them made here
            assert client.stats.get("range_requests", 0) == 0
            assert client.stats["metadata_pep658"] == 2 and client.stats["metadata_ranges"] == 1
            for name in (win.name, mac.name):  # kept here, for the next run
                assert cached_metadata(client.cache, files[name].sha256) is not None

            assert ahead._proc is not None
            ahead._proc.kill()  # gone: what it was asked and what comes next is read here
            _wait_until(lambda: ahead._gone, "the end of the read-ahead process went unnoticed")
            assert client.metadata(files[late.name]).version == "3.0"
            assert client.stats.get("range_requests", 0) >= 1
            ahead.close()
            assert client.offload is None


def test_metadata_over_the_size_limit_is_not_read(
    tmp_path: Path,
    dists_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A hostile index's PEP 658 file, or a wheel's METADATA member read by range requests,
    larger than the limit is not read into memory: the PEP 658 file is ignored with a warning
    and the member refused, and the wheel itself answers (here, for a Windows wheel)."""
    from wheelport.index import sources

    big = make_wheel(dists_dir, "big", "1.0", tag="cp312-cp312-win_amd64", summary="x" * 4000)
    monkeypatch.setattr(sources, "MAX_METADATA_BYTES", 2000)
    with IndexServer() as srv:
        srv.add(big)
        with IndexClient([srv.url], cache=Cache(tmp_path / "cache")) as client:
            (file,) = client.project_files("big")
            meta = client.metadata(file)
            assert meta.name == "big"
            assert client.stats.get("metadata_pep658", 0) == 0
            assert client.stats.get("metadata_ranges", 0) == 0
            assert client.stats["metadata_wheel"] == 1  # the whole wheel, downloaded and checked
    assert "PEP 658 metadata is larger than 2000 bytes; ignored" in caplog.text


def test_the_read_ahead_process_answers_each_metadata_ask(tmp_path: Path, dists_dir: Path) -> None:
    """The protocol as the process speaks it: it says it is up, then answers each metadata
    ask by its id — the bytes read by range requests for a macOS wheel; none (null) when the
    index has no PEP 658 file; and "here" for a file it will not take (a name that is a path),
    which the parent then reads itself."""
    import base64
    import io

    from wheelport.index import worker

    mac = make_wheel(dists_dir, "pkg", "1.0", tag="cp311-cp311-macosx_11_0_arm64")
    with IndexServer() as srv:
        srv.add(mac, metadata=False)
        info = srv.file(mac.name)
        assert info is not None
        given = {"filename": mac.name, "url": srv.file_url(mac.name), "project": "pkg",
                 "index_url": srv.url, "sha256": info.sha256, "size": info.size}  # fmt: skip
        asks = [
            {"metadata": {"id": 1, "kind": "ranges", "file": given}},
            {"metadata": {"id": 2, "kind": "pep658", "file": given}},
            {"metadata": {"id": 3, "kind": "ranges", "file": {**given, "filename": "../x.whl"}}},
        ]
        out = io.StringIO()
        settings = {"index_urls": [srv.url], "cache": str(tmp_path / "cache")}
        worker.serve(settings, io.StringIO("".join(json.dumps(a) + "\n" for a in asks)), out)
        assert any("Range" in h for _, p, h in srv.requests if p == f"/files/{mac.name}")
    answers = [json.loads(line) for line in out.getvalue().splitlines()]
    assert answers[0] == {"ready": True}
    by_id = {a["metadata"]: a for a in answers if "metadata" in a}
    assert sorted(by_id) == [1, 2, 3]
    data = base64.b64decode(by_id[1]["data"])
    assert b"Name: pkg" in data and b"Version: 1.0" in data
    assert by_id[2] == {"metadata": 2, "data": None}
    assert by_id[3] == {"metadata": 3, "data": None, "here": True}


def test_the_read_ahead_process_as_a_program_reads_metadata_without_httpx_cli(
    tmp_path: Path, dists_dir: Path
) -> None:
    """The process as the parent starts it (``python -m wheelport.index.worker``, settings
    on its first line) reads a Windows wheel's PEP 658 file over ``http.client`` without
    importing httpx at all (~35 ms of the other core). An index that answers 401 (its login
    not given) is httpx's to ask: then httpx is imported, without its command-line client
    (rich, pygments, click: ~40 ms more)."""
    import base64

    win = make_wheel(dists_dir, "pkg", "1.0", tag="cp312-cp312-win_amd64")

    def read_in_process(srv: IndexServer) -> tuple[dict[str, Any], set[str]]:
        srv.add(win)
        info = srv.file(win.name)
        assert info is not None
        given = {"filename": win.name, "url": srv.file_url(win.name), "project": "pkg",
                 "index_url": srv.url, "sha256": info.sha256, "size": info.size}  # fmt: skip
        lines = [{"index_urls": [srv.url], "cache": str(tmp_path / "cache"), "retries": 0},
                 {"metadata": {"id": 7, "kind": "pep658", "file": given}}]  # fmt: skip
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "wheelport.index.worker"],
            input="".join(json.dumps(line) + "\n" for line in lines),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert any(p == f"/files/{win.name}.metadata" for _, p, _ in srv.requests)
        assert proc.returncode == 0, proc.stderr
        answers = [json.loads(line) for line in proc.stdout.splitlines()]
        assert answers[0] == {"ready": True}
        (read,) = [a for a in answers if a.get("metadata") == 7]
        loaded = {
            line.rsplit("|", 1)[1].strip()
            for line in proc.stderr.splitlines()
            if line.startswith("import time:") and "|" in line
        }
        return read, loaded

    with IndexServer() as srv:
        read, loaded = read_in_process(srv)
    assert b"Name: pkg" in base64.b64decode(read["data"])
    assert "wheelport.index.sources" in loaded
    assert not {m for m in loaded if m.split(".")[0] in ("httpx", "rich", "pygments", "click")}

    with IndexServer(auth=("user", "secret")) as srv:  # no login given: 401, asked with httpx
        read, loaded = read_in_process(srv)
    assert read.get("data") is None
    assert "httpx" in loaded
    assert not {m for m in loaded if m.split(".")[0] in ("rich", "pygments", "click")}


def test_the_wheelport_command_starts_a_syncs_download_process_before_its_command_line() -> None:
    """``wheelport sync`` (the console script, ``python -m wheelport``) starts the download
    process before ``wheelport.cli`` is imported, so both interpreters import at once; another
    command starts none. The installed script is that entry point."""
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "wheelport"]
    assert script.value == "wheelport.__main__:run"
    code = (
        "import sys\n"
        "import wheelport.index.spawn as spawn\n"
        "def spawned():\n"
        "    print('spawned; cli imported:', 'wheelport.cli' in sys.modules, flush=True)\n"
        "    raise OSError('no process in this test')\n"
        "spawn.spawn = spawned\n"
        "sys.argv = ['wheelport', *sys.argv[1:]]\n"
        "from wheelport.__main__ import run\n"
        "run()\n"
    )
    for command, told in (("sync", ["spawned; cli imported: False"]), ("lock", [])):
        proc = subprocess.run([sys.executable, "-c", code, command, "--help"],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        spawned = [x for x in proc.stdout.splitlines() if x.startswith("spawned")]
        assert spawned[:1] == told  # first before the command line (which tries again here)
        assert f"Usage: wheelport {command}" in proc.stdout


def test_an_index_the_read_ahead_process_cannot_reach_is_not_asked_again_here(
    tmp_path: Path, dists_dir: Path
) -> None:
    """A metadata read the process gives up on (a Windows wheel's PEP 658 file whose every
    connection is reset, its retries spent) ends with the error it met, raised here as if
    read here; the file is not asked for again by this process (the wait of an unreachable
    index is paid once)."""
    from support.server import Fault
    from wheelport.fetch import Prefetcher

    win = make_wheel(dists_dir, "pep", "1.0", tag="cp312-cp312-win_amd64")
    with IndexServer() as srv:
        srv.add(win)
        with IndexClient([srv.url], cache=Cache(tmp_path / "cache"), retries=1,
                         backoff=0) as client:  # fmt: skip
            (file,) = client.project_files("pep")
            srv.inject(Fault(f"/files/{win.name}.metadata", "reset", count=None, after=0))
            ahead = Prefetcher(client)
            ahead.start()
            _wait_until(lambda: ahead._ready, "the read-ahead process never said it is up")
            requests = client.stats["requests"]
            with pytest.raises(
                IndexAccessError, match=r"cannot read .*\.metadata: connection reset"
            ) as err:
                client.metadata(file)
            assert err.value.hint == "check --index-url and the network"
            assert client.stats["requests"] == requests  # none of them made here
            assert srv.count(f"/files/{win.name}.metadata") == 2  # 1 + 1 retry, there
            ahead.close()


def test_a_pep658_file_cut_short_is_asked_for_again(tmp_path: Path, dists_dir: Path) -> None:
    """A PEP 658 file whose body is cut short by a reset is asked for again, as a page is
    (a macOS arm64 wheel's, read by this process: no read-ahead process runs)."""
    from support.server import Fault

    mac = make_wheel(dists_dir, "pep", "1.0", tag="cp311-cp311-macosx_11_0_arm64", deps=["d"])
    with IndexServer() as srv:
        srv.add(mac)
        with IndexClient([srv.url], cache=Cache(tmp_path / "cache"), backoff=0) as client:
            (file,) = client.project_files("pep")
            srv.inject(Fault(f"/files/{mac.name}.metadata", "reset", count=1, after=10))
            meta = client.metadata(file)
            assert [str(r) for r in meta.requires_dist] == ["d"]
            assert srv.count(f"/files/{mac.name}.metadata") == 2
            assert client.stats["metadata_pep658"] == 1


def test_a_download_process_started_early_is_taken_by_the_run_or_ends_on_its_own(
    tmp_path: Path, dists_dir: Path
) -> None:
    """The command line starts a sync's download process before anything else
    (``spawn.start_early``): the run's prefetcher takes that very process and hands it its
    settings, and it reads metadata (a Windows wheel's PEP 658 file). One that no run takes
    ends, without a word, when its stdin ends."""
    from wheelport.fetch import Prefetcher
    from wheelport.index import spawn

    spawn.start_early()
    assert spawn._early is not None
    early = spawn._early[0]
    win = make_wheel(dists_dir, "pep", "1.0", tag="cp312-cp312-win_amd64", deps=["d>=2"])
    with IndexServer() as srv:
        srv.add(win)
        with IndexClient([srv.url], cache=Cache(tmp_path / "cache")) as client:
            (file,) = client.project_files("pep")
            ahead = Prefetcher(client)
            ahead.start()
            assert ahead._proc is early and spawn._early is None
            _wait_until(lambda: ahead._ready, "the early process never said it is up")
            requests = client.stats["requests"]
            assert [str(r) for r in client.metadata(file).requires_dist] == ["d>=2"]
            assert client.stats["requests"] == requests  # read there
            ahead.close()
    assert early.returncode == 0

    spawn.start_early()
    assert spawn._early is not None
    orphan, errors = spawn._early
    spawn._early = None
    assert orphan.stdin is not None
    orphan.stdin.close()  # as when the command ends without a run taking it
    assert orphan.wait(timeout=30) == 0
    assert errors is not None
    errors.seek(0)
    assert errors.read() == b""
    errors.close()
