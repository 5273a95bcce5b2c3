"""A hostile index, served from 127.0.0.1: it cannot make wheelport read or place local files,
and an impostor wheel (a file named for one project holding another) never enters a wheelhouse.

Each page is tried as PEP 691 JSON and as PEP 503 HTML, with and without hashes and PEP 658
metadata. "Nothing read" is asserted on a sentinel FIFO: opening it for reading is seen by a
watcher thread, whatever the file system's atime policy.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import shutil
import tarfile
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import run_wheelport
from support.dists import make_sdist, make_wheel, wheel_metadata
from support.server import IndexServer
from wheelport.index.parse import parse_json_page, read_json_page
from wheelport.wheelhouse import sha256_file


class ReadSentinel:
    """A FIFO standing in for a secret (``/etc/passwd``): ``opened`` tells whether anything
    opened it for reading (a writer can open a FIFO without blocking only while a reader has it
    open); a reader gets ``SECRET`` and end of file."""

    SECRET = b"root:x:0:0:sentinel\n"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.opened = False
        self._stop = threading.Event()
        os.mkfifo(path)
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
                time.sleep(0.002)
                continue
            self.opened = True
            with contextlib.suppress(OSError):
                os.write(fd, self.SECRET)
            os.close(fd)
            self._until_closed()

    def _until_closed(self) -> None:
        """Wait (writing nothing more) until the reader has closed its end."""
        while not self._stop.is_set():
            try:
                os.close(os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError as exc:
                if exc.errno == errno.ENXIO:
                    return
                raise
            time.sleep(0.002)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[ReadSentinel]:
    (tmp_path / "secret").mkdir()
    s = ReadSentinel(tmp_path / "secret" / "passwd")
    # the watcher sees a real reader (so a False below means nothing read it)
    with open(s.path, "rb") as f:
        assert f.read() == ReadSentinel.SECRET
    deadline = time.monotonic() + 5
    while not s.opened and time.monotonic() < deadline:
        time.sleep(0.01)
    assert s.opened
    s.opened = False
    yield s
    s.close()


def _files_under(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in root.rglob("*") if p.is_file()} if root.exists() else {}


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("WARNING")]


def _errors(stderr: str) -> list[str]:
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("error:")]


PAGES = [
    pytest.param(kind, hashed, meta, id=f"{kind}-{'hash' if hashed else 'nohash'}-{'658' if meta else 'no658'}")
    for kind in ("json", "html")
    for hashed in (True, False)
    for meta in (True, False)
]  # fmt: skip


def _server(kind: str) -> IndexServer:
    return IndexServer(json_only=kind == "json", html_only=kind == "html")


def test_a_json_page_is_read_entry_by_entry_and_odd_shapes_are_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Entries become rows while the page is decoded; only ``files`` entries that name a file
    and link the page's own kind count, whatever else the page nests."""
    page = "https://index.example/simple/pkg/"
    sha = "ab" * 32
    body = json.dumps({
        "meta": {"api-version": "1.4"},
        "project-status": {"status": "archived", "filename": "x.whl", "url": "https://e/x.whl"},
        "decoy": {"filename": "pkg-6.0-py3-none-any.whl", "url": "https://e/pkg-6.0-py3-none-any.whl"},
        "files": [
            {"filename": "pkg-1.0-py3-none-any.whl", "url": "../../files/pkg-1.0-py3-none-any.whl",
             "hashes": {"sha256": sha}, "requires-python": ">=3.8", "size": 12,
             "upload-time": "2024-01-02T03:04:05Z", "core-metadata": {"sha256": sha}},
            {"filename": "pkg-2.0-py3-none-any.whl", "url": "file:///etc/passwd"},
            {"filename": "pkg-3.0-py3-none-any.whl", "url": 7},
            {"url": "https://e/pkg-4.0-py3-none-any.whl"},
            ["pkg-5.0-py3-none-any.whl", "https://e/pkg-5.0-py3-none-any.whl"],
            "pkg-5.1-py3-none-any.whl",
        ],
    }).encode()  # fmt: skip
    with caplog.at_level("WARNING", logger="wheelport.index.client"):
        rows, status = read_json_page(body, page)
    warnings = [r.getMessage() for r in caplog.records]
    files = parse_json_page(body, page, "pkg", "https://index.example/simple/")
    (only,) = files
    assert only.filename == "pkg-1.0-py3-none-any.whl"
    assert only.url == "https://index.example/files/pkg-1.0-py3-none-any.whl"
    assert (only.sha256, only.requires_python, only.size) == (sha, ">=3.8", 12)
    assert only.core_metadata == sha and only.upload_time == "2024-01-02T03:04:05Z"
    assert len(rows) == 1
    # an object that names a file is read as a file entry wherever it is nested: a
    # project-status that does is not a status (an index never serves one)
    assert status is None
    (warning,) = warnings
    assert "1 link(s)" in warning and "file:///etc/passwd" in warning and page in warning
    # a page that is itself one file entry, a list, or not JSON at all
    one = json.dumps({"filename": "pkg-1.0-py3-none-any.whl", "url": "https://e/a.whl"}).encode()
    assert read_json_page(one, page) == ([], None)
    assert read_json_page(b"[]", page) == ([], None)
    with pytest.raises(ValueError):
        read_json_page(b"\xff{", page)


