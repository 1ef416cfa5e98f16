"""MLIP's objective over all batches (:func:`loss`) and the RMSE of a fitted model (:func:`errors`).

The per-batch terms are in :mod:`mtpjax.fit.residuals`; the fast gradient of a batch's loss in
:mod:`mtpjax.fit.gradient`.

The force-constant term (``LossConfig.force_constant_weight``; :mod:`mtpjax.fit.residuals`) enters through
``force_constants``, a list of :class:`~mtpjax.fit.residuals.ForceConstantData` kept beside the packed batches:
:func:`loss` adds it (gradient path: plain autodiff through the exact Hessian), :func:`force_constant_normal_equations`
gives its J^T J, J^T r, r^T r (least squares), and :class:`ForceConstantLM` is the Levenberg–Marquardt method with
it, for :func:`mtpjax.fit.fit_models` (``method=ForceConstantLM(cfg, force_constants)``).
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
from .jacobian import flatten, n_parameters, penalty_residuals, unflatten
from .lm import LevenbergMarquardt
from .residuals import LossConfig, batch_loss_terms, efs, force_constant_residuals, force_constant_terms


def radial_penalty(mtp: MTP):
    """sum_mu (|c_mu|^2 - 1)^2 + sum_{mu<nu} (c_mu . c_nu)^2 over the radial coefficient vectors: the sum of squares of
    :func:`mtpjax.fit.jacobian.penalty_residuals` (the form Levenberg-Marquardt works with)."""
    return jnp.sum(penalty_residuals(mtp) ** 2)


def loss(mtp: MTP, batches, cfg: LossConfig, n_structures: int, force_constants=()):
    """MLIP's objective over all batches (a full-batch loss). A batch stacked along a leading (device) axis, as
    from :func:`mtpjax.data.pack_for_devices`, is evaluated with vmap, which XLA splits over the devices that
    axis is sharded on.

    With ``cfg.fast_gradient`` (default) its gradient with respect to the radial, species and moment coefficients
    comes from :mod:`mtpjax.fit.gradient` (first derivatives only); otherwise from plain autodiff.
    ``force_constants``: :class:`~mtpjax.fit.residuals.ForceConstantData` of the structures with force-constant
    labels; their term (weight ``cfg.force_constant_weight``) is added, also divided by ``n_structures``."""

    def one(b):
        return batch_loss(mtp, b, cfg) if cfg.fast_gradient else sum(batch_loss_terms(mtp, b, cfg))

    total = 0.0
    for lb in batches:
        total = total + (jnp.sum(jax.vmap(one)(lb)) if lb.weight.ndim == 2 else one(lb))
    total = total + force_constant_terms(mtp, force_constants, cfg)
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


# --------------------------------------------------------------------------------------------------
# the force-constant term in least squares


@jax.jit
def _fc_jacobian(mtp: MTP, fc, cfg_weight):
    cfg = LossConfig(force_constant_weight=1.0)
    res = lambda t: jnp.sqrt(cfg_weight) * force_constant_residuals(unflatten(mtp, t), fc, cfg)  # noqa: E731
    theta = flatten(mtp)
    return res(theta), jax.jacfwd(res)(theta)


def force_constant_normal_equations(mtp: MTP, force_constants, cfg: LossConfig):
    """(J^T J (n, n), J^T r (n,), r^T r) of the force-constant residuals
    (:func:`mtpjax.fit.residuals.force_constant_residuals`) of the structures ``force_constants``, with theta as in
    :func:`mtpjax.fit.jacobian.flatten`; J by forward mode over the exact Hessian (n tangents). Zeros when the weight
    is 0 or there are none. Added to :func:`mtpjax.fit.jacobian.normal_equations`' sums, they make the
    Levenberg–Marquardt system of the loss with the force-constant term."""
    n = int(sum(n_parameters(mtp)))
    H, g, L = np.zeros((n, n)), np.zeros(n), 0.0
    if cfg.force_constant_weight == 0:
        return H, g, L
    for fc in force_constants:
        r, J = (np.asarray(x, np.float64) for x in _fc_jacobian(mtp, fc, jnp.asarray(cfg.force_constant_weight)))
        H, g, L = H + J.T @ J, g + J.T @ r, L + float(r @ r)
    return H, g, L


class ForceConstantLM(LevenbergMarquardt):
    """Levenberg–Marquardt (:class:`mtpjax.fit.lm.LevenbergMarquardt`, the same steps and stopping rules) on the loss
    with the force-constant term of the structures ``force_constants`` (weight ``cfg.loss.force_constant_weight``):
    its normal equations are added to those of the energies, forces and virials at every pass. Use as
    ``fit_models(models, batches, cfg, method=ForceConstantLM(cfg, force_constants))``."""

    def __init__(self, cfg, force_constants=()):
        super().__init__(cfg)
        self.force_constants = list(force_constants)

    def extra_normal_equations(self, mtp: MTP):
        """The force-constant term's normal equations, added to the batches' before the linear coefficients are
        eliminated (:meth:`LevenbergMarquardt.system`)."""
        return force_constant_normal_equations(mtp, self.force_constants, self.loss_cfg)
