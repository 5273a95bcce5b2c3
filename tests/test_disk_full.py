"""A full disk ends a run with one line naming the path being written and the space it needs;
what was written before stays intact and the next run (with space) completes."""

from __future__ import annotations

import errno
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from support.dists import make_wheel
from support.server import IndexServer
from wheelport import wheelhouse
from wheelport.errors import DiskFullError


def _can_mount() -> bool:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    probe = subprocess.run(["unshare", "-m", "mount", "-t", "tmpfs", "tmpfs", "/mnt"],
                           capture_output=True)  # fmt: skip
    return probe.returncode == 0


def _in_small_tmpfs(mountpoint: Path, argv: list[str], size: str, env: dict[str, str]) -> Any:
    """Run ``argv`` in a mount namespace where ``mountpoint`` is a tmpfs of ``size``."""
    script = f'mount -t tmpfs -o size={size} tmpfs "$1" && shift && exec "$@"'
    return subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", str(mountpoint), *argv],
                          capture_output=True, text=True, env=env, timeout=300)  # fmt: skip


@pytest.fixture
def big_index(dists_dir: Path) -> Any:
    rng = random.Random(7)
    with IndexServer() as srv:  # ~0.8 MiB compressed: more than the 512 KiB tmpfs holds
        srv.add(make_wheel(dists_dir, "big", "1.0",
                           files={"big/blob.txt": rng.randbytes(750_000).hex()}))  # fmt: skip
        yield srv


@pytest.mark.skipif(not _can_mount(), reason="no mount namespace here (the fake writer below runs)")
@pytest.mark.parametrize("full", ["cache", "wheelhouse"])
def test_a_full_disk_names_the_path_and_the_space(
    full: str, big_index: IndexServer, tmp_path: Path
) -> None:
    cache, wh = tmp_path / "cache", tmp_path / "wh"
    cache.mkdir()
    wh.mkdir()
    env = dict(os.environ, WHEELPORT_CACHE_DIR=str(cache))
    argv = [sys.executable, "-m", "wheelport", "sync", "big", "--index-url", big_index.url,
            "-o", str(wh), "--tool", "none", "-t", "cp39-win_amd64"]  # fmt: skip
    small = cache if full == "cache" else wh
    r = _in_small_tmpfs(small, argv, "512k", env)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    (line,) = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith(f"error: no space left on the device writing {small}/"), line
    (served,) = big_index.files_of("big")
    assert f"(needs {served.size / 1024:.1f} KiB, " in line and "free there" in line, line
    if full == "wheelhouse":
        assert "wheels/big-1.0-py3-none-any.whl" in line
    # with space, the same command completes
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert not list(wh.rglob("*.part")) and not list(cache.rglob("*.part"))


def test_a_writer_that_meets_enospc_names_its_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same rule where no tmpfs can be mounted: a write failing with ENOSPC."""
    real = os.fdopen

    class Full:
        def __init__(self, f: Any) -> None:
            self.f = f

        def __enter__(self) -> Full:
            return self

        def __exit__(self, *exc: object) -> None:
            self.f.close()

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name: str) -> Any:
            return getattr(self.f, name)

    monkeypatch.setattr(wheelhouse.os, "fdopen", lambda *a, **k: Full(real(*a, **k)))
    target = tmp_path / "wh" / "wheelport.json"
    with pytest.raises(DiskFullError) as err:
        wheelhouse.atomic_write_bytes(target, b"x" * 3000)
    text = str(err.value)
    assert f"writing {target} (needs 2.9 KiB, " in text and "free there" in text
    assert err.value.return_code == 1 and "\n" not in text
    assert not target.exists() and not list(target.parent.glob("*.part"))


def test_a_metadata_entry_the_cache_cannot_take_is_left_out(
    dists_dir: Path, tmp_path: Path
) -> None:
    """The cache's metadata entries are best-effort, as its pages are: one that cannot be
    written (here its directory is a file; a full disk the same) is left out with a warning
    and a Windows lock still completes. On a disk another download is filling, the run then
    fails where the space is needed (the wheel, its size), not on a 46-byte entry."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "metadata-v2").write_text("not a directory")
    with IndexServer() as srv:
        srv.add(make_wheel(dists_dir, "dep", "1.0"))
        srv.add(make_wheel(dists_dir, "app", "1.0", deps=["dep"]))
        r = subprocess.run(
            [sys.executable, "-m", "wheelport", "lock", "app", "--index-url", srv.url,
             "-o", str(tmp_path / "wh"), "--tool", "none", "-t", "cp39-win_amd64"],
            capture_output=True, text=True, timeout=300,
            env=dict(os.environ, WHEELPORT_CACHE_DIR=str(cache)),
        )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "wh" / "pylock.cp39-win_amd64.toml").is_file()
    assert r.stderr.count("core metadata is not kept in the cache") == 1, r.stderr
    assert "Traceback" not in r.stderr and "error:" not in r.stderr
