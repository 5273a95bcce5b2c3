"""``wheelport ci github`` (a valid, pinned, least-privilege workflow) and ``merge`` of CI artifacts."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import stat
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from support import one_error_line, run_wheelport
from support.dists import make_sdist, make_wheel
from support.server import IndexServer
from wheelport import __version__
from wheelport.api import lock
from wheelport.builders.plan import BuildNeed, SdistInfo
from wheelport.builders.planner import decide
from wheelport.ci import GITHUB_RUNNERS, write_github
from wheelport.cli import main
from wheelport.config import build_config
from wheelport.errors import ExportError, VerifyError
from wheelport.export.merge import merge
from wheelport.sync import sync
from wheelport.targets import parse_target
from wheelport.wheelhouse import sha256_file

FIVE = {
    "cp312-manylinux_2_28_x86_64": "linux-x86_64",
    "cp312-manylinux_2_28_aarch64": "linux-aarch64",
    "cp312-win_amd64": "windows-x86_64",
    "cp312-macosx_11_0_arm64": "macos-arm64",
    "cp312-macosx_10_13_x86_64": "macos-x86_64",
}
WIN, LINUX = "cp312-win_amd64", "cp311-manylinux_2_28_x86_64"
#: run-specific by design (mtimes), and each run's advisory lock file
VOLATILE = {"simple/.wheelport-index.json", ".wheelport.lock", ".wheelport-stamps.json"}


@pytest.fixture(scope="module")
def locked_wh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A wheelhouse locked (no fetch, no build) for five targets, two compiled sdists each."""
    tmp = tmp_path_factory.mktemp("ci")
    with pytest.MonkeyPatch.context() as mp, IndexServer() as index:
        mp.setenv("WHEELPORT_CACHE_DIR", str(tmp / "cache"))
        index.add(make_sdist(tmp / "dists", "cext", "0.1", c_extension=True, deps=["cext2"]))
        index.add(make_sdist(tmp / "dists", "cext2", "0.2", c_extension=True))
        config = build_config(directory=tmp, requirements=["cext"], index_urls=[index.url],
                              targets=list(FIVE), output=tmp / "wheelhouse", tools=["none"])  # fmt: skip
        lock(config)
        yield tmp / "wheelhouse"


def _validator() -> str:
    found = Path(sys.executable).parent / "check-jsonschema"
    exe = str(found) if found.exists() else shutil.which("check-jsonschema")
    if exe is None:
        pytest.skip("check-jsonschema is not installed (pip install -e '.[test]')")
    return exe


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    cmd = [_validator(), "--builtin-schema", "vendor.github-workflows", str(path)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for job in workflow["jobs"].values() for s in job["steps"]]


