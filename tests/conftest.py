"""Shared fixtures: a hermetic local index, generated distributions and a scrubbed environment."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Make ``support`` importable however pytest is invoked (rootdir conftest, plain ``pytest``).
_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from support import bundled_pip_wheel, scrubbed_env  # noqa: E402
from support.dists import make_backend_wheel  # noqa: E402
from support.public import PublicIndex  # noqa: E402
from support.server import IndexServer  # noqa: E402


@pytest.fixture
def index_server() -> Iterator[IndexServer]:
    """A started local PEP 691/503/658 index on 127.0.0.1 (stopped after the test)."""
    with IndexServer() as server:
        yield server


@pytest.fixture
def dists_dir(tmp_path: Path) -> Path:
    """An empty directory for generated wheels and sdists."""
    path = tmp_path / "dists"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def tinybackend_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of the tinybackend PEP 517 backend (built once per session)."""
    return make_backend_wheel(tmp_path_factory.mktemp("tinybackend"))


@pytest.fixture
def clean_env() -> dict[str, str]:
    """An environment dict for subprocesses with no ``PIP_*``/``UV_*`` leakage from this machine."""
    return scrubbed_env()


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own wheelport cache (cold), so tests never see each other's downloads."""
    path = tmp_path_factory.mktemp("wheelport-cache")
    monkeypatch.setenv("WHEELPORT_CACHE_DIR", str(path))
    return path


@pytest.fixture(scope="session")
def pip_wheel() -> Path:
    """A real pip wheel (the one ensurepip ships), for wheelhouses that provision."""
    found = bundled_pip_wheel()
    if found is None:
        pytest.skip("no bundled pip wheel on this machine")
    return Path(found)


@pytest.fixture(scope="session")
def _public_view() -> Iterator[PublicIndex]:
    with PublicIndex() as view:
        yield view


@pytest.fixture
def public_index(_public_view: PublicIndex) -> Iterator[PublicIndex]:
    """The public index as ``network`` tests may see it: only what ``tests/data/public-index``
    declares (exact pins or a snapshot date). Asking for anything else fails the test."""
    _public_view.reset()
    yield _public_view
    problems = _public_view.problems()
    _public_view.reset()
    if problems:
        pytest.fail(problems, pytrace=False)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The guard: a ``network`` test sees the public index only through the ``public_index``
    view (so it can ask for nothing unpinned); one that does not is a collection error."""
    unguarded = [
        item.nodeid
        for item in items
        if item.get_closest_marker("network") is not None
        and not {"public_index", "_public_view"} & set(getattr(item, "fixturenames", ()))
    ]
    if unguarded:
        raise pytest.UsageError(
            "network tests must reach the public index through the public_index fixture "
            f"(pinned versions only): {', '.join(unguarded)}"
        )
