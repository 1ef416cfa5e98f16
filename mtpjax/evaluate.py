"""Evaluate an MTP on single structures given as host arrays: validation, neighbours, padding, jit.

Structures are padded to bucketed shapes (:func:`mtpjax.neighbors.bucket_size`), so evaluating many
structures compiles only a handful of programs.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .errors import StructureError
from .model import MTP, energy_forces_virial_sites
from .neighbors import check_structure, neighbour_list

#: eV/Å³ -> GPa
EV_PER_A3_TO_GPA = 160.21766208


@dataclass
class EFSResult:
    """Energy (eV), forces (N, 3) eV/Å, virial (3, 3) eV (MLIP's PlusStress, -V·σ), site energies (N,) eV."""

    energy: float
    forces: np.ndarray
    virial: np.ndarray
    site_energies: np.ndarray
    volume: float | None

    @property
    def plus_stress(self) -> np.ndarray:
        """MLIP's PlusStress (xx, yy, zz, yz, xz, xy) in eV."""
        v = self.virial
        return np.array([v[0, 0], v[1, 1], v[2, 2], v[1, 2], v[0, 2], v[0, 1]])

    @property
    def stress(self) -> np.ndarray:
        """ASE's stress σ = -virial / V in Voigt order (xx, yy, zz, yz, xz, xy), eV/Å³."""
        if self.volume is None:
            raise ValueError("stress is undefined for a structure that is not periodic in all directions")
        return -self.plus_stress / self.volume


def types_for_symbols(symbols, species, n_species: int, name: str = "structure") -> np.ndarray:
    """MTP types (0..S-1) of chemical symbols. ``species``: element of each type. With no species list, a
    one-species potential takes any single-element structure."""
    symbols = list(symbols)
    if species is None:
        if n_species == 1 and len(set(symbols)) <= 1:
            return np.zeros(len(symbols), dtype=np.int64)
        raise StructureError(
            f"{name}: the potential has {n_species} species but does not say which elements they are, and the structure "
            f"holds {sorted(set(symbols))}; pass species=[...] (element of each type, in type order)"
        )
    index = {s: k for k, s in enumerate(species)}
    missing = sorted(set(symbols) - set(index))
    if missing:
        raise StructureError(f"{name}: element(s) {missing} are not among the potential's species {list(species)}")
    return np.array([index[s] for s in symbols], dtype=np.int64)


class Evaluator:
    """Energy, forces, virial and site energies of an :class:`MTP` for one structure at a time."""

    def __init__(self, mtp: MTP, chunk: int | None = None):
        self.mtp = mtp
        self._fn = jax.jit(partial(energy_forces_virial_sites, chunk=chunk))

    def __call__(self, positions, cell, pbc, types, name: str = "structure") -> EFSResult:
        """Positions (N, 3) Å, cell rows (3, 3) Å (ignored along non-periodic axes), pbc (3,) bool, types (N,) 0..S-1."""
        positions, cell, pbc = check_structure(positions, cell, pbc, name)
        types = np.asarray(types, dtype=np.int64).reshape(-1)
        n = len(positions)
        if len(types) != n:
            raise StructureError(f"{name}: {len(types)} types for {n} atoms")
        S = self.mtp.n_species
        bad = (types < 0) | (types >= S)
        if bad.any():
            raise StructureError(f"{name}: atom {int(np.argmax(bad))} has type {int(types[bad][0])}, but the potential knows types 0..{S - 1}")
        nl = neighbour_list(positions, cell, pbc, self.mtp.cutoff, name=name)
        n_pad = nl.index.shape[0]
        pos = np.zeros((n_pad, 3))
        pos[:n] = positions
        sp = np.full(n_pad, -1, dtype=np.int64)
        sp[:n] = types
        cell_used = np.where(pbc[:, None], cell, 0.0)
        e, f, v, sites = self._fn(self.mtp, jnp.asarray(pos), jnp.asarray(cell_used), jnp.asarray(sp), jax.tree.map(jnp.asarray, nl))
        e = float(e)
        if not np.isfinite(e):
            raise StructureError(f"{name}: the energy is not finite ({e}); the structure is far outside the potential's range")
        volume = abs(float(np.linalg.det(cell))) if pbc.all() else None
        return EFSResult(energy=e, forces=np.asarray(f)[:n], virial=np.asarray(v), site_energies=np.asarray(sites)[:n], volume=volume)
