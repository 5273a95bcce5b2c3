"""The wheelhouse page (``index.html``): what it says, that it says it escaped and the same way
every time, that an audit reaches it, and that a real browser reads it from ``wheelport serve``.

The wheelhouse is synced from the local index for the host and two targets unlike it
(``cp312-win_amd64``, ``cp313-macosx_11_0_arm64``): a C-extension sdist is built natively for
the host and is a red cell for the other two, a pure-Python sdist is built natively once for
all three, a Windows-only dependency is not needed elsewhere, and one wheel's ``License`` is
hostile markup.
"""

from __future__ import annotations

import html
import json
import os
import re
import shlex
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

from support import run_wheelport
from support.dists import make_backend_wheel, make_sdist, make_wheel
from support.server import IndexServer
from test_publish import nginx  # noqa: F401  (the fixture: nginx serving a directory)
from wheelport.builders.stage import Builders
from wheelport.config import build_config
from wheelport.lock import read_lock
from wheelport.manifest import ArtifactRecord, Manifest, ManifestError, Origin
from wheelport.site.page import (
    ALL,
    Cell,
    LockView,
    PageFacts,
    lock_cells,
    render_page,
    reproduce_command,
    write_page,
)
from wheelport.site.writer import write_index
from wheelport.sync import sync
from wheelport.targets import host_target
from wheelport.wheelhouse import load_manifest

WIN, MAC = "cp312-win_amd64", "cp313-macosx_11_0_arm64"
HOSTILE = '<script>alert("x")</script><img src=http://127.0.0.1:9/x.png>'
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: Debian's chromium as root in a container: no sandbox, and none of the calls home it makes
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars",
)  # fmt: skip
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (apt-get install chromium; .ci/run installs it)",
)


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IndexServer]:
    dists = tmp_path_factory.mktemp("dists")
    with IndexServer() as srv:
        srv.add(make_backend_wheel(dists))
        srv.add(make_wheel(dists, "app", "1.0", license_expression="MIT",
                           deps=["cext", "puresrc", "dep", 'winonly; sys_platform == "win32"']))  # fmt: skip
        srv.add(make_wheel(dists, "dep", "2.0", license=HOSTILE))
        srv.add(make_wheel(dists, "winonly", "1.0", license="BSD-3-Clause"))
        srv.add(make_sdist(dists, "cext", "0.1", c_extension=True))
        srv.add(make_sdist(dists, "puresrc", "1.0"))
        yield srv


