"""What a CPython prefix is, read from its files: version, architecture, glibc needs.

:func:`inspect_interpreter` reads a prefix (``$PYENV_ROOT/versions/3.12.1``) and its ELF files'
``.gnu.version_r`` sections (:func:`elf_needs`): the highest ``GLIBC_x.y`` its binary,
``libpython`` and extension modules need decides which local image it may be copied into.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from wheelport.errors import UsageError

_ELF_MACHINES = {3: "i686", 40: "armv7l", 62: "x86_64", 183: "aarch64", 21: "ppc64le", 22: "s390x"}
_SHT_GNU_VERNEED = 0x6FFFFFFE
_GLIBC_RE = re.compile(rb"^GLIBC_(\d+)\.(\d+)")


@dataclass(frozen=True, kw_only=True)
class Interpreter:
    """A CPython prefix to copy into a local image, as :func:`inspect_interpreter` found it."""

    prefix: Path
    tag: str  # "cp312", "cp313t"
    version: str  # "3.12.1"
    arch: str | None  # from its ELF header
    glibc: tuple[int, int] | None  # the highest GLIBC_x.y its binaries need
    identity: str  # hash of its file list and sizes (cheap, stable)

    @property
    def directory(self) -> str:
        """Its directory under ``/opt/python``: ``cp312-cp312``, ``cp313-cp313t``."""
        return f"{self.tag.removesuffix('t')}-{self.tag}"


def elf_needs(data: bytes) -> tuple[str | None, tuple[int, int] | None]:
    """An ELF file's architecture and the highest ``GLIBC_x.y`` symbol version it needs.

    Reads the ``.gnu.version_r`` section (what ``objdump -T`` shows as ``GLIBC_2.35``); None
    for a file that needs no glibc version.
    """
    if data[:4] != b"\x7fELF" or len(data) < 52:
        raise ValueError("not an ELF file")
    is64 = data[4] == 2
    end = "<" if data[5] == 1 else ">"
    machine = _ELF_MACHINES.get(struct.unpack_from(end + "H", data, 18)[0])
    if is64:
        shoff = struct.unpack_from(end + "Q", data, 0x28)[0]
        shentsize, shnum = struct.unpack_from(end + "HH", data, 0x3A)
        fmt = end + "IIQQQQII"
    else:
        shoff = struct.unpack_from(end + "I", data, 0x20)[0]
        shentsize, shnum = struct.unpack_from(end + "HH", data, 0x2E)
        fmt = end + "IIIIIIII"
    sections = [
        struct.unpack_from(fmt, data, shoff + i * shentsize)
        for i in range(shnum)
        if shoff + (i + 1) * shentsize <= len(data)
    ]
    best: tuple[int, int] | None = None
    for _name, kind, _flags, _addr, offset, _size, link, count in sections:
        if kind != _SHT_GNU_VERNEED or link >= len(sections):
            continue
        strtab = sections[link][4]
        pos = offset
        for _ in range(count):
            _version, aux_count, _file, aux, following = struct.unpack_from(
                end + "HHIII", data, pos
            )
            apos = pos + aux
            for _ in range(aux_count):
                _hash, _aflags, _other, name, anext = struct.unpack_from(end + "IHHII", data, apos)
                start = strtab + name
                match = _GLIBC_RE.match(data[start : data.find(b"\0", start)])
                if match:
                    found = (int(match[1]), int(match[2]))
                    best = found if best is None or found > best else best
                apos += anext
            pos += following
    return machine, best


def inspect_interpreter(prefix: Path) -> Interpreter:
    """What a CPython prefix (``$PYENV_ROOT/versions/3.12.1``) is: version, arch, glibc needs.

    The glibc requirement is the highest ``GLIBC_x.y`` needed by its ``python3.X`` binary, its
    ``libpython`` and its extension modules (``lib-dynload``). A directory that is not a
    CPython prefix raises :class:`UsageError`.
    """
    root = prefix.expanduser().resolve()
    stdlibs = sorted(
        d for d in (root / "lib").glob("python3.*") if re.fullmatch(r"python3\.\d+t?", d.name)
    )
    stdlibs = [d for d in stdlibs if (d / "os.py").is_file()]
    if len(stdlibs) != 1:
        raise UsageError(
            f"--python {prefix}: not a CPython prefix (no single lib/python3.X/os.py)",
            hint="give an installation prefix such as $PYENV_ROOT/versions/3.12.1",
            path=str(prefix),
        )
    stdlib = stdlibs[0]
    name = stdlib.name.removeprefix("python")  # "3.12" or "3.13t"
    binary = root / "bin" / f"python{name}"
    if not binary.is_file():
        raise UsageError(f"--python {prefix}: no bin/python{name} in it", path=str(prefix))
    version = name.rstrip("t")
    patchlevel = root / "include" / f"python{name}" / "patchlevel.h"
    if patchlevel.is_file():
        found = re.search(r'#define\s+PY_VERSION\s+"([^"]+)"', patchlevel.read_text("latin-1"))
        version = found[1] if found else version
    elfs = [binary, *(root / "lib").glob("libpython3*.so*"), *(stdlib / "lib-dynload").glob("*.so")]
    arch: str | None = None
    glibc: tuple[int, int] | None = None
    for path in elfs:
        if path.is_symlink() or not path.is_file():
            continue
        try:
            machine, needs = elf_needs(path.read_bytes())
        except (ValueError, struct.error):
            continue
        if path == binary:
            arch = machine
        if needs is not None and (glibc is None or needs > glibc):
            glibc = needs
    return Interpreter(
        prefix=root,
        tag="cp" + name.replace(".", ""),
        version=version,
        arch=arch,
        glibc=glibc,
        identity=_tree_identity(root),
    )


def _tree_identity(root: Path) -> str:
    """A hash of a prefix's file list and sizes (bytecode caches aside, which come and go)."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if name.endswith(".pyc"):
                continue
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            size = os.readlink(path) if path.is_symlink() else str(path.lstat().st_size)
            h.update(f"{rel}\0{size}\n".encode())
    return h.hexdigest()[:16]
