"""Locks written by other tools, read without re-resolving.

Each module reads one format into a :class:`SourceLock`: the pins it records
(:class:`ImportedPin`) and how to choose the subset for one target (its marker environment and
the user's :class:`Choice` of extras and groups). Nothing here touches the network: looking the
pins up on the index and writing wheelport's own locks is :func:`wheelport.api.lock_from`'s job.

A pin that does not come from an index (git, URL, path) is kept as it is read and refused only
when a selection takes it (:func:`~wheelport.importers.pins.refuse_direct`): a docs theme from git in a group nobody
selected does not sink the import.

Parsers: ``packaging.pylock`` for pylock.toml, ``tomllib`` for uv.lock, poetry.lock and pdm.lock
(none of these tools publishes a standalone lock parser), ``json`` for Pipfile.lock and PyYAML for
environment.yml.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from packaging.markers import InvalidMarker
from packaging.version import InvalidVersion

from wheelport.errors import UsageError
from wheelport.importers.pins import (
    Choice,
    FlatLock,
    ImportedPin,
    Requirements,
    Selected,
    SourceLock,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

FORMATS = ("uv.lock", "poetry.lock", "Pipfile.lock", "pdm.lock", "pylock.toml", "environment.yml")


def detect(path: Path, data: bytes) -> str:
    """The format of a source lock, by file name first, then by content."""
    name = path.name
    if name in ("uv.lock", "poetry.lock", "Pipfile.lock", "pdm.lock"):
        return name
    if name == "pylock.toml" or (name.startswith("pylock.") and name.endswith(".toml")):
        return "pylock.toml"
    if name.endswith((".yml", ".yaml")):
        return "environment.yml"
    text = data.decode("utf-8", "replace")
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and "_meta" in doc:
        return "Pipfile.lock"
    try:
        toml = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        toml = None
    if isinstance(toml, dict):
        meta = toml.get("metadata", {})
        if "lock-version" in toml and "packages" in toml:
            return "pylock.toml"
        if isinstance(meta, dict) and "lock_version" in meta:
            return "pdm.lock"
        if isinstance(meta, dict) and "content-hash" in meta:
            return "poetry.lock"
        if "version" in toml and "package" in toml:
            return "uv.lock"
    raise UsageError(
        f"{path}: not a lock format wheelport reads",
        hint=f"pass one of {', '.join(FORMATS)} (detected by file name, then content)",
        path=str(path),
    )


def load(path: Path) -> SourceLock | Requirements:
    """Read and parse a source lock (a :class:`UsageError` naming the file when it is bad)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"lock to import not found: {path}", path=str(path)) from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}", path=str(path)) from None
    fmt = detect(path, data)
    from wheelport.importers import condaenv, pdm, pipenv, poetry, pylock, uv

    parsers: dict[str, Callable[[bytes, str], SourceLock | Requirements]] = {
        "uv.lock": uv.parse,
        "poetry.lock": poetry.parse,
        "Pipfile.lock": pipenv.parse,
        "pdm.lock": pdm.parse,
        "pylock.toml": pylock.parse,
        "environment.yml": condaenv.parse,
    }
    try:
        return parsers[fmt](data, str(path))
    except UsageError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, InvalidVersion, InvalidMarker) as exc:
        # the lock parsed but its shape is not what the format says (first line: InvalidMarker
        # draws the marker and a caret below)
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise UsageError(
            f"{path}: malformed {fmt}: {type(exc).__name__}: {first}",
            hint=f"regenerate it with its tool ({fmt})",
            path=str(path),
        ) from None


__all__ = [
    "FORMATS",
    "Choice",
    "FlatLock",
    "ImportedPin",
    "Requirements",
    "Selected",
    "SourceLock",
    "detect",
    "load",
]
