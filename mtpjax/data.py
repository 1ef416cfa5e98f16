"""Labelled training data: loading (extxyz, MLIP .cfg, ASE db), validation and packing into padded batches.

Units: energies eV, forces eV/Å, virial eV (MLIP's PlusStress, -V·σ). Any label may be missing for a
structure; its term is then skipped. Each structure carries a weight and a subset tag (RANDSPG, RATTLE, ...).
"""
from __future__ import annotations

import hashlib
import os
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .batch import Batch, max_neighbours, pack
from .errors import LabelWarning, MtpjaxError, StructureError
from .io.files import atomic_open
from .neighbors import bucket_size, check_structure, pairs
from .units import voigt_to_stress

#: Bumped whenever the packed layout changes (part of the cache key).
PACK_VERSION = 1


@dataclass
class Record:
    """One labelled structure. ``cell`` is zero along non-periodic axes; labels may be None."""

    name: str
    positions: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    types: np.ndarray
    energy: float | None = None
    forces: np.ndarray | None = None
    virial: np.ndarray | None = None
    weight: float = 1.0
    subset: str = ""

    @property
    def n_atoms(self) -> int:
        return len(self.positions)

    @property
    def volume(self) -> float | None:
        return abs(float(np.linalg.det(self.cell))) if self.pbc.all() else None


# --------------------------------------------------------------------------------------------------
# labels: which key of a file each label comes from

#: The labels and where ASE keeps them when they are stored under the standard names (``atoms.calc.results``).
STANDARD_KEYS = {"energy": ("energy", "free_energy"), "forces": ("forces",), "stress": ("stress",)}
#: Names that look like a label but are something else (weights, per-atom values, uncertainties, masks).
_NOT_A_LABEL = re.compile(r"weight|per_?atom|(^|_)std|sigma|error|uncert|mask", re.IGNORECASE)
#: Which non-standard keys may hold a label: info keys for energy and stress (or virial), arrays keys for forces.
_LOOKS_LIKE = {"energy": re.compile("energy", re.IGNORECASE), "forces": re.compile("force", re.IGNORECASE),
               "stress": re.compile("stress|virial", re.IGNORECASE)}


@dataclass
class LabelReport:
    """Where the labels of one file came from.

    ``sources[label]`` counts, for ``label`` in energy/forces/stress, the structures that took it from each key
    (``'energy'``, ``"info['REF_energy']"``, ``'PlusStress'`` ...); ``fallbacks`` lists the labels taken from a
    non-standard key (said loudly); ``unused`` the label-like keys present but not used (a standard key won).
    """

    path: str
    n_structures: int
    sources: dict = field(default_factory=lambda: {"energy": {}, "forces": {}, "stress": {}})
    fallbacks: list = field(default_factory=list)
    unused: dict = field(default_factory=dict)

    def count(self, label: str) -> int:
        return sum(self.sources[label].values())

    def add(self, label: str, source: str) -> None:
        self.sources[label][source] = self.sources[label].get(source, 0) + 1

    def summary(self) -> str:
        """One line: "train.extxyz: 400 structures; energy from 'energy' (400), forces from 'forces' (400), ..."."""
        parts = []
        for label, src in self.sources.items():
            if not src:
                parts.append(f"no {label}")
                continue
            keys = ", ".join(f"{k if k.startswith(('info', 'arrays')) else repr(k)} ({n})" for k, n in src.items())
            missing = self.n_structures - sum(src.values())
            parts.append(f"{label} from {keys}" + (f", missing in {missing}" if missing else ""))
        n = self.n_structures
        line = f"{self.path}: {n} structure{'s' * (n != 1)}; " + ", ".join(parts)
        if self.unused:
            line += "; not used: " + ", ".join(sorted(self.unused))
        return line


class RecordList(list):
    """A list of :class:`Record` that also carries the :class:`LabelReport` of the file it was loaded from
    (``labels``; None when built otherwise)."""

    labels: LabelReport | None = None


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def _where(label: str) -> str:
    return "arrays" if label == "forces" else "info"


def _label_lookup(atoms, label: str, key: str):
    """(value, source) stored under ``key`` for ``label``: calculator results first, then info (arrays for forces);
    (None, None) when absent. The source is the bare key for calculator results, else "info['key']"."""
    res = atoms.calc.results if atoms.calc is not None else {}
    if key in res:
        return res[key], key
    store = atoms.arrays if label == "forces" else atoms.info
    if key in store:
        return store[key], f"{_where(label)}[{key!r}]"
    return None, None


