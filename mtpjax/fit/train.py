"""The library entry point of fitting: records in, fitted potentials and their reports out.

:func:`train_potential` fits one MTP; :func:`train_potentials` fits several of one level together (any cutoffs and
seeds, one compiled program; what ``mtpjax sweep`` groups). Both pack the data, choose r_min, build the starting
models, run the one training loop (:func:`mtpjax.fit.loop.fit_models`) and write each potential with its metrics
(:func:`finish_run`). ``mtpjax fit``, ``mtpjax sweep`` and ``mtpjax run`` all go through them.

With ``force_constants`` (structures labelled with force constants, or the files holding them:
:func:`mtpjax.fit.force_constants.read_force_constant_labels`) and ``LossConfig.force_constant_weight`` > 0, the
loss gets the force-constant term (:mod:`mtpjax.fit.residuals`) through
:func:`mtpjax.fit.force_constants.force_constant_method`: the same fit as the library's
``fit_models(models, batches, cfg, method=force_constant_method(cfg, force_constant_data(atoms, cutoff)))``.
"""
from __future__ import annotations

import dataclasses
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ..batch import pair_distances
from ..data import LabelledBatch
from ..errors import MtpjaxError
from ..io.files import atomic_write
from ..model import MTP
from . import checkpoint as ckpt_io
from .config import FitConfig, TrainOptions
from .linear import initial_mtp, linear_solve
from .loop import METHODS, STOP_FILE, NonFiniteLoss, fit_models, make_method
from .force_constants import force_constant_method, labels_digest, read_force_constant_labels
from .jacobian import unflatten
from .loss import ForceConstantLM, count_structures, errors
from .params import stack_models, unstack_models
from .residuals import force_constant_data, force_constant_rmse
from .validate import check_fit_options


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


def plot_loss(history, path, validation=None) -> None:
    """Loss curve (log scale) as a PNG; with ``validation`` [(step, loss)], the validation loss too."""
    from matplotlib.figure import Figure  # no pyplot: the user's backend (e.g. a notebook's) is left alone

    steps, values = zip(*history) if history else ((), ())
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.semilogy(steps, values, label="training")
    if validation:
        vs, vv = zip(*validation)
        ax.semilogy(vs, vv, "o-", ms=3, label="validation")
        ax.legend()
    ax.set_xlabel("step")
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


def split_validation(records, fraction: float, seed: int):
    """(training, validation) records: a seeded random ``fraction`` of the structures held out (at least one, and
    at least one left to train on), both in their original order. ``fraction`` 0: (records, [])."""
    if fraction <= 0:
        return list(records), []
    if not 0 < fraction < 1:
        raise MtpjaxError(f"validation fraction {fraction} must be in [0, 1)")
    n = len(records)
    if n < 2:
        raise MtpjaxError(f"a validation fraction needs at least 2 training structures, got {n}")
    n_val = min(max(int(round(fraction * n)), 1), n - 1)
    held = set(np.random.default_rng([seed, 4111]).permutation(n)[:n_val].tolist())
    return [r for i, r in enumerate(records) if i not in held], [r for i, r in enumerate(records) if i in held]


def subsample_records(records, n_atoms: int, seed: int):
    """A seeded random subset of ``records`` with at least ``n_atoms`` atoms (whole structures; all of them when
    they hold fewer), in their original order."""
    order = np.random.default_rng([seed, 2718]).permutation(len(records))
    keep, total = [], 0
    for i in order:
        if total >= n_atoms:
            break
        keep.append(int(i))
        total += records[i].n_atoms
    keep = set(keep)
    return [r for i, r in enumerate(records) if i in keep]


def label_report(records) -> str:
    """Which structure's energy per atom is farthest from the median (for a loss that is not finite)."""
    e = [(r.name, r.energy / r.n_atoms) for r in records if r.energy is not None and r.n_atoms]
    if not e:
        return "no structure has an energy label"
    x = np.array([v for _, v in e], dtype=float)
    with np.errstate(over="ignore", invalid="ignore"):
        med = float(np.median(x))
        k = int(np.nanargmax(np.abs(x - med))) if np.isfinite(x).any() else 0
    return f"the largest |E/N - median| is structure {e[k][0]} (E/N = {x[k]:.6g} eV/atom; median {med:.6g} eV/atom)"


