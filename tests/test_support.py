"""The test support is real: generated dists install with real pip/uv from the local index."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import threading
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from support.dists import make_sdist, make_wheel, wheel_metadata
from support.server import HTML_TYPE, JSON_TYPE, TEXT_HTML, IndexServer, negotiate

VENV_BIN = Path(sys.executable).parent
UV = shutil.which("uv", path=str(VENV_BIN)) or shutil.which("uv")
ACCEPT_JSON = f"{JSON_TYPE}, {HTML_TYPE};q=0.1, text/html;q=0.01"


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers.items()), error.read()


def _fresh_venv(path: Path) -> Path:
    """A fresh venv without pip (fast); pip is driven from outside with ``--python``."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    return path / "bin" / "python"


def _run(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> str:
    result = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{cmd}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _pip_install(python: Path, index: str, reqs: list[str], env: dict[str, str]) -> str:
    return _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--isolated",
            "--python",
            str(python),
            "install",
            "--no-cache-dir",
            "--index-url",
            index,
            *reqs,
        ],
        env,
    )


def _version_of(python: Path, module: str, env: dict[str, str]) -> str:
    return _run([str(python), "-c", f"import {module}; print({module}.__version__)"], env).strip()


# -- dists ---------------------------------------------------------------------------------------


def test_make_wheel_is_valid_and_deterministic(tmp_path: Path) -> None:
    first = make_wheel(tmp_path / "a", "My.Pkg", "1.0.0", deps=["dep>=1"], requires_python=">=3.8")
    second = make_wheel(tmp_path / "b", "My.Pkg", "1.0.0", deps=["dep>=1"], requires_python=">=3.8")
    assert first.name == "my_pkg-1.0.0-py3-none-any.whl"
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as archive:
        names = archive.namelist()
        assert "my_pkg/__init__.py" in names
        record = list(
            csv.reader(io.StringIO(archive.read("my_pkg-1.0.0.dist-info/RECORD").decode()))
        )
        assert {row[0] for row in record} == set(names)
        for arcname, digest, size in record:
            if arcname.endswith("/RECORD"):
                assert digest == size == ""
                continue
            data = archive.read(arcname)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            assert digest == "sha256=" + expected.decode()
            assert int(size) == len(data)
        metadata = archive.read("my_pkg-1.0.0.dist-info/METADATA").decode()
        assert "Name: My.Pkg\n" in metadata
        assert "Requires-Python: >=3.8\n" in metadata
        assert "Requires-Dist: dep>=1\n" in metadata
        assert "Root-Is-Purelib: true" in archive.read("my_pkg-1.0.0.dist-info/WHEEL").decode()


def test_make_wheel_compressed_tags_and_extras(tmp_path: Path) -> None:
    tag = "cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64"
    wheel = make_wheel(
        tmp_path, "native", "2.0", tag=tag, extras={"fast": ["speedy>=1; os_name == 'posix'"]}
    )
    assert wheel.name == f"native-2.0-{tag}.whl"
    with zipfile.ZipFile(wheel) as archive:
        wheel_file = archive.read("native-2.0.dist-info/WHEEL").decode()
    assert "Root-Is-Purelib: false" in wheel_file
    assert "Tag: cp312-cp312-manylinux_2_17_x86_64" in wheel_file
    assert "Tag: cp312-cp312-manylinux2014_x86_64" in wheel_file
    metadata = wheel_metadata(wheel).decode()
    assert "Provides-Extra: fast" in metadata
    assert 'Requires-Dist: speedy>=1; (os_name == "posix") and extra == "fast"' in metadata


