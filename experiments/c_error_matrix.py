"""Experiment c: the error matrix of Poul et al. (Fig. 14): training subset × verification quantity.

One MTP (same level, cutoff, seed and optimiser settings) is fitted to each training subset of a generated Mg set
(RANDSPG, VOLMIN, CELLMIN, INTMIN, TRIAX, SHEAR, RATTLE, EVERYTHING = the union), each is run through the
verification suite (:func:`mtpjax.verify.suite.run_suite`) against the oracle that labelled the data, and the rows
of every report are put side by side: one matrix row per verification quantity, one column per training subset.

    python experiments/c_error_matrix.py --quick            # ~4 min on 2 CPU cores
    python experiments/c_error_matrix.py                    # paper scale (GPU)
    python experiments/c_error_matrix.py --config my.toml --out runs/experiments/c_mine

Outputs in OUT (default ``runs/experiments/c_error_matrix[_quick]``):

- ``data/``: the generated training set (``mtpjax generate``; resumable);
- ``fits/runs/<run>/``: one fitted MTP per subset (``potential.mtpjax``, ``result.json``; :func:`mtpjax.sweep.run_sweep`);
- ``verify/<SUBSET>/``: the verification report of each (``rows.csv``, ``metrics.json``, ``summary.md``, figures);
- ``fits.csv``: training RMSE per subset (energy meV/atom, forces eV/Å, stress GPa);
- ``error_matrix.csv``: the matrix (test, quantity, unit, kind, one column per subset): ``kind = relative`` rows hold
  the relative error in % (100 · (MTP − oracle)/|oracle|), ``kind = absolute`` rows the error in the row's unit (an
  RMSE for curve comparisons, MTP − oracle otherwise);
- ``error_matrix_long.csv``: every verification row of every subset (test, quantity, unit, mtp, oracle, error,
  relative_error);
- ``error_matrix.png``: the heatmap (two panels: relative errors, coloured by |%| on a log scale; absolute errors,
  coloured by log10 |error| in the row's unit, so comparable along a row only).

Resumable: generation continues from its checkpoints, finished fits (``result.json``) and finished verifications
(``verify/<SUBSET>/done.json`` with the same tests, options and potential) are skipped; an interrupted
verification of the same potential continues with its unfinished tests (``run_suite(resume=True)``).
Units: eV, Å, GPa, meV/atom, J/m², THz.

The stages (data, fits, verification) and the settings come from :mod:`mtpjax.experiment`, the helpers the
four experiment scripts share.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mtpjax import experiment as E
from mtpjax.errors import ConfigError
from mtpjax.experiment import ExperimentError, write_csv  # noqa: F401  (the scripts' error type; the CSV writer)
from mtpjax.fit.validate import mtp_level, non_negative_int, positive_float, positive_int
from mtpjax.verify.suite import TESTS

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
NAME = "c_error_matrix"
DEFAULT_CONFIG = HERE / "configs" / "c_error_matrix.toml"


@dataclass(frozen=True)
class Settings:
    """The [quick] / [full] table of c_error_matrix.toml; every key is optional (these defaults are the full values)."""

    data: str = field(default=str(REPO / "configs" / "generate_mg.toml"), metadata={"path": True, "help": (
        "generation recipe, relative to the config file")})
    # training subsets, one MTP and one matrix column each (or unions A+B); ENTROPY and HESSIAN where generated
    subsets: tuple[str, ...] = E.SUBSETS
    level: int = field(default=16, metadata={"check": mtp_level})  # MTP level
    cutoff: float = field(default=6.5, metadata={"check": positive_float})  # Å
    seed: int = field(default=0, metadata={"check": non_negative_int})
    max_steps: int = field(default=1000, metadata={"check": positive_int})  # optimiser steps per fit
    linear_solve_at: tuple[int, ...] = field(default=E.MLIP_LINEAR_SOLVES, metadata={"check": non_negative_int})
    optimizer: Literal["lm", "lbfgs", "bfgs", "adam"] = "lbfgs"
    max_batch_atoms: int = field(default=100000, metadata={"check": positive_int})
    tests: tuple[str, ...] = TESTS  # verification tests
    verify_quick: bool = False  # the suite's quick mode (smaller cells, fewer points)
    verify_options: dict = field(default_factory=dict)  # per-test options, {"phonons": {"structures": ["hcp"]}}
    exclude: tuple[str, ...] = ()  # matrix rows whose "test: quantity" contains one of these strings are left out

    def check_config(self) -> None:
        """What the types do not say (a :class:`ConfigError` names the key)."""
        E.check_plan_settings(self)
        bad = [t for t in self.tests if t not in TESTS]
        if bad:
            raise ConfigError("tests", f"unknown test {bad[0]!r} (known: {', '.join(TESTS)})")
        if not self.tests:
            raise ConfigError("tests", "is empty")
        extra = sorted(set(self.verify_options) - set(self.tests))
        if extra:
            raise ConfigError("verify_options", f"options for {extra[0]!r}, which is not in tests")
        E.check_subsets(self.subsets, "subsets")


def load_settings(path, mode: str) -> Settings:
    """The ``[mode]`` table of ``path``, checked (errors ``<path>: [<mode>].<key>: ...``); ``data`` resolved
    relative to the file."""
    return E.load_settings(Settings, path, mode, prefix=f"[{mode}].")


def assemble_matrix(rows_by_subset: dict, exclude=()) -> list:
    """The error matrix from verification rows: {subset: [row, ...]} -> one dict per quantity with test, quantity,
    unit, kind and one value per subset.

    ``kind`` is ``relative`` when at least one subset's row has a relative error (value = 100 · relative error, %),
    else ``absolute`` (value = the error in the row's unit). Quantities keep the order of their first appearance; a
    subset without the quantity (or with a non-finite value) gets NaN. Rows whose ``"test: quantity"`` contains a
    string of ``exclude``, and quantities without a finite error in any subset, are left out.
    """
    order, cells = [], {}
    for subset, rows in rows_by_subset.items():
        for r in rows:
            key = (r.get("test"), r.get("quantity"), r.get("unit") or "")
            label = f"{key[0]}: {key[1]}"
            if any(e in label for e in exclude):
                continue
            if key not in cells:
                order.append(key)
                cells[key] = {}
            cells[key][subset] = r
    out = []
    for key in order:
        have = cells[key]
        if not any(_finite(r.get("error")) for r in have.values()):
            continue  # no value anywhere (e.g. a quantity the quick mode skips)
        relative = any(_finite(r.get("relative_error")) for r in have.values())
        line = {"test": key[0], "quantity": key[1], "unit": key[2], "kind": "relative" if relative else "absolute"}
        for subset in rows_by_subset:
            r = have.get(subset)
            v = None if r is None else (r.get("relative_error") if relative else r.get("error"))
            line[subset] = 100.0 * float(v) if relative and _finite(v) else (float(v) if _finite(v) else math.nan)
        out.append(line)
    return out


def _finite(x) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def matrix_figure(matrix, subsets, title: str = ""):
    """The heatmap Figure of :func:`assemble_matrix`'s output: relative rows coloured by |error| in % (log scale),
    absolute rows by log10 |error| in the row's unit; every cell annotated with its value."""
    import matplotlib
    import numpy as np
    from matplotlib.colors import LogNorm

    from mtpjax.plotting import subplots

    groups = [(k, [m for m in matrix if m["kind"] == k]) for k in ("relative", "absolute")]
    groups = [(k, g) for k, g in groups if g]
    heights = [max(len(g), 1) for _, g in groups]
    width = 4.5 + 1.1 * len(subsets)
    fig, axes = subplots(len(groups), 1, figsize=(width, 1.6 + 0.24 * sum(heights) + 0.9 * len(groups)),
                         gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, (kind, g) in zip(axes[:, 0], groups):
        vals = np.array([[m[s] for s in subsets] for m in g], dtype=float)
        mag = np.abs(vals)
        pos = mag[np.isfinite(mag) & (mag > 0)]
        lo, hi = (pos.min(), pos.max()) if pos.size else (1e-3, 1.0)
        hi = max(hi, lo * 10)
        cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.85")
        shown = np.where(np.isfinite(mag) & (mag > 0), mag, np.nan)
        im = ax.imshow(np.ma.masked_invalid(shown), aspect="auto", cmap=cmap, norm=LogNorm(vmin=lo, vmax=hi))
        for i in range(vals.shape[0]):
            for j in range(vals.shape[1]):
                v = vals[i, j]
                txt = "n/a" if not np.isfinite(v) else (f"{v:+.3g}%" if kind == "relative" else f"{v:.3g}")
                dark = np.isfinite(shown[i, j]) and np.log(shown[i, j] / lo) < 0.55 * np.log(hi / lo)
                ax.text(j, i, txt, ha="center", va="center", fontsize=6.5, color="w" if dark else "k")
        ax.set_xticks(range(len(subsets)))
        ax.set_xticklabels(subsets, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(g)))
        ax.set_yticklabels([f"{m['test']}: {m['quantity']}" + (f" [{m['unit']}]" if m["unit"] else "") for m in g], fontsize=7)
        cb = fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02)
        cb.set_label("|relative error| (%)" if kind == "relative" else "|error| (row's unit)", fontsize=8)
        ax.set_title("relative error (MTP − oracle)/|oracle|" if kind == "relative"
                     else "absolute error in the row's unit\n(RMSE of curves, or MTP − oracle; colours compare along a row)",
                     fontsize=9)
    axes[-1, 0].set_xlabel("training subset")
    top = 1.0
    if title:
        fig.suptitle(title, fontsize=10)
        top = 1.0 - 0.45 / fig.get_figheight()
    fig.tight_layout(rect=(0, 0, 1, top))
    return fig