def force_constant_structures(force_constants, cfg: FitConfig, devices: int = 1) -> list:
    """The structures of a fit's force-constant term: ``force_constants`` (``ase.Atoms`` carrying force constants,
    or paths of files holding them, read by :func:`mtpjax.fit.force_constants.read_force_constant_labels`; a mix is
    fine), checked. [] when the weight ``cfg.loss.force_constant_weight`` is 0 (labels given then are ignored, with a
    warning). A weight > 0 without labels, with ``devices`` > 1 or with the minibatch optimiser is an error."""
    import os

    from .force_constants import check_force_constants

    items = [] if force_constants is None else (
        [force_constants] if isinstance(force_constants, (str, os.PathLike)) else list(force_constants))
    w = cfg.loss.force_constant_weight
    if w == 0:
        if items:
            warnings.warn("force-constant labels given but force_constant_weight is 0: they are not fitted", stacklevel=3)
        return []
    if not items:
        raise MtpjaxError(f"force_constant_weight = {w:g} > 0 but no force-constant labels were given (fits do not read "
                          "force-constant labels from their training files): pass the structures that carry them "
                          "(train_potential(..., force_constants=[atoms or files]); mtpjax fit --force-constants "
                          "HESSIAN.extxyz; mtpjax run: add HESSIAN to [generate] subsets), or set the weight to 0")
    if cfg.method == "adam":
        raise MtpjaxError("the force-constant term is full-batch: use optimizer lm, lbfgs or bfgs, not adam")
    if devices > 1:
        raise MtpjaxError(f"the force-constant term is not split over devices: fit it with devices = 1, not {devices}")
    paths = [x for x in items if isinstance(x, (str, os.PathLike))]
    out = read_force_constant_labels(paths) if paths else []
    for k, a in enumerate(x for x in items if not isinstance(x, (str, os.PathLike))):
        name = a.info.get("id")
        if check_force_constants(a, f"force_constants[{k}]" + (f" ({name})" if name is not None else "")) is None:
            raise MtpjaxError(f"force_constants[{k}]: the structure carries no force constants (atoms.arrays['hessian'], "
                              "N x 9N eV/Å²; mtpjax.oracles.hessian.attach_force_constants)")
        out.append(a)
    return out


@dataclass(frozen=True)
class Run:
    """One potential of :func:`train_potentials`: its cutoff (Å), seed, output file (.almtp or .mtpjax), work folder
    (metrics.jsonl, result.json, loss.png) and name (its identity in the group's checkpoint)."""

    cutoff: float
    seed: int
    output: Path
    workdir: Path
    name: str = "0"


def train_potential(train, test, *, level: int, cutoff: float, rmin=None, seed: int = 0, n_species: int = 1, species=None,
                    cfg: FitConfig | None = None, workdir, output, resume: bool = False, devices: int = 1,
                    max_batch_atoms: int | None = None, init: str | None = None, force_constants=None, progress=None,
                    log=print) -> dict:
    """Fit a level-``level`` MTP with cutoff ``cutoff`` (Å) to records ``train``; score it on ``train`` and ``test``.

    Writes ``output`` (.almtp, or .mtpjax) and the exact ``.mtpjax`` beside it (with the result as metadata) and, in
    ``workdir``, the checkpoint, ``metrics.jsonl``, ``result.json`` and ``loss.png``. ``rmin`` defaults to 0.99 x the
    shortest training distance (MLIP-3). ``resume``: continue from the checkpoint in ``workdir``; one written for other
    settings or training data is refused (MtpjaxError naming the differences; nothing is written).
    ``cfg.validation_fraction`` > 0 holds out that fraction of ``train`` (seeded by ``seed``) for early stopping.
    ``force_constants``: structures (``ase.Atoms``) carrying force-constant labels, or paths of files holding them
    (:func:`mtpjax.fit.force_constants.read_force_constant_labels`), for the force-constant term of weight
    ``cfg.loss.force_constant_weight``; a weight > 0 without them is an error.
    ``progress(k, loss)`` after each step. Returns the result dictionary (RMSEs per subset, steps, wall and CPU
    seconds, settings; with the force-constant term, ``force_constants``: its structures, weight and the RMSE of the
    fitted force constants on them, eV/Å²)."""
    return train_potentials(train, test, [Run(cutoff, seed, Path(output), Path(workdir))], level=level, rmin=rmin,
                            n_species=n_species, species=species, cfg=cfg, workdir=workdir, resume=resume, devices=devices,
                            max_batch_atoms=max_batch_atoms, init=init, force_constants=force_constants, progress=progress,
                            log=log)[0]


