"""``publish``: a real pypiserver receives uploads, a real nginx serves the synced static tree,
and real pip/uv install from each with nothing else configured."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import scrubbed_env
from support.dists import make_wheel
from support.server import IndexServer
from wheelport.config import build_config
from wheelport.errors import ExportError
from wheelport.export.publish import (
    Artifact,
    NullPublishReporter,
    default_simple_url,
    parse_project_page,
    plan_uploads,
    publish_to_dir,
    publish_to_repository,
    resolve_credentials,
    upload_fields,
)
from wheelport.sync import sync

BIN = Path(sys.executable).parent
USER, PASSWORD = "ci-bot", "s3cret-Pa55"


class Recorder(NullPublishReporter):
    """Keeps every publish event as (event, file) in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def uploading(self, filename: str) -> None:
        self.events.append(("uploading", filename))

    def copying(self, rel: str) -> None:
        self.events.append(("copying", rel))

    def skipped(self, name: str, why: str) -> None:
        self.events.append(("skipped", name))

    def removed(self, rel: str) -> None:
        self.events.append(("removed", rel))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early: {log.read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"server did not listen on {port}: {log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def wheelhouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Synced for the host (so pip here can install it) and for a Windows target."""
    monkeypatch.setenv("WHEELPORT_CACHE_DIR", str(tmp_path / "cache"))
    dists = tmp_path / "dists"
    with IndexServer() as index:
        index.add(make_wheel(dists, "alpha", "1.0", deps=["beta>=2"], summary="Alpha, the first"))
        index.add(make_wheel(dists, "beta", "2.0", requires_python=">=3.8"))
        index.add(make_wheel(dists, "beta", "2.0", tag="cp312-cp312-win_amd64"))
        config = build_config(
            directory=tmp_path, requirements=["alpha"], index_urls=[index.url],
            targets=["host", "cp312-win_amd64"], output=tmp_path / "wh", tools=["none"],
        )  # fmt: skip
        sync(config)
    return tmp_path / "wh"


def _venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, env=scrubbed_env())
    return path / "bin" / "python"


def _pip_install(python: Path, index_url: str, *reqs: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-m", "pip", "install", "--isolated", "--no-cache-dir", "--index-url", index_url, *reqs],
        capture_output=True, text=True, env=scrubbed_env(), timeout=300,
    )  # fmt: skip


# ------------------------------------------------------------------------- pypiserver


@contextlib.contextmanager
def run_pypiserver(directory: Path, *extra: str) -> Iterator[tuple[str, Path]]:
    """pypiserver on a loopback port, uploads need USER/PASSWORD; stopped on exit."""
    exe = BIN / "pypi-server"
    if not exe.exists():
        pytest.skip("pypiserver is not installed (pip install pypiserver passlib)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # passlib imports crypt
        from passlib.apache import HtpasswdFile

    directory.mkdir()
    htpasswd = directory / "htpasswd"
    users = HtpasswdFile(str(htpasswd), new=True)
    users.set_password(USER, PASSWORD)
    users.save()
    packages = directory / "packages"
    packages.mkdir()
    port = _free_port()
    log = directory / "pypiserver.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(exe), "run", "--host", "127.0.0.1", "-p", str(port), "-P", str(htpasswd),
             "-a", "update", "--server", "wsgiref", *extra, str(packages)],
            stdout=out, stderr=subprocess.STDOUT, env=scrubbed_env(),
        )  # fmt: skip
    try:
        _wait_port(port, proc, log)
        yield f"http://127.0.0.1:{port}/", packages
    finally:
        _stop(proc)


