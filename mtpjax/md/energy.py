"""Any JAX potential as a jax-md ``(energy_fn, neighbor_fn)`` pair, with a multi-image Verlet list.

jax-md's own neighbour lists see only the nearest periodic image, and they are not flagged stale when the box changes.
Here the list is mtpjax's own pair representation (:class:`mtpjax.neighbors.Neighbours`: for each atom i the
neighbours j and their integer lattice shifts, r_ij = x[j] - x[i] + shift @ cell), so any triclinic cell works,
however narrow (many images of the same atom are separate entries), and the positions need never be wrapped.

Two levels, as in LAMMPS-style codes with a candidate list:

- the *candidate* list holds the pairs within cutoff + skin + ``outer_skin``; it is built on the host by
  :func:`mtpjax.neighbors.pairs` (vesin), at allocation and, from inside jit (``jax.pure_callback``), when the atoms
  have moved too far for it;
- the *Verlet* list, the one the energy functions read, holds the pairs within cutoff + skin, filtered from the
  candidates on the device (a gather and a scatter: no host round trip). Its width is the most neighbours of any
  atom within cutoff + skin (times the capacity multiplier), not the candidates'.

``neighbor_fn.update`` is jit-safe. It keeps the Verlet list while it is provably complete: with d the largest
displacement of an atom since the build, measured in the build's cell (x h⁻¹ h₀ - x₀), and s the smallest singular
value of h₀⁻¹ h (how much the cell has shrunk any distance since the build), every pair missing from the list is
still farther apart than the potential's cutoff while ``margin = (cutoff + skin - 2 d) s - cutoff`` is positive. A box
change thus never leaves the list silently stale. The update rebuilds ahead of time: when the margin would reach zero
within two more steps at the last step's rate (the larger of the margin's own change and twice the largest
displacement of an atom in that step), since the integrators evaluate the forces at the next positions with the list
updated at the present ones. A rebuild filters the candidates when they still hold every pair within cutoff + skin
(the same bound, ``(cutoff + skin + outer_skin - 2 d') s' - (cutoff + skin) >= 0`` since the candidates' build), and
rebuilds them on the host first otherwise. When an atom has more neighbours than a capacity (Verlet or candidate),
the list is flagged (``did_buffer_overflow``): the caller re-allocates it outside jit (:meth:`NeighbourFns.reallocate`)
and reruns the steps (:func:`mtpjax.md.run.run_md` does this). And the energy functions check the list themselves:
given positions or a cell for which it may miss a pair (margin < 0), or an overflowed list, they return NaN (energy,
forces and virial), never a silently wrong number.

Cells are ASE's: lattice vectors in the rows (Å). Only cells periodic in all three directions.
"""
from __future__ import annotations

import math
from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..errors import MtpjaxError, StructureError
from ..evaluate import types_for_symbols
from ..neighbors import Neighbours, check_structure, dense_neighbours, pairs
from ..oracles import TabulatedEAM, ZhouEAM
from ..oracles.eam import full_list_energy_fn
from ..potential import energy, energy_forces_virial, pair_vectors

#: Default Verlet skin (Å): pairs within cutoff + skin are listed.
DEFAULT_SKIN = 0.5
#: Default capacity: the most neighbours of any atom at allocation times this, rounded up to a multiple of 4. Every
#: slot costs a force call as much as a pair does, and an overflow only costs a re-allocation (and a recompilation)
#: once: hcp Mg at 300 K (432 atoms, level-16 MTP, 7 Å list) kept within 1.1x (64 slots) with no overflow, and its MD
#: step took 61-63 µs/atom against 69-72 with jax-md's usual 1.25x (72 slots; docs/benchmarks/md.md).
DEFAULT_CAPACITY_MULTIPLIER = 1.1
#: How many steps ahead ``update`` rebuilds (at the last step's rate of approach).
LOOKAHEAD_STEPS = 2.0
#: The integer type of the lists' lattice shifts: a step through the loop copies the lists, and int8 holds a fifth of
#: float64's bytes (a cell would have to be thinner than (cutoff + skin + outer_skin) / 127 for it to overflow).
SHIFT_DTYPE = jnp.int8
#: Default extra skin (Å) of the candidate list beyond the Verlet list's cutoff + skin: the candidates are rebuilt on
#: the host only once an atom has moved about half of it. Thermal vibration alone carries the farthest atom of a
#: large crystal past 0.5 Å (hcp Mg at 300 K, 4056 atoms: 10 host builds in 300 steps with 1 Å, none with 1.5 Å, and
#: the step's CPU time 15 % lower on one thread: a host build costs ~20 device refilters).
DEFAULT_OUTER_SKIN = 1.5


