"""Host names are looked up once per run and shared by every connection (``index/dns.py``).

Many resolvers answer a burst of simultaneous lookups badly (a lookup waits out a 5 s timeout,
or fails): a cold sync that opened its connections at once stalled for 5 s now and then. These
tests count the resolver's calls: once per host however many connections open at once, pages
(httpx) and file downloads (``http.client``) alike, and a failure is not remembered.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from support.dists import make_wheel
from support.server import IndexServer
from wheelport.cache import Cache
from wheelport.index import dns
from wheelport.index.client import IndexClient


class CountingResolver:
    """``getaddrinfo`` that counts calls by host, slowly (so that callers overlap), with
    scripted failures first."""

    def __init__(self, fail: list[int] | None = None, delay: float = 0.2) -> None:
        self.calls: dict[str, int] = {}
        self.fail = list(fail or [])
        self.delay = delay
        self.lock = threading.Lock()
        self.real = socket.getaddrinfo

    def __call__(self, host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        with self.lock:
            self.calls[host] = self.calls.get(host, 0) + 1
            error = self.fail.pop(0) if self.fail else None
        time.sleep(self.delay)
        if error is not None:
            raise socket.gaierror(error, "scripted failure")
        return self.real(host, port, *args, **kwargs)


def test_simultaneous_lookups_of_one_host_ask_the_resolver_once() -> None:
    resolver = CountingResolver()
    addresses = dns.Addresses(resolver)
    found: list[Any] = []
    threads = [
        threading.Thread(target=lambda: found.append(addresses.lookup("localhost", 443)))
        for _ in range(16)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert resolver.calls == {"localhost": 1}
    assert len(found) == 16 and all(f == found[0] for f in found) and found[0]
    addresses.lookup("localhost", 443)
    assert resolver.calls == {"localhost": 1}  # kept
    addresses.lookup("localhost", 80)
    assert resolver.calls == {"localhost": 2}  # another port is another lookup


def test_a_failed_lookup_is_asked_again_and_a_temporary_one_at_once() -> None:
    resolver = CountingResolver(fail=[socket.EAI_NONAME], delay=0)
    addresses = dns.Addresses(resolver)
    with pytest.raises(socket.gaierror):
        addresses.lookup("localhost", 443)
    assert addresses.lookup("localhost", 443)  # not remembered: asked again
    assert resolver.calls == {"localhost": 2}

    resolver = CountingResolver(fail=[socket.EAI_AGAIN], delay=0)
    addresses = dns.Addresses(resolver)
    assert addresses.lookup("localhost", 443)  # "temporary failure": once more, at once
    assert resolver.calls == {"localhost": 2}


def test_a_lookup_that_raises_anything_else_wakes_every_caller_with_it() -> None:
    """A name the resolver cannot even encode raises UnicodeError (not OSError): the callers
    waiting on that lookup get it too, instead of waiting forever."""

    def refuse(host: str, *args: Any) -> list[Any]:
        time.sleep(0.2)  # the other callers arrive while it runs
        raise UnicodeError("label too long")

    addresses = dns.Addresses(refuse)
    errors: list[BaseException] = []

    def one() -> None:
        try:
            addresses.lookup("x" * 64 + ".example", 443)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=5)
    assert not any(t.is_alive() for t in threads)
    assert len(errors) == 4 and all(isinstance(e, UnicodeError) for e in errors)


def test_addresses_are_looked_up_again_after_a_while() -> None:
    now = [0.0]
    resolver = CountingResolver(delay=0)
    addresses = dns.Addresses(resolver, clock=lambda: now[0])
    addresses.lookup("localhost", 443)
    now[0] = dns.KEEP_SECONDS - 1
    addresses.lookup("localhost", 443)
    assert resolver.calls == {"localhost": 1}
    now[0] = dns.KEEP_SECONDS + 1
    addresses.lookup("localhost", 443)
    assert resolver.calls == {"localhost": 2}


def test_a_run_asks_the_resolver_once_for_its_index_host(
    tmp_path: Path, dists_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages of 12 projects loaded at once and their files downloaded at once, from an index
    named ``localhost``: one lookup of ``localhost`` (it was one per connection)."""
    resolver = CountingResolver(delay=0.05)
    monkeypatch.setattr(socket, "getaddrinfo", resolver)  # what every connection would ask
    monkeypatch.setattr(dns, "ADDRESSES", dns.Addresses())  # nothing looked up yet
    names = [f"proj{i}" for i in range(12)]
    with IndexServer() as srv:
        for n in names:
            srv.add(make_wheel(dists_dir, n, "1.0", files={f"{n}/data.txt": "x" * 50_000}))
        url = srv.url.replace("127.0.0.1", "localhost")
        with IndexClient([url], cache=Cache(tmp_path / "cache"), concurrency=12) as client:
            pages = [client.prefetch_project(n) for n in names]
            files = [f.result()[max(f.result())][0] for f in pages]
            threads = [threading.Thread(target=client.download, args=(f,)) for f in files]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for f in files:
                assert client.cache.verified(f.sha256 or "") is not None
        page_gets = [p for m, p, _ in srv.requests if m == "GET" and p.startswith("/simple/")]
        file_gets = [p for m, p, _ in srv.requests if m == "GET" and p.startswith("/files/")]
    assert len(page_gets) >= 12 and len(file_gets) >= 12
    assert resolver.calls.get("localhost") == 1, resolver.calls


def test_an_address_that_cannot_be_reached_costs_the_first_connection_only(
    tmp_path: Path, dists_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index's name gives an address nothing listens on first (as an IPv6 address does
    on a network without IPv6), then the index's own. The first connection tries both; once
    one connected, every later connection of another client — a request through httpx, a
    Windows wheel's download over ``http.client`` — tries that one first: the dead address is
    tried once."""
    monkeypatch.setattr(dns, "ADDRESSES", dns.Addresses())  # nothing looked up yet
    real_connect = socket.socket.connect
    tried: list[str] = []

    def connect(self: socket.socket, address: Any) -> None:
        if isinstance(address, tuple) and address[0].startswith("127.0.0."):
            tried.append(address[0])
        real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    win = make_wheel(dists_dir, "proj", "1.0", tag="cp312-cp312-win_amd64")
    with IndexServer() as srv:
        srv.add(win)
        dead, alive = ("127.0.0.2", srv.port), ("127.0.0.1", srv.port)
        answer = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", a) for a in (dead, alive)]

        def resolver(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
            assert (host, port) == ("localhost", srv.port)
            return list(answer)

        monkeypatch.setattr(dns.ADDRESSES, "_getaddrinfo", resolver)
        url = srv.url.replace("127.0.0.1", "localhost")
        with IndexClient([url], cache=Cache(tmp_path / "cache")) as client:
            (file,) = client.project_files("proj")
        assert tried == ["127.0.0.2", "127.0.0.1"]  # the first connection: both
        assert dns.ADDRESSES.lookup("localhost", srv.port)[0][4] == alive
        with IndexClient([url], cache=Cache(tmp_path / "cache2")) as client:
            assert client.web.request(f"{url}proj/").status_code == 200  # httpx's connections
            client.download(file)  # http.client's, this client's own
            assert client.cache.verified(file.sha256 or "") is not None
        assert tried.count("127.0.0.2") == 1 and tried.count("127.0.0.1") >= 3
