"""How every verb prints: rich on stderr for humans, JSON on stdout for machines.

``common`` gives each verb ``--json``, ``-q`` and ``-v``; the CLI and the export commands
both use it.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console

F = TypeVar("F", bound=Callable[..., Any])


class Output:
    """Where a verb prints: rich on stderr for humans, JSON on stdout for machines."""

    def __init__(self, *, json_mode: bool, quiet: bool, verbose: int) -> None:
        self.json_mode = json_mode
        self.quiet = quiet or json_mode
        self.verbose = verbose
        self.console = Console(stderr=True, highlight=False)
        self.out = Console(highlight=False, soft_wrap=True)

    def info(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text)

    def result(self, data: dict[str, Any], human: Callable[[], None]) -> None:
        if self.json_mode:
            sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
        elif not self.quiet:
            human()


def common(func: F) -> F:
    """--json, -q, -v on every verb."""

    @click.option("--json", "json_mode", is_flag=True, help="Print a JSON result on stdout.")
    @click.option("-q", "--quiet", is_flag=True, help="Print only errors.")
    @click.option("-v", "--verbose", count=True, help="More output; tracebacks on errors.")
    @functools.wraps(func)
    def wrapper(*args: Any, json_mode: bool, quiet: bool, verbose: int, **kwargs: Any) -> Any:
        out = Output(json_mode=json_mode, quiet=quiet, verbose=verbose)
        logging.basicConfig(
            level=logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING,
            format="%(levelname)s %(name)s: %(message)s",
        )
        if not verbose:
            # build backends' deprecation notices (re-raised by pyproject_hooks) are not ours to show
            from pyproject_hooks import BuildBackendWarning

            warnings.filterwarnings("ignore", category=BuildBackendWarning)
        return func(*args, out=out, **kwargs)

    return wrapper  # type: ignore[return-value]