class NeighbourList(eqx.Module):
    """A Verlet list at ``cutoff + skin`` over a candidate list at ``cutoff + skin + outer_skin`` (a pytree; jax-md's
    ``NeighborList`` role).

    ``neighbours``: the Verlet list's padded pairs (index (N, K) int32, shift (N, K, 3) int8, mask (N, K)); ``cell`` (3, 3)
    Å: the cell of the last update (the energy function's default cell); ``reference_position`` /
    ``reference_cell``: positions and cell at the Verlet list's last build; ``mapped_position``: the positions of the
    last update in that build's cell; ``margin``: the distance margin (Å) at the last update (see the module
    docstring); ``candidates``: the candidate list (N, K_c), built on the host at ``candidate_position`` /
    ``candidate_cell``; ``overflow``: an atom had more neighbours than a capacity at a build since allocation (the
    list is then incomplete); ``failed``: the host builder refused the positions at a build (NaN, overlapping atoms);
    ``max_count`` / ``max_candidate_count``: the most neighbours of any atom seen at a build of each list;
    ``n_builds``: Verlet-list builds since allocation; ``n_host_builds``: candidate-list (host) builds since allocation.
    """

    neighbours: Neighbours
    cell: jax.Array
    reference_position: jax.Array
    mapped_position: jax.Array
    reference_cell: jax.Array
    margin: jax.Array
    candidates: Neighbours
    candidate_position: jax.Array
    candidate_cell: jax.Array
    overflow: jax.Array
    failed: jax.Array
    max_count: jax.Array
    max_candidate_count: jax.Array
    n_builds: jax.Array
    n_host_builds: jax.Array
    update_fn: Callable = eqx.field(static=True)
    cutoff: float = eqx.field(static=True)
    list_cutoff: float = eqx.field(static=True)

    @property
    def did_buffer_overflow(self) -> jax.Array:
        """jax-md's name: True when the list must be re-allocated (it overflowed)."""
        return self.overflow

    @property
    def capacity(self) -> int:
        """Neighbour slots per atom of the Verlet list."""
        return int(self.neighbours.index.shape[-1])

    @property
    def candidate_capacity(self) -> int:
        """Neighbour slots per atom of the candidate list."""
        return int(self.candidates.index.shape[-1])

    def update(self, position, **kwargs) -> "NeighbourList":
        """``neighbor_fn.update(position, self, **kwargs)`` (jax-md's ``nbrs.update(R)``)."""
        return self.update_fn(position, self, **kwargs)


def capacity_for(count: int, multiplier: float) -> int:
    """Neighbour slots for at most ``count`` neighbours per atom: ``count * multiplier`` rounded up to a multiple of 4."""
    return max(4, 4 * math.ceil(max(int(count), 1) * float(multiplier) / 4))


def _host_pairs(positions, cell, list_cutoff: float):
    """(i, j, shift, per-atom counts) on the host."""
    i, j, shift = pairs(positions, cell, True, list_cutoff, name="MD frame")
    return i, j, shift, np.bincount(i, minlength=len(positions))


def inverse3(a):
    """Inverse of a 3x3 matrix by cross products (no LAPACK call: cheap inside a jitted loop on a CPU)."""
    c = jnp.stack([jnp.cross(a[1], a[2]), jnp.cross(a[2], a[0]), jnp.cross(a[0], a[1])], axis=1)
    return c / jnp.dot(a[0], c[:, 0])


def det3(a):
    """Determinant of a 3x3 matrix (the triple product)."""
    return jnp.dot(a[0], jnp.cross(a[1], a[2]))


