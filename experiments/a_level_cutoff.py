#!/usr/bin/env python
"""Experiment a: training errors of MTPs against level and cutoff, for every training subset (Poul et al. 2023, Fig. 4).

Pipeline: generate a training set with the oracle (``mtpjax.generate``), hold out a seeded random fraction of
EVERYTHING as a test set, then fit every (subset, level, cutoff, seed) with :func:`mtpjax.sweep.run_sweep` and plot
the training RMSE of energy (meV/atom) and forces (eV/Å) against level and against cutoff (Å).

    python experiments/a_level_cutoff.py --quick            # small, minutes on 2 CPU cores
    python experiments/a_level_cutoff.py                    # paper scale (GPU machine)

Outputs in ``--out`` (default ``runs/experiments/a_level_cutoff[_quick]``): ``data/`` (the generated set, unless
``--data`` names one), ``sweep/`` (run_sweep's runs, ``results.csv`` and plots), ``a_level_cutoff.csv`` (one row per
fit, EVERYTHING named as such), ``a_level_cutoff.png`` and ``settings.json``. A re-run skips finished fits and a
finished generation; changing a fit setting (steps, split, weights) of an existing output folder is an error.

The parameters live in a TOML file (default ``experiments/configs/a_level_cutoff.toml``) with a ``[quick]`` and a
``[full]`` table; see :data:`SCHEMA` for every key. Paths in it are relative to the file. Experiment b
(``b_pareto.py``) reuses the helpers of this module.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
NAME = "a_level_cutoff"
DEFAULT_CONFIG = HERE / "configs" / "a_level_cutoff.toml"

#: the training subsets of the paper; EVERYTHING is their union
SUBSETS = ("RANDSPG", "VOLMIN", "CELLMIN", "INTMIN", "TRIAX", "SHEAR", "RATTLE", "EVERYTHING")
#: MLIP-3's linear-solve schedule (steps)
MLIP_SOLVES = [0, 25, 70, 100, 150, 250, 400]


class ExperimentError(Exception):
    """Bad input of an experiment script (the message names the file and key)."""


# ------------------------------------------------------------------------------------------------------------------
# config

def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _check_int_list(lo, hi):
    def check(v):
        if not isinstance(v, list) or not v or not all(_is_int(x) for x in v):
            return "must be a non-empty list of integers"
        if lo is not None and any(not lo <= x <= hi for x in v):
            return f"every entry must be in [{lo}, {hi}]"
        return None
    return check


def _check_cutoffs(v):
    if not isinstance(v, list) or not v or not all(_is_num(x) for x in v):
        return "must be a non-empty list of numbers (Å)"
    if any(not 1.0 < x < 20.0 for x in v):
        return "every cutoff must be in (1, 20) Å"
    return None


def _check_subsets(v):
    if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
        return "must be a non-empty list of subset names"
    bad = [x for x in v if x not in SUBSETS]
    return f"unknown subset(s) {bad}; known: {list(SUBSETS)}" if bad else None


def _check_str(v):
    return None if isinstance(v, str) and v else "must be a non-empty string"


def _check_pos_int(v):
    return None if _is_int(v) and v > 0 else "must be a positive integer"


def _check_nonneg_int(v):
    return None if _is_int(v) and v >= 0 else "must be a non-negative integer"


def _check_fraction(v):
    return None if _is_num(v) and 0.0 <= v < 1.0 else "must be a number in [0, 1)"


def _check_pos_num(v):
    return None if _is_num(v) and v > 0 else "must be a positive number"


def _check_group(v):
    return None if v in ("level", "seed", "none") else "must be one of 'level', 'seed', 'none'"


def _check_solves(v):
    if not isinstance(v, list) or not all(_is_int(x) and x >= 0 for x in v):
        return "must be a list of non-negative integers (steps)"
    return None


#: key -> (default, validator) of the [quick] / [full] tables of a_level_cutoff.toml
SCHEMA = {
    "generate": ("quick_data_ab.toml", _check_str),  # generation recipe (mtpjax.generate TOML), relative to this file
    "levels": ([8, 12], _check_int_list(2, 28)),
    "cutoffs": ([5.2], _check_cutoffs),  # Å
    "subsets": (["RATTLE", "EVERYTHING"], _check_subsets),
    "seeds": ([0], _check_int_list(0, 2**31 - 1)),
    "max_steps": (300, _check_pos_int),  # L-BFGS steps per fit
    "linear_solve_at": (MLIP_SOLVES, _check_solves),  # steps with an exact linear solve (those >= max_steps dropped)
    "test_fraction": (0.1, _check_fraction),  # held-out fraction of EVERYTHING (test RMSE)
    "split_seed": (0, _check_nonneg_int),
    "group": ("level", _check_group),  # which runs train together (mtpjax.sweep.run_sweep)
    "max_batch_atoms": (100000, _check_pos_int),
    "energy_weight": (1.0, _check_pos_num),
    "force_weight": (0.01, _check_pos_num),
    "stress_weight": (0.001, _check_pos_num),
}


def load_mode(path, mode: str, schema: dict) -> dict:
    """The ``[mode]`` table of TOML file ``path`` checked against ``schema`` (key -> (default, check)), with defaults
    filled in and the file's folder as ``_dir``. Raises ExperimentError naming the file and the key."""
    from mtpjax.errors import FormatError
    from mtpjax.io.tomlfile import read_toml

    path = Path(path)
    try:
        doc = read_toml(path)
    except FormatError as err:
        raise ExperimentError(str(err)) from None
    extra = sorted(set(doc) - {"quick", "full"})
    if extra:
        raise ExperimentError(f"{path}: unknown table(s) {extra}; expected [quick] and [full]")
    if mode not in doc or not isinstance(doc[mode], dict):
        raise ExperimentError(f"{path}: no [{mode}] table")
    table = doc[mode]
    unknown = sorted(set(table) - set(schema))
    if unknown:
        raise ExperimentError(f"{path}: {mode}.{unknown[0]}: unknown key (known: {', '.join(schema)})")
    out = {}
    for key, (default, check) in schema.items():
        value = table.get(key, default)
        msg = check(value)
        if msg:
            raise ExperimentError(f"{path}: {mode}.{key}: {msg}, got {value!r}")
        out[key] = value
    out["_dir"] = path.resolve().parent
    return out