@pytest.fixture(scope="module")
def house(index: IndexServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synced wheelhouse (native builder only: no container engine needed)."""
    tmp = tmp_path_factory.mktemp("page")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WHEELPORT_CACHE_DIR", str(tmp / "cache"))
        config = build_config(directory=tmp, requirements=["app"], index_urls=[index.url],
                              targets=["host", WIN, MAC], output=tmp / "wh", tools=["none"])  # fmt: skip
        result = sync(config, allow_missing=True, builders=Builders())
    assert {(p, t) for p, t, _ in result.coverage.red()} == {("cext", WIN), ("cext", MAC)}
    return tmp / "wh"


def host_id() -> str:
    return host_target().identifier


# --------------------------------------------------------------------------- reading the DOM


class Matrix(HTMLParser):
    """The coverage matrix as text: its column heads and, per package, each cell's
    (``data-state``, text) — from the DOM the browser built, or from the page's HTML."""

    def __init__(self) -> None:
        super().__init__()
        self.columns: list[str] = []
        self.rows: dict[str, list[tuple[str, str]]] = {}
        self.scripts = 0
        self._in = False
        self._where: str | None = None
        self._row: str | None = None
        self._state = ""
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in ("script", "img", "iframe", "object", "embed", "link"):
            self.scripts += 1
        if tag == "table" and "matrix" in (a.get("class") or ""):
            self._in = True
        elif self._in and tag == "tr" and (a.get("id") or "").startswith("pkg-"):
            self._row = str(a["id"])[4:]
            self.rows[self._row] = []
        elif self._in and tag in ("th", "td"):
            self._where, self._state, self._text = tag, a.get("data-state") or "", []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in = False
        elif self._in and tag in ("th", "td") and self._where == tag:
            text = " ".join(" ".join(self._text).split())
            if tag == "th" and self._row is None:
                self.columns.append(text)
            elif tag == "td" and self._row is not None:
                self.rows[self._row].append((self._state, text))
            self._where = None

    def handle_data(self, data: str) -> None:
        if self._where:
            self._text.append(data)

    def cell(self, package: str, target: str) -> tuple[str, str]:
        return self.rows[package][self.columns.index(target) - 1]


def matrix_of(text: str) -> Matrix:
    parser = Matrix()
    parser.feed(text)
    return parser


# --------------------------------------------------------------------------- the page's content


def test_page_says_how_each_cell_is_served_or_why_not(house: Path) -> None:
    text = (house / "index.html").read_text(encoding="utf-8")
    m = matrix_of(text)
    host = host_id()
    assert m.columns == ["package", *sorted([host, WIN, MAC])]
    assert list(m.rows) == ["app", "cext", "dep", "puresrc", "winonly"]
    assert m.cell("app", WIN) == ("downloaded", "✓ downloaded py3-none-any")
    state, said = m.cell("cext", host)
    assert state == "built" and said.startswith("✓ built natively cp")
    for target, system in ((WIN, "Windows"), (MAC, "macOS")):
        state, said = m.cell("cext", target)
        assert state == "missing" and f"needs a native build host for {system}" in said
        assert "wheelport ci github" in said
    assert {m.cell("puresrc", t) for t in (host, WIN, MAC)} == {
        ("built", "✓ built natively py3-none-any")
    }
    assert m.cell("winonly", WIN)[0] == "downloaded"
    assert m.cell("winonly", MAC) == m.cell("winonly", host) == ("absent", "— not needed")
    # sizes: each lock, with the bytes of the wheels it installs
    for target in (host, WIN, MAC):
        lock = read_lock(house / f"pylock.{target}.toml")
        total = sum(p.wheels[0].size or 0 for p in lock.packages if p.wheels)
        assert f"pylock.{target}.toml" in text and total > 0
    assert "2 cells cannot be served; each says why." in text
    # licences, from `wheelport licenses`' own reading of the wheels
    assert '<td data-label="licence">MIT</td>' in text
    assert "BSD-3-Clause" in text
    # no audit yet, and the inputs with the command that makes it again
    assert "No audit has run on this wheelhouse." in text
    assert "--allow-missing" in text and f"-t {WIN}" in text


def test_everything_from_the_index_is_escaped(house: Path) -> None:
    text = (house / "index.html").read_text(encoding="utf-8")
    assert HOSTILE not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in text
    # the page loads nothing: no script, no image, no style sheet or font from elsewhere
    assert matrix_of(text).scripts == 0
    assert not re.search(r"<(script|img|link|iframe|object|embed)\b", text)
    assert "url(" not in text and "@import" not in text
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', text)
    assert csp is not None and html.unescape(csp.group(1)).startswith("default-src 'none'; ")

    # a hostile wheelhouse: every field that reaches the page is text there
    facts = PageFacts(
        targets=(WIN,),
        rows={"</th><script>x</script>": {WIN: Cell(state="missing", label="missing",
                                                     detail='"><script>alert(1)</script>')}},
        locks=(LockView(target=WIN, file='pylock."><i>.toml', packages=1, wheel_bytes=1,
                        tools=0, tool_bytes=0, digest="<i>d</i>", wheelport_version="1",
                        inputs={"requirements": ["a; python_version < '3.12' and '<i>'"]}),),
    )  # fmt: skip
    hostile = render_page(facts)
    assert "<script" not in hostile and "<i>" not in hostile
    assert 'href="pylock.%22%3E%3Ci%3E.toml">pylock.&quot;&gt;&lt;i&gt;.toml</a>' in hostile
    assert hostile.count("&lt;script&gt;") >= 2 and "&lt;i&gt;d&lt;/i&gt;" in hostile


def test_same_wheelhouse_same_bytes(house: Path, tmp_path: Path) -> None:
    page = (house / "index.html").read_bytes()
    # not written again when nothing it shows changed
    before = (house / "index.html").stat().st_mtime_ns
    assert write_page(house) is False
    write_index(house)
    assert (house / "index.html").stat().st_mtime_ns == before
    # a copy elsewhere, indexed from scratch, gets the same bytes (no path, no clock)
    copy = shutil.copytree(house, tmp_path / "elsewhere" / "wh")
    (copy / "index.html").unlink()
    shutil.rmtree(copy / "simple")
    write_index(copy)
    assert (copy / "index.html").read_bytes() == page
    # and a change it shows is shown
    (copy / "wheels" / "puresrc-1.0-py3-none-any.whl").unlink()
    write_index(copy)
    m = matrix_of((copy / "index.html").read_text(encoding="utf-8"))
    state, said = m.cell("puresrc", WIN)
    assert state == "missing" and "puresrc-1.0-py3-none-any.whl is not in wheels/" in said


def test_the_command_makes_the_same_locks(house: Path, tmp_path: Path) -> None:
    text = (house / "index.html").read_text(encoding="utf-8")
    found = re.search(r'<pre class="command"><code>(.*?)</code></pre>', text, re.S)
    assert found is not None
    args = shlex.split(html.unescape(found.group(1)).replace("\\\n", " "))
    assert args[:2] == ["wheelport", "sync"] and "--allow-missing" in args
    # the same inputs: `lock` with them, in an empty directory, makes locks with the same
    # inputs digest and the same pins for every target
    args = ["lock" if a == "sync" else a for a in args[1:] if a != "--allow-missing"]
    work = tmp_path / "empty"
    work.mkdir()
    r = run_wheelport(*args, cwd=work, timeout=600)
    assert r.returncode == 0, r.stderr
    for lock in sorted(house.glob("pylock.*.toml")):
        again = read_lock(work / "wheelhouse" / lock.name)
        first = read_lock(lock)
        tool = (first.tool or {})["wheelport"]
        assert (again.tool or {})["wheelport"]["inputs-digest"] == tool["inputs-digest"]
        assert (again.tool or {})["wheelport"]["inputs"] == tool["inputs"]
        assert [(p.name, p.version) for p in again.packages] == [
            (p.name, p.version) for p in first.packages
        ]


def test_reproduce_command_from_recorded_inputs() -> None:
    inputs = {
        "requirements": ["a>=1", 'b; python_version < "3.12"'],
        "constraints": ["c<2"],
        "index-urls": ["https://pypi.org/simple"],
        "tools": ["pip", "uv"],
        "pre": True,
        "from-source": ["b"],
        "exclude-newer": "2026-12-01T00:00:00Z",
    }
    command, constraints = reproduce_command(inputs, [WIN])
    assert command.split(" \\\n    ") == [
        "wheelport sync 'a>=1' 'b; python_version < \"3.12\"'",
        "-c constraints.txt",
        "--pre",
        "--from-source b",
        "--exclude-newer 2026-12-01T00:00:00Z",
        "--tool pip",
        "--tool uv",
        f"-t {WIN}",
        "-o wheelhouse",
    ]
    assert constraints == "c<2\n"
    source = {"name": "uv.lock", "sha256": "0" * 64, "extras": ["x"], "groups": ["dev"],
              "only-groups": True}  # fmt: skip
    command, _ = reproduce_command(
        {"from": source, "index-urls": ["https://pypi.org/simple"], "index-given": True,
         "tools": []}, [MAC], allow_missing=True)  # fmt: skip
    assert command.split(" \\\n    ") == [
        "wheelport sync --from uv.lock",
        "--extra x",
        "--only-group dev",
        "--index-url https://pypi.org/simple",
        "--tool none",
        f"-t {MAC}",
        "-o wheelhouse",
        "--allow-missing",
    ]


def test_cells_from_lock_manifest_and_unserved(house: Path) -> None:
    lock = read_lock(house / f"pylock.{WIN}.toml")
    built = next(p for p in lock.packages if p.name == "puresrc").wheels[0]  # type: ignore[union-attr]
    rel = str(built.path)
    origin = Origin("build", builder="container:localhost/img:abc", sdist="sdists/x.tar.gz")
    artifacts = {rel: ArtifactRecord("0" * 64, 1, origin)}
    unserved = {"cext": ("deferred", "left to shard 2/3"), ALL: ("missing", "not locked: x")}
    cells = lock_cells(lock, artifacts, unserved, present=lambda r: True)
    assert cells["puresrc"].label == "built in a container"
    assert cells["puresrc"].detail == "image localhost/img:abc"
    assert (cells["cext"].state, cells["cext"].detail) == ("deferred", "left to shard 2/3")
    assert cells[ALL].state == "missing"  # a recorded cell the lock does not name
    gone = lock_cells(lock, {}, {}, present=lambda r: r != rel)
    assert gone["puresrc"].state == "missing" and "not in wheels/" in gone["puresrc"].detail


def test_a_target_that_could_not_be_locked_is_a_column(house: Path, tmp_path: Path) -> None:
    wh = shutil.copytree(house, tmp_path / "wh")
    manifest = load_manifest(wh / "wheelport.json")
    musl = "cp310-musllinux_1_2_aarch64"
    manifest.unserved[musl] = {ALL: ("missing", "not locked: no version of cext fits <it>")}
    assert write_page(wh, manifest) is True
    text = (wh / "index.html").read_text(encoding="utf-8")
    m = matrix_of(text)
    assert musl in m.columns and list(m.rows)[-1] == ALL
    assert m.cell(ALL, musl) == ("missing", "✗ missing not locked: no version of cext fits <it>")
    assert m.cell("app", musl) == ("absent", "— not needed")
    assert f"-t {musl}" in text  # the command asks for it again, as the sync did


def test_audit_is_recorded_and_shown(house: Path, tmp_path: Path) -> None:
    wh = shutil.copytree(house, tmp_path / "wh")
    osv = tmp_path / "osv"
    osv.mkdir()
    record = {"id": "PYSEC-2099-7", "aliases": ["CVE-2099-0007"], "summary": "dep <2.1 leaks",
              "affected": [{"package": {"ecosystem": "PyPI", "name": "dep"},
                            "ranges": [{"type": "ECOSYSTEM",
                                        "events": [{"introduced": "0"}, {"fixed": "2.1"}]}]}]}  # fmt: skip
    (osv / "PYSEC-2099-7.json").write_text(json.dumps(record))
    r = run_wheelport("audit", "-w", str(wh), "--osv", str(osv), "--json", timeout=600)
    assert r.returncode == 1, r.stderr
    assert json.loads(r.stdout)["recorded"] == str(wh / "audit.json")
    saved = json.loads((wh / "audit.json").read_text())
    assert saved["osv"] == ["osv"] and str(tmp_path) not in json.dumps(saved)
    assert {f["target"] for f in saved["report"]["findings"]} == {host_id(), WIN, MAC}
    text = (wh / "index.html").read_text(encoding="utf-8")
    assert "No audit has run" not in text
    assert "1 known vulnerability" in text and "PYSEC-2099-7, CVE-2099-0007" in text
    targets = ", ".join(sorted([host_id(), WIN, MAC]))
    assert f'<td data-label="targets">{targets}</td>' in text
    assert "dep &lt;2.1 leaks" in text and "locks changed since" not in text
    # a lock that changed after the audit: the page says the audit is stale
    lock = wh / f"pylock.{WIN}.toml"
    lock.write_text(lock.read_text() + "\n")
    write_index(wh)
    text = (wh / "index.html").read_text(encoding="utf-8")
    assert f"The locks changed since this audit (pylock.{WIN}.toml)" in text


# --------------------------------------------------------------------------- in a real browser


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(house: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``wheelport serve`` on 127.0.0.1 (its request log on stderr, with -v)."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "wheelport", "serve", str(house), "--port", str(port), "-v"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/", proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def chromium(url: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory(prefix="wheelport-chromium-") as profile:
        cmd = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url]
        r = subprocess.run(cmd, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-2000:]
    return r


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


@pytest.mark.browser
@needs_chromium
def test_chromium_renders_the_page_from_serve(
    served: tuple[str, subprocess.Popen[str]], tmp_path: Path
) -> None:
    url, proc = served
    dom = chromium(url, "--dump-dom").stdout.decode()
    m = matrix_of(dom)  # the DOM the browser built, not the HTML string
    host = host_id()
    assert m.columns == ["package", *sorted([host, WIN, MAC])]
    state, said = m.cell("cext", WIN)
    assert state == "missing" and said.startswith("✗ missing compiled sdist; needs a native")
    assert m.cell("cext", host)[1].startswith("✓ built natively")
    assert m.cell("puresrc", MAC) == ("built", "✓ built natively py3-none-any")
    assert m.cell("winonly", host) == ("absent", "— not needed")
    assert m.scripts == 0 and "&lt;script&gt;" in dom  # the hostile licence stayed text
    # screenshots, wide and at a phone's width (kept in $WHEELPORT_PAGE_SHOTS when set)
    shots = Path(os.environ.get("WHEELPORT_PAGE_SHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    for name, size in (("desktop", (1280, 1800)), ("phone", (390, 844))):
        png = shots / f"wheelhouse-page-{name}.png"
        chromium(url, f"--window-size={size[0]},{size[1]}", f"--screenshot={png}")
        assert png_size(png) == size and png.stat().st_size > 10_000
    # the page asked the server for nothing but itself (and the browser for its icon)
    proc.terminate()
    _, log = proc.communicate(timeout=10)
    asked = {line.split('"')[1].split()[1] for line in log.splitlines() if '"GET ' in line}
    assert "/" in asked and asked <= {"/", "/favicon.ico"}, log


@pytest.mark.browser
@needs_chromium
def test_chromium_reads_the_page_behind_nginx_as_it_is(
    house: Path,
    nginx: tuple[str, Path],  # noqa: F811  (the fixture imported above)
) -> None:
    base, root = nginx
    shutil.copytree(house, root, dirs_exist_ok=True)
    m = matrix_of(chromium(f"{base}/", "--dump-dom").stdout.decode())
    assert m.cell("cext", MAC)[0] == "missing" and m.cell("dep", WIN)[0] == "downloaded"
    # the page's relative links resolve on a plain static server
    for link in ("simple/", "simple/cext/", f"pylock.{WIN}.toml", "wheelport.json"):
        with urllib.request.urlopen(f"{base}/{link}", timeout=10) as resp:
            assert resp.status == 200, link


def test_manifest_unserved_round_trip_and_replacement() -> None:
    m = Manifest()
    m.set_unserved([WIN, MAC], {"cext": {WIN: ("missing", "why"), MAC: ("built", "x.whl")},
                                "lib": {MAC: ("deferred", "left to shard 2/3")}})  # fmt: skip
    assert m.unserved == {WIN: {"cext": ("missing", "why")},
                          MAC: {"lib": ("deferred", "left to shard 2/3")}}  # fmt: skip
    data = m.to_dict()
    assert data["unserved"][WIN] == {"cext": {"state": "missing", "reason": "why"}}
    assert Manifest.from_dict(data).unserved == m.unserved
    m.set_unserved([WIN], {})  # a later sync of WIN alone: MAC's record stays
    assert m.unserved == {MAC: {"lib": ("deferred", "left to shard 2/3")}}
    assert "unserved" not in Manifest().to_dict()  # nothing unserved: nothing written
    data["unserved"][WIN]["cext"]["state"] = "built"
    with pytest.raises(ManifestError, match=r"unserved\[cp312-win_amd64\]\[cext\].state"):
        Manifest.from_dict(data)