def test_a_sha256_is_read_as_bytes_only_when_it_is_64_hex_digits() -> None:
    """An entry's sha256 is kept as 32 bytes only when it is 64 hex digits (either case; spelled
    out in lowercase again): whitespace, which ``bytes.fromhex`` skips, a full-width digit or a
    letter past f leave the text as it is, and the file is then dropped."""
    page = "https://index.example/simple/pkg/"
    odd = [
        "ab" * 31 + "  ",
        "ab " * 16 + "ab" * 8,
        "ab " * 21 + "a",
        " " + "a" * 63,
        "\uff10" * 64,
        "g" * 64,
        "a" * 63,
        "a" * 65,
    ]
    good = "AB" * 32
    body = json.dumps({"files": [
        {"filename": f"pkg-{i}.0-py3-none-any.whl", "url": f"https://e/pkg-{i}.0-py3-none-any.whl",
         "hashes": {"sha256": sha}}
        for i, sha in enumerate([good, *odd])
    ]}).encode()  # fmt: skip
    rows, _ = read_json_page(body, page)
    assert [row[2] for row in rows] == [bytes.fromhex(good), *odd]
    files = parse_json_page(body, page, "pkg", "https://index.example/simple/")
    assert [f.sha256 for f in files] == ["ab" * 32]  # a file without a valid hash is dropped


# -- a remote index must not read local files -----------------------------------------------------


@pytest.mark.parametrize(("kind", "hashed", "meta"), PAGES)
def test_a_file_link_on_an_http_page_is_never_read(
    kind: str, hashed: bool, meta: bool, tmp_path: Path, sentinel: ReadSentinel, _own_cache: Path
) -> None:
    with _server(kind) as srv:
        page = f"{srv.url}evilpkg/"
        digest = hashlib.sha256(ReadSentinel.SECRET).hexdigest()
        srv.link("evilpkg", f"file://{sentinel.path}?/evilpkg-1.0-py3-none-any.whl",
                 sha256=digest if hashed else None,
                 metadata_sha256=digest if meta else None)  # fmt: skip
        wh = tmp_path / "wh"
        r = run_wheelport("sync", "evilpkg", "--index-url", srv.url, "-o", str(wh), "--tool",
                          "none", "-t", "cp39-win_amd64", timeout=300)  # fmt: skip
    assert r.returncode == 1, r.stderr
    (warning,) = _warnings(r.stderr)
    assert page in warning and "not http(s)" in warning
    assert len(_errors(r.stderr)) == 1
    assert not sentinel.opened, "wheelport opened the local file an http page linked"
    assert not wh.exists()
    assert not any(ReadSentinel.SECRET in data for data in _files_under(_own_cache).values())


