"""Real projects' requirement sets, locked for five targets at once and checked against uv.

Each set in ``tests/data/real/`` (see each file's header for the project it comes from) is locked
by one ``wheelport lock`` run for several targets, among them an aarch64 and a musllinux one. For
every target, ``uv pip compile --python-platform … --python-version …`` resolves the same set on its
own, and the two package sets must agree: the same names (canonicalized), the same version for
every project the input pins with ``==``. Where other versions differ (a range may legitimately
pick another version), wheelport's set must still be one uv accepts: its pins, written as a
constraints file, must make ``uv pip compile --constraints`` succeed for that target and yield
exactly those pins.

Both tools use the same index: the ``public_index`` view, which shows every file the public index
had before the snapshot of ``tests/data/public-index/real-projects.toml`` for the projects it
declares (and nothing newer: a release next week changes no answer here). Both run with no pip/uv
configuration of this machine (scrubbed environment, ``uv --no-config``).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags, mac_platforms
from packaging.utils import canonicalize_name, parse_wheel_filename

from support import run_wheelport, scrubbed_env
from support.public import PublicIndex

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DATA = Path(__file__).resolve().parent / "data" / "real"
UV = Path(sys.executable).parent / "uv"

#: requirement set -> the targets it is locked for (all resolve with uv today)
SETS: dict[str, tuple[str, ...]] = {
    # 155 pins, numpy 1.26.4 / pandas 2.1.4 / pyarrow 16.1.0 (no cp313 wheels: cp311/cp312 only);
    # pyarrow 16.1.0 has no musllinux wheel, numexpr 2.10.2 no manylinux_2_17 aarch64 wheel.
    "superset-base.txt": (
        "cp312-manylinux_2_28_x86_64",
        "cp311-manylinux_2_17_aarch64",
        "cp312-win_amd64",
        "cp311-macosx_11_0_arm64",
        "cp312-musllinux_1_2_x86_64",
    ),
    # ranges and extras, ~135 packages with jupyter
    "ydata-profiling.txt": (
        "cp312-manylinux_2_28_x86_64",
        "cp311-manylinux_2_17_aarch64",
        "cp312-win_amd64",
        "cp313-macosx_11_0_arm64",
        "cp312-musllinux_1_2_x86_64",
    ),
    # pins without musllinux (aarch64) wheels: those targets take the sdists
    "predict-care.txt": (
        "cp312-manylinux_2_28_x86_64",
        "cp311-manylinux_2_17_aarch64",
        "cp312-win_amd64",
        "cp311-musllinux_1_2_x86_64",
        "cp312-musllinux_1_2_aarch64",
    ),
}

#: set -> target -> projects whose pinned version has no wheel for that target (so the lock must
#: carry their sdist, never another platform's wheel)
MUST_USE_SDIST: dict[str, dict[str, set[str]]] = {
    "superset-base.txt": {
        "cp312-musllinux_1_2_x86_64": {"pyarrow"},
        "cp311-manylinux_2_17_aarch64": {"numexpr"},
    },
    "predict-care.txt": {
        "cp312-musllinux_1_2_aarch64": {"pandas", "scipy", "matplotlib", "scikit-learn"},
        "cp311-musllinux_1_2_x86_64": {"scikit-learn"},
    },
}

#: under the suite's 900 s per-test timeout, so a hung lock reports its output
WHEELPORT_TIMEOUT_S = 600

_UV_MANYLINUX = {(2, 17), *((2, n) for n in range(28, 41))}  # what ``--python-platform`` names


@dataclass(frozen=True)
class UvTarget:
    """How uv names a wheelport target: ``--python-platform``, ``--python-version``, extra env."""

    platform: str
    python: str
    env: Mapping[str, str] = field(default_factory=dict)


def uv_target(target: str) -> UvTarget:
    """Map a wheelport target (``cp312-manylinux_2_28_x86_64``) to the uv platform meaning the same.

    - ``manylinux_X_Y_<arch>`` -> ``<arch>-manylinux_X_Y`` (uv knows 2_17 and 2_28 … 2_40)
    - ``musllinux_1_2_<arch>`` -> ``<arch>-unknown-linux-musl`` (uv's musl platform is musllinux_1_2)
    - ``win_amd64`` / ``win_arm64`` -> ``x86_64-pc-windows-msvc`` / ``aarch64-pc-windows-msvc``
    - ``macosx_X_Y_<arm64|x86_64>`` -> ``aarch64-apple-darwin`` / ``x86_64-apple-darwin`` with
      ``MACOSX_DEPLOYMENT_TARGET=X.Y`` (uv's own default is a newer macOS than 11.0)
    """
    m = re.fullmatch(r"cp3(\d+)-(.+)", target)
    if not m:
        raise ValueError(f"no uv equivalent for {target!r}")
    python, plat = f"3.{m[1]}", m[2]
    if m2 := re.fullmatch(r"manylinux_(\d+)_(\d+)_(x86_64|aarch64)", plat):
        if (int(m2[1]), int(m2[2])) in _UV_MANYLINUX:
            return UvTarget(f"{m2[3]}-manylinux_{m2[1]}_{m2[2]}", python)
    elif m2 := re.fullmatch(r"musllinux_1_2_(x86_64|aarch64)", plat):
        return UvTarget(f"{m2[1]}-unknown-linux-musl", python)
    elif plat in ("win_amd64", "win_arm64"):
        arch = "x86_64" if plat == "win_amd64" else "aarch64"
        return UvTarget(f"{arch}-pc-windows-msvc", python)
    elif m2 := re.fullmatch(r"macosx_(\d+)_(\d+)_(arm64|x86_64)", plat):
        arch = "aarch64" if m2[3] == "arm64" else "x86_64"
        return UvTarget(
            f"{arch}-apple-darwin", python, {"MACOSX_DEPLOYMENT_TARGET": f"{m2[1]}.{m2[2]}"}
        )
    raise ValueError(f"no uv equivalent for {target!r}")


def test_uv_target_mapping() -> None:
    assert uv_target("cp312-manylinux_2_28_x86_64") == UvTarget("x86_64-manylinux_2_28", "3.12")
    assert uv_target("cp311-manylinux_2_17_aarch64") == UvTarget("aarch64-manylinux_2_17", "3.11")
    assert uv_target("cp312-win_amd64") == UvTarget("x86_64-pc-windows-msvc", "3.12")
    assert uv_target("cp313-macosx_11_0_arm64") == UvTarget(
        "aarch64-apple-darwin", "3.13", {"MACOSX_DEPLOYMENT_TARGET": "11.0"}
    )
    assert uv_target("cp312-musllinux_1_2_x86_64") == UvTarget("x86_64-unknown-linux-musl", "3.12")
    assert uv_target("cp312-musllinux_1_2_aarch64").platform == "aarch64-unknown-linux-musl"
    for bad in ("cp312-manylinux_2_24_x86_64", "cp312-musllinux_1_1_x86_64", "pp310-win_amd64"):
        with pytest.raises(ValueError):
            uv_target(bad)


def test_target_tags() -> None:
    def fits(target: str, wheel: str) -> bool:
        return bool(parse_wheel_filename(wheel)[3] & target_tags(target))

    linux = "cp312-manylinux_2_28_x86_64"
    assert fits(linux, "x-1-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
    assert fits(linux, "x-1-cp38-abi3-manylinux1_x86_64.whl")
    assert fits(linux, "x-1-py3-none-any.whl")
    assert not fits(linux, "x-1-cp312-cp312-manylinux_2_31_x86_64.whl")
    assert not fits(linux, "x-1-cp311-cp311-manylinux_2_17_x86_64.whl")
    assert not fits("cp311-manylinux_2_17_aarch64", "x-1-cp311-cp311-manylinux_2_28_aarch64.whl")
    assert fits("cp312-musllinux_1_2_aarch64", "x-1-cp312-cp312-musllinux_1_1_aarch64.whl")
    assert not fits("cp312-musllinux_1_2_aarch64", "x-1-cp312-cp312-musllinux_1_1_x86_64.whl")
    assert fits("cp313-macosx_11_0_arm64", "x-1-cp313-cp313-macosx_10_13_universal2.whl")
    assert not fits("cp313-macosx_11_0_arm64", "x-1-cp313-cp313-macosx_12_0_arm64.whl")
    assert fits("cp312-win_amd64", "x-1-cp312-cp312-win_amd64.whl")


def pinned_inputs(path: Path) -> dict[str, str]:
    """{name: version} of the input requirements pinned with ``==``."""
    pins: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        if len(specs) == 1 and specs[0].operator == "==" and "*" not in specs[0].version:
            pins[canonicalize_name(req.name)] = specs[0].version
    return pins


def parse_uv_output(text: str) -> dict[str, str]:
    """{name: version} from ``uv pip compile --no-header --no-annotate`` output."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.split(";", 1)[0].split("#", 1)[0].strip()
        if line and not line.startswith("-") and "==" in line:
            name, _, version = line.partition("==")
            out[canonicalize_name(name.split("[", 1)[0].strip())] = version.strip()
    return out


def uv_compile(
    work: Path, requirements: Path, target: str, *, index: str, constraints: Path | None = None
) -> tuple[int, dict[str, str], str]:
    """(exit code, {name: version}, stderr) of ``uv pip compile`` for one target."""
    ut = uv_target(target)
    env = scrubbed_env()
    env.update(ut.env, UV_CACHE_DIR=str(work / "uv-cache"))
    cmd = [str(UV), "pip", "compile", "--no-config", "--no-python-downloads",
           "--python-platform", ut.platform, "--python-version", ut.python,
           "--default-index", index, "--no-header", "--no-annotate", "--quiet",
           str(requirements)]  # fmt: skip
    if constraints is not None:
        cmd[-1:-1] = ["--constraints", str(constraints)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    return proc.returncode, parse_uv_output(proc.stdout), proc.stderr


@dataclass(frozen=True)
class Locked:
    """One target's lock: {name: version}, the projects it takes as sdists, unfit wheels."""

    pins: dict[str, str]
    sdists: list[str]
    unfit_wheels: list[str]


def target_tags(target: str) -> set[Tag]:
    """The wheel tags a target accepts, derived here with ``packaging.tags`` alone (not with
    wheelport's own target code), to check the locks' wheels independently."""
    m = re.fullmatch(r"cp3(\d+)-(.+)", target)
    assert m, target
    minor, plat = int(m[1]), m[2]
    if m2 := re.fullmatch(r"manylinux_2_(\d+)_(\w+)", plat):
        glibc, arch = int(m2[1]), m2[2]
        platforms = [f"manylinux_2_{n}_{arch}" for n in range(glibc, 4, -1)]
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        platforms += [f"{alias}_{arch}" for n, alias in legacy.items() if n <= glibc]
    elif m2 := re.fullmatch(r"musllinux_1_(\d+)_(\w+)", plat):
        platforms = [f"musllinux_1_{n}_{m2[2]}" for n in range(int(m2[1]), -1, -1)]
    elif m2 := re.fullmatch(r"macosx_(\d+)_(\d+)_(\w+)", plat):
        platforms = list(mac_platforms((int(m2[1]), int(m2[2])), m2[3]))
    else:
        platforms = [plat]
    version = (3, minor)
    tags = set(cpython_tags(version, abis=[f"cp3{minor}"], platforms=platforms))
    return tags | set(compatible_tags(version, f"cp3{minor}", platforms))


def read_locks(wheelhouse: Path, targets: tuple[str, ...]) -> dict[str, Locked]:
    """Each ``pylock.<target>.toml`` (installer tools live under ``[tool.wheelport]``, not in
    ``packages``)."""
    result: dict[str, Locked] = {}
    for target in targets:
        data = tomllib.loads((wheelhouse / f"pylock.{target}.toml").read_text(encoding="utf-8"))
        assert data["tool"]["wheelport"]["target"] == target
        accepted = target_tags(target)
        pins, sdists, unfit = {}, [], []
        for package in data["packages"]:
            name = canonicalize_name(package["name"])
            pins[name] = package["version"]
            wheels = package.get("wheels") or []
            if not wheels and package.get("sdist"):
                sdists.append(name)
            unfit += [
                w["name"] for w in wheels if not parse_wheel_filename(w["name"])[3] & accepted
            ]
        result[target] = Locked(pins, sorted(sdists), unfit)
    return result


@dataclass
class Row:
    target: str
    wheelport: int
    uv: int
    only_wheelport: list[str]
    only_uv: list[str]
    versions: list[tuple[str, str, str]]  # (name, wheelport, uv)
    sdists: list[str] = field(default_factory=list)  # taken as sdists by wheelport
    constraints_ok: bool | None = None  # None: no check needed (same set as uv)
    problems: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        check = {None: "-", True: "ok", False: "FAILED"}[self.constraints_ok]
        diff = ", ".join(f"{n} {w}/{u}" for n, w, u in self.versions) or "none"
        extra = f" only-wheelport={self.only_wheelport}" if self.only_wheelport else ""
        extra += f" only-uv={self.only_uv}" if self.only_uv else ""
        return (f"{self.target:30} wheelport {self.wheelport:3}  uv {self.uv:3}  "
                f"versions wheelport/uv differ: {diff}{extra}  constraints check: {check}  "
                f"sdists: {', '.join(self.sdists) or '-'}")  # fmt: skip


def compare(
    work: Path, requirements: Path, target: str, locked: Locked, theirs: dict[str, str], index: str
) -> Row:
    """One target's comparison; runs the constraints check when the sets differ."""
    mine = locked.pins
    row = Row(
        target,
        len(mine),
        len(theirs),
        sorted(set(mine) - set(theirs)),
        sorted(set(theirs) - set(mine)),
        sorted((n, mine[n], theirs[n]) for n in set(mine) & set(theirs) if mine[n] != theirs[n]),
        locked.sdists,
    )
    if locked.unfit_wheels:
        row.problems.append(f"wheels that do not fit the target: {locked.unfit_wheels}")
    for name, version in pinned_inputs(requirements).items():
        if mine.get(name) != version:
            row.problems.append(f"{name}=={version} is pinned but wheelport has {mine.get(name)}")
        if theirs.get(name) != version:
            row.problems.append(f"{name}=={version} is pinned but uv has {theirs.get(name)}")
    if mine == theirs:
        return row
    cons = work / f"constraints.{target}.txt"
    cons.write_text("".join(f"{n}=={v}\n" for n, v in sorted(mine.items())), encoding="utf-8")
    code, checked, err = uv_compile(work, requirements, target, index=index, constraints=cons)
    row.constraints_ok = code == 0 and checked == mine
    if code != 0:
        tail = "\n".join(err.strip().splitlines()[-15:])
        row.problems.append(f"uv rejects wheelport's pins as constraints:\n{tail}")
    elif checked != mine:
        delta = sorted(set(checked.items()) ^ set(mine.items()))
        row.problems.append(f"uv with wheelport's pins as constraints yields another set: {delta}")
    return row


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.skipif(not UV.exists(), reason="uv is not installed next to this Python")
@pytest.mark.parametrize("name", sorted(SETS))
def test_real_set_matches_uv_on_every_target(
    name: str, tmp_path: Path, public_index: PublicIndex
) -> None:
    index = public_index.url
    requirements = DATA / name
    targets = SETS[name]
    wheelhouse = tmp_path / "wh"
    args = [a for t in targets for a in ("-t", t)]
    env = scrubbed_env()  # keeps WHEELPORT_CACHE_DIR (the autouse fixture's cold cache)

    with ThreadPoolExecutor(max_workers=len(targets)) as pool:  # uv runs beside wheelport
        uv_runs = {
            t: pool.submit(uv_compile, tmp_path, requirements, t, index=index) for t in targets
        }
        try:
            proc = run_wheelport("lock", "-r", str(requirements), *args, "--index-url",
                                 index, "-o", str(wheelhouse), env=env, cwd=tmp_path,
                                 timeout=WHEELPORT_TIMEOUT_S)  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            err = (
                exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
            )
            pytest.fail(f"wheelport lock {name} still running after {WHEELPORT_TIMEOUT_S} s; "
                        f"its last output:\n{(err or '')[-4000:]}")  # fmt: skip
        theirs: dict[str, dict[str, str]] = {}
        for target, run in uv_runs.items():
            code, pins, err = run.result()
            assert code == 0, f"uv cannot resolve {name} for {target} (pick other targets):\n{err}"
            theirs[target] = pins
    assert proc.returncode == 0, (
        f"wheelport lock {name} failed (exit {proc.returncode}):\n{proc.stderr[-6000:]}"
    )
    mine = read_locks(wheelhouse, targets)

    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        rows = list(
            pool.map(
                lambda t: compare(tmp_path, requirements, t, mine[t], theirs[t], index), targets
            )
        )
    report = "\n".join([f"{name}:", *(f"  {r}" for r in rows)])
    print(report)
    problems = [f"{r.target}: {p}" for r in rows for p in r.problems]
    for target, names in MUST_USE_SDIST.get(name, {}).items():
        if missing := names - set(mine[target].sdists):
            problems.append(f"{target}: {sorted(missing)} have no wheel here but are not sdists")
    assert not problems, report + "\n" + "\n".join(problems)