def test_make_sdist_dynamic_deps_not_in_pkg_info(tmp_path: Path) -> None:
    sdist = make_sdist(tmp_path, "Dyn-Pkg", "0.3", deps=["dep"], dynamic_deps=True)
    again = make_sdist(tmp_path / "again", "Dyn-Pkg", "0.3", deps=["dep"], dynamic_deps=True)
    assert sdist.name == "dyn_pkg-0.3.tar.gz"
    assert sdist.read_bytes() == again.read_bytes()
    with tarfile.open(sdist) as tar:
        extracted = tar.extractfile("dyn_pkg-0.3/PKG-INFO")
        assert extracted is not None
        pkg_info = extracted.read().decode()
        assert "dyn_pkg-0.3/pyproject.toml" in tar.getnames()
    assert "Metadata-Version: 2.2" in pkg_info
    assert "Dynamic: Requires-Dist" in pkg_info
    assert "Requires-Dist: dep" not in pkg_info


# -- server --------------------------------------------------------------------------------------


def test_negotiate_honours_q_values() -> None:
    assert negotiate(ACCEPT_JSON) == JSON_TYPE
    assert negotiate(f"{JSON_TYPE};q=0.1, text/html") == TEXT_HTML
    assert negotiate(f"{JSON_TYPE};q=0.1, {HTML_TYPE};q=0.5, text/html;q=0.2") == HTML_TYPE
    assert negotiate("application/vnd.pypi.simple.latest+json") == JSON_TYPE
    assert negotiate(None) == TEXT_HTML
    assert negotiate(ACCEPT_JSON, html_only=True) == HTML_TYPE
    assert negotiate("text/html", json_only=True) == JSON_TYPE


def test_index_pages_metadata_redirects_ranges(index_server: IndexServer, dists_dir: Path) -> None:
    wheel = make_wheel(dists_dir, "foo", "1.0", deps=["bar"], requires_python=">=3.8")
    sdist = make_sdist(dists_dir, "foo", "1.0")
    yanked = make_wheel(dists_dir, "foo", "2.0")
    index_server.add(wheel, upload_time="2024-01-01T00:00:00.000000Z")
    index_server.add(sdist)
    index_server.add(yanked, yanked="broken", metadata=False)

    status, headers, body = _get(index_server.url + "foo/", {"Accept": ACCEPT_JSON})
    assert status == 200 and headers["Content-Type"] == JSON_TYPE
    page = json.loads(body)
    assert page["meta"]["api-version"] == "1.1"
    assert page["name"] == "foo" and page["versions"] == ["1.0", "2.0"]
    by_name = {f["filename"]: f for f in page["files"]}
    entry = by_name[wheel.name]
    metadata = wheel_metadata(wheel)
    assert entry["hashes"]["sha256"] == hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert entry["core-metadata"] == {"sha256": hashlib.sha256(metadata).hexdigest()}
    assert entry["dist-info-metadata"] == entry["core-metadata"]
    assert entry["requires-python"] == ">=3.8" and entry["yanked"] is False
    assert entry["size"] == wheel.stat().st_size
    assert entry["upload-time"] == "2024-01-01T00:00:00.000000Z"
    assert entry["url"] == f"../../files/{wheel.name}"
    assert by_name[yanked.name]["yanked"] == "broken"
    assert by_name[yanked.name]["core-metadata"] is False
    assert by_name[sdist.name]["core-metadata"] is False

    # PEP 658: the metadata file is the wheel's METADATA, byte for byte.
    status, _, body = _get(f"{index_server.base}/files/{wheel.name}.metadata")
    assert status == 200 and body == metadata
    assert _get(f"{index_server.base}/files/{yanked.name}.metadata")[0] == 404

    status, headers, body = _get(index_server.url + "foo/", {"Accept": "text/html"})
    html_page = body.decode()
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert f'data-core-metadata="sha256={hashlib.sha256(metadata).hexdigest()}"' in html_page
    assert 'data-requires-python="&gt;=3.8"' in html_page
    assert 'data-yanked="broken"' in html_page

    status, headers, _ = _get(index_server.url + "Foo/")
    assert status == 301 and headers["Location"] == "/simple/foo/"
    assert _get(index_server.url + "nope/")[0] == 404
    root = json.loads(_get(index_server.url, {"Accept": ACCEPT_JSON})[2])
    assert root["projects"] == [{"name": "foo"}]

    data = wheel.read_bytes()
    status, headers, body = _get(f"{index_server.base}/files/{wheel.name}", {"Range": "bytes=-22"})
    assert status == 206 and body == data[-22:]
    assert headers["Content-Range"] == f"bytes {len(data) - 22}-{len(data) - 1}/{len(data)}"
    status, _, body = _get(f"{index_server.base}/files/{wheel.name}", {"Range": "bytes=0-9"})
    assert status == 206 and body == data[:10]
    assert index_server.count(f"/files/{wheel.name}") == 2


