"""Evaluate any JAX potential (an MTP, an oracle) on single structures given as host arrays: validation, neighbours, padding, jit.

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
from .potential import energy_forces_virial_sites
from .batch import max_neighbours, pack
from .neighbors import bucket_size, check_structure, pairs

#: eV/Å³ -> GPa
from .units import EV_PER_A3_TO_GPA  # noqa: E402,F401  (re-exported: the constant lives in mtpjax.units)


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


@dataclass
class _Prepared:
    """A validated structure with its pair list (host arrays)."""

    name: str
    positions: np.ndarray
    cell: np.ndarray
    types: np.ndarray
    pairs: tuple
    volume: float | None


class Evaluator:
    """Energy, forces, virial and site energies of a JAX potential (:mod:`mtpjax.potential`) for structures
    given as host arrays.

    Many structures are packed into a few batches (a disjoint union of atoms with a per-atom structure
    index) of bucketed sizes, so a whole file compiles to a handful of programs.
    """

    def __init__(self, potential, chunk: int | None = None, max_batch_atoms: int = 2048, use_custom_vjp: bool = True):
        self.potential = potential
        self.max_batch_atoms = max_batch_atoms
        self._fn = jax.jit(partial(energy_forces_virial_sites, chunk=chunk, use_custom_vjp=use_custom_vjp))
        self._widest = {}  # atoms bucket -> widest neighbour bucket compiled so far (reused when it fits)

    def prepare(self, positions, cell, pbc, types, name: str = "structure") -> _Prepared:
        """Validate a structure and find its neighbours. Raises StructureError naming ``name``."""
        positions, cell, pbc = check_structure(positions, cell, pbc, name)
        types = np.asarray(types, dtype=np.int64).reshape(-1)
        if len(types) != len(positions):
            raise StructureError(f"{name}: {len(types)} types for {len(positions)} atoms")
        S = self.potential.n_species
        bad = (types < 0) | (types >= S)
        if bad.any():
            k = int(np.argmax(bad))
            raise StructureError(f"{name}: atom {k} has type {int(types[k])}, but the potential knows types 0..{S - 1}")
        volume = abs(float(np.linalg.det(cell))) if pbc.all() else None
        cell = np.where(pbc[:, None], cell, 0.0)
        return _Prepared(name, positions, cell, types, pairs(positions, cell, pbc, self.potential.cutoff, name), volume)

    def __call__(self, positions, cell, pbc, types, name: str = "structure") -> EFSResult:
        """One structure: positions (N, 3) Å, cell rows (3, 3) Å (ignored along non-periodic axes), pbc (3,) bool,
        types (N,) 0..S-1."""
        return self.evaluate([self.prepare(positions, cell, pbc, types, name)])[0]

    def many(self, structures, progress=None) -> list[EFSResult]:
        """Evaluate (positions, cell, pbc, types, name) tuples. ``progress(n_done)`` is called after each batch."""
        prepared = [self.prepare(*s) for s in structures]
        out = []
        for batch in self._batches(prepared):
            out += self.evaluate(batch)
            if progress is not None:
                progress(len(batch))
        return out

    def _batches(self, prepared):
        batch, n = [], 0
        for p in prepared:
            if batch and n + len(p.positions) > self.max_batch_atoms:
                yield batch
                batch, n = [], 0
            batch.append(p)
            n += len(p.positions)
        if batch:
            yield batch

    def evaluate(self, batch: list[_Prepared]) -> list[EFSResult]:
        """Evaluate prepared structures together as one padded, packed batch."""
        n_tot = sum(len(p.positions) for p in batch)
        n_pad, b_pad = bucket_size(n_tot, minimum=8), bucket_size(len(batch))
        max_nb = max((max_neighbours(p.pairs[0], len(p.positions)) for p in batch), default=0)
        # reuse the widest neighbour bucket compiled so far for this atom bucket (no recompilation)
        n_nb = max(bucket_size(max_nb, minimum=4), self._widest.get((n_pad, b_pad), 0))
        self._widest[(n_pad, b_pad)] = n_nb
        b = pack([(p.positions, p.cell, p.types, p.pairs) for p in batch], n_pad, b_pad, n_nb)
        e, f, v, sites = self._fn(self.potential, jnp.asarray(b.positions), jnp.asarray(b.cells), jnp.asarray(b.species),
                                  jax.tree.map(jnp.asarray, b.nbrs), structure=jnp.asarray(b.structure))
        e, f, v, sites = (np.asarray(x) for x in (e, f, v, sites))
        results, o = [], 0
        for k, p in enumerate(batch):
            if not np.isfinite(e[k]):
                raise StructureError(f"{p.name}: the energy is not finite ({e[k]}); the structure is far outside the potential's range")
            sl = slice(o, o + len(p.positions))
            o += len(p.positions)
            results.append(EFSResult(energy=float(e[k]), forces=f[sl], virial=v[k], site_energies=sites[sl], volume=p.volume))
        return results
