"""Downloads and index pages read with http.client (wheelport.index.stream): kept-alive
connections reused, a server that dropped one met with a new one, logins sent, a page's 200 and
304 read there, and everything else — a redirect, an encoded body, a proxied host — handed to
httpx, byte for byte the same; a failing server asked as often either way."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from wheelport.cache import Cache
from wheelport.credentials import Logins
from wheelport.index.http import JSON_V1, Http
from wheelport.index.stream import Body

PAYLOAD = bytes(range(256)) * 5000  # 1.28 MB: more than one read of the body
#: a PEP 691 page of 3,000 Windows wheels (about 600 kB: more than one read of the body)
#: a macOS arm64 wheel whose METADATA lies before 200 kB of other bytes: a range read asks for
#: the tail (the central directory) and then the member
WHEEL_NAME = "proj-1.0-cp311-cp311-macosx_11_0_arm64.whl"
WHEEL_METADATA = b"Metadata-Version: 2.1\nName: proj\nVersion: 1.0\nRequires-Dist: attrs\n"


def _wheel() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("proj-1.0.dist-info/METADATA", WHEEL_METADATA)
        zf.writestr("proj/data.bin", os.urandom(200_000))
        zf.writestr("proj-1.0.dist-info/RECORD", b"")
    return buf.getvalue()


WHEEL = _wheel()
PAGE = json.dumps({
    "meta": {"api-version": "1.1"}, "name": "proj",
    "files": [{"filename": f"proj-1.{i}-cp312-cp312-win_amd64.whl",
               "url": f"/files/proj-1.{i}-cp312-cp312-win_amd64.whl",
               "hashes": {"sha256": f"{i:064x}"}} for i in range(3000)],
}).encode()  # fmt: skip


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.connections = 0
        self.auth: list[str | None] = []
        self.drop_idle = False  # close each connection after its response (no keep-alive)
        self.asked: list[tuple[str, str | None]] = []  # (path, If-None-Match)
        self.ranges: list[str | None] = []  # the Range header of each wheel request

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.auth.append(self.headers.get("Authorization"))
        self.server.asked.append((self.path, self.headers.get("If-None-Match")))
        if self.path == "/simple/proj/":
            if self.headers.get("If-None-Match") == '"v1"':
                self._send(304, b"", {"ETag": '"v1"', "Cache-Control": "max-age=0"})
            else:
                self._send(200, PAGE, {"Content-Type": JSON_V1, "ETag": '"v1"',
                                       "Cache-Control": "max-age=0"})  # fmt: skip
            return
        if self.path == "/simple/Proj/":
            self._send(301, b"", {"Location": "/simple/proj/"})
            return
        if self.path == "/boom":
            self._send(503, b"busy", {})
            return
        if self.path == "/simple/gone/":  # a 404 whose body is cut short
            self.send_response(404)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"not here")
            self.close_connection = True
            return
        if self.path == "/moved":
            self._send(302, b"", {"Location": "/file"})
            return
        if self.path == "/gzip":
            self._send(200, gzip.compress(PAYLOAD), {"Content-Encoding": "gzip"})
            return
        if self.path == "/file":
            self._send(200, PAYLOAD, {})
            return
        if self.path in (f"/ranged/{WHEEL_NAME}", f"/whole/{WHEEL_NAME}"):
            self.server.ranges.append(self.headers.get("Range"))
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range") or "")
            if self.path.startswith("/whole/") or m is None:  # a server that ignores ranges
                self._send(200, WHEEL, {})
                return
            if m[1]:
                start, end = int(m[1]), min(int(m[2] or len(WHEEL) - 1), len(WHEEL) - 1)
            else:
                start, end = max(0, len(WHEEL) - int(m[2])), len(WHEEL) - 1
            span = f"bytes {start}-{end}/{len(WHEEL)}"
            self._send(206, WHEEL[start : end + 1], {"Content-Range": span})
            return
        self._send(404, b"no", {})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        if self.server.drop_idle:
            self.send_header("Connection", "keep-alive")  # it says so, then drops it
        self.end_headers()
        self.wfile.write(body)
        if self.server.drop_idle:
            self.close_connection = True


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def _read(resp: object) -> bytes:
    out = bytearray()
    try:
        for chunk in resp.iter_bytes(1 << 20):  # type: ignore[attr-defined]
            out += chunk
    finally:
        resp.close()  # type: ignore[attr-defined]
    return bytes(out)


def _http(tmp_path: Path, logins: Logins | None = None) -> Http:
    stats = {"requests": 0, "cached": 0, "revalidated": 0}
    return Http(logins or Logins(), Cache(tmp_path / "cache"), stats)


def test_plain_files_share_one_kept_alive_connection(server: _Server, tmp_path: Path) -> None:
    web = _http(tmp_path)
    try:
        for _ in range(3):
            resp = web.download(f"{server.url}/file")
            assert isinstance(resp, Body)
            assert hashlib.sha256(_read(resp)).digest() == hashlib.sha256(PAYLOAD).digest()
        assert server.connections == 1
        assert web.stats["requests"] == 3
    finally:
        web.close()


def test_a_connection_the_server_dropped_is_replaced(server: _Server, tmp_path: Path) -> None:
    server.drop_idle = True
    web = _http(tmp_path)
    try:
        for _ in range(3):
            resp = web.download(f"{server.url}/file")
            assert isinstance(resp, Body) and _read(resp) == PAYLOAD
        assert server.connections == 3
    finally:
        web.close()


def test_redirects_and_encoded_bodies_go_through_httpx(server: _Server, tmp_path: Path) -> None:
    web = _http(tmp_path)
    try:
        moved = web.download(f"{server.url}/moved")
        assert not isinstance(moved, Body)
        assert _read(moved) == PAYLOAD  # httpx followed the redirect
        encoded = web.download(f"{server.url}/gzip")
        assert not isinstance(encoded, Body)
        assert _read(encoded) == PAYLOAD  # the same bytes as before: httpx decodes
        missing = web.download(f"{server.url}/nothing")
        assert not isinstance(missing, Body) and missing.status_code == 404
        missing.close()
    finally:
        web.close()


def test_a_login_for_the_index_is_sent(server: _Server, tmp_path: Path) -> None:
    logins = Logins()
    logins.add_index(f"http://user:s%C3%A9cret@127.0.0.1:{server.server_address[1]}/simple/")
    web = _http(tmp_path, logins)
    try:
        resp = web.download(f"{server.url}/file")
        assert isinstance(resp, Body) and _read(resp) == PAYLOAD
    finally:
        web.close()
    import base64

    assert server.auth == ["Basic " + base64.b64encode("user:s\u00e9cret".encode()).decode()]


def test_a_proxied_host_is_left_to_httpx(
    server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens: httpx fails
    web = _http(tmp_path)
    try:
        from wheelport.errors import IndexAccessError

        web.retries = 0
        with pytest.raises(IndexAccessError):
            web.download(f"{server.url}/file")
        assert server.connections == 0  # the proxy was not bypassed
    finally:
        web.close()


def test_index_pages_are_read_over_http_client_and_revalidated_there(
    server: _Server, tmp_path: Path
) -> None:
    """A page (PEP 691, 3,000 Windows wheels) is read over ``http.client``; once stale it is
    revalidated there (``If-None-Match``, ``304``: the cached bytes answer) on the same kept
    connection, and httpx's client is never made. A page behind a redirect is httpx's, which
    follows it; a server that keeps answering 503 is asked 1 + 2 retries times in all; a 404
    whose body is cut short is a 404, not asked again."""
    web = _http(tmp_path)
    web.backoff = 0
    try:
        url = f"{server.url}/simple/proj/"
        body, ctype, final = web.get_page(url)
        assert (body, ctype, final) == (PAGE, JSON_V1, url)
        again = web.get_page(url)
        assert again == (PAGE, JSON_V1, url)
        assert server.asked == [("/simple/proj/", None), ("/simple/proj/", '"v1"')]
        assert web.stats["revalidated"] == 1 and web.stats["requests"] == 2
        assert server.connections == 1 and web._client is None  # no httpx client made

        moved = web.get_page(f"{server.url}/simple/Proj/")
        assert moved == (PAGE, JSON_V1, url)  # httpx followed the redirect
        assert web._client is not None

        web.retries = 2
        from wheelport.errors import IndexAccessError

        with pytest.raises(IndexAccessError, match="HTTP 503"):
            web.get_page(f"{server.url}/boom")
        assert [p for p, _ in server.asked].count("/boom") == 3
        gone = f"{server.url}/simple/gone/"
        assert web.get_page(gone) == (b"", "404", gone)  # its body cut short: not asked again
        assert [p for p, _ in server.asked].count("/simple/gone/") == 1
    finally:
        web.close()


def test_range_reads_go_over_http_client(server: _Server, tmp_path: Path) -> None:
    """A wheel's METADATA read with range requests (the tail, then the member before it) is
    asked over ``http.client`` on one kept connection, and httpx's client is never made. A
    server that ignores the range (a 200 with the whole wheel) is asked once, and the read
    gives up (None: the next metadata source is tried) without asking httpx again."""
    from wheelport.index.client import IndexClient
    from wheelport.index.models import make_file
    from wheelport.index.sources import read_by_ranges

    client = IndexClient([f"{server.url}/simple/"], cache=Cache(tmp_path / "cache"))
    try:

        def wheel(where: str) -> object:
            return make_file(filename=WHEEL_NAME, url=f"{server.url}/{where}/{WHEEL_NAME}",
                             project="proj", index_url=f"{server.url}/simple/",
                             size=len(WHEEL))  # fmt: skip

        assert read_by_ranges(client, wheel("ranged")) == WHEEL_METADATA  # type: ignore[arg-type]
        assert len(server.ranges) == 2 and server.ranges[0] == "bytes=-65536"
        assert server.ranges[1] is not None and server.ranges[1].startswith("bytes=0-")
        assert server.connections == 1 and client.web._client is None  # no httpx client made

        server.ranges.clear()
        assert read_by_ranges(client, wheel("whole")) is None  # type: ignore[arg-type]
        assert server.ranges == ["bytes=-65536"]  # asked once, not again through httpx
        assert client.web._client is None
    finally:
        client.close()


@pytest.mark.parametrize("env", ["SSL_CERT_FILE", "SSL_CERT_DIR", None])
def test_the_tls_settings_are_httpx_defaults_made_without_httpx(
    env: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``tls_context`` trusts what httpx's default context trusts (``SSL_CERT_FILE``, else
    ``SSL_CERT_DIR``, else certifi's bundle) and checks as it checks, so connections over
    ``http.client`` and through httpx accept the same servers."""
    import ssl

    import certifi
    import httpx

    from wheelport.index.http import tls_context

    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    one = tmp_path / "one.pem"  # a bundle of one CA (certifi's first), unlike certifi's
    first = Path(certifi.where()).read_text().split("-----END CERTIFICATE-----")[0]
    one.write_text(first + "-----END CERTIFICATE-----\n")
    if env == "SSL_CERT_FILE":
        monkeypatch.setenv(env, str(one))
    elif env == "SSL_CERT_DIR":
        monkeypatch.setenv(env, str(tmp_path))
    ours, theirs = tls_context(), httpx.create_ssl_context(trust_env=True)
    assert ours.cert_store_stats() == theirs.cert_store_stats()
    assert ours.get_ca_certs() == theirs.get_ca_certs()
    if env == "SSL_CERT_FILE":
        assert ours.cert_store_stats()["x509_ca"] == 1
    elif env is None:
        assert ours.cert_store_stats()["x509_ca"] > 100  # certifi's bundle
    assert ours.verify_mode == theirs.verify_mode == ssl.CERT_REQUIRED
    assert ours.check_hostname and theirs.check_hostname
    assert ours.minimum_version == theirs.minimum_version


