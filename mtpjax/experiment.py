"""What the experiment scripts (``experiments/a_level_cutoff.py``, ``b_pareto.py``, ``c_error_matrix.py``,
``d_transferability.py``) share, built on the stages of ``mtpjax run`` (:mod:`mtpjax.pipeline`):

- settings: a TOML file with a ``[quick]`` and a ``[full]`` table, read into a frozen dataclass by the one validator
  :mod:`mtpjax.config` (:func:`load_settings`); bad input is an :class:`ExperimentError` naming the file and the key;
- output: the default output folder, time-stamped progress lines, CSV tables and figures written atomically
  through :mod:`mtpjax.io.files`, the command line's common options and exit status;
- generate: the training set of a generation recipe (:func:`prepare_data`, the generator stage's
  :func:`mtpjax.generate.run`), its records (:func:`load_data`) and the train/test split of the fit stage
  (:func:`split`, :func:`mtpjax.pipeline.split_records`);
- fit: sweeps of MTPs through :func:`mtpjax.sweep.run_sweep` (:func:`sweep_fits` for a and b, :func:`fit_plan_runs`
  for c and d), whose settings a later run into the same folder must not change (:func:`check_fit_settings`);
- verify: the verification suite (:func:`mtpjax.verify.suite.run_suite`) of a fitted MTP against the oracle,
  skipped when done before (:func:`verify_run`);
- figures: :class:`matplotlib.figure.Figure` objects (:func:`mtpjax.plotting.subplots`, never pyplot state) and
  :func:`save_figure`.

Units: Å, eV, eV/Å, GPa; RMSEs in meV/atom (energy), eV/Å (forces), GPa (stress).
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import json
import math
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .errors import ConfigError, FormatError, MtpjaxError
from .fit.config import MLIP_LINEAR_SOLVES
from .fit.validate import non_negative_int, positive_float, positive_int
from .generate.config import OPTIONAL_SUBSETS
from .generate.config import SUBSETS as GENERATED_SUBSETS

__all__ = [
    "ExperimentError", "KNOWN_SUBSETS", "MLIP_LINEAR_SOLVES", "MODES", "SUBSETS", "SweepSettings",
    "check_fit_settings", "check_generated", "check_plan_settings", "check_subsets", "colour", "data_id", "default_out",
    "file_digest", "fit_config", "fit_plan_runs", "fit_row", "given_data", "guarded", "load_data", "load_potential",
    "load_settings", "log", "mean", "parser", "plain_log_ticks", "prepare_data", "read_manifest", "save_figure",
    "settings_dict", "split", "sweep_fits", "sweep_tag", "use_compilation_cache", "verify_run", "write_csv",
]

#: The training subsets of the paper; EVERYTHING is the union of the generated ones.
SUBSETS = (*GENERATED_SUBSETS, "EVERYTHING")
#: Every subset an experiment can train on: the paper's, and the optional stages of ``mtpjax generate`` (ENTROPY,
#: HESSIAN) where the recipe selects them (:func:`check_generated`); EVERYTHING last, as in :data:`SUBSETS`.
KNOWN_SUBSETS = (*GENERATED_SUBSETS, *OPTIONAL_SUBSETS, "EVERYTHING")
#: The tables of an experiment's TOML file: ``--quick`` reads [quick], otherwise [full].
MODES = ("quick", "full")


class ExperimentError(MtpjaxError):
    """Bad input of an experiment script (the message names the file and the key)."""


# ------------------------------------------------------------------------------------------------------------------
# settings


@dataclass(frozen=True)
class SweepSettings:
    """The fit keys of experiments a and b: MTPs of every (subset, level, cutoff, seed) fitted with
    :func:`mtpjax.sweep.run_sweep` on EVERYTHING less a held-out test fraction."""

    generate: str = field(default="quick_data_ab.toml", metadata={"path": True, "help": (
        "generation recipe (an mtpjax generate TOML), relative to the config file")})
    levels: tuple[int, ...] = (8, 12)  # MTP levels, 2..28
    cutoffs: tuple[float, ...] = (5.2,)  # Å, each in (1, 20)
    seeds: tuple[int, ...] = field(default=(0,), metadata={"check": non_negative_int})
    max_steps: int = 300  # optimiser steps per fit (at most)
    linear_solve_at: tuple[int, ...] = field(default=MLIP_LINEAR_SOLVES, metadata={"check": non_negative_int, "help": (
        "steps with an exact linear solve (those >= max_steps dropped)")})
    test_fraction: float = 0.1  # held-out fraction of EVERYTHING (test RMSE), in [0, 1)
    split_seed: int = field(default=0, metadata={"check": non_negative_int})
    group: Literal["level", "seed", "none"] = "level"  # which runs train together (mtpjax.sweep.run_sweep)
    max_batch_atoms: int = field(default=100000, metadata={"check": positive_int})
    energy_weight: float = field(default=1.0, metadata={"check": positive_float})
    force_weight: float = field(default=0.01, metadata={"check": positive_float})
    stress_weight: float = field(default=0.001, metadata={"check": positive_float})

    def check_config(self) -> None:
        """What the types do not say (:func:`mtpjax.config.from_dict` calls it; a :class:`ConfigError` names the key)."""
        if not self.levels:
            raise ConfigError("levels", "must be a non-empty list of integers")
        if any(not 2 <= x <= 28 for x in self.levels):
            raise ConfigError("levels", f"every entry must be in [2, 28], got {list(self.levels)}")
        if not self.cutoffs or any(not 1.0 < c < 20.0 for c in self.cutoffs):
            raise ConfigError("cutoffs", f"must be a non-empty list with every cutoff in (1, 20) Å, got {list(self.cutoffs)}")
        if not self.seeds:
            raise ConfigError("seeds", "must be a non-empty list of integers")
        if self.max_steps < 1:
            raise ConfigError("max_steps", f"must be a positive integer, got {self.max_steps}")
        if not 0.0 <= self.test_fraction < 1.0:
            raise ConfigError("test_fraction", f"must be a number in [0, 1), got {self.test_fraction}")


def check_plan_settings(s) -> None:
    """What the types do not say of the fit keys of experiments c and d: the recipe ``data`` must exist."""
    if not Path(s.data).exists():
        raise ConfigError("data", f"no such generation recipe {s.data}")


def check_subsets(subsets, key: str) -> None:
    """Each name must be a subset of :data:`KNOWN_SUBSETS`, EVERYTHING, or a union ``A+B`` of generated subsets,
    named once (whether the recipe generates it is :func:`check_generated`'s question)."""
    if not subsets:
        raise ConfigError(key, "is empty")
    for s in subsets:
        parts = s.split("+")
        if any(p not in KNOWN_SUBSETS or (p == "EVERYTHING" and len(parts) > 1) for p in parts):
            raise ConfigError(key, f"unknown training subset {s!r} (known: {', '.join(KNOWN_SUBSETS)}, or a union A+B)")
    if len(set(subsets)) != len(subsets):
        raise ConfigError(key, f"a subset is named twice in {list(subsets)}")


def load_settings(cls, path, mode: str, *, prefix: str | None = None):
    """The ``[mode]`` table (``quick`` or ``full``) of TOML file ``path`` as a ``cls``, a frozen dataclass checked by
    :func:`mtpjax.config.from_dict` (field types and ``check`` metadata, then ``cls.check_config``): missing keys
    take the defaults; ``path`` fields (metadata) are relative to the file, defaults included.

    Any fault is an :class:`ExperimentError` ``"<path>: <prefix><key>: <reason>"``; ``prefix`` defaults to
    ``"<mode>."``; a file without a ``[mode]`` table, or with other tables, is one too.
    """
    from . import config
    from .io.tomlfile import read_toml

    path = Path(path)
    prefix = f"{mode}." if prefix is None else prefix
    try:
        doc = read_toml(path)
    except FormatError as err:
        raise ExperimentError(str(err)) from None
    extra = sorted(set(doc) - set(MODES))
    if extra:
        raise ExperimentError(f"{path}: unknown table or key {extra[0]!r} (the file holds a [quick] and a [full] table)")
    if mode not in doc:
        raise ExperimentError(f"{path}: no [{mode}] table")
    if not isinstance(doc[mode], dict):
        raise ExperimentError(f"{path}: {mode} must be a table")
    table, base = dict(doc[mode]), path.resolve().parent
    for fd in config.fields(cls):  # paths relative to the file (a default left out too)
        value = table.get(fd.key, getattr(cls(), fd.name))
        if fd.meta.get("path") and isinstance(value, str):
            table[fd.key] = str((base / value).resolve())
    try:
        return config.from_dict(cls, table, prefix=prefix, path=path)
    except ConfigError as err:
        reason = str(err)[len(err.field) + 2:]
        reason = reason[: -len(f" (in {path})")] if reason.endswith(f" (in {path})") else reason
        raise ExperimentError(f"{path}: {err.field}: {reason}") from None


def settings_dict(settings) -> dict:
    """The settings as JSON-able values (tuples as lists), e.g. for ``settings.json``."""
    return json.loads(json.dumps(dataclasses.asdict(settings)))


# ------------------------------------------------------------------------------------------------------------------
# output


def default_out(name: str, quick: bool, base=Path("runs") / "experiments") -> Path:
    """``base/<name>[_quick]``: the default output folder of an experiment."""
    return Path(base) / (name + ("_quick" if quick else ""))


def log(msg: str) -> None:
    """A time-stamped progress line on stdout."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _cell(v):
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else v


def write_csv(path, rows, columns=None) -> Path:
    """``rows`` (dicts) as a CSV table written atomically; ``columns`` (default: every key, in order of appearance)
    pick the columns, other keys are left out; None and NaN become empty cells. Returns the path."""
    from .io.files import atomic_open

    path = Path(path)
    columns = list(columns or dict.fromkeys(k for r in rows for k in r))
    with atomic_open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _cell(r.get(k)) for k in columns})
    return path


def save_figure(fig, path, dpi: int = 110) -> Path:
    """Write a :class:`matplotlib.figure.Figure` atomically (format from the suffix); returns the path."""
    from .io.files import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png")
    return path


def colour(name: str, x: float):
    """The colour at ``x`` (0-1, or an index for a qualitative map such as tab10) of matplotlib colour map ``name``."""
    import matplotlib

    return matplotlib.colormaps[name](x)


def plain_log_ticks(axis) -> None:
    """Label a log axis with plain numbers (0.03, 20): the decades, plus 2, 3, 5 x 10^k when it spans < 1.5 decades
    (every minor tick when it spans less than a factor 3)."""
    from matplotlib.ticker import FuncFormatter

    def minor(v, _):
        lo, hi = axis.get_view_interval()
        if v <= 0 or lo <= 0 or hi / lo > 30:
            return ""
        m = v / 10 ** math.floor(math.log10(v) + 1e-9)
        keep = range(2, 10) if hi / lo < 3 else (2, 3, 5)
        return f"{v:g}" if any(abs(m - k) < 1e-6 for k in keep) else ""

    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(FuncFormatter(minor))


def mean(values) -> float:
    """Mean of the finite values (None and NaN left out); NaN when there is none."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return sum(vals) / len(vals) if vals else float("nan")


def file_digest(path) -> str:
    """The first 16 hex digits of a file's SHA-256."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def name_token(value: str) -> str:
    """An argparse ``type`` for a name that becomes part of file and column names (a run's tag or variant): letters,
    digits and underscores, at least one (leave the option out for no name)."""
    if not value.replace("_", "").isalnum():
        raise argparse.ArgumentTypeError(f"{value!r}: use letters, digits and underscores")
    return value


def parser(name: str, description: str, default_config: Path, default_out_hint: str,
           data_help: str = "an existing folder written by mtpjax generate (skips generation)") -> argparse.ArgumentParser:
    """The options every experiment takes: --quick, --config, --out, --data, --no-jax-cache."""
    p = argparse.ArgumentParser(prog=f"experiments/{name}.py", description=description)
    p.add_argument("--quick", action="store_true", help="the [quick] table of the config (small; minutes on 2 CPU cores)")
    p.add_argument("--config", type=Path, default=Path(default_config),
                   help=f"TOML with [quick] and [full] tables (default {default_config})")
    p.add_argument("--out", type=Path, default=None, help=f"output folder (default {default_out_hint})")
    p.add_argument("--data", type=Path, default=None, help=data_help)
    p.add_argument("--no-jax-cache", action="store_true",
                   help="do not use JAX's persistent compilation cache (mtpjax enables one at import: "
                        "MTPJAX_CACHE_DIR, default ~/.cache/mtpjax/jax)")
    return p


def use_compilation_cache(enabled: bool) -> None:
    """Switch JAX's persistent compilation cache (which mtpjax enables, see :mod:`mtpjax`) off when ``enabled`` is
    false."""
    if not enabled:
        import jax

        jax.config.update("jax_enable_compilation_cache", False)


def guarded(name: str, fn, *args) -> int:
    """Run ``fn(*args)``; 0 when it returns, 2 (the message on stderr) when it raises an :class:`MtpjaxError` (bad
    input of any stage, named)."""
    try:
        fn(*args)
    except MtpjaxError as err:
        print(f"{name}: error: {err}", file=sys.stderr)
        return 2
    return 0


# ------------------------------------------------------------------------------------------------------------------
# generate


def prepare_data(recipe, data_dir, log=log, progress: bool = False) -> tuple[dict, dict]:
    """The training set of generation recipe ``recipe`` (a TOML file) in ``data_dir``, made by the generator stage
    (:func:`mtpjax.generate.run`, resumable from its checkpoints) unless ``data_dir`` holds it already (its manifest
    records the same recipe; where the work ran does not count). Returns (the manifest, the oracle's
    :func:`mtpjax.oracles.make_oracle` spec)."""
    from .generate import load_config, run

    recipe, data_dir = Path(recipe), Path(data_dir)
    if not recipe.exists():
        raise ExperimentError(f"generation recipe {recipe}: no such file")
    try:
        cfg = load_config(recipe)
    except MtpjaxError as err:
        raise ExperimentError(f"generation recipe {recipe}: {err}") from None
    want = json.loads(json.dumps(cfg.to_dict(), default=list))
    want.pop("executor", None)
    manifest = read_manifest(data_dir)
    if manifest is not None and (data_dir / "EVERYTHING.extxyz").exists():
        have = dict(manifest.get("config", {}))
        have.pop("executor", None)
        if _same_recipe(cfg, have, want):
            n = manifest.get("subsets", {}).get("EVERYTHING", {}).get("structures", "?")
            log(f"data: {data_dir} ({n} structures) already holds this recipe's data, skipped")
            return manifest, cfg.oracle_spec()
    log(f"data: generating {recipe.name} into {data_dir} (resumable)")
    t0 = time.perf_counter()
    m = run(cfg, data_dir, resume=True, progress=progress)
    counts = ", ".join(f"{s} {v['structures']}" for s, v in m["subsets"].items())
    log(f"data: done in {time.perf_counter() - t0:.1f} s ({counts} structures)")
    return m, cfg.oracle_spec()


def _same_recipe(cfg, have: dict, want: dict) -> bool:
    """Whether a manifest's recipe ``have`` is ``want`` (:meth:`GenerateConfig.to_dict` of ``cfg``, as JSON): a table
    the manifest lacks counts as equal when ``cfg`` has it at its default (a set written before that option existed)."""
    import dataclasses

    want = dict(want)
    for f in dataclasses.fields(cfg):
        if f.name in want and f.name not in have:
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                continue
            at_default = json.loads(json.dumps(dataclasses.replace(cfg, **{f.name: default}).to_dict(), default=list))
            if at_default.get(f.name) == want[f.name]:
                want.pop(f.name)
    return have == want


def read_manifest(data_dir) -> dict | None:
    """``data_dir/manifest.json`` (written by mtpjax generate), or None."""
    from .io.files import read_json

    p = Path(data_dir) / "manifest.json"
    return read_json(p, "generation manifest") if p.exists() else None


def given_data(data_dir) -> Path:
    """``--data``: a folder written by mtpjax generate, used as it is (no generation)."""
    data_dir = Path(data_dir)
    if not (data_dir / "EVERYTHING.extxyz").exists():
        raise ExperimentError(f"--data {data_dir}: no EVERYTHING.extxyz there")
    return data_dir


def check_generated(subsets, manifest: dict, recipe, where: str) -> None:
    """Every part of every training subset (``A+B`` unions included) must have been generated by ``recipe``."""
    generated = set(manifest["subsets"]["EVERYTHING"]["subsets"])
    for sub in subsets:
        missing = [p for p in sub.split("+") if p != "EVERYTHING" and p not in generated]
        if missing:
            raise ExperimentError(f"{where}: subset {missing[0]} was not generated by {recipe} "
                                  f"(its subsets: {sorted(generated)})")


def data_id(manifest: dict) -> str:
    """The SHA-256 of the generated EVERYTHING.extxyz (what fits are trained on)."""
    return manifest.get("files", {}).get("EVERYTHING.extxyz", {}).get("sha256", "unknown")


def load_data(data_dir, element: str):
    """Every labelled structure of ``data_dir/EVERYTHING.extxyz`` (each tagged with its subset), checked."""
    from .data import load_records, validate

    path = Path(data_dir) / "EVERYTHING.extxyz"
    if not path.exists():
        raise ExperimentError(f"{path}: no such file (is {data_dir} a folder written by mtpjax generate?)")
    records = load_records(path, species=[element])
    validate(records, 1)
    return records


def split(records, test_fraction: float, seed: int):
    """(train, test): a seeded random ``test_fraction`` of ``records`` held out, as the fit stage does
    (:func:`mtpjax.pipeline.split_records`)."""
    from .pipeline import FitSection, split_records

    return split_records(records, FitSection(test_fraction=test_fraction, seed=seed))


# ------------------------------------------------------------------------------------------------------------------
# fit


def sweep_tag(subset: str) -> str:
    """run_sweep's subset argument: EVERYTHING is all records ('all')."""
    return "all" if subset == "EVERYTHING" else subset


def fit_config(max_steps: int, linear_solve_at, method: str | None = None, energy_weight: float = 1.0,
               force_weight: float = 0.01, stress_weight: float = 0.001):
    """A :class:`mtpjax.fit.FitConfig`: at most ``max_steps`` steps, the exact linear solves before them,
    ``method`` (None: the fit's default optimiser) and the loss weights."""
    from .fit import FitConfig, LossConfig

    kw = {} if method is None else {"method": method}
    return FitConfig(max_steps=max_steps, linear_solve_at=tuple(s for s in linear_solve_at if s < max_steps),
                     loss=LossConfig(energy_weight=energy_weight, force_weight=force_weight, stress_weight=stress_weight),
                     **kw)


def check_fit_settings(path, want: dict) -> None:
    """Fits must not be reused with other data or optimiser settings: ``path`` (a JSON file beside the fits) records
    ``want``; a later run with different values is an :class:`ExperimentError` naming the keys."""
    from .io.files import read_json, write_json

    path = Path(path)
    want = json.loads(json.dumps(want))
    if path.exists():
        have = read_json(path, "record of fit settings")
        diff = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
        if diff:
            raise ExperimentError(f"{path}: the fits in {path.parent} were made with other settings ({', '.join(diff)}: "
                                  f"{[have.get(k) for k in diff]} there, {[want.get(k) for k in diff]} now); "
                                  "use another --out or delete that folder")
        return
    write_json(path, want, indent=1)


def sweep_fits(data_dir, sweep_dir, s: SweepSettings, subsets, log=log) -> list[dict]:
    """Fit every (subset, level, cutoff, seed) of ``s`` with :func:`mtpjax.sweep.run_sweep` on ``data_dir``'s
    EVERYTHING less the held-out test fraction; the rows of ``results.csv`` with EVERYTHING named as such. Finished
    runs are skipped, interrupted ones resume; other fit settings in the same ``sweep_dir`` are refused."""
    from .sweep import run_sweep

    data_dir, sweep_dir = Path(data_dir), Path(sweep_dir)
    keys = ("max_steps", "linear_solve_at", "test_fraction", "split_seed", "energy_weight", "force_weight", "stress_weight")
    check_fit_settings(sweep_dir / "settings.json", {**{k: getattr(s, k) for k in keys}, "data": str(data_dir.resolve())})
    manifest = read_manifest(data_dir) or {}
    element = manifest.get("element", "Mg")
    train, test = split(load_data(data_dir, element), s.test_fraction, s.split_seed)
    present = {r.subset for r in train}
    missing = [x for x in subsets if x != "EVERYTHING" and x not in present]
    if missing:
        raise ExperimentError(f"{data_dir}: no training structure of subset(s) {missing} (present: {sorted(present)})")
    log(f"data: {len(train)} training and {len(test)} test structures from {data_dir}")
    cfg = fit_config(s.max_steps, s.linear_solve_at, None, s.energy_weight, s.force_weight, s.stress_weight)
    rows = run_sweep(train, test, sweep_dir, levels=list(s.levels), cutoffs=[float(c) for c in s.cutoffs],
                     subsets=[sweep_tag(x) for x in subsets], seeds=list(s.seeds), cfg=cfg, species=[element],
                     max_batch_atoms=s.max_batch_atoms, group=s.group, log=log)
    for r in rows:
        if r["subset"] == "all":
            r["subset"] = "EVERYTHING"
    return rows


def fit_plan_runs(records, fits_dir, plan, *, seed: int, max_steps: int, linear_solve_at, optimizer: str,
                  max_batch_atoms: int, element: str, data: str, log=log) -> dict:
    """Fit every (subset, level, cutoffs) of ``plan`` on all of ``records`` with :func:`mtpjax.sweep.run_sweep` (the
    cutoffs of one subset and level train together; finished runs are skipped, interrupted ones resume).
    ``data``: :func:`data_id` of the training set, recorded with the optimiser settings in
    ``fits_dir/fit_settings.json``. Returns {(subset, level, cutoff): run folder}."""
    from .sweep import run_name, run_sweep

    fits_dir = Path(fits_dir)
    check_fit_settings(fits_dir / "fit_settings.json",
                       {"data": data, "max_steps": max_steps, "linear_solve_at": list(linear_solve_at),
                        "optimizer": optimizer, "max_batch_atoms": max_batch_atoms})
    cfg = fit_config(max_steps, linear_solve_at, optimizer)
    out = {}
    for k, (subset, level, cutoffs) in enumerate(plan):
        names = [run_name(sweep_tag(subset), level, c, seed) for c in cutoffs]
        todo = [n for n in names if not (fits_dir / "runs" / n / "result.json").exists()]
        log(f"fit {k + 1}/{len(plan)}: {subset}, level {level}, cutoff(s) {', '.join(f'{c:g}' for c in cutoffs)} Å"
            + ("" if todo else ": done before, skipped"))
        if todo:
            t0 = time.perf_counter()
            run_sweep(records, None, fits_dir, levels=[level], cutoffs=list(cutoffs), subsets=[sweep_tag(subset)],
                      seeds=[seed], cfg=cfg, species=[element], max_batch_atoms=max_batch_atoms,
                      log=lambda m: log(f"    {m}"))
            log(f"fit {k + 1}/{len(plan)}: done in {time.perf_counter() - t0:.0f} s")
        for c, n in zip(cutoffs, names):
            out[(subset, level, c)] = fits_dir / "runs" / n
    return out


def fit_row(subset: str, run_dir) -> dict:
    """One line of a fits table from a run's result.json (training RMSE: meV/atom, eV/Å, GPa)."""
    from .io.files import read_json

    r = read_json(Path(run_dir) / "result.json", "fit result")
    tr = r["train"].get("all", {})
    return {"subset": subset, "level": r["level"], "cutoff": r["cutoff"], "n_train": r.get("n_train"),
            "n_basis": r.get("n_basis"), "steps": r["steps"], "wall_s": round(r["wall_s"], 1),
            "train_energy_meV": tr.get("energy"), "train_forces_eV_A": tr.get("forces"), "train_stress_GPa": tr.get("stress")}


# ------------------------------------------------------------------------------------------------------------------
# verify


def load_potential(path, element: str):
    """The fitted MTP in ``path`` (``.mtpjax`` / ``.almtp``) for ``element``, loaded as the verify stage does
    (:func:`mtpjax.oracles.make_potential`)."""
    from .oracles import make_potential

    return make_potential(path, species=[element])


def verify_run(run_dir, oracle, oracle_spec, outdir, *, tests, quick: bool, options: dict, element: str, label: str,
               log=log) -> list:
    """The verification suite (:func:`mtpjax.verify.suite.run_suite`) of the MTP in ``run_dir`` against ``oracle``
    into ``outdir``; returns its rows. Skipped (rows read back) when ``outdir/done.json`` records the same tests,
    options, potential and oracle; an interrupted suite of the same potential continues with its unfinished tests."""
    from .io.files import read_json, write_json
    from .verify.suite import run_suite

    outdir = Path(outdir)
    pot_file = Path(run_dir) / "potential.mtpjax"
    key = json.loads(json.dumps({"tests": list(tests), "quick": quick, "options": options,
                                 "potential": file_digest(pot_file), "oracle": oracle_spec}))
    done, started = outdir / "done.json", outdir / "started.json"
    if done.exists():
        have = read_json(done, "verification record")
        if have.get("key") == key:
            log(f"verify {label}: done before, skipped")
            return have["rows"]
    same = started.exists() and read_json(started, "verification record") == key
    if outdir.exists() and not same:
        shutil.rmtree(outdir)  # a stale report of another potential or other settings
    outdir.mkdir(parents=True, exist_ok=True)
    write_json(started, key, indent=None)
    t0 = time.perf_counter()
    res = run_suite(load_potential(pot_file, element), oracle, outdir, tests=list(tests), element=element,
                    options=json.loads(json.dumps(options)), quick=quick, progress=sys.stderr.isatty(),
                    potential_label=label, potential_spec=str(pot_file), resume=same)
    status = ", ".join(f"{n} {t['status']} {t['seconds']:.0f} s" for n, t in res["tests"].items())
    log(f"verify {label}: {status}; total {time.perf_counter() - t0:.0f} s")
    write_json(done, {"key": key, "rows": res["rows"], "tests": {n: t["status"] for n, t in res["tests"].items()}}, indent=1)
    return res["rows"]
