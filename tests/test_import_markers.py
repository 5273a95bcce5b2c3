"""Markers of source locks: evaluated for a target and the selection, and what of them is left
for wheelport's own lock (which plain installers read without selecting any group)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from packaging.markers import Marker

from wheelport.errors import UsageError
from wheelport.importers import load
from wheelport.importers.markers import for_target_lock, marker_holds
from wheelport.targets import parse_targets

ENVS = {t.identifier: dict(t.markers) for t in parse_targets(
    ["cp312-win_amd64", "cp313-macosx_11_0_arm64", "cp310-manylinux_2_28_x86_64"])}  # fmt: skip

MARKERS = [
    "'dev' in dependency_groups",
    "('dev' in dependency_groups) and (sys_platform == 'linux')",
    "sys_platform == 'win32' and \"dev\" in dependency_groups",
    "(sys_platform == 'darwin') or ('dev' in dependency_groups and python_version < '3.11')",
    "'docs' not in dependency_groups and platform_machine == 'arm64'",
    "extra == 'fast' and sys_platform != 'win32'",
    "'fast' in extras or os_name == 'nt'",
    "python_version >= '3.12'",
]
SELECTIONS = [((), ()), ((), ("dev",)), (("fast",), ("default", "docs")), (("fast",), ("dev",))]


@pytest.mark.parametrize("marker", MARKERS)
def test_what_is_left_holds_exactly_where_the_marker_holds(marker: str) -> None:
    checked = 0
    for extras, groups in SELECTIONS:
        holds = {
            t: marker_holds(marker, env, extras=extras, groups=groups) for t, env in ENVS.items()
        }
        if not any(holds.values()):
            continue  # no target selects the pin: nothing of it reaches a lock
        checked += 1
        left = for_target_lock(marker, extras=extras, groups=groups)
        if left is None:
            assert all(holds.values()), (marker, extras, groups)
            continue
        # the selection is decided: a plain installer, selecting nothing, evaluates the rest
        assert not {"dependency_groups", "extras", "extra"} & set(left.replace("(", " ").split())
        for t, env in ENVS.items():
            assert Marker(left).evaluate(env, "lock_file") == holds[t], (marker, left, t)
    assert checked, marker


def test_what_is_left_as_written() -> None:
    groups = ("default", "dev")
    assert for_target_lock("'dev' in dependency_groups", groups=groups) is None
    assert (
        for_target_lock("('dev' in dependency_groups) and (sys_platform == 'win32')", groups=groups)
        == 'sys_platform == "win32"'
    )
    assert (
        for_target_lock(
            "(sys_platform == 'linux') or (('dev' in dependency_groups) and (os_name == 'nt'))",
            groups=groups,
        )
        == 'sys_platform == "linux" or os_name == "nt"'
    )
    assert for_target_lock("(sys_platform == 'linux') or ('dev' in dependency_groups)", groups=groups) is None  # fmt: skip
    assert for_target_lock("sys_platform == 'linux'") == "sys_platform == 'linux'"  # untouched
    assert for_target_lock(None) is None


def test_a_marker_that_cannot_be_evaluated_is_bad_input() -> None:
    with pytest.raises(UsageError) as info:
        marker_holds("'a' in nonsense_name", ENVS["cp312-win_amd64"], origin="x/Pipfile.lock")
    assert "x/Pipfile.lock: marker" in str(info.value) and "\n" not in str(info.value)
    assert info.value.return_code == 2


def test_a_lock_with_a_broken_marker_is_refused_naming_it(tmp_path: Path) -> None:
    lock = tmp_path / "Pipfile.lock"
    develop = {"devtool": {"version": "==1.0", "markers": "'dev' in dependency_groups and"}}
    lock.write_text(json.dumps({"_meta": {"sources": []}, "default": {}, "develop": develop}))
    with pytest.raises(UsageError) as info:
        load(lock)
    text = str(info.value)
    assert "malformed Pipfile.lock" in text and "'dev' in dependency_groups and" in text, text
    assert "\n" not in text and info.value.return_code == 2
