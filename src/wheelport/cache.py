"""The per-user cache: HTTP responses, core metadata and artifacts by sha256.

Shared by every wheelhouse on the machine. Artifacts are content-addressed, so a file
downloaded once (for metadata during resolution, or by fetch) is never downloaded again.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs


def default_cache_dir() -> Path:
    env = os.environ.get("WHEELPORT_CACHE_DIR")
    if env:
        return Path(env)
    return Path(platformdirs.user_cache_dir("wheelport", appauthor=False))


@dataclass(frozen=True)
class Cache:
    root: Path

    @classmethod
    def default(cls) -> Cache:
        return cls(default_cache_dir())

    @property
    def http(self) -> Path:
        return self.root / "http-v1"

    @property
    def metadata(self) -> Path:
        return self.root / "metadata-v1"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts-v1"

    def artifact_path(self, sha256: str) -> Path:
        return self.artifacts / sha256[:2] / sha256[2:]

    def http_path(self, key: str) -> Path:
        digest = hashlib.sha256(key.encode()).hexdigest()
        return self.http / digest[:2] / f"{digest[2:]}.json"

    def metadata_path(self, key: str) -> Path:
        digest = hashlib.sha256(key.encode()).hexdigest()
        return self.metadata / digest[:2] / digest[2:]
