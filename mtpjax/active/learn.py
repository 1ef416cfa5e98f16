"""The active-learning loop, ``mtpjax learn CONFIG`` (as MLIP's active learning, the paper's Appendix E).

Each round k (files in ``OUTPUT/round_KK/``):

1. ``md``: every simulation of the config runs with the round's potential, graded inside the jitted loop against the
   active set stored with it (:func:`mtpjax.md.run_md` through :func:`mtpjax.md.cli.run_command`); frames graded
   above ``gamma_select`` are candidates (``candidates.extxyz``), a run whose grade passes ``gamma_break`` stops
   early and keeps its frames. When every run completed without passing ``gamma_break`` the loop has converged
   and stops here (a run that became unstable has not completed: its frames above ``gamma_select`` are learnt from,
   and without any the loop stops with an error).
2. ``select``: MaxVol selection among all candidates at once (:func:`mtpjax.active.select_add`, as ``mlp
   select-add``) against the round's active set -> ``selected.extxyz``.
3. ``label``: the selected structures labelled by the oracle (:func:`mtpjax.oracles.label`, the labelling path of
   ``mtpjax generate``, in this process, a process pool or on Dask as the ``[executor]`` table says) ->
   ``labelled.cfg``; failed or implausible labels are dropped and listed in ``failures.json``.
4. ``fit``: the training set plus the labelled structures -> ``round_K+1/train.cfg``; the potential is refitted
   warm-started from the round's parameters (:func:`mtpjax.fit.fit` from the previous MTP; its r_min and cutoff are
   kept) -> ``round_K+1/potential.mtpjax``, with the new training set's active set stored in it.

Round 0 starts from ``potential`` (a trained MTP) or, without one, fits a level-``level`` MTP of cutoff ``cutoff``
to the initial training set first (:func:`mtpjax.fit.train_potential`, in ``round_00/fit_start``); with
``relabel_train`` the training set is labelled by the oracle first and a given potential refitted to it, warm-started
(``state.json``'s ``start``: training-set size and the start's training RMSEs). After ``max_rounds`` refits the simulations
run once more; the status is then ``converged`` or ``max_rounds``.

**Checkpoints.** After every step, ``state.json`` records the last step done (atomically, :mod:`mtpjax.io.files`),
and every step reads its inputs from the files of the steps before it, so a run killed at any point resumes with
the step after the last one recorded and ends with the same files as one never interrupted (a step cut short is
redone from its start; MD, selection, labelling and fitting are deterministic). A resume with other settings
(apart from ``max_rounds``, which may grow, also after a run that stopped at it, and ``[executor]``) is refused,
naming the keys that differ.
``rounds.json`` and ``rounds.csv`` hold one row per round: candidates, selected, labelled, the largest γ of each
simulation, whether each completed, the training-set size and the refit's training RMSEs.

Units: K, GPa, fs (the simulations), eV/atom and eV/Å (the RMSEs: meV/atom, eV/Å, GPa as :func:`mtpjax.fit.errors`).
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import ConfigError, MtpjaxError
from ..fit.config import FitConfig
from ..fit.validate import at_least_one, non_negative_float, positive_float, positive_int
from ..generate.config import ExecutorConfig
from ..md.config import MDSettings
from .maxvol import THRESHOLD_SELECT
from .simulation import GAMMA_BREAK, GAMMA_SELECT

#: The steps of a round, in order ("start" only in round 0: the first potential, training set and active set).
STEPS = ("start", "md", "select", "label", "fit")
#: Settings a resume may change (others must equal the first run's).
RESUMABLE_CHANGES = ("max_rounds", "executor", "output")
STATE = "state.json"
#: Columns of rounds.csv.
ROUND_COLUMNS = ("round", "candidates", "selected", "labelled", "label_failures", "max_gamma", "broke", "train_size",
                 "rmse_energy_meV_atom", "rmse_forces_eV_A", "wall_s")


@dataclass(frozen=True)
class LearnSimulation:
    """One simulation of the loop (a ``[[learn.simulation]]`` table): the structure as ``mtpjax md`` builds it and
    :class:`mtpjax.md.config.MDSettings`' keys (the thresholds are the loop's own)."""

    name: str | None = field(default=None, metadata={"help": "its name (folder and report; default sim<K>)"})
    structure: str | None = field(default=None, metadata={"path": True, "help": (
        "starting structure (extended XYZ, .cfg, any ASE-readable file; its last frame), instead of element/crystal")})
    element: str | None = field(default=None, metadata={"help": "build the structure with ase.build.bulk: the element"})
    crystal: str | None = field(default=None, metadata={"help": "ase.build.bulk's crystal structure (hcp, fcc, bcc, ...)"})
    a: float | None = field(default=None, metadata={"check": positive_float, "help": "lattice constant a in Å"})
    c: float | None = field(default=None, metadata={"check": positive_float, "help": "lattice constant c in Å (hcp)"})
    cubic: bool = field(default=False, metadata={"help": "ase.build.bulk's cubic cell"})
    repeat: tuple[int, int, int] = field(default=(1, 1, 1), metadata={"check": positive_int, "help": "supercell repeats"})
    rattle: float = field(default=0.0, metadata={"check": non_negative_float, "help": "random displacements, Å"})
    settings: MDSettings = field(default_factory=MDSettings, metadata={"flatten": True, "fields": {
        "gamma_select": {"config": False}, "gamma_break": {"config": False}}})

    def check_config(self):
        if (self.structure is None) == (self.element is None):
            raise ConfigError("structure", "give either a structure file or an element (with crystal, a, c) to build one")
        if self.name is not None and (not self.name or "/" in self.name or self.name.startswith(".")):
            raise ConfigError("name", f"{self.name!r} is not a folder name")


@dataclass(frozen=True)
class LearnCommand:
    """``mtpjax learn CONFIG``: a TOML file's ``[learn]`` table (or its top level), with ``[[learn.simulation]]``
    tables, a ``[learn.fit]`` table (:class:`mtpjax.fit.FitConfig`) and an ``[learn.executor]`` table (where the
    oracle labels: :class:`mtpjax.generate.config.ExecutorConfig`)."""

    train: str | None = field(default=None, metadata={"path": True, "help": "the initial training set (.cfg or extended XYZ)"})
    oracle: str | None = field(default=None, metadata={"help": (
        "the oracle that labels the selected structures: zhou:Mg, lj, eam:FILE, an EAM file, ase:module.Class or a "
        "JSON spec (mtpjax.oracles.make_oracle)")})
    potential: str | None = field(default=None, metadata={"path": True, "help": (
        "the trained MTP to start from (.mtp, .almtp, .mtpjax); without it a level-`level` MTP is fitted first")})
    level: int | None = field(default=None, metadata={"check": positive_int, "help": "without potential: the MTP level"})
    cutoff: float | None = field(default=None, metadata={"check": positive_float, "help": "without potential: the cutoff, Å"})
    rmin: float | None = field(default=None, metadata={"check": positive_float, "help": (
        "without potential: r_min in Å (default 0.99 x the shortest training distance)")})
    species: tuple[str, ...] | None = field(default=None, metadata={"help": (
        "element of each MTP type, in type order (MLIP files name none)")})
    relabel_train: bool = field(default=False, metadata={"help": (
        "label the initial training set with the oracle first (its own labels, if any, replaced); a given potential "
        "is then refitted to them, warm-started, before round 0")})
    output: str = field(default="learn", metadata={"path": True, "help": (
        "output folder: state.json, rounds.json, rounds.csv, round_KK/ (resumed when it holds a state.json)")})
    mode: Literal["cfg", "nbh"] = field(default="cfg", metadata={"help": (
        "rows of the active set: cfg (one per configuration, MLIP's default) or nbh (one per atom)")})
    gamma_select: float = field(default=GAMMA_SELECT, metadata={"check": at_least_one, "help": (
        "frames of a simulation graded above this are candidates")})
    gamma_break: float = field(default=GAMMA_BREAK, metadata={"check": at_least_one, "help": (
        "a simulation stops at a grade above this; the loop ends when no simulation does")})
    threshold_select: float = field(default=THRESHOLD_SELECT, metadata={"check": at_least_one, "help": (
        "MaxVol selection among the candidates (mlp select-add's threshold)")})
    max_rounds: int = field(default=10, metadata={"check": positive_int, "help": (
        "the most refits; the simulations then run once more to check")})
    simulation: tuple[LearnSimulation, ...] = ()
    fit: FitConfig = field(default_factory=FitConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)

    def check_config(self):
        if not self.simulation:
            raise ConfigError("simulation", "give at least one simulation ([[learn.simulation]] tables)")
        if self.gamma_select > self.gamma_break:
            raise ConfigError("gamma_select", f"{self.gamma_select:g} exceeds gamma_break ({self.gamma_break:g})")
        if self.potential is None and (self.level is None or self.cutoff is None):
            raise ConfigError("potential", "give a trained potential, or level and cutoff to fit one to train first")
        if self.executor.kind not in ("auto", "jax", "process", "dask"):
            raise ConfigError("executor.kind", f"{self.executor.kind!r} is not one of 'auto', 'jax', 'process', 'dask'")
        names = self.names()
        if len(set(names)) != len(names):
            raise ConfigError("simulation", f"the simulations' names must differ, got {names}")

    def names(self) -> list[str]:
        return [s.name or f"sim{k}" for k, s in enumerate(self.simulation)]


#: keys without which the command cannot run
REQUIRED = ("train", "oracle")


class LearnInterrupted(MtpjaxError):
    """Raised by :func:`run_learn`'s ``stop_after`` hook (tests: a kill after a step)."""