def smallest_singular_value3(m):
    """The smallest singular value of a 3x3 matrix, in closed form (the trigonometric solution for the eigenvalues of
    the symmetric m^T m), less 1e-6 for its rounding near degenerate eigenvalues: a lower bound, without an SVD."""
    a = m.T @ m
    q = jnp.trace(a) / 3.0
    p1 = a[0, 1] ** 2 + a[0, 2] ** 2 + a[1, 2] ** 2
    p2 = (a[0, 0] - q) ** 2 + (a[1, 1] - q) ** 2 + (a[2, 2] - q) ** 2 + 2.0 * p1
    p = jnp.sqrt(p2 / 6.0)
    safe = jnp.where(p > 1e-30, p, 1.0)
    b = (a - q * jnp.eye(3, dtype=a.dtype)) / safe
    phi = jnp.arccos(jnp.clip(det3(b) / 2.0, -1.0, 1.0)) / 3.0
    smallest = jnp.where(p > 1e-30, q + 2.0 * p * jnp.cos(phi + 2.0 * jnp.pi / 3.0), q)
    return jnp.sqrt(jnp.maximum(smallest, 0.0)) - 1e-6


def _margin_terms(position, cell, reference_position, reference_cell, needed: float, listed: float):
    """(margin = (listed - 2 d) s - needed in Å: a list of the pairs within ``listed`` built at the reference positions
    and cell still holds every pair within ``needed`` while it is >= 0 (see the module docstring); the positions mapped
    into the reference cell; s). 3x3 algebra in closed form (LAPACK calls inside a jitted loop cost milliseconds each
    on a CPU)."""
    m = inverse3(reference_cell) @ cell  # h0^-1 h: r = r0_frame @ m
    mapped = position @ inverse3(m)  # x m^-1: positions in the build's cell
    d = jnp.sqrt(jnp.max(jnp.sum((mapped - reference_position) ** 2, axis=-1)))
    s = smallest_singular_value3(m)
    return (listed - 2.0 * d) * s - needed, mapped, s


def _distance_margin(position, cell, nbrs: NeighbourList):
    """The Verlet list's margin (Å) at positions and cell."""
    return _margin_terms(position, cell, nbrs.reference_position, nbrs.reference_cell, nbrs.cutoff, nbrs.list_cutoff)[0]


def filter_pairs(candidates: Neighbours, position, cell, cutoff: float, capacity: int):
    """The pairs of ``candidates`` within ``cutoff`` (Å) at positions (N, 3) and cell (3, 3), packed in their order
    into ``capacity`` slots per atom (the layout of :func:`mtpjax.neighbors.dense_neighbours`: padding index 0, shift
    0, mask False); jit-able. Returns (Neighbours, the most pairs of any atom: > capacity when some were dropped).

    One scatter (each kept candidate's column to its slot) and gathers of the index and shift through it: on a CPU,
    XLA's scatters cost several times its gathers (three scatters, one per array, took ~1.35x as long)."""
    r = pair_vectors(position, cell, candidates)
    keep = candidates.mask & (jnp.sum(r * r, axis=-1) < cutoff * cutoff)
    n, kc = candidates.index.shape
    slot = jnp.cumsum(keep, axis=1, dtype=jnp.int32) - 1
    slot = jnp.where(keep & (slot < capacity), slot, capacity)  # out of range: dropped by the scatter
    rows = jnp.arange(n)[:, None]
    column = jnp.broadcast_to(jnp.arange(kc, dtype=jnp.int32), (n, kc))
    source = jnp.zeros((n, capacity), jnp.int32).at[rows, slot].set(column, mode="drop")
    count = jnp.sum(keep, axis=1, dtype=jnp.int32)
    mask = jnp.arange(capacity) < count[:, None]
    index = jnp.where(mask, jnp.take_along_axis(candidates.index, source, axis=1), 0)
    shift = jnp.where(mask[..., None], jnp.take_along_axis(candidates.shift, source[..., None], axis=1), 0)
    return Neighbours(index, shift.astype(candidates.shift.dtype), mask), jnp.max(count)


