"""Generate real, installable distributions for tests: wheels, sdists and the tinybackend.

Everything here is deterministic: equal inputs give byte-identical files (fixed zip/tar timestamps,
sorted entries, gzip mtime 0), so sha256 values are stable across runs.
"""

from __future__ import annotations

import base64
import csv
import gzip
import hashlib
import io
import json
import tarfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from packaging.requirements import Requirement
from packaging.tags import parse_tag
from packaging.utils import canonicalize_name
from packaging.version import Version

__all__ = [
    "BACKEND_SOURCE",
    "SPEEDUP_C",
    "make_backend_wheel",
    "make_sdist",
    "make_wheel",
    "metadata_text",
    "module_name",
    "wheel_metadata",
]

_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_TAR_MTIME = 315532800  # 1980-01-01, same epoch as the zip entries


def module_name(name: str) -> str:
    """Return the import name for a project: the normalized name with ``-`` replaced by ``_``."""
    return canonicalize_name(name).replace("-", "_")


def _version(version: str) -> str:
    return str(Version(version))


def metadata_text(
    name: str,
    version: str,
    *,
    deps: Sequence[str] = (),
    requires_python: str | None = None,
    extras: Mapping[str, Sequence[str]] | None = None,
    summary: str = "",
    metadata_version: str = "2.1",
    dynamic: Sequence[str] = (),
    license: str | None = None,
    license_expression: str | None = None,
    license_files: Sequence[str] = (),
    classifiers: Sequence[str] = (),
) -> str:
    """Return core metadata (METADATA / PKG-INFO) text for the given fields.

    *license_expression* (PEP 639) raises the default ``Metadata-Version`` to 2.4."""
    if license_expression and metadata_version == "2.1":
        metadata_version = "2.4"
    lines = [
        f"Metadata-Version: {metadata_version}",
        f"Name: {name}",
        f"Version: {_version(version)}",
    ]
    if summary:
        lines.append(f"Summary: {summary}")
    if license:
        lines.append(f"License: {license}")
    if license_expression:
        lines.append(f"License-Expression: {license_expression}")
    lines.extend(f"License-File: {f}" for f in license_files)
    lines.extend(f"Classifier: {c}" for c in classifiers)
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    lines.extend(f"Dynamic: {field}" for field in dynamic)
    lines.extend(f"Requires-Dist: {dep}" for dep in deps)
    for extra, extra_deps in (extras or {}).items():
        lines.append(f"Provides-Extra: {extra}")
        for dep in extra_deps:
            req = Requirement(dep)
            marker = f'extra == "{extra}"'
            if req.marker is not None:
                marker = f"({req.marker}) and {marker}"
            req.marker = None
            lines.append(f"Requires-Dist: {req}; {marker}")
    return "\n".join(lines) + "\n\n"


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode("ascii")


def _write_zip(path: Path, entries: Mapping[str, bytes]) -> None:
    """Write a zip with sorted entries, fixed timestamps and fixed permissions."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for arcname in sorted(entries, key=lambda n: (n.endswith("/RECORD"), n)):
            info = zipfile.ZipInfo(arcname, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, entries[arcname])
    path.write_bytes(buffer.getvalue())


def _wheel_entries(dist_info: str, files: Mapping[str, bytes]) -> dict[str, bytes]:
    """Add ``RECORD`` to *files* (which already hold METADATA and WHEEL)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for arcname in sorted(files):
        data = files[arcname]
        writer.writerow([arcname, _record_hash(data), str(len(data))])
    writer.writerow([f"{dist_info}/RECORD", "", ""])
    entries = dict(files)
    entries[f"{dist_info}/RECORD"] = out.getvalue().encode("utf-8")
    return entries


