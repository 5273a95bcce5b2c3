"""wheelport's container recipes and templates, shipped as package data.

The files next to this module (see ``README.md`` here) are found with
:mod:`importlib.resources`, so they work the same from a checkout (editable install), a
regular install (``pip install``, ``pipx``, ``uv tool install``) or a zip:

- :func:`read_text` / :func:`read_bytes`: a file's contents (templates, hashed recipes);
- :func:`path`: a real file path, for what another program opens by name
  (``CONTAINERS_CONF`` for podman). A file that is not on disk (zip import) is extracted once
  and kept for the life of the process;
- :func:`copy_to`: copies files into a directory, for a script run together with its
  siblings (``local-base.sh`` reads ``local-base.packages`` next to itself).

Every user of these files goes through these functions; nothing looks them up relative to the
source tree.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import importlib.resources
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from wheelport.errors import BuildError

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:
        from importlib.abc import Traversable

#: podman settings; ``CONTAINERS_CONF`` points at it for every engine call
CONTAINERS_CONF = "containers.conf"
#: the local base image's recipe: the script, then the files it reads from its own directory
LOCAL_BASE_RECIPE = ("local-base.sh", "local-base.packages", "local-base.requirements")
#: template of a derived builder image (a base image plus system packages)
BUILDER_TEMPLATE = "builder.Containerfile.in"
#: template of the app image ``wheelport docker`` writes
APP_TEMPLATE = "Containerfile.app.in"
#: every file shipped here (also listed as package data in ``pyproject.toml``)
NAMES = (CONTAINERS_CONF, *LOCAL_BASE_RECIPE, BUILDER_TEMPLATE, APP_TEMPLATE)

_extracted = contextlib.ExitStack()
atexit.register(_extracted.close)


def files() -> Traversable:
    """The package-data directory holding the recipes."""
    return importlib.resources.files(__name__)


def _entry(name: str) -> Traversable:
    entry = files() / name
    if not entry.is_file():
        raise BuildError(
            f"wheelport's resource file {name} is missing from {files()}",
            hint="reinstall wheelport: the package data did not get installed",
            path=name,
        )
    return entry


def read_bytes(name: str) -> bytes:
    """The contents of the resource file ``name`` (one of :data:`NAMES`)."""
    return _entry(name).read_bytes()


def read_text(name: str) -> str:
    """The contents of the resource file ``name`` as UTF-8 text."""
    return _entry(name).read_text(encoding="utf-8")


@functools.cache
def path(name: str) -> Path:
    """A real file-system path of the resource file ``name``, valid until the process exits."""
    return _extracted.enter_context(importlib.resources.as_file(_entry(name)))


def copy_to(directory: Path, names: Iterable[str]) -> Path:
    """Copy the resource files ``names`` into ``directory`` (created); return ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        (directory / name).write_bytes(read_bytes(name))
    return directory
