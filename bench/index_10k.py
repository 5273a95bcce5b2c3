"""Benchmark the static index writer on 10,000 wheels (2,000 projects x 5 versions).

    .venv/bin/python bench/index_10k.py [--projects 2000] [--versions 5] [--dir DIR]

Generating the wheels is not timed. Timed: a cold ``write_index``, a no-op re-index, and
adding one wheel then re-indexing. Goals: cold < 10 s, add-one < 0.5 s. Exit code 1 when a
goal is missed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "src"), str(HERE.parent / "tests")]

from support.dists import make_wheel  # noqa: E402
from wheelport.site.writer import write_index  # noqa: E402

GOAL_COLD = 10.0
GOAL_ADD_ONE = 0.5


def generate(root: Path, projects: int, versions: int) -> int:
    wheels = root / "wheels"
    for p in range(projects):
        for v in range(versions):
            make_wheel(wheels, f"proj-{p:05d}", f"1.{v}", requires_python=">=3.8")
    return projects * versions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=2000)
    parser.add_argument("--versions", type=int, default=5)
    parser.add_argument("--dir", type=Path, help="work here instead of a temporary directory")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="wheelport-bench-") as tmp:
        root = (args.dir or Path(tmp)) / "wh"
        t0 = time.perf_counter()
        n = generate(root, args.projects, args.versions)
        print(f"generated {n} wheels in {time.perf_counter() - t0:.1f} s (not timed)")

        t0, c0 = time.perf_counter(), time.process_time()
        cold = write_index(root)
        t_cold, c_cold = time.perf_counter() - t0, time.process_time() - c0

        t0, c0 = time.perf_counter(), time.process_time()
        noop = write_index(root)
        t_noop, c_noop = time.perf_counter() - t0, time.process_time() - c0

        make_wheel(root / "wheels", "proj-00000", "9.0", requires_python=">=3.8")
        t0, c0 = time.perf_counter(), time.process_time()
        add = write_index(root)
        t_add, c_add = time.perf_counter() - t0, time.process_time() - c0

    assert cold.files == n and cold.projects == args.projects, cold
    assert noop.pages_written == noop.files_read == (), noop
    assert len(add.pages_written) == 2 and len(add.files_read) == 1, add
    ok_cold, ok_add = t_cold < GOAL_COLD, t_add < GOAL_ADD_ONE
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs (wall time suffers)")
    rows = [
        (
            "cold index",
            t_cold,
            c_cold,
            cold,
            f"goal < {GOAL_COLD} s: {(ok_cold and 'ok') or 'MISSED'}",
        ),
        ("no-op", t_noop, c_noop, noop, ""),
        ("add one", t_add, c_add, add, f"goal < {GOAL_ADD_ONE} s: {(ok_add and 'ok') or 'MISSED'}"),
    ]
    for label, wall, cpu, report, goal in rows:
        pages = len(report.pages_written)
        print(f"{label:10}: {wall:7.3f} s wall, {cpu:7.3f} s CPU, {pages:5d} pages  {goal}")
    return 0 if ok_cold and ok_add else 1


if __name__ == "__main__":
    sys.exit(main())
