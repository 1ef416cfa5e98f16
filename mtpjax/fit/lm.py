"""Levenberg–Marquardt with variable projection: the default optimiser of a fit.

MLIP's objective is a nonlinear least-squares problem, L = (1/K) |r(theta)|^2 + w_pen |rho(c)|^2, whose residuals r
are linear in the species and moment coefficients w and nonlinear only in the radial coefficients c (a few dozen to
a few hundred). Variable projection (Golub and Pereyra) minimises the reduced objective L*(c) = min_w L(c, w):

- At the current c, one pass over the data gives the Jacobian's normal equations J^T J, J^T r and r^T r
  (:func:`mtpjax.fit.jacobian.normal_equations`, accumulated batch by batch: memory does not grow with the data).
- The linear coefficients are eliminated: w* = w - (J_w^T J_w + eps D)^-1 J_w^T r with a relative ridge eps
  (``FitConfig.lm_ridge``, 1e-6; D the diagonal of J_w^T J_w). The residuals are linear in w, so the loss L(c, w*) and
  its gradient follow from the same normal equations. Without the ridge (MLIP's exact solve uses 1e-10), w*(c) swings
  wildly where the basis functions are nearly dependent (data with cells strained by 80 %), the reduced objective
  is too curved for any Gauss–Newton model, and the damping climbs to 1e6 before a step is accepted.
- The step in c solves the Gauss–Newton system of the reduced problem (Kaufman's approximation: the Schur
  complement of the w block) with Marquardt's damping lambda diag(J_c^T J_c) on the radial block only.
- A trial point is accepted when its reduced loss L*(c + dc), from one more pass, is lower; lambda follows
  Nielsen's rule (shrink by up to 3 after a good step, double (then 4x, 8x, ...) after a rejected one).

One :meth:`LevenbergMarquardt.step` is one accepted iteration (or ``max_tries`` rejected trials); each trial costs
one Jacobian pass (level 16: about 0.7 ms of CPU per atom on this project's CPU). On more than twice
``FitConfig.lm_subset_atoms`` training atoms, :func:`mtpjax.fit.train_potentials` first converges on a random subset
of that many atoms and goes on with all of them from there (at paper scale, 135,000 atoms, the iterations on all the
data then gain about 1 %). A model stops (``done``)
when the reduced loss fell by less than ``FitConfig.lm_ftol`` (relative) over the last ``FitConfig.lm_window``
iterations and its last fall was no larger than the one before (not a fit speeding up as it leaves a plateau),
when the scaled gradient is below ``lm_gtol``, when the accepted step in the radial coefficients is
below ``lm_xtol`` relative to them, or when no trial in ``max_tries`` lowers the loss.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..model import MTP
from .config import FitConfig
from .jacobian import flatten, image_group, n_parameters, normal_equations, penalty_residuals, unflatten
from .params import n_models, stack_models, unstack_models
from .residuals import LossConfig


#: Basic moments above which an LM iteration is much dearer than many gradient steps (level 20: 295, level 22: 421,
#: level 24: 581; one Jacobian pass on 504 atoms at levels 16 / 20 / 24: 0.34 / 1.02 / 5.4 s of CPU).
LARGE_BASIS = 300


class LMState(NamedTuple):
    """Per model (leading axis M): damping ``lam`` and its growth ``nu``; the reduced loss ``value``; the normal
    equations ``H`` (n, n) and ``g`` (n,) at the current parameters (with the linear coefficients already
    eliminated); ``ready`` (False until the first pass); ``history`` (M, window + 1): the last reduced losses."""

    lam: jax.Array
    nu: jax.Array
    value: jax.Array
    H: jax.Array
    g: jax.Array
    ready: jax.Array
    history: jax.Array


@functools.lru_cache(maxsize=8)
def _passes(loss_cfg: LossConfig):
    ne = jax.jit(lambda m, lb, group: normal_equations(m, lb, loss_cfg, group), static_argnums=2)

    @jax.jit
    def penalty(m):
        return penalty_residuals(m), jax.jacfwd(lambda t: penalty_residuals(unflatten(m, t)))(flatten(m))

    return ne, penalty


def _solve(A, b):
    """A x = b for a symmetric positive (semi)definite A scaled to a unit diagonal; eigen-decomposition where the
    factorisation fails."""
    try:
        return np.linalg.solve(A, b)
    except np.linalg.LinAlgError:
        w, V = np.linalg.eigh(A)
        w = np.where(w > 1e-14 * max(w.max(), 1e-300), w, np.inf)
        return V @ ((V.T @ b) / w)


def loss_accelerating(history) -> bool:
    """Whether the last accepted step lowered the loss more than the one before it (history: the last losses, oldest
    first): a fit leaving a plateau, whose slow start must not pass for convergence. Measured: a level-16 fit that
    stopped on lm_ftol after 5 slowly accelerating steps at 50 meV/atom reached 2.3 meV/atom when allowed on."""
    h = np.asarray(history, np.float64)
    return len(h) >= 3 and bool(np.all(np.isfinite(h[-3:]))) and (h[-2] - h[-1]) > (h[-3] - h[-2])


class LevenbergMarquardt:
    """The ``"lm"`` method (see the module docstring): one accepted Levenberg–Marquardt iteration per step, each
    model on its own damping."""

    name = "lm"
    full_batch = True
    eliminates_linear = True  # the linear coefficients are exact after every step: no final linear solve needed

    def __init__(self, cfg: FitConfig):
        self.cfg = cfg
        self.loss_cfg = cfg.loss
        self.ridge = cfg.lm_ridge  # relative ridge of the elimination of the linear coefficients

    # -- the reduced system at a point

    def system(self, mtp: MTP, batches, n_structures: int):
        """(theta* with the linear coefficients eliminated (relative ridge ``lm_ridge``), H, g, L*) at the radial
        coefficients of ``mtp``; L* is the true loss of theta*:
        H = J^T J / K + w_pen J_rho^T J_rho and g = J^T r / K + w_pen J_rho^T rho (half the gradient)."""
        ne, penalty = _passes(self.loss_cfg)
        H, g, L = self.extra_normal_equations(mtp)
        parts = [ne(mtp, lb, image_group(lb)) for lb in batches]  # all dispatched before any is read: batches may run concurrently
        for a, b, c in parts:
            H, g, L = H + np.asarray(a), g + np.asarray(b), L + float(c)
        rho, Jr = (np.asarray(x) for x in penalty(mtp))
        wp = self.loss_cfg.penalty_weight
        H = H / n_structures + wp * Jr.T @ Jr
        g = g / n_structures + wp * Jr.T @ rho
        L = L / n_structures + wp * float(rho @ rho)
        theta = np.array(flatten(mtp), np.float64)
        n_r = n_parameters(mtp)[0]
        lin = slice(n_r, None)
        Hw = H[lin, lin]
        d = np.sqrt(np.maximum(np.diag(Hw), 1e-300))
        dw = -_solve(Hw / d[:, None] / d[None, :] + self.ridge * np.eye(len(d)), g[lin] / d) / d
        L = L + 2.0 * g[lin] @ dw + dw @ Hw @ dw
        g = g + H[:, lin] @ dw
        theta[lin] += dw
        return theta, H, g, L

    def extra_normal_equations(self, mtp: MTP):
        """(H, g, L) of loss terms beyond the batches', summed like theirs (before the division by the number of
        structures); none here (0.0, 0.0, 0.0). Subclasses add terms (:class:`mtpjax.fit.loss.ForceConstantLM`)."""
        return 0.0, 0.0, 0.0

    def damped_step(self, mtp: MTP, H, g, lam: float):
        """The step (n,) of the damped Gauss–Newton system (Jacobi-scaled; damping on the radial block only)."""
        n_r = n_parameters(mtp)[0]
        d = np.sqrt(np.maximum(np.diag(H), 1e-300))
        A = H / d[:, None] / d[None, :]
        damp = np.zeros(len(d))
        damp[:n_r] = lam
        return -_solve(A + np.diag(damp + self.ridge), g / d) / d

    # -- the Method protocol

    def init(self, models: MTP, batches, n_structures: int) -> LMState:
        M = n_models(models)
        plan = unstack_models(models)[0].plan
        if plan.n_basic > LARGE_BASIS:
            import warnings

            warnings.warn(f"Levenberg-Marquardt with {plan.n_scalars} basis functions ({plan.n_basic} basic moments): each "
                          "iteration's Jacobian pass grows with basic moments x coefficients per atom (on a CPU level 24 "
                          "costs ~16x level 16, level 20 ~3x); on a large data set without a GPU, --optimizer lbfgs, whose "
                          "steps cost a few energy-and-force evaluations, may be cheaper", stacklevel=2)
        n = int(sum(n_parameters(unstack_models(models)[0])))
        w = max(int(self.cfg.lm_window), 1)
        return LMState(lam=jnp.full(M, self.cfg.lm_lambda0), nu=jnp.full(M, 2.0), value=jnp.full(M, jnp.inf),
                       H=jnp.zeros((M, n, n)), g=jnp.zeros((M, n)), ready=jnp.zeros(M, bool),
                       history=jnp.full((M, w + 1), jnp.nan))

    def step(self, k: int, models: MTP, state: LMState, batches, n_structures: int):
        cfg = self.cfg
        out_models, rows, values, done = [], [], [], []
        for m, mtp in enumerate(unstack_models(models)):
            lam, nu = float(state.lam[m]), float(state.nu[m])
            if bool(state.ready[m]):
                L, H, g = float(state.value[m]), np.asarray(state.H[m]), np.asarray(state.g[m])
                theta = np.array(flatten(mtp), np.float64)
            else:  # the first pass: eliminate the linear coefficients of the starting point
                theta, H, g, L = self.system(mtp, batches, n_structures)
            stop = False
            n_r = n_parameters(mtp)[0]
            for _ in range(max(int(cfg.lm_max_tries), 1)):
                delta = self.damped_step(mtp, H, g, lam)
                pred = -(2.0 * g @ delta + delta @ H @ delta)
                # the trial keeps the current (exact) linear coefficients: system() eliminates them again there, and
                # starting from the optimum of the current point keeps that elimination small (no cancellation in L*)
                step_c = np.where(np.arange(len(delta)) < n_r, delta, 0.0)
                trial = unflatten(mtp, jnp.asarray(theta + step_c, mtp.moment_coeffs.dtype))
                th2, H2, g2, L2 = self.system(trial, batches, n_structures)
                if np.isfinite(L2) and L2 < L:
                    ratio = (L - L2) / pred if pred > 0 else 0.0
                    lam *= max(1.0 / 3.0, 1.0 - (2.0 * ratio - 1.0) ** 3)
                    nu = 2.0
                    theta, H, g, L = th2, H2, g2, L2
                    break
                lam *= nu
                nu *= 2.0
            else:
                stop = True  # no trial lowered the loss: a minimum to the optimiser's resolution
            hist = np.asarray(state.history[m])
            hist = np.concatenate([hist[1:], [L]])
            d = np.sqrt(np.maximum(np.diag(H), 1e-300))
            gnorm = float(np.max(np.abs(g / d))) / max(np.sqrt(abs(L)), 1e-300)
            if np.isfinite(hist[0]) and (hist[0] - L) <= cfg.lm_ftol * abs(hist[0]) and not loss_accelerating(hist):
                stop = True
            if gnorm < cfg.lm_gtol:
                stop = True
            if not stop and np.linalg.norm(delta[:n_r]) <= cfg.lm_xtol * (np.linalg.norm(theta[:n_r]) + cfg.lm_xtol):
                stop = True  # the radial coefficients no longer move
            out_models.append(unflatten(mtp, jnp.asarray(theta, mtp.moment_coeffs.dtype)))
            rows.append((lam, nu, L, H, g, hist))
            values.append(L)
            done.append(stop)
        lam, nu, L, H, g, hist = (np.stack(x) for x in zip(*rows))
        new_state = LMState(lam=jnp.asarray(lam), nu=jnp.asarray(nu), value=jnp.asarray(L), H=jnp.asarray(H), g=jnp.asarray(g),
                            ready=jnp.ones(len(values), bool), history=jnp.asarray(hist))
        return stack_models(out_models), new_state, np.asarray(values, np.float64), np.asarray(done, bool)
