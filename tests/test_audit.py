"""`wheelport audit` against OSV records (a directory and the same as all.zip; the JSON API on a
local fake), and PEP 792 project status from the index page to the lock, index, coverage, audit."""

from __future__ import annotations

import http.server
import json
import os
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import tomli_w
import tomllib
from packaging.version import Version
from rich.console import Console

from support import run_wheelport
from support.dists import make_wheel
from support.server import IndexServer
from wheelport.export.audit import audit, in_range
from wheelport.index.client import IndexClient
from wheelport.index.parse import parse_html_status, parse_json_status
from wheelport.output import coverage_table, lock_statuses

LINUX, WIN = "cp312-manylinux_2_28_x86_64", "cp312-win_amd64"
RECORDS = [
    {"id": "PYSEC-2024-1", "aliases": ["CVE-2024-0001"], "summary": "dep 1.0 is bad",
     "affected": [{"package": {"ecosystem": "PyPI", "name": "DEP"},
                   "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.1"}]}]}]},
    # withdrawn: ignored although it names 1.1
    {"id": "PYSEC-2024-2", "withdrawn": "2024-02-01T00:00:00Z",
     "affected": [{"package": {"ecosystem": "PyPI", "name": "dep"}, "versions": ["1.1"]}]},
    # another ecosystem's package of the same name
    {"id": "GHSA-npm-1", "affected": [{"package": {"ecosystem": "npm", "name": "dep"}, "versions": ["1.1"]}]},
    # a fixed range that does not reach app 2.0
    {"id": "PYSEC-2023-9", "affected": [{"package": {"ecosystem": "PyPI", "name": "app"},
                                         "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "1.0"}, {"last_affected": "1.9"}]}]}]},
]  # fmt: skip


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Locks only: dep pinned at 1.0 for Linux and 1.1 for Windows."""
    root = tmp_path_factory.mktemp("audit")
    with IndexServer() as srv:
        for v in ("1.0", "1.1"):
            srv.add(make_wheel(root / "d", "dep", v), upload_time="2024-01-02T03:04:05Z")
        srv.add(make_wheel(root / "d", "app", "2.0", deps=['dep==1.0; sys_platform == "linux"',
                                                           'dep==1.1; sys_platform == "win32"']))  # fmt: skip
        wh = root / "wh"
        r = run_wheelport("sync", "app", "--index-url", srv.url, "-t", LINUX, "-t", WIN,
                          "--tool", "none", "-o", str(wh), timeout=600)  # fmt: skip
        assert r.returncode == 0, r.stderr
    return wh


@pytest.fixture(scope="module")
def osv_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("osv")
    for rec in RECORDS:
        (d / f"{rec['id']}.json").write_text(json.dumps(rec))
    return d


@pytest.fixture(scope="module")
def osv_zip(osv_dir: Path) -> Path:
    path = osv_dir.parent / "all.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for f in sorted(osv_dir.glob("*.json")):
            zf.write(f, f.name)
    return path


@pytest.mark.parametrize("source", ["osv_dir", "osv_zip"])
def test_osv_flags_the_affected_pin_of_one_target_only(
    wheelhouse: Path, source: str, request: pytest.FixtureRequest
) -> None:
    path: Path = request.getfixturevalue(source)
    r = run_wheelport("audit", "-w", str(wheelhouse), "--osv", str(path), "--json")
    assert r.returncode == 1, r.stderr
    report = json.loads(r.stdout)
    assert [(f["target"], f["name"], f["version"], f["id"]) for f in report["findings"]] == [
        (LINUX, "dep", "1.0", "PYSEC-2024-1")
    ]
    assert report["findings"][0]["aliases"] == ["CVE-2024-0001"]
    assert report["findings"][0]["fixed"] == ["1.1"]
    assert report["osv_records"] == 2  # the withdrawn and the npm record are not loaded
    # the table shows the alias; --warn-only exits 0; -t WIN alone finds nothing
    wide = {**os.environ, "COLUMNS": "250"}
    r = run_wheelport("audit", "-w", str(wheelhouse), "--osv", str(path), "--warn-only", env=wide)
    assert r.returncode == 0 and "CVE-2024-0001" in r.stdout and "PYSEC-2024-1" in r.stdout
    r = run_wheelport("audit", "-w", str(wheelhouse), "--osv", str(path), "-t", WIN)
    assert r.returncode == 0, r.stdout + r.stderr


def test_no_source_is_a_usage_error(wheelhouse: Path) -> None:
    r = run_wheelport("audit", "-w", str(wheelhouse))
    assert r.returncode == 2 and "--osv" in r.stderr


@pytest.mark.parametrize(
    ("events", "version", "hit"),
    [
        ([{"introduced": "0"}, {"fixed": "1.1"}], "1.0", True),
        ([{"introduced": "0"}, {"fixed": "1.1"}], "1.1", False),
        ([{"introduced": "0"}, {"fixed": "1.1"}], "1.1rc1", True),
        ([{"introduced": "1.0"}, {"last_affected": "1.9"}], "1.9", True),
        ([{"introduced": "1.0"}, {"last_affected": "1.9"}], "1.9.1", False),
        ([{"introduced": "1.0"}, {"last_affected": "1.9"}], "0.9", False),
        ([{"introduced": "1.0"}, {"fixed": "1.2"}, {"introduced": "2.0"}, {"fixed": "2.1"}], "1.5", False),
        ([{"introduced": "1.0"}, {"fixed": "1.2"}, {"introduced": "2.0"}, {"fixed": "2.1"}], "2.0.5", True),
        ([{"introduced": "0"}, {"limit": "3.0"}], "3.1", False),
    ],
)  # fmt: skip
def test_osv_range_evaluation(events: list[dict[str, str]], version: str, hit: bool) -> None:
    assert in_range(Version(version), events) is hit


@pytest.fixture
def json_api() -> Iterator[tuple[str, list[str]]]:
    """A fake index JSON API on 127.0.0.1: /pypi/dep/1.1/json has one vulnerability."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            if self.path == "/pypi/dep/1.1/json":
                body = json.dumps({"info": {}, "vulnerabilities": [
                    {"id": "GHSA-xxxx", "aliases": ["CVE-2025-1"], "summary": "online only",
                     "fixed_in": ["1.2"], "withdrawn": None},
                    {"id": "GHSA-gone", "withdrawn": "2025-01-01T00:00:00Z"}]}).encode()  # fmt: skip
                self.send_response(200)
            else:
                body = b'{"message": "Not Found"}'
                self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/simple", seen
    httpd.shutdown()


def _relocate(wh: Path, dest: Path, index: str) -> Path:
    """A copy of the wheelhouse's locks whose packages name ``index``."""
    dest.mkdir()
    for lock in wh.glob("pylock.*.toml"):
        data = tomllib.loads(lock.read_text())
        for pkg in data["packages"]:
            pkg["index"] = index
        (dest / lock.name).write_text(tomli_w.dumps(data))
    return dest


def test_online_json_api(wheelhouse: Path, tmp_path: Path, json_api: tuple[str, list[str]]) -> None:
    index, seen = json_api
    wh = _relocate(wheelhouse, tmp_path / "wh", index)
    report = audit(wh, online=True)
    assert [(f.target, f.name, f.version, f.id, f.aliases, f.fixed) for f in report.findings] == [
        (WIN, "dep", "1.1", "GHSA-xxxx", ("CVE-2025-1",), ("1.2",))
    ]
    assert "/pypi/dep/1.0/json" in seen and "/pypi/app/2.0/json" in seen
    assert not report.unchecked
    # unreachable: reported as unchecked, not a crash
    down = _relocate(wheelhouse, tmp_path / "down", "http://127.0.0.1:9/simple")
    report = audit(down, online=True)
    assert not report.findings and any(u.startswith("dep==1.0:") for u in report.unchecked)


# --------------------------------------------------------------------------- PEP 792 / PEP 700


def test_status_is_parsed_from_json_and_html_pages() -> None:
    s = parse_json_status(
        {"meta": {"api-version": "1.4"}, "project-status": {"status": "archived", "reason": "done"}}
    )
    assert s is not None and (s.status, s.reason, s.notable) == ("archived", "done", True)
    assert parse_json_status({"meta": {"api-version": "1.1"}}) is None
    html = ('<html><head><meta name="pypi:repository-version" content="1.4">'
            '<meta name="pypi:project-status" content="quarantined">'
            '<meta name="pypi:project-status-reason" content="malware"></head><body></body></html>')  # fmt: skip
    s = parse_html_status(html)
    assert s is not None and (s.status, s.reason) == ("quarantined", "malware")
    assert parse_html_status("<html><body><a href='x-1.0.tar.gz'>x</a></body></html>") is None


class StatusServer(IndexServer):
    def project_json(self, project: str) -> dict[str, object]:
        page = super().project_json(project)
        if project == "dep":
            page["meta"] = {"api-version": "1.4"}
            page["project-status"] = {"status": "deprecated", "reason": "use dep2"}
        return page


def test_client_records_statuses(tmp_path: Path) -> None:
    with StatusServer() as srv:
        srv.add(make_wheel(tmp_path, "dep", "1.0"))
        srv.add(make_wheel(tmp_path, "app", "1.0"))
        with IndexClient([srv.url]) as client:
            assert client.versions_of("app") and client.versions_of("dep")
            statuses = client.project_statuses()
    assert list(statuses) == ["dep"] and statuses["dep"].status == "deprecated"


def test_statuses_skip_pages_cancelled_at_close(tmp_path: Path) -> None:
    """A page queued but never needed (a failed target's pin) is cancelled when the client
    closes; reading the statuses afterwards, as lock does, must not raise CancelledError."""
    with StatusServer() as srv:
        srv.add(make_wheel(tmp_path, "dep", "1.0"))
        client = IndexClient([srv.url], concurrency=1)
        gate = threading.Event()
        client.pool.submit(gate.wait)  # occupies the only worker
        queued = client.prefetch_project("dep")
        client.close()
        gate.set()
        assert queued.cancelled()
        assert client.project_statuses() == {}


def test_recorded_status_reaches_index_coverage_and_audit(
    wheelhouse: Path, tmp_path: Path, osv_dir: Path
) -> None:
    import shutil

    wh = tmp_path / "wh"
    shutil.copytree(wheelhouse, wh)
    lock = wh / f"pylock.{LINUX}.toml"
    data = tomllib.loads(lock.read_text())
    dep = next(p for p in data["packages"] if p["name"] == "dep")
    dep["tool"] = {"wheelport": {"project-status": {"status": "quarantined", "reason": "malware"}}}
    lock.write_text(tomli_w.dumps(data))
    assert run_wheelport("index", str(wh)).returncode == 0
    page = json.loads((wh / "simple" / "dep" / "index.json").read_text())
    assert page["meta"]["api-version"] == "1.4"
    assert page["project-status"] == {"status": "quarantined", "reason": "malware"}
    assert {f["upload-time"] for f in page["files"]} == {
        "2024-01-02T03:04:05Z"
    }  # PEP 700, from the locks
    assert page["versions"] == ["1.0", "1.1"] and all("size" in f for f in page["files"])
    html = (wh / "simple" / "dep" / "index.html").read_text()
    assert '<meta name="pypi:project-status" content="quarantined">' in html
    app = json.loads((wh / "simple" / "app" / "index.json").read_text())
    assert app["meta"]["api-version"] == "1.1" and "project-status" not in app
    assert "upload-time" not in app["files"][0]  # the lock gives none for it
    # the client reads back what the writer wrote
    assert parse_html_status(html) is not None

    statuses = lock_statuses(wh)
    assert statuses == {"dep": "quarantined: malware"}

    cov = SimpleNamespace(
        cells={"dep": {LINUX: ("downloaded", "")}, "app": {LINUX: ("downloaded", "")}}
    )
    console = Console(width=200, record=True)
    console.print(coverage_table(cov, [LINUX], statuses))
    assert "quarantined: malware" in console.export_text()

    # the audit shows it, and a quarantined project fails it even with no vulnerability
    r = run_wheelport("audit", "-w", str(wh), "--osv", str(osv_dir), "-t", WIN, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["project_statuses"] == []
    r = run_wheelport("audit", "-w", str(wh), "--osv", str(osv_dir), "--json")
    report = json.loads(r.stdout)
    assert r.returncode == 1
    assert report["project_statuses"] == [
        {
            "target": LINUX,
            "name": "dep",
            "version": "1.0",
            "status": "quarantined",
            "reason": "malware",
        }
    ]


def test_lock_records_the_status_the_index_serves(tmp_path: Path) -> None:
    """PEP 792 end to end: the index says ``dep`` is deprecated; ``lock`` for a target unlike the
    host writes it into the lock, and ``audit`` reports it without failing."""
    dists = tmp_path / "dists"
    with StatusServer() as srv:
        srv.add(make_wheel(dists, "dep", "1.0"))
        srv.add(make_wheel(dists, "app", "1.0", deps=["dep"]))
        out = tmp_path / "wh"
        proc = run_wheelport("lock", "app", "--index-url", srv.url, "-o", str(out),
                             "--tool", "none", "-t", WIN)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    data = tomllib.loads((out / f"pylock.{WIN}.toml").read_text())
    by_name = {p["name"]: p for p in data["packages"]}
    assert by_name["dep"]["tool"]["wheelport"]["project-status"]["status"] == "deprecated"
    assert "tool" not in by_name["app"]
    assert lock_statuses(out) == {"dep": "deprecated: use dep2"}
