"""``merge``: wheelhouses synced per target (as a CI matrix would) equal one synced for all."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.dists import make_wheel
from support.server import IndexServer
from wheelport.config import build_config
from wheelport.errors import ExportError, UsageError
from wheelport.export.merge import merge
from wheelport.sync import sync
from wheelport.verify import verify
from wheelport.wheelhouse import sha256_file

WIN = "cp312-win_amd64"
MAC = "cp39-macosx_11_0_arm64"
LINUX = "cp311-manylinux_2_28_x86_64"
#: remember file mtimes and stat stamps: run-specific by design, not part of the wheelhouse
INDEX_STATE = "simple/.wheelport-index.json"
STATE = {INDEX_STATE, ".wheelport-stamps.json"}


def _files(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).as_posix() not in STATE
    }


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Wheelhouses from one index: one per target and one for all targets (read-only to tests)."""
    tmp_path = tmp_path_factory.mktemp("synced")
    dists = tmp_path / "dists"
    out: dict[str, Path] = {}
    with pytest.MonkeyPatch.context() as mp, IndexServer() as index:
        mp.setenv("WHEELPORT_CACHE_DIR", str(tmp_path / "cache"))
        index.add(make_wheel(dists, "app", "1.0", deps=["lib", "winonly; sys_platform == 'win32'"]))
        index.add(make_wheel(dists, "lib", "2.0", requires_python=">=3.8"))
        index.add(make_wheel(dists, "lib", "2.0", tag="cp312-cp312-win_amd64"))
        index.add(make_wheel(dists, "lib", "2.0", tag="cp39-cp39-macosx_11_0_arm64"))
        index.add(make_wheel(dists, "lib", "2.0", tag="cp311-cp311-manylinux_2_17_x86_64"))
        index.add(make_wheel(dists, "winonly", "0.5"))
        runs = {"win": [WIN], "mac": [MAC], "linux": [LINUX], "all": [WIN, MAC, LINUX]}
        for name, targets in runs.items():
            config = build_config(
                directory=tmp_path, requirements=["app"], index_urls=[index.url],
                targets=targets, output=tmp_path / name, tools=["none"],
            )  # fmt: skip
            sync(config)
            out[name] = tmp_path / name
        yield out


def test_merge_equals_one_sync_for_all_targets(synced: dict[str, Path], tmp_path: Path) -> None:
    merged = tmp_path / "merged"
    report = merge([synced["win"], synced["mac"], synced["linux"]], merged)
    assert report.targets == sorted([WIN, MAC, LINUX])
    assert report.locks == 3
    # the per-target wheelhouses really differ from each other (the test is not vacuous)
    assert "wheels/winonly-0.5-py3-none-any.whl" in _files(synced["win"])
    assert "wheels/winonly-0.5-py3-none-any.whl" not in _files(synced["mac"])
    assert _files(synced["win"]) != _files(synced["all"])
    # same files, same hashes, same index pages, same locks and manifest
    assert _files(merged) == _files(synced["all"])
    for page in ("simple/index.html", "simple/lib/index.html", "simple/lib/index.json"):
        assert (merged / page).read_bytes() == (synced["all"] / page).read_bytes()
    assert json.loads((merged / "wheelport.json").read_text()) == json.loads(
        (synced["all"] / "wheelport.json").read_text()
    )
    assert verify(merged).ok


def test_merge_again_is_a_no_op_and_accepts_the_output_as_input(
    synced: dict[str, Path], tmp_path: Path
) -> None:
    merged = tmp_path / "merged"
    first = merge([synced["win"], synced["mac"]], merged)
    assert first.copied + first.linked == first.artifacts > 0
    before = _files(merged)
    again = merge([synced["win"], synced["mac"]], merged)
    assert again.copied == again.linked == 0 and again.present == first.artifacts
    assert _files(merged) == before
    # merging the third into the existing result gives the all-targets wheelhouse
    merge([synced["linux"]], merged)
    assert _files(merged) == _files(synced["all"])


def test_same_file_different_hash_is_a_conflict(synced: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(synced["win"], other)
    rel = "wheels/lib-2.0-cp312-cp312-win_amd64.whl"
    rebuilt = make_wheel(
        tmp_path / "rebuilt", "lib", "2.0", tag="cp312-cp312-win_amd64", summary="rebuilt"
    )
    shutil.copyfile(rebuilt, other / rel)
    manifest = json.loads((other / "wheelport.json").read_text())
    old_sha = manifest["artifacts"][rel]["sha256"]
    new_sha = sha256_file(other / rel)
    assert old_sha != new_sha
    manifest["artifacts"][rel]["sha256"] = new_sha
    manifest["artifacts"][rel]["size"] = (other / rel).stat().st_size
    (other / "wheelport.json").write_text(json.dumps(manifest))
    with pytest.raises(ExportError) as info:
        merge([synced["win"], other], tmp_path / "merged")
    message = str(info.value)
    assert rel in message and old_sha in message and new_sha in message
    assert not (tmp_path / "merged").exists()


def test_same_lock_different_content_is_a_conflict(synced: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(synced["mac"], other)
    lock = other / f"pylock.{MAC}.toml"
    lock.write_text(lock.read_text() + "\n# edited\n")
    with pytest.raises(ExportError, match=f"pylock.{MAC}.toml"):
        merge([synced["mac"], other], tmp_path / "merged")


def test_a_tampered_source_file_is_refused(synced: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(synced["mac"], other)
    wheel = other / "wheels" / "lib-2.0-cp39-cp39-macosx_11_0_arm64.whl"
    data = bytearray(wheel.read_bytes())
    data[len(data) // 2] ^= 0xFF
    wheel.write_bytes(bytes(data))
    with pytest.raises(ExportError, match=re.escape("lib-2.0-cp39-cp39-macosx_11_0_arm64.whl")):
        merge([synced["win"], other], tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_inputs_must_be_wheelhouses(synced: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(UsageError, match="not a wheelhouse"):
        merge([synced["win"], tmp_path / "plain"], tmp_path / "merged")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not empty"):
        merge([synced["win"]], busy)


def test_cli_merge(
    synced: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from wheelport.cli import cli, main
    from wheelport.export.commands import COMMANDS

    for command in COMMANDS:
        if command.name not in cli.commands:
            cli.add_command(command)
    merged = tmp_path / "merged"
    main(
        ["merge", str(synced["win"]), str(synced["linux"]), "-o", str(merged), "--json"]
    )  # no exit: 0
    data = json.loads(capsys.readouterr().out)
    assert data["targets"] == sorted([WIN, LINUX])
    with pytest.raises(SystemExit) as failed:
        main(["merge", str(tmp_path / "nope"), "-o", str(tmp_path / "m2")])
    assert failed.value.code == 2
    assert "not a wheelhouse" in capsys.readouterr().err
