"""Several MTPs of one level trained together in one compiled program (vmap over cutoffs and seeds).

Models of the same level share the basis (the static part of :class:`mtpjax.model.MTP`), so their parameters
stack into one pytree with a leading model axis, and one jitted, vmapped full-batch step advances all of them.
The training data is packed once at the largest cutoff; each model ignores the pairs beyond its own cutoff
(the radial functions are masked by r < R_cut), so its loss is exactly that of a separate fit. The exact linear
solves run per model on the host, as in :func:`mtpjax.fit.fit`.

Cost: a model with a smaller cutoff still visits the pairs up to the largest one; group cutoffs that are close,
or group seeds only, when that matters (``mtpjax sweep --group``). On a GPU the group fills the device far
better than one small model does.
"""
from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .errors import MtpjaxError
from .fit import (
    FitConfig,
    _init_state,
    _scale_from_diagonal,
    _scaled,
    _step_body,
    _trainable,
    _unit_scale,
    _unscaled,
    _with,
    linear_solve,
    orthonormalize_radial,
)
from .model import MTP


def stack_models(mtps) -> MTP:
    """One MTP pytree with a leading model axis on every leaf. The models must share the basis and species."""
    first = mtps[0]
    for m in mtps[1:]:
        if m.plan != first.plan or m.species != first.species or m.radial_coeffs.shape != first.radial_coeffs.shape:
            raise MtpjaxError("models trained together must have the same level, species and radial basis size")
    return jax.tree.map(lambda *xs: jnp.stack(xs), *mtps)


@functools.lru_cache(maxsize=8)
def _make_group_step(loss_cfg, method: str, memory_size: int, n_structures: int):
    """The optimiser and the jitted step of all models at once (vmap over the model axis; data shared)."""
    opt, step = _step_body(loss_cfg, method, memory_size, n_structures)
    return opt, jax.jit(jax.vmap(step, in_axes=(0, 0, 0, 0, None)))


def _solve_all(models, params, scales, batches, cfg: FitConfig, n_structures: int):
    """Exact linear solve of every model (host); returns the models, the optimiser variables and the scales."""
    out_m, out_p, out_s = [], [], []
    for m, p, s in zip(models, params, scales):
        m = _with(m, _unscaled(p, s))
        if cfg.orthonormalize:
            m = orthonormalize_radial(m)
        m, diag = linear_solve(m, batches, cfg.loss, n_structures, return_diagonal=True)
        s = _scale_from_diagonal(m, diag) if cfg.precondition else _unit_scale(m)
        out_m.append(m)
        out_p.append(_scaled(_trainable(m), s))
        out_s.append(s)
    return out_m, out_p, out_s


def _stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _unstack(tree, n: int):
    return [jax.tree.map(lambda x: x[k], tree) for k in range(n)]


def _save(path: Path, names, params, scales, state, alive, step: int, histories) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write((json.dumps({"names": list(names), "step": step, "histories": histories}) + "\n").encode())
        eqx.tree_serialise_leaves(f, (params, scales, state, alive))
    os.replace(tmp, path)


def _load(path: Path, names, like):
    try:
        with open(path, "rb") as f:
            meta = json.loads(f.readline())
            if meta["names"] != list(names):
                return None  # another group of runs: start afresh
            params, scales, state, alive = eqx.tree_deserialise_leaves(f, like)
    except Exception as err:
        raise MtpjaxError(f"{path}: unreadable checkpoint ({type(err).__name__}: {err}); delete it to start afresh") from err
    return params, scales, state, alive, int(meta["step"]), [[tuple(h) for h in hs] for hs in meta["histories"]]


