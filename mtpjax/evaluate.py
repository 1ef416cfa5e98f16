"""Evaluate any JAX potential (an MTP, an oracle) on single structures given as host arrays: validation, neighbours, padding, jit.

Structures are padded to bucketed shapes (:func:`mtpjax.neighbors.bucket_size`), so evaluating many
structures compiles only a handful of programs.

The jitted program is shared by every :class:`Evaluator` of the process (so by every ASE calculator): JAX keys
its compiled versions by the potential's static structure (an MTP's basis plan and species, not its
coefficients, which are arguments) and the padded shapes, so a second calculator on the same MTP, or on
another MTP with the same basis, does not compile again (:func:`program`, :func:`trace_count`).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from functools import partial

import jax
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


#: jitted evaluation programs shared by all Evaluators, keyed by (chunk, use_custom_vjp, the potential's structure),
#: the most recently used first out; at most PROGRAMS_KEPT potential structures keep their compiled programs beyond
#: their Evaluators (each compiled program holds memory maps, and a process has a limited number of them: a long
#: session that evaluates many different potentials must not keep every program it ever compiled)
_PROGRAMS: OrderedDict = OrderedDict()
PROGRAMS_KEPT = 16
_TRACES = [0]


def _hashable(x):
    return tuple(_hashable(v) for v in x) if isinstance(x, (list, tuple)) else x


def _efs_sites(potential, positions, cell, species, nbrs, *, structure=None, chunk=None, use_custom_vjp=True):
    _TRACES[0] += 1  # runs once per trace, i.e. per new (potential structure, shapes) program
    return energy_forces_virial_sites(potential, positions, cell, species, nbrs, structure=structure, chunk=chunk,
                                      use_custom_vjp=use_custom_vjp)


def program(chunk=None, use_custom_vjp: bool = True, potential=None):
    """The process-wide jitted ``energy_forces_virial_sites`` for these options and this potential's structure (its
    pytree structure and the shapes of its arrays: an MTP's basis plan and number of species, not its coefficients),
    so its compiled versions are shared by every Evaluator of a potential of that structure. The last
    :data:`PROGRAMS_KEPT` structures are kept."""
    try:
        leaves, treedef = jax.tree_util.tree_flatten(potential)
        shape = (treedef, tuple((np.shape(x), str(getattr(x, "dtype", type(x).__name__))) for x in leaves))
        hash(shape)
    except TypeError:  # a potential with unhashable static parts: a program of its own
        return jax.jit(partial(_efs_sites, chunk=_hashable(chunk), use_custom_vjp=bool(use_custom_vjp)))
    key = (_hashable(chunk), bool(use_custom_vjp), shape)
    fn = _PROGRAMS.pop(key, None)
    if fn is None:
        fn = jax.jit(partial(_efs_sites, chunk=key[0], use_custom_vjp=key[1]))
    _PROGRAMS[key] = fn
    while len(_PROGRAMS) > PROGRAMS_KEPT:
        _PROGRAMS.popitem(last=False)
    return fn


def n_programs() -> int:
    """How many potential structures (with their options) keep shared compiled programs now."""
    return len(_PROGRAMS)


def trace_count() -> int:
    """How many times the shared evaluation programs have been traced in this process (each trace means a new
    program: compiled, or loaded from the persistent compilation cache)."""
    return _TRACES[0]


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
        self._fn = program(chunk, use_custom_vjp, potential)
        self._widest = {}  # (atoms, structures) bucket -> widest neighbour bucket used so far (reused when it fits)

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

    def many(self, structures, progress=None, chunk_atoms: int | None = None) -> list[EFSResult]:
        """Evaluate (positions, cell, pbc, types, name) tuples. ``progress(n_done)`` is called after each batch.

        By default every structure is validated (and its neighbours found) before anything is evaluated, and the
        structures are packed into batches of at most ``max_batch_atoms`` atoms, each padded to buckets of its own
        size. With ``chunk_atoms``, every batch has one padded shape that does not depend on how many structures
        there are (:func:`chunk_shape`), so 1 and 21 configurations of one cell run the same compiled program; the
        structures of a chunk are then validated and their neighbours found while the previous chunk is being
        evaluated (JAX dispatches asynchronously), so a bad structure raises its StructureError after the chunks
        before it were evaluated (nothing is returned).
        """
        if chunk_atoms is not None:
            return self._many_chunked(list(structures), progress, chunk_atoms)
        prepared = [self.prepare(*s) for s in structures]
        out = []
        for batch in self._batches(prepared):
            out += self.evaluate(batch)
            if progress is not None:
                progress(len(batch))
        return out

    def _many_chunked(self, structures, progress, chunk_atoms):
        sizes = [int(np.shape(s[0])[0]) if np.ndim(s[0]) else 0 for s in structures]
        n_atoms, n_structures = chunk_shape(sizes, chunk_atoms)
        out, pending = [], None
        for chunk in consecutive_groups(sizes, n_atoms, n_structures):
            batch = [self.prepare(*structures[k]) for k in chunk]  # (host work overlapping the pending chunk)
            launched = self._launch(batch, (n_atoms, n_structures))
            if pending is not None:
                out += self._collect(*pending)
                if progress is not None:
                    progress(len(pending[0]))
            pending = (batch, launched)
        if pending is not None:
            out += self._collect(*pending)
            if progress is not None:
                progress(len(pending[0]))
        return out

    def _batches(self, prepared):
        for group in consecutive_groups([len(p.positions) for p in prepared], self.max_batch_atoms):
            yield [prepared[k] for k in group]

    def evaluate(self, batch: list[_Prepared], shape: tuple | None = None) -> list[EFSResult]:
        """Evaluate prepared structures together as one padded, packed batch; ``shape`` = (atoms, structures) to pad
        to (default: buckets of this batch's sizes)."""
        return self._collect(batch, self._launch(batch, shape))

    def _launch(self, batch: list[_Prepared], shape: tuple | None = None):
        """Pack and dispatch (asynchronously); returns the program's device arrays."""
        if shape is None:
            n_pad = bucket_size(sum(len(p.positions) for p in batch), minimum=8)
            b_pad = bucket_size(len(batch))
        else:
            n_pad, b_pad = shape
        max_nb = max((max_neighbours(p.pairs[0], len(p.positions)) for p in batch), default=0)
        # reuse the widest neighbour bucket this evaluator used so far for this shape (no recompilation)
        n_nb = max(bucket_size(max_nb, minimum=4), self._widest.get((n_pad, b_pad), 0))
        self._widest[(n_pad, b_pad)] = n_nb
        b = pack([(p.positions, p.cell, p.types, p.pairs) for p in batch], n_pad, b_pad, n_nb)
        # host arrays go straight to the compiled program (jnp.asarray would compile a small conversion per shape)
        return self._fn(self.potential, b.positions, b.cells, b.species, b.nbrs, structure=b.structure)

    @staticmethod
    def _collect(batch: list[_Prepared], launched) -> list[EFSResult]:
        """Wait for a launched batch; one EFSResult per structure."""
        e, f, v, sites = (np.asarray(x) for x in launched)
        results, o = [], 0
        for k, p in enumerate(batch):
            if not np.isfinite(e[k]):
                raise StructureError(f"{p.name}: the energy is not finite ({e[k]}); the structure is far outside the potential's range")
            sl = slice(o, o + len(p.positions))
            o += len(p.positions)
            results.append(EFSResult(energy=float(e[k]), forces=f[sl], virial=v[k], site_energies=sites[sl], volume=p.volume))
        return results


def chunk_shape(sizes, chunk_atoms: int) -> tuple[int, int]:
    """The one padded shape (atoms, structures) of every chunk of structures of ``sizes`` atoms: atoms = the bucket of
    max(largest structure, ``chunk_atoms``); structures = as many of the smallest structure as fit. Neither depends on
    the number of structures, so a file of 1 or of 21 configurations of one cell compiles the same program (the
    neighbour slots are the widest bucket the evaluator needed so far)."""
    sizes = list(sizes) or [1]
    n_atoms = bucket_size(max(max(sizes), int(chunk_atoms)), minimum=8)
    return n_atoms, bucket_size(max(1, n_atoms // max(1, min(sizes))))


def consecutive_groups(sizes, n_atoms: int, n_structures: int | None = None):
    """Consecutive groups of structure indices holding at most ``n_atoms`` atoms and ``n_structures`` structures (None:
    any number); a structure larger than ``n_atoms`` is a group of its own. ``sizes``: atoms of each structure."""
    n_structures = len(sizes) if n_structures is None else n_structures
    chunk, n = [], 0
    for k, size in enumerate(sizes):
        if chunk and (n + size > n_atoms or len(chunk) == n_structures):
            yield chunk
            chunk, n = [], 0
        chunk.append(k)
        n += size
    if chunk:
        yield chunk