def _standard(atoms, label: str):
    """The standard key holding ``label`` (in the calculator's results or, for Atoms built in memory, under the
    same name in info/arrays), or None."""
    res = atoms.calc.results if atoms.calc is not None else {}
    store = atoms.arrays if label == "forces" else atoms.info
    return (next((key for key in STANDARD_KEYS[label] if key in res), None)
            or next((key for key in STANDARD_KEYS[label] if key in store), None))


def _candidates(atoms, label: str) -> list[str]:
    """Non-standard keys of ``atoms`` that look like they hold ``label`` (by name; forces also by shape)."""
    pattern = _LOOKS_LIKE[label]
    store = atoms.arrays if label == "forces" else atoms.info
    out = []
    for key, value in store.items():
        if (not isinstance(key, str) or key in STANDARD_KEYS[label] or not pattern.search(key)
                or _NOT_A_LABEL.search(key)):
            continue
        if label == "forces" and np.shape(value) != (len(atoms), 3):
            continue
        out.append(key)
    return out


def _resolve_keys(atoms_list, label_keys: dict | None, source: str, report: LabelReport) -> dict:
    """For each label, ``(key, explicit)``: the key to read it from, and whether it replaces the standard one.

    ``label_keys`` chooses explicitly ({'energy': 'REF_energy', 'forces': 'REF_forces', 'stress': 'REF_virial'}).
    Otherwise the standard key is used, and for structures without it, a key that is the only label-like candidate
    among them (recorded in ``report.fallbacks``); several candidates are an error naming them. ``(None, False)``:
    only the standard key.
    """
    label_keys = dict(label_keys or {})
    unknown = set(label_keys) - set(STANDARD_KEYS)
    if unknown:
        raise MtpjaxError(f"label_keys: unknown label(s) {', '.join(sorted(unknown))}; known: energy, forces, stress")
    chosen = {}
    for label in STANDARD_KEYS:
        if label_keys.get(label) is not None:
            key = label_keys[label]
            if not any(_label_lookup(a, label, key)[0] is not None for a in atoms_list):
                raise MtpjaxError(f"{source}: no structure has the {label} key {key!r} given in label_keys")
            chosen[label] = (key, True)
            continue
        found, unused = {}, set()
        for a in atoms_list:
            if _standard(a, label) is None:
                for key in _candidates(a, label):
                    found[key] = found.get(key, 0) + 1
            else:
                unused.update(_candidates(a, label))
        if len(found) > 1:
            names = ", ".join(f"{_where(label)}[{k!r}] (in {n} structure{'s' * (n != 1)})" for k, n in sorted(found.items()))
            example = sorted(found)[0]
            raise MtpjaxError(
                f"{source}: no standard {STANDARD_KEYS[label][0]!r} label, and several keys look like one: {names}. "
                f"Rename the one to use to {STANDARD_KEYS[label][0]!r} in the file, or choose it with "
                f"load_records(..., label_keys={{{label!r}: {example!r}}})")
        key = next(iter(found), None)
        if key is not None:
            report.fallbacks.append((label, f"{_where(label)}[{key!r}]", found[key]))
        for k in unused - set(found):
            report.unused[f"{_where(label)}[{k!r}]"] = label
        chosen[label] = (key, False)
    return chosen


def _bad_label(source, k, line, what, value, expected):
    from .errors import FormatError

    shown = repr(value) if isinstance(value, (str, bool, np.bool_)) else np.array2string(np.asarray(value), threshold=12)
    return FormatError(f"structure {k + 1}: {what} = {shown} is not {expected}", path=source, line=line)


