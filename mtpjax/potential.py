"""The one potential protocol shared by MTPs and oracles, and the energy functions built on it.

A *JAX potential* is an equinox module (its parameters are the pytree leaves) with

- ``cutoff`` (host float, Å): pairs at r >= cutoff do not interact;
- ``n_species`` (int) and ``species`` (tuple of element symbols of types 0..S-1, or None);
- ``site_energies_from_pairs(R, types, nbrs, **kw)``: site energies (N,) in eV from the pair vectors
  R (N, n_nb, 3) in Å, types (N,) with -1 for padding atoms, and the padded :class:`Neighbours`.

Everything else (total energy, forces, virial, batches of structures) follows here, through autodiff, for
any potential. Units: Å, eV, eV/Å; the virial is in eV (MLIP's ``PlusStress`` = -V·σ = -dE/dε).
Keyword arguments ``**kw`` are passed through to ``site_energies_from_pairs`` (the MTP's ``chunk`` and
``use_custom_vjp``); potentials ignore the ones they do not use.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import jax
import jax.numpy as jnp

from .neighbors import Neighbours
from .units import stress_to_voigt


@runtime_checkable
class Potential(Protocol):
    """What every JAX potential provides (see the module docstring)."""

    @property
    def cutoff(self) -> float: ...

    @property
    def n_species(self) -> int: ...

    def site_energies_from_pairs(self, R, types, nbrs: Neighbours, **kw): ...


def pair_vectors(positions, cell, nbrs: Neighbours, structure=None):
    """r_ij (N, n_nb, 3) in Å. ``cell`` is (3, 3), or (B, 3, 3) with ``structure`` (N,) the structure of each atom
    (a batch of structures packed as one disjoint union)."""
    if cell.ndim == 2:
        lattice = nbrs.shift @ cell
    else:
        lattice = jnp.einsum("inc,icd->ind", nbrs.shift, cell[structure])
    return positions[nbrs.index] - positions[:, None, :] + lattice


def site_energies(potential, positions, cell, species, nbrs: Neighbours, *, structure=None, **kw):
    """Site energies V_i (eV), shape (N,). ``species`` holds types 0..S-1, and -1 for padding atoms."""
    return potential.site_energies_from_pairs(pair_vectors(positions, cell, nbrs, structure), species, nbrs, **kw)


def energy(potential, positions, cell, species, nbrs: Neighbours, **kw):
    """Total energy E = sum_i V_i (eV) of one structure."""
    return jnp.sum(site_energies(potential, positions, cell, species, nbrs, **kw))


def _strained_energy(strain, positions, potential, cell, species, nbrs, structure, kw):
    """Energy under the homogeneous deformation F = I + strain: every r_ij -> r_ij F (of its own structure)."""
    R = pair_vectors(positions, cell, nbrs, structure)
    eye = jnp.eye(3, dtype=positions.dtype)
    if strain.ndim == 2:
        R = R @ (eye + strain)
    else:
        R = jnp.einsum("inc,icd->ind", R, (eye + strain)[structure])
    V = potential.site_energies_from_pairs(R, species, nbrs, **kw)
    return jnp.sum(V), V


def energy_forces_virial(potential, positions, cell, species, nbrs: Neighbours, **kw):
    """(E in eV, forces (N, 3) in eV/Å, virial (3, 3) in eV).

    Forces are -dE/dx; the virial is -dE/dε for the homogeneous strain x -> x(I + ε), cell -> cell(I + ε),
    i.e. MLIP's PlusStress and -V·σ.
    """
    e, f, v, _ = energy_forces_virial_sites(potential, positions, cell, species, nbrs, **kw)
    return e, f, v


def energy_forces_virial_sites(potential, positions, cell, species, nbrs: Neighbours, *, structure=None, **kw):
    """As :func:`energy_forces_virial`, plus the site energies (N,) in eV.

    For a packed batch, ``cell`` is (B, 3, 3) and ``structure`` (N,) gives each atom's structure; energies (B,)
    and virials (B, 3, 3) are then per structure.
    """
    batched = cell.ndim == 3
    zero = jnp.zeros(cell.shape, positions.dtype)
    (e, sites), (g_strain, g_pos) = jax.value_and_grad(_strained_energy, argnums=(0, 1), has_aux=True)(
        zero, positions, potential, cell, species, nbrs, structure, kw
    )
    if batched:
        e = jax.ops.segment_sum(sites, structure, num_segments=cell.shape[0])
    return e, -g_pos, -jnp.swapaxes(g_strain, -1, -2), sites


def virial_to_plus_stress(virial):
    """3x3 virial -> MLIP's PlusStress order (xx, yy, zz, yz, xz, xy), eV (:func:`mtpjax.units.stress_to_voigt`)."""
    return stress_to_voigt(jnp.asarray(virial))


