"""Experiment d: transferability (Poul et al., Fig. 7) and the fcc/dhcp–hcp separation of small MTPs.

1. E–V curves. One MTP is fitted to RANDSPG only (random crystals within ±10 % of Ω0) and one to EVERYTHING (the
   union of all subsets, which adds relaxed, strongly strained and rattled cells), same level, cutoff and optimiser.
   Both and the oracle are evaluated on hcp, fcc, dhcp and bcc from (1 − r)·Ω0 to (1 + r)·Ω0 (r = 0.8 by default:
   0.2–1.8 × Ω0, the oracle's relaxed hcp volume per atom) with :mod:`mtpjax.verify.eos` (the same structures for
   all three), giving E(V) per phase, E(phase) − E(hcp), and their RMSEs against the oracle.
2. Phase separation. MTPs of a few (low) levels and (small) cutoffs are fitted to one subset (EVERYTHING) and give
   E(fcc) − E(hcp), E(dhcp) − E(hcp) and E(bcc) − E(hcp) at Ω0 (ideal c/a, as the E–V curves) and between the
   phases' own E–V minima (Birch–Murnaghan over ±10 %), compared with the oracle's.

    python experiments/d_transferability.py --quick         # ~4 min on 2 CPU cores
    python experiments/d_transferability.py                 # paper scale (GPU)

Outputs in OUT (default ``runs/experiments/d_transferability[_quick]``): ``data/`` (generated set), ``fits/runs/*``
(fitted MTPs), ``eos/<run>/`` (the eos test's metrics and figures per MTP), and

- ``ev_curves.csv``: range, phase, V (Å³/atom), V/Ω0, E of the oracle and of each E–V MTP (eV/atom);
- ``ev_errors.csv``: per E–V MTP, range and phase: RMSE and median |error| of E, the RMSE of E over the volumes whose
  nearest-neighbour distance is at least the MTP's r_min (below it every MTP extrapolates blindly; at 0.2 Ω0 the
  neighbours are 1.87 Å apart), RMSE of E(phase) − E(hcp) (all meV/atom), points, non-finite (an MTP that cannot be
  evaluated somewhere gets an infinite error);
- ``ev_curves.csv`` also holds each structure's nearest-neighbour distance d_nn (Å);
- ``phase_separation.csv``: per MTP (subset, level, cutoff) and for the oracle: the energy differences (meV/atom);
- ``ev_curves.png`` (E–V and E − E(hcp) per phase), ``phase_separation.png`` (differences vs level per cutoff);
- ``fits.csv`` (training RMSE of every MTP), ``summary.json``.

Resumable: generation continues from its checkpoints, finished fits and finished E–V evaluations
(``eos/<run>/result.json`` with the same potential and settings) are skipped. Units: eV, Å, meV/atom, GPa.

The data, the fits and the settings come from :mod:`mtpjax.experiment`, the helpers the four experiment scripts
share; the E–V curves are :func:`mtpjax.verify.eos.run`'s.
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
from mtpjax.fit.validate import non_negative_int, positive_float, positive_int

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
NAME = "d_transferability"
DEFAULT_CONFIG = HERE / "configs" / "d_transferability.toml"
PHASES = ("hcp", "fcc", "dhcp", "bcc")
#: The two training subsets of the E–V comparison.
EV_SUBSETS = ("RANDSPG", "EVERYTHING")


@dataclass(frozen=True)
class Settings:
    """The [quick] / [full] table of d_transferability.toml; every key is optional (these defaults are the full values)."""

    data: str = field(default=str(REPO / "configs" / "generate_mg.toml"), metadata={"path": True, "help": (
        "generation recipe, relative to the config file")})
    ev_level: int = 16  # level of the RANDSPG and EVERYTHING MTPs of the E–V curves
    ev_cutoff: float = field(default=6.5, metadata={"check": positive_float})  # Å
    ev_range: float = 0.8  # E–V curves over (1 ± ev_range) Ω0
    ev_points: int = 41  # volumes per range and phase (odd: Ω0 itself is one of them)
    shape: Literal["ideal", "relaxed"] = "ideal"  # ideal c/a (√(8/3)) or the oracle's relaxed c/a; see mtpjax.verify.eos
    sep_subset: str = "EVERYTHING"  # training subset of the phase-separation MTPs
    sep_levels: tuple[int, ...] = (4, 6, 8, 10, 12, 16)
    sep_cutoffs: tuple[float, ...] = field(default=(4.0, 5.2, 6.5), metadata={"check": positive_float})  # Å
    seed: int = field(default=0, metadata={"check": non_negative_int})
    max_steps: int = field(default=1000, metadata={"check": positive_int})
    linear_solve_at: tuple[int, ...] = field(default=E.MLIP_LINEAR_SOLVES, metadata={"check": non_negative_int})
    optimizer: Literal["lm", "lbfgs", "bfgs", "adam"] = "lbfgs"
    max_batch_atoms: int = field(default=100000, metadata={"check": positive_int})

    def check_config(self) -> None:
        """What the types do not say (a :class:`ConfigError` names the key)."""
        E.check_plan_settings(self)
        if not 0 < self.ev_range < 1:
            raise ConfigError("ev_range", f"must be in (0, 1) (a fraction of Ω0), got {self.ev_range}")
        if self.ev_points < 5 or self.ev_points % 2 == 0:
            raise ConfigError("ev_points", f"must be odd and ≥ 5 (so that Ω0 is a point), got {self.ev_points}")
        E.check_subsets([self.sep_subset], "sep_subset")
        for key in ("sep_levels", "sep_cutoffs"):
            if not getattr(self, key):
                raise ConfigError(key, "is empty")
        for key, levels in (("ev_level", [self.ev_level]), ("sep_levels", self.sep_levels)):
            for lv in levels:
                if not 2 <= lv <= 28:
                    raise ConfigError(key, f"level {lv!r} must be an integer in 2..28")


def load_settings(path, mode: str) -> Settings:
    """The ``[mode]`` table of ``path``, checked (errors ``<path>: [<mode>].<key>: ...``); ``data`` resolved
    relative to the file."""
    return E.load_settings(Settings, path, mode, prefix=f"[{mode}].")


def fit_plan(s) -> list:
    """[(subset, level, [cutoffs])]: the two E–V MTPs and the separation grid (shared fits appear once)."""
    want: dict = {}
    for sub in EV_SUBSETS:
        want.setdefault((sub, s.ev_level), set()).add(float(s.ev_cutoff))
    for lv in s.sep_levels:
        want.setdefault((s.sep_subset, lv), set()).update(float(c) for c in s.sep_cutoffs)
    return [(sub, lv, sorted(cs)) for (sub, lv), cs in want.items()]


def ev_evaluation(run_dir, oracle, outdir, s, element, figures: bool) -> dict:
    """:func:`mtpjax.verify.eos.run` of the MTP in ``run_dir`` against ``oracle`` (ranges ±10 % and ±ev_range);
    returns its metrics. Skipped (read back) when ``outdir/result.json`` has the same potential and settings."""
    from mtpjax.io.files import read_json
    from mtpjax.verify import eos

    outdir = Path(outdir)
    pot_file = Path(run_dir) / "potential.mtpjax"
    key = {"potential": E.file_digest(pot_file), "ranges": [0.1, s.ev_range], "points": s.ev_points, "shape": s.shape,
           "figures": figures, "version": 2}
    done = outdir / "result.json"
    if done.exists():
        have = read_json(done, "E–V record")
        if have.get("key") == key:
            return have["metrics"]
    pot = E.load_potential(pot_file, element)
    res = eos.run(pot, oracle, outdir, element=element, ranges=(0.1, s.ev_range), points=s.ev_points,
                  shape=s.shape, figures=figures)
    from mtpjax.io.files import json_safe, write_json

    metrics = {**res["metrics"], "rmin": float(pot.min_dist), "element": element}
    write_json(done, {"key": key, "metrics": metrics, "failures": res["failures"]}, indent=None)
    return json_safe(metrics)


def nearest_neighbour(phase: str, element: str, volume: float, c_over_a) -> float:
    """Nearest-neighbour distance (Å) of the eos test's ``phase`` structure at ``volume`` Å³/atom (periodic images
    included)."""
    from ase.neighborlist import neighbor_list

    from mtpjax.verify.prototypes import prototype

    coa = c_over_a.get(phase) if isinstance(c_over_a, dict) else None
    atoms = prototype(phase, element, volume, coa)
    return float(neighbor_list("d", atoms, 2.0 * volume ** (1.0 / 3.0)).min())


def _arr(x):
    import numpy as np

    return np.array([np.nan if v is None else v for v in x], dtype=float)


def range_key(r: float) -> str:
    return f"{round(r * 100)}%"


def ev_tables(metrics: dict, s) -> tuple[list, list]:
    """(curve rows, error rows) from the eos metrics of the E–V MTPs {subset: metrics} (energies eV/atom, errors meV/atom)."""
    import numpy as np

    any_m = next(iter(metrics.values()))
    omega0, element = any_m["omega0"], any_m["element"]
    curves, errors = [], []
    for r in (0.1, s.ev_range):
        rk = range_key(r)
        dnn = {}
        for p in PHASES:
            base = any_m["curves"][rk][p]
            dnn[p] = np.array([nearest_neighbour(p, element, v, any_m["c_over_a"]) for v in base["V"]])
            for i, v in enumerate(base["V"]):
                line = {"range": rk, "phase": p, "V_A3": v, "V_over_omega0": v / omega0, "d_nn_A": dnn[p][i],
                        "E_oracle_eV": base["oracle"][i]}
                for sub, m in metrics.items():
                    line[f"E_{sub}_eV"] = m["curves"][rk][p]["potential"][i]
                curves.append(line)
        for sub, m in metrics.items():
            c = m["curves"][rk]
            hm, ho = _arr(c["hcp"]["potential"]), _arr(c["hcp"]["oracle"])
            for p in [*PHASES, "all"]:
                ps = PHASES if p == "all" else (p,)
                em = np.concatenate([_arr(c[q]["potential"]) for q in ps])
                eo = np.concatenate([_arr(c[q]["oracle"]) for q in ps])
                inside = np.concatenate([dnn[q] for q in ps]) >= m["rmin"]
                dd = rmse_inf(em - hm, eo - ho) if p not in ("hcp", "all") else None
                errors.append({"subset": sub, "range": rk, "phase": p, "rmse_E_meV": 1000 * rmse_inf(em, eo),
                               "median_abs_E_meV": 1000 * median_abs(em, eo),
                               "rmse_E_above_rmin_meV": 1000 * rmse_inf(em[inside], eo[inside]) if inside.any() else None,
                               "rmse_dE_vs_hcp_meV": None if dd is None else 1000 * dd, "points": len(em),
                               "points_above_rmin": int(inside.sum()), "rmin_A": m["rmin"],
                               "non_finite": int((~np.isfinite(em)).sum())})
    return curves, errors


def rmse_inf(a, b) -> float:
    """RMSE of a − b (same units); inf when any entry of ``a`` (the potential) is not finite: a potential that
    cannot be evaluated somewhere has not reproduced the curve there."""
    import numpy as np

    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(b)
    if not np.isfinite(a[ok]).all():
        return math.inf
    return float(np.sqrt(np.mean((a[ok] - b[ok]) ** 2)))


def median_abs(a, b) -> float:
    """Median of |a − b| (robust to the few most compressed points, which dominate an RMSE over ±80 %); inf when
    any entry of ``a`` is not finite."""
    import numpy as np

    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(b)
    if not np.isfinite(a[ok]).all():
        return math.inf
    return float(np.median(np.abs(a[ok] - b[ok])))


def separation(m: dict, who: str) -> dict:
    """E(phase) − E(hcp) in meV/atom of ``who`` ("potential" or "oracle") from eos metrics: at Ω0 (the middle point
    of the ±10 % curve, ideal shapes) and between the phases' Birch–Murnaghan minima."""
    c = m["curves"]["10%"]
    mid = len(c["hcp"]["V"]) // 2
    out = {}
    for p in PHASES[1:]:
        e, h = c[p][who][mid], c["hcp"][who][mid]
        out[f"{p}_hcp_at_omega0_meV"] = None if e is None or h is None else 1000 * (e - h)
        e0, h0 = m["minimum"][who][p]["E0"], m["minimum"][who]["hcp"]["E0"]
        out[f"{p}_hcp_at_minima_meV"] = None if e0 is None or h0 is None else 1000 * (e0 - h0)
    return out


