"""Resolution rules, each checked end to end (``api.lock`` against a real local index).

Every rule that depends on the target uses a target unlike the host (cp311 manylinux_2_36
x86_64): win_amd64, macOS arm64, cp310/cp312, manylinux_2_28.
"""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import itertools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from packaging.pylock import Pylock

from support.dists import make_sdist, make_wheel
from support.server import IndexServer
from wheelport import api
from wheelport.cache import Cache
from wheelport.config import build_config, parse_requirement
from wheelport.errors import ResolutionError
from wheelport.index.client import IndexClient
from wheelport.resolve import Candidate, NullReporter, Policy, Reporter, resolve_target
from wheelport.targets import Target, parse_target

LINUX312 = "cp312-manylinux_2_28_x86_64"
WIN312 = "cp312-win_amd64"
LINUX310 = "cp310-manylinux_2_28_x86_64"
MAC313 = "cp313-macosx_11_0_arm64"


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHEELPORT_CACHE_DIR", str(tmp_path / "cache"))


def lock(
    tmp_path: Path,
    srv: IndexServer,
    requirements: Sequence[str],
    targets: Sequence[str] = (LINUX312,),
    **kwargs: Any,
) -> dict[str, dict[str, Any]]:
    """Lock and return {target: {package name: lock entry}} read back from the written files."""
    out = tmp_path / "wh"
    config = build_config(
        directory=tmp_path,
        requirements=list(requirements),
        index_urls=[srv.url],
        targets=list(targets),
        output=out,
        tools=["none"],
        **kwargs,
    )
    result = api.lock(config)
    locks: dict[str, dict[str, Any]] = {}
    for target in targets:
        path = out / f"pylock.{target}.toml"
        data = tomllib.loads(path.read_text())
        Pylock.from_dict(data)  # valid PEP 751
        assert data["tool"]["wheelport"]["target"] == target
        locks[target] = {p["name"]: p for p in data["packages"]}
    assert len(result.paths) == len(targets)
    return locks


def versions(entries: dict[str, Any]) -> dict[str, str]:
    return {name: p["version"] for name, p in entries.items()}


def wheel_name(entry: dict[str, Any]) -> str | None:
    wheels = entry.get("wheels")
    return wheels[0]["name"] if wheels else None


# -- wheel tags --------------------------------------------------------------------------------


def test_manylinux2014_wheel_beats_prerelease_tagged_2_28(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path
) -> None:
    """pip issues 10760/10050: a prerelease is not picked just because its tag is more exact."""
    index_server.add(make_wheel(dists_dir, "pkg", "1.0", tag="cp312-cp312-manylinux2014_x86_64"))
    index_server.add(make_wheel(dists_dir, "pkg", "2.0b1", tag="cp312-cp312-manylinux_2_28_x86_64"))
    got = lock(tmp_path, index_server, ["pkg"])[LINUX312]
    assert got["pkg"]["version"] == "1.0"
    assert wheel_name(got["pkg"]) == "pkg-1.0-cp312-cp312-manylinux2014_x86_64.whl"


def test_best_tag_wins_within_a_version(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path
) -> None:
    for tag in ("py3-none-any", "cp312-cp312-manylinux2014_x86_64", "cp312-abi3-manylinux_2_28_x86_64",
                "cp312-cp312-win_amd64", "cp312-cp312-manylinux_2_34_x86_64"):  # fmt: skip
        index_server.add(make_wheel(dists_dir, "pkg", "1.0", tag=tag))
    got = lock(tmp_path, index_server, ["pkg"], targets=[LINUX312, WIN312, MAC313])
    assert wheel_name(got[LINUX312]["pkg"]) == "pkg-1.0-cp312-cp312-manylinux2014_x86_64.whl"
    assert wheel_name(got[WIN312]["pkg"]) == "pkg-1.0-cp312-cp312-win_amd64.whl"
    assert wheel_name(got[MAC313]["pkg"]) == "pkg-1.0-py3-none-any.whl"


def test_wheel_for_other_platform_never_chosen(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path
) -> None:
    # 2.0 has only a Windows wheel; 1.0 is pure Python → Linux and macOS get 1.0, Windows 2.0
    index_server.add(make_wheel(dists_dir, "pkg", "2.0", tag="cp312-cp312-win_amd64"))
    index_server.add(make_wheel(dists_dir, "pkg", "1.0"))
    got = lock(tmp_path, index_server, ["pkg"], targets=[LINUX312, WIN312, MAC313])
    assert got[LINUX312]["pkg"]["version"] == "1.0"
    assert got[MAC313]["pkg"]["version"] == "1.0"
    assert got[WIN312]["pkg"]["version"] == "2.0"


def test_only_foreign_wheels_is_an_error(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path
) -> None:
    index_server.add(make_wheel(dists_dir, "pkg", "1.0", tag="cp312-cp312-win_amd64"))
    with pytest.raises(ResolutionError) as info:
        lock(tmp_path, index_server, ["pkg"], targets=[LINUX312])
    assert "pkg" in str(info.value) and LINUX312 in str(info.value)
    assert not (tmp_path / "wh").exists()


# -- markers -----------------------------------------------------------------------------------


def test_platform_marker_per_target(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path
) -> None:
    index_server.add(
        make_wheel(dists_dir, "app", "1.0", deps=['winonly; sys_platform == "win32"', "common"])
    )
    index_server.add(make_wheel(dists_dir, "winonly", "1.0"))
    index_server.add(make_wheel(dists_dir, "common", "1.0"))
    got = lock(tmp_path, index_server, ["app"], targets=[LINUX312, WIN312])
    assert set(got[WIN312]) == {"app", "common", "winonly"}
    assert set(got[LINUX312]) == {"app", "common"}
    assert got[WIN312]["winonly"]["marker"] == 'sys_platform == "win32"'
    assert "marker" not in got[WIN312]["common"]
    assert {"name": "winonly"} in got[WIN312]["app"]["dependencies"]