def make_wheel(
    directory: Path,
    name: str,
    version: str,
    *,
    deps: Sequence[str] = (),
    requires_python: str | None = None,
    tag: str = "py3-none-any",
    extras: Mapping[str, Sequence[str]] | None = None,
    files: Mapping[str, str] | None = None,
    summary: str = "",
    license: str | None = None,
    license_expression: str | None = None,
    classifiers: Sequence[str] = (),
) -> Path:
    """Write a valid, installable wheel into *directory* and return its path.

    *license*, *license_expression* (PEP 639) and *classifiers* go into METADATA as written.

    The wheel holds ``{module}/__init__.py`` (with ``__version__``) plus *files* (archive path ->
    text; an entry for ``{module}/__init__.py`` replaces the default one, entries under
    ``{module}-{version}.dist-info/`` such as ``entry_points.txt`` are allowed and land in RECORD).
    *tag* may be a compressed tag set
    (``cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64``); each expanded tag gets a ``Tag``
    line. The file name is canonical (``my_pkg-1.0-py3-none-any.whl``).
    """
    directory.mkdir(parents=True, exist_ok=True)
    mod = module_name(name)
    ver = _version(version)
    dist_info = f"{mod}-{ver}.dist-info"
    tags = sorted(str(t) for t in parse_tag(tag))
    purelib = all(t.endswith("-any") for t in tags)
    payload = {f"{mod}/__init__.py": f'__version__ = "{ver}"\n', **(files or {})}
    contents: dict[str, bytes] = {path: text.encode("utf-8") for path, text in payload.items()}
    contents[f"{dist_info}/METADATA"] = metadata_text(
        name,
        ver,
        deps=deps,
        requires_python=requires_python,
        extras=extras,
        summary=summary,
        license=license,
        license_expression=license_expression,
        classifiers=classifiers,
    ).encode("utf-8")
    wheel_lines = [
        "Wheel-Version: 1.0",
        "Generator: wheelport-tests",
        f"Root-Is-Purelib: {'true' if purelib else 'false'}",
        *(f"Tag: {t}" for t in tags),
    ]
    contents[f"{dist_info}/WHEEL"] = ("\n".join(wheel_lines) + "\n\n").encode("utf-8")
    path = directory / f"{mod}-{ver}-{tag}.whl"
    _write_zip(path, _wheel_entries(dist_info, contents))
    return path


def wheel_metadata(wheel: Path) -> bytes:
    """Return the raw ``*.dist-info/METADATA`` bytes of *wheel* (what PEP 658 serves)."""
    with zipfile.ZipFile(wheel) as archive:
        for arcname in archive.namelist():
            parts = arcname.split("/")
            if len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] == "METADATA":
                return archive.read(arcname)
    raise FileNotFoundError(f"no .dist-info/METADATA in {wheel}")


SPEEDUP_C = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *speedup_add(PyObject *self, PyObject *args) {
    long a, b;
    if (!PyArg_ParseTuple(args, "ll", &a, &b)) {
        return NULL;
    }
    return PyLong_FromLong(a + b);
}