# ------------------------------------------------------------------------------------------------------------------
# data

def resolve(p, base: Path) -> Path:
    p = Path(p)
    return p if p.is_absolute() else base / p


def prepare_data(gen_config: Path, data_dir: Path, log=print) -> Path:
    """Generate the training set of recipe ``gen_config`` into ``data_dir`` (skipped when a finished run with the same
    recipe is there; an interrupted one resumes). Returns ``data_dir``."""
    from mtpjax.generate import load_config, run

    if not gen_config.exists():
        raise ExperimentError(f"generation recipe {gen_config}: no such file")
    cfg = load_config(gen_config)
    manifest = data_dir / "manifest.json"
    want = json.loads(json.dumps(cfg.to_dict(), default=list))
    if manifest.exists() and (data_dir / "EVERYTHING.extxyz").exists():
        have = json.loads(manifest.read_text()).get("config")
        if have == want:
            log(f"generate: {data_dir} already holds this recipe's data, skipped")
            return data_dir
    log(f"generate: {gen_config.name} -> {data_dir}")
    t0 = time.perf_counter()
    m = run(cfg, data_dir, resume=True)
    counts = ", ".join(f"{k} {v['structures']}" for k, v in m["subsets"].items())
    log(f"generate: done in {time.perf_counter() - t0:.1f} s ({counts} structures)")
    return data_dir


def load_data(data_dir: Path, element: str, test_fraction: float, split_seed: int):
    """(train, test) records: a seeded random ``test_fraction`` of EVERYTHING is held out."""
    import numpy as np

    from mtpjax.data import load_records, validate

    path = data_dir / "EVERYTHING.extxyz"
    if not path.exists():
        raise ExperimentError(f"{path}: no such file (is {data_dir} a folder written by mtpjax generate?)")
    records = load_records(path, species=[element])
    validate(records, 1)
    n = len(records)
    n_test = min(int(round(test_fraction * n)), n - 1)
    if n_test <= 0:
        return records, []
    held = set(np.random.default_rng([split_seed, 2023]).permutation(n)[:n_test].tolist())
    return [r for i, r in enumerate(records) if i not in held], [r for i, r in enumerate(records) if i in held]


def data_element(data_dir: Path) -> str:
    m = data_dir / "manifest.json"
    return json.loads(m.read_text()).get("element", "Mg") if m.exists() else "Mg"


# ------------------------------------------------------------------------------------------------------------------
# sweep

#: what a re-run into the same sweep folder must not change (the fitted runs would silently mix settings)
FIT_KEYS = ("max_steps", "linear_solve_at", "test_fraction", "split_seed", "energy_weight", "force_weight", "stress_weight")


def sweep_tag(subset: str) -> str:
    """run_sweep's subset argument: EVERYTHING is all records ('all')."""
    return "all" if subset == "EVERYTHING" else subset


