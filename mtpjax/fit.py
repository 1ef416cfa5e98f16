"""Fitting an MTP: MLIP's objective, the exact linear solve, full-batch L-BFGS, checkpoints, metrics.

Loss (MLIP-3 defaults, ``shared/docs/mtp-spec.md`` §5), over the K labelled structures:

    L = (1/K) sum_s w_s [ wE/N^pE (E-E*)^2 + wF/N^pF sum_ia (F-F*)^2 + wS/N sum_ab (V-V*)^2 ] + w_pen P(c)

with N the structure's atom count, V the virial in eV, wE, wF, wS = 1, 0.01, 0.001, pE = 1, pF = 0, and
P the orthonormality penalty of the radial coefficient vectors c_mu (flattened over species pairs and
Chebyshev index): sum_mu (|c_mu|^2 - 1)^2 + sum_{mu<nu} (c_mu . c_nu)^2.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .batch import pair_distances
from .data import LabelledBatch
from .errors import MtpjaxError
from .evaluate import EV_PER_A3_TO_GPA
from .model import MTP, energy_forces_virial_sites



@dataclass(frozen=True)
class LossConfig:
    """Weights of MLIP's objective (energies eV, forces eV/Å, virials eV)."""

    energy_weight: float = 1.0
    force_weight: float = 0.01
    stress_weight: float = 0.001
    energy_power: float = 1.0  # energy term / N^energy_power (MLIP's weight_scaling)
    force_power: float = 0.0  # force term / N^force_power (MLIP's weight_scaling_forces)
    penalty_weight: float = 1e-6
    fast_gradient: bool = True  # jax.grad of the loss uses mtpjax.fit_gradient (same values, ~2x cheaper); False: plain autodiff


# --------------------------------------------------------------------------------------------------
# the objective


def _efs(mtp: MTP, lb: LabelledBatch):
    b = lb.batch
    return energy_forces_virial_sites(mtp, b.positions, b.cells, b.species, b.nbrs, structure=b.structure)


def weighted_residuals(mtp: MTP, lb: LabelledBatch, cfg: LossConfig):
    """The loss terms' weights and residuals of one batch: ((c_E, E - E*), (c_F, F - F*), (c_V, V - V*)), with
    c_E (B,), c_F (N, 1), c_V (B, 1, 1) and residuals zero where a label is missing. The loss of the batch is
    sum(c_E dE^2) + sum(c_F dF^2) + sum(c_V dV^2)."""
    e, f, v, _ = _efs(mtp, lb)
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


def radial_penalty(mtp: MTP):
    """sum_mu (|c_mu|^2 - 1)^2 + sum_{mu<nu} (c_mu . c_nu)^2 over the radial coefficient vectors."""
    K = mtp.radial_coeffs.shape[2]
    C = jnp.moveaxis(mtp.radial_coeffs, 2, 0).reshape(K, -1)
    G = C @ C.T
    off = jnp.triu(G, 1)
    return jnp.sum((jnp.diag(G) - 1.0) ** 2) + jnp.sum(off**2)


def loss(mtp: MTP, batches, cfg: LossConfig, n_structures: int):
    """MLIP's objective over all batches (a full-batch loss). A batch stacked along a leading (device) axis, as
    from :func:`mtpjax.data.pack_for_devices`, is evaluated with vmap, which XLA splits over the devices that
    axis is sharded on.

    With ``cfg.fast_gradient`` (default) its gradient with respect to the radial, species and moment coefficients
    comes from :mod:`mtpjax.fit_gradient` (first derivatives only); otherwise from plain autodiff."""
    from .fit_gradient import batch_loss

    def one(b):
        return batch_loss(mtp, b, cfg) if cfg.fast_gradient else sum(batch_loss_terms(mtp, b, cfg))

    total = 0.0
    for lb in batches:
        total = total + (jnp.sum(jax.vmap(one)(lb)) if lb.weight.ndim == 2 else one(lb))
    return total / n_structures + cfg.penalty_weight * radial_penalty(mtp)


# --------------------------------------------------------------------------------------------------
# errors