def ev_figure(metrics: dict, s, errors):
    """Figure of E(V) (top) and E(phase) − E(hcp) (bottom) over ±ev_range for the oracle (lines) and each MTP
    (markers; points beyond the oracle's range drawn as ▲/▼ on the edge)."""
    import numpy as np

    from mtpjax.plotting import subplots
    from mtpjax.verify.prototypes import limits, plot_clipped

    rk = range_key(s.ev_range)
    any_m = next(iter(metrics.values()))
    omega0 = any_m["omega0"]
    style = {"RANDSPG": ("C3", "s"), "EVERYTHING": ("C0", "o")}
    fig, axes = subplots(2, 4, figsize=(15, 7.2))
    err = {(e["subset"], e["phase"]): e for e in errors if e["range"] == rk}
    h_or = _arr(any_m["curves"][rk]["hcp"]["oracle"])
    e_ref = float(np.nanmin(h_or))  # the oracle's lowest hcp energy: the zero of the top row
    top = 1.3 * max(float(np.nanmax(_arr(any_m["curves"][rk][p]["oracle"]))) - e_ref for p in PHASES)
    for j, p in enumerate(PHASES):
        ax = axes[0, j]
        v = np.array(any_m["curves"][rk][p]["V"]) / omega0
        eo = _arr(any_m["curves"][rk][p]["oracle"])
        lim = (-0.3, top)
        ax.plot(v, eo - e_ref, "k-", lw=1.5, label="oracle")
        for sub, m in metrics.items():
            col, mk = style.get(sub, ("C2", "^"))
            e, e_in, med = (err[(sub, p)][k] for k in ("rmse_E_meV", "rmse_E_above_rmin_meV", "median_abs_E_meV"))
            plot_clipped(ax, v, _arr(m["curves"][rk][p]["potential"]) - e_ref, lim, ls="none", marker=mk, ms=3.5, mfc="none",
                         color=col, label=f"{sub}: RMSE {e:.3g}\n({_g(e_in)} at d_nn ≥ r_min), median {med:.3g}")
        ax.set_yscale("symlog", linthresh=0.05)
        ax.set_ylim(*lim)
        ticks = [t for t in (-0.1, 0.0, 0.1, 1.0, 10.0, 100.0, 1000.0) if lim[0] <= t <= lim[1]]
        ax.set_yticks(ticks)
        ax.set_yticklabels([f"{t:g}" for t in ticks])
        ax.set_title(f"{p} (errors in meV/atom)")
        ax.set_xlabel("V / Ω0")
        ax.legend(fontsize=6.3, loc="upper center")
        ax = axes[1, j]
        if p == "hcp":
            for sub in metrics:
                col, _ = style.get(sub, ("C2", "^"))
                rows = [err[(sub, q)]["rmse_dE_vs_hcp_meV"] for q in PHASES[1:]]
                x = np.arange(3) + (0.2 if sub == "EVERYTHING" else -0.2)
                ax.bar(x, rows, width=0.38, color=col, label=sub)
            ax.set_xticks(range(3))
            ax.set_xticklabels([f"{q} − hcp" for q in PHASES[1:]])
            ax.set_yscale("log")
            ax.set_ylabel(f"RMSE of E − E(hcp), ±{rk} (meV/atom)")
            ax.legend(fontsize=7)
            continue
        d_or = 1000 * (eo - h_or)
        lim = limits(0.0, d_or)
        ax.plot(v, d_or, "k-", lw=1.5, label="oracle")
        for sub, m in metrics.items():
            col, mk = style.get(sub, ("C2", "^"))
            d = 1000 * (_arr(m["curves"][rk][p]["potential"]) - _arr(m["curves"][rk]["hcp"]["potential"]))
            e = err[(sub, p)]["rmse_dE_vs_hcp_meV"]
            plot_clipped(ax, v, d, lim, ls="none", marker=mk, ms=3.5, mfc="none", color=col,
                         label=f"{sub} (RMSE {e:.3g})")
        ax.axhline(0.0, color="0.5", lw=0.5)
        ax.set_ylim(*lim)
        ax.set_title(f"E({p}) − E(hcp)")
        ax.set_xlabel("V / Ω0")
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("E − min E_oracle(hcp) (eV/atom, symlog)")
    axes[1, 1].set_ylabel("E − E(hcp) (meV/atom)")
    fig.suptitle(f"Transferability over ±{rk} of Ω0 = {omega0:.3f} Å³/atom: MTP level {s.ev_level}, cutoff "
                 f"{s.ev_cutoff:g} Å, trained on RANDSPG or EVERYTHING ({s.shape} shapes)", fontsize=10)
    fig.tight_layout()
    return fig


