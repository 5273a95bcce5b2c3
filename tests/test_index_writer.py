"""The static index writer: pages, PEP 658 metadata, incremental re-index, real pip and uv."""

from __future__ import annotations

import hashlib
import html
import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from support.dists import make_sdist, make_wheel, wheel_metadata
from wheelport.errors import UsageError, VerifyError
from wheelport.manifest import Manifest
from wheelport.site.writer import STATE_NAME, parse_requires_python, write_index

UV = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
OLD = 1_000_000_000  # an mtime far in the past, so any rewrite shows up


class Anchors(HTMLParser):
    """Collect ``<a>`` elements: text → attributes (unescaped by the parser)."""

    def __init__(self) -> None:
        super().__init__()
        self.links: dict[str, dict[str, str | None]] = {}
        self._attrs: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._attrs = dict(attrs)

    def handle_data(self, data: str) -> None:
        if self._attrs is not None:
            self.links[data] = self._attrs
            self._attrs = None


def anchors(page: Path) -> dict[str, dict[str, str | None]]:
    parser = Anchors()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.links


def clean_env(home: Path) -> dict[str, str]:
    """An environment with none of this machine's PIP_*/UV_* settings (see conftest)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.pop("PYTHONPATH", None)
    env["HOME"] = str(home)
    env["XDG_CONFIG_HOME"] = str(home / "config")
    env["PIP_CONFIG_FILE"] = os.devnull  # belt and braces next to --isolated
    return env


def make_venv(path: Path, home: Path) -> Path:
    """An empty venv (uv, fast); pip drives it from outside with ``pip --python``."""
    assert UV, "uv is a test dependency"
    subprocess.run(
        [UV, "venv", "--no-config", "-q", "--python", sys.executable, str(path)],
        check=True,
        env=clean_env(home),
        timeout=120,
    )
    return path / "bin" / "python"


def installed(python: Path) -> dict[str, str]:
    out = subprocess.run(
        [
            str(python),
            "-c",
            "import json, re, importlib.metadata as m; "
            "print(json.dumps({re.sub(r'[-_.]+', '-', d.metadata['Name']).lower(): d.version "
            "for d in m.distributions()}))",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, str] = json.loads(out)
    return result


def pip_install(python: Path, index_url: str, home: Path, *reqs: str) -> None:
    cmd = [sys.executable, "-m", "pip", "--python", str(python), "install", "--isolated"]
    cmd += ["--disable-pip-version-check"]
    cmd += ["--no-cache-dir", "--index-url", index_url, *reqs]
    proc = subprocess.run(cmd, env=clean_env(home), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def uv_install(python: Path, index_url: str, home: Path, *reqs: str) -> None:
    assert UV, "uv is a test dependency"
    cmd = [UV, "pip", "install", "--no-config", "--no-cache", "--python", str(python)]
    cmd += ["--index-url", index_url, *reqs]
    proc = subprocess.run(cmd, env=clean_env(home), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    """mtime_ns and bytes of every index output (pages and .metadata)."""
    files = [p for p in (root / "simple").rglob("*") if p.is_file() and p.name != STATE_NAME]
    files += list((root / "wheels").glob("*.metadata"))
    return {p.relative_to(root).as_posix(): (p.stat().st_mtime_ns, p.read_bytes()) for p in files}


def age(root: Path) -> None:
    for p in [*(root / "simple").rglob("*"), *(root / "wheels").glob("*.metadata")]:
        if p.is_file():
            os.utime(p, ns=(OLD * 10**9, OLD * 10**9))


@pytest.fixture
def house(tmp_path: Path) -> Path:
    """app 1.0 (needs dep>=1), dep 1.0, dep 2.0 (Requires-Python <3.0), other 1.0 + sdist."""
    root = tmp_path / "wh"
    wheels = root / "wheels"
    make_wheel(wheels, "App", "1.0", deps=["dep>=1"], requires_python=">=3.8,<4")
    make_wheel(wheels, "dep", "1.0")
    make_wheel(wheels, "dep", "2.0", requires_python="<3.0")
    make_wheel(wheels, "other", "1.0", tag="cp38-cp38-win_amd64")
    make_sdist(root / "sdists", "other", "1.0", requires_python=">=3.7")
    return root


def test_pages_metadata_and_escaping(house: Path) -> None:
    report = write_index(house)
    assert (report.projects, report.files) == (3, 5)

    # project list, both formats
    assert set(anchors(house / "simple/index.html")) == {"app", "dep", "other"}
    root_json = json.loads((house / "simple/index.json").read_text())
    assert root_json["meta"]["api-version"] == "1.1"
    assert [p["name"] for p in root_json["projects"]] == ["app", "dep", "other"]

    raw = (house / "simple/app/index.html").read_text()
    assert 'data-requires-python="&gt;=3.8,&lt;4"' in raw
    link = anchors(house / "simple/app/index.html")["app-1.0-py3-none-any.whl"]
    assert link["data-requires-python"] == ">=3.8,<4"
    href = link["href"] or ""
    assert href.startswith("../../wheels/app-1.0-py3-none-any.whl#sha256=")
    wheel = house / "wheels/app-1.0-py3-none-any.whl"
    assert href.split("#sha256=")[1] == hashlib.sha256(wheel.read_bytes()).hexdigest()

    meta = house / "wheels/app-1.0-py3-none-any.whl.metadata"
    assert meta.read_bytes() == wheel_metadata(wheel)
    meta_sha = hashlib.sha256(meta.read_bytes()).hexdigest()
    assert link["data-core-metadata"] == f"sha256={meta_sha}"
    assert link["data-dist-info-metadata"] == f"sha256={meta_sha}"

    page = json.loads((house / "simple/app/index.json").read_text())
    assert page["name"] == "app" and page["versions"] == ["1.0"]
    (entry,) = page["files"]
    assert entry["url"] == "../../wheels/app-1.0-py3-none-any.whl"
    assert entry["requires-python"] == ">=3.8,<4"
    assert entry["core-metadata"] == entry["dist-info-metadata"] == {"sha256": meta_sha}
    assert entry["size"] == wheel.stat().st_size and entry["yanked"] is False

    other = anchors(house / "simple/other/index.html")
    sdist = other["other-1.0.tar.gz"]
    assert (sdist["href"] or "").startswith("../../sdists/other-1.0.tar.gz#sha256=")
    assert sdist["data-requires-python"] == ">=3.7"
    assert "data-core-metadata" not in sdist  # no PEP 658 for sdists
    assert not (house / "sdists/other-1.0.tar.gz.metadata").exists()


def test_manifest_supplies_yanked_upload_time_and_trusted_hashes(house: Path) -> None:
    dep1 = house / "wheels/dep-1.0-py3-none-any.whl"
    dep2 = house / "wheels/dep-2.0-py3-none-any.whl"
    manifest = Manifest.from_dict({
        "artifacts": {
            # right size: the manifest's hash is used as is (the file is not hashed again)
            "wheels/dep-1.0-py3-none-any.whl": {
                "sha256": "a" * 64,
                "size": dep1.stat().st_size,
                "yanked": "broken build",
                "upload-time": "2024-01-02T03:04:05Z",
            },
            # wrong size: the manifest is stale, the hash is computed
            "wheels/dep-2.0-py3-none-any.whl": {"sha256": "b" * 64, "size": 1, "yanked": True},
        }
    })  # fmt: skip
    write_index(house, manifest=manifest)
    links = anchors(house / "simple/dep/index.html")
    assert (links[dep1.name]["href"] or "").endswith("#sha256=" + "a" * 64)
    assert links[dep1.name]["data-yanked"] == "broken build"
    real = hashlib.sha256(dep2.read_bytes()).hexdigest()
    assert (links[dep2.name]["href"] or "").endswith("#sha256=" + real)
    assert links[dep2.name]["data-yanked"] == ""
    files = {
        f["filename"]: f for f in json.loads((house / "simple/dep/index.json").read_text())["files"]
    }
    assert files[dep1.name]["yanked"] == "broken build"
    assert files[dep1.name]["upload-time"] == "2024-01-02T03:04:05Z"
    assert files[dep2.name]["yanked"] is True and "upload-time" not in files[dep2.name]

    # the manifest on disk is read when none is passed; un-yanking rewrites only that project
    age(house)
    before = snapshot(house)
    (house / "wheelport.json").write_text(json.dumps({"artifacts": {}}))
    report = write_index(house)
    assert set(report.pages_written) == {"simple/dep/index.html", "simple/dep/index.json"}
    assert "data-yanked" not in (house / "simple/dep/index.html").read_text()
    after = snapshot(house)
    assert {k for k in after if after[k] != before[k]} == set(report.pages_written)


def test_incremental_add_one_wheel(house: Path) -> None:
    write_index(house)
    age(house)
    before = snapshot(house)

    noop = write_index(house)
    assert noop.pages_written == noop.metadata_written == noop.files_read == ()
    assert snapshot(house) == before

    new = make_wheel(house / "wheels", "dep", "3.0")
    report = write_index(house)
    assert report.files_read == (f"wheels/{new.name}",)
    changed_expected = {
        "simple/dep/index.html",
        "simple/dep/index.json",
        f"wheels/{new.name}.metadata",
    }
    after = snapshot(house)
    changed = {k for k in after if before.get(k) != after[k]}
    assert changed == changed_expected
    assert set(report.pages_written) | set(report.metadata_written) == changed_expected
    assert json.loads((house / "simple/dep/index.json").read_text())["versions"] == [
        "1.0",
        "2.0",
        "3.0",
    ]

    # a new project also changes the project list
    age(house)
    before = snapshot(house)
    make_wheel(house / "wheels", "Fresh_Name", "0.1")
    report = write_index(house)
    after = snapshot(house)
    changed = {k for k in after if before.get(k) != after[k]}
    assert changed == {
        "simple/index.html",
        "simple/index.json",
        "simple/fresh-name/index.html",
        "simple/fresh-name/index.json",
        "wheels/fresh_name-0.1-py3-none-any.whl.metadata",
    }


def test_removed_project_loses_its_pages_and_metadata(house: Path) -> None:
    write_index(house)
    (house / "wheels/other-1.0-cp38-cp38-win_amd64.whl").unlink()
    (house / "sdists/other-1.0.tar.gz").unlink()
    (house / "wheels/dep-2.0-py3-none-any.whl").unlink()
    report = write_index(house)
    assert not (house / "simple/other").exists()
    assert not (house / "wheels/other-1.0-cp38-cp38-win_amd64.whl.metadata").exists()
    assert not (house / "wheels/dep-2.0-py3-none-any.whl.metadata").exists()
    assert "simple/other/index.html" in report.removed
    assert set(anchors(house / "simple/index.html")) == {"app", "dep"}
    assert set(anchors(house / "simple/dep/index.html")) == {"dep-1.0-py3-none-any.whl"}


def test_missing_metadata_file_is_restored(house: Path) -> None:
    write_index(house)
    meta = house / "wheels/dep-1.0-py3-none-any.whl.metadata"
    meta.unlink()
    report = write_index(house)
    assert report.metadata_written == ("wheels/dep-1.0-py3-none-any.whl.metadata",)
    assert meta.read_bytes() == wheel_metadata(house / "wheels/dep-1.0-py3-none-any.whl")


def test_same_files_give_identical_indexes(house: Path, tmp_path: Path) -> None:
    twin = tmp_path / "twin"
    for sub in ("wheels", "sdists"):
        (twin / sub).mkdir(parents=True)
        for f in sorted((house / sub).iterdir(), reverse=True):
            shutil.copy(f, twin / sub / f.name)  # other order, other mtimes
    write_index(house)
    write_index(twin)
    mine = {k: v[1] for k, v in snapshot(house).items()}
    theirs = {k: v[1] for k, v in snapshot(twin).items()}
    assert mine == theirs


def test_unreadable_wheel_is_one_clear_error(house: Path) -> None:
    (house / "wheels/broken-1.0-py3-none-any.whl").write_bytes(b"not a zip")
    with pytest.raises(VerifyError) as info:
        write_index(house)
    assert "broken-1.0-py3-none-any.whl" in str(info.value)
    assert info.value.path and info.value.path.endswith("broken-1.0-py3-none-any.whl")


def test_missing_wheelhouse_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        write_index(tmp_path / "nope")
    assert not (tmp_path / "nope").exists()


def test_empty_yanked_reason_still_yanks(house: Path) -> None:
    rel = "wheels/dep-1.0-py3-none-any.whl"
    record = {"sha256": "0" * 64, "yanked": ""}  # no size: the file is hashed
    write_index(house, manifest=Manifest.from_dict({"artifacts": {rel: record}}))
    (entry,) = [
        f
        for f in json.loads((house / "simple/dep/index.json").read_text())["files"]
        if f["filename"] == "dep-1.0-py3-none-any.whl"
    ]
    assert entry["yanked"] is True


def test_non_distribution_files_are_skipped(house: Path) -> None:
    (house / "wheels/README.txt").write_text("hi")
    report = write_index(house)
    assert report.files == 5
    assert any("README.txt" in s for s in report.skipped)


def test_pip_installs_from_file_index(house: Path, tmp_path: Path) -> None:
    write_index(house)
    python = make_venv(tmp_path / "venv", tmp_path)
    pip_install(python, (house / "simple").as_uri(), tmp_path, "App")
    got = installed(python)
    assert got["app"] == "1.0"
    # dep 2.0 says Requires-Python <3.0: pip on this host must take 1.0
    assert got["dep"] == "1.0"


def test_uv_installs_from_file_index(house: Path, tmp_path: Path) -> None:
    # uv ignores Requires-Python upper bounds (documented), so use a lower bound it must honour
    make_wheel(house / "wheels", "dep", "3.0", requires_python=">=3.99")
    write_index(house)
    python = make_venv(tmp_path / "venv", tmp_path)
    uv_install(python, (house / "simple").as_uri(), tmp_path, "app")
    got = installed(python)
    assert got["app"] == "1.0"
    assert got["dep"] in {"1.0", "2.0"} and got["dep"] != "3.0"
    # uv reads the HTML page from file:// indexes (it has no way to negotiate there)
    assert html.escape(">=3.99") in (house / "simple/dep/index.html").read_text()


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        (b"Metadata-Version: 2.1\nName: x\nRequires-Python: >=3.8,<4\n\n", ">=3.8,<4"),
        (b"Name: x\r\nrequires-python: >=3.8,\r\n  <4\r\nSummary: s\r\n\r\n", ">=3.8, <4"),
        (b"Name: x\nRequires-Python:   \n\n", None),
        (b"Name: x\n\nRequires-Python: >=3 (in the description)\n", None),
    ],
)
def test_parse_requires_python(metadata: bytes, expected: str | None) -> None:
    assert parse_requires_python(metadata) == expected


def _stored_wheel(path: Path, requirement: str) -> Path:
    """A wheel of pkg 1.0 whose members are stored, not compressed: the same size for any
    requirement of the same length."""
    import zipfile

    meta = f"Metadata-Version: 2.1\nName: pkg\nVersion: 1.0\nRequires-Dist: {requirement}\n"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, text in [
            ("pkg/__init__.py", ""),
            ("pkg-1.0.dist-info/METADATA", meta),
            ("pkg-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nTag: cp39-cp39-win_amd64\n"),
            ("pkg-1.0.dist-info/RECORD", ""),
        ]:
            zf.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), text)
    return path


def test_a_wheel_read_at_placement_is_not_opened_again_until_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fetch's check reads a placed wheel's METADATA and SBOMs once; the index writer and the
    licence report take them from there — but a file rewritten in place, same size and mtime
    put back, is read again (its ctime moved), never served from what the old bytes said."""
    import zipfile

    import wheelport.index.metadata as meta_mod
    from wheelport.index.metadata import read_wheel, wheel_contents
    from wheelport.site.writer import read_wheel_metadata

    win = _stored_wheel(tmp_path / "pkg-1.0-cp39-cp39-win_amd64.whl", "dep>=1")
    other = _stored_wheel(tmp_path / "other.whl", "dep>=2")
    why, data = read_wheel(win, win.name, "pkg")
    assert why is None and data is not None and b"Requires-Dist: dep>=1" in data

    opened: list[object] = []
    real_zip = zipfile.ZipFile

    def counting(*args: object, **kwargs: object) -> zipfile.ZipFile:
        opened.append(args[0])
        return real_zip(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(meta_mod.zipfile, "ZipFile", counting)
    assert read_wheel_metadata(win) == data
    assert wheel_contents(win) == (data, {})
    assert opened == []

    # same size, another dependency bound, mtime restored: only ctime tells
    st = win.stat()
    assert other.stat().st_size == st.st_size
    win.write_bytes(other.read_bytes())
    os.utime(win, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert win.stat().st_mtime_ns == st.st_mtime_ns and win.stat().st_size == st.st_size
    fresh = read_wheel_metadata(win)
    assert b"Requires-Dist: dep>=2" in fresh and len(opened) == 1