def plot_matrix(matrix, subsets, path, title: str = "") -> Path:
    """:func:`matrix_figure` written to ``path`` (PNG, 120 dpi); returns the path."""
    return E.save_figure(matrix_figure(matrix, subsets, title), path, dpi=120)


# ------------------------------------------------------------------------------------------------- main
def build_parser():
    return E.parser(NAME, __doc__.split("\n\n")[0], DEFAULT_CONFIG,
                    f"runs/experiments/{NAME}[_quick]",
                    data_help="folder of the generated training set (default OUT/data); reused when it holds the "
                              "recipe's data, else generated there (resumable)")


def main(argv=None) -> dict:
    """Run experiment c; returns {"matrix": [...], "subsets": [...], "out": Path, "files": {...}}. Bad input raises
    :class:`ExperimentError` (or another :class:`mtpjax.errors.MtpjaxError`) naming the file and key."""
    args = build_parser().parse_args(argv)
    mode = "quick" if args.quick else "full"
    s = load_settings(args.config, mode)
    E.use_compilation_cache(not args.no_jax_cache)
    out = (args.out or E.default_out(NAME, args.quick, REPO / "runs" / "experiments")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    from mtpjax.io.files import write_json
    from mtpjax.oracles import make_oracle

    write_json(out / "settings.json", {"mode": mode, "config": str(args.config), **E.settings_dict(s)}, indent=1)
    t0 = time.perf_counter()
    E.log(f"{NAME} ({mode}): subsets {list(s.subsets)}, level {s.level}, cutoff {s.cutoff} Å, {s.max_steps} steps; "
          f"tests {list(s.tests)}{' (quick)' if s.verify_quick else ''} -> {out}")
    data_dir = args.data.resolve() if args.data else out / "data"
    manifest, spec = E.prepare_data(s.data, data_dir)
    element = manifest["element"]
    E.check_generated(s.subsets, manifest, s.data, f"{args.config}: [{mode}].subsets")
    records = E.load_data(data_dir, element)
    runs = E.fit_plan_runs(records, out / "fits", [(sub, s.level, [s.cutoff]) for sub in s.subsets], seed=s.seed,
                           max_steps=s.max_steps, linear_solve_at=s.linear_solve_at, optimizer=s.optimizer,
                           max_batch_atoms=s.max_batch_atoms, element=element, data=E.data_id(manifest))
    fits = [E.fit_row(sub, runs[(sub, s.level, s.cutoff)]) for sub in s.subsets]
    E.write_csv(out / "fits.csv", fits)
    oracle = make_oracle(spec)
    rows = {}
    for k, sub in enumerate(s.subsets):
        E.log(f"verify {k + 1}/{len(s.subsets)}: {sub}")
        rows[sub] = E.verify_run(runs[(sub, s.level, s.cutoff)], oracle, spec, out / "verify" / sub.replace("+", "-"),
                                 tests=s.tests, quick=s.verify_quick, options=s.verify_options, element=element,
                                 label=f"MTP L{s.level} {s.cutoff:g} Å on {sub}")
    matrix = assemble_matrix(rows, s.exclude)
    subsets = list(s.subsets)
    files = {"matrix": E.write_csv(out / "error_matrix.csv", matrix, ["test", "quantity", "unit", "kind", *subsets])}
    long = [{"subset": sub, **{k: r.get(k) for k in ("test", "quantity", "unit", "mtp", "oracle", "error", "relative_error")}}
            for sub, rs in rows.items() for r in rs]
    files["long"] = E.write_csv(out / "error_matrix_long.csv", long)
    files["fits"] = out / "fits.csv"
    files["png"] = plot_matrix(matrix, subsets, out / "error_matrix.png",
                               f"Error matrix ({mode}): MTP level {s.level}, cutoff {s.cutoff:g} Å, "
                               f"{s.max_steps} steps, against {manifest['oracle'].get('name', 'the oracle')}")
    wall = time.perf_counter() - t0
    write_json(out / "summary.json", {"mode": mode, "subsets": subsets, "rows": len(matrix), "wall_s": wall,
                                      "fits": fits, "files": {k: str(v) for k, v in files.items()}}, indent=1)
    E.log(f"{NAME}: {len(matrix)} quantities × {len(subsets)} subsets -> {files['png']} ({wall:.0f} s)")
    return {"matrix": matrix, "subsets": subsets, "out": out, "files": files, "fits": fits, "wall_s": wall}


if __name__ == "__main__":
    sys.exit(E.guarded(NAME, main))
