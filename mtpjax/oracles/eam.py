"""The embedded-atom method, shared by the analytic (:mod:`.zhou`) and tabulated (:mod:`.eam_tabulated`) oracles.

Site energy of atom i (type a), in eV:

    V_i = F_a(rho_i) + 1/2 sum_j phi_ab(r_ij),      rho_i = sum_j rho_{b->a}(r_ij)

over the neighbours j (type b) with r_ij < cutoff (Å). ``rho_{b->a}`` is the density that an atom of
type b puts on an atom of type a (Finnis–Sinclair); for ordinary (setfl/alloy) EAM it depends on b only.
An atom's own density is never included. Forces and stress follow by autodiff (:mod:`mtpjax.potential`).
"""
from __future__ import annotations

from typing import Callable

import jax.numpy as jnp

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
