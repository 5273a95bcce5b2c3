"""A cache that cannot be poisoned: a download is moved into the first wheelhouse that needs it
(written once) and later ones get independent copies, hashed as they are made (never hard
links); a corrupt cache entry is evicted with a warning and fetched again, and ``sync``
re-hashes what is already in a wheelhouse and repairs what does not match."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support import run_wheelport
from support.dists import make_wheel
from support.server import IndexServer
from wheelport.cache import Cache
from wheelport.wheelhouse import copy_verified, sha256_file

TARGET = "cp312-win_amd64"  # not this host: a py3 wheel and a win_amd64 wheel serve it
WIN_WHEEL = "native-1.0-cp312-cp312-win_amd64.whl"
PURE_WHEEL = "pure-1.0-py3-none-any.whl"


@pytest.fixture
def index(dists_dir: Path) -> IndexServer:
    srv = IndexServer().start()
    srv.add(make_wheel(dists_dir, "native", "1.0", tag="cp312-cp312-win_amd64", deps=["pure"]))
    srv.add(make_wheel(dists_dir, "pure", "1.0"))
    yield srv
    srv.stop()


def sync(index: IndexServer, wh: Path) -> subprocess.CompletedProcess[str]:
    return run_wheelport("sync", "native", "--index-url", index.url, "-t", TARGET,
                         "--tool", "none", "-o", str(wh), timeout=300)  # fmt: skip


def flip(path: Path) -> None:
    """Edit a file in place, same size (what a careless tool or a bad disk does)."""
    with path.open("r+b") as f:
        f.seek(path.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))


def cache_entry(sha: str) -> Path:
    return Cache.default().artifact_path(sha)


def downloads(index: IndexServer, name: str) -> int:
    return sum(1 for r in index.requests if r[1].endswith(name))


def test_an_edit_in_one_wheelhouse_never_reaches_the_cache_or_another(
    index: IndexServer, tmp_path: Path
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    r = sync(index, a)
    assert r.returncode == 0, r.stderr
    wheel_a = a / "wheels" / WIN_WHEEL
    good = sha256_file(wheel_a)
    # written once: the download was moved into A (one link), and the cache noted where
    assert not cache_entry(good).exists() and wheel_a.stat().st_nlink == 1
    assert Cache.default().placed_note(good) == wheel_a
    size = wheel_a.stat().st_size
    flip(wheel_a)
    assert sha256_file(wheel_a) != good and wheel_a.stat().st_size == size
    # B is not served A's edited copy: the copy is hashed, refused, and the file downloaded
    before = downloads(index, WIN_WHEEL)
    r = sync(index, b)
    assert r.returncode == 0, r.stderr
    wheel_b = b / "wheels" / WIN_WHEEL
    assert sha256_file(wheel_b) == good and downloads(index, WIN_WHEEL) == before + 1
    assert wheel_b.stat().st_ino != wheel_a.stat().st_ino and wheel_b.stat().st_nlink == 1
    assert Cache.default().placed_note(good) == wheel_b
    assert run_wheelport("verify", str(b)).returncode == 0
    # `verify A` sees the edit; re-running sync on A repairs it, saying which file, from B's
    # copy (hashed as it is copied: no download)
    assert run_wheelport("verify", str(a)).returncode == 1
    r = sync(index, a)
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if "repairing" in line]
    assert len(warnings) == 1 and f"wheels/{WIN_WHEEL}" in warnings[0], r.stderr
    assert sha256_file(wheel_a) == good and downloads(index, WIN_WHEEL) == before + 1
    assert wheel_a.stat().st_ino != wheel_b.stat().st_ino and wheel_a.stat().st_nlink == 1
    v = run_wheelport("verify", str(a))
    assert v.returncode == 0, v.stderr
    # and a sync with nothing to repair says nothing about repairs
    r = sync(index, a)
    assert r.returncode == 0 and "repairing" not in r.stderr, r.stderr
    # a noted copy that is gone: downloaded again, and the note follows the new copy
    for wh in (a, b):
        (wh / "wheels" / WIN_WHEEL).unlink()
    r = sync(index, b)
    assert r.returncode == 0, r.stderr
    assert sha256_file(wheel_b) == good and downloads(index, WIN_WHEEL) == before + 2
    assert Cache.default().placed_note(good) == wheel_b


def plant(sha: str, data: bytes) -> Path:
    """A cache entry as an earlier run left it."""
    entry = cache_entry(sha)
    entry.parent.mkdir(parents=True, exist_ok=True)
    entry.write_bytes(data)
    return entry


def synced_and_planted(index: IndexServer, tmp_path: Path) -> tuple[Path, str, Path]:
    """Sync wheelhouse ``a``; plant its Windows wheel as an earlier run's cache entry. Returns
    (the wheelhouse ``b`` still to sync, the wheel's sha256, the entry)."""
    a = tmp_path / "a"
    assert sync(index, a).returncode == 0
    good = sha256_file(a / "wheels" / WIN_WHEEL)
    return tmp_path / "b", good, plant(good, (a / "wheels" / WIN_WHEEL).read_bytes())


def test_a_corrupt_cache_entry_is_evicted_and_fetched_again(
    index: IndexServer, tmp_path: Path
) -> None:
    b, good, entry = synced_and_planted(index, tmp_path)
    Cache.default().forget_placed(good)  # only the entry can serve it
    flip(entry)  # planted directly: the cache itself is damaged
    before = downloads(index, WIN_WHEEL)
    r = sync(index, b)
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stderr.splitlines() if "is corrupt" in line]
    assert len(lines) == 1 and str(entry) in lines[0], r.stderr
    assert sha256_file(b / "wheels" / WIN_WHEEL) == good
    assert not entry.exists()  # evicted; the new download went into B, the cache notes it
    assert Cache.default().placed_note(good) == b / "wheels" / WIN_WHEEL
    assert downloads(index, WIN_WHEEL) == before + 1
    assert run_wheelport("verify", str(b)).returncode == 0


