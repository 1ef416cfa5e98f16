"""Fits with the force-constant term (``LossConfig.force_constant_weight``; :mod:`mtpjax.fit.residuals`) for every
full-batch optimiser:

    method = force_constant_method(cfg, force_constant_data(cells, cutoff))
    result = fit_models(models, batches, cfg, method=method)

- ``lm``: :class:`mtpjax.fit.loss.ForceConstantLM` (the term's normal equations added at every pass);
- ``lbfgs``/``bfgs``: :class:`ForceConstantGradient`: the optimiser's step on :func:`mtpjax.fit.loss.loss` with
  ``force_constants`` (its gradient: the fast gradient of the energy/force/virial terms plus plain autodiff through
  the MTP's exact Hessian), and MLIP's scheduled exact linear solves done on the loss with the term (the species and
  moment coefficients enter the Hessian linearly, so the elimination of :meth:`LevenbergMarquardt.system` is exact;
  relative ridge ``lm_ridge``);
- ``adam`` (minibatches) is refused: the term is full-batch.

With ``force_constant_weight`` 0 or no labelled structures, each method is exactly its plain counterpart.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax

from ..errors import MtpjaxError
from ..model import MTP
from .config import FitConfig
from .jacobian import n_parameters, unflatten
from .linear import orthonormalize_radial
from .loss import ForceConstantLM, loss
from .optimizers import GradientMethod, GradientState, optimizer, over_models
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


def _body(loss_cfg, opt, n_structures: int):
    """(params, opt_state, static MTP, scale, (batches, force constants)) -> (params, opt_state, loss) of one model."""

    def step(params, state, static, scale, data):
        batches, fcs = data
        fn = lambda p: loss(with_trainable(static, unscaled(p, scale)), batches, loss_cfg, n_structures,  # noqa: E731
                            force_constants=fcs)
        val, grad = optax.value_and_grad_from_state(fn)(params, state=state)
        updates, state = opt.update(grad, state, params, value=val, grad=grad, value_fn=fn)
        return optax.apply_updates(params, updates), state, val

    return step


class ForceConstantGradient(GradientMethod):
    """L-BFGS or BFGS (:class:`mtpjax.fit.optimizers.GradientMethod`) on the loss with the force-constant term of the
    structures ``force_constants`` (:class:`~mtpjax.fit.residuals.ForceConstantData`)."""

    def __init__(self, cfg: FitConfig, name: str, force_constants=()):
        if name == "adam":
            raise MtpjaxError("the force-constant term is full-batch: use optimizer lm, lbfgs or bfgs, not adam")
        super().__init__(cfg, name)
        self.force_constants = list(force_constants)
        self._compiled = {}

    @property
    def active(self) -> bool:
        return bool(self.force_constants) and self.cfg.loss.force_constant_weight != 0

    def linear_solves(self, models: MTP, state: GradientState, batches, n_structures: int):
        """As :meth:`GradientMethod.linear_solves`, with the linear coefficients eliminated on the loss with the term."""
        if not self.active:
            return super().linear_solves(models, state, batches, n_structures)
        cfg = self.cfg
        lm = ForceConstantLM(cfg, self.force_constants)
        n = n_models(models)
        out_m, out_p, out_s = [], [], []
        for m, p, s in zip(unstack_models(models), unstack(state.params, n), unstack(state.scale, n)):
            m = with_trainable(m, unscaled(p, s))
            if cfg.orthonormalize:
                m = orthonormalize_radial(m)
            theta, H, _, _ = lm.system(m, batches, n_structures)
            m = unflatten(m, jnp.asarray(theta, m.moment_coeffs.dtype))
            s = scale_from_diagonal(m, np.diag(H)[n_parameters(m)[0]:]) if cfg.precondition else unit_scale(m)
            out_m.append(m)
            out_p.append(scaled(trainable(m), s))
            out_s.append(s)
        return stack(out_m), self._fresh(out_p, out_s)

    def step(self, k: int, models: MTP, state: GradientState, batches, n_structures: int):
        if not self.active:
            return super().step(k, models, state, batches, n_structures)
        cfg = self.cfg
        n = n_models(models)
        if k in cfg.linear_solve_at:
            models, state = self.linear_solves(models, state, batches, n_structures)
        key = (n_structures, n > 1)
        if key not in self._compiled:
            self._compiled[key] = over_models(_body(cfg.loss, optimizer(self.name, cfg.memory_size), n_structures), 2 if n > 1 else 1)
        params, opt_state, values = self._compiled[key](state.params, state.opt_state, models, state.scale,
                                                        (batches, self.force_constants))
        state = GradientState(params, state.scale, opt_state)
        models = with_trainable(models, unscaled(params, state.scale))
        return models, state, np.asarray(values, np.float64), np.zeros(n, bool)


def force_constant_method(cfg: FitConfig, force_constants=()):
    """The method of ``cfg.method`` with the force-constant term of ``force_constants``, for
    :func:`mtpjax.fit.fit_models` (``method=``): :class:`~mtpjax.fit.loss.ForceConstantLM` or
    :class:`ForceConstantGradient`."""
    if cfg.method == "lm":
        return ForceConstantLM(cfg, force_constants)
    return ForceConstantGradient(cfg, cfg.method, force_constants)
