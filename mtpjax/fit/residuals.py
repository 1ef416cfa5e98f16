"""MLIP's objective, term by term: the weights, the predictions and the residuals of one packed batch.

Loss (MLIP-3 defaults, ``shared/docs/mtp-spec.md`` §5), over the K labelled structures:

    L = (1/K) sum_s w_s [ wE/N^pE (E-E*)^2 + wF/N^pF sum_ia (F-F*)^2 + wS/N sum_ab (V-V*)^2 ] + w_pen P(c)

with N the structure's atom count, V the virial in eV, wE, wF, wS = 1, 0.01, 0.001, pE = 1, pF = 0, and
P the orthonormality penalty of the radial coefficient vectors (:func:`mtpjax.fit.loss.radial_penalty`).
This module holds the per-batch terms that both the loss (:mod:`mtpjax.fit.loss`) and its fast gradient
(:mod:`mtpjax.fit.gradient`) use.

The virial term is MLIP's stress term (``stress_weight``, eV², on V = -Ω·σ, MLIP's PlusStress). Beyond MLIP, a
**force-constant term** (Ortner & Wang 2022) over the structures that carry the oracle's Hessian H* (3N x 3N, eV/Å²;
:mod:`mtpjax.oracles.hessian`):

    + (1/K) sum_{s with H*} w_s wH/N sum_{kl} (H - H*)_kl^2,    H = d²E/dx dx of the MTP (exact: jax.jacfwd of its
                                                                  gradient, never finite differences)

with ``force_constant_weight`` wH (default 0: the term is off and nothing changes). The data of that term are
:class:`ForceConstantData` (one per structure, from :func:`force_constant_data`), kept beside the packed batches;
:func:`force_constant_residuals` gives its weighted residuals (for Levenberg–Marquardt) and
:func:`force_constant_terms` their sum of squares (for the gradient path).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..data import LabelledBatch
from ..model import MTP, energy_forces_virial_sites
from ..neighbors import Neighbours
from ..oracles.hessian import potential_hessian, read_force_constants, structure_arrays


@dataclass(frozen=True)
class LossConfig:
    """Weights of MLIP's objective (energies eV, forces eV/Å, virials eV)."""

    energy_weight: float = 1.0
    force_weight: float = 0.01
    stress_weight: float = 0.001
    energy_power: float = 1.0  # energy term / N^energy_power (MLIP's weight_scaling)
    force_power: float = 0.0  # force term / N^force_power (MLIP's weight_scaling_forces)
    penalty_weight: float = 1e-6
    force_constant_weight: float = 0.0  # force constants (eV/Å²)², per entry, / N; 0: off (see the module docstring)
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


# --------------------------------------------------------------------------------------------------
# force constants (Hessians of the energy with respect to positions)


class ForceConstantData(NamedTuple):
    """One structure with its oracle force constants: positions (N, 3) Å, cell (3, 3) Å, species (N,), neighbours
    (unpadded in atoms, at the fit's cutoff), hessian (3N, 3N) eV/Å², weight (the structure's weight w_s)."""

    positions: jax.Array
    cell: jax.Array
    species: jax.Array
    nbrs: Neighbours
    hessian: jax.Array
    weight: jax.Array


def force_constant_data(structures, cutoff: float, species=None, n_species: int = 1) -> list:
    """:class:`ForceConstantData` of every ``ase.Atoms`` in ``structures`` that carries force constants
    (``atoms.arrays["hessian"]``, :func:`mtpjax.oracles.hessian.attach_force_constants`), with neighbours within
    ``cutoff`` (Å; the fit's, or the largest of a group). ``species``: element of each MTP type (None: one species).
    The structure's weight is ``atoms.info["weight"]`` (default 1)."""
    out = []
    for a in structures:
        H = read_force_constants(a)
        if H is None:
            continue
        pos, cell, types, nbrs = structure_arrays(a, cutoff, species, n_species)
        out.append(ForceConstantData(jnp.asarray(pos), jnp.asarray(cell), jnp.asarray(types), jax.tree.map(jnp.asarray, nbrs),
                                     jnp.asarray(H), jnp.asarray(float(a.info.get("weight", 1.0)))))
    return out


def model_hessian(mtp: MTP, fc: ForceConstantData):
    """The MTP's exact force constants (3N, 3N) eV/Å² of one structure (differentiable in the coefficients)."""
    return potential_hessian(mtp, fc.positions, fc.cell, fc.species, fc.nbrs, use_custom_vjp=False)


def force_constant_residuals(mtp: MTP, fc: ForceConstantData, cfg: LossConfig):
    """sqrt(wH w_s / N) (H - H*) flattened ((3N)^2,): the weighted force-constant residuals of one structure, whose
    sum of squares is its force-constant loss term (before the division by K)."""
    n = fc.positions.shape[0]
    c = cfg.force_constant_weight * fc.weight / max(n, 1)
    return (jnp.sqrt(c) * (model_hessian(mtp, fc) - fc.hessian)).reshape(-1)


def force_constant_terms(mtp: MTP, fcs, cfg: LossConfig):
    """sum over the structures ``fcs`` of sum (r^2) of :func:`force_constant_residuals` (not yet divided by K);
    0.0 when ``fcs`` is empty or the weight is 0."""
    if not fcs or cfg.force_constant_weight == 0:
        return 0.0
    return sum(jnp.sum(force_constant_residuals(mtp, fc, cfg) ** 2) for fc in fcs)


def force_constant_rmse(mtp: MTP, fcs) -> float:
    """RMSE (eV/Å²) of the MTP's force constants over every entry of the structures ``fcs`` (unweighted)."""
    sq, count = 0.0, 0
    for fc in fcs:
        d = np.asarray(_model_hessian_jit(mtp, fc)) - np.asarray(fc.hessian)
        sq, count = sq + float(np.sum(d**2)), count + d.size
    return float(np.sqrt(sq / count)) if count else float("nan")


_model_hessian_jit = jax.jit(model_hessian)
