"""MLIP's configuration files (``.cfg``): reading, writing and conversion to/from ``ase.Atoms``.

A file holds any number of blocks::

    BEGIN_CFG
     Size
        N
     Supercell                       (optional; rows are lattice vectors, Å; also spelled SuperCell)
        ax ay az
        bx by bz
        cx cy cz
     AtomData:  id type cartes_x cartes_y cartes_z fx fy fz [extra columns, e.g. nbh_grades]
        ...N rows (Å, eV/Å; direct_x/y/z fractional coordinates are accepted too)
     Energy                          (eV; the value on the next line or on the same line)
        E
     PlusStress:  xx yy zz yz xz xy  (virial in eV, = -V·σ; columns in any labelled order)
        ...6 numbers
     Feature   key value             (any number, keys may repeat)
    END_CFG

Indentation is free. Every malformed input raises :class:`mtpjax.errors.FormatError` naming the file
and the 1-based line.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np

from mtpjax.errors import FormatError, StructureError

from ..units import stress_to_voigt
from .files import atomic_open

__all__ = [
    "Configuration", "read_cfg", "iter_cfg", "write_cfg",
    "configuration_to_atoms", "atoms_to_configuration", "STRESS_ORDER",
]

#: MLIP's (and ASE's Voigt) order of the six stress/virial components.
STRESS_ORDER = ("xx", "yy", "zz", "yz", "xz", "xy")
_POS_COLS = ("cartes_x", "cartes_y", "cartes_z")
_DIRECT_COLS = ("direct_x", "direct_y", "direct_z")
_FORCE_COLS = ("fx", "fy", "fz")
_KEYWORDS = "Size, Supercell, AtomData:, Energy, PlusStress:, Feature, END_CFG"


def _opt_equal(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool(np.array_equal(a, b))


@dataclass(eq=False)
class Configuration:
    """One atomic configuration as MLIP stores it.

    ``types`` (N,) int: MLIP species indices. ``positions`` (N, 3) Cartesian, Å. ``cell`` (3, 3) Å with
    rows the lattice vectors, or None for a non-periodic configuration (no Supercell block).
    ``energy`` eV or None. ``forces`` (N, 3) eV/Å or None. ``plus_stress`` (6,) the virial in eV in
    MLIP's order xx yy zz yz xz xy (PlusStress = -V·σ, σ the stress in eV/Å³) or None.
    ``features``: ordered (key, value) string pairs; keys may repeat. ``ids`` (N,) int, default 1..N.
    ``extra_columns``: further AtomData columns by name (e.g. ``nbh_grades``), each (N,) float.
    Compare with ``==`` (exact, element by element).
    """

    types: np.ndarray
    positions: np.ndarray
    cell: np.ndarray | None = None
    energy: float | None = None
    forces: np.ndarray | None = None
    plus_stress: np.ndarray | None = None
    features: list = field(default_factory=list)
    ids: np.ndarray | None = None
    extra_columns: dict = field(default_factory=dict)

    def __post_init__(self):
        self.positions = np.asarray(self.positions, dtype=np.float64)
        if self.positions.ndim != 2 or self.positions.shape[1] != 3:
            raise ValueError(f"positions: expected shape (N, 3), got {self.positions.shape}")
        n = self.positions.shape[0]
        self.types = np.asarray(self.types).astype(np.int64, casting="same_kind").reshape(-1)
        if self.types.shape != (n,):
            raise ValueError(f"types: expected {n} entries (one per position), got {self.types.shape[0]}")
        if self.cell is not None:
            self.cell = np.asarray(self.cell, dtype=np.float64)
            if self.cell.shape != (3, 3):
                raise ValueError(f"cell: expected shape (3, 3), got {self.cell.shape}")
        if self.energy is not None:
            self.energy = float(self.energy)
        if self.forces is not None:
            self.forces = np.asarray(self.forces, dtype=np.float64)
            if self.forces.shape != (n, 3):
                raise ValueError(f"forces: expected shape ({n}, 3), got {self.forces.shape}")
        if self.plus_stress is not None:
            self.plus_stress = np.asarray(self.plus_stress, dtype=np.float64)
            if self.plus_stress.shape != (6,):
                raise ValueError(f"plus_stress: expected 6 numbers (xx yy zz yz xz xy), got {self.plus_stress.shape}")
        self.features = [(str(k), str(v)) for k, v in self.features]
        if self.ids is None:
            self.ids = np.arange(1, n + 1, dtype=np.int64)
        else:
            self.ids = np.asarray(self.ids).astype(np.int64, casting="same_kind").reshape(-1)
            if self.ids.shape != (n,):
                raise ValueError(f"ids: expected {n} entries, got {self.ids.shape[0]}")
        extra = {}
        for name, col in dict(self.extra_columns).items():
            col = np.asarray(col, dtype=np.float64).reshape(-1)
            if col.shape != (n,):
                raise ValueError(f"extra column {name!r}: expected {n} entries, got {col.shape[0]}")
            extra[str(name)] = col
        self.extra_columns = extra

    @property
    def natoms(self) -> int:
        return int(self.positions.shape[0])

    def __len__(self) -> int:
        return self.natoms

    @property
    def volume(self) -> float | None:
        """Cell volume in Å³ (None without a cell)."""
        return None if self.cell is None else float(abs(np.linalg.det(self.cell)))

    def feature(self, key: str, default=None):
        """The value (str) of the first feature named ``key``, else ``default``."""
        for k, v in self.features:
            if k == key:
                return v
        return default

    def __eq__(self, other):
        if not isinstance(other, Configuration):
            return NotImplemented
        return (
            _opt_equal(self.types, other.types) and _opt_equal(self.positions, other.positions)
            and _opt_equal(self.cell, other.cell) and self.energy == other.energy
            and _opt_equal(self.forces, other.forces) and _opt_equal(self.plus_stress, other.plus_stress)
            and self.features == other.features and _opt_equal(self.ids, other.ids)
            and self.extra_columns.keys() == other.extra_columns.keys()
            and all(_opt_equal(v, other.extra_columns[k]) for k, v in self.extra_columns.items())
        )


# ====================================================================== reading
class _Lines:
    """Numbered lines with one-line push-back."""

    def __init__(self, f):
        self._it = enumerate(f, start=1)
        self._back = None
        self.last = 0

    def next(self):
        """(lineno, stripped text) or None at end of file."""
        if self._back is not None:
            item, self._back = self._back, None
            return item
        try:
            n, raw = next(self._it)
        except StopIteration:
            return None
        self.last = n
        return n, raw.strip()

    def push(self, item):
        self._back = item


def _num(path, line, tok, what):
    try:
        v = float(tok)
    except ValueError:
        raise FormatError(f"{what}: expected a number, got {tok!r}", path=path, line=line) from None
    if not math.isfinite(v):
        raise FormatError(f"{what}: expected a finite number, got {tok!r}", path=path, line=line)
    return v


def _int(path, line, tok, what):
    try:
        return int(tok)
    except ValueError:
        raise FormatError(f"{what}: expected an integer, got {tok!r}", path=path, line=line) from None


def _is_number(tok: str) -> bool:
    try:
        float(tok)
        return True
    except ValueError:
        return False


def iter_cfg(path) -> Iterator[Configuration]:
    """Yield the configurations of an MLIP ``.cfg`` file one by one (see :func:`read_cfg`)."""
    spath = os.fspath(path)
    with open(path, "r", encoding="utf-8", errors="strict") as f:
        src = _Lines(f)
        try:
            while True:
                item = src.next()
                if item is None:
                    return
                lineno, s = item
                if not s:
                    continue
                if s.split()[0] != "BEGIN_CFG":
                    raise FormatError(f"expected BEGIN_CFG, got {s[:40]!r}", path=spath, line=lineno)
                yield _read_one(src, spath, lineno)
        except UnicodeDecodeError as e:
            raise FormatError(f"expected UTF-8 text ({e.reason})", path=spath, line=_bad_utf8_line(path)) from None


def _bad_utf8_line(path) -> int | None:
    with open(path, "rb") as f:
        data = f.read()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        return data.count(b"\n", 0, e.start) + 1
    return None


def read_cfg(path) -> list[Configuration]:
    """Read all configurations of an MLIP ``.cfg`` file.

    Units: positions and cell in Å, energy in eV, forces in eV/Å, PlusStress (virial) in eV.
    """
    return list(iter_cfg(path))


def _next_data_line(src, path, after_line, what):
    item = src.next()
    while item is not None and not item[1]:
        item = src.next()
    if item is None:
        raise FormatError(f"file ends where {what} was expected (after line {after_line})", path=path,
                          line=src.last or after_line)
    return item


def _read_one(src: _Lines, path: str, begin_line: int) -> Configuration:  # noqa: C901 (one state machine)
    size = size_line = None
    cell = None
    cols = atom_line = None
    rows: list = []
    energy = None
    plus_stress = None
    features = []
    seen = {}

    def once(kw, line):
        if kw in seen:
            raise FormatError(f"{kw} appears twice in one configuration (first at line {seen[kw]})",
                              path=path, line=line)
        seen[kw] = line

    while True:
        item = src.next()
        if item is None:
            raise FormatError(f"file ends inside the configuration begun at line {begin_line}: expected END_CFG",
                              path=path, line=max(src.last, 1))
        lineno, s = item
        if not s:
            continue
        toks = s.split()
        kw = toks[0]
        key = kw.rstrip(":").lower()
        if key == "end_cfg":
            break
        if key == "begin_cfg":
            raise FormatError(f"expected END_CFG for the configuration begun at line {begin_line} "
                              f"before the next BEGIN_CFG", path=path, line=lineno)
        if key == "size":
            once("Size", lineno)
            if len(toks) > 1:
                vals, vline = toks[1:], lineno
            else:
                vline, v = _next_data_line(src, path, lineno, "the number of atoms after Size")
                vals = v.split()
            if len(vals) != 1:
                raise FormatError(f"Size: expected one integer, got {' '.join(vals)!r}", path=path, line=vline)
            size, size_line = _int(path, vline, vals[0], "Size"), vline
            if size < 1:
                raise FormatError(f"Size: expected a positive number of atoms, got {size}", path=path, line=vline)
        elif key == "supercell":
            once("Supercell", lineno)
            cell = np.empty((3, 3))
            for k in range(3):
                vline, v = _next_data_line(src, path, lineno, f"lattice vector {k + 1} of 3")
                vt = v.split()
                if len(vt) != 3 or not _is_number(vt[0]):
                    raise FormatError(f"Supercell: expected 3 numbers for lattice vector {k + 1} of 3, got {v[:60]!r}",
                                      path=path, line=vline)
                cell[k] = [_num(path, vline, t, f"Supercell vector {k + 1}") for t in vt]
        elif key == "atomdata":
            once("AtomData", lineno)
            cols, atom_line = toks[1:], lineno
            if not cols:
                raise FormatError("AtomData: expected column names (id type cartes_x cartes_y cartes_z ...)",
                                  path=path, line=lineno)
            if len(set(cols)) != len(cols):
                raise FormatError(f"AtomData: duplicate column names in {' '.join(cols)!r}", path=path, line=lineno)
            if "type" not in cols:
                raise FormatError("AtomData: expected a 'type' column", path=path, line=lineno)
            has_cart = all(c in cols for c in _POS_COLS)
            has_direct = all(c in cols for c in _DIRECT_COLS)
            if not (has_cart or has_direct):
                raise FormatError("AtomData: expected columns cartes_x cartes_y cartes_z (or direct_x direct_y "
                                  "direct_z)", path=path, line=lineno)
            nf = sum(c in cols for c in _FORCE_COLS)
            if nf not in (0, 3):
                raise FormatError("AtomData: expected all of fx fy fz or none", path=path, line=lineno)
            ncol = len(cols)
            while True:
                item = src.next()
                if item is None:
                    break
                rl, r = item
                rt = r.split()
                if not rt or not _is_number(rt[0]):
                    src.push(item)
                    break
                if len(rt) != ncol:
                    raise FormatError(f"atom row {len(rows) + 1}: expected {ncol} values ({' '.join(cols)}), "
                                      f"got {len(rt)}", path=path, line=rl)
                rows.append((rl, rt))
                if size is not None and len(rows) > size:
                    raise FormatError(f"atom row {len(rows)}: Size (line {size_line}) says {size} atoms but "
                                      f"AtomData has more rows", path=path, line=rl)
            if size is None:
                raise FormatError("AtomData: expected Size before AtomData", path=path, line=lineno)
            if len(rows) != size:
                if item is None:
                    raise FormatError(f"file ends after atom row {len(rows)} of {size} (configuration begun at "
                                      f"line {begin_line}): expected more atom rows and END_CFG",
                                      path=path, line=max(src.last, 1))
                nxt = item[0]
                raise FormatError(f"AtomData has {len(rows)} rows but Size (line {size_line}) says {size}: expected "
                                  f"atom row {len(rows) + 1}", path=path, line=nxt)
        elif key == "energy":
            once("Energy", lineno)
            if len(toks) > 1:
                vals, vline = toks[1:], lineno
            else:
                vline, v = _next_data_line(src, path, lineno, "the energy value")
                vals = v.split()
            if len(vals) != 1:
                raise FormatError(f"Energy: expected one number, got {' '.join(vals)[:60]!r}", path=path, line=vline)
            energy = _num(path, vline, vals[0], "Energy")
        elif key == "plusstress":
            once("PlusStress", lineno)
            labels = toks[1:] or list(STRESS_ORDER)
            if sorted(labels) != sorted(STRESS_ORDER):
                raise FormatError(f"PlusStress: expected the labels xx yy zz yz xz xy (any order), got "
                                  f"{' '.join(labels)!r}", path=path, line=lineno)
            vline, v = _next_data_line(src, path, lineno, "the 6 PlusStress values")
            vals = v.split()
            if len(vals) != 6:
                raise FormatError(f"PlusStress: expected 6 numbers, got {len(vals)}", path=path, line=vline)
            ps = dict(zip(labels, (_num(path, vline, t, f"PlusStress {lab}") for lab, t in zip(labels, vals))))
            plus_stress = np.array([ps[c] for c in STRESS_ORDER])
        elif key == "feature":
            parts = s.split(None, 2)
            if len(parts) < 2:
                raise FormatError("Feature: expected 'Feature key value'", path=path, line=lineno)
            features.append((parts[1], parts[2].strip() if len(parts) > 2 else ""))
        else:
            if _is_number(kw):
                raise FormatError(f"unexpected number row; expected one of {_KEYWORDS}"
                                  + (f" (Size at line {size_line} is {size})" if size is not None else ""),
                                  path=path, line=lineno)
            raise FormatError(f"unknown keyword {kw!r}; expected one of {_KEYWORDS}", path=path, line=lineno)
    end_line = lineno

    if size is None:
        raise FormatError(f"configuration begun at line {begin_line} has no Size", path=path, line=end_line)
    if cols is None:
        raise FormatError(f"configuration begun at line {begin_line} has no AtomData", path=path, line=end_line)

    # convert atom rows column by column
    n = size
    ci = {c: k for k, c in enumerate(cols)}
    table = [rt for _, rt in rows]

    def column(name, conv):
        k = ci[name]
        out = []
        for j, rt in enumerate(table):
            out.append(conv(path, rows[j][0], rt[k], f"AtomData column {name}"))
        return out

    types = np.array(column("type", _int), dtype=np.int64)
    bad = np.flatnonzero(types < 0)
    if bad.size:
        raise FormatError(f"AtomData: expected a type >= 0, got {types[bad[0]]}", path=path, line=rows[bad[0]][0])
    ids = np.array(column("id", _int), dtype=np.int64) if "id" in ci else None
    if all(c in ci for c in _POS_COLS):
        pos = np.array([column(c, _num) for c in _POS_COLS]).T.reshape(n, 3)
    else:
        if cell is None:
            raise FormatError("AtomData: direct (fractional) coordinates need a Supercell", path=path, line=atom_line)
        frac = np.array([column(c, _num) for c in _DIRECT_COLS]).T.reshape(n, 3)
        pos = frac @ cell
    forces = np.array([column(c, _num) for c in _FORCE_COLS]).T.reshape(n, 3) if "fx" in ci else None
    known = set(_POS_COLS) | set(_DIRECT_COLS) | set(_FORCE_COLS) | {"id", "type"}
    extra = {c: np.array(column(c, _num)) for c in cols if c not in known}
    return Configuration(types=types, positions=pos, cell=cell, energy=energy, forces=forces,
                         plus_stress=plus_stress, features=features, ids=ids, extra_columns=extra)


# ====================================================================== writing
_FMT = {
    # MLIP's printed digits (as `mlp calculate_efs` writes them)
    "mlip": dict(cell=("    %13.6f", " %13.6f", " %13.6f"), pos=(" %14.6f", " %13.6f", " %13.6f"),
                 force=(" %12.6f", " %11.6f", " %11.6f"), extra=" %13.6f", energy="%24.12f",
                 stress="    " + "".join([" %11.5f"] * 6)),
    # enough digits to read back every float64 exactly
    "full": dict(cell=("    %24.16e", " %24.16e", " %24.16e"), pos=(" %24.16e", " %24.16e", " %24.16e"),
                 force=(" %24.16e", " %24.16e", " %24.16e"), extra=" %24.16e", energy="    %.16e",
                 stress="    " + "".join([" %24.16e"] * 6)),
}
_ATOM_HEADER = " AtomData:  id type       cartes_x      cartes_y      cartes_z"
_FORCE_HEADER = "           fx          fy          fz"
_STRESS_HEADER = " PlusStress:  xx          yy          zz          yz          xz          xy"


def _format_cfg(c: Configuration, fmt: dict) -> str:
    out = ["BEGIN_CFG", " Size", f"    {c.natoms}"]
    if c.cell is not None:
        out.append(" Supercell")
        cf = "".join(fmt["cell"])
        out += [cf % tuple(row) for row in c.cell.tolist()]
    header = _ATOM_HEADER + (_FORCE_HEADER if c.forces is not None else "")
    names = list(c.extra_columns)
    for name in names:
        if not name or any(ch.isspace() for ch in name):
            raise ValueError(f"extra column name {name!r} must be a non-empty word")
        header += " " + name.rjust(13)
    out.append(header)
    rf = "%14d %4d" + "".join(fmt["pos"]) + ("".join(fmt["force"]) if c.forces is not None else "") \
        + fmt["extra"] * len(names)
    for i, (idx, typ) in enumerate(zip(c.ids.tolist(), c.types.tolist())):
        vals = [idx, typ] + c.positions[i].tolist()
        if c.forces is not None:
            vals += c.forces[i].tolist()
        vals += [c.extra_columns[nm][i] for nm in names]
        out.append(rf % tuple(vals))
    if c.energy is not None:
        out += [" Energy", fmt["energy"] % c.energy]
    if c.plus_stress is not None:
        out += [_STRESS_HEADER, fmt["stress"] % tuple(c.plus_stress.tolist())]
    for k, v in c.features:
        if not k or any(ch.isspace() for ch in k):
            raise ValueError(f"feature key {k!r} must be a non-empty word")
        if "\n" in v or "\r" in v:
            raise ValueError(f"feature {k!r}: the value must be one line")
        out.append(f" Feature   {k}\t{v}")
    out += ["END_CFG", ""]
    return "\n".join(out) + "\n"


def write_cfg(configs: Configuration | Iterable[Configuration], path, precision: str = "mlip") -> None:
    """Write configurations in MLIP's ``calculate_efs`` output layout.

    ``precision="mlip"`` prints MLIP's digits (positions/cell/forces ``%.6f`` Å and eV/Å, energy
    ``%.12f`` eV, PlusStress ``%.5f`` eV); ``precision="full"`` prints every float as ``%.16e`` so that
    ``read_cfg(path) == configs`` exactly. Absent quantities (cell, forces, energy, stress) are omitted.
    The file is replaced atomically: a failed write (a bad configuration, a full disk) leaves the old one.
    """
    if precision not in _FMT:
        raise ValueError(f"precision must be 'mlip' or 'full', got {precision!r}")
    if isinstance(configs, Configuration):
        configs = [configs]
    fmt = _FMT[precision]
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as f:
        for c in configs:
            f.write(_format_cfg(c, fmt))


# =================================================================== conversion
def configuration_to_atoms(cfg: Configuration, species: list[str] | None = None):
    """Convert to ``ase.Atoms``.

    Type k becomes element ``species[k]``; with ``species=None`` a dummy element of atomic number
    k + 1 (type 0 → H, 1 → He, ...). The MLIP types are kept in ``atoms.arrays['mlip_type']`` (and
    non-default ids in ``'mlip_id'``, extra columns as ``'mlip_<name>'``), features as a list of
    (key, value) pairs in ``atoms.info['mlip_features']``. pbc is True on all axes when a cell is
    present, else False. Energy (eV), forces (eV/Å) and stress (eV/Å³, ASE's sign and Voigt order
    xx yy zz yz xz xy, = -PlusStress/volume) go to a ``SinglePointCalculator``; PlusStress of a
    configuration without cell is kept in ``atoms.info['mlip_plus_stress']``.
    """
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.data import atomic_numbers

    types = cfg.types
    if species is None:
        numbers = types + 1
    else:
        species = list(species)
        for s in species:
            if s not in atomic_numbers:
                raise ValueError(f"species {species}: {s!r} is not a chemical symbol")
        bad = np.flatnonzero(types >= len(species))
        if bad.size:
            raise StructureError(f"atom {int(bad[0])} has type {int(types[bad[0]])} but only {len(species)} species "
                                 f"are given: {species}")
        numbers = np.array([atomic_numbers[species[t]] for t in types.tolist()], dtype=int)
    periodic = cfg.cell is not None
    atoms = Atoms(numbers=numbers, positions=cfg.positions.copy(),
                  cell=cfg.cell.copy() if periodic else np.zeros((3, 3)), pbc=periodic)
    atoms.arrays["mlip_type"] = types.copy()
    if not np.array_equal(cfg.ids, np.arange(1, cfg.natoms + 1)):
        atoms.arrays["mlip_id"] = cfg.ids.copy()
    for name, col in cfg.extra_columns.items():
        atoms.arrays[f"mlip_{name}"] = col.copy()
    if cfg.features:
        atoms.info["mlip_features"] = list(cfg.features)
    results = {}
    if cfg.energy is not None:
        results["energy"] = cfg.energy
    if cfg.forces is not None:
        results["forces"] = cfg.forces.copy()
    if cfg.plus_stress is not None:
        if periodic:
            results["stress"] = -cfg.plus_stress / cfg.volume
        else:
            atoms.info["mlip_plus_stress"] = cfg.plus_stress.copy()
    if results:
        atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def atoms_to_configuration(atoms, species: list[str] | None = None, index: int | None = None) -> Configuration:
    """Convert an ``ase.Atoms`` to a :class:`Configuration` (inverse of :func:`configuration_to_atoms`).

    Types come from ``atoms.arrays['mlip_type']`` if present, else from the position of each chemical
    symbol in ``species`` (StructureError naming the structure ``index`` for an element not listed).
    The cell is kept when any axis is periodic. Energy, forces and stress are taken from
    ``atoms.calc.results`` (stress eV/Å³ → PlusStress = -stress·volume, eV).
    """
    where = f"structure {index}" if index is not None else "structure"
    n = len(atoms)
    if "mlip_type" in atoms.arrays:
        types = np.asarray(atoms.arrays["mlip_type"], dtype=np.int64)
    elif species is not None:
        lookup = {s: k for k, s in enumerate(species)}
        syms = atoms.get_chemical_symbols()
        types = np.empty(n, dtype=np.int64)
        for i, s in enumerate(syms):
            if s not in lookup:
                raise StructureError(f"{where}: element {s!r} (atom {i}) is not among the species {list(species)}")
            types[i] = lookup[s]
    else:
        raise StructureError(f"{where}: no 'mlip_type' array; pass species=[...] to map chemical symbols to types")
    cell = None
    if atoms.pbc.any():
        cell = np.array(atoms.cell.array, dtype=np.float64)
        if abs(np.linalg.det(cell)) < 1e-12:
            raise StructureError(f"{where}: periodic but the cell has zero volume")
    calc = getattr(atoms, "calc", None)
    results = dict(getattr(calc, "results", {}) or {}) if calc is not None else {}
    energy = results.get("energy")
    forces = results.get("forces")
    plus_stress = None
    if results.get("stress") is not None and cell is not None:
        st = np.asarray(results["stress"], dtype=np.float64)
        if st.shape == (3, 3):
            st = stress_to_voigt(st)
        plus_stress = -st * abs(np.linalg.det(cell))
    elif "mlip_plus_stress" in atoms.info:
        plus_stress = np.asarray(atoms.info["mlip_plus_stress"], dtype=np.float64)
    try:
        features = [(str(k), str(v)) for k, v in atoms.info.get("mlip_features", [])]
    except (TypeError, ValueError):
        raise StructureError(f"{where}: info['mlip_features'] must be a list of (key, value) pairs") from None
    ids = atoms.arrays.get("mlip_id")
    extra = {name[5:]: np.asarray(v, dtype=np.float64) for name, v in atoms.arrays.items()
             if name.startswith("mlip_") and name not in ("mlip_type", "mlip_id")}
    return Configuration(types=types, positions=atoms.positions.copy(), cell=cell,
                         energy=None if energy is None else float(energy),
                         forces=None if forces is None else np.asarray(forces, dtype=np.float64).copy(),
                         plus_stress=plus_stress, features=features, ids=ids, extra_columns=extra)
