"""``wheelport serve``: negotiation, redirects, safety, caching headers, real pip/uv over HTTP."""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin

import pytest

import wheelport
from support.dists import make_sdist, make_wheel, wheel_metadata
from test_index_writer import installed, make_venv, pip_install, uv_install
from wheelport.errors import UsageError
from wheelport.serve import JSON_V1, make_server, negotiate, route
from wheelport.site.writer import write_index

HTML_V1 = "application/vnd.pypi.simple.v1+html"
PIP_ACCEPT = f"{JSON_V1}, {HTML_V1}; q=0.1, text/html; q=0.01"


@pytest.fixture
def house(tmp_path: Path) -> Path:
    root = tmp_path / "wh"
    make_wheel(root / "wheels", "Foo.Bar", "1.0", deps=["dep"], requires_python=">=3.8,<4")
    make_wheel(root / "wheels", "dep", "1.0")
    make_wheel(root / "wheels", "dep", "2.0", requires_python=">=3.99")
    make_sdist(root / "sdists", "dep", "1.0")
    (root / "wheelport.json").write_text('{"artifacts": {}}\n')
    write_index(root)
    return root


@pytest.fixture
def server(house: Path) -> Iterator[tuple[str, int]]:
    srv = make_server(house, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = srv.server_address[:2]
        yield str(host), int(port)
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=10)


def request(
    addr: tuple[str, int], path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(*addr, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


# --------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (PIP_ACCEPT, JSON_V1),
        (f"{JSON_V1};q=0.2, {HTML_V1};q=0.9", HTML_V1),
        ("text/html,application/xhtml+xml,*/*;q=0.8", "text/html"),
        ("*/*", "text/html"),
        (None, "text/html"),
        ("application/vnd.pypi.simple.latest+json", JSON_V1),
        ("application/*", JSON_V1),
        ("application/xml", None),
        ("text/html;q=0", None),
        (f"*/*, {JSON_V1};q=0", "text/html"),
    ],
)
def test_negotiate(accept: str | None, expected: str | None) -> None:
    assert negotiate(accept) == expected


@pytest.mark.parametrize(
    ("path", "kind", "target"),
    [
        ("/simple", "redirect", "/simple/"),
        ("/simple/Foo.Bar", "redirect", "/simple/foo-bar/"),
        ("/simple/Foo.Bar/", "redirect", "/simple/foo-bar/"),
        ("/simple/foo-bar", "redirect", "/simple/foo-bar/"),
        ("/simple/foo-bar/", "simple", "simple/foo-bar"),
        ("/simple/foo-bar/index.json", "file", "simple/foo-bar/index.json"),
        ("/wheels/x.whl?y=1", "file", "wheels/x.whl"),
        ("/../etc/passwd", "notfound", ""),
        ("/wheels/%2e%2e/%2e%2e/etc/passwd", "notfound", ""),
        ("/simple/.wheelport-index.json", "notfound", ""),
        ("/wheels/..%5c..%5cx", "notfound", ""),
    ],
)
def test_route(path: str, kind: str, target: str) -> None:
    got = route(path)
    assert (got.kind, got.target) == (kind, target)


# --------------------------------------------------------------------------- over HTTP


def test_pep691_client_reads_json(server: tuple[str, int], house: Path) -> None:
    status, headers, body = request(server, "/simple/", headers={"Accept": PIP_ACCEPT})
    assert status == 200 and headers["content-type"] == JSON_V1
    assert headers["vary"] == "Accept"
    assert [p["name"] for p in json.loads(body)["projects"]] == ["dep", "foo-bar"]

    page_url = f"http://{server[0]}:{server[1]}/simple/dep/"
    status, headers, body = request(server, "/simple/dep/", headers={"Accept": JSON_V1})
    assert status == 200 and headers["content-type"] == JSON_V1
    page = json.loads(body)
    assert page["meta"]["api-version"] == "1.1" and page["name"] == "dep"
    assert page["versions"] == ["1.0", "2.0"]
    files = {f["filename"]: f for f in page["files"]}
    assert set(files) == {"dep-1.0-py3-none-any.whl", "dep-1.0.tar.gz", "dep-2.0-py3-none-any.whl"}
    assert files["dep-2.0-py3-none-any.whl"]["requires-python"] == ">=3.99"

    for name, entry in files.items():
        url = urljoin(page_url, entry["url"])
        assert url.startswith(f"http://{server[0]}:{server[1]}/")
        status, headers, data = request(server, url.split(str(server[1]), 1)[1])
        assert status == 200
        assert hashlib.sha256(data).hexdigest() == entry["hashes"]["sha256"]
        assert len(data) == entry["size"] == int(headers["content-length"])
        if name.endswith(".whl"):
            assert headers["content-type"] == "application/zip"
            status, headers, meta = request(server, url.split(str(server[1]), 1)[1] + ".metadata")
            assert status == 200 and headers["content-type"].startswith("text/plain")
            assert meta == wheel_metadata(house / "wheels" / name)
            assert entry["core-metadata"] == {"sha256": hashlib.sha256(meta).hexdigest()}
        else:
            assert headers["content-type"] == "application/gzip"
            assert "content-encoding" not in headers
            assert entry["core-metadata"] is False