def _labels_from_atoms(atoms, chosen: dict, report: LabelReport, source: str, k: int, locate):
    """(energy, forces, virial) of structure ``k`` (0-based), each None when absent, recording the source of each in
    ``report``. Non-numeric or misshapen values raise FormatError naming the file, the structure, its line and the
    key. A key whose name says virial (GAP's and MACE's ``virial``: -V·σ in eV) is taken as mtpjax's virial as it
    is; a stress (eV/Å³, ASE's sign: positive in tension) becomes -V·σ."""
    n = len(atoms)
    raw = {}
    for label in STANDARD_KEYS:
        key, explicit = chosen[label]
        std = None if explicit else _standard(atoms, label)
        if std is not None:
            raw[label] = (_label_lookup(atoms, label, std)[0], std)
        elif key is not None:
            raw[label] = _label_lookup(atoms, label, key)
        else:
            raw[label] = (None, None)

    def bad(label, src, value, expected, shape=None):
        what = label if src == label else f"{label} (from {src})"
        if shape is not None:
            what += f" of shape {shape}"
        return _bad_label(source, k, locate(k), what, value, expected)

    energy, src = raw["energy"]
    if energy is not None:
        if isinstance(energy, (bool, np.bool_)) or np.ndim(energy) != 0:
            raise bad("energy", src, energy, "one number (eV)")
        try:
            energy = float(energy)
        except (TypeError, ValueError):
            raise bad("energy", src, energy, "a number (eV)") from None
        report.add("energy", src)
    forces, src = raw["forces"]
    if forces is not None:
        try:
            forces = np.asarray(forces, dtype=float)
        except (TypeError, ValueError):
            raise bad("forces", src, forces, "numbers (eV/Å)") from None
        if forces.shape != (n, 3):
            raise bad("forces", src, forces, f"one (x, y, z) per atom: shape ({n}, 3)", forces.shape)
        report.add("forces", src)
    stress, src = raw["stress"]
    virial = None
    if stress is not None:
        try:
            s = np.asarray(stress, dtype=float)
        except (TypeError, ValueError):
            raise bad("stress", src, stress, "numbers") from None
        if s.shape == (6,):
            s = voigt_to_stress(s)  # Voigt order xx yy zz yz xz xy, as ASE
        elif s.shape == (9,):
            s = s.reshape(3, 3)
        if s.shape != (3, 3):
            raise bad("stress", src, stress, "6 (Voigt) or 9 numbers", s.shape)
        if atoms.pbc.all():
            virial = s.copy() if "virial" in src.lower() else -s * abs(atoms.get_volume())  # eV
            report.add("stress", src)
    return energy, forces, virial


def _locator(source):
    """locate(k): the 1-based line of structure k's comment line when ``source`` is an XYZ file, else None."""
    cache = []

    def locate(k):
        if not cache:
            lines = []
            try:
                if Path(source).suffix.lower() in (".xyz", ".extxyz") and Path(source).is_file():
                    from .io.extxyz import frame_lines

                    lines = frame_lines(source)
            except (OSError, TypeError, ValueError):
                pass
            cache.append(lines)
        return cache[0][k] if k < len(cache[0]) else None

    return locate


def _number(value, source, k, locate, what, expected):
    if isinstance(value, (bool, np.bool_)) or np.ndim(value) != 0:
        raise _bad_label(source, k, locate(k), what, value, expected)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise _bad_label(source, k, locate(k), what, value, expected) from None


def records_from_atoms(atoms_list, species=None, n_species=None, source="structures", label_keys=None) -> RecordList:
    """Records from ase.Atoms carrying labels in ``atoms.calc`` (extxyz, ASE db); weight from
    ``info['weight']``, subset from ``info['subset']`` or ``info['config_type']``.

    Labels under other keys (``REF_energy``, ``info['DFT_energy']``, ``arrays['REF_forces']``, ``REF_virial`` ...)
    are used when they are the only candidate for a label (see :func:`load_records`) or chosen by ``label_keys``
    ({'energy': key, 'forces': key, 'stress': key}). The returned list carries a :class:`LabelReport` as
    ``.labels``. A non-numeric label or weight raises FormatError naming ``source``, the structure and the key.
    """
    from .evaluate import types_for_symbols

    atoms_list = list(atoms_list)
    report = LabelReport(str(source), len(atoms_list))
    chosen = _resolve_keys(atoms_list, label_keys, source, report)
    locate = _locator(source)
    out = RecordList()
    for k, a in enumerate(atoms_list):
        name = f"{source}: structure {k + 1}"
        if "mlip_type" in a.arrays:
            types = np.asarray(a.arrays["mlip_type"], dtype=np.int64)
        else:
            types = types_for_symbols(a.get_chemical_symbols(), species, n_species or (len(species) if species else 1), name)
        e, f, v = _labels_from_atoms(a, chosen, report, source, k, locate)
        subset = str(a.info.get("subset", a.info.get("config_type", "")))
        weight = _number(a.info.get("weight", 1.0), source, k, locate, "info['weight']", "a number")
        out.append(Record(name, a.positions.copy(), np.where(a.pbc[:, None], a.cell.array, 0.0), a.pbc.copy(), types,
                          e, f, v, weight, subset))
    out.labels = report
    return out