@pytest.fixture
def pypiserver(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    with run_pypiserver(tmp_path / "pypiserver", "--disable-fallback") as server:
        yield server


def test_publish_to_pypiserver_then_pip_installs_and_republish_uploads_nothing(
    wheelhouse: Path, pypiserver: tuple[str, Path], tmp_path: Path
) -> None:
    url, packages = pypiserver
    env = {"WHEELPORT_PUBLISH_USERNAME": USER, "WHEELPORT_PUBLISH_PASSWORD": PASSWORD}
    first = publish_to_repository(wheelhouse, url, environ=env)
    expected = sorted(p.name for p in (wheelhouse / "wheels").glob("*.whl"))
    assert sorted(first.uploaded) == expected and first.skipped == []
    assert sorted(p.name for p in packages.iterdir()) == expected
    for name in expected:  # the server holds the very bytes
        assert (packages / name).read_bytes() == (wheelhouse / "wheels" / name).read_bytes()

    python = _venv(tmp_path / "venv")
    proc = _pip_install(python, f"{url}simple/", "alpha")
    assert proc.returncode == 0, proc.stderr
    out = subprocess.run([str(python), "-c", "import alpha, beta; print(alpha.__version__, beta.__version__)"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert out.stdout.split() == ["1.0", "2.0"]

    again = publish_to_repository(wheelhouse, url, environ=env)
    assert again.uploaded == [] and sorted(again.skipped) == expected


def test_publish_with_wrong_password_fails_without_echoing_it(
    wheelhouse: Path, pypiserver: tuple[str, Path]
) -> None:
    url, packages = pypiserver
    wrong = "Wr0ng-Secret-XYZ"
    with pytest.raises(ExportError) as info:
        publish_to_repository(wheelhouse, url, username=USER, password=wrong)
    assert "refused" in str(info.value)
    assert wrong not in str(info.value) and wrong not in repr(info.value.to_json())
    assert list(packages.iterdir()) == []


def test_a_fallback_redirect_is_not_the_mirrors_content(wheelhouse: Path, tmp_path: Path) -> None:
    """pypiserver's default fallback redirects unknown projects to another index: what that
    index has (here: a different alpha-1.0 wheel) must neither block nor skip the upload."""
    other = make_wheel(tmp_path / "elsewhere", "alpha", "1.0", summary="not ours")
    with IndexServer() as upstream:
        upstream.add(other)
        with run_pypiserver(tmp_path / "srv", "--fallback-url", upstream.url) as (url, packages):
            env = {"TWINE_USERNAME": USER, "TWINE_PASSWORD": PASSWORD}
            report = publish_to_repository(wheelhouse, url, environ=env)
    assert "alpha-1.0-py3-none-any.whl" in report.uploaded
    ours = (wheelhouse / "wheels" / "alpha-1.0-py3-none-any.whl").read_bytes()
    assert (packages / "alpha-1.0-py3-none-any.whl").read_bytes() == ours != other.read_bytes()


# ------------------------------------------------------------------------- nginx


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    exe = shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None
    )
    if exe is None:
        pytest.skip("nginx is not installed (apt-get install -y nginx)")
    root = tmp_path / "mirror"
    root.mkdir()
    prefix = tmp_path / "nginx"
    (prefix / "logs").mkdir(parents=True)
    port = _free_port()
    user = "user root;" if os.geteuid() == 0 else ""
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""{user}
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log;
events {{ worker_connections 64; }}
http {{
    types {{ text/html html; application/json json; application/octet-stream whl gz; }}
    default_type application/octet-stream;
    access_log {prefix}/logs/access.log;
    client_body_temp_path {prefix}/tmp;
    proxy_temp_path {prefix}/tmp;
    fastcgi_temp_path {prefix}/tmp;
    uwsgi_temp_path {prefix}/tmp;
    scgi_temp_path {prefix}/tmp;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        index index.html;
    }}
}}
"""
    )
    log = prefix / "logs" / "stderr.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [exe, "-p", str(prefix), "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        _wait_port(port, proc, log)
        yield f"http://127.0.0.1:{port}", root
    finally:
        _stop(proc)


def test_nginx_serves_the_synced_tree_to_pip_and_uv(
    wheelhouse: Path, nginx: tuple[str, Path], tmp_path: Path
) -> None:
    base, mirror = nginx
    recorder = Recorder()
    first = publish_to_dir(wheelhouse, mirror, reporter=recorder)
    assert first.uploaded and first.pages
    copied = [rel for event, rel in recorder.events if event == "copying"]
    last_artifact = max(i for i, rel in enumerate(copied) if not rel.startswith("simple/"))
    first_page = min(i for i, rel in enumerate(copied) if rel.startswith("simple/"))
    assert last_artifact < first_page  # pages after every file they link to
    assert copied[-1].startswith("simple/index.")  # the project list is last

    python = _venv(tmp_path / "pipvenv")
    proc = _pip_install(python, f"{base}/simple/", "alpha")
    assert proc.returncode == 0, proc.stderr
    assert "beta-2.0-py3-none-any.whl" in proc.stdout

    uv = shutil.which("uv", path=str(BIN)) or shutil.which("uv")
    if uv is None:
        pytest.skip("uv not installed")
    uv_venv = tmp_path / "uvvenv"
    env = scrubbed_env()
    env["UV_CACHE_DIR"] = str(tmp_path / "uvcache")
    subprocess.run([uv, "venv", "--no-config", "--python", sys.executable, str(uv_venv)],
                   check=True, capture_output=True, env=env)  # fmt: skip
    proc = subprocess.run(
        [uv, "pip", "install", "--no-config", "--python", str(uv_venv / "bin" / "python"),
         "--index-url", f"{base}/simple/", "alpha"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = subprocess.run([str(uv_venv / "bin" / "python"), "-c", "import alpha, beta; print(beta.__version__)"],
                         capture_output=True, text=True)  # fmt: skip
    assert out.stdout.strip() == "2.0", out.stderr

    # nothing changed: nothing copied; a changed page is rewritten, extra files stay
    (mirror / "wheels" / "stray-1.0-py3-none-any.whl").write_bytes(b"stray")
    again = publish_to_dir(wheelhouse, mirror)
    assert again.uploaded == [] and again.pages == []
    (mirror / "simple" / "alpha" / "index.html").write_text("stale")
    third = publish_to_dir(wheelhouse, mirror, delete=True)
    assert third.pages == ["simple/alpha/index.html"]
    assert third.removed == ["wheels/stray-1.0-py3-none-any.whl"]


# ------------------------------------------------------------------------- decisions


def test_credentials_precedence(tmp_path: Path) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine mirror.example login nuser password npass\n")
    netrc.chmod(0o600)
    url = "https://mirror.example/"
    got = resolve_credentials(url, environ={}, netrc_path=netrc)
    assert got is not None and (got.username, got.password) == ("nuser", "npass")
    env = {"TWINE_USERNAME": "tuser", "TWINE_PASSWORD": "tpass"}
    got = resolve_credentials(url, environ=env, netrc_path=netrc)
    assert got is not None and (got.username, got.password) == ("tuser", "tpass")
    env |= {"WHEELPORT_PUBLISH_USERNAME": "wuser", "WHEELPORT_PUBLISH_PASSWORD": "wpass"}
    got = resolve_credentials(url, environ=env, netrc_path=netrc)
    assert got is not None and (got.username, got.password) == ("wuser", "wpass")
    got = resolve_credentials(url, username="flag", password="fpass", environ=env, netrc_path=netrc)
    assert got is not None and (got.username, got.password) == ("flag", "fpass")
    assert "fpass" not in repr(got)
    assert resolve_credentials("https://other.example/", environ={}, netrc_path=netrc) is None
    got = resolve_credentials(
        url, environ={"TWINE_PASSWORD": "pypi-token"}, netrc_path=tmp_path / "none"
    )
    assert got is not None and got.username == "__token__"


def test_simple_url_of_known_servers() -> None:
    assert default_simple_url("http://127.0.0.1:8080/") == "http://127.0.0.1:8080/simple/"
    assert default_simple_url("https://upload.pypi.org/legacy/") == "https://pypi.org/simple/"
    assert default_simple_url("https://test.pypi.org/legacy/") == "https://test.pypi.org/simple/"
    assert (
        default_simple_url("http://devpi:3141/root/dev/") == "http://devpi:3141/root/dev/+simple/"
    )
    assert default_simple_url("http://u:p@host/") == "http://host/simple/"


def test_server_pages_and_upload_plan() -> None:
    sha = "a" * 64
    html = f'<a href="../../packages/foo-1.0-py3-none-any.whl#sha256={sha}">x</a><a href="/p/foo-1.0.tar.gz">y</a>'
    page = "http://mirror/simple/foo/"
    listed = parse_project_page(html.encode(), "text/html", project="foo", page_url=page)
    assert listed == {"foo-1.0-py3-none-any.whl": sha, "foo-1.0.tar.gz": None}
    js = (
        b'{"files": [{"filename": "foo-1.0-py3-none-any.whl", "url": "foo-1.0-py3-none-any.whl", "hashes": {"sha256": "'
        + sha.encode()
        + b'"}}]}'
    )
    assert parse_project_page(
        js, "application/vnd.pypi.simple.v1+json", project="foo", page_url=page
    ) == {"foo-1.0-py3-none-any.whl": sha}
    wheel = Artifact("wheels/foo-1.0-py3-none-any.whl", "foo", "1.0", sha, 10)
    other = Artifact("wheels/foo-1.0-cp312-cp312-win_amd64.whl", "foo", "1.0", "b" * 64, 10)
    todo, skip = plan_uploads([wheel, other], {"foo": listed})
    assert todo == [other] and skip == [wheel]
    changed = Artifact(wheel.rel, "foo", "1.0", "c" * 64, 10)
    with pytest.raises(ExportError, match=re.escape("already has foo-1.0-py3-none-any.whl")):
        plan_uploads([changed], {"foo": listed})


def test_upload_fields_follow_twine(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "Foo.Bar", "1.0", deps=["baz>=1", "qux; extra == 'x'"],
                       requires_python=">=3.9", tag="cp312-cp312-win_amd64", summary="S")  # fmt: skip
    import zipfile

    with zipfile.ZipFile(wheel) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith("METADATA")))
    art = Artifact(f"wheels/{wheel.name}", "foo-bar", "1.0", "d" * 64, wheel.stat().st_size)
    fields = upload_fields(art, meta, md5="m" * 32, blake2_256="b" * 64)
    d: dict[str, list[str]] = {}
    for k, v in fields:
        d.setdefault(k, []).append(v)
    assert d[":action"] == ["file_upload"] and d["protocol_version"] == ["1"]
    assert d["filetype"] == ["bdist_wheel"] and d["pyversion"] == ["cp312"]
    assert d["name"] == ["Foo.Bar"] and d["version"] == ["1.0"] and d["summary"] == ["S"]
    assert d["requires_dist"] == ["baz>=1", "qux; extra == 'x'"]
    assert d["requires_python"] == [">=3.9"] and d["sha256_digest"] == ["d" * 64]
    sdist = Artifact("sdists/foo_bar-1.0.tar.gz", "foo-bar", "1.0", "e" * 64, 1)
    assert ("pyversion", "source") in upload_fields(
        sdist, b"Name: foo-bar\nVersion: 1.0\n", md5="", blake2_256=""
    )


def test_cli_publish_to_dir_and_usage_errors(
    wheelhouse: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from wheelport.cli import cli, main
    from wheelport.export.commands import COMMANDS

    for command in COMMANDS:
        if command.name not in cli.commands:
            cli.add_command(command)
    mirror = tmp_path / "m"
    main(["publish", "-w", str(wheelhouse), "--to-dir", str(mirror), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert "simple/index.html" in data["pages"] and (mirror / "simple" / "index.html").is_file()
    for bad in ([], ["--to-dir", str(mirror), "--repository-url", "http://127.0.0.1:9/"]):
        with pytest.raises(SystemExit) as info:
            main(["publish", "-w", str(wheelhouse), *bad])
        assert info.value.code == 2
    assert "exactly one of" in capsys.readouterr().err


# ------------------------------------------------------------------------- progress


def _add_export_commands() -> None:
    from wheelport.cli import cli
    from wheelport.export.commands import COMMANDS

    for command in COMMANDS:
        if command.name not in cli.commands:
            cli.add_command(command)


def test_publish_to_dir_reports_each_copy_skip_and_removal(
    wheelhouse: Path, tmp_path: Path
) -> None:
    mirror = tmp_path / "mirror"
    first, again_events = Recorder(), Recorder()
    report = publish_to_dir(wheelhouse, mirror, reporter=first)
    copied = [rel for event, rel in first.events if event == "copying"]
    assert copied and sorted(copied) == sorted(report.uploaded + report.pages)
    assert [e for e, _ in first.events] == ["copying"] * len(copied)
    (mirror / "wheels" / "stray-1.0-py3-none-any.whl").write_bytes(b"stray")
    again = publish_to_dir(wheelhouse, mirror, delete=True, reporter=again_events)
    skipped = [rel for event, rel in again_events.events if event == "skipped"]
    assert skipped == again.skipped == copied
    assert [e for e in again_events.events if e[0] != "skipped"] == [
        ("removed", "wheels/stray-1.0-py3-none-any.whl")
    ]


def test_cli_publish_to_dir_prints_copies_only_with_verbose(
    wheelhouse: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from wheelport.cli import main

    _add_export_commands()
    main(["publish", "-w", str(wheelhouse), "--to-dir", str(tmp_path / "quiet")])
    assert "copying" not in capsys.readouterr().err
    main(["publish", "-w", str(wheelhouse), "--to-dir", str(tmp_path / "loud"), "-v"])
    assert "copying wheels/alpha-1.0-py3-none-any.whl" in capsys.readouterr().err


def test_publish_to_repository_reports_uploads_then_skips_and_the_cli_prints_uploads(
    wheelhouse: Path,
    pypiserver: tuple[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from wheelport.cli import main

    url, _ = pypiserver
    env = {"WHEELPORT_PUBLISH_USERNAME": USER, "WHEELPORT_PUBLISH_PASSWORD": PASSWORD}
    expected = sorted(p.name for p in (wheelhouse / "wheels").glob("*.whl"))
    first, again = Recorder(), Recorder()
    publish_to_repository(wheelhouse, url, environ=env, reporter=first)
    assert sorted(first.events) == [("uploading", name) for name in expected]
    publish_to_repository(wheelhouse, url, environ=env, reporter=again)
    assert sorted(again.events) == [("skipped", name) for name in expected]

    with run_pypiserver(tmp_path / "second", "--disable-fallback") as (url2, _):
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        _add_export_commands()
        main(["publish", "-w", str(wheelhouse), "--repository-url", url2])
    err = capsys.readouterr().err
    assert all(f"uploading {name}" in err for name in expected), err
