"""``python -m wheelport`` and the ``wheelport`` command. A ``sync`` starts its download process
first (:func:`wheelport.index.spawn.start_early`), before the command line's modules are
imported: the two interpreters import at once, on the two cores, where the download process
used to start only once this one had imported its command line (~0.12 s later)."""

from __future__ import annotations

import sys
from typing import NoReturn


def run() -> NoReturn:
    if sys.argv[1:2] == ["sync"]:
        from wheelport.index.spawn import start_early

        start_early()
    from wheelport.cli import run as cli_run

    cli_run()


if __name__ == "__main__":
    run()
