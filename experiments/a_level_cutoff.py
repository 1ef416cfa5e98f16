#!/usr/bin/env python
"""Experiment a: training errors of MTPs against level and cutoff, for every training subset (Poul et al. 2023, Fig. 4).

Built on the stages of ``mtpjax run`` through :mod:`mtpjax.experiment`: generate a training set with the oracle
(the generator stage), hold out a seeded random fraction of EVERYTHING as a test set (the fit stage's split), then fit
every (subset, level, cutoff, seed) with :func:`mtpjax.sweep.run_sweep` and plot the training RMSE of energy
(meV/atom) and forces (eV/Å) against level and against cutoff (Å).

    python experiments/a_level_cutoff.py --quick            # small, minutes on 2 CPU cores
    python experiments/a_level_cutoff.py                    # paper scale (GPU machine)

Outputs in ``--out`` (default ``runs/experiments/a_level_cutoff[_quick]``): ``data/`` (the generated set, unless
``--data`` names one), ``sweep/`` (run_sweep's runs, ``results.csv`` and plots), ``a_level_cutoff.csv`` (one row per
fit, EVERYTHING named as such), ``a_level_cutoff.png`` and ``settings.json``. A re-run skips finished fits and a
finished generation; changing a fit setting (steps, split, weights) of an existing output folder is an error.

The parameters live in a TOML file (default ``experiments/configs/a_level_cutoff.toml``) with a ``[quick]`` and a
``[full]`` table; :class:`Settings` lists every key. Paths in it are relative to the file.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from mtpjax import experiment as E
from mtpjax.errors import ConfigError
from mtpjax.experiment import ExperimentError  # noqa: F401  (the scripts' one error type)

HERE = Path(__file__).resolve().parent
NAME = "a_level_cutoff"
DEFAULT_CONFIG = HERE / "configs" / "a_level_cutoff.toml"


@dataclass(frozen=True)
class Settings(E.SweepSettings):
    """The [quick] / [full] table of a_level_cutoff.toml: the fit keys of :class:`mtpjax.experiment.SweepSettings`
    and the training subsets (one line per subset in the figure)."""

    subsets: tuple[str, ...] = ("RATTLE", "EVERYTHING")  # RANDSPG ... RATTLE, EVERYTHING

    def check_config(self) -> None:
        """What the types do not say (a :class:`ConfigError` names the key)."""
        super().check_config()
        bad = [x for x in self.subsets if x not in E.KNOWN_SUBSETS]
        if bad:
            raise ConfigError("subsets", f"unknown subset(s) {bad}; known: {list(E.KNOWN_SUBSETS)}")
        if not self.subsets:
            raise ConfigError("subsets", "must be a non-empty list of subset names")


def load_settings(path, mode: str) -> Settings:
    """The ``[mode]`` table of ``path``, checked; ``generate`` resolved relative to the file."""
    return E.load_settings(Settings, path, mode)


# ------------------------------------------------------------------------------------------------------------------
# figure


def level_cutoff_figure(rows, title: str = ""):
    """2x2 Figure: training RMSE of energy (meV/atom) and forces (eV/Å) against level (one line per subset and cutoff)
    and against cutoff (one line per subset, for the lowest and highest level); mean over seeds."""
    from matplotlib.lines import Line2D

    from mtpjax.plotting import subplots

    subsets = [s for s in E.KNOWN_SUBSETS if any(r["subset"] == s for r in rows)]
    levels = sorted({int(r["level"]) for r in rows})
    cutoffs = sorted({float(r["cutoff"]) for r in rows})
    colours = {s: E.colour("tab10", k) for k, s in enumerate(subsets)}
    styles = ["-", "--", ":", "-."]
    fig, axes = subplots(2, 2, figsize=(11, 8))
    keys = (("train_energy_meV", "training energy RMSE (meV/atom)"), ("train_forces", "training force RMSE (eV/Å)"))

    def value(s, lv, c, key):
        return E.mean(r[key] for r in rows if r["subset"] == s and int(r["level"]) == lv and float(r["cutoff"]) == c)

    for col, (key, label) in enumerate(keys):
        ax = axes[0, col]
        for s in subsets:
            for k, c in enumerate(cutoffs):
                ax.plot(levels, [value(s, lv, c, key) for lv in levels], styles[k % 4], marker="o", ms=4, color=colours[s])
        ax.set_xticks(levels)
        ax.set_xlabel("MTP level")
        ax.set_ylabel(label)
        ax.set_yscale("log")
        E.plain_log_ticks(ax.yaxis)
        ax.grid(True, which="both", alpha=0.3)
        ax = axes[1, col]
        shown = [levels[0], levels[-1]] if len(levels) > 1 else levels
        for s in subsets:
            for lv in shown:
                ax.plot(cutoffs, [value(s, lv, c, key) for c in cutoffs], "-" if lv == levels[-1] else "--",
                        marker="s" if lv == levels[-1] else "v", ms=5, color=colours[s])
        ax.set_xticks(cutoffs)
        ax.set_xlabel("cutoff (Å)")
        ax.set_ylabel(label)
        ax.set_yscale("log")
        E.plain_log_ticks(ax.yaxis)
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
    return fig


# ------------------------------------------------------------------------------------------------------------------
# command line

CSV_COLUMNS = ["subset", "level", "cutoff", "seed", "n_basis", "steps", "wall_s", "cpu_s", "train_energy_meV", "train_forces",
               "train_stress_GPa", "test_energy_meV", "test_forces", "test_stress_GPa"]


def build_parser():
    return E.parser(NAME, "Experiment a (Fig. 4): training RMSE vs MTP level and cutoff per training subset",
                    DEFAULT_CONFIG, f"runs/experiments/{NAME}[_quick]")


def run(args) -> Path:
    """Experiment a for parsed command-line ``args``; returns the output folder."""
    mode = "quick" if args.quick else "full"
    t0 = time.perf_counter()
    s = load_settings(args.config, mode)
    E.use_compilation_cache(not args.no_jax_cache)
    out = args.out or E.default_out(NAME, args.quick)
    out.mkdir(parents=True, exist_ok=True)
    E.log(f"{NAME} ({mode}): levels {list(s.levels)}, cutoffs {list(s.cutoffs)} Å, subsets {list(s.subsets)}, "
          f"{s.max_steps} steps -> {out}")
    if args.data is not None:
        data_dir = E.given_data(args.data)
    else:
        data_dir = out / "data"
        E.prepare_data(s.generate, data_dir)
    rows = E.sweep_fits(data_dir, out / "sweep", s, s.subsets)
    E.write_csv(out / f"{NAME}.csv", rows, CSV_COLUMNS)
    E.save_figure(level_cutoff_figure(rows, title=f"Training RMSE vs level and cutoff ({mode}; oracle-labelled Mg)"),
                  out / f"{NAME}.png")
    wall = time.perf_counter() - t0
    from mtpjax.io.files import write_json

    write_json(out / "settings.json", {"mode": mode, "config": str(args.config), "data": str(data_dir),
                                       **E.settings_dict(s), "wall_s": round(wall, 1)}, indent=1)
    E.log(f"{NAME}: {len(rows)} fits in {wall:.0f} s -> {out / (NAME + '.csv')}, {out / (NAME + '.png')}")
    return out


def main(argv=None) -> int:
    """The command line; 0 on success, 2 on bad input (the message, naming the file and key, on stderr)."""
    return E.guarded(NAME, run, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
