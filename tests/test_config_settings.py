"""``build_config`` in its two parts: :func:`read_settings` reads the config file into a
:class:`FileSettings`, and the flags are merged over it (a setting a flag replaces is not read)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from wheelport.config import build_config, read_settings
from wheelport.errors import ConfigError


def test_wheelport_toml_wins_and_its_directory_is_the_base(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.wheelport]\ntargets = ["cp310-win_amd64"]\n')
    (tmp_path / "wheelport.toml").write_text('targets = ["cp312-win_amd64"]\noutput = "o"\n')
    settings = read_settings(tmp_path)
    assert settings.path == tmp_path / "wheelport.toml" and settings.origin == "wheelport.toml"
    assert settings.targets == ("cp312-win_amd64",)
    assert settings.output == tmp_path / "o"
    assert settings.pre is False and settings.jobs == 16 and settings.tools == ()


def test_without_a_config_file_the_defaults_and_a_relative_output(tmp_path: Path) -> None:
    settings = read_settings(tmp_path)
    assert settings.path is None and settings.origin == "config" and settings.table == {}
    assert settings.output == Path("wheelhouse")  # relative to where wheelport runs
    assert settings.index_urls == [] and settings.requirement_files == []


def test_unknown_keys_are_reported_when_read(tmp_path: Path) -> None:
    (tmp_path / "wheelport.toml").write_text("targetz = []\n")
    with pytest.raises(ConfigError, match=r"wheelport\.toml: unknown key"):
        read_settings(tmp_path)


@pytest.mark.parametrize(
    ("key", "flag"),
    [
        ("targets", {"targets": ["cp312-win_amd64"]}),
        ("index-urls", {"index_urls": ["https://example.invalid/simple"]}),
        ("tools", {"tools": ["none"]}),
        ("only-binary", {"only_binary": [":all:"]}),
        ("dependencies", {"requirements": ["alpha"]}),
    ],
)
def test_a_setting_a_flag_replaces_is_not_read(
    tmp_path: Path, key: str, flag: dict[str, list[str]]
) -> None:
    deps = "" if key == "dependencies" else 'dependencies = ["alpha"]\n'
    (tmp_path / "wheelport.toml").write_text(f'{deps}"{key}" = 5\n')
    with pytest.raises(ConfigError, match=re.escape(f"wheelport.toml: '{key}' must be a list")):
        build_config(directory=tmp_path)
    build_config(directory=tmp_path, **flag)  # type: ignore[arg-type]


def test_flags_over_settings(tmp_path: Path) -> None:
    (tmp_path / "wheelport.toml").write_text(
        'dependencies = ["alpha"]\npre = true\nprefer-binary = true\njobs = 4\noutput = "o"\n'
        'index-url = "https://file.invalid/simple/"\n'
    )
    req = tmp_path / "req.txt"
    req.write_text("beta\n-i https://reqfile.invalid/simple\n")
    from_file = build_config(directory=tmp_path)
    assert (from_file.pre, from_file.prefer_binary, from_file.jobs) == (True, True, 4)
    assert from_file.output == tmp_path / "o"
    assert from_file.index_urls == ("https://file.invalid/simple",)
    flagged = build_config(directory=tmp_path, requirement_files=[req], pre=False,
                           prefer_binary=False, jobs=2, output=Path("rel"))  # fmt: skip
    assert (flagged.pre, flagged.prefer_binary, flagged.jobs) == (False, False, 2)
    assert flagged.output == Path("rel")  # a flag's path is taken as given
    assert [str(r.requirement) for r in flagged.requirements] == ["beta"]  # -r replaces both
    assert flagged.index_urls == ("https://file.invalid/simple",)  # the config's still wins
    (tmp_path / "wheelport.toml").write_text('dependencies = ["alpha"]\n')
    assert build_config(directory=tmp_path, requirement_files=[req]).index_urls == (
        "https://reqfile.invalid/simple",
    )
