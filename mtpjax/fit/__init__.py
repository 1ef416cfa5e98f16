"""Fitting MTPs: MLIP's objective, the exact linear solve, the optimisers, one training loop for M stacked models,
checkpoints and the library entry point :func:`train_potential`.

Modules:

- :mod:`~mtpjax.fit.residuals`: the loss terms of one batch (:class:`LossConfig`, :func:`efs`, :func:`weighted_residuals`);
- :mod:`~mtpjax.fit.gradient`: the fast gradient of a batch's loss (forward-mode direction + coefficient-free pair basis);
- :mod:`~mtpjax.fit.loss`: the objective over all batches (:func:`loss`) and the RMSEs (:func:`errors`);
- :mod:`~mtpjax.fit.linear`: the exact linear solve, Gram-Schmidt of the radial coefficients, the starting model;
- :mod:`~mtpjax.fit.params`: the trained coefficients, the preconditioner, stacked models;
- :mod:`~mtpjax.fit.config`: :class:`FitConfig`;
- :mod:`~mtpjax.fit.optimizers`: the :class:`Method` protocol and the gradient methods (L-BFGS, BFGS, Adam);
- :mod:`~mtpjax.fit.loop`: the one training loop (:func:`fit_models`; :func:`fit` and :func:`fit_group` over it) and
  the registry of methods :data:`METHODS`;
- :mod:`~mtpjax.fit.checkpoint`: the one checkpoint format, with the settings and data digest a resume must match;
- :mod:`~mtpjax.fit.train`: :func:`train_potential` / :func:`train_potentials` and the outputs of a fit.
"""
from .checkpoint import CHECKPOINT, records_digest
from .config import MLIP_LINEAR_SOLVES, FitConfig
from .linear import design_columns, initial_mtp, linear_solve, orthonormalize_radial
from .loop import METHODS, FitResult, NonFiniteLoss, fit, fit_group, fit_models, make_method
from .loss import count_structures, errors, flat_batches, loss, radial_penalty
from .optimizers import GradientMethod, GradientState, Method, minibatch_order, scale_by_bfgs
from .params import (
    n_models,
    scale_from_diagonal,
    scaled,
    stack_models,
    trainable,
    unit_scale,
    unscaled,
    unstack_models,
    with_trainable,
)
from .residuals import LossConfig, batch_loss_terms, efs, weighted_residuals
from .train import (
    Run,
    check_cutoff,
    count_atoms,
    default_rmin,
    finish_run,
    label_report,
    plot_loss,
    shard_over_devices,
    split_validation,
    subsample_records,
    train_potential,
    train_potentials,
    training_min_distance,
    write_metrics,
)

__all__ = [
    "CHECKPOINT", "records_digest", "MLIP_LINEAR_SOLVES", "FitConfig", "design_columns", "initial_mtp", "linear_solve",
    "orthonormalize_radial", "METHODS", "FitResult", "NonFiniteLoss", "fit", "fit_group", "fit_models", "make_method",
    "count_structures", "errors", "flat_batches", "loss", "radial_penalty", "GradientMethod", "GradientState", "Method",
    "minibatch_order", "scale_by_bfgs", "n_models", "scale_from_diagonal", "scaled", "stack_models", "trainable",
    "unit_scale", "unscaled", "unstack_models", "with_trainable", "LossConfig", "batch_loss_terms", "efs",
    "weighted_residuals", "Run", "check_cutoff", "count_atoms", "default_rmin", "finish_run", "label_report", "plot_loss",
    "shard_over_devices", "split_validation", "subsample_records", "train_potential", "train_potentials", "training_min_distance",
    "write_metrics",
]
