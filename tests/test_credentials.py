"""The one netrc lookup (``wheelport.credentials``) and how its two callers react to it: the
index client goes on without an unreadable netrc, ``publish`` stops with the error."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.dists import make_wheel
from support.server import IndexServer
from wheelport.cache import Cache
from wheelport.credentials import NetrcLogin, netrc_login, netrc_path
from wheelport.errors import IndexAccessError, UsageError
from wheelport.export.publish import resolve_credentials
from wheelport.index.client import IndexClient

PASSWORD = "n3trc-Secret"
BROKEN = "machine\n"  # a machine token without a name: netrc cannot parse it


def _netrc(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_netrc_path_is_NETRC_else_the_home_netrc(tmp_path: Path) -> None:
    assert netrc_path({"NETRC": str(tmp_path / "n"), "HOME": "/h"}) == tmp_path / "n"
    assert netrc_path({"HOME": str(tmp_path)}) == tmp_path / ".netrc"
    assert netrc_path({"NETRC": "", "HOME": str(tmp_path)}) == tmp_path / ".netrc"


def test_netrc_login_by_host_then_default(tmp_path: Path) -> None:
    path = _netrc(
        tmp_path / "netrc",
        "machine mirror.example login muser password mpass\ndefault login duser password dpass\n",
    )
    env = {"NETRC": str(path)}
    assert netrc_login("mirror.example", environ=env) == NetrcLogin("muser", "mpass", path)
    assert netrc_login("other.example", path=path) == NetrcLogin("duser", "dpass", path)
    assert "mpass" not in repr(netrc_login("mirror.example", path=path))
    only_machine = _netrc(tmp_path / "m", "machine mirror.example login u password p\n")
    assert netrc_login("other.example", path=only_machine) is None
    assert netrc_login("mirror.example", path=tmp_path / "missing") is None


def test_an_unparsable_netrc_is_a_usage_error_naming_the_file(tmp_path: Path) -> None:
    path = _netrc(tmp_path / "netrc", BROKEN)
    with pytest.raises(UsageError) as info:
        netrc_login("mirror.example", path=path)
    assert info.value.message.startswith(f"cannot read {path}: missing 'machine' name")
    assert info.value.path == str(path)
    # publish reports it (the upload would go without the password the file was meant to give)
    with pytest.raises(UsageError, match="cannot read"):
        resolve_credentials("https://mirror.example/", environ={"NETRC": str(path)})


def test_index_client_takes_the_netrc_login_for_its_index_host_only(
    tmp_path: Path, dists_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with IndexServer(auth=("alice", PASSWORD)) as srv:
        srv.add(make_wheel(dists_dir, "pkg", "1.0"))
        host = srv.url.split("//", 1)[1].split(":", 1)[0]
        netrc = _netrc(tmp_path / "netrc", f"machine {host} login alice password {PASSWORD}\n")
        monkeypatch.setenv("NETRC", str(netrc))
        with IndexClient([srv.url], cache=Cache(tmp_path / "cache")) as client:
            assert [f.filename for f in client.project_files("pkg")] == ["pkg-1.0-py3-none-any.whl"]
            assert client._auth_for("https://files.elsewhere.example/pkg.whl") is None
        assert srv.requests and all("Authorization" in h for _, _, h in srv.requests)


def test_index_client_goes_on_without_an_unreadable_netrc(
    tmp_path: Path, dists_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NETRC", str(_netrc(tmp_path / "netrc", BROKEN)))
    with IndexServer(auth=("alice", PASSWORD)) as srv:
        srv.add(make_wheel(dists_dir, "pkg", "1.0"))
        client = IndexClient([srv.url], cache=Cache(tmp_path / "cache"))
        with client, pytest.raises(IndexAccessError, match="401"):
            client.project_files("pkg")