def test_python_version_marker_per_target(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path
) -> None:
    index_server.add(
        make_wheel(dists_dir, "app", "1.0", deps=['backport; python_version < "3.11"'])
    )
    index_server.add(make_wheel(dists_dir, "backport", "1.0"))
    got = lock(tmp_path, index_server, ["app"], targets=[LINUX310, LINUX312])
    assert "backport" in got[LINUX310]
    assert got[LINUX310]["backport"]["marker"] == 'python_version < "3.11"'
    assert "backport" not in got[LINUX312]


def test_marker_on_root_requirement(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path
) -> None:
    index_server.add(make_wheel(dists_dir, "colorama", "0.4.6"))
    index_server.add(make_wheel(dists_dir, "click", "8.0"))
    got = lock(
        tmp_path,
        index_server,
        ["click", 'colorama; sys_platform == "win32"'],
        targets=[MAC313, WIN312],
    )
    assert "colorama" not in got[MAC313]
    assert got[WIN312]["colorama"]["version"] == "0.4.6"


# -- version choice ----------------------------------------------------------------------------


def test_newest_by_default_and_prefer_binary(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path
) -> None:
    index_server.add(make_wheel(dists_dir, "pkg", "1.0", tag="cp312-cp312-win_amd64"))
    index_server.add(make_sdist(dists_dir, "pkg", "1.0"))
    index_server.add(make_sdist(dists_dir, "pkg", "2.0"))
    got = lock(tmp_path, index_server, ["pkg"], targets=[WIN312, LINUX312])
    assert got[WIN312]["pkg"]["version"] == "2.0"
    assert got[WIN312]["pkg"]["sdist"]["name"] == "pkg-2.0.tar.gz"
    got = lock(tmp_path, index_server, ["pkg"], targets=[WIN312, LINUX312], prefer_binary=True)
    assert got[WIN312]["pkg"]["version"] == "1.0"
    assert wheel_name(got[WIN312]["pkg"]) == "pkg-1.0-cp312-cp312-win_amd64.whl"
    # Linux has no wheel at all: newest sdist still
    assert got[LINUX312]["pkg"]["version"] == "2.0"


def test_only_binary(tmp_path: Path, index_server: IndexServer, dists_dir: Path) -> None:
    index_server.add(make_wheel(dists_dir, "pkg", "1.0"))
    index_server.add(make_sdist(dists_dir, "pkg", "2.0"))
    index_server.add(make_wheel(dists_dir, "other", "1.0"))
    index_server.add(make_sdist(dists_dir, "other", "2.0"))
    got = lock(tmp_path, index_server, ["pkg", "other"], only_binary=["pkg"])[LINUX312]
    assert versions(got) == {"pkg": "1.0", "other": "2.0"}
    got = lock(tmp_path, index_server, ["pkg", "other"], only_binary=[":all:"])[LINUX312]
    assert versions(got) == {"pkg": "1.0", "other": "1.0"}


def test_extras(tmp_path: Path, index_server: IndexServer, dists_dir: Path) -> None:
    index_server.add(make_wheel(dists_dir, "pkg", "1.0", deps=["base"], extras={"x": ["xdep>=2"]}))
    index_server.add(make_wheel(dists_dir, "base", "1.0"))
    index_server.add(make_wheel(dists_dir, "xdep", "1.0"))
    index_server.add(make_wheel(dists_dir, "xdep", "2.0"))
    got = lock(tmp_path, index_server, ["pkg[x]"])[LINUX312]
    assert versions(got) == {"pkg": "1.0", "base": "1.0", "xdep": "2.0"}
    assert "marker" not in got["xdep"]  # unconditional for this target
    got = lock(tmp_path, index_server, ["pkg"])[LINUX312]
    assert set(got) == {"pkg", "base"}


def test_constraints_restrict_but_do_not_add(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path
) -> None:
    index_server.add(make_wheel(dists_dir, "pkg", "1.0", deps=["dep"]))
    index_server.add(make_wheel(dists_dir, "dep", "1.0"))
    index_server.add(make_wheel(dists_dir, "dep", "2.0"))
    index_server.add(make_wheel(dists_dir, "unrelated", "1.0"))
    cons = tmp_path / "constraints.txt"
    cons.write_text("dep<2\nunrelated==1.0\n")
    got = lock(tmp_path, index_server, ["pkg"], constraint_files=[cons])[LINUX312]
    assert versions(got) == {"pkg": "1.0", "dep": "1.0"}


def test_prereleases(tmp_path: Path, index_server: IndexServer, dists_dir: Path) -> None:
    index_server.add(make_wheel(dists_dir, "pkg", "1.0"))
    index_server.add(make_wheel(dists_dir, "pkg", "2.0b1"))
    index_server.add(make_wheel(dists_dir, "onlypre", "3.0rc1"))
    assert lock(tmp_path, index_server, ["pkg"])[LINUX312]["pkg"]["version"] == "1.0"
    assert lock(tmp_path, index_server, ["pkg"], pre=True)[LINUX312]["pkg"]["version"] == "2.0b1"
    assert lock(tmp_path, index_server, ["pkg>=2.0b1"])[LINUX312]["pkg"]["version"] == "2.0b1"
    # nothing else satisfies → the prerelease
    assert lock(tmp_path, index_server, ["onlypre"])[LINUX312]["onlypre"]["version"] == "3.0rc1"


def test_prerelease_not_taken_by_dependency_without_pre(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path
) -> None:
    index_server.add(make_wheel(dists_dir, "app", "1.0", deps=["lib>=1"]))
    index_server.add(make_wheel(dists_dir, "lib", "1.5"))
    index_server.add(make_wheel(dists_dir, "lib", "2.0a1"))
    assert lock(tmp_path, index_server, ["app"])[LINUX312]["lib"]["version"] == "1.5"


