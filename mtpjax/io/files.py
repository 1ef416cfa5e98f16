"""Atomic file writes and JSON: the one place where mtpjax writes a file.

Every writer goes through :func:`atomic_path` (or :func:`atomic_open`, :func:`atomic_write`, :func:`write_json`):
the new content is written to a temporary file in the destination's folder (``.NAME.<random>.tmp``), flushed and
``fsync``-ed, then renamed over the destination with ``os.replace`` (atomic on POSIX and Windows), and the folder is
``fsync``-ed (best effort). A writer that fails part-way (a full disk, a kill, a bad value) leaves the old file as it
was and removes its temporary: a reader sees the old file or the new one, never half of one.

A new file gets the usual permissions (``0o666`` less the umask); a replaced file keeps its permissions. Missing
parent folders are created. A symbolic link is followed (its target is replaced, the link stays). A destination that
exists and is not a regular file (``/dev/stdout``, a named pipe) cannot be replaced and is written directly.
"""
from __future__ import annotations

import json
import math
import os
import platform
import secrets
import stat
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import numpy as np

from ..errors import MtpjaxError

__all__ = ["atomic_path", "atomic_open", "atomic_write", "json_safe", "dumps_json", "write_json", "read_json",
           "versions", "cpu_model", "machine", "PACKAGES"]

#: Packages whose versions a run's record holds (see :func:`versions`).
PACKAGES = ("mtpjax", "jax", "jaxlib", "equinox", "numpy", "scipy", "ase", "pyxtal", "spglib", "vesin", "phonopy", "dask",
            "distributed")

_TEXT_MODES = ("w", "wt")
_BINARY_MODES = ("wb",)


def _fsync_dir(folder: Path) -> None:
    """fsync a folder so that a rename in it survives a crash (best effort: not every platform allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _new_temporary(path: Path) -> Path:
    """Create an empty, unique temporary file beside ``path`` (permissions of ``path`` if it exists)."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        try:
            if path.exists():
                os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
        except OSError:
            pass
        finally:
            os.close(fd)
        return tmp


@contextmanager
def atomic_path(path):
    """Context manager yielding a temporary path to write instead of ``path``; on success it becomes ``path``.

    For writers that want a file name (``ase.io.write``, a library's ``save(filename)``). On a clean exit the
    temporary is fsync-ed and renamed to ``path``; on any exception it is removed and ``path`` is untouched.
    (For a destination that is not a regular file, ``path`` itself is yielded.)
    """
    path = Path(path)
    if path.is_symlink():
        path = path.resolve()
    if path.exists() and not path.is_file():  # a device or a pipe: nothing to rename over
        yield path
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temporary(path)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDWR)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


@contextmanager
def atomic_open(path, mode: str = "w", *, encoding: str = "utf-8", newline: str | None = None):
    """Context manager yielding a file object opened for writing (``mode`` ``"w"`` text or ``"wb"`` binary) whose
    content replaces ``path`` atomically on a clean exit (see the module's docstring). Text is written with
    ``encoding`` (UTF-8 by default) and ``newline`` as in :func:`open`."""
    if mode in _TEXT_MODES:
        kw = {"encoding": encoding, "newline": newline}
    elif mode in _BINARY_MODES:
        kw = {}
    else:
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', got {mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kw) as f:
            yield f
            f.flush()
            if stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                os.fsync(f.fileno())


def atomic_write(path, data: bytes | str, *, encoding: str = "utf-8") -> Path:
    """Replace ``path``'s content with ``data`` (bytes, or str encoded with ``encoding``) atomically; returns the
    path. Newlines in a str are written as they are (no translation)."""
    if isinstance(data, str):
        data = data.encode(encoding)
    elif not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"atomic_write: data must be bytes or str, got {type(data).__name__}")
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def json_safe(x):
    """A JSON-serialisable copy of ``x``: dict keys to str, tuples to lists, numpy scalars and arrays to Python,
    Paths to str, NaN and ±inf to None, anything else unknown to ``str(x)``."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, np.ndarray):
        return json_safe(x.tolist())
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, Path):
        return str(x)
    if x is None or isinstance(x, (str, int)):
        return x
    return str(x)


def dumps_json(obj, *, indent: int | None = 2, sort_keys: bool = False) -> str:
    """``obj`` made :func:`json_safe`, as strict JSON text (no NaN) ending in a newline. Non-ASCII characters are
    escaped (``"\\u00c5"``), so that any reader, whatever its locale's encoding, reads the file."""
    return json.dumps(json_safe(obj), indent=indent, sort_keys=sort_keys, allow_nan=False) + "\n"


def write_json(path, obj, *, indent: int | None = 2, sort_keys: bool = False) -> Path:
    """Write ``obj`` (made :func:`json_safe`) as JSON (:func:`dumps_json`) atomically; returns the path."""
    return atomic_write(path, dumps_json(obj, indent=indent, sort_keys=sort_keys))


def read_json(path, what: str = "file"):
    """Read a JSON file (UTF-8). A corrupted file raises :class:`mtpjax.errors.MtpjaxError` naming it and ``what``
    it is; a missing file raises FileNotFoundError."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise MtpjaxError(f"{path}: corrupted {what} ({err}); delete it (or the whole folder) to start afresh") from None


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux; else what :mod:`platform` says)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine() -> str:
    """One line describing this machine for a benchmark's record: CPU model, cores, memory (GiB), host name."""
    try:
        mem = f", {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM"
    except (ValueError, OSError, AttributeError):
        mem = ""
    return f"{cpu_model()}, {os.cpu_count()} cores{mem}, host `{platform.node()}`"


def versions(packages=PACKAGES, device: bool = False) -> dict:
    """Versions of Python, the platform and ``packages`` (None where not installed), for the record of a run
    (``manifest.json``, ``metrics.json``). ``device=True`` adds JAX's first device (initialises JAX's backend)."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for p in packages:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    if device:
        try:
            import jax

            out["device"] = str(jax.devices()[0])
        except Exception:  # noqa: BLE001  (a record without the device is still a record)
            out["device"] = None
    return out
