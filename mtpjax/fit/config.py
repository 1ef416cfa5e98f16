"""The options of a fit, as dataclasses: the one source of their defaults, their config-file keys, their
command-line options and help (through :mod:`mtpjax.config`).

- :class:`FitConfig`: how the optimiser runs (with :class:`~mtpjax.fit.residuals.LossConfig`'s weights flattened into
  the same table: ``energy_weight``, ...);
- :class:`TrainOptions`: the rest of :func:`mtpjax.fit.train_potential`'s options (r_min, the radial start, batches);
- :class:`FitCommand` / :class:`SweepCommand`: the ``[fit]`` / ``[sweep]`` tables of ``mtpjax fit`` / ``mtpjax sweep``
  ``--config`` files, and those commands' options.

Units: Å (cutoffs, r_min), dimensionless weights and fractions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .residuals import LossConfig
from .validate import (
    METHODS,
    mtp_level,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)

#: MLIP-3's schedule of exact linear solves (LinOptimize): the L-BFGS steps before which they run.
MLIP_LINEAR_SOLVES = (0, 25, 70, 100, 150, 250, 400)

#: The most steps of each optimiser when ``FitConfig.max_steps`` is None. A Levenberg-Marquardt step is one accepted
#: iteration (one or more passes of the residual Jacobian, each about 25 energy-and-force passes of the data set), and
#: it stops by its own convergence test long before this; a gradient step is one loss-and-gradient evaluation.
DEFAULT_MAX_STEPS = {"lm": 200, "lbfgs": 1000, "bfgs": 1000, "adam": 1000}

#: Steps over which the relative decrease of the loss is measured for ``FitConfig.tolerance``.
TOLERANCE_WINDOW = 50

#: The salt of the seeded random train/test split (``numpy.random.default_rng([seed, SPLIT_SALT])``) of ``mtpjax run``
#: and the experiments: one split per seed, different from the seed's other random streams.
SPLIT_SALT = 2023

_WEIGHT = {"check": non_negative_float}
#: Checks and help of LossConfig's fields where FitConfig flattens them into its table.
LOSS_FIELDS = {
    "energy_weight": {**_WEIGHT, "help": "energy weight (MLIP's; per atom squared, eV²)"},
    "force_weight": {**_WEIGHT, "help": "force weight (MLIP's; per component squared, (eV/Å)²)"},
    "stress_weight": {**_WEIGHT, "help": "virial weight (MLIP's; per component squared, eV²)"},
    "energy_power": {"check": non_negative_float, "help": "energy term divided by N^energy_power (MLIP's weight_scaling)"},
    "force_power": {"check": non_negative_float,
                    "help": "force term divided by N^force_power (MLIP's weight_scaling_forces)"},
    "penalty_weight": {"check": non_negative_float, "help": "weight of the radial coefficients' penalty"},
    "force_constant_weight": {**_WEIGHT, "help": (
        "force-constant weight (per Hessian entry squared, (eV/Å²)², divided by N; default 0: off). > 0 needs "
        "structures labelled with force constants: mtpjax fit --force-constants FILE (e.g. mtpjax generate's "
        "HESSIAN.extxyz); mtpjax run: the HESSIAN subset of [generate]; optimizer lm, lbfgs or bfgs")},
    "fast_gradient": {"help": "the loss gradient through mtpjax.fit.gradient (same values, about 2x cheaper); "
                              "--no-fast-gradient: plain autodiff"},
}


@dataclass
class FitConfig:
    """Options of :func:`mtpjax.fit.fit` and :func:`mtpjax.fit.train_potential` (in a config file's ``[fit]`` table;
    ``method`` is written ``optimizer`` there and on the command line)."""

    max_steps: int | None = field(default=None, metadata={"check": positive_int, "help": (
        "most optimiser steps (default: the optimiser's own, mtpjax.fit.config.DEFAULT_MAX_STEPS: 200 "
        "Levenberg-Marquardt iterations, which stop by their own convergence test; 1000 for the others)")})
    loss: LossConfig = field(default_factory=LossConfig, metadata={"flatten": True, "fields": LOSS_FIELDS})
    linear_solve_at: tuple[int, ...] = field(default=MLIP_LINEAR_SOLVES, metadata={"check": non_negative_int, "help": (
        "lbfgs, bfgs, adam: steps at which species and moment coefficients are re-solved exactly and the optimiser "
        "restarts (default: MLIP-3's 0 25 70 100 150 250 400; lm eliminates them exactly at every step)")})
    checkpoint_every: int = field(default=50, metadata={
        "check": positive_int, "help": (
            "steps between checkpoints (one is also written after 10 minutes without one; a file STOP in the work "
            "folder ends the fit after its current step, with what it has)")})
    method: Literal[METHODS] = field(default="lm", metadata={"key": "optimizer", "help": (
        "lm (Levenberg-Marquardt with variable projection on the exact residual Jacobian, default), lbfgs (optax "
        "L-BFGS, full batch), bfgs (dense inverse Hessian, as MLIP) or adam (minibatches of max_batch_atoms atoms, "
        "for data sets larger than device memory)")})
    precondition: bool = True  # scale linear coefficients by the curvature found in each linear solve
    memory_size: int = field(default=20, metadata={"check": positive_int, "help": "L-BFGS memory"})
    tolerance: float = field(default=1e-12, metadata={"check": non_negative_float, "help": (
        "stop a model when its relative loss decrease over 50 steps falls below this (full batch only)")})
    orthonormalize: bool = field(default=True, metadata={"help": (
        "Gram-Schmidt the radial coefficient vectors before each linear solve, as MLIP's LinOptimize does "
        "(--no-orthonormalize: do not)")})
    learning_rate: float = field(default=1e-3, metadata={"check": positive_float, "help": (
        "Adam's peak learning rate (cosine-decayed to 1 % over max_steps)")})
    seed: int = field(default=0, metadata={"check": non_negative_int, "help": (
        "seed of the initial radial coefficients, the validation split and Adam's minibatch order")})
    validation_fraction: float = field(default=0.0, metadata={"check": non_negative_float, "help": (
        "hold out this fraction of the training structures (seeded by seed): every step (lm) or 10 steps (the "
        "others) the loss on them is evaluated, the parameters with the best one are kept, and a fit stops after "
        "patience evaluations without improvement (default 0: no early stopping)")})
    validate_every: int | None = field(default=None, metadata={"check": positive_int, "help": (
        "steps between evaluations of the validation loss (default: 1 for lm, else 10)")})
    patience: int = field(default=5, metadata={"check": positive_int, "help": (
        "stop a model after this many validation evaluations without improvement")})
    # Levenberg-Marquardt ("lm", mtpjax.fit.lm): one step is one accepted iteration
    lm_ftol: float = field(default=1e-2, metadata={"check": non_negative_float, "help": (
        "lm: stop when the loss fell by less than this (relative) over the last lm_window iterations")})
    lm_window: int = field(default=5, metadata={"check": positive_int, "help": "lm: iterations of lm_ftol's window"})
    lm_gtol: float = field(default=1e-8, metadata={"check": non_negative_float, "help": (
        "lm: stop when max |gradient| / sqrt(curvature x loss) falls below this")})
    lm_xtol: float = field(default=1e-10, metadata={"check": non_negative_float, "help": (
        "lm: stop when the radial step is below this, relative to the radial coefficients")})
    lm_max_tries: int = field(default=10, metadata={"check": positive_int, "help": (
        "lm: rejected trial steps (each doubling the damping again) before a model stops")})
    lm_lambda0: float = field(default=1e-3, metadata={"check": positive_float, "help": (
        "lm: initial damping (relative to the diagonal of J^T J)")})
    lm_ridge: float = field(default=1e-6, metadata={"check": non_negative_float, "help": (
        "lm: relative ridge of the linear coefficients' elimination (keeps L*(c) smooth when they are "
        "ill-determined)")})
    lm_subset_atoms: int = field(default=20000, metadata={"check": non_negative_int, "help": (
        "lm: with more than twice this many training atoms, first converge on a seeded random subset of about this "
        "many atoms, then go on with all of them (0: never)")})

    def check_config(self) -> None:
        """Checks across fields, for :func:`mtpjax.config.from_dict` (each field's own range is its ``check``)."""
        from ..errors import ConfigError

        if not self.validation_fraction < 1:
            raise ConfigError("validation_fraction", f"must be in [0, 1), got {self.validation_fraction}")
        w = self.loss
        if w.energy_weight == w.force_weight == w.stress_weight == 0:
            raise ConfigError("energy_weight", "energy_weight, force_weight and stress_weight are all 0: nothing to fit")

    def __post_init__(self):
        if self.max_steps is None:
            self.max_steps = DEFAULT_MAX_STEPS.get(self.method, 1000)
        if self.validate_every is None:
            self.validate_every = 1 if self.method == "lm" else 10


@dataclass(frozen=True)
class TrainOptions:
    """The options of :func:`mtpjax.fit.train_potential` besides the level, cutoff and :class:`FitConfig`."""

    rmin: float | None = field(default=None, metadata={"check": positive_float, "help": (
        "r_min in Å (default: 0.99 x the shortest training distance, as MLIP-3)")})
    init: Literal["mlip", "random"] = field(default="mlip", metadata={"help": (
        "radial start: mlip (function mu = Chebyshev T_mu, as MLIP-3; default) or random orthonormal")})
    max_batch_atoms: int = field(default=100000, metadata={"check": positive_int, "help": (
        "atoms per packed batch (default 100000: all in one)")})


_PATHS = {"path": True}


@dataclass(frozen=True)
class FitCommand:
    """``mtpjax fit``: its options and the ``[fit]`` table of its ``--config`` file (paths relative to the file)."""

    train: tuple[str, ...] = field(default=(), metadata={**_PATHS, "help": (
        "training data files (.cfg, extxyz, ASE db); required")})
    test: tuple[str, ...] | None = field(default=None, metadata={**_PATHS, "help": (
        "test data files (errors reported, never fitted)")})
    level: int | None = field(default=None, metadata={"check": mtp_level, "help": "MTP level (2-28); required"})
    cutoff: float | None = field(default=None, metadata={"check": positive_float, "help": "cutoff R_cut in Å; required"})
    species: tuple[str, ...] | None = field(default=None, metadata={"help": (
        "element of each MTP type (default: one species)")})
    output: str | None = field(default=None, metadata={**_PATHS, "help": (
        "fitted potential: .almtp (MLIP, LAMMPS) and, beside it, mtpjax's exact .mtpjax; required")})
    workdir: str | None = field(default=None, metadata={**_PATHS, "help": (
        "checkpoint, metrics and plots (default: OUT's name + .fit)")})
    resume: bool = field(default=False, metadata={"help": "continue from the checkpoint in the work folder"})
    devices: int = field(default=1, metadata={"check": positive_int, "help": (
        "data-parallel over this many jax devices (GPUs; on CPU: "
        "XLA_FLAGS=--xla_force_host_platform_device_count=N)")})
    force_constants: tuple[str, ...] | None = field(default=None, metadata={**_PATHS, "help": (
        "files of structures labelled with force constants (extxyz per-atom array 'hessian', N x 9N eV/Å²; e.g. "
        "mtpjax generate's HESSIAN.extxyz) for the force-constant term; needs force_constant_weight > 0")})
    options: TrainOptions = field(default_factory=TrainOptions, metadata={"flatten": True})
    fit: FitConfig = field(default_factory=FitConfig, metadata={"flatten": True})

    #: Keys that must be set (on the command line or in the config file).
    REQUIRED = ("train", "level", "cutoff", "output")


@dataclass(frozen=True)
class SweepCommand:
    """``mtpjax sweep``: its options and the ``[sweep]`` table of its ``--config`` file (paths relative to the file).
    ``seed`` of :class:`FitConfig` is not an option: ``seeds`` are."""

    train: tuple[str, ...] = field(default=(), metadata={**_PATHS, "help": (
        "training data files (.cfg, extxyz, ASE db); required")})
    test: tuple[str, ...] | None = field(default=None, metadata={**_PATHS, "help": (
        "test data files (errors reported, never fitted)")})
    levels: tuple[int, ...] = field(default=(), metadata={"check": mtp_level, "help": "MTP levels; required"})
    cutoffs: tuple[float, ...] = field(default=(), metadata={"check": positive_float, "help": "cutoffs in Å; required"})
    subsets: tuple[str, ...] = field(default=("all",), metadata={"help": (
        "training subsets by tag ('all' = every structure; 'A+B' = the union of A and B)")})
    seeds: tuple[int, ...] = field(default=(0,), metadata={"check": non_negative_int, "help": "seeds"})
    group: Literal["auto", "level", "seed", "none"] = field(default="auto", metadata={"help": (
        "runs trained together in one compiled program: level (all cutoffs and seeds of a level, data packed at the "
        "largest cutoff), seed (the seeds of each cutoff), none, or auto (default: seed for the default optimiser lm, "
        "which steps its models in turn; level for the gradient optimisers, whose one vmapped step advances the whole "
        "group)")})
    species: tuple[str, ...] | None = field(default=None, metadata={"help": (
        "element of each MTP type (default: one species)")})
    output: str | None = field(default=None, metadata={**_PATHS, "help": (
        "sweep folder: runs/, results.csv, plots; required")})
    options: TrainOptions = field(default_factory=TrainOptions, metadata={"flatten": True})
    fit: FitConfig = field(default_factory=FitConfig, metadata={"flatten": True, "fields": {"seed": {"config": False}}})

    REQUIRED = ("train", "levels", "cutoffs", "output")
