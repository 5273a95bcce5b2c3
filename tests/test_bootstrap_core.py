"""The portable core's rule, enforced: ``bootstrap.py`` (copied into every wheelhouse, and the
home of the stdlib-only readers wheelport itself reuses) imports only the standard library and
runs on Python 3.8+. Run under the oldest CPython this machine has; it fails, not skips, where
that interpreter exists."""

from __future__ import annotations

import ast
import glob
import os
import subprocess
from pathlib import Path

import pytest

BOOTSTRAP = Path(__file__).resolve().parents[1] / "src" / "wheelport" / "bootstrap.py"
PYENV = os.environ.get("PYENV_ROOT", "/root/.pyenv")

CHECK = r"""
import importlib.util, sys, sysconfig
stdlib = sysconfig.get_paths()["stdlib"]
before = set(sys.modules)
spec = importlib.util.spec_from_file_location("wheelport_bootstrap", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
foreign = []
for name in sorted(set(sys.modules) - before):
    path = getattr(sys.modules[name], "__file__", None) or ""
    if name != "wheelport_bootstrap" and path and not path.startswith(stdlib):
        foreign.append(name + " " + path)
print("\n".join(foreign) or "ok")
"""


def oldest_python() -> str | None:
    found = []
    for exe in glob.glob(f"{PYENV}/versions/3.*/bin/python3"):
        minor = int(Path(exe).parents[1].name.split(".")[1])
        if minor >= 8:
            found.append((minor, exe))
    return min(found)[1] if found else None


def test_bootstrap_imports_nothing_of_wheelport() -> None:
    tree = ast.parse(BOOTSTRAP.read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert "wheelport" not in imported
    assert not imported & {"packaging", "httpx", "click", "rich", "resolvelib"}


def test_bootstrap_runs_on_the_oldest_python_with_the_stdlib_only() -> None:
    python = oldest_python()
    if python is None:
        pytest.skip(f"no CPython 3.8+ under {PYENV}/versions")
    # -S: no site-packages at all, so anything but the standard library fails to import
    proc = subprocess.run([python, "-S", "-I", "-c", CHECK, str(BOOTSTRAP)],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok", proc.stdout