def _flat(batches):
    """Batches with stacked (device-axis) batches split into their parts."""
    from .data import unstack

    out = []
    for lb in batches:
        out += unstack(lb) if np.ndim(lb.weight) == 2 else [lb]
    return out


def errors(mtp: MTP, batches, subsets) -> dict:
    """RMSE of energy (meV/atom), forces (eV/Å) and stress (GPa), overall and per subset."""
    batches = _flat(batches)
    efs = jax.jit(_efs)
    acc = {}

    def add(key, kind, sq, count):
        d = acc.setdefault(key, {})
        s, c = d.get(kind, (0.0, 0))
        d[kind] = (s + float(sq), c + int(count))

    for lb in batches:
        e, f, v, _ = (np.asarray(x) for x in efs(mtp, jax.tree.map(jnp.asarray, lb)))
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
# exact linear solve for species and moment coefficients at fixed radial coefficients


def _design_columns(mtp: MTP, lb: LabelledBatch, chunk: int = 8):
    """Energies (n_B, B), forces (n_B, N, 3) and virials (n_B, B, 3, 3) of each scalar basis function alone."""
    n_b = mtp.moment_coeffs.shape[0]
    base = eqx.tree_at(lambda m: m.species_coeffs, mtp, jnp.zeros_like(mtp.species_coeffs))

    def column(xi):
        e, f, v, _ = _efs(eqx.tree_at(lambda m: m.moment_coeffs, base, xi), lb)
        return e, f, v

    return jax.lax.map(column, jnp.eye(n_b, dtype=mtp.moment_coeffs.dtype), batch_size=chunk)


_design_columns_jit = jax.jit(_design_columns, static_argnames="chunk")


def linear_solve(mtp: MTP, batches, cfg: LossConfig, n_structures: int, return_diagonal: bool = False):
    """The species and moment coefficients that minimise the loss exactly at fixed radial coefficients
    (weighted normal equations, ridge 1e-10·max(1, A_ll) as MLIP). With ``return_diagonal``, also the diagonal
    of the normal matrix / n_structures (the loss's curvature along each linear coefficient)."""
    batches = _flat(batches)
    S, n_b = mtp.species_coeffs.shape[0], mtp.moment_coeffs.shape[0]
    n_lin = S + n_b
    AtA = np.zeros((n_lin, n_lin))
    Aty = np.zeros(n_lin)
    for lb in batches:
        E, F, V = (np.asarray(x) for x in _design_columns_jit(mtp, jax.tree.map(jnp.asarray, lb)))
        lb = jax.tree.map(np.asarray, lb)  # the normal equations are accumulated on the host
        n = np.maximum(lb.n_atoms, 1.0)
        sp = lb.batch.species
        counts = np.stack([np.bincount(lb.batch.structure[sp == s], minlength=len(n)) for s in range(S)], axis=1)
        # energies: species counts | basis sums
        we = lb.weight * cfg.energy_weight / n**cfg.energy_power * lb.energy_mask
        A_e = np.concatenate([counts, E.T], axis=1)
        AtA += A_e.T @ (A_e * we[:, None])
        Aty += A_e.T @ (we * lb.energy)
        # forces: species columns are zero
        fm = lb.forces_mask & (sp >= 0)
        wf = (lb.weight * cfg.force_weight / n**cfg.force_power)[lb.batch.structure][fm]
        A_f = np.moveaxis(F[:, fm], 0, -1).reshape(-1, n_b)  # (3 n_f, n_B)
        wf3 = np.repeat(wf, 3)
        AtA[S:, S:] += A_f.T @ (A_f * wf3[:, None])
        Aty[S:] += A_f.T @ (wf3 * lb.forces[fm].reshape(-1))
        # virials
        ws = lb.weight * cfg.stress_weight / n * lb.virial_mask
        A_s = np.moveaxis(V, 0, -1).reshape(-1, n_b)  # (9 B, n_B)
        ws9 = np.repeat(ws, 9)
        AtA[S:, S:] += A_s.T @ (A_s * ws9[:, None])
        Aty[S:] += A_s.T @ (ws9 * lb.virial.reshape(-1))
    d = np.diag(AtA).copy()
    AtA[np.diag_indices(n_lin)] += 1e-10 * np.maximum(1.0, d)
    theta = np.linalg.solve(AtA, Aty)
    dt = mtp.moment_coeffs.dtype
    solved = eqx.tree_at(lambda m: (m.species_coeffs, m.moment_coeffs), mtp, (jnp.asarray(theta[:S], dt), jnp.asarray(theta[S:], dt)))
    return (solved, d / n_structures) if return_diagonal else solved


