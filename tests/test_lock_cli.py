"""``wheelport lock`` as users run it: a subprocess against a real local index.

Checks the written PEP 751 files, ``--check``, ``--json``, and that every bad input gives one
clear line on stderr, the right exit code and no lock at all.
"""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from packaging.pylock import Pylock

from support import one_error_line
from support.dists import make_sdist, make_wheel
from support.server import IndexServer

LINUX312 = "cp312-manylinux_2_28_x86_64"
WIN312 = "cp312-win_amd64"
LINUX310 = "cp310-manylinux_2_28_x86_64"
UPLOAD = "2024-05-06T07:08:09Z"
PIP_WHEELS = sorted(
    Path("/root/.pyenv/versions/3.11.7/lib/python3.11/ensurepip/_bundled").glob("pip-*.whl")
)


def run(
    tmp_path: Path, env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wheelport", "lock", *args],
        capture_output=True,
        text=True,
        env={**env, "WHEELPORT_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "200"},
        cwd=tmp_path,
        timeout=timeout,
    )


def read(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = tomllib.loads(path.read_text())
    Pylock.from_dict(data)
    return data


@pytest.fixture
def srv(index_server: IndexServer, dists_dir: Path) -> IndexServer:
    index_server.add(make_wheel(dists_dir, "app", "1.0", deps=["lib>=1", 'winonly; sys_platform == "win32"']),
                     upload_time=UPLOAD)  # fmt: skip
    index_server.add(make_wheel(dists_dir, "lib", "1.0"))
    index_server.add(make_sdist(dists_dir, "lib", "2.0"))
    index_server.add(make_wheel(dists_dir, "winonly", "1.0", tag="py3-none-win_amd64"))
    return index_server


def test_lock_writes_valid_pylock_per_target(
    tmp_path: Path, srv: IndexServer, clean_env: dict[str, str]
) -> None:
    out = tmp_path / "wh"
    proc = run(tmp_path, clean_env, "app", "-t", LINUX312, "-t", WIN312, "--index-url", srv.url,
               "-o", str(out), "--tool", "none")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    linux = read(out / f"pylock.{LINUX312}.toml")
    win = read(out / f"pylock.{WIN312}.toml")
    assert linux["lock-version"] == "1.0"
    assert linux["created-by"] == "wheelport"
    assert linux["requires-python"] == "==3.12.*"
    assert linux["tool"]["wheelport"]["target"] == LINUX312
    env = linux["environments"][0]
    assert 'sys_platform == "linux"' in env and 'python_version == "3.12"' in env
    assert 'sys_platform == "win32"' in win["environments"][0]
    pk = {p["name"]: p for p in linux["packages"]}
    assert {n: p["version"] for n, p in pk.items()} == {"app": "1.0", "lib": "2.0"}
    (wheel,) = pk["app"]["wheels"]
    info = srv.file("app-1.0-py3-none-any.whl")
    assert info is not None
    assert wheel["name"] == "app-1.0-py3-none-any.whl"
    assert wheel["url"] == srv.file_url("app-1.0-py3-none-any.whl")
    assert wheel["path"] == "wheels/app-1.0-py3-none-any.whl"
    assert wheel["hashes"] == {"sha256": info.sha256}
    assert wheel["size"] == info.size
    assert wheel["upload-time"].isoformat() == "2024-05-06T07:08:09+00:00"
    assert "upload-time" not in pk["lib"]["sdist"]  # the index gave none
    assert pk["lib"]["sdist"]["path"] == "sdists/lib-2.0.tar.gz"
    assert pk["app"]["index"] == srv.url.rstrip("/")
    wpk = {p["name"]: p for p in win["packages"]}
    assert set(wpk) == {"app", "lib", "winonly"}
    assert wpk["winonly"]["marker"] == 'sys_platform == "win32"'
    assert "tools" not in linux["tool"]["wheelport"]


@pytest.mark.skipif(not PIP_WHEELS, reason="no bundled pip wheel")
def test_lock_carries_pip_per_target(
    tmp_path: Path, srv: IndexServer, clean_env: dict[str, str]
) -> None:
    srv.add(PIP_WHEELS[-1])
    out = tmp_path / "wh"
    proc = run(tmp_path, clean_env, "app", "-t", WIN312, "--index-url", srv.url, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    lock = read(out / f"pylock.{WIN312}.toml")
    (tool,) = lock["tool"]["wheelport"]["tools"]
    assert tool["name"] == "pip"
    assert tool["path"] == f"wheels/{PIP_WHEELS[-1].name}"
    assert tool["sha256"] == srv.file(PIP_WHEELS[-1].name).sha256  # type: ignore[union-attr]
    assert "pip" not in {p["name"] for p in lock["packages"]}


def test_check_current_stale_missing(
    tmp_path: Path, srv: IndexServer, clean_env: dict[str, str]
) -> None:
    out = tmp_path / "wh"
    base = ["--index-url", srv.url, "-o", str(out), "--tool", "none", "-t", WIN312]
    missing = run(tmp_path, clean_env, "app", *base, "--check")
    assert missing.returncode == 1
    assert not out.exists()
    assert run(tmp_path, clean_env, "app", *base).returncode == 0
    before = (out / f"pylock.{WIN312}.toml").read_bytes()
    current = run(tmp_path, clean_env, "app", *base, "--check", "--json")
    assert current.returncode == 0, current.stderr
    assert json.loads(current.stdout) == {"stale": {}, "current": [WIN312]}
    stale = run(tmp_path, clean_env, "app", "lib<2", *base, "--check", "--json")
    assert stale.returncode == 1
    assert json.loads(stale.stdout)["stale"] == {WIN312: "inputs changed"}
    other_target = run(tmp_path, clean_env, "app", *base, "-t", LINUX310, "--check")
    assert other_target.returncode == 1  # the second target has no lock yet
    assert (out / f"pylock.{WIN312}.toml").read_bytes() == before  # --check writes nothing
    assert not (out / f"pylock.{LINUX310}.toml").exists()


def test_json_output(tmp_path: Path, srv: IndexServer, clean_env: dict[str, str]) -> None:
    out = tmp_path / "wh"
    proc = run(tmp_path, clean_env, "app", "-t", WIN312, "-t", LINUX312, "--index-url", srv.url,
               "-o", str(out), "--tool", "none", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert sorted(Path(p).name for p in data["locks"]) == sorted(
        [f"pylock.{WIN312}.toml", f"pylock.{LINUX312}.toml"]
    )
    assert data["targets"][WIN312]["winonly"]["version"] == "1.0"
    assert "winonly" not in data["targets"][LINUX312]
    assert data["targets"][LINUX312]["lib"]["kind"] == "sdist"


def test_a_command_that_prints_nothing_never_loads_rich(
    tmp_path: Path, srv: IndexServer, clean_env: dict[str, str]
) -> None:
    """rich's consoles are made when a run first prints: a quiet lock of a Windows target
    (over the network, whose pages and metadata are read over ``http.client``: httpx, whose
    command-line client would load rich, is not even imported) and ``plan`` over its lock,
    quiet or ``--json``, never load rich; the same ``plan`` not quiet loads it and prints the
    sdist build the lock leaves."""
    out = tmp_path / "wh"

    def loaded_by(proc: subprocess.CompletedProcess[str]) -> set[str]:
        assert proc.returncode == 0, proc.stderr
        return {
            line.rsplit("|", 1)[1].strip()
            for line in proc.stderr.splitlines()
            if line.startswith("import time:") and "|" in line
        }

    proc = run(tmp_path, {**clean_env, "PYTHONPROFILEIMPORTTIME": "1"}, "app", "-t", WIN312,
               "--index-url", srv.url, "-o", str(out), "--tool", "none", "-q")  # fmt: skip
    loaded = loaded_by(proc)
    assert "wheelport.resolve" in loaded
    assert not {m for m in loaded if m.split(".")[0] in ("httpx", "rich", "pygments")}

    def plan(*extra: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "wheelport", "plan", "-w", str(out), *extra],
            capture_output=True, text=True, cwd=tmp_path, timeout=120,
            env={**clean_env, "WHEELPORT_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "200"},
        )  # fmt: skip
        return proc, loaded_by(proc)

    for quiet in ("-q", "--json"):
        _, loaded = plan(quiet)
        assert "wheelport.lock" in loaded  # the import log was read
        assert not {m for m in loaded if m.split(".")[0] == "rich"}, quiet
    told, loaded = plan()
    assert "rich.console" in loaded
    assert "lib" in told.stderr


# -- bad input: one line, right exit code, no lock ----------------------------------------------


def assert_no_lock(out: Path) -> None:
    assert not out.exists() or not list(out.glob("pylock.*.toml"))


def test_malformed_requirement_in_file(
    tmp_path: Path, srv: IndexServer, clean_env: dict[str, str]
) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text("# deps\napp\nlib >= = 2\n")
    proc = run(tmp_path, clean_env, "-r", str(req), "--index-url", srv.url, "-o", str(tmp_path / "wh"),
               "--tool", "none", "-t", WIN312)  # fmt: skip
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "requirements.txt:3" in line
    assert_no_lock(tmp_path / "wh")
    assert srv.requests == []  # nothing asked of the index


def test_missing_requirements_file(
    tmp_path: Path, srv: IndexServer, clean_env: dict[str, str]
) -> None:
    proc = run(tmp_path, clean_env, "-r", "nope.txt", "--index-url", srv.url, "-o", str(tmp_path / "wh"),
               "-t", WIN312)  # fmt: skip
    assert proc.returncode == 2
    assert "nope.txt" in one_error_line(proc)
    assert not (tmp_path / "wh").exists()


def test_unknown_project(tmp_path: Path, srv: IndexServer, clean_env: dict[str, str]) -> None:
    proc = run(tmp_path, clean_env, "app", "no-such-thing", "--index-url", srv.url, "-o", str(tmp_path / "wh"),
               "--tool", "none", "-t", WIN312)  # fmt: skip
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert "no-such-thing" in line
    assert f"127.0.0.1:{srv.port}" in line
    assert not (tmp_path / "wh").exists()


def test_no_version_satisfies(tmp_path: Path, srv: IndexServer, clean_env: dict[str, str]) -> None:
    proc = run(tmp_path, clean_env, "lib>=3", "--index-url", srv.url, "-o", str(tmp_path / "wh"),
               "--tool", "none", "-t", WIN312)  # fmt: skip
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert "lib>=3" in line
    assert "1.0" in line and "2.0" in line  # shows what exists
    assert not (tmp_path / "wh").exists()


def test_conflict_shows_who_wants_what(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path, clean_env: dict[str, str]
) -> None:
    index_server.add(make_wheel(dists_dir, "a", "1.0", deps=["c<2"]))
    index_server.add(make_wheel(dists_dir, "b", "1.0", deps=["c>=2"]))
    index_server.add(make_wheel(dists_dir, "c", "1.0"))
    index_server.add(make_wheel(dists_dir, "c", "2.0"))
    proc = run(tmp_path, clean_env, "a", "b", "--index-url", index_server.url, "-o", str(tmp_path / "wh"),
               "--tool", "none", "-t", WIN312)  # fmt: skip
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert "a 1.0 requires c<2" in line
    assert "b 1.0 requires c>=2" in line
    assert WIN312 in line
    assert not (tmp_path / "wh").exists()


def test_unreachable_index(tmp_path: Path, clean_env: dict[str, str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = run(tmp_path, clean_env, "app", "--index-url", f"http://127.0.0.1:{port}/simple/",
               "-o", str(tmp_path / "wh"), "--tool", "none", "-t", WIN312)  # fmt: skip
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert f"127.0.0.1:{port}" in line
    assert not (tmp_path / "wh").exists()


def test_requires_python_excludes_target(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path, clean_env: dict[str, str]
) -> None:
    index_server.add(make_wheel(dists_dir, "modern", "1.0", requires_python=">=3.12"))
    index_server.add(make_wheel(dists_dir, "modern", "2.0", requires_python=">=3.13"))
    proc = run(tmp_path, clean_env, "modern", "--index-url", index_server.url, "-o", str(tmp_path / "wh"),
               "--tool", "none", "-t", LINUX312, "-t", LINUX310)  # fmt: skip
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert LINUX310 in line and "modern" in line
    # one target failing means no lock at all, not even for the target that resolved
    assert not (tmp_path / "wh").exists()


def test_unknown_target_form(tmp_path: Path, srv: IndexServer, clean_env: dict[str, str]) -> None:
    proc = run(tmp_path, clean_env, "app", "--index-url", srv.url, "-o", str(tmp_path / "wh"),
               "-t", WIN312, "-t", "cp312-amiga_m68k")  # fmt: skip
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "cp312-amiga_m68k" in line and "accepted forms" in line
    assert not (tmp_path / "wh").exists()
    assert srv.requests == []


def test_one_failing_target_writes_no_lock_even_over_old_ones(
    tmp_path: Path, srv: IndexServer, dists_dir: Path, clean_env: dict[str, str]
) -> None:
    out = tmp_path / "wh"
    common = [
        "--index-url",
        srv.url,
        "-o",
        str(out),
        "--tool",
        "none",
        "-t",
        LINUX312,
        "-t",
        WIN312,
    ]
    assert run(tmp_path, clean_env, "app", *common).returncode == 0
    before = {p.name: p.read_bytes() for p in out.glob("pylock.*.toml")}
    assert len(before) == 2
    # a project with a Linux-only wheel: resolves for Linux, fails for Windows
    srv.add(make_wheel(dists_dir, "linuxonly", "1.0", tag="py3-none-manylinux_2_17_x86_64"))
    proc = run(tmp_path, clean_env, "app", "linuxonly", *common)
    assert proc.returncode == 1
    assert WIN312 in one_error_line(proc)
    assert {p.name: p.read_bytes() for p in out.glob("pylock.*.toml")} == before


def test_no_traceback_with_broken_config(
    tmp_path: Path, srv: IndexServer, clean_env: dict[str, str]
) -> None:
    (tmp_path / "wheelport.toml").write_text("targets = [\n")
    proc = run(tmp_path, clean_env, "app", "--index-url", srv.url, "-o", str(tmp_path / "wh"))
    assert proc.returncode == 2
    assert "wheelport.toml" in one_error_line(proc)


def test_json_error_on_stdout(tmp_path: Path, srv: IndexServer, clean_env: dict[str, str]) -> None:
    proc = run(tmp_path, clean_env, "no-such-thing", "--index-url", srv.url, "-o",
               str(tmp_path / "wh"), "--tool", "none", "-t", WIN312, "--json")  # fmt: skip
    assert proc.returncode == 1
    data = json.loads(proc.stdout)
    assert data["error"] == "ResolutionError"
    assert data["exit_code"] == 1
    assert data["package"] == "no-such-thing"


def test_output_is_a_file(tmp_path: Path, srv: IndexServer, clean_env: dict[str, str]) -> None:
    target = tmp_path / "afile"
    target.write_text("not a directory")
    proc = run(tmp_path, clean_env, "app", "--index-url", srv.url, "-o", str(target),
               "--tool", "none", "-t", WIN312)  # fmt: skip
    line = one_error_line(proc)
    assert "internal error" not in line
    assert str(target) in line
    assert proc.returncode == 2


def test_failed_metadata_build_names_the_sdist(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path, clean_env: dict[str, str]
) -> None:
    # dynamic deps need the backend, which this index does not have
    index_server.add(make_sdist(dists_dir, "dyn", "1.0", deps=["lib"], dynamic_deps=True))
    proc = run(tmp_path, clean_env, "dyn", "--index-url", index_server.url, "-o",
               str(tmp_path / "wh"), "--tool", "none", "-t", WIN312)  # fmt: skip
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert not (tmp_path / "wh").exists()
    assert "dyn-1.0.tar.gz" in line
    assert "tinybackend" in line


def test_only_binary_failure_says_why(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path, clean_env: dict[str, str]
) -> None:
    index_server.add(make_sdist(dists_dir, "sd", "1.0"))
    proc = run(tmp_path, clean_env, "sd", "--only-binary", ":all:", "--index-url", index_server.url,
               "-o", str(tmp_path / "wh"), "--tool", "none", "-t", WIN312)  # fmt: skip
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert "sd" in line and "have only an sdist, which --only-binary excludes" in line


def test_missing_installer_tool_says_so(
    tmp_path: Path, srv: IndexServer, clean_env: dict[str, str]
) -> None:
    proc = run(tmp_path, clean_env, "app", "--index-url", srv.url, "-o", str(tmp_path / "wh"),
               "-t", WIN312)  # fmt: skip
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert "'pip'" in line
    assert not (tmp_path / "wh").exists()
    assert "--tool" in line


def test_a_lock_is_turned_into_pep751_fields_as_packaging_does() -> None:
    """``lock_dict`` (what the lock writer uses: packaging's ``to_dict`` deep-copies every value)
    gives exactly ``Pylock.to_dict()``'s answer, for every kind of field a lock holds."""
    import datetime as dt

    from packaging.markers import Marker
    from packaging.pylock import Package, PackageSdist, PackageWheel, Pylock
    from packaging.specifiers import SpecifierSet
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    from wheelport.lock import lock_dict

    when = dt.datetime(2026, 11, 30, 9, 30, 1, 500, tzinfo=dt.timezone.utc)
    lock = Pylock(
        lock_version=Version("1.0"),
        environments=[Marker('sys_platform == "win32"'), Marker('python_version == "3.9"')],
        requires_python=SpecifierSet("==3.9.*"),
        created_by="wheelport",
        packages=[
            Package(
                name=canonicalize_name("Foo_Bar"),
                version=Version("1.0.post2"),
                marker=Marker('platform_machine == "AMD64"'),
                requires_python=SpecifierSet(">=3.8,<4"),
                dependencies=[{"name": "dep", "extras": ["x"]}],
                index="https://example.org/simple",
                sdist=PackageSdist(
                    name="foo_bar-1.0.post2.tar.gz",
                    upload_time=when,
                    url="https://example.org/f.tar.gz",
                    path=None,
                    size=10,
                    hashes={"sha256": "a" * 64},
                ),
                wheels=[
                    PackageWheel(
                        name="foo_bar-1.0.post2-py3-none-any.whl",
                        upload_time=None,
                        url=None,
                        path="wheels/f.whl",
                        size=5,
                        hashes={"sha256": "b" * 64},
                    )
                ],
                tool={"wheelport": {"built-by": ["native"], "nested": {"n": 1}}},
            ),
            Package(
                name=canonicalize_name("bare"), version=None, directory=None, archive=None, vcs=None
            ),
        ],
        tool={"wheelport": {"target": "cp39-win_amd64", "inputs": {"digest": "x"}}},
    )
    assert lock_dict(lock) == lock.to_dict()


def test_a_written_lock_is_remembered_as_its_text_reads_back() -> None:
    """The lock a write remembers (sync reads it back without parsing the file) is the one its
    text gives: a ``None`` in a plain table (a tool's, a Windows target's lock) is not written,
    so it is not in the remembered lock either; every other value is."""
    import tomllib
    from packaging.markers import Marker
    from packaging.pylock import Package, PackageWheel, Pylock
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    from wheelport import lock as lock_mod

    lock = Pylock(
        lock_version=Version("1.0"),
        environments=[Marker('sys_platform == "win32"')],
        created_by="wheelport",
        packages=[
            Package(name=canonicalize_name("w"), version=Version("1.0"),
                    wheels=[PackageWheel(name="w-1.0-cp312-cp312-win_amd64.whl", url=None,
                                         path="wheels/w-1.0-cp312-cp312-win_amd64.whl", size=3,
                                         hashes={"sha256": "e" * 64})],
                    tool={"wheelport": {"built-by": None, "kept": [1, 2]}}),
        ],
        tool={"wheelport": {"target": "cp312-win_amd64", "exclude-newer": None}},
    )  # fmt: skip
    text, remembered = lock_mod._dumps(lock)
    assert remembered == Pylock.from_dict(tomllib.loads(text))
    assert remembered.tool == {"wheelport": {"target": "cp312-win_amd64"}}
    assert remembered.packages[0].tool == {"wheelport": {"kept": [1, 2]}}


def _drop_none(value: object) -> object:
    """A lock's dict as TOML holds it: no ``None`` value in any table (the writer's oracle)."""
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_drop_none(v) for v in value]
    return value


def test_locks_of_several_targets_write_each_shared_entry_once_with_tomli_w_bytes() -> None:
    """A pure-Python package is the same ``[[packages]]`` entry in every target's lock: its
    text is made once per run and reused. The locks of a Windows, a macOS arm64 and a CPython
    3.9 manylinux target are byte for byte what one ``tomli_w.dumps`` writes (strings with
    quotes, backslashes, a newline and non-ASCII included), and read back as written. A lock
    whose only entry fits on one line (tomli_w writes the array inline) is written whole."""
    import datetime as dt

    import tomli_w
    import tomllib
    from packaging.markers import Marker
    from packaging.pylock import Package, PackageDirectory, PackageWheel, Pylock
    from packaging.specifiers import SpecifierSet
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    from wheelport import lock as lock_mod

    when = dt.datetime(2026, 11, 30, 9, 30, 1, 500, tzinfo=dt.timezone.utc)

    def wheel(name: str, digest: str) -> PackageWheel:
        return PackageWheel(name=name, upload_time=when, url=f"https://files.example/{name}",
                            path=f"wheels/{name}", size=123, hashes={"sha256": digest})  # fmt: skip

    pure = Package(name=canonicalize_name("pure"), version=Version("2.0"),
                   requires_python=SpecifierSet(">=3.8"), index="https://example.org/simple",
                   dependencies=[{"name": "dep"}],
                   wheels=[wheel("pure-2.0-py3-none-any.whl", "a" * 64)],
                   tool={"wheelport": {"note": 'a "quoted" \\ back\\slash\nnew line, ünïcode'}})  # fmt: skip

    def lock_for(target: str, marker: str, python: str, tag: str, digest: str) -> Pylock:
        native = Package(name=canonicalize_name("native"), version=Version("1.0"),
                         wheels=[wheel(f"native-1.0-{tag}.whl", digest)])  # fmt: skip
        return Pylock(lock_version=Version("1.0"), environments=[Marker(marker)],
                      requires_python=SpecifierSet(f"=={python}.*"), created_by="wheelport",
                      packages=[native, pure],
                      tool={"wheelport": {"target": target}})  # fmt: skip

    locks = [
        lock_for("cp312-win_amd64", 'sys_platform == "win32"', "3.12", "cp312-cp312-win_amd64", "b" * 64),
        lock_for("cp311-macosx_11_0_arm64", 'sys_platform == "darwin"', "3.11",
                 "cp311-cp311-macosx_11_0_arm64", "c" * 64),
        lock_for("cp39-manylinux_2_17_x86_64", 'sys_platform == "linux"', "3.9",
                 "cp39-cp39-manylinux_2_17_x86_64", "d" * 64),
    ]  # fmt: skip
    lock_mod._package_toml.clear()
    for lock in locks:
        text = lock_mod.dumps(lock)
        assert text == tomli_w.dumps(_drop_none(lock_mod.lock_dict(lock)))
        assert Pylock.from_dict(tomllib.loads(text)) == lock
    assert len(lock_mod._package_toml) == 4  # three native entries, the pure one once

    tiny = Pylock(lock_version=Version("1.0"), environments=None, requires_python=None,
                  created_by="wheelport",
                  packages=[Package(name=canonicalize_name("t"),
                                    directory=PackageDirectory(path="t"))])  # fmt: skip
    lock_mod._package_toml.clear()
    text = lock_mod.dumps(tiny)
    assert text == tomli_w.dumps(_drop_none(lock_mod.lock_dict(tiny)))
    assert "[[packages]]" not in text and not lock_mod._package_toml
