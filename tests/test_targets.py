"""Targets: every accepted form parses, tag order, marker environments, bad forms.

The host is cp311 manylinux_2_36 x86_64; every rule is checked with targets unlike it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.tags import Tag, parse_tag

from wheelport.errors import TargetError, UsageError
from wheelport.targets import host_target, parse_target, parse_targets

ACCEPTED = [
    # (text, identifier, os, arch, policy, python)
    (
        "cp312-manylinux_2_28_x86_64",
        "cp312-manylinux_2_28_x86_64",
        "manylinux",
        "x86_64",
        (2, 28),
        (3, 12),
    ),
    (
        "cp311-musllinux_1_2_aarch64",
        "cp311-musllinux_1_2_aarch64",
        "musllinux",
        "aarch64",
        (1, 2),
        (3, 11),
    ),
    ("cp312-win_amd64", "cp312-win_amd64", "windows", "AMD64", None, (3, 12)),
    ("cp313-macosx_11_0_arm64", "cp313-macosx_11_0_arm64", "macos", "arm64", (11, 0), (3, 13)),
    ("cp310-linux_x86_64", "cp310-linux_x86_64", "linux", "x86_64", None, (3, 10)),
    (
        "cp313t-manylinux_2_28_x86_64",
        "cp313t-manylinux_2_28_x86_64",
        "manylinux",
        "x86_64",
        (2, 28),
        (3, 13),
    ),
    (
        "cp312-manylinux2014_aarch64",
        "cp312-manylinux_2_17_aarch64",
        "manylinux",
        "aarch64",
        (2, 17),
        (3, 12),
    ),
    ("cp39-macosx_10_9_x86_64", "cp39-macosx_10_9_x86_64", "macos", "x86_64", (10, 9), (3, 9)),
]


@pytest.mark.parametrize(("text", "ident", "os_", "arch", "policy", "py"), ACCEPTED)
def test_accepted_forms_parse(
    text: str, ident: str, os_: str, arch: str, policy: tuple[int, int] | None, py: tuple[int, int]
) -> None:
    t = parse_target(text)
    assert t.identifier == ident
    assert t.os == os_
    assert t.arch == arch
    assert t.policy_version == policy
    assert t.python_version == py
    assert t.free_threaded == text.startswith("cp313t")
    # the identifier round-trips
    assert parse_target(t.identifier) == t


def test_host_is_this_interpreter() -> None:
    t = parse_target("host")
    assert t == host_target()
    assert t.python_version == sys.version_info[:2]
    assert t.markers["python_full_version"] == ".".join(map(str, sys.version_info[:3]))
    assert t.identifier.startswith(f"cp{sys.version_info[0]}{sys.version_info[1]}-")


def _strs(tags: tuple[Tag, ...]) -> list[str]:
    return [str(t) for t in tags]


def test_manylinux_tag_order_down_to_2_5_with_aliases() -> None:
    t = parse_target("cp312-manylinux_2_28_x86_64")
    plats = list(t.platform_tags)
    assert plats[0] == "manylinux_2_28_x86_64"
    assert [p for p in plats if p.startswith("manylinux_")] == [
        f"manylinux_2_{n}_x86_64" for n in range(28, 4, -1)
    ]
    # legacy aliases sit right after their PEP 600 twin
    for alias, twin in [
        ("manylinux2014_x86_64", "manylinux_2_17_x86_64"),
        ("manylinux2010_x86_64", "manylinux_2_12_x86_64"),
        ("manylinux1_x86_64", "manylinux_2_5_x86_64"),
    ]:
        assert plats.index(alias) == plats.index(twin) + 1
    assert "manylinux_2_29_x86_64" not in plats  # never newer than the policy
    assert not any(p.startswith(("musllinux", "win", "macosx")) for p in plats)
    tags = _strs(t.tags)
    assert tags[0] == "cp312-cp312-manylinux_2_28_x86_64"
    assert tags.index("cp312-cp312-manylinux2014_x86_64") < tags.index(
        "cp312-cp312-manylinux_2_5_x86_64"
    )
    # abi3 of older minors, after the exact ABI
    assert tags.index("cp312-cp312-linux_x86_64") < tags.index("cp312-abi3-manylinux_2_28_x86_64")
    assert "cp38-abi3-manylinux2014_x86_64" in tags
    assert "cp313-abi3-manylinux_2_28_x86_64" not in tags
    # none/any last
    assert tags.index("py3-none-any") > tags.index("cp32-abi3-linux_x86_64")
    assert tags[-1].endswith("-none-any")
    assert all(x.endswith("-any") for x in tags[tags.index("cp312-none-any") :])
    assert "cp312-cp312-win_amd64" not in tags


def test_aarch64_manylinux_starts_at_2_17() -> None:
    plats = parse_target("cp312-manylinux_2_28_aarch64").platform_tags
    assert "manylinux_2_17_aarch64" in plats and "manylinux2014_aarch64" in plats
    assert "manylinux_2_16_aarch64" not in plats
    assert "manylinux1_aarch64" not in plats


def test_musllinux_tags() -> None:
    t = parse_target("cp311-musllinux_1_2_aarch64")
    assert list(t.platform_tags[:3]) == [
        "musllinux_1_2_aarch64",
        "musllinux_1_1_aarch64",
        "musllinux_1_0_aarch64",
    ]
    tags = _strs(t.tags)
    assert not any("manylinux" in x for x in tags)
    assert not any("x86_64" in x for x in tags)


def test_windows_tags() -> None:
    tags = _strs(parse_target("cp312-win_amd64").tags)
    assert tags[0] == "cp312-cp312-win_amd64"
    assert "cp39-abi3-win_amd64" in tags
    assert "py3-none-any" in tags
    assert not any("win32" in x or "linux" in x for x in tags)


def test_macos_tags_down_to_10_as_packaging_does() -> None:
    from packaging.tags import mac_platforms

    t = parse_target("cp313-macosx_11_0_arm64")
    assert list(t.platform_tags) == list(mac_platforms((11, 0), "arm64"))
    tags = _strs(t.tags)
    assert tags[0] == "cp313-cp313-macosx_11_0_arm64"
    assert "cp313-cp313-macosx_10_9_universal2" in tags
    assert "cp313-cp313-macosx_12_0_arm64" not in tags  # newer macOS than the target
    assert "cp313-cp313-macosx_10_9_x86_64" not in tags  # wrong arch
    x86 = _strs(parse_target("cp312-macosx_10_9_x86_64").tags)
    assert "cp312-cp312-macosx_10_9_x86_64" in x86
    assert "cp312-cp312-macosx_10_10_x86_64" not in x86


def test_free_threaded_has_no_abi3() -> None:
    t = parse_target("cp313t-manylinux_2_28_x86_64")
    tags = _strs(t.tags)
    assert tags[0] == "cp313-cp313t-manylinux_2_28_x86_64"
    assert not any("-abi3-" in x for x in tags)
    assert "cp313-cp313-manylinux_2_28_x86_64" not in tags  # the GIL ABI is a different ABI
    assert "py3-none-any" in tags


def test_supports_and_priority() -> None:
    t = parse_target("cp312-manylinux_2_28_x86_64")
    (old,) = parse_tag("cp312-cp312-manylinux2014_x86_64")
    (new,) = parse_tag("cp312-cp312-manylinux_2_28_x86_64")
    (too_new,) = parse_tag("cp312-cp312-manylinux_2_34_x86_64")
    assert t.supports(old) and t.supports(new)
    assert not t.supports(too_new)
    assert t.tag_priority[new] < t.tag_priority[old]


MARKERS = [
    ("cp312-win_amd64", "win32", "AMD64", "3.12", "Windows", "nt"),
    ("cp313-macosx_11_0_arm64", "darwin", "arm64", "3.13", "Darwin", "posix"),
    ("cp311-musllinux_1_2_aarch64", "linux", "aarch64", "3.11", "Linux", "posix"),
    ("cp310-linux_x86_64", "linux", "x86_64", "3.10", "Linux", "posix"),
    ("cp39-macosx_10_9_x86_64", "darwin", "x86_64", "3.9", "Darwin", "posix"),
]


@pytest.mark.parametrize(("text", "sys_platform", "machine", "pyver", "system", "os_name"), MARKERS)
def test_marker_environment(
    text: str, sys_platform: str, machine: str, pyver: str, system: str, os_name: str
) -> None:
    env = parse_target(text).markers
    assert env["sys_platform"] == sys_platform
    assert env["platform_machine"] == machine
    assert env["python_version"] == pyver
    assert env["python_full_version"].startswith(pyver + ".")
    assert env["platform_system"] == system
    assert env["os_name"] == os_name
    assert env["implementation_name"] == "cpython"
    # usable as a packaging marker environment
    assert Marker(f'sys_platform == "{sys_platform}"').evaluate(env)
    assert not Marker('python_version < "3"').evaluate(env)


def test_markers_differ_from_host() -> None:
    win = parse_target("cp312-win_amd64").markers
    assert Marker('sys_platform == "win32"').evaluate(win)
    assert not Marker('sys_platform == "win32"').evaluate(
        parse_target("cp312-manylinux_2_28_x86_64").markers
    )
    old = parse_target("cp310-manylinux_2_28_x86_64").markers
    assert Marker('python_version < "3.11"').evaluate(old)
    assert not Marker('python_version < "3.11"').evaluate(
        parse_target("cp312-manylinux_2_28_x86_64").markers
    )


BAD = [
    "cp312",
    "cp312-freebsd_x86_64",
    "py312-win_amd64",
    "cp312-manylinux_2_28_sparc",
    "cp27-win_amd64",
    "cp312-macosx_11_5_arm64",
    "cp312-manylinux_1_28_x86_64",
    "cp312-musllinux_2_1_x86_64",
    "cp312-macosx_11_0_aarch64",
    "pp310-manylinux_2_28_x86_64",
    "",
]


@pytest.mark.parametrize("text", BAD)
def test_bad_target_is_target_error(text: str) -> None:
    with pytest.raises(TargetError) as info:
        parse_target(text)
    err = info.value
    assert isinstance(err, UsageError)
    assert err.return_code == 2
    line = str(err)
    assert "\n" not in line
    assert "accepted forms" in line
    assert "cpXY-manylinux_2_N_ARCH" in line and "cpXY-win_amd64" in line


def test_parse_targets_dedups_and_defaults_to_host() -> None:
    got = parse_targets(
        [
            "cp312-win_amd64",
            "cp312-manylinux2014_x86_64",
            "cp312-manylinux_2_17_x86_64",
            "cp312-win_amd64",
        ]
    )
    assert [t.identifier for t in got] == ["cp312-win_amd64", "cp312-manylinux_2_17_x86_64"]
    assert parse_targets([]) == [host_target()]


def test_cli_bad_target_exit_2_one_line(tmp_path: Path, clean_env: dict[str, str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "wheelport", "lock", "foo", "-t", "cp312-solaris_sparc", "-o", str(tmp_path / "wh"),
         "--index-url", "http://127.0.0.1:9/simple/", "--tool", "none"],
        capture_output=True, text=True, env={**clean_env, "WHEELPORT_CACHE_DIR": str(tmp_path / "cache")},
        cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "cp312-solaris_sparc" in lines[0] and "accepted forms" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "wh").exists()