def orthonormalize_radial(mtp: MTP) -> MTP:
    """Gram-Schmidt of the radial coefficient vectors c_mu (flattened over species pairs and Chebyshev index), in
    the order mu = 0, 1, ... (as MLIP's LinOptimize does before its solve). It changes the model."""
    rc = np.asarray(mtp.radial_coeffs)
    K = rc.shape[2]
    C = np.moveaxis(rc, 2, 0).reshape(K, -1)
    q, r = np.linalg.qr(C.T)
    q = q * np.sign(np.where(np.diag(r) == 0, 1.0, np.diag(r)))
    new = np.moveaxis(q.T.reshape((K,) + rc.shape[:2] + rc.shape[3:]), 0, 2)
    return eqx.tree_at(lambda m: m.radial_coeffs, mtp, jnp.asarray(new, mtp.radial_coeffs.dtype))


# --------------------------------------------------------------------------------------------------
# initialisation


def initial_mtp(basis, n_species: int, min_dist: float, max_dist: float, batches, seed: int = 0, radial_basis_size: int = 8,
                species=None, init: str = "mlip") -> MTP:
    """A deterministic starting MTP; species and moment coefficients zero, ``scaling`` chosen so that the mean
    neighbour sum of scaling * (R_cut - r)^2 is 1.

    Radial coefficients: ``init="mlip"`` (default) starts radial function mu as the Chebyshev polynomial T_mu for
    every species pair, as MLIP-3 does, plus seeded noise of 1e-3; ``init="random"`` draws orthonormal random
    vectors from the seed. Both are normalised (the orthonormality penalty starts near zero).
    """
    from .model import mtp_from_arrays

    rng = np.random.default_rng(seed)
    K, R = int(basis.radial_funcs_count), radial_basis_size
    if init == "mlip":
        C = np.zeros((K, n_species, n_species, R))
        for k in range(min(K, R)):
            C[k, :, :, k] = 1.0
        C += 1e-3 * rng.normal(size=C.shape)
        C /= np.linalg.norm(C.reshape(K, -1), axis=1)[:, None, None, None]
    elif init == "random":
        q, _ = np.linalg.qr(rng.normal(size=(K, n_species * n_species * R)).T)
        C = q.T[:K].reshape(K, n_species, n_species, R)
    else:
        raise ValueError(f"unknown radial initialisation {init!r} (mlip or random)")
    sums, count = 0.0, 0
    for lb in batches:
        r = pair_distances(lb.batch)
        ok = np.asarray(lb.batch.nbrs.mask) & (r < max_dist)
        sums += float(np.sum(np.where(ok, (max_dist - r) ** 2, 0.0)))
        count += int((np.asarray(lb.batch.species) >= 0).sum())
    scaling = count / sums if sums > 0 else 1.0
    return mtp_from_arrays(
        radial_coeffs=np.moveaxis(C, 0, 2),
        species_coeffs=np.zeros(n_species),
        moment_coeffs=np.zeros(len(basis.alpha_moment_mapping)),
        scaling=scaling,
        min_dist=min_dist,
        max_dist=max_dist,
        alpha_index_basic=basis.alpha_index_basic,
        alpha_index_times=basis.alpha_index_times,
        alpha_moment_mapping=basis.alpha_moment_mapping,
        alpha_moments_count=basis.alpha_moments_count,
        species=species,
    )


# --------------------------------------------------------------------------------------------------
# the optimiser and its checkpoints


def _trainable(mtp: MTP):
    return (mtp.radial_coeffs, mtp.species_coeffs, mtp.moment_coeffs)


