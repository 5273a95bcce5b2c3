"""``--exclude-newer``: resolve as the index stood at an instant (uv's ``--exclude-newer``, pip's
``--uploaded-prior-to``), against a real local index, for targets unlike the host.

A file counts when the index gives it a PEP 700 ``upload-time`` strictly before the cutoff; a file
without one is left out (as uv does). A date alone is the whole of that UTC day. The cutoff is an
input of the lock (digest, recorded inputs, the command that makes the wheelhouse again), and real
uv, given the same cutoff and index, picks the same versions.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from support import one_error_line
from support.dists import make_backend_wheel, make_sdist, make_wheel
from support.server import IndexServer

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

WIN312 = "cp312-win_amd64"
MAC311 = "cp311-macosx_11_0_arm64"
UV = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")


def lock(
    tmp_path: Path, env: dict[str, str], *args: str, verb: str = "lock"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wheelport", verb, *args],
        capture_output=True,
        text=True,
        env={**env, "WHEELPORT_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "200"},
        cwd=tmp_path,
        timeout=120,
    )


def pins(out: Path, target: str) -> dict[str, str]:
    data = tomllib.loads((out / f"pylock.{target}.toml").read_text())
    return {p["name"]: p["version"] for p in data["packages"]}


def inputs(out: Path, target: str) -> dict[str, Any]:
    data = tomllib.loads((out / f"pylock.{target}.toml").read_text())
    return dict(data["tool"]["wheelport"]["inputs"])


@pytest.fixture
def srv(index_server: IndexServer, dists_dir: Path) -> IndexServer:
    """app 1.0 (January), 2.0 (June 1st, 10:00 UTC; needs lib>=2), 3.0 (no upload time);
    lib 1.0 (January) and 2.0 (June 1st, 10:00 UTC), whose win_amd64 wheel came in July."""
    d = dists_dir
    index_server.add(make_wheel(d, "app", "1.0", deps=["lib"]), upload_time="2024-01-10T08:00:00Z")
    index_server.add(make_wheel(d, "app", "2.0", deps=["lib>=2"]),
                     upload_time="2024-06-01T10:00:00.000000Z")  # fmt: skip
    index_server.add(make_wheel(d, "app", "3.0", deps=["lib"]))  # the index gives no upload time
    index_server.add(make_wheel(d, "lib", "1.0"), upload_time="2024-01-10T08:00:00Z")
    index_server.add(make_wheel(d, "lib", "2.0", tag="py3-none-macosx_11_0_arm64"),
                     upload_time="2024-06-01T10:00:00Z")  # fmt: skip
    index_server.add(make_wheel(d, "lib", "2.0", tag="py3-none-win_amd64"),
                     upload_time="2024-07-01T00:00:00Z")  # fmt: skip
    return index_server


def test_the_cutoff_decides_per_file_and_a_date_is_the_whole_utc_day(
    tmp_path: Path, srv: IndexServer, clean_env: dict[str, str]
) -> None:
    def lock_at(cutoff: str) -> Path:
        out = tmp_path / f"wh-{len(list(tmp_path.glob('wh-*')))}"
        proc = lock(tmp_path, clean_env, "app", "-t", WIN312, "-t", MAC311, "--index-url",
                    srv.url, "--tool", "none", "-o", str(out), "--exclude-newer", cutoff)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return out

    # without a cutoff app 3.0 (no upload time) is the newest
    plain = tmp_path / "plain"
    proc = lock(tmp_path, clean_env, "app", "-t", WIN312, "--index-url", srv.url,
                "--tool", "none", "-o", str(plain))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert pins(plain, WIN312)["app"] == "3.0"

    # before June: the January versions; 3.0 has no upload time, so it is left out
    early = lock_at("2024-05-31")
    assert pins(early, WIN312) == {"app": "1.0", "lib": "1.0"}
    assert pins(early, MAC311) == {"app": "1.0", "lib": "1.0"}
    assert inputs(early, WIN312)["exclude-newer"] == "2024-06-01T00:00:00Z"

    # the date June 1st takes everything uploaded that day: app 2.0 and the macOS lib 2.0;
    # lib 2.0's Windows wheel came in July, so for Windows app 2.0 cannot be had
    day = lock_at("2024-06-01")
    assert pins(day, MAC311) == {"app": "2.0", "lib": "2.0"}
    assert pins(day, WIN312) == {"app": "1.0", "lib": "1.0"}
    assert inputs(day, WIN312)["exclude-newer"] == "2024-06-02T00:00:00Z"

    # a timestamp is strict: a file uploaded at the cutoff itself is left out; the offset counts
    assert pins(lock_at("2024-06-01T12:00:00+02:00"), MAC311)["app"] == "1.0"
    at_second = lock_at("2024-06-01T12:00:01+02:00")
    assert pins(at_second, MAC311)["app"] == "2.0"
    assert inputs(at_second, MAC311)["exclude-newer"] == "2024-06-01T10:00:01Z"

    # after July every file with an upload time is in; 3.0 still is not
    assert pins(lock_at("2025-01-01"), WIN312) == {"app": "2.0", "lib": "2.0"}


def test_the_cutoff_is_an_input_of_the_lock(
    tmp_path: Path, srv: IndexServer, clean_env: dict[str, str]
) -> None:
    out = tmp_path / "wh"
    common = ["app", "-t", WIN312, "--index-url", srv.url, "--tool", "none", "-o", str(out)]
    assert lock(tmp_path, clean_env, *common, "--exclude-newer", "2024-05-31").returncode == 0

    def check(*extra: str) -> dict[str, Any]:
        proc = lock(tmp_path, clean_env, *common, "--check", "--json", *extra)
        assert proc.returncode in (0, 1), proc.stderr
        return dict(json.loads(proc.stdout))

    assert check("--exclude-newer", "2024-05-31T23:59:59Z")["stale"]
    assert check()["stale"]  # no cutoff is another input too
    # the same instant, spelled as a timestamp with another offset, is the same input
    assert check("--exclude-newer", "2024-06-01T02:00:00+02:00")["current"] == [WIN312]
    # from the config file, and from the environment, as from the flag
    (tmp_path / "wheelport.toml").write_text("exclude-newer = 2024-05-31\n")
    assert check()["current"] == [WIN312]
    (tmp_path / "wheelport.toml").unlink()
    env = {**clean_env, "WHEELPORT_EXCLUDE_NEWER": "2024-05-31"}
    proc = lock(tmp_path, env, *common, "--check", "--json")
    assert json.loads(proc.stdout)["current"] == [WIN312], proc.stderr


def test_nothing_older_than_the_cutoff_is_one_line_naming_it(
    tmp_path: Path, srv: IndexServer, clean_env: dict[str, str]
) -> None:
    out = tmp_path / "wh"
    proc = lock(tmp_path, clean_env, "app", "-t", WIN312, "--index-url", srv.url, "--tool",
                "none", "-o", str(out), "--exclude-newer", "2023-12-31")  # fmt: skip
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert "no file of app" in line and "older than the cutoff" in line, line
    assert "3 file(s)" in line and "2024-01-01T00:00:00Z" in line, line
    assert not out.exists()

    # a version the requirement allows exists, only too new: the count says what was left out
    proc = lock(tmp_path, clean_env, "app>=2", "-t", WIN312, "--index-url", srv.url, "--tool",
                "none", "-o", str(out), "--exclude-newer", "2024-05-31")  # fmt: skip
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert "no version of app satisfies app>=2" in line, line
    assert "2 file(s) uploaded at or after --exclude-newer 2024-06-01T00:00:00Z" in line, line


def test_an_sdists_build_requirements_are_taken_as_the_index_stood_at_the_cutoff(
    tmp_path: Path, srv: IndexServer, dists_dir: Path, clean_env: dict[str, str]
) -> None:
    """Reading an sdist's dynamic dependencies installs its build backend: the one uploaded
    before the cutoff, not a newer release (here a broken one), so the lock is the same later."""
    d = dists_dir
    srv.add(make_sdist(d, "dynpkg", "1.0", deps=["lib"], dynamic_deps=True),
            upload_time="2024-01-10T08:00:00Z")  # fmt: skip
    srv.add(make_backend_wheel(d / "old"), upload_time="2024-01-10T08:00:00Z")
    broken = make_wheel(d / "new", "tinybackend", "2.0",
                        files={"tinybackend/__init__.py": "raise ImportError('tinybackend 2.0')\n"})  # fmt: skip
    srv.add(broken, upload_time="2024-07-01T00:00:00Z")

    # without the cutoff the build gets tinybackend 2.0, which fails
    proc = lock(tmp_path, clean_env, "dynpkg", "-t", WIN312, "--index-url", srv.url, "--tool",
                "none", "-o", str(tmp_path / "wh-now"))  # fmt: skip
    assert proc.returncode == 1
    assert "dynpkg" in one_error_line(proc)

    out = tmp_path / "wh"
    proc = lock(tmp_path, clean_env, "dynpkg", "-t", WIN312, "--index-url", srv.url, "--tool",
                "none", "-o", str(out), "--exclude-newer", "2024-05-31")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert pins(out, WIN312) == {"dynpkg": "1.0", "lib": "1.0"}


@pytest.mark.parametrize(
    "value",
    ["yesterday", "2024-13-01", "2024-06-01T10:00:00", "2024-06-01 10:00"],
)
def test_a_cutoff_that_is_not_an_instant_is_exit_2(
    tmp_path: Path, srv: IndexServer, clean_env: dict[str, str], value: str
) -> None:
    proc = lock(tmp_path, clean_env, "app", "-t", WIN312, "--index-url", srv.url,
                "-o", str(tmp_path / "wh"), "--exclude-newer", value)  # fmt: skip
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "exclude-newer" in line and repr(value) in line, line
    assert not (tmp_path / "wh").exists()


def test_a_cutoff_with_from_is_exit_2(
    tmp_path: Path, srv: IndexServer, clean_env: dict[str, str]
) -> None:
    source = tmp_path / "pylock.toml"
    source.write_text('lock-version = "1.0"\ncreated-by = "x"\n[[packages]]\nname = "app"\n')
    proc = lock(tmp_path, clean_env, "--from", str(source), "--index-url", srv.url,
                "--exclude-newer", "2024-05-31")  # fmt: skip
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "--exclude-newer" in line and "--from" in line, line


@pytest.mark.skipif(UV is None, reason="uv is not installed")
@pytest.mark.parametrize("cutoff", ["2024-05-31T00:00:00Z", "2024-06-01T10:00:01Z"])
def test_uv_given_the_same_cutoff_picks_the_same_versions(
    tmp_path: Path, srv: IndexServer, clean_env: dict[str, str], cutoff: str
) -> None:
    out = tmp_path / "wh"
    proc = lock(tmp_path, clean_env, "app", "-t", MAC311, "--index-url", srv.url, "--tool",
                "none", "-o", str(out), "--exclude-newer", cutoff)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    reqs = tmp_path / "requirements.in"
    reqs.write_text("app\n")
    assert UV is not None
    uv = subprocess.run(
        [UV, "pip", "compile", "--no-config", "--python-platform", "aarch64-apple-darwin",
         "--python-version", "3.11", "--index-url", srv.url, "--exclude-newer", cutoff,
         "--no-header", "--no-annotate", "--quiet", str(reqs)],
        capture_output=True, text=True, timeout=120,
        env={**clean_env, "UV_CACHE_DIR": str(tmp_path / "uv")},
    )  # fmt: skip
    assert uv.returncode == 0, uv.stderr
    theirs = dict(line.split("==") for line in uv.stdout.splitlines() if "==" in line)
    assert pins(out, MAC311) == theirs
