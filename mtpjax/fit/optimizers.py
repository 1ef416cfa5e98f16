"""The optimisers of a fit as *methods*: objects that advance M stacked models by one step.

A method (:class:`Method`) is built from a :class:`~mtpjax.fit.config.FitConfig` by the registry
:data:`mtpjax.fit.loop.METHODS` and driven by the one training loop (:func:`mtpjax.fit.loop.fit_models`), which
handles NaNs, stopping, checkpoints, validation and progress. Here: the gradient methods ``lbfgs`` (optax L-BFGS),
``bfgs`` (dense BFGS as MLIP, :func:`scale_by_bfgs`) and ``adam`` (minibatches, :func:`minibatch_order`). Each owns
its schedule of exact linear solves (``FitConfig.linear_solve_at``: Gram-Schmidt of the radial coefficients, the
solve, the diagonal preconditioner, a fresh optimiser state), done per model on the host inside :meth:`step`.

One jitted step advances all models: vmapped over the model axis (the data shared), or, for a single model, the
same step as an unstacked fit (the model axis of length 1 dropped inside the program).
"""
from __future__ import annotations

import functools
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..model import MTP
from .config import FitConfig
from .linear import linear_solve, orthonormalize_radial
from .loss import loss
from .params import (
    n_models,
    scale_from_diagonal,
    scaled,
    stack,
    trainable,
    unit_scale,
    unscaled,
    unstack,
    unstack_models,
    with_trainable,
)
from .residuals import LossConfig


class Method(Protocol):
    """An optimiser of M stacked models (host-level protocol of the training loop).

    ``models``: an MTP whose every leaf has a leading model axis of length M. ``state``: a pytree of arrays, each with
    the leading axis M, that equinox can serialise (it goes into checkpoints as it is; everything the method needs to
    continue bit-identically must be in it). ``batches``: the training batches (on the device for full-batch methods,
    host numpy for the others). ``n_structures``: the number of real training structures (the loss's divisor).

    :meth:`step` returns the new models and state, ``values`` (np.ndarray (M,) float64: each model's loss at this
    step) and ``done`` (np.ndarray (M,) bool: the method's own convergence test says stop; that step's result is
    kept, then the model is frozen). The loop keeps the previous models and state of a model whose value is not
    finite, and of a model already stopped, so a method needs no masking of its own.

    Optional attribute ``full_batch`` (default True): False for minibatch methods; the loop then leaves the batches on
    the host and does not apply ``FitConfig.tolerance``.
    """

    name: str

    def init(self, models: MTP, batches, n_structures: int) -> Any: ...

    def step(self, k: int, models: MTP, state, batches, n_structures: int) -> tuple[MTP, Any, np.ndarray, np.ndarray]: ...


# --------------------------------------------------------------------------------------------------
# optax transformations


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


@functools.lru_cache(maxsize=32)
def optimizer(method: str, memory_size: int = 20, learning_rate: float = 1e-3, max_steps: int = 1000):
    """The optax transformation of a gradient method (cached: one object per setting, shared by init and step)."""
    if method == "adam":
        return optax.adam(optax.cosine_decay_schedule(learning_rate, max(max_steps, 1), alpha=0.01))
    linesearch = optax.scale_by_zoom_linesearch(max_linesearch_steps=25, initial_guess_strategy="one")
    if method == "lbfgs":
        return optax.lbfgs(memory_size=memory_size, linesearch=linesearch)
    if method == "bfgs":
        return optax.chain(scale_by_bfgs(), linesearch)
    raise ValueError(f"unknown optimiser {method!r} (lbfgs, bfgs or adam)")


def minibatch_order(seed: int, n_batches: int, step: int) -> int:
    """Index of the minibatch used at ``step``: epochs visit every batch once, in a permutation drawn from
    (seed, epoch), so a resumed run sees the same sequence."""
    epoch, k = divmod(step, n_batches)
    return int(np.random.default_rng([seed, epoch]).permutation(n_batches)[k])


# --------------------------------------------------------------------------------------------------
# the jitted steps


def _full_batch_body(loss_cfg: LossConfig, opt, n_structures: int):
    """(params, opt_state, static MTP, scale, (batches, force constants)) -> (params, opt_state, loss) of one model,
    unjitted; the force constants (:class:`~mtpjax.fit.residuals.ForceConstantData`, usually none) enter
    :func:`mtpjax.fit.loss.loss` as its ``force_constants``."""

    def step(params, state, static, scale, data):
        batches, fcs = data
        fn = lambda p: loss(with_trainable(static, unscaled(p, scale)), batches, loss_cfg, n_structures,  # noqa: E731
                            force_constants=fcs)
        val, grad = optax.value_and_grad_from_state(fn)(params, state=state)
        updates, state = opt.update(grad, state, params, value=val, grad=grad, value_fn=fn)
        return optax.apply_updates(params, updates), state, val

    return step


def _minibatch_body(loss_cfg: LossConfig, opt):
    """The Adam step on one minibatch (its own structure count normalises its loss)."""

    def step(params, state, static, scale, lb):
        n = jnp.maximum(jnp.sum(lb.weight > 0), 1)
        fn = lambda p: loss(with_trainable(static, unscaled(p, scale)), [lb], loss_cfg, n)  # noqa: E731
        val, grad = jax.value_and_grad(fn)(params)
        updates, state = opt.update(grad, state, params)
        return optax.apply_updates(params, updates), state, val

    return step