def test_html_negotiation_and_406(server: tuple[str, int]) -> None:
    status, headers, body = request(server, "/simple/dep/", headers={"Accept": "text/html"})
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    assert b"dep-1.0-py3-none-any.whl" in body
    status, headers, _ = request(server, "/simple/dep/", headers={"Accept": HTML_V1})
    assert headers["content-type"] == HTML_V1
    status, _, _ = request(server, "/simple/dep/", headers={"Accept": "application/xml"})
    assert status == 406


def test_redirects_to_normalized_name(server: tuple[str, int]) -> None:
    status, headers, _ = request(server, "/simple/Foo.Bar")
    assert status == 301 and headers["location"] == "/simple/foo-bar/"
    status, headers, _ = request(server, "/simple/FOO_bar/")
    assert status == 301 and headers["location"] == "/simple/foo-bar/"
    status, _, _ = request(server, "/simple/nope/")
    assert status == 404


def test_no_traversal_and_read_only(server: tuple[str, int], house: Path) -> None:
    (house.parent / "secret.txt").write_text("secret")
    for path in ("/../secret.txt", "/wheels/../../secret.txt", "/%2e%2e/secret.txt"):
        status, _, body = request(server, path)
        assert status == 404 and b"secret" not in body
    status, _, _ = request(server, "/simple/.wheelport-index.json")
    assert status == 404
    status, headers, _ = request(server, "/wheels/dep-1.0-py3-none-any.whl", method="DELETE")
    assert status == 405 and headers["allow"] == "GET, HEAD"
    assert (house / "wheels/dep-1.0-py3-none-any.whl").exists()


def test_head_etag_and_last_modified(server: tuple[str, int], house: Path) -> None:
    path = "/wheels/dep-1.0-py3-none-any.whl"
    status, headers, body = request(server, path, method="HEAD")
    size = (house / "wheels/dep-1.0-py3-none-any.whl").stat().st_size
    assert status == 200 and body == b"" and int(headers["content-length"]) == size
    etag = headers["etag"]
    assert headers["last-modified"].endswith("GMT")
    status, _, body = request(server, path, headers={"If-None-Match": etag})
    assert status == 304 and body == b""
    status, _, _ = request(server, path, headers={"If-Modified-Since": headers["last-modified"]})
    assert status == 304
    status, _, _ = request(server, path, headers={"If-None-Match": '"other"'})
    assert status == 200
    # the JSON and HTML forms of one page have different tags
    _, json_h, _ = request(server, "/simple/dep/", "HEAD", {"Accept": JSON_V1})
    _, html_h, _ = request(server, "/simple/dep/", "HEAD", {"Accept": "text/html"})
    assert json_h["etag"] != html_h["etag"]


def test_serve_stops_cleanly_on_ctrl_c(house: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from wheelport.serve import serve; "
        "serve(Path(sys.argv[1]), '127.0.0.1', 0, on_ready=lambda u: print(u, flush=True))"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(wheelport.__file__).parent.parent))
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(house)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/simple/")
        host, port = url.split("/")[2].split(":")
        status, _, _ = request((host, int(port)), "/simple/dep/")
        assert status == 200
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert "Traceback" not in err


def test_bad_root_and_busy_port(tmp_path: Path, house: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        make_server(tmp_path / "missing", "127.0.0.1", 0)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        with pytest.raises(UsageError, match="cannot listen"):
            make_server(house, "127.0.0.1", sock.getsockname()[1])


def negotiated(caplog: pytest.LogCaptureFixture) -> set[str]:
    return {
        r.getMessage().split()[1] for r in caplog.records if r.getMessage().startswith("negotiated")
    }


def test_pip_installs_over_http(
    server: tuple[str, int], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="wheelport.serve")
    python = make_venv(tmp_path / "venv", tmp_path)
    pip_install(python, f"http://{server[0]}:{server[1]}/simple/", tmp_path, "foo-bar")
    got = installed(python)
    assert got["foo-bar"] == "1.0" and got["dep"] == "1.0"  # dep 2.0 needs Python >= 3.99
    assert negotiated(caplog) == {JSON_V1}  # pip asks for PEP 691 JSON first


def test_uv_installs_over_http(
    server: tuple[str, int], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="wheelport.serve")
    python = make_venv(tmp_path / "venv", tmp_path)
    uv_install(python, f"http://{server[0]}:{server[1]}/simple/", tmp_path, "Foo.Bar")
    got = installed(python)
    assert got["foo-bar"] == "1.0" and got["dep"] == "1.0"
    assert negotiated(caplog) == {JSON_V1}  # uv takes the JSON over HTTP too
