"""The one training loop: M stacked MTPs advanced together by a method, with NaN handling, stopping, checkpoints,
validation and progress.

Models of the same level share the basis (the static part of :class:`mtpjax.model.MTP`), so their parameters stack
into one pytree with a leading model axis (:func:`mtpjax.fit.params.stack_models`); M = 1 is a single fit. A method
(:class:`mtpjax.fit.optimizers.Method`, from :data:`METHODS`) advances all of them by one step. The training data
is packed once at the largest cutoff; each model ignores the pairs beyond its own cutoff (the radial functions are
masked by r < R_cut), so its loss is exactly that of a separate fit.

Per model, the loop:

- keeps the last good models and state of a model whose loss is not finite, and stops it (the others go on);
- records the history [(step, loss), ...] of its finite losses;
- stops it when the method says so (``done``), or, for full-batch methods, when its relative loss decrease over the
  last 50 steps falls below ``FitConfig.tolerance`` (checked every 50 steps once it has more than 100 values);
- with validation batches, evaluates the validation loss (the same objective) every ``FitConfig.validate_every``
  steps, keeps the parameters with the best one and stops it after ``FitConfig.patience`` evaluations without
  improvement.

A stopped model is frozen (the method still computes it; its results are dropped). The loop ends at
``FitConfig.max_steps``, when all models are stopped, or when the file :data:`STOP_FILE` appears in the work folder
(``touch WORKDIR/STOP``): after the step under way, every model stops with what it has (reason ``"stop file"``) and
the fit finishes as at ``max_steps``; the file is left there and named in the log (a new fit in that folder removes
it, a resumed one keeps it: :func:`mtpjax.fit.train.train_potentials`). Checkpoints
(:mod:`mtpjax.fit.checkpoint`) are written every ``FitConfig.checkpoint_every`` steps, whenever
:data:`CHECKPOINT_SECONDS` of wall time have passed since the last one (so that a fit whose steps take minutes,
Levenberg-Marquardt at paper scale, loses at most that much to a kill), and at the end; a resumed fit continues
bit-identically.

Cost of a group: a model with a smaller cutoff still visits the pairs up to the largest one; group cutoffs that are
close, or group seeds only, when that matters (``mtpjax sweep --group``). On a GPU the group fills the device far
better than one small model does.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import MtpjaxError
from ..model import MTP
from . import checkpoint as ckpt_io
from .config import TOLERANCE_WINDOW, FitConfig
from .loss import count_structures, loss
from .lm import LevenbergMarquardt
from .optimizers import GRADIENT_METHODS, Method
from .params import n_models, select, stack_models, unstack_models
from .residuals import LossConfig

#: The optimisers by ``FitConfig.method``: a function of the FitConfig that gives a :class:`Method`.
METHODS: dict[str, Callable[[FitConfig], Method]] = dict(GRADIENT_METHODS)
METHODS["lm"] = LevenbergMarquardt  # Levenberg-Marquardt with variable projection (mtpjax/fit/lm.py)
# (a module that registers here must not import this one: import_cycles.py would report a cycle).

#: Wall time (s) after which the loop writes a checkpoint even between ``FitConfig.checkpoint_every`` steps: not a
#: setting of the fit (it changes neither the result nor what a resume must match). Measured: a level-20
#: Levenberg-Marquardt step on the 134,729-atom Mg set takes 155–205 s on a 2-core CPU, so 50 steps were 2–3 hours.
CHECKPOINT_SECONDS = 600.0
#: A file of this name in a fit's work folder ends the fit after its current step, with what it has: for a long fit
#: whose loss still falls slowly (a Levenberg-Marquardt step at paper scale takes minutes on a CPU).
STOP_FILE = "STOP"


def make_method(cfg: FitConfig) -> Method:
    """The method named by ``cfg.method``."""
    if cfg.method not in METHODS:
        raise MtpjaxError(f"unknown optimiser {cfg.method!r}; choose one of {', '.join(sorted(METHODS))}")
    return METHODS[cfg.method](cfg)


class NonFiniteLoss(MtpjaxError):
    """A model's loss was not finite from its first step: nothing was fitted."""