def load_command(path, overrides: dict | None = None) -> LearnCommand:
    """The :class:`LearnCommand` of a TOML file (its ``[learn]`` table, or its top level) with ``overrides`` (keys
    as in the file) on top; paths relative to the file. Errors name the file and the key."""
    from .. import config
    from ..io.tomlfile import read_toml

    path = Path(path)
    doc = read_toml(path)
    table, prefix = (doc["learn"], "learn.") if isinstance(doc.get("learn"), dict) else (doc, "")
    from_file = config.layer(LearnCommand, table, path=path, prefix=prefix)
    sims = from_file.get("simulation")
    if isinstance(sims, list):  # the simulations' structure files, relative to the config file too
        from_file["simulation"] = [config.resolve_paths(LearnSimulation, s, path.parent) if isinstance(s, dict) else s
                                   for s in sims]
    oracle = from_file.get("oracle")
    if isinstance(oracle, str):  # an EAM file (or eam:FILE) beside the config
        name = oracle[4:] if oracle.lower().startswith("eam:") else oracle
        if (path.parent / name).is_file():
            from_file["oracle"] = str(path.parent / name)
    cmd = config.layered(LearnCommand, from_file, overrides or {}, prefix=prefix)
    missing = [k for k in REQUIRED if getattr(cmd, k) is None]
    if missing:
        raise ConfigError(prefix + missing[0], "is required (in the config file or on the command line)", path)
    return cmd


