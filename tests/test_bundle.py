"""``bundle`` / ``unbundle``: a real synced wheelhouse carried as one archive, checked on arrival."""

from __future__ import annotations

import glob
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import wheelport
from support import bundled_pip_wheel, scrubbed_env
from support.dists import make_wheel
from support.server import IndexServer
from wheelport.config import build_config
from wheelport.errors import ExportError, UsageError
from wheelport.export import bundle as bundle_mod
from wheelport.export.bundle import (
    MANIFEST_NAME,
    bundle_members,
    choose_compression,
    create_bundle,
    unbundle,
)
from wheelport.sync import sync
from wheelport.verify import verify
from wheelport.wheelhouse import sha256_file

PYENV = os.environ.get("PYENV_ROOT", "/root/.pyenv")
SRC = str(Path(wheelport.__file__).resolve().parent.parent)


def _pip_wheel() -> Path:
    found = bundled_pip_wheel()
    if found is None:
        pytest.skip("no bundled pip wheel (ensurepip) to put in the index")
    return Path(found)


def _synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, targets: list[str], tools: list[str]
) -> Path:
    monkeypatch.setenv("WHEELPORT_CACHE_DIR", str(tmp_path / "cache"))
    dists = tmp_path / "dists"
    out = tmp_path / "wh"
    with IndexServer() as index:
        index.add(make_wheel(dists, "alpha", "1.0", deps=["beta"]))
        index.add(make_wheel(dists, "beta", "2.0"))
        index.add(make_wheel(dists, "gamma", "1.0", tag="cp312-cp312-win_amd64"))
        index.add(make_wheel(dists, "gamma", "1.0", tag="py3-none-any"))
        if "pip" in tools:
            index.add(_pip_wheel())
        config = build_config(
            directory=tmp_path, requirements=["alpha", "gamma"], index_urls=[index.url],
            targets=targets, output=out, tools=tools,
        )  # fmt: skip
        sync(config)
    return out


@pytest.fixture
def wheelhouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return _synced(
        tmp_path, monkeypatch, targets=["cp312-win_amd64", "cp38-macosx_11_0_arm64"], tools=["none"]
    )


def _tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_bundle_roundtrip_is_deterministic_and_verified(
    wheelhouse: Path, tmp_path: Path, compression: str
) -> None:
    if compression == "zstd" and not bundle_mod.zstd_available():
        pytest.skip("zstd not available")
    one = create_bundle(wheelhouse, tmp_path / "one.tar", compression=compression)
    two = create_bundle(wheelhouse, tmp_path / "two.tar", compression=compression)
    assert one.compression == compression
    assert one.sha256 == two.sha256  # same wheelhouse, same bytes
    magic = (tmp_path / "one.tar").read_bytes()[:4]
    assert magic.startswith(b"\x1f\x8b" if compression == "gzip" else b"\x28\xb5\x2f\xfd")

    stream = bundle_mod.open_bundle_stream(str(tmp_path / "one.tar"))
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        names = [m.name for m in tar]
    stream.close()
    assert names[0] == MANIFEST_NAME
    assert names[1:] == sorted(names[1:])
    assert "wheels/gamma-1.0-cp312-cp312-win_amd64.whl" in names
    assert not any(n.startswith("simple/.") for n in names)

    dest = tmp_path / "far" / "wh"
    report = unbundle(tmp_path / "one.tar", dest)
    assert report.files == len(names) - 1
    assert set(report.targets) == {"cp312-win_amd64", "cp38-macosx_11_0_arm64"}
    assert _tree(dest) == _tree(wheelhouse)
    assert verify(dest).ok
    assert [p.name for p in dest.parent.iterdir()] == ["wh"]  # no temp dir left


def _member_offset(bundle: Path, name: str) -> int:
    with tarfile.open(bundle, mode="r:") as tar:
        return tar.getmember(name).offset_data


