"""The options of a fit."""
from __future__ import annotations

from dataclasses import dataclass, field

from .residuals import LossConfig

#: MLIP-3's schedule of exact linear solves (LinOptimize): the L-BFGS steps before which they run.
MLIP_LINEAR_SOLVES = (0, 25, 70, 100, 150, 250, 400)

#: The most steps of each optimiser when ``FitConfig.max_steps`` is None. A Levenberg-Marquardt step is one accepted
#: iteration (one or more passes of the residual Jacobian, each about 25 energy-and-force passes of the data set), and
#: it stops by its own convergence test long before this; a gradient step is one loss-and-gradient evaluation.
DEFAULT_MAX_STEPS = {"lm": 200, "lbfgs": 1000, "bfgs": 1000, "adam": 1000}

#: Steps over which the relative decrease of the loss is measured for ``FitConfig.tolerance``.
TOLERANCE_WINDOW = 50


@dataclass
class FitConfig:
    """Options of :func:`mtpjax.fit.fit` and :func:`mtpjax.fit.train_potential`."""

    max_steps: int | None = None  # None: the method's default (DEFAULT_MAX_STEPS)
    loss: LossConfig = field(default_factory=LossConfig)
    linear_solve_at: tuple = MLIP_LINEAR_SOLVES  # steps at which species/moment coefficients are re-solved exactly
    checkpoint_every: int = 50
    method: str = "lm"  # a key of mtpjax.fit.loop.METHODS: "lm" (Levenberg-Marquardt, variable projection), "lbfgs" (optax L-BFGS), "bfgs" (dense, as MLIP), "adam" (minibatches)
    precondition: bool = True  # scale linear coefficients by the curvature found in each linear solve
    memory_size: int = 20  # L-BFGS memory
    tolerance: float = 1e-12  # stop a model when its relative loss decrease over 50 steps falls below this (full batch only)
    orthonormalize: bool = True  # Gram-Schmidt the radial coefficient vectors before each linear solve (MLIP's LinOptimize)
    learning_rate: float = 1e-3  # Adam: peak learning rate, cosine-decayed to 1 % over max_steps
    seed: int = 0  # Adam: the order of the minibatches (a fresh permutation per epoch, from (seed, epoch))
    validation_fraction: float = 0.0  # > 0: hold out this fraction of the training structures for early stopping
    validate_every: int | None = None  # steps between evaluations of the validation loss (None: 1 for lm, else 10)
    patience: int = 5  # stop a model after this many validation evaluations without improvement
    # Levenberg-Marquardt ("lm", mtpjax.fit.lm): one step is one accepted iteration
    lm_ftol: float = 1e-2  # stop when the loss fell by less than this (relative) over the last lm_window iterations
    lm_window: int = 5
    lm_gtol: float = 1e-8  # stop when max |gradient| / sqrt(curvature * loss) falls below this
    lm_xtol: float = 1e-10  # stop when the radial step is below this, relative to the radial coefficients
    lm_max_tries: int = 10  # rejected trial steps (each doubling the damping again) before a model stops
    lm_lambda0: float = 1e-3  # initial damping (relative to the diagonal of J^T J)
    lm_ridge: float = 1e-6  # relative ridge of the linear coefficients' elimination (keeps L*(c) smooth when they are ill-determined)
    lm_subset_atoms: int = 20000  # more than twice this many training atoms: LM first converges on a seeded random subset of about this many atoms, then goes on with all of them (0: never)

    def __post_init__(self):
        if self.max_steps is None:
            self.max_steps = DEFAULT_MAX_STEPS.get(self.method, 1000)
        if self.validate_every is None:
            self.validate_every = 1 if self.method == "lm" else 10
