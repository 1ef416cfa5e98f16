"""Structures of the pipeline: ids and tags in ``atoms.info``, failures, seeds, minimum distances, space groups.

Every structure is an ``ase.Atoms`` whose ``info`` carries ``id`` (e.g. ``"VOLMIN/sg194-n4-c0"``), ``parent``
(the id it was made from, "" for RANDSPG), ``subset`` and ``config_type`` (the subset tag),
``spacegroup`` (detected by spglib with ``symprec``) and ``spacegroup_requested`` (asked of pyxtal).
"""
from __future__ import annotations

import numpy as np

from ..oracles.label import Failure  # noqa: F401  (index, name, reason, message): a discarded structure

#: Numeric codes of the random streams, so every stream is keyed by integers only.
STREAMS = {"RANDSPG": 1, "VOLUME": 2, "TRIAX": 3, "SHEAR": 4, "RATTLE": 5}


def is_failure(x) -> bool:
    """Whether a stage's result is a :class:`Failure` (else an ase.Atoms)."""
    return isinstance(x, Failure)


def rng(seed: int, stream: str, *key: int) -> np.random.Generator:
    """An independent generator for (seed, stream, key...): the same key always draws the same numbers."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), STREAMS[stream], *map(int, key)]))


def key_of(atoms) -> tuple[int, ...]:
    """Integer key (space group requested, atoms, copy[, deformation copy]) of a structure, for seeding."""
    return tuple(int(x) for x in atoms.info["key"])


def min_distance(atoms, cutoff: float) -> float:
    """Shortest interatomic distance (Å) including periodic images, or ``inf`` when none is below ``cutoff``."""
    import vesin

    if len(atoms) == 0 or not cutoff > 0:
        return np.inf
    nl = vesin.NeighborList(cutoff=float(cutoff), full_list=False)
    (d,) = nl.compute(points=atoms.positions, box=atoms.cell.array, periodic=bool(atoms.pbc.all()), quantities="d")
    return float(d.min()) if len(d) else np.inf


def detect_spacegroup(atoms, symprec: float) -> int:
    """Space-group number found by spglib at ``symprec`` (Å); 0 if spglib finds none."""
    import warnings

    import spglib

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # spglib's error-handling transition
        try:
            ds = spglib.get_symmetry_dataset((atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers), symprec=symprec)
        except Exception:  # spglib.SpglibError in its new error handling
            ds = None
    return int(ds.number) if ds is not None else 0


def tag(atoms, subset: str, ident: str, parent: str, symprec: float):
    """Set the subset tags, id, parent and detected space group of ``atoms`` (in place; returned)."""
    atoms.info.update(subset=subset, config_type=subset, id=f"{subset}/{ident}", parent=parent,
                      spacegroup=detect_spacegroup(atoms, symprec), symprec=symprec)
    return atoms


def strip_labels(atoms):
    """A copy without calculator or labels (the input of a new stage)."""
    a = atoms.copy()
    a.calc = None
    return a
