"""Structures as lists of ``ase.Atoms`` from/to MLIP ``.cfg`` or extended XYZ (``.extxyz``/``.xyz``).

Units follow ASE: Å, eV, eV/Å, stress eV/Å³ (positive in tension).

Extended XYZ is written by ``ase.io.write``, except the per-atom arrays named in ``exact_arrays`` of
:func:`write_structures` (default :data:`EXACT_ARRAYS`: the force-constant labels ``arrays["hessian"]``, (N, 9N)
eV/Å², of :mod:`mtpjax.oracles.hessian`): those are written at full precision (the shortest decimal that reads back to
the same float64, 17 significant digits at most) as ordinary ``R`` columns, so that any extended-XYZ reader (ASE's
included) reads them back bit for bit, where ASE's own writer keeps 8 decimals.
"""
from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np

from mtpjax.errors import FormatError

from .cfg import atoms_to_configuration, configuration_to_atoms, read_cfg, write_cfg
from .files import atomic_path, atomic_write

__all__ = ["read_structures", "write_structures", "frame_lines", "extxyz_frame", "EXACT_ARRAYS"]

#: Per-atom arrays that :func:`write_structures` writes to extended XYZ at full precision (read back bit for bit):
#: the force constants (N, 9N) eV/Å² of :func:`mtpjax.oracles.hessian.attach_force_constants`.
EXACT_ARRAYS = ("hessian",)

_PROPERTIES = re.compile(r"(^|\s)Properties=(\S+)")


def _is_cfg(path, format) -> bool:
    return (format or "").lower() == "cfg" or (format is None and Path(path).suffix.lower() == ".cfg")


def _select(items: list, index):
    if isinstance(index, str):
        from ase.io.formats import string2index

        index = string2index(index)
    sel = items[index]
    return sel if isinstance(sel, list) else [sel]


def read_structures(path, index=":", species: list[str] | None = None, format: str | None = None) -> list:
    """Read structures as a list of ``ase.Atoms``.

    ``.cfg`` (or ``format="cfg"``) goes through :func:`mtpjax.io.cfg.read_cfg` and
    :func:`configuration_to_atoms` with ``species`` (type k → ``species[k]``; dummy elements if None).
    Anything else goes through ``ase.io.read``; its parse errors become FormatError naming the file and,
    for XYZ-like files, the line of the first malformed frame. ``index`` as in ASE (``":"``, int, slice).
    """
    if _is_cfg(path, format):
        return _select([configuration_to_atoms(c, species) for c in read_cfg(path)], index)
    import ase.io

    try:
        res = ase.io.read(path, index=index, format=format)
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except Exception as e:  # ASE raises many kinds (ValueError, IndexError, XYZError (an OSError), KeyError ...)
        line, frame = _locate_xyz_fault(path)
        if line is None:  # the frames are well formed: a bad value in a comment line (e.g. stress=abc)
            line, frame = _locate_bad_frame(path, format)
        where = f" (frame {frame})" if frame is not None else ""
        raise FormatError(f"cannot read as {format or 'ASE-readable'} structures{where}: "
                          f"{type(e).__name__}: {e}", path=os.fspath(path), line=line) from e
    return res if isinstance(res, list) else [res]


def _locate_xyz_fault(path):
    """Best-effort (line, frame) of the first structural fault of an (extended) XYZ file."""
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None, None
    n, i, frame = len(lines), 0, 0
    while i < n:
        if not lines[i].strip():
            if all(not ln.strip() for ln in lines[i:]):
                break
            return i + 1, frame
        toks = lines[i].split()
        try:
            natoms = int(toks[0])
            if len(toks) != 1 or natoms < 0:
                raise ValueError
        except ValueError:
            return i + 1, frame
        if i + 1 >= n:
            return n, frame
        ncol = None
        for k in range(natoms):
            j = i + 2 + k
            if j >= n:
                return n, frame
            t = lines[j].split()
            if len(t) < 4 or (ncol is not None and len(t) != ncol):
                return j + 1, frame
            ncol = len(t)
            try:
                [float(x) for x in t[1:4]]
            except ValueError:
                return j + 1, frame
        i += natoms + 2
        frame += 1
    return None, None