def records_from_cfg(path, species=None) -> list[Record]:
    """Records from an MLIP .cfg (types used as they are; Feature ``subset`` or ``config_type`` tags the subset,
    Feature ``weight`` sets the weight)."""
    from .io import read_cfg

    out = []
    for k, c in enumerate(read_cfg(path)):
        name = f"{path}: configuration {k + 1}"
        pbc = np.full(3, c.cell is not None)
        cell = np.zeros((3, 3)) if c.cell is None else c.cell
        virial = None
        if c.plus_stress is not None:
            xx, yy, zz, yz, xz, xy = c.plus_stress
            virial = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
        subset = c.feature("subset") or c.feature("config_type") or ""
        weight = float(c.feature("weight") or 1.0)
        out.append(Record(name, c.positions, cell, pbc, c.types, c.energy, c.forces, virial, weight, subset))
    return out


_DEFAULT_LOG = object()


def load_records(path, species=None, n_species=None, *, label_keys: dict | None = None, log=_DEFAULT_LOG) -> RecordList:
    """Labelled structures from one file: ``.cfg`` (MLIP), ``.db`` (ASE database) or anything ase.io reads
    (extended XYZ). Raises MtpjaxError for an empty file or one with no labels at all.

    Labels are read from ASE's standard keys (``energy``/``free_energy``, ``forces``, ``stress``; what
    SinglePointCalculator writes). A structure without one falls back on a key that looks like that label
    (info keys containing 'energy', arrays keys containing 'force', info keys containing 'stress' or 'virial';
    ``REF_energy``, ``DFT_energy``, ``REF_forces``, ``REF_virial`` ...) when it is the only such key in the file,
    with a :class:`~mtpjax.errors.LabelWarning` saying so; several candidates are an error naming them.
    ``label_keys`` ({'energy': 'REF_energy', 'forces': 'REF_forces', 'stress': 'REF_stress'}) chooses keys
    explicitly, in place of the standard ones. A key named ``*virial*`` holds -V·σ in eV (GAP, MACE), any other
    stress key ASE's stress in eV/Å³. Non-numeric labels raise FormatError naming the file, the structure (1-based),
    its line (XYZ) and the key.

    Returns a list of records with a :class:`LabelReport` as ``.labels``; its one-line summary ("train.extxyz: 400
    structures; energy from 'energy' (400), forces from 'forces' (400), stress from 'stress' (400)") goes to
    ``log`` (default: stderr; None: silent). ``label_keys`` does not apply to ``.cfg`` files (their labels have
    fixed names).
    """
    path = os.fspath(path)
    if not Path(path).exists():
        raise MtpjaxError(f"{path}: no such file")
    if path.endswith(".cfg"):
        records = RecordList(records_from_cfg(path, species))
        records.labels = report = LabelReport(path, len(records))
        for r in records:
            for label, present, key in (("energy", r.energy, "Energy"), ("forces", r.forces, "AtomData fx fy fz"),
                                        ("stress", r.virial, "PlusStress")):
                if present is not None:
                    report.add(label, key)
    else:
        if path.endswith(".db"):
            import ase.db

            with ase.db.connect(path) as db:
                atoms = [row.toatoms(add_additional_information=True) for row in db.select()]
            for a in atoms:
                a.info.update(a.info.pop("key_value_pairs", {}))
        else:
            from .io import read_structures

            atoms = read_structures(path)
        records = records_from_atoms(atoms, species, n_species, path, label_keys=label_keys)
        report = records.labels
    if not records:
        raise MtpjaxError(f"{path}: the data set is empty")
    if not any(r.energy is not None or r.forces is not None or r.virial is not None for r in records):
        hint = ""
        if not path.endswith(".cfg"):
            info = sorted({str(k) for a in atoms for k in a.info})
            arrays = sorted({str(k) for a in atoms for k in a.arrays} - {"numbers", "positions"})
            hint = (f" (info keys: {', '.join(info) or 'none'}; per-atom arrays: {', '.join(arrays) or 'none'}; "
                    "choose keys with load_records(..., label_keys={'energy': KEY, 'forces': KEY, 'stress': KEY}))")
        raise MtpjaxError(f"{path}: no structure has an energy, forces or stress label{hint}")
    if log is _DEFAULT_LOG:
        log = _stderr
    if log is not None:
        log(report.summary())
    if report.fallbacks:
        units = {"energy": "eV", "forces": "eV/Å", "stress": "eV/Å³, ASE's sign"}
        used = "; ".join(f"{label} taken from {key} for {n} of {len(records)} structures (no standard "
                         f"{STANDARD_KEYS[label][0]!r}; read as {'a virial -V·σ, eV' if 'virial' in key.lower() else units[label]})"
                         for label, key, n in report.fallbacks)
        warnings.warn(f"{path}: labels from non-standard keys: {used}. Check they are the reference labels, or choose "
                      "keys with load_records(..., label_keys={'energy': KEY, 'forces': KEY, 'stress': KEY})",
                      LabelWarning, stacklevel=2)
    return records


