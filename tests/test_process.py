"""The one subprocess port (``wheelport.process``) and the builds that run through it.

The default runner and bootstrap.py's stdlib twin are exercised with real processes; the
native and isolated builds are run with recording runners around real pip and the tinybackend
PEP 517 backend, against real indexes on 127.0.0.1.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
import venv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from support.dists import make_backend_wheel, make_sdist, make_wheel
from support.runners import RecordingRunner
from support.server import IndexServer
from wheelport import bootstrap
from wheelport.builders import isolated, native
from wheelport.errors import BuildError
from wheelport.process import Runner, RunResult, subprocess_runner

RUNNERS = {"process": subprocess_runner, "bootstrap": bootstrap.subprocess_runner}


class Recording(RecordingRunner):
    """Records every command, then runs it for real (or answers with ``fail`` for commands
    that contain ``fail_on``)."""

    def __init__(self, fail_on: str | None = None, fail: RunResult | None = None) -> None:
        super().__init__()
        self.fail_on = fail_on
        self.fail = fail

    def answer(self, argv: list[str], **kw: Any) -> RunResult:
        if self.fail is not None and self.fail_on in argv:
            return self.fail
        return super().answer(argv, **kw)

    def pip_installs(self) -> list[list[str]]:
        return [c for c in self.calls if "pip" in c and "install" in c]


# --------------------------------------------------------------------------- the runner


@pytest.mark.parametrize("name", sorted(RUNNERS))
def test_runner_captures_combined_output_cwd_env_and_log(name: str, tmp_path: Path) -> None:
    run: Runner = RUNNERS[name]
    script = (
        "import os, sys; print(os.getcwd(), flush=True); print(os.environ['WP'], file=sys.stderr)"
    )
    result = run([sys.executable, "-c", script], cwd=tmp_path, env={"WP": "seen"})
    assert (result.returncode, result.output) == (0, f"{tmp_path}\nseen\n")
    log = tmp_path / "logs" / "x.log"
    failed = run([sys.executable, "-c", "print('out'); raise SystemExit(3)"], log=log)
    assert (failed.returncode, failed.output) == (3, "out\n")
    assert log.read_text() == "out\n"


@pytest.mark.parametrize("name", sorted(RUNNERS))
def test_runner_raises_on_timeout_and_on_a_missing_program(name: str, tmp_path: Path) -> None:
    run: Runner = RUNNERS[name]
    with pytest.raises(subprocess.TimeoutExpired):
        run([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)
    with pytest.raises(OSError):
        run([str(tmp_path / "no-such-program")])


def test_last_line_is_the_last_non_blank_line() -> None:
    assert RunResult(1, "a\n  b  \n\n").last_line == "b"
    assert RunResult(1, "\n").last_line == ""


# --------------------------------------------------------------------------- native builds


def test_unshare_probe_goes_through_the_runner() -> None:
    if shutil.which("unshare") is None or not sys.platform.startswith("linux"):
        pytest.skip("no unshare here")
    seen: list[list[str]] = []

    def answer(code: int) -> Runner:
        def run(argv: Sequence[str], **kw: Any) -> RunResult:
            seen.append(list(argv))
            return RunResult(code, "")

        return run

    assert native.no_network_prefix(answer(1)) == ()
    prefix = native.no_network_prefix(answer(0))
    assert prefix[1:] == ("-n",) and prefix[0].endswith("unshare")
    assert seen == [[prefix[0], "-n", "true"]] * 2


def test_native_build_runs_every_command_through_the_runner(
    tmp_path: Path, tinybackend_wheel: Path
) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    shutil.copy2(tinybackend_wheel, wheels)
    sdist = make_sdist(tmp_path / "src", "nativepkg", "1.0")
    rec = Recording()
    wheel = native.build_native(
        sdist, wheels_dir=wheels, out_dir=tmp_path / "out", log_dir=tmp_path / "logs", runner=rec
    )
    assert wheel == tmp_path / "out" / "nativepkg-1.0-py3-none-any.whl" and wheel.is_file()
    [install] = rec.pip_installs()
    assert install[-1] == "tinybackend"
    assert ["--no-index", "--find-links", str(wheels)] == install[-4:-1]
    assert any("build_wheel" in c for c in rec.calls)  # the PEP 517 hook, through the runner
    assert native.no_network_prefix() == tuple(install[: len(native.no_network_prefix())])


def test_native_build_failure_keeps_the_runners_output_as_log(
    tmp_path: Path, tinybackend_wheel: Path
) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    sdist = make_sdist(tmp_path / "src", "nativepkg", "1.0")
    said = "ERROR: No matching distribution found for tinybackend"
    rec = Recording(fail_on="install", fail=RunResult(1, said + "\n"))
    with pytest.raises(BuildError, match="build dependency tinybackend is not available") as info:
        native.build_native(
            sdist, wheels_dir=wheels, out_dir=tmp_path / "out", log_dir=tmp_path / "logs",
            runner=rec,
        )  # fmt: skip
    log = tmp_path / "logs" / "nativepkg-1.0.tar.gz.native.log"
    assert str(log) in str(info.value)
    assert said in log.read_text()
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- isolated set-up


@pytest.fixture
def own_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private temporary directory that tempfile uses for everything in this test."""
    path = tmp_path / "tmp"
    path.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    return path