def _locate_bad_frame(path, format):
    """Best-effort (comment line, frame) of the first frame ASE cannot read, reading frame by frame."""
    import ase.io

    k = 0
    try:
        for _ in ase.io.iread(path, index=":", format=format):
            k += 1
    except Exception:
        lines = frame_lines(path)
        return (lines[k] if k < len(lines) else None), k
    return None, None


def frame_lines(path) -> list[int]:
    """The 1-based line number of the comment line of each frame of an (extended) XYZ file, best effort: the scan
    stops at the first frame whose atom count is not an integer."""
    out = []
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            i = 0
            lines = f.read().splitlines()
    except OSError:
        return out
    while i < len(lines):
        toks = lines[i].split()
        if not toks:
            i += 1
            continue
        try:
            natoms = int(toks[0])
        except ValueError:
            break
        out.append(i + 2)
        i += natoms + 2
    return out


def extxyz_frame(atoms, exact_arrays=EXACT_ARRAYS) -> str:
    """One extended-XYZ frame of ``atoms`` (text, newline-terminated), as ``ase.io.write(..., format="extxyz")``
    writes it (calculator results included), except that the float per-atom arrays named in ``exact_arrays`` are
    written at full precision (``repr`` of each float64: read back bit for bit) as the last columns."""
    import ase.io

    present = [k for k in exact_arrays if k in atoms.arrays]
    a = atoms
    extra = []
    if present:
        a = atoms.copy()
        a.calc = atoms.calc  # (Atoms.copy drops the calculator, whose results the writer saves)
        for k in present:
            arr = np.asarray(a.arrays.pop(k))
            if arr.dtype.kind != "f" or arr.ndim not in (1, 2) or arr.shape[0] != len(atoms):
                raise FormatError(f"per-atom array {k!r} must be floats of shape ({len(atoms)},) or ({len(atoms)}, m), "
                                  f"got {arr.dtype} {arr.shape}")
            extra.append((k, arr.reshape(len(atoms), -1).astype(np.float64)))
    buf = io.StringIO()
    ase.io.write(buf, a, format="extxyz")
    if not extra:
        return buf.getvalue()
    lines = buf.getvalue().splitlines()
    n = len(atoms)
    props = ":".join(f"{k}:R:{arr.shape[1]}" for k, arr in extra)
    comment, count = _PROPERTIES.subn(lambda m: f"{m.group(1)}Properties={m.group(2)}:{props}", lines[1], count=1)
    if count != 1 or len(lines) != n + 2:  # (ASE always writes Properties= and one line per atom)
        raise FormatError(f"unexpected extended-XYZ frame from ase.io.write ({len(lines)} lines for {n} atoms)")
    rows = [lines[2 + i] + " " + " ".join(" ".join(repr(float(x)) for x in arr[i]) for _, arr in extra) for i in range(n)]
    return "\n".join([lines[0], comment, *rows]) + "\n"


def write_structures(atoms_list, path, species: list[str] | None = None, format: str | None = None,
                     precision: str = "mlip", exact_arrays=EXACT_ARRAYS) -> None:
    """Write ``ase.Atoms`` (one or a list) to ``.cfg`` (types from ``species`` or ``arrays['mlip_type']``,
    ``precision`` as in :func:`write_cfg`) or, for any other suffix, with ``ase.io.write`` (format from the
    suffix unless given). Extended XYZ (``.extxyz``/``.xyz``) writes the per-atom arrays ``exact_arrays`` (default:
    the force constants ``hessian``) at full precision (:func:`extxyz_frame`). The file is replaced atomically: a
    failed write leaves the old one."""
    from ase import Atoms

    if isinstance(atoms_list, Atoms):
        atoms_list = [atoms_list]
    atoms_list = list(atoms_list)
    if _is_cfg(path, format):
        write_cfg([atoms_to_configuration(a, species, index=k) for k, a in enumerate(atoms_list)], path,
                  precision=precision)
        return
    import ase.io
    from ase.io.formats import filetype

    format = format or filetype(os.fspath(path), read=False)  # the temporary's name says nothing about the format
    if format in ("extxyz", "xyz") and any(k in a.arrays for a in atoms_list for k in exact_arrays):
        atomic_write(path, "".join(extxyz_frame(a, exact_arrays) for a in atoms_list))
        return
    with atomic_path(path) as tmp:
        ase.io.write(tmp, atoms_list, format=format)
