"""``wheelport lock --from``: which groups a lock import selects, with locks that real uv, poetry,
pipenv and pdm write against a local index (and a local git server).

- A git pin that lives only in a group nobody selected (a docs theme) does not sink the import;
  selecting that group is refused in one line (every reader).
- A uv workspace: wheelport selects exactly what ``uv export`` exports — for a virtual root
  (the root's own ``[dependency-groups]`` next to the members', one group of a shared name) and
  for a root that is a project — compared with real ``uv export`` output per target.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from support import one_error_line, run_wheelport, scrubbed_env
from support.dists import make_backend_wheel, make_sdist, make_wheel
from support.server import IndexServer
from test_import_locks import LIN310, MAC, WIN, lock_from, locked, source_versions, tool, tool_env
from wheelport.targets import parse_targets

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TARGETS = (WIN, MAC, LIN310)
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IndexServer]:
    d = tmp_path_factory.mktemp("dists")
    with IndexServer() as server:
        for v in ("1.0", "1.5", "2.0"):
            server.add(make_wheel(d, "dep", v, deps=["sub>=1"]))
        for v in ("1.0", "1.1"):
            server.add(make_wheel(d, "sub", v))
        for name in ("devtool", "roottool", "docstool", "lintr", "testtool", "theme", "oldpy"):
            for v in ("1.0", "2.0"):
                server.add(make_wheel(d, name, v))
        server.add(make_wheel(d, "winonly", "1.0", tag="py3-none-win_amd64"))
        server.add(make_backend_wheel(d))  # builds the git package's metadata
        yield server


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def git_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A git repository of the project ``gittheme`` 0.3 (built by tinybackend), served on
    127.0.0.1 over git's dumb HTTP protocol."""
    git = shutil.which("git")
    assert git, "the git tests need git"
    root = tmp_path_factory.mktemp("git")
    sdist = make_sdist(root / "sdist", "gittheme", "0.3", project={"name": "gittheme", "version": "0.3"})  # fmt: skip
    with tarfile.open(sdist) as tar:
        tar.extractall(root / "x", filter="data")
    work = root / "x" / "gittheme-0.3"
    ident = ["-c", "user.name=wheelport", "-c", "user.email=tests@wheelport.invalid"]
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        [*ident, "commit", "-q", "-m", "0.3"],
    ):
        subprocess.run([git, *args], cwd=work, check=True, capture_output=True)
    served = root / "served"
    served.mkdir()
    subprocess.run([git, "clone", "-q", "--bare", str(work), str(served / "gittheme.git")], check=True)  # fmt: skip
    subprocess.run([git, "update-server-info"], cwd=served / "gittheme.git", check=True)
    handler = functools.partial(_QuietFiles, directory=str(served))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/gittheme.git"
    finally:
        server.shutdown()
        server.server_close()


# -- a git pin in a group nobody selected -----------------------------------------------------

GIT_PROJECT = """\
[project]
name = "app"
version = "0.1"
requires-python = ">=3.10"
dependencies = ["dep<2"]
[dependency-groups]
dev = ["devtool<2"]
docs = ["docstool<2", "gittheme @ git+{git}@main"]
"""