def train_potentials(train, test, runs: list[Run], *, level: int, rmin=None, n_species: int = 1, species=None,
                     cfg: FitConfig | None = None, workdir, resume: bool = False, devices: int = 1,
                     max_batch_atoms: int | None = None, init: str | None = None, cache_dir=None, force_constants=None,
                     progress=None, log=print) -> list[dict]:
    """Fit the ``runs`` (one level; any cutoffs and seeds) together in one compiled program on records ``train``
    (packed once at the largest cutoff), then write each run's potential and report as :func:`train_potential` does
    (each run is charged an equal share of the fitting time). The checkpoint lives in ``workdir``; the packed-data
    cache in ``cache_dir`` (default ``workdir/cache``). ``progress(k, loss)`` (one run) or ``progress(k, losses)``.
    ``max_batch_atoms`` and ``init``: None takes :class:`TrainOptions`' defaults. ``force_constants``: as
    :func:`train_potential`. Returns the result dictionaries in the order of ``runs``."""
    from ..basis import generate_basis
    from ..data import pack_for_devices, pack_records, unstack

    defaults = TrainOptions()  # the one source of these defaults (also the command line's)
    max_batch_atoms = defaults.max_batch_atoms if max_batch_atoms is None else max_batch_atoms
    init = defaults.init if init is None else init
    runs = list(runs)
    if not runs:
        return []
    M = len(runs)
    cfg = dataclasses.replace(cfg or FitConfig(), seed=runs[0].seed)
    for r in runs:  # every option checked before anything is read or written
        check_fit_options(level=level, cutoff=r.cutoff, rmin=rmin, max_steps=cfg.max_steps, checkpoint_every=cfg.checkpoint_every,
                          weights=(cfg.loss.energy_weight, cfg.loss.force_weight, cfg.loss.stress_weight),
                          validation_fraction=cfg.validation_fraction, learning_rate=cfg.learning_rate,
                          max_batch_atoms=max_batch_atoms, devices=devices, seed=r.seed, linear_solve_at=cfg.linear_solve_at,
                          method=cfg.method, init=init, memory_size=cfg.memory_size, tolerance=cfg.tolerance,
                          validate_every=cfg.validate_every, patience=cfg.patience, methods=tuple(METHODS))  # the seed orders Adam's minibatches and the split
    fc_atoms = force_constant_structures(force_constants, cfg, devices)  # never a weight that silently does nothing
    seeds = sorted({r.seed for r in runs})
    if len(seeds) > 1 and (cfg.validation_fraction > 0 or not getattr(make_method(cfg), "full_batch", True)):
        raise MtpjaxError(f"runs of seeds {seeds} cannot be fitted together with a validation split or minibatches "
                          "(both depend on the seed); fit each seed apart")
    names = [r.name for r in runs] if M > 1 else ["0"]
    if len(set(names)) != M:
        raise MtpjaxError(f"the runs fitted together need distinct names, got {names}")
    workdir = Path(workdir)
    cutoff = max(r.cutoff for r in runs)
    settings = {"fit": cfg, "level": level, "cutoff": runs[0].cutoff if M == 1 else [r.cutoff for r in runs], "rmin": rmin,
                "seed": runs[0].seed if M == 1 else [r.seed for r in runs], "species": list(species) if species else None,
                "n_species": n_species, "init": init}
    if fc_atoms:  # (only then: the checkpoints of fits without the term keep their settings)
        settings["force_constants"] = {"structures": len(fc_atoms), "digest": labels_digest(fc_atoms)}
    digest = ckpt_io.records_digest(train)
    ckpt = workdir / ckpt_io.CHECKPOINT
    if resume and ckpt.exists():  # refuse another fit's checkpoint before anything is packed or written
        ckpt_io.check_resumable(ckpt, ckpt_io.jsonable({**settings, "models": names}), digest)
    if train and all(float(r.weight) == 0 for r in train):
        raise MtpjaxError(f"all {len(train)} training structures have weight 0: nothing to fit")
    created = not workdir.exists()
    workdir.mkdir(parents=True, exist_ok=True)
    stop = workdir / STOP_FILE
    if stop.exists() and not (resume and ckpt.exists()):  # left by an earlier fit: it must not end this new one
        stop.unlink()
        log(f"removed {stop}, left by an earlier fit in {workdir}")
    try:
        cache_dir = Path(cache_dir) if cache_dir is not None else workdir / "cache"
        t0, c0 = time.perf_counter(), time.process_time()
        fit_records, val_records = split_validation(train, cfg.validation_fraction, cfg.seed)
        if devices > 1:  # data-parallel: one group of structures per device
            stacked, subsets = pack_for_devices(fit_records, cutoff, devices)
            fit_batches, batches = [shard_over_devices(stacked)], unstack(stacked)
        else:
            batches, subsets = pack_records(fit_records, cutoff, max_batch_atoms=max_batch_atoms, cache_dir=cache_dir)
            fit_batches = batches
        check_cutoff(batches, cutoff)
        rmin = default_rmin(batches, cutoff) if rmin is None else rmin
        if rmin >= min(r.cutoff for r in runs):
            raise MtpjaxError(f"r_min {rmin:.3f} Å must be below the cutoff {min(r.cutoff for r in runs)} Å")
        fcs = force_constant_data(fc_atoms, cutoff, species, n_species) if fc_atoms else []
        fit_method = (lambda: force_constant_method(cfg, fcs)) if fcs else (lambda: None)  # None: cfg.method's own
        basis = generate_basis(level)
        mtps = [initial_mtp(basis, n_species, rmin, r.cutoff, batches, seed=r.seed, species=species, init=init) for r in runs]
        cutoffs = ", ".join(f"{c:g}" for c in sorted({r.cutoff for r in runs}))
        log(f"mtpjax fit: {len(fit_records)} structures ({count_atoms(batches)} atoms), level {level}, cutoff {cutoffs} Å, "
            f"r_min {rmin:.4f} Å, {mtps[0].moment_coeffs.shape[0]} basis functions"
            + (f"; {len(val_records)} held out for validation" if val_records else "")
            + (f"; {M} models together (data packed at {cutoff:g} Å)" if M > 1 else "")
            + (f"; force constants of {len(fcs)} structures ({sum(len(a) for a in fc_atoms)} atoms), weight "
               f"{cfg.loss.force_constant_weight:g}" if fcs else ""))
        val = pack_records(val_records, cutoff, max_batch_atoms=max_batch_atoms, cache_dir=cache_dir) if val_records else None
        timings = {}
        start = stack_models(mtps)
        warm = None
        n_atoms = count_atoms(batches)
        try:
            if cfg.method == "lm" and cfg.lm_subset_atoms and n_atoms > 2 * cfg.lm_subset_atoms and devices == 1:
                # Each LM iteration costs a pass of the residual Jacobian over all the data. A random subset of a few
                # ten thousand atoms already has residuals by the ten thousand per coefficient: LM converges there at a
                # fraction of the cost, and the iterations on all the data start next to their minimum.
                sub = subsample_records(fit_records, cfg.lm_subset_atoms, cfg.seed)
                sub_batches, _ = pack_records(sub, cutoff, max_batch_atoms=max_batch_atoms, cache_dir=cache_dir)
                log(f"Levenberg-Marquardt: first on a random subset of {len(sub)} structures ({count_atoms(sub_batches)} of "
                    f"{n_atoms} atoms), then on all of them")
                ws = time.perf_counter()
                r0 = fit_models(start, sub_batches, cfg, names=names, method=fit_method(), workdir=workdir / "subset",
                                resume=resume, log=log, stop_file=workdir / STOP_FILE,
                                progress=progress, settings={**settings, "phase": "subset"},
                                data_digest=ckpt_io.records_digest(sub))
                start = r0.models
                warm = {"structures": len(sub), "atoms": count_atoms(sub_batches), "steps": r0.steps,
                        "wall_s": time.perf_counter() - ws, "histories": r0.histories, "cpu_s": [round(t - c0, 3) for t in r0.cpu_s]}
            result = fit_models(start, fit_batches, cfg, names=names, method=fit_method(), workdir=workdir, resume=resume,
                                log=log,
                                progress=progress, timings=timings, validation=val[0] if val else None, settings=settings,
                                data_digest=digest)
        except NonFiniteLoss as err:
            raise NonFiniteLoss(f"{err}: {label_report(fit_records)}") from None
    except MtpjaxError:
        # a fit that failed before it saved anything leaves no folder behind (a kill or a later failure keeps the
        # checkpoint to resume from)
        if created and not any(workdir.rglob(ckpt_io.CHECKPOINT)):
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
        raise
    fit_wall, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
    test_packed = []

    def test_batches():  # packed once, at the largest cutoff, for all runs
        if not test_packed:
            test_packed.append(pack_records(test, cutoff, max_batch_atoms=max_batch_atoms))
        return test_packed[0]

    out = []
    for j, (run, mtp) in enumerate(zip(runs, unstack_models(result.models))):
        settings_j = {"level": level, "cutoff": run.cutoff, "rmin": rmin, "seed": run.seed, "n_train": len(fit_records),
                      "n_test": len(test or []), **timings, "stopped": result.stopped[j],
                      "step_cpu_s": [round((t - c0) / M, 3) for t in result.cpu_s]}
        if M > 1:
            settings_j["group_size"] = M
        if warm is not None:  # the loss history of the subset phase (its CPU seconds, like step_cpu_s, from the start)
            settings_j["subset"] = {**{k: v for k, v in warm.items() if k not in ("histories", "cpu_s")},
                                    "history": warm["histories"][j], "step_cpu_s": [round(t / M, 3) for t in warm["cpu_s"]]}
        validation = None
        if val:
            validation = (val[0], val[1], {"fraction": cfg.validation_fraction, "n": len(val_records), **result.validation[j]})
        now_w, now_c = time.perf_counter(), time.process_time()
        Path(run.workdir).mkdir(parents=True, exist_ok=True)
        out.append(finish_run(mtp, result.histories[j], batches, subsets, test_batches if test else None, cfg, run.output,
                              run.workdir, now_w - fit_wall / M, now_c - fit_cpu / M, settings_j, validation=validation,
                              force_constants=fcs))
    return out