def _g(x) -> str:
    return "—" if x is None else f"{x:.3g}"


def separation_figure(rows, subset: str):
    """Figure of E(fcc) − E(hcp), E(dhcp) − E(hcp) and E(bcc) − E(hcp) at Ω0 vs level, one line per cutoff; the
    oracle's as a dashed line."""
    from mtpjax.plotting import subplots

    oracle = next(r for r in rows if r["model"] == "oracle")
    mtps = [r for r in rows if r["model"] != "oracle"]
    cutoffs = sorted({r["cutoff"] for r in mtps})
    fig, axes = subplots(1, 3, figsize=(13, 3.8))
    for ax, p in zip(axes, PHASES[1:]):
        key = f"{p}_hcp_at_omega0_meV"
        for k, c in enumerate(cutoffs):
            sel = sorted((r for r in mtps if r["cutoff"] == c), key=lambda r: r["level"])
            ax.plot([r["level"] for r in sel], [math.nan if r[key] is None else r[key] for r in sel], "o-", color=f"C{k}",
                    label=f"cutoff {c:g} Å")
        ax.axhline(oracle[key], color="k", ls="--", label=f"oracle {oracle[key]:.3g}")
        ax.axhline(0.0, color="0.6", lw=0.5)
        ax.set_xticks(sorted({r["level"] for r in mtps}))
        ax.set_xlabel("MTP level")
        ax.set_ylabel(f"E({p}) − E(hcp) at Ω0 (meV/atom)")
        ax.set_title(f"{p} − hcp")
        ax.legend(fontsize=7)
    fig.suptitle(f"Phase separation of MTPs trained on {subset} (ideal c/a, V = Ω0)", fontsize=10)
    fig.tight_layout()
    return fig