def validate(records: list[Record], n_species: int) -> None:
    """Check positions, cells, types and labels (finite, right shapes). Raises with the structure's name."""
    if not records:
        raise MtpjaxError("the data set is empty")
    for r in records:
        check_structure(r.positions, r.cell, r.pbc, r.name)
        if len(r.types) and (r.types.min() < 0 or r.types.max() >= n_species):
            raise StructureError(f"{r.name}: type {int(r.types.max())} is not among the potential's {n_species} species")
        if r.energy is not None and not np.isfinite(r.energy):
            raise StructureError(f"{r.name}: the energy label is not finite ({r.energy})")
        if r.forces is not None:
            if r.forces.shape != r.positions.shape:
                raise StructureError(f"{r.name}: forces have shape {r.forces.shape}, positions {r.positions.shape}")
            if not np.isfinite(r.forces).all():
                raise StructureError(f"{r.name}: force labels are not finite (atom {int(np.argmax(~np.isfinite(r.forces).all(1)))})")
        if r.virial is not None and not np.isfinite(r.virial).all():
            raise StructureError(f"{r.name}: the stress label is not finite")
        if not (np.isfinite(r.weight) and r.weight >= 0):
            raise StructureError(f"{r.name}: the weight must be a finite number >= 0, got {r.weight}")
    check_label_outliers(records)


#: Energies per atom beyond this magnitude (eV/atom) are flagged whatever the rest of the data (all-electron total
#: energies of the heaviest elements are below 1e6 eV/atom).
ABSURD_ENERGY_PER_ATOM = 1e7


def check_label_outliers(records: list[Record], *, mads: float = 20.0, min_deviation: float = 50.0,
                         max_force: float = 100.0, limit: int = 5) -> list[str]:
    """Warn (one :class:`~mtpjax.errors.LabelWarning`, naming up to ``limit`` structures of each kind) about labels
    that are most likely wrong, and return the warning's lines (empty when all is well):

    - an energy per atom farther from the median than ``mads`` x the median absolute deviation AND
      ``min_deviation`` eV/atom (50: the paper-scale systematic set of configs/generate_mg.toml, with cells
      compressed by up to 80 %, has correct energies up to 23 eV/atom above its median), or larger in magnitude than
      ABSURD_ENERGY_PER_ATOM;
    - a force of magnitude above ``max_force`` eV/Å.

    Non-finite labels are not checked here (:func:`validate` rejects them).
    """
    lines = []
    e = [(r, r.energy / r.n_atoms) for r in records
         if r.energy is not None and r.n_atoms and np.isfinite(r.energy)]
    if e:
        x = np.array([v for _, v in e])
        with np.errstate(over="ignore", invalid="ignore"):
            med = float(np.median(x))
            dev = np.abs(x - med)
            mad = float(np.median(dev))
            bad = ((dev > mads * mad) & (dev > min_deviation)) | (np.abs(x) > ABSURD_ENERGY_PER_ATOM)
        idx = np.flatnonzero(bad)
        if len(idx):
            shown = "; ".join(f"{e[i][0].name}: {x[i]:.6g} eV/atom" for i in idx[:limit])
            more = f"; and {len(idx) - limit} more" if len(idx) > limit else ""
            lines.append(f"{len(idx)} of {len(e)} energies per atom are far from the rest (median {med:.6g} eV/atom, "
                         f"median absolute deviation {mad:.3g}): {shown}{more}")
    f = []
    for r in records:
        if r.forces is not None and len(r.forces) and np.isfinite(r.forces).all():
            with np.errstate(over="ignore"):
                norms = np.linalg.norm(r.forces, axis=1)
            k = int(np.argmax(norms))
            if norms[k] > max_force:
                f.append(f"{r.name}: |F| = {norms[k]:.6g} eV/Å on atom {k}")
    if f:
        more = f"; and {len(f) - limit} more" if len(f) > limit else ""
        lines.append(f"{len(f)} structure{'s' * (len(f) != 1)} with forces above {max_force:g} eV/Å: "
                     f"{'; '.join(f[:limit])}{more}")
    if lines:
        warnings.warn("suspicious labels (a unit or sign error, a failed calculation?): " + " | ".join(lines),
                      LabelWarning, stacklevel=2)
    return lines