class NeighbourFns:
    """``allocate`` and ``update`` of :class:`NeighbourList` for one potential cutoff, skin and candidate skin
    (jax-md's ``NeighborListFns`` interface: ``neighbor_fn.allocate(R, cell=...)``,
    ``neighbor_fn.update(R, nbrs, cell=...)``)."""

    def __init__(self, cutoff: float, skin: float = DEFAULT_SKIN, capacity_multiplier: float = DEFAULT_CAPACITY_MULTIPLIER,
                 outer_skin: float = DEFAULT_OUTER_SKIN):
        if not skin > 0:
            raise MtpjaxError(f"the neighbour-list skin must be > 0 Å, got {skin}")
        if not outer_skin > 0:
            raise MtpjaxError(f"the candidate list's extra skin must be > 0 Å, got {outer_skin}")
        if not capacity_multiplier >= 1:
            raise MtpjaxError(f"the capacity multiplier must be >= 1, got {capacity_multiplier}")
        self.cutoff, self.skin, self.capacity_multiplier = float(cutoff), float(skin), float(capacity_multiplier)
        self.outer_skin = float(outer_skin)
        self.list_cutoff = self.cutoff + self.skin
        self.candidate_cutoff = self.list_cutoff + self.outer_skin
        self._update = jax.jit(self._update_impl)
        self._filter = jax.jit(filter_pairs, static_argnums=(3, 4))

    def allocate(self, position, cell=None, *, extra: int = 0, capacity: int | None = None,
                 candidate_capacity: int | None = None, min_capacity: int = 0, min_candidate_capacity: int = 0,
                 **unused) -> NeighbourList:
        """A new list for positions (N, 3) Å in ``cell`` (3, 3) Å (rows: lattice vectors), on the host (not jit-able:
        the capacities depend on the positions). Capacities: ``capacity`` (Verlet) and ``candidate_capacity`` slots
        per atom, else the most neighbours of any atom within each list's cutoff times the capacity multiplier (plus
        ``extra`` for the Verlet list), and at least ``min_capacity`` and ``min_candidate_capacity``. Raises
        StructureError for bad positions or cells."""
        if cell is None:
            raise MtpjaxError("neighbor_fn.allocate needs the cell (3, 3) in Å (rows: lattice vectors)")
        position, cell_np, _ = check_structure(np.asarray(position), np.asarray(cell), True, "MD frame")
        i, j, shift, counts = _host_pairs(position, cell_np, self.candidate_cutoff)
        n_atoms = len(position)
        ccount = int(counts.max()) if len(counts) else 0
        kc = candidate_capacity if candidate_capacity is not None else max(
            capacity_for(ccount, self.capacity_multiplier), int(min_candidate_capacity))
        if ccount > kc:
            raise MtpjaxError(f"candidate capacity {kc} is below the {ccount} candidates of an atom")
        dtype = jnp.asarray(position).dtype
        pos, c = jnp.asarray(position, dtype), jnp.asarray(cell_np, dtype)
        if len(shift) and np.abs(shift).max() > np.iinfo(SHIFT_DTYPE).max:
            raise StructureError(f"MD frame: the cell is too thin for the neighbour list ({np.abs(shift).max()} images "
                                 f"of an atom along one lattice vector within {self.candidate_cutoff:g} Å)")
        cand = dense_neighbours(i, j, shift, n_atoms, n_atoms, kc, shift_dtype=SHIFT_DTYPE)
        cand = Neighbours(jnp.asarray(cand.index), jnp.asarray(cand.shift), jnp.asarray(cand.mask))
        _, count = self._filter(cand, pos, c, self.list_cutoff, kc)
        count = int(count)
        k = capacity if capacity is not None else max(capacity_for(count, self.capacity_multiplier) + int(extra),
                                                      int(min_capacity))
        if count > k:
            raise MtpjaxError(f"neighbour capacity {k} is below the {count} neighbours of an atom")
        verlet, _ = self._filter(cand, pos, c, self.list_cutoff, k)
        zero = jnp.asarray(0, jnp.int32)
        nbrs = NeighbourList(verlet, c, pos, pos, c, jnp.asarray(self.skin, dtype), cand, pos, c, jnp.asarray(False),
                             jnp.asarray(False), jnp.asarray(count, jnp.int32), jnp.asarray(ccount, jnp.int32), zero, zero,
                             self.update, self.cutoff, self.list_cutoff)
        return eqx.tree_at(lambda t: t.margin, nbrs, _distance_margin(pos, c, nbrs))

    def reallocate(self, position, cell, nbrs: NeighbourList) -> NeighbourList:
        """After an overflow (outside jit): a new list at the positions and cell with room for the most neighbours
        ``nbrs`` has seen (and at least 4 more slots than before in a list that overflowed)."""
        k = capacity_for(int(nbrs.max_count), self.capacity_multiplier)
        kc = capacity_for(int(nbrs.max_candidate_count), self.capacity_multiplier)
        if int(nbrs.max_count) > nbrs.capacity:
            k = max(k, nbrs.capacity + 4)
        if int(nbrs.max_candidate_count) > nbrs.candidate_capacity:
            kc = max(kc, nbrs.candidate_capacity + 4)
        return self.allocate(position, cell=cell, min_capacity=max(k, nbrs.capacity),
                             min_candidate_capacity=max(kc, nbrs.candidate_capacity))

    def update(self, position, neighbors: NeighbourList, cell=None, **unused) -> NeighbourList:
        """The list for the new positions (and ``cell``; default: the list's), rebuilt into the same capacity when it
        could miss a pair within the cutoff by the next step; jit-safe. Check ``did_buffer_overflow`` outside jit."""
        return self._update(position, neighbors, neighbors.cell if cell is None else cell)

    def _candidates_host(self, position, cell, capacity: int):
        """Host callback: (index, shift, mask, count, failed) of the candidates in ``capacity`` slots (truncated on
        overflow)."""
        position, cell = np.asarray(position), np.asarray(cell)
        n = len(position)
        try:
            i, j, shift, counts = _host_pairs(position, cell, self.candidate_cutoff)
            if len(shift) and np.abs(shift).max() > np.iinfo(SHIFT_DTYPE).max:
                raise ValueError("cell too thin")
        except (StructureError, ValueError, FloatingPointError):
            return (np.zeros((n, capacity), np.int32), np.zeros((n, capacity, 3), SHIFT_DTYPE),
                    np.zeros((n, capacity), bool), np.int32(0), np.bool_(True))
        count = int(counts.max()) if n else 0
        if count > capacity:  # keep the first `capacity` pairs of each atom: the list is flagged and rerun anyway
            starts = np.concatenate([[0], np.cumsum(counts)])
            keep = (np.arange(len(i)) - starts[i]) < capacity
            i, j, shift = i[keep], j[keep], shift[keep]
        nb = dense_neighbours(i, j, shift, n, n, capacity, shift_dtype=SHIFT_DTYPE)
        return (nb.index, nb.shift, nb.mask, np.int32(count), np.bool_(False))

    def _update_impl(self, position, nbrs: NeighbourList, cell):
        margin, mapped, s = _margin_terms(position, cell, nbrs.reference_position, nbrs.reference_cell, self.cutoff,
                                          self.list_cutoff)
        # how fast the margin may shrink: by what it shrank over the last step (the cell's part), or by twice the
        # largest displacement of an atom over the last step (any atom may become the farthest from its build position)
        moved = jnp.sqrt(jnp.max(jnp.sum((mapped - nbrs.mapped_position) ** 2, axis=-1)))
        approach = jnp.maximum(jnp.maximum(nbrs.margin - margin, 2.0 * moved * s), 0.0)
        stale = ~jnp.isfinite(margin) | (margin - LOOKAHEAD_STEPS * approach <= 0.0)

        def host_candidates(_):
            n, kc = nbrs.candidates.index.shape
            shapes = (jax.ShapeDtypeStruct((n, kc), jnp.int32), jax.ShapeDtypeStruct((n, kc, 3), SHIFT_DTYPE),
                      jax.ShapeDtypeStruct((n, kc), jnp.bool_), jax.ShapeDtypeStruct((), jnp.int32),
                      jax.ShapeDtypeStruct((), jnp.bool_))
            index, shift, mask, count, failed = jax.pure_callback(
                lambda p, c: self._candidates_host(p, c, kc), shapes, position, cell, vmap_method="sequential")
            return (Neighbours(index, shift, mask), position, cell, jnp.maximum(nbrs.max_candidate_count, count),
                    nbrs.overflow | (count > kc), nbrs.failed | failed, nbrs.n_host_builds + 1)

        def old_candidates(_):
            return (nbrs.candidates, nbrs.candidate_position, nbrs.candidate_cell, nbrs.max_candidate_count,
                    nbrs.overflow, nbrs.failed, nbrs.n_host_builds)

        def rebuild(_):
            # the candidates still hold every pair within cutoff + skin: filter them; else rebuild them on the host
            cmargin = _margin_terms(position, cell, nbrs.candidate_position, nbrs.candidate_cell, self.list_cutoff,
                                    self.candidate_cutoff)[0]
            cand, cpos, ccell, ccount, overflow, failed, host = jax.lax.cond(
                jnp.isfinite(cmargin) & (cmargin >= 0.0), old_candidates, host_candidates, None)
            verlet, count = filter_pairs(cand, position, cell, self.list_cutoff, nbrs.capacity)
            new = NeighbourList(verlet, cell, position, position, cell, nbrs.margin, cand, cpos, ccell,
                                overflow | (count > nbrs.capacity), failed, jnp.maximum(nbrs.max_count, count), ccount,
                                nbrs.n_builds + 1, host, nbrs.update_fn, nbrs.cutoff, nbrs.list_cutoff)
            return eqx.tree_at(lambda t: t.margin, new, _distance_margin(position, cell, new))

        def keep(_):
            return eqx.tree_at(lambda t: (t.cell, t.margin, t.mapped_position), nbrs, (cell, margin, mapped))

        return jax.lax.cond(stale, rebuild, keep, None)