def _with(mtp: MTP, params) -> MTP:
    return eqx.tree_at(lambda m: (m.radial_coeffs, m.species_coeffs, m.moment_coeffs), mtp, tuple(params))


def _unit_scale(mtp: MTP):
    return tuple(jnp.ones_like(x) for x in _trainable(mtp))


def _scale_from_diagonal(mtp: MTP, diag) -> tuple:
    """Diagonal preconditioner: the optimiser works on phi = theta * sqrt(curvature) for the linear coefficients."""
    S = mtp.species_coeffs.shape[0]
    d = np.sqrt(np.maximum(diag, 1e-12 * max(float(np.max(diag)), 1e-300)))
    dt = mtp.moment_coeffs.dtype
    return (jnp.ones_like(mtp.radial_coeffs), jnp.asarray(d[:S], dt), jnp.asarray(d[S:], dt))


def _scaled(params, scale):
    return tuple(p * s for p, s in zip(params, scale))


def _unscaled(params, scale):
    return tuple(p / s for p, s in zip(params, scale))


#: MLIP-3's schedule of exact linear solves (LinOptimize): the L-BFGS steps before which they run.
MLIP_LINEAR_SOLVES = (0, 25, 70, 100, 150, 250, 400)


@dataclass
class FitConfig:
    """Options of :func:`fit`."""

    max_steps: int = 1000
    loss: LossConfig = field(default_factory=LossConfig)
    linear_solve_at: tuple = MLIP_LINEAR_SOLVES  # steps at which species/moment coefficients are re-solved exactly
    checkpoint_every: int = 50
    method: str = "lbfgs"  # "lbfgs" (optax L-BFGS), "bfgs" (dense inverse Hessian, as MLIP), "adam" (minibatches)
    precondition: bool = True  # scale linear coefficients by the curvature found in each linear solve
    memory_size: int = 20  # L-BFGS memory
    tolerance: float = 1e-12  # stop when the relative loss decrease over 50 steps falls below this (full batch only)
    orthonormalize: bool = True  # Gram-Schmidt the radial coefficient vectors before each linear solve (MLIP's LinOptimize)
    learning_rate: float = 1e-3  # Adam: peak learning rate, cosine-decayed to 1 % over max_steps
    seed: int = 0  # Adam: the order of the minibatches (a fresh permutation per epoch, from (seed, epoch))


class _BFGSState(NamedTuple):
    inv_hessian: jax.Array
    last_params: jax.Array  # (names distinct from the line search's "grad" and "value": optax looks them up by name)
    last_grad: jax.Array
    count: jax.Array


def scale_by_bfgs() -> optax.GradientTransformation:
    """Dense BFGS: the direction -H g with the standard inverse-Hessian update (H0 = (s.y / y.y) I after the first
    step; an update is skipped when s.y <= 0). Meant to be chained with a line search, as MLIP's BFGS; cheap while
    the parameter count is in the hundreds or low thousands."""
    from jax.flatten_util import ravel_pytree

    def init(params):
        flat, _ = ravel_pytree(params)
        n = flat.shape[0]
        return _BFGSState(jnp.eye(n, dtype=flat.dtype), jnp.zeros_like(flat), jnp.zeros_like(flat), jnp.zeros((), jnp.int32))

    def update(updates, state, params=None):
        g, unravel = ravel_pytree(updates)
        p, _ = ravel_pytree(params)
        s, y = p - state.last_params, g - state.last_grad
        sy = s @ y
        eye = jnp.eye(g.shape[0], dtype=g.dtype)
        H0 = jnp.where(state.count == 1, (sy / jnp.maximum(y @ y, 1e-300)) * eye, state.inv_hessian)
        rho = 1.0 / jnp.where(sy > 0, sy, 1.0)
        V = eye - rho * jnp.outer(s, y)
        H_new = V @ H0 @ V.T + rho * jnp.outer(s, s)
        H = jnp.where((state.count > 0) & (sy > 1e-12 * jnp.sqrt((s @ s) * (y @ y))), H_new, state.inv_hessian)
        return unravel(-(H @ g)), _BFGSState(H, p, g, state.count + 1)

    return optax.GradientTransformation(init, update)


