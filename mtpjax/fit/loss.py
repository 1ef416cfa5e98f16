"""MLIP's objective over all batches (:func:`loss`) and the RMSE of a fitted model (:func:`errors`).

The per-batch terms are in :mod:`mtpjax.fit.residuals`; the fast gradient of a batch's loss in
:mod:`mtpjax.fit.gradient`.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ..data import unstack
from ..evaluate import EV_PER_A3_TO_GPA
from ..model import MTP
from .gradient import batch_loss
from .jacobian import penalty_residuals
from .residuals import LossConfig, batch_loss_terms, efs


def radial_penalty(mtp: MTP):
    """sum_mu (|c_mu|^2 - 1)^2 + sum_{mu<nu} (c_mu . c_nu)^2 over the radial coefficient vectors: the sum of squares of
    :func:`mtpjax.fit.jacobian.penalty_residuals` (the form Levenberg-Marquardt works with)."""
    return jnp.sum(penalty_residuals(mtp) ** 2)


def loss(mtp: MTP, batches, cfg: LossConfig, n_structures: int):
    """MLIP's objective over all batches (a full-batch loss). A batch stacked along a leading (device) axis, as
    from :func:`mtpjax.data.pack_for_devices`, is evaluated with vmap, which XLA splits over the devices that
    axis is sharded on.

    With ``cfg.fast_gradient`` (default) its gradient with respect to the radial, species and moment coefficients
    comes from :mod:`mtpjax.fit.gradient` (first derivatives only); otherwise from plain autodiff."""

    def one(b):
        return batch_loss(mtp, b, cfg) if cfg.fast_gradient else sum(batch_loss_terms(mtp, b, cfg))

    total = 0.0
    for lb in batches:
        total = total + (jnp.sum(jax.vmap(one)(lb)) if lb.weight.ndim == 2 else one(lb))
    return total / n_structures + cfg.penalty_weight * radial_penalty(mtp)


def count_structures(batches) -> int:
    """Real (weight > 0) structures in packed batches."""
    return int(sum(int(np.sum(np.asarray(lb.weight) > 0)) for lb in batches))


def flat_batches(batches) -> list:
    """Batches with stacked (device-axis) batches split into their parts."""
    out = []
    for lb in batches:
        out += unstack(lb) if np.ndim(lb.weight) == 2 else [lb]
    return out


_efs_jit = jax.jit(efs)


def errors(mtp: MTP, batches, subsets) -> dict:
    """RMSE of energy (meV/atom), forces (eV/Å) and stress (GPa), overall and per subset."""
    batches = flat_batches(batches)
    acc = {}

    def add(key, kind, sq, count):
        d = acc.setdefault(key, {})
        s, c = d.get(kind, (0.0, 0))
        d[kind] = (s + float(sq), c + int(count))

    for lb in batches:
        e, f, v, _ = (np.asarray(x) for x in _efs_jit(mtp, jax.tree.map(jnp.asarray, lb)))
        lb = jax.tree.map(np.asarray, lb)
        real = lb.weight > 0
        for k in np.nonzero(real | lb.energy_mask | lb.virial_mask)[0]:
            keys = ("all", subsets[lb.subset[k]] or "all")
            keys = keys[:1] if keys[1] == "all" else keys
            atoms = lb.batch.structure == k
            atoms &= lb.batch.species >= 0
            for key in keys:
                if lb.energy_mask[k]:
                    add(key, "energy", ((e[k] - lb.energy[k]) / lb.n_atoms[k] * 1000.0) ** 2, 1)
                fm = atoms & lb.forces_mask
                if fm.any():
                    add(key, "forces", np.sum((f[fm] - lb.forces[fm]) ** 2), 3 * fm.sum())
                if lb.virial_mask[k] and lb.volume[k] > 0:
                    add(key, "stress", np.sum(((v[k] - lb.virial[k]) / lb.volume[k] * EV_PER_A3_TO_GPA) ** 2), 9)
    return {key: {kind: math.sqrt(s / c) for kind, (s, c) in d.items() if c} for key, d in acc.items()}
