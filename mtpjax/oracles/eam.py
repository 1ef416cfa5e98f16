"""The embedded-atom method, shared by the analytic (:mod:`.zhou`) and tabulated (:mod:`.eam_tabulated`) oracles.

Site energy of atom i (type a), in eV:

    V_i = F_a(rho_i) + 1/2 sum_j phi_ab(r_ij),      rho_i = sum_j rho_{b->a}(r_ij)

over the neighbours j (type b) with r_ij < cutoff (Å). ``rho_{b->a}`` is the density that an atom of
type b puts on an atom of type a (Finnis–Sinclair); for ordinary (setfl/alloy) EAM it depends on b only.
An atom's own density is never included. Forces and stress follow by autodiff (:mod:`mtpjax.potential`).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from ..potential import pair_vectors
from .base import safe_distances


def eam_site_energies(R, types, nbrs, cutoff: float, pair: Callable, density: Callable, embed: Callable):
    """Site energies (N,) in eV.

    ``pair(r, a, b)`` -> phi_ab(r) eV, ``density(r, a, b)`` -> rho_{b->a}(r) and ``embed(rho, a)`` -> F_a(rho) eV
    are elementwise in r (Å) with broadcast integer type arrays a (central) and b (neighbour). Padding atoms
    (type -1) get exactly zero.
    """
    r, inside = safe_distances(R, nbrs.mask, cutoff)
    a = jnp.maximum(types, 0)
    b = a[nbrs.index]
    ac = jnp.broadcast_to(a[:, None], r.shape)
    phi = jnp.where(inside, pair(r, ac, b), 0.0)
    rho = jnp.sum(jnp.where(inside, density(r, ac, b), 0.0), axis=1)
    e = embed(rho, a) + 0.5 * jnp.sum(phi, axis=1)
    return jnp.where(types >= 0, e, 0.0)


def eam_dimer_energy(r, a, b, pair: Callable, density: Callable, embed: Callable):
    """Binding energy (eV) of an isolated pair of atoms of types a and b at distance r (Å), relative to the two
    atoms far apart: F_a(rho_{b->a}(r)) - F_a(0) + F_b(rho_{a->b}(r)) - F_b(0) + phi_ab(r) (no cutoff applied:
    r below the oracle's cutoff). Same broadcasting as :func:`eam_site_energies`' functions."""
    zero = jnp.zeros_like(r)
    return (embed(density(r, a, b), a) - embed(zero, a) + embed(density(r, b, a), b) - embed(zero, b)
            + pair(r, a, b))


def value_and_slope(f: Callable, x):
    """(f(x), f'(x)) of an elementwise function f in one forward-mode pass."""
    return jax.jvp(f, (x,), (jnp.ones_like(x),))


def full_list_energy_fn(potential) -> Callable:
    """``energy(positions, cell, types, nbrs)`` in eV of an EAM potential (``pair``, ``density``, ``embed`` and
    ``cutoff`` as for :func:`eam_site_energies`, whose sum it equals), whose first derivatives in positions (N, 3) Å
    and cell (3, 3) Å come from a custom VJP made for a *full* neighbour list (every pair listed from both atoms, as
    all of mtpjax's lists are; one cell, no batch):

        dE/dx_i = -sum_k [phi'(r) + F'_a(rho_i) rho'_{b->a}(r) + F'_b(rho_j) rho'_{a->b}(r)] r_ik / r

    over the slots k of atom i (neighbour j = index[i, k], types a and b; padding atoms contribute nothing). Every
    term is on atom i's own row: a gather of F'(rho_j) replaces the scatter-add over j that autodiff's transpose
    of the pair-vector gather costs. The cell's derivative is sum_k shift_ik ⊗ dE/dr_ik as in autodiff. Reverse
    mode, first order only (``jax.jvp``/``jax.hessian`` raise); it is what the MD integrators use for the forces
    (:func:`mtpjax.md.energy.energy_fn` with ``full_list_forces``). The potential is closed over (its tables are
    constants here: differentiate :func:`mtpjax.potential.energy` for parameter gradients)."""
    def parts(positions, cell, types, nbrs):
        rv = pair_vectors(positions, cell, nbrs)
        r, inside = safe_distances(rv, nbrs.mask, potential.cutoff)
        real = types >= 0
        a = jnp.maximum(types, 0)
        b = a[nbrs.index]
        ac = jnp.broadcast_to(a[:, None], r.shape)
        z = jnp.where(inside, 1.0, 0.0)
        rho_in, drho_in = value_and_slope(lambda x: potential.density(x, ac, b), r)  # rho_{b->a}: on i from j
        phi, dphi = value_and_slope(lambda x: potential.pair(x, ac, b), r)
        if potential.n_species == 1:
            drho_out, dphi_out = drho_in, dphi
        else:
            drho_out = value_and_slope(lambda x: potential.density(x, b, ac), r)[1]  # rho_{a->b}: on j from i
            dphi_out = value_and_slope(lambda x: potential.pair(x, b, ac), r)[1]
        rho = jnp.sum(z * rho_in, axis=1)
        F, dF = value_and_slope(lambda x: potential.embed(x, a), rho)
        dF = jnp.where(real, dF, 0.0)
        e = jnp.sum(jnp.where(real, F + 0.5 * jnp.sum(z * phi, axis=1), 0.0))
        real_j = real[nbrs.index]
        own = z * (0.5 * dphi * real[:, None] + dF[:, None] * drho_in) / r  # dE/dr_ik = own * r_ik (this slot alone)
        both = own + z * (0.5 * dphi_out * real_j + dF[nbrs.index] * drho_out) / r  # + the mirror slot's term
        return e, rv, own, both

    @jax.custom_vjp
    def energy(positions, cell, types, nbrs):
        return parts(positions, cell, types, nbrs)[0]

    def forward(positions, cell, types, nbrs):
        e, rv, own, both = parts(positions, cell, types, nbrs)
        return e, (rv, own, both, nbrs.shift)

    def backward(res, g):
        rv, own, both, shift = res
        d_pos = -g * jnp.sum(both[..., None] * rv, axis=1)
        d_cell = g * jnp.einsum("ika,ikb->ab", shift.astype(rv.dtype), own[..., None] * rv)
        return d_pos, d_cell, None, None

    energy.defvjp(forward, backward)
    return energy
