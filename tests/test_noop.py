"""A no-op sync costs stat calls, not hashes: a file is hashed only when its stat stamp changed
since it was last verified (``.wheelport-stamps.json``, as git's index); ``verify`` hashes all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from support.dists import make_sdist, make_wheel
from support.server import IndexServer
from wheelport import fetch
from wheelport.cli import main
from wheelport.verify import verify
from wheelport.wheelhouse import sha256_file


def _run(*argv: str) -> None:
    try:
        main(list(argv))
    except SystemExit as done:
        assert done.code in (0, None), done.code


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the wheelhouse files the sync stages hash."""
    seen: list[str] = []
    real: Callable[[Path], str] = fetch.sha256_file

    def counting(path: Path) -> str:
        seen.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(fetch, "sha256_file", counting)
    return seen


def test_a_noop_sync_hashes_nothing_and_a_changed_file_is_hashed_and_repaired(
    tmp_path: Path, dists_dir: Path, tinybackend_wheel: Path, hashed: list[str]
) -> None:
    with IndexServer() as srv:
        srv.add(tinybackend_wheel)
        for name in ("alpha", "beta", "gamma"):
            srv.add(make_wheel(dists_dir, name, "1.0"))
        srv.add(make_sdist(dists_dir, "built", "1.0"))  # a wheel the stage builds
        wh = tmp_path / "wh"
        argv = ("sync", "alpha", "beta", "gamma", "built", "--index-url", srv.url, "-o", str(wh),
                "--tool", "none", "-t", "cp311-win_amd64", "-t", "cp39-macosx_11_0_arm64", "-q")  # fmt: skip
        _run(*argv)
        assert (wh / ".wheelport-stamps.json").is_file()
        hashed.clear()
        _run(*argv)
        assert hashed == [], f"a no-op sync hashed {hashed}"

        # bytes changed in place, size and mtime put back: the ctime still moved
        victim = wh / "wheels" / "beta-1.0-py3-none-any.whl"
        st = victim.stat()
        data = bytearray(victim.read_bytes())
        data[100] ^= 0xFF
        victim.write_bytes(bytes(data))
        os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert victim.stat().st_size == st.st_size and victim.stat().st_mtime_ns == st.st_mtime_ns
        hashed.clear()
        _run(*argv)
        assert hashed.count(victim.name) == 1 and set(hashed) == {victim.name}, hashed
        assert sha256_file(victim) == srv.file(victim.name).sha256  # type: ignore[union-attr]
        assert verify(wh).ok


#: what only resolving, reading an index's pages or metadata, or opening archives needs
_NOT_FOR_A_NOOP = ("wheelport.resolve", "resolvelib", "wheelport.importers",
                   "wheelport.index.parse", "wheelport.index.sources",
                   "wheelport.index.metadata", "email.parser", "tarfile")  # fmt: skip

_LOADED = """
import json, sys
from wheelport.cli import main
try:
    main(sys.argv[1:])
except SystemExit as done:
    assert done.code in (0, None), done.code
print(json.dumps(sorted(sys.modules)))
"""


def _loaded_by_sync(*argv: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", _LOADED, *argv], check=True,
                         capture_output=True, text=True).stdout  # fmt: skip
    return set(json.loads(out.splitlines()[-1]))


def test_a_noop_sync_loads_neither_the_resolver_nor_the_index_readers(
    tmp_path: Path, dists_dir: Path
) -> None:
    """Start-up is most of a no-op's time: it imports what checking locks, stamps and pages
    takes, not the resolver or the readers of pages, metadata and archives (a stale lock
    loads them: the check is not vacuous)."""
    with IndexServer() as srv:
        srv.add(make_wheel(dists_dir, "alpha", "1.0", deps=["beta>=1"]))
        srv.add(make_wheel(dists_dir, "beta", "1.0"))
        srv.add(make_wheel(dists_dir, "gamma", "1.0"))
        wh = tmp_path / "wh"
        argv = ["sync", "alpha", "--index-url", srv.url, "-o", str(wh), "--tool", "none",
                "-t", "cp39-win_amd64", "-t", "cp313-macosx_11_0_arm64", "-q"]  # fmt: skip
        first = _loaded_by_sync(*argv)
        assert set(_NOT_FOR_A_NOOP) - {"wheelport.importers"} <= first  # (those: for --from)
        assert sorted(p.name for p in (wh / "wheels").glob("*.whl")) == [
            "alpha-1.0-py3-none-any.whl", "beta-1.0-py3-none-any.whl"]  # fmt: skip

        noop = _loaded_by_sync(*argv)
        assert sorted(noop & set(_NOT_FOR_A_NOOP)) == []
        assert "wheelport.sync" in noop and "wheelport.site.writer" in noop

        stale = _loaded_by_sync(*argv[:2], "gamma", *argv[2:])  # another requirement
        assert {"wheelport.resolve", "wheelport.index.parse"} <= stale
        assert (wh / "wheels" / "gamma-1.0-py3-none-any.whl").is_file()