class LabelledBatch(NamedTuple):
    """A packed :class:`Batch` with labels. Per structure (B,): energy, energy_mask, virial (B, 3, 3), virial_mask,
    n_atoms, weight (0 for padding), subset (index into the data set's subset names), volume (0 if not periodic);
    per atom (N,): forces (N, 3), forces_mask."""

    batch: Batch
    energy: np.ndarray
    energy_mask: np.ndarray
    forces: np.ndarray
    forces_mask: np.ndarray
    virial: np.ndarray
    virial_mask: np.ndarray
    n_atoms: np.ndarray
    weight: np.ndarray
    subset: np.ndarray
    volume: np.ndarray


def _label_arrays(records, b: Batch, subsets):
    B, N = b.cells.shape[0], b.positions.shape[0]
    out = dict(energy=np.zeros(B), energy_mask=np.zeros(B, bool), forces=np.zeros((N, 3)), forces_mask=np.zeros(N, bool),
               virial=np.zeros((B, 3, 3)), virial_mask=np.zeros(B, bool), n_atoms=np.zeros(B), weight=np.zeros(B),
               subset=np.zeros(B, np.int64), volume=np.zeros(B))
    o = 0
    for k, r in enumerate(records):
        n = r.n_atoms
        out["n_atoms"][k], out["weight"][k], out["subset"][k] = n, r.weight, subsets.index(r.subset)
        out["volume"][k] = r.volume or 0.0
        if r.energy is not None:
            out["energy"][k], out["energy_mask"][k] = r.energy, True
        if r.forces is not None:
            out["forces"][o : o + n], out["forces_mask"][o : o + n] = r.forces, True
        if r.virial is not None:
            out["virial"][k], out["virial_mask"][k] = r.virial, True
        o += n
    return out


def _cache_key(records, cutoff, max_batch_atoms, max_batch_pairs=None) -> str:
    h = hashlib.sha256(f"v{PACK_VERSION}|{cutoff!r}|{max_batch_atoms}|{max_batch_pairs}".encode())
    for r in records:
        h.update(r.name.encode())
        for x in (r.positions, r.cell, r.pbc, r.types, r.forces, r.virial):
            h.update(b"-" if x is None else np.ascontiguousarray(x).tobytes())
        h.update(f"{r.energy!r}|{r.weight!r}|{r.subset}".encode())
    return h.hexdigest()[:24]


#: Padded neighbour slots (atoms x neighbours per atom, both bucketed) of one packed batch at most: every per-pair
#: array of a batch, and the work on it, scales with this, so dense structures (a cell compressed by 80 % has several
#: times the neighbours of the rest) get small batches of their own instead of padding a large one.
MAX_BATCH_PAIRS = 1 << 20


