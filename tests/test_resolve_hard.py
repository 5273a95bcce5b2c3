"""Hard resolutions (issue 16 item E), as users run them.

- The network test: ``tests/data/real/minigpt4-env.txt``, the ``pip:`` list of an environment.yml
  with tight pins (transformers==4.28.0, huggingface-hub==0.13.4, packaging==23.0, …) beside
  unpinned projects whose newest releases need newer versions of the pinned ones (peft,
  sentence-transformers, notebook, umap-learn, wandb), locked for cp39 on manylinux_2_28 x86_64
  and win_amd64. ``uv pip compile`` solves it; wheelport must too, with uv's answer or another
  one uv accepts (its pins as ``--constraints`` give exactly those pins), and every ``==`` of
  the input kept. Both tools see the same frozen view of the public index (``public_index``,
  declared in ``tests/data/public-index/resolve-hard.toml``). The time comparison is
  ``bench/resolve_hard.py``, not a test.
- Hermetic: ``--resolve-timeout`` and ``WHEELPORT_RESOLVE_TIMEOUT`` bound a target's search;
  ``lock --allow-missing`` when no target can be locked writes nothing and says so in one line.
"""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from support import one_error_line, run_wheelport, scrubbed_env
from support.dists import make_wheel
from support.public import PublicIndex
from support.server import IndexServer
from test_real_projects import UV, compare, read_locks, uv_compile

HARD_SET = Path(__file__).resolve().parent / "data" / "real" / "minigpt4-env.txt"
HARD_TARGETS = ("cp39-manylinux_2_28_x86_64", "cp39-win_amd64")
LINUX312 = "cp312-manylinux_2_28_x86_64"
LINUX310 = "cp310-manylinux_2_28_x86_64"
WIN312 = "cp312-win_amd64"
#: under the suite's per-test timeout, so a lock that hangs still shows its output
WHEELPORT_TIMEOUT_S = 600


def lock(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**(env if env is not None else scrubbed_env()), "COLUMNS": "200"}
    return run_wheelport("lock", *args, "-o", str(tmp_path / "wh"), "--tool", "none",
                         env=env, cwd=tmp_path, timeout=120)  # fmt: skip


# -- the search is bounded by time -------------------------------------------------------------


def test_resolve_timeout_flag_and_environment(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path
) -> None:
    index_server.add(make_wheel(dists_dir, "app", "1.0", deps=["lib"]))
    index_server.add(make_wheel(dists_dir, "lib", "1.0"))
    base = ("app", "--index-url", index_server.url, "-t", WIN312)
    proc = lock(tmp_path, *base, "--resolve-timeout", "0.000001")
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert line.startswith(
        f"error: resolution for target {WIN312} gave up after 0 s (its 1e-06 s limit)"
    )
    assert "--resolve-timeout SECONDS, WHEELPORT_RESOLVE_TIMEOUT" in line
    assert not (tmp_path / "wh").exists()

    env = {**scrubbed_env(), "WHEELPORT_RESOLVE_TIMEOUT": "0.000001"}
    proc = lock(tmp_path, *base, env=env)
    assert proc.returncode == 1
    assert "(its 1e-06 s limit)" in one_error_line(proc)

    proc = lock(tmp_path, *base, "--resolve-timeout", "0", env=env)  # the flag wins; 0: no limit
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "wh" / f"pylock.{WIN312}.toml").exists()

    proc = lock(tmp_path, *base, "--resolve-timeout", "-1")
    assert proc.returncode == 2


# -- --allow-missing with nothing to keep ------------------------------------------------------


def test_allow_missing_when_no_target_can_be_locked(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path
) -> None:
    """--allow-missing locks the targets that resolve and reports the others. When none
    resolves there is nothing to write: exit 1, and the one line says so before the reason."""
    index_server.add(make_wheel(dists_dir, "winonly", "1.0", tag="cp312-cp312-win_amd64"))
    base = ("winonly", "--index-url", index_server.url, "--allow-missing")

    proc = lock(tmp_path, *base, "-t", WIN312, "-t", LINUX312)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "wh" / f"pylock.{WIN312}.toml").exists()
    assert not (tmp_path / "wh" / f"pylock.{LINUX312}.toml").exists()
    assert f"not locked {LINUX312}" in proc.stdout + proc.stderr

    before = (tmp_path / "wh" / f"pylock.{WIN312}.toml").read_bytes()
    proc = lock(tmp_path, *base, "-t", LINUX312, "-t", LINUX310)
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert line.startswith(
        "error: no target could be locked, so nothing was written (--allow-missing keeps the "
        "targets that lock and reports the others): no version of winonly "
    )
    assert line.endswith(f"(and 1 more target(s) failed: {LINUX310})")
    assert LINUX312 in line
    assert sorted(p.name for p in (tmp_path / "wh").glob("pylock.*")) == [f"pylock.{WIN312}.toml"]
    assert (tmp_path / "wh" / f"pylock.{WIN312}.toml").read_bytes() == before

    proc = lock(tmp_path, *base, "-t", LINUX312, "--json")
    assert proc.returncode == 1
    assert "no target could be locked" in proc.stdout + proc.stderr


# -- a hard real set, against uv -----------------------------------------------------------------


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.skipif(not UV.exists(), reason="uv is not installed next to this Python")
def test_hard_set_resolves_as_uv_does(tmp_path: Path, public_index: PublicIndex) -> None:
    index = public_index.url
    wheelhouse = tmp_path / "wh"
    args = [a for t in HARD_TARGETS for a in ("-t", t)]
    with ThreadPoolExecutor(max_workers=len(HARD_TARGETS)) as pool:  # uv runs beside wheelport
        uv_runs = {
            t: pool.submit(uv_compile, tmp_path, HARD_SET, t, index=index) for t in HARD_TARGETS
        }
        try:
            proc = run_wheelport("lock", "-r", str(HARD_SET), *args, "--index-url", index,
                                 "--tool", "none", "-o", str(wheelhouse), env=scrubbed_env(),
                                 cwd=tmp_path, timeout=WHEELPORT_TIMEOUT_S)  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            err = (
                exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
            )
            pytest.fail(f"wheelport lock still running after {WHEELPORT_TIMEOUT_S} s:\n"
                        f"{(err or '')[-4000:]}")  # fmt: skip
        theirs = {}
        for target, run in uv_runs.items():
            code, pins, err = run.result()
            assert code == 0, f"uv cannot resolve the hard set for {target}:\n{err}"
            theirs[target] = pins
    assert proc.returncode == 0, f"wheelport lock failed:\n{proc.stderr[-6000:]}"
    mine = read_locks(wheelhouse, HARD_TARGETS)
    rows = [compare(tmp_path, HARD_SET, t, mine[t], theirs[t], index) for t in HARD_TARGETS]
    report = "\n".join(f"  {r}" for r in rows)
    print(f"{HARD_SET.name}:\n{report}")
    problems = [f"{r.target}: {p}" for r in rows for p in r.problems]
    assert not problems, report + "\n" + "\n".join(problems)
    # the set is hard because the newest releases do not fit: check the walk back happened
    for target in HARD_TARGETS:
        assert mine[target].pins["packaging"] == "23.0"
        assert mine[target].pins["huggingface-hub"] == "0.13.4"
        assert {"peft", "sentence-transformers", "notebook", "jupyterlab"} <= set(mine[target].pins)
