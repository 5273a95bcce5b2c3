"""What resolution hands on besides versions: the edge markers (``strip_extra``), the graph
read from resolvelib's criteria, and the progress a :class:`Reporter` sees."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.markers import Marker

from support.dists import make_wheel
from support.server import IndexServer
from wheelport.cache import Cache
from wheelport.config import parse_requirement
from wheelport.errors import WheelportError
from wheelport.index.client import IndexClient
from wheelport.resolve import Candidate, NullReporter, Resolution, resolve_target, strip_extra
from wheelport.targets import Target, parse_target

WIN = parse_target("cp312-win_amd64")

# -- strip_extra -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        # only extras: nothing is left
        ('extra == "a"', None),
        ("'a' == extra", None),
        ('extra == "a" or extra == "b"', None),
        ('(extra == "a" or (extra == "b"))', None),
        # extra on either side of the operator, before or after the rest
        ('sys_platform == "win32" and extra == "a"', 'sys_platform == "win32"'),
        ('extra == "a" and sys_platform == "win32"', 'sys_platform == "win32"'),
        ("\"a\" == extra and python_version < '3.9'", 'python_version < "3.9"'),
        ('extra != "a" and os_name == "nt"', 'os_name == "nt"'),
        # an "or" term with nothing left goes; "and" binds tighter than "or"
        ('sys_platform == "win32" or extra == "a"', 'sys_platform == "win32"'),
        (
            'os_name == "nt" and extra == "a" or sys_platform == "linux"',
            'os_name == "nt" or sys_platform == "linux"',
        ),
        (
            'extra == "a" and os_name == "nt" or sys_platform == "linux" and extra == "b"',
            'os_name == "nt" or sys_platform == "linux"',
        ),
        # parentheses: a group keeps what is left of it, an emptied group goes
        ('python_version < "3.9" and (extra == "a" or extra == "b")', 'python_version < "3.9"'),
        (
            'python_version < "3.9" and (extra == "a" or sys_platform == "win32")',
            'python_version < "3.9" and sys_platform == "win32"',
        ),
        (
            'python_version < "3.9" and (extra == "a" or os_name == "nt" or sys_platform == "win32")',
            'python_version < "3.9" and (os_name == "nt" or sys_platform == "win32")',
        ),
        (
            '(os_name == "nt" and (extra == "a" or (extra == "b"))) or sys_platform == "linux"',
            'os_name == "nt" or sys_platform == "linux"',
        ),
        (
            '((os_name == "nt" or extra == "a") and python_version >= "3.10") and extra == "b"',
            'os_name == "nt" and python_version >= "3.10"',
        ),
        # quoted forms: "extra" as a value is not the variable; quoted text is not grammar
        (
            'platform_release == "extra" and extra == "b"',
            'platform_release == "extra"',
        ),
        (
            "platform_version == 'x (and or) extra' and extra == 'b'",
            'platform_version == "x (and or) extra"',
        ),
        ('platform_version == "#1  SMP" and extra == "b"', 'platform_version == "#1  SMP"'),
        ('"win" in sys_platform and extra == "b"', '"win" in sys_platform'),
        ('"arm" not in platform_machine or extra == "b"', '"arm" not in platform_machine'),
        # no extra: the marker as packaging writes it
        ("sys_platform=='win32'", 'sys_platform == "win32"'),
    ],
)
def test_strip_extra(marker: str, expected: str | None) -> None:
    assert strip_extra(Marker(marker)) == expected


def test_strip_extra_of_no_marker_is_none() -> None:
    assert strip_extra(None) is None


@pytest.mark.parametrize(
    "marker",
    [
        'sys_platform == "win32" and extra == "a"',
        'os_name == "nt" and extra == "a" or sys_platform == "linux"',
        'python_version < "3.9" and (extra == "a" or os_name == "nt" or sys_platform == "win32")',
    ],
)
def test_what_strip_extra_leaves_holds_only_where_the_marker_held_with_its_extra(
    marker: str,
) -> None:
    """Never broader than the original with ``extra == "a"`` requested (an extra's factor is
    true then; a term that was only the extra is dropped, which narrows)."""
    rest = strip_extra(Marker(marker))
    assert rest is not None
    held = 0
    for platform in ("win32", "linux"):
        for os_name in ("nt", "posix"):
            for python in ("3.8", "3.12"):
                env = {"sys_platform": platform, "os_name": os_name, "python_version": python}
                if Marker(rest).evaluate({**env, "extra": ""}):
                    held += 1
                    assert Marker(marker).evaluate({**env, "extra": "a"}), (env, rest)
    assert held  # the check above ran


# -- the graph and the reporter ----------------------------------------------------------------


class Recorder(NullReporter):
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def target_started(self, target: Target) -> None:
        self.events.append(("started", target.identifier))

    def pinned(self, target: Target, candidate: Candidate) -> None:
        self.events.append(("pinned", str(candidate)))

    def target_done(self, target: Target, resolution: Resolution) -> None:
        self.events.append(("done", target.identifier))

    def target_failed(self, target: Target, error: WheelportError) -> None:
        self.events.append(("failed", target.identifier))


@pytest.fixture
def client(tmp_path: Path, index_server: IndexServer) -> Iterator[IndexClient]:
    with IndexClient([index_server.url], cache=Cache(tmp_path / "cache")) as c:
        yield c


def _resolve(
    client: IndexClient, *requirements: str, reporter: Recorder | None = None
) -> Resolution:
    reqs = [parse_requirement(r, "command line") for r in requirements]
    return resolve_target(client, WIN, reqs, reporter=reporter)


def test_edges_of_a_version_given_up_while_backtracking_are_not_in_the_lock(
    client: IndexClient, index_server: IndexServer, dists_dir: Path
) -> None:
    """a 2.0 (tried first, then given up for b's sake) needs d unconditionally; a 1.0, the pin,
    only on Windows: d's marker is a 1.0's edge alone."""
    index_server.add(make_wheel(dists_dir, "a", "2.0", deps=["c<1", "d", "e"]))
    index_server.add(make_wheel(dists_dir, "a", "1.0", deps=["c>=1", 'd; sys_platform == "win32"']))
    index_server.add(make_wheel(dists_dir, "b", "1.0", deps=["c>=1"]))
    for name, version in (("c", "1.0"), ("c", "0.5"), ("d", "1.0"), ("e", "1.0")):
        index_server.add(make_wheel(dists_dir, name, version))
    got = _resolve(client, "a", "b").pins
    assert {n: str(p.version) for n, p in got.items()} == {
        "a": "1.0",
        "b": "1.0",
        "c": "1.0",
        "d": "1.0",
    }
    assert got["d"].markers == ('sys_platform == "win32"',)
    assert got["a"].dependencies == ("c", "d")
    assert got["c"].markers is None  # a root's dependency brings it in unconditionally


def test_markers_and_dependencies_from_every_edge(
    client: IndexClient, index_server: IndexServer, dists_dir: Path
) -> None:
    index_server.add(make_wheel(dists_dir, "app", "1.0", deps=['lib; os_name == "nt"'],
                                extras={"x": ['lib; python_version >= "3.10"', "xdep"]}))  # fmt: skip
    index_server.add(make_wheel(dists_dir, "util", "1.0", deps=['lib; sys_platform == "win32"']))
    for name in ("lib", "xdep"):
        index_server.add(make_wheel(dists_dir, name, "1.0"))
    got = _resolve(client, "app[x]", 'util; sys_platform == "win32"').pins
    assert got["lib"].markers == (
        'os_name == "nt"',
        'python_version >= "3.10"',
        'sys_platform == "win32"',
    )
    assert got["util"].markers == ('sys_platform == "win32"',)
    assert got["app"].extras == frozenset({"x"})
    assert got["app"].dependencies == ("lib", "xdep")  # of the base and the extra, not app itself
    assert got["util"].dependencies == ("lib",)
    assert got["app"].markers is None and got["xdep"].markers is None


def test_reporter_sees_start_each_pin_once_and_done(
    client: IndexClient, index_server: IndexServer, dists_dir: Path
) -> None:
    index_server.add(make_wheel(dists_dir, "app", "1.0", deps=["lib"]))
    index_server.add(make_wheel(dists_dir, "lib", "2.0"))
    reporter = Recorder()
    resolution = _resolve(client, "app", reporter=reporter)
    assert set(resolution.pins) == {"app", "lib"}
    assert reporter.events[0] == ("started", WIN.identifier)
    assert reporter.events[-1] == ("done", WIN.identifier)
    assert sorted(reporter.events[1:-1]) == [("pinned", "app 1.0"), ("pinned", "lib 2.0")]


def test_requires_python_known_only_from_metadata_is_not_a_dependency(
    client: IndexClient, index_server: IndexServer, dists_dir: Path
) -> None:
    """The page gives no Requires-Python (as many PEP 503 mirrors): the resolver learns it from
    the metadata, and it constrains the pin without becoming a lock dependency."""
    import dataclasses

    wheel = make_wheel(dists_dir, "app", "1.0", deps=["lib"], requires_python=">=3.8")
    index_server.add(wheel)
    index_server.add(make_wheel(dists_dir, "lib", "1.0"))
    with index_server._lock:
        f = index_server._files[wheel.name]
        index_server._files[wheel.name] = dataclasses.replace(f, requires_python=None)
    got = _resolve(client, "app").pins
    assert got["app"].dependencies == ("lib",)
