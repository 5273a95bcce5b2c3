"""Crash safety: ``wheelport sync`` killed (SIGKILL) at random moments, or interrupted (SIGINT).

After any kill, a rerun finishes the job and ``verify`` passes; no temporary file stays in the
wheelhouse or the cache (the rerun reclaims what the killed run was writing). Ctrl-C ends a run
with one line, exit 130, promptly, and leaves nothing half-written, not even in the cache.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.dists import make_sdist, make_wheel
from support.server import Fault, IndexServer
from wheelport.lock import read_lock

TARGETS = ("-t", "host", "-t", "cp312-win_amd64")
#: hidden files that are wheelport's own (the advisory lock, the index writer's state)
STATE_FILES = {".wheelport.lock", ".wheelport-index.json", ".wheelport-stamps.json"}


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "wheelport", *args]


def _env(cache: Path) -> dict[str, str]:
    return dict(os.environ, WHEELPORT_CACHE_DIR=str(cache))


def _leftovers(root: Path) -> list[Path]:
    """Temporary files: ``*.part``, hidden files (but wheelport's own state), ``tmp*`` names."""
    if not root.exists():
        return []
    return [
        p
        for p in root.rglob("*")
        if p.name not in STATE_FILES
        and (p.name.endswith(".part") or p.name.startswith((".", "tmp")))
    ]


def _assert_complete(wh: Path, cache: Path, sync_args: list[str]) -> None:
    r = subprocess.run(_cmd(*sync_args), capture_output=True, text=True, env=_env(cache))
    assert r.returncode == 0, r.stderr
    v = subprocess.run(_cmd("verify", str(wh)), capture_output=True, text=True, env=_env(cache))
    assert v.returncode == 0, v.stderr + v.stdout
    assert not _leftovers(wh), _leftovers(wh)
    # what the killed run was downloading or writing into the cache is reclaimed by the rerun
    assert not list(cache.rglob("*.part")), list(cache.rglob("*.part"))
    for lock in wh.glob("pylock.*.toml"):
        read_lock(lock)
    names = {p.name.split("-")[0] for p in (wh / "wheels").glob("*.whl")}
    assert {"puresrc", "tinybackend"} <= names and {f"w{i}" for i in range(6)} <= names
    from wheelport.wheelhouse import sha256_file

    for p in (cache / "artifacts-v2").iterdir():
        if p.is_file():
            assert p.name == sha256_file(p), f"cache artifact not named by its sha256: {p}"


def _phase(wh: Path, cache: Path) -> str:
    """Roughly where a run was when it died, from what it left. Downloads start while targets
    still resolve (sync's prefetch), so a run with files in its cache (or on their way) but
    not all of them in the wheelhouse was downloading, locks written or not."""
    # a download is in the cache, on its way (tmp/), or moved into the wheelhouse (noted)
    downloads = [p for d in ("artifacts-v2", "placed-v2") for p in (cache / d).rglob("*")
                 if p.is_file()]  # fmt: skip
    placed = len(list((wh / "wheels").glob("w*.whl"))) if (wh / "wheels").is_dir() else 0
    if not downloads and not list(wh.glob("pylock.*.toml")):
        return "resolving"
    if placed < 6:
        return "downloading" if downloads else "resolving"
    if not list((wh / "wheels").glob("puresrc-*.whl")):
        return "building"
    if not (wh / "bootstrap.py").exists() or not (wh / "simple").is_dir():
        return "finishing"
    return "indexing"


@pytest.fixture
def kill_index(dists_dir: Path, tinybackend_wheel: Path) -> Iterator[IndexServer]:
    srv = IndexServer(delay=0.03).start()
    rng = random.Random(1)
    srv.add(tinybackend_wheel)
    for i in range(6):
        srv.add(
            make_wheel(
                dists_dir,
                f"w{i}",
                "1.0",
                deps=[f"w{i + 1}"] if i < 5 else [],
                files={f"w{i}/blob.txt": rng.randbytes(150_000).hex()},
            )
        )
    # pure Python, only an sdist: a native build runs (its backend comes from the index)
    srv.add(make_sdist(dists_dir, "puresrc", "1.0", deps=["w0"]))
    # downloads trickle, so a run spends a while in fetch as well
    for f in srv.files_of("w0") + srv.files_of("w3"):
        srv.inject(
            Fault(f"/files/{f.filename}", "slow", None, delay=0.02, trickle=True, chunk=32768)
        )
    yield srv
    srv.stop()


@pytest.mark.slow
def test_sigkill_at_random_moments_then_rerun_completes(
    kill_index: IndexServer, tmp_path: Path
) -> None:
    def args(wh: Path) -> list[str]:
        return ["sync", "puresrc", "--index-url", kill_index.url, *TARGETS, "-o", str(wh)]

    # how long an uninterrupted run takes, cold
    wh0, cache0 = tmp_path / "wh-full", tmp_path / "cache-full"
    t0 = time.monotonic()
    full = [*args(wh0), "--tool", "none", "-j", "4"]
    r = subprocess.run(_cmd(*full), capture_output=True, text=True, env=_env(cache0))
    span = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    rng = random.Random(20240806)
    kills = 20
    phases: dict[str, int] = {}
    left_parts = 0  # how many partial files kills left (reclaimed by the reruns, asserted there)
    for i in range(kills):
        wh, cache = tmp_path / f"wh{i}", tmp_path / f"cache{i}"
        sync_args = [*args(wh), "--tool", "none", "-j", "4"]
        # stratified over the first 80 % (reruns are a little faster than the cold run measured)
        at = 0.8 * span * (i + rng.random()) / kills
        proc = subprocess.Popen(
            _cmd(*sync_args),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=_env(cache),
            start_new_session=True,  # the kill takes the run's build processes with it
        )
        time.sleep(at)
        finished = proc.poll() is not None
        if not finished:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        phase = "done" if finished else _phase(wh, cache)
        phases[phase] = phases.get(phase, 0) + 1
        left_parts += len(list(cache.rglob("*.part")))
        _assert_complete(wh, cache, sync_args)
    print(f"\nrun takes {span:.1f} s; kills by phase: {phases}; "
          f"partial files left in caches and reclaimed: {left_parts}")  # fmt: skip
    assert phases.get("done", 0) <= kills // 4
    assert len(set(phases) - {"done"}) >= 3, phases


def test_sigint_ends_promptly_with_one_line_and_nothing_half_written(
    dists_dir: Path, tmp_path: Path
) -> None:
    srv = IndexServer().start()
    try:
        rng = random.Random(2)
        for i in range(8):
            srv.add(make_wheel(dists_dir, f"s{i}", "1.0", files={"b": rng.randbytes(60_000).hex()}))
        # each download takes seconds: without care, Ctrl-C would wait for the pool to drain
        srv.inject(
            Fault("/files/", "slow", None, delay=0.05, trickle=True, chunk=4096, ranged=False)
        )
        wh, cache = tmp_path / "wh", tmp_path / "cache"
        sync_args = [
            "sync",
            *(f"s{i}" for i in range(8)),
            "--index-url",
            srv.url,
            "-t",
            "cp310-macosx_11_0_arm64",
            "-o",
            str(wh),
            "--tool",
            "none",
            "-j",
            "3",
            "-q",
        ]
        proc = subprocess.Popen(
            _cmd(*sync_args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(cache),
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            gets = [p for m, p, h in list(srv.requests) if p.endswith(".whl") and "Range" not in h]
            if len(gets) >= 2:
                break
            time.sleep(0.02)
        time.sleep(0.3)  # mid-download
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent
        assert proc.returncode == 130, err
        assert [line for line in err.splitlines() if line.strip()] == ["interrupted"], err
        assert took < 5, f"took {took:.1f} s to stop"
        print(f"\nSIGINT: exit 130 after {took:.2f} s")
        assert not _leftovers(wh), _leftovers(wh)
        # the downloads it was in the middle of are removed by the interrupted run itself
        assert not list(cache.rglob("*.part")), list(cache.rglob("*.part"))
        for lock in wh.glob("pylock.*.toml"):
            read_lock(lock)
        if (wh / "wheelport.json").exists():
            json.loads((wh / "wheelport.json").read_text())
        assert len(list((wh / "wheels").glob("*.whl"))) < 8  # it really was interrupted
        srv.heal()
        r = subprocess.run(_cmd(*sync_args), capture_output=True, text=True, env=_env(cache))
        assert r.returncode == 0, r.stderr
        v = subprocess.run(_cmd("verify", str(wh)), capture_output=True, text=True)
        assert v.returncode == 0, v.stderr
        assert not _leftovers(wh), _leftovers(wh)
    finally:
        srv.stop()


def test_partial_files_of_dead_writers_are_reclaimed_live_ones_kept(tmp_path: Path) -> None:
    """A writer killed mid-write leaves its ``*.part``; the next process that opens that cache
    removes them, even one that downloads nothing, but never a partial file a live process is
    still writing."""
    from wheelport.cache import Cache
    from wheelport.wheelhouse import partial_file, release_partial

    cache = tmp_path / "cache"
    tmp = cache / "artifacts-v2" / "tmp"
    # a download, a copy back from a wheelhouse, a page, core metadata, rewritten placement notes
    dirs = [tmp, *(cache / d for d in ("artifacts-v2", "http-v2", "metadata-v2", "placed-v2"))]
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    dying = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from wheelport.wheelhouse import partial_file\n"
        "fd, a = partial_file(Path(sys.argv[1]))\n"
        "os.write(fd, b'x' * 4096)\n"
        "names = [a] + [partial_file(Path(d), prefix='.cdef.')[1] for d in sys.argv[2:]]\n"
        "print(*names, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", dying, *map(str, dirs)],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == -signal.SIGKILL
    dead = [Path(p) for p in proc.stdout.split()]
    assert all(p.exists() for p in dead) and len(dead) == len(dirs)
    live_fd, live = partial_file(tmp)  # this process is still writing this one
    try:
        # a run that only opens the index (nothing to download) reclaims them too
        reclaim = (
            "import sys; from pathlib import Path; from wheelport.cache import Cache\n"
            "from wheelport.index.client import IndexClient\n"
            "with IndexClient(['http://127.0.0.1:9/simple/'], cache=Cache(Path(sys.argv[1]))):\n"
            "    pass\n"
        )
        subprocess.run([sys.executable, "-c", reclaim, str(cache)], check=True)
        assert not any(p.exists() for p in dead)
        assert Path(live).exists()
    finally:
        os.close(live_fd)
        os.unlink(live)
        release_partial(live)
    assert Cache(cache).partial_dir() == tmp