def test_workflow_for_five_runner_kinds(locked_wh: Path, tmp_path: Path) -> None:
    out = tmp_path / ".github" / "workflows" / "wheelport.yml"
    report = write_github(locked_wh, out, shards=4, publish_secret="MIRROR_URL", bundle=True,
                          repository=locked_wh.parent)  # fmt: skip
    assert _validate(out).returncode == 0, _validate(out).stdout
    workflow = yaml.safe_load(out.read_text())
    assert workflow["permissions"] == {"contents": "read"}
    assert list(workflow["jobs"]) == [*GITHUB_RUNNERS, "merge"] == report.jobs
    for target, kind in FIVE.items():
        job = workflow["jobs"][kind]
        assert job["runs-on"] == GITHUB_RUNNERS[kind]
        include = job["strategy"]["matrix"]["include"]
        # two sdists to build per target: at most two shards, though four were allowed
        assert [(e["target"], e["shard"]) for e in include] == [(target, 1), (target, 2)]
        python = {e["python"] for e in include}
        assert python == {"3.12"}
        run = "\n".join(s.get("run", "") for s in job["steps"])
        assert f"pip install wheelport=={__version__}" in run
        assert "--only-target ${{ matrix.target }} --shard ${{ matrix.shard }}/2" in run
        assert all(f"-t {t}" in run for t in FIVE)
        upload = job["steps"][-1]
        assert upload["uses"].startswith("actions/upload-artifact@")
        assert "${{ matrix.target }}" in upload["with"]["name"]
        assert "${{ matrix.shard }}" in upload["with"]["name"]
    merge_job = workflow["jobs"]["merge"]
    assert merge_job["needs"] == list(GITHUB_RUNNERS)
    download = next(s for s in merge_job["steps"] if "download-artifact" in s.get("uses", ""))
    assert download["with"]["merge-multiple"] is False and download["with"]["pattern"]
    runs = [s["run"] for s in merge_job["steps"] if "run" in s]
    assert any(r.startswith("wheelport merge artifacts") for r in runs)
    assert any(r.startswith("wheelport verify") for r in runs)
    assert any(r.startswith("wheelport publish") for r in runs)
    assert any(r.startswith("wheelport bundle") for r in runs)
    # every action pinned to a full commit SHA, never a branch or a floating tag
    uses = [s["uses"] for s in _steps(workflow) if "uses" in s]
    assert uses and all(re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", u) for u in uses), uses
    text = out.read_text()
    assert "@main" not in text and "@master" not in text
    assert all(f"{u}  # v" in text for u in uses)  # the release beside each SHA
    # macOS native builds are tagged for the target's macOS, not the runner's
    mac = workflow["jobs"]["macos-x86_64"]
    assert {e["macos"] for e in mac["strategy"]["matrix"]["include"]} == {"10.13"}
    assert any(
        s.get("env") == {"MACOSX_DEPLOYMENT_TARGET": "${{ matrix.macos }}"} for s in mac["steps"]
    )
    # secrets reach commands only through env, never on a command line
    assert not [s for s in _steps(workflow) if "secrets." in s.get("run", "")]
    publish = next(s for s in merge_job["steps"] if s.get("name") == "Publish")
    assert publish["env"]["WHEELPORT_PUBLISH_URL"] == "${{ secrets.MIRROR_URL }}"
    assert "secrets." in out.read_text()


def test_the_validator_is_not_vacuous(locked_wh: Path, tmp_path: Path) -> None:
    out = tmp_path / "wheelport.yml"
    write_github(locked_wh, out, repository=locked_wh.parent)
    broken = yaml.safe_load(out.read_text())
    del broken["jobs"]["merge"]["runs-on"]
    out.write_text(yaml.safe_dump(broken, sort_keys=False))
    assert _validate(out).returncode != 0


def test_cli_writes_the_workflow(
    locked_wh: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "wf.yml"
    repo = ["--repository", str(locked_wh.parent)]
    main(["ci", "github", "-w", str(locked_wh), "-o", str(out), *repo, "--shards", "1", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert data["jobs"] == [*GITHUB_RUNNERS, "merge"]
    workflow = yaml.safe_load(out.read_text())
    assert all(
        len(j["strategy"]["matrix"]["include"]) == 1
        for k, j in workflow["jobs"].items()
        if k != "merge"
    )
    with pytest.raises(SystemExit) as info:
        main(
            ["ci", "github", "-w", str(locked_wh), "-o", str(out), *repo, "--publish", "A B; echo"]
        )
    assert info.value.code == 2


def _paths(workflow: dict[str, Any]) -> tuple[list[str], set[str], set[str]]:
    """on.push.paths, every artifact upload's path and every sync's -o of a workflow."""
    steps = _steps(workflow)
    uploads = {s["with"]["path"] for s in steps if "upload-artifact" in s.get("uses", "")}
    syncs = [shlex.split(s["run"]) for s in steps if "wheelport sync" in s.get("run", "")]
    outs = {args[args.index("-o") + 1] for args in syncs}
    return workflow["on"]["push"]["paths"], uploads, outs


def test_absolute_wheelhouse_path_is_written_relative_to_the_repository(
    locked_wh: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    wh = shutil.copytree(locked_wh, repo / "deps" / "wh [x]")
    (repo / "requirements.txt").write_text("cext\n")
    out = repo / ".github" / "workflows" / "wheelport.yml"
    monkeypatch.chdir(tmp_path)  # elsewhere: the workflow's own place names the repository
    main(
        ["ci", "github", "-w", str(wh), "-o", str(out), "-r", str(repo / "requirements.txt"), "-q"]
    )
    text = out.read_text()
    assert str(tmp_path) not in text
    paths, uploads, outs = _paths(yaml.safe_load(text))
    assert paths == ["deps/wh \\[x\\]/pylock.*.toml", "deps/wh \\[x\\]/wheelport.json"]
    assert uploads == {"deps/wh [x]", "merged-wheelhouse"}
    assert outs == {"deps/wh [x]"} and "-r requirements.txt" in text
    # inside a git checkout, from a subdirectory: relative to the checkout's root
    (repo / ".git").mkdir()
    (repo / "sub").mkdir()
    monkeypatch.chdir(repo / "sub")
    main(["ci", "github", "-w", "../deps/wh [x]", "-o", "../ci.yml", "-q"])
    assert _paths(yaml.safe_load((repo / "ci.yml").read_text()))[1] == {"deps/wh [x]", "merged-wheelhouse"}  # fmt: skip


def test_wheelhouse_outside_the_repository_is_refused(locked_wh: Path, tmp_path: Path) -> None:
    out = tmp_path / "repo" / ".github" / "workflows" / "wheelport.yml"
    r = run_wheelport("ci", "github", "-w", str(locked_wh), "-o", str(out))
    assert r.returncode == 2
    line = one_error_line(r)
    assert f"the wheelhouse {locked_wh} is outside the repository {tmp_path / 'repo'}" in line
    assert not out.exists()


def test_native_red_cell_points_to_ci_github() -> None:
    need = BuildNeed("cext", "0.1", "sdists/cext-0.1.tar.gz", "0" * 64, (WIN,))
    info = SdistInfo(build_requires=(), compiled=True)
    jobs = decide(need, [parse_target(WIN)], info, host=parse_target("cp312-manylinux_2_28_x86_64"),
                  container=False, slot=lambda t, n: None)  # type: ignore[arg-type,return-value]  # fmt: skip
    assert [j.here for j in jobs] == [False]
    assert "Windows" in jobs[0].reason and "wheelport ci github" in jobs[0].reason


# ---------------------------------------------------------------- merge of CI artifacts


def _files(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).as_posix() not in VOLATILE
    }


def _zip(src: Path, dest: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(dest, "w") as zf:
        for p in sorted(src.rglob("*")):
            if p.is_file() and p.name != ".wheelport.lock":
                zf.write(p, prefix + p.relative_to(src).as_posix())
    return dest


@pytest.fixture(scope="module")
def runners(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Two partial wheelhouses (as two runners make them) and their plain-directory merge."""
    tmp = tmp_path_factory.mktemp("runners")
    out: dict[str, Path] = {}
    with pytest.MonkeyPatch.context() as mp, IndexServer() as index:
        mp.setenv("WHEELPORT_CACHE_DIR", str(tmp / "cache"))
        index.add(make_wheel(tmp / "dists", "app", "1.0", deps=["lib"]))
        index.add(make_wheel(tmp / "dists", "lib", "2.0", tag="cp312-cp312-win_amd64"))
        index.add(make_wheel(tmp / "dists", "lib", "2.0", tag="cp311-cp311-manylinux_2_17_x86_64"))
        for name, target in (("win", WIN), ("linux", LINUX)):
            config = build_config(directory=tmp, requirements=["app"], index_urls=[index.url],
                                  targets=[target], output=tmp / name, tools=["none"])  # fmt: skip
            sync(config)
            out[name] = tmp / name
    merge([out["win"], out["linux"]], tmp / "plain")
    out["plain"] = tmp / "plain"
    yield out


def test_artifact_directories_and_zips_merge_like_plain_directories(
    runners: dict[str, Path], tmp_path: Path
) -> None:
    expected = _files(runners["plain"])
    assert any(k.endswith("win_amd64.whl") for k in expected)
    assert any(k.endswith("manylinux_2_17_x86_64.whl") for k in expected)
    # actions/download-artifact without merge-multiple: one subdirectory per artifact
    artifacts = tmp_path / "artifacts"
    shutil.copytree(runners["win"], artifacts / f"wheelport-{WIN}-1")
    _zip(runners["linux"], tmp_path / "linux.zip")
    shutil.copy(tmp_path / "linux.zip", artifacts / "wheelport-linux-1.zip")
    report = merge([artifacts], tmp_path / "from-artifacts")
    assert _files(tmp_path / "from-artifacts") == expected
    assert len(report.origins) == 2 and all("of input" in o for o in report.origins)
    # a zip of a wheelhouse (also one with the wheelhouse in a folder) as a direct input
    _zip(runners["win"], tmp_path / "win.zip", prefix="wheelhouse/")
    merge([tmp_path / "win.zip", tmp_path / "linux.zip"], tmp_path / "from-zips")
    assert _files(tmp_path / "from-zips") == expected


def test_conflicting_artifact_names_both_origins(
    runners: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    artifacts = tmp_path / "artifacts"
    shutil.copytree(runners["win"], artifacts / "wheelport-a-1")
    other = shutil.copytree(runners["win"], tmp_path / "b")
    rel = "wheels/lib-2.0-cp312-cp312-win_amd64.whl"
    rebuilt = make_wheel(tmp_path / "rebuilt", "lib", "2.0", tag="cp312-cp312-win_amd64",
                         summary="rebuilt")  # fmt: skip
    shutil.copyfile(rebuilt, other / rel)
    manifest = json.loads((other / "wheelport.json").read_text())
    old_sha, new_sha = manifest["artifacts"][rel]["sha256"], sha256_file(other / rel)
    assert old_sha != new_sha
    manifest["artifacts"][rel].update(sha256=new_sha, size=(other / rel).stat().st_size)
    (other / "wheelport.json").write_text(json.dumps(manifest))
    _zip(other, artifacts / "wheelport-b-1.zip")
    with pytest.raises(ExportError) as info:
        merge([artifacts], tmp_path / "merged")
    message = str(info.value)
    assert f"sha256 {old_sha} in wheelport-a-1 of input {artifacts}" in message
    assert f"sha256 {new_sha} in wheelport-b-1.zip of input {artifacts}" in message
    assert not (tmp_path / "merged").exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["merge", str(artifacts), "-o", str(tmp_path / "merged")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "wheelport-a-1" in err and "wheelport-b-1.zip" in err
    assert not (tmp_path / "merged").exists()


@pytest.mark.parametrize("member", ["../evil.txt", "/abs/evil.txt", "link"])
def test_unsafe_zip_members_are_refused(
    runners: dict[str, Path], tmp_path: Path, member: str
) -> None:
    archive = _zip(runners["win"], tmp_path / "bad.zip")
    with zipfile.ZipFile(archive, "a") as zf:
        info = zipfile.ZipInfo(member)
        if member == "link":
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc")
        else:
            zf.writestr(info, "x")
    with pytest.raises(VerifyError, match="refused"):
        merge([archive], tmp_path / "merged")
    assert not (tmp_path / "merged").exists()
    assert not (tmp_path / "evil.txt").exists()