def test_a_page_is_kept_in_the_cache_on_a_thread_of_its_own(
    server: _Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A page (3,000 Windows wheels) comes back while its cache entry is still being written.
    Asked again meanwhile, by another client of the process, it is revalidated with the
    pending entry's ETag; ``close`` waits for the entry, which is then on disk. An entry that
    cannot be written is left out with a warning: the run goes on, the next one asks again."""
    import wheelport.index.http as http_mod

    release = threading.Event()
    real = http_mod._write_page_entry

    def slow(path: Path, facts: dict[str, object], body: bytes) -> None:
        assert release.wait(30)
        real(path, facts, body)

    monkeypatch.setattr(http_mod, "_write_page_entry", slow)
    url = f"{server.url}/simple/proj/"
    first, second = _http(tmp_path), _http(tmp_path)
    entry = first.cache.http_path(f"page:{url}")
    assert first.get_page(url) == (PAGE, JSON_V1, url)
    assert not entry.exists()  # still being written
    assert second.get_page(url) == (PAGE, JSON_V1, url)
    assert server.asked == [("/simple/proj/", None), ("/simple/proj/", '"v1"')]
    release.set()
    first.close()
    second.close()
    assert entry.is_file() and entry.read_bytes().endswith(PAGE)

    def refused(path: Path, facts: dict[str, object], body: bytes) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(http_mod, "_write_page_entry", refused)
    entry.unlink()
    web = _http(tmp_path)
    with caplog.at_level("WARNING", logger="wheelport.index.http"):
        assert web.get_page(url) == (PAGE, JSON_V1, url)
        web.close()
    assert not entry.exists()
    assert any("was not kept in the cache" in r.getMessage() for r in caplog.records)


def test_a_client_closed_while_a_page_is_being_kept_waits_for_its_entry(
    server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that fails closes its client while another thread still reads a page (a
    Windows page here): ``close`` meets that page's writer only once it has started, and
    waits for it (it once joined a thread not yet started: an internal error in place of
    the run's own message)."""
    import wheelport.index.http as http_mod

    web = _http(tmp_path)
    failures: list[BaseException] = []
    closers: list[threading.Thread] = []
    real_thread = threading.Thread

    def closing() -> None:
        try:
            web.close()
        except BaseException as exc:  # what close raised is the finding
            failures.append(exc)

    class CloseFirst(real_thread):
        def start(self) -> None:
            if self.name == "wheelport-page-cache":
                closer = real_thread(target=closing)
                closer.start()
                closer.join(1.0)  # close runs now, or waits for the page to be listed
                closers.append(closer)
            super().start()

    monkeypatch.setattr(http_mod.threading, "Thread", CloseFirst)
    url = f"{server.url}/simple/proj/"
    assert web.get_page(url) == (PAGE, JSON_V1, url)
    monkeypatch.undo()
    (closer,) = closers
    closer.join(30)  # its close() waited for the entry
    assert not closer.is_alive() and not failures
    entry = web.cache.http_path(f"page:{url}")
    assert entry.is_file() and entry.read_bytes().endswith(PAGE)