def test_flipped_byte_is_refused_naming_the_file(wheelhouse: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain.tar"
    create_bundle(wheelhouse, plain, compression="none")
    victim = "wheels/beta-2.0-py3-none-any.whl"
    data = bytearray(plain.read_bytes())
    data[_member_offset(plain, victim) + 100] ^= 0x01
    bad = tmp_path / "bad.tar"
    bad.write_bytes(bytes(data))
    dest = tmp_path / "out"
    with pytest.raises(ExportError) as info:
        unbundle(bad, dest)
    assert victim in str(info.value) and "sha256" in str(info.value)
    assert info.value.path == victim
    assert not dest.exists()
    assert list(tmp_path.glob(".out.unbundle-*")) == []


def test_flipped_byte_in_compressed_bundle_is_refused(wheelhouse: Path, tmp_path: Path) -> None:
    good = tmp_path / "wh.tar.gz"
    create_bundle(wheelhouse, good, compression="gzip")
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0x40
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(bytes(data))
    with pytest.raises(ExportError) as info:
        unbundle(bad, tmp_path / "out")
    assert str(bad) in str(info.value)
    assert info.value.path  # the member being read is named
    assert not (tmp_path / "out").exists()


def test_truncated_bundle_is_refused(wheelhouse: Path, tmp_path: Path) -> None:
    good = tmp_path / "wh.tar"
    create_bundle(wheelhouse, good, compression="none")
    members = bundle_members(wheelhouse)
    # cut right after the header block of the last member: that member's data is missing
    last = members[-1]
    cut = tmp_path / "cut.tar"
    cut.write_bytes(good.read_bytes()[: _member_offset(good, last)])
    with pytest.raises(ExportError, match="truncated") as info:
        unbundle(cut, tmp_path / "out")
    assert last in str(info.value)
    # cut at a member boundary: the missing files are named
    cut.write_bytes(good.read_bytes()[: _member_offset(good, last) - 512])
    with pytest.raises(ExportError, match=f"truncated.*{last}"):
        unbundle(cut, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _evil_bundle(path: Path, member: tarfile.TarInfo, data: bytes = b"") -> None:
    files = {member.name: {"sha256": "0" * 64, "size": len(data)}}
    head = json.dumps({"format": "wheelport-bundle", "version": 1, "files": files}).encode()
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(MANIFEST_NAME)
        info.size = len(head)
        tar.addfile(info, io.BytesIO(head))
        tar.addfile(member, io.BytesIO(data) if member.isreg() else None)


def test_traversal_and_links_are_refused(tmp_path: Path) -> None:
    up = tarfile.TarInfo("wheels/../../escape.txt")
    up.size = 3
    _evil_bundle(tmp_path / "up.tgz", up, b"bad")
    with pytest.raises(ExportError, match="unsafe"):
        unbundle(tmp_path / "up.tgz", tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()

    link = tarfile.TarInfo("wheels/passwd")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    _evil_bundle(tmp_path / "link.tgz", link)
    with pytest.raises(ExportError, match=r"wheels/passwd.*not a regular file"):
        unbundle(tmp_path / "link.tgz", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_usage_errors(wheelhouse: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a wheelhouse"):
        create_bundle(tmp_path / "nothing", tmp_path / "b.tar")
    with pytest.raises(UsageError, match="inside the wheelhouse"):
        create_bundle(wheelhouse, wheelhouse / "b.tar")
    create_bundle(wheelhouse, tmp_path / "b.tar", compression="gzip")
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "x").write_text("x")
    with pytest.raises(UsageError, match="not empty"):
        unbundle(tmp_path / "b.tar", occupied)
    assert choose_compression("auto", have_zstd=False) == "gzip"
    assert choose_compression("auto", have_zstd=True) == "zstd"
    with pytest.raises(UsageError):
        choose_compression("zstd", have_zstd=False)


def test_stdlib_section_runs_on_python38(wheelhouse: Path, tmp_path: Path) -> None:
    """The reading side lives in bootstrap.py (stdlib only, 3.8-compatible): run it alone there."""
    py38 = sorted(glob.glob(f"{PYENV}/versions/3.8.*/bin/python"))
    if not py38:
        pytest.skip("no Python 3.8")
    # bootstrap.py carries the reading side; run it alone, as the far side would
    import wheelport.bootstrap as bootstrap_mod

    script = tmp_path / "carry.py"
    script.write_text(
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('bootstrap', {bootstrap_mod.__file__!r})\n"
        "b = importlib.util.module_from_spec(spec); spec.loader.exec_module(b)\n"
        "print(len(b.extract_bundle(sys.argv[1], sys.argv[2])['files']))\n"
    )
    b = tmp_path / "wh.tar.gz"
    create_bundle(wheelhouse, b, compression="gzip")
    proc = subprocess.run([py38[-1], "-I", str(script), str(b), str(tmp_path / "out")],
                          capture_output=True, text=True, env=scrubbed_env())  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) == len(bundle_members(wheelhouse))
    assert _tree(tmp_path / "out") == _tree(wheelhouse)


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare")
def test_bundle_unbundle_provision_air_gapped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Made here, copied, then unbundled and provisioned with the network namespace empty."""
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare -n not permitted here")
    wh = _synced(tmp_path, monkeypatch, targets=["host"], tools=["pip"])
    made = create_bundle(wh, tmp_path / "here" / "wh.bundle")
    far = tmp_path / "far"
    far.mkdir()
    shutil.copyfile(made.bundle, far / "wh.bundle")
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from wheelport.export.bundle import unbundle\n"
        "from wheelport.provision import provision\n"
        "far = Path(sys.argv[1])\n"
        "unbundle(far / 'wh.bundle', far / 'wh')\n"
        "r = provision(far / 'venv', wheelhouse=far / 'wh', python=sys.executable)\n"
        "print(r.target)\n"
    )
    env = scrubbed_env()
    env["PYTHONPATH"] = SRC
    proc = subprocess.run(["unshare", "-n", sys.executable, "-c", script, str(far)],
                          capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    check = subprocess.run([str(far / "venv" / "bin" / "python"), "-c",
                            "import alpha, beta, gamma; print(alpha.__version__, beta.__version__)"],
                           capture_output=True, text=True, env=scrubbed_env())  # fmt: skip
    assert check.stdout.split() == ["1.0", "2.0"], check.stderr


def run_cli(args: list[str]) -> int:
    """Run ``wheelport ARGS`` in-process with the export commands added (as the lead wires them)."""
    from wheelport.cli import cli, main
    from wheelport.export.commands import COMMANDS

    for command in COMMANDS:
        if command.name not in cli.commands:
            cli.add_command(command)
    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_cli_bundle_unbundle_and_exit_codes(
    wheelhouse: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = tmp_path / "wh.bundle"
    assert run_cli(["bundle", "-w", str(wheelhouse), "-o", str(archive), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["sha256"] == sha256_file(archive) and data["files"] == len(
        bundle_members(wheelhouse)
    )
    assert run_cli(["unbundle", str(archive), "-o", str(tmp_path / "far")]) == 0
    assert verify(tmp_path / "far").ok
    plain = tmp_path / "plain.tar"
    assert (
        run_cli(["bundle", "-w", str(wheelhouse), "-o", str(plain), "--compression", "none", "-q"])
        == 0
    )
    victim = "wheelport.json"
    raw = bytearray(plain.read_bytes())
    raw[_member_offset(plain, victim) + 5] ^= 0x20
    plain.write_bytes(bytes(raw))
    capsys.readouterr()
    assert run_cli(["unbundle", str(plain), "-o", str(tmp_path / "bad")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and victim in err and "Traceback" not in err
    assert run_cli(["unbundle", str(tmp_path / "missing.bundle"), "-o", str(tmp_path / "x")]) == 2
