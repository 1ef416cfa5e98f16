"""A fast gradient of MLIP's training loss with respect to the MTP coefficients.

``jax.grad`` of the loss differentiates the forces, themselves a reverse-mode derivative, a second time in
reverse mode, through the pair stage of every neighbour (about 5x the cost of energy + forces). This module
computes the same gradient with much less work, from two facts:

1. With u = dL/d(prediction) held fixed, the loss gradient is the gradient of the scalar
   Phi(theta) = sum_s dL/dE_s E_s + directional derivative of E along the positions and strains (dL/dF, dL/dV),
   i.e. one forward-mode derivative of the energy (:func:`pair_directions`).
2. The coefficients enter the pair stage linearly: the basic moments are M_{mu,m}(i) = sum_beta c_{mu beta}
   P_{beta m}(i) with P_{beta m}(i) = sum_j Q_beta(r_ij) u_ij^m independent of the coefficients. So P and its
   directional derivative dP are computed once per step in forward mode, and everything that depends on the
   coefficients is per atom (the moment contractions), never per pair.

:func:`batch_loss` is the loss of one batch as a ``jax.custom_vjp`` whose backward pass returns this gradient;
its value is the ordinary loss. It is a first derivative only (the gradient is not itself differentiable), and only
with respect to the trained coefficients: ``scaling``, ``min_dist``, ``max_dist`` and the data get zero cotangents
(use ``LossConfig(fast_gradient=False)`` to differentiate with respect to those).
Used by :func:`mtpjax.fit.loss.loss` when ``LossConfig.fast_gradient`` (the default).
``tests/test_fit_gradient.py`` compares it with ``jax.grad`` of the plain loss and with finite differences.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ..contraction import monomials, scalar_basis_vjp
from ..model import MTP, pair_geometry, radial_basis_values
from ..potential import pair_vectors
from .params import with_trainable
from .residuals import weighted_residuals


def _terms(mtp: MTP, lb, cfg):
    """(loss value of the batch, dL/dE (B,), dL/dF (N, 3), dL/dV (B, 3, 3)) with the predictions of ``mtp``."""
    (ce, de), (cf, df), (cv, dv) = weighted_residuals(mtp, lb, cfg)
    value = jnp.sum(ce * de**2) + jnp.sum(cf * df**2) + jnp.sum(cv * dv**2)
    return value, 2.0 * ce * de, 2.0 * cf * df, 2.0 * cv * dv


def pair_directions(R, lb, g_forces, g_virial):
    """The change dR (N, n_nb, 3) of every pair vector R along which the energy's derivative reproduces the force and
    virial terms of the loss: positions move by -dL/dF, and each structure is strained by -(dL/dV)^T."""
    b = lb.batch
    dpos = -g_forces
    dstrain = -jnp.swapaxes(g_virial, -1, -2)
    return dpos[b.nbrs.index] - dpos[:, None, :] + jnp.einsum("inc,icd->ind", R, dstrain[b.structure])


def pair_basis(mtp: MTP, R, tj, mask):
    """P (S, R_b, n_mono, c): sum_j [type_j = s] Q_beta(r_ij) u_ij^m over the pairs R (c, n_nb, 3) of c atoms."""
    r, u, inside = pair_geometry(mtp, R, mask)
    Q = radial_basis_values(mtp, r, inside)  # (R_b, c, n_nb)
    mono = monomials(mtp.plan, u)[: max(mtp.plan.radial_prefix)]  # (n_mono, c, n_nb)
    S = mtp.n_species
    if S == 1:
        return jnp.transpose(jnp.einsum("bin,min->ibm", Q, mono), (1, 2, 0))[None]
    onehot = jax.nn.one_hot(tj, S, dtype=Q.dtype)  # (c, n_nb, S)
    return jnp.transpose(jnp.einsum("bin,ins,min->isbm", Q, onehot, mono), (1, 2, 3, 0))


def gradient_chunk(mtp: MTP, n_atoms: int, n_nb: int) -> int:
    """Atoms per chunk of the gradient: all of them on accelerators; on CPU a working set of ~2 MiB per chunk."""
    if jax.default_backend() != "cpu":
        return max(n_atoms, 1)
    per_atom = 16 * max(n_nb, 1) * (max(mtp.plan.radial_prefix) + mtp.radial_basis_size)
    c = int(np.clip((1 << 21) // per_atom, 4, 64)) // 4 * 4
    return min(c, -(-max(n_atoms, 1) // 4) * 4)


def _basic_from_pair_basis(mtp: MTP, P, onehot):
    """Basic moments (n_basic, c) from P (S, R_b, n_mono, c) and the central atoms' one-hot types (c, S)."""
    plan = mtp.plan
    Ci = jnp.einsum("is,szkb->izkb", onehot, mtp.radial_coeffs)  # (c, S, K, R_b)
    rows = [jnp.einsum("izb,zbmi->mi", Ci[:, :, k], P[:, :, :n]) for k, n in enumerate(plan.radial_prefix) if n]
    return jnp.concatenate(rows)[plan.basic_row]