def build_parser():
    return E.parser(NAME, __doc__.split("\n\n")[0], DEFAULT_CONFIG, f"runs/experiments/{NAME}[_quick]",
                    data_help="folder of the generated training set (default OUT/data); reused when it holds the "
                              "recipe's data, else generated there (resumable)")


def main(argv=None) -> dict:
    """Run experiment d; returns {"ev_errors", "separation", "oracle", "out", "files", "settings", ...}. Bad input
    raises :class:`ExperimentError` (or another :class:`mtpjax.errors.MtpjaxError`) naming the file and key."""
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
    E.log(f"{NAME} ({mode}): E–V with level {s.ev_level}, {s.ev_cutoff:g} Å on {list(EV_SUBSETS)} over "
          f"±{range_key(s.ev_range)}; separation with levels {list(s.sep_levels)} × cutoffs {list(s.sep_cutoffs)} on "
          f"{s.sep_subset} -> {out}")
    data_dir = args.data.resolve() if args.data else out / "data"
    manifest, spec = E.prepare_data(s.data, data_dir)
    element = manifest["element"]
    E.check_generated((*EV_SUBSETS, s.sep_subset), manifest, s.data, f"{args.config}: [{mode}]")
    records = E.load_data(data_dir, element)
    plan = fit_plan(s)
    runs = E.fit_plan_runs(records, out / "fits", plan, seed=s.seed, max_steps=s.max_steps,
                           linear_solve_at=s.linear_solve_at, optimizer=s.optimizer, max_batch_atoms=s.max_batch_atoms,
                           element=element, data=E.data_id(manifest))
    E.write_csv(out / "fits.csv", [E.fit_row(sub, runs[(sub, lv, c)]) for sub, lv, cs in plan for c in cs])
    oracle = make_oracle(spec)
    sep_cutoffs = [float(c) for c in s.sep_cutoffs]
    todo = [(sub, s.ev_level, float(s.ev_cutoff)) for sub in EV_SUBSETS]
    todo += [(s.sep_subset, lv, c) for lv in s.sep_levels for c in sep_cutoffs if (s.sep_subset, lv, c) not in todo]
    metrics = {}
    for k, key in enumerate(todo):
        t1 = time.perf_counter()
        name = runs[key].name
        metrics[key] = ev_evaluation(runs[key], oracle, out / "eos" / name, s, element, figures=k < 2)
        E.log(f"E–V {k + 1}/{len(todo)}: {name} ({time.perf_counter() - t1:.0f} s)")
    ev = {sub: metrics[(sub, s.ev_level, float(s.ev_cutoff))] for sub in EV_SUBSETS}
    curves, errors = ev_tables(ev, s)
    files = {"curves": E.write_csv(out / "ev_curves.csv", curves), "errors": E.write_csv(out / "ev_errors.csv", errors)}
    sep_rows = [{"model": "oracle", "subset": "", "level": "", "cutoff": "", **separation(ev["EVERYTHING"], "oracle")}]
    for lv in s.sep_levels:
        for c in sep_cutoffs:
            sep_rows.append({"model": runs[(s.sep_subset, lv, c)].name, "subset": s.sep_subset, "level": lv, "cutoff": c,
                             **separation(metrics[(s.sep_subset, lv, c)], "potential")})
    files["separation"] = E.write_csv(out / "phase_separation.csv", sep_rows)
    files["ev_png"] = E.save_figure(ev_figure(ev, s, errors), out / "ev_curves.png")
    files["separation_png"] = E.save_figure(separation_figure(sep_rows, s.sep_subset), out / "phase_separation.png")
    wall = time.perf_counter() - t0
    omega0 = ev["EVERYTHING"]["omega0"]
    minima = ev["EVERYTHING"]["minimum"]["oracle"]
    all80 = {sub: next(e for e in errors if e["subset"] == sub and e["phase"] == "all" and e["range"] == range_key(s.ev_range))
             for sub in EV_SUBSETS}
    summary = {"mode": mode, "omega0": omega0, "oracle_minima": minima, "wall_s": wall,
               "rmse_all_phases_meV": {sub: e["rmse_E_meV"] for sub, e in all80.items()},
               "median_abs_all_phases_meV": {sub: e["median_abs_E_meV"] for sub, e in all80.items()},
               "rmse_above_rmin_all_phases_meV": {sub: e["rmse_E_above_rmin_meV"] for sub, e in all80.items()},
               "files": {k: str(v) for k, v in files.items()}}
    write_json(out / "summary.json", summary, indent=1)
    E.log(f"{NAME}: Ω0 {omega0:.3f} Å³/atom; over ±{range_key(s.ev_range)} E RMSE / RMSE at d_nn ≥ r_min / median |error|: "
          + ", ".join(f"{k} {e['rmse_E_meV']:.4g} / {_g(e['rmse_E_above_rmin_meV'])} / {e['median_abs_E_meV']:.4g} meV/atom"
                      for k, e in all80.items()) + f" ({wall:.0f} s)")
    return {"ev_errors": errors, "curves": curves, "separation": sep_rows, "omega0": omega0, "oracle_minima": minima,
            "out": out, "files": files, "wall_s": wall, "settings": E.settings_dict(s)}


if __name__ == "__main__":
    sys.exit(E.guarded(NAME, main))