def test_index_absolute_urls_and_json_only(dists_dir: Path) -> None:
    wheel = make_wheel(dists_dir, "foo", "1.0")
    with IndexServer(absolute_urls=True, json_only=True) as server:
        server.add(wheel)
        status, headers, body = _get(server.url + "foo/", {"Accept": "text/html"})
        assert status == 200 and headers["Content-Type"] == JSON_TYPE
        assert json.loads(body)["files"][0]["url"] == f"{server.base}/files/{wheel.name}"


def test_fail_next_and_auth(dists_dir: Path) -> None:
    with IndexServer(auth=("user", "secret")) as server:
        server.add(make_wheel(dists_dir, "foo", "1.0"))
        assert _get(server.url)[0] == 401
        good = {"Authorization": "Basic " + base64.b64encode(b"user:secret").decode()}
        bad = {"Authorization": "Basic " + base64.b64encode(b"user:wrong").decode()}
        assert _get(server.url, bad)[0] == 401
        server.fail_next("/simple/foo/", 2, status=503)
        assert _get(server.url + "foo/", good)[0] == 503
        assert _get(server.url + "foo/", good)[0] == 503
        assert _get(server.url + "foo/", good)[0] == 200
        assert _get(server.url, good)[0] == 200
        assert server.count("/simple/foo/") == 3
        assert server.url_with_auth() == f"http://user:secret@127.0.0.1:{server.port}/simple/"


def test_delay_requests_are_served_concurrently(dists_dir: Path) -> None:
    with IndexServer(delay=0.4) as server:
        server.add(make_wheel(dists_dir, "foo", "1.0"))
        statuses: list[int] = []
        threads = [
            threading.Thread(target=lambda: statuses.append(_get(server.url + "foo/")[0]))
            for _ in range(4)
        ]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
    assert statuses == [200] * 4
    assert 0.4 <= elapsed < 1.2  # four 0.4 s requests in parallel, not 1.6 s in series


def test_make_wheel_extra_files_and_entry_points(tmp_path: Path) -> None:
    wheel = make_wheel(
        tmp_path,
        "tool",
        "1.0",
        files={
            "tool/cli.py": "def main():\n    print('hi')\n",
            "tool-1.0.dist-info/entry_points.txt": "[console_scripts]\ntool = tool.cli:main\n",
        },
    )
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        record = archive.read("tool-1.0.dist-info/RECORD").decode()
        init = archive.read("tool/__init__.py").decode()
    assert {"tool/cli.py", "tool/__init__.py", "tool-1.0.dist-info/entry_points.txt"} <= names
    assert "tool-1.0.dist-info/entry_points.txt,sha256=" in record
    assert init == '__version__ = "1.0"\n'


# -- real installers -------------------------------------------------------------------------------