def potential_types(potential, structure, species=None) -> np.ndarray:
    """Types (N,) 0..S-1 of a structure: ``structure`` an ``ase.Atoms`` (its ``mlip_type`` array, else its symbols
    through ``species`` or the potential's own species list) or already an integer array."""
    if hasattr(structure, "get_chemical_symbols"):
        if "mlip_type" in structure.arrays:
            return np.asarray(structure.arrays["mlip_type"], dtype=np.int64)
        own = getattr(potential, "species", None)
        species = list(species) if species is not None else (list(own) if own else None)
        return types_for_symbols(structure.get_chemical_symbols(), species, potential.n_species,
                                 structure.get_chemical_formula())
    types = np.asarray(structure)
    if types.ndim != 1 or not np.issubdtype(types.dtype, np.integer):
        raise MtpjaxError("give an ase.Atoms or the types (N,) as integers 0..S-1")
    if types.size and (types.min() < 0 or types.max() >= potential.n_species):
        raise MtpjaxError(f"types must lie in 0..{potential.n_species - 1}")
    return types


def energy_fn(potential, structure, *, species=None, skin: float = DEFAULT_SKIN,
              capacity_multiplier: float = DEFAULT_CAPACITY_MULTIPLIER, outer_skin: float = DEFAULT_OUTER_SKIN,
              full_list_forces: bool = False, **kw):
    """jax-md's ``(energy_fn, neighbor_fn)`` for any JAX potential (an MTP, ZhouEAM, TabulatedEAM, LennardJones).

    ``structure``: an ``ase.Atoms`` or the types (N,) (see :func:`potential_types`). ``energy_fn(R, neighbor,
    cell=None, **ignored)`` is the total energy in eV of positions R (N, 3) Å (not necessarily wrapped) in ``cell``
    (default: ``neighbor.cell``), differentiable in R and cell; ``neighbor_fn`` is a :class:`NeighbourFns`
    (``allocate(R, cell=...)`` on the host, ``update(R, nbrs, cell=...)`` under jit). ``kw`` goes to the potential
    (an MTP's ``chunk``). Usage with jax-md::

        energy, neighbor_fn = mtpjax.md.energy_fn(mtp, atoms)
        nbrs = neighbor_fn.allocate(atoms.positions, cell=atoms.cell.array)
        init, step = jax_md.simulate.nve(energy, mtpjax.md.shift_fn, dt)
        state = step(state, neighbor=nbrs); nbrs = neighbor_fn.update(state.position, nbrs)

    ``full_list_forces``: for the EAM oracles (:class:`~mtpjax.oracles.ZhouEAM`, :class:`~mtpjax.oracles.TabulatedEAM`),
    take the first derivatives from :func:`mtpjax.oracles.eam.full_list_energy_fn` (no scatter-add over neighbours;
    reverse mode and first order only, which is all an NVE/NVT integrator needs; the MD integrators turn it on).
    Other potentials ignore it.
    """
    types = jnp.asarray(potential_types(potential, structure, species), jnp.int32)
    if full_list_forces and isinstance(potential, (ZhouEAM, TabulatedEAM)) and not kw:
        full_list_energy = full_list_energy_fn(potential)

        def fn(R, neighbor: NeighbourList, cell=None, **unused):
            cell = neighbor.cell if cell is None else cell
            return guarded(full_list_energy(R, cell, types, neighbor.neighbours), R, cell, neighbor)
    else:
        def fn(R, neighbor: NeighbourList, cell=None, **unused):
            cell = neighbor.cell if cell is None else cell
            return guarded(energy(potential, R, cell, types, neighbor.neighbours, **kw), R, cell, neighbor)

    return fn, NeighbourFns(potential.cutoff, skin, capacity_multiplier, outer_skin)