@dataclass
class FitResult:
    """What :func:`fit_models` returns. ``models``: stacked (the best-validation parameters where validation was
    used); ``histories``: per model [(step, loss), ...]; ``stopped``: per model why it stopped early ("not finite",
    "converged" (the method's test), "tolerance", "validation", "stop file") or None; ``validation``: per model
    {"history": [(step, loss)], "best_step", "best_loss"}, or None; ``steps``: the step counter at the end;
    ``cpu_s``: ``time.process_time()`` after each step of this run (not of a resumed past)."""

    models: MTP
    histories: list
    stopped: list
    validation: list | None
    steps: int
    cpu_s: list


def _on_device(batches):
    return [lb if isinstance(lb.weight, jax.Array) else jax.tree.map(jnp.asarray, lb) for lb in batches]


@functools.lru_cache(maxsize=16)
def _validation_loss(loss_cfg: LossConfig, n_structures: int, stacked: bool):
    """Jitted loss of each stacked model on the validation batches: (M,)."""
    one = lambda m, vb: loss(m, vb, loss_cfg, n_structures)  # noqa: E731
    if stacked:
        return jax.jit(jax.vmap(one, in_axes=(0, None)))
    return jax.jit(lambda ms, vb: one(jax.tree.map(lambda x: x[0], ms), vb)[None])