def test_yanked_only_for_exact_pins(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path
) -> None:
    index_server.add(make_wheel(dists_dir, "pkg", "1.0"))
    index_server.add(make_wheel(dists_dir, "pkg", "1.1"), yanked="broken")
    assert lock(tmp_path, index_server, ["pkg"])[LINUX312]["pkg"]["version"] == "1.0"
    with pytest.raises(ResolutionError):
        lock(tmp_path, index_server, ["pkg>=1.1"])
    assert lock(tmp_path, index_server, ["pkg==1.1"])[LINUX312]["pkg"]["version"] == "1.1"


def test_requires_python_against_target(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path
) -> None:
    index_server.add(make_wheel(dists_dir, "pkg", "1.0", requires_python=">=3.8"))
    index_server.add(make_wheel(dists_dir, "pkg", "2.0", requires_python=">=3.12"))
    got = lock(tmp_path, index_server, ["pkg"], targets=[LINUX310, LINUX312])
    assert got[LINUX310]["pkg"]["version"] == "1.0"
    assert got[LINUX312]["pkg"]["version"] == "2.0"
    assert got[LINUX312]["pkg"]["requires-python"] == ">=3.12"


def test_requires_python_on_the_host_does_not_matter(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path
) -> None:
    # the host is 3.11: a <3.11-only version must still be chosen for a cp310 target
    index_server.add(make_wheel(dists_dir, "pkg", "1.0", requires_python="<3.11"))
    index_server.add(make_wheel(dists_dir, "pkg", "0.9"))
    assert (
        lock(tmp_path, index_server, ["pkg"], targets=[LINUX310])[LINUX310]["pkg"]["version"]
        == "1.0"
    )


def test_backtracks_on_conflict(tmp_path: Path, index_server: IndexServer, dists_dir: Path) -> None:
    index_server.add(make_wheel(dists_dir, "a", "2.0", deps=["c<1"]))
    index_server.add(make_wheel(dists_dir, "a", "1.0", deps=["c>=1"]))
    index_server.add(make_wheel(dists_dir, "b", "1.0", deps=["c>=1"]))
    index_server.add(make_wheel(dists_dir, "c", "1.0"))
    index_server.add(make_wheel(dists_dir, "c", "0.5"))
    got = lock(tmp_path, index_server, ["a", "b"])[LINUX312]
    assert versions(got) == {"a": "1.0", "b": "1.0", "c": "1.0"}


# -- sdists ------------------------------------------------------------------------------------


def test_sdist_static_metadata_needs_no_build(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path
) -> None:
    """PKG-INFO 2.2 without Dynamic: deps are read from it; tinybackend is not on the index."""
    index_server.add(make_sdist(dists_dir, "pkg", "1.0", deps=["dep>=1"]))
    index_server.add(make_wheel(dists_dir, "dep", "1.0"))
    got = lock(tmp_path, index_server, ["pkg"], targets=[WIN312])[WIN312]
    assert versions(got) == {"pkg": "1.0", "dep": "1.0"}
    sdist = got["pkg"]["sdist"]
    assert sdist["name"] == "pkg-1.0.tar.gz"
    assert sdist["hashes"]["sha256"] == index_server.file("pkg-1.0.tar.gz").sha256  # type: ignore[union-attr]
    assert "wheels" not in got["pkg"]
    assert index_server.count("/simple/tinybackend/") == 0


def test_sdist_dynamic_deps_prepare_metadata(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path, tinybackend_wheel: Path
) -> None:
    index_server.add(tinybackend_wheel)
    index_server.add(make_sdist(dists_dir, "pkg", "1.0", deps=["dep"], dynamic_deps=True))
    index_server.add(make_wheel(dists_dir, "dep", "1.0"))
    got = lock(tmp_path, index_server, ["pkg"])[LINUX312]
    assert versions(got) == {"pkg": "1.0", "dep": "1.0"}
    assert any(p.startswith("/files/tinybackend-") for _, p, _ in index_server.requests)


def test_sdist_old_metadata_version_is_not_trusted(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path, tinybackend_wheel: Path
) -> None:
    """Metadata-Version 2.1 PKG-INFO may omit deps: the backend is asked."""
    index_server.add(tinybackend_wheel)
    index_server.add(make_sdist(dists_dir, "pkg", "1.0", deps=["dep"], metadata_version="2.1"))
    index_server.add(make_wheel(dists_dir, "dep", "1.0"))
    got = lock(tmp_path, index_server, ["pkg"])[LINUX312]
    assert versions(got) == {"pkg": "1.0", "dep": "1.0"}
    assert any(p.startswith("/files/tinybackend-") for _, p, _ in index_server.requests)


# -- concurrency -------------------------------------------------------------------------------


def test_metadata_fetched_concurrently(tmp_path: Path, dists_dir: Path) -> None:
    n, delay = 10, 0.2
    with IndexServer(delay=delay) as srv:
        for i in range(n):
            srv.add(make_wheel(dists_dir, f"pkg{i}", "1.0"))
        start = time.monotonic()
        got = lock(tmp_path, srv, [f"pkg{i}" for i in range(n)])[LINUX312]
        elapsed = time.monotonic() - start
    assert set(got) == {f"pkg{i}" for i in range(n)}
    # serially: one project page + one .metadata per package
    serial = n * delay * 2
    assert elapsed < 0.5 * serial, (
        f"{elapsed:.2f}s is not concurrent (serial would be {serial:.1f}s)"
    )