def list_is_valid(R, cell, neighbor: NeighbourList):
    """Whether the list holds every pair within the cutoff at positions R and ``cell`` (the margin of the module
    docstring is >= 0) and did not overflow."""
    margin = _distance_margin(jax.lax.stop_gradient(R), jax.lax.stop_gradient(cell), neighbor)
    return (margin >= 0.0) & ~neighbor.overflow


def guarded(e, R, cell, neighbor: NeighbourList):
    """``e``, or NaN where the list is not valid for (R, cell) (:func:`list_is_valid`): a stale or overflowed list
    never gives a silently wrong energy (the forces, the gradient of a NaN, are NaN too; :func:`efs_fn` returns NaN
    energy with them)."""
    return e * jnp.where(list_is_valid(R, cell, neighbor), 1.0, jnp.nan)


def shift_fn(R, dR, **unused):
    """jax-md's shift function for unwrapped Cartesian positions (``space.free()``'s): R + dR."""
    return R + dR


def efs_fn(potential, structure, *, species=None, **kw):
    """``fn(R, neighbor, cell=None) -> (energy eV, forces (N, 3) eV/Å, virial (3, 3) eV)``, all by autodiff
    (:func:`mtpjax.potential.energy_forces_virial`: the virial is -dE/dε, MLIP's PlusStress, -V·σ)."""
    types = jnp.asarray(potential_types(potential, structure, species), jnp.int32)

    def fn(R, neighbor: NeighbourList, cell=None, **unused):
        cell = neighbor.cell if cell is None else cell
        e, f, w = energy_forces_virial(potential, R, cell, types, neighbor.neighbours, **kw)
        return guarded(e, R, cell, neighbor), f, w

    return fn