# ------------------------------------------------------------------------------------------------ state
def _jsonable(cmd: LearnCommand) -> dict:
    from ..io.files import json_safe

    return json.loads(json.dumps(json_safe(dataclasses.asdict(cmd))))


def _write_state(out: Path, state: dict) -> None:
    from ..io.files import write_json

    write_json(out / STATE, state)
    _write_rounds(out, state["rounds"])


def _write_rounds(out: Path, rounds: list) -> None:
    import csv
    import io

    from ..io.files import atomic_write, write_json

    write_json(out / "rounds.json", rounds)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(ROUND_COLUMNS)
    for r in rounds:
        row = []
        for c in ROUND_COLUMNS:
            v = r.get(c, "")
            if isinstance(v, dict):
                v = ";".join(f"{k}={x:.6g}" if isinstance(x, float) else f"{k}={x}" for k, x in v.items())
            row.append(f"{v:.6g}" if isinstance(v, float) else v)
        w.writerow(row)
    atomic_write(out / "rounds.csv", buf.getvalue())


def _check_resume(state: dict, cmd: LearnCommand, out: Path) -> None:
    old, new = dict(state["config"]), _jsonable(cmd)
    differ = sorted(k for k in set(old) | set(new) if k not in RESUMABLE_CHANGES and old.get(k) != new.get(k))
    if differ:
        raise MtpjaxError(f"{out / STATE}: written for other settings ({', '.join(differ)} differ); use another output "
                          "folder, or remove it to start again")


