"""Homogeneous strains of hcp, fcc, dhcp and bcc up to ±60 %.

Each phase at Ω0 (the volume per atom of the oracle's relaxed ground state, ``ground_state`` hcp, fcc or bcc,
default the oracle's lowest prototype (:func:`mtpjax.verify.prototypes.ground_state`); ideal c/a, conventional orientation of the
primitive cells of :func:`mtpjax.verify.prototypes.prototype`) is deformed by x -> x (I + ε) for the three normal
strains (ε_ii = s) and the three shears (ε_ij = ε_ji = s/2, i.e. engineering shear s) with s on ``points``
values in [−``max_strain``, +``max_strain``] (default ±0.6). Internal coordinates are not relaxed. The same
structures are evaluated with both potentials.

Points below r_min: strains that bring two atoms closer than the potential's r_min (an MTP's ``min_dist``, Å; its
radial basis does not model shorter distances) are left out of the RMSEs and counted (``excluded_below_rmin``), as in
:mod:`mtpjax.verify.eos`; the RMSEs over every point stay in the metrics (``rmse_all_points_meV``). A potential
without r_min (an oracle) keeps every point.

Metrics: energy RMSE (meV/atom) per phase and strain component, per phase, and overall; the curves.
Figure: E(s) per phase and component (axes fit the oracle's curves; the potential's points beyond them are drawn
as ▲/▼ on the edge; points below r_min as ×).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..relax import PHASES, equilibrium, prototype
from ..units import VOIGT_ORDER, VOIGT_PAIRS, voigt_to_strain
from .prototypes import element_of, error_row, evaluate_safe, finite_or_none, limits, plot_clipped, strained
from .prototypes import ground_state as ground_state_of
from .eos import below_rmin, excluded_row, potential_rmin, rmse_meV

#: Strain components (Voigt order) and their index pairs.
COMPONENTS = dict(zip(VOIGT_ORDER, VOIGT_PAIRS))


def strain_tensor(component: str, s: float) -> np.ndarray:
    """ε (3x3, dimensionless) of a normal (ε_ii = s) or engineering shear (γ_ij = s: ε_ij = ε_ji = s/2) strain."""
    return voigt_to_strain(s * np.eye(6)[VOIGT_ORDER.index(component)])


def _figure(outdir, table, values, below=None):
    from ..plotting import subplots

    below = below or {}

    fig, axes = subplots(2, len(PHASES), figsize=(3.2 * len(PHASES), 6), sharex=True)
    for col, p in enumerate(PHASES):
        for rowi, comps in enumerate((("xx", "yy", "zz"), ("yz", "xz", "xy"))):
            ax = axes[rowi, col]
            lim = limits(*[table[(p, c)][1] for c in comps])
            n_out = 0
            for k, c in enumerate(comps):
                em, eo = table[(p, c)]
                out = below.get((p, c), np.zeros(len(values), bool))
                ax.plot(values, eo, "-", color=f"C{k}", label=f"{c} oracle")
                plot_clipped(ax, values[~out], em[~out], lim, ls="none", marker="o", ms=2.5, mfc="none", color=f"C{k}",
                             label=f"{c} potential")
                if out.any():
                    plot_clipped(ax, values[out], em[out], lim, ls="none", marker="x", ms=3.5, color=f"C{k}",
                                 label=None if n_out else "below r_min (excluded)")
                n_out += int(out.sum())
            ax.set_ylim(*lim)
            ax.set_title(f"{p} {'normal' if rowi == 0 else 'shear'}" + (f" ({n_out} below r_min)" if n_out else ""))
            if col == 0:
                ax.set_ylabel("E (eV/atom)")
            if rowi == 1:
                ax.set_xlabel("strain s")
            ax.legend(fontsize=6)
    fig.tight_layout()
    path = Path(outdir) / "strain.png"
    fig.savefig(path, dpi=110)
    return path


def run(potential, oracle, outdir: Path, *, element: str | None = None, max_strain: float = 0.6, points: int = 25,
        quick: bool = False, figures: bool = True, ground_state: str | None = None) -> dict:
    """Energies of strained phases, ``potential`` against ``oracle``.

    Options: ``element``; ``max_strain`` (default 0.6); ``points`` per component (default 25; 13 with ``quick``);
    ``figures``; ``ground_state`` (hcp, fcc, bcc; default: the oracle's lowest prototype). Metrics: ``omega0``
    (Å³/atom, of the oracle's ground state), ``ground_state``, ``rmse_meV`` {phase: {component: ..., "all": ...}, "all": ...}
    over the points at or above the potential's r_min, ``rmse_all_points_meV`` (the same over every point), ``r_min``
    (Å; None without one), ``excluded_below_rmin`` {phase: {component: n, "all": n}, "all": n}, ``curves``
    {phase: {component: {potential, oracle, below_rmin}}}, ``time_s``. Rows: with an r_min, per phase the count of
    excluded points (:data:`mtpjax.verify.eos.EXCLUDED_ROW`, unit "points") before its RMSEs, and the total count.
    """
    from ..evaluate import Evaluator

    t0 = time.perf_counter()
    element = element_of(potential, oracle, element)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    if quick:
        points = min(points, 13)
    failures = []
    g = ground_state_of(oracle, element, ground_state)
    h = equilibrium(oracle, [g], element)[g]
    if not h.ok:
        failures.append({"structure": f"oracle: {g} equilibrium", "reason": f"{h.reason}: {h.message}"})
    omega0 = h.atoms.get_volume() / len(h.atoms)
    values = np.linspace(-max_strain, max_strain, points)
    structures, meta = [], []
    for p in PHASES:
        base = prototype(p, element, omega0)
        for c in COMPONENTS:
            for s in values:
                a = strained(base, strain_tensor(c, s))
                a.info["name"] = f"{p} {c} {s:+.3f}"
                structures.append(a)
                meta.append((p, c))
    r_min = potential_rmin(potential)
    out_all = below_rmin(structures, r_min)
    energies = {}
    for who, pot in (("potential", potential), ("oracle", oracle)):
        res, fails = evaluate_safe(Evaluator(pot), structures)
        failures += [{"structure": f"{who}: {f['structure']}", "reason": f["reason"]} for f in fails]
        energies[who] = np.array([np.nan if r is None else r.energy / len(a) for r, a in zip(res, structures)])
    meta = np.array(meta)
    table, below, rm, rm_all, excl, rows = {}, {}, {}, {}, {}, []
    em_all, eo_all = energies["potential"], energies["oracle"]
    for p in PHASES:
        rm[p], rm_all[p], excl[p] = {}, {}, {}
        if r_min is not None:
            rows.append(excluded_row("strain", p, int(out_all[meta[:, 0] == p].sum())))
        for c in COMPONENTS:
            sel = (meta[:, 0] == p) & (meta[:, 1] == c)
            table[(p, c)] = (em_all[sel], eo_all[sel])
            below[(p, c)] = out_all[sel]
            excl[p][c] = int(below[(p, c)].sum())
            rm[p][c] = rmse_meV(*table[(p, c)], ~below[(p, c)])
            rm_all[p][c] = rmse_meV(*table[(p, c)])
            rows.append(error_row("strain", f"energy RMSE {p} {c}", "meV/atom", rm[p][c]))
        sel = meta[:, 0] == p
        excl[p]["all"] = int(out_all[sel].sum())
        rm[p]["all"] = rmse_meV(em_all[sel], eo_all[sel], ~out_all[sel])
        rm_all[p]["all"] = rmse_meV(em_all[sel], eo_all[sel])
        rows.append(error_row("strain", f"energy RMSE {p} (all components)", "meV/atom", rm[p]["all"]))
    excl["all"] = int(out_all.sum())
    rm["all"] = rmse_meV(em_all, eo_all, ~out_all)
    rm_all["all"] = rmse_meV(em_all, eo_all)
    if r_min is not None:
        rows.append(excluded_row("strain", "(all phases and components)", excl["all"]))
    rows.append(error_row("strain", "energy RMSE (all phases and components)", "meV/atom", rm["all"]))
    curves = {p: {c: {"potential": [finite_or_none(x) for x in table[(p, c)][0]],
                      "oracle": [finite_or_none(x) for x in table[(p, c)][1]],
                      "below_rmin": below[(p, c)].tolist()} for c in COMPONENTS} for p in PHASES}
    metrics = {"omega0": omega0, "ground_state": g, "max_strain": max_strain, "rmse_meV": rm,
               "rmse_all_points_meV": rm_all, "r_min": r_min, "excluded_below_rmin": excl, "strains": values.tolist(),
               "curves": curves}
    figs = [_figure(outdir, table, values, below)] if figures else []
    metrics["time_s"] = time.perf_counter() - t0
    return {"metrics": metrics, "figures": [str(f) for f in figs], "rows": rows, "failures": failures}
