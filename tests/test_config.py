"""Config: [tool.wheelport] in pyproject.toml or wheelport.toml, PEP 621 extras, PEP 735 groups,
requirements files, and flags that win over files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support import run_wheelport
from support.dists import make_wheel
from support.server import IndexServer
from wheelport.config import build_config
from wheelport.errors import ConfigError, RequirementError, UsageError

PYPROJECT = """
[project]
name = "app"
version = "1.0"
dependencies = ["alpha>=1"]

[project.optional-dependencies]
web = ["beta; sys_platform == 'win32'"]

[dependency-groups]
test = ["gamma", {include-group = "lint"}]
lint = ["delta==2.*"]

[tool.wheelport]
targets = ["cp312-win_amd64", "cp310-macosx_11_0_arm64"]
index-urls = ["https://example.invalid/simple"]
output = "out/wh"
only-binary = [":all:"]
build-system-packages = { lxml = ["libxml2-dev"] }
"""


def names(cfg: object) -> list[str]:
    return sorted(str(r.requirement) for r in cfg.requirements)  # type: ignore[attr-defined]


def test_pyproject_table_extras_and_groups(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    cfg = build_config(directory=tmp_path, extras=["web"], groups=["test"])
    assert names(cfg) == ["alpha>=1", 'beta; sys_platform == "win32"', "delta==2.*", "gamma"]
    assert cfg.targets == ("cp312-win_amd64", "cp310-macosx_11_0_arm64")
    assert cfg.index_urls == ("https://example.invalid/simple",)
    assert cfg.output == tmp_path / "out" / "wh"
    assert cfg.only_binary == frozenset({":all:"})
    assert cfg.build_system_packages == {"lxml": ("libxml2-dev",)}
    # origins say where each requirement came from
    origins = {str(r.requirement): r.origin for r in cfg.requirements}
    assert origins["gamma"] == "pyproject.toml group test"


def test_flags_win_over_the_file(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    cfg = build_config(
        directory=tmp_path,
        requirements=["zeta"],
        targets=["cp313-manylinux_2_28_x86_64"],
        index_urls=["http://127.0.0.1:1/simple"],
        output=tmp_path / "elsewhere",
        only_binary=["zeta"],
    )
    assert names(cfg) == ["zeta"]  # explicit requirements replace the project's
    assert cfg.targets == ("cp313-manylinux_2_28_x86_64",)
    assert cfg.index_urls == ("http://127.0.0.1:1/simple",)
    assert cfg.output == tmp_path / "elsewhere"
    assert cfg.only_binary == frozenset({"zeta"})


def test_wheelport_toml_wins_over_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / "wheelport.toml").write_text(
        'dependencies = ["omega"]\ntargets = ["cp311-win32"]\n'
    )
    cfg = build_config(directory=tmp_path)
    assert names(cfg) == ["omega"]
    assert cfg.targets == ("cp311-win32",)


def test_requirements_file_with_includes_constraints_and_index(tmp_path: Path) -> None:
    (tmp_path / "base.txt").write_text("alpha  # comment\n")
    (tmp_path / "cons.txt").write_text("alpha<3\n")
    (tmp_path / "req.txt").write_text(
        "-r base.txt\n-c cons.txt\n--index-url http://127.0.0.1:2/simple\n"
        "beta>=1 \\\n  ; python_version < '3.11'\ngamma==1.0 --hash=sha256:abc\n"
    )
    cfg = build_config(directory=tmp_path, requirement_files=[tmp_path / "req.txt"])
    assert names(cfg) == ["alpha", 'beta>=1; python_version < "3.11"', "gamma==1.0"]
    assert [str(c.requirement) for c in cfg.constraints] == ["alpha<3"]
    assert cfg.index_urls == ("http://127.0.0.1:2/simple",)


@pytest.mark.parametrize(
    ("files", "kwargs", "error", "text"),
    [
        (
            {"req.txt": "ok\nfoo>>1\n"},
            {"requirement_files": ["req.txt"]},
            RequirementError,
            "req.txt:2",
        ),
        ({"pyproject.toml": PYPROJECT}, {"extras": ["nope"]}, ConfigError, "no extra 'nope'"),
        (
            {"pyproject.toml": PYPROJECT},
            {"groups": ["nope"]},
            ConfigError,
            "no dependency group 'nope'",
        ),
        ({"pyproject.toml": "[tool.wheelport]\ntargetz = []\n"}, {}, ConfigError, "unknown key"),
        ({"pyproject.toml": "[tool.wheelport\n"}, {}, ConfigError, "not valid TOML"),
        ({}, {}, UsageError, "nothing to lock"),
        (
            {"req.txt": "--trusted-host x\n"},
            {"requirement_files": ["req.txt"]},
            RequirementError,
            "unsupported option",
        ),
    ],
)
def test_bad_config_is_one_clear_usage_error(
    tmp_path: Path, files: dict[str, str], kwargs: dict[str, list[str]], error: type, text: str
) -> None:
    for name, body in files.items():
        (tmp_path / name).write_text(body)
    if "requirement_files" in kwargs:
        kwargs = {
            **kwargs,
            "requirement_files": [tmp_path / f for f in kwargs["requirement_files"]],
        }  # type: ignore[misc]
    with pytest.raises(error) as info:
        build_config(directory=tmp_path, **kwargs)  # type: ignore[arg-type]
    assert text in str(info.value) and "\n" not in str(info.value)
    assert info.value.return_code == 2


def test_lock_from_project_config_for_targets_unlike_host(dists_dir: Path, tmp_path: Path) -> None:
    """`wheelport lock` in a project directory: targets, index and extras from the file; the
    extra's Windows-only dependency lands in the Windows lock only."""
    with IndexServer() as srv:
        for name in ("alpha", "beta", "gamma", "delta"):
            srv.add(make_wheel(dists_dir, name, "2.0"))
        project = tmp_path / "proj"
        project.mkdir()
        (project / "pyproject.toml").write_text(
            PYPROJECT.replace("https://example.invalid/simple", srv.url).replace(
                'only-binary = [":all:"]\n', ""
            )
        )
        r = run_wheelport(
            "lock", "--extra", "web", "--group", "test", "--tool", "none", "--json", cwd=project
        )
        assert r.returncode == 0, r.stderr
        data = json.loads(r.stdout)
        win = data["targets"]["cp312-win_amd64"]
        mac = data["targets"]["cp310-macosx_11_0_arm64"]
        assert set(win) == {"alpha", "beta", "gamma", "delta"}
        assert set(mac) == {"alpha", "gamma", "delta"}
        assert win["beta"]["markers"] == ['sys_platform == "win32"']
        assert (project / "out" / "wh" / "pylock.cp312-win_amd64.toml").is_file()