def test_a_dependency_tree_is_read_as_fast_as_the_index_answers(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path
) -> None:
    """Once a first choice's metadata is in, its requirements' pages are asked for at once,
    not when the resolver pins it: here the resolver decides alpha first (the names tie
    otherwise) and waits 1.5 s for alpha's metadata, while beta's whole chain (beta → one →
    two) is read meanwhile. A requirement whose marker leaves it out for the target (Linux
    only, targets Windows and macOS) is not read at all."""
    from support.server import Fault

    d = dists_dir
    index_server.add(make_wheel(d, "alpha", "1.0", deps=["alpha-dep"]))
    index_server.add(make_wheel(d, "alpha-dep", "1.0"))
    index_server.add(make_wheel(d, "beta", "1.0", deps=["beta-one"]))
    index_server.add(make_wheel(d, "beta-one", "1.0", deps=["beta-two"]))
    index_server.add(make_wheel(d, "beta-two", "1.0", deps=["beta-linux; sys_platform == 'linux'"]))
    index_server.add(make_wheel(d, "beta-linux", "1.0"))
    index_server.inject(
        Fault("/files/alpha-1.0-py3-none-any.whl.metadata", kind="slow", delay=1.5, count=None)
    )
    got = lock(tmp_path, index_server, ["alpha", "beta"], [WIN312, MAC313])
    for target in (WIN312, MAC313):
        assert versions(got[target]) == {
            "alpha": "1.0", "alpha-dep": "1.0", "beta": "1.0", "beta-one": "1.0",
            "beta-two": "1.0",
        }  # fmt: skip
    paths = [p for m, p, _ in index_server.requests if m == "GET"]
    # beta's chain was read while alpha's metadata was on its way; alpha-dep only after it
    assert paths.index("/simple/beta-two/") < paths.index("/simple/alpha-dep/")
    assert "/simple/beta-linux/" not in paths


def test_reading_ahead_never_fetches_an_sdist_for_its_metadata(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path
) -> None:
    """zeta 2.0 is what the user's ``zeta`` tries first, so its metadata is read at once; it
    requires gamma, which has only an sdist. keeper rules zeta 2.0 out before the resolver
    looks at it: gamma is never needed, and reading ahead did not download its sdist (its
    metadata could have meant a build)."""
    d = dists_dir
    index_server.add(make_wheel(d, "zeta", "1.0"))
    index_server.add(make_wheel(d, "zeta", "2.0", deps=["gamma"]))
    index_server.add(make_sdist(d, "gamma", "1.0"))
    index_server.add(make_wheel(d, "keeper", "1.0", deps=["zeta<2"]))
    got = lock(tmp_path, index_server, ["keeper", "zeta"], [WIN312])[WIN312]
    assert versions(got) == {"keeper": "1.0", "zeta": "1.0"}
    paths = [p for m, p, _ in index_server.requests if m == "GET"]
    assert "/files/zeta-2.0-py3-none-any.whl.metadata" in paths  # read ahead: it was tried first
    assert not any(p.startswith("/files/gamma-") for p in paths)


# -- indexes that say less (file:// index, PEP 503 pages without data attributes) ---------------


def _file_index(root: Path, files: Sequence[Path], *, hashes: bool = True) -> str:
    """A static PEP 503 tree on disk with bare links (no data-requires-python)."""
    import hashlib

    by_project: dict[str, list[Path]] = {}
    for f in files:
        by_project.setdefault(f.name.split("-")[0], []).append(f)
    for project, members in by_project.items():
        (root / project).mkdir(parents=True, exist_ok=True)
        links = []
        for f in members:
            frag = f"#sha256={hashlib.sha256(f.read_bytes()).hexdigest()}" if hashes else ""
            links.append(f'<a href="{f.as_uri()}{frag}">{f.name}</a><br/>')
        (root / project / "index.html").write_text(
            "<html><body>\n" + "\n".join(links) + "\n</body></html>\n"
        )
    return root.as_uri()


def _lock_url(tmp_path: Path, url: str, requirements: Sequence[str], target: str) -> dict[str, Any]:
    out = tmp_path / "wh"
    config = build_config(directory=tmp_path, requirements=list(requirements), index_urls=[url],
                          targets=[target], output=out, tools=["none"])  # fmt: skip
    api.lock(config)
    data = tomllib.loads((out / f"pylock.{target}.toml").read_text())
    Pylock.from_dict(data)
    return {p["name"]: p for p in data["packages"]}


def test_requires_python_from_metadata_when_index_is_silent(
    tmp_path: Path, dists_dir: Path
) -> None:
    files = [
        make_wheel(dists_dir, "pkg", "1.0"),
        make_wheel(dists_dir, "pkg", "2.0", requires_python=">=3.12"),
        make_sdist(dists_dir, "sd", "1.0"),
        make_sdist(dists_dir, "sd", "2.0", requires_python=">=3.12"),
    ]
    url = _file_index(tmp_path / "index", files)
    got = _lock_url(tmp_path, url, ["pkg", "sd"], LINUX310)
    # pip: "requires a different Python: 3.10.0 not in '>=3.12'"
    assert got["pkg"]["version"] == "1.0"
    assert got["sd"]["version"] == "1.0"


def test_file_index_with_hashes_works(tmp_path: Path, dists_dir: Path) -> None:
    files = [make_wheel(dists_dir, "pkg", "1.0", deps=["dep"]), make_wheel(dists_dir, "dep", "2.0")]
    url = _file_index(tmp_path / "index", files)
    got = _lock_url(tmp_path, url, ["pkg"], WIN312)
    assert {n: p["version"] for n, p in got.items()} == {"pkg": "1.0", "dep": "2.0"}


