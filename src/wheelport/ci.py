"""``wheelport ci github``: a GitHub Actions workflow that builds a wheelhouse on native runners.

Containers serve every manylinux/musllinux target from one Linux host, but a compiled sdist
for Windows or macOS needs a native build host. The workflow gives each runner kind its own
job — a matrix over the kind's targets and over shards where the work is large — in which
wheelport's native builder (PEP 517 ``build`` with the interpreter that runs wheelport, which
``actions/setup-python`` installs at the target's Python version) or its container builder
(podman on the Ubuntu runners) serves that runner's targets. Each job uploads its partial
wheelhouse as an artifact; a final job downloads them all, ``wheelport merge``-s them,
``wheelport verify``-s the result and optionally publishes and bundles it.

The workflow runs where the wheelhouse's locks (``pylock.*.toml``, ``wheelport.json``) and its
inputs (``[tool.wheelport]``, requirement files) are committed: each job re-runs the same
``wheelport sync`` with ``--only-target``/``--shard``, which finds the locks current and only
fetches and builds.

Paths in the workflow (the wheelhouse in ``on.push.paths``, the artifact ``path:`` and ``-o``,
the requirement files) are relative to the repository root, where the jobs run: the
repository is the directory holding the ``.github/workflows/`` the workflow is written to,
else the git checkout around the current directory (``--repository`` names it). A path outside
it is refused.

:func:`runner_work` and :func:`github_workflow` decide (pure, over values); :func:`write_github`
reads the wheelhouse and writes the file.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]  # PyYAML ships no stubs

from wheelport import __version__
from wheelport.errors import UsageError
from wheelport.targets import Target, parse_target

#: runner kind -> GitHub-hosted runner label
GITHUB_RUNNERS: Mapping[str, str] = {
    "linux-x86_64": "ubuntu-24.04",
    "linux-aarch64": "ubuntu-24.04-arm",
    "windows-x86_64": "windows-2022",
    "macos-arm64": "macos-14",
    "macos-x86_64": "macos-13",
}

#: Actions pinned to full commit SHAs; the release each one is goes in a comment beside it.
ACTIONS: Mapping[str, tuple[str, str]] = {
    "checkout": ("actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683", "v4.2.2"),
    "setup-python": ("actions/setup-python@0b93645e9fea7318ecaed2b359559ac225c90a2b", "v5.3.0"),
    "upload-artifact": (
        "actions/upload-artifact@b4b15b8c7c6ac21ea08fcf65892d2ee8f75cf882",
        "v4.4.3",
    ),
    "download-artifact": (
        "actions/download-artifact@fa0a91b85d4f404e444e00e005971372dc801d16",
        "v4.1.8",
    ),
}
ARTIFACT_PREFIX = "wheelport-"
#: Python that runs wheelport where the target's interpreter does not matter (container builds)
HOST_PYTHON = "3.12"
SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, kw_only=True)
class RunnerWork:
    """One runner kind, the targets it serves and in how many shards its work is split."""

    runner: str
    targets: tuple[str, ...]
    shards: int = 1


@dataclass(frozen=True, kw_only=True)
class WorkflowInputs:
    """What every job of the workflow passes to ``wheelport sync`` (the same inputs)."""

    wheelhouse: str = "wheelhouse"
    #: every target of the wheelhouse (``-t``), so each job's sync sees the same inputs
    targets: tuple[str, ...] = ()
    requirement_files: tuple[str, ...] = ()
    #: name of the secret holding the upload URL of ``wheelport publish`` (None: no publish)
    publish_secret: str | None = None
    #: name of the secret holding the upload token
    token_secret: str = "WHEELPORT_PUBLISH_PASSWORD"
    bundle: bool = False
    version: str = __version__


def runner_kind(target: Target) -> str:
    """The GitHub runner kind that builds ``target`` natively (``wheelport plan``'s runner);
    Linux machines without a hosted runner (i686, ppc64le, s390x, ...) are built in an
    emulated container on ``linux-x86_64``."""
    from wheelport.builders.kind import runner_of

    kind = runner_of(target)
    if kind in GITHUB_RUNNERS:
        return kind
    if target.is_linux:
        return "linux-x86_64"
    raise UsageError(
        f"no GitHub-hosted runner builds {target} ({kind})",
        hint=f"runners: {', '.join(GITHUB_RUNNERS)}",
        target=target.identifier,
    )


def runner_work(
    targets: Iterable[str], builds: Mapping[str, int] | None = None, *, shards: int = 1
) -> list[RunnerWork]:
    """Runner kinds needed for ``targets`` (taken from the locks' targets), in
    :data:`GITHUB_RUNNERS` order. ``builds`` (target -> number of sdists to build) caps the
    shards of a runner: no more shards than builds, at least one."""
    if shards < 1:
        raise UsageError(f"--shards must be at least 1, not {shards}")
    by_kind: dict[str, list[str]] = {}
    for tid in targets:
        by_kind.setdefault(runner_kind(parse_target(tid)), []).append(tid)
    out = []
    for kind in GITHUB_RUNNERS:
        if kind not in by_kind:
            continue
        work = (
            max((builds or {}).get(t, 0) for t in by_kind[kind]) if builds is not None else shards
        )
        out.append(
            RunnerWork(runner=kind, targets=tuple(by_kind[kind]), shards=max(1, min(shards, work)))
        )
    return out


def _python_of(target: str, runner: str) -> str:
    """setup-python's version for a job: the target's own on native runners (the native
    builder builds with the interpreter that runs wheelport), any on Linux (containers)."""
    if runner.startswith("linux-"):
        return HOST_PYTHON
    t = parse_target(target)
    return f"{t.python_version[0]}.{t.python_version[1]}" + ("t" if t.free_threaded else "")


def _sync_command(inputs: WorkflowInputs, shards: int) -> str:
    args = ["wheelport", "sync", "-o", inputs.wheelhouse]
    for f in inputs.requirement_files:
        args += ["-r", f]
    for t in inputs.targets:
        args += ["-t", t]
    quoted = " ".join(shlex.quote(a) for a in args)
    return (
        f"{quoted} --only-target ${{{{ matrix.target }}}} --shard ${{{{ matrix.shard }}}}/{shards}"
    )


def _runner_job(work: RunnerWork, inputs: WorkflowInputs) -> dict[str, Any]:
    include: list[dict[str, Any]] = []
    for t in work.targets:
        target = parse_target(t)
        entry: dict[str, Any] = {"target": t, "python": _python_of(t, work.runner)}
        if target.os == "macos" and target.policy_version:
            # the native build's wheel is tagged for the target's macOS, not the runner's
            entry["macos"] = "{}.{}".format(*target.policy_version)
        include += [entry | {"shard": i} for i in range(1, work.shards + 1)]
    sync_step: dict[str, Any] = {
        "name": "Sync this shard",
        "run": _sync_command(inputs, work.shards),
    }
    if work.runner.startswith("macos-"):
        sync_step["env"] = {"MACOSX_DEPLOYMENT_TARGET": "${{ matrix.macos }}"}
    return {
        "name": f"{work.runner} ${{{{ matrix.target }}}} shard ${{{{ matrix.shard }}}}/{work.shards}",
        "runs-on": GITHUB_RUNNERS[work.runner],
        "strategy": {"fail-fast": False, "matrix": {"include": include}},
        "steps": [
            {"uses": ACTIONS["checkout"][0], "with": {"persist-credentials": False}},
            {
                "uses": ACTIONS["setup-python"][0],
                "with": {"python-version": "${{ matrix.python }}"},
            },
            {
                "name": "Install wheelport",
                "run": f"python -m pip install wheelport=={inputs.version}",
            },
            sync_step,
            {
                "uses": ACTIONS["upload-artifact"][0],
                "with": {
                    "name": f"{ARTIFACT_PREFIX}${{{{ matrix.target }}}}-${{{{ matrix.shard }}}}",
                    "path": inputs.wheelhouse,
                    "if-no-files-found": "error",
                    "retention-days": 7,
                },
            },
        ],
    }


def _merge_job(needs: list[str], inputs: WorkflowInputs) -> dict[str, Any]:
    merged = "merged-wheelhouse"
    steps: list[dict[str, Any]] = [
        {"uses": ACTIONS["setup-python"][0], "with": {"python-version": HOST_PYTHON}},
        {"name": "Install wheelport", "run": f"python -m pip install wheelport=={inputs.version}"},
        {
            "uses": ACTIONS["download-artifact"][0],
            "with": {
                "pattern": f"{ARTIFACT_PREFIX}*",
                "path": "artifacts",
                "merge-multiple": False,
            },
        },
        {"name": "Merge", "run": f"wheelport merge artifacts -o {merged}"},
        {"name": "Verify", "run": f"wheelport verify {merged}"},
    ]
    if inputs.publish_secret:
        steps.append(
            {
                "name": "Publish",
                "if": "github.event_name != 'pull_request'",
                "env": {
                    "WHEELPORT_PUBLISH_URL": f"${{{{ secrets.{inputs.publish_secret} }}}}",
                    "WHEELPORT_PUBLISH_USERNAME": "__token__",
                    "WHEELPORT_PUBLISH_PASSWORD": f"${{{{ secrets.{inputs.token_secret} }}}}",
                },
                "run": f'wheelport publish -w {merged} --repository-url "$WHEELPORT_PUBLISH_URL"',
            }
        )
    upload = merged
    if inputs.bundle:
        steps.append(
            {"name": "Bundle", "run": f"wheelport bundle -w {merged} -o wheelhouse.bundle"}
        )
        upload = "wheelhouse.bundle"
    steps.append(
        {
            "uses": ACTIONS["upload-artifact"][0],
            "with": {"name": "wheelhouse", "path": upload, "if-no-files-found": "error"},
        }
    )
    return {"runs-on": GITHUB_RUNNERS["linux-x86_64"], "needs": needs, "steps": steps}


def repository_root(output: Path, cwd: Path | None = None) -> Path:
    """The repository a workflow written to ``output`` runs in: the directory holding its
    ``.github/workflows/``, else the nearest directory from ``cwd`` up that holds ``.git``,
    else ``cwd``."""
    parent = Path(output).absolute().parent
    if parent.name == "workflows" and parent.parent.name == ".github":
        return parent.parent.parent
    here = Path(cwd or Path.cwd()).absolute()
    return next((d for d in (here, *here.parents) if (d / ".git").exists()), here)


def in_repository(path: Path | str, root: Path, what: str) -> str:
    """``path`` (relative to the current directory, or absolute) as the workflow writes it:
    POSIX and relative to the repository ``root``. Outside it: a :class:`UsageError`."""
    full = Path(path).absolute().resolve()
    base = Path(root).absolute().resolve()
    if not full.is_relative_to(base):
        raise UsageError(
            f"{what} {path} is outside the repository {base}, where the workflow's jobs run",
            hint="keep it in the repository, or name the repository with --repository DIR",
            path=str(path),
        )
    return full.relative_to(base).as_posix()


def _path_filter(rel: str, pattern: str) -> str:
    """An ``on.push.paths`` entry for ``pattern`` in the directory ``rel`` (its glob
    characters escaped, as GitHub's filter syntax wants)."""
    escaped = re.sub(r"([*?+\[\]!\\])", r"\\\1", rel)
    return pattern if rel == "." else f"{escaped}/{pattern}"


def github_workflow(work: Sequence[RunnerWork], inputs: WorkflowInputs) -> dict[str, Any]:
    """The workflow as data: one job per runner kind, then ``merge``."""
    if not work:
        raise UsageError(
            "the wheelhouse has no targets", hint="run 'wheelport lock -t TARGET' first"
        )
    wh = inputs.wheelhouse
    jobs = {w.runner: _runner_job(w, inputs) for w in work}
    jobs["merge"] = _merge_job(list(jobs), inputs)
    return {
        "name": "wheelport",
        "on": {
            "workflow_dispatch": {},
            "push": {
                "paths": [_path_filter(wh, "pylock.*.toml"), _path_filter(wh, "wheelport.json")]
            },
        },
        "permissions": {"contents": "read"},
        "defaults": {"run": {"shell": "bash"}},
        "jobs": jobs,
    }


def dump(workflow: Mapping[str, Any]) -> str:
    """YAML text of a workflow (``yaml.safe_dump``, keys in the order given)."""
    head = f"# generated by wheelport {__version__} ('wheelport ci github'); edit the inputs, not this file\n"
    text: str = yaml.safe_dump(dict(workflow), sort_keys=False, width=10_000)
    releases = dict(ACTIONS.values())
    # YAML data has no comments: name each pinned SHA's release beside it
    lines = []
    for line in text.splitlines():
        ref = line.partition("uses: ")[2]
        lines.append(f"{line}  # {releases[ref]}" if ref in releases else line)
    return head + "\n".join(lines) + "\n"


def work_from_plan_rows(
    rows: Iterable[Mapping[str, Any]], targets: Sequence[str], *, shards: int = 1
) -> list[RunnerWork]:
    """Adapter from ``wheelport plan --json`` rows (package, targets, builder, runner, here):
    each target of the wheelhouse goes to its own runner kind, whose shards are capped by the
    number of planned builds for its targets."""
    builds: dict[str, int] = dict.fromkeys(targets, 0)
    for row in rows:
        for t in row.get("targets", []):
            builds[t] = builds.get(t, 0) + 1
    return runner_work(builds, builds, shards=shards)


def wheelhouse_work(wheelhouse: Path, *, shards: int = 1) -> tuple[list[str], list[RunnerWork]]:
    """The targets of the wheelhouse's locks and the runner work ``wheelport plan`` gives."""
    from wheelport.builders.stage import build_plan
    from wheelport.wheelhouse import Wheelhouse

    wh = Wheelhouse(Path(wheelhouse))
    targets = [p.name[len("pylock.") : -len(".toml")] for p in wh.lock_paths()]
    if not targets:
        raise UsageError(
            f"no locks in {wh.root}",
            hint="run 'wheelport lock -t TARGET... -o WH' and commit the locks first",
            path=str(wh.root),
        )
    rows = build_plan(wh.root, shards=1)
    return targets, work_from_plan_rows(rows, targets, shards=shards)


@dataclass(frozen=True)
class CiReport:
    output: Path
    jobs: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"output": str(self.output), "jobs": self.jobs}


def write_github(
    wheelhouse: Path,
    output: Path,
    *,
    shards: int = 1,
    requirement_files: Sequence[str] = (),
    publish_secret: str | None = None,
    bundle: bool = False,
    repository: Path | None = None,
) -> CiReport:
    """Write the GitHub Actions workflow for ``wheelhouse`` to ``output``. Its paths are
    relative to ``repository`` (default :func:`repository_root`); the wheelhouse or a
    requirement file outside it is a :class:`UsageError`."""
    from wheelport.wheelhouse import atomic_write_bytes

    for secret in (publish_secret,):
        if secret is not None and not SECRET_NAME.fullmatch(secret):
            raise UsageError(
                f"{secret!r} is not a GitHub secret name",
                hint="letters, digits and underscores, not starting with a digit",
            )
    root = repository if repository is not None else repository_root(output)
    wh_rel = in_repository(wheelhouse, root, "the wheelhouse")
    files = tuple(in_repository(f, root, "the requirement file") for f in requirement_files)
    targets, work = wheelhouse_work(wheelhouse, shards=shards)
    inputs = WorkflowInputs(
        wheelhouse=wh_rel,
        targets=tuple(targets),
        requirement_files=files,
        publish_secret=publish_secret,
        bundle=bundle,
    )
    workflow = github_workflow(work, inputs)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(output, dump(workflow).encode())
    return CiReport(output=output, jobs=list(workflow["jobs"]))