def fit_models(models: MTP, batches, cfg: FitConfig, *, names=None, method: Method | None = None, workdir=None,
               resume: bool = False, log=print, progress=None, timings: dict | None = None, validation=None,
               settings: dict | None = None, data_digest: str | None = None, stop_file=None) -> FitResult:
    """Minimise the loss of the stacked ``models`` (leading model axis M) on ``batches`` (packed at a cutoff no
    smaller than any model's) with ``cfg.method``; see the module docstring for the rules.

    ``workdir``: checkpoints go to ``workdir/checkpoint.eqx``; ``resume=True`` continues from one, after checking
    that it was written for the same ``settings`` (a JSON-able dict; default: ``{"fit": cfg}``; the model ``names``
    are added) and the same training data (``data_digest``; default: a digest of the packed batches), else
    MtpjaxError naming the differences (nothing is written). ``progress(k, values)`` after each step: the loss as a
    float for M = 1, an array (M,) otherwise. ``timings``: a dict that receives ``first_step_s`` (wall seconds of the
    first step: compilation and the first linear solve included), ``per_step_s`` (the mean of the others) and
    ``compile_s`` (their difference). ``validation``: packed held-out batches for early stopping. ``stop_file``:
    the file whose existence ends the fit after the current step (default ``workdir/STOP``; none without a workdir).

    Raises :class:`NonFiniteLoss` when a model's loss is not finite from its first step.
    """
    M = n_models(models)
    method = method or make_method(cfg)
    full_batch = getattr(method, "full_batch", True)
    if full_batch:  # everything on the device once; a minibatch method moves one batch per step
        batches = _on_device(batches)
    n_structures = count_structures(batches)
    if n_structures == 0:
        raise MtpjaxError("the training set is empty")
    names = [str(j) for j in range(M)] if names is None else [str(x) for x in names]
    if len(names) != M:
        raise MtpjaxError(f"{len(names)} names for {M} models")
    n_val = count_structures(validation) if validation else 0
    val_batches = _on_device(validation) if n_val else None
    ckpt = Path(workdir) / ckpt_io.CHECKPOINT if workdir else None
    stop_file = Path(stop_file) if stop_file is not None else Path(workdir) / STOP_FILE if workdir else None
    hinted = False
    settings = ckpt_io.jsonable({**(settings if settings is not None else {"fit": cfg}), "models": names})
    if ckpt is not None and data_digest is None:
        data_digest = ckpt_io.batches_digest(batches)
    header = None
    if resume and ckpt is not None and ckpt.exists():
        header = ckpt_io.check_resumable(ckpt, settings, data_digest)  # before anything is computed or written

    state = method.init(models, batches, n_structures)
    stopped = np.zeros(M, bool)
    reasons = [None] * M
    histories = [[] for _ in range(M)]
    if n_val:
        best_models, best_value = models, np.full(M, np.inf)
        best_step, bad_evals = np.full(M, -1, np.int64), np.zeros(M, np.int64)
        val_histories = [[] for _ in range(M)]
    else:
        best_models = best_value = best_step = bad_evals = val_histories = None
    start = 0

    def arrays():
        return {"models": models, "state": state, "stopped": stopped, "best_models": best_models,
                "best_value": best_value, "best_step": best_step, "bad_evals": bad_evals}

    def save(step: int) -> None:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        ckpt_io.save(ckpt, {"step": step, "settings": settings, "data": data_digest, "names": names,
                            "histories": histories, "stopped": reasons, "validation": val_histories}, arrays())

    if header is not None:
        header, tree = ckpt_io.load(ckpt, arrays())
        models, state, stopped = tree["models"], tree["state"], np.asarray(tree["stopped"], bool).copy()
        if n_val:
            best_models, best_value = tree["best_models"], np.asarray(tree["best_value"]).copy()
            best_step, bad_evals = np.asarray(tree["best_step"]).copy(), np.asarray(tree["bad_evals"]).copy()
            val_histories = [[tuple(h) for h in hs] for hs in header["validation"]]
        start, reasons = int(header["step"]), list(header["stopped"])
        histories = [[tuple(h) for h in hs] for hs in header["histories"]]
        log(f"resumed from {ckpt} at step {start}")

    val_loss = _validation_loss(cfg.loss, n_val, M > 1) if n_val else None
    first_bad = {}
    cpu_history = []
    t0 = time.perf_counter()
    t_saved = t0
    t_first = None
    n_run = 0
    steps_done = start
    for k in range(start, cfg.max_steps):
        if stopped.all():
            break
        new_models, new_state, values, done = method.step(k, models, state, batches, n_structures)
        values = np.asarray(values, np.float64).reshape(M)
        done = np.asarray(done, bool).reshape(M)
        active = ~stopped
        ok = active & np.isfinite(values)
        bad = active & ~np.isfinite(values)
        for j in np.nonzero(bad)[0]:
            if not histories[j]:
                first_bad[j] = (k, values[j])
            stopped[j], reasons[j] = True, "not finite"
        if bad.any():
            who = "" if M == 1 else f" of {[names[j] for j in np.nonzero(bad)[0]]}"
            log(f"step {k}: the loss{who} is {values[bad][0] if M == 1 else values[bad].tolist()}; "
                + ("stopping with the last good parameters" if M == 1 else "they keep their last good parameters"))
        models = select(ok, new_models, models)
        state = select(ok, new_state, state)
        for j in np.nonzero(ok)[0]:
            histories[j].append((k, float(values[j])))
        n_run += 1
        steps_done = k + 1
        cpu_history.append(time.process_time())
        if t_first is None:
            t_first = time.perf_counter() - t0  # includes compilation
        if progress is not None and (M > 1 or ok[0]):
            progress(k, float(values[0]) if M == 1 else values)
        stopping = np.zeros(M, bool)
        for j in np.nonzero(ok)[0]:
            h = histories[j]
            if done[j]:
                stopping[j], reasons[j] = True, "converged"
                log(f"step {k}: {'' if M == 1 else names[j] + ': '}converged ({method.name}); stopping")
            elif full_batch and len(h) > 2 * TOLERANCE_WINDOW and k % TOLERANCE_WINDOW == 0:
                old = h[-TOLERANCE_WINDOW - 1][1]
                if old - h[-1][1] < cfg.tolerance * abs(old):
                    stopping[j], reasons[j] = True, "tolerance"
                    log(f"step {k}: {'' if M == 1 else names[j] + ': '}relative decrease over {TOLERANCE_WINDOW} steps "
                        f"below {cfg.tolerance:g}; stopping")
        if n_val:
            due = ok & (((k + 1) % cfg.validate_every == 0) | (k + 1 == cfg.max_steps) | stopping)
            if due.any():
                vals = np.asarray(val_loss(models, val_batches), np.float64)
                improved = np.zeros(M, bool)
                for j in np.nonzero(due)[0]:
                    val_histories[j].append((k, float(vals[j])))
                    if vals[j] < best_value[j]:
                        improved[j] = True
                        best_value[j], best_step[j], bad_evals[j] = vals[j], k, 0
                    else:
                        bad_evals[j] += 1
                        if bad_evals[j] >= cfg.patience and not stopping[j]:
                            stopping[j], reasons[j] = True, "validation"
                            log(f"step {k}: {'' if M == 1 else names[j] + ': '}no better validation loss in {cfg.patience} "
                                f"evaluations (best {best_value[j]:.6g} at step {best_step[j]}); stopping")
                best_models = select(improved, models, best_models)
        if stop_file is not None and stop_file.exists():
            for j in np.nonzero(~stopped & ~stopping)[0]:
                stopping[j], reasons[j] = True, "stop file"
            log(f"step {k}: {stop_file} exists; stopping with the parameters of this step")
        stopped |= stopping
        if ckpt is not None and any(histories) and (steps_done % cfg.checkpoint_every == 0 or steps_done == cfg.max_steps
                                                    or time.perf_counter() - t_saved >= CHECKPOINT_SECONDS):
            if not hinted and not stopped.all() and stop_file is not None:
                if time.perf_counter() - t_saved >= CHECKPOINT_SECONDS:  # a slow fit: say how to end it early
                    log(f"step {k}: a checkpoint after {CHECKPOINT_SECONDS / 60:g} minutes; to end this fit after its "
                        f"current step, with what it has: touch {stop_file}")
                    hinted = True
            save(steps_done)
            t_saved = time.perf_counter()
    if ckpt is not None and n_run and any(histories):
        save(steps_done)
    never = [j for j in first_bad if not histories[j]]
    if never:
        k, v = first_bad[never[0]]
        who = "" if M == 1 else f" of {[names[j] for j in never]}"
        raise NonFiniteLoss(f"the loss{who} is not finite from the first step ({v} at step {k}); nothing was fitted; "
                            "check the labels")
    wall = time.perf_counter() - t0
    per_step = (wall - (t_first or 0.0)) / max(n_run - 1, 1)
    if timings is not None:
        timings.update(first_step_s=t_first or 0.0, per_step_s=per_step, compile_s=max((t_first or 0.0) - per_step, 0.0))
    finals = [h[-1][1] if h else float("nan") for h in histories]
    log(f"fit: {n_run} steps in {wall:.1f} s (first step, with compilation, {t_first or 0.0:.1f} s; then {per_step:.3f} s/step); "
        f"final loss {finals[0]:.6g}" if M == 1 else
        f"fit: {M} models, {n_run} steps in {wall:.1f} s (first step {t_first or 0.0:.1f} s; then {per_step:.3f} s/step); "
        f"final losses {', '.join(f'{v:.4g}' for v in finals)}")
    val_info = None
    if n_val:
        models = select(best_step >= 0, best_models, models)
        val_info = [{"history": val_histories[j], "best_step": int(best_step[j]) if best_step[j] >= 0 else None,
                     "best_loss": float(best_value[j]) if best_step[j] >= 0 else None} for j in range(M)]
    return FitResult(models, histories, reasons, val_info, steps_done, cpu_history)