def over_models(step, n: int):
    """Jit ``step`` (params, state, static, scale, data) -> (params, state, value) for stacked models: vmapped over
    the model axis for n > 1 (the data shared); for n = 1 the axis is dropped inside the program, which is then the
    step of a single fit."""
    if n > 1:
        return jax.jit(jax.vmap(step, in_axes=(0, 0, 0, 0, None)))

    def one(P, O, M, S, data):
        first = lambda t: jax.tree.map(lambda x: x[0], t)  # noqa: E731
        return jax.tree.map(lambda x: x[None], step(first(P), first(O), first(M), first(S), data))

    return jax.jit(one)


@functools.lru_cache(maxsize=32)
def compiled_step(loss_cfg: LossConfig, method: str, memory_size: int, learning_rate: float, max_steps: int,
                  n_structures: int, stacked: bool):
    """The jitted step of a gradient method (cached, so repeated fits with the same settings compile once)."""
    if method == "adam":
        body = _minibatch_body(loss_cfg, optimizer("adam", 0, learning_rate, max_steps))
    else:
        body = _full_batch_body(loss_cfg, optimizer(method, memory_size), n_structures)
    return over_models(body, 2 if stacked else 1)


def _init_opt_state(opt, params):
    """The optimiser's initial state with strong types (as after an update), so the step compiles once."""
    return jax.tree.map(lambda x: jnp.array(x, dtype=x.dtype), opt.init(params))


# --------------------------------------------------------------------------------------------------
# the gradient methods


class GradientState(NamedTuple):
    """State of a gradient method, each leaf with a leading model axis: the optimiser's variables ``params``
    (coefficients x ``scale``, kept as they are so that a resumed run is bit-identical), the diagonal preconditioner
    ``scale`` and the optax state."""

    params: tuple
    scale: tuple
    opt_state: Any


class GradientMethod:
    """L-BFGS, BFGS or Adam over stacked models, with MLIP's schedule of exact linear solves.

    Two hooks for a subclass that adds a loss term (:class:`mtpjax.fit.force_constants.ForceConstantGradient`):
    ``force_constants``, passed to the full-batch loss, and :meth:`solve_linear`, the exact linear solve."""

    #: :class:`~mtpjax.fit.residuals.ForceConstantData` of the full-batch loss (none here)
    force_constants = ()

    def __init__(self, cfg: FitConfig, name: str):
        self.cfg, self.name = cfg, name
        self.full_batch = name != "adam"
        self.opt = optimizer("adam", 0, cfg.learning_rate, cfg.max_steps) if name == "adam" else optimizer(name, cfg.memory_size)

    def _fresh(self, params: list, scales: list) -> GradientState:
        return GradientState(stack(params), stack(scales), stack([_init_opt_state(self.opt, p) for p in params]))

    def init(self, models: MTP, batches, n_structures: int) -> GradientState:
        singles = unstack_models(models)
        scales = [unit_scale(m) for m in singles]
        return self._fresh([scaled(trainable(m), s) for m, s in zip(singles, scales)], scales)

    def linear_solves(self, models: MTP, state: GradientState, batches, n_structures: int):
        """The exact linear solve of every model (host), each after Gram-Schmidt of its radial coefficients; a new
        preconditioner and a fresh optimiser state."""
        cfg = self.cfg
        n = n_models(models)
        out_m, out_p, out_s = [], [], []
        for m, p, s in zip(unstack_models(models), unstack(state.params, n), unstack(state.scale, n)):
            m = with_trainable(m, unscaled(p, s))
            if cfg.orthonormalize:
                m = orthonormalize_radial(m)
            m, diag = self.solve_linear(m, batches, n_structures)
            s = scale_from_diagonal(m, diag) if cfg.precondition else unit_scale(m)
            out_m.append(m)
            out_p.append(scaled(trainable(m), s))
            out_s.append(s)
        return stack(out_m), self._fresh(out_p, out_s)

    def solve_linear(self, m: MTP, batches, n_structures: int):
        """(the MTP with its species and moment coefficients solved exactly, the diagonal of the linear system's
        matrix over the nonlinear parameters, for the preconditioner) of one model."""
        return linear_solve(m, batches, self.cfg.loss, n_structures, return_diagonal=True)

    def step(self, k: int, models: MTP, state: GradientState, batches, n_structures: int):
        cfg = self.cfg
        n = n_models(models)
        if k in cfg.linear_solve_at:
            models, state = self.linear_solves(models, state, batches, n_structures)
        jstep = compiled_step(cfg.loss, self.name, cfg.memory_size, cfg.learning_rate, cfg.max_steps, n_structures, n > 1)
        if self.full_batch:
            data = (batches, tuple(self.force_constants))
        else:  # one minibatch, in a seeded order, moved to the device for this step only
            data = jax.tree.map(jnp.asarray, batches[minibatch_order(cfg.seed, len(batches), k)])
        params, opt_state, values = jstep(state.params, state.opt_state, models, state.scale, data)
        state = GradientState(params, state.scale, opt_state)
        models = with_trainable(models, unscaled(params, state.scale))
        return models, state, np.asarray(values, np.float64), np.zeros(n, bool)


#: The gradient methods by name (the registry of all methods is :data:`mtpjax.fit.loop.METHODS`).
GRADIENT_METHODS = {name: functools.partial(GradientMethod, name=name) for name in ("lbfgs", "bfgs", "adam")}
