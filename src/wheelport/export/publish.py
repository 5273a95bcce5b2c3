"""``wheelport publish``: fill an internal mirror from a wheelhouse.

Two kinds of mirror:

- a PyPI-compatible server (pypiserver, devpi, Artifactory, PyPI itself) through the legacy
  upload API that ``twine upload`` speaks: one multipart ``POST`` per file with
  ``:action=file_upload``, ``protocol_version=1``, the file as ``content`` and its core
  metadata as form fields. Files whose sha256 the server's simple page already lists are
  skipped; a file the server holds under the same name with another hash is an error.
- a directory (what nginx or an object-store sync then serves): the wheelhouse tree is
  copied file by file, only where size or sha256 changed, artifacts first and the
  ``simple/`` pages last (each by an atomic rename), so a reader never sees a link to a file
  that is not there yet. Nothing is removed unless asked (``delete=True``).

Credentials come from arguments, ``WHEELPORT_PUBLISH_USERNAME``/``_PASSWORD``,
``TWINE_USERNAME``/``TWINE_PASSWORD``, ``keyring`` (when installed) or ``~/.netrc``; they are
never printed, not even in errors.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)

from wheelport.credentials import netrc_login, split_credentials
from wheelport.credentials import netrc_path as default_netrc_path
from wheelport.errors import ExportError, UsageError
from wheelport.index.parse import parse_html_page, parse_json_page
from wheelport.wheelhouse import Wheelhouse, atomic_target, sha256_file

JSON_ACCEPT = "application/vnd.pypi.simple.v1+json, text/html;q=0.1"
USER_AGENT = "wheelport-publish"

#: core metadata header -> upload form field (what twine sends), and whether it repeats
METADATA_FIELDS: dict[str, tuple[str, bool]] = {
    "Metadata-Version": ("metadata_version", False),
    "Name": ("name", False),
    "Version": ("version", False),
    "Summary": ("summary", False),
    "Home-page": ("home_page", False),
    "Author": ("author", False),
    "Author-email": ("author_email", False),
    "Maintainer": ("maintainer", False),
    "Maintainer-email": ("maintainer_email", False),
    "License": ("license", False),
    "License-Expression": ("license_expression", False),
    "License-File": ("license_file", True),
    "Keywords": ("keywords", False),
    "Platform": ("platform", True),
    "Classifier": ("classifiers", True),
    "Download-URL": ("download_url", False),
    "Supported-Platform": ("supported_platform", True),
    "Provides": ("provides", True),
    "Requires": ("requires", True),
    "Obsoletes": ("obsoletes", True),
    "Project-URL": ("project_urls", True),
    "Provides-Dist": ("provides_dist", True),
    "Obsoletes-Dist": ("obsoletes_dist", True),
    "Requires-Dist": ("requires_dist", True),
    "Requires-External": ("requires_external", True),
    "Requires-Python": ("requires_python", False),
    "Provides-Extra": ("provides_extra", True),
    "Description-Content-Type": ("description_content_type", False),
    "Dynamic": ("dynamic", True),
}


# ------------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Credentials:
    """A username and password. ``repr`` hides the password."""

    username: str
    password: str = field(repr=False)
    source: str = ""


@dataclass(frozen=True)
class Artifact:
    """One wheelhouse file to publish."""

    rel: str
    project: str
    version: str
    sha256: str
    size: int

    @property
    def filename(self) -> str:
        return self.rel.rsplit("/", 1)[-1]

    @property
    def filetype(self) -> str:
        return "bdist_wheel" if self.filename.endswith(".whl") else "sdist"

    @property
    def pyversion(self) -> str:
        """The ``pyversion`` field: the wheel's python tag, ``source`` for an sdist."""
        if self.filetype == "sdist":
            return "source"
        return self.filename[:-4].split("-")[-3]


@dataclass
class PublishReport:
    """What ``publish`` did: uploaded/copied files, skipped files, pages written."""

    destination: str
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    pages: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "destination": self.destination,
            "uploaded": self.uploaded,
            "skipped": self.skipped,
            "pages": self.pages,
            "removed": self.removed,
        }


class PublishReporter(Protocol):
    """Observes ``publish`` file by file (the CLI prints lines; nothing by default)."""

    def uploading(self, filename: str) -> None:
        """A file is about to be sent to the server."""

    def copying(self, rel: str) -> None:
        """A file of the tree (``rel``, relative to the wheelhouse) is about to be copied."""

    def skipped(self, name: str, why: str) -> None:
        """A file is not sent: the destination has it already (``why`` says how we know)."""

    def removed(self, rel: str) -> None:
        """A file the wheelhouse no longer has was removed from the destination."""


