"""Two wheelport processes on one wheelhouse: the writing verbs take the wheelhouse's exclusive
lock, readers a shared one; whoever must wait says so in one line, and nothing is corrupted."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from support.dists import make_wheel
from support.server import IndexServer
from wheelport.wheelhouse import LOCK_NAME, Wheelhouse

TARGET = "cp312-win_amd64"


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "wheelport", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def verify_ok(wh: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "wheelport", "verify", str(wh)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr


@pytest.fixture
def slow_index(dists_dir: Path, pip_wheel: Path) -> IndexServer:
    """Every response 0.3 s late, so a sync holds its lock long enough to be waited for."""
    srv = IndexServer(delay=0.3).start()
    srv.add(make_wheel(dists_dir, "native", "1.0", tag="cp312-cp312-win_amd64", deps=["pure"]))
    srv.add(make_wheel(dists_dir, "pure", "1.0"))
    srv.add(make_wheel(dists_dir, "pure", "2.0"))
    srv.add(make_wheel(dists_dir, "extra", "1.0"))
    srv.add(pip_wheel)
    yield srv
    srv.stop()


def test_waiting_line_names_the_holder(tmp_path: Path) -> None:
    wh = tmp_path / "wh"
    wh.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from pathlib import Path
            from wheelport.wheelhouse import Wheelhouse
            with Wheelhouse(Path({str(wh)!r})).locked("sync"):
                print("held", flush=True)
                time.sleep(1.5)
        """)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    assert (wh / LOCK_NAME).read_text().split() == [str(holder.pid), "sync"]
    waiter = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(f"""
            import time
            from pathlib import Path
            from wheelport.wheelhouse import Wheelhouse
            t = time.monotonic()
            with Wheelhouse(Path({str(wh)!r})).locked("verify", shared=True):
                print(round(time.monotonic() - t, 2))
        """)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    holder.wait(timeout=30)
    lines = waiter.stderr.strip().splitlines()
    assert len(lines) == 1, waiter.stderr
    assert f"waiting for pid {holder.pid} (wheelport sync) holding {wh / LOCK_NAME}" in lines[0]
    assert float(waiter.stdout) > 0.3  # it did wait
    assert (wh / LOCK_NAME).read_text() == ""  # released: no stale holder left behind


def test_locks_are_reentrant_and_shared_locks_do_not_wait(tmp_path: Path) -> None:
    wh = Wheelhouse(tmp_path / "wh")
    with wh.locked("sync"), wh.locked("lock"):  # sync calls lock: no self-deadlock
        pass
    reader = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import time
            from pathlib import Path
            from wheelport.wheelhouse import Wheelhouse
            with Wheelhouse(Path({str(wh.root)!r})).locked("provision", shared=True):
                print("held", flush=True)
                time.sleep(1)
        """)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert reader.stdout is not None and reader.stdout.readline().strip() == "held"
    t = time.monotonic()
    with wh.locked("verify", shared=True):
        assert time.monotonic() - t < 0.5
    reader.wait(timeout=30)


def test_a_failed_first_sync_leaves_no_directory(tmp_path: Path, index_server: IndexServer) -> None:
    wh = tmp_path / "new" / "wh"
    proc = subprocess.run(
        [sys.executable, "-m", "wheelport", "sync", "no-such-project", "--index-url",
         index_server.url, "-t", TARGET, "--tool", "none", "-o", str(wh)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert not (tmp_path / "new").exists()


def test_two_syncs_on_one_wheelhouse(slow_index: IndexServer, tmp_path: Path) -> None:
    wh = tmp_path / "wh"
    args = ("sync", "native", "--index-url", slow_index.url, "-t", TARGET, "--tool", "none",
            "-o", str(wh))  # fmt: skip
    first = start(*args)
    time.sleep(0.2)
    second = start(*args)
    results = [finish(first), finish(second)]
    for rc, _out, err in results:
        assert rc == 0, err
    waited = [err for _rc, _out, err in results if "waiting for pid" in err]
    assert len(waited) == 1, [err for _rc, _out, err in results]
    assert str(wh / LOCK_NAME) in waited[0] and "(wheelport sync)" in waited[0]
    verify_ok(wh)


def test_sync_and_provision_at_once(slow_index: IndexServer, tmp_path: Path) -> None:
    wh = tmp_path / "wh"
    base = ("sync", "--index-url", slow_index.url, "-t", "host", "-o", str(wh))
    rc, _out, err = finish(start(*base, "pure==1.0"))
    assert rc == 0, err
    # a second sync changes the wheelhouse (a new version, a new package) while provision reads
    sync = start(*base, "pure==2.0", "extra", "--refresh")
    time.sleep(0.5)
    prov = start("provision", str(tmp_path / "venv"), "-w", str(wh), "--json")
    (src, _o, serr), (prc, pout, perr) = finish(sync), finish(prov)
    assert src == 0, serr
    assert prc == 0, perr
    installed = {p["name"]: p["version"] for p in json.loads(pout)["packages"]}
    assert installed.get("pure") in ("1.0", "2.0")  # one consistent lock or the other
    assert ("extra" in installed) == (installed["pure"] == "2.0")
    verify_ok(wh)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_pip_installs_from_serve_while_sync_runs(slow_index: IndexServer, tmp_path: Path) -> None:
    wh = tmp_path / "wh"
    base = ("sync", "--index-url", slow_index.url, "-t", "host", "--tool", "none", "-o", str(wh))
    rc, _out, err = finish(start(*base, "pure==1.0"))
    assert rc == 0, err
    port = _free_port()
    server = start("serve", str(wh), "--port", str(port))
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/simple/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        sync = start(*base, "pure==2.0", "extra", "--refresh")
        installs = []
        while sync.poll() is None or not installs:
            target = tmp_path / f"t{len(installs)}"
            installs.append(subprocess.run(
                [sys.executable, "-m", "pip", "install", "--isolated", "--no-deps", "-q",
                 "--disable-pip-version-check", "--index-url", f"http://127.0.0.1:{port}/simple/",
                 "--target", str(target), "pure"],
                capture_output=True, text=True, check=False,
            ))  # fmt: skip
        src, _o, serr = finish(sync)
        assert src == 0, serr
        assert installs and all(p.returncode == 0 for p in installs), [p.stderr for p in installs]
    finally:
        server.terminate()
        server.communicate(timeout=30)
    verify_ok(wh)
