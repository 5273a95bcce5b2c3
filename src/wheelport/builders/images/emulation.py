"""Foreign-architecture containers: the qemu binfmt_misc handler they need.

:func:`emulation_for` makes sure this machine can run an architecture's containers (Debian's
``qemu-user-static``), registering the handler when it is installed and we are root, else
naming the missing piece and the command that adds it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from wheelport.errors import BuildError
from wheelport.process import Runner, subprocess_runner

#: where the kernel lists its binfmt_misc handlers (emulated foreign-arch containers)
BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
EMULATION_PACKAGES = "apt-get install qemu-user-static binfmt-support"


def emulation_for(
    arch: str,
    *,
    binfmt_dir: Path = BINFMT_DIR,
    host_arch: str | None = None,
    register: bool = True,
    qemu_dir: Path = Path("/usr/bin"),
    runner: Runner = subprocess_runner,
) -> None:
    """Make sure this machine can run ``arch`` containers; raise :class:`BuildError` if not.

    A foreign architecture needs an enabled ``qemu-<arch>`` binfmt_misc handler (Debian's
    ``qemu-user-static``). When it is installed but not registered and ``register`` is true
    and we are root, it is registered (``binfmt_misc`` mounted, ``update-binfmts --enable``).
    Otherwise one line says what is missing and the command that adds it. ``binfmt_dir``
    and ``qemu_dir`` (where ``qemu-<arch>-static`` is) let tests use a fake system.
    """
    host = host_arch or os.uname().machine
    if arch == host:
        return
    handler = binfmt_dir / f"qemu-{arch}"
    if _handler_enabled(handler):
        return
    qemu = qemu_dir / f"qemu-{arch}-static"
    if register and os.geteuid() == 0 and qemu.exists():
        if not (binfmt_dir / "register").exists():
            runner(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt_dir)])
        conf = Path(f"/usr/lib/binfmt.d/qemu-{arch}.conf")  # systemd-binfmt's copy
        if shutil.which("update-binfmts"):
            runner(["update-binfmts", "--enable", f"qemu-{arch}"])
        elif conf.is_file() and (binfmt_dir / "register").exists():
            with contextlib.suppress(OSError):
                (binfmt_dir / "register").write_text(conf.read_text(encoding="utf-8").strip())
        if _handler_enabled(handler):
            return
    where = f"cannot run {arch} containers on this {host} machine"
    if not (binfmt_dir / "register").exists() and qemu.exists():
        raise BuildError(
            f"{where}: binfmt_misc is not mounted at {binfmt_dir}",
            hint=f"as root: mount -t binfmt_misc binfmt_misc {binfmt_dir} && "
            f"update-binfmts --enable qemu-{arch}",
        )
    if handler.exists() or qemu.exists():
        raise BuildError(
            f"{where}: the qemu-{arch} binfmt_misc handler is not enabled",
            hint=f"as root: update-binfmts --enable qemu-{arch} (or {EMULATION_PACKAGES})",
        )
    raise BuildError(
        f"{where}: no qemu-{arch} binfmt_misc handler in {binfmt_dir}",
        hint=f"as root: {EMULATION_PACKAGES}",
    )


def _handler_enabled(handler: Path) -> bool:
    try:
        return handler.read_text(encoding="utf-8").splitlines()[0].strip() == "enabled"
    except (OSError, IndexError):
        return False