class NullPublishReporter:
    """A :class:`PublishReporter` that shows nothing."""

    def uploading(self, filename: str) -> None:
        pass

    def copying(self, rel: str) -> None:
        pass

    def skipped(self, name: str, why: str) -> None:
        pass

    def removed(self, rel: str) -> None:
        pass


# ------------------------------------------------------------------------------- decisions


def without_credentials(url: str) -> str:
    """``url`` without any ``user:password@`` part (to build URLs from, and for messages)."""
    return split_credentials(url)[0]


def resolve_credentials(
    url: str,
    *,
    username: str | None = None,
    password: str | None = None,
    environ: Mapping[str, str] | None = None,
    netrc_path: Path | None = None,
    keyring_get: Callable[[str, str], str | None] | None = None,
) -> Credentials | None:
    """Credentials for ``url``, first found wins: arguments, ``WHEELPORT_PUBLISH_*``,
    ``TWINE_*``, the URL's own ``user:password@``, keyring (for a known username), ``.netrc``
    (``netrc_path``, default ``$NETRC`` or ``~/.netrc``). A username alone is completed by the
    later sources' password. ``None`` when nothing is configured."""
    env = os.environ if environ is None else environ
    parts = urlsplit(url)
    user, pw, source = username, password, "arguments"
    for prefix, name in (("WHEELPORT_PUBLISH_", "WHEELPORT_PUBLISH_*"), ("TWINE_", "TWINE_*")):
        if user is None and env.get(prefix + "USERNAME"):
            user, source = env[prefix + "USERNAME"], name
        if pw is None and env.get(prefix + "PASSWORD"):
            pw = env[prefix + "PASSWORD"]
            source = source if user is not None and source != "arguments" else name
    if user is None and parts.username:
        user, source = parts.username, "URL"
    if pw is None and parts.password:
        pw = parts.password
    if user is not None and pw is None and keyring_get is not None:
        with contextlib.suppress(Exception):
            pw = keyring_get(without_credentials(url), user)
            source = "keyring" if pw else source
    if pw is None and parts.hostname:
        # an unreadable netrc is an error here: the upload would fail without its password
        entry = netrc_login(parts.hostname, path=netrc_path or default_netrc_path(env))
        if entry and (user is None or entry.login == user):
            user, pw, source = entry.login, entry.password, str(entry.path)
    if user is None and pw is None:
        return None
    if pw and not user:
        user = "__token__"  # a password alone is an API token, as with twine
    return Credentials(user or "", pw or "", source)


def default_simple_url(repository_url: str) -> str:
    """Where the server lists its files, from where it takes uploads.

    pypiserver takes uploads at ``/`` and serves ``/simple/``; devpi takes them at
    ``/USER/INDEX/`` and serves ``/USER/INDEX/+simple/``; PyPI/TestPyPI take them at
    ``upload.*/legacy/`` and serve ``/simple/`` on the main host.
    """
    parts = urlsplit(without_credentials(repository_url))
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    host = parts.netloc
    if path.endswith("/legacy/"):
        if host.startswith("upload."):
            host = host[len("upload.") :]
        return urlunsplit((parts.scheme, host, "/simple/", "", ""))
    segments = [s for s in path.split("/") if s]
    if len(segments) == 2 and not segments[0].startswith("+"):  # devpi USER/INDEX
        return urlunsplit((parts.scheme, host, path + "+simple/", "", ""))
    return urlunsplit((parts.scheme, host, path + "simple/", "", ""))


def parse_project_page(
    body: bytes, content_type: str, *, project: str, page_url: str
) -> dict[str, str | None]:
    """filename -> sha256 (or None when the page gives none) of a simple project page, read by
    the index client's own PEP 691 / PEP 503 parsers."""
    if "json" in content_type:
        files = parse_json_page(body, page_url, project, page_url)
    else:
        files = parse_html_page(body.decode("utf-8", "replace"), page_url, project, page_url)
    return {f.filename: f.sha256 for f in files}


