"""Faults, tested: a local index that fails in the ways real ones do, and the real CLI against it.

Transient faults (a few 5xx, one reset, one truncated body, slowness under the timeout, one
corrupted download) are retried to success. Persistent ones end in exactly one line on stderr
and exit 1. Either way nothing unverified reaches the wheelhouse or the cache, and a rerun
against the healed index completes and verifies.
"""

from __future__ import annotations

import json
import random
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import one_error_line, run_wheelport
from support.dists import make_wheel, metadata_text
from support.server import Fault, IndexServer
from wheelport.lock import read_lock
from wheelport.wheelhouse import sha256_file

WIN = "cp312-win_amd64"
MAC = "cp310-macosx_11_0_arm64"


def wheelport(*args: str) -> subprocess.CompletedProcess[str]:
    return run_wheelport(*args, timeout=300)


@dataclass
class Case:
    """An index with ``app`` (depends on ``dep``), both as wheels for one target."""

    index: IndexServer
    target: str
    app: Path
    dep: Path
    wh: Path

    def sync(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return wheelport(
            "sync",
            "app",
            "--index-url",
            self.index.url,
            "-t",
            self.target,
            "-o",
            str(self.wh),
            "--tool",
            "none",
            "-q",
            *extra,
        )

    def page(self, project: str) -> str:
        return f"/simple/{project}/"

    def file(self, wheel: Path) -> str:
        return f"/files/{wheel.name}"


def _target_for(request: pytest.FixtureRequest) -> str:
    """Faults alternate between two targets unlike the host (each fault runs once)."""
    fault = getattr(request.node, "callspec", None)
    name = fault.params.get("fault", "") if fault else ""
    table = TRANSIENT if name in TRANSIENT else PERSISTENT
    return (WIN, MAC)[sorted(table).index(name) % 2] if name else WIN


@pytest.fixture(params=[WIN, MAC])
def both(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def case(request: pytest.FixtureRequest, dists_dir: Path, tmp_path: Path) -> Case:
    target = (
        request.getfixturevalue("both") if "both" in request.fixturenames else _target_for(request)
    )
    tag = "cp312-cp312-win_amd64" if target == WIN else "cp310-cp310-macosx_11_0_arm64"
    srv = IndexServer().start()
    request.addfinalizer(srv.stop)
    # big enough that a cut after a few KiB really cuts the body (random bytes do not compress)
    rng = random.Random(8)
    app = make_wheel(
        dists_dir,
        "app",
        "1.0",
        deps=["dep>=1"],
        tag=tag,
        files={"app/b": rng.randbytes(40000).hex()},
    )
    dep = make_wheel(dists_dir, "dep", "1.0", files={"dep/b": rng.randbytes(40000).hex()})
    assert min(app.stat().st_size, dep.stat().st_size) > 30000
    srv.add(app)
    srv.add(dep)
    return Case(srv, target, app, dep, tmp_path / "wh")


def assert_nothing_unverified(case: Case, cache: Path) -> None:
    """Every file in wheels/ and sdists/ is a registered file with its true sha256; every cache
    artifact is named by its own sha256; no temporary files anywhere."""
    for sub in ("wheels", "sdists"):
        d = case.wh / sub
        for p in d.iterdir() if d.is_dir() else []:
            assert not p.name.endswith(".part") and not p.name.startswith("."), p
            if p.name.endswith(".metadata"):
                continue
            registered = case.index.file(p.name)
            assert registered is not None, f"unexpected {p}"
            assert sha256_file(p) == registered.sha256, f"unverified {p}"
    arts = cache / "artifacts-v2"
    for p in arts.rglob("*") if arts.is_dir() else []:
        if p.is_dir():
            continue
        rel = p.relative_to(arts).parts
        assert rel[0] != "tmp", f"temporary file left in the cache: {p}"
        assert len(rel) == 1 and rel[0] == sha256_file(p), f"misnamed artifact {p}"
    for lock in case.wh.glob("pylock.*.toml"):
        read_lock(lock)  # every lock that exists parses


def assert_healthy_rerun(case: Case) -> None:
    case.index.heal()
    r = case.sync("--json")
    assert r.returncode == 0, r.stderr
    v = wheelport("verify", str(case.wh))
    assert v.returncode == 0, v.stderr + v.stdout
    names = {p.name for p in (case.wh / "wheels").glob("*.whl")}
    assert names >= {case.app.name, case.dep.name}  # a verified leftover may stay
    lock = read_lock(case.wh / f"pylock.{case.target}.toml")
    assert {p.name for p in lock.packages} == {"app", "dep"}


def failed_in_one_line(r: subprocess.CompletedProcess[str]) -> str:
    """A failed job: exit 1 and one error line."""
    assert r.returncode == 1, (r.returncode, r.stderr)
    return one_error_line(r)


Rules = Callable[[Case], list[Fault]]

# -- transient: retried to success ---------------------------------------------------------------

TRANSIENT: dict[str, Rules] = {
    "page 503 twice": lambda c: [Fault(c.page("app"), "status", 2, status=503)],
    "page 500 then 502": lambda c: [
        Fault(c.page("dep"), "status", 1, status=500),
        Fault(c.page("dep"), "status", 1, status=502),
    ],
    "page reset once": lambda c: [Fault(c.page("app"), "reset", 1, after=10)],
    "page truncated once": lambda c: [Fault(c.page("dep"), "truncate", 1)],
    "metadata 503 once": lambda c: [Fault(c.file(c.app) + ".metadata", "status", 1, status=503)],
    "download 500 three times": lambda c: [
        Fault(c.file(c.app), "status", 3, status=500, exact=True, ranged=False)
    ],
    "download reset once": lambda c: [
        Fault(c.file(c.app), "reset", 1, after=8192, exact=True, ranged=False)
    ],
    "download reset before the body": lambda c: [
        Fault(c.file(c.dep), "reset", 1, after=0, exact=True, ranged=False)
    ],
    "download truncated once": lambda c: [
        Fault(c.file(c.dep), "truncate", 1, exact=True, ranged=False)
    ],
    "download corrupted once": lambda c: [
        Fault(c.file(c.app), "corrupt", 1, exact=True, ranged=False)
    ],
    "slow first byte and trickle": lambda c: [
        Fault(c.page("app"), "slow", 1, delay=1.0),
        Fault(c.file(c.app), "slow", 1, delay=0.05, trickle=True, chunk=4096, exact=True),
    ],
}


@pytest.mark.parametrize("fault", sorted(TRANSIENT))
def test_transient_fault_is_retried(case: Case, fault: str, _own_cache: Path) -> None:
    rules = TRANSIENT[fault](case)
    case.index.inject(*rules)
    r = case.sync("--json")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert all(rule.hits == (rule.count or rule.hits) for rule in rules), [
        (rule.prefix, rule.hits) for rule in rules
    ]
    assert json.loads(r.stdout)["ok"] is True
    assert_nothing_unverified(case, _own_cache)
    assert sorted(p.name for p in (case.wh / "wheels").glob("*.whl")) == sorted(
        [case.app.name, case.dep.name]
    )
    v = wheelport("verify", str(case.wh))
    assert v.returncode == 0, v.stderr


# -- persistent: one line, exit 1, nothing kept, then a healthy rerun -----------------------------

PERSISTENT: dict[str, tuple[Rules, str]] = {
    "page 503 forever": (
        lambda c: [Fault(c.page("app"), "status", None, status=503)],
        "answered HTTP 503",
    ),
    "page reset forever": (
        lambda c: [Fault(c.page("dep"), "reset", None, after=0)],
        "connection reset",
    ),
    "download 500 forever": (
        lambda c: [Fault(c.file(c.app), "status", None, status=500, exact=True, ranged=False)],
        "HTTP 500",
    ),
    "download reset forever": (
        lambda c: [Fault(c.file(c.dep), "reset", None, after=4096, exact=True, ranged=False)],
        "connection reset",
    ),
    "download truncated forever": (
        lambda c: [Fault(c.file(c.app), "truncate", None, exact=True, ranged=False)],
        "peer closed connection",
    ),
    "download corrupted forever": (
        lambda c: [Fault(c.file(c.dep), "corrupt", None, exact=True, ranged=False)],
        "different bytes than it advertises",
    ),
}


@pytest.mark.parametrize("fault", sorted(PERSISTENT))
def test_persistent_fault_fails_in_one_line(case: Case, fault: str, _own_cache: Path) -> None:
    make_rules, expected = PERSISTENT[fault]
    rules = make_rules(case)
    case.index.inject(*rules)
    r = case.sync()
    line = failed_in_one_line(r)
    assert expected in line, line
    assert_nothing_unverified(case, _own_cache)
    if "download" in fault:
        failed = case.app if "app" in rules[0].prefix else case.dep
        assert failed.name in line
        assert not (case.wh / "wheels" / failed.name).exists()
        # the other file may be there, but only verified (checked above)
    assert_healthy_rerun(case)
    assert_nothing_unverified(case, _own_cache)


def test_corrupted_download_is_tried_exactly_twice(case: Case) -> None:
    case.index.inject(Fault(case.file(case.app), "corrupt", None, exact=True, ranged=False))
    failed_in_one_line(case.sync())
    gets = [
        h
        for m, p, h in case.index.requests
        if m == "GET" and p == case.file(case.app) and "Range" not in h
    ]
    assert len(gets) == 2


# -- PEP 658 metadata that lies about the wheel ---------------------------------------------------


def test_pep658_metadata_that_differs_from_the_wheel_fails_the_wheel(
    both: str, case: Case, dists_dir: Path, _own_cache: Path
) -> None:
    # the index serves .metadata for app saying it needs "other", the wheel says "dep>=1"
    case.index.add(make_wheel(dists_dir, "other", "1.0"))
    lie = metadata_text("app", "1.0", deps=["other"]).encode()
    case.index.serve_metadata(case.app.name, lie)
    r = case.sync()
    line = failed_in_one_line(r)
    assert case.app.name in line and "METADATA differs" in line, line
    assert "Requires-Dist" in line
    assert not (case.wh / "wheels" / case.app.name).exists()
    assert_nothing_unverified(case, _own_cache)
    # the lock made from the false metadata is gone; the rerun resolves from the truth
    assert not (case.wh / f"pylock.{case.target}.toml").exists()
    r = case.sync()
    assert r.returncode == 0, r.stderr  # still lying: the wheel's own METADATA is now known
    lock = read_lock(case.wh / f"pylock.{case.target}.toml")
    assert {p.name for p in lock.packages} == {"app", "dep"}
    assert_healthy_rerun(case)


def test_pep658_metadata_with_another_requires_python_fails(case: Case, _own_cache: Path) -> None:
    lie = metadata_text("app", "1.0", deps=["dep>=1"], requires_python=">=3.8").encode()
    case.index.serve_metadata(case.app.name, lie)
    line = failed_in_one_line(case.sync())
    assert "Requires-Python" in line and case.app.name in line
    assert_nothing_unverified(case, _own_cache)
    assert_healthy_rerun(case)