def _optimizer(method: str, memory_size: int, learning_rate: float = 1e-3, max_steps: int = 1000):
    if method == "adam":
        return optax.adam(optax.cosine_decay_schedule(learning_rate, max(max_steps, 1), alpha=0.01))
    linesearch = optax.scale_by_zoom_linesearch(max_linesearch_steps=25, initial_guess_strategy="one")
    if method == "lbfgs":
        return optax.lbfgs(memory_size=memory_size, linesearch=linesearch)
    if method == "bfgs":
        return optax.chain(scale_by_bfgs(), linesearch)
    raise ValueError(f"unknown optimiser {method!r} (lbfgs, bfgs or adam)")


@functools.lru_cache(maxsize=16)
def _make_adam_step(loss_cfg: LossConfig, learning_rate: float, max_steps: int):
    """Adam and its jitted minibatch step (the minibatch's own structure count normalises its loss)."""
    opt = _optimizer("adam", 0, learning_rate, max_steps)

    @jax.jit
    def step(params, state, static, scale, lb):
        n = jnp.maximum(jnp.sum(lb.weight > 0), 1)
        fn = lambda p: loss(_with(static, _unscaled(p, scale)), [lb], loss_cfg, n)  # noqa: E731
        val, grad = jax.value_and_grad(fn)(params)
        updates, state = opt.update(grad, state, params)
        return optax.apply_updates(params, updates), state, val

    return opt, step


def minibatch_order(seed: int, n_batches: int, step: int) -> int:
    """Index of the minibatch used at ``step``: epochs visit every batch once, in a permutation drawn from
    (seed, epoch), so a resumed run sees the same sequence."""
    epoch, k = divmod(step, n_batches)
    return int(np.random.default_rng([seed, epoch]).permutation(n_batches)[k])


def _step_body(loss_cfg: LossConfig, method: str, memory_size: int, n_structures: int):
    """The full-batch optimiser and its (unjitted) step (params, state, static MTP, scale, batches) -> (params,
    state, loss)."""
    opt = _optimizer(method, memory_size)

    def value(params, static, scale, batches):
        return loss(_with(static, _unscaled(params, scale)), batches, loss_cfg, n_structures)

    def step(params, state, static, scale, batches):
        fn = lambda p: value(p, static, scale, batches)  # noqa: E731
        val, grad = optax.value_and_grad_from_state(fn)(params, state=state)
        updates, state = opt.update(grad, state, params, value=val, grad=grad, value_fn=fn)
        return optax.apply_updates(params, updates), state, val

    return opt, step


@functools.lru_cache(maxsize=16)
def _make_step(loss_cfg: LossConfig, method: str, memory_size: int, n_structures: int):
    """The optimiser and its jitted step (cached, so repeated fits with the same settings compile once)."""
    opt, step = _step_body(loss_cfg, method, memory_size, n_structures)
    return opt, jax.jit(step)


def _init_state(opt, params):
    """The optimiser's initial state with strong types (as after an update), so the step compiles once."""
    return jax.tree.map(lambda x: jnp.array(x, dtype=x.dtype), opt.init(params))


def save_checkpoint(path, mtp: MTP, params, scale, opt_state, step: int, history: list) -> None:
    """Write the optimiser's variables ``params`` (coefficients x ``scale``, stored as they are so that a resumed
    run is bit-identical), the preconditioner, optimiser state, step and loss history atomically (one JSON line,
    then equinox serialisation)."""
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write((json.dumps({"step": step, "history": history}) + "\n").encode())
        eqx.tree_serialise_leaves(f, (tuple(params), tuple(scale), mtp.scaling, mtp.min_dist, mtp.max_dist, opt_state))
    os.replace(tmp, path)