@pytest.mark.parametrize(("kind", "hashed", "meta"), PAGES)
def test_a_local_wheel_linked_by_an_http_page_is_not_placed(
    kind: str, hashed: bool, meta: bool, tmp_path: Path, dists_dir: Path, _own_cache: Path
) -> None:
    """The page lists an honest 1.0 and a file:// 2.0 (a valid wheel on this disk, its sha256
    and metadata right): sync takes 1.0, and neither the lock nor any file names the local 2.0."""
    local = make_wheel(tmp_path / "local", "localwheel", "2.0")
    with _server(kind) as srv:
        page = f"{srv.url}localwheel/"
        srv.add(make_wheel(dists_dir, "localwheel", "1.0"))
        meta_sha = hashlib.sha256(wheel_metadata(local)).hexdigest()
        srv.link("localwheel", local.as_uri(), sha256=sha256_file(local) if hashed else None,
                 metadata_sha256=meta_sha if meta else None)  # fmt: skip
        wh = tmp_path / "wh"
        r = run_wheelport("sync", "localwheel", "--index-url", srv.url, "-o", str(wh), "--tool",
                          "none", "-t", "cp312-macosx_11_0_arm64", timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    (warning,) = _warnings(r.stderr)
    assert page in warning and local.as_uri() in warning
    assert sorted(p.name for p in (wh / "wheels").glob("*.whl")) == [
        "localwheel-1.0-py3-none-any.whl"
    ]
    lock = (wh / "pylock.cp312-macosx_11_0_arm64.toml").read_text()
    assert "file:" not in lock and 'version = "1.0"' in lock
    local_bytes = local.read_bytes()
    assert not any(data == local_bytes for data in _files_under(_own_cache).values())
    assert not any(data == local_bytes for data in _files_under(wh).values())


def test_a_file_index_may_link_its_own_tree_only(tmp_path: Path, dists_dir: Path) -> None:
    """A file:// index (a wheelhouse's simple/) keeps working; an http link on it is dropped
    like a file link on an http page (a page links its own kind only)."""
    src = tmp_path / "src"
    r = run_wheelport("index", str(src), timeout=120)  # an empty wheelhouse index
    wheel = make_wheel(src / "wheels", "plain", "1.0")
    (src / "simple" / "plain").mkdir(parents=True)
    page = (
        f'<a href="../../wheels/{wheel.name}#sha256={sha256_file(wheel)}">{wheel.name}</a>\n'
        '<a href="http://127.0.0.1:9/plain-2.0-py3-none-any.whl">plain-2.0-py3-none-any.whl</a>'
    )
    (src / "simple" / "plain" / "index.html").write_text(page)
    r = run_wheelport("lock", "plain", "--index-url", (src / "simple").as_uri(), "-o",
                      str(tmp_path / "wh"), "--tool", "none", timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    (warning,) = _warnings(r.stderr)
    assert "plain-2.0" in warning and "not file" in warning
    assert 'version = "1.0"' in next((tmp_path / "wh").glob("pylock.*.toml")).read_text()


# -- names that are not names ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["json", "html"])
def test_a_file_name_that_is_a_path_is_ignored_with_a_warning(
    kind: str, tmp_path: Path, dists_dir: Path
) -> None:
    with _server(kind) as srv:
        srv.add(make_wheel(dists_dir, "evilpkg", "1.0"))
        hostile = "evilpkg-1.1-py3.%2F..%2Ftmp%2Fpwn-none-any.whl"
        target = srv.file_url("evilpkg-1.0-py3-none-any.whl").rsplit("/", 1)[0] + "/" + hostile
        srv.link("evilpkg", target, filename="evilpkg-1.1-py3./../tmp/pwn-none-any.whl",
                 sha256="a" * 64)  # fmt: skip
        wh = tmp_path / "wh"
        r = run_wheelport("sync", "evilpkg", "--index-url", srv.url, "-o", str(wh), "--tool",
                          "none", "-t", "cp310-manylinux_2_17_x86_64", timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "internal error" not in r.stderr and "Traceback" not in r.stderr
    (warning,) = _warnings(r.stderr)
    assert "ignoring" in warning and "evilpkg-1.1-py3." in warning and "path separator" in warning
    assert [p.name for p in (wh / "wheels").glob("*.whl")] == ["evilpkg-1.0-py3-none-any.whl"]
    assert not (tmp_path / "tmp").exists()


# -- impostors ------------------------------------------------------------------------------------


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _impostor(directory: Path, posing_as: str, version: str, really: str) -> Path:
    """A real wheel of ``really``, renamed to be ``posing_as``'s (its METADATA and .dist-info
    still say ``really``)."""
    wheel = make_wheel(directory / "real", really, version)
    fake = directory / f"{posing_as}-{version}-py3-none-any.whl"
    shutil.copyfile(wheel, fake)
    return fake


def _honest_metadata(name: str, version: str) -> bytes:
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\n".encode()


@pytest.mark.parametrize("metadata", ["pep658", "ranges", "honest-pep658"])
def test_an_impostor_wheel_never_enters_the_wheelhouse(
    metadata: str, tmp_path: Path, dists_dir: Path
) -> None:
    """mdurl-0.1.2-py3-none-any.whl whose METADATA says ``Name: othername``: refused at lock
    time when the metadata is read (PEP 658 or range requests, as pip's "inconsistent name"),
    and at fetch when the served PEP 658 file is honest but the wheel is not."""
    fake = _impostor(dists_dir, "mdurl", "0.1.2", "othername")
    with IndexServer() as srv:
        srv.add(fake, metadata=metadata != "ranges")
        if metadata == "honest-pep658":
            srv.serve_metadata(fake.name, _honest_metadata("mdurl", "0.1.2"))
        wh = tmp_path / "wh"
        r = run_wheelport("sync", "mdurl", "--index-url", srv.url, "-o", str(wh), "--tool", "none",
                          "-t", "cp39-win_amd64", timeout=300)  # fmt: skip
    assert r.returncode == 1, r.stderr
    (line,) = _errors(r.stderr)
    assert "mdurl" in line and fake.name in line and "othername" in line, line
    assert not list(wh.glob("wheels/*.whl"))
    assert not list(wh.glob("pylock.*.toml"))  # no lock names the impostor


@pytest.mark.parametrize(
    ("member", "why"),
    [("../../escaped.txt", "'..'"), ("/tmp/wheelport-absolute.txt", "absolute")],
)
def test_a_wheel_whose_member_leaves_its_root_is_refused_at_sync(
    member: str, why: str, tmp_path: Path, dists_dir: Path
) -> None:
    honest = make_wheel(tmp_path / "honest", "evil", "1.0")
    with zipfile.ZipFile(honest) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members[member] = b"pwned\n"
    wheel = _zip(dists_dir / "evil-1.0-py3-none-any.whl", members)
    with IndexServer() as srv:
        srv.add(wheel)
        wh = tmp_path / "wh"
        r = run_wheelport("sync", "evil", "--index-url", srv.url, "-o", str(wh), "--tool", "none",
                          "-t", "cp311-musllinux_1_2_aarch64", timeout=300)  # fmt: skip
    assert r.returncode == 1, r.stderr
    (line,) = _errors(r.stderr)
    assert member in line and why in line and wheel.name in line, line
    assert not list(wh.glob("wheels/*.whl"))
    assert not Path("/tmp/wheelport-absolute.txt").exists()


def _swap_in(wh: Path, rel: str, replacement: Path) -> None:
    """Replace a wheelhouse file and rewrite its hash and size everywhere they are recorded, as
    a wheelhouse synced by a wheelport without the check would hold it."""
    path = wh / rel
    old_sha, old_size = sha256_file(path), path.stat().st_size
    shutil.copyfile(replacement, path)
    new_sha, new_size = sha256_file(path), path.stat().st_size
    for rec in [*wh.glob("pylock.*.toml"), wh / "wheelport.json"]:
        text = rec.read_text().replace(old_sha, new_sha)
        text = text.replace(f"size = {old_size}", f"size = {new_size}")
        text = text.replace(f'"size": {old_size}', f'"size": {new_size}')
        rec.write_text(text)


@pytest.fixture
def synced_mdurl(tmp_path: Path, dists_dir: Path) -> Path:
    with IndexServer() as srv:
        srv.add(make_wheel(dists_dir, "mdurl", "0.1.2"))
        wh = tmp_path / "wh"
        r = run_wheelport("sync", "mdurl", "--index-url", srv.url, "-o", str(wh), "--tool", "none",
                          "-t", "cp312-win_amd64", timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    fake = _impostor(tmp_path / "fake", "mdurl", "0.1.2", "othername")
    _swap_in(wh, "wheels/mdurl-0.1.2-py3-none-any.whl", fake)
    return wh


def test_verify_names_an_impostor_whose_hashes_were_recorded(synced_mdurl: Path) -> None:
    r = run_wheelport("verify", str(synced_mdurl), timeout=120)
    assert r.returncode == 1, r.stderr
    (line,) = _errors(r.stderr)
    assert "wheels/mdurl-0.1.2-py3-none-any.whl is not the wheel it is named" in line
    assert "othername" in line


def test_merge_refuses_an_impostor_input(synced_mdurl: Path, tmp_path: Path) -> None:
    out = tmp_path / "merged"
    r = run_wheelport("merge", str(synced_mdurl), "-o", str(out), timeout=120)
    assert r.returncode == 1, r.stderr
    (line,) = _errors(r.stderr)
    assert "mdurl-0.1.2-py3-none-any.whl is not the wheel it is named" in line
    assert "othername" in line
    assert not out.exists() or not list(out.glob("wheels/*"))


def _retarget_sdist(sdist: Path, builds_as: str) -> Path:
    """The sdist with its PKG-INFO untouched but its backend configured to build ``builds_as``."""
    out = io.BytesIO()
    with tarfile.open(sdist) as src, tarfile.open(fileobj=out, mode="w:gz") as dst:
        for info in src.getmembers():
            data = src.extractfile(info).read() if info.isfile() else None  # type: ignore[union-attr]
            if data is not None and info.name.endswith("pyproject.toml"):
                text = data.decode()
                assert "[tool.tinybackend]" in text
                data = text.replace('name = "honest"', f'name = "{builds_as}"', 1).encode()
                info.size = len(data)
            dst.addfile(info, io.BytesIO(data) if data is not None else None)
    sdist.write_bytes(out.getvalue())
    return sdist


def test_a_built_wheel_that_is_not_its_sdists_is_refused(
    tmp_path: Path, dists_dir: Path, tinybackend_wheel: Path
) -> None:
    sdist = _retarget_sdist(make_sdist(dists_dir, "honest", "1.0"), "liar")
    with IndexServer() as srv:
        srv.add(tinybackend_wheel)
        srv.add(sdist)
        wh = tmp_path / "wh"
        r = run_wheelport("sync", "honest", "--index-url", srv.url, "-o", str(wh), "--tool",
                          "none", "--allow-missing", "--json", timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    cells = json.loads(r.stdout)["coverage"]["honest"]
    (cell,) = cells.values()
    assert cell["state"] == "missing"
    assert "liar-1.0-py3-none-any.whl, which is not a wheel of honest 1.0" in cell["detail"]
    assert not list((wh / "wheels").glob("liar-*"))


# -- a page or METADATA too big to hold ----------------------------------------------------------


def test_a_wheel_whose_metadata_says_it_is_over_the_limit_is_not_read(
    dists_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wheel whose METADATA member declares more than the limit (as a zip bomb would) is
    not read into memory: the archive check every wheel passes before it enters a wheelhouse
    refuses it, naming the member, and so does the index writer. A wheel under the limit
    passes (Windows wheels here; the limit is lowered to 2,000 bytes)."""
    from wheelport.errors import VerifyError
    from wheelport.index import metadata
    from wheelport.site.writer import read_wheel_metadata

    big = make_wheel(dists_dir, "big", "1.0", tag="cp312-cp312-win_amd64", summary="x" * 4000)
    small = make_wheel(dists_dir, "small", "1.0", tag="cp312-cp312-win_amd64")
    monkeypatch.setattr(metadata, "MAX_METADATA_BYTES", 2000)
    why = metadata.wheel_problem(big, big.name)
    assert why is not None
    assert "big-1.0.dist-info/METADATA is" in why and "more than the 2000 read" in why
    with pytest.raises(VerifyError, match="more than the 2000 read"):
        read_wheel_metadata(big, big.read_bytes())
    assert metadata.wheel_problem(small, small.name) is None
    assert b"Name: small" in read_wheel_metadata(small, small.read_bytes())


def test_a_metadata_member_whose_packed_size_is_over_the_limit_is_not_read(
    dists_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A METADATA member whose entry says it unpacks to little but takes more than the limit
    to read (a deflate stream of empty blocks would: read by range requests, each is fetched)
    is refused by its packed size too: by the archive check, and by a range read before it
    asks for any of the member (a Windows wheel; the limit is lowered to 2,000 bytes)."""
    from wheelport.index import metadata

    wheel = make_wheel(dists_dir, "packed", "1.0", tag="cp312-cp312-win_amd64")
    data = bytearray(wheel.read_bytes())
    member = b"packed-1.0.dist-info/METADATA"
    entry = data.rindex(b"PK\x01\x02", 0, data.rindex(member))  # its central directory entry
    assert data[entry + 46 : entry + 46 + len(member)] == member
    data[entry + 20 : entry + 24] = (5000).to_bytes(4, "little")  # compressed size: 5,000
    wheel.write_bytes(bytes(data))
    monkeypatch.setattr(metadata, "MAX_METADATA_BYTES", 2000)
    why = metadata.wheel_problem(wheel, wheel.name)
    assert (
        why is not None and "packed-1.0.dist-info/METADATA is 5000 bytes, more than the 2000" in why
    )
    asked: list[tuple[int, int]] = []

    def fetch(start: int, end: int) -> bytes:
        asked.append((start, end))
        return bytes(data[start : end + 1])

    with pytest.raises(zipfile.BadZipFile, match="is 5000 bytes, more than the 2000 read"):
        metadata.read_metadata_by_ranges(wheel.name, len(data), bytes(data[-1000:]), fetch)
    assert asked == []  # the tail held the directory; the member was never asked for


def test_a_wheel_whose_sboms_say_they_are_over_the_limit_is_not_read(
    dists_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wheel whose PEP 770 SBOM members together declare more than the limit (as a zip bomb
    would) has none of them read: the archive check every wheel passes refuses it, naming the
    total, and so does the reader the SBOM export and the wheelhouse page read wheels with. A
    wheel with the same members under the limit passes, its SBOMs read (macOS arm64 wheels; the
    limit is lowered to 3,000 bytes)."""
    from wheelport.index import metadata

    def sboms(size: int) -> dict[str, str]:
        return {f"many-1.0.dist-info/sboms/part{i}.cdx.json": "{" + " " * size + "}"
                for i in range(2)}  # fmt: skip

    tag = "cp311-cp311-macosx_11_0_arm64"
    over = make_wheel(dists_dir / "over", "many", "1.0", tag=tag, files=sboms(1600))
    under = make_wheel(dists_dir / "under", "many", "1.0", tag=tag, files=sboms(1000))
    monkeypatch.setattr(metadata, "MAX_SBOM_BYTES", 3000)
    why = metadata.wheel_problem(over, over.name)
    assert why is not None and "its SBOM members are 3204 bytes, more than the 3000" in why
    with pytest.raises(zipfile.BadZipFile, match="more than the 3000 read"):
        metadata.wheel_contents(over)
    assert metadata.wheel_problem(under, under.name) is None
    meta, found = metadata.wheel_contents(under)
    assert meta is not None and b"Name: many" in meta
    assert sorted(found) == [f"many-1.0.dist-info/sboms/part{i}.cdx.json" for i in range(2)]
    assert all(len(data) == 1002 for data in found.values())


@pytest.mark.parametrize("suffix", [".tar.gz", ".zip"])
def test_an_sdist_member_over_the_limit_is_left_out(
    suffix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An sdist's PKG-INFO that says it holds more than the limit (a tar or zip bomb would) is
    not read: it is left out, with a warning naming it, and the members under the limit are
    read as before (the limit is lowered to 2,000 bytes)."""
    from wheelport.index import metadata

    big = b"Metadata-Version: 2.2\nName: bomb\nVersion: 1.0\nSummary: " + b"x" * 4000 + b"\n"
    small = b'[project]\nname = "bomb"\nversion = "1.0"\n'
    path = tmp_path / f"bomb-1.0{suffix}"
    if suffix == ".zip":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("bomb-1.0/PKG-INFO", big)
            zf.writestr("bomb-1.0/pyproject.toml", small)
    else:
        with tarfile.open(path, "w:gz") as tf:
            for name, data in (("PKG-INFO", big), ("pyproject.toml", small)):
                info = tarfile.TarInfo(f"bomb-1.0/{name}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    monkeypatch.setattr(metadata, "MAX_METADATA_BYTES", 2000)
    found = metadata.sdist_members(path, ("PKG-INFO", "pyproject.toml"))
    assert found == {"pyproject.toml": small}
    assert f"{path.name}: bomb-1.0/PKG-INFO is {len(big)} bytes, more than the 2000 read" in (
        caplog.text
    )
    monkeypatch.setattr(metadata, "MAX_METADATA_BYTES", 16 << 20)
    assert metadata.sdist_members(path, ("PKG-INFO",)) == {"PKG-INFO": big}


@pytest.mark.parametrize("kind", ["json", "html"])
def test_a_page_over_the_size_limit_is_refused_in_one_line(
    kind: str, tmp_path: Path, dists_dir: Path
) -> None:
    """A hostile index can send a page of gigabytes: past the limit (32 MiB by default,
    ``WHEELPORT_MAX_PAGE_SIZE`` here) the read stops and the run ends naming the page."""
    with _server(kind) as srv:
        srv.add(make_wheel(dists_dir, "huge", "1.0"))
        for i in range(3000):
            srv.link("huge", f"{srv.base}/files/huge-0.{i}-py3-none-any.whl", sha256="b" * 64)
        env = dict(os.environ, WHEELPORT_MAX_PAGE_SIZE="200000")
        wh = tmp_path / "wh"
        r = run_wheelport("lock", "huge", "--index-url", srv.url, "-o", str(wh), "--tool",
                          "none", env=env, timeout=120)  # fmt: skip
        page = f"{srv.url}huge/"
    assert r.returncode == 1, r.stderr
    (line,) = _errors(r.stderr)
    assert page in line and "the limit for one project page" in line, line
    assert "WHEELPORT_MAX_PAGE_SIZE" in line
    assert not wh.exists()


def test_a_body_longer_than_the_listed_size_is_cut_off_there(
    tmp_path: Path, dists_dir: Path
) -> None:
    """An index that lists a file at 1,000 bytes and then sends half a megabyte (or an endless
    stream) gets nothing past the listed size written: the download stops at the first chunk
    that would exceed it, every attempt, and the error names both sizes."""
    import dataclasses
    import secrets

    from wheelport.cache import Cache
    from wheelport.errors import FetchError
    from wheelport.index.client import IndexClient

    big = make_wheel(dists_dir, "big", "1.0", files={"big/blob.txt": secrets.token_hex(1 << 19)})
    assert big.stat().st_size > 256 << 10
    with IndexServer() as srv:
        srv.add(big)
        srv._files[big.name] = dataclasses.replace(srv._files[big.name], size=1000)
        written: list[int] = []
        with IndexClient([srv.url], cache=Cache(tmp_path / "cache"), backoff=0) as client:
            (file,) = client.project_files("big")
            assert file.size == 1000
            with pytest.raises(FetchError) as info:
                client.download(file, progress=written.append)
        assert "expected 1000 bytes, got more than 1000" in info.value.message
        assert sum(n for n in written if n > 0) == 0  # not one byte of the oversized body kept
        assert not list((tmp_path / "cache").rglob("*.whl"))