def _chunk_gradient(mtp: MTP, R, dR, tj, mask, ti, w):
    """Gradient of Phi (see the module docstring) over one chunk of atoms: (d/d radial (S, S, K, R_b), d/d species
    (S,), d/d moment (n_B,)). ``w`` (c,): dL/dE of each atom's structure (0 for padding)."""
    plan = mtp.plan
    P, dP = jax.jvp(lambda x: pair_basis(mtp, x, tj, mask), (R,), (dR,))
    onehot = jax.nn.one_hot(ti, mtp.n_species, dtype=P.dtype)  # padding atoms (-1): zeros
    M, dM = _basic_from_pair_basis(mtp, P, onehot), _basic_from_pair_basis(mtp, dP, onehot)
    coeffs = jnp.broadcast_to(mtp.moment_coeffs[:, None], (mtp.moment_coeffs.shape[0], M.shape[1]))
    (B, gV), (dB, HdM) = jax.jvp(lambda x: scalar_basis_vjp(plan, x, coeffs), (M,), (dM,))
    g_moment = B @ w + jnp.sum(dB, axis=1)
    g_species = onehot.T @ w
    # cotangents of the basic moments (lam) and of their directional derivatives (lam_d), in (mu, monomial) rows
    n_rows = int(sum(plan.radial_prefix))
    inv = np.full(n_rows, plan.n_basic)
    inv[plan.basic_row] = np.arange(plan.n_basic)
    zero = jnp.zeros((1, M.shape[1]), M.dtype)
    lam = jnp.concatenate([w * gV + HdM, zero])[inv]
    lam_d = jnp.concatenate([gV, zero])[inv]
    S, Rb = mtp.n_species, mtp.radial_basis_size
    g_radial, start = [], 0
    for k, n in enumerate(plan.radial_prefix):
        if n == 0:
            g_radial.append(jnp.zeros((S, S, Rb), M.dtype))
            continue
        lk, ldk = lam[start : start + n], lam_d[start : start + n]
        start += n
        g_radial.append(jnp.einsum("is,mi,zbmi->szb", onehot, lk, P[:, :, :n])
                        + jnp.einsum("is,mi,zbmi->szb", onehot, ldk, dP[:, :, :n]))
    return jnp.stack(g_radial, axis=2), g_species, g_moment


def value_and_gradient(mtp: MTP, lb, cfg):
    """(loss of one packed batch, its gradient (radial, species, moment coefficients)); the loss is the sum of
    :func:`mtpjax.fit.residuals.batch_loss_terms`, not yet divided by the number of structures."""
    mtp = jax.lax.stop_gradient(mtp)
    b = lb.batch
    value, g_e, g_f, g_v = _terms(mtp, lb, cfg)
    R = pair_vectors(b.positions, b.cells, b.nbrs, b.structure)
    dR = pair_directions(R, lb, g_f, g_v)
    species = b.species
    w = jnp.where(species >= 0, g_e[b.structure], 0.0)
    tj = species[b.nbrs.index]
    mask = b.nbrs.mask & (species >= 0)[:, None]
    n, n_nb = R.shape[0], R.shape[1]
    c = gradient_chunk(mtp, n, n_nb)
    pad = -n % c
    args = (R, dR, tj, mask, species, w)
    if pad:  # padding atoms: species -1, no pairs
        args = tuple(jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1), constant_values=fill)
                     for x, fill in zip(args, (0.0, 0.0, -1, False, -1, 0.0)))
    n_chunks = (n + pad) // c
    if n_chunks == 1:
        grads = _chunk_gradient(mtp, *args)
    else:
        chunks = tuple(x.reshape((n_chunks, c) + x.shape[1:]) for x in args)
        grads = jax.tree.map(lambda g: jnp.sum(g, axis=0), jax.lax.map(lambda a: _chunk_gradient(mtp, *a), chunks))
    return value, grads


@partial(jax.custom_vjp, nondiff_argnums=(3,))
def _loss(theta, mtp, lb, cfg):
    return _terms(with_trainable(mtp, theta), lb, cfg)[0]


def _loss_fwd(theta, mtp, lb, cfg):
    value, grads = value_and_gradient(with_trainable(mtp, theta), lb, cfg)
    return value, grads


def _loss_bwd(cfg, grads, g):
    return tuple(g * x for x in grads), None, None


_loss.defvjp(_loss_fwd, _loss_bwd)


def batch_loss(mtp: MTP, lb, cfg):
    """The loss terms of one batch, summed (not divided by the number of structures), differentiable (first order)
    with respect to the radial, species and moment coefficients through the fast gradient."""
    return _loss((mtp.radial_coeffs, mtp.species_coeffs, mtp.moment_coeffs), mtp, lb, cfg)
