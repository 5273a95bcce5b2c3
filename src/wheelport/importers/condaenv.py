"""environment.yml (read with PyYAML): the ``pip:`` list of ``dependencies``.

It is not a lock: wheelport resolves those requirement lines with its own resolver, so ``==``
pins (what ``conda env export`` writes) are kept exactly and anything looser is resolved as
``wheelport lock`` would. Conda packages themselves are not Python index packages and are
ignored. ``--index-url``/``--extra-index-url`` lines name the indexes.
"""

from __future__ import annotations

from typing import Any

import yaml  # type: ignore[import-untyped]  # PyYAML ships no stubs

from wheelport.errors import UsageError
from wheelport.importers.pins import Requirements


def parse(data: bytes, origin: str) -> Requirements:
    try:
        doc: Any = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"{origin}: malformed environment.yml: {first}", path=origin) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("dependencies"), list):
        raise UsageError(f"{origin}: malformed environment.yml: no dependencies list", path=origin)
    lines: list[str] = []
    indexes: list[str] = []
    for item in doc["dependencies"]:
        if not (isinstance(item, dict) and "pip" in item):
            continue  # a conda package
        for line in item["pip"] or []:
            text = str(line).strip()
            opt, _, value = text.partition(" ")
            if opt.split("=", 1)[0] in ("-i", "--index-url", "--extra-index-url"):
                indexes.append((value or opt.partition("=")[2]).strip())
            elif text.startswith("-"):
                raise UsageError(
                    f"{origin}: unsupported pip option {opt!r} in environment.yml",
                    hint="use wheelport's command-line flags for options",
                    path=origin,
                )
            elif text:
                lines.append(text)
    if not lines:
        raise UsageError(
            f"{origin}: environment.yml has no pip: requirements",
            hint="wheelport locks Python index packages: list them under '- pip:'",
            path=origin,
        )
    return Requirements("environment.yml", tuple(lines), tuple(indexes))