def fit(mtp: MTP, batches, cfg: FitConfig, workdir=None, resume: bool = False, log=print, progress=None,
        timings: dict | None = None, **kw) -> tuple[MTP, list]:
    """Fit one model (:func:`fit_models` with M = 1); returns the fitted MTP and its loss history [(step, loss), ...].

    ``cfg.method="adam"`` takes one batch of ``batches`` (kept on the host) per step, in a seeded order. If the loss
    becomes NaN, fitting stops and the last good parameters are returned. ``progress(k, loss)`` after each step."""
    r = fit_models(stack_models([mtp]), batches, cfg, workdir=workdir, resume=resume, log=log, progress=progress,
                   timings=timings, **kw)
    return unstack_models(r.models)[0], r.histories[0]


def fit_group(mtps, batches, cfg: FitConfig, names=None, workdir=None, resume: bool = False, log=print, progress=None,
              **kw) -> tuple[list, list]:
    """Fit the MTPs ``mtps`` (one level; any cutoffs, r_min, scalings, seeds) together on ``batches``, packed at a
    cutoff no smaller than any model's (:func:`fit_models`). Returns (fitted MTPs, loss histories).
    ``progress(k, values)`` gets an array of the models' losses."""
    models = stack_models(list(mtps))
    log(f"fitting {len(mtps)} models together (cutoffs {sorted({m.cutoff for m in mtps})} Å; "
        f"data packed at {max(m.cutoff for m in mtps)} Å)")
    r = fit_models(models, batches, cfg, names=names, workdir=workdir, resume=resume, log=log, progress=progress, **kw)
    return unstack_models(r.models), r.histories