@pytest.mark.parametrize("html_only", [False, True], ids=["json", "html"])
def test_pip_installs_with_dependency(
    tmp_path: Path, dists_dir: Path, clean_env: dict[str, str], html_only: bool
) -> None:
    with IndexServer(html_only=html_only) as server:
        server.add(make_wheel(dists_dir, "app-pkg", "1.0", deps=["lib-pkg>=2"]))
        server.add(make_wheel(dists_dir, "lib-pkg", "1.0"))
        server.add(make_wheel(dists_dir, "lib-pkg", "2.0"))
        python = _fresh_venv(tmp_path / "venv")
        _pip_install(python, server.url, ["app-pkg"], clean_env)
        assert _version_of(python, "app_pkg", clean_env) == "1.0"
        assert _version_of(python, "lib_pkg", clean_env) == "2.0"
        pages = [h.get("Accept", "") for m, p, h in server.requests if p == "/simple/app-pkg/"]
        assert pages and JSON_TYPE in pages[0]  # pip asked for JSON; html_only answered HTML
        # PEP 658: with metadata offered, pip reads .metadata instead of only the wheel.
        assert server.count("/files/app_pkg-1.0-py3-none-any.whl.metadata") == 1


def test_pip_skips_yanked_for_unpinned(
    tmp_path: Path, dists_dir: Path, clean_env: dict[str, str], index_server: IndexServer
) -> None:
    index_server.add(make_wheel(dists_dir, "foo", "1.0"))
    index_server.add(make_wheel(dists_dir, "foo", "2.0"), yanked="bad release")
    python = _fresh_venv(tmp_path / "venv")
    _pip_install(python, index_server.url, ["foo"], clean_env)
    assert _version_of(python, "foo", clean_env) == "1.0"
    _pip_install(python, index_server.url, ["foo==2.0"], clean_env)  # pinned: yanked allowed
    assert _version_of(python, "foo", clean_env) == "2.0"


def test_pip_builds_sdist_from_index_with_tinybackend(
    tmp_path: Path,
    dists_dir: Path,
    clean_env: dict[str, str],
    tinybackend_wheel: Path,
    index_server: IndexServer,
) -> None:
    """Only an sdist on the index: pip fetches tinybackend from the same index and builds it."""
    index_server.add(tinybackend_wheel)
    index_server.add(make_wheel(dists_dir, "helper", "1.5"))
    index_server.add(make_sdist(dists_dir, "src-only", "0.9", deps=["helper"], dynamic_deps=True))
    python = _fresh_venv(tmp_path / "venv")
    _pip_install(python, index_server.url, ["src-only"], clean_env)
    assert _version_of(python, "src_only", clean_env) == "0.9"
    assert _version_of(python, "helper", clean_env) == "1.5"  # dep known only to the backend
    assert index_server.count("/files/src_only-0.9.tar.gz") == 1


@pytest.mark.skipif(UV is None, reason="uv not installed")
@pytest.mark.parametrize("html_only", [False, True], ids=["json", "html"])
def test_uv_installs_with_dependency(
    tmp_path: Path, dists_dir: Path, clean_env: dict[str, str], html_only: bool
) -> None:
    assert UV is not None
    with IndexServer(html_only=html_only) as server:
        server.add(make_wheel(dists_dir, "app-pkg", "1.0", deps=["lib-pkg"]))
        server.add(make_wheel(dists_dir, "lib-pkg", "3.1"))
        python = _fresh_venv(tmp_path / "venv")
        _run(
            [
                UV,
                "pip",
                "install",
                "--no-config",
                "--no-cache",
                "--index-url",
                server.url,
                "--python",
                str(python),
                "app-pkg",
            ],
            clean_env,
        )
        assert _version_of(python, "lib_pkg", clean_env) == "3.1"
        assert server.count("/simple/lib-pkg/") >= 1


