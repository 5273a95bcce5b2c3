"""The guard of network tests: the public index view serves only what tests/data declares.

Hermetic: the view's upstream pages are given here, so the rules are checked without the public
index (the network tests then rely on them)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from packaging.version import Version

from support.public import DECLARATIONS, Declared, PublicIndex, load_declarations


def _file(name: str, uploaded: str) -> dict[str, Any]:
    return {
        "filename": name,
        "url": f"https://files.example/{name}",
        "hashes": {"sha256": "0" * 64},
        "upload-time": uploaded,
    }


UPSTREAM = {
    "pinned": {
        "versions": ["1.0", "2.0"],
        "files": [
            _file("pinned-1.0-py3-none-any.whl", "2020-01-01T00:00:00Z"),
            _file("pinned-1.0.tar.gz", "2020-01-01T00:00:00Z"),
            _file("pinned-2.0-py3-none-any.whl", "2021-01-01T00:00:00Z"),
        ],
    },
    "dated": {
        "versions": ["1.0", "2.0"],
        "files": [
            _file("dated-1.0-py3-none-any.whl", "2026-10-31T23:59:59Z"),
            _file("dated-2.0-py3-none-any.whl", "2026-11-27T15:03:27Z"),  # after the snapshot
        ],
    },
    "other": {"versions": ["9.9"], "files": [_file("other-9.9-py3-none-any.whl", "2020-01-01Z")]},
}


@pytest.fixture
def view(monkeypatch: pytest.MonkeyPatch) -> Any:
    declared = {
        "pinned": Declared({Version("1.0")}),
        "dated": Declared(before=datetime(2026, 11, 1, tzinfo=timezone.utc)),
        "typo": Declared({Version("3.0")}),
    }
    index = PublicIndex(declared)
    monkeypatch.setattr(index, "upstream_page", lambda name: UPSTREAM.get(name))
    with index:
        yield index


def _get(url: str, accept: str) -> tuple[int, str]:
    req = urllib.request.Request(url, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def test_pins_and_snapshots_filter_the_page(view: PublicIndex) -> None:
    status, body = _get(view.url + "pinned/", "application/vnd.pypi.simple.v1+json")
    assert status == 200
    page = json.loads(body)
    assert [f["filename"] for f in page["files"]] == [
        "pinned-1.0-py3-none-any.whl",
        "pinned-1.0.tar.gz",
    ]
    assert page["versions"] == ["1.0"]
    status, body = _get(view.url + "dated/", "text/html")
    assert status == 200
    assert "dated-1.0-py3-none-any.whl" in body and "dated-2.0" not in body
    assert 'href="https://files.example/dated-1.0-py3-none-any.whl#sha256=' in body
    assert view.problems() is None


def test_an_undeclared_project_is_refused_and_named(view: PublicIndex) -> None:
    status, _ = _get(view.url + "other/", "application/vnd.pypi.simple.v1+json")
    assert status == 404
    problems = view.problems()
    assert problems is not None and "other (upstream has 9.9)" in problems
    assert str(DECLARATIONS) in problems


def test_a_declared_version_with_no_file_is_a_problem(view: PublicIndex) -> None:
    status, _ = _get(view.url + "typo/", "application/vnd.pypi.simple.v1+json")
    assert status == 404  # upstream has no such project
    assert "typo" in (view.problems() or "")


def test_allow_adds_exact_pins_for_one_test(view: PublicIndex) -> None:
    view.allow(["pinned==2.0"])
    page = view.page("pinned")
    assert page is not None and {f["filename"] for f in page["files"]} == {
        "pinned-1.0-py3-none-any.whl",
        "pinned-1.0.tar.gz",
        "pinned-2.0-py3-none-any.whl",
    }
    view.reset()
    page = view.page("pinned")
    assert page is not None and len(page["files"]) == 2
    with pytest.raises(ValueError, match="only exact pins"):
        view.allow(["pinned>=2"])


def test_the_declarations_parse_and_name_each_project_once_per_file(tmp_path: Path) -> None:
    declared = load_declarations()
    assert declared["lxml"].versions == {Version("6.1.3")}  # never "the latest" lxml
    assert declared["cython"].versions and declared["cython"].before is None
    (tmp_path / "bad.toml").write_text('[pins]\nfoo = "snapshot"\n')
    with pytest.raises(ValueError, match="needs a snapshot date"):
        load_declarations(tmp_path)
    (tmp_path / "bad.toml").write_text('snapshot = "2026-11-01T00:00:00Z"\n[pins]\nfoo = ">=1"\n')
    with pytest.raises(ValueError, match="list of versions or 'snapshot'"):
        load_declarations(tmp_path)


class _Item:
    def __init__(self, nodeid: str, network: bool, fixtures: tuple[str, ...]) -> None:
        self.nodeid, self.fixturenames = nodeid, fixtures
        self._network = network

    def get_closest_marker(self, name: str) -> object | None:
        return object() if name == "network" and self._network else None


def test_a_network_test_without_the_view_is_a_collection_error(
    pytestconfig: pytest.Config,
) -> None:
    import conftest

    fine = [
        _Item("t::offline", False, ()),
        _Item("t::viewed", True, ("tmp_path", "public_index")),
    ]
    conftest.pytest_collection_modifyitems(pytestconfig, fine)  # type: ignore[arg-type]
    with pytest.raises(pytest.UsageError, match=r"public_index fixture.*t::direct"):
        conftest.pytest_collection_modifyitems(
            pytestconfig,
            [*fine, _Item("t::direct", True, ("tmp_path",))],  # type: ignore[list-item]
        )