def load_checkpoint(path, mtp: MTP, opt_state):
    """Read a checkpoint into the structure of (mtp, opt_state).

    Returns (mtp with the checkpoint's coefficients, params, scale, opt_state, step, history)."""
    like = (_trainable(mtp), _unit_scale(mtp), mtp.scaling, mtp.min_dist, mtp.max_dist, opt_state)
    try:
        with open(path, "rb") as f:
            meta = json.loads(f.readline())
            params, scale, scaling, rmin, rmax, opt_state = eqx.tree_deserialise_leaves(f, like)
    except Exception as err:
        raise MtpjaxError(f"{path}: unreadable checkpoint ({type(err).__name__}: {err}); delete it to start afresh") from err
    mtp = eqx.tree_at(lambda m: (m.scaling, m.min_dist, m.max_dist), _with(mtp, _unscaled(params, scale)), (scaling, rmin, rmax))
    return mtp, params, scale, opt_state, int(meta["step"]), list(meta["history"])


def fit(mtp: MTP, batches, cfg: FitConfig, workdir=None, resume: bool = False, log=print, progress=None,
        timings: dict | None = None) -> tuple[MTP, list]:
    """Minimise the loss from ``mtp``; returns the fitted MTP and the loss history [(step, loss), ...].

    With ``workdir``, a checkpoint is written every ``cfg.checkpoint_every`` steps (and at the end) to
    ``workdir/checkpoint.eqx``; ``resume=True`` continues from it and reaches the same result as an
    uninterrupted run. If the loss becomes NaN, fitting stops and the last good parameters are returned.
    ``cfg.method="adam"`` takes one batch of ``batches`` (kept on the host) per step, in a seeded order.
    ``timings``: a dict that receives ``first_step_s`` (wall seconds of the first step: compilation and the first
    linear solve included), ``per_step_s`` (the mean of the others) and ``compile_s`` (their difference).
    """
    minibatch = cfg.method == "adam"
    if not minibatch:  # full batch: everything on the device once; Adam moves one minibatch per step
        batches = [lb if isinstance(lb.weight, jax.Array) else jax.tree.map(jnp.asarray, lb) for lb in batches]
    n_structures = int(sum(int(np.sum(np.asarray(lb.weight) > 0)) for lb in batches))
    if n_structures == 0:
        raise MtpjaxError("the training set is empty")
    if minibatch:
        if any(np.ndim(lb.weight) == 2 for lb in batches):
            raise MtpjaxError("Adam minibatches are not combined with several devices; use lbfgs or bfgs there")
        opt, adam_step = _make_adam_step(cfg.loss, cfg.learning_rate, cfg.max_steps)

        def step_fn(params, state, static, scale, _):
            lb = batches[minibatch_order(cfg.seed, len(batches), k)]
            return adam_step(params, state, static, scale, jax.tree.map(jnp.asarray, lb))
    else:
        opt, step_fn = _make_step(cfg.loss, cfg.method, cfg.memory_size, n_structures)
    ckpt = Path(workdir) / "checkpoint.eqx" if workdir else None
    if ckpt is not None:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
    state = _init_state(opt, _trainable(mtp))
    scale = _unit_scale(mtp)
    start, history = 0, []
    params = _scaled(_trainable(mtp), scale)  # the optimiser's variables
    if resume and ckpt is not None and ckpt.exists():
        mtp, params, scale, state, start, history = load_checkpoint(ckpt, mtp, state)
        log(f"resumed from {ckpt} at step {start}")
    last_good = (params, state, scale)
    t0 = time.perf_counter()
    t_first = None
    for k in range(start, cfg.max_steps):
        if k in cfg.linear_solve_at:
            mtp = _with(mtp, _unscaled(params, scale))
            if cfg.orthonormalize:
                mtp = orthonormalize_radial(mtp)
            mtp, diag = linear_solve(mtp, batches, cfg.loss, n_structures, return_diagonal=True)
            scale = _scale_from_diagonal(mtp, diag) if cfg.precondition else _unit_scale(mtp)
            params = _scaled(_trainable(mtp), scale)
            state = _init_state(opt, params)
        params, state, val = step_fn(params, state, mtp, scale, batches)
        val = float(val)
        if not np.isfinite(val):
            log(f"step {k}: the loss is {val}; stopping with the last good parameters")
            params, state, scale = last_good
            break
        last_good = (params, state, scale)
        history.append((k, val))
        if t_first is None:
            t_first = time.perf_counter() - t0  # includes compilation
        if progress is not None:
            progress(k, val)
        done = k + 1
        if ckpt is not None and (done % cfg.checkpoint_every == 0 or done == cfg.max_steps):
            save_checkpoint(ckpt, mtp, params, scale, state, done, history)
        if not minibatch and len(history) > 100 and k % 50 == 0:
            old = history[-51][1]
            if old - val < cfg.tolerance * abs(old):
                log(f"step {k}: relative decrease over 50 steps below {cfg.tolerance:g}; stopping")
                break
    if ckpt is not None and history:
        save_checkpoint(ckpt, mtp, params, scale, state, history[-1][0] + 1, history)
    mtp = _with(mtp, _unscaled(params, scale))
    wall = time.perf_counter() - t0
    n_run = len(history) - start if history else 0
    per_step = (wall - (t_first or 0.0)) / max(n_run - 1, 1)
    if timings is not None:
        timings.update(first_step_s=t_first or 0.0, per_step_s=per_step, compile_s=max((t_first or 0.0) - per_step, 0.0))
    log(f"fit: {n_run} steps in {wall:.1f} s (first step, with compilation, {t_first or 0.0:.1f} s; then {per_step:.3f} s/step); "
        f"final loss {history[-1][1] if history else float('nan'):.6g}")
    return mtp, history