def test_index_without_hashes(tmp_path: Path, dists_dir: Path) -> None:
    import hashlib

    from wheelport.errors import WheelportError

    wheel = make_wheel(dists_dir, "pkg", "1.0")
    url = _file_index(tmp_path / "index", [wheel], hashes=False)
    try:
        got = _lock_url(tmp_path, url, ["pkg"], WIN312)
    except WheelportError:
        return  # a clear, one-line wheelport error is acceptable too
    assert (
        got["pkg"]["wheels"][0]["hashes"]["sha256"]
        == hashlib.sha256(wheel.read_bytes()).hexdigest()
    )


def test_marker_of_an_extra_dependency_is_recorded(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path
) -> None:
    index_server.add(
        make_wheel(dists_dir, "app", "1.0", extras={"x": ['xw; sys_platform == "win32"']})
    )
    index_server.add(make_wheel(dists_dir, "xw", "1.0"))
    got = lock(tmp_path, index_server, ["app[x]"], targets=[WIN312, LINUX312])
    assert "xw" not in got[LINUX312]
    assert got[WIN312]["xw"]["marker"] == 'sys_platform == "win32"'


# -- hard sets: conflicts found where they start, a search bounded by time (issue 16 item E) ----


class PinCounter(NullReporter):
    """Counts pins: a search that never gives a version up pins each package once."""

    def __init__(self) -> None:
        self.pins = 0

    def pinned(self, target: Target, candidate: Candidate) -> None:
        self.pins += 1


class FirstChoices(NullReporter):
    """Records the first choices told (from the client's threads) and the pins."""

    def __init__(self) -> None:
        self.first: list[str] = []
        self.pins: list[str] = []

    def first_choice(self, target: Target, file: Any) -> None:
        self.first.append(file.filename)

    def pinned(self, target: Target, candidate: Candidate) -> None:
        self.pins.append(candidate.file.filename)


def test_a_user_requirements_first_choice_is_told_as_its_page_arrives(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path
) -> None:
    """The file each of the user's requirements will try first is told before the search
    settles (so its download can start): the target's own wheel of the newest version the
    requirement allows — even when another requirement later rules that version out.
    A dependency's is not told: what it tries first is less often what it gets."""
    d = dists_dir
    for tag in ("cp312-cp312-win_amd64", "cp312-cp312-manylinux_2_28_x86_64"):
        index_server.add(make_wheel(d, "app", "1.0", tag=tag, deps=["lib"]))
        index_server.add(make_wheel(d, "app", "2.0", tag=tag, deps=["lib"]))
    index_server.add(make_wheel(d, "lib", "1.0"))
    index_server.add(make_wheel(d, "lib", "2.0"))
    index_server.add(make_wheel(d, "keeper", "1.0", deps=["app<2"]))
    reporter = FirstChoices()
    reqs = [parse_requirement(r, "reqs.txt:1") for r in ("app", "keeper")]
    with IndexClient([index_server.url], cache=Cache(tmp_path / "cache")) as client:
        res = resolve_target(client, parse_target(WIN312), reqs, reporter=reporter)
    assert sorted(reporter.first) == [
        "app-2.0-cp312-cp312-win_amd64.whl",
        "keeper-1.0-py3-none-any.whl",
    ]
    assert {str(n): str(p.version) for n, p in res.pins.items()} == {
        "app": "1.0", "keeper": "1.0", "lib": "2.0"
    }  # fmt: skip
    assert "app-1.0-cp312-cp312-win_amd64.whl" in reporter.pins


def resolve_hard(
    srv: IndexServer,
    tmp_path: Path,
    requirements: Sequence[str],
    *,
    reporter: Reporter | None = None,
    policy: Policy | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, str]:
    reqs = [parse_requirement(r, "reqs.txt:1") for r in requirements]
    with IndexClient([srv.url], cache=Cache(tmp_path / "cache")) as client:
        got = resolve_target(client, parse_target(WIN312), reqs, policy=policy or Policy(),
                             reporter=reporter, clock=clock)  # fmt: skip
    return {name: str(pin.version) for name, pin in got.pins.items()}


def add_hard_set(srv: IndexServer, dists_dir: Path, *, pin: bool, users: int = 4) -> list[str]:
    """The shape of the MiniGPT-4 set at small scale: ``top``'s newer versions need a ``mid``
    that needs a newer ``shared`` than the user's pin (``pin``) or than ``lib`` allows; ``users``
    unrelated projects with 8 versions each depend on ``shared`` too. Old resolvelib habits
    backtrack through every combination of those (8**users) before touching ``top``."""
    for v in ("1.0", "2.0", "3.0"):
        srv.add(make_wheel(dists_dir, "shared", v))
        srv.add(make_wheel(dists_dir, "top", v, deps=[f"mid>={v}"]))
    srv.add(make_wheel(dists_dir, "mid", "3.0", deps=["shared>=3"]))
    srv.add(make_wheel(dists_dir, "mid", "2.0", deps=["shared>=2"]))
    srv.add(make_wheel(dists_dir, "mid", "1.0", deps=["shared"]))
    srv.add(make_wheel(dists_dir, "lib", "1.0", deps=["shared<2"]))
    for i in range(users):
        for v in range(1, 9):
            srv.add(make_wheel(dists_dir, f"user{i}", f"{v}.0", deps=["shared"]))
    return ["shared==1.0" if pin else "lib", "top", *(f"user{i}" for i in range(users))]


def test_versions_a_pin_rules_out_are_never_tried(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path
) -> None:
    """mid 3.0 and 2.0 need shared>=2, the user pins shared==1.0: they are never offered, so
    top 3.0 and 2.0 fail at once (no mid for them) and nothing is pinned and given up."""
    requirements = add_hard_set(index_server, dists_dir, pin=True)
    counter = PinCounter()
    got = resolve_hard(index_server, tmp_path, requirements, reporter=counter)
    assert got == {"shared": "1.0", "top": "1.0", "mid": "1.0",
                   **{f"user{i}": "8.0" for i in range(4)}}  # fmt: skip
    assert counter.pins == len(got)