#: Training-set RMSEs above these mean a broken training set or fit, not a poor one (eV/atom, eV/Å): an MTP of any
#: level fitted to plausible labels of one element misses energies by meV–tens of meV/atom and forces by ≲ 1 eV/Å.
BROKEN_ENERGY_RMSE = 1.0
BROKEN_FORCE_RMSE = 10.0


def fit_warnings(result: dict) -> list[str]:
    """Loud warnings for a fit ``result`` (its ``train``/``test`` RMSEs: energy in meV/atom, forces in eV/Å)
    whose errors mean a broken training set or fit: an energy RMSE above :data:`BROKEN_ENERGY_RMSE` eV/atom or a
    force RMSE above :data:`BROKEN_FORCE_RMSE` eV/Å (NaN, a missing label, is not a warning)."""
    out = []
    for split in ("train", "test"):
        rm = (result.get(split) or {}).get("all") or {}
        e, f = rm.get("energy"), rm.get("forces")
        if e is not None and e / 1000.0 > BROKEN_ENERGY_RMSE:
            out.append(f"{split} energy RMSE {e / 1000.0:.4g} eV/atom (> {BROKEN_ENERGY_RMSE:g} eV/atom): the training set "
                       "or the fit is broken (implausible labels? see the generation's rejected.jsonl)")
        if f is not None and f > BROKEN_FORCE_RMSE:
            out.append(f"{split} force RMSE {f:.4g} eV/Å (> {BROKEN_FORCE_RMSE:g} eV/Å): the training set or the fit is broken")
    return out