def _next(state: dict) -> tuple[int, str]:
    """(round, step) after the last one done."""
    k, step = state["done"]
    if step in ("start", "fit"):
        return (k if step == "start" else k + 1), "md"
    return k, STEPS[STEPS.index(step) + 1]


# ------------------------------------------------------------------------------------------------ the loop
def run_learn(cmd: LearnCommand, *, echo=None, progress: bool = False, stop_after: tuple[int, str] | None = None) -> dict:
    """Run (or resume) the loop of ``cmd``; returns the final state (also in ``OUTPUT/state.json``): ``status``
    (converged or max_rounds), ``rounds`` (one record per round), ``potential`` (the last potential, relative to
    OUTPUT). ``echo(line)``: a progress line per step. ``stop_after=(round, step)``: raise
    :class:`LearnInterrupted` once that step is recorded (a kill, for tests)."""
    from ..oracles import make_oracle

    echo = echo or (lambda m: None)
    out = Path(cmd.output)
    try:
        oracle = make_oracle(cmd.oracle)
    except (MtpjaxError, ValueError, KeyError, TypeError) as err:
        raise ConfigError("oracle", f"cannot make the oracle {cmd.oracle!r}: {err}") from None
    state_path = out / STATE
    if state_path.exists():
        from ..io.files import read_json

        state = read_json(state_path, "learn state")
        _check_resume(state, cmd, out)
        state["config"] = _jsonable(cmd)
        if state["status"] == "max_rounds" and cmd.max_rounds > state["done"][0]:  # a larger max_rounds: go on
            state["status"] = "running"
        echo(f"mtpjax learn: resuming {out} after round {state['done'][0]} step {state['done'][1]}")
    else:
        out.mkdir(parents=True, exist_ok=True)
        state = {"format": "mtpjax-learn", "version": 1, "config": _jsonable(cmd), "done": None, "status": "running",
                 "rounds": [], "potential": None, "train": None}
    run = _Loop(cmd, out, oracle, state, echo, progress)
    try:
        while state["status"] == "running":
            k, step = (0, "start") if state["done"] is None else _next(state)
            t0 = time.perf_counter()
            getattr(run, step)(k)
            if step != "start":
                rec = run.record(k)
                rec["wall_s"] = rec.get("wall_s", 0.0) + time.perf_counter() - t0
            state["done"] = [k, step]
            _write_state(out, state)
            if stop_after is not None and (k, step) == tuple(stop_after):
                raise LearnInterrupted(f"stopped after round {k} step {step} (stop_after)")
    finally:
        run.close()
    return state


def make_executor(ex: ExecutorConfig, oracle):
    """The executor of an ``[executor]`` table, as ``mtpjax generate`` chooses it (:mod:`mtpjax.generate.executors`):
    Dask for kind dask, this process for a JAX oracle (auto) or kind jax, else a process pool."""
    from ..generate import oracle as _oracle
    from ..generate.executors import DaskExecutor, InProcess, ProcessPool

    jax_here = ex.kind == "jax" or (ex.kind == "auto" and _oracle.is_jax(oracle))
    return (DaskExecutor(ex.address, ex.workers, ex.processes) if ex.kind == "dask"
            else InProcess() if jax_here else ProcessPool(ex.workers))


def label_structures(oracle, structures, executor, chunk_size: int = 256) -> tuple[list, list]:
    """(labelled copies, failures as dicts) of ``structures`` (their own labels dropped) by ``oracle``, in chunks of
    ``chunk_size`` on ``executor`` (:func:`make_executor`), through ``mtpjax generate``'s labelling task
    (:func:`mtpjax.oracles.label`, with its plausibility screen). In input order."""
    from ..generate import oracle as _oracle
    from ..generate.executors import InProcess
    from ..generate.pipeline import label_task
    from ..oracles import Failure

    structures = [a.copy() for a in structures]
    for a in structures:
        a.calc = None
    ref = oracle if isinstance(executor, InProcess) else _oracle.portable(oracle)
    chunks = [structures[i:i + chunk_size] for i in range(0, len(structures), chunk_size)]
    results: list = [None] * len(chunks)
    for j, res in executor.imap(label_task, [{"oracle": ref, "structures": c} for c in chunks]):
        results[j] = res
    flat = [r for res in results for r in res]
    return ([r for r in flat if not isinstance(r, Failure)],
            [dataclasses.asdict(r) for r in flat if isinstance(r, Failure)])