def test_a_project_rejected_again_and_again_is_decided_first(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path
) -> None:
    """No user pin this time: lib 1.0 (shared<2) rejects mid 3.0 and 2.0. After a few such
    rejections mid is decided right after its parent (uv's rule), so backtracking walks top
    down instead of trying every combination of user0..3; their newest versions stay."""
    requirements = add_hard_set(index_server, dists_dir, pin=False)
    counter = PinCounter()
    got = resolve_hard(index_server, tmp_path, requirements, reporter=counter)
    assert got == {"lib": "1.0", "shared": "1.0", "top": "1.0", "mid": "1.0",
                   **{f"user{i}": "8.0" for i in range(4)}}  # fmt: skip
    assert counter.pins < 60, counter.pins  # the old order: over 10,000 and no answer


class _Plain(Mapping[str, Any]):
    """resolvelib's view of the criteria's requirements, without the criteria behind it."""

    def __init__(self, view: Mapping[str, Any]) -> None:
        self._view = view

    def __getitem__(self, name: str) -> Any:
        return self._view[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._view)

    def __len__(self) -> int:
        return len(self._view)


def test_the_next_project_is_chosen_in_one_pass_as_the_preference_orders_them(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The provider picks the project to decide next itself (resolvelib's
    ``narrow_requirement_selection``), so resolvelib asks for no preference per project per
    round. Each pick is the one resolvelib would have made (the least ``get_preference``),
    through backtracking and the conflict ranks it changes, on a Windows target (also when the
    view it is given has no resolvelib criteria behind it to remember them by); the pins are
    those of the search before."""
    from wheelport import resolve

    asked: list[str] = []
    picks: list[tuple[list[str], list[str], str]] = []
    get_preference = resolve.Provider.get_preference
    narrow = resolve.Provider.narrow_requirement_selection

    def counting(self: Any, identifier: str, *args: Any, **kwargs: Any) -> Any:
        asked.append(identifier)
        return get_preference(self, identifier, *args, **kwargs)

    def checked(self: Any, identifiers: Any, resolutions: Any, candidates: Any,
                information: Any, backtrack_causes: Any) -> Any:  # fmt: skip
        names = list(identifiers)
        got = list(narrow(self, names, resolutions, candidates, information, backtrack_causes))
        # a view without resolvelib's criteria behind it: each preference read afresh, the same
        plain = _Plain(information)
        assert list(narrow(self, names, resolutions, candidates, plain, backtrack_causes)) == got
        least = min(names, key=lambda n: get_preference(
            self, n, resolutions, candidates, information, backtrack_causes))  # fmt: skip
        picks.append((names, got, least))
        return got

    monkeypatch.setattr(resolve.Provider, "get_preference", counting)
    monkeypatch.setattr(resolve.Provider, "narrow_requirement_selection", checked)
    requirements = add_hard_set(index_server, dists_dir, pin=False)
    got = resolve_hard(index_server, tmp_path, requirements, reporter=PinCounter())
    assert got == {"lib": "1.0", "shared": "1.0", "top": "1.0", "mid": "1.0",
                   **{f"user{i}": "8.0" for i in range(4)}}  # fmt: skip
    assert asked == []  # resolvelib never asked: one name came back each round
    assert len(picks) > 10 and any(len(names) > 3 for names, _, _ in picks)
    for names, got_names, least in picks:
        assert got_names == [least], (names, got_names)


def test_each_pin_is_checked_against_a_criterion_once_with_the_pins_of_resolvelibs_own_search(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """resolvelib checks every pin against every requirement on it, every round. The search
    remembers each answer for the criterion and pin it was given for: on a Windows target,
    through backtracking and a chain of 30 projects, it asks the provider a fraction of the
    checks resolvelib's own search asks, and pins the same versions; also when what it
    remembers is dropped every few checks."""
    import resolvelib

    from wheelport import resolve

    requirements = add_hard_set(index_server, dists_dir, pin=False)
    for i in range(30):
        deps = [f"chain{i + 1}"] if i < 29 else ["shared"]
        index_server.add(make_wheel(dists_dir, f"chain{i}", "1.0", deps=deps))
    checks: list[str] = []
    satisfied = resolve.Provider.is_satisfied_by

    def counting(self: Any, requirement: Any, candidate: Any) -> bool:
        checks.append(requirement.name)
        return satisfied(self, requirement, candidate)

    monkeypatch.setattr(resolve.Provider, "is_satisfied_by", counting)

    def run() -> tuple[dict[str, str], int]:
        checks.clear()
        return resolve_hard(index_server, tmp_path, [*requirements, "chain0"]), len(checks)

    remembered, asked = run()
    monkeypatch.setattr(resolve, "_CRITERIA_KEPT", 8)
    forgetful, _ = run()
    monkeypatch.setattr(resolve, "_Resolver", resolvelib.Resolver)
    stock, stock_asked = run()
    assert remembered == forgetful == stock
    assert remembered["top"] == "1.0" and remembered["chain29"] == "1.0"
    assert len(remembered) == 8 + 30
    assert asked * 4 < stock_asked, (asked, stock_asked)


def test_what_a_projects_requirements_ask_is_read_once_per_criterion(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each round the next project is the least preference among all undecided ones, and a
    preference reads every requirement on the project. What they ask is remembered for the
    criterion they belong to (never changed once made): on a Windows target, through
    backtracking and a project with 40 dependencies, they are read for a fraction of the
    preferences ranked, and the pins are the same when it is forgotten every few criteria."""
    from wheelport import resolve

    requirements = add_hard_set(index_server, dists_dir, pin=False)
    index_server.add(make_wheel(dists_dir, "fan", "1.0", deps=[f"leaf{i}" for i in range(40)]))
    for i in range(40):
        index_server.add(make_wheel(dists_dir, f"leaf{i}", "1.0", deps=["shared"]))
    reads: list[int] = []
    ranked: list[str] = []
    what_is_asked, rank = resolve.Provider._what_is_asked, resolve.Provider._ranked

    def reading(self: Any, infos: Any) -> Any:
        reads.append(1)
        return what_is_asked(self, infos)

    def ranking(self: Any, identifier: str, asked: Any) -> Any:
        ranked.append(identifier)
        return rank(self, identifier, asked)

    monkeypatch.setattr(resolve.Provider, "_what_is_asked", reading)
    monkeypatch.setattr(resolve.Provider, "_ranked", ranking)
    remembered = resolve_hard(index_server, tmp_path, [*requirements, "fan"])
    assert len(ranked) > 500 and len(reads) * 5 < len(ranked), (len(reads), len(ranked))
    monkeypatch.setattr(resolve, "_CRITERIA_KEPT", 4)
    reads.clear()
    ranked.clear()
    forgetful = resolve_hard(index_server, tmp_path, [*requirements, "fan"])
    assert forgetful == remembered and len(remembered) == 8 + 41
    assert len(reads) * 5 > len(ranked)  # read again once forgotten


def test_giving_up_names_the_conflict_met_most(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path
) -> None:
    """The bound is time: a clock that advances one second per look runs out after a few
    rounds; the one line names both sides of the conflict and where each comes from."""
    requirements = add_hard_set(index_server, dists_dir, pin=False)
    ticks = itertools.count()
    with pytest.raises(ResolutionError) as info:
        resolve_hard(index_server, tmp_path, requirements, policy=Policy(time_limit=12),
                     clock=lambda: float(next(ticks)))  # fmt: skip
    err = info.value
    assert err.message.startswith(f"resolution for target {WIN312} gave up after ")
    assert "(its 12 s limit); the conflict it met most (" in err.message
    assert err.message.endswith(
        "mid 3.0 (via top 3.0) requires shared>=3, but lib 1.0 requires shared<2"
    )
    assert err.package == "shared"
    assert err.hint is not None and "--resolve-timeout" in err.hint


def test_a_conflict_names_only_the_requirements_that_clash(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path
) -> None:
    """resolvelib's causes list every requirement on the project; the line keeps the two
    that leave no version together, each with the path that brought it in."""
    index_server.add(make_wheel(dists_dir, "shared", "1.0"))
    index_server.add(make_wheel(dists_dir, "shared", "2.0"))
    index_server.add(make_wheel(dists_dir, "a", "1.0", deps=["shared<2", "b"]))
    index_server.add(make_wheel(dists_dir, "b", "1.0", deps=["shared>=2"]))
    for name in ("u1", "u2", "u3"):
        index_server.add(make_wheel(dists_dir, name, "1.0", deps=["shared"]))
    with pytest.raises(ResolutionError) as info:
        resolve_hard(index_server, tmp_path, ["u1", "u2", "a", "u3"])
    message = info.value.message
    assert message.startswith(f"conflicting requirements for target {WIN312}: ")
    assert "a 1.0 requires shared<2" in message
    assert "b 1.0 (via a 1.0) requires shared>=2" in message
    assert "u1" not in message and "u2" not in message and "u3" not in message


def test_every_version_a_pin_rules_out_is_explained(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path
) -> None:
    requirements = add_hard_set(index_server, dists_dir, pin=True, users=0)
    with pytest.raises(ResolutionError) as info:
        resolve_hard(index_server, tmp_path, [*requirements, "mid>=2"])
    assert info.value.message == (
        f"no version of mid that mid>=2 allows fits your other requirements for target "
        f"{WIN312}: mid 3.0 requires shared>=3, but you ask for shared==1.0 (reqs.txt:1) "
        "(and 1 more version(s) likewise)"
    )


def test_version_as_the_chosen_file_spells_it(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path
) -> None:
    """PyPI's cffi page lists ``cffi-1.0.2-2.tar.gz`` (an old file whose version reads as 2)
    before cffi 2.0.0's wheels; 2 == 2.0.0, so a page groups them together. The lock says
    2.0.0, as the chosen wheel (and pip and uv) spell it."""
    import dataclasses

    odd = make_sdist(dists_dir, "pkg", "1.0.2")
    odd = odd.rename(odd.with_name("pkg-1.0.2-2.tar.gz"))
    index_server.add(odd)
    with index_server._lock:
        index_server._files[odd.name] = dataclasses.replace(
            index_server._files[odd.name], project="pkg", version="2"
        )
    index_server.add(make_wheel(dists_dir, "pkg", "2.0.0"))
    got = lock(tmp_path, index_server, ["pkg"])[LINUX312]
    assert got["pkg"]["version"] == "2.0.0"
    assert wheel_name(got["pkg"]) == "pkg-2.0.0-py3-none-any.whl"


# -- a project with no file for the target -------------------------------------------------------

MUSL311 = "cp311-musllinux_1_2_x86_64"  # unlike the host: no wheel of this index serves it
MANY = "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64"


def _no_file(
    tmp_path: Path, srv: IndexServer, requirement: str, policy: Policy | None = None
) -> str:
    with pytest.raises(ResolutionError) as info:
        reqs = [parse_requirement(requirement, "reqs.txt:1")]
        with IndexClient([srv.url], cache=Cache(tmp_path / "cache")) as client:
            resolve_target(client, parse_target(MUSL311), reqs, policy=policy or Policy())
    assert info.value.package == "lz" and info.value.target == MUSL311
    return info.value.message


def test_no_file_for_the_target_names_the_versions_why_and_what_their_wheels_serve(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path
) -> None:
    """lz4 for musllinux with --only-binary (issue 17): the line said "available:" of versions
    that had no file for the target and counted versions twice (7 here, counted 4 + 5). It says
    which versions exist, that none has a file for the target, why — each version counted
    once — and which targets the wheels serve."""
    for v in ("0.1", "0.2"):  # a Windows wheel only
        index_server.add(make_wheel(dists_dir, "lz", v, tag="cp311-cp311-win_amd64"))
    for v in ("1.0", "1.1", "1.2"):  # an sdist only
        index_server.add(make_sdist(dists_dir, "lz", v))
    for v in ("2.0", "2.1"):  # wheels for three other platforms, and an sdist
        for tag in (MANY, "cp311-cp311-win_amd64", "cp311-cp311-macosx_11_0_arm64"):
            index_server.add(make_wheel(dists_dir, "lz", v, tag=tag))
        index_server.add(make_sdist(dists_dir, "lz", v))
    binary = Policy(only_binary=frozenset({":all:"}))
    assert _no_file(tmp_path, index_server, "lz", binary) == (
        f"no version of lz satisfies lz for target {MUSL311}: none of the 7 version(s) it has "
        "(0.1 … 2.1) has a file for this target; 2 version(s) have only wheels for other "
        "targets; 3 have only an sdist, which --only-binary excludes; 2 have wheels for other "
        "targets and an sdist, which --only-binary excludes; the wheels are for cp311 on "
        "win_amd64, macosx_11_0_arm64, manylinux_2_17_x86_64"
    )
    assert _no_file(tmp_path, index_server, "lz>=1.1", binary) == (
        f"no version of lz satisfies lz>=1.1 for target {MUSL311}: none of the 4 of its 7 "
        "versions that lz>=1.1 allows (1.1, 1.2, 2.0, 2.1) has a file for this target; 2 "
        "version(s) have only an sdist, which --only-binary excludes; 2 have wheels for other "
        "targets and an sdist, which --only-binary excludes; the wheels are for cp311 on "
        "macosx_11_0_arm64, manylinux_2_17_x86_64, win_amd64"
    )
    # without --only-binary an sdist serves every target
    got = resolve_hard_for(tmp_path, index_server, "lz", MUSL311)
    assert got == {"lz": "2.1"}


def test_no_file_counts_every_version_once_whatever_rules_it_out(
    tmp_path: Path, index_server: IndexServer, dists_dir: Path
) -> None:
    index_server.add(make_wheel(dists_dir, "lz", "1.0", tag="cp311-cp311-win_amd64"))
    index_server.add(make_wheel(dists_dir, "lz", "2.0", tag=MANY))
    index_server.add(make_wheel(dists_dir, "lz", "2.0", tag="cp312-cp312-musllinux_1_2_x86_64"))
    index_server.add(make_wheel(dists_dir, "lz", "3.0", requires_python=">=3.12"))
    index_server.add(make_sdist(dists_dir, "lz", "4.0"), yanked="broken")
    assert _no_file(tmp_path, index_server, "lz") == (
        f"no version of lz satisfies lz for target {MUSL311}: none of the 4 version(s) it has "
        "(1.0, 2.0, 3.0, 4.0) has a file for this target; 2 version(s) have only wheels for other "
        "targets; 1 excludes Python 3.11.0; 1 is yanked; the wheels are for cp311, cp312 on "
        "manylinux_2_17_x86_64, musllinux_1_2_x86_64, win_amd64"
    )
    # an exact pin may take a yanked file (PEP 592): then the sdist serves
    assert resolve_hard_for(tmp_path, index_server, "lz==4.0", MUSL311) == {"lz": "4.0"}


def resolve_hard_for(tmp_path: Path, srv: IndexServer, requirement: str, target: str) -> Any:
    reqs = [parse_requirement(requirement, "reqs.txt:1")]
    with IndexClient([srv.url], cache=Cache(tmp_path / "cache")) as client:
        got = resolve_target(client, parse_target(target), reqs)
    return {name: str(pin.version) for name, pin in got.pins.items()}


def test_no_file_when_some_version_has_one_counts_it_and_the_rest() -> None:
    """The line is read from what the search learned (a stand-in here): a version with a file
    for the target that the search could not use is counted apart from those with none; a
    requirement no version satisfies lists what there is."""
    from dataclasses import dataclass, field

    from packaging.requirements import Requirement
    from packaging.version import Version

    from wheelport.explain import no_file
    from wheelport.index.models import make_file
    from wheelport.selection import Why

    def file(name: str) -> Any:
        return make_file(filename=name, url=f"https://i.example/{name}", project="lz",
                         index_url="https://i.example/simple/")  # fmt: skip

    @dataclass
    class Learned:
        target: Target = field(default_factory=lambda: parse_target(MUSL311))
        policy: Policy = field(default_factory=Policy)
        why: dict[str, Why] = field(default_factory=dict)

        def files_of(self, name: str) -> dict[Version, list[Any]]:
            return {
                Version("1.0"): [file("lz-1.0-py3-none-any.whl")],
                Version("2.0"): [file("lz-2.0-cp311-cp311-win_amd64.whl")],
                Version("3.0"): [file("lz-3.0-cp311-cp311-win_amd64.whl")],
            }

        def left_out(self, name: str) -> str:
            return ""

    search: Any = Learned()
    assert no_file("lz", "lz", [Requirement("lz")], search).message == (
        f"no version of lz satisfies lz for target {MUSL311}: 1 of the 3 version(s) it has "
        "(1.0, 2.0, 3.0) has a file for this target, which the search could not use; 2 have "
        "only wheels for other targets; the wheels are for cp311 on win_amd64"
    )
    assert no_file("lz", "lz>=4", [Requirement("lz>=4")], search).message == (
        f"no version of lz satisfies lz>=4 for target {MUSL311} (available: 1.0, 2.0, 3.0)"
    )