static PyMethodDef speedup_methods[] = {
    {"add", speedup_add, METH_VARARGS, "Add two integers."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef speedup_module = {
    PyModuleDef_HEAD_INIT, "_speedup", NULL, -1, speedup_methods
};

PyMODINIT_FUNC PyInit__speedup(void) {
    return PyModule_Create(&speedup_module);
}
"""

# The tinybackend PEP 517 backend. Stdlib only, runs on CPython 3.8+ (it also runs inside manylinux
# containers), so no tomllib requirement, no f-string features newer than 3.8, no packaging.
BACKEND_SOURCE = r'''"""tinybackend: a tiny PEP 517 build backend for wheelport's tests (stdlib only).

Configuration lives in ``[tool.tinybackend]`` of pyproject.toml:

    name = "my-pkg"              # project name
    version = "1.0"
    deps = ["dep>=1"]            # Requires-Dist of the built wheel
    requires-python = ">=3.8"    # optional
    c-extension = "my_pkg/_speedup.c"   # optional: compile this into my_pkg/_speedup<EXT_SUFFIX>
    py-limited-api = "cp38"      # optional, with c-extension: stable ABI, an abi3 wheel
"""

import base64
import csv
import hashlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import zipfile

__version__ = "@VERSION@"

_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def _read_config():
    with open("pyproject.toml", "rb") as f:
        raw = f.read()
    try:
        import tomllib
    except ImportError:
        tomllib = None
    if tomllib is not None:
        return tomllib.loads(raw.decode("utf-8")).get("tool", {}).get("tinybackend", {})
    # Fallback for Python < 3.11: the [tool.tinybackend] table is written with JSON-compatible values.
    config = {}
    in_table = False
    for line in raw.decode("utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            in_table = stripped == "[tool.tinybackend]"
            continue
        if in_table and "=" in stripped and not stripped.startswith("#"):
            key, _, value = stripped.partition("=")
            config[key.strip().strip('"')] = json.loads(value.strip())
    return config


def _mod(name):
    return re.sub(r"[-_.]+", "-", name).lower().replace("-", "_")


def _metadata(config):
    lines = [
        "Metadata-Version: 2.1",
        "Name: " + config["name"],
        "Version: " + config["version"],
    ]
    if config.get("requires-python"):
        lines.append("Requires-Python: " + config["requires-python"])
    for dep in config.get("deps", []):
        lines.append("Requires-Dist: " + dep)
    return "\n".join(lines) + "\n\n"


def _tag(config):
    if not config.get("c-extension"):
        return "py3-none-any"
    plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    if config.get("py-limited-api"):
        return "%s-abi3-%s" % (config["py-limited-api"], plat)
    interp = "cp%d%d" % sys.version_info[:2]
    abi = interp + ("t" if sysconfig.get_config_var("Py_GIL_DISABLED") else "")
    return "%s-%s-%s" % (interp, abi, plat)


def _wheel_file(config, tag):
    lines = [
        "Wheel-Version: 1.0",
        "Generator: tinybackend " + __version__,
        "Root-Is-Purelib: " + ("true" if tag.endswith("-any") else "false"),
        "Tag: " + tag,
    ]
    return "\n".join(lines) + "\n\n"


def _dist_info(config):
    return "%s-%s.dist-info" % (_mod(config["name"]), config["version"])


def _sources(config):
    """Yield (archive path, bytes) for the package sources (a .c source is not shipped)."""
    mod = _mod(config["name"])
    c_source = config.get("c-extension")
    for root, dirs, files in os.walk(mod):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for filename in sorted(files):
            path = os.path.join(root, filename).replace(os.sep, "/")
            if path == c_source or filename.endswith((".pyc", ".so", ".pyd")):
                continue
            with open(path, "rb") as f:
                yield path, f.read()


def _compile(config, tmpdir):
    source = config["c-extension"]
    ext_suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    limited = config.get("py-limited-api")
    defines = []
    if limited:
        ext_suffix = ".abi3.so"
        minor = int(limited[3:])
        # auditwheel reads the libc of an .abi3.so (no "-linux-gnu" in its name) from its
        # DT_NEEDED entries, and this tiny module calls nothing from libc by itself
        defines = ["-DPy_LIMITED_API=0x03%02x0000" % minor, "-Wl,--no-as-needed", "-lc"]
    module_path = os.path.splitext(source)[0]
    target = os.path.join(tmpdir, os.path.basename(module_path) + ext_suffix)
    cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    cmd = cc + [
        "-shared",
        "-fPIC",
        "-O2",
        "-I" + sysconfig.get_paths()["include"],
    ] + defines + [
        source,
        "-o",
        target,
    ]
    subprocess.run(cmd, check=True)
    with open(target, "rb") as f:
        return module_path.replace(os.sep, "/") + ext_suffix, f.read()


def _record_hash(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _write_wheel(path, dist_info, files):
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for arcname in sorted(files):
        writer.writerow([arcname, _record_hash(files[arcname]), str(len(files[arcname]))])
    writer.writerow([dist_info + "/RECORD", "", ""])
    entries = dict(files)
    entries[dist_info + "/RECORD"] = record.getvalue().encode("utf-8")
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for arcname in sorted(entries, key=lambda n: (n.endswith("/RECORD"), n)):
            info = zipfile.ZipInfo(arcname, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o755 if arcname.endswith(".so") else 0o644) << 16
            archive.writestr(info, entries[arcname])


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    config = _read_config()
    dist_info = _dist_info(config)
    target = os.path.join(metadata_directory, dist_info)
    os.makedirs(target, exist_ok=True)
    with open(os.path.join(target, "METADATA"), "w", encoding="utf-8") as f:
        f.write(_metadata(config))
    with open(os.path.join(target, "WHEEL"), "w", encoding="utf-8") as f:
        f.write(_wheel_file(config, _tag(config)))
    return dist_info


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    config = _read_config()
    tag = _tag(config)
    dist_info = _dist_info(config)
    files = dict(_sources(config))
    if config.get("c-extension"):
        with tempfile.TemporaryDirectory(prefix="tinybackend-") as tmpdir:
            arcname, data = _compile(config, tmpdir)
        files[arcname] = data
    files[dist_info + "/METADATA"] = _metadata(config).encode("utf-8")
    files[dist_info + "/WHEEL"] = _wheel_file(config, tag).encode("utf-8")
    filename = "%s-%s-%s.whl" % (_mod(config["name"]), config["version"], tag)
    _write_wheel(os.path.join(wheel_directory, filename), dist_info, files)
    return filename


def build_sdist(sdist_directory, config_settings=None):
    config = _read_config()
    base = "%s-%s" % (_mod(config["name"]), config["version"])
    filename = base + ".tar.gz"
    with tarfile.open(os.path.join(sdist_directory, filename), "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for root, dirs, files in os.walk("."):
            dirs[:] = sorted(d for d in dirs if d not in ("__pycache__", "build", "dist"))
            for name in sorted(files):
                path = os.path.normpath(os.path.join(root, name))
                tar.add(path, arcname=base + "/" + path.replace(os.sep, "/"))
    return filename
'''


def make_backend_wheel(directory: Path, version: str = "1.0") -> Path:
    """Write the wheel of ``tinybackend`` (the stdlib-only PEP 517 backend) and return its path."""
    source = BACKEND_SOURCE.replace("@VERSION@", _version(version))
    return make_wheel(
        directory,
        "tinybackend",
        version,
        files={"tinybackend/__init__.py": source},
        summary="A tiny PEP 517 build backend for tests",
    )


def _toml_table(values: Mapping[str, object]) -> str:
    # JSON scalars and arrays of strings are valid TOML, and tinybackend's fallback parser reads JSON.
    return "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())


def _add_tar_member(tar: tarfile.TarFile, arcname: str, data: bytes) -> None:
    info = tarfile.TarInfo(arcname)
    info.size = len(data)
    info.mtime = _TAR_MTIME
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def make_sdist(
    directory: Path,
    name: str,
    version: str,
    *,
    deps: Sequence[str] = (),
    requires_python: str | None = None,
    dynamic_deps: bool = False,
    backend: str = "tinybackend",
    backend_requires: Sequence[str] | None = None,
    c_extension: bool = False,
    py_limited_api: str | None = None,
    metadata_version: str = "2.2",
    project: Mapping[str, object] | None = None,
) -> Path:
    """Write a ``.tar.gz`` sdist built by *backend* (tinybackend by default) and return its path.

    ``PKG-INFO`` lists *deps* unless *dynamic_deps*, in which case it says ``Dynamic: Requires-Dist``
    and only the backend (from ``[tool.tinybackend] deps``) puts them in the built wheel. With
    *c_extension* the sdist carries ``{module}/_speedup.c`` (``add(a, b)``) that tinybackend
    compiles into a platform wheel for the building interpreter; *py_limited_api* (``"cp38"``,
    with *c_extension*) compiles it for the stable ABI into one ``cp38-abi3`` wheel that
    serves every later CPython. *project* writes a PEP 621
    ``[project]`` table (scalars and string lists; ``optional-dependencies`` as a mapping).
    """
    directory.mkdir(parents=True, exist_ok=True)
    mod = module_name(name)
    ver = _version(version)
    base = f"{mod}-{ver}"
    requires = list(backend_requires) if backend_requires is not None else ["tinybackend"]
    config: dict[str, object] = {"name": name, "version": ver, "deps": list(deps)}
    if requires_python:
        config["requires-python"] = requires_python
    if c_extension:
        config["c-extension"] = f"{mod}/_speedup.c"
    if py_limited_api:
        config["py-limited-api"] = py_limited_api
    pyproject = (
        "[build-system]\n"
        f"requires = {json.dumps(requires)}\n"
        f"build-backend = {json.dumps(backend)}\n"
        "\n[tool.tinybackend]\n" + _toml_table(config)
    )
    if project is not None:
        table = {k: v for k, v in project.items() if k != "optional-dependencies"}
        pyproject += "\n[project]\n" + _toml_table(table)
        optional = project.get("optional-dependencies")
        if isinstance(optional, Mapping):
            pyproject += "\n[project.optional-dependencies]\n" + _toml_table(optional)
    pkg_info = metadata_text(
        name,
        ver,
        deps=() if dynamic_deps else deps,
        requires_python=requires_python,
        metadata_version=metadata_version,
        dynamic=("Requires-Dist",) if dynamic_deps else (),
    )
    members: dict[str, bytes] = {
        f"{base}/PKG-INFO": pkg_info.encode("utf-8"),
        f"{base}/pyproject.toml": pyproject.encode("utf-8"),
        f"{base}/{mod}/__init__.py": f'__version__ = "{ver}"\n'.encode(),
    }
    if c_extension:
        members[f"{base}/{mod}/_speedup.c"] = SPEEDUP_C.lstrip().encode("utf-8")
    path = directory / f"{base}.tar.gz"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for arcname in sorted(members):
            _add_tar_member(tar, arcname, members[arcname])
    compressed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0) as gz:
        gz.write(raw.getvalue())
    path.write_bytes(compressed.getvalue())
    return path
