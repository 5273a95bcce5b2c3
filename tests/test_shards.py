"""``plan`` and ``sync --shard I/N``: the build work listed with its builders, cut into balanced,
deterministic shards whose partial wheelhouses merge into the one a single ``sync`` makes."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import run_wheelport
from support.dists import make_sdist
from support.server import IndexServer
from wheelport.builders.plan import BuildNeed
from wheelport.builders.planner import PlannedJob, assign_shards, parse_shard
from wheelport.builders.stage import build_plan
from wheelport.config import build_config
from wheelport.sync import SyncResult, sync
from wheelport.targets import parse_target
from wheelport.wheelhouse import sha256_file

WIN = "cp312-win_amd64"
MAC = "cp313-macosx_11_0_arm64"
TARGETS = [WIN, MAC]
#: sdist name → bytes of incompressible description, so the sdists' sizes differ
SIZES = {"alpha": 9000, "beta": 6000, "gamma": 4000, "delta": 2500, "eps": 1200, "zeta": 300}
N = 3


def _sync(root: Path, url: str, out: Path, **kw: Any) -> SyncResult:
    config = build_config(
        directory=root, requirements=sorted(SIZES), index_urls=[url], targets=TARGETS,
        output=out, tools=["none"],
    )  # fmt: skip
    return sync(config, **kw)


def _tree(root: Path) -> dict[str, str]:
    """wheels/, sdists/ and the locks: relative path → sha256."""
    return {
        p.relative_to(root).as_posix(): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file()
        and (p.relative_to(root).parts[0] in ("wheels", "sdists") or p.name.startswith("pylock."))
    }


def _index_files(root: Path) -> dict[str, list[str]]:
    """project → the file names its PEP 691 page lists."""
    out = {}
    for page in sorted((root / "simple").glob("*/index.json")):
        data = json.loads(page.read_text(encoding="utf-8"))
        out[page.parent.name] = sorted(f["filename"] for f in data["files"])
    return out


@pytest.fixture(scope="module")
def runs(
    tmp_path_factory: pytest.TempPathFactory, tinybackend_wheel: Path
) -> Iterator[dict[str, Any]]:
    """One single sync, N shard syncs (each into its own directory, one after another as a CI
    matrix would), a rerun of shard 2, and the merge of the shards (read-only to tests)."""
    tmp = tmp_path_factory.mktemp("shards")
    rng = random.Random(11)
    out: dict[str, Any] = {}
    with pytest.MonkeyPatch.context() as mp, IndexServer() as index:
        mp.setenv("WHEELPORT_CACHE_DIR", str(tmp / "cache"))
        index.add(tinybackend_wheel)
        for name, size in SIZES.items():
            text = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(size))
            index.add(make_sdist(tmp / "dists", name, "1.0", project={"description": text}))
        out["single"] = _sync(tmp, index.url, tmp / "single")
        for i in range(1, N + 1):
            out[f"shard{i}"] = _sync(tmp, index.url, tmp / f"s{i}", shard=(i, N))
        out["rerun"] = _sync(tmp, index.url, tmp / "s2", shard=(2, N))
        out["only"] = _sync(tmp, index.url, tmp / "only", only_targets=[WIN], shard=(1, 2))
        r = run_wheelport("merge", *(str(tmp / f"s{i}") for i in range(1, N + 1)),
                          "-o", str(tmp / "merged"), "--json")  # fmt: skip
        assert r.returncode == 0, r.stderr
        out["tmp"] = tmp
        yield out


def test_plan_lists_every_job_with_its_builder(runs: dict[str, Any]) -> None:
    single = runs["tmp"] / "single"
    rows = build_plan(single, shards=N)
    assert sorted(r["package"] for r in rows) == sorted(SIZES)
    for r in rows:
        # a pure-Python sdist: one native build here serves both targets unlike the host
        assert r["builder"] == "native" and r["here"] is True, r
        assert sorted(r["targets"]) == sorted(TARGETS)
        assert r["runner"].startswith("linux-")
        assert r["size"] == (single / r["sdist"]).stat().st_size
    assert build_plan(single) == []  # a synced wheelhouse has no build work left
    # the CLI says the same, as a list of rows
    r = run_wheelport("plan", "-w", str(single), "--shards", str(N), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == rows


def test_assignment_is_deterministic_and_balanced(runs: dict[str, Any]) -> None:
    single = runs["tmp"] / "single"
    rows = build_plan(single, shards=N)
    assert rows == build_plan(single, shards=N)
    loads = {f"{k}/{N}": 0 for k in range(1, N + 1)}
    for r in rows:
        loads[r["shard"]] += r["size"]
    mean = sum(loads.values()) / N
    assert max(loads.values()) <= mean + max(r["size"] for r in rows), loads
    assert all(loads.values()), loads  # six jobs over three shards: none is idle
    # each shard built exactly the jobs the plan gives it
    for k in range(1, N + 1):
        built = {b.package for b in runs[f"shard{k}"].builds if b.wheel and not b.skipped}
        assert built == {r["package"] for r in rows if r["shard"] == f"{k}/{N}"}, k


def test_shard_coverage_defers_other_shards_jobs(runs: dict[str, Any]) -> None:
    rows = {r["package"]: r["shard"] for r in build_plan(runs["tmp"] / "single", shards=N)}
    result: SyncResult = runs["shard1"]
    assert result.ok
    for pkg, shard in rows.items():
        for tid in TARGETS:
            state, detail = result.coverage.cells[pkg][parse_target(tid).identifier]
            if shard == f"1/{N}":
                assert state == "built", (pkg, state, detail)
            else:
                assert (state, detail) == ("deferred", f"left to shard {shard}")


def test_shard_rerun_is_a_noop(runs: dict[str, Any]) -> None:
    rerun: SyncResult = runs["rerun"]
    assert not [b for b in rerun.builds if not b.skipped], rerun.builds
    assert rerun.ok and not rerun.relocked


def test_only_target_keeps_other_targets_for_other_runs(runs: dict[str, Any]) -> None:
    result: SyncResult = runs["only"]
    assert result.ok
    mac = parse_target(MAC).identifier
    assert {result.coverage.cells[p][mac] for p in SIZES} == {
        ("deferred", "left to another run (--only-target)")
    }
    win = parse_target(WIN).identifier
    states = {result.coverage.cells[p][win][0] for p in SIZES}
    assert states == {"built", "deferred"}


def test_merged_shards_equal_a_single_sync(runs: dict[str, Any]) -> None:
    tmp: Path = runs["tmp"]
    single, merged = tmp / "single", tmp / "merged"
    # no shard alone has every built wheel ...
    for i in range(1, N + 1):
        assert set(_tree(tmp / f"s{i}")) < set(_tree(single))
    # ... their merge is the one-machine wheelhouse: same files, same bytes, same locks
    assert _tree(merged) == _tree(single)
    assert _index_files(merged) == _index_files(single)
    m_single = json.loads((single / "wheelport.json").read_text(encoding="utf-8"))
    m_merged = json.loads((merged / "wheelport.json").read_text(encoding="utf-8"))
    assert m_merged["locks"] == m_single["locks"]
    assert m_merged["artifacts"] == m_single["artifacts"]
    assert m_merged["build_deps"] == m_single["build_deps"]
    r = run_wheelport("verify", str(merged))
    assert r.returncode == 0, r.stderr


def test_compiled_sdist_for_windows_needs_a_windows_runner(
    tmp_path: Path, tinybackend_wheel: Path
) -> None:
    with IndexServer() as index:
        index.add(tinybackend_wheel)
        index.add(make_sdist(tmp_path / "dists", "speedy", "1.0", c_extension=True))
        config = build_config(
            directory=tmp_path, requirements=["speedy"], index_urls=[index.url],
            targets=[WIN], output=tmp_path / "wh", tools=["none"],
        )  # fmt: skip
        result = sync(config, allow_missing=True)
    assert not result.ok  # a red cell, not a crash
    # run where there is no project at all: a plan reads the locks, it needs no requirements
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = run_wheelport("plan", "-w", str(tmp_path / "wh"), "--json", cwd=elsewhere)
    assert r.returncode == 0, r.stderr
    (row,) = json.loads(r.stdout)
    assert row["package"] == "speedy" and row["targets"] == [parse_target(WIN).identifier]
    assert row["runner"] == "windows-x86_64" and row["here"] is False
    assert row["builder"] == "native" and "Windows" in row["reason"]
    r = run_wheelport("plan", "-w", str(tmp_path / "wh"))
    shown = r.stdout + r.stderr  # the table goes to the console, folded to its width
    assert r.returncode == 0 and "speedy" in shown and "windows-x86" in shown, shown


def _job(name: str, size: int) -> PlannedJob:
    need = BuildNeed(name, "1", f"sdists/{name}-1.tar.gz", name * 4, (WIN,), size)
    return PlannedJob(need, "native", (parse_target(WIN),), "linux-x86_64", True, size=size)


def test_assign_shards_is_balanced_for_any_sizes() -> None:
    rng = random.Random(3)
    for _ in range(50):
        jobs = [_job(f"p{i}", rng.randint(0, 10_000)) for i in range(rng.randint(1, 20))]
        n = rng.randint(1, 6)
        shards = assign_shards(jobs, n)
        assert shards == assign_shards(list(jobs), n) and set(shards) <= set(range(1, n + 1))
        loads = [
            sum(j.size for j, k in zip(jobs, shards, strict=True) if k == s)
            for s in range(1, n + 1)
        ]
        assert max(loads) <= sum(loads) / n + max(j.size for j in jobs)
        # the order the jobs come in does not change who does what
        back = assign_shards(jobs[::-1], n)[::-1]
        assert back == shards


def test_parse_shard() -> None:
    assert parse_shard("2/3") == (2, 3)
    for bad in ("0/3", "4/3", "3", "a/b", "1/0"):
        with pytest.raises(ValueError):
            parse_shard(bad)