def plan_uploads(
    artifacts: Sequence[Artifact], server_files: Mapping[str, Mapping[str, str | None]]
) -> tuple[list[Artifact], list[Artifact]]:
    """(to upload, already there). ``server_files``: project -> filename -> sha256 or None.

    A file listed by the server under the same name with another sha256 raises
    :class:`ExportError`: the mirror holds a different file and would serve it.
    """
    upload: list[Artifact] = []
    skip: list[Artifact] = []
    for art in artifacts:
        listed = server_files.get(art.project, {})
        if art.filename not in listed:
            upload.append(art)
            continue
        sha = listed[art.filename]
        if sha is not None and sha != art.sha256:
            raise ExportError(
                f"the server already has {art.filename} with sha256 {sha}, but the wheelhouse's "
                f"is {art.sha256}",
                hint="a different build was uploaded before; delete it on the server or bump the version",
                path=art.rel,
            )
        skip.append(art)
    return upload, skip


def upload_fields(
    art: Artifact, metadata: bytes, *, md5: str, blake2_256: str
) -> list[tuple[str, str]]:
    """The form fields twine sends for one file, from its core metadata."""
    msg = BytesHeaderParser().parsebytes(metadata)
    fields: list[tuple[str, str]] = [
        (":action", "file_upload"),
        ("protocol_version", "1"),
        ("filetype", art.filetype),
        ("pyversion", art.pyversion),
        ("md5_digest", md5),
        ("sha256_digest", art.sha256),
        ("blake2_256_digest", blake2_256),
    ]
    seen: set[str] = set()
    for header, (name, repeats) in METADATA_FIELDS.items():
        values = msg.get_all(header) or []
        for value in values if repeats else values[:1]:
            fields.append((name, str(value)))
            seen.add(name)
    body = msg.get_payload()
    description = msg.get("Description") or (body if isinstance(body, str) else "")
    if description:
        fields.append(("description", str(description)))
    if "name" not in seen or "version" not in seen:
        fields = [f for f in fields if f[0] not in ("name", "version")]
        fields += [("name", art.project), ("version", art.version)]
    return fields


def wheelhouse_artifacts(root: Path) -> list[Artifact]:
    """Wheels and sdists the manifest lists, in a stable order (sdists after wheels)."""
    wh = Wheelhouse(root)
    if not wh.manifest_path.is_file():
        raise UsageError(f"not a wheelhouse: {root} (no wheelport.json)",
                         hint="run 'wheelport sync' first or pass -w", path=str(root))  # fmt: skip
    out: list[Artifact] = []
    for rel, rec in sorted(wh.load_manifest().artifacts.items()):
        name = rel.rsplit("/", 1)[-1]
        try:
            if name.endswith(".whl"):
                project, version, *_ = parse_wheel_filename(name)
            else:
                project, version = parse_sdist_filename(name)
        except (InvalidWheelFilename, InvalidSdistFilename):
            continue
        out.append(
            Artifact(rel, str(canonicalize_name(project)), str(version), rec.sha256, rec.size or 0)
        )
    return sorted(out, key=lambda a: (a.filetype != "bdist_wheel", a.rel))


# ------------------------------------------------------------------------------- upload


def _read_metadata(root: Path, art: Artifact) -> bytes:
    from wheelport.site.writer import read_sdist_metadata, read_wheel_metadata

    path = root / art.rel
    if art.filetype == "bdist_wheel":
        beside = path.with_name(path.name + ".metadata")
        return beside.read_bytes() if beside.is_file() else read_wheel_metadata(path)
    meta = read_sdist_metadata(path)
    if meta is None:
        return f"Metadata-Version: 1.0\nName: {art.project}\nVersion: {art.version}\n".encode()
    return meta


def _fetch_server_files(
    client: httpx.Client, simple_url: str, project: str
) -> dict[str, str | None]:
    url = urljoin(simple_url, f"{project}/")
    try:
        resp = client.get(url, headers={"Accept": JSON_ACCEPT}, follow_redirects=False)
        for _ in range(3):
            if not resp.is_redirect:
                break
            target = urljoin(url, resp.headers.get("location", ""))
            if urlsplit(target).netloc != urlsplit(url).netloc:
                # pypiserver's fallback to the public index: the mirror itself has nothing
                return {}
            resp = client.get(target, headers={"Accept": JSON_ACCEPT}, follow_redirects=False)
    except httpx.HTTPError as exc:
        raise ExportError(f"cannot reach {without_credentials(url)}: {exc}",
                          hint="check --repository-url / --simple-url and that the server runs") from None  # fmt: skip
    if resp.status_code == 404:
        return {}
    if resp.status_code in (401, 403):
        raise ExportError(f"{without_credentials(url)} refused to list {project} ({resp.status_code})",
                          hint="check the credentials") from None  # fmt: skip
    if resp.status_code != 200:
        raise ExportError(
            f"{without_credentials(url)} answered {resp.status_code} listing {project}"
        )
    return parse_project_page(
        resp.content, resp.headers.get("content-type", ""), project=project, page_url=str(resp.url)
    )