def finish_run(mtp: MTP, history, batches, subsets, test_batches, cfg: FitConfig, output, workdir, t0: float, c0: float,
               settings: dict, validation=None, force_constants=()) -> dict:
    """The last exact linear solve, the errors on the training (and test) data, and the outputs of one fitted
    potential: ``output`` (.almtp or .mtpjax) and the exact .mtpjax beside it, ``metrics.jsonl``, ``result.json``
    and ``loss.png`` in ``workdir``. ``test_batches``: None, or a function giving the packed test set (batches,
    subsets), called after the timing stops. ``validation``: None, or (batches, subsets, info) of the held-out set
    the model was chosen on; then the model is kept as chosen (no last linear solve) and ``result["validation"]``
    has ``info`` (best_step, best_loss, history, ...) and the validation RMSEs. ``force_constants``: the
    :class:`~mtpjax.fit.residuals.ForceConstantData` of the force-constant term (with ``cfg.loss.force_constant_weight``
    > 0: the last linear solve is on the loss with the term, and ``result["force_constants"]`` gives the RMSE of the
    fitted force constants on them). Returns the result dictionary."""
    from ..model import save_mtp

    workdir = Path(workdir)
    fc_term = bool(force_constants) and cfg.loss.force_constant_weight > 0
    if validation is None and not getattr(make_method(cfg), "eliminates_linear", False):  # (LM's are exact already)
        dev = [jax.tree.map(jnp.asarray, lb) for lb in batches]
        if fc_term:  # the exact solve of the loss with the term (the species and moment coefficients enter H linearly)
            theta = ForceConstantLM(cfg, force_constants).system(mtp, dev, count_structures(batches))[0]
            mtp = unflatten(mtp, jnp.asarray(theta, mtp.moment_coeffs.dtype))
        else:
            mtp = linear_solve(mtp, dev, cfg.loss, count_structures(batches))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    output = Path(output)
    native = output if output.suffix == ".mtpjax" else output.with_suffix(".mtpjax")
    result = {"train": errors(mtp, batches, subsets), "steps": len(history), "wall_s": wall, "cpu_s": cpu, **settings,
              "n_basis": int(mtp.moment_coeffs.shape[0]), "potential": str(output), "optimizer": cfg.method}
    if validation is not None:
        vb, vsub, info = validation
        result["validation"] = {**info, "rmse": errors(mtp, vb, vsub)}
    if fc_term:
        result["force_constants"] = {"structures": len(force_constants), "weight": cfg.loss.force_constant_weight,
                                     "rmse": force_constant_rmse(mtp, force_constants)}  # eV/Å², the fitted labels
    if test_batches is not None:
        result["test"] = errors(mtp, *test_batches())
    result["warnings"] = fit_warnings(result)
    for w in result["warnings"]:
        warnings.warn(f"fit: {w}", stacklevel=2)
    save_mtp(mtp, output, metadata=result)
    if native != output:
        save_mtp(mtp, native, metadata=result)  # the exact copy, with how it was fitted
    write_metrics(workdir / "metrics.jsonl", {"history": history})
    write_metrics(workdir / "metrics.jsonl", result)
    plot_loss(history, workdir / "loss.png", validation=result.get("validation", {}).get("history"))
    atomic_write(workdir / "result.json", json.dumps(result, indent=1))  # the text as before (NaN where a label is missing)
    return result