@pytest.fixture(scope="module")
def git_locks(
    srv: IndexServer, git_url: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Each tool's lock of a project whose ``docs`` group takes a theme from git."""
    root = tmp_path_factory.mktemp("git-sources")
    home = root / "home"
    project = GIT_PROJECT.format(git=git_url)
    out: dict[str, Path] = {}

    uvp = root / "uv"
    uvp.mkdir()
    (uvp / "pyproject.toml").write_text(project)
    tool([str(BIN / "uv"), "lock", "--no-config", "--index-url", srv.url], uvp, home)
    out["uv.lock"] = uvp / "uv.lock"
    poe = root / "poetry"
    poe.mkdir()
    (poe / "pyproject.toml").write_text(
        project + "[tool.poetry]\npackage-mode = false\n"
        f'[[tool.poetry.source]]\nname = "local"\nurl = "{srv.url}"\npriority = "primary"\n'
    )
    tool([str(BIN / "poetry"), "lock"], poe, home)
    out["poetry.lock"] = poe / "poetry.lock"

    pdmp = root / "pdm"
    pdmp.mkdir()
    (pdmp / "pyproject.toml").write_text(
        project + f'[[tool.pdm.source]]\nname = "pypi"\nurl = "{srv.url}"\nverify_ssl = false\n'
    )
    tool([str(BIN / "pdm"), "lock", "-G", ":all"], pdmp, home)
    out["pdm.lock"] = pdmp / "pdm.lock"

    pip = root / "pipenv"
    pip.mkdir()
    (pip / "Pipfile").write_text(
        f'[[source]]\nurl = "{srv.url}"\nverify_ssl = false\nname = "local"\n\n'
        '[packages]\ndep = "<2"\n\n[dev-packages]\ndevtool = "<2"\n\n'
        f'[docs]\ndocstool = "<2"\ngittheme = {{git = "{git_url}", ref = "main"}}\n'
    )
    tool([str(BIN / "pipenv"), "lock"], pip, home)
    out["Pipfile.lock"] = pip / "Pipfile.lock"

    # a PEP 751 lock with a git pin in a group: pipenv's pylock.toml (uv's export flattens the
    # groups it exports); pipenv writes only default and develop there, so the theme is a dev one
    pyl = root / "pipenv-pylock"
    pyl.mkdir()
    (pyl / "Pipfile").write_text(
        f'[[source]]\nurl = "{srv.url}"\nverify_ssl = false\nname = "local"\n\n'
        '[packages]\ndep = "<2"\n\n'
        f'[dev-packages]\ngittheme = {{git = "{git_url}", ref = "main"}}\n\n'
        "[pipenv]\nuse_pylock = true\n"
    )
    tool([str(BIN / "pipenv"), "lock"], pyl, home)
    out["pylock.toml"] = pyl / "pylock.toml"
    return out


@pytest.mark.parametrize(
    ("fmt", "git_group"),
    [("uv.lock", "docs"), ("poetry.lock", "docs"), ("pdm.lock", "docs"), ("Pipfile.lock", "docs"),
     ("pylock.toml", "dev")],
)  # fmt: skip
def test_git_pin_in_an_unselected_group_is_left_alone(
    tmp_path: Path, git_locks: dict[str, Path], git_url: str, fmt: str, git_group: str
) -> None:
    source = git_locks[fmt]
    assert git_url.removeprefix("http://") in source.read_text()  # the tool recorded the git pin
    recorded = versioned(source)
    selections = [((), {"dep", "sub"})]
    if git_group != "dev":
        selections.append((("--group", "dev"), {"dep", "sub", "devtool"}))
    for args, names in selections:
        out = tmp_path / ("-".join(args) or "default")
        out.mkdir()
        proc = lock_from(out, source, *args, targets=(WIN, MAC))
        assert proc.returncode == 0, (fmt, args, proc.stderr)
        for target in (WIN, MAC):
            got = {n: v for n, (v, _) in locked(out, target).items()}
            assert got == {n: recorded[n] for n in names}, (fmt, args, target)
    for args in (("--group", git_group), ("--all-groups",)):
        proc = lock_from(tmp_path, source, *args, targets=(WIN,))
        assert proc.returncode == 2
        line = one_error_line(proc)
        assert "gittheme" in line and f"from git {git_url}" in line, line
        assert "not from an index" in line and "leave its group unselected" in line
        assert not (tmp_path / "wh").exists() or not list((tmp_path / "wh").glob("pylock.*.toml"))


def versioned(path: Path) -> dict[str, str]:
    """name → version of each entry of a source lock that has one (a git entry may not)."""
    if path.name == "Pipfile.lock":
        doc = json.loads(path.read_text())
        return {
            n: e["version"].lstrip("=")
            for section, entries in doc.items()
            if section != "_meta"
            for n, e in entries.items()
            if "version" in e
        }
    doc = tomllib.loads(path.read_text())
    return {
        p["name"]: p["version"]
        for p in doc.get("package", doc.get("packages", []))
        if "version" in p
    }


# -- uv workspaces against uv export ----------------------------------------------------------

BACKEND = '[build-system]\nrequires = ["tinybackend"]\nbuild-backend = "tinybackend"\n'

#: a virtual workspace root: its own groups (``dev`` shares a name with the members'), no project
VIRTUAL_ROOT = """\
[tool.uv.workspace]
members = ["packages/*"]

[dependency-groups]
dev = ["roottool<2"]
docs = ["docstool<2", "oldpy<2; python_version < '3.11'", {include-group = "lint"}]
lint = ["lintr<2; sys_platform == 'win32'"]
"""
MEMBER_A = """\
[project]
name = "a"
version = "0.1"
requires-python = ">=3.10"
dependencies = ["dep<2", "b"]
[project.optional-dependencies]
fast = ["winonly; sys_platform == 'win32'"]
[dependency-groups]
dev = ["devtool<2"]
test = ["testtool<2"]
[tool.uv.sources]
b = { workspace = true }
"""
MEMBER_B = """\
[project]
name = "b"
version = "0.1"
requires-python = ">=3.10"
dependencies = ["sub"]
[dependency-groups]
dev = ["theme<2"]
"""
#: a workspace whose root is a project: uv export exports that project, not the other members
PROJECT_ROOT = """\
[project]
name = "app"
version = "0.1"
requires-python = ">=3.10"
dependencies = ["dep<2"]
[dependency-groups]
dev = ["roottool<2"]
[tool.uv.workspace]
members = ["packages/*"]
"""
MEMBER_M = """\
[project]
name = "m"
version = "0.1"
requires-python = ">=3.10"
dependencies = ["theme<2"]
[dependency-groups]
dev = ["devtool<2"]
docs = ["docstool<2"]
"""


@pytest.fixture(scope="module")
def workspaces(srv: IndexServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("workspaces")
    home = root / "home"
    layouts = {
        "virtual": {"pyproject.toml": VIRTUAL_ROOT, "packages/a/pyproject.toml": MEMBER_A + BACKEND,
                    "packages/b/pyproject.toml": MEMBER_B + BACKEND},
        "project": {"pyproject.toml": PROJECT_ROOT, "packages/m/pyproject.toml": MEMBER_M + BACKEND},
    }  # fmt: skip
    out = {}
    for kind, files in layouts.items():
        for rel, text in files.items():
            (root / kind / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / kind / rel).write_text(text)
        tool([str(BIN / "uv"), "lock", "--no-config", "--index-url", srv.url], root / kind, home)
        out[kind] = root / kind
    return out


def uv_export(workspace: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    cmd = [str(BIN / "uv"), "export", "--no-config", "--frozen", "--format", "requirements.txt",
           "--no-hashes", "--no-header", "--no-annotate", "--no-emit-workspace", *flags]  # fmt: skip
    env = tool_env(workspace.parent / "home")
    return subprocess.run(cmd, cwd=workspace, env=env, capture_output=True, text=True, timeout=120)


def exported(workspace: Path, *flags: str) -> dict[str, dict[str, str]]:
    """Per target: name → version of what real ``uv export`` exports whose marker holds there."""
    proc = uv_export(workspace, *flags)
    assert proc.returncode == 0, proc.stderr
    reqs = [Requirement(line) for line in proc.stdout.splitlines() if line.strip()]
    out: dict[str, dict[str, str]] = {}
    for target in parse_targets(list(TARGETS)):
        env = dict(target.markers)
        out[target.identifier] = {
            canonicalize_name(r.name): str(r.specifier).removeprefix("==")
            for r in reqs
            if r.marker is None or r.marker.evaluate(env)
        }
    return out


#: (wheelport's selection, the same selection for uv export); wheelport selects no group unless
#: asked, uv selects ``dev`` unless told --no-default-groups
VIRTUAL_CASES = [
    ((), ("--no-default-groups",)),
    (("--group", "dev"), ("--no-default-groups", "--group", "dev")),
    (("--group", "docs"), ("--no-default-groups", "--group", "docs")),
    (("--group", "lint"), ("--no-default-groups", "--group", "lint")),
    (("--extra", "fast", "--group", "test"), ("--no-default-groups", "--extra", "fast", "--group", "test")),
    (("--all-groups",), ("--all-groups",)),
    (("--only-group", "docs"), ("--only-group", "docs")),
    (("--only-group", "dev", "--only-group", "test"), ("--only-group", "dev", "--only-group", "test")),
]  # fmt: skip
PROJECT_CASES = [
    ((), ("--no-default-groups",)),
    (("--group", "dev"), ("--no-default-groups", "--group", "dev")),
    (("--all-groups",), ("--all-groups",)),
    (("--only-group", "dev"), ("--only-group", "dev")),
]


def check_as_uv_exports(
    tmp_path: Path, workspace: Path, ours: tuple[str, ...], uvs: tuple[str, ...]
) -> dict[str, dict[str, str]]:
    expected = exported(workspace, *uvs)
    source = workspace / "uv.lock"
    recorded = source_versions(source)
    proc = lock_from(tmp_path, source, *ours, targets=TARGETS)
    assert proc.returncode == 0, proc.stderr
    for target in TARGETS:
        got = {n: v for n, (v, _) in locked(tmp_path, target).items()}
        assert got == expected[target], (ours, target)
        assert all(recorded[n] == v for n, v in got.items())
    check = lock_from(tmp_path, source, *ours, "--check", targets=TARGETS)
    assert check.returncode == 0, check.stdout + check.stderr
    return expected


@pytest.mark.parametrize(
    ("ours", "uvs"), VIRTUAL_CASES, ids=[" ".join(o) or "none" for o, _ in VIRTUAL_CASES]
)
def test_virtual_workspace_root_selects_as_uv_export(
    tmp_path: Path, workspaces: dict[str, Path], ours: tuple[str, ...], uvs: tuple[str, ...]
) -> None:
    expected = check_as_uv_exports(tmp_path, workspaces["virtual"], ours, uvs)
    # the cases where a root group is selected, said plainly (uv export is the oracle above)
    if "dev" in ours or "--all-groups" in ours:
        # the root's dev and each member's dev are one group: none of them is lost
        assert {"roottool", "devtool", "theme"} <= set(expected[MAC])
    if ours == ("--group", "docs"):
        assert set(expected[WIN]) == {"dep", "sub", "docstool", "lintr"}
        assert set(expected[MAC]) == {"dep", "sub", "docstool"}
        assert set(expected[LIN310]) == {"dep", "sub", "docstool", "oldpy"}
    if ours == ("--group", "dev"):  # what plain 'uv export' (default group dev) exports
        assert exported(workspaces["virtual"]) == expected


@pytest.mark.parametrize(
    ("ours", "uvs"), PROJECT_CASES, ids=[" ".join(o) or "none" for o, _ in PROJECT_CASES]
)
def test_project_workspace_root_selects_as_uv_export(
    tmp_path: Path, workspaces: dict[str, Path], ours: tuple[str, ...], uvs: tuple[str, ...]
) -> None:
    expected = check_as_uv_exports(tmp_path, workspaces["project"], ours, uvs)
    # the member m is not the project: neither its dependency nor its groups are exported
    assert not {"theme", "devtool", "docstool"} & set(expected[MAC])


def test_workspace_group_errors_are_one_line(tmp_path: Path, workspaces: dict[str, Path]) -> None:
    cases = [
        ("virtual", ("--group", "nope"), "no group 'nope'"),
        ("virtual", ("--only-group", "nope"), "no group 'nope'"),
        ("virtual", ("--only-group", "docs", "--group", "dev"), "cannot be combined"),
        ("virtual", ("--only-group", "docs", "--extra", "fast"), "cannot be combined"),
        # uv: "Group `docs` is not defined in the project's `dependency-groups` table"
        ("project", ("--group", "docs"), "no group 'docs'"),
    ]
    for kind, args, words in cases:
        assert uv_export(workspaces[kind], *args).returncode != 0, args
        proc = lock_from(tmp_path, workspaces[kind] / "uv.lock", *args, targets=(MAC,))
        assert proc.returncode == 2, (args, proc.stderr)
        assert words in one_error_line(proc), args
    # the group flags of a lock need the lock
    proc = run_wheelport(
        "lock", "--all-groups", "dep", "--tool", "none", cwd=tmp_path, env=scrubbed_env()
    )
    assert proc.returncode == 2
    assert "--all-groups and --only-group select the groups of a lock" in one_error_line(proc)
