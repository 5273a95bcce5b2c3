"""Lock a dependency tree behind a slow index: ``wheelport lock`` vs ``uv pip compile``, one run.

The public index answers this machine in 0.3 ms, so the benches against it measure CPU, not how a
resolver waits; a user's index is 10-50 ms away (a corporate mirror can be slower). Here a
generated tree — 8 requirements, each with 3 dependencies, each of those with 2, each of those with
1 (128 projects, 6 versions each, wheels for every platform) — is served by the tests' own index
on 127.0.0.1 (``tests/support/server.py``), which waits ``--delay`` seconds before each answer.

wheelport locks 4 targets in one cold run; uv runs once per target, cold (its own fresh cache
each run), as a user runs it for several platforms. Both read the same pages and metadata
(PEP 658) from the same index. The pins are compared per target. Prints the times and the ratio.

    .venv/bin/python bench/latency.py [--delay 0.02]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests"))

from _common import lock_pins, scrubbed_env, uv_compile  # noqa: E402

from support.dists import make_wheel  # noqa: E402
from support.server import IndexServer  # noqa: E402

TARGETS = [
    "cp312-manylinux_2_28_x86_64",
    "cp312-win_amd64",
    "cp311-macosx_11_0_arm64",
    "cp310-manylinux_2_28_aarch64",
]
VERSIONS = 6


def name(*path: int) -> str:
    return "p" + "-".join(map(str, path))


def tree() -> tuple[list[str], dict[str, list[str]]]:
    """(the requirements, {project: its dependencies})."""
    deps: dict[str, list[str]] = {}
    for a in range(8):
        deps[name(a)] = [name(a, b) for b in range(3)]
        for b in range(3):
            deps[name(a, b)] = [name(a, b, c) for c in range(2)]
            for c in range(2):
                deps[name(a, b, c)] = [name(a, b, c, 0)]
                deps[name(a, b, c, 0)] = []
    return [name(a) for a in range(8)], deps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--delay", type=float, default=0.02, help="seconds before each answer")
    args = parser.parse_args()
    roots, deps = tree()
    work = Path(tempfile.mkdtemp(prefix="wheelport-bench-latency-"))
    try:
        dists = work / "dists"
        dists.mkdir()
        with IndexServer(delay=args.delay) as index:
            for project, requires in deps.items():
                for v in range(1, VERSIONS + 1):
                    wheel = make_wheel(dists, project, f"{v}.0", deps=[f"{d}>=1" for d in requires])
                    index.add(wheel)
            reqs = work / "requirements.txt"
            reqs.write_text("\n".join(roots) + "\n")
            env = scrubbed_env(WHEELPORT_CACHE_DIR=str(work / "wp-cache"))
            cmd = [sys.executable, "-m", "wheelport", "lock", "-q", "-r", str(reqs),
                   "--index-url", index.url, "--tool", "none", "-o", str(work / "wh"),
                   *(a for t in TARGETS for a in ("-t", t))]  # fmt: skip
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            wheelport_s = time.perf_counter() - t0
            if proc.returncode != 0:
                sys.exit(f"wheelport lock failed:\n{proc.stderr[-3000:]}")
            served = len(index.requests)
            uv_s, same = 0.0, 0
            for target in TARGETS:
                seconds, pins = uv_compile(reqs, target, index.url, work / f"uv-cache-{target}")
                uv_s += seconds
                same += pins == lock_pins(work / "wh", target)
        print(f"index: {len(deps)} projects × {VERSIONS} versions, {args.delay * 1000:.0f} ms "
              f"before each answer; targets: {', '.join(TARGETS)}")  # fmt: skip
        print(f"wheelport lock, 4 targets, cold:    {wheelport_s:6.2f} s  ({served} requests)")
        print(f"uv pip compile × 4 targets, cold:   {uv_s:6.2f} s")
        print(f"ratio uv / wheelport: {uv_s / wheelport_s:.2f}x; pins equal on {same}/4 targets")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