def check_settings(sweep_dir: Path, p: dict, data_dir: Path) -> None:
    """Record the fit settings in ``sweep_dir/settings.json``; refuse a re-run with other settings."""
    want = {k: p[k] for k in FIT_KEYS}
    want["data"] = str(data_dir.resolve())
    f = sweep_dir / "settings.json"
    if f.exists():
        have = json.loads(f.read_text())
        diff = sorted(k for k in want if have.get(k) != want[k])
        if diff:
            raise ExperimentError(f"{f}: this sweep folder was fitted with other settings ({', '.join(diff)}: "
                                  f"{[have.get(k) for k in diff]} vs {[want[k] for k in diff]}); use another --out or delete it")
    from mtpjax.io.files import atomic_write

    atomic_write(f, json.dumps(want, indent=1))


def run_fits(data_dir: Path, sweep_dir: Path, p: dict, subsets, log=print) -> list[dict]:
    """Fit every (subset, level, cutoff, seed) of ``p`` with run_sweep; rows of results.csv with EVERYTHING named."""
    from mtpjax.fit import FitConfig, LossConfig
    from mtpjax.sweep import run_sweep

    check_settings(sweep_dir, p, data_dir)
    element = data_element(data_dir)
    train, test = load_data(data_dir, element, p["test_fraction"], p["split_seed"])
    present = {r.subset for r in train}
    missing = [s for s in subsets if s != "EVERYTHING" and s not in present]
    if missing:
        raise ExperimentError(f"{data_dir}: no training structure of subset(s) {missing} (present: {sorted(present)})")
    log(f"data: {len(train)} training and {len(test)} test structures from {data_dir}")
    cfg = FitConfig(max_steps=p["max_steps"], linear_solve_at=tuple(s for s in p["linear_solve_at"] if s < p["max_steps"]),
                    loss=LossConfig(energy_weight=p["energy_weight"], force_weight=p["force_weight"],
                                    stress_weight=p["stress_weight"]))
    rows = run_sweep(train, test, sweep_dir, levels=p["levels"], cutoffs=[float(c) for c in p["cutoffs"]],
                     subsets=[sweep_tag(s) for s in subsets], seeds=p["seeds"], cfg=cfg, species=[element],
                     max_batch_atoms=p["max_batch_atoms"], group=p["group"], log=log)
    for r in rows:
        if r["subset"] == "all":
            r["subset"] = "EVERYTHING"
    return rows


def write_csv(rows, path: Path, columns) -> None:
    from mtpjax.io.files import atomic_open

    with atomic_open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


# ------------------------------------------------------------------------------------------------------------------
# figure

def _mean(vals):
    vals = [float(v) for v in vals if v is not None and math.isfinite(float(v))]
    return sum(vals) / len(vals) if vals else float("nan")


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


