"""Labelled training data: loading (extxyz, MLIP .cfg, ASE db), validation and packing into padded batches.

Units: energies eV, forces eV/Å, virial eV (MLIP's PlusStress, -V·σ). Any label may be missing for a
structure; its term is then skipped. Each structure carries a weight and a subset tag (RANDSPG, RATTLE, ...).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .batch import Batch, max_neighbours, pack
from .errors import MtpjaxError, StructureError
from .neighbors import bucket_size, check_structure, pairs

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


def _labels_from_atoms(atoms, name):
    res = dict(atoms.calc.results) if atoms.calc is not None else {}
    energy = res.get("energy", res.get("free_energy"))
    forces = res.get("forces")
    stress = res.get("stress")
    virial = None
    if stress is not None and atoms.pbc.all():
        s = np.asarray(stress, dtype=float)
        if s.shape == (6,):
            xx, yy, zz, yz, xz, xy = s
            s = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
        virial = -s * abs(atoms.get_volume())  # eV
    return (None if energy is None else float(energy),
            None if forces is None else np.asarray(forces, dtype=float), virial)


def records_from_atoms(atoms_list, species=None, n_species=None, source="structures") -> list[Record]:
    """Records from ase.Atoms carrying labels in ``atoms.calc`` (extxyz, ASE db); weight from
    ``info['weight']``, subset from ``info['subset']`` or ``info['config_type']``."""
    from .evaluate import types_for_symbols

    out = []
    for k, a in enumerate(atoms_list):
        name = f"{source}: structure {k + 1}"
        if "mlip_type" in a.arrays:
            types = np.asarray(a.arrays["mlip_type"], dtype=np.int64)
        else:
            types = types_for_symbols(a.get_chemical_symbols(), species, n_species or (len(species) if species else 1), name)
        e, f, v = _labels_from_atoms(a, name)
        subset = str(a.info.get("subset", a.info.get("config_type", "")))
        out.append(Record(name, a.positions.copy(), np.where(a.pbc[:, None], a.cell.array, 0.0), a.pbc.copy(), types,
                          e, f, v, float(a.info.get("weight", 1.0)), subset))
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


def load_records(path, species=None, n_species=None) -> list[Record]:
    """Labelled structures from one file: ``.cfg`` (MLIP), ``.db`` (ASE database) or anything ase.io reads
    (extended XYZ). Raises MtpjaxError for an empty file or one with no labels at all."""
    path = os.fspath(path)
    if not Path(path).exists():
        raise MtpjaxError(f"{path}: no such file")
    if path.endswith(".cfg"):
        records = records_from_cfg(path, species)
    elif path.endswith(".db"):
        import ase.db

        with ase.db.connect(path) as db:
            atoms = [row.toatoms(add_additional_information=True) for row in db.select()]
        for a in atoms:
            a.info.update(a.info.pop("key_value_pairs", {}))
        records = records_from_atoms(atoms, species, n_species, path)
    else:
        from .io import read_structures

        records = records_from_atoms(read_structures(path), species, n_species, path)
    if not records:
        raise MtpjaxError(f"{path}: the data set is empty")
    if not any(r.energy is not None or r.forces is not None or r.virial is not None for r in records):
        raise MtpjaxError(f"{path}: no structure has an energy, forces or stress label")
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


def _cache_key(records, cutoff, max_batch_atoms) -> str:
    h = hashlib.sha256(f"v{PACK_VERSION}|{cutoff!r}|{max_batch_atoms}".encode())
    for r in records:
        h.update(r.name.encode())
        for x in (r.positions, r.cell, r.pbc, r.types, r.forces, r.virial):
            h.update(b"-" if x is None else np.ascontiguousarray(x).tobytes())
        h.update(f"{r.energy!r}|{r.weight!r}|{r.subset}".encode())
    return h.hexdigest()[:24]


def pack_records(records: list[Record], cutoff: float, max_batch_atoms: int = 4096, cache_dir=None) -> tuple[list[LabelledBatch], list[str]]:
    """Pack records into labelled batches and return them with the subset names.

    Structures are sorted by their largest neighbour count and cut into batches of at most
    ``max_batch_atoms`` atoms, so structures of similar density share a batch (little neighbour padding).
    With ``cache_dir``, the packed arrays are stored there under a hash of the content and reused.
    """
    subsets = sorted({r.subset for r in records})
    key = _cache_key(records, cutoff, max_batch_atoms)
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

    for item in prepared:
        if chunk and n + item[1].n_atoms > max_batch_atoms:
            flush()
            chunk, n = [], 0
        chunk.append(item)
        n += item[1].n_atoms
    flush()
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        _save_packed(cache, batches)
    return batches, subsets


def _save_packed(path: Path, batches):
    arrays = {}
    for k, lb in enumerate(batches):
        flat = {**lb._asdict(), **lb.batch._asdict(), **lb.batch.nbrs._asdict()}
        for name, x in flat.items():
            if isinstance(x, np.ndarray):
                arrays[f"{k}/{name}"] = x
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, n_batches=len(batches), **arrays)
    os.replace(tmp, path)


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
