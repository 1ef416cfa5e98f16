"""The trained coefficients of an MTP as the optimisers see them, and models stacked along a leading axis.

The trained leaves are (radial, species, moment) coefficients (:func:`trainable`); ``scaling``, ``min_dist`` and
``max_dist`` stay fixed during a fit. The gradient optimisers work on ``scaled`` variables phi = theta * scale, where
the scale of each linear coefficient is the square root of the loss's curvature along it (from the exact linear
solve, :func:`scale_from_diagonal`) and 1 for the radial coefficients.

Stacked models (:func:`stack_models`) have a leading model axis on every array leaf; every helper here works on a
single model and on a stack alike, except :func:`scale_from_diagonal` (one model).
"""
from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..errors import MtpjaxError
from ..model import MTP


def trainable(mtp: MTP) -> tuple:
    """(radial, species, moment) coefficients."""
    return (mtp.radial_coeffs, mtp.species_coeffs, mtp.moment_coeffs)


def with_trainable(mtp: MTP, params) -> MTP:
    """``mtp`` with its (radial, species, moment) coefficients replaced by ``params``."""
    return eqx.tree_at(lambda m: (m.radial_coeffs, m.species_coeffs, m.moment_coeffs), mtp, tuple(params))


def unit_scale(mtp: MTP) -> tuple:
    """No preconditioning: ones shaped as :func:`trainable`."""
    return tuple(jnp.ones_like(x) for x in trainable(mtp))


def scale_from_diagonal(mtp: MTP, diag) -> tuple:
    """Diagonal preconditioner of one model: the optimiser works on phi = theta * sqrt(curvature) for the linear
    coefficients (``diag``: the normal matrix's diagonal / n_structures, species first, from
    :func:`mtpjax.fit.linear.linear_solve`)."""
    S = mtp.species_coeffs.shape[0]
    d = np.sqrt(np.maximum(diag, 1e-12 * max(float(np.max(diag)), 1e-300)))
    dt = mtp.moment_coeffs.dtype
    return (jnp.ones_like(mtp.radial_coeffs), jnp.asarray(d[:S], dt), jnp.asarray(d[S:], dt))


def scaled(params, scale) -> tuple:
    return tuple(p * s for p, s in zip(params, scale))


def unscaled(params, scale) -> tuple:
    return tuple(p / s for p, s in zip(params, scale))


def stack(trees):
    """Stack pytrees of the same structure along a new leading axis."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def unstack(tree, n: int) -> list:
    """The ``n`` pytrees of a stack (the inverse of :func:`stack`)."""
    return [jax.tree.map(lambda x, k=k: x[k], tree) for k in range(n)]


def stack_models(mtps) -> MTP:
    """One MTP pytree with a leading model axis on every leaf. The models must share the basis and species."""
    first = mtps[0]
    for m in mtps[1:]:
        if m.plan != first.plan or m.species != first.species or m.radial_coeffs.shape != first.radial_coeffs.shape:
            raise MtpjaxError("models trained together must have the same level, species and radial basis size")
    return stack(mtps)


def n_models(models: MTP) -> int:
    """Number of models in a stack (the leading axis of its leaves)."""
    return int(models.moment_coeffs.shape[0])


def unstack_models(models: MTP) -> list[MTP]:
    """The single models of a stack."""
    return unstack(models, n_models(models))


def select(keep, new, old):
    """Per model (leading axis), ``new`` where ``keep`` (bool (M,)) else ``old``; the same tree structure."""
    keep = np.asarray(keep, bool)
    if keep.all():
        return new
    if not keep.any():
        return old
    k = jnp.asarray(keep)
    return jax.tree.map(lambda a, b: jnp.where(k.reshape((-1,) + (1,) * (jnp.ndim(a) - 1)), a, b), new, old)