def _hashes(path: Path) -> tuple[str, str, str]:
    md5 = hashlib.md5(usedforsecurity=False)
    sha = hashlib.sha256()
    blake = hashlib.blake2b(digest_size=32)
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            md5.update(chunk)
            sha.update(chunk)
            blake.update(chunk)
    return md5.hexdigest(), sha.hexdigest(), blake.hexdigest()


def publish_to_repository(
    wheelhouse: Path,
    repository_url: str,
    *,
    username: str | None = None,
    password: str | None = None,
    simple_url: str | None = None,
    client: httpx.Client | None = None,
    environ: Mapping[str, str] | None = None,
    reporter: PublishReporter | None = None,
) -> PublishReport:
    """Upload every wheel and sdist of ``wheelhouse`` the server does not have yet.

    The server's simple pages (``simple_url``, derived from ``repository_url`` by default)
    say what it has; files there with the same sha256 are skipped. Every file is re-hashed
    before upload. Raises :class:`ExportError` for a refused upload (with the server's one
    line) and :class:`UsageError` for a bad URL.
    """
    reporter = reporter or NullPublishReporter()
    root = Path(wheelhouse)
    if urlsplit(repository_url).scheme not in ("http", "https"):
        raise UsageError(f"not an http(s) URL: {without_credentials(repository_url)}",
                         hint="e.g. --repository-url http://mirror:8080/")  # fmt: skip
    artifacts = wheelhouse_artifacts(root)
    keyring_get: Callable[[str, str], str | None] | None = None
    with contextlib.suppress(ImportError):
        import keyring  # type: ignore[import-not-found,unused-ignore]

        keyring_get = keyring.get_password
    creds = resolve_credentials(repository_url, username=username, password=password,
                                environ=environ, keyring_get=keyring_get)  # fmt: skip
    auth = httpx.BasicAuth(creds.username, creds.password) if creds else None
    upload_url = without_credentials(repository_url)
    simple = simple_url or default_simple_url(repository_url)
    own = client is None
    http = client or httpx.Client(
        timeout=httpx.Timeout(60.0, connect=10.0), headers={"User-Agent": USER_AGENT}
    )
    if auth is not None:
        http.auth = auth
    report = PublishReport(destination=upload_url)
    try:
        projects = sorted({a.project for a in artifacts})
        server = {p: _fetch_server_files(http, simple, p) for p in projects}
        todo, skipped = plan_uploads(artifacts, server)
        report.skipped = [a.filename for a in skipped]
        for art in skipped:
            reporter.skipped(art.filename, "the server lists it with the same sha256")
        for art in todo:
            path = root / art.rel
            md5, sha, blake = _hashes(path)
            if sha != art.sha256:
                raise ExportError(f"{path} does not match the manifest (sha256 {sha}, expected {art.sha256})",
                                  hint=f"run 'wheelport verify {root}'", path=art.rel)  # fmt: skip
            fields = upload_fields(art, _read_metadata(root, art), md5=md5, blake2_256=blake)
            data: dict[str, list[str]] = {}
            for k, v in fields:
                data.setdefault(k, []).append(v)
            reporter.uploading(art.filename)
            with path.open("rb") as f:
                try:
                    resp = http.post(upload_url, data=data,
                                     files={"content": (art.filename, f, "application/octet-stream")},
                                     follow_redirects=False)  # fmt: skip
                except httpx.HTTPError as exc:
                    raise ExportError(
                        f"uploading {art.filename} to {upload_url} failed: {exc}", path=art.rel
                    ) from None
            if resp.is_redirect:
                raise ExportError(
                    f"{upload_url} redirected the upload of {art.filename} to "
                    f"{without_credentials(resp.headers.get('location', '?'))}",
                    hint="use the repository's upload URL itself (with its trailing slash)",
                    path=art.rel,
                )
            if resp.status_code in (401, 403):
                raise ExportError(f"{upload_url} refused {art.filename}: {resp.status_code} {resp.reason_phrase}",
                                  hint="check --username/--password, WHEELPORT_PUBLISH_* / TWINE_* or ~/.netrc",
                                  path=art.rel)  # fmt: skip
            if resp.status_code >= 300:
                text = " ".join(resp.text.split())[:200]
                raise ExportError(
                    f"{upload_url} refused {art.filename}: {resp.status_code} {text}", path=art.rel
                )
            report.uploaded.append(art.filename)
    finally:
        if own:
            http.close()
    return report