class _Loop:
    """The steps of :func:`run_learn`; each reads its inputs from files and updates ``state``."""

    def __init__(self, cmd: LearnCommand, out: Path, oracle, state: dict, echo, progress: bool):
        self.cmd, self.out, self.oracle, self.state, self.echo, self.progress = cmd, out, oracle, state, echo, progress
        self.species = list(cmd.species) if cmd.species else None
        self.executor = None

    def close(self):
        if self.executor is not None:
            self.executor.close()

    # -------------------------------------------------------------- helpers
    def rd(self, k: int) -> Path:
        return self.out / f"round_{k:02d}"

    def record(self, k: int) -> dict:
        rounds = self.state["rounds"]
        while len(rounds) <= k:
            rounds.append({"round": len(rounds)})
        return rounds[k]

    def say(self, k: int, step: str, message: str) -> None:
        self.echo(f"learn round {k} {step}: {message}")

    def mtp(self):
        from ..model import load_mtp

        return load_mtp(self.out / self.state["potential"], species=self.species)

    def training(self):
        from ..io import read_cfg

        return read_cfg(self.out / self.state["train"])

    def store_active_set(self, pot: Path, mtp, train) -> int:
        from .grade import build_active_set, save_active_set

        active = build_active_set(mtp, train, self.cmd.mode, source=str(pot))
        save_active_set(pot, active, mtp)
        return int(np.sum(active.origin >= 0))

    # -------------------------------------------------------------- the steps
    def start(self, k: int) -> None:
        """Round 0's training set (full-precision cfg; relabelled by the oracle with relabel_train), potential (copied,
        refitted warm-started to relabelled data, or fitted from scratch) and its active set."""
        from ..io import read_structures, write_structures
        from ..io.files import write_json
        from ..model import load_mtp, save_mtp

        cmd, rd = self.cmd, self.rd(0)
        rd.mkdir(parents=True, exist_ok=True)
        train_path, pot = rd / "train.cfg", rd / "potential.mtpjax"
        structures = read_structures(cmd.train, species=self.species)
        if cmd.relabel_train:
            structures, bad = self.label_structures(structures)
            write_json(rd / "failures_train.json", bad)
            if not structures:
                raise MtpjaxError(f"the oracle labelled none of the training set {cmd.train}")
        write_structures(structures, train_path, species=self.species, precision="full")
        self.state["train"] = str(train_path.relative_to(self.out))
        if cmd.potential is not None:
            mtp = load_mtp(cmd.potential, species=self.species)
            if cmd.relabel_train:
                rm, steps = self.refit(mtp, rd / "fit_start", pot, {"warm_start": str(cmd.potential)})
                how = (f"{cmd.potential} refitted to the oracle's labels ({steps} steps): train RMSE {rm['energy']:.4g} "
                       f"meV/atom, {rm['forces']:.4g} eV/Å")
            else:
                save_mtp(mtp, pot)
                how, rm = f"from {cmd.potential}", {}
        else:
            from ..data import load_records
            from ..fit import train_potential

            records = load_records(train_path, species=self.species, log=lambda *a: None)
            shutil.rmtree(rd / "fit_start", ignore_errors=True)
            res = train_potential(records, None, level=cmd.level, cutoff=cmd.cutoff, rmin=cmd.rmin,
                                  n_species=len(self.species or [None]), species=self.species, cfg=cmd.fit,
                                  workdir=rd / "fit_start", output=pot, log=lambda *a: None)
            rm = res["train"]["all"]
            how = (f"fitted (level {cmd.level}, cutoff {cmd.cutoff:g} Å): train RMSE {rm['energy']:.4g} meV/atom, "
                   f"{rm['forces']:.4g} eV/Å")
        self.state["potential"] = str(pot.relative_to(self.out))
        n = self.store_active_set(pot, self.mtp(), self.training())
        self.state["start"] = {"train_size": len(structures), "rmse_energy_meV_atom": rm.get("energy"),
                               "rmse_forces_eV_A": rm.get("forces"), "active_rows": n}
        self.say(0, "start", f"{len(structures)} training structures, potential {how}; active set of {n} rows")

    def refit(self, mtp, workdir: Path, pot: Path, settings: dict):
        """Fit ``mtp`` (warm start: its parameters, r_min and cutoff) to the current training set -> ``pot``;
        (training RMSEs, steps)."""
        from ..data import load_records, pack_records
        from ..fit import finish_run, fit

        records = load_records(self.out / self.state["train"], species=self.species, log=lambda *a: None)
        batches, subsets = pack_records(records, mtp.cutoff)
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        t0, c0 = time.perf_counter(), time.process_time()
        new, history = fit(mtp, batches, self.cmd.fit, workdir=workdir, log=lambda *a: None)
        res = finish_run(new, history, batches, subsets, None, self.cmd.fit, pot, workdir, t0, c0,
                         {**settings, "n_train": len(records)})
        return res["train"]["all"], len(history)

    def label_structures(self, structures):
        """(labelled copies, failures as dicts) of ``structures`` by the oracle, on the configured executor."""
        if self.executor is None:
            self.executor = make_executor(self.cmd.executor, self.oracle)
        return label_structures(self.oracle, structures, self.executor, self.cmd.executor.chunk_size)

    def md(self, k: int) -> None:
        """Every simulation with the round's potential; candidates.extxyz and md.json."""
        from ..io import read_structures, write_structures
        from ..io.files import write_json
        from ..md import MDExtrapolation, MDInstability
        from ..md.cli import run_command
        from ..md.config import MDCommand

        cmd, rd = self.cmd, self.rd(k)
        pot = str(self.out / self.state["potential"])
        candidates, sims = [], {}
        for name, sim in zip(cmd.names(), cmd.simulation):
            folder = rd / "md" / name
            shutil.rmtree(folder, ignore_errors=True)
            settings = dataclasses.replace(sim.settings, gamma_select=cmd.gamma_select, gamma_break=cmd.gamma_break,
                                           seed=sim.settings.seed + k)
            md = MDCommand(potential=pot, species=cmd.species, structure=sim.structure, element=sim.element,
                           crystal=sim.crystal, a=sim.a, c=sim.c, cubic=sim.cubic, repeat=sim.repeat, rattle=sim.rattle,
                           output=str(folder), active_set=pot, settings=settings)
            try:
                summary = run_command(md, progress=self.progress)
                info = {"completed": True, "broke": False, "steps": summary["steps"], "max_gamma": summary["max_grade"]}
            except MDExtrapolation as err:
                g = [x for x in (getattr(err.result, "max_grade", float("nan")), err.extrapolated.info.get("grade"))
                     if x is not None and np.isfinite(x)]
                info = {"completed": False, "broke": True, "steps": err.step, "max_gamma": max(g) if g else float("nan")}
            except MDInstability as err:  # unstable without passing gamma_break: not a reason to go on
                info = {"completed": False, "broke": False, "steps": err.step,
                        "max_gamma": getattr(err.result, "max_grade", float("nan")), "unstable": str(err)}
            extra = folder / "extrapolative.extxyz"
            frames = read_structures(extra) if extra.exists() and extra.stat().st_size else []  # (an empty file: none)
            for a in frames:
                a.info["simulation"] = name
            info["candidates"] = len(frames)
            candidates += frames
            sims[name] = info
        write_structures(candidates, rd / "candidates.extxyz", format="extxyz")
        write_json(rd / "md.json", sims)
        rec = self.record(k)
        rec.update(candidates=len(candidates), max_gamma={n: s["max_gamma"] for n, s in sims.items()},
                   broke=sum(s["broke"] for s in sims.values()), simulations=sims)
        text = ", ".join(f"{n} {'broke' if s['broke'] else 'completed' if s['completed'] else 'UNSTABLE'} at step "
                         f"{s['steps']} (max γ {s['max_gamma']:.4g})" for n, s in sims.items())
        self.say(k, "md", f"{text}; {len(candidates)} candidates")
        unstable = [n for n, s in sims.items() if not s["completed"] and not s["broke"]]
        if not unstable and not rec["broke"]:
            self.state["status"] = "converged"
            self.say(k, "md", "every simulation completed without passing gamma_break: converged")
        elif unstable and not candidates:
            raise MtpjaxError(f"round {k}: {', '.join(unstable)} became unstable without an extrapolative frame to "
                              f"learn from ({sims[unstable[0]]['unstable']}); lower gamma_select, shorten the time step "
                              f"or check the settings")
        elif k >= cmd.max_rounds:
            self.state["status"] = "max_rounds"
            self.say(k, "md", f"still extrapolating after max_rounds = {cmd.max_rounds} refits: stopped")

    def select(self, k: int) -> None:
        """MaxVol selection among the candidates -> selected.extxyz."""
        from ..io import read_structures, write_structures
        from .grade import load_active_set, select_add

        rd = self.rd(k)
        path = rd / "candidates.extxyz"
        candidates = read_structures(path) if path.stat().st_size else []
        mtp = self.mtp()
        active = load_active_set(self.out / self.state["potential"], mtp)
        picked, _ = select_add(mtp, active, candidates, threshold_select=self.cmd.threshold_select,
                               source=str(rd / "candidates.extxyz"))
        picked = sorted(picked)
        selected = [candidates[j] for j in picked]
        for j, a in zip(picked, selected):
            a.info["candidate"] = j
        write_structures(selected, rd / "selected.extxyz", format="extxyz")
        self.record(k).update(selected=len(selected))
        self.say(k, "select", f"{len(selected)} of {len(candidates)} candidates selected (MaxVol, threshold "
                              f"{self.cmd.threshold_select:g})")
        if not selected:
            raise MtpjaxError(f"round {k}: simulations extrapolate but MaxVol selects none of the {len(candidates)} "
                              f"candidates (threshold_select {self.cmd.threshold_select:g}): lower threshold_select")

    def label(self, k: int) -> None:
        """The selected structures labelled by the oracle -> labelled.cfg (failures.json)."""
        from ..io import read_structures, write_structures
        from ..io.files import write_json

        rd = self.rd(k)
        good, bad = self.label_structures(read_structures(rd / "selected.extxyz"))
        for a in good:
            a.arrays.pop("mlip_type", None)
        write_structures(good, rd / "labelled.cfg", species=self.species or list(self.mtp().species or []) or None,
                         precision="full")
        write_json(rd / "failures.json", bad)
        self.record(k).update(labelled=len(good), label_failures=len(bad))
        self.say(k, "label", f"{len(good)} labelled by {getattr(self.oracle, 'name', self.cmd.oracle)} on "
                             f"{self.executor.name}" + (f", {len(bad)} failed (failures.json)" if bad else ""))
        if not good:
            raise MtpjaxError(f"round {k}: the oracle labelled none of the {len(bad)} selected structures "
                              f"(see {rd / 'failures.json'})")

    def fit(self, k: int) -> None:
        """Training set + labelled -> round_K+1/train.cfg; the warm-started refit -> round_K+1/potential.mtpjax with
        its active set."""
        from ..io import read_cfg, write_cfg

        rd, nxt = self.rd(k), self.rd(k + 1)
        nxt.mkdir(parents=True, exist_ok=True)
        train = self.training() + read_cfg(rd / "labelled.cfg")
        train_path, pot = nxt / "train.cfg", nxt / "potential.mtpjax"
        write_cfg(train, train_path, precision="full")
        mtp, previous = self.mtp(), self.state["potential"]
        self.state["train"] = str(train_path.relative_to(self.out))
        rm, steps = self.refit(mtp, rd / "fit", pot, {"warm_start": previous, "round": k})
        self.state["potential"] = str(pot.relative_to(self.out))
        n = self.store_active_set(pot, self.mtp(), self.training())
        self.record(k).update(train_size=len(train), rmse_energy_meV_atom=rm["energy"], rmse_forces_eV_A=rm["forces"],
                              fit_steps=steps)
        self.say(k, "fit", f"{len(train)} training structures, warm-started refit in {steps} steps: train RMSE "
                           f"{rm['energy']:.4g} meV/atom, {rm['forces']:.4g} eV/Å; active set of {n} rows -> {pot}")
