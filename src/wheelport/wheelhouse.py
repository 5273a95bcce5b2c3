"""The wheelhouse layout and its manifest (``wheelport.json``).

The layout is a contract every stage and every export reads::

    wheelhouse/
      wheels/                  every wheel, flat, canonical file names
      wheels/<wheel>.metadata  PEP 658 core metadata beside each wheel
      sdists/                  source archives that were built
      simple/                  static PEP 503 HTML + PEP 691 JSON index
      pylock.<target>.toml     PEP 751 lock per target (artifact paths relative to the wheelhouse)
      wheelport.json           manifest: inputs digest, targets, every artifact's sha256/size/origin
      bootstrap.py             stdlib-only installer
      logs/                    build logs of failed builds

Manifest shape (``wheelport.json``)::

    {
      "version": 1,
      "inputs_digest": "<sha256 of the normalized inputs>",
      "targets": ["cp312-manylinux_2_28_x86_64", ...],
      "artifacts": {
        "wheels/foo-1.0-py3-none-any.whl": {
          "sha256": "...", "size": 123,
          "origin": {"kind": "download", "url": "https://..."}
                 or {"kind": "build", "builder": "native" | "container:<image>",
                     "sdist": "sdists/foo-1.0.tar.gz", "sdist_sha256": "...",
                     "targets": ["cp312-..."]}
        },
        "sdists/foo-1.0.tar.gz": {...}
      }
    }
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class Wheelhouse:
    """Paths of one wheelhouse directory."""

    root: Path

    @property
    def wheels(self) -> Path:
        return self.root / "wheels"

    @property
    def sdists(self) -> Path:
        return self.root / "sdists"

    @property
    def simple(self) -> Path:
        return self.root / "simple"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def manifest_path(self) -> Path:
        return self.root / "wheelport.json"

    @property
    def bootstrap_path(self) -> Path:
        return self.root / "bootstrap.py"

    def lock_path(self, target_id: str) -> Path:
        return self.root / f"pylock.{target_id}.toml"

    def lock_paths(self) -> list[Path]:
        return sorted(self.root.glob("pylock.*.toml"))

    def relative(self, path: Path) -> str:
        """A path inside the wheelhouse as the POSIX relative string the lock and manifest use."""
        return path.resolve().relative_to(self.root.resolve()).as_posix()

    def load_manifest(self) -> dict[str, Any]:
        return load_manifest(self.manifest_path)

    def save_manifest(self, manifest: dict[str, Any]) -> None:
        atomic_write_text(self.manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def empty_manifest() -> dict[str, Any]:
    return {"version": MANIFEST_VERSION, "inputs_digest": None, "targets": [], "artifacts": {}}


def load_manifest(path: Path) -> dict[str, Any]:
    """The manifest at ``path``, or an empty one when it does not exist."""
    if not path.exists():
        return empty_manifest()
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    data.setdefault("artifacts", {})
    data.setdefault("targets", [])
    return data


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file (bootstrap.py's function: one hashing routine everywhere)."""
    from wheelport.bootstrap import sha256_of

    return sha256_of(str(path))


@contextlib.contextmanager
def atomic_target(path: Path, mode: str = "wb", *, durable: bool = True) -> Iterator[Any]:
    """Open a temporary file beside ``path``; on success rename it into place.

    A crash or an exception leaves no partial ``path`` behind (the temporary is removed).
    ``durable`` fsyncs before the rename (for records such as locks and the manifest);
    derived files that are rebuilt on demand (caches, index pages) skip it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str, *, durable: bool = True) -> None:
    with atomic_target(path, "w", durable=durable) as f:
        f.write(text)


def atomic_write_bytes(path: Path, data: bytes, *, durable: bool = True) -> None:
    with atomic_target(path, "wb", durable=durable) as f:
        f.write(data)