def fit_group(mtps, batches, cfg: FitConfig, names=None, workdir=None, resume: bool = False, log=print, progress=None):
    """Fit the MTPs ``mtps`` (one level; any cutoffs, r_min, scalings, seeds) together on ``batches``, packed at a
    cutoff no smaller than any model's. Full-batch L-BFGS or BFGS as :func:`mtpjax.fit.fit`, with the same linear
    solve schedule for every model.

    Returns (fitted MTPs, loss histories). A model whose loss turns NaN keeps its last good parameters and stops,
    while the others go on. With ``workdir``, checkpoints go to ``workdir/group_checkpoint.eqx`` every
    ``cfg.checkpoint_every`` steps; ``resume=True`` continues from one written for the same ``names``.
    """
    if cfg.method == "adam":
        raise MtpjaxError("models are trained together with full-batch lbfgs or bfgs, not adam")
    cutoff = max(m.cutoff for m in mtps)
    batches = [lb if isinstance(lb.weight, jax.Array) else jax.tree.map(jnp.asarray, lb) for lb in batches]
    n_structures = int(sum(int(np.sum(np.asarray(lb.weight) > 0)) for lb in batches))
    if n_structures == 0:
        raise MtpjaxError("the training set is empty")
    n = len(mtps)
    names = list(names) if names is not None else [str(k) for k in range(n)]
    stack_models(mtps)  # fails early, with a clear message, for models of different bases
    opt, step = _make_group_step(cfg.loss, cfg.method, cfg.memory_size, n_structures)
    models = list(mtps)
    scales = [_unit_scale(m) for m in models]
    params = [_scaled(_trainable(m), s) for m, s in zip(models, scales)]
    state = _stack([_init_state(opt, p) for p in params])
    alive = jnp.ones(n, bool)
    start, histories = 0, [[] for _ in range(n)]
    ckpt = Path(workdir) / "group_checkpoint.eqx" if workdir else None
    if ckpt is not None:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        if resume and ckpt.exists():
            loaded = _load(ckpt, names, (_stack(params), _stack(scales), state, alive))
            if loaded is not None:
                p, sc, state, alive, start, histories = loaded
                params, scales = _unstack(p, n), _unstack(sc, n)
                models = [_with(m, _unscaled(pk, sk)) for m, pk, sk in zip(models, params, scales)]
                log(f"resumed {n} models from {ckpt} at step {start}")
    log(f"fitting {n} models together (cutoffs {sorted({m.cutoff for m in mtps})} Å; data packed at {cutoff} Å)")
    t0 = time.perf_counter()
    # stacked optimiser variables, scales and models; unstacked only around the host-side linear solves
    P, S, M = _stack(params), _stack(scales), stack_models(models)
    for k in range(start, cfg.max_steps):
        if k in cfg.linear_solve_at:
            params, scales = _unstack(P, n), _unstack(S, n)
            models = [_with(m, _unscaled(p, s)) for m, p, s in zip(models, params, scales)]
            solved, new_p, new_s = _solve_all(models, params, scales, batches, cfg, n_structures)
            keep = np.asarray(alive)
            models = [a if ok else b for a, b, ok in zip(solved, models, keep)]
            params = [a if ok else b for a, b, ok in zip(new_p, params, keep)]
            scales = [a if ok else b for a, b, ok in zip(new_s, scales, keep)]
            P, S, M = _stack(params), _stack(scales), stack_models(models)
            state = _stack([_init_state(opt, p) for p in params])
        P_new, state_new, vals = step(P, state, M, S, batches)
        ok = alive & jnp.isfinite(vals)
        if not bool(jnp.all(ok == alive)):
            bad = [names[j] for j in np.nonzero(np.asarray(alive & ~ok))[0]]
            log(f"step {k}: the loss of {bad} is not finite; they keep their last good parameters")
        pick = lambda new, old: jax.tree.map(  # noqa: E731
            lambda a, b: jnp.where(ok.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), new, old)
        P = pick(P_new, P)
        state = pick(state_new, state)
        alive = ok
        vals = np.asarray(vals)
        for j in range(n):
            if bool(alive[j]):
                histories[j].append((k, float(vals[j])))
        if progress is not None:
            progress(k, vals)
        done = k + 1
        if ckpt is not None and (done % cfg.checkpoint_every == 0 or done == cfg.max_steps):
            _save(ckpt, names, P, S, state, alive, done, histories)
        if not bool(jnp.any(alive)):
            break
    models = [_with(m, _unscaled(p, s)) for m, p, s in zip(models, _unstack(P, n), _unstack(S, n))]
    log(f"fit_group: {n} models, {cfg.max_steps - start} steps in {time.perf_counter() - t0:.1f} s")
    return models, histories
