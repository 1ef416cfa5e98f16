"""MLIP's objective, term by term: the weights, the predictions and the residuals of one packed batch.

Loss (MLIP-3 defaults, ``shared/docs/mtp-spec.md`` §5), over the K labelled structures:

    L = (1/K) sum_s w_s [ wE/N^pE (E-E*)^2 + wF/N^pF sum_ia (F-F*)^2 + wS/N sum_ab (V-V*)^2 ] + w_pen P(c)

with N the structure's atom count, V the virial in eV, wE, wF, wS = 1, 0.01, 0.001, pE = 1, pF = 0, and
P the orthonormality penalty of the radial coefficient vectors (:func:`mtpjax.fit.loss.radial_penalty`).
This module holds the per-batch terms that both the loss (:mod:`mtpjax.fit.loss`) and its fast gradient
(:mod:`mtpjax.fit.gradient`) use.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp

from ..data import LabelledBatch
from ..model import MTP, energy_forces_virial_sites


@dataclass(frozen=True)
class LossConfig:
    """Weights of MLIP's objective (energies eV, forces eV/Å, virials eV)."""

    energy_weight: float = 1.0
    force_weight: float = 0.01
    stress_weight: float = 0.001
    energy_power: float = 1.0  # energy term / N^energy_power (MLIP's weight_scaling)
    force_power: float = 0.0  # force term / N^force_power (MLIP's weight_scaling_forces)
    penalty_weight: float = 1e-6
    fast_gradient: bool = True  # jax.grad of the loss uses mtpjax.fit.gradient (same values, ~2x cheaper); False: plain autodiff


def efs(mtp: MTP, lb: LabelledBatch):
    """Energies (B,), forces (N, 3), virials (B, 3, 3) and site energies (N,) of ``mtp`` on a packed batch."""
    b = lb.batch
    return energy_forces_virial_sites(mtp, b.positions, b.cells, b.species, b.nbrs, structure=b.structure)


def weighted_residuals(mtp: MTP, lb: LabelledBatch, cfg: LossConfig):
    """The loss terms' weights and residuals of one batch: ((c_E, E - E*), (c_F, F - F*), (c_V, V - V*)), with
    c_E (B,), c_F (N, 1), c_V (B, 1, 1) and residuals zero where a label is missing. The loss of the batch is
    sum(c_E dE^2) + sum(c_F dF^2) + sum(c_V dV^2)."""
    e, f, v, _ = efs(mtp, lb)
    n = jnp.maximum(lb.n_atoms, 1.0)
    w = lb.weight
    ce = w * cfg.energy_weight / n**cfg.energy_power
    cf = (w * cfg.force_weight / n**cfg.force_power)[lb.batch.structure][:, None]
    cv = (w * cfg.stress_weight / n)[:, None, None]
    de = jnp.where(lb.energy_mask, e - lb.energy, 0.0)
    df = jnp.where(lb.forces_mask[:, None], f - lb.forces, 0.0)
    dv = jnp.where(lb.virial_mask[:, None, None], v - lb.virial, 0.0)
    return (ce, de), (cf, df), (cv, dv)


def batch_loss_terms(mtp: MTP, lb: LabelledBatch, cfg: LossConfig):
    """Weighted sums of the energy, force and virial terms of one batch (not yet divided by K)."""
    return tuple(jnp.sum(c * d**2) for c, d in weighted_residuals(mtp, lb, cfg))


def loss_weights(lb: LabelledBatch, cfg: LossConfig):
    """The loss weight of each residual of one batch: c_E (B,), c_F (N,) and c_V (B,), zero where the label is
    missing (and for padding), so that the batch's loss terms are sum c_E dE^2 + sum c_F |dF|^2 + sum c_V |dV|^2."""
    n = jnp.maximum(lb.n_atoms, 1.0)
    w = lb.weight
    ce = w * cfg.energy_weight / n**cfg.energy_power * lb.energy_mask
    cf = (w * cfg.force_weight / n**cfg.force_power)[lb.batch.structure] * lb.forces_mask
    cv = w * cfg.stress_weight / n * lb.virial_mask
    return ce, cf, cv