def test_a_corrupt_sdist_leaves_no_temporary_directory(tmp_path: Path, own_tmp: Path) -> None:
    sdist = tmp_path / "corrupt-1.0.tar.gz"
    sdist.write_bytes(b"\x1f\x8b this is not a gzip stream")
    build = isolated.IsolatedBuild(sdist, deps=isolated.find_links_source(tmp_path))
    assert list(own_tmp.iterdir()) == []  # the constructor does no work
    with pytest.raises(tarfile.TarError), build:
        pass
    assert list(own_tmp.iterdir()) == []


def test_a_failed_venv_leaves_no_temporary_directory(
    tmp_path: Path, own_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sdist = make_sdist(tmp_path / "src", "okpkg", "1.0")

    def no_venv(self: venv.EnvBuilder, env_dir: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(venv.EnvBuilder, "create", no_venv)
    with (
        pytest.raises(OSError, match="disk full"),
        isolated.IsolatedBuild(sdist, deps=isolated.find_links_source(tmp_path)),
    ):
        pass
    assert list(own_tmp.iterdir()) == []


def test_a_good_build_directory_exists_while_entered_only(tmp_path: Path, own_tmp: Path) -> None:
    sdist = make_sdist(tmp_path / "src", "okpkg", "1.0")
    with isolated.IsolatedBuild(sdist, deps=isolated.find_links_source(tmp_path)) as b:
        assert (b.srcdir / "pyproject.toml").is_file()
        assert [p.name for p in own_tmp.iterdir()] == [b.srcdir.parents[1].name]
    assert list(own_tmp.iterdir()) == []


# --------------------------------------------------------------------------- metadata builds


def test_metadata_build_over_two_indexes_installs_from_one_source(tmp_path: Path) -> None:
    """First index wins per project: tinybackend from the first index (the second one's newer
    tinybackend is broken, so pip's --extra-index-url merging would fail), helperdep from the
    second (the first has none). pip is never given --extra-index-url."""
    dists = tmp_path / "dists"
    sdist = make_sdist(dists, "dynpkg", "1.0", deps=["alpha>=1"], dynamic_deps=True,
                       metadata_version="2.1", backend_requires=["tinybackend", "helperdep"])  # fmt: skip
    broken = make_wheel(dists / "second", "tinybackend", "2.0",
                        files={"tinybackend/__init__.py": "raise ImportError('second index')\n"})  # fmt: skip
    rec = Recording()
    with IndexServer() as first, IndexServer() as second:
        first.add(make_backend_wheel(dists / "first"))
        second.add(broken)
        second.add(make_wheel(dists / "second", "helperdep", "1.0"))
        build = isolated.sdist_metadata_online(
            [first.url, second.url], tmp_path / "logs", runner=rec
        )
        metadata = build(sdist, sdist.name).decode()
    assert "Name: dynpkg" in metadata and "Requires-Dist: alpha>=1" in metadata
    [install] = rec.pip_installs()
    assert "--extra-index-url" not in install and "--index-url" not in install
    links = Path(install[install.index("--find-links") + 1])
    assert "--no-index" in install
    assert install[-2:] == ["helperdep", "tinybackend"]
    assert links.name.startswith("deps-")  # resolved by wheelport, inside the build directory
    assert not links.exists()  # removed with the build directory


def test_metadata_build_with_one_index_names_only_it(tmp_path: Path) -> None:
    sdist = make_sdist(tmp_path / "dists", "dynpkg", "1.0", dynamic_deps=True,
                       metadata_version="2.1")  # fmt: skip
    rec = Recording()
    with IndexServer() as index:
        index.add(make_backend_wheel(tmp_path / "backend"))
        url = index.url
        build = isolated.sdist_metadata_online([url, url], runner=rec)
        assert b"Name: dynpkg" in build(sdist, sdist.name)
    [install] = rec.pip_installs()
    assert "--extra-index-url" not in install
    assert install.count("--index-url") == 1
    assert install[install.index("--index-url") + 1] == url