# -- tinybackend -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["pure", "dynamic", "c"])
def test_tinybackend_sdist_builds_installable_wheel(
    tmp_path: Path,
    dists_dir: Path,
    clean_env: dict[str, str],
    tinybackend_wheel: Path,
    index_server: IndexServer,
    kind: str,
) -> None:
    if kind == "c" and shutil.which("cc") is None:
        pytest.skip("no C compiler")
    index_server.add(tinybackend_wheel)
    index_server.add(make_wheel(dists_dir, "helper", "1.5"))
    sdist = make_sdist(
        dists_dir,
        "Built-Pkg",
        "0.2",
        deps=["helper>=1"],
        requires_python=">=3.8",
        dynamic_deps=kind == "dynamic",
        c_extension=kind == "c",
    )
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path / "src", filter="data")
    # Isolated build: build's pip gets tinybackend from the local index only.
    env = {**clean_env, "PIP_INDEX_URL": index_server.url, "PIP_NO_CACHE_DIR": "1"}
    out = tmp_path / "dist"
    _run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), "src/built_pkg-0.2"],
        env,
        cwd=tmp_path,
    )
    (wheel,) = out.glob("*.whl")
    if kind == "c":
        abi = f"cp{sys.version_info[0]}{sys.version_info[1]}"
        plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
        assert wheel.name == f"built_pkg-0.2-{abi}-{abi}-{plat}.whl"
    else:
        assert wheel.name == "built_pkg-0.2-py3-none-any.whl"
    metadata = wheel_metadata(wheel).decode()
    assert "Requires-Dist: helper>=1" in metadata
    assert "Requires-Python: >=3.8" in metadata
    assert index_server.count(f"/files/{tinybackend_wheel.name}") >= 1

    index_server.add(wheel)
    python = _fresh_venv(tmp_path / "venv")
    _pip_install(python, index_server.url, ["built-pkg", "--only-binary", ":all:"], clean_env)
    assert _version_of(python, "helper", clean_env) == "1.5"
    if kind == "c":
        code = "from built_pkg._speedup import add; print(add(2, 3))"
        assert _run([str(python), "-c", code], clean_env).strip() == "5"
    else:
        assert _version_of(python, "built_pkg", clean_env) == "0.2"


PY38 = sorted(Path("/root/.pyenv/versions").glob("3.8.*/bin/python"))


@pytest.mark.skipif(not PY38 or shutil.which("cc") is None, reason="needs CPython 3.8 and cc")
def test_tinybackend_runs_on_old_python_without_tomllib(
    tmp_path: Path, dists_dir: Path, tinybackend_wheel: Path, clean_env: dict[str, str]
) -> None:
    """tinybackend must work where tomllib is missing (3.8), e.g. inside a manylinux container."""
    python = PY38[-1]
    with zipfile.ZipFile(tinybackend_wheel) as archive:
        archive.extractall(tmp_path / "backend")
    sdist = make_sdist(dists_dir, "old-c", "1.0", deps=["helper"], c_extension=True)
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path / "src", filter="data")
    out = tmp_path / "out"
    out.mkdir()
    code = (
        f"import sys; sys.path.insert(0, {str(tmp_path / 'backend')!r}); import tinybackend; "
        f"assert tinybackend.get_requires_for_build_wheel() == []; "
        f"print(tinybackend.prepare_metadata_for_build_wheel({str(out)!r})); "
        f"print(tinybackend.build_wheel({str(out)!r}))"
    )
    dist_info, name = _run(
        [str(python), "-c", code], clean_env, cwd=tmp_path / "src/old_c-1.0"
    ).split()
    assert dist_info == "old_c-1.0.dist-info"
    assert "Requires-Dist: helper" in (out / dist_info / "METADATA").read_text()
    assert name.startswith("old_c-1.0-cp38-cp38-linux_")
    with zipfile.ZipFile(out / name) as archive:
        archive.extractall(tmp_path / "site")
        wheel_file = archive.read("old_c-1.0.dist-info/WHEEL").decode()
    assert "Root-Is-Purelib: false" in wheel_file
    check = "from old_c._speedup import add; print(add(2, 3))"
    result = _run([str(python), "-c", check], {**clean_env, "PYTHONPATH": str(tmp_path / "site")})
    assert result.strip() == "5"