def pack_records(records: list[Record], cutoff: float, max_batch_atoms: int = 4096, cache_dir=None,
                 max_batch_pairs: int | None = MAX_BATCH_PAIRS) -> tuple[list[LabelledBatch], list[str]]:
    """Pack records into labelled batches and return them with the subset names.

    Structures are sorted by their largest neighbour count and cut into batches of at most ``max_batch_atoms``
    atoms and at most ``max_batch_pairs`` padded neighbour slots (padded atoms x padded neighbours; None: no limit;
    a structure larger than that gets a batch alone), so structures of similar density share a batch (little
    neighbour padding). With ``cache_dir``, the packed arrays are stored there under a hash of the content and reused.
    """
    subsets = sorted({r.subset for r in records})
    key = _cache_key(records, cutoff, max_batch_atoms, max_batch_pairs)
    cache = Path(cache_dir) / f"packed-{key}.npz" if cache_dir else None
    if cache is not None and cache.exists():
        try:
            return _load_packed(cache), subsets
        except Exception as err:  # a corrupted cache: say so and rebuild
            import warnings

            warnings.warn(f"{cache}: unreadable packed-data cache ({err}); rebuilding it")
    prepared = []
    for r in records:
        p = pairs(r.positions, r.cell, r.pbc, cutoff, r.name)
        nmax = max_neighbours(p[0], r.n_atoms)
        prepared.append((nmax, r, p))
    prepared.sort(key=lambda x: x[0])
    batches, chunk, n = [], [], 0

    def flush():
        if chunk:
            b = pack([(r.positions, r.cell, r.types, p) for _, r, p in chunk],
                     n_nb=bucket_size(max(x[0] for x in chunk), minimum=4))
            batches.append(LabelledBatch(batch=b, **_label_arrays([r for _, r, _ in chunk], b, subsets)))

    def slots(n_atoms, nmax):
        return bucket_size(n_atoms, minimum=8) * bucket_size(nmax, minimum=4)

    for item in prepared:  # item[0] (the neighbour count) grows: the new item's is the batch's largest
        if chunk and (n + item[1].n_atoms > max_batch_atoms
                      or (max_batch_pairs is not None and slots(n + item[1].n_atoms, item[0]) > max_batch_pairs)):
            flush()
            chunk, n = [], 0
        chunk.append(item)
        n += item[1].n_atoms
    flush()
    if cache is not None:
        _save_packed(cache, batches)
    return batches, subsets


def _save_packed(path: Path, batches):
    arrays = {}
    for k, lb in enumerate(batches):
        flat = {**lb._asdict(), **lb.batch._asdict(), **lb.batch.nbrs._asdict()}
        for name, x in flat.items():
            if isinstance(x, np.ndarray):
                arrays[f"{k}/{name}"] = x
    with atomic_open(path, "wb") as f:
        np.savez(f, n_batches=len(batches), **arrays)


def _load_packed(path: Path):
    from .neighbors import Neighbours

    with np.load(path) as z:
        out = []
        for k in range(int(z["n_batches"])):
            g = lambda name: z[f"{k}/{name}"]  # noqa: E731
            nb = Neighbours(index=g("index"), shift=g("shift"), mask=g("mask"))
            b = Batch(positions=g("positions"), cells=g("cells"), species=g("species"), structure=g("structure"), nbrs=nb)
            out.append(LabelledBatch(batch=b, **{f: g(f) for f in LabelledBatch._fields if f != "batch"}))
    return out


def pack_for_devices(records: list[Record], cutoff: float, n_devices: int) -> tuple[LabelledBatch, list[str]]:
    """Split structures into ``n_devices`` groups of similar atom counts, pack each to the same padded shapes
    and stack them: every leaf gets a leading axis of length n_devices (for data-parallel fitting)."""
    if n_devices < 1 or n_devices > len(records):
        raise MtpjaxError(f"cannot split {len(records)} structures over {n_devices} devices")
    subsets = sorted({r.subset for r in records})
    groups = [[] for _ in range(n_devices)]
    loads = np.zeros(n_devices)
    for r in sorted(records, key=lambda r: -r.n_atoms):  # greedy balance by atoms
        k = int(np.argmin(loads))
        groups[k].append(r)
        loads[k] += r.n_atoms
    prepared = [[(r, pairs(r.positions, r.cell, r.pbc, cutoff, r.name)) for r in g] for g in groups]
    n_pad = bucket_size(int(loads.max()), minimum=8)
    b_pad = bucket_size(max(len(g) for g in groups))
    n_nb = bucket_size(max(max_neighbours(p[0], r.n_atoms) for g in prepared for r, p in g), minimum=4)
    packed = []
    for g in prepared:
        b = pack([(r.positions, r.cell, r.types, p) for r, p in g], n_pad, b_pad, n_nb)
        packed.append(LabelledBatch(batch=b, **_label_arrays([r for r, _ in g], b, subsets)))
    return stack_batches(packed), subsets


def stack_batches(batches):
    """Stack same-shaped labelled batches along a new leading axis (numpy)."""
    import jax

    return jax.tree.map(lambda *x: np.stack(x), *batches)


def unstack(lb: LabelledBatch) -> list[LabelledBatch]:
    """The inverse of stacking: a list of labelled batches (host numpy)."""
    import jax

    lb = jax.tree.map(np.asarray, lb)
    return [jax.tree.map(lambda x, k=k: x[k], lb) for k in range(lb.weight.shape[0])]