# ------------------------------------------------------------------------------- directory


def tree_files(root: Path) -> list[str]:
    """The files of the static tree to mirror, as relative POSIX paths, in write order:
    artifacts and metadata, then locks/manifest/bootstrap, then project pages, then the
    project list (``simple/index.*``) last. Hidden files and ``logs/`` are not mirrored."""
    wh = Wheelhouse(root)
    found: list[str] = []
    for sub in (wh.wheels, wh.sdists, wh.simple):
        if not sub.is_dir():
            continue
        for p in sub.rglob("*"):
            rel = p.relative_to(root).as_posix()
            if p.is_file() and not any(part.startswith(".") for part in rel.split("/")):
                found.append(rel)
    for p in root.iterdir():
        if p.is_file() and (
            p.name in ("wheelport.json", "bootstrap.py") or p.name.startswith("pylock.")
        ):
            found.append(p.name)

    def rank(rel: str) -> tuple[int, str]:
        if rel.startswith(("wheels/", "sdists/")):
            return (0, rel)
        if not rel.startswith("simple/"):
            return (1, rel)
        return (3, rel) if rel.count("/") == 1 else (2, rel)

    return sorted(found, key=rank)


def _same(src: Path, dst: Path) -> bool:
    try:
        if dst.stat().st_size != src.stat().st_size:
            return False
    except FileNotFoundError:
        return False
    return sha256_file(src) == sha256_file(dst)


def _copy_atomic(src: Path, dst: Path) -> None:
    """``src``'s bytes at ``dst`` through a temporary file and a rename, world-readable
    (a mirror directory is served by another user, whatever this process's umask)."""
    with atomic_target(dst) as f, src.open("rb") as s:
        os.fchmod(f.fileno(), 0o644)
        shutil.copyfileobj(s, f)


def publish_to_dir(
    wheelhouse: Path,
    destination: Path,
    *,
    delete: bool = False,
    reporter: PublishReporter | None = None,
) -> PublishReport:
    """Mirror the wheelhouse's static tree into ``destination`` for a plain web server.

    Copies only files whose size or sha256 differ; index pages go last, each by an atomic
    rename, so every link a page shows points at a file that is already there. With
    ``delete``, files under ``wheels/``, ``sdists/`` and ``simple/`` that the wheelhouse no
    longer has are removed after the pages are written.
    """
    reporter = reporter or NullPublishReporter()
    root = Path(wheelhouse)
    if not (root / "wheelport.json").is_file() or not (root / "simple").is_dir():
        raise UsageError(f"not an indexed wheelhouse: {root}",
                         hint="run 'wheelport sync' (or 'wheelport index') first", path=str(root))  # fmt: skip
    destination = Path(destination)
    if destination.resolve() == root.resolve() or destination.resolve().is_relative_to(
        root.resolve()
    ):
        raise UsageError(f"{destination} is inside the wheelhouse", path=str(destination))
    report = PublishReport(destination=str(destination))
    wanted = tree_files(root)
    for rel in wanted:
        src, dst = root / rel, destination / rel
        if _same(src, dst):
            report.skipped.append(rel)
            reporter.skipped(rel, "the destination has the same file")
            continue
        reporter.copying(rel)
        _copy_atomic(src, dst)
        (report.pages if rel.startswith("simple/") else report.uploaded).append(rel)
    if delete:
        keep = set(wanted)
        for sub in ("wheels", "sdists", "simple"):
            base = destination / sub
            if not base.is_dir():
                continue
            for p in sorted(base.rglob("*"), reverse=True):
                rel = p.relative_to(destination).as_posix()
                if p.is_file() and rel not in keep:
                    p.unlink()
                    report.removed.append(rel)
                    reporter.removed(rel)
                elif p.is_dir():
                    with contextlib.suppress(OSError):
                        p.rmdir()
    return report