def test_an_entry_an_earlier_run_left_is_copied_not_taken(
    index: IndexServer, tmp_path: Path
) -> None:
    b, good, entry = synced_and_planted(index, tmp_path)
    before = downloads(index, WIN_WHEEL)
    assert sync(index, b).returncode == 0
    placed = b / "wheels" / WIN_WHEEL
    assert sha256_file(placed) == good and downloads(index, WIN_WHEEL) == before
    # the entry stays in the cache (syncing does not empty it); B has its own copy
    assert sha256_file(entry) == good and placed.stat().st_ino != entry.stat().st_ino
    assert placed.stat().st_nlink == 1


def test_verified_is_the_one_check(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = Cache(tmp_path / "cache")
    data = b"wheel bytes" * 1000
    import hashlib

    sha = hashlib.sha256(data).hexdigest()
    assert cache.verified(sha) is None  # absent: nothing to say
    entry = cache.artifact_path(sha)
    entry.parent.mkdir(parents=True)
    entry.write_bytes(data)
    assert cache.verified(sha) == entry
    dest = tmp_path / "wh" / "wheels" / "x.whl"
    assert cache.verified(sha, into=dest) == dest and dest.read_bytes() == data
    assert dest.stat().st_ino != entry.stat().st_ino
    entry.write_bytes(data[:-1] + b"X")
    with caplog.at_level(logging.WARNING, logger="wheelport.cache"):
        assert cache.verified(sha, into=tmp_path / "other.whl") is None
    assert not entry.exists() and not (tmp_path / "other.whl").exists()
    assert [r.getMessage() for r in caplog.records if "corrupt" in r.getMessage()]
    assert not list((tmp_path / "wh" / "wheels").glob(".*.part"))


def test_copy_verified_keeps_an_old_file_on_mismatch(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.write_bytes(b"new")
    dest.write_bytes(b"old")
    how, actual = copy_verified(src, dest, "0" * 64)
    assert how is None and actual == sha256_file(src) and dest.read_bytes() == b"old"
    how, actual = copy_verified(src, dest, sha256_file(src))
    assert how in ("reflink", "copy") and dest.read_bytes() == b"new"
    assert os.stat(dest).st_ino != os.stat(src).st_ino
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# -- --no-cache: a cache of the run only --------------------------------------------------------


def test_no_cache_neither_reads_nor_fills_the_user_cache(
    index: IndexServer, tmp_path: Path, _own_cache: Path
) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    a, b = tmp_path / "a", tmp_path / "b"
    # a user cache that holds a damaged copy: --no-cache must not even look at it
    assert sync(index, tmp_path / "warm").returncode == 0
    good = sha256_file(tmp_path / "warm" / "wheels" / WIN_WHEEL)
    flip(plant(good, (tmp_path / "warm" / "wheels" / WIN_WHEEL).read_bytes()))
    before = {p: p.stat().st_mtime_ns for p in _own_cache.rglob("*") if p.is_file()}
    for wh in (a, b):
        r = run_wheelport("sync", "native", "--index-url", index.url, "-t", TARGET, "--tool",
                          "none", "-o", str(wh), "--no-cache", env=env, timeout=300)  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert "corrupt" not in r.stderr
    assert {p: p.stat().st_mtime_ns for p in _own_cache.rglob("*") if p.is_file()} == before
    assert list(tmp.iterdir()) == []  # the run's cache went with it
    # nothing carried from one run to the next: each downloaded its files
    assert sum(1 for r in index.requests if r[1].endswith(WIN_WHEEL)) == 3
    umask = os.umask(0)
    os.umask(umask)
    for wh in (a, b):
        for name in (WIN_WHEEL, PURE_WHEEL):
            st = (wh / "wheels" / name).stat()
            assert st.st_nlink == 1 and st.st_mode & 0o777 == 0o666 & ~umask
        assert sha256_file(wh / "wheels" / WIN_WHEEL) == good
        v = run_wheelport("verify", str(wh))
        assert v.returncode == 0, v.stderr


def test_a_download_is_moved_once_and_an_entry_changed_since_is_hashed(tmp_path: Path) -> None:
    import hashlib

    cache = Cache(tmp_path / "cache")
    data = b"wheel bytes" * 1000
    sha = hashlib.sha256(data).hexdigest()
    entry = cache.artifact_path(sha)
    entry.parent.mkdir(parents=True)
    entry.write_bytes(data)
    entry.chmod(0o600)
    Cache.remember(entry, sha, downloaded=True)  # as a download that hashed it while writing
    inode = entry.stat().st_ino
    dest = tmp_path / "wh" / "wheels" / "x.whl"
    assert cache.verified(sha, into=dest) == dest
    # moved: the same inode, written once; no longer in the cache; readable like a copy
    assert dest.stat().st_ino == inode and not entry.exists()
    assert dest.stat().st_mode & 0o044 == 0o044 and dest.read_bytes() == data
    # an entry whose stamp moved since it was hashed is hashed again, not trusted
    entry.write_bytes(data)
    Cache.remember(entry, sha, downloaded=True)
    with entry.open("r+b") as f:
        f.write(b"X")
    other = tmp_path / "wh" / "wheels" / "y.whl"
    assert cache.verified(sha, into=other) is None
    assert not other.exists() and not entry.exists()  # evicted as corrupt
    # with no entry, the copy the cache noted serves: copied (its own inode) and hashed
    assert cache.placed_note(sha) == dest
    third = tmp_path / "wh2" / "wheels" / "x.whl"
    assert cache.verified(sha, into=third) == third and third.read_bytes() == data
    assert third.stat().st_ino != dest.stat().st_ino
    assert cache.verified(sha) == entry and entry.read_bytes() == data  # back into the cache
    entry.unlink()
    # a noted copy that changed is not used, and the note goes
    flip(dest)
    fourth = tmp_path / "wh3" / "x.whl"
    assert cache.verified(sha, into=fourth) is None and not fourth.exists()
    assert cache.placed_note(sha) is None


def test_a_hash_that_is_not_a_sha256_never_becomes_a_cache_path(tmp_path: Path) -> None:
    """A lock's (or page's) sha256 names cache files; ``../..`` in one must not read, replace
    or remove a file outside the cache (a corrupt "entry" is evicted, a stale note unlinked)."""
    from wheelport.errors import FetchError

    cache = Cache(tmp_path / "cache")
    victim = tmp_path / "victim"
    victim.write_text(str(tmp_path / "elsewhere"), encoding="utf-8")
    sneaky = "../../../victim"
    for call in (
        lambda: cache.verified(sneaky),
        lambda: cache.verified(sneaky, into=tmp_path / "wh" / "x.whl"),
        lambda: cache.placed_note("A" * 64),  # upper case: never a name the cache gives
        lambda: cache.forget_placed(sneaky),
    ):
        with pytest.raises(FetchError, match="not a sha256"):
            call()
    assert victim.read_text(encoding="utf-8") == str(tmp_path / "elsewhere")
    assert not (tmp_path / "wh").exists()


def test_an_entry_the_read_ahead_process_just_wrote_is_moved_once_its_answer_is_in(
    tmp_path: Path, dists_dir: Path
) -> None:
    """The read-ahead process renames a download into the cache a moment before its answer
    (which says it wrote it) reaches this process. fetch waits for that answer: the entry is
    then moved into the wheelhouse and noted — not copied (its bytes written twice, and the
    copy never noted, so a later run could not find it)."""
    import threading
    import time

    from wheelport.fetch import Artifact, fetch_artifacts
    from wheelport.index.client import IndexClient, inflight
    from wheelport.wheelhouse import Wheelhouse, stat_stamp

    wheel = make_wheel(dists_dir, "native", "1.0", tag="cp312-cp312-win_amd64")
    with IndexServer() as srv:
        srv.add(wheel)
        cache = Cache(tmp_path / "cache")
        with IndexClient([srv.url], cache=cache) as client:
            (f,) = client.project_files("native")
            sha = f.sha256 or ""
            entry = cache.artifact_path(sha)
            lock = inflight(sha)
            lock.acquire()  # the read-ahead process is downloading it ...
            entry.parent.mkdir(parents=True, exist_ok=True)
            entry.write_bytes(wheel.read_bytes())  # ... and has just renamed it into place

            def answered() -> None:
                time.sleep(0.3)
                cache.remember(entry, sha, stat_stamp(entry.stat()), downloaded=True)
                lock.release()

            answer = threading.Thread(target=answered)
            answer.start()
            wh = Wheelhouse(tmp_path / "wh")
            art = Artifact(f"wheels/{f.filename}", f.url, sha, f.size, project="native")
            try:
                fetch_artifacts(wh, [art], client)
            finally:
                answer.join()
        dest = wh.root / art.path
        assert sha256_file(dest) == sha
        assert not entry.exists() and dest.stat().st_nlink == 1  # moved: written once
        assert cache.placed_note(sha) == dest.absolute()
        assert downloads(srv, f.filename) == 0


def test_a_warning_of_the_read_ahead_process_is_shown_here_and_odd_lines_are_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The read-ahead process's warnings reach the user through this process: a wheelport
    logger's, warning level or above, its first line. Anything else it might send — another
    logger, a lower level, an empty or non-text message — is dropped without an error (an
    exception here would end the thread that reads its answers)."""
    from wheelport.fetch import _relayed

    with caplog.at_level(logging.INFO):
        _relayed({"name": "wheelport.cache", "level": logging.WARNING,
                  "message": "cache entry /c/ab is corrupt\nsecond line"})  # fmt: skip
        for odd in (
            {"name": "wheelport.cache", "level": logging.WARNING, "message": ""},
            {"name": "wheelport.cache", "level": logging.INFO, "message": "chatter"},
            {"name": "urllib3", "level": logging.ERROR, "message": "not ours"},
            {"name": "wheelport.cache", "level": "30", "message": "level as text"},
            {"name": "wheelport.cache", "level": logging.WARNING, "message": 7},
            ["not", "a", "record"],
        ):
            _relayed(odd)
    shown = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert shown == [("wheelport.cache", logging.WARNING, "cache entry /c/ab is corrupt")]


def test_a_cold_sync_makes_no_directory_per_cache_entry(index: IndexServer, tmp_path: Path) -> None:
    """Cache entries sit directly in their directory and every placement is one line of one
    notes file: a cold sync creates no directory per entry (each costs as much as a file)."""
    r = sync(index, tmp_path / "wh")
    assert r.returncode == 0, r.stderr
    root = Cache.default().root
    dirs = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_dir())
    assert dirs == ["artifacts-v2", "artifacts-v2/tmp", "http-v2", "metadata-v2", "placed-v2"]
    assert [p.name for p in (root / "placed-v2").iterdir()] == ["notes"]
    for name in (WIN_WHEEL, PURE_WHEEL):  # both moved into the wheelhouse and noted there
        wheel = tmp_path / "wh" / "wheels" / name
        assert Cache.default().placed_note(sha256_file(wheel)) == wheel
    assert len([p for p in (root / "http-v2").iterdir() if p.name.endswith(".json")]) >= 2


def test_placement_notes_are_read_as_they_grow_and_damage_is_skipped(tmp_path: Path) -> None:
    """Notes appended by another process are seen by one that read the file before; a line
    cut short (a killed writer), a relative path or a bad hash is skipped; ``null`` drops a
    note; a path with a newline in it stays one line."""
    a, b, c = "a" * 64, "b" * 64, "c" * 64
    here = Cache(tmp_path / "cache")
    here.forget_placed(c)  # creates the notes; nothing to drop
    assert here.placed_note(a) is None
    odd = tmp_path / "wh\nodd" / "x.whl"
    appended = (
        "import sys; from pathlib import Path; from wheelport.cache import Cache\n"
        "c = Cache(Path(sys.argv[1]))\n"
        f"c._note_placed({a!r}, Path(sys.argv[2]))\n"
        f"c._note_placed({b!r}, Path('/first/b.whl'))\n"
        f"c._note_placed({b!r}, Path('/second/b.whl'))\n"
        f"c.forget_placed({a!r})\n"
        f"c._note_placed({a!r}, Path(sys.argv[2]))\n"
    )
    subprocess.run([sys.executable, "-c", appended, str(here.root), str(odd)], check=True)
    notes = here.root / "placed-v2" / "notes"
    with notes.open("a", encoding="utf-8") as f:
        f.write(f'{c} "relative/c.whl"\n{"d" * 63} "/d.whl"\n{c} "/c.wh')  # the last one cut
    assert here.placed_note(a) == odd and here.placed_note(b) == Path("/second/b.whl")
    assert here.placed_note(c) is None
    assert len(notes.read_text(encoding="utf-8").splitlines()) == 9  # the newline escaped
    with notes.open("a", encoding="utf-8") as f:
        f.write('l"\n')  # the cut line completed: read once whole
    assert here.placed_note(c) == Path("/c.whl")
    here.forget_placed(b)
    assert here.placed_note(b) is None
    notes.write_bytes(b"")  # emptied in place (the same inode): read again from its start
    here._note_placed(c, Path("/again/c.whl"))
    assert here.placed_note(c) == Path("/again/c.whl") and here.placed_note(a) is None


def test_placement_notes_past_their_limit_keep_the_newest_note_of_each_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wheelport import cache as cache_module

    monkeypatch.setattr(cache_module._Notes, "LIMIT", 2000)
    here = Cache(tmp_path / "cache")
    shas = [f"{i:064x}" for i in range(30)]
    for sha in shas[:10]:
        here._note_placed(sha, tmp_path / "old" / sha)
    for sha in shas:
        here._note_placed(sha, tmp_path / "new" / sha)  # each over 100 bytes
    notes = here.root / "placed-v2" / "notes"
    assert notes.stat().st_size <= 2000
    fresh = Cache(tmp_path / "cache")  # another process's view: from the file alone
    cache_module._notes_of.clear()
    kept = [sha for sha in shas if fresh.placed_note(sha) is not None]
    assert kept and kept == shas[len(shas) - len(kept) :]  # the newest ones
    assert all(fresh.placed_note(sha) == tmp_path / "new" / sha for sha in kept)
    assert not list(notes.parent.glob(".*.part"))