def plot_level_cutoff(rows, path: Path, title: str = "") -> None:
    """2x2 figure: training RMSE of energy (meV/atom) and forces (eV/Å) against level (one line per subset and cutoff)
    and against cutoff (one line per subset, for the lowest and highest level); mean over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    subsets = [s for s in SUBSETS if any(r["subset"] == s for r in rows)]
    levels = sorted({int(r["level"]) for r in rows})
    cutoffs = sorted({float(r["cutoff"]) for r in rows})
    colours = {s: plt.get_cmap("tab10")(k) for k, s in enumerate(subsets)}
    styles = ["-", "--", ":", "-."]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    keys = (("train_energy_meV", "training energy RMSE (meV/atom)"), ("train_forces", "training force RMSE (eV/Å)"))

    def value(s, lv, c, key):
        return _mean(r[key] for r in rows if r["subset"] == s and int(r["level"]) == lv and float(r["cutoff"]) == c)

    for col, (key, label) in enumerate(keys):
        ax = axes[0, col]
        for s in subsets:
            for k, c in enumerate(cutoffs):
                ax.plot(levels, [value(s, lv, c, key) for lv in levels], styles[k % 4], marker="o", ms=4, color=colours[s])
        ax.set_xticks(levels)
        ax.set_xlabel("MTP level")
        ax.set_ylabel(label)
        ax.set_yscale("log")
        plain_log_ticks(ax.yaxis)
        ax.grid(True, which="both", alpha=0.3)
        ax = axes[1, col]
        shown = [levels[0], levels[-1]] if len(levels) > 1 else levels
        for s in subsets:
            for k, lv in enumerate(shown):
                ax.plot(cutoffs, [value(s, lv, c, key) for c in cutoffs], "-" if lv == levels[-1] else "--",
                        marker="s" if lv == levels[-1] else "v", ms=5, color=colours[s])
        ax.set_xticks(cutoffs)
        ax.set_xlabel("cutoff (Å)")
        ax.set_ylabel(label)
        ax.set_yscale("log")
        plain_log_ticks(ax.yaxis)
        ax.grid(True, which="both", alpha=0.3)
    subset_handles = [Line2D([], [], color=colours[s], marker="o", label=s) for s in subsets]
    cut_handles = [Line2D([], [], color="k", ls=styles[k % 4], label=f"cutoff {c:g} Å") for k, c in enumerate(cutoffs)]
    axes[0, 0].legend(handles=subset_handles, fontsize=8, title="training subset", title_fontsize=8)
    axes[0, 1].legend(handles=cut_handles, fontsize=8)
    lv_handles = [Line2D([], [], color="k", ls="-" if lv == levels[-1] else "--", marker="s" if lv == levels[-1] else "v",
                         label=f"level {lv}")
                  for lv in ([levels[0], levels[-1]] if len(levels) > 1 else levels)]
    axes[1, 1].legend(handles=lv_handles, fontsize=8)
    if len(cutoffs) == 1:
        for ax in axes[1]:
            ax.text(0.03, 0.5, f"one cutoff ({cutoffs[0]:g} Å)\nin this run", transform=ax.transAxes, ha="left",
                    fontsize=9, color="0.4")
    axes[0, 0].set_title("RMSE vs level (Fig. 4a)", fontsize=10)
    axes[1, 0].set_title("RMSE vs cutoff (Fig. 4b)", fontsize=10)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------------------------
# command line

CSV_COLUMNS = ["subset", "level", "cutoff", "seed", "n_basis", "steps", "wall_s", "cpu_s", "train_energy_meV", "train_forces",
               "train_stress_GPa", "test_energy_meV", "test_forces", "test_stress_GPa"]


def default_out(name: str, quick: bool) -> Path:
    return Path("runs") / "experiments" / (name + ("_quick" if quick else ""))


def setup_jax_cache(enabled: bool = True) -> None:
    """Keep compiled programs in ``runs/experiments/.jax_cache`` (JAX's persistent compilation cache), so that a
    re-run or another experiment fitting the same shapes skips compilation; left alone when a cache is configured
    (``JAX_COMPILATION_CACHE_DIR`` or jax.config)."""
    import os

    if not enabled or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return
    import jax

    if jax.config.jax_compilation_cache_dir:
        return
    path = REPO / "runs" / "experiments" / ".jax_cache"
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def log_line(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Experiment a (Fig. 4): training RMSE vs MTP level and cutoff per training subset")
    p.add_argument("--quick", action="store_true", help="the [quick] table of the config (small; minutes on 2 CPU cores)")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help=f"TOML with [quick] and [full] tables (default {DEFAULT_CONFIG})")
    p.add_argument("--out", type=Path, default=None, help="output folder (default runs/experiments/a_level_cutoff[_quick])")
    p.add_argument("--data", type=Path, default=None, help="an existing folder written by mtpjax generate (skips generation)")
    p.add_argument("--no-jax-cache", action="store_true", help="do not use the persistent compilation cache runs/experiments/.jax_cache")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    mode = "quick" if args.quick else "full"
    t0 = time.perf_counter()
    try:
        p = load_mode(args.config, mode, SCHEMA)
        setup_jax_cache(not args.no_jax_cache)
        out = args.out or default_out(NAME, args.quick)
        out.mkdir(parents=True, exist_ok=True)
        log_line(f"{NAME} ({mode}): levels {p['levels']}, cutoffs {p['cutoffs']} Å, subsets {p['subsets']}, "
                 f"{p['max_steps']} steps -> {out}")
        if args.data is not None:
            if not (args.data / "EVERYTHING.extxyz").exists():
                raise ExperimentError(f"--data {args.data}: no EVERYTHING.extxyz there")
            data_dir = args.data
        else:
            data_dir = prepare_data(resolve(p["generate"], p["_dir"]), out / "data", log=log_line)
        rows = run_fits(data_dir, out / "sweep", p, p["subsets"], log=log_line)
    except ExperimentError as err:
        print(f"{NAME}: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # mtpjax input errors name their file/field
        from mtpjax.errors import MtpjaxError

        if isinstance(err, MtpjaxError):
            print(f"{NAME}: error: {err}", file=sys.stderr)
            return 2
        raise
    write_csv(rows, out / f"{NAME}.csv", CSV_COLUMNS)
    plot_level_cutoff(rows, out / f"{NAME}.png", title=f"Training RMSE vs level and cutoff ({mode}; oracle-labelled Mg)")
    wall = time.perf_counter() - t0
    from mtpjax.io.files import write_json

    write_json(out / "settings.json", {"mode": mode, "config": str(args.config), "data": str(data_dir),
                                       **{k: v for k, v in p.items() if k != "_dir"}, "wall_s": round(wall, 1)}, indent=1)
    log_line(f"{NAME}: {len(rows)} fits in {wall:.0f} s -> {out / (NAME + '.csv')}, {out / (NAME + '.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