def shard_over_devices(stacked: LabelledBatch, devices=None) -> LabelledBatch:
    """Place a stacked batch (leading axis = one group per device) on the devices, split along that axis."""
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    devices = jax.devices() if devices is None else devices
    n = stacked.weight.shape[0]
    if len(devices) < n:
        raise MtpjaxError(f"{n} data groups but only {len(devices)} devices")
    mesh = Mesh(np.array(devices[:n]), ("data",))
    return jax.tree.map(lambda x: jax.device_put(x, NamedSharding(mesh, PartitionSpec("data"))), stacked)


def write_metrics(path, record: dict) -> None:
    """Append one JSON line."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def plot_loss(history, path) -> None:
    """Loss curve (log scale) as a PNG."""
    from matplotlib.figure import Figure  # no pyplot: the user's backend (e.g. a notebook's) is left alone

    steps, values = zip(*history) if history else ((), ())
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.semilogy(steps, values)
    ax.set_xlabel("L-BFGS step")
    ax.set_ylabel("loss")
    ax.set_title("mtpjax fit")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)



def training_min_distance(batches) -> float:
    """The shortest interatomic distance (Å, periodic images included) of packed batches."""
    dmin = np.inf
    for lb in batches:
        r = pair_distances(lb.batch)[np.asarray(lb.batch.nbrs.mask)]
        if r.size:
            dmin = min(dmin, float(r.min()))
    return dmin


def train_potential(train, test, *, level: int, cutoff: float, rmin=None, seed: int = 0, n_species: int = 1, species=None,
                    cfg: FitConfig | None = None, workdir, output, resume: bool = False, devices: int = 1,
                    max_batch_atoms: int = 100000, init: str = "mlip", progress=None, log=print) -> dict:
    """Fit a level-``level`` MTP with cutoff ``cutoff`` (Å) to records ``train``; score it on ``train`` and ``test``.

    Writes ``output`` (.almtp, or .mtpjax) and the exact ``.mtpjax`` beside it (with the result as metadata) and, in ``workdir``, the checkpoint, ``metrics.jsonl``, ``result.json`` and ``loss.png``.
    ``rmin`` defaults to 0.99 x the shortest training distance (MLIP-3). Returns the result dictionary (RMSEs per
    subset, steps, wall and CPU seconds, settings).
    """
    from .basis import generate_basis
    from .data import pack_for_devices, pack_records, unstack

    cfg = dataclasses.replace(cfg or FitConfig(), seed=seed)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    t0, c0 = time.perf_counter(), time.process_time()
    if devices > 1:  # data-parallel: one group of structures per device
        stacked, subsets = pack_for_devices(train, cutoff, devices)
        fit_batches, batches = [shard_over_devices(stacked)], unstack(stacked)
    else:
        batches, subsets = pack_records(train, cutoff, max_batch_atoms=max_batch_atoms, cache_dir=workdir / "cache")
        fit_batches = batches
    check_cutoff(batches, cutoff)
    rmin = default_rmin(batches, cutoff) if rmin is None else rmin
    if rmin >= cutoff:
        raise MtpjaxError(f"r_min {rmin:.3f} Å must be below the cutoff {cutoff} Å")
    mtp = initial_mtp(generate_basis(level), n_species, rmin, cutoff, batches, seed=seed, species=species, init=init)
    log(f"mtpjax fit: {len(train)} structures ({count_atoms(batches)} atoms), level {level}, cutoff {cutoff} Å, r_min {rmin:.4f} Å, "
        f"{mtp.moment_coeffs.shape[0]} basis functions")
    timings = {}
    mtp, history = fit(mtp, fit_batches, cfg, workdir=workdir, resume=resume, progress=progress, log=log, timings=timings)
    test_batches = (lambda: pack_records(test, cutoff, max_batch_atoms=max_batch_atoms)) if test else None
    return finish_run(mtp, history, batches, subsets, test_batches, cfg, output, workdir, t0, c0,
                      {"level": level, "cutoff": cutoff, "rmin": rmin, "seed": seed, "n_train": len(train), "n_test": len(test or []),
                       **timings})


def count_atoms(batches) -> int:
    """Real (unpadded) atoms in packed batches."""
    return sum(int((np.asarray(lb.batch.species) >= 0).sum()) for lb in batches)


def check_cutoff(batches, cutoff: float) -> None:
    """Warn when the cutoff gives far more neighbours per atom than makes sense for an MTP."""
    import warnings

    n_pairs = sum(int(np.asarray(lb.batch.nbrs.mask).sum()) for lb in batches)
    per_atom = n_pairs / max(count_atoms(batches), 1)
    if per_atom > 150:
        warnings.warn(f"cutoff {cutoff} Å gives {per_atom:.0f} neighbours per atom on average: larger than makes sense "
                      "for an MTP (typical: 20-80), and fitting will be slow")


def default_rmin(batches, cutoff: float) -> float:
    """MLIP-3's r_min: 0.99 x the shortest training distance (Å)."""
    dmin = training_min_distance(batches)
    if not np.isfinite(dmin):
        raise MtpjaxError(f"no pair of atoms of the training set is closer than the cutoff {cutoff} Å")
    return 0.99 * dmin