def volume(cell):
    """|det cell| in Å³."""
    return jnp.abs(det3(cell))


def kinetic_tensor(momentum, mass):
    """sum_i p_i p_i^T / m_i (3, 3) in eV (momenta in amu·Å/ASE-time, masses (N,) or (N, 1) in amu)."""
    m = jnp.reshape(mass, (-1, 1)) if jnp.ndim(mass) else mass
    return (momentum / m).T @ momentum


def stress(virial, cell, momentum=None, mass=None):
    """ASE's stress tensor (3, 3) in eV/Å³ (positive in tension): -(virial + sum p p^T/m) / V; the kinetic (ideal-gas)
    term only when momenta and masses are given."""
    w = virial if momentum is None else virial + kinetic_tensor(momentum, mass)
    return -w / volume(cell)


def pressure(virial, cell, momentum=None, mass=None):
    """Pressure -tr(stress)/3 in eV/Å³ (see :func:`stress`; times :data:`mtpjax.units.EV_PER_A3_TO_GPA` for GPa)."""
    return -jnp.trace(stress(virial, cell, momentum, mass)) / 3.0


def min_distance(R, neighbor: NeighbourList, cell=None):
    """The shortest listed pair distance in Å (inf when there is none)."""
    r = pair_vectors(R, neighbor.cell if cell is None else cell, neighbor.neighbours)
    d2 = jnp.where(neighbor.neighbours.mask, jnp.sum(r * r, axis=-1), jnp.inf)
    return jnp.sqrt(jnp.min(d2))