def finish_run(mtp: MTP, history, batches, subsets, test_batches, cfg: FitConfig, output, workdir, t0: float, c0: float,
               settings: dict) -> dict:
    """The last exact linear solve, the errors on the training (and test) data, and the outputs of one fitted
    potential: ``output`` (.almtp or .mtpjax) and the exact .mtpjax beside it, ``metrics.jsonl``, ``result.json``
    and ``loss.png`` in ``workdir``. ``test_batches``: None, or a function giving the packed test set (batches,
    subsets), called after the timing stops. Returns the result dictionary."""
    from .model import save_mtp

    workdir = Path(workdir)
    n_structures = sum(int((np.asarray(lb.weight) > 0).sum()) for lb in batches)
    mtp = linear_solve(mtp, [jax.tree.map(jnp.asarray, lb) for lb in batches], cfg.loss, n_structures)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    output = Path(output)
    native = output if output.suffix == ".mtpjax" else output.with_suffix(".mtpjax")
    result = {"train": errors(mtp, batches, subsets), "steps": len(history), "wall_s": wall, "cpu_s": cpu, **settings,
              "n_basis": int(mtp.moment_coeffs.shape[0]), "potential": str(output), "optimizer": cfg.method}
    if test_batches is not None:
        result["test"] = errors(mtp, *test_batches())
    save_mtp(mtp, output, metadata=result)
    if native != output:
        save_mtp(mtp, native, metadata=result)  # the exact copy, with how it was fitted
    write_metrics(workdir / "metrics.jsonl", {"history": history})
    write_metrics(workdir / "metrics.jsonl", result)
    plot_loss(history, workdir / "loss.png")
    (workdir / "result.json").write_text(json.dumps(result, indent=1))
    return result
